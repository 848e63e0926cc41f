// normalizeEndpointSlice reads most endpoints without building a field name per check (plainEndpoint);
// whatever an endpoint holds, the result and the problems reported are the checked path's.
import test from 'ava';
import fc from 'fast-check';
import { normalizeEndpointSlice } from '../../src/model/normalize.js';
import type { ObjectError } from '../../src/model/types.js';

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
