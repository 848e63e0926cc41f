// The IPVS data plane behind the Dataplane interface. From a plan: a virtual server per frontend
// address (a NodePort on 0.0.0.0 / :: is one per node address, as kube-proxy), real servers with
// weights, persistence for ClientIP affinity; the VIPs on a dummy device; an nftables table beside
// it for what IPVS cannot do (nft.ts). A sync diffs the wanted state against what the kernel holds
// (kept in memory, read back at start and on each full resync) and writes only the difference.
//
// Graceful termination, as kube-proxy's IPVS mode: a TCP real server that leaves goes to weight 0
// (its flows continue, it gets no new one) and is deleted once IPVS counts no connection to it or
// after drainMs; a UDP or SCTP one is deleted at once (IsRsGracefulTerminationNeeded), a UDP one's
// conntrack entries flushed too, so the flow's next packet is scheduled to another real server
// instead of being dropped. With
// net.ipv4.vs.conntrack=1 a UDP flow keeps a conntrack entry whose reply tuple names the old real
// server, and while it lives IPVS drops the flow's packets (ip_vs_in(): expire_nodest_conn with a
// confirmed conntrack); kube-proxy's IPVS mode deletes them (deleteEndpointConnections). The flush is
// the nftables mode's (staleUdpRules + libnetfilter_conntrack in kbp_nft): one deleter for both modes.
import type { Plan, PlanOp } from '../../plan/types.js';
import type { Dataplane, DataplaneStats } from '../types.js';
import { UNLIMITED, type Capacity } from '../../plan/capacity.js';
import type { Logger } from '../../util/log.js';
import { silentLogger } from '../../util/log.js';
import { KbpError } from '../../util/errors.js';
import { canonicalIp } from '../../util/ip.js';
import { networkInterfaces } from 'node:os';
import { createTransport, type NftTransport } from '../nftables/native.js';
import { linkAddresses, removeTable, tableExists } from '../nftables/dataplane.js';
import { externalDevicesCommands, type Fam } from '../nftables/helpers.js';
import { IPVS_SCHEDULERS, IpvsClient, ipvsOps, vsKey, type IpvsOp, type RealServer, type VirtualServer } from './ipvs.js';
import { DesiredIndex, desiredState, frontendPart, isOurVirtualServer, rsKey, tupleKey, type Desired } from './model.js';
import { defaultNodePortRange, type NodePortRange } from '../../model/types.js';
import { elementDiff, elementDiffGroups, elementTypes, fullTable, IPVS_NFT_TABLE, type Elements } from './nft.js';
import { applySysctls, dummyExists, removeDummy, DUMMY_DEVICE } from './host.js';
import { DummyLink } from './rtnl.js';
import { staleUdpRules } from '../nftables/conntrack.js';
import { flushStaleUdp } from '../nftables/native.js';
import { WrittenPlan } from '../written.js';
import { IpvsStateFile, loadIpvsState, ipvsStatePath, removeIpvsState } from './state.js';
import { frontendKey, upsertedBackends, type PlanFrontend } from '../../plan/types.js';


export interface IpvsDataplaneOptions {
  /** the agent's pin root: names the state file, so several agents (lab nodes) are told apart */
  pinRoot: string;
  /** the state file (default: under /run/kube-bpf-proxy, named after pinRoot) */
  statePath?: string;
  scheduler?: string;
  /** external devices by name; default: the devices that hold one of nodeAddresses() */
  devices?: string[];
  nodeAddresses: () => string[];
  dummy?: string;
  table?: string;
  /** the node-port range: without a state file, a virtual server on a node address and a port in it is ours (default 30000-32767) */
  nodePortRange?: NodePortRange;
  /** longest time a removed TCP real server drains before it is deleted anyway (default 15 min) */
  drainMs?: number;
  /** full resync against the kernel every this many syncDevices() calls (default 6: a minute) */
  resyncEvery?: number;
  transport?: NftTransport;
  /** delete conntrack entries of removed UDP real servers (default: when `transport` is not given, i.e. not in tests) */
  udpConntrackCleanup?: boolean;
  log?: Logger;
  /** IPVS itself (default: IpvsClient over generic netlink; a fake in unit tests) */
  openIpvs?: () => Promise<IpvsKernel>;
  /** the dummy device and the sysctls (default: host.ts; a fake in unit tests) */
  host?: IpvsHost;
}

