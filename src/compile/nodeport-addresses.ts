// Which of this node's addresses its NodePorts answer on, per family: kube-proxy's
// --nodeport-addresses (CIDRs, or 'primary'), and the default when it is unset.
// Mirrors kubernetes pkg/proxy/util/nodeport_addresses.go (NodePortAddresses, GetNodeIPs) and the
// 'primary' handling of cmd/kube-proxy/app/server.go, with one difference in kind: the candidates
// are the addresses the Node object and the operator name, not the host's interfaces.
import type { NodeModel } from '../model/types.js';
import { canonicalIp, cidrContains, ipFamily, parseCidr, type Cidr, type Family } from '../util/ip.js';
import { configError, type CompileOptions } from './options.js';

/**
 * family -> the addresses NodePorts answer on ('0.0.0.0' / '::' for any). Throws KBP_ERR_CONFIG on a
 * bad node IP or --nodeport-addresses entry, whatever the node.
 */
export function resolveNodePortAddresses(node: NodeModel | undefined, opts: Pick<CompileOptions, 'nodeIPs' | 'nodePortAddresses'>): Map<Family, string[]> {
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
  const out = new Map<Family, string[]>([[4, []], [6, []]]);
  const push = (f: Family, ip: string): void => {
    const l = out.get(f)!;
    if (!l.includes(ip)) l.push(ip);
  };
  const sel = (opts.nodePortAddresses ?? []).map((s) => s.trim()).filter(Boolean);
  if (!sel.length) {
    for (const ip of candidates) push(ipFamily(ip) as Family, ip);
    // nothing known about this node's addresses: answer on any address rather than on none
    for (const f of [4, 6] as const) if (!out.get(f)!.length) push(f, f === 4 ? '0.0.0.0' : '::');
    return out;
  }
  for (const s of sel) {
    if (s === 'primary') {
      for (const f of [4, 6] as const) {
        const ip = (node?.internalIPs ?? []).find((a) => ipFamily(a) === f)
          ?? (opts.nodeIPs ?? []).map(canonicalIp).find((a) => ipFamily(a) === f);
        if (ip) push(f, ip);
      }
      continue;
    }
    let cidr: Cidr;
    try {
      cidr = parseCidr(s);
    } catch (e) {
      throw configError(`--nodeport-addresses: ${(e as Error).message}`);
    }
    if (!s.includes('/')) throw configError(`--nodeport-addresses: ${JSON.stringify(s)} is not a CIDR or 'primary'`);
    if (cidr.prefix === 0) {
      push(cidr.family, cidr.family === 4 ? '0.0.0.0' : '::');
      continue;
    }
    for (const ip of candidates) if (cidrContains(cidr, ip)) push(ipFamily(ip) as Family, ip);
  }
  // an "any" address makes the specific ones of its family redundant
  for (const f of [4, 6] as const) {
    const any = f === 4 ? '0.0.0.0' : '::';
    if (out.get(f)!.includes(any)) out.set(f, [any]);
  }
  return out;
}
