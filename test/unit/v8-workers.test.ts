import test from 'ava';
import { getPriority } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';
import { deprioritizeV8Workers, V8_WORKER_NICE, workerNice, type ThreadView } from '../../src/util/v8-workers.js';

function view(threads: Record<string, string>, main = 0): ThreadView & { set: Map<number, number> } {
  const set = new Map<number, number>();
  return {
    set,
    tids: () => Object.keys(threads),
    comm: (tid) => threads[tid],
    getPriority: (tid) => (tid === 0 ? main : set.get(tid) ?? main),
    setPriority: (tid, nice) => { set.set(tid, nice); },
  };
}

test('only the V8Worker threads are made nicer, by the increment over the main thread, at most 19', (t) => {
  const v = view({ 100: 'MainThread', 101: 'DelayedTaskSche', 102: 'V8Worker', 103: 'V8Worker', 104: 'libuv-worker', 105: 'SignalInspector' });
  t.deepEqual(deprioritizeV8Workers(10, v), [102, 103]);
  t.deepEqual([...v.set], [[102, 10], [103, 10]]);
  const high = view({ 7: 'V8Worker' }, 15);
  deprioritizeV8Workers(10, high);
  t.deepEqual([...high.set], [[7, 19]]);
});

test('an increment of 0 changes nothing', (t) => {
  const v = view({ 102: 'V8Worker' });
  t.deepEqual(deprioritizeV8Workers(0, v), []);
  t.is(v.set.size, 0);
});

test('a thread that ended meanwhile is skipped; another failure is the caller\'s', (t) => {
  const gone = view({ 102: 'V8Worker', 103: 'V8Worker' });
  gone.setPriority = (tid, nice) => {
    if (tid === 102) throw Object.assign(new Error('gone'), { info: { code: 'ESRCH' } });
    gone.set.set(tid, nice);
  };
  t.deepEqual(deprioritizeV8Workers(5, gone), [103]);
  const denied = view({ 102: 'V8Worker' });
  denied.setPriority = () => { throw Object.assign(new Error('denied'), { info: { code: 'EACCES' } }); };
  t.throws(() => deprioritizeV8Workers(5, denied), { message: 'denied' });
});

test('KBP_V8_WORKER_NICE: an integer 0-19, else a clear error', (t) => {
  t.is(workerNice({}), V8_WORKER_NICE);
  t.is(workerNice({ KBP_V8_WORKER_NICE: '' }), V8_WORKER_NICE);
  t.is(workerNice({ KBP_V8_WORKER_NICE: '0' }), 0);
  t.is(workerNice({ KBP_V8_WORKER_NICE: '19' }), 19);
  for (const bad of ['20', '-1', '2.5', 'high']) t.throws(() => workerNice({ KBP_V8_WORKER_NICE: bad }), { message: /KBP_V8_WORKER_NICE must be an integer from 0 to 19/ });
});

test('in this process: V8\'s workers end up nicer than the main thread, which keeps its own', (t) => {
  const before = getPriority(0);
  const tids = deprioritizeV8Workers(3);
  t.true(tids.length > 0, 'node runs V8 worker threads');
  t.is(getPriority(0), before);
  for (const tid of tids) {
    t.is(readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim(), 'V8Worker');
    t.is(getPriority(tid), Math.min(19, before + 3));
  }
  // the other threads keep the main thread's value
  for (const tid of readdirSync('/proc/self/task').map(Number)) if (!tids.includes(tid)) t.is(getPriority(tid), before);
});
