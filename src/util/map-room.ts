// Room in a big Map for the inserts after it was filled, made while it is filled (a full sync) so
// that a later one-change sync does not pay for V8 growing it.
//
// V8 keeps a Map's entries in one table (an OrderedHashMap) whose capacity is a power of two: 4 at
// first, doubled when an insert finds every entry slot used. A delete leaves its slot used (a hole)
// until that insert, which copies every live entry into a table allocated anew (twice as large, or
// as large when holes are at least half of it). A Map filled from empty with n entries therefore has
// the smallest power of two >= n slots, and one that n is exactly has none free: the incremental
// plan's records of 30,000 bench Services (32,768 frontends) grew on the first change's insert,
// 7 + 6 ms for its two Maps with ~1,800 page faults (a new table on fresh pages), where later
// changes took 0.01 ms (docs/perf-log.md, session 23, p23chg; a Map of 131,072: 176 + 50 ms).
//
// The capacity is not visible to JavaScript; it is inferred from V8's growth rule above. If the rule
// is not V8's, the Map's content is unchanged all the same: dummy keys are added and deleted again.

/**
 * The room kept in a Map of n entries for the changes after a full sync or build: few enough that a
 * Map made larger for it (when it is within this of its capacity) costs little.
 */
export function changeRoom(n: number): number {
  return 1024 + (n >> 6);
}

/** The slots a Map filled from empty with `size` entries (and no deletes) holds in V8. */
export function mapCapacity(size: number): number {
  let cap = 4;
  while (cap < size) cap *= 2;
  return cap;
}

/**
 * Makes sure `m`, just filled from empty with no deletes (call it once per fill: the room is
 * inferred from the size, so a second call adds holes instead), takes at least `room` more inserts (or the
 * capacity it holds, less one, when that is less) before V8 grows it: when fewer slots are free, it
 * adds dummy keys (`dummy(i)`) one past the capacity, which has V8 double the table with them in it,
 * and deletes them. A dummy that is a key of m is passed over. Returns how many dummies it added
 * (0: room enough). m's entries and their order are as before.
 */
export function reserveMapRoom<K, V>(m: Map<K, V>, room: number, dummy: (i: number) => K): number {
  const n = m.size, cap = mapCapacity(n);
  if (cap - n >= room) return 0;
  // n + extra = cap + 1: the last insert finds the table full with no holes and doubles it; then
  // 2 * cap slots hold n entries and extra holes, cap - 1 free. V8 shrinks a Map on a delete only
  // when under a quarter of its capacity is live, and n > cap / 2 (but for a Map of 2 or fewer)
  const extra = cap - n + 1;
  const keys: K[] = [];
  for (let i = 0; keys.length < extra && i < 2 * extra + 16; i++) {
    const k = dummy(i);
    if (m.has(k)) continue;
    keys.push(k);
    m.set(k, undefined as V);
  }
  for (const k of keys) m.delete(k);
  return keys.length;
}
