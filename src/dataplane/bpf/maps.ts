// BpfMaps: the data plane's maps as one handle, opened over a loaded object or over the pins of an
// earlier load. Writes go through map-writer.ts (a Plan's ops, settings), reads through map-reader.ts
// (a Plan back, settings, counters); the agent's state file supplies what the maps cannot hold.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Plan, PlanOp, PlanTable } from '../../plan/types.js';
import type { AgentStateFile } from './agent-state-file.js';
import * as L from './layout.js';
import * as read from './map-reader.js';
import { MapWriter, type ApplyResult, type BpfMapsOptions } from './map-writer.js';
import { BpfMap } from './native/map.js';
import type { BpfObject } from './native/object.js';

export type DataplaneMaps = Record<L.MapName, BpfMap>;

/** maps the BPF programs write (runtime state), as opposed to those only the agent writes */
export const PROGRAM_WRITTEN_MAPS: ReadonlySet<string> = new Set(['lb_ct', 'lb_ct_syn', 'lb_affinity', 'lb_sock_revnat', 'lb_stats', 'lb_fe_stats', 'lb_frags', 'lb_reject_rl', 'lb_rev_filter', 'lb_ct_filter']);

/** the maps an apply writes (map-writer.ts): what BpfMaps.scratch creates */
const SCRATCH_MAPS = ['lb_backends', 'lb_frontends', 'lb_slots', 'lb_members', 'lb_maglev_slots', 'lb_revnat', 'lb_src_ranges', 'lb_fe_filter'] as const satisfies readonly L.MapName[];
/** entries of each scratch map indexed or keyed by the warm-up's few ids and frontends */
const SCRATCH_ENTRIES = 1024;
/** Maglev slots of the scratch lb_maglev_slots: a few one-change tables (M 1,601 at 10 members) */
const SCRATCH_SLOTS = 1 << 16;

export class BpfMaps {
  private readonly maps: DataplaneMaps;
  /** lb_fe_ids where the object has it (an object of an earlier build does not): the writer's */
  private readonly feIds: BpfMap | undefined;
  private readonly owned: boolean;
  readonly state: AgentStateFile | undefined;
  private readonly writer: MapWriter;

  private constructor(maps: DataplaneMaps, owned: boolean, state: AgentStateFile | undefined, opts: BpfMapsOptions, feIds?: BpfMap) {
    this.maps = maps;
    this.feIds = feIds;
    this.owned = owned;
    this.state = state;
    this.writer = new MapWriter(maps, state, opts, feIds);
  }

  /** Over the maps of a loaded object (fds stay the object's). */
  static fromObject(obj: BpfObject, state?: AgentStateFile, opts: BpfMapsOptions = {}): BpfMaps {
    const maps = {} as DataplaneMaps;
    for (const n of L.MAP_NAMES) maps[n] = obj.map(n);
    return new BpfMaps(maps, false, state, opts, obj.mapNames().includes('lb_fe_ids') ? obj.map('lb_fe_ids') : undefined);
  }

  /** Over the maps pinned under pinRoot by an earlier load (dump, cleanup, another process). */
  static fromPins(pinRoot: string, state?: AgentStateFile, opts: BpfMapsOptions = {}): BpfMaps {
    const maps = {} as DataplaneMaps;
    let feIds: BpfMap | undefined;
    try {
      for (const n of L.MAP_NAMES) maps[n] = BpfMap.fromPin(join(pinRoot, n));
      // pinned by a build that has it: what writes lb_frontends here keeps it in step
      if (existsSync(join(pinRoot, 'lb_fe_ids'))) feIds = BpfMap.fromPin(join(pinRoot, 'lb_fe_ids'));
    } catch (e) {
      for (const m of Object.values(maps)) m.close();
      throw e;
    }
    return new BpfMaps(maps, true, state, opts, feIds);
  }

