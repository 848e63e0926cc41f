// Map sizes set at load time (--bpf-map-max), as Cilium's --bpf-lb-map-max / --bpf-ct-global-*-max
// and Katran's load-time sizing: max_entries of the Service and conntrack maps, set through libbpf
// (bpf_map__set_max_entries) before the object loads, instead of a rebuild with -DLB_*_MAX.
//
// Default: lb_consts.h's sizes (10,000 Services of 10 endpoints in the Maglev array, a million
// backends). Not sized from what the node needs: the object loads while the Services are still read
// (the first sync's compile runs beside the verifier), and a size that followed the Service count
// would move every map aside and rewrite it (migrate.ts) each time the cluster grew past a step.
//
// Nothing in the programs bounds an index by a compile-time size: lb_maglev_slots' lookups are
// bounded by the map (a region past its end reads as a missing table); ids index arrays whose
// lookups the kernel bounds. The plan follows the loaded maps (dataplane.ts capacity(), and the
// frontend and backend id ranges in plan/limits.ts setIdLimits()).
//
// A pinned map of another size (a restart with another flag, an upgrade) is carried over as any
// map whose definition changed (loader.ts checkPinnedMaps, migrate.ts): its entries are copied into
// the new map where they fit. lb_sock_term.bpf.o, which shares the pins, takes their sizes
// (loader.ts sizeLikePins); lb_ct_syn is rounded to the kernel's multiple of the CPUs (sizeMaps).
import { KbpError } from '../../util/errors.js';
import * as L from './layout.js';
import { DEFAULT_ID_LIMITS } from '../../plan/limits.js';
import { regionSize } from './slot-alloc.js';

/** A map --bpf-map-max may size: its default and smallest capacity, in the unit the flag takes. */
interface Sizable {
  dflt: number;
  min: number;
  /** what one unit is, for the help and errors */
  unit: string;
  /** the map's max_entries for n units */
  entries?: (n: number) => number;
  /** a further rule a value must follow, or undefined when it does */
  check?: (n: number) => string | undefined;
}

const U32 = 0xffffffff;

export const SIZABLE_MAPS = {
  lb_frontends: { dflt: L.LB_FRONTENDS_MAX, min: 1, unit: '(address, port, protocol, scope) frontends' },
  lb_backends: { dflt: DEFAULT_ID_LIMITS.backends, min: 2, unit: 'backend ids + 1 (id 0 is never used)' },
  lb_slots: { dflt: L.LB_SLOTS_MAX, min: 1, unit: '(frontend, backend) slots of every frontend together' },
  lb_members: { dflt: L.LB_MEMBERS_MAX, min: 1, unit: '(frontend, backend) pairs' },
  // slots, as lb_consts.h counts them: two u32 ids per element of the array
  lb_maglev_slots: {
    dflt: L.LB_MAGLEV_SLOTS_MAX, min: regionSize(L.LB_MAGLEV_M_MAX), unit: 'Maglev slots of every table together (4 bytes each)',
    entries: (n: number) => n / L.LB_MAGLEV_IDS_PER_ELEM,
    check: (n: number) => (n % L.LB_MAGLEV_IDS_PER_ELEM ? `must be a multiple of ${L.LB_MAGLEV_IDS_PER_ELEM} (two slots per array element)` : undefined),
  },
  lb_revnat: { dflt: DEFAULT_ID_LIMITS.frontendIds, min: 2, unit: 'frontend ids + 1' },
  // the default on more than 16 CPUs is smaller: defaultFeStatsEntries()
  lb_fe_stats: { dflt: DEFAULT_ID_LIMITS.frontendIds, min: 2, unit: 'frontend ids counted + 1 (per-CPU counters; ids past it are served uncounted)' },
  lb_affinity: { dflt: L.LB_AFFINITY_MAX, min: 1, unit: 'sessionAffinity ClientIP entries' },
  lb_src_ranges: { dflt: L.LB_SRC_RANGES_MAX, min: 1, unit: 'loadBalancerSourceRanges prefixes' },
  lb_ct: { dflt: L.LB_CT_MAX, min: 1, unit: 'conntrack entries (two per flow)' },
  lb_ct_syn: { dflt: L.LB_CT_SYN_MAX, min: 1, unit: 'conntrack entries of TCP handshakes (two per flow)' },
  lb_sock_revnat: { dflt: L.LB_SOCK_REVNAT_MAX, min: 1, unit: 'unconnected UDP reverse entries' },
  lb_frags: { dflt: L.LB_FRAGS_MAX, min: 1, unit: 'datagrams in fragments' },
} satisfies Record<string, Sizable>;

