import test from 'ava';
import fc from 'fast-check';
import type { NodeState } from '../../src/model/compiled.js';
import { diffByWalk, diffPlans } from '../../src/plan/diff.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { FakeMaps } from '../../src/dataplane/fake-maps.js';
import { buildPlan } from '../../src/plan/plan.js';
import type { Plan, PlanOp } from '../../src/plan/types.js';
import { arbState, be, fe } from './plan-helpers.js';

const FC = { seed: 2016, numRuns: 300 };
const seed = 7;

function readBack(p: Plan): Plan {
  // a read-back holds Maps; a built plan's backends may be an IdMap (src/plan/id-map.ts)
  return { ...p, backends: new Map(p.backends), tables: new Map([...p.tables].map(([id, t]) => [id, { ...t, slots: new Uint32Array(0) }])) };
}

/** Applies ops one by one to a model of the kernel holding `from`, checking consistency after each. */
function simulate(from: Plan | undefined, ops: PlanOp[]): FakeMaps {
  const k = from ? FakeMaps.fromPlan(from) : new FakeMaps();
  k.check();
  ops.forEach((op, i) => {
    try {
      k.apply(op);
      k.check();
    } catch (e) {
      throw new Error(`after op ${i} ${JSON.stringify(op, (_k, v) => (v instanceof Uint32Array ? `[${v.length} slots]` : v))}: ${(e as Error).message}`);
    }
  });
  return k;
}

function kinds(ops: PlanOp[]): string[] {
  return ops.map((o) => o.op);
}

test('property: every prefix of diff(a, b) is consistent and the whole of it turns a into b', (t) => {
  fc.assert(fc.property(arbState, arbState, arbState, fc.boolean(), (s1, s2, s3, viaReadBack) => {
    const a = buildPlan(s1, undefined, { seed });
    const fromEmpty = simulate(undefined, diffPlans(undefined, a));
    if (JSON.stringify(fromEmpty.snapshot()) !== JSON.stringify(FakeMaps.fromPlan(a).snapshot())) return false;
    const prev = viaReadBack ? readBack(a) : a;
    const b = buildPlan(s2, prev, { seed });
    const k = simulate(prev, diffPlans(prev, b));
    if (JSON.stringify(k.snapshot()) !== JSON.stringify(FakeMaps.fromPlan(b).snapshot())) return false;
    const c = buildPlan(s3, b, { seed });
    const k2 = simulate(b, diffPlans(b, c));
    return JSON.stringify(k2.snapshot()) === JSON.stringify(FakeMaps.fromPlan(c).snapshot());
  }), FC);
  t.pass();
});

test('property: nothing changed, nothing written', (t) => {
  fc.assert(fc.property(arbState, fc.boolean(), (s, viaReadBack) => {
    const a = buildPlan(s, undefined, { seed });
    if (diffPlans(a, a).length !== 0) return false;
    const prev = viaReadBack ? readBack(a) : a;
    return diffPlans(prev, buildPlan(s, prev, { seed })).length === 0;
  }), FC);
  t.pass();
});

test('against nothing the backends are one upsertBackends op, first, every backend once in id order; a change after it upserts one by one', (t) => {
  const s1: NodeState = { frontends: [fe('10.96.0.1', 80, [be('10.244.1.3'), be('10.244.1.1')]), fe('10.96.0.2', 80, [be('10.244.1.2'), be('10.244.1.1')])] };
  const a = buildPlan(s1, undefined, { seed });
  const ops = diffPlans(undefined, a);
  t.deepEqual(kinds(ops), ['upsertBackends', 'createTable', 'createTable', 'upsertSlots', 'upsertSlots', 'upsertRevNat', 'upsertRevNat', 'upsertFrontend', 'upsertFrontend']);
  const bulk = ops[0] as Extract<PlanOp, { op: 'upsertBackends' }>;
  t.deepEqual(bulk.backends.map((b) => b.id), [...a.backends.keys()].sort((x, y) => x - y));
  t.true(bulk.backends.every((b) => a.backends.get(b.id) === b));
  // the same kernel as from the walk's ops one by one
  t.deepEqual(simulate(undefined, ops).snapshot(), simulate(undefined, [...a.backends.values()].map((b): PlanOp => ({ op: 'upsertBackend', backend: b })).concat(ops.slice(1))).snapshot());
  const s2: NodeState = { frontends: [...s1.frontends, fe('10.96.0.3', 80, [be('10.244.1.4')])] };
  t.deepEqual(kinds(diffPlans(a, buildPlan(s2, a, { seed }))), ['upsertBackend', 'createTable', 'upsertSlots', 'upsertRevNat', 'upsertFrontend']);
});

