// The IPVS data plane behind the Dataplane interface. From a plan: a virtual server per frontend
// address (a NodePort on 0.0.0.0 / :: is one per node address, as kube-proxy), real servers with
// weights, persistence for ClientIP affinity; the VIPs on a dummy device; an nftables table beside
// it for what IPVS cannot do (nft.ts). A sync diffs the wanted state against what the kernel holds
// (kept in memory, read back at start and on each full resync) and writes only the difference.
//
// Graceful termination, as kube-proxy's IPVS mode: a TCP or SCTP real server that leaves goes to
// weight 0 (its flows continue, it gets no new one) and is deleted once IPVS counts no connection to
// it or after drainMs; a UDP one is deleted at once and its conntrack entries flushed, so the flow's
// next packet is scheduled to another real server instead of being dropped. With
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
import { linkAddresses, tableExists, removeTable } from '../nftables/dataplane.js';
import { externalDevicesCommands, type Fam } from '../nftables/helpers.js';
import { IPVS_SCHEDULERS, IpvsClient, ipvsOps, vsKey, type IpvsOp, type RealServer, type VirtualServer } from './ipvs.js';
import { desiredState, isOurVirtualServer, rsKey, type Desired } from './model.js';
import { defaultNodePortRange, type NodePortRange } from '../../model/types.js';
import { elementDiff, fullTable, IPVS_NFT_TABLE, type Elements } from './nft.js';
import { applySysctls, dummyAddresses, ensureDummy, removeDummy, setDummyAddresses, DUMMY_DEVICE } from './host.js';
import { staleUdpRules } from '../nftables/conntrack.js';
import { flushStaleUdp } from '../nftables/native.js';
import { loadIpvsState, ipvsStatePath, removeIpvsState, saveIpvsState } from './state.js';


export interface IpvsDataplaneOptions {
  /** the agent's pin root: names the state file, so several agents (lab nodes) are told apart */
  pinRoot: string;
  scheduler?: string;
  /** external devices by name; default: the devices that hold one of nodeAddresses() */
  devices?: string[];
  nodeAddresses: () => string[];
  dummy?: string;
  table?: string;
  /** the node-port range: without a state file, a virtual server on a node address and a port in it is ours (default 30000-32767) */
  nodePortRange?: NodePortRange;
  /** longest time a removed TCP/SCTP real server drains before it is deleted anyway (default 15 min) */
  drainMs?: number;
  /** full resync against the kernel every this many syncDevices() calls (default 6: a minute) */
  resyncEvery?: number;
  transport?: NftTransport;
  /** delete conntrack entries of removed UDP real servers (default: when `transport` is not given, i.e. not in tests) */
  udpConntrackCleanup?: boolean;
  log?: Logger;
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
  #c: IpvsClient | undefined;
  #t: NftTransport | undefined;
  /** what the kernel holds of ours, by vsKey */
  #held = new Map<string, HeldVs>();
  /** real servers draining (weight 0, left by the plan): vsKey -> rsKey -> deadline (ms) */
  #draining = new Map<string, Map<string, number>>();
  #vips = new Set<string>();
  #elements: Elements = new Map();
  #tableFresh = true;
  #devicesWanted: string[] = [];
  #devicesInTable = '';
  #plan: Plan | undefined;
  #restored: Plan | undefined;
  #desired: Desired | undefined;
  #ticks = 0;
  #nodeAddrs: Record<Fam, string[]> | undefined;

