// The LIST half of the informers and the kubeconfig checks. client-node's generated API clients would
// deserialize list items into class instances (Date fields and all) while watch events stay plain JSON;
// we list with a plain GET so every object in the store has the same shape, which is also the shape
// the manifests source produces from YAML. The same kubeconfig options (TLS, tokens, exec plugins,
// proxies) are applied as for the watch, through KubeConfig.applyToHTTPSOptions.
import { readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import http from 'node:http';
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { KbpError } from '../util/errors.js';
import { checkKubeconfigFile, readable } from './kubeconfig-file.js';
import { releasePruneBuffer, scanList, type PrunedKind } from './json-prune.js';
import { acquireDecoder, releaseDecoder, type Decoded, type ListDecoder } from './list-decode.js';
import { PageChain, type Flight } from './page-chain.js';
import type { DecodedSlice } from './slim.js';

/** An API error with what the informer and our logs need: the HTTP status and the Status reason. */
export class ApiError extends Error {
  readonly statusCode: number;
  readonly reason: string;
  constructor(what: string, statusCode: number, reason: string, message: string) {
    super(`${what}: HTTP ${statusCode} ${reason}${message ? `: ${message}` : ''}`);
    this.name = 'ApiError';
    this.statusCode = statusCode;
    this.reason = reason;
  }
}

/** One short phrase for a log's `reason` field, from any error the list, the watch or node-fetch produce. */
export function errorReason(err: unknown): string {
  if (err instanceof ApiError) return `${err.statusCode} ${err.reason}`;
  if (err && typeof err === 'object') {
    const e = err as { statusCode?: unknown; code?: unknown; message?: unknown; name?: unknown };
    if (typeof e.statusCode === 'number') return `${e.statusCode} ${typeof e.message === 'string' ? e.message : ''}`.trim();
    if (typeof e.code === 'string') return e.code;
    if (typeof e.message === 'string' && e.message) return e.message;
    if (typeof e.name === 'string') return e.name;
  }
  return String(err);
}

/**
 * Loads --kubeconfig FILE, or the in-cluster service account config when no file is given, and checks
 * what would otherwise only fail on the first request (and then on every retry).
 */
export function loadKubeConfig(file?: string, inClusterRoot = ''): KubeConfig {
  const kc = new KubeConfig();
  const where = file === undefined ? 'in-cluster config' : `kubeconfig ${file}`;
  let parsed: Record<string, unknown> | undefined;
  if (file !== undefined) {
    // what client-go refuses at load (preflight ran the same check before the data plane)
    parsed = checkKubeconfigFile(file);
    try {
      kc.loadFromFile(file);
    } catch (err) {
      throw new KbpError('KBP_ERR_CONFIG', `${where}: cannot load: ${(err as Error).message}`, { cause: err });
    }
  } else {
    if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
      throw new KbpError('KBP_ERR_CONFIG',
        'no --kubeconfig given and not running in a cluster (KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are unset)');
    }
    kc.loadFromCluster(inClusterRoot);
    // rest.InClusterConfig fails without the service account's token (client-node would fail each
    // request instead, and be retried for ever)
    const tokenFile = kc.getCurrentUser()?.authProvider?.config?.tokenFile as string | undefined;
    if (tokenFile !== undefined) readable(tokenFile, `${where}: the service account token ${tokenFile}`);
  }
  if (file !== undefined && parsed) useTokenFiles(kc, file, parsed);
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new KbpError('KBP_ERR_CONFIG', `${where}: no cluster for the current context ${JSON.stringify(kc.getCurrentContext())}`);
  }
  // URL.parse (Node 22+): null instead of an exception to catch
  const url = URL.parse(cluster.server);
  if (!url) throw new KbpError('KBP_ERR_CONFIG', `${where}: cluster ${cluster.name}: server ${JSON.stringify(cluster.server)} is not a URL`);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new KbpError('KBP_ERR_CONFIG', `${where}: cluster ${cluster.name}: server ${cluster.server} is neither http nor https`);
  }
  if (url.protocol === 'http:' && !cluster.skipTLSVerify) {
    // client-node throws on every request in this case; say it once, with the fix
    throw new KbpError('KBP_ERR_CONFIG',
      `${where}: cluster ${cluster.name}: server ${cluster.server} is plain http, which client-node only accepts with insecure-skip-tls-verify: true`);
  }
  return kc;
}

