// V8's worker threads (named V8Worker: its optimizing compiler's jobs, concurrent marking, parallel
// scavenges) given a lower scheduling priority than the agent's main thread once the agent has started.
//
// Why: after the warm-up V8 goes on optimizing the one-change path for hundreds of changes (TurboFan
// jobs of 1-5 ms on a worker, docs/PERF.md sessions 28-30). A job that runs while a change's sync
// does takes a core from the process's share, and on a busy node the sync's main thread then waits
// for one: of 2,700 one-change syncs at 10,000 Services (session 29), the slow ones that ran beside
// such a job had 1.2-2.0 ms of main-thread CPU, 3.5-4.5 ms more on the workers, and 3-8 ms on the run
// queue. A worker's job is never waited for on the change's path (the code it makes is installed
// when ready), so under contention it is the one to wait. Linux takes a thread's nice value per
// thread (setpriority(PRIO_PROCESS, tid)); raising it needs no privilege, and where no other thread
// wants the CPU it changes nothing. Nothing lowers it again: the start (the first sync's full GCs,
// which wait for the workers' marking) is over when this runs.
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How much nicer than the main thread V8's workers run (KBP_V8_WORKER_NICE overrides; 0: as they are). */
export const V8_WORKER_NICE = 10;

/** The nice increment from KBP_V8_WORKER_NICE (an integer 0-19), else the default; bad input throws. */
export function workerNice(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.KBP_V8_WORKER_NICE;
  if (v === undefined || v === '') return V8_WORKER_NICE;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n > 19) throw new Error(`KBP_V8_WORKER_NICE must be an integer from 0 to 19, got '${v}'`);
  return n;
}

export interface ThreadView {
  /** this process's thread ids */
  tids(): string[];
  /** a thread's name (/proc/self/task/TID/comm), undefined when it has gone */
  comm(tid: string): string | undefined;
  getPriority(tid: number): number;
  setPriority(tid: number, nice: number): void;
}

const procThreads: ThreadView = {
  tids: () => readdirSync('/proc/self/task'),
  comm: (tid) => {
    try {
      return readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim();
    } catch {
      return undefined;
    }
  },
  getPriority: (tid) => getPriority(tid),
  setPriority: (tid, nice) => setPriority(tid, nice),
};

/**
 * Sets each V8Worker thread's nice value to the main thread's plus `by` (at most 19). Returns the
 * threads changed; a thread that went away meanwhile is skipped, any other failure throws.
 */
export function deprioritizeV8Workers(by: number, view: ThreadView = procThreads): number[] {
  if (by <= 0) return [];
  const want = Math.min(19, view.getPriority(0) + by);
  const done: number[] = [];
  for (const tid of view.tids()) {
    if (view.comm(tid) !== 'V8Worker') continue;
    try {
      view.setPriority(Number(tid), want);
    } catch (e) {
      if ((e as { info?: { code?: string } }).info?.code === 'ESRCH' || view.comm(tid) === undefined) continue;
      throw e;
    }
    done.push(Number(tid));
  }
  return done;
}
