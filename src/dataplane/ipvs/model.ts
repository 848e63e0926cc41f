// The IPVS data plane's desired state, from a plan (pure): virtual servers with their real servers,
// the VIPs for the dummy device, and the elements of the nft sets that do what IPVS cannot.
import type { Plan, PlanFrontend } from '../../plan/types.js';
import type { NodePortRange } from '../../model/types.js';
import { familyOfValid } from '../../util/ip.js';
import { FAMILIES, firewallElements, HELPER_SETS, localBackendElements, type Fam } from '../nftables/helpers.js';
import { IPVS_SETS, type Elements } from './nft.js';
import { SVC_F_MH_FALLBACK, SVC_F_MH_PORT, SVC_F_PERSISTENT, vsKey, type RealServer, type VirtualServer } from './ipvs.js';

/** Firewall marks of eTP=Local external virtual servers: this base | frontend id (ids < 2^17). */
export const FWMARK_BASE = 0x4b800000;
export const FWMARK_MASK = 0xfff00000;

export function isOurFwmark(m: number): boolean {
  return ((m & FWMARK_MASK) >>> 0) === FWMARK_BASE;
}

/**
 * Whether a virtual server the kernel lists is this agent's: recorded in the state file, on the
 * dummy device's addresses, one of our firewall marks, or (without a state file, as after a crash
 * that lost /run) a NodePort: an address of the node and a port in the node-port range. kube-proxy's
 * IPVS mode takes every virtual server outside --ipvs-exclude-cidrs as its own (cleanLegacyService);
 * this is narrower: a virtual server on another port or address of the node is left alone.
 */
export function isOurVirtualServer(v: VirtualServer, o: { owned: ReadonlySet<string>; onDummy: ReadonlySet<string>; nodeAddresses: ReadonlySet<string>; nodePortRange: NodePortRange }): boolean {
  if (o.owned.has(vsKey(v))) return true;
  if (v.fwmark !== undefined && v.fwmark !== 0) return isOurFwmark(v.fwmark);
  if (o.onDummy.has(v.address)) return true;
  return o.nodeAddresses.has(v.address) && v.port >= o.nodePortRange.min && v.port <= o.nodePortRange.max;
}

export interface DesiredVs {
  vs: VirtualServer;
  /** by `address|port` */
  dests: Map<string, RealServer>;
  /** plan keys of the frontends it serves (dump reads them back through it) */
  frontends: string[];
  /** the (address, port) clients use, for the UDP conntrack flush; several for a mark service */
  vips: Array<{ address: string; port: number }>;
}

export interface Desired {
  services: Map<string, DesiredVs>;
  /** frontend key -> the virtual servers that carry it */
  byFrontend: Map<string, string[]>;
  vips: Set<string>;
  elements: Elements;
}

export interface ModelOptions {
  scheduler: string;
  /** the node's own addresses per family: a NodePort on 0.0.0.0 / :: is a virtual server on each */
  nodeAddresses: Record<Fam, string[]>;
}

const proto = (p: string) => p.toLowerCase();
export const rsKey = (d: { address: string; port: number }) => `${d.address}|${d.port}`;
const unspecified = (a: string) => a === '0.0.0.0' || a === '::';

/** Real servers of a frontend: weight 1; terminating ones 0 while another is left (KEP-1669: keep flows, take none). */
export function realServers(plan: Plan, f: PlanFrontend): Map<string, RealServer> {
  const term = new Set(f.terminatingIds);
  const anyActive = f.backendIds.some((id) => !term.has(id));
  const out = new Map<string, RealServer>();
  for (const id of f.backendIds) {
    const b = plan.backends.get(id);
    if (!b) continue;
    out.set(rsKey(b), { address: b.address, port: b.port, weight: term.has(id) && anyActive ? 0 : 1 });
  }
  return out;
}

function sameBackends(a: Map<string, RealServer>, b: Map<string, RealServer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k)?.weight !== v.weight) return false;
  return true;
}

/** What one frontend asks of the kernel: its virtual servers (in order), VIPs and nft elements. */
export interface FrontendPart {
  services: Array<{ key: string; vs: VirtualServer; dests: Map<string, RealServer>; vip: { address: string; port: number } }>;
  vips: string[];
  /** [set, element] */
  elements: Array<[string, string]>;
}

/** The internal frontend on an external one's (address, port, protocol), whose backends may differ (eTP=Local). */
export function tupleKey(f: { address: string; port: number; protocol: string }): string {
  return `${f.address}|${f.port}|${f.protocol}`;
}

/**
 * One frontend's part of the desired state. It depends on the frontend, its backends, the node's
 * addresses and, for an external frontend, the internal one on the same tuple (`inner`): nothing else.
 */
