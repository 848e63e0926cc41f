// A slice's endpoints packed in the store (src/source/slim.ts): what every reader sees is the list
// the API gave (minus what slim drops), and normalize and the health server make the same of it.
import test from 'ava';
import fc from 'fast-check';
import { apiSlice } from '../../bench/apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from '../../bench/gen.js';
import { healthCheckPorts } from '../../src/agent/agent.js';
import { normalizeEndpointSlice } from '../../src/model/normalize.js';
import type { ObjectError } from '../../src/model/types.js';
import { packedEndpoints, slimObject } from '../../src/source/slim.js';

type Obj = Record<string, unknown>;
const SHAPE: ClusterShape = { services: 4, endpointsPerService: 10 };

function norm(raw: unknown): { model: unknown; errors: ObjectError[] } {
  const errors: ObjectError[] = [];
  return { model: normalizeEndpointSlice(raw, 'ns/s', errors), errors };
}
/** the same slice with a plain list (the getter's output copied): what the store kept before packing */
const plain = (slice: unknown): Obj => JSON.parse(JSON.stringify(slice)) as Obj;
const localCount = (slice: unknown, node: string, ns = 'ns', name = 's'): number | undefined => healthCheckPorts(
  { services: new Map(), endpointSlices: new Map([['x', slice as never]]), nodes: new Map() },
  [{ service: { key: `${ns}/${name}`, namespace: ns, name, type: 'LoadBalancer', externalTrafficPolicy: 'Local' }, healthCheckNodePort: 30999 }] as never,
  node).get(30999)?.localEndpoints;

test('an API server\'s slice is packed and reads back as its kept fields: address, conditions, node, zone, this node\'s targetRef name', (t) => {
  const raw = JSON.parse(JSON.stringify(apiSlice(2, SHAPE))) as Obj;
  (raw.endpoints as Obj[])[3]!.zone = 'zone-a';
  const slim = slimObject('EndpointSlice', raw as never, NODE_NAME, true) as unknown as Obj;
  t.truthy(packedEndpoints(slim), 'packed');
  const want = (raw.endpoints as Obj[]).map((e) => ({
    addresses: e.addresses, conditions: e.conditions, nodeName: e.nodeName, ...(e.zone !== undefined && { zone: e.zone }),
    ...(e.nodeName === NODE_NAME && { targetRef: { name: (e.targetRef as Obj).name } }),
  }));
  t.deepEqual(slim.endpoints, want);
  // key order too: a serialized golden sees it
  t.is(JSON.stringify(slim.endpoints), JSON.stringify(want));
  t.deepEqual(Object.keys(slim), ['metadata', 'addressType', 'ports', 'endpoints']);
  t.deepEqual(norm(slim), norm(plain(slim)));
  t.is(localCount(slim, NODE_NAME, 'bench', 'svc-2'), 5);
  t.is(localCount(slim, 'node-b', 'bench', 'svc-2'), 5);
});

test('a slice with an endpoint the packing cannot hold keeps its list as it came', (t) => {
  const base = { metadata: { name: 's-1', namespace: 'ns', labels: { 'kubernetes.io/service-name': 's' } }, addressType: 'IPv4', ports: [{ port: 80 }] };
  for (const odd of [
    { addresses: ['10.0.0.1', '10.0.0.2'] }, { addresses: ['10.0.0.1'], hints: { forZones: [{ name: 'z' }] } }, { addresses: [7] },
    { addresses: ['10.0.0.1'], conditions: {} }, { addresses: ['10.0.0.1'], conditions: { ready: 'yes' } }, { addresses: ['10.0.0.1'], nodeName: 3 },
    { addresses: ['10.0.0.1'], targetRef: { name: 5 } }, { addresses: ['10.0.0.1'], zone: null },
  ]) {
    const raw = { ...base, endpoints: [{ addresses: ['10.0.0.9'], conditions: { ready: true } }, odd] };
    const slim = slimObject('EndpointSlice', JSON.parse(JSON.stringify(raw)) as never, undefined, true) as unknown as Obj;
    t.is(packedEndpoints(slim), undefined, JSON.stringify(odd));
    t.true(Array.isArray(Object.getOwnPropertyDescriptor(slim, 'endpoints')?.value));
    t.deepEqual(norm(slim), norm(raw));
  }
});

// endpoints the packing takes, with values normalize refuses or reads specially among them
const address = fc.oneof(fc.ipV4(), fc.constantFrom('10.0.0.01', ' 10.0.0.1', 'fd00::1', 'x', '', '10.0.0.256'));
const endpoint = fc.record({
  addresses: fc.tuple(address),
  conditions: fc.oneof(fc.constant(undefined), fc.record({ ready: fc.boolean(), serving: fc.boolean(), terminating: fc.boolean() }, { requiredKeys: [] })
    .filter((c) => Object.keys(c).length > 0)),
  nodeName: fc.constantFrom(undefined, 'n1', 'n2', ''),
  zone: fc.constantFrom(undefined, 'za', 'zb'),
  targetRef: fc.oneof(fc.constant(undefined), fc.record({ kind: fc.constant('Pod'), name: fc.constantFrom('p1', 'p2', 'p3', '') })),
}, { requiredKeys: ['addresses'] });

test('packed slices read back, normalize and count local endpoints as their plain lists (property)', (t) => {
  let packedRuns = 0;
  fc.assert(fc.property(fc.array(endpoint, { minLength: 1, maxLength: 6 }), fc.constantFrom('IPv4', 'IPv6', 'FQDN'), fc.constantFrom(undefined, 'n1'),
    (eps, addressType, nodeName) => {
      const raw = { metadata: { name: 's-1', namespace: 'ns', labels: { 'kubernetes.io/service-name': 's' } }, addressType, ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
        endpoints: eps.map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined))) };
      const json = JSON.stringify(raw);
      for (const parsedJson of [false, true]) {
        const slim = slimObject('EndpointSlice', JSON.parse(json) as never, nodeName, parsedJson) as unknown as Obj;
        if (packedEndpoints(slim)) packedRuns++;
        // the kept fields of each endpoint, as the unpacked slim gave them
        const want = (JSON.parse(json) as { endpoints: Obj[] }).endpoints.map((e) => {
          const keep = nodeName === undefined || typeof e.nodeName !== 'string' || e.nodeName === nodeName;
          const { targetRef, ...rest } = e;
          return { ...rest, ...(keep && targetRef !== undefined && { targetRef: { name: (targetRef as Obj).name } }) };
        });
        t.deepEqual(slim.endpoints, want);
        t.deepEqual(norm(slim), norm(plain(slim)));
        t.deepEqual(norm(slim), norm(JSON.parse(json)));
        for (const n of ['n1', 'n2']) t.is(localCount(slim, n), localCount(plain(slim), n));
      }
    }), { numRuns: 400, seed: 13 });
  t.true(packedRuns > 400, `${packedRuns} packed`);
});
