// The full build: every frontend of the state, against prev (any plan: the last one, an older one, a
// kernel read-back). Linear in frontends + backends (plus sorting each frontend's few backends, which
// compile's canonical output skips): addresses become sort keys once per distinct string, backends
// live in parallel arrays, and unchanged backends and frontends keep prev's objects so diff skips
// them (bench/plan.bench.ts: ~1 s at 10,000 Services x 10 endpoints, GC-bound beyond ~50,000). Its
// plan starts a chain that the next build may extend incrementally (build-incremental.ts).
import { isIP } from 'node:net';
import { addressKey } from '../model/canonical.js';
import type { NodeFrontend, NodeState, Protocol } from '../model/compiled.js';
import { findIn } from './backend-index.js';
import { affinityGroupOf, backendFault, bad, frontendFault, frontendSortKey, NONE, planFrontend, samePlanFrontend, tableKey, tableMembers } from './frontend.js';
import { IdAllocator } from './ids.js';
import { IdMap } from './id-map.js';
import { releaseArray } from '../util/release.js';
import { ShardedMap, stringHash } from '../util/sharded-map.js';
import { prevBackendIndex, startChain } from './build-incremental.js';
import { BACKEND_ID_MAX, ID_MAX, LB_FE_ID_MAX } from './limits.js';
import { maglevHashesInto, maglevSize, type MaglevSizing } from './maglev.js';
import { PendingTable, type SlotSource } from './slot-source.js';
import { frontendKey, NO_SLOTS, type Plan, type PlanBackend, type PlanFrontend, type PlanTable } from './types.js';
import { strictV4, v4Hash } from '../util/ip.js';

interface FrontendDraft {
  key: string;
  sortKey: string;
  src: NodeFrontend;
  /** backend indices (into Backends) in canonical order */
  idx: number[];
  /**
   * table members as backend indices: the non-terminating ones, or all when every one is terminating
   * (KEP-1669 is decided per frontend); the same array as idx when none is terminating
   */
  members: number[];
  /** backend indices terminating in this frontend's slices, in canonical order (shared empty array when none) */
  term: number[];
  /** the table's key (tableKey), '' when none; set in step 4 */
  tkey: string;
  /** the frontend's id, 0 until step 3 gives it one */
  id: number;
}

/** backendFault's argument for an address known to be valid (it asks only whether there is a key) */
const VALID = 'valid';

/** protocols by code, the codes in the order of their names (the canonical order compares names) */
const PROTOCOLS: readonly Protocol[] = ['SCTP', 'TCP', 'UDP'];
const PROTOCOL_CODES: ReadonlyMap<string, number> = new Map(PROTOCOLS.map((p, k) => [p, k]));

/**
 * The distinct backends of a state, as parallel typed arrays sized once for every backend reference
 * of the state (the most there can be): at 100,000 Services there are a million of them, and an
 * object each (or a JavaScript array per field, grown by push) made the V8 heap, and so every GC
 * during and after the build, several times larger. Addresses (backends' and frontends') get an
 * index that also holds their sort key: a dotted quad by its value in a typed-array table, anything
 * else through a Map by text. A dotted quad's sort key is made only when asked (keyOf: frontends'
 * addresses): backends' are ordered by value, which is their keys' order (~100,000 strings fewer at
 * 10,000 Services).
 */
class Backends {
  /** address text -> address index; with it, per address: its sort key ('' when not an IP address) */
  readonly #addrIndex = new Map<string, number>();
  /**
   * per address index: its text; presized like the typed arrays (two pushes per address grew two arrays
   * ~20 times each at 100,000 Services: ~200 against ~30 ms for 1.1M addresses), holes past addrCount
   */
  readonly addrText: string[];
  /** per address: its sort key, '' when not an IP address, undefined for a dotted quad not asked for yet */
  readonly #addrKey: (string | undefined)[];
  #addrCount = 0;
  /** per address: its strictV4 value, -1 when not a dotted quad */
  #addrV4: Float64Array;
  /** per address index: the first backend index with that address, -1 when none */
  #addrFirst: Int32Array;
  /** per backend index */
  readonly addr: Int32Array;
  readonly port: Uint16Array;
  readonly protocol: Uint8Array;
  readonly terminating: Uint8Array;
  readonly local: Uint8Array;
  /** ids are u32 (BACKEND_ID_MAX); a Float64Array would make every id read from it a heap number */
  readonly id: Uint32Array;
  /** next index with the same address, -1 at the end */
  readonly next: Int32Array;
  /** frontends listing the backend, those listing it terminating, those listing it local */
  readonly refs: Int32Array;
  readonly termRefs: Int32Array;
  readonly localRefs: Int32Array;
  size = 0;

