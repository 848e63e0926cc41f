// The Kubernetes source: one client-node ListWatch informer per kind (Services, EndpointSlices, Nodes,
// all namespaces) filling the ObjectStore.
//
// What client-node 1.4.0's ListWatch does, and what this file adds (read from dist/cache.js, watch.js):
// - a watch that the server ends cleanly is re-opened from the last resourceVersion (ListWatch does it);
//   we hold the re-watch back by the backoff when the watch ended at once with nothing on it, so a
//   server that keeps closing watches does not get a hot loop;
// - a 410 Gone (ERROR event or HTTP status) clears the resourceVersion and relists; our list function
//   replaces the kind in the store wholesale, so an object deleted during the gap cannot survive;
// - ListWatch keeps a cache of every object and calls 'add' / 'update' / 'delete' from it: we hand it
//   no objects (the list returns none to it; the watch's events are stored by SourceWatch, ListWatch
//   seeing only their resourceVersion), so the store is the one index of them (session 24: that cache
//   cost ~0.2 s of the main thread per kind at 100,000 objects at the list's end, and 3.5 MiB kept);
// - ANY other error (list failure, watch HTTP error, connection refused or reset) stops the informer for
//   good after one 'error' callback: we restart it with exponential backoff and jitter, and log the kind
//   and the reason each time;
// - BOOKMARK events move the resourceVersion; ListWatch never asks for them, so our Watch adds
//   allowWatchBookmarks (and a server-side timeoutSeconds, with a client-side deadline behind it, as
//   client-go's reflector does, so a watch on a half-dead connection cannot hang forever);
// - exceptions thrown by informer callbacks are swallowed by Watch (or become unhandled rejections from
//   ListWatch's async handlers), so malformed events are dropped before they reach ListWatch and our
//   callbacks never throw;
// - stop() while a list or a watch request is in flight would leave that request (and the process)
//   alive: we abort the list, abort every watch controller and destroy the HTTP agents ourselves.
import { EventEmitter } from 'node:events';
import type { Agent } from 'node:http';
import { KubeConfig, ListWatch, Watch, type KubernetesListObject } from '@kubernetes/client-node';
import { KbpError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/log.js';
import { errorReason, listObjects, loadKubeConfig, withQuery } from './kube-http.js';
import { slimObject, type DecodedSlice } from './slim.js';
import { ObjectStore, objectKey, type Kind, type KindMap, type Source } from './types.js';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** each delay is lengthened by up to this fraction, at random, so agents on many nodes spread out */
  jitter: number;
}

/** client-go's reflector backoff: 800 ms doubling to 30 s, jitter 1.0 */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = { initialMs: 800, maxMs: 30_000, factor: 2, jitter: 1 };

export interface KubeSourceOptions {
  /** kubeconfig file; without it the in-cluster service account config is used */
  kubeconfig?: string;
  /** an already loaded config (tests, or a caller that built one); wins over kubeconfig */
  kubeConfig?: KubeConfig;
  store?: ObjectStore;
  logger?: Logger;
  backoff?: Partial<BackoffOptions>;
  /** server-side timeout of each watch; default a random 300-600 s per watch, as client-go picks it */
  watchTimeoutSeconds?: number;
  /** a LIST whose connection stays silent this long is abandoned and retried */
  listTimeoutMs?: number;
  /** objects per LIST page (limit); default LIST_PAGE_SIZE, client-go's */
  listPageSize?: number;
  /**
   * watch only this Node (fieldSelector metadata.name=NAME), as kube-proxy does: the compiler needs no
   * other node, and Node objects are big (status.images), so a large cluster's full Node list is costly
   */
  nodeName?: string;
}

export interface KindStatus {
  kind: Kind;
  /** the first full list of this kind is in the store */
  listed: boolean;
  /** a watch is open right now */
  watching: boolean;
  resourceVersion: string;
  lists: number;
  restarts: number;
  lastError?: string;
}

export type KubeSourceEvents = { synced: [] };

const KIND_PATHS: { [K in Kind]: { path: string; plural: string; namespaced: boolean } } = {
  Service: { path: '/api/v1/services', plural: 'services', namespaced: true },
  EndpointSlice: { path: '/apis/discovery.k8s.io/v1/endpointslices', plural: 'endpointslices', namespaced: true },
  Node: { path: '/api/v1/nodes', plural: 'nodes', namespaced: false },
};

