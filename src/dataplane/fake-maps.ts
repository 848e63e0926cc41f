// The BPF maps in memory, with the kernel's semantics for every PlanOp (a delete of what is not there
// fails, slots are per index), as strict as the kernel or stricter: the maps FakeDataplane writes, and
// the simulator the diff tests drive. check() states the consistency a kernel reader relies on
// (DESIGN.md "Write order"); FakeDataplane and the diff tests call it after every single op.
//
// It lives beside the fake data plane, not in src/plan: it models the kernel side of the Dataplane
// contract, and the plan does not depend on it (src/model is the compiled Services, another thing).
import { KbpError } from '../util/errors.js';
import { frontendKey, upsertedBackends, type Plan, type PlanBackend, type PlanFrontend, type PlanOp, type PlanTable } from '../plan/types.js';

export interface FakeTable {
  m: number;
  members: number[];
  slots: Uint32Array;
}

/** lb_frontends value and key, with the metadata the agent keeps beside it */
export type FakeFrontend = Omit<PlanFrontend, 'backendIds' | 'sourceRanges'> & {
  backendCount: number;
  hasSourceRanges: boolean;
};

function fail(msg: string): never {
  throw new KbpError('KBP_ERR_DATAPLANE', msg);
}

export class FakeMaps {
  readonly frontends = new Map<string, FakeFrontend>();
  readonly backends = new Map<number, PlanBackend>();
  readonly tables = new Map<number, FakeTable>();
  /** fe_id -> slot -> backend id (lb_slots) */
  readonly slots = new Map<number, Map<number, number>>();
  readonly revnat = new Map<number, { address: string; port: number }>();
  /** fe_id -> allowed CIDRs (lb_src_ranges) */
  readonly ranges = new Map<number, Set<string>>();

  /** The maps as a kernel holding exactly `plan` would have them. */
  static fromPlan(plan: Plan): FakeMaps {
    const k = new FakeMaps();
    for (const b of plan.backends.values()) k.apply({ op: 'upsertBackend', backend: b });
    for (const t of plan.tables.values()) k.apply({ op: 'createTable', table: t });
    for (const f of plan.frontends.values()) {
      if (f.backendIds.length) k.apply({ op: 'upsertSlots', frontendId: f.id, backendIds: f.backendIds });
      k.apply({ op: 'upsertRevNat', frontendId: f.id, address: f.address, port: f.port });
      if (f.sourceRanges.length) k.apply({ op: 'setSourceRanges', frontendId: f.id, add: f.sourceRanges, remove: [] });
      k.apply({ op: 'upsertFrontend', frontend: f });
    }
    return k;
  }

  /** Empties every map. */
  clear(): void {
    for (const m of [this.frontends, this.backends, this.tables, this.slots, this.revnat, this.ranges]) m.clear();
  }

  /**
   * The maps read back as a plan, as the bpf data plane's readPlan does: a frontend's backends are
   * its list (here its slots 0..backend_count-1; the kernel's read-back takes its pairs in lb_members,
   * in canonical order, the same list), and tables come without slots (their content follows from
   * members, M and the seed, which the caller keeps).
   */
  toPlan(seed: number): Plan {
    const frontends = new Map<string, PlanFrontend>();
    for (const [key, { backendCount, hasSourceRanges, ...f }] of this.frontends) {
      const s = this.slots.get(f.id);
      const backendIds: number[] = [];
      for (let i = 0; i < backendCount; i++) {
        const id = s?.get(i);
        if (id !== undefined) backendIds.push(id);
      }
      const sourceRanges = hasSourceRanges ? [...(this.ranges.get(f.id) ?? [])].sort() : [];
      frontends.set(key, { ...f, backendIds, sourceRanges });
    }
    const tables = new Map<number, PlanTable>();
    for (const [id, t] of this.tables) tables.set(id, { id, m: t.m, members: [...t.members], slots: new Uint32Array(0) });
    return { seed, frontends, backends: new Map(this.backends), tables };
  }