export type SizableMap = keyof typeof SIZABLE_MAPS;
/** Sizes by map, in each map's unit (slots for lb_maglev_slots, entries for the rest). */
export type MapSizes = Partial<Record<SizableMap, number>>;

function isSizable(name: string): name is SizableMap {
  return Object.hasOwn(SIZABLE_MAPS, name);
}

/**
 * Parses --bpf-map-max items, NAME=N each (NAME with or without its lb_ prefix; N an integer, or with
 * a k/M/G suffix of 1000s); later items win. Throws KBP_ERR_CONFIG naming the item and what is wrong.
 */
export function parseMapSizes(items: readonly string[], flag = '--bpf-map-max'): MapSizes {
  const out: MapSizes = {};
  for (const item of items) {
    const m = /^\s*([a-z_]+)\s*=\s*(\d+)([kKMG]?)\s*$/.exec(item);
    if (!m) throw new KbpError('KBP_ERR_CONFIG', `${flag} ${JSON.stringify(item)}: expected MAP=N (maps: ${Object.keys(SIZABLE_MAPS).join(', ')})`);
    const name = m[1]!.startsWith('lb_') ? m[1]! : `lb_${m[1]!}`;
    if (!isSizable(name)) throw new KbpError('KBP_ERR_CONFIG', `${flag} ${JSON.stringify(item)}: ${m[1]} is not a map sized at load (maps: ${Object.keys(SIZABLE_MAPS).join(', ')})`);
    const mult = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9 }[m[3]!]!;
    out[name] = Number(m[2]) * mult;
    checkSize(name, out[name], flag);
  }
  return out;
}

/** Throws KBP_ERR_CONFIG when n cannot be the size of map `name`. */
export function checkSize(name: SizableMap, n: number, flag = '--bpf-map-max'): void {
  const s: Sizable = SIZABLE_MAPS[name];
  const max = s.entries ? U32 - (U32 % L.LB_MAGLEV_IDS_PER_ELEM) : U32;
  const why = !Number.isSafeInteger(n) ? 'not an integer'
    : n < s.min ? `below ${s.min}, the smallest it can be${name === 'lb_maglev_slots' ? ' (the largest table, M ' + L.LB_MAGLEV_M_MAX + ')' : ''}`
    : n > max ? `above ${max} (a u32 index)`
    : s.check?.(n);
  if (why) throw new KbpError('KBP_ERR_CONFIG', `${flag} ${name}=${n}: ${why}; ${name} holds ${s.unit}, ${s.dflt} by default`);
}

/** max_entries of each map the sizes name. */
export function maxEntriesOf(sizes: MapSizes): Array<[SizableMap, number]> {
  return (Object.entries(sizes) as Array<[SizableMap, number]>).map(([name, n]) => {
    checkSize(name, n);
    const s: Sizable = SIZABLE_MAPS[name];
    return [name, s.entries ? s.entries(n) : n];
  });
}

/** The most kernel memory lb_fe_stats takes by default: its 16 bytes are per possible CPU. */
export const FE_STATS_BUDGET = 32 * 2 ** 20;

/**
 * lb_fe_stats' default size on a node of `cpus` possible CPUs: every frontend id up to 16 CPUs, fewer
 * past that, so that the counters stay within FE_STATS_BUDGET (131,072 ids would take 256 MiB at 128
 * CPUs, more than all the other maps together). Frontends whose ids lie past it are translated all
 * the same, with no per-frontend counters; ids are given from 1 up, so the first that many are counted.
 */
export function defaultFeStatsEntries(cpus: number, objectEntries: number = SIZABLE_MAPS.lb_fe_stats.dflt): number {
  const fit = Math.floor(FE_STATS_BUDGET / (L.FE_STATS.size * Math.max(1, cpus)));
  return Math.max(SIZABLE_MAPS.lb_fe_stats.min, Math.min(objectEntries, fit));
}

