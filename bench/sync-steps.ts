// The agent's sync steps for one endpoint change, without the kernel: compile with the store's change
// record, capacity fit, buildPlan in the previous plan's maps, diff, healthCheckNodePort ports and the
// IPv6 count, in Agent.#sync's order. Standalone, so that it runs unchanged in an older checkout
// (copy it there) for a same-run A/B: `N=10000 node --import=tsx bench/sync-steps.ts` in each tree,
// interleaved. Prints wall ms over 50 changes (after 10 warm-up changes) as one JSON line.
import { endpointSlice, NODE_NAME, service, snapshot, type ClusterShape } from './gen.js';
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { buildPlan } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';
import { healthCheckPorts } from '../src/agent/agent.js';
import { existsSync } from 'node:fs';
// an older tree has no delta.ts: the agent there walked the plan's frontends for the families
const delta = existsSync(new URL('../src/plan/delta.ts', import.meta.url))
  ? (await import('../src/plan/delta.js' as string)) as { countV6(s: unknown, b: unknown): number } : undefined;
const N = Number(process.env.N ?? 10000);
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
let snap = snapshot(shape);
const cap = { frontends: 65536, backends: 1 << 20, slots: 1 << 22, frontendIds: 65536, sourceRanges: 65536, maglevSlots: 1 << 24 };
const c = new Compiler({ nodeName: NODE_NAME });
const ct = new CapacityTracker();
let res = c.compile(snap);
let prevState = res.state;
let cur = buildPlan(ct.fit(res.state, cap).state, undefined, { seed: 1 });
const totals: number[] = [];
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
for (let k = 0; k < 60; k++) {
  const i = (N / 2 + k * 7919) % N;
  const eps = new Map(snap.endpointSlices);
  const key = `bench/svc-${i}-abcde`;
  eps.set(key, endpointSlice(i, shape, 1 + (k % 2)));
  // KBP_SYNC_STEPS_SERVICE=1: the Service object is replaced too (equal content), as the manifests
  // source does when it re-reads the one file holding both
  const svcKey = `bench/svc-${i}`;
  const withSvc = process.env.KBP_SYNC_STEPS_SERVICE === '1' && snap.services.has(svcKey);
  const svcs = withSvc ? new Map(snap.services).set(svcKey, service(i, shape)) : snap.services;
  snap = { ...snap, services: svcs, endpointSlices: eps };
  const hint = { Service: new Set<string>(withSvc ? [svcKey] : []), EndpointSlice: new Set([key]), Node: new Set<string>() };
  const t0 = performance.now();
  // what Agent.#sync does per change, in order (no kernel)
  const r = c.compile(snap, hint);
  const fit = ct.fit(r.state, cap);
  const next = buildPlan(fit.state, cur, { seed: 1, consumePrev: true });
  diffPlans(cur, next);
  healthCheckPorts(snap, r.services as never, NODE_NAME);
  if (delta) delta.countV6(fit.state, prevState);
  else for (const f of next.frontends.values()) if (f.address.includes(':')) break;
  const t1 = performance.now();
  cur = next; prevState = fit.state;
  if (k >= 10) totals.push(t1 - t0);
}
const v = totals.sort((x, y) => x - y);
console.log(JSON.stringify({ tree: process.cwd(), N, min: v[0], med: v[v.length >> 1], p90: v[Math.floor(v.length * 0.9)], max: v[v.length - 1] }));
