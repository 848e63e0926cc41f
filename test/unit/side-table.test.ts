// SideTable (util/side-table.ts): a WeakMap's get/set/has/delete kept on the key object, unseen by
// JSON, spreads and deep comparisons; a frozen key falls back to a WeakMap.
import test from 'ava';
import { SideTable } from '../../src/util/side-table.js';

test('values live on the key, invisible to JSON, keys, spreads and deepEqual; two tables do not share', (t) => {
  const a = new SideTable<object, number>('a'), b = new SideTable<object, string>('b');
  const k = { x: 1 };
  t.false(a.has(k));
  t.is(a.get(k), undefined);
  a.set(k, 5).set(k, 6);
  b.set(k, 'y');
  t.is(a.get(k), 6);
  t.is(b.get(k), 'y');
  t.true(a.has(k));
  t.is(JSON.stringify(k), '{"x":1}');
  t.deepEqual(Object.keys(k), ['x']);
  t.deepEqual(k, { x: 1 });
  // a copy is another object: no value, as a WeakMap would have none for it
  t.false(a.has({ ...k }));
  t.true(a.delete(k));
  t.false(a.delete(k));
  t.false(a.has(k));
  t.is(b.get(k), 'y');
  // undefined is a value like any other (has, not get, tells it from none)
  a.set(k, undefined as unknown as number);
  t.true(a.has(k));
});

test('a key that cannot take a property (frozen, sealed, not extensible) is kept in a WeakMap', (t) => {
  const a = new SideTable<object, number>('a');
  for (const k of [Object.freeze({}), Object.seal({}), Object.preventExtensions({})]) {
    a.set(k, 1);
    t.is(a.get(k), 1);
    t.true(a.has(k));
    a.set(k, 2);
    t.is(a.get(k), 2);
    t.true(a.delete(k));
    t.false(a.has(k));
  }
});
