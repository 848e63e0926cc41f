// Lowest-free id allocation. Ids held by the previous plan stay reserved for one sync even when their
// object goes away: an id reused in the same sync would be rewritten (new backend address, new slots or
// rev-NAT under a frontend id) while the kernel still holds frontends, tables or conntrack entries that
// mean the old object, and the ordered writes of diff.ts could no longer keep every step consistent.
import { KbpError } from '../util/errors.js';

export class IdAllocator {
  readonly #taken: Float64Array;
  #i = 0;
  #candidate: number;
  readonly #max: number;
  readonly #what: string;

  /** ids 1..max; `taken` may hold duplicates and ids out of range */
  constructor(taken: Iterable<number>, max: number, what: string) {
    this.#taken = Float64Array.from(taken).sort();
    this.#candidate = 1;
    this.#max = max;
    this.#what = what;
  }

  next(): number {
    const taken = this.#taken;
    for (;;) {
      while (this.#i < taken.length && taken[this.#i]! < this.#candidate) this.#i++;
      if (this.#i < taken.length && taken[this.#i] === this.#candidate) {
        this.#candidate++;
        continue;
      }
      if (this.#candidate > this.#max) {
        throw new KbpError('KBP_ERR_MAP_FULL', `no free ${this.#what} id: all ids 1..${this.#max} are in use or held by the previous sync`);
      }
      return this.#candidate++;
    }
  }
}
