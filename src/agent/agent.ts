// The agent: source -> compile -> plan -> diff -> data plane, behind a bounded-frequency runner, with
// kube-proxy's health and metrics. Level-triggered: every sync recompiles the whole snapshot (compile
// is cheap) and writes only the diff against what the data plane holds.
import { Compiler, type ChangedKeys, type CompileOptions, type CompiledService, type ServiceList } from '../compile/compile.js';
import type { NodeState } from '../model/compiled.js';
import { buildPlan, finishChain, releaseSlots, undoPlan } from '../plan/plan.js';
import { diffPlans } from '../plan/diff.js';
import type { Plan, PlanFrontend, PlanOp, PlanTable } from '../plan/types.js';
import { capacityAdvice, CapacityTracker, usage, type Capacity } from '../plan/capacity.js';
import { countV6 } from '../plan/delta.js';
import { sameList } from '../plan/frontend.js';
import type { Dataplane, WarmWriter } from '../dataplane/types.js';
import type { Kind, Snapshot, Source } from '../source/types.js';
import { BoundedFrequencyRunner, realTimers, type Timers } from '../reconcile/runner.js';
import { healthCheckHosts, ProxyHealth, ServiceHealthServers, type ServiceHealthInfo } from './health.js';
import { Metrics, type IpFamily } from './metrics.js';
import type { HeapHeadroom } from '../util/heap-headroom.js';
import type { Logger } from '../util/log.js';
import { formatObjectError, type ObjectError } from '../model/types.js';
import { silentLogger } from '../util/log.js';
import { GcClock } from '../util/gc-clock.js';
import { warmMaglev, warmOneChange, warmSource, WarmCluster } from './warm.js';
import { pino } from 'pino';
import { openSync, readSync } from 'node:fs';
import { CompileAhead } from './compile-ahead.js';

export interface AgentOptions {
  compile: CompileOptions;
  /** Maglev seed, the same on every node */
  seed: number;
  minSyncMs: number;
  syncPeriodMs: number;
  /** how often devices are rescanned and kernel counters read */
  housekeepingMs?: number;
  /**
   * Called by start(); what it returns is ended by the first full sync that succeeds (or stop()):
   * launch passes util/heap-headroom.ts's, V8's heap growing factor 4 for the start (fewer full GCs
   * while a big start builds what it keeps). Unset: V8's own pacing throughout.
   */
  startHeadroom?: () => HeapHeadroom;
  /**
   * epoch ms: an EndpointSlice's trigger-time annotation counts for network programming latency
   * only when later (kube-proxy's trackerStartTime); default: when start() is called
   */
  triggersAfterMs?: number;
  timers?: Timers;
}

/**
 * one-change syncs the warm-up runs (warm.ts): enough for V8 to optimize the path, not only compile
 * it. With 4, the first real changes still ran it unoptimized (main thread 3.2-4.2 ms against ~2 for
 * later changes, docs/perf-log.md session 14)
 */
const WARM_CHANGES = 48;

/**
 * one-change syncs the warm-up runs through a second Agent of its own (Agent.#warmSyncs): the
 * agent's own sync code, each change a sync of its own
 */
const WARM_AGENT_CHANGES = 24;
/** the warm-up Agent's Services created and deleted after those (in turn, from created) */
const WARM_AGENT_SERVICE_CHANGES = 8;

/**
 * a sync due this soon counts as pending for the full GC after a big sync (Agent.syncSoon): about
 * that GC's pause at 10,000 Services (0.25 s here); one due later waits out minSyncPeriod anyway
 * and the GC ends first
 */
const SYNC_SOON_MS = 250;

/** the least time between two compiles while the source lists (Agent.#scheduleAhead) */
const AHEAD_GAP_MS = 100;
/**
 * the most: a step costs what its pages brought, not what the store holds (docs/perf-log.md, session 19),
 * so a long step need not be followed by a longer wait. With twice the last step's time and no bound,
 * steps grew wherever compiling took more than a third of the list's time (100,000 Services: 1.4, 3.6,
 * 3.7 s) and the pages of the last gap, a third of the list, were left to the first sync's compile
 */
const AHEAD_GAP_MAX_MS = 500;

/** the wait after a compile ahead that took `took` ms: twice its time, within AHEAD_GAP_MS..AHEAD_GAP_MAX_MS */
export function aheadGap(took: number): number {
  return Math.max(AHEAD_GAP_MS, Math.min(AHEAD_GAP_MAX_MS, 2 * took));
}

/** frontends a turn of the capacity count a first sync put off (Agent #sync): ~10 ms at 100,000 Services */
const SETTLE_SLICE = 2048;

export class Agent {
  readonly metrics: Metrics;
  readonly health: ProxyHealth;
  readonly serviceHealth: ServiceHealthServers;
  /** a warning said this node's Node object is missing (once: a Node deleted later is the eligibility line's) */
  #toldNoNode = false;
  /** after every sync: the Services left out because the maps are full (an event recorder names them) */
  onServicesLeftOut?: (services: readonly string[], limit: string | undefined) => void;
  /**
   * after every sync that completed: its op count (the heap trimmer collects after a big one), and
   * after the first full sync the warm-up, which the hook must run once (after the trimmer's GC,
   * which would flush what it compiled). Unset: the warm-up runs on the next timer.
   */
  onSynced?: (ops: number, warm?: () => void) => void;
  readonly #source: Source;
  readonly #dp: Dataplane;
  readonly #opts: AgentOptions;
  readonly #log: Logger;
  readonly #runner: BoundedFrequencyRunner;
  readonly #compiler: Compiler;
  /** map usage kept between syncs: a sync counts only the frontends that changed */
  readonly #capacity = new CapacityTracker();
  #current: Plan | undefined;
  #state: NodeState | undefined;
  /** when each not-yet-synced change arrived, oldest first: /healthz's queue age */
  #pendingSince: number[] = [];
  /** performance.now() of the first change since the last sync started (its log line's queuedMs) */
  #queuedAt: number | undefined;
  /**
   * Network programming latency's start per changed EndpointSlice (key -> family and epoch ms), as
   * kube-proxy's EndpointSliceCache keeps it: the endpoints.kubernetes.io/last-change-trigger-time
   * annotation the EndpointSlice controller writes (the earliest of the pending ones). Standalone,
   * where nothing writes it, the time the change was seen.
   */
  #triggerTimes = new Map<string, { family: IpFamily; ms: number }>();
  /** trigger times at or before this (epoch ms) are not recorded (AgentOptions.triggersAfterMs) */
  #triggersAfter = -Infinity;
  /** the trigger times the sync under way covers */
  #inflightTriggers = new Map<string, { family: IpFamily; ms: number }>();
  #unsubscribe?: () => void;
  /**
   * The store keys changed since the last snapshot, handed to the Compiler so it compares only
   * those; undefined (compare everything) until the first sync after subscribing.
   */
  #changed: Record<Kind, Set<string>> | undefined;
  /** the compiles run before the first sync (while the source lists, and right after); undefined once it took their record */
  #ahead: CompileAhead | undefined;
  /** a compile while the source lists, due (see #scheduleAhead) */
  #aheadTimer: NodeJS.Timeout | undefined;
  #aheadNotBefore = 0;
  #listing = false;
  /** the data plane's init has finished (Agent.start's compiles while listing wait for it) */
  #loaded = false;
  /**
   * While a fresh data plane loads and the first sync plans beside it (start()): settles true when
   * the load is done, false when it failed (nothing is written then). A sync's writes wait for it.
   */
  #loading: Promise<boolean> | undefined;
  /**
   * an apply failed: the kernel may hold some of its writes, which a diff against #current (the plan
   * from before it) would never undo or redo; the next sync reads back what the kernel holds first
   */
  #kernelUnknown = false;
  #housekeeping?: NodeJS.Timeout;
  /** the data plane's init has finished (Agent.start): its counters can be read */
  #dpReady = false;
  #syncs = 0;
  /** the problems last logged, by object: each is logged when it appears or changes, not every sync */
  #logged = new Map<string, string>();
  /** detectLocalMode NodeCIDR: the pod CIDRs last handed to the data plane, joined */
  #localSources: string | undefined;

