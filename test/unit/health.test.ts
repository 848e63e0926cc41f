import test from 'ava';
import { createServer, request } from 'node:http';
import { ProxyHealth, ServiceHealthServers, close, healthCheckHosts, listen, parseBindAddress } from '../../src/agent/health.js';
import { Metrics } from '../../src/agent/metrics.js';

function get(port: number, path: string, host = '127.0.0.1'): Promise<{ code: number; body: any; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, timeout: 5000 }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ code: res.statusCode!, body: data.startsWith('{') ? JSON.parse(data) : data, headers: res.headers }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

test('healthz: healthy at start, 503 once a queued change waits longer than the timeout, 200 after a sync', async (t) => {
  let now = 1_000_000;
  const h = new ProxyHealth({ healthTimeoutMs: 60_000, now: () => now });
  const server = createServer((req, res) => h.handle(req, res));
  const { port } = await listen(server, '127.0.0.1', 0);
  t.teardown(() => close(server));

  t.is((await get(port, '/healthz')).code, 200);
  h.queued();
  now += 59_000;
  t.is((await get(port, '/healthz')).code, 200);
  now += 2000;
  const late = await get(port, '/healthz');
  t.is(late.code, 503);
  t.is((await get(port, '/livez')).code, 503);
  h.updated();
  const ok = await get(port, '/healthz');
  t.is(ok.code, 200);
  t.is(ok.body.nodeEligible, true);
  t.is(ok.body.currentTime, new Date(now).toISOString());
  t.is((await get(port, '/other')).code, 404);
});

test('healthz is 503 but livez 200 on a node tainted for deletion', async (t) => {
  const h = new ProxyHealth({ healthTimeoutMs: 1000 });
  const server = createServer((req, res) => h.handle(req, res));
  const { port } = await listen(server, '127.0.0.1', 0);
  t.teardown(() => close(server));
  h.syncNode({ metadata: { name: 'n1' }, spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] } });
  const hz = await get(port, '/healthz');
  t.is(hz.code, 503);
  t.is(hz.body.nodeEligible, false);
  t.is((await get(port, '/livez')).code, 200);
  h.syncNode({ metadata: { name: 'n1' }, spec: {} });
  t.is((await get(port, '/healthz')).code, 200);
});

test('healthCheckNodePort servers: 200 with the local endpoint count, 503 with none, closed when gone', async (t) => {
  const servers = new ServiceHealthServers({ host: '127.0.0.1' });
  t.teardown(() => servers.closeAll());
  // find two free ports
  const probe = createServer();
  const a = (await listen(probe, '127.0.0.1', 0)).port;
  await close(probe);
  const probe2 = createServer();
  const b = (await listen(probe2, '127.0.0.1', 0)).port;
  await close(probe2);

  await servers.sync(new Map([
    [a, { namespace: 'default', name: 'web', localEndpoints: 2 }],
    [b, { namespace: 'default', name: 'db', localEndpoints: 0 }],
  ]));
  const ra = await get(a, '/');
  t.is(ra.code, 200);
  t.deepEqual(ra.body, { service: { namespace: 'default', name: 'web' }, localEndpoints: 2, serviceProxyHealthy: true });
  t.is(ra.headers['x-load-balancing-endpoint-weight'], '2');
  t.is((await get(b, '/')).code, 503);

  await servers.sync(new Map([[b, { namespace: 'default', name: 'db', localEndpoints: 1 }]]));
  t.deepEqual(servers.ports(), [b]);
  t.is((await get(b, '/')).code, 200);
  await t.throwsAsync(get(a, '/'));
});

