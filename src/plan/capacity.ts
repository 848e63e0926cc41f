// Keeps a node's state within what the data plane can hold. When the maps would overflow, whole
// Services are left out and named, instead of a failed write that would hold back every other
// Service's changes. Services the data plane already holds keep their place: the ones left out are
// newcomers (the last by namespace/name, so every sync drops the same ones), never a Service that
// serves traffic now and happens to sort after a new one (issue 13).
import type { NodeState } from '../model/compiled.js';
import { frontendCount, lazyState, recordStateDelta, stateDelta } from './delta.js';
import { LB_MAGLEV_IDS_PER_ELEM } from './limits.js';
import { maglevSize } from './maglev.js';
import { strictV4 } from '../util/ip.js';
import { addressPortHash, ShardedMap, stringHash } from '../util/sharded-map.js';
import { SideTable } from '../util/side-table.js';

export interface Capacity {
  frontends: number;
  backends: number;
  /** backend slots of all frontends together */
  slots: number;
  /** frontend ids are 1..frontendIds-1 */
  frontendIds: number;
  sourceRanges: number;
  /** Maglev slots of all tables together (lb_maglev_slots); a table per distinct member set */
  maglevSlots: number;
}

export const UNLIMITED: Capacity = {
  frontends: Infinity, backends: Infinity, slots: Infinity, frontendIds: Infinity, sourceRanges: Infinity, maglevSlots: Infinity,
};

/**
 * The Maglev table a frontend needs, as plan.ts builds it (members: the serving backends, else the
 * terminating ones; frontends with the same members share it), and the slots its region takes at
 * pow2 sizing, the larger of the two (a bound: the plan may share more).
 */
function tableOf(f: NodeState['frontends'][number]): { key: string; slots: number } | undefined {
  const bs = f.backends;
  if (!bs.length) return undefined;
  // no copy when none is terminating (nearly every frontend: a first fit makes ~100,000 keys)
  let members = bs;
  for (let i = 0; i < bs.length; i++) {
    if (!bs[i]!.terminating) continue;
    members = bs.filter((b) => !b.terminating);
    if (!members.length) members = bs;
    break;
  }
  return { key: tableKey(f.protocol, members), slots: tableSlots(members.length) };
}

/** the lb_maglev_slots a table of n members takes: its power-of-two M, rounded up to whole array elements */
function tableSlots(n: number): number {
  return Math.ceil(maglevSize(n, 'pow2') / LB_MAGLEV_IDS_PER_ELEM) * LB_MAGLEV_IDS_PER_ELEM;
}

// Keys of what is counted, compact: at 100,000 Services the tracker holds a million backends and
// 100,000 tables. A text key per backend (`address|port|protocol`, a few concatenated strings) cost
// ~170 bytes, a table's joined member list ~220; a dotted-quad backend is a number instead (address,
// port and protocol packed into 50 bits) and a table of such members a string of three UTF-16 units
// per member. Anything else (IPv6, an address not in canonical form, an odd port) keeps the text key,
// whose first character tells the two apart.

const PROTO_CODE: Readonly<Record<string, number>> = { TCP: 0, UDP: 1, SCTP: 2 };

const isPort = (p: number): boolean => Number.isInteger(p) && p >= 0 && p <= 65535;

/** One backend of a protocol: a number when it packs exactly, else its text. */
export function backendCountKey(address: string, port: number, protocol: string): number | string {
  const ip = strictV4(address);
  const proto = PROTO_CODE[protocol];
  if (ip >= 0 && isPort(port) && proto !== undefined) return ip * 262144 + port * 4 + proto;
  return `${address}|${port}|${protocol}`;
}

/** tableKey's scratch, reused: the members' values and the key's UTF-16 units */
let keyNums = new Float64Array(64);
const keyUnits: number[] = [];

