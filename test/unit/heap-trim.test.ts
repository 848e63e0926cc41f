import test from 'ava';
import { fullGc, HeapTrimmer } from '../../src/util/heap-trim.js';

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

test('after a big sync: one full GC when the loop is free, then a trim; small syncs and a stopped trimmer do nothing', async (t) => {
  const events: string[] = [];
  let used = 400 * MiB;
  const h = new HeapTrimmer({
    trim: () => { events.push('trim'); return true; }, external: () => 5 * MiB, used: () => used, trimDelayMs: 10,
    gc: () => { events.push('gc'); used = 150 * MiB; },
    onCompact: ({ before, after, pauseMs }) => events.push(`compact ${before / MiB} -> ${after / MiB} ${pauseMs >= 0}`),
  });
  t.false(h.afterSync(3)); // one change: V8's own GCs suffice
  t.true(h.afterSync(20_000)); // a first sync
  t.false(h.afterSync(20_000)); // one already scheduled
  t.deepEqual(events, []); // not inside the sync's own turn
  // timers: wait for them, bounded, however loaded the machine
  for (let i = 0; i < 1000 && events.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(events, ['gc', 'compact 400 -> 150 true', 'trim']);
  t.true(h.afterSync(5000)); // the next big sync gets its own
  h.stop();
  await new Promise((r) => setTimeout(r, 100));
  t.is(events.length, 3);
  t.false(h.afterSync(5000));
  const noGc = new HeapTrimmer({ trim: () => true });
  t.false(noGc.afterSync(1e6));
});

test('fullGc: a callable collection without --expose-gc on the command line', (t) => {
  const gc = fullGc();
  t.is(typeof gc, 'function');
  gc();
  t.pass();
});