/** how long a tokenFile's token is used before the file is read again (client-go's cached file token source: 1 minute) */
const TOKEN_FILE_TTL_MS = 60_000;
const TOKEN_FILE_PROVIDER = 'kbp-token-file';

/**
 * A kubeconfig user's `tokenFile` (client-go's AuthInfo.TokenFile: what kubeadm writes for
 * kube-proxy, the pod's projected service account token, which the kubelet rotates): client-node
 * does not read the key, so its requests went without credentials. The token is read from the file
 * (relative to the kubeconfig's folder), trimmed, and read again after a minute, as client-go does;
 * a `token` given beside it wins, as in client-go.
 */
function useTokenFiles(kc: KubeConfig, file: string, parsed: Record<string, unknown>): void {
  const raw = parsed as { users?: Array<{ name?: unknown; user?: { tokenFile?: unknown; token?: unknown } }> };
  let any = false;
  for (const u of Array.isArray(raw.users) ? raw.users : []) {
    const tokenFile = u?.user?.tokenFile;
    if (typeof tokenFile !== 'string' || !tokenFile || u.user?.token) continue;
    const i = kc.users.findIndex((x) => x.name === u.name);
    if (i < 0 || kc.users[i]!.authProvider || kc.users[i]!.exec) continue;
    const abs = resolvePath(dirname(file), tokenFile);
    kc.users[i] = { ...kc.users[i]!, authProvider: { name: TOKEN_FILE_PROVIDER, config: { path: abs } } };
    any = true;
  }
  if (!any) return;
  const cache = new Map<string, { token: string; at: number }>();
  kc.addAuthenticator({
    isAuthProvider: (user) => user.authProvider?.name === TOKEN_FILE_PROVIDER,
    applyAuthentication: async (user, opts) => {
      const path = user.authProvider.config.path as string;
      let got = cache.get(path);
      if (!got || Date.now() - got.at > TOKEN_FILE_TTL_MS) {
        got = { token: readFileSync(path, 'utf8').trim(), at: Date.now() };
        cache.set(path, got);
      }
      (opts.headers as Record<string, string>).Authorization = `Bearer ${got.token}`;
    },
  });
  // (config.path, not config.tokenFile: client-node's own FileAuth, which does not trim, takes any
  // provider with a tokenFile before a custom one is asked; checkKubeconfigFile found the file readable)
}

export interface ListResult<T> { resourceVersion: string; items: T[]; stats?: ListStats }

/**
 * Where a list's wall time went (the first sync's timeline, docs/perf-log.md, session 18, p18api): its pages and bytes, the
 * time spent waiting for an answer (this thread free: the server, the network, or this thread's
 * run queue), the time the pages' parse took and the time the caller's onPage took (this thread busy);
 * ready: the pages that had come before the list took them (asked for ahead, page-chain.ts)
 */
export interface ListStats { pages: number; bytes: number; waitMs: number; parseMs: number; storeMs: number; offThread?: { pages: number; waitMs: number }; ready?: number }

/**
 * A pruned list whose first page says it holds at least this many objects (remainingItemCount and the
 * page's own) has its pages scanned on a thread of its own (list-decode.ts); smaller ones on this
 * thread, where a worker's start would cost more than it saves (a 10,000-Service cluster's lists).
 */
export const OFF_THREAD_ABOVE = 20_000;

/**
 * Pages a list asks for or holds beyond the one it has taken (page-chain.ts): enough for the server
 * to keep going while this thread runs a compile between pages (the agent's, up to 500 ms) and the
 * decode thread a page or two behind; each is 0.5-1.5 MiB at 500 objects.
 */
export const AHEAD_PAGES = 4;

/** client-go's pager's default page size (k8s.io/client-go/tools/pager: defaultPageSize) */
export const LIST_PAGE_SIZE = 500;

/**
 * LIST (all namespaces) in pages of `limit` objects, following `continue` tokens, as client-go's
 * reflector does through its pager: no single answer body grows with the cluster. Every page is of
 * one snapshot; its resourceVersion is the list's. When the server has expired the continue token
 * (410 Expired: the snapshot was compacted mid-list), the list is retried once as one unpaged read,
 * as the pager's FullListIfExpired does. Rejects with ApiError on any other non-200 answer.
 */
