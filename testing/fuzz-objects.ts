// Generators of Kubernetes objects for the whole-path fuzz (issue 8): near-valid Services,
// EndpointSlices and Nodes with hostile values mixed in (nulls in arrays, wrong types, 100 kB
// strings, unknown enums), fc.anything besides, and a canary Service that must always be served.
// Used by test/unit/fuzz-whole-path.test.ts (agent + strict fake) and
// test/datapath/fuzz-kernel.test.ts (the real maps and programs).
import fc from 'fast-check';
import { ObjectStore } from '../src/source/types.js';
import { parseManifestText } from '../src/source/manifests.js';

export const CANARY_IP = '10.96.0.10';
export const canarySvc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'canary', namespace: 'default' },
  spec: { clusterIP: CANARY_IP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } };
export const canarySlice = (ip: string) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
  metadata: { name: 'canary-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'canary' } },
  addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [{ addresses: [ip], conditions: { ready: true }, nodeName: 'n1' }] });

// ---- generators: near-valid shapes with hostile values mixed in ----
const huge = 'x'.repeat(100_000);
const junk = fc.oneof(fc.constant(null), fc.constant({}), fc.constant([]), fc.constant(''), fc.constant(huge),
  fc.integer({ min: -70000, max: 70000 }), fc.boolean(), fc.constant([null]), fc.string({ maxLength: 8 }));
