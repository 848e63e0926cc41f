// The conntrack sweep: deletes the entries of lb_ct and lb_ct_syn that are past their lifetime.
//
// The programs already treat an expired entry as a miss (lb_ct.h lb_ct_lookup), so the sweep changes
// no verdict: it gives the memory back before LRU eviction would, so that at high fill the entries
// LRU evicts are idle ones, not live flows'. Lifetimes are lb_consts.h's (layout.ctLifetimeNs);
// last_seen is CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns), which process.hrtime.bigint() reads too.
// A packet that refreshes an entry between the scan and the delete loses it: its flow is balanced
// again, onto the same backend while the backends are unchanged (Maglev).
import * as L from './layout.js';
import type { BpfMap } from './native/map.js';
import { Kept } from '../../util/kept.js';

const PROTO_OFF = L.CT_KEY.fields.proto.offset;
const FLAGS_OFF = L.CT_ENTRY.fields.flags.offset;

export interface SweepResult {
  map: 'lb_ct' | 'lb_ct_syn';
  /** entries seen by the scan */
  entries: number;
  /** entries deleted as expired */
  expired: number;
  capacity: number;
}

/**
 * One pass over a conntrack map; now: CLOCK_MONOTONIC ns (default: this process's clock). Runs in
 * batches of `batch` entries (default 4096): each batch's expired entries are deleted on the thread
 * pool and the event loop gets a turn before the next, so a sync or a scrape waits at most one batch,
 * not the whole map (a million entries at full lb_ct).
 */
export async function sweepConntrack(m: BpfMap, map: 'lb_ct' | 'lb_ct_syn', now = process.hrtime.bigint(), batch = 4096,
  /** sees every entry the pass keeps (views valid during the call) */
  visitLive?: (k: Buffer, v: Buffer) => void,
  /** sees every entry the scan finds, those it deletes as expired too */
  visitEach?: (k: Buffer) => void): Promise<SweepResult> {
  const ks = m.keySize;
  // a batch's expired keys, packed as deleteManyAsync takes them: the buffer of the last sweep
  let keys = expiredKeys.take() ?? Buffer.alloc(Math.min(batch, 256) * ks);
  let n = 0, entries = 0, deleted = 0;
  try {
    await m.scanYielding((k, v) => {
      entries++;
      visitEach?.(k);
      // a signed 64-bit difference, as the programs compute it (lb_ct_fresh_for)
      const idle = BigInt.asIntN(64, now - v.readBigUInt64LE(0));
      if (idle > L.ctLifetimeNs(map, k.readUInt8(PROTO_OFF), v.readUInt16LE(FLAGS_OFF))) {
        // grown by doubling to the most a batch expired (at most the map's max_entries keys)
        if ((n + 1) * ks > keys.length) keys = grown(keys, n * ks, (n + 1) * ks);
        k.copy(keys, n * ks);
        n++;
      } else {
        visitLive?.(k, v);
      }
    }, {
      batch,
      // the scan waits for it: no visit writes keys while the delete reads them
      onBatch: async () => {
        if (!n) return;
        const c = n;
        n = 0;
        deleted += await m.deleteManyAsync(keys.subarray(0, c * ks), c);
      },
    });
  } finally {
    expiredKeys.give(keys);
  }
  return { map, entries, expired: deleted, capacity: m.maxEntries };
}

/**
 * The expired keys' buffer, kept from sweep to sweep: a Buffer.from() per key and a concat per batch
 * made fresh ArrayBuffers at every sweep (up to 160 KiB a batch of 4096 lb_ct keys), which lived
 * until a major GC and faulted in fresh pages each time (docs/perf-log.md session 30, p30tail; session
 * 31, p31ct). One pass holds it at a time; another running meanwhile has its own.
 */
const expiredKeys = new Kept<Buffer>();

