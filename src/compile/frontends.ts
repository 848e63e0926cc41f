// The frontends one Service gets on this node, and where each sends its traffic: its clusterIPs,
// NodePorts on the NodePort addresses, externalIPs (minus those outside the allow list) and
// load-balancer IPs with their source ranges, per family and Service port, each with the backends its
// traffic policy picks (internalTrafficPolicy, externalTrafficPolicy and its in-cluster short-circuit).
// Mirrors the per-Service part of kube-proxy's syncProxyRules (kubernetes pkg/proxy/nftables/proxier.go,
// pkg/proxy/iptables/proxier.go) and its per-family ServicePort view (pkg/proxy/serviceport.go).
import type { FrontendType, NodeBackend, NodeFrontend, Scope } from '../model/compiled.js';
import type { ObjectError, ServiceEndpoints, ServiceModel } from '../model/types.js';
import { addressKey, frontendKey } from '../model/canonical.js';
import { cidrContains, familyOfValid, ipFamily, parseCidr, type Cidr, type Family } from '../util/ip.js';
import type { Allocation } from './allocate.js';
import { categorizeEndpoints, categorizePlain, resolveCandidates } from './topology.js';
import { EMPTY } from '../model/normalize.js';

/** What one sync knows of this node and the options, shared by every Service. */
export interface ResolvedOptions {
  nodeName: string;
  zone: string;
  /** family -> NodePort addresses ('0.0.0.0' / '::' for any) */
  nodePortAddrs: Map<Family, string[]>;
  allow: Cidr[] | null;
  standalone: boolean;
  /** the PreferSameTrafficDistribution feature gate */
  nodeHints: boolean;
  masqueradeAll: boolean;
  /** families with a local-traffic detector (CompileOptions.detectLocalFamilies) */
  detectLocal: ReadonlySet<Family>;
  /** the node's primary IP per family (kube-proxy's nodeIP), for allowFromNode */
  primaryIPs: ReadonlyMap<Family, string>;
}

/**
 * Service ports with a Local traffic policy, no local endpoint and some endpoint elsewhere, per
 * family and policy: kube-proxy's serviceNoLocalEndpointsTotalInternal / External (syncProxyRules),
 * the value of kubeproxy_sync_proxy_rules_no_local_endpoints_total.
 */
export interface NoLocalEndpointCounts {
  IPv4: { internal: number; external: number };
  IPv6: { internal: number; external: number };
}

export function zeroNoLocalCounts(): NoLocalEndpointCounts {
  return { IPv4: { internal: 0, external: 0 }, IPv6: { internal: 0, external: 0 } };
}

/** a += sign * b */
export function addNoLocalCounts(a: NoLocalEndpointCounts, b: NoLocalEndpointCounts, sign: 1 | -1): void {
  for (const f of ['IPv4', 'IPv6'] as const) {
    a[f].internal += sign * b[f].internal;
    a[f].external += sign * b[f].external;
  }
}

interface FrontendSpec {
  type: FrontendType;
  address: string;
  port: number;
}

/**
 * The frontends of one Service on this node, appended to `out`; its warnings to `errors`. `mapKey` is
 * its snapshot key; `keyCache` memoizes addressKey across the Services of one sync.
 */
