// tableKey (src/plan/frontend.ts) names a Maglev table by its member ids and M: the full and the
// incremental build find a table by it, so two (ids, M) get the same key exactly when they are equal,
// also past the chunk of ids one String.fromCharCode call takes.
import test from 'ava';
import fc from 'fast-check';
import { tableKey } from '../../src/plan/frontend.js';

const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const arbTable = fc.record({ ids: fc.array(u32, { maxLength: 12 }), m: u32 });

test('tableKey: equal keys exactly for equal member lists and M', (t) => {
  fc.assert(fc.property(arbTable, arbTable, (a, b) => {
    const same = a.m === b.m && a.ids.length === b.ids.length && a.ids.every((x, i) => x === b.ids[i]);
    return (tableKey(a.ids, a.m) === tableKey(b.ids, b.m)) === same;
  }), { numRuns: 2000 });
  // near misses: one id changed in either half of its u32, M changed, an id moved into M
  t.not(tableKey([1, 2], 3), tableKey([1, 2 + 65536], 3));
  t.not(tableKey([1, 2], 3), tableKey([1, 3], 3));
  t.not(tableKey([1, 2], 3), tableKey([1, 2], 3 + 65536));
  t.not(tableKey([1, 2], 3), tableKey([1], 2));
  t.is(tableKey([], 5), tableKey([], 5));
});

test('tableKey: a list longer than one chunk (4096 ids) is keyed whole', (t) => {
  const ids = Array.from({ length: 10_000 }, (_, i) => (i * 2_654_435_761) >>> 0);
  const key = tableKey(ids, 1_048_573);
  t.is(key.length, 2 * ids.length + 2);
  t.is(key, tableKey([...ids], 1_048_573));
  for (const at of [0, 4095, 4096, 8191, 9999]) {
    const other = [...ids];
    other[at] = (other[at]! + 1) >>> 0;
    t.not(tableKey(other, 1_048_573), key, `id ${at} changed`);
  }
  t.not(tableKey(ids, 1_048_571), key);
  // the units are the ids' halves, in order
  t.is(key.charCodeAt(2 * 4096), ids[4096]! >>> 16);
  t.is(key.charCodeAt(2 * 4096 + 1), ids[4096]! & 0xffff);
});