/** A table's protocol and member set (order-free), exact: equal keys, equal sets. */
export function tableKey(protocol: string, members: readonly { address: string; port: number }[]): string {
  const n = members.length, code = PROTO_CODE[protocol];
  if (code !== undefined) {
    if (keyNums.length < n) keyNums = new Float64Array(2 * n);
    // the values in a reused typed array, sorted only when out of order (compile lists members in
    // canonical order), the units in a reused array: no array, closure or sort per key (a first fit
    // made ~100,000 of them at 100,000 Services, ~0.2 s)
    const nums = keyNums;
    let sorted = true, i = 0;
    for (; i < n; i++) {
      const m = members[i]!, ip = strictV4(m.address);
      if (ip < 0 || !isPort(m.port)) break;
      const x = ip * 65536 + m.port;
      if (i > 0 && x < nums[i - 1]!) sorted = false;
      nums[i] = x;
    }
    if (i === n) {
      if (!sorted) nums.subarray(0, n).sort();
      // \u0001, the protocol's code, then per member its address (two units) and port
      const units = keyUnits;
      units.length = 0;
      units.push(1, code);
      let out = '';
      for (let k = 0; k < n; k++) {
        const x = nums[k]!, ip = Math.floor(x / 65536);
        units.push(ip >>> 16, ip & 0xffff, x % 65536);
        // in pieces: an argument list has a limit
        if (units.length >= 3000) {
          out += String.fromCharCode.apply(null, units);
          units.length = 0;
        }
      }
      return out + String.fromCharCode.apply(null, units);
    }
  }
  return `\u0002${protocol}|${members.map((b) => `${b.address}|${b.port}`).sort().join(',')}`;
}

/**
 * Reference counts by backendCountKey: the numbers in an open-addressing table of typed arrays
 * (12 bytes a slot, at most 3/4 full), the rest in a Map. A count of 0 marks a free slot; a removal
 * shifts later entries of its run back (no tombstones), so a long-lived tracker stays compact.
 */
export class KeyCounts {
  #keys = new Float64Array(16);
  #counts = new Uint32Array(16);
  #used = 0;
  readonly #text = new Map<string, number>();

  get size(): number {
    return this.#used + this.#text.size;
  }

  clear(): void {
    this.#keys = new Float64Array(16);
    this.#counts = new Uint32Array(16);
    this.#used = 0;
    this.#text.clear();
  }

  /** whether key is counted */
  has(key: number | string): boolean {
    if (typeof key === 'string') return this.#text.has(key);
    const keys = this.#keys, counts = this.#counts, mask = keys.length - 1;
    let i = slotOf(key, mask);
    while (counts[i] !== 0 && keys[i] !== key) i = (i + 1) & mask;
    return counts[i] !== 0;
  }

  /** adds sign to key's count; a count that reaches 0 is removed */
  add(key: number | string, sign: 1 | -1): void {
    if (typeof key === 'string') {
      const n = (this.#text.get(key) ?? 0) + sign;
      if (n <= 0) this.#text.delete(key);
      else this.#text.set(key, n);
      return;
    }
    const keys = this.#keys, counts = this.#counts, mask = keys.length - 1;
    let i = slotOf(key, mask);
    while (counts[i] !== 0 && keys[i] !== key) i = (i + 1) & mask;
    if (counts[i] !== 0) {
      if (sign > 0) counts[i]!++;
      else if (--counts[i]! === 0) this.#remove(i);
      return;
    }
    if (sign < 0) return;
    keys[i] = key;
    counts[i] = 1;
    if (++this.#used * 4 > keys.length * 3) this.#grow();
  }

  #remove(hole: number): void {
    const keys = this.#keys, counts = this.#counts, mask = keys.length - 1;
    this.#used--;
    // backward shift: move up every later entry of the run whose home is not between the hole and it
    for (let j = (hole + 1) & mask; counts[j] !== 0; j = (j + 1) & mask) {
      const home = slotOf(keys[j]!, mask);
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        keys[hole] = keys[j]!;
        counts[hole] = counts[j]!;
        counts[j] = 0;
        hole = j;
      }
    }
  }

  /**
   * Room for n more keys without a rehash: a first count of a big state (a million backends at
   * 100,000 Services) grew the table from 16 slots, rehashing every key ~17 times (~0.14 s).
   */
  reserve(n: number): void {
    let cap = this.#keys.length;
    while ((this.#used + n) * 4 > cap * 3) cap *= 2;
    if (cap > this.#keys.length) this.#rehash(cap);
  }

  #grow(): void {
    this.#rehash(this.#keys.length * 2);
  }

  #rehash(cap: number): void {
    const oldKeys = this.#keys, oldCounts = this.#counts;
    const keys = this.#keys = new Float64Array(cap);
    const counts = this.#counts = new Uint32Array(cap);
    const mask = keys.length - 1;
    for (let j = 0; j < oldKeys.length; j++) {
      if (oldCounts[j] === 0) continue;
      let i = slotOf(oldKeys[j]!, mask);
      while (counts[i] !== 0) i = (i + 1) & mask;
      keys[i] = oldKeys[j]!;
      counts[i] = oldCounts[j]!;
    }
  }
}

/** a slot for a non-negative integer below 2^53 */
function slotOf(key: number, mask: number): number {
  const lo = key >>> 0, hi = (key / 4294967296) >>> 0;
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) & mask;
}

