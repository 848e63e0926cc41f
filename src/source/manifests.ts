// Standalone source: a folder of YAML (or JSON) manifests, the way `kubectl apply -f DIR` reads it:
// .yaml/.yml/.json files, several documents per file, `kind: List` (and ServiceList, EndpointSliceList, ...) unwrapped, objects without a
// namespace put in "default". Only Service, EndpointSlice and Node are kept (an Endpoints object is
// kept as the EndpointSlices the mirroring controller would make of it); other kinds are ignored.
//
// Watched with fs.watch (debounced), plus a periodic rescan because fs.watch misses events on some
// filesystems and across editors' rename-into-place saves. A file that does not parse is reported
// by path and line and skipped; if it parsed before, its last good objects stay until it is fixed or
// removed, so a half-saved edit does not withdraw a Service. Re-reading an unchanged file keeps the
// same object identities, so the store (and the sync runner behind it) sees no change.
import { hash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, statfsSync, statSync, watch, type Dirent, type FSWatcher, type Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import * as jsYaml from 'js-yaml';
import { CORE_SCHEMA, loadAll, YAMLException, type Type } from 'js-yaml';
import { slimObject } from './slim.js';
import { fastLoadAll } from './yaml-fast.js';
import { FileBatchReader, type FileRead } from './file-batch.js';
import { decodeManifest } from './decode.js';
import { ObjectStore, objectKey, type Kind, type KindMap, type Source } from './types.js';
import { KbpError } from '../util/errors.js';
import { ipFamily } from '../util/ip.js';
import { silentLogger, type Logger } from '../util/log.js';

export interface ManifestProblem {
  path: string;
  /** 1-based, when known */
  line?: number;
  col?: number;
  message: string;
}

export function formatProblem(p: ManifestProblem): string {
  return `${p.path}${p.line ? `:${p.line}${p.col ? `:${p.col}` : ''}` : ''}: ${p.message}`;
}

export interface ManifestObject {
  kind: Kind;
  key: string;
  obj: KindMap[Kind];
  path: string;
  line: number;
}

const KINDS: readonly Kind[] = ['Service', 'EndpointSlice', 'Node'];
const EXTENSIONS = /\.(ya?ml|json)$/i;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * What the yaml package does by default (YAML 1.2 core schema, a duplicate key's last value wins),
 * with `<<` merge keys as kubectl reads them (sigs.k8s.io/yaml over go-yaml, whose resolver merges):
 * a manifest sharing fields through an anchor and `<<: *base` lost them (the object had no kind)
 */
export const MANIFEST_SCHEMA = CORE_SCHEMA.extend({ implicit: [(jsYaml as unknown as { types: { merge: Type } }).types.merge] });
export const YAML_LOAD_OPTIONS = { schema: MANIFEST_SCHEMA, json: true } as const;

/**
 * Nodes one document may expand to, aliases followed (each alias counted as the node it names, again
 * at every use): a "billion laughs" document must be refused, not expanded by the copy in slim.ts or
 * the List walk below. Generous beside the text itself: a real file reuses a few anchors a few times.
 */
const expansionLimit = (text: string) => 1_000_000 + 100 * text.length;

/**
 * v's size as a tree (a shared subtree counted at every reference), in time proportional to its
 * distinct nodes: each object's size is computed once.
 */
function expandedSize(v: unknown, memo: Map<object, number>): number {
  if (typeof v !== 'object' || v === null) return 1;
  const have = memo.get(v);
  if (have !== undefined) return have;
  let n = 1;
  if (Array.isArray(v)) for (const x of v) n += expandedSize(x, memo);
  else for (const k in v) n += expandedSize((v as Record<string, unknown>)[k], memo);
  memo.set(v, n);
  return n;
}

/**
 * Parses one file's text. ok is false when the file has a syntax error (then objects is empty and
 * problems names the line) or an object of it holds bytes that are not UTF-8 (then objects holds the
 * others; a reader that read the file before keeps its last good objects, as kubectl apply of the file
 * would fail); objects of other kinds are dropped silently.
 *
 * js-yaml with the YAML 1.2 core schema (what the yaml package resolves by default: no timestamps,
 * duplicate keys the last one winning; plus merge keys, as kubectl reads them): ~15x less CPU than the yaml package's
 * parser and composer on Kubernetes manifests, which made reading a folder of 10,000 files the
 * longest step of the agent's start (11 s). It stops at the first syntax error (the file is
 * rejected whole either way) and does not copy aliased nodes, so the expansion is bounded here.
 */
export function parseManifestText(path: string, text: string, notUtf8?: boolean): { ok: boolean; objects: ManifestObject[]; problems: ManifestProblem[] } {
  const problems: ManifestProblem[] = [];
  const objects: ManifestObject[] = [];
  /** the line (1-based) where each document's content starts */
  let lines: number[] = [];
  let values: unknown[];
  // the common block shapes without js-yaml's general reader (yaml-fast.ts); anything else through it
  // its strings are its own and nothing else holds its values: slimObject keeps them as they are
  const fast = fastLoadAll(text, { ownStrings: true });
  if (fast) {
    values = fast.values;
    lines = fast.lines;
  } else {
    try {
      values = loadAll(text, null, {
        ...YAML_LOAD_OPTIONS,
        // the root node of each document opens at depth 1 (js-yaml's State has depth; its types lag)
        listener(ev, st) {
          if (ev === 'open' && (st as { depth?: number }).depth === 1) lines.push(st.line + 1);
        },
      });
    } catch (e) {
      // JSON objects one after another (kubectl's YAMLOrJSONDecoder reads a stream of them); else the error
      const stream = /^\s*\{/.test(text) ? jsonStream(text) : undefined;
      if (stream) {
        values = stream.values;
        lines = stream.lines;
      } else if (e instanceof YAMLException && e.mark) {
        return { ok: false, objects, problems: [{ path, line: e.mark.line + 1, col: e.mark.column + 1, message: `YAML syntax error: ${e.reason}` }] };
      } else {
        return { ok: false, objects, problems: [{ path, message: `cannot parse: ${(e as Error).message}` }] };
      }
    }
  }
  // only a file with an anchor can hold an alias (the fast path reads none: its nodes are its text's)
  const limit = !fast && text.includes('&') ? expansionLimit(text) : 0;
  // bytes that are not UTF-8 (read as U+FFFD): the lines that hold them, each rejecting the objects
  // of its document (a document runs from its content's line to the next one's)
  const badLines = notUtf8 ? replacedLines(text) : undefined;
  /** an object refused for its bytes: the file is not read whole (ok false: its last good objects stay) */
  let notRead = false;
  values.forEach((value, i) => {
    if (value === null || value === undefined) return; // an empty document (a trailing ---)
    const line = lines[i] ?? 1;
    const badLine = badLines?.find((l) => (i === 0 || l >= line) && (lines[i + 1] === undefined || l < lines[i + 1]!));
    if (limit && expandedSize(value, new Map()) > limit) {
      problems.push({ path, line, message: 'cannot read document: its aliases expand to too many nodes; ignored' });
      return;
    }
    const add = (v: unknown, where: string): void => {
      if (!isObj(v)) {
        problems.push({ path, line, message: `${where}is not an object; ignored` });
        return;
      }
      // List, and the typed lists the API server returns (ServiceList, ...): kubectl reads any object
      // with items as a list (unstructuredJSONScheme) and applies each item
      if (typeof v.kind === 'string' && v.kind.endsWith('List') && Array.isArray(v.items)) {
        v.items.forEach((item, i) => add(item, `item ${i} of a ${v.kind} `));
        return;
      }
      if (v.kind === 'Endpoints') {
        for (const slice of mirrorEndpoints(v, (m) => problems.push({ path, line, message: `${where}${m}` }))) add(slice, where);
        return;
      }
      if (typeof v.kind !== 'string' || !(KINDS as readonly string[]).includes(v.kind)) return;
      const kind = v.kind as Kind;
      const meta = isObj(v.metadata) ? v.metadata : (v.metadata = {});
      if (typeof meta.name !== 'string' || !meta.name) {
        problems.push({ path, line, message: `${where}${kind} without metadata.name; ignored` });
        return;
      }
      if (kind !== 'Node' && !meta.namespace) meta.namespace = 'default';
      if (kind === 'Node') delete meta.namespace;
      if (badLine !== undefined) {
        notRead = true;
        const name = kind === 'Node' ? meta.name : `${String(meta.namespace)}/${meta.name}`;
        problems.push({ path, line: badLine, message: `${where}${kind} ${name}: not UTF-8 (line ${badLine} holds bytes that are not; save the file as UTF-8); ignored` });
        return;
      }
      if (kind === 'Service') unknownServiceFields(v, `${where}Service ${String(meta.namespace)}/${meta.name} `, (m) => problems.push({ path, line, message: m }));
      // only what is read, sharing nothing with the file's text (slim.ts)
      const obj = slimObject(kind, v as unknown as KindMap[Kind], undefined, fast !== undefined, fast?.plain === true);
      objects.push({ kind, key: objectKey(obj), obj, path, line });
    };
    add(value, '');
  });
  return { ok: !notRead, objects, problems };
}

/** core/v1 ServiceSpec's fields (with the alpha-era ipFamily and topologyKeys that old manifests hold) */
const SERVICE_SPEC_FIELDS = new Set(['ports', 'selector', 'clusterIP', 'clusterIPs', 'type', 'externalIPs', 'sessionAffinity',
  'loadBalancerIP', 'loadBalancerSourceRanges', 'externalName', 'externalTrafficPolicy', 'healthCheckNodePort',
  'publishNotReadyAddresses', 'sessionAffinityConfig', 'ipFamily', 'ipFamilies', 'ipFamilyPolicy', 'allocateLoadBalancerNodePorts',
  'loadBalancerClass', 'internalTrafficPolicy', 'trafficDistribution', 'topologyKeys']);
const SERVICE_PORT_FIELDS = new Set(['name', 'protocol', 'appProtocol', 'port', 'targetPort', 'nodePort']);
const lowerCase = (set: Set<string>) => new Map([...set].map((f) => [f.toLowerCase(), f]));
const SPEC_BY_LOWER = lowerCase(SERVICE_SPEC_FIELDS), PORT_BY_LOWER = lowerCase(SERVICE_PORT_FIELDS);

/**
 * Warns of a Service's spec and port fields that ServiceSpec does not have (kubectl's default strict
 * field validation refuses them; without it the API server drops them): a misspelt nodePort or
 * targetPort would otherwise be dropped without a word and the Service served on another port.
 * The Service itself is read, as the API server would store it.
 */
function unknownServiceFields(v: Record<string, unknown>, who: string, warn: (message: string) => void): void {
  const spec = v.spec;
  if (!isObj(spec)) return;
  const check = (o: Record<string, unknown>, known: Set<string>, byLower: Map<string, string>, at: string): void => {
    for (const k in o) {
      if (known.has(k)) continue;
      const near = byLower.get(k.toLowerCase());
      warn(`${who}${at}${k}: unknown field${near ? ` (did you mean ${near}?)` : ''}; ignored`);
    }
  };
  check(spec, SERVICE_SPEC_FIELDS, SPEC_BY_LOWER, 'spec.');
  if (Array.isArray(spec.ports)) spec.ports.forEach((p, i) => { if (isObj(p)) check(p, SERVICE_PORT_FIELDS, PORT_BY_LOWER, `spec.ports[${i}].`); });
}

/**
 * The EndpointSlices the EndpointSliceMirroring controller makes of a hand-made Endpoints object
 * (pkg/controller/endpointslicemirroring: one slice per subset and address family, addresses ready,
 * notReadyAddresses not, the subset's ports, labelled with the Service's name; none for an Endpoints
 * labelled endpointslice.kubernetes.io/skip-mirror=true). In a cluster kube-proxy reads those slices;
 * standalone the reader makes them, as it allocates what the API server would (seed 002's selector-less
 * my-service with its Endpoints). An address that is not an IP is skipped and reported, as the
 * controller skips it with an event.
 */
export function mirrorEndpoints(ep: Record<string, unknown>, report: (message: string) => void): Record<string, unknown>[] {
  const meta = isObj(ep.metadata) ? ep.metadata : {};
  if (typeof meta.name !== 'string' || !meta.name) {
    report('Endpoints without metadata.name; ignored');
    return [];
  }
  const name = meta.name;
  const ns = typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default';
  if (isObj(meta.labels) && meta.labels['endpointslice.kubernetes.io/skip-mirror'] === 'true') return [];
  const out: Record<string, unknown>[] = [];
  (Array.isArray(ep.subsets) ? ep.subsets : []).forEach((ss: unknown, si) => {
    if (!isObj(ss)) return;
    const ports = (Array.isArray(ss.ports) ? ss.ports : []).filter(isObj).map((p) => ({
      name: typeof p.name === 'string' ? p.name : '', port: p.port, protocol: p.protocol ?? 'TCP',
      ...(p.appProtocol !== undefined && { appProtocol: p.appProtocol }),
    }));
    const byFamily: Record<'IPv4' | 'IPv6', Record<string, unknown>[]> = { IPv4: [], IPv6: [] };
    for (const [field, ready] of [['addresses', true], ['notReadyAddresses', false]] as const) {
      const list = ss[field];
      (Array.isArray(list) ? list : []).forEach((a: unknown, ai) => {
        if (!isObj(a)) return;
        const family = typeof a.ip === 'string' ? ipFamily(a.ip) : 0;
        if (!family) {
          report(`Endpoints ${ns}/${name} subsets[${si}].${field}[${ai}].ip: ${JSON.stringify(a.ip)} is not an IP address; skipped`);
          return;
        }
        byFamily[family === 4 ? 'IPv4' : 'IPv6'].push({
          addresses: [a.ip], conditions: { ready },
          ...(typeof a.nodeName === 'string' && a.nodeName && { nodeName: a.nodeName }),
          ...(typeof a.hostname === 'string' && a.hostname && { hostname: a.hostname }),
        });
      });
    }
    for (const addressType of ['IPv4', 'IPv6'] as const) {
      if (!byFamily[addressType].length) continue;
      out.push({
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
        metadata: {
          name: `${name}-mirror-${si}${addressType === 'IPv6' ? '-ipv6' : ''}`, namespace: ns,
          labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'endpointslicemirroring-controller.k8s.io' },
        },
        // each slice its own ports (slimming may share or rewrite a slice's lists)
        addressType, ports: ports.map((p) => ({ ...p })), endpoints: byFamily[addressType],
      });
    }
  });
  return out;
}

/**
 * A text of two or more JSON objects or arrays one after another (whitespace between), each with the
 * line it starts on; undefined when the text is not such a stream or a value does not parse.
 */
function jsonStream(text: string): { values: unknown[]; lines: number[] } | undefined {
  const values: unknown[] = [], lines: number[] = [];
  const n = text.length;
  let i = 0, line = 1;
  for (;;) {
    for (; i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\r' || text[i] === '\n'); i++) if (text[i] === '\n') line++;
    if (i >= n) break;
    if (text[i] !== '{' && text[i] !== '[') return undefined;
    const start = i, startLine = line;
    let depth = 0, inString = false;
    for (; i < n; i++) {
      const c = text[i];
      if (c === '\n') line++;
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth++;
      else if ((c === '}' || c === ']') && --depth === 0) {
        i++;
        break;
      }
    }
    if (depth !== 0) return undefined;
    try {
      values.push(JSON.parse(text.slice(start, i)));
    } catch {
      return undefined;
    }
    lines.push(startLine);
  }
  return values.length > 1 ? { values, lines } : undefined;
}

/** the 1-based lines of text that hold U+FFFD, in order */
function replacedLines(text: string): number[] {
  const out: number[] = [];
  let line = 1, from = 0;
  for (let at = text.indexOf('\ufffd'); at >= 0; at = text.indexOf('\ufffd', at + 1)) {
    for (let nl = text.indexOf('\n', from); nl >= 0 && nl < at; nl = text.indexOf('\n', nl + 1)) line++, from = nl + 1;
    if (out[out.length - 1] !== line) out.push(line);
  }
  return out;
}

/** what a folder entry is to the listing: a manifest, a folder to walk, or neither (hidden, another extension) */
function entryKind(ent: Dirent): 'file' | 'folder' | 'link' | undefined {
  if (ent.name.startsWith('.')) return undefined; // editors' swap and backup files
  if (ent.isDirectory()) return 'folder';
  if (!EXTENSIONS.test(ent.name)) return undefined;
  if (ent.isFile()) return 'file';
  return ent.isSymbolicLink() ? 'link' : undefined;
}

/** a file's text as readFileSync(p, 'utf8') reads it (UTF-16 with a BOM decoded as such: decode.ts), or its error */
function readText(p: string): FileRead {
  try {
    const d = decodeManifest(readFileSync(p));
    return d.notUtf8 ? { text: d.text, digest: undefined, notUtf8: true } : { text: d.text, digest: undefined };
  } catch (e) {
    return { error: e as NodeJS.ErrnoException };
  }
}

/** a folder of fewer files is read at start with readFileSync: the pool's batches pay where there are many */
const FIRST_READ_BATCH_MIN = 64;

/** bounded depth: a symlink loop must not hang a scan */
const MAX_DEPTH = 8;

/**
 * join(d, name) for a folder d that is already normalized and a name from readdir (never '', '.', '..'
 * or with a slash): the same string without normalizing the whole path again, which was ~3 % of
 * reading a folder of 10,000 files
 */
export function childPath(d: string, name: string): string {
  if (d === '.' || d === `.${sep}`) return name; // join drops a leading ./
  return d.endsWith(sep) ? d + name : d + sep + name;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > MAX_DEPTH) return;
    for (const ent of readdirSync(d, { withFileTypes: true })) {
      const k = entryKind(ent), p = childPath(d, ent.name);
      if (k === 'folder') walk(p, depth + 1);
      else if (k === 'file' || (k === 'link' && safeIsFile(p))) out.push(p);
    }
  };
  walk(join(dir), 0);
  return out.sort();
}

/**
 * A long loop on the event loop, cut into turns: due() is true once sliceMs has passed since the
 * loop started or last yielded (looking at the clock every `every` calls, a power of two: cheap
 * steps are many); `await next()` then ends the turn, so a watch event or a sync due meanwhile
 * waits at most about a slice.
 */
class Slices {
  #end: number;
  #n = 0;
  /**
   * hold: ms to wait before the next slice (0: none). The rescan passes the quiet time after a watch
   * change, so that change's read and sync run without the rescan's slices between them
   */
  constructor(readonly sliceMs: number, readonly every = 16, readonly hold?: () => number) {
    this.#end = performance.now() + sliceMs;
  }

  due(): boolean {
    return (++this.#n & (this.every - 1)) === 0 && performance.now() >= this.#end;
  }

  async next(): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    // once per slice, not in a loop: changes arriving without end still leave the rescan a slice
    const wait = this.hold?.() ?? 0;
    if (wait > 0) await new Promise<void>((r) => setTimeout(r, wait));
    this.#end = performance.now() + this.sliceMs;
  }
}

function safeIsLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function safeIsFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

interface FileState {
  /** digest of the text read: an unchanged file keeps its objects without keeping its text */
  digest: string;
  /** the file's objects by id (`kind/key`), one per id (the last document winning): ids[i] is objs[i]'s */
  ids: string[];
  objs: ManifestObject[];
  /** id -> index into objs, only for a file of more than BY_ID_SCAN objects (a few compares find the rest) */
  index?: Map<string, number>;
  /** what stat said when text was read: an unchanged stat skips the read */
  stat?: string;
  /** the inode read: another one under the same name was renamed into place */
  ino?: number;
}

/**
 * ino, size and times: a file rewritten in place or replaced by a rename changes one of them. A file
 * changed in the last 2 s gets no key (re-read next time): timestamps can be as coarse as a clock
 * tick, so a same-size write in the same tick would go unseen (git's "racy" index entries).
 */
function statKey(p: string): { key: string | undefined; ino: number | undefined; nlink: number } {
  try {
    const s = statSync(p);
    return { key: keyOf(s), ino: s.ino, nlink: s.nlink };
  } catch {
    return { key: undefined, ino: undefined, nlink: 1 };
  }
}

/** how recent a file's last change may be for its stat to stand for its content (git's racy entries) */
const RACY_MS = 2000;

/** times as doubles in ms (sub-microsecond steps at today's epoch): no BigInts, ~10,000 per rescan */
function keyOf(s: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): string | undefined {
  if (s.ctimeMs > Date.now() - RACY_MS) return undefined;
  return `${s.ino}|${s.size}|${s.mtimeMs}|${s.ctimeMs}`;
}

/** statKey's key alone, undefined when the file is gone or unreadable (no exception made for a vanished file) */
function statKeyQuiet(p: string): string | undefined {
  try {
    const s = statSync(p, { throwIfNoEntry: false });
    return s && keyOf(s);
  } catch {
    return undefined;
  }
}

/** One object as the folder now defines it (obj undefined: no file defines it any more). */
export interface ManifestChange {
  kind: Kind;
  key: string;
  obj: KindMap[Kind] | undefined;
}

/** Applies a reader's changes to a store: an object a re-read left as it was (same identity) is no change. */
export function applyChanges(store: ObjectStore, changes: readonly ManifestChange[]): void {
  for (const c of changes) {
    if (c.obj === undefined) store.delete(c.kind, c.key);
    else if (store.get(c.kind, c.key) !== c.obj) store.upsert(c.kind, c.obj);
  }
}

const idOf = (o: { kind: Kind; key: string }) => `${o.kind}/${o.key}`;

/**
 * A file of up to this many objects finds one by id by comparing ids; a larger one (a List) keeps a
 * Map. At 10,000 files a Map per file (and a Set of owners per object) was ~a fifth of what the
 * reader kept through the first read, all of it copied by each scavenge until promoted.
 */
const BY_ID_SCAN = 8;

/** a file's objects one per id, the last document winning, in the order their ids first appear */
function fileObjects(objects: readonly ManifestObject[]): Pick<FileState, 'ids' | 'objs' | 'index'> {
  const ids: string[] = [], objs: ManifestObject[] = [];
  let index: Map<string, number> | undefined;
  for (const o of objects) {
    const id = idOf(o);
    const i = index ? index.get(id) ?? -1 : ids.indexOf(id);
    if (i >= 0) {
      objs[i] = o;
      continue;
    }
    ids.push(id);
    objs.push(o);
    if (index) index.set(id, ids.length - 1);
    else if (ids.length > BY_ID_SCAN) index = new Map(ids.map((x, j) => [x, j]));
  }
  return index ? { ids, objs, index } : { ids, objs };
}

/** f's object with this id */
function objectOf(f: FileState | undefined, id: string): ManifestObject | undefined {
  if (!f) return undefined;
  const i = f.index ? f.index.get(id) ?? -1 : f.ids.indexOf(id);
  return i >= 0 ? f.objs[i] : undefined;
}

/**
 * Reads a folder, then keeps it current file by file. Later files (by path) win over earlier ones for
 * the same object. Which files define each object is indexed, so re-reading one file costs that file,
 * not the folder: a watch event at 10,000 files reads one file and changes one object.
 */
export class ManifestsReader {
  readonly #files = new Map<string, FileState>();
  /** object id -> the path that defines it, or the paths when more than one does (a clash) */
  readonly #owners = new Map<string, string | Set<string>>();
  /** files found empty within emptyGraceMs of their last change while they held objects */
  #deferred: string[] = [];
  /**
   * emptyGraceMs: a file rewritten in place (open with O_TRUNC, then write: Node's writeFileSync,
   * a shell's `>`) is empty between the two, and a re-read then would withdraw its Services until
   * the write's event: for that long a Service's address goes untranslated (seen in the lab as a
   * refused connection around an endpoint change under load). An empty file that held objects keeps
   * them until it is written or has been empty this long (update() names it in `deferred`).
   */
  constructor(readonly dir: string, readonly emptyGraceMs = 1000) {}

  /** whether the file at p (absolute) has been read */
  knows(p: string): boolean {
    return this.#files.has(p);
  }

  /**
   * Whether the file at p (absolute), read before, is now another file (another inode: renamed into
   * place) or gone: complete either way, unlike a file being written in place.
   */
  replaced(p: string): boolean {
    const prev = this.#files.get(p);
    if (prev?.ino === undefined) return false;
    try {
      return statSync(p).ino !== prev.ino;
    } catch {
      return true;
    }
  }

  /** manifest files read (the folder's size, for the rescan's pace) */
  get fileCount(): number {
    return this.#files.size;
  }

  /**
   * Files with more than one name (hard links), as their last stat said. A write through another
   * name, in a folder nobody watches, reaches no watch of ours: inotify tells a folder's watch of a
   * change made through a name in that folder (fsnotify_parent), so the source stats these at each
   * period even when it trusts its watch (ManifestsSource #tick).
   */
  linkedFiles(): string[] {
    const out: string[] = [];
    for (const p of this.#linked) if (this.#files.has(p)) out.push(p);
    return out;
  }

  readonly #linked = new Set<string>();

  #noteLinks(p: string, nlink: number): void {
    if (nlink > 1) this.#linked.add(p);
    else this.#linked.delete(p);
  }

  /**
   * Re-reads the folder; problems are those of files that changed since the last read. With
   * `statLater`, files read now are not stat'ed first: fillStats() gives them their stat key later
   * (a first read at start, where the stat was ~10 % of the read on the first sync's critical path).
   */
  read(opts: { statLater?: boolean } = {}): { objects: Map<Kind, Map<string, KindMap[Kind]>>; problems: ManifestProblem[] } {
    const problems: ManifestProblem[] = [];
    if (opts.statLater) this.#unstated = { readFrom: Date.now(), paths: [], next: 0 };
    this.#statLater = opts.statLater === true;
    try {
      this.#refresh(undefined, problems, new Set());
    } finally {
      this.#statLater = false;
    }
    return this.#objects(problems);
  }

  /** every object's winning definition, by kind (clashes reported into problems) */
  #objects(problems: ManifestProblem[]): { objects: Map<Kind, Map<string, KindMap[Kind]>>; problems: ManifestProblem[] } {
    const out = new Map<Kind, Map<string, KindMap[Kind]>>(KINDS.map((k) => [k, new Map()]));
    for (const id of this.#owners.keys()) {
      const w = this.#winner(id, problems);
      if (w) out.get(w.kind)!.set(w.key, w.obj);
    }
    return { objects: out, problems };
  }

  /**
   * read({ statLater: true }) of a reader that has read nothing yet, with the files' contents read
   * and hashed on the thread pool (FileBatchReader) while this thread parses what has come: the
   * agent's first read at start, on the first sync's critical path, where readFileSync and the hash
   * were ~10 % of the main thread at 10,000 files. The same files in the same order, the same
   * objects, problems and digests; a folder of fewer than FIRST_READ_BATCH_MIN files, or without the
   * addon (or where it fails), is read with readFileSync as read() does.
   */
  async readFirst(): Promise<{ objects: Map<Kind, Map<string, KindMap[Kind]>>; problems: ManifestProblem[] }> {
    const readFrom = Date.now();
    let listed: string[];
    try {
      listed = listFiles(this.dir);
    } catch {
      return this.read({ statLater: true }); // which reports the listing's failure
    }
    if (listed.length < FIRST_READ_BATCH_MIN || this.#files.size) return this.read({ statLater: true });
    let files: FileBatchReader | undefined;
    try {
      files = new FileBatchReader(listed);
    } catch {
      return this.read({ statLater: true });
    }
    const problems: ManifestProblem[] = [], touched = new Set<string>();
    const unstated = this.#unstated = { readFrom, paths: [] as string[], next: 0 };
    try {
      for (let i = 0; i < listed.length; i++) {
        const p = listed[i]!;
        let r: FileRead | undefined;
        if (files) {
          try {
            const got = files.take(i);
            r = got instanceof Promise ? await got : got;
          } catch {
            // the addon failed a batch: the rest with readFileSync
            files.close();
            files = undefined;
          }
        }
        this.#takeUnstated(p, r ?? readText(p), unstated, problems, touched);
      }
    } finally {
      files?.close();
    }
    return this.#objects(problems);
  }

  /**
   * Re-reads the given files (absolute paths; a removed file withdraws its objects), or with no
   * paths the whole folder (listing it, and reading only files whose stat changed), and returns the
   * objects whose winning definition changed. A path that is a folder rescans the whole folder.
   */
  update(paths?: Iterable<string>): { changes: ManifestChange[]; problems: ManifestProblem[]; deferred: string[] } {
    const problems: ManifestProblem[] = [];
    const touched = new Set<string>();
    this.#refresh(paths, problems, touched);
    const deferred = this.#deferred;
    this.#deferred = [];
    return { changes: this.#changes(touched, problems), problems, deferred };
  }

  /**
   * What update([p]) does with the text given instead of read from p (no stat: a later update of p
   * re-reads it). The agent's warm-up (agent/warm.ts) runs the per-file path through a reader of
   * its own with it, so that V8 has optimized that path before the first real change.
   */
  updateText(p: string, text: string): { changes: ManifestChange[]; problems: ManifestProblem[] } {
    const problems: ManifestProblem[] = [];
    const touched = new Set<string>();
    this.#load(p, text, undefined, undefined, problems, touched);
    return { changes: this.#changes(touched, problems), problems };
  }

  #changes(touched: Set<string>, problems: ManifestProblem[]): ManifestChange[] {
    const changes: ManifestChange[] = [];
    for (const id of touched) {
      const w = this.#winner(id, problems);
      const slash = id.indexOf('/');
      changes.push({ kind: id.slice(0, slash) as Kind, key: id.slice(slash + 1), obj: w?.obj });
    }
    return changes;
  }

  /**
   * The files a rescan must re-read: new ones, gone ones, and those whose stat differs from the one
   * they were read at. The folder is listed on the thread pool; the files are stat'ed on the event
   * loop in slices of about sliceMs, each slice a turn of its own, so a change arriving meanwhile
   * waits at most a slice. At 10,000 files the synchronous rescan held the loop ~300 ms every 10 s;
   * stats on the thread pool (16 in flight) freed the loop but cost ~3x the CPU (a promise and a
   * hop per file) and ran beside the syncs, on the same two cores. Hand the result to update(paths),
   * which reads only those.
   */
  async staleFiles(sliceMs = 1, hold?: () => number): Promise<{ paths: string[]; problems: ManifestProblem[] }> {
    const slices = new Slices(sliceMs, 16, hold);
    const seen = new Set<string>(), stale: string[] = [], gone: string[] = [];
    // each folder is listed on the thread pool and its entries looked at in slices: at 10,000 files
    // the whole list, then a Set of it, in one turn held the loop 20-90 ms (load ~8)
    const walk = async (d: string, depth: number): Promise<void> => {
      if (depth > MAX_DEPTH) return;
      for (const ent of await readdir(d, { withFileTypes: true })) {
        if (slices.due()) await slices.next();
        const k = entryKind(ent), p = childPath(d, ent.name);
        if (k === 'folder') await walk(p, depth + 1);
        else if (k === 'file' || (k === 'link' && await stat(p).then((st) => st.isFile(), () => false))) {
          seen.add(p);
          const prev = this.#files.get(p);
          // a file changed in the last 2 s has no key: re-read, as the synchronous rescan does
          if (!prev) stale.push(p);
          else {
            const st = statKeyQuiet(p);
            if (st === undefined || st !== prev.stat) stale.push(p);
          }
        }
      }
    };
    try {
      await walk(join(this.dir), 0);
    } catch (e) {
      return { paths: [], problems: [{ path: this.dir, message: `cannot list the folder: ${(e as Error).message}` }] };
    }
    // a file read meanwhile (a watch event) after its folder was listed is named too: update()
    // looks at each path again, and finds it there
    for (const p of this.#files.keys()) {
      if (slices.due()) await slices.next();
      if (!seen.has(p)) gone.push(p);
    }
    return { paths: gone.concat(stale), problems: [] };
  }

  #refresh(paths: Iterable<string> | undefined, problems: ManifestProblem[], touched: Set<string>): void {
    const full = (): void => {
      let listed: string[];
      try {
        listed = listFiles(this.dir);
      } catch (e) {
        problems.push({ path: this.dir, message: `cannot list the folder: ${(e as Error).message}` });
        return;
      }
      const present = new Set(listed);
      for (const p of [...this.#files.keys()]) if (!present.has(p)) this.#setFile(p, undefined, touched);
      // a folder of 10,000 files: a rescan reads only what changed
      for (const p of listed) this.#reload(p, problems, touched);
    };
    if (paths === undefined) full();
    else {
      for (const p of paths) {
        const what = this.#classify(p);
        if (what === 'folder') {
          full();
          break;
        }
        // a manifest file: #reload's stat key comes from the stat that found it (one statSync, not two)
        if (typeof what === 'object') this.#reload(p, problems, touched, what);
        else if (what === 'gone') this.#setFile(p, undefined, touched);
      }
    }
  }

  /** what a watch event's path is: a manifest file (its stat), gone (or no longer a manifest), a folder, or not ours */
  #classify(p: string): Stats | 'gone' | 'folder' | 'ignore' {
    const rel = relative(this.dir, p);
    if (!rel || rel.startsWith('..')) return 'folder';
    const parts = rel.split(sep);
    // editors' swap and backup files; listFiles' depth bound
    if (parts.some((x) => x.startsWith('.')) || parts.length > 9) return this.#files.has(p) ? 'gone' : 'ignore';
    let st;
    try {
      st = statSync(p);
    } catch {
      if (this.#files.has(p)) return 'gone';
      // a folder moved or removed whole may come as one event naming it
      return EXTENSIONS.test(p) ? 'ignore' : 'folder';
    }
    if (st.isDirectory()) return 'folder';
    if (st.isFile() && EXTENSIONS.test(p)) return st;
    return this.#files.has(p) ? 'gone' : 'ignore';
  }

  #changedWithin(p: string, ms: number): boolean {
    try {
      const s = statSync(p);
      return Math.max(s.ctimeMs, s.mtimeMs) > Date.now() - ms;
    } catch {
      return false;
    }
  }

  /**
   * Files read by read({ statLater }) without a stat (their state has none: a rescan would re-read
   * them), and the epoch ms before that read began; fillStats() takes them in order from `next`.
   */
  #unstated: { readFrom: number; paths: string[]; next: number } | undefined;
  /** read({ statLater }) under way: a file read for the first time is not stat'ed */
  #statLater = false;

  /**
   * Gives the files read by read({ statLater }) their stat key, a few at a time in turns of about
   * sliceMs (a file changed since is left without one: its next update or rescan re-reads it). A
   * stat taken after the read is the read's only where the file was last changed before the read
   * began, by the racy margin keyOf keeps (2 s): else the file gets no key and is re-read.
   */
  async fillStats(sliceMs = 1, stopped: () => boolean = () => false, hold?: () => number): Promise<void> {
    const u = this.#unstated;
    if (!u) return;
    const slices = new Slices(sliceMs, 16, hold);
    while (u.next < u.paths.length) {
      if (stopped()) return;
      if (slices.due()) await slices.next();
      if (this.#unstated !== u) return;
      const p = u.paths[u.next++]!;
      const f = this.#files.get(p);
      // read again since (a watch event): that read stat'ed it
      if (!f || f.stat !== undefined || f.ino !== undefined) continue;
      try {
        const st = statSync(p);
        f.ino = st.ino;
        this.#noteLinks(p, st.nlink);
        if (st.ctimeMs <= u.readFrom - RACY_MS) f.stat = keyOf(st);
      } catch {
        // gone: the watch or the rescan sees that
      }
    }
    if (this.#unstated === u) this.#unstated = undefined;
  }

  /** A first read's file (read, or its read's error), stat'ed later (fillStats). */
  #takeUnstated(p: string, r: FileRead, unstated: { paths: string[] }, problems: ManifestProblem[], touched: Set<string>): void {
    if ('error' in r) {
      if (r.error.code !== 'ENOENT') problems.push({ path: this.#rel(p), message: `cannot read: ${r.error.message}` });
      return;
    }
    this.#load(p, r.text, undefined, undefined, problems, touched, r.digest, r.notUtf8);
    unstated.paths.push(p);
  }

  /** Re-reads one file if its stat changed (taken now, or `known`: just taken); notes the ids whose definitions changed. */
  #reload(p: string, problems: ManifestProblem[], touched: Set<string>, known?: Stats): void {
    const prev = this.#files.get(p);
    if (this.#statLater && this.#unstated && !prev) {
      this.#takeUnstated(p, readText(p), this.#unstated, problems, touched);
      return;
    }
    const { key: st, ino, nlink } = known ? { key: keyOf(known), ino: known.ino, nlink: known.nlink } : statKey(p);
    this.#noteLinks(p, nlink);
    if (prev && st !== undefined && prev.stat === st) return;
    let text: string, notUtf8: boolean | undefined;
    try {
      ({ text, notUtf8 } = decodeManifest(readFileSync(p)));
    } catch (e) {
      // vanished between listing and reading, or unreadable: keep what we had
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') this.#setFile(p, undefined, touched);
      else problems.push({ path: this.#rel(p), message: `cannot read: ${(e as Error).message}` });
      return;
    }
    if (text.length === 0 && this.emptyGraceMs > 0 && prev?.objs.length && this.#changedWithin(p, this.emptyGraceMs)) {
      // most likely truncated by a write in place that has not written yet: keep the objects (and
      // the old stat, so the next event re-reads it)
      this.#deferred.push(p);
      return;
    }
    this.#load(p, text, st, ino, problems, touched, undefined, notUtf8);
  }

  /** Takes text as the file at p's content, read at stat st (undefined: re-read at the next update). */
  #load(p: string, text: string, st: string | undefined, ino: number | undefined, problems: ManifestProblem[], touched: Set<string>, digestOfText?: string, notUtf8?: boolean): void {
    const prev = this.#files.get(p);
    // one-shot crypto.hash: no Hash object per file (~half the CPU of createHash at 10,000 files);
    // the first read's come with the text, hashed where it was read (readFirst)
    const digest = digestOfText ?? hash('sha256', text, 'base64');
    if (prev && prev.digest === digest) {
      prev.stat = st;
      prev.ino = ino;
      return;
    }
    const res = parseManifestText(this.#rel(p), text, notUtf8);
    problems.push(...res.problems);
    // a file that does not parse keeps its last good objects
    const kept = res.ok || !prev ? fileObjects(res.objects) : { ids: prev.ids, objs: prev.objs, index: prev.index };
    this.#setFile(p, { digest, ...kept, stat: st, ino }, touched);
  }

  #setFile(p: string, next: FileState | undefined, touched: Set<string>): void {
    const prev = this.#files.get(p);
    if (next) this.#files.set(p, next);
    else {
      this.#files.delete(p);
      this.#linked.delete(p);
    }
    if (prev) {
      for (let i = 0; i < prev.ids.length; i++) {
        const id = prev.ids[i]!, now = objectOf(next, id);
        if (now === prev.objs[i]) continue;
        touched.add(id);
        if (!now) this.#disown(id, p);
      }
    }
    if (next) {
      for (let i = 0; i < next.ids.length; i++) {
        const id = next.ids[i]!, was = objectOf(prev, id);
        if (was === next.objs[i]) continue;
        touched.add(id);
        if (!was) this.#own(id, p);
      }
    }
  }

  #own(id: string, p: string): void {
    const owners = this.#owners.get(id);
    if (owners === undefined) this.#owners.set(id, p);
    else if (typeof owners === 'string') {
      if (owners !== p) this.#owners.set(id, new Set([owners, p]));
    } else owners.add(p);
  }

  #disown(id: string, p: string): void {
    const owners = this.#owners.get(id);
    if (owners === p) this.#owners.delete(id);
    else if (owners !== undefined && typeof owners !== 'string') {
      owners.delete(p);
      if (owners.size === 1) this.#owners.set(id, owners.values().next().value!);
      else if (!owners.size) this.#owners.delete(id);
    }
  }

  /** the definition that wins (the last path in sort order); a clash is reported */
  #winner(id: string, problems: ManifestProblem[]): ManifestObject | undefined {
    const owners = this.#owners.get(id);
    if (owners === undefined) return undefined;
    if (typeof owners === 'string') return objectOf(this.#files.get(owners), id)!;
    if (!owners.size) return undefined;
    let best: string | undefined, second: string | undefined;
    for (const p of owners) {
      if (best === undefined || p > best) {
        second = best;
        best = p;
      } else if (second === undefined || p > second) second = p;
    }
    const w = objectOf(this.#files.get(best!), id)!;
    if (second !== undefined) {
      const prev = objectOf(this.#files.get(second), id)!;
      problems.push({ path: w.path, line: w.line, message: `${w.kind} ${w.key} is also defined in ${prev.path}:${prev.line}; this one wins` });
    }
    return w;
  }

  /** the folder as listed, and as #rel names it (undefined: path.relative each time), for one working directory */
  #relBase: { cwd: string; prefix: string; rel: string | undefined } | undefined;

  /** p as problems and objects name it: relative to the working directory when under it, else as it is */
  #rel(p: string): string {
    const cwd = process.cwd();
    let b = this.#relBase;
    if (b?.cwd !== cwd) {
      const root = join(this.dir), r = relative(cwd, root);
      // a folder above the working directory, or beside it, takes path.relative each time
      b = this.#relBase = { cwd, prefix: root.endsWith(sep) ? root : root + sep, rel: r.startsWith('..') || isAbsolute(r) ? undefined : r ? r + sep : '' };
    }
    // a listed file's path is the folder's and names: relative() of it is the folder's and those
    // names (path.relative resolved both paths again per file: ~5 % of a first read's garbage)
    if (b.rel !== undefined && p.startsWith(b.prefix) && !p.includes(`${sep}.`)) {
      const r = b.rel + p.slice(b.prefix.length);
      return r && !r.startsWith('..') ? r : p;
    }
    const r = relative(cwd, p);
    return r && !r.startsWith('..') ? r : p;
  }
}

export interface ManifestsSourceOptions {
  dir: string;
  /** quiet time after a change event (a write in place) before re-reading the files it named; default 10 ms (a file read half-written fails to parse, or is re-read at its next event). A rename into place is read at once. */
  debounceMs?: number;
  /**
   * periodic rescan, the fallback when events are missed; default 10 s (3 ms a file when longer);
   * 0 disables. It lists the folder, stats its files and reads only those whose stat changed
   * (staleFiles); with a watch it trusts, only every fullRescanMs or after a burst of events, and a
   * period between stats only the hard-linked files.
   */
  rescanMs?: number;
  /** watch the folder (default true); without, the rescan alone sees changes (a filesystem that sends no events) */
  watch?: boolean;
  /**
   * With a watch it can trust (every watched folder on a local filesystem: WATCH_COMPLETE_FS), the
   * periodic rescan stats every file only this often (default 10 periods), after a burst of events
   * that could have overflowed the watch's queue, and while a watch failed; between, a period stats
   * only the files with hard links. 0: every period is a full rescan (as without a trusted watch).
   */
  fullRescanMs?: number;
  /** whether a watched folder's filesystem sends complete events (default: its statfs type is in WATCH_COMPLETE_FS); tests force either */
  trustWatch?: (folder: string) => boolean;
  /** events since the last full rescan that bring the next one forward (default: a quarter of fs.inotify.max_queued_events) */
  burstEvents?: number;
  /** how long a file emptied right after a change keeps its objects (ManifestsReader); default 1 s */
  emptyGraceMs?: number;
  onProblem?: (p: ManifestProblem) => void;
  logger?: Logger;
  store?: ObjectStore;
}

/** files re-read per update() in a rescan (a slice of the event loop's time holds several) */
const RESCAN_BATCH = 4;
/** the rescan's pause after a watch change: the change's sync (~2-5 ms at 10,000 Services) runs first */
const CHANGE_QUIET_MS = 20;

/** the periodic rescan's interval grows with the folder: this much per file, when longer than rescanMs */
const RESCAN_MS_PER_FILE = 3;
/** with a trusted watch, a full rescan every this many periods (fullRescanMs' default) */
const FULL_RESCAN_PERIODS = 10;
/** a burst of watch events: the full rescan it brings forward waits this long (the burst's own reads first) */
const BURST_RESCAN_DELAY_MS = 1000;

/**
 * Filesystems (statfs f_type, linux/magic.h) whose inotify events are complete for changes made
 * through a watched folder's names on this host: ext2/3/4, XFS, Btrfs, tmpfs (ConfigMap and Secret
 * volumes), ramfs, overlayfs (containers' root), F2FS, ZFS. Not NFS, CIFS, FUSE, 9p and the like,
 * where another host's (or the FUSE server's own) writes send no event.
 */
export const WATCH_COMPLETE_FS: ReadonlySet<number> = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x858458f6, 0x794c7630, 0xf2f52010, 0x2fc12fc1]);

/** fs.inotify.max_queued_events: past it the kernel drops a watch's events (default 16,384) */
function maxQueuedEvents(): number {
  try {
    const n = Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'latin1').trim());
    return n > 0 ? n : 16_384;
  } catch {
    return 16_384;
  }
}

