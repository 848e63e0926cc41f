// Old-generation headroom for an agent's start: V8 lets the heap grow to four times what its last
// full GC kept (heap growing factor 4) until the first sync has put every frontend in the kernel,
// then goes back to its own choice.
//
// Why: a start at 100,000 Services grows the old generation from nothing to ~550 MiB live in ~20 s
// of CPU (the store, compile's state, the plan, the ops and the plan's chain), nearly all of it kept.
// V8 picks each next full-GC limit from how fast its GC ran against the allocation rate, and during
// a start that is a low factor (~1.1-1.4): full GCs came one after another, each marking everything
// kept so far (3-4 within the first sync alone, on the main thread and V8's workers: about half the
// sync's CPU was V8's GC, docs/PERF.md sessions 24-26). 4 is V8's own upper bound for a heap this
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
import { setFlagsFromString } from 'node:v8';

/** the growing factor during a start, as V8's flag has it: 1 + percent / 100 */
export const START_HEAP_GROWING_PERCENT = 300;

export interface HeapHeadroom {
  /** back to V8's own factor (idempotent); the next full GC's limit follows it */
  end(): void;
}

/**
 * Sets V8's heap growing factor to 1 + percent / 100 (read at each full GC's end, when V8 sets the
 * next limit) until end(). `set` is v8.setFlagsFromString (a test's stand-in).
 */
export function heapHeadroom(percent = START_HEAP_GROWING_PERCENT, set: (flags: string) => void = setFlagsFromString,
  given: readonly string[] = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]): HeapHeadroom {
  if (!(Number.isInteger(percent) && percent > 0)) throw new RangeError(`heap headroom: ${percent} is not a positive integer percent`);
  if (given.some((f) => /^--(no-)?(heap[-_]growing[-_]percent|external[-_]memory[-_]accounted[-_]in[-_]global[-_]limit)\b/.test(f))) return { end() {} };
  set(`--heap-growing-percent=${percent}`);
  set('--external-memory-accounted-in-global-limit');
  let on = true;
  return {
    end() {
      if (!on) return;
      on = false;
      // V8's own: the dynamic factor (percent 0, the flag's default) and external memory's own step
      set('--heap-growing-percent=0');
      set('--no-external-memory-accounted-in-global-limit');
    },
  };
}
