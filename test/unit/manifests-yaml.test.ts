// YAML as kubectl reads it (sigs.k8s.io/yaml over go-yaml, whose resolver takes `<<` merge keys):
// a manifest that shares fields through anchors and merge keys reads with the merged fields.
import test from 'ava';
import { parseManifestText } from '../../src/source/manifests.js';

const text = `apiVersion: v1
kind: List
items:
- &base
  apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: &spec
    selector: {app: x}
    ports: [{port: 80}]
    clusterIP: 10.96.92.1
- <<: *base
  metadata: {name: b}
  spec:
    <<: *spec
    clusterIP: 10.96.92.2
- apiVersion: v1
  kind: Service
  metadata:
    name: c
    <<: [{namespace: merged}, {namespace: second}]
  spec: {clusterIP: 10.96.92.3, ports: [{port: 81}]}
`;

test('merge keys (<<) merge as kubectl merges them; the keys of the mapping itself win', (t) => {
  const { ok, objects, problems } = parseManifestText('m.yaml', text);
  t.true(ok);
  t.deepEqual(problems, []);
  const byName = new Map(objects.map((o) => [o.key, o.obj as { spec: { clusterIP: string; ports: { port: number }[] } }]));
  t.deepEqual([...byName.keys()], ['default/a', 'default/b', 'merged/c']);
  t.is(byName.get('default/b')!.spec.clusterIP, '10.96.92.2');
  t.deepEqual(byName.get('default/b')!.spec.ports.map((p) => p.port), [80]);
});

test('a key named "<<" in quotes is a plain key, not a merge', (t) => {
  const { objects } = parseManifestText('q.yaml', 'apiVersion: v1\nkind: Service\nmetadata:\n  name: q\n  annotations:\n    "<<": kept\nspec: {clusterIP: 10.96.92.4, ports: [{port: 80}]}\n');
  t.is(objects.length, 1);
});

test('typed lists (ServiceList, EndpointSliceList, NodeList: what the API server returns) unwrap as kubectl unwraps any object with items', (t) => {
  const text = JSON.stringify({ apiVersion: 'v1', kind: 'ServiceList', metadata: { resourceVersion: '7' }, items: [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'sl1', namespace: 'x' }, spec: { clusterIP: '10.96.93.3', ports: [{ port: 80 }] } },
  ] });
  const slices = 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nitems:\n- kind: EndpointSlice\n  apiVersion: discovery.k8s.io/v1\n  metadata: {name: sl1-x, namespace: x, labels: {kubernetes.io/service-name: sl1}}\n  addressType: IPv4\n  ports: [{port: 80}]\n  endpoints: [{addresses: [10.244.3.3]}]\n';
  const a = parseManifestText('svc.json', text), b = parseManifestText('es.yaml', slices);
  t.deepEqual(a.problems, []);
  t.deepEqual(a.objects.map((o) => `${o.kind} ${o.key}`), ['Service x/sl1']);
  t.deepEqual(b.objects.map((o) => `${o.kind} ${o.key}`), ['EndpointSlice x/sl1-x']);
});

test('a stream of JSON objects (kubectl get -o json >> file) reads each, with its line, as kubectl\'s JSON decoder does', (t) => {
  const one = (n: string, ip: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: n }, spec: { clusterIP: ip, ports: [{ port: 80 }] } }, null, 2);
  const text = `${one('j1', '10.96.93.1')}\n${one('j2', '10.96.93.2')}${one('j3', '10.96.93.3')}\n`;
  const { ok, objects, problems } = parseManifestText('stream.json', text);
  t.true(ok);
  t.deepEqual(problems, []);
  t.deepEqual(objects.map((o) => `${o.key}@${o.line}`), ['default/j1@1', `default/j2@${one('x', 'y').split('\n').length + 1}`, `default/j3@${2 * one('x', 'y').split('\n').length}`]);
  // a stream broken in its second object is a syntax error of the file, as before
  t.false(parseManifestText('bad.json', `${one('j1', '10.96.93.1')}\n{"kind": "Service",`).ok);
});

test('a misspelt field of a Service is named on a warning line with what it most likely meant (kubectl\'s strict field validation refuses it)', (t) => {
  const text = `apiVersion: v1
kind: Service
metadata: {name: typo}
spec:
  type: NodePort
  clusterIp: 10.96.99.1
  externalTrafficPolicy: Local
  ports:
  - port: 80
    targetport: 8080
    nodePort: 30990
  - name: b
    port: 81
    nodeport: 30991
    frobnicate: 1
`;
  const { ok, objects, problems } = parseManifestText('typo.yaml', text);
  t.true(ok);
  t.is(objects.length, 1, 'the Service is still read, as the API server reads it without the field');
  t.deepEqual(problems.map((p) => `${p.line}: ${p.message}`), [
    '1: Service default/typo spec.clusterIp: unknown field (did you mean clusterIP?); ignored',
    '1: Service default/typo spec.ports[0].targetport: unknown field (did you mean targetPort?); ignored',
    '1: Service default/typo spec.ports[1].nodeport: unknown field (did you mean nodePort?); ignored',
    '1: Service default/typo spec.ports[1].frobnicate: unknown field; ignored',
  ]);
  // the fields of every Service in the repository's examples and fixtures are known
  const seeds = parseManifestText('s.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec:\n  ipFamily: IPv6\n  topologyKeys: ["*"]\n  ports: [{name: a, port: 80, appProtocol: http}]\n');
  t.deepEqual(seeds.problems, []);
});
