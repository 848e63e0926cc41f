// A first sync's Maglev tables filled ahead of their apply (MapWriter.prefill, from buildPlan's
// onTables): the fill runs on background threads while the agent finishes its plan and diffs, into
// fresh regions nothing reads. The apply that creates exactly those tables adopts the fill and
// leaves the kernel as an apply without it would; any other apply first drops them, their regions
// free at once (none leaked, none quarantined).
import test, { type ExecutionContext } from 'ava';
import type { NodeState } from '../../src/model/compiled.js';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan } from '../../src/plan/plan.js';
import type { Plan, PlanTable } from '../../src/plan/types.js';
import { regionSize } from '../../src/dataplane/bpf/slot-alloc.js';
import { loadTemp } from './fixtures/dataplane.js';
import { isRoot } from './fixtures/util.js';

const SEED = 0x1234;
// 400 tables of 10 members (M 1601): ~640,000 slots, a write large enough for the background fill (2^18 slots)
const N = 400;

function services(n: number, endpoints: number, shift = 0): NodeState {
  const state: NodeState = { frontends: [] };
  for (let i = 0; i < n; i++) {
    const backends = Array.from({ length: endpoints }, (_, j) => ({ address: `10.${64 + (i >> 8)}.${i & 255}.${j + 1 + shift}`, port: 8080, terminating: false, local: false }));
    state.frontends.push({
      service: `ns/svc-${i}`, portName: 'http', type: 'ClusterIP', protocol: 'TCP', scope: 'internal', address: `10.96.${i >> 8}.${i & 255}`,
      port: 80, backends, sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
    });
  }
  return state;
}

const regionSlots = (p: Plan) => [...p.tables.values()].reduce((n, tb) => n + regionSize(tb.m), 0);

function load(t: ExecutionContext) {
  const d = loadTemp(t, { maps: { recycleTables: true } });
  d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
  return d;
}

/** lb_frontends' values and every table's slots as the kernel holds them, by frontend key */
function held(d: ReturnType<typeof load>, plan: Plan): { fe: string[]; differ: number } {
  const fe: string[] = [];
  d.maps.map('lb_frontends').scan((k: Buffer, v: Buffer) => fe.push(`${k.toString('hex')}=${v.toString('hex')}`));
  let differ = 0;
  for (const tb of plan.tables.values()) {
    const got = d.maps.readTable(tb.id, tb.m);
    if (!got || got.length !== tb.m || got.some((v: number, j: number) => v !== tb.slots[j])) differ++;
  }
  return { fe: fe.sort(), differ };
}

if (!isRoot) {
  test('prefill tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('tables filled ahead of their apply: the apply adopts the fill, the kernel as without it', async (t) => {
    const state = services(N, 10);
    // without: the apply fills them itself
    const a = load(t);
    const pa = buildPlan(state, undefined, { seed: SEED });
    await a.maps.applyAsync(diffPlans(undefined, pa));
    // with: the plan hands its new tables over as soon as it has them
    const b = load(t);
    let handed: readonly PlanTable[] = [];
    let started = false;
    const pb = buildPlan(state, undefined, { seed: SEED, onTables: (tables) => { handed = tables; started = b.maps.prefill(tables); } });
    t.true(started, 'the fill started');
    t.is(handed.length, pb.tables.size, 'every table of a first build is new');
    const used = b.maps.maglevSlotUse().used;
    t.is(used, regionSlots(pb), 'their regions are taken before the apply');
    const res = await b.maps.applyAsync(diffPlans(undefined, pb));
    t.is(res.tables, N);
    t.is(b.maps.maglevSlotUse().used, used, 'the apply took no other region');
    const ha = held(a, pa), hb = held(b, pb);
    t.is(ha.differ, 0);
    t.is(hb.differ, 0, 'tables whose slots in lb_maglev_slots differ from the plan');
    t.deepEqual(hb.fe, ha.fe, 'lb_frontends (tables\' regions included) as an apply without the prefill leaves it');
    t.false(b.maps.prefill(handed), 'tables written already are not filled again');
  });

  test('tables filled ahead for an apply that does not come: the next apply drops them, their regions free at once', async (t) => {
    const d = load(t);
    // the first sync's plan, filled ahead, then never applied (its sync failed before the write)
    const lost = buildPlan(services(N, 10), undefined, { seed: SEED, onTables: (tables) => { t.true(d.maps.prefill(tables)); } });
    t.is(d.maps.maglevSlotUse().used, regionSlots(lost));
    // the retry plans again (other tables: every member moved), and applies
    const p = buildPlan(services(N, 10, 20), undefined, { seed: SEED });
    const res = await d.maps.applyAsync(diffPlans(undefined, p));
    t.is(res.tables, N);
    const h = held(d, p);
    t.is(h.differ, 0, 'the retry\'s tables hold its slots');
    t.is(d.maps.maglevSlotUse().used, regionSlots(p), 'only the retry\'s regions are in use');
    t.is(d.maps.maglevSlotUse().quarantined, 0, 'the dropped regions were never read: free at once, not quarantined');
    const back = d.maps.readPlan();
    t.is(back.frontends.size, N);
  });
}
