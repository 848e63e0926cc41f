// Compiling a first list while it arrives (issue 10: the first sync after start). The kube source
// stores a first LIST page by page; the agent compiles what has come while the next pages are on the
// way, so its first sync compiles only the last pages. A Compiler compares only the keys it is told
// changed since its previous compile: this keeps that record for the compiles run before the first
// sync, and hands the first sync the rest.
import type { ChangedKeys, Compiler } from '../compile/compile.js';
import type { Kind, ObjectStore, Snapshot } from '../source/types.js';

type Keys = Record<Kind, Set<string>>;
const noKeys = (): Keys => ({ Service: new Set(), EndpointSlice: new Set(), Node: new Set() });

export class CompileAhead {
  readonly #store: ObjectStore;
  readonly #compiler: Compiler;
  /** keys changed since the last compile here; undefined before the first (it compares everything) */
  #changed: Keys | undefined;
  /** Services the last compile here did not see (no slice of theirs stored yet) */
  #held = new Set<string>();
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
  }

  /**
   * Compiles the store as it is. While the list is under way (`partial`), a Service none of whose
   * slices is stored yet is held back: compiled now, it would be compiled again once its endpoints
   * come (slices and Services arrive by pages of two lists side by side). Returns the compile's wall
   * ms; a compile that throws is left to the sync (the Compiler then ignores its next hint).
   */
  step(partial: boolean): number {
    const t0 = performance.now();
    const store = this.#store, view = store.view();
    let snap: Snapshot = view;
    const held = new Set<string>();
    if (partial) {
      const services = new Map<string, unknown>();
      for (const [k, o] of view.services) {
        if (store.slicesOf(k).size) services.set(k, o);
        else held.add(k);
      }
      snap = { services: services as Snapshot['services'], endpointSlices: view.endpointSlices, nodes: view.nodes };
    }
    // what this snapshot differs in from the last one: the store's changes, and the Services held
    // back then or now (seen now and not then, or then and not now)
    let hint: ChangedKeys | undefined;
    if (this.#changed) {
      for (const k of this.#held) this.#changed.Service.add(k);
      for (const k of held) this.#changed.Service.add(k);
      hint = this.#changed;
    }
    this.#changed = noKeys();
    this.#held = held;
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
    return c;
  }
}
