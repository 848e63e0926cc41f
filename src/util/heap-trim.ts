// Gives memory that the process freed outside V8's heap back to the kernel. ArrayBuffers (a sync's
// Maglev slots: ~64 MiB at 10,000 Services, dropped once the kernel holds them) and the Buffers of a
// LIST are malloc'd; when they are freed, glibc keeps the pages unless they sit at the top of its
// heap, so the agent's RSS stays at its peak. Measured with the real agent at 10,000 Services:
// malloc_trim(0) once after the first sync took RSS from 372 to 308 MiB.
//
// A trim costs a walk over malloc's free lists, so it runs only when external memory has fallen by
// minDropBytes since the last trim (or the start): after a first sync or a large change, not on a
// quiet node.
//
// That fall needs a full GC first, and nothing makes V8 run one on an idle agent: after a first
// sync at 10,000 Services the garbage it left (compile's and the plan's temporaries, the released
// Maglev slots) stayed until V8's next major GC, whenever that came (RSS 361-458 MiB right after the
// sync against 293 MiB once collected). So after a big sync (afterSync with at least bigSyncOps
// ops) the trimmer runs one full GC when the event loop is next free (settleMs after the sync, so
// what waited for the sync is answered first), then the trim.
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface HeapTrimOptions {
  /** glibc malloc_trim(0) (the native addon's mallocTrim) */
  trim: () => boolean;
  /** V8's external memory now (process.memoryUsage().external) */
  external?: () => number;
  everyMs?: number;
  minDropBytes?: number;
  /** after each trim: the external bytes it followed, and what trim() returned */
  onTrim?: (info: { peak: number; now: number; released: boolean }) => void;
  /** a full, synchronous GC (fullGc() below); without it afterSync does nothing */
  gc?: () => void;
  /** a sync of this many ops or more is followed by a full GC and a trim */
  bigSyncOps?: number;
  /**
   * a sync is running or about to start (a change waits): the full GC after a big sync then waits
   * for it (re-checked every deferStepMs, at most maxDeferMs in all), so that change does not wait
   * out the pause (~0.25 s at 10,000 Services, seconds at 100,000)
   */
  busy?: () => boolean;
  /** how often a GC put off by busy() looks again (default 2 ms) */
  deferStepMs?: number;
  /** the longest busy() puts the GC off (default 1 s: the big sync's garbage stays that long, bounded) */
  maxDeferMs?: number;
  /**
   * the GC after a big sync first waits this long (default 0): what waited for the sync (a kubelet
   * probe, a /metrics scrape, the first watch events) is answered before the pause, not after it
   */
  settleMs?: number;
  /** after each GC that afterSync ran: heap used + external before and after, and its pause */
  onCompact?: (info: { before: number; after: number; pauseMs: number; deferredMs: number }) => void;
  /** heap used + external (process.memoryUsage()) */
  used?: () => number;
  /** wait between the GC and the trim: ArrayBuffers are freed by V8's sweeper tasks after the GC */
  trimDelayMs?: number;
  /** a minor GC (scavenge), synchronous (minorGc() below); without it afterWork does nothing */
  minorGc?: () => void;
  /** bytes in V8's young generation now */
  youngUsed?: () => number;
  /** the young generation's capacity now (V8's new space: it grows and shrinks with the allocation rate) */
  youngCapacity?: () => number;
  /**
   * afterWork collects the young generation when it holds at least this much (default 1 MiB), or
   * youngSweepShare of its capacity when that is less
   */
  youngSweepBytes?: number;
  /**
   * the share of the young generation's capacity that afterWork leaves in it (default 3/8). V8
   * scavenges on its own once the young generation is 80 % full (a task on the event loop, which
   * runs wherever the event loop is then: between a file's watch event and its sync) or full (inside
   * whatever allocates). After a reducing full GC V8 keeps it at 1 MiB, where a bound of 1 MiB alone
   * was never reached: the sweep never ran and V8's scavenges landed on the changes' path
   * (docs/perf-log.md, session 28, p28p99). 3/8 leaves ~430 KiB of room below V8's 80 % at 1 MiB: two
   * endpoint changes at 10,000 Services (~190 KiB each with the watch event's read).
   */
  youngSweepShare?: number;
  /** quiet time after the last afterWork before that check (default 30 ms) */
  youngSweepDelayMs?: number;
  /** after each young collection afterWork ran: bytes before and after, and its pause */
  onSweep?: (info: { before: number; after: number; pauseMs: number }) => void;
}

