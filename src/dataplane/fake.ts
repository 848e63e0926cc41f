// The in-memory data plane: applies plan ops to maps shaped like the kernel's, and checks after every
// op the invariant a kernel reader relies on: no frontend points at a missing table or backend, and
// no table names a missing backend. Used by agent tests and `--mode fake` dry runs.
import type { Plan, PlanBackend, PlanFrontend, PlanOp, PlanTable } from '../plan/types.js';
import { frontendKey } from '../plan/types.js';
import type { Dataplane, DataplaneStats } from './types.js';
import { UNLIMITED, type Capacity } from '../plan/capacity.js';

export class FakeDataplane implements Dataplane {
  readonly kind = 'fake' as const;
  readonly frontends = new Map<string, PlanFrontend>();
  readonly backends = new Map<number, PlanBackend>();
  readonly tables = new Map<number, PlanTable>();
  readonly slots = new Map<number, number[]>();
  readonly revnat = new Map<number, { address: string; port: number }>();
  readonly sourceRanges = new Map<number, Set<string>>();
  seed = 0;
  /** every op applied, in order (tests assert on it) */
  readonly log: PlanOp[] = [];
  /** make the next apply() throw (tests of retry) */
  failNext = 0;
  initialized = false;
  /** what capacity() reports (tests of map-full handling) */
  limits: Capacity = UNLIMITED;

  async init(): Promise<void> {
    this.initialized = true;
  }

  async readPlan(): Promise<Plan | undefined> {
    if (this.frontends.size === 0 && this.backends.size === 0) return undefined;
    const frontends = new Map<string, PlanFrontend>();
    for (const f of this.frontends.values()) frontends.set(frontendKey(f), { ...f, backendIds: [...(this.slots.get(f.id) ?? [])] });
    const tables = new Map<number, PlanTable>();
    // as the kernel read-back: table contents are not read, only ids, members and M
    for (const t of this.tables.values()) tables.set(t.id, { ...t, slots: new Uint32Array(0) });
    return { seed: this.seed, frontends, backends: new Map(this.backends), tables };
  }

  async apply(ops: PlanOp[], next: Plan): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('fake data plane: injected failure');
    }
    for (const op of ops) {
      this.#applyOne(op);
      this.log.push(op);
      this.#check(op);
    }
    this.seed = next.seed;
  }

  async syncDevices(): Promise<void> {}

  async stats(): Promise<DataplaneStats> {
    return {
      maps: [
        { name: 'frontends', entries: this.frontends.size, capacity: Infinity },
        { name: 'backends', entries: this.backends.size, capacity: Infinity },
        { name: 'tables', entries: this.tables.size, capacity: Infinity },
      ],
      events: {},
      frontends: new Map(),
    };
  }

  capacity(): Capacity {
    return this.limits;
  }

  async close(): Promise<void> {}

  async cleanup(): Promise<void> {
    this.frontends.clear();
    this.backends.clear();
    this.tables.clear();
    this.slots.clear();
    this.revnat.clear();
    this.sourceRanges.clear();
  }

  #applyOne(op: PlanOp): void {
    switch (op.op) {
      case 'upsertBackend': this.backends.set(op.backend.id, { ...op.backend }); break;
      // a copy: the agent releases the plan's slots once the data plane holds them
      case 'createTable': this.tables.set(op.table.id, { ...op.table, slots: op.table.slots.slice() }); break;
      case 'upsertSlots': this.slots.set(op.frontendId, [...op.backendIds]); break;
      case 'upsertRevNat': this.revnat.set(op.frontendId, { address: op.address, port: op.port }); break;
      case 'setSourceRanges': {
        const set = this.sourceRanges.get(op.frontendId) ?? new Set<string>();
        for (const r of op.remove) set.delete(r);
        for (const r of op.add) set.add(r);
        if (set.size) this.sourceRanges.set(op.frontendId, set); else this.sourceRanges.delete(op.frontendId);
        break;
      }
      case 'upsertFrontend': this.frontends.set(frontendKey(op.frontend), { ...op.frontend }); break;
      case 'deleteSlots': {
        const s = this.slots.get(op.frontendId);
        if (s) {
          s.splice(op.fromSlot, op.toSlot - op.fromSlot);
          if (s.length === 0) this.slots.delete(op.frontendId);
        }
        break;
      }
      case 'deleteFrontend': this.frontends.delete(frontendKey(op.frontend)); break;
      case 'deleteRevNat': this.revnat.delete(op.frontendId); break;
      case 'deleteTable': this.tables.delete(op.tableId); break;
      case 'deleteBackend': this.backends.delete(op.backendId); break;
    }
  }

  #check(op: PlanOp): void {
    for (const f of this.frontends.values()) {
      if (f.tableId !== 0 && !this.tables.has(f.tableId)) {
        throw new Error(`after ${op.op}: frontend ${frontendKey(f)} points at missing table ${f.tableId}`);
      }
      for (const id of this.slots.get(f.id) ?? []) {
        if (!this.backends.has(id)) throw new Error(`after ${op.op}: frontend ${frontendKey(f)} slot names missing backend ${id}`);
      }
    }
    for (const t of this.tables.values()) {
      for (const id of t.members) {
        if (!this.backends.has(id)) throw new Error(`after ${op.op}: table ${t.id} names missing backend ${id}`);
      }
    }
  }
}
