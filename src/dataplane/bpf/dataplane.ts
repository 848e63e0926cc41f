// The BPF data plane behind the Dataplane interface: loads the object with pinned maps (reusing what
// an earlier agent left), attaches tc on every device of this network namespace and XDP on external
// ones, the socket hooks on a cgroup, and the nftables masquerade rule that SNATs marked flows.
import { execFile, execFileSync } from 'node:child_process';
import type { Plan, PlanOp, PlanTable } from '../../plan/types.js';
import type { Dataplane, DataplaneStats, WarmWriter } from '../types.js';
import type { Capacity } from '../../plan/capacity.js';
import type { Logger } from '../../util/log.js';
import { silentLogger } from '../../util/log.js';
import { KbpError } from '../../util/errors.js';
import { canonicalIp } from '../../util/ip.js';
import { systemBinary } from '../../util/exec.js';
import * as L from './layout.js';
import { defaultNodePortRange, type NodePortRange } from '../../model/types.js';
import { EvictionCounter, evictionCounters, FilterBuild, RevFilterZeroing, sweepConntrack, type SweepResult } from './ct-sweep.js';
import { attachCgroup, attachTc, attachXdp, cleanup as cleanupPins, defaultObjectPath, detach, startLoad, type LoadStarted, type Loaded } from './loader.js';
import { mapMemoryShortfall, mapMemoryWarning, mapsMemory, memoryAvailable, type MapMemoryWarning } from './map-memory.js';
import { numPossibleCpus } from './native/map.js';
import { FrontendProtocols, inInitialPidNamespace, SockTerminator, sockTermObjectPath } from './sock-term.js';
import { formatMapSizes, sizesForMode, type ConntrackSizing, type MapSizes } from './map-sizes.js';
import { LinkWatcher } from '../link-watch.js';
import { LinkLister, listLinks, listLinksAsync, type Link } from '../links.js';
import { BpfMaps, PROGRAM_WRITTEN_MAPS } from './maps.js';
import type { AgentStateFile } from './agent-state-file.js';
import { deletedFrontendIds, keepFlows, newOrphanCache, orphanKeyCollector, type OrphanCache } from './ct-orphan.js';

/** cgroup sock_addr hooks and the programs that serve them (bpf/lb_sock.h) */
export const SOCK_HOOKS: Array<[attachType: string, program: string]> = [
  ['connect4', 'lb_sock_connect4'], ['connect6', 'lb_sock_connect6'],
  ['sendmsg4', 'lb_sock_sendmsg4'], ['sendmsg6', 'lb_sock_sendmsg6'],
  ['recvmsg4', 'lb_sock_recvmsg4'], ['recvmsg6', 'lb_sock_recvmsg6'],
  ['getpeername4', 'lb_sock_getpeername4'], ['getpeername6', 'lb_sock_getpeername6'],
];

/**
 * The release hook that frees a TCP socket's slot of lb_sock_slots (bpf/lb_sock.h), attached before
 * SOCK_HOOKS so that no socket connect() gave a slot closes unseen. An object without the program
 * (an earlier build) keeps its translations in socket storage alone.
 */
export const SOCK_RELEASE_HOOK: [attachType: string, program: string] = ['sock_release', 'lb_sock_release_hook'];

/**
 * Detaches the socket hooks an earlier build attached to cgroup that SOCK_HOOKS and SOCK_RELEASE_HOOK
 * no longer have; returns how many. After the current hooks are attached. (The release hook of
 * builds before socket storage had the same name and is replaced in place.)
 */
export function retireSockHooks(state: AgentStateFile, cgroup: string): number {
  const want = new Set([SOCK_RELEASE_HOOK, ...SOCK_HOOKS].map(([type, prog]) => `${type} ${prog}`));
  let n = 0;
  for (const a of state.attachments.filter((x) => x.kind === 'cgroup' && x.path === cgroup && !want.has(`${x.attachType} ${x.program}`))) if (detach(state, a)) n++;
  return n;
}

export const NFT_TABLE = 'kube-bpf-proxy';

export interface BpfDataplaneOptions {
  pinRoot: string;
  seed: number;
  socketLb: boolean;
  cgroup: string;
  /** external devices by name; default: the devices that hold one of nodeAddresses() */
  devices?: string[];
  /** this node's addresses (from its Node object and --node-ip), read at each device sync */
  nodeAddresses: () => string[];
  snatMark?: number;
  /** XDP on external devices (default true); failures to attach are logged, tc still serves */
  xdp?: boolean;
  log?: Logger;
  objectPath?: string;
  /** max_entries of maps, set at load (--bpf-map-max, map-sizes.ts); unset: the object's */
  mapSizes?: MapSizes;
  /** lb_ct's and lb_ct_syn's sizes where mapSizes leaves them: kube-proxy's conntrack sizing (map-sizes.ts); default kube-proxy's defaults */
  conntrack?: ConntrackSizing;
  /** the NodePort range (default 30000-32767): masquerade keeps out of it */
  nodePortRange?: NodePortRange;
  /** period of the conntrack sweep (ct-sweep.ts), default 30 s; 0 disables it */
  ctSweepMs?: number;
  /** follow link and address events (rtnetlink's link and address groups) so a new device or address is served at once (default true) */
  watchLinks?: boolean;
  /** externalIP CIDRs that traffic starting on this node may be translated to (CVE-2020-8554, bpf/lb_eip.h); default none */
  localExternalIpAllow?: string[];
  /** kube-proxy's local detector: sources and devices of the cluster's pods (config.ts localTrafficDetector) */
  localTraffic?: { cidrs: string[]; bridgeInterface?: string; interfaceNamePrefix?: string; fromNode?: boolean };
}

export type { Link } from '../links.js';

/**
 * The tc programs parse an Ethernet header at offset 0: only devices whose frames carry one get them.
 * tun, WireGuard (link_type none), IPIP/GRE/SIT tunnels and the like are skipped with a log line.
 */
export function servesLinkType(linkType: string): boolean {
  return linkType === 'ether';
}

export { listLinks, listLinksAsync } from '../links.js';

/**
 * The node's own addresses when none are given: the global addresses of the devices holding the
 * default routes (kube-proxy's "primary" addresses). Pod-facing devices are never among them.
 */
