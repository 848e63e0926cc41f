// The first sync's fit, plan and diff at N Services x 10 endpoints from two trees in ONE process,
// interleaved on one compiled state (order swapped each round), without the kernel: the part of the
// 100,000-Service full sync that is the control plane's, A/B (bench/sync-ab.ts is the same with the
// apply, at sizes the default Maglev array holds). A full GC before each tree's turn, so neither
// pays the other's garbage; the GC that a build's garbage costs afterwards is timed too (gcAfter).
//   BASE=/tmp/p17/basetree N=100000 ROUNDS=4 node --import=tsx --expose-gc bench/scale-plan-ab.ts
// Prints per step the median CPU ms of each tree (process, and main thread; wall) and this / base
// per round as min / median / max.
import { loadavg } from 'node:os';
import { Compiler } from '../src/compile/compile.js';
import { slimStore } from './apiserver-objects.js';
import { NODE_IP, NODE_NAME } from './gen.js';

const BASE = process.env.BASE;
if (!BASE) throw new Error('BASE=<another checkout> is needed');
const N = Number(process.env.N ?? 100_000), ROUNDS = Number(process.env.ROUNDS ?? 4);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
type Tree = { name: string; buildPlan: any; diffPlans: any; CapacityTracker: any };
async function tree(name: string, root: string): Promise<Tree> {
  const im = (p: string) => import(`${root}/src/${p}`);
  return { name, buildPlan: (await im('plan/plan.ts')).buildPlan, diffPlans: (await im('plan/diff.ts')).diffPlans,
    CapacityTracker: (await im('plan/capacity.ts')).CapacityTracker };
}
const trees = [await tree('base', BASE.replace(/\/$/, '')), await tree('ours', new URL('..', import.meta.url).pathname.replace(/\/$/, ''))];
const store = slimStore({ services: N, endpointsPerService: 10, nodePortEvery: 10 });
const state = new Compiler({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] }).compile(store.view()).state;
const cap = { frontends: 1 << 20, backends: 1 << 23, slots: 1 << 26, frontendIds: 1 << 20, sourceRanges: 65536, maglevSlots: 1 << 28 };
const tc = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const pc = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const res: Record<string, Record<string, number[]>> = { base: {}, ours: {} };
const put = (t: string, k: string, v: number) => (res[t]![k] ??= []).push(v);
for (let r = 0; r < ROUNDS; r++) {
  for (const T of r % 2 ? [...trees].reverse() : trees) {
    gc();
    const steps: [string, () => unknown][] = [];
    let fitted: any, plan: any, ops: any;
    steps.push(['fit', () => (fitted = new T.CapacityTracker().fit(state, cap).state)]);
    steps.push(['plan', () => (plan = T.buildPlan(fitted, undefined, { seed: 7, consumePrev: true }))]);
    steps.push(['diff', () => (ops = T.diffPlans(undefined, plan))]);
    let all = 0;
    for (const [k, f] of steps) {
      const m = tc(), p = pc(), w = performance.now();
      f();
      put(T.name, `${k}Main`, tc() - m); put(T.name, k, pc() - p); put(T.name, `${k}Wall`, performance.now() - w);
      all += tc() - m;
    }
    put(T.name, 'allMain', all);
    put(T.name, 'heapMiB', process.memoryUsage().heapUsed / 2 ** 20);
    // the full GC the agent runs after a first sync, with the build still held
    const w = performance.now();
    gc();
    put(T.name, 'gcAfterMs', performance.now() - w);
    put(T.name, 'liveMiB', process.memoryUsage().heapUsed / 2 ** 20);
    void ops; fitted = plan = ops = undefined;
    process.stderr.write(`[scale-plan-ab] round ${r} ${T.name}: fit+plan+diff main ${all.toFixed(0)} ms\n`);
  }
}
const med = (xs: number[]) => { const v = [...xs].sort((a, b) => a - b); return v[v.length >> 1]!; };
const out: Record<string, string> = {};
for (const k of Object.keys(res.base!)) {
  const b = res.base![k]!, o = res.ours![k]!;
  const ratios = o.map((x, i) => x / b[i]!).sort((a, c) => a - c);
  out[k] = `base ${med(b).toFixed(0)} ours ${med(o).toFixed(0)} ratio min/med/max ${ratios[0]!.toFixed(2)}/${med(ratios).toFixed(2)}/${ratios[ratios.length - 1]!.toFixed(2)}`;
}
console.log(JSON.stringify({ N, ROUNDS, load: loadavg()[0], ...out }, null, 1));
