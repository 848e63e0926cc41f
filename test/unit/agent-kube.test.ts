// The agent over the Kubernetes source: the real client-node informers against our stub API server,
// the in-memory data plane. What the API says reaches the data plane, and keeps reaching it across
// an API server outage.
import test from 'ava';
import { waitFor } from '../../testing/wait.js';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { createKubeSource } from '../../src/source/kube.js';
import { Metrics } from '../../src/agent/metrics.js';
import { startStubApiServer } from '../../testing/stub-apiserver.js';
import { silentLogger } from '../../src/util/log.js';
import { Compiler } from '../../src/compile/compile.js';
import { pino } from 'pino';

const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' },
  spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } };
const slice = (addrs: string[]) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
  metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: addrs.map((a) => ({ addresses: [a], conditions: { ready: true }, nodeName: 'n1' })) });
const node = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }] } };

const until = (cond: () => boolean, ms = 8000) => waitFor(cond, 'condition', ms, 20);

test('Services and EndpointSlices from the API server reach the data plane, through an outage too', async (t) => {
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  stub.apply('Node', node);
  stub.apply('Service', svc);
  stub.apply('EndpointSlice', slice(['10.244.1.2', '10.244.1.3']));
  const dp = new FakeDataplane();
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), nodeName: 'n1', logger: silentLogger, backoff: { initialMs: 20, maxMs: 100, factor: 2, jitter: 0 } });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) },
    { compile: { nodeName: 'n1' }, seed: 7, minSyncMs: 5, syncPeriodMs: 60_000 });
  await agent.start();
  t.teardown(() => agent.stop());
  await until(() => dp.frontends.size === 1 && dp.backends.size === 2);
  t.deepEqual([...dp.frontends.values()].map((f) => `${f.address}:${f.port}`), ['10.96.0.10:80']);

  // scale up through a watch event
  stub.apply('EndpointSlice', slice(['10.244.1.2', '10.244.1.3', '10.244.1.4']));
  await until(() => dp.backends.size === 3);

  // the API server goes away and comes back with a change made meanwhile (a relist)
  await stub.stopListening();
  stub.apply('EndpointSlice', slice(['10.244.1.9']));
  await new Promise((r) => setTimeout(r, 200));
  t.is(dp.backends.size, 3, 'the data plane keeps serving while the API server is gone');
  await stub.listen();
  await until(() => dp.backends.size === 1 && [...dp.backends.values()][0]!.address === '10.244.1.9');

  stub.remove('Service', 'default', 'web');
  await until(() => dp.frontends.size === 0 && dp.backends.size === 0);
});

test('a first list is compiled while its pages arrive, and the first sync holds what one compile of the whole list gives', async (t) => {
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  stub.listDelayMs = 25;
  stub.apply('Node', node);
  for (let i = 0; i < 40; i++) {
    stub.apply('Service', { ...svc, metadata: { name: `web${i}`, namespace: 'default' },
      spec: { ...svc.spec, clusterIP: `10.96.0.${i + 1}`, clusterIPs: [`10.96.0.${i + 1}`] } });
    const sl = slice([`10.244.1.${i + 1}`, `10.244.2.${i + 1}`]);
    stub.apply('EndpointSlice', { ...sl, metadata: { ...sl.metadata, name: `web${i}-1`, labels: { 'kubernetes.io/service-name': `web${i}` } } });
  }
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } });
  const dp = new FakeDataplane();
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), nodeName: 'n1', logger: silentLogger, listPageSize: 4 });
  const agent = new Agent({ source, dataplane: dp, log, metrics: new Metrics({ processMetrics: false }) },
    { compile: { nodeName: 'n1' }, seed: 7, minSyncMs: 5, syncPeriodMs: 60_000 });
  await agent.start();
  t.teardown(() => agent.stop());
  await until(() => agent.syncs >= 1);
  const started = lines.find((l) => l.msg === 'data plane loaded and source started')!;
  // 10 pages of each kind, 25 ms apart: compiles ran between them (at most one per 100 ms)
  t.true(Number(started.aheadSteps) >= 1, JSON.stringify(started));
  const once = new Compiler({ nodeName: 'n1' }).compile(source.store.snapshot());
  t.is(once.state.frontends.length, 40);
  t.is(JSON.stringify(agent.state), JSON.stringify(once.state));
  t.is(dp.frontends.size, 40);
  t.is(dp.backends.size, 80);
});