export async function listObjects<T>(kc: KubeConfig, apiPath: string, what: string,
  opts: { signal: AbortSignal; timeoutMs: number; pageSize?: number }): Promise<ListResult<T>>;
/**
 * With `admit`, each page's items go through it as the page arrives (undefined drops one): what the
 * caller keeps of a page is all that outlives it, so a list of 100,000 objects never holds them all as
 * parsed (managedFields and all) at once. `onPage`, when given, is handed each page's kept items as
 * the page is taken (the unpaged read after a 410 is one page): a caller may use them before the list
 * ends (the kube source stores a first list page by page, so the agent compiles while pages arrive).
 * `prune` (with admit; a kind whose admit is slimObject's): each item is parsed without the members
 * slim.ts drops, one item at a time (json-prune.ts); admit sees what slimObject keeps the same, and
 * `plain` when the item's bytes hold nothing slimObject's `plain` excludes, and `decoded`: what the
 * scan decoded itself and left out of the item (slimObject's `decoded`). `nodeName` (with prune) is
 * slimObject's.
 */
export async function listObjects<T, U>(kc: KubeConfig, apiPath: string, what: string,
  opts: { signal: AbortSignal; timeoutMs: number; pageSize?: number; admit: Admit<T, U>; onPage?: (items: readonly U[]) => void; prune?: PrunedKind; nodeName?: string; offThreadAbove?: number }): Promise<ListResult<U>>;
