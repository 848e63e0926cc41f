import test from 'ava';
import fc from 'fast-check';
import type { NodeState } from '../../src/model/compiled.js';
import { buildMaglevTable, maglevSize } from '../../src/plan/maglev.js';
import { buildPlan, fillMissingSlots, planDelta, releaseSlots } from '../../src/plan/plan.js';
import { diffPlans } from '../../src/plan/diff.js';
import { fillTables, pendingSlots } from '../../src/plan/slot-source.js';
import { backendKey, frontendKey, type Plan } from '../../src/plan/types.js';
import { arbState, be, counts, fe } from './plan-helpers.js';

const FC = { seed: 1669, numRuns: 200 };
const seed = 0x5eed;

/** What a restart reads back from the pinned maps: everything but the tables' slots. */
function readBack(p: Plan): Plan {
  return {
    seed: p.seed,
    frontends: new Map([...p.frontends].map(([k, f]) => [k, { ...f, backendIds: [...f.backendIds], sourceRanges: [...f.sourceRanges] }])),
    backends: new Map([...p.backends].map(([id, b]) => [id, { ...b }])),
    tables: new Map([...p.tables].map(([id, t]) => [id, { ...t, members: [...t.members], slots: new Uint32Array(0) }])),
  };
}

function ids(p: Plan, key: string) {
  return p.frontends.get(key)!;
}

const A = ['10.244.1.2', '10.244.1.3', '10.244.2.2'];
const svc = (addr: string, backends = A.map((a) => be(a))) => fe(addr, 80, backends);

test('ids are stable across syncs and unchanged tables are reused, not rebuilt', (t) => {
  const s1: NodeState = { frontends: [svc('10.96.0.1'), svc('10.96.0.2'), svc('10.96.0.3', [be('10.244.9.9')])] };
  const p1 = buildPlan(s1, undefined, { seed });
  t.deepEqual([...p1.frontends.values()].map((f) => f.id), [1, 2, 3]);
  const s2: NodeState = { frontends: [svc('10.96.0.3', [be('10.244.9.9'), be('10.244.9.8')]), svc('10.96.0.1'), svc('10.96.0.4')] };
  const p2 = buildPlan(s2, p1, { seed });
  t.is(ids(p2, '10.96.0.1|80|TCP|internal').id, 1);
  t.is(ids(p2, '10.96.0.3|80|TCP|internal').id, 3);
  // 2 went away in this very sync, so it is not handed out again until the next one
  t.is(ids(p2, '10.96.0.4|80|TCP|internal').id, 4);
  for (const b of p1.backends.values()) {
    const same = [...p2.backends.values()].find((x) => backendKey(x) === backendKey(b));
    if (same) t.is(same.id, b.id);
  }
  const t1 = ids(p1, '10.96.0.1|80|TCP|internal').tableId;
  t.is(ids(p2, '10.96.0.1|80|TCP|internal').tableId, t1);
  t.true(p2.tables.get(t1) === p1.tables.get(t1), 'the very same table object: no rebuild');
  // the frontend whose backends changed got a new table id
  t.not(ids(p2, '10.96.0.3|80|TCP|internal').tableId, ids(p1, '10.96.0.3|80|TCP|internal').tableId);
});

test('new ids take the lowest free id', (t) => {
  const s = (addrs: string[]): NodeState => ({ frontends: addrs.map((a) => svc(a, [be(a.replace('10.96', '10.244'))])) });
  const p1 = buildPlan(s(['10.96.0.1', '10.96.0.2', '10.96.0.3', '10.96.0.4']), undefined, { seed });
  const p2 = buildPlan(s(['10.96.0.1', '10.96.0.4']), p1, { seed });
  const p3 = buildPlan(s(['10.96.0.1', '10.96.0.4', '10.96.0.7', '10.96.0.8', '10.96.0.9']), p2, { seed });
  t.deepEqual([...p3.frontends.values()].map((f) => f.id), [1, 4, 2, 3, 5]);
  t.deepEqual([...p3.backends.keys()], [1, 2, 3, 4, 5]);
  t.deepEqual([...p3.backends.values()].map((b) => b.address), ['10.244.0.1', '10.244.0.7', '10.244.0.8', '10.244.0.4', '10.244.0.9']);
  t.deepEqual([...p3.tables.keys()], [1, 2, 3, 4, 5]);
});

