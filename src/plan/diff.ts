// prev plan -> next plan as ordered writes (types.ts PlanOp). Every prefix of the returned list leaves
// the kernel consistent: no frontend names a missing table, no table or slot names a missing backend,
// and a frontend's backend_count never exceeds the slots written for it. Phases:
//   1 upsertBackend      new backends and changed flags (upsertBackends: all of a first sync's, one op)
//   2 createTable        new tables, built aside (a changed member set always has a new table id)
//   3 upsertSlots        the full list of every new frontend or frontend whose list changed
//   4 upsertRevNat       new frontends
//   5 setSourceRanges    additions only: a frontend gaining ranges must find them when its flag turns on
//   6 upsertFrontend     new and changed entries: the switch to the new table in one write
//   7 deleteSlots        tails of lists that shrank (backend_count already lowered)
//     setSourceRanges    removals of kept frontends (their flag already off, or the new set in place)
//   8 deleteFrontend     then its slots, rev-NAT and ranges
//   9 deleteTable        tables no frontend uses any more
//  10 deleteBackend      backends no table or slot names any more
// Within a phase, frontends go in canonical order and tables and backends by id, so the output is
// deterministic. Nothing unchanged produces an op.
//
// diff relies on what buildPlan guarantees: an id present in both plans means the same object (same
// backendKey, same frontendKey, same table members and M). It checks this and throws rather than emit
// writes that would briefly send traffic to the wrong object.
//
// When buildPlan built next incrementally from prev, it knows which frontends, backends and tables
// it touched (plan.ts PlanDelta): diff walks those only, with the same checks on them, and gives the
// ops the full walk would (everything else is the same object in both plans).
import { KbpError } from '../util/errors.js';
import { SideTable } from '../util/side-table.js';
import { planDelta, type PlanDelta } from './plan.js';
import { IdMap } from './id-map.js';
import { heldSlots, slotsKnown } from './slot-source.js';
import { frontendKey, type Plan, type PlanBackend, type PlanFrontend, type PlanOp, type PlanTable } from './types.js';
import { sameList, samePolicy } from './frontend.js';

function sameSlots(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The fields the kernel's lb_frontends entry (or the agent's record of it) carries. */
function sameEntry(a: PlanFrontend, b: PlanFrontend): boolean {
  return a.id === b.id && a.type === b.type && a.tableId === b.tableId && a.maglevM === b.maglevM &&
    a.backendIds.length === b.backendIds.length && a.affinityTimeout === b.affinityTimeout &&
    a.affinityGroup === b.affinityGroup && a.snatRemote === b.snatRemote && samePolicy(a, b) && (a.sourceRanges.length > 0) === (b.sourceRanges.length > 0) &&
    a.service === b.service && a.portName === b.portName && sameList(a.terminatingIds, b.terminatingIds);
}

/** The map's values by id; buildPlan inserts them in id order, so this is usually one pass, no sort. */
function byId<T extends { id: number }>(m: ReadonlyMap<number, T>): Iterable<T> {
  if (m instanceof IdMap && m.ascending) return m.values();
  let last = -Infinity;
  for (const k of m.keys()) {
    if (k < last) return [...m.values()].sort((x, y) => x.id - y.id);
    last = k;
  }
  return m.values();
}

/** byId's walk by a callback: no iterator result a step, in whatever tier the caller runs */
function eachById<T extends { id: number }>(m: ReadonlyMap<number, T>, fn: (v: T) => void): void {
  if (m instanceof IdMap && m.ascending) m.forEach(fn);
  else for (const v of byId(m)) fn(v);
}

function internal(msg: string): KbpError {
  return new KbpError('KBP_ERR_INTERNAL', `diff: ${msg}`);
}

function checkBackend(a: PlanBackend, b: PlanBackend): void {
  if (a.address !== b.address || a.port !== b.port || a.protocol !== b.protocol) {
    throw internal(`backend id ${b.id} is ${a.address}:${a.port}/${a.protocol} before and ${b.address}:${b.port}/${b.protocol} after; an id must not change meaning within one sync`);
  }
}

/**
 * Whether the kernel's copy of a table with this id must be written. A read-back table may have no
 * slots (length 0): its members and M are what the kernel holds, and the content follows from them.
 */
