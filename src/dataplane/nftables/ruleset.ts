// Plan -> nftables, pure: what the table holds for a plan, and the commands (one transaction) that
// take it from one plan to the next. No I/O; dataplane.ts sends the text.
//
// The table's shape: few chains, large maps. Cost follows the number of chains and
// rules far more than the number of elements (FALLBACKS.md: a chain per Service and per endpoint
// loads 10,000 Services in 16-32 s here; maps load them in a fraction of a second), so nothing here
// is per Service:
//
//   dispatch  services-<D>   vmap  [address .] proto . port -> goto pick-<D>-<K>[-a<T>] | goto no-endpoints
//   choice    pick-<D>-<K>   numgen random mod K vmap { j : goto sel-<D>-<j> }
//   DNAT      sel-<D>-<j>    dnat to [address .] proto . port map @backends-<D>-<j>
//
// D is a dispatch class: scope (int/ext) x family (4/6) x exact address or any local address (np).
// A frontend with K backends is one element in services-<D> and one in each backends-<D>-<j>, j < K.
// Chains exist per distinct K (and affinity timeout T) in use, not per Service: a 10,000-Service
// cluster has a few dozen. Why not the plan's Maglev tables: M >= 251 slots per frontend (1,601 at 10
// backends) would make 16 M map elements at 10,000 Services; K elements per frontend is what a
// random choice needs.
//
// Masquerade (kube-proxy's mark-for-masquerade): masq-<D> and masq-offcluster-<D> hold the tuples of
// frontends whose flows are marked always or when the local detector says "not from the pods", and
// masq-fromhost-<D> (internal classes) those whose flows from a local source address are (an eTP=Local
// external address: the node's own flows); the rules before each services-<D> lookup mark,
// postrouting's masquerading chain masquerades.
//
// Affinity (ClientIP): a dynamic set per index, aff-<D>-<j>, of (client . frontend) with the Service's
// timeout; pick-<D>-<K>-a<T> sends a client found in aff-<D>-<j> (j < K) to asel-<D>-<T>-<j>, which
// refreshes the entry and DNATs to backend j. Backends keep their index while they stay; a removed
// backend's index is taken by the last one (swap-remove), so one change rewrites at most two elements
// per frontend, and a client whose affinity named the removed backend moves to a live one: a removed
// backend is never chosen again.
import type { Plan, PlanBackend, PlanFrontend } from '../../plan/types.js';
import { addrType, chain, FAMILIES, firewallElements, helperDeclarations, hex, HELPER_SETS, ipk, MASQ_MARK, notLocalMatch, type Fam, type LocalDetector } from './helpers.js';

/** Maximum clients remembered per affinity set (per backend index of a dispatch class). */
export const AFFINITY_SET_SIZE = 1 << 20;

export type ScopeTag = 'int' | 'ext';

/** A dispatch class. */
export interface DClass {
  scope: ScopeTag;
  fam: Fam;
  /** NodePorts on any local address (0.0.0.0 / ::): keyed by proto . port behind `fib daddr type local` */
  any: boolean;
  /** dname(), kept on the classes' own objects (classOf) */
  readonly name?: string;
}

export function dname(d: DClass): string {
  return d.name ?? `${d.scope}${d.fam}${d.any ? 'np' : ''}`;
}

const DCLASSES: DClass[] = [];
for (const scope of ['int', 'ext'] as const) {
  for (const fam of FAMILIES) for (const any of [false, true]) DCLASSES.push({ scope, fam, any, name: `${scope}${fam}${any ? 'np' : ''}` });
}

/** The one DClass object per class (records share it: no object per frontend) and its dispatch map's name. */
function classOf(scope: ScopeTag, fam: Fam, any: boolean): DClass {
  return DCLASSES[(scope === 'int' ? 0 : 4) + (fam === 4 ? 0 : 2) + (any ? 1 : 0)]!;
}
const SERVICES_MAP = new Map<DClass, string>();

function keyExpr(d: DClass): string {
  return d.any ? 'meta l4proto . th dport' : `${ipk(d.fam)} daddr . meta l4proto . th dport`;
}

function keyType(d: DClass): string {
  return d.any ? 'inet_proto . inet_service' : `${addrType(d.fam)} . inet_proto . inet_service`;
}

/** What the table holds for one frontend. */
export interface FeRec {
  key: string;
  d: DClass;
  /** element key text: [address .] proto . port */
  tuple: string;
  /**
   * backend ids in index order (index j is backends-<D>-<j>); an id names one address and port for
   * as long as it exists (PlanBackend), so ids compare where the element values would
   */
  order: number[];
  affinity: number;
  /**
   * new flows marked for masquerade (PlanFrontend.masquerade): 'all' every one (masqueradeAll on a
   * clusterIP; an eTP=Cluster external address), 'offCluster' those the local detector does not
   * place in the cluster's pods, 'fromHost' those from a local source address (the node itself) to an
   * eTP=Local Service's external address
   */
  masq: 'all' | 'offCluster' | 'fromHost' | undefined;
  ranges: string[];
  /** no backend because a Local policy has none here: drop, not no-endpoints' reject (kube-proxy) */
  drop: boolean;
}

const NO_RANGES: string[] = [];
const PROTO: Record<string, string> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

function isAny(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || address === '::ffff:0.0.0.0';
}

function famOf(address: string): Fam {
  return address.includes(':') && !address.startsWith('::ffff:') ? 6 : 4;
}

