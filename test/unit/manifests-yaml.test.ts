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
