// What a data plane wrote, in plan terms, in maps of its own: the nftables and IPVS data planes
// compare the last plan they wrote with the next one (which frontends a UDP flush or a twin scope
// concerns, a resync, the state file), and the agent builds each plan in the maps of the one before
// (buildPlan's consumePrev), so a data plane must not keep the agent's plan. This record is kept up
// to date from each applied diff, at the cost of the ops (one change: a few map writes), and holds
// the plan's objects by reference: buildPlan hands on unchanged objects and makes new ones for
// what changed (diff.ts relies on it), so an object once handed in does not change under us. Tables
// are kept without slots (ids, M, members: what the slots follow from), as a read-back has them.
import type { Plan, PlanBackend, PlanFrontend, PlanOp, PlanTable } from '../plan/types.js';
import { frontendKey } from '../plan/types.js';

const NO_SLOTS = new Uint32Array(0);

function bare(t: PlanTable): PlanTable {
  // a copy even without slots: whoever fills the agent's table later does not fill ours
  return { id: t.id, m: t.m, members: t.members, slots: NO_SLOTS };
}

export class WrittenPlan {
  /** the record as a Plan (its own maps): read it, never hand it to buildPlan as a prev to consume */
  readonly plan: Plan = { seed: 0, frontends: new Map(), backends: new Map(), tables: new Map() };
  readonly #keyById = new Map<number, string>();
  /** false until the first reset or update: "nothing written yet" */
  #any = false;

  get any(): boolean {
    return this.#any;
  }

  /** The record becomes `p` (a copy of its maps): a full write, or a plan read back at start. */
  reset(p: Plan): void {
    if (p === this.plan) return;
    const { frontends, backends, tables } = this.plan;
    frontends.clear(); backends.clear(); tables.clear(); this.#keyById.clear();
    this.plan.seed = p.seed;
    for (const [k, f] of p.frontends) { frontends.set(k, f); this.#keyById.set(f.id, k); }
    for (const [id, b] of p.backends) backends.set(id, b);
    for (const [id, t] of p.tables) tables.set(id, bare(t));
    this.#any = true;
  }

  /** The key of a frontend the record holds, by id. */
  keyOf(id: number): string | undefined {
    return this.#keyById.get(id);
  }

  /**
   * The frontends `ops` name, by key: by object, or by id (looked up in the record, else in `next`
   * for a frontend new in this diff). Every change of a frontend's fields yields an op that names it
   * (diff.ts: upsertFrontend unless the entry is the same, upsertSlots, setSourceRanges, ...).
   */
  touched(ops: readonly PlanOp[], next: Plan): Set<string> {
    const out = new Set<string>();
    let nextById: Map<number, string> | undefined;
    for (const op of ops) {
      switch (op.op) {
        case 'upsertFrontend': case 'deleteFrontend': out.add(frontendKey(op.frontend)); break;
        case 'upsertSlots': case 'deleteSlots': case 'upsertRevNat': case 'deleteRevNat': case 'setSourceRanges': {
          let key = this.#keyById.get(op.frontendId);
          if (key === undefined) {
            nextById ??= new Map([...next.frontends].map(([k, f]) => [f.id, k]));
            key = nextById.get(op.frontendId);
          }
          if (key !== undefined) out.add(key);
          break;
        }
        default: break;
      }
    }
    return out;
  }

  /**
   * The record after the kernel took `ops` (the diff from the record's plan to `next`): the
   * frontends they touch (`touched`, else computed), backends and tables they name, as `next` has
   * them. Call it while `next` is valid (before the agent builds the plan after it).
   */
  update(ops: readonly PlanOp[], next: Plan, touched: Iterable<string> = this.touched(ops, next)): void {
    const { frontends, backends, tables } = this.plan;
    this.plan.seed = next.seed;
    for (const k of touched) {
      const f = next.frontends.get(k);
      const old = frontends.get(k);
      if (old && old.id !== f?.id && this.#keyById.get(old.id) === k) this.#keyById.delete(old.id);
      if (f) {
        frontends.set(k, f);
        this.#keyById.set(f.id, k);
      } else frontends.delete(k);
    }
    for (const op of ops) {
      let id: number;
      if (op.op === 'upsertBackends') {
        for (const b of op.backends) backends.set(b.id, next.backends.get(b.id) ?? b);
        continue;
      }
      if (op.op === 'upsertBackend') id = op.backend.id;
      else if (op.op === 'deleteBackend') id = op.backendId;
      else if (op.op === 'createTable' || op.op === 'deleteTable') {
        id = op.op === 'createTable' ? op.table.id : op.tableId;
        const t = next.tables.get(id);
        if (t) tables.set(id, bare(t));
        else tables.delete(id);
        continue;
      } else continue;
      const b = next.backends.get(id);
      if (b) backends.set(id, b);
      else backends.delete(id);
    }
    this.#any = true;
  }
}
