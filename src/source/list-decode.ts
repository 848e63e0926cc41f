// A large LIST's pages pruned on a thread of their own. At 100,000 Services the list's main thread is
// the start's bottleneck (docs/perf-log.md, session 22: 77-93 % of a core, the other core half idle), and
// json-prune.ts's scan of the page's bytes is half of what a page costs it (bench/list-split.ts: 1.1 of
// 2.1 s of CPU for 400 pages; the items' JSON.parse 0.45, slimObject 0.17, the store 0.4). Here a
// worker runs that scan, and the main thread gets back what the scan would have handed it, in a form
// cheap to read: every item's pruned text, one after the other, in one buffer (moved, not copied), and
// where the scan decoded a slice's ports or endpoints itself, their ids in tables sent once and, for
// the endpoints, a short JSON array of the addresses and part ids. The main thread then does what it
// did after the scan (an item's JSON.parse, admit, the store), from strings made one item at a time
// (young generation, as before). Objects cloned across threads would cost the main thread about what
// JSON.parse does.
//
// The list (requests, continue tokens, 410, errors, its resourceVersion) stays on the main thread
// (kube-http.ts): only the pages' bytes go over, and come back (their buffers are the answers' spares).
// The worker is started when a list says it is large (its first page's remainingItemCount), and pages
// are decoded here only once it says it is ready: its own start (~50-100 ms, on the other core)
// never delays a page. A worker that fails fails the list it was decoding (the informer lists again)
// and is not used again in this process.
import { Worker, type MessagePort } from 'node:worker_threads';
import { KbpError } from '../util/errors.js';
import { scanListBytes, type PrunedKind } from './json-prune.js';
import { conditionsKey, endpointPart, sharedName, sharedPorts, type DecodedSlice, type EndpointPart } from './slim.js';

/** a page to decode: bytes [0, len) of buf (moved to the worker and back) */
interface DecodeRequest { id: number; kind: PrunedKind; buf: ArrayBuffer; len: number; nodeName: string | undefined }
/** an endpoint part as the main thread makes it: conditions key, ref (0/1), node, zone */
type PartRow = [number, number, string | null, string | null];
/**
 * A page decoded: the page's bytes back (raw); undefined env: the scan refused the page. Otherwise,
 * per item, four numbers in meta: the end of its text in out, the end of its packed endpoints' JSON
 * (= the text's end when none), its ports' id (-1: none decoded), plain (0/1); an item starts where
 * the one before ended. parts and ports: the tables' rows new since the last reply, in id order.
 */
interface DecodeReply {
  id: number; raw: ArrayBuffer; env?: string | undefined; out?: ArrayBuffer; meta?: Int32Array;
  parts: PartRow[]; ports: string[]; error?: string;
}
type WorkerMessage = { ready: true } | DecodeReply;

// ---- the worker's side ----