type GcFn = (o?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;

/**
 * V8's full GC, exposed at run time (the --expose-gc flag takes effect for contexts created after it),
 * of the "last resort" flavor: collect everything, then give the heap's free pages back. Measured after
 * compile and plan at 10,000 Services (one process, load ~25): RSS 319 -> 242 MiB with a plain full GC
 * (870 ms pause), 302 -> 140 MiB with this one (2.6 s pause): the plain GC keeps V8's emptied pages.
 */
export function fullGc(flavor: 'regular' | 'last-resort' = 'last-resort'): () => void {
  let g = (globalThis as { gc?: GcFn }).gc;
  if (typeof g !== 'function') {
    setFlagsFromString('--expose-gc');
    g = runInNewContext('gc') as GcFn;
  }
  const f = g;
  return () => f({ type: 'major', execution: 'sync', flavor });
}

/**
 * One full GC that reduces the heap's footprint, through V8's memory pressure signal (the native
 * addon's memoryPressure, level critical: Heap::CollectGarbageOnMemoryPressure), where fullGc()'s
 * "last resort" runs V8's CollectAllAvailableGarbage: at least two full GCs, each marking the whole
 * live heap, the second finding little. Both give the free pages back (RSS alike). The level is set
 * back to none at once: while it is not, V8 sizes its heap for memory, not speed.
 *
 * Incremental marking is off for the call's length: when that GC took over 50 ms and committed
 * memory less live objects, plus external memory, is still >= 8 MB and >= 10 % of committed memory,
 * V8 starts a second reducing GC at once, incrementally (marking steps on the event loop, then a
 * finalizing pause). In the agent after its first sync at 10,000 Services (the LIST's answer buffers
 * are external) it always did: 17 steps (251 ms) and a 413 ms pause for 1 MB of heap, at load ~15.
 * With the flag off V8 skips it (`v8_flags.incremental_marking` is read there); it is back on before
 * the call returns. When the first GC took under 50 ms V8 runs the second one at once, whole, inside
 * the call (a small heap: both are short); the flag does not change that.
 */
export function pressureGc(memoryPressure: (level: 0 | 1 | 2) => void, setFlags: (flags: string) => void = setFlagsFromString): () => void {
  return () => {
    setFlags('--no-incremental-marking');
    try {
      memoryPressure(2);
    } finally {
      memoryPressure(0);
      setFlags('--incremental-marking');
    }
  };
}

/**
 * V8's minor GC (a scavenge of the young generation), exposed at run time as fullGc() does. A
 * scavenge costs what survives it, and runs whenever the young generation fills, inside whatever
 * runs then: at 10,000 Services a one-change sync makes ~1 MiB of garbage and a /metrics scrape or
 * a folder rescan more, so a sync of ~3 ms now and then paid for a scavenge of others' garbage.
 */
export function minorGc(): () => void {
  let g = (globalThis as { gc?: GcFn }).gc;
  if (typeof g !== 'function') {
    setFlagsFromString('--expose-gc');
    g = runInNewContext('gc') as GcFn;
  }
  const f = g;
  return () => f({ type: 'minor', execution: 'sync' });
}

/** bytes in V8's new space (the young generation's live half) */
export function youngUsed(): number {
  for (const sp of getHeapSpaceStatistics()) if (sp.space_name === 'new_space') return sp.space_used_size;
  return 0;
}

/** the capacity of V8's new space (one semi-space: what the young generation holds before a scavenge) */
export function youngCapacity(): number {
  for (const sp of getHeapSpaceStatistics()) if (sp.space_name === 'new_space') return sp.space_size;
  return 0;
}

type Defaulted = 'external' | 'everyMs' | 'minDropBytes' | 'bigSyncOps' | 'used' | 'trimDelayMs' | 'youngUsed' | 'youngCapacity' | 'youngSweepBytes' | 'youngSweepShare' | 'youngSweepDelayMs'
  | 'deferStepMs' | 'maxDeferMs' | 'settleMs';

export class HeapTrimmer {
  readonly #o: Required<Pick<HeapTrimOptions, Defaulted>> & Omit<HeapTrimOptions, Defaulted>;
  #peak = 0;
  #timer: NodeJS.Timeout | undefined;
  #compact: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(o: HeapTrimOptions) {
    this.#o = {
      external: () => process.memoryUsage().external, everyMs: 5_000, minDropBytes: 16 * 2 ** 20, bigSyncOps: 1000, trimDelayMs: 200,
      youngUsed, youngCapacity, youngSweepBytes: 2 ** 20, youngSweepShare: 3 / 8, youngSweepDelayMs: 30, deferStepMs: 2, maxDeferMs: 1000, settleMs: 0,
      used: () => { const m = process.memoryUsage(); return m.heapUsed + m.external; }, ...o,
    };
  }

  /**
   * Called after each sync with its op count: after a big one, one full GC once the event loop is
   * free (a timer, so the sync's caller finishes first; settleMs later), then a trim. `then` runs
   * after that GC (a timer of its own, so I/O that came in during the pause goes first), or on the
   * next timer when no GC is scheduled: work the GC would undo (it flushes idle bytecode, so the
   * agent's warm-up of the one-change path comes after it). Returns whether it scheduled a GC.
   */
  afterSync(ops: number, then?: () => void): boolean {
    const gc = this.#o.gc;
    if (!gc || ops < this.#o.bigSyncOps || this.#compact || this.#stopped) {
      if (then) setTimeout(then, 0).unref();
      return false;
    }
    const due = performance.now() + this.#o.settleMs;
    const collect = (): void => {
      // a change's sync first: it takes ~2 ms, the pause ~0.25 s at 10,000 Services. Bounded: RSS
      // stays at the big sync's level while the GC waits (<= 300 MiB at 10,000, docs/perf-log.md p15gc)
      if (this.#o.busy?.() && performance.now() - due < this.#o.maxDeferMs) {
        this.#compact = setTimeout(collect, this.#o.deferStepMs);
        this.#compact.unref();
        return;
      }
      const before = this.#o.used();
      const t0 = performance.now();
      gc();
      const pauseMs = performance.now() - t0;
      this.#o.onCompact?.({ before, after: this.#o.used(), pauseMs, deferredMs: Math.max(0, t0 - due) });
      if (then) setTimeout(then, 0).unref();
      this.#compact = setTimeout(() => {
        this.#compact = undefined;
        if (this.#stopped) return;
        const now = this.#o.external();
        const released = this.#o.trim();
        this.#o.onTrim?.({ peak: Math.max(this.#peak, now), now, released });
        this.#peak = now;
      }, this.#o.trimDelayMs);
      this.#compact.unref();
    };
    this.#compact = setTimeout(collect, this.#o.settleMs);
    this.#compact.unref();
    return true;
  }

  /**
   * Called after work that leaves garbage (a sync, a /metrics scrape): once the process has been
   * quiet for youngSweepDelayMs, a young generation holding youngSweepBound() or more is collected
   * then, off any sync, so the next change's sync starts with an empty nursery. Returns whether a
   * check is scheduled.
   */
  afterWork(): boolean {
    const minor = this.#o.minorGc;
    if (!minor || this.#stopped || this.#compact) return false;
    clearTimeout(this.#sweep);
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined;
      if (this.#stopped) return;
      const before = this.#o.youngUsed();
      if (before < this.youngSweepBound()) return;
      const t0 = performance.now();
      minor();
      this.#o.onSweep?.({ before, after: this.#o.youngUsed(), pauseMs: performance.now() - t0 });
    }, this.#o.youngSweepDelayMs);
    this.#sweep.unref();
    return true;
  }

  #sweep: NodeJS.Timeout | undefined;

  /** what the young generation may hold after work before afterWork collects it: youngSweepBytes, or youngSweepShare of its capacity when less */
  youngSweepBound(): number {
    const cap = this.#o.youngCapacity();
    return cap > 0 ? Math.min(this.#o.youngSweepBytes, cap * this.#o.youngSweepShare) : this.#o.youngSweepBytes;
  }

  /** One check: trims when external memory fell by minDropBytes from its peak since the last trim. Returns whether it trimmed. */
  check(): boolean {
    const now = this.#o.external();
    if (now > this.#peak) this.#peak = now;
    if (this.#peak - now < this.#o.minDropBytes) return false;
    const peak = this.#peak;
    const released = this.#o.trim();
    this.#peak = now;
    this.#o.onTrim?.({ peak, now, released });
    return true;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.check(), this.#o.everyMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#compact);
    this.#compact = undefined;
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
  }
}
