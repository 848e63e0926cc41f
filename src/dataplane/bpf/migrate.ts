// Upgrades: pinned maps of an earlier build whose definition differs from this object's.
//
// An agent upgraded in place (a new image replacing the old on a node) finds the old agent's maps
// pinned. Where the definitions match they are reused as they are (a restart). Where one differs, the
// map is carried over instead of refused:
// - copied: same type and key, the value the same size or longer (fields appended, the new ones
//   zero), any capacity or flags; or a hash by u32 id become an array by it (lb_backends). This keeps conntrack, affinity and the frontend/backend ids that
//   established flows depend on (a capacity change or BPF_F_NO_COMMON_LRU, say).
// - recreated: lb_slots (no program reads it; the agent writes it from lb_members after its first
//   sync), and anything else (a changed key, a shorter value, another map type such as a
//   hash-of-maps becoming a flat array, per-CPU counters). Maps derived from the plan are rewritten
//   by the agent's first sync; runtime state in them (conntrack, counters) starts empty, and flows
//   whose entry is gone are re-balanced by Maglev, which picks the same backend while the backends
//   are unchanged.
// - maglev: the hash-of-maps lb_maglev of a build before lb_maglev_slots (one inner array per table,
//   the frontend holding its key). lb_frontends is moved aside with it; carry() copies each old table
//   into a region of lb_maglev_slots and each frontend with its table's offset in place of the key,
//   before the new programs attach, so every flow, new or established, keeps its backend.
// - lb_maglev_slots made smaller (--bpf-map-max): the tables that lay past the new end are moved into
//   free room below it, and their frontends rewritten to point there (relocation below), so their
//   Services translate from the switch on, not only after the first sync.
// The old map is moved aside (renamed into <pin root>/upgrade/) before the object loads. The old
// programs keep using it until the new ones replace them at attach time; only then are its entries
// copied (carry()), without overwriting what the new programs wrote meanwhile, and the old map
// removed. So flows the old programs created up to the switch are kept; what is lost is the reverse
// translation of a reply that arrives in the milliseconds between the switch and the copy.
import { existsSync, mkdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ALL_CPUS, BpfMap } from './native/map.js';
import type { BpfObject } from './native/object.js';
import { BPF_ANY, BPF_EXIST, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_NOEXIST, MapType } from './native/uapi.js';
import { EEXIST } from './native/errors.js';
import * as L from './layout.js';
import { regionSize, SlotAllocator, type Region } from './slot-alloc.js';

export interface MapSpec { name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }

export interface Migration {
  name: string;
  how: 'copy' | 'recreate' | 'maglev';
  /** what differs, in words */
  why: string;
  /** entries copied (copy only, after carry()) */
  copied?: number;
  /** entries that did not fit the new capacity */
  dropped?: number;
  /** entries not copied because the new programs had already written the same key */
  newer?: number;
  /** the first reason the kernel refused an entry (the others are counted in dropped) */
  error?: string;
  /** how long carry() took for this map (copy and maglev), in ms */
  ms?: number;
}

const PER_CPU = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH]);
const OF_MAPS = new Set<number>([MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS]);

/** What differs between a pinned map and the object's definition, or '' when they match. */
export function specDiff(pinned: MapSpec, spec: MapSpec): string {
  const diffs: string[] = [];
  for (const k of ['type', 'keySize', 'valueSize', 'maxEntries', 'flags'] as const) {
    if (pinned[k] !== spec[k]) diffs.push(`${k} ${pinned[k]} pinned, ${spec[k]} in the object`);
  }
  return diffs.join(', ');
}

/**
 * Maps no program reads that the agent writes again from its other maps after its first sync
 * (lb_slots: map-writer.ts flushSlots, from lb_members): made anew rather than copied, an update per
 * entry (a million at 100,000 Services), before the new programs attach.
 */
const REWRITTEN_AFTER_SYNC = new Set(['lb_slots']);

