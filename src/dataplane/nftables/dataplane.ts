// The nftables data plane behind the Dataplane interface: one inet table (ruleset.ts has its shape),
// written by one transaction per sync that carries only the elements and chains that changed. The
// table's content is kept in memory (NftModel, and in plan terms WrittenPlan: never the agent's plan,
// which the next build changes in place) and in a state file beside it (state.ts: a snapshot and a
// journal); the table is listed only for its one-element generation set, at start and by `dump`.
import { createHash } from 'node:crypto';
import { upsertedBackends, type Plan, type PlanOp } from '../../plan/types.js';
import type { Dataplane, DataplaneStats } from '../types.js';
import { UNLIMITED, type Capacity } from '../../plan/capacity.js';
import type { Logger } from '../../util/log.js';
import { LinkLister, listLinksAsync } from '../links.js';
import { silentLogger } from '../../util/log.js';
import { canonicalIp } from '../../util/ip.js';
import { KbpError } from '../../util/errors.js';
import { createTransport, flushStaleUdp, type NftTransport, type UdpFlushRule } from './native.js';
import { staleUdpRules } from './conntrack.js';
import { elementLines, elementTypes, fanoutGroups, NftModel, type ElementType } from './ruleset.js';
import { externalDevicesCommands, HELPER_SETS, NFT_TABLE, type LocalDetector } from './helpers.js';
import { loadState, nftStatePath, NftStateFile, removeState, type SavedState } from './state.js';
import { WrittenPlan } from '../written.js';

export interface NftablesDataplaneOptions {
  /** the agent's pin root: names the state file, so agents of several lab nodes are told apart */
  pinRoot: string;
  table?: string;
  statePath?: string;
  /** external devices by name; default: the devices that hold one of nodeAddresses() */
  devices?: string[];
  nodeAddresses: () => string[];
  masqMark?: number;
  /** kube-proxy's local detector (config.ts localTrafficDetector): flows to 'offCluster' frontends from elsewhere are masqueraded */
  localTraffic?: LocalDetector;
  transport?: NftTransport;
  log?: Logger;
  /**
   * plans with more frontends than this write the state file's snapshot off the sync's path (default
   * 256: at 1,100 frontends the save was ~90 of the ~100 ms an agent's one-change sync spent in
   * apply); a sync of a few frontends appends a journal line, whatever the size
   */
  syncSaveMax?: number;
  /** how long such a snapshot waits, coalescing the syncs in between (default 1000 ms) */
  saveDelayMs?: number;
  /**
   * syncs with at least this many element changes send them in bulk, when the transport can (default
   * 1000); a sync of element changes only (no object created or deleted) always does
   */
  bulkMinElements?: number;
  /**
   * delete UDP conntrack entries to removed backends after each sync (default: when `transport` is
   * not given, i.e. not in tests); a function is called in place of the conntrack flush (tests)
   */
  udpConntrackCleanup?: boolean | ((rules: UdpFlushRule[]) => Promise<{ deleted: number }>);
}

let lister: LinkLister | null | undefined;

/**
 * Devices of the current network namespace with their addresses: over rtnetlink (links.ts; one
 * socket for the process), else from `ip -j addr` (off the event loop) when the netlink addon cannot load. Housekeeping
 * asks every 10 s: `ip` was a fork of the agent each time, on the event loop (issue 10).
 */
export async function linkAddresses(): Promise<Array<{ ifname: string; addresses: string[] }>> {
  if (lister === undefined) {
    try { lister = new LinkLister(); } catch { lister = null; }
  }
  const links = lister ? await lister.list() : await listLinksAsync();
  return links.map((l) => ({ ifname: l.ifname, addresses: l.addresses }));
}

/** The generation element of the table, or undefined when the table (or the element) is absent. */
export async function readGeneration(t: NftTransport, table: string): Promise<number | undefined> {
  let out: string;
  try {
    out = await t.run(`list set inet ${table} ${HELPER_SETS.generation}\n`, { json: true });
  } catch {
    return undefined;
  }
  const j = JSON.parse(out) as { nftables?: Array<{ set?: { elem?: unknown[] } }> };
  const elem = j.nftables?.find((x) => x.set)?.set?.elem;
  const v = Array.isArray(elem) ? Number(elem[0]) : NaN;
  return Number.isFinite(v) ? v : undefined;
}

