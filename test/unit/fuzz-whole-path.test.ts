// Whole-path fuzz (issue 8): random Services, EndpointSlices and Nodes, valid, malformed and hostile
// (nulls in arrays, wrong types, huge strings, 10,000 ports), through the manifests source's parser,
// the store, the agent's compile, plan and the strict fake data plane (every op checked as a kernel
// reader would need it). A canary Service must stay programmed with its current backend after every
// batch, a change to it must land (the agent never stops syncing), and no sync may fail.
// Bounded: a fixed number of runs of a few objects each, plus one 10,000-port case.
import test from 'ava';
import fc from 'fast-check';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { Metrics } from '../../src/agent/metrics.js';
import { ObjectStore, type Source } from '../../src/source/types.js';
import { parseManifestText } from '../../src/source/manifests.js';

const CANARY_IP = '10.96.0.10';
const canarySvc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'canary', namespace: 'default' },
  spec: { clusterIP: CANARY_IP, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } };
const canarySlice = (ip: string) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
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
  spec: orJunk(fc.record({ taints: orJunk(fc.array(orJunk(fc.record({ key: orJunk(fc.constant('node.kubernetes.io/unschedulable')), effect: orJunk(fc.constant('NoSchedule')) })), { maxLength: 2 })) })),
  status: orJunk(fc.record({ addresses: orJunk(fc.array(orJunk(fc.record({ type: orJunk(fc.constantFrom('InternalIP', 'ExternalIP')), address: orJunk(fc.constantFrom('192.168.1.10', '192.168.1.11', 'fd00:1::10', 'bad')) })), { maxLength: 3 })) })),
}, { requiredKeys: ['apiVersion', 'kind', 'metadata'] });
const anyObject = fc.oneof(service, service, slice, slice, nodeObj, fc.anything({ maxDepth: 2 }));

/** Feeds documents through the manifests source's parser into the store, as the source would. */
function feed(store: ObjectStore, docs: unknown[]): void {
  const text = docs.map((d) => JSON.stringify(d)).join('\n---\n');
  const res = parseManifestText('fuzz.yaml', text);
  for (const o of res.objects) store.upsert(o.kind, o.obj as never);
}

/** checkEvery: the fake's full consistency check after every op is O(maps) per op; at 10,000
 * frontends it runs every checkEvery ops (and once more in the test) */
async function startAgent(t: import('ava').ExecutionContext, checkEvery = 1) {
  const store = new ObjectStore();
  const source: Source = { store, start: async () => {}, stop: async () => {} };
  feed(store, [canarySvc, canarySlice('10.244.1.2')]);
  const dp = new FakeDataplane();
  const check = dp.maps.check.bind(dp.maps);
  let ops = 0;
  dp.maps.check = () => { if (++ops % checkEvery === 0) check(); };
  const metrics = new Metrics({ processMetrics: false });
  const agent = new Agent({ source, dataplane: dp, metrics }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 42, minSyncMs: 0, syncPeriodMs: 60_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const syncErrors = async () => (await metrics.registry.getSingleMetric('kubebpfproxy_sync_errors_total')!.get()).values[0]?.value ?? 0;
  const canaryBackend = () => {
    const fe = [...dp.frontends.values()].find((f) => f.service === 'default/canary' && f.address === CANARY_IP);
    return fe?.backendIds.map((id) => dp.backends.get(id)?.address).join(',');
  };
  return { store, agent, syncErrors, canaryBackend, check, dp: () => dp };
}

test('random hostile objects never stop the agent, fail a sync, or disturb the canary', async (t) => {
  const { store, agent, syncErrors, canaryBackend } = await startAgent(t);
  t.is(canaryBackend(), '10.244.1.2');
  let round = 0;
  const deadline = Date.now() + 30_000;
  await fc.assert(fc.asyncProperty(fc.array(anyObject, { minLength: 1, maxLength: 6 }), async (docs) => {
    if (Date.now() > deadline) return; // bounded in time as well as in runs, on a loaded machine
    round++;
    feed(store, docs);
    // the canary moves to another backend in the same batch: it must land
    const ip = `10.244.1.${2 + (round % 200)}`;
    feed(store, [canarySlice(ip)]);
    await agent.whenIdle();
    if (await syncErrors() !== 0) throw new Error(`a sync failed after ${JSON.stringify(docs).slice(0, 500)}`);
    if (canaryBackend() !== ip) throw new Error(`canary at ${canaryBackend()}, want ${ip}, after ${JSON.stringify(docs).slice(0, 500)}`);
  }), { numRuns: 100, seed: 0x8fe2 });
  t.true(round > 0);
});

test('a Service with 10,000 ports and a slice to match: programmed, the canary untouched', async (t) => {
  const { store, agent, syncErrors, canaryBackend, check, dp } = await startAgent(t, 5000);
  const ports = Array.from({ length: 10_000 }, (_, i) => ({ name: `p${i}`, port: 1000 + i, targetPort: 1000 + i, protocol: 'TCP' }));
  feed(store, [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'wide', namespace: 'default' }, spec: { clusterIP: '10.96.5.5', ports } },
    { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'wide-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'wide' } },
      addressType: 'IPv4', ports: ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
      endpoints: [{ addresses: ['10.244.3.3'], conditions: { ready: true }, nodeName: 'n2' }, null] },
  ]);
  await agent.whenIdle();
  t.is(await syncErrors(), 0);
  check();
  t.is(canaryBackend(), '10.244.1.2');
  t.is([...dp().frontends.values()].filter((f) => f.service === 'default/wide').length, 10_000, 'every port programmed');
  feed(store, [canarySlice('10.244.1.9')]);
  await agent.whenIdle();
  t.is(canaryBackend(), '10.244.1.9', 'still syncing');
});