export interface Fitted {
  state: NodeState;
  /** namespace/name of every Service left out, in order */
  dropped: string[];
  /** which limit was hit first, for the error message */
  limit?: keyof Capacity;
  /** what the whole state takes of that limit (every Service, none left out), in the limit's unit */
  needed?: number;
  /**
   * room was kept for entries this sync removes (the maps hold old and new entries together while
   * it writes): a Service left out may fit at the next sync, which the caller should ask for
   */
  waitsForRemovals?: boolean;
}

/** The BPF maps behind each limit (dataplane/bpf capacity()), which `--bpf-map-max` sizes. */
export const CAPACITY_MAPS: Readonly<Record<keyof Capacity, readonly string[]>> = {
  frontends: ['lb_frontends'], backends: ['lb_backends'], slots: ['lb_slots', 'lb_members'],
  frontendIds: ['lb_revnat'], sourceRanges: ['lb_src_ranges'], maglevSlots: ['lb_maglev_slots'],
};

/**
 * What to tell a user whose Services do not fit: the map(s) behind the limit and a `--bpf-map-max`
 * size that holds every Service with a quarter to spare (the flag's unit: entries, slots for
 * lb_maglev_slots, ids + 1 for lb_backends). Undefined when the whole state would fit (a Service
 * waits only for what this sync removes).
 */
export function capacityAdvice(limit: keyof Capacity, needed: number, cap: Capacity): { maps: readonly string[]; text: string } | undefined {
  const maps = CAPACITY_MAPS[limit];
  if (!(needed > cap[limit]) || !Number.isFinite(cap[limit])) return undefined;
  // lb_backends is indexed by id and id 0 is never used; lb_revnat's count (frontendIds) has it already
  const entries = (x: number) => (limit === 'backends' ? x + 1 : x);
  let size = Math.ceil(entries(needed) * 1.25);
  if (limit === 'maglevSlots') size = Math.ceil(size / LB_MAGLEV_IDS_PER_ELEM) * LB_MAGLEV_IDS_PER_ELEM;
  const what = maps.length > 1 ? `maps ${maps.join(' and ')} hold` : `map ${maps[0]} holds`;
  const unit = limit === 'maglevSlots' ? ' Maglev slots' : '';
  return {
    maps,
    text: `${what} ${entries(cap[limit])}${unit}, every Service together needs ${entries(needed)}: restart the agent with ${maps.map((m) => `--bpf-map-max ${m}=${size}`).join(' ')} (a quarter to spare; README "Limits")`,
  };
}

export function usage(frontends: NodeState['frontends']): Record<keyof Capacity, number> {
  return countAll(frontends).usage;
}

function over(u: Record<keyof Capacity, number>, cap: Capacity): keyof Capacity | undefined {
  for (const k of Object.keys(cap) as Array<keyof Capacity>) if (u[k] > cap[k]) return k;
  return undefined;
}

/**
 * programmed: the Services the data plane holds now (asked only when something must be left out);
 * they come first, so a newcomer is what gets left out.
 */
export function fitToCapacity(state: NodeState, cap: Capacity, programmed?: () => ReadonlySet<string>): Fitted {
  return fitWith(state, cap, usage(state.frontends), programmed);
}

/** what fitWith kept counted (the caller's record of what the kernel will hold) */
const keptUsage = new SideTable<Fitted, Record<keyof Capacity, number>>('kept usage');
/** fitWith's frontends per Service left out and per Service kept, and the first left out's frontends */
interface FitRecord { dropped: Map<string, number>; kept: Map<string, number>; first: readonly NodeFrontendT[]; keptUsage?: RefUsage }
const fitRecords = new SideTable<Fitted, FitRecord>('fit record');

