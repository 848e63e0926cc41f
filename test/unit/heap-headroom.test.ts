// util/heap-headroom.ts: V8's heap growing factor set for a start and given back to V8 once.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { heapHeadroom, START_HEAP_GROWING_PERCENT } from '../../src/util/heap-headroom.js';

test('sets the growing percent, and end() gives V8 its own factor back once', (t) => {
  const set: string[] = [];
  const h = heapHeadroom(150, (f) => set.push(f));
  t.deepEqual(set, ['--heap-growing-percent=150']);
  h.end();
  h.end();
  t.deepEqual(set, ['--heap-growing-percent=150', '--heap-growing-percent=0']);
  const d = heapHeadroom(undefined, (f) => set.push(f));
  t.is(set.at(-1), `--heap-growing-percent=${START_HEAP_GROWING_PERCENT}`);
  d.end();
});

test('a percent that is not a positive integer is refused before any flag is set', (t) => {
  const set: string[] = [];
  for (const p of [0, -5, 1.5, Number.NaN]) t.throws(() => heapHeadroom(p, (f) => set.push(f)), { instanceOf: RangeError, message: /not a positive integer percent/ });
  t.deepEqual(set, []);
});

test('this node\'s V8 knows the flag (v8.setFlagsFromString ignores an unknown one without a word)', (t) => {
  const list = execFileSync(process.execPath, ['--v8-options'], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  t.regex(list, /^\s+--heap-growing-percent \(/m);
  t.notThrows(() => heapHeadroom().end());
});