test('a plan read back from the kernel (tables without slots) keeps every id and rebuilds no table', (t) => {
  const s: NodeState = { frontends: [svc('10.96.0.1'), svc('10.96.0.2', [be('10.244.5.5')]), svc('10.96.0.3', [])] };
  const p1 = buildPlan(s, undefined, { seed });
  const back = readBack(p1);
  const p2 = buildPlan(s, back, { seed });
  t.deepEqual([...p2.frontends.values()].map((f) => [f.id, f.tableId, f.maglevM]), [...p1.frontends.values()].map((f) => [f.id, f.tableId, f.maglevM]));
  for (const [id, table] of p2.tables) {
    t.true(table === back.tables.get(id), 'reused as read back');
    t.is(table.slots.length, 0);
  }
  fillMissingSlots(p2);
  for (const [id, table] of p2.tables) t.deepEqual(table.slots, p1.tables.get(id)!.slots);
  // another seed invalidates every table
  const p3 = buildPlan(s, back, { seed: seed + 1 });
  for (const table of p3.tables.values()) t.false(back.tables.has(table.id));
});

test('a plan whose slots were released still serves as prev: nothing rebuilt, nothing written', (t) => {
  const s: NodeState = { frontends: [svc('10.96.0.1'), svc('10.96.0.2', [be('10.244.5.5')])] };
  const p1 = buildPlan(s, undefined, { seed });
  const full = [...p1.tables.values()].map((x) => [...x.slots]);
  releaseSlots(p1);
  t.true([...p1.tables.values()].every((x) => x.slots.length === 0));
  const p2 = buildPlan(s, p1, { seed });
  t.deepEqual(diffPlans(p1, p2), []);
  fillMissingSlots(p2);
  t.deepEqual([...p2.tables.values()].map((x) => [...x.slots]), full);
  // a change next to released tables writes only the new table, with its slots
  const p3 = buildPlan({ frontends: [svc('10.96.0.1'), svc('10.96.0.2', [be('10.244.5.6')])] }, p2, { seed });
  const creates = diffPlans(p2, p3).filter((o) => o.op === 'createTable');
  t.is(creates.length, 1);
  t.true(creates.every((o) => o.op === 'createTable' && o.table.slots.length === o.table.m));
  // told the plan it was built from (released), a release looks only at the tables the build made
  releaseSlots(p3);
  const p4 = buildPlan({ frontends: [svc('10.96.0.1'), svc('10.96.0.2', [be('10.244.5.7')])] }, p3, { seed, consumePrev: true });
  t.is(diffPlans(p3, p4).filter((o) => o.op === 'createTable').length, 1);
  t.truthy(planDelta(p3, p4));
  releaseSlots(p4, p3);
  t.true([...p4.tables.values()].every((x) => x.slots.length === 0));
});

test('a full build holds no slots: each table is filled when read (or where written), as buildMaglevTable gives it', (t) => {
  const frontends = Array.from({ length: 300 }, (_, i) => fe(`10.96.${i >> 8}.${i & 255}`, 80,
    Array.from({ length: 1 + (i % 12) }, (_, j) => be(`10.${128 + (i >> 12)}.${(i >> 4) & 255}.${((i & 15) << 4) + j}`, 8080 + (i % 3)))));
  // shared members: the same backends in several tables, hashed once
  frontends.push(fe('10.97.0.1', 80, frontends[7]!.backends.slice(0, 5)), fe('10.97.0.2', 80, frontends[7]!.backends.slice(2)));
  const p = buildPlan({ frontends }, undefined, { seed });
  const tables = [...p.tables.values()];
  t.is(tables.length, 302);
  const srcs = new Set(tables.map((x) => pendingSlots(x)?.src));
  t.is(srcs.size, 1, 'one source for the build, no table filled yet');
  const src = [...srcs][0]!;
  t.is(src.ids.length, tables.reduce((n, x) => n + x.members.length, 0), '12 bytes per member, no slot');
  // the writer's fill of several tables into one buffer at their offsets, compiled and in JavaScript
  const at: number[] = [];
  let total = 0;
  for (const x of tables) { at.push(total); total += x.m + 1; }
  const desc = Uint32Array.from(tables.flatMap((x, k) => [pendingSlots(x)!.first, x.members.length, x.m, at[k]!]));
  const native = new Uint32Array(total).fill(7), js = new Uint32Array(total).fill(7);
  fillTables(src, desc, native);
  fillTables(src, desc, js, 1, false);
  t.deepEqual(native, js);
  tables.forEach((x, k) => {
    const members = x.members.map((id) => ({ ...p.backends.get(id)!, id }));
    const want = buildMaglevTable(members, seed, x.m);
    t.deepEqual(native.subarray(at[k]!, at[k]! + x.m), want, `table ${x.id} filled in a batch`);
    t.is(native[at[k]! + x.m], 7, 'slots outside the tables untouched');
    if (k % 50 === 0) {
      t.deepEqual(x.slots, want, `table ${x.id} read`);
      t.is(pendingSlots(x), undefined);
      t.is(x.slots, x.slots, 'computed once');
    }
  });
  // a release drops the sources of the tables never read, computing nothing
  releaseSlots(p);
  t.true(tables.every((x) => pendingSlots(x) === undefined && x.slots.length === 0));
  t.deepEqual(diffPlans(p, buildPlan({ frontends }, p, { seed })), []);
});

