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

test('collect() starts one full GC through V8\'s moderate memory pressure, then sets the level back; once, while the headroom is on', (t) => {
  const levels: number[] = [];
  let used = 512 * 2 ** 20;
  const h = heapHeadroom(300, () => {}, [], { pressure: (l) => levels.push(l), used: () => used, minBytes: 256 * 2 ** 20 });
  t.true(h.collect());
  t.deepEqual(levels, [1, 0]);
  t.false(h.collect());
  t.deepEqual(levels, [1, 0]);
  h.end();
  t.false(h.collect());
  // the level goes back to none even when the signal throws
  const levels2: number[] = [];
  const h2 = heapHeadroom(300, () => {}, [], { pressure: (l) => { levels2.push(l); if (l === 1) throw new Error('boom'); }, used: () => used });
  t.throws(() => h2.collect(), { message: 'boom' });
  t.deepEqual(levels2, [1, 0]);
  // a small heap: nothing worth a GC; a heap grown past minBytes later is collected then
  const levels3: number[] = [];
  used = 100 * 2 ** 20;
  const h3 = heapHeadroom(300, () => {}, [], { pressure: (l) => levels3.push(l), used: () => used, minBytes: 256 * 2 ** 20 });
  t.false(h3.collect());
  used = 300 * 2 ** 20;
  t.true(h3.collect());
  t.deepEqual(levels3, [1, 0]);
});

test('collect() does nothing without the pressure signal, after end(), or when the user gave the flags (no headroom)', (t) => {
  t.false(heapHeadroom(300, () => {}, [], { used: () => 2 ** 30 }).collect());
  const levels: number[] = [];
  const h = heapHeadroom(300, () => {}, [], { pressure: (l) => levels.push(l), used: () => 2 ** 30 });
  h.end();
  t.false(h.collect());
  t.false(heapHeadroom(300, () => {}, ['--heap-growing-percent=50'], { pressure: (l) => levels.push(l), used: () => 2 ** 30 }).collect());
  t.deepEqual(levels, []);
});

test('collect() with maxCollects: that many signals, each checked against minBytes', (t) => {
  const levels: number[] = [];
  let used = 512 * 2 ** 20;
  const h = heapHeadroom(300, () => {}, [], { pressure: (l) => levels.push(l), used: () => used, minBytes: 256 * 2 ** 20, maxCollects: 2 });
  t.true(h.collect());
  used = 100 * 2 ** 20;
  t.false(h.collect());
  used = 600 * 2 ** 20;
  t.true(h.collect());
  t.false(h.collect());
  t.deepEqual(levels, [1, 0, 1, 0]);
});
