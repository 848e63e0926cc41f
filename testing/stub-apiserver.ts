// A small Kubernetes API server of our own for the source tests: LIST and WATCH of Services,
// EndpointSlices and Nodes over plain HTTP on 127.0.0.1, with one resourceVersion counter for all kinds
// (as etcd has), an event history that can be compacted (so watches from old versions get 410 Gone),
// and controls to inject failures, drop watches and take the listener down and up on the same port.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export type StubKind = 'Service' | 'EndpointSlice' | 'Node';

interface KindInfo { path: string; apiVersion: string; listKind: string; namespaced: boolean }

const KINDS: Record<StubKind, KindInfo> = {
  Service: { path: '/api/v1/services', apiVersion: 'v1', listKind: 'ServiceList', namespaced: true },
  EndpointSlice: {
    path: '/apis/discovery.k8s.io/v1/endpointslices', apiVersion: 'discovery.k8s.io/v1',
    listKind: 'EndpointSliceList', namespaced: true,
  },
  Node: { path: '/api/v1/nodes', apiVersion: 'v1', listKind: 'NodeList', namespaced: false },
};

type Obj = { metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };
type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent { rv: number; kind: StubKind; type: EventType; object: Obj }

interface WatchConn { kind: StubKind; res: http.ServerResponse; bookmarks: boolean; name: string | null; labels: LabelPredicate }

type LabelPredicate = (o: Obj) => boolean;

/**
 * A label selector as kube-apiserver parses one: comma-separated requirements `key`, `!key`,
 * `key=value`, `key==value`, `key!=value` (set-based `in`/`notin` are not needed by our clients).
 */
export function parseLabelSelector(text: string | null): LabelPredicate {
  if (!text) return () => true;
  const reqs = text.split(',').map((r) => r.trim()).filter(Boolean).map((r): LabelPredicate => {
    const labels = (o: Obj): Record<string, unknown> => (o.metadata?.labels ?? {}) as Record<string, unknown>;
    let m: RegExpExecArray | null;
    if ((m = /^!([\w./-]+)$/.exec(r))) { const k = m[1]!; return (o) => !(k in labels(o)); }
    if ((m = /^([\w./-]+)!=([\w.-]*)$/.exec(r))) { const [k, v] = [m[1]!, m[2]!]; return (o) => labels(o)[k] !== v; }
    if ((m = /^([\w./-]+)==?([\w.-]*)$/.exec(r))) { const [k, v] = [m[1]!, m[2]!]; return (o) => labels(o)[k] === v; }
    if ((m = /^([\w./-]+)$/.exec(r))) { const k = m[1]!; return (o) => k in labels(o); }
    throw new Error(`unsupported label selector requirement ${JSON.stringify(r)}`);
  });
  return (o) => reqs.every((q) => q(o));
}

export interface RequestRecord {
  kind: StubKind;
  watch: boolean;
  resourceVersion: string | null;
  allowWatchBookmarks: boolean;
  timeoutSeconds: number | null;
  fieldSelector: string | null;
  labelSelector: string | null;
  limit: number | null;
  continue: string | null;
  status: number;
}

/** How a watch from a compacted resourceVersion is refused: an ERROR event (what kube-apiserver does), or an HTTP 410. */
export type ExpiredMode = 'event' | 'status';

