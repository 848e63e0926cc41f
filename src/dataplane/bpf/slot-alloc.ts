// The regions of lb_maglev_slots: one array holds every Maglev table, a region of M slots (rounded up
// to whole elements) each, allocated here. Pure bookkeeping, no system call.
//
// - Free regions are kept by size. Tables come in few sizes (with pow2 sizing one M per power of two
//   of the member count), so a region freed by one table usually fits the next of its size exactly;
//   otherwise a larger free region is split, and when nothing fits, adjacent free regions are merged.
// - A region a table leaves is quarantined before reuse: a BPF program that read the frontend's old
//   {offset, M} just before the switch may still read the region. Programs run for microseconds, in
//   an RCU read-side section; a region is reused only from a later write (begin()) and after
//   graceMs, far past any grace period.
import { LB_MAGLEV_IDS_PER_ELEM } from '../../plan/limits.js';

export interface Region {
  /** first slot (a multiple of LB_MAGLEV_IDS_PER_ELEM) */
  off: number;
  /** slots taken (M rounded up to whole elements) */
  size: number;
}

/** The slots an M-slot table takes: whole elements. */
export function regionSize(m: number): number {
  return Math.ceil(m / LB_MAGLEV_IDS_PER_ELEM) * LB_MAGLEV_IDS_PER_ELEM;
}

export class SlotAllocator {
  readonly capacity: number;
  private readonly graceMs: number;
  private readonly now: () => number;
  /** slots below top have been handed out at some point; above is untouched */
  private top = 0;
  /** size -> offsets of free regions of that size */
  private readonly free = new Map<number, number[]>();
  private freeSlots = 0;
  private quarantine: Array<Region & { gen: number; at: number }> = [];
  private quarantinedSlots = 0;
  private gen = 0;

  constructor(capacity: number, opts: { graceMs?: number; now?: () => number } = {}) {
    this.capacity = capacity - (capacity % LB_MAGLEV_IDS_PER_ELEM);
    this.graceMs = opts.graceMs ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  /** slots in tables now */
  get used(): number {
    return this.top - this.freeSlots - this.quarantinedSlots;
  }

  /** slots waiting out their grace period */
  get quarantined(): number {
    return this.quarantinedSlots;
  }

  /** A write begins: regions freed by an earlier write, graceMs ago or more, may be reused. */
  begin(): void {
    this.gen++;
    if (!this.quarantine.length) return;
    const t = this.now(), keep: typeof this.quarantine = [];
    for (const q of this.quarantine) {
      if (q.gen < this.gen && t - q.at >= this.graceMs) {
        this.quarantinedSlots -= q.size;
        this.putFree(q.off, q.size);
      } else keep.push(q);
    }
    this.quarantine = keep;
  }

  /** A region for an M-slot table, or undefined when the array has no room (now). */
  alloc(m: number): Region | undefined {
    const size = regionSize(m);
    return this.take(size) ?? (this.merge() ? this.take(size) : undefined);
  }

  /** The table left the region: quarantined until a later write, graceMs on. */
  release(r: Region): void {
    this.quarantine.push({ ...r, gen: this.gen, at: this.now() });
    this.quarantinedSlots += r.size;
  }

  /**
   * A region no reader was ever told of (a table filled ahead of an apply that did not come): free
   * at once, as no program can be reading it.
   */
  unread(r: Region): void {
    this.putFree(r.off, r.size);
  }

  /**
   * Marks the regions the kernel holds (an agent restarting over pinned maps); every slot below the
   * highest end that no region covers becomes free. Call once, before any alloc.
   */
  load(regions: Iterable<Region>): void {
    const sorted = [...regions].sort((a, b) => a.off - b.off);
    let at = 0;
    for (const r of sorted) {
      if (r.off > at) this.putFree(at, r.off - at);
      at = Math.max(at, r.off + r.size);
    }
    this.top = at;
  }

  private take(size: number): Region | undefined {
    const exact = this.free.get(size);
    if (exact?.length) {
      this.freeSlots -= size;
      return { off: exact.pop()!, size };
    }
    if (this.top + size <= this.capacity) {
      const off = this.top;
      this.top += size;
      return { off, size };
    }
    // the smallest free region that is larger: split it
    let best: number | undefined;
    for (const [s, offs] of this.free) if (s > size && offs.length && (best === undefined || s < best)) best = s;
    if (best === undefined) return undefined;
    const off = this.free.get(best)!.pop()!;
    this.freeSlots -= best;
    this.putFree(off + size, best - size);
    return { off, size };
  }

  private putFree(off: number, size: number): void {
    if (size <= 0) return;
    let l = this.free.get(size);
    if (!l) this.free.set(size, l = []);
    l.push(off);
    this.freeSlots += size;
  }

  /** Merges adjacent free regions (and gives a free tail back to top); true when anything merged. */
  private merge(): boolean {
    const all: Region[] = [];
    for (const [size, offs] of this.free) for (const off of offs) all.push({ off, size });
    if (!all.length) return false;
    all.sort((a, b) => a.off - b.off);
    const merged: Region[] = [];
    for (const r of all) {
      const last = merged[merged.length - 1];
      if (last && last.off + last.size === r.off) last.size += r.size;
      else merged.push({ ...r });
    }
    const tail = merged[merged.length - 1]!;
    let changed = merged.length < all.length;
    if (tail.off + tail.size === this.top) {
      this.top = tail.off;
      merged.pop();
      changed = true;
    }
    this.free.clear();
    this.freeSlots = 0;
    for (const r of merged) this.putFree(r.off, r.size);
    return changed;
  }
}