function tableNeedsWrite(prev: Plan, a: PlanTable, next: Plan, b: PlanTable): boolean {
  if (a.m !== b.m || !sameList(a.members, b.members)) {
    throw internal(`table id ${b.id} changes from M=${a.m} members [${a.members}] to M=${b.m} members [${b.members}]; a changed table must get a new id`);
  }
  if (prev.seed !== next.seed) return true;
  // a table still to be filled (slot-source.ts) follows from its members and M too: not computed here
  const x = heldSlots(a), y = heldSlots(b);
  if (x.length === 0 || y.length === 0) return false;
  return !sameSlots(x, y);
}

export function diffPlans(prev: Plan | undefined, next: Plan): PlanOp[] {
  if (!prev || (prev.frontends.size === 0 && prev.backends.size === 0 && prev.tables.size === 0 && !planDelta(prev, next))) return allNew(next);
  return diffByWalk(prev, next);
}

/**
 * diff against nothing (a first sync into empty maps): every backend, table and frontend is new, so
 * the ops follow from next alone, in the order and with the checks the walk gives them (diffByWalk,
 * test/unit/diff.test.ts compares the two), without the walk's pairs, a Set of source ranges per
 * frontend and a lookup of each entry in an empty plan.
 */
function allNew(next: Plan): PlanOp[] {
  // Indexed loops over arrays (forEach here), not for-of: this runs once a sync over ~1.4M ops at
  // 100,000 Services, mostly in code a tier below TurboFan (entered by on-stack replacement), where
  // every step of a for-of allocated its iterator result (~140 MiB a first sync, each scavenge's work)
  const fes: PlanFrontend[] = [];
  // the keys by id check that no id is used twice, and are the first incremental diff's (feIdKeys)
  const keys: (string | undefined)[] = [];
  const hasBackend = idLookup(next.backends);
  let n = (next.backends.size ? 1 : 0) + next.tables.size;
  next.frontends.forEach((f, key) => {
    if (!(Number.isInteger(f.id) && f.id >= 1) || keys[f.id] !== undefined) throw internal(`frontend ${key} has id ${f.id}, which is invalid or used twice`);
    keys[f.id] = key;
    fes.push(f);
    if (f.tableId !== 0 && !next.tables.has(f.tableId)) throw internal(`frontend ${key} names table ${f.tableId}, which the plan lacks`);
    const b = f.backendIds;
    for (let j = 0; j < b.length; j++) if (!hasBackend(b[j]!)) throw internal(`frontend ${key} names backend ${b[j]}, which the plan lacks`);
    n += 2 + (b.length ? 1 : 0) + (f.sourceRanges.length ? 1 : 0);
  });
  // sized once: grown by push, the list of 1.4M was copied ~20 times
  const ops = new Array<PlanOp>(n);
  let k = 0;
  // the backends in one op: an array of references, not an op object each (~1M at 100,000 Services)
  if (next.backends.size) {
    const backends = new Array<PlanBackend>(next.backends.size);
    let j = 0;
    eachById(next.backends, (b) => { backends[j++] = b; });
    ops[k++] = { op: 'upsertBackends', backends };
  }
  eachById(next.tables, (t) => {
    const m = t.members;
    for (let j = 0; j < m.length; j++) if (!hasBackend(m[j]!)) throw internal(`table ${t.id} names backend ${m[j]}, which the plan lacks`);
    if (!next.slotless && !slotsKnown(t)) throw internal(`table ${t.id} must be written but has ${t.slots.length} of its ${t.m} slots (fillMissingSlots)`);
    ops[k++] = { op: 'createTable', table: t };
  });
  for (let i = 0; i < fes.length; i++) {
    const f = fes[i]!;
    if (f.backendIds.length) ops[k++] = { op: 'upsertSlots', frontendId: f.id, backendIds: f.backendIds };
  }
  for (let i = 0; i < fes.length; i++) {
    const f = fes[i]!;
    ops[k++] = { op: 'upsertRevNat', frontendId: f.id, address: f.address, port: f.port };
  }
  for (let i = 0; i < fes.length; i++) {
    const f = fes[i]!;
    if (f.sourceRanges.length) ops[k++] = { op: 'setSourceRanges', frontendId: f.id, add: f.sourceRanges.slice(), remove: [] };
  }
  for (let i = 0; i < fes.length; i++) ops[k++] = { op: 'upsertFrontend', frontend: fes[i]! };
  feIdKeys.set(next, keys);
  return ops;
}

