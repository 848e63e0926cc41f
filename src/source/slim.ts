// What the store keeps of each object: only the fields compile, the health servers and the agent read,
// as fresh flat strings. Objects from an API server carry managedFields, creationTimestamp, ownerReferences,
// kubectl's last-applied-configuration and targetRefs; a Node carries its images and conditions. None of
// that is read, and at 100,000 Services it is most of the store.
//
// The copy also cuts what a parser leaves behind: V8 keeps a string that JSON.parse or the yaml package
// cut out of a larger text as a slice of it, so one kept name holds a whole LIST page (500 objects) or
// a whole manifest file alive. Measured at 10,000 Services x 10 endpoints: JSON pages of 500 objects
// retain 55.7 MiB, the same objects copied 26.6 MiB (bench/agent.bench.ts reports the store's share).
//
// A tree that a parser just made and nothing else holds (JSON.parse's, or the YAML fast path's with
// its own strings) is not copied at all: its kept parts are stored as they are, when they are what
// the copy would give back (slimObject's parsedJson).
// Only keys are dropped, never reinterpreted: a field of the wrong type is kept as it came, so
// normalize reports it exactly as before. The copy is exactly what a JSON round trip would give (a number
// that is not finite, which only YAML can write, arrives as null, which normalize rejects alike), made
// directly: half the round trip's CPU (bench/slim-ab.ts, docs/perf-log.md, session 8).
// Anything a round trip treats specially (toJSON, a class instance, a __proto__ key, deep nesting, a
// BigInt) takes the round trip itself.
import { LABEL_SERVICE_NAME, LABEL_ZONE } from '../model/types.js';
import type { Kind, KindMap } from './types.js';

/** labels anything reads (normalize's notOurs, the slice index, the node's zone) */
export const KEPT_LABELS: ReadonlySet<string> = new Set([
  'service.kubernetes.io/service-proxy-name', 'service.kubernetes.io/headless', LABEL_SERVICE_NAME, LABEL_ZONE,
]);
/** annotations anything reads (the agent's endpoint-change latency metric) */
export const KEPT_ANNOTATIONS: ReadonlySet<string> = new Set(['endpoints.kubernetes.io/last-change-trigger-time']);

// (the informer compares resourceVersion; a Kubernetes Event names a Service by its uid; nothing
// reads a slice's uid, nor any generation: 8 % of the store at 100,000 slices, with the empty
// label and annotation objects below)
export const META_KEYS: readonly string[] = ['name', 'namespace', 'uid', 'resourceVersion'];
export const SLICE_META_KEYS: readonly string[] = ['name', 'namespace', 'resourceVersion'];
/** a Node's deletionTimestamp: /healthz answers 503 while this node is being deleted (health.ts syncNode) */
export const NODE_META_KEYS: readonly string[] = [...META_KEYS, 'deletionTimestamp'];
export const ENDPOINT_KEYS: readonly string[] = ['addresses', 'conditions', 'nodeName', 'zone', 'hints'];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function pick(src: Obj, keys: readonly string[], out: Obj = {}): Obj {
  for (const k of keys) if (src[k] !== undefined) out[k] = src[k];
  return out;
}

function filterKeys(v: unknown, keep: ReadonlySet<string>): unknown {
  if (!isObj(v)) return v;
  // the few kept keys looked up, not every key listed (an API object's labels and annotations are
  // many, kubectl's last-applied annotation among them); more than one found: in v's own order
  let found: string | undefined, more = false;
  for (const k of keep) {
    if (!Object.hasOwn(v, k) || !Object.prototype.propertyIsEnumerable.call(v, k)) continue;
    if (found !== undefined) more = true;
    found = k;
  }
  const out: Obj = {};
  if (more) {
    for (const k of Object.keys(v)) if (keep.has(k)) out[k] = v[k];
  } else if (found !== undefined) out[found] = v[found];
  return out;
}

function meta(m: unknown, allLabels: boolean, keys = META_KEYS): unknown {
  if (!isObj(m)) return m;
  const out = pick(m, keys);
  // an object that keeps no key is left out (normalize reads a missing one as empty): an empty
  // object each was ~3 % of the store
  if (m.labels !== undefined) {
    const l = allLabels ? m.labels : filterKeys(m.labels, KEPT_LABELS);
    if (!isEmptyObj(l)) out.labels = l;
  }
  if (m.annotations !== undefined) {
    const a = filterKeys(m.annotations, KEPT_ANNOTATIONS);
    if (!isEmptyObj(a)) out.annotations = a;
  }
  return out;
}

