// Compiling a first list while it arrives (issue 10: the first sync after start). The kube source
// stores a first LIST page by page; the agent compiles what has come while the next pages are on the
// way, so its first sync compiles only the last pages. A Compiler compares only the keys it is told
// changed since its previous compile: this keeps that record for the compiles run before the first
// sync, and hands the first sync the rest.
import type { ChangedKeys, Compiler } from '../compile/compile.js';
import type { V1Service } from '@kubernetes/client-node';
import { groupOf, type Kind, type ObjectStore, type Snapshot } from '../source/types.js';

type Keys = Record<Kind, Set<string>>;
const noKeys = (): Keys => ({ Service: new Set(), EndpointSlice: new Set(), Node: new Set() });

/**
 * The store's Services without those held back, read only, as the Compiler reads a snapshot: a hinted
 * compile asks only get/has of the keys it is told of; the first compile (no hint) iterates.
 */
class ShownServices implements ReadonlyMap<string, V1Service> {
  constructor(readonly all: ReadonlyMap<string, V1Service>, readonly held: ReadonlySet<string>) {}
  get size(): number { return this.all.size - this.held.size; }
  get(k: string): V1Service | undefined { return this.held.has(k) ? undefined : this.all.get(k); }
  has(k: string): boolean { return !this.held.has(k) && this.all.has(k); }
  *entries(): MapIterator<[string, V1Service]> { for (const e of this.all) if (!this.held.has(e[0])) yield e; }
  *keys(): MapIterator<string> { for (const [k] of this.entries()) yield k; }
  *values(): MapIterator<V1Service> { for (const [, v] of this.entries()) yield v; }
  [Symbol.iterator](): MapIterator<[string, V1Service]> { return this.entries(); }
  forEach(f: (v: V1Service, k: string, m: ReadonlyMap<string, V1Service>) => void): void { for (const [k, v] of this.entries()) f(v, k, this); }
}

export class CompileAhead {
  readonly #store: ObjectStore;
  readonly #compiler: Compiler;
  /** keys changed since the last compile here; undefined before the first (it compares everything) */
  #changed: Keys | undefined;
  /**
   * Services stored and not shown to the compiles here: those with no slice stored when a step last
   * looked at them. Kept from the keys noted, so a step costs what its pages brought, not what the
   * store holds (issue 10: at 100,000 Services a walk of every stored Service per step).
   */
  #held = new Set<string>();
  /** Service keys noted since the last step, and slice keys (whose Service may have got its first slice) */
  #noted: Keys = noKeys();
  #steps = 0;
  #ms = 0;

  constructor(store: ObjectStore, compiler: Compiler) {
    this.#store = store;
    this.#compiler = compiler;
  }

  /** compiles run so far, and their wall ms */
  get steps(): number { return this.#steps; }
  get ms(): number { return this.#ms; }

  /** a store change (the store's onChange) */
  note(kind: Kind, key: string): void {
    this.#changed?.[kind].add(key);
    if (kind !== 'Node') this.#noted[kind].add(key);
  }

  /**
   * Compiles the store as it is. While the list is under way (`partial`), a Service none of whose
   * slices is stored yet is held back: compiled now, it would be compiled again once its endpoints
   * come (slices and Services arrive by pages of two lists side by side). Once shown, a Service stays
   * shown until it changes again, even if its slices go (a compile of it then is no waste: it has had
   * endpoints). Returns the compile's wall ms; a compile that throws is left to the sync (the
   * Compiler then ignores its next hint).
   */
  step(partial: boolean): number {
    const t0 = performance.now();
    const store = this.#store, view = store.view(), held = this.#held;
    // what this snapshot differs in from the last one: the store's changes, and the Services shown
    // now and held back then, or the reverse (each such Service was noted, or got a slice noted)
    const changed = this.#changed?.Service;
    const { Service: svcs, EndpointSlice: slices } = this.#noted;
    this.#noted = noKeys();
    if (!partial) {
      for (const k of held) changed?.add(k);
      held.clear();
    } else {
      for (const k of svcs) {
        if (view.services.has(k) && !store.slicesOf(k).size) held.add(k);
        else held.delete(k);
      }
      for (const k of slices) {
        const g = groupOf(view.endpointSlices.get(k));
        if (g !== undefined && held.delete(g)) changed?.add(g);
      }
    }
    const snap: Snapshot = held.size ? { services: new ShownServices(view.services, held), endpointSlices: view.endpointSlices, nodes: view.nodes } : view;
    const hint: ChangedKeys | undefined = this.#changed;
    this.#changed = noKeys();
    try {
      this.#compiler.compile(snap, hint);
    } catch {
      // the sync compiles everything again and reports it
    }
    const ms = performance.now() - t0;
    this.#steps++;
    this.#ms += ms;
    return ms;
  }

  /**
   * The first sync's hint, over the whole store: what changed since the last compile here, the
   * Services it held back included; undefined (compare everything) when none ran. Recording stops.
   */
  take(): ChangedKeys | undefined {
    const c = this.#changed;
    if (c) for (const k of this.#held) c.Service.add(k);
    this.#changed = undefined;
    this.#held = new Set();
    this.#noted = noKeys();
    return c;
  }
}
