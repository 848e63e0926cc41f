// A day of endpoint churn, in process, to find the one change that pays for a whole table (issue 10:
// one change < 5 ms flat from 100 to 100,000 Services, p99). Every Map a change deletes from and
// inserts into is copied whole by V8 every ~(capacity - n) inserts (util/map-room.ts): at 100,000
// Services that is one change in ~28,000, then one in ~130,000, each 50-200 ms. So: a full compile,
// fit and plan of N Services (and, MAPS=1, a full apply into freshly loaded maps: root and bpffs),
// the agent's room-making after it, then CHANGES endpoint changes, each replacing one endpoint of a
// Service picked at random by a fresh pod address (a new backend in, an old one out, a new Maglev
// table, as a rolled pod brings), through the agent's one-change path: compile with the change
// record, fit, buildPlan over the previous plan (consumePrev), diffPlans, and the apply (MAPS=1).
// Per change: the wall time of each step and the minor page faults; out: p50, p99, p99.9 and max of
// the total, the worst changes with their steps, faults and the GC time inside them (a GC's pause
// is not a Map's copy: it is told apart), and a digest of the last plan against a full build of the
// last state (the churn must not change what the plan says). Takes the tree to load the code from,
// so a base tree (with its node_modules) runs the same script, interleaved:
//   for t in /tmp/p24/basetree "$PWD"; do node --import=tsx bench/churn.ts $t 100000 40000; done
// (KBP_CHURN_SEED: the changes' random seed; KBP_CHURN_WORST: how many worst changes to list)
// KBP_CHURN_KIND=services churns Services instead: changes alternate between a Service created (its
// Service and its slice in one change, a fresh name, ClusterIP and pods) and one picked at random
// deleted, so the count stays about N and every per-frontend Map deletes and inserts keys that never
// come back (an endpoint change replaces a frontend under its key: those Maps never grow). The
// output then splits the figures by kind.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';

const root = process.argv[2]!;
const n = Number(process.argv[3] ?? 30000);
const changes = Number(process.argv[4] ?? 10000);
const withMaps = process.env.MAPS === '1';
const worstN = Number(process.env.KBP_CHURN_WORST ?? 8);
const kind = process.env.KBP_CHURN_KIND ?? 'endpoints';
if (kind !== 'endpoints' && kind !== 'services') throw new Error(`KBP_CHURN_KIND: endpoints or services, not ${kind}`);
const { Compiler } = await import(`${root}/src/compile/compile.ts`);
const { buildPlan, releaseSlots } = await import(`${root}/src/plan/plan.ts`);
const { diffPlans } = await import(`${root}/src/plan/diff.ts`);
const { CapacityTracker } = await import(`${root}/src/plan/capacity.ts`);
const { snapshot, endpointSlice, service, BENCH_CAPACITY, NODE_NAME } = await import(`${root}/bench/gen.ts`);
const SEED = 42;
const shape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
const CAP = { ...BENCH_CAPACITY, maglevSlots: 1 << 28 };

// a small PRNG (mulberry32): the same changes on both trees
let rs = Number(process.env.KBP_CHURN_SEED ?? 7) >>> 0;
const rand = (): number => {
  rs = (rs + 0x6d2b79f5) >>> 0;
  let t = rs;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// GC pauses by start and length: a change's GC time is the pauses' overlap with its window
const gcs: { start: number; ms: number }[] = [];
const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) gcs.push({ start: e.startTime, ms: e.duration }); });
obs.observe({ entryTypes: ['gc'] });

