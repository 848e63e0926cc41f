// The incremental build.
//
// The agent hands buildPlan the plan it returned last time, and its Compiler hands on the same
// NodeFrontend objects for every Service it did not recompile. So a build keeps, beside the plan it
// returns, what it derived from each NodeFrontend (a Chain: per-frontend records, per-backend
// reference counts, the table of each member set, the ids in use), and the next build from that
// plan redoes only the frontends whose object is new and withdraws those whose object is gone. The
// result is the full build's, to the object and the map order (test/unit/plan-incremental.test.ts):
// an unchanged NodeFrontend yields prev's PlanFrontend in the full build too, since its backends and
// its table keep their ids. NodeFrontends are taken as immutable once handed in, as compile's are.
//
// A chain serves only the plan it last produced: building from another plan (an older one, a
// kernel read-back), with another seed or sizing, or with many changed frontends takes the full
// path, which starts a new chain. So does anything unusual among the changed frontends (a bad field,
// a duplicate, an id range full), which makes every error the full path's, word for word.

import type { NodeFrontend, NodeState, Protocol } from '../model/compiled.js';
import { backendIndex, findIn, indexAdd, indexRemove, type BackendIndex } from './backend-index.js';
import { AddressKeys, affinityGroupOf, backendFault, frontendFault, frontendSortKey, NONE, planFrontend, samePlanFrontend, tableKey, tableMembers } from './frontend.js';
import { BACKEND_ID_MAX, ID_MAX, LB_FE_ID_MAX } from './limits.js';
import { MaglevBuilder, maglevSize, maglevSlots, type MaglevSizing } from './maglev.js';
import { frontendKey, type Plan, type PlanBackend, type PlanFrontend, type PlanTable } from './types.js';
import { frontendCount, stateDelta } from './delta.js';
import { changeRoom, reserveMapRoom } from '../util/map-room.js';
import { addressPortHash, ShardedMap, stringHash } from '../util/sharded-map.js';
import { SideTable } from '../util/side-table.js';

interface FeRec {
  src: NodeFrontend;
  key: string;
  sortKey: string;
  /** the PlanFrontend in the chain's latest plan */
  pf: PlanFrontend;
  /** the table's key, '' when none */
  tkey: string;
  /** Chain.epoch of the last build that found src in its state */
  seen: number;
  /** Chain.epoch of the last build that withdrew it */
  goneAt: number;
}

/** What an incremental build changed against the plan it was built from (diffPlans walks only this). */
export interface PlanDelta {
  /** keys of next's frontends that prev lacks or holds as another object, in next's order */
  frontendKeys: string[];
  /** prev's frontends whose key next lacks, in prev's order */
  removed: PlanFrontend[];
  /** backends added, removed or replaced (flags), ascending */
  backendIds: number[];
  /** tables added or removed, ascending */
  tableIds: number[];
  /**
   * Set when next took prev's maps and changed them in place (buildPlan's consumePrev): prev's
   * entries under the keys this build changed (undefined: prev lacked it), which diffPlans reads
   * in place of prev's maps, and undoPlan puts back.
   */
  old?: PrevEntries;
}

export interface PrevEntries {
  frontends: Map<string, PlanFrontend | undefined>;
  backends: Map<number, PlanBackend | undefined>;
  tables: Map<number, PlanTable | undefined>;
}

/**
 * state: what the plan was built from, so that a state delta against it (delta.ts) can stand in for a
 * walk; make: a full build's chain still to be made (startChain's defer), made by headOf on first use
 */
interface Head { chain: Chain | undefined; version: number; serial: number; state?: NodeState; make?: () => Chain | undefined }
const heads = new SideTable<Plan, Head>('plan head');

/** plan's head, its chain made first when a full build left it to be made */
function headOf(plan: Plan): Head | undefined {
  const head = heads.get(plan);
  if (head?.make) {
    const make = head.make;
    head.make = undefined;
    head.chain = make();
  }
  return head;
}
// `from` is the serial of prev rather than prev itself: a strong reference would keep every plan
// of an agent's life alive
const deltas = new SideTable<Plan, PlanDelta & { from: number }>('plan delta');
let serials = 0;

