// A fast path for the block YAML that Kubernetes manifests are written in (kubectl, helm, our own
// bench files): block mappings and sequences, plain and one-line quoted scalars, comments, `---`
// between documents. js-yaml stays the parser of record: this one answers only for text inside a
// strict subset and returns undefined for anything else (flow collections other than `[]` / `{}`,
// anchors, aliases, tags, block scalars, multi-line scalars, quoted keys, escapes, tabs, CR,
// directives, unusual characters, any indentation it does not expect), and the caller hands that
// file to js-yaml whole. Within the subset the result is js-yaml's with the YAML 1.2 core schema
// and `json: true` (test/unit/yaml-fast.test.ts compares them, values and document lines): plain
// scalars and keys resolve through js-yaml's own core-schema types, in its order.
//
// Why: js-yaml's general reader was ~80% of reading a folder of 10,000 manifests (the agent's
// first sync waits for it); this one does the common shape in a fraction of that (docs/perf-log.md, session 8).
import { CORE_SCHEMA } from 'js-yaml';

interface ImplicitType {
  resolve(data: string): boolean;
  construct(data: string): unknown;
}
// null, bool, int, float: what js-yaml tries on a plain scalar, in this order (loader.js composeNode)
const IMPLICIT = (CORE_SCHEMA as unknown as { implicit: ImplicitType[] }).implicit;
const WORDS: ReadonlySet<string> = new Set(['null', 'Null', 'NULL', 'true', 'True', 'TRUE', 'false', 'False', 'FALSE']);

/** whether js-yaml's core schema may read s as other than a string: it starts with [-+.~0-9], or is one of WORDS */
function maybeNotString(s: string): boolean {
  const c = s.charCodeAt(0);
  if ((c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x7e) return true;
  return (s.length === 4 || s.length === 5) && WORDS.has(s);
}

/** what js-yaml makes of a plain scalar */
function resolvePlain(s: string): unknown {
  if (s === '') return null;
  if (!maybeNotString(s)) return s;
  // an address (two dots or more) is neither a number nor null nor a boolean
  const dot = s.indexOf('.');
  if (dot >= 0 && s.indexOf('.', dot + 1) > 0) return s;
  // ports, booleans, counts: the same few texts in every file, resolved once (primitives only)
  if (s.length <= 8) {
    const have = scalars.get(s);
    if (have !== undefined || scalars.has(s)) {
      if (unusual(have)) unusualNumber = true;
      return have;
    }
  }
  let v: unknown = s;
  for (const t of IMPLICIT) {
    if (t.resolve(s)) {
      v = t.construct(s);
      break;
    }
  }
  if (s.length <= 8 && scalars.size < SCALARS_MAX) scalars.set(s, v);
  if (unusual(v)) unusualNumber = true;
  return v;
}

// a number JSON cannot write (-0, .inf, .nan) was read since fastLoadAll began (a key's too): its
// values are then not `plain` (slim.ts slimObject), and their copy rewrites them as for JSON.parse
let unusualNumber = false;
const unusual = (v: unknown): boolean => typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0));

const scalars = new Map<string, unknown>();
const SCALARS_MAX = 4096;

// ownStrings (fastLoadAll's option): a string value is its own, not a slice of the file's text. V8
// cuts a string of 13 characters or more out of a larger one as a slice that keeps the whole text
// alive; joining two parts of it copies it into one flat string of its own. (A slice of a
// concatenation, what this did before, kept two objects per string: the copy and a slice header
// over it; 95,000 of them at 10,000 files, 3 MB the first read's scavenges copied.) Sequences are
// then sized exactly (an array grown by push keeps room for 16 more). Both are what slim.ts's copy
// made, so the store can keep the parsed tree itself (slimObject's parsedJson).
let ownStrings = false;
const own = (s: string): string => (ownStrings && s.length >= 13 ? [s.slice(0, 1), s.slice(1)].join('') : s);

/** thrown inside: the text is outside the subset */
class Outside extends Error {}
const outside = (): never => {
  throw new Outside();
};