export function compileService(mapKey: string, svc: ServiceModel, alloc: Allocation, eps: ServiceEndpoints | undefined, ro: ResolvedOptions,
  errors: ObjectError[], out: RawFrontend[], keyCache: Map<string, string>, noLocal: NoLocalEndpointCounts): void {
  let idx = 0;
  const topo = { nodeName: ro.nodeName, zone: ro.zone, synthesize: ro.standalone, nodeHints: ro.nodeHints };
  // no hints to synthesize (topology.ts categorizePlain)
  const plain = !ro.standalone || !svc.trafficDistribution;
  // pkg/api/v1/service ExternalPolicyLocal: Local and reachable other than by clusterIP
  const externalLocal = svc.externalTrafficPolicy === 'Local'
    && (svc.type === 'NodePort' || svc.type === 'LoadBalancer' || svc.externalIPs.length > 0);
  const internalLocal = svc.internalTrafficPolicy === 'Local';
  const warn = (field: string, message: string): void => {
    errors.push({ kind: 'Service', key: svc.key, field, message, severity: 'warning' });
  };

  // (most Services have neither: the shared empty list, no array made per Service)
  const lbIPs: readonly string[] = svc.type === 'LoadBalancer'
    ? [...svc.loadBalancerIngressIPs, ...(ro.standalone && svc.loadBalancerIP && !svc.loadBalancerIngressIPs.includes(svc.loadBalancerIP) ? [svc.loadBalancerIP] : [])]
    : EMPTY;
  const externalIPs: readonly string[] = !svc.externalIPs.length ? EMPTY : svc.externalIPs.filter((ip, i) => {
    if (!ro.allow || ro.allow.some((c) => cidrContains(c, ip))) return true;
    warn(`spec.externalIPs[${i}]`, `${ip} is outside the allowed externalIP CIDRs: no frontend (CVE-2020-8554)`);
    return false;
  });
  if (externalIPs.length || lbIPs.length) for (const ip of [...externalIPs, ...lbIPs]) {
    const f = ipFamily(ip);
    if (!alloc.clusterIPs.some((c) => familyOfValid(c) === f)) {
      const field = externalIPs.includes(ip) ? `spec.externalIPs[${svc.externalIPs.indexOf(ip)}]` : 'status.loadBalancer.ingress';
      warn(field, `${ip} is of a family the Service does not have (ipFamilies): ignored`);
    }
  }

  for (const clusterIP of alloc.clusterIPs) {
    const family = familyOfValid(clusterIP);
    const famEps = eps ? (family === 4 ? eps.v4 : eps.v6) : [];
    const fLB = !lbIPs.length ? EMPTY : lbIPs.filter((ip) => ipFamily(ip) === family);
    const fExt = !externalIPs.length ? EMPTY : externalIPs.filter((ip) => ipFamily(ip) === family);
    // kube-proxy keeps only the ranges of the frontend's family; if none is left it filters nothing
    // (pushed to below only when a range holds the node's IP: never the shared empty list)
    const ranges = !svc.loadBalancerSourceRanges.length ? EMPTY as unknown as string[]
      : svc.loadBalancerSourceRanges.filter((r) => ipFamily(r.slice(0, r.indexOf('/'))) === family);
    if (fLB.length && svc.loadBalancerSourceRanges.length && !ranges.length) {
      warn('spec.loadBalancerSourceRanges', `no IPv${family} range: the IPv${family} load-balancer IPs accept every source (as kube-proxy)`);
    }
    // allowFromNode (syncProxyRules, nftables and iptables proxiers): when a range holds the node's
    // IP, the LB IPs themselves are allowed too, because a request from the node to a VIP that is
    // also a local address loops back with the VIP as its source
    const nodeIP = ro.primaryIPs.get(family);
    if (nodeIP && ranges.some((r) => cidrContains(parseCidr(r), nodeIP))) {
      for (const ip of fLB) ranges.push(family === 4 ? `${ip}/32` : `${ip}/128`);
    }
    const counts = noLocal[family === 4 ? 'IPv4' : 'IPv6'];
    // a clusterIP is one Service's own: its key made here, once, not memoized in keyCache (a
    // 100,000-entry Map at 100,000 Services, each entry read once)
    const clusterKey = addressKey(clusterIP);
    for (let i = 0; i < svc.ports.length; i++) {
      const sp = svc.ports[i]!;
      const sets = (plain && categorizePlain(famEps, sp, ro.nodeName)) || categorizeEndpoints(svc, resolveCandidates(famEps, sp, ro.nodeName), topo);
      // syncProxyRules: endpoints somewhere but none here for a Local policy means drop, not reject
      const localMissing = sets.hasEndpoints && !sets.local.length;
      if (localMissing && internalLocal) counts.internal++;
      if (localMissing && externalLocal) counts.external++;
      const nodePort = alloc.nodePorts[i] ?? 0;
      // kube-proxy's affinity is per Service port: the endpoint chains' `recent` lists (iptables) or
      // affinity sets (nftables) are shared by the clusterIP and every external address of the port
      // (writeServiceToEndpointRules). The group is the clusterIP frontend, by the plan's key for it
      // (plan/types.ts frontendKey), and the plan gives every frontend of the port that one's id.
      const affinityGroup = svc.sessionAffinitySeconds > 0 ? `${clusterIP}|${sp.port}|${sp.protocol}|internal` : undefined;
      const emit = (f: FrontendSpec, scope: Scope, backends: NodeBackend[], snatRemote: boolean, ranges: readonly string[], dropNoLocal: boolean,
        masquerade?: NodeFrontend['masquerade']): void => {
        let ak = f.type === 'ClusterIP' ? clusterKey : keyCache.get(f.address);
        if (ak === undefined) keyCache.set(f.address, ak = addressKey(f.address));
        // the empty list shared (frozen): frontends live as long as their Service
        const sourceRanges = (ranges.length ? ranges : EMPTY) as string[];
        // one literal, not a spread of a shared base: V8 then keeps every field in the object itself
        // (a spread left 8 of 11 in a separate property array, 88 bytes a frontend)
        const fe: NodeFrontend = {
          service: svc.key, portName: sp.name, protocol: sp.protocol, type: f.type, address: f.address, port: f.port, scope,
          backends: backends.slice(), sessionAffinitySeconds: svc.sessionAffinitySeconds, sourceRanges, snatRemote,
        };
        if (dropNoLocal) fe.noLocalEndpoints = true;
        if (masquerade) fe.masquerade = masquerade;
        if (affinityGroup !== undefined) fe.affinityGroup = affinityGroup;
        out.push({ key: frontendKey(ak, f.port, sp.protocol, scope), svc: mapKey, idx: idx++, fe });
      };
      // syncProxyRules' internal traffic handling: masqueradeAll marks every flow to the clusterIP,
      // else a working local detector marks those not from the cluster's pods (IfNotLocal)
      emit({ type: 'ClusterIP', address: clusterIP, port: sp.port }, 'internal',
        internalLocal ? sets.local : sets.cluster, false, EMPTY, internalLocal && localMissing,
        ro.masqueradeAll ? 'all' : ro.detectLocal.has(family) ? 'offCluster' : undefined);

      if (!nodePort && !fLB.length && !fExt.length) continue; // (most Services: no external frontend)
      const external: { f: FrontendSpec; ranges: readonly string[] }[] = [];
      if (nodePort) {
        for (const a of ro.nodePortAddrs.get(family) ?? []) external.push({ f: { type: 'NodePort', address: a, port: nodePort }, ranges: EMPTY });
      }
      // only the load-balancer IPs are filtered by source: kube-proxy's firewall chain sits on the
      // LB IP rules, and NodePorts stay open to any source
      for (const a of fLB) external.push({ f: { type: 'LoadBalancer', address: a, port: sp.port }, ranges });
      for (const a of fExt) external.push({ f: { type: 'ExternalIP', address: a, port: sp.port }, ranges: EMPTY });
      const local = svc.externalTrafficPolicy === 'Local';
      for (const { f, ranges: r } of external) {
        // syncProxyRules' external traffic chain: eTP=Cluster masquerades every flow to an external
        // address, pods' and local backends' included; Local keeps the client's source
        emit(f, 'external', local ? sets.local : sets.cluster, !local, r, local && localMissing, local ? undefined : 'all');
        // kube-proxy short-circuits in-cluster traffic to an eTP=Local Service's external addresses
        // to the cluster-wide endpoints (the EXT chain jumps pods and the host to the cluster chain)
        if (local) emit(f, 'internal', sets.cluster, false, r, false);
      }
    }
  }
}

export interface RawFrontend {
  fe: NodeFrontend;
  key: string;
  /** the snapshot key of its Service and its place among that Service's frontends: a fresh compile's tie-break */
  svc: string;
  idx: number;
}

export function fmtAddr(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