  /**
   * room for `most` backends; `addresses` (at most the backends and frontends together) sizes the
   * address tables once: grown from 64 and 1024, they were copied and rehashed ~11 times at 10,000 Services
   */
  constructor(most: number, addresses = 0) {
    let cap = 64;
    while (cap < addresses) cap *= 2;
    this.#addrFirst = new Int32Array(cap);
    this.#addrV4 = new Float64Array(cap);
    this.addrText = new Array<string>(addresses);
    this.#addrKey = new Array<string | undefined>(addresses);
    let v4 = 1024;
    while (v4 < 2 * addresses) v4 *= 2;
    this.#v4Tab = new Int32Array(2 * v4).fill(-1);
    this.addr = new Int32Array(most);
    this.port = new Uint16Array(most);
    this.protocol = new Uint8Array(most);
    this.terminating = new Uint8Array(most);
    this.local = new Uint8Array(most);
    this.id = new Uint32Array(most);
    this.next = new Int32Array(most);
    this.refs = new Int32Array(most);
    this.termRefs = new Int32Array(most);
    this.localRefs = new Int32Array(most);
  }

  /**
   * Frees the address tables and the per-backend arrays but id and the three reference counts (the
   * only ones a deferred chain reads): the build is done with them. Freed here, not at the next full
   * GC: at 100,000 Services ~70 MiB, which stood dead in the agent's RSS from the plan's end to the
   * full GC started at the diff's end, the start's peak (docs/perf-log.md, session 28, p28rss).
   */
  releaseTables(): void {
    for (const a of [this.#addrFirst, this.#addrV4, this.#v4Tab, this.addr, this.port, this.protocol, this.terminating, this.local, this.next]) releaseArray(a);
  }

  /**
   * dotted quads (nearly every address) by value, open addressing: no string hashing. Slot h is
   * elements 2h (the value, as int32) and 2h + 1 (the address index, -1 when free), side by side: a
   * probe misses the cache once, not once per array (a million distinct addresses at 100,000
   * Services land at random in a 32 MiB table; the second miss was ~a third of address()'s time)
   */
  #v4Tab: Int32Array;
  #v4Count = 0;

  /** the slot of dotted quad v in the table by value: where it is, or where it would go */
  #v4Slot(v: number): number {
    const tab = this.#v4Tab, mask = (tab.length >> 1) - 1, key = v | 0;
    let h = v4Hash(v) & mask;
    while (tab[2 * h + 1] !== -1 && tab[2 * h] !== key) h = (h + 1) & mask;
    return h;
  }

  /** the address's index (AddressKeys' validation and sort key, cached per distinct text) */
  address(text: string): number {
    const v = strictV4(text);
    if (v >= 0) {
      const h = this.#v4Slot(v), tab = this.#v4Tab;
      if (tab[2 * h + 1] !== -1) return tab[2 * h + 1]!;
      const a = this.#newAddress(text, undefined, v);
      tab[2 * h] = v | 0;
      tab[2 * h + 1] = a;
      if (++this.#v4Count * 4 > tab.length) this.#growV4();
      return a;
    }
    const a = this.#addrIndex.get(text);
    if (a !== undefined) return a;
    // isIP: addressKey takes forms such as 01.2.3.4 that the data plane must refuse
    const made = this.#newAddress(text, isIP(text) ? addressKey(text) : '', -1);
    this.#addrIndex.set(text, made);
    return made;
  }

  #growV4(): void {
    const old = this.#v4Tab, tab = new Int32Array(old.length * 2).fill(-1);
    const mask = (tab.length >> 1) - 1;
    for (let k = 0; k < old.length; k += 2) {
      if (old[k + 1] === -1) continue;
      let h = v4Hash(old[k]! >>> 0) & mask;
      while (tab[2 * h + 1] !== -1) h = (h + 1) & mask;
      tab[2 * h] = old[k]!;
      tab[2 * h + 1] = old[k + 1]!;
    }
    this.#v4Tab = tab;
  }

  #newAddress(text: string, key: string | undefined, v4: number): number {
    const a = this.#addrCount++;
    this.addrText[a] = text;
    this.#addrKey[a] = key;
    if (a >= this.#addrFirst.length) {
      const grown = new Int32Array(this.#addrFirst.length * 2);
      grown.set(this.#addrFirst);
      this.#addrFirst = grown;
      const v4s = new Float64Array(grown.length);
      v4s.set(this.#addrV4);
      this.#addrV4 = v4s;
    }
    this.#addrFirst[a] = -1;
    this.#addrV4[a] = v4;
    return a;
  }

  /** the address's sort key (AddressKeys'), undefined when it is not an IP address */
  keyOf(a: number): string | undefined {
    let k = this.#addrKey[a];
    if (k === undefined) this.#addrKey[a] = k = addressKey(this.addrText[a]!);
    return k || undefined;
  }

  /** whether the address is an IP address the data plane takes */
  valid(a: number): boolean {
    return this.#addrV4[a]! >= 0 || this.#addrKey[a] !== '';
  }

  find(addr: number, port: number, protocol: number): number {
    let i = this.#addrFirst[addr]!;
    while (i >= 0 && (this.port[i] !== port || this.protocol[i] !== protocol)) i = this.next[i]!;
    return i;
  }

  add(addr: number, port: number, protocol: number): number {
    const i = this.size++;
    this.addr[i] = addr;
    this.port[i] = port;
    this.protocol[i] = protocol;
    this.next[i] = this.#addrFirst[addr]!;
    this.#addrFirst[addr] = i;
    return i;
  }

  addressOf(i: number): string {
    return this.addrText[this.addr[i]!]!;
  }

  protocolOf(i: number): Protocol {
    return PROTOCOLS[this.protocol[i]!]!;
  }

  /**
   * Backend indices into canonical order (compare's). When every address is a dotted quad, by one
   * number each, (value, port, protocol), sorted as a Float64Array and mapped back through the
   * tables: a first sync's ~1M new backends at 100,000 Services took a comparison sort with compare()
   * per pair, ~20M calls when their addresses come in no order (0.92-0.95 s against 0.57-0.65 with
   * the keys; in order, as the benches' generator makes them, neither sorts).
   */
  sortCanonical(list: number[]): void {
    const keys = new Float64Array(list.length);
    try {
      this.#sortCanonical(list, keys);
    } finally {
      // 8 MiB at 100,000 Services (release.ts)
      releaseArray(keys);
    }
  }

  #sortCanonical(list: number[], keys: Float64Array): void {
    const n = list.length;
    for (let k = 0; k < n; k++) {
      const i = list[k]!, v = this.#addrV4[this.addr[i]!]!;
      if (v < 0) {
        list.sort((a, b) => this.compare(a, b));
        return;
      }
      // v < 2^32, port < 2^16, protocol < 4: < 2^50, exact in a double
      keys[k] = (v * 65536 + this.port[i]!) * 4 + this.protocol[i]!;
    }
    let descents = 0;
    for (let k = 1; k < n; k++) if (keys[k]! < keys[k - 1]!) descents++;
    if (descents === 0) return;
    // a few runs out of order (TimSort is near linear on them) cost less than the tables' probes below
    if (descents * 16 < n) {
      list.sort((a, b) => this.compare(a, b));
      return;
    }
    keys.sort();
    for (let k = 0; k < n; k++) {
      const key = keys[k]!, protocol = key % 4, rest = (key - protocol) / 4, port = rest % 65536;
      list[k] = this.find(this.#v4Tab[2 * this.#v4Slot((rest - port) / 65536) + 1]!, port, protocol);
    }
  }

  /** canonical (address, port, protocol) order */
  compare(a: number, b: number): number {
    const p = this.addr[a]!, q = this.addr[b]!;
    if (p !== q) {
      // two dotted quads (distinct indices: distinct values) by value, which is their keys' order
      const v = this.#addrV4[p]!, w = this.#addrV4[q]!;
      if (v >= 0 && w >= 0) return v < w ? -1 : 1;
      const x = this.keyOf(p) ?? '', y = this.keyOf(q) ?? '';
      if (x !== y) return x < y ? -1 : 1;
    }
    return this.port[a]! - this.port[b]! || this.protocol[a]! - this.protocol[b]!;
  }
}

export function buildFull(state: NodeState, prev: Plan | undefined, seed: number, sizing: MaglevSizing, slotless = false, onTables?: (tables: readonly PlanTable[]) => void,
  deferChain = false): Plan {
  // 1. validate, key and sort frontends; collect distinct backends
  // loops by index here and below, not for-of: the build runs once over a million backends at
  // 100,000 Services, mostly in code a tier below TurboFan (entered on the stack), where each for-of
  // step allocated its iterator result (~100 MiB a first sync)
  const fronts = state.frontends;
  let refs = 0;
  for (let k = 0; k < fronts.length; k++) refs += fronts[k]!.backends.length;
  const drafts = new Map<string, FrontendDraft>();
  // the drafts in state order too: step 1 sorts this array, not a copy of the Map's values
  const all: FrontendDraft[] = new Array<FrontendDraft>(state.frontends.length);
  const bk = new Backends(refs, refs + state.frontends.length);
  for (let k = 0; k < fronts.length; k++) {
    const f = fronts[k]!;
    const feAddrKey = bk.keyOf(bk.address(f.address));
    const fault = frontendFault(f, feAddrKey);
    if (fault !== undefined) throw bad(f, fault);
    const key = frontendKey(f);
    // set, and a size that did not grow names a duplicate: one lookup by key, not a has() and a set()
    const d: FrontendDraft = { key, src: f, idx: NONE, members: NONE, term: NONE, tkey: '', sortKey: '', id: 0 };
    const had = drafts.size;
    drafts.set(key, d);
    if (drafts.size === had) {
      const first = all.find((x) => x !== undefined && x.key === key)!;
      throw bad(f, `duplicate frontend ${key} (also in ${first.src.service})`);
    }
    all[had] = d;
    const proto = PROTOCOL_CODES.get(f.protocol)!;
    const idx: number[] = new Array(f.backends.length);
    let sorted = true, anyTerminating = false;
    for (let j = 0; j < f.backends.length; j++) {
      const b = f.backends[j]!;
      const a = bk.address(b.address);
      let i = bk.find(a, b.port, proto);
      if (i < 0) {
        const beFault = backendFault(b, bk.valid(a) ? VALID : undefined);
        if (beFault !== undefined) throw bad(f, beFault);
        i = bk.add(a, b.port, proto);
      }
      bk.refs[i]!++;
      if (b.terminating) {
        bk.terminating[i] = 1;
        anyTerminating = true;
        bk.termRefs[i]!++;
      }
      if (b.local) {
        bk.local[i] = 1;
        bk.localRefs[i]!++;
      }
      idx[j] = i;
      if (j > 0 && sorted && bk.compare(idx[j - 1]!, i) >= 0) sorted = false;
    }
    // compile already emits canonical order; sorting is for other callers
    let order: number[] | undefined;
    if (!sorted) {
      order = idx.map((_, j) => j);
      order.sort((x, y) => bk.compare(idx[x]!, idx[y]!));
      const copy = order.map((j) => idx[j]!);
      for (let j = 1; j < copy.length; j++) {
        if (copy[j] === copy[j - 1]) throw bad(f, `backend ${bk.addressOf(copy[j]!)}:${bk.port[copy[j]!]} is listed twice`);
      }
      for (let j = 0; j < copy.length; j++) idx[j] = copy[j]!;
    }
    let members = idx;
    let term = NONE;
    if (anyTerminating) {
      const terminating = (j: number) => f.backends[order ? order[j]! : j]!.terminating;
      term = idx.filter((_, j) => terminating(j));
      members = tableMembers(idx, terminating);
    }
    d.idx = idx;
    d.members = members;
    d.term = term;
    d.sortKey = frontendSortKey(f, feAddrKey!);
  }
  // drafts stays: step 4 finds an affinity group's frontend by key there
  const ordered = all.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));

  // 2. backend ids: kept ones keep theirs; new ones, in canonical order, take the lowest free
  const prevIndex = prev ? prevBackendIndex(prev) : undefined;
  // sized once: grown by push, a first sync's million (every backend new) was copied ~20 times
  let fresh: number[] = new Array<number>(bk.size);
  let nFresh = 0;
  for (let i = 0; i < bk.size; i++) {
    const old = prevIndex ? findIn(prevIndex, bk.addressOf(i), bk.port[i]!, bk.protocolOf(i)) : undefined;
    if (old) bk.id[i] = old.id;
    else fresh[nFresh++] = i;
  }
  if (nFresh < bk.size) fresh = nFresh ? fresh.slice(0, nFresh) : [];
  if (fresh.length) {
    bk.sortCanonical(fresh);
    const alloc = new IdAllocator(prev ? prev.backends.keys() : [], BACKEND_ID_MAX, 'backend');
    for (let k = 0; k < fresh.length; k++) bk.id[fresh[k]!] = alloc.next();
  }
  // by id in an array, not a Map (id-map.ts): a million backends at 100,000 Services
  const planBackends = new IdMap<PlanBackend>();
  const order = byId(bk);
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!;
    const id = bk.id[i]!;
    const terminating = bk.terminating[i] === 1, local = bk.local[i] === 1;
    // an unchanged backend keeps its object, so plans share them and diff compares less
    const old = prev?.backends.get(id);
    planBackends.set(id, old && old.terminating === terminating && old.local === local && old.port === bk.port[i] &&
      old.address === bk.addressOf(i) && old.protocol === bk.protocolOf(i) ? old : {
        id, address: bk.addressOf(i), port: bk.port[i]!, protocol: bk.protocolOf(i), terminating, local,
      });
  }
  releaseArray(order);

