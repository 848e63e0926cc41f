// Malformed objects that once stopped every sync (issue 8): a slice with `endpoints: [null]` for an
// eTP=Local LoadBalancer threw after the kernel was updated, and a Node with `taints: {}` threw in the
// health check, so the runner retried the same failing sync forever. Each must leave the agent
// syncing, with the canary Service programmed.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { Metrics } from '../../src/agent/metrics.js';

const canary = `
apiVersion: v1
kind: Service
metadata: { name: canary, namespace: default }
spec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: canary-1, namespace: default, labels: { kubernetes.io/service-name: canary } }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints: [{ addresses: [10.244.1.2], conditions: { ready: true }, nodeName: n1 }]
`;

const hostile: Record<string, string> = {
  'null endpoint in an eTP=Local LoadBalancer slice': `
apiVersion: v1
kind: Service
metadata: { name: lb, namespace: default }
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  clusterIP: 10.96.0.20
  ports: [{ name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: lb-1, namespace: default, labels: { kubernetes.io/service-name: lb } }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints: [null, { addresses: [10.244.1.3], conditions: { ready: true }, nodeName: n1 }]
`,
  'a Node whose taints are a map': `
apiVersion: v1
kind: Node
metadata: { name: n1 }
spec: { taints: {} }
status: { addresses: [{ type: InternalIP, address: 192.168.1.10 }] }
`,
  'endpoints that are not a list': `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: canary-2, namespace: default, labels: { kubernetes.io/service-name: canary } }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints: { not: a-list }
`,
};

for (const [what, yaml] of Object.entries(hostile)) {
  test(`${what}: the agent keeps syncing and the canary is served`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kbp-hostile-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'canary.yaml'), canary);
    writeFileSync(join(dir, 'hostile.yaml'), yaml);
    const dp = new FakeDataplane();
    const metrics = new Metrics({ processMetrics: false });
    const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
    const agent = new Agent({ source, dataplane: dp, metrics }, {
      compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
      seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
    });
    await agent.start();
    t.teardown(() => agent.stop());
    await agent.whenIdle();
    t.is((await metrics.registry.getSingleMetric('kubebpfproxy_sync_errors_total')!.get()).values[0]?.value ?? 0, 0, 'no failed sync');
    t.true([...dp.frontends.values()].some((f) => f.service === 'default/canary'), 'canary programmed');
    // and a later change still lands
    writeFileSync(join(dir, 'canary.yaml'), canary.replace('10.96.0.10', '10.96.0.11'));
    await source.scan();
    await agent.whenIdle();
    t.true([...dp.frontends.values()].some((f) => f.address === '10.96.0.11'), 'a later change lands');
  });
}
