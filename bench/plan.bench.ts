// Control-plane cost of a sync without the kernel: compile (raw Services and EndpointSlices -> the
// node's frontends), plan (ids, slot lists, Maglev tables) and diff, at 10,000 and 100,000 Services
// x 10 endpoints, plus the memory each stage's output holds.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { NodeState } from '../src/model/compiled.js';
import type { Snapshot } from '../src/source/types.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan } from '../src/plan/plan.js';
import type { Plan } from '../src/plan/types.js';
import { endpointSlice, nodeState, NODE_NAME, snapshot, type ClusterShape } from './gen.js';
import { defineBench, type BenchContext } from './lib.js';

type CompileFn = (s: Snapshot, o: { nodeName: string }) => { state: NodeState; errors: unknown[] };

const SEED = 0x6b627078;

async function loadCompile(): Promise<CompileFn | undefined> {
  const file = fileURLToPath(new URL('../src/compile/compile.ts', import.meta.url));
  if (!existsSync(file)) return undefined;
  const spec = '../src/compile/compile.js';
  const mod = (await import(spec)) as { compile?: CompileFn };
  return mod.compile;
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
  stateBytes: number;
  planHeapBytes: number;
}

function measure(ctx: BenchContext, services: number, compile: CompileFn | undefined): Row {
  const shape: ClusterShape = { services, endpointsPerService: 10, nodePortEvery: 10 };
  const big = services >= 50_000;
  const once = big || (ctx.quick && services >= 10_000);
  const opts = { repeat: once ? 1 : 3, warmup: once ? 0 : 1 };
  let state: NodeState;
  let compileMs: number | undefined, compileCpu: number | undefined, changeCompileMs: number | undefined;
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

  // one endpoint of one Service changes: what the control plane does before the kernel writes
  const mid = Math.floor(services / 2);
  let changed: NodeState;
  if (compile) {
    const s2: Snapshot = { ...snap!, endpointSlices: new Map(snap!.endpointSlices) };
    (s2.endpointSlices as Map<string, unknown>).set(`bench/svc-${mid}-abcde`, endpointSlice(mid, shape, 1));
    let out: NodeState | undefined;
    changeCompileMs = ctx.time(() => { out = compile(s2, { nodeName: NODE_NAME }).state; }, opts).median;
    changed = out!;
  } else {
    changed = structuredClone(state);
    const f = changed.frontends.find((x) => x.service === `bench/svc-${mid}`)!;
    f.backends[0] = { ...f.backends[0]!, address: '10.255.255.254' };
  }
  let next: Plan | undefined;
  const changePlanMs = ctx.time(() => { next = buildPlan(changed, first, { seed: SEED }); }, opts).median;
  let ops = 0;
  const changeDiffMs = ctx.time(() => { ops = diffPlans(first, next!).length; }, opts).median;
  ctx.log(`${services} Services: ${first.frontends.size} frontends, ${first.tables.size} tables, compile ${compileMs?.toFixed(0)} ms, plan ${planMs.toFixed(0)} ms, resync ${resyncMs.toFixed(0)} ms, change ${changePlanMs.toFixed(0)}+${changeDiffMs.toFixed(0)} ms (${ops} ops)`);
  return {
    services, frontends: first.frontends.size, tables: first.tables.size, compileMs, compileCpu, planMs, planMinMs: planStats.min, planCpu: planStats.cpuMedian, resyncMs,
    changeCompileMs, changePlanMs, changeDiffMs, changeOps: ops, stateBytes, planHeapBytes,
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
    const compile = await loadCompile();
    if (!compile) ctx.note('src/compile/compile.ts was not there: NodeState generated directly (bench/gen.ts nodeState), compile not timed.');
    ctx.note('Values are wall-clock medians (one run at 100k, and at 10k with --quick); the notes add the minimum and the CPU time of the process, which are the better estimate when the load average in the header is high. CPU time includes V8\'s parallel GC threads.');
    ctx.note('"one endpoint change" is what a sync costs today: compile, buildPlan and diffPlans each walk the whole state. The DESIGN.md target of < 5 ms p99 for the kernel update after one endpoint change, flat in N, needs an incremental path (compile and plan per changed Service); this bench shows the gap.');
    const sizes = ctx.quick ? [1_000, 10_000] : [1_000, 10_000, 30_000, 100_000];
    const rows = sizes.map((n) => measure(ctx, n, compile));
    for (const r of rows) {
      const k = r.services >= 1000 ? `${r.services / 1000}k` : `${r.services}`;
      if (r.compileMs !== undefined) ctx.metric({ name: `compile ${k}`, value: r.compileMs, unit: 'ms', better: 'lower', note: `CPU ${r.compileCpu!.toFixed(0)} ms` });
      ctx.metric({ name: `plan ${k} (first sync)`, value: r.planMs, unit: 'ms', better: 'lower', note: `${r.frontends} frontends, ${r.tables} tables built; min ${r.planMinMs.toFixed(0)} ms, CPU ${r.planCpu.toFixed(0)} ms` });
      ctx.metric({ name: `plan ${k} (resync, no change)`, value: r.resyncMs, unit: 'ms', better: 'lower', baseline: `plan ${k} (first sync)` });
      ctx.metric({ name: `one endpoint change ${k}: plan`, value: r.changePlanMs, unit: 'ms', better: 'lower' });
      ctx.metric({ name: `one endpoint change ${k}: diff`, value: r.changeDiffMs, unit: 'ms', better: 'lower', note: `${r.changeOps} ops` });
      if (r.changeCompileMs !== undefined) {
        ctx.metric({
          name: `one endpoint change ${k}: compile`, value: r.changeCompileMs, unit: 'ms', better: 'lower',
          note: 'a full recompile; the 5 ms kernel-update target (DESIGN.md) needs compile to be incremental',
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
