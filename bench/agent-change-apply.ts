// Where a one-change apply's time goes (issue 10: one change to the kernel, p99 < 5 ms): the agent's
// one-change path (compile with the change record, buildPlan over the previous plan, diffPlans,
// BpfMaps.apply with recycled tables, as the agent's data plane loads them) in this process, after a
// full sync of N Services into freshly loaded maps, with every native call of the apply and a few of
// its JavaScript parts timed. Per part: calls per change, and median wall us per change; plus the
// apply's and each step's median and max (wall time: getrusage and schedstat count this thread's CPU
// in scheduler ticks here, too coarse for parts of microseconds; run it on a quiet machine). Root
// and bpffs. KBP_PROF=file: a CPU profile of the changes. GAP_MS: a pause between changes.
//   N=10000 CHANGES=200 node --import=tsx bench/agent-change-apply.ts
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Compiler } from '../src/compile/compile.js';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import * as L from '../src/dataplane/bpf/layout.js';
import { loadDataplane } from '../src/dataplane/bpf/loader.js';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';
import { MapWriter } from '../src/dataplane/bpf/map-writer.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan, releaseSlots } from '../src/plan/plan.js';
import { endpointChange, NODE_NAME, snapshot, type ClusterShape } from './gen.js';
import { stats } from './lib.js';

const N = Number(process.env.N ?? 10_000);
const CHANGES = Number(process.env.CHANGES ?? 200);
const GAP_MS = Number(process.env.GAP_MS ?? 0);
const SEED = 0x6b627078;
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };

const clock = (): number => performance.now();
let parts: Record<string, { us: number; n: number }> = {};
let depth = 0;
function timed<T>(name: string, f: () => T): T {
  if (depth) return f();
  depth++;
  const t0 = clock();
  try {
    return f();
  } finally {
    depth--;
    const p = (parts[name] ??= { us: 0, n: 0 });
    p.us += (clock() - t0) * 1000;
    p.n++;
  }
}
for (const m of ['updateBatch', 'writeMmap', 'deleteMany', 'update', 'lookup', 'delete'] as const) {
  const orig = (BpfMap.prototype as any)[m] as ((...a: unknown[]) => unknown) | undefined;
  if (typeof orig !== 'function') continue;
  (BpfMap.prototype as any)[m] = function (this: BpfMap, ...a: unknown[]) {
    return timed(`${m} ${this.name}`, () => orig.apply(this, a));
  };
}
for (const [proto, names] of [[MapWriter.prototype, ['planRecycling', 'loadRegions']], [AgentStateFile.prototype, ['setFrontend', 'save']]] as const) {
  for (const m of names) {
    const orig = (proto as any)[m] as ((...a: unknown[]) => unknown) | undefined;
    if (typeof orig !== 'function') continue;
    (proto as any)[m] = function (this: unknown, ...a: unknown[]) {
      return timed(`js ${m}`, () => orig.apply(this, a));
    };
  }
}

// the JavaScript of each run of ops (MapWriter.applyRun is a generator: its next() calls, without the
// batches runSync makes between them), by the run's op
for (const g of ['applyRun', 'addMembers', 'joinFill'] as const) {
  const orig = (MapWriter.prototype as any)[g] as (...a: unknown[]) => Generator<unknown, unknown, unknown>;
  (MapWriter.prototype as any)[g] = function (this: unknown, ...a: unknown[]) {
    const it = orig.apply(this, a);
    const name = g === 'applyRun' ? `gen ${(a[0] as Array<{ op: string }>)[0]!.op}` : `gen ${g}`;
    const wrap = (f: () => IteratorResult<unknown>) => {
      const t0 = clock();
      try { return f(); } finally { const p = (parts[name] ??= { us: 0, n: 0 }); p.us += (clock() - t0) * 1000; p.n++; }
    };
    return {
      next: (v: unknown) => wrap(() => it.next(v)), throw: (e: unknown) => wrap(() => it.throw(e)), return: (v: unknown) => it.return(v),
      [Symbol.iterator]() { return this; },
    };
  };
}

const pinRoot = mkdtempSync('/sys/fs/bpf/kbp-chg-apply-');
const tmp = mkdtempSync('/tmp/kbp-chg-apply-');
try {
  const d = loadDataplane({ pinRoot, state: AgentStateFile.forPinRoot(pinRoot, join(tmp, 'state.json')), mountBpffs: false, maps: { recycleTables: true } });
  try {
    d.maps.writeConfig({ hashSeed: SEED, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
    let snap = snapshot(shape);
    const c = new Compiler({ nodeName: NODE_NAME });
    let prev = buildPlan(c.compile(snap).state, undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, prev));
    releaseSlots(prev);
    const per: Record<string, number[]> = {};
    const steps: Record<string, number[]> = { compile: [], plan: [], diff: [], apply: [], ops: [] };
    const variant = new Map<number, number>();
    // KBP_PROF=file: a CPU profile of the changes after the warm-up (sampled every 50 us)
    const { Session } = await import('node:inspector/promises');
    const session = process.env.KBP_PROF ? new Session() : undefined;
    for (let k = 0; k < CHANGES; k++) {
      if (session && k === 20) {
        session.connect();
        await session.post('Profiler.enable');
        await session.post('Profiler.setSamplingInterval', { interval: 50 });
        await session.post('Profiler.start');
      }
      const i = (k * 7919 + 13) % N;
      const v = variant.get(i) ? 0 : 1;
      variant.set(i, v);
      const ch = endpointChange(snap, shape, i, v);
      snap = ch.snap;
      const t0 = performance.now();
      const { state } = c.compile(snap, ch.changed);
      const t1 = performance.now();
      const p = buildPlan(state, prev, { seed: SEED, consumePrev: true });
      const t2 = performance.now();
      const ops = diffPlans(prev, p);
      const t3 = performance.now();
      parts = {};
      d.maps.apply(ops);
      const t4 = performance.now();
      releaseSlots(p, prev);
      prev = p;
      if (k < 20) continue; // warm-up
      steps.compile!.push(t1 - t0); steps.plan!.push(t2 - t1); steps.diff!.push(t3 - t2); steps.apply!.push(t4 - t3); steps.ops!.push(ops.length);
      let native = 0;
      for (const [name, x] of Object.entries(parts)) {
        (per[`${name} us`] ??= []).push(x.us);
        (per[`${name} calls`] ??= []).push(x.n);
        if (!name.startsWith('js ') && !name.startsWith('gen ')) native += x.us;
      }
      (per['apply js us'] ??= []).push((t4 - t3) * 1000 - native);
      if (k === 20) console.error(`ops of a change: ${ops.map((o) => o.op).join(', ')}`);
      if (GAP_MS) await new Promise((r) => setTimeout(r, GAP_MS));
    }
    if (session) {
      const { profile } = await session.post('Profiler.stop');
      (await import('node:fs')).writeFileSync(process.env.KBP_PROF!, JSON.stringify(profile));
    }
    const r2 = (x: number) => Math.round(x * 1000) / 1000;
    const out: Record<string, unknown> = { N, changes: steps.apply!.length, load: (await import('node:os')).loadavg()[0] };
    for (const [k, xs] of Object.entries(steps)) { const s = stats(xs); out[k] = { p50: r2(s.median), p99: r2(s.p99), max: r2(s.max) }; }
    for (const [k, xs] of Object.entries(per).sort()) { const s = stats(xs); out[k] = { p50: r2(s.median), max: r2(s.max) }; }
    console.log(JSON.stringify(out, null, 1));
  } finally {
    d.object.close();
  }
} finally {
  rmSync(pinRoot, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
}