  /**
   * Small, unpinned maps of the same definitions as like's (type, key and value sizes, flags), for
   * the maps an apply writes, and a writer over them with opts: the agent's warm-up (agent/warm.ts)
   * runs the one-change writes through it, so the first real change does not run the writer's code
   * for the first time (the first change's apply took 1.5-3.4 ms against ~0.5, docs/perf-log.md session
   * 14). Nothing the programs read is touched; close() frees them.
   */
  static scratch(like: BpfMaps, opts: BpfMapsOptions = {}): BpfMaps {
    const maps = {} as DataplaneMaps;
    let feIds: BpfMap | undefined;
    try {
      if (like.feIds) {
        const m = like.feIds;
        feIds = BpfMap.create({ type: m.type, name: 'lb_fe_ids', keySize: m.keySize, valueSize: m.valueSize, maxEntries: Math.min(m.maxEntries, SCRATCH_ENTRIES), flags: m.flags });
      }
      for (const n of SCRATCH_MAPS) {
        const m = like.maps[n];
        // arrays indexed by id stay small (the warm-up's ids are few); lb_fe_filter is written whole
        // (syncFeFilter) and lb_maglev_slots holds the warm-up's tables
        const max = n === 'lb_fe_filter' ? m.maxEntries
          : n === 'lb_maglev_slots' ? Math.min(m.maxEntries, SCRATCH_SLOTS / L.LB_MAGLEV_IDS_PER_ELEM)
            : Math.min(m.maxEntries, SCRATCH_ENTRIES);
        maps[n] = BpfMap.create({ type: m.type, name: n.slice(0, 15), keySize: m.keySize, valueSize: m.valueSize, maxEntries: max, flags: m.flags });
      }
    } catch (e) {
      for (const m of Object.values(maps)) m.close();
      feIds?.close();
      throw e;
    }
    return new BpfMaps(maps, true, undefined, opts, feIds);
  }

  map(name: L.MapName): BpfMap {
    return this.maps[name];
  }

  close(): void {
    if (this.owned) {
      for (const m of Object.values(this.maps)) m.close();
      this.feIds?.close();
    }
  }

  // ---- writes (MapWriter) -------------------------------------------------------------------------
  apply(ops: readonly PlanOp[]): ApplyResult { return this.writer.apply(ops); }
  /** apply() with the event loop free: batches on the thread pool, pauses between chunks */
  applyAsync(ops: readonly PlanOp[]): Promise<ApplyResult> { return this.writer.applyAsync(ops); }
  /** the writer's mirror of lb_members loaded (fresh: maps made by this load, nothing to read), and what lb_slots lacks found */
  syncMembers(fresh = false): { added: number; slotsBehind: number } { return this.writer.syncMembers(fresh); }
  /** frontends whose lists lb_slots has yet to get from a deferred write (0: current) */
  slotsBehind(): number { return this.writer.slotsBehind(); }
  /** the next part of the deferred write of lb_slots (MapWriter.flushSlots); no apply may run meanwhile */
  flushSlots(maxSlots: number, opts?: { threads?: number; async?: boolean }): Promise<{ left: number; slots: number; holdMs: number }> {
    return this.writer.flushSlots(maxSlots, opts);
  }
  /** a full build's new tables filled on background threads before their apply (MapWriter.prefill) */
  prefill(tables: readonly PlanTable[]): boolean { return this.writer.prefill(tables); }
  /** lb_fe_filter bits held for orphaned flows (ct-orphan.ts); replace releases the others */
  holdFeFilterKeys(keys: Iterable<string>, replace = false): void { this.writer.holdFeFilterKeys(keys, replace); }
  heldFeFilterKeys(): number { return this.writer.heldFeFilterKeys(); }
  /** lb_maglev_slots: slots in tables, slots waiting out their grace period, capacity */
  maglevSlotUse(): { used: number; quarantined: number; capacity: number } { return this.writer.slotUse(); }
  writeConfig(cfg: { hashSeed: number; snatMark: number; flags: number }): void { this.writer.writeConfig(cfg); }
  setDevice(ifindex: number, flags: number): void { this.writer.setDevice(ifindex, flags); }
  removeDevice(ifindex: number): boolean { return this.writer.removeDevice(ifindex); }
  setNodeAddresses(addresses: Iterable<string>): void { this.writer.setNodeAddresses(addresses); }
  setExternalIpAllow(cidrs: Iterable<string>): void { this.writer.setExternalIpAllow(cidrs); }
  setLocalSources(cidrs: Iterable<string>): void { this.writer.setLocalSources(cidrs); }

