// Per-step CPU of the agent's sync for one endpoint change, without the kernel (as bench/sync-steps.ts,
// split by step): `N=30000 node --import=tsx bench/sync-steps-cpu.ts`. Prints median/max CPU ms per
// step over 20 changes (after 5 warm-up changes) as one JSON line.
import { BENCH_CAPACITY as cap, endpointChange, NODE_NAME, snapshot, type ClusterShape } from './gen.js';
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { buildPlan } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';
import { healthCheckPorts } from '../src/agent/agent.js';
import { countV6 } from '../src/plan/delta.js';
const N = Number(process.env.N ?? 10000);
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
let snap = snapshot(shape);
const c = new Compiler({ nodeName: NODE_NAME });
const ct = new CapacityTracker();
const res = c.compile(snap);
let prevState = res.state;
let cur = buildPlan(ct.fit(res.state, cap).state, undefined, { seed: 1 });
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const steps: Record<string, number[]> = { compile: [], fit: [], plan: [], diff: [], hc: [], v6: [], total: [] };
for (let k = 0; k < 25; k++) {
  const i = (N / 2 + k * 7919) % N;
  const ch = endpointChange(snap, shape, i, 1 + (k % 2));
  snap = ch.snap;
  const t: number[] = [cpu()];
  const r = c.compile(snap, ch.changed); t.push(cpu());
  const fit = ct.fit(r.state, cap); t.push(cpu());
  const next = buildPlan(fit.state, cur, { seed: 1, consumePrev: true }); t.push(cpu());
  diffPlans(cur, next); t.push(cpu());
  healthCheckPorts(snap, r.services as never, NODE_NAME); t.push(cpu());
  countV6(fit.state, prevState); t.push(cpu());
  cur = next; prevState = fit.state;
  if (k < 5) continue;
  const names = Object.keys(steps);
  for (let s = 0; s < 6; s++) steps[names[s]!]!.push(t[s + 1]! - t[s]!);
  steps.total!.push(t[6]! - t[0]!);
}
const out: Record<string, string> = {};
for (const [n, v] of Object.entries(steps)) { v.sort((a, b) => a - b); out[n] = `${v[v.length >> 1]!.toFixed(2)}/${v[v.length - 1]!.toFixed(2)}`; }
console.log(JSON.stringify({ tree: process.cwd(), N, ...out }));
