// The agent's main thread asks the kernel for a short scheduler slice once its start is over.
//
// Why: a change's time to the kernel at 10,000 Services is ~1.6 ms, ~1 ms of it the main thread's
// CPU; its p99 over 30 changes was set by the main thread waiting on the run queue, ready but not
// running, while other processes had both cores (docs/PERF.md, sessions 28-30: 2-97 ms). Linux 6.12
// and later schedule with EEVDF and take a slice per thread (sched_attr.sched_runtime under
// SCHED_OTHER, 0.1-100 ms; the default 0.75 ms x (1 + log2 CPUs)): a task that wakes with a shorter
// slice than the running one's gets an earlier deadline and preempts it at once, where one with the
// default slice waits for the running one's slice to end. Its CPU share is its weight's as before
// (the nice value is kept); it only runs in shorter turns. No privilege is needed; older kernels
// ignore the slice. V8's and libuv's threads keep the default: nothing of a change waits for them.
/** The main thread's slice in microseconds after the start (KBP_SCHED_SLICE_US overrides; 0: the kernel's default). */
export const SCHED_SLICE_US = 300;

/** The slice in ns from KBP_SCHED_SLICE_US (0, or 100-100000 us), else the default; bad input throws. */
export function schedSliceNs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.KBP_SCHED_SLICE_US;
  if (v === undefined || v === '') return SCHED_SLICE_US * 1000;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || (n !== 0 && (n < 100 || n > 100_000))) {
    throw new Error(`KBP_SCHED_SLICE_US must be 0 (the kernel's default) or an integer from 100 to 100000 microseconds, got '${v}'`);
  }
  return n * 1000;
}
