// Synthetic clusters for benches: S Services x E endpoints as the raw API objects compile() reads, or
// directly as the NodeState compile() would produce. Deterministic: the same sizes give the same
// objects, so runs compare. Addresses are private: ClusterIPs in 10.96.0.0/12, pods in 10.128.0.0/9,
// the node at 192.168.50.2.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { ChangedKeys } from '../src/compile/compile.js';
import type { NodeState } from '../src/model/compiled.js';
import type { Snapshot } from '../src/source/types.js';

export const NODE_NAME = 'node-a';
export const NODE_IP = '192.168.50.2';

export interface ClusterShape {
  services: number;
  endpointsPerService: number;
  /** every k-th Service is a NodePort (at most 2768 of them fit the default range); 0 = none */
  nodePortEvery?: number;
}

export function clusterIp(i: number): string {
  const v = (10 << 24) + (96 << 16) + 1 + i;
  if (i >= (1 << 20) - 2) throw new Error(`Service index ${i} does not fit 10.96.0.0/12`);
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function podIp(i: number, j: number, perService: number): string {
  const v = (10 << 24) + (128 << 16) + 1 + i * perService + j;
  if (i * perService + j >= (1 << 23) - 2) throw new Error('too many endpoints for 10.128.0.0/9');
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

function isNodePort(i: number, shape: ClusterShape): boolean {
  const k = shape.nodePortEvery ?? 0;
  return k > 0 && i % k === 0 && i / k < 2768;
}

export function service(i: number, shape: ClusterShape): V1Service {
  const np = isNodePort(i, shape);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'bench', name: `svc-${i}` },
    spec: {
      type: np ? 'NodePort' : 'ClusterIP',
      clusterIP: clusterIp(i),
      clusterIPs: [clusterIp(i)],
      ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', ...(np ? { nodePort: 30000 + i / (shape.nodePortEvery ?? 1) } : {}) }],
      selector: { app: `svc-${i}` },
    },
  };
}

/** endpoints of Service i; `variant` shifts one endpoint's address (an endpoint change) */
export function endpointSlice(i: number, shape: ClusterShape, variant = 0): V1EndpointSlice {
  const e = shape.endpointsPerService;
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'bench', name: `svc-${i}-abcde`, labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: Array.from({ length: e }, (_, j) => ({
      addresses: [j === 0 && variant ? podIp(i, e - 1 + variant, e) : podIp(i, j, e)],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: j % 2 ? 'node-b' : NODE_NAME,
    })),
  };
}

export function node(): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: NODE_NAME },
    status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] },
  };
}

export function snapshot(shape: ClusterShape): Snapshot {
  const services = new Map<string, V1Service>();
  const endpointSlices = new Map<string, V1EndpointSlice>();
  for (let i = 0; i < shape.services; i++) {
    services.set(`bench/svc-${i}`, service(i, shape));
    endpointSlices.set(`bench/svc-${i}-abcde`, endpointSlice(i, shape));
  }
  return { services, endpointSlices, nodes: new Map([[NODE_NAME, node()]]) };
}

/** Room for every bench size in a capacity fit (the capacity tracker's limits, well above 100,000 Services) */
export const BENCH_CAPACITY = { frontends: 1 << 20, backends: 1 << 22, slots: 1 << 24, frontendIds: 1 << 20, sourceRanges: 65536, maglevSlots: 1 << 26 };

/**
 * One endpoint change as a source delivers it: `snap` with Service i's EndpointSlice replaced by its
 * `variant` (a copy of the slice map; the rest shared), and the change record naming that slice.
 */
export function endpointChange(snap: Snapshot, shape: ClusterShape, i: number, variant: number): { snap: Snapshot; changed: ChangedKeys } {
  const key = `bench/svc-${i}-abcde`;
  const endpointSlices = new Map(snap.endpointSlices).set(key, endpointSlice(i, shape, variant));
  return { snap: { ...snap, endpointSlices }, changed: { Service: new Set(), EndpointSlice: new Set([key]), Node: new Set() } };
}

/** What compile gives for snapshot(shape), built directly (for benches that must not depend on compile). */
export function nodeState(shape: ClusterShape): NodeState {
  const frontends: NodeState['frontends'] = [];
  const e = shape.endpointsPerService;
  for (let i = 0; i < shape.services; i++) {
    const backends = Array.from({ length: e }, (_, j) => ({ address: podIp(i, j, e), port: 8080, terminating: false, local: j % 2 === 0 }));
    const base = {
      service: `bench/svc-${i}`, portName: 'http', protocol: 'TCP' as const, backends,
      sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
    };
    frontends.push({ ...base, type: 'ClusterIP', address: clusterIp(i), port: 80, scope: 'internal' });
    if (isNodePort(i, shape)) {
      const port = 30000 + i / (shape.nodePortEvery ?? 1);
      frontends.push({ ...base, type: 'NodePort', address: NODE_IP, port, scope: 'external', snatRemote: true });
    }
  }
  return { frontends };
}