/** `whole`: what the whole state takes (usage); the first limit it is over is the fit's limit */
function fitWith(state: NodeState, cap: Capacity, whole: Record<keyof Capacity, number>, programmed?: () => ReadonlySet<string>): Fitted {
  const first = over(whole, cap);
  if (!first) return { state, dropped: [] };
  // Services in order, those already programmed first (each group by name); keep the longest run
  // from the start that fits. Usage only grows along the run, so one walk that adds Service by
  // Service and stops at the first that overflows finds it. (A bisection counted the whole kept
  // state ~17 times a sync: at 100,000 Services on a 10,000-Service Maglev array, seconds a sync,
  // every sync, while the user's changes queued behind it.)
  const held = programmed?.() ?? new Set<string>();
  const byService = new Map<string, NodeFrontendT[]>();
  for (const f of state.frontends) {
    const l = byService.get(f.service);
    if (l) l.push(f);
    else byService.set(f.service, [f]);
  }
  const mine: string[] = [], newcomers: string[] = [];
  for (const s of byService.keys()) (held.has(s) ? mine : newcomers).push(s);
  // the default sort compares UTF-16 code units, as `a < b` does
  const services = mine.sort().concat(newcomers.sort());
  const c = new RefUsage();
  let lo = 0;
  for (; lo < services.length; lo++) {
    const fs = byService.get(services[lo]!)!;
    for (const f of fs) c.count(f, 1);
    if (over(c.usage, cap)) {
      for (const f of fs) c.count(f, -1);
      break;
    }
  }
  const dropped = services.slice(lo);
  const out = new Set(dropped);
  const r: Fitted = { state: { frontends: state.frontends.filter((f) => !out.has(f.service)) }, dropped, limit: first, needed: whole[first] };
  keptUsage.set(r, c.usage);
  // frontends per Service left out and kept (CapacityTracker #followFit follows them)
  const counts = new Map<string, number>(), kept = new Map<string, number>();
  for (const s of dropped) counts.set(s, byService.get(s)!.length);
  for (let i = 0; i < lo; i++) kept.set(services[i]!, byService.get(services[i]!)!.length);
  if (dropped.length) fitRecords.set(r, { dropped: counts, kept, first: byService.get(dropped[0]!)!, keptUsage: c });
  return r;
}

type NodeFrontendT = NodeState['frontends'][number];

/**
 * Usage of a set of frontends that changes one frontend at a time: references per backend and per
 * Maglev table, so a frontend's removal gives back exactly what no other frontend still uses.
 */
class RefUsage {
  /** references per backend (backendCountKey) */
  readonly backends = new KeyCounts();
  /** references per Maglev table (tableOf's key); maglevSlots: their slots together (in shards, as #seen) */
  readonly tables = new ShardedMap<string, number>(stringHash);
  frontends = 0;
  slots = 0;
  ranges = 0;
  maglevSlots = 0;

  count(f: NodeFrontendT, sign: 1 | -1): void {
    this.frontends += sign;
    this.slots += sign * f.backends.length;
    this.ranges += sign * f.sourceRanges.length;
    const t = tableOf(f);
    if (t) {
      const n = (this.tables.get(t.key) ?? 0) + sign;
      if (n === 0) this.tables.delete(t.key);
      else this.tables.set(t.key, n);
      if (n === 0 && sign < 0) this.maglevSlots -= t.slots;
      else if (n === 1 && sign > 0) this.maglevSlots += t.slots;
    }
    for (const b of f.backends) this.backends.add(backendCountKey(b.address, b.port, f.protocol), sign);
  }

  clear(): void {
    this.backends.clear();
    this.tables.clear();
    this.frontends = this.slots = this.ranges = this.maglevSlots = 0;
  }

  get usage(): Record<keyof Capacity, number> {
    return { frontends: this.frontends, backends: this.backends.size, slots: this.slots, frontendIds: this.frontends + 1, sourceRanges: this.ranges, maglevSlots: this.maglevSlots };
  }

  /** whether these frontends added to the set would take more than cap (counted, then taken back) */
  overWith(add: readonly NodeFrontendT[], cap: Capacity): boolean {
    for (const f of add) this.count(f, 1);
    const o = over(this.usage, cap) !== undefined;
    for (const f of add) this.count(f, -1);
    return o;
  }
}

/**
 * A fit that left Services out (CapacityTracker #followFit): what it kept, the frontends of each
 * Service left out and of each kept, the first one left out's frontends, and (once a change to a kept
 * Service asks for it) the kept frontends' usage by reference.
 */
