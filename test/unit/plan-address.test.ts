// util/ip.ts strictV4 (the plan's backend index, compile's candidate order): the dotted quads it takes by value must be exactly those node:net's isIPv4
// takes (then isIP is 4 and the value is the address's), or the plan would accept an address the data
// plane must refuse (01.2.3.4), refuse a valid one, or merge two addresses.
import test from 'ava';
import fc from 'fast-check';
import { isIPv4 } from 'node:net';
import { strictV4 } from '../../src/util/ip.js';

const valueOf = (a: string): number => a.split('.').reduce((v, p) => v * 256 + Number(p), 0);

test('strictV4 takes exactly what isIPv4 takes, with the address\'s value', (t) => {
  const part = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.stringMatching(/^[0-9]{0,4}$/), fc.constantFrom('', '00', '01', '255', '256', '-1', ' 1', '1 ', 'a', '1e1'));
  const quadish = fc.array(part, { minLength: 1, maxLength: 6 }).map((ps) => ps.join('.'));
  const any = fc.oneof(quadish, fc.string({ maxLength: 20 }), fc.constantFrom('0.0.0.0', '255.255.255.255', '1.2.3.4.', '.1.2.3', '1..2.3', '::ffff:1.2.3.4', '1.2.3.4/32'));
  fc.assert(fc.property(any, (a) => {
    const v = strictV4(a);
    if (isIPv4(a)) return v === valueOf(a);
    return v === -1;
  }), { numRuns: 20_000 });
  t.is(strictV4('10.0.0.1'), 0x0a000001);
  t.is(strictV4('255.255.255.255'), 0xffffffff);
  t.is(strictV4('01.2.3.4'), -1);
});
