// The agent's sync follows compile's record of what changed (src/plan/delta.ts) instead of walking
// every frontend: CapacityTracker, the incremental plan build and the IPv6 count. Over random change
// sequences through a real Compiler (Services sharing external IPs, so which Service serves a
// frontend key moves; slices moving between Services; the node changing), each must give exactly
// what the full computation gives from the same state.
import test from 'ava';
import fc from 'fast-check';
import { Compiler } from '../../src/compile/compile.js';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';
import { CapacityTracker, fitToCapacity, UNLIMITED, type Capacity } from '../../src/plan/capacity.js';
import { countV6, stateDelta } from '../../src/plan/delta.js';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan, planDelta } from '../../src/plan/plan.js';
import type { Plan } from '../../src/plan/types.js';
import { ObjectStore } from '../../src/source/types.js';
import { node, slice, svc, tracker } from './compile-helpers.js';

const seed = 0x5eed;

const op = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('svc' as const), i: fc.nat(6), type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
    eTP: fc.constantFrom('Cluster', 'Local'), port: fc.constantFrom(80, 81),
    // a shared external IP: two Services claim one frontend key, the first by name serves it
    ext: fc.constantFrom(undefined, '192.168.9.9', '192.168.9.9', '2001:db8::9'), dual: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('slice' as const), i: fc.nat(6), j: fc.nat(1), owner: fc.constantFrom(0, 0, 1), v6: fc.boolean(),
    eps: fc.array(fc.record({ host: fc.nat(12), ready: fc.boolean(), terminating: fc.boolean(), node: fc.constantFrom('n1', 'n2') }), { maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('del' as const), i: fc.nat(6), j: fc.nat(1), what: fc.constantFrom('Service', 'EndpointSlice') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('node' as const), ip: fc.constantFrom('192.168.1.1', '192.168.1.2') }) },
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function apply(store: ObjectStore, o: Op): void {
  if (o.kind === 'svc') {
    store.upsert('Service', svc(`d/s${o.i}`, {
      type: o.type, externalTrafficPolicy: o.eTP, ...(o.ext ? { externalIPs: [o.ext] } : {}),
      ...(o.dual ? { ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv4', 'IPv6'] } : {}),
      ports: [{ port: o.port, targetPort: 8080 }],
    }) as never);
  } else if (o.kind === 'slice') {
    store.upsert('EndpointSlice', slice(`d/s${o.i}-${o.j}`, `s${(o.i + o.owner) % 7}`, [{ port: 8080 }], o.eps.map((e) => ({
      ip: o.v6 ? `fd00:10:244::${e.host + 1}` : `10.244.0.${e.host}`, ready: e.ready, serving: e.ready || e.terminating, terminating: e.terminating, node: e.node,
    })), o.v6 ? 'IPv6' : 'IPv4') as never);
  } else if (o.kind === 'del') {
    store.delete(o.what, o.what === 'Service' ? `d/s${o.i}` : `d/s${o.i}-${o.j}`);
  } else {
    store.upsert('Node', node('n1', [o.ip, 'fd00::1']) as never);
  }
}

function stranger(p: Plan): Plan {
  return { seed: p.seed, frontends: new Map(p.frontends), backends: new Map(p.backends), tables: new Map(p.tables) };
}

function shape(p: Plan, prev: Plan | undefined) {
  return {
    frontends: [...p.frontends].map(([k, f]) => [k, f, prev?.frontends.get(k) === f]),
    backends: [...p.backends].map(([id, b]) => [id, b, prev?.backends.get(id) === b]),
    tables: [...p.tables].map(([id, t]) => [id, t.m, t.members, [...t.slots], prev?.tables.get(id) === t]),
  };
}

function v6Walk(s: NodeState): number {
  return s.frontends.filter((f) => f.address.includes(':') && !f.address.startsWith('::ffff:')).length;
}

test('property: compile\'s delta is exact, and capacity, plan and the IPv6 count that follow it equal a full walk', (t) => {
  let followed = 0, planned = 0;
  const caps: Capacity[] = [UNLIMITED, { ...UNLIMITED, backends: 9 }, { ...UNLIMITED, frontends: 6 }];
  fc.assert(fc.property(
    fc.array(op, { minLength: 1, maxLength: 10 }),
    fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 15 }),
    fc.nat(caps.length - 1),
    (initial, steps, capAt) => {
      const cap = caps[capAt]!;
      const store = new ObjectStore();
      store.upsert('Node', node('n1', ['192.168.1.1', 'fd00::1']) as never);
      for (const o of initial) apply(store, o);
      const take = tracker(store);
      const compiler = new Compiler({ nodeName: 'n1', standalone: true });
      const capacity = new CapacityTracker();
      // the same calls on copies of each state (no record to follow): the room kept during a write
      // (held: the state last kept) walks every frontend there
      const walked = new CapacityTracker();
      const plain = new CapacityTracker();
      let held: NodeState | undefined, heldCopy: NodeState | undefined;
      let prevState: NodeState | undefined;
      let prevPlan: Plan | undefined;
      for (const step of [[] as Op[], ...steps]) {
        for (const o of step) apply(store, o);
        const { state } = compiler.compile(store.view(), take());
        const d = stateDelta(state, prevState);
        if (d) {
          followed++;
          // base minus removed plus added is this state, object for object
          const want = new Set<NodeFrontend>(prevState!.frontends);
          for (const f of d.removed) if (!want.delete(f)) throw new Error('removed a frontend the base lacks');
          for (const f of d.added) {
            if (want.has(f)) throw new Error('added a frontend the base holds');
            want.add(f);
          }
          t.deepEqual([...want].sort((a, b) => state.frontends.indexOf(a) - state.frontends.indexOf(b)), state.frontends);
        }
        t.is(countV6(state, prevState), v6Walk(state));
        const programmed = () => new Set(held?.frontends.map((f) => f.service));
        const fitted = capacity.fit(state, cap, programmed, () => held);
        const copy = { frontends: [...state.frontends] };
        const want = walked.fit(copy, cap, programmed, () => heldCopy);
        t.deepEqual(fitted.dropped, want.dropped);
        t.is(fitted.waitsForRemovals, want.waitsForRemovals);
        t.deepEqual(fitted.state.frontends, want.state.frontends);
        t.deepEqual(plain.fit(state, cap).dropped, fitToCapacity(state, cap).dropped);
        held = fitted.state;
        heldCopy = want.state;
        const next = buildPlan(fitted.state, prevPlan, { seed });
        if (prevPlan) {
          if (planDelta(prevPlan, next)) planned++;
          const full = buildPlan(fitted.state, stranger(prevPlan), { seed });
          t.deepEqual(shape(next, prevPlan), shape(full, prevPlan));
          t.deepEqual(diffPlans(prevPlan, next), diffPlans(stranger(prevPlan), next));
        }
        prevState = state;
        prevPlan = next;
      }
    },
  ), { seed: 1010, numRuns: 200 });
  // the record was there to follow, and the plan took its incremental path from it
  t.true(followed > 500, `followed ${followed}`);
  t.true(planned > 300, `planned ${planned}`);
});

