// buildPlan from the plan it returned last time redoes only the frontends whose NodeFrontend object
// is new (plan.ts "Incremental builds"), and diffPlans then walks only what that build touched. Both
// must give exactly what the full computation gives: the same plan (ids, tables, which objects are
// handed on from prev, map order) and the same ops, over any sequence of changes.
import test from 'ava';
import fc from 'fast-check';
import type { NodeBackend, NodeFrontend, NodeState, Protocol, Scope } from '../../src/model/compiled.js';
import { diffPlans } from '../../src/plan/diff.js';
import type { MaglevSizing } from '../../src/plan/maglev.js';
import { buildPlan, planDelta, undoPlan } from '../../src/plan/plan.js';
import { frontendKey, type Plan } from '../../src/plan/types.js';
import { be, fe } from './plan-helpers.js';

const seed = 0x5eed;

/** The same plan under a new identity: buildPlan and diffPlans know nothing of it, so they walk it all. */
function stranger(p: Plan): Plan {
  return { seed: p.seed, frontends: new Map(p.frontends), backends: new Map(p.backends), tables: new Map(p.tables) };
}

/** Everything a plan says, in its maps' order, with which objects it shares with prev. */
function shape(p: Plan, prev: Plan | undefined) {
  return {
    seed: p.seed,
    frontends: [...p.frontends].map(([k, f]) => [k, f, prev?.frontends.get(k) === f]),
    backends: [...p.backends].map(([id, b]) => [id, b, prev?.backends.get(id) === b]),
    tables: [...p.tables].map(([id, t]) => [id, t.m, t.members, [...t.slots], prev?.tables.get(id) === t]),
  };
}

const feKeys: { address: string; port: number; protocol: Protocol; scope: Scope }[] = [];
for (const address of ['10.96.0.10', '10.96.0.11', '10.96.1.1', '192.168.50.2', 'fd00:10:96::1', '10.96.0.9']) {
  for (const port of [53, 80]) for (const protocol of ['TCP', 'UDP'] as Protocol[]) feKeys.push({ address, port, protocol, scope: 'internal' });
}
feKeys.push({ address: '192.168.50.2', port: 30080, protocol: 'TCP', scope: 'external' });
const bePool = ['10.244.1.2', '10.244.1.3', '10.244.1.10', '10.244.2.2', '10.244.2.7', '10.244.3.1', 'fd00:10:244::2', 'fd00:10:244::a'];

const sharedLists: NodeBackend[][] = [[be('10.244.1.2'), be('10.244.2.2'), be('10.244.3.1')], [be('10.244.1.3', 8080, false, true)]];
const arbBackends: fc.Arbitrary<NodeBackend[]> = fc.oneof(
  fc.uniqueArray(
    fc.record({ a: fc.constantFrom(...bePool), p: fc.constantFrom(8080, 9090), t: fc.constantFrom(false, false, false, true), l: fc.boolean() }),
    { selector: (x) => `${x.a}|${x.p}`, maxLength: 6 },
  ).map((xs) => xs.map((x) => be(x.a, x.p, x.t, x.l))),
  // a few fixed lists make tables shared between frontends
  fc.constantFrom(...sharedLists),
);

type Op =
  | { kind: 'set'; at: number; backends: NodeBackend[]; affinity: number; ranges: string[]; snat: boolean; reversed: boolean }
  | { kind: 'delete'; at: number }
  /** a new object equal to the old one: compile recompiled a Service to the same result */
  | { kind: 'copy'; at: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({
    kind: fc.constant('set' as const), at: fc.nat(feKeys.length - 1), backends: arbBackends,
    affinity: fc.constantFrom(0, 0, 10800), ranges: fc.subarray(['10.0.0.0/8', '192.168.0.0/16', 'fd00::/8'], { maxLength: 2 }),
    snat: fc.boolean(), reversed: fc.boolean(),
  }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat(feKeys.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('copy' as const), at: fc.nat(feKeys.length - 1) }) },
);

