// Standalone source: a folder of YAML (or JSON) manifests, the way `kubectl apply -f DIR` reads it:
// .yaml/.yml/.json files, several documents per file, `kind: List` unwrapped, objects without a
// namespace put in "default". Only Service, EndpointSlice and Node are kept; other kinds are ignored.
//
// Watched with fs.watch (debounced), plus a periodic rescan because fs.watch misses events on some
// filesystems and across editors' rename-into-place saves. A file that does not parse is reported
// by path and line and skipped; if it parsed before, its last good objects stay until it is fixed or
// removed, so a half-saved edit does not withdraw a Service. Re-reading an unchanged file keeps the
// same object identities, so the store (and the sync runner behind it) sees no change.
import { existsSync, readdirSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join, relative } from 'node:path';
import { Composer, LineCounter, Parser } from 'yaml';
import { ObjectStore, objectKey, type Kind, type KindMap, type Source } from './types.js';
import { KbpError } from '../util/errors.js';
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
 * Parses one file's text. ok is false when the file has a syntax error (then objects is empty and
 * problems names the line); objects of other kinds are dropped silently.
 */
export function parseManifestText(path: string, text: string): { ok: boolean; objects: ManifestObject[]; problems: ManifestProblem[] } {
  const problems: ManifestProblem[] = [];
  const objects: ManifestObject[] = [];
  const lc = new LineCounter();
  // documents one at a time (the yaml package's streaming Parser + Composer): a folder with a file
  // of 20,000 documents must not hold 20,000 syntax trees at once
  const values: Array<{ line: number; value: unknown }> = [];
  const syntax: ManifestProblem[] = [];
  try {
    const composer = new Composer({ prettyErrors: false, uniqueKeys: false });
    for (const doc of composer.compose(new Parser(lc.addNewLine).parse(text), true, text.length)) {
      const err = doc.errors[0];
      if (err) {
        const pos = lc.linePos(err.pos[0]);
        const msg = err.message.replace(/\n[\s\S]*/, '').replace(/ at line \d+, column \d+:?$/, '');
        syntax.push({ path, line: pos.line, col: pos.col, message: `YAML syntax error: ${msg}` });
        continue;
      }
      if (syntax.length) continue; // the file is rejected whole: no need to convert the rest
      const line = lc.linePos(doc.contents?.range[0] ?? 0).line;
      try {
        values.push({ line, value: doc.toJS({ maxAliasCount: 1000 }) });
      } catch (e) {
        problems.push({ path, line, message: `cannot read document: ${(e as Error).message}` });
        values.push({ line, value: undefined });
      }
    }
  } catch (e) {
    return { ok: false, objects, problems: [{ path, message: `cannot parse: ${(e as Error).message}` }] };
  }
  if (syntax.length) return { ok: false, objects: [], problems: syntax };
  for (const { line, value } of values) {
    if (value === null || value === undefined) continue; // an empty document (a trailing ---)
    const add = (v: unknown, where: string): void => {
      if (!isObj(v)) {
        problems.push({ path, line, message: `${where}is not an object; ignored` });
        return;
      }
      if (v.kind === 'List' && Array.isArray(v.items)) {
        v.items.forEach((item, i) => add(item, `item ${i} of a List `));
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
      const obj = v as unknown as KindMap[Kind];
      objects.push({ kind, key: objectKey(obj), obj, path, line });
    };
    add(value, '');
  }
  return { ok: true, objects, problems };
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    // bounded depth: a symlink loop must not hang a scan
    if (depth > 8) return;
    for (const ent of readdirSync(d, { withFileTypes: true })) {
      if (ent.name.startsWith('.')) continue; // editors' swap and backup files
      const p = join(d, ent.name);
      if (ent.isDirectory()) walk(p, depth + 1);
      else if (EXTENSIONS.test(ent.name) && (ent.isFile() || (ent.isSymbolicLink() && safeIsFile(p)))) out.push(p);
    }
  };
  walk(dir, 0);
  return out.sort();
}

function safeIsFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

interface FileState {
  text: string;
  objects: ManifestObject[];
  /** what stat said when text was read: an unchanged stat skips the read */
  stat?: string;
}

/**
 * ino, size and times: a file rewritten in place or replaced by a rename changes one of them. A file
 * changed in the last 2 s gets no key (re-read next time): timestamps can be as coarse as a clock
 * tick, so a same-size write in the same tick would go unseen (git's "racy" index entries).
 */
function statKey(p: string): string | undefined {
  try {
    const s = statSync(p, { bigint: true });
    if (Number(s.ctimeNs / 1_000_000n) > Date.now() - 2000) return undefined;
    return `${s.ino}|${s.size}|${s.mtimeNs}|${s.ctimeNs}`;
  } catch {
    return undefined;
  }
}

/** Reads a folder once. Later files (by path) win over earlier ones for the same object. */
export class ManifestsReader {
  readonly #files = new Map<string, FileState>();
  constructor(readonly dir: string) {}

