// NodeState -> Plan: stable ids, per-frontend backend lists and shared Maglev tables (types.ts).
//
// Ids are stable while the object exists (by frontendKey / backendKey), so a resync or an agent restart
// (prev read back from the pinned maps) rewrites nothing that did not change. New ids take the lowest
// id that neither this plan nor prev holds (ids.ts says why prev's ids wait one sync). A table is
// identified by (member ids, M) under one seed; it is reused from prev, never rebuilt, when those
// match, and any change of members or M yields a new table id, so diff.ts can build the new table
// aside and swap the frontend over in one write.
//
// Two builds give the same plan, to the object and the map order: build-full.ts from any prev, and
// build-incremental.ts from the plan the previous build returned, redoing only the frontends whose
// NodeFrontend object changed (~10-20 ms at 10,000 Services against ~1 s for a full build). Both take
// a frontend's checks and its plan entry from frontend.ts. This module picks one and holds what
// callers do with a plan.
import { compareBackends } from '../model/canonical.js';
import type { NodeState } from '../model/compiled.js';
import { KbpError } from '../util/errors.js';
import { buildFull } from './build-full.js';
import { buildIncremental, planDelta } from './build-incremental.js';
import { HASH_SEED_MAX } from './limits.js';
import { MaglevBuilder, maglevSlots, type MaglevSizing } from './maglev.js';
import { pendingSlots } from './slot-source.js';
import { NO_SLOTS, type Plan, type PlanTable } from './types.js';

export { finishChain, planDelta, undoPlan, type PlanDelta } from './build-incremental.js';

export interface PlanOptions {
  /** Maglev hash seed, the same on every node (lb_config.hash_seed) */
  seed: number;
  /**
   * How M follows the member count (maglev.ts explains the trade-off). Default 'pow2': with 'exact',
   * nearly every backend change changes M and reshuffles the whole table (bench/results: ~90% of flows
   * move when one of 10 backends leaves, against ~12% with pow2), for ~1.6x less table memory.
   */
  maglevSizing?: MaglevSizing;
  /**
   * Hand prev's maps on to the result, changed in place, instead of copying them (a copy of ~100,000
   * backends is most of what a one-change build costs at 10,000 Services). prev must not be used
   * afterwards, except by diffPlans(prev, result), which reads prev's old entries from the build's
   * record, and undoPlan(result), which makes prev whole again. Only an incremental build consumes;
   * the maps' order is then insertion order, not the full build's.
   */
  consumePrev?: boolean;
  /**
   * false for a data plane that never reads Maglev slots (nftables, IPVS): tables keep their ids, M
   * and members, so frontends, ids and the state JSON are what they are in BPF mode, but no slots are
   * filled (~1 s of CPU and 64 MiB at 10,000 Services). Default true. A plan built one way is not
   * extended incrementally the other way.
   */
  slots?: boolean;
  /**
   * Called by a full build with its new tables (slots still to be filled, slot-source.ts) as soon as
   * they exist, before the build's last steps (the incremental chain's records): the agent's first
   * sync hands them to the data plane, which fills them beside the rest of the plan and the diff
   * (Dataplane.prefill). Not called by an incremental build, nor when no table is new.
   */
  onTables?: (tables: readonly PlanTable[]) => void;
  /**
   * A full build leaves the records an incremental build from its plan reads (build-incremental.ts's
   * chain: ~1 s of the main thread at 100,000 Services) to finishChain(plan), or to the first build
   * from the plan if that comes first: the agent's first sync makes them while its apply waits for
   * the kernel's batches, not before the apply. The plan is the same either way.
   */
  deferChain?: boolean;
}

export function buildPlan(state: NodeState, prev: Plan | undefined, opts: PlanOptions): Plan {
  const { seed } = opts;
  const sizing = opts.maglevSizing ?? 'pow2';
  if (!Number.isInteger(seed) || seed < 0 || seed > HASH_SEED_MAX) {
    throw new KbpError('KBP_ERR_CONFIG', `Maglev seed must be an integer in 0..2^32-1, got ${seed}`);
  }
  if (sizing !== 'exact' && sizing !== 'pow2') throw new KbpError('KBP_ERR_CONFIG', `unknown Maglev sizing ${JSON.stringify(sizing)}`);
  const slotless = opts.slots === false;
  return (prev && buildIncremental(state, prev, seed, sizing, opts.consumePrev ?? false, slotless)) || buildFull(state, prev, seed, sizing, slotless, opts.onTables, opts.deferChain ?? false);
}

/**
 * Fills the slots of tables that came from a kernel read-back without them (reused by buildPlan
 * without a rebuild), for consumers that walk packets through the plan. A full build's tables
 * (slot-source.ts) compute theirs when read. The result equals what the
 * kernel holds as long as the seed is the one the table was built with.
 */
export function fillMissingSlots(plan: Plan): void {
  const builder = new MaglevBuilder();
  for (const t of plan.tables.values()) {
    if (pendingSlots(t) || t.slots.length === t.m) continue;
    // canonical order, whatever order a read-back produced
    const members = t.members.map((id) => {
      const b = plan.backends.get(id);
      if (!b) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table ${t.id} names backend ${id}, which the plan lacks`);
      return b;
    }).sort(compareBackends);
    t.slots = maglevSlots(builder, members, plan.seed, t.m);
  }
}

/**
 * Drops the slots of every table (4 bytes a slot), and the sources of a full build's tables never
 * read (slot-source.ts), once the data plane holds them. The plan stays a valid `prev`: buildPlan reuses tables by members and M, and diffPlans
 * treats a table without slots as unchanged, exactly as for a kernel read-back. fillMissingSlots
 * brings them back when a consumer needs them. Tables are shared with whoever else holds this plan's
 * objects (an in-memory data plane keeps them by reference).
 */
export function releaseSlots(plan: Plan, prev?: Plan): void {
  // only the tables written since the last release hold slots: no allocation for the others; after
  // an incremental build from prev (released), only its new tables: no walk over every table
  const d = prev && planDelta(prev, plan);
  if (d) {
    for (const id of d.tableIds) {
      const t = plan.tables.get(id);
      if (t && (pendingSlots(t) || t.slots.length)) t.slots = NO_SLOTS;
    }
    return;
  }
  // a table still pending (never read) is dropped without computing its slots
  for (const t of plan.tables.values()) if (pendingSlots(t) || t.slots.length) t.slots = NO_SLOTS;
}
