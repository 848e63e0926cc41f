// The Kubernetes source lists as client-go does: in pages (limit/continue) with a full-list fallback
// when the continue token expires, and with kube-proxy's label selector, so Services of another proxy
// and slices of headless Services never reach the store (cmd/kube-proxy/app/server.go, the informer
// factory's WithTweakListOptions; client-go tools/pager ListPager.List with FullListIfExpired).
import test from 'ava';
import { waitFor } from '../../testing/wait.js';
import http from 'node:http';
import { leadingContinue, listObjects } from '../../src/source/kube-http.js';
import { createKubeSource, PROXY_LABEL_SELECTOR, type KubeSource } from '../../src/source/kube.js';
import { silentLogger } from '../../src/util/log.js';
import { startStubApiServer, type StubApiServer } from '../../testing/stub-apiserver.js';
import { localKubeConfig } from '../../testing/local-kubeconfig.js';

const FAST = { initialMs: 10, maxMs: 100, factor: 2, jitter: 0.5 };

const until = (cond: () => boolean, timeoutMs = 5000, what = 'condition') => waitFor(cond, what, timeoutMs);

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

test('a first list stored page by page, then read whole after its token expired: an object deleted meanwhile is not kept', async (t) => {
  const stub = await startStubApiServer();
  for (let i = 0; i < 7; i++) stub.apply('Service', svc(`s${i}`, `10.96.0.${i + 1}`));
  stub.expireContinueTokens = true;
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), logger: silentLogger, backoff: FAST, listPageSize: 3 });
  t.teardown(async () => { await source.stop(); await stub.close(); });
  // the first page is stored; s0 goes before the whole read
  let removed = false;
  source.store.onChange((kind, key) => { if (kind === 'Service' && key === 'default/s0' && !removed) removed = stub.remove('Service', 'default', 's0'); });
  await source.start();
  t.true(removed);
  t.deepEqual(names(source, 'Service'), ['default/s1', 'default/s2', 'default/s3', 'default/s4', 'default/s5', 'default/s6']);
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

test('the stub\'s LIST pages are JSON.stringify\'s bytes of the stored objects, a changed object served changed', async (t) => {
  // the stub keeps each object's JSON from its first LIST (a bench's server CPU is not the agent's)
  const stub = await startStubApiServer();
  t.teardown(() => stub.close());
  for (let i = 0; i < 7; i++) stub.apply('Service', svc(`s${i}`, `10.96.0.${i + 1}`));
  const get = (q: string) => new Promise<string>((resolve, reject) => {
    http.get(`${stub.url}/api/v1/services${q}`, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    }).on('error', reject);
  });
  const pages = async () => {
    const out: Array<{ metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number }; items: Array<{ metadata: { name: string }; spec: { clusterIP: string } }> }> = [];
    let token = '';
    do {
      const text = await get(`?limit=3${token && `&continue=${token}`}`);
      const page = JSON.parse(text) as (typeof out)[number];
      t.is(text, JSON.stringify(page), 'compact JSON, in the order it parses');
      t.deepEqual(Object.keys(page), ['kind', 'apiVersion', 'metadata', 'items']);
      out.push(page);
      token = page.metadata.continue ?? '';
    } while (token);
    return out;
  };
  const first = await pages();
  t.deepEqual(first.map((p) => p.items.map((o) => o.metadata.name)), [['s0', 's1', 's2'], ['s3', 's4', 's5'], ['s6']]);
  t.deepEqual(first.map((p) => p.metadata.remainingItemCount), [4, 1, undefined]);
  t.true(first.every((p) => p.metadata.resourceVersion === stub.resourceVersion));
  stub.apply('Service', svc('s4', '10.96.1.4'));
  const second = await pages();
  t.is(second[1]!.items[1]!.spec.clusterIP, '10.96.1.4');
  t.is(second[1]!.items[0]!.spec.clusterIP, '10.96.0.4');
  t.true(second.every((p) => p.metadata.resourceVersion === stub.resourceVersion));
});

test('the continue token read from an answer\'s head is what the parsed answer says, or nothing', (t) => {
  const b = (s: string) => s;
  // kube-apiserver's field order: TypeMeta, ListMeta, items
  t.is(leadingContinue(b('{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"12","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ","remainingItemCount":9500},"items":[{"metadata":{"continue":"no"}}]}')),
    'eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ');
  t.is(leadingContinue(b('{"metadata":{"continue":"a\\u0062\\"c"},"items":[]}')), 'ab"c', 'escapes as JSON.parse reads them');
  t.is(leadingContinue(b('{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"12"},"items":[]}')), undefined, 'the last page');
  t.is(leadingContinue(b('{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"12","continue":""},"items":[]}')), undefined);
  t.is(leadingContinue(b('{"items":[],"metadata":{"continue":"x"}}')), undefined, 'items first: nothing guessed');
  t.is(leadingContinue(b('{\n  "metadata": {"continue": "x"},\n  "items": []}')), undefined, 'pretty-printed: nothing guessed');
  t.is(leadingContinue(b('{"kind":"ServiceList","metadata":{"labels":{"continue":"x"}},"items":[]}')), undefined, 'a nested object: nothing guessed');
  t.is(leadingContinue(b('{"kind":"ServiceList","metadata":{"continue":7},"items":[]}')), undefined);
  t.is(leadingContinue(b('not json')), undefined);
});

