// buildPlan's onTables (the agent's first sync hands a full build's new tables to the data plane,
// which fills them while the build finishes and the diff runs): it sees exactly the tables the
// build made new (those diff will create), once, before the build returns, and changes nothing in
// the plan: the same plan as a build without it, on random states, from nothing and from a prev.
import test from 'ava';
import fc from 'fast-check';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan } from '../../src/plan/plan.js';
import type { Plan, PlanTable } from '../../src/plan/types.js';
import { arbState, be, fe } from './plan-helpers.js';

const SEED = 7;
const planOf = (p: Plan) => ({ seed: p.seed, frontends: [...p.frontends], backends: [...p.backends], tables: [...p.tables].map(([id, t]) => [id, t.m, [...t.members], [...t.slots]]) });

test('onTables: the tables diff creates, once, and the plan as without it', (t) => {
  fc.assert(fc.property(arbState, arbState, (s1, s2) => {
    // prev as a kernel read-back is (a plain plan, no incremental chain): a full build against it
    const p1 = buildPlan(s1, undefined, { seed: SEED });
    for (const prev of [undefined, { ...p1 }]) {
      const calls: (readonly PlanTable[])[] = [];
      const withHook = buildPlan(s2, prev, { seed: SEED, onTables: (tables) => { calls.push(tables); } });
      const without = buildPlan(s2, prev, { seed: SEED });
      t.deepEqual(planOf(withHook), planOf(without));
      const created = diffPlans(prev, withHook).filter((o) => o.op === 'createTable').map((o) => (o as { table: PlanTable }).table.id).sort((a, b) => a - b);
      if (!created.length) t.is(calls.length, 0, 'not called without a new table');
      else {
        t.is(calls.length, 1);
        t.deepEqual(calls[0]!.map((x) => x.id).sort((a, b) => a - b), created);
        for (const x of calls[0]!) t.is(withHook.tables.get(x.id), x, 'the plan\'s own table objects');
      }
    }
  }), { numRuns: 60 });
});

test('onTables is not called by an incremental build', (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.0.1'), be('10.244.0.2')])] }, undefined, { seed: SEED });
  let called = 0;
  const b = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.0.1'), be('10.244.0.3')])] }, a, { seed: SEED, consumePrev: true, onTables: () => { called++; } });
  t.is(b.tables.size, 1);
  t.is(called, 0, 'a change\'s tables are written by its apply as before');
});