test('a changed backend set gets a new table, created before the frontend switches and deleted after', (t) => {
  const s1: NodeState = { frontends: [fe('10.96.0.1', 80, [be('10.244.1.1'), be('10.244.1.2')]), fe('10.96.0.2', 80, [be('10.244.9.9')])] };
  const s2: NodeState = { frontends: [fe('10.96.0.1', 80, [be('10.244.1.1'), be('10.244.1.3')]), fe('10.96.0.2', 80, [be('10.244.9.9')])] };
  const a = buildPlan(s1, undefined, { seed });
  const b = buildPlan(s2, a, { seed });
  const ops = diffPlans(a, b);
  t.deepEqual(kinds(ops), ['upsertBackend', 'createTable', 'upsertSlots', 'upsertFrontend', 'deleteTable', 'deleteBackend']);
  const oldTable = a.frontends.get('10.96.0.1|80|TCP|internal')!.tableId;
  const newTable = b.frontends.get('10.96.0.1|80|TCP|internal')!.tableId;
  t.not(newTable, oldTable);
  t.like(ops[1], { op: 'createTable', table: { id: newTable } });
  t.like(ops[3], { op: 'upsertFrontend', frontend: { id: 1, tableId: newTable } });
  t.deepEqual(ops[4], { op: 'deleteTable', tableId: oldTable });
  t.deepEqual(ops[5], { op: 'deleteBackend', backendId: 2 });
  t.deepEqual(ops[2], { op: 'upsertSlots', frontendId: 1, backendIds: [1, 4] });
  simulate(a, ops);
});

test('a shrinking list lowers backend_count first, then deletes the tail; removed frontends go with all they own', (t) => {
  const a = buildPlan({
    frontends: [
      fe('10.96.0.1', 80, [be('10.244.1.1'), be('10.244.1.2'), be('10.244.1.3')]),
      fe('10.96.0.2', 443, [be('10.244.1.1', 8443)], { sourceRanges: ['10.0.0.0/8'], type: 'LoadBalancer', scope: 'external' }),
    ],
  }, undefined, { seed });
  const b = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.1')])] }, a, { seed });
  const ops = diffPlans(a, b);
  t.deepEqual(kinds(ops), [
    'createTable', 'upsertSlots', 'upsertFrontend', 'deleteSlots',
    'deleteFrontend', 'deleteSlots', 'deleteRevNat', 'setSourceRanges',
    'deleteTable', 'deleteTable', 'deleteBackend', 'deleteBackend', 'deleteBackend',
  ]);
  t.deepEqual(ops[3], { op: 'deleteSlots', frontendId: 1, fromSlot: 1, toSlot: 3 });
  t.deepEqual(ops[5], { op: 'deleteSlots', frontendId: 2, fromSlot: 0, toSlot: 1 });
  t.deepEqual(ops[7], { op: 'setSourceRanges', frontendId: 2, add: [], remove: ['10.0.0.0/8'] });
  simulate(a, ops);
});

test('source ranges: additions before the frontend entry, removals after it; only changed frontends are touched', (t) => {
  const lb = (ranges: string[], port = 443) => fe('192.168.60.1', port, [be('10.244.1.1')], { type: 'LoadBalancer', scope: 'external', sourceRanges: ranges });
  const a = buildPlan({ frontends: [lb([]), lb(['10.0.0.0/8'], 80)] }, undefined, { seed });
  const b = buildPlan({ frontends: [lb(['10.1.0.0/16', '192.168.0.0/16']), lb(['10.0.0.0/8'], 80)] }, a, { seed });
  const ops = diffPlans(a, b);
  const fid = b.frontends.get('192.168.60.1|443|TCP|external')!.id;
  t.deepEqual(ops, [
    { op: 'setSourceRanges', frontendId: fid, add: ['10.1.0.0/16', '192.168.0.0/16'], remove: [] },
    { op: 'upsertFrontend', frontend: b.frontends.get('192.168.60.1|443|TCP|external')! },
  ]);
  simulate(a, ops);
  const c = buildPlan({ frontends: [lb(['192.168.0.0/16', '172.16.0.0/12']), lb(['10.0.0.0/8'], 80)] }, b, { seed });
  t.deepEqual(diffPlans(b, c), [
    { op: 'setSourceRanges', frontendId: fid, add: ['172.16.0.0/12'], remove: [] },
    { op: 'setSourceRanges', frontendId: fid, add: [], remove: ['10.1.0.0/16'] },
  ]);
  const d = buildPlan({ frontends: [lb([]), lb(['10.0.0.0/8'], 80)] }, c, { seed });
  t.deepEqual(kinds(diffPlans(c, d)), ['upsertFrontend', 'setSourceRanges'], 'the filter flag goes off before the ranges go');
  simulate(c, diffPlans(c, d));
});

