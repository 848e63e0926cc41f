// Kubernetes Events for Services left out for capacity (issue 13; README limits): posted to the API
// server as events.k8s.io/v1 (client-go tools/events' shape: regarding, reportingController,
// reportingInstance, action, reason, note), once per change of state, rate-limited.
import test from 'ava';
import { waitFor } from '../../testing/wait.js';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { createKubeSource } from '../../src/source/kube.js';
import { loadKubeConfig } from '../../src/source/kube-http.js';
import { Metrics } from '../../src/agent/metrics.js';
import { recordCapacityEvents, ServiceCapacityEvents, type EventBody } from '../../src/agent/events.js';
import { startStubApiServer } from '../../testing/stub-apiserver.js';
import { silentLogger } from '../../src/util/log.js';

const svc = (name: string, ip: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop', uid: `uid-${name}` },
  spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } });
const slice = (name: string, addr: string) => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
  metadata: { name: `${name}-1`, namespace: 'shop', labels: { 'kubernetes.io/service-name': name } },
  addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [{ addresses: [addr], conditions: { ready: true }, nodeName: 'n1' }] });
const node = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }] } };

const until = (cond: () => boolean, ms = 15_000) => waitFor(cond, 'condition', ms, 20);

test('a Service left out for capacity: a Warning Event reaches the API server naming it and the limit; served again: a Normal one', async (t) => {
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  stub.apply('Node', node);
  stub.apply('Service', svc('a-web', '10.96.0.11'));
  stub.apply('EndpointSlice', slice('a-web', '10.244.1.2'));
  stub.apply('Service', svc('b-web', '10.96.0.12'));
  stub.apply('EndpointSlice', slice('b-web', '10.244.1.3'));
  const dp = new FakeDataplane();
  // room for one backend: b-web (after a-web by name) is left out
  dp.limits = { frontends: Infinity, backends: 1, slots: Infinity, frontendIds: Infinity, sourceRanges: Infinity, maglevSlots: Infinity };
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), nodeName: 'n1', logger: silentLogger, backoff: { initialMs: 20, maxMs: 100, factor: 2, jitter: 0 } });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) },
    { compile: { nodeName: 'n1' }, seed: 7, minSyncMs: 5, syncPeriodMs: 60_000 });
  const rec = recordCapacityEvents(agent, { kc: loadKubeConfig(stub.kubeconfigPath()), nodeName: 'n1', log: silentLogger, store: source.store });
  await agent.start();
  t.teardown(() => agent.stop());
  await until(() => stub.events.length >= 1);
  await rec.flush();
  t.is(stub.events.length, 1);
  const ev = stub.events[0]!;
  t.is(ev.namespace, 'shop');
  const b = ev.body as unknown as EventBody;
  t.like(b, {
    apiVersion: 'events.k8s.io/v1', kind: 'Event', type: 'Warning', reason: 'ServiceOverCapacity', action: 'Program',
    reportingController: 'kube-bpf-proxy', reportingInstance: 'kube-bpf-proxy-n1',
    regarding: { apiVersion: 'v1', kind: 'Service', namespace: 'shop', name: 'b-web', uid: 'uid-b-web' },
    metadata: { namespace: 'shop' },
  });
  t.regex(b.note, /node n1/);
  t.regex(b.note, /backends/, `the limit is named: ${b.note}`);
  t.regex(b.eventTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime');
  t.regex(b.metadata.name, /^b-web\.[0-9a-f]+$/);

  // further syncs with the same state post nothing (once per change, not per sync)
  stub.apply('EndpointSlice', slice('a-web', '10.244.1.2')); // a no-op change: a sync
  stub.apply('Service', { ...svc('a-web', '10.96.0.11'), metadata: { ...svc('a-web', '10.96.0.11').metadata, labels: { touched: 'yes' } } });
  await agent.whenIdle();
  await new Promise((r) => setTimeout(r, 200));
  await agent.whenIdle();
  await rec.flush();
  t.is(stub.events.length, 1, 'nothing new while the state holds');

  // a-web goes away: b-web fits and is served, which is said once too
  stub.remove('Service', 'shop', 'a-web');
  await until(() => stub.events.length >= 2);
  await rec.flush();
  t.like(stub.events[1]!.body, { type: 'Normal', reason: 'ServiceWithinCapacity', regarding: { name: 'b-web' } });
  t.deepEqual(rec.counts, { posted: 2, limited: 0, failed: 0 });
});

test('capacity events: rate-limited (burst, then one a second), a refusing API server costs a count, never a throw', async (t) => {
  let now = 1_000_000;
  const got: EventBody[] = [];
  const rec = new ServiceCapacityEvents({ sink: async (e) => { got.push(e); }, nodeName: 'n1', log: silentLogger, now: () => now, burst: 3, perSecond: 1 });
  const many = Array.from({ length: 10 }, (_, i) => `ns/s${i}`);
  rec.update(many, 'lb_backends (4 entries)');
  await rec.flush();
  t.is(got.length, 3, 'the burst');
  t.is(rec.counts.limited, 7);
  t.true(got.every((e) => e.reason === 'ServiceOverCapacity' && /lb_backends \(4 entries\)/.test(e.note)));
  // the same state a second later: no change, nothing posted, though a token is back
  now += 1000;
  rec.update(many, 'lb_backends (4 entries)');
  await rec.flush();
  t.is(got.length, 3);
  // one comes back: one token, one event
  now += 1000;
  rec.update(many.slice(1), 'lb_backends (4 entries)');
  await rec.flush();
  t.is(got.length, 4);
  t.like(got[3], { reason: 'ServiceWithinCapacity', regarding: { namespace: 'ns', name: 's0' } });

  const failing = new ServiceCapacityEvents({ sink: async () => { throw new Error('HTTP 403: forbidden'); }, nodeName: 'n1', log: silentLogger });
  failing.update(['ns/x'], undefined);
  await failing.flush();
  t.deepEqual(failing.counts, { posted: 0, limited: 0, failed: 1 });
});
