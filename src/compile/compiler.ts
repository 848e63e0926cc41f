// The Compiler: one node's incremental compile of a Snapshot into its desired frontends and backends.
// It keeps {previous, current} per object, re-normalizes only what changed, reruns allocation only
// when it must, and recompiles only the Services whose object, slices or allocation changed, merging
// their frontends into the previous sorted list. Mirrors kube-proxy's change trackers (kubernetes
// pkg/proxy/servicechangetracker.go, endpointschangetracker.go, endpointslicecache.go) and the
// walk over Services in syncProxyRules; what one Service becomes is frontends.ts.
//
// Cost is linear in Services x endpoints: one pass per Service port and family, sort keys computed
// once per address; no lookup scans another Service.
import type { Kind, Snapshot } from '../source/types.js';
import type { NodeFrontend, NodeState } from '../model/compiled.js';
import {
  defaultNodePortRange,
  type NodeModel, type NodePortRange, type ObjectError, type ServiceEndpoints, type ServiceModel,
} from '../model/types.js';
import { normalizeEndpointSlice, normalizeNode, normalizeService, tight, type NormalizedSlice } from '../model/normalize.js';
import { ipFamily, parseCidr, type Cidr } from '../util/ip.js';
import { allocate, defaultServiceCidrs, parseServiceCidrs, type AllocTrace, type Allocation, type UsedSet } from './allocate.js';
import { configError, isNodePortRange, type CompileOptions } from './options.js';
import { primaryNodeIPs, resolveNodePortAddresses } from './nodeport-addresses.js';
import type { Family } from '../util/ip.js';
import {
  addNoLocalCounts, compileService, fmtAddr, zeroNoLocalCounts,
  type NoLocalEndpointCounts, type RawFrontend, type ResolvedOptions,
} from './frontends.js';
import { lazyState, recordStateDelta } from '../plan/delta.js';
import { ShardedMap, stringHash } from '../util/sharded-map.js';

/** Keys of the objects added, replaced or removed since the previous compile, by kind (ObjectStore's onChange). */
export type ChangedKeys = Readonly<Record<Kind, ReadonlySet<string>>>;

export interface CompileResult {
  state: NodeState;
  errors: ObjectError[];
  /**
   * the normalized model with allocations applied, for consumers such as healthCheckNodePort
   * servers; the same array from one compile to the next until a Service or an allocation changes.
   * Built on first read (serviceList.list): a Service created or deleted does not copy the list
   */
  readonly services: readonly CompiledService[];
  /** the same list with what it changed since the previous one (a consumer's own index follows it) */
  serviceList: ServiceList;
  /** kubeproxy_sync_proxy_rules_no_local_endpoints_total's values (a fresh object each compile) */
  noLocalEndpoints: NoLocalEndpointCounts;
}

export interface CompiledService {
  service: ServiceModel;
  /** read only: shared with the model and the allocation */
  clusterIPs: readonly string[];
  nodePorts: readonly number[];
  healthCheckNodePort: number;
}

/**
 * A built Service list and the edits made over it since, in order (a Service's key, and its entry
 * after the edit: undefined when it left the list), shared by the lists made from it: each list is
 * the base with the edits up to its own count.
 */
interface ServiceRun {
  base: readonly CompiledService[];
  keys: string[];
  vals: (CompiledService | undefined)[];
  /** the next run's base being built a few steps per edit (its first `at` edits merged), then the base built */
  next?: RunBuild;
}

/**
 * The list of a run's base with its first `at` edits, built in steps of a bounded number of
 * elements (one step per Service change), so that no one change pays for it (a build of the whole
 * list at once was 5-6 ms at 10,000 Services, 30 ms at 100,000; docs/perf-log.md, session 26): first a
 * stable bottom-up merge sort of the edits' indices by key (passes of width 1, 2, 4, ...; a merge
 * may end mid-way and go on at the next step), then the merge of the sorted edits (the last edit of
 * a key wins) with the base.
 */
class RunBuild {
  readonly at: number;
  readonly #keys: readonly string[];
  readonly #vals: readonly (CompiledService | undefined)[];
  readonly #base: readonly CompiledService[];
  #a: Int32Array;
  #b: Int32Array;
  /** the sort: the width of this pass's runs (>= at: sorted), the current pair's start, and the merge's cursors */
  #width = 1;
  #lo = 0;
  #i = 0;
  #j = 0;
  #o = 0;
  #inPair = false;
  /** the merge with the base: cursors into the sorted edits and the base */
  #t = 0;
  #bi = 0;
  readonly #out: CompiledService[] = [];
  /** the list built: set when done */
  built: readonly CompiledService[] | undefined;

  constructor(run: ServiceRun) {
    this.at = run.keys.length;
    this.#keys = run.keys;
    this.#vals = run.vals;
    this.#base = run.base;
    this.#a = new Int32Array(this.at);
    this.#b = new Int32Array(this.at);
    for (let k = 0; k < this.at; k++) this.#a[k] = k;
  }

