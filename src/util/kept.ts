// Buffers kept from one pass to the next: a map scan's batch buffers, the conntrack sweep's expired
// keys, a filter rebuild's words. Fresh ones at every pass (a sweep every 30 s, a /metrics scrape
// every few seconds) lived until a major GC and faulted in fresh pages each time (docs/perf-log.md
// session 30 p30tail, session 31 p31ct, session 32 p32ct). A pass takes an item and gives it back when
// it is done; a pass running meanwhile (an async one holds its item across turns of the event loop, a
// scan's visitor may start another scan) finds none and makes its own, which is kept only if there
// is room.
export class Kept<T> {
  readonly #free: T[] = [];

  /** max: items kept at most (a sweep's two filter builds run at once, so two of their words) */
  constructor(private readonly max = 1) {}

  /**
   * A kept item, gone from the pool until give(); undefined when there is none. One that does not fit
   * the caller's need is the caller's to replace (by a bigger one, given back in its place).
   */
  take(): T | undefined {
    return this.#free.pop();
  }

  /** keeps t for the next take() while there is room */
  give(t: T): void {
    if (this.#free.length < this.max && !this.#free.includes(t)) this.#free.push(t);
  }

  /** items kept now */
  get size(): number {
    return this.#free.length;
  }
}
