// NodeState -> Plan: stable ids, per-frontend backend lists and shared Maglev tables (types.ts).
//
// Ids are stable while the object exists (by frontendKey / backendKey), so a resync or an agent restart
// (prev read back from the pinned maps) rewrites nothing that did not change. New ids take the lowest
// id that neither this plan nor prev holds (ids.ts says why prev's ids wait one sync). A table is
// identified by (member ids, M) under one seed; it is reused from prev, never rebuilt, when those
// match, and any change of members or M yields a new table id, so diff.ts can build the new table
// aside and swap the frontend over in one write.
//
// Cost is linear in frontends + backends (plus sorting each frontend's few backends, which compile's
// canonical output skips): addresses become sort keys once per distinct string, backends live in
// parallel arrays, and unchanged backends and frontends keep prev's objects so diff skips them.
// bench/plan.bench.ts: ~1 s at 10,000 Services x 10 endpoints, GC-bound beyond ~50,000.
import { isIP } from 'node:net';
import { compareBackends } from '../model/canonical.js';
import type { NodeFrontend, NodeState, Protocol, Scope } from '../model/compiled.js';
import { KbpError } from '../util/errors.js';
import { ipTo16, isV4Mapped } from '../util/ip.js';
import { IdAllocator } from './ids.js';
import { MaglevBuilder, maglevHashes, maglevIdentity, maglevSize, type MaglevSizing } from './maglev.js';
import { frontendKey, type Plan, type PlanBackend, type PlanFrontend, type PlanTable } from './types.js';

/** bpf/lb_consts.h LB_FE_ID_MAX: frontend ids are 1..LB_FE_ID_MAX-1 */
export const LB_FE_ID_MAX = 131072;
/** backend and table ids are u32, never 0 */
export const ID_MAX = 0xffffffff;
/** builds whose tables need more than this share one ArrayBuffer (see step 5 of buildPlan) */
const SLAB_MIN_BYTES = 32 * 2 ** 20;
/** struct lb_frontend.backend_count is a __u16 */
export const MAX_BACKENDS_PER_FRONTEND = 0xffff;

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
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new KbpError('KBP_ERR_CONFIG', `Maglev seed must be an integer in 0..2^32-1, got ${seed}`);
  }
  if (sizing !== 'exact' && sizing !== 'pow2') throw new KbpError('KBP_ERR_CONFIG', `unknown Maglev sizing ${JSON.stringify(sizing)}`);
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
    if (!Number.isInteger(f.sessionAffinitySeconds) || f.sessionAffinitySeconds < 0 || f.sessionAffinitySeconds > 0xffffffff) {
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
      if (b.terminating) bk.terminating[i] = anyTerminating = true;
      else allTerminating = false;
      if (b.local) bk.local[i] = true;
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
    drafts.set(key, { key, src: f, idx, members, term, sortKey: feAddrKey + portKey(f.port) + f.protocol + SCOPE_ORDER[f.scope] });
  }
  const ordered = [...drafts.values()].sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));

  // 2. backend ids: kept ones keep theirs; new ones, in canonical order, take the lowest free
  const prevIndex = prev ? backendIndex(prev) : undefined;
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
    const ranges = f.sourceRanges.length === 0 ? [] : [...new Set(f.sourceRanges)].sort();
    const fe: PlanFrontend = {
      id: feIds.get(d.key)!,
      service: f.service,
      portName: f.portName,
      type: f.type,
      address: f.address,
      port: f.port,
      protocol: f.protocol,
      scope: f.scope,
      backendIds,
      terminatingIds: d.term === NONE ? NONE : d.term.map((i) => bk.id[i]!),
      tableId: table?.id ?? 0,
      maglevM: table?.m ?? 0,
      affinityTimeout: f.sessionAffinitySeconds,
      snatRemote: f.snatRemote,
      sourceRanges: ranges,
    };
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
  if (prevIndex && fresh.length === 0 && planBackends.size === prev!.backends.size) {
    // the same backends under the same ids: prev's index serves (the objects may differ in flags only)
    backendIndexes.set(plan, prevIndex);
  }
  return plan;
}

// address -> the backend(s) of a plan at that address (an array only when several ports share it):
// how the next sync finds a backend's previous id without a key string per backend. Kept per plan
// (plans are not mutated once built), so a resync that changes no backend reuses it.
type BackendIndex = Map<string, PlanBackend | PlanBackend[]>;
const backendIndexes = new WeakMap<Plan, BackendIndex>();

function backendIndex(p: Plan): BackendIndex {
  let index = backendIndexes.get(p);
  if (!index) {
    index = new Map();
    for (const b of p.backends.values()) {
      const same = index.get(b.address);
      if (same === undefined) index.set(b.address, b);
      else if (Array.isArray(same)) same.push(b);
      else index.set(b.address, [same, b]);
    }
    backendIndexes.set(p, index);
  }
  return index;
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
