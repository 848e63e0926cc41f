// Snapshot -> the desired frontends and backends of ONE node, with kube-proxy's semantics
// (pkg/proxy: servicechangetracker, endpointschangetracker, topology.go). Pure and total: bad objects
// become ObjectErrors, never exceptions; only bad options (operator input) throw, as KbpError CONFIG.
//
// Cost is linear in Services x endpoints: one pass per Service port and family, sort keys computed
// once per address; no lookup scans another Service.
import type { Snapshot } from '../source/types.js';
import type { FrontendType, NodeBackend, NodeFrontend, NodeState, Protocol, Scope } from '../model/compiled.js';
import {
  defaultNodePortRange,
  type EndpointModel, type Model, type NodePortRange, type ObjectError, type ServiceModel, type ServicePortModel,
} from '../model/types.js';
import { newNormalizeCache, normalize } from '../model/normalize.js';
import { addressKey, backendKey, frontendKey } from '../model/canonical.js';
import { canonicalIp, cidrContains, ipFamily, parseCidr, type Cidr, type Family } from '../util/ip.js';
import { KbpError } from '../util/errors.js';
import { allocate, defaultServiceCidrs, parseServiceCidrs, type Allocation } from './allocate.js';

export interface CompileOptions {
  /** this node; endpoints whose nodeName equals it are local */
  nodeName: string;
  /** added to the Node object's InternalIP/ExternalIP addresses */
  nodeIPs?: string[];
  /**
   * kube-proxy's --nodeport-addresses: CIDRs, or 'primary' (the node's first InternalIP per family).
   * Unset: every known node address. A CIDR of a whole family (0.0.0.0/0, ::/0) answers on any
   * address (printed 0.0.0.0 / ::).
   */
  nodePortAddresses?: string[];
  /** CVE-2020-8554 mitigation: externalIPs outside these CIDRs get no frontend (and a warning). Unset: all allowed. */
  externalIPAllowCidrs?: string[];
  /** for standalone clusterIP allocation; default 10.96.0.0/12 and fd00:10:96::/108 */
  serviceCidrs?: string[];
  /** default 30000-32767 */
  nodePortRange?: NodePortRange;
  /**
   * A manifests folder rather than an API server: allocate the clusterIPs and nodePorts that the
   * manifests leave out (kube-apiserver would have), and serve spec.loadBalancerIP, since no
   * controller fills status.loadBalancer. Default false.
   */
  standalone?: boolean;
}

export interface CompileResult {
  state: NodeState;
  errors: ObjectError[];
  /** the normalized model with allocations applied, for consumers such as healthCheckNodePort servers */
  services: CompiledService[];
}

export interface CompiledService {
  service: ServiceModel;
  clusterIPs: string[];
  nodePorts: number[];
  healthCheckNodePort: number;
}

interface ResolvedOptions {
  nodeName: string;
  zone: string;
  /** family -> NodePort addresses ('0.0.0.0' / '::' for any) */
  nodePortAddrs: Map<Family, string[]>;
  allow: Cidr[] | null;
  standalone: boolean;
}

function configError(message: string): KbpError {
  return new KbpError('KBP_ERR_CONFIG', message);
}

export function parseNodePortRange(text: string): NodePortRange {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  const min = m ? Number(m[1]) : NaN, max = m ? Number(m[2]) : NaN;
  if (!m || min < 1 || max > 65535 || min > max) throw configError(`bad nodePort range ${JSON.stringify(text)} (expected MIN-MAX within 1-65535)`);
  return { min, max };
}

