// Keeps a node's state within what the data plane can hold. When the maps would overflow, whole
// Services are left out (the last ones by namespace/name, so every sync drops the same ones) and
// named, instead of a failed write that would hold back every other Service's changes.
import type { NodeState } from '../model/compiled.js';

export interface Capacity {
  frontends: number;
  backends: number;
  /** backend slots of all frontends together */
  slots: number;
  /** frontend ids are 1..frontendIds-1 */
  frontendIds: number;
  sourceRanges: number;
}

export const UNLIMITED: Capacity = {
  frontends: Infinity, backends: Infinity, slots: Infinity, frontendIds: Infinity, sourceRanges: Infinity,
};

export interface Fitted {
  state: NodeState;
  /** namespace/name of every Service left out, in order */
  dropped: string[];
  /** which limit was hit first, for the error message */
  limit?: keyof Capacity;
}

function usage(frontends: NodeState['frontends']): Record<keyof Capacity, number> {
  const backends = new Set<string>();
  let slots = 0, ranges = 0;
  for (const f of frontends) {
    slots += f.backends.length;
    ranges += f.sourceRanges.length;
    for (const b of f.backends) backends.add(`${b.address}|${b.port}|${f.protocol}`);
  }
  // ids are reused, so frontendIds needs one more than the count (0 is never valid)
  return { frontends: frontends.length, backends: backends.size, slots, frontendIds: frontends.length + 1, sourceRanges: ranges };
}

function over(u: Record<keyof Capacity, number>, cap: Capacity): keyof Capacity | undefined {
  for (const k of Object.keys(cap) as Array<keyof Capacity>) if (u[k] > cap[k]) return k;
  return undefined;
}

export function fitToCapacity(state: NodeState, cap: Capacity): Fitted {
  return fitWith(state, cap, over(usage(state.frontends), cap));
}

function fitWith(state: NodeState, cap: Capacity, first: keyof Capacity | undefined): Fitted {
  if (!first) return { state, dropped: [] };
  // Services in order; drop from the end until the rest fits (a bisection: usage is monotonic)
  const services = [...new Set(state.frontends.map((f) => f.service))].sort();
  let lo = 0, hi = services.length;
  const keepFirst = (n: number) => {
    const keep = new Set(services.slice(0, n));
    return state.frontends.filter((f) => keep.has(f.service));
  };
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (over(usage(keepFirst(mid)), cap)) hi = mid - 1;
    else lo = mid;
  }
  return { state: { frontends: keepFirst(lo) }, dropped: services.slice(lo), limit: first };
}

type NodeFrontendT = NodeState['frontends'][number];

/**
 * fitToCapacity for a caller that hands in successive states sharing unchanged NodeFrontend objects
 * (the agent's Compiler does): usage is kept between calls and only the frontends that are new or
 * gone are counted, so a sync after one change costs a walk by identity, not a rebuild of the set of
 * every backend (~100,000 strings at 10,000 Services). Same result as fitToCapacity; NodeFrontends
 * are taken as immutable once handed in.
 */
export class CapacityTracker {
  /** the frontends counted, with the epoch of the last call that found each */
  #seen = new Map<NodeFrontendT, number>();
  /** references per backend (address|port|protocol) */
  #backends = new Map<string, number>();
  #slots = 0;
  #ranges = 0;
  #epoch = 0;

  fit(state: NodeState, cap: Capacity): Fitted {
    const epoch = ++this.#epoch;
    const fes = state.frontends;
    const before = this.#seen.size;
    let kept = 0;
    for (const f of fes) {
      const e = this.#seen.get(f);
      if (e === undefined) {
        this.#seen.set(f, epoch);
        this.#count(f, 1);
      } else if (e !== epoch) {
        this.#seen.set(f, epoch);
        kept++;
      }
    }
    // frontends of the previous call that this state lacks (a walk by identity, no strings)
    if (kept < before) {
      for (const [f, e] of this.#seen) {
        if (e === epoch) continue;
        this.#seen.delete(f);
        this.#count(f, -1);
      }
    }
    const u = { frontends: fes.length, backends: this.#backends.size, slots: this.#slots, frontendIds: fes.length + 1, sourceRanges: this.#ranges };
    // a state listing one object twice is counted exactly by the full walk
    if (this.#seen.size !== fes.length) return fitToCapacity(state, cap);
    return fitWith(state, cap, over(u, cap));
  }

  #count(f: NodeFrontendT, sign: 1 | -1): void {
    this.#slots += sign * f.backends.length;
    this.#ranges += sign * f.sourceRanges.length;
    for (const b of f.backends) {
      const k = `${b.address}|${b.port}|${f.protocol}`;
      const n = (this.#backends.get(k) ?? 0) + sign;
      if (n === 0) this.#backends.delete(k);
      else this.#backends.set(k, n);
    }
  }
}