/**
 * Membership of m's keys. Checking ~210,000 ids (every frontend's backends and every table's members
 * at 10,000 Services) against a Map of 100,000 backends cost ~40 ms (a few cache misses each); ids
 * are dense in a plan buildPlan made, so a bit per id (12 KiB) answers from cache. Sparse ids (a
 * kernel read-back may hold any) ask the Map.
 */
function idLookup(m: ReadonlyMap<number, unknown>): (id: number) => boolean {
  // an array by id already (a full build's plan: a million backends at 100,000 Services)
  if (m instanceof IdMap && m.ascending) return (id) => m.has(id);
  let top = 0;
  for (const id of m.keys()) {
    if (!(Number.isInteger(id) && id >= 0)) return (id) => m.has(id);
    if (id > top) top = id;
  }
  if (top > 4 * m.size + 4096) return (id) => m.has(id);
  const bits = new Uint8Array((top >>> 3) + 1);
  for (const id of m.keys()) bits[id >>> 3]! |= 1 << (id & 7);
  return (id) => id >= 0 && id <= top && Number.isInteger(id) && (bits[id >>> 3]! & (1 << (id & 7))) !== 0;
}

/** diffPlans by the walk over both plans, also when prev is empty (for tests: diffPlans takes allNew then) */
export function diffByWalk(prev: Plan | undefined, next: Plan): PlanOp[] {
  const delta = prev ? planDelta(prev, next) : undefined;
  let before: Plan = prev ?? { seed: next.seed, frontends: new Map(), backends: new Map(), tables: new Map() };
  // next took prev's maps (buildPlan consumePrev): prev's entries are next's but where the build changed them
  if (delta?.old) {
    before = {
      seed: before.seed, frontends: overlay(next.frontends, delta.old.frontends),
      backends: overlay(next.backends, delta.old.backends), tables: overlay(next.tables, delta.old.tables),
    };
  }
  const ops: PlanOp[] = [];

  // frontends that are new or differ in anything (buildPlan hands on unchanged objects), and those gone
  const changed: [PlanFrontend | undefined, PlanFrontend][] = [];
  let gone: Iterable<PlanFrontend>;
  let idKeys: (string | undefined)[] | undefined;
  if (delta) {
    idKeys = checkDelta(prev!, before, next, delta);
    for (const k of delta.frontendKeys) changed.push([before.frontends.get(k), next.frontends.get(k)!]);
    gone = delta.removed;
  } else {
    checkFrontends(before, next);
    for (const [k, f] of next.frontends) {
      const a = before.frontends.get(k);
      if (a !== f) changed.push([a, f]);
    }
    gone = goneFrontends(before, next);
  }
  const nextBackends = delta ? delta.backendIds.flatMap((id) => next.backends.get(id) ?? []) : byId(next.backends);
  const nextTables = delta ? delta.tableIds.flatMap((id) => next.tables.get(id) ?? []) : byId(next.tables);
  const prevTables = delta ? delta.tableIds.flatMap((id) => before.tables.get(id) ?? []) : byId(before.tables);
  const prevBackends = delta ? delta.backendIds.flatMap((id) => before.backends.get(id) ?? []) : byId(before.backends);

  // 1 (against an empty plan, as allNew: every backend new, in one upsertBackends op)
  const fresh: PlanBackend[] | undefined = before.backends.size === 0 && before.frontends.size === 0 && before.tables.size === 0 ? [] : undefined;
  for (const b of nextBackends) {
    const a = before.backends.get(b.id);
    if (a === b) continue; // buildPlan hands on unchanged objects
    if (a) checkBackend(a, b);
    if (fresh) fresh.push(b);
    else if (!a || a.terminating !== b.terminating || a.local !== b.local) ops.push({ op: 'upsertBackend', backend: b });
  }
  if (fresh?.length) ops.push({ op: 'upsertBackends', backends: fresh });
  // 2
  for (const t of nextTables) {
    for (const id of t.members) if (!next.backends.has(id)) throw internal(`table ${t.id} names backend ${id}, which the plan lacks`);
    const a = before.tables.get(t.id);
    if (a && !tableNeedsWrite(before, a, next, t)) continue;
    if (!next.slotless && !slotsKnown(t)) throw internal(`table ${t.id} must be written but has ${t.slots.length} of its ${t.m} slots (fillMissingSlots)`);
    ops.push({ op: 'createTable', table: t });
  }
  // 3
  for (const [a, f] of changed) {
    if (f.backendIds.length && (!a || !sameList(a.backendIds, f.backendIds))) {
      ops.push({ op: 'upsertSlots', frontendId: f.id, backendIds: f.backendIds });
    }
  }
  // 4
  for (const [a, f] of changed) if (!a) ops.push({ op: 'upsertRevNat', frontendId: f.id, address: f.address, port: f.port });
  // 5
  for (const [a, f] of changed) {
    const old = new Set(a?.sourceRanges ?? []);
    const add = f.sourceRanges.filter((r) => !old.has(r));
    if (add.length) ops.push({ op: 'setSourceRanges', frontendId: f.id, add, remove: [] });
  }
  // 6
  for (const [a, f] of changed) if (!a || !sameEntry(a, f)) ops.push({ op: 'upsertFrontend', frontend: f });
  // 7
  for (const [a, f] of changed) {
    if (a && a.backendIds.length > f.backendIds.length) {
      ops.push({ op: 'deleteSlots', frontendId: f.id, fromSlot: f.backendIds.length, toSlot: a.backendIds.length });
    }
    if (a) {
      const now = new Set(f.sourceRanges);
      const remove = a.sourceRanges.filter((r) => !now.has(r));
      if (remove.length) ops.push({ op: 'setSourceRanges', frontendId: f.id, add: [], remove });
    }
  }
  // 8
  for (const a of gone) {
    ops.push({ op: 'deleteFrontend', frontend: a });
    if (a.backendIds.length) ops.push({ op: 'deleteSlots', frontendId: a.id, fromSlot: 0, toSlot: a.backendIds.length });
    ops.push({ op: 'deleteRevNat', frontendId: a.id });
    if (a.sourceRanges.length) ops.push({ op: 'setSourceRanges', frontendId: a.id, add: [], remove: a.sourceRanges });
  }
  // 9
  for (const t of prevTables) {
    if (!next.tables.has(t.id)) ops.push({ op: 'deleteTable', tableId: t.id });
  }
  // 10
  for (const b of prevBackends) {
    if (!next.backends.has(b.id)) ops.push({ op: 'deleteBackend', backendId: b.id });
  }
  if (delta) carryIds(prev!, next, delta, idKeys);
  return ops;
}

