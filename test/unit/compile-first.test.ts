// The Compiler's first compile (against nothing) builds its result and its incremental state
// directly; the general path, which diffs every object against the previous run, must give the same
// result, and the state left behind must carry later incremental compiles to the same results too.
import test from 'ava';
import fc from 'fast-check';
import { Compiler, type CompileResult } from '../../src/compile/compile.js';
import { stateDelta } from '../../src/plan/delta.js';
import { formatObjectError } from '../../src/model/types.js';
import { ObjectStore } from '../../src/source/types.js';
import { node, slice, svc, tracker } from './compile-helpers.js';

const svcOp = fc.record({
  kind: fc.constant('svc' as const), i: fc.nat(7),
  type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName', 'Bogus'),
  eTP: fc.constantFrom('Cluster', 'Local'), iTP: fc.constantFrom(undefined, 'Local'),
  // mostly valid: one port 80 or 81 (a bad one now and then), so that frontends collide between Services
  ports: fc.oneof(
    { weight: 4, arbitrary: fc.record({ port: fc.constantFrom(80, 81), nodePort: fc.constantFrom(undefined, 30080, 30081) }).map((p) => [p]) },
    { weight: 1, arbitrary: fc.array(fc.record({ port: fc.constantFrom(80, 81, 0, 70000), name: fc.constantFrom(undefined, 'http', 'dns'),
      protocol: fc.constantFrom(undefined, 'UDP', 'ICMP'), nodePort: fc.constantFrom(undefined, 30080, 30081) }), { maxLength: 3 }) },
  ) as fc.Arbitrary<{ port: number; name?: string; protocol?: string; nodePort?: number }[]>,
  ext: fc.constantFrom(undefined, '192.168.9.9', '192.168.9.9', 'not-an-ip'),
  // explicit clusterIPs that collide between Services, headless ones, dual-stack and IPv6 ones
  // ('own': one of its own, so that Services from an API server, which allocates nothing, have frontends)
  ip: fc.constantFrom(undefined, 'own', 'own', 'own', '10.96.0.10', '10.96.0.11', 'None', 'fd00:10:96::10'),
  dual: fc.boolean(), affinity: fc.boolean(), bad: fc.constantFrom(false, false, false, false, false, true),
});
const sliceOp = fc.record({
  kind: fc.constant('slice' as const), i: fc.nat(7), j: fc.nat(2), owner: fc.nat(7), v6: fc.boolean(), badPort: fc.boolean(),
  eps: fc.array(fc.record({ host: fc.nat(20), ready: fc.boolean(), terminating: fc.boolean(), node: fc.constantFrom('n1', 'n2'),
    zone: fc.constantFrom('z1', 'z2'), hint: fc.boolean(), bad: fc.constantFrom(false, false, false, true) }), { maxLength: 4 }),
});
const op = fc.oneof(
  svcOp, svcOp, sliceOp, sliceOp,
  fc.record({ kind: fc.constant('del' as const), i: fc.nat(7), j: fc.nat(2), what: fc.constantFrom('Service', 'EndpointSlice') }),
  fc.record({ kind: fc.constant('node' as const), zone: fc.constantFrom('z1', 'z2', ''), ip: fc.constantFrom('192.168.1.1', '192.168.1.2') }),
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function apply(store: ObjectStore, o: Op): void {
  if (o.kind === 'svc') {
    store.upsert('Service', svc(`d/s${o.i}`, o.bad ? { ports: 'eighty' } : {
      type: o.type, externalTrafficPolicy: o.eTP, ...(o.iTP ? { internalTrafficPolicy: o.iTP } : {}),
      ...(o.ext ? { externalIPs: [o.ext] } : {}), ...(o.ip ? { clusterIP: o.ip === 'own' ? `10.96.1.${o.i}` : o.ip } : {}),
      ...(o.dual ? { ipFamilyPolicy: 'PreferDualStack' } : {}),
      ...(o.affinity ? { sessionAffinity: 'ClientIP' } : {}),
      ports: o.ports.map((p) => ({ port: p.port, targetPort: 8080, ...(p.name ? { name: p.name } : {}), ...(p.protocol ? { protocol: p.protocol } : {}),
        ...(p.nodePort && o.type !== 'ClusterIP' ? { nodePort: p.nodePort } : {}) })),
    }, o.type === 'LoadBalancer' ? { status: { loadBalancer: { ingress: [{ ip: '192.168.7.7' }] } } } : {}) as never);
  } else if (o.kind === 'slice') {
    store.upsert('EndpointSlice', slice(`d/s${o.i}-${o.j}`, `s${o.owner}`, [{ port: o.badPort ? 99999 : 8080, name: 'http' }, { port: 8080 }],
      o.eps.map((e) => ({
        ip: e.bad ? 'nope' : o.v6 ? `fd00:244::${e.host}` : `10.244.0.${e.host}`, ready: e.ready, serving: e.ready || e.terminating,
        terminating: e.terminating, node: e.node, zone: e.zone, ...(e.hint ? { zones: [e.zone] } : {}),
      })), o.v6 ? 'IPv6' : 'IPv4') as never);
  } else if (o.kind === 'del') {
    store.delete(o.what, o.what === 'Service' ? `d/s${o.i}` : `d/s${o.i}-${o.j}`);
  } else {
    store.upsert('Node', node('n1', [o.ip], o.zone || undefined) as never);
  }
}

function same(a: CompileResult, b: CompileResult): void {
  if (JSON.stringify(a.state) !== JSON.stringify(b.state)) throw new Error('states differ');
  const ea = a.errors.map(formatObjectError).join('\n'), eb = b.errors.map(formatObjectError).join('\n');
  if (ea !== eb) throw new Error(`errors differ:\n${ea}\n--\n${eb}`);
  if (JSON.stringify(a.services) !== JSON.stringify(b.services)) throw new Error('Service lists differ');
  if (JSON.stringify(a.noLocalEndpoints) !== JSON.stringify(b.noLocalEndpoints)) throw new Error('no-local counts differ');
}

test('the first compile equals the general path, bad objects and their errors included, and so does every compile after it', (t) => {
  let errorsSeen = 0, dupsSeen = 0;
  fc.assert(fc.property(fc.boolean(), fc.array(op, { minLength: 8, maxLength: 30 }),
    fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { maxLength: 6 }), fc.constantFrom(0, 2, undefined), (standalone, initial, steps, bulkSlices) => {
      const store = new ObjectStore();
      for (const o of initial) apply(store, o);
      const take = tracker(store);
      const opts = { nodeName: 'n1', standalone };
      // bulkSlices: past that many changed slices their endpoints are normalized again at their
      // Service's compile (a first sync's path); 0 takes it in every compile
      const fast = new Compiler(opts, { bulkSlices }), general = new Compiler(opts, { fastFirst: false });
      const snap0 = store.snapshot();
      const a0 = fast.compile(snap0), b0 = general.compile(snap0);
      same(a0, b0);
      if (a0.errors.length) errorsSeen++;
      if (a0.errors.some((e) => e.message.includes('already served'))) dupsSeen++;
      let prev = a0.state;
      for (const step of steps) {
        for (const o of step) apply(store, o);
        const changed = take();
        const snap = store.snapshot();
        const a = fast.compile(snap, changed), b = general.compile(snap, changed);
        same(a, b);
        // a node change compiles everything again against nothing: its delta must still be exact
        const d = stateDelta(a.state, prev);
        if (d) {
          const now = new Set(a.state.frontends), was = new Set(prev.frontends);
          if (d.added.length !== a.state.frontends.filter((f) => !was.has(f)).length || d.added.some((f) => was.has(f) || !now.has(f))) throw new Error('added is not exact');
          if (d.removed.length !== prev.frontends.filter((f) => !now.has(f)).length || d.removed.some((f) => now.has(f) || !was.has(f))) throw new Error('removed is not exact');
        }
        prev = a.state;
      }
    }), { numRuns: 300 });
  // the generator must reach bad input, or the test says nothing about it
  t.true(errorsSeen > 30, `${errorsSeen} runs with errors`);
  t.true(dupsSeen > 10, `${dupsSeen} runs with a frontend two Services claim`);
});
