// build-full.ts gives new backends their ids in canonical (address, port, protocol) order, lowest
// first. Its sort takes three ways (in order already, nearly in order, any order by numeric keys of
// dotted quads); each must give compare()'s order. Ids are read back from the plan: sorted by id, the
// backends must be in canonical order.
import test from 'ava';
import fc from 'fast-check';
import type { NodeBackend, Protocol } from '../../src/model/compiled.js';
import { buildPlan } from '../../src/plan/plan.js';
import { fe } from './plan-helpers.js';

const PROTOS: Protocol[] = ['SCTP', 'TCP', 'UDP'];
const valueOf = (a: string): number => a.includes(':') ? -1 : a.split('.').reduce((v, p) => v * 256 + Number(p), 0);

/** canonical order of two backends as build-full orders them: dotted quads by value, ports, protocol names */
function canonical(a: { address: string; port: number; protocol: Protocol }, b: typeof a): number {
  const v = valueOf(a.address), w = valueOf(b.address);
  if (v !== w) return v < w ? -1 : 1;
  return a.port - b.port || PROTOS.indexOf(a.protocol) - PROTOS.indexOf(b.protocol);
}

const arbBackend = fc.record({
  v: fc.oneof(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 0x0a000000, max: 0x0a0000ff })),
  port: fc.constantFrom(1, 80, 8080, 65535),
  protocol: fc.constantFrom(...PROTOS),
});

test('new backends take ids in canonical order, whatever order the state lists them in', (t) => {
  fc.assert(fc.property(
    fc.uniqueArray(arbBackend, { selector: (x) => `${x.v}|${x.port}|${x.protocol}`, minLength: 1, maxLength: 300 }),
    fc.constantFrom('shuffled', 'sorted', 'nearly'),
    fc.boolean(),
    (bes, order, v6) => {
      const list = bes.map((x) => ({ address: [x.v >>> 24, (x.v >>> 16) & 255, (x.v >>> 8) & 255, x.v & 255].join('.'), port: x.port, protocol: x.protocol }));
      if (order !== 'shuffled') list.sort(canonical);
      if (order === 'nearly' && list.length > 40) [list[3], list[30]] = [list[30]!, list[3]!];
      // an address that is not a dotted quad takes the comparison sort
      if (v6) list.push({ address: 'fd00::1', port: 80, protocol: 'TCP' });
      // one frontend per backend, in list order: the order the build first sees them
      const frontends = list.map((b, i) => fe(`172.16.${i >> 8}.${i & 255}`, 80, [{ address: b.address, port: b.port, terminating: false, local: false } as NodeBackend],
        { protocol: b.protocol }));
      const plan = buildPlan({ frontends }, undefined, { seed: 1 });
      const byId = [...plan.backends.values()].sort((a, b) => a.id - b.id);
      t.is(byId.length, list.length);
      t.deepEqual(byId.map((b) => b.id), byId.map((_, i) => i + 1));
      for (let i = 1; i < byId.length; i++) {
        if (byId[i - 1]!.address.includes(':') || byId[i]!.address.includes(':')) continue;
        if (canonical(byId[i - 1]!, byId[i]!) >= 0) return false;
      }
      return true;
    },
  ), { numRuns: 150 });
});
