// The agent's healthCheckNodePort servers follow LoadBalancer Services with externalTrafficPolicy
// Local as they are created, changed and deleted: the set of them the agent keeps follows each
// Service list's edits from the last one it synced (agent.ts healthCheckWanted), and must give at
// every sync what a walk of every Service gives (kube-proxy's ServiceHealthServer.SyncServices:
// a server per such Service's healthCheckNodePort, with its count of local ready endpoints).
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { ServiceHealthServers, type ServiceHealthInfo } from '../../src/agent/health.js';
import { Metrics } from '../../src/agent/metrics.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { webYaml } from './agent-helpers.js';

/** Records what each sync asks for; opens no server. */
class Recorded extends ServiceHealthServers {
  last: Array<[number, ServiceHealthInfo]> = [];
  override async sync(wanted: Map<number, ServiceHealthInfo>): Promise<void> {
    this.last = [...wanted].sort((a, b) => a[0] - b[0]);
  }
}

const lbYaml = (name: string, hc: number, ips: string[], type = 'LoadBalancer', etp = 'Local'): string => `
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  type: ${type}
  externalTrafficPolicy: ${etp}
  ${type === 'LoadBalancer' && etp === 'Local' ? `healthCheckNodePort: ${hc}` : ''}
  clusterIP: 10.96.1.${hc - 32000}
  ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP${type === 'ClusterIP' ? '' : `, nodePort: ${hc - 2000}`} }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-1, namespace: default, labels: { kubernetes.io/service-name: ${name} } }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints:
${ips.map((a) => `  - { addresses: [${a}], conditions: { ready: true }, nodeName: n1 }`).join('\n')}
`;

test('healthCheckNodePort servers follow Services created, changed, deleted and created again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-agent-hc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const serviceHealth = new Recorded();
  // from the API server (not standalone): the healthCheckNodePorts are the objects' own
  const agent = new Agent({ source, dataplane: new FakeDataplane(), metrics: new Metrics({ processMetrics: false }), serviceHealth }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'] }, seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const step = async (f: () => void): Promise<Array<[number, string, number]>> => {
    f();
    await source.scan();
    await agent.whenIdle();
    return serviceHealth.last.map(([port, i]) => [port, `${i.namespace}/${i.name}`, i.localEndpoints]);
  };
  t.deepEqual(await step(() => {}), []);
  t.deepEqual(await step(() => writeFileSync(join(dir, 'a.yaml'), lbYaml('a', 32001, ['10.244.1.3', '10.244.1.4']))), [[32001, 'default/a', 2]]);
  t.deepEqual(await step(() => writeFileSync(join(dir, 'b.yaml'), lbYaml('b', 32002, ['10.244.1.5']))), [[32001, 'default/a', 2], [32002, 'default/b', 1]]);
  // a's port moves; then a becomes eTP Cluster (no server); a Service of another kind comes and goes
  t.deepEqual(await step(() => writeFileSync(join(dir, 'a.yaml'), lbYaml('a', 32003, ['10.244.1.3']))), [[32002, 'default/b', 1], [32003, 'default/a', 1]]);
  t.deepEqual(await step(() => writeFileSync(join(dir, 'a.yaml'), lbYaml('a', 32003, ['10.244.1.3'], 'LoadBalancer', 'Cluster'))), [[32002, 'default/b', 1]]);
  t.deepEqual(await step(() => writeFileSync(join(dir, 'c.yaml'), lbYaml('c', 32004, ['10.244.1.6'], 'ClusterIP', 'Cluster'))), [[32002, 'default/b', 1]]);
  t.deepEqual(await step(() => rmSync(join(dir, 'b.yaml'))), []);
  // b again, the same name, another port
  t.deepEqual(await step(() => writeFileSync(join(dir, 'b.yaml'), lbYaml('b', 32005, ['10.244.1.5', '10.244.1.7']))), [[32005, 'default/b', 2]]);
  // an endpoint change only: the count follows (the list is the same)
  t.deepEqual(await step(() => writeFileSync(join(dir, 'b.yaml'), lbYaml('b', 32005, ['10.244.1.5']))), [[32005, 'default/b', 1]]);
});