test('a backend turning terminating is one upsertBackend plus the new table, slots untouched', (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.1'), be('10.244.1.2')])] }, undefined, { seed });
  const b = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.1'), be('10.244.1.2', 8080, true)])] }, a, { seed });
  t.deepEqual(kinds(diffPlans(a, b)), ['upsertBackend', 'createTable', 'upsertFrontend', 'deleteTable']);
  simulate(a, diffPlans(a, b));
});

test('diff refuses plans that reuse an id for another object', (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.1')])] }, undefined, { seed });
  const b = buildPlan({ frontends: [fe('10.96.0.2', 80, [be('10.244.1.2')])] }, undefined, { seed });
  t.throws(() => diffPlans(a, b), { message: /frontend id 1 belongs to 10\.96\.0\.1\|80\|TCP\|internal before and 10\.96\.0\.2\|80\|TCP\|internal after/ });
  const c = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.2')])] }, undefined, { seed });
  t.throws(() => diffPlans(a, c), { message: /backend id 1 is 10\.244\.1\.1:8080\/TCP before and 10\.244\.1\.2:8080\/TCP after/ });
});

test('the model itself rejects writes that break consistency', (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.1')])] }, undefined, { seed });
  const k = FakeMaps.fromPlan(a);
  k.apply({ op: 'deleteBackend', backendId: 1 });
  t.throws(() => k.check(), { message: /slot 0 names missing backend 1/ });
  const k2 = FakeMaps.fromPlan(a);
  k2.apply({ op: 'deleteTable', tableId: 1 });
  t.throws(() => k2.check(), { message: /names missing table 1/ });
  t.throws(() => k2.apply({ op: 'deleteRevNat', frontendId: 9 }), { message: /no rev-NAT entry 9/ });
});

test('the fake data plane writes through the same maps: it refuses what they refuse, with a KbpError', async (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.1')])] }, undefined, { seed });
  const dp = new FakeDataplane();
  await dp.apply(diffPlans(undefined, a), a);
  t.deepEqual(await dp.readPlan(), readBack(a));
  await t.throwsAsync(dp.apply([{ op: 'deleteTable', tableId: 1 }], a), { code: 'KBP_ERR_DATAPLANE', message: /deleteTable: .*names missing table 1/ });
  await t.throwsAsync(dp.apply([{ op: 'deleteBackend', backendId: 7 }], a), { code: 'KBP_ERR_DATAPLANE', message: /no backend 7/ });
});

test('the order of the plan maps does not change the ops', (t) => {
  fc.assert(fc.property(arbState, arbState, (s1, s2) => {
    const a = buildPlan(s1, undefined, { seed });
    const b = buildPlan(s2, a, { seed });
    const shuffled = (p: Plan): Plan => ({
      seed: p.seed,
      frontends: p.frontends,
      backends: new Map([...p.backends].reverse()),
      tables: new Map([...p.tables].reverse()),
    });
    return JSON.stringify(diffPlans(shuffled(a), shuffled(b))) === JSON.stringify(diffPlans(a, b));
  }), { ...FC, numRuns: 100 });
  t.pass();
});

