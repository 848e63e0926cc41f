// The metrics server's paths as kube-proxy's serveMetrics (cmd/kube-proxy/app/server.go) has them:
// /metrics, /healthz ("ok") and /proxyMode, the mode in use as text (what `curl :10249/proxyMode`,
// the documented way to see kube-proxy's mode, reads).
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/agent/launch.js';
import { DEFAULTS } from '../../src/agent/config.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { silentLogger } from '../../src/util/log.js';
import { waitFor } from '../../testing/wait.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('the metrics server answers /proxyMode with the data plane in use, /healthz with ok, /metrics, and 404 elsewhere', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const running = await startAgent({ ...DEFAULTS, manifests: dir, nodeName: 'n1', healthzBindAddress: '', metricsBindAddress: `127.0.0.1:${port}`, ignored: [] },
    silentLogger, { dataplane: new FakeDataplane(), source: new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 }) });
  t.teardown(() => running.stop());
  const get = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: r.status, type: r.headers.get('content-type'), nosniff: r.headers.get('x-content-type-options'), body: await r.text() };
  };
  t.deepEqual(await get('/proxyMode'), { status: 200, type: 'text/plain; charset=utf-8', nosniff: 'nosniff', body: 'fake' });
  const hz = await get('/healthz');
  t.is(hz.status, 200);
  t.is(hz.body, 'ok');
  const m = await get('/metrics');
  t.is(m.status, 200);
  t.regex(m.body, /kubeproxy_sync_proxy_rules_last_timestamp_seconds/);
  t.is((await get('/nope')).status, 404);
});

// kube-proxy's serveHealthz / serveMetrics (cmd/kube-proxy/app/server.go): a server that cannot
// listen is retried every 5 s unless bindAddressHardFail, which makes the failure fatal. A node whose
// kube-proxy still holds :10256 while the agent replaces it must not crash-loop the agent.
test('a health or metrics port in use is retried until it is free (bindAddressHardFail false, kube-proxy\'s default); with bindAddressHardFail the start fails, exit 2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(port, '127.0.0.1', r));
  const settings = { ...DEFAULTS, manifests: dir, nodeName: 'n1', healthzBindAddress: `127.0.0.1:${port}`, metricsBindAddress: '', ignored: [] };

  const e = await t.throwsAsync(startAgent({ ...settings, bindAddressHardFail: true }, silentLogger,
    { dataplane: new FakeDataplane(), source: new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 }) }));
  t.regex(e?.message ?? '', /--healthz-bind-address .*EADDRINUSE/);

  const running = await startAgent(settings, silentLogger,
    { dataplane: new FakeDataplane(), source: new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 }), bindRetryMs: 20 });
  t.teardown(() => running.stop());
  await new Promise<void>((r) => holder.close(() => r()));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/livez`).catch(() => undefined))?.status === 200, 'the healthz server on the freed port', 8000, 20);
});