  // ---- reads (map-reader.ts) ----------------------------------------------------------------------
  /** the backend lists from the writer's mirror of lb_members when it is loaded (it is what the map holds between applies), else from the map */
  readPlan(): Plan { return read.readPlan(this.maps, this.state, (off) => this.writer.tableIdAt(off), this.writer.memberLists()); }
  isEmpty(): boolean { return read.mapsAreEmpty(this.maps); }
  /** lb_backends was made by this load and not written since (MapWriter.backendsEmpty) */
  backendsEmpty(): void { this.writer.backendsEmpty(); }
  /** lb_fe_stats and the maps naming frontends were made by this load (MapWriter.statsEmpty) */
  statsEmpty(): void { this.writer.statsEmpty(); }
  /** by the plan's table id (the region the writer gave it; at most its M slots), or undefined when it has none */
  readTable(tableId: number, m: number): Uint32Array | undefined {
    const r = this.writer.regionOf(tableId);
    return r && read.readTable(this.maps, r.off, Math.min(m, r.m));
  }
  readConfig(): L.Config { return read.readConfig(this.maps); }
  devices(): Map<number, number> { return read.readDevices(this.maps); }
  readStats(): Record<L.LbStatName, number> { return read.readStats(this.maps); }
  /**
   * maxFeId: the highest frontend id in use (the agent's plan); else, on maps this load made, the
   * highest this handle wrote (a first sync's apply at 100,000 Services: a /metrics scrape in it read
   * all 131,072 per-CPU entries, ~60-80 ms of the event loop, every one zero)
   */
  readFrontendStats(maxFeId?: number): Map<number, { packets: number; bytes: number }> { return read.readFrontendStats(this.maps, maxFeId ?? this.writer.feStatsTop); }
  /** skip: maps whose entries are not counted (reported as 0; the caller knows them otherwise) */
  mapFill(skip?: ReadonlySet<string>): Array<{ name: L.MapName; entries: number; capacity: number }> {
    // a map only the agent writes is counted again only when this handle wrote it since its last
    // count: a hash map's count walks every bucket (lb_slots, lb_members: 2M each), ~0.3 s per
    // scrape at 10,000 Services when every map was counted on each
    const cached = new Set(skip);
    const fill = new Map<string, number>();
    for (const name of L.MAP_NAMES) {
      const c = this.fillCache.get(name);
      if (c && c.writes === this.maps[name].writes && !PROGRAM_WRITTEN_MAPS.has(name)) {
        cached.add(name);
        fill.set(name, c.entries);
      }
    }
    // lb_backends is an array: the writer follows how many of its entries hold a backend; lb_slots,
    // lb_members and lb_frontends are what the writer's mirrors say, when they are loaded
    cached.add('lb_backends');
    const frontends = this.writer.frontendFill();
    if (frontends !== undefined) {
      cached.add('lb_frontends');
      fill.set('lb_frontends', frontends);
    }
    const slots = this.writer.slotFill();
    if (slots) {
      for (const [name, n] of [['lb_slots', slots.slots], ['lb_members', slots.members]] as const) {
        cached.add(name);
        fill.set(name, n);
      }
    }
    return read.readMapFill(this.maps, cached).map((m) => {
      if (skip?.has(m.name)) return m;
      const entries = m.name === 'lb_backends' ? this.writer.backendCount() : fill.get(m.name) ?? m.entries;
      if (!PROGRAM_WRITTEN_MAPS.has(m.name)) this.fillCache.set(m.name, { writes: this.maps[m.name].writes, entries });
      return entries === m.entries ? m : { ...m, entries };
    });
  }

  /** the last count of each map the programs do not write, and the write count of its handle then */
  private readonly fillCache = new Map<string, { writes: number; entries: number }>();
}
