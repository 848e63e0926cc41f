// The compiled desired state of one node: the JSON contract of `compile -o json` and `dump -o json`
// (shared/DESIGN.md, "contract: compiled state JSON"). Both commands must print the same JSON for the
// same state, so everything here is plain data with a canonical sort order.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type FrontendType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalIP';
/** internal: traffic that starts on this node (pods, host); external: traffic arriving from outside. */
export type Scope = 'internal' | 'external';

export interface CompiledBackend {
  address: string;
  port: number;
  /** Drains its existing flows; gets new ones only when no backend of the frontend is ready (KEP-1669). */
  terminating: boolean;
}

export interface CompiledFrontend {
  /** namespace/name */
  service: string;
  /** the Service port's name ('' when unnamed) */
  portName: string;
  type: FrontendType;
  address: string;
  port: number;
  protocol: Protocol;
  scope: Scope;
  /** Exactly those backends that traffic of this scope to this frontend may reach; [] means refuse. */
  backends: CompiledBackend[];
  /** 0 when sessionAffinity is None */
  sessionAffinitySeconds: number;
  /** CIDRs allowed to reach this frontend; [] means everyone */
  sourceRanges: string[];
}

export interface CompiledState {
  frontends: CompiledFrontend[];
}

/**
 * What compile knows beyond the contract, needed by plan and the data plane but not printed:
 * per backend, whether it runs on this node; per frontend, whether external traffic to a remote
 * backend must be SNATed (externalTrafficPolicy Cluster).
 */
export interface NodeBackend extends CompiledBackend {
  /** endpoint.nodeName equals this node's name */
  local: boolean;
}

export interface NodeFrontend extends Omit<CompiledFrontend, 'backends'> {
  backends: NodeBackend[];
  /** external scope with externalTrafficPolicy Cluster: SNAT to the node when the backend is not local */
  snatRemote: boolean;
  /**
   * Set when the frontend follows a Local traffic policy, has no local endpoint (backends is []),
   * and the Service has usable endpoints elsewhere: kube-proxy drops such traffic instead of
   * rejecting it, so load balancers go by the health check (the iptables and nftables proxiers'
   * "has no local endpoints" filter rules). Not part of the JSON contract.
   */
  noLocalEndpoints?: true;
  /**
   * New flows kube-proxy marks for masquerade (KUBE-MARK-MASQ): 'all' with masqueradeAll and on
   * external addresses of an eTP=Cluster Service; 'offCluster' on clusterIPs when detectLocalMode
   * can tell the cluster's pods from everyone else (masquerade the others). Not part of the JSON contract.
   */
  masquerade?: 'all' | 'offCluster';
  /**
   * With session affinity: the plan key (plan/types.ts frontendKey) of the Service port's clusterIP
   * frontend of this family, whose id keys the affinity of every frontend of the port (kube-proxy's
   * affinity is per Service port: one `recent` list / affinity set per endpoint of the port's
   * chain, shared by its clusterIP, NodePorts, LB IPs and externalIPs). Not part of the JSON contract.
   */
  affinityGroup?: string;
}

export interface NodeState {
  frontends: NodeFrontend[];
}
