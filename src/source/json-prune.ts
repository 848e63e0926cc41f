// A LIST page's bytes with what nobody reads taken out, before JSON.parse sees them. An API server's
// Service or EndpointSlice carries managedFields, kubectl's last-applied annotation, ownerReferences,
// timestamps, each endpoint's full targetRef: JSON.parse built all of it (and the UTF-8 decode read
// it) only for slim.ts to drop it, and the scavenger then copied the page's live tree while the page
// was slimmed. At 10,000 Services that parse and its GC were most of the list's main-thread time
// (docs/perf-log.md, session 16). Here a scan over the bytes copies the members that slimObject reads,
// and skips the rest, into a second buffer; JSON.parse and slimObject then run on that as before.
//
// Only members slim.ts never reads are left out, so slimObject of a pruned item is slimObject of the
// whole one (property test: test/unit/json-prune.test.ts). Where there is any doubt the bytes are
// kept as they came: a key written with an escape keeps its whole object; an item whose metadata is
// not an object is kept whole (the log names such an item by its JSON). The scan checks JSON's
// grammar on every byte it walks, kept or skipped: bytes that JSON.parse would reject (a truncated or
// malformed page), or nesting deeper than it goes, give undefined and the caller parses the page
// whole, so JSON.parse's own error is the one reported, as before.
//
// An EndpointSlice's endpoints (most of its bytes) are not parsed at all where they have the shape
// slim.ts packs (one address, known boolean conditions, nodeName, zone, a targetRef): the scan
// packs them itself, as packSlice would, reading a string only where one is kept (the address, a
// targetRef's name for this node's endpoints; another node's is never read), and the slice's ports
// are looked up by their bytes. Anything else (an escape, a byte past ASCII, hints, a member twice)
// leaves them in the text for JSON.parse and slimObject, as before (docs/perf-log.md, session 18).
import { conditionNumber, endpointPart, ENDPOINT_KEYS, KEPT_ANNOTATIONS, KEPT_LABELS, META_KEYS, sharedName, sharedPorts, SLICE_META_KEYS,
  type DecodedSlice, type EndpointPart } from './slim.js';

/** the kinds whose LIST pages are pruned (a Node list is one small object) */
export type PrunedKind = 'Service' | 'EndpointSlice';

const KEEP = 0, DROP = 1;
/** how one member of an object is treated: kept, dropped, or (an object or array value) pruned by a shape */
type Rule = typeof KEEP | typeof DROP | Shape;
interface Shape {
  /** an object's members by key (the key's bytes), anything else by `other`; or an array's elements by `each` */
  readonly keys: readonly { readonly key: Uint8Array; readonly rule: Rule }[];
  readonly other: typeof KEEP | typeof DROP;
  /** the value is an array: each element (an object) pruned by this shape */
  readonly each: Shape | undefined;
  /** an item of the list: kept whole unless its last `metadata` member is an object */
  readonly item: boolean;
  /** an EndpointSlice item: its ports and endpoints may be decoded by the scan itself (Scan.decodePorts, decodeEndpoints) */
  readonly slice: boolean;
}

const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
// (one hidden class for every shape: the scan reads them at every member)
const obj = (other: typeof KEEP | typeof DROP, keys: Record<string, Rule>, item = false, slice = false): Shape =>
  ({ keys: Object.entries(keys).map(([k, rule]) => ({ key: bytes(k), rule })), other, each: undefined, item, slice });
const keepAll = (keys: Iterable<string>) => Object.fromEntries([...keys].map((k) => [k, KEEP as Rule]));
const arrayOf = (each: Shape): Shape => ({ keys: [], other: KEEP, each, item: false, slice: false });

// what slim.ts's slimParts, meta and endpoint read, and kube.ts's invalid, describe and sameVersion
// (metadata's name, namespace and resourceVersion)
const meta = (keys: readonly string[]) => obj(DROP, {
  ...keepAll(keys),
  labels: obj(DROP, keepAll(KEPT_LABELS)),
  annotations: obj(DROP, keepAll(KEPT_ANNOTATIONS)),
});
const SERVICE = obj(DROP, {
  metadata: meta(META_KEYS),
  // the selector is the endpoint controller's business
  spec: obj(KEEP, { selector: DROP }),
  status: obj(DROP, { loadBalancer: KEEP }),
}, true);
const SLICE = obj(DROP, {
  metadata: meta(SLICE_META_KEYS),
  addressType: KEEP,
  ports: KEEP,
  endpoints: arrayOf(obj(DROP, { ...keepAll(ENDPOINT_KEYS), targetRef: obj(DROP, { name: KEEP }) })),
}, true, true);
const ITEM: Record<PrunedKind, Shape> = { Service: SERVICE, EndpointSlice: SLICE };

