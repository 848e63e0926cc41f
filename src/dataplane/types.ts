// One interface over every data plane (bpf, later ipvs and nftables), with an in-memory fake.
// Only implementations of this interface touch the kernel.
import type { Plan, PlanOp, PlanTable } from '../plan/types.js';
import type { Capacity } from '../plan/capacity.js';

export type DataplaneKind = 'bpf' | 'ipvs' | 'nftables' | 'fake';

export interface DataplaneStats {
  /** entries and capacity per map/table, for map-pressure metrics */
  maps: Array<{ name: string; entries: number; capacity: number }>;
  /** datapath outcomes and drop reasons, summed over CPUs */
  events: Record<string, number>;
  /** per frontend id */
  frontends: Map<number, { packets: number; bytes: number }>;
  /** LRU evictions per conntrack map since the agent started (BPF mode; ct-sweep.ts EvictionCounter) */
  evictions?: Record<string, number>;
}

/** Dataplane.warmWriter's: apply() as the data plane's own for a short apply, on tables of its own */
export interface WarmWriter {
  apply(ops: readonly PlanOp[]): void;
  close(): void;
}

export interface Dataplane {
  readonly kind: DataplaneKind;
  /** Loads and attaches what is missing; keeps what an earlier agent left (graceful restart). */
  init(): Promise<void>;
  /** What the kernel holds now, as a plan (ids included), or undefined when it holds nothing of ours. */
  readPlan(): Promise<Plan | undefined>;
  /**
   * Asked while init() still runs: true when the data plane is known by then to hold nothing of
   * ours (readPlan() will be undefined) and capacity() already gives what it will hold. The agent
   * then plans its first sync before init() ends, and applies it after.
   */
  fresh?(): boolean;
  /**
   * A full build's new tables (buildPlan's onTables), before the apply that creates them: a data
   * plane may start writing them where nothing reads them yet (BPF: filled into fresh regions of
   * lb_maglev_slots on background threads while the agent diffs). Only between init() and the
   * apply, with no other write under way; the next apply adopts them or drops them.
   */
  prefill?(tables: readonly PlanTable[]): boolean;
  /** Applies ordered writes; `next` is the plan they lead to (kept for read-back of what maps lack). */
  apply(ops: PlanOp[], next: Plan): Promise<void>;
  /**
   * detectLocalMode NodeCIDR: these CIDRs are the cluster's own sources from now on (the data planes
   * that apply a local detector implement it).
   */
  setLocalSources?(cidrs: readonly string[]): Promise<void>;
  /** Attaches to devices that appeared since the last call; forgets those that went away. */
  syncDevices(): Promise<void>;
  /** Counters and map fill; maxFrontendId (the highest frontend id in use) lets per-frontend counters be read up to it only. */
  stats(hint?: { maxFrontendId?: number }): Promise<DataplaneStats>;
  /** What the maps can hold; the agent leaves out whole Services beyond it rather than fail a write. */
  capacity(): Capacity;
  /**
   * A writer of this data plane's kind over scratch tables that nothing reads (BPF: unpinned maps
   * of the same definitions), for the agent's warm-up to run the one-change writes through once
   * before the first real change (agent/warm.ts); undefined where there is none.
   */
  warmWriter?(): WarmWriter | undefined;
  /**
   * After each sync the agent ran (with or without writes): work a data plane keeps off a sync's
   * critical path starts here (BPF: the deferred write of lb_slots).
   */
  synced?(): void;
  /** Stops this process's use of the data plane, leaving programs and maps in place. */
  close(): Promise<void>;
  /** Removes every program, map, pin, rule and attachment this data plane installed. */
  cleanup(): Promise<void>;
}
