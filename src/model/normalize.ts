// Raw Service / EndpointSlice / Node objects -> the normalized model (types.ts). Pure, and total: the
// input is whatever the API server or a YAML file said, so every field is read as `unknown` and
// checked. A malformed Service or slice is rejected whole with an ObjectError naming the field
// (as the API server would have refused it); everything else still compiles. Nothing here throws.
import { isIPv4 } from 'node:net';
import type { Snapshot } from '../source/types.js';
import { packedEndpoints, unpackEndpoint, type EndpointPart } from '../source/slim.js';
import type { Protocol } from './compiled.js';
import { canonicalIp, formatCidr, ipFamily, parseCidr, type Family } from '../util/ip.js';
import {
  LABEL_SERVICE_NAME, LABEL_ZONE,
  type EndpointModel, type IpFamilyPolicy, type Model, type NodeModel, type ObjectError,
  type ObjectKind, type ServiceEndpoints, type ServiceModel, type ServicePortModel, type ServiceType,
  type TrafficDistribution, type TrafficPolicy,
} from './types.js';

type Obj = Record<string, unknown>;

/**
 * a's elements in an array of exactly that length. An array grown by push keeps room for 16 more
 * (152 bytes for one element): the models live as long as their objects, a million of them at
 * 100,000 Services (issue 10).
 */
export function tight<T>(a: T[]): T[] {
  return a.length ? a.slice() : EMPTY as unknown as T[];
}

/**
 * The one empty list every model shares (frozen: nothing may push to it). Most Services have no
 * externalIPs, ingress IPs or source ranges: an empty array each is 32 bytes, ~10 per Service.
 */
export const EMPTY: readonly never[] = Object.freeze([]);

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Collects the errors of one object; `reject` marks it as refused. */
class Checker {
  failed = false;
  constructor(readonly kind: ObjectKind, public key: string, readonly errors: ObjectError[]) {}

  reject(field: string, message: string): void {
    this.failed = true;
    this.errors.push({ kind: this.kind, key: this.key, field, message, severity: 'error' });
  }

  warn(field: string, message: string): void {
    this.errors.push({ kind: this.kind, key: this.key, field, message, severity: 'warning' });
  }

  obj(v: unknown, field: string): Obj | undefined {
    if (v === undefined || v === null) return undefined;
    if (isObj(v)) return v;
    this.reject(field, `must be an object, got ${describe(v)}`);
    return undefined;
  }

  arr(v: unknown, field: string): unknown[] {
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v;
    this.reject(field, `must be a list, got ${describe(v)}`);
    return [];
  }

  str(v: unknown, field: string): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    this.reject(field, `must be a string, got ${describe(v)}`);
    return undefined;
  }

  bool(v: unknown, field: string): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'boolean') return v;
    this.reject(field, `must be true or false, got ${describe(v)}`);
    return undefined;
  }

  /** an integer in [min, max], or undefined when absent */
  int(v: unknown, field: string, min: number, max: number, what = 'a number'): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      this.reject(field, `must be ${what}, got ${describe(v)}`);
      return undefined;
    }
    if (v < min || v > max) {
      this.reject(field, `${v} is out of range ${min}-${max}`);
      return undefined;
    }
    return v;
  }

  oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[], dflt: T): T {
    if (v === undefined || v === null || v === '') return dflt;
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    this.reject(field, `unknown value ${describe(v)} (expected one of ${allowed.join(', ')})`);
    return dflt;
  }

  /**
   * An enum a newer API server may extend: an unknown string is not an error, it means `unknown`
   * (what kube-proxy's code does with a value it has no case for), with a warning. Only a value of
   * the wrong type rejects the object.
   */
  lenient<T extends string, U>(v: unknown, field: string, allowed: readonly T[], dflt: T | U, unknown: U, means: string): T | U {
    if (v === undefined || v === null || v === '') return dflt;
    if (typeof v !== 'string') {
      this.reject(field, `must be a string, got ${describe(v)}`);
      return dflt;
    }
    if ((allowed as readonly string[]).includes(v)) return v as T;
    this.warn(field, `unknown value ${describe(v)} (known: ${allowed.join(', ')}): ${means}`);
    return unknown;
  }

  ip(v: unknown, field: string): string | undefined {
    const s = this.str(v, field);
    if (s === undefined) return undefined;
    // a valid dotted quad is already canonical (node:net refuses leading zeros)
    if (isIPv4(s)) return s;
    const t = s.trim();
    const sloppy = sloppyIPv4(t);
    if (sloppy) return sloppy;
    if (!ipFamily(t)) {
      this.reject(field, `${JSON.stringify(s)} is not an IP address`);
      return undefined;
    }
    return canonicalIp(t);
  }

  cidr(v: unknown, field: string): string | undefined {
    const s = this.str(v, field);
    if (s === undefined) return undefined;
    try {
      return formatCidr(parseCidr(sloppyCidr(s.trim())));
    } catch (e) {
      this.reject(field, `${JSON.stringify(s)} is not a CIDR (${(e as Error).message})`);
      return undefined;
    }
  }
}

