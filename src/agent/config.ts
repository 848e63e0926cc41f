// Agent settings: defaults, then a kube-proxy KubeProxyConfiguration file (--config), then flags.
// Every field of KubeProxyConfiguration (v1alpha1, and v1alpha2's layout) is applied, or carried
// but named in the one startup warning as accepted and not yet enforced, or named there as
// ignored: never silently dropped.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { KbpError } from '../util/errors.js';
import { ipFamily, parseCidr } from '../util/ip.js';
import { appendPortIfNeeded, parseBindAddress } from './health.js';
import { IPVS_SCHEDULERS } from '../dataplane/ipvs/schedulers.js';
import { checkNodePortAddresses } from '../compile/nodeport-addresses.js';
import { checkSize, CONNTRACK_DEFAULTS, type MapSizes, type SizableMap } from '../dataplane/bpf/map-sizes.js';

export type Mode = 'auto' | 'bpf' | 'ipvs' | 'nftables';

export interface AgentSettings {
  manifests?: string;
  kubeconfig?: string;
  nodeName: string;
  nodeIPs: string[];
  mode: Mode;
  devices?: string[];
  socketLb: boolean;
  /** cgroup v2 path for the socket hooks; unset: the host's cgroup v2 mount (dataplane/host.ts) */
  cgroup?: string;
  bpffs: string;
  /** the BPF object to load; unset: the one shipped beside the agent */
  bpfObject?: string;
  /** max_entries of maps set at load (--bpf-map-max; dataplane/bpf/map-sizes.ts); unset: the object's */
  bpfMapMax?: MapSizes;
  healthzBindAddress: string;
  metricsBindAddress: string;
  /** a health or metrics server that cannot listen fails the start (kube-proxy's bindAddressHardFail); else it is retried */
  bindAddressHardFail?: boolean;
  nodePortAddresses: string[];
  /** what an empty nodePortAddresses means: 'all' (kube-proxy's iptables/ipvs modes) or 'primary' (its nftables mode) */
  nodePortAddressesDefault: 'all' | 'primary';
  /** KubeProxyConfiguration bindAddress: the node's primary IP of its family (kube-proxy's detectNodeIPs) */
  bindAddress?: string;
  /** the PreferSameTrafficDistribution feature gate (featureGates): use node topology hints */
  preferSameTrafficDistribution: boolean;
  clusterCidrs: string[];
  /** masquerade all traffic to Service clusterIPs (iptables/nftables/linux.masqueradeAll); BPF mode */
  masqueradeAll: boolean;
  /** how to tell in-cluster traffic (localTrafficDetector); BPF mode */
  detectLocalMode?: DetectLocalMode;
  detectLocal?: { bridgeInterface?: string; interfaceNamePrefix?: string };
  externalIPCidrs?: string[];
  /**
   * externalIP CIDRs that traffic starting on this node (pods, host processes) may be translated to,
   * besides the node's own addresses (CVE-2020-8554, bpf/lb_eip.h); default none
   */
  localExternalIpAllow: string[];
  minSyncMs: number;
  syncPeriodMs: number;
  /** device rescan; link events cover new devices in between (counters are read at each scrape) */
  housekeepingMs: number;
  /** BPF mode: the conntrack sweep (expired entries, fill level, evictions) */
  ctSweepMs: number;
  /**
   * BPF mode: lb_ct holds two entries a flow for max(this x CPUs, conntrackMin) flows, as kube-proxy
   * sizes nf_conntrack (--conntrack-max-per-core; 0: the object's size), at most the object's size
   * (dataplane/bpf/map-sizes.ts defaultCtEntries); --bpf-map-max lb_ct=N wins
   */
  conntrackMaxPerCore: number;
  /** BPF mode: the fewest flows lb_ct is sized for (--conntrack-min) */
  conntrackMin: number;
  seed: number;
  /** the IPVS scheduler of IPVS mode (ipvs.scheduler; rr by default, mh hashes the source) */
  ipvsScheduler: string;
  /** longest drain of a removed TCP/SCTP real server in IPVS mode before it is deleted anyway */
  ipvsDrainMs: number;
  verbosity: number;
  /** fields of the config file that were ignored, for one warning at start */
  ignored: string[];
}