test('a read-back frontend naming a table the kernel lacks gets a new table under an unused id', (t) => {
  const s: NodeState = { frontends: [svc('10.96.0.1'), svc('10.96.0.2', [be('10.244.5.5')])] };
  const p1 = buildPlan(s, undefined, { seed });
  const back = readBack(p1);
  const lost = back.frontends.get('10.96.0.1|80|TCP|internal')!.tableId;
  back.tables.delete(lost);
  const p2 = buildPlan(s, back, { seed });
  const f = p2.frontends.get('10.96.0.1|80|TCP|internal')!;
  t.not(f.tableId, lost);
  t.false(back.tables.has(f.tableId));
  t.is(p2.tables.get(f.tableId)!.slots.length, f.maglevM);
});

test('frontends with the same member list share one table; a frontend without backends has none', (t) => {
  const s: NodeState = {
    frontends: [
      svc('10.96.0.1'),
      fe('192.168.50.2', 30080, A.map((a) => be(a)), { type: 'NodePort', scope: 'external' }),
      fe('192.168.50.2', 30080, [...A].reverse().map((a) => be(a)), { type: 'NodePort', scope: 'internal' }),
      svc('10.96.0.2', [be('10.244.1.2')]),
      svc('10.96.0.3', []),
    ],
  };
  const p = buildPlan(s, undefined, { seed });
  const f = [...p.frontends.values()];
  t.is(p.tables.size, 2);
  const shared = ids(p, '10.96.0.1|80|TCP|internal').tableId;
  t.is(ids(p, '192.168.50.2|30080|TCP|external').tableId, shared);
  t.is(ids(p, '192.168.50.2|30080|TCP|internal').tableId, shared);
  t.not(ids(p, '10.96.0.2|80|TCP|internal').tableId, shared);
  const none = ids(p, '10.96.0.3|80|TCP|internal');
  t.deepEqual([none.tableId, none.maglevM, none.backendIds], [0, 0, []]);
  t.is(f.length, 5);
  t.is(p.tables.get(shared)!.m, maglevSize(3, 'pow2'));
});

test('terminating backends join the table only when no backend is ready (KEP-1669)', (t) => {
  const s: NodeState = {
    frontends: [
      svc('10.96.0.1', [be('10.244.1.2'), be('10.244.1.3', 8080, true)]),
      svc('10.96.0.2', [be('10.244.1.3', 8080, true), be('10.244.1.4', 8080, true)]),
      svc('10.96.0.3', [be('10.244.1.3', 8080, false), be('10.244.1.5')]),
    ],
  };
  const p = buildPlan(s, undefined, { seed });
  const byAddr = new Map([...p.backends.values()].map((b) => [b.address, b]));
  const one = ids(p, '10.96.0.1|80|TCP|internal');
  t.deepEqual(one.backendIds, [byAddr.get('10.244.1.2')!.id, byAddr.get('10.244.1.3')!.id], 'slots list every backend');
  t.deepEqual(p.tables.get(one.tableId)!.members, [byAddr.get('10.244.1.2')!.id]);
  const two = ids(p, '10.96.0.2|80|TCP|internal');
  t.deepEqual(p.tables.get(two.tableId)!.members, two.backendIds, 'all terminating: they are the fallback');
  // terminating in any frontend marks the backend; the fallback decision stays per frontend
  t.true(byAddr.get('10.244.1.3')!.terminating);
  const three = ids(p, '10.96.0.3|80|TCP|internal');
  t.deepEqual(p.tables.get(three.tableId)!.members, three.backendIds);
});