function goneFrontends(before: Plan, next: Plan): PlanFrontend[] {
  const out: PlanFrontend[] = [];
  for (const [k, a] of before.frontends) if (!next.frontends.has(k)) out.push(a);
  return out;
}

/** ids of next frontends must not be held by a different frontend of prev that goes away */
function checkFrontends(before: Plan, next: Plan): void {
  const prevFeById = new Map<number, string>();
  for (const [k, f] of before.frontends) prevFeById.set(f.id, k);
  const nextFeIds = new Set<number>();
  for (const [k, f] of next.frontends) {
    if (f.id < 1 || nextFeIds.has(f.id)) throw internal(`frontend ${k} has id ${f.id}, which is invalid or used twice`);
    nextFeIds.add(f.id);
    const holder = prevFeById.get(f.id);
    if (holder !== undefined && holder !== k) throw internal(`frontend id ${f.id} belongs to ${holder} before and ${k} after`);
    checkChanged(before, next, k, f);
  }
}

function checkChanged(before: Plan, next: Plan, k: string, f: PlanFrontend): void {
  const old = before.frontends.get(k);
  if (old === f) return; // unchanged, checked when it was new
  if (old && old.id !== f.id) throw internal(`frontend ${k} changes id from ${old.id} to ${f.id}`);
  if (f.tableId !== 0 && !next.tables.has(f.tableId)) throw internal(`frontend ${k} names table ${f.tableId}, which the plan lacks`);
  for (const id of f.backendIds) if (!next.backends.has(id)) throw internal(`frontend ${k} names backend ${id}, which the plan lacks`);
}

