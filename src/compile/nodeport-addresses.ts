// Which of this node's addresses its NodePorts answer on, per family: kube-proxy's
// --nodeport-addresses / nodePortAddresses (CIDRs and the keywords 'primary', 'localhost', 'all'),
// and what an unset value means. Mirrors kubernetes pkg/proxy/util/nodeport_addresses.go
// (NewNodePortAddresses, GetNodeIPs) and cmd/kube-proxy/app/server.go (detectNodeIPs and the
// expansion of 'primary'), with one difference in kind: the candidates are the addresses the Node
// object and the operator name (--node-ip), not the host's interfaces.
//
// Unset: kube-proxy's iptables and ipvs modes answer on every local address, its nftables mode on
// the primary addresses only. We default to every address (nodePortAddressesDefault 'all'),
// because iptables is still kube-proxy's default mode on Linux (server_linux.go
// platformApplyDefaults): a cluster replacing a default kube-proxy had NodePorts on every address,
// and 'primary' would silently close the others. nodePortAddressesDefault 'primary' gives
// nftables' behaviour.
import type { NodeModel } from '../model/types.js';
import { canonicalIp, cidrContains, ipFamily, parseCidr, type Cidr, type Family } from '../util/ip.js';
import { configError, type CompileOptions } from './options.js';

/** The keywords the current KubeProxyConfiguration defines for nodePortAddresses. */
export const NODE_PORT_KEYWORDS = ['primary', 'localhost', 'all'] as const;

const ANY: Record<Family, string> = { 4: '0.0.0.0', 6: '::' };
// parseCidr's results for 0.0.0.0/0 and ::/0, 127.0.0.0/8 and ::1/128 (a unit test holds them
// together): parsing '::' at import ran node's first isIPv6, which compiles its regular expression
// (5-10 ms of the main thread before the LIST at every start) and which an IPv4 cluster never needs
export const ZERO: Readonly<Record<Family, Cidr>> = { 4: { address: '0.0.0.0', prefix: 0, family: 4 }, 6: { address: '::', prefix: 0, family: 6 } };
export const LOOPBACK: Readonly<Record<Family, Cidr>> = { 4: { address: '127.0.0.0', prefix: 8, family: 4 }, 6: { address: '::1', prefix: 128, family: 6 } };

function isLoopback(ip: string): boolean {
  return cidrContains(LOOPBACK[ipFamily(ip) as Family], ip);
}

type Opts = Pick<CompileOptions, 'nodeIPs' | 'nodePortAddresses' | 'nodePortAddressesDefault' | 'bindAddress'>;

/**
 * The node's primary IP per family, as kube-proxy's detectNodeIPs: the Node's first InternalIP of
 * the family, else its first ExternalIP of it (utilnode.GetNodeHostIPs), overridden for its
 * family by bindAddress when that is set and not 0.0.0.0 / ::; we also fall back to the first
 * --node-ip of the family when the Node object has none. Loopback counts as none.
 */
export function primaryNodeIPs(node: NodeModel | undefined, opts: Opts): Map<Family, string> {
  const out = new Map<Family, string>();
  const bind = opts.bindAddress?.trim();
  const bindIP = bind && ipFamily(bind) ? canonicalIp(bind) : undefined;
  for (const f of [4, 6] as const) {
    const of = (l: readonly string[] | undefined): string | undefined => l?.find((a) => ipFamily(a) === f);
    let ip = bindIP && ipFamily(bindIP) === f && bindIP !== ANY[f] ? bindIP : undefined;
    ip ??= of(node?.internalIPs) ?? of(node?.externalIPs) ?? of((opts.nodeIPs ?? []).filter((a) => ipFamily(a)).map(canonicalIp));
    // kube-proxy expands 'primary' only to a node IP that is not loopback
    if (ip && !isLoopback(ip)) out.set(f, ip);
  }
  return out;
}

/**
 * The CIDRs a nodePortAddresses list stands for, keywords expanded (server.go; NewNodePortAddresses).
 * Throws KBP_ERR_CONFIG on an entry that is neither a CIDR nor a keyword.
 */