/**
 * What kube-proxy watches of Services and EndpointSlices (cmd/kube-proxy/app/server.go, the informer
 * factory's tweak of ListOptions): not Services that name another proxy in
 * service.kubernetes.io/service-proxy-name, and not the slices of headless Services. The API server
 * filters, so such objects never reach us; an object that gains the label is DELETED from our watch.
 */
export const PROXY_LABEL_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

/** a watch that ends cleanly sooner than this with nothing on it counts as a failure for the backoff */
const MIN_HEALTHY_WATCH_MS = 1000;
/** how long past its timeoutSeconds we wait for the server to end a watch before we end it ourselves (capped at timeoutSeconds) */
const WATCH_DEADLINE_GRACE_S = 30;

export function createKubeSource(opts: KubeSourceOptions = {}): KubeSource {
  return new KubeSource(opts);
}

export class KubeSource extends EventEmitter<KubeSourceEvents> implements Source {
  readonly store: ObjectStore;
  /** the config the source reads with (the agent's Events post with it too: the kubeconfig is read once) */
  readonly kubeConfig: KubeConfig;
  readonly #log: Logger;
  readonly #watchers: KindWatcher<Kind>[];
  #synced = false;
  #stopped = false;
  #start: Promise<void> | undefined;
  #resolveStart: (() => void) | undefined;

  constructor(opts: KubeSourceOptions = {}) {
    super();
    const kc = this.kubeConfig = opts.kubeConfig ?? loadKubeConfig(opts.kubeconfig);
    const backoff = checkBackoff({ ...DEFAULT_BACKOFF, ...opts.backoff });
    if (opts.watchTimeoutSeconds !== undefined && !(Number.isInteger(opts.watchTimeoutSeconds) && opts.watchTimeoutSeconds > 0)) {
      throw new KbpError('KBP_ERR_CONFIG', `watchTimeoutSeconds must be a positive integer, got ${opts.watchTimeoutSeconds}`);
    }
    const listTimeoutMs = opts.listTimeoutMs ?? 60_000;
    if (!(listTimeoutMs > 0)) throw new KbpError('KBP_ERR_CONFIG', `listTimeoutMs must be positive, got ${listTimeoutMs}`);
    this.store = opts.store ?? new ObjectStore();
    this.#log = (opts.logger ?? createLogger()).child({ source: 'kubernetes' });
    if (opts.nodeName !== undefined && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(opts.nodeName)) {
      throw new KbpError('KBP_ERR_CONFIG', `node name ${JSON.stringify(opts.nodeName)} is not a valid Kubernetes object name`);
    }
    const shared = {
      kc, store: this.store, log: this.#log, backoff, listTimeoutMs, listPageSize: opts.listPageSize, nodeName: opts.nodeName,
      watchTimeoutSeconds: opts.watchTimeoutSeconds, onListed: () => this.#checkSynced(),
    };
    this.#watchers = (Object.keys(KIND_PATHS) as Kind[]).map((kind) => new KindWatcher(kind, shared));
  }