export const DETECT_LOCAL_MODES = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'] as const;
export type DetectLocalMode = typeof DETECT_LOCAL_MODES[number];

export const DEFAULTS: Omit<AgentSettings, 'nodeName' | 'ignored'> = {
  nodeIPs: [],
  mode: 'auto',
  socketLb: true,
  bpffs: '/sys/fs/bpf/kube-bpf-proxy',
  healthzBindAddress: '0.0.0.0:10256',
  metricsBindAddress: '127.0.0.1:10249',
  nodePortAddresses: [],
  nodePortAddressesDefault: 'all',
  // on by default, as kube-proxy's gate (beta in 1.34, GA in 1.35)
  preferSameTrafficDistribution: true,
  clusterCidrs: [],
  localExternalIpAllow: [],
  masqueradeAll: false,
  minSyncMs: 1000,
  syncPeriodMs: 30_000,
  housekeepingMs: 10_000,
  ctSweepMs: 30_000,
  // kube-proxy's defaults (pkg/proxy/apis/config/v1alpha1/defaults.go)
  conntrackMaxPerCore: CONNTRACK_DEFAULTS.maxPerCore,
  conntrackMin: CONNTRACK_DEFAULTS.min,
  // the same on every node: Maglev picks the same backend for a flow wherever it lands
  seed: 0x6b62_7078,
  ipvsScheduler: 'rr',
  ipvsDrainMs: 15 * 60_000,
  verbosity: 0,
};

/** Parses a Go duration as KubeProxyConfiguration writes them ("30s", "1m0s", "500ms"). */
export function parseDuration(text: unknown, field: string): number {
  if (typeof text === 'number') return text * 1000;
  if (typeof text !== 'string' || !/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) {
    throw new KbpError('KBP_ERR_CONFIG', `${field}: not a duration: ${JSON.stringify(text)}`);
  }
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * unit[m[2]!]!;
  return ms;
}

type Doc = Record<string, any>;

/** Whether a config value says nothing: what kubeadm and `kube-proxy --write-config-to` write for defaults. */
function empty(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '' || v === '0' || v === '0s') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.values(v as object).every(empty);
  return false;
}

/** Pushes the dotted path of every leaf of `v` that sets something, except the `skip` keys. */
function leaves(v: unknown, path: string, out: string[], skip: readonly string[] = []): void {
  if (empty(v)) return;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    out.push(path);
    return;
  }
  for (const [k, x] of Object.entries(v)) if (!skip.includes(k)) leaves(x, `${path}.${k}`, out);
}

function str(c: Doc, k: string): string | undefined {
  return c[k] === undefined || c[k] === null || c[k] === '' ? undefined : String(c[k]);
}

/** kube-proxy's healthz and metrics ports (pkg/cluster/ports: ProxyHealthzPort, ProxyStatusPort) */
export const HEALTHZ_PORT = 10256;
export const METRICS_PORT = 10249;

const API_VERSIONS = ['kubeproxy.config.k8s.io/v1alpha1', 'kubeproxy.config.k8s.io/v1alpha2'];

type FieldType = 'string' | 'bool' | 'int' | 'uint' | 'duration' | 'strings' | 'object' | 'bools';

/**
 * The Go types of the fields read here (KubeProxyConfiguration, v1alpha1 and v1alpha2): a value of
 * another type fails kube-proxy's decoder, lenient or strict, so the file is refused naming it rather
 * than read as unset. null is unset to Go's decoder.
 */
