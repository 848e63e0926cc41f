// A bounded-frequency runner, after kube-proxy's async.BoundedFrequencyRunner: run() asks for a sync;
// syncs happen at most once per minInterval on average (a token bucket of `burst` syncs, refilled one
// per minInterval, as kube-proxy's limiter; changes arriving meanwhile coalesce into one), at least
// once per maxInterval (periodic resync), and a failed sync is retried with exponential backoff. The clock and timers are
// injected so tests are instant and deterministic.

export interface Timers {
  now(): number;
  /** keepAlive: the timer holds the process up (pending work); otherwise it must not (a periodic resync) */
  setTimeout(fn: () => void, ms: number, keepAlive?: boolean): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => performance.now(),
  setTimeout: (fn, ms, keepAlive) => {
    // due now: the event loop's next turn. Node makes a 0 ms timer 1 ms, and a change's sync waited
    // that long (issue 10: from a change to the kernel); kube-proxy's runner starts it at once
    if (!(ms > 0)) {
      const immediate = setImmediate(fn);
      if (!keepAlive) immediate.unref();
      return { immediate };
    }
    const t = setTimeout(fn, ms);
    if (!keepAlive) t.unref?.();
    return t;
  },
  clearTimeout: (h) => {
    if (h && typeof h === 'object' && 'immediate' in h) clearImmediate((h as { immediate: NodeJS.Immediate }).immediate);
    else clearTimeout(h as NodeJS.Timeout);
  },
};

export interface RunnerOptions {
  /** no two syncs start closer than this (kube-proxy minSyncPeriod, default 1 s) */
  minIntervalMs: number;
  /** a sync runs at least this often even with no change (kube-proxy syncPeriod) */
  maxIntervalMs: number;
  /**
   * syncs that may run back to back before minInterval spaces them (default 1: every two starts at
   * least minInterval apart). kube-proxy's proxiers pass burstSyncs = 2 (iptables NewProxier): a
   * change that comes right after a periodic resync runs at once instead of waiting out minInterval.
   */
  burst?: number;
  /** first retry delay after a failed sync; doubles up to maxRetryMs */
  retryMs?: number;
  maxRetryMs?: number;
  timers?: Timers;
  /** called with every sync's outcome */
  onResult?: (result: { ok: boolean; error?: unknown; durationMs: number; attempt: number }) => void;
}

export class BoundedFrequencyRunner {
  readonly #fn: () => Promise<void> | void;
  readonly #opts: Required<Omit<RunnerOptions, 'onResult'>> & Pick<RunnerOptions, 'onResult'>;
  #timer: unknown;
  #timerAt = Infinity;
  #lastStart = -Infinity;
  /** the token bucket: syncs that may start now, as of #tokensAt */
  #tokens: number;
  #tokensAt = -Infinity;
  #running = false;
  #pending = false;
  #stopped = true;
  #failures = 0;
  #idle: Array<() => void> = [];

