// What IPVS cannot do by itself, in one nftables table beside it (as kube-proxy's IPVS mode does with
// ipsets and iptables, here with nft sets from the nftables data plane's helpers): masquerade by mark
// (external eTP=Cluster traffic to a remote backend, hairpin), loadBalancerSourceRanges, refusal of
// a VIP without endpoints or on a port that is not a Service's, and the firewall marks that send
// external traffic of an eTP=Local frontend to its own (fwmark) virtual server with local backends.
// Only elements change after the table is made; a sync sends the element diff in one transaction.
import type { BulkGroup } from '../nftables/native.js';
import { addrType, chain, externalDevicesCommands, FAMILIES, hex, HELPER_SETS, ipk, MASQ_MARK, type Fam } from '../nftables/helpers.js';

export const IPVS_NFT_TABLE = 'kube-bpf-proxy-ipvs';

/** Sets (and the one map) of the table, per family, beyond the helpers' ones. */
export const IPVS_SETS = {
  /** address . proto . port of frontends without backends: refused */
  noEndpoints: (f: Fam) => `no-endpoints${f}`,
  /** the same for external traffic only (an eTP=Local frontend with no local backend) */
  noEndpointsExternal: (f: Fam) => `no-endpoints-external${f}`,
  /** addresses on the dummy device (ClusterIPs, LB IPs, externalIPs) */
  vips: (f: Fam) => `vips${f}`,
  /** address . proto . port of every frontend on those addresses: other ports are refused */
  vipPorts: (f: Fam) => `vip-ports${f}`,
  /** external eTP=Cluster frontends: external traffic to them is marked for masquerade */
  masq: (f: Fam) => `masq-frontends${f}`,
  /** map address . proto . port : firewall mark, for external traffic of eTP=Local frontends */
  fwmarks: (f: Fam) => `fwmarks${f}`,
} as const;

const TUPLE = (f: Fam) => `${addrType(f)} . inet_proto . inet_service`;

/** The whole table, empty (the first sync's transaction deletes any older one and fills this). */
export function tableDeclaration(table: string, masqMark = MASQ_MARK): string {
  const sets: string[] = [
    `set ${HELPER_SETS.externalDevices} { type ifname; }`,
  ];
  for (const f of FAMILIES) {
    const a = addrType(f);
    sets.push(
      `set ${HELPER_SETS.localBackends(f)} { type ${a}; }`,
      `set ${HELPER_SETS.hairpin(f)} { type ${a} . ${a}; }`,
      `set ${HELPER_SETS.firewall(f)} { type ${TUPLE(f)}; }`,
      `set ${HELPER_SETS.firewallAllow(f)} { type ${TUPLE(f)} . ${a}; flags interval; }`,
      `set ${IPVS_SETS.noEndpoints(f)} { type ${TUPLE(f)}; }`,
      `set ${IPVS_SETS.noEndpointsExternal(f)} { type ${TUPLE(f)}; }`,
      `set ${IPVS_SETS.vips(f)} { type ${a}; }`,
      `set ${IPVS_SETS.vipPorts(f)} { type ${TUPLE(f)}; }`,
      `set ${IPVS_SETS.masq(f)} { type ${TUPLE(f)}; }`,
      `map ${IPVS_SETS.fwmarks(f)} { type ${TUPLE(f)} : mark; }`,
    );
  }
  const tuple = (f: Fam) => `${ipk(f)} daddr . meta l4proto . th dport`;
  const firewall = FAMILIES.map((f) => `${tuple(f)} @${HELPER_SETS.firewall(f)} ${tuple(f)} . ${ipk(f)} saddr != @${HELPER_SETS.firewallAllow(f)} drop`);
  const chains = [
    // a refusal at once, as kube-proxy: TCP reset, ICMP port unreachable
    chain('no-endpoints', ['meta l4proto tcp reject with tcp reset', 'reject with icmpx port-unreachable']),
    // before IPVS sees the packet (it hooks LOCAL_IN at priority 98): source ranges, then the marks
    chain('filter-prerouting', [
      ...firewall,
      ...FAMILIES.flatMap((f) => [
        // the whole mark, on a flow's first packet only: IPVS matches a firewall-mark virtual server
        // on skb->mark exactly (__ip_vs_svc_fwm_find: svc->fwmark == fwmark), so a masked value
        // would miss whenever another bit is set; and IPVS looks a service up only for a new
        // connection (later packets find its connection entry by tuple), so every later packet of
        // the flow keeps the bits a CNI set
        `ct state new iifname @${HELPER_SETS.externalDevices} meta mark set ${tuple(f)} map @${IPVS_SETS.fwmarks(f)}`,
        `iifname @${HELPER_SETS.externalDevices} ${tuple(f)} @${IPVS_SETS.masq(f)} meta mark set meta mark | ${hex(masqMark)}`,
      ]),
    ], 'type filter hook prerouting priority dstnat - 10; policy accept;'),
    chain('filter-output', firewall, 'type filter hook output priority -110; policy accept;'),
    // new flows to a frontend without endpoints, or to a VIP on a port no Service has
    chain('filter-input', [
      ...FAMILIES.flatMap((f) => [
        `ct state new ${tuple(f)} @${IPVS_SETS.noEndpoints(f)} goto no-endpoints`,
        `ct state new iifname @${HELPER_SETS.externalDevices} ${tuple(f)} @${IPVS_SETS.noEndpointsExternal(f)} goto no-endpoints`,
        `ct state new ${ipk(f)} daddr @${IPVS_SETS.vips(f)} meta l4proto { tcp, udp, sctp } ${tuple(f)} != @${IPVS_SETS.vipPorts(f)} goto no-endpoints`,
      ]),
    ], 'type filter hook input priority filter; policy accept;'),
    chain('masquerade-remote', [
      `meta mark set meta mark & ${hex(~masqMark)}`,
      ...FAMILIES.map((f) => `${ipk(f)} daddr @${HELPER_SETS.localBackends(f)} return`),
      'masquerade fully-random',
    ]),
    // IPVS rewrites the destination without conntrack's NAT status (net.ipv4.vs.conntrack keeps the
    // entry), so neither rule can ask `ct status dnat` as the nftables data plane's do
    chain('nat-postrouting', [
      `meta mark & ${hex(masqMark)} == ${hex(masqMark)} jump masquerade-remote`,
      ...FAMILIES.map((f) => `${ipk(f)} saddr . ${ipk(f)} daddr @${HELPER_SETS.hairpin(f)} masquerade fully-random`),
    ], 'type nat hook postrouting priority srcnat; policy accept;'),
  ];
  return `table inet ${table} {\n${[...sets, ...chains].map((x) => `  ${x}`).join('\n')}\n}\n`;
}

