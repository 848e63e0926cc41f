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
  const first = over(usage(state.frontends), cap);
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