export async function listObjects<T, U>(kc: KubeConfig, apiPath: string, what: string,
  opts: { signal: AbortSignal; timeoutMs: number; pageSize?: number; admit?: Admit<T, U>; onPage?: (items: readonly U[]) => void; prune?: PrunedKind; nodeName?: string; offThreadAbove?: number }): Promise<ListResult<T | U>> {
  const pageSize = opts.pageSize ?? LIST_PAGE_SIZE;
  const admit = opts.admit, onPage = opts.onPage;
  const how: PageHow<T, U> = { what, admit, prune: admit && opts.prune, nodeName: opts.nodeName };
  // a page's bytes are kept for the scan (not decoded whole) when it prunes
  // one connection for the list's pages (conn), closed at its end
  const conn: Conn = {};
  const fetchOpts = { signal: opts.signal, timeoutMs: opts.timeoutMs, bytes: how.prune !== undefined, conn };
  const items: (T | U)[] = [];
  let resourceVersion = '';
  let token: string | undefined;
  const pagePath = (t: string | undefined) => withQuery(apiPath, { limit: String(pageSize), ...(t && { continue: t }) });
  const stats: ListStats = { pages: 0, bytes: 0, waitMs: 0, parseMs: 0, storeMs: 0 };
  // the pages' scan on a thread of its own, once the first page says the list is large: a page goes
  // there as soon as it has come (its head read here first, for the token), so the thread scans it
  // while this one takes the page before
  let dec: ListDecoder | undefined;
  const offAbove = opts.offThreadAbove ?? OFF_THREAD_ABOVE;
  const ask = (t: string | undefined): Flight<Received> => {
    const f = fetchPage(kc, pagePath(t), fetchOpts);
    const received = f.answer.then((raw): Received => {
      if (raw.status !== 200) return { raw };
      const head = raw.body ?? raw.bytes!.toString('utf8', 0, Math.min(raw.len, HEAD_MAX));
      if (!raw.bytes || !dec?.usable || !how.prune) return { raw, head };
      const bytes = raw.bytes;
      raw.bytes = undefined;
      const decoding = dec.decode(what, how.prune, bytes, raw.len, how.nodeName);
      // (awaited by the loop; a page cancelled meanwhile is dropped)
      decoding.catch(() => {});
      return { raw, head, decoding };
    });
    received.catch(() => {});
    return { sent: f.sent, received, cancel: f.cancel };
  };
  // each page asked for when the one before it comes (its continue token leads the answer's JSON:
  // ListMeta comes before items), not when this loop takes it: the server makes page k+1 while page k
  // is decoded and stored here (at 10,000 Services the stub API server's time per page was half the
  // list's wall, docs/perf-log.md session 12; at 100,000 the decode thread's, session 24)
  const chain = new PageChain<Received>(ask, (got) => got.head === undefined ? undefined : leadingContinue(got.head), AHEAD_PAGES);
  Body.listing++;
  try {
    do {
      let page: PageResult<T | U>;
      let guess: string | undefined;
      try {
        const w0 = performance.now();
        const taken = await chain.take();
        const got = taken.page, raw = got.raw;
        guess = taken.guess;
        if (taken.ready) stats.ready = (stats.ready ?? 0) + 1;
        const p0 = performance.now();
        stats.waitMs += p0 - w0;
        stats.pages++;
        stats.bytes += raw.body !== undefined ? raw.body.length : raw.len;
        // the next page's request on the wire before this thread is busy parsing: else it would wait for the parse
        await chain.sent();
        const p1 = performance.now();
        if (got.decoding) {
          stats.offThread ??= { pages: 0, waitMs: 0 };
          stats.offThread.pages++;
          page = await parsePageOff(raw, how, got.decoding, stats.offThread);
        } else page = parsePage(raw, how);
        stats.parseMs += performance.now() - p1;
        if (token === undefined && !dec && how.prune && (page.remaining ?? 0) + page.items.length >= offAbove) dec = acquireDecoder();
      } catch (err) {
        if (token !== undefined && err instanceof ApiError && err.statusCode === 410) {
          chain.cancel();
          const full = parsePage(await fetchPage(kc, apiPath, fetchOpts).answer, how);
          if (admit) onPage?.(full.items as U[]);
          return { resourceVersion: full.resourceVersion, items: full.items };
        }
        throw err;
      }
      // a guess the parse does not confirm: what was asked for on it dropped, the right page asked for
      if ((page.continue || undefined) !== guess) chain.restart(page.continue || undefined);
      if (token === undefined) resourceVersion = page.resourceVersion;
      for (const it of page.items) items.push(it);
      const o0 = performance.now();
      if (admit) onPage?.(page.items as U[]);
      stats.storeMs += performance.now() - o0;
      token = page.continue || undefined;
    } while (token !== undefined);
  } finally {
    if (dec) releaseDecoder(dec);
    // a failure (or an abort) leaves no request of ours running, and no connection open
    chain.cancel();
    if (conn.agent) {
      // (a socket freed after this, its answer just read, is closed by the agent, not kept)
      (conn.agent as unknown as { keepAlive: boolean }).keepAlive = false;
      conn.agent.destroy();
    }
    // the spare buffers are for the next page, not for the watch that follows
    if (--Body.listing === 0) {
      Body.release();
      releasePruneBuffer();
    }
  }
  return { resourceVersion, items, stats: roundStats(stats) };
}

function roundStats(s: ListStats): ListStats {
  return { pages: s.pages, bytes: s.bytes, waitMs: Math.round(s.waitMs), parseMs: Math.round(s.parseMs), storeMs: Math.round(s.storeMs),
    ...(s.offThread && { offThread: { pages: s.offThread.pages, waitMs: Math.round(s.offThread.waitMs) } }), ...(s.ready && { ready: s.ready }) };
}

/** each item through admit; the ones it keeps pushed onto out */
function admitAll<T, U>(items: readonly T[], admit: (item: T) => U | undefined, out: U[]): void {
  for (const it of items) {
    const a = admit(it);
    if (a !== undefined) out.push(a);
  }
}

/**
 * The continue token of a LIST answer read from its head, before the JSON is parsed: kube-apiserver
 * writes a list's metadata (ListMeta) before its items. Undefined when the head does not have that
 * shape; the parsed answer says what the token is (listObjects checks the guess against it).
 */
