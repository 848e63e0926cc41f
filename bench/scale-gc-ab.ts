// The heap trimmer's full GC after a big sync (src/util/heap-trim.ts) at N Services, in one process:
// the agent's live state (the store, compile, the capacity tracker, the plan without slots) built
// once, then rounds of the first sync's garbage (a plan and its ops, built again and dropped) each
// collected by one GC, the kinds alternating: gc()'s last-resort flavor (V8's
// CollectAllAvailableGarbage, the trimmer's until session 19) and the addon's memoryPressure
// (critical, then none: one GC that reduces the footprint). Per round: the pause, the major GCs V8
// reported, heap used before and after, RSS after.
//   N=100000 ROUNDS=3 node --import=tsx --max-semi-space-size=16 --no-memory-reducer bench/scale-gc-ab.ts
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan, releaseSlots } from '../src/plan/plan.js';
import { native } from '../src/dataplane/bpf/native/addon.js';
import { fullGc, pressureGc } from '../src/util/heap-trim.js';
import { slimStore } from './apiserver-objects.js';
import { NODE_IP, NODE_NAME } from './gen.js';

const N = Number(process.env.N ?? 100_000), ROUNDS = Number(process.env.ROUNDS ?? 3);
const MiB = 2 ** 20;
const kinds = { 'last-resort': fullGc('last-resort'), pressure: pressureGc((l) => native().memoryPressure(l)) };
const store = slimStore({ services: N, endpointsPerService: 10, nodePortEvery: 10 });
const compiled = new Compiler({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] }).compile(store.view()).state;
const cap = { frontends: 1 << 20, backends: 1 << 23, slots: 1 << 26, frontendIds: 1 << 20, sourceRanges: 65536, maglevSlots: 1 << 28 };
const ct = new CapacityTracker();
const fitted = ct.fit(compiled, cap).state;
const plan = buildPlan(fitted, undefined, { seed: 1, consumePrev: true });
releaseSlots(plan);
let majors = 0;
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
}).observe({ entryTypes: ['gc'] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (let r = 0; r < ROUNDS; r++) {
  const order = (r % 2 ? ['pressure', 'last-resort'] : ['last-resort', 'pressure']) as (keyof typeof kinds)[];
  for (const k of order) {
    // the first sync's garbage: a plan of the same state and its ops, dropped
    let p: ReturnType<typeof buildPlan> | undefined = buildPlan(fitted, undefined, { seed: 1, consumePrev: false });
    let ops: unknown[] | undefined = diffPlans(undefined, p);
    releaseSlots(p);
    p = undefined;
    ops = undefined;
    await sleep(100);
    majors = 0;
    const before = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    kinds[k]();
    const pauseMs = performance.now() - t0;
    await sleep(300);
    const m = process.memoryUsage();
    console.log(JSON.stringify({ N, round: r + 1, gc: k, pauseMs: Math.round(pauseMs), majorGcs: majors, beforeMiB: Math.round(before / MiB), afterMiB: Math.round(m.heapUsed / MiB), rssMiB: Math.round(m.rss / MiB) }));
    void ops;
  }
}
void store; void plan; void ct;
