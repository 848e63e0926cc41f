// kube-proxy's sync metrics as the agent feeds them: full then partial syncs, pending changes, and
// network programming latency from the EndpointSlice controller's last-change-trigger-time
// annotation (kube-proxy: EndpointSliceCache / endpointsChangeTracker.lastChangeTriggerTimes),
// per family by the slice's addressType.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, TRIGGER_TIME_ANNOTATION } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { Metrics } from '../../src/agent/metrics.js';

const yaml = (trigger: string, ip: string) => `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: { kubernetes.io/service-name: web }
  annotations: { ${TRIGGER_TIME_ANNOTATION}: "${trigger}" }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints: [{ addresses: [${ip}], conditions: { ready: true }, nodeName: n1 }]
`;

const value = async (m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> => {
  const got = await m.registry.getSingleMetric(name)!.get();
  return got.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
};

test('the first sync is full, later ones partial; network programming latency starts at the trigger-time annotation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const metrics = new Metrics({ processMetrics: false });
  writeFileSync(join(dir, 'web.yaml'), yaml(new Date(Date.now() - 7_000).toISOString(), '10.244.1.2'));
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const agent = new Agent({ source, dataplane: new FakeDataplane(), metrics }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }, seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
    // as if the agent had started 10 s ago (kube-proxy counts trigger times after its start only)
    triggersAfterMs: Date.now() - 10_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();

  // a change whose controller wrote it 3 s ago: the histogram's sum grows by ~3 s, under le=5
  writeFileSync(join(dir, 'web.yaml'), yaml(new Date(Date.now() - 3_000).toISOString(), '10.244.1.3'));
  await source.scan();
  await agent.whenIdle();
  const h = await metrics.registry.getSingleMetric('kubeproxy_network_programming_duration_seconds')!.get();
  const count = h.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.ip_family === 'IPv4')?.value ?? 0;
  const sum = h.values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_sum') && v.labels.ip_family === 'IPv4')?.value ?? 0;
  t.true(count >= 1, `count ${count}`);
  t.true(sum >= 3 && sum < 60, `sum ${sum}`);
  const partial = (await metrics.registry.getSingleMetric('kubeproxy_sync_partial_proxy_rules_duration_seconds')!.get())
    .values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.ip_family === 'IPv4')?.value ?? 0;
  t.true(partial >= 1, 'the change is synced partially');
  const full = (await metrics.registry.getSingleMetric('kubeproxy_sync_full_proxy_rules_duration_seconds')!.get())
    .values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.ip_family === 'IPv4')?.value ?? 0;
  t.is(full, 1, 'one full sync: the first');
  t.is(await value(metrics, 'kubeproxy_sync_proxy_rules_endpoint_changes_pending'), 0);
  t.is(await value(metrics, 'kubeproxy_sync_proxy_rules_service_changes_pending'), 0);
});

// kube-proxy's endpointsChangeTracker records a slice's trigger time only when it is after the
// tracker's start (pkg/proxy/endpointschangetracker.go: t.After(ect.trackerStartTime)): a slice
// the initial list brings was changed before the proxy ran, and its age is no programming latency.
// Recorded, a restart observed every slice's age at its first sync (days, for an old Service), and
// 10,000 of them at 10,000 Services inside that sync
test('network programming latency: a trigger time from before the agent started is not observed; one after it is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const metrics = new Metrics({ processMetrics: false });
  writeFileSync(join(dir, 'web.yaml'), yaml(new Date(Date.now() - 86_400_000).toISOString(), '10.244.1.2'));
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const agent = new Agent({ source, dataplane: new FakeDataplane(), metrics }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }, seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  const startedAt = Date.now();
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const count = async () => (await metrics.registry.getSingleMetric('kubeproxy_network_programming_duration_seconds')!.get())
    .values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.ip_family === 'IPv4')?.value ?? 0;
  t.is(await count(), 0, 'the listed slice, changed a day before the start: not observed');
  // a change the controller made after the start
  writeFileSync(join(dir, 'web.yaml'), yaml(new Date(Math.max(Date.now(), startedAt + 1)).toISOString(), '10.244.1.3'));
  await source.scan();
  await agent.whenIdle();
  t.is(await count(), 1, 'the change after the start: observed');
});

// standalone nothing writes the annotation and a change counts from when the agent saw it; the
// folder's first read is what kube-proxy's first list is, and is not observed either
test('network programming latency, standalone: the first read\'s slices are not observed; a change seen after it is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-metrics-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const metrics = new Metrics({ processMetrics: false });
  const plain = (ip: string) => yaml('', ip).replace(/^  annotations: .*\n/m, '');
  writeFileSync(join(dir, 'web.yaml'), plain('10.244.1.2'));
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const agent = new Agent({ source, dataplane: new FakeDataplane(), metrics }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }, seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const count = async () => (await metrics.registry.getSingleMetric('kubeproxy_network_programming_duration_seconds')!.get())
    .values.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.ip_family === 'IPv4')?.value ?? 0;
  t.is(await count(), 0, 'the slice of the first read: not observed');
  writeFileSync(join(dir, 'web.yaml'), plain('10.244.1.3'));
  await source.scan();
  await agent.whenIdle();
  t.is(await count(), 1, 'the change after it: observed');
});

// prom-client samples the event loop's delay with a timer of its own (perf_hooks.monitorEventLoopDelay):
// at its default 10 ms it woke an idle agent 100 times a second (~16 ms of main-thread CPU a second
// here), at 100 ms still 10 times (most of an idle agent's wake-ups)
test('the process metrics sample the event loop no more often than once a second', async (t) => {
  const perfHooks = (await import('node:perf_hooks')).default;
  const real = perfHooks.monitorEventLoopDelay;
  const asked: Array<number | undefined> = [];
  perfHooks.monitorEventLoopDelay = ((o?: { resolution?: number }) => {
    asked.push(o?.resolution);
    return real(o);
  }) as typeof real;
  try {
    const m = new Metrics();
    t.true((await m.registry.metrics()).includes('nodejs_eventloop_lag_p99_seconds'));
  } finally {
    perfHooks.monitorEventLoopDelay = real;
  }
  t.is(asked.length, 1);
  t.true(asked[0]! >= 1000, `resolution ${asked[0]} ms`);
});