export class StubApiServer {
  #server: http.Server | undefined;
  #port = 0;
  #rv = 1;
  /** watches from a version below this get 410; history holds every event after it */
  #compactedRv = 1;
  #history: HistoryEvent[] = [];
  readonly #objects: Record<StubKind, Map<string, Obj>> = { Service: new Map(), EndpointSlice: new Map(), Node: new Map() };
  readonly #watches = new Set<WatchConn>();
  #failures: { count: number; status: number } = { count: 0, status: 500 };
  #dir: string | undefined;
  /** every LIST and WATCH request, in arrival order */
  readonly requests: RequestRecord[] = [];
  /** events.k8s.io/v1 Events POSTed (the agent's event recorder), in arrival order */
  readonly events: Array<{ namespace: string; body: Record<string, unknown> }> = [];
  expiredMode: ExpiredMode = 'event';
  /** requests left without any answer (not even headers), as a wedged apiserver or a black-holed link would */
  hang: 'none' | 'all' | 'watch' = 'none';
  /** end each watch after its timeoutSeconds, as kube-apiserver does; off, to make a client's own deadline fire */
  honorWatchTimeouts = true;
  /** end every watch right after its replay, as a misbehaving proxy in front of the apiserver might */
  endWatchesAtOnce = false;
  /** answer a LIST that carries a continue token with 410 Expired, as etcd does once the token's version is compacted */
  expireContinueTokens = false;
  /**
   * each LIST page answered this much later (its snapshot taken on arrival): a real API server's
   * time per page (its store, another machine's serialization, the network), which a client that
   * asks for the next page only after parsing this one waits out once per page
   */
  listDelayMs = 0;
  /** paged LISTs in progress: token -> a consistent snapshot, where its rest begins, and its resourceVersion */
  readonly #pages = new Map<string, { rv: number; all: Obj[]; from: number }>();
  /**
   * each stored object's JSON (UTF-8), made when it is stored: a real API server serializes on its
   * own machine, so a bench's LIST pages cost this node's CPU only to copy (at 100,000 Services the
   * stub's JSON.stringify of every page took ~10 s of CPU on the agent's two cores). The bytes sent
   * are JSON.stringify's of the whole page; a stored object is never changed (apply and remove store
   * new ones).
   */
  readonly #json = new WeakMap<Obj, Buffer>();
  #nextToken = 1;
  readonly #hung = new Set<http.ServerResponse>();
  /** LIST answers waiting out listDelayMs */
  readonly #delayed = new Set<http.ServerResponse>();