/** The changes from prev to next when buildPlan built next incrementally from prev, else undefined. */
export function planDelta(prev: Plan, next: Plan): PlanDelta | undefined {
  const d = deltas.get(next);
  return d && heads.get(prev)?.serial === d.from ? d : undefined;
}

/** What a full build hands Chain.fromFull of each frontend (build-full.ts FrontendDraft), in plan order. */
interface FullFrontend {
  src: NodeFrontend;
  key: string;
  sortKey: string;
  /** tableKey of its table, '' when none */
  tkey: string;
}

/** A full build's distinct backends (build-full.ts Backends): id and reference counts per index. */
interface FullBackends {
  readonly size: number;
  readonly id: ArrayLike<number>;
  readonly refs: ArrayLike<number>;
  readonly termRefs: ArrayLike<number>;
  readonly localRefs: ArrayLike<number>;
}

/**
 * Makes a full build's plan the head of a new chain (of none when its ids are too sparse). With
 * defer, the chain's records are made by finishChain(plan) or by the first build from plan,
 * whichever comes first: ordered, bk and tables must stay as they are until then.
 */
export function startChain(plan: Plan, sizing: MaglevSizing, ordered: readonly FullFrontend[], bk: FullBackends, tables: Map<string, PlanTable>,
  state: NodeState, defer = false): void {
  const make = () => Chain.fromFull(plan, sizing, ordered, bk, tables);
  heads.set(plan, defer ? { chain: undefined, make, version: 0, serial: ++serials, state } : { chain: make(), version: 0, serial: ++serials, state });
}

/** Makes the chain a full build left to be made (buildPlan's deferChain); nothing when there is none. */
export function finishChain(plan: Plan): void {
  headOf(plan);
}

/** prev's backends by address: its chain's index when prev is the chain's latest plan, else built. */
export function prevBackendIndex(prev: Plan): BackendIndex {
  const head = headOf(prev);
  return head?.chain && head.chain.version === head.version ? head.chain.index : backendIndex(prev.backends);
}

/**
 * Ids past the highest a full build gave, made room for with its arrays. A full build's ids are
 * dense and a change's new ids are taken before the ids it frees are free (ids.ts), so without room
 * the first change after the start grew every array by doubling: at 100,000 Services its new Maglev
 * table's id doubled the tables' two (~1 MiB, ~200 page faults on fresh pages after the heap
 * trimmer's malloc_trim), and a new backend's the four of a million backends (~13 MiB copied): the
 * first change's plan took 3-60 ms where the next took 0.3-0.5 (docs/perf-log.md, session 21).
 */
function idRoom(top: number): number {
  return Math.max(1024, top >> 4);
}

function growI32(a: Int32Array, need: number): Int32Array {
  if (need < a.length) return a;
  const b = new Int32Array(Math.max(need + 1, a.length * 2));
  b.set(a);
  return b;
}

function growU8(a: Uint8Array, need: number): Uint8Array {
  if (need < a.length) return a;
  const b = new Uint8Array(Math.max(need + 1, a.length * 2));
  b.set(a);
  return b;
}

/** lowest id from *hint with live[id] === 0, marked live; undefined past max */
function takeId(live: { a: Uint8Array }, hint: { h: number }, max: number): number | undefined {
  // the builtin's scan: a new chain's hints start at 1, below every id a full build took (~100,000
  // backends at 10,000 Services), and the first change's scan ran in the interpreter (~10-30 ms)
  let id = hint.h < live.a.length ? live.a.indexOf(0, hint.h) : -1;
  if (id < 0) id = Math.max(hint.h, live.a.length);
  if (id > max) return undefined;
  live.a = growU8(live.a, id);
  live.a[id] = 1;
  hint.h = id + 1;
  return id;
}

class Chain {
  /** bumped by each incremental build; a plan's Head.version says which state it saw */
  version = 0;
  epoch = 0;
  /** ids below a hint are all live */
  readonly beHint = { h: 1 };
  readonly tblHint = { h: 1 };
  readonly feHint = { h: 1 };