/** How a pinned map of another definition is carried into this object's. */
export function migrationOf(pinned: MapSpec, spec: MapSpec): Migration {
  const why = specDiff(pinned, spec);
  if (REWRITTEN_AFTER_SYNC.has(spec.name)) return { name: spec.name, how: 'recreate', why };
  const copyable = (pinned.type === spec.type || hashToArray(pinned, spec)) && pinned.keySize === spec.keySize
    && spec.valueSize >= pinned.valueSize && !PER_CPU.has(spec.type) && !OF_MAPS.has(spec.type);
  return { name: spec.name, how: copyable ? 'copy' : 'recreate', why };
}

/** A hash keyed by a u32 id become an array indexed by it (lb_backends): its entries copy by key. */
function hashToArray(pinned: MapSpec, spec: MapSpec): boolean {
  return pinned.type === MapType.HASH && spec.type === MapType.ARRAY && pinned.keySize === 4;
}

/**
 * The hash-of-maps Maglev layout of an earlier build (lb_maglev pinned, the object has
 * lb_maglev_slots instead): lb_frontends is carried with its tables (see the top of this file), and
 * lb_maglev goes. Replaces any other migration of lb_frontends in `found`.
 */
export function maglevMigrations(pinRoot: string, mapNames: readonly string[], found: readonly Migration[]): Migration[] {
  if (!existsSync(join(pinRoot, 'lb_maglev')) || mapNames.includes('lb_maglev') || !mapNames.includes('lb_maglev_slots')) return [...found];
  return [
    ...found.filter((m) => m.name !== 'lb_frontends'),
    // lb_frontends first: carry() reads the old tables through the aside lb_maglev
    { name: 'lb_frontends', how: 'maglev', why: 'Maglev tables moved from the hash-of-maps lb_maglev into lb_maglev_slots: frontends hold a region offset' },
    { name: 'lb_maglev', how: 'recreate', why: 'a hash-of-maps of Maglev tables, replaced by lb_maglev_slots' },
  ];
}

/** where an old map waits during an upgrade: bpffs refuses names with a dot, so a folder of its own */
export function asidePath(pinRoot: string, name: string): string {
  return join(pinRoot, 'upgrade', name);
}

/** Moves the pins of the maps to migrate aside, so the object's load creates them anew. */
export function moveAside(pinRoot: string, migrations: readonly Migration[]): void {
  if (migrations.length) mkdirSync(join(pinRoot, 'upgrade'), { recursive: true, mode: 0o700 });
  for (const m of migrations) {
    const aside = asidePath(pinRoot, m.name);
    // a crashed earlier upgrade may have left one: the pin we are moving is the newer state
    if (existsSync(aside)) unlinkSync(aside);
    renameSync(join(pinRoot, m.name), aside);
  }
}

/**
 * After the object loaded (and pinned the new maps): copies the entries of each 'copy' migration
 * from the old map, zero-extending values, and removes every aside pin. Returns the migrations with
 * their counts.
 */
