// The plan: what the data plane's maps hold for one node (bpf/lb_structs.h, bpf/lb_maps.h), in
// TypeScript terms, with stable ids. Built by src/plan/plan.ts from a NodeState; read back from the
// kernel by src/dataplane/bpf; compared by src/plan/diff.ts into ordered writes.
import type { FrontendType, Protocol, Scope } from '../model/compiled.js';

/** A backend is one (address, port, protocol); its id is stable for as long as it exists. */
export interface PlanBackend {
  /** 1..2^32-1, never 0 */
  id: number;
  address: string;
  port: number;
  protocol: Protocol;
  /** terminating in the endpoint slices (KEP-1669): keeps flows, gets new ones only as a fallback */
  terminating: boolean;
  /** runs on this node */
  local: boolean;
}

/**
 * A Maglev lookup table. Tables are shared: every frontend whose table would be built over the same
 * backends (same order, same M, same seed) points at the same table, so a Service's ClusterIP,
 * NodePorts and LB IPs cost one table.
 */
export interface PlanTable {
  /** 1..2^32-1, never 0 */
  id: number;
  /** table size, a prime (src/plan/maglev.ts chooses it from the member count) */
  m: number;
  /** backend ids the table was built over, in canonical (address, port) order */
  members: number[];
  /**
   * slot -> backend id, length m; every entry is one of members. A full build's tables compute them
   * when first read (slot-source.ts: the map writer fills them straight into the kernel instead).
   */
  slots: Uint32Array;
}

export interface PlanFrontend {
  /** 1..LB_FE_ID_MAX-1, never 0; also the rev-NAT, affinity, slot and stats key */
  id: number;
  service: string;
  portName: string;
  type: FrontendType;
  address: string;
  port: number;
  protocol: Protocol;
  scope: Scope;
  /** every backend of the frontend (terminating ones included), canonical order: its pairs in lb_members (and its lb_slots) */
  backendIds: number[];
  /**
   * those of backendIds that are terminating in this frontend's slices (KEP-1669), in slot order.
   * PlanBackend.terminating merges them over every frontend (the kernel's per-backend flag); this
   * keeps what each Service said, for dump. Kept in the agent's state file, not in a map.
   */
  terminatingIds: number[];
  /** 0 when backendIds is empty (refuse) */
  tableId: number;
  /** the table's M, copied into the frontend entry; 0 when no table */
  maglevM: number;
  /** seconds; 0 = no session affinity */
  affinityTimeout: number;
  /**
   * With affinity: the id whose lb_affinity entries this frontend uses, the id of its Service port's
   * clusterIP frontend (NodeFrontend.affinityGroup), else its own. 0 without affinity.
   */
  affinityGroup: number;
  /** external scope, externalTrafficPolicy Cluster: SNAT when the backend is not local */
  snatRemote: boolean;
  /** canonical CIDR strings; [] = everyone */
  sourceRanges: string[];
  /** no backend because a Local policy has none here (NodeFrontend.noLocalEndpoints): drop, don't refuse */
  dropNoLocal?: boolean;
  /** NodeFrontend.masquerade */
  masquerade?: 'all' | 'offCluster';
}

/**
 * The slots of a table that holds none (released, read back, slotless): one shared empty array, as
 * an empty Uint32Array of its own per table (and its ArrayBuffer) cost ~330 bytes, 3.3 MiB of the
 * plan's heap at 10,000 Services. Nothing writes into a table's slots in place.
 */
export const NO_SLOTS = new Uint32Array(0);

export interface Plan {
  /** Maglev hash seed the tables were built with */
  seed: number;
  /** keyed by frontendKey() */
  frontends: Map<string, PlanFrontend>;
  backends: Map<number, PlanBackend>;
  tables: Map<number, PlanTable>;
  /**
   * Built for a data plane without Maglev (nftables, IPVS: PlanOptions.slots false): every table has
   * its id, M and members but no slots (length 0), and diff emits createTable without them.
   */
  slotless?: true;
}

/**
 * The identity of a frontend entry: lb_frontends' key. Joined, not concatenated: a concatenation
 * keeps a tree of intermediate strings (4 objects per key here) for as long as the plan keeps the key.
 */
export function frontendKey(f: { address: string; port: number; protocol: Protocol; scope: Scope }): string {
  return [f.address, f.port, f.protocol, f.scope].join('|');
}

/** The identity of a backend: lb_backends' value without its flags. */
export function backendKey(b: { address: string; port: number; protocol: Protocol }): string {
  return `${b.address}|${b.port}|${b.protocol}`;
}

/**
 * One write to the data plane. diff() emits them in the safe order (DESIGN.md): new and changed
 * backends, new tables (built aside), slots, rev-NAT, source ranges, frontends last; then removals of
 * frontends, their slots, rev-NAT and source ranges, unused tables, and orphan backends. A reader in
 * the kernel never sees a frontend that points at a missing table or backend.
 */
export type PlanOp =
  | { op: 'upsertBackend'; backend: PlanBackend }
  /**
   * many new backends in one op (a first sync's, diffPlans against nothing: ~1M at 100,000 Services,
   * where an upsertBackend object each was ~40 MiB of heap alive to the apply's end); in id order,
   * the same writes as an upsertBackend each
   */
  | { op: 'upsertBackends'; backends: readonly PlanBackend[] }
  | { op: 'createTable'; table: PlanTable }
  | { op: 'upsertSlots'; frontendId: number; backendIds: number[] }
  | { op: 'upsertRevNat'; frontendId: number; address: string; port: number }
  | { op: 'setSourceRanges'; frontendId: number; add: string[]; remove: string[] }
  | { op: 'upsertFrontend'; frontend: PlanFrontend }
  /** slots fromSlot.. (exclusive of toSlot) of a frontend that shrank or went away */
  | { op: 'deleteSlots'; frontendId: number; fromSlot: number; toSlot: number }
  | { op: 'deleteFrontend'; frontend: PlanFrontend }
  | { op: 'deleteRevNat'; frontendId: number }
  | { op: 'deleteTable'; tableId: number }
  | { op: 'deleteBackend'; backendId: number };

/** the backends an upsertBackend or upsertBackends op writes: for readers to whom the two are the same */
export function upsertedBackends(op: Extract<PlanOp, { op: 'upsertBackend' | 'upsertBackends' }>): readonly PlanBackend[] {
  return op.op === 'upsertBackend' ? [op.backend] : op.backends;
}