function resolveNodePortAddresses(model: Model, opts: CompileOptions): Map<Family, string[]> {
  const node = model.nodes.get(opts.nodeName);
  const candidates: string[] = [];
  const add = (ip: string): void => {
    if (!candidates.includes(ip)) candidates.push(ip);
  };
  for (const ip of node?.internalIPs ?? []) add(ip);
  for (const ip of node?.externalIPs ?? []) add(ip);
  for (const text of opts.nodeIPs ?? []) {
    if (!ipFamily(text)) throw configError(`node IP ${JSON.stringify(text)} is not an IP address`);
    add(canonicalIp(text));
  }
  const out = new Map<Family, string[]>([[4, []], [6, []]]);
  const push = (f: Family, ip: string): void => {
    const l = out.get(f)!;
    if (!l.includes(ip)) l.push(ip);
  };
  const sel = (opts.nodePortAddresses ?? []).map((s) => s.trim()).filter(Boolean);
  if (!sel.length) {
    for (const ip of candidates) push(ipFamily(ip) as Family, ip);
    // nothing known about this node's addresses: answer on any address rather than on none
    for (const f of [4, 6] as const) if (!out.get(f)!.length) push(f, f === 4 ? '0.0.0.0' : '::');
    return out;
  }
  for (const s of sel) {
    if (s === 'primary') {
      for (const f of [4, 6] as const) {
        const ip = (node?.internalIPs ?? []).find((a) => ipFamily(a) === f)
          ?? (opts.nodeIPs ?? []).map(canonicalIp).find((a) => ipFamily(a) === f);
        if (ip) push(f, ip);
      }
      continue;
    }
    let cidr: Cidr;
    try {
      cidr = parseCidr(s);
    } catch (e) {
      throw configError(`--nodeport-addresses: ${(e as Error).message}`);
    }
    if (!s.includes('/')) throw configError(`--nodeport-addresses: ${JSON.stringify(s)} is not a CIDR or 'primary'`);
    if (cidr.prefix === 0) {
      push(cidr.family, cidr.family === 4 ? '0.0.0.0' : '::');
      continue;
    }
    for (const ip of candidates) if (cidrContains(cidr, ip)) push(ipFamily(ip) as Family, ip);
  }
  // an "any" address makes the specific ones of its family redundant
  for (const f of [4, 6] as const) {
    const any = f === 4 ? '0.0.0.0' : '::';
    if (out.get(f)!.includes(any)) out.set(f, [any]);
  }
  return out;
}

/** A backend candidate: one endpoint at the port one Service port resolves to. */
interface Candidate {
  ep: EndpointModel;
  key: string;
  forZones: string[] | null;
  forNodes: string[] | null;
  /** the backend this candidate becomes, built once and shared by every set that holds it */
  backend: NodeBackend;
}

// when the same address:port comes from two slices, keep the most useful one (kube-proxy keeps the ready one)
function rank(ep: EndpointModel): number {
  return ep.ready ? 2 : ep.serving && ep.terminating ? 1 : 0;
}

/** The candidates of one Service port, in canonical backend order, one per address:port. */
function resolveCandidates(eps: EndpointModel[], sp: ServicePortModel, nodeName: string): Candidate[] {
  // kube-proxy matches a Service port to the slice port of the same name and protocol (the slice
  // controller has already resolved targetPort into its number). Hand-written slices may instead
  // name the port after a named targetPort; accept that as a fallback.
  const byName = `${sp.name}/${sp.protocol}`;
  const byTarget = typeof sp.targetPort === 'string' ? `${sp.targetPort}/${sp.protocol}` : null;
  const out: Candidate[] = [];
  for (const ep of eps) {
    const port = ep.ports.get(byName) ?? (byTarget ? ep.ports.get(byTarget) : undefined);
    if (port === undefined) continue; // this endpoint's slice does not carry the port
    out.push({
      ep, key: backendKey(ep.addrKey, port), forZones: ep.forZones, forNodes: ep.forNodes,
      backend: { address: ep.address, port, terminating: !ep.ready, local: ep.nodeName === nodeName },
    });
  }
  if (out.length < 2) return out;
  out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : rank(b.ep) - rank(a.ep)));
  // duplicates are adjacent now, the best first
  let w = 1;
  for (let r = 1; r < out.length; r++) if (out[r]!.key !== out[w - 1]!.key) out[w++] = out[r]!;
  out.length = w;
  return out;
}

/**
 * The EndpointSlice controller's trafficDistribution heuristic, for slices that carry no hints
 * (hand-written ones in standalone mode): each endpoint is hinted for its own zone (PreferClose,
 * PreferSameZone) and, for PreferSameNode, also its own node; no hints at all when an endpoint lacks
 * the zone (or node), as the controller does.
 */
