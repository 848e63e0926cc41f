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
// first sync waits for it); this one does the common shape in a fraction of that (docs/PERF.md).
import { CORE_SCHEMA } from 'js-yaml';

interface ImplicitType {
  resolve(data: string): boolean;
  construct(data: string): unknown;
}
// null, bool, int, float: what js-yaml tries on a plain scalar, in this order (loader.js composeNode)
const IMPLICIT = (CORE_SCHEMA as unknown as { implicit: ImplicitType[] }).implicit;
const MAYBE_NOT_STRING = /^(?:[-+.~0-9]|null$|Null$|NULL$|true$|True$|TRUE$|false$|False$|FALSE$)/;

/** what js-yaml makes of a plain scalar */
function resolvePlain(s: string): unknown {
  if (s === '') return null;
  if (!MAYBE_NOT_STRING.test(s)) return s;
  // an address (two dots or more) is neither a number nor null nor a boolean
  const dot = s.indexOf('.');
  if (dot >= 0 && s.indexOf('.', dot + 1) > 0) return s;
  // ports, booleans, counts: the same few texts in every file, resolved once (primitives only)
  if (s.length <= 8) {
    const have = scalars.get(s);
    if (have !== undefined || scalars.has(s)) return have;
  }
  let v: unknown = s;
  for (const t of IMPLICIT) {
    if (t.resolve(s)) {
      v = t.construct(s);
      break;
    }
  }
  if (s.length <= 8 && scalars.size < SCALARS_MAX) scalars.set(s, v);
  return v;
}

const scalars = new Map<string, unknown>();
const SCALARS_MAX = 4096;

// ownStrings (fastLoadAll's option): a string value is its own, not a slice of the file's text. V8
// cuts a string of 13 characters or more out of a larger one as a slice that keeps the whole text
// alive; concatenating flattens it into a fresh one (the slice of that holds only it). Sequences
// are then sized exactly (an array grown by push keeps room for 16 more). Both are what slim.ts's
// copy made, so the store can keep the parsed tree itself (slimObject's parsedJson).
let ownStrings = false;
const own = (s: string): string => (ownStrings && s.length >= 13 ? (' ' + s).slice(1) : s);

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

interface Line {
  indent: number;
  text: string;
  /** 0-based */
  no: number;
}

class Doc {
  i = 0;
  constructor(readonly lines: Line[]) {}
}

/** inlineValue's answer when the line ends after the key or dash */
const NONE = Symbol('none');

/**
 * One value after `key: ` or `- `, on one line: a scalar, `[]` or `{}`; NONE when the line
 * ends there (the value is a block below, or null).
 */
function inlineValue(s: string): unknown {
  const c = s.charCodeAt(0);
  if (c === 0x22 /* " */) {
    const end = s.indexOf('"', 1);
    if (end < 0) outside();
    const body = s.slice(1, end);
    if (body.includes('\\')) outside();
    restIsComment(s, end + 1);
    return own(body);
  }
  if (c === 0x27 /* ' */) {
    let j = 1;
    let body = '';
    for (;;) {
      const end = s.indexOf("'", j);
      if (end < 0) outside();
      body += s.slice(j, end);
      if (s.charCodeAt(end + 1) === 0x27) {
        body += "'";
        j = end + 2;
        continue;
      }
      restIsComment(s, end + 1);
      return own(body);
    }
  }
  if (c === 0x23 /* # */) return NONE;
  if (s === '[]' || s === '{}' || s.startsWith('[] #') || s.startsWith('{} #')) return s[0] === '[' ? [] : {};
  // indicators that start something else (or an error): js-yaml decides
  if ('[]{},?:&*!|>%@`'.includes(s[0]!)) outside();
  if (c === 0x2d /* - */ && (s.length === 1 || s[1] === ' ')) outside();
  let t = s;
  const hash = t.indexOf(' #');
  if (hash >= 0) t = t.slice(0, hash);
  t = t.trimEnd();
  if (t.includes(': ') || t.endsWith(':')) outside();
  const v = resolvePlain(t);
  return typeof v === 'string' ? own(v) : v;
}

function restIsComment(s: string, from: number): void {
  const rest = s.slice(from).trimStart();
  if (rest !== '' && rest[0] !== '#') outside();
  if (rest !== '' && s[from] !== ' ') outside(); // `"a"#b` is an error, not a comment
}

/** the node whose first line is doc.lines[doc.i], at that line's indent */
function node(doc: Doc): unknown {
  const l = doc.lines[doc.i]!;
  return l.text.charCodeAt(0) === 0x2d && (l.text.length === 1 || l.text[1] === ' ') ? seq(doc, l.indent) : map(doc, l.indent);
}

/** the value below a key or dash that ended its line: a more indented block, or null */
function below(doc: Doc, indent: number, sameIndentSeq: boolean): unknown {
  const n = doc.lines[doc.i];
  if (n && n.indent > indent) return node(doc);
  // a sequence may sit at its key's indent (kubectl writes them so)
  if (sameIndentSeq && n && n.indent === indent && n.text.charCodeAt(0) === 0x2d && (n.text.length === 1 || n.text[1] === ' ')) return seq(doc, indent);
  return null;
}