const pinRoot = withMaps ? mkdtempSync('/sys/fs/bpf/kbp-churn-') : '';
const tmp = withMaps ? mkdtempSync('/tmp/kbp-churn-') : '';
let dp: { maps: { apply(ops: unknown): void; writeConfig(c: unknown): void; reserveRoom?(): number }; object: { close(): void } } | undefined;
try {
  if (withMaps) {
    const { AgentStateFile } = await import(`${root}/src/dataplane/bpf/agent-state-file.ts`);
    const L = await import(`${root}/src/dataplane/bpf/layout.ts`);
    const { loadDataplane } = await import(`${root}/src/dataplane/bpf/loader.ts`);
    dp = loadDataplane({ pinRoot, state: AgentStateFile.forPinRoot(pinRoot, join(tmp, 'state.json')), mountBpffs: false, maps: { recycleTables: true } });
    dp!.maps.writeConfig({ hashSeed: SEED, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
  }
  const snap = snapshot(shape);
  const c = new Compiler({ nodeName: NODE_NAME, nodeIPs: ['192.168.50.2'] });
  const tr = new CapacityTracker();
  const t00 = performance.now();
  let fitted = tr.fit(c.compile(snap).state, CAP, () => new Set(), () => undefined);
  let plan = buildPlan(fitted.state, undefined, { seed: SEED, consumePrev: true, slots: true });
  dp?.maps.apply(diffPlans(undefined, plan));
  releaseSlots(plan, undefined);
  let prevState = fitted.state;
  // the agent's warm-up after its first sync makes room in the compiler's and the writer's Maps
  const room = (c.reserveRoom?.() ?? 0) + (dp?.maps.reserveRoom?.() ?? 0);
  const fullMs = performance.now() - t00;

  // each Service's slice as the churn left it; a fresh pod address per change (10.128.0.0/9 and up: no bench pod's)
  const slices = new Map<number, unknown>();
  let podSerial = 0;
  const freshPod = (): string => { const s = podSerial++; return `10.${128 + ((s >> 16) & 127)}.${(s >> 8) & 255}.${s & 255}`; };
  const begin = new Float64Array(changes), total = new Float64Array(changes), cpu = new Float64Array(changes), faults = new Int32Array(changes), gcIn = new Float64Array(changes);
  const steps = { compile: new Float64Array(changes), fit: new Float64Array(changes), plan: new Float64Array(changes), diff: new Float64Array(changes), apply: new Float64Array(changes) };
  // the page faults of each step (which step took the fresh pages of a slow change)
  const stepFaults = { compile: new Int32Array(changes), fit: new Int32Array(changes), plan: new Int32Array(changes), diff: new Int32Array(changes), apply: new Int32Array(changes) };
  const created = new Uint8Array(changes);
  // Service churn: the Services alive (by index, swap-removed), the next fresh index
  const live = Array.from({ length: n }, (_, i) => i);
  let nextSvc = n;
  const faultsNow = (): number => process.resourceUsage().minorPageFault;
  const tChurn = performance.now();
  for (let k = 0; k < changes; k++) {
    let changed;
    if (kind === 'services') {
      if (k % 2 === 0) {
        const i = nextSvc++;
        live.push(i);
        snap.services.set(`bench/svc-${i}`, service(i, shape));
        snap.endpointSlices.set(`bench/svc-${i}-abcde`, endpointSlice(i, shape));
        changed = { Service: new Set([`bench/svc-${i}`]), EndpointSlice: new Set([`bench/svc-${i}-abcde`]), Node: new Set() };
        created[k] = 1;
      } else {
        const at = Math.floor(rand() * live.length), i = live[at]!;
        live[at] = live[live.length - 1]!;
        live.pop();
        snap.services.delete(`bench/svc-${i}`);
        snap.endpointSlices.delete(`bench/svc-${i}-abcde`);
        changed = { Service: new Set([`bench/svc-${i}`]), EndpointSlice: new Set([`bench/svc-${i}-abcde`]), Node: new Set() };
      }
    } else {
      const i = Math.floor(rand() * n);
      const key = `bench/svc-${i}-abcde`;
      const prevSl = (slices.get(i) ?? endpointSlice(i, shape)) as { endpoints: { addresses: string[] }[] };
      const sl = structuredClone(prevSl);
      sl.endpoints[Math.floor(rand() * sl.endpoints.length)]!.addresses = [freshPod()];
      slices.set(i, sl);
      // the slice map changed in place (a copy of 100,000 entries per change would be most of the bench's time)
      snap.endpointSlices.set(key, sl);
      changed = { Service: new Set(), EndpointSlice: new Set([key]), Node: new Set() };
    }
    const f0 = faultsNow();
    const u0 = process.threadCpuUsage();
    const t0 = performance.now();
    const r = c.compile(snap, changed);
    const tc = performance.now();
    const fc = faultsNow();
    const tcb = performance.now();
    fitted = tr.fit(r.state, CAP, () => new Set(), () => prevState);
    const t1 = performance.now();
    const f1 = faultsNow();
    const t1b = performance.now();
    const next = buildPlan(fitted.state, plan, { seed: SEED, consumePrev: true, slots: true });
    const t2 = performance.now();
    const f2 = faultsNow();
    const t2b = performance.now();
    const ops = diffPlans(plan, next);
    const t3 = performance.now();
    const f3 = faultsNow();
    const t3b = performance.now();
    dp?.maps.apply(ops);
    const t4 = performance.now();
    const f4 = faultsNow();
    releaseSlots(next, plan);
    plan = next; prevState = fitted.state;
    const u1 = process.threadCpuUsage();
    cpu[k] = (u1.user + u1.system - u0.user - u0.system) / 1000;
    faults[k] = f4 - f0;
    stepFaults.compile[k] = fc - f0; stepFaults.fit[k] = f1 - fc; stepFaults.plan[k] = f2 - f1; stepFaults.diff[k] = f3 - f2; stepFaults.apply[k] = f4 - f3;
    // (the fault reads between steps are left out of the steps' and the total's time)
    total[k] = (tc - t0) + (t1 - tcb) + (t2 - t1b) + (t3 - t2b) + (t4 - t3b);
    steps.compile[k] = tc - t0; steps.fit[k] = t1 - tcb; steps.plan[k] = t2 - t1b; steps.diff[k] = t3 - t2b; steps.apply[k] = t4 - t3b;
    begin[k] = t0;
    // a turn of the event loop, as the agent's changes get: WeakRefs read in a job live to its end
    // (and FinalizationRegistry callbacks wait for one), so one synchronous loop kept every state
    await new Promise((res) => setImmediate(res));
  }
  const churnS = (performance.now() - tChurn) / 1000;
  // the GC observer reports after the fact: let it catch up before the last changes' GC time is read
  await new Promise((res) => setTimeout(res, 50));
  gcs.sort((a, b) => a.start - b.start);
  for (let k = 0, g = 0; k < changes; k++) {
    const a = begin[k]!, b = a + total[k]!;
    while (g < gcs.length && gcs[g]!.start + gcs[g]!.ms < a) g++;
    for (let j = g; j < gcs.length && gcs[j]!.start < b; j++) gcIn[k] = gcIn[k]! + Math.min(b, gcs[j]!.start + gcs[j]!.ms) - Math.max(a, gcs[j]!.start);
  }

  // the plan after the churn against a full build of the same state
  // ids aside (a full build numbers them afresh): each frontend with its backends' and table members' addresses
  const digest = (p: { frontends: Map<string, any>; backends: Map<number, any>; tables: Map<number, any> }): string => {
    const h = createHash('sha256');
    const be = (id: number): string => { const b = p.backends.get(id); return b ? `${b.address}|${b.port}|${b.protocol}|${b.terminating}|${b.local}` : `missing ${id}`; };
    for (const k of [...p.frontends.keys()].sort()) {
      const f = p.frontends.get(k);
      const t = f.tableId ? p.tables.get(f.tableId) : undefined;
      const { id: _id, backendIds, terminatingIds, tableId: _t, affinityGroup: _g, ...rest } = f;
      h.update(`${k} ${JSON.stringify(rest)} ${backendIds.map(be)} ${terminatingIds.map(be)} ${t ? `${t.m} ${t.members.map(be)}` : '-'}\n`);
    }
    h.update(`${p.frontends.size} ${p.backends.size} ${p.tables.size}`);
    return h.digest('hex').slice(0, 16);
  };
  const ours = digest(plan);
  const sorted = Float64Array.from(total).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
  const r3 = (x: number): number => Math.round(x * 1000) / 1000;
  const order = Array.from(total.keys()).sort((a, b) => total[b]! - total[a]!);
  const stepsOf = (k: number) => ({
    compile: r3(steps.compile[k]!), fit: r3(steps.fit[k]!), plan: r3(steps.plan[k]!), diff: r3(steps.diff[k]!), ...(withMaps && { apply: r3(steps.apply[k]!) }),
    stepFaults: [stepFaults.compile[k], stepFaults.fit[k], stepFaults.plan[k], stepFaults.diff[k], ...(withMaps ? [stepFaults.apply[k]] : [])].join('/'),
  });
  const worst = order.slice(0, worstN).map((k) => ({
    k, ...(kind === 'services' && { created: created[k] === 1 }), ms: r3(total[k]!), cpuMs: r3(cpu[k]!), ...stepsOf(k), faults: faults[k], gcMs: r3(gcIn[k]!),
  }));
  // Service churn: the figures of creations and deletions apart
  const byKind = kind === 'services' ? Object.fromEntries([1, 0].map((c) => {
    const ks = Array.from(total.keys()).filter((k) => created[k] === c);
    const w = Float64Array.from(ks.map((k) => total[k]!)).sort(), u = Float64Array.from(ks.map((k) => cpu[k]!)).sort();
    const q = (a: Float64Array, x: number): number => r3(a[Math.min(a.length - 1, Math.max(0, Math.ceil(x * a.length) - 1))]!);
    // each step's p50 / p99 / p99.9 / max: which step a kind's slow changes are slow in
    const stepP50 = Object.fromEntries(Object.entries(steps).map(([name, a]) => {
      const v = Float64Array.from(ks.map((k) => a[k]!)).sort();
      return [name, `${q(v, 0.5)} / ${q(v, 0.99)} / ${q(v, 0.999)} / ${q(v, 1)}`];
    }));
    return [c ? 'created' : 'deleted', { count: ks.length, p50: q(w, 0.5), p99: q(w, 0.99), p999: q(w, 0.999), max: q(w, 1), cpuP99: q(u, 0.99), cpuP999: q(u, 0.999), cpuMax: q(u, 1), stepP50 }];
  })) : undefined;
  // the worst changes with no GC inside them, and the worst by this thread's CPU (a change that
  // waited for a core is slow in wall time only)
  const noGc = order.filter((k) => gcIn[k] === 0);
  const byCpu = Array.from(cpu.keys()).sort((a, b) => cpu[b]! - cpu[a]!).slice(0, 5).map((k) => ({ k, cpuMs: r3(cpu[k]!), ms: r3(total[k]!), ...stepsOf(k), faults: faults[k], gcMs: r3(gcIn[k]!) }));
  // the heap held after the churn (node --expose-gc), so the two trees' garbage does not count
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heapMiB = Math.round(process.memoryUsage().heapUsed / 1048576);
  const fullPlan = buildPlan(prevState, undefined, { seed: SEED, slots: false });
  const full = digest(fullPlan);
  console.log(JSON.stringify({
    root, kind, n, changes, maps: withMaps, load: (await import('node:os')).loadavg()[0], room, fullSyncS: r3(fullMs / 1000), churnS: r3(churnS),
    p50: r3(at(0.5)), p99: r3(at(0.99)), p999: r3(at(0.999)), max: r3(sorted[sorted.length - 1]!),
    // (no CPU p50: this thread's CPU clock moves in steps here, most changes read 0)
    cpuP99: r3(Float64Array.from(cpu).sort()[Math.ceil(0.99 * changes) - 1]!),
    cpuP999: r3(Float64Array.from(cpu).sort()[Math.ceil(0.999 * changes) - 1]!), cpuMax: r3(Math.max(...cpu)),
    // the first change apart: it runs code and counts (the compiler's claims) that the agent's warm-up runs before it
    cpuMaxAfterFirst: r3(Math.max(0, ...cpu.subarray(1))), wallMaxAfterFirst: r3(Math.max(0, ...total.subarray(1))),
    over5ms: sorted.filter((x) => x > 5).length, over20ms: sorted.filter((x) => x > 20).length,
    noGcMax: r3(total[noGc[0]!] ?? 0), noGcWorst: noGc.slice(0, 5).map((k) => ({ k, ms: r3(total[k]!), cpuMs: r3(cpu[k]!), faults: faults[k] })),
    ...(byKind && { byKind }), worst, worstCpu: byCpu, heapMiB, digestSame: ours === full, rssMiB: Math.round(process.memoryUsage().rss / 1048576),
  }));
} finally {
  obs.disconnect();
  dp?.object.close();
  if (withMaps) {
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
}