/** Whether the table exists: the names of the inet tables only (listing the table would dump its every element). */
export async function tableExists(t: NftTransport, table: string): Promise<boolean> {
  let out: string;
  try {
    out = await t.run('list tables inet\n', { json: true });
  } catch {
    return false;
  }
  const j = JSON.parse(out || '{}') as { nftables?: Array<{ table?: { name?: string } }> };
  return (j.nftables ?? []).some((x) => x.table?.name === table);
}

/** The plan the table holds, from the state file, when the file describes the table's generation. */
export async function readNftState(t: NftTransport, opts: { pinRoot: string; table?: string; statePath?: string }): Promise<SavedState | undefined> {
  const table = opts.table ?? NFT_TABLE;
  const saved = loadState(opts.statePath ?? nftStatePath(opts.pinRoot, table));
  if (!saved) return undefined;
  const gen = await readGeneration(t, table);
  return gen !== undefined && gen === saved.gen ? saved : undefined;
}

/** Deletes the table (one transaction); false when there was none. */
export async function removeTable(t: NftTransport, table = NFT_TABLE): Promise<boolean> {
  if (!(await tableExists(t, table))) return false;
  await t.run(`delete table inet ${table}\n`);
  return true;
}

/**
 * Proves nftables can serve: a scratch table with what the data plane uses (a nat base chain, a
 * concatenated verdict map, numgen, a dynamic set with timeouts, fib, reject) is committed, then
 * deleted. A file or module existing proves nothing (kube-proxy's nftables probe does the same).
 */
export async function probeNftables(t: NftTransport = createTransport()): Promise<{ ok: true; transport: string } | { ok: false; reason: string }> {
  const name = `kbp-probe-${process.pid}`;
  try {
    await t.run(`table inet ${name} {
  map m { type ipv4_addr . inet_proto . inet_service : verdict; }
  set a { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic,timeout; }
  chain r {
    meta l4proto tcp reject with tcp reset
  }
  chain s {
    update @a { ip saddr . ip daddr . meta l4proto . th dport timeout 1s }
    numgen random mod 2 vmap { 0 : goto r, 1 : goto r }
  }
  chain p {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr . meta l4proto . th dport vmap @m
    fib daddr type local meta l4proto tcp th dport 1 goto s
  }
}
`);
  } catch (e) {
    return { ok: false, reason: `an nft transaction on a scratch table failed (${t.kind}): ${(e as Error).message}` };
  } finally {
    await t.run(`delete table inet ${name}\n`).catch(() => undefined);
  }
  return { ok: true, transport: t.kind };
}

export class NftablesDataplane implements Dataplane {
  readonly kind = 'nftables' as const;
  readonly table: string;
  readonly #opts: NftablesDataplaneOptions;
  readonly #log: Logger;
  readonly #statePath: string;
  readonly #model: NftModel;
  #t: NftTransport | undefined;
  #restored: Plan | undefined;
  /** what the table holds, in plan terms (the agent's plan is changed in place by its next build) */
  readonly #written = new WrittenPlan();
  readonly #state: NftStateFile;
  #devicesWanted: string[] = [];
  #devicesInTable: string | undefined;
  #saveTimer: NodeJS.Timeout | undefined;
  /** a table of an earlier agent that the first sync replaces (in one buffer, atomically) */
  #tableInPlace = false;
  #types: Map<string, ElementType> | undefined;

  constructor(opts: NftablesDataplaneOptions) {
    this.#opts = opts;
    this.table = opts.table ?? NFT_TABLE;
    this.#log = opts.log ?? silentLogger;
    this.#statePath = opts.statePath ?? nftStatePath(opts.pinRoot, this.table);
    this.#state = new NftStateFile(this.#statePath, this.table);
    this.#model = new NftModel(this.table, { masqMark: opts.masqMark, localTraffic: opts.localTraffic });
    try {
      this.#model.skeleton();
    } catch (e) {
      // a detector naming no possible device: refused at start, not at every sync
      throw new KbpError('KBP_ERR_CONFIG', `nftables data plane: ${(e as Error).message}`, { cause: e });
    }
    this.#t = opts.transport;
  }