test('tables equal what any node builds for the same backends, whatever ids that node uses', (t) => {
  const state: NodeState = { frontends: [svc('10.96.0.1', ['10.244.1.9', '10.244.1.2', 'fd00::5'].map((a) => be(a)))] };
  const nodeA = buildPlan(state, undefined, { seed });
  // node B has other backends first, so other ids
  const nodeB0 = buildPlan({ frontends: [svc('10.96.0.9', ['10.244.7.1', '10.244.7.2', '10.244.7.3', '10.244.7.4'].map((a) => be(a)))] }, undefined, { seed });
  const nodeB = buildPlan({ frontends: [...state.frontends, svc('10.96.0.9', ['10.244.7.1', '10.244.7.2', '10.244.7.3', '10.244.7.4'].map((a) => be(a)))] }, nodeB0, { seed });
  const render = (p: Plan) => {
    const f = p.frontends.get('10.96.0.1|80|TCP|internal')!;
    return [...p.tables.get(f.tableId)!.slots].map((id) => backendKey(p.backends.get(id)!));
  };
  t.not(nodeA.frontends.get('10.96.0.1|80|TCP|internal')!.backendIds[0], nodeB.frontends.get('10.96.0.1|80|TCP|internal')!.backendIds[0]);
  t.deepEqual(render(nodeA), render(nodeB));
});

test('pow2 sizing (the default) keeps M while N stays within a power of two; exact follows N', (t) => {
  const backends = (n: number) => Array.from({ length: n }, (_, i) => be(`10.244.0.${i + 1}`));
  const p9 = buildPlan({ frontends: [svc('10.96.0.1', backends(9))] }, undefined, { seed });
  const p10 = buildPlan({ frontends: [svc('10.96.0.1', backends(10))] }, p9, { seed });
  const p17 = buildPlan({ frontends: [svc('10.96.0.1', backends(17))] }, p10, { seed });
  t.deepEqual([p9, p10, p17].map((p) => [...p.tables.values()][0]!.m), [1601, 1601, 3203]);
  const e9 = buildPlan({ frontends: [svc('10.96.0.1', backends(9))] }, undefined, { seed, maglevSizing: 'exact' });
  const e10 = buildPlan({ frontends: [svc('10.96.0.1', backends(10))] }, e9, { seed, maglevSizing: 'exact' });
  t.deepEqual([e9, e10].map((p) => [...p.tables.values()][0]!.m), [907, 1009]);
  t.throws(() => buildPlan({ frontends: [] }, undefined, { seed, maglevSizing: 'fib' as never }), { message: /unknown Maglev sizing "fib"/ });
});

test('bad input is refused with the frontend and the reason', (t) => {
  const p = (frontends: NodeState['frontends']) => () => buildPlan({ frontends }, undefined, { seed });
  t.throws(p([svc('10.96.0.1'), svc('10.96.0.1')]), { message: /10\.96\.0\.1:80: duplicate frontend 10\.96\.0\.1\|80\|TCP\|internal/ });
  t.throws(p([svc('10.96.0.300')]), { message: /address "10\.96\.0\.300" is not an IP address/ });
  t.throws(p([svc('10.96.0.1', [be('10.244.1.1'), be('10.244.1.1')])]), { message: /backend 10\.244\.1\.1:8080 is listed twice/ });
  t.throws(p([svc('10.96.0.1', [be('10.244.1.1', 0)])]), { message: /backend 10\.244\.1\.1 port 0 is not in 1\.\.65535/ });
  t.throws(p([fe('10.96.0.1', 80, [], { protocol: 'ICMP' as never })]), { message: /protocol "ICMP"/ });
  t.throws(() => buildPlan({ frontends: [] }, undefined, { seed: -1 }), { message: /seed must be an integer/ });
});