export function frontendPart(plan: Plan, f: PlanFrontend, inner: PlanFrontend | undefined, o: ModelOptions): FrontendPart {
  const part: FrontendPart = { services: [], vips: [], elements: [] };
  const add = (set: string, e: string) => { part.elements.push([set, e]); };
  const fam = familyOfValid(f.address);
  const addresses = unspecified(f.address) ? o.nodeAddresses[fam] : [f.address];
  const dests = realServers(plan, f);
  const tuple = (a: string) => `${a} . ${proto(f.protocol)} . ${f.port}`;
  // mh: the source port hashed too (kube-proxy's FlagSourceHash), and, unlike kube-proxy, mh-fallback:
  // mh keeps a weight-0 real server in its table, so without it the clients hashed to a terminating
  // or draining one are refused (no destination) for as long as it drains (the VM tier saw it);
  // with it they go to the next server of their hash and the others' clients stay where they are
  const flags = (f.affinityTimeout > 0 ? SVC_F_PERSISTENT : 0) | (o.scheduler === 'mh' ? SVC_F_MH_PORT | SVC_F_MH_FALLBACK : 0);
  const put = (vs: VirtualServer, vip: { address: string; port: number }) => { part.services.push({ key: vsKey(vs), vs, dests, vip }); };
  for (const b of f.backendIds) {
    const pb = plan.backends.get(b);
    if (pb?.local) for (const [set, e] of localBackendElements(pb.address)) add(set, e);
  }
  if (f.type !== 'NodePort' && !unspecified(f.address)) {
    part.vips.push(f.address);
    add(IPVS_SETS.vips(fam), f.address);
    add(IPVS_SETS.vipPorts(fam), tuple(f.address));
  }
  const split = f.scope === 'external' && !!inner && !sameBackends(realServers(plan, inner), dests);
  for (const a of addresses) {
    if (f.scope === 'external') {
      // ranges of the other family never reach here from compile (it filters them, as kube-proxy's
      // MapCIDRsByIPFamily); one that did would fail the whole nft transaction, every Service's
      for (const [set, e] of firewallElements(fam, tuple(a), f.sourceRanges.filter((r) => r.includes(':') === (fam === 6)))) add(set, e);
      if (f.snatRemote) add(IPVS_SETS.masq(fam), tuple(a));
    }
    if (split) {
      // external traffic (from an external device) of this tuple gets this frontend's own mark,
      // and IPVS looks up mark services before address ones (ip_vs_service_find)
      if (!dests.size) { add(IPVS_SETS.noEndpointsExternal(fam), tuple(a)); continue; }
      const mark = (FWMARK_BASE | f.id) >>> 0;
      add(IPVS_SETS.fwmarks(fam), `${tuple(a)} : 0x${mark.toString(16)}`);
      put({ address: fam === 4 ? '0.0.0.0' : '::', fwmark: mark, protocol: f.protocol, port: 0, scheduler: o.scheduler, flags, timeout: f.affinityTimeout }, { address: a, port: f.port });
      continue;
    }
    if (!dests.size) {
      add(IPVS_SETS.noEndpoints(fam), tuple(a));
      continue;
    }
    put({ address: a, protocol: f.protocol, port: f.port, scheduler: o.scheduler, flags, timeout: f.affinityTimeout }, { address: a, port: f.port });
  }
  return part;
}

/** Every set of the table, empty: a set with no element still has an (empty) entry. */
export function emptyElements(): Elements {
  const elements: Elements = new Map();
  for (const f of FAMILIES) for (const n of Object.values(IPVS_SETS)) elements.set(n(f), new Set());
  return elements;
}

export function desiredState(plan: Plan, o: ModelOptions): Desired {
  const services = new Map<string, DesiredVs>();
  const byFrontend = new Map<string, string[]>();
  const vips = new Set<string>();
  const elements = emptyElements();
  // frontends by (address, port, protocol): an eTP=Local Service has an internal and an external
  // frontend on one tuple with different backends, which one IPVS virtual server cannot tell apart
  const internalOf = new Map<string, PlanFrontend>();
  for (const [, f] of plan.frontends) if (f.scope === 'internal') internalOf.set(tupleKey(f), f);
  for (const [key, f] of plan.frontends) {
    const part = frontendPart(plan, f, f.scope === 'external' ? internalOf.get(tupleKey(f)) : undefined, o);
    for (const a of part.vips) vips.add(a);
    for (const [set, e] of part.elements) {
      let s = elements.get(set);
      if (!s) elements.set(set, s = new Set());
      s.add(e);
    }
    for (const p of part.services) {
      let d = services.get(p.key);
      if (!d) services.set(p.key, d = { vs: p.vs, dests: p.dests, frontends: [], vips: [] });
      if (!d.frontends.includes(key)) d.frontends.push(key);
      if (!d.vips.some((v) => v.address === p.vip.address && v.port === p.vip.port)) d.vips.push(p.vip);
      const l = byFrontend.get(key) ?? [];
      if (!l.includes(p.key)) l.push(p.key);
      byFrontend.set(key, l);
    }
  }
  return { services, byFrontend, vips, elements };
}

