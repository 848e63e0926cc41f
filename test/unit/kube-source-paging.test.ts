// The Kubernetes source lists as client-go does: in pages (limit/continue) with a full-list fallback
// when the continue token expires, and with kube-proxy's label selector, so Services of another proxy
// and slices of headless Services never reach the store (cmd/kube-proxy/app/server.go, the informer
// factory's WithTweakListOptions; client-go tools/pager ListPager.List with FullListIfExpired).
import test from 'ava';
import { createKubeSource, PROXY_LABEL_SELECTOR, type KubeSource } from '../../src/source/kube.js';
import { silentLogger } from '../../src/util/log.js';
import { startStubApiServer, type StubApiServer } from '../../testing/stub-apiserver.js';

const FAST = { initialMs: 10, maxMs: 100, factor: 2, jitter: 0.5 };

async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const svc = (name: string, ip: string, labels: Record<string, string> = {}) => ({
  metadata: { namespace: 'default', name, labels }, spec: { type: 'ClusterIP', clusterIP: ip, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
});
const slice = (name: string, service: string, labels: Record<string, string> = {}) => ({
  metadata: { namespace: 'default', name, labels: { 'kubernetes.io/service-name': service, ...labels } },
  addressType: 'IPv4', endpoints: [{ addresses: ['10.244.1.2'], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});

async function start(t: { teardown(fn: () => Promise<void>): void }, stub: StubApiServer, listPageSize?: number) {
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), logger: silentLogger, backoff: FAST, ...(listPageSize && { listPageSize }) });
  t.teardown(async () => { await source.stop(); await stub.close(); });
  await source.start();
  return source;
}

const names = (source: KubeSource, kind: 'Service' | 'EndpointSlice') => {
  const snap = source.store.snapshot();
  return [...(kind === 'Service' ? snap.services : snap.endpointSlices).keys()].sort();
};

test('a LIST comes in pages of limit objects, following continue tokens, all of one resourceVersion', async (t) => {
  const stub = await startStubApiServer();
  for (let i = 0; i < 23; i++) stub.apply('Service', svc(`s${String(i).padStart(2, '0')}`, `10.96.0.${i + 1}`));
  const source = await start(t, stub, 5);
  t.is(names(source, 'Service').length, 23);
  const lists = stub.requests.filter((r) => r.kind === 'Service' && !r.watch);
  t.is(lists.length, 5, 'ceil(23 / 5) pages');
  t.true(lists.every((r) => r.limit === 5));
  t.is(lists.filter((r) => r.continue !== null).length, 4);
});

test('the default page size is client-go\'s 500: no LIST answer grows with the cluster', async (t) => {
  const stub = await startStubApiServer();
  stub.apply('Service', svc('one', '10.96.0.1'));
  await start(t, stub);
  t.true(stub.requests.filter((r) => !r.watch).every((r) => r.limit === 500));
});

test('an expired continue token falls back to one full LIST, and the store is complete', async (t) => {
  const stub = await startStubApiServer();
  for (let i = 0; i < 7; i++) stub.apply('Service', svc(`s${i}`, `10.96.0.${i + 1}`));
  stub.expireContinueTokens = true;
  const source = await start(t, stub, 3);
  t.is(names(source, 'Service').length, 7);
  const lists = stub.requests.filter((r) => r.kind === 'Service' && !r.watch);
  t.deepEqual(lists.map((r) => [r.limit, r.continue !== null, r.status]), [[3, false, 200], [3, true, 410], [null, false, 200]]);
});

test('Services of another proxy and slices of headless Services are filtered by the API server, list and watch', async (t) => {
  const stub = await startStubApiServer();
  stub.apply('Service', svc('ours', '10.96.0.1'));
  stub.apply('Service', svc('theirs', '10.96.0.2', { 'service.kubernetes.io/service-proxy-name': 'other-proxy' }));
  stub.apply('EndpointSlice', slice('ours-1', 'ours'));
  stub.apply('EndpointSlice', slice('headless-1', 'headless', { 'service.kubernetes.io/headless': '' }));
  const source = await start(t, stub);
  t.deepEqual(names(source, 'Service'), ['default/ours']);
  t.deepEqual(names(source, 'EndpointSlice'), ['default/ours-1']);
  for (const kind of ['Service', 'EndpointSlice'] as const) {
    t.true(stub.requests.filter((r) => r.kind === kind).every((r) => r.labelSelector === PROXY_LABEL_SELECTOR), kind);
  }
  t.true(stub.requests.filter((r) => r.kind === 'Node').every((r) => r.labelSelector === null), 'Nodes are not label-filtered');
  // a Service handed to another proxy later leaves our store (the watch sends DELETED)
  stub.apply('Service', svc('ours', '10.96.0.1', { 'service.kubernetes.io/service-proxy-name': 'other-proxy' }));
  await until(() => names(source, 'Service').length === 0, 5000, 'the relabelled Service to leave the store');
  // and one that joins us arrives
  stub.apply('Service', svc('theirs', '10.96.0.2'));
  await until(() => names(source, 'Service').includes('default/theirs'), 5000, 'the unlabelled Service to arrive');
  t.pass();
});