export function leadingContinue(body: string): string | undefined {
  const items = body.indexOf('"items"');
  const head = items < 0 ? body.slice(0, 4096) : body.slice(0, items);
  const m = /^\{(?:"kind":"[^"\\]*",|"apiVersion":"[^"\\]*",)*"metadata":(\{[^{}]*\}),$/.exec(head);
  if (!m) return undefined;
  try {
    const meta = JSON.parse(m[1]!) as { continue?: unknown };
    return typeof meta.continue === 'string' && meta.continue ? meta.continue : undefined;
  } catch {
    return undefined;
  }
}

/** apiPath with more query parameters (apiPath may already carry some) */
export function withQuery(apiPath: string, params: Record<string, string>): string {
  const q = new URLSearchParams(params).toString();
  if (!q) return apiPath;
  return apiPath + (apiPath.includes('?') ? '&' : '?') + q;
}

interface PageResult<T> extends ListResult<T> { continue?: string; remaining?: number }

/** a 200 answer kept as bytes (`bytes` asked for) or any answer as text */
interface RawPage { status: number; body?: string; bytes?: Buffer; len: number }
/** what a list keeps of an item (undefined: not kept); plain and decoded: see listObjects */
type Admit<T, U> = (item: T, plain?: boolean, decoded?: DecodedSlice) => U | undefined;
/** how a page's answer is read: its items through admit, pruned for a kind */
interface PageHow<T, U> { what: string; admit: Admit<T, U> | undefined; prune: PrunedKind | undefined; nodeName: string | undefined }
/** the head of an answer decoded for leadingContinue when it is kept as bytes */
const HEAD_MAX = 16 * 1024;
/**
 * a page's request under way: sent settles once the request is written to its socket (or failed),
 * answer with the answer; cancel() aborts it and swallows its failure
 */
interface InFlight { sent: Promise<void>; answer: Promise<RawPage>; cancel(): void }
/** a page's answer as the list loop takes it: its bytes on the decode thread already (decoding), with their head kept here */
interface Received { raw: RawPage; head?: string; decoding?: Promise<Decoded> }

/**
 * The HTTP agent a list's pages share. client-node makes a fresh agent per request (applyToHTTPSOptions),
 * so each page was a connection of its own: a TCP handshake per page, and against a real API server
 * a TLS handshake per page (40 at 10,000 Services, 400 at 100,000). The first page's agent is kept,
 * with keep-alive, for the rest (the headers, a token an exec plugin renews among them, are still
 * made for each request), and destroyed when the list ends.
 */
interface Conn { agent?: http.Agent }

function fetchPage(kc: KubeConfig, apiPath: string, opts: { signal: AbortSignal; timeoutMs: number; bytes?: boolean; conn?: Conn }): InFlight {
  const ac = new AbortController();
  const { promise: sent, resolve: onSent } = Promise.withResolvers<void>();
  const answer = requestPage(kc, apiPath, { signal: AbortSignal.any([opts.signal, ac.signal]), timeoutMs: opts.timeoutMs, bytes: opts.bytes === true, conn: opts.conn }, onSent);
  // a request that fails before it is written settles sent too
  answer.then(() => onSent(), () => onSent());
  return {
    sent,
    answer,
    cancel: () => {
      answer.catch(() => {});
      ac.abort();
    },
  };
}

async function requestPage(kc: KubeConfig, apiPath: string, opts: { signal: AbortSignal; timeoutMs: number; bytes: boolean; conn: Conn | undefined }, onSent: () => void): Promise<RawPage> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KbpError('KBP_ERR_CONFIG', 'kubeconfig has no current cluster');
  // string concatenation as client-node's Watch does, so a server URL with a path prefix works the same
  const url = new URL(cluster.server + apiPath);
  const reqOpts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(reqOpts);
  let agent = reqOpts.agent;
  const conn = opts.conn;
  if (conn && isAgent(agent)) {
    if (conn.agent) {
      agent.destroy();
      reqOpts.agent = agent = conn.agent;
    } else {
      // (read by each request and on each 'free' socket: http.Agent's own keepAlive option)
      (agent as unknown as { keepAlive: boolean }).keepAlive = true;
      conn.agent = agent;
    }
    agent = undefined;
  }
  try {
    return await get(url, {
      ...reqOpts, method: 'GET', headers: { ...reqOpts.headers, Accept: 'application/json' },
      signal: opts.signal, timeout: opts.timeoutMs,
    }, opts.bytes, onSent);
  } finally {
    // client-node makes a fresh agent per request; ours must not keep sockets (or the process) alive
    // (a list's shared one is destroyed at the list's end)
    if (isAgent(agent)) agent.destroy();
  }
}

const isAgent = (a: unknown): a is http.Agent => typeof a === 'object' && a !== null && typeof (a as http.Agent).destroy === 'function';