const FIELD_TYPES: Record<string, FieldType> = {
  featureGates: 'bools', clientConnection: 'object', 'clientConnection.kubeconfig': 'string', logging: 'object',
  'logging.verbosity': 'uint', hostnameOverride: 'string', bindAddress: 'string', healthzBindAddress: 'string',
  metricsBindAddress: 'string', bindAddressHardFail: 'bool', mode: 'string', iptables: 'object', ipvs: 'object', nftables: 'object', linux: 'object',
  detectLocalMode: 'string', detectLocal: 'object', 'detectLocal.bridgeInterface': 'string',
  'detectLocal.interfaceNamePrefix': 'string', 'detectLocal.clusterCIDRs': 'strings', clusterCIDR: 'string',
  nodePortAddresses: 'strings', syncPeriod: 'duration', minSyncPeriod: 'duration', conntrack: 'object',
  'linux.conntrack': 'object', 'linux.masqueradeAll': 'bool', 'ipvs.scheduler': 'string',
  ...Object.fromEntries(['iptables', 'ipvs', 'nftables'].flatMap((m) => [
    [`${m}.syncPeriod`, 'duration'], [`${m}.minSyncPeriod`, 'duration'], [`${m}.masqueradeAll`, 'bool']])),
};

function checkTypes(c: Doc, fail: (m: string) => never): void {
  for (const [path, type] of Object.entries(FIELD_TYPES)) {
    let v: unknown = c;
    for (const k of path.split('.')) v = v && typeof v === 'object' && !Array.isArray(v) ? (v as Doc)[k] : undefined;
    if (v === undefined || v === null) continue;
    const ok = type === 'string' ? typeof v === 'string'
      : type === 'bool' ? typeof v === 'boolean'
      : type === 'int' ? Number.isSafeInteger(v)
      : type === 'uint' ? Number.isSafeInteger(v) && (v as number) >= 0
      : type === 'duration' ? typeof v === 'string'
      : type === 'strings' ? Array.isArray(v) && v.every((x) => typeof x === 'string')
      : type === 'bools' ? typeof v === 'object' && !Array.isArray(v)
      : typeof v === 'object' && !Array.isArray(v);
    const want = { string: 'a string', bool: 'true or false', int: 'an integer', uint: 'an integer from 0', duration: 'a duration string such as "30s"',
      strings: 'a list of strings', bools: 'a map of names to true or false', object: 'an object' }[type];
    if (!ok) fail(`${path}: ${JSON.stringify(v)} is not ${want}`);
    if (type === 'bools') {
      for (const [k, x] of Object.entries(v as Doc)) if (typeof x !== 'boolean') fail(`${path}.${k}: ${JSON.stringify(x)} is not true or false`);
    }
  }
}

/**
 * The fields of KubeProxyConfiguration: v1alpha1 as k8s.io/kube-proxy/config/v1alpha1 types.go has
 * them, fields older releases wrote (resourceContainer, udpIdleTimeout: in kubeadm's ConfigMaps of old
 * clusters) and v1alpha2's layout. Sections listed here are checked key by key; the others (logging,
 * winkernel, linux, windows) are taken whole.
 */
const KNOWN_FIELDS: Record<string, readonly string[]> = {
  '': ['apiVersion', 'kind', 'featureGates', 'clientConnection', 'logging', 'hostnameOverride', 'bindAddress', 'healthzBindAddress',
    'metricsBindAddress', 'bindAddressHardFail', 'enableProfiling', 'showHiddenMetricsForVersion', 'mode', 'iptables', 'ipvs',
    'nftables', 'winkernel', 'detectLocalMode', 'detectLocal', 'clusterCIDR', 'nodePortAddresses', 'oomScoreAdj', 'conntrack',
    'configSyncPeriod', 'portRange', 'windowsRunAsService', 'resourceContainer', 'udpIdleTimeout',
    'syncPeriod', 'minSyncPeriod', 'linux', 'windows'],
  clientConnection: ['kubeconfig', 'acceptContentTypes', 'contentType', 'qps', 'burst'],
  iptables: ['masqueradeBit', 'masqueradeAll', 'localhostNodePorts', 'snatNodeInternalIP', 'syncPeriod', 'minSyncPeriod'],
  ipvs: ['syncPeriod', 'minSyncPeriod', 'scheduler', 'excludeCIDRs', 'strictARP', 'tcpTimeout', 'tcpFinTimeout', 'udpTimeout'],
  nftables: ['masqueradeBit', 'masqueradeAll', 'syncPeriod', 'minSyncPeriod'],
  detectLocal: ['bridgeInterface', 'interfaceNamePrefix', 'clusterCIDRs'],
  conntrack: ['maxPerCore', 'min', 'max', 'tcpEstablishedTimeout', 'tcpCloseWaitTimeout', 'tcpBeLiberal', 'udpTimeout', 'udpStreamTimeout'],
};

