import test from 'ava';
import { until } from '../../testing/wait.js';
import { fullGc, HeapTrimmer, minorGc, pressureGc, youngCapacity, youngUsed } from '../../src/util/heap-trim.js';

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

test('after work: the young generation is collected once the process is quiet, when it holds enough; once per burst, not after stop', async (t) => {
  let young = 3 * MiB, minors = 0;
  const sweeps: { before: number; after: number }[] = [];
  const h = new HeapTrimmer({
    trim: () => true, external: () => 0, minorGc: () => { minors++; young = 64 * 1024; }, youngUsed: () => young, youngCapacity: () => 16 * MiB,
    youngSweepDelayMs: 20, onSweep: ({ before, after }) => sweeps.push({ before, after }),
  });
  // a burst of work (syncs, scrapes) in one turn: one collection after it, not one per call
  for (let i = 0; i < 5; i++) t.true(h.afterWork());
  t.is(minors, 0);
  await until(() => minors > 0, 5000, 5);
  await new Promise((r) => setTimeout(r, 60));
  t.is(minors, 1);
  t.deepEqual(sweeps, [{ before: 3 * MiB, after: 64 * 1024 }]);
  // little garbage: nothing to gain (the check ran: its timer is gone)
  h.afterWork();
  await new Promise((r) => setTimeout(r, 100));
  t.is(minors, 1);
  young = 5 * MiB;
  h.afterWork();
  h.stop();
  await new Promise((r) => setTimeout(r, 100));
  t.is(minors, 1);
  t.false(h.afterWork());
});

test('after work: a young generation V8 keeps small (1 MiB after a reducing GC) is collected at a share of its capacity, not only at 1 MiB', async (t) => {
  // V8 scavenges by itself at 80 % of the capacity: with 1 MiB of it, a bound of 1 MiB was never
  // reached and V8's own scavenges landed between a change's watch event and its sync
  let young = 0, cap = MiB, minors = 0;
  const h = new HeapTrimmer({
    trim: () => true, external: () => 0, minorGc: () => { minors++; young = 16 * 1024; }, youngUsed: () => young, youngCapacity: () => cap,
    youngSweepDelayMs: 5,
  });
  // two endpoint changes' garbage (~190 KiB each) stay below it, and below V8's 80 % after it
  t.is(h.youngSweepBound(), 384 * 1024);
  // half full at 1 MiB: collected once quiet (the old bound, 1 MiB, never collected it)
  young = 512 * 1024;
  t.true(h.afterWork());
  await until(() => minors === 1, 5000, 5);
  t.is(young, 16 * 1024);
  // a grown young generation: the 1 MiB bound again
  cap = 16 * MiB;
  t.is(h.youngSweepBound(), MiB);
  // an unknown capacity (0): the 1 MiB bound
  cap = 0;
  t.is(h.youngSweepBound(), MiB);
  h.stop();
});

test('youngCapacity() and youngUsed() read V8\'s new space', (t) => {
  const cap = youngCapacity();
  t.true(cap >= 256 * 1024, `capacity ${cap}`);
  t.true(youngUsed() <= cap);
});

test('minorGc() runs a real scavenge', (t) => {
  const keep: object[] = [];
  for (let i = 0; i < 1000; i++) keep.push({ i });
  t.notThrows(() => minorGc()());
  t.is(keep.length, 1000);
});

test('the full GC after a big sync waits while a sync is due (busy), bounded by maxDeferMs', async (t) => {
  let busy = true, gcs = 0, gcWhileBusy = 0;
  const deferred: number[] = [];
  const h = new HeapTrimmer({
    trim: () => true, external: () => 0, trimDelayMs: 1, deferStepMs: 2, maxDeferMs: 60_000, busy: () => busy,
    gc: () => { gcs++; if (busy) gcWhileBusy++; }, onCompact: ({ deferredMs }) => deferred.push(deferredMs),
  });
  t.true(h.afterSync(20_000));
  await new Promise((r) => setTimeout(r, 60));
  t.is(gcs, 0); // a change's sync is due: the GC waits
  busy = false;
  await until(() => gcs > 0, 5000, 5);
  t.is(gcs, 1);
  t.is(gcWhileBusy, 0);
  t.true(deferred[0]! >= 50);
  h.stop();
  // always busy: the GC runs once maxDeferMs has passed
  gcs = 0;
  busy = true;
  const bounded = new HeapTrimmer({ trim: () => true, external: () => 0, deferStepMs: 2, maxDeferMs: 30, busy: () => true, gc: () => { gcs++; } });
  t.true(bounded.afterSync(20_000));
  await until(() => gcs > 0, 5000, 5);
  t.is(gcs, 1);
  bounded.stop();
  // stopped while put off: no GC
  gcs = 0;
  const stopped = new HeapTrimmer({ trim: () => true, external: () => 0, deferStepMs: 2, busy: () => true, gc: () => { gcs++; } });
  t.true(stopped.afterSync(20_000));
  await new Promise((r) => setTimeout(r, 20));
  stopped.stop();
  await new Promise((r) => setTimeout(r, 30));
  t.is(gcs, 0);
});

// The agent's start: what waited for the first sync (a kubelet probe, a /metrics scrape) is answered
// before the GC's pause (~0.5-0.9 s at 10,000 Services, seconds at 100,000), not after it.
test('the full GC after a big sync waits settleMs first; `then` runs after that GC, or on the next timer without one', async (t) => {
  const events: string[] = [];
  let gcAt = NaN;
  const h = new HeapTrimmer({ trim: () => true, external: () => 0, trimDelayMs: 1, settleMs: 150, gc: () => { events.push('gc'); gcAt = performance.now(); } });
  const t0 = performance.now();
  t.true(h.afterSync(20_000, () => events.push('then')));
  // a request answered while the GC settles
  await new Promise((r) => setTimeout(r, 20));
  events.push('request');
  await until(() => events.includes('then'), 5000, 5);
  t.deepEqual(events, ['request', 'gc', 'then']);
  // Node's timers may fire a millisecond early
  t.true(gcAt - t0 >= 148, `the GC ran ${gcAt - t0} ms after the sync`);
  h.stop();
  // no GC for a small sync, or without gc: `then` still runs, once, on a timer (not inside the sync's turn)
  for (const trimmer of [new HeapTrimmer({ trim: () => true, gc: () => events.push('gc') }), new HeapTrimmer({ trim: () => true })]) {
    let ran = 0;
    t.false(trimmer.afterSync(3, () => ran++));
    t.is(ran, 0);
    await until(() => ran > 0, 5000, 5);
    await new Promise((r) => setTimeout(r, 20));
    t.is(ran, 1);
    trimmer.stop();
  }
  t.is(events.filter((e) => e === 'gc').length, 1);
});

test('pressureGc: incremental marking off for the call only, back on (and the level back to none) even when it throws', (t) => {
  const calls: string[] = [];
  const flags = (f: string) => { calls.push(f); };
  pressureGc((level) => { calls.push(`level ${level}`); }, flags)();
  t.deepEqual(calls, ['--no-incremental-marking', 'level 2', 'level 0', '--incremental-marking']);
  calls.length = 0;
  t.throws(() => pressureGc((level) => { calls.push(`level ${level}`); if (level === 2) throw new Error('no addon'); }, flags)(), { message: 'no addon' });
  t.deepEqual(calls, ['--no-incremental-marking', 'level 2', 'level 0', '--incremental-marking']);
});
