// Old-generation headroom for an agent's start: V8 lets the heap grow to four times what its last
// full GC kept (heap growing factor 4) until the first sync has put every frontend in the kernel,
// then goes back to its own choice.
//
// Why: a start at 100,000 Services grows the old generation from nothing to ~550 MiB live in ~20 s
// of CPU (the store, compile's state, the plan, the ops and the plan's chain), nearly all of it kept.
// V8 picks each next full-GC limit from how fast its GC ran against the allocation rate, and during
// a start that is a low factor (~1.1-1.4): full GCs came one after another, each marking everything
// kept so far (3-4 within the first sync alone, on the main thread and V8's workers: about half the
// sync's CPU was V8's GC, docs/perf-log.md sessions 24-26). 4 is V8's own upper bound for a heap this
// size, so the start never gets a lower factor than V8 would choose (2 did, at 10,000 Services: one
// full GC more in the apply); the garbage a start leaves is collected by the heap trimmer's full GC
// after the big sync (util/heap-trim.ts), which already runs with V8's own factor again. After the
// start nothing of this remains: a change's garbage is V8's to pace as before.
//
// With it, external memory (ArrayBuffers: the plan's typed arrays, the batches' Buffers) counts in
// V8's global limit, paced by the same factor (--external-memory-accounted-in-global-limit), instead
// of its own step of 64 MiB over what the last full GC left: at 100,000 Services the plan's typed
// arrays crossed that step at the sync's start, and the full GC it started freed nothing (a GC trace
// in process: 284.5 -> 284.0 MiB, "external memory pressure").
//
// A user who set either flag (node's command line, NODE_OPTIONS) keeps it: no headroom then.
//
// The price of factor 4 was the start's peak: from the list's last full GC (~390 MB live at 100,000
// Services) to the heap trimmer's after the first sync nothing was collected, and the first sync's
// garbage (the list's, the plan's and the diff's temporaries, ~300 MB, and ~160 MiB of dead
// ArrayBuffers) stood beside what it kept: RSS 1,230-1,315 MiB at the sync's end (V8's own factor, before
// the headroom: 1,108-1,135). So collect() starts a full GC twice in the first sync: before its
// plan (the list's, compile's and fit's garbage, and no limit GC of V8's own in the plan then) and
// once the plan and diff are made (their temporaries, before the apply adds its own): V8's moderate
// memory pressure signal, which starts incremental marking (concurrent, on V8's workers) and
// finalizes it while the sync goes on; each next limit is set with factor 4 again. Measured with the
// real agent at 100,000: peak 1,100-1,143 MiB against 1,172-1,313 (0.89), agent CPU to the sync's end
// 1.05 (docs/perf-log.md, session 27, p27rss, the first GC then before compile); with it before the plan
// and the plan's dead arrays freed at once, 1,018-1,049 (docs/perf-log.md, session 28, p28rss).
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';

/** then() once, on the next major GC that V8 reports (a turn after it ends) */
function afterMajorGc(then: () => void): void {
  const obs = new PerformanceObserver((list) => {
    if (!list.getEntries().some((e) => ((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) return;
    obs.disconnect();
    then();
  });
  obs.observe({ entryTypes: ['gc'] });
}

/** the growing factor during a start, as V8's flag has it: 1 + percent / 100 */
export const START_HEAP_GROWING_PERCENT = 300;

export interface HeapHeadroom {
  /** back to V8's own factor (idempotent); the next full GC's limit follows it */
  end(): void;
  /**
   * Starts one full GC now, marked concurrently with what runs next (V8's moderate memory pressure:
   * incremental marking), while the headroom is on: at most maxCollects times, and only when the
   * heap and external memory hold at least minBytes (a small start's heap has nothing worth a GC).
   * Returns whether it signalled (V8 ignores the signal while a marking it started is still on).
   */
  collect(): boolean;
}

/** collect() does nothing below this much heap used + external memory (not reached at 10,000 Services) */
export const COLLECT_MIN_BYTES = 256 * 2 ** 20;

export interface HeapHeadroomOptions {
  /** V8's memory pressure signal (the native addon's memoryPressure: 0 none, 1 moderate); without it collect() does nothing */
  pressure?: (level: 0 | 1) => void;
  /** heap used + external now (process.memoryUsage()) */
  used?: () => number;
  minBytes?: number;
  /**
   * glibc's malloc_trim (the native addon's mallocTrim), run trimDelayMs after the GC that collect()
   * started has ended: the ArrayBuffers it freed (V8's sweeper frees them after the GC) go back to
   * the kernel then, not after the sync
   */
  trim?: () => void;
  trimDelayMs?: number;
  /** how many GCs collect() may start (default 1) */
  maxCollects?: number;
}

/**
 * Sets V8's heap growing factor to 1 + percent / 100 (read at each full GC's end, when V8 sets the
 * next limit) until end(). `set` is v8.setFlagsFromString (a test's stand-in).
 */
export function heapHeadroom(percent = START_HEAP_GROWING_PERCENT, set: (flags: string) => void = setFlagsFromString,
  given: readonly string[] = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)], opts: HeapHeadroomOptions = {}): HeapHeadroom {
  if (!(Number.isInteger(percent) && percent > 0)) throw new RangeError(`heap headroom: ${percent} is not a positive integer percent`);
  if (given.some((f) => /^--(no-)?(heap[-_]growing[-_]percent|external[-_]memory[-_]accounted[-_]in[-_]global[-_]limit)\b/.test(f))) return { end() {}, collect: () => false };
  set(`--heap-growing-percent=${percent}`);
  set('--external-memory-accounted-in-global-limit');
  let on = true, collects = 0;
  const { pressure, used = () => { const m = process.memoryUsage(); return m.heapUsed + m.external; }, minBytes = COLLECT_MIN_BYTES, trim, trimDelayMs = 200, maxCollects = 1 } = opts;
  return {
    collect() {
      if (!on || collects >= maxCollects || !pressure || used() < minBytes) return false;
      collects++;
      // moderate: V8 starts incremental marking (Heap::CheckMemoryPressure) on this thread at once;
      // the level goes back to none at once, so nothing else is sized for memory rather than speed
      if (trim) afterMajorGc(() => { setTimeout(trim, trimDelayMs).unref(); });
      try {
        pressure(1);
      } finally {
        pressure(0);
      }
      return true;
    },
    end() {
      if (!on) return;
      on = false;
      // V8's own: the dynamic factor (percent 0, the flag's default) and external memory's own step
      set('--heap-growing-percent=0');
      set('--no-external-memory-accounted-in-global-limit');
    },
  };
}
