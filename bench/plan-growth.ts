// The incremental plan step of one endpoint change against N (issue 10: proportional to the change):
// `N=30000 node --import=tsx bench/plan-growth.ts` prints buildPlan's CPU per change, min / median /
// p90 over CHANGES (default 300) changes after 20 warm-up ones, as one JSON line. PROFILE=file.cpuprofile
// writes a CPU profile of the measured changes only (the full build before them left out).
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { BENCH_CAPACITY as cap, endpointChange, NODE_NAME, snapshot, type ClusterShape } from './gen.js';
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { buildPlan, releaseSlots } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';

const N = Number(process.env.N ?? 10000);
const CHANGES = Number(process.env.CHANGES ?? 300);
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
let snap = snapshot(shape);
const c = new Compiler({ nodeName: NODE_NAME });
const ct = new CapacityTracker();
let cur = buildPlan(ct.fit(c.compile(snap).state, cap).state, undefined, { seed: 1 });
releaseSlots(cur);
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const planMs: number[] = [];
const session = process.env.PROFILE ? new Session() : undefined;
for (let k = 0; k < CHANGES + 20; k++) {
  if (k === 20 && session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 50 });
    await session.post('Profiler.start');
  }
  const i = (N / 2 + k * 7919) % N;
  const ch = endpointChange(snap, shape, i, 1 + (k % 2));
  snap = ch.snap;
  const r = c.compile(snap, ch.changed);
  const fit = ct.fit(r.state, cap);
  const t0 = cpu();
  const next = buildPlan(fit.state, cur, { seed: 1, consumePrev: true });
  const t1 = cpu();
  diffPlans(cur, next);
  releaseSlots(next);
  cur = next;
  if (k >= 20) planMs.push(t1 - t0);
}
if (session) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(process.env.PROFILE!, JSON.stringify(profile));
}
planMs.sort((a, b) => a - b);
const at = (q: number) => planMs[Math.min(planMs.length - 1, Math.floor(q * planMs.length))]!.toFixed(3);
console.log(JSON.stringify({ tree: process.cwd(), N, changes: CHANGES, planMs: `${at(0)} / ${at(0.5)} / ${at(0.9)}` }));
