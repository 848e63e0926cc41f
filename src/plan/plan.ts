// NodeState -> Plan: stable ids, per-frontend backend lists and shared Maglev tables (types.ts).
//
// Ids are stable while the object exists (by frontendKey / backendKey), so a resync or an agent restart
// (prev read back from the pinned maps) rewrites nothing that did not change. New ids take the lowest
// id that neither this plan nor prev holds (ids.ts says why prev's ids wait one sync). A table is
// identified by (member ids, M) under one seed; it is reused from prev, never rebuilt, when those
// match, and any change of members or M yields a new table id, so diff.ts can build the new table
// aside and swap the frontend over in one write.
//
// A full build is linear in frontends + backends (plus sorting each frontend's few backends, which
// compile's canonical output skips): addresses become sort keys once per distinct string, backends
// live in parallel arrays, and unchanged backends and frontends keep prev's objects so diff skips
// them (bench/plan.bench.ts: ~1 s at 10,000 Services x 10 endpoints, GC-bound beyond ~50,000). A
// build from the plan the previous build returned redoes only the frontends whose NodeFrontend
// object changed ("Incremental builds" below): what remains linear is one lookup per frontend and
// copying the plan's maps, ~10-20 ms at 10,000 Services.
import { isIP } from 'node:net';
import { compareBackends } from '../model/canonical.js';
import type { NodeFrontend, NodeState, Protocol, Scope } from '../model/compiled.js';
import { KbpError } from '../util/errors.js';
import { ipTo16, isV4Mapped } from '../util/ip.js';
import { IdAllocator } from './ids.js';
import { AFFINITY_TIMEOUT_MAX, HASH_SEED_MAX, ID_MAX, LB_FE_ID_MAX, MAX_BACKENDS_PER_FRONTEND } from './limits.js';
import { MaglevBuilder, maglevHashes, maglevIdentity, maglevSize, type MaglevSizing } from './maglev.js';
import { frontendKey, type Plan, type PlanBackend, type PlanFrontend, type PlanTable } from './types.js';

/** builds whose tables need more than this share one ArrayBuffer (see step 5 of buildPlan) */
const SLAB_MIN_BYTES = 32 * 2 ** 20;

export interface PlanOptions {
  /** Maglev hash seed, the same on every node (lb_config.hash_seed) */
  seed: number;
  /**
   * How M follows the member count (maglev.ts explains the trade-off). Default 'pow2': with 'exact',
   * nearly every backend change changes M and reshuffles the whole table (bench/results: ~90% of flows
   * move when one of 10 backends leaves, against ~12% with pow2), for ~1.6x less table memory.
   */
  maglevSizing?: MaglevSizing;
}

const PROTOCOLS: ReadonlySet<string> = new Set<Protocol>(['TCP', 'UDP', 'SCTP']);
const SCOPES: ReadonlySet<string> = new Set<Scope>(['internal', 'external']);
const SCOPE_ORDER: Record<Scope, string> = { external: '0', internal: '1' };

/**
 * Sort keys of addresses (the order of util/ip.ts compareAddresses: IPv4 first, then by value),
 * cached per distinct string, which also caches the address's validation.
 */
class AddressKeys {
  readonly #cache = new Map<string, string>();

  /** undefined when the text is not an IP address */
  get(address: string): string | undefined {
    let k = this.#cache.get(address);
    if (k === undefined) {
      k = addressSortKey(address);
      this.#cache.set(address, k);
    }
    return k || undefined;
  }
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function addressSortKey(address: string): string {
  const v = isIP(address);
  if (v === 0) return '';
  if (v === 4) {
    let n = 0, part = 0;
    for (let i = 0; i < address.length; i++) {
      const c = address.charCodeAt(i);
      if (c === 46) { n = n * 256 + part; part = 0; } else part = part * 10 + c - 48;
    }
    return '4' + (n * 256 + part).toString(16).padStart(8, '0');
  }
  const b = ipTo16(address);
  if (isV4Mapped(b)) return '4' + HEX[b[12]!]! + HEX[b[13]!]! + HEX[b[14]!]! + HEX[b[15]!]!;
  let k = '6';
  for (let i = 0; i < 16; i++) k += HEX[b[i]!]!;
  return k;
}

function portKey(port: number): string {
  return port.toString(16).padStart(4, '0');
}

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
  /** the table's key (member ids / M), '' when none; set in step 4 */
  tkey: string;
}

const NONE: number[] = [];

/**
 * The distinct backends of a state, as parallel arrays: at 100,000 Services there are a million of
 * them, and an object (plus a key string, plus a wrapper per reference) each made the V8 heap, and so
 * every full GC, several times larger.
 */
class Backends {
  readonly address: string[] = [];
  readonly port: number[] = [];
  readonly protocol: Protocol[] = [];
  /** AddressKeys sort key (shared per address) */
  readonly addrKey: string[] = [];
  readonly terminating: boolean[] = [];
  readonly local: boolean[] = [];
  readonly id: number[] = [];
  /** next index with the same address, -1 at the end */
  readonly next: number[] = [];
  /** frontends listing the backend, those listing it terminating, those listing it local */
  readonly refs: number[] = [];
  readonly termRefs: number[] = [];
  readonly localRefs: number[] = [];
  /** address -> first index */
  readonly byAddress = new Map<string, number>();

  get size(): number {
    return this.address.length;
  }

  find(address: string, port: number, protocol: Protocol): number {
    let i = this.byAddress.get(address) ?? -1;
    while (i >= 0 && (this.port[i] !== port || this.protocol[i] !== protocol)) i = this.next[i]!;
    return i;
  }

