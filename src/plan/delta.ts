// What changed between two NodeStates, so that a consumer that saw the older one can follow with
// work in proportion to the change instead of a walk over every frontend (issue 10). The Compiler
// records, for each state it returns, the frontend objects that are new and gone against the state
// it returned before; CapacityTracker and the incremental plan build use the record only when its
// base is exactly the state they last took, and otherwise walk the state as before. A state without
// a record is always valid: the record is an optimization, never the source of truth.
import type { NodeFrontend, NodeState } from '../model/compiled.js';
import { SideTable } from '../util/side-table.js';

export interface StateDelta {
  /** the state this one was derived from */
  readonly base: NodeState;
  /** frontends of this state that base lacks (objects, by identity) */
  readonly added: readonly NodeFrontend[];
  /** frontends of base that this state lacks */
  readonly removed: readonly NodeFrontend[];
}

// the base by a weak reference: a record lives as long as its state (SideTable: on the state itself,
// no WeakMap entry per sync), so a strong one made each state hold the state before it, and the latest every state of the agent's life (and each one's
// frontend array once read: ~84 KiB a change at 10,000 Services)
interface Rec { base: WeakRef<NodeState>; added: readonly NodeFrontend[]; removed: readonly NodeFrontend[] }
const deltas = new SideTable<NodeState, Rec>('state delta');

/**
 * Records that next.frontends holds base.frontends' objects without `removed`, plus `added`
 * (each listed once). The caller promises the states are not edited afterwards.
 */
export function recordStateDelta(next: NodeState, base: NodeState, added: readonly NodeFrontend[], removed: readonly NodeFrontend[]): void {
  deltas.set(next, { base: new WeakRef(base), added, removed });
}

/** next's delta against base, when one was recorded against exactly that state. */
export function stateDelta(next: NodeState, base: NodeState | undefined): StateDelta | undefined {
  const d = deltas.get(next);
  return d && base !== undefined && d.base.deref() === base ? { base, added: d.added, removed: d.removed } : undefined;
}

/** Whether an address is IPv6 (a v4-mapped one counts as IPv4, as families() did). */
function isV6(address: string): boolean {
  return address.includes(':') && !address.startsWith('::ffff:');
}

const v6Counts = new SideTable<NodeState, number>('IPv6 count');

/**
 * How many of a state's frontends are IPv6: from the count of its delta's base when known (the
 * agent asks once per sync, so the base's count is there), else by a walk.
 */
export function countV6(state: NodeState, base?: NodeState): number {
  const have = v6Counts.get(state);
  if (have !== undefined) return have;
  const d = base && stateDelta(state, base);
  const b = d ? v6Counts.get(d.base) : undefined;
  let n: number;
  if (d && b !== undefined) {
    n = b;
    for (const f of d.added) if (isV6(f.address)) n++;
    for (const f of d.removed) if (isV6(f.address)) n--;
  } else {
    n = 0;
    for (const f of state.frontends) if (isV6(f.address)) n++;
  }
  v6Counts.set(state, n);
  return n;
}

const counts = new SideTable<NodeState, number>('frontend count');

/**
 * A state whose frontends array is built on first read (the Compiler's list is copied only when a
 * consumer walks it: at 100,000 Services the copy on every change cost more than the change). Its
 * length is known without the array: frontendCount().
 */
export function lazyState(length: number, materialize: () => NodeFrontend[]): NodeState {
  const state = {} as NodeState;
  Object.defineProperty(state, 'frontends', {
    enumerable: true, configurable: true,
    get(): NodeFrontend[] {
      const a = materialize();
      Object.defineProperty(state, 'frontends', { value: a, enumerable: true, writable: false, configurable: false });
      return a;
    },
  });
  counts.set(state, length);
  return state;
}

/** How many frontends a state has, without building a lazy state's array. */
export function frontendCount(state: NodeState): number {
  return counts.get(state) ?? state.frontends.length;
}
