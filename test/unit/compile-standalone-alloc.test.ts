// Standalone mode (a manifests folder): clusterIPs and nodePorts that Services leave out are drawn by
// hash with linear probing, in Service order, by allocate() over every Service. A Service created,
// deleted or changed is allocated alone when the Compiler can show that a full run would give every
// other Service what it has (#allocateStandalone); else allocate() runs over all. Either way each
// compile must equal a fresh compile of the same objects: tiny service CIDRs and nodePort ranges here,
// so allocations probe past taken slots, collide, fill the range and get rejected.
import test from 'ava';
import fc from 'fast-check';
import { Compiler } from '../../src/compile/compile.js';
import { ObjectStore } from '../../src/source/types.js';
import { compileStep, slice, svc, tracker } from './compile-helpers.js';

const op = fc.oneof(
  { weight: 5, arbitrary: fc.record({
    kind: fc.constant('svc' as const), i: fc.nat(11),
    type: fc.constantFrom('ClusterIP', 'NodePort', 'NodePort', 'LoadBalancer', 'Headless', 'ExternalName'),
    // most leave the clusterIP to the allocator; some name one (a clash rejects the later Service)
    ip: fc.option(fc.nat(13), { freq: 4 }), nodePort: fc.option(fc.nat(9), { freq: 3 }),
    ports: fc.constantFrom(1, 2), eTP: fc.constantFrom('Cluster', 'Local'),
    policy: fc.constantFrom(undefined, 'SingleStack', 'PreferDualStack', 'RequireDualStack'), label: fc.nat(3),
  }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delsvc' as const), i: fc.nat(11) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('slice' as const), i: fc.nat(11), host: fc.nat(3) }) },
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function apply(store: ObjectStore, o: Op): void {
  const name = `d/s${String(o.i).padStart(2, '0')}`;
  if (o.kind === 'delsvc') return store.delete('Service', name);
  if (o.kind === 'slice') {
    return store.upsert('EndpointSlice', slice(`${name}-a`, name.slice(2), [{ name: 'p0', port: 8080 }], [{ ip: `10.244.${o.i}.${o.host}`, node: 'n1' }]) as never);
  }
  if (o.type === 'ExternalName') return store.upsert('Service', svc(name, { type: 'ExternalName', externalName: 'example.org' }) as never);
  const np = o.type === 'NodePort' || o.type === 'LoadBalancer';
  const spec: Record<string, unknown> = {
    type: o.type === 'Headless' ? 'ClusterIP' : o.type,
    ...(o.type === 'Headless' ? { clusterIP: 'None' } : o.ip !== null ? { clusterIP: `10.96.0.${1 + o.ip}` } : {}),
    ...(o.policy && o.type !== 'Headless' ? { ipFamilyPolicy: o.policy } : {}),
    ports: Array.from({ length: o.ports }, (_, j) => ({ name: `p${j}`, port: 80 + j, targetPort: 8080,
      ...(np && j === 0 && o.nodePort !== null ? { nodePort: 30000 + o.nodePort } : {}) })),
    ...(o.type === 'LoadBalancer' ? { externalTrafficPolicy: o.eTP } : {}),
  };
  store.upsert('Service', svc(name, spec, { metadata: { namespace: 'd', name: name.slice(2), labels: { l: String(o.label) } } }) as never);
}

test('standalone: each compile after Services created, deleted and changed equals a fresh compile (allocations by hash and probing)', (t) => {
  fc.assert(fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 80, size: 'max' }),
    fc.constantFrom(['10.96.0.0/28'], ['10.96.0.0/28', 'fd00:10:96::/124'], ['10.96.0.0/27', 'fd00:10:96::/125']), fc.nat(9), fc.boolean(),
    (steps, serviceCidrs, prepareAt, wide) => {
      const store = new ObjectStore();
      const take = tracker(store);
      const opts = { nodeName: 'n1', standalone: true, serviceCidrs: [...serviceCidrs], nodePortRange: wide ? { min: 30000, max: 30040 } : { min: 30000, max: 30011 } };
      const c = new Compiler(opts);
      steps.forEach((step, k) => {
        for (const o of step) apply(store, o);
        const { r, fresh } = compileStep(c, store, take, opts, k);
        if (JSON.stringify(r.services) !== JSON.stringify(fresh.services)) throw new Error(`step ${k}: Service list (allocations) differs`);
        if (JSON.stringify(r.errors) !== JSON.stringify(fresh.errors)) throw new Error(`step ${k}: errors differ`);
        // the agent's warm-up indexes the allocations ahead of the first Service change (Compiler.prepare)
        if (k === prepareAt) c.prepare();
      });
    }), { numRuns: 300 });
  t.pass();
});