  constructor(
    readonly seed: number,
    readonly sizing: MaglevSizing,
    public ordered: FeRec[],
    readonly bySrc: Map<NodeFrontend, FeRec>,
    readonly byKey: Map<string, FeRec>,
    /** the latest plan's backends by address (entries may be older objects of the same id) */
    readonly index: BackendIndex,
    /** per backend id: frontends listing it, listing it terminating, listing it local */
    public refs: Int32Array,
    public term: Int32Array,
    public local: Int32Array,
    /** ids the latest plan holds (ids freed by a build stay live until it ends: ids.ts) */
    readonly beLive: { a: Uint8Array },
    /** (member ids / M) -> table, for the latest plan's tables */
    readonly tables: Map<string, PlanTable>,
    /** per table id: frontends using it */
    public tblRefs: Int32Array,
    readonly tblLive: { a: Uint8Array },
    readonly feLive: { a: Uint8Array },
  ) {}

  /** undefined when ids are too sparse for arrays indexed by id (a kernel read-back may hold any) */
  static fromFull(plan: Plan, sizing: MaglevSizing, ordered: readonly FullFrontend[], bk: FullBackends, tables: Map<string, PlanTable>): Chain | undefined {
    const { seed, frontends, backends, tables: planTables } = plan;
    let beTop = 0, tblTop = 0;
    // by forEach: a million backends at 100,000 Services (backendIndex says why)
    backends.forEach((_b, id) => { if (id > beTop) beTop = id; });
    for (const id of planTables.keys()) if (id > tblTop) tblTop = id;
    if (beTop > 2 * backends.size + 4096 || tblTop > 2 * planTables.size + 4096) return undefined;
    const recs: FeRec[] = new Array(ordered.length);
    // in shards: each change deletes and inserts its frontends' records, and V8 copies a whole Map
    // every ~(capacity - n) such inserts (util/sharded-map.ts); neither is walked in order
    const bySrc = new ShardedMap<NodeFrontend, FeRec>(addressPortHash), byKey = new ShardedMap<string, FeRec>(stringHash);
    for (let k = 0; k < ordered.length; k++) {
      const d = ordered[k]!;
      // equal sort keys of distinct frontends (two spellings of one address) are ordered by their
      // place in the state, which an incremental build does not track
      if (k > 0 && ordered[k - 1]!.sortKey === d.sortKey) return undefined;
      const r: FeRec = { src: d.src, key: d.key, sortKey: d.sortKey, pf: frontends.get(d.key)!, tkey: d.tkey, seen: 0, goneAt: 0 };
      recs[k] = r;
      bySrc.set(d.src, r);
      byKey.set(d.key, r);
    }
    // room for the ids the changes after this build take (idRoom): the arrays are made here, in the
    // full sync, and a change's new id lands in them; the counts one longer than the live marks, as
    // takeId's growth leaves them (growI32 below keeps them then)
    const beCap = beTop + 1 + idRoom(beTop), tblCap = tblTop + 1 + idRoom(tblTop);
    const refs = new Int32Array(beCap + 1), term = new Int32Array(beCap + 1), local = new Int32Array(beCap + 1);
    const beLive = new Uint8Array(beCap);
    for (let i = 0; i < bk.size; i++) {
      const id = bk.id[i]!;
      refs[id] = bk.refs[i]!;
      term[id] = bk.termRefs[i]!;
      local[id] = bk.localRefs[i]!;
      beLive[id] = 1;
    }
    const tblRefs = new Int32Array(tblCap + 1), tblLive = new Uint8Array(tblCap);
    for (const id of planTables.keys()) tblLive[id] = 1;
    for (const r of recs) if (r.tkey) { const t = tables.get(r.tkey)!.id; tblRefs[t] = (tblRefs[t] ?? 0) + 1; }
    const feLive = new Uint8Array(LB_FE_ID_MAX);
    for (const f of frontends.values()) feLive[f.id] = 1;
    // the plan's frontends, a Map a change inserts into (the chain's own are in shards), with room
    // for the changes after this build, as the id arrays above: filled to V8's capacity (30,000
    // bench Services: 32,768 frontends), the first change's insert grew it, 6-7 ms (util/map-room.ts)
    reserveMapRoom(frontends, changeRoom(recs.length), (i) => `\0${i}`);
    return new Chain(seed, sizing, recs, bySrc, byKey, backendIndex(backends), refs, term, local, { a: beLive }, tables, tblRefs, { a: tblLive }, { a: feLive });
  }
}

