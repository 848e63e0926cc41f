// The maps -> a Plan (the read-back at start and for `dump`), and the settings and counters as the
// kernel holds them.
//
// What the maps do not hold: a frontend's Service name and port name (the kernel needs neither). They
// come from the agent's state file (AgentStateFile); without one, readPlan() returns '' for both.
import type { FrontendType } from '../../model/compiled.js';
import type { Plan, PlanBackend, PlanFrontend, PlanTable } from '../../plan/types.js';
import { frontendKey } from '../../plan/types.js';
import { KbpError } from '../../util/errors.js';
import type { AgentStateFile } from './agent-state-file.js';
import * as L from './layout.js';
import type { DataplaneMaps } from './maps.js';
import { scanBackends, tableIdOfRegion } from './map-writer.js';
import { numPossibleCpus, type BpfMap } from './native/map.js';
import { MapType } from './native/uapi.js';

/**
 * The maps as a Plan. Tables have empty slots (their content follows from members, M and the seed);
 * members are recomputed from each frontend's slots and backend flags as plan.ts chooses them
 * (non-terminating backends, else the terminating ones). Service and port names come from the state
 * file ('' without one). A table is a region of lb_maglev_slots that frontends point at: its id is
 * what the writer calls it (tableIdAt), by default tableIdOfRegion(offset), the id a writer that
 * loads the regions from the maps gives it.
 */
export function readPlan(maps: DataplaneMaps, state: AgentStateFile | undefined, tableIdAt: (off: number) => number = tableIdOfRegion): Plan {
  const seed = readConfig(maps).hashSeed;
  const backends = new Map<number, PlanBackend>();
  // lb_backends is an array (read in batches): an id without a backend is an all-zero entry
  scanBackends(maps.lb_backends, (id, values, at) => {
    const b = L.decodeBackend(values, at);
    backends.set(id, {
      id, address: b.address, port: b.port, protocol: b.protocol,
      terminating: (b.flags & L.LB_BE_F_TERMINATING) !== 0, local: (b.flags & L.LB_BE_F_LOCAL) !== 0,
    });
  });
  const slots = new Map<number, Map<number, number>>();
  for (const [k, v] of maps.lb_slots.entries()) {
    const { feId, slot } = L.decodeSlotKey(k);
    let s = slots.get(feId);
    if (!s) slots.set(feId, (s = new Map()));
    s.set(slot, L.decodeU32(v));
  }
  const ranges = new Map<number, string[]>();
  for (const [k] of maps.lb_src_ranges.entries()) {
    const { feId, cidr } = L.decodeSrcRangeKey(k);
    let r = ranges.get(feId);
    if (!r) ranges.set(feId, (r = []));
    r.push(cidr);
  }
  const frontends = new Map<string, PlanFrontend>();
  const tables = new Map<number, PlanTable>();
  for (const [k, v] of maps.lb_frontends.entries()) {
    const key = L.decodeFeKey(k);
    const fe = L.decodeFrontend(v);
    const s = slots.get(fe.feId);
    // the slots 0..backend_count-1 that exist, in order
    const backendIds: number[] = [];
    for (let i = 0; i < fe.backendCount; i++) {
      const id = s?.get(i);
      if (id !== undefined) backendIds.push(id);
    }
    const meta = state?.frontends.get(fe.feId);
    // per-frontend terminating from the state file; without one, the kernel's merged backend flag
    const terminatingIds = meta ? (meta.terminating ?? []).filter((id) => backendIds.includes(id))
      : backendIds.filter((id) => backends.get(id)?.terminating);
    const f: PlanFrontend = {
      id: fe.feId, service: meta?.service ?? '', portName: meta?.portName ?? '', type: fe.type as FrontendType,
      address: key.address, port: key.port, protocol: key.protocol, scope: key.scope,
      backendIds, terminatingIds, tableId: fe.maglevM ? tableIdAt(fe.maglevOff) : 0, maglevM: fe.maglevM,
      affinityTimeout: (fe.flags & L.LB_FE_F_AFFINITY) !== 0 ? fe.affinityTimeout : 0,
      // an earlier build's entry (0) keyed affinity by its own id
      affinityGroup: (fe.flags & L.LB_FE_F_AFFINITY) !== 0 ? fe.affinityGroup || fe.feId : 0,
      snatRemote: (fe.flags & L.LB_FE_F_SNAT_REMOTE) !== 0,
      sourceRanges: (ranges.get(fe.feId) ?? []).sort(),
      ...((fe.flags & L.LB_FE_F_DROP_NO_LOCAL) !== 0 && { dropNoLocal: true }),
      ...((fe.flags & L.LB_FE_F_MASQ_ALL) !== 0 ? { masquerade: 'all' as const } : (fe.flags & L.LB_FE_F_MASQ_OFF_CLUSTER) !== 0 ? { masquerade: 'offCluster' as const } : {}),
    };
    frontends.set(frontendKey(f), f);
    if (f.tableId !== 0 && !tables.has(f.tableId)) {
      const known = backendIds.filter((id) => backends.has(id));
      const term = new Set(terminatingIds);
      let members = known.filter((id) => !term.has(id));
      if (members.length === 0) members = known;
      tables.set(f.tableId, { id: f.tableId, m: fe.maglevM, members, slots: new Uint32Array(0) });
    }
  }
  const sortedTables = new Map([...tables].sort((a, b) => a[0] - b[0]));
  const sortedBackends = new Map([...backends].sort((a, b) => a[0] - b[0]));
  return { seed, frontends, backends: sortedBackends, tables: sortedTables };
}

