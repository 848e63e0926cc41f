// The first one-change syncs after a full sync, in process, as the agent meets them: a full compile,
// fit and plan of N Services, then the heap trimmer's memory-pressure GC and malloc_trim, the
// one-change warm-up, 2 s idle, and 5 endpoint changes each bringing a new pod address (a fresh
// backend). Per change: compile + fit, plan, diff (wall ms) and page faults. Takes the tree to load
// the code from, so a base tree (its own node_modules) and this one run the same script, interleaved:
//   for t in /tmp/base-tree "$PWD"; do node --expose-gc --max-semi-space-size=16 --no-memory-reducer \
//     --import=tsx bench/first-change-ab.ts $t 100000; done
// (session 21: the base's first change planned in 83-100 ms with ~6,600 page faults, the id arrays
// doubling; the next ones 0.3-1.6 ms.)
const root = process.argv[2]!;
const n = Number(process.argv[3] ?? 100000);
const { Compiler } = await import(`${root}/src/compile/compile.ts`);
const { buildPlan, releaseSlots } = await import(`${root}/src/plan/plan.ts`);
const { diffPlans } = await import(`${root}/src/plan/diff.ts`);
const { CapacityTracker } = await import(`${root}/src/plan/capacity.ts`);
const { snapshot, endpointChange, BENCH_CAPACITY, NODE_NAME } = await import(`${root}/bench/gen.ts`);
const { native } = await import(`${root}/src/dataplane/bpf/native/addon.ts`);
const { pressureGc } = await import(`${root}/src/util/heap-trim.ts`);
const { warmOneChange } = await import(`${root}/src/agent/warm.ts`);
const shape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
const CAP = { ...BENCH_CAPACITY, maglevSlots: 1 << 28 };
let snap = snapshot(shape);
const c = new Compiler({ nodeName: NODE_NAME, nodeIPs: ['192.168.50.2'] });
const tr = new CapacityTracker();
let r = c.compile(snap);
let fitted = tr.fit(r.state, CAP, () => new Set(), () => undefined);
let plan = buildPlan(fitted.state, undefined, { seed: 42, consumePrev: true, slots: true });
let prevState = fitted.state;
releaseSlots(plan, undefined);
pressureGc((l: 0 | 1 | 2) => native().memoryPressure(l))();
native().mallocTrim();
warmOneChange({ nodeName: NODE_NAME, nodeIPs: ['192.168.50.2'] }, 42, true, 48);
await new Promise((res) => setTimeout(res, 2000));
const out: unknown[] = [];
for (let k = 0; k < 5; k++) {
  const i = Math.floor(((k + 0.5) / 5) * n) % n;
  // a new pod address (a fresh backend), as a rolled pod gets
  const ch = endpointChange(snap, shape, i, 1 + (k % 3));
  const key = `bench/svc-${i}-abcde`;
  const sl = structuredClone(ch.snap.endpointSlices.get(key));
  sl.endpoints[1].addresses = [`10.${200 + k}.0.${1 + (i % 250)}`];
  ch.snap.endpointSlices.set(key, sl);
  snap = ch.snap;
  const f0 = process.resourceUsage().minorPageFault;
  const t0 = performance.now();
  r = c.compile(snap, ch.changed);
  fitted = tr.fit(r.state, CAP, () => new Set(), () => prevState);
  const t2 = performance.now();
  const next = buildPlan(fitted.state, plan, { seed: 42, consumePrev: true, slots: true });
  const t3 = performance.now();
  const ops = diffPlans(plan, next);
  const t4 = performance.now();
  releaseSlots(next, plan);
  plan = next; prevState = fitted.state;
  out.push({ k, ops: ops.length, compileFit: +(t2 - t0).toFixed(2), plan: +(t3 - t2).toFixed(2), diff: +(t4 - t3).toFixed(2), faults: process.resourceUsage().minorPageFault - f0 });
}
console.log(JSON.stringify({ root, changes: out }));
