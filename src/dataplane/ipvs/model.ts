// The IPVS data plane's desired state, from a plan (pure): virtual servers with their real servers,
// the VIPs for the dummy device, and the elements of the nft sets that do what IPVS cannot.
import type { Plan, PlanFrontend } from '../../plan/types.js';
import type { NodePortRange } from '../../model/types.js';
import { FAMILIES, firewallElements, HELPER_SETS, localBackendElements, type Fam } from '../nftables/helpers.js';
import { IPVS_SETS, type Elements } from './nft.js';
import { SVC_F_MH_PORT, SVC_F_PERSISTENT, vsKey, type RealServer, type VirtualServer } from './ipvs.js';

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
const famOf = (a: string): Fam => (a.includes(':') ? 6 : 4);
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

export function desiredState(plan: Plan, o: ModelOptions): Desired {
  const services = new Map<string, DesiredVs>();
  const byFrontend = new Map<string, string[]>();
  const vips = new Set<string>();
  const elements: Elements = new Map();
  const add = (set: string, e: string) => {
    let s = elements.get(set);
    if (!s) elements.set(set, s = new Set());
    s.add(e);
  };
  for (const f of FAMILIES) for (const n of Object.values(IPVS_SETS)) elements.set(n(f), new Set());

  // frontends by (address, port, protocol): an eTP=Local Service has an internal and an external
  // frontend on one tuple with different backends, which one IPVS virtual server cannot tell apart
  const internalOf = new Map<string, PlanFrontend>();
  for (const [, f] of plan.frontends) if (f.scope === 'internal') internalOf.set(`${f.address}|${f.port}|${f.protocol}`, f);

  const flags = (f: PlanFrontend) => (f.affinityTimeout > 0 ? SVC_F_PERSISTENT : 0) | (o.scheduler === 'mh' ? SVC_F_MH_PORT : 0);
  const put = (key: string, vs: VirtualServer, dests: Map<string, RealServer>, fk: string, vip: { address: string; port: number }) => {
    const k = vsKey(vs);
    let d = services.get(k);
    if (!d) services.set(k, d = { vs, dests, frontends: [], vips: [] });
    if (!d.frontends.includes(fk)) d.frontends.push(fk);
    if (!d.vips.some((v) => v.address === vip.address && v.port === vip.port)) d.vips.push(vip);
    const l = byFrontend.get(key) ?? [];
    if (!l.includes(k)) l.push(k);
    byFrontend.set(key, l);
  };

  for (const [key, f] of plan.frontends) {
    const fam = famOf(f.address);
    const addresses = unspecified(f.address) ? o.nodeAddresses[fam] : [f.address];
    const dests = realServers(plan, f);
    const tuple = (a: string) => `${a} . ${proto(f.protocol)} . ${f.port}`;
    for (const b of f.backendIds) {
      const pb = plan.backends.get(b);
      if (pb?.local) for (const [set, e] of localBackendElements(pb.address)) add(set, e);
    }
    if (f.type !== 'NodePort' && !unspecified(f.address)) {
      vips.add(f.address);
      add(IPVS_SETS.vips(fam), f.address);
      add(IPVS_SETS.vipPorts(fam), tuple(f.address));
    }
    const inner = f.scope === 'external' ? internalOf.get(`${f.address}|${f.port}|${f.protocol}`) : undefined;
    const split = !!inner && !sameBackends(realServers(plan, inner), dests);
    for (const a of addresses) {
      if (f.scope === 'external') {
        for (const [set, e] of firewallElements(fam, tuple(a), f.sourceRanges)) add(set, e);
        if (f.snatRemote) add(IPVS_SETS.masq(fam), tuple(a));
      }
      if (split) {
        // external traffic (from an external device) of this tuple gets this frontend's own mark,
        // and IPVS looks up mark services before address ones (ip_vs_service_find)
        if (!dests.size) { add(IPVS_SETS.noEndpointsExternal(fam), tuple(a)); continue; }
        const mark = (FWMARK_BASE | f.id) >>> 0;
        add(IPVS_SETS.fwmarks(fam), `${tuple(a)} : 0x${mark.toString(16)}`);
        put(key, { address: fam === 4 ? '0.0.0.0' : '::', fwmark: mark, protocol: f.protocol, port: 0, scheduler: o.scheduler, flags: flags(f), timeout: f.affinityTimeout }, dests, key, { address: a, port: f.port });
        continue;
      }
      if (!dests.size) {
        add(IPVS_SETS.noEndpoints(fam), tuple(a));
        continue;
      }
      put(key, { address: a, protocol: f.protocol, port: f.port, scheduler: o.scheduler, flags: flags(f), timeout: f.affinityTimeout }, dests, key, { address: a, port: f.port });
    }
  }
  return { services, byFrontend, vips, elements };
}

export { HELPER_SETS };
