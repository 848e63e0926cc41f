// What an operator gives the compiler, and the checks on it. Options are operator input: a bad one
// throws KbpError KBP_ERR_CONFIG naming it (a bad object never throws; it becomes an ObjectError).
// Mirrors the part of kube-proxy's KubeProxyConfiguration that shapes Services (nodePortAddresses,
// the node's IPs), plus kube-apiserver's --service-cluster-ip-range and --service-node-port-range,
// which a standalone compile needs to allocate what an API server would have.
import type { NodePortRange } from '../model/types.js';
import { KbpError } from '../util/errors.js';

export interface CompileOptions {
  /** this node; endpoints whose nodeName equals it are local */
  nodeName: string;
  /** added to the Node object's InternalIP/ExternalIP addresses */
  nodeIPs?: string[];
  /**
   * kube-proxy's --nodeport-addresses: CIDRs and the keywords 'primary' (the node's primary IP per
   * family), 'localhost' (loopback) and 'all' (0.0.0.0/0, ::/0), in any combination. A family with
   * no CIDR falls back to all its addresses. A CIDR of a whole family (0.0.0.0/0, ::/0) answers on
   * any address (printed 0.0.0.0 / ::). See nodeport-addresses.ts.
   */
  nodePortAddresses?: string[];
  /**
   * What an unset nodePortAddresses means: 'all' (default; kube-proxy's iptables and ipvs modes:
   * every known node address) or 'primary' (its nftables mode).
   */
  nodePortAddressesDefault?: 'all' | 'primary';
  /** KubeProxyConfiguration bindAddress: the node's primary IP of its family, for 'primary' (detectNodeIPs) */
  bindAddress?: string;
  /** CVE-2020-8554 mitigation: externalIPs outside these CIDRs get no frontend (and a warning). Unset: all allowed. */
  externalIPAllowCidrs?: string[];
  /** for standalone clusterIP allocation; default 10.96.0.0/12 and fd00:10:96::/108 */
  serviceCidrs?: string[];
  /** default 30000-32767 */
  nodePortRange?: NodePortRange;
  /**
   * A manifests folder rather than an API server: allocate the clusterIPs and nodePorts that the
   * manifests leave out (kube-apiserver would have), and serve spec.loadBalancerIP, since no
   * controller fills status.loadBalancer. Default false.
   */
  standalone?: boolean;
  /**
   * kube-proxy's PreferSameTrafficDistribution feature gate: use the EndpointSlice controller's
   * node hints (forNodes). Default true, as upstream (beta and on in 1.34, GA and locked on in 1.35).
   */
  preferSameTrafficDistribution?: boolean;
  /** kube-proxy's masqueradeAll: every flow to a clusterIP is masqueraded. Default false. */
  masqueradeAll?: boolean;
  /**
   * The families in which kube-proxy's local-traffic detector works (detectLocalMode and its CIDRs
   * or interfaces): there, flows to a clusterIP from outside the cluster's pods are masqueraded.
   * Default none (upstream's no-op detector).
   */
  detectLocalFamilies?: (4 | 6)[];
  /**
   * detectLocalMode NodeCIDR: the cluster's pods are this node's spec.podCIDRs (kube-proxy's
   * NewDetectLocalByCIDR over the first pod CIDR of each family), so the families with a detector
   * are those the Node lists, and follow its updates. Overrides detectLocalFamilies.
   */
  detectLocalNodeCidr?: boolean;
}

export function configError(message: string): KbpError {
  return new KbpError('KBP_ERR_CONFIG', message);
}

/** Whether min-max is a usable nodePort range: integers within 1-65535, min first. */
export function isNodePortRange(min: number, max: number): boolean {
  return Number.isInteger(min) && Number.isInteger(max) && min >= 1 && max <= 65535 && min <= max;
}

/** kube-apiserver's --service-node-port-range syntax, MIN-MAX. */
export function parseNodePortRange(text: string): NodePortRange {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  const min = m ? Number(m[1]) : NaN, max = m ? Number(m[2]) : NaN;
  if (!m || !isNodePortRange(min, max)) throw configError(`bad nodePort range ${JSON.stringify(text)} (expected MIN-MAX within 1-65535)`);
  return { min, max };
}