const orJunk = <T>(a: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: a }, { weight: 1, arbitrary: junk });
const name = fc.constantFrom('h0', 'h1', 'h2', 'h3');
const v4 = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 254 })).map(([a, b]) => `10.96.${a + 1}.${b}`);
const podIP = fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 254 })).map(([a, b]) => `10.244.${a}.${b}`);
const ipish = fc.oneof(v4, podIP, fc.constantFrom('fd00:96::1', '010.96.1.1', 'None', '', '::ffff:10.96.1.1', '10.96.1.1/24', huge));
const port = fc.record({
  name: orJunk(fc.constantFrom('http', 'dns', '')),
  port: orJunk(fc.integer({ min: 1, max: 65535 })),
  targetPort: orJunk(fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constantFrom('http', 'dns'))),
  nodePort: orJunk(fc.integer({ min: 30000, max: 30010 })),
  protocol: orJunk(fc.constantFrom('TCP', 'UDP', 'SCTP', 'ICMP')),
}, { requiredKeys: [] });
const service = fc.record({
  apiVersion: fc.constant('v1'), kind: fc.constant('Service'),
  metadata: orJunk(fc.record({ name: orJunk(name), namespace: orJunk(fc.constant('default')) }, { requiredKeys: ['name'] })),
  spec: orJunk(fc.record({
    type: orJunk(fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName', 'Weird')),
    clusterIP: orJunk(ipish),
    clusterIPs: orJunk(fc.array(orJunk(ipish), { maxLength: 3 })),
    ipFamilies: orJunk(fc.array(orJunk(fc.constantFrom('IPv4', 'IPv6', 'IPv5')), { maxLength: 3 })),
    ports: orJunk(fc.array(orJunk(port), { maxLength: 4 })),
    externalIPs: orJunk(fc.array(orJunk(ipish), { maxLength: 3 })),
    loadBalancerSourceRanges: orJunk(fc.array(orJunk(fc.constantFrom('192.168.0.0/16', '0.0.0.0/0', 'fd00::/8', 'bad')), { maxLength: 3 })),
    externalTrafficPolicy: orJunk(fc.constantFrom('Local', 'Cluster', 'Other')),
    internalTrafficPolicy: orJunk(fc.constantFrom('Local', 'Cluster')),
    healthCheckNodePort: orJunk(fc.integer({ min: 30011, max: 30020 })),
    sessionAffinity: orJunk(fc.constantFrom('ClientIP', 'None', 'Sticky')),
    sessionAffinityConfig: orJunk(fc.record({ clientIP: orJunk(fc.record({ timeoutSeconds: orJunk(fc.integer({ min: -1, max: 100000 })) })) })),
  }, { requiredKeys: [] })),
  status: orJunk(fc.record({ loadBalancer: orJunk(fc.record({ ingress: orJunk(fc.array(orJunk(fc.record({ ip: orJunk(ipish), ipMode: orJunk(fc.constantFrom('VIP', 'Proxy', 'X')) }, { requiredKeys: [] })), { maxLength: 3 })) })) })),
}, { requiredKeys: ['apiVersion', 'kind', 'metadata'] });
const endpoint = fc.record({
  addresses: orJunk(fc.array(orJunk(fc.oneof(podIP, fc.constantFrom('fd00:244::1', '10.244.1.999')) as fc.Arbitrary<unknown>), { maxLength: 2 })),
  conditions: orJunk(fc.record({ ready: orJunk(fc.boolean()), serving: orJunk(fc.boolean()), terminating: orJunk(fc.boolean()) }, { requiredKeys: [] })),
  nodeName: orJunk(fc.constantFrom('n1', 'n2')),
  hints: orJunk(fc.record({ forZones: orJunk(fc.array(orJunk(fc.record({ name: orJunk(fc.constant('z1')) })), { maxLength: 2 })) })),
}, { requiredKeys: [] });
const slice = fc.record({
  apiVersion: fc.constant('discovery.k8s.io/v1'), kind: fc.constant('EndpointSlice'),
  metadata: orJunk(fc.record({ name: orJunk(fc.constantFrom('s0', 's1', 's2', 's3')), namespace: fc.constant('default'),
    labels: orJunk(fc.record({ 'kubernetes.io/service-name': orJunk(name) }, { requiredKeys: [] })) }, { requiredKeys: ['name'] })),
  addressType: orJunk(fc.constantFrom('IPv4', 'IPv6', 'FQDN')),
  ports: orJunk(fc.array(orJunk(port), { maxLength: 3 })),
  endpoints: orJunk(fc.array(orJunk(endpoint), { maxLength: 4 })),
}, { requiredKeys: ['apiVersion', 'kind', 'metadata'] });
const nodeObj = fc.record({
  apiVersion: fc.constant('v1'), kind: fc.constant('Node'),
  metadata: orJunk(fc.record({ name: orJunk(fc.constantFrom('n1', 'n2')), labels: orJunk(fc.record({ 'topology.kubernetes.io/zone': orJunk(fc.constant('z1')) })) }, { requiredKeys: ['name'] })),
  spec: orJunk(fc.record({
    taints: orJunk(fc.array(orJunk(fc.record({ key: orJunk(fc.constant('node.kubernetes.io/unschedulable')), effect: orJunk(fc.constant('NoSchedule')) })), { maxLength: 2 })),
    // the NodeCIDR detector's input
    podCIDRs: orJunk(fc.array(orJunk(fc.constantFrom('10.244.1.0/24', 'fd00:244:1::/64', '10.244.1.0/99', 'bad', '')), { maxLength: 3 })),
    podCIDR: orJunk(fc.constantFrom('10.244.2.0/24', 'x')),
  }, { requiredKeys: [] })),
  status: orJunk(fc.record({ addresses: orJunk(fc.array(orJunk(fc.record({ type: orJunk(fc.constantFrom('InternalIP', 'ExternalIP')), address: orJunk(fc.constantFrom('192.168.1.10', '192.168.1.11', 'fd00:1::10', 'bad')) })), { maxLength: 3 })) })),
}, { requiredKeys: ['apiVersion', 'kind', 'metadata'] });
export const anyObject = fc.oneof(service, service, slice, slice, nodeObj, fc.anything({ maxDepth: 2 }));

/** Feeds documents through the manifests source's parser into the store, as the source would. */
export function feed(store: ObjectStore, docs: unknown[]): void {
  const text = docs.map((d) => JSON.stringify(d)).join('\n---\n');
  const res = parseManifestText('fuzz.yaml', text);
  for (const o of res.objects) store.upsert(o.kind, o.obj as never);
}


/** A valid Service of the pool with a slice for it: so that the hostile ones have real neighbours. */
export const validPair = fc.record({
  n: fc.integer({ min: 0, max: 3 }),
  type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
  eTP: fc.constantFrom('Cluster', 'Local'), iTP: fc.constantFrom('Cluster', 'Local'),
  affinity: fc.boolean(), udp: fc.boolean(),
  eps: fc.array(fc.record({ host: fc.integer({ min: 1, max: 250 }), node: fc.constantFrom('n1', 'n2'), ready: fc.boolean() }), { maxLength: 4 }),
}).map((c) => {
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: `h${c.n}`, namespace: 'default' }, spec: {
    type: c.type, clusterIP: `10.96.2.${c.n + 1}`, externalTrafficPolicy: c.type === 'ClusterIP' ? undefined : c.eTP, internalTrafficPolicy: c.iTP,
    ...(c.affinity ? { sessionAffinity: 'ClientIP' } : {}),
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: c.udp ? 'UDP' : 'TCP', ...(c.type !== 'ClusterIP' ? { nodePort: 30100 + c.n } : {}) }],
  }, ...(c.type === 'LoadBalancer' ? { status: { loadBalancer: { ingress: [{ ip: `192.168.200.${c.n + 1}` }] } } } : {}) };
  const sl = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: `v${c.n}`, namespace: 'default', labels: { 'kubernetes.io/service-name': `h${c.n}` } },
    addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: c.udp ? 'UDP' : 'TCP' }],
    endpoints: c.eps.map((e) => ({ addresses: [`10.244.${c.n + 4}.${e.host}`], nodeName: e.node, conditions: { ready: e.ready } })) };
  return [svc, sl] as unknown[];
});

/** A batch of documents: hostile objects and valid pairs mixed. */
export const docsArb = fc.array(fc.oneof(anyObject.map((o) => [o] as unknown[]), validPair), { minLength: 1, maxLength: 5 }).map((l) => l.flat());