  // 3. frontend ids, the same way
  const feAlloc = new IdAllocator(prev ? [...prev.frontends.values()].map((f) => f.id) : [], LB_FE_ID_MAX - 1, 'frontend');
  // on the drafts, not in a Map by key: three string-keyed lookups a frontend fewer (~110,000 frontends at 100,000 Services)
  if (prev) {
    for (let k = 0; k < ordered.length; k++) {
      const d = ordered[k]!, old = prev.frontends.get(d.key);
      if (old) d.id = old.id;
    }
  }
  for (let k = 0; k < ordered.length; k++) if (ordered[k]!.id === 0) ordered[k]!.id = feAlloc.next();

  // 4. tables: one per distinct (members, M); reused from prev under the same seed
  const prevTables = new Map<string, PlanTable>();
  // a slotless plan's tables were never written with slots: a build that writes slots builds them anew
  if (prev && prev.seed === seed && !(prev.slotless && !slotless)) {
    for (const t of prev.tables.values()) {
      // a read-back table whose members are not all known backends cannot be trusted
      if (t.members.length && t.members.every((id) => prev.backends.has(id))) prevTables.set(tableKey(t.members, t.m), t);
    }
  }
  // the chain's from here on (startChain), which each change deletes from and inserts into: in shards
  const tables = new ShardedMap<string, PlanTable>(stringHash);
  const toBuild: { table: PendingTable; members: number[] }[] = [];
  let tableAlloc: IdAllocator | undefined;
  const frontends = new Map<string, PlanFrontend>();
  for (let k = 0; k < ordered.length; k++) {
    const d = ordered[k]!, f = d.src;
    const backendIds = d.idx.map((i) => bk.id[i]!);
    let table: PlanTable | undefined;
    if (d.members.length) {
      const m = maglevSize(d.members.length, sizing);
      const ids = d.members === d.idx ? backendIds : d.members.map((i) => bk.id[i]!);
      const tkey = tableKey(ids, m);
      d.tkey = tkey;
      table = tables.get(tkey);
      if (!table) {
        table = prevTables.get(tkey);
        if (!table) {
          // a read-back frontend may name a table the kernel lacks: its id stays reserved too, so
          // the broken frontend cannot briefly reach another table's backends under that id
          tableAlloc ??= new IdAllocator(prev ? [...prev.tables.keys(), ...[...prev.frontends.values()].map((x) => x.tableId)] : [], ID_MAX, 'Maglev table');
          if (slotless) table = { id: tableAlloc.next(), m, members: ids, slots: NO_SLOTS };
          else {
            const made = new PendingTable(tableAlloc.next(), m, ids);
            toBuild.push({ table: made, members: d.members });
            table = made;
          }
        }
        tables.set(tkey, table);
      }
    }
    const id = d.id;
    const fe = planFrontend(id, f, backendIds, d.term === NONE ? NONE : d.term.map((i) => bk.id[i]!), table, affinityGroupOf(f, id, (k) => drafts.get(k)?.id));
    // an unchanged frontend keeps prev's object: diff skips it at the cost of one comparison
    const old = prev?.frontends.get(d.key);
    frontends.set(d.key, old && samePlanFrontend(old, fe) ? old : fe);
  }