interface AddedBackend {
  address: string;
  port: number;
  protocol: Protocol;
  /** AddressKeys sort key */
  ak: string;
  /** 0 until a fresh backend gets its id */
  id: number;
}

interface Added {
  src: NodeFrontend;
  key: string;
  sortKey: string;
  /** canonical order */
  bes: AddedBackend[];
  /** whether bes[j] is terminating / local in this frontend */
  term: boolean[];
  local: boolean[];
  members: AddedBackend[];
  /** the record it replaces (same key), if any */
  old: FeRec | undefined;
}

export function buildIncremental(state: NodeState, prev: Plan, seed: number, sizing: MaglevSizing, consume = false, slotless = false): Plan | undefined {
  const head = headOf(prev);
  const ch = head?.chain;
  if (!head || !ch || ch.version !== head.version || ch.seed !== seed || ch.sizing !== sizing || prev.seed !== seed) return undefined;
  if ((prev.slotless ?? false) !== slotless) return undefined;
  // the array only on the walk: a compiled state builds it on first read (plan/delta.ts lazyState)
  const count = frontendCount(state);
  // beyond this many changed frontends the full build is about as fast and keeps no stale records
  const limit = 64 + (count >> 4);
  const epoch = ++ch.epoch;
  const addedSrc: NodeFrontend[] = [];
  const gone: FeRec[] = [];
  const delta = stateDelta(state, head.state);
  if (delta) {
    // compile's record of what changed since the state prev was built from: no walk over every frontend
    if (delta.added.length > limit || delta.removed.length > limit) return undefined;
    for (const f of delta.added) {
      if (ch.bySrc.has(f)) return undefined;
      addedSrc.push(f);
    }
    for (const f of delta.removed) {
      const r = ch.bySrc.get(f);
      if (!r || r.goneAt === epoch) return undefined;
      r.goneAt = epoch;
      gone.push(r);
    }
    // a state that does not add up (an object listed twice, a stale record) takes the walk's checks
    if (ch.bySrc.size - gone.length + addedSrc.length !== count) return undefined;
    gone.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
  } else {
    const fes = state.frontends;
    let seen = 0;
    for (let k = 0; k < fes.length; k++) {
      const f = fes[k]!;
      const r = ch.bySrc.get(f);
      if (r === undefined) {
        if (addedSrc.push(f) > limit) return undefined;
      } else if (r.seen === epoch) return undefined; // listed twice: the full build names the duplicate
      else {
        r.seen = epoch;
        seen++;
      }
    }
    if (seen !== ch.bySrc.size) {
      for (const r of ch.ordered) {
        if (r.seen === epoch) continue;
        r.goneAt = epoch;
        if (gone.push(r) > limit) return undefined;
      }
    }
  }
  if (!addedSrc.length && !gone.length) {
    // a resync: the same plan, in maps of its own (callers may edit a plan's maps) unless prev's are handed on
    const plan: Plan = consume ? { seed, frontends: prev.frontends, backends: prev.backends, tables: prev.tables, ...(slotless && { slotless }) }
      : { seed, frontends: new Map(prev.frontends), backends: new Map(prev.backends), tables: new Map(prev.tables), ...(slotless && { slotless }) };
    heads.set(plan, { chain: ch, version: ch.version, serial: ++serials, state });
    deltas.set(plan, {
      from: head.serial, frontendKeys: [], removed: [], backendIds: [], tableIds: [],
      ...(consume && { old: { frontends: new Map(), backends: new Map(), tables: new Map() } }),
    });
    return plan;
  }

  // 1. check and key the new frontends, without touching the chain
  const addrKeys = new AddressKeys();
  const freshByKey = new Map<string, AddedBackend>();
  const added: Added[] = [];
  const addedKeys = new Set<string>();
  for (const f of addedSrc) {
    const feAk = addrKeys.get(f.address);
    if (frontendFault(f, feAk) !== undefined) return undefined;
    const key = frontendKey(f);
    const held = ch.byKey.get(key);
    if (addedKeys.has(key) || (held && held.goneAt !== epoch)) return undefined;
    addedKeys.add(key);
    const n = f.backends.length;
    const bes: AddedBackend[] = new Array(n);
    let sorted = true;
    for (let j = 0; j < n; j++) {
      const b = f.backends[j]!;
      const old = findIn(ch.index, b.address, b.port, f.protocol);
      let ab: AddedBackend | undefined;
      if (old) ab = { address: old.address, port: old.port, protocol: old.protocol, ak: addrKeys.get(old.address)!, id: old.id };
      else {
        const bkey = `${b.address}|${b.port}|${f.protocol}`;
        ab = freshByKey.get(bkey);
        if (!ab) {
          const ak = addrKeys.get(b.address);
          if (backendFault(b, ak) !== undefined) return undefined;
          ab = { address: b.address, port: b.port, protocol: f.protocol, ak: ak!, id: 0 };
          freshByKey.set(bkey, ab);
        }
      }
      bes[j] = ab;
      if (j > 0 && sorted && compareAdded(bes[j - 1]!, ab) >= 0) sorted = false;
    }
    let order: number[] | undefined;
    if (!sorted) {
      order = bes.map((_, j) => j).sort((x, y) => compareAdded(bes[x]!, bes[y]!));
      // listed twice (or two spellings of one address): the full build decides
      for (let j = 1; j < n; j++) if (compareAdded(bes[order[j]!]!, bes[order[j - 1]!]!) === 0) return undefined;
    }
    const sb = order ? order.map((j) => bes[j]!) : bes;
    const term: boolean[] = new Array(n), local: boolean[] = new Array(n);
    for (let j = 0; j < n; j++) {
      const b = f.backends[order ? order[j]! : j]!;
      term[j] = !!b.terminating;
      local[j] = !!b.local;
    }
    const members = tableMembers(sb, (j) => term[j]!);
    added.push({
      src: f, key, sortKey: frontendSortKey(f, feAk!), bes: sb, term, local, members,
      old: held,
    });
  }
  added.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
  for (let k = 1; k < added.length; k++) if (added[k - 1]!.sortKey === added[k]!.sortKey) return undefined;
  // the new order: unchanged when every change replaces a frontend under its key
  let replaceOnly = added.length === gone.length;
  for (const a of added) if (!a.old) replaceOnly = false;
  let ordered: FeRec[] | undefined;
  const recOf = new Map<Added, FeRec>();
  for (const a of added) recOf.set(a, { src: a.src, key: a.key, sortKey: a.sortKey, pf: undefined as unknown as PlanFrontend, tkey: '', seen: epoch, goneAt: 0 });
  if (!replaceOnly && consume) {
    // the order is kept by splices (step 7); here only the merge's check, by binary search: an
    // added sort key that a frontend staying in the plan holds (two spellings of one address)
    const o = ch.ordered;
    for (const a of added) {
      const r = o[lowerBound(o, a.sortKey)];
      if (r && r.sortKey === a.sortKey && r.goneAt !== epoch) return undefined;
    }
  } else if (!replaceOnly) {
    // a copy of the maps in the full build's order: the new order in one merge (the copy walks every frontend anyway)
    ordered = [];
    let k = 0;
    for (const r of ch.ordered) {
      if (r.goneAt === epoch) continue;
      while (k < added.length && added[k]!.sortKey <= r.sortKey) {
        if (added[k]!.sortKey === r.sortKey) return undefined;
        ordered.push(recOf.get(added[k++]!)!);
      }
      ordered.push(r);
    }
    while (k < added.length) ordered.push(recOf.get(added[k++]!)!);
  }

  try {
    return advance(ch, head, prev, seed, gone, added, recOf, ordered, freshByKey, consume, state);
  } catch (e) {
    ch.version = -1;
    throw e;
  }
}