/** Elements by set name; a map's elements are "key : value". */
export type Elements = Map<string, Set<string>>;

/** The commands that turn `have` into `want` (adds and deletes per set); '' when equal. */
export function elementDiff(table: string, have: Elements, want: Elements): string {
  let out = '';
  const names = new Set([...have.keys(), ...want.keys()]);
  for (const name of [...names].sort()) {
    const h = have.get(name) ?? new Set<string>(), w = want.get(name) ?? new Set<string>();
    const del = [...h].filter((e) => !w.has(e)), add = [...w].filter((e) => !h.has(e));
    // a map element's value changes by delete + add; delete names the key only
    if (del.length) out += `delete element inet ${table} ${name} { ${del.map((e) => e.split(' : ')[0]).join(', ')} }\n`;
    if (add.length) out += `add element inet ${table} ${name} { ${add.join(', ')} }\n`;
  }
  return out;
}

const TYPE_RE = /(?:map|set) (\S+) \{ type ([^;:]+?)(?: : ([^;]+))?;(?: flags ([^;]+);)?/g;

/** Element types of the table's sets and maps by name (what the addon's bulk encoder needs). */
export function elementTypes(table: string): Map<string, { keyType: string; dataType: string; interval: boolean }> {
  const out = new Map<string, { keyType: string; dataType: string; interval: boolean }>();
  for (const m of tableDeclaration(table).matchAll(TYPE_RE)) out.set(m[1]!, { keyType: m[2]!.trim(), dataType: (m[3] ?? '').trim(), interval: /\binterval\b/.test(m[4] ?? '') });
  return out;
}

/**
 * The same change as elementDiff(), as groups for the addon's bulk encoder (one nf_tables
 * transaction without a libnftables context: under the VM's emulation a context's creation and
 * cache fetch were ~50 ms of a one-change sync). Deletes first: a map value changes by delete + add.
 */
export function elementDiffGroups(types: ReturnType<typeof elementTypes>, have: Elements, want: Elements): BulkGroup[] {
  const dels: BulkGroup[] = [], adds: BulkGroup[] = [];
  const names = new Set([...have.keys(), ...want.keys()]);
  for (const name of [...names].sort()) {
    const t = types.get(name);
    if (!t) throw new Error(`IPVS nft table: no declaration for set ${name}`);
    const h = have.get(name) ?? new Set<string>(), w = want.get(name) ?? new Set<string>();
    const del = [...h].filter((e) => !w.has(e)), add = [...w].filter((e) => !h.has(e));
    if (del.length) dels.push({ del: true, set: name, ...t, elems: del.map((e) => e.split(' : ')[0]).join('\n') });
    if (add.length) adds.push({ del: false, set: name, ...t, elems: add.join('\n') });
  }
  return [...dels, ...adds];
}

/** All elements in one transaction: the table replaced (a restart rewrites it atomically). */
export function fullTable(table: string, want: Elements, devices: string[], exists: boolean): string {
  return `${exists ? `delete table inet ${table}\n` : ''}${tableDeclaration(table)}${elementDiff(table, new Map(), want)}${externalDevicesCommands(table, devices)}`;
}