function isEmptyObj(v: unknown): boolean {
  if (!isObj(v)) return false;
  for (const _ in v) return false;
  return true;
}

function endpoint(e: unknown, nodeName: string | undefined): unknown {
  if (!isObj(e)) return e;
  const out = pick(e, ENDPOINT_KEYS);
  // the health server counts a dual-stack pod of this node once, by its name (agent.ts
  // healthCheckPorts); another node's endpoint is never counted, and most endpoints are another
  // node's: 64 bytes each at a million endpoints
  const elsewhere = nodeName !== undefined && typeof e.nodeName === 'string' && e.nodeName !== nodeName;
  if (elsewhere) return out;
  if (isObj(e.targetRef) && e.targetRef.name !== undefined) out.targetRef = { name: e.targetRef.name };
  else if (e.targetRef !== undefined && !isObj(e.targetRef)) out.targetRef = e.targetRef;
  return out;
}

/**
 * The part of obj that is read, as a fresh object sharing no object, and no string slice, with the
 * parser's input. obj is not changed. Anything that is not an object comes back as it was (the sources reject it).
 * nodeName: this node's name, when the source knows it (an endpoint of another node keeps no targetRef).
 * parsedJson: obj came from a parser that made every string its own (JSON.parse; yaml-fast.ts's
 * fastLoadAll with ownStrings) and nothing else holds it: its kept parts are taken, not copied, when
 * they are already what the copy would make (plain objects and arrays, strings, finite numbers other
 * than -0, booleans, null); anything else is copied as below. Either way obj is not changed.
 * plain (with parsedJson): JSON.parse made obj, from text known to give no -0 and no number that is
 * not finite (json-prune.ts looked at the bytes): its kept parts are taken without the walk that
 * checks them (isPlainTree was ~30 % of slimming a LIST page). What else that walk refuses, JSON.parse
 * does not make, or (a __proto__ key, deep nesting) the JSON round trip it leads to gives back alike.
 */
export function slimObject<K extends Kind>(kind: K, obj: KindMap[K], nodeName?: string, parsedJson = false, plain = false, decoded?: DecodedSlice): KindMap[K] {
  const out = slimParts(kind, obj, nodeName);
  if (!out) return obj;
  // the copy of a parser's fresh tree was 40-50 % of slimming it, and its garbage most of the rest
  // (docs/perf-log.md, session 11): an object nothing else holds is shared with the store instead
  if (parsedJson && (plain || isPlainTree(out, 0))) return finishSlim(kind, out, decoded) as unknown as KindMap[K];
  let copy: Obj;
  try {
    ownStrings = parsedJson;
    copy = copyObject(out, 0);
  } catch (e) {
    if (e !== UNUSUAL) throw e;
    try {
      copy = JSON.parse(JSON.stringify(out)) as Obj;
    } catch {
      // not JSON (a BigInt, a cycle): no source builds such an object; keep it unslimmed rather than lose it
      return obj;
    }
  }
  return finishSlim(kind, copy, decoded) as unknown as KindMap[K];
}

/**
 * What json-prune.ts decoded itself of an EndpointSlice and left out of the text JSON.parse read
 * (obj then has neither member): its ports as the shared list finishSlim would have made of them,
 * and its endpoints packed as packSlice would have packed them. Each only where that is what the
 * whole parse and slimObject give (json-prune's property tests).
 */
export interface DecodedSlice {
  ports?: readonly unknown[];
  packed?: (string | EndpointPart)[];
}

/**
 * The fields of obj that are kept, still sharing objects and strings with obj (slimObject copies
 * them); undefined when obj is not an object. Exported for the JSON round trip it replaced
 * (testing/slim-json.ts), which the tests and the A/B bench compare the copy with.
 */
