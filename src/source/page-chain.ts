// A paged LIST's requests, each sent the moment the answer before it has come. A page's continue
// token leads its answer (kube-apiserver writes ListMeta before the items), so page k+1 can be asked
// for as soon as page k is in, whatever the thread that takes the pages is doing then: decoding an
// earlier page (list-decode.ts's thread), storing one, or the other kind's list. Asked for only when
// the loop took page k (sessions 12-23), the request waited for that page's decode and store: at
// 100,000 Services the list's server, decode thread and main thread took turns instead of
// overlapping (docs/perf-log.md, session 24). One request is on the wire at a time (the token of the
// next is in this one's answer), so a list keeps its one connection; at most `depth` pages are asked
// for or held beyond the one the loop has taken (a page is 0.5-1.5 MiB at 500 objects).
//
// The tokens are guesses read from the heads: the loop parses each page and, where the parsed token
// differs from the head's, restarts the chain from the parsed one (every page asked for on the guess
// is cancelled). What the list does with an error, a 410 or an abort stays the loop's (kube-http.ts).

/** a page's request under way: received settles with its answer (as the list reads it); cancel() aborts it */
export interface Flight<P> { sent: Promise<void>; received: Promise<P>; cancel(): void }

interface Link<P> { f: Flight<P>; came: boolean; guess: string | undefined; asked: boolean }

export class PageChain<P> {
  readonly #ask: (token: string | undefined) => Flight<P>;
  readonly #guess: (page: P) => string | undefined;
  readonly #depth: number;
  /** asked for and not yet taken, in order */
  #q: Link<P>[] = [];
  /** the last page asked for (taken or not): the next is asked for on its token */
  #tail: Link<P> | undefined;
  /** bumped by restart and cancel: an answer to a page asked for before it asks for nothing */
  #gen = 0;

  /**
   * ask(token) requests the page after token (undefined: the first); guess(page) reads the token of
   * the page after it from its answer (undefined: none, or not what the head says). depth >= 1.
   */
  constructor(ask: (token: string | undefined) => Flight<P>, guess: (page: P) => string | undefined, depth: number, first?: string) {
    if (!(Number.isInteger(depth) && depth >= 1)) throw new RangeError(`PageChain: depth must be an integer >= 1 (got ${depth})`);
    this.#ask = ask;
    this.#guess = guess;
    this.#depth = depth;
    this.#push(first);
  }

  /** pages asked for and not taken (the one on the wire among them) */
  get held(): number {
    return this.#q.length;
  }

  #push(token: string | undefined): void {
    const gen = this.#gen;
    const link: Link<P> = { f: this.#ask(token), came: false, guess: undefined, asked: false };
    this.#q.push(link);
    this.#tail = link;
    link.f.received.then((page) => {
      if (gen !== this.#gen) return;
      link.came = true;
      link.guess = this.#guess(page);
      this.#more();
    }, () => { /* the loop reads the failure where it takes the page */ });
  }

  /** the next page asked for, when the last one has come with a token and fewer than depth are held */
  #more(): void {
    const tail = this.#tail;
    if (!tail || !tail.came || tail.asked || tail.guess === undefined || this.#q.length >= this.#depth) return;
    tail.asked = true;
    this.#push(tail.guess);
  }

  /**
   * The oldest page not taken, once it has come, with the token its head gave (what the page after
   * it was asked for with, if it was) and whether it had come before it was asked for here (ready).
   * Rejects as its request did. Call only with held > 0.
   */
  async take(): Promise<{ page: P; guess: string | undefined; ready: boolean }> {
    const link = this.#q.shift();
    if (!link) throw new Error('PageChain: no page asked for');
    const ready = link.came;
    // (a held page taken makes room: the chain goes on if it stopped at depth)
    this.#more();
    const page = await link.f.received;
    return { page, guess: link.guess, ready };
  }

  /** every request asked for and not yet taken is written (or failed): before the thread is busy */
  async sent(): Promise<void> {
    for (const l of this.#q) await l.f.sent;
  }

  /** the guesses were wrong from the page just taken on: what was asked for on them dropped, token asked for */
  restart(token: string | undefined): void {
    this.cancel();
    if (token !== undefined) this.#push(token);
  }

  /** every page asked for and not taken cancelled; nothing more asked for */
  cancel(): void {
    this.#gen++;
    for (const l of this.#q) l.f.cancel();
    this.#q = [];
    this.#tail = undefined;
  }
}