/** the first index of o (sorted by sortKey, each once) whose sortKey is not below key */
function lowerBound(o: readonly FeRec[], key: string): number {
  let lo = 0, hi = o.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (o[mid]!.sortKey < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** where r stands in o */
function placeOf(o: readonly FeRec[], r: FeRec): number {
  const k = lowerBound(o, r.sortKey);
  if (o[k] === r) return k;
  // not where its key says: the order was broken somewhere; found by a walk, never misplaced
  const w = o.indexOf(r);
  if (w < 0) throw new Error(`incremental plan: frontend ${r.key} is missing from the chain's order`);
  return w;
}

function compareAdded(a: AddedBackend, b: AddedBackend): number {
  if (a.ak !== b.ak) return a.ak < b.ak ? -1 : 1;
  return a.port - b.port || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0);
}

/** The mutating half of an incremental build; undefined (and the chain dropped) when an id range is full. */
function advance(ch: Chain, head: Head, prev: Plan, seed: number, gone: FeRec[], added: Added[], recOf: Map<Added, FeRec>,
  ordered: FeRec[] | undefined, freshByKey: Map<string, AddedBackend>, consume: boolean, state: NodeState): Plan | undefined {
  const touched = new Set<number>();
  const goneTables = new Set<number>();
  // 2. withdraw the gone frontends' references
  for (const r of gone) {
    const proto = r.src.protocol;
    for (const b of r.src.backends) {
      const id = findIn(ch.index, b.address, b.port, proto)!.id;
      ch.refs[id] = (ch.refs[id] ?? 0) - 1;
      if (b.terminating) ch.term[id] = (ch.term[id] ?? 0) - 1;
      if (b.local) ch.local[id] = (ch.local[id] ?? 0) - 1;
      touched.add(id);
    }
    if (r.tkey) {
      const id = ch.tables.get(r.tkey)!.id;
      if (--ch.tblRefs[id]! === 0) goneTables.add(id);
    }
  }
  // 3. fresh backends take ids in canonical order, then every new reference counts
  const fresh = [...freshByKey.values()].sort(compareAdded);
  for (const ab of fresh) {
    const id = takeId(ch.beLive, ch.beHint, BACKEND_ID_MAX);
    if (id === undefined) {
      ch.version = -1;
      return undefined;
    }
    ab.id = id;
  }
  if (fresh.length) {
    const top = ch.beLive.a.length;
    ch.refs = growI32(ch.refs, top);
    ch.term = growI32(ch.term, top);
    ch.local = growI32(ch.local, top);
  }
  for (const a of added) {
    for (let j = 0; j < a.bes.length; j++) {
      const id = a.bes[j]!.id;
      ch.refs[id] = (ch.refs[id] ?? 0) + 1;
      if (a.term[j]) ch.term[id] = (ch.term[id] ?? 0) + 1;
      if (a.local[j]) ch.local[id] = (ch.local[id] ?? 0) + 1;
      touched.add(id);
    }
  }
  const beIds = [...touched].sort((x, y) => x - y);
  const changedBe = new Map<number, PlanBackend | undefined>();
  for (const id of beIds) {
    const old = prev.backends.get(id);
    if (ch.refs[id] === 0) {
      changedBe.set(id, undefined);
      continue;
    }
    const terminating = ch.term[id]! > 0, local = ch.local[id]! > 0;
    if (old && old.terminating === terminating && old.local === local) continue;
    if (old) changedBe.set(id, { id, address: old.address, port: old.port, protocol: old.protocol, terminating, local });
    else {
      const ab = fresh.find((x) => x.id === id)!;
      changedBe.set(id, { id, address: ab.address, port: ab.port, protocol: ab.protocol, terminating, local });
    }
  }

  // 4. tables, in frontend order: a member set already tabled (by any frontend) keeps its table
  const newTables: PlanTable[] = [];
  const builds: { table: PlanTable; members: AddedBackend[] }[] = [];
  for (const a of added) {
    const rec = recOf.get(a)!;
    if (!a.members.length) continue;
    const m = maglevSize(a.members.length, ch.sizing);
    const ids = a.members.map((b) => b.id);
    const tkey = tableKey(ids, m);
    let t = ch.tables.get(tkey);
    if (!t) {
      const id = takeId(ch.tblLive, ch.tblHint, ID_MAX);
      if (id === undefined) {
        ch.version = -1;
        return undefined;
      }
      ch.tblRefs = growI32(ch.tblRefs, ch.tblLive.a.length);
      t = { id, m, members: ids, slots: new Uint32Array(0) };
      ch.tables.set(tkey, t);
      newTables.push(t);
      builds.push({ table: t, members: a.members });
    }
    if (ch.tblRefs[t.id]!++ === 0) goneTables.delete(t.id);
    rec.tkey = tkey;
  }
  const builder = new MaglevBuilder();
  // members[j].id is table.members[j]
  if (!prev.slotless) for (const { table, members } of builds) table.slots = maglevSlots(builder, members, seed, table.m);

  // 5. frontend ids (a replaced key keeps its id), then entries (an affinity group may name an added key)
  const changedKeys: string[] = [];
  const addedIds = new Map<string, number>();
  for (const a of added) {
    let id = a.old?.pf.id;
    if (id === undefined) {
      id = takeId(ch.feLive, ch.feHint, LB_FE_ID_MAX - 1);
      if (id === undefined) {
        ch.version = -1;
        return undefined;
      }
    }
    addedIds.set(a.key, id);
  }
  // a group held by a frontend of an unchanged Service: compile replaces a Service's frontends
  // together, so a group key that is gone is only ever named by frontends replaced in this build
  const groupId = (k: string): number | undefined => {
    const held = addedIds.get(k);
    if (held !== undefined) return held;
    const r = ch.byKey.get(k);
    return r && r.seen === ch.epoch ? r.pf.id : undefined;
  };
  for (const a of added) {
    const id = addedIds.get(a.key)!;
    const f = a.src;
    const rec = recOf.get(a)!;
    const table = rec.tkey ? ch.tables.get(rec.tkey) : undefined;
    const fe = planFrontend(id, f, a.bes.map((b) => b.id),
      a.term.some((x) => x) ? a.bes.filter((_, j) => a.term[j]).map((b) => b.id) : NONE, table, affinityGroupOf(f, id, groupId));
    const old = a.old?.pf;
    rec.pf = old && samePlanFrontend(old, fe) ? old : fe;
    if (rec.pf !== old) changedKeys.push(a.key);
  }
  const removed: FeRec[] = [];
  for (const r of gone) if (!addedKeyOf(added, r)) removed.push(r);

  // 6. the new maps, in the full build's order; or prev's maps changed in place, keeping what they held
  const changedT = new Map<number, PlanTable | undefined>();
  for (const id of goneTables) changedT.set(id, undefined);
  for (const t of newTables) changedT.set(t.id, t);
  let frontends: Map<string, PlanFrontend>, backends: Map<number, PlanBackend>, tables: Map<number, PlanTable>;
  let old: PrevEntries | undefined;
  if (consume) {
    old = { frontends: new Map(), backends: new Map(), tables: new Map() };
    frontends = prev.frontends;
    for (const r of removed) {
      old.frontends.set(r.key, frontends.get(r.key));
      frontends.delete(r.key);
    }
    for (const a of added) {
      if (!old.frontends.has(a.key)) old.frontends.set(a.key, frontends.get(a.key));
      frontends.set(a.key, recOf.get(a)!.pf);
    }
    backends = inPlace(prev.backends, changedBe, old.backends);
    tables = inPlace(prev.tables, changedT, old.tables);
  } else {
    if (!ordered) {
      frontends = new Map(prev.frontends);
      for (const a of added) frontends.set(a.key, recOf.get(a)!.pf);
    } else {
      frontends = new Map();
      for (const r of ordered) frontends.set(r.key, r.pf);
    }
    backends = withChanges(prev.backends, changedBe);
    tables = withChanges(prev.tables, changedT);
  }

  const old_ = old;
  // 7. the chain follows: records, index, freed ids (free from the next build on)
  for (const r of gone) {
    ch.bySrc.delete(r.src);
    if (ch.byKey.get(r.key) === r) ch.byKey.delete(r.key);
  }
  for (const a of added) {
    const rec = recOf.get(a)!;
    ch.bySrc.set(a.src, rec);
    ch.byKey.set(a.key, rec);
  }
  if (ordered) ch.ordered = ordered;
  else if (added.length === gone.length && added.every((a) => a.old)) {
    // each record in its predecessor's place, found by binary search: a walk over every frontend
    // was most of a one-change plan at 30,000 Services (issue 10: in proportion to the change)
    const o = ch.ordered;
    for (const a of added) o[placeOf(o, a.old!)] = recOf.get(a)!;
  } else {
    const o = ch.ordered;
    for (const r of gone) o.splice(placeOf(o, r), 1);
    // added is in sort order, and no record left holds an added sort key (checked in buildIncremental)
    for (const a of added) o.splice(lowerBound(o, a.sortKey), 0, recOf.get(a)!);
  }
  for (const [id, b] of changedBe) {
    const old = (old_ ? old_.backends : prev.backends).get(id);
    if (!b) {
      indexRemove(ch.index, old!);
      ch.beLive.a[id] = 0;
      if (id < ch.beHint.h) ch.beHint.h = id;
    } else if (!old) indexAdd(ch.index, b);
  }
  for (const id of goneTables) {
    const t = (old_ ? old_.tables : prev.tables).get(id)!;
    ch.tables.delete(tableKey(t.members, t.m));
    ch.tblLive.a[id] = 0;
    if (id < ch.tblHint.h) ch.tblHint.h = id;
  }
  for (const r of removed) {
    ch.feLive.a[r.pf.id] = 0;
    if (r.pf.id < ch.feHint.h) ch.feHint.h = r.pf.id;
  }
  ch.version++;

  const plan: Plan = { seed, frontends, backends, tables, ...(prev.slotless && { slotless: true as const }) };
  heads.set(plan, { chain: ch, version: ch.version, serial: ++serials, state });
  deltas.set(plan, {
    from: head.serial,
    frontendKeys: changedKeys,
    removed: removed.map((r) => r.pf),
    backendIds: [...changedBe.keys()],
    tableIds: [...changedT.keys()].sort((x, y) => x - y),
    ...(old && { old }),
  });
  return plan;
}

/** Applies changes to m in place, recording m's entries before them in old. */
function inPlace<T>(m: Map<number, T>, changes: Map<number, T | undefined>, old: Map<number, T | undefined>): Map<number, T> {
  for (const [id, v] of changes) {
    old.set(id, m.get(id));
    if (v === undefined) m.delete(id);
    else m.set(id, v);
  }
  return m;
}

/**
 * Puts back what a build with consumePrev changed in prev's maps, so prev is again the plan it was
 * (its maps' order aside): for a caller whose writes of next failed. The chain is dropped, so the
 * next build from prev is a full one.
 */
export function undoPlan(next: Plan): void {
  const d = deltas.get(next);
  if (!d?.old) return;
  const put = <K, V>(m: Map<K, V>, old: Map<K, V | undefined>): void => {
    for (const [k, v] of old) {
      if (v === undefined) m.delete(k);
      else m.set(k, v);
    }
  };
  put(next.frontends, d.old.frontends);
  put(next.backends, d.old.backends);
  put(next.tables, d.old.tables);
  const head = heads.get(next);
  if (head?.chain) head.chain.version = -1;
  deltas.delete(next);
}

function addedKeyOf(added: Added[], r: FeRec): boolean {
  for (const a of added) if (a.old === r) return true;
  return false;
}

/**
 * A copy of an id-ordered map with entries replaced, removed (undefined) or added, still in id
 * order: one pass, since Map keeps insertion order and an id may land between existing ones. This
 * copy (~100,000 backends at 10,000 Services) is most of what an incremental build costs; forEach,
 * which makes no entry arrays, is the fastest way through a Map.
 */
function withChanges<T>(m: Map<number, T>, changes: Map<number, T | undefined>): Map<number, T> {
  const ids = [...changes.keys()].sort((x, y) => x - y);
  const out = new Map<number, T>();
  let k = 0;
  m.forEach((v, id) => {
    while (k < ids.length && ids[k]! < id) {
      const c = changes.get(ids[k]!);
      if (c !== undefined) out.set(ids[k]!, c);
      k++;
    }
    if (k < ids.length && ids[k] === id) {
      const c = changes.get(id);
      if (c !== undefined) out.set(id, c);
      k++;
    } else out.set(id, v);
  });
  for (; k < ids.length; k++) {
    const c = changes.get(ids[k]!);
    if (c !== undefined) out.set(ids[k]!, c);
  }
  return out;
}