  add(address: string, port: number, protocol: Protocol, addrKey: string): number {
    const i = this.address.length;
    this.address.push(address);
    this.port.push(port);
    this.protocol.push(protocol);
    this.addrKey.push(addrKey);
    this.terminating.push(false);
    this.local.push(false);
    this.id.push(0);
    this.next.push(this.byAddress.get(address) ?? -1);
    this.refs.push(0);
    this.termRefs.push(0);
    this.localRefs.push(0);
    this.byAddress.set(address, i);
    return i;
  }

  /** canonical (address, port, protocol) order */
  compare(a: number, b: number): number {
    const x = this.addrKey[a]!, y = this.addrKey[b]!;
    if (x !== y) return x < y ? -1 : 1;
    return this.port[a]! - this.port[b]! || (this.protocol[a]! < this.protocol[b]! ? -1 : this.protocol[a]! > this.protocol[b]! ? 1 : 0);
  }
}

function bad(f: { service?: string; address?: string; port?: number }, reason: string): KbpError {
  return new KbpError('KBP_ERR_INVALID_OBJECT', `frontend ${f.service ?? '?'} ${f.address ?? '?'}:${f.port ?? '?'}: ${reason}`);
}

function validPort(p: unknown): p is number {
  return Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535;
}

export function buildPlan(state: NodeState, prev: Plan | undefined, opts: PlanOptions): Plan {
  const { seed } = opts;
  const sizing = opts.maglevSizing ?? 'pow2';
  if (!Number.isInteger(seed) || seed < 0 || seed > HASH_SEED_MAX) {
    throw new KbpError('KBP_ERR_CONFIG', `Maglev seed must be an integer in 0..2^32-1, got ${seed}`);
  }
  if (sizing !== 'exact' && sizing !== 'pow2') throw new KbpError('KBP_ERR_CONFIG', `unknown Maglev sizing ${JSON.stringify(sizing)}`);
  return (prev && buildIncremental(state, prev, seed, sizing)) || buildFull(state, prev, seed, sizing);
}

