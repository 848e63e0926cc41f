// The map writer (src/dataplane/bpf/maps.ts) and the loader against the real kernel: the data plane's
// object loaded with pins, plans applied and read back, restart reuse, map-full errors, cleanup, and
// the full-sync / single-change cost at 10,000 Services x 10 endpoints (logged, not asserted).
import test from 'ava';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { hostRoots } from '../../testing/netns.js';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan } from '../../src/plan/plan.js';
import { pendingSlots } from '../../src/plan/slot-source.js';
import type { Plan, PlanOp } from '../../src/plan/types.js';
import * as L from '../../src/dataplane/bpf/layout.js';
import { attachCgroup, cleanup, loadDataplane } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { groupRemovals } from '../../src/dataplane/bpf/map-writer.js';
import { regionSize } from '../../src/dataplane/bpf/slot-alloc.js';
import { BpfMaps } from '../../src/dataplane/bpf/maps.js';
import { copyEntries } from '../../src/dataplane/bpf/migrate.js';
import { ALL_CPUS, BpfMap, numPossibleCpus } from '../../src/dataplane/bpf/native/map.js';
import { BpfObject } from '../../src/dataplane/bpf/native/object.js';
import { cgroupPrograms } from '../../src/dataplane/bpf/native/program.js';
import { BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_NOEXIST, MapType } from '../../src/dataplane/bpf/native/uapi.js';
import { KbpError } from '../../src/util/errors.js';
import { loadTemp, tempStatePath } from './fixtures/dataplane.js';
import { dataplaneObject, fixtureObject, isRoot, tempPinRoot } from './fixtures/util.js';

const SEED = 0x1234;

function fe(over: Partial<NodeFrontend> & Pick<NodeFrontend, 'address' | 'port'>): NodeFrontend {
  return {
    service: 'default/web', portName: 'http', type: 'ClusterIP', protocol: 'TCP', scope: 'internal',
    backends: [], sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false, ...over,
  };
}
const be = (address: string, port: number, terminating = false, local = false) => ({ address, port, terminating, local });

/** ClusterIP, NodePort, LoadBalancer with source ranges, affinity, terminating fallback, IPv6, refuse. */
function sampleState(): NodeState {
  const web = [be('10.244.1.2', 8080, false, true), be('10.244.2.3', 8080), be('10.244.2.4', 8080, true)];
  return {
    frontends: [
      fe({ address: '10.96.0.10', port: 80, backends: web, sessionAffinitySeconds: 10800 }),
      fe({ type: 'NodePort', address: '192.168.50.10', port: 30080, scope: 'external', backends: web, snatRemote: true }),
      fe({ type: 'NodePort', address: '0.0.0.0', port: 30080, scope: 'internal', backends: web }),
      fe({ type: 'LoadBalancer', address: '172.30.0.5', port: 80, scope: 'external', backends: web, snatRemote: true, sourceRanges: ['10.1.2.3/32', '192.168.0.0/16'] }),
      fe({ service: 'default/dns', portName: 'dns', address: 'fd00:96::a', port: 53, protocol: 'UDP', backends: [be('fd00:244::5', 5353), be('fd00:244::6', 5353)] }),
      fe({ service: 'default/drain', portName: '', address: '10.96.0.20', port: 443, backends: [be('10.244.3.1', 8443, true), be('10.244.3.2', 8443, true)] }),
      fe({ service: 'default/empty', portName: 'x', type: 'ExternalIP', address: '172.30.0.9', port: 8080, scope: 'external', backends: [] }),
    ],
  };
}

/**
 * A plan in comparable form: tables without their slots (read-back has none), table ids renamed in
 * the order the frontends (by key) first name them: a table id is a name, not kept across a restart
 * (read back, it is the table's region in lb_maglev_slots).
 */
