// The agent logs an object's problems when they appear or change, not at every sync (issue 8), and
// sets kube-proxy's kubeproxy_sync_proxy_rules_no_local_endpoints_total from compile's count, as
// syncProxyRules does (pkg/proxy/iptables/proxier.go, serviceNoLocalEndpointsTotalInternal/External).
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { Metrics } from '../../src/agent/metrics.js';

const bad = (ip: string) => `
apiVersion: v1
kind: Service
metadata: { name: bad, namespace: default }
spec: { clusterIP: ${ip}, ports: [{ port: 80 }] }
`;
const newer = `
apiVersion: v1
kind: Service
metadata: { name: newer, namespace: default }
spec: { clusterIP: 10.96.0.11, sessionAffinity: Cookie, ports: [{ port: 80 }] }
`;
const local = `
apiVersion: v1
kind: Service
metadata: { name: local, namespace: default }
spec: { clusterIP: 10.96.0.12, type: NodePort, externalTrafficPolicy: Local, internalTrafficPolicy: Local, ports: [{ port: 80, nodePort: 30080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: local-1, namespace: default, labels: { kubernetes.io/service-name: local } }
addressType: IPv4
ports: [{ port: 80 }]
endpoints: [{ addresses: [10.244.2.2], nodeName: n2 }]
`;

test('a rejected or warned-about object is logged once per change; the no-local-endpoints gauge follows compile', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-objerr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  const log = pino({ level: 'info' }, sink);
  writeFileSync(join(dir, 'a.yaml'), bad('10.96.0.999') + '---' + newer + '---' + local);
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const metrics = new Metrics({ processMetrics: false });
  const agent = new Agent({ source, dataplane: new FakeDataplane(), log, metrics }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }, seed: 1, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const about = (name: string) => lines.filter((l) => l.object === `Service default/${name}`);
  t.is(about('bad').length, 1);
  t.is(about('bad')[0]!.severity, 'error');
  t.is(about('newer').length, 1);
  t.is(about('newer')[0]!.field, 'spec.sessionAffinity');

  const gauge = async () => Object.fromEntries((await metrics.noLocalEndpoints.get()).values.map((v) => [`${v.labels.ip_family}/${v.labels.traffic_policy}`, v.value]));
  t.deepEqual(await gauge(), { 'IPv4/internal': 1, 'IPv4/external': 1, 'IPv6/internal': 0, 'IPv6/external': 0 });

  // more syncs with nothing changed: nothing more is logged
  for (let i = 0; i < 3; i++) {
    agent.requestSync();
    await agent.whenIdle();
  }
  const syncs = agent.syncs;
  t.is(about('bad').length, 1);
  t.is(about('newer').length, 1);

  // the rejection changes: logged again, once
  writeFileSync(join(dir, 'a.yaml'), bad('10.96.0.998') + '---' + newer + '---' + local);
  await source.scan();
  await agent.whenIdle();
  t.true(agent.syncs > syncs);
  t.is(about('bad').length, 2);
  t.regex(String(about('bad')[1]!.msg), /10\.96\.0\.998/);
  t.is(about('newer').length, 1);

  // fixed: one line says so; the Local Service gone: the gauge drops to 0
  writeFileSync(join(dir, 'a.yaml'), bad('10.96.0.20') + '---' + newer);
  await source.scan();
  await agent.whenIdle();
  t.is(about('bad').length, 3);
  t.regex(String(about('bad')[2]!.msg), /no longer/);
  t.deepEqual(await gauge(), { 'IPv4/internal': 0, 'IPv4/external': 0, 'IPv6/internal': 0, 'IPv6/external': 0 });
});