  /** the address it listens on (127.0.0.1; a lab's address when it runs in a lab namespace) */
  host = '127.0.0.1';
  get port(): number { return this.#port; }
  get url(): string { return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.#port}`; }
  get resourceVersion(): string { return String(this.#rv); }
  get listening(): boolean { return this.#server !== undefined; }
  get openWatches(): number { return this.#watches.size; }
  get hungRequests(): number { return this.#hung.size; }

  /** starts listening; on a restart, the same port as before */
  async listen(): Promise<void> {
    if (this.#server) throw new Error('stub apiserver: already listening');
    // no server-side deadline on a request: Node's defaults (headers within 60 s of the accept, the
    // request within 300 s) answer 408 or reset a client whose request the stub read late, e.g. while
    // a busy machine starved it; kube-apiserver times out no client that way
    const server = http.createServer({ headersTimeout: 0, requestTimeout: 0 }, (req, res) => this.#handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, this.host, () => { server.off('error', reject); resolve(); });
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** stops listening and cuts every open connection (watches included), as a crashed apiserver would */
  async stopListening(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    for (const w of this.#watches) w.res.destroy();
    this.#watches.clear();
    for (const r of [...this.#hung, ...this.#delayed]) r.destroy();
    this.#hung.clear();
    this.#delayed.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  /** a kubeconfig file pointing at this server over plain HTTP, no credentials */
  kubeconfigPath(): string {
    if (!this.#port) throw new Error('stub apiserver: listen() first, the kubeconfig needs the port');
    this.#dir ??= mkdtempSync(path.join(tmpdir(), 'kbp-stub-apiserver-'));
    const file = path.join(this.#dir, 'kubeconfig');
    // client-node refuses http:// servers unless insecure-skip-tls-verify is set
    writeFileSync(file, [
      'apiVersion: v1', 'kind: Config', 'current-context: stub',
      'clusters:', '- name: stub', '  cluster:', `    server: ${this.url}`, '    insecure-skip-tls-verify: true',
      'users:', '- name: stub', '  user: {}',
      'contexts:', '- name: stub', '  context: {cluster: stub, user: stub}', '',
    ].join('\n'));
    return file;
  }

  async close(): Promise<void> {
    await this.stopListening();
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
  }

  /**
   * For the stub as a process of its own (stub-apiserver-child.ts, bench/apiserver-stub.ts), which its
   * parent ends with SIGTERM (testing/netns.ts killProc) or by closing its stdin: on SIGTERM or SIGINT
   * it closes (the kubeconfig's directory removed) and exits 0; on any other exit the directory is
   * still removed. Node's default for SIGTERM exits without 'exit' handlers or finally blocks.
   */
  closeOnExit(): void {
    const end = () => { void this.close().finally(() => process.exit(0)); };
    process.once('SIGTERM', end);
    process.once('SIGINT', end);
    process.once('exit', () => { if (this.#dir) rmSync(this.#dir, { recursive: true, force: true }); });
  }

  // --- test controls -----------------------------------------------------------------------------

  /** creates or updates an object (ADDED or MODIFIED), giving it the next resourceVersion; returns the stored copy */
  apply(kind: StubKind, obj: Obj): Obj {
    const key = this.#key(kind, obj);
    const stored = structuredClone(obj);
    const type: EventType = this.#objects[kind].has(key) ? 'MODIFIED' : 'ADDED';
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.#rv) };
    if (!KINDS[kind].namespaced) delete stored.metadata.namespace;
    this.#objects[kind].set(key, stored);
    this.#json.set(stored, Buffer.from(JSON.stringify(stored)));
    this.#record({ rv: this.#rv, kind, type, object: stored });
    return stored;
  }

  /** deletes an object (DELETED with a new resourceVersion); returns false when it did not exist */
  remove(kind: StubKind, namespace: string | undefined, name: string): boolean {
    const key = KINDS[kind].namespaced ? `${namespace}/${name}` : name;
    const old = this.#objects[kind].get(key);
    if (!old) return false;
    this.#objects[kind].delete(key);
    const gone = structuredClone(old);
    gone.metadata = { ...gone.metadata, resourceVersion: String(++this.#rv) };
    this.#record({ rv: this.#rv, kind, type: 'DELETED', object: gone });
    return true;
  }

  /** forgets the event history: watches from any version before now get 410 Gone */
  compact(): void {
    this.#compactedRv = this.#rv;
    this.#history = [];
  }

  /** the next n LIST/WATCH requests are answered with this HTTP status and a Status body */
  failNext(n: number, status = 500): void {
    this.#failures = { count: n, status };
  }

  /** ends every open watch cleanly, as kube-apiserver does when a watch's timeout expires */
  closeWatches(): void {
    for (const w of this.#watches) w.res.end();
    this.#watches.clear();
  }

  /** sends a BOOKMARK at the current resourceVersion to every watch that asked for bookmarks */
  sendBookmarks(): number {
    let sent = 0;
    for (const w of this.#watches) {
      if (!w.bookmarks) continue;
      const info = KINDS[w.kind];
      w.res.write(JSON.stringify({
        type: 'BOOKMARK', object: { kind: w.kind, apiVersion: info.apiVersion, metadata: { resourceVersion: String(this.#rv) } },
      }) + '\n');
      sent++;
    }
    return sent;
  }

  /** an ERROR event carrying a Status with this code on every open watch (kube-apiserver sends these before closing) */
  sendWatchError(code: number, reason: string, message: string): void {
    for (const w of this.#watches) w.res.write(JSON.stringify({ type: 'ERROR', object: status(code, reason, message) }) + '\n');
  }

  /** writes one raw event line to every watch of a kind (for malformed events) */
  sendRaw(kind: StubKind, event: unknown): void {
    for (const w of this.#watches) if (w.kind === kind) w.res.write(JSON.stringify(event) + '\n');
  }

  countRequests(kind: StubKind, watch: boolean): number {
    return this.requests.filter((r) => r.kind === kind && r.watch === watch && r.status === 200).length;
  }

  // --- HTTP --------------------------------------------------------------------------------------

  #key(kind: StubKind, obj: Obj): string {
    const name = obj.metadata?.name;
    if (!name) throw new Error(`stub apiserver: ${kind} without metadata.name`);
    if (!KINDS[kind].namespaced) return name;
    const ns = obj.metadata?.namespace;
    if (!ns) throw new Error(`stub apiserver: ${kind} ${name} without metadata.namespace`);
    return `${ns}/${name}`;
  }

  #record(ev: HistoryEvent): void {
    this.#history.push(ev);
    for (const w of this.#watches) if (w.kind === ev.kind && matches(ev.object, w.name)) sendFiltered(w.res, w.labels, ev);
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://stub');
    const kind = (Object.keys(KINDS) as StubKind[]).find((k) => KINDS[k].path === url.pathname);
    const evPath = /^\/apis\/events\.k8s\.io\/v1\/namespaces\/([^/]+)\/events$/.exec(url.pathname);
    if (req.method === 'POST' && evPath) {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          sendJson(res, 400, status(400, 'BadRequest', 'the body is not JSON'));
          return;
        }
        this.events.push({ namespace: decodeURIComponent(evPath[1]!), body });
        sendJson(res, 201, body);
      });
      return;
    }
    if (req.method !== 'GET' || !kind) {
      sendJson(res, 404, status(404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`));
      return;
    }
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    const record: RequestRecord = {
      kind, watch, resourceVersion: url.searchParams.get('resourceVersion'),
      allowWatchBookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
      timeoutSeconds: url.searchParams.has('timeoutSeconds') ? Number(url.searchParams.get('timeoutSeconds')) : null,
      fieldSelector: url.searchParams.get('fieldSelector'),
      labelSelector: url.searchParams.get('labelSelector'),
      limit: url.searchParams.has('limit') ? Number(url.searchParams.get('limit')) : null,
      continue: url.searchParams.get('continue'),
      status: 200,
    };
    this.requests.push(record);
    if (this.hang === 'all' || (this.hang === 'watch' && watch)) {
      record.status = 0;
      this.#hung.add(res);
      res.on('close', () => this.#hung.delete(res));
      return;
    }
    if (this.#failures.count > 0) {
      this.#failures.count--;
      record.status = this.#failures.status;
      sendJson(res, record.status, status(record.status, 'InternalError', 'injected failure'));
      return;
    }
    // the one field selector the source uses: metadata.name=NAME (kube-proxy watches only its own Node)
    let name: string | null = null;
    if (record.fieldSelector) {
      const m = /^metadata\.name=([^,=]+)$/.exec(record.fieldSelector);
      if (!m) {
        record.status = 400;
        sendJson(res, 400, status(400, 'BadRequest', `unsupported field selector ${JSON.stringify(record.fieldSelector)}`));
        return;
      }
      name = m[1]!;
    }
    let labels: LabelPredicate;
    try {
      labels = parseLabelSelector(record.labelSelector);
    } catch (e) {
      record.status = 400;
      sendJson(res, 400, status(400, 'BadRequest', (e as Error).message));
      return;
    }
    if (watch) this.#watch(kind, record, name, labels, res);
    else if (this.listDelayMs > 0) {
      const answer = this.#listAnswer(kind, record, name, labels);
      const t = setTimeout(() => { this.#delayed.delete(res); answer(res); }, this.listDelayMs);
      this.#delayed.add(res);
      res.on('close', () => { clearTimeout(t); this.#delayed.delete(res); });
    } else this.#list(kind, record, name, labels, res);
  }

  /** LIST, paged with limit/continue as kube-apiserver pages a consistent read: every page is of one snapshot */
  #list(kind: StubKind, record: RequestRecord, name: string | null, labels: LabelPredicate, res: http.ServerResponse): void {
    this.#listAnswer(kind, record, name, labels)(res);
  }

  /** the LIST's answer as of now, sent when the returned function is called */
  #listAnswer(kind: StubKind, record: RequestRecord, name: string | null, labels: LabelPredicate): (res: http.ServerResponse) => void {
    const info = KINDS[kind];
    let snapshot: { rv: number; all: Obj[]; from: number };
    if (record.continue) {
      const page = this.#pages.get(record.continue);
      this.#pages.delete(record.continue);
      if (!page || this.expireContinueTokens) {
        record.status = 410;
        return (res) => sendJson(res, 410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.'));
      }
      snapshot = page;
    } else {
      snapshot = { rv: this.#rv, all: [...this.#objects[kind].values()].filter((o) => matches(o, name) && labels(o)), from: 0 };
    }
    const limit = record.limit && record.limit > 0 ? record.limit : Infinity;
    const { all, from } = snapshot;
    const to = Math.min(all.length, from + limit);
    const left = all.length - to;
    let token: string | undefined;
    if (left) {
      token = `page-${this.#nextToken++}`;
      this.#pages.set(token, { rv: snapshot.rv, all, from: to });
    }
    const head = JSON.stringify({
      kind: info.listKind, apiVersion: info.apiVersion,
      metadata: { resourceVersion: String(snapshot.rv), ...(token && { continue: token, remainingItemCount: left }) },
    });
    // what JSON.stringify of {...head, items} writes, from each object's JSON
    const parts: Buffer[] = [Buffer.from(`${head.slice(0, -1)},"items":[`)];
    for (let i = from; i < to; i++) {
      const o = all[i]!;
      if (i > from) parts.push(COMMA);
      parts.push(this.#json.get(o) ?? Buffer.from(JSON.stringify(o)));
    }
    parts.push(END);
    // written as they are (one writev), not copied together: a page's fresh megabytes made the
    // stub's V8 collect its whole heap (at 100,000 Services, 1.5 GiB) again and again
    return (res) => {
      let length = 0;
      for (const b of parts) length += b.length;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': length });
      res.cork();
      for (const b of parts) res.write(b);
      res.end();
    };
  }

  #watch(kind: StubKind, record: RequestRecord, name: string | null, labels: LabelPredicate, res: http.ServerResponse): void {
    const rvParam = record.resourceVersion;
    const from = rvParam === null || rvParam === '' || rvParam === '0' ? null : Number(rvParam);
    if (from !== null && !Number.isInteger(from)) {
      record.status = 400;
      sendJson(res, 400, status(400, 'BadRequest', `invalid resourceVersion ${JSON.stringify(rvParam)}`));
      return;
    }
    const expired = from !== null && from < this.#compactedRv;
    if (expired && this.expiredMode === 'status') {
      record.status = 410;
      sendJson(res, 410, status(410, 'Expired', `too old resource version: ${from} (${this.#compactedRv})`));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    // without this the client waits for the first event before it sees the response at all
    res.flushHeaders();
    if (expired) {
      res.end(JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.#compactedRv})`) }) + '\n');
      return;
    }
    if (from === null) {
      // no version: the current state as synthetic ADDED events, then changes (kube-apiserver's semantics)
      for (const o of this.#objects[kind].values()) if (matches(o, name) && labels(o)) writeEvent(res, 'ADDED', o);
    } else {
      for (const ev of this.#history) if (ev.kind === kind && ev.rv > from && matches(ev.object, name)) sendFiltered(res, labels, ev);
    }
    if (this.endWatchesAtOnce) {
      res.end();
      return;
    }
    const conn: WatchConn = { kind, res, bookmarks: record.allowWatchBookmarks, name, labels };
    this.#watches.add(conn);
    const timeout = this.honorWatchTimeouts && record.timeoutSeconds && record.timeoutSeconds > 0
      ? setTimeout(() => { this.#watches.delete(conn); res.end(); }, record.timeoutSeconds * 1000) : undefined;
    res.on('close', () => { clearTimeout(timeout); this.#watches.delete(conn); });
  }
}

function matches(o: Obj, name: string | null): boolean {
  return name === null || o.metadata?.name === name;
}

/**
 * An event through a watch's label selector, as the watch cache sends it: an object that stops
 * matching is DELETED for that watch; one that does not match is not sent.
 */
function sendFiltered(res: http.ServerResponse, labels: LabelPredicate, ev: HistoryEvent): void {
  if (labels(ev.object)) writeEvent(res, ev.type, ev.object);
  else if (ev.type === 'MODIFIED') writeEvent(res, 'DELETED', ev.object);
}

function writeEvent(res: http.ServerResponse, type: string, object: Obj): void {
  res.write(JSON.stringify({ type, object }) + '\n');
}

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const COMMA = Buffer.from(','), END = Buffer.from(']}');

export async function startStubApiServer(): Promise<StubApiServer> {
  const s = new StubApiServer();
  await s.listen();
  return s;
}