function comparable(p: Plan): unknown {
  const fes = [...p.frontends.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const rename = new Map<number, number>();
  for (const [, f] of fes) if (f.tableId && !rename.has(f.tableId)) rename.set(f.tableId, rename.size + 1);
  return {
    seed: p.seed,
    frontends: fes.map(([k, f]) => [k, { ...f, tableId: rename.get(f.tableId) ?? 0 }]),
    backends: [...p.backends.values()].sort((a, b) => a.id - b.id),
    tables: [...p.tables.values()].map((t) => ({ id: rename.get(t.id) ?? -t.id, m: t.m, members: t.members })).sort((a, b) => a.id - b.id),
  };
}

/** lb_members as "feId/backendId" strings, and what a plan says it must hold */
function memberPairs(maps: BpfMaps): string[] {
  const out: string[] = [];
  maps.map('lb_members').scan((k) => { const m = L.decodeMemberKey(k); out.push(`${m.feId}/${m.backendId}`); });
  return out.sort();
}
/** lb_slots as "feId/slot=backendId" strings, and what a plan's lists say it must hold */
function slotEntries(maps: BpfMaps): string[] {
  const out: string[] = [];
  maps.map('lb_slots').scan((k, v) => { const s = L.decodeSlotKey(k); out.push(`${s.feId}/${s.slot}=${L.decodeU32(v)}`); });
  return out.sort();
}
function planSlots(p: Plan): string[] {
  return [...p.frontends.values()].flatMap((f) => f.backendIds.map((id, i) => `${f.id}/${i}=${id}`)).sort();
}
function planMembers(p: Plan): string[] {
  return [...p.frontends.values()].flatMap((f) => f.backendIds.map((id) => `${f.id}/${id}`)).sort();
}

test('removals of many frontends are regrouped by kind, keeping each frontend\'s own order', (t) => {
  const plan = buildPlan(sampleState(), undefined, { seed: SEED });
  const [a, b] = [...plan.frontends.values()];
  const ops: PlanOp[] = [
    { op: 'setSourceRanges', frontendId: 9, add: ['10.0.0.0/8'], remove: [] },
    { op: 'upsertFrontend', frontend: a! },
    { op: 'deleteSlots', frontendId: 7, fromSlot: 2, toSlot: 3 },
    { op: 'deleteFrontend', frontend: a! },
    { op: 'deleteSlots', frontendId: a!.id, fromSlot: 0, toSlot: 3 },
    { op: 'deleteRevNat', frontendId: a!.id },
    { op: 'deleteFrontend', frontend: b! },
    { op: 'deleteRevNat', frontendId: b!.id },
    { op: 'setSourceRanges', frontendId: b!.id, add: [], remove: ['10.0.0.0/8'] },
    { op: 'deleteTable', tableId: 3 },
    { op: 'deleteBackend', backendId: 4 },
  ];
  const g = groupRemovals(ops);
  t.deepEqual(g.map((o) => `${o.op}:${'frontendId' in o ? o.frontendId : 'frontend' in o ? o.frontend.id : ''}`), [
    'setSourceRanges:9', `upsertFrontend:${a!.id}`,
    `deleteFrontend:${a!.id}`, `deleteFrontend:${b!.id}`,
    'deleteSlots:7', `deleteSlots:${a!.id}`,
    `deleteRevNat:${a!.id}`, `deleteRevNat:${b!.id}`,
    `setSourceRanges:${b!.id}`, 'deleteTable:', 'deleteBackend:',
  ]);
  t.is(groupRemovals(g), g, 'already grouped: returned as is');
});

if (!isRoot) {
  test('datapath tests need root', (t) => {
    t.log('skipped: run as root (npm run test:datapath)');
    t.pass();
  });
} else {
  test('load with pins, apply a plan, read it back equal; a second load reuses every map', (t) => {
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    const obj = dataplaneObject();
    const a = loadDataplane({ pinRoot: root, objectPath: obj, state: AgentStateFile.forPinRoot(root, statePath) });
    t.false(a.reused);
    for (const n of L.MAP_NAMES) t.true(existsSync(join(root, n)), `${n} pinned`);
    a.maps.writeConfig({ hashSeed: SEED, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
    const plan = buildPlan(sampleState(), undefined, { seed: SEED });
    const res = a.maps.apply(diffPlans(undefined, plan));
    t.true(res.tables >= 3);
    const back = a.maps.readPlan();
    t.deepEqual(comparable(back), comparable(plan));
    // nothing to write when the kernel already holds the plan
    t.deepEqual(diffPlans(back, buildPlan(sampleState(), back, { seed: SEED })), []);
    // the kernel's Maglev arrays hold exactly the plan's slots
    for (const tb of plan.tables.values()) t.deepEqual(a.maps.readTable(tb.id, tb.m), tb.slots, `table ${tb.id}`);
    // flags the kernel reads
    const lb = [...plan.frontends.values()].find((f) => f.type === 'LoadBalancer')!;
    const v = L.decodeFrontend(a.maps.map('lb_frontends').lookup(L.encodeFeKey(lb))!);
    t.is(v.flags, L.LB_FE_F_SOURCE_RANGES | L.LB_FE_F_SNAT_REMOTE);
    t.is(v.backendCount, 3);
    const drain = [...plan.frontends.values()].find((f) => f.service === 'default/drain')!;
    t.deepEqual(plan.tables.get(drain.tableId)!.members, drain.backendIds, 'all-terminating: the terminating backends serve');
    a.object.close();

    // restart: same pins, same contents, names from the state file
    const b = loadDataplane({ pinRoot: root, objectPath: obj, state: AgentStateFile.forPinRoot(root, statePath) });
    t.true(b.reused);
    t.deepEqual(comparable(b.maps.readPlan()), comparable(plan));
    // another process (dump) reads the pins alone
    const dump = BpfMaps.fromPins(root, AgentStateFile.forPinRoot(root, statePath));
    t.deepEqual(comparable(dump.readPlan()), comparable(plan));
    dump.close();
    // without the state file the names are unknown, the rest is there
    const bare = BpfMaps.fromPins(root).readPlan();
    t.is([...bare.frontends.values()][0]!.service, '');
    t.is(bare.frontends.size, plan.frontends.size);
    b.object.close();
  });

  test('a changed plan applies as a diff: removed backend, frontend and range; tables swapped and freed', (t) => {
    const d = loadTemp(t);
    const root = d.pinRoot;
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    const p1 = buildPlan(sampleState(), undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, p1));
    const s2 = sampleState();
    s2.frontends = s2.frontends.filter((f) => f.type !== 'NodePort');
    for (const f of s2.frontends) if (f.service === 'default/web') f.backends = f.backends.filter((b) => b.address !== '10.244.2.3');
    s2.frontends.find((f) => f.type === 'LoadBalancer')!.sourceRanges = ['192.168.0.0/16'];
    const read1 = d.maps.readPlan();
    const p2 = buildPlan(s2, read1, { seed: SEED });
    const ops = diffPlans(read1, p2);
    t.true(ops.some((o) => o.op === 'deleteBackend') && ops.some((o) => o.op === 'deleteTable') && ops.some((o) => o.op === 'deleteFrontend'));
    t.deepEqual(memberPairs(d.maps), planMembers(p1), 'lb_members: every (frontend, backend) pair of the plan');
    // lb_backends is an array: its fill is the entries holding a backend, read once, then followed write by write
    const backendFill = () => d.maps.mapFill().find((m) => m.name === 'lb_backends')!.entries;
    t.is(backendFill(), p1.backends.size);
    d.maps.apply(ops);
    t.is(backendFill(), p2.backends.size, 'the removed backend\'s entry no longer counts');
    const gone = [...p1.backends.keys()].filter((id) => !p2.backends.has(id));
    t.true(gone.length > 0);
    for (const id of gone) t.deepEqual(d.maps.map('lb_backends').lookup(L.encodeU32(id)), Buffer.alloc(L.BACKEND.size), `backend id ${id}: an all-zero entry`);
    const read2 = d.maps.readPlan();
    t.deepEqual(comparable(read2), comparable(p2));
    t.deepEqual(memberPairs(d.maps), planMembers(p2), 'lb_members: the removed backend left every frontend, removed frontends left');
    t.deepEqual(diffPlans(read2, buildPlan(s2, read2, { seed: SEED })), []);
    // the regions of removed tables wait out their grace period; those in use are p2's tables
    const regionSlots = (p: Plan) => [...p.tables.values()].reduce((n, tb) => n + regionSize(tb.m), 0);
    t.is(d.maps.maglevSlotUse().used, regionSlots(p2), 'lb_maglev_slots: the regions of p2\'s tables in use');
    t.true(d.maps.maglevSlotUse().quarantined >= regionSlots(p1) - regionSlots(p2));
    t.is(d.maps.map('lb_slots').count(), [...p2.frontends.values()].reduce((s, f) => s + f.backendIds.length, 0), 'no orphan slots');
    t.is(d.maps.map('lb_src_ranges').count(), 1);
    t.is(d.maps.map('lb_revnat').count(), p2.frontends.size);
    // everything removed
    const ops3 = diffPlans(read2, buildPlan({ frontends: [] }, read2, { seed: SEED }));
    d.maps.apply(ops3);
    t.deepEqual(memberPairs(d.maps), []);
    t.deepEqual(d.maps.mapFill().filter((m) => !['lb_stats', 'lb_fe_stats', 'lb_config', 'lb_reject_rl', 'lb_fe_filter', 'lb_maglev_slots'].includes(m.name) && m.entries !== 0), []);
    // the frontend filter: switched on, every bit cleared with the last frontend on it
    const filter = d.maps.map('lb_fe_filter');
    t.is(filter.lookup(L.encodeU32(0))?.readBigUInt64LE(0), 1n, 'lb_fe_filter switched on');
    let set = 0;
    for (let i = 1; i < filter.maxEntries; i++) if (filter.lookup(L.encodeU32(i))?.readBigUInt64LE(0)) set++;
    t.is(set, 0, 'lb_fe_filter: no bit left set');
    t.true(d.maps.isEmpty());
    t.is(d.maps.maglevSlotUse().used, 0, 'no region in use');
  });

  test('lb_members is the record of each frontend\'s backends: a restart reads it, not lb_slots; pins of a build without it get it from lb_slots', async (t) => {
    const d = loadTemp(t);
    const root = d.pinRoot;
    const p1 = buildPlan(sampleState(), undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, p1));
    const want = memberPairs(d.maps), slots = slotEntries(d.maps);
    const back = comparable(BpfMaps.fromObject(d.object, d.maps.state).readPlan());
    t.deepEqual(slots, planSlots(p1), 'a small first sync writes lb_slots in its apply');
    // lb_slots emptied: nothing read back changes; the maps say lb_slots is behind, and the
    // deferred write puts every list back, in canonical order
    d.maps.map('lb_slots').deleteMany(Buffer.concat(d.maps.map('lb_slots').keys()), slots.length);
    const again = BpfMaps.fromObject(d.object, d.maps.state);
    t.like(again.syncMembers(), { added: 0, slotsBehind: [...p1.frontends.values()].filter((f) => f.backendIds.length).length });
    t.deepEqual(comparable(again.readPlan()), back);
    t.deepEqual(comparable(BpfMaps.fromObject(d.object, d.maps.state).readPlan()), back, 'read from the maps, not a mirror');
    t.deepEqual(memberPairs(again), want);
    while ((await again.flushSlots(2)).left);
    t.deepEqual(slotEntries(again), slots);
    // a build before lb_members: lb_members empty, lb_slots full
    const m = again.map('lb_members');
    m.deleteMany(Buffer.concat(m.keys()), want.length);
    const third = BpfMaps.fromObject(d.object, d.maps.state);
    t.like(third.syncMembers(), { added: want.length, slotsBehind: 0 });
    t.deepEqual(memberPairs(third), want);
    t.deepEqual(comparable(third.readPlan()), back);
    for (const x of [again, third]) x.close();
  });

  test('a first sync leaves lb_slots to a write after it, the state file marking it behind until done; a change meanwhile is written at once', async (t) => {
    const d = loadTemp(t, { maps: { deferSlotsFrom: 1 } });
    const { pinRoot: root, state } = d;
    d.maps.syncMembers(true);
    const s1 = sampleState();
    const p1 = buildPlan(s1, undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, p1));
    t.deepEqual(slotEntries(d.maps), [], 'no slot written by the apply');
    t.deepEqual(memberPairs(d.maps), planMembers(p1), 'lb_members written by it');
    t.true(existsSync(state.slotsMarkerPath), 'the state file says lb_slots is behind');
    t.true(d.maps.slotsBehind() > 0);
    // one step, then a change (a frontend's list shrinks): written in its own apply
    t.true((await d.maps.flushSlots(1)).left > 0);
    const s2: NodeState = { frontends: s1.frontends.map((f) => (f.service === 'default/dns' ? { ...f, backends: f.backends.slice(0, 1) } : f)) };
    const p2 = buildPlan(s2, p1, { seed: SEED });
    d.maps.apply(diffPlans(p1, p2));
    let steps = 0;
    while ((await d.maps.flushSlots(2, { async: true })).left) t.true(++steps < 100);
    t.deepEqual(slotEntries(d.maps), planSlots(p2), 'lb_slots holds every list of the plan now');
    t.false(existsSync(state.slotsMarkerPath), 'and the marker is gone');
    t.is(d.maps.slotsBehind(), 0);
  });

  test('an agent that ended before its deferred write: the next one writes every list and deletes what lb_slots holds of lists gone since', async (t) => {
    const d = loadTemp(t, { maps: { deferSlotsFrom: 1 } });
    const { pinRoot: root, statePath } = d;
    d.maps.syncMembers(true);
    const p1 = buildPlan(sampleState(), undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, p1));
    const back = comparable(BpfMaps.fromObject(d.object, d.maps.state).readPlan());
    await d.maps.flushSlots(1);
    // what an earlier agent left: a list of a frontend gone since, a slot past a list's end
    const sl = d.maps.map('lb_slots');
    sl.update(L.encodeSlotKey({ feId: 999, slot: 0 }), L.encodeU32(1));
    const first = [...p1.frontends.values()].find((f) => f.backendIds.length)!;
    sl.update(L.encodeSlotKey({ feId: first.id, slot: 40 }), L.encodeU32(first.backendIds[0]!));
    // the agent ended here (kill -9): the next one, over the same pins and state file
    const state2 = AgentStateFile.forPinRoot(root, statePath);
    t.true(state2.slotsBehind);
    const next = BpfMaps.fromObject(d.object, state2);
    t.like(next.syncMembers(), { slotsBehind: [...p1.frontends.values()].filter((f) => f.backendIds.length).length });
    t.deepEqual(comparable(next.readPlan()), back);
    let steps = 0;
    while ((await next.flushSlots(3, { async: true })).left) t.true(++steps < 100);
    t.deepEqual(slotEntries(next), planSlots(p1));
    t.false(state2.slotsBehind);
    next.close();
  });

  test('recycleTables: an endpoint change writes the new table into the old one\'s region; a resize takes a fresh region and frees the old after a grace period', (t) => {
    const d = loadTemp(t, { maps: { recycleTables: true, regionGraceMs: 0 } });
    const root = d.pinRoot;
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    const bes = (xs: number[]) => xs.map((j) => be(`10.244.9.${j}`, 8080));
    const shared = bes([1, 2, 3]);
    // a ClusterIP and a NodePort of one Service share a table; another Service has its own
    const s1: NodeState = { frontends: [
      fe({ address: '10.96.0.1', port: 80, backends: shared }),
      fe({ address: '192.168.50.2', port: 30080, scope: 'external', type: 'NodePort', backends: shared }),
      fe({ address: '10.96.0.2', port: 80, backends: bes([7, 8]) }),
    ] };
    const p1 = buildPlan(s1, undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, p1));
    const feOff = (key: string) => L.decodeFrontend(d.maps.map('lb_frontends').lookup(L.encodeFeKey(p1.frontends.get(key)!))!).maglevOff;
    const o1 = feOff('10.96.0.1|80|TCP|internal');
    t.is(feOff('192.168.50.2|30080|TCP|external'), o1, 'frontends of one backend set share a region');
    t.not(feOff('10.96.0.2|80|TCP|internal'), o1);
    const used1 = d.maps.maglevSlotUse().used;
    t.is(used1, [...p1.tables.values()].reduce((n, tb) => n + regionSize(tb.m), 0));
    // one endpoint replaced: same count, same M; both frontends move to the new table together
    const moved = bes([1, 2, 4]);
    const s2: NodeState = { frontends: [{ ...s1.frontends[0]!, backends: moved }, { ...s1.frontends[1]!, backends: moved }, s1.frontends[2]!] };
    const p2 = buildPlan(s2, p1, { seed: SEED });
    const ops = diffPlans(p1, p2);
    t.true(ops.some((o) => o.op === 'createTable') && ops.some((o) => o.op === 'deleteTable'));
    d.maps.apply(ops);
    t.deepEqual(d.maps.maglevSlotUse(), { used: used1, quarantined: 0, capacity: L.LB_MAGLEV_SLOTS_MAX }, 'no region taken or freed');
    t.is(feOff('10.96.0.1|80|TCP|internal'), o1, 'the frontend keeps its region');
    const t2 = p2.tables.get(p2.frontends.get('10.96.0.1|80|TCP|internal')!.tableId)!;
    t.deepEqual(d.maps.readTable(t2.id, t2.m), t2.slots, 'the region holds the new table');
    // a change that does not keep M: a fresh region, the old one quarantined
    const s3: NodeState = { frontends: [{ ...s2.frontends[0]!, backends: bes([1, 2, 4, 5, 6]) }, { ...s2.frontends[1]!, backends: bes([1, 2, 4, 5, 6]) }, s1.frontends[2]!] };
    const p3 = buildPlan(s3, p2, { seed: SEED });
    d.maps.apply(diffPlans(p2, p3));
    const o3 = L.decodeFrontend(d.maps.map('lb_frontends').lookup(L.encodeFeKey(p3.frontends.get('10.96.0.1|80|TCP|internal')!))!).maglevOff;
    t.not(o3, o1, 'a resize switches the frontend to a fresh region');
    t.is(d.maps.maglevSlotUse().quarantined, regionSize(t2.m), 'the old region waits for a later apply');
    // the Service back to three backends: the next apply may reuse the region freed before it
    const p4 = buildPlan(s1, p3, { seed: SEED });
    d.maps.apply(diffPlans(p3, p4));
    const o4 = L.decodeFrontend(d.maps.map('lb_frontends').lookup(L.encodeFeKey(p4.frontends.get('10.96.0.1|80|TCP|internal')!))!).maglevOff;
    t.is(o4, o1, 'the quarantined region of the same size is reused a sync later');
    for (const tb of p4.tables.values()) t.deepEqual(d.maps.readTable(tb.id, tb.m), tb.slots, `table ${tb.id}`);
    const back = d.maps.readPlan();
    t.is(back.frontends.size, 3);
    t.deepEqual(diffPlans(back, buildPlan(s1, back, { seed: SEED })), [], 'the plan read back is what the writer holds');
    // a writer that starts over the same maps (an agent restart) finds the regions in use
    const again = BpfMaps.fromObject(d.object);
    t.is(again.maglevSlotUse().used, d.maps.maglevSlotUse().used);
    const rb = again.readPlan();
    for (const tb of rb.tables.values()) t.deepEqual(again.readTable(tb.id, tb.m)?.length, tb.m);
    again.close();
  });

  test('recycleTables: an endpoint change whose frontends keep their entries writes no lb_frontends entry; a changed entry, and one a failed write may have left, are written', (t) => {
    // An endpoint change rewrites its table in the region the frontends read (above); the plan's
    // upsertFrontend (its table id changed) would write the same entry again: two system calls and
    // the encoding on the one-change path (issue 10: one change to the kernel)
    const d = loadTemp(t, { maps: { recycleTables: true } });
    const root = d.pinRoot;
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    const bes = (xs: number[]) => xs.map((j) => be(`10.244.9.${j}`, 8080));
    const key = '10.96.0.1|80|TCP|internal';
    const state = (xs: number[], affinity = 0): NodeState => ({ frontends: [fe({ address: '10.96.0.1', port: 80, backends: bes(xs), sessionAffinitySeconds: affinity })] });
    const m = d.maps.map('lb_frontends');
    const entry = (p: Plan) => L.decodeFrontend(m.lookup(L.encodeFeKey(p.frontends.get(key)!))!);
    const p1 = buildPlan(state([1, 2, 3]), undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, p1));
    const e1 = entry(p1);
    const p2 = buildPlan(state([1, 2, 4]), p1, { seed: SEED });
    const ops = diffPlans(p1, p2);
    t.true(ops.some((o) => o.op === 'upsertFrontend'), 'the plan asks for the frontend (its table id changed)');
    const w0 = m.writes;
    d.maps.apply(ops);
    t.is(m.writes, w0, 'the entry it holds is not written again');
    t.deepEqual(entry(p2), e1);
    const t2 = p2.tables.get(p2.frontends.get(key)!.tableId)!;
    t.deepEqual(d.maps.readTable(t2.id, t2.m), t2.slots, 'the region holds the new table');
    // a changed entry (affinity on) is written
    const p3 = buildPlan(state([1, 2, 4], 60), p2, { seed: SEED });
    d.maps.apply(diffPlans(p2, p3));
    t.is(m.writes, w0 + 1);
    t.is(entry(p3).affinityTimeout, 60);
    // a write that failed after the kernel took it: the writer cannot know what the entry holds, and
    // the next apply that wants the old entry back writes it
    const p4 = buildPlan(state([1, 2, 4]), p3, { seed: SEED });
    const update = BpfMap.prototype.updateBatch;
    BpfMap.prototype.updateBatch = function (this: BpfMap, ...a: Parameters<BpfMap['updateBatch']>) {
      update.apply(this, a);
      if (this.name === 'lb_frontends') throw new Error('injected: failed after the write');
    };
    try {
      t.throws(() => d.maps.apply(diffPlans(p3, p4)), { message: /injected/ });
    } finally {
      BpfMap.prototype.updateBatch = update;
    }
    t.is(entry(p4).affinityTimeout, 0, 'the kernel took the failed write');
    // the agent keeps the plan the kernel held before a failed apply (p3) and plans the retry on it
    const p5 = buildPlan(state([1, 2, 4], 60), p3, { seed: SEED });
    const retry: PlanOp[] = [...diffPlans(p3, p5).filter((o) => o.op !== 'upsertFrontend'), { op: 'upsertFrontend', frontend: p5.frontends.get(key)! }];
    d.maps.apply(retry);
    t.is(entry(p5).affinityTimeout, 60, 'written again');
    // the record grows with the ids in use (1,024 at first) and keeps what it held
    const many = (xs: number[]): NodeState => ({ frontends: [...state(xs, 60).frontends,
      ...Array.from({ length: 1100 }, (_, i) => fe({ service: `default/s${i}`, address: `10.97.${i >> 8}.${i & 255}`, port: 80, backends: bes([1]) }))] });
    const p6 = buildPlan(many([1, 2, 4]), p5, { seed: SEED });
    d.maps.apply(diffPlans(p5, p6));
    t.true(Math.max(...[...p6.frontends.values()].map((f) => f.id)) > 1024);
    const w6 = m.writes;
    const p7 = buildPlan(many([1, 2, 5]), p6, { seed: SEED });
    const ops7 = diffPlans(p6, p7);
    t.true(ops7.some((o) => o.op === 'upsertFrontend'));
    d.maps.apply(ops7);
    t.is(m.writes, w6, 'an id recorded before the record grew is still known');
    t.is(entry(p7).affinityTimeout, 60);
  });

  test('lb_maglev_slots: a table that does not fit is KBP_ERR_MAP_FULL naming the map and the table; the regions in use stay', (t) => {
    const root = tempPinRoot(t);
    smallMaps(root, { lb_maglev_slots: 300 }); // 600 slots: two tables of M=251, not three
    const maps = BpfMaps.fromPins(root);
    t.teardown(() => maps.close());
    const svc = (i: number) => fe({ service: `default/s${i}`, address: `10.96.0.${i}`, port: 80, backends: [be(`10.244.0.${i}`, 80)] });
    const p2 = buildPlan({ frontends: [svc(1), svc(2)] }, undefined, { seed: SEED });
    maps.apply(diffPlans(undefined, p2));
    const p3 = buildPlan({ frontends: [svc(1), svc(2), svc(3)] }, p2, { seed: SEED });
    const e = t.throws(() => maps.apply(diffPlans(p2, p3)), { instanceOf: KbpError });
    t.is(e.code, 'KBP_ERR_MAP_FULL');
    t.regex(e.message, /^map lb_maglev_slots is full \(600 slots: 504 in tables, 0 waiting to be reused\): cannot add Maglev table \d+ \(M=251\)$/);
    for (const tb of p2.tables.values()) t.deepEqual(maps.readTable(tb.id, tb.m), tb.slots);
  });

  // An apply that fails after its tables were written (here lb_frontends refuses the batch, as a
  // hash map's insert can fail with ENOMEM under memory pressure) leaves their regions unread by any
  // frontend. The agent then plans on what the kernel holds (readPlan) and retries. The writer still
  // held the failed apply's tables: their regions counted as in use until a restart, and the retry,
  // whose plan gave their ids to tables of another M, was refused at every sync ("Maglev table 3
  // rewritten with M=251, written before with M=6421", KBP_ERR_INTERNAL).
  test('lb_maglev_slots: regions of a failed apply that no frontend reads are given back; the retry is written', (t) => {
    const root = tempPinRoot(t);
    smallMaps(root, { lb_maglev_slots: 20000, lb_members: 1000, lb_slots: 1000, lb_backends: 1000 });
    const maps = BpfMaps.fromPins(root);
    t.teardown(() => maps.close());
    const svc = (i: number, pods = 1) => fe({ service: `default/s${i}`, address: `10.96.0.${i}`, port: 80,
      backends: Array.from({ length: pods }, (_, j) => be(`10.244.${i}.${j + 1}`, 80)) });
    const p2 = buildPlan({ frontends: [svc(1), svc(2)] }, undefined, { seed: SEED });
    maps.apply(diffPlans(undefined, p2));
    const p4 = buildPlan({ frontends: [svc(1), svc(2), svc(3, 40), svc(4)] }, p2, { seed: SEED });
    const update = BpfMap.prototype.updateBatch;
    BpfMap.prototype.updateBatch = function (this: BpfMap, ...args: Parameters<BpfMap['updateBatch']>) {
      if (this.name === 'lb_frontends') throw new KbpError('KBP_ERR_BPF', 'lb_frontends: injected ENOMEM');
      return update.apply(this, args);
    };
    try {
      t.throws(() => maps.apply(diffPlans(p2, p4)), { message: /injected ENOMEM/ });
    } finally {
      BpfMap.prototype.updateBatch = update;
    }
    const back = maps.readPlan();
    t.is(back.frontends.size, 2);
    t.is(maps.maglevSlotUse().used, 2 * regionSize(251), 'only the tables the kernel\'s frontends read are in use');
    const retry = buildPlan({ frontends: [svc(1), svc(2), svc(3, 1), svc(4, 40)] }, back, { seed: SEED });
    // the retry's plan gives the failed apply's table ids to other tables (here: another M)
    const failedM = new Map([...p4.tables.values()].map((tb) => [tb.id, tb.m]));
    t.true([...retry.tables.values()].some((tb) => failedM.has(tb.id) && failedM.get(tb.id) !== tb.m));
    maps.apply(diffPlans(back, retry));
    t.is(maps.readPlan().frontends.size, 4);
    for (const tb of retry.tables.values()) t.deepEqual(maps.readTable(tb.id, tb.m), tb.slots);
  });

  test('recycleTables: a new backend is a member of its frontends before the live array names it', (t) => {
    // The recycled array is the one the frontend reads: from that write on, a SYN can be balanced to
    // the new backend, and its next packet (the handshake's ACK) is checked against lb_members. A
    // pair written only with the slots, after the array, made that check fail and the flow was
    // reset (one ECONNRESET in ~15,000 around an endpoint change in the rolling update).
    const d = loadTemp(t, { maps: { recycleTables: true } });
    const root = d.pinRoot;
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    const bes = (xs: number[]) => xs.map((j) => be(`10.244.9.${j}`, 8080));
    const s1: NodeState = { frontends: [fe({ address: '10.96.0.1', port: 80, backends: bes([1, 2, 3]) })] };
    const p1 = buildPlan(s1, undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, p1));
    const s2: NodeState = { frontends: [{ ...s1.frontends[0]!, backends: bes([1, 2, 4]) }] };
    const p2 = buildPlan(s2, p1, { seed: SEED });
    const seen: string[][] = [];
    const write = BpfMap.prototype.writeMmap;
    BpfMap.prototype.writeMmap = function (this: BpfMap, values: Buffer, offset?: number) {
      seen.push(memberPairs(d.maps));
      return write.call(this, values, offset);
    };
    try {
      d.maps.apply(diffPlans(p1, p2));
    } finally {
      BpfMap.prototype.writeMmap = write;
    }
    t.is(seen.length, 1, 'one region written: the recycled one');
    const want = planMembers(p2).filter((m) => !planMembers(p1).includes(m));
    t.is(want.length, 1);
    t.true(seen[0]!.includes(want[0]!), `lb_members when the array was written: ${seen[0]!.join(' ')}; missing ${want[0]}`);
    t.deepEqual(memberPairs(d.maps), planMembers(p2), 'and the leaver gone after');
    // the apply reports the pairs that ended (socket termination runs only then): 3 left, 4 came
    const s3: NodeState = { frontends: [{ ...s1.frontends[0]!, backends: bes([1, 2, 4, 5]) }] };
    const p3 = buildPlan(s3, p2, { seed: SEED });
    t.is(d.maps.apply(diffPlans(p2, p3)).membersLeft, 0, 'a backend added: no pair ended');
    const p4 = buildPlan(s2, p3, { seed: SEED });
    t.is(d.maps.apply(diffPlans(p3, p4)).membersLeft, 1, 'a backend removed: one pair ended');
  });

  test('pinned maps of an older build are named and refused on request, else carried over: entries kept where the layout allows', (t) => {
    const root = tempPinRoot(t);
    const statePath = tempStatePath(t);
    // an earlier agent's maps (their ids recorded, so they are its own) of an older definition
    smallMaps(root, { lb_backends: 2, lb_ct: 64 }, statePath);
    const raw = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));
    const pinned = (name: string) => BpfMap.fromPin(join(root, name));
    // an older layout: fewer entries (capacity), a shorter value (a field appended since), another key (recreated)
    const be = pinned('lb_backends'); be.update(L.encodeU32(1), raw(L.BACKEND.size, 1)); be.close();
    const ct = pinned('lb_ct'); ct.update(raw(L.CT_KEY.size, 2), raw(L.CT_ENTRY.size, 3)); ct.close();
    rmSync(join(root, 'lb_revnat'));
    const rv = BpfMap.create({ type: MapType.HASH, name: 'lb_revnat', keySize: 4, valueSize: L.REVNAT.size - 4, maxEntries: 64, flags: BPF_F_NO_PREALLOC });
    rv.update(L.encodeU32(7), raw(L.REVNAT.size - 4, 4)); rv.pin(join(root, 'lb_revnat'));
    rmSync(join(root, 'lb_affinity'));
    const af = BpfMap.create({ type: MapType.LRU_HASH, name: 'lb_affinity', keySize: L.AFFINITY_KEY.size + 4, valueSize: L.AFFINITY_VAL.size, maxEntries: 64 });
    af.update(raw(L.AFFINITY_KEY.size + 4, 5), raw(L.AFFINITY_VAL.size, 6)); af.pin(join(root, 'lb_affinity'));
    const earlier = AgentStateFile.forPinRoot(root, statePath);
    earlier.setObjectIds({ ...Object.fromEntries(earlier.mapIds), lb_revnat: rv.id, lb_affinity: af.id }, {});
    earlier.save();
    rv.close(); af.close();

    const e = t.throws(() => loadDataplane({ pinRoot: root, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(root, statePath), onIncompatible: 'refuse' }), { instanceOf: KbpError });
    t.regex(e.message, /^pinned maps under \S+ do not match \S+kbp\.bpf\.o: /);
    t.regex(e.message, /lb_backends \(maxEntries 2 pinned, 1048576 in the object\)/);
    t.true(existsSync(join(root, 'lb_backends')), 'refusing leaves the old maps in place');

    const d = loadDataplane({ pinRoot: root, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(root, statePath) });
    t.teardown(() => d.object.close());
    for (const name of ['lb_affinity', 'lb_backends', 'lb_ct', 'lb_revnat']) t.true(d.migrations.some((m) => m.name === name), name);
    t.is(d.maps.map('lb_ct').count(), 0, 'nothing copied before the new programs are attached');
    // a flow the new programs tracked before the copy is newer than the old map's entry for it
    d.maps.map('lb_ct').update(raw(L.CT_KEY.size, 2), raw(L.CT_ENTRY.size, 9));
    const migrated = d.finishMigration();
    t.deepEqual(d.finishMigration(), [], 'once');
    const how = Object.fromEntries(migrated.map((m) => [m.name, [m.how, m.copied ?? 0]]));
    t.deepEqual(how.lb_backends, ['copy', 1]);
    t.deepEqual(how.lb_ct, ['copy', 0]);
    t.is(migrated.find((m) => m.name === 'lb_ct')?.newer, 1);
    t.deepEqual(how.lb_revnat, ['copy', 1]);
    t.deepEqual(how.lb_affinity, ['recreate', 0]);
    t.deepEqual(how.lb_slots, ['recreate', 0], 'lb_slots made anew (written from lb_members after the first sync), not copied');
    t.is(d.maps.map('lb_backends').maxEntries, L.LB_BACKENDS_MAX);
    t.deepEqual(d.maps.map('lb_backends').lookup(L.encodeU32(1)), raw(L.BACKEND.size, 1), 'a backend keeps its id and value');
    t.deepEqual(d.maps.map('lb_ct').lookup(raw(L.CT_KEY.size, 2)), raw(L.CT_ENTRY.size, 9), 'the new programs\' entry wins');
    t.deepEqual(d.maps.map('lb_revnat').lookup(L.encodeU32(7)), Buffer.concat([raw(L.REVNAT.size - 4, 4), Buffer.alloc(4)]), 'an appended field reads zero');
    t.is(d.maps.map('lb_affinity').count(), 0);
    t.false(readdirSync(root).includes('upgrade'), 'no old map left pinned aside');
  });

  test('an upgrade copies conntrack past the scan\'s batches, keeping what the new programs wrote', (t) => {
    const root = tempPinRoot(t);
    const statePath = tempStatePath(t);
    // an earlier agent's lb_ct of another capacity, with more flows than one scan batch (4096)
    smallMaps(root, { lb_ct: 8192 }, statePath);
    const n = 5000;
    const key = (i: number) => { const k = Buffer.alloc(L.CT_KEY.size); k.writeUInt32LE(i, 0); k.writeUInt32LE(i * 7 + 1, 4); return k; };
    const val = (i: number) => { const v = Buffer.alloc(L.CT_ENTRY.size); v.writeUInt32LE(i ^ 0x5a5a, 0); v.writeUInt32LE(i, L.CT_ENTRY.size - 4); return v; };
    const old = BpfMap.fromPin(join(root, 'lb_ct'));
    for (let i = 0; i < n; i++) old.update(key(i), val(i));
    old.close();
    const d = loadDataplane({ pinRoot: root, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(root, statePath) });
    t.teardown(() => d.object.close());
    // flows the new programs tracked between the switch and the copy, one in each scan batch
    const newer = [3, 4100, 4999];
    for (const i of newer) d.maps.map('lb_ct').update(key(i), Buffer.alloc(L.CT_ENTRY.size, 0xee));
    const m = d.finishMigration().find((x) => x.name === 'lb_ct');
    t.like(m, { how: 'copy', copied: n - newer.length, newer: newer.length, dropped: 0 });
    const ct = d.maps.map('lb_ct');
    t.is(ct.count(), n);
    for (const i of [0, 1, 2048, 4095, 4096, 4998]) t.deepEqual(ct.lookup(key(i)), val(i), `flow ${i} copied`);
    for (const i of newer) t.deepEqual(ct.lookup(key(i)), Buffer.alloc(L.CT_ENTRY.size, 0xee), `flow ${i}: the new programs' entry kept`);
  });

  test('an upgrade copies handshakes into lb_ct_syn from every CPU: all of them held, not one CPU\'s share', (t) => {
    const root = tempPinRoot(t);
    const statePath = tempStatePath(t);
    const n = 20000;
    smallMaps(root, { lb_ct_syn: 100000 }, statePath);
    const keys = Buffer.alloc(n * L.CT_KEY.size), values = Buffer.alloc(n * L.CT_ENTRY.size);
    for (let i = 0; i < n; i++) {
      keys.writeUInt32LE(i + 1, i * L.CT_KEY.size);
      values.writeUInt32LE(i ^ 0x5a5a, i * L.CT_ENTRY.size);
    }
    const old = BpfMap.fromPin(join(root, 'lb_ct_syn'));
    old.updateEach(keys, values, n, BPF_NOEXIST, ALL_CPUS);
    t.is(old.count(), n);
    old.close();
    const d = loadDataplane({ pinRoot: root, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(root, statePath) });
    t.teardown(() => d.object.close());
    const syn = d.maps.map('lb_ct_syn');
    if (syn.maxEntries < n || syn.maxEntries / numPossibleCpus() >= n) return t.pass(`lb_ct_syn ${syn.maxEntries} on ${numPossibleCpus()} CPUs: not the case`);
    const m = d.finishMigration().find((x) => x.name === 'lb_ct_syn');
    t.like(m, { how: 'copy', copied: n, dropped: 0 });
    t.is(syn.count(), n, 'every handshake held');
    t.is(syn.lookup(keys.subarray(0, L.CT_KEY.size))!.readUInt32LE(0), 0x5a5a);
  });

  test('an upgrade\'s copy that the kernel refuses names the first failure, not only a count', (t) => {
    // a hash the new programs half filled: two of the four old entries fit, two fail with E2BIG
    const old = BpfMap.create({ type: MapType.HASH, name: 'kbp_t_cpold', keySize: 4, valueSize: 8, maxEntries: 8 });
    const target = BpfMap.create({ type: MapType.HASH, name: 'kbp_t_cpnew', keySize: 4, valueSize: 8, maxEntries: 4 });
    t.teardown(() => { old.close(); target.close(); });
    for (let i = 0; i < 4; i++) old.update(L.encodeU32(i), Buffer.alloc(8, i));
    for (const i of [10, 11]) target.update(L.encodeU32(i), Buffer.alloc(8, 0xee));
    const r = copyEntries(old, target, BPF_NOEXIST, false);
    t.like(r, { copied: 2, dropped: 2, newer: 0 });
    t.regex(r.error ?? '', /E2BIG|No space|too big|Argument list too long/i, 'the reason the two were dropped');
    t.is(target.count(), 4);
    const none = copyEntries(old, target, BPF_NOEXIST, false);
    t.like(none, { copied: 0, newer: 2, dropped: 2 });
  });

  test('settings, devices and counters', (t) => {
    const d = loadTemp(t);
    const root = d.pinRoot;
    d.maps.writeConfig({ hashSeed: 0xfeedbeef, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: L.LB_CFG_F_SOCK_LB });
    t.deepEqual(d.maps.readConfig(), { hashSeed: 0xfeedbeef, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: L.LB_CFG_F_SOCK_LB });
    t.throws(() => d.maps.writeConfig({ hashSeed: -1, snatMark: 0, flags: 0 }), { message: /lb_config hashSeed must be an integer/ });
    d.maps.setDevice(3, L.LB_DEV_F_EXTERNAL);
    d.maps.setDevice(4, 0);
    t.deepEqual([...d.maps.devices()].sort(), [[3, L.LB_DEV_F_EXTERNAL], [4, 0]]);
    t.true(d.maps.removeDevice(4));
    t.false(d.maps.removeDevice(4));
    // counters as the programs would leave them: per CPU
    const cpus = d.maps.map('lb_stats').userValueSize / 8;
    const v = Buffer.alloc(cpus * 8);
    for (let c = 0; c < cpus; c++) v.writeBigUInt64LE(BigInt(c + 1), c * 8);
    d.maps.map('lb_stats').update(L.encodeU32(L.LB_STATS.indexOf('reject_no_backend')), v);
    const stats = d.maps.readStats();
    t.is(stats.reject_no_backend, (cpus * (cpus + 1)) / 2);
    t.is(stats.fwd_new, 0);
    t.deepEqual(Object.keys(stats), [...L.LB_STATS]);
    const fv = Buffer.alloc(cpus * 16);
    for (let c = 0; c < cpus; c++) {
      fv.writeBigUInt64LE(2n, c * 16);
      fv.writeBigUInt64LE(100n, c * 16 + 8);
    }
    d.maps.map('lb_fe_stats').update(L.encodeU32(7), fv);
    t.deepEqual([...d.maps.readFrontendStats()], [[7, { packets: 2 * cpus, bytes: 100 * cpus }]]);
    // read up to the highest id in use only: 7 and 4100 (past the first batch of 4096) are seen up to
    // their own id, not beyond
    d.maps.map('lb_fe_stats').update(L.encodeU32(4100), fv);
    t.deepEqual([...d.maps.readFrontendStats(4100)].map(([id]) => id), [7, 4100]);
    t.deepEqual([...d.maps.readFrontendStats(4099)].map(([id]) => id), [7]);
    t.deepEqual([...d.maps.readFrontendStats(7)].map(([id]) => id), [7]);
    t.deepEqual([...d.maps.readFrontendStats(6)], []);
    d.maps.map('lb_fe_stats').update(L.encodeU32(4100), Buffer.alloc(cpus * 16));
    const fill = new Map(d.maps.mapFill().map((m) => [m.name, m]));
    t.deepEqual(fill.get('lb_devices'), { name: 'lb_devices', entries: 1, capacity: L.LB_DEVICES_MAX });
    t.is(fill.get('lb_stats')!.entries, L.LB_STAT_MAX);
  });

  /** The maps with the data plane's key/value sizes but small capacities, pinned under root; with
   * statePath, their ids recorded as an earlier agent of ours would. */
  function smallMaps(root: string, capacity: Partial<Record<L.MapName, number>>, statePath?: string): void {
    const ids: Record<string, number> = {};
    const spec: Record<L.MapName, [number, number, number, number]> = {
      lb_frontends: [MapType.HASH, L.FE_KEY.size, L.FRONTEND.size, BPF_F_NO_PREALLOC],
      lb_backends: [MapType.ARRAY, 4, L.BACKEND.size, 0],
      lb_slots: [MapType.HASH, L.SLOT_KEY.size, 4, BPF_F_NO_PREALLOC],
      lb_maglev_slots: [MapType.ARRAY, 4, L.MAGLEV_ELEM.size, BPF_F_MMAPABLE],
      lb_revnat: [MapType.HASH, 4, L.REVNAT.size, BPF_F_NO_PREALLOC],
      lb_ct: [MapType.LRU_HASH, L.CT_KEY.size, L.CT_ENTRY.size, 0],
      lb_ct_syn: [MapType.LRU_HASH, L.CT_KEY.size, L.CT_ENTRY.size, BPF_F_NO_COMMON_LRU],
      lb_members: [MapType.HASH, L.MEMBER_KEY.size, 1, BPF_F_NO_PREALLOC],
      lb_affinity: [MapType.LRU_HASH, L.AFFINITY_KEY.size, L.AFFINITY_VAL.size, 0],
      lb_src_ranges: [MapType.LPM_TRIE, L.SRC_RANGE_KEY.size, 1, BPF_F_NO_PREALLOC],
      lb_stats: [MapType.PERCPU_ARRAY, 4, 8, 0],
      lb_fe_stats: [MapType.PERCPU_ARRAY, 4, L.FE_STATS.size, 0],
      lb_sock_revnat: [MapType.LRU_HASH, L.SOCK_REVNAT_KEY.size, L.SOCK_REVNAT_VAL.size, 0],
      lb_config: [MapType.ARRAY, 4, L.CONFIG.size, 0],
      lb_devices: [MapType.HASH, 4, L.DEVICE.size, 0],
      lb_node_addrs: [MapType.HASH, L.NODE_ADDR.size, 1, 0],
      lb_sock_eip_ok: [MapType.LPM_TRIE, L.EIP_ALLOW_KEY.size, 1, BPF_F_NO_PREALLOC],
      lb_frags: [MapType.LRU_HASH, L.FRAG_KEY.size, L.FRAG_VAL.size, 0],
      lb_reject_rl: [MapType.PERCPU_ARRAY, 4, L.RATE_LIMIT.size, 0],
      lb_fe_filter: [MapType.ARRAY, 4, 8, 0],
    };
    for (const [name, [type, keySize, valueSize, flags]] of Object.entries(spec) as Array<[L.MapName, [number, number, number, number]]>) {
      const maxEntries = name === 'lb_config' || name === 'lb_reject_rl' ? 1 : name === 'lb_stats' ? L.LB_STAT_MAX : name === 'lb_fe_filter' ? L.LB_FE_FILTER_WORDS + 1 : capacity[name] ?? (name === 'lb_maglev_slots' ? 4096 : 64);
      const m = BpfMap.create({ type, name, keySize, valueSize, maxEntries, flags });
      m.pin(join(root, name));
      ids[name] = m.id;
      m.close();
    }
    if (statePath) {
      const st = AgentStateFile.forPinRoot(root, statePath);
      st.setObjectIds(ids, {});
      st.save();
    }
  }

  test('lb_slots full: the error names the frontend whose slot did not fit (slots of several frontends in one batch)', (t) => {
    const root = tempPinRoot(t);
    smallMaps(root, { lb_slots: 5 });
    const maps = BpfMaps.fromPins(root);
    t.teardown(() => maps.close());
    const svc = (i: number) => fe({ service: `default/s${i}`, address: `10.96.0.${i}`, port: 80, backends: [be(`10.244.0.${i}`, 80), be(`10.244.1.${i}`, 80)] });
    const plan = buildPlan({ frontends: [svc(1), svc(2), svc(3)] }, undefined, { seed: SEED });
    const ops = diffPlans(undefined, plan);
    // the sixth slot written is the last of the last frontend in the batch's order
    const last = ops.filter((o) => o.op === 'upsertSlots').at(-1) as Extract<PlanOp, { op: 'upsertSlots' }>;
    const e = t.throws(() => maps.apply(ops), { instanceOf: KbpError });
    t.is(e.code, 'KBP_ERR_MAP_FULL');
    t.is(e.message, `map lb_slots is full (5 entries): cannot add slot of frontend id ${last.frontendId}`);
  });

  test('a full map is KBP_ERR_MAP_FULL naming the map and the object that did not fit', (t) => {
    const root = tempPinRoot(t);
    // lb_backends is an array indexed by id: 3 entries hold ids 1 and 2
    smallMaps(root, { lb_backends: 3, lb_frontends: 1 });
    const maps = BpfMaps.fromPins(root);
    t.teardown(() => maps.close());
    const plan = buildPlan({ frontends: [fe({ address: '10.96.0.1', port: 80, backends: [be('10.244.0.1', 80), be('10.244.0.2', 80), be('10.244.0.3', 80)] })] }, undefined, { seed: 1 });
    const e = t.throws(() => maps.apply(diffPlans(undefined, plan)), { instanceOf: KbpError });
    t.is(e.code, 'KBP_ERR_MAP_FULL');
    t.is(e.errno, 7);
    t.is(e.message, 'map lb_backends is full (3 entries): cannot add backend 10.244.0.3:80/TCP (id 3)');
    // the first two went in; the batch stopped at the third
    t.deepEqual([1, 2].map((id) => L.decodeBackend(maps.map('lb_backends').lookup(L.encodeU32(id))!).address), ['10.244.0.1', '10.244.0.2']);

    const two = buildPlan({ frontends: [fe({ address: '10.96.0.1', port: 80 }), fe({ service: 'default/other', address: '10.96.0.2', port: 80 })] }, undefined, { seed: 1 });
    const e2 = t.throws(() => maps.apply(diffPlans(undefined, two)), { instanceOf: KbpError });
    t.is(e2.code, 'KBP_ERR_MAP_FULL');
    t.is(e2.message, 'map lb_frontends is full (1 entries): cannot add frontend default/other 10.96.0.2:80/TCP (internal)');

    const [only] = two.frontends.values();
    const beyond: PlanOp = { op: 'upsertFrontend', frontend: { ...only!, id: L.LB_FE_ID_MAX } };
    t.throws(() => maps.apply([beyond]), { code: 'KBP_ERR_MAP_FULL', message: /^frontend default\/web 10\.96\.0\.1:80\/TCP \(internal\): id 131072 is outside 1\.\.131071/ } as never);
  });

  test('attachments are recorded in the state file and cleanup detaches them and removes every pin', (t) => {
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    const state = AgentStateFile.forPinRoot(root, statePath);
    const d = loadDataplane({ pinRoot: root, objectPath: dataplaneObject(), state });
    d.maps.apply(diffPlans(undefined, buildPlan(sampleState(), undefined, { seed: SEED })));
    const saved = JSON.parse(readFileSync(statePath, 'utf8')) as { pinRoot: string; frontends: Record<string, { service: string }> };
    t.is(saved.pinRoot, root);
    t.true(Object.values(saved.frontends).some((m) => m.service === 'default/dns'));
    d.object.close();
    const r = cleanup(root, AgentStateFile.forPinRoot(root, statePath));
    t.true(r.unpinned >= L.MAP_NAMES.length);
    t.false(existsSync(root));
    t.false(existsSync(statePath));
    t.deepEqual(cleanup(root, AgentStateFile.forPinRoot(root, statePath)), { detached: 0, unpinned: 0 }, 'a second cleanup finds nothing');
    t.throws(() => cleanup('/tmp', AgentStateFile.forPinRoot('/tmp', statePath)), { message: /not on a bpf filesystem; refusing/ });
  });

  test('loader: programs pinned; a restarted agent\'s cgroup program replaces the old one; cleanup detaches it', (t) => {
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    const cg = `${hostRoots().cgroup2}/kbp-test-maps-${process.pid}`;
    mkdirSync(cg);
    t.teardown(() => { if (existsSync(cg)) rmdirSync(cg); });
    const d = loadDataplane({ pinRoot: root, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(root, statePath) });
    for (const name of d.object.programNames()) t.true(existsSync(join(root, 'progs', name)), `program ${name} pinned`);
    d.object.close();
    // two agents' generations of the same program (the probe fixture: a data plane object without
    // programs yet would leave nothing to attach)
    const gen1 = BpfObject.open(fixtureObject('probe'));
    const gen2 = BpfObject.open(fixtureObject('probe'));
    t.teardown(() => { gen1.close(); gen2.close(); });
    gen1.load();
    gen2.load();
    const state1 = AgentStateFile.forPinRoot(root, statePath);
    attachCgroup(state1, gen1.program('probe_connect4'), cg, 'connect4');
    t.deepEqual(cgroupPrograms(cg, 'connect4'), [gen1.program('probe_connect4').id]);
    const state2 = AgentStateFile.forPinRoot(root, statePath); // the restarted agent reads the record
    attachCgroup(state2, gen2.program('probe_connect4'), cg, 'connect4');
    t.deepEqual(cgroupPrograms(cg, 'connect4'), [gen2.program('probe_connect4').id], 'replaced, not added');
    t.is(state2.attachments.length, 1);
    const r = cleanup(root, AgentStateFile.forPinRoot(root, statePath));
    t.is(r.detached, 1);
    t.deepEqual(cgroupPrograms(cg, 'connect4'), []);
    t.false(existsSync(root));
  });

  test('cost: full sync of 10,000 Services x 10 endpoints, then one endpoint change (logged)', (t) => {
    const d = loadTemp(t, { maps: { recycleTables: true } });
    const root = d.pinRoot;
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    const N = 10_000, E = 10;
    const state: NodeState = { frontends: [] };
    for (let i = 0; i < N; i++) {
      const backends = Array.from({ length: E }, (_, j) => be(`10.${64 + (i >> 8)}.${i & 255}.${j + 1}`, 8080));
      state.frontends.push(fe({ service: `ns/svc-${i}`, address: `10.96.${i >> 8}.${i & 255}`, port: 80, backends }));
    }
    let t0 = performance.now();
    const plan = buildPlan(state, undefined, { seed: SEED });
    const ops = diffPlans(undefined, plan);
    const planMs = performance.now() - t0;
    // the plan holds no slots: the writer fills the tables into lb_maglev_slots a bounded chunk at
    // a time (64 MiB of them here)
    t.true([...plan.tables.values()].every((tb) => pendingSlots(tb) !== undefined), 'no table filled by the build');
    // the tables are filled on background threads straight into lb_maglev_slots (one fill job, 512 KiB
    // chunks in the addon), not through writeMmap
    let writes = 0, jobs = 0, window: number | undefined;
    const write = BpfMap.prototype.writeMmap, start = BpfMap.prototype.maglevFillStart;
    BpfMap.prototype.writeMmap = function (this: BpfMap, values: Buffer, offset?: number) {
      if (this.name === 'lb_maglev_slots') writes++; // (lb_fe_ids is rewritten whole through its mapping)
      return write.call(this, values, offset);
    };
    BpfMap.prototype.maglevFillStart = function (this: BpfMap, ...args: Parameters<BpfMap['maglevFillStart']>) {
      jobs++;
      window = args[5];
      return start.apply(this, args);
    };
    t0 = performance.now();
    let res;
    try {
      res = d.maps.apply(ops);
    } finally {
      BpfMap.prototype.writeMmap = write;
      BpfMap.prototype.maglevFillStart = start;
    }
    const applyMs = performance.now() - t0;
    t.true(writes === 0 && jobs === 1, `${writes} writes to lb_maglev_slots, ${jobs} fill jobs`);
    // the job maps at most 8 MiB of the array at a time: what it adds to the agent's RSS (the start's
    // peak at 100,000 Services comes while it runs: docs/perf-log.md, session 27, p27mem)
    t.true(window !== undefined && window * 4 <= 8 << 20, `a fill window of ${window} slots`);
    t.true([...plan.tables.values()].every((tb) => pendingSlots(tb) !== undefined), 'the write computed no table into the plan');
    // a sample of the tables (a lookup per element: all of them took minutes), first and last included
    let differ = 0;
    const all = [...plan.tables.values()];
    for (const tb of all.filter((_, i) => i % 499 === 0 || i === all.length - 1)) {
      const got = d.maps.readTable(tb.id, tb.m);
      if (!got || got.length !== tb.m || got.some((v, j) => v !== tb.slots[j])) differ++;
    }
    t.is(differ, 0, 'tables whose slots in lb_maglev_slots differ from the plan');
    t0 = performance.now();
    const back = d.maps.readPlan();
    const readMs = performance.now() - t0;
    t.is(back.frontends.size, N);
    t.is(back.backends.size, N * E);
    t.is(res.tables, N);

    // one endpoint of one Service replaced
    const s2: NodeState = { frontends: state.frontends.slice() };
    const f = s2.frontends[5000]!;
    s2.frontends[5000] = { ...f, backends: [...f.backends.slice(1), be('10.200.0.1', 8080)] };
    t0 = performance.now();
    const p2 = buildPlan(s2, plan, { seed: SEED });
    const ops2 = diffPlans(plan, p2);
    const plan2Ms = performance.now() - t0;
    t0 = performance.now();
    d.maps.apply(ops2);
    const apply2Ms = performance.now() - t0;
    t.deepEqual(ops2.map((o) => o.op), ['upsertBackend', 'createTable', 'upsertSlots', 'upsertFrontend', 'deleteTable', 'deleteBackend']);
    t.deepEqual(d.maps.readTable(p2.frontends.get('10.96.19.136|80|TCP|internal')!.tableId, 1009)?.length, 1009);
    // the same change back and forth: apply latency alone, over several samples
    const back2 = diffPlans(p2, plan);
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      t0 = performance.now();
      d.maps.apply(i % 2 === 0 ? back2 : ops2);
      samples.push(performance.now() - t0);
    }
    samples.sort((x, y) => x - y);
    // same M: every change rewrote the region in place, none taken or freed
    t.is(d.maps.maglevSlotUse().quarantined, 0);
    t.deepEqual(comparable(d.maps.readPlan()), comparable(p2));
    // every Service removed at once: the removals are regrouped into a few batches
    const empty = buildPlan({ frontends: [] }, p2, { seed: SEED });
    const ops3 = diffPlans(p2, empty);
    t0 = performance.now();
    const res3 = d.maps.apply(ops3);
    const removeMs = performance.now() - t0;
    t.true(res3.batches < 20, `${res3.batches} batches for ${ops3.length} removals`);
    t.true(d.maps.isEmpty());
    t.log(`remove all ${N} Services: apply ${removeMs.toFixed(0)} ms (${ops3.length} ops, ${res3.batches} batches)`);
    t.log(`full sync ${N} x ${E}: plan+diff ${planMs.toFixed(0)} ms, apply ${applyMs.toFixed(0)} ms (${ops.length} ops, ${res.batches} batches, ${res.tables} Maglev tables), readPlan ${readMs.toFixed(0)} ms`);
    t.log(`one endpoint change: plan+diff ${plan2Ms.toFixed(1)} ms, apply ${apply2Ms.toFixed(2)} ms (${ops2.length} ops); apply over 10 more: min ${samples[0]!.toFixed(2)} median ${samples[5]!.toFixed(2)} max ${samples[9]!.toFixed(2)} ms`);
  });
}
