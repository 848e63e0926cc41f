// kube-proxy's iptables mode as the benchmark baseline: the `iptables-restore --noflush` input its
// syncProxyRules() writes (kubernetes pkg/proxy/iptables/proxier.go), for the same Services we put in
// our maps. Structure kept: the filter and nat top-level chains, KUBE-SERVICES -> KUBE-SVC-<hash> with
// `-m statistic --mode random --probability 1/(n-i)` -> KUBE-SEP-<hash> (masquerade hairpin, DNAT),
// KUBE-MARK-MASQ, KUBE-POSTROUTING, KUBE-NODEPORTS -> KUBE-EXT-<hash>, the "last rule" jump to
// KUBE-NODEPORTS, and chain names from sha256 + base32 as kube-proxy computes them. Large-cluster
// mode (more than 1000 endpoints) drops the per-endpoint comments as kube-proxy does.
//
// A partial sync (kube-proxy >= 1.27, MinimizeIPTablesRestore) rewrites the top-level chains in full
// (KUBE-SERVICES holds one rule per Service port, so it scales with N) and only the SVC/SEP/EXT chains
// of the Services that changed; that is what partial: set of changed Service names produces.
import { createHash } from 'node:crypto';
import { base32, type KpServicePort } from './services.js';

export interface IptablesOptions {
  /** kube-proxy --cluster-cidr: traffic from outside it to a ClusterIP is masqueraded */
  clusterCidr: string;
  /** 0x4000, kube-proxy's default --iptables-masquerade-bit 14 */
  masqueradeMark?: string;
  /** Service names (namespace/name) whose chains a partial sync writes; undefined = full sync */
  partial?: ReadonlySet<string>;
  /**
   * Also write the built-in chains' jumps (PREROUTING/OUTPUT -> KUBE-SERVICES ...), for a plain
   * (flushing) restore into an empty namespace: the state kube-proxy's first sync leaves, loaded in
   * one step. kube-proxy itself adds them with single iptables calls and restores with --noflush.
   */
  withJumps?: boolean;
}

/** kube-proxy's largeClusterEndpointsThreshold */
const LARGE_CLUSTER_ENDPOINTS = 1000;

function hash16(s: string): string {
  return base32(createHash('sha256').update(s).digest()).slice(0, 16);
}

export function svcChain(sp: KpServicePort): string {
  return `KUBE-SVC-${hash16(sp.name + sp.protocol.toLowerCase())}`;
}

export function extChain(sp: KpServicePort): string {
  return `KUBE-EXT-${hash16(sp.name + sp.protocol.toLowerCase())}`;
}

export function sepChain(sp: KpServicePort, ep: { ip: string; port: number }): string {
  return `KUBE-SEP-${hash16(sp.name + sp.protocol.toLowerCase() + `${ep.ip}:${ep.port}`)}`;
}

/** Go's fmt "%0.10f" of 1/n, as proxier.probability() prints it */
function probability(n: number): string {
  return (1 / n).toFixed(10);
}

const chainLine = (c: string) => `:${c} - [0:0]`;

/** The built-in chains' jumps kube-proxy (and kubelet, for KUBE-FIREWALL) ensure, in rule form (no -A/-I). */
const FILTER_JUMPS = [
  'INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
  'INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
  'INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
  'INPUT -j KUBE-FIREWALL',
  'FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
  'FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
  'FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  'FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
  'OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
  'OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  'OUTPUT -j KUBE-FIREWALL',
];
const NAT_JUMPS = [
  'OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  'PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  'POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
];

/**
 * The jump rules kube-proxy ensures with single iptables calls before its first restore (and never
 * again while they exist), in iptables-restore form (-I into the built-in chains, kept by --noflush).
 * Apply to an empty namespace only: the chain lines flush the KUBE-* top-level chains.
 */
export function iptablesJumpRules(): string {
  return [
    '*filter',
    ...['KUBE-EXTERNAL-SERVICES', 'KUBE-NODEPORTS', 'KUBE-SERVICES', 'KUBE-FORWARD', 'KUBE-PROXY-FIREWALL', 'KUBE-FIREWALL'].map(chainLine),
    ...FILTER_JUMPS.map((r) => `-I ${r}`),
    'COMMIT',
    '*nat',
    ...['KUBE-SERVICES', 'KUBE-POSTROUTING'].map(chainLine),
    ...NAT_JUMPS.map((r) => `-I ${r}`),
    'COMMIT',
    '',
  ].join('\n');
}

