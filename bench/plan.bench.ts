// Control-plane cost of a sync without the kernel: compile (raw Services and EndpointSlices -> the
// node's frontends), plan (ids, slot lists, Maglev tables) and diff, at 10,000 and 100,000 Services
// x 10 endpoints, plus the memory each stage's output holds.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { NodeState } from '../src/model/compiled.js';
import type { Snapshot } from '../src/source/types.js';
import type { ChangedKeys } from '../src/compile/compile.js';
import { CapacityTracker, UNLIMITED } from '../src/plan/capacity.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan } from '../src/plan/plan.js';
import type { Plan } from '../src/plan/types.js';
import { endpointSlice, nodeState, NODE_NAME, snapshot, type ClusterShape } from './gen.js';
import { defineBench, stats, type BenchContext } from './lib.js';

type CompileFn = (s: Snapshot, o: { nodeName: string }) => { state: NodeState; errors: unknown[] };
/** src/compile's incremental Compiler, as the agent holds it */
type CompilerCtor = new (o: { nodeName: string }) => { compile(s: Snapshot, changed?: ChangedKeys): { state: NodeState } };

/** one-endpoint changes measured in a row, each planned from the plan before, as the agent syncs */
const CHANGES = 50;

const SEED = 0x6b627078;

async function loadCompile(): Promise<{ compile?: CompileFn; Compiler?: CompilerCtor }> {
  const file = fileURLToPath(new URL('../src/compile/compile.ts', import.meta.url));
  if (!existsSync(file)) return {};
  const spec = '../src/compile/compile.js';
  return (await import(spec)) as { compile?: CompileFn; Compiler?: CompilerCtor };
}

interface Row {
  services: number;
  frontends: number;
  tables: number;
  compileMs?: number;
  compileCpu?: number;
  planMs: number;
  planMinMs: number;
  planCpu: number;
  resyncMs: number;
  changeCompileMs?: number;
  changePlanMs: number;
  changeDiffMs: number;
  changeOps: number;
  changePlanP99: number;
  changeDiffP99: number;
  changeCompileP99?: number;
  changeFitMs: number;
  changeFitP99: number;
  stateBytes: number;
  planHeapBytes: number;
}

