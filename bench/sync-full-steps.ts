// The sync bench's full sync (bench/sync.bench.ts fullSyncOurs: compile -> buildPlan -> diffPlans ->
// BpfMaps.apply into freshly loaded maps), repeated in one process as the bench repeats it, with the
// CPU of each step: the process's (threads included: the Maglev fill runs on two) and the main
// thread's. Standalone, so that a copy runs unchanged in an older tree for an interleaved same-run A/B:
//   N=10000 REPS=3 node --import=tsx bench/sync-full-steps.ts     (root, bpffs; one JSON line)
// KBP_SYNC_DIGEST=1 adds a sha256 of every map the writer fills after the last rep (two trees must
// agree byte for byte); KBP_SYNC_PROF=file a CPU profile of the last rep's steps.
import { createHash } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Compiler } from '../src/compile/compile.js';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import * as L from '../src/dataplane/bpf/layout.js';
import { loadDataplane } from '../src/dataplane/bpf/loader.js';
import { MapType } from '../src/dataplane/bpf/native/uapi.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan } from '../src/plan/plan.js';
import { NODE_NAME, snapshot, type ClusterShape } from './gen.js';

const N = Number(process.env.N ?? 10_000);
const REPS = Number(process.env.REPS ?? 3);
const SEED = 0x6b627078;
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
const snap = snapshot(shape);
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const faults = () => process.resourceUsage().minorPageFault;
const tcpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const out: Record<string, unknown> = { tree: process.cwd(), N };
const reps: Record<string, number>[] = [];

// GC pauses by their start time, credited to the step they fell in (the entries arrive later)
const gcs: { at: number; ms: number }[] = [];
new PerformanceObserver((l) => { for (const e of l.getEntries()) gcs.push({ at: e.startTime, ms: e.duration }); }).observe({ entryTypes: ['gc'] });
const windows: { rep: number; name: string; from: number; to: number }[] = [];
const prof = process.env.KBP_SYNC_PROF;
const { Session } = await import('node:inspector/promises');
for (let rep = 0; rep < REPS; rep++) {
  const last = rep === REPS - 1;
  const pinRoot = mkdtempSync('/sys/fs/bpf/kbp-sync-full-');
  const tmp = mkdtempSync('/tmp/kbp-sync-full-');
  const r: Record<string, number> = {};
  try {
    const state = AgentStateFile.forPinRoot(pinRoot, join(tmp, 'state.json'));
    const d = loadDataplane({ pinRoot, state, mountBpffs: false });
    try {
      d.maps.writeConfig({ hashSeed: SEED, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
      const session = prof && last ? new Session() : undefined;
      if (session) {
        session.connect();
        await session.post('Profiler.enable');
        await session.post('Profiler.start');
      }
      const step = <T>(name: string, f: () => T): T => {
        const c0 = cpu(), m0 = tcpu(), t0 = performance.now(), f0 = faults();
        const v = f();
        // minor faults: a first touch of a fresh page costs ~7-13 us on this VM (docs/perf-log.md, p11full)
        r[`${name}Faults`] = faults() - f0;
        windows.push({ rep, name, from: t0, to: performance.now() });
        r[`${name}Ms`] = Math.round(performance.now() - t0);
        r[`${name}Cpu`] = Math.round(cpu() - c0);
        r[`${name}MainCpu`] = Math.round(tcpu() - m0);
        return v;
      };
      const t0 = performance.now(), c0 = cpu();
      const { state: ns } = step('compile', () => new Compiler({ nodeName: NODE_NAME }).compile(snap));
      const plan = step('plan', () => buildPlan(ns, undefined, { seed: SEED }));
      const ops = step('diff', () => diffPlans(undefined, plan));
      step('apply', () => d.maps.apply(ops));
      r.totalMs = Math.round(performance.now() - t0);
      r.totalCpu = Math.round(cpu() - c0);
      r.ops = ops.length;
      if (session) {
        const { profile } = await session.post('Profiler.stop');
        writeFileSync(prof!, JSON.stringify(profile));
      }
      if (last && process.env.KBP_SYNC_DIGEST === '1') {
        const digests: Record<string, string> = {};
        for (const name of ['lb_maglev_slots', 'lb_slots', 'lb_members', 'lb_backends', 'lb_frontends', 'lb_revnat', 'lb_fe_filter'] as const) {
          // an array is scanned in index order; a hash map's entries are sorted first
          const m = d.object.map(name), h = createHash('sha256'), entries: string[] = [];
          m.scan((k, v) => {
            if (m.type === MapType.ARRAY) h.update(k).update(v);
            else entries.push(`${k.toString('hex')}=${v.toString('hex')}`);
          });
          digests[name] = h.update(entries.sort().join('\n')).digest('hex').slice(0, 16);
        }
        out.digests = digests;
      }
    } finally {
      d.object.close();
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
  reps.push(r);
}
await new Promise((res) => setTimeout(res, 100));
for (const w of windows) reps[w.rep]![`${w.name}Gc`] = Math.round(gcs.filter((g) => g.at >= w.from && g.at < w.to).reduce((a, g) => a + g.ms, 0));
out.reps = reps;
out.peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
console.log(JSON.stringify(out));
