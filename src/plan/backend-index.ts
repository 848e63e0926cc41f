// A plan's backends by address (an array only when several ports share one): how the next build finds
// a backend's previous id without a key string per backend. The full build makes one from prev (or
// takes its chain's); the incremental build keeps its chain's up to date.
//
// Every full build makes one for its chain (~100,000 backends at 10,000 Services): a Map by address
// text cost ~45 ms of it (each address's string hash computed, the Map's table grown and rehashed 17
// times). Dotted quads (nearly every address) are kept by value instead, in a table sized once for
// the backends given (open addressing in typed arrays, as build-full.ts does); anything else by text.
// strictV4 takes exactly one spelling of each address, so the value stands for the text.
import type { Protocol } from '../model/compiled.js';
import { strictV4, v4Hash } from '../util/ip.js';
import type { PlanBackend } from './types.js';

type Entry = PlanBackend | PlanBackend[];

export class BackendIndex {
  /** per slot: the address value, and whether it holds one */
  #keys: Uint32Array;
  #taken: Uint8Array;
  #vals: (Entry | undefined)[];
  /** slots taken: the table grows when they are 3/4 of it */
  #used = 0;
  readonly #other = new Map<string, Entry>();

  /** room for `expect` addresses without a rehash */
  constructor(expect = 0) {
    let cap = 64;
    while (cap * 3 < expect * 4 + 4) cap *= 2;
    this.#keys = new Uint32Array(cap);
    this.#taken = new Uint8Array(cap);
    this.#vals = new Array<Entry | undefined>(cap).fill(undefined);
  }

  /** the slot of dotted quad v: where it is, or where it would go */
  #slot(v: number): number {
    const mask = this.#taken.length - 1;
    let h = v4Hash(v) & mask;
    while (this.#taken[h] === 1 && this.#keys[h] !== v) h = (h + 1) & mask;
    return h;
  }

  get(address: string): Entry | undefined {
    const v = strictV4(address);
    if (v < 0) return this.#other.get(address);
    return this.#vals[this.#slot(v)];
  }

  set(address: string, e: Entry): void {
    const v = strictV4(address);
    if (v < 0) {
      this.#other.set(address, e);
      return;
    }
    this.#put(this.#slot(v), v, e);
  }

  /** b under its address, beside those of other ports or protocols there (one parse and one probe) */
  add(b: PlanBackend): void {
    const v = strictV4(b.address);
    if (v < 0) {
      const same = this.#other.get(b.address);
      this.#other.set(b.address, same === undefined ? b : Array.isArray(same) ? (same.push(b), same) : [same, b]);
      return;
    }
    const h = this.#slot(v), same = this.#vals[h];
    if (same !== undefined) {
      if (Array.isArray(same)) same.push(b);
      else this.#vals[h] = [same, b];
      return;
    }
    this.#put(h, v, b);
  }

  /** e at slot h of dotted quad v (#slot's answer): the slot claimed if it was free, the table grown past 3/4 */
  #put(h: number, v: number, e: Entry): void {
    if (this.#taken[h] === 0) {
      this.#taken[h] = 1;
      this.#keys[h] = v;
      if (++this.#used * 4 > this.#taken.length * 3) {
        this.#vals[h] = e;
        this.#grow();
        return;
      }
    }
    this.#vals[h] = e;
  }

  delete(address: string): void {
    const v = strictV4(address);
    if (v < 0) {
      this.#other.delete(address);
      return;
    }
    let h = this.#slot(v);
    if (this.#taken[h] === 0) return;
    // the slot is freed and the entries after it in its run shift back (no tombstone): a removal
    // that left its slot taken filled the table with them as rolled pods brought fresh addresses,
    // and the add that found it 3/4 full rehashed every entry on one change (docs/perf-log.md, session
    // 24, p24chg). An entry at j moves into the hole at h unless its home slot lies in (h, j].
    const keys = this.#keys, taken = this.#taken, vals = this.#vals, mask = taken.length - 1;
    for (let j = (h + 1) & mask; taken[j] === 1; j = (j + 1) & mask) {
      const home = v4Hash(keys[j]!) & mask;
      if (h <= j ? home > h && home <= j : home > h || home <= j) continue;
      keys[h] = keys[j]!;
      vals[h] = vals[j];
      h = j;
    }
    taken[h] = 0;
    keys[h] = 0;
    vals[h] = undefined;
    this.#used--;
  }

  /** slots of the dotted-quad table (a test's look at its growth) */
  get capacity(): number {
    return this.#taken.length;
  }

  /** addresses held */
  get size(): number {
    let n = this.#other.size;
    for (const e of this.#vals) if (e !== undefined) n++;
    return n;
  }

  /** rehashed into a table at most half full (only when the addresses held outgrow 3/4 of it) */
  #grow(): void {
    const keys = this.#keys, vals = this.#vals;
    let live = 0;
    for (const e of vals) if (e !== undefined) live++;
    let cap = 64;
    while (cap < live * 2) cap *= 2;
    this.#keys = new Uint32Array(cap);
    this.#taken = new Uint8Array(cap);
    this.#vals = new Array<Entry | undefined>(cap).fill(undefined);
    this.#used = live;
    for (let k = 0; k < vals.length; k++) {
      const e = vals[k];
      if (e === undefined) continue;
      const h = this.#slot(keys[k]!);
      this.#taken[h] = 1;
      this.#keys[h] = keys[k]!;
      this.#vals[h] = e;
    }
  }
}

/** An index of `count` backends (sized once for them: a full build's chain indexes ~100,000, and grown from 64 it rehashed 11 times). */
export function backendIndex(backends: ReadonlyMap<number, PlanBackend> | readonly PlanBackend[], count = 'size' in backends ? backends.size : backends.length): BackendIndex {
  const index = new BackendIndex(count);
  // by forEach, not a for-of over values(): a full build's chain indexes a million backends at
  // 100,000 Services once, a tier below TurboFan, where each for-of step allocated its result
  backends.forEach((b: PlanBackend) => indexAdd(index, b));
  return index;
}

export function indexAdd(index: BackendIndex, b: PlanBackend): void {
  index.add(b);
}

/** removes b's (address, port, protocol) */
export function indexRemove(index: BackendIndex, b: PlanBackend): void {
  const same = index.get(b.address);
  if (same === undefined) return;
  if (!Array.isArray(same)) {
    if (same.port === b.port && same.protocol === b.protocol) index.delete(b.address);
    return;
  }
  const j = same.findIndex((x) => x.port === b.port && x.protocol === b.protocol);
  if (j >= 0) same.splice(j, 1);
  const [only] = same;
  if (only && same.length === 1) index.set(b.address, only);
}

export function findIn(index: BackendIndex, address: string, port: number, protocol: Protocol): PlanBackend | undefined {
  const same = index.get(address);
  if (same === undefined) return undefined;
  if (!Array.isArray(same)) return same.port === port && same.protocol === protocol ? same : undefined;
  return same.find((b) => b.port === port && b.protocol === protocol);
}