export class ManifestsSource implements Source {
  readonly store: ObjectStore;
  readonly #reader: ManifestsReader;
  readonly #opts: Required<Omit<ManifestsSourceOptions, 'store' | 'onProblem' | 'emptyGraceMs' | 'watch' | 'fullRescanMs' | 'trustWatch' | 'burstEvents'>> &
    Pick<ManifestsSourceOptions, 'onProblem' | 'fullRescanMs' | 'trustWatch'>;
  /** events since the last full rescan that bring the next one forward: fewer than an overflow of the watch's queue needs */
  readonly #burst: number;
  /**
   * A watched folder (or a symlinked manifest's target) on a filesystem whose events are not known
   * to be complete, or whose watch failed: the periodic rescan then stats every file, every period.
   */
  #untrusted: string | undefined;
  /** watch events since the last full rescan began (an overflow drops events only after the queue held max_queued_events) */
  #events = 0;
  /** when the last full rescan began (performance.now()) */
  #fullAt = -Infinity;
  /** a full rescan brought forward by a burst of events is armed */
  #burstArmed = false;
  /** a re-read of files found empty just after a change, when their grace ends */
  #recheck: NodeJS.Timeout | undefined;
  readonly #recheckPaths = new Set<string>();
  /**
   * One watch per folder of the tree (inotify's own, each event naming its entry). Node's recursive
   * watch on Linux is JavaScript over such watches that keeps a record of every entry: at 10,000
   * files each event cost a stat, and a temporary file renamed into place a walk of that record
   * (docs/perf-log.md, session 11).
   */
  readonly #folders = new Map<string, FSWatcher>();
  /**
   * Symlinked manifests (a ConfigMap volume's files link into a folder the kubelet swaps): their
   * targets, watched through the link, since their folder's watch never sees the target change.
   */
  readonly #links = new Map<string, FSWatcher>();
  #debounce: NodeJS.Timeout | undefined;
  #rescan: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #watch: boolean;
  /** the rescan under way, if any: a tick while one runs does not start another */
  #scanning: Promise<void> | undefined;
  /** files named by 'rename' events, re-read on the next turn (#immediate) */
  readonly #renamed = new Set<string>();
  #immediate: NodeJS.Immediate | undefined;
  /** files named by 'change' events since the last re-read */
  readonly #pending = new Set<string>();
  /** an event named no file (or too many): the next re-read lists the folder */
  #pendingAll = false;