export function primaryAddresses(): string[] {
  const ip = systemBinary('ip');
  const devs = new Set<string>();
  for (const fam of ['-4', '-6']) {
    try {
      const routes = JSON.parse(execFileSync(ip, ['-j', fam, 'route', 'show', 'default'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as Array<{ dev?: string }>;
      for (const r of routes) if (r.dev) devs.add(r.dev);
    } catch {
      // no route of that family
    }
  }
  const out: string[] = [];
  for (const l of listLinks()) {
    if (!devs.has(l.ifname)) continue;
    for (const a of l.addresses) if (!a.startsWith('fe80:')) out.push(a);
  }
  return out;
}

function nft(script: string): void {
  execFileSync(systemBinary('nft'), ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

/**
 * The source ports masquerade may give a marked flow: the larger stretch of 1024-65535 outside the
 * NodePort range (32768-65535 for the default 30000-32767). A masqueraded flow's replies come back to
 * the node's address on that port, and tc ingress (and XDP) look frontends up before anything else:
 * a reply on a port of the NodePort range would be taken for a new NodePort flow (issue 7). Reserving
 * the range with net.ipv4.ip_local_reserved_ports would not help: it steers local sockets' ephemeral
 * ports, not the ports nf_nat picks (and the host's ephemeral range, 32768-60999, is outside the
 * default NodePort range already). Looking the kernel's conntrack up before frontends would cost a
 * lookup on every NodePort packet.
 */
export function masqueradePorts(range: NodePortRange = defaultNodePortRange): { min: number; max: number } {
  const below = { min: 1024, max: range.min - 1 }, above = { min: range.max + 1, max: 65535 };
  const size = (r: { min: number; max: number }) => r.max - r.min;
  return size(above) >= size(below) ? above : below;
}

/**
 * The nftables table that SNATs flows the BPF programs mark (external traffic to remote backends, hairpin).
 * TCP and UDP keep the client's source port when it is free in the range, where kube-proxy
 * masquerades fully-random (iptables proxier's syncProxyRules, `--random-fully`). With random ports a
 * client that reuses its port (the server closed first, so it keeps no TIME_WAIT) reopens the node's
 * conntrack entry, the new one gets another port, and the old port, free again on the node, still
 * sits in the backend's TIME_WAIT: a later flow that draws it has its SYN rejected by PAWS (issue 7,
 * test/lab/synloss.test.ts). A kept port comes back with the client's own 4-tuple, whose timestamps
 * and sequence numbers have moved on, so the backend's TIME_WAIT takes the SYN.
 */
export function masqueradeRuleset(mark: number, range: NodePortRange = defaultNodePortRange): string {
  const m = `0x${(mark >>> 0).toString(16)}`;
  const keep = `0x${(~mark >>> 0).toString(16)}`;
  const ports = masqueradePorts(range);
  const marked = `meta mark & ${m} == ${m}`;
  const clear = `meta mark set meta mark & ${keep}`;
  // declare-then-flush makes this idempotent: a restart rewrites the same rules. A port range needs
  // a transport protocol match; the programs mark only TCP and UDP, the second rule is a fallback.
  return `table inet ${NFT_TABLE} {}\nflush table inet ${NFT_TABLE}\ntable inet ${NFT_TABLE} {\n` +
    `  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n` +
    `    ${marked} meta l4proto { tcp, udp } counter ${clear} masquerade to :${ports.min}-${ports.max}\n` +
    `    ${marked} counter ${clear} masquerade fully-random\n  }\n}\n`;
}

function masqueradeFailed(e: unknown): KbpError {
  const stderr = (e as { stderr?: Buffer | string }).stderr?.toString().trim();
  return new KbpError('KBP_ERR_KERNEL_FEATURE', `installing the nftables masquerade rule failed (SNAT for external traffic and hairpin needs it): ${stderr || (e as Error).message}`, { cause: e });
}

/**
 * Installs the masquerade rule without holding the event loop (execFileSync after the load was ~20 ms
 * of the start's critical path): init starts it beside the verifier. Through libnftables (the kbp_nft
 * addon, on a worker thread) where it loads, else `nft -f -`: a child is a fork of the agent, which
 * write-protects every page it has, and each page then faults at its next write (the read and the
 * first sync write most of them).
 */
export async function installMasqueradeAsync(mark: number, range: NodePortRange = defaultNodePortRange): Promise<void> {
  const script = masqueradeRuleset(mark, range);
  const { addonUnavailableReason, createTransport } = await import('../nftables/native.js');
  if (addonUnavailableReason() === undefined) {
    try {
      await createTransport('libnftables').run(script);
    } catch (e) {
      throw masqueradeFailed(e);
    }
    return;
  }
  return new Promise<void>((resolve, reject) => {
    const child = execFile(systemBinary('nft'), ['-f', '-'], (err, _out, stderr) => (err ? reject(masqueradeFailed(Object.assign(err, { stderr }))) : resolve()));
    child.stdin!.on('error', () => {}); // nft gone before reading: its exit reports it
    child.stdin!.end(script);
  });
}

export function removeMasquerade(): boolean {
  try {
    // (a delete of a table that is not there fails: nothing was removed)
    nft(`delete table inet ${NFT_TABLE}\n`);
    return true;
  } catch {
    return false;
  }
}

/** applies of at most this many ops run on the event loop (BpfDataplane.apply) */
const SHORT_APPLY_OPS = 64;
/**
 * Slots of lb_slots per step of the write after the first sync: ~0.6 us of kernel inserts each, so a
 * change that comes meanwhile waits ~1-2 ms for the step under way
 */
const SLOT_FLUSH_CHUNK = 2048;
/** at a graceful stop what is left goes in large batches over several threads (nothing else waits) */
const SLOT_CLOSE_CHUNK = 1 << 16;
const SLOT_CLOSE_THREADS = 4;


export class BpfDataplane implements Dataplane {
  readonly kind = 'bpf' as const;
  readonly #opts: BpfDataplaneOptions;
  readonly #log: Logger;
  #loaded: Loaded | undefined;
  /** the load startLoad() began (init() takes it over), or why it could not begin */
  #load: LoadStarted | { error: unknown } | undefined;
  /** ifindex -> flags we set in lb_devices */
  #attached = new Map<number, { ifname: string; external: boolean; flags: number }>();
  #sweepTimer: NodeJS.Timeout | undefined;
  /** which halves of lb_rev_filter are known all zero (ct-sweep.ts) */
  readonly #revZeroed = new RevFilterZeroing();
  /** the same for lb_ct_filter */
  readonly #ctZeroed = new RevFilterZeroing();
  #sweeping = false;
  /** LRU evictions of lb_ct, lb_ct_syn and lb_frags, and their fill between sweeps (ct-sweep.ts) */
  readonly #evictions = new EvictionCounter();
  /** conntrack entries the sweep deleted as expired, since start (the ct_swept datapath event) */
  #swept = 0;
  /** devices left alone because their frames have no Ethernet header: ifindex -> name (logged once) */
  #skipped = new Map<number, string>();
  #links: LinkWatcher | undefined;
  /** init() has come to its first device scan: link events ask for scans from then on */
  #linksLive = false;
  #deviceSyncQueued = false;
  #writes: Promise<void> = Promise.resolve();
  /** connected UDP sockets to removed backends (sock-term.ts); undefined when the kernel cannot */
  #terminator: SockTerminator | undefined;
  #termDeniedLogged = false;
  #termQueued = false;
  /** what decides whether a removal needs a termination pass */
  readonly #protocols = new FrontendProtocols();
  /** termination passes run since start (the sock_term_passes datapath event) */
  #termPasses = 0;
  /** sockets destroyed since start (the sock_terminated datapath event) */
  #terminated = 0;
  /** conntrack entries of deleted frontends kept as orphans since start (the ct_orphaned datapath event) */
  #orphaned = 0;
  /** filter keys of orphaned flows held since the sweep under way began (it may not have seen them) */
  #heldSinceSweep = new Set<string>();

  constructor(opts: BpfDataplaneOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? silentLogger;
  }

  get loaded(): Loaded {
    if (!this.#loaded) throw new KbpError('KBP_ERR_INTERNAL', 'BPF data plane used before init()');
    return this.#loaded;
  }

  /** kernel memory of the maps the load creates (map-memory.ts), for the log */
  #newMapsMiB = 0;
  /** what startLoad warned of (mapMemoryWarning), for the error of a load that could not allocate */
  #memoryWarning: MapMemoryWarning | undefined;

  /**
   * Begins the object's load (pin root and pinned maps checked, then the verifier on the thread
   * pool) and nothing else: no program is attached and no map written until init(), which takes it
   * over. The agent calls it as soon as the mode is chosen: the verifier (over a second of CPU) then
   * runs beside the other modes' clean-up, client-node's import and the source's read (issue 10).
   */
  startLoad(): void {
    if (this.#load) return;
    this.#watchLinks();
    try {
      // an endpoint change that keeps M rewrites its table's region of lb_maglev_slots in place
      const mapSizes = sizesForMode(this.#opts.mapSizes, { socketLb: this.#opts.socketLb });
      this.#load = startLoad({ pinRoot: this.#opts.pinRoot, objectPath: this.#opts.objectPath, ...(mapSizes && { mapSizes }), ...(this.#opts.conntrack && { conntrack: this.#opts.conntrack }), maps: { recycleTables: true } });
      this.#load.loaded.catch(() => {}); // init() or close() awaits it
    } catch (e) {
      this.#load = { error: e };
    }
    // the maps are allocated whatever the Service count (~290 MiB at the default sizes) and charged
    // to the agent's cgroup: where that is more than there is, the kernel's OOM killer, not an error,
    // would end the agent during the load; say so first
    if ('newMaps' in this.#load) {
      const need = mapsMemory(this.#load.newMaps, numPossibleCpus());
      this.#newMapsMiB = Math.round(need.total / 2 ** 20);
      const warning = this.#memoryWarning = mapMemoryWarning(need, memoryAvailable());
      if (warning) this.#log.warn(warning, 'the BPF maps at these sizes need more memory than this node or pod has: the load may fail, or the kernel end the agent');
    }
  }

  /**
   * With the load under way: true when it found no pinned map (a first start on this node), so
   * readPlan() will hold nothing and capacity() already says what the new maps hold.
   */
  fresh(): boolean {
    return !!this.#load && 'loaded' in this.#load && !this.#load.reused;
  }

  async init(): Promise<void> {
    // the verifier on the thread pool: the agent reads its source meanwhile (Agent.start); nft
    // installs the masquerade rule meanwhile too (it needs nothing the load makes)
    const snatMark = this.#opts.snatMark ?? L.LB_SNAT_MARK_DEFAULT;
    // (an nft that cannot start rejects it too: the executor's throw)
    const masquerade = installMasqueradeAsync(snatMark, this.#opts.nodePortRange);
    masquerade.catch(() => {}); // awaited after the load; a failed load must not leave it unhandled
    this.startLoad();
    const load = this.#load!;
    if ('error' in load) throw load.error;
    let loaded: Loaded;
    try {
      loaded = await load.loaded;
    } catch (e) {
      // the maps could not be allocated: say what they need against what there was
      const w = this.#memoryWarning;
      if (w && (e as KbpError).errno === 12) {
        const [first, ...rest] = (e as Error).message.split('\n');
        throw new KbpError((e as KbpError).code ?? 'KBP_ERR_BPF', [`${first}: ${mapMemoryShortfall(w)}`, ...rest].join('\n'), { cause: e, errno: 12 });
      }
      throw e;
    }
    this.#loaded = loaded;
    // maps all made by this load: lb_backends is empty, its count (/metrics) follows the writes; and no
    // frontend's counters are set yet: a scrape reads lb_fe_stats up to the frontends written since
    if (!loaded.reused) {
      loaded.maps.backendsEmpty();
      loaded.maps.statsEmpty();
    }
    // an upgrade, first the maps only the agent writes: the new programs must never see them empty
    const migrated = loaded.finishMigration((name) => !PROGRAM_WRITTEN_MAPS.has(name));
    // before any program is attached: maps pinned by a build without lb_members get it filled from
    // lb_slots, or every conntrack hit would find its backend no member of its frontend; lb_slots
    // left behind by an agent that ended before its deferred write is written after the first sync
    const members = loaded.maps.syncMembers(!loaded.reused);
    if (members.added) this.#log.info(members, 'frontend membership (lb_members) rebuilt from lb_slots');
    if (members.slotsBehind) this.#log.info({ frontends: members.slotsBehind }, 'lb_slots lags lb_members (an earlier agent ended before writing it, or the map is new): written after the first sync');
    for (const r of loaded.refused) {
      this.#log.warn({ map: r.name, id: r.id, reason: r.reason }, 'pinned map not made by this agent: unpinned and created anew');
    }
    this.#log.info({ pinRoot: loaded.pinRoot, reused: loaded.reused, newMapsMiB: this.#newMapsMiB, ctEntries: loaded.maps.map('lb_ct').maxEntries, ...(this.#opts.mapSizes && { bpfMapMax: formatMapSizes(this.#opts.mapSizes) }) }, loaded.reused ? 'reusing pinned maps of an earlier agent' : 'loaded BPF data plane');

    loaded.maps.writeConfig({ hashSeed: this.#opts.seed >>> 0, snatMark, flags: (this.#opts.socketLb ? L.LB_CFG_F_SOCK_LB : 0) | L.LB_CFG_F_HOST_REROUTE });
    await masquerade;
    loaded.maps.setExternalIpAllow(this.#opts.localExternalIpAllow ?? []);
    // NodeCIDR: the Node's pod CIDRs come with the first sync (setLocalSources); until then an earlier
    // agent's stay, so a restart does not masquerade the pods' flows in between
    if (!this.#opts.localTraffic?.fromNode) loaded.maps.setLocalSources(this.#opts.localTraffic?.cidrs ?? []);
    if (this.#opts.socketLb) this.#loadTerminator();
    // devices known from an earlier run keep their programs until syncDevices() replaces them
    for (const [ifindex, flags] of loaded.maps.devices()) {
      this.#attached.set(ifindex, { ifname: '', external: (flags & L.LB_DEV_F_EXTERNAL) !== 0, flags });
    }
    // maps all made by this load: the filters' halves are zero, and no program is attached yet to
    // write a conntrack entry (the counts the sweep checks are read now), so no sweep zeroes them
    if (!loaded.reused) this.#freshFilters(loaded);
    // from here on a link event asks for a scan; one that came before is seen by this first scan,
    // which lists after it (the monitor subscribed at startLoad(), which init() ran first)
    this.#linksLive = true;
    await this.syncDevices(true);
    this.#syncSocketHooks();
    // then, with the new programs attached, the maps programs write: nothing the old programs wrote
    // up to the switch is lost
    for (const m of [...migrated, ...loaded.finishMigration()]) {
      this.#log.warn({ map: m.name, how: m.how, differs: m.why, copied: m.copied, dropped: m.dropped, newer: m.newer, ms: m.ms, ...(m.error !== undefined && { error: m.error }) },
        m.how === 'copy' ? 'pinned map of another definition (an older build, or other --bpf-map-max sizes) migrated: entries copied into the new layout'
          : 'pinned map of another definition (an older build, or other --bpf-map-max sizes) recreated: the agent rewrites what it derives from the plan; runtime state in it starts empty');
    }
    const every = this.#opts.ctSweepMs ?? 30_000;
    if (every > 0) {
      // a first pass at once over an earlier agent's maps: the eviction counters' base, what it left
      // expired, and its filters switched back on (loader.ts left them off). Maps this load made
      // hold nothing to sweep and no flow before the first sync: their first pass (which switches
      // the filters on) runs after it (synced()), off the first sync's critical path (issue 10)
      if (loaded.reused) void this.sweepConntrack();
      else this.#sweepAfterSync = true;
      this.#sweepTimer = setInterval(() => void this.sweepConntrack(), every);
      this.#sweepTimer.unref();
    }
  }

  async readPlan(): Promise<Plan | undefined> {
    const { maps, reused } = this.loaded;
    // maps this load created, not written since, are empty: isEmpty() would walk lb_backends, an
    // array of LB_BACKENDS_MAX entries (~0.2-0.5 s of a first start's critical path, issue 10)
    if (!reused && maps.map('lb_frontends').writes === 0 && maps.map('lb_backends').writes === 0) return undefined;
    const plan = maps.isEmpty() ? undefined : maps.readPlan();
    if (plan) this.#protocols.seed(plan);
    return plan;
  }

  async setLocalSources(cidrs: readonly string[]): Promise<void> {
    const { maps } = this.loaded;
    await this.#serialWrite(async () => maps.setLocalSources(cidrs));
  }

  prefill(tables: readonly PlanTable[]): boolean {
    // only on a data plane that is up and idle: the apply that follows adopts or drops them
    if (!this.#loaded || this.#writing) return false;
    return this.#loaded.maps.prefill(tables);
  }

  async apply(ops: PlanOp[]): Promise<void> {
    const { maps } = this.loaded;
    // a long apply off the event loop: /healthz and /metrics answer meanwhile (issue 7); a short one
    // (an endpoint change: a few batches of a few entries, microseconds each) at once, as each hop
    // to the thread pool and back waited for the scheduler: ~30 ms of a one-change sync at 10,000
    // Services on a loaded machine (issue 10)
    const gone = deletedFrontendIds(ops);
    const res = await this.#serialWrite(async () => {
      // a deleted frontend's established flows are kept (ct-orphan.ts): rewritten before the deletes,
      // and once more after them for a flow that started in between
      const cache = gone.size ? newOrphanCache() : undefined;
      if (cache) await this.#keepFlows(gone, cache);
      const r = ops.length <= SHORT_APPLY_OPS ? maps.apply(ops) : await maps.applyAsync(ops);
      if (cache) await this.#keepFlows(gone, cache);
      return r;
    });
    // a first sync leaves lb_slots to a write after it
    this.#slotsAfterApply();
    // only when a backend left a UDP frontend: a pass walks every netns (~0.1 ms each) for connected UDP
    // sockets, additions and TCP frontends need none
    if (this.#terminator && res.membersLeft > 0 && this.#protocols.mayHoldUdp(res.leftFrontends, ops)) this.#requestTermination();
    this.#protocols.note(ops);
  }

  /** Orphans the lb_ct entries of frontends being deleted and holds their destinations' filter bits; logs, never throws. */
  async #keepFlows(feIds: ReadonlySet<number>, cache: OrphanCache): Promise<void> {
    const maps = this.loaded.maps;
    try {
      const r = await keepFlows(maps, feIds, cache);
      for (const k of r.keys) this.#heldSinceSweep.add(k);
      this.#orphaned += r.orphaned;
      if (r.orphaned || r.lost) this.#log.info({ frontendIds: [...feIds], orphaned: r.orphaned, lost: r.lost }, 'established flows of deleted frontends kept (orphaned conntrack entries)');
    } catch (e) {
      this.#log.warn({ err: e, frontendIds: [...feIds] }, 'could not keep the established flows of deleted frontends: they break at this sync');
    }
  }

  #loadTerminator(): void {
    const path = sockTermObjectPath(this.#opts.objectPath ?? defaultObjectPath());
    try {
      this.#terminator = SockTerminator.load(this.loaded.pinRoot, path);
      this.#log.info({ object: path }, 'socket termination loaded: connected UDP sockets to a removed backend are closed');
      if (!inInitialPidNamespace()) {
        this.#log.warn('the agent is not in the host\'s pid namespace: it closes connected UDP sockets to a removed backend only in the network namespaces of processes it sees (a DaemonSet needs hostPID: true)');
      }
    } catch (e) {
      this.#log.warn({ object: path, reason: (e as Error).message.split('\n')[0] },
        'socket termination unavailable (needs kernel 6.5+ for bpf_sock_destroy): a connected UDP socket keeps a removed backend until the application reconnects');
    }
  }

  /** One termination pass soon after the sync that removed backends, however many syncs come meanwhile. */
  #requestTermination(): void {
    if (this.#termQueued) return;
    this.#termQueued = true;
    setImmediate(() => {
      this.#termQueued = false;
      this.terminateStaleSockets();
    });
  }

  /** Destroys connected UDP sockets whose backend left their frontend, in every network namespace; logs, never throws. */
  terminateStaleSockets(): number {
    const t = this.#terminator;
    if (!t) return 0;
    try {
      const r = t.run();
      this.#termPasses++;
      this.#terminated += r.terminated.length;
      if (r.denied && !this.#termDeniedLogged) {
        // once: an agent without CAP_SYS_PTRACE (or outside the host's pid namespace) will not gain it
        this.#termDeniedLogged = true;
        this.#log.warn({ namespaces: r.denied }, 'cannot enter the network namespaces of some processes (/proc/PID/ns/net: permission denied; the agent needs CAP_SYS_PTRACE): connected UDP sockets there keep a removed backend');
      }
      if (r.terminated.length) {
        this.#log.info({ sockets: r.terminated.map((x) => ({ backend: `${x.address}:${x.port}`, frontendId: x.feId, err: x.err })), namespaces: r.namespaces },
          'closed connected UDP sockets whose backend left their Service');
      }
      return r.terminated.length;
    } catch (e) {
      this.#log.warn({ err: e }, 'socket termination pass failed; retried after the next sync that removes a backend');
      return 0;
    }
  }

  /**
   * Subscribes to the namespace's link and address events (link-watch.ts: an rtnetlink socket read on
   * the loop). Started with the load so a device that appears while the source is read is seen; events
   * before init()'s first device scan ask for nothing (that scan lists after them). Where the netlink
   * addon is missing the events come from an `ip monitor` child, still spawned here while the heap is
   * small: libuv forks to spawn, and a fork after the first sync left its hash tables faulting page
   * by page for hundreds of changes (~20 faults, +0.3 ms a sync; docs/perf-log.md, session 15).
   */
  #watchLinks(): void {
    if (this.#links || this.#opts.watchLinks === false) return;
    this.#links = new LinkWatcher({
      log: this.#log,
      onEvent: (e) => {
        this.#log.debug({ device: e.ifname, ifindex: e.ifindex, event: e.kind, address: e.address }, e.address ? 'address event' : 'link event');
        this.#requestDeviceSync();
      },
      // the monitor (re)started: what changed before it subscribed is found by one more scan
      onStart: () => this.#requestDeviceSync(),
    });
    this.#links.start();
  }

  /** One device scan soon, however many link events arrive meanwhile (a new veth brings several). */
  #requestDeviceSync(): void {
    if (!this.#linksLive || this.#deviceSyncQueued) return;
    this.#deviceSyncQueued = true;
    setImmediate(() => {
      this.#deviceSyncQueued = false;
      if (!this.#loaded) return;
      this.syncDevices().catch((e: unknown) => this.#log.warn({ err: e }, 'device scan after a link event failed; housekeeping retries'));
    });
  }

  /** the deferred write of lb_slots runs (#flushSlots), and whether close() has asked it to stop */
  #slotFlush: Promise<void> | undefined;
  /** a fresh load's first conntrack sweep waits for the first sync (init) */
  #sweepAfterSync = false;

  /** lb_rev_filter's and lb_ct_filter's halves known zero (RevFilterZeroing.fresh), on maps this load made */
  #freshFilters(loaded: Loaded): void {
    try {
      const names = loaded.object.mapNames(), st = loaded.maps.readStats();
      if (names.includes('lb_rev_filter')) this.#revZeroed.fresh(loaded.object.map('lb_rev_filter'), st.ct_insert + st.ct_syn_insert);
      if (names.includes('lb_ct_filter')) this.#ctZeroed.fresh(loaded.object.map('lb_ct_filter'), st.ct_insert);
    } catch (e) {
      // only a zeroing spared: the sweep zeroes as before
      this.#log.debug({ err: e }, 'the filters\' halves not marked zero');
    }
  }
  #closing = false;

  /**
   * After a sync: lb_slots, when an apply left it behind (a first sync's lists, MapWriter
   * flushSlots), is written now in the background, a chunk of SLOT_FLUSH_CHUNK slots per step on the
   * thread pool, each step between applies (a change waits for one step at most, ~1 ms) and the
   * event loop free between them. No program reads lb_slots: it is there for an agent of an earlier
   * build started over these maps (a downgrade), which takes lb_members from it (docs/perf-log.md,
   * session 22). close() finishes what is left. A fresh load's first conntrack sweep starts here
   * too (init).
   */
  synced(): void {
    if (this.#sweepAfterSync && this.#loaded) {
      this.#sweepAfterSync = false;
      // on the next turn: what waited for the sync (a probe, a scrape, a change) goes first
      setImmediate(() => { if (this.#loaded && !this.#closing) void this.sweepConntrack(); });
    }
    this.#slotsAfterApply();
  }

  #slotsAfterApply(): void {
    const l = this.#loaded;
    if (!l || this.#slotFlush || this.#closing || !l.maps.slotsBehind()) return;
    this.#slotFlush = this.#flushSlots(l.maps).finally(() => { this.#slotFlush = undefined; });
  }

  async #flushSlots(maps: BpfMaps): Promise<void> {
    const t0 = performance.now(), cpu0 = process.cpuUsage();
    let steps = 0, slots = 0, holdMs = 0;
    try {
      for (;;) {
        // a turn first: what waited for the sync (a probe, a scrape, a change) goes first
        await new Promise<void>((r) => setImmediate(r));
        if (this.#closing || this.#loaded?.maps !== maps) return;
        const r = await this.#serialWrite(() => maps.flushSlots(SLOT_FLUSH_CHUNK, { async: true }));
        steps++;
        if (r.slots > 0) slots += r.slots;
        holdMs = Math.max(holdMs, r.holdMs);
        if (!r.left) break;
      }
      const cpu = process.cpuUsage(cpu0);
      this.#log.info({ slots, steps, ms: Math.round(performance.now() - t0), cpuMs: Math.round((cpu.user + cpu.system) / 1000), longestHoldMs: Math.round(holdMs * 100) / 100 },
        'lb_slots written (the backend lists an earlier build\'s agent reads at its start)');
    } catch (e) {
      this.#log.warn({ err: e }, 'writing lb_slots after the sync failed (an earlier build\'s agent started over these maps would drop flows): retried after the next sync');
    }
  }

  /** Plan writes one at a time: an apply and a deferred flush must not interleave their batches. */
  #serialWrite<T>(write: () => Promise<T>): Promise<T> {
    this.#writing++;
    const run = this.#writes.then(write);
    this.#writes = run.then(() => undefined, () => undefined).finally(() => { this.#writing--; });
    return run;
  }

  /** plan writes queued or under way (#serialWrite) */
  #writing = 0;

  /** Attaches tc to every device (and XDP to external ones) not yet served; forgets vanished ones. */
  syncDevices(force = false): Promise<void> {
    // one scan at a time, each listing after the last applied (a link event and a housekeeping tick
    // may ask together): a scan that listed earlier never applies last
    const run = this.#devicesTail.then(() => this.#syncDevices(force));
    this.#devicesTail = run.then(() => undefined, () => undefined);
    return run;
  }

  #devicesTail: Promise<void> = Promise.resolve();

  /**
   * The namespace's devices: over rtnetlink (links.ts), else, when the netlink addon cannot load,
   * from `ip` (a process per scan, said once in the log).
   */
  async #listLinks(): Promise<Link[]> {
    if (this.#lister === undefined) {
      try {
        this.#lister = new LinkLister();
      } catch (e) {
        this.#lister = null;
        this.#log.warn({ reason: (e as Error).message }, 'device scans run `ip -j addr show` (the netlink addon is not available)');
      }
    }
    return this.#lister ? this.#lister.list() : listLinksAsync();
  }

  #lister: LinkLister | null | undefined;

  async #syncDevices(force: boolean): Promise<void> {
    const links = await this.#listLinks();
    const { object, maps, state } = this.loaded;
    const nodeAddrs = new Set(this.#opts.nodeAddresses().map((a) => { try { return canonicalIp(a); } catch { return a; } }));
    // kube-proxy's BridgeInterface / InterfaceNamePrefix detectors match the input device (-i); a
    // bridge's ports are matched too, as tc sees a pod's packet on its veth before the bridge does
    const lt = this.#opts.localTraffic;
    const localSource = (l: Link): boolean => !!lt && (
      (lt.bridgeInterface !== undefined && (l.ifname === lt.bridgeInterface || l.master === lt.bridgeInterface)) ||
      (lt.interfaceNamePrefix !== undefined && l.ifname.startsWith(lt.interfaceNamePrefix)));
    const wantExternal = (l: Link): boolean => this.#opts.devices
      ? this.#opts.devices.includes(l.ifname)
      : l.addresses.some((a) => nodeAddrs.has(a));
    // every local address answers NodePorts compiled for any address (0.0.0.0 / ::)
    maps.setNodeAddresses(new Set(links.flatMap((l) => l.addresses.filter((a) => !a.startsWith('fe80:')))));
    const present = new Set<number>();
    const todo: Array<{ l: Link; external: boolean; flags: number }> = [];
    for (const l of links) {
      if (l.ifname === 'lo') continue;
      if (!servesLinkType(l.linkType)) {
        if (this.#skipped.get(l.ifindex) !== l.ifname) {
          this.#skipped.set(l.ifindex, l.ifname);
          this.#log.warn({ device: l.ifname, ifindex: l.ifindex, linkType: l.linkType },
            'device skipped: its frames have no Ethernet header, which the tc programs parse (Services are not translated on it)');
        }
        continue; // not present: an attachment of an earlier run is removed below
      }
      this.#skipped.delete(l.ifindex);
      present.add(l.ifindex);
      const external = wantExternal(l);
      const flags = (external ? L.LB_DEV_F_EXTERNAL : 0) | (localSource(l) ? L.LB_DEV_F_LOCAL_SRC : 0);
      const have = this.#attached.get(l.ifindex);
      if (have && have.external === external && have.flags === flags && have.ifname === l.ifname && !force) continue;
      todo.push({ l, external, flags });
    }
    // The switch of programs: every device's lb_devices entry first, then the attachments back to
    // back, and only then the state file's save and the log. While some devices run an older agent's
    // programs (their maps) and others these, a handshake whose SYN one side translates and whose
    // SYN-ACK the other sees finds no entry and is lost (the client retransmits after 1 s): an
    // upgrade (test/lab/upgrade.test.ts) keeps that window to the kernel's own attach time.
    const ready = todo.filter((d) => {
      try {
        maps.setDevice(d.l.ifindex, d.flags);
        return true;
      } catch (e) {
        this.#log.error({ err: e, device: d.l.ifname }, 'attaching to device failed');
        return false;
      }
    });
    const attached: typeof todo = [];
    const started = performance.now();
    try {
      for (const d of ready) {
        const { l, external, flags } = d;
        try {
          // the device's name is known here: no `ip` run per attachment to look it up
          attachTc(state, object.program('lb_tc_ingress'), l.ifindex, 'ingress', { ifname: l.ifname, save: false });
          attachTc(state, object.program('lb_tc_egress'), l.ifindex, 'egress', { ifname: l.ifname, save: false });
          if (external && this.#opts.xdp !== false) this.#attachXdp(l);
          this.#attached.set(l.ifindex, { ifname: l.ifname, external, flags });
          attached.push(d);
        } catch (e) {
          // one device failing (it vanished, a driver refused) must not stop the others
          this.#log.error({ err: e, device: l.ifname }, 'attaching to device failed');
        }
      }
    } finally {
      if (todo.length) state.save();
    }
    const switchMs = Math.round((performance.now() - started) * 100) / 100;
    for (const { l, external } of attached) this.#log.info({ device: l.ifname, ifindex: l.ifindex, external, switchMs }, 'attached to device');
    for (const ifindex of [...this.#skipped.keys()]) if (!links.some((l) => l.ifindex === ifindex)) this.#skipped.delete(ifindex);
    for (const ifindex of [...this.#attached.keys()]) {
      if (present.has(ifindex)) continue;
      this.#attached.delete(ifindex);
      maps.removeDevice(ifindex);
      for (const a of state.attachments.filter((x) => (x.kind === 'tc' || x.kind === 'xdp') && x.ifindex === ifindex)) {
        try { detach(state, a); } catch { /* the device and its hooks are gone with it */ }
      }
    }
  }

  #attachXdp(l: Link): void {
    const { object, state } = this.loaded;
    try {
      attachXdp(state, object.program('lb_xdp'), l.ifindex, 'native', l.ifname, { save: false });
    } catch (e) {
      this.#log.warn({ device: l.ifname, reason: (e as Error).message }, 'native XDP refused; using generic XDP');
      try {
        attachXdp(state, object.program('lb_xdp'), l.ifindex, 'generic', l.ifname, { save: false });
      } catch (e2) {
        this.#log.warn({ device: l.ifname, reason: (e2 as Error).message }, 'XDP unavailable on device; tc serves its traffic');
      }
    }
  }

  #syncSocketHooks(): void {
    const { object, state } = this.loaded;
    if (this.#opts.socketLb) {
      const hooks = object.programNames().includes(SOCK_RELEASE_HOOK[1]) ? [SOCK_RELEASE_HOOK, ...SOCK_HOOKS] : SOCK_HOOKS;
      for (const [type, prog] of hooks) {
        try {
          attachCgroup(state, object.program(prog), this.#opts.cgroup, type);
        } catch (e) {
          throw new KbpError('KBP_ERR_DATAPLANE', `attaching socket hook ${prog} (${type}) to cgroup ${this.#opts.cgroup} failed: ${(e as Error).message}`, { cause: e });
        }
      }
      retireSockHooks(state, this.#opts.cgroup);
    } else {
      // switched off (service meshes): remove hooks an earlier run attached
      for (const a of state.attachments.filter((x) => x.kind === 'cgroup')) detach(state, a);
    }
  }

  async stats(hint: { maxFrontendId?: number } = {}): Promise<DataplaneStats> {
    const { maps } = this.loaded;
    // the conntrack maps (up to a million entries each) are counted by the sweep, which scans them
    // anyway and yields while it does, not on every scrape on the event loop
    // anyway and yields while it does, not on every scrape on the event loop; between sweeps their fill
    // is the sweep's count plus the programs' inserts less deletions since (a SYN flood shows at once)
    const events = maps.readStats();
    const now = new Map<string, number>();
    for (const name of ['lb_ct', 'lb_ct_syn'] as const) {
      const { inserts, deletes } = evictionCounters(events, name);
      const n = this.#evictions.fillNow(name, inserts, deletes, maps.map(name).maxEntries);
      if (n !== undefined) now.set(name, n);
    }
    const fill = maps.mapFill(new Set(now.keys())).map((m) => (now.has(m.name) ? { ...m, entries: now.get(m.name) ?? m.entries } : m));
    return {
      maps: fill, events: { ...events, ct_swept: this.#swept, sock_terminated: this.#terminated, sock_term_passes: this.#termPasses, ct_orphaned: this.#orphaned }, frontends: maps.readFrontendStats(hint.maxFrontendId),
      evictions: this.#evictions.totals(),
    };
  }

  /**
   * One pass of the conntrack sweep over lb_ct and lb_ct_syn, in batches that leave the event loop
   * free between them (ct-sweep.ts); logs failures, never rejects. A pass still under way when the
   * next period comes is not started twice.
   */
  async sweepConntrack(): Promise<SweepResult[]> {
    if (this.#sweeping) return [];
    this.#sweeping = true;
    // (the filters' log lines say when their pass began)
    const startedAt = Date.now();
    try {
      const out: SweepResult[] = [];
      // lb_rev_filter rebuilt from both scans, switched on only when both completed (ct-sweep.ts)
      // a half still all zero is not zeroed again (RevFilterZeroing): the programs' inserts tell
      let st: ReturnType<BpfMaps['readStats']> | undefined;
      const o = this.#loaded?.object;
      let rev: FilterBuild | undefined;
      try {
        if (o?.mapNames().includes('lb_rev_filter')) {
          st ??= this.#loaded?.maps.readStats();
          rev = await FilterBuild.begin(o.map('lb_rev_filter'), 'rev', this.#revZeroed, st && st.ct_insert + st.ct_syn_insert);
        }
      } catch (e) {
        this.#log.warn({ err: e }, 'reply filter (lb_rev_filter) not rebuilt; retried next period');
      }
      // lb_ct_filter likewise, from the scan of lb_ct alone
      let ctf: FilterBuild | undefined;
      try {
        if (o?.mapNames().includes('lb_ct_filter')) {
          st ??= this.#loaded?.maps.readStats();
          ctf = await FilterBuild.begin(o.map('lb_ct_filter'), 'ct', this.#ctZeroed, st?.ct_insert);
        }
      } catch (e) {
        this.#log.warn({ err: e }, 'conntrack filter (lb_ct_filter) not rebuilt; retried next period');
      }
      for (const name of ['lb_ct', 'lb_ct_syn'] as const) {
        // close() may have run while the last batch was on the thread pool
        const l = this.#loaded;
        if (!l) break;
        try {
          // the programs' inserts before the scan, their deletions after (EvictionCounter)
          const { inserts } = evictionCounters(l.maps.readStats(), name);
          // lb_ct: the destinations of the orphaned flows still alive keep their filter bits
          const live = name === 'lb_ct' ? new Set<string>() : undefined;
          if (live) this.#heldSinceSweep.clear();
          const revVisit = rev?.visit, ctVisit = name === 'lb_ct' ? ctf?.visit : undefined;
          const visit = revVisit && ctVisit ? (k: Buffer) => { revVisit(k); ctVisit(k); } : revVisit ?? ctVisit;
          const r = await sweepConntrack(l.maps.map(name), name, undefined, undefined, live && orphanKeyCollector(live), visit);
          // between applies: an apply's filter words in flight must not overwrite these, and the
          // keys applies orphaned since the scan began are kept
          if (live) {
            await this.#serialWrite(async () => {
              for (const k of this.#heldSinceSweep) live.add(k);
              if (live.size || l.maps.heldFeFilterKeys()) l.maps.holdFeFilterKeys(live, true);
            });
          }
          this.#swept += r.expired;
          this.#evictions.agentDeleted(name, r.expired);
          // what the scan saw, less what it deleted: the map's fill as of this sweep
          this.#evictions.observe(name, inserts, evictionCounters(l.maps.readStats(), name).deletes, r.entries - r.expired);
          out.push(r);
        } catch (e) {
          rev = undefined;
          if (name === 'lb_ct') ctf = undefined;
          this.#log.warn({ err: e, map: name }, 'conntrack sweep failed; retried next period');
        }
      }
      if (rev && out.length === 2 && this.#loaded) {
        try {
          const entries = rev.finish();
          this.#log.debug({ half: rev.half, reverseEntries: entries, zeroed: rev.zeroedHalf, startedAt }, 'reply filter (lb_rev_filter) rebuilt');
        } catch (e) {
          this.#log.warn({ err: e }, 'reply filter (lb_rev_filter) not switched; retried next period');
        }
      }
      if (ctf && out.some((r) => r.map === 'lb_ct') && this.#loaded) {
        try {
          const entries = ctf.finish();
          this.#log.debug({ half: ctf.half, entries, zeroed: ctf.zeroedHalf, startedAt }, 'conntrack filter (lb_ct_filter) rebuilt');
        } catch (e) {
          this.#log.warn({ err: e }, 'conntrack filter (lb_ct_filter) not switched; retried next period');
        }
      }
      // lb_frags is not swept (LRU only) and small: counted whole
      const l = this.#loaded;
      if (l) {
        const { inserts } = evictionCounters(l.maps.readStats(), 'lb_frags');
        const n = l.maps.map('lb_frags').count();
        this.#evictions.observe('lb_frags', inserts, 0, n);
      }
      if (out.some((r) => r.expired)) this.#log.debug({ sweep: out, evictions: this.#evictions.totals() }, 'conntrack sweep');
      return out;
    } finally {
      this.#sweeping = false;
    }
  }

  /**
   * What the loaded maps hold (their max_entries), not what lb_consts.h says by default: maps sized
   * at load (--bpf-map-max), an object built with other sizes (--bpf-object), or maps kept from an
   * older build, must be fitted to, or a Service over the limit fails the whole sync and holds back
   * every other Service's changes.
   */
  capacity(): Capacity {
    const m = this.#loaded?.maps;
    // while the load runs (the agent plans a fresh node's first sync meanwhile): the sizes it makes
    const sizes = !m && this.#load && 'maxEntries' in this.#load ? this.#load.maxEntries : undefined;
    const cap = (name: L.MapName, dflt: number): number => (m ? m.map(name).maxEntries : sizes?.get(name) ?? dflt);
    return {
      frontends: cap('lb_frontends', L.LB_FRONTENDS_MAX),
      // every Maglev table's region together, as the loaded array holds them (the map writer's
      // allocator takes the same size): an object built with a larger -DLB_MAGLEV_SLOTS_MAX is used whole
      maglevSlots: cap('lb_maglev_slots', L.LB_MAGLEV_SLOTS_MAX / L.LB_MAGLEV_IDS_PER_ELEM) * L.LB_MAGLEV_IDS_PER_ELEM,
      // an array indexed by backend id, and id 0 is never used
      backends: cap('lb_backends', L.LB_BACKENDS_MAX) - 1,
      slots: Math.min(cap('lb_slots', L.LB_SLOTS_MAX), cap('lb_members', L.LB_MEMBERS_MAX)),
      // lb_fe_stats may be shorter (per-CPU counters): frontends past it are served, uncounted
      frontendIds: cap('lb_revnat', L.LB_FE_ID_MAX),
      sourceRanges: cap('lb_src_ranges', L.LB_SRC_RANGES_MAX),
    };
  }

  warmWriter(): WarmWriter | undefined {
    const l = this.#loaded;
    if (!l) return undefined;
    // the writer's options as init() gives the live maps'
    const maps = BpfMaps.scratch(l.maps, { recycleTables: true });
    return { apply: (ops) => { maps.apply(ops); }, close: () => maps.close() };
  }

  async close(): Promise<void> {
    this.#links?.stop();
    this.#links = undefined;
    // after a device scan in flight (it holds the socket), not under it
    await this.#devicesTail;
    this.#lister?.close();
    this.#lister = undefined;
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
    this.#closing = true;
    await this.#slotFlush;
    await this.#writes;
    // a graceful stop leaves lb_slots complete: an earlier build's agent started next (a downgrade)
    // takes lb_members from it (not before cleanup, which removes the maps)
    const lm = this.#loaded?.maps;
    if (lm?.slotsBehind() && !this.#removing) {
      const t0 = performance.now();
      try {
        let slots = 0;
        // bounded: each call writes the next queued lists, or ends the prune
        for (;;) {
          const r = await lm.flushSlots(SLOT_CLOSE_CHUNK, { async: true, threads: SLOT_CLOSE_THREADS });
          if (r.slots > 0) slots += r.slots;
          if (!r.left) break;
        }
        this.#log.info({ slots, ms: Math.round(performance.now() - t0) }, 'lb_slots written at stop (the backend lists an earlier build\'s agent reads at its start)');
      } catch (e) {
        this.#log.warn({ err: e }, 'writing lb_slots at stop failed: an earlier build\'s agent started over these maps would drop flows until its first sync (this build\'s agent writes it again)');
      }
    }
    this.#terminator?.close();
    this.#terminator = undefined;
    // a load begun (startLoad) that init() never took over: closed once the verifier is done with it
    const l = this.#loaded ?? (this.#load && 'loaded' in this.#load ? await this.#load.loaded.catch(() => undefined) : undefined);
    this.#load = undefined;
    this.#loaded = undefined;
    l?.state.save(true);
    l?.maps.close();
    l?.object.close();
  }

  /** cleanup() is closing: the maps go, lb_slots is not completed first */
  #removing = false;

  async cleanup(): Promise<void> {
    const pinRoot = this.#loaded?.pinRoot ?? this.#opts.pinRoot;
    const state = this.#loaded?.state;
    this.#removing = true;
    await this.close();
    cleanupDataplane(pinRoot, state);
  }
}

/** Everything `cleanup` removes for one pin root: attachments, pins, state file, the nftables table. */
export function cleanupDataplane(pinRoot: string, state?: Loaded['state']): { detached: number; unpinned: number; nft: boolean } {
  const r = state ? cleanupPins(pinRoot, state) : cleanupPins(pinRoot);
  return { ...r, nft: removeMasquerade() };
}