test('a state the Compiler has moved on from is collectable: a delta record does not keep its base alive', async (t) => {
  // the record of state n named state n-1 strongly (a WeakMap entry lives as long as its key), so
  // the latest state held every state before it, and each one's frontend array: ~84 KiB a change
  // at 10,000 Services, forever, and the Compiler copied them all out every few hundred changes
  const { fullGc } = await import('../../src/util/heap-trim.js');
  const gc = fullGc('regular');
  const store = new ObjectStore();
  store.upsert('Node', node('n1', ['192.168.1.1']) as never);
  store.upsert('Service', svc('d/s0', { ports: [{ port: 80, targetPort: 8080 }] }) as never);
  const take = tracker(store);
  const compiler = new Compiler({ nodeName: 'n1', standalone: true });
  const first = new WeakRef(compiler.compile(store.view(), take()).state);
  let latest: NodeState | undefined;
  for (let k = 0; k < 4; k++) {
    store.upsert('EndpointSlice', slice('d/s0-a', 's0', [{ port: 8080 }], [{ ip: `10.244.0.${k + 1}` }]) as never);
    latest = compiler.compile(store.view(), take()).state;
    t.is(latest.frontends.length, 1);
  }
  // a WeakRef's target survives the job that made or read it: collect on a later turn
  await new Promise((r) => setTimeout(r, 0));
  gc();
  t.is(first.deref(), undefined);
  t.truthy(latest);
});
