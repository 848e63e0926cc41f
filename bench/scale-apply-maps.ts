// Where a first sync's apply goes at N Services x 10 endpoints, by map and batch (issue 10, the
// 100,000-Service row): the plan and diff built in process as scale-steps.ts builds them, then
// applyAsync into a fresh data plane (root, bpffs) with BpfMap's batch and fill methods wrapped to
// record each call's wall time, its count and the process's CPU and minor faults while it ran.
// The plan, diff and apply are timed together from the plan's start (wall, CPU, main thread), as
// the agent's first sync runs them; PREFILL=1 hands the plan's new tables to MapWriter.prefill as
// the agent does (onTables), PREFILL=0 not (run them alternately for an A/B).
//   N=100000 PREFILL=1 node --import=tsx --expose-gc bench/scale-apply-maps.ts
// DEFER=1 leaves the plan's chain to finishChain on the turn after the diff, as the agent's first
// sync did before session 29 (deferChain): chainMs, and chainEndMs from the plan's start (the apply's
// end is totalMs); DEFER=after on the turn after the apply's end, as it does since (alternate them).
// PROF=FILE writes a CPU profile (main thread) of the plan, diff and apply to FILE.
// HEAPPROF=FILE writes a sampling heap profile of the same stretch: every allocation (ALL=1: also
// those collected since, so by site what the step allocated; else what is still alive at its end).
// gc: V8's collections by step (plan, diff, apply; a GC of the chain's turn counts in the apply):
// count of scavenges and major GCs, their pauses on the main thread (ms), and the bytes the
// scavenges moved into the old generation (promoted: what outlived its first two scavenges).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { GCProfiler } from 'node:v8';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import { loadDataplane } from '../src/dataplane/bpf/loader.js';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan, finishChain } from '../src/plan/plan.js';
import { slimStore } from './apiserver-objects.js';
import { maglevSlotsFor } from './agent.bench.js';
import { NODE_IP, NODE_NAME } from './gen.js';
import type { PlanTable } from '../src/plan/types.js';

const N = Number(process.env.N ?? 10_000);
const store = slimStore({ services: N, endpointsPerService: 10, nodePortEvery: 10 });
const compiled = new Compiler({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] }).compile(store.view()).state;
const cap = { frontends: 1 << 20, backends: 1 << 23, slots: 1 << 26, frontendIds: 1 << 20, sourceRanges: 65536, maglevSlots: 1 << 28 };
const fitted = new CapacityTracker().fit(compiled, cap).state;
const prefill = process.env.PREFILL === '1';
const defer = process.env.DEFER === '1' || process.env.DEFER === 'after';
// DEFER=after: the chain's turn is set once the apply has ended, as the agent's full syncs do since session 29
const chainAfter = process.env.DEFER === 'after';
(globalThis as { gc?: () => void }).gc?.();

interface Row { calls: number; count: number; wallMs: number; cpuMs: number; faults: number; bytes?: number; whole?: number }
const rows = new Map<string, Row>();
const note = (key: string, count: number, t0: number, c0: NodeJS.CpuUsage, f0: number) => {
  const r = rows.get(key) ?? { calls: 0, count: 0, wallMs: 0, cpuMs: 0, faults: 0 };
  const c = process.cpuUsage(c0);
  r.calls++; r.count += count; r.wallMs += performance.now() - t0; r.cpuMs += (c.user + c.system) / 1000;
  r.faults += process.resourceUsage().minorPageFault - f0;
  rows.set(key, r);
};
// TRACE=1: each batch's start and end and the process's RSS (VmRSS, MiB) every 50 ms when it moved
// by 4 MiB or more, on stderr with ms from the plan's start: which write the RSS of an apply follows
const traceT0 = performance.now();
const rssMiB = () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'latin1'))![1]) / 1024);
const trace = (what: string) => { if (process.env.TRACE === '1') process.stderr.write(`${Math.round(performance.now() - traceT0)} ms ${what} rss ${rssMiB()}\n`); };
let lastRss = 0;
if (process.env.TRACE === '1') setInterval(() => { const r = rssMiB(); if (Math.abs(r - lastRss) >= 4) { lastRss = r; trace('rss'); } }, 50).unref();
let pressed = false;
const P = BpfMap.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
for (const name of ['updateBatchAsync', 'deleteManyAsync'] as const) {
  const f = P[name]!;
  P[name] = async function (this: BpfMap, ...a: unknown[]) {
    const t0 = performance.now(), c0 = process.cpuUsage(), f0 = process.resourceUsage().minorPageFault;
    // PRESSURE=<map>: the moderate pressure signal when that map's first batch starts (PRESSURE=1: at the diff's end)
    if (process.env.PRESSURE === this.name && !pressed) { pressed = true; const { native } = await import('../src/dataplane/bpf/native/addon.js'); native().memoryPressure(1); native().memoryPressure(0); }
    trace(`${this.name} ${name} start ${a[name === 'updateBatchAsync' ? 2 : 1]}`);
    try { return await f.apply(this, a); } finally {
      trace(`${this.name} ${name} end`);
      note(`${this.name} ${name}`, a[name === 'updateBatchAsync' ? 2 : 1] as number, t0, c0, f0);
      // the batch's buffers: bytes, and how many own their whole ArrayBuffer
      const bufs = (name === 'updateBatchAsync' ? [a[0], a[1]] : [a[0]]) as Buffer[];
      const r = rows.get(`${this.name} ${name}`)!;
      r.bytes = (r.bytes ?? 0) + bufs.reduce((x, b) => x + b.byteLength, 0);
      r.whole = (r.whole ?? 0) + bufs.filter((b) => b.byteOffset === 0 && b.buffer.byteLength === b.byteLength).length;
    }
  };
}
for (const name of ['writeMmap', 'maglevFillStart'] as const) {
  const f = P[name]!;
  P[name] = function (this: BpfMap, ...a: unknown[]) {
    const t0 = performance.now(), c0 = process.cpuUsage(), f0 = process.resourceUsage().minorPageFault;
    try {
      const r = f.apply(this, a);
      if (name === 'maglevFillStart') {
        // the job's wait: the main thread's join of the background fill
        const job = r as { wait(): unknown; step(): boolean };
        const w = job.wait.bind(job), s = job.step.bind(job);
        job.wait = () => { const t1 = performance.now(), c1 = process.cpuUsage(), f1 = process.resourceUsage().minorPageFault; try { return w(); } finally { note(`${this.name} fill wait (join)`, 0, t1, c1, f1); } };
        job.step = () => { const t1 = performance.now(), c1 = process.cpuUsage(), f1 = process.resourceUsage().minorPageFault; try { return s(); } finally { note(`${this.name} fill step (main thread)`, 1, t1, c1, f1); } };
      }
      return r;
    } finally { note(`${this.name} ${name}`, 1, t0, c0, f0); }
  };
}

