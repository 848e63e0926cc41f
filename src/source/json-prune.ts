// A LIST page's bytes with what nobody reads taken out, before JSON.parse sees them. An API server's
// Service or EndpointSlice carries managedFields, kubectl's last-applied annotation, ownerReferences,
// timestamps, each endpoint's full targetRef: JSON.parse built all of it (and the UTF-8 decode read
// it) only for slim.ts to drop it, and the scavenger then copied the page's live tree while the page
// was slimmed. At 10,000 Services that parse and its GC were most of the list's main-thread time
// (docs/PERF.md, session 16). Here a scan over the bytes copies the members that slimObject reads,
// and skips the rest, into a second buffer; JSON.parse and slimObject then run on that as before.
//
// Only members slim.ts never reads are left out, so slimObject of a pruned item is slimObject of the
// whole one (property test: test/unit/json-prune.test.ts). Where there is any doubt the bytes are
// kept as they came: a key written with an escape keeps its whole object; an item whose metadata is
// not an object is kept whole (the log names such an item by its JSON). The scan checks JSON's
// grammar on every byte it walks, kept or skipped: bytes that JSON.parse would reject (a truncated or
// malformed page), or nesting deeper than it goes, give undefined and the caller parses the page
// whole, so JSON.parse's own error is the one reported, as before.
import { ENDPOINT_KEYS, KEPT_ANNOTATIONS, KEPT_LABELS, META_KEYS, SLICE_META_KEYS } from './slim.js';

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
}

const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
// (one hidden class for every shape: the scan reads them at every member)
const obj = (other: typeof KEEP | typeof DROP, keys: Record<string, Rule>, item = false): Shape =>
  ({ keys: Object.entries(keys).map(([k, rule]) => ({ key: bytes(k), rule })), other, each: undefined, item });
const keepAll = (keys: Iterable<string>) => Object.fromEntries([...keys].map((k) => [k, KEEP as Rule]));
const arrayOf = (each: Shape): Shape => ({ keys: [], other: KEEP, each, item: false });

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
}, true);
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
export function scanList(kind: PrunedKind, bytes: Buffer, len: number, onItem: (text: string, plain: boolean) => void): string | undefined {
  // an item's pruned bytes are never more than the item's (members are only left out), nor than the
  // page's; only the pages of the buffer an item reaches are ever touched
  if (!kept || kept.length < len) kept = Buffer.allocUnsafeSlow(Math.max(len, 64 * 1024));
  const scan = new Scan(bytes, len, kept);
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


const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
const METADATA = bytes('metadata');

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

  constructor(s: Buffer, e: number, out: Buffer) {
    this.s = s;
    this.e = e;
    this.out = out;
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
  list(item: Shape, onItem: (text: string, plain: boolean) => void): string | undefined {
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
              this.o = 0;
              this.odd = false;
              if (this.at(i) === 0x7b) i = this.object(item, i, 2);
              else {
                i = this.value(i, 2);
                this.emit(from, i);
              }
              onItem(out.toString('utf8', 0, this.o), !this.odd);
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
        if (rule === DROP) i = this.value(i, depth + 1);
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
    }
    return i;
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