/** Edit distance, for the field a misspelt one most likely meant. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The fields the configuration does not have, each named with the field it most likely meant. They
 * fail kube-proxy's strict decoding; for v1alpha1 its loadConfig (cmd/kube-proxy/app/options.go) then
 * decodes leniently, dropping them, and logs "Using lenient decoding as strict decoding failed":
 * fromKubeProxyConfiguration does the same and names them in the start's warning, so a misspelt
 * metricsBindAddress is seen. Any other version has no lenient path: refused.
 */
function unknownFields(c: Doc): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  for (const [section, known] of Object.entries(KNOWN_FIELDS)) {
    const obj = section === '' ? c : c[section];
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) continue;
    for (const k of Object.keys(obj as Doc)) {
      if (known.includes(k)) continue;
      const path = section ? `${section}.${k}` : k;
      const best = known.map((x) => ({ x, d: x.toLowerCase() === k.toLowerCase() ? 0 : distance(x.toLowerCase(), k.toLowerCase()) }))
        .sort((p, q) => p.d - q.d)[0];
      const hint = best && best.d <= Math.max(2, Math.floor(k.length / 4)) ? `; did you mean ${section ? `${section}.` : ''}${best.x}?` : '';
      out.push({ path, message: `${path} (unknown field${hint})` });
    }
  }
  return out;
}

/** Top-level fields that are ours to read (the rest are named as ignored when they set anything). */
const READ = new Set(['apiVersion', 'kind', 'featureGates', 'clientConnection', 'logging', 'hostnameOverride', 'bindAddress', 'bindAddressHardFail',
  'healthzBindAddress', 'metricsBindAddress', 'mode', 'iptables', 'ipvs', 'nftables', 'linux', 'detectLocalMode', 'detectLocal',
  'clusterCIDR', 'nodePortAddresses', 'syncPeriod', 'minSyncPeriod', 'conntrack']);

/**
 * Maps a KubeProxyConfiguration document onto settings, as kube-proxy reads it: v1alpha1 (flat
 * clusterCIDR, per-mode iptables/ipvs/nftables syncPeriod and masqueradeAll) and v1alpha2
 * (top-level syncPeriod, linux.masqueradeAll, detectLocal.clusterCIDRs), following
 * pkg/proxy/apis/config/v1alpha1 conversion.go and v1alpha1/defaults.go.
 */
