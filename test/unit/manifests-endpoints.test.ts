// A selector-less Service with a hand-made Endpoints object, as seed 002 shows it ("You can manually
// map the service to your own specific endpoints: kind: Endpoints ... subsets: - addresses: - ip:
// 1.2.3.4 ports: - port: 9376"; "The traffic will be routed to endpoints defined by the user").
// In a cluster the EndpointSliceMirroring controller turns it into EndpointSlices, which kube-proxy
// reads; standalone, the manifests reader mirrors it the same way (10.244.2.100 for the seed's 1.2.3.4).
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../src/cli/cli.js';
import { parseManifestText } from '../../src/source/manifests.js';

const seed = `kind: Service
apiVersion: v1
metadata:
  name: my-service
spec:
  clusterIP: 10.96.94.1
  ports:
  - protocol: TCP
    port: 80
    targetPort: 9376
---
kind: Endpoints
apiVersion: v1
metadata:
  name: my-service
subsets:
  - addresses:
      - ip: 10.244.2.100
    ports:
      - port: 9376
`;

async function compileJson(files: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-qa-ep-'));
  try {
    for (const [n, text] of Object.entries(files)) writeFileSync(join(dir, n), text);
    let stdout = '', stderr = '';
    const code = await runCli(['compile', '--manifests', dir, '--node-name', 'n1', '-o', 'json'], { stdout: (s) => { stdout += s; }, stderr: (s) => { stderr += s; } });
    return { code, stderr, frontends: (JSON.parse(stdout) as { frontends: { service: string; address: string; port: number; backends: { address: string; port: number; terminating: boolean }[] }[] }).frontends };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('seed 002: a selector-less Service with a hand-made Endpoints reaches the endpoints the user defined', async (t) => {
  const r = await compileJson({ 'my-service.yaml': seed });
  t.is(r.code, 0);
  t.is(r.stderr, '');
  t.deepEqual(r.frontends.map((f) => [f.service, f.address, f.port, f.backends]),
    [['default/my-service', '10.96.94.1', 80, [{ address: '10.244.2.100', port: 9376, terminating: false }]]]);
});

test('Endpoints mirror as the EndpointSliceMirroring controller mirrors them: notReadyAddresses not ready, both families, named ports, skip-mirror', (t) => {
  const text = `apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: data}
subsets:
- addresses: [{ip: 10.244.1.7, nodeName: n1}, {ip: "fd00:244::7"}, {ip: not-an-ip}]
  notReadyAddresses: [{ip: 10.244.1.8}]
  ports: [{name: pg, port: 5432}, {name: metrics, port: 9187, protocol: TCP, appProtocol: http}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: skipped, labels: {endpointslice.kubernetes.io/skip-mirror: "true"}}
subsets: [{addresses: [{ip: 10.244.1.9}], ports: [{port: 80}]}]
`;
  const { objects, problems } = parseManifestText('ep.yaml', text);
  t.deepEqual(problems.map((p) => p.message), ['Endpoints data/db subsets[0].addresses[2].ip: "not-an-ip" is not an IP address; skipped']);
  t.deepEqual(objects.map((o) => `${o.kind} ${o.key}`), ['EndpointSlice data/db-mirror-0', 'EndpointSlice data/db-mirror-0-ipv6']);
  const v4 = objects[0]!.obj as unknown as { addressType: string; metadata: { labels: Record<string, string> }; ports: unknown[]; endpoints: { addresses: string[]; conditions: { ready: boolean }; nodeName?: string }[] };
  t.is(v4.addressType, 'IPv4');
  t.is(v4.metadata.labels['kubernetes.io/service-name'], 'db');
  t.is(v4.ports.length, 2);
  t.deepEqual(v4.endpoints.map((e) => [e.addresses[0], e.conditions.ready, e.nodeName]), [['10.244.1.7', true, 'n1'], ['10.244.1.8', false, undefined]]);
});

test('a dual-stack selector-less Service reaches the mirrored endpoints of both families', async (t) => {
  const r = await compileJson({ 'ds.yaml': `apiVersion: v1
kind: Service
metadata: {name: ds}
spec:
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [10.96.94.2, "fd00:10:96::94:2"]
  ports: [{name: web, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: ds}
subsets:
- addresses: [{ip: 10.244.1.20}, {ip: "fd00:10:244:1::20"}]
  ports: [{name: web, port: 8080}]
` });
  t.is(r.stderr, '');
  t.deepEqual(r.frontends.map((f) => [f.address, f.backends.map((b) => `${b.address}:${b.port}`)]),
    [['10.96.94.2', ['10.244.1.20:8080']], ['fd00:10:96::94:2', ['fd00:10:244:1::20:8080']]]);
});