function plainV4(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * The internal frontend of an eTP=Local Service's external address (compile's short-circuit to the
 * cluster-wide endpoints for pods and the node): kube-proxy's external chain marks the node's own flows
 * to it for masquerade (syncProxyRules: `fib saddr type local jump mark-for-masquerade`, "masquerade
 * local traffic": their source may be the LB IP itself, which a remote endpoint cannot answer).
 */
function isShortCircuit(f: PlanFrontend): boolean {
  return f.scope === 'internal' && f.type !== 'ClusterIP';
}

export function protoText(p: string): string {
  return p.toLowerCase();
}

/** The backends that take new connections, as the plan's table has them (KEP-1669 already applied). */
export function membersOf(plan: Plan, f: PlanFrontend): number[] {
  if (!f.tableId) return [];
  const t = plan.tables.get(f.tableId);
  if (t) return t.members;
  // a table the plan lacks: fall back to the non-terminating backends, or all when none is left
  const term = new Set(f.terminatingIds);
  const ready = f.backendIds.filter((id) => !term.has(id));
  return ready.length ? ready : f.backendIds;
}

/**
 * Index order after a change: staying backends keep their index, a removed one's index goes to the
 * last one, new ones are appended in the plan's order.
 */
export function nextOrder(old: readonly number[] | undefined, members: readonly number[]): number[] {
  if (!old) return [...members];
  const want = new Set(members);
  const out = [...old];
  for (let i = 0; i < out.length;) {
    if (want.has(out[i]!)) {
      i++;
      continue;
    }
    out[i] = out[out.length - 1]!;
    out.pop();
  }
  const have = new Set(out);
  for (const id of members) if (!have.has(id)) out.push(id);
  return out;
}

/** "address . port" of each backend id, for one plan() call (a backend serves many frontends) */
type TargetCache = Map<number, string>;

/** The backends-<D>-<j> element value of a backend: "address . port". */
function targetOf(backends: ReadonlyMap<number, PlanBackend>, id: number, f: FeRec, cache?: TargetCache): string {
  let t = cache?.get(id);
  if (t === undefined) {
    const b = backends.get(id);
    if (!b) throw new Error(`frontend ${f.key} names backend ${id}, which the plan lacks`);
    t = plainV4(b.address) + ' . ' + b.port;
    cache?.set(id, t);
  }
  return t;
}

export function feRec(plan: Plan, f: PlanFrontend, oldOrder: readonly number[] | undefined, key?: string): FeRec {
  const fam = famOf(f.address);
  const any = isAny(f.address);
  const d = classOf(f.scope === 'internal' ? 'int' : 'ext', fam, any);
  const proto = PROTO[f.protocol] ?? protoText(f.protocol);
  const tuple = any ? proto + ' . ' + f.port : plainV4(f.address) + ' . ' + proto + ' . ' + f.port;
  const members = membersOf(plan, f);
  const order = oldOrder ? nextOrder(oldOrder, members) : members.slice();
  // a plan without the field (a state file of an older agent): snatRemote is eTP=Cluster's 'all'
  let masq: FeRec['masq'] = f.masquerade ?? (f.snatRemote && d.scope === 'ext' ? 'all' : undefined);
  if (!masq && isShortCircuit(f)) masq = 'fromHost';
  // one shape for every record (no optional fields): a full sync makes one per frontend
  return {
    key: key ?? `${f.address}|${f.port}|${f.protocol}|${f.scope}`, d, tuple, order,
    affinity: f.affinityTimeout, masq, ranges: any || !f.sourceRanges.length ? NO_RANGES : f.sourceRanges,
    drop: !!f.dropNoLocal && order.length === 0,
  };
}

// ---- objects and elements of a record -----------------------------------------------------------

interface ObjDef {
  /** 0: maps and sets, 1: DNAT chains, 2: choice chains (created in this order, deleted in reverse) */
  level: 0 | 1 | 2;
  kind: 'map' | 'set' | 'chain';
  create: string;
}

function pickName(r: FeRec): string {
  const k = r.order.length;
  return r.affinity ? `pick-${dname(r.d)}-${k}-a${r.affinity}` : `pick-${dname(r.d)}-${k}`;
}

function selName(d: DClass, j: number, affinity: number): string {
  return affinity ? `asel-${dname(d)}-${affinity}-${j}` : `sel-${dname(d)}-${j}`;
}

export function backendsMap(d: DClass, j: number): string {
  return `backends-${dname(d)}-${j}`;
}

export function affinitySet(d: DClass, j: number): string {
  return `aff-${dname(d)}-${j}`;
}

export function servicesMap(d: DClass): string {
  return `services-${dname(d)}`;
}

/** frontends whose every new flow is masqueraded */
export function masqSet(d: DClass): string {
  return `masq-${dname(d)}`;
}

/** frontends whose new flows from a local source address (the node itself) are masqueraded */
export function fromHostSet(d: DClass): string {
  return `masq-fromhost-${dname(d)}`;
}

/** frontends whose new flows from outside the cluster's pods are masqueraded */
export function offClusterSet(d: DClass): string {
  return `masq-offcluster-${dname(d)}`;
}

/** Object definitions by name: a name fixes its text, so each is built once per process. */
const DEFS = new Map<string, ObjDef>();

function def(name: string, build: () => ObjDef): string {
  if (!DEFS.has(name)) DEFS.set(name, build());
  return name;
}

export function objectDef(name: string): ObjDef {
  return DEFS.get(name)!;
}

/** The on-demand objects a record needs, by name (their definitions in DEFS). */
function objectsOf(r: FeRec, out: Set<string>): void {
  const k = r.order.length;
  if (k === 0) return;
  const d = r.d, T = r.affinity, p = ipk(d.fam);
  const kx = keyExpr(d);
  for (let j = 0; j < k; j++) {
    const bm = backendsMap(d, j);
    out.add(def(bm, () => ({ level: 0, kind: 'map', create: `map ${bm} { type ${keyType(d)} : ${addrType(d.fam)} . inet_service; }` })));
    const dnat = `dnat ${p} to ${kx} map @${bm}`;
    if (T) {
      const as = affinitySet(d, j);
      out.add(def(as, () => ({ level: 0, kind: 'set', create: `set ${as} { type ${addrType(d.fam)} . ${keyType(d)}; flags dynamic,timeout; size ${AFFINITY_SET_SIZE}; }` })));
      const sn = selName(d, j, T);
      out.add(def(sn, () => ({ level: 1, kind: 'chain', create: chain(sn, [`update @${as} { ${p} saddr . ${kx} timeout ${T}s }`, dnat]) })));
    } else {
      const sn = selName(d, j, 0);
      out.add(def(sn, () => ({ level: 1, kind: 'chain', create: chain(sn, [dnat]) })));
    }
  }
  const pn = pickName(r);
  out.add(def(pn, () => {
    const rules: string[] = [];
    if (T) for (let j = 0; j < k; j++) rules.push(`${p} saddr . ${kx} @${affinitySet(d, j)} goto ${selName(d, j, T)}`);
    rules.push(`numgen random mod ${k} vmap { ${Array.from({ length: k }, (_, j) => `${j} : goto ${selName(d, j, T)}`).join(', ')} }`);
    return { level: 2, kind: 'chain', create: chain(pn, rules) };
  }));
}

const HAIRPIN4 = HELPER_SETS.hairpin(4);
const HAIRPIN6 = HELPER_SETS.hairpin(6);

/** The on-demand objects of a record, by its signature (class, K, T): computed once per signature. */
const SIGS = new Map<string, string[]>();

function signature(r: FeRec): string {
  return `${dname(r.d)}|${r.order.length}|${r.affinity}`;
}

function objectsBySig(sig: string, r: FeRec): string[] {
  let names = SIGS.get(sig);
  if (!names) {
    const set = new Set<string>();
    objectsOf(r, set);
    SIGS.set(sig, names = [...set]);
  }
  return names;
}

/** backends-<D>-<j> by class name and j, built once */
const BACKEND_MAPS = new Map<string, string[]>();

function backendsMapName(d: DClass, j: number): string {
  const n = dname(d);
  let a = BACKEND_MAPS.get(n);
  if (!a) BACKEND_MAPS.set(n, a = []);
  return (a[j] ??= backendsMap(d, j));
}

function servicesMapName(d: DClass): string {
  let n = SERVICES_MAP.get(d);
  if (n === undefined) SERVICES_MAP.set(d, n = servicesMap(d));
  return n;
}

/** "goto pick-..." by class and signature (K, T): one string per signature, not per record */
const VERDICTS = new Map<DClass, Map<number, string>>();

/** A number for (K, T) within a class: T is at most 86,400 s (a day, the API's limit). */
function sigNum(r: FeRec): number {
  return r.order.length * 131072 + r.affinity;
}

function dispatchVerdict(r: FeRec): string {
  if (!r.order.length) return r.drop ? 'drop' : 'goto no-endpoints';
  let m = VERDICTS.get(r.d);
  if (!m) VERDICTS.set(r.d, m = new Map());
  const n = sigNum(r);
  let v = m.get(n);
  if (v === undefined) m.set(n, v = `goto ${pickName(r)}`);
  return v;
}

/** adds d to m's count of k (a count of 0: no entry) */
function bump(m: Map<string, number>, k: string, d: number): void {
  const n = (m.get(k) ?? 0) + d;
  if (n) m.set(k, n);
  else m.delete(k);
}

/** Adds d to the count of each map holding an element only this record owns (its dispatch element, one backend per index). */
function countOwned(m: Map<string, number>, r: FeRec, d: number): void {
  bump(m, servicesMapName(r.d), d);
  for (let j = 0; j < r.order.length; j++) bump(m, backendsMapName(r.d, j), d);
}

/** Elements records may share (an internal and an external frontend on one address): refcounted. */
function sharedOf(r: FeRec, out: Array<[set: string, element: string]>): void {
  if (r.masq) out.push([r.masq === 'all' ? masqSet(r.d) : r.masq === 'offCluster' ? offClusterSet(r.d) : fromHostSet(r.d), r.tuple]);
  out.push(...firewallElements(r.d.fam, r.tuple, r.ranges));
}

// ---- the table's declaration --------------------------------------------------------------------

export interface SkeletonOptions {
  masqMark?: number;
  /** kube-proxy's local detector; absent: no-op (flows to 'offCluster' frontends are not marked) */
  localTraffic?: LocalDetector;
}

/** Everything the table holds before any frontend: helper sets and chains, dispatch maps and chains. */
export function skeleton(table: string, opts: SkeletonOptions = {}): string {
  const mark = opts.masqMark ?? MASQ_MARK;
  const markIt = `meta mark set meta mark | ${hex(mark)}`;
  const decl: string[] = [...helperDeclarations({ masqMark: mark })];
  for (const d of DCLASSES) {
    decl.push(`map ${servicesMap(d)} { type ${keyType(d)} : verdict; }`);
    decl.push(`set ${masqSet(d)} { type ${keyType(d)}; }`);
    decl.push(`set ${offClusterSet(d)} { type ${keyType(d)}; }`);
    if (d.scope === 'int') decl.push(`set ${fromHostSet(d)} { type ${keyType(d)}; }`);
  }
  // own scope first, then the other (an eTP=Cluster NodePort has one, external, frontend that serves
  // pods too); exact addresses before any-address NodePorts, which answer on local addresses only.
  // Before each class's dispatch, its frontends' masquerade marks (kube-proxy's service chain jumps
  // to mark-for-masquerade before it picks an endpoint): a tuple in a class's sets is in its dispatch
  // map too, so the mark is set exactly when that map's verdict is the one taken.
  const lookups = (own: ScopeTag, any: boolean): string[] => {
    const out: string[] = [];
    for (const scope of [own, own === 'int' ? 'ext' : 'int'] as ScopeTag[]) {
      for (const fam of FAMILIES) {
        const d = { scope, fam, any };
        const k = `${any ? `meta nfproto ${fam === 4 ? 'ipv4' : 'ipv6'} ` : ''}${keyExpr(d)}`;
        out.push(`${k} @${masqSet(d)} ${markIt}`);
        const notLocal = notLocalMatch(opts.localTraffic, fam);
        if (notLocal) out.push(`${k} @${offClusterSet(d)} ${notLocal} ${markIt}`);
        // the set first: the fib lookup only for the few flows to such a frontend
        if (scope === 'int') out.push(`${k} @${fromHostSet(d)} fib saddr type local ${markIt}`);
        out.push(`${k} vmap @${servicesMap(d)}`);
      }
    }
    return out;
  };
  decl.push(chain('nodeports-internal', lookups('int', true)));
  decl.push(chain('nodeports-external', lookups('ext', true)));
  decl.push(chain('internal', [...lookups('int', false), 'fib daddr type local goto nodeports-internal']));
  decl.push(chain('external', [...lookups('ext', false), 'fib daddr type local goto nodeports-external']));
  decl.push(chain('nat-prerouting', [`iifname @${HELPER_SETS.externalDevices} goto external`, 'goto internal'],
    'type nat hook prerouting priority dstnat; policy accept;'));
  decl.push(chain('nat-output', ['goto internal'], 'type nat hook output priority -100; policy accept;'));
  return `table inet ${table} {\n${decl.map((x) => `  ${x}\n`).join('')}}\n`;
}

// ---- the model: what the table holds, and the transaction to the next plan ----------------------

export interface ElementGroup {
  del: boolean;
  set: string;
  /**
   * the elements in nft's syntax, one a line (no trailing newline): one string, built once; with
   * `values`, the keys only
   */
  elems: string;
  /** the values of a map's elements, line by line with elems' keys (a full sync: no string per element) */
  values?: string;
  /**
   * A full sync's backends-<D>-<j> maps in one group (elems the keys, `set` the first map): key i
   * goes into sets[0..k[i]-1], into sets[j] with the value x = idx[sum(k[0..i-1]) + j] of the
   * dictionary (line x of addrs, ports[x]).
   * `count` is the elements of all of them. fanoutGroups() turns it into one group per map.
   */
  fanout?: Fanout;
  count: number;
}

export interface Fanout {
  sets: string[];
  k: Uint32Array;
  idx: Uint32Array;
  /** the dictionary of values "address . port": line x of addrs and ports[x] */
  addrs: string;
  ports: Uint16Array;
}

/** A group as plain groups, one per map (a fan-out group's maps; any other group as it is). */
export function fanoutGroups(g: ElementGroup): ElementGroup[] {
  const f = g.fanout;
  if (!f) return [g];
  const keys = g.elems.split('\n'), dict = f.addrs.split('\n').map((a, x) => `${a} . ${f.ports[x]}`);
  const ks: string[][] = f.sets.map(() => []), vs: string[][] = f.sets.map(() => []);
  let off = 0;
  for (let i = 0; i < keys.length; i++) {
    for (let j = 0; j < f.k[i]!; j++) {
      ks[j]!.push(keys[i]!);
      vs[j]!.push(dict[f.idx[off + j]!]!);
    }
    off += f.k[i]!;
  }
  return f.sets.map((set, j) => ({ del: g.del, set, elems: ks[j]!.join('\n'), values: vs[j]!.join('\n'), count: ks[j]!.length }));
}

/** "key : value" lines of a group, whichever way it holds them (a fan-out group: fanoutGroups first). */
export function elementLines(g: ElementGroup): string[] {
  if (g.fanout) throw new Error(`elementLines: ${g.set} is a fan-out group`);
  const keys = g.elems.split('\n');
  if (g.values === undefined) return keys;
  const vals = g.values.split('\n');
  return keys.map((k, i) => `${k} : ${vals[i]}`);
}

export interface Transaction {
  /** the whole transaction, one buffer */
  script: string;
  /** element adds and deletes (for logs and the bench) */
  elements: number;
  /**
   * The same transaction in three steps, for a transport that sends elements in bulk (native.ts):
   * `structure` creates the table (when fresh) and the new objects, which nothing references yet;
   * `groups` are every element change, the one atomic switch; `cleanup` deletes the objects no
   * element references any more. A step that is empty is ''.
   */
  structure: string;
  groups: ElementGroup[];
  cleanup: string;
}

/** The type of a set or map's elements, from its declaration (what the bulk encoder needs). */
export interface ElementType {
  keyType: string;
  /** '' for a plain set, 'verdict' for a verdict map */
  dataType: string;
  interval: boolean;
}

const TYPE_RE = /(?:map|set) (\S+) \{ type ([^;:]+?)(?: : ([^;]+))?;(?: flags ([^;]+);)?/g;

/** Element types of every set and map the table may hold, by name. */
export function elementTypes(table: string, opts: SkeletonOptions = {}): Map<string, ElementType> {
  const out = new Map<string, ElementType>();
  const scan = (text: string): void => {
    for (const m of text.matchAll(TYPE_RE)) out.set(m[1]!, { keyType: m[2]!.trim(), dataType: (m[3] ?? '').trim(), interval: /\binterval\b/.test(m[4] ?? '') });
  };
  scan(skeleton(table, opts));
  for (const d of DEFS.values()) if (d.kind !== 'chain') scan(d.create);
  return out;
}

/**
 * What the table holds, in memory: the records, the reference counts of on-demand objects and shared
 * elements, and the local backend addresses. Built from plans only, so a restart rebuilds it from
 * the plan and orders in the state file, and never lists the table.
 */
export class NftModel {
  readonly table: string;
  readonly masqMark: number;
  readonly skeletonOpts: SkeletonOptions;
  /** (replaced whole by a full sync's commit, never copied) */
  recs = new Map<string, FeRec>();
  #objRefs = new Map<string, { def: ObjDef; n: number }>();
  #shared = new Map<string, number>();
  /** local backend address -> backends at it */
  #local = new Map<string, number>();
  /** backend id -> local address it counts for */
  #localOf = new Map<number, string>();
  gen = 0;
  /** the table must be (re)created by the next transaction */
  fresh = true;

  constructor(table: string, opts: SkeletonOptions = {}) {
    this.table = table;
    this.masqMark = opts.masqMark ?? MASQ_MARK;
    this.skeletonOpts = { ...opts, masqMark: this.masqMark };
  }

  /** The fixed part of the table (its chains' rules depend on the options): a restart compares it. */
  skeleton(): string {
    return skeleton(this.table, this.skeletonOpts);
  }

  get frontendCount(): number {
    return this.recs.size;
  }

  /**
   * Elements per object the records own (services and backends maps) and per set of shared
   * elements (counted once however many records share one), for stats: counted by a walk of every
   * record the first time asked after a full sync or a restore, then kept by each commit for the
   * records it touches (a walk was ~3-5 ms of every scrape after a change at 10,000 frontends).
   */
  #ownCounts: Map<string, number> | undefined;
  #sharedCounts: Map<string, number> | undefined;

  /** element counts per object, for stats */
  counts(): Array<{ name: string; entries: number }> {
    if (!this.#ownCounts || !this.#sharedCounts) {
      const own = new Map<string, number>(), shared = new Map<string, number>();
      for (const r of this.recs.values()) countOwned(own, r, +1);
      for (const [k, c] of this.#shared) if (c > 0) bump(shared, k.slice(0, k.indexOf('\0')), +1);
      this.#ownCounts = own;
      this.#sharedCounts = shared;
    }
    const n = new Map(this.#ownCounts);
    for (const [s, c] of this.#sharedCounts) bump(n, s, c);
    return [...n].filter(([, entries]) => entries > 0).map(([name, entries]) => ({ name, entries })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /**
   * The transaction from what the model holds to `next`, for the frontends `touched` (all when
   * undefined) and the backends `backendIds` (all when undefined). Does not change the model:
   * commit() does, once the kernel took the transaction.
   */
  plan(next: Plan, touched?: Iterable<string>, backendIds?: Iterable<number>): { tx: Transaction; commit: () => void } {
    if (this.fresh) return this.#planFresh(next);
    const keys = new Set<string>(touched ?? [...next.frontends.keys(), ...this.recs.keys()]);
    if (this.fresh) for (const k of next.frontends.keys()) keys.add(k);
    const newRecs = new Map<string, FeRec | undefined>();
    const cache: TargetCache = new Map();
    for (const k of keys) {
      const f = next.frontends.get(k);
      const old = this.fresh ? undefined : this.recs.get(k);
      newRecs.set(k, f ? feRec(next, f, old?.order, k) : undefined);
    }

    // objects and shared elements: count what the touched records drop and add
    const objDelta = new Map<string, { def: ObjDef; d: number }>();
    const sharedDelta = new Map<string, number>();
    const ownDel = new Map<string, string[]>();
    const ownAdd = new Map<string, string[]>();
    const push = (m: Map<string, string[]>, s: string, e: string): void => {
      let a = m.get(s);
      if (!a) m.set(s, a = []);
      a.push(e);
    };
    // a new record's elements (every record of a full sync): straight into the per-map lists, the
    // lists of backends-<D>-<j> found by class and index rather than by name
    const addLists = new Map<DClass, string[][]>();
    const addNew = (b: FeRec): void => {
      push(ownAdd, servicesMapName(b.d), `${b.tuple} : ${dispatchVerdict(b)}`);
      let lists = addLists.get(b.d);
      if (!lists) addLists.set(b.d, lists = []);
      for (let j = 0; j < b.order.length; j++) {
        let l = lists[j];
        if (!l) {
          const name = backendsMapName(b.d, j);
          l = ownAdd.get(name);
          if (!l) ownAdd.set(name, l = []);
          lists[j] = l;
        }
        l.push(`${b.tuple} : ${targetOf(next.backends, b.order[j]!, b, cache)}`);
      }
    };
    // records per object signature (class, K, T) that the touched records drop (-1) and add (+1):
    // a full sync has a few dozen signatures for 10,000 records
    const sigDelta = new Map<string, { r: FeRec; d: number }>();
    const sigAdd = (r: FeRec, d: number): void => {
      const sig = signature(r);
      const e = sigDelta.get(sig);
      if (e) e.d += d;
      else sigDelta.set(sig, { r, d });
    };
    const sa: Array<[string, string]> = [], sb: Array<[string, string]> = [];
    for (const k of keys) {
      const a = this.fresh ? undefined : this.recs.get(k);
      const b = newRecs.get(k);
      if (!a || !b || a.order.length !== b.order.length || a.affinity !== b.affinity || dname(a.d) !== dname(b.d)) {
        if (a && a.order.length) sigAdd(a, -1);
        if (b && b.order.length) sigAdd(b, +1);
      }
      sa.length = 0;
      sb.length = 0;
      if (a) sharedOf(a, sa);
      if (b) sharedOf(b, sb);
      for (const [s, e] of sa) sharedDelta.set(`${s}\0${e}`, (sharedDelta.get(`${s}\0${e}`) ?? 0) - 1);
      for (const [s, e] of sb) sharedDelta.set(`${s}\0${e}`, (sharedDelta.get(`${s}\0${e}`) ?? 0) + 1);
      if (!a) {
        if (b) addNew(b);
        continue;
      }
      // one key names one address, protocol, port and scope: the same class and tuple in a and b,
      // so each map is compared by its value (a verdict, or a backend id: an id names one target)
      const va = dispatchVerdict(a);
      const vb = b ? dispatchVerdict(b) : undefined;
      if (va !== vb) push(ownDel, servicesMapName(a.d), a.tuple);
      if (b && va !== vb) push(ownAdd, servicesMapName(b.d), `${b.tuple} : ${vb}`);
      const ka = a.order.length, kb = b ? b.order.length : 0;
      for (let j = 0; j < Math.max(ka, kb); j++) {
        const ia = j < ka ? a.order[j] : undefined;
        const ib = b && j < kb ? b.order[j] : undefined;
        if (ia === ib) continue;
        if (ia !== undefined) push(ownDel, backendsMapName(a.d, j), a.tuple);
        if (ib !== undefined) push(ownAdd, backendsMapName(b!.d, j), `${b!.tuple} : ${targetOf(next.backends, ib, b!, cache)}`);
      }
    }

    for (const [sig, { r, d }] of sigDelta) {
      if (d === 0) continue;
      for (const n of objectsBySig(sig, r)) addDelta(objDelta, n, objectDef(n), d);
    }

    // local backends (hairpin)
    const localDelta = new Map<string, number>();
    const localOfNext = new Map<number, string | undefined>();
    const ids: Iterable<number> = this.fresh ? next.backends.keys()
      : backendIds ? new Set(backendIds) : new Set([...next.backends.keys(), ...this.#localOf.keys()]);
    for (const id of ids) {
      const was = this.fresh ? undefined : this.#localOf.get(id);
      const b = next.backends.get(id);
      const now = b?.local ? plainV4(b.address) : undefined;
      if (was === now) continue;
      localOfNext.set(id, now);
      if (was) localDelta.set(was, (localDelta.get(was) ?? 0) - 1);
      if (now) localDelta.set(now, (localDelta.get(now) ?? 0) + 1);
    }
    const pushLocal = (m: Map<string, string[]>, addr: string): void => {
      push(m, addr.includes(':') ? HAIRPIN6 : HAIRPIN4, `${addr} . ${addr}`);
    };
    const baseLocal = this.fresh ? new Map<string, number>() : this.#local;
    for (const [addr, d] of localDelta) {
      const before = baseLocal.get(addr) ?? 0, after = before + d;
      if (before > 0 && after <= 0) pushLocal(ownDel, addr);
      if (before <= 0 && after > 0) pushLocal(ownAdd, addr);
    }
    const baseShared = this.fresh ? new Map<string, number>() : this.#shared;
    for (const [k, d] of sharedDelta) {
      if (d === 0) continue;
      const before = baseShared.get(k) ?? 0, after = before + d;
      const [s, e] = k.split('\0') as [string, string];
      if (before > 0 && after <= 0) push(ownDel, s, e);
      if (before <= 0 && after > 0) push(ownAdd, s, e);
    }
    const baseObj = this.fresh ? new Map<string, { def: ObjDef; n: number }>() : this.#objRefs;
    const objCreate: ObjDef[] = [], objDelete: Array<{ name: string; def: ObjDef }> = [];
    for (const [name, { def, d }] of objDelta) {
      const before = baseObj.get(name)?.n ?? 0, after = before + d;
      if (before <= 0 && after > 0) objCreate.push(def);
      if (before > 0 && after <= 0) objDelete.push({ name, def });
    }

    // the transaction: objects first (maps, then the chains that use them), element deletes before
    // adds (a changed value is a delete and an add of its key), then objects no element names
    const T = this.table;
    const head: string[] = [], body: string[] = [], tail: string[] = [];
    const gen = this.gen + 1;
    if (this.fresh) {
      // replaces whatever an earlier agent left, in the same transaction: no moment without a table
      head.push(`add table inet ${T}`, `delete table inet ${T}`, this.skeleton().trimEnd());
    }
    objCreate.sort((a, b) => a.level - b.level);
    if (objCreate.length) head.push(`table inet ${T} {\n${objCreate.map((o) => `  ${o.create}\n`).join('')}}`);
    let elements = 0;
    const groups: ElementGroup[] = [];
    const group = (verb: 'add' | 'delete', m: Map<string, string[]>): void => {
      for (const [s, es] of m) {
        elements += es.length;
        groups.push({ del: verb === 'delete', set: s, elems: es.join('\n'), count: es.length });
      }
    };
    group('delete', ownDel);
    group('add', ownAdd);
    const genMap = new Map<string, string[]>([[HELPER_SETS.generation, [String(gen - 1)]]]);
    if (!this.fresh && this.gen > 0) group('delete', genMap);
    genMap.set(HELPER_SETS.generation, [String(gen)]);
    group('add', genMap);
    elements -= groups.filter((g) => g.set === HELPER_SETS.generation).length;
    objDelete.sort((a, b) => b.def.level - a.def.level);
    for (const o of objDelete) {
      if (o.def.kind === 'chain') tail.push(`flush chain inet ${T} ${o.name}`, `delete chain inet ${T} ${o.name}`);
      else tail.push(`delete ${o.def.kind} inet ${T} ${o.name}`);
    }

    const commit = (): void => {
      if (this.fresh) {
        this.#ownCounts = this.#sharedCounts = undefined;
        this.recs.clear();
        this.#objRefs.clear();
        this.#shared.clear();
        this.#local.clear();
        this.#localOf.clear();
        this.fresh = false;
      }
      const own = this.#ownCounts, sharedCounts = this.#sharedCounts;
      for (const [k, r] of newRecs) {
        if (own) {
          const a = this.recs.get(k);
          if (a) countOwned(own, a, -1);
          if (r) countOwned(own, r, +1);
        }
        if (r) this.recs.set(k, r);
        else this.recs.delete(k);
      }
      for (const [name, { def, d }] of objDelta) {
        const e = this.#objRefs.get(name) ?? { def, n: 0 };
        e.n += d;
        if (e.n > 0) this.#objRefs.set(name, e);
        else this.#objRefs.delete(name);
      }
      for (const [k, d] of sharedDelta) {
        const before = this.#shared.get(k) ?? 0;
        const n = before + d;
        if (n > 0) this.#shared.set(k, n);
        else this.#shared.delete(k);
        // an element is in its set while some record holds it
        if (sharedCounts && (before > 0) !== (n > 0)) bump(sharedCounts, k.slice(0, k.indexOf('\0')), n > 0 ? +1 : -1);
      }
      for (const [addr, d] of localDelta) {
        const n = (this.#local.get(addr) ?? 0) + d;
        if (n > 0) this.#local.set(addr, n);
        else this.#local.delete(addr);
      }
      for (const [id, a] of localOfNext) {
        if (a) this.#localOf.set(id, a);
        else this.#localOf.delete(id);
      }
      this.gen = gen;
    };
    return { tx: transaction(T, head, groups, tail, elements), commit };
  }

  /**
   * A full sync into a fresh table: every record is new, so there is nothing to compare. One pass
   * over the plan's frontends collects, per class, each frontend's tuple and verdict once and its
   * backends as indices into a dictionary of targets (one text per backend, however many frontends
   * name it): the backends-<D>-<j> maps go as one fan-out group (ElementGroup.fanout), no text per
   * element. It also counts signatures and shared elements and builds the records.
   */
  #planFresh(next: Plan): { tx: Transaction; commit: () => void } {
    const recs = new Map<string, FeRec>();
    const sigs = new Map<DClass, Map<number, { r: FeRec; n: number }>>();
    const shared = new Map<string, number>();
    /**
     * per class: its frontends' tuples and dispatch verdicts, their K and backend indices (flat),
     * and the dictionary of targets those index
     */
    interface Acc { sk: string[]; sv: string[]; k: number[]; idx: number[]; slot: Slots; addrs: string[]; ports: number[]; maxK: number }
    const acc = new Map<DClass, Acc>();
    // backend id -> its dictionary line + 1 (0: not yet), per class: a typed array where ids are
    // dense (they are: the plan allocates them from 1 up), a Map otherwise
    let maxId = 0;
    for (const id of next.backends.keys()) if (id > maxId) maxId = id;
    const dense = maxId <= 4 * next.backends.size + 65536;
    type Slots = Int32Array | Map<number, number>;
    const sa: Array<[string, string]> = [];
    for (const [k, f] of next.frontends) {
      const r = feRec(next, f, undefined, k);
      recs.set(k, r);
      const K = r.order.length;
      if (K) {
        let m = sigs.get(r.d);
        if (!m) sigs.set(r.d, m = new Map());
        const e = m.get(sigNum(r));
        if (e) e.n++;
        else m.set(sigNum(r), { r, n: 1 });
      }
      let a = acc.get(r.d);
      if (!a) acc.set(r.d, a = { sk: [], sv: [], k: [], idx: [], slot: dense ? new Int32Array(maxId + 1) : new Map(), addrs: [], ports: [], maxK: 0 });
      a.sk.push(r.tuple);
      a.sv.push(dispatchVerdict(r));
      a.k.push(K);
      if (K > a.maxK) a.maxK = K;
      const { slot, idx, addrs, ports } = a;
      for (let j = 0; j < K; j++) {
        const id = r.order[j]!;
        let x = slot instanceof Int32Array ? (id <= maxId ? slot[id]! : 0) : slot.get(id) ?? 0;
        if (x === 0) {
          const b = next.backends.get(id);
          if (!b) throw new Error(`frontend ${k} names backend ${id}, which the plan lacks`);
          addrs.push(plainV4(b.address));
          ports.push(b.port);
          x = addrs.length;
          if (slot instanceof Int32Array) slot[id] = x;
          else slot.set(id, x);
        }
        idx.push(x - 1);
      }
      if (r.masq || r.ranges.length) {
        sa.length = 0;
        sharedOf(r, sa);
        for (const [set, el] of sa) {
          const key = set + '\0' + el;
          shared.set(key, (shared.get(key) ?? 0) + 1);
        }
      }
    }
    const objs = new Map<string, { def: ObjDef; n: number }>();
    for (const m of sigs.values()) {
      for (const { r, n } of m.values()) {
        for (const name of objectsBySig(signature(r), r)) {
          const e = objs.get(name);
          if (e) e.n += n;
          else objs.set(name, { def: objectDef(name), n });
        }
      }
    }
    const local = new Map<string, number>(), localOf = new Map<number, string>();
    for (const [id, b] of next.backends) {
      if (!b.local) continue;
      const addr = plainV4(b.address);
      localOf.set(id, addr);
      local.set(addr, (local.get(addr) ?? 0) + 1);
    }

    const T = this.table;
    const head = [`add table inet ${T}`, `delete table inet ${T}`, this.skeleton().trimEnd()];
    const creates = [...objs.values()].map((o) => o.def).sort((a, b) => a.level - b.level);
    if (creates.length) head.push(`table inet ${T} {\n${creates.map((o) => `  ${o.create}\n`).join('')}}`);
    const groups: ElementGroup[] = [];
    let elements = 0;
    const add = (set: string, keys: string[], values?: string[]): void => {
      if (!keys.length) return;
      groups.push({ del: false, set, elems: keys.join('\n'), ...(values && { values: values.join('\n') }), count: keys.length });
      elements += keys.length;
    };
    for (const [d, a] of acc) {
      add(servicesMapName(d), a.sk, a.sv);
      if (!a.maxK) continue;
      // the keys once for every backends-<D>-<j>: frontend i is in maps 0..K_i-1
      const sets = Array.from({ length: a.maxK }, (_, j) => backendsMapName(d, j));
      const count = a.idx.length;
      groups.push({ del: false, set: sets[0]!, elems: a.sk.join('\n'), count,
        fanout: { sets, k: Uint32Array.from(a.k), idx: Uint32Array.from(a.idx), addrs: a.addrs.join('\n'), ports: Uint16Array.from(a.ports) } });
      elements += count;
    }
    const bySet = new Map<string, string[]>();
    const push = (set: string, el: string): void => {
      let l = bySet.get(set);
      if (!l) bySet.set(set, l = []);
      l.push(el);
    };
    for (const key of shared.keys()) {
      const z = key.indexOf('\0');
      push(key.slice(0, z), key.slice(z + 1));
    }
    for (const addr of local.keys()) push(addr.includes(':') ? HAIRPIN6 : HAIRPIN4, `${addr} . ${addr}`);
    for (const [set, l] of bySet) add(set, l);
    const gen = this.gen + 1;
    groups.push({ del: false, set: HELPER_SETS.generation, elems: String(gen), count: 1 });

    const commit = (): void => {
      this.recs = recs;
      // counted afresh by the next counts()
      this.#ownCounts = this.#sharedCounts = undefined;
      this.#objRefs = objs;
      this.#shared = shared;
      this.#local = local;
      this.#localOf = localOf;
      this.fresh = false;
      this.gen = gen;
    };
    return { tx: transaction(T, head, groups, [], elements), commit };
  }

  /** Index order per frontend key (kept in the state file: a restart must rebuild the same model). */
  orders(): Map<string, number[]> {
    return new Map([...this.recs].map(([k, r]) => [k, r.order]));
  }

  /**
   * Rebuilds the model of a table that holds `plan` with these orders and generation (a restart).
   * Records come from the plan with the stored order, so the next transaction is relative to exactly
   * what the table holds.
   */
  restore(plan: Plan, orders: ReadonlyMap<string, number[]>, gen: number): void {
    this.fresh = true;
    const order = (k: string): number[] | undefined => orders.get(k);
    // a throwaway transaction from nothing, with the stored orders, committed: the same counts
    const saved = new Map<string, FeRec>();
    for (const [k, f] of plan.frontends) {
      const o = order(k);
      const r = feRec(plan, f, undefined);
      if (o && sameMembers(o, r.order)) r.order = [...o];
      saved.set(k, r);
    }
    const { commit } = this.plan(plan);
    commit();
    // replace records with the stored orders (counts of objects depend only on K, T and D)
    for (const [k, r] of saved) this.recs.set(k, r);
    this.#ownCounts = this.#sharedCounts = undefined;
    this.gen = gen;
  }
}

function text(x: string[]): string {
  return x.length ? x.join('\n') + '\n' : '';
}

/**
 * A transaction from its parts. The one-buffer form is built when asked for (the bulk path does
 * not): objects first, element deletes before adds (a changed value is a delete and an add of its
 * key), then objects no element names, the generation last.
 */
function transaction(T: string, head: string[], groups: ElementGroup[], tail: string[], elements: number): Transaction {
  let memo: string | undefined;
  const script = (): string => {
    const body: string[] = [], last: string[] = [];
    for (const g of groups.flatMap(fanoutGroups)) {
      const verb = g.del ? 'delete' : 'add';
      const out = g.set === HELPER_SETS.generation ? last : body;
      if (g.count <= 4096 && g.values === undefined) {
        out.push(`${verb} element inet ${T} ${g.set} { ${g.elems.replaceAll('\n', ', ')} }`);
        continue;
      }
      const es = elementLines(g);
      for (let i = 0; i < es.length; i += 4096) out.push(`${verb} element inet ${T} ${g.set} { ${es.slice(i, i + 4096).join(', ')} }`);
    }
    return text([...head, ...body, ...tail, ...last]);
  };
  return {
    get script() { return (memo ??= script()); },
    elements, structure: text(head), groups, cleanup: text(tail),
  };
}

function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(a);
  return b.every((x) => s.has(x));
}

function addDelta(m: Map<string, { def: ObjDef; d: number }>, name: string, def: ObjDef, d: number): void {
  const e = m.get(name);
  if (e) e.d += d;
  else m.set(name, { def, d });
}