test('property: against nothing (or an empty plan) the shortcut gives the walk\'s ops (the backends in one upsertBackends op either way), and its errors', (t) => {
  const stringify = (ops: PlanOp[]) => JSON.stringify(ops, (_k, v) => (v instanceof Uint32Array ? [...v] : v));
  const outcome = (f: () => PlanOp[]): string => {
    try {
      return stringify(f());
    } catch (e) {
      return `throws ${(e as Error).message}`;
    }
  };
  const empty = (): Plan => ({ seed, frontends: new Map(), backends: new Map(), tables: new Map() });
  // a plan broken the ways diff checks for: a frontend id reused or 0, a table or backend it names missing
  const broken = fc.constantFrom('none', 'dupId', 'zeroId', 'noTable', 'noBackend', 'tableMember');
  fc.assert(fc.property(arbState, broken, fc.boolean(), (s, how, slotless) => {
    const p = buildPlan(s, undefined, { seed, ...(slotless && { slots: false }) });
    const fes = [...p.frontends.values()];
    const next: Plan = { ...p, frontends: new Map(p.frontends), backends: new Map(p.backends), tables: new Map(p.tables) };
    const [k0] = p.frontends.keys();
    if (how === 'dupId' && fes.length > 1) next.frontends.set(k0!, { ...fes[0]!, id: fes[1]!.id });
    if (how === 'zeroId' && fes.length) next.frontends.set(k0!, { ...fes[0]!, id: 0 });
    const withTable = fes.find((f) => f.tableId);
    if (how === 'noTable' && withTable) next.tables.delete(withTable.tableId);
    if (how === 'noBackend' && withTable) next.backends.delete(withTable.backendIds[0]!);
    if (how === 'tableMember' && withTable) {
      const tb = p.tables.get(withTable.tableId)!;
      next.tables.set(tb.id, { ...tb, members: [...tb.members, 0xfffffff0], slots: tb.slots });
    }
    const walk = outcome(() => diffByWalk(undefined, next));
    return outcome(() => diffPlans(undefined, next)) === walk && outcome(() => diffPlans(empty(), next)) === walk;
  }), FC);
  t.pass();
});

for (const fromEmpty of [false, true]) test(`an incremental diff refuses a new frontend whose id a frontend it did not touch holds, also after diffs that carried the ids on${fromEmpty ? ' from the first diff against nothing' : ''}`, (t) => {
  // buildPlan never makes such a plan: the new frontend's id is forged into a taken one, as a bug would
  const svc = (i: number) => fe(`10.96.0.${i}`, 80, [be(`10.244.1.${i}`)]);
  let prev = buildPlan({ frontends: [svc(1), svc(2), svc(3)] }, undefined, { seed, consumePrev: true });
  // against nothing: the three backends in one op, then 3 tables, slots, rev-NATs and frontends
  if (fromEmpty) t.is(diffPlans(undefined, prev).length, 13);
  const ids = new Map([...prev.frontends.values()].map((f) => [f.address, f.id]));
  // Services created one by one: each diff is incremental, carries what it knew on and must stay right
  const frontends = [svc(1), svc(2), svc(3)];
  for (let i = 4; i <= 6; i++) {
    frontends.push(svc(i));
    const next = buildPlan({ frontends: [...frontends] }, prev, { seed, consumePrev: true });
    t.deepEqual(kinds(diffPlans(prev, next)), ['upsertBackend', 'createTable', 'upsertSlots', 'upsertRevNat', 'upsertFrontend']);
    ids.set(`10.96.0.${i}`, next.frontends.get(`10.96.0.${i}|80|TCP|internal`)!.id);
    prev = next;
  }
  // one Service deleted, one created whose id is forged into the one a Service created above holds
  const kept = frontends.filter((f) => f.address !== '10.96.0.2');
  kept.push(svc(7));
  const next = buildPlan({ frontends: kept }, prev, { seed, consumePrev: true });
  const made = next.frontends.get('10.96.0.7|80|TCP|internal')!;
  const taken = ids.get('10.96.0.5')!;
  t.not(made.id, taken);
  made.id = taken;
  t.throws(() => diffPlans(prev, next), { message: new RegExp(`frontend id ${taken} belongs to 10\\.96\\.0\\.5\\|80\\|TCP\\|internal before and 10\\.96\\.0\\.7\\|80\\|TCP\\|internal after`) });
  // and one a Service of the first build holds
  made.id = ids.get('10.96.0.3')!;
  t.throws(() => diffPlans(prev, next), { message: new RegExp(`frontend id ${made.id} belongs to 10\\.96\\.0\\.3\\|80\\|TCP\\|internal before`) });
  // and the id of the one deleted in the same build (ids wait a sync)
  made.id = ids.get('10.96.0.2')!;
  t.throws(() => diffPlans(prev, next), { message: /invalid or used twice/ });
});