function synthesizeHints(svc: ServiceModel, cands: Candidate[]): void {
  const td = svc.trafficDistribution;
  if (!td || !cands.length) return;
  if (cands.some((c) => c.forZones || c.forNodes)) return; // a controller already decided
  const serving = cands.filter((c) => c.ep.serving);
  const zones = serving.every((c) => c.ep.zone);
  const nodes = td === 'PreferSameNode' && serving.every((c) => c.ep.nodeName);
  for (const c of cands) {
    if (zones && c.ep.zone) c.forZones = [c.ep.zone];
    if (nodes && c.ep.nodeName) c.forNodes = [c.ep.nodeName];
  }
}

type TopologyMode = '' | 'node' | 'zone';

/**
 * kube-proxy's topologyModeFromHints: node hints when every ready endpoint has some and one names
 * this node; else zone hints when every ready endpoint has some and one names this node's zone;
 * else no topology (hints ignored).
 */
function topologyMode(cands: Candidate[], nodeName: string, zone: string): TopologyMode {
  let allNode = true, hasNode = false, allZone = true, hasZone = false;
  for (const c of cands) {
    if (!c.ep.ready) continue;
    if (!c.forZones) allZone = false;
    else if (zone && c.forZones.includes(zone)) hasZone = true;
    if (!c.forNodes) allNode = false;
    else if (c.forNodes.includes(nodeName)) hasNode = true;
  }
  if (allNode && hasNode) return 'node';
  if (allZone && hasZone) return 'zone';
  return '';
}

function usable(c: Candidate): boolean {
  return c.ep.ready || (c.ep.serving && c.ep.terminating);
}

// KEP-1669: ready endpoints take new flows; serving+terminating ones are listed too, flagged, so
// they keep draining their flows and take new ones only when nothing is ready
function toBackends(cands: Candidate[], keep: (c: Candidate) => boolean): NodeBackend[] {
  const out: NodeBackend[] = [];
  for (const c of cands) if (usable(c) && keep(c)) out.push(c.backend);
  return out;
}

interface Sets {
  cluster: NodeBackend[];
  local: NodeBackend[];
}

function endpointSets(svc: ServiceModel, cands: Candidate[], ro: ResolvedOptions): Sets {
  synthesizeHints(svc, cands);
  const mode = topologyMode(cands, ro.nodeName, ro.zone);
  const inTopology = mode === '' ? () => true
    : mode === 'node' ? (c: Candidate) => !!c.forNodes?.includes(ro.nodeName)
      : (c: Candidate) => !!c.forZones?.includes(ro.zone);
  return {
    cluster: toBackends(cands, inTopology),
    local: toBackends(cands, (c) => c.backend.local),
  };
}

interface FrontendSpec {
  type: FrontendType;
  address: string;
  port: number;
}