export function carry(object: BpfObject, pinRoot: string, migrations: readonly Migration[]): Migration[] {
  const out: Migration[] = [];
  for (const m of [...migrations].sort((a, b) => carryRank(a.name) - carryRank(b.name))) {
    const aside = asidePath(pinRoot, m.name);
    const started = performance.now();
    const took = () => Math.round((performance.now() - started) * 100) / 100;
    if (m.how === 'maglev') {
      out.push({ ...m, ...carryMaglev(object, pinRoot), ms: took() });
    } else if (m.how === 'copy') {
      const old = BpfMap.fromPin(aside);
      const target = object.map(m.name);
      // an array's entries always exist: the old entries are written over them (only the agent
      // writes such a map, lb_backends, and it has not yet), all-zero ones (unused) skipped
      const toArray = target.type === MapType.ARRAY;
      const flags = toArray ? BPF_ANY : BPF_NOEXIST;
      if (toArray && old.type === MapType.ARRAY && (target.flags & BPF_F_MMAPABLE) && old.valueSize === target.valueSize) {
        // an mmapable array resized (--bpf-map-max lb_maglev_slots: millions of elements): copied
        // through the mapping a chunk at a time, not an update per element; made smaller, the
        // Maglev tables past its end are moved below it
        try {
          const moves = m.name === 'lb_maglev_slots' && target.maxEntries < old.maxEntries
            ? planMoves(object.map('lb_frontends'), target.maxEntries * L.LB_MAGLEV_IDS_PER_ELEM) : [];
          const r = copyArrayMmap(old, target, moves);
          if (moves.length) moveFrontends(object.map('lb_frontends'), moves);
          out.push({ ...m, ...r, ms: took() });
        } finally {
          old.close();
        }
        try { unlinkSync(aside); } catch { /* gone */ }
        continue;
      }
      try {
        out.push({ ...m, ...copyEntries(old, target, flags, toArray), ms: took() });
      } finally {
        old.close();
      }
    } else {
      out.push(m);
    }
    try {
      unlinkSync(aside);
    } catch {
      // moved aside as a map this object lacks (lb_maglev): nothing of it to load
    }
  }
  // the folder goes with the last old map (a first call may leave some for a second)
  try { rmdirSync(join(pinRoot, 'upgrade')); } catch { /* not empty yet, or gone */ }
  return out;
}

/**
 * The order of an upgrade's copies after the switch of programs: the handshakes under way first
 * (lb_ct_syn: a SYN-ACK the new programs see finds its SYN's entry only once it is copied), then the
 * established flows (lb_ct: a reply before any packet of its client's is translated only once its
 * entry is copied; the client's packets re-pick the same backend by Maglev), then the rest.
 */
function carryRank(name: string): number {
  return name === 'lb_ct_syn' ? 0 : name === 'lb_ct' ? 1 : 2;
}

/**
 * Copies every entry of `old` into `target` (the value zero-padded to a longer layout), a batch of
 * the scan at a time, with `flags` (BPF_NOEXIST: an entry the new programs wrote since the switch is
 * newer than the old one, and counted as such). At most target's capacity is copied; an entry that
 * does not fit (an array index past a smaller capacity, a full hash) is counted as dropped, not fatal.
 * Arrays' all-zero (unused) elements are skipped. The first entry the kernel refused gives `error`.
 */
export function copyEntries(old: BpfMap, target: BpfMap, flags: number, toArray: boolean): { copied: number; dropped: number; newer: number; error?: string } {
  const ks = target.keySize, ovs = old.userValueSize, vs = target.userValueSize;
  let copied = 0, dropped = 0, newer = 0;
  let error: string | undefined;
  // per-CPU LRU lists (lb_ct_syn): written from every CPU the agent may use, else one CPU's share of
  // the capacity holds them all and the copy evicts its own entries (counted as copied)
  const cpus = target.type === MapType.LRU_HASH && (target.flags & BPF_F_NO_COMMON_LRU) ? ALL_CPUS : 1;
  let keys = Buffer.alloc(0), values = Buffer.alloc(0);
  old.scanBatches((k, v, n) => {
    if (keys.length < n * ks) keys = Buffer.alloc(n * ks);
    if (values.length < n * vs) values = Buffer.alloc(n * vs);
    let m = 0;
    for (let i = 0; i < n; i++) {
      const value = v.subarray(i * ovs, (i + 1) * ovs);
      if (toArray && value.every((b) => b === 0)) continue;
      if (copied + m >= target.maxEntries) {
        dropped++;
        continue;
      }
      k.copy(keys, m * ks, i * ks, (i + 1) * ks);
      value.copy(values, m * vs);
      if (vs > ovs) values.fill(0, m * vs + ovs, (m + 1) * vs);
      m++;
    }
    const r = target.updateEach(keys.subarray(0, m * ks), values.subarray(0, m * vs), m, flags, cpus);
    copied += r.updated;
    newer += r.existed;
    dropped += r.failed;
    error ??= r.error?.message;
  });
  return { copied, dropped, newer, ...(error !== undefined && { error }) };
}