  constructor(fn: () => Promise<void> | void, opts: RunnerOptions) {
    if (!(opts.minIntervalMs >= 0) || !(opts.maxIntervalMs > 0) || opts.maxIntervalMs < opts.minIntervalMs) {
      throw new RangeError(`runner intervals: need 0 <= minIntervalMs <= maxIntervalMs, got ${opts.minIntervalMs}, ${opts.maxIntervalMs}`);
    }
    if (opts.burst !== undefined && !(Number.isInteger(opts.burst) && opts.burst >= 1)) {
      throw new RangeError(`runner burst: need an integer >= 1, got ${opts.burst}`);
    }
    this.#fn = fn;
    this.#opts = {
      retryMs: 1000, maxRetryMs: 30_000, timers: realTimers, burst: 1, ...opts,
    };
    this.#tokens = this.#opts.burst;
  }

  /** Starts the loop: the first sync runs at once. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.run();
  }

  stop(): void {
    this.#stopped = true;
    this.#clear();
    // nothing will run any more: a sync in flight drains the waiters when it ends
    if (!this.#running) this.#drainIdle();
  }

  /** Asks for a sync as soon as minInterval allows; several calls before it starts coalesce. */
  run(): void {
    if (this.#stopped) return;
    this.#pending = true;
    if (this.#running) return;
    // while backing off after a failure, the retry timer decides
    if (this.#failures > 0 && this.#timer !== undefined) return;
    this.#schedule(this.#due());
  }

  /** the bucket's tokens now: one more per minInterval since #tokensAt, at most burst */
  #refill(now: number): number {
    const { minIntervalMs: min, burst } = this.#opts;
    if (min === 0 || this.#tokensAt === -Infinity) this.#tokens = burst;
    else this.#tokens = Math.min(burst, this.#tokens + (now - this.#tokensAt) / min);
    this.#tokensAt = now;
    return this.#tokens;
  }

  /** when the next sync may start: now while a token is left, else when one will be */
  #due(): number {
    const now = this.#opts.timers.now();
    const tokens = this.#refill(now);
    return tokens >= 1 ? now : now + (1 - tokens) * this.#opts.minIntervalMs;
  }

  /** Resolves when no sync is running or pending (tests; graceful shutdown). */
  whenIdle(): Promise<void> {
    if (!this.#running && !this.#pending) return Promise.resolve();
    // a pending sync's timer holds the event loop up (#schedule), so a waiter here is never stranded
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * A sync runs now, or one asked for starts within `ms` (a change waits for it): work that would
   * hold the event loop longer can wait for it (the heap trimmer's full GC after a big sync).
   */
  dueWithin(ms: number): boolean {
    if (this.#stopped) return false;
    if (this.#running) return true;
    return this.#pending && this.#timer !== undefined && this.#timerAt - this.#opts.timers.now() <= ms;
  }

  get failures(): number {
    return this.#failures;
  }

  #schedule(at: number): void {
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    this.#clear();
    this.#timerAt = at;
    // a sync someone asked for is work the process must finish; the periodic resync alone is not
    this.#timer = this.#opts.timers.setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      void this.#tick();
    }, Math.max(0, at - this.#opts.timers.now()), this.#pending);
  }

  #clear(): void {
    if (this.#timer !== undefined) this.#opts.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  async #tick(): Promise<void> {
    if (this.#stopped || this.#running) return;
    this.#running = true;
    this.#pending = false;
    const t = this.#opts.timers;
    this.#lastStart = t.now();
    this.#refill(this.#lastStart);
    this.#tokens -= 1;
    let ok = true;
    let error: unknown;
    try {
      await this.#fn();
    } catch (e) {
      ok = false;
      error = e;
    }
    const durationMs = t.now() - this.#lastStart;
    this.#running = false;
    this.#failures = ok ? 0 : this.#failures + 1;
    this.#opts.onResult?.({ ok, error, durationMs, attempt: this.#failures });
    if (this.#stopped) return this.#drainIdle();
    if (!ok) {
      const delay = Math.min(this.#opts.retryMs * 2 ** (this.#failures - 1), this.#opts.maxRetryMs);
      this.#pending = true;
      this.#clear();
      this.#schedule(t.now() + Math.max(delay, this.#opts.minIntervalMs));
      return;
    }
    if (this.#pending) {
      this.#schedule(this.#due());
    } else {
      this.#schedule(this.#lastStart + this.#opts.maxIntervalMs);
      this.#drainIdle();
    }
  }

  #drainIdle(): void {
    const idle = this.#idle;
    this.#idle = [];
    for (const r of idle) r();
  }
}

/** Manual timers for tests: advance() fires due callbacks in time order. */
export class FakeTimers implements Timers {
  #now = 0;
  #seq = 0;
  readonly #queue = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#queue.set(id, { at: this.#now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#queue.delete(handle as number);
  }

  get pending(): number {
    return this.#queue.size;
  }

  /** Moves the clock forward by ms, running each due callback (and awaiting the microtasks it starts). */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#queue) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.#queue.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
      for (let i = 0; i < 20; i++) await Promise.resolve();
    }
    this.#now = end;
    for (let i = 0; i < 20; i++) await Promise.resolve();
  }
}
