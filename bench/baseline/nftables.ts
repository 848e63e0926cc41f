// kube-proxy's nftables mode as a benchmark baseline: the `nft -f` transaction its syncProxyRules()
// writes on a full sync (kubernetes pkg/proxy/nftables/proxier.go, through knftables): one table
// `ip kube-proxy` with base chains at kube-proxy's hooks and priorities, the service-ips verdict map
// (daddr . proto . dport -> goto service-<hash>-<ns>/<name>/<proto>/<port>), per Service a chain with
// the masquerade check and `numgen random mod N vmap { i : goto endpoint-... }`, per endpoint a chain
// with the hairpin masquerade and the dnat, NodePorts through service-nodeports -> external-<hash>.
import { createHash } from 'node:crypto';
import { base32, type KpServicePort } from './services.js';

export const NFT_TABLE = 'kube-proxy';

export interface NftOptions {
  clusterCidr: string;
  /** the Service CIDR, for cluster-ips-check's "drop traffic to unallocated ClusterIPs" */
  serviceCidr: string;
}

function hash8(s: string): string {
  return base32(createHash('sha256').update(s).digest()).slice(0, 8);
}

function base(sp: KpServicePort): string {
  const proto = sp.protocol.toLowerCase();
  return `${sp.service}/${proto}/${sp.portName}`;
}

export function nftServiceChain(sp: KpServicePort): string {
  return `service-${hash8(sp.name + sp.protocol.toLowerCase())}-${base(sp)}`;
}

function externalChain(sp: KpServicePort): string {
  return `external-${hash8(sp.name + sp.protocol.toLowerCase())}-${base(sp)}`;
}

function endpointChain(sp: KpServicePort, ep: { ip: string; port: number }): string {
  const e = `${ep.ip}:${ep.port}`;
  return `endpoint-${hash8(sp.name + sp.protocol.toLowerCase() + e)}-${base(sp)}__${ep.ip}/${ep.port}`;
}

export interface NftRuleset { text: string; chains: number; rules: number; elements: number }

/** The nft -f input of a full kube-proxy nftables sync into an empty namespace. */
export function nftRuleset(ports: readonly KpServicePort[], opts: NftOptions): NftRuleset {
  const t = `ip ${NFT_TABLE}`;
  const out: string[] = [];
  let chains = 0, rules = 0, elements = 0;
  const chain = (name: string, spec?: string) => { chains++; out.push(`add chain ${t} ${name}${spec ? ` { ${spec} ; }` : ''}`); };
  const rule = (c: string, r: string) => { rules++; out.push(`add rule ${t} ${c} ${r}`); };
  const element = (m: string, e: string) => { elements++; out.push(`add element ${t} ${m} { ${e} }`); };

  out.push(`add table ${t} { comment "rules for kube-proxy" ; }`);
  chain('mark-for-masquerade');
  rule('mark-for-masquerade', 'mark set mark or 0x4000');
  chain('masquerading');
  rule('masquerading', 'mark and 0x4000 == 0 return');
  rule('masquerading', 'mark set mark xor 0x4000');
  rule('masquerading', 'masquerade fully-random');
  chain('services');
  chain('service-endpoints-check');
  chain('nodeport-endpoints-check');
  chain('firewall-check');
  chain('cluster-ips-check');
  out.push(`add set ${t} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`);
  out.push(`add map ${t} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`);
  out.push(`add map ${t} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`);
  out.push(`add map ${t} no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }`);
  out.push(`add map ${t} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`);
  out.push(`add map ${t} firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }`);
  chain('filter-prerouting', 'type filter hook prerouting priority -110');
  rule('filter-prerouting', 'ct state new jump firewall-check');
  chain('filter-input', 'type filter hook input priority -110');
  rule('filter-input', 'ct state new jump nodeport-endpoints-check');
  rule('filter-input', 'ct state new jump service-endpoints-check');
  chain('filter-forward', 'type filter hook forward priority -110');
  rule('filter-forward', 'ct state new jump service-endpoints-check');
  rule('filter-forward', 'ct state new jump cluster-ips-check');
  chain('filter-output', 'type filter hook output priority -110');
  rule('filter-output', 'ct state new jump service-endpoints-check');
  rule('filter-output', 'ct state new jump firewall-check');
  chain('filter-output-post-dnat', 'type filter hook output priority -90');
  rule('filter-output-post-dnat', 'ct state new jump cluster-ips-check');
  chain('nat-prerouting', 'type nat hook prerouting priority -100');
  rule('nat-prerouting', 'jump services');
  chain('nat-output', 'type nat hook output priority -100');
  rule('nat-output', 'jump services');
  chain('nat-postrouting', 'type nat hook postrouting priority 100');
  rule('nat-postrouting', 'jump masquerading');
  rule('cluster-ips-check', 'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"');
  rule('cluster-ips-check', `ip daddr { ${opts.serviceCidr} } drop comment "Drop traffic to unallocated ClusterIPs"`);
  rule('firewall-check', 'ip daddr . meta l4proto . th dport vmap @firewall-ips');
  rule('service-endpoints-check', 'ip daddr . meta l4proto . th dport vmap @no-endpoint-services');
  rule('nodeport-endpoints-check', 'ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports');
  rule('services', 'ip daddr . meta l4proto . th dport vmap @service-ips');
  rule('services', 'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports');

  for (const sp of ports) {
    const proto = sp.protocol.toLowerCase();
    const svc = nftServiceChain(sp);
    element('cluster-ips', sp.clusterIP);
    if (sp.endpoints.length === 0) {
      element('no-endpoint-services', `${sp.clusterIP} . ${proto} . ${sp.port} comment "${sp.name}" : goto reject-chain`);
      continue;
    }
    // endpoint chains first: a rule may only goto a chain that exists
    for (const ep of sp.endpoints) {
      const c = endpointChain(sp, ep);
      chain(c);
      rule(c, `ip saddr ${ep.ip} jump mark-for-masquerade`);
      rule(c, `meta l4proto ${proto} dnat to ${ep.ip}:${ep.port}`);
    }
    chain(svc);
    rule(svc, `ip daddr ${sp.clusterIP} ${proto} dport ${sp.port} ip saddr != ${opts.clusterCidr} jump mark-for-masquerade`);
    const arms = sp.endpoints.map((ep, i) => `${i} : goto ${endpointChain(sp, ep)}`).join(' , ');
    rule(svc, `numgen random mod ${sp.endpoints.length} vmap { ${arms} }`);
    element('service-ips', `${sp.clusterIP} . ${proto} . ${sp.port} : goto ${svc}`);
    if (sp.nodePort) {
      const ext = externalChain(sp);
      chain(ext);
      rule(ext, 'jump mark-for-masquerade');
      rule(ext, `goto ${svc}`);
      element('service-nodeports', `${proto} . ${sp.nodePort} : goto ${ext}`);
    }
  }
  // no-endpoint Services need the reject chain kube-proxy keeps; declare it before the elements use it
  if (out.some((l) => l.includes('goto reject-chain'))) {
    const at = out.findIndex((l) => l.startsWith(`add chain ${t} services`));
    out.splice(at, 0, `add chain ${t} reject-chain`, `add rule ${t} reject-chain reject`);
  }
  return { text: out.join('\n') + '\n', chains, rules, elements };
}