function compileService(svc: ServiceModel, alloc: Allocation, model: Model, ro: ResolvedOptions,
  errors: ObjectError[], out: RawFrontend[], keyCache: Map<string, string>): void {
  const eps = model.endpoints.get(svc.key);
  const warn = (field: string, message: string): void => {
    errors.push({ kind: 'Service', key: svc.key, field, message, severity: 'warning' });
  };

  const lbIPs = svc.type === 'LoadBalancer'
    ? [...svc.loadBalancerIngressIPs, ...(ro.standalone && svc.loadBalancerIP && !svc.loadBalancerIngressIPs.includes(svc.loadBalancerIP) ? [svc.loadBalancerIP] : [])]
    : [];
  const externalIPs = svc.externalIPs.filter((ip, i) => {
    if (!ro.allow || ro.allow.some((c) => cidrContains(c, ip))) return true;
    warn(`spec.externalIPs[${i}]`, `${ip} is outside the allowed externalIP CIDRs: no frontend (CVE-2020-8554)`);
    return false;
  });
  for (const ip of [...externalIPs, ...lbIPs]) {
    if (!alloc.clusterIPs.has(ipFamily(ip) as Family)) {
      const field = externalIPs.includes(ip) ? `spec.externalIPs[${svc.externalIPs.indexOf(ip)}]` : 'status.loadBalancer.ingress';
      warn(field, `${ip} is of a family the Service does not have (ipFamilies): ignored`);
    }
  }

  for (const [family, clusterIP] of alloc.clusterIPs) {
    const famEps = eps ? (family === 4 ? eps.v4 : eps.v6) : [];
    const fLB = lbIPs.filter((ip) => ipFamily(ip) === family);
    const fExt = externalIPs.filter((ip) => ipFamily(ip) === family);
    // kube-proxy keeps only the ranges of the frontend's family; if none is left it filters nothing
    const ranges = svc.loadBalancerSourceRanges.filter((r) => ipFamily(r.slice(0, r.indexOf('/'))) === family);
    if (fLB.length && svc.loadBalancerSourceRanges.length && !ranges.length) {
      warn('spec.loadBalancerSourceRanges', `no IPv${family} range: the IPv${family} load-balancer IPs accept every source (as kube-proxy)`);
    }
    svc.ports.forEach((sp, i) => {
      const sets = endpointSets(svc, resolveCandidates(famEps, sp, ro.nodeName), ro);
      const nodePort = alloc.nodePorts[i] ?? 0;
      const base = { service: svc.key, portName: sp.name, protocol: sp.protocol };
      const emit = (f: FrontendSpec, scope: Scope, backends: NodeBackend[], snatRemote: boolean, sourceRanges: string[]): void => {
        let ak = keyCache.get(f.address);
        if (ak === undefined) keyCache.set(f.address, ak = addressKey(f.address));
        out.push({
          key: frontendKey(ak, f.port, sp.protocol, scope),
          fe: { ...base, type: f.type, address: f.address, port: f.port, scope, backends: backends.slice(), sessionAffinitySeconds: svc.sessionAffinitySeconds, sourceRanges, snatRemote },
        });
      };
      emit({ type: 'ClusterIP', address: clusterIP, port: sp.port }, 'internal',
        svc.internalTrafficPolicy === 'Local' ? sets.local : sets.cluster, false, []);

      const external: { f: FrontendSpec; ranges: string[] }[] = [];
      if (nodePort) {
        for (const a of ro.nodePortAddrs.get(family) ?? []) external.push({ f: { type: 'NodePort', address: a, port: nodePort }, ranges: [] });
      }
      // only the load-balancer IPs are filtered by source: kube-proxy's firewall chain sits on the
      // LB IP rules, and NodePorts stay open to any source
      for (const a of fLB) external.push({ f: { type: 'LoadBalancer', address: a, port: sp.port }, ranges });
      for (const a of fExt) external.push({ f: { type: 'ExternalIP', address: a, port: sp.port }, ranges: [] });
      const local = svc.externalTrafficPolicy === 'Local';
      for (const { f, ranges: r } of external) {
        emit(f, 'external', local ? sets.local : sets.cluster, !local, r);
        // kube-proxy short-circuits in-cluster traffic to an eTP=Local Service's external addresses
        // to the cluster-wide endpoints (the EXT chain jumps pods and the host to the cluster chain)
        if (local) emit(f, 'internal', sets.cluster, false, r);
      }
    });
  }
}

interface RawFrontend {
  fe: NodeFrontend;
  key: string;
}

interface ServiceEntry {
  model: ServiceModel;
  from: object[];
  allocSig: string;
  frontends: RawFrontend[];
  warnings: ObjectError[];
}

