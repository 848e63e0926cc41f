// Builds and runs the agent from settings: the source, the data plane the mode selects, health and
// metrics servers, and signal handling. SIGTERM/SIGINT stop the agent and leave the data plane in
// place (a restart picks it up); `cleanup` is what removes it.
import type { Server } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { localTrafficDetector, startupWarning, type AgentSettings } from './config.js';
import { Agent } from './agent.js';
import { Metrics } from './metrics.js';
import { close, createServer, listen, parseBindAddress } from './health.js';
import { ManifestsSource } from '../source/manifests.js';
import type { Source } from '../source/types.js';
import type { Dataplane } from '../dataplane/types.js';
import type { BpfDataplane } from '../dataplane/bpf/dataplane.js';
import { KbpError } from '../util/errors.js';
import { moduleLogger, type Logger } from '../util/log.js';
import { canonicalIp } from '../util/ip.js';
import { prepareHost } from '../dataplane/host.js';
import { preflight } from './preflight.js';
import { existsSync } from 'node:fs';
import { fullGc, HeapTrimmer, minorGc, pressureGc } from '../util/heap-trim.js';
import { heapHeadroom } from '../util/heap-headroom.js';
import { buildVersion } from '../cli/version.js';

export async function createSource(s: AgentSettings, log: Logger): Promise<Source> {
  if (s.manifests) {
    return new ManifestsSource({ dir: s.manifests, logger: log.child({ source: 'manifests' }) });
  }
  // client-node and its dependencies are ~2 MB of the bundle: a chunk of its own, loaded only here
  const { createKubeSource } = await import('../source/kube.js');
  // (KubeSource adds source: kubernetes to its lines itself: a child here wrote the key twice)
  return createKubeSource({ kubeconfig: s.kubeconfig, logger: log, nodeName: s.nodeName });
}

/** Node addresses for device selection: --node-ip and the Node object's InternalIP/ExternalIP (once there is a source). */
export function nodeAddresses(source: Source | undefined, s: AgentSettings): string[] {
  const out = new Set<string>();
  for (const a of s.nodeIPs) out.add(canonicalIp(a));
  const node = source?.store.get('Node', s.nodeName);
  for (const a of node?.status?.addresses ?? []) {
    if (a.type !== 'InternalIP' && a.type !== 'ExternalIP') continue;
    try { out.add(canonicalIp(a.address)); } catch { /* a malformed address is compile's to report */ }
  }
  return [...out];
}

/** The data plane chosen for --mode, and why the earlier candidates of auto were skipped. */
export interface ModeChoice {
  mode: 'bpf' | 'ipvs' | 'nftables';
  skipped: Array<{ mode: string; reason: string }>;
}

async function probeBpf(): Promise<string | undefined> {
  if (process.env.KBP_DISABLE_BPF) return `KBP_DISABLE_BPF is set (${process.env.KBP_DISABLE_BPF})`;
  const { nativeAvailable } = await import('../dataplane/bpf/native/addon.js');
  const native = nativeAvailable();
  if (!native.ok) return `the BPF data plane cannot load: ${native.reason}`;
  return undefined;
}

async function probeIpvsMode(): Promise<string | undefined> {
  const { probeIpvs } = await import('../dataplane/ipvs/dataplane.js');
  const p = await probeIpvs();
  return p.ok ? undefined : p.reason;
}

/**
 * Picks the data plane for --mode. An explicit mode runs exactly that mode or fails with exit 2 and
 * the reason (kube-proxy removed silent fallback: it hid broken nodes). auto probes BPF, then IPVS,
 * then nftables, and logs why each earlier one was skipped. A probe proves the feature works: BPF by
 * loading the object (in init, which fails the start), IPVS by creating, listing and deleting a
 * scratch virtual server (netlink alone can "succeed" where IPVS is absent, as kube-proxy found),
 * nftables by committing and deleting a scratch table. KBP_DISABLE_BPF makes BPF unavailable (the
 * VM tier's way to show auto picking IPVS).
 */