function apply(current: Map<number, NodeFrontend>, op: Op): void {
  if (op.kind === 'delete') current.delete(op.at);
  else if (op.kind === 'copy') {
    const f = current.get(op.at);
    if (f) current.set(op.at, { ...f, backends: f.backends.map((b) => ({ ...b })), sourceRanges: [...f.sourceRanges] });
  } else {
    const k = feKeys[op.at]!;
    // compile's order is canonical; other callers may hand any order
    const backends = op.reversed ? [...op.backends].reverse() : op.backends;
    current.set(op.at, fe(k.address, k.port, backends, {
      protocol: k.protocol, scope: k.scope, sessionAffinitySeconds: op.affinity, sourceRanges: op.ranges, snatRemote: op.snat,
    }));
  }
}

function stateOf(current: Map<number, NodeFrontend>): NodeState {
  return { frontends: [...current.values()] };
}

test('property: after any sequence of changes, incremental plan and diff equal the full ones', (t) => {
  fc.assert(
    fc.property(
      fc.array(arbOp, { minLength: 1, maxLength: 12 }),
      fc.array(fc.array(arbOp, { minLength: 0, maxLength: 4 }), { minLength: 1, maxLength: 8 }),
      fc.constantFrom<MaglevSizing>('pow2', 'pow2', 'exact'),
      (initial, steps, maglevSizing) => {
        const current = new Map<number, NodeFrontend>();
        for (const op of initial) apply(current, op);
        let prev = buildPlan(stateOf(current), undefined, { seed, maglevSizing });
        for (const step of steps) {
          for (const op of step) apply(current, op);
          const state = stateOf(current);
          const inc = buildPlan(state, prev, { seed, maglevSizing });
          // the incremental path must have run (a small change of a plan buildPlan made)
          t.truthy(planDelta(prev, inc));
          const full = buildPlan(state, stranger(prev), { seed, maglevSizing });
          t.is(planDelta(prev, full), undefined);
          t.deepEqual(shape(inc, prev), shape(full, prev));
          t.deepEqual(diffPlans(prev, inc), diffPlans(stranger(prev), inc));
          prev = inc;
        }
      },
    ),
    { seed: 4242, numRuns: 150 },
  );
});

function sortedOps(ops: ReturnType<typeof diffPlans>): string[] {
  return ops.map((o) => JSON.stringify(o)).sort();
}

/** A plan's content by key, whatever its maps' order. */
function content(p: Plan) {
  const sorted = <K, V>(m: Map<K, V>) => [...m].sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : String(a[0]) > String(b[0]) ? 1 : 0));
  return {
    seed: p.seed, frontends: sorted(p.frontends), backends: sorted(p.backends),
    tables: sorted(p.tables).map(([id, t]) => [id, t.m, t.members, [...t.slots]]),
  };
}