// kube-proxy's ProxyHealthServer.SyncNode (pkg/proxy/healthcheck/proxy_health.go): a Node being
// deleted (deletionTimestamp) or tainted ToBeDeletedByClusterAutoscaler makes /healthz 503 with
// nodeEligible false, so load balancers drain the node; kube-proxy's NodeManager.OnNodeDelete
// (pkg/proxy/node.go) exits when the Node object goes, which a load balancer's check sees as a
// failure too: the agent keeps serving and answers 503 until the Node is back
test('/healthz follows this Node from the API server: deleting, deleted, back', async (t) => {
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  stub.apply('Node', node);
  stub.apply('Service', svc);
  stub.apply('EndpointSlice', slice(['10.244.1.2']));
  const dp = new FakeDataplane();
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), nodeName: 'n1', logger: silentLogger });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) },
    { compile: { nodeName: 'n1' }, seed: 7, minSyncMs: 5, syncPeriodMs: 60_000 });
  await agent.start();
  t.teardown(() => agent.stop());
  await until(() => dp.frontends.size === 1);
  t.true(agent.health.nodeEligible);

  stub.apply('Node', { ...node, metadata: { ...node.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } });
  await until(() => !agent.health.nodeEligible);

  stub.apply('Node', node);
  await until(() => agent.health.nodeEligible);

  stub.remove('Node', undefined, 'n1');
  await until(() => !agent.health.nodeEligible);
  t.is(dp.frontends.size, 1, 'the data plane keeps serving');

  stub.apply('Node', node);
  await until(() => agent.health.nodeEligible);
});

test('the agent\'s Kubernetes source logs each field once (a JSON line with a key twice reads as the last one, or fails a strict parser)', async (t) => {
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  stub.apply('Node', node);
  const raw: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { raw.push(s); } });
  const { createSource } = await import('../../src/agent/launch.js');
  const { DEFAULTS } = await import('../../src/agent/config.js');
  const source = await createSource({ ...DEFAULTS, kubeconfig: stub.kubeconfigPath(), nodeName: 'n1', ignored: [] }, log);
  t.teardown(() => source.stop?.());
  await source.start();
  t.true(raw.length > 0);
  for (const line of raw) {
    const keys = [...line.matchAll(/"([^"]+)":/g)].map((m) => m[1]);
    t.deepEqual(keys.filter((k, i) => keys.indexOf(k) !== i), [], line);
  }
});

test('this Node\'s zone label and addresses changed in the API server: topology hints and NodePorts follow without a restart', async (t) => {
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  const zoned = (zone: string, ip: string) => ({ ...node, metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': zone } },
    status: { addresses: [{ type: 'InternalIP', address: ip }] } });
  stub.apply('Node', zoned('z1', '192.168.1.10'));
  stub.apply('Service', { ...svc, spec: { ...svc.spec, type: 'NodePort', ports: [{ ...svc.spec.ports[0], nodePort: 30080 }] } });
  const sl = slice(['10.244.1.2', '10.244.2.2']);
  sl.endpoints[0]!.nodeName = 'n1';
  sl.endpoints[1]!.nodeName = 'n2';
  stub.apply('EndpointSlice', { ...sl, endpoints: [
    { ...sl.endpoints[0], zone: 'z1', hints: { forZones: [{ name: 'z1' }] } },
    { ...sl.endpoints[1], zone: 'z2', hints: { forZones: [{ name: 'z2' }] } }] });
  const dp = new FakeDataplane();
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), nodeName: 'n1', logger: silentLogger });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) },
    { compile: { nodeName: 'n1' }, seed: 7, minSyncMs: 5, syncPeriodMs: 60_000 });
  await agent.start();
  t.teardown(() => agent.stop());
  const clusterIpBackends = () => {
    const fe = [...dp.frontends.values()].find((f) => f.address === '10.96.0.10');
    return fe ? fe.backendIds.map((id) => dp.backends.get(id)?.address).sort() : [];
  };
  const nodePorts = () => [...dp.frontends.values()].filter((f) => f.port === 30080).map((f) => f.address).sort();
  await until(() => clusterIpBackends().join() === '10.244.1.2');
  t.true(nodePorts().includes('192.168.1.10'));
  stub.apply('Node', zoned('z2', '192.168.1.11'));
  await until(() => clusterIpBackends().join() === '10.244.2.2');
  await until(() => nodePorts().includes('192.168.1.11') && !nodePorts().includes('192.168.1.10'));
});

// kube-proxy's NodeManager waits for its Node (by --hostname-override, else the host's name) and
// fails the start after 5 minutes without it (pkg/proxy/node.go newNodeManager): a node name that is
// not the Node's (an FQDN hostname, a typo) is the usual cause. The agent serves without it, so it
// says so: node-local endpoints (traffic policies Local, topology) are matched by that name
test('a Node of --node-name the API server does not have is named in a warning after the first sync, once', async (t) => {
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  stub.apply('Node', node);
  stub.apply('Service', svc);
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } });
  const dp = new FakeDataplane();
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), nodeName: 'n1.example.internal', logger: silentLogger });
  const agent = new Agent({ source, dataplane: dp, log, metrics: new Metrics({ processMetrics: false }) },
    { compile: { nodeName: 'n1.example.internal' }, seed: 7, minSyncMs: 5, syncPeriodMs: 60_000 });
  await agent.start();
  t.teardown(() => agent.stop());
  await until(() => agent.syncs >= 1);
  stub.apply('Service', { ...svc, metadata: { ...svc.metadata, name: 'web2' }, spec: { ...svc.spec, clusterIP: '10.96.0.11', clusterIPs: ['10.96.0.11'] } });
  await until(() => agent.syncs >= 2);
  const warned = lines.filter((l) => l.level === 40 && /no Node named/.test(String(l.msg)));
  t.is(warned.length, 1, JSON.stringify(lines.map((l) => l.msg)));
  t.is(warned[0]!.node, 'n1.example.internal');
});