export async function chooseMode(s: AgentSettings, log: Logger): Promise<ModeChoice> {
  const skipped: ModeChoice['skipped'] = [];
  if (s.mode === 'bpf' || s.mode === 'auto') {
    const why = await probeBpf();
    if (!why) return { mode: 'bpf', skipped };
    if (s.mode === 'bpf') throw new KbpError('KBP_ERR_CONFIG', `--mode bpf: ${why}`);
    skipped.push({ mode: 'bpf', reason: why });
  }
  if (s.mode === 'ipvs' || s.mode === 'auto') {
    const why = await probeIpvsMode();
    if (!why) return { mode: 'ipvs', skipped };
    if (s.mode === 'ipvs') throw new KbpError('KBP_ERR_CONFIG', `--mode ipvs: ${why}`);
    skipped.push({ mode: 'ipvs', reason: why });
  }
  const { probeNftables } = await import('../dataplane/nftables/dataplane.js');
  const probe = await probeNftables();
  if (probe.ok) return { mode: 'nftables', skipped };
  if (s.mode === 'nftables') throw new KbpError('KBP_ERR_CONFIG', `--mode nftables: ${probe.reason}`);
  throw new KbpError('KBP_ERR_CONFIG', `--mode auto: no data plane can run here: ${[...skipped.map((x) => `${x.mode}: ${x.reason}`), `nftables: ${probe.reason}`].join('; ')}`);
}

/**
 * Builds the data plane for --mode. Switching mode on a node first removes the other mode's state
 * (as kube-proxy's cleanup of the other proxiers does): BPF's pins and attachments under --bpffs, or
 * the nftables table and its state file. `source` is read once devices are synced (the Node's addresses).
 */