/**
 * parsePage with the scan on the decode thread: the same items, admitted here in order. A page the
 * scan refuses, or an item's text JSON.parse refuses, is parsed whole here, as parsePage does.
 */
async function parsePageOff<T, U>(raw: RawPage, how: PageHow<T, U>, decoding: Promise<Decoded>, off: { waitMs: number }): Promise<PageResult<T | U>> {
  const { what, admit } = how;
  const w0 = performance.now();
  const d = await decoding;
  off.waitMs += performance.now() - w0;
  if (d.env !== undefined && admit) {
    const kept: U[] = [];
    let list: unknown;
    try {
      d.items((text, plain, decoded) => {
        const a = admit(JSON.parse(text) as T, plain, decoded);
        if (a !== undefined) kept.push(a);
      });
      list = JSON.parse(d.env);
    } catch (e) {
      // (as scanList reads an onItem's SyntaxError: the whole parse below says what)
      if (!(e instanceof SyntaxError || e instanceof RangeError)) {
        Body.recycle(d.bytes);
        throw e;
      }
      list = undefined;
    }
    if (list !== undefined) {
      Body.recycle(d.bytes);
      return listPage({ ...list as object, items: kept }, what);
    }
  }
  return parsePage({ status: raw.status, bytes: d.bytes, len: raw.len }, { ...how, prune: undefined });
}

