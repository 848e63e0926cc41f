// The parts of the nftables table that do not choose a backend: the base chains and the fixed sets
// that masquerade (flows the dispatch chains marked, hairpin), filter by
// loadBalancerSourceRanges, and tell external devices apart. The nftables data plane builds its DNAT
// maps on top of them (ruleset.ts); an IPVS data plane, which cannot masquerade, filter or refuse by
// itself, is meant to reuse them as they are, filling the same sets from the same plan.
//
// Every name here is fixed: the sets are created once, with the table, and only their elements change.
import { familyOfValid } from '../../util/ip.js';

/** The table of the nftables data plane (inet: one table, one transaction, both families). */
export const NFT_TABLE = 'kube-bpf-proxy-nft';
/** Packet mark bits asking for masquerade: the BPF data plane's value (bpf/lb_consts.h LB_SNAT_MARK_DEFAULT). */
export const MASQ_MARK = 0x4b500000;

export type Fam = 4 | 6;
export const FAMILIES: readonly Fam[] = [4, 6];

export function ipk(f: Fam): 'ip' | 'ip6' {
  return f === 4 ? 'ip' : 'ip6';
}

export function addrType(f: Fam): string {
  return f === 4 ? 'ipv4_addr' : 'ipv6_addr';
}

export function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

/** Names of the helper sets, per family. */
export const HELPER_SETS = {
  /** devices whose incoming traffic is "external" (NodePort / LB / externalIP traffic): type ifname */
  externalDevices: 'external-devices',
  /** addresses of backends on this node (the IPVS mode's table: its masquerade spares them) */
  localBackends: (f: Fam) => `local-backends${f}`,
  /** (a . a) for each local backend a: a pod balanced to itself is masqueraded */
  hairpin: (f: Fam) => `hairpin${f}`,
  /** frontends (address . proto . port) with loadBalancerSourceRanges */
  firewall: (f: Fam) => `firewall${f}`,
  /** (frontend . allowed source range), interval set */
  firewallAllow: (f: Fam) => `firewall-allow${f}`,
  /** one element, the transaction counter: tells whether the state file describes this table */
  generation: 'generation',
} as const;

/**
 * kube-proxy's local-traffic detector (cmd/kube-proxy/app/server_linux.go getLocalDetectors; config.ts
 * localTrafficDetector builds it): what tells the cluster's own pods from everyone else.
 */
export interface LocalDetector {
  /** ClusterCIDR (NodeCIDR) mode: the first CIDR of each family */
  cidrs: string[];
  bridgeInterface?: string;
  interfaceNamePrefix?: string;
}

const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;

/**
 * The match for "not from the cluster's pods" in family f (pkg/proxy/util/localdetector.go
 * IfNotLocalNFT: `ip saddr != CIDR`, `iifname != BRIDGE`, `iifname != PREFIX*`), or undefined when
 * the detector does not work in that family (upstream's no-op detector: nothing is marked).
 */
export function notLocalMatch(d: LocalDetector | undefined, f: Fam): string | undefined {
  if (!d) return undefined;
  const cidr = d.cidrs.find((c) => familyOfValid(c) === f);
  if (cidr) return `${ipk(f)} saddr != ${cidr}`;
  for (const [what, name, suffix] of [['detectLocal.bridgeInterface', d.bridgeInterface, ''], ['detectLocal.interfaceNamePrefix', d.interfaceNamePrefix, '*']] as const) {
    if (name === undefined) continue;
    if (!IFNAME.test(name)) throw new Error(`${what} ${JSON.stringify(name)} is not a device name (1-15 of A-Z a-z 0-9 _ . : @ + -)`);
    return `iifname != "${name}${suffix}"`;
  }
  return undefined;
}

/**
 * The helper part of the table's declaration: base chains for filtering and masquerade, the fixed
 * sets, and the refusal chain. `natPrerouting` / `natOutput` are the rules the DNAT part puts in
 * its base chains (dispatch); an IPVS user would leave them empty.
 */
