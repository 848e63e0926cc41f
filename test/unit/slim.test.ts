// What the sources keep of each object (src/source/slim.ts): only what is read, and nothing that
// changes what normalize makes of it, errors included.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { CORE_SCHEMA, loadAll } from 'js-yaml';
import { apiNode, apiService, apiSlice } from '../../bench/apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from '../../bench/gen.js';
import { normalizeEndpointSlice, normalizeNode, normalizeService } from '../../src/model/normalize.js';
import type { ObjectError } from '../../src/model/types.js';
import { parseManifestText } from '../../src/source/manifests.js';
import { KEPT_LABELS, slimObject } from '../../src/source/slim.js';
import type { Kind, KindMap } from '../../src/source/types.js';
import { anyObject } from '../../testing/fuzz-objects.js';
import { slimObjectJson } from '../../testing/slim-json.js';

const KEPT = [...KEPT_LABELS];
const SHAPE: ClusterShape = { services: 10, endpointsPerService: 10, nodePortEvery: 2 };

/** what an API server adds to every object, none of it read */
const noise = {
  uid: '6f1c2b9e-0000-4000-8000-000000000001',
  creationTimestamp: '2026-01-01T00:00:00Z',
  managedFields: [{ manager: 'kube-controller-manager', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': {} } } }],
  ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'x', controller: true }],
  annotations: { 'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(2000), 'endpoints.kubernetes.io/last-change-trigger-time': '2026-01-01T00:00:00Z' },
  labels: { app: 'web', 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
};

function run(kind: Kind, raw: unknown): { model: unknown; errors: ObjectError[] } {
  const errors: ObjectError[] = [];
  const model = kind === 'Service' ? normalizeService(raw, 'k', errors)
    : kind === 'EndpointSlice' ? normalizeEndpointSlice(raw, 'k', errors) : normalizeNode(raw, 'k');
  return { model, errors };
}

test('normalize makes the same model and the same errors of a slimmed object (fuzz)', (t) => {
  fc.assert(fc.property(anyObject, fc.constantFrom<Kind>('Service', 'EndpointSlice', 'Node'), fc.boolean(), (obj, asKind, withNoise) => {
    // what a source hands over is JSON (or YAML read as JSON would be)
    const raw = JSON.parse(JSON.stringify(obj ?? null)) as unknown;
    const kind = (raw && typeof raw === 'object' && ['Service', 'EndpointSlice', 'Node'].includes((raw as { kind?: string }).kind ?? '')
      ? (raw as { kind: Kind }).kind : asKind);
    const m = (raw as { metadata?: unknown } | null)?.metadata;
    if (withNoise && m && typeof m === 'object' && !Array.isArray(m)) Object.assign(m, { ...noise, ...m });
    const before = JSON.stringify(raw);
    const slim = slimObject(kind, raw as KindMap[Kind]);
    t.is(JSON.stringify(raw), before, 'the input is not changed');
    t.deepEqual(run(kind, slim), run(kind, raw));
  }), { numRuns: 2000, seed: 10 });
});

test('an API object keeps only the fields something reads', (t) => {
  const svc = slimObject('Service', {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: 'web', namespace: 'default', resourceVersion: '7', ...noise },
    spec: { clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'TCP' }], selector: { app: 'web' } },
    status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] }, conditions: [{ type: 'x', status: 'True', lastTransitionTime: 'y', reason: 'r', message: 'm' }] },
  } as never);
  t.deepEqual(svc as unknown, {
    metadata: { name: 'web', namespace: 'default', uid: noise.uid, resourceVersion: '7',
      labels: { 'kubernetes.io/service-name': 'web' }, annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2026-01-01T00:00:00Z' } },
    spec: { clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'TCP' }] },
    status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] } },
  });
  const slice = slimObject('EndpointSlice', {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', namespace: 'default', ...noise },
    addressType: 'IPv4', ports: [{ port: 8080 }],
    endpoints: [{ addresses: ['10.244.0.1'], conditions: { ready: true }, nodeName: 'n1', zone: 'z', hostname: 'h',
      targetRef: { kind: 'Pod', name: 'web-abc', namespace: 'default', uid: 'u' }, deprecatedTopology: { a: 'b' } }],
  } as never);
  t.deepEqual((slice as unknown as { endpoints: unknown[] }).endpoints, [{ addresses: ['10.244.0.1'], conditions: { ready: true }, nodeName: 'n1', zone: 'z', targetRef: { name: 'web-abc' } }]);
  const node = slimObject('Node', {
    metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z', 'kubernetes.io/hostname': 'n1' }, managedFields: noise.managedFields },
    spec: { podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }], images: [{ names: ['x'], sizeBytes: 1 }], conditions: [] },
  } as never);
  t.deepEqual(node as unknown, {
    metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z', 'kubernetes.io/hostname': 'n1' } },
    spec: { podCIDR: '10.244.0.0/24', podCIDRs: ['10.244.0.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }] },
  });
});

