// IdMap (src/plan/id-map.ts) stands in for a plan's Map<number, ...>: after any sequence of sets,
// deletes and clears it must answer get/has/size and iterate the same entries as a Map, in ascending
// id order, also once an id far past the others (or not an integer) has moved it onto a Map.
import test from 'ava';
import fc from 'fast-check';
import { IdMap } from '../../src/plan/id-map.js';
import { buildPlan } from '../../src/plan/plan.js';
import { be, fe } from './plan-helpers.js';

type Op = { k: 'set'; id: number; v: number } | { k: 'delete'; id: number } | { k: 'clear' };

const arbId = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 32 - 1 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, 2 ** 32, 70_000, 200_000) },
);
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('set' as const), id: arbId, v: fc.integer() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('delete' as const), id: arbId }) },
  { weight: 1, arbitrary: fc.constant({ k: 'clear' as const }) },
);

test('IdMap answers as a Map does after any sets, deletes and clears, iterating by ascending id', (t) => {
  fc.assert(fc.property(fc.array(arbOp, { maxLength: 200 }), fc.array(arbId, { maxLength: 20 }), (ops, probes) => {
    const m = new IdMap<{ v: number }>(), ref = new Map<number, { v: number }>();
    for (const op of ops) {
      if (op.k === 'set') {
        const v = { v: op.v };
        t.is(m.set(op.id, v), m);
        ref.set(op.id, v);
      } else if (op.k === 'delete') t.is(m.delete(op.id), ref.delete(op.id));
      else {
        m.clear();
        ref.clear();
      }
      t.is(m.size, ref.size);
    }
    for (const id of [...probes, ...ref.keys()]) {
      t.is(m.get(id), ref.get(id));
      t.is(m.has(id), ref.has(id));
    }
    const sorted = [...ref].sort((a, b) => a[0] - b[0]);
    const asSorted = (xs: [number, unknown][]) => xs.slice().sort((a, b) => a[0] - b[0]);
    // ascending while dense; a Map's order once moved onto one (ids were in order when it moved)
    t.deepEqual(asSorted([...m]), sorted);
    t.deepEqual(asSorted([...m.entries()]), sorted);
    t.deepEqual([...m.keys()].sort((a, b) => a - b), sorted.map(([k]) => k));
    t.deepEqual([...m.values()].length, sorted.length);
    const seen: [number, unknown][] = [];
    m.forEach((v, k, map) => {
      t.is(map, m);
      seen.push([k, v]);
    });
    t.deepEqual(asSorted(seen), sorted);
  }), { numRuns: 300 });
});

test('IdMap iterates dense ids in ascending order whatever order they were set in', (t) => {
  const m = new IdMap<string>();
  for (const id of [5, 1, 3, 2, 9]) m.set(id, `v${id}`);
  t.deepEqual([...m.keys()], [1, 2, 3, 5, 9]);
  m.delete(3);
  m.set(0, 'v0');
  t.deepEqual([...m.values()], ['v0', 'v1', 'v2', 'v5', 'v9']);
  t.true(m.ascending);
  // an id far past the rest: a Map from here on, in the order the entries were in, then appended
  m.set(2 ** 31, 'far');
  m.set(4, 'v4');
  t.false(m.ascending);
  t.deepEqual([...m.keys()], [0, 1, 2, 5, 9, 2 ** 31, 4]);
  t.is(m.get(2 ** 31), 'far');
});

test('IdMap refuses an undefined value, which would read as absent', (t) => {
  const m = new IdMap<string | undefined>();
  t.throws(() => m.set(1, undefined), { message: /no undefined values \(id 1\)/ });
  t.is(m.size, 0);
});

test('a full build keys its backends and tables by id, and a read of any id answers as its Map did', (t) => {
  const p = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.2'), be('10.244.1.1')]), fe('10.96.0.2', 80, [be('10.244.1.3')])] },
    undefined, { seed: 7 });
  t.deepEqual([...p.backends.keys()], [1, 2, 3]);
  t.deepEqual([...p.backends.values()].map((b) => b.address), ['10.244.1.1', '10.244.1.2', '10.244.1.3']);
  t.deepEqual([...p.tables.keys()], [1, 2]);
  t.is(p.backends.get(4), undefined);
  t.is(p.backends.get(0), undefined);
  t.false(p.backends.has(2 ** 32 - 1));
});

test('IdMap: its walks are iterators as a Map\'s are (helpers, an entry set during the walk visited)', (t) => {
  const m = new IdMap<string>([[3, 'c'], [1, 'a']]);
  // Iterator.prototype's helpers (ES2025: not in this project's lib), as a Map's iterators have them
  const helpers = m.values() as unknown as { map(f: (v: string) => string): { toArray(): string[] } };
  t.deepEqual(helpers.map((v) => v.toUpperCase()).toArray(), ['A', 'C']);
  t.deepEqual([...m.keys()], [1, 3]);
  const seen: [number, string][] = [];
  for (const e of m) {
    seen.push(e);
    if (e[0] === 1) m.set(5, 'e');
  }
  t.deepEqual(seen, [[1, 'a'], [3, 'c'], [5, 'e']]);
  const it = m.values();
  t.is(it[Symbol.iterator](), it);
  t.deepEqual([it.next(), [...it], it.next()], [{ value: 'a', done: false }, ['c', 'e'], { value: undefined, done: true }]);
});