  // 5. the new tables' members hashed (none for a data plane without Maglev); their slots are
  // filled where they are written
  hashTables(toBuild, bk, seed);

  const planTables = new IdMap<PlanTable>();
  for (const t of [...tables.values()].sort((a, b) => a.id - b.id)) planTables.set(t.id, t);
  const plan: Plan = { seed, frontends, backends: planBackends, tables: planTables, ...(slotless && { slotless }) };
  // the new tables can be written from here on (the chain below is the plan's own record)
  if (onTables && toBuild.length) onTables(toBuild.map((b) => b.table));
  if (deferChain) {
    // held until the chain is made: only what Chain.fromFull reads (the address tables, ~60 MiB at
    // 100,000 Services, and the drafts' index lists are garbage from here)
    for (let k = 0; k < ordered.length; k++) ordered[k]!.idx = ordered[k]!.members = ordered[k]!.term = NONE;
    const counts = { size: bk.size, id: bk.id, refs: bk.refs, termRefs: bk.termRefs, localRefs: bk.localRefs };
    startChain(plan, sizing, ordered, counts, tables, state, true);
    bk.releaseTables();
  } else startChain(plan, sizing, ordered, bk, tables, state);
  return plan;
}

/**
 * Gives the new tables their source (slot-source.ts): each member's two hashes, computed once per
 * backend however many tables it is in, and its id. No slot is filled here: the map writer fills each
 * table into the memory it writes to the kernel, a bounded chunk at a time, and any other reader of
 * `slots` computes them on first read. (The build filled every table into one slab, 64 MiB at 10,000
 * Services and 648 MiB at 100,000, a copy of what lb_maglev_slots then holds.)
 */