  constructor(deps: { source: Source; dataplane: Dataplane; log?: Logger; metrics?: Metrics; serviceHealth?: ServiceHealthServers },
    opts: AgentOptions) {
    this.#source = deps.source;
    this.#dp = deps.dataplane;
    this.#opts = opts;
    this.#log = deps.log ?? silentLogger;
    // keeps per-Service results between syncs: a sync after one change recompiles one Service
    this.#compiler = new Compiler(opts.compile);
    this.metrics = deps.metrics ?? new Metrics();
    // kube-proxy: healthz fails when a queued change waits more than 2 x syncPeriod
    this.health = new ProxyHealth({ healthTimeoutMs: 2 * opts.syncPeriodMs });
    this.health.onProbe = (path, code) => (path === '/healthz' ? this.metrics.healthzTotal : this.metrics.livezTotal).inc({ code: String(code) });
    this.serviceHealth = deps.serviceHealth ?? new ServiceHealthServers({ log: this.#log, proxyHealthy: () => this.health.healthy() });
    this.#runner = new BoundedFrequencyRunner(() => this.sync(), {
      minIntervalMs: opts.minSyncMs,
      maxIntervalMs: opts.syncPeriodMs,
      // kube-proxy's burstSyncs (pkg/proxy/iptables NewProxier): a change right after a periodic
      // resync runs at once instead of waiting out minSyncPeriod
      burst: 2,
      timers: opts.timers ?? realTimers,
      onResult: (r) => {
        if (!r.ok) {
          this.metrics.syncErrors.inc();
          this.#log.error({ err: r.error, attempt: r.attempt }, 'sync failed; retrying with backoff');
        }
      },
    });
  }

  /** the plan the data plane holds after the last successful sync */
  get plan(): Plan | undefined {
    return this.#current;
  }

  get state(): NodeState | undefined {
    return this.#state;
  }

  get syncs(): number {
    return this.#syncs;
  }

