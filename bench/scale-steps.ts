// The first sync's steps at N Services x 10 endpoints without the kernel, as the agent runs them
// from the API server: LIST pages of 500 parsed from JSON and slimmed into the store (the kube
// source's path), compile, capacity fit, buildPlan, diff (the first sync's ops), releaseSlots. Wall
// and CPU ms per step and what it left live, to find what grows faster than N (issue 10's
// 100,000-Service row).
//   N=30000 node --import=tsx --expose-gc bench/scale-steps.ts   (one JSON line)
// Per step: <step>HeapMiB is the V8 heap in use after a full GC, <step>ExtMiB memory outside it
// (ArrayBuffers: the plan's Maglev slab), both as left after the step; <step>GarbageMiB what that
// GC freed (the step's garbage that young-generation GCs had not already taken). A released ArrayBuffer leaves
// the external figure only when V8's sweeper has run: the reading waits a turn of the loop for it.
// With ONE_GC=1 there is no GC between the steps: the agent's case, where the garbage of the whole
// first sync meets one full GC after it (agent.ts onSynced -> heap-trim.ts). Then gcMs is that GC's
// time and garbageMiB what it freed.
// With APPLY=1 (root, bpffs; APPLY_ASYNC=1 through applyAsync, as the agent writes) the first sync's ops are also written to a fresh data plane (the real
// object loaded under a pin root of its own, removed afterwards): the apply step, between diff and
// release; its CPU includes the Maglev fill wherever the build leaves it. peakRssMiB is the process's
// maximum resident set (mapped pages of lb_maglev_slots count while mapped). Beyond ~10,000 Services
// the Maglev array is sized at load for N as the scale bench sizes the agent's (--bpf-map-max);
// BPF_OBJECT names an object of another build instead (e.g. a larger -DLB_MAGLEV_SLOTS_MAX).
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import { loadDataplane } from '../src/dataplane/bpf/loader.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan, releaseSlots } from '../src/plan/plan.js';
import { slimStore } from './apiserver-objects.js';
import { maglevSlotsFor } from './agent.bench.js';
import { NODE_IP, NODE_NAME, type ClusterShape } from './gen.js';

const N = Number(process.env.N ?? 10_000);
const oneGc = process.env.ONE_GC === '1';
// APPLY_ASYNC=1: the apply as the agent runs it (applyAsync: batches on libuv's pool, the main thread's CPU without them)
const applyAsync = process.env.APPLY_ASYNC === '1';
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const MiB = 2 ** 20;
const out: Record<string, number> = { N };
const settle = async (): Promise<NodeJS.MemoryUsage> => {
  gc();
  await new Promise((r) => setTimeout(r, 50));
  gc();
  return process.memoryUsage();
};
const step = async <T>(name: string, f: () => T | Promise<T>): Promise<T> => {
  const c0 = process.cpuUsage(), m0 = process.threadCpuUsage(), t0 = performance.now();
  const v = await f();
  out[`${name}Ms`] = Math.round(performance.now() - t0);
  const c = process.cpuUsage(c0), mc = process.threadCpuUsage(m0);
  out[`${name}CpuMs`] = Math.round((c.user + c.system) / 1000);
  // the main thread's share (the rest: GC helpers, the addon's fill and batch threads)
  out[`${name}MainCpuMs`] = Math.round((mc.user + mc.system) / 1000);
  if (!oneGc) {
    const raw = process.memoryUsage().heapUsed;
    const m = await settle();
    out[`${name}GarbageMiB`] = Math.round((raw - m.heapUsed) / MiB);
    out[`${name}HeapMiB`] = Math.round(m.heapUsed / MiB);
    out[`${name}ExtMiB`] = Math.round(m.external / MiB);
  }
  process.stderr.write(`[scale-steps] ${N}: ${name} ${out[`${name}Ms`]} ms (cpu ${out[`${name}CpuMs`]}, main thread ${out[`${name}MainCpuMs`]})` +
    (oneGc ? '\n' : `, heap ${out[`${name}HeapMiB`]} MiB, external ${out[`${name}ExtMiB`]} MiB\n`));
  return v;
};
// PROF=DIR: CPU profiles of plan + diff and of the apply (not of the load: the profiler's signals
// make the verifier give up with EAGAIN) written there
const prof = process.env.PROF ? new Session() : undefined;
if (prof) {
  prof.connect();
  await prof.post('Profiler.enable');
}
const profile = async (start: boolean, name = ''): Promise<void> => {
  if (!prof) return;
  if (start) {
    await prof.post('Profiler.start');
    return;
  }
  const { profile: p } = await prof.post('Profiler.stop');
  writeFileSync(`${process.env.PROF}/scale-steps-${N}-${name}.cpuprofile`, JSON.stringify(p));
};
const store = await step('store', () => slimStore(shape));
const compiler = new Compiler({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] });
const compiled = await step('compile', () => compiler.compile(store.view()).state);
const cap = { frontends: 1 << 20, backends: 1 << 23, slots: 1 << 26, frontendIds: 1 << 20, sourceRanges: 65536, maglevSlots: 1 << 28 };
const ct = new CapacityTracker();
const fitted = await step('fit', () => ct.fit(compiled, cap).state);
await profile(true);
const plan = await step('plan', () => buildPlan(fitted, undefined, { seed: 1, consumePrev: true }));
const ops = await step('diff', () => diffPlans(undefined, plan));
await profile(false, 'plan-diff');
out.ops = ops.length;
if (process.env.APPLY === '1') {
  const pin = `/sys/fs/bpf/kbp-scale-steps-${process.pid}-${Date.now().toString(36)}`;
  const dir = mkdtempSync(`${tmpdir()}/kbp-scale-steps-`);
  try {
    // BPF_OBJECT: an object built with a larger -DLB_MAGLEV_SLOTS_MAX (the default holds ~10,000 tables)
    // the Maglev array sized for N at load, as the scale bench runs the agent (--bpf-map-max)
    const slots = maglevSlotsFor(N);
    const d = loadDataplane({ pinRoot: pin, objectPath: process.env.BPF_OBJECT ?? fileURLToPath(new URL('../bpf/kbp.bpf.o', import.meta.url)),
      state: AgentStateFile.forPinRoot(pin, `${dir}/state.json`), maps: { recycleTables: true },
      ...(slots !== undefined && !process.env.BPF_OBJECT && { mapSizes: { lb_maglev_slots: slots } }) });
    try {
      d.maps.writeConfig({ hashSeed: 1, snatMark: 0, flags: 0 });
      await profile(true);
      const res = await step('apply', () => (applyAsync ? d.maps.applyAsync(ops) : d.maps.apply(ops)));
      await profile(false, 'apply');
      out.tables = res.tables;
    } finally {
      d.object.close();
    }
  } finally {
    rmSync(pin, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}
ops.length = 0;
await step('release', () => releaseSlots(plan));
if (oneGc) {
  const before = process.memoryUsage();
  const t0 = performance.now();
  gc();
  out.gcMs = Math.round(performance.now() - t0);
  const m = await settle();
  out.garbageMiB = Math.round((before.heapUsed - m.heapUsed) / MiB);
  out.heapMiB = Math.round(m.heapUsed / MiB);
  out.extMiB = Math.round(m.external / MiB);
}
out.rssMiB = Math.round(process.memoryUsage().rss / MiB);
// the process's peak: where the plan held a Maglev slab, it and the mapping the apply copied it into met here
out.peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
void store; void plan; void fitted;
console.log(JSON.stringify(out));