export function fromKubeProxyConfiguration(doc: unknown, file: string): Partial<AgentSettings> & { ignored: string[] } {
  if (!doc || typeof doc !== 'object') throw new KbpError('KBP_ERR_CONFIG', `${file}: not a KubeProxyConfiguration`);
  const c = doc as Doc;
  const fail = (m: string): never => { throw new KbpError('KBP_ERR_CONFIG', `${file}: ${m}`); };
  if (c.kind !== 'KubeProxyConfiguration') {
    fail(`kind ${JSON.stringify(c.kind)} (apiVersion ${JSON.stringify(c.apiVersion)}) is not kubeproxy.config.k8s.io KubeProxyConfiguration`);
  }
  // the versions kube-proxy's scheme registers: any other fails its decoder ("no kind is registered")
  if (!API_VERSIONS.includes(String(c.apiVersion))) fail(`apiVersion ${JSON.stringify(c.apiVersion)} is not one of ${API_VERSIONS.join(', ')}`);
  checkTypes(c, fail);
  const unknown = unknownFields(c);
  if (unknown.length && c.apiVersion !== 'kubeproxy.config.k8s.io/v1alpha1') {
    fail(`${unknown[0]!.message}: ${String(c.apiVersion)} is decoded strictly (kube-proxy's lenient fallback is v1alpha1's alone)`);
  }
  const obj = (k: string): Doc => (c[k] && typeof c[k] === 'object' ? c[k] as Doc : {});
  const out: Partial<AgentSettings> & { ignored: string[] } = { ignored: [] };
  for (const k of Object.keys(c)) if (!READ.has(k)) leaves(c[k], k, out.ignored);

  // kube-proxy's modes map onto ours: iptables has no counterpart, the rest keep their meaning
  const mode = str(c, 'mode') ?? '';
  if (mode === 'ipvs' || mode === 'nftables') out.mode = mode;
  else if (mode === 'iptables') out.ignored.push(`mode: ${mode} (auto is used)`);
  else if (mode) fail(`mode ${JSON.stringify(mode)} is not one of iptables, ipvs, nftables`);

  const gates = obj('featureGates');
  for (const [g, v] of Object.entries(gates)) {
    if (g === 'PreferSameTrafficDistribution' && typeof v === 'boolean') out.preferSameTrafficDistribution = v;
    else out.ignored.push(`featureGates.${g}`);
  }

  const cc = obj('clientConnection');
  if (cc.kubeconfig) out.kubeconfig = String(cc.kubeconfig);
  leaves(cc, 'clientConnection', out.ignored, ['kubeconfig']);
  const logging = obj('logging');
  if (typeof logging.verbosity === 'number') out.verbosity = logging.verbosity;
  leaves(logging, 'logging', out.ignored, ['verbosity']);

  const hostname = str(c, 'hostnameOverride');
  if (hostname) out.nodeName = hostname;
  // bindAddress is the node's primary IP (detectNodeIPs), and picks the family of the default
  // healthz and metrics addresses (v1alpha1 defaults.go): [::] / [::1] when it is IPv6
  const bind = str(c, 'bindAddress');
  if (bind !== undefined) {
    if (!ipFamily(bind)) fail(`bindAddress ${JSON.stringify(bind)} is not an IP address`);
    out.bindAddress = bind;
    if (ipFamily(bind) === 6) {
      out.healthzBindAddress = '[::]:10256';
      out.metricsBindAddress = '[::1]:10249';
    }
  }
  // a bare IP takes the default port (v1alpha1 defaults.go: AppendPortIfNeeded)
  const healthz = str(c, 'healthzBindAddress');
  if (healthz !== undefined) out.healthzBindAddress = appendPortIfNeeded(healthz, HEALTHZ_PORT);
  const metrics = str(c, 'metricsBindAddress');
  if (metrics !== undefined) out.metricsBindAddress = appendPortIfNeeded(metrics, METRICS_PORT);
  if (c.bindAddressHardFail === true) out.bindAddressHardFail = true;
  if (Array.isArray(c.nodePortAddresses)) out.nodePortAddresses = c.nodePortAddresses.map(String);

  // v1alpha1 keeps syncPeriod, minSyncPeriod and masqueradeAll under the mode's section (iptables
  // for every mode but ipvs and nftables: conversion.go); v1alpha2 at the top / under linux
  const section = obj(mode === 'ipvs' ? 'ipvs' : mode === 'nftables' ? 'nftables' : 'iptables');
  const sectionName = mode === 'ipvs' ? 'ipvs' : mode === 'nftables' ? 'nftables' : 'iptables';
  const period = (k: 'syncPeriod' | 'minSyncPeriod'): number | undefined => {
    if (!empty(c[k])) return parseDuration(c[k], k);
    if (!empty(section[k])) return parseDuration(section[k], `${sectionName}.${k}`);
    return undefined;
  };
  const sync = period('syncPeriod');
  if (sync !== undefined) out.syncPeriodMs = sync;
  const minSync = period('minSyncPeriod');
  if (minSync !== undefined) out.minSyncMs = minSync;
  const linux = obj('linux');
  // masqueradeAll: nftables' in nftables mode, iptables' in every other (ipvs included), linux's in v1alpha2
  const masqName = mode === 'nftables' ? 'nftables' : 'iptables';
  if (obj(masqName).masqueradeAll === true || linux.masqueradeAll === true) out.masqueradeAll = true;
  for (const name of ['iptables', 'ipvs', 'nftables']) {
    const skip = [...(name === sectionName ? ['syncPeriod', 'minSyncPeriod'] : []), ...(name === masqName ? ['masqueradeAll'] : [])];
    // the IPVS scheduler is IPVS mode's; the other modes use Maglev whatever it says
    const sec = obj(name);
    if (name === 'ipvs' && typeof sec.scheduler === 'string' && sec.scheduler) out.ipvsScheduler = sec.scheduler;
    leaves(sec, name, out.ignored, [...skip, ...(name === 'ipvs' ? ['scheduler'] : [])]);
  }
  leaves(linux, 'linux', out.ignored, ['masqueradeAll', 'conntrack']);
  // conntrack: v1alpha1 at the top, v1alpha2 under linux. maxPerCore and min size lb_ct (BPF mode);
  // null is kube-proxy's default, 0 per core "leave the limit alone" (server_linux.go getConntrackMax)
  const ctName = c.conntrack !== undefined ? 'conntrack' : 'linux.conntrack';
  const ct = c.conntrack !== undefined ? obj('conntrack') : (linux.conntrack && typeof linux.conntrack === 'object' ? linux.conntrack as Doc : {});
  for (const [k, field] of [['maxPerCore', 'conntrackMaxPerCore'], ['min', 'conntrackMin']] as const) {
    const v = ct[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > 2 ** 31 - 1) fail(`${ctName}.${k} ${JSON.stringify(v)} is not an integer from 0 to ${2 ** 31 - 1}`);
    out[field] = v as number;
  }
  leaves(ct, ctName, out.ignored, ['maxPerCore', 'min']);

  const dlm = str(c, 'detectLocalMode');
  if (dlm !== undefined) {
    if (!(DETECT_LOCAL_MODES as readonly string[]).includes(dlm)) fail(`detectLocalMode ${JSON.stringify(dlm)} is not one of ${DETECT_LOCAL_MODES.join(', ')}`);
    out.detectLocalMode = dlm as DetectLocalMode;
  }
  const dl = obj('detectLocal');
  const detectLocal: NonNullable<AgentSettings['detectLocal']> = {};
  if (dl.bridgeInterface) detectLocal.bridgeInterface = String(dl.bridgeInterface);
  if (dl.interfaceNamePrefix) detectLocal.interfaceNamePrefix = String(dl.interfaceNamePrefix);
  if (Object.keys(detectLocal).length) out.detectLocal = detectLocal;
  leaves(dl, 'detectLocal', out.ignored, ['bridgeInterface', 'interfaceNamePrefix', 'clusterCIDRs']);
  const cidrs = Array.isArray(dl.clusterCIDRs) ? dl.clusterCIDRs.map(String) : str(c, 'clusterCIDR')?.split(',') ?? [];
  const clusterCidrs = cidrs.map((s) => s.trim()).filter(Boolean);
  if (clusterCidrs.length) out.clusterCidrs = clusterCidrs;
  if (unknown.length) {
    // named once, with its hint, where leaves() listed the field (or its leaves) as ignored
    const paths = unknown.map((u) => u.path);
    out.ignored = [...out.ignored.filter((i) => !paths.some((p) => i === p || i.startsWith(`${p}.`))), ...unknown.map((u) => u.message)];
  }
  return out;
}