/** Serves decode requests on port (list-decode-worker.ts, in the worker). */
export function serveListDecode(port: MessagePort): void {
  const partIds = new Map<EndpointPart, number>(), portIds = new Map<readonly unknown[], number>();
  /** out buffers the main thread gave back, for the next pages */
  const spares: ArrayBuffer[] = [];
  port.on('message', (m: DecodeRequest | { spare: ArrayBuffer }) => {
    if ('spare' in m) {
      // (as many as pages may be held: kube-http.ts AHEAD_PAGES for two lists)
      if (spares.length < 8) spares.push(m.spare);
      return;
    }
    const parts: PartRow[] = [], ports: string[] = [];
    let out: Buffer | undefined, meta: number[] = [], o = 0;
    let env: string | undefined;
    try {
      const src = Buffer.from(m.buf, 0, m.len);
      const take = (need: number): Buffer => {
        for (let k = 0; k < spares.length; k++) if (spares[k]!.byteLength >= need) return Buffer.from(spares.splice(k, 1)[0]!);
        return Buffer.allocUnsafeSlow(need);
      };
      out = take(Math.max(m.len, 64 * 1024));
      const room = (n: number) => {
        if (o + n <= out!.length) return;
        const grown = Buffer.allocUnsafeSlow(Math.max(o + n, 2 * out!.length));
        out!.copy(grown, 0, 0, o);
        out = grown;
      };
      env = scanListBytes(m.kind, src, m.len, (b, n, plain, decoded) => {
        room(n);
        b.copy(out!, o, 0, n);
        o += n;
        const textEnd = o;
        let portsId = -1;
        if (decoded?.ports) {
          portsId = portIds.get(decoded.ports) ?? -1;
          if (portsId < 0) {
            portIds.set(decoded.ports, portsId = portIds.size);
            ports.push(JSON.stringify(decoded.ports));
          }
        }
        if (decoded?.packed) {
          const p = decoded.packed, ids = new Array<string | number>(p.length);
          for (let k = 0; k < p.length; k++) {
            const x = p[k]!;
            if (typeof x === 'string') ids[k] = x;
            else {
              let id = partIds.get(x);
              if (id === undefined) {
                partIds.set(x, id = partIds.size);
                parts.push([conditionsKey(x.conditions), x.ref ? 1 : 0, x.nodeName ?? null, x.zone ?? null]);
              }
              ids[k] = id;
            }
          }
          // (ASCII: the scan decodes only endpoints whose strings are ASCII without escapes)
          const text = JSON.stringify(ids);
          room(text.length);
          o += out!.write(text, o, 'latin1');
        }
        meta.push(textEnd, o, portsId, plain ? 1 : 0);
      }, m.nodeName);
    } catch (err) {
      const reply: DecodeReply = { id: m.id, raw: m.buf, parts, ports, error: (err as Error)?.stack ?? String(err) };
      port.postMessage(reply, [m.buf]);
      return;
    }
    if (env === undefined) {
      // (the tables' new rows still go: the ids they were given stay given)
      const reply: DecodeReply = { id: m.id, raw: m.buf, parts, ports };
      port.postMessage(reply, [m.buf]);
      return;
    }
    const metaArr = Int32Array.from(meta);
    meta = [];
    const ob = out!.buffer as ArrayBuffer;
    const reply: DecodeReply = { id: m.id, raw: m.buf, env, out: ob, meta: metaArr, parts, ports };
    port.postMessage(reply, [m.buf, ob, metaArr.buffer as ArrayBuffer]);
  });
  port.postMessage({ ready: true });
}

// ---- the main thread's side ----

declare const KBP_LIST_DECODE_WORKER: string | undefined;
/** the worker's file: the bundle's (scripts/bundle.mjs defines its name) or the source's, beside this one */
const workerUrl = (): URL => new URL(typeof KBP_LIST_DECODE_WORKER === 'string' ? KBP_LIST_DECODE_WORKER : './list-decode-worker.ts', import.meta.url);

/** The items a decoded page hands on, as json-prune's scanList hands them (text, plain, decoded). */
export type OnItem = (text: string, plain: boolean, decoded?: DecodedSlice) => void;

/** What came back for a page: the page's bytes, and the envelope's text (undefined: the scan refused it). */
export interface Decoded { bytes: Buffer; env: string | undefined; items(onItem: OnItem): void }

export class ListDecoder {
  readonly #worker: Worker;
  #ready = false;
  #failed: Error | undefined;
  readonly #pending = new Map<number, { resolve: (r: DecodeReply) => void; reject: (e: Error) => void }>();
  #next = 1;
  readonly #parts: EndpointPart[] = [];
  readonly #ports: (readonly unknown[])[] = [];
  /** lists using it; at 0 the worker ends */
  users = 0;