test('property: consumePrev builds in prev\'s maps the plan and ops of a copying build; undoPlan puts prev back', (t) => {
  fc.assert(
    fc.property(
      fc.array(arbOp, { minLength: 1, maxLength: 12 }),
      fc.array(fc.array(arbOp, { minLength: 0, maxLength: 4 }), { minLength: 1, maxLength: 8 }),
      fc.constantFrom<MaglevSizing>('pow2', 'exact'),
      fc.nat(7),
      fc.array(arbOp, { minLength: 1, maxLength: 3 }),
      (initial, steps, maglevSizing, failAt, last) => {
        const current = new Map<number, NodeFrontend>();
        for (const op of initial) apply(current, op);
        let prev = buildPlan(stateOf(current), undefined, { seed, maglevSizing });
        for (let s = 0; s < steps.length; s++) {
          for (const op of steps[s]!) apply(current, op);
          const state = stateOf(current);
          const before = content(prev);
          const copy = stranger(prev);
          const want = buildPlan(state, copy, { seed, maglevSizing });
          const wantOps = diffPlans(copy, want);
          if (s === failAt) {
            // writes failed: prev is whole again, and the next build from it (a full one) is right
            const next = buildPlan(state, prev, { seed, maglevSizing, consumePrev: true });
            diffPlans(prev, next);
            undoPlan(next);
            t.deepEqual(content(prev), before);
          }
          const next = buildPlan(state, prev, { seed, maglevSizing, consumePrev: true });
          // the same writes; frontends that a full diff takes from maps in insertion order (after a
          // consumed build) may come in another order within their phase
          t.deepEqual(sortedOps(diffPlans(prev, next)), sortedOps(wantOps));
          t.deepEqual(content(next), content(want));
          prev = next;
        }
        // the chain keeps the full build's frontend order through consumed builds (spliced in place
        // there): a copying build that adds or removes a key lays its map out in that order
        for (const op of last) apply(current, op);
        const state = stateOf(current);
        const copied = buildPlan(state, prev, { seed, maglevSizing });
        const keys = new Set(state.frontends.map((f) => frontendKey(f)));
        if (keys.size !== prev.frontends.size || [...prev.frontends.keys()].some((k) => !keys.has(k))) {
          t.truthy(planDelta(prev, copied));
          t.deepEqual([...copied.frontends.keys()], [...buildPlan(state, stranger(prev), { seed, maglevSizing }).frontends.keys()]);
        }
      },
    ),
    { seed: 4243, numRuns: 150 },
  );
});

test('a plan that is not the latest of its chain is planned in full, with the same result', (t) => {
  const a = fe('10.96.0.1', 80, [be('10.244.1.2'), be('10.244.1.3')]);
  const b = fe('10.96.0.2', 80, [be('10.244.2.2')]);
  const p1 = buildPlan({ frontends: [a, b] }, undefined, { seed });
  const b2 = fe('10.96.0.2', 80, [be('10.244.2.3')]);
  const p2 = buildPlan({ frontends: [a, b2] }, p1, { seed });
  t.truthy(planDelta(p1, p2));
  // p1 again, after the chain moved on to p2: another branch from p1
  const b3 = fe('10.96.0.2', 80, [be('10.244.2.4')]);
  const p3 = buildPlan({ frontends: [a, b3] }, p1, { seed });
  t.is(planDelta(p1, p3), undefined);
  t.deepEqual(shape(p3, p1), shape(buildPlan({ frontends: [a, b3] }, stranger(p1), { seed }), p1));
  // ids 2's backend 10.244.2.2 held in p1 stays reserved: 10.244.2.4 takes 4, as in p2 10.244.2.3 took 4
  t.deepEqual(p3.frontends.get(frontendKey(b3))!.backendIds, p2.frontends.get(frontendKey(b2))!.backendIds);
  // and the chain restarted at p3 serves the next change incrementally
  const p4 = buildPlan({ frontends: [a] }, p3, { seed });
  t.truthy(planDelta(p3, p4));
  t.deepEqual(diffPlans(p3, p4), diffPlans(stranger(p3), p4));
});

test('the same object listed twice, or a bad changed frontend, gets the full build\'s error', (t) => {
  const a = fe('10.96.0.1', 80, [be('10.244.1.2')]);
  const p1 = buildPlan({ frontends: [a] }, undefined, { seed });
  t.throws(() => buildPlan({ frontends: [a, a] }, p1, { seed }), { message: /duplicate frontend 10\.96\.0\.1\|80\|TCP\|internal/ });
  const bad = fe('10.96.0.2', 80, [be('10.244.1.300')]);
  t.throws(() => buildPlan({ frontends: [a, bad] }, p1, { seed }), { message: /backend address "10\.244\.1\.300" is not an IP address/ });
  // the failed builds left the chain usable
  const ok = buildPlan({ frontends: [a, fe('10.96.0.2', 80, [be('10.244.1.2')])] }, p1, { seed });
  t.truthy(planDelta(p1, ok));
  t.is(ok.frontends.size, 2);
});