  /** every kind has had its first full list (stays true across later disconnections) */
  get synced(): boolean { return this.#synced; }

  status(): KindStatus[] {
    return this.#watchers.map((w) => w.status());
  }

  /** Resolves once every kind is listed; keeps retrying while the API server is unreachable. Resolves too if stopped first. */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new KbpError('KBP_ERR_INTERNAL', 'a stopped KubeSource cannot be started again'));
    if (this.#start) return this.#start;
    // Promise.withResolvers (Node 22+): the promise, and the resolver that synced or stop() calls
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#start = promise;
    this.#resolveStart = resolve;
    this.#log.info({ kinds: this.#watchers.map((w) => w.kind) }, 'starting informers');
    for (const w of this.#watchers) w.start();
    return promise;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(this.#watchers.map((w) => w.stop()));
    this.#resolveStart?.();
    this.#log.info('informers stopped');
  }

  #checkSynced(): void {
    if (this.#synced || !this.#watchers.every((w) => w.listed)) return;
    this.#synced = true;
    this.#log.info('every kind listed: synced');
    this.#resolveStart?.();
    try {
      this.emit('synced');
    } catch (err) {
      this.#log.error({ err }, "a 'synced' listener threw");
    }
  }
}

function checkBackoff(b: BackoffOptions): BackoffOptions {
  const bad = (why: string): never => { throw new KbpError('KBP_ERR_CONFIG', `backoff: ${why} (got ${JSON.stringify(b)})`); };
  if (!(b.initialMs > 0)) bad('initialMs must be positive');
  if (!(b.maxMs >= b.initialMs)) bad('maxMs must be at least initialMs');
  if (!(b.factor >= 1)) bad('factor must be at least 1');
  if (!(b.jitter >= 0 && b.jitter <= 1)) bad('jitter must be between 0 and 1');
  return b;
}

interface Shared {
  kc: KubeConfig;
  store: ObjectStore;
  log: Logger;
  backoff: BackoffOptions;
  listTimeoutMs: number;
  listPageSize: number | undefined;
  watchTimeoutSeconds: number | undefined;
  nodeName: string | undefined;
  onListed: () => void;
}

// client-node's own signature: events are unchecked JSON, which onEvent checks before ListWatch sees them
type WatchCallback = (phase: string, apiObj: any, watchObj?: any) => void;

/** One kind's informer, its restarts and everything it has in flight. */
class KindWatcher<K extends Kind> {
  readonly kind: K;
  readonly #s: Shared;
  readonly #log: Logger;
  readonly #informer: ListWatch<KindMap[K]>;
  readonly #fieldSelector: string | undefined;
  readonly #labelSelector: string | undefined;
  #stopped = true;
  #attempt = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  #listAbort: AbortController | undefined;
  /** watch deadlines and held-back re-watches */
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #controllers = new Set<AbortController>();
  readonly #agents = new Set<Agent>();
  listed = false;
  #watching = false;
  #lists = 0;
  #restarts = 0;
  #lastError: string | undefined;

  constructor(kind: K, shared: Shared) {
    this.kind = kind;
    this.#s = shared;
    this.#log = shared.log.child({ kind });
    const { path } = KIND_PATHS[kind];
    this.#fieldSelector = kind === 'Node' && shared.nodeName !== undefined ? `metadata.name=${shared.nodeName}` : undefined;
    // makeInformer() would build a plain Watch; we hand ListWatch our own (bookmarks, deadline, tracking)
    this.#labelSelector = kind === 'Node' ? undefined : PROXY_LABEL_SELECTOR;
    this.#informer = new ListWatch<KindMap[K]>(path, new SourceWatch(this.#trackingConfig(), this), () => this.#list(), false,
      this.#labelSelector, this.#fieldSelector);
    // (no 'add', 'update', 'delete' handlers: the lists and the watch events reach the store from here
    // and SourceWatch, and ListWatch is handed none of the objects; see #list)
    this.#informer.on('error', (err) => this.#onError(err));
  }

  get stopped(): boolean { return this.#stopped; }

  status(): KindStatus {
    return {
      kind: this.kind, listed: this.listed, watching: this.#watching,
      resourceVersion: this.#informer.latestResourceVersion(), lists: this.#lists, restarts: this.#restarts,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  start(): void {
    this.#stopped = false;
    this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#listAbort?.abort();
    await this.#informer.stop();
    for (const c of this.#controllers) c.abort();
    this.#controllers.clear();
    this.releaseAgents();
    this.#watching = false;
  }

  #run(): void {
    if (this.#stopped) return;
    // ListWatch reports its failures through 'error' and resolves; a rejection means a bug in a callback path
    this.#informer.start().catch((err: unknown) => this.#onError(err));
  }

  #onError(err: unknown): void {
    this.#watching = false;
    if (this.#stopped) return; // aborting our own requests on stop() lands here
    const delay = this.#nextDelay();
    this.#restarts++;
    this.#lastError = errorReason(err);
    this.#log.warn({ reason: this.#lastError, err, attempt: this.#attempt, retryInMs: delay },
      `${this.kind} informer failed; restarting it`);
    if (this.#restartTimer) return;
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.#run();
    }, delay);
  }

  #nextDelay(): number {
    const { initialMs, maxMs, factor, jitter } = this.#s.backoff;
    const base = Math.min(maxMs, initialMs * factor ** this.#attempt);
    this.#attempt++;
    return Math.round(Math.min(maxMs, base * (1 + jitter * Math.random())));
  }

  /** the informer got something useful from the server: the next failure starts the backoff over */
  healthy(): void {
    this.#attempt = 0;
  }

  async #list(): Promise<KubernetesListObject<KindMap[K]>> {
    if (this.#stopped) throw new KbpError('KBP_ERR_SOURCE', `${this.kind} informer stopped`);
    const ac = new AbortController();
    this.#listAbort = ac;
    try {
      const { plural } = KIND_PATHS[this.kind];
      const path = withQuery(KIND_PATHS[this.kind].path, {
        ...(this.#labelSelector !== undefined && { labelSelector: this.#labelSelector }),
        ...(this.#fieldSelector !== undefined && { fieldSelector: this.#fieldSelector }),
      });
      // a first list into an empty kind goes into the store page by page: the agent compiles what has
      // come while the next pages are on the way (Agent.start), instead of all of it after the last one
      // (issue 10: the first sync). The replace() below still makes the store the list, exactly; before
      // the first list of every kind ends, nothing syncs from the store. A relist keeps the store as
      // it was until it is complete
      const store = this.#s.store;
      const byPage = !this.listed && store.size(this.kind) === 0;
      let pageFailed = false;
      const onPage = byPage ? (items: readonly KindMap[K][]) => {
        try {
          for (const o of items) store.upsert(this.kind, o);
        } catch (err) {
          pageFailed = true;
          this.#log.error({ err }, `a store listener threw while a page of ${plural} was stored`);
        }
      } : undefined;
      // each item slimmed as it arrives, parsed without what slimming drops (json-prune.ts: a Node list
      // is one small object)
      const kind: Kind = this.kind;
      const prune = kind === 'Node' ? undefined : kind;
      const res = await listObjects<unknown, KindMap[K]>(this.#s.kc, path, plural,
        { signal: ac.signal, timeoutMs: this.#s.listTimeoutMs, pageSize: this.#s.listPageSize, admit: (item, plain, decoded) => this.#admit(item, plain, decoded, byPage), ...(onPage && { onPage }), ...(prune && { prune, nodeName: this.#s.nodeName }) });
      if (this.#stopped) throw new KbpError('KBP_ERR_SOURCE', `${this.kind} informer stopped`);
      const items = res.items;
      try {
        // every page stored, and the store holds as many objects as the list (it holds every one of
        // them): it is the list already, and replace() would only walk it again (~10 % of the list's
        // main thread at 10,000 Services). A list with a key twice, or whose pages were followed by
        // a whole read after a 410 (an object deleted meanwhile is still stored), is replaced
        if (!byPage || pageFailed || store.size(this.kind) !== items.length) store.replace(this.kind, items);
      } catch (err) {
        this.#log.error({ err }, `a store listener threw while ${plural} were replaced`);
      }
      this.#lists++;
      this.healthy();
      this.#log.info({ count: items.length, resourceVersion: res.resourceVersion, ...res.stats },
        this.listed ? `relisted ${plural}` : `listed ${plural}`);
      if (!this.listed) {
        this.listed = true;
        this.#s.onListed();
      }
      // ListWatch is handed the list's resourceVersion and no items. With them it would build its own
      // cache of every object (two Maps of the kind's objects: cacheMapFromList, then one insert and
      // one 'add' callback per item, each finding the object stored already) at the list's end, on
      // the start's critical path (~0.3 s of the main thread at 100,000 Services, docs/perf-log.md session
      // 24), and keep it: a second index of what the store holds. The store is the one: the list
      // replaced the kind in it above (deletes included, which ListWatch's cache gave on a relist),
      // and SourceWatch stores the watch's events itself
      return { metadata: { resourceVersion: res.resourceVersion }, items: [] };
    } finally {
      if (this.#listAbort === ac) this.#listAbort = undefined;
    }
  }

  /**
   * a listed object as stored: undefined when invalid; the store's own object where the version is
   * unchanged (no spurious change). first: a first list into an empty store, which holds nothing
   * from before to keep (it holds this list's earlier pages: an object listed twice is stored twice)
   */
  #admit(item: unknown, plain = false, decoded?: DecodedSlice, first = false): KindMap[K] | undefined {
    const why = this.invalid(item);
    if (why) {
      this.#log.warn({ reason: why, object: describe(item) }, `ignoring a listed ${this.kind}`);
      return undefined;
    }
    const obj = item as KindMap[K];
    const cur = first ? undefined : this.#s.store.get(this.kind, objectKey(obj));
    // slimmed here, before ListWatch's own cache takes it: the cache and the store share one copy
    return cur && sameVersion(cur, obj) ? cur : slimObject(this.kind, obj, this.#s.nodeName, true, plain, decoded);
  }

  /** why an object from the API cannot be stored (ListWatch would crash on it), or undefined */
  invalid(obj: unknown): string | undefined {
    const meta = (obj as { metadata?: { name?: unknown; namespace?: unknown } } | null)?.metadata;
    if (!meta || typeof meta !== 'object') return 'no metadata';
    if (typeof meta.name !== 'string' || meta.name === '') return 'no metadata.name';
    if (KIND_PATHS[this.kind].namespaced && (typeof meta.namespace !== 'string' || meta.namespace === '')) {
      return 'no metadata.namespace';
    }
    return undefined;
  }

  /** a watched object added or modified, slimmed: stored unless the store holds this version */
  upsert(obj: KindMap[K]): void {
    try {
      const cur = this.#s.store.get(this.kind, objectKey(obj));
      if (cur && sameVersion(cur, obj)) return;
      this.#s.store.upsert(this.kind, obj);
    } catch (err) {
      this.#log.error({ err, object: describe(obj) }, 'a store listener threw on an update');
    }
  }

  /** a watched object deleted */
  delete(obj: KindMap[K]): void {
    try {
      this.#s.store.delete(this.kind, objectKey(obj));
    } catch (err) {
      this.#log.error({ err, object: describe(obj) }, 'a store listener threw on a delete');
    }
  }

  // --- what SourceWatch needs -------------------------------------------------------------------

  get log(): Logger { return this.#log; }
  get nodeName(): string | undefined { return this.#s.nodeName; }
  get watchTimeoutSeconds(): number {
    return this.#s.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
  }
  setWatching(v: boolean): void { this.#watching = v; }
  addController(c: AbortController): void { this.#controllers.add(c); }
  dropController(c: AbortController): void { this.#controllers.delete(c); }

  timer(fn: () => void, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => { this.#timers.delete(t); fn(); }, ms);
    this.#timers.add(t);
    return t;
  }
  clearTimer(t: NodeJS.Timeout | undefined): void {
    if (t === undefined) return;
    clearTimeout(t);
    this.#timers.delete(t);
  }

  /** the backoff delay for a re-watch held back, counted as a failed attempt */
  holdBackMs(): number { return this.#nextDelay(); }

  releaseAgents(): void {
    for (const a of this.#agents) a.destroy();
    this.#agents.clear();
  }

  /** the config client-node's Watch reads, recording each HTTP agent it hands out so stop() can cut it */
  #trackingConfig(): KubeConfig {
    const kc = this.#s.kc;
    const tracking = Object.create(kc) as KubeConfig;
    tracking.applyToFetchOptions = async (opts) => {
      const init = await kc.applyToFetchOptions(opts);
      const agent = init.agent;
      if (agent && typeof agent === 'object' && typeof (agent as Agent).destroy === 'function') {
        if (this.#stopped) {
          (agent as Agent).destroy();
          throw new KbpError('KBP_ERR_SOURCE', `${this.kind} informer stopped`);
        }
        this.#agents.add(agent as Agent);
      }
      return init;
    };
    return tracking;
  }
}

/** client-node's Watch with bookmarks, a deadline, malformed events dropped and an end that stop() controls. */
class SourceWatch<K extends Kind> extends Watch {
  readonly #w: KindWatcher<K>;

  constructor(config: KubeConfig, owner: KindWatcher<K>) {
    super(config);
    this.#w = owner;
  }

  override async watch(path: string, queryParams: Record<string, string | number | boolean | undefined>,
    callback: WatchCallback, done: (err: unknown) => void): Promise<AbortController> {
    const w = this.#w;
    const dead = (): AbortController => { const c = new AbortController(); c.abort(); return c; };
    if (w.stopped) return dead();
    const timeoutSeconds = w.watchTimeoutSeconds;
    const startedAt = Date.now();
    let useful = 0;
    let expired = false;
    let finished = false;
    let deadlineHit = false;
    let deadline: NodeJS.Timeout | undefined;
    let controller: AbortController | undefined;

    const finish = (err: unknown): void => {
      if (finished) return;
      finished = true;
      w.clearTimer(deadline);
      if (controller) w.dropController(controller);
      w.setWatching(false);
      w.releaseAgents();
      if (w.stopped) return;
      if (deadlineHit) {
        w.log.debug({ timeoutSeconds }, 'watch outlived its timeout; re-watching');
        done(null);
      } else if (err) {
        done(err);
      } else if (useful === 0 && !expired && Date.now() - startedAt < MIN_HEALTHY_WATCH_MS) {
        // (after a 410 the informer relists, which is not a hot loop: no pause then)
        const ms = w.holdBackMs();
        w.log.warn({ reason: 'watch closed at once', retryInMs: ms }, 'the server ended the watch immediately; re-watching after a pause');
        w.timer(() => { if (!w.stopped) done(null); }, ms);
      } else {
        w.log.debug('the server ended the watch; re-watching from the last resourceVersion');
        done(null);
      }
    };

    const onEvent: WatchCallback = (phase, obj, raw) => {
      if (w.stopped) return;
      switch (phase) {
        case 'ADDED': case 'MODIFIED': case 'DELETED': {
          const why = w.invalid(obj);
          if (why) {
            w.log.warn({ reason: why, event: phase, object: describe(obj) }, `ignoring a watched ${w.kind}`);
            return;
          }
          break;
        }
        case 'BOOKMARK':
          if (typeof obj?.metadata?.resourceVersion !== 'string' || obj.metadata.resourceVersion === '') return;
          break;
        case 'ERROR': {
          const code = typeof obj?.code === 'number' ? obj.code : undefined;
          const reason = `${code ?? '?'} ${typeof obj?.reason === 'string' ? obj.reason : 'error'}`;
          if (code === 410) expired = true;
          if (code === 410) w.log.info({ reason, message: obj?.message }, 'watch expired (410 Gone); relisting');
          else w.log.warn({ reason, message: obj?.message }, 'watch error event');
          callback(phase, obj ?? {}, raw);
          return;
        }
        default:
          w.log.warn({ reason: `unknown event type ${JSON.stringify(phase)}` }, 'ignoring a watch event');
          return;
      }
      useful++;
      w.healthy();
      // the object stored here, as ListWatch's 'add', 'update' and 'delete' did it (its cache, which
      // held every object, is not kept: KindWatcher #list); ListWatch reads only the resourceVersion,
      // as a BOOKMARK's (it sets the next watch's from every event but ERROR)
      if (phase === 'DELETED') w.delete(obj);
      else if (phase !== 'BOOKMARK') w.upsert(slimObject(w.kind, obj, w.nodeName, true));
      callback('BOOKMARK', phase === 'BOOKMARK' ? obj : { metadata: { resourceVersion: obj.metadata?.resourceVersion } }, raw);
    };

    try {
      const c = await super.watch(path, { ...queryParams, allowWatchBookmarks: true, timeoutSeconds }, onEvent, finish);
      controller = c;
      if (w.stopped) {
        c.abort();
        w.releaseAgents();
      } else if (!finished) {
        w.addController(c);
        w.setWatching(true);
        deadline = w.timer(() => { deadlineHit = true; c.abort(); }, (timeoutSeconds + Math.min(timeoutSeconds, WATCH_DEADLINE_GRACE_S)) * 1000);
      }
      return c;
    } catch (err) {
      // Watch.watch() throws (instead of calling done) when the config cannot produce request options
      finish(err);
      return dead();
    }
  }
}

function sameVersion(a: { metadata?: { resourceVersion?: string } }, b: { metadata?: { resourceVersion?: string } }): boolean {
  const rv = a.metadata?.resourceVersion;
  return rv !== undefined && rv !== '' && rv === b.metadata?.resourceVersion;
}

/** enough of an object to find it in a log line */
function describe(obj: unknown): string {
  const m = (obj as { metadata?: { namespace?: unknown; name?: unknown } } | null)?.metadata;
  if (m && typeof m === 'object') return `${typeof m.namespace === 'string' ? m.namespace + '/' : ''}${String(m.name ?? '?')}`;
  return JSON.stringify(obj)?.slice(0, 200) ?? String(obj);
}