/**
 * A Maglev table (region of lb_maglev_slots, in slots) that lies past a smaller array's end, where it
 * goes (undefined: no room), and the lb_frontends keys that point at it.
 */
interface Move extends Region { to: number | undefined; keys: Buffer[] }

/**
 * The tables of lb_frontends that do not fit below `capacity` slots, each given free room there:
 * room no frontend's table covers, in the old array as in the new (a table across the end is still
 * read where it is until its frontends move). A table shared by frontends moves once.
 */
function planMoves(frontends: BpfMap, capacity: number): Move[] {
  const inUse: Region[] = [], moves = new Map<number, Move>();
  frontends.scan((key, value) => {
    const fe = L.decodeFrontend(value);
    if (fe.maglevM === 0) return;
    const size = regionSize(fe.maglevM);
    if (fe.maglevOff < capacity) inUse.push({ off: fe.maglevOff, size: Math.min(size, capacity - fe.maglevOff) });
    if (fe.maglevOff + size <= capacity) return;
    let mv = moves.get(fe.maglevOff);
    if (!mv) moves.set(fe.maglevOff, mv = { off: fe.maglevOff, size, to: undefined, keys: [] });
    mv.size = Math.max(mv.size, size);
    mv.keys.push(Buffer.from(key));
  });
  const alloc = new SlotAllocator(capacity);
  alloc.load(inUse);
  const out = [...moves.values()].sort((a, b) => a.off - b.off);
  for (const mv of out) mv.to = alloc.alloc(mv.size)?.off;
  return out;
}

/**
 * Points each moved table's frontends at its new room (the table is there already, in both arrays:
 * the old programs, attached until the switch, read the old array through the same lb_frontends).
 */
function moveFrontends(frontends: BpfMap, moves: readonly Move[]): void {
  for (const mv of moves) {
    if (mv.to === undefined) continue;
    for (const key of mv.keys) {
      const v = frontends.lookup(key);
      if (!v || L.decodeFrontend(v).maglevOff !== mv.off) continue; // rewritten meanwhile
      v.writeUInt32LE(mv.to, 4);
      frontends.update(key, v, BPF_EXIST);
    }
  }
}

/**
 * Non-zero elements of an array into an mmapable array of the same element, by index, in chunks.
 * Elements past a smaller target's end are dropped, but for those of a moved Maglev table: written
 * at the table's new room, in the target and in the old array (moves, from planMoves).
 */
function copyArrayMmap(old: BpfMap, target: BpfMap, moves: readonly Move[] = []): { copied: number; dropped: number; newer: number } {
  const vs = old.valueSize, elem = (vs + 7) & ~7, per = Math.max(1, Math.floor((1 << 20) / elem));
  const chunk = Buffer.alloc(per * elem);
  let base = -1, dirty = false, copied = 0, dropped = 0;
  const flush = (): void => {
    if (dirty) target.writeMmap(chunk.subarray(0, Math.min(per, target.maxEntries - base) * elem), base * elem);
    chunk.fill(0);
    dirty = false;
  };
  // a moved table's elements, gathered as the scan meets them (it goes by index)
  const slotsPerElem = L.LB_MAGLEV_IDS_PER_ELEM, staged = new Map<Move, Buffer>();
  const movedTo = (i: number): [Move, number] | undefined => {
    const slot = i * slotsPerElem;
    let lo = 0, hi = moves.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1, mv = moves[mid]!;
      if (slot < mv.off) hi = mid - 1;
      else if (slot >= mv.off + mv.size) lo = mid + 1;
      else return mv.to === undefined ? undefined : [mv, (slot - mv.off) / slotsPerElem];
    }
    return undefined;
  };
  old.scan((key, value) => {
    if (value.every((b) => b === 0)) return;
    const i = key.readUInt32LE(0);
    const to = moves.length ? movedTo(i) : undefined;
    if (to) {
      let buf = staged.get(to[0]);
      if (!buf) staged.set(to[0], buf = Buffer.alloc((to[0].size / slotsPerElem) * elem));
      value.copy(buf, to[1] * elem, 0, vs);
    }
    if (i >= target.maxEntries) {
      if (to) copied++;
      else dropped++;
      return;
    }
    const b = i - (i % per);
    if (b !== base) {
      flush();
      base = b;
    }
    value.copy(chunk, (i - b) * elem, 0, vs);
    dirty = true;
    copied++;
  });
  flush();
  // the new room is free in both arrays (planMoves): written in the old one too, the old programs
  // read the same table there once its frontends point at it
  for (const [mv, buf] of staged) {
    target.writeMmap(buf, mv.to! * 4);
    old.writeMmap(buf, mv.to! * 4);
  }
  return { copied, dropped, newer: 0 };
}