interface PrevFit extends FitRecord { fit: Fitted; cap: Capacity }

function sorted(xs: readonly string[]): boolean {
  for (let i = 1; i < xs.length; i++) if (!(xs[i - 1]! < xs[i]!)) return false;
  return true;
}

const frontendKey = (f: NodeFrontendT): string => `${f.address}|${f.port}|${f.protocol}|${f.scope}`;

/**
 * fitToCapacity for a caller that hands in successive states sharing unchanged NodeFrontend objects
 * (the agent's Compiler does): usage is kept between calls and only the frontends that are new or
 * gone are counted, so a sync after one change costs a walk by identity, not a rebuild of the set of
 * every backend (~100,000 strings at 10,000 Services). Same result as fitToCapacity; NodeFrontends
 * are taken as immutable once handed in.
 */
export class CapacityTracker {
  /**
   * the frontends counted, with the epoch of the last call that found each; in shards, as each
   * change deletes and inserts its frontends and V8 copies a whole Map every ~(capacity - n) such
   * inserts (util/sharded-map.ts); its walk below is in no particular order
   */
  readonly #seen = new ShardedMap<NodeFrontendT, number>(addressPortHash);
  readonly #usage = new RefUsage();
  #epoch = 0;

  /** usage of the state the last call kept (what the kernel holds once it is written) */
  #kept: Record<keyof Capacity, number> | undefined;

  /**
   * held: the state the data plane holds now. A sync writes new entries before it removes old ones
   * (a reader never sees a frontend pointing at nothing), so the maps must have room for both
   * during the write; when the old state and the new one together could overflow, the entries this
   * sync removes are reserved first.
   */
  fit(state: NodeState, cap: Capacity, programmed?: () => ReadonlySet<string>, held?: () => NodeState | undefined,
    opts?: { deferCount?: boolean }): Fitted {
    // a count put off by the last call is made first: this call follows from its state
    this.settle();
    if (opts?.deferCount && this.#epoch === 0 && !held?.() && fitsBound(state, cap)) {
      this.#deferred = { state, next: 0 };
      return { state, dropped: [] };
    }
    const r = this.#fit(state, cap, programmed, held);
    this.#kept = r.dropped.length ? keptUsage.get(r) ?? usage(r.state.frontends) : this.#last;
    return r;
  }

  /**
   * A first fit (deferCount) whose state fits within an upper bound of its usage: what fit() returned
   * for it ({ state, dropped: [] }) is what a count would give, so the count itself (a walk keying a
   * million backends and 100,000 tables at 100,000 Services, 0.4-0.5 s of the main thread between
   * compile and plan, a core idle) is left to settle(), which the agent runs in slices after the
   * first sync's end, or to the next fit(), which finishes it first. next: the frontends counted so far.
   */
  #deferred: { state: NodeState; next: number } | undefined;

  /** whether a first fit's count is still to be made (settle() makes it) */
  get unsettled(): boolean {
    return this.#deferred !== undefined;
  }