/** deeper than this is given to JSON.parse whole (V8's parser has no such limit; this scan recurses) */
const DEPTH_MAX = 500;
/** thrown where the bytes are not JSON (or too deep): the page is parsed whole */
const BAD = Symbol('not JSON');

/** the output buffer kept from page to page while a list runs (an item's pruned bytes at a time) */
let kept: Buffer | undefined;

/**
 * A LIST answer in bytes[0, len), item by item: each item's pruned text goes to onItem in order (the
 * caller parses it: a small string in V8's young generation, where the whole page's text, megabytes,
 * was fresh memory each time, ~10 us a 4 KiB page here), and the list's other members come back as
 * the JSON text of an object without `items`. Undefined when the bytes are not JSON this scan reads,
 * or `items` is not one array under a plain key: the caller then parses them whole (and discards
 * what onItem was given). A SyntaxError thrown by onItem (a text JSON.parse refuses) is read alike.
 * `plain`: JSON.parse of the text gives no -0 and no number that is not finite (slimObject's
 * `plain`: the bytes were looked at here, the tree need not be).
 */
export function scanList(kind: PrunedKind, bytes: Buffer, len: number, onItem: (text: string, plain: boolean, decoded?: DecodedSlice) => void,
  nodeName?: string): string | undefined {
  return scanListBytes(kind, bytes, len, (out, n, plain, decoded) => onItem(out.toString('utf8', 0, n), plain, decoded), nodeName);
}

/**
 * scanList with each item's pruned text as bytes: out[0, n), valid until onItem returns (the page
 * decode thread copies them: list-decode.ts).
 */
export function scanListBytes(kind: PrunedKind, bytes: Buffer, len: number, onItem: (out: Buffer, n: number, plain: boolean, decoded?: DecodedSlice) => void,
  nodeName?: string): string | undefined {
  // an item's pruned bytes are never more than the item's (members are only left out), nor than the
  // page's; only the pages of the buffer an item reaches are ever touched
  if (!kept || kept.length < len) kept = Buffer.allocUnsafeSlow(Math.max(len, 64 * 1024));
  const scan = new Scan(bytes, len, kept, nodeName);
  try {
    return scan.list(ITEM[kind], onItem);
  } catch (e) {
    if (e === BAD || e instanceof RangeError || e instanceof SyntaxError) return undefined;
    throw e;
  }
}

/** the kept output buffer goes (when no list runs) */
export function releasePruneBuffer(): void {
  kept = undefined;
}

const ITEMS = bytes('items');
const PORTS = bytes('ports');
const ENDPOINTS = bytes('endpoints');
const ADDRESSES = bytes('addresses');
const CONDITIONS = bytes('conditions');
const NODE_NAME = bytes('nodeName');
const ZONE = bytes('zone');
const TARGET_REF = bytes('targetRef');
const HINTS = bytes('hints');
const NAME = bytes('name');


const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
const METADATA = bytes('metadata');

/** ports longer than this are not looked up by their bytes */
const PORTS_BYTES_MAX = 4096;
/** the entries of portsByBytes before it starts over */
const CACHE_MAX = 1 << 12;
/** a slice's ports by their bytes: the shared list finishSlim makes of them, or null (not shared) */
const portsByBytes = new Map<string, readonly unknown[] | null>();
/** node and zone names last read, by their bytes */
const recent: { bytes: Buffer; name: string }[] = [];
const RECENT_MAX = 8;
/** the endpoint parts last asked for */
const lastParts: { cid: number; ref: boolean; node: string | undefined; zone: string | undefined; part: EndpointPart }[] = [];
/** the last conditions object's bytes and key (a byte-for-byte repeat is the same JSON) */
let lastConditions: Buffer = Buffer.alloc(0);
let lastCid = 0;
/** bytes [a, z) (ASCII) as a string: Buffer's latin1Slice, without toString's checks of its arguments */
const latin1 = (s: Buffer, a: number, z: number): string => (s as unknown as { latin1Slice(a: number, z: number): string }).latin1Slice(a, z);