/**
 * lb_frontends of the hash-of-maps layout into this object's: each old table (an inner array of
 * lb_maglev) copied into a region of lb_maglev_slots, from slot 0 up, once however many frontends
 * share it, and each frontend written with its region's offset. A frontend whose table is missing
 * (or does not fit) is written with M 0: refused until the first sync writes its table.
 */
function carryMaglev(object: BpfObject, pinRoot: string): { copied: number; dropped: number; newer: number } {
  const oldFe = BpfMap.fromPin(asidePath(pinRoot, 'lb_frontends'));
  const oldMg = BpfMap.fromPin(asidePath(pinRoot, 'lb_maglev'));
  const target = object.map('lb_frontends'), slots = object.map('lb_maglev_slots');
  const capacity = slots.maxEntries * L.LB_MAGLEV_IDS_PER_ELEM;
  const regions = new Map<number, number | undefined>();
  let next = 0, copied = 0, dropped = 0, newer = 0;
  const regionOf = (tableId: number, m: number): number | undefined => {
    if (regions.has(tableId)) return regions.get(tableId);
    let off: number | undefined;
    const innerId = oldMg.lookupId(L.encodeU32(tableId));
    if (innerId !== undefined && m >= 1 && m <= L.LB_MAGLEV_M_MAX && next + regionSize(m) <= capacity) {
      const inner = BpfMap.fromId(innerId);
      try {
        const values = Buffer.alloc(regionSize(m) * 4);
        for (const [k, v] of inner.entries()) {
          const at = L.decodeU32(k) * L.MAGLEV_ELEM.size;
          if (at + L.MAGLEV_ELEM.size <= values.length) v.copy(values, at, 0, L.MAGLEV_ELEM.size);
        }
        slots.writeMmap(values, next * 4);
        off = next;
        next += regionSize(m);
      } finally {
        inner.close();
      }
    }
    regions.set(tableId, off);
    return off;
  };
  try {
    const pad = Buffer.alloc(Math.max(0, target.valueSize - oldFe.valueSize));
    oldFe.scan((key, value) => {
      const v = pad.length ? Buffer.concat([value, pad]) : Buffer.from(value);
      const fe = L.decodeFrontend(v);
      // the old layout's field 4 is the table's key in lb_maglev
      if (fe.maglevM !== 0) {
        const off = regionOf(fe.maglevOff, fe.maglevM);
        v.writeUInt32LE(off ?? 0, 4);
        if (off === undefined) v.writeUInt32LE(0, 8);
      }
      try {
        target.update(key, v, BPF_NOEXIST);
        copied++;
      } catch (e) {
        if ((e as { errno?: number }).errno === EEXIST) newer++;
        else dropped++;
      }
    });
  } finally {
    oldFe.close();
    oldMg.close();
  }
  return { copied, dropped, newer };
}
