// The reusing Compiler gives exactly what a fresh compile of the same snapshot gives, through any
// sequence of changes (objects replaced, added, removed; the node's zone and addresses changing).
import test from 'ava';
import fc from 'fast-check';
import { compile, Compiler } from '../../src/compile/compile.js';
import { toJson } from '../../src/model/canonical.js';
import { formatObjectError } from '../../src/model/types.js';
import { ObjectStore } from '../../src/source/types.js';
import { node, slice, svc } from './compile-helpers.js';

const op = fc.oneof(
  fc.record({ kind: fc.constant('svc' as const), i: fc.nat(5), type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
    eTP: fc.constantFrom('Cluster', 'Local'), td: fc.constantFrom(undefined, 'PreferClose'), port: fc.constantFrom(80, 81, 0),
    ext: fc.constantFrom(undefined, '192.168.9.9') }),
  fc.record({ kind: fc.constant('slice' as const), i: fc.nat(5), j: fc.nat(1), eps: fc.array(fc.record({
    host: fc.nat(20), ready: fc.boolean(), terminating: fc.boolean(), node: fc.constantFrom('n1', 'n2'), zone: fc.constantFrom('z1', 'z2') }), { maxLength: 4 }) }),
  fc.record({ kind: fc.constant('del' as const), i: fc.nat(5), what: fc.constantFrom('Service', 'EndpointSlice') }),
  fc.record({ kind: fc.constant('node' as const), zone: fc.constantFrom('z1', 'z2', ''), ip: fc.constantFrom('192.168.1.1', '192.168.1.2') }),
);

test('incremental compile equals a fresh compile after every change', (t) => {
  fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops) => {
    const store = new ObjectStore();
    const opts = { nodeName: 'n1', standalone: true };
    const c = new Compiler(opts);
    for (const o of ops) {
      if (o.kind === 'svc') {
        store.upsert('Service', svc(`d/s${o.i}`, {
          type: o.type, externalTrafficPolicy: o.eTP, ...(o.td ? { trafficDistribution: o.td } : {}), ...(o.ext ? { externalIPs: [o.ext] } : {}),
          ports: [{ port: o.port, targetPort: 8080 }],
        }) as never);
      } else if (o.kind === 'slice') {
        store.upsert('EndpointSlice', slice(`d/s${o.i}-${o.j}`, `s${o.i}`, [{ port: 8080 }], o.eps.map((e) => ({
          ip: `10.244.0.${e.host}`, ready: e.ready, serving: e.ready || e.terminating, terminating: e.terminating, node: e.node, zone: e.zone,
        }))) as never);
      } else if (o.kind === 'del') {
        store.delete(o.what, o.what === 'Service' ? `d/s${o.i}` : `d/s${o.i}-0`);
      } else {
        store.upsert('Node', node('n1', [o.ip], o.zone || undefined) as never);
      }
      const snap = store.snapshot();
      const inc = c.compile(snap), fresh = compile(snap, opts);
      if (toJson(inc.state) !== toJson(fresh.state)) throw new Error('state differs');
      if (JSON.stringify(inc.state) !== JSON.stringify(fresh.state)) throw new Error('node state (local, snatRemote) differs');
      if (inc.errors.map(formatObjectError).join('\n') !== fresh.errors.map(formatObjectError).join('\n')) throw new Error('errors differ');
    }
  }), { numRuns: 150 });
  t.pass();
});

test('an unchanged Service reuses its frontends; a changed slice recompiles only its Service', (t) => {
  const store = new ObjectStore();
  for (let i = 0; i < 3; i++) {
    store.upsert('Service', svc(`d/s${i}`, { clusterIP: `10.96.0.${i + 1}`, ports: [{ port: 80 }] }) as never);
    store.upsert('EndpointSlice', slice(`d/s${i}-1`, `s${i}`, [{ port: 80 }], [{ ip: `10.244.0.${i + 1}` }]) as never);
  }
  const c = new Compiler({ nodeName: 'n1' });
  const a = c.compile(store.snapshot()).state.frontends;
  store.upsert('EndpointSlice', slice('d/s1-1', 's1', [{ port: 80 }], [{ ip: '10.244.0.99' }]) as never);
  const b = c.compile(store.snapshot()).state.frontends;
  t.is(b[0], a[0]);
  t.is(b[2], a[2]);
  t.not(b[1], a[1]);
  t.deepEqual(b[1]!.backends.map((x) => x.address), ['10.244.0.99']);
});