/**
 * Each plan's frontend keys by id, for checkDelta: made once from a plan (a walk over every
 * frontend), then handed from each plan to the next an incremental diff checks, with the delta's
 * frontends set and deleted. Built anew for every Service created, the walk was most of a Service
 * creation's time (~5 ms at 10,000 Services, ~10 at 30,000: bench/churn.ts KBP_CHURN_KIND=services).
 * The array moves (the plan it came from loses it), so no two plans share one as it changes; a
 * plan without one (an undone build, a read-back) gets it by the walk.
 */
const feIdKeys = new SideTable<Plan, (string | undefined)[]>('frontend keys by id');

/** before's frontend keys by id: carried from prev, else made from next's maps and the delta's old entries */
function keysById(prev: Plan, before: Plan, next: Plan, d: PlanDelta): (string | undefined)[] {
  const carried = feIdKeys.get(prev);
  if (carried) return carried;
  const keys: (string | undefined)[] = [];
  // with old entries, before's frontends are a view over next's with them laid over (diffByWalk):
  // a walk of the two Maps, as the view's generator is several times slower per entry
  const old = d.old?.frontends;
  (old ? next.frontends : before.frontends).forEach((f, k) => { if (!old?.has(k)) keys[f.id] = k; });
  old?.forEach((f, k) => { if (f) keys[f.id] = k; });
  return keys;
}

/**
 * The full walk's frontend checks for what an incremental build touched: a frontend it did not
 * touch is the same object in both plans, so only a touched one can clash. A new frontend's id must
 * not be held in prev by a frontend that stays (nor by one that goes: ids wait a sync). Returns
 * before's keys by id when it needed them (for carryIds).
 */
function checkDelta(prev: Plan, before: Plan, next: Plan, d: PlanDelta): (string | undefined)[] | undefined {
  const ids = new Set<number>();
  for (const a of d.removed) ids.add(a.id);
  let byId: (string | undefined)[] | undefined;
  for (const k of d.frontendKeys) {
    const f = next.frontends.get(k);
    if (!f) throw internal(`frontend ${k} is in the delta but not in the plan`);
    const old = before.frontends.get(k);
    if (f.id < 1 || ids.has(f.id)) throw internal(`frontend ${k} has id ${f.id}, which is invalid or used twice`);
    ids.add(f.id);
    checkChanged(before, next, k, f);
    if (!old) {
      byId ??= keysById(prev, before, next, d);
      const holder = byId[f.id];
      if (holder !== undefined) throw internal(`frontend id ${f.id} belongs to ${holder} before and ${k} after`);
    }
  }
  return byId;
}

/** After a diff that passed its checks: prev's keys by id, if made, follow to next with the delta's changes. */
function carryIds(prev: Plan, next: Plan, d: PlanDelta, made: (string | undefined)[] | undefined): void {
  const byId = made ?? feIdKeys.get(prev);
  if (!byId) return;
  feIdKeys.delete(prev);
  for (const a of d.removed) if (byId[a.id] === frontendKey(a)) byId[a.id] = undefined;
  for (const k of d.frontendKeys) byId[next.frontends.get(k)!.id] = k;
  feIdKeys.set(next, byId);
}

/**
 * base as it was before the entries in old were changed (undefined: absent), for diff's reads: get,
 * has, and iteration. Typed as a Map for the Plan it stands in; nothing writes through it.
 */
function overlay<K, V>(base: Map<K, V>, old: Map<K, V | undefined>): Map<K, V> {
  if (!old.size) return base;
  const get = (k: K): V | undefined => (old.has(k) ? old.get(k) : base.get(k));
  function* entries(): IterableIterator<[K, V]> {
    for (const [k, v] of base) if (!old.has(k)) yield [k, v];
    for (const [k, v] of old) if (v !== undefined) yield [k, v];
  }
  let size = base.size;
  for (const [k, v] of old) size += (v !== undefined ? 1 : 0) - (base.has(k) ? 1 : 0);
  const view = {
    get, has: (k: K) => get(k) !== undefined, size,
    entries, [Symbol.iterator]: entries,
    keys: function* () { for (const [k] of entries()) yield k; },
    values: function* () { for (const [, v] of entries()) yield v; },
    forEach: (fn: (v: V, k: K) => void) => { for (const [k, v] of entries()) fn(v, k); },
  };
  return view as unknown as Map<K, V>;
}