/** How the data plane tells the cluster's own pods from everyone else (kube-proxy's local detector). */
export interface LocalTrafficDetector {
  /** families with a working detector; empty: upstream's no-op detector */
  families: (4 | 6)[];
  /** ClusterCIDR mode: the first cluster CIDR of each family */
  cidrs: string[];
  /** BridgeInterface mode: what arrives on this bridge (or one of its ports) is local */
  bridgeInterface?: string;
  /** InterfaceNamePrefix mode: what arrives on a device whose name starts so is local */
  interfaceNamePrefix?: string;
  /** NodeCIDR mode: the sources are this node's spec.podCIDRs, known from the Node object (families follow it) */
  fromNode?: boolean;
}

/**
 * kube-proxy's getLocalDetectors (cmd/kube-proxy/app/server_linux.go): detectLocalMode, unset
 * meaning ClusterCIDR (its default), with the first cluster CIDR per family; a mode without what it
 * needs is upstream's no-op detector. NodeCIDR takes the Node's spec.podCIDRs, which the agent
 * follows (compile's detectLocalNodeCidr, the data plane's setLocalSources).
 */
export function localTrafficDetector(s: AgentSettings): LocalTrafficDetector {
  const mode = s.detectLocalMode ?? 'ClusterCIDR';
  if (mode === 'ClusterCIDR') {
    const cidrs: string[] = [];
    const families: (4 | 6)[] = [];
    for (const f of [4, 6] as const) {
      const c = s.clusterCidrs.find((x) => ipFamily(x.slice(0, x.indexOf('/'))) === f);
      if (c) { cidrs.push(c); families.push(f); }
    }
    return { families, cidrs };
  }
  if (mode === 'NodeCIDR') return { families: [], cidrs: [], fromNode: true };
  if (mode === 'BridgeInterface' && s.detectLocal?.bridgeInterface) return { families: [4, 6], cidrs: [], bridgeInterface: s.detectLocal.bridgeInterface };
  if (mode === 'InterfaceNamePrefix' && s.detectLocal?.interfaceNamePrefix) {
    return { families: [4, 6], cidrs: [], interfaceNamePrefix: s.detectLocal.interfaceNamePrefix };
  }
  return { families: [], cidrs: [] };
}