// characters the subset takes anywhere: printable ASCII, newline, and the BMP beyond Latin-1's controls
// (no tab, no CR, no BOM, no surrogates: js-yaml has rules for those)
const UNSAFE_CHAR = /[^\n\x20-\x7e\u00a0-\ud7ff\ue000-\ufefe\uff00-\ufffd]/;
// a plain key: no indicator first, no space, colon, quote or comment inside
const KEY = /^[A-Za-z0-9_./][^\s:#'"{}[\],&*!|>%@`]*$/;

// The lines of the text being read, as offsets into it (no string and no object per line): for
// line j of the current document, its indent, where its content starts and ends (trailing white
// space trimmed as String.prototype.trimEnd trims it) and its number (0-based). Reused from file to
// file; a sequence's `- key:` line is re-read in place as its mapping's first line (start and
// indent moved past the dash).
let IND = new Int32Array(1024), ST = new Int32Array(1024), EN = new Int32Array(1024), NO = new Int32Array(1024);
let nLines = 0;
let src = '';

function addLine(indent: number, start: number, end: number, no: number): void {
  if (nLines === IND.length) {
    const grow = (a: Int32Array) => {
      const b = new Int32Array(a.length * 2);
      b.set(a);
      return b;
    };
    IND = grow(IND);
    ST = grow(ST);
    EN = grow(EN);
    NO = grow(NO);
  }
  IND[nLines] = indent;
  ST[nLines] = start;
  EN[nLines] = end;
  NO[nLines] = no;
  nLines++;
}

/** what String.prototype.trim counts as white space (WhiteSpace and LineTerminator, ES2024) */
function isTrimmed(c: number): boolean {
  if (c < 0x80) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/** the end of src[from, end) after trimEnd */
function trimmedEnd(from: number, end: number): number {
  while (end > from && isTrimmed(src.charCodeAt(end - 1))) end--;
  return end;
}

/** the first `:` in src[from, end), or -1 */
function colonIn(from: number, end: number): number {
  for (let j = from; j < end; j++) if (src.charCodeAt(j) === 0x3a) return j;
  return -1;
}

const isDash = (j: number): boolean => src.charCodeAt(ST[j]!) === 0x2d && (EN[j]! - ST[j]! === 1 || src.charCodeAt(ST[j]! + 1) === 0x20);

class Doc {
  constructor(
    public i: number,
    readonly end: number,
  ) {}
}

/** inlineValue's answer when the line ends after the key or dash */
const NONE = Symbol('none');

/**
 * One value in src[a, e) after `key: ` or `- `, on one line: a scalar, `[]` or `{}` (e > a: the
 * line's content ends at e, trimmed).
 */
function inlineValue(a: number, e: number): unknown {
  const c = src.charCodeAt(a);
  if (c === 0x22 /* " */) {
    const end = src.indexOf('"', a + 1);
    if (end < 0 || end >= e) outside();
    const body = src.slice(a + 1, end);
    if (body.includes('\\')) outside();
    restIsComment(end + 1, e);
    return own(body);
  }
  if (c === 0x27 /* ' */) {
    let j = a + 1;
    let body = '';
    for (;;) {
      const end = src.indexOf("'", j);
      if (end < 0 || end >= e) outside();
      body += src.slice(j, end);
      if (end + 1 < e && src.charCodeAt(end + 1) === 0x27) {
        body += "'";
        j = end + 2;
        continue;
      }
      restIsComment(end + 1, e);
      return own(body);
    }
  }
  if (c === 0x23 /* # */) return NONE;
  if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
    // `[]` or `{}`, alone or before a comment
    const close = c === 0x5b ? 0x5d : 0x7d;
    if (src.charCodeAt(a + 1) === close && a + 2 <= e && (a + 2 === e || (src.charCodeAt(a + 2) === 0x20 && src.charCodeAt(a + 3) === 0x23 && a + 3 < e))) return c === 0x5b ? [] : {};
    outside();
  }
  // indicators that start something else (or an error): js-yaml decides
  if (INDICATOR[c] === 1) outside();
  if (c === 0x2d /* - */ && (e - a === 1 || src.charCodeAt(a + 1) === 0x20)) outside();
  let t = e;
  // a comment: ` #`
  for (let j = a; j + 1 < e; j++) {
    if (src.charCodeAt(j) === 0x20 && src.charCodeAt(j + 1) === 0x23) {
      t = j;
      break;
    }
  }
  t = trimmedEnd(a, t);
  // `: ` inside, or `:` last: a mapping js-yaml reads (or refuses)
  for (let j = a; j < t; j++) if (src.charCodeAt(j) === 0x3a && (j + 1 === t || src.charCodeAt(j + 1) === 0x20)) outside();
  const v = resolvePlain(src.slice(a, t));
  return typeof v === 'string' ? own(v) : v;
}

// '[]{},?:&*!|>%@`'
const INDICATOR = new Uint8Array(128);
for (const ch of '[]{},?:&*!|>%@`') INDICATOR[ch.charCodeAt(0)] = 1;

/** after a quoted scalar: nothing, or white space and a comment */
function restIsComment(from: number, e: number): void {
  let p = from;
  while (p < e && isTrimmed(src.charCodeAt(p))) p++;
  if (p < e && src.charCodeAt(p) !== 0x23) outside();
  if (p < e && src.charCodeAt(from) !== 0x20) outside(); // `"a"#b` is an error, not a comment
}

/** the node whose first line is doc.i, at that line's indent */
function node(doc: Doc): unknown {
  const j = doc.i;
  return isDash(j) ? seq(doc, IND[j]!) : map(doc, IND[j]!);
}

/** the value below a key or dash that ended its line: a more indented block, or null */
function below(doc: Doc, indent: number, sameIndentSeq: boolean): unknown {
  const j = doc.i;
  if (j < doc.end && IND[j]! > indent) return node(doc);
  // a sequence may sit at its key's indent (kubectl writes them so)
  if (sameIndentSeq && j < doc.end && IND[j] === indent && isDash(j)) return seq(doc, indent);
  return null;
}

function seq(doc: Doc, indent: number): unknown[] {
  const out = seqItems(doc, indent);
  return ownStrings && out.length ? out.slice() : out;
}

function seqItems(doc: Doc, indent: number): unknown[] {
  const out: unknown[] = [];
  for (;;) {
    const j = doc.i;
    if (j >= doc.end || IND[j]! < indent) return out;
    if (IND[j]! > indent) outside();
    if (!isDash(j)) return out; // the parent's next key
    const st = ST[j]!, e = EN[j]!;
    let r = st + 1;
    while (r < e && src.charCodeAt(r) === 0x20) r++;
    if (r === e || src.charCodeAt(r) === 0x23) {
      doc.i++;
      out.push(below(doc, indent, false));
      continue;
    }
    if (src.charCodeAt(r) === 0x2d && (r + 1 === e || src.charCodeAt(r + 1) === 0x20)) outside(); // `- - x`
    if (isKeyLine(r, e)) {
      // `- key: v`: a mapping whose keys sit at the column after the dash
      // the line is this parse's own: read on as the mapping's first line
      IND[j] = indent + (r - st);
      ST[j] = r;
      out.push(map(doc, indent + (r - st)));
      continue;
    }
    const v = inlineValue(r, e);
    doc.i++;
    out.push(v === NONE ? null : v);
    if (doc.i < doc.end && IND[doc.i]! > indent) outside(); // a scalar continued on the next line
  }
}

function isKeyLine(a: number, e: number): boolean {
  const c = colonIn(a, e);
  return c > a && (c === e - 1 || src.charCodeAt(c + 1) === 0x20);
}

// keys repeat from file to file (apiVersion, metadata, ...): each raw key checked and resolved once
const keys = new Map<string, string>();
const KEYS_MAX = 4096;

function keyOf(raw: string): string {
  let key = keys.get(raw);
  if (key !== undefined) return key;
  if (!KEY.test(raw)) outside();
  key = String(resolvePlain(raw));
  if (key === '__proto__') outside();
  // (the cached key is its own string, not a slice of this file's text)
  if (keys.size < KEYS_MAX) keys.set((' ' + raw).slice(1), key = (' ' + key).slice(1));
  return key;
}

function map(doc: Doc, indent: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (;;) {
    const j = doc.i;
    if (j >= doc.end || IND[j]! < indent) return out;
    if (IND[j]! > indent) outside();
    const st = ST[j]!, e = EN[j]!;
    const c = colonIn(st, e);
    if (c <= st || (c !== e - 1 && src.charCodeAt(c + 1) !== 0x20)) {
      // a dash at a key's indent ends a same-indent sequence's parent only in below(); here it is the
      // end of this mapping when the caller is that sequence, else an error js-yaml reports
      if (src.charCodeAt(st) === 0x2d) return out;
      outside();
    }
    const key = keyOf(src.slice(st, c));
    let k = c + 1;
    while (k < e && src.charCodeAt(k) === 0x20) k++;
    const v = k < e ? inlineValue(k, e) : NONE;
    doc.i++;
    if (v !== NONE) {
      out[key] = v;
      if (doc.i < doc.end && IND[doc.i]! > indent) outside(); // a scalar continued on the next line
    } else out[key] = below(doc, indent, true);
  }
}

/**
 * The documents of a manifest file and the line (1-based) where each one's content starts, as
 * js-yaml's loadAll gives them; undefined when the text is outside the subset. opts.ownStrings:
 * no string in the values is a slice of text, and arrays are sized exactly (see ownStrings above).
 * plain: the values hold no number that JSON cannot write (-0, an infinity, NaN); with the rest of
 * what this parser makes (plain objects and arrays without holes, no `__proto__` key, strings,
 * booleans, null) they are what slim.ts's isPlainTree accepts, so the caller may pass slimObject
 * `plain` and spare that walk over every object (it was ~5 % of a 10,000-file first read).
 */
export function fastLoadAll(text: string, opts?: { ownStrings?: boolean }): { values: unknown[]; lines: number[]; plain: boolean } | undefined {
  if (UNSAFE_CHAR.test(text)) return undefined;
  ownStrings = opts?.ownStrings === true;
  src = text;
  nLines = 0;
  unusualNumber = false;
  try {
    const r = readAll(text);
    return r && { ...r, plain: !unusualNumber };
  } finally {
    src = '';
    // a huge file's line tables are not kept
    if (IND.length > 1 << 16) IND = new Int32Array(1024), ST = new Int32Array(1024), EN = new Int32Array(1024), NO = new Int32Array(1024);
  }
}

function readAll(text: string): { values: unknown[]; lines: number[] } | undefined {
  // each document: its first line in the tables, whether a `---` opened it
  const docStart: number[] = [0];
  let marked = false;
  const n = text.length;
  for (let ls = 0, no = 0; ls <= n; no++) {
    let le = text.indexOf('\n', ls);
    if (le < 0) le = n;
    const first = text.charCodeAt(ls);
    if (first === 0x2d && text.startsWith('---', ls) && (le - ls === 3 || text.charCodeAt(ls + 3) === 0x20)) {
      const rest = text.slice(ls + 3, le).trimStart();
      if (rest !== '' && rest[0] !== '#') return undefined; // `--- value`
      // comments before the first marker open no document
      if (nLines > docStart[docStart.length - 1]! || marked) docStart.push(nLines);
      marked = true;
      ls = le + 1;
      continue;
    }
    if ((first === 0x2e && text.startsWith('...', ls)) || first === 0x25 /* % */) return undefined;
    let p = ls;
    while (p < le && text.charCodeAt(p) === 0x20) p++;
    if (p < le && text.charCodeAt(p) !== 0x23 /* # */) addLine(p - ls, p, text.charCodeAt(le - 1) === 0x20 ? trimmedEnd(p, le) : le, no);
    ls = le + 1;
  }
  docStart.push(nLines);
  const values: unknown[] = [];
  const lines: number[] = [];
  try {
    for (let d = 0; d + 1 < docStart.length; d++) {
      const from = docStart[d]!, to = docStart[d + 1]!;
      // an empty document (a comment-only file, a trailing marker): js-yaml's rules for its null and
      // line are its own
      if (from === to) return undefined;
      if (IND[from] !== 0) return undefined;
      const doc = new Doc(from, to);
      const v = node(doc);
      if (doc.i !== to) return undefined;
      values.push(v);
      lines.push(NO[from]! + 1);
    }
  } catch {
    // outside the subset, or nested deeper than the stack allows (a hostile file): js-yaml decides
    return undefined;
  }
  return { values, lines };
}