test('property: any two states in a row keep ids, allocate the lowest free ones and build correct tables', (t) => {
  fc.assert(fc.property(arbState, arbState, fc.boolean(), (s1, s2, viaReadBack) => {
    const p1 = buildPlan(s1, undefined, { seed });
    const p2 = buildPlan(s2, viaReadBack ? readBack(p1) : p1, { seed });
    fillMissingSlots(p2);
    const feIds = new Set<number>();
    for (const [k, f] of p2.frontends) {
      if (feIds.has(f.id) || f.id < 1) return false;
      feIds.add(f.id);
      const old = p1.frontends.get(k);
      if (old && old.id !== f.id) return false;
    }
    // lowest free: the new ids are exactly the smallest ones not held by p1 or kept frontends
    const fresh = [...p2.frontends].filter(([k]) => !p1.frontends.has(k)).map(([, f]) => f.id).sort((a, b) => a - b);
    const held = new Set([...p1.frontends.values()].map((f) => f.id));
    const expect: number[] = [];
    for (let id = 1; expect.length < fresh.length; id++) if (!held.has(id)) expect.push(id);
    if (JSON.stringify(fresh) !== JSON.stringify(expect)) return false;
    const p1ByKey = new Map([...p1.backends.values()].map((b) => [backendKey(b), b.id]));
    for (const b of p2.backends.values()) {
      const old = p1ByKey.get(backendKey(b));
      if (old !== undefined && old !== b.id) return false;
      if (old === undefined && p1.backends.has(b.id)) return false;
    }
    for (const f of p2.frontends.values()) {
      const src = s2.frontends.find((x) => frontendKey(x) === frontendKey(f))!;
      if (f.backendIds.length !== src.backends.length) return false;
      if (f.backendIds.length === 0) { if (f.tableId !== 0) return false; continue; }
      const table = p2.tables.get(f.tableId)!;
      const ready = src.backends.filter((b) => !b.terminating);
      const members = ready.length ? ready : src.backends;
      if (table.m !== maglevSize(members.length, 'pow2') || f.maglevM !== table.m) return false;
      const expectSlots = buildMaglevTable(members.map((b) => ({ ...b, id: [...p2.backends.values()].find((x) => x.address === b.address && x.port === b.port && x.protocol === f.protocol)!.id })), seed, table.m);
      if (JSON.stringify([...table.slots]) !== JSON.stringify([...expectSlots])) return false;
      if (counts(table.slots).size !== members.length) return false;
    }
    return true;
  }), FC);
  t.pass();
});

test('the same state in another order gives the same plan', (t) => {
  fc.assert(fc.property(arbState, (s) => {
    const a = buildPlan(s, undefined, { seed });
    const b = buildPlan({ frontends: [...s.frontends].reverse().map((f) => ({ ...f, backends: [...f.backends].reverse() })) }, undefined, { seed });
    const r = (p: Plan) => JSON.stringify({ f: [...p.frontends], b: [...p.backends], t: [...p.tables].map(([id, x]) => [id, x.members, [...x.slots]]) });
    return r(a) === r(b);
  }), { ...FC, numRuns: 100 });
  t.pass();
});

/** ops by value, a table as what nftables and IPVS read of it (id, M, members) */
function opsView(ops: ReturnType<typeof diffPlans>): unknown[] {
  return ops.map((o) => (o.op === 'createTable' ? { op: o.op, id: o.table.id, m: o.table.m, members: [...o.table.members] } : structuredClone(o)));
}

test('slots: false (nftables, IPVS) builds no Maglev slots, full or incremental, and plans and writes what the slotted build does', (t) => {
  fc.assert(fc.property(fc.array(arbState, { minLength: 1, maxLength: 8 }), (states) => {
    let a: Plan | undefined, b: Plan | undefined;
    for (const s of states) {
      const na = buildPlan(s, a, { seed, consumePrev: true });
      const opsA = opsView(diffPlans(a, na));
      const nb = buildPlan(s, b, { seed, consumePrev: true, slots: false });
      const opsB = opsView(diffPlans(b, nb));
      t.true(nb.slotless);
      for (const x of nb.tables.values()) t.is(x.slots.length, 0, `table ${x.id} has no slots`);
      t.deepEqual(opsB, opsA);
      t.deepEqual([...nb.frontends.values()].map((f) => ({ ...f })), [...na.frontends.values()].map((f) => ({ ...f })));
      t.deepEqual([...nb.tables.values()].map((x) => [x.id, x.m, [...x.members]]), [...na.tables.values()].map((x) => [x.id, x.m, [...x.members]]));
      a = na;
      b = nb;
    }
    // switching to slots goes through a full build that fills every table a data plane must write
    const c = buildPlan(states[0]!, undefined, { seed, slots: false });
    const d = buildPlan(states[0]!, c, { seed });
    t.falsy(d.slotless);
    for (const x of d.tables.values()) t.is(x.slots.length, x.m, `table ${x.id} is filled`);
  }), { ...FC, numRuns: 60 });
});