function buildFull(state: NodeState, prev: Plan | undefined, seed: number, sizing: MaglevSizing): Plan {
  const addrKeys = new AddressKeys();

  // 1. validate, key and sort frontends; collect distinct backends
  const drafts = new Map<string, FrontendDraft>();
  const bk = new Backends();
  for (const f of state.frontends) {
    const feAddrKey = addrKeys.get(f.address);
    if (feAddrKey === undefined) throw bad(f, `address ${JSON.stringify(f.address)} is not an IP address`);
    if (!validPort(f.port)) throw bad(f, `port ${f.port} is not in 1..65535`);
    if (!PROTOCOLS.has(f.protocol)) throw bad(f, `protocol ${JSON.stringify(f.protocol)} is not TCP, UDP or SCTP`);
    if (!SCOPES.has(f.scope)) throw bad(f, `scope ${JSON.stringify(f.scope)} is not internal or external`);
    if (!Number.isInteger(f.sessionAffinitySeconds) || f.sessionAffinitySeconds < 0 || f.sessionAffinitySeconds > AFFINITY_TIMEOUT_MAX) {
      throw bad(f, `sessionAffinitySeconds ${f.sessionAffinitySeconds} is not a u32`);
    }
    if (f.backends.length > MAX_BACKENDS_PER_FRONTEND) {
      throw bad(f, `${f.backends.length} backends exceed the data plane's ${MAX_BACKENDS_PER_FRONTEND} per frontend`);
    }
    const key = frontendKey(f);
    if (drafts.has(key)) {
      throw bad(f, `duplicate frontend ${key} (also in ${drafts.get(key)!.src.service})`);
    }
    const idx: number[] = new Array(f.backends.length);
    let sorted = true, anyTerminating = false, allTerminating = true;
    for (let j = 0; j < f.backends.length; j++) {
      const b = f.backends[j]!;
      let i = bk.find(b.address, b.port, f.protocol);
      if (i < 0) {
        const ak = addrKeys.get(b.address);
        if (ak === undefined) throw bad(f, `backend address ${JSON.stringify(b.address)} is not an IP address`);
        if (!validPort(b.port)) throw bad(f, `backend ${b.address} port ${b.port} is not in 1..65535`);
        i = bk.add(b.address, b.port, f.protocol, ak);
      }
      bk.refs[i]!++;
      if (b.terminating) {
        bk.terminating[i] = anyTerminating = true;
        bk.termRefs[i]!++;
      } else allTerminating = false;
      if (b.local) {
        bk.local[i] = true;
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
        if (copy[j] === copy[j - 1]) throw bad(f, `backend ${bk.address[copy[j]!]}:${bk.port[copy[j]!]} is listed twice`);
      }
      for (let j = 0; j < copy.length; j++) idx[j] = copy[j]!;
    }
    let members = idx;
    let term = NONE;
    if (anyTerminating) {
      term = [];
      for (let j = 0; j < idx.length; j++) if (f.backends[order ? order[j]! : j]!.terminating) term.push(idx[j]!);
    }
    if (anyTerminating && !allTerminating) {
      // KEP-1669: only when no backend is ready do terminating (serving) ones take new flows
      members = [];
      for (let j = 0; j < idx.length; j++) if (!f.backends[order ? order[j]! : j]!.terminating) members.push(idx[j]!);
    }
    drafts.set(key, { key, src: f, idx, members, term, tkey: '', sortKey: feAddrKey + portKey(f.port) + f.protocol + SCOPE_ORDER[f.scope] });
  }
  const ordered = [...drafts.values()].sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));

  // 2. backend ids: kept ones keep theirs; new ones, in canonical order, take the lowest free
  const prevHead = prev ? heads.get(prev) : undefined;
  const prevIndex = prev ? (prevHead?.chain && prevHead.chain.version === prevHead.version ? prevHead.chain.index : backendIndex(prev)) : undefined;
  const fresh: number[] = [];
  for (let i = 0; i < bk.size; i++) {
    const old = prevIndex ? findIn(prevIndex, bk.address[i]!, bk.port[i]!, bk.protocol[i]!) : undefined;
    if (old) bk.id[i] = old.id;
    else fresh.push(i);
  }
  if (fresh.length) {
    fresh.sort((a, b) => bk.compare(a, b));
    const alloc = new IdAllocator(prev ? prev.backends.keys() : [], ID_MAX, 'backend');
    for (const i of fresh) bk.id[i] = alloc.next();
  }
  const byId = Array.from({ length: bk.size }, (_, i) => i).sort((a, b) => bk.id[a]! - bk.id[b]!);
  const planBackends = new Map<number, PlanBackend>();
  for (const i of byId) {
    const id = bk.id[i]!;
    // an unchanged backend keeps its object, so plans share them and diff compares less
    const old = prev?.backends.get(id);
    planBackends.set(id, old && old.terminating === bk.terminating[i] && old.local === bk.local[i] && old.port === bk.port[i] &&
      old.address === bk.address[i] && old.protocol === bk.protocol[i] ? old : {
        id, address: bk.address[i]!, port: bk.port[i]!, protocol: bk.protocol[i]!, terminating: bk.terminating[i]!, local: bk.local[i]!,
      });
  }

  // 3. frontend ids, the same way
  const feAlloc = new IdAllocator(prev ? [...prev.frontends.values()].map((f) => f.id) : [], LB_FE_ID_MAX - 1, 'frontend');
  const feIds = new Map<string, number>();
  for (const d of ordered) {
    const old = prev?.frontends.get(d.key);
    if (old) feIds.set(d.key, old.id);
  }
  for (const d of ordered) if (!feIds.has(d.key)) feIds.set(d.key, feAlloc.next());

  // 4. tables: one per distinct (members, M); reused from prev under the same seed
  const prevTables = new Map<string, PlanTable>();
  if (prev && prev.seed === seed) {
    for (const t of prev.tables.values()) {
      // a read-back table whose members are not all known backends cannot be trusted
      if (t.members.length && t.members.every((id) => prev.backends.has(id))) prevTables.set(`${t.members.join(',')}/${t.m}`, t);
    }
  }
  const tables = new Map<string, PlanTable>();
  const toBuild: { table: PlanTable; members: number[] }[] = [];
  let tableAlloc: IdAllocator | undefined;
  const frontends = new Map<string, PlanFrontend>();
  for (const d of ordered) {
    const f = d.src;
    const backendIds = d.idx.map((i) => bk.id[i]!);
    let table: PlanTable | undefined;
    if (d.members.length) {
      const m = maglevSize(d.members.length, sizing);
      const ids = d.members === d.idx ? backendIds : d.members.map((i) => bk.id[i]!);
      const tkey = `${ids.join(',')}/${m}`;
      d.tkey = tkey;
      table = tables.get(tkey);
      if (!table) {
        table = prevTables.get(tkey);
        if (!table) {
          // a read-back frontend may name a table the kernel lacks: its id stays reserved too, so
          // the broken frontend cannot briefly reach another table's backends under that id
          tableAlloc ??= new IdAllocator(prev ? [...prev.tables.keys(), ...[...prev.frontends.values()].map((x) => x.tableId)] : [], ID_MAX, 'Maglev table');
          table = { id: tableAlloc.next(), m, members: ids, slots: new Uint32Array(0) };
          toBuild.push({ table, members: d.members });
        }
        tables.set(tkey, table);
      }
    }
    const fe = planFrontend(feIds.get(d.key)!, f, backendIds, d.term === NONE ? NONE : d.term.map((i) => bk.id[i]!), table);
    // an unchanged frontend keeps prev's object: diff skips it at the cost of one comparison
    const old = prev?.frontends.get(d.key);
    frontends.set(d.key, old && samePlanFrontend(old, fe) ? old : fe);
  }

  // 5. build the new tables only; a backend's hashes are computed once however many tables it is in
  const builder = new MaglevBuilder();
  const hashed = new Float64Array(bk.size * 2).fill(-1);
  let h1 = new Uint32Array(64), h2 = new Uint32Array(64);
  // V8 answers every ~64 MiB of new ArrayBuffer memory with a full GC of the whole heap; at 100,000
  // Services (640 MiB of tables, a 500 MiB heap) that was 80% of the build. So a large batch takes
  // one buffer for all its tables. It lives while any of those tables does (or until releaseSlots):
  // at most the size of that first big build, which a long-lived agent holds anyway.
  let total = 0;
  for (const { table } of toBuild) total += table.m;
  const slab = total * 4 >= SLAB_MIN_BYTES ? new Uint32Array(total) : undefined;
  let at = 0;
  for (const { table, members } of toBuild) {
    const n = members.length;
    if (h1.length < n) {
      h1 = new Uint32Array(n * 2);
      h2 = new Uint32Array(n * 2);
    }
    for (let j = 0; j < n; j++) {
      const i = members[j]!;
      if (hashed[2 * i]! < 0) {
        const [a, b] = maglevHashes(maglevIdentity({ address: bk.address[i]!, port: bk.port[i]! }), seed);
        hashed[2 * i] = a;
        hashed[2 * i + 1] = b;
      }
      h1[j] = hashed[2 * i]!;
      h2[j] = hashed[2 * i + 1]!;
    }
    const slots = builder.buildIndices(h1, h2, n, table.m, slab?.subarray(at, at + table.m));
    at += table.m;
    for (let j = 0; j < slots.length; j++) slots[j] = table.members[slots[j]!]!;
    table.slots = slots;
  }

  const planTables = new Map<number, PlanTable>();
  for (const t of [...tables.values()].sort((a, b) => a.id - b.id)) planTables.set(t.id, t);
  const plan: Plan = { seed, frontends, backends: planBackends, tables: planTables };
  heads.set(plan, { chain: Chain.fromFull(seed, sizing, ordered, frontends, bk, planBackends, tables, planTables), version: 0, serial: ++serials });
  return plan;
}