test('fields of the wrong type are kept as they came, for normalize to report', (t) => {
  const raw = { metadata: { name: 'x', namespace: 'd', labels: 'oops', annotations: [1] }, spec: 'nope', status: 3 };
  t.deepEqual(slimObject('Service', raw as never) as unknown, raw);
  t.deepEqual(slimObject('EndpointSlice', { metadata: 5, endpoints: 'x' } as never) as unknown, { metadata: 5, endpoints: 'x' });
});

test('the manifests source stores slimmed objects', (t) => {
  const { objects } = parseManifestText('m.yaml', [
    'apiVersion: v1', 'kind: Service', 'metadata:', '  name: web', '  annotations:', '    kubectl.kubernetes.io/last-applied-configuration: "{}"',
    '  managedFields: [{manager: kubectl}]', 'spec:', '  clusterIP: 10.96.0.10', '  selector: {app: web}', '  ports: [{port: 80}]',
  ].join('\n'));
  t.deepEqual(objects.map((o) => o.obj) as unknown, [{ metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } }]);
});

test('no empty label or annotation object, no slice uid or generation; slices with the same ports share one frozen list', (t) => {
  const svc = slimObject('Service', { metadata: { name: 'a', namespace: 'd', uid: 'u1', generation: 3, labels: { app: 'a' }, annotations: { x: 'y' } }, spec: {} } as never) as unknown;
  t.deepEqual(svc, { metadata: { name: 'a', namespace: 'd', uid: 'u1' }, spec: {} }, 'a Service keeps its uid (Events name it)');
  const slice = (name: string, ports: unknown, json: boolean) => {
    const raw = { metadata: { name, namespace: 'd', uid: 'u', generation: 1, resourceVersion: '5', labels: { app: 'a' }, annotations: {} }, addressType: 'IPv4', ports, endpoints: [] };
    return slimObject('EndpointSlice', (json ? JSON.parse(JSON.stringify(raw)) : raw) as never) as unknown as { metadata: unknown; ports: unknown[] };
  };
  const ports = () => [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }];
  const a = slice('a', ports(), true), b = slice('b', ports(), false), c = slice('c', [{ name: 'http', port: 8081, protocol: 'TCP' }], true);
  t.deepEqual(a.metadata, { name: 'a', namespace: 'd', resourceVersion: '5' });
  t.deepEqual(a.ports, ports());
  t.is(a.ports, b.ports, 'the same ports: one list, from JSON or copied');
  t.true(Object.isFrozen(a.ports) && a.ports.every((p) => Object.isFrozen(p)));
  t.not(c.ports, a.ports);
  t.deepEqual(c.ports, [{ name: 'http', port: 8081, protocol: 'TCP' }]);
  // what the key could not tell apart, or normalize must see as it came, is not shared
  const odd = slice('d', [{ name: 'http', port: 8080, protocol: 'TCP', extra: { a: 1 } }], true);
  t.false(Object.isFrozen(odd.ports));
  t.deepEqual(slice('e', [{ port: -0 }], false).ports, [{ port: 0 }]);
});