  /** goes on for about `budget` elements; true when the list is built */
  step(budget: number): boolean {
    const n = this.at, keys = this.#keys;
    while (budget > 0 && this.#width < n) {
      const w = this.#width, a = this.#a, b = this.#b;
      if (!this.#inPair) {
        if (this.#lo >= n) {
          // the pass is done: its output is the next pass's input
          this.#a = b;
          this.#b = a;
          this.#width = w * 2;
          this.#lo = 0;
          continue;
        }
        this.#i = this.#lo;
        this.#j = Math.min(this.#lo + w, n);
        this.#o = this.#lo;
        this.#inPair = true;
      }
      const mid = Math.min(this.#lo + w, n), hi = Math.min(this.#lo + 2 * w, n);
      let i = this.#i, j = this.#j, o = this.#o;
      const end = Math.min(hi, o + budget);
      budget -= end - o;
      while (o < end) {
        // stable: the left run's (earlier) edit first among equal keys
        if (j >= hi || (i < mid && !(keys[a[j]!]! < keys[a[i]!]!))) b[o++] = a[i++]!;
        else b[o++] = a[j++]!;
      }
      this.#i = i;
      this.#j = j;
      this.#o = o;
      if (o >= hi) {
        this.#inPair = false;
        this.#lo = hi;
      }
    }
    if (this.#width < n) return false;
    // the sorted edits merged with the base, a key's last edit taken
    const a = this.#a, base = this.#base, out = this.#out, vals = this.#vals;
    let t = this.#t, bi = this.#bi;
    while (budget > 0 && t < n) {
      const k = keys[a[t]!]!;
      while (t + 1 < n && keys[a[t + 1]!] === k) {
        t++;
        budget--;
      }
      while (bi < base.length && base[bi]!.service.key < k) {
        out.push(base[bi++]!);
        budget--;
      }
      if (bi < base.length && base[bi]!.service.key === k) bi++;
      const c = vals[a[t]!];
      if (c) out.push(c);
      t++;
      budget--;
    }
    this.#t = t;
    if (t < n) {
      this.#bi = bi;
      return false;
    }
    const tail = Math.min(base.length - bi, Math.max(budget, 0));
    for (let k = 0; k < tail; k++) out.push(base[bi++]!);
    this.#bi = bi;
    if (bi < base.length) return false;
    this.built = out;
    return true;
  }
}

/**
 * The Service list of a compile (CompileResult.services), in Service order. A Service created,
 * deleted or changed makes a new list by its edits over the previous list's, which it builds on
 * first read only (one merge of the edits of its run): walking every Service (a lookup by key of
 * each, to rebuild the list) was the whole of a Service change's compile (~2 ms at 10,000 Services,
 * 10-40 ms at 30,000, ~180 at 100,000; docs/perf-log.md, session 25). A consumer that indexes the list
 * follows `removed` and `added` from the version it saw (`from`) instead.
 */
export class ServiceList {
  #arr: readonly CompiledService[] | undefined;
  /** until built: the run this list is its base and first `#upto` edits of */
  #run: ServiceRun | undefined;
  readonly #upto: number;
  /** distinct per list (a list unchanged is the same object, with its version) */
  readonly version: number;
  /** the version this list was made from by `removed` and `added`; undefined when it was made whole */
  readonly from: number | undefined;
  /** the entries of the previous list that this one no longer holds, and the ones it holds instead */
  readonly removed: readonly CompiledService[];
  readonly added: readonly CompiledService[];

  static #versions = 0;

  private constructor(arr: readonly CompiledService[] | undefined, run: ServiceRun | undefined, from: number | undefined,
    removed: readonly CompiledService[], added: readonly CompiledService[]) {
    this.#arr = arr;
    this.#run = run;
    this.#upto = run ? run.keys.length : 0;
    this.version = ++ServiceList.#versions;
    this.from = from;
    this.removed = removed;
    this.added = added;
  }

  /** A list made whole. */
  static of(arr: readonly CompiledService[]): ServiceList {
    return new ServiceList(arr, undefined, undefined, [], []);
  }

  /**
   * `prev` with the Services of `edits` (by model key, each the model key of its entry: a list in
   * model key order) replaced, added (a value) or taken out (undefined). Appended to prev's run when
   * prev is its newest list, else a run from prev (built) begins.
   */
  static edit(prev: ServiceList, edits: ReadonlyMap<string, CompiledService | undefined>, removed: readonly CompiledService[],
    added: readonly CompiledService[], bound = Infinity, budget = Infinity): ServiceList {
    let run = prev.#run;
    if (!run || prev.#upto !== run.keys.length) run = { base: prev.list, keys: [], vals: [] };
    else if (run.next?.built) {
      // the next run's base is built: its edits are this run's after it (the lists made so far keep this run)
      const at = run.next.at;
      run = { base: run.next.built, keys: run.keys.slice(at), vals: run.vals.slice(at) };
    }
    for (const [k, c] of edits) {
      run.keys.push(k);
      run.vals.push(c);
    }
    const next = new ServiceList(undefined, run, prev.version, removed, added);
    // past the bound, the next run's base is built a step per edit; past twice the bound (edits
    // faster than the steps: many Services at once) this list is built now, and the next edits run from it
    if (run.keys.length > 2 * bound) void next.list;
    else if (run.next) {
      if (!run.next.built) run.next.step(budget);
    } else if (run.keys.length > bound) run.next = new RunBuild(run);
    return next;
  }

  /** the edits of this list's run so far (a bound on what a run keeps: the Compiler builds a list past it) */
  get pending(): number {
    return this.#run?.keys.length ?? 0;
  }

  get list(): readonly CompiledService[] {
    return this.#arr ??= this.#build();
  }

  /** as the list (a CompileResult printed or compared as JSON) */
  toJSON(): readonly CompiledService[] {
    return this.list;
  }

  /** the run's base with its first #upto edits merged in one pass (the later edit of a key wins) */
  #build(): readonly CompiledService[] {
    const run = this.#run!;
    const prev = run.base;
    const edits = new Map<string, CompiledService | undefined>();
    for (let i = 0; i < this.#upto; i++) edits.set(run.keys[i]!, run.vals[i]);
    // the default sort: code unit order, as byString (a comparator call per compare was ~2x its time)
    const ch = [...edits.keys()].sort();
    const out: CompiledService[] = [];
    let i = 0;
    for (const k of ch) {
      while (i < prev.length && prev[i]!.service.key < k) out.push(prev[i++]!);
      if (i < prev.length && prev[i]!.service.key === k) i++;
      const c = edits.get(k);
      if (c) out.push(c);
    }
    while (i < prev.length) out.push(prev[i++]!);
    // built: this list no longer holds its run (the run's other lists still read keep it)
    this.#run = undefined;
    return out;
  }
}

/** One Service's compiled frontends, valid while its model, endpoints, allocation and the node signature are. */
interface ServiceEntry {
  model: ServiceModel;
  /** the version of its slices' group it was compiled from (0: none) */
  epsVer: number;
  alloc: Allocation;
  frontends: RawFrontend[];
  warnings: ObjectError[];
  compiled: CompiledService;
  noLocal: NoLocalEndpointCounts;
}

interface ServiceRecord {
  raw: unknown;
  model: ServiceModel | null;
  errors: ObjectError[];
}

/**
 * What is kept of a slice: its object (unchanged objects are the same object in the next snapshot)
 * and its Service, not its normalized endpoints: those are rebuilt from the object when its Service
 * compiles again (a few microseconds for one Service, against ~1.3 KiB a Service kept; issue 10).
 */
interface SliceRecord {
  raw: unknown;
  errors: ObjectError[];
  /** the Service key whose endpoints it feeds; '' when none (rejected, unlabelled, FQDN) */
  group: string;
}

/** The usable slices of one Service, by snapshot key, and a version that changes whenever they do. */
interface Group {
  keys: string[];
  ver: number;
  /** during a compile that changed its slices, its endpoints (built from the slices at hand); else undefined */
  eps: ServiceEndpoints | undefined;
}

/**
 * more changed slices than this in one compile: their endpoints are normalized again when their
 * Service compiles (#syncSlices). That costs a second normalize (~8 % of a first compile's CPU at
 * 10,000 in one process, within the noise at 100,000) for memory in proportion to N: 155 MiB of a
 * first compile's peak at 100,000, ~11 MiB at 10,000, where RSS is not the limit.
 */
const BULK_SLICES = 16384;

/** shared by every object without problems (most): an empty array each costs 32 bytes */
const NO_ERRORS: ObjectError[] = Object.freeze([]) as unknown as ObjectError[];

/** the no-local counts of every Service that has none; read only (addNoLocalCounts reads its b) */
const ZERO_NO_LOCAL: NoLocalEndpointCounts = zeroNoLocalCounts();

function isZeroNoLocal(c: NoLocalEndpointCounts): boolean {
  return !c.IPv4.internal && !c.IPv4.external && !c.IPv6.internal && !c.IPv6.external;
}

function sameAlloc(a: Allocation, b: Allocation): boolean {
  if (a === b) return true;
  if (a.healthCheckNodePort !== b.healthCheckNodePort || a.clusterIPs.length !== b.clusterIPs.length
    || a.nodePorts.length !== b.nodePorts.length) return false;
  for (let i = 0; i < a.clusterIPs.length; i++) if (a.clusterIPs[i] !== b.clusterIPs[i]) return false;
  for (let i = 0; i < a.nodePorts.length; i++) if (a.nodePorts[i] !== b.nodePorts[i]) return false;
  return true;
}

// the order a fresh compile's stable sort gives: frontend key, then Service (snapshot key order), then emission order
function cmpRaw(a: RawFrontend, b: RawFrontend): number {
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  if (a.svc !== b.svc) return a.svc < b.svc ? -1 : 1;
  return a.idx - b.idx;
}

function lowerBound(arr: readonly string[], key: string): number {
  let lo = 0, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Keeps `keys` equal to the sorted keys of `map` after the keys in `changed` were added to or
 * removed from it: a few binary-search splices, or one merge with the changed keys sorted when many
 * changed (a first list's pages compiled as they come: a step costs a pass over the keys, not a sort
 * of them all).
 */
function updateSortedKeys(keys: string[], map: ReadonlyMap<string, unknown>, changed: readonly string[], mergeAt: number): void {
  if (changed.length > mergeAt) {
    mergeSorted(keys, changed, (k) => map.has(k));
    return;
  }
  for (const k of changed) {
    const at = lowerBound(keys, k);
    const present = keys[at] === k;
    if (map.has(k) && !present) keys.splice(at, 0, k);
    else if (!map.has(k) && present) keys.splice(at, 1);
  }
}

/**
 * `keys` (sorted, distinct) with the `changed` keys in their place where `keep` holds and out where
 * it does not; the other keys stay. In place, in one pass.
 */
function mergeSorted(keys: string[], changed: readonly string[], keep: (k: string) => boolean): void {
  const ch = [...new Set(changed)].sort(byString);
  const out: string[] = [];
  let i = 0;
  for (const k of ch) {
    while (i < keys.length && keys[i]! < k) out.push(keys[i++]!);
    if (keys[i] === k) i++;
    if (keep(k)) out.push(k);
  }
  while (i < keys.length) out.push(keys[i++]!);
  keys.length = out.length;
  for (let j = 0; j < out.length; j++) keys[j] = out[j]!;
}

/** A key diffKeys found changed: its record before (if any), and its object now (absent: gone). */
interface Found<R> { key: string; old: R | undefined; raw: unknown; gone: boolean }

/**
 * Appends the keys whose value in `next` is not the object `prev` recorded, and the keys `next`
 * lost; with a hint, only among the hinted keys. Each with what was read of it, so that no caller
 * looks it up again (a lookup in a 100,000-entry Map is a cache miss or two: ~250 ns here).
 */
function diffKeys<R extends { raw: unknown }>(next: ReadonlyMap<string, unknown>, prev: ReadonlyMap<string, R>, out: Found<R>[],
  hint: ReadonlySet<string> | undefined): void {
  if (hint) {
    for (const k of hint) {
      const r = prev.get(k), v = next.get(k);
      const gone = v === undefined && !next.has(k);
      if (gone ? r : !r || r.raw !== v) out.push({ key: k, old: r, raw: v, gone });
    }
    return;
  }
  let kept = 0;
  for (const [k, v] of next) {
    const r = prev.get(k);
    if (r === undefined) out.push({ key: k, old: undefined, raw: v, gone: false });
    else {
      kept++;
      if (r.raw !== v) out.push({ key: k, old: r, raw: v, gone: false });
    }
  }
  if (kept !== prev.size) for (const [k, r] of prev) if (!next.has(k)) out.push({ key: k, old: r, raw: undefined, gone: true });
}

/** Every field of a Service that allocate() reads: equal inputs, equal allocations for all. */
function allocationInputs(m: ServiceModel): string {
  return JSON.stringify([m.key, m.headless, m.type, m.clusterIPs, m.ipFamilies, m.ipFamilyPolicy, m.ports.map((p) => [p.name, p.protocol, p.nodePort]),
    m.healthCheckNodePort, m.externalTrafficPolicy, m.allocateLoadBalancerNodePorts]);
}

/** What a Service claims for itself and no other may hold: its clusterIPs and nodePorts (allocate()'s first pass). */
function claims(m: ServiceModel | null | undefined): string[] {
  if (!m || m.headless || m.type === 'ExternalName') return [];
  const out = [...m.clusterIPs];
  for (const p of m.ports) if (p.nodePort) out.push(`${p.nodePort}/${p.protocol}`);
  return out;
}

/** The same model and problems from a new object of one Service (models are plain JSON data). */
/** Every clusterIP and nodePort an allocation holds (a Service's own ones among them). */
function allocationSlots(a: Allocation): (string | number)[] {
  const out: (string | number)[] = [...a.clusterIPs];
  for (const p of a.nodePorts) if (p) out.push(p);
  if (a.healthCheckNodePort) out.push(a.healthCheckNodePort);
  return out;
}

/** The clusterIPs and nodePorts a Service names itself (allocate()'s first pass). */
function namedSlots(m: ServiceModel | null | undefined): (string | number)[] {
  if (!m) return [];
  const out: (string | number)[] = [...m.clusterIPs];
  for (const p of m.ports) if (p.nodePort) out.push(p.nodePort);
  if (m.healthCheckNodePort) out.push(m.healthCheckNodePort);
  return out;
}

/**
 * Standalone allocation's index: the Service holding each clusterIP and each nodePort ('' when two
 * do), and the slots each allocation probed past (in use at its turn), counted per slot.
 */
interface SaIndex {
  ips: Map<string, string>;
  ports: Map<number, string>;
  skippedBy: Map<string | number, number>;
  skippedOf: Map<string, (string | number)[]>;
}

function sameModel(old: ServiceRecord, model: ServiceModel, errors: readonly ObjectError[]): boolean {
  return old.errors.length === errors.length && JSON.stringify(old.model) === JSON.stringify(model)
    && (errors.length === 0 || JSON.stringify(old.errors) === JSON.stringify(errors));
}

function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A compiler for one node that remembers its last run, so that a sync after a few changes costs
 * about as much as those changes: the snapshot is diffed against the previous one by object
 * identity (sources replace an object on change, never mutate it), only changed objects are
 * normalized, and only Services whose object, slices or allocation changed are recompiled; their
 * frontends are merged into the previous sorted list. What stays linear in the cluster's size is a
 * few plain loops (the identity diff, the merge, the duplicate check and the output lists), no
 * sorting and no allocation of unchanged Services. Allocation reruns whole when any Service
 * changed, since one Service's clusterIP or nodePort can move another's; a change of this node's
 * zone or addresses recompiles everything. The result is always what a fresh Compiler gives for the
 * same snapshot. Treat returned states as immutable: frontends, backends and CompiledServices are
 * shared between syncs (plan.ts skips a frontend whose object it has already planned).
 */
export class Compiler {
  readonly #opts: CompileOptions;
  readonly #range: NodePortRange;
  readonly #cidrs: ReturnType<typeof parseServiceCidrs>;
  readonly #allow: Cidr[] | null;
  /**
   * by snapshot key. This, #slices and #groups are in shards (util/sharded-map.ts) as #entries: a
   * Service or slice created or deleted inserts into or deletes from them, and V8 copies a whole
   * Map's table every ~(capacity - n) such inserts (at 100,000 Services a 4 MiB table on fresh
   * pages). Nothing walks them in an order that matters: #svcKeys and each group's keys are sorted.
   */
  readonly #svcs = new ShardedMap<string, ServiceRecord>(stringHash);
  /** the keys of #svcs, sorted */
  readonly #svcKeys: string[] = [];
  /** Services whose model key differs from their snapshot key (not from a source): disables the shortcut */
  #keyMismatch = 0;
  readonly #svcErrKeys = new Set<string>();
  readonly #slices = new ShardedMap<string, SliceRecord>(stringHash);
  readonly #sliceErrKeys = new Set<string>();
  /** Service key -> its usable slices */
  readonly #groups = new ShardedMap<string, Group>(stringHash);
  /** the last version given to a group */
  #groupVer = 0;
  /** the groups given endpoints in this compile (cleared at its end: endpoints are not kept) */
  #freshGroups: Group[] = [];
  readonly #nodeCache = new WeakMap<object, { key: string; model: NodeModel | null }>();
  #allocs: Map<string, Allocation> | undefined;
  #allocErrors: ObjectError[] = [];
  /** #allocErrors from the API server, split: the rejections, and the warnings by Service key */
  #allocRejects: ObjectError[] = [];
  readonly #allocWarnings = new Map<string, ObjectError[]>();
  /** how many Services claim each clusterIP and each nodePort/protocol (what allocate() checks for collisions); in shards, as #allocs */
  #claims: Map<string, number> | undefined;
  /** standalone: who holds each clusterIP and nodePort (#allocateStandalone); undefined until needed, and after a full allocate() */
  #saIndex: SaIndex | undefined;
  /** the previous models of the Services the current compile found changed */
  readonly #replaced = new Map<string, ServiceModel | null>();
  #replacedValid = false;
  /**
   * by snapshot key; in shards, as #byKey: a changed Service's entry is deleted and set again (no
   * walk of it depends on its order)
   */
  readonly #entries = new ShardedMap<string, ServiceEntry>(stringHash);
  /** the keys of the entries with warnings */
  readonly #warnKeys = new Set<string>();
  /** the CompiledServices in Service order, as last returned (replaced, never edited: callers keep it) */
  #services: ServiceList | undefined;
  /** #services is sorted by model key (no Service's model key differed from its snapshot key) */
  #servicesByKey = false;
  /** the served frontend of each key (#byKey's first), in key order, and those keys: the state's list */
  #list: NodeFrontend[] = [];
  readonly #listKeys: string[] = [];
  /** the keys more than one Service's frontend claims (each compile warns about them) */
  readonly #dupKeys = new Set<string>();
  #nodeSig: string | undefined;
  #node: NodeModel | undefined;
  #nodePortAddrs: Map<Family, string[]> = new Map();
  /** the last compile() completed: the state matches its snapshot, so a change hint can be trusted */
  #primed = false;
  /** the sum of every entry's noLocal, kept as entries come and go */
  #noLocal = zeroNoLocalCounts();
  /**
   * frontend key -> every Service's frontend with that key, in cmpRaw order (the first is served). In
   * shards: a changed Service's keys are deleted and set again, and V8 copies a whole Map every
   * ~(capacity - n) such inserts (util/sharded-map.ts); its keys are sorted where they are walked.
   */
  readonly #byKey = new ShardedMap<string, RawFrontend[]>(stringHash);
  /** the state the last compile returned: the base of the next one's delta (plan/delta.ts) */
  #lastState: NodeState | undefined;
  #byKeyStale = false;
  /**
   * The edits of #list since its run began: a state returned earlier builds its array on first read
   * by copying its run's list and undoing the edits after it (newest first). Bounded: past a cap of
   * edits (or when #list is replaced) the run ends and a new one begins (#retire).
   */
  #run: LogRun = { start: 0, edits: [], end: undefined };
  /** false: a compile against nothing takes the general path too (tests compare the two) */
  readonly #fastFirst: boolean;
  /** BULK_SLICES (tests set another) */
  readonly #bulkSlices: number;
  /** more changed keys than this: sorted lists are merged with them, not spliced (tests set 0) */
  readonly #mergeAt: number;
  /** a Service list is built past this many edits plus the Service count since the last built one (tests set 0) */
  readonly #serviceRun: number;
  /** the elements of a Service list's build per Service change (RunBuild; tests set a few) */
  readonly #serviceStep: number | undefined;
  /** the states returned in the current run, which may need its end kept (#retire) */
  #pending: WeakRef<PendingList>[] = [];

  /** The NodePort addresses per family of the last compile ('0.0.0.0' / '::' for any). */
  nodePortAddresses(): ReadonlyMap<Family, readonly string[]> {
    return this.#nodePortAddrs;
  }

  /** Validates the options; throws KbpError KBP_ERR_CONFIG naming the bad one. */
  constructor(opts: CompileOptions, internal?: { fastFirst?: boolean; bulkSlices?: number; mergeAt?: number; serviceRun?: number; serviceStep?: number }) {
    if (!opts.nodeName) throw configError('a node name is required');
    this.#fastFirst = internal?.fastFirst ?? true;
    this.#bulkSlices = internal?.bulkSlices ?? BULK_SLICES;
    this.#mergeAt = internal?.mergeAt ?? 64;
    this.#serviceRun = internal?.serviceRun ?? 1024;
    this.#serviceStep = internal?.serviceStep;
    this.#opts = opts;
    this.#range = opts.nodePortRange ?? defaultNodePortRange;
    const r = this.#range;
    if (!isNodePortRange(r.min, r.max)) {
      throw configError(`bad nodePort range ${r.min}-${r.max}`);
    }
    try {
      this.#cidrs = parseServiceCidrs(opts.serviceCidrs ?? defaultServiceCidrs);
    } catch (e) {
      throw configError(`service CIDRs: ${(e as Error).message}`);
    }
    this.#allow = opts.externalIPAllowCidrs
      ? opts.externalIPAllowCidrs.map((s) => {
        try {
          return parseCidr(s.trim());
        } catch (e) {
          throw configError(`externalIP allow list: ${(e as Error).message}`);
        }
      })
      : null;
    // option errors surface now rather than at the first sync
    resolveNodePortAddresses(undefined, opts);
  }

  /**
   * Compiles a snapshot. `changed`, when given, names by kind every key whose object was added,
   * replaced or removed since the previous call (what ObjectStore.onChange reported): only those
   * are compared with the previous snapshot instead of every key. A key it misses leaves that
   * object stale; it is ignored on the first call and after a call that threw.
   */
  compile(snapshot: Snapshot, changed?: ChangedKeys): CompileResult {
    const hint = this.#primed ? changed : undefined;
    this.#primed = false;
    const base = this.#lastState;
    this.#lastState = undefined;
    if (this.#byKeyStale) {
      // (and the standalone index may be part-way through a change)
      this.#saIndex = undefined;
      // a compile that threw may have left #byKey and the list behind the entries: rebuild them
      const all: RawFrontend[] = [];
      for (const e of this.#entries.values()) for (const r of e.frontends) all.push(r);
      all.sort(cmpRaw);
      this.#byKey.clear();
      this.#dupKeys.clear();
      for (const r of all) {
        const l = this.#byKey.get(r.key);
        if (l) {
          l.push(r);
          this.#dupKeys.add(r.key);
        } else this.#byKey.set(r.key, [r]);
      }
      this.#rebuildList();
      this.#byKeyStale = false;
    }
    this.#byKeyStale = true;
    const result = this.#compile(snapshot, hint, base);
    this.#byKeyStale = false;
    this.#primed = true;
    this.#lastState = result.state;
    return result;
  }

  #compile(snapshot: Snapshot, hint: ChangedKeys | undefined, base: NodeState | undefined): CompileResult {
    const opts = this.#opts;
    // the node unchanged (a one-change sync): its options as resolved last time. Resolving them
    // (NodePort addresses, primary IPs, the signature) was ~a fifth of a one-change compile
    const cached = this.#ro;
    if (hint && !hint.Node.size && this.#nodeSig && cached) return this.#compileWith(snapshot, hint, base, cached, false);
    this.#node = this.#thisNode(snapshot.nodes);
    const node = this.#node;
    const ro: ResolvedOptions = {
      nodeName: opts.nodeName,
      zone: node?.zone ?? '',
      nodePortAddrs: resolveNodePortAddresses(node, opts),
      allow: this.#allow,
      standalone: opts.standalone ?? false,
      nodeHints: opts.preferSameTrafficDistribution ?? true,
      masqueradeAll: opts.masqueradeAll ?? false,
      detectLocal: new Set(opts.detectLocalNodeCidr ? nodeLocalCidrs(node).map((c) => ipFamily(c.slice(0, c.indexOf('/'))) as Family) : opts.detectLocalFamilies ?? []),
      primaryIPs: primaryNodeIPs(node, opts),
    };
    // this node's zone and addresses shape every Service's frontends
    this.#nodePortAddrs = ro.nodePortAddrs;
    const nodeSig = JSON.stringify([ro.zone, [...ro.nodePortAddrs], [...ro.primaryIPs], [...ro.detectLocal]]);
    const nodeChanged = nodeSig !== this.#nodeSig;
    this.#nodeSig = nodeSig;
    this.#ro = ro;
    return this.#compileWith(snapshot, hint, base, ro, nodeChanged);
  }

  /** the node's options resolved by #compile, kept while the node does not change */
  #ro: ResolvedOptions | undefined;

  #compileWith(snapshot: Snapshot, hint: ChangedKeys | undefined, base: NodeState | undefined, ro: ResolvedOptions, nodeChanged: boolean): CompileResult {

    const svcChanged = this.#syncServices(snapshot.services, hint?.Service);
    const dirtyGroups = this.#syncSlices(snapshot.endpointSlices, hint?.EndpointSlice);

    let allocRerun = false;
    if (!this.#allocs || (svcChanged.length && !this.#allocateLocally(svcChanged, ro.standalone))) {
      const models: ServiceModel[] = [];
      for (const k of this.#svcKeys) {
        const m = this.#svcs.get(k)!.model;
        if (m) models.push(m);
      }
      this.#allocErrors = [];
      // in shards: each Service created or deleted then inserts a fresh key here (#allocateLocally)
      this.#allocs = allocate(models, this.#cidrs, this.#range, this.#allocErrors, ro.standalone, new ShardedMap(stringHash));
      this.#saIndex = undefined;
      // from the API server allocate() reports its rejections first, then its warnings, each in Service order
      this.#allocRejects = this.#allocErrors.filter((e) => e.severity === 'error');
      this.#allocWarnings.clear();
      for (const e of this.#allocErrors) {
        if (e.severity === 'error') continue;
        let l = this.#allocWarnings.get(e.key);
        if (!l) this.#allocWarnings.set(e.key, l = []);
        l.push(e);
      }
      allocRerun = true;
    }
    const allocs = this.#allocs;
    this.#replaced.clear();

    if (nodeChanged) {
      // every entry is dropped: those of Services that remain are compiled again below (walked)
      this.#entries.clear();
      this.#byKey.clear();
      this.#dupKeys.clear();
      this.#retire();
      this.#list = [];
      this.#listKeys.length = 0;
      base = undefined; // every frontend is new
      this.#noLocal = zeroNoLocalCounts();
      this.#warnKeys.clear();
    }
    const walked = nodeChanged || allocRerun || this.#keyMismatch > 0;
    const keyCache = new Map<string, string>();
    const added: NodeFrontend[] = [], removed: NodeFrontend[] = [];
    // against nothing (a first compile, or every entry dropped for a new node signature): every
    // Service compiles, so its result and the incremental state are built directly, without the
    // per-Service bookkeeping of what it replaced (the general path below gives the same; a property
    // test compares them)
    const first = walked && this.#fastFirst && !this.#entries.size && !this.#byKey.size;
    let services: CompiledService[] | undefined;
    // the Services (snapshot keys) whose frontends are replaced
    const dirty = new Set<string>(first ? undefined : svcChanged);
    if (first) services = this.#compileAll(ro, allocs, keyCache, base ? added : undefined);
    else if (walked && !this.#entries.size) {
      for (const k of this.#svcKeys) dirty.add(k); // nothing to reuse
    } else if (walked) {
      for (const k of this.#svcKeys) {
        const e = this.#entries.get(k);
        const model = this.#svcs.get(k)!.model;
        const alloc = model ? allocs.get(model.key) : undefined;
        if (!model || !alloc) {
          if (e) dirty.add(k);
        } else if (!e || e.model !== model || e.epsVer !== (this.#groups.get(model.key)?.ver ?? 0) || !sameAlloc(e.alloc, alloc)) dirty.add(k);
      }
    } else {
      // every model key is its snapshot key, and nothing but these Services' slices changed
      for (const g of dirtyGroups) if (this.#svcs.has(g)) dirty.add(g);
    }

    // the dirty Services' entries before this compile
    let previous: Map<string, ServiceEntry> | undefined;
    if (!first) {
      previous = new Map<string, ServiceEntry>();
      for (const k of dirty) {
        const e = this.#entries.get(k);
        if (e) previous.set(k, e);
      }
      // the served frontend of each key a dirty Service had or has, before this compile: the delta
      const before = new Map<string, RawFrontend | undefined>();
      const byKey = this.#byKey;
      const touch = (key: string): RawFrontend[] | undefined => {
        const l = byKey.get(key);
        if (!before.has(key)) before.set(key, l?.[0]);
        return l;
      };
      for (const e of previous.values()) {
        for (const r of e.frontends) {
          const l = touch(r.key)!;
          l.splice(l.indexOf(r), 1);
          if (!l.length) byKey.delete(r.key);
        }
      }
      for (const k of dirty) {
        const old = previous.get(k);
        if (old) {
          addNoLocalCounts(this.#noLocal, old.noLocal, -1);
          this.#entries.delete(k);
        }
        this.#warnKeys.delete(k); // (small: the Services with warnings)
        const model = this.#svcs.get(k)?.model;
        const alloc = model ? allocs.get(model.key) : undefined;
        if (!model || !alloc) continue; // gone, rejected, headless, ExternalName, or rejected while allocating
        const entry = this.#newEntry(k, model, alloc, previous.get(k), ro, keyCache);
        for (const f of entry.frontends) {
          const l = touch(f.key);
          if (!l) byKey.set(f.key, [f]);
          else {
            let at = l.length;
            while (at > 0 && cmpRaw(f, l[at - 1]!) < 0) at--;
            l.splice(at, 0, f);
          }
        }
      }
      // the served frontend of a key changes only where a dirty Service had or has one: the delta,
      // and splices of the list (one sort instead when many keys changed)
      const list = this.#list, listKeys = this.#listKeys;
      const bulk = before.size > this.#mergeAt + (listKeys.length >> 4);
      const moved: string[] = [];
      for (const [key, was] of before) {
        const l = byKey.get(key);
        if (l && l.length > 1) this.#dupKeys.add(key);
        else this.#dupKeys.delete(key);
        const now = l?.[0];
        if (now === was) continue;
        if (was) removed.push(was.fe);
        if (now) added.push(now.fe);
        if (bulk) {
          moved.push(key);
          continue;
        }
        const at = lowerBound(listKeys, key);
        if (was && now) {
          this.#run.edits.push({ at, del: was.fe, ins: now.fe });
          list[at] = now.fe;
        } else if (was) {
          this.#run.edits.push({ at, del: was.fe, ins: undefined });
          listKeys.splice(at, 1);
          list.splice(at, 1);
        } else {
          this.#run.edits.push({ at, del: undefined, ins: now!.fe });
          listKeys.splice(at, 0, key);
          list.splice(at, 0, now!.fe);
        }
      }
      if (bulk) this.#mergeList(moved);
    }

    const errors: ObjectError[] = [];
    for (const k of [...this.#svcErrKeys].sort(byString)) for (const e of this.#svcs.get(k)!.errors) errors.push(e);
    for (const k of [...this.#sliceErrKeys].sort(byString)) for (const e of this.#slices.get(k)!.errors) errors.push(e);
    for (const e of this.#allocErrors) errors.push(e);
    // the list changes only with a Service, its allocation or the node: not with endpoints
    if (services) this.#services = ServiceList.of(services);
    else if (svcChanged.length && !walked && this.#servicesByKey && this.#services) {
      // the dirty Services' entries over the previous list, built when read (no walk of every Service)
      this.#services = this.#editServices(this.#services, dirty, previous!);
    }
    else if (walked || svcChanged.length || !this.#services) {
      const list: CompiledService[] = [];
      for (const k of this.#svcKeys) {
        const e = this.#entries.get(k);
        if (e) list.push(e.compiled);
      }
      this.#services = ServiceList.of(list);
    }
    // the list is in model key order where every model key is its snapshot key
    this.#servicesByKey = this.#keyMismatch === 0;
    for (const k of [...this.#warnKeys].sort(byString)) for (const w of this.#entries.get(k)!.warnings) errors.push(w);

    // among frontends with one key, the first Service by key wins
    for (const key of [...this.#dupKeys].sort(byString)) {
      const [served, ...rest] = this.#byKey.get(key)!;
      for (const r of rest) {
        if (served!.fe.service === r.fe.service) continue;
        errors.push({
          kind: 'Service', key: r.fe.service, field: '', severity: 'warning',
          message: `${r.fe.type} ${fmtAddr(r.fe.address, r.fe.port)}/${r.fe.protocol} (${r.fe.scope}) is already served for ${served!.fe.service}: ignored`,
        });
      }
    }
    // the state's own array (a consumer may keep the previous state): a copy, no walk
    const cap = 64 + (this.#list.length >> 8);
    if (this.#run.edits.length > cap || this.#pending.length > cap) this.#retire(false);
    const run = this.#run;
    const p: PendingList = { version: run.start + run.edits.length, run, arr: undefined };
    this.#pending.push(new WeakRef(p));
    const noLocalEndpoints = zeroNoLocalCounts();
    addNoLocalCounts(noLocalEndpoints, this.#noLocal, 1);
    const state = lazyState(this.#list.length, () => p.arr ?? (p.arr = this.#listAt(p)));
    if (base) recordStateDelta(state, base, added, removed);
    this.#dropFreshEps();
    const serviceList = this.#services;
    return { state, errors, get services() { return serviceList.list; }, serviceList, noLocalEndpoints };
  }

  /** #newEntry's scratch lists and counts (a Service's own, sized exactly, are copied from them) */
  readonly #fes: RawFrontend[] = [];
  readonly #warnings: ObjectError[] = [];
  readonly #noLocalScratch = zeroNoLocalCounts();

  /** One Service's entry (its frontends, warnings and counts), recorded; `prev` is the entry it replaces. */
  #newEntry(k: string, model: ServiceModel, alloc: Allocation, prev: ServiceEntry | undefined, ro: ResolvedOptions,
    keyCache: Map<string, string>): ServiceEntry {
    const g = this.#groups.get(model.key);
    // compiled into scratch lists, then kept as long as the Service: sized exactly, the shared empty
    // list and one shared zero count where there is nothing (most Services)
    const fes = this.#fes, warnings = this.#warnings, noLocal = this.#noLocalScratch;
    fes.length = 0;
    warnings.length = 0;
    noLocal.IPv4.internal = noLocal.IPv4.external = noLocal.IPv6.internal = noLocal.IPv6.external = 0;
    compileService(k, model, alloc, g && this.#endpointsOf(g), ro, warnings, fes, keyCache, noLocal);
    let counts = ZERO_NO_LOCAL;
    if (!isZeroNoLocal(noLocal)) addNoLocalCounts(counts = zeroNoLocalCounts(), noLocal, 1);
    const entry: ServiceEntry = {
      model, epsVer: g?.ver ?? 0, alloc, frontends: tight(fes), warnings: warnings.length ? warnings.slice() : NO_ERRORS, noLocal: counts,
      // kept when only endpoints changed, so the Service list need not be rebuilt
      compiled: prev && prev.model === model && sameAlloc(prev.alloc, alloc) ? prev.compiled
        : { service: model, clusterIPs: alloc.clusterIPs, nodePorts: alloc.nodePorts, healthCheckNodePort: alloc.healthCheckNodePort },
    };
    addNoLocalCounts(this.#noLocal, counts, 1);
    this.#entries.set(k, entry);
    if (entry.warnings.length) this.#warnKeys.add(k);
    return entry;
  }

  /**
   * Every Service compiled into an empty Compiler (no entries, no frontends): #byKey, #dupKeys and the
   * list built from one sort of all frontends. Returns the Service list; `added` gets every served
   * frontend (the delta against an empty base).
   */
  #compileAll(ro: ResolvedOptions, allocs: ReadonlyMap<string, Allocation>, keyCache: Map<string, string>,
    added: NodeFrontend[] | undefined): CompiledService[] {
    const all: RawFrontend[] = [];
    const services: CompiledService[] = [];
    for (const k of this.#svcKeys) {
      const model = this.#svcs.get(k)!.model;
      const alloc = model ? allocs.get(model.key) : undefined;
      if (!model || !alloc) continue; // rejected, headless, ExternalName, or rejected while allocating
      const entry = this.#newEntry(k, model, alloc, undefined, ro, keyCache);
      for (const f of entry.frontends) all.push(f);
      services.push(entry.compiled);
    }
    // cmpRaw's order: the Services came in key order and each one's frontends in emission order,
    // so a stable sort by frontend key
    all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.#retire();
    this.#dupKeys.clear();
    const list: NodeFrontend[] = [], listKeys = this.#listKeys;
    listKeys.length = 0;
    for (let i = 0; i < all.length;) {
      const key = all[i]!.key;
      let j = i + 1;
      while (j < all.length && all[j]!.key === key) j++;
      this.#byKey.set(key, all.slice(i, j));
      if (j - i > 1) this.#dupKeys.add(key);
      list.push(all[i]!.fe);
      listKeys.push(key);
      i = j;
    }
    this.#list = list;
    if (added) for (const f of list) added.push(f);
    return services;
  }

  /** The list a state was returned with: its run's list (#list while the run is current) with the later edits undone. */
  #listAt(p: PendingList): NodeFrontend[] {
    const run = p.run;
    const arr = (run.end ?? this.#list).slice();
    for (let i = run.edits.length - 1; i >= p.version - run.start; i--) {
      const { at, del, ins } = run.edits[i]!;
      if (del && ins) arr[at] = del;
      else if (del) arr.splice(at, 0, del);
      else arr.splice(at, 1);
    }
    return arr;
  }

  /**
   * Ends the current run: its states read its list as it is now from here on. `replaced`: the caller
   * replaces #list with a new array next and leaves this one as it is, which the run then keeps;
   * else (#list edited on) a copy, made once and only when a state of the run may still be read.
   * Each state still reachable used to get its own copy here: ~100-450 states of a run, every one a
   * copy of the list (at 30,000 Services 50 MiB and 11,000 page faults on one change in ~190,
   * 0.2-0.3 s of CPU; docs/perf-log.md, session 24, p24chg), as a WeakRef's target lives until a major GC.
   */
  #retire(replaced = true): void {
    const run = this.#run;
    let read = false;
    for (const r of this.#pending) {
      const p = r.deref();
      if (p && !p.arr) read = true;
    }
    if (read) run.end = replaced ? this.#list : this.#list.slice();
    this.#pending = [];
    this.#run = { start: run.start + run.edits.length, edits: [], end: undefined };
  }

  /**
   * The Service list after the `dirty` Services' entries were replaced (`previous`: their entries
   * before), as edits of the previous list. Only where every model key is its snapshot key (not
   * walked): the list is in model key order then. Past 1,024 + n edits since the last built list,
   * the next list's base is built in steps of ~2,000 + n / 128 elements, one per Service change
   * (RunBuild: ~40 changes at 10,000 Services, ~700 at 100,000), and the edits after it start a
   * new run from it: a run's log, and the merge a read makes, stay within ~the list's size, and no
   * change pays for a whole list (5-6 ms at 10,000 Services, 30 at 100,000, built at once).
   */
  #editServices(prev: ServiceList, dirty: ReadonlySet<string>, previous: ReadonlyMap<string, ServiceEntry>): ServiceList {
    const edits = new Map<string, CompiledService | undefined>();
    const removed: CompiledService[] = [], added: CompiledService[] = [];
    for (const k of dirty) {
      const was = previous.get(k)?.compiled, now = this.#entries.get(k)?.compiled;
      if (was === now) continue; // its endpoints alone changed (or it was in no list and is in none)
      edits.set(k, now);
      if (was) removed.push(was);
      if (now) added.push(now);
    }
    if (!edits.size) return prev;
    const bound = this.#serviceRun + this.#svcKeys.length;
    return ServiceList.edit(prev, edits, removed, added, bound, this.#serviceStep ?? 2048 + (bound >> 7));
  }

  /** #list and #listKeys after the served frontend of the `moved` keys changed (#byKey has the new ones): one merge. */
  #mergeList(moved: readonly string[]): void {
    this.#retire();
    const byKey = this.#byKey, keys = this.#listKeys, old = this.#list, list: NodeFrontend[] = [];
    const ch = [...moved].sort(byString);
    const outKeys: string[] = [];
    let i = 0;
    for (const k of ch) {
      while (i < keys.length && keys[i]! < k) {
        outKeys.push(keys[i]!);
        list.push(old[i++]!);
      }
      if (keys[i] === k) i++;
      const l = byKey.get(k);
      if (l) {
        outKeys.push(k);
        list.push(l[0]!.fe);
      }
    }
    while (i < keys.length) {
      outKeys.push(keys[i]!);
      list.push(old[i++]!);
    }
    keys.length = outKeys.length;
    for (let j = 0; j < outKeys.length; j++) keys[j] = outKeys[j]!;
    this.#list = list;
  }

  /** #list and #listKeys from #byKey: every key's served frontend, in key order. */
  #rebuildList(): void {
    this.#retire();
    const keys = [...this.#byKey.keys()].sort(byString);
    this.#listKeys.length = 0;
    for (const k of keys) this.#listKeys.push(k);
    this.#list = keys.map((k) => this.#byKey.get(k)![0]!.fe);
  }

  /** This node's model; the last Node object of that name wins, as a Map by name would keep it. */
  /**
   * detectLocalMode NodeCIDR: the sources the data plane takes for the cluster's pods, the first pod
   * CIDR of each family of this node as of the last compile ([] before its Node is seen, or in other modes).
   */
  localSourceCidrs(): string[] {
    return this.#opts.detectLocalNodeCidr ? nodeLocalCidrs(this.#node) : [];
  }

  #thisNode(nodes: ReadonlyMap<string, unknown>): NodeModel | undefined {
    let found: NodeModel | undefined;
    for (const [key, raw] of nodes) {
      let model: NodeModel | null;
      const hit = typeof raw === 'object' && raw !== null ? this.#nodeCache.get(raw) : undefined;
      if (hit && hit.key === key) model = hit.model;
      else {
        model = normalizeNode(raw, key);
        if (typeof raw === 'object' && raw !== null) this.#nodeCache.set(raw, { key, model });
      }
      if (model && model.name === this.#opts.nodeName) found = model;
    }
    return found;
  }

  /**
   * Updates the allocations after the changed Services, when that can be done without rerunning
   * allocate() over every Service. First, a change that touches nothing allocate() reads.
   * Then, from the API server a Service's allocation is its own clusterIPs and nodePorts unless an
   * earlier Service claims one of them. So when neither the old nor the new version of any changed
   * Service shares a claim with another Service, no other Service's allocation moves and each
   * changed one gets what allocate() gives it alone. Returns false, changing nothing, otherwise.
   * In standalone mode, #allocateStandalone.
   */
  #allocateLocally(changed: readonly string[], standalone: boolean): boolean {
    if (!this.#replacedValid) return false;
    // a change allocate() does not read (labels, selector, affinity, external IPs...) moves nothing
    if (changed.every((k) => {
      const old = this.#replaced.get(k), now = this.#svcs.get(k)?.model;
      return old && now && allocationInputs(old) === allocationInputs(now);
    })) return true;
    if (this.#keyMismatch > 0) return false;
    if (standalone) return this.#allocateStandalone(changed);
    // counted from the first time they are needed (a first sync has no use for them), then kept current
    const counts = this.#claims ??= this.#countClaims();
    // the counts are of the new state; the old one had the changed Services' old claims instead of their new ones
    const delta = new Map<string, number>();
    for (const k of changed) {
      for (const c of claims(this.#replaced.get(k))) delta.set(c, (delta.get(c) ?? 0) + 1);
      for (const c of claims(this.#svcs.get(k)?.model)) {
        if (counts.get(c) !== 1) return false;
        delta.set(c, (delta.get(c) ?? 0) - 1);
      }
    }
    for (const k of changed) {
      for (const c of claims(this.#replaced.get(k))) if ((counts.get(c) ?? 0) + delta.get(c)! !== 1) return false;
    }
    const solo = new Map<string, { alloc: Allocation | undefined; errors: ObjectError[] }>();
    for (const k of changed) {
      const model = this.#svcs.get(k)?.model;
      const errors: ObjectError[] = [];
      const alloc = model ? allocate([model], this.#cidrs, this.#range, errors, false).get(model.key) : undefined;
      if (errors.some((e) => e.severity === 'error')) return false;
      solo.set(k, { alloc, errors });
    }
    this.#takeSolo(solo);
    return true;
  }

  /** Services allocated alone (a full run would move no other): their allocations and warnings taken in */
  #takeSolo(solo: ReadonlyMap<string, { alloc: Allocation | undefined; errors: ObjectError[] }>): void {
    for (const [k, { alloc, errors }] of solo) {
      this.#allocs!.delete(k);
      if (alloc) this.#allocs!.set(k, alloc);
      this.#allocWarnings.delete(k);
      if (errors.length) this.#allocWarnings.set(k, errors);
    }
    this.#allocErrors = [...this.#allocRejects];
    for (const k of [...this.#allocWarnings.keys()].sort(byString)) for (const e of this.#allocWarnings.get(k)!) this.#allocErrors.push(e);
  }

  /**
   * Counts now what the first Service change after a first compile would count first: how many
   * Services claim each clusterIP and nodePort (#allocateLocally's; a walk of every Service, ~10 ms
   * of a first Service change at 10,000). The agent calls it in its warm-up after the first sync.
   */
  prepare(): void {
    if (!this.#allocs) return;
    if (this.#opts.standalone) this.#saIndex ??= this.#indexAllocations();
    else this.#claims ??= this.#countClaims();
  }

  /**
   * Standalone: the changed Services allocated against every other Service's addresses and ports, as
   * allocate() over every Service (in Service order: what each names itself first, then what is
   * missing, drawn by hash with linear probing) would give them, when that can be shown from the
   * index of who holds what (SaIndex): a slot a changed Service leaves was probed past by no other
   * allocation (which would move into it), a slot it names is held by no other Service, and each
   * slot its own allocation probed past is one a full run would find taken at its turn (named by
   * any Service, or allocated to one earlier in order). Then no other Service's allocation moves.
   * Else false (the caller reruns allocate() over every Service, and the index is rebuilt when next
   * needed). A walk of every Service was a Service created or deleted in standalone mode: ~27 ms of
   * compile at 10,000 Services (docs/perf-log.md, session 27, p27tail).
   */
  #allocateStandalone(changed: readonly string[]): boolean {
    // a Service rejected for a clash may get what a change frees: left to a full run
    if (this.#allocRejects.length) return false;
    // (built here: of the allocations before this change, the changed Services' old models)
    const idx = this.#saIndex ??= this.#indexAllocations(this.#replaced);
    if (!idx) return false;
    const drop = (): false => {
      this.#saIndex = undefined;
      return false;
    };
    const holders = (slot: string | number): Map<string | number, string> => (typeof slot === 'string' ? idx.ips : idx.ports) as Map<string | number, string>;
    // 1. what the changed Services held before, freed (their own probes first: they allocate again below)
    for (const k of changed) {
      const sk = idx.skippedOf.get(k);
      if (!sk) continue;
      for (const slot of sk) {
        const n = idx.skippedBy.get(slot)! - 1;
        if (n) idx.skippedBy.set(slot, n);
        else idx.skippedBy.delete(slot);
      }
      idx.skippedOf.delete(k);
    }
    for (const k of changed) {
      const a = this.#allocs!.get(k);
      if (!a) continue;
      for (const slot of new Set(allocationSlots(a))) {
        const m = holders(slot);
        // another Service's allocation probed past it: a full run would move that one into it
        if (m.get(slot) !== k || idx.skippedBy.get(slot)) return drop();
        m.delete(slot);
      }
    }
    // 2. what they name themselves, before any allocation (allocate()'s first pass)
    const order = [...changed].sort(byString);
    const models: ServiceModel[] = [];
    for (const k of order) {
      const m = this.#svcs.get(k)?.model;
      if (!m || m.headless || m.type === 'ExternalName') continue;
      for (const slot of namedSlots(m)) {
        const h = holders(slot).get(slot);
        if (h !== undefined && h !== k) return drop();
        holders(slot).set(slot, k);
      }
      models.push(m);
    }
    // 3. what is missing, in Service order, against every slot held
    let cur = '', bad = false;
    const skipped: (string | number)[] = [];
    const used = {
      ips: { has: (x: string) => idx.ips.has(x), add: (x: string) => idx.ips.set(x, cur), get size() { return idx.ips.size; } } satisfies UsedSet<string>,
      ports: { has: (x: number) => idx.ports.has(x), add: (x: number) => idx.ports.set(x, cur), get size() { return idx.ports.size; } } satisfies UsedSet<number>,
    };
    const trace: AllocTrace = {
      took: () => {},
      skipped: (key, slot) => {
        const h = holders(slot).get(slot);
        // taken at this Service's turn in a full run: named by any Service, or allocated to an earlier one
        if (h === undefined || h === '' || (h > key && !namedSlots(this.#svcs.get(h)?.model).includes(slot))) bad = true;
        skipped.push(slot);
      },
    };
    const solo = new Map<string, { alloc: Allocation | undefined; errors: ObjectError[] }>();
    for (const k of order) solo.set(k, { alloc: undefined, errors: [] });
    for (const m of models) {
      cur = m.key;
      skipped.length = 0;
      const errors: ObjectError[] = [];
      const alloc = allocate([m], this.#cidrs, this.#range, errors, true, new Map(), used, trace).get(m.key);
      if (bad || errors.some((e) => e.severity === 'error')) return drop();
      if (skipped.length) {
        idx.skippedOf.set(m.key, [...skipped]);
        for (const slot of skipped) idx.skippedBy.set(slot, (idx.skippedBy.get(slot) ?? 0) + 1);
      }
      solo.set(m.key, { alloc, errors });
    }
    this.#takeSolo(solo);
    return true;
  }

  /**
   * Standalone: who holds each address and port, from a rerun of allocate() over every Service
   * (undefined when it rejects any); with `before` (the changed Services' previous models, null
   * for one that did not exist), as the allocations were before that change.
   */
  #indexAllocations(before?: ReadonlyMap<string, ServiceModel | null>): SaIndex | undefined {
    const keys = this.#svcKeys;
    if (before?.size) {
      // the keys before the change: the deleted ones back in order (few: a change's), the created ones out
      const gone = [...before.keys()].filter((k) => !this.#svcs.has(k)).sort(byString);
      if (gone.length) {
        const all: string[] = [];
        let g = 0;
        for (const k of keys) {
          while (g < gone.length && gone[g]! < k) all.push(gone[g++]!);
          all.push(k);
        }
        while (g < gone.length) all.push(gone[g++]!);
        return this.#indexOf(all, before);
      }
    }
    return this.#indexOf(keys, before);
  }

  #indexOf(keys: readonly string[], before: ReadonlyMap<string, ServiceModel | null> | undefined): SaIndex | undefined {
    const models: ServiceModel[] = [];
    for (const k of keys) {
      const m = before?.has(k) ? before.get(k) : this.#svcs.get(k)!.model;
      if (m) models.push(m);
    }
    const idx: SaIndex = { ips: new ShardedMap(stringHash), ports: new Map(), skippedBy: new Map(), skippedOf: new Map() };
    const holders = (slot: string | number): Map<string | number, string> => (typeof slot === 'string' ? idx.ips : idx.ports) as Map<string | number, string>;
    const errors: ObjectError[] = [];
    allocate(models, this.#cidrs, this.#range, errors, true, new Map(), undefined, {
      took: (key, slot) => {
        const m = holders(slot), h = m.get(slot);
        // held twice (one nodePort for TCP and UDP of two Services, a shared healthCheckNodePort): '', which no change may touch
        m.set(slot, h === undefined || h === key ? key : '');
      },
      skipped: (key, slot) => {
        idx.skippedBy.set(slot, (idx.skippedBy.get(slot) ?? 0) + 1);
        let l = idx.skippedOf.get(key);
        if (!l) idx.skippedOf.set(key, l = []);
        l.push(slot);
      },
    });
    return errors.some((e) => e.severity === 'error') ? undefined : idx;
  }

  #countClaims(): Map<string, number> {
    // in shards: a Service created claims a fresh clusterIP, and V8 copies a whole Map's table every
    // ~(capacity - n) fresh keys, on the one change that makes that insert (util/sharded-map.ts)
    const counts: Map<string, number> = new ShardedMap(stringHash);
    for (const r of this.#svcs.values()) for (const c of claims(r.model)) counts.set(c, (counts.get(c) ?? 0) + 1);
    return counts;
  }

  /** #syncServices against no previous Service: every one is new. */
  #readServices(next: ReadonlyMap<string, unknown>): string[] {
    const keys: string[] = [];
    this.#replaced.clear();
    this.#replacedValid = false;
    for (const [k, raw] of next) {
      const errors: ObjectError[] = [];
      this.#putService(k, raw, normalizeService(raw, k, errors), errors);
      keys.push(k);
    }
    // every key is new and none is there twice (a Map's keys): #svcKeys (empty, as #svcs was) is
    // theirs, sorted; no merge (a Set of them all, and a lookup of each)
    const sorted = this.#svcKeys;
    sorted.length = 0;
    for (const k of keys) sorted.push(k);
    sorted.sort(byString);
    return keys;
  }

  /** Re-normalizes the Services whose object changed; returns their snapshot keys (removed ones too). */
  #syncServices(next: ReadonlyMap<string, unknown>, hint: ReadonlySet<string> | undefined): string[] {
    if (!this.#svcs.size && this.#fastFirst) return this.#readServices(next);
    const found: Found<ServiceRecord>[] = [];
    diffKeys(next, this.#svcs, found, hint);
    // a new object that normalizes to what the old one did (a manifests file re-read for its
    // EndpointSlice, an informer's resync) is no change: kube-proxy's ServiceChangeTracker.Update
    // drops a change whose previous and current ServicePortMaps are equal. Kept, its model stays the
    // same object, so neither its frontends nor the Service list are rebuilt.
    const normalized = new Map<string, { model: ServiceModel | null; errors: ObjectError[] }>();
    const changed: Found<ServiceRecord>[] = [];
    for (const f of found) {
      const { key: k, old, raw } = f;
      if (!old || f.gone) {
        changed.push(f);
        continue;
      }
      const errors: ObjectError[] = [];
      const model = normalizeService(raw, k, errors);
      if (old.model && model && sameModel(old, model, errors)) {
        this.#svcs.set(k, { raw, model: old.model, errors: old.errors });
        continue;
      }
      normalized.set(k, { model, errors });
      changed.push(f);
    }
    this.#replaced.clear();
    // the old models matter only to #allocateLocally (not tried by a first compile), and are
    // dropped once it ran: a step of a first list's compile, many Services added, takes that way too
    this.#replacedValid = this.#allocs !== undefined;
    const keys: string[] = [];
    for (const { key: k, old, raw, gone } of changed) {
      keys.push(k);
      if (this.#replacedValid) this.#replaced.set(k, old?.model ?? null);
      if (old?.model && old.model.key !== k) this.#keyMismatch--;
      if (this.#claims) {
        for (const c of claims(old?.model)) {
          const n = this.#claims.get(c)! - 1;
          if (n) this.#claims.set(c, n);
          else this.#claims.delete(c);
        }
      }
      if (old?.errors.length) this.#svcErrKeys.delete(k);
      if (gone) {
        this.#svcs.delete(k);
        continue;
      }
      const done = normalized.get(k);
      const errors: ObjectError[] = done?.errors ?? [];
      this.#putService(k, raw, done ? done.model : normalizeService(raw, k, errors), errors);
    }
    updateSortedKeys(this.#svcKeys, this.#svcs, keys, this.#mergeAt);
    return keys;
  }

  /** A Service's new record, and what is counted of it (a model under another key, its claims, its errors). */
  #putService(k: string, raw: unknown, model: ServiceModel | null, errors: ObjectError[]): void {
    this.#svcs.set(k, { raw, model, errors: errors.length ? errors : NO_ERRORS });
    if (model && model.key !== k) this.#keyMismatch++;
    if (this.#claims) for (const c of claims(model)) this.#claims.set(c, (this.#claims.get(c) ?? 0) + 1);
    if (errors.length) this.#svcErrKeys.add(k);
  }

  /**
   * Re-normalizes the slices whose object changed and rebuilds the endpoints of their Services (kept
   * for this compile only, #freshEps); returns those Service keys.
   */
  #syncSlices(next: ReadonlyMap<string, unknown>, hint: ReadonlySet<string> | undefined): Iterable<string> {
    const changed: Found<SliceRecord>[] = [];
    diffKeys(next, this.#slices, changed, hint);
    // no slice before (a first compile): every group is made here and is dirty, so the groups are
    // walked, not collected as well (no group without a slice is kept: none before either); else
    // the dirty groups by Service key, each looked up once
    const dirty = this.#slices.size ? new Map<string, Group>() : undefined;
    // many slices at once (a first sync, a relist of a big cluster): their endpoints are not kept
    // from here to their Service's compile, which normalizes them again (pure: the same endpoints)
    // and drops them after it. Kept, a first compile at 100,000 Services held a million EndpointModels at once (~110 MiB
    // of its peak), each promoted by the scavenges in between before it died.
    const normalized = changed.length <= this.#bulkSlices ? new Map<string, NormalizedSlice>() : undefined;
    this.#dropFreshEps();
    for (const { key: k, old, raw, gone } of changed) {
      if (old?.group) {
        const g = dirty!.get(old.group) ?? this.#groups.get(old.group)!;
        g.keys.splice(g.keys.indexOf(k), 1);
        dirty!.set(old.group, g);
      }
      if (old?.errors.length) this.#sliceErrKeys.delete(k);
      if (gone) {
        this.#slices.delete(k);
        continue;
      }
      const errors: ObjectError[] = [];
      // in bulk, the endpoints are built when the Service compiles (#mergeSlices): not twice
      const slice = normalizeEndpointSlice(raw, k, errors, false, normalized !== undefined);
      // FQDN slices and slices of no Service feed nothing (kube-proxy ignores them)
      const group = slice && slice.serviceKey && slice.family !== 0 ? slice.serviceKey : '';
      this.#slices.set(k, { raw, errors: errors.length ? errors : NO_ERRORS, group });
      if (errors.length) this.#sliceErrKeys.add(k);
      if (group) {
        let g = dirty?.get(group) ?? this.#groups.get(group);
        // a group's keys sized exactly: an array grown by push from [] keeps 17 slots (~130 bytes
        // more a Service, kept: most groups have one slice); several are made tight below
        if (!g) this.#groups.set(group, g = { keys: [k], ver: 0, eps: undefined });
        else g.keys.push(k);
        dirty?.set(group, g);
        normalized?.set(k, slice!);
      }
    }
    for (const [name, g] of dirty ?? this.#groups) {
      if (!g.keys.length) {
        this.#groups.delete(name);
        continue;
      }
      g.ver = ++this.#groupVer;
      if (g.keys.length > 1) {
        g.keys.sort(byString);
        g.keys = tight(g.keys);
      }
      if (!normalized) continue;
      g.eps = this.#mergeSlices(g.keys, normalized);
      this.#freshGroups.push(g);
    }
    return (dirty ?? this.#groups).keys();
  }

  /**
   * A Service's endpoints from its slices: the slices normalized in this compile where at hand, the
   * others normalized again from their objects (pure: the same endpoints as when they were read; their
   * problems were reported then).
   */
  #mergeSlices(keys: readonly string[], normalized: ReadonlyMap<string, NormalizedSlice> | undefined): ServiceEndpoints {
    // kube-proxy merges a Service's slices in slice-name order; the order only matters for duplicates
    const se: ServiceEndpoints = { v4: [], v6: [] };
    for (const k of keys) {
      const sl = normalized?.get(k) ?? normalizeEndpointSlice(this.#slices.get(k)!.raw, k, [])!;
      const list = sl.family === 4 ? se.v4 : se.v6;
      if (keys.length === 1) {
        if (sl.family === 4) se.v4 = sl.endpoints;
        else se.v6 = sl.endpoints;
      } else for (const e of sl.endpoints) list.push(e);
    }
    return se;
  }

  /** A group's endpoints for this compile. */
  #endpointsOf(g: Group): ServiceEndpoints {
    return g.eps ?? this.#mergeSlices(g.keys, undefined);
  }

  #dropFreshEps(): void {
    for (const g of this.#freshGroups) g.eps = undefined;
    this.#freshGroups = [];
  }
}

/** One edit of the Compiler's list at `at`: a frontend replaced (both), removed (del) or inserted (ins). */
interface ListEdit { at: number; del: NodeFrontend | undefined; ins: NodeFrontend | undefined }
/** A returned state's place in the log, and its array once built. */
/** A run of #list's edits from a version on; `end`: the list after them, once a later run began. */
interface LogRun { start: number; edits: ListEdit[]; end: NodeFrontend[] | undefined }
/** A returned state's list: its version, its run, and its own array once read. */
interface PendingList { version: number; run: LogRun; arr: NodeFrontend[] | undefined }

/** The first pod CIDR of each family of a Node, IPv4 first (kube-proxy's getLocalDetectors for NodeCIDR). */
function nodeLocalCidrs(node: NodeModel | undefined): string[] {
  const out: string[] = [];
  for (const f of [4, 6] as const) {
    const c = node?.podCIDRs?.find((x) => ipFamily(x.slice(0, x.indexOf('/'))) === f);
    if (c) out.push(c);
  }
  return out;
}