function parsePage<T, U>(raw: RawPage, how: PageHow<T, U>): PageResult<T | U> {
  const { status } = raw, { what, admit, prune } = how;
  let body = raw.body;
  if (raw.bytes) {
    const bytes = raw.bytes;
    raw.bytes = undefined;
    try {
      if (prune && admit) {
        const kept: U[] = [];
        const env = scanList(prune, bytes, raw.len, (text, plain, decoded) => {
          const a = admit(JSON.parse(text) as T, plain, decoded);
          if (a !== undefined) kept.push(a);
        }, how.nodeName);
        let list: unknown;
        try {
          list = env === undefined ? undefined : JSON.parse(env);
        } catch {
          // (the scan let through what JSON.parse refuses: the whole parse below says what)
        }
        if (list !== undefined) return listPage({ ...list as object, items: kept }, what);
      }
      // not what the scan reads: parsed whole, JSON.parse's error the one reported, as before
      body = bytes.toString('utf8', 0, raw.len);
    } finally {
      Body.recycle(bytes);
    }
  }
  body ??= '';
  if (status !== 200) {
    const st = parseStatus(body);
    throw new ApiError(`list ${what}`, status, st.reason ?? http.STATUS_CODES[status] ?? 'Error', st.message ?? '');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (err) {
    throw new KbpError('KBP_ERR_SOURCE', `list ${what}: the answer is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const page = listPage<T>(parsed, what);
  if (!admit) return page;
  const kept: U[] = [];
  admitAll(page.items, admit, kept);
  return { ...page, items: kept };
}

/** the list's resourceVersion, items and continue token, checked */
function listPage<T>(parsed: unknown, what: string): PageResult<T> {
  const list = parsed as { metadata?: { resourceVersion?: unknown; continue?: unknown; remainingItemCount?: unknown }; items?: unknown };
  if (!Array.isArray(list.items)) throw new KbpError('KBP_ERR_SOURCE', `list ${what}: the answer has no items array`);
  const rv = list.metadata?.resourceVersion;
  if (typeof rv !== 'string' || rv === '') {
    throw new KbpError('KBP_ERR_SOURCE', `list ${what}: the answer has no metadata.resourceVersion, so no watch can follow it`);
  }
  const cont = list.metadata?.continue;
  const left = list.metadata?.remainingItemCount;
  return { resourceVersion: rv, items: list.items as T[], ...(typeof cont === 'string' && cont && { continue: cont }),
    ...(typeof left === 'number' && Number.isSafeInteger(left) && left > 0 && { remaining: left }) };
}

function get(url: URL, options: https.RequestOptions, bytes: boolean, onSent?: () => void): Promise<RawPage> {
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, options, (res) => {
      const body = new Body(Number(res.headers['content-length']));
      res.on('data', (c: Buffer) => body.add(c));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (bytes && status === 200) {
          const b = body.take();
          resolve({ status, bytes: b.buf, len: b.len });
        } else resolve({ status, body: body.text(), len: 0 });
      });
      res.on('error', (err) => {
        body.drop();
        reject(err);
      });
      // an answer cut short (aborted, a reset) ends in 'close' without 'end'
      res.on('close', () => body.drop());
    });
    // a system-style error (code ETIMEDOUT), as a socket timeout is, so errorReason() reports it alike
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${options.timeout} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    // the request handed to the kernel (or failed): what the caller may do meanwhile can start
    if (onSent) {
      req.once('finish', onSent);
      req.once('close', onSent);
    }
    req.end();
  });
}

/**
 * An answer's bytes gathered in a buffer kept from one answer to the next, decoded once at its end.
 * A list's pages are megabytes each: Buffer.concat of each page's chunks wrote into fresh memory,
 * whose page faults were most of its cost (docs/perf-log.md, session 16). As many are kept as a list
 * may hold pages (the one taken and AHEAD_PAGES), for Services and EndpointSlices listed together
 * (with two, a slice page often found only a Service page's smaller buffer and took fresh memory);
 * only buffers a list made are kept, so a list that holds fewer keeps fewer.
 */
const SPARES = 2 * (AHEAD_PAGES + 1);

class Body {
  static readonly #spare: Buffer[] = [];
  /** a spare buffer at most this large is kept (a page of 500 objects is 1-6 MiB) */
  static readonly KEEP_MAX = 16 * 2 ** 20;
  /** lists in progress: the spares are kept while there is one */
  static listing = 0;
  #buf: Buffer | undefined;
  #len = 0;

  static release(): void {
    Body.#spare.length = 0;
  }

  constructor(expected: number) {
    const want = Number.isSafeInteger(expected) && expected > 0 ? expected : 0;
    const spare = Body.#spare;
    // the smallest spare that fits (a length known), or the largest to grow from (none said); when
    // none fits, fresh memory, and the spares stay for the pages they fit
    let i = -1;
    for (let k = 0; k < spare.length; k++) {
      const n = spare[k]!.length;
      if (want ? n >= want && (i < 0 || n < spare[i]!.length) : i < 0 || n > spare[i]!.length) i = k;
    }
    this.#buf = i >= 0 ? spare.splice(i, 1)[0] : want ? Buffer.allocUnsafeSlow(want) : undefined;
  }

  add(c: Buffer): void {
    let buf = this.#buf;
    const need = this.#len + c.length;
    if (!buf || need > buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(need, 2 * (buf?.length ?? 0), 64 * 1024));
      if (buf) buf.copy(grown, 0, 0, this.#len);
      this.#buf = buf = grown;
    }
    c.copy(buf, this.#len);
    this.#len = need;
  }

  /** the answer's bytes, taken: the caller gives the buffer back (Body.recycle) */
  take(): { buf: Buffer; len: number } {
    const buf = this.#buf ?? Buffer.alloc(0), len = this.#len;
    this.#buf = undefined;
    this.#len = 0;
    return { buf, len };
  }

  /** the answer as text; the buffer goes back to the spares */
  text(): string {
    const buf = this.#buf;
    const text = buf ? buf.toString('utf8', 0, this.#len) : '';
    this.drop();
    return text;
  }

  drop(): void {
    const buf = this.#buf;
    this.#buf = undefined;
    this.#len = 0;
    if (buf) Body.recycle(buf);
  }

  /** buf kept as a spare (while a list runs, and not too large) */
  static recycle(buf: Buffer): void {
    if (buf.length === 0 || buf.length > Body.KEEP_MAX || Body.listing === 0) return;
    const spare = Body.#spare;
    spare.push(buf);
    if (spare.length > SPARES) {
      // the smallest goes
      spare.sort((a, b) => b.length - a.length);
      spare.length = SPARES;
    }
  }
}

function parseStatus(body: string): { reason?: string; message?: string } {
  try {
    const s = JSON.parse(body) as { reason?: unknown; message?: unknown };
    return {
      ...(typeof s.reason === 'string' ? { reason: s.reason } : {}),
      ...(typeof s.message === 'string' ? { message: s.message } : {}),
    };
  } catch {
    return {};
  }
}