/**
 * The desired state kept up to date one frontend at a time, for a sync that touches a few of
 * 10,000: each frontend's part is kept, and what parts share (a virtual server, a VIP, an nft
 * element) is counted, so replacing one part names exactly the virtual servers, VIPs and elements
 * whose wanted state may have changed. Equal to desiredState() of the same plan (a unit property);
 * a virtual server that two frontends ask for is the one of the frontend that asked first.
 */
export class DesiredIndex {
  readonly #parts = new Map<string, FrontendPart>();
  /** vsKey -> frontend keys asking for it, in the order they came */
  readonly #vsOwners = new Map<string, string[]>();
  /** set -> element -> how many parts have it */
  readonly #elemRefs = new Map<string, Map<string, number>>();
  readonly #vipRefs = new Map<string, number>();
  /** what replace() may have changed since the last take() */
  #dirtyVs = new Set<string>();
  #dirtyElems = new Map<string, Set<string>>();
  #dirtyVips = new Set<string>();

  get size(): number {
    return this.#parts.size;
  }

  /** Sets (or with undefined removes) one frontend's part. */
  replace(key: string, part: FrontendPart | undefined): void {
    const old = this.#parts.get(key);
    if (old) {
      for (const p of old.services) {
        const owners = this.#vsOwners.get(p.key);
        const i = owners?.indexOf(key) ?? -1;
        if (owners && i >= 0) {
          owners.splice(i, 1);
          if (!owners.length) this.#vsOwners.delete(p.key);
        }
        this.#dirtyVs.add(p.key);
      }
      for (const [set, e] of old.elements) this.#refElem(set, e, -1);
      for (const a of old.vips) this.#ref(this.#vipRefs, a, -1, this.#dirtyVips);
      this.#parts.delete(key);
    }
    if (!part) return;
    this.#parts.set(key, part);
    for (const p of part.services) {
      const owners = this.#vsOwners.get(p.key);
      if (!owners) this.#vsOwners.set(p.key, [key]);
      else if (!owners.includes(key)) owners.push(key);
      this.#dirtyVs.add(p.key);
    }
    for (const [set, e] of part.elements) this.#refElem(set, e, 1);
    for (const a of part.vips) this.#ref(this.#vipRefs, a, 1, this.#dirtyVips);
  }

  #refElem(set: string, e: string, by: number): void {
    let m = this.#elemRefs.get(set);
    if (!m) this.#elemRefs.set(set, m = new Map());
    let d = this.#dirtyElems.get(set);
    if (!d) this.#dirtyElems.set(set, d = new Set());
    this.#ref(m, e, by, d);
  }

  #ref(m: Map<string, number>, k: string, by: number, dirty: Set<string>): void {
    const n = (m.get(k) ?? 0) + by;
    if (n > 0) m.set(k, n);
    else m.delete(k);
    dirty.add(k);
  }

  /** The wanted virtual server of that key and its real servers, or undefined when none is wanted. */
  service(k: string): { vs: VirtualServer; dests: Map<string, RealServer> } | undefined {
    const owner = this.#vsOwners.get(k)?.[0];
    const p = owner === undefined ? undefined : this.#parts.get(owner)?.services.find((s) => s.key === k);
    return p && { vs: p.vs, dests: p.dests };
  }

  serviceKeys(): IterableIterator<string> {
    return this.#vsOwners.keys();
  }

  hasVip(a: string): boolean {
    return this.#vipRefs.has(a);
  }

  vips(): IterableIterator<string> {
    return this.#vipRefs.keys();
  }

  /** Every wanted element, by set (a copy: the caller keeps it as what the table holds). */
  elements(): Elements {
    const out = emptyElements();
    for (const [set, m] of this.#elemRefs) if (m.size) out.set(set, new Set(m.keys()));
    return out;
  }

  hasElement(set: string, e: string): boolean {
    return this.#elemRefs.get(set)?.has(e) ?? false;
  }

  /** What replace() may have changed since the last call, and forgets it. */
  take(): { services: Set<string>; elements: Array<[string, string]>; vips: Set<string> } {
    const elements: Array<[string, string]> = [];
    for (const [set, es] of this.#dirtyElems) for (const e of es) elements.push([set, e]);
    const out = { services: this.#dirtyVs, elements, vips: this.#dirtyVips };
    this.#dirtyVs = new Set();
    this.#dirtyElems = new Map();
    this.#dirtyVips = new Set();
    return out;
  }
}

export { HELPER_SETS };
