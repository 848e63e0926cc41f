// Gives memory that the process freed outside V8's heap back to the kernel. ArrayBuffers (a sync's
// Maglev slots: ~64 MiB at 10,000 Services, dropped once the kernel holds them) and the Buffers of a
// LIST are malloc'd; when they are freed, glibc keeps the pages unless they sit at the top of its
// heap, so the agent's RSS stays at its peak. Measured with the real agent at 10,000 Services:
// malloc_trim(0) once after the first sync took RSS from 372 to 308 MiB.
//
// A trim costs a walk over malloc's free lists, so it runs only when external memory has fallen by
// minDropBytes since the last trim (or the start): after a first sync or a large change, not on a
// quiet node.

export interface HeapTrimOptions {
  /** glibc malloc_trim(0) (the native addon's mallocTrim) */
  trim: () => boolean;
  /** V8's external memory now (process.memoryUsage().external) */
  external?: () => number;
  everyMs?: number;
  minDropBytes?: number;
  /** after each trim: the external bytes it followed, and what trim() returned */
  onTrim?: (info: { peak: number; now: number; released: boolean }) => void;
}

export class HeapTrimmer {
  readonly #o: Required<Omit<HeapTrimOptions, 'onTrim'>> & Pick<HeapTrimOptions, 'onTrim'>;
  #peak = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(o: HeapTrimOptions) {
    this.#o = { external: () => process.memoryUsage().external, everyMs: 5_000, minDropBytes: 16 * 2 ** 20, ...o };
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
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
