// What the data plane's maps cost in kernel memory at the sizes they load with, known before they are
// created: at the default sizes ~290 MiB, allocated at load whatever the Service count and charged to
// the agent's memory cgroup (the kernel accounts BPF memory to the cgroup since 5.11). A node or pod
// that cannot hold them does not fail the load with an error: the kernel's OOM killer ends the agent
// (seen in a 512 MiB VM), so the agent says beforehand what the maps will take and what there is.
//
// The figures follow the kernel's own accounting (bpf_map_memory_usage: array_map_mem_usage in
// kernel/bpf/arraymap.c, htab_map_mem_usage in kernel/bpf/hashtab.c, 6.x), which fdinfo's `memlock`
// reports once a map exists (test/datapath/map-memory.test.ts holds the two together). A hash map
// made with BPF_F_NO_PREALLOC costs its buckets at load and grows by one element per entry.
import { cgroupDirs, procView, type CgroupView } from '../../util/cgroup.js';
import { BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, MapType } from './native/uapi.js';

export interface MapSpec { name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }

const PAGE = 4096;
const round8 = (n: number) => Math.ceil(n / 8) * 8;
const pageAlign = (n: number) => Math.ceil(n / PAGE) * PAGE;
const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

// x86-64 sizes of the kernel structs the accounting adds (6.1-6.18): struct bpf_array's header,
// struct bpf_htab, a bucket (hlist_nulls_head + raw_spinlock_t), struct htab_elem before its key
const ARRAY_HEADER = 320, HTAB_HEADER = 320, BUCKET = 16, HTAB_ELEM = 48, HASHTAB_MAP_LOCK_COUNT = 8, LLIST_NODE = 8, LPM_NODE = 40;

/**
 * Bytes the kernel accounts for a map of this definition when it is created (entries: what a map
 * without preallocation holds; 0 at load). Maps of other types: their values and keys, a floor.
 */
export function mapMemoryBytes(m: MapSpec, cpus: number, entries = 0): number {
  const value = round8(m.valueSize);
  switch (m.type) {
    case MapType.ARRAY:
    case MapType.PERCPU_ARRAY: {
      if (m.type === MapType.PERCPU_ARRAY) return ARRAY_HEADER + m.maxEntries * 8 + m.maxEntries * value * cpus;
      if (m.flags & BPF_F_MMAPABLE) return pageAlign(ARRAY_HEADER) + pageAlign(m.maxEntries * value);
      return ARRAY_HEADER + m.maxEntries * value;
    }
    case MapType.HASH:
    case MapType.PERCPU_HASH:
    case MapType.LRU_HASH:
    case MapType.LRU_PERCPU_HASH: {
      const percpu = m.type === MapType.PERCPU_HASH || m.type === MapType.LRU_PERCPU_HASH;
      const lru = m.type === MapType.LRU_HASH || m.type === MapType.LRU_PERCPU_HASH;
      const prealloc = !(m.flags & BPF_F_NO_PREALLOC);
      const elem = HTAB_ELEM + round8(m.keySize) + (percpu ? 8 : value);
      let usage = HTAB_HEADER + BUCKET * pow2(m.maxEntries) + 4 * cpus * HASHTAB_MAP_LOCK_COUNT;
      if (prealloc) {
        // a plain hash keeps one spare element per CPU for updates in place
        const n = m.maxEntries + (!percpu && !lru ? cpus : 0);
        usage += elem * n;
        if (percpu) usage += value * cpus * n;
        else if (!lru) usage += 8 * cpus;
      } else {
        usage += (elem + LLIST_NODE) * entries;
        if (percpu) usage += value * cpus * entries;
      }
      return usage;
    }
    case MapType.LPM_TRIE:
      // nodes as they are inserted (struct lpm_trie_node, its prefix bytes and the value)
      return entries * (LPM_NODE + m.keySize - 4 + m.valueSize);
    default:
      return m.maxEntries * (round8(m.keySize) + value);
  }
}

/** The total and the largest maps, for a log line: [name, bytes], largest first. */
export function mapsMemory(specs: readonly MapSpec[], cpus: number): { total: number; largest: Array<[string, number]> } {
  const each = specs.map((s): [string, number] => [s.name, mapMemoryBytes(s, cpus)]).sort((a, b) => b[1] - a[1]);
  return { total: each.reduce((n, [, b]) => n + b, 0), largest: each.slice(0, 5) };
}

/**
 * The memory this process may still take, in bytes: /proc/meminfo's MemAvailable and, where its
 * memory cgroup or one above it has a limit, the room under the tightest (v2 memory.max less
 * memory.current; v1 memory.limit_in_bytes less memory.usage_in_bytes); the smallest, with where it
 * was read. Undefined where none can be read.
 */
export function memoryAvailable(view: CgroupView = procView(), meminfo = view.read('/proc/meminfo') ?? ''): { bytes: number; from: string } | undefined {
  let best: { bytes: number; from: string } | undefined;
  const offer = (bytes: number, from: string) => {
    if (Number.isFinite(bytes) && (!best || bytes < best.bytes)) best = { bytes: Math.max(0, bytes), from };
  };
  const kb = /^MemAvailable:\s+(\d+) kB$/m.exec(meminfo);
  if (kb) offer(Number(kb[1]) * 1024, '/proc/meminfo MemAvailable');
  const num = (path: string) => Number((view.read(path) ?? '').trim() || NaN);
  for (const { dir, v2 } of cgroupDirs(view, 'memory')) {
    if (v2) {
      // "max" (no limit) reads as NaN
      offer(num(`${dir}/memory.max`) - num(`${dir}/memory.current`), `${dir}/memory.max`);
    } else {
      const limit = num(`${dir}/memory.limit_in_bytes`);
      // v1 says "no limit" with LONG_MAX rounded down to a page
      if (limit < 2 ** 62) offer(limit - num(`${dir}/memory.usage_in_bytes`), `${dir}/memory.limit_in_bytes`);
    }
  }
  return best;
}

/** What mapMemoryWarning logs: the maps' need against the room, in MiB, and what to do. */
export interface MapMemoryWarning { mapsMiB: number; availableMiB: number; from: string; largest: string; hint: string }

/**
 * A warning for the log when the maps the load will create need more than the memory there is
 * (undefined when they fit, or nothing is known of the memory): names the total, the room and its
 * source, the largest maps, and the flag that sizes them.
 */
export function mapMemoryWarning(need: { total: number; largest: Array<[string, number]> }, avail: { bytes: number; from: string } | undefined): MapMemoryWarning | undefined {
  if (!avail || need.total <= avail.bytes) return undefined;
  const mib = (b: number) => Math.round(b / 2 ** 20);
  return {
    mapsMiB: mib(need.total), availableMiB: mib(avail.bytes), from: avail.from,
    largest: need.largest.map(([n, b]) => `${n} ${mib(b)} MiB`).join(', '),
    hint: 'size them down with --bpf-map-max MAP=N (README, limits), or give the agent more memory',
  };
}

/** The reason a load the kernel refused for memory adds to its error, from the warning given before it. */
export function mapMemoryShortfall(w: MapMemoryWarning): string {
  return `the maps need ~${w.mapsMiB} MiB of kernel memory and ${w.from} leaves ${w.availableMiB} MiB (largest: ${w.largest}); ${w.hint}`;
}