// address -> the backend(s) of a plan at that address (an array only when several ports share it):
// how the next sync finds a backend's previous id without a key string per backend.
type BackendIndex = Map<string, PlanBackend | PlanBackend[]>;

function backendIndex(p: Plan): BackendIndex {
  const index: BackendIndex = new Map();
  for (const b of p.backends.values()) indexAdd(index, b);
  return index;
}

function indexAdd(index: BackendIndex, b: PlanBackend): void {
  const same = index.get(b.address);
  if (same === undefined) index.set(b.address, b);
  else if (Array.isArray(same)) same.push(b);
  else index.set(b.address, [same, b]);
}

/** removes b's (address, port, protocol) */
function indexRemove(index: BackendIndex, b: PlanBackend): void {
  const same = index.get(b.address);
  if (same === undefined) return;
  if (!Array.isArray(same)) {
    if (same.port === b.port && same.protocol === b.protocol) index.delete(b.address);
    return;
  }
  const j = same.findIndex((x) => x.port === b.port && x.protocol === b.protocol);
  if (j >= 0) same.splice(j, 1);
  if (same.length === 1) index.set(b.address, same[0]!);
}

function findIn(index: BackendIndex, address: string, port: number, protocol: Protocol): PlanBackend | undefined {
  const same = index.get(address);
  if (same === undefined) return undefined;
  if (!Array.isArray(same)) return same.port === port && same.protocol === protocol ? same : undefined;
  return same.find((b) => b.port === port && b.protocol === protocol);
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The plan's entry for one compiled frontend; the full and the incremental build both make it here. */
function planFrontend(id: number, f: NodeFrontend, backendIds: number[], terminatingIds: number[], table: PlanTable | undefined): PlanFrontend {
  return {
    id,
    service: f.service,
    portName: f.portName,
    type: f.type,
    address: f.address,
    port: f.port,
    protocol: f.protocol,
    scope: f.scope,
    backendIds,
    terminatingIds,
    tableId: table?.id ?? 0,
    maglevM: table?.m ?? 0,
    affinityTimeout: f.sessionAffinitySeconds,
    snatRemote: f.snatRemote,
    sourceRanges: f.sourceRanges.length === 0 ? [] : [...new Set(f.sourceRanges)].sort(),
  };
}

function samePlanFrontend(a: PlanFrontend, b: PlanFrontend): boolean {
  return a.id === b.id && a.service === b.service && a.portName === b.portName && a.type === b.type &&
    a.address === b.address && a.port === b.port && a.protocol === b.protocol && a.scope === b.scope &&
    a.tableId === b.tableId && a.maglevM === b.maglevM && a.affinityTimeout === b.affinityTimeout &&
    a.snatRemote === b.snatRemote && sameList(a.backendIds, b.backendIds) && sameList(a.sourceRanges, b.sourceRanges) &&
    sameList(a.terminatingIds, b.terminatingIds);
}

/**
 * Fills the slots of tables that came from a kernel read-back without them (reused by buildPlan
 * without a rebuild), for consumers that walk packets through the plan. The result equals what the
 * kernel holds as long as the seed is the one the table was built with.
 */
export function fillMissingSlots(plan: Plan): void {
  const builder = new MaglevBuilder();
  for (const t of plan.tables.values()) {
    if (t.slots.length === t.m) continue;
    // canonical order, whatever order a read-back produced
    const members = t.members.map((id) => {
      const b = plan.backends.get(id);
      if (!b) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table ${t.id} names backend ${id}, which the plan lacks`);
      return b;
    }).sort(compareBackends);
    const h1 = new Uint32Array(members.length), h2 = new Uint32Array(members.length);
    members.forEach((b, i) => { [h1[i], h2[i]] = maglevHashes(maglevIdentity(b), plan.seed); });
    const slots = builder.buildIndices(h1, h2, members.length, t.m);
    for (let j = 0; j < slots.length; j++) slots[j] = members[slots[j]!]!.id;
    t.slots = slots;
  }
}

/**
 * Drops the slots of every table (4 bytes a slot: ~64 MiB at 10,000 Services) once the data plane
 * holds them. The plan stays a valid `prev`: buildPlan reuses tables by members and M, and diffPlans
 * treats a table without slots as unchanged, exactly as for a kernel read-back. fillMissingSlots
 * brings them back when a consumer needs them. Tables are shared with whoever else holds this plan's
 * objects (an in-memory data plane keeps them by reference).
 */
export function releaseSlots(plan: Plan): void {
  for (const t of plan.tables.values()) t.slots = new Uint32Array(0);
}

// Incremental builds.
//
// The agent hands buildPlan the plan it returned last time, and its Compiler hands on the same
// NodeFrontend objects for every Service it did not recompile. So a build keeps, beside the plan it
// returns, what it derived from each NodeFrontend (a Chain: per-frontend records, per-backend
// reference counts, the table of each member set, the ids in use), and the next build from that
// plan redoes only the frontends whose object is new and withdraws those whose object is gone. The
// result is the full build's, to the object and the map order (test/unit/plan-incremental.test.ts):
// an unchanged NodeFrontend yields prev's PlanFrontend in the full build too, since its backends and
// its table keep their ids. NodeFrontends are taken as immutable once handed in, as compile's are.
//
// A chain serves only the plan it last produced: building from another plan (an older one, a
// kernel read-back), with another seed or sizing, or with many changed frontends takes the full
// path, which starts a new chain. So does anything unusual among the changed frontends (a bad field,
// a duplicate, an id range full), which makes every error the full path's, word for word.

interface FeRec {
  src: NodeFrontend;
  key: string;
  sortKey: string;
  /** the PlanFrontend in the chain's latest plan */
  pf: PlanFrontend;
  /** the table's key, '' when none */
  tkey: string;
  /** Chain.epoch of the last build that found src in its state */
  seen: number;
}

/** What an incremental build changed against the plan it was built from (diffPlans walks only this). */
export interface PlanDelta {
  /** keys of next's frontends that prev lacks or holds as another object, in next's order */
  frontendKeys: string[];
  /** prev's frontends whose key next lacks, in prev's order */
  removed: PlanFrontend[];
  /** backends added, removed or replaced (flags), ascending */
  backendIds: number[];
  /** tables added or removed, ascending */
  tableIds: number[];
}

interface Head { chain: Chain | undefined; version: number; serial: number }
const heads = new WeakMap<Plan, Head>();
// `from` is the serial of prev rather than prev itself: a strong reference would keep every plan
// of an agent's life alive
const deltas = new WeakMap<Plan, PlanDelta & { from: number }>();
let serials = 0;

/** The changes from prev to next when buildPlan built next incrementally from prev, else undefined. */
export function planDelta(prev: Plan, next: Plan): PlanDelta | undefined {
  const d = deltas.get(next);
  return d && heads.get(prev)?.serial === d.from ? d : undefined;
}

function growI32(a: Int32Array, need: number): Int32Array {
  if (need < a.length) return a;
  const b = new Int32Array(Math.max(need + 1, a.length * 2));
  b.set(a);
  return b;
}

function growU8(a: Uint8Array, need: number): Uint8Array {
  if (need < a.length) return a;
  const b = new Uint8Array(Math.max(need + 1, a.length * 2));
  b.set(a);
  return b;
}

/** lowest id from *hint with live[id] === 0, marked live; undefined past max */
function takeId(live: { a: Uint8Array }, hint: { h: number }, max: number): number | undefined {
  let id = hint.h;
  while (id < live.a.length && live.a[id]) id++;
  if (id > max) return undefined;
  live.a = growU8(live.a, id);
  live.a[id] = 1;
  hint.h = id + 1;
  return id;
}

class Chain {
  /** bumped by each incremental build; a plan's Head.version says which state it saw */
  version = 0;
  epoch = 0;
  /** ids below a hint are all live */
  readonly beHint = { h: 1 };
  readonly tblHint = { h: 1 };
  readonly feHint = { h: 1 };

  constructor(
    readonly seed: number,
    readonly sizing: MaglevSizing,
    public ordered: FeRec[],
    readonly bySrc: Map<NodeFrontend, FeRec>,
    readonly byKey: Map<string, FeRec>,
    /** the latest plan's backends by address (entries may be older objects of the same id) */
    readonly index: BackendIndex,
    /** per backend id: frontends listing it, listing it terminating, listing it local */
    public refs: Int32Array,
    public term: Int32Array,
    public local: Int32Array,
    /** ids the latest plan holds (ids freed by a build stay live until it ends: ids.ts) */
    readonly beLive: { a: Uint8Array },
    /** (member ids / M) -> table, for the latest plan's tables */
    readonly tables: Map<string, PlanTable>,
    /** per table id: frontends using it */
    public tblRefs: Int32Array,
    readonly tblLive: { a: Uint8Array },
    readonly feLive: { a: Uint8Array },
  ) {}

  /** undefined when ids are too sparse for arrays indexed by id (a kernel read-back may hold any) */
  static fromFull(seed: number, sizing: MaglevSizing, ordered: FrontendDraft[], frontends: Map<string, PlanFrontend>, bk: Backends,
    backends: Map<number, PlanBackend>, tables: Map<string, PlanTable>, planTables: Map<number, PlanTable>): Chain | undefined {
    let beTop = 0, tblTop = 0;
    for (const id of backends.keys()) if (id > beTop) beTop = id;
    for (const id of planTables.keys()) if (id > tblTop) tblTop = id;
    if (beTop > 2 * backends.size + 4096 || tblTop > 2 * planTables.size + 4096) return undefined;
    const recs: FeRec[] = new Array(ordered.length);
    const bySrc = new Map<NodeFrontend, FeRec>(), byKey = new Map<string, FeRec>();
    for (let k = 0; k < ordered.length; k++) {
      const d = ordered[k]!;
      // equal sort keys of distinct frontends (two spellings of one address) are ordered by their
      // place in the state, which an incremental build does not track
      if (k > 0 && ordered[k - 1]!.sortKey === d.sortKey) return undefined;
      const r: FeRec = { src: d.src, key: d.key, sortKey: d.sortKey, pf: frontends.get(d.key)!, tkey: d.tkey, seen: 0 };
      recs[k] = r;
      bySrc.set(d.src, r);
      byKey.set(d.key, r);
    }
    const refs = new Int32Array(beTop + 1), term = new Int32Array(beTop + 1), local = new Int32Array(beTop + 1);
    const beLive = new Uint8Array(beTop + 1);
    for (let i = 0; i < bk.size; i++) {
      const id = bk.id[i]!;
      refs[id] = bk.refs[i]!;
      term[id] = bk.termRefs[i]!;
      local[id] = bk.localRefs[i]!;
      beLive[id] = 1;
    }
    const tblRefs = new Int32Array(tblTop + 1), tblLive = new Uint8Array(tblTop + 1);
    for (const id of planTables.keys()) tblLive[id] = 1;
    for (const r of recs) if (r.tkey) tblRefs[tables.get(r.tkey)!.id]++;
    const feLive = new Uint8Array(LB_FE_ID_MAX);
    for (const f of frontends.values()) feLive[f.id] = 1;
    const index: BackendIndex = new Map();
    for (const b of backends.values()) indexAdd(index, b);
    return new Chain(seed, sizing, recs, bySrc, byKey, index, refs, term, local, { a: beLive }, tables, tblRefs, { a: tblLive }, { a: feLive });
  }
}

interface AddedBackend {
  address: string;
  port: number;
  protocol: Protocol;
  /** AddressKeys sort key */
  ak: string;
  /** 0 until a fresh backend gets its id */
  id: number;
}

interface Added {
  src: NodeFrontend;
  key: string;
  sortKey: string;
  /** canonical order */
  bes: AddedBackend[];
  /** whether bes[j] is terminating / local in this frontend */
  term: boolean[];
  local: boolean[];
  members: AddedBackend[];
  /** the record it replaces (same key), if any */
  old: FeRec | undefined;
}

function buildIncremental(state: NodeState, prev: Plan, seed: number, sizing: MaglevSizing): Plan | undefined {
  const head = heads.get(prev);
  const ch = head?.chain;
  if (!head || !ch || ch.version !== head.version || ch.seed !== seed || ch.sizing !== sizing || prev.seed !== seed) return undefined;
  const fes = state.frontends;
  // beyond this many changed frontends the full build is about as fast and keeps no stale records
  const limit = 64 + (fes.length >> 4);
  const epoch = ++ch.epoch;
  const addedSrc: NodeFrontend[] = [];
  let seen = 0;
  for (let k = 0; k < fes.length; k++) {
    const f = fes[k]!;
    const r = ch.bySrc.get(f);
    if (r === undefined) {
      if (addedSrc.push(f) > limit) return undefined;
    } else if (r.seen === epoch) return undefined; // listed twice: the full build names the duplicate
    else {
      r.seen = epoch;
      seen++;
    }
  }
  const gone: FeRec[] = [];
  if (seen !== ch.bySrc.size) for (const r of ch.ordered) if (r.seen !== epoch && gone.push(r) > limit) return undefined;
  if (!addedSrc.length && !gone.length) {
    // a resync: the same plan, in maps of its own (callers may edit a plan's maps)
    const plan: Plan = { seed, frontends: new Map(prev.frontends), backends: new Map(prev.backends), tables: new Map(prev.tables) };
    heads.set(plan, { chain: ch, version: ch.version, serial: ++serials });
    deltas.set(plan, { from: head.serial, frontendKeys: [], removed: [], backendIds: [], tableIds: [] });
    return plan;
  }

  // 1. check and key the new frontends, without touching the chain
  const addrKeys = new AddressKeys();
  const freshByKey = new Map<string, AddedBackend>();
  const added: Added[] = [];
  const addedKeys = new Set<string>();
  for (const f of addedSrc) {
    const feAk = addrKeys.get(f.address);
    if (feAk === undefined || !validPort(f.port) || !PROTOCOLS.has(f.protocol) || !SCOPES.has(f.scope) ||
      !Number.isInteger(f.sessionAffinitySeconds) || f.sessionAffinitySeconds < 0 || f.sessionAffinitySeconds > AFFINITY_TIMEOUT_MAX ||
      f.backends.length > MAX_BACKENDS_PER_FRONTEND) return undefined;
    const key = frontendKey(f);
    const held = ch.byKey.get(key);
    if (addedKeys.has(key) || (held && held.seen === epoch)) return undefined;
    addedKeys.add(key);
    const n = f.backends.length;
    const bes: AddedBackend[] = new Array(n);
    let sorted = true;
    for (let j = 0; j < n; j++) {
      const b = f.backends[j]!;
      const old = findIn(ch.index, b.address, b.port, f.protocol);
      let ab: AddedBackend | undefined;
      if (old) ab = { address: old.address, port: old.port, protocol: old.protocol, ak: addrKeys.get(old.address)!, id: old.id };
      else {
        const bkey = `${b.address}|${b.port}|${f.protocol}`;
        ab = freshByKey.get(bkey);
        if (!ab) {
          const ak = addrKeys.get(b.address);
          if (ak === undefined || !validPort(b.port)) return undefined;
          ab = { address: b.address, port: b.port, protocol: f.protocol, ak, id: 0 };
          freshByKey.set(bkey, ab);
        }
      }
      bes[j] = ab;
      if (j > 0 && sorted && compareAdded(bes[j - 1]!, ab) >= 0) sorted = false;
    }
    let order: number[] | undefined;
    if (!sorted) {
      order = bes.map((_, j) => j).sort((x, y) => compareAdded(bes[x]!, bes[y]!));
      // listed twice (or two spellings of one address): the full build decides
      for (let j = 1; j < n; j++) if (compareAdded(bes[order[j]!]!, bes[order[j - 1]!]!) === 0) return undefined;
    }
    const sb = order ? order.map((j) => bes[j]!) : bes;
    const term: boolean[] = new Array(n), local: boolean[] = new Array(n);
    let anyTerm = false, allTerm = true;
    for (let j = 0; j < n; j++) {
      const b = f.backends[order ? order[j]! : j]!;
      term[j] = !!b.terminating;
      local[j] = !!b.local;
      if (b.terminating) anyTerm = true;
      else allTerm = false;
    }
    // KEP-1669 as in the full build
    const members = anyTerm && !allTerm ? sb.filter((_, j) => !term[j]) : sb;
    added.push({
      src: f, key, sortKey: feAk + portKey(f.port) + f.protocol + SCOPE_ORDER[f.scope], bes: sb, term, local, members,
      old: held,
    });
  }
  added.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
  for (let k = 1; k < added.length; k++) if (added[k - 1]!.sortKey === added[k]!.sortKey) return undefined;
  // the new order: unchanged when every change replaces a frontend under its key
  let replaceOnly = added.length === gone.length;
  for (const a of added) if (!a.old) replaceOnly = false;
  let ordered: FeRec[] | undefined;
  const recOf = new Map<Added, FeRec>();
  for (const a of added) recOf.set(a, { src: a.src, key: a.key, sortKey: a.sortKey, pf: undefined as unknown as PlanFrontend, tkey: '', seen: epoch });
  if (!replaceOnly) {
    ordered = [];
    let k = 0;
    for (const r of ch.ordered) {
      if (r.seen !== epoch) continue;
      while (k < added.length && added[k]!.sortKey <= r.sortKey) {
        if (added[k]!.sortKey === r.sortKey) return undefined;
        ordered.push(recOf.get(added[k++]!)!);
      }
      ordered.push(r);
    }
    while (k < added.length) ordered.push(recOf.get(added[k++]!)!);
  }

  try {
    return advance(ch, head, prev, seed, gone, added, recOf, ordered, freshByKey);
  } catch (e) {
    ch.version = -1;
    throw e;
  }
}

function compareAdded(a: AddedBackend, b: AddedBackend): number {
  if (a.ak !== b.ak) return a.ak < b.ak ? -1 : 1;
  return a.port - b.port || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0);
}

/** The mutating half of an incremental build; undefined (and the chain dropped) when an id range is full. */
function advance(ch: Chain, head: Head, prev: Plan, seed: number, gone: FeRec[], added: Added[], recOf: Map<Added, FeRec>,
  ordered: FeRec[] | undefined, freshByKey: Map<string, AddedBackend>): Plan | undefined {
  const touched = new Set<number>();
  const goneTables = new Set<number>();
  // 2. withdraw the gone frontends' references
  for (const r of gone) {
    const proto = r.src.protocol;
    for (const b of r.src.backends) {
      const id = findIn(ch.index, b.address, b.port, proto)!.id;
      ch.refs[id]--;
      if (b.terminating) ch.term[id]--;
      if (b.local) ch.local[id]--;
      touched.add(id);
    }
    if (r.tkey) {
      const id = ch.tables.get(r.tkey)!.id;
      if (--ch.tblRefs[id]! === 0) goneTables.add(id);
    }
  }
  // 3. fresh backends take ids in canonical order, then every new reference counts
  const fresh = [...freshByKey.values()].sort(compareAdded);
  for (const ab of fresh) {
    const id = takeId(ch.beLive, ch.beHint, ID_MAX);
    if (id === undefined) {
      ch.version = -1;
      return undefined;
    }
    ab.id = id;
  }
  if (fresh.length) {
    const top = ch.beLive.a.length;
    ch.refs = growI32(ch.refs, top);
    ch.term = growI32(ch.term, top);
    ch.local = growI32(ch.local, top);
  }
  for (const a of added) {
    for (let j = 0; j < a.bes.length; j++) {
      const id = a.bes[j]!.id;
      ch.refs[id]++;
      if (a.term[j]) ch.term[id]++;
      if (a.local[j]) ch.local[id]++;
      touched.add(id);
    }
  }
  const beIds = [...touched].sort((x, y) => x - y);
  const changedBe = new Map<number, PlanBackend | undefined>();
  for (const id of beIds) {
    const old = prev.backends.get(id);
    if (ch.refs[id] === 0) {
      changedBe.set(id, undefined);
      continue;
    }
    const terminating = ch.term[id]! > 0, local = ch.local[id]! > 0;
    if (old && old.terminating === terminating && old.local === local) continue;
    if (old) changedBe.set(id, { id, address: old.address, port: old.port, protocol: old.protocol, terminating, local });
    else {
      const ab = fresh.find((x) => x.id === id)!;
      changedBe.set(id, { id, address: ab.address, port: ab.port, protocol: ab.protocol, terminating, local });
    }
  }

  // 4. tables, in frontend order: a member set already tabled (by any frontend) keeps its table
  const newTables: PlanTable[] = [];
  const builds: { table: PlanTable; members: AddedBackend[] }[] = [];
  for (const a of added) {
    const rec = recOf.get(a)!;
    if (!a.members.length) continue;
    const m = maglevSize(a.members.length, ch.sizing);
    const ids = a.members.map((b) => b.id);
    const tkey = `${ids.join(',')}/${m}`;
    let t = ch.tables.get(tkey);
    if (!t) {
      const id = takeId(ch.tblLive, ch.tblHint, ID_MAX);
      if (id === undefined) {
        ch.version = -1;
        return undefined;
      }
      ch.tblRefs = growI32(ch.tblRefs, ch.tblLive.a.length);
      t = { id, m, members: ids, slots: new Uint32Array(0) };
      ch.tables.set(tkey, t);
      newTables.push(t);
      builds.push({ table: t, members: a.members });
    }
    if (ch.tblRefs[t.id]!++ === 0) goneTables.delete(t.id);
    rec.tkey = tkey;
  }
  const builder = new MaglevBuilder();
  for (const { table, members } of builds) {
    const n = members.length;
    const h1 = new Uint32Array(n), h2 = new Uint32Array(n);
    for (let j = 0; j < n; j++) [h1[j], h2[j]] = maglevHashes(maglevIdentity(members[j]!), seed);
    const slots = builder.buildIndices(h1, h2, n, table.m);
    for (let j = 0; j < slots.length; j++) slots[j] = table.members[slots[j]!]!;
    table.slots = slots;
  }

  // 5. frontend ids (a replaced key keeps its id) and entries
  const changedKeys: string[] = [];
  for (const a of added) {
    let id = a.old?.pf.id;
    if (id === undefined) {
      id = takeId(ch.feLive, ch.feHint, LB_FE_ID_MAX - 1);
      if (id === undefined) {
        ch.version = -1;
        return undefined;
      }
    }
    const f = a.src;
    const rec = recOf.get(a)!;
    const table = rec.tkey ? ch.tables.get(rec.tkey) : undefined;
    const fe = planFrontend(id, f, a.bes.map((b) => b.id),
      a.term.some((x) => x) ? a.bes.filter((_, j) => a.term[j]).map((b) => b.id) : NONE, table);
    const old = a.old?.pf;
    rec.pf = old && samePlanFrontend(old, fe) ? old : fe;
    if (rec.pf !== old) changedKeys.push(a.key);
  }
  const removed: FeRec[] = [];
  for (const r of gone) if (!addedKeyOf(added, r)) removed.push(r);

  // 6. the new maps, in the full build's order
  let frontends: Map<string, PlanFrontend>;
  if (!ordered) {
    frontends = new Map(prev.frontends);
    for (const a of added) frontends.set(a.key, recOf.get(a)!.pf);
  } else {
    frontends = new Map();
    for (const r of ordered) frontends.set(r.key, r.pf);
  }
  const backends = withChanges(prev.backends, changedBe);
  const changedT = new Map<number, PlanTable | undefined>();
  for (const id of goneTables) changedT.set(id, undefined);
  for (const t of newTables) changedT.set(t.id, t);
  const tables = withChanges(prev.tables, changedT);

  // 7. the chain follows: records, index, freed ids (free from the next build on)
  for (const r of gone) {
    ch.bySrc.delete(r.src);
    if (ch.byKey.get(r.key) === r) ch.byKey.delete(r.key);
  }
  for (const a of added) {
    const rec = recOf.get(a)!;
    ch.bySrc.set(a.src, rec);
    ch.byKey.set(a.key, rec);
  }
  if (ordered) ch.ordered = ordered;
  else {
    const at = new Map<string, FeRec>();
    for (const a of added) at.set(a.key, recOf.get(a)!);
    const o = ch.ordered;
    for (let k = 0; k < o.length; k++) if (o[k]!.seen !== ch.epoch) o[k] = at.get(o[k]!.key)!;
  }
  for (const [id, b] of changedBe) {
    const old = prev.backends.get(id);
    if (!b) {
      indexRemove(ch.index, old!);
      ch.beLive.a[id] = 0;
      if (id < ch.beHint.h) ch.beHint.h = id;
    } else if (!old) indexAdd(ch.index, b);
  }
  for (const id of goneTables) {
    const t = prev.tables.get(id)!;
    ch.tables.delete(`${t.members.join(',')}/${t.m}`);
    ch.tblLive.a[id] = 0;
    if (id < ch.tblHint.h) ch.tblHint.h = id;
  }
  for (const r of removed) {
    ch.feLive.a[r.pf.id] = 0;
    if (r.pf.id < ch.feHint.h) ch.feHint.h = r.pf.id;
  }
  ch.version++;

  const plan: Plan = { seed, frontends, backends, tables };
  heads.set(plan, { chain: ch, version: ch.version, serial: ++serials });
  deltas.set(plan, {
    from: head.serial,
    frontendKeys: changedKeys,
    removed: removed.map((r) => r.pf),
    backendIds: [...changedBe.keys()],
    tableIds: [...changedT.keys()].sort((x, y) => x - y),
  });
  return plan;
}

function addedKeyOf(added: Added[], r: FeRec): boolean {
  for (const a of added) if (a.old === r) return true;
  return false;
}

/**
 * A copy of an id-ordered map with entries replaced, removed (undefined) or added, still in id
 * order: one pass, since Map keeps insertion order and an id may land between existing ones. This
 * copy (~100,000 backends at 10,000 Services) is most of what an incremental build costs; forEach,
 * which makes no entry arrays, is the fastest way through a Map.
 */
function withChanges<T>(m: Map<number, T>, changes: Map<number, T | undefined>): Map<number, T> {
  const ids = [...changes.keys()].sort((x, y) => x - y);
  const out = new Map<number, T>();
  let k = 0;
  m.forEach((v, id) => {
    while (k < ids.length && ids[k]! < id) {
      const c = changes.get(ids[k]!);
      if (c !== undefined) out.set(ids[k]!, c);
      k++;
    }
    if (k < ids.length && ids[k] === id) {
      const c = changes.get(id);
      if (c !== undefined) out.set(id, c);
      k++;
    } else out.set(id, v);
  });
  for (; k < ids.length; k++) {
    const c = changes.get(ids[k]!);
    if (c !== undefined) out.set(ids[k]!, c);
  }
  return out;
}