function measure(ctx: BenchContext, services: number, compile: CompileFn | undefined, Compiler: CompilerCtor | undefined): Row {
  const shape: ClusterShape = { services, endpointsPerService: 10, nodePortEvery: 10 };
  const big = services >= 50_000;
  const once = big || (ctx.quick && services >= 10_000);
  const opts = { repeat: once ? 1 : 3, warmup: once ? 0 : 1 };
  let state: NodeState;
  let compileMs: number | undefined, compileCpu: number | undefined;
  let snap: Snapshot | undefined;
  if (compile) {
    snap = snapshot(shape);
    const s = snap;
    let out: NodeState | undefined;
    const st = ctx.time(() => { out = compile(s, { nodeName: NODE_NAME }).state; }, opts);
    compileMs = st.median;
    compileCpu = st.cpuMedian;
    state = out!;
  } else {
    state = nodeState(shape);
  }
  ctx.gc();
  const stateBytes = ctx.retained(() => (compile ? compile(snap!, { nodeName: NODE_NAME }).state : nodeState(shape))).bytes;

  let plan: Plan | undefined;
  const planStats = ctx.time(() => { plan = buildPlan(state, undefined, { seed: SEED }); }, opts);
  const planMs = planStats.median;
  const first = plan!;
  const resyncMs = ctx.time(() => buildPlan(state, first, { seed: SEED }), opts).median;
  ctx.gc();
  const planHeapBytes = ctx.retained(() => buildPlan(state, undefined, { seed: SEED })).bytes;

  // one endpoint of one Service changes, CHANGES times in a row (a different Service each time):
  // what the agent's sync does before the kernel writes, through the same incremental Compiler and
  // each plan built from the one before (buildPlan's incremental path needs exactly that)
  const mid = Math.floor(services / 2);
  const cms: number[] = [], pms: number[] = [], dms: number[] = [], fms: number[] = [];
  // the agent's map-capacity check, which follows compile's delta as the plan does
  const capacity = new CapacityTracker();
  let ops = 0;
  let s2 = snap;
  let compiler: InstanceType<CompilerCtor> | undefined;
  let last: NodeState = state;
  if (Compiler && snap) {
    compiler = new Compiler({ nodeName: NODE_NAME });
    last = compiler.compile(snap).state;
  }
  capacity.fit(last, UNLIMITED);
  let cur = buildPlan(last, undefined, { seed: SEED });
  for (let k = 0; k < CHANGES; k++) {
    const i = (mid + k * 7919) % services;
    let changed: NodeState;
    if (compiler) {
      const eps = new Map(s2!.endpointSlices);
      eps.set(`bench/svc-${i}-abcde`, endpointSlice(i, shape, 1 + (k % 2)));
      s2 = { ...s2!, endpointSlices: eps };
      // the store's change record, as the agent hands it on
      const hint: ChangedKeys = { Service: new Set(), EndpointSlice: new Set([`bench/svc-${i}-abcde`]), Node: new Set() };
      const t0 = performance.now();
      changed = compiler.compile(s2, hint).state;
      cms.push(performance.now() - t0);
    } else {
      // the unchanged frontends stay the same objects, as compile's do
      const fes = [...last.frontends];
      const at = fes.findIndex((x) => x.service === `bench/svc-${i}`);
      const f = fes[at]!;
      fes[at] = { ...f, backends: [{ ...f.backends[0]!, address: `10.255.${k >> 8}.${k & 255}` }, ...f.backends.slice(1)] };
      changed = { frontends: fes };
    }
    const tf = performance.now();
    capacity.fit(changed, UNLIMITED);
    fms.push(performance.now() - tf);
    const t1 = performance.now();
    // as the BPF agent builds: in the previous plan's maps (consumePrev), not a copy of them
    const next = buildPlan(changed, cur, { seed: SEED, consumePrev: true });
    const t2 = performance.now();
    ops = diffPlans(cur, next).length;
    dms.push(performance.now() - t2);
    pms.push(t2 - t1);
    cur = next;
    last = changed;
  }
  const cst = cms.length ? stats(cms) : undefined, pst = stats(pms), dst = stats(dms), fst = stats(fms);
  const changeCompileMs = cst?.median, changePlanMs = pst.median, changeDiffMs = dst.median;
  ctx.log(`${services} Services: ${first.frontends.size} frontends, ${first.tables.size} tables, compile ${compileMs?.toFixed(0)} ms, plan ${planMs.toFixed(0)} ms, resync ${resyncMs.toFixed(0)} ms, change (median/p99 of ${CHANGES}) plan ${changePlanMs.toFixed(1)}/${pst.p99.toFixed(1)} diff ${changeDiffMs.toFixed(2)}/${dst.p99.toFixed(2)} ms (${ops} ops)`);
  return {
    services, frontends: first.frontends.size, tables: first.tables.size, compileMs, compileCpu, planMs, planMinMs: planStats.min, planCpu: planStats.cpuMedian, resyncMs,
    changeCompileMs, changePlanMs, changeDiffMs, changeOps: ops, stateBytes, planHeapBytes,
    changePlanP99: pst.p99, changeDiffP99: dst.p99, changeCompileP99: cst?.p99, changeFitMs: fst.median, changeFitP99: fst.p99,
  };
}