export async function createDataplane(s: AgentSettings, source: () => Source | undefined, log: Logger, onChosen?: (c: ModeChoice) => void): Promise<Dataplane> {
  const choice = await chooseMode(s, log);
  for (const x of choice.skipped) log.warn({ mode: x.mode, reason: x.reason }, 'data plane skipped');
  // cpuMs: the process's CPU so far (node, the re-exec, the modules, the settings: the start before any
  // work; execve keeps the counts)
  const cpu = process.cpuUsage();
  log.info({ mode: choice.mode, ...(s.mode === 'auto' && { skipped: choice.skipped.map((x) => x.mode) }), cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, 'data plane chosen');
  onChosen?.(choice);
  if (choice.mode === 'bpf') {
    const dp = await createBpfDataplane(s, source, log);
    // the verifier first (over a second of CPU on the thread pool, the start's longest step at
    // 10,000 Services: issue 10), then the other modes' clean-up beside it: nothing is attached or
    // written before init(), which the agent calls after this
    dp.startLoad();
    try {
      await cleanupIpvsMode(s, log);
      await removeNftablesMode(s, log);
    } catch (e) {
      await dp.close();
      throw e;
    }
    return dp;
  }
  // an IPVS agent's state is its own to read back (a restart takes over its virtual servers)
  if (choice.mode !== 'ipvs') await cleanupIpvsMode(s, log);
  if (choice.mode === 'ipvs') {
    if (existsSync(s.bpffs)) {
      const { cleanupDataplane } = await import('../dataplane/bpf/dataplane.js');
      const r = cleanupDataplane(s.bpffs);
      log.info({ pinRoot: s.bpffs, ...r }, 'switched from bpf: removed its state');
    }
    await removeNftablesMode(s, log);
    const { IpvsDataplane } = await import('../dataplane/ipvs/dataplane.js');
    return new IpvsDataplane({
      pinRoot: s.bpffs,
      scheduler: s.ipvsScheduler,
      drainMs: s.ipvsDrainMs,
      devices: s.devices,
      nodeAddresses: () => nodeAddresses(source(), s),
      log: moduleLogger(log, 'ipvs'),
    });
  }
  if (choice.mode === 'nftables') {
    if (existsSync(s.bpffs)) {
      // a BPF agent ran here before: its programs would translate before nftables sees a packet
      const { cleanupDataplane } = await import('../dataplane/bpf/dataplane.js');
      const r = cleanupDataplane(s.bpffs);
      log.info({ pinRoot: s.bpffs, ...r }, 'switched from bpf: removed its state');
    }
    const { NftablesDataplane } = await import('../dataplane/nftables/dataplane.js');
    return new NftablesDataplane({
      pinRoot: s.bpffs,
      devices: s.devices,
      nodeAddresses: () => nodeAddresses(source(), s),
      localTraffic: localTrafficDetector(s),
      log: moduleLogger(log, 'nftables'),
    });
  }
  throw new KbpError('KBP_ERR_INTERNAL', `no data plane for mode ${String(choice.mode)}`);
}

/** an IPVS agent ran here before: its virtual servers would answer before anything else */
async function cleanupIpvsMode(s: AgentSettings, log: Logger): Promise<void> {
  const { cleanupIpvs } = await import('../dataplane/ipvs/dataplane.js');
  try {
    const r = await cleanupIpvs(s.bpffs, log);
    if (r) log.info({ ...r }, 'switched from ipvs: removed its state');
  } catch (e) {
    log.warn({ err: e }, 'removing the IPVS data plane\'s state failed');
  }
}

async function createBpfDataplane(s: AgentSettings, source: () => Source | undefined, log: Logger): Promise<BpfDataplane> {
  const { BpfDataplane } = await import('../dataplane/bpf/dataplane.js');
  // bpffs for the pins, cgroup v2 for the socket hooks: the same code prepares the lab and the tests
  const host = prepareHost({ pinRoot: s.bpffs });
  for (const did of host.did) log.info({ host: did }, 'prepared the host');
  // host flows are then translated at tc egress, after POSTROUTING's masquerade (README, limits)
  if (!s.socketLb && (s.masqueradeAll || localTrafficDetector(s).families.length)) {
    log.warn({ masqueradeAll: s.masqueradeAll }, 'socket LB off: host processes\' Service flows are translated at tc egress, past the masquerade, and keep their source address (counted: host_no_snat)');
  }
  return new BpfDataplane({
    pinRoot: s.bpffs,
    ...(s.bpfObject !== undefined && { objectPath: s.bpfObject }),
    ...(s.bpfMapMax !== undefined && { mapSizes: s.bpfMapMax }),
    conntrack: { maxPerCore: s.conntrackMaxPerCore, min: s.conntrackMin },
    seed: s.seed,
    socketLb: s.socketLb,
    localExternalIpAllow: s.localExternalIpAllow,
    cgroup: s.cgroup ?? host.cgroup2,
    devices: s.devices,
    nodeAddresses: () => nodeAddresses(source(), s),
    localTraffic: localTrafficDetector(s),
    ctSweepMs: s.ctSweepMs,
    log: moduleLogger(log, 'bpf'),
  });
}

async function removeNftablesMode(s: AgentSettings, log: Logger): Promise<void> {
  const { createTransport } = await import('../dataplane/nftables/native.js');
  const { removeTable } = await import('../dataplane/nftables/dataplane.js');
  const { removeState, nftStatePath } = await import('../dataplane/nftables/state.js');
  const { NFT_TABLE } = await import('../dataplane/nftables/helpers.js');
  try {
    if (await removeTable(createTransport(), NFT_TABLE)) log.info({ table: NFT_TABLE }, 'switched from nftables: removed its table');
    removeState(nftStatePath(s.bpffs, NFT_TABLE));
  } catch (e) {
    log.warn({ err: e }, 'removing the nftables data plane\'s table failed');
  }
}

export interface Running {
  agent: Agent;
  healthz?: Server;
  metricsServer?: Server;
  stop(): Promise<void>;
}

interface Retries { timers: Set<NodeJS.Timeout>; stopped: boolean }

function stopRetries(r: Retries): void {
  r.stopped = true;
  for (const t of r.timers) clearTimeout(t);
  r.timers.clear();
}

/** how often a health or metrics server whose port is in use tries again (kube-proxy's serveHealthz: 5 s) */
const BIND_RETRY_MS = 5000;

export async function startAgent(s: AgentSettings, log: Logger, deps: { dataplane?: Dataplane; source?: Source; bindRetryMs?: number } = {}): Promise<Running> {
  // every path and name is checked before anything touches the kernel
  s = preflight(s, { source: !deps.source, dataplane: !deps.dataplane });
  const warning = startupWarning(s);
  if (warning) log.warn(warning);
  if (s.nodeIPs.length === 0 && !deps.dataplane) {
    // no --node-ip: NodePorts answer on the node's primary addresses (and its Node object's)
    const { primaryAddresses } = await import('../dataplane/bpf/dataplane.js');
    try {
      s = { ...s, nodeIPs: primaryAddresses() };
      log.info({ nodeIPs: s.nodeIPs }, 'no --node-ip: using the addresses of the default-route devices');
    } catch (e) {
      log.warn({ err: e }, 'no --node-ip and the default-route devices could not be read');
    }
  }
  // pins of an earlier agent mean a restart: its state keeps serving whatever happens to this start
  let earlier = !!deps.dataplane || existsSync(s.bpffs);
  // the data plane before the source: BPF's verifier then runs beside client-node's import (the
  // kube source's chunk) and the rest up to the source's read (issue 10: the first sync)
  let source = deps.source;
  const dataplane = deps.dataplane ?? await createDataplane(s, () => source, log);
  let agent: Agent | undefined;
  let trimmer: HeapTrimmer | undefined;
  const servers: Server[] = [];
  let healthz: Server | undefined, metricsServer: Server | undefined;
  // the listens retried while their port is in use (startServers)
  const retries: Retries = { timers: new Set(), stopped: false };
  if (dataplane.kind === 'nftables' && !deps.dataplane) {
    const { readNftState } = await import('../dataplane/nftables/dataplane.js');
    const { createTransport } = await import('../dataplane/nftables/native.js');
    earlier = !!(await readNftState(createTransport(), { pinRoot: s.bpffs }).catch(() => undefined));
  }
  if (dataplane.kind === 'ipvs' && !deps.dataplane) {
    const { ipvsStatePath } = await import('../dataplane/ipvs/state.js');
    earlier = existsSync(ipvsStatePath(s.bpffs));
  }
  // from here a failure removes what a first start installed: BPF's load may have pinned maps already
  try {
    source ??= await createSource(s, log);
    const metrics = new Metrics();
    agent = buildAgent(s, log, source, dataplane, metrics, await memorySignals());
    // a Service left out for capacity is a Kubernetes Event too (issue 13), with an API server only
    if (!s.manifests) {
      const { recordCapacityEvents } = await import('./events.js');
      const { loadKubeConfig } = await import('../source/kube-http.js');
      try {
        // the source's own config (KubeSource.kubeConfig): the kubeconfig is parsed once per start
        const kc = (source as { kubeConfig?: KubeConfig }).kubeConfig ?? loadKubeConfig(s.kubeconfig);
        recordCapacityEvents(agent, { kc, nodeName: s.nodeName, log: moduleLogger(log, 'events'), store: source.store });
      } catch (e) {
        log.warn({ err: e }, 'no Kubernetes Events will be posted: the kubeconfig does not load');
      }
    }
    agent.health.dataplaneMode = dataplane.kind;
    // before the start: the first sync may end before start() returns
    const built = agent;
    trimmer = await startHeapTrimmer(log, () => built.syncSoon || built.countPending);
    // health answers while the source is still listing (kube-proxy serves /healthz from the start)
    ({ healthz, metricsServer } = await startServers(s, log, agent, metrics, trimmer, servers, retries, deps.bindRetryMs ?? BIND_RETRY_MS));
    const t = trimmer;
    if (t) agent.onSynced = (ops, warm) => { if (!t.afterSync(ops, warm)) t.afterWork(); };
    await agent.start();
  } catch (e) {
    trimmer?.stop();
    stopRetries(retries);
    for (const srv of servers) await close(srv);
    if (agent) await agent.stop().catch((e2: unknown) => log.warn({ err: e2 }, 'stopping the agent after a failed start failed'));
    else await dataplane.close().catch((e2: unknown) => log.warn({ err: e2 }, 'closing the data plane after a failed start failed'));
    if (!earlier) {
      // a first start that failed half-way removes what it attached and pinned: nothing of ours is
      // left on the host's devices by a start that never served
      await dataplane.cleanup().then(
        () => log.info({ pinRoot: s.bpffs }, 'start failed: removed what this start installed'),
        (e2: unknown) => log.error({ err: e2 }, 'start failed and removing what it installed failed too; run `kube-bpf-proxy cleanup`'));
    }
    throw e;
  }
  const running = agent;
  log.info({ node: s.nodeName, mode: dataplane.kind, socketLb: s.socketLb, version: buildVersion() }, 'agent running');
  let stopped: Promise<void> | undefined;
  return {
    agent: running, healthz, metricsServer,
    stop: () => (stopped ??= (async () => {
      trimmer?.stop();
      stopRetries(retries);
      await running.stop();
      for (const srv of servers) await close(srv);
    })()),
  };
}

function buildAgent(s: AgentSettings, log: Logger, source: Source, dataplane: Dataplane, metrics: Metrics, memory?: { pressure: (level: 0 | 1) => void; trim: () => void }): Agent {
  metrics.setDataplaneMode(dataplane.kind);
  const detector = localTrafficDetector(s);
  if ((dataplane.kind === 'ipvs' && (s.masqueradeAll || detector.families.length || detector.fromNode)) ||
    (dataplane.kind === 'nftables' && detector.fromNode)) {
    log.warn({ mode: dataplane.kind }, dataplane.kind === 'nftables'
      ? 'detectLocalMode NodeCIDR is applied by the bpf data plane only: the nftables mode treats no source as local'
      : 'masqueradeAll and detectLocalMode are applied by the bpf and nftables data planes only: not enforced in this mode');
  }
  return new Agent({ source, dataplane, log, metrics }, {
    compile: {
      nodeName: s.nodeName,
      nodeIPs: s.nodeIPs,
      nodePortAddresses: s.nodePortAddresses.length ? s.nodePortAddresses : undefined,
      nodePortAddressesDefault: s.nodePortAddressesDefault,
      bindAddress: s.bindAddress,
      preferSameTrafficDistribution: s.preferSameTrafficDistribution,
      externalIPAllowCidrs: s.externalIPCidrs,
      masqueradeAll: s.masqueradeAll,
      detectLocalFamilies: detector.families,
      ...(detector.fromNode && { detectLocalNodeCidr: true }),
      standalone: !!s.manifests,
    },
    seed: s.seed,
    // fewer full GCs while the first sync's state is built (util/heap-headroom.ts)
    // and two full GCs, marked concurrently, in a big first sync (a lower peak RSS at 100,000)
    startHeadroom: () => heapHeadroom(undefined, undefined, undefined, { ...(memory && { pressure: memory.pressure, trim: memory.trim }), maxCollects: 2 }),
    minSyncMs: s.minSyncMs,
    syncPeriodMs: s.syncPeriodMs,
    housekeepingMs: s.housekeepingMs,
  });
}

/** /healthz and /metrics, each on its bind address (none when it is empty); each server goes into `servers` once listening. */
async function startServers(s: AgentSettings, log: Logger, agent: Agent, metrics: Metrics, trimmer: HeapTrimmer | undefined, servers: Server[],
  retries: Retries, retryMs: number): Promise<{ healthz?: Server; metricsServer?: Server }> {
  // a port in use (kube-proxy still running on the node, or stopping) is tried again every retryMs, as
  // kube-proxy's serveHealthz and serveMetrics do unless bindAddressHardFail; any other failure, or
  // any with bindAddressHardFail, fails the start (exit 2)
  const serve = async (server: Server, at: { host: string; port: number }, flag: string, addr: string): Promise<void> => {
    const fatal = (e: unknown) => new KbpError('KBP_ERR_CONFIG', `${flag} ${addr}: ${(e as Error).message}`, { cause: e });
    try {
      await listen(server, at.host, at.port);
      servers.push(server);
    } catch (e) {
      if (s.bindAddressHardFail || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw fatal(e);
      log.error({ err: e, address: addr, retryInMs: retryMs }, `${flag}: the port is in use; trying again until it is free (bindAddressHardFail makes this fatal)`);
      const again = (): void => {
        const timer = setTimeout(() => {
          retries.timers.delete(timer);
          listen(server, at.host, at.port).then(() => {
            // (the agent stopped while this listen was under way)
            if (retries.stopped) return void close(server);
            servers.push(server);
            log.info({ address: addr }, `${flag}: listening`);
          }, () => { if (!retries.stopped) again(); });
        }, retryMs);
        retries.timers.add(timer);
      };
      again();
    }
  };
  const hz = parseBindAddress(s.healthzBindAddress, '--healthz-bind-address');
  let healthz: Server | undefined;
  if (hz) {
    healthz = createServer((req, res) => agent.health.handle(req, res));
    await serve(healthz, hz, '--healthz-bind-address', s.healthzBindAddress);
  }
  const mz = parseBindAddress(s.metricsBindAddress, '--metrics-bind-address');
  let metricsServer: Server | undefined;
  if (mz) {
    metricsServer = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        // kernel counters are read at scrape time, so a scrape is never staler than the kernel
        void agent.refreshStats().catch((e) => log.warn({ err: e }, 'reading data-plane counters failed'))
          .then(() => metrics.registry.metrics()).then((text) => {
          res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text);
          // the scrape's garbage goes now, not inside the next change's sync
          trimmer?.afterWork();
        }, (e) => res.writeHead(500).end(String(e)));
      } else if (path === '/healthz') {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }).end('ok');
      } else if (path === '/proxyMode') {
        // kube-proxy's serveMetrics answers its mode here (iptables, ipvs, nftables): ours is the data plane in use
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }).end(agent.health.dataplaneMode ?? '');
      } else {
        res.writeHead(404).end();
      }
    });
    await serve(metricsServer, mz, '--metrics-bind-address', s.metricsBindAddress);
  }
  return { healthz, metricsServer };
}