function expand(sel: readonly string[], primary: Map<Family, string>): Cidr[] {
  const out: Cidr[] = [];
  for (const s of sel) {
    if (s === 'all') out.push(ZERO[4], ZERO[6]);
    else if (s === 'localhost') out.push(LOOPBACK[4], LOOPBACK[6]);
    else if (s === 'primary') {
      for (const ip of primary.values()) out.push(parseCidr(ip));
    } else {
      if (!s.includes('/')) throw configError(`--nodeport-addresses: ${JSON.stringify(s)} is not a CIDR or one of ${NODE_PORT_KEYWORDS.join(', ')}`);
      try {
        out.push(parseCidr(s));
      } catch (e) {
        throw configError(`--nodeport-addresses: ${(e as Error).message}`);
      }
    }
  }
  return out;
}

/** Checks a nodePortAddresses list as the operator gave it; throws KBP_ERR_CONFIG naming the bad entry. */
export function checkNodePortAddresses(sel: readonly string[]): void {
  expand(sel.map((s) => s.trim()).filter(Boolean), new Map());
}

/**
 * family -> the addresses NodePorts answer on ('0.0.0.0' / '::' for any). Throws KBP_ERR_CONFIG on a
 * bad node IP or nodePortAddresses entry, whatever the node.
 *
 * Per family, as NewNodePortAddresses: a family none of whose CIDRs was given falls back to all of
 * its addresses (kube-proxy adds the zero CIDR); where kube-proxy would match every local address
 * implicitly (that fallback, or an unset value under 'all'), we answer on the node's known
 * addresses of the family, or on any address when none is known; an explicit zero CIDR (or 'all')
 * answers on any address. 'primary' with no primary IP of a family leaves that family to the
 * fallback, as server.go's expansion does. 'localhost' selects loopback addresses, which are never
 * among the candidates: NodePorts on loopback are not served (README).
 */
export function resolveNodePortAddresses(node: NodeModel | undefined, opts: Opts): Map<Family, string[]> {
  const candidates: string[] = [];
  const add = (ip: string): void => {
    if (!candidates.includes(ip)) candidates.push(ip);
  };
  for (const ip of node?.internalIPs ?? []) add(ip);
  for (const ip of node?.externalIPs ?? []) add(ip);
  for (const text of opts.nodeIPs ?? []) {
    if (!ipFamily(text)) throw configError(`node IP ${JSON.stringify(text)} is not an IP address`);
    add(canonicalIp(text));
  }
  if (opts.bindAddress !== undefined && opts.bindAddress.trim() && !ipFamily(opts.bindAddress.trim())) {
    throw configError(`bindAddress ${JSON.stringify(opts.bindAddress)} is not an IP address`);
  }
  const dflt = opts.nodePortAddressesDefault ?? 'all';
  if (dflt !== 'all' && dflt !== 'primary') throw configError(`nodePortAddressesDefault ${JSON.stringify(dflt)} is not all or primary`);
  let sel = (opts.nodePortAddresses ?? []).map((s) => s.trim()).filter(Boolean);
  if (!sel.length && dflt === 'primary') sel = ['primary'];
  const cidrs = expand(sel, sel.includes('primary') ? primaryNodeIPs(node, opts) : new Map());

  const out = new Map<Family, string[]>();
  for (const f of [4, 6] as const) {
    const mine = cidrs.filter((c) => c.family === f);
    const list: string[] = [];
    if (!mine.length) {
      for (const ip of candidates) if (ipFamily(ip) === f) list.push(ip);
      if (!list.length) list.push(ANY[f]);
    } else if (mine.some((c) => c.prefix === 0)) {
      list.push(ANY[f]);
    } else {
      for (const ip of candidates) if (ipFamily(ip) === f && mine.some((c) => cidrContains(c, ip))) list.push(ip);
    }
    out.set(f, list);
  }
  return out;
}