export function slimParts(kind: Kind, obj: unknown, nodeName?: string): Obj | undefined {
  const o = obj;
  if (!isObj(o)) return undefined;
  let out: Obj;
  switch (kind) {
    case 'Service': {
      out = { metadata: meta(o.metadata, false) };
      if (isObj(o.spec)) {
        // the selector is the endpoint controller's business
        const { selector: _selector, ...spec } = o.spec;
        out.spec = spec;
      } else if (o.spec !== undefined) out.spec = o.spec;
      if (isObj(o.status)) {
        if (o.status.loadBalancer !== undefined) out.status = { loadBalancer: o.status.loadBalancer };
      } else if (o.status !== undefined) out.status = o.status;
      break;
    }
    case 'EndpointSlice':
      out = { metadata: meta(o.metadata, false, SLICE_META_KEYS) };
      pick(o, ['addressType', 'ports'], out);
      if (o.endpoints !== undefined) out.endpoints = Array.isArray(o.endpoints) ? o.endpoints.map((e) => endpoint(e, nodeName)) : o.endpoints;
      break;
    default:
      // one Node: its labels and spec whole (small, and the node's own); of its status only the addresses
      out = { metadata: meta(o.metadata, true, NODE_META_KEYS) };
      if (o.spec !== undefined) out.spec = o.spec;
      if (isObj(o.status)) {
        if (o.status.addresses !== undefined) out.status = { addresses: o.status.addresses };
      } else if (o.status !== undefined) out.status = o.status;
  }
  if (o.metadata === undefined) delete out.metadata;
  return out;
}

/**
 * The copy's last step: a slice's endpoints share the parts most endpoints repeat, and slices their
 * ports. decoded: what the scan made of the slice's ports and endpoints, which copy lacks (slimParts
 * puts ports after addressType and endpoints last: so are they added here).
 */
export function finishSlim(kind: Kind, copy: Obj, decoded?: DecodedSlice): Obj {
  if (kind === 'EndpointSlice') {
    if (decoded?.ports) {
      // (before the endpoints, where slimParts puts the ports)
      if (Object.hasOwn(copy, 'endpoints')) {
        const { endpoints, ...rest } = copy;
        copy = { ...rest, ports: decoded.ports, endpoints };
      } else copy.ports = decoded.ports;
    } else if (Array.isArray(copy.ports)) {
      const shared = sharedPorts(copy.ports);
      if (shared) copy.ports = shared;
    }
    if (decoded?.packed) return withPacked(copy, decoded.packed);
    if (Array.isArray(copy.endpoints)) for (const e of copy.endpoints) if (isObj(e)) shareEndpointParts(e);
    return packSlice(copy);
  }
  return copy;
}

/**
 * Whether copyValue would give v back as it is: only plain data, no value the copy rewrites (-0, a
 * number that is not finite, undefined, a function) or refuses (a class instance, toJSON, a
 * __proto__ key, a hole), no deeper than the copy goes. Reads only.
 */
function isPlainTree(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'string': case 'boolean': return true;
    case 'number': return Number.isFinite(v) && !Object.is(v, -0);
    case 'object': {
      if (v === null) return true;
      if (depth >= DEPTH_MAX) return false;
      if (Array.isArray(v)) {
        if (Object.getPrototypeOf(v) !== Array.prototype || typeof (v as unknown as Obj).toJSON === 'function') return false;
        for (let i = 0; i < v.length; i++) if (!(i in v) || !isPlainTree(v[i], depth + 1)) return false;
        return true;
      }
      // (a null prototype is copied into a plain object: not the same value to a deep comparison)
      if (Object.getPrototypeOf(v) !== Object.prototype || typeof (v as Obj).toJSON === 'function') return false;
      // for-in allocates no key list (Object.keys did: 20 MiB at 10,000 files); an inherited key is not plain
      for (const k in v) if (k === '__proto__' || !Object.hasOwn(v, k) || !isPlainTree((v as Obj)[k], depth + 1)) return false;
      return true;
    }
    default: return false;
  }
}

/** thrown by the direct copy for what only JSON.stringify itself answers exactly */
const UNUSUAL = Symbol('unusual');
/** deeper than any Kubernetes object; a cycle ends here and JSON.stringify reports it */
const DEPTH_MAX = 64;
const SKIP = Symbol('skip');