/**
 * kube-proxy's conntrack sizing: --conntrack-max-per-core and --conntrack-min (KubeProxyConfiguration
 * conntrack.maxPerCore / conntrack.min), defaults from pkg/proxy/apis/config/v1alpha1/defaults.go.
 */
export interface ConntrackSizing {
  /** flows per CPU; 0: kube-proxy leaves nf_conntrack_max as it is, here lb_ct keeps the object's size */
  maxPerCore: number;
  /** the fewest flows, whatever the CPU count */
  min: number;
}

export const CONNTRACK_DEFAULTS: Readonly<ConntrackSizing> = { maxPerCore: 32 * 1024, min: 128 * 1024 };

/**
 * Flows kube-proxy would let nf_conntrack hold on a node of `cpus` CPUs (getConntrackMax,
 * cmd/kube-proxy/app/server_linux.go: maxPerCore x CPUs, at least min; 0 when maxPerCore is 0:
 * "leave the limit alone").
 */
export function conntrackMaxFlows(c: ConntrackSizing, cpus: number): number {
  if (!(c.maxPerCore > 0)) return 0;
  return Math.max(c.maxPerCore * Math.max(1, cpus), c.min);
}

/**
 * lb_ct's and lb_ct_syn's default max_entries on a node of `cpus` online CPUs: two entries a flow
 * (one per direction) for kube-proxy's conntrack limit (conntrackMaxFlows), never more than the
 * object's own sizes (`object`): nf_conntrack allocates its entries as flows come, an LRU hash
 * preallocates every one (144 bytes each here, and ~0.25 us of the load's CPU each), so a node
 * of many CPUs would pin hundreds of MiB for flows it may never see. `--bpf-map-max lb_ct=N` sizes
 * it past that. lb_ct_syn (handshakes in flight) keeps the object's ratio to lb_ct. On this 2-CPU VM:
 * 262,144 and 32,768 entries in place of 524,288 and 65,536.
 */
export function defaultCtEntries(cpus: number, object: { lb_ct: number; lb_ct_syn: number }, c: ConntrackSizing = CONNTRACK_DEFAULTS): { lb_ct: number; lb_ct_syn: number } {
  const flows = conntrackMaxFlows(c, cpus);
  const ct = flows ? Math.max(SIZABLE_MAPS.lb_ct.min, Math.min(object.lb_ct, 2 * flows)) : object.lb_ct;
  return { lb_ct: ct, lb_ct_syn: ctSynFor(ct, object) };
}

/** lb_ct_syn for an lb_ct of `ct` entries: the object's ratio, at most the object's size. */
export function ctSynFor(ct: number, object: { lb_ct: number; lb_ct_syn: number }): number {
  return Math.max(SIZABLE_MAPS.lb_ct_syn.min, Math.min(object.lb_ct_syn, Math.ceil((object.lb_ct_syn * ct) / object.lb_ct)));
}

/** For logs and the help: NAME=N of every map whose size differs from the default. */
export function formatMapSizes(sizes: MapSizes): string {
  return (Object.entries(sizes) as Array<[SizableMap, number]>).filter(([k, v]) => v !== SIZABLE_MAPS[k].dflt).map(([k, v]) => `${k}=${v}`).join(',');
}

/**
 * The sizes a load of the data plane asks for (`sizes`: --bpf-map-max) in its mode. With the socket
 * hooks off (--socket-lb=false) no program that reads or writes lb_sock_revnat is attached, so it is
 * made with one entry, unless --bpf-map-max sizes it: its 262,144 preallocated LRU elements (32 MiB)
 * took ~50 ms of the load's CPU at every fresh start (docs/perf-log.md, session 20). A restart with the
 * hooks on carries the pinned map over at its default size as any resized map (migrate.ts).
 */
export function sizesForMode(sizes: MapSizes | undefined, mode: { socketLb: boolean }): MapSizes | undefined {
  if (mode.socketLb || sizes?.lb_sock_revnat !== undefined) return sizes;
  return { ...sizes, lb_sock_revnat: SIZABLE_MAPS.lb_sock_revnat.min };
}