/** V8's memory pressure signal and glibc's malloc_trim through the native addon, when it is built (any mode) */
async function memorySignals(): Promise<{ pressure: (level: 0 | 1) => void; trim: () => void } | undefined> {
  const { native, nativeAvailable } = await import('../dataplane/bpf/native/addon.js');
  if (!nativeAvailable().ok || typeof native().memoryPressure !== 'function' || typeof native().mallocTrim !== 'function') return undefined;
  return { pressure: (level) => native().memoryPressure(level), trim: () => { native().mallocTrim(); } };
}

/** how long the full GC after a big sync waits first (HeapTrimmer settleMs) */
const GC_SETTLE_MS = 1000;

/** malloc_trim after large frees, and a full GC then a trim after a big sync (util/heap-trim.ts), when the native addon is built (any mode) */
async function startHeapTrimmer(log: Logger, busy: () => boolean): Promise<HeapTrimmer | undefined> {
  const { native, nativeAvailable } = await import('../dataplane/bpf/native/addon.js');
  if (!nativeAvailable().ok || typeof native().mallocTrim !== 'function') return undefined;
  const pressure = typeof native().memoryPressure === 'function';
  const t = new HeapTrimmer({
    trim: () => native().mallocTrim(),
    onTrim: ({ peak, now, released }) => log.debug({ externalPeakMiB: Math.round(peak / 2 ** 20), externalMiB: Math.round(now / 2 ** 20), released }, 'returned freed heap memory to the kernel'),
    // one full GC where the addon has V8's memory pressure call, not last-resort's two or more
    gc: pressure ? pressureGc((level) => native().memoryPressure(level)) : fullGc(),
    // a change's sync due now runs before the GC's pause, not after it
    busy,
    // and what waited for a big sync (after the first: the kubelet's probes, a /metrics scrape, the
    // first watch events) is answered before the pause (0.2-0.9 s at 10,000 Services, seconds at
    // 100,000) and the warm-up after it: both held the event loop for 1-1.5 s right at the sync's end
    settleMs: GC_SETTLE_MS,
    minorGc: minorGc(),
    onSweep: ({ before, after, pauseMs }) => log.trace({ beforeKiB: before >> 10, afterKiB: after >> 10, pauseMs: Math.round(pauseMs * 100) / 100 }, 'collected the young generation while idle'),
    onCompact: ({ before, after, pauseMs, deferredMs }) => log.info({ beforeMiB: Math.round(before / 2 ** 20), afterMiB: Math.round(after / 2 ** 20), pauseMs: Math.round(pauseMs * 10) / 10,
      gc: pressure ? 'memory pressure' : 'last resort',
      ...(deferredMs >= 1 && { deferredMs: Math.round(deferredMs) }) },
      'collected the garbage of a big sync (full GC)'),
  });
  t.start();
  return t;
}