// V8 cuts a string of 13 characters or more out of a larger one as a slice that keeps the whole
// text alive (the yaml package does, on a manifest file); a shorter one is always its own copy.
// Concatenating flattens into a fresh string; the slice of it holds only that string.
// JSON.parse makes every string its own, so an object it made keeps its strings (ownStrings).
let ownStrings = false;
const fresh = (s: string): string => (ownStrings || s.length < 13 ? s : (' ' + s).slice(1));

/** what JSON.parse(JSON.stringify(v)) gives, or SKIP where stringify leaves the key out */
function copyValue(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string': return fresh(v);
    case 'number': return Number.isFinite(v) ? (v === 0 ? 0 : v) : null; // -0 is written 0
    case 'boolean': return v;
    case 'object':
      if (v === null) return null;
      if (Array.isArray(v)) return copyArray(v, depth);
      return copyObject(v as Obj, depth);
    case 'undefined': case 'function': case 'symbol': return SKIP;
    default: throw UNUSUAL; // bigint
  }
}

function copyArray(a: unknown[], depth: number): unknown[] {
  if (depth >= DEPTH_MAX || Object.getPrototypeOf(a) !== Array.prototype || typeof (a as unknown as Obj).toJSON === 'function') throw UNUSUAL;
  const n = a.length;
  // sized once: an array grown by push keeps room for 16 more, 68 bytes of nothing in each
  // endpoint's one-address array
  const out = new Array<unknown>(n);
  for (let i = 0; i < n; i++) {
    const c = copyValue(a[i], depth + 1);
    out[i] = c === SKIP ? null : c;
  }
  return out;
}

function copyObject(o: Obj, depth: number): Obj {
  const proto = Object.getPrototypeOf(o) as unknown;
  if (depth >= DEPTH_MAX || (proto !== Object.prototype && proto !== null) || typeof o.toJSON === 'function') throw UNUSUAL;
  const out: Obj = {};
  for (const k of Object.keys(o)) {
    if (k === '__proto__') throw UNUSUAL;
    const c = copyValue(o[k], depth + 1);
    if (c !== SKIP) out[k] = c;
  }
  return out;
}

// Parts that most endpoints of a cluster repeat, shared instead of one copy per endpoint (an
// endpoint is most of a slice, and a million of them is the 100,000-Service row): the conditions
// (a handful of boolean combinations, frozen: nothing writes into a stored object) and the node and
// zone names (JSON.parse makes a fresh string of every value longer than 10 characters, and a
// cloud node's name is ~40).
/** a condition's number in the shared conditions' key */
const CONDITION_KEYS: ReadonlyMap<string, number> = new Map([['ready', 1], ['serving', 2], ['terminating', 3]]);
/** by the conditions' keys in order and their values: three bits per key, (key number 1-3, value) */
const sharedConditions = new Map<number, Readonly<Obj>>();
const names = new Map<string, string>();
/** bounds the name table (a cluster has far fewer nodes and zones) */
const NAMES_MAX = 1 << 16;

function shareEndpointParts(e: Obj): void {
  const c = e.conditions;
  if (isObj(c)) {
    // a number, not a text: no string built per endpoint (a million of them at 100,000 Services)
    let key = 0;
    for (const k in c) {
      const v = c[k], n = CONDITION_KEYS.get(k);
      if (n === undefined || typeof v !== 'boolean' || !Object.hasOwn(c, k)) { key = 0; break; }
      key = key * 8 + n * 2 + (v ? 1 : 0);
    }
    if (key) e.conditions = sharedConditions.get(key) ?? shareConditions(key, Object.freeze({ ...c }));
  }
  if (typeof e.nodeName === 'string') e.nodeName = sharedName(e.nodeName);
  if (typeof e.zone === 'string') e.zone = sharedName(e.zone);
}

function shareConditions(key: number, c: Readonly<Obj>): Readonly<Obj> {
  sharedConditions.set(key, c);
  conditionIds.set(c, key);
  return c;
}

/** the key of a shared conditions object (conditionsOf gives it back), or 0 (list-decode.ts sends parts by their keys) */
export function conditionsKey(c: Readonly<Obj> | undefined): number {
  return c === undefined ? 0 : conditionIds.get(c) ?? 0;
}

const CONDITION_NAMES = ['', 'ready', 'serving', 'terminating'] as const;

