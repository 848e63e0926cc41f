// Does a one-change sync cost more after the process sat idle? (issue 10: the one-change sync's
// median rose ~30% in every step after the /metrics scrape stopped doing ~120 ms of work after each
// change, with no change to the steps' code.) The agent's sync steps without the kernel, as
// bench/sync-steps.ts runs them, one change every `GAP_MS` (1.15 s, the agent-change bench's pace),
// alternating per change: idle before it, or `BUSY_MS` of unrelated work (walking a 64 MiB buffer,
// allocating) ending ~1 s before it, like the old scrape. Prints CPU and wall medians of each kind.
// `N=10000 node --import=tsx bench/sync-idle.ts`
import { endpointSlice, NODE_NAME, snapshot, type ClusterShape } from './gen.js';
import { Compiler } from '../src/compile/compiler.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { buildPlan } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';

const N = Number(process.env.N ?? 10000), CHANGES = Number(process.env.CHANGES ?? 40);
const GAP_MS = Number(process.env.GAP_MS ?? 1150), BUSY_MS = Number(process.env.BUSY_MS ?? 120);
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
let snap = snapshot(shape);
const cap = { frontends: 65536, backends: 1 << 20, slots: 1 << 22, frontendIds: 65536, sourceRanges: 65536, maglevSlots: 1 << 24 };
const c = new Compiler({ nodeName: NODE_NAME });
const ct = new CapacityTracker();
let cur = buildPlan(ct.fit(c.compile(snap).state, cap).state, undefined, { seed: 1 });
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const big = new Uint32Array(16 << 20);
let sink = 0;
function busy(ms: number): void {
  const end = performance.now() + ms;
  let junk: object[] = [];
  while (performance.now() < end) {
    for (let i = 0; i < big.length; i += 16) sink += big[i]!++;
    for (let i = 0; i < 20000; i++) junk.push({ i, s: `x${i}` });
    junk = [];
  }
}
const eps = new Map(snap.endpointSlices);
snap = { ...snap, endpointSlices: eps };
const out: Record<string, { cpu: number[]; wall: number[] }> = { idle: { cpu: [], wall: [] }, busy: { cpu: [], wall: [] } };
for (let k = 0; k < CHANGES; k++) {
  const kind = k % 2 ? 'busy' : 'idle';
  if (kind === 'busy') {
    busy(BUSY_MS);
    await sleep(GAP_MS - BUSY_MS - 20);
  } else await sleep(GAP_MS - 20);
  const i = (N / 2 + k * 7919) % N;
  const key = `bench/svc-${i}-abcde`;
  eps.set(key, endpointSlice(i, shape, 1 + (k % 3)));
  const hint = { Service: new Set<string>(), EndpointSlice: new Set([key]), Node: new Set<string>() };
  const c0 = cpu(), t0 = performance.now();
  const r = c.compile(snap, hint);
  const fit = ct.fit(r.state, cap);
  const next = buildPlan(fit.state, cur, { seed: 1, consumePrev: true });
  diffPlans(cur, next);
  const t1 = performance.now(), c1 = cpu();
  cur = next;
  if (k >= 4) { out[kind]!.cpu.push(c1 - c0); out[kind]!.wall.push(t1 - t0); }
}
const med = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1]!;
const f = (v: number[]) => `min ${Math.min(...v).toFixed(3)} med ${med(v).toFixed(3)} max ${Math.max(...v).toFixed(3)}`;
for (const [k, v] of Object.entries(out)) console.log(`${k}: cpu ${f(v.cpu)} | wall ${f(v.wall)} (${v.cpu.length})`);
console.log(`ratio idle/busy: cpu ${(med(out.idle!.cpu) / med(out.busy!.cpu)).toFixed(2)} wall ${(med(out.idle!.wall) / med(out.busy!.wall)).toFixed(2)} ${sink > 0 ? '' : ' '}`);