function hashTables(toBuild: readonly { table: PendingTable; members: number[] }[], bk: Backends, seed: number): void {
  if (!toBuild.length) return;
  const hashed = new Float64Array(bk.size * 2).fill(-1);
  let memberCount = 0;
  for (let k = 0; k < toBuild.length; k++) memberCount += toBuild[k]!.members.length;
  const src: SlotSource = { h1: new Uint32Array(memberCount), h2: new Uint32Array(memberCount), ids: new Uint32Array(memberCount) };
  let first = 0;
  for (let k = 0; k < toBuild.length; k++) {
    const { table, members } = toBuild[k]!;
    const n = members.length;
    for (let j = 0; j < n; j++) {
      const i = members[j]!;
      // maglevHashes(maglevIdentity(backend)) without the identity's string, the pair and its destructuring
      if (hashed[2 * i]! < 0) maglevHashesInto(bk.addressOf(i), bk.port[i]!, seed, hashed, 2 * i);
      src.h1[first + j] = hashed[2 * i]!;
      src.h2[first + j] = hashed[2 * i + 1]!;
      src.ids[first + j] = table.members[j]!;
    }
    table.setSource(src, first);
    first += n;
  }
  // 16 MiB at 100,000 Services, dead from here
  releaseArray(hashed);
}

/**
 * Backend indices in id order. Ids are dense (the lowest free is taken), so an array indexed by id
 * orders them without a comparison sort of a million indices; sparse ids (a kernel read-back may
 * hold any) are sorted.
 */
function byId(bk: Backends): Int32Array {
  const n = bk.size;
  let top = 0;
  for (let i = 0; i < n; i++) if (bk.id[i]! > top) top = bk.id[i]!;
  const out = new Int32Array(n);
  if (top <= 2 * n + 4096) {
    const at = new Int32Array(top + 1).fill(-1);
    let dup = false;
    for (let i = 0; i < n; i++) {
      const id = bk.id[i]!;
      if (at[id] !== -1) dup = true;
      at[id] = i;
    }
    if (!dup) {
      let k = 0;
      for (let id = 1; id <= top; id++) if (at[id] !== -1) out[k++] = at[id]!;
      releaseArray(at);
      if (k === n) return out;
    }
  }
  for (let i = 0; i < n; i++) out[i] = i;
  return out.sort((a, b) => bk.id[a]! - bk.id[b]!);
}
