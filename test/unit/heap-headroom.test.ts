// util/heap-headroom.ts: V8's heap growing factor set for a start and given back to V8 once.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { heapHeadroom, START_HEAP_GROWING_PERCENT } from '../../src/util/heap-headroom.js';

const ON = ['--heap-growing-percent=150', '--external-memory-accounted-in-global-limit'];
const OFF = ['--heap-growing-percent=0', '--no-external-memory-accounted-in-global-limit'];

test('sets the growing percent and external memory in the global limit; end() gives V8 its own pacing back, once', (t) => {
  const set: string[] = [];
  const h = heapHeadroom(150, (f) => set.push(f), []);
  t.deepEqual(set, ON);
  h.end();
  h.end();
  t.deepEqual(set, [...ON, ...OFF]);
  set.length = 0;
  const d = heapHeadroom(undefined, (f) => set.push(f), ['--max-semi-space-size=16']);
  t.is(set[0], `--heap-growing-percent=${START_HEAP_GROWING_PERCENT}`);
  d.end();
});

test('a user who gave either flag keeps it: nothing set, nothing set back', (t) => {
  for (const given of [['--heap-growing-percent=30'], ['--heap_growing_percent=30'], ['--no-external-memory-accounted-in-global-limit'], ['--external_memory_accounted_in_global_limit']]) {
    const set: string[] = [];
    heapHeadroom(100, (f) => set.push(f), ['--max-semi-space-size=16', ...given]).end();
    t.deepEqual(set, [], given[0]);
  }
});

test('a percent that is not a positive integer is refused before any flag is set', (t) => {
  const set: string[] = [];
  for (const p of [0, -5, 1.5, Number.NaN]) t.throws(() => heapHeadroom(p, (f) => set.push(f)), { instanceOf: RangeError, message: /not a positive integer percent/ });
  t.deepEqual(set, []);
});

test('this node\'s V8 knows the flags (v8.setFlagsFromString ignores an unknown one without a word)', (t) => {
  const list = execFileSync(process.execPath, ['--v8-options'], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  t.regex(list, /^\s+--heap-growing-percent \(/m);
  t.regex(list, /^\s+--external-memory-accounted-in-global-limit \(/m);
  t.notThrows(() => heapHeadroom().end());
});
