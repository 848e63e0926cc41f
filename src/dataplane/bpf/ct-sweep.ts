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

const PROTO_OFF = 36; // lb_ct_key.proto
const FLAGS_OFF = 16; // lb_ct_entry.flags

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
export async function sweepConntrack(m: BpfMap, map: 'lb_ct' | 'lb_ct_syn', now = process.hrtime.bigint(), batch = 4096): Promise<SweepResult> {
  let expired: Buffer[] = [];
  let entries = 0, deleted = 0;
  await m.scanYielding((k, v) => {
    entries++;
    // a signed 64-bit difference, as the programs compute it (lb_ct_fresh_for)
    const idle = BigInt.asIntN(64, now - v.readBigUInt64LE(0));
    if (idle > L.ctLifetimeNs(map, k.readUInt8(PROTO_OFF), v.readUInt16LE(FLAGS_OFF))) expired.push(Buffer.from(k));
  }, {
    batch,
    onBatch: async () => {
      if (!expired.length) return;
      const keys = Buffer.concat(expired), n = expired.length;
      expired = [];
      deleted += await m.deleteManyAsync(keys, n);
    },
  });
  return { map, entries, expired: deleted, capacity: m.maxEntries };
}