/**
 * The shared conditions object of a key as shareEndpointParts makes it (key: three bits per member,
 * in order, each (key number 1-3) * 2 + value), for json-prune.ts, which reads the bytes.
 */
export function conditionsOf(key: number): Readonly<Obj> {
  const have = sharedConditions.get(key);
  if (have) return have;
  const groups: number[] = [];
  for (let k = key; k > 0; k = Math.floor(k / 8)) groups.unshift(k % 8);
  const c: Obj = {};
  for (const g of groups) c[CONDITION_NAMES[g >> 1]!] = (g & 1) === 1;
  return shareConditions(key, Object.freeze(c));
}

/** a condition's number (1-3) in a conditions key, or 0 */
export function conditionNumber(name: string): number {
  return CONDITION_KEYS.get(name) ?? 0;
}

/**
 * A slice's ports as one frozen array shared by every slice with the same ports (a cluster has a
 * handful of port lists; 3 % of the store at 100,000 slices): only an array of plain objects of
 * strings and numbers, which the key (their JSON) tells apart exactly. Undefined: keep them.
 */
const portLists = new Map<string, readonly unknown[]>();
export function sharedPorts(ports: unknown[]): readonly unknown[] | undefined {
  for (const p of ports) {
    if (!isObj(p) || Object.getPrototypeOf(p) !== Object.prototype) return undefined;
    for (const k in p) {
      const v = p[k];
      // (the key would not tell -0, NaN or Infinity apart; the copy has made them 0 or null anyway)
      if (!Object.hasOwn(p, k) || (typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v) && !Object.is(v, -0)))) return undefined;
    }
  }
  const key = JSON.stringify(ports);
  const have = portLists.get(key);
  if (have) return have;
  if (portLists.size >= NAMES_MAX) portLists.clear();
  const frozen = Object.freeze(ports.map((p) => Object.freeze({ ...(p as Obj) })));
  portLists.set(key, frozen);
  return frozen;
}

export function sharedName(v: string): string {
  const have = names.get(v);
  if (have !== undefined) return have;
  if (names.size >= NAMES_MAX) names.clear();
  names.set(v, v);
  return v;
}

// ---- a slice's endpoints packed ----
// An endpoint as the API gives it is an object, a one-address array and the address (~150 bytes),
// and this node's ones a targetRef object (~30 more): a million endpoints at 100,000 Services were
// ~60 % of the store (issue 10). Most endpoints are exactly {addresses: [one], conditions, nodeName,
// zone, targetRef: {name}} with shared conditions, node and zone: those are kept as one flat list per
// slice, [address, part, (targetRef name,) address, part, ...], where a part (shared, frozen) holds
// what endpoints repeat and says whether a name follows. The slice's `endpoints` stays readable as
// the API's list: an enumerable getter builds it (equal to what was packed, key order too), so
// JSON.stringify, deepEqual and every reader see no difference; normalize reads the packed list
// (packedEndpoints). A slice with any other endpoint (hints, two addresses, a value of an odd type)
// keeps its list as it came.

/** what endpoints of a slice repeat: kept once per distinct combination */
export interface EndpointPart {
  readonly conditions: Readonly<Obj> | undefined;
  readonly nodeName: string | undefined;
  readonly zone: string | undefined;
  /** a targetRef name follows the part in the packed list */
  readonly ref: boolean;
}

const PACKED = Symbol('packed endpoints');
const parts = new Map<string, EndpointPart>();
/** the shared conditions objects, for a part's key */
const conditionIds = new Map<Readonly<Obj>, number>();

/** The packed list of a slice the store keeps, or undefined when its endpoints are a plain list. */
export function packedEndpoints(slice: unknown): readonly (string | EndpointPart)[] | undefined {
  return typeof slice === 'object' && slice !== null ? (slice as { [PACKED]?: (string | EndpointPart)[] })[PACKED] : undefined;
}

/** One endpoint of a packed list, as the API's object (the getter's element); i: its address's index. */
export function unpackEndpoint(packed: readonly (string | EndpointPart)[], i: number): Obj {
  const part = packed[i + 1] as EndpointPart;
  const e: Obj = { addresses: [packed[i]] };
  if (part.conditions !== undefined) e.conditions = part.conditions;
  if (part.nodeName !== undefined) e.nodeName = part.nodeName;
  if (part.zone !== undefined) e.zone = part.zone;
  if (part.ref) e.targetRef = { name: packed[i + 2] };
  return e;
}

