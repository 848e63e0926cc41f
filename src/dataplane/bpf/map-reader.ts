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
 * The order of backends within a frontend that compile emits and the plan keeps (model/canonical.ts
 * compareBackends: address, IPv4 before IPv6 and then by its bytes, then port; the protocol is the
 * frontend's), from lb_backends' entries: one number per id for an IPv4 backend (value, port), a
 * text key for an IPv6 one. An id lb_backends does not hold sorts last, by id.
 */
export class BackendOrder {
  #keys = new Float64Array(1024);
  readonly #v6 = new Map<number, string>();

  /** notes the backend of id, its lb_backend value at values[at] */
  note(id: number, values: Buffer, at: number): void {
    if (id >= this.#keys.length) {
      const k = new Float64Array(Math.max(id + 1, this.#keys.length * 2));
      k.set(this.#keys);
      this.#keys = k;
    }
    const port = values.readUInt16BE(at + 16);
    let v4 = true;
    for (let i = 0; i < 10 && v4; i++) if (values[at + i] !== 0) v4 = false;
    if (v4 && values[at + 10] === 0xff && values[at + 11] === 0xff) {
      // + 1: 0 is "no backend"; < 2^48, exact in a double
      this.#keys[id] = values.readUInt32BE(at + 12) * 65536 + port + 1;
      return;
    }
    this.#keys[id] = V6_KEY;
    this.#v6.set(id, values.toString('hex', at, at + 16) + port.toString(16).padStart(4, '0'));
  }

  /** sorts ids (backends of one frontend) into canonical order, in place */
  sort(ids: number[]): number[] {
    if (ids.length < 2) return ids;
    const k = this.#keys, v6 = this.#v6;
    const key = (id: number): number => (id < k.length && k[id]! !== 0 ? k[id]! : MISSING_KEY);
    return ids.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x !== y) return x - y;
      if (x === V6_KEY) {
        const s = v6.get(a)!, t = v6.get(b)!;
        if (s !== t) return s < t ? -1 : 1;
      }
      return a - b;
    });
  }
}
const V6_KEY = 2 ** 49;
const MISSING_KEY = 2 ** 50;

/**
 * Each frontend's backends as lb_members holds them (its (frontend, backend) pairs), in canonical
 * order (BackendOrder): the plan's backendIds. lb_members is what the programs check conntrack and
 * affinity against, written before a frontend can name a backend and cleared after: the agent's
 * record of each frontend's list. lb_slots (the same lists by slot) is written for an earlier
 * build's agent only, after the first sync (map-writer.ts), and never read here.
 */
export function readMemberLists(maps: DataplaneMaps, order: BackendOrder | (() => BackendOrder)): Map<number, number[]> {
  const lists = new Map<number, number[]>();
  const ks = maps.lb_members.keySize;
  maps.lb_members.scanBatches((keys, _values, n) => {
    for (let i = 0; i < n; i++) {
      const fe = keys.readUInt32LE(i * ks), id = keys.readUInt32LE(i * ks + 4);
      const l = lists.get(fe);
      if (l) l.push(id);
      else lists.set(fe, [id]);
    }
  });
  // the order read only when there is something to order (lb_backends is an array of a million entries)
  if (!lists.size) return lists;
  const o = typeof order === 'function' ? order() : order;
  for (const l of lists.values()) o.sort(l);
  return lists;
}

/** BackendOrder of every backend lb_backends holds (read in batches) */
export function readBackendOrder(maps: DataplaneMaps): BackendOrder {
  const order = new BackendOrder();
  scanBackends(maps.lb_backends, (id, values, at) => order.note(id, values, at));
  return order;
}

/**
 * The maps as a Plan. Tables have empty slots (their content follows from members, M and the seed);
 * members are recomputed from each frontend's backends and their flags as plan.ts chooses them
 * (non-terminating backends, else the terminating ones). A frontend's backends are its pairs in
 * lb_members (readMemberLists; `lists`, when given, is that already read: the writer's mirror).
 * Service and port names come from the state file ('' without one). A table is a region of
 * lb_maglev_slots that frontends point at: its id is what the writer calls it (tableIdAt), by
 * default tableIdOfRegion(offset), the id a writer that loads the regions from the maps gives it.
 */
export function readPlan(maps: DataplaneMaps, state: AgentStateFile | undefined, tableIdAt: (off: number) => number = tableIdOfRegion,
  lists?: ReadonlyMap<number, readonly number[]>): Plan {
  const seed = readConfig(maps).hashSeed;
  const backends = new Map<number, PlanBackend>();
  const order = lists ? undefined : new BackendOrder();
  // lb_backends is an array (read in batches): an id without a backend is an all-zero entry
  scanBackends(maps.lb_backends, (id, values, at) => {
    const b = L.decodeBackend(values, at);
    backends.set(id, {
      id, address: b.address, port: b.port, protocol: b.protocol,
      terminating: (b.flags & L.LB_BE_F_TERMINATING) !== 0, local: (b.flags & L.LB_BE_F_LOCAL) !== 0,
    });
    order?.note(id, values, at);
  });
  const members = lists ?? readMemberLists(maps, order!);
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
    const backendIds = members.get(fe.feId)?.slice() ?? [];
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