  /**
   * Makes the count a first fit put off (deferCount), as that fit would have made it: at most `most`
   * more frontends of it per call (the agent's event loop answers between slices). Returns whether
   * the count is complete (also when there was none to make).
   */
  settle(most = Infinity): boolean {
    const d = this.#deferred;
    if (!d) return true;
    const fs = d.state.frontends;
    // #fit's first count (a tracker that has counted nothing: fit() defers only then), by slices
    if (d.next === 0) {
      this.#epoch = 1;
      let refs = 0;
      for (let k = 0; k < fs.length; k++) refs += fs[k]!.backends.length;
      this.#usage.backends.reserve(refs);
    }
    const end = Math.min(fs.length, d.next + most);
    for (let k = d.next; k < end; k++) {
      const f = fs[k]!;
      // a frontend listed twice counts once here; the end below counts such a state afresh, as #fit does
      if (this.#seen.has(f)) continue;
      this.#seen.set(f, 1);
      this.#usage.count(f, 1);
    }
    d.next = end;
    if (end < fs.length) return false;
    this.#deferred = undefined;
    const count = frontendCount(d.state);
    this.#lastState = d.state;
    this.#last = this.#seen.size !== count ? usage(fs) : { ...this.#usage.usage, frontends: count, frontendIds: count + 1 };
    // what the fit kept: the whole state (it fits, by the bound)
    this.#kept = this.#last;
    return true;
  }

  #last: Record<keyof Capacity, number> | undefined;
  /** the state the last call counted (a delta against it is followed without a walk) */
  #lastState: NodeState | undefined;

  #fit(state: NodeState, cap: Capacity, programmed?: () => ReadonlySet<string>, held?: () => NodeState | undefined): Fitted {
    const epoch = ++this.#epoch;
    // the last call's fit, for this one only
    const prev = this.#prevFit;
    this.#prevFit = undefined;
    // the array only on a walk: a compiled state builds it on first read (plan/delta.ts lazyState)
    const count = frontendCount(state);
    let delta = stateDelta(state, this.#lastState);
    this.#lastState = state;
    if (delta) {
      // what compile says changed: the rest holds the objects counted last time
      for (const f of delta.removed) {
        if (this.#seen.delete(f)) this.#usage.count(f, -1);
      }
      for (const f of delta.added) {
        if (this.#seen.has(f)) continue;
        this.#seen.set(f, epoch);
        this.#usage.count(f, 1);
      }
      if (this.#seen.size !== count) {
        // the delta did not add up (or the state lists an object twice): count afresh
        this.#seen.clear();
        this.#usage.clear();
        delta = undefined;
      }
    }
    const before = this.#seen.size;
    let kept = 0;
    if (!delta && before === 0) {
      // a first count (the agent's first sync): the backend counts sized once for every reference
      let refs = 0;
      for (const f of state.frontends) refs += f.backends.length;
      this.#usage.backends.reserve(refs);
    }
    if (!delta) for (const f of state.frontends) {
      const e = this.#seen.get(f);
      if (e === undefined) {
        this.#seen.set(f, epoch);
        this.#usage.count(f, 1);
      } else if (e !== epoch) {
        this.#seen.set(f, epoch);
        kept++;
      }
    }
    // frontends of the previous call that this state lacks (a walk by identity, no strings)
    if (!delta && kept < before) {
      for (const [f, e] of this.#seen) {
        if (e === epoch) continue;
        this.#seen.delete(f);
        this.#usage.count(f, -1);
      }
    }
    const u = { ...this.#usage.usage, frontends: count, frontendIds: count + 1 };
    this.#last = u;
    const same = delta && prev && this.#followFit(prev, state, delta, cap, u, held);
    if (same) return same;
    const room = this.#roomDuringWrite(state, cap, u, held);
    // a state listing one object twice is counted exactly by the full walk (and its fit not kept for #followFit)
    const walked = this.#seen.size !== count;
    const whole = walked ? (this.#last = usage(state.frontends)) : u;
    const r = fitWith(state, room, whole, programmed);
    if (room !== cap && r.dropped.length) r.waitsForRemovals = true;
    // (only where every Service left out is in name order: none the data plane held came first)
    const rec = fitRecords.get(r);
    if (!walked && rec && room === cap && sorted(r.dropped)) this.#prevFit = { ...rec, fit: r, cap: { ...cap } };
    return r;
  }

  /** The last fit that left Services out, while the syncs after it are followed (#followFit). */
  #prevFit: PrevFit | undefined;

  /**
   * The last fit followed through a change, without the walk over every Service that a fit afresh
   * takes (50-90 ms a sync at 10,000 Services, while the user's changes waited):
   * - a change only to Services that fit left out, each after the first one it left out in the order
   *   fitWith walks (newcomers by name): the run that fits is the same Services with the same usage,
   *   and the first left out still does not fit after it. The kept state is the same object.
   * - a change to Services it kept too (an endpoint of a Service that serves traffic): the kept
   *   Services come first in fitWith's walk (the data plane holds them), so its run is the same
   *   Services when their new usage fits and the first left out still does not fit after them
   *   (counted by reference, and the first one's frontends added without changing the count). The
   *   kept state is a new one, recorded as the old one with the change (plan/delta.ts), so what
   *   follows the fit stays in proportion to the change.
   * What the data plane holds must be exactly what the last fit kept (held). Undefined: fit afresh.
   */
  #followFit(p: PrevFit, state: NodeState, delta: { added: readonly NodeFrontendT[]; removed: readonly NodeFrontendT[] }, cap: Capacity,
    u: Record<keyof Capacity, number>, held?: () => NodeState | undefined): Fitted | undefined {
    if (!held || held() !== p.fit.state || !p.fit.limit) return undefined;
    for (const k of Object.keys(cap) as Array<keyof Capacity>) if (cap[k] !== p.cap[k]) return undefined;
    const first = p.fit.dropped[0]!;
    // counted in place: a return of undefined drops the record (the caller fits afresh and keeps a new one)
    const counts = p.dropped;
    const keptAdded: NodeFrontendT[] = [], keptRemoved: NodeFrontendT[] = [];
    // which side each Service is on before this change (a kept Service whose frontends are all
    // replaced stays kept: the data plane holds it, so it comes first in fitWith's walk)
    const wasKept = (service: string) => p.kept.has(service);
    let renamed = false;
    for (const f of delta.removed) {
      if (f.service === first) return undefined;
      if (wasKept(f.service)) {
        keptRemoved.push(f);
        continue;
      }
      const n = counts.get(f.service);
      if (n === undefined || !(f.service > first)) return undefined;
      if (n > 1) counts.set(f.service, n - 1);
      else {
        counts.delete(f.service);
        renamed = true;
      }
    }
    for (const f of delta.added) {
      if (f.service === first) return undefined;
      if (wasKept(f.service)) {
        keptAdded.push(f);
        continue;
      }
      // left out after the first one: a Service left out before, or one new to the state (a newcomer by name)
      if (!(f.service > first)) return undefined;
      const n = counts.get(f.service);
      if (n === undefined) renamed = true;
      counts.set(f.service, (n ?? 0) + 1);
    }
    const dropped = renamed ? [first, ...[...counts.keys()].filter((s) => s !== first).sort()] : p.fit.dropped;
    if (!keptAdded.length && !keptRemoved.length) {
      // the first one left out is unchanged (every change sorts after it), so still over: the same limit
      const r: Fitted = { state: p.fit.state, dropped, limit: p.fit.limit, needed: u[p.fit.limit] };
      keptUsage.set(r, keptUsage.get(p.fit)!);
      this.#prevFit = { ...p, fit: r };
      return r;
    }
    // a kept frontend whose key this state no longer has is removed after the new entries are
    // written: room would be reserved for it (#roomDuringWrite), a fit afresh decides that
    if (keptRemoved.length) {
      const now = new Set(delta.added.map(frontendKey));
      if (keptRemoved.some((f) => !now.has(frontendKey(f)))) return undefined;
    }
    const k = p.keptUsage ?? countAll(p.fit.state.frontends);
    p.keptUsage = undefined;
    for (const f of keptRemoved) k.count(f, -1);
    for (const f of keptAdded) k.count(f, 1);
    const limit = over(u, cap);
    if (!limit || over(k.usage, cap) || !k.overWith(p.first, cap)) return undefined;
    // additions first: a Service whose frontends are all replaced stays kept
    for (const f of keptAdded) p.kept.set(f.service, p.kept.get(f.service)! + 1);
    for (const f of keptRemoved) {
      const n = p.kept.get(f.service)! - 1;
      if (n) p.kept.set(f.service, n);
      else p.kept.delete(f.service);
    }
    const out = new Set(dropped);
    const kept = lazyState(k.frontends, () => state.frontends.filter((f) => !out.has(f.service)));
    recordStateDelta(kept, p.fit.state, keptAdded, keptRemoved);
    const r: Fitted = { state: kept, dropped, limit, needed: u[limit] };
    keptUsage.set(r, k.usage);
    this.#prevFit = { ...p, fit: r, keptUsage: k };
    return r;
  }

  /**
   * cap less what the entries this sync removes take until they are removed. Cheap when the old and
   * the new state together fit; otherwise from compile's record when it is against the held state
   * (at 10,000 Services the Maglev slots of old and new together exceed the array: every sync), else
   * a walk by key.
   */
  #roomDuringWrite(state: NodeState, cap: Capacity, u: Record<keyof Capacity, number>, held?: () => NodeState | undefined): Capacity {
    const k = this.#kept;
    if (!held || !k || (Object.keys(cap) as Array<keyof Capacity>).every((x) => u[x] + k[x] <= cap[x])) return cap;
    const old = held();
    if (!old) return cap;
    // compile's record against exactly the held state: what goes is among what it removed (a
    // frontend replaced under the same key stays), so a sync after one change walks the change only
    const d = stateDelta(state, old);
    let gone: NodeFrontendT[];
    if (d) {
      const now = new Set(d.added.map(frontendKey));
      gone = d.removed.filter((f) => !now.has(frontendKey(f)));
    } else {
      const now = new Set(state.frontends.map(frontendKey));
      gone = old.frontends.filter((f) => !now.has(frontendKey(f)));
    }
    const going = usage(gone);
    if (!going.slots && !going.sourceRanges && going.frontends === 0 && !going.maglevSlots) return cap;
    // backends: counted as if none of the removed ones were kept (a conservative reservation)
    return {
      frontends: cap.frontends - going.frontends, backends: cap.backends - going.backends, slots: cap.slots - going.slots,
      frontendIds: cap.frontendIds - going.frontends, sourceRanges: cap.sourceRanges - going.sourceRanges,
      // a region a table leaves waits out a grace period before reuse
      maglevSlots: cap.maglevSlots - going.maglevSlots,
    };
  }
}

/**
 * Whether state fits cap by an upper bound of its usage, without keying a backend or a table: every
 * backend reference a distinct backend and every frontend with backends a table of its own (the
 * exact count shares both), the other limits exact; except that a frontend with the same protocol and
 * the same backends, in the same order, as one before it of the same Service (its ClusterIP and
 * NodePort) shares that one's backends, and its table where the members are the same too. Where the
 * walk without that comparison is over, it is walked again with it (compile lists the ClusterIPs
 * before the NodePorts: the default Maglev array holds 10,000 such Services' tables, not their
 * NodePorts' again). True means the exact usage fits too.
 */
export function fitsBound(state: NodeState, cap: Capacity): boolean {
  return boundOver(state, cap, false) === undefined || boundOver(state, cap, true) === undefined;
}

/** fitsBound's walk: the first limit the bound is over; byService: a frontend's backends compared with its Service's earlier frontends' */
function boundOver(state: NodeState, cap: Capacity, byService: boolean): keyof Capacity | undefined {
  const fs = state.frontends;
  let refs = 0, distinct = 0, ranges = 0, maglevSlots = 0;
  // a table's slots by member count (tableOf's sizing): a few distinct counts among 100,000 frontends
  const slotsOf: number[] = [];
  const earlier = byService ? new Map<string, NodeFrontendT[]>() : undefined;
  for (let i = 0; i < fs.length; i++) {
    const f = fs[i]!, bs = f.backends;
    refs += bs.length;
    ranges += f.sourceRanges.length;
    if (!bs.length) continue;
    let same: NodeFrontendT | undefined, sameTable = false;
    if (earlier) {
      const l = earlier.get(f.service);
      if (l) {
        for (const g of l) {
          if (!sameBackends(g, f)) continue;
          same = g;
          // the same backends with the same terminating flags: the same members, so the same table
          if (sameTerminating(g, f)) {
            sameTable = true;
            break;
          }
        }
        l.push(f);
      } else earlier.set(f.service, [f]);
    }
    if (!same) distinct += bs.length;
    if (sameTable) continue;
    let members = 0;
    for (let k = 0; k < bs.length; k++) if (!bs[k]!.terminating) members++;
    if (!members) members = bs.length;
    let s = slotsOf[members];
    if (s === undefined) s = slotsOf[members] = tableSlots(members);
    maglevSlots += s;
  }
  return over({ frontends: fs.length, backends: distinct, slots: refs, frontendIds: fs.length + 1, sourceRanges: ranges, maglevSlots }, cap);
}

/** the same protocol and backends (address, port), in the same order */
function sameBackends(a: NodeFrontendT, b: NodeFrontendT): boolean {
  const x = a.backends, y = b.backends;
  if (a.protocol !== b.protocol || x.length !== y.length) return false;
  for (let k = 0; k < x.length; k++) if (x[k]!.address !== y[k]!.address || x[k]!.port !== y[k]!.port) return false;
  return true;
}

/** (of two frontends with sameBackends) each backend terminating in both or in neither */
function sameTerminating(a: NodeFrontendT, b: NodeFrontendT): boolean {
  const x = a.backends, y = b.backends;
  for (let k = 0; k < x.length; k++) if (x[k]!.terminating !== y[k]!.terminating) return false;
  return true;
}

function countAll(frontends: readonly NodeFrontendT[]): RefUsage {
  const r = new RefUsage();
  for (const f of frontends) r.count(f, 1);
  return r;
}
