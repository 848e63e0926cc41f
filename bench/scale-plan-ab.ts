// The first sync's fit, plan and diff at N Services x 10 endpoints from two trees in ONE process,
// interleaved on one compiled state (order swapped each round), without the kernel: the part of the
// 100,000-Service full sync that is the control plane's, A/B (bench/sync-ab.ts is the same with the
// apply, at sizes the default Maglev array holds). A full GC before each tree's turn, so neither
// pays the other's garbage; the GC that a build's garbage costs afterwards is timed too (gcAfter).
//   BASE=/tmp/p17/basetree N=100000 ROUNDS=4 node --import=tsx --expose-gc bench/scale-plan-ab.ts
// The fit is asked as the agent's first sync asks it (deferCount); a tree whose tracker puts the
// count off (settle) has its main-thread ms printed as fitSettleMain, outside allMain (the agent makes it after the sync).
// Prints per step the median CPU ms of each tree (process, and main thread; wall) and this / base
// per round as min / median / max.
import { Compiler } from '../src/compile/compile.js';
import { AbResults, importTrees, threadMs } from './ab.js';
import { slimStore } from './apiserver-objects.js';
import { NODE_IP, NODE_NAME } from './gen.js';

const BASE = process.env.BASE;
if (!BASE) throw new Error('BASE=<another checkout> is needed');
const N = Number(process.env.N ?? 100_000), ROUNDS = Number(process.env.ROUNDS ?? 4);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const trees = await importTrees(BASE, async (im) => ({
  buildPlan: (await im('plan/plan.ts')).buildPlan, diffPlans: (await im('plan/diff.ts')).diffPlans,
  CapacityTracker: (await im('plan/capacity.ts')).CapacityTracker,
}));
const store = slimStore({ services: N, endpointsPerService: 10, nodePortEvery: 10 });
const state = new Compiler({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] }).compile(store.view()).state;
const cap = { frontends: 1 << 20, backends: 1 << 23, slots: 1 << 26, frontendIds: 1 << 20, sourceRanges: 65536, maglevSlots: 1 << 28 };
const res = new AbResults();
/** per tree: the main thread's ms of the count its first fit put off (CapacityTracker.settle), where it has one */
const settled: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const T of r % 2 ? [...trees].reverse() : trees) {
    gc();
    const m0 = threadMs();
    // as the agent's first sync asks it (deferCount: a build without it counts at once); the count
    // it put off (settle) is timed apart: the agent makes it after the sync's end
    const tracker = new T.CapacityTracker();
    let fitted: any = res.time(T.name, 'fit', () => tracker.fit(state, cap, undefined, () => undefined, { deferCount: true }).state);
    let plan: any = res.time(T.name, 'plan', () => T.buildPlan(fitted, undefined, { seed: 7, consumePrev: true }));
    let ops: any = res.time(T.name, 'diff', () => T.diffPlans(undefined, plan));
    const all = threadMs() - m0;
    if (typeof tracker.settle === 'function') {
      const m = threadMs();
      tracker.settle();
      (settled[T.name] ??= []).push(threadMs() - m);
    }
    res.put(T.name, 'allMain', all);
    res.put(T.name, 'heapMiB', process.memoryUsage().heapUsed / 2 ** 20);
    // the full GC the agent runs after a first sync, with the build still held
    const w = performance.now();
    gc();
    res.put(T.name, 'gcAfterMs', performance.now() - w);
    res.put(T.name, 'liveMiB', process.memoryUsage().heapUsed / 2 ** 20);
    void ops; fitted = plan = ops = undefined;
    process.stderr.write(`[scale-plan-ab] round ${r} ${T.name}: fit+plan+diff main ${all.toFixed(0)} ms\n`);
  }
}
res.print({ N, ROUNDS });
if (Object.keys(settled).length) console.log(JSON.stringify({ fitSettleMain: Object.fromEntries(Object.entries(settled).map(([k, v]) => [k, v.map((x) => Math.round(x))])) }));