// kube-proxy's newServiceHealthServer (pkg/proxy/healthcheck/service_health.go): every address of
// both families when nodePortAddresses match all (Go's "0.0.0.0" listener is dual-stack), else one
// listener per node IP the NodePort addresses select
test('healthCheckNodePort servers listen on both families, or only on the NodePort addresses', async (t) => {
  t.deepEqual(healthCheckHosts(new Map([[4, ['0.0.0.0']], [6, ['::']]])), ['0.0.0.0']);
  t.deepEqual(healthCheckHosts(new Map([[4, ['192.168.1.1']], [6, ['::']]])), ['0.0.0.0']);
  t.deepEqual(healthCheckHosts(new Map([[4, ['192.168.1.2', '192.168.1.1']], [6, ['fd00::1']]])), ['192.168.1.1', '192.168.1.2', 'fd00::1']);
  t.deepEqual(healthCheckHosts(new Map()), ['0.0.0.0']);

  const probe = createServer();
  const port = (await listen(probe, '127.0.0.1', 0)).port;
  await close(probe);
  const servers = new ServiceHealthServers();
  t.teardown(() => servers.closeAll());
  const info = new Map([[port, { namespace: 'default', name: 'web', localEndpoints: 1 }]]);
  await servers.sync(info, ['0.0.0.0']);
  t.is((await get(port, '/', '127.0.0.1')).code, 200, 'IPv4');
  t.is((await get(port, '/', '::1')).code, 200, 'IPv6 too: Node\'s 0.0.0.0 alone would be IPv4 only');
  // the addresses change (nodePortAddresses selects the loopback only): re-opened there alone
  await servers.sync(info, ['127.0.0.1']);
  t.is((await get(port, '/', '127.0.0.1')).code, 200);
  await t.throwsAsync(get(port, '/', '::1'));
  await servers.sync(info, ['127.0.0.1', '::1']);
  t.is((await get(port, '/', '::1')).code, 200);
});

test('bind addresses parse as kube-proxy writes them', (t) => {
  t.deepEqual(parseBindAddress('0.0.0.0:10256', 'x'), { host: '0.0.0.0', port: 10256 });
  t.deepEqual(parseBindAddress('[::1]:10249', 'x'), { host: '::1', port: 10249 });
  t.deepEqual(parseBindAddress(':10249', 'x'), { host: '0.0.0.0', port: 10249 });
  t.is(parseBindAddress('', 'x'), undefined);
  t.throws(() => parseBindAddress('10249', '--metrics-bind-address'), { message: /--metrics-bind-address/ });
});

test('metrics expose kube-proxy names and map pressure', async (t) => {
  const m = new Metrics({ processMetrics: false });
  m.observeSync(0.004, false, ['IPv4', 'IPv6']);
  m.networkProgramming.observe({ ip_family: 'IPv4' }, 1.5);
  m.setMaps([{ name: 'lb_ct', entries: 256, capacity: 1024 }]);
  m.setDatapathEvents({ REJECT_NO_BACKEND: 3 });
  const text = await m.registry.metrics();
  // kube-proxy's names, labelled by ip_family as its per-family proxiers label them (pkg/proxy/metrics)
  t.regex(text, /kubeproxy_sync_proxy_rules_duration_seconds_count\{ip_family="IPv4"\} 1/);
  t.regex(text, /kubeproxy_sync_proxy_rules_duration_seconds_count\{ip_family="IPv6"\} 1/);
  t.regex(text, /kubeproxy_sync_partial_proxy_rules_duration_seconds_count\{ip_family="IPv4"\} 1/);
  t.notRegex(text, /kubeproxy_sync_full_proxy_rules_duration_seconds_count\{/);
  t.regex(text, /kubeproxy_sync_proxy_rules_service_changes_pending 0/);
  t.regex(text, /kubeproxy_sync_proxy_rules_endpoint_changes_pending 0/);
  // upstream's buckets: 0.25, 0.5, then whole seconds to 59, ...
  t.regex(text, /kubeproxy_network_programming_duration_seconds_bucket\{le="2",ip_family="IPv4"\} 1/);
  t.regex(text, /kubeproxy_network_programming_duration_seconds_bucket\{le="1",ip_family="IPv4"\} 0/);
  t.regex(text, /kubebpfproxy_bpf_map_pressure\{map="lb_ct"\} 0.25/);
  t.regex(text, /kubebpfproxy_datapath_events_total\{reason="REJECT_NO_BACKEND"\} 3/);
});

test('a Node gone after being seen: ineligible for the API server\'s (kube-proxy exits), not for a manifests folder\'s, where a Node is optional', (t) => {
  const node = { metadata: { name: 'n1' } };
  const api = new ProxyHealth({ healthTimeoutMs: 1000 });
  api.syncNode(undefined);
  t.true(api.nodeEligible, 'never seen: no news');
  api.syncNode(node);
  api.syncNode(undefined);
  t.false(api.nodeEligible);
  api.syncNode(node);
  t.true(api.nodeEligible);
  const folder = new ProxyHealth({ healthTimeoutMs: 1000 });
  folder.syncNode(node, false);
  folder.syncNode(undefined, false);
  t.true(folder.nodeEligible);
});