/**
 * Settings we carry but the data plane does not act on: a detectLocalMode missing what it needs
 * (no-op, as upstream warns). masqueradeAll and the other detectors are applied by the BPF and
 * nftables data planes (NodeCIDR by BPF only); launch.ts warns for the modes that do not.
 */
export function notYetEnforced(s: AgentSettings): string[] {
  const out: string[] = [];
  const mode = s.detectLocalMode ?? 'ClusterCIDR';
  const d = localTrafficDetector(s);
  if (!d.fromNode && !d.families.length && (s.detectLocalMode || s.clusterCidrs.length)) {
    out.push(`detectLocalMode (${mode}) without its ${mode === 'ClusterCIDR' ? 'clusterCIDR' : mode === 'BridgeInterface' ? 'detectLocal.bridgeInterface' : 'detectLocal.interfaceNamePrefix'}`);
  }
  return out;
}

/** The one warning at start: what the configuration sets that is not acted on, or undefined. */
export function startupWarning(s: AgentSettings): string | undefined {
  const parts: string[] = [];
  const pending = notYetEnforced(s);
  if (pending.length) parts.push(`accepted, not yet enforced: ${pending.join(', ')}`);
  if (s.ignored.length) parts.push(`ignored (no meaning here): ${s.ignored.join(', ')}`);
  return parts.length ? `KubeProxyConfiguration: ${parts.join('; ')}` : undefined;
}

export async function loadConfigFile(path: string): Promise<Partial<AgentSettings> & { ignored: string[] }> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KbpError('KBP_ERR_CONFIG', `--config ${path}: ${(e as Error).message}`, { cause: e });
  }
  let doc: unknown;
  try {
    // the yaml package only for --config: not loaded (parsed, evaluated) at every agent's start. In
    // the bundle it is a chunk of its own, where a CommonJS package has a default export alone
    const mod = await import('yaml');
    const { parse: parseYaml } = 'parse' in mod ? mod : (mod as unknown as { default: typeof mod }).default;
    doc = parseYaml(text);
  } catch (e) {
    throw new KbpError('KBP_ERR_CONFIG', `--config ${path}: ${(e as Error).message}`, { cause: e });
  }
  return fromKubeProxyConfiguration(doc, path);
}

