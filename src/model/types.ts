// The normalized model: what the raw Service / EndpointSlice / Node objects mean once validated and
// defaulted, with nothing node-specific decided yet. Built by normalize.ts (pure), read by compile.
import type { Protocol } from './compiled.js';
import type { Family } from '../util/ip.js';

export type ObjectKind = 'Service' | 'EndpointSlice' | 'Node';

/**
 * One problem with one object. severity 'error': the whole object was rejected (it compiles to
 * nothing, every other object still compiles); 'warning': the object compiled but part of it was
 * ignored (an externalIP outside the allowlist, a frontend that collides with another Service's).
 */
export interface ObjectError {
  kind: ObjectKind;
  /** namespace/name */
  key: string;
  /** path of the offending field, e.g. spec.ports[1].port; '' for the object as a whole */
  field: string;
  message: string;
  severity: 'error' | 'warning';
}

export function formatObjectError(e: ObjectError): string {
  return `${e.severity}: ${e.kind} ${e.key}${e.field ? ` ${e.field}` : ''}: ${e.message}`;
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';
export type IpFamilyPolicy = 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';
export type TrafficDistribution = 'PreferClose' | 'PreferSameZone' | 'PreferSameNode';

export interface ServicePortModel {
  /** '' when unnamed */
  name: string;
  protocol: Protocol;
  port: number;
  /** a number, or the name of a container port (resolved per endpoint from its slice) */
  targetPort: number | string;
  /** 0 when none was given (allocated later in standalone mode when the type needs one) */
  nodePort: number;
}

export interface ServiceModel {
  key: string;
  namespace: string;
  name: string;
  type: ServiceType;
  /** clusterIP: None; kube-proxy programs nothing for it */
  headless: boolean;
  /** canonical clusterIPs as given, primary first; empty when to be allocated */
  clusterIPs: string[];
  /** spec.ipFamilies (or the legacy alpha spec.ipFamily), empty when not given */
  ipFamilies: Family[];
  ipFamilyPolicy: IpFamilyPolicy;
  ports: ServicePortModel[];
  externalIPs: string[];
  /** status.loadBalancer.ingress[].ip, without those in ipMode Proxy */
  loadBalancerIngressIPs: string[];
  /** spec.loadBalancerIP ('' when unset); used in standalone mode where no controller fills status */
  loadBalancerIP: string;
  /** canonical CIDRs */
  loadBalancerSourceRanges: string[];
  /** 0 when sessionAffinity is None */
  sessionAffinitySeconds: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  trafficDistribution: TrafficDistribution | null;
  /** 0 when none */
  healthCheckNodePort: number;
  /** spec.allocateLoadBalancerNodePorts (default true) */
  allocateLoadBalancerNodePorts: boolean;
}

export interface EndpointModel {
  /** canonical text */
  address: string;
  family: Family;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** '' when unknown */
  nodeName: string;
  zone: string;
  /** hints.forZones names; null when the endpoint has no zone hints */
  forZones: string[] | null;
  /** hints.forNodes names; null when none */
  forNodes: string[] | null;
  /** the slice's ports, `${name}/${protocol}` -> port number; shared by every endpoint of a slice */
  ports: ReadonlyMap<string, number>;
}

/** The endpoints of one Service, from all its slices (sorted by slice name), split per address family. */
export interface ServiceEndpoints {
  v4: EndpointModel[];
  v6: EndpointModel[];
  /** the normalized slices these came from, in order (normalize()'s; the Compiler keeps none) */
  from?: object[];
}

export interface NodeModel {
  name: string;
  /** topology.kubernetes.io/zone, '' when unlabelled */
  zone: string;
  /** InternalIP addresses, in the order the Node lists them */
  internalIPs: string[];
  externalIPs: string[];
  /** spec.podCIDRs (spec.podCIDR when only it is set), valid CIDRs only, canonical: the NodeCIDR local detector's */
  podCIDRs?: string[];
}

export interface Model {
  /** sorted by key */
  services: ServiceModel[];
  /** by service key */
  endpoints: Map<string, ServiceEndpoints>;
  nodes: Map<string, NodeModel>;
  errors: ObjectError[];
}

export interface NodePortRange {
  min: number;
  max: number;
}

export const defaultNodePortRange: NodePortRange = { min: 30000, max: 32767 };

export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
export const LABEL_ZONE = 'topology.kubernetes.io/zone';
