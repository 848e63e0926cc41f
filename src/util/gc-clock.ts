// V8's garbage collections as the process saw them (perf_hooks 'gc' entries), kept for a minute so a
// sync can say how much of its time was GC (issue 10: the one-change sync's p99 was suspected to be
// GC of garbage made elsewhere: scrapes, rescans). Entries reach the observer after the GC, a turn of
// the event loop later, so a caller asks about a window once it has passed (settled()).
import { PerformanceObserver, constants } from 'node:perf_hooks';

export interface GcEntry { start: number; ms: number; major: boolean }

export class GcClock {
  readonly #entries: GcEntry[] = [];
  readonly #obs: PerformanceObserver;

  constructor(readonly keepMs = 60_000) {
    this.#obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = ((e as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind;
        this.#entries.push({ start: e.startTime, ms: e.duration, major: kind === constants.NODE_PERFORMANCE_GC_MAJOR });
      }
      const old = performance.now() - this.keepMs;
      let k = 0;
      while (k < this.#entries.length && this.#entries[k]!.start < old) k++;
      if (k) this.#entries.splice(0, k);
    });
    this.#obs.observe({ entryTypes: ['gc'] });
  }

  /** GC pauses that began within [from, to] (performance.now() times): count, ms, and how many were major */
  within(from: number, to: number): { count: number; ms: number; major: number } {
    let count = 0, ms = 0, major = 0;
    for (const e of this.#entries) {
      if (e.start < from || e.start > to) continue;
      count++;
      ms += e.ms;
      if (e.major) major++;
    }
    return { count, ms, major };
  }

  /** resolves once entries of GCs before now have reached the observer (they come a turn later) */
  settled(): Promise<void> {
    return new Promise((r) => setImmediate(() => setImmediate(r)));
  }

  stop(): void {
    this.#obs.disconnect();
  }
}