  async start(): Promise<void> {
    const t0 = performance.now();
    if (!this.#warmed) this.#headroom ??= this.#opts.startHeadroom?.();
    this.#triggersAfter = this.#opts.triggersAfterMs ?? Date.now();
    // the data plane loads (the BPF verifier on the thread pool) while the source reads its objects:
    // at 10,000 Services each took over a second (issue 10: the first sync after start); the runner
    // starts only after both, so no sync sees the data plane half-ready
    let t1 = t0;
    this.#loaded = false;
    const init = this.#dp.init().then(() => {
      t1 = performance.now();
      this.#loaded = true;
    });
    init.catch(() => {}); // awaited below; a source that fails first must not leave it unhandled
    this.#unsubscribe = this.#source.store.onChange((kind, key) => {
      this.#changed?.[kind].add(key);
      this.#ahead?.note(kind, key);
      if (this.#listing) this.#scheduleAhead();
      if (kind === 'Service') this.metrics.serviceChanges.inc();
      else if (kind === 'EndpointSlice') {
        this.metrics.endpointChanges.inc();
        this.#noteTrigger(key);
      }
      // (no pending set before the first sync, nor after a failed one: the gauges read 0 then, as
      // #setPending left them; 40,000 gauge writes of 0 during a first list of 10,000 Services)
      if (this.#changed) this.#setPending();
      this.#queuedAt ??= performance.now();
      this.#pendingSince.push(Date.now());
      this.health.queued();
      this.metrics.lastQueued.set(Date.now() / 1000);
      this.#runner.run();
    });
    this.#ahead = new CompileAhead(this.#source.store, this.#compiler);
    this.#listing = true;
    try {
      await this.#source.start();
    } catch (e) {
      // the caller's stop() closes the data plane: never under its load
      await init.catch(() => {});
      throw e;
    } finally {
      this.#listing = false;
      clearTimeout(this.#aheadTimer);
      this.#aheadTimer = undefined;
    }
    const ts = performance.now();
    // the first compile while the verifier may still run (of what came after the compiles while the
    // source listed, if any): the first sync's compile then has only the changes since (CompileAhead)
    // and starts the plan at once. The load took 1.5-1.9 s here
    // (an empty folder), about what reading 10,000 files takes: where it outlasts the source, the
    // compile (~0.5 s at 10,000 Services) no longer waits for it (docs/perf-log.md, session 10)
    const steps = this.#ahead.steps, whileListing = this.#ahead.ms;
    const ahead = this.#loaded ? 0 : this.#compileAhead();
    const ta = performance.now();
    // a first start on this node, the load still running: the data plane holds nothing to read back
    // and knows its sizes, so the first sync plans now, beside the verifier, and writes once the
    // load is done (#sync waits for #loading). On a folder the load was the last to end (docs/perf-log.md, session 14, p14first)
    const early = !this.#loaded && this.#dp.fresh?.() === true;
    if (early) {
      this.#loading = init.then(() => true, () => false);
      this.#gc ??= new GcClock();
      this.#runner.start();
    }
    try {
      await init;
    } catch (e) {
      // the sync planned meanwhile writes nothing (#loading is false): no retry either
      this.#runner.stop();
      throw e;
    }
    this.#loading = undefined;
    this.#dpReady = true;
    const t2 = performance.now();
    // graceful restart: reuse the ids the kernel holds, so no flow's backend or frontend id changes
    // (a fresh data plane holds none, and the first sync may have planned already)
    if (!early) this.#current = await this.#dp.readPlan();
    const t3 = performance.now();
    if (this.#current) this.#log.info({ frontends: this.#current.frontends.size, backends: this.#current.backends.size }, 'restored state from the data plane');
    // where a slow start goes (issue 10: first sync < 3 s): the first sync logs its own steps. The
    // load and the source overlap: sourceMs counts from the start, compileAheadMs is the compile run
    // meanwhile, loadMs is what the data plane took beyond both (the parts add up to the start's
    // time), loadTotalMs its whole init
    // compileWhileListingMs: the compiles run between the source's pages (within sourceMs), in aheadSteps
    this.#log.info({ sourceMs: ms(ts - t0), compileAheadMs: ms(ahead), loadMs: ms(t2 - ta), loadTotalMs: ms(t1 - t0), readPlanMs: ms(t3 - t2),
      ...(steps && { compileWhileListingMs: ms(whileListing), aheadSteps: steps }), ...(early && { plannedBesideLoad: true }) },
      'data plane loaded and source started');
    this.#gc ??= new GcClock();
    this.#runner.start();
    const every = this.#opts.housekeepingMs ?? 10_000;
    this.#housekeeping = setInterval(() => void this.#housekeep(), every);
    this.#housekeeping.unref();
  }

  /**
   * Compiles the source's objects before the first sync, which compiles them again: the Compiler
   * keeps what it compiled, so that compile costs an identity walk over the store. Nothing is
   * logged or kept from this one (the sync reports the objects' problems). Returns its wall ms.
   */
  #compileAhead(): number {
    return this.#ahead?.step(false) ?? 0;
  }

  /**
   * A compile of what the source has stored so far, while it lists the rest (the kube source stores
   * a first list page by page) and the data plane is loaded: the first sync then compiles only the
   * last pages. Each runs once the event loop is free, and no sooner than aheadGap() after the last:
   * twice its time, at least AHEAD_GAP_MS and at most AHEAD_GAP_MAX_MS, so the pages keep most of the
   * main thread while steps are short and the sync is left a gap's pages, not a third of the list.
   */
  #scheduleAhead(): void {
    if (this.#aheadTimer) return;
    this.#aheadTimer = setTimeout(() => {
      this.#aheadTimer = undefined;
      // while the verifier runs, a compile after the list is free (it ends first, or the compile
      // hides behind it): compiling between pages then only lengthens the list, on a main thread the
      // pages keep busy (docs/perf-log.md, session 13). Once the data plane is up, the list is the tail
      if (!this.#listing || !this.#ahead || !this.#loaded) return;
      const took = this.#ahead.step(true);
      this.#aheadNotBefore = performance.now() + aheadGap(took);
    }, Math.max(0, this.#aheadNotBefore - performance.now()));
  }

  /** Resolves when every queued change has been synced (tests, shutdown). */
  whenIdle(): Promise<void> {
    return this.#runner.whenIdle();
  }

  /**
   * A sync runs, or a change's sync starts within SYNC_SOON_MS: the heap trimmer's full GC after a
   * big sync waits for it (util/heap-trim.ts `busy`) rather than hold it for its pause.
   */
  get syncSoon(): boolean {
    return this.#runner.dueWithin(SYNC_SOON_MS);
  }

  /**
   * The capacity count a first sync put off is still being made, in slices (#sync): the heap
   * trimmer's full GC after that sync waits for it too (launch.ts), so the count's garbage is in that
   * GC's and what it keeps is compacted with the rest (made across it, the settled RSS read +1-4 %)
   */
  get countPending(): boolean {
    return this.#capacity.unsettled;
  }

  requestSync(): void {
    this.#runner.run();
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#changed = undefined;
    this.#ahead = undefined;
    this.#listing = false;
    clearTimeout(this.#aheadTimer);
    this.#aheadTimer = undefined;
    this.#runner.stop();
    this.#endHeadroom();
    this.#gc?.stop();
    this.#gc = undefined;
    if (this.#housekeeping) clearInterval(this.#housekeeping);
    await this.#source.stop();
    await this.serviceHealth.closeAll();
    // after a housekeeping pass or apply in flight, not under it
    await this.#exclusive(() => this.#dp.close());
  }

  #noteTrigger(key: string): void {
    const slice = this.#source.store.get('EndpointSlice', key);
    const family: IpFamily = slice?.addressType === 'IPv6' ? 'IPv6' : 'IPv4';
    const text = slice?.metadata?.annotations?.[TRIGGER_TIME_ANNOTATION];
    const parsed = typeof text === 'string' ? Date.parse(text) : NaN;
    // kube-proxy records only slices that carry the annotation, and only a trigger time after its
    // start (pkg/proxy/endpointschangetracker.go: t.After(ect.trackerStartTime)): what the first
    // list brings was changed before the proxy ran, and its age is no programming latency (it made
    // a restart observe every slice's age, 10,000 observations inside the first sync at 10,000
    // Services). Standalone nothing writes it: a change counts from when it was seen, and the
    // folder's first read (the source's start) is that first list
    if (Number.isFinite(parsed) && parsed <= this.#triggersAfter) return;
    const ms = Number.isFinite(parsed) ? parsed : this.#opts.compile.standalone && !this.#listing ? Date.now() : undefined;
    if (ms === undefined) return;
    const have = this.#triggerTimes.get(key);
    if (!have || ms < have.ms) this.#triggerTimes.set(key, { family, ms });
  }

  #setPending(): void {
    this.metrics.serviceChangesPending.set(this.#changed?.Service.size ?? 0);
    this.metrics.endpointChangesPending.set(this.#changed?.EndpointSlice.size ?? 0);
  }

  /** One sync: compile the snapshot, plan, diff against what the data plane holds, apply. */
  async sync(): Promise<void> {
    const full = this.#changed === undefined;
    try {
      await this.#sync(full);
    } catch (e) {
      // what failed may have left compile's caches ahead of the kernel: the retry recompiles everything
      if (this.#unsubscribe) {
        this.#changed = undefined;
        this.#setPending();
      }
      // the changes it covered are still pending: their programming latency ends with the retry
      for (const [k, v] of this.#inflightTriggers) if (!this.#triggerTimes.has(k)) this.#triggerTimes.set(k, v);
      this.#inflightTriggers = new Map();
      throw e;
    }
  }

  async #sync(full: boolean): Promise<void> {
    const started = performance.now();
    const cpu0 = process.cpuUsage(), thread0 = process.threadCpuUsage();
    const queuedAt = this.#queuedAt;
    this.#queuedAt = undefined;
    // where a slow sync's wall time went when it was not this process's work: only for its log line
    const detail = full || this.#log.isLevelEnabled('debug');
    const waited0 = detail ? runQueueMs() : NaN;
    const faults0 = detail ? process.resourceUsage().minorPageFault : 0;
    const ownFaults0 = detail ? threadMinorFaults() : NaN;
    const changesCovered = this.#pendingSince.length;
    // the store's maps as they are: compile reads them before the first await
    const snapshot = this.#source.store.view();
    // the first sync: what changed since the compiles run ahead of it (undefined: compare everything)
    const changed: ChangedKeys | undefined = this.#changed ?? this.#ahead?.take();
    this.#ahead = undefined;
    this.#changed = this.#unsubscribe ? { Service: new Set(), EndpointSlice: new Set(), Node: new Set() } : undefined;
    this.#setPending();
    const triggers = this.#inflightTriggers = this.#triggerTimes;
    this.#triggerTimes = new Map();
    const t0 = performance.now();
    const { state: compiled, errors, serviceList, noLocalEndpoints } = this.#compiler.compile(snapshot, changed);
    const t1 = performance.now();
    this.#logObjectErrors(errors);
    this.metrics.rejectedObjects.set(errors.length);
    for (const [ip_family, c] of Object.entries(noLocalEndpoints)) {
      this.metrics.noLocalEndpoints.set({ ip_family, traffic_policy: 'internal' }, c.internal);
      this.metrics.noLocalEndpoints.set({ ip_family, traffic_policy: 'external' }, c.external);
    }
    const wasEligible = this.health.nodeEligible;
    const node = snapshot.nodes.get(this.#opts.compile.nodeName);
    this.health.syncNode(node, !this.#opts.compile.standalone);
    if (!node && !this.#opts.compile.standalone && !this.#toldNoNode && this.health.nodeEligible) {
      // kube-proxy waits for its Node and fails after 5 minutes without it (pkg/proxy/node.go
      // newNodeManager); serving on, say why node-local endpoints may never match
      this.#toldNoNode = true;
      this.#log.warn({ node: this.#opts.compile.nodeName },
        'no Node named so in the API server: endpoints are local by this name (externalTrafficPolicy/internalTrafficPolicy Local, topology), so none may be; is --node-name the Node\'s name?');
    }
    if (wasEligible !== this.health.nodeEligible) {
      this.#log.warn({ node: this.#opts.compile.nodeName, nodeEligible: this.health.nodeEligible, deleted: !node },
        this.health.nodeEligible ? 'this node is eligible again: /healthz answers 200' : 'this node is being deleted (or tainted ToBeDeletedByClusterAutoscaler): /healthz answers 503');
    }
    await this.#syncLocalSources();
    const t2 = performance.now();

    // a full map must not hold back every other Service: leave out whole Services, by name
    // (what the kernel holds keeps its place: a newcomer is left out, not a Service serving now)
    const cap = this.#dp.capacity();
    // a first sync whose state fits by an upper bound leaves the exact count (0.4-0.5 s at 100,000
    // Services, the main thread alone between compile and plan) to the turn after its end (below)
    const fitted = this.#capacity.fit(compiled, cap, () => new Set(this.#state?.frontends.map((f) => f.service)), () => this.#state, { deferCount: full });
    const state = fitted.state;
    // the metric's series, the event recorder and the error line follow the list when it changes (at
    // 100,000 Services on a 10,000-Service Maglev array, ~90,000 labelled series were set again at
    // every sync; the line, with up to 20 names, was written inside every sync, a change to any
    // Service served included: its fit step read 5-19 ms of wall on 0.3-0.6 of CPU, docs/perf-log.md, session 25)
    const told = this.#toldLeftOut;
    if (!told || !sameList(told.dropped, fitted.dropped) || told.limit !== fitted.limit || told.to !== this.onServicesLeftOut) {
      if (fitted.dropped.length && (!told || !sameList(told.dropped, fitted.dropped) || told.limit !== fitted.limit)) {
        // the map to size and the flag that sizes it: a user with more Services than the defaults hold
        // (the Maglev array holds ~10,000 of 10 endpoints) must learn what to set from this line
        const advice = fitted.limit && fitted.needed !== undefined ? capacityAdvice(fitted.limit, fitted.needed, cap) : undefined;
        this.#log.error({ limit: fitted.limit, ...(advice && { map: advice.maps.join(','), needed: fitted.needed, capacity: cap[fitted.limit!] }),
          services: fitted.dropped.slice(0, 20), count: fitted.dropped.length },
          `data plane maps would overflow (${fitted.limit}): ${fitted.dropped.length} Service(s) left out: ${fitted.dropped.slice(0, 5).join(', ')}${fitted.dropped.length > 5 ? ', ...' : ''}${advice ? `; ${advice.text}` : ''}`);
      }
      this.metrics.setDroppedServices(fitted.dropped, fitted.limit);
      this.onServicesLeftOut?.(fitted.dropped, fitted.limit);
      this.#toldLeftOut = { dropped: fitted.dropped, limit: fitted.limit, to: this.onServicesLeftOut };
    }
    // room kept for what this sync removes is free after it: the next sync may take the Services left out
    if (fitted.waitsForRemovals) setTimeout(() => this.#runner.run(), 0).unref();
    // no data plane keeps the agent's plan (nftables and IPVS keep their own record, dataplane/written.ts):
    // the next plan takes this one's maps instead of copying them
    const t3 = performance.now();
    // nftables and IPVS choose backends without our Maglev tables (IPVS's mh builds its own): no slots
    const slots = this.#dp.kind !== 'nftables' && this.#dp.kind !== 'ipvs';
    if (this.#kernelUnknown) {
      const was = this.#current;
      this.#current = await this.#exclusive(() => this.#dp.readPlan());
      this.#kernelUnknown = false;
      this.#log.info({ frontends: this.#current?.frontends.size ?? 0, planned: was?.frontends.size ?? 0 }, 'after a failed apply: planning on what the data plane holds, read back');
    }
    // a first sync on a loaded, empty data plane: its new Maglev tables are filled on background
    // threads from the moment the plan makes them, beside the plan's last steps and the diff (one
    // core idle on two: docs/perf-log.md, session 22, p22big); the apply below adopts the fill
    const prefill = slots && !this.#current && this.#dpReady && !this.#loading && this.#dp.prefill ? this.#dp.prefill.bind(this.#dp) : undefined;
    let filledAhead = 0;
    const onTables = prefill && ((tables: readonly PlanTable[]) => {
      try {
        if (prefill(tables)) filledAhead = tables.length;
      } catch (e) {
        this.#log.debug({ err: e }, 'Maglev tables not filled ahead of the apply: the apply writes them');
      }
    });
    // a big start: the list's, compile's and fit's garbage collected while the plan runs, so that the
    // diff's GC below finds only the plan's and diff's beside what they keep (util/heap-headroom.ts)
    if (full && this.#headroom?.collect()) this.#log.debug({ heapMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20) }, 'first sync: a full GC started before the plan');
    const next = buildPlan(state, this.#current, { seed: this.#opts.seed, consumePrev: true, slots, deferChain: full, ...(onTables && { onTables }) });
    const t4 = performance.now();
    let ops: PlanOp[], t5 = t4, loadWait = 0;
    // a full sync's build leaves its records for the next (incremental) build (~0.4-1 s of the main
    // thread at 100,000 Services) to the turn after the sync's end (below), not to the apply's waits:
    // there it held the event loop while lb_members' batch ended, and the apply's next writes and
    // the Maglev fill's join waited for it (docs/perf-log.md, session 29, p29big); the next build makes
    // them itself if this has not run by then
    let chainMs: number | undefined, fitCountMs: number | undefined;
    try {
      ops = diffPlans(this.#current, next);
      t5 = performance.now();
      // a big start's second full GC: the plan's and diff's garbage, marked while the apply waits for the kernel
      if (full && this.#headroom?.collect()) this.#log.debug({ heapMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20) }, 'first sync: a full GC started before the apply');
      // the first sync of a fresh node, planned while the data plane loads (start())
      if (this.#loading) {
        const loaded = await this.#loading;
        loadWait = performance.now() - t5;
        if (!loaded) {
          undoPlan(next);
          return;
        }
      }
      if (ops.length) {
        try {
          await this.#exclusive(() => this.#dp.apply(ops, next));
        } catch (e) {
          this.#kernelUnknown = true;
          throw e;
        }
      }
    } catch (e) {
      undoPlan(next); // #current stays what the kernel held before
      throw e;
    }
    // the kernel holds the tables now; their slots (~64 MiB at 10k Services) are not needed to plan on.
    // No log line here: a write to stderr inside the sync blocked it 8-12 ms when the pipe was full
    // (a reader busy elsewhere), and the 'sync steps' line after it says ops and frontends
    if (ops.length) releaseSlots(next, this.#current);
    // the ops are dead from here: dropped, since the log line's closure below shares this scope and
    // runs two turns later, after the heap trimmer's full GC (a timer set in onSynced). A first sync
    // at 100,000 Services has 1.4M of them (~80 MiB), which that GC found alive and, with V8's
    // memory reducer off, nothing collected after (docs/perf-log.md, session 18, p18big)
    const opCount = ops.length;
    // the highest frontend id for refreshStats, followed through the ops (an id removed leaves the
    // bound where it was: counters past the highest id in use read as zero) instead of a walk over
    // every frontend at the first scrape after each change (100,000 at 100k, in a loop V8 also
    // deoptimized there each time)
    const known = this.#current === undefined ? 0 : this.#maxFeId?.plan === this.#current ? this.#maxFeId.id : undefined;
    if (known !== undefined) {
      let max = known;
      // by index: a first sync's 1.4M ops at 100,000 Services, where a for-of step allocated its result
      for (let k = 0; k < ops.length; k++) {
        const o = ops[k]!;
        if (o.op === 'upsertFrontend' && o.frontend.id > max) max = o.frontend.id;
      }
      this.#maxFeId = { plan: next, id: max };
    }
    ops = [];
    const t6 = performance.now();
    const prevState = this.#state;
    this.#current = next;
    this.#state = state;
    this.#syncs++;

    const store = this.#source.store;
    this.#hcWanted = healthCheckWanted(serviceList, this.#hcWanted);
    await this.serviceHealth.sync(healthCheckPorts(store.view(), this.#hcWanted.wanted, this.#opts.compile.nodeName, (k) => store.slicesOf(k)),
      healthCheckHosts(this.#compiler.nodePortAddresses()));

    const now = Date.now();
    this.#pendingSince.splice(0, changesCovered);
    for (const { family, ms } of triggers.values()) this.metrics.networkProgramming.observe({ ip_family: family }, Math.max(0, now - ms) / 1000);
    this.health.updated();
    this.metrics.observeSync((performance.now() - started) / 1000, full, families(state, prevState));
    this.metrics.lastSync.set(now / 1000);
    this.metrics.frontends.set(next.frontends.size);
    // each step's wall time: at info for a full sync (the first one, a retry), else at debug
    const done = performance.now();
    // the process's CPU time over the sync (threads included): what a loaded machine does not stretch
    const cpu = process.cpuUsage(cpu0), thread = process.threadCpuUsage(thread0);
    const steps = {
      // endedAt: when the sync ended (epoch ms): the line itself may be written later (after the GC
      // figures settle, which can be after the full GC that follows a big sync)
      full, endedAt: Date.now(), frontends: next.frontends.size, ops: opCount, totalMs: ms(done - started), cpuMs: ms((cpu.user + cpu.system) / 1000),
      // appliedAt: when the kernel held this sync's writes (epoch ms to the microsecond): a change's
      // time to the kernel on the agent's own clock, which a watcher descheduled at the time cannot stretch
      ...(opCount && { appliedAt: Math.round((performance.timeOrigin + t6) * 1000) / 1000 }),
      // the main thread's share: the rest of cpuMs is V8's compiler and GC threads and libuv's pool
      threadCpuMs: ms((thread.user + thread.system) / 1000), compileMs: ms(t1 - t0), fitMs: ms(t3 - t2),
      planMs: ms(t4 - t3), diffMs: ms(t5 - t4), applyMs: ms(t6 - t5 - loadWait), afterMs: ms(done - t6), otherMs: ms(t0 - started + t2 - t1),
      // planned while the data plane loaded: the wait for the load before the writes
      ...(loadWait > 0 && { loadWaitMs: ms(loadWait) }),
      // Maglev tables whose fill started when the plan made them (Dataplane.prefill), beside planMs and diffMs
      ...(filledAhead > 0 && { tablesFilledAhead: filledAhead }),
      // the first change's wait for this sync (the runner's scheduling, or minSyncPeriod), and the
      // main thread's time on the run queue within it (Linux schedstat: ready, not running; another
      // process had the CPU). A sync slower than its threadCpuMs either waited for the CPU there or
      // for a lock or another thread of this process (cpuMs above threadCpuMs)
      ...(queuedAt !== undefined && { queuedMs: ms(started - queuedAt) }),
      ...(detail && Number.isFinite(waited0) && { runQueueMs: ms(runQueueMs() - waited0) }),
      // page faults of the process within the sync: a write to a page the kernel had write-protected
      // (every page, after a fork) or not yet backed costs one, ~5-20 us each on a loaded machine
      ...(detail && { minorFaults: process.resourceUsage().minorPageFault - faults0 }),
      // the main thread's own: minorFaults counts every thread's, and a sync's 58-321 came from an
      // optimizing compile on a V8 worker beside it, not from the sync (docs/perf-log.md, session 30, p30tail)
      ...(detail && Number.isFinite(ownFaults0) && { threadMinorFaults: threadMinorFaults() - ownFaults0 }),
    };
    let counted: Promise<void> | undefined;
    if (full) {
      // the kernel holds the sync's writes: the plan's records for the next change are made on the
      // next turn, before the line below (its GC figures settle two turns later) and the heap trimmer's GC
      counted = new Promise<void>((resolve) => setImmediate(() => {
        const c0 = performance.now();
        try {
          finishChain(next);
        } catch (e) {
          this.#log.debug({ err: e }, 'the plan\'s records for the next change were not made: the next build makes them');
        }
        chainMs = performance.now() - c0;
        // then the capacity count the first fit put off (CapacityTracker.settle), in slices of
        // SETTLE_SLICE frontends a turn: at 100,000 Services ~0.5 s of the main thread in one piece
        // held /metrics and the health checks after the sync. A change synced before its end finishes it
        if (!this.#capacity.unsettled) return resolve();
        let spent = 0;
        const slice = () => {
          const f0 = performance.now();
          let done = true;
          try {
            done = this.#capacity.settle(SETTLE_SLICE);
          } catch (e) {
            this.#log.debug({ err: e }, 'the capacity count put off by the first fit was not made: the next fit makes it');
          }
          spent += performance.now() - f0;
          if (!done) {
            setImmediate(slice);
            return;
          }
          fitCountMs = spent;
          resolve();
        };
        slice();
      }));
    }
    const log = (full ? this.#log.info : this.#log.debug).bind(this.#log);
    // the GC pauses within the sync (gcMs, and how many; V8 reports them a turn later): whether a slow
    // sync was its own work or garbage collected in its time
    if (this.#gc && (full || this.#log.isLevelEnabled('debug'))) {
      const gc = this.#gc;
      // (and, after a first sync, once the capacity count it put off is made: fitCountMs)
      void Promise.all([gc.settled(), counted]).then(() => {
        const g = gc.within(started, done);
        // chainMs: the plan's records for the next change, made on the turn after the sync's end (not
        // in totalMs), so known only on this line, written turns later
        log({ ...steps, ...(chainMs !== undefined && { chainMs: ms(chainMs) }), ...(fitCountMs !== undefined && { fitCountMs: ms(fitCountMs) }), gcMs: ms(g.ms), gcs: g.count, majorGcs: g.major }, 'sync steps');
      });
    } else log(steps, 'sync steps');
    let warm: (() => void) | undefined;
    if (full && !this.#warmed) {
      this.#warmed = true;
      // the start is over: V8 paces its full GCs itself again, from the heap trimmer's GC after this sync on
      this.#endHeadroom();
      warm = () => {
        void this.#warm(slots);
        // the source's put-off work (the manifests source's first rescan) while the agent still starts
        this.#source.afterFirstSync?.();
      };
    }
    // the warm-up after the heap trimmer's full GC after a big sync (onSynced runs it then): that GC
    // reduces memory and with it flushes the bytecode of functions not running then; warmed before
    // it, the first change found the path cold again
    if (this.onSynced) this.onSynced(opCount, warm);
    else if (warm) setTimeout(warm, 0).unref();
    this.#dp.synced?.();
  }

  /**
   * Compiles the one-change path once, after the first full sync, and has V8 optimize the manifests
   * source's per-file read (standalone) and the JS Maglev fill (with slots) (warm.ts says why).
   */
  async #warm(slots: boolean): Promise<void> {
    const t0 = performance.now(), cpu0 = process.cpuUsage(), thread0 = process.threadCpuUsage();
    let writer: WarmWriter | undefined;
    try {
      // the apply's one-change code too, into scratch tables (a failure to make them costs only that)
      try {
        writer = this.#dp.warmWriter?.();
      } catch (e) {
        this.#log.debug({ err: e }, 'no scratch tables for the warm-up: the apply is not warmed');
      }
      // what the first Service created or deleted would count first (every Service's clusterIPs and nodePorts)
      this.#compiler.prepare();
      const r = warmOneChange(this.#opts.compile, this.#opts.seed, slots, WARM_CHANGES, writer && ((ops) => writer!.apply(ops)));
      const source = this.#opts.compile.standalone ? warmSource(this.#opts.compile.nodeName) : undefined;
      const maglevSlots = slots ? warmMaglev(this.#opts.seed) : 0;
      const { syncs, leftOut } = await this.#warmSyncs();
      const cpu = process.cpuUsage(cpu0), thread = process.threadCpuUsage(thread0);
      // cpuMs: so far; V8's compiler threads may still be at work on what the warm-up made hot
      this.#log.debug({ ...r, source, maglevSlots, syncs, leftOut, ms: ms(performance.now() - t0), cpuMs: ms((cpu.user + cpu.system) / 1000), threadCpuMs: ms((thread.user + thread.system) / 1000) },
        'one-change path warmed');
    } catch (e) {
      // it writes nothing the programs read and holds nothing: a failure costs only the warm-up
      this.#log.debug({ err: e }, 'warming the one-change path failed');
    } finally {
      writer?.close();
    }
    // the warm-up's garbage, collected while the agent is quiet (the heap trimmer's young sweep)
    // rather than by a scavenge in the first change's sync
    this.onSynced?.(0);
  }

  /**
   * The one-change syncs of a second Agent, built as this one is but over a store of its own
   * (WarmCluster: a few Services made as this agent's source makes its objects) and a data plane
   * whose apply goes to the scratch writer: the first real change then runs code that has run, and
   * has been optimized, on this code's every step (the sync, its log line, the capacity fit with
   * the agent's callbacks, the apply), not only on the ones warmOneChange calls. A CPU profile of
   * the first change after a 100,000-Service start had it compiling functions never run before and
   * deoptimizing ones optimized for the warm-up's own objects (docs/perf-log.md, sessions 21-22).
   * Returns the syncs run, and the most Services one of them left out (none, unless the maps
   * cannot hold a few Services).
   */
  async #warmSyncs(): Promise<{ syncs: number; leftOut: number }> {
    const cluster = new WarmCluster(this.#opts.compile.nodeName, !!this.#opts.compile.standalone);
    const dp = this.#dp;
    // scratch tables of its own: its plans' ids are not warmOneChange's
    let writer: WarmWriter | undefined;
    try {
      writer = dp.warmWriter?.();
    } catch (e) {
      this.#log.debug({ err: e }, 'no scratch tables for the warm-up\'s syncs: their applies write nothing');
    }
    // a write that fails ends the warm-up (its runner would retry it with backoff, for ever)
    let failed: unknown;
    // after its first sync, maps 1.75 times what it holds: a change's fit then counts the room its
    // removals keep during the write (CapacityTracker #roomDuringWrite), as the agent's does where
    // its maps are more than half full (the Maglev array at 10,000 Services), not the early return
    let tight: Capacity | undefined;
    const scratch: Dataplane = {
      kind: dp.kind,
      init: async () => {},
      readPlan: async () => undefined,
      apply: async (ops) => {
        try {
          writer?.apply(ops);
        } catch (e) {
          failed ??= e;
        }
      },
      syncDevices: async () => {},
      stats: async () => ({ maps: [], events: {}, frontends: new Map() }),
      capacity: () => tight ?? dp.capacity(),
      close: async () => {},
      cleanup: async () => {},
    };
    // its log lines go nowhere, at this agent's level (a 'sync steps' line at --v 2 is work too)
    const log = pino({ level: this.#log.level }, { write: () => {} });
    const twin = new Agent({ source: { store: cluster.store, start: async () => {}, stop: async () => {} }, dataplane: scratch, log,
      metrics: new Metrics({ processMetrics: false }), serviceHealth: new ServiceHealthServers({ log: silentLogger }) },
    // (no startHeadroom: the warm-up comes after the start, under V8's own pacing)
    { ...withoutHeadroom(this.#opts), minSyncMs: 0, syncPeriodMs: 3_600_000, housekeepingMs: 3_600_000, timers: realTimers });
    // it warms nothing itself: its first sync's warm-up handed to a hook that drops it
    twin.onSynced = () => {};
    let leftOut = 0;
    twin.onServicesLeftOut = (services) => { leftOut = Math.max(leftOut, services.length); };
    const idle = async (): Promise<void> => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([twin.whenIdle(), new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('a warm-up sync did not end within 10 s')), 10_000);
        })]);
      } finally {
        clearTimeout(timer);
      }
      if (failed) throw failed;
    };
    try {
      await twin.start();
      await idle();
      const held = twin.state ? usage(twin.state.frontends) : undefined;
      if (held) tight = Object.fromEntries(Object.entries(held).map(([k, v]) => [k, Math.ceil(1.75 * v)])) as unknown as Capacity;
      for (let k = 0; k < WARM_AGENT_CHANGES; k++) {
        cluster.change(k);
        await idle();
      }
      for (let k = 0; k < WARM_AGENT_SERVICE_CHANGES; k++) {
        cluster.serviceChange(k);
        await idle();
      }
    } finally {
      await twin.stop();
      writer?.close();
    }
    return { syncs: twin.syncs, leftOut };
  }

  #warmed = false;
  /** V8's heap headroom from start() to the first full sync (startHeadroom) */
  #headroom: HeapHeadroom | undefined;

  #endHeadroom(): void {
    const h = this.#headroom;
    this.#headroom = undefined;
    h?.end();
  }
  /** the Services left out last told to the metrics and onServicesLeftOut (the fit's list, by identity) */
  #toldLeftOut: { dropped: readonly string[]; limit: string | undefined; to: Agent['onServicesLeftOut'] } | undefined;

  /**
   * Logs the problems of objects whose problems appeared or changed since the last sync (a rejected
   * object stays rejected sync after sync; saying so once is enough), and notes the objects that
   * are fixed or gone. A warning about an unknown enum value is thereby logged once per object too.
   */
  #logObjectErrors(errors: readonly ObjectError[]): void {
    const now = new Map<string, string>();
    const byObject = new Map<string, ObjectError[]>();
    for (const e of errors) {
      const k = `${e.kind} ${e.key}`;
      let l = byObject.get(k);
      if (!l) byObject.set(k, l = []);
      l.push(e);
      now.set(k, (now.has(k) ? now.get(k)! + '\n' : '') + formatObjectError(e));
    }
    for (const [k, text] of now) {
      if (this.#logged.get(k) === text) continue;
      for (const e of byObject.get(k)!) {
        this.#log.warn({ object: k, field: e.field, severity: e.severity }, e.message);
      }
    }
    for (const k of this.#logged.keys()) if (!now.has(k)) this.#log.info({ object: k }, 'no longer has problems (fixed or deleted)');
    this.#logged = now;
  }

  /**
   * detectLocalMode NodeCIDR: the data plane's pod sources follow this node's spec.podCIDRs, before
   * any frontend that relies on them is written. (kube-proxy waits for the podCIDRs at start and
   * exits when they change, to be restarted; here they are applied as they come.)
   */
  async #syncLocalSources(): Promise<void> {
    if (!this.#opts.compile.detectLocalNodeCidr || !this.#dp.setLocalSources) return;
    const cidrs = this.#compiler.localSourceCidrs();
    const key = cidrs.join(',');
    if (key === this.#localSources) return;
    // planned while a fresh data plane loads (start()): written once it is loaded
    if (this.#loading && !(await this.#loading)) return;
    await this.#exclusive(() => this.#dp.setLocalSources!(cidrs));
    this.#log.info({ podCIDRs: cidrs, before: this.#localSources?.split(',').filter(Boolean) ?? null },
      cidrs.length ? 'NodeCIDR local detector: this node\'s pod CIDRs are the cluster\'s own sources' : 'NodeCIDR local detector: the Node lists no pod CIDR yet: no flow is told apart (upstream\'s no-op detector)');
    this.#localSources = key;
  }

  async #housekeep(): Promise<void> {
    // a housekeeping pass slower than the interval: the next tick is skipped, not queued behind it
    if (this.#housekeepingBusy) return;
    this.#housekeepingBusy = true;
    try {
      // BPF: a device scan writes lb_devices and lb_node_addrs, which no apply writes, and link
      // events run it beside syncs anyway: a sync does not wait for it (nor for its `ip` run).
      // Counters are not read here: each /metrics scrape reads them (a read here walked every map
      // every tick, holding the event loop ~0.5 s at 10,000 Services while a change waited).
      if (this.#dp.kind === 'bpf') await this.#dp.syncDevices();
      else await this.#exclusive(() => this.#dp.syncDevices());
    } catch (e) {
      this.#log.warn({ err: e }, 'housekeeping failed');
    } finally {
      this.#housekeepingBusy = false;
    }
  }

  /**
   * The data plane's writers one at a time: a sync's apply and housekeeping (IPVS drains and full
   * resyncs, device scans) both write the kernel from the data plane's copy of it. Interleaved, an
   * IPVS resync read the kernel mid-apply and wrote the previous plan back over the new one.
   */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#dpTail.then(fn);
    this.#dpTail = run.then(() => undefined, () => undefined);
    return run;
  }

  #dpTail: Promise<void> = Promise.resolve();
  #gc: GcClock | undefined;
  #housekeepingBusy = false;

  /** Reads the kernel's counters and map fill into the metrics (each scrape calls it). */
  async refreshStats(): Promise<void> {
    // a scrape while the data plane still loads (the event loop is free then): no counters yet
    if (!this.#dpReady) return;
    const plan = this.#current;
    // the highest id once per plan, not per scrape; the frontends by id only when some counter is set
    let max = plan && this.#maxFeId?.plan === plan ? this.#maxFeId.id : undefined;
    if (plan && max === undefined) {
      max = 0;
      for (const f of plan.frontends.values()) if (f.id > max) max = f.id;
      this.#maxFeId = { plan, id: max };
    }
    const s = await this.#dp.stats(plan ? { maxFrontendId: max } : {});
    this.metrics.setMaps(s.maps);
    this.metrics.setDatapathEvents(s.events);
    if (s.evictions) this.metrics.setConntrackEvictions(s.evictions);
    const byId = new Map<number, PlanFrontend>();
    if (s.frontends.size) for (const f of this.#current?.frontends.values() ?? []) if (s.frontends.has(f.id)) byId.set(f.id, f);
    this.metrics.setFrontendStats([...s.frontends].flatMap(([id, v]) => {
      const f = byId.get(id);
      return f ? [{ service: f.service, frontend: `${f.address}:${f.port}/${f.protocol}/${f.scope}`, ...v }] : [];
    }));
  }

  #maxFeId: { plan: Plan; id: number } | undefined;
  /** the healthCheckNodePort Services of the last Service list synced */
  #hcWanted: HealthCheckWanted | undefined;
}

/** The Services that want a healthCheckNodePort server, by namespace/name, of the Service list `version`. */
export interface HealthCheckWanted { version: number; wanted: ReadonlyMap<string, CompiledService> }

function wantsHealthCheck(c: CompiledService): boolean {
  return c.service.type === 'LoadBalancer' && c.service.externalTrafficPolicy === 'Local' && c.healthCheckNodePort > 0;
}

const hcKey = (c: CompiledService): string => `${c.service.namespace}/${c.service.name}`;

/**
 * The Services that want a healthCheckNodePort server: once per list (compile hands the same list on
 * until a Service or an allocation changes), and for a list made from the previous one by a few
 * Services' edits, the previous set with those edits (a walk of the list at every Service created or
 * deleted was ~0.5 ms at 100,000 Services, and read the list, which compile builds only when read).
 */
export function healthCheckWanted(list: ServiceList, prev: HealthCheckWanted | undefined): HealthCheckWanted {
  if (prev?.version === list.version) return prev;
  if (prev && list.from === prev.version) {
    if (!list.removed.some(wantsHealthCheck) && !list.added.some(wantsHealthCheck)) return { version: list.version, wanted: prev.wanted };
    const wanted = new Map(prev.wanted);
    for (const c of list.removed) if (wanted.get(hcKey(c)) === c) wanted.delete(hcKey(c));
    for (const c of list.added) if (wantsHealthCheck(c)) wanted.set(hcKey(c), c);
    return { version: list.version, wanted };
  }
  return { version: list.version, wanted: healthCheckServices(list.list) };
}

function healthCheckServices(services: readonly CompiledService[]): Map<string, CompiledService> {
  const wanted = new Map<string, CompiledService>();
  for (const c of services) if (wantsHealthCheck(c)) wanted.set(hcKey(c), c);
  return wanted;
}

/**
 * A reader of one /proc/thread-self file of the thread that first reads it (the main thread, which
 * every sync runs on: /proc/thread-self names the opener's task for the file's lifetime): one open
 * file, read again from its start, where a readFileSync (open, fstat, read, close) twice a sync was
 * ~0.07 ms of a one-change sync's ~2 ms at --v 2. Returns NaN where the file is not there.
 */
function threadProcFile(name: string, size: number, parse: (text: string) => number): () => number {
  let fd: number | undefined;
  const buf = Buffer.alloc(size);
  return () => {
    try {
      fd ??= openSync(`/proc/thread-self/${name}`, 'r');
      return parse(buf.toString('latin1', 0, readSync(fd, buf, 0, size, 0)));
    } catch {
      return NaN;
    }
  };
}

/**
 * The calling thread's time so far waiting on a run queue (ready to run, another task on the CPU), in
 * ms: /proc/thread-self/schedstat's second field (ns; a wait is counted when it ends, so one across a
 * sync's start or end may land in the next). NaN where there is none (not Linux, no schedstats).
 */
const runQueueMs = threadProcFile('schedstat', 128, (text) => Number(text.split(' ')[1]) / 1e6);

/** minflt (the 10th field) of a /proc/.../stat line; the command name (2nd, in parentheses) may hold spaces and parentheses */
export function statMinorFaults(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is the state, the 3rd field
  return Number(fields[10 - 3]);
}

/** the calling thread's minor page faults so far (/proc/thread-self/stat), NaN where there is none */
const threadMinorFaults = threadProcFile('stat', 1024, statMinorFaults);

/** milliseconds, rounded to 0.01 for a log line */
function ms(x: number): number {
  return Math.round(x * 100) / 100;
}

/** set by the EndpointSlice controller on each slice it writes (k8s.io/api core/v1 EndpointsLastChangeTriggerTime) */
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

/**
 * The families this node programs: IPv4 always (as kube-proxy's primary proxier), IPv6 when it has
 * v6 frontends. The plan holds the state's frontends, so they are counted there: from the previous
 * state's count and compile's delta (plan/delta.ts), not by a walk over every frontend.
 */
function families(state: NodeState, prev: NodeState | undefined): IpFamily[] {
  return countV6(state, prev) ? ['IPv4', 'IPv6'] : ['IPv4'];
}

/**
 * healthCheckNodePort servers wanted on this node: LoadBalancer Services with externalTrafficPolicy
 * Local (their port as compiled: allocated in standalone mode), each with its count of ready
 * endpoints on this node, as kube-proxy counts them (proxy/endpoints.go: local and ready).
 */
export function healthCheckPorts(snapshot: Snapshot, services: readonly CompiledService[] | ReadonlyMap<string, CompiledService>, nodeName: string,
  slicesOf?: (serviceKey: string) => Iterable<string>): Map<number, ServiceHealthInfo> {
  const out = new Map<number, ServiceHealthInfo>();
  const wanted = services instanceof Map ? services as ReadonlyMap<string, CompiledService> : healthCheckServices(services as readonly CompiledService[]);
  const local = new Map<string, Set<string>>();
  if (!wanted.size) return out;
  // with an index, only the wanted Services' slices; else every slice
  const slices = slicesOf
    ? [...wanted.keys()].flatMap((k) => [...slicesOf(k)].flatMap((sk) => snapshot.endpointSlices.get(sk) ?? []))
    : snapshot.endpointSlices.values();
  for (const slice of slices) {
    const svcName = slice.metadata?.labels?.['kubernetes.io/service-name'];
    const key = `${slice.metadata?.namespace ?? 'default'}/${svcName}`;
    if (!svcName || !wanted.has(key)) continue;
    // raw API objects: compile reports malformed ones; here they must only never throw
    for (const ep of Array.isArray(slice.endpoints) ? slice.endpoints : []) {
      if (!ep || typeof ep !== 'object' || ep.nodeName !== nodeName || ep.conditions?.ready === false) continue;
      // a dual-stack pod is one endpoint: count it by its target, else by address
      const id = ep.targetRef?.name ?? (Array.isArray(ep.addresses) ? ep.addresses[0] : undefined);
      if (typeof id !== 'string' || !id) continue;
      const set = local.get(key) ?? new Set<string>();
      set.add(id);
      local.set(key, set);
    }
  }
  // two Services on one port (not from the API server, which allocates it once): the later by
  // namespace/name, as a walk of the list in Service order gave, whatever order the set is in
  const by = new Map<number, string>();
  for (const [key, c] of wanted) {
    const had = by.get(c.healthCheckNodePort);
    if (had !== undefined && had > key) continue;
    by.set(c.healthCheckNodePort, key);
    out.set(c.healthCheckNodePort, { namespace: c.service.namespace, name: c.service.name, localEndpoints: local.get(key)?.size ?? 0 });
  }
  return out;
}

/** an agent's options without its start's heap headroom (the warm-up's twin agent) */
function withoutHeadroom(opts: AgentOptions): AgentOptions {
  const { startHeadroom: _, ...rest } = opts;
  return rest;
}