test('with the node\'s name, only this node\'s endpoints keep their targetRef (the health server counts no other), and normalize sees no difference', async (t) => {
  const { healthCheckPorts } = await import('../../src/agent/agent.js');
  const raw = {
    metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', ports: [{ port: 8080 }],
    endpoints: [
      { addresses: ['10.244.0.1'], conditions: { ready: true }, nodeName: 'n1', targetRef: { kind: 'Pod', name: 'a' } },
      { addresses: ['10.244.0.2'], conditions: { ready: true }, nodeName: 'n1', targetRef: { kind: 'Pod', name: 'a' } },
      { addresses: ['10.244.1.1'], conditions: { ready: true }, nodeName: 'n2', targetRef: { kind: 'Pod', name: 'b' } },
      { addresses: ['10.244.1.2'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'c' } },
    ],
  };
  const slim = slimObject('EndpointSlice', raw as never, 'n1') as unknown as { endpoints: { targetRef?: unknown }[] };
  t.deepEqual(slim.endpoints.map((e) => e.targetRef), [{ name: 'a' }, { name: 'a' }, undefined, { name: 'c' }]);
  t.deepEqual(run('EndpointSlice', slim), run('EndpointSlice', raw));
  // the dual-stack-style pair on n1 counts once, as from the raw object
  const svc = { service: { key: 'default/web', namespace: 'default', name: 'web' }, healthCheckNodePort: 30999 };
  const count = (slice: unknown) => healthCheckPorts({ services: new Map(), endpointSlices: new Map([['default/web-1', slice]]), nodes: new Map() } as never,
    [{ ...svc, service: { ...svc.service, type: 'LoadBalancer', externalTrafficPolicy: 'Local' } }] as never, 'n1').get(30999)?.localEndpoints;
  t.is(count(slim), 1);
  t.is(count(raw), 1);
});

// ---- the direct copy gives exactly what the JSON round trip gave (testing/slim-json.ts is the old function) ----

/** the same value, and the same key order (deepEqual ignores it, a serialized golden does not) */
function same(t: ExecutionContext, kind: Kind, raw: unknown, nodeName?: string): void {
  const before = inspect(raw, { depth: Infinity, showHidden: true });
  const a = slimObject(kind, raw as KindMap[Kind], nodeName) as unknown;
  const b = slimObjectJson(kind, raw as KindMap[Kind], nodeName) as unknown;
  t.is(inspect(raw, { depth: Infinity, showHidden: true }), before, 'the input is not changed');
  if (b === raw) {
    t.is(a, raw, 'what the round trip could not copy comes back as it was');
    return;
  }
  t.deepEqual(a, b);
  t.is(JSON.stringify(a), JSON.stringify(b));
  t.deepEqual(slimObject(kind, raw as KindMap[Kind], nodeName, true) as unknown, b, 'the same when the strings are kept (kube.ts)');
  t.true(sharesNothing(a, raw), 'the copy shares no object with the input');
}

function objectsOf(v: unknown, into = new Set<object>()): Set<object> {
  if (typeof v !== 'object' || v === null || into.has(v)) return into;
  into.add(v);
  for (const c of Object.values(v)) objectsOf(c, into);
  return into;
}
const sharesNothing = (copy: unknown, raw: unknown): boolean => {
  const mine = objectsOf(raw);
  return [...objectsOf(copy)].every((o) => !mine.has(o));
};

const kindOf = (raw: unknown, asKind: Kind): Kind => {
  const k = (raw as { kind?: unknown } | null)?.kind;
  return k === 'Service' || k === 'EndpointSlice' || k === 'Node' ? k : asKind;
};

