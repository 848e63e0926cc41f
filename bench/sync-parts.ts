// Where a full sync's apply (and plan) time goes, by part: the sync bench's full sync at N Services
// (bench/sync-full-steps.ts), with every native call of the apply timed (V8's cpuprofile labels
// addon calls by a wrong symbol): batch updates per map, the copies into lb_maglev_slots, the Maglev
// fill. Per part: wall ms and main-thread CPU ms, mean over the reps after the first (warm); the
// apply's JavaScript is its main-thread CPU less the native calls'.
//   N=10000 REPS=4 node --import=tsx bench/sync-parts.ts     (root, bpffs; one JSON line)
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Compiler } from '../src/compile/compile.js';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import * as L from '../src/dataplane/bpf/layout.js';
import { loadDataplane } from '../src/dataplane/bpf/loader.js';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';
import { MapWriter } from '../src/dataplane/bpf/map-writer.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan } from '../src/plan/plan.js';
import { findAddon } from '../src/util/addon-path.js';
import { NODE_NAME, snapshot } from './gen.js';

const N = Number(process.env.N ?? 10_000);
const REPS = Number(process.env.REPS ?? 4);
const SEED = 0x6b627078;
const tcpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const pcpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
let parts: Record<string, { ms: number; cpu: number; n: number }> = {};
let depth = 0;
function timed<T>(name: string, f: () => T): T {
  // only the outermost call counts (updateBatch's per-entry fallback calls update)
  if (depth) return f();
  depth++;
  const t0 = performance.now(), c0 = tcpu();
  try {
    return f();
  } finally {
    depth--;
    const p = (parts[name] ??= { ms: 0, cpu: 0, n: 0 });
    p.ms += performance.now() - t0;
    p.cpu += tcpu() - c0;
    p.n++;
  }
}
for (const m of ['updateBatch', 'writeMmap', 'deleteMany'] as const) {
  const orig = BpfMap.prototype[m] as (...a: unknown[]) => unknown;
  (BpfMap.prototype as any)[m] = function (this: BpfMap, ...a: unknown[]) {
    return timed(`${m} ${this.name}`, () => orig.apply(this, a));
  };
}
// the Maglev fill on background threads (BpfMap.maglevFillStart): its start, and the join's share on the
// main thread (chunks taken by step(), then the wait for the threads' last chunks)
if (typeof (BpfMap.prototype as any).maglevFillStart === 'function') {
  const start = (BpfMap.prototype as any).maglevFillStart as (...a: unknown[]) => { step(): boolean; wait(): void };
  (BpfMap.prototype as any).maglevFillStart = function (this: BpfMap, ...a: unknown[]) {
    const job = timed('fill job start', () => start.apply(this, a));
    return { step: () => timed('fill job step', () => job.step()), wait: () => timed('fill job wait', () => job.wait()) };
  };
}
// the apply's JavaScript parts that are plain calls (generators would time only their creation)
for (const [proto, names] of [[MapWriter.prototype, ['feFilterChange', 'syncMembers', 'syncFeFilter', 'loadRegions', 'planRecycling']], [AgentStateFile.prototype, ['setFrontend', 'save']]] as const) {
  for (const m of names) {
    const orig = (proto as any)[m] as ((...a: unknown[]) => unknown) | undefined;
    if (typeof orig !== 'function') continue;
    (proto as any)[m] = function (this: unknown, ...a: unknown[]) {
      return timed(`js ${m}`, () => orig.apply(this, a));
    };
  }
}
const { found } = findAddon('kbp_maglev.node', 'KBP_MAGLEV_ADDON', new URL('../src/plan/maglev-native.ts', import.meta.url).href);
if (found) {
  const addon = createRequire(import.meta.url)(found) as { fill: (...a: unknown[]) => void };
  const fill = addon.fill;
  addon.fill = (...a: unknown[]) => timed('maglev fill', () => fill(...a));
}

const snap = snapshot({ services: N, endpointsPerService: 10, nodePortEvery: 10 });
const state = new Compiler({ nodeName: NODE_NAME }).compile(snap).state;
const reps: Record<string, number>[] = [];
for (let rep = 0; rep < REPS; rep++) {
  const pinRoot = mkdtempSync('/sys/fs/bpf/kbp-sync-parts-');
  const tmp = mkdtempSync('/tmp/kbp-sync-parts-');
  try {
    const d = loadDataplane({ pinRoot, state: AgentStateFile.forPinRoot(pinRoot, join(tmp, 'state.json')), mountBpffs: false });
    try {
      d.maps.writeConfig({ hashSeed: SEED, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
      const r: Record<string, number> = {};
      let m0 = tcpu(), p0 = pcpu();
      const plan = buildPlan(state, undefined, { seed: SEED });
      r.planMain = tcpu() - m0; r.plan = pcpu() - p0; m0 = tcpu(); p0 = pcpu();
      const ops = diffPlans(undefined, plan);
      r.diffMain = tcpu() - m0; r.diff = pcpu() - p0;
      parts = {};
      m0 = tcpu(); p0 = pcpu();
      const t0 = performance.now();
      d.maps.apply(ops);
      r.applyWall = performance.now() - t0; r.applyMain = tcpu() - m0; r.apply = pcpu() - p0;
      let nativeCpu = 0;
      for (const [k, p] of Object.entries(parts)) {
        r[`${k} ms`] = p.ms; r[`${k} cpu`] = p.cpu;
        if (!k.startsWith('js ')) nativeCpu += p.cpu;
      }
      r.applyJsMain = r.applyMain - nativeCpu;
      reps.push(r);
    } finally {
      d.object.close();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
}
const warm = reps.length > 1 ? reps.slice(1) : reps;
const mean: Record<string, number> = {};
for (const k of Object.keys(warm[0]!)) mean[k] = Math.round(warm.reduce((s, r) => s + (r[k] ?? 0), 0) / warm.length * 10) / 10;
console.log(JSON.stringify({ tree: process.cwd(), N, reps: REPS, load: (await import('node:os')).loadavg()[0], warmMean: mean }, null, 1));