/** the conditions' names by their number in a conditions key (slim.ts conditionNumber) */
const CONDITIONS_BY_NUMBER = ['ready', 'serving', 'terminating'].map((k) => ({ n: conditionNumber(k), key: bytes(k) }));

/** the closers of the value Scan.value is in (one byte each: 0x7d or 0x5d) */
const closers = new Uint8Array(DEPTH_MAX + 1);

/** One page's scan: positions are passed and returned (kept in registers), the output's end is `o`. */
class Scan {
  readonly s: Buffer;
  readonly e: number;
  readonly out: Buffer;
  o = 0;
  /** the last string scanned had a backslash */
  escaped = false;
  /** this item has a number that may read as -0 or Infinity (its `plain` is false) */
  odd = false;

  /** this node's name as bytes (an endpoint of another node keeps no targetRef), when known */
  readonly node: Buffer | undefined;
  /** this item's ports and endpoints may be decoded here (off when an item is scanned again) */
  direct = true;
  /** the item is to be scanned again without `direct` (a ports or endpoints member came twice) */
  redo = false;
  /** this item's members seen: 1 ports, 2 endpoints */
  seen = 0;
  /** what was decoded of this item (its members left out of the text) */
  ports: readonly unknown[] | undefined;
  packed: (string | EndpointPart)[] | undefined;

  constructor(s: Buffer, e: number, out: Buffer, nodeName: string | undefined) {
    this.s = s;
    this.e = e;
    this.out = out;
    this.node = nodeName === undefined ? undefined : Buffer.from(nodeName, 'utf8');
  }