test('a page asked for ahead on a token the parsed answer does not confirm is dropped, and the confirmed page read', async (t) => {
  // JSON.parse keeps the last of two "metadata" keys: the head says one token, the answer another
  const all = Array.from({ length: 5 }, (_, i) => svc(`s${i}`, `10.96.0.${i + 1}`));
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const tok = u.searchParams.get('continue') ?? '';
    asked.push(tok);
    const from = tok ? Number(tok.slice(1)) : 0;
    const items = all.slice(from, from + 2);
    const next = from + 2 < all.length ? `p${from + 2}` : '';
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(`{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"7"${next ? ',"continue":"wrong"' : ''}},"items":${JSON.stringify(items)},"metadata":{"resourceVersion":"7"${next ? `,"continue":"${next}"` : ''}}}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const kc = localKubeConfig(server);
  const res = await listObjects<{ metadata: { name: string } }>(kc, '/api/v1/services', 'services', { signal: new AbortController().signal, timeoutMs: 5000, pageSize: 2 });
  t.deepEqual(res.items.map((o) => o.metadata.name), ['s0', 's1', 's2', 's3', 's4']);
  t.is(res.resourceVersion, '7');
  // every confirmed page once, in order; the unconfirmed guesses (asked or cancelled before they
  // were) are the only others
  t.deepEqual(asked.filter((x) => x !== 'wrong'), ['', 'p2', 'p4']);
});

test('a list\'s pages share one connection, closed when the list ends', async (t) => {
  const all = [1, 2, 3, 4].map((i) => svc(`s${i}`, `10.96.0.${i}`));
  let connections = 0;
  const server = http.createServer((req, res) => {
    const i = Number(new URL(req.url!, 'http://x').searchParams.get('continue') ?? 0);
    const next = i + 1 < all.length ? `,"continue":"${i + 1}"` : '';
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(`{"metadata":{"resourceVersion":"5"${next}},"items":[${JSON.stringify(all[i])}]}`);
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const res = await listObjects(localKubeConfig(server), '/api/v1/services', 'services', { signal: new AbortController().signal, timeoutMs: 5000, pageSize: 1 });
  t.is(res.items.length, 4);
  t.is(connections, 1);
  // (the count comes back on a later tick: the next poll reads it)
  let open = -1;
  await until(() => { server.getConnections((_e, n) => { open = n; }); return open === 0; }, 4000, 'the connection closed');
  t.pass();
});

test('pages sent chunked (no length), larger each time, a character split between chunks: each read whole', async (t) => {
  // an answer's bytes go into a buffer kept from one answer to the next (kube-http.ts Body): it
  // must grow past a smaller page's, and decode only once the answer is whole
  const names = ['ä-0', 'x'.repeat(70_000) + '€', 'ü'.repeat(150_000), 'end'];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const i = Number(u.searchParams.get('continue') ?? 0);
    const next = i + 1 < names.length ? `,"continue":"${i + 1}"` : '';
    const body = Buffer.from(`{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"3"${next}},"items":[{"metadata":{"name":${JSON.stringify(names[i])}}}]}`);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    // odd-sized writes: a multi-byte character lands across two of them
    for (let at = 0; at < body.length; at += 4099) res.write(body.subarray(at, at + 4099));
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const kc = localKubeConfig(server);
  for (let round = 0; round < 2; round++) {
    const res = await listObjects<{ metadata: { name: string } }>(kc, '/api/v1/services', 'services', { signal: new AbortController().signal, timeoutMs: 5000, pageSize: 1 });
    t.deepEqual(res.items.map((o) => o.metadata.name), names);
  }
});

test('a first LIST reaches the store page by page (the agent compiles it meanwhile), each object once', async (t) => {
  const stub = await startStubApiServer();
  for (let i = 0; i < 12; i++) stub.apply('Service', svc(`s${String(i).padStart(2, '0')}`, `10.96.0.${i + 1}`));
  stub.listDelayMs = 30;
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), logger: silentLogger, backoff: FAST, listPageSize: 3 });
  t.teardown(async () => { await source.stop(); await stub.close(); });
  const events: string[] = [];
  const seen = new Set<number>();
  source.store.onChange((kind, key) => { if (kind === 'Service') events.push(key); });
  const poll = setInterval(() => { if (!source.synced) seen.add(source.store.view().services.size); }, 5);
  await source.start();
  clearInterval(poll);
  t.true([...seen].some((n) => n > 0 && n < 12), `store sizes seen while listing: ${[...seen].join(', ')}`);
  t.is(names(source, 'Service').length, 12);
  // the replace() that ends the list finds each object already stored: no second event
  t.deepEqual(events.slice().sort(), names(source, 'Service'));
});