const pin = `/sys/fs/bpf/kbp-apply-maps-${process.pid}-${Date.now().toString(36)}`;
const dir = mkdtempSync(`${tmpdir()}/kbp-apply-maps-`);
try {
  const slots = maglevSlotsFor(N);
  const d = loadDataplane({ pinRoot: pin, objectPath: fileURLToPath(new URL('../bpf/kbp.bpf.o', import.meta.url)),
    state: AgentStateFile.forPinRoot(pin, `${dir}/state.json`), maps: { recycleTables: true },
    ...(slots !== undefined && { mapSizes: { lb_maglev_slots: slots } }) });
  try {
    d.maps.writeConfig({ hashSeed: 1, snatMark: 0, flags: 0 });
    const prof = process.env.PROF ? new Session() : undefined;
    if (prof) {
      prof.connect();
      await prof.post('Profiler.enable');
      await prof.post('Profiler.setSamplingInterval', { interval: 500 });
      await prof.post('Profiler.start');
    }
    const heapProf = process.env.HEAPPROF ? new Session() : undefined;
    if (heapProf) {
      heapProf.connect();
      const all = process.env.ALL === '1';
      await heapProf.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: all, includeObjectsCollectedByMinorGC: all });
    }
    const gcs: { start: number; ms: number; major: boolean }[] = [];
    const obs = new PerformanceObserver((l) => {
      for (const e of l.getEntries()) gcs.push({ start: e.startTime, ms: e.duration, major: (((e as unknown as { detail: { kind: number } }).detail).kind & perfConstants.NODE_PERFORMANCE_GC_MAJOR) !== 0 });
    });
    obs.observe({ entryTypes: ['gc'] });
    const gcProf = new GCProfiler();
    gcProf.start();
    // MEM=1: memory by kind (MiB) at each step's end: V8's heap used and committed, external
    // (ArrayBuffers and the addon's), and RSS (what a first sync's peak is made of)
    const mem: Record<string, string> = {};
    const memAt = (step: string) => {
      if (process.env.MEM !== '1') return;
      const u = process.memoryUsage(), M = (x: number) => Math.round(x / 2 ** 20);
      mem[step] = `heap ${M(u.heapUsed)} (committed ${M(u.heapTotal)}), external ${M(u.external)} (ArrayBuffers ${M(u.arrayBuffers)}), rss ${M(u.rss)}`;
    };
    memAt('start');
    const t0 = performance.now(), c0 = process.cpuUsage(), m0 = process.threadCpuUsage(), f0 = process.resourceUsage().minorPageFault;
    let started = false;
    const plan = buildPlan(fitted, undefined, { seed: 1, consumePrev: true, deferChain: defer, ...(prefill && { onTables: (tables: readonly PlanTable[]) => { started = d.maps.prefill(tables); } }) });
    const t1 = performance.now(), m1 = process.threadCpuUsage();
    memAt('plan');
    trace('plan end');
    let chainMs = 0, chainEnd = 0;
    const runChain = () => { const c0 = performance.now(); finishChain(plan); chainEnd = performance.now(); chainMs = chainEnd - c0; };
    if (defer && !chainAfter) setImmediate(runChain);
    const ops = diffPlans(undefined, plan);
    const t2 = performance.now(), m2 = process.threadCpuUsage();
    memAt('diff');
    trace('diff end');
    // PRESSURE=1: V8's moderate memory pressure signal here (an incremental full GC started, marked
    // concurrently while the apply waits for the kernel), as the agent's first sync does
    if (process.env.PRESSURE === '1') { const { native } = await import('../src/dataplane/bpf/native/addon.js'); native().memoryPressure(1); native().memoryPressure(0); }
    await d.maps.applyAsync(ops);
    trace('apply end');
    const t3 = performance.now();
    if (chainAfter) setImmediate(runChain);
    memAt('apply');
    if (defer && !chainEnd) await new Promise((r) => setImmediate(r));
    memAt('chain');
    if (process.env.MEM === '1') {
      (globalThis as { gc?: () => void }).gc?.(); await new Promise((r) => setTimeout(r, 300)); memAt('live (a full GC after)');
      // what the ops alone hold (the agent drops them after the apply)
      const opCount = ops.length;
      (ops as unknown[]).length = 0;
      (globalThis as { gc?: () => void }).gc?.(); await new Promise((r) => setTimeout(r, 300)); memAt(`live without the ${opCount} ops`);
    }
    const c = process.cpuUsage(c0), m = process.threadCpuUsage(m0);
    const gcRun = gcProf.stop();
    if (heapProf) {
      const { profile } = await heapProf.post('HeapProfiler.getSamplingProfile');
      await heapProf.post('HeapProfiler.stopSampling');
      writeFileSync(process.env.HEAPPROF!, JSON.stringify(profile));
      heapProf.disconnect();
    }
    await new Promise((r) => setImmediate(r));
    obs.disconnect();
    const gcStep = (from: number, to: number) => {
      const w = gcs.filter((g) => g.start >= from && g.start < to);
      const minor = w.filter((g) => !g.major), major = w.filter((g) => g.major);
      return `${minor.length} scavenges ${Math.round(minor.reduce((s, g) => s + g.ms, 0))} ms, ${major.length} major ${Math.round(major.reduce((s, g) => s + g.ms, 0))} ms`;
    };
    // a scavenge's promoted bytes: the old generation's growth across it
    const oldUsed = (h: { heapSpaceStatistics: { spaceName: string; spaceUsedSize: number }[] }) =>
      h.heapSpaceStatistics.filter((x) => x.spaceName === 'old_space' || x.spaceName === 'large_object_space').reduce((s, x) => s + x.spaceUsedSize, 0);
    const stats = (gcRun?.statistics ?? []) as unknown as { gcType: string; beforeGC: Parameters<typeof oldUsed>[0]; afterGC: Parameters<typeof oldUsed>[0] }[];
    let promoted = 0;
    for (const g of stats) if (g.gcType === 'Scavenge') promoted += Math.max(0, oldUsed(g.afterGC) - oldUsed(g.beforeGC));
    if (prof) {
      const { profile } = await prof.post('Profiler.stop');
      writeFileSync(process.env.PROF!, JSON.stringify(profile));
      prof.disconnect();
    }
    const out: Record<string, unknown> = { N, prefill, defer, ...(defer && { chainMs: Math.round(chainMs), chainEndMs: Math.round(chainEnd - t0) }), started, ops: ops.length, planMs: Math.round(t1 - t0), diffMs: Math.round(t2 - t1), applyMs: Math.round(t3 - t2),
      totalMs: Math.round(t3 - t0),
      // the main thread's CPU by step
      planMainMs: Math.round((m1.user + m1.system - m0.user - m0.system) / 1000), diffMainMs: Math.round((m2.user + m2.system - m1.user - m1.system) / 1000),
      applyMainMs: Math.round((m.user + m.system) / 1000 - (m2.user + m2.system - m0.user - m0.system) / 1000), cpuMs: Math.round((c.user + c.system) / 1000), mainCpuMs: Math.round((m.user + m.system) / 1000),
      gcPlan: gcStep(t0, t1), gcDiff: gcStep(t1, t2), gcApply: gcStep(t2, t3 + 1e9), promotedMiB: Math.round(promoted / 2 ** 20),
      faults: process.resourceUsage().minorPageFault - f0, load: (await import('node:os')).loadavg()[0] };
    Object.assign(out, mem);
    if (process.env.MAPS === '1') for (const [k, r] of [...rows].sort((x, y) => y[1].wallMs - x[1].wallMs)) out[k] = `${r.calls} calls, ${r.count} entries${r.bytes !== undefined ? `, ${(r.bytes / 2 ** 20).toFixed(1)} MiB in buffers (${r.whole} own their ArrayBuffer)` : ''}, wall ${r.wallMs.toFixed(0)} ms, cpu ${r.cpuMs.toFixed(0)} ms, faults ${r.faults}`;
    console.log(JSON.stringify(out));
  } finally {
    d.object.close();
  }
} finally {
  rmSync(pin, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}