  constructor(opts: ManifestsSourceOptions) {
    this.store = opts.store ?? new ObjectStore();
    this.#reader = new ManifestsReader(opts.dir, opts.emptyGraceMs);
    this.#watch = opts.watch ?? true;
    this.#opts = {
      dir: opts.dir,
      debounceMs: opts.debounceMs ?? 10,
      rescanMs: opts.rescanMs ?? 10_000,
      logger: opts.logger ?? silentLogger,
      onProblem: opts.onProblem,
      fullRescanMs: opts.fullRescanMs,
      trustWatch: opts.trustWatch,
    };
    this.#burst = opts.burstEvents ?? Math.max(1, Math.floor(maxQueuedEvents() / 4));
  }

  async start(): Promise<void> {
    const { dir } = this.#opts;
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new KbpError('KBP_ERR_CONFIG', `--manifests ${dir}: not a folder`);
    }
    this.#stopped = false;
    const { objects, problems } = await this.#reader.readFirst();
    for (const p of problems) this.#report(p);
    for (const [kind, objs] of objects) this.store.replace(kind, objs.values());
    this.#readAt = performance.now();
    if (this.#watch) this.#startWatch(dir);
    this.#nextRescan();
    // the stats the first read left out (~10 us a file) come with the first rescan, which afterFirstSync
    // brings forward to the end of the agent's first sync: a timer 3 s after the read ran them in the
    // middle of a first sync that took longer (under load, or from a slow verifier); they serve only
    // the rescans (a file without a key is re-read and its digest compared)
  }

  /** when start() finished reading the folder */
  #readAt = 0;

  /**
   * The first rescan, brought forward from a period after the start to once the agent's first sync
   * is done and the files read at the start are past their racy 2 s (statKey). Thirty seconds after
   * the start at 10,000 files it re-read those without a stat key and V8 compiled its loops on its
   * helper threads (~110 ms of their CPU, ~45 of the main thread's in one trace): a change arriving
   * then waited 0.2-0.4 s on the run queue (docs/perf-log.md, sessions 12 and 13). Run while the agent
   * is starting anyway, the later rescans find the files keyed and the code compiled.
   */
  afterFirstSync(): void {
    if (this.#stopped || !(this.#opts.rescanMs > 0)) return;
    this.#armRescan(Math.max(0, this.#readAt + RACY_MS + 100 - performance.now()));
  }

  /**
   * The next periodic rescan: after rescanMs, or 3 ms per file when that is longer (10 s up to
   * 3,333 files, 30 s at 10,000): a rescan stats every file (~15 us of CPU each with its promise),
   * so the safety net for missed events costs at most ~0.5% of a core at any folder size.
   */
  #nextRescan(): void {
    if (this.#stopped || !(this.#opts.rescanMs > 0)) return;
    this.#armRescan(this.#period());
  }

  /** The rescan, in delayMs (instead of one armed before); the next periodic one is armed after it. */
  #armRescan(delayMs: number): void {
    if (this.#rescan) clearTimeout(this.#rescan);
    this.#rescan = setTimeout(() => {
      this.#tick()
        .catch((e: unknown) => this.#report({ path: this.#opts.dir, message: `rescan failed: ${(e as Error).message}` }))
        .finally(() => this.#nextRescan());
    }, delayMs);
    this.#rescan.unref();
  }

  /**
   * A period of the safety net. A full rescan (every file stat'ed: ~0.1-0.17 s of CPU at 10,000
   * files, most of an idle agent's CPU) where events can be missed: no watch, a watch that failed, a
   * folder on a filesystem whose events are not known complete (network and FUSE filesystems do not
   * report other hosts' writes), and after a burst of events. On a local filesystem a folder's watch
   * misses nothing made through a name in it but by an overflow of the watch's queue, which drops
   * events only once it holds fs.inotify.max_queued_events unread: those are delivered later, so a
   * quarter of that count since the last full rescan brings the next one forward. Else a period
   * stats only the hard-linked files (a write through another name), and a full rescan still comes
   * every fullRescanMs (10 periods by default: 5 min at 10,000 files) as the last net.
   */
  async #tick(): Promise<void> {
    const period = this.#period();
    const fullMs = this.#opts.fullRescanMs ?? FULL_RESCAN_PERIODS * period;
    const full = !this.#watch || this.#untrusted !== undefined || !(fullMs > 0) || this.#events >= this.#burst ||
      performance.now() - this.#fullAt >= fullMs - period / 2;
    if (full) return this.scan();
    const linked = this.#reader.linkedFiles();
    if (linked.length && !this.#stopped) this.#apply(this.#reader.update(linked));
  }

  /** the periodic rescan's interval: rescanMs, or 3 ms per file when that is longer */
  #period(): number {
    return Math.max(this.#opts.rescanMs, RESCAN_MS_PER_FILE * this.#reader.fileCount);
  }

  /** a watch event: counted toward a burst that brings the next full rescan forward */
  #countEvent(): void {
    if (++this.#events < this.#burst || this.#burstArmed || this.#stopped || !(this.#opts.rescanMs > 0)) return;
    this.#burstArmed = true;
    // at most one full rescan a period, as without a trusted watch: a storm of events does not
    // bring them back to back
    const delay = Math.max(BURST_RESCAN_DELAY_MS, this.#fullAt + this.#period() - performance.now());
    this.#opts.logger.debug({ events: this.#events, delayMs: Math.round(delay) }, 'manifests: a burst of watch events; a full rescan brought forward (the watch\'s queue may have overflowed)');
    this.#armRescan(delay);
  }

  /** whether folder d's watch (or a link target's) reports every change made through its names */
  #trusts(d: string): boolean {
    if (this.#opts.trustWatch) return this.#opts.trustWatch(d);
    let type: number;
    try {
      type = statfsSync(d).type;
    } catch {
      return false;
    }
    if (WATCH_COMPLETE_FS.has(type)) return true;
    this.#opts.logger.info({ path: d, fsType: `0x${type.toString(16)}` },
      'manifests: a watched folder is on a filesystem whose events may be incomplete; every periodic rescan stats every file');
    return false;
  }

  #startWatch(dir: string): void {
    this.#watchFolder(join(dir), 0);
  }

  /** Watches folder d (depth below the root, as listFiles walks) and the folders and symlinked manifests in it. */
  #watchFolder(d: string, depth: number): void {
    if (this.#stopped || depth > MAX_DEPTH || this.#folders.has(d)) return;
    let w: FSWatcher;
    try {
      w = watch(d, (ev, name) => this.#onFolderEvent(d, depth, ev, name));
    } catch (e) {
      // the root must be watchable (start() checked it is a folder); a folder below may be gone already
      if (depth === 0) this.#report({ path: d, message: `watch failed, relying on the periodic rescan: ${(e as Error).message}` });
      // (a folder gone meanwhile is no missed watch; one the watch limit refused, ENOSPC, is)
      if (depth === 0 || (e as NodeJS.ErrnoException).code !== 'ENOENT') this.#untrusted ??= d;
      return;
    }
    w.on('error', (e) => {
      this.#report({ path: d, message: `watch failed, relying on the periodic rescan: ${e.message}` });
      this.#untrusted ??= d;
      this.#unwatch(d);
    });
    w.unref();
    this.#folders.set(d, w);
    if (this.#untrusted === undefined && !this.#trusts(d)) this.#untrusted = d;
    let ents: Dirent[];
    try {
      ents = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // gone meanwhile: its parent's event says so
    }
    for (const ent of ents) {
      const k = entryKind(ent), p = childPath(d, ent.name);
      if (k === 'folder') this.#watchFolder(p, depth + 1);
      else if (k === 'link') this.#watchLink(p);
    }
  }

  /** Watches the file a symlinked manifest points to, as a change of the link (re-armed after each event: the target may be another file now). */
  #watchLink(p: string): void {
    if (this.#stopped || this.#links.has(p)) return;
    let w: FSWatcher;
    try {
      w = watch(p, () => {
        this.#countEvent();
        this.#links.get(p)?.close();
        this.#links.delete(p);
        this.#schedule('rename', p);
        this.#watchLink(p);
      });
    } catch {
      return; // a dangling link: nothing to watch until it is replaced (its folder's event)
    }
    w.on('error', () => {
      w.close();
      if (this.#links.get(p) === w) this.#links.delete(p);
    });
    w.unref();
    this.#links.set(p, w);
    if (this.#untrusted === undefined && !this.#trusts(p)) this.#untrusted = p;
  }

  /** Stops watching folder d and everything watched below it. */
  #unwatch(d: string): void {
    const below = d + sep;
    for (const m of [this.#folders, this.#links]) {
      for (const [p, w] of m) {
        if (p !== d && !p.startsWith(below)) continue;
        w.close();
        m.delete(p);
      }
    }
  }

  /**
   * An event of folder d's watch. The hot path (a known file written or renamed into place) goes
   * straight to #schedule; only an entry not read before is looked at (a new folder or symlinked
   * manifest to watch too), and a name that was a watched folder or link is re-checked.
   */
  #onFolderEvent(d: string, depth: number, ev: string, name: string | Buffer | null): void {
    if (this.#stopped) return;
    this.#countEvent();
    if (name === null) return this.#schedule(ev, undefined);
    const n = name.toString();
    const p = childPath(d, n);
    // a dot name (an editor's swap file, a tool's temporary before its rename into place) is never
    // read (listFiles skips it): its events arm nothing. They had armed the quiet-time timer, whose
    // re-read 10 ms later stat'ed a file gone by then (an exception) on every change so made
    if (n.startsWith('.') && !this.#reader.knows(p)) return;
    if (ev === 'rename' && !this.#reader.knows(p)) {
      let st;
      try {
        st = lstatSync(p);
      } catch {
        st = undefined;
      }
      if (!st || !st.isDirectory()) this.#unwatch(p);
      if (st?.isDirectory()) this.#watchFolder(p, depth + 1);
      else if (st?.isSymbolicLink() && EXTENSIONS.test(n)) this.#watchLink(p);
    } else if (ev === 'rename' && this.#links.has(p)) {
      // a link replaced by another (or by a file): watch what it is now
      this.#links.get(p)!.close();
      this.#links.delete(p);
      if (safeIsLink(p)) this.#watchLink(p);
    }
    this.#schedule(ev, p);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const w of this.#folders.values()) w.close();
    for (const w of this.#links.values()) w.close();
    this.#folders.clear();
    this.#links.clear();
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#immediate = undefined;
    this.#renamed.clear();
    if (this.#rescan) clearTimeout(this.#rescan);
    if (this.#recheck) clearTimeout(this.#recheck);
    this.#debounce = this.#rescan = this.#recheck = undefined;
    this.#recheckPaths.clear();
    this.#pending.clear();
    this.#pendingAll = false;
  }

  /**
   * Rescans the folder (the safety net for missed watch events): lists and stats it off the event
   * loop, then re-reads only the files whose stat changed and applies the differences to the store.
   * Resolves when done; a call while a rescan runs joins it.
   */
  scan(): Promise<void> {
    return this.#scanning ??= (async () => {
      this.#fullAt = performance.now();
      this.#events = 0;
      this.#burstArmed = false;
      try {
        // the start's files read without a stat (read({ statLater })) get their key first, by the rule
        // fillStats keeps (the first rescan, afterFirstSync's, is where they get it): else it would find
        // them all keyless and re-read the whole folder
        const hold = (): number => this.#holdMs();
        await this.#reader.fillStats(1, () => this.#stopped, hold);
        const { paths, problems } = await this.#reader.staleFiles(1, hold);
        for (const p of problems) this.#report(p);
        // re-read in slices, a few files at a time, each slice a turn of its own: a file read at
        // start within 2 s of its last write has no stat key and comes back here (every file, when
        // the folder was written just before the agent started). In one update the first rescan at
        // 10,000 files held the loop ~0.25 s of CPU, and a change arriving then waited for all of it
        // (the 0.2-1.2 s change-to-kernel outliers of docs/perf-log.md, session 11)
        const slices = new Slices(1, 1, hold);
        for (let next = 0; next < paths.length && !this.#stopped;) {
          this.#apply(this.#reader.update(paths.slice(next, next += RESCAN_BATCH)));
          if (next < paths.length && slices.due()) await slices.next();
        }
      } finally {
        this.#scanning = undefined;
      }
    })();
  }

  /** a watch event's re-read: its changes start the rescan's quiet time (#holdMs) */
  #applyWatched(r: { changes: ManifestChange[]; problems: ManifestProblem[]; deferred: string[] }): void {
    if (r.changes.length) this.#changedAt = performance.now();
    this.#apply(r);
  }

  /** when a watch event last changed the store (performance.now()) */
  #changedAt = -Infinity;

  /**
   * The rescan's wait before its next slice: the rest of CHANGE_QUIET_MS after a watch change. A
   * rescan (every 30 s at 10,000 files: ~0.15 s of stats in 1 ms slices) that met a change put its
   * slices between the change's read and its sync, and V8's helpers beside them on the same cores
   */
  #holdMs(): number {
    const since = performance.now() - this.#changedAt;
    return since < CHANGE_QUIET_MS ? Math.ceil(CHANGE_QUIET_MS - since) : 0;
  }

  #apply({ changes, problems, deferred }: { changes: ManifestChange[]; problems: ManifestProblem[]; deferred: string[] }): void {
    for (const p of problems) this.#report(p);
    if (deferred.length) {
      this.#opts.logger.debug({ paths: deferred.map((p) => relative(this.#opts.dir, p)) },
        'manifest emptied right after a change: its objects are kept until it is written or stays empty');
      for (const p of deferred) this.#recheckPaths.add(p);
      // re-read when the grace ends (one still within its grace is deferred again)
      this.#recheck ??= setTimeout(() => {
        this.#recheck = undefined;
        const paths = [...this.#recheckPaths];
        this.#recheckPaths.clear();
        if (!this.#stopped) this.#apply(this.#reader.update(paths));
      }, this.#reader.emptyGraceMs + 50);
      this.#recheck.unref();
    }
    applyChanges(this.store, changes);
  }

  /**
   * A watch event. A known file replaced by a rename into place (another inode) or removed (what
   * editors and kubectl-like tools do to save) is complete as it is: it is re-read at once (the next
   * turn of the event loop, events of the same turn together), not after the quiet time, which was
   * 10 of the 17 ms from a save to the kernel. A file written in place ('change' events) or new is
   * re-read after the quiet time; the whole folder when an event names no file.
   */
  #schedule(ev: string, path: string | undefined): void {
    if (this.#stopped) return;
    // a new file's 'rename' may be its creation, written after: it waits the quiet time. A rename
    // into place may also come as 'change' (Node's recursive watch reported it so): the inode tells
    if (path !== undefined && this.#renamed.size < 1000 && (ev === 'rename' ? this.#reader.knows(path) : this.#reader.replaced(path))) {
      this.#renamed.add(path);
      this.#immediate ??= setImmediate(() => {
        this.#immediate = undefined;
        const paths = [...this.#renamed];
        this.#renamed.clear();
        if (!this.#stopped) this.#applyWatched(this.#reader.update(paths));
      });
      this.#immediate.unref();
      return;
    }
    if (path === undefined || this.#pending.size >= 1000) this.#pendingAll = true;
    else this.#pending.add(path);
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      if (this.#stopped) return;
      const paths = this.#pendingAll ? undefined : [...this.#pending];
      this.#pending.clear();
      this.#pendingAll = false;
      this.#applyWatched(this.#reader.update(paths));
    }, this.#opts.debounceMs);
    this.#debounce.unref();
  }

  #report(p: ManifestProblem): void {
    this.#opts.logger.warn({ code: 'KBP_ERR_MANIFEST', path: p.path, line: p.line }, `manifest: ${formatProblem(p)}`);
    this.#opts.onProblem?.(p);
  }
}

/** One-shot read for `compile`: the objects of a folder in a fresh store, and the problems found. */
export function readManifests(dir: string): { store: ObjectStore; problems: ManifestProblem[]; files: number } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new KbpError('KBP_ERR_CONFIG', `--manifests ${dir}: not a folder`);
  }
  const store = new ObjectStore();
  const reader = new ManifestsReader(dir);
  const { objects, problems } = reader.read();
  for (const [kind, objs] of objects) store.replace(kind, objs.values());
  return { store, problems, files: reader.fileCount };
}