test('the direct copy equals the JSON round trip on every example, seed and fixture manifest, with and without a node name', (t) => {
  const files = [
    ...readdirSync('examples/seeds').map((f) => join('examples/seeds', f)),
    ...readdirSync('test/fixtures/compile').map((d) => join('test/fixtures/compile', d, 'input.yaml')).filter((f) => existsSync(f)),
  ].filter((f) => /\.ya?ml$/.test(f));
  let n = 0;
  for (const f of files) {
    for (const doc of loadAll(readFileSync(f, 'utf8'), undefined, { schema: CORE_SCHEMA })) {
      const items = (doc as { kind?: string; items?: unknown[] } | null)?.kind === 'List' ? (doc as { items: unknown[] }).items : [doc];
      for (const raw of items) {
        if (raw === null || raw === undefined) continue;
        for (const nodeName of [undefined, 'node01', 'node02']) same(t, kindOf(raw, 'Service'), raw, nodeName);
        n++;
      }
    }
  }
  t.true(n > 50, `${n} objects`);
  // as an API server sends them, with what the slimming drops
  for (const raw of [apiService(1, SHAPE), apiSlice(1, SHAPE), apiSlice(2, SHAPE, 1), apiNode()]) {
    for (const nodeName of [undefined, NODE_NAME, 'other']) same(t, kindOf(raw, 'Service'), JSON.parse(JSON.stringify(raw)), nodeName);
  }
});

test('the direct copy equals the JSON round trip on random objects (fuzz: hostile shapes, anything JavaScript can hold)', (t) => {
  const weird = fc.anything({
    maxDepth: 3, withBigInt: true, withBoxedValues: true, withDate: true, withMap: true, withSet: true, withNullPrototype: true,
    withObjectString: true, withSparseArray: true, withTypedArray: true, withUnicodeString: true,
  });
  // hostile values where slimObject looks (metadata, labels, endpoints, targetRef), not only at the top
  const shaped = fc.record({
    kind: fc.constantFrom('Service', 'EndpointSlice', 'Node', 'x'),
    metadata: fc.oneof(weird, fc.record({ name: weird, labels: fc.oneof(weird, fc.dictionary(fc.constantFrom(...KEPT, 'app', '__proto__'), weird)),
      annotations: fc.oneof(weird, fc.dictionary(fc.constantFrom('endpoints.kubernetes.io/last-change-trigger-time', 'a'), weird)) }, { requiredKeys: [] })),
    spec: fc.oneof(weird, fc.record({ selector: weird, clusterIP: weird, ports: weird }, { requiredKeys: [] })),
    status: fc.oneof(weird, fc.record({ loadBalancer: weird, addresses: weird, conditions: weird }, { requiredKeys: [] })),
    endpoints: fc.oneof(weird, fc.array(fc.oneof(weird, fc.record({ addresses: weird, conditions: fc.oneof(weird, fc.record({ ready: fc.boolean(), serving: weird })),
      nodeName: fc.constantFrom('n1', 'n2', undefined), zone: weird, hostname: weird, targetRef: fc.oneof(weird, fc.record({ name: weird, kind: weird }, { requiredKeys: [] })) },
    { requiredKeys: [] })), { maxLength: 4 })),
  }, { requiredKeys: [] });
  fc.assert(fc.property(fc.oneof(anyObject, shaped, weird), fc.constantFrom<Kind>('Service', 'EndpointSlice', 'Node'), fc.constantFrom(undefined, 'n1'),
    (raw, asKind, nodeName) => same(t, kindOf(raw, asKind), raw, nodeName)), { numRuns: 3000, seed: 12 });
});

test('a cycle, a toJSON, a __proto__ key and a BigInt come out as from the JSON round trip', (t) => {
  const cyc: Record<string, unknown> = { name: 'c' };
  cyc.self = cyc;
  same(t, 'Service', { metadata: { name: 'x' }, spec: { ports: [cyc] } });
  same(t, 'Service', { metadata: { name: 'x' }, spec: { clusterIP: new Date(0), ports: [{ port: 1, toJSON: () => 'p' }] } });
  same(t, 'Service', JSON.parse('{"metadata":{"name":"x","labels":{"__proto__":{"a":1}}},"spec":{"__proto__":[1]}}'));
  same(t, 'EndpointSlice', { metadata: { name: 'x' }, endpoints: [{ addresses: [10n] }] });
  same(t, 'Node', { metadata: { name: 'x' }, spec: { n: [NaN, Infinity, -0, undefined, () => 1, Symbol('s')], u: undefined } });
});