/** a buffer of at least `need` bytes, twice b's at least, holding b's first `used` bytes */
function grown(b: Buffer, used: number, need: number): Buffer {
  const g = Buffer.alloc(Math.max(need, 2 * b.length));
  b.copy(g, 0, 0, used);
  return g;
}

/** The LRU maps whose evictions are counted, with the lb_stats counters of the programs' new keys and deletions. */
export const EVICTION_COUNTERS = {
  lb_ct: { insert: 'ct_insert', delete: 'ct_delete' },
  lb_ct_syn: { insert: 'ct_syn_insert', delete: 'ct_syn_delete' },
  lb_frags: { insert: 'frag_insert', delete: undefined },
} as const satisfies Record<string, { insert: L.LbStatName; delete: L.LbStatName | undefined }>;
export type EvictedMap = keyof typeof EVICTION_COUNTERS;

/**
 * LRU evictions of a map, which the kernel does not count: every entry leaves by a deletion of the
 * programs (counted in lb_stats), of the agent (the sweep, counted here) or by eviction, so
 *   evictions = inserts - deletions - (count now - count at the first observation),
 * over the counters' growth since the first observation (entries that were there before, written
 * by an earlier agent or migrated, are in the base). The count comes from a scan that is not atomic
 * with the counters: the inserts are read before it and the deletions after it, so packets during
 * the scan can only make the figure low, never high; it is kept monotonic (a counter), and a low
 * reading is made up at the next quiet observation.
 */
export class EvictionCounter {
  readonly #base = new Map<string, number>();
  readonly #total = new Map<string, number>();
  readonly #swept = new Map<string, number>();
  /** the counters and count of the last observation, for the fill between observations */
  readonly #last = new Map<string, { inserts: number; deletes: number; entries: number }>();

  /** entries the agent deleted from map (the sweep, or any other delete of its own) */
  agentDeleted(map: EvictedMap, n: number): void {
    this.#swept.set(map, (this.#swept.get(map) ?? 0) + n);
  }