function seq(doc: Doc, indent: number): unknown[] {
  const out = seqItems(doc, indent);
  return ownStrings && out.length ? out.slice() : out;
}

function seqItems(doc: Doc, indent: number): unknown[] {
  const out: unknown[] = [];
  for (;;) {
    const l = doc.lines[doc.i];
    if (!l || l.indent < indent) return out;
    if (l.indent > indent) outside();
    if (l.text.charCodeAt(0) !== 0x2d || (l.text.length > 1 && l.text[1] !== ' ')) return out; // the parent's next key
    let k = 1;
    while (l.text[k] === ' ') k++;
    const rest = l.text.slice(k);
    if (rest === '' || rest[0] === '#') {
      doc.i++;
      out.push(below(doc, indent, false));
      continue;
    }
    if (rest[0] === '-' && (rest.length === 1 || rest[1] === ' ')) outside(); // `- - x`
    if (isKeyLine(rest)) {
      // `- key: v`: a mapping whose keys sit at the column after the dash
      // the line is this parse's own: read on as the mapping's first line
      l.indent = indent + k;
      l.text = rest;
      out.push(map(doc, indent + k));
      continue;
    }
    const v = inlineValue(rest);
    doc.i++;
    out.push(v === NONE ? null : v);
    const n = doc.lines[doc.i];
    if (n && n.indent > indent) outside(); // a scalar continued on the next line
  }
}

function isKeyLine(s: string): boolean {
  const c = s.indexOf(':');
  return c > 0 && (c === s.length - 1 || s[c + 1] === ' ');
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
  if (keys.size < KEYS_MAX) keys.set(raw, key);
  return key;
}

function map(doc: Doc, indent: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (;;) {
    const l = doc.lines[doc.i];
    if (!l || l.indent < indent) return out;
    if (l.indent > indent) outside();
    const s = l.text;
    const c = s.indexOf(':');
    if (c <= 0 || (c !== s.length - 1 && s[c + 1] !== ' ')) {
      // a dash at a key's indent ends a same-indent sequence's parent only in below(); here it is the
      // end of this mapping when the caller is that sequence, else an error js-yaml reports
      if (s.charCodeAt(0) === 0x2d) return out;
      outside();
    }
    const key = keyOf(s.slice(0, c));
    let k = c + 1;
    while (s[k] === ' ') k++;
    const v = k < s.length ? inlineValue(s.slice(k)) : NONE;
    doc.i++;
    if (v !== NONE) {
      out[key] = v;
      const n = doc.lines[doc.i];
      if (n && n.indent > indent) outside(); // a scalar continued on the next line
    } else out[key] = below(doc, indent, true);
  }
}

/**
 * The documents of a manifest file and the line (1-based) where each one's content starts, as
 * js-yaml's loadAll gives them; undefined when the text is outside the subset. opts.ownStrings:
 * no string in the values is a slice of text, and arrays are sized exactly (see ownStrings above).
 */
export function fastLoadAll(text: string, opts?: { ownStrings?: boolean }): { values: unknown[]; lines: number[] } | undefined {
  if (UNSAFE_CHAR.test(text)) return undefined;
  ownStrings = opts?.ownStrings === true;
  const raw = text.split('\n');
  // each document: its lines, whether a `---` opened it, the line that ended it (a marker or the end)
  const docs: { lines: Line[]; marked: boolean; end: number }[] = [{ lines: [], marked: false, end: raw.length - 1 }];
  for (let no = 0; no < raw.length; no++) {
    const s = raw[no]!;
    if (s.startsWith('---') && (s.length === 3 || s[3] === ' ')) {
      const rest = s.slice(3).trimStart();
      if (rest !== '' && rest[0] !== '#') return undefined; // `--- value`
      const last = docs[docs.length - 1]!;
      // comments before the first marker open no document
      if (last.lines.length || last.marked) {
        last.end = no;
        docs.push({ lines: [], marked: true, end: raw.length - 1 });
      } else last.marked = true;
      continue;
    }
    if (s.startsWith('...') || s.startsWith('%')) return undefined;
    let indent = 0;
    while (s.charCodeAt(indent) === 0x20) indent++;
    if (indent === s.length || s.charCodeAt(indent) === 0x23 /* # */) continue;
    const text = indent ? s.slice(indent) : s;
    docs[docs.length - 1]!.lines.push({ indent, text: text.charCodeAt(text.length - 1) === 0x20 ? text.trimEnd() : text, no });
  }
  const values: unknown[] = [];
  const lines: number[] = [];
  try {
    for (const { lines: ls } of docs) {
      // an empty document (a comment-only file, a trailing marker): js-yaml's rules for its null and
      // line are its own
      if (!ls.length) return undefined;
      if (ls[0]!.indent !== 0) return undefined;
      const doc = new Doc(ls);
      const v = node(doc);
      if (doc.i !== ls.length) return undefined;
      values.push(v);
      lines.push(ls[0]!.no + 1);
    }
  } catch {
    // outside the subset, or nested deeper than the stack allows (a hostile file): js-yaml decides
    return undefined;
  }
  return { values, lines };
}