  constructor(o: IpvsDataplaneOptions) {
    this.#o = o;
    this.#log = o.log ?? silentLogger;
    this.#scheduler = o.scheduler ?? 'rr';
    if (!(IPVS_SCHEDULERS as readonly string[]).includes(this.#scheduler)) {
      throw new KbpError('KBP_ERR_CONFIG', `IPVS scheduler ${JSON.stringify(this.#scheduler)} is not one of ${IPVS_SCHEDULERS.join(', ')}`);
    }
    this.#dummy = o.dummy ?? DUMMY_DEVICE;
    this.#table = o.table ?? IPVS_NFT_TABLE;
    this.#statePath = ipvsStatePath(o.pinRoot);
    this.#t = o.transport;
  }

  get #transport(): NftTransport {
    return (this.#t ??= createTransport());
  }

  get #client(): IpvsClient {
    if (!this.#c) throw new KbpError('KBP_ERR_INTERNAL', 'IPVS data plane used before init()');
    return this.#c;
  }

  async init(): Promise<void> {
    this.#c = await IpvsClient.open();
    for (const s of applySysctls()) this.#log.info(s, 'set an IPVS sysctl');
    ensureDummy(this.#dummy);
    const saved = loadIpvsState(this.#statePath);
    await this.#readKernel(saved?.owned ?? []);
    this.#tableFresh = true;
    if (saved) {
      this.#restored = saved.plan;
      this.#log.info({ frontends: saved.plan.frontends.size, virtualServers: this.#held.size }, 'reusing the IPVS state of an earlier agent');
    } else {
      this.#log.info({ virtualServers: this.#held.size, dummy: this.#dummy }, 'IPVS data plane ready');
    }
    await this.syncDevices();
    // an earlier agent's plan: bring the kernel to it now (a no-op when nothing changed meanwhile),
    // so the agent's first diff against it is also true of the kernel
    if (saved) await this.#write(saved.plan);
  }

  /** The kernel's virtual servers that are ours (recorded as ours, on the dummy's addresses, our marks, NodePorts). */
  async #readKernel(owned: string[]): Promise<void> {
    const onDummy = new Set(dummyAddresses(this.#dummy));
    this.#vips = onDummy;
    const node = this.#nodeAddresses();
    const o = { owned: new Set(owned), onDummy, nodeAddresses: new Set([...node[4], ...node[6]]), nodePortRange: this.#o.nodePortRange ?? defaultNodePortRange };
    const all = await this.#client.listServices();
    const ours = all.filter((v) => isOurVirtualServer(v, o));
    const dests = await this.#client.listDests(ours);
    this.#held = new Map(ours.map((v, i) => [vsKey(v), { vs: v, dests: new Map(dests[i]!.map((d) => [rsKey(d), d])) }]));
  }

  async readPlan(): Promise<Plan | undefined> {
    return this.#restored;
  }

  async apply(_ops: PlanOp[], next: Plan): Promise<void> {
    await this.#write(next);
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

  /** Brings the kernel to the plan: virtual servers, real servers, VIPs, nft elements; only the diff. */
  async #write(next: Plan): Promise<void> {
    const want = desiredState(next, { scheduler: this.#scheduler, nodeAddresses: this.#nodeAddresses() });
    const now = Date.now();
    const ops: IpvsOp[] = [];
    const after: IpvsOp[] = [];
    // 1. VIPs first: IPVS serves only local addresses
    const vipAdd = [...want.vips].filter((a) => !this.#vips.has(a));
    await setDummyAddresses(vipAdd, [], this.#dummy);
    for (const a of vipAdd) this.#vips.add(a);
    // 2. virtual servers and real servers
    for (const [k, d] of want.services) {
      const h = this.#held.get(k);
      if (!h) {
        ops.push(ipvsOps.addService(d.vs));
        for (const rs of d.dests.values()) ops.push(ipvsOps.addDest(d.vs, rs));
        continue;
      }
      if (h.vs.scheduler !== d.vs.scheduler || h.vs.flags !== d.vs.flags || h.vs.timeout !== d.vs.timeout) ops.push(ipvsOps.editService(d.vs));
      const draining = this.#draining.get(k);
      for (const [rk, rs] of d.dests) {
        const have = h.dests.get(rk);
        if (!have) ops.push(ipvsOps.addDest(d.vs, rs));
        else if (have.weight !== rs.weight) ops.push(ipvsOps.editDest(d.vs, rs));
        draining?.delete(rk);
      }
      for (const [rk, have] of h.dests) {
        if (d.dests.has(rk)) continue;
        if (d.vs.protocol === 'UDP') {
          after.push(ipvsOps.delDest(d.vs, have));
          draining?.delete(rk);
        } else if (!draining?.has(rk)) {
          if (have.weight !== 0) ops.push(ipvsOps.editDest(d.vs, { ...have, weight: 0 }));
          if (!this.#draining.has(k)) this.#draining.set(k, new Map());
          this.#draining.get(k)!.set(rk, now + (this.#o.drainMs ?? 15 * 60_000));
        }
      }
      if (draining && !draining.size) this.#draining.delete(k);
    }
    // 3. the nft table (marks, masquerade, refusal, source ranges) before stale servers go
    await this.#writeTable(want.elements);
    // 4. removals: whole virtual servers no frontend wants any more (their flows end with them, as
    // kube-proxy's), UDP real servers at once
    for (const [k, h] of this.#held) {
      if (want.services.has(k)) continue;
      after.push(ipvsOps.delService(h.vs));
      this.#draining.delete(k);
    }
    const failed = await this.#client.run([...ops, ...after]);
    // the kernel state after the batch: re-read what failed rather than guess
    if (failed.length) {
      await this.#readKernel([...this.#held.keys(), ...want.services.keys()]);
      throw new KbpError('KBP_ERR_DATAPLANE', `IPVS: ${failed.length} of ${ops.length + after.length} writes failed: ${failed.slice(0, 5).map((f) => f.message).join('; ')}`);
    }
    // the in-memory copy of the kernel: desired, plus what drains
    const held = new Map<string, HeldVs>();
    for (const [k, d] of want.services) {
      const dests = new Map(d.dests);
      const h = this.#held.get(k);
      for (const rk of this.#draining.get(k)?.keys() ?? []) {
        const have = h?.dests.get(rk);
        if (have) dests.set(rk, { ...have, weight: 0 });
      }
      held.set(k, { vs: d.vs, dests });
    }
    this.#held = held;
    // after the UDP real servers are gone: a flow's next packet is scheduled anew (the same rules
    // as the nftables mode: entries to a UDP frontend whose reply source left its backends)
    const stale = staleUdpRules(this.#plan, next);
    if (stale.length && (this.#o.udpConntrackCleanup ?? this.#o.transport === undefined)) {
      try {
        const r = await flushStaleUdp(stale);
        if (r.deleted) this.#log.info({ deleted: r.deleted, frontends: stale.length }, 'conntrack entries of removed UDP real servers deleted');
      } catch (e) {
        this.#log.warn({ err: e, frontends: stale.length }, 'deleting the conntrack entries of removed UDP real servers failed');
      }
    }
    // 5. VIPs no longer wanted
    const vipDel = [...this.#vips].filter((a) => !want.vips.has(a));
    await setDummyAddresses([], vipDel, this.#dummy);
    for (const a of vipDel) this.#vips.delete(a);
    this.#plan = next;
    this.#desired = want;
    this.#save();
  }

  async #writeTable(want: Elements): Promise<void> {
    let script: string;
    if (this.#tableFresh) script = fullTable(this.#table, want, this.#devicesWanted, await tableExists(this.#transport, this.#table));
    else {
      script = elementDiff(this.#table, this.#elements, want);
      const devs = this.#devicesWanted.join(',');
      if (devs !== this.#devicesInTable) script += externalDevicesCommands(this.#table, this.#devicesWanted);
    }
    if (script) {
      try {
        await this.#transport.run(script);
      } catch (e) {
        this.#tableFresh = true; // the next sync rewrites the whole table in one transaction
        throw e;
      }
    }
    this.#tableFresh = false;
    this.#elements = want;
    this.#devicesInTable = this.#devicesWanted.join(',');
  }

  #save(): void {
    if (!this.#plan) return;
    try {
      saveIpvsState(this.#statePath, this.#plan, [...this.#held.keys()]);
    } catch (e) {
      this.#log.warn({ err: e }, 'writing the IPVS state file failed; a restart rebuilds from the kernel');
    }
  }

  /** External devices, draining real servers, and every resyncEvery-th call a full resync. */
  async syncDevices(): Promise<void> {
    this.#nodeAddrs = undefined; // re-read on the next use (an address added: its NodePorts come with the next sync)
    let want: string[];
    if (this.#o.devices) want = [...this.#o.devices];
    else {
      const addrs = new Set(this.#o.nodeAddresses().map((a) => { try { return canonicalIp(a); } catch { return a; } }));
      want = linkAddresses().filter((l) => l.ifname !== 'lo' && l.ifname !== this.#dummy && l.addresses.some((a) => addrs.has(a))).map((l) => l.ifname);
    }
    this.#devicesWanted = [...new Set(want)].sort();
    if (!this.#c) return;
    if (!this.#tableFresh && this.#devicesWanted.join(',') !== this.#devicesInTable) {
      await this.#transport.run(externalDevicesCommands(this.#table, this.#devicesWanted));
      this.#devicesInTable = this.#devicesWanted.join(',');
      this.#log.info({ devices: this.#devicesWanted }, 'external devices');
    }
    await this.drain();
    if (this.#plan && ++this.#ticks % (this.#o.resyncEvery ?? 6) === 0) await this.resync();
  }

  /** Deletes draining real servers that IPVS counts no connection to, or whose bound has passed. */
  async drain(): Promise<number> {
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
  async resync(): Promise<void> {
    if (!this.#plan) return;
    await this.#readKernel([...this.#held.keys()]);
    // the weight-0 servers the kernel still holds are the draining ones; keep their deadlines
    this.#tableFresh = !(await tableExists(this.#transport, this.#table));
    await this.#write(this.#plan);
  }

  /**
   * For `dump`, without changing anything: the kernel's virtual servers of this agent, and the saved
   * plan with each frontend's backends read back from IPVS (undefined without a state file).
   */
  async inspect(): Promise<{ plan: Plan | undefined; servers: Array<{ vs: VirtualServer; dests: RealServer[] }> }> {
    this.#c ??= await IpvsClient.open();
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

  async close(): Promise<void> {
    this.#c?.close();
    this.#c = undefined;
  }

  async cleanup(): Promise<void> {
    if (!this.#c) this.#c = await IpvsClient.open();
    await this.#readKernel(loadIpvsState(this.#statePath)?.owned ?? []);
    const failed = await this.#client.run([...this.#held.values()].map((h) => ipvsOps.delService(h.vs)));
    if (failed.length) throw new KbpError('KBP_ERR_DATAPLANE', `IPVS cleanup: ${failed.map((f) => f.message).join('; ')}`);
    this.#held.clear();
    this.#draining.clear();
    await removeTable(this.#transport, this.#table).catch(() => undefined);
    removeDummy(this.#dummy);
    removeIpvsState(this.#statePath);
    await this.close();
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
  const { dummyExists } = await import('./host.js');
  if (!saved && !dummyExists()) {
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
    removeDummy();
    removeIpvsState(ipvsStatePath(pinRoot));
  }
  return { virtualServers: n, table: true, dummy: true };
}
