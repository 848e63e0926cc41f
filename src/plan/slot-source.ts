// Maglev tables whose slots are filled where they are written (issue 10). A full build makes every
// table of the state: 64 MiB of slots at 10,000 Services, 648 MiB at 100,000, a copy of what the
// kernel's lb_maglev_slots then holds, whose first touches alone cost ~0.3 s of CPU at 10k. So the
// build keeps only each member's two hashes and id (12 bytes per member, shared by the build's
// tables), and the map writer fills the tables a bounded chunk at a time into the memory it copies
// into the kernel (map-writer.ts writeTables). Anyone else who reads a table's `slots` gets them
// computed then, once, slot for slot what the writer writes (the same fill: maglev.ts, maglev-native.ts).
import { KbpError } from '../util/errors.js';
import { MaglevBuilder } from './maglev.js';
import { nativeFill, nativeFillAvailable } from './maglev-native.js';
import { NO_SLOTS, type PlanTable } from './types.js';

/**
 * The members of a build's new tables: per member (contiguous per table, canonical order) its two
 * Maglev hashes (maglevHashes) and the id its slots receive.
 */
export interface SlotSource {
  h1: Uint32Array;
  h2: Uint32Array;
  ids: Uint32Array;
}

/**
 * A table whose slots are computed when first read (or filled straight into the kernel by the map
 * writer, which asks pendingSlots first). Assigning `slots` (releaseSlots' NO_SLOTS) drops the source.
 */
export class PendingTable implements PlanTable {
  readonly id: number;
  readonly m: number;
  readonly members: number[];
  #slots: Uint32Array | undefined;
  #src: SlotSource | undefined;
  /** index of the table's first member in #src */
  #first = 0;

  /** without a source (setSource) its slots are NO_SLOTS */
  constructor(id: number, m: number, members: number[]) {
    this.id = id;
    this.m = m;
    this.members = members;
  }

  /** the table's members are src's from index first on (members.length of them) */
  setSource(src: SlotSource, first: number): void {
    if (first + this.members.length > src.ids.length) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table ${this.id}: its members end past its source`);
    this.#slots = undefined;
    this.#src = src;
    this.#first = first;
  }

  get slots(): Uint32Array {
    if (this.#slots) return this.#slots;
    const p = this.pending();
    this.#src = undefined;
    if (!p) return (this.#slots = NO_SLOTS);
    const out = new Uint32Array(this.m);
    fillTables(p.src, Uint32Array.of(p.first, this.members.length, this.m, 0), out, 1);
    return (this.#slots = out);
  }

  set slots(v: Uint32Array) {
    this.#slots = v;
    this.#src = undefined;
  }

  /** where the slots come from, while they are not computed */
  pending(): { src: SlotSource; first: number } | undefined {
    return this.#slots || !this.#src ? undefined : { src: this.#src, first: this.#first };
  }

  /** only what PlanTable says: the accessor and private fields are not enumerable */
  toJSON(): { id: number; m: number; members: number[]; slots: Uint32Array } {
    return { id: this.id, m: this.m, members: this.members, slots: this.slots };
  }
}

/** The table's source when its slots are still to be computed: the writer fills them in place. */
export function pendingSlots(t: PlanTable): { src: SlotSource; first: number } | undefined {
  return t instanceof PendingTable ? t.pending() : undefined;
}

/** Whether the table's M slots are known (held, or computable from its source) without computing them. */
export function slotsKnown(t: PlanTable): boolean {
  return pendingSlots(t) !== undefined || t.slots.length === t.m;
}

/** The slots the table holds now, computing none: NO_SLOTS while pending. */
export function heldSlots(t: PlanTable): Uint32Array {
  return pendingSlots(t) ? NO_SLOTS : t.slots;
}

let builder: MaglevBuilder | undefined;

/**
 * Fills tables of src into out: `tables` holds per table its first member index in src, member
 * count n, M and slot offset in out (maglev-native.ts nativeFill's layout). Slots outside the tables
 * are not touched. With the addon in one call, on up to `threads` threads; else (or with native
 * false) in JavaScript, slot for slot the same.
 */
export function fillTables(src: SlotSource, tables: Uint32Array, out: Uint32Array, threads?: number, native = nativeFillAvailable()): void {
  if (native) {
    nativeFill(src.h1, src.h2, src.ids, tables, out, threads);
    return;
  }
  builder ??= new MaglevBuilder();
  for (let k = 0; k < tables.length; k += 4) {
    const first = tables[k]!, n = tables[k + 1]!, m = tables[k + 2]!, at = tables[k + 3]!;
    if (at + m > out.length) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table ${k / 4} ends past its output`);
    const slots = builder.buildIndices(src.h1.subarray(first, first + n), src.h2.subarray(first, first + n), n, m, out.subarray(at, at + m));
    for (let j = 0; j < m; j++) slots[j] = src.ids[first + slots[j]!]!;
  }
}