export default defineBench({
  name: 'plan',
  title: 'Compile, plan and diff at 10,000 and 100,000 Services',
  description:
    'Services with one TCP port and 10 ready endpoints each (every 10th also a NodePort), compiled for one node ' +
    '(src/compile), planned from scratch (ids, slot lists, a Maglev table per distinct backend set), re-planned ' +
    'with nothing changed (a resync) and after one endpoint of one Service changed (plan + diff). No kernel: ' +
    'the sync bench adds the map writes. Heap is what the output retains after a full GC (V8 heap + ArrayBuffers).',
  async run(ctx) {
    const { compile, Compiler } = await loadCompile();
    if (!compile) ctx.note('src/compile/compile.ts was not there: NodeState generated directly (bench/gen.ts nodeState), compile not timed.');
    ctx.note('Values are wall-clock medians (one run at 100k, and at 10k with --quick); the notes add the minimum and the CPU time of the process, which are the better estimate when the load average in the header is high. CPU time includes V8\'s parallel GC threads.');
    ctx.note(`"one endpoint change" is ${CHANGES} changes in a row, each of one endpoint of another Service, through the incremental Compiler, buildPlan from the previous plan (its incremental path: only frontends whose object changed are redone) and diffPlans (walks only what buildPlan touched); medians, p99 in the notes. As in the BPF agent: the Compiler gets the store's change record, compile hands capacity and plan the frontends added and removed (src/plan/delta.ts), and buildPlan changes the previous plan's maps in place (consumePrev).`);
    const sizes = ctx.quick ? [1_000, 10_000] : [1_000, 10_000, 30_000, 100_000];
    const rows = sizes.map((n) => measure(ctx, n, compile, Compiler));
    for (const r of rows) {
      const k = r.services >= 1000 ? `${r.services / 1000}k` : `${r.services}`;
      if (r.compileMs !== undefined) ctx.metric({ name: `compile ${k}`, value: r.compileMs, unit: 'ms', better: 'lower', note: `CPU ${r.compileCpu!.toFixed(0)} ms` });
      ctx.metric({ name: `plan ${k} (first sync)`, value: r.planMs, unit: 'ms', better: 'lower', note: `${r.frontends} frontends, ${r.tables} tables built; min ${r.planMinMs.toFixed(0)} ms, CPU ${r.planCpu.toFixed(0)} ms` });
      ctx.metric({ name: `plan ${k} (resync, no change)`, value: r.resyncMs, unit: 'ms', better: 'lower', baseline: `plan ${k} (first sync)` });
      ctx.metric({ name: `one endpoint change ${k}: plan`, value: r.changePlanMs, unit: 'ms', better: 'lower', note: `p99 ${r.changePlanP99.toFixed(1)} ms over ${CHANGES} changes` });
      ctx.metric({ name: `one endpoint change ${k}: diff`, value: r.changeDiffMs, unit: 'ms', better: 'lower', note: `p99 ${r.changeDiffP99.toFixed(2)} ms; ${r.changeOps} ops` });
      ctx.metric({ name: `one endpoint change ${k}: capacity fit`, value: r.changeFitMs, unit: 'ms', better: 'lower', note: `p99 ${r.changeFitP99.toFixed(2)} ms` });
      if (r.changeCompileMs !== undefined) {
        ctx.metric({
          name: `one endpoint change ${k}: compile`, value: r.changeCompileMs, unit: 'ms', better: 'lower',
          note: `p99 ${r.changeCompileP99?.toFixed(1)} ms; with the store's change record, as the agent compiles`,
        });
      }
      ctx.metric({ name: `heap of compiled state ${k}`, value: r.stateBytes, unit: 'bytes', better: 'lower' });
      ctx.metric({ name: `heap of plan ${k}`, value: r.planHeapBytes, unit: 'bytes', better: 'lower', note: 'Maglev tables included (ArrayBuffers)' });
    }
    const ten = rows.find((r) => r.services === 10_000);
    if (ten) {
      const total = (ten.compileMs ?? 0) + ten.planMs;
      ctx.metric({
        name: 'compile + plan 10k', value: total, unit: 'ms', better: 'lower', target: '< 1 s for the whole sync incl. kernel',
        met: total < 1000, note: 'the kernel writes come on top (sync bench)',
      });
    }
    const pts = (f: (r: Row) => number | undefined) => rows.filter((r) => f(r) !== undefined).map((r): [number, number] => [r.services, f(r)!]);
    ctx.figure({
      id: 'time', kind: 'line', title: 'Control-plane time per sync (10 endpoints per Service)',
      x: { label: 'Services', log: true }, y: { label: 'ms (median)', log: true },
      series: [
        { name: 'compile', points: pts((r) => r.compileMs) },
        { name: 'plan, first sync', points: pts((r) => r.planMs) },
        { name: 'plan, resync', points: pts((r) => r.resyncMs) },
        { name: '1 change: compile', points: pts((r) => r.changeCompileMs) },
        { name: '1 change: plan', points: pts((r) => r.changePlanMs) },
        { name: '1 change: diff', points: pts((r) => r.changeDiffMs) },
      ].filter((s) => s.points.length),
    });
    ctx.figure({
      id: 'heap', kind: 'line', title: 'Memory held by the compiled state and the plan',
      x: { label: 'Services', log: true }, y: { label: 'MiB', log: true },
      series: [
        { name: 'compiled state', points: pts((r) => r.stateBytes / 2 ** 20) },
        { name: 'plan (incl. Maglev)', points: pts((r) => r.planHeapBytes / 2 ** 20) },
      ],
    });
  },
});
