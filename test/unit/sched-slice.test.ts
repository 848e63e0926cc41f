import test from 'ava';
import { readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { SCHED_SLICE_US, schedSliceNs } from '../../src/util/sched-slice.js';
import { native, nativeAvailable } from '../../src/dataplane/bpf/native/addon.js';

test('KBP_SCHED_SLICE_US: 0 or 100-100000 microseconds, else a clear error; unset is the default', (t) => {
  t.is(schedSliceNs({}), SCHED_SLICE_US * 1000);
  t.is(schedSliceNs({ KBP_SCHED_SLICE_US: '' }), SCHED_SLICE_US * 1000);
  t.is(schedSliceNs({ KBP_SCHED_SLICE_US: '0' }), 0);
  t.is(schedSliceNs({ KBP_SCHED_SLICE_US: '100' }), 100_000);
  t.is(schedSliceNs({ KBP_SCHED_SLICE_US: '100000' }), 100_000_000);
  for (const bad of ['99', '100001', '-5', '0.5', 'short']) {
    t.throws(() => schedSliceNs({ KBP_SCHED_SLICE_US: bad }), { message: /KBP_SCHED_SLICE_US must be 0 \(the kernel's default\) or an integer from 100 to 100000 microseconds/ });
  }
});

/** the calling thread's se.slice in ns (/proc/thread-self/sched), undefined where the kernel shows none */
function slice(): number | undefined {
  const m = /^se\.slice\s+:\s+(\d+)/m.exec(readFileSync('/proc/thread-self/sched', 'latin1'));
  return m ? Number(m[1]) : undefined;
}

test('the addon\'s schedSlice sets the calling thread\'s slice and keeps its nice value; 0 gives the default back', (t) => {
  if (!nativeAvailable().ok) return t.pass('no native addon built');
  const before = slice();
  if (before === undefined) return t.pass('this kernel shows no per-task slice (before 6.12)');
  const nice = getPriority(0);
  // a nice value of its own first: the call must not reset it to 0
  setPriority(0, Math.min(19, nice + 2));
  try {
    t.is(native().schedSlice(300_000), 0);
    t.is(slice(), 300_000);
    t.is(getPriority(0), Math.min(19, nice + 2));
    t.is(native().schedSlice(0), 0);
    t.is(slice(), before);
    t.throws(() => native().schedSlice(-1));
  } finally {
    // nice can be raised freely, lowered only by root: a test run as a user leaves its thread nicer
    try { setPriority(0, nice); } catch { /* not root */ }
  }
});
