// A Map split in shards, for the big Maps that every change deletes from and inserts into.
//
// V8 keeps a Map's entries in one table in insertion order; a delete leaves a hole that only the
// next growth reclaims, and that growth (an insert that finds every slot used) copies every live
// entry into a table allocated anew (util/map-room.ts). A Map of n entries churned by changes is
// therefore copied whole every ~(capacity - n) inserts, on the one change that makes that insert: at
// 100,000 Services, one change in ~28,000 and then one in ~130,000 paid 50-200 ms for each per-frontend
// Map (docs/perf-log.md, session 24, p24chg). Here each key lives in one of `shards` Maps picked by a hash
// of the key, so a copy is of one shard (1/shards of the entries), and the shards, filled evenly by
// changes that fall at random, reach their copies at different changes.
//
// Differences from a Map, which none of its users relies on (each says so where it makes one):
// iteration is shard by shard (insertion order within a shard), not in insertion order overall.

/** A key's hash: any 32-bit integer; the shard is taken from its high bits. */
export type KeyHash<K> = (k: K) => number;

/** FNV-1a over a string's UTF-16 units; a long string by its length and 32 units at each end. */
export function stringHash(s: string): number {
  let h = 0x811c9dc5 ^ s.length;
  const n = s.length;
  if (n <= 64) {
    for (let i = 0; i < n; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  } else {
    for (let i = 0; i < 32; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    for (let i = n - 32; i < n; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  }
  return h;
}

/** An integer key (an id: dense, so taken as it is and spread by the shard's multiply) */
export function intHash(x: number): number {
  return x | 0;
}

/** An object keyed by identity that holds an address and port which never change (a NodeFrontend) */
export function addressPortHash(x: { readonly address: string; readonly port: number }): number {
  return stringHash(x.address) + x.port;
}

export class ShardedMap<K, V> implements Map<K, V> {
  readonly #shards: Map<K, V>[];
  readonly #shift: number;
  readonly #hash: KeyHash<K>;
  #size = 0;

  /** shards: a power of two from 1 to 2^16 */
  constructor(hash: KeyHash<K>, shards = 64) {
    if (!(Number.isInteger(shards) && shards >= 1 && shards <= 65536 && (shards & (shards - 1)) === 0)) {
      throw new RangeError(`ShardedMap: shards must be a power of two from 1 to 65536, not ${shards}`);
    }
    this.#hash = hash;
    // Fibonacci hashing: the multiply's high bits, so dense ids and similar strings spread evenly
    this.#shift = 32 - Math.log2(shards);
    this.#shards = Array.from({ length: shards }, () => new Map<K, V>());
  }

  #shard(k: K): Map<K, V> {
    return this.#shards[this.#shift === 32 ? 0 : Math.imul(this.#hash(k), 0x9e3779b1) >>> this.#shift]!;
  }

  get size(): number {
    return this.#size;
  }

  get(k: K): V | undefined {
    return this.#shard(k).get(k);
  }

  has(k: K): boolean {
    return this.#shard(k).has(k);
  }

  set(k: K, v: V): this {
    const s = this.#shard(k);
    const n = s.size;
    s.set(k, v);
    this.#size += s.size - n;
    return this;
  }

  delete(k: K): boolean {
    if (!this.#shard(k).delete(k)) return false;
    this.#size--;
    return true;
  }

  clear(): void {
    for (const s of this.#shards) s.clear();
    this.#size = 0;
  }

  /** the shards' sizes (for a bench's or a test's look at the spread) */
  shardSizes(): number[] {
    return this.#shards.map((s) => s.size);
  }

  *entries(): MapIterator<[K, V]> {
    for (const s of this.#shards) yield* s.entries();
  }

  *keys(): MapIterator<K> {
    for (const s of this.#shards) yield* s.keys();
  }

  *values(): MapIterator<V> {
    for (const s of this.#shards) yield* s.values();
  }

  forEach(fn: (v: V, k: K, map: Map<K, V>) => void, thisArg?: unknown): void {
    for (const s of this.#shards) s.forEach((v, k) => fn.call(thisArg, v, k, this));
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'ShardedMap';
  }
}
