// Agent settings: defaults, then a kube-proxy KubeProxyConfiguration file (--config), then flags.
// Fields of KubeProxyConfiguration that mean nothing here are reported once, never silently dropped.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { KbpError } from '../util/errors.js';
import { parseCidr } from '../util/ip.js';
import { parseBindAddress } from './health.js';

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
  healthzBindAddress: string;
  metricsBindAddress: string;
  nodePortAddresses: string[];
  clusterCidrs: string[];
  externalIPCidrs?: string[];
  minSyncMs: number;
  syncPeriodMs: number;
  /** device rescan and counter refresh; link events cover new devices in between */
  housekeepingMs: number;
  seed: number;
  verbosity: number;
  /** fields of the config file that were ignored, for one warning at start */
  ignored: string[];
}

export const DEFAULTS: Omit<AgentSettings, 'nodeName' | 'ignored'> = {
  nodeIPs: [],
  mode: 'auto',
  socketLb: true,
  bpffs: '/sys/fs/bpf/kube-bpf-proxy',
  healthzBindAddress: '0.0.0.0:10256',
  metricsBindAddress: '127.0.0.1:10249',
  nodePortAddresses: [],
  clusterCidrs: [],
  minSyncMs: 1000,
  syncPeriodMs: 30_000,
  housekeepingMs: 10_000,
  // the same on every node: Maglev picks the same backend for a flow wherever it lands
  seed: 0x6b62_7078,
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

const APPLIED = new Set(['apiVersion', 'kind', 'bindAddress', 'healthzBindAddress', 'metricsBindAddress', 'clusterCIDR',
  'hostnameOverride', 'nodePortAddresses', 'syncPeriod', 'minSyncPeriod', 'mode', 'clientConnection', 'iptables', 'ipvs',
  'nftables', 'logging', 'detectLocalMode', 'detectLocal']);

/** Maps a KubeProxyConfiguration document onto settings. */
export function fromKubeProxyConfiguration(doc: unknown, file: string): Partial<AgentSettings> & { ignored: string[] } {
  if (!doc || typeof doc !== 'object') throw new KbpError('KBP_ERR_CONFIG', `${file}: not a KubeProxyConfiguration`);
  const c = doc as Record<string, any>;
  if (c.kind !== 'KubeProxyConfiguration' || !String(c.apiVersion ?? '').startsWith('kubeproxy.config.k8s.io/')) {
    throw new KbpError('KBP_ERR_CONFIG', `${file}: kind ${c.kind}/${c.apiVersion} is not kubeproxy.config.k8s.io KubeProxyConfiguration`);
  }
  const out: Partial<AgentSettings> & { ignored: string[] } = { ignored: [] };
  for (const k of Object.keys(c)) if (!APPLIED.has(k)) out.ignored.push(k);
  if (c.healthzBindAddress !== undefined) out.healthzBindAddress = String(c.healthzBindAddress);
  if (c.metricsBindAddress !== undefined) out.metricsBindAddress = String(c.metricsBindAddress);
  if (c.hostnameOverride) out.nodeName = String(c.hostnameOverride);
  if (c.clusterCIDR) out.clusterCidrs = String(c.clusterCIDR).split(',').map((s) => s.trim()).filter(Boolean);
  if (Array.isArray(c.nodePortAddresses)) out.nodePortAddresses = c.nodePortAddresses.map(String);
  if (c.syncPeriod !== undefined) out.syncPeriodMs = parseDuration(c.syncPeriod, 'syncPeriod');
  if (c.minSyncPeriod !== undefined) out.minSyncMs = parseDuration(c.minSyncPeriod, 'minSyncPeriod');
  if (c.clientConnection?.kubeconfig) out.kubeconfig = String(c.clientConnection.kubeconfig);
  if (typeof c.logging?.verbosity === 'number') out.verbosity = c.logging.verbosity;
  // kube-proxy's modes map onto ours: iptables has no counterpart, the rest keep their meaning
  if (c.mode) {
    const m = String(c.mode);
    if (m === 'ipvs' || m === 'nftables') out.mode = m;
    else if (m === 'iptables' || m === '') out.ignored.push(`mode: ${m} (auto is used)`);
    else throw new KbpError('KBP_ERR_CONFIG', `${file}: mode ${JSON.stringify(m)} is not one of iptables, ipvs, nftables`);
  }
  if (c.ipvs?.scheduler && c.ipvs.scheduler !== 'mh') out.ignored.push(`ipvs.scheduler: ${c.ipvs.scheduler} (Maglev is used)`);
  return out;
}

export function loadConfigFile(path: string): Partial<AgentSettings> & { ignored: string[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KbpError('KBP_ERR_CONFIG', `--config ${path}: ${(e as Error).message}`, { cause: e });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new KbpError('KBP_ERR_CONFIG', `--config ${path}: ${(e as Error).message}`, { cause: e });
  }
  return fromKubeProxyConfiguration(doc, path);
}

/** Checks settings as a whole, with messages that name the flag. */
export function validateSettings(s: AgentSettings): AgentSettings {
  const fail = (m: string): never => { throw new KbpError('KBP_ERR_CONFIG', m); };
  if (!['auto', 'bpf', 'ipvs', 'nftables'].includes(s.mode)) fail(`--mode: ${JSON.stringify(s.mode)} is not one of auto, bpf, ipvs, nftables`);
  if (!s.manifests && s.kubeconfig === undefined && !process.env.KUBERNETES_SERVICE_HOST) {
    fail('no source: give --manifests DIR or --kubeconfig FILE (or run in a cluster)');
  }
  if (!s.nodeName) fail('--node-name: empty');
  try {
    parseBindAddress(s.healthzBindAddress, '--healthz-bind-address');
    parseBindAddress(s.metricsBindAddress, '--metrics-bind-address');
  } catch (e) {
    fail((e as Error).message);
  }
  for (const c of s.clusterCidrs) {
    try { parseCidr(c); } catch (e) { fail(`--cluster-cidr: ${(e as Error).message}`); }
  }
  for (const c of s.nodePortAddresses) {
    if (c === 'primary') continue;
    try { parseCidr(c); } catch (e) { fail(`--nodeport-addresses: ${(e as Error).message}`); }
  }
  if (s.minSyncMs < 0 || s.syncPeriodMs <= 0 || s.minSyncMs > s.syncPeriodMs) fail('minSyncPeriod must be between 0 and syncPeriod');
  if (!(s.housekeepingMs >= 100 && s.housekeepingMs <= 2 ** 31 - 1)) fail(`--housekeeping-interval: must be between 100ms and 596h, got ${s.housekeepingMs} ms`);
  if (!s.bpffs.startsWith('/')) fail(`--bpffs: ${JSON.stringify(s.bpffs)} is not an absolute path`);
  return s;
}

export function defaultNodeName(): string {
  return hostname().toLowerCase();
}
