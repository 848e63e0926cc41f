// The fast sort keys compile uses agree with canonical.ts's comparators exactly.
import test from 'ava';
import fc from 'fast-check';
import { addressKey, backendKey, compareBackends, compareFrontends, frontendKey } from '../../src/model/canonical.js';
import { compareAddresses, ipFrom16 } from '../../src/util/ip.js';

const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => ipFrom16(b));
const addr = fc.oneof(v4, v6, fc.constantFrom('0.0.0.0', '::', '10.0.0.1', '10.0.0.10', '9.255.255.255', 'fd00::1', '::ffff:0:1'));

test('addressKey orders as compareAddresses', (t) => {
  fc.assert(fc.property(addr, addr, (a, b) => sign(compareAddresses(a, b)) === cmp(addressKey(a), addressKey(b))), { numRuns: 2000 });
  t.pass();
});

test('backendKey and frontendKey order as compareBackends and compareFrontends', (t) => {
  const port = fc.integer({ min: 0, max: 65535 });
  const proto = fc.constantFrom('TCP', 'UDP', 'SCTP') as fc.Arbitrary<'TCP' | 'UDP' | 'SCTP'>;
  const scope = fc.constantFrom('internal', 'external') as fc.Arbitrary<'internal' | 'external'>;
  const fe = fc.record({ address: addr, port, protocol: proto, scope });
  fc.assert(fc.property(fe, fe, (a, b) =>
    sign(compareFrontends(a, b)) === cmp(frontendKey(addressKey(a.address), a.port, a.protocol, a.scope), frontendKey(addressKey(b.address), b.port, b.protocol, b.scope))
    && sign(compareBackends(a, b)) === cmp(backendKey(addressKey(a.address), a.port), backendKey(addressKey(b.address), b.port))), { numRuns: 2000 });
  t.pass();
});