  constructor() {
    this.#worker = new Worker(workerUrl(), { stdout: false, stderr: false, execArgv: loaderArgv(process.execArgv) });
    this.#worker.unref();
    this.#worker.on('message', (m: WorkerMessage) => {
      if ('ready' in m) {
        this.#ready = true;
        return;
      }
      try {
        this.#apply(m);
      } catch (err) {
        this.#fail(err as Error);
        return;
      }
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      p?.resolve(m);
    });
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) => this.#fail(new Error(`the page decode thread exited (code ${code})`)));
  }

  /** the worker has started and nothing failed: pages may go to it */
  get usable(): boolean {
    return this.#ready && this.#failed === undefined;
  }

  get failed(): boolean {
    return this.#failed !== undefined;
  }

  #fail(err: Error): void {
    this.#failed ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #apply(m: DecodeReply): void {
    for (const [cid, ref, node, zone] of m.parts) {
      this.#parts.push(endpointPart(cid, ref === 1, node === null ? undefined : sharedName(node), zone === null ? undefined : sharedName(zone)));
    }
    for (const text of m.ports) {
      const shared = sharedPorts(JSON.parse(text) as unknown[]);
      // (the worker's sharedPorts took them: so does this one, from their JSON)
      if (!shared) throw new Error('list-decode: a ports table row the main thread does not share');
      this.#ports.push(shared);
    }
  }

  /** Page bytes [0, len) decoded by the worker; bytes is moved there (detached here) until this settles. */
  async decode(what: string, kind: PrunedKind, bytes: Buffer, len: number, nodeName: string | undefined): Promise<Decoded> {
    if (this.#failed) throw this.#failedError(what);
    // a buffer of its own, whole (the answers' buffers are): else a copy goes
    let buf = bytes.buffer as ArrayBuffer;
    if (bytes.byteOffset !== 0 || buf.byteLength !== bytes.length) {
      buf = new ArrayBuffer(len);
      bytes.copy(new Uint8Array(buf), 0, 0, len);
    }
    const id = this.#next++;
    const reply = await new Promise<DecodeReply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const req: DecodeRequest = { id, kind, buf, len, nodeName };
      this.#worker.postMessage(req, [buf]);
    }).catch(() => { throw this.#failedError(what); });
    if (reply.error !== undefined) {
      throw new KbpError('KBP_ERR_SOURCE', `list ${what}: the page decode thread failed: ${reply.error}`);
    }
    const back = Buffer.from(reply.raw);
    return {
      bytes: back,
      env: reply.env,
      items: (onItem) => {
        const out = reply.out, meta = reply.meta;
        if (!out || !meta) return;
        const b = Buffer.from(out) as Buffer & { utf8Slice(a: number, z: number): string; latin1Slice(a: number, z: number): string };
        const parts = this.#parts, ports = this.#ports;
        let a = 0;
        for (let k = 0; k < meta.length; k += 4) {
          const textEnd = meta[k]!, packedEnd = meta[k + 1]!, portsId = meta[k + 2]!;
          const text = b.utf8Slice(a, textEnd);
          let decoded: DecodedSlice | undefined;
          if (portsId >= 0 || packedEnd > textEnd) {
            decoded = {};
            if (portsId >= 0) decoded.ports = ports[portsId]!;
            if (packedEnd > textEnd) {
              const packed = JSON.parse(b.latin1Slice(textEnd, packedEnd)) as (string | number | EndpointPart)[];
              for (let x = 0; x < packed.length; x++) if (typeof packed[x] === 'number') packed[x] = parts[packed[x] as number]!;
              decoded.packed = packed as (string | EndpointPart)[];
            }
          }
          a = packedEnd;
          onItem(text, meta[k + 3] === 1, decoded);
        }
        // the buffer back to the worker for a later page
        reply.out = undefined;
        if (!this.#failed) this.#worker.postMessage({ spare: out }, [out]);
      },
    };
  }

  #failedError(what: string): KbpError {
    const err = this.#failed;
    return new KbpError('KBP_ERR_SOURCE', `list ${what}: the page decode thread failed: ${err?.message ?? 'unknown'}`, { cause: err });
  }

  end(): void {
    void this.#worker.terminate();
  }
}

/**
 * Of node's flags, those that load code (--import, --require, --loader: tsx's under the tests): the
 * worker needs them to read its source; the others are not for it (--input-type fails a worker's
 * start; the agent's V8 heap flags are the process's already).
 */
export function loaderArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^(--import|--require|-r|--loader|--experimental-loader)(=|$)/.exec(argv[i]!);
    if (!m) continue;
    out.push(argv[i]!);
    if (m[2] === '' && i + 1 < argv.length) out.push(argv[++i]!);
  }
  return out;
}

let shared: ListDecoder | undefined;
/** set once a decoder failed: no list of this process starts another */
let broken = false;

/** The process's decoder, started if need be (undefined after one failed); release() it when the list ends. */
export function acquireDecoder(): ListDecoder | undefined {
  if (broken) return undefined;
  try {
    shared ??= new ListDecoder();
  } catch {
    broken = true;
    return undefined;
  }
  shared.users++;
  return shared;
}

export function releaseDecoder(d: ListDecoder): void {
  if (d.failed) broken = true;
  if (--d.users > 0) return;
  if (shared === d) shared = undefined;
  d.end();
}