  /** the position after whitespace from i */
  ws(i: number): number {
    const s = this.s, e = this.e;
    while (i < e) {
      const c = s[i]!;
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
    return i;
  }

  /** the byte at i (after whitespace: i from ws); BAD at the end */
  at(i: number): number {
    if (i >= this.e) throw BAD;
    return this.s[i]!;
  }

  emit(a: number, z: number): void {
    const s = this.s, b = this.out;
    let i = this.o;
    if (z - a < 48) {
      for (let k = a; k < z; k++) b[i++] = s[k]!;
    } else {
      s.copy(b, i, a, z);
      i += z - a;
    }
    this.o = i;
  }

  /** a string from its opening quote at i: the position after its closing quote; sets `escaped` */
  string(i: number): number {
    const s = this.s, e = this.e;
    let esc = false;
    i++;
    for (;;) {
      if (i >= e) throw BAD;
      const c = s[i++]!;
      if (c === 0x22) break;
      if (c === 0x5c) {
        esc = true;
        if (i >= e) throw BAD;
        const x = s[i++]!;
        if (x === 0x75) {
          if (i + 4 > e || !isHex(s[i]!) || !isHex(s[i + 1]!) || !isHex(s[i + 2]!) || !isHex(s[i + 3]!)) throw BAD;
          i += 4;
        } else if (x !== 0x22 && x !== 0x5c && x !== 0x2f && x !== 0x62 && x !== 0x66 && x !== 0x6e && x !== 0x72 && x !== 0x74) throw BAD;
      } else if (c < 0x20) throw BAD;
    }
    this.escaped = esc;
    return i;
  }

  /** a number from i (JSON's grammar): the position after it */
  number(i: number): number {
    const s = this.s, e = this.e, from0 = i;
    // (a minus may read as -0, an exponent as -0 or Infinity, many digits as either)
    if (s[i] === 0x2d) {
      this.odd = true;
      i++;
    }
    if (i >= e) throw BAD;
    let c = s[i]!;
    if (c === 0x30) i++;
    else if (c >= 0x31 && c <= 0x39) {
      i++;
      while (i < e && (c = s[i]!) >= 0x30 && c <= 0x39) i++;
    } else throw BAD;
    if (i < e && s[i] === 0x2e) {
      const from = ++i;
      while (i < e && (c = s[i]!) >= 0x30 && c <= 0x39) i++;
      if (i === from) throw BAD;
    }
    if (i < e && (s[i] === 0x65 || s[i] === 0x45)) {
      this.odd = true;
      i++;
      if (i < e && (s[i] === 0x2b || s[i] === 0x2d)) i++;
      const from = i;
      while (i < e && (c = s[i]!) >= 0x30 && c <= 0x39) i++;
      if (i === from) throw BAD;
    }
    if (i - from0 > 15) this.odd = true;
    return i;
  }

  /**
   * One value from i (after whitespace) checked against JSON's grammar: the position after it.
   * Iterative, its state in locals: most of a page's bytes go through here.
   */
  value(i: number, depth: number): number {
    // most members are a string: no state machine for it
    return i < this.e && this.s[i] === 0x22 ? this.string(i) : this.nested(i, depth);
  }

  nested(i: number, depth: number): number {
    const s = this.s, e = this.e, stack = closers;
    let top = 0;
    // 0: a value is due; 1: a key is due; 2: a value ended
    let state = 0;
    for (;;) {
      if (state === 2 && top === 0) return i;
      let c = 0;
      while (i < e && ((c = s[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
      if (i >= e) throw BAD;
      if (state === 0) {
        state = 2;
        if (c === 0x22) i = this.string(i);
        else if (c === 0x7b || c === 0x5b) {
          if (depth + top >= DEPTH_MAX) throw BAD;
          const close = c + 2;
          i++;
          while (i < e && ((c = s[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
          if (i < e && c === close) i++;
          else {
            stack[++top] = close;
            state = close === 0x7d ? 1 : 0;
          }
        } else if (c === 0x74) {
          if (i + 4 > e || s[i + 1] !== 0x72 || s[i + 2] !== 0x75 || s[i + 3] !== 0x65) throw BAD;
          i += 4;
        } else if (c === 0x66) {
          if (i + 5 > e || s[i + 1] !== 0x61 || s[i + 2] !== 0x6c || s[i + 3] !== 0x73 || s[i + 4] !== 0x65) throw BAD;
          i += 5;
        } else if (c === 0x6e) {
          if (i + 4 > e || s[i + 1] !== 0x75 || s[i + 2] !== 0x6c || s[i + 3] !== 0x6c) throw BAD;
          i += 4;
        } else i = this.number(i);
      } else if (state === 1) {
        if (c !== 0x22) throw BAD;
        i = this.string(i);
        while (i < e && ((c = s[i]!) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
        if (i >= e || c !== 0x3a) throw BAD;
        i++;
        state = 0;
      } else {
        const close = stack[top]!;
        i++;
        if (c === 0x2c) state = close === 0x7d ? 1 : 0;
        else if (c === close) top--;
        else throw BAD;
      }
    }
  }

  /** the list's top-level object: the envelope's text, each item to onItem */
  list(item: Shape, onItem: (out: Buffer, n: number, plain: boolean, decoded?: DecodedSlice) => void): string | undefined {
    const s = this.s, out = this.out;
    let i = this.ws(0);
    if (this.at(i) !== 0x7b) return undefined;
    // the envelope's members (kind, apiVersion, metadata) as ranges of the answer
    const members: number[] = [];
    let items = false;
    i = this.ws(i + 1);
    if (this.at(i) === 0x7d) i++;
    else {
      for (;;) {
        if (this.at(i) !== 0x22) throw BAD;
        const ks = i;
        const ke = i = this.string(i);
        // a key with an escape might read as items
        if (this.escaped) return undefined;
        i = this.ws(i);
        if (this.at(i) !== 0x3a) throw BAD;
        i = this.ws(i + 1);
        const vs = i;
        if (this.keyIs(ks + 1, ke - 1, ITEMS)) {
          // (JSON.parse keeps the last of a repeated key; the whole parse says what a non-array is)
          if (items || this.at(i) !== 0x5b) return undefined;
          items = true;
          i = this.ws(i + 1);
          if (this.at(i) === 0x5d) i++;
          else {
            for (;;) {
              const from = i;
              this.startItem(true);
              if (this.at(i) === 0x7b) {
                i = this.object(item, from, 2);
                if (this.redo) {
                  this.startItem(false);
                  i = this.object(item, from, 2);
                }
              } else {
                i = this.value(i, 2);
                this.emit(from, i);
              }
              const ports = this.ports, packed = this.packed;
              onItem(out, this.o, !this.odd, ports || packed ? { ...(ports && { ports }), ...(packed && { packed }) } : undefined);
              i = this.ws(i);
              const c = this.at(i++);
              if (c === 0x2c) {
                i = this.ws(i);
                continue;
              }
              if (c === 0x5d) break;
              throw BAD;
            }
          }
        } else {
          i = this.value(i, 1);
          members.push(ks, i);
        }
        i = this.ws(i);
        const c = this.at(i++);
        if (c === 0x2c) {
          i = this.ws(i);
          continue;
        }
        if (c === 0x7d) break;
        throw BAD;
      }
    }
    if (this.ws(i) !== this.e || !items) return undefined;
    let env = '{';
    for (let k = 0; k < members.length; k += 2) env += (k ? ',' : '') + s.toString('utf8', members[k], members[k + 1]);
    return env + '}';
  }

  startItem(direct: boolean): void {
    this.o = 0;
    this.odd = false;
    this.direct = direct;
    this.redo = false;
    this.seen = 0;
    this.ports = undefined;
    this.packed = undefined;
  }

  keyIs(ks: number, ke: number, key: Uint8Array): boolean {
    const n = ke - ks, s = this.s;
    if (key.length !== n) return false;
    for (let k = 0; k < n; k++) if (s[ks + k] !== key[k]) return false;
    return true;
  }

  ruleOf(shape: Shape, ks: number, ke: number): Rule {
    const keys = shape.keys;
    for (let k = 0; k < keys.length; k++) if (this.keyIs(ks, ke, keys[k]!.key)) return keys[k]!.rule;
    return shape.other;
  }

  /** the object at i copied to out with its members as the shape says: the position after it */
  object(shape: Shape, i: number, depth: number): number {
    if (depth >= DEPTH_MAX) throw BAD;
    const inStart = i, outStart = this.o, out = this.out;
    i = this.ws(i + 1);
    out[this.o++] = 0x7b;
    // whole: keep the object as it came (a key with an escape, or an item without object metadata)
    let whole = false, metaObj = false, first = true;
    if (this.at(i) === 0x7d) i++;
    else {
      for (;;) {
        if (this.at(i) !== 0x22) throw BAD;
        const ks = i;
        const ke = i = this.string(i);
        const esc = this.escaped;
        if (esc) whole = true;
        i = this.ws(i);
        if (this.at(i) !== 0x3a) throw BAD;
        i = this.ws(i + 1);
        const vc = this.at(i), vs = i;
        const rule = esc ? KEEP : this.ruleOf(shape, ks + 1, ke - 1);
        // (JSON.parse keeps the last of a repeated key)
        if (shape.item && !esc && this.keyIs(ks + 1, ke - 1, METADATA)) metaObj = vc === 0x7b;
        let j = -1;
        if (shape.slice && this.direct && !esc) {
          const m = this.keyIs(ks + 1, ke - 1, PORTS) ? 1 : this.keyIs(ks + 1, ke - 1, ENDPOINTS) ? 2 : 0;
          if (m) {
            // (a repeated one: JSON.parse's last value at the first one's place; the plain scan says what)
            if (this.seen & m) this.redo = true;
            else if (vc === 0x5b) j = m === 1 ? this.decodePorts(i, depth + 1) : this.decodeEndpoints(i, depth + 1);
            this.seen |= m;
          }
        }
        if (j >= 0) i = j;
        else if (rule === DROP) i = this.value(i, depth + 1);
        else {
          if (!first) out[this.o++] = 0x2c;
          first = false;
          this.emit(ks, ke);
          out[this.o++] = 0x3a;
          if (rule !== KEEP && vc === 0x7b && !rule.each) i = this.object(rule, i, depth + 1);
          else if (rule !== KEEP && vc === 0x5b && rule.each) i = this.array(rule.each, i, depth + 1);
          else {
            i = this.value(i, depth + 1);
            this.emit(vs, i);
          }
        }
        i = this.ws(i);
        const c = this.at(i++);
        if (c === 0x2c) {
          i = this.ws(i);
          continue;
        }
        if (c === 0x7d) break;
        throw BAD;
      }
    }
    out[this.o++] = 0x7d;
    if (whole || (shape.item && !metaObj)) {
      this.o = outStart;
      this.emit(inStart, i);
      if (shape.item) {
        // (the text holds the item as it came)
        this.ports = undefined;
        this.packed = undefined;
      }
    }
    return i;
  }

  /**
   * A slice's ports at i ('['), when the list they parse to is one that finishSlim shares: that
   * list (looked up by the bytes: every slice of a Service repeats them), left out of the text. The
   * position after them, or -1 (nothing decoded: the caller copies them as usual).
   */
  decodePorts(i: number, depth: number): number {
    const j = this.value(i, depth);
    // (sharedPorts refuses a -0 or a number that is not finite, which slimObject's copy would rewrite)
    if (j - i > PORTS_BYTES_MAX || !this.ascii(i, j)) return -1;
    const raw = this.s.toString('latin1', i, j);
    let shared = portsByBytes.get(raw);
    if (shared === undefined) {
      const parsed = JSON.parse(raw) as unknown;
      shared = (Array.isArray(parsed) && sharedPorts(parsed)) || null;
      if (portsByBytes.size >= CACHE_MAX) portsByBytes.clear();
      portsByBytes.set(raw, shared);
    }
    if (!shared) return -1;
    this.ports = shared;
    return j;
  }

  /**
   * A slice's endpoints at i ('['), when every one is what slim.ts packs (one address; conditions of
   * known booleans; nodeName and zone strings; no hints; a targetRef object, whose name is kept
   * for this node's endpoints): packed here as packSlice packs them, without the objects JSON.parse
   * would make for them. The position after them, or -1 (nothing decoded: anything else, an escape,
   * a byte past ASCII or a repeated member leaves the list to JSON.parse and slimObject).
   */
  decodeEndpoints(i: number, depth: number): number {
    const s = this.s, e = this.e;
    i = this.ws(i + 1);
    // (an empty list is kept as a list)
    if (i >= e || s[i] !== 0x7b) return -1;
    const packed: (string | EndpointPart)[] = [];
    for (;;) {
      i = this.endpoint(i, depth + 1, packed);
      if (i < 0) return -1;
      i = this.ws(i);
      if (i >= e) return -1;
      const c = s[i++];
      if (c === 0x5d) break;
      if (c !== 0x2c) return -1;
      i = this.ws(i);
      if (i >= e || s[i] !== 0x7b) return -1;
    }
    // (sized exactly: a pushed array keeps spare room, as packSlice's slice() says)
    this.packed = packed.slice();
    return i;
  }

  /** one endpoint object at i pushed onto packed (see decodeEndpoints): the position after it, or -1 */
  endpoint(i: number, depth: number, packed: (string | EndpointPart)[]): number {
    const s = this.s, e = this.e;
    if (depth >= DEPTH_MAX) return -1;
    let seen = 0, cid = 0, addrA = -1, addrZ = -1, nodeA = -1, nodeZ = -1, zoneA = -1, zoneZ = -1, refA = -1, refZ = -1;
    i = this.ws(i + 1);
    if (i >= e || s[i] !== 0x22) return -1;
    for (;;) {
      const ks = i;
      const ke = i = this.string(i);
      if (this.escaped) return -1;
      i = this.ws(i);
      if (i >= e || s[i] !== 0x3a) return -1;
      i = this.ws(i + 1);
      if (i >= e) return -1;
      const k0 = ks + 1, k1 = ke - 1;
      let bit = 0;
      if (this.keyIs(k0, k1, ADDRESSES)) {
        bit = 1;
        if (s[i] !== 0x5b) return -1;
        i = this.ws(i + 1);
        if (i >= e || s[i] !== 0x22) return -1;
        addrA = i + 1;
        i = this.string(i);
        addrZ = i - 1;
        if (this.escaped) return -1;
        i = this.ws(i);
        if (i >= e || s[i] !== 0x5d) return -1;
        i++;
      } else if (this.keyIs(k0, k1, CONDITIONS)) {
        bit = 2;
        if (s[i] !== 0x7b) return -1;
        i = this.conditions(i);
        if (i < 0) return -1;
        cid = this.cid;
      } else if (this.keyIs(k0, k1, NODE_NAME)) {
        bit = 4;
        if (s[i] !== 0x22) return -1;
        nodeA = i + 1;
        i = this.string(i);
        nodeZ = i - 1;
        if (this.escaped) return -1;
      } else if (this.keyIs(k0, k1, ZONE)) {
        bit = 8;
        if (s[i] !== 0x22) return -1;
        zoneA = i + 1;
        i = this.string(i);
        zoneZ = i - 1;
        if (this.escaped) return -1;
      } else if (this.keyIs(k0, k1, TARGET_REF)) {
        bit = 16;
        if (s[i] !== 0x7b) return -1;
        i = this.targetRef(i, depth + 1);
        if (i < 0) return -1;
        refA = this.refA;
        refZ = this.refZ;
      } else if (this.keyIs(k0, k1, HINTS)) return -1;
      else i = this.value(i, depth + 1);
      if (bit) {
        if (seen & bit) return -1;
        seen |= bit;
      }
      i = this.ws(i);
      if (i >= e) return -1;
      const c = s[i++];
      if (c === 0x7d) break;
      if (c !== 0x2c) return -1;
      i = this.ws(i);
      if (i >= e || s[i] !== 0x22) return -1;
    }
    if (addrA < 0 || !this.ascii(addrA, addrZ) || (nodeA >= 0 && !this.ascii(nodeA, nodeZ)) || (zoneA >= 0 && !this.ascii(zoneA, zoneZ))
      || (refA >= 0 && !this.ascii(refA, refZ))) return -1;
    // slim.ts's endpoint(): another node's endpoint keeps no targetRef
    const node = this.node;
    const elsewhere = node !== undefined && nodeA >= 0 && !this.bytesAre(nodeA, nodeZ, node);
    const ref = !elsewhere && refA >= 0;
    packed.push(latin1(s, addrA, addrZ), this.part(cid, ref, nodeA >= 0 ? this.name(nodeA, nodeZ) : undefined, zoneA >= 0 ? this.name(zoneA, zoneZ) : undefined));
    if (ref) packed.push(latin1(s, refA, refZ));
    return i;
  }

  /** bytes [a, z) are those of b */
  bytesAre(a: number, z: number, b: Uint8Array): boolean {
    if (z - a !== b.length) return false;
    const s = this.s;
    for (let k = 0; k < b.length; k++) if (s[a + k] !== b[k]) return false;
    return true;
  }

  /** slim.ts endpointPart, the last one asked for kept (a slice's endpoints mostly share theirs) */
  part(cid: number, ref: boolean, node: string | undefined, zone: string | undefined): EndpointPart {
    for (let k = 0; k < lastParts.length; k++) {
      const p = lastParts[k]!;
      if (p.cid === cid && p.ref === ref && p.node === node && p.zone === zone) return p.part;
    }
    const part = endpointPart(cid, ref, node, zone);
    lastParts.unshift({ cid, ref, node, zone, part });
    if (lastParts.length > RECENT_MAX) lastParts.pop();
    return part;
  }

  /** the conditions key (slim.ts shareEndpointParts) of the last conditions read */
  cid = 0;

  /** a conditions object at i: known keys with boolean values, each once; sets cid; the position after it, or -1 */
  conditions(i: number): number {
    const s = this.s, e = this.e;
    // the bytes of the last conditions read again (most endpoints': ready, serving, not terminating)
    const last = lastConditions, n = last.length;
    if (n && i + n <= e) {
      let k = 0;
      while (k < n && s[i + k] === last[k]) k++;
      if (k === n) {
        this.cid = lastCid;
        return i + n;
      }
    }
    const from = i;
    const j = this.conditionsRead(i);
    if (j >= 0 && j - from <= 256) {
      lastConditions = Buffer.from(s.subarray(from, j));
      lastCid = this.cid;
    }
    return j;
  }

  conditionsRead(i: number): number {
    const s = this.s, e = this.e;
    let key = 0, seen = 0;
    i = this.ws(i + 1);
    // (no member: not shared, not packed)
    if (i >= e || s[i] !== 0x22) return -1;
    for (;;) {
      const ks = i;
      i = this.string(i);
      if (this.escaped) return -1;
      let n = 0;
      for (let k = 0; k < CONDITIONS_BY_NUMBER.length; k++) if (this.keyIs(ks + 1, i - 1, CONDITIONS_BY_NUMBER[k]!.key)) n = CONDITIONS_BY_NUMBER[k]!.n;
      if (n === 0 || (seen & (1 << n))) return -1;
      seen |= 1 << n;
      i = this.ws(i);
      if (i >= e || s[i] !== 0x3a) return -1;
      i = this.ws(i + 1);
      let v: number;
      if (i + 4 <= e && s[i] === 0x74 && s[i + 1] === 0x72 && s[i + 2] === 0x75 && s[i + 3] === 0x65) {
        v = 1;
        i += 4;
      } else if (i + 5 <= e && s[i] === 0x66 && s[i + 1] === 0x61 && s[i + 2] === 0x6c && s[i + 3] === 0x73 && s[i + 4] === 0x65) {
        v = 0;
        i += 5;
      } else return -1;
      key = key * 8 + n * 2 + v;
      i = this.ws(i);
      if (i >= e) return -1;
      const c = s[i++];
      if (c === 0x7d) break;
      if (c !== 0x2c) return -1;
      i = this.ws(i);
      if (i >= e || s[i] !== 0x22) return -1;
    }
    this.cid = key;
    return i;
  }

  /** where the last targetRef's name is (refA -1: it has none) */
  refA = -1;
  refZ = -1;

  /** a targetRef object at i: its name's place (a string, once) in refA/refZ; the position after it, or -1 */
  targetRef(i: number, depth: number): number {
    const s = this.s, e = this.e;
    this.refA = this.refZ = -1;
    let nameA = -1, nameZ = -1;
    i = this.ws(i + 1);
    if (i >= e) return -1;
    if (s[i] === 0x7d) return i + 1;
    if (s[i] !== 0x22) return -1;
    for (;;) {
      const ks = i;
      i = this.string(i);
      if (this.escaped) return -1;
      const isName = this.keyIs(ks + 1, i - 1, NAME);
      i = this.ws(i);
      if (i >= e || s[i] !== 0x3a) return -1;
      i = this.ws(i + 1);
      if (i >= e) return -1;
      if (isName) {
        if (nameA >= 0 || s[i] !== 0x22) return -1;
        nameA = i + 1;
        i = this.string(i);
        nameZ = i - 1;
        if (this.escaped) return -1;
      } else i = this.value(i, depth + 1);
      i = this.ws(i);
      if (i >= e) return -1;
      const c = s[i++];
      if (c === 0x7d) break;
      if (c !== 0x2c) return -1;
      i = this.ws(i);
      if (i >= e || s[i] !== 0x22) return -1;
    }
    this.refA = nameA;
    this.refZ = nameZ;
    return i;
  }

  /** bytes [a, z) are all ASCII (a string's bytes: latin1 reads them as UTF-8 would) */
  ascii(a: number, z: number): boolean {
    const s = this.s;
    for (let k = a; k < z; k++) if (s[k]! >= 0x80) return false;
    return true;
  }

  /** a node's or zone's name from bytes [a, z) (ASCII), shared as slim.ts shares it; the last few kept by their bytes */
  name(a: number, z: number): string {
    const s = this.s, n = z - a;
    for (let k = 0; k < recent.length; k++) {
      const r = recent[k]!;
      if (r.bytes.length !== n) continue;
      let same = true;
      for (let x = 0; x < n; x++) if (r.bytes[x] !== s[a + x]) { same = false; break; }
      if (same) return r.name;
    }
    const name = sharedName(latin1(s, a, z));
    if (n <= 256) {
      recent.unshift({ bytes: Buffer.from(s.subarray(a, z)), name });
      if (recent.length > RECENT_MAX) recent.pop();
    }
    return name;
  }

  /** the array at i copied to out, each object element pruned by the shape, anything else kept */
  array(each: Shape, i: number, depth: number): number {
    if (depth >= DEPTH_MAX) throw BAD;
    const out = this.out;
    i = this.ws(i + 1);
    out[this.o++] = 0x5b;
    if (this.at(i) === 0x5d) i++;
    else {
      for (;;) {
        const vs = i;
        if (this.at(i) === 0x7b) i = this.object(each, i, depth + 1);
        else {
          i = this.value(i, depth + 1);
          this.emit(vs, i);
        }
        i = this.ws(i);
        const c = this.at(i++);
        if (c === 0x2c) {
          out[this.o++] = 0x2c;
          i = this.ws(i);
          continue;
        }
        if (c === 0x5d) break;
        throw BAD;
      }
    }
    out[this.o++] = 0x5d;
    return i;
  }
}