export interface IptablesRuleset {
  text: string;
  /** rules written (filter + nat), as kube-proxy's sync_proxy_rules_iptables_last metric counts them */
  rules: number;
  chains: number;
}

/** The iptables-restore input of one kube-proxy sync (full, or partial for opts.partial). */
export function iptablesRestore(ports: readonly KpServicePort[], opts: IptablesOptions): IptablesRuleset {
  const mark = opts.masqueradeMark ?? '0x4000';
  const filterChains: string[] = [], filterRules: string[] = [], natChains: string[] = [], natRules: string[] = [];
  for (const c of ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL']) filterChains.push(chainLine(c));
  for (const c of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ']) natChains.push(chainLine(c));
  natRules.push(
    `-A KUBE-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${mark}`,
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${mark}`,
  );
  filterChains.push(chainLine('KUBE-FIREWALL'));
  filterRules.push('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP');

  const totalEndpoints = ports.reduce((s, p) => s + p.endpoints.length, 0);
  const large = totalEndpoints > LARGE_CLUSTER_ENDPOINTS;
  const comment = (c: string) => (large ? '' : ` -m comment --comment ${c.includes(' ') ? `"${c}"` : c}`);

  for (const sp of ports) {
    const proto = sp.protocol.toLowerCase();
    const svc = svcChain(sp), ext = extChain(sp);
    const has = sp.endpoints.length > 0;
    const match = `-m ${proto} -p ${proto} -d ${sp.clusterIP} --dport ${sp.port}`;
    if (has) {
      natRules.push(`-A KUBE-SERVICES -m comment --comment "${sp.name} cluster IP" ${match} -j ${svc}`);
    } else {
      filterRules.push(`-A KUBE-SERVICES -m comment --comment "${sp.name} has no endpoints" ${match} -j REJECT`);
    }
    if (sp.nodePort) {
      if (has) natRules.push(`-A KUBE-NODEPORTS -m comment --comment ${sp.name} -m ${proto} -p ${proto} --dport ${sp.nodePort} -j ${ext}`);
      else filterRules.push(`-A KUBE-EXTERNAL-SERVICES -m comment --comment "${sp.name} has no endpoints" -m addrtype --dst-type LOCAL -m ${proto} -p ${proto} --dport ${sp.nodePort} -j REJECT`);
    }
    // unchanged Services' chains are left out of a partial restore (kube-proxy's skippedNatChains)
    if (opts.partial && !opts.partial.has(sp.service)) continue;
    if (!has) continue;
    natChains.push(chainLine(svc));
    natRules.push(`-A ${svc} -m comment --comment "${sp.name} cluster IP" ${match} ! -s ${opts.clusterCidr} -j KUBE-MARK-MASQ`);
    if (sp.nodePort) {
      natChains.push(chainLine(ext));
      natRules.push(`-A ${ext} -m comment --comment "masquerade traffic for ${sp.name} external destinations" -j KUBE-MARK-MASQ`, `-A ${ext} -j ${svc}`);
    }
    const n = sp.endpoints.length;
    sp.endpoints.forEach((ep, i) => {
      const stat = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
      natRules.push(`-A ${svc}${comment(`${sp.name} -> ${ep.ip}:${ep.port}`)}${stat} -j ${sepChain(sp, ep)}`);
    });
    for (const ep of sp.endpoints) {
      const sep = sepChain(sp, ep);
      natChains.push(chainLine(sep));
      natRules.push(`-A ${sep}${comment(sp.name)} -s ${ep.ip} -j KUBE-MARK-MASQ`);
      natRules.push(`-A ${sep}${comment(sp.name)} -m ${proto} -p ${proto} -j DNAT --to-destination ${ep.ip}:${ep.port}`);
    }
  }
  natRules.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  filterRules.push(
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`,
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );
  if (opts.withJumps) {
    filterRules.push(...FILTER_JUMPS.map((r) => `-A ${r}`));
    natRules.push(...NAT_JUMPS.map((r) => `-A ${r}`));
  }
  const text = ['*filter', ...filterChains, ...filterRules, 'COMMIT', '*nat', ...natChains, ...natRules, 'COMMIT', ''].join('\n');
  return { text, rules: filterRules.length + natRules.length, chains: filterChains.length + natChains.length };
}