/** What the data plane asks of IPVS: IpvsClient's methods. */
export type IpvsKernel = Pick<IpvsClient, 'listServices' | 'listDests' | 'run' | 'close'>;

/** What the data plane asks of the host: the sysctls, and the dummy device over rtnetlink (rtnl.ts). */
export interface IpvsHost {
  applySysctls(): Array<{ key: string; value: string }>;
  ensureDummy(name: string): Promise<void>;
  removeDummy(name: string): Promise<boolean>;
  dummyAddresses(name: string): Promise<string[]>;
  setDummyAddresses(add: string[], del: string[], name: string): Promise<void>;
  close?(): void;
}

/** The real host: one rtnetlink socket for the dummy device, kept open between syncs. */
function realHost(): IpvsHost {
  let link: DummyLink | undefined;
  const of = (name: string) => {
    if (link?.name !== name) { link?.close(); link = new DummyLink(name); }
    return link;
  };
  return {
    applySysctls: () => applySysctls(),
    ensureDummy: (name) => of(name).ensure(),
    removeDummy: (name) => of(name).remove(),
    dummyAddresses: (name) => of(name).addresses(),
    setDummyAddresses: (add, del, name) => of(name).set(add, del),
    close: () => { link?.close(); link = undefined; },
  };
}

interface HeldVs {
  vs: VirtualServer;
  dests: Map<string, RealServer>;
}

/** Proves IPVS works: a scratch virtual server is created, seen in the kernel's list, and deleted. */
export async function probeIpvs(): Promise<{ ok: true } | { ok: false; reason: string }> {
  let c: IpvsClient;
  try {
    c = await IpvsClient.open();
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  // loopback, a port from the pid: never a Service's address, unique per prober
  const vs: VirtualServer = { address: '127.0.0.127', protocol: 'TCP', port: 1024 + (process.pid % 60000), scheduler: 'rr', flags: 0, timeout: 0 };
  try {
    const failed = await c.run([ipvsOps.addService(vs)]);
    if (failed.length) return { ok: false, reason: `creating a scratch virtual server failed: ${failed[0]!.message}` };
    const listed = (await c.listServices()).some((v) => vsKey(v) === vsKey(vs));
    if (!listed) return { ok: false, reason: 'a scratch virtual server was accepted but is not listed: IPVS does not work here' };
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `IPVS probe: ${(e as Error).message}` };
  } finally {
    await c.run([ipvsOps.delService(vs)]).catch(() => undefined);
    c.close();
  }
}

export class IpvsDataplane implements Dataplane {
  readonly kind = 'ipvs' as const;
  readonly #o: IpvsDataplaneOptions;
  readonly #log: Logger;
  readonly #scheduler: string;
  readonly #dummy: string;
  readonly #table: string;
  readonly #statePath: string;
  readonly #host: IpvsHost;
  readonly #openIpvs: () => Promise<IpvsKernel>;
  #c: IpvsKernel | undefined;
  /**
   * Every step that reads or writes the kernel's state runs here, one at a time: a housekeeping
   * drain or resync that read #held or #written while a sync's write was under way could write the
   * plan before it back over the sync's (a removed real server restored).
   */
  #queue: Promise<unknown> = Promise.resolve();
  #t: NftTransport | undefined;
  /** what the kernel holds of ours, by vsKey */
  #held = new Map<string, HeldVs>();
  /** real servers draining (weight 0, left by the plan): vsKey -> rsKey -> deadline (ms) */
  #draining = new Map<string, Map<string, number>>();
  #vips = new Set<string>();
  #elements: Elements = new Map();
  #types: ReturnType<typeof elementTypes> | undefined;
  /** the desired state, per frontend, of the last write (undefined: the next write walks every frontend) */
  #index: DesiredIndex | undefined;
  /** the node addresses the index was built with (NodePorts on 0.0.0.0 are one virtual server each) */
  #indexAddrs = '';
  /** the last write failed or none was made: the next one walks every frontend */
  #full = true;
  readonly #state: IpvsStateFile;
  #tableFresh = true;
  #devicesWanted: string[] = [];
  #devicesInTable = '';
  /** what the last write brought the kernel to, in plan terms (never the agent's plan: its next build changes that in place) */
  readonly #written = new WrittenPlan();
  #restored: Plan | undefined;
  #ticks = 0;
  #nodeAddrs: Record<Fam, string[]> | undefined;
  /** milliseconds of each step of the last write (the IPVS bench prints them) */
  lastWriteSteps: Record<string, number> = {};

