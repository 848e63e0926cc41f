// Plan writes -> the data plane's maps, and the settings the agent writes (lb_config, devices, node
// addresses).
//
// apply() takes diff()'s ops in order and turns each run of same-kind ops into one batch system call
// per map (a run's ops are independent of each other; the order between kinds is what keeps the
// kernel consistent, and it is kept). A full sync of 10,000 Services x 10 endpoints is ~200,000 map
// entries plus 10,000 Maglev tables, each a region of lb_maglev_slots written with one copy through a
// shared mapping (slot-alloc.ts hands out the regions). A frontend's names go to the agent's state
// file, which the maps cannot hold.
//
// The writing is a generator of steps (Write): one batch system call each, or a pause between chunks
// of work. apply() runs the steps at once; applyAsync() runs each batch on libuv's thread pool and
// lets the event loop run at every pause, so /healthz and /metrics answer during a long apply. Both take the same steps in the same
// order, whatever the maps hold.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { IdMap } from '../../plan/id-map.js';
import { nativeFillAvailable } from '../../plan/maglev-native.js';
import { fillTables, pendingSlots, type SlotSource } from '../../plan/slot-source.js';
import type { PlanBackend, PlanFrontend, PlanOp, PlanTable } from '../../plan/types.js';
import { KbpError } from '../../util/errors.js';
import { cpuBudget } from '../../util/cpus.js';
import { strictV4 } from '../../util/ip.js';
import type { AgentStateFile } from './agent-state-file.js';
import * as L from './layout.js';
import type { DataplaneMaps } from './maps.js';
import { BpfBatchError, E2BIG, ENOSPC } from './native/errors.js';
import type { BpfMap, MaglevFillJob } from './native/map.js';
import { BPF_ANY, BPF_F_MMAPABLE, MapType } from './native/uapi.js';
import { readBackendOrder, readMemberLists } from './map-reader.js';
import { regionSize, SlotAllocator, type Region } from './slot-alloc.js';
import { intHash, ShardedMap, stringHash } from '../../util/sharded-map.js';
import { releaseArray } from '../../util/release.js';

export interface BpfMapsOptions {
  /**
   * Write a new Maglev table of the same M into the region of the table it replaces, slot by slot,
   * when every frontend of the old table moves to the new one in the same apply (an endpoint change):
   * no frontend write needed for the table, no region taken. Otherwise a new table takes a free
   * region and the frontends switch to it with their update.
   */
  recycleTables?: boolean;
  /** lb_maglev_slots regions freed are reused after this long, and only by a later apply (default 1000) */
  regionGraceMs?: number;
  /**
   * An apply that gives new frontends at least this many slots (a first sync's) leaves lb_slots to
   * flushSlots() (default DEFER_SLOTS_FROM; Infinity: never). No program reads lb_slots: it is the
   * backend lists by slot that an agent of an earlier build reads when it starts over these maps.
   */
  deferSlotsFrom?: number;
  /** the most lb_backends entries one batch writes (default BACKENDS_PER_BATCH) */
  backendsPerBatch?: number;
}

/**
 * lb_backends entries encoded and written per batch. A first sync's million backends at 100,000
 * Services were encoded at once: 24 MiB of keys and values in the RSS while the kernel took them, a
 * plateau of the start's peak in the apply (docs/perf-log.md, session 28, p28rss); a batch of 131,072 is
 * 3 MiB, freed before the next is encoded.
 */
export const BACKENDS_PER_BATCH = 1 << 17;

/**
 * Slots of new frontends from which an apply leaves lb_slots to the deferred write: a first sync's
 * (~110,000 at 10,000 Services, ~1M at 100,000, ~0.6 s of kernel inserts) comes off its critical
 * path; a change's few are written in its apply, as before.
 */
export const DEFER_SLOTS_FROM = 4096;

/** The Maglev table id readPlan() gives the table in the region starting at slot off. */
export function tableIdOfRegion(off: number): number {
  return off / L.LB_MAGLEV_IDS_PER_ELEM + 1;
}

export interface ApplyResult {
  /** system calls' worth of batches written (for debugging and benchmarks) */
  batches: number;
  /** Maglev tables written (regions of lb_maglev_slots) */
  tables: number;
  /** (frontend, backend) pairs that ended: a backend left a frontend (socket termination follows) */
  membersLeft: number;
  /** the frontends those pairs belonged to */
  leftFrontends: Set<number>;
}

/** One step of a write: a batch system call, or a point where applyAsync lets the event loop run. */
type Write =
  // free: keys and values were made for this write alone and nothing reads them after it: the
  // runner releases their memory once the kernel holds the entries (releaseArray: ~34 MiB of
  // them in a first sync at 100,000 Services, dead until the next full GC otherwise)
  | { kind: 'update'; map: BpfMap; keys: Buffer; values: Buffer; count: number; threads?: number; free?: boolean }
  | { kind: 'deleteMany'; map: BpfMap; keys: Buffer; count: number }
  | { kind: 'pause' };
/** the steps of a write; what a step returns (deleteMany: how many keys existed) is sent back in */
type Steps = Generator<Write, void, number>;
const PAUSE: Write = { kind: 'pause' };
/** CPU-bound work between pauses: Maglev tables built, slots encoded */
const TABLES_PER_PAUSE = 64;
const SLOTS_PER_PAUSE = 32_768;
/**
 * Threads a large batch of lb_slots or lb_members entries is split over (updateBatch threads): the
 * kernel's hash inserts, ~0.6 us each and independent, are most of a first sync's map writes after the
 * Maglev fill (~110,000 entries in each map at 10,000 Services).
 */
const HASH_BATCH_THREADS = Math.min(4, cpuBudget());

function runSync(steps: Steps): void {
  let r = steps.next();
  while (!r.done) {
    const w = r.value;
    let out = 0;
    try {
      if (w.kind === 'update') w.map.updateBatch(w.keys, w.values, w.count, BPF_ANY, w.threads);
      else if (w.kind === 'deleteMany') out = w.map.deleteMany(w.keys, w.count);
    } catch (e) {
      // a failed write's step names what the kernel refused from its buffers: not released
      r = steps.throw(e);
      continue;
    }
    if (w.kind === 'update' && w.free) { releaseArray(w.keys); releaseArray(w.values); }
    r = steps.next(out);
  }
}

async function runAsync(steps: Steps): Promise<void> {
  let r = steps.next();
  while (!r.done) {
    const w = r.value;
    let out = 0;
    try {
      if (w.kind === 'update') await w.map.updateBatchAsync(w.keys, w.values, w.count, BPF_ANY, w.threads);
      else if (w.kind === 'deleteMany') out = await w.map.deleteManyAsync(w.keys, w.count);
      else await nextTurn();
    } catch (e) {
      r = steps.throw(e);
      continue;
    }
    if (w.kind === 'update' && w.free) { releaseArray(w.keys); releaseArray(w.values); }
    r = steps.next(out);
  }
}