function unpackAll(this: { [PACKED]: (string | EndpointPart)[] }): Obj[] {
  const p = this[PACKED], out: Obj[] = [];
  for (let i = 0; i < p.length; i += (p[i + 1] as EndpointPart).ref ? 3 : 2) out.push(unpackEndpoint(p, i));
  return out;
}

const ENDPOINTS_GETTER: PropertyDescriptor = { get: unpackAll, enumerable: true, configurable: true };

/** the part of a packable endpoint (shareEndpointParts has run on it), or undefined */
function partOf(e: unknown): EndpointPart | undefined {
  if (!isObj(e) || Object.getPrototypeOf(e) !== Object.prototype) return undefined;
  let n = 0;
  for (const k in e) {
    if (!Object.hasOwn(e, k)) return undefined;
    n++;
  }
  const a = e.addresses, c = e.conditions, node = e.nodeName, zone = e.zone, ref = e.targetRef;
  if (!Array.isArray(a) || a.length !== 1 || typeof a[0] !== 'string' || Object.getPrototypeOf(a) !== Array.prototype) return undefined;
  let cid = 0;
  if (c !== undefined) {
    // only the shared frozen conditions (booleans under known keys)
    if (!isObj(c) || (cid = conditionIds.get(c) ?? 0) === 0) return undefined;
  }
  if ((node !== undefined && typeof node !== 'string') || (zone !== undefined && typeof zone !== 'string')) return undefined;
  if (ref !== undefined) {
    if (!isObj(ref) || Object.getPrototypeOf(ref) !== Object.prototype || typeof ref.name !== 'string') return undefined;
    for (const k in ref) if (k !== 'name' || !Object.hasOwn(ref, k)) return undefined;
  }
  // no other key (hints, or anything slimParts kept of an odd endpoint)
  if (n !== 1 + +(c !== undefined) + +(node !== undefined) + +(zone !== undefined) + +(ref !== undefined)) return undefined;
  return endpointPart(cid, ref !== undefined, node as string | undefined, zone as string | undefined);
}

/** The shared part of an endpoint: cid its conditions' key (0: none), ref whether a targetRef name follows. */
export function endpointPart(cid: number, ref: boolean, node: string | undefined, zone: string | undefined): EndpointPart {
  const key = `${cid}|${ref ? 1 : 0}|${node ?? '\u0000'}|${zone ?? '\u0000'}`;
  let p = parts.get(key);
  if (!p) {
    if (parts.size >= NAMES_MAX) parts.clear();
    parts.set(key, p = Object.freeze({ conditions: cid ? conditionsOf(cid) : undefined, nodeName: node, zone, ref }));
  }
  return p;
}

/** copy with its endpoints packed when every one can be (and `endpoints` is its last key), else copy itself */
function packSlice(copy: Obj): Obj {
  const eps = copy.endpoints;
  if (!Array.isArray(eps) || !eps.length || Object.getPrototypeOf(eps) !== Array.prototype) return copy;
  let last: string | undefined;
  for (const k in copy) last = k;
  if (last !== 'endpoints') return copy;
  const packed: (string | EndpointPart)[] = [];
  for (let i = 0; i < eps.length; i++) {
    const p = partOf(eps[i]);
    if (!p) return copy;
    const e = eps[i] as Obj;
    packed.push((e.addresses as string[])[0]!, p);
    if (p.ref) packed.push((e.targetRef as Obj).name as string);
  }
  return withPacked(copy, packed.slice());
}

/** copy without its endpoints (if any), then the packed list and the getter that reads it */
function withPacked(copy: Obj, packed: (string | EndpointPart)[]): Obj {
  const out: Obj = {};
  for (const k in copy) if (k !== 'endpoints') out[k] = copy[k];
  // (sized exactly: pushed arrays keep spare room)
  Object.defineProperty(out, PACKED, { value: packed });
  Object.defineProperty(out, 'endpoints', ENDPOINTS_GETTER);
  return out;
}
