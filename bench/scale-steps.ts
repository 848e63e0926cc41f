// The first sync's steps at N Services x 10 endpoints without the kernel, as the agent runs them
// from the API server: LIST pages of 500 parsed from JSON and slimmed into the store (the kube
// source's path), compile, capacity fit, buildPlan, releaseSlots. Wall and CPU ms per step and the
// heap after a full GC, to find what grows faster than N (issue 10's 100,000-Service row).
//   N=30000 node --import=tsx --expose-gc bench/scale-steps.ts   (one JSON line)
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { buildPlan, releaseSlots } from '../src/plan/plan.js';
import { slimStore } from './apiserver-objects.js';
import { NODE_IP, NODE_NAME, type ClusterShape } from './gen.js';

const N = Number(process.env.N ?? 10_000);
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const MiB = 2 ** 20;
const out: Record<string, number> = { N };
const step = <T>(name: string, f: () => T): T => {
  const c0 = process.cpuUsage(), t0 = performance.now();
  const v = f();
  out[`${name}Ms`] = Math.round(performance.now() - t0);
  const c = process.cpuUsage(c0);
  out[`${name}CpuMs`] = Math.round((c.user + c.system) / 1000);
  gc();
  const m = process.memoryUsage();
  out[`${name}HeapMiB`] = Math.round((m.heapUsed + m.external) / MiB);
  process.stderr.write(`[scale-steps] ${N}: ${name} ${out[`${name}Ms`]} ms, heap+external ${out[`${name}HeapMiB`]} MiB\n`);
  return v;
};
const store = step('store', () => slimStore(shape));
const compiler = new Compiler({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] });
const compiled = step('compile', () => compiler.compile(store.view()).state);
const cap = { frontends: 1 << 20, backends: 1 << 23, slots: 1 << 26, frontendIds: 1 << 20, sourceRanges: 65536, maglevSlots: 1 << 28 };
const ct = new CapacityTracker();
const fitted = step('fit', () => ct.fit(compiled, cap).state);
const plan = step('plan', () => buildPlan(fitted, undefined, { seed: 1 }));
step('release', () => releaseSlots(plan));
out.rssMiB = Math.round(process.memoryUsage().rss / MiB);
void store; void plan;
console.log(JSON.stringify(out));