  constructor(o: IpvsDataplaneOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
    this.#scheduler = o.scheduler ?? 'rr';
    if (!(IPVS_SCHEDULERS as readonly string[]).includes(this.#scheduler)) {
      throw new KbpError('KBP_ERR_CONFIG', `IPVS scheduler ${JSON.stringify(this.#scheduler)} is not one of ${IPVS_SCHEDULERS.join(', ')}`);
    }
    this.#dummy = o.dummy ?? DUMMY_DEVICE;
    this.#table = o.table ?? IPVS_NFT_TABLE;
    this.#statePath = o.statePath ?? ipvsStatePath(o.pinRoot);
    this.#state = new IpvsStateFile(this.#statePath);
    this.#t = o.transport;
    this.#host = o.host ?? realHost();
    this.#openIpvs = o.openIpvs ?? (() => IpvsClient.open());
  }

  /** Runs `go` after every step queued before it (whether that one failed or not). */
  #serial<T>(go: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(go, go);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  get #transport(): NftTransport {
    return (this.#t ??= createTransport());
  }

  get #client(): IpvsKernel {
    if (!this.#c) throw new KbpError('KBP_ERR_INTERNAL', 'IPVS data plane used before init()');
    return this.#c;
  }

  init(): Promise<void> {
    return this.#serial(() => this.#init());
  }

  async #init(): Promise<void> {
    this.#c = await this.#openIpvs();
    for (const s of this.#host.applySysctls()) this.#log.info(s, 'set an IPVS sysctl');
    await this.#host.ensureDummy(this.#dummy);
    const saved = loadIpvsState(this.#statePath);
    await this.#readKernel(saved?.owned ?? []);
    this.#tableFresh = true;
    if (saved) {
      this.#restored = saved.plan;
      this.#log.info({ frontends: saved.plan.frontends.size, virtualServers: this.#held.size }, 'reusing the IPVS state of an earlier agent');
    } else {
      this.#log.info({ virtualServers: this.#held.size, dummy: this.#dummy }, 'IPVS data plane ready');
    }
    await this.#syncDevices();
    // an earlier agent's plan: bring the kernel to it now (a no-op when nothing changed meanwhile),
    // so the agent's first diff against it is also true of the kernel
    if (saved) await this.#write(saved.plan);
  }

  /** The kernel's virtual servers that are ours (recorded as ours, on the dummy's addresses, our marks, NodePorts). */
  async #readKernel(owned: string[]): Promise<void> {
    const onDummy = new Set(await this.#host.dummyAddresses(this.#dummy));
    this.#vips = onDummy;
    const node = this.#nodeAddresses();
    const o = { owned: new Set(owned), onDummy, nodeAddresses: new Set([...node[4], ...node[6]]), nodePortRange: this.#o.nodePortRange ?? defaultNodePortRange };
    const all = await this.#client.listServices();
    const ours = all.filter((v) => isOurVirtualServer(v, o));
    const dests = await this.#client.listDests(ours);
    this.#held = new Map(ours.map((v, i) => [vsKey(v), { vs: v, dests: new Map(dests[i]!.map((d) => [rsKey(d), d])) }]));
  }

  async readPlan(): Promise<Plan | undefined> {
    // handed over once: the agent's first build starts from it (and may later change it in place)
    const p = this.#restored;
    this.#restored = undefined;
    return p;
  }

  apply(ops: PlanOp[], next: Plan): Promise<void> {
    return this.#serial(() => this.#write(next, ops));
  }

  /** The node's addresses, as of the last housekeeping (syncDevices) or init: a sync spawns nothing. */
  #nodeAddresses(): Record<Fam, string[]> {
    return (this.#nodeAddrs ??= this.#readNodeAddresses());
  }

  #readNodeAddresses(): Record<Fam, string[]> {
    const own = new Set(this.#o.nodeAddresses().map((a) => { try { return canonicalIp(a); } catch { return a; } }));
    // every address of the node's devices but loopback and our dummy (kube-proxy's IPVS NodePorts);
    // getifaddrs() in process, not `ip -j addr`: the dummy holds every VIP, and a process per sync
    // with all of them in its output made one change O(Services)
    const all = Object.entries(networkInterfaces()).filter(([name]) => name !== 'lo' && name !== this.#dummy)
      .flatMap(([, list]) => (list ?? []).map((a) => { try { return canonicalIp(a.address); } catch { return a.address; } }))
      .filter((a) => !a.startsWith('fe80:') && !a.startsWith('127.'));
    const addrs = [...new Set([...own, ...all])].sort();
    return { 4: addrs.filter((a) => !a.includes(':')), 6: addrs.filter((a) => a.includes(':')) };
  }

  /**
   * Brings the kernel to the plan: virtual servers, real servers, VIPs, nft elements; only the diff.
   * With `ops` (the writes that lead from the last plan written to `next`), only the frontends they
   * touch are looked at: a change costs what it changes, not a walk over every Service (under the
   * VM's emulation that walk was seconds at 1,000 Services). Without them (init, resync, after a
   * failed write, the node's addresses changed), every frontend.
   */
  async #write(next: Plan, ops?: PlanOp[]): Promise<void> {
    const steps: Record<string, number> = {};
    let t0 = performance.now();
    const step = (name: string) => { const t = performance.now(); steps[name] = +(t - t0).toFixed(2); t0 = t; };
    this.lastWriteSteps = steps;
    const o = { scheduler: this.#scheduler, nodeAddresses: this.#nodeAddresses() };
    const addrs = JSON.stringify(o.nodeAddresses);
    const prev = this.#written.any ? this.#written.plan : undefined;
    const touched = ops && prev && this.#index && !this.#full && addrs === this.#indexAddrs ? touchedFrontends(ops, prev, next) : undefined;
    // from here until the kernel holds `next`, a failure leaves the index ahead of the kernel: the
    // next write starts over from every frontend
    this.#full = true;
    let index: DesiredIndex;
    if (touched) {
      index = this.#index!;
      for (const k of touched) {
        const f = next.frontends.get(k);
        index.replace(k, f && frontendPart(next, f, f.scope === 'external' ? next.frontends.get(frontendKey({ ...f, scope: 'internal' })) : undefined, o));
      }
    } else {
      index = new DesiredIndex();
      const internalOf = new Map<string, PlanFrontend>();
      for (const f of next.frontends.values()) if (f.scope === 'internal') internalOf.set(tupleKey(f), f);
      for (const [k, f] of next.frontends) index.replace(k, frontendPart(next, f, f.scope === 'external' ? internalOf.get(tupleKey(f)) : undefined, o));
      this.#index = index;
      this.#indexAddrs = addrs;
    }
    const dirty = index.take();
    const vsKeys = touched ? dirty.services : new Set([...index.serviceKeys(), ...this.#held.keys()]);
    const vipKeys = touched ? dirty.vips : new Set([...index.vips(), ...this.#vips]);
    step('model');
    const now = Date.now();
    const writes: IpvsOp[] = [];
    const after: IpvsOp[] = [];
    // 1. VIPs first: IPVS serves only local addresses
    const vipAdd = [...vipKeys].filter((a) => index.hasVip(a) && !this.#vips.has(a));
    await this.#host.setDummyAddresses(vipAdd, [], this.#dummy);
    for (const a of vipAdd) this.#vips.add(a);
    step('vipsAdd');
    // 2. virtual servers and real servers; whole virtual servers no frontend wants any more go after
    // the table (their flows end with them, as kube-proxy's), UDP real servers at once
    for (const k of vsKeys) {
      const d = index.service(k);
      const h = this.#held.get(k);
      if (!d) {
        if (h) after.push(ipvsOps.delService(h.vs));
        this.#draining.delete(k);
        continue;
      }
      if (!h) {
        writes.push(ipvsOps.addService(d.vs));
        for (const rs of d.dests.values()) writes.push(ipvsOps.addDest(d.vs, rs));
        continue;
      }
      if (h.vs.scheduler !== d.vs.scheduler || h.vs.flags !== d.vs.flags || h.vs.timeout !== d.vs.timeout) writes.push(ipvsOps.editService(d.vs));
      const draining = this.#draining.get(k);
      for (const [rk, rs] of d.dests) {
        const have = h.dests.get(rk);
        if (!have) writes.push(ipvsOps.addDest(d.vs, rs));
        else if (have.weight !== rs.weight) writes.push(ipvsOps.editDest(d.vs, rs));
        draining?.delete(rk);
      }
      for (const [rk, have] of h.dests) {
        if (d.dests.has(rk)) continue;
        // UDP and SCTP at once, TCP drains: kube-proxy's IsRsGracefulTerminationNeeded
        if (d.vs.protocol !== 'TCP') {
          after.push(ipvsOps.delDest(d.vs, have));
          draining?.delete(rk);
        } else if (!draining?.has(rk)) {
          if (have.weight !== 0) writes.push(ipvsOps.editDest(d.vs, { ...have, weight: 0 }));
          if (!this.#draining.has(k)) this.#draining.set(k, new Map());
          this.#draining.get(k)!.set(rk, now + (this.#o.drainMs ?? 15 * 60_000));
        }
      }
      if (draining && !draining.size) this.#draining.delete(k);
    }
    step('diff');
    // 3. the nft table (marks, masquerade, refusal, source ranges) before stale servers go
    await this.#writeTable(index, touched ? dirty.elements : undefined);
    step('nft');
    const failed = await this.#client.run([...writes, ...after]);
    step('ipvs');
    // the kernel state after the batch: re-read what failed rather than guess
    if (failed.length) {
      await this.#readKernel([...this.#held.keys(), ...index.serviceKeys()]);
      throw new KbpError('KBP_ERR_DATAPLANE', `IPVS: ${failed.length} of ${writes.length + after.length} writes failed: ${failed.slice(0, 5).map((f) => f.message).join('; ')}`);
    }
    // the in-memory copy of the kernel: desired, plus what drains
    for (const k of vsKeys) {
      const d = index.service(k);
      if (!d) { this.#held.delete(k); continue; }
      const dests = new Map(d.dests);
      const h = this.#held.get(k);
      for (const rk of this.#draining.get(k)?.keys() ?? []) {
        const have = h?.dests.get(rk);
        if (have) dests.set(rk, { ...have, weight: 0 });
      }
      this.#held.set(k, { vs: d.vs, dests });
    }
    step('held');
    // after the UDP real servers are gone: a flow's next packet is scheduled anew (the same rules
    // as the nftables mode: entries to a UDP frontend whose reply source left its backends)
    const stale = staleUdpRules(prev, next, touched);
    if (stale.length && (this.#o.udpConntrackCleanup ?? this.#o.transport === undefined)) {
      try {
        const r = await flushStaleUdp(stale);
        if (r.deleted) this.#log.info({ deleted: r.deleted, frontends: stale.length }, 'conntrack entries of removed UDP real servers deleted');
      } catch (e) {
        this.#log.warn({ err: e, frontends: stale.length }, 'deleting the conntrack entries of removed UDP real servers failed');
      }
    }
    step('conntrack');
    // 5. VIPs no longer wanted
    const vipDel = [...vipKeys].filter((a) => !index.hasVip(a) && this.#vips.has(a));
    await this.#host.setDummyAddresses([], vipDel, this.#dummy);
    for (const a of vipDel) this.#vips.delete(a);
    step('vipsDel');
    // the record follows the kernel: the diff's part of it, or all of a full write (init, resync)
    if (ops) this.#written.update(ops, next);
    else this.#written.reset(next);
    this.#full = false;
    this.#save(next, touched && ops ? { ops, frontends: touched, services: vsKeys } : undefined);
    step('state');
  }

  /** The table's elements to the index's: all of them, or those `dirty` names. */
  async #writeTable(index: DesiredIndex, dirty: Array<[string, string]> | undefined): Promise<void> {
    let script: string;
    let want: Elements | undefined;
    let have: Elements | undefined;
    if (this.#tableFresh || !dirty) {
      want = index.elements();
      script = this.#tableFresh ? fullTable(this.#table, want, this.#devicesWanted, await tableExists(this.#transport, this.#table)) : elementDiff(this.#table, this.#elements, want);
    } else {
      // only the elements some touched frontend gave or took: the diff of those
      have = new Map();
      want = new Map();
      for (const [set, e] of dirty) {
        if (this.#elements.get(set)?.has(e)) addElem(have, set, e);
        if (index.hasElement(set, e)) addElem(want, set, e);
      }
      script = elementDiff(this.#table, have, want);
    }
    const devsChanged = !this.#tableFresh && this.#devicesWanted.join(',') !== this.#devicesInTable;
    if (devsChanged) script += externalDevicesCommands(this.#table, this.#devicesWanted);
    const bulk = this.#transport.bulk;
    if (script && have && !devsChanged && bulk) {
      // elements only (a sync of a few frontends): one nf_tables batch from the addon, no
      // libnftables context (creating one and fetching its cache was most of a one-change sync
      // under the VM's emulation)
      try {
        await bulk(this.#table, elementDiffGroups(this.#types ??= elementTypes(this.#table), have, want));
      } catch (e) {
        this.#tableFresh = true;
        throw e;
      }
    } else if (script) {
      try {
        await this.#transport.run(script);
      } catch (e) {
        this.#tableFresh = true; // the next sync rewrites the whole table in one transaction
        throw e;
      }
    }
    if (have) {
      for (const [set, es] of have) for (const e of es) this.#elements.get(set)?.delete(e);
      for (const [set, es] of want) for (const e of es) addElem(this.#elements, set, e);
    } else this.#elements = want;
    this.#tableFresh = false;
    this.#devicesInTable = this.#devicesWanted.join(',');
  }

  /** The state file: a whole new one after a full write, else this write's changes appended. */
  #save(plan: Plan, change: { ops: PlanOp[]; frontends: Set<string>; services: Set<string> } | undefined): void {
    try {
      if (!change) this.#state.snapshot(plan, [...this.#held.keys()]);
      else this.#state.append(plan, change.ops, change.frontends, [...change.services].map((k) => [k, this.#held.has(k)]), () => [...this.#held.keys()]);
    } catch (e) {
      this.#log.warn({ err: e }, 'writing the IPVS state file failed; a restart rebuilds from the kernel');
    }
  }

  /** External devices, draining real servers, and every resyncEvery-th call a full resync. */
  syncDevices(): Promise<void> {
    return this.#serial(() => this.#syncDevices());
  }

  async #syncDevices(): Promise<void> {
    this.#nodeAddrs = undefined; // re-read on the next use (an address added: its NodePorts come with the next sync)
    let want: string[];
    if (this.#o.devices) want = [...this.#o.devices];
    else {
      const addrs = new Set(this.#o.nodeAddresses().map((a) => { try { return canonicalIp(a); } catch { return a; } }));
      want = (await linkAddresses()).filter((l) => l.ifname !== 'lo' && l.ifname !== this.#dummy && l.addresses.some((a) => addrs.has(a))).map((l) => l.ifname);
    }
    this.#devicesWanted = [...new Set(want)].sort();
    if (!this.#c) return;
    if (!this.#tableFresh && this.#devicesWanted.join(',') !== this.#devicesInTable) {
      await this.#transport.run(externalDevicesCommands(this.#table, this.#devicesWanted));
      this.#devicesInTable = this.#devicesWanted.join(',');
      this.#log.info({ devices: this.#devicesWanted }, 'external devices');
    }
    await this.#drain();
    if (this.#written.any && ++this.#ticks % (this.#o.resyncEvery ?? 6) === 0) await this.#resync();
  }

  /** Deletes draining real servers that IPVS counts no connection to, or whose bound has passed. */
  drain(): Promise<number> {
    return this.#serial(() => this.#drain());
  }

  async #drain(): Promise<number> {
    if (!this.#draining.size) return 0;
    const keys = [...this.#draining.keys()].filter((k) => this.#held.has(k));
    const lists = await this.#client.listDests(keys.map((k) => this.#held.get(k)!.vs));
    const now = Date.now();
    const ops: IpvsOp[] = [];
    const gone: Array<[string, string]> = [];
    keys.forEach((k, i) => {
      const live = new Map(lists[i]!.map((d) => [rsKey(d), d]));
      for (const [rk, deadline] of this.#draining.get(k)!) {
        const d = live.get(rk);
        if (d && (d.activeConns ?? 0) + (d.inactiveConns ?? 0) > 0 && now < deadline) continue;
        if (d) ops.push(ipvsOps.delDest(this.#held.get(k)!.vs, d));
        gone.push([k, rk]);
      }
    });
    const failed = await this.#client.run(ops);
    if (failed.length) this.#log.warn({ failed: failed.map((f) => f.message) }, 'deleting drained real servers failed; retried later');
    for (const [k, rk] of gone) {
      this.#draining.get(k)?.delete(rk);
      if (!this.#draining.get(k)?.size) this.#draining.delete(k);
      this.#held.get(k)?.dests.delete(rk);
    }
    if (gone.length) this.#log.info({ realServers: gone.length }, 'drained real servers deleted');
    return gone.length;
  }

  /** Re-reads the kernel and writes what differs from the last plan: strays go, what is missing comes back. */
  resync(): Promise<void> {
    return this.#serial(() => this.#resync());
  }

  async #resync(): Promise<void> {
    if (!this.#written.any) return;
    await this.#readKernel([...this.#held.keys()]);
    // the weight-0 servers the kernel still holds are the draining ones; keep their deadlines
    this.#tableFresh = !(await tableExists(this.#transport, this.#table));
    await this.#write(this.#written.plan);
  }

  /**
   * For `dump`, without changing anything: the kernel's virtual servers of this agent, and the saved
   * plan with each frontend's backends read back from IPVS (undefined without a state file).
   */
  inspect(): Promise<{ plan: Plan | undefined; servers: Array<{ vs: VirtualServer; dests: RealServer[] }> }> {
    return this.#serial(() => this.#inspect());
  }

  async #inspect(): Promise<{ plan: Plan | undefined; servers: Array<{ vs: VirtualServer; dests: RealServer[] }> }> {
    this.#c ??= await this.#openIpvs();
    const saved = loadIpvsState(this.#statePath);
    await this.#readKernel(saved?.owned ?? []);
    const servers = [...this.#held.values()].map((h) => ({ vs: h.vs, dests: [...h.dests.values()] }));
    if (!saved) return { plan: undefined, servers };
    const d = desiredState(saved.plan, { scheduler: this.#scheduler, nodeAddresses: this.#nodeAddresses() });
    return { plan: readBackPlan(saved.plan, d, this.#held), servers };
  }

  async stats(): Promise<DataplaneStats> {
    let dests = 0;
    for (const h of this.#held.values()) dests += h.dests.size;
    return {
      maps: [{ name: 'ipvs_virtual_servers', entries: this.#held.size, capacity: Infinity }, { name: 'ipvs_real_servers', entries: dests, capacity: Infinity }],
      events: {},
      frontends: new Map(),
    };
  }

  capacity(): Capacity {
    return UNLIMITED;
  }

  close(): Promise<void> {
    return this.#serial(async () => this.#close());
  }

  #close(): void {
    this.#c?.close();
    this.#c = undefined;
    this.#host.close?.();
  }

  cleanup(): Promise<void> {
    return this.#serial(() => this.#cleanup());
  }

  async #cleanup(): Promise<void> {
    if (!this.#c) this.#c = await this.#openIpvs();
    await this.#readKernel(loadIpvsState(this.#statePath)?.owned ?? []);
    const failed = await this.#client.run([...this.#held.values()].map((h) => ipvsOps.delService(h.vs)));
    if (failed.length) throw new KbpError('KBP_ERR_DATAPLANE', `IPVS cleanup: ${failed.map((f) => f.message).join('; ')}`);
    this.#held.clear();
    this.#draining.clear();
    await removeTable(this.#transport, this.#table).catch(() => undefined);
    await this.#host.removeDummy(this.#dummy);
    removeIpvsState(this.#statePath);
    this.#close();
  }
}

/**
 * A plan whose frontends carry the backends the kernel holds for them: the real servers of the first
 * virtual server that carries each (weight 0 means terminating when the plan says so, and draining,
 * left out, when it does not). A frontend with no virtual server has what the plan says only when the
 * plan says "none" (a refusing frontend is no virtual server but an nft element).
 */
export function readBackPlan(plan: Plan, d: Desired, held: Map<string, HeldVs>): Plan {
  const byAddr = new Map([...plan.backends.values()].map((b) => [`${b.address}|${b.port}|${b.protocol}`, b]));
  const backends = new Map(plan.backends);
  let nextId = Math.max(0, ...plan.backends.keys()) + 1;
  const frontends = new Map<string, Plan['frontends'] extends Map<string, infer F> ? F : never>();
  for (const [k, f] of plan.frontends) {
    const vsk = d.byFrontend.get(k)?.[0];
    if (!vsk) { frontends.set(k, { ...f, backendIds: [], terminatingIds: [] }); continue; }
    const h = held.get(vsk);
    const term = new Set(f.terminatingIds.map((id) => rsKey(plan.backends.get(id) ?? { address: '', port: 0 })));
    const ids: number[] = [];
    const terminating: number[] = [];
    for (const [rk, rs] of h?.dests ?? []) {
      if (rs.weight === 0 && !term.has(rk)) continue; // draining: left by the plan
      let b = byAddr.get(`${rs.address}|${rs.port}|${f.protocol}`);
      if (!b) {
        b = { id: nextId++, address: rs.address, port: rs.port, protocol: f.protocol, terminating: false, local: false };
        backends.set(b.id, b);
        byAddr.set(`${rs.address}|${rs.port}|${f.protocol}`, b);
      }
      ids.push(b.id);
      if (term.has(rk)) terminating.push(b.id);
    }
    frontends.set(k, { ...f, backendIds: ids, terminatingIds: terminating });
  }
  return { ...plan, frontends, backends };
}

export interface IpvsCleanupResult { virtualServers: number; table: boolean; dummy: boolean }

/** Removes the IPVS mode's state (another mode starts, or `cleanup`); nothing when there is none. */
export async function cleanupIpvs(pinRoot: string, log?: Logger): Promise<IpvsCleanupResult | undefined> {
  const saved = loadIpvsState(ipvsStatePath(pinRoot));
  if (!saved && !(await dummyExists())) {
    // no trace of an IPVS agent; the table alone (a crash before the dummy) is removed by name
    const t = createTransport();
    const table = await removeTable(t, IPVS_NFT_TABLE).catch(() => false);
    return table ? { virtualServers: 0, table, dummy: false } : undefined;
  }
  const dp = new IpvsDataplane({ pinRoot, nodeAddresses: () => [], ...(log && { log }) });
  let n = 0;
  try {
    const c = await IpvsClient.open();
    n = (await c.listServices()).length;
    c.close();
    await dp.cleanup();
    const c2 = await IpvsClient.open();
    n -= (await c2.listServices()).length;
    c2.close();
  } catch (e) {
    if ((e as KbpError).code !== 'KBP_ERR_KERNEL_FEATURE') throw e;
    // no IPVS in this kernel: only the dummy, the table and the file can be left
    await removeTable(createTransport(), IPVS_NFT_TABLE).catch(() => false);
    await removeDummy();
    removeIpvsState(ipvsStatePath(pinRoot));
  }
  return { virtualServers: n, table: true, dummy: true };
}

function addElem(m: Elements, set: string, e: string): void {
  let s = m.get(set);
  if (!s) m.set(set, s = new Set());
  s.add(e);
}

/**
 * The frontends whose IPVS part the ops may change, by key, with the other scope's frontend on the
 * same tuple (an external frontend's virtual servers depend on its internal twin's backends);
 * undefined when the ops say something this cannot follow one frontend at a time (a backend whose
 * `local` flag changed is in every frontend that has it; an op that names a frontend by id only),
 * and then the caller walks every frontend.
 */
export function touchedFrontends(ops: readonly PlanOp[], prev: Plan, next: Plan): Set<string> | undefined {
  const keys = new Set<string>();
  const ids = new Set<number>();
  for (const op of ops) {
    switch (op.op) {
      case 'upsertFrontend': case 'deleteFrontend':
        keys.add(frontendKey(op.frontend));
        break;
      case 'upsertSlots': case 'deleteSlots': case 'upsertRevNat': case 'deleteRevNat': case 'setSourceRanges':
        ids.add(op.frontendId);
        break;
      case 'upsertBackend': case 'upsertBackends':
        for (const b of upsertedBackends(op)) {
          const old = prev.backends.get(b.id);
          if (old && old.local !== b.local) return undefined;
        }
        break;
      default:
        break;
    }
  }
  for (const k of [...keys]) {
    const f = next.frontends.get(k) ?? prev.frontends.get(k);
    if (!f) continue;
    const twin = frontendKey({ ...f, scope: f.scope === 'internal' ? 'external' : 'internal' });
    if (next.frontends.has(twin) || prev.frontends.has(twin)) keys.add(twin);
  }
  for (const k of keys) {
    ids.delete(next.frontends.get(k)?.id ?? -1);
    ids.delete(prev.frontends.get(k)?.id ?? -1);
  }
  return ids.size ? undefined : keys;
}
