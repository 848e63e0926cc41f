// normalizeEndpointSlice reads most endpoints without building a field name per check (plainEndpoint);
// whatever an endpoint holds, the result and the problems reported are the checked path's.
import test from 'ava';
import fc from 'fast-check';
import { normalizeEndpointSlice } from '../../src/model/normalize.js';
import type { ObjectError } from '../../src/model/types.js';
import { packedEndpoints, slimObject } from '../../src/source/slim.js';

const scalar = fc.constantFrom<unknown>(undefined, null, true, false, 0, 7, '', 'x', [], {}, 'node-a', 'zone-b');
const address = fc.constantFrom<unknown>('10.1.2.3', '10.244.0.17', '010.1.2.3', ' 10.1.2.3', '10.1.2', '2001:db8::1', '::ffff:10.1.2.3', 'bad', 5, null, undefined);
const bool = fc.constantFrom<unknown>(true, false, undefined, null, 'true', 1);
const endpoint = fc.oneof(
  { weight: 8, arbitrary: fc.record({
    addresses: fc.oneof({ weight: 6, arbitrary: fc.array(address, { minLength: 0, maxLength: 3 }) }, { weight: 1, arbitrary: scalar }),
    conditions: fc.oneof({ weight: 6, arbitrary: fc.record({ ready: bool, serving: bool, terminating: bool, other: scalar }, { requiredKeys: [] }) }, { weight: 1, arbitrary: scalar }),
    nodeName: scalar, zone: scalar,
    hints: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.record({ forZones: fc.constant([{ name: 'zone-b' }]) }) }, { weight: 1, arbitrary: scalar }),
    targetRef: fc.constant({ name: 'pod' }),
  }, { requiredKeys: ['addresses'] }) },
  { weight: 1, arbitrary: scalar },
);

test('plain endpoints are normalized as the checked path does, problems included (property)', (t) => {
  fc.assert(fc.property(fc.array(endpoint, { maxLength: 6 }), fc.constantFrom('IPv4', 'IPv6', 'FQDN', undefined), (endpoints, addressType) => {
    const raw = {
      metadata: { name: 's-1', namespace: 'ns', labels: { 'kubernetes.io/service-name': 's' } },
      addressType, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints,
    };
    const e1: ObjectError[] = [], e2: ObjectError[] = [];
    const plain = normalizeEndpointSlice(raw, 'ns/s-1', e1), checked = normalizeEndpointSlice(raw, 'ns/s-1', e2, true);
    t.deepEqual(plain, checked);
    t.deepEqual(e1, e2);
  }), { numRuns: 3000 });
});

test('without endpoints: the same problems and the same slice but its endpoints, packed or not (property)', (t) => {
  let packed = 0;
  // what the store packs: one address, boolean conditions, a node, a zone, a targetRef name
  const packable = fc.record({
    addresses: fc.tuple(address.filter((a) => typeof a === 'string')),
    conditions: fc.record({ ready: fc.boolean(), serving: fc.boolean(), terminating: fc.boolean() }, { requiredKeys: [] }),
    nodeName: fc.constantFrom('node-a', 'node-b'), zone: fc.constantFrom('zone-b'), targetRef: fc.constant({ name: 'pod' }),
  }, { requiredKeys: ['addresses'] });
  const eps = fc.oneof(fc.array(endpoint, { maxLength: 6 }), fc.array(packable, { maxLength: 6 }),
    fc.tuple(fc.array(packable, { maxLength: 4 }), endpoint).map(([a, b]) => [...a, b]));
  fc.assert(fc.property(eps, fc.constantFrom('IPv4', 'IPv4', 'IPv6', 'FQDN', undefined), (endpoints, addressType) => {
    const raw = {
      metadata: { name: 's-1', namespace: 'ns', labels: { 'kubernetes.io/service-name': 's' } },
      addressType, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints,
    };
    // as the store keeps it: its endpoints packed where they can be
    for (const obj of [raw, slimObject('EndpointSlice', JSON.parse(JSON.stringify(raw)) as never, 'node-a', true)]) {
      if (packedEndpoints(obj)) packed++;
      const e1: ObjectError[] = [], e2: ObjectError[] = [];
      const whole = normalizeEndpointSlice(obj, 'ns/s-1', e1), bare = normalizeEndpointSlice(obj, 'ns/s-1', e2, false, false);
      t.deepEqual(e2, e1);
      t.is(bare === null, whole === null);
      if (!whole || !bare) continue;
      t.deepEqual({ ...bare, endpoints: [] }, { ...whole, endpoints: [] });
      // what it leaves out is the plain path's IPv4 endpoints of a packed list, and nothing else
      if (packedEndpoints(obj) && addressType === 'IPv4') t.true(bare.endpoints.length <= whole.endpoints.length);
      else t.deepEqual(bare.endpoints, whole.endpoints);
    }
  }), { numRuns: 3000 });
  t.true(packed > 300, `${packed} packed`);
});
