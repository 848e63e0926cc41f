import test from 'ava';
import { HeapTrimmer } from '../../src/util/heap-trim.js';

const MiB = 2 ** 20;

test('trims once external memory has fallen by the threshold from its peak, then follows the new level', (t) => {
  let ext = 10 * MiB;
  const trims: { peak: number; now: number }[] = [];
  const h = new HeapTrimmer({ trim: () => true, external: () => ext, minDropBytes: 16 * MiB, onTrim: ({ peak, now }) => trims.push({ peak, now }) });
  t.false(h.check());
  ext = 200 * MiB; // a first sync's slots
  t.false(h.check());
  ext = 190 * MiB; // a small drop: not worth a walk over the free lists
  t.false(h.check());
  ext = 14 * MiB; // released and collected
  t.true(h.check());
  t.deepEqual(trims, [{ peak: 200 * MiB, now: 14 * MiB }]);
  // a quiet node: no further trim
  for (let i = 0; i < 5; i++) t.false(h.check());
  ext = 40 * MiB;
  t.false(h.check());
  ext = 20 * MiB; // 20 MiB below the new peak
  t.true(h.check());
  t.is(trims.length, 2);
});

test('a trim that releases nothing is still counted as done (no retry loop)', (t) => {
  let ext = 100 * MiB, calls = 0;
  const h = new HeapTrimmer({ trim: () => { calls++; return false; }, external: () => ext });
  h.check();
  ext = 10 * MiB;
  t.true(h.check());
  t.false(h.check());
  t.is(calls, 1);
});