/** The entries of lb_backends that hold a backend (read in batches). */
export function countBackends(m: BpfMap): number {
  let n = 0;
  scanBackends(m, () => { n++; });
  return n;
}

/** Whether the maps hold anything of a previous agent (a frontend or a backend). */
export function mapsAreEmpty(maps: DataplaneMaps): boolean {
  if (maps.lb_frontends.keys().length !== 0) return false;
  let any = false;
  scanBackends(maps.lb_backends, () => { any = true; });
  return !any;
}

/** The slots of the Maglev table at slot off of lb_maglev_slots as the kernel holds them (tests, dump). */
export function readTable(maps: DataplaneMaps, off: number, m: number): Uint32Array | undefined {
  const arr = maps.lb_maglev_slots, per = L.LB_MAGLEV_IDS_PER_ELEM;
  if (m < 1 || off % per !== 0 || (off + m) > arr.maxEntries * per) return undefined;
  const elems = L.maglevElems(m), values = Buffer.alloc(elems * L.MAGLEV_ELEM.size);
  for (let i = 0; i < elems; i++) arr.lookup(L.encodeU32(off / per + i))?.copy(values, i * L.MAGLEV_ELEM.size);
  return L.decodeMaglevTable(values, m);
}

export function readConfig(maps: DataplaneMaps): L.Config {
  const v = maps.lb_config.lookup(L.encodeU32(0));
  if (!v) throw new KbpError('KBP_ERR_DATAPLANE', 'lb_config has no entry 0');
  return L.decodeConfig(v);
}

export function readDevices(maps: DataplaneMaps): Map<number, number> {
  return new Map(maps.lb_devices.entries().map(([k, v]) => [L.decodeU32(k), L.decodeDevice(v).flags]));
}

/** lb_stats summed over CPUs, by enum lb_stat name (LB_STATS). */
export function readStats(maps: DataplaneMaps): Record<L.LbStatName, number> {
  const cpus = numPossibleCpus();
  const out = Object.fromEntries(L.LB_STATS.map((n) => [n, 0])) as Record<L.LbStatName, number>;
  maps.lb_stats.scan((k, v) => {
    const name = L.LB_STATS[L.decodeU32(k)];
    if (name) out[name] = Number(L.sumU64PerCpu(v, cpus));
  });
  return out;
}

/** Packets and bytes per frontend id, summed over CPUs; frontends with no traffic are left out. */
export function readFrontendStats(maps: DataplaneMaps, maxFeId?: number): Map<number, { packets: number; bytes: number }> {
  const cpus = numPossibleCpus();
  const out = new Map<number, { packets: number; bytes: number }>();
  const zero = Buffer.alloc(maps.lb_fe_stats.userValueSize);
  const visit = (k: Buffer, v: Buffer): void => {
    if (v.equals(zero)) return;
    const s = L.decodeFeStatsPerCpu(v, cpus);
    out.set(L.decodeU32(k), { packets: Number(s.packets), bytes: Number(s.bytes) });
  };
  // ids are allocated from 1 up: with the highest id in use known, only 0..max are read, not all
  // 131,072 per-CPU entries; a counter of a frontend removed since may be left unread, as is right
  if (maxFeId !== undefined) maps.lb_fe_stats.scanFirst(maxFeId + 1, visit);
  else maps.lb_fe_stats.scan(visit);
  return out;
}

/** Entries and capacity per map (arrays are always full: their capacity is what they hold). */
export function readMapFill(maps: DataplaneMaps, skip?: ReadonlySet<string>): Array<{ name: L.MapName; entries: number; capacity: number }> {
  return L.MAP_NAMES.map((name) => {
    const m = maps[name];
    if (skip?.has(name)) return { name, entries: 0, capacity: m.maxEntries };
    // lb_backends is an array: its fill is the entries that hold a backend (id 0 is never used)
    if (name === 'lb_backends' && m.type === MapType.ARRAY) return { name, entries: countBackends(m), capacity: m.maxEntries - 1 };
    return { name, entries: m.count(), capacity: m.maxEntries };
  });
}