/**
 * kube-proxy parses every address with netutils.ParseIPSloppy (k8s.io/utils/net), the IPv4 parser
 * of Go before 1.17: a part with leading zeros is read as decimal ("010.1.2.3" is 10.1.2.3, not
 * octal). Objects stored by an older API server can still hold such text. Returns the canonical
 * dotted quad, or undefined when `s` is not a sloppy IPv4 address.
 */
export function sloppyIPv4(s: string): string | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1, 5).map(Number);
  return parts.every((n) => n <= 255) ? parts.join('.') : undefined;
}

/** netutils.ParseCIDRSloppy's address part, as sloppyIPv4. */
function sloppyCidr(s: string): string {
  const slash = s.indexOf('/');
  const fixed = sloppyIPv4(slash < 0 ? s : s.slice(0, slash));
  return fixed === undefined ? s : slash < 0 ? fixed : fixed + s.slice(slash);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const satisfies readonly Protocol[];
const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const satisfies readonly ServiceType[];
const POLICIES = ['Cluster', 'Local'] as const satisfies readonly TrafficPolicy[];
const FAMILY_POLICIES = ['SingleStack', 'PreferDualStack', 'RequireDualStack'] as const satisfies readonly IpFamilyPolicy[];
const DISTRIBUTIONS = ['PreferClose', 'PreferSameZone', 'PreferSameNode'] as const satisfies readonly TrafficDistribution[];
// kube-apiserver's limit on sessionAffinityConfig.clientIP.timeoutSeconds (MaxClientIPServiceAffinitySeconds)
const MAX_AFFINITY_SECONDS = 86400;
const DEFAULT_AFFINITY_SECONDS = 10800;
/**
 * Objects kube-proxy never sees: its informers list Services and EndpointSlices with the selector
 * `!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`
 * (cmd/kube-proxy/app/server.go, ProxyServer.Run). The kube source asks the API server the same;
 * compile applies it too, for the manifests source.
 */
export const LABEL_SERVICE_PROXY_NAME = 'service.kubernetes.io/service-proxy-name';
export const LABEL_HEADLESS = 'service.kubernetes.io/headless';

function notOurs(labels: Obj): boolean {
  return Object.hasOwn(labels, LABEL_SERVICE_PROXY_NAME) || Object.hasOwn(labels, LABEL_HEADLESS);
}
// an IANA service name: what a named targetPort must look like
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;

function familyName(v: string): Family | 0 {
  return v === 'IPv4' ? 4 : v === 'IPv6' ? 6 : 0;
}

function metaOf(c: Checker, raw: Obj): { namespace: string; name: string; labels: Obj; annotations: Obj } {
  const meta = c.obj(raw.metadata, 'metadata') ?? {};
  const name = c.str(meta.name, 'metadata.name') ?? '';
  if (!name) c.reject('metadata.name', 'is required');
  const namespace = c.str(meta.namespace, 'metadata.namespace') || 'default';
  // slices find their Service by namespace and name, so the object's own identity is the key
  // (it equals the store's key for anything a source delivers)
  if (name) c.key = `${namespace}/${name}`;
  return {
    namespace, name,
    labels: c.obj(meta.labels, 'metadata.labels') ?? {},
    annotations: c.obj(meta.annotations, 'metadata.annotations') ?? {},
  };
}

/**
 * A Service as kube-proxy reads it (pkg/proxy/serviceport.go newBaseServiceInfo). Enum values a
 * newer API server may add do not reject it: kube-proxy's code treats a value it does not know as
 * its default (an unknown sessionAffinity is no affinity, an unknown traffic policy is not Local,
 * an ingress whose ipMode is not VIP is skipped, trafficDistribution is never read), so we do the
 * same and warn. A nodePort is any valid port: the API server's --service-node-port-range decides.
 */
export function normalizeService(raw: unknown, key: string, errors: ObjectError[]): ServiceModel | null {
  const c = new Checker('Service', key, errors);
  if (!isObj(raw)) {
    c.reject('', `must be an object, got ${describe(raw)}`);
    return null;
  }
  const meta = metaOf(c, raw);
  if (notOurs(meta.labels)) return null;
  const spec = c.obj(raw.spec, 'spec') ?? {};
  const status = c.obj(raw.status, 'status') ?? {};
  const typeRaw = c.lenient(spec.type, 'spec.type', SERVICE_TYPES, 'ClusterIP', null,
    'served as ClusterIP (its nodePorts and load-balancer IPs are not)');
  const typeKnown = typeRaw !== null;
  const type: ServiceType = typeRaw ?? 'ClusterIP';

  // clusterIP / clusterIPs / ipFamilies
  const clusterIPText = c.str(spec.clusterIP, 'spec.clusterIP') ?? '';
  const headless = clusterIPText === 'None';
  const clusterIPs: string[] = [];
  if (!headless && clusterIPText) {
    const ip = c.ip(clusterIPText, 'spec.clusterIP');
    if (ip) clusterIPs.push(ip);
  }
  c.arr(spec.clusterIPs, 'spec.clusterIPs').forEach((v, i) => {
    const field = `spec.clusterIPs[${i}]`;
    if (v === 'None') {
      if (i !== 0 || (clusterIPText && !headless)) c.reject(field, 'None must be the only clusterIP');
      return;
    }
    const ip = c.ip(v, field);
    if (!ip) return;
    if (i === 0) {
      if (clusterIPs.length && clusterIPs[0] !== ip) c.reject(field, `must equal spec.clusterIP ${clusterIPs[0]}`);
      if (headless) c.reject(field, 'must be None when spec.clusterIP is None');
      if (!clusterIPs.length && !headless) clusterIPs.push(ip);
    } else if (i === 1) {
      if (clusterIPs[0] !== undefined && ipFamily(clusterIPs[0]) === ipFamily(ip)) {
        c.reject(field, 'a dual-stack Service needs one clusterIP of each family');
      } else clusterIPs.push(ip);
    } else c.reject(field, 'at most two clusterIPs (one per family)');
  });
  const ipFamilies: Family[] = [];
  c.arr(spec.ipFamilies, 'spec.ipFamilies').forEach((v, i) => {
    const field = `spec.ipFamilies[${i}]`;
    const f = typeof v === 'string' ? familyName(v) : 0;
    if (!f) c.reject(field, `unknown value ${describe(v)} (expected IPv4 or IPv6)`);
    else if (ipFamilies.includes(f)) c.reject(field, `duplicate family ${v}`);
    else ipFamilies.push(f);
  });
  // the alpha field of Kubernetes 1.16-1.19 (seed 004 shows it); honoured when ipFamilies is absent
  if (!ipFamilies.length && spec.ipFamily !== undefined) {
    const f = typeof spec.ipFamily === 'string' ? familyName(spec.ipFamily) : 0;
    if (!f) c.reject('spec.ipFamily', `unknown value ${describe(spec.ipFamily)} (expected IPv4 or IPv6)`);
    else ipFamilies.push(f);
  }
  clusterIPs.forEach((ip, i) => {
    const f = ipFamily(ip);
    if (ipFamilies[i] !== undefined && ipFamilies[i] !== f) {
      c.reject(`spec.ipFamilies[${i}]`, `does not match the family of clusterIP ${ip}`);
    }
  });
  // kube-proxy never reads ipFamilyPolicy (it serves the clusterIPs given); only allocation does
  const derivedPolicy: IpFamilyPolicy = clusterIPs.length > 1 || ipFamilies.length > 1 ? 'RequireDualStack' : 'SingleStack';
  const ipFamilyPolicy = c.lenient(spec.ipFamilyPolicy, 'spec.ipFamilyPolicy', FAMILY_POLICIES, derivedPolicy, derivedPolicy,
    `read as ${derivedPolicy}`);
  if (ipFamilyPolicy === 'SingleStack' && (clusterIPs.length > 1 || ipFamilies.length > 1)) {
    c.reject('spec.ipFamilyPolicy', 'SingleStack allows one IP family');
  }

  // ports
  const ports: ServicePortModel[] = [];
  const rawPorts = c.arr(spec.ports, 'spec.ports');
  const seenPort = new Map<string, number>();
  const seenName = new Map<string, number>();
  const seenNodePort = new Map<string, number>();
  const usesNodePorts = type === 'NodePort' || type === 'LoadBalancer';
  let skippedPorts = 0;
  rawPorts.forEach((rp, i) => {
    const f = `spec.ports[${i}]`;
    const p = c.obj(rp, f);
    if (!p) {
      if (rp === null || rp === undefined) c.reject(f, 'must be an object');
      return;
    }
    const name = c.str(p.name, `${f}.name`) ?? '';
    const protocol = c.lenient(p.protocol, `${f}.protocol`, PROTOCOLS, 'TCP', null, 'this port is not served');
    if (protocol === null) {
      skippedPorts++;
      return;
    }
    const port = c.int(p.port, `${f}.port`, 1, 65535, 'a port number');
    if (p.port === undefined || p.port === null) c.reject(`${f}.port`, 'is required');
    let targetPort: number | string | undefined;
    // 0 and "" mean unset: the API server defaults them to the port (SetDefaults_Service)
    if (p.targetPort === 0 || p.targetPort === '') {
      targetPort = undefined;
    } else if (typeof p.targetPort === 'string' && /^\d+$/.test(p.targetPort)) {
      targetPort = c.int(Number(p.targetPort), `${f}.targetPort`, 1, 65535, 'a port number or name');
    } else if (typeof p.targetPort === 'string') {
      if (!PORT_NAME.test(p.targetPort)) c.reject(`${f}.targetPort`, `${JSON.stringify(p.targetPort)} is not a valid port name`);
      else targetPort = p.targetPort;
    } else if (p.targetPort !== undefined && p.targetPort !== null) {
      targetPort = c.int(p.targetPort, `${f}.targetPort`, 1, 65535, 'a port number or name');
    }
    let nodePort = 0;
    if (p.nodePort !== undefined && p.nodePort !== null && p.nodePort !== 0) {
      if (!typeKnown) {
        c.warn(`${f}.nodePort`, `ignored: type ${describe(spec.type)} is unknown`);
      } else if (!usesNodePorts) {
        c.reject(`${f}.nodePort`, `may not be used when type is ${type}`);
      } else {
        // kube-proxy serves whatever nodePort the API server allocated or accepted
        // (its --service-node-port-range decides); only the standalone allocator has a range
        nodePort = c.int(p.nodePort, `${f}.nodePort`, 1, 65535, 'a port number') ?? 0;
      }
    }
    if (port === undefined) return;
    const pk = `${port}/${protocol}`;
    if (seenPort.has(pk)) c.reject(f, `duplicate port ${pk} (also spec.ports[${seenPort.get(pk)}])`);
    seenPort.set(pk, i);
    if (seenName.has(name)) {
      c.reject(`${f}.name`, name ? `duplicate port name ${JSON.stringify(name)}` : 'every port of a multi-port Service needs a name');
    }
    seenName.set(name, i);
    if (nodePort) {
      const nk = `${nodePort}/${protocol}`;
      if (seenNodePort.has(nk)) c.reject(`${f}.nodePort`, `duplicate nodePort ${nk} (also spec.ports[${seenNodePort.get(nk)}])`);
      seenNodePort.set(nk, i);
    }
    ports.push({ name, protocol, port, targetPort: targetPort ?? port, nodePort });
  });
  if (!ports.length && !skippedPorts && !headless && type !== 'ExternalName' && !c.failed) {
    c.reject('spec.ports', 'a Service needs at least one port');
  }

  const externalIPs: string[] = [];
  c.arr(spec.externalIPs, 'spec.externalIPs').forEach((v, i) => {
    const ip = c.ip(v, `spec.externalIPs[${i}]`);
    if (ip && !externalIPs.includes(ip)) externalIPs.push(ip);
  });

  const loadBalancerIngressIPs: string[] = [];
  const lbStatus = c.obj(status.loadBalancer, 'status.loadBalancer') ?? {};
  c.arr(lbStatus.ingress, 'status.loadBalancer.ingress').forEach((v, i) => {
    const f = `status.loadBalancer.ingress[${i}]`;
    const ing = c.obj(v, f);
    if (!ing || ing.ip === undefined || ing.ip === null || ing.ip === '') return; // hostname-only ingress
    const ip = c.ip(ing.ip, `${f}.ip`);
    // kube-proxy's IsVIPMode (pkg/proxy/util): only an unset ipMode or VIP is served; Proxy
    // (KEP-1860: the load balancer delivers to the node address) and any newer mode are skipped
    const mode = c.lenient(ing.ipMode, `${f}.ipMode`, ['VIP', 'Proxy'] as const, 'VIP', 'Proxy', 'this ingress IP is not served (only VIP is)');
    if (ip && mode === 'VIP' && !loadBalancerIngressIPs.includes(ip)) loadBalancerIngressIPs.push(ip);
  });
  const lbIPText = c.str(spec.loadBalancerIP, 'spec.loadBalancerIP');
  const loadBalancerIP = lbIPText ? c.ip(lbIPText, 'spec.loadBalancerIP') ?? '' : '';

  // the spec field only, whitespace trimmed (newBaseServiceInfo): kube-proxy never reads the
  // service.beta.kubernetes.io/load-balancer-source-ranges annotation (cloud providers do)
  const loadBalancerSourceRanges: string[] = [];
  c.arr(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges').forEach((v, i) => {
    const cidr = c.cidr(v, `spec.loadBalancerSourceRanges[${i}]`);
    if (cidr && !loadBalancerSourceRanges.includes(cidr)) loadBalancerSourceRanges.push(cidr);
  });

  const affinity = c.lenient(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP'] as const, 'None', 'None', 'no session affinity');
  let sessionAffinitySeconds = 0;
  if (affinity === 'ClientIP') {
    const cfg = c.obj(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig') ?? {};
    const cip = c.obj(cfg.clientIP, 'spec.sessionAffinityConfig.clientIP') ?? {};
    sessionAffinitySeconds = c.int(cip.timeoutSeconds, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
      1, MAX_AFFINITY_SECONDS, 'a number of seconds') ?? DEFAULT_AFFINITY_SECONDS;
  }

  // "Global" is the pre-1.20 spelling of Cluster, still accepted by kube-proxy's helpers
  const eTPRaw = spec.externalTrafficPolicy === 'Global' ? 'Cluster' : spec.externalTrafficPolicy;
  // kube-proxy's ExternalPolicyLocal / InternalPolicyLocal (pkg/api/v1/service): Local or not
  const externalTrafficPolicy = c.lenient(eTPRaw, 'spec.externalTrafficPolicy', POLICIES, 'Cluster', 'Cluster', 'read as Cluster');
  const internalTrafficPolicy = c.lenient(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy', POLICIES, 'Cluster', 'Cluster', 'read as Cluster');
  // kube-proxy reads only the hints the EndpointSlice controller derives from it; standalone
  // hint synthesis (topology.ts) is its only reader here
  const trafficDistribution = c.lenient(spec.trafficDistribution, 'spec.trafficDistribution', DISTRIBUTIONS, null, null, 'ignored');
  let healthCheckNodePort = 0;
  if (spec.healthCheckNodePort !== undefined && spec.healthCheckNodePort !== null && spec.healthCheckNodePort !== 0) {
    healthCheckNodePort = c.int(spec.healthCheckNodePort, 'spec.healthCheckNodePort', 1, 65535, 'a port number') ?? 0;
  }
  const allocateLoadBalancerNodePorts = c.bool(spec.allocateLoadBalancerNodePorts, 'spec.allocateLoadBalancerNodePorts') ?? true;

  if (c.failed) return null;
  return {
    key: c.key, namespace: meta.namespace, name: meta.name, type, headless, clusterIPs: tight(clusterIPs), ipFamilies: tight(ipFamilies),
    ipFamilyPolicy, ports: tight(ports), externalIPs: tight(externalIPs), loadBalancerIngressIPs: tight(loadBalancerIngressIPs), loadBalancerIP,
    loadBalancerSourceRanges: tight(loadBalancerSourceRanges), sessionAffinitySeconds,
    externalTrafficPolicy, internalTrafficPolicy, trafficDistribution, healthCheckNodePort, allocateLoadBalancerNodePorts,
  };
}

export interface NormalizedSlice {
  /** namespace/service-name of the Service it belongs to; '' when unlabelled */
  serviceKey: string;
  name: string;
  /** 0 for FQDN slices, which kube-proxy ignores */
  family: Family | 0;
  endpoints: EndpointModel[];
}

/** absent in the API's sense: what Checker's str, bool and obj read as unset */
const unset = (v: unknown): v is undefined | null => v === undefined || v === null;

/**
 * An IPv4 endpoint that the checked path would take without a word, as that path makes it:
 * addresses all canonical dotted quads, conditions booleans or unset, nodeName and zone strings or
 * unset, no hints. undefined for anything else (the checked path decides).
 */
function plainEndpoint(e: unknown, family: Family | 0, ports: ReadonlyMap<string, number>): EndpointModel | undefined {
  if (family !== 4 || !isObj(e)) return undefined;
  const addrs = e.addresses, cond = e.conditions, nodeName = e.nodeName, zone = e.zone;
  if (!Array.isArray(addrs) || !addrs.length || !unset(e.hints)) return undefined;
  for (const a of addrs) if (typeof a !== 'string' || !isIPv4(a)) return undefined;
  if (!unset(nodeName) && typeof nodeName !== 'string') return undefined;
  if (!unset(zone) && typeof zone !== 'string') return undefined;
  let ready: unknown, serving: unknown, terminating: unknown;
  if (!unset(cond)) {
    if (!isObj(cond)) return undefined;
    ready = cond.ready;
    serving = cond.serving;
    terminating = cond.terminating;
    if ((!unset(ready) && typeof ready !== 'boolean') || (!unset(serving) && typeof serving !== 'boolean')
      || (!unset(terminating) && typeof terminating !== 'boolean')) return undefined;
  }
  return plainModel(addrs[0] as string, family, ready, serving, terminating, nodeName, zone, ports);
}

/**
 * An endpoint's model from values the plain path has checked (booleans or unset, strings or unset):
 * an unset condition reads as kube-proxy reads it (ready and serving true, terminating false).
 */
function plainModel(address: string, family: Family, ready: unknown, serving: unknown, terminating: unknown, nodeName: unknown, zone: unknown,
  ports: ReadonlyMap<string, number>): EndpointModel {
  return {
    address, family, ready: (ready as boolean | null | undefined) ?? true, serving: (serving as boolean | null | undefined) ?? true,
    terminating: (terminating as boolean | null | undefined) ?? false, nodeName: (nodeName as string | null | undefined) ?? '',
    zone: (zone as string | null | undefined) ?? '', forZones: null, forNodes: null, ports,
  };
}

/**
 * checked: every endpoint through the checked path (the tests compare it with the plain one);
 * the result is the same either way. withEndpoints false: the same problems and the same result but
 * for `endpoints`, which holds only those of the checked path (a first compile's pass over a big
 * store, which needs a slice's problems and Service now and its endpoints only when that Service
 * compiles: a million endpoint models fewer at 100,000 slices).
 */
export function normalizeEndpointSlice(raw: unknown, key: string, errors: ObjectError[], checked = false, withEndpoints = true): NormalizedSlice | null {
  const c = new Checker('EndpointSlice', key, errors);
  if (!isObj(raw)) {
    c.reject('', `must be an object, got ${describe(raw)}`);
    return null;
  }
  const meta = metaOf(c, raw);
  if (notOurs(meta.labels)) return null;
  const svcName = c.str(meta.labels[LABEL_SERVICE_NAME], `metadata.labels[${LABEL_SERVICE_NAME}]`) ?? '';
  const addressType = c.oneOf(raw.addressType, 'addressType', ['IPv4', 'IPv6', 'FQDN'] as const, 'IPv4');
  if (raw.addressType === undefined || raw.addressType === null) c.reject('addressType', 'is required');
  const family = addressType === 'FQDN' ? 0 : familyName(addressType);

  const ports = new Map<string, number>();
  c.arr(raw.ports, 'ports').forEach((rp, i) => {
    const f = `ports[${i}]`;
    const p = c.obj(rp, f);
    if (!p) return;
    const name = c.str(p.name, `${f}.name`) ?? '';
    // a port of a protocol we do not know can match no Service port we serve
    const protocol = c.lenient(p.protocol, `${f}.protocol`, PROTOCOLS, 'TCP', null, 'this port is not used');
    // a slice port without a number means "all ports" in the API; kube-proxy skips such ports
    if (p.port === undefined || p.port === null || protocol === null) return;
    const port = c.int(p.port, `${f}.port`, 1, 65535, 'a port number');
    if (port === undefined) return;
    const k = `${name}/${protocol}`;
    if (ports.has(k)) c.reject(f, `duplicate port ${name ? JSON.stringify(name) : '(unnamed)'}/${protocol}`);
    ports.set(k, port);
  });

  const endpoints: EndpointModel[] = [];
  const endpoint = (re: unknown, i: number): void => {
    // most endpoints: no field names built for checks that pass (ten per endpoint, a million
    // endpoints at 100,000 Services); anything else takes the checked path below, which reports it
    const plain = checked ? undefined : plainEndpoint(re, family, ports);
    if (plain) {
      endpoints.push(plain);
      return;
    }
    const f = `endpoints[${i}]`;
    const e = c.obj(re, f);
    if (!e) return;
    const addrs = c.arr(e.addresses, `${f}.addresses`);
    if (!addrs.length) {
      c.reject(`${f}.addresses`, 'needs at least one address');
      return;
    }
    let address: string | undefined;
    addrs.forEach((a, j) => {
      const af = `${f}.addresses[${j}]`;
      if (family === 0) {
        c.str(a, af);
        return;
      }
      const ip = c.ip(a, af);
      if (ip && ipFamily(ip) !== family) c.reject(af, `${ip} is not an ${addressType} address`);
      // kube-proxy uses the first address only (the others are for other consumers)
      if (j === 0) address = ip;
    });
    const cond = c.obj(e.conditions, `${f}.conditions`) ?? {};
    // as EndpointSliceCache.addEndpoints reads them: an unset ready or serving is true, an unset
    // terminating false (so {ready: false, terminating: true} is serving-terminating: KEP-1669's fallback)
    const ready = c.bool(cond.ready, `${f}.conditions.ready`) ?? true;
    const serving = c.bool(cond.serving, `${f}.conditions.serving`) ?? true;
    const terminating = c.bool(cond.terminating, `${f}.conditions.terminating`) ?? false;
    const nodeName = c.str(e.nodeName, `${f}.nodeName`) ?? '';
    const zone = c.str(e.zone, `${f}.zone`) ?? '';
    const hints = c.obj(e.hints, `${f}.hints`);
    const hintNames = (v: unknown, hf: string): string[] | null => {
      const names: string[] = [];
      c.arr(v, hf).forEach((h, k) => {
        const ho = c.obj(h, `${hf}[${k}]`);
        const n = ho ? c.str(ho.name, `${hf}[${k}].name`) : undefined;
        if (n) names.push(n);
      });
      return names.length ? names : null;
    };
    const forZones = hints ? hintNames(hints.forZones, `${f}.hints.forZones`) : null;
    const forNodes = hints ? hintNames(hints.forNodes, `${f}.hints.forNodes`) : null;
    if (family === 0 || !address) return;
    endpoints.push({ address, family, ready, serving, terminating, nodeName, zone, forZones, forNodes, ports });
  };
  // the store's packed endpoints (source/slim.ts) read as they are; one the plain path does not take
  // is rebuilt as the API's object for the checked path (the same errors, by the same index)
  const packed = packedEndpoints(raw);
  if (packed) {
    for (let i = 0, n = 0; i < packed.length; n++) {
      const part = packed[i + 1] as EndpointPart;
      const address = packed[i] as string;
      if (!checked && family === 4 && isIPv4(address)) {
        const cond = part.conditions;
        if (withEndpoints) endpoints.push(plainModel(address, family, cond?.ready, cond?.serving, cond?.terminating, part.nodeName, part.zone, ports));
      } else endpoint(unpackEndpoint(packed, i), n);
      i += part.ref ? 3 : 2;
    }
  } else c.arr(raw.endpoints, 'endpoints').forEach(endpoint);
  if (!svcName && !c.failed) c.warn(`metadata.labels[${LABEL_SERVICE_NAME}]`, 'missing: the slice belongs to no Service and is ignored');
  if (c.failed) return null;
  return { serviceKey: svcName ? `${meta.namespace}/${svcName}` : '', name: meta.name, family, endpoints: tight(endpoints) };
}

/** A Node's addresses and zone; a bad address is skipped (only this node's addresses matter, and kube-proxy does the same). */
export function normalizeNode(raw: unknown, key: string): NodeModel | null {
  if (!isObj(raw)) return null;
  const meta = isObj(raw.metadata) ? raw.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : key;
  const labels = isObj(meta.labels) ? meta.labels : {};
  const zone = typeof labels[LABEL_ZONE] === 'string' ? labels[LABEL_ZONE] as string : '';
  const status = isObj(raw.status) ? raw.status : {};
  const internalIPs: string[] = [];
  const externalIPs: string[] = [];
  if (Array.isArray(status.addresses)) {
    for (const a of status.addresses) {
      if (!isObj(a) || typeof a.address !== 'string') continue;
      // getNodeIPs reads them with ParseIPSloppy too
      const ip = sloppyIPv4(a.address) ?? (ipFamily(a.address) ? canonicalIp(a.address) : undefined);
      if (!ip) continue;
      const list = a.type === 'InternalIP' ? internalIPs : a.type === 'ExternalIP' ? externalIPs : null;
      if (list && !list.includes(ip)) list.push(ip);
    }
  }
  // kube-proxy's NodeCIDR detector reads spec.podCIDRs (the API server mirrors podCIDR into it);
  // an entry that is not a CIDR is skipped, as a Node is never rejected
  const spec = isObj(raw.spec) ? raw.spec : {};
  const cidrs = Array.isArray(spec.podCIDRs) ? spec.podCIDRs : typeof spec.podCIDR === 'string' ? [spec.podCIDR] : [];
  const podCIDRs: string[] = [];
  for (const c of cidrs) {
    if (typeof c !== 'string' || !c.includes('/')) continue;
    try {
      const p = formatCidr(parseCidr(c));
      if (!podCIDRs.includes(p)) podCIDRs.push(p);
    } catch { /* not a CIDR */ }
  }
  return { name, zone, internalIPs, externalIPs, ...(podCIDRs.length && { podCIDRs }) };
}

function byKey<T>(m: ReadonlyMap<string, T>): [string, T][] {
  return [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/**
 * Normalized objects by raw object identity, so a sync that follows a small change re-validates
 * only what changed. Sound because a snapshot's objects are never mutated in place (informer caches
 * and the manifests source both replace an object on change).
 */
export interface NormalizeCache {
  services: WeakMap<object, { key: string; model: ServiceModel | null; errors: ObjectError[] }>;
  slices: WeakMap<object, { key: string; slice: NormalizedSlice | null; errors: ObjectError[] }>;
}

export function newNormalizeCache(): NormalizeCache {
  return { services: new WeakMap(), slices: new WeakMap() };
}

function cached<R>(map: WeakMap<object, { key: string; errors: ObjectError[] } & R>, raw: unknown, key: string,
  errors: ObjectError[], make: (errs: ObjectError[]) => R): R {
  const obj = typeof raw === 'object' && raw !== null ? raw : null;
  const hit = obj ? map.get(obj) : undefined;
  if (hit && hit.key === key) {
    for (const e of hit.errors) errors.push(e);
    return hit;
  }
  const errs: ObjectError[] = [];
  const r = make(errs);
  for (const e of errs) errors.push(e);
  if (obj) map.set(obj, { key, errors: errs, ...r });
  return r;
}

/** The whole snapshot, normalized; errors in deterministic order (Services, then slices, by key). */
export function normalize(snapshot: Snapshot, cache: NormalizeCache = newNormalizeCache()): Model {
  const errors: ObjectError[] = [];
  const services: ServiceModel[] = [];
  for (const [key, raw] of byKey(snapshot.services)) {
    const { model } = cached(cache.services, raw, key, errors, (errs) => ({ model: normalizeService(raw, key, errs) }));
    if (model) services.push(model);
  }
  const endpoints = new Map<string, ServiceEndpoints>();
  // kube-proxy merges a Service's slices in slice-name order; the order only matters for duplicates
  for (const [key, raw] of byKey(snapshot.endpointSlices)) {
    const { slice: sl } = cached(cache.slices, raw, key, errors, (errs) => ({ slice: normalizeEndpointSlice(raw, key, errs) }));
    if (!sl || !sl.serviceKey || sl.family === 0) continue;
    let se = endpoints.get(sl.serviceKey);
    if (!se) endpoints.set(sl.serviceKey, se = { v4: [], v6: [], from: [] });
    const list = sl.family === 4 ? se.v4 : se.v6;
    for (const e of sl.endpoints) list.push(e);
    se.from!.push(sl);
  }
  const nodes = new Map<string, NodeModel>();
  for (const [key, raw] of snapshot.nodes) {
    const n = normalizeNode(raw, key);
    if (n) nodes.set(n.name, n);
  }
  return { services, endpoints, nodes, errors };
}
