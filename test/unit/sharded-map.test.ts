// ShardedMap (src/util/sharded-map.ts): a Map split in shards so that V8's copy of a churned table is
// of one shard. It must answer as a Map does, but for its iteration order.
import test from 'ava';
import { addressPortHash, intHash, ShardedMap, stringHash } from '../../src/util/sharded-map.js';

const sortedEntries = <K, V>(m: Map<K, V>): [K, V][] => [...m.entries()].sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : String(a[0]) > String(b[0]) ? 1 : 0));

test('answers as a Map through random sets, deletes and clears', (t) => {
  let rs = 12345;
  const rand = (n: number): number => ((rs = (Math.imul(rs, 1103515245) + 12345) >>> 0) >>> 8) % n;
  for (const shards of [1, 2, 64, 1024]) {
    const m = new ShardedMap<string, number>(stringHash, shards), ref = new Map<string, number>();
    for (let i = 0; i < 20000; i++) {
      const k = `10.96.${rand(40)}.${rand(250)}|80|TCP|internal`;
      const op = rand(100);
      if (op < 55) {
        t.is(m.set(k, i), m);
        ref.set(k, i);
      } else if (op < 99) t.is(m.delete(k), ref.delete(k));
      else if (i % 5000 === 0) {
        m.clear();
        ref.clear();
      }
      if (i % 997 === 0) {
        t.is(m.size, ref.size);
        t.deepEqual(sortedEntries(m), sortedEntries(ref), `shards ${shards}, op ${i}`);
      }
      t.is(m.get(k), ref.get(k));
      t.is(m.has(k), ref.has(k));
    }
    t.is(m.size, ref.size);
    t.deepEqual(sortedEntries(m), sortedEntries(ref));
    t.deepEqual([...m.keys()].sort(), [...ref.keys()].sort());
    t.deepEqual([...m.values()].sort(), [...ref.values()].sort());
    const seen: [string, number][] = [];
    m.forEach(function (this: unknown, v, k, map) {
      t.is(map, m);
      t.is(this, seen);
      seen.push([k, v]);
    }, seen);
    t.deepEqual(seen.sort((a, b) => (a[0] < b[0] ? -1 : 1)), sortedEntries(ref));
  }
});

test('an entry deleted during a walk is not visited, as in a Map; the walk sees every other once', (t) => {
  const m = new ShardedMap<number, number>(intHash, 16);
  for (let i = 0; i < 1000; i++) m.set(i, i);
  const visited = new Set<number>(), dropped = new Set<number>();
  for (const [k] of m) {
    t.false(visited.has(k) || dropped.has(k), `${k}`);
    visited.add(k);
    if (k % 2 === 0) m.delete(k);
    if (k % 3 === 0 && !visited.has(k + 1) && m.delete(k + 1)) dropped.add(k + 1);
  }
  t.is(visited.size + dropped.size, 1000);
  t.is(m.size, [...visited].filter((k) => k % 2 === 1).length);
});

test('keys by identity: two equal objects are two keys, as in a Map', (t) => {
  const m = new ShardedMap<{ address: string; port: number }, string>(addressPortHash);
  const a = { address: '10.96.0.1', port: 80 }, b = { address: '10.96.0.1', port: 80 };
  m.set(a, 'a').set(b, 'b');
  t.is(m.size, 2);
  t.is(m.get(a), 'a');
  t.is(m.get(b), 'b');
  t.true(m.delete(a));
  t.false(m.has(a));
  t.is(m.get(b), 'b');
});

test('spreads dense ids, frontend keys and NodeFrontend-like objects over the shards', (t) => {
  const ids = new ShardedMap<number, number>(intHash, 64);
  for (let i = 1; i <= 64 * 1000; i++) ids.set(i, i);
  const keys = new ShardedMap<string, number>(stringHash, 64);
  for (let i = 0; i < 64 * 1000; i++) keys.set(`10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}|80|TCP|internal`, i);
  const fes = new ShardedMap<{ address: string; port: number }, number>(addressPortHash, 64);
  for (let i = 0; i < 64 * 1000; i++) fes.set({ address: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 80 }, i);
  for (const [name, m] of [['ids', ids], ['keys', keys], ['objects', fes]] as const) {
    const sizes = m.shardSizes();
    t.is(sizes.reduce((a, b) => a + b, 0), 64 * 1000);
    // a fair spread: no shard holds more than 1.25 times its share, so none copies much more than 1/64
    t.true(Math.max(...sizes) < 1250 && Math.min(...sizes) > 750, `${name}: ${Math.min(...sizes)}-${Math.max(...sizes)}`);
  }
});

test('a shard count that is not a power of two from 1 to 65536 is refused, naming it', (t) => {
  for (const s of [0, 3, 100, 131072, 1.5]) t.throws(() => new ShardedMap(intHash, s), { instanceOf: RangeError, message: new RegExp(`not ${s}`) });
});

test('stringHash reads a long string by its length and ends', (t) => {
  const mid = (c: string): string => `${'a'.repeat(40)}${c}${'b'.repeat(40)}`;
  t.is(stringHash(mid('x')), stringHash(mid('y')));
  t.not(stringHash(mid('x')), stringHash(`${mid('x')}c`));
  t.not(stringHash('10.96.0.1|80|TCP|internal'), stringHash('10.96.0.2|80|TCP|internal'));
  t.is(Object.prototype.toString.call(new ShardedMap(intHash)), '[object ShardedMap]');
});