  /**
   * One observation: inserts read before the map was counted, deletes after (the programs'
   * cumulative counters), entries the count. Returns the evictions so far.
   */
  observe(map: EvictedMap, inserts: number, deletes: number, entries: number): number {
    const dels = deletes + (this.#swept.get(map) ?? 0);
    const v = inserts - dels - entries;
    this.#last.set(map, { inserts, deletes: dels, entries });
    const base = this.#base.get(map);
    if (base === undefined) {
      this.#base.set(map, v);
      this.#total.set(map, 0);
      return 0;
    }
    const total = Math.max(this.#total.get(map) ?? 0, v - base);
    this.#total.set(map, total);
    return total;
  }

  /** evictions so far per observed map */
  totals(): Record<string, number> {
    return Object.fromEntries(this.#total);
  }

  /**
   * The map's fill now, from the last observation's count and the programs' inserts and deletes since
   * (evictions since are not known: at most capacity). undefined before the first observation.
   */
  fillNow(map: EvictedMap, inserts: number, deletes: number, capacity: number): number | undefined {
    const l = this.#last.get(map);
    if (!l) return undefined;
    const dels = deletes + (this.#swept.get(map) ?? 0);
    return Math.max(0, Math.min(capacity, l.entries + (inserts - l.inserts) - (dels - l.deletes)));
  }
}

/** the programs' cumulative insert and delete counters of map, from lb_stats summed over CPUs */
export function evictionCounters(stats: Partial<Record<L.LbStatName, number>>, map: EvictedMap): { inserts: number; deletes: number } {
  const c: { insert: L.LbStatName; delete: L.LbStatName | undefined } = EVICTION_COUNTERS[map];
  return { inserts: stats[c.insert] ?? 0, deletes: c.delete ? stats[c.delete] ?? 0 : 0 };
}

const DIR_OFF = L.CT_KEY.fields.dir.offset;
const REV_HALF_BYTES = L.LB_REV_FILTER_WORDS * 8;
/**
 * The words buffers (256 KiB each) of finished FilterBuilds, for the next ones: a sweep builds two
 * (lb_rev_filter's and lb_ct_filter's), and fresh ones every 30 s lived until a major GC and faulted
 * in 128 fresh pages each (docs/perf-log.md session 30, p30tail; session 31, p31ct). At most two kept.
 */
const freeWords = new Kept<Buffer>(2);

/** each half's element keys and the zero words that clear them: built once (16,384 keys a half), not at every sweep */
const zeroings: Array<{ keys: Buffer; values: Buffer } | undefined> = [];
function zeroing(half: 1 | 2): { keys: Buffer; values: Buffer } {
  let z = zeroings[half];
  if (!z) {
    const n = L.LB_REV_FILTER_WORDS, keys = Buffer.alloc(n * 4);
    for (let i = 0; i < n; i++) keys.writeUInt32LE(L.revFilterElem(i * 64, half), i * 4);
    // the kernel only reads them: one zero buffer serves both halves
    z = zeroings[half] = { keys, values: zeroings[3 - half]?.values ?? Buffer.alloc(n * 8) };
  }
  return z;
}

/**
 * Which halves of lb_rev_filter are all zero, so that a sweep need not zero one again: a half is
 * zero after its zeroing until a rebuild ORs a bit into it or the programs set one, and the programs
 * set one only after writing a conntrack entry, which the insert counters count (lb_ct.h, lb_svc.h,
 * lb_orphan.h: lb_lru_put with LB_STAT_CT_INSERT or LB_STAT_CT_SYN_INSERT, then
 * lb_rev_filter_set). So a half zeroed at insert count c, into which its rebuild ORed nothing, is
 * still zero while the count is c. A node without conntrack traffic (the agent's own test runs, a
 * quiet node) then pays no 16,384-word batch every 30 s. Only ever skips a zeroing: a bit left set
 * costs a lookup, never a reply (a false positive of the filter).
 */
export class RevFilterZeroing {
  readonly #halves = new Map<1 | 2, { map: BpfMap; inserts: number; ored: boolean }>();

  /** whether half of m is known all zero at this insert count */
  clean(m: BpfMap, half: 1 | 2, inserts: number): boolean {
    const h = this.#halves.get(half);
    return h !== undefined && h.map === m && !h.ored && h.inserts === inserts;
  }

  zeroedAt(m: BpfMap, half: 1 | 2, inserts: number): void {
    this.#halves.set(half, { map: m, inserts, ored: false });
  }

  /**
   * m was made by this load (an ARRAY the kernel made all zero) and the programs have written no
   * conntrack entry since (inserts: their count now, before any program is attached): both halves
   * are zero, so the first sweep zeroes neither (two batches of 16,384 words on a start's critical
   * path, and the keys' buffer built for them: docs/perf-log.md, session 25)
   */
  fresh(m: BpfMap, inserts: number): void {
    this.zeroedAt(m, 1, inserts);
    this.zeroedAt(m, 2, inserts);
  }

  /** the rebuild's bits went into half (reverse: the reverse entries it saw) */
  ored(m: BpfMap, half: 1 | 2, reverse: number): void {
    const h = this.#halves.get(half);
    if (!h || h.map !== m) this.#halves.delete(half);
    else if (reverse > 0) h.ored = true;
  }
}

/**
 * A rebuild of lb_rev_filter (bpf/lb_maps.h), the filter in front of the programs' reply lookups,
 * or of lb_ct_filter, the one in front of a new flow's lb_ct lookups, over one sweep: begin() zeroes
 * the half the programs do not read, the sweep's scans pass each entry to visit() (the expired ones
 * too: the programs' clock may read a tick behind the sweep's until the delete; lb_rev_filter: the
 * reverse entries of lb_ct and lb_ct_syn; lb_ct_filter: every key of lb_ct, and the caller passes
 * it lb_ct's scan only), and finish() ORs the bits of the entries seen into that half and switches
 * the programs to it. Bits of entries since gone are dropped so; no bit of a live entry is: the
 * programs set the bit of every entry they write, in both halves and after the entry, so an entry
 * written after the zeroing has its bit there, and one written before it is in the map when the scan
 * starts. The OR is atomic per word (writeMmap's or): a plain write would undo bits the programs set
 * meanwhile. A pass that fails leaves the half in use as it was; a map whose switch is off (a fresh
 * map, or one a restart switched off: loader.ts) is switched on by the first pass that completes.
 */
export class FilterBuild {
  /** elements 1 .. 2 * LB_REV_FILTER_WORDS as mapped: this half's words, the other half's left 0 (not
   * written); a finished build's, zeroed (freeWords), else new */
  readonly #words = freeWords.take()?.fill(0) ?? Buffer.alloc(2 * REV_HALF_BYTES);
  #seen = 0;
  #finished = false;

  private constructor(private readonly m: BpfMap, readonly half: 1 | 2, readonly kind: 'rev' | 'ct') {}

  /**
   * With `zeroed` (kept across sweeps) and the programs' inserts now into the maps the filter covers
   * (lb_stats ct_insert + ct_syn_insert for lb_rev_filter, ct_insert for lb_ct_filter), a half known
   * to be all zero is not zeroed again (RevFilterZeroing).
   */
  static async begin(m: BpfMap, kind: 'rev' | 'ct', zeroed?: RevFilterZeroing, inserts?: number): Promise<FilterBuild> {
    const on = m.lookup(L.encodeU32(0))?.readBigUInt64LE(0);
    const b = new FilterBuild(m, on === 1n ? 2 : 1, kind);
    b.#zeroed = zeroed;
    if (zeroed && inserts !== undefined && zeroed.clean(m, b.half, inserts)) return b;
    b.zeroedHalf = true;
    // this half's words only: the other half's, interleaved with them, are the programs' to read.
    // On the thread pool: 16,384 words in one batch held the event loop ~7 ms every sweep, and a
    // change arriving then waited (docs/perf-log.md, session 13)
    const z = zeroing(b.half);
    // the inserts are read before the zeroing: an entry written after the read counts against it
    await m.updateBatchAsync(z.keys, z.values, L.LB_REV_FILTER_WORDS);
    if (inserts !== undefined) zeroed?.zeroedAt(m, b.half, inserts);
    return b;
  }

  #zeroed: RevFilterZeroing | undefined;
  /** begin() zeroed this half (false: it was known zero already) */
  zeroedHalf = false;

  /** an entry of a map the filter covers */
  readonly visit = (k: Buffer): void => {
    if (this.kind === 'ct') {
      this.#seen++;
      this.#set(L.ctFilterBit(k));
      return;
    }
    if (k[DIR_OFF] !== L.LB_CT_DIR_REV) return;
    this.#seen++;
    // older builds' bit too (L.feFilterBitLegacy): an older object's programs read that one
    for (const bit of L.revFilterBits(k)) this.#set(bit);
  };

  /** ORs the bits in and switches the programs to this half; the entries seen (lb_rev_filter: the reverse ones) */
  finish(): number {
    if (this.#finished) throw new Error(`FilterBuild of ${this.kind}: finished twice`);
    this.#finished = true;
    if (this.#seen) this.m.writeMmap(this.#words, 8, true);
    // for the next build (a sweep's two at a time); a build dropped unfinished leaves it to the GC
    freeWords.give(this.#words);
    this.#zeroed?.ored(this.m, this.half, this.#seen);
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(BigInt(this.half));
    this.m.update(L.encodeU32(0), v);
    return this.#seen;
  }

  #set(bit: number): void {
    if (this.#finished) throw new Error(`FilterBuild of ${this.kind}: an entry visited after its finish`);
    const byte = (L.revFilterElem(bit, this.half) - 1) * 8 + ((bit & 63) >>> 3);
    this.#words[byte] = this.#words[byte]! | (1 << (bit & 7));
  }
}