  /** Re-reads the folder; problems are those of files that changed since the last read. */
  read(): { objects: Map<Kind, Map<string, KindMap[Kind]>>; problems: ManifestProblem[] } {
    const problems: ManifestProblem[] = [];
    let paths: string[];
    try {
      paths = listFiles(this.dir);
    } catch (e) {
      problems.push({ path: this.dir, message: `cannot list the folder: ${(e as Error).message}` });
      paths = [...this.#files.keys()].sort();
      return { objects: this.#collect(paths, problems), problems };
    }
    const present = new Set(paths);
    for (const p of [...this.#files.keys()]) if (!present.has(p)) this.#files.delete(p);
    for (const p of paths) {
      const prevState = this.#files.get(p);
      // a folder of 10,000 files: a rescan reads only what changed
      const st = statKey(p);
      if (prevState && st !== undefined && prevState.stat === st) continue;
      let text: string;
      try {
        text = readFileSync(p, 'utf8');
      } catch (e) {
        // vanished between listing and reading, or unreadable: keep what we had
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') this.#files.delete(p);
        else problems.push({ path: this.#rel(p), message: `cannot read: ${(e as Error).message}` });
        continue;
      }
      const prev = prevState;
      if (prev && prev.text === text) {
        prev.stat = st;
        continue;
      }
      const res = parseManifestText(this.#rel(p), text);
      problems.push(...res.problems);
      if (res.ok) this.#files.set(p, { text, objects: res.objects, stat: st });
      else if (prev) this.#files.set(p, { text, objects: prev.objects, stat: st });
      else this.#files.set(p, { text, objects: [], stat: st });
    }
    return { objects: this.#collect(paths.filter((p) => this.#files.has(p)), problems), problems };
  }

  #collect(paths: string[], problems: ManifestProblem[]): Map<Kind, Map<string, KindMap[Kind]>> {
    const out = new Map<Kind, Map<string, KindMap[Kind]>>(KINDS.map((k) => [k, new Map()]));
    const from = new Map<string, ManifestObject>();
    for (const p of paths) {
      for (const o of this.#files.get(p)?.objects ?? []) {
        const id = `${o.kind}/${o.key}`;
        const prev = from.get(id);
        if (prev && prev.obj !== o.obj) {
          problems.push({ path: o.path, line: o.line, message: `${o.kind} ${o.key} is also defined in ${prev.path}:${prev.line}; this one wins` });
        }
        from.set(id, o);
        out.get(o.kind)!.set(o.key, o.obj);
      }
    }
    return out;
  }

  #rel(p: string): string {
    const r = relative(process.cwd(), p);
    return r && !r.startsWith('..') ? r : p;
  }
}

export interface ManifestsSourceOptions {
  dir: string;
  /** quiet time after a change event before rescanning; default 100 ms */
  debounceMs?: number;
  /** periodic rescan, the fallback when events are missed; default 10 s; 0 disables */
  rescanMs?: number;
  onProblem?: (p: ManifestProblem) => void;
  logger?: Logger;
  store?: ObjectStore;
}

export class ManifestsSource implements Source {
  readonly store: ObjectStore;
  readonly #reader: ManifestsReader;
  readonly #opts: Required<Omit<ManifestsSourceOptions, 'store' | 'onProblem'>> & Pick<ManifestsSourceOptions, 'onProblem'>;
  #watcher: FSWatcher | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #rescan: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: ManifestsSourceOptions) {
    this.store = opts.store ?? new ObjectStore();
    this.#reader = new ManifestsReader(opts.dir);
    this.#opts = {
      dir: opts.dir,
      debounceMs: opts.debounceMs ?? 100,
      rescanMs: opts.rescanMs ?? 10_000,
      logger: opts.logger ?? silentLogger,
      onProblem: opts.onProblem,
    };
  }

  async start(): Promise<void> {
    const { dir } = this.#opts;
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new KbpError('KBP_ERR_CONFIG', `--manifests ${dir}: not a folder`);
    }
    this.#stopped = false;
    this.scan();
    try {
      this.#watcher = watch(dir, { recursive: true }, () => this.#schedule());
    } catch {
      this.#watcher = watch(dir, () => this.#schedule());
    }
    this.#watcher.on('error', (e) => {
      this.#report({ path: dir, message: `watch failed, relying on the periodic rescan: ${e.message}` });
      this.#watcher?.close();
      this.#watcher = undefined;
    });
    this.#watcher.unref?.();
    if (this.#opts.rescanMs > 0) {
      this.#rescan = setInterval(() => this.scan(), this.#opts.rescanMs);
      this.#rescan.unref();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#rescan) clearInterval(this.#rescan);
    this.#debounce = this.#rescan = undefined;
  }

  /** Reads the folder now and applies the differences to the store. */
  scan(): void {
    const { objects, problems } = this.#reader.read();
    for (const p of problems) this.#report(p);
    for (const [kind, objs] of objects) this.store.replace(kind, objs.values());
  }

  #schedule(): void {
    if (this.#stopped) return;
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      if (!this.#stopped) this.scan();
    }, this.#opts.debounceMs);
    this.#debounce.unref();
  }

  #report(p: ManifestProblem): void {
    this.#opts.logger.warn({ code: 'KBP_ERR_MANIFEST', path: p.path, line: p.line }, `manifest: ${formatProblem(p)}`);
    this.#opts.onProblem?.(p);
  }
}

/** One-shot read for `compile`: the objects of a folder in a fresh store, and the problems found. */
export function readManifests(dir: string): { store: ObjectStore; problems: ManifestProblem[] } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new KbpError('KBP_ERR_CONFIG', `--manifests ${dir}: not a folder`);
  }
  const store = new ObjectStore();
  const { objects, problems } = new ManifestsReader(dir).read();
  for (const [kind, objs] of objects) store.replace(kind, objs.values());
  return { store, problems };
}
