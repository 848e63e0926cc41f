// buildPlan's deferChain (the agent's first sync leaves a full build's records for the next,
// incremental, build to a turn during its apply): the plan is the same, and the builds after it,
// whether finishChain made the records or the next build had to, are incremental and give the plan
// and the ops a build from a plan that never deferred gives.
import test from 'ava';
import fc from 'fast-check';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan, finishChain, planDelta } from '../../src/plan/plan.js';
import type { Plan } from '../../src/plan/types.js';
import { arbState, be } from './plan-helpers.js';

const SEED = 11;

/** Everything a plan says, in its maps' order, with which objects it shares with prev. */
function shape(p: Plan, prev?: Plan) {
  return {
    seed: p.seed,
    frontends: [...p.frontends].map(([k, f]) => [k, f, prev?.frontends.get(k) === f]),
    backends: [...p.backends].map(([id, b]) => [id, b, prev?.backends.get(id) === b]),
    tables: [...p.tables].map(([id, t]) => [id, t.m, [...t.members], [...t.slots], prev?.tables.get(id) === t]),
  };
}

/** state with one frontend changed (a backend added or dropped) or removed, the others the same objects */
function changed(s: NodeState, which: number, how: 'grow' | 'shrink' | 'drop'): NodeState {
  const fes = [...s.frontends];
  if (!fes.length) return s;
  const k = which % fes.length, f = fes[k]!;
  if (how === 'drop') fes.splice(k, 1);
  else {
    const backends = how === 'grow' ? [...f.backends, be('10.244.9.9', 7000 + f.backends.length)] : f.backends.slice(0, -1);
    fes[k] = { ...f, backends } satisfies NodeFrontend;
  }
  return { frontends: fes };
}

type Mode = 'now' | 'finished' | 'lazy';

test('deferChain: the same plan, and the changes after it built incrementally to the same plans and ops', (t) => {
  fc.assert(fc.property(arbState, fc.array(fc.tuple(fc.nat(20), fc.constantFrom<'grow' | 'shrink' | 'drop'>('grow', 'shrink', 'drop')), { minLength: 1, maxLength: 4 }),
    (s0, steps) => {
      const runs = (['now', 'finished', 'lazy'] as Mode[]).map((mode) => {
        const first = buildPlan(s0, undefined, { seed: SEED, consumePrev: true, deferChain: mode !== 'now' });
        const firstShape = shape(first);
        if (mode === 'finished') finishChain(first);
        const out: unknown[] = [firstShape];
        let prev = first, s = s0;
        for (const [which, how] of steps) {
          s = changed(s, which, how);
          const before = shape(prev);
          const next = buildPlan(s, prev, { seed: SEED, consumePrev: true });
          // the incremental path ran: a deferred chain was made for it, not dropped
          t.truthy(planDelta(prev, next), `${mode}: incremental after the full build`);
          out.push(before, shape(next, prev), diffPlans(prev, next));
          prev = next;
        }
        return out;
      });
      t.deepEqual(runs[1], runs[0]);
      t.deepEqual(runs[2], runs[0]);
    }), { numRuns: 120 });
});

test('finishChain: nothing to do for an incremental build, a plan not built here, or twice', (t) => {
  const s: NodeState = { frontends: [] };
  const a = buildPlan({ frontends: [{ service: 'default/a', portName: '', type: 'ClusterIP', address: '10.96.0.1', port: 80, protocol: 'TCP', scope: 'internal',
    backends: [be('10.244.0.1'), be('10.244.0.2')], sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false }] }, undefined, { seed: SEED, deferChain: true });
  finishChain(a);
  finishChain(a);
  const b = buildPlan(s, a, { seed: SEED });
  t.truthy(planDelta(a, b));
  finishChain(b);
  finishChain({ seed: SEED, frontends: new Map(), backends: new Map(), tables: new Map() });
  t.is(b.frontends.size, 0);
});

test('deferChain at a size whose full build frees its address tables at once (util/release.ts): the chain and the builds after it are the same', (t) => {
  // 2,000 frontends of 10 backends: every per-backend array and the address tables are over
  // release.ts's 64 KiB, so the build detaches them; the deferred chain must read none of them
  const fe = (i: number, n: number): NodeFrontend => ({ service: `default/s${i}`, portName: '', type: 'ClusterIP', address: `10.96.${i >> 8}.${i & 255}`, port: 80,
    protocol: 'TCP', scope: 'internal', backends: Array.from({ length: n }, (_, j) => be(`10.${1 + (j % 4)}.${i >> 8}.${i & 255}`, 8000 + j)),
    sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false });
  const s0: NodeState = { frontends: Array.from({ length: 2000 }, (_, i) => fe(i, 10)) };
  const steps: NodeState[] = [];
  let s = s0;
  for (const [k, how] of [[7, 'grow'], [1500, 'shrink'], [42, 'drop'], [7, 'grow']] as const) steps.push(s = changed(s, k, how));
  const runs = (['now', 'finished', 'lazy'] as Mode[]).map((mode) => {
    const first = buildPlan(s0, undefined, { seed: SEED, consumePrev: true, deferChain: mode !== 'now' });
    const out: unknown[] = [shape(first)];
    if (mode === 'finished') finishChain(first);
    let prev = first;
    for (const st of steps) {
      const next = buildPlan(st, prev, { seed: SEED, consumePrev: true });
      t.truthy(planDelta(prev, next), `${mode}: incremental after the full build`);
      out.push(shape(next, prev), diffPlans(prev, next));
      prev = next;
    }
    return out;
  });
  t.is(runs[0]!.length, 9);
  t.deepEqual(runs[1], runs[0]);
  t.deepEqual(runs[2], runs[0]);
});
