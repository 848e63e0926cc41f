// A WeakMap's get/set/has/delete for objects made at every sync (a NodeState, a Plan, a fit): the
// value is kept on the object itself under a symbol of the table's own, non-enumerable (JSON, object
// spreads and deep comparisons do not see it; a copy of the object has no value, as with a WeakMap).
//
// Why not a WeakMap: each sync's objects added one entry to each of ~9 WeakMaps, and a WeakMap's
// entries leave its table only at a full GC; between two (rare on an agent whose heap is steady:
// hours) the tables grew by doubling, and the sync that crossed a power of two paid the copy of
// every entry, dead ones included: 1.6 ms at ~5,500 syncs, 4-9 ms at ~11,000 in one compile (an
// in-process probe; docs/perf-log.md, session 27, p27tail), then twice that at each doubling, whatever
// the Service count. A property dies with its object and costs no table.
//
// An object that cannot take a property (frozen, sealed, not extensible) falls back to a WeakMap.

export class SideTable<K extends object, V> {
  readonly #sym: symbol;
  #fallback: WeakMap<K, V> | undefined;

  constructor(name: string) {
    this.#sym = Symbol(name);
  }

  get(k: K): V | undefined {
    if (Object.prototype.hasOwnProperty.call(k, this.#sym)) return (k as Record<symbol, V>)[this.#sym];
    return this.#fallback?.get(k);
  }

  has(k: K): boolean {
    return Object.prototype.hasOwnProperty.call(k, this.#sym) || (this.#fallback?.has(k) ?? false);
  }

  set(k: K, v: V): this {
    if (Object.prototype.hasOwnProperty.call(k, this.#sym)) (k as Record<symbol, V>)[this.#sym] = v;
    else if (Object.isExtensible(k)) Object.defineProperty(k, this.#sym, { value: v, writable: true, configurable: true, enumerable: false });
    else (this.#fallback ??= new WeakMap()).set(k, v);
    return this;
  }

  delete(k: K): boolean {
    if (Object.prototype.hasOwnProperty.call(k, this.#sym)) return delete (k as Record<symbol, V>)[this.#sym];
    return this.#fallback?.delete(k) ?? false;
  }
}