  get transport(): NftTransport {
    return (this.#t ??= createTransport());
  }

  async init(): Promise<void> {
    const saved = await readNftState(this.transport, { pinRoot: this.#opts.pinRoot, table: this.table, statePath: this.#statePath });
    if (saved && saved.shape !== undefined && saved.shape !== shapeOf(this.#model.skeleton())) {
      // the fixed chains differ (another masquerade mark or local detector): rebuilt, in one transaction
      this.#tableInPlace = true;
      this.#log.info({ table: this.table }, 'the nftables table was built with other options: the first sync replaces it in one transaction');
    } else if (saved) {
      this.#model.restore(saved.plan, saved.orders, saved.gen);
      this.#restored = saved.plan;
      this.#written.reset(saved.plan);
      // the journal goes on from a snapshot of this agent (the restored plan, now), off the start's path for large plans
      this.#scheduleSave(saved.plan.frontends.size <= (this.#opts.syncSaveMax ?? 256));
      this.#log.info({ table: this.table, frontends: saved.plan.frontends.size, generation: saved.gen, transport: this.transport.kind }, 'reusing the nftables table of an earlier agent');
    } else {
      this.#tableInPlace = await tableExists(this.transport, this.table);
      this.#log.info({ table: this.table, transport: this.transport.kind }, this.#tableInPlace
        ? 'the nftables table does not match its state file: the first sync replaces it in one transaction'
        : 'nftables data plane ready; the first sync creates the table');
    }
    await this.syncDevices();
  }

  async readPlan(): Promise<Plan | undefined> {
    // handed over once: the agent's first build starts from it (and may later change it in place)
    const p = this.#restored;
    this.#restored = undefined;
    return p;
  }

  async apply(ops: PlanOp[], next: Plan): Promise<void> {
    // a fresh table takes the whole plan: which frontends the ops name does not matter
    const touched = this.#model.fresh ? new Set<string>() : this.#written.touched(ops, next);
    const backendIds = new Set<number>();
    if (!this.#model.fresh) for (const op of ops) {
      if (op.op === 'upsertBackend' || op.op === 'upsertBackends') for (const b of upsertedBackends(op)) backendIds.add(b.id);
      else if (op.op === 'deleteBackend') backendIds.add(op.backendId);
    }
    const wasFresh = this.#model.fresh;
    const { tx, commit } = this.#model.plan(next, touched, backendIds);
    const devs = this.#devicesWanted.join(',');
    const devCmds = wasFresh || devs !== this.#devicesInTable ? externalDevicesCommands(this.table, this.#devicesWanted) : '';
    const bulk = this.transport.bulk;
    // element changes only (most syncs of one change): one bulk batch, no libnftables context (its
    // creation, parse and cache fetch were most of a one-change sync's CPU)
    const elementsOnly = !tx.structure && !tx.cleanup && !devCmds;
    if (bulk && (tx.elements >= (this.#opts.bulkMinElements ?? 1000) || elementsOnly) && !(wasFresh && this.#tableInPlace)) {
      // many elements (a full sync): three steps, one switch: new objects (referenced by nothing
      // yet), then every element change in one transaction without libnftables' parser, then the
      // objects nothing references any more. A small sync goes in one buffer through libnftables
      // (~1-3 ms), and so does the replacement of a table an earlier agent left: no moment without it.
      if (tx.structure || devCmds) await this.transport.run(tx.structure + devCmds);
      if (!this.#types || tx.structure) this.#types = elementTypes(this.table, this.#model.skeletonOpts);
      const types = this.#types;
      // an addon built before fan-out groups: one group per map
      const groups = this.transport.fanout ? tx.groups : tx.groups.flatMap(fanoutGroups);
      await bulk(this.table, groups.map((g) => {
        const t = types.get(g.set);
        if (!t) throw new Error(`nftables: no declaration for set ${g.set}`);
        // an addon built before BulkGroup.values: one "key : value" line per element
        if (g.values !== undefined && !this.transport.splitValues) return { del: g.del, set: g.set, ...t, elems: elementLines(g).join('\n') };
        return { del: g.del, set: g.set, ...t, elems: g.elems, ...(g.values !== undefined && { values: g.values }), ...(g.fanout && { fanout: g.fanout }) };
      }));
      commit();
      this.#committed(ops, next, wasFresh, touched);
      if (tx.cleanup) {
        await this.transport.run(tx.cleanup).catch((e: unknown) => {
          this.#log.warn({ err: e }, 'deleting unused nftables objects failed; they stay, unreferenced');
        });
      }
    } else {
      await this.transport.run(tx.script + devCmds);
      commit();
      this.#committed(ops, next, wasFresh, touched);
    }
    this.#tableInPlace = false;
    this.#devicesInTable = devs;
    this.#log.debug({ elements: tx.elements, generation: this.#model.gen }, 'nftables transaction committed');
    // after the table changed: a flow deleted now is re-balanced by the new table
    const stale = this.#stale;
    this.#stale = [];
    const cleanup = this.#opts.udpConntrackCleanup ?? this.#opts.transport === undefined;
    if (stale.length && cleanup) {
      try {
        const r = await (typeof cleanup === 'function' ? cleanup(stale) : flushStaleUdp(stale));
        if (r.deleted) this.#log.info({ deleted: r.deleted, frontends: stale.length }, 'stale UDP conntrack entries deleted');
      } catch (e) {
        // the table is in place; the entries time out by themselves (30 s, 120 s once answered)
        this.#log.warn({ err: e, frontends: stale.length }, 'deleting stale UDP conntrack entries failed');
      }
    }
  }

  /** UDP flush rules of the last commit, for apply to send after it */
  #stale: UdpFlushRule[] = [];

  /**
   * The kernel took the transaction: the record and the state file follow at once, in the same
   * task as the model's commit (a snapshot in a timer never sees one without the other).
   */
  #committed(ops: readonly PlanOp[], next: Plan, wasFresh: boolean, touched: Set<string>): void {
    // the record is still the plan before: the UDP frontends that lost a backend address
    this.#stale = staleUdpRules(this.#written.any ? this.#written.plan : undefined, next, wasFresh ? undefined : touched);
    const small = next.frontends.size <= (this.#opts.syncSaveMax ?? 256);
    if (wasFresh) {
      this.#written.reset(next);
      this.#state.invalidate();
      this.#scheduleSave(small);
      return;
    }
    this.#written.update(ops, next, touched);
    let appended = false;
    try {
      appended = this.#state.append(this.#model.gen, this.#written.plan, ops, touched, this.#orderOf);
    } catch (e) {
      this.#log.warn({ err: e }, 'appending to the nftables state journal failed; a snapshot follows');
      this.#state.invalidate();
    }
    if (!appended || this.#state.wantsCompaction) this.#scheduleSave(small);
  }

  readonly #orderOf = (k: string): number[] | undefined => this.#model.recs.get(k)?.order;

  #scheduleSave(now: boolean): void {
    if (now) {
      if (this.#saveTimer) clearTimeout(this.#saveTimer);
      this.#saveTimer = undefined;
      this.#save();
      return;
    }
    // large plans: the file (MBs of JSON) is written off the sync's path; a kill before it lands
    // leaves a stale file, which the generation check catches (the next agent rebuilds the table)
    this.#saveTimer ??= setTimeout(() => {
      this.#saveTimer = undefined;
      this.#save();
    }, this.#opts.saveDelayMs ?? 1000);
    this.#saveTimer.unref();
  }

  #save(): void {
    if (!this.#written.any || this.#model.fresh) return;
    try {
      this.#state.snapshot(this.#model.gen, this.#written.plan, this.#orderOf, shapeOf(this.#model.skeleton()));
    } catch (e) {
      this.#log.warn({ err: e }, 'writing the nftables state file failed; a restart will rebuild the table');
    }
  }

  async syncDevices(): Promise<void> {
    let want: string[];
    if (this.#opts.devices) want = [...this.#opts.devices];
    else {
      const addrs = new Set(this.#opts.nodeAddresses().map((a) => { try { return canonicalIp(a); } catch { return a; } }));
      want = (await linkAddresses()).filter((l) => l.ifname !== 'lo' && l.addresses.some((a) => addrs.has(a))).map((l) => l.ifname);
    }
    want = [...new Set(want)].sort();
    this.#devicesWanted = want;
    if (this.#model.fresh || want.join(',') === this.#devicesInTable) return;
    await this.transport.run(externalDevicesCommands(this.table, want));
    this.#devicesInTable = want.join(',');
    this.#log.info({ devices: want }, 'external devices');
  }

  async stats(): Promise<DataplaneStats> {
    return {
      // the model keeps the counts through each commit (NftModel.counts): nothing is walked here
      maps: this.#model.counts().map((c) => ({ ...c, capacity: Infinity })),
      events: {},
      frontends: new Map(),
    };
  }

  capacity(): Capacity {
    return UNLIMITED;
  }

  async close(): Promise<void> {
    if (this.#saveTimer) {
      clearTimeout(this.#saveTimer);
      this.#saveTimer = undefined;
      this.#save();
    }
  }

  async cleanup(): Promise<void> {
    await this.close();
    await removeTable(this.transport, this.table);
    removeState(this.#statePath);
    this.#state.invalidate();
    this.#model.fresh = true;
  }
}

/** A short digest of the table's fixed part, kept in the state file. */
function shapeOf(skeleton: string): string {
  return createHash('sha256').update(skeleton).digest('hex').slice(0, 16);
}

export function nftStateFile(pinRoot: string, table = NFT_TABLE): string {
  return nftStatePath(pinRoot, table);
}