const HOST_LE = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * Slots of lb_maglev_slots filled and copied per step when a write's tables are still to be filled
 * (a full build's, slot-source.ts): 2 MiB of memory reused chunk after chunk, where the plan held
 * every table at once (64 MiB at 10,000 Services). At least the largest region (LB_MAGLEV_M_MAX + 1).
 */
const FILL_CHUNK_SLOTS = 1 << 19;
/**
 * A write of at least this many slots still to be filled (a full sync's tables: ~16M at 10,000
 * Services) is filled on background threads (BpfMap.maglevFillStart) while the apply goes on with
 * lb_slots, lb_revnat and the frontends' names; the apply joins it before lb_frontends can point at
 * a table. Below it (a change's few tables) a thread is not worth starting.
 */
const BACKGROUND_FILL_SLOTS = 1 << 18;
/** threads of a background fill: the main thread takes what is left when it joins */
const BACKGROUND_FILL_THREADS = Math.max(0, Math.min(4, cpuBudget()) - 1);
/**
 * The most of lb_maglev_slots a background fill maps at once (BpfMap.maglevFillStart's window): 8 MiB
 * (16 chunks of 512 KiB). The window's pages count in the agent's RSS from its mmap, and a first sync
 * at 100,000 Services fills through its plan's end and most of its apply, where the start's peak RSS
 * is (the full GCs there): the default 32 MiB window was +32 MiB of RssFile at that peak (docs/perf-log.md,
 * session 27, p27mem). ~95 windows' mmap and munmap for that sync's ~760 MiB, against ~24.
 */
const BACKGROUND_FILL_WINDOW_SLOTS = 1 << 21;
/** runs of ops that neither read nor name a table's slots: a background fill runs on beside them */
const BESIDE_FILL = new Set<PlanOp['op']>(['upsertBackend', 'upsertBackends', 'upsertSlots', 'upsertRevNat', 'setSourceRanges', 'upsertFrontend']);

/** a table to write and its region of lb_maglev_slots (size: its slots, whole elements) */
interface Piece {
  off: number;
  size: number;
  table: PlanTable;
  /** the table's source while its slots are to be filled (slot-source.ts) */
  src: { src: SlotSource; first: number } | undefined;
}

/**
 * The entries of lb_backends that hold a backend, by id: an array's unused entries are all zero
 * (protocol 0). Read a batch at a time with no object per entry (a million-entry array is mostly
 * empty, and a view per entry was ~215 MB of garbage per walk): each value is `values` from `at`,
 * valid during the call.
 */
export function scanBackends(m: BpfMap, visit: (id: number, values: Buffer, at: number) => void): void {
  const ks = m.keySize, vs = m.userValueSize, proto = L.BACKEND.fields.proto.offset;
  m.scanBatches((keys, values, n) => {
    for (let i = 0; i < n; i++) if (values[i * vs + proto] !== 0) visit(keys.readUInt32LE(i * ks), values, i * vs);
  });
}

/** whether ids[j] is also among ids[0..j) (a loop: lastIndexOf, a builtin call, allocated on each of a first sync's ~1.1M calls) */
function repeats(ids: readonly number[], j: number): boolean {
  const id = ids[j];
  for (let i = 0; i < j; i++) if (ids[i] === id) return true;
  return false;
}

/**
 * u32 words as the bytes of u32 key and value fields (written little-endian, as layout.ts's codecs
 * write them): the words' own memory on a little-endian host, no copy.
 */
function u32Bytes(w: Uint32Array): Buffer {
  const b = Buffer.from(w.buffer, w.byteOffset, w.byteLength);
  return HOST_LE ? b : Buffer.from(b).swap32();
}

function fmtFe(f: { address: string; port: number; protocol: string; scope: string; service?: string }): string {
  return `${f.service ? `${f.service} ` : ''}${f.address.includes(':') ? `[${f.address}]` : f.address}:${f.port}/${f.protocol} (${f.scope})`;
}

export class MapWriter {
  private readonly maps: DataplaneMaps;
  private readonly state: AgentStateFile | undefined;
  /** lb_backends (an array): which ids hold a backend, and how many, read once and then followed
   * write by write, so the fill in the metrics needs no scan of the whole array; undefined until
   * first asked, and again after a write that failed part way */
  private backendBits: Uint8Array | undefined;
  private backendN = 0;
  /**
   * With lb_fe_stats made by this load (statsEmpty): the highest frontend id written since, the
   * highest whose counters the programs can have set (they count a frontend they found in lb_frontends
   * or in lb_ct, both made by the load too); undefined otherwise
   */
  feStatsTop: number | undefined;
  private pendingBits: Uint8Array | undefined;
  /**
   * Each frontend's backend list (canonical order) as lb_members holds it, mirrored so that a changed
   * list tells which backends left it: lb_members (the (frontend, backend) pairs that conntrack and
   * affinity entries are checked against) gains the new pairs before the frontend switches to its new
   * table, and loses the old ones after (memberRemovals, at the end of apply). Loaded from lb_members
   * (ordered by lb_backends) on first use. lb_slots holds the same lists by slot for an earlier
   * build's agent, written from this mirror (flushSlots) when an apply left it behind.
   */
  private members: Map<number, number[]> | undefined;
  /**
   * lb_slots behind the mirror: the frontends whose lists flushSlots() has still to write there (in
   * order, from slotAt), and whether lb_slots may hold entries of lists no longer in the mirror (an
   * agent ended before its flush: found and deleted by a scan after the writes). The state file's
   * slotsBehind says so across a restart.
   */
  private slotQueue: number[] = [];
  private slotAt = 0;
  private slotPrune = false;
  /** this apply leaves lb_slots to flushSlots() (deferSlotsFrom) */
  private deferring = false;
  private readonly deferSlotsFrom: number;
  private readonly backendsPerBatch: number;
  /** the mirror's slots and distinct (frontend, backend) pairs, followed list by list: what lb_slots and lb_members hold */
  private memberFill = { slots: 0, members: 0 };
  private memberRemovals: L.MemberKey[] = [];
  /** a write's Maglev fill running on background threads until joinFill() */
  private fillJob: MaglevFillJob | undefined;
  /** the tables of the apply under way written at its start (earlyTables) */
  private early: Set<PlanTable> | undefined;
  /** a full build's new tables whose fill started before their apply (prefill) */
  private prefilled: Set<PlanTable> | undefined;
  private readonly recycleTables: boolean;
  /** the regions of lb_maglev_slots (loaded from lb_frontends on first use) */
  private slotAlloc: SlotAllocator | undefined;
  private readonly regionGraceMs: number;
  /**
   * plan table id -> its region and M, and a region's first slot -> its plan table id. These and the
   * three below are in shards: a change deletes its frontends' and tables' entries and inserts new
   * ones, and V8 copies a whole Map every ~(capacity - n) such inserts (util/sharded-map.ts).
   */
  private readonly regions = new ShardedMap<number, Region & { m: number }>(intHash);
  private readonly regionOwner = new ShardedMap<number, number>(intHash);
  /** M of the tables written (recycling needs the same M and every frontend of the table known) */
  private readonly tableM = new ShardedMap<number, number>(intHash);
  /**
   * frontend id -> plan table id, and table -> its frontends, for the tables in tableM: the one
   * frontend's id, as nearly every table has one, or a Set of several (a Set per table was ~17 MiB
   * of the heap at 100,000 Services; docs/perf-log.md, session 18, p18big). feTable by frontend id, dense
   * (the plan takes the lowest free one, and a read-back finds what earlier plans took): an array
   * (IdMap), ~0.4 MiB at 110,000 frontends, where the shards' hash tables were ~3.5 MiB and ~4-7 MiB
   * allocated as they grew in the first apply (docs/perf-log.md, session 27, p27mem); a set or delete
   * copies nothing, so churn has no Map to grow.
   */
  private readonly feTable = new IdMap<number>();
  private readonly tableFes = new ShardedMap<number, number | Set<number>>(intHash);
  /** plan table id (new) -> plan table id whose region it takes, for the apply under way */
  private recycling = new Map<number, number>();
  /**
   * The lb_frontends entries this writer wrote, by frontend id (key and value bytes), and which ids
   * hold one (known): an upsert of the entry an id holds is not written again. An endpoint change
   * rewrites its table in the region its frontends read (recycleTables), and the plan's
   * upsertFrontend for the table's new id wrote the same 44 bytes back: two system calls (~10-20 us
   * each on this VM) on the one-change path (issue 10: one change to the kernel). An id leaves known
   * before each write of it and comes back after a write that succeeded, so a failed write (which may
   * have reached the kernel) is written again.
   */
  private feEntries: { keys: Buffer; values: Buffer; known: Uint8Array } | undefined;

  /**
   * lb_fe_filter mirrored (lb_maps.h): the frontend keys written (lb_fe_key bytes as latin1) with
   * their bits (L.feFilterBitPair), how many keys hold each bit, and the words. A bit is set before the first frontend on
   * it is written and cleared after the last one is deleted, so the filter never hides a frontend
   * the programs could find. Loaded from lb_frontends on first use, when the whole filter is
   * written and switched on. Both in shards: a Service created or deleted inserts keys and bits that
   * never come back, and V8 copied a whole Map every ~(capacity - n) such inserts (util/sharded-map.ts).
   */
  private feKeys: Map<string, number> | undefined;
  private readonly feBitRefs = new ShardedMap<number, number>(intHash);
  /** filter keys held for orphaned flows of deleted frontends (holdFeFilterKeys), with their bits */
  private readonly feHeld = new Map<string, number>();
  private readonly feWords = new BigUint64Array(L.LB_FE_FILTER_WORDS);
  /** feWords as u32 halves (refFeBit sets bits through it) */
  private readonly feHalves = new Uint32Array(this.feWords.buffer);

  /**
   * lb_fe_ids (lb_maps.h), where the object has it: each lb_frontends entry again at its fe_id, which a
   * plain conntrack hit reads instead of looking the frontend up. Written after lb_frontends, cleared
   * before it, and rewritten whole from lb_frontends with the filter (syncFeFilter): a map made by
   * this load (an upgrade) or left behind by a build that did not write it (a downgrade) is exact
   * before the first write. Ids past its size are not written (their hits look the frontend up).
   */
  private readonly feIds: BpfMap | undefined;

  constructor(maps: DataplaneMaps, state: AgentStateFile | undefined, opts: BpfMapsOptions, feIds?: BpfMap) {
    this.maps = maps;
    this.feIds = feIds;
    this.state = state;
    this.recycleTables = opts.recycleTables ?? false;
    this.regionGraceMs = opts.regionGraceMs ?? 1000;
    this.deferSlotsFrom = opts.deferSlotsFrom ?? DEFER_SLOTS_FROM;
    this.backendsPerBatch = opts.backendsPerBatch ?? BACKENDS_PER_BATCH;
    if (!(Number.isInteger(this.backendsPerBatch) && this.backendsPerBatch >= 1)) throw new KbpError('KBP_ERR_INTERNAL', `backendsPerBatch ${this.backendsPerBatch}: not a positive integer`);
  }

  /** Where the plan's table lives in lb_maglev_slots, if written. */
  regionOf(planId: number): { off: number; m: number } | undefined {
    this.loadRegions();
    const r = this.regions.get(planId);
    return r && { off: r.off, m: r.m };
  }

  /**
   * The plan's id of the table in the region at slot off: readPlan() gives the ids this writer
   * knows, so a plan read back diffs against what the writer holds (tableIdOfRegion(off) otherwise).
   */
  tableIdAt(off: number): number {
    this.loadRegions();
    return this.regionOwner.get(off) ?? tableIdOfRegion(off);
  }

  private setRegion(id: number, r: Region, m: number): void {
    this.regions.set(id, { off: r.off, size: r.size, m });
    this.regionOwner.set(r.off, id);
  }

  private dropRegion(id: number): Region | undefined {
    const r = this.regions.get(id);
    if (!r) return undefined;
    this.regions.delete(id);
    if (this.regionOwner.get(r.off) === id) this.regionOwner.delete(r.off);
    return r;
  }

  /** Slots of lb_maglev_slots in tables, and waiting out their grace period. */
  slotUse(): { used: number; quarantined: number; capacity: number } {
    const a = this.loadRegions();
    return { used: a.used, quarantined: a.quarantined, capacity: a.capacity };
  }

  /** Each lb_frontends entry that names a Maglev table: its frontend id, the table's first slot and M. */
  private scanTableRefs(each: (feId: number, off: number, m: number) => void): void {
    this.maps.lb_frontends.scan((_k, v) => {
      const fe = L.decodeFrontend(v);
      if (fe.maglevM !== 0) each(fe.feId, fe.maglevOff, fe.maglevM);
    });
  }

  /**
   * The regions the frontends point at now (an agent restarting over pinned maps, or the first
   * apply): each distinct offset is one table, under the id readPlan() gives it.
   */
  private loadRegions(): SlotAllocator {
    if (this.slotAlloc) return this.slotAlloc;
    const a = new SlotAllocator(this.maps.lb_maglev_slots.maxEntries * L.LB_MAGLEV_IDS_PER_ELEM, { graceMs: this.regionGraceMs });
    const found = new Map<number, Region>();
    const fes: Array<[number, number]> = [];
    this.scanTableRefs((feId, off, m) => {
      const id = tableIdOfRegion(off);
      if (!found.has(id)) {
        found.set(id, { off, size: regionSize(m) });
        this.setRegion(id, { off, size: regionSize(m) }, m);
        this.tableM.set(id, m);
      }
      fes.push([feId, id]);
    });
    a.load(found.values());
    for (const [feId, id] of fes) this.noteFrontend(feId, id);
    this.slotAlloc = a;
    return a;
  }

  /** Which new tables of ops can take the array of a table they replace (see recycleTables). */
  private planRecycling(ops: readonly PlanOp[]): Map<number, number> {
    const out = new Map<number, number>();
    if (!this.recycleTables) return out;
    // nothing to recycle without a table deleted: a first sync's ~1.4M ops at 100,000 Services built
    // maps of every created table and written frontend first (~250 ms) to find none
    const deleted = new Set<number>();
    for (let k = 0; k < ops.length; k++) {
      const o = ops[k]!;
      if (o.op === 'deleteTable') deleted.add(o.tableId);
    }
    if (!deleted.size) return out;
    const created = new Map<number, PlanTable>(), moves = new Map<number, number>();
    for (const o of ops) {
      if (o.op === 'createTable') created.set(o.table.id, o.table);
      else if (o.op === 'upsertFrontend') moves.set(o.frontend.id, o.frontend.tableId);
      else if (o.op === 'deleteFrontend') moves.set(o.frontend.id, -1);
    }
    if (!created.size) return out;
    const taken = new Set<number>();
    for (const [feId, to] of moves) {
      const t = created.get(to);
      const from = this.feTable.get(feId);
      if (!t || from === undefined || out.has(to) || taken.has(from) || !deleted.has(from) || this.tableM.get(from) !== t.m) continue;
      // every frontend of the old table must move to this one now: no reader may be left on it
      let all = true;
      const fes = this.tableFes.get(from);
      for (const f of fes === undefined ? [] : typeof fes === 'number' ? [fes] : fes) if (moves.get(f) !== to) all = false;
      if (!all) continue;
      out.set(to, from);
      taken.add(from);
    }
    return out;
  }

  private noteFrontend(feId: number, tableId: number | undefined): void {
    const old = this.feTable.get(feId);
    if (old === tableId) return;
    if (old !== undefined) {
      const fes = this.tableFes.get(old);
      if (fes === feId) this.tableFes.delete(old);
      else if (typeof fes === 'object') {
        fes.delete(feId);
        if (fes.size === 1) this.tableFes.set(old, fes.values().next().value!);
      }
      this.feTable.delete(feId);
    }
    if (tableId !== undefined && this.tableM.has(tableId)) {
      this.feTable.set(feId, tableId);
      const fes = this.tableFes.get(tableId);
      if (fes === undefined) this.tableFes.set(tableId, feId);
      else if (typeof fes === 'number') {
        if (fes !== feId) this.tableFes.set(tableId, new Set([fes, feId]));
      } else fes.add(feId);
    }
  }

  /**
   * Loads the mirror of the backend lists from lb_members (fresh: the maps were made by this load and
   * hold nothing, so nothing is read), and finds what lb_slots lacks: every list when the state file
   * says an earlier agent of this build ended before its deferred write was done (then also the
   * entries of lists gone since), or when lb_slots is empty (made anew: a migration). Maps pinned by
   * a build before lb_members (lb_members empty, lb_slots not) get lb_members from lb_slots first.
   * Returns the pairs written to lb_members, and the frontends whose lists lb_slots is to get.
   */
  syncMembers(fresh = false): { added: number; slotsBehind: number } {
    let added = 0;
    let lists = new Map<number, number[]>();
    if (!fresh) {
      lists = readMemberLists(this.maps, () => readBackendOrder(this.maps));
      if (!lists.size && this.maps.lb_slots.hasAny()) {
        const pairs: L.MemberKey[] = [];
        this.maps.lb_slots.scan((k, v) => { pairs.push({ feId: k.readUInt32LE(0), backendId: L.decodeU32(v) }); });
        const seen = new Set<string>();
        const uniq = pairs.filter((p) => !seen.has(`${p.feId}/${p.backendId}`) && !!seen.add(`${p.feId}/${p.backendId}`));
        if (uniq.length) this.writeMembers(uniq);
        added = uniq.length;
        lists = readMemberLists(this.maps, () => readBackendOrder(this.maps));
      }
    }
    const fill = { slots: 0, members: 0 };
    for (const l of lists.values()) {
      fill.slots += l.length;
      fill.members += l.length;
    }
    this.members = lists;
    this.memberFill = fill;
    this.slotQueue = [];
    this.slotAt = 0;
    this.slotPrune = false;
    const behind = !fresh && (this.state?.slotsBehind === true || (lists.size > 0 && !this.maps.lb_slots.hasAny()));
    if (behind) {
      this.slotQueue = [...lists.keys()];
      this.slotPrune = this.state?.slotsBehind === true;
      this.markSlotsBehind(true);
    } else if (this.state?.slotsBehind) {
      this.markSlotsBehind(false);
    }
    return { added, slotsBehind: this.slotQueue.length };
  }

  /** the state file's record that lb_slots is behind (a marker file, made or removed at once: it must outlive a crash) */
  private markSlotsBehind(behind: boolean): void {
    if (this.state) this.state.slotsBehind = behind;
  }

  /** Frontends whose lists lb_slots has yet to get (plus one while a prune of old entries is due); 0: lb_slots is current. */
  slotsBehind(): number {
    return this.slotQueue.length - this.slotAt + (this.slotPrune ? 1 : 0);
  }

  /**
   * Writes the next queued frontends' lists into lb_slots, from the mirror as it is now, about
   * maxSlots slots in one batch (on the thread pool with async); then, once every list is written
   * and an earlier agent may have left entries of lists gone since, deletes those (a scan of
   * lb_slots, its batches yielding to the event loop). The caller runs no apply meanwhile (the data
   * plane's serial writes). Returns whether anything is left behind, and the slots written and the
   * main thread's longest stretch in this call (ms).
   */
  async flushSlots(maxSlots: number, opts: { threads?: number; async?: boolean } = {}): Promise<{ left: number; slots: number; holdMs: number }> {
    let t0 = performance.now(), hold = 0;
    if (!this.members) this.syncMembers();
    const members = this.members!, q = this.slotQueue;
    if (this.slotAt < q.length) {
      let n = 0;
      const from = this.slotAt;
      let to = from;
      while (to < q.length && n < maxSlots) n += members.get(q[to++]!)?.length ?? 0;
      const kw = new Uint32Array(n * 2), vw = new Uint32Array(n);
      let k = 0;
      for (let i = from; i < to; i++) {
        const fe = q[i]!, ids = members.get(fe);
        if (!ids) continue; // deleted since: its slots went with it
        for (let slot = 0; slot < ids.length; slot++, k++) {
          kw[2 * k] = fe;
          kw[2 * k + 1] = slot;
          vw[k] = ids[slot]!;
        }
      }
      hold = performance.now() - t0;
      if (k) {
        const keys = u32Bytes(kw.subarray(0, 2 * k)), values = u32Bytes(vw.subarray(0, k));
        try {
          if (opts.async) await this.maps.lb_slots.updateBatchAsync(keys, values, k, BPF_ANY, opts.threads ?? 1);
          else this.maps.lb_slots.updateBatch(keys, values, k, BPF_ANY, opts.threads ?? 1);
        } catch (e) {
          throw this.mapFull(e, 'lb_slots', `slots of ${to - from} frontends (the copy of lb_members for an earlier build's agent)`);
        }
        // a first sync's ~1M slots at 100,000 Services: 12 MiB, freed now rather than in the heap
        // trimmer's full GC that follows, where the start's RSS was highest (docs/perf-log.md, session 28, p28rss)
        releaseArray(kw);
        releaseArray(vw);
      }
      this.slotAt = to;
      if (to >= q.length) {
        this.slotQueue = [];
        this.slotAt = 0;
      }
      if (this.slotsBehind() === 0) this.markSlotsBehind(false);
      return { left: this.slotsBehind(), slots: k, holdMs: hold };
    }
    if (this.slotPrune) {
      // entries of lists that are gone or shorter now; looked at again, against the mirror, just
      // before the delete (an apply between the scan's batches may have written them since)
      const stale: Buffer[] = [];
      const isStale = (fe: number, slot: number): boolean => slot >= (this.members?.get(fe)?.length ?? 0);
      // hold: a batch's visits (its lookup, a system call of ~4096 entries before them, is not counted)
      let batchAt: number | undefined;
      const visit = (key: Buffer): void => {
        batchAt ??= performance.now();
        if (isStale(key.readUInt32LE(0), key.readUInt32LE(4))) stale.push(Buffer.from(key));
      };
      if (opts.async) {
        await this.maps.lb_slots.scanYielding(visit, { onBatch: () => { if (batchAt !== undefined) hold = Math.max(hold, performance.now() - batchAt); batchAt = undefined; } });
      } else {
        this.maps.lb_slots.scan(visit);
      }
      t0 = performance.now();
      const gone = stale.filter((key) => isStale(key.readUInt32LE(0), key.readUInt32LE(4)));
      hold = Math.max(hold, performance.now() - t0);
      if (gone.length) {
        if (opts.async) await this.maps.lb_slots.deleteManyAsync(Buffer.concat(gone), gone.length);
        else this.maps.lb_slots.deleteMany(Buffer.concat(gone), gone.length);
      }
      this.slotPrune = false;
      if (this.slotsBehind() === 0) this.markSlotsBehind(false);
      return { left: this.slotsBehind(), slots: -gone.length, holdMs: hold };
    }
    return { left: 0, slots: 0, holdMs: 0 };
  }

  /**
   * Rewrites lb_fe_filter from lb_frontends and switches it on (element 0), loading the mirror: a
   * filter created empty by this load (an upgrade), or one left by another build, is made exact
   * before the first write. Returns the frontend keys it holds.
   */
  syncFeFilter(): number {
    const keys = new ShardedMap<string, number>(stringHash);
    this.feBitRefs.clear();
    this.feWords.fill(0n);
    for (const pair of this.feHeld.values()) this.refFeBits(pair, 1);
    const ids = this.feIds, ss = ids ? feIdsStride(ids) : 0;
    const slots = ids && Buffer.alloc(ids.maxEntries * ss), inSlots: number[] = [];
    this.maps.lb_frontends.scan((k, v) => {
      const id = v.readUInt32LE(0);
      if (slots && id < ids.maxEntries) {
        k.copy(slots, id * ss, 0, L.FE_KEY.size);
        v.copy(slots, id * ss + L.FE_KEY.size, 0, L.FRONTEND.size);
        inSlots.push(id);
      }
      const key = Buffer.from(k).toString('latin1');
      if (keys.has(key)) return;
      const pair = L.feFilterBitPair(k);
      keys.set(key, pair);
      this.refFeBits(pair, 1);
    });
    // every id, those without a frontend zeroed: entries another build left are not trusted
    if (ids && slots) {
      for (const id of inSlots) if (keys.has(twinKeyOf(slots, id * ss))) slots.writeUInt32LE(L.LB_FE_SLOT_F_TWIN, id * ss + FE_SLOT_FLAGS);
      writeFeIdsWhole(ids, slots);
    }
    const n = L.LB_FE_FILTER_WORDS;
    const ks = Buffer.alloc((n + 1) * 4), vs = Buffer.alloc((n + 1) * 8);
    // the words first, the switch (element 0) last, in the same batch
    for (let i = 0; i < n; i++) {
      ks.writeUInt32LE(i + 1, i * 4);
      vs.writeBigUInt64LE(this.feWords[i]!, i * 8);
    }
    ks.writeUInt32LE(0, n * 4);
    vs.writeBigUInt64LE(1n, n * 8);
    this.maps.lb_fe_filter.updateBatch(ks, vs, n + 1);
    this.feKeys = keys;
    return keys.size;
  }

  /**
   * Holds the lb_fe_filter bits of these keys (lb_fe_key bytes as latin1: the destinations of orphaned
   * flows, ct-orphan.ts) as a frontend's would be; with replace, releases the keys held and not given.
   */
  holdFeFilterKeys(keys: Iterable<string>, replace = false): void {
    if (!this.feKeys) this.syncFeFilter();
    const dirty = new Set<number>(), want = new Set(keys);
    if (replace) {
      for (const [key, pair] of this.feHeld) {
        if (want.has(key)) continue;
        this.feHeld.delete(key);
        this.refFeBits(pair, -1, dirty);
      }
    }
    for (const key of want) {
      if (this.feHeld.has(key)) continue;
      const pair = L.feFilterBitPair(Buffer.from(key, 'latin1'));
      this.feHeld.set(key, pair);
      this.refFeBits(pair, 1, dirty);
    }
    runSync(this.feWordSteps(dirty));
  }

  /** how many filter keys are held for orphaned flows */
  heldFeFilterKeys(): number {
    return this.feHeld.size;
  }

  /** count +1 / -1 on a key's filter bits (L.feFilterBitPair: this build's and older builds'); words whose bit flipped go to dirty */
  private refFeBits(pair: number, d: 1 | -1, dirty?: Set<number>): void {
    // the pair's two bits without an array of them, and the words through a u32 view: a
    // BigUint64Array read, the mask and the word written back were a BigInt each (a first sync's
    // 110,000 frontends at 100,000 Services: ~55 MiB of them with the views and arrays)
    this.refFeBit(L.filterBitHigh(pair), d, dirty);
    this.refFeBit(L.filterBitLow(pair), d, dirty);
  }

  private refFeBit(bit: number, d: 1 | -1, dirty?: Set<number>): void {
    const before = this.feBitRefs.get(bit) ?? 0, after = before + d;
    if (after > 0) this.feBitRefs.set(bit, after);
    else this.feBitRefs.delete(bit);
    if ((before > 0) === (after > 0)) return;
    const w = bit >>> 6, b = bit & 63;
    // the u32 half of word w that holds bit b, in the host's order (the BigUint64Array's)
    const at = 2 * w + ((b >= 32) === HOST_LE ? 1 : 0), mask = (1 << (b & 31)) >>> 0;
    const half = this.feHalves;
    half[at] = after > 0 ? half[at]! | mask : half[at]! & ~mask;
    dirty?.add(w);
  }

  /** the filter words changed for frontend keys (count of them in keys) added (+1) or removed (-1) */
  private feFilterChange(keys: Buffer, count: number, d: 1 | -1): Steps {
    const dirty = new Set<number>(), ks = L.FE_KEY.size;
    for (let i = 0; i < count; i++) {
      // the key's text and bits read in place: no view of it per key
      const key = keys.toString('latin1', i * ks, (i + 1) * ks);
      const had = this.feKeys!.get(key);
      if ((had !== undefined) === (d > 0)) continue;
      const pair = had ?? L.feFilterBitPair(keys, i * ks);
      if (d > 0) this.feKeys!.set(key, pair);
      else this.feKeys!.delete(key);
      this.refFeBits(pair, d, dirty);
    }
    return this.feWordSteps(dirty);
  }

  private *feWordSteps(dirty: Set<number>): Steps {
    if (!dirty.size) return;
    const ks = Buffer.alloc(dirty.size * 4), vs = Buffer.alloc(dirty.size * 8);
    let i = 0;
    for (const w of dirty) {
      ks.writeUInt32LE(w + 1, i * 4);
      vs.writeBigUInt64LE(this.feWords[w]!, i * 8);
      i++;
    }
    yield { kind: 'update', map: this.maps.lb_fe_filter, keys: ks, values: vs, count: dirty.size };
  }

  private writeMembers(pairs: readonly L.MemberKey[]): void {
    const keys = Buffer.alloc(pairs.length * L.MEMBER_KEY.size);
    pairs.forEach((m, i) => L.encodeMemberKey(m, keys, i * L.MEMBER_KEY.size));
    this.writeMemberKeys(keys, pairs.length);
  }

  /** lb_members gains these encoded pairs */
  private writeMemberKeys(keys: Buffer, count: number): void {
    runSync(this.memberKeySteps(keys, count));
  }

  private memberKeySteps(keys: Buffer, count: number): Steps {
    // keys: every caller's own (writeMembers', addMembers' concat or its fresh array)
    return this.batchUpdate('lb_members', keys, Buffer.alloc(count, 1), count, (i) => {
      const m = L.decodeMemberKey(keys, i * L.MEMBER_KEY.size);
      return `member backend id ${m.backendId} of frontend id ${m.feId}`;
    }, HASH_BATCH_THREADS, true);
  }

  /**
   * The membership changes of ops' new backend lists: pairs that join are written now, pairs that
   * leave are queued for the end of the apply (memberRemovals). Returns whether it wrote. Its batch
   * is a step like the others, so applyAsync runs it on the pool (a first sync's ~1.1M pairs at
   * 100,000 Services held the event loop 1-2.5 s); the apply's next step waits for it either way.
   */
  private *addMembers(ops: readonly PlanOp[]): Generator<Write, boolean, number> {
    const size = L.MEMBER_KEY.size;
    const { fresh, n, added } = this.memberChanges(ops);
    if (!added.length && !n) return false;
    const pairs = u32Bytes(fresh.subarray(0, 2 * n));
    const keys = added.length ? Buffer.concat([pairs, Buffer.alloc(added.length * size)]) : pairs;
    added.forEach((m, i) => L.encodeMemberKey(m, keys, (n + i) * size));
    yield* this.memberKeySteps(keys, n + added.length);
    return true;
  }

  /**
   * addMembers' walk, outside the generator (a generator's loop is never optimized on the stack,
   * and a first sync's ~1.4M ops at 100,000 Services ran it in the interpreter), by index (a for-of
   * step allocates its result where the loop is not optimized): the new frontends' pairs as u32
   * words, n of them, and the pairs that join a known frontend's list.
   */
  private memberChanges(ops: readonly PlanOp[]): { fresh: Uint32Array; n: number; added: L.MemberKey[] } {
    const members = this.members!, added: L.MemberKey[] = [];
    // a new frontend's pairs (every one at a first sync: ~100,000 at 10,000 Services) are encoded as
    // they are found, without a Set and an object per pair
    let most = 0, n = 0;
    for (let k = 0; k < ops.length; k++) {
      const o = ops[k]!;
      if (o.op === 'upsertSlots' && !members.has(o.frontendId)) most += o.backendIds.length;
    }
    // a first sync's lists go to lb_slots after it (flushSlots); the state file says so first, so
    // that an agent started after a crash in between knows lb_slots is behind
    this.deferring = most >= this.deferSlotsFrom;
    if (this.deferring) this.markSlotsBehind(true);
    const fresh = new Uint32Array(most * 2);
    for (let k = 0; k < ops.length; k++) {
      const o = ops[k]!;
      if (o.op !== 'upsertSlots') continue;
      const had = members.get(o.frontendId);
      if (!had) {
        // a new frontend: all its pairs join, none leaves; a list names a backend once (buildPlan
        // refuses a repeat), which a short list checks without a Set
        const ids = o.backendIds;
        const seen = ids.length > 32 ? new Set<number>() : undefined;
        let uniq = 0;
        const fe = o.frontendId;
        if (!(fe >= 1 && fe <= 0xffffffff)) throw new KbpError('KBP_ERR_INTERNAL', `members of frontend id ${fe}: not a u32`);
        for (let j = 0; j < ids.length; j++) {
          const id = ids[j]!;
          if (seen ? seen.has(id) : repeats(ids, j)) continue;
          if (!(id >= 1 && id <= 0xffffffff)) throw new KbpError('KBP_ERR_INTERNAL', `frontend id ${fe} names backend id ${id}`);
          seen?.add(id);
          fresh[2 * n] = fe;
          fresh[2 * n + 1] = id;
          n++;
          uniq++;
        }
        members.set(o.frontendId, ids.slice());
        this.memberFill.slots += ids.length;
        this.memberFill.members += uniq;
        continue;
      }
      const before = new Set(had), after = new Set(o.backendIds);
      for (const id of after) if (!before.has(id)) added.push({ feId: o.frontendId, backendId: id });
      for (const id of before) if (!after.has(id)) this.memberRemovals.push({ feId: o.frontendId, backendId: id });
      members.set(o.frontendId, [...o.backendIds]);
      this.memberFill.slots += o.backendIds.length - had.length;
      this.memberFill.members += after.size - before.size;
    }
    return { fresh, n, added };
  }

  /** Applies diff()'s ops in order; each run of same-kind ops becomes one batch per map. */
  apply(ops: readonly PlanOp[]): ApplyResult {
    const res: ApplyResult = { batches: 0, tables: 0, membersLeft: 0, leftFrontends: new Set() };
    this.saving(() => runSync(this.applySteps(ops, res)));
    return res;
  }

  /**
   * apply() that leaves the event loop free: every batch runs on libuv's thread pool and CPU-bound
   * stretches pause between chunks, so a request to this process waits for one chunk, not the apply.
   * The caller must not start another write to these maps before it settles.
   */
  async applyAsync(ops: readonly PlanOp[]): Promise<ApplyResult> {
    const res: ApplyResult = { batches: 0, tables: 0, membersLeft: 0, leftFrontends: new Set() };
    await this.savingAsync(() => runAsync(this.applySteps(ops, res)));
    return res;
  }

  private *applySteps(ops: readonly PlanOp[], res: ApplyResult): Steps {
    ops = groupRemovals(ops);
    if (!this.members) this.syncMembers();
    this.loadRegions().begin();
    if (!this.feKeys) this.syncFeFilter();
    this.recycling = this.planRecycling(ops);
    const pre = this.prefilled;
    this.prefilled = undefined;
    try {
      // a full build's tables, each into a fresh region that nothing reads until an upsertFrontend
      // names it, are filled from here on beside every other write (startFill), or already are
      // (prefill: the same tables, their fill running since the plan made them)
      this.early = pre && this.earlyTables(ops, pre);
      if (pre && !this.early) {
        // filled ahead for another apply (its sync failed before writing): nothing reads them
        yield* this.joinFill();
        this.dropUnread(pre);
      }
      if (!this.early) {
        this.early = this.earlyTables(ops);
        if (this.early) yield* this.writeTables([...this.early]);
      }
      // lb_members gains the new pairs before anything a reader follows can name them: a recycled
      // table is rewritten in the region its frontends read now (createTable, before upsertSlots), and a
      // SYN balanced to a new backend from then on is checked against lb_members on its next packet
      // (a missing pair resets the flow)
      if (yield* this.addMembers(ops)) res.batches++;
      for (let i = 0; i < ops.length;) {
        let j = i + 1;
        while (j < ops.length && ops[j]!.op === ops[i]!.op) j++;
        // upsertFrontend joins the fill itself, before lb_frontends names a table
        if (!this.besideFill(ops, i, j)) yield* this.joinFill();
        yield* this.applyRun(ops, i, j, res);
        yield PAUSE;
        i = j;
      }
      yield* this.joinFill();
    } finally {
      this.early = undefined;
      this.deferring = false;
      // a write that failed: no thread may go on writing after the apply returns (its error is the one to report)
      const job = this.fillJob;
      this.fillJob = undefined;
      if (job) try { job.wait(); } catch { /* the write's own error goes on */ }
    }
    // backends that left a frontend: only now that the frontend uses its new table
    if (this.memberRemovals.length) {
      const gone = this.memberRemovals;
      this.memberRemovals = [];
      const keys = Buffer.alloc(gone.length * L.MEMBER_KEY.size);
      gone.forEach((m, i) => L.encodeMemberKey(m, keys, i * L.MEMBER_KEY.size));
      yield { kind: 'deleteMany', map: this.maps.lb_members, keys, count: gone.length };
      res.batches++;
      res.membersLeft += gone.length;
      for (const m of gone) res.leftFrontends.add(m.feId);
    }
  }

  private saving(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.saveAfterFailure();
      throw e;
    }
    this.state?.save();
  }

  private async savingAsync(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (e) {
      this.saveAfterFailure();
      throw e;
    }
    this.state?.save();
  }

  /** whatever was written, the names of the frontends written so far must survive a crash; the write error is the one to report */
  private saveAfterFailure(): void {
    // the membership mirror may be ahead of the maps: the next apply reloads it from lb_members
    // (and, when this apply left lb_slots behind, queues every list for it: the state file says so)
    this.members = undefined;
    this.memberRemovals = [];
    try {
      this.forgetUnreadTables();
    } catch {
      // the write's own error is the one to report; the regions stay counted as before
    }
    try {
      this.state?.save();
    } catch {
      // reported by the next successful apply's save
    }
  }

  /**
   * After a failed apply: the tables it wrote into fresh regions that no frontend reads (the write
   * that would have named them failed) are forgotten, and their regions quarantined for reuse. The
   * agent plans its retry on what the kernel holds (readPlan), where those tables do not exist: kept,
   * their regions stayed counted as in use until a restart, and a retry that gave one of their ids
   * to a table of another M was refused (KBP_ERR_INTERNAL) at every sync.
   */
  private forgetUnreadTables(): void {
    const alloc = this.slotAlloc;
    if (!alloc || !this.regions.size) return;
    const read = new Set<number>();
    this.scanTableRefs((_fe, off) => read.add(off));
    for (const [id, r] of [...this.regions]) {
      if (read.has(r.off)) continue;
      this.dropRegion(id);
      this.tableM.delete(id);
      const fes = this.tableFes.get(id);
      for (const f of fes === undefined ? [] : typeof fes === 'number' ? [fes] : [...fes]) this.noteFrontend(f, undefined);
      this.tableFes.delete(id);
      alloc.release({ off: r.off, size: r.size });
    }
  }

  /** the frontends of an upsert (keys and values encoded in order) whose entry differs from what they hold, or is not known */
  private feUnwritten(fs: readonly PlanFrontend[], keys: Buffer, values: Buffer): { fs: readonly PlanFrontend[]; keys: Buffer; values: Buffer; count: number } {
    const e = this.feEntries, ks = L.FE_KEY.size, vs = L.FRONTEND.size;
    if (!e) return { fs, keys, values, count: fs.length };
    const out = fs.filter((f, i) => f.id >= e.known.length || !e.known[f.id] ||
      e.keys.compare(keys, i * ks, (i + 1) * ks, f.id * ks, (f.id + 1) * ks) !== 0 ||
      e.values.compare(values, i * vs, (i + 1) * vs, f.id * vs, (f.id + 1) * vs) !== 0);
    for (const f of out) if (f.id < e.known.length) e.known[f.id] = 0;
    if (out.length === fs.length) return { fs, keys, values, count: fs.length };
    const k2 = Buffer.allocUnsafe(out.length * ks), v2 = Buffer.allocUnsafe(out.length * vs);
    for (let i = 0, j = 0; i < fs.length && j < out.length; i++) {
      if (fs[i] !== out[j]) continue;
      keys.copy(k2, j * ks, i * ks, (i + 1) * ks);
      values.copy(v2, j * vs, i * vs, (i + 1) * vs);
      j++;
    }
    return { fs: out, keys: k2, values: v2, count: out.length };
  }

  /**
   * lb_fe_ids at the ids of fs: their lb_frontends keys and values (encoded in the order of fs), flagged
   * where twins (feIdsTwins') says, or zeros (deleted). Ids past the map are left out: the programs
   * never find them there.
   */
  private *feIdsWrite(fs: readonly PlanFrontend[], keys?: Buffer, values?: Buffer, twins?: Uint8Array): Steps {
    const map = this.feIds;
    if (!map) return;
    const ks = L.FE_KEY.size, vs = L.FRONTEND.size, ss = L.FE_SLOT.size;
    const idKeys = Buffer.alloc(fs.length * 4), slots = Buffer.alloc(fs.length * ss);
    let n = 0;
    fs.forEach((f, i) => {
      if (f.id >= map.maxEntries) return;
      idKeys.writeUInt32LE(f.id, n * 4);
      if (keys && values) {
        keys.copy(slots, n * ss, i * ks, (i + 1) * ks);
        values.copy(slots, n * ss + ks, i * vs, (i + 1) * vs);
        // its key in the other scope too (feIdsTwins asked lb_frontends' keys, the filter's mirror: this run's included)
        if (twins?.[i]) slots.writeUInt32LE(L.LB_FE_SLOT_F_TWIN, n * ss + FE_SLOT_FLAGS);
      }
      n++;
    });
    if (n) yield { kind: 'update', map, keys: idKeys, values: slots, count: n };
  }

  /**
   * lb_fe_ids' entries of the frontends lb_frontends holds under these keys' twins (the same address,
   * port and protocol in the other scope), rewritten with LB_FE_SLOT_F_TWIN set (before the keys'
   * frontends are written) or cleared (after they are deleted). A twin among the keys themselves is
   * written by feIdsWrite. Read from lb_frontends: only frontends with a twin cost a lookup.
   */
  private *feIdsTwins(keys: Buffer, count: number, twin: boolean, twins?: Uint8Array): Steps {
    const map = this.feIds, known = this.feKeys;
    if (!map || !known) return;
    const ks = L.FE_KEY.size, ss = L.FE_SLOT.size;
    // the keys' own set, made only once a twin is found (most syncs have none: a first sync at
    // 100,000 spent ~40 ms making it for nothing)
    let own: Set<string> | undefined;
    const ids: number[] = [], slots: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const t = twinKeyOf(keys, i * ks);
      if (!known.has(t)) continue;
      if (twins) twins[i] = 1;
      if (twin) {
        if (!own) {
          own = new Set<string>();
          for (let j = 0; j < count; j++) own.add(keys.toString('latin1', j * ks, (j + 1) * ks));
        }
        if (own.has(t)) continue;
      }
      const tk = Buffer.from(t, 'latin1'), v = this.maps.lb_frontends.lookup(tk);
      if (!v || v.readUInt32LE(0) >= map.maxEntries) continue;
      const slot = Buffer.alloc(ss);
      tk.copy(slot, 0);
      v.copy(slot, ks, 0, L.FRONTEND.size);
      slot.writeUInt32LE(twin ? L.LB_FE_SLOT_F_TWIN : 0, FE_SLOT_FLAGS);
      ids.push(v.readUInt32LE(0));
      slots.push(slot);
    }
    if (!ids.length) return;
    const idKeys = Buffer.alloc(ids.length * 4);
    ids.forEach((id, i) => idKeys.writeUInt32LE(id, i * 4));
    yield { kind: 'update', map, keys: idKeys, values: Buffer.concat(slots), count: ids.length };
  }

  /** records the lb_frontends entries just written (keys and values encoded in the order of fs) */
  private feWritten(fs: readonly PlanFrontend[], keys: Buffer, values: Buffer): void {
    const ks = L.FE_KEY.size, vs = L.FRONTEND.size;
    let most = 0;
    for (const f of fs) if (f.id > most) most = f.id;
    const e = this.feRecord(most);
    // a first sync's frontends (ids in order, mostly consecutive) are copied a run of ids at a time
    for (let i = 0; i < fs.length;) {
      const first = fs[i]!.id;
      let j = i + 1;
      while (j < fs.length && fs[j]!.id === first + (j - i)) j++;
      if (first + (j - i) <= e.known.length) {
        keys.copy(e.keys, first * ks, i * ks, j * ks);
        values.copy(e.values, first * vs, i * vs, j * vs);
        e.known.fill(1, first, first + (j - i));
      }
      i = j;
    }
  }

  /**
   * The record of written entries, holding ids up to `id` (below LB_FE_ID_MAX): sized by the ids in
   * use (a power of two, 44 bytes an id: ~0.7 MiB at 10,000 Services), grown by copying.
   */
  private feRecord(id: number): { keys: Buffer; values: Buffer; known: Uint8Array } {
    const ks = L.FE_KEY.size, vs = L.FRONTEND.size;
    const have = this.feEntries;
    if (have && id < have.known.length) return have;
    let n = Math.max(1024, have?.known.length ?? 0);
    while (n <= id && n < L.LB_FE_ID_MAX) n *= 2;
    n = Math.min(n, L.LB_FE_ID_MAX);
    const e = { keys: Buffer.allocUnsafe(n * ks), values: Buffer.allocUnsafe(n * vs), known: new Uint8Array(n) };
    if (have) {
      have.keys.copy(e.keys);
      have.values.copy(e.values);
      e.known.set(have.known);
    }
    return this.feEntries = e;
  }

  /**
   * lb_backends gets backends [from, to) of a run (backend(i): an upsertBackend op's, or an
   * upsertBackends op's i-th), backendsPerBatch at a time; returns the batches
   */
  private *upsertBackends(backendAt: (i: number) => PlanBackend, from: number, to: number): Generator<Write, number, number> {
    let batches = 0;
    for (let at = from; at < to; at += this.backendsPerBatch) {
      yield* this.upsertBackendBatch(backendAt, at, Math.min(to, at + this.backendsPerBatch));
      batches++;
    }
    return batches;
  }

  private *upsertBackendBatch(backendAt: (i: number) => PlanBackend, from: number, to: number): Steps {
    const n = to - from;
    const backend = (i: number): PlanBackend => backendAt(from + i);
    const kw = new Uint32Array(n), values = Buffer.alloc(n * L.BACKEND.size);
    // a first sync writes ~100,000: a dotted quad (nearly all) without a value object (encodeBackendV4)
    for (let i = 0; i < n; i++) {
      const b = backend(i), at = i * L.BACKEND.size;
      if (!(b.id >= 1 && b.id <= 0xffffffff)) throw new KbpError('KBP_ERR_INTERNAL', `backend ${b.address}:${b.port} has invalid id ${b.id}`);
      kw[i] = b.id;
      const v4 = strictV4(b.address), port = b.port;
      if (v4 >= 0 && Number.isInteger(port) && port >= 0 && port <= 0xffff) L.encodeBackendV4(v4, port, L.protoNum(b.protocol), backendFlags(b), values, at);
      else L.encodeBackend({ address: b.address, port, protocol: b.protocol, flags: backendFlags(b) }, values, at);
    }
    // from the ops, not kw: the batch releases kw's memory (keys is its bytes on a little-endian host)
    const ids = (fn: (id: number) => void): void => { for (let i = 0; i < n; i++) fn(backend(i).id); };
    const keys = u32Bytes(kw);
    yield* this.followBackends(ids, false, this.batchUpdate('lb_backends', keys, values, n, (i) => { const b = backend(i); return `backend ${b.address}:${b.port}/${b.protocol} (id ${b.id})`; }, 1, true));
  }

  /**
   * The run of ops [from, to), all of one kind. upsertBackend's is read in place: a first sync's is
   * ~1M ops at 100,000 Services, and its copy, the array of its backends and the array of their ids
   * (8 MiB each, in V8's large-object space) stood, dead, from the apply to the heap trimmer's full
   * GC after the sync, at the start's peak RSS (docs/perf-log.md, session 28, p28rss).
   */
  private *applyRun(ops: readonly PlanOp[], from: number, to: number, res: ApplyResult): Steps {
    const kind = ops[from]!.op;
    if (kind === 'upsertBackend') {
      res.batches += yield* this.upsertBackends((i) => (ops[i] as Extract<PlanOp, { op: 'upsertBackend' }>).backend, from, to);
      return;
    }
    if (kind === 'upsertBackends') {
      for (let k = from; k < to; k++) {
        const bs = (ops[k] as Extract<PlanOp, { op: 'upsertBackends' }>).backends;
        res.batches += yield* this.upsertBackends((i) => bs[i]!, 0, bs.length);
      }
      return;
    }
    const run = ops.slice(from, to);
    switch (kind) {
      case 'createTable': {
        const tables = run.map((o) => (o as Extract<PlanOp, { op: 'createTable' }>).table);
        const early = this.early;
        yield* this.writeTables(early ? tables.filter((t) => !early.has(t)) : tables);
        res.tables += tables.length;
        res.batches++;
        return;
      }
      case 'upsertSlots': {
        const items = run as Array<Extract<PlanOp, { op: 'upsertSlots' }>>;
        if (this.deferring) {
          // lb_members (addMembers) has them; lb_slots gets them from the mirror after the apply
          for (const o of items) this.slotQueue.push(o.frontendId);
          return;
        }
        const n = items.reduce((s, o) => s + o.backendIds.length, 0);
        // lb_slot_key {fe_id, slot} (encodeSlotKey) and the ids as u32 words of two buffers, without
        // an object or a checked Buffer write per slot: a first sync writes ~110,000 of them
        const kw = new Uint32Array(n * 2), vw = new Uint32Array(n);
        // the first slot of each item, for naming the frontend of a slot the kernel refused
        const starts: number[] = [];
        let k = 0;
        for (const o of items) {
          starts.push(k);
          const ids = o.backendIds, fe = o.frontendId;
          if (!(fe >= 1 && fe <= 0xffffffff)) throw new KbpError('KBP_ERR_INTERNAL', `slots of frontend id ${fe}: not a u32`);
          for (let slot = 0; slot < ids.length; slot++, k++) {
            const id = ids[slot]!;
            if (!(id >= 1 && id <= 0xffffffff)) throw new KbpError('KBP_ERR_INTERNAL', `slot ${slot} of frontend id ${fe} names backend id ${id}`);
            kw[2 * k] = fe;
            kw[2 * k + 1] = slot;
            vw[k] = id;
          }
          if (k % SLOTS_PER_PAUSE < ids.length) yield PAUSE;
        }
        const keys = u32Bytes(kw), values = u32Bytes(vw);
        const ownerOf = (i: number): number => {
          let lo = 0, hi = starts.length - 1;
          while (lo < hi) {
            const mid = (lo + hi + 1) >> 1;
            if (starts[mid]! <= i) lo = mid;
            else hi = mid - 1;
          }
          return items[lo]!.frontendId;
        };
        yield* this.batchUpdate('lb_slots', keys, values, n, (i) => `slot of frontend id ${ownerOf(i)}`, HASH_BATCH_THREADS, true);
        res.batches++;
        return;
      }
      case 'upsertRevNat': {
        const items = run as Array<Extract<PlanOp, { op: 'upsertRevNat' }>>;
        const keys = Buffer.alloc(items.length * 4), values = Buffer.alloc(items.length * L.REVNAT.size);
        items.forEach((o, i) => {
          L.encodeU32(o.frontendId, keys, i * 4);
          L.encodeRevNat({ address: o.address, port: o.port }, values, i * L.REVNAT.size);
        });
        yield* this.batchUpdate('lb_revnat', keys, values, items.length, (i) => `reverse NAT of frontend id ${items[i]!.frontendId} (${items[i]!.address}:${items[i]!.port})`, 1, true);
        res.batches++;
        return;
      }
      case 'setSourceRanges': {
        const items = run as Array<Extract<PlanOp, { op: 'setSourceRanges' }>>;
        const add = items.flatMap((o) => o.add.map((cidr) => ({ feId: o.frontendId, cidr })));
        const remove = items.flatMap((o) => o.remove.map((cidr) => ({ feId: o.frontendId, cidr })));
        if (add.length) {
          const keys = Buffer.alloc(add.length * L.SRC_RANGE_KEY.size);
          add.forEach((r, i) => L.encodeSrcRangeKey(r, keys, i * L.SRC_RANGE_KEY.size));
          yield* this.batchUpdate('lb_src_ranges', keys, Buffer.alloc(add.length, 1), add.length, (i) => `source range ${add[i]!.cidr} of frontend id ${add[i]!.feId}`);
          res.batches++;
        }
        if (remove.length) {
          const keys = Buffer.alloc(remove.length * L.SRC_RANGE_KEY.size);
          remove.forEach((r, i) => L.encodeSrcRangeKey(r, keys, i * L.SRC_RANGE_KEY.size));
          yield { kind: 'deleteMany', map: this.maps.lb_src_ranges, keys, count: remove.length };
          res.batches++;
        }
        return;
      }
      case 'upsertFrontend': {
        const fs = run.map((o) => (o as Extract<PlanOp, { op: 'upsertFrontend' }>).frontend);
        const keys = Buffer.alloc(fs.length * L.FE_KEY.size), values = Buffer.alloc(fs.length * L.FRONTEND.size);
        fs.forEach((f, i) => {
          if (!(f.id >= 1 && f.id < L.LB_FE_ID_MAX)) {
            throw new KbpError('KBP_ERR_MAP_FULL', `frontend ${fmtFe(f)}: id ${f.id} is outside 1..${L.LB_FE_ID_MAX - 1} (LB_FE_ID_MAX: lb_revnat is indexed by it)`);
          }
          L.encodeFeKey(f, keys, i * L.FE_KEY.size);
          const v = frontendValue(f);
          if (f.tableId) {
            const r = this.regions.get(f.tableId);
            if (!r || r.m !== f.maglevM) throw new KbpError('KBP_ERR_INTERNAL', `frontend ${fmtFe(f)}: Maglev table ${f.tableId} (M=${f.maglevM}) was not written before it`);
            v.maglevOff = r.off;
          }
          L.encodeFrontend(v, values, i * L.FRONTEND.size);
        });
        // names first: a crash after the write must not leave a frontend without its Service name
        for (const f of fs) this.state?.setFrontend(f.id, { service: f.service, portName: f.portName, terminating: f.terminatingIds });
        // the filter lets the new keys through before the programs can find them
        yield* this.feFilterChange(keys, fs.length, 1);
        // every table these frontends point at is filled before they can
        yield* this.joinFill();
        const w = this.feUnwritten(fs, keys, values);
        if (w.count) {
          // a frontend already served whose key comes in the other scope now is flagged first
          // which keys have a twin: asked once, for the flags of both writes
          const twins = new Uint8Array(w.count);
          yield* this.feIdsTwins(w.keys, w.count, true, twins);
          yield* this.batchUpdate('lb_frontends', w.keys, w.values, w.count, (i) => `frontend ${fmtFe(w.fs[i]!)}`);
          yield* this.feIdsWrite(w.fs, w.keys, w.values, twins);
          this.feWritten(w.fs, w.keys, w.values);
          res.batches++;
        }
        for (const f of fs) this.noteFrontend(f.id, f.tableId || undefined);
        if (this.feStatsTop !== undefined) for (const f of fs) if (f.id > this.feStatsTop) this.feStatsTop = f.id;
        return;
      }
      case 'deleteSlots': {
        const items = run as Array<Extract<PlanOp, { op: 'deleteSlots' }>>;
        const n = items.reduce((s, o) => s + Math.max(0, o.toSlot - o.fromSlot), 0);
        const keys = Buffer.alloc(n * L.SLOT_KEY.size);
        let k = 0;
        for (const o of items) for (let s = o.fromSlot; s < o.toSlot; s++) L.encodeSlotKey({ feId: o.frontendId, slot: s }, keys, (k++) * L.SLOT_KEY.size);
        yield { kind: 'deleteMany', map: this.maps.lb_slots, keys, count: n };
        // a whole list gone (the frontend removed, or left without backends); a shorter list's
        // leavers were queued by its upsertSlots
        for (const o of items) {
          if (o.fromSlot !== 0) continue;
          const was = this.members!.get(o.frontendId) ?? [];
          for (const id of was) this.memberRemovals.push({ feId: o.frontendId, backendId: id });
          this.members!.delete(o.frontendId);
          this.memberFill.slots -= was.length;
          this.memberFill.members -= new Set(was).size;
        }
        res.batches++;
        return;
      }
      case 'deleteFrontend': {
        const fs = run.map((o) => (o as Extract<PlanOp, { op: 'deleteFrontend' }>).frontend);
        const keys = Buffer.alloc(fs.length * L.FE_KEY.size);
        fs.forEach((f, i) => L.encodeFeKey(f, keys, i * L.FE_KEY.size));
        if (this.feEntries) for (const f of fs) this.feEntries.known[f.id] = 0;
        // lb_fe_ids first: a hit must not find a frontend lb_frontends no longer holds
        yield* this.feIdsWrite(fs);
        yield { kind: 'deleteMany', map: this.maps.lb_frontends, keys, count: fs.length };
        // only once they are gone: a bit cleared early would hide a frontend still served
        yield* this.feFilterChange(keys, fs.length, -1);
        // and a twin left alone on its key is no longer flagged
        yield* this.feIdsTwins(keys, fs.length, false);
        for (const f of fs) {
          this.state?.deleteFrontend(f.id);
          this.noteFrontend(f.id, undefined);
        }
        res.batches++;
        return;
      }
      case 'deleteRevNat':
        yield* this.deleteU32s('lb_revnat', run.map((o) => (o as Extract<PlanOp, { op: 'deleteRevNat' }>).frontendId));
        res.batches++;
        return;
      case 'deleteTable': {
        // no kernel write: nothing points at the region any more; it waits out its grace period
        const recycled = new Set(this.recycling.values());
        for (const o of run) {
          const id = (o as Extract<PlanOp, { op: 'deleteTable' }>).tableId;
          this.tableM.delete(id);
          this.tableFes.delete(id);
          if (recycled.has(id)) continue; // its region lives on under the table that took it
          const r = this.dropRegion(id);
          if (r) this.slotAlloc!.release(r);
        }
        return;
      }
      case 'deleteBackend': {
        const ids = run.map((o) => (o as Extract<PlanOp, { op: 'deleteBackend' }>).backendId);
        if (this.maps.lb_backends.type === MapType.ARRAY) {
          // an array's entries cannot be deleted: an id without a backend is an all-zero entry
          const keys = Buffer.alloc(ids.length * 4);
          ids.forEach((id, i) => L.encodeU32(id, keys, i * 4));
          yield* this.followBackends((fn) => ids.forEach(fn), true,
            [{ kind: 'update', map: this.maps.lb_backends, keys, values: Buffer.alloc(ids.length * L.BACKEND.size), count: ids.length }]);
        } else {
          yield* this.deleteU32s('lb_backends', ids);
        }
        res.batches++;
        return;
      }
      default: {
        const never: never = kind;
        throw new KbpError('KBP_ERR_INTERNAL', `unknown plan op ${String(never)}`);
      }
    }
  }

  /**
   * Writes each table into a region of lb_maglev_slots: the region of the table it replaces when
   * recycled (every frontend moves to it in this apply, same M: each slot is one aligned u32 that a
   * reader sees old or new, both members now), else a free one, which no frontend reads until its
   * upsertFrontend switches it. Regions written back to back are copied together.
   */
  private *writeTables(tables: PlanTable[]): Steps {
    if (!tables.length) return;
    const alloc = this.slotAlloc!;
    const pieces: Piece[] = [];
    let n = 0, pending = 0;
    for (const t of tables) {
      if (!(t.id >= 1 && t.id <= 0xffffffff)) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table has invalid id ${t.id}`);
      const src = pendingSlots(t);
      if (t.m < 1 || t.m > L.LB_MAGLEV_M_MAX || (!src && t.slots.length !== t.m)) {
        throw new KbpError('KBP_ERR_INTERNAL', `Maglev table ${t.id}: ${src ? 'slots to fill' : `${t.slots.length} slots`} for M=${t.m}`);
      }
      const from = this.recycling.get(t.id);
      let r: Region | undefined = this.regions.get(t.id);
      if (r && from === undefined) {
        // the same table written again (a new seed: same M and members, other slots): in place
        if (this.regions.get(t.id)!.m !== t.m) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table ${t.id} rewritten with M=${t.m}, written before with M=${this.regions.get(t.id)!.m}`);
      } else if (from !== undefined) {
        r = this.dropRegion(from);
        if (!r) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table ${from} to recycle has no region`);
      } else {
        r = alloc.alloc(t.m);
        if (!r) {
          throw new KbpError('KBP_ERR_MAP_FULL', `map lb_maglev_slots is full (${alloc.capacity} slots: ${alloc.used} in tables, ${alloc.quarantined} waiting to be reused): cannot add Maglev table ${t.id} (M=${t.m})`);
        }
      }
      this.setRegion(t.id, r, t.m);
      if (this.recycleTables) this.tableM.set(t.id, t.m);
      if (src) pending++;
      pieces.push({ off: r.off, size: regionSize(t.m), table: t, src });
      if (++n % TABLES_PER_PAUSE === 0) yield PAUSE;
    }
    pieces.sort((a, b) => a.off - b.off);
    if (pending) {
      if (!this.startFill(pieces)) yield* this.fillRegions(pieces);
      return;
    }
    const m = this.maps.lb_maglev_slots;
    for (let i = 0; i < pieces.length;) {
      let j = i + 1, end = pieces[i]!.off + pieces[i]!.size;
      while (j < pieces.length && pieces[j]!.off === end) end += pieces[j++]!.size;
      // one buffer per run of adjacent regions, each table encoded straight into it
      const data = Buffer.allocUnsafe((end - pieces[i]!.off) * 4);
      for (let k = i, at = 0; k < j; k++) at += L.encodeMaglevTableInto(pieces[k]!.table.slots, data, at);
      m.writeMmap(data, pieces[i]!.off * 4);
      i = j;
      if (i < pieces.length) yield PAUSE;
    }
  }

  /**
   * Starts the fill of a large write whose tables are all still to be filled from one source (a full
   * build's) on background threads, straight into lb_maglev_slots; false (nothing started) for any
   * other write, which fillRegions writes at once.
   */
  private startFill(pieces: readonly Piece[]): boolean {
    const src = pieces[0]?.src?.src;
    if (!src || this.fillJob) return false;
    let slots = 0;
    for (const p of pieces) {
      if (p.src?.src !== src) return false;
      slots += p.size;
    }
    // KBP_MAGLEV_NATIVE=0 (the JavaScript fill asked for) keeps fillRegions' way
    // any size: the job maps lb_maglev_slots a window at a time (BpfMap.maglevFillStart), so the
    // agent's RSS holds a window or two, not the span (~760 MiB at 100,000 Services)
    if (slots < BACKGROUND_FILL_SLOTS || !nativeFillAvailable()) return false;
    const regions = new Uint32Array(pieces.length * 5);
    pieces.forEach((p, k) => regions.set([p.src!.first, p.table.members.length, p.table.m, p.off, p.size], k * 5));
    this.fillJob = this.maps.lb_maglev_slots.maglevFillStart(u32Bytes(src.h1), u32Bytes(src.h2), u32Bytes(src.ids), u32Bytes(regions), BACKGROUND_FILL_THREADS, BACKGROUND_FILL_WINDOW_SLOTS);
    return true;
  }

  /**
   * The write's new tables when they can be filled before anything else is written: a large write
   * (startFill's) whose every table is still to be filled from one source and takes a fresh region
   * (not recycled, not rewritten in place), so no reader can reach a slot before an upsertFrontend
   * names the table, and the backends and members the slots name are written before that too.
   */
  private earlyTables(ops: readonly PlanOp[], pre?: ReadonlySet<PlanTable>): Set<PlanTable> | undefined {
    const tables = new Set<PlanTable>();
    let src: SlotSource | undefined, slots = 0;
    // by index: a for-of step over a first sync's ~1.4M ops allocated its result (this runs once, unoptimized)
    for (let k = 0; k < ops.length; k++) {
      const o = ops[k]!;
      if (o.op !== 'createTable') continue;
      const t = o.table;
      if (pre) {
        // prefilled: exactly the tables this apply creates, each with the region prefill gave it
        if (!pre.has(t) || tables.has(t)) return undefined;
        tables.add(t);
        continue;
      }
      const p = pendingSlots(t);
      if (!p || (src && p.src !== src) || this.recycling.has(t.id) || this.regions.has(t.id) || tables.has(t)) return undefined;
      src = p.src;
      slots += regionSize(t.m);
      tables.add(t);
    }
    if (pre) return tables.size === pre.size && !this.recycling.size ? tables : undefined;
    return slots >= BACKGROUND_FILL_SLOTS && nativeFillAvailable() ? tables : undefined;
  }

  /**
   * Starts filling a full build's new tables (buildPlan's onTables) into fresh regions of
   * lb_maglev_slots on background threads, before their apply: the plan's last steps and the diff
   * then run on the main thread beside the fill (on two cores, one idle until the apply). Nothing
   * reads a region before an upsertFrontend names its table, and the apply that creates exactly
   * these tables adopts the fill (earlyTables); any other apply first drops them (dropUnread).
   * False, with nothing started, unless the tables are one large write earlyTables would have
   * filled in the background anyway, and no apply or fill is under way.
   */
  prefill(tables: readonly PlanTable[]): boolean {
    if (this.fillJob || this.prefilled || this.early || !tables.length) return false;
    let src: SlotSource | undefined, slots = 0;
    for (const t of tables) {
      const p = pendingSlots(t);
      if (!p || (src && p.src !== src) || this.regions.has(t.id)) return false;
      src = p.src;
      slots += regionSize(t.m);
    }
    if (slots < BACKGROUND_FILL_SLOTS || !nativeFillAvailable()) return false;
    // the regions' bookkeeping is loaded as an apply loads it; nothing is recycled into them
    this.loadRegions().begin();
    this.recycling = new Map();
    try {
      // in id order, as the apply would write them (diff's createTables): the same regions
      runSync(this.writeTables([...tables].sort((a, b) => a.id - b.id)));
    } catch (e) {
      // a region short (map full) or a fill refused: the apply writes them, or fails, as it would have
      const job = this.fillJob as MaglevFillJob | undefined;
      this.fillJob = undefined;
      if (job) try { job.wait(); } catch { /* its error is the apply's to find again */ }
      this.dropUnread(tables);
      throw e;
    }
    this.prefilled = new Set(tables);
    return true;
  }

  /** forgets tables written into regions no frontend ever named (prefill's), their regions free at once */
  private dropUnread(tables: Iterable<PlanTable>): void {
    for (const t of tables) {
      const r = this.dropRegion(t.id);
      this.tableM.delete(t.id);
      if (r) this.slotAlloc?.unread({ off: r.off, size: r.size });
    }
  }

  /** whether a run may be written while a background fill goes on: it reads no slot and writes none */
  private besideFill(ops: readonly PlanOp[], from: number, to: number): boolean {
    const early = this.early, kind = ops[from]!.op;
    if (kind !== 'createTable') return BESIDE_FILL.has(kind);
    if (!early) return false;
    for (let k = from; k < to; k++) if (!early.has((ops[k] as Extract<PlanOp, { op: 'createTable' }>).table)) return false;
    return true;
  }

  /**
   * Waits for a background fill, taking the chunks no thread has begun on this thread one at a time
   * (applyAsync's event loop runs between them); its error is thrown here.
   */
  private *joinFill(): Steps {
    const job = this.fillJob;
    if (!job) return;
    try {
      while (job.step()) yield PAUSE;
    } finally {
      this.fillJob = undefined;
      job.wait();
    }
  }

  /**
   * Writes tables (pieces in region order) some of which are still to be filled: adjacent regions
   * are filled together into one reused buffer of at most FILL_CHUNK_SLOTS, laid out as the regions
   * (each table's padding slot zero), and copied into lb_maglev_slots with one write per chunk; the
   * slots are never held anywhere else.
   */
  private *fillRegions(pieces: readonly Piece[]): Steps {
    const m = this.maps.lb_maglev_slots;
    let most = 0;
    for (const p of pieces) most += p.size;
    const chunk = new Uint32Array(Math.min(most, FILL_CHUNK_SLOTS));
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = 0; i < pieces.length;) {
      const start = pieces[i]!.off;
      let j = i + 1, end = start + pieces[i]!.size;
      while (j < pieces.length && pieces[j]!.off === end && end + pieces[j]!.size - start <= chunk.length) end += pieces[j++]!.size;
      // per source (one per full build), the tables to fill: nativeFill's layout, offsets in chunk
      const fills = new Map<SlotSource, number[]>();
      for (let k = i; k < j; k++) {
        const p = pieces[k]!, at = p.off - start, t = p.table;
        if (p.src) {
          let d = fills.get(p.src.src);
          if (!d) fills.set(p.src.src, (d = []));
          d.push(p.src.first, t.members.length, t.m, at);
        } else {
          chunk.set(t.slots, at);
        }
        chunk.fill(0, at + t.m, at + p.size);
      }
      for (const [src, d] of fills) fillTables(src, Uint32Array.from(d), chunk);
      const len = (end - start) * 4;
      m.writeMmap(HOST_LE ? bytes.subarray(0, len) : Buffer.from(bytes.subarray(0, len)).swap32(), start * 4);
      i = j;
      yield PAUSE;
    }
  }

  /**
   * The entries of lb_slots and lb_members as the mirror of the backend lists has them: exact between
   * applies (one slot per list element, one member per distinct backend of a list); undefined while
   * the mirror is not loaded or an apply's removals are pending. Counting the maps instead walks their
   * buckets (2M each): ~0.1 s per /metrics scrape at 10,000 Services after every change.
   */
  slotFill(): { slots: number; members: number } | undefined {
    if (!this.members || this.memberRemovals.length) return undefined;
    return { ...this.memberFill };
  }

  /**
   * Each frontend's backend list as lb_members holds it (canonical order), from the mirror: exact
   * between applies; undefined while it is not loaded. The lists are the mirror's own: not to be changed.
   */
  memberLists(): ReadonlyMap<number, readonly number[]> | undefined {
    return this.memberRemovals.length ? undefined : this.members;
  }

  /** The entries of lb_frontends as the filter's mirror of its keys has them (exact between applies), or undefined before it is loaded. */
  frontendFill(): number | undefined {
    return this.feKeys?.size;
  }

  /**
   * lb_backends is known empty (made by this load, not written since): backendCount follows the
   * writes from nothing instead of reading the array's million entries at the first /metrics scrape.
   */
  backendsEmpty(): void {
    const m = this.maps.lb_backends;
    if (m.type !== MapType.ARRAY || m.writes !== 0 || this.backendBits || this.pendingBits) return;
    this.backendBits = new Uint8Array(Math.ceil(m.maxEntries / 8));
    this.backendN = 0;
  }

  /** lb_fe_stats and the maps that name frontends were made by this load: no counter is set yet (feStatsTop) */
  statsEmpty(): void {
    if (this.maps.lb_frontends.writes === 0 && this.feStatsTop === undefined) this.feStatsTop = 0;
  }

  /** The backends lb_backends holds: an array's entries that hold one (read once, then followed). */
  backendCount(): number {
    const m = this.maps.lb_backends;
    if (m.type !== MapType.ARRAY) return m.count();
    // a write under way (applyAsync's batch on the thread pool): the count before it, followed, not a
    // scan of the whole array on the event loop (~0.26 s at a million entries, a /metrics scrape in
    // a first sync's apply at 100,000 Services) that would race the write
    if (!this.backendBits && this.pendingBits) return this.backendN;
    if (!this.backendBits) {
      const bits = new Uint8Array(Math.ceil(m.maxEntries / 8));
      let n = 0;
      scanBackends(m, (id) => {
        bits[id >>> 3]! |= 1 << (id & 7);
        n++;
      });
      this.backendBits = bits;
      this.backendN = n;
    }
    return this.backendN;
  }

  /**
   * Writes lb_backends' ids (write: the steps; cleared: their entries zeroed) and follows it in
   * backendBits. While the write is under way the count is the one before it (backendCount), and a
   * write that throws leaves the count to be read again. After it the ids are set (or cleared) in the
   * bits kept before it, or in those of a first count made meanwhile, whose scan may have read the
   * array before the kernel had the write (an id already set, or already clear, is left as it is).
   * Nothing to follow while no one asked for the count.
   */
  private *followBackends(ids: (fn: (id: number) => void) => void, cleared: boolean, write: Iterable<Write>): Steps {
    if (this.maps.lb_backends.type !== MapType.ARRAY) {
      yield* write;
      return;
    }
    this.pendingBits = this.backendBits;
    this.backendBits = undefined;
    let done = false;
    try {
      yield* write;
      done = true;
    } finally {
      if (!done) {
        this.pendingBits = undefined;
        this.backendBits = undefined;
      }
    }
    // the bits set aside before the write, else a count made during it
    const bits = this.pendingBits ?? this.backendBits;
    this.pendingBits = undefined;
    if (!bits) return;
    ids((id) => {
      const has = (bits[id >>> 3]! >> (id & 7)) & 1;
      if (cleared && has) { bits[id >>> 3]! &= ~(1 << (id & 7)); this.backendN--; }
      if (!cleared && !has) { bits[id >>> 3]! |= 1 << (id & 7); this.backendN++; }
    });
    this.backendBits = bits;
  }

  /** free: the caller made keys and values for this write alone (Write's free) */
  private *batchUpdate(name: L.MapName, keys: Buffer, values: Buffer, count: number, what: (i: number) => string, threads = 1, free = false): Steps {
    try {
      yield { kind: 'update', map: this.maps[name], keys, values, count, threads, ...(free && { free }) };
    } catch (e) {
      const i = e instanceof BpfBatchError ? e.processed : 0;
      throw this.mapFull(e, name, i < count ? what(i) : `${count} entries`);
    }
  }

  private mapFull(e: unknown, name: L.MapName, what: string): unknown {
    if (!isFull(e)) return e;
    const m = this.maps[name];
    return new KbpError('KBP_ERR_MAP_FULL', `map ${name} is full (${m.maxEntries} entries): cannot add ${what}`, { cause: e, errno: (e as KbpError).errno! });
  }

  private *deleteU32s(name: L.MapName, ids: number[]): Steps {
    const keys = Buffer.alloc(ids.length * 4);
    ids.forEach((id, i) => L.encodeU32(id, keys, i * 4));
    yield { kind: 'deleteMany', map: this.maps[name], keys, count: ids.length };
  }

  writeConfig(cfg: { hashSeed: number; snatMark: number; flags: number }): void {
    for (const [k, v] of Object.entries(cfg)) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new KbpError('KBP_ERR_CONFIG', `lb_config ${k} must be an integer in 0..2^32-1, got ${v}`);
    }
    this.maps.lb_config.update(L.encodeU32(0), L.encodeConfig(cfg));
  }

  setDevice(ifindex: number, flags: number): void {
    if (!Number.isInteger(ifindex) || ifindex < 1) throw new KbpError('KBP_ERR_INTERNAL', `setDevice: ifindex must be a positive integer, got ${ifindex}`);
    try {
      this.maps.lb_devices.update(L.encodeU32(ifindex), L.encodeDevice({ flags }));
    } catch (e) {
      throw this.mapFull(e, 'lb_devices', `device ifindex ${ifindex}`);
    }
  }

  /** false when the device had no entry */
  removeDevice(ifindex: number): boolean {
    return this.maps.lb_devices.delete(L.encodeU32(ifindex));
  }

  /**
   * Makes the fe_id 0 entries of lb_src_ranges exactly these CIDRs: the sources the programs take
   * for the cluster's pods (kube-proxy's ClusterCIDR detector); flows from elsewhere to a
   * LB_FE_F_MASQ_OFF_CLUSTER frontend are masqueraded.
   */
  setLocalSources(cidrs: Iterable<string>): void {
    const m = this.maps.lb_src_ranges;
    const want = new Map<string, { cidr: string; key: Buffer }>();
    for (const cidr of cidrs) {
      const key = L.encodeSrcRangeKey({ feId: LOCAL_SOURCES_FE_ID, cidr });
      want.set(key.toString('hex'), { cidr, key });
    }
    for (const k of m.keys()) {
      if (L.decodeSrcRangeKey(k).feId === LOCAL_SOURCES_FE_ID && !want.delete(k.toString('hex'))) m.delete(k);
    }
    for (const { cidr, key } of want.values()) {
      try {
        m.update(key, Buffer.of(1));
      } catch (e) {
        throw this.mapFull(e, 'lb_src_ranges', `cluster source ${cidr}`);
      }
    }
  }

  /** Makes lb_node_addrs hold exactly these addresses (NodePorts on 0.0.0.0 / :: answer there). */
  setNodeAddresses(addresses: Iterable<string>): void {
    const m = this.maps.lb_node_addrs;
    const want = new Map<string, { address: string; key: Buffer }>();
    for (const address of addresses) {
      const key = L.encodeNodeAddr(address);
      want.set(key.toString('hex'), { address, key });
    }
    for (const k of m.keys()) if (!want.delete(k.toString('hex'))) m.delete(k);
    const one = Buffer.of(1);
    for (const { address, key } of want.values()) {
      try {
        m.update(key, one);
      } catch (e) {
        throw this.mapFull(e, 'lb_node_addrs', `node address ${address}`);
      }
    }
  }

  /**
   * Makes lb_sock_eip_ok hold exactly these prefixes: the externalIPs that the socket hooks translate
   * although they are not this node's addresses (--local-external-ip-allow, CVE-2020-8554).
   */
  setExternalIpAllow(cidrs: Iterable<string>): void {
    const m = this.maps.lb_sock_eip_ok;
    const want = new Map<string, { cidr: string; key: Buffer }>();
    for (const cidr of cidrs) {
      const key = L.encodeEipAllowKey(cidr);
      want.set(key.toString('hex'), { cidr, key });
    }
    for (const k of m.keys()) if (!want.delete(k.toString('hex'))) m.delete(k);
    const one = Buffer.of(1);
    for (const { cidr, key } of want.values()) {
      try {
        m.update(key, one);
      } catch (e) {
        throw this.mapFull(e, 'lb_sock_eip_ok', `externalIP allowlist prefix ${cidr}`);
      }
    }
  }
}

/** lb_src_ranges' fe_id for the cluster's own source CIDRs (no frontend has id 0) */
export const LOCAL_SOURCES_FE_ID = 0;
const REMOVAL_RANK: Partial<Record<PlanOp['op'], number>> = { deleteFrontend: 0, deleteSlots: 1, deleteRevNat: 2, setSourceRanges: 3 };

function isRemoval(o: PlanOp): boolean {
  return REMOVAL_RANK[o.op] !== undefined && (o.op !== 'setSourceRanges' || o.add.length === 0);
}

/**
 * diff() emits a removed frontend's writes together (entry, slots, rev-NAT, ranges), so removing many
 * frontends alternates op kinds and would cost one system call per op. Within a stretch of removals
 * the frontends are independent, and each one's order is kept if all entries go first, then all
 * slots, rev-NAT entries and ranges: regroup such stretches by kind (stable otherwise).
 */
export function groupRemovals(ops: readonly PlanOp[]): readonly PlanOp[] {
  let out: PlanOp[] | undefined;
  for (let i = 0; i < ops.length;) {
    if (!isRemoval(ops[i]!)) {
      out?.push(ops[i]!);
      i++;
      continue;
    }
    let j = i;
    while (j < ops.length && isRemoval(ops[j]!)) j++;
    const stretch = ops.slice(i, j);
    const sorted = stretch.map((o, k) => ({ o, k })).sort((a, b) => REMOVAL_RANK[a.o.op]! - REMOVAL_RANK[b.o.op]! || a.k - b.k).map((x) => x.o);
    if (!out && sorted.some((o, k) => o !== stretch[k])) out = ops.slice(0, i);
    out?.push(...sorted);
    i = j;
  }
  return out ?? ops;
}

function backendFlags(b: PlanBackend): number {
  return (b.terminating ? L.LB_BE_F_TERMINATING : 0) | (b.local ? L.LB_BE_F_LOCAL : 0);
}

const FE_SLOT_FLAGS = L.FE_SLOT.fields.flags.offset;

/** a frontend key's twin, the same address, port and protocol in the other scope, as latin1 text (the filter mirror's keys) */
const twinScratch = Buffer.alloc(L.FE_KEY.size);
function twinKeyOf(keys: Buffer, off: number): string {
  // one scratch buffer, not one a key: a first sync asks this of every frontend (100,000 at 100k)
  keys.copy(twinScratch, 0, off, off + L.FE_KEY.size);
  const at = L.FE_KEY.fields.scope.offset;
  twinScratch[at] = twinScratch[at] === L.LB_SCOPE_EXTERNAL ? L.LB_SCOPE_INTERNAL : L.LB_SCOPE_EXTERNAL;
  return twinScratch.toString('latin1');
}

/** bytes between entries of lb_fe_ids as writeFeIdsWhole() takes them: a mappable array's stride, else the value's size */
export function feIdsStride(m: BpfMap): number {
  return m.flags & BPF_F_MMAPABLE ? Math.ceil(m.valueSize / 8) * 8 : m.valueSize;
}

/** Writes every entry of lb_fe_ids (slots: maxEntries entries, feIdsStride() apart): one copy through a mapping where it is mappable. */
export function writeFeIdsWhole(m: BpfMap, slots: Buffer): void {
  if (m.flags & BPF_F_MMAPABLE) {
    m.writeMmap(slots);
    return;
  }
  const keys = Buffer.alloc(m.maxEntries * 4);
  for (let i = 0; i < m.maxEntries; i++) keys.writeUInt32LE(i, i * 4);
  m.updateBatch(keys, slots, m.maxEntries);
}

/** The lb_frontends value of a plan frontend; flags follow from the plan's fields. */
export function frontendValue(f: PlanFrontend): L.FrontendValue {
  return {
    feId: f.id, maglevOff: 0, maglevM: f.maglevM, backendCount: f.backendIds.length, type: f.type,
    flags: (f.affinityTimeout > 0 ? L.LB_FE_F_AFFINITY : 0) | (f.sourceRanges.length ? L.LB_FE_F_SOURCE_RANGES : 0) | (f.snatRemote ? L.LB_FE_F_SNAT_REMOTE : 0) |
      (f.dropNoLocal ? L.LB_FE_F_DROP_NO_LOCAL : 0) | (f.masquerade === 'all' ? L.LB_FE_F_MASQ_ALL : 0) | (f.masquerade === 'offCluster' ? L.LB_FE_F_MASQ_OFF_CLUSTER : 0),
    affinityTimeout: f.affinityTimeout, affinityGroup: f.affinityGroup,
  };
}

function isFull(e: unknown): boolean {
  const errno = (e as KbpError | undefined)?.errno;
  return errno === E2BIG || errno === ENOSPC;
}