  apply(op: PlanOp): void {
    switch (op.op) {
      case 'upsertBackend': case 'upsertBackends':
        for (const b of upsertedBackends(op)) this.backends.set(b.id, { ...b });
        return;
      case 'createTable': {
        const t = op.table;
        // a read-back table may come without slots; its content is then implied by members and M.
        // A copy: the agent releases a plan's slots once the data plane holds them.
        this.tables.set(t.id, { m: t.m, members: [...t.members], slots: t.slots.slice() });
        return;
      }
      case 'upsertSlots': {
        let s = this.slots.get(op.frontendId);
        if (!s) this.slots.set(op.frontendId, (s = new Map()));
        op.backendIds.forEach((id, i) => s.set(i, id));
        return;
      }
      case 'upsertRevNat':
        this.revnat.set(op.frontendId, { address: op.address, port: op.port });
        return;
      case 'setSourceRanges': {
        let r = this.ranges.get(op.frontendId);
        if (!r) this.ranges.set(op.frontendId, (r = new Set()));
        for (const c of op.add) r.add(c);
        for (const c of op.remove) if (!r.delete(c)) fail(`setSourceRanges: frontend ${op.frontendId} has no range ${c} to remove`);
        if (r.size === 0) this.ranges.delete(op.frontendId);
        return;
      }
      case 'upsertFrontend': {
        const { backendIds, sourceRanges, ...rest } = op.frontend;
        this.frontends.set(frontendKey(op.frontend), { ...rest, backendCount: backendIds.length, hasSourceRanges: sourceRanges.length > 0 });
        return;
      }
      case 'deleteSlots': {
        const s = this.slots.get(op.frontendId);
        for (let i = op.fromSlot; i < op.toSlot; i++) {
          if (!s?.delete(i)) fail(`deleteSlots: frontend ${op.frontendId} has no slot ${i}`);
        }
        if (s && s.size === 0) this.slots.delete(op.frontendId);
        return;
      }
      case 'deleteFrontend':
        if (!this.frontends.delete(frontendKey(op.frontend))) fail(`deleteFrontend: no frontend ${frontendKey(op.frontend)}`);
        return;
      case 'deleteRevNat':
        if (!this.revnat.delete(op.frontendId)) fail(`deleteRevNat: no rev-NAT entry ${op.frontendId}`);
        return;
      case 'deleteTable':
        if (!this.tables.delete(op.tableId)) fail(`deleteTable: no table ${op.tableId}`);
        return;
      case 'deleteBackend':
        if (!this.backends.delete(op.backendId)) fail(`deleteBackend: no backend ${op.backendId}`);
        return;
    }
  }

  /** Throws, naming the first broken reference, unless every reader of the maps finds what it needs. */
  check(): void {
    const ids = new Set<number>();
    for (const [key, f] of this.frontends) {
      if (f.id < 1) fail(`frontend ${key} has id ${f.id}`);
      if (ids.has(f.id)) fail(`frontend id ${f.id} used twice`);
      ids.add(f.id);
      if (!this.revnat.has(f.id)) fail(`frontend ${key} (${f.id}) has no rev-NAT entry`);
      if (f.hasSourceRanges && !this.ranges.get(f.id)?.size) fail(`frontend ${key} (${f.id}) filters sources but has no ranges`);
      if (f.backendCount > 0 && f.tableId === 0) fail(`frontend ${key} (${f.id}) has backends but no table`);
      if (f.tableId !== 0) {
        const t = this.tables.get(f.tableId);
        if (!t) fail(`frontend ${key} (${f.id}) names missing table ${f.tableId}`);
        if (t.m !== f.maglevM) fail(`frontend ${key} (${f.id}) says M=${f.maglevM} but table ${f.tableId} has ${t.m}`);
      }
      const s = this.slots.get(f.id);
      for (let i = 0; i < f.backendCount; i++) {
        const b = s?.get(i);
        if (b === undefined) fail(`frontend ${key} (${f.id}) misses slot ${i} of ${f.backendCount}`);
        if (!this.backends.has(b)) fail(`frontend ${key} (${f.id}) slot ${i} names missing backend ${b}`);
      }
    }
    for (const [id, t] of this.tables) {
      for (const b of t.members) if (!this.backends.has(b)) fail(`table ${id} has missing member ${b}`);
      t.slots.forEach((b, j) => {
        if (!this.backends.has(b)) fail(`table ${id} slot ${j} names missing backend ${b}`);
      });
    }
    for (const [fe, s] of this.slots) {
      for (const [i, b] of s) if (!this.backends.has(b)) fail(`lb_slots (${fe}, ${i}) names missing backend ${b}`);
    }
  }

  /** A canonical, comparable rendering (tables without slots compare by members and M only). */
  snapshot(): unknown {
    const sortBy = <T>(xs: [number | string, T][]) => xs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return {
      frontends: sortBy([...this.frontends]),
      backends: sortBy([...this.backends]),
      tables: sortBy([...this.tables].map(([id, t]) => [id, { m: t.m, members: t.members, slots: t.slots.length ? [...t.slots] : 'implied' }])),
      slots: sortBy([...this.slots].map(([fe, s]) => [fe, [...s].sort((a, b) => a[0] - b[0])])),
      revnat: sortBy([...this.revnat]),
      ranges: sortBy([...this.ranges].map(([fe, r]) => [fe, [...r].sort()])),
    };
  }
}
