// Reads many files on the thread pool, in order, a batch at a time, a few batches ahead of the
// reader: the manifests source's first read at start, where readFileSync (open, fstat, read, close
// each file on the main thread) and the sha256 of each file were ~10 % of the main thread, the
// critical path of the first sync (docs/perf-log.md, sessions 22 and 23). The addon reads and hashes a
// batch (native/src/read-files.h, in kbp_maglev.node, which loads wherever Node does); the main
// thread decodes each file's text from the batch's buffer and parses it while the next batches are
// read. Optional: without the addon (not built, KBP_READ_NATIVE=0) nothing here is used and the
// files are read with readFileSync.
import { decodeManifest } from './decode.js';
import { createRequire } from 'node:module';
import { getSystemErrorMessage, getSystemErrorName } from 'node:util';
import { findAddon } from '../util/addon-path.js';

/** one file as read: its text and the sha256 (base64) of that text (undefined: not known), or the read's error */
export type FileRead = { text: string; digest: string | undefined; notUtf8?: true } | { error: NodeJS.ErrnoException };

interface Batch {
  data: ArrayBuffer;
  lens: Int32Array;
  errs: Int32Array;
  ops: Uint8Array;
  digests?: ArrayBuffer;
}

interface FilesAddon {
  readFiles(paths: string[]): Promise<Batch>;
}

let addon: FilesAddon | null | undefined;

function load(): FilesAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (process.env.KBP_READ_NATIVE === '0') return addon;
  const { found } = findAddon('kbp_maglev.node', 'KBP_MAGLEV_ADDON', import.meta.url);
  if (!found) return addon;
  try {
    const a = createRequire(import.meta.url)(found) as Partial<FilesAddon>;
    // an addon built before readFiles was added serves the Maglev fill only
    if (typeof a.readFiles === 'function') addon = a as FilesAddon;
  } catch {
    // built for another Node
  }
  return addon;
}

/** whether FileBatchReader can run here */
export function batchReadAvailable(): boolean {
  return load() !== null;
}

/** the error readFileSync throws for this errno in this call */
function readError(errno: number, op: number, path: string): NodeJS.ErrnoException {
  const syscall = op === 1 ? 'open' : 'read';
  const code = getSystemErrorName(-errno);
  const e: NodeJS.ErrnoException = new Error(`${code}: ${getSystemErrorMessage(-errno)}, ${syscall}${op === 1 ? ` '${path}'` : ''}`);
  return Object.assign(e, { errno: -errno, code, syscall, ...(op === 1 && { path }) });
}

/**
 * paths' contents in order through take(i). Batches of `batch` files are asked for `ahead` at a time:
 * the memory held stays a few batches whatever the folder's size.
 */
export class FileBatchReader {
  readonly #paths: readonly string[];
  readonly #batch: number;
  readonly #ahead: number;
  readonly #addon: FilesAddon;
  /** batches asked for so far */
  #asked = 0;
  readonly #arrived = new Map<number, Batch | Error>();
  readonly #pending = new Map<number, Promise<Batch>>();
  /** the batch being taken from, and where its next file starts in its buffer */
  #cur: { id: number; b: Batch; buf: Buffer; digests: Buffer | undefined; at: number; next: number } | undefined;

  constructor(paths: readonly string[], opts: { batch?: number; ahead?: number } = {}) {
    const a = load();
    if (!a) throw new Error('kbp_maglev.node with readFiles is not available (npm run build:native builds it)');
    this.#addon = a;
    this.#paths = paths;
    this.#batch = opts.batch ?? 128;
    this.#ahead = opts.ahead ?? 8;
    for (let k = 0; k < this.#ahead; k++) this.#ask();
  }

  #ask(): void {
    const from = this.#asked * this.#batch;
    if (from >= this.#paths.length) return;
    const id = this.#asked++;
    const p = this.#addon.readFiles(this.#paths.slice(from, from + this.#batch));
    this.#pending.set(id, p);
    p.then((b) => this.#arrived.set(id, b), (e: unknown) => this.#arrived.set(id, e instanceof Error ? e : new Error(String(e))))
      .finally(() => this.#pending.delete(id));
  }

  /**
   * paths[i]'s content; i must go up by one from 0. A promise only where its batch has not arrived
   * yet: the rest of a batch is returned at once. Rejects (throws) where the addon failed a batch.
   */
  take(i: number): FileRead | Promise<FileRead> {
    const id = Math.floor(i / this.#batch);
    if (this.#cur?.id !== id) {
      const got = this.#arrived.get(id);
      if (got === undefined) {
        const p = this.#pending.get(id);
        if (!p) throw new Error(`FileBatchReader: batch ${id} was never asked for (take in order from 0)`);
        return p.then((b) => { this.#arrived.delete(id); this.#start(id, b); return this.#next(i); });
      }
      this.#arrived.delete(id);
      if (got instanceof Error) throw got;
      this.#start(id, got);
    }
    return this.#next(i);
  }

  #start(id: number, b: Batch): void {
    this.#cur = { id, b, buf: Buffer.from(b.data), digests: b.digests && Buffer.from(b.digests), at: 0, next: 0 };
    // the next batch asked for as this one is taken: `ahead` batches read or in flight
    this.#ask();
  }

  #next(i: number): FileRead {
    const c = this.#cur!;
    const k = c.next++;
    if (c.b.errs[k]) return { error: readError(c.b.errs[k]!, c.b.ops[k]!, this.#paths[i]!) };
    const d = decodeManifest(c.buf, c.at, c.at += c.b.lens[k]!);
    // the hash of the bytes is the text's where decoding replaced nothing (readFileSync's text of
    // bytes that are not UTF-8 holds U+FFFD for each bad sequence: JavaScript hashes that text) and
    // the bytes are UTF-8 (not UTF-16)
    const digest = c.digests && !d.utf16 && !d.replaced ? c.digests.toString('base64', k * 32, k * 32 + 32) : undefined;
    return d.notUtf8 ? { text: d.text, digest, notUtf8: true } : { text: d.text, digest };
  }

  /** drops the batches not taken (any still being read are dropped when they arrive) */
  close(): void {
    this.#cur = undefined;
    this.#arrived.clear();
    this.#asked = Number.MAX_SAFE_INTEGER / this.#batch;
  }
}