/** Checks settings as a whole, with messages that name the flag. */
export function validateSettings(s: AgentSettings): AgentSettings {
  const fail = (m: string, cause?: unknown): never => { throw new KbpError('KBP_ERR_CONFIG', m, cause === undefined ? undefined : { cause }); };
  if (!['auto', 'bpf', 'ipvs', 'nftables'].includes(s.mode)) fail(`--mode: ${JSON.stringify(s.mode)} is not one of auto, bpf, ipvs, nftables`);
  if (!(IPVS_SCHEDULERS as readonly string[]).includes(s.ipvsScheduler)) fail(`--ipvs-scheduler (ipvs.scheduler): ${JSON.stringify(s.ipvsScheduler)} is not one of ${IPVS_SCHEDULERS.join(', ')}`);
  if (!s.manifests && s.kubeconfig === undefined && !process.env.KUBERNETES_SERVICE_HOST) {
    fail('no source: give --manifests DIR or --kubeconfig FILE (or run in a cluster)');
  }
  if (!s.nodeName) fail('--node-name: empty');
  try {
    parseBindAddress(s.healthzBindAddress, '--healthz-bind-address');
    parseBindAddress(s.metricsBindAddress, '--metrics-bind-address');
  } catch (e) {
    fail((e as Error).message, e);
  }
  for (const c of s.clusterCidrs) {
    try { parseCidr(c); } catch (e) { fail(`--cluster-cidr: ${(e as Error).message}`, e); }
  }
  for (const c of s.localExternalIpAllow) {
    try { parseCidr(c); } catch (e) { fail(`--local-external-ip-allow: ${(e as Error).message}`, e); }
  }
  try {
    checkNodePortAddresses(s.nodePortAddresses);
  } catch (e) {
    fail((e as Error).message, e);
  }
  if (s.nodePortAddressesDefault !== 'all' && s.nodePortAddressesDefault !== 'primary') {
    fail(`--nodeport-addresses-default: ${JSON.stringify(s.nodePortAddressesDefault)} is not all or primary`);
  }
  if (s.minSyncMs < 0 || s.syncPeriodMs <= 0 || s.minSyncMs > s.syncPeriodMs) fail('minSyncPeriod must be between 0 and syncPeriod');
  if (!(s.housekeepingMs >= 100 && s.housekeepingMs <= 2 ** 31 - 1)) fail(`--housekeeping-interval: must be between 100ms and 596h, got ${s.housekeepingMs} ms`);
  if (!(s.ctSweepMs >= 100 && s.ctSweepMs <= 2 ** 31 - 1)) fail(`--conntrack-sweep-interval: must be between 100ms and 596h, got ${s.ctSweepMs} ms`);
  if (!s.bpffs.startsWith('/')) fail(`--bpffs: ${JSON.stringify(s.bpffs)} is not an absolute path`);
  if (s.bpfObject !== undefined && !s.bpfObject) fail('--bpf-object: empty');
  for (const [name, n] of Object.entries(s.bpfMapMax ?? {})) checkSize(name as SizableMap, n);
  for (const [flag, n] of [['--conntrack-max-per-core', s.conntrackMaxPerCore], ['--conntrack-min', s.conntrackMin]] as const) {
    // kube-proxy's fields are int32 (KubeProxyConntrackConfiguration)
    if (!Number.isSafeInteger(n) || n < 0 || n > 2 ** 31 - 1) fail(`${flag}: must be an integer from 0 to ${2 ** 31 - 1}, got ${n}`);
  }
  return s;
}

export function defaultNodeName(): string {
  return hostname().trim().toLowerCase();
}

/**
 * The node's name as kube-proxy's GetHostname (pkg/util/node) takes it: the --node-name flag, else
 * the config's hostnameOverride, else the host's name; trimmed and lowercased. `run` and `compile`
 * both take it so, so that both compile the same node for the same flag.
 */
export function nodeNameOf(flag: string | undefined, fromConfig?: string): string {
  const name = flag ?? fromConfig;
  return name === undefined ? defaultNodeName() : name.trim().toLowerCase();
}