export function helperDeclarations(opts: { masqMark?: number } = {}): string[] {
  const mark = opts.masqMark ?? MASQ_MARK;
  const out: string[] = [];
  out.push(`set ${HELPER_SETS.externalDevices} { type ifname; }`);
  out.push(`set ${HELPER_SETS.generation} { type mark; }`);
  for (const f of FAMILIES) {
    const a = addrType(f);
    out.push(`set ${HELPER_SETS.hairpin(f)} { type ${a} . ${a}; }`);
    out.push(`set ${HELPER_SETS.firewall(f)} { type ${a} . inet_proto . inet_service; }`);
    out.push(`set ${HELPER_SETS.firewallAllow(f)} { type ${a} . inet_proto . inet_service . ${a}; flags interval; }`);
  }
  // a frontend without endpoints refuses at once (TCP reset, ICMP port unreachable), as kube-proxy
  // does: a client must not wait for a timeout. Reached by goto from the dispatch maps.
  out.push(chain('no-endpoints', ['meta l4proto tcp reject with tcp reset', 'reject with icmpx port-unreachable']));
  // source ranges: every packet, before DNAT (kube-proxy's firewall-check at dstnat - 10)
  const fw = FAMILIES.map((f) => `${ipk(f)} daddr . meta l4proto . th dport @${HELPER_SETS.firewall(f)} ` +
    `${ipk(f)} daddr . meta l4proto . th dport . ${ipk(f)} saddr != @${HELPER_SETS.firewallAllow(f)} drop`);
  out.push(chain('filter-prerouting', fw, 'type filter hook prerouting priority dstnat - 10; policy accept;'));
  // the output hook takes no symbolic priority in nft 1.0.6: dstnat is -100
  out.push(chain('filter-output', fw, 'type filter hook output priority -110; policy accept;'));
  // masquerade as kube-proxy's nftables mode: the dispatch chains mark a flow (its
  // mark-for-masquerade: masqueradeAll, the local detector, eTP=Cluster external addresses; ruleset.ts),
  // and postrouting masquerades what is marked (its masquerading chain, setupNFTables), clearing the mark
  out.push(chain('masquerading', [
    `meta mark set meta mark & ${hex(~mark)}`,
    'masquerade fully-random',
  ]));
  out.push(chain('nat-postrouting', [
    `meta mark & ${hex(mark)} == ${hex(mark)} ct status dnat jump masquerading`,
    // hairpin: a pod balanced to itself (kube-proxy's endpoint chain: ip saddr <ep> jump mark-for-masquerade)
    ...FAMILIES.map((f) => `ct status dnat ${ipk(f)} saddr . ${ipk(f)} daddr @${HELPER_SETS.hairpin(f)} masquerade fully-random`),
  ], 'type nat hook postrouting priority srcnat; policy accept;'));
  return out;
}

export function chain(name: string, rules: string[], base?: string): string {
  return `chain ${name} {\n${base ? `    ${base}\n` : ''}${rules.map((r) => `    ${r}\n`).join('')}  }`;
}

/** Element text of the helper sets for one local backend address. */
export function localBackendElements(address: string): Array<[set: string, element: string]> {
  const f: Fam = familyOfValid(address);
  return [[HELPER_SETS.localBackends(f), address], [HELPER_SETS.hairpin(f), `${address} . ${address}`]];
}

/** Element text of the firewall sets for a frontend tuple and its ranges. */
export function firewallElements(f: Fam, tuple: string, ranges: string[]): Array<[set: string, element: string]> {
  if (!ranges.length) return [];
  return [[HELPER_SETS.firewall(f), tuple], ...ranges.map((r): [string, string] => [HELPER_SETS.firewallAllow(f), `${tuple} . ${r}`])];
}

/** Replaces the elements of the external-devices set (one transaction). */
export function externalDevicesCommands(table: string, devices: string[]): string {
  const names = [...new Set(devices)].sort();
  return `flush set inet ${table} ${HELPER_SETS.externalDevices}\n` +
    (names.length ? `add element inet ${table} ${HELPER_SETS.externalDevices} { ${names.map((d) => JSON.stringify(d)).join(', ')} }\n` : '');
}
