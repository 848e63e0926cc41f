// bench/agent-change.bench.ts's placement of a slow change (KBP_BENCH_AGENT_THREADS): what held it,
// from the agent's main thread over the change's window and the bench's own rename call. The cases
// are changes of session 28's runs at 10,000 Services (docs/perf-log.md, p28p99).
import test from 'ava';
import { slowCause } from '../../bench/agent-change.bench.js';

test('a change whose main thread waited on the run queue for most of its excess is the run queue\'s', (t) => {
  // 49.0 ms to the kernel, the main thread ready but not running for 49.5 of them
  t.is(slowCause(49.0, 0.2, { cpuMs: 2.5, waitMs: 49.5 }), 'run queue');
  // 6.1 ms: 4.4 of them waiting (past the typical 2 ms: 4.1, half of it 2.05)
  t.is(slowCause(6.1, 0.2, { cpuMs: 2.0, waitMs: 4.4 }), 'run queue');
});

test('a change whose time is the bench\'s own rename call, the agent idle, is the bench\'s', (t) => {
  // 47.0 ms to the kernel; the rename call took 47.4 ms and the agent neither ran long nor waited
  t.is(slowCause(47.0, 47.4, { cpuMs: 1.9, waitMs: 0 }), 'rename late');
});

test('the rest is the agent\'s own work (CPU, a GC, a wait of its own)', (t) => {
  // 6.3 ms, 5.1 of the main thread's CPU, 2.0 of waiting (under half of 4.3)
  t.is(slowCause(6.3, 0.2, { cpuMs: 5.1, waitMs: 2.0 }), 'agent work');
  // a long rename that did not cover the change, the agent busy meanwhile
  t.is(slowCause(12, 3, { cpuMs: 9, waitMs: 0.5 }), 'agent work');
  // no main-thread figure (the thread not read): not blamed on the run queue
  t.is(slowCause(8, 0.1, undefined), 'agent work');
});
