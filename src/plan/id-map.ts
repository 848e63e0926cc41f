// A Map by small integer id, held as an array indexed by id: what a plan's backends and tables are
// keyed by. buildPlan takes the lowest free id, so ids are dense; a Map of the million backends of
// 100,000 Services cost ~0.3-0.5 s of CPU to fill (its hash table grown and rehashed ~17 times, every
// copy a large old-generation object) and ~14 MiB against ~4 MiB for the array. Ids that are not
// dense (a kernel read-back may hold any u32) move everything into a Map, which then serves alone.
//
// Differences from a Map, which no reader of a plan relies on: iteration is in ascending id order
// (a Map's insertion order; a full build inserts in id order anyway, and diff sorts by id), and
// values are never undefined (set(id, undefined) is refused).

/** how far past the entries held an id may go before the array gives way to a Map */
const SLACK = 65_536;

export class IdMap<V> implements Map<number, V> {
  /** per id: its value, undefined when absent; unused once #map is set */
  #vals: (V | undefined)[] = [];
  #size = 0;
  #map: Map<number, V> | undefined;

  constructor(entries?: Iterable<readonly [number, V]>) {
    if (entries) for (const [k, v] of entries) this.set(k, v);
  }

  /** whether iteration is by ascending id (else a Map's insertion order: see #toMap) */
  get ascending(): boolean {
    return this.#map === undefined;
  }

  get size(): number {
    return this.#map ? this.#map.size : this.#size;
  }

  get(id: number): V | undefined {
    if (this.#map) return this.#map.get(id);
    // a non-integer or negative id reads an absent property: undefined, as a Map would answer
    return id >= 0 ? this.#vals[id] : undefined;
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  set(id: number, v: V): this {
    if (v === undefined) throw new TypeError(`IdMap: no undefined values (id ${id})`);
    if (this.#map) {
      this.#map.set(id, v);
      return this;
    }
    const vals = this.#vals;
    if (id < vals.length && id >= 0 && Number.isInteger(id)) {
      if (vals[id] === undefined) this.#size++;
      vals[id] = v;
      return this;
    }
    if (!(Number.isInteger(id) && id >= 0 && id <= 2 * this.#size + SLACK)) {
      this.#toMap().set(id, v);
      return this;
    }
    // appended (a full build's ids come in order): the array stays packed, no holes
    while (vals.length < id) vals.push(undefined);
    vals.push(v);
    this.#size++;
    return this;
  }

  delete(id: number): boolean {
    if (this.#map) return this.#map.delete(id);
    if (!(id >= 0 && id < this.#vals.length) || this.#vals[id] === undefined) return false;
    this.#vals[id] = undefined;
    this.#size--;
    return true;
  }

  clear(): void {
    this.#map?.clear();
    this.#vals = [];
    this.#size = 0;
  }

  #toMap(): Map<number, V> {
    const m = new Map<number, V>();
    for (const [k, v] of this.entries()) m.set(k, v);
    this.#vals = [];
    this.#size = 0;
    this.#map = m;
    return m;
  }

  entries(): MapIterator<[number, V]> {
    return this.#map ? this.#map.entries() : new IdIterator(this.#vals, ENTRIES);
  }

  keys(): MapIterator<number> {
    return this.#map ? this.#map.keys() : new IdIterator(this.#vals, KEYS);
  }

  values(): MapIterator<V> {
    return this.#map ? this.#map.values() : new IdIterator(this.#vals, VALUES);
  }

  forEach(fn: (v: V, id: number, map: Map<number, V>) => void, thisArg?: unknown): void {
    if (this.#map) {
      for (const [k, v] of this.#map) fn.call(thisArg, v, k, this);
      return;
    }
    const vals = this.#vals;
    for (let id = 0; id < vals.length; id++) {
      const v = vals[id];
      if (v !== undefined) fn.call(thisArg, v, id, this);
    }
  }

  [Symbol.iterator](): MapIterator<[number, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'IdMap';
  }
}

const ENTRIES = 0, KEYS = 1, VALUES = 2;
type Pick = typeof ENTRIES | typeof KEYS | typeof VALUES;

/**
 * A walk over the array by id, as a Map's iterator walks it. Not a generator: a generator's next()
 * is not inlined where it is called, so every step of a walk allocated its result object (a first
 * sync's walks over the million backends of 100,000 Services: ~180 MiB of them, and the
 * scavenges they cost); this next() is, and the result goes with escape analysis.
 */
class IdIterator<V, T> implements MapIterator<T> {
  #vals: readonly (V | undefined)[];
  #id = 0;
  readonly #pick: Pick;

  constructor(vals: readonly (V | undefined)[], pick: Pick) {
    this.#vals = vals;
    this.#pick = pick;
  }

  next(): IteratorResult<T, undefined> {
    const vals = this.#vals;
    // length read each turn: entries set during the walk are visited, as a Map's would be
    for (let id = this.#id; id < vals.length; id++) {
      const v = vals[id];
      if (v === undefined) continue;
      this.#id = id + 1;
      const pick = this.#pick;
      return { value: (pick === VALUES ? v : pick === KEYS ? id : [id, v]) as T, done: false };
    }
    this.#id = vals.length;
    return { value: undefined, done: true };
  }

  [Symbol.iterator](): this {
    return this;
  }

  [Symbol.dispose](): void {
    this.#id = this.#vals.length;
  }
}
// Iterator.prototype's helpers (map, filter, toArray, ...), as the generators had them
const iteratorProto = (globalThis as { Iterator?: { prototype: object } }).Iterator?.prototype;
if (iteratorProto) Object.setPrototypeOf(IdIterator.prototype, iteratorProto);