function sameList(a: readonly object[], b: readonly object[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const noSlices: object[] = [];

/**
 * A compiler for one node that remembers its last run: objects whose identity did not change are
 * not re-validated, and a Service whose object, slices and allocation are unchanged reuses its
 * frontends. The agent keeps one and calls compile() on every sync; the result is always what a
 * fresh compile of the same snapshot gives. Treat returned states as immutable: frontends and
 * backends are shared between syncs.
 */
export class Compiler {
  readonly #opts: CompileOptions;
  readonly #range: NodePortRange;
  readonly #cidrs: ReturnType<typeof parseServiceCidrs>;
  readonly #allow: Cidr[] | null;
  readonly #normCache = newNormalizeCache();
  #entries = new Map<string, ServiceEntry>();
  #nodeSig = '';

  /** Validates the options; throws KbpError KBP_ERR_CONFIG naming the bad one. */
  constructor(opts: CompileOptions) {
    if (!opts.nodeName) throw configError('a node name is required');
    this.#opts = opts;
    this.#range = opts.nodePortRange ?? defaultNodePortRange;
    const r = this.#range;
    if (!Number.isInteger(r.min) || !Number.isInteger(r.max) || r.min < 1 || r.max > 65535 || r.min > r.max) {
      throw configError(`bad nodePort range ${r.min}-${r.max}`);
    }
    try {
      this.#cidrs = parseServiceCidrs(opts.serviceCidrs ?? defaultServiceCidrs);
    } catch (e) {
      throw configError(`service CIDRs: ${(e as Error).message}`);
    }
    this.#allow = opts.externalIPAllowCidrs
      ? opts.externalIPAllowCidrs.map((s) => {
        try {
          return parseCidr(s.trim());
        } catch (e) {
          throw configError(`externalIP allow list: ${(e as Error).message}`);
        }
      })
      : null;
    // option errors surface now rather than at the first sync
    resolveNodePortAddresses({ services: [], endpoints: new Map(), nodes: new Map(), errors: [] }, opts);
  }

  compile(snapshot: Snapshot): CompileResult {
    const opts = this.#opts;
    const model = normalize(snapshot, this.#range, this.#normCache);
    const errors = model.errors;
    const ro: ResolvedOptions = {
      nodeName: opts.nodeName,
      zone: model.nodes.get(opts.nodeName)?.zone ?? '',
      nodePortAddrs: resolveNodePortAddresses(model, opts),
      allow: this.#allow,
      standalone: opts.standalone ?? false,
    };
    // this node's zone and addresses shape every Service's frontends
    const nodeSig = JSON.stringify([ro.zone, [...ro.nodePortAddrs]]);
    if (nodeSig !== this.#nodeSig) this.#entries.clear();
    this.#nodeSig = nodeSig;

    const allocs = allocate(model.services, this.#cidrs, this.#range, errors, ro.standalone);
    const keyCache = new Map<string, string>();
    const raw: RawFrontend[] = [];
    const services: CompiledService[] = [];
    const entries = new Map<string, ServiceEntry>();
    for (const svc of model.services) {
      const alloc = allocs.get(svc.key);
      if (!alloc) continue; // headless, ExternalName, or rejected while allocating
      services.push({ service: svc, clusterIPs: [...alloc.clusterIPs.values()], nodePorts: alloc.nodePorts, healthCheckNodePort: alloc.healthCheckNodePort });
      const from = model.endpoints.get(svc.key)?.from ?? noSlices;
      const allocSig = `${[...alloc.clusterIPs.values()].join()}|${alloc.nodePorts.join()}`;
      let entry = this.#entries.get(svc.key);
      if (!entry || entry.model !== svc || entry.allocSig !== allocSig || !sameList(entry.from, from)) {
        entry = { model: svc, from, allocSig, frontends: [], warnings: [] };
        compileService(svc, alloc, model, ro, entry.warnings, entry.frontends, keyCache);
      }
      entries.set(svc.key, entry);
      for (const w of entry.warnings) errors.push(w);
      for (const f of entry.frontends) raw.push(f);
    }
    this.#entries = entries;

    // stable sort: among frontends with one key, the first Service by key wins (raw is in key order)
    const order = raw.map((r, i) => i);
    order.sort((a, b) => {
      const x = raw[a]!.key, y = raw[b]!.key;
      return x < y ? -1 : x > y ? 1 : a - b;
    });
    const frontends: NodeFrontend[] = [];
    let last: RawFrontend | undefined;
    for (const i of order) {
      const r = raw[i]!;
      if (last && last.key === r.key) {
        if (last.fe.service !== r.fe.service) {
          errors.push({
            kind: 'Service', key: r.fe.service, field: '', severity: 'warning',
            message: `${r.fe.type} ${fmtAddr(r.fe.address, r.fe.port)}/${r.fe.protocol} (${r.fe.scope}) is already served for ${last.fe.service}: ignored`,
          });
        }
        continue;
      }
      frontends.push(r.fe);
      last = r;
    }
    return { state: { frontends }, errors, services };
  }
}

/** One-shot compile (pure): the same as a fresh Compiler's first run. */
export function compile(snapshot: Snapshot, opts: CompileOptions): CompileResult {
  return new Compiler(opts).compile(snapshot);
}

export function fmtAddr(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export type { Protocol };
