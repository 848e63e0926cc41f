// The first sync after start through the real agent, and nothing else (issue 10: < 3 s at 10,000
// Services): builds interleaved A/B, from a folder (`run --manifests`, one Service + slice per file)
// and from the stub API server (`run --kubeconfig`, bench/apiserver-stub.ts), each run in a network
// namespace and pin root of its own. Per run: wall from spawn to the end of the first sync holding
// every frontend (its `sync steps` line's endedAt), the agent's CPU then (process, all threads, from
// /proc), the main thread's time on a CPU, on a run queue and idle (waiting: for the verifier, the
// API server), the start line's split (source, compile ahead, load beyond) and the sync's steps.
//   N=10000 ROUNDS=3 SOURCES=folder,api A=/tmp/p12base/kube-bpf-proxy.mjs B=dist/kube-bpf-proxy.mjs \
//   node --import=tsx bench/first-start.ts
// A empty: B alone. PROF_DIR: the agent runs with --cpu-prof there (written when it exits).
// SAMPLE_MS (with LOG_DIR): the agent's threads (and the stub's process) read from /proc every that
// many ms to the first sync, written as a timeline beside the log (timeline-*.txt): per bucket of
// PERF_DIR: `perf record -g` of the agent's process (every thread, the kernel's work for it included)
// from its spawn to its first sync, as perf-*.data there (`perf report --sort comm,dso`).
// BUCKET_MS (default 250), each thread kind's CPU ms in it (proc: the whole process's, with the
// threads that exited meanwhile: the map writer's batch threads), the main thread's run-queue ms, and
// the agent's log lines that fell in it: where the wall is not CPU, and where both cores run our work.
// One JSON line per run on stdout; a summary of this / base ratios per round at the end.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { Lab } from '../testing/netns.js';
import { endpointSlice, node, service, NODE_NAME, NODE_IP, type ClusterShape } from './gen.js';
import { agentLogLines } from './lib.js';

const N = Number(process.env.N ?? 10_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SOURCES = (process.env.SOURCES ?? 'folder,api').split(',').filter(Boolean) as Array<'folder' | 'api'>;
const A = process.env.A === undefined ? '/tmp/p12base/kube-bpf-proxy.mjs' : process.env.A;
const B = resolve(process.env.B ?? 'dist/kube-bpf-proxy.mjs');
const EXTRA = (process.env.ARGS ?? '').split(/\s+/).filter(Boolean);
// A_ENV / B_ENV: 'K=V K=V' set for that build's agent only; A_NODE / B_NODE: node flags before its
// entry file (e.g. the image's `--max-semi-space-size=16`, which spares the re-exec)
// (a value may hold spaces: the list splits only before the next NAME=)
const words = (k: string) => (process.env[k] ?? '').split(/\s+/).filter(Boolean);
const envs = (k: string) => (process.env[k] ?? '').trim().split(/\s+(?=[A-Za-z_][A-Za-z0-9_]*=)/).filter(Boolean);
const SIDE: Record<string, { env: string[]; node: string[] }> = { base: { env: envs('A_ENV'), node: words('A_NODE') }, this: { env: envs('B_ENV'), node: words('B_NODE') } };
// AFTER_S: the agent runs on that long after its first sync, then its RSS is read again (settled)
const AFTER_MS = Number(process.env.AFTER_S ?? 0) * 1000;
const TIMEOUT_MS = Number(process.env.TIMEOUT_S ?? 300) * 1000;
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
/**
 * The agent's main thread (its tid is the pid, kept across the re-exec) from spawn to now: ms on a CPU,
 * ms ready on a run queue (another task had the CPU), and the rest of the wall, idle (waiting for
 * the verifier, a page, a child): what an overlap of the start's steps removes, whatever the load.
 */
function mainThread(pid: number, wallMs: number): { runMs: number; runQueueMs: number; idleMs: number } {
  const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ').map((x) => Number(x) / 1e6);
  return { runMs: Math.round(run!), runQueueMs: Math.round(wait!), idleMs: Math.round(wallMs - run! - wait!) };
}
/** CPU ms by thread kind at this moment: main, libuv's pool (verifier, batches), V8's helpers (GC, compiler), other. */
function threadsCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try { stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'); } catch { continue; }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const kind = tid === String(pid) ? 'main' : /libuv/i.test(comm) ? 'pool' : /V8|DefaultWork/i.test(comm) ? 'v8' : comm;
    out[kind] = (out[kind] ?? 0) + (Number(f[11]) + Number(f[12])) * 10;
  }
  return out;
}
/** VmRSS and VmHWM (peak) in MiB. */
function rssMiB(pid: number): { rss: number; hwm: number } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? NaN);
  return { rss: Math.round(kb('VmRSS') / 1024), hwm: Math.round(kb('VmHWM') / 1024) };
}
/** Per thread kind, CPU ticks (ms) now; and the main thread's run-queue ms (schedstat). */
function sampleThreads(pid: number, stubPid: number | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    Object.assign(out, threadsCpu(pid));
    // the process's own count holds threads that have exited (the map writer's batch threads)
    out.proc = cpuMs(pid);
    out.mainQueue = Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch { /* exited */ }
  if (stubPid !== undefined) {
    try { out.stub = cpuMs(stubPid); } catch { /* exited */ }
  }
  return out;
}
/** The samples as a table by bucket: each kind's ms in the bucket, and the log lines of the bucket. */
function timeline(samples: Array<{ t: number; v: Record<string, number> }>, logLines: Array<{ t: number; msg: string }>, bucketMs: number): string {
  const kinds = [...new Set(samples.flatMap((s) => Object.keys(s.v)))].sort((a, b) => (a === 'main' ? -1 : b === 'main' ? 1 : a.localeCompare(b)));
  const rows: string[] = [`${'ms'.padStart(6)} ${kinds.map((k) => k.slice(0, 9).padStart(9)).join(' ')}  log`];
  const at = (t: number) => {
    // the last sample at or before t (zeros before the first)
    let best: Record<string, number> = {};
    for (const s of samples) if (s.t <= t) best = s.v;
    return best;
  };
  const end = samples.at(-1)?.t ?? 0;
  const total: Record<string, number> = {};
  for (let t = 0; t < end; t += bucketMs) {
    const a = at(t), b = at(t + bucketMs);
    const cells = kinds.map((k) => {
      const d = Math.round((b[k] ?? 0) - (a[k] ?? 0));
      total[k] = (total[k] ?? 0) + d;
      return String(d).padStart(9);
    });
    const msgs = logLines.filter((l) => l.t >= t && l.t < t + bucketMs).map((l) => `${l.t} ${l.msg}`).join('; ');
    rows.push(`${String(t).padStart(6)} ${cells.join(' ')}  ${msgs}`);
  }
  rows.push(`${'total'.padStart(6)} ${kinds.map((k) => String(total[k] ?? 0).padStart(9)).join(' ')}`);
  return rows.join('\n') + '\n';
}
function loadavg(): number { return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]); }

const folder = mkdtempSync(join(tmpdir(), 'kbp-first-start-'));
writeFileSync(join(folder, 'node.yaml'), stringify(node()));
for (let i = 0; i < N; i++) writeFileSync(join(folder, `svc-${i}.yaml`), `${stringify(service(i, shape))}---\n${stringify(endpointSlice(i, shape, 0))}`);

async function one(cli: string, src: 'folder' | 'api', tag: string): Promise<Record<string, unknown>> {
  const lab = new Lab(`fs${tag}`);
  try {
    const ns = await lab.addNetns('a');
    await lab.ip(ns, ['link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1']);
    await lab.ip(ns, ['link', 'set', 'e0', 'up']);
    await lab.ip(ns, ['link', 'set', 'e1', 'up']);
    await lab.addAddress(ns, 'e0', `${NODE_IP}/24`);
    let from: string[];
    let stubPid: number | undefined;
    if (src === 'api') {
      const stub = lab.spawn(ns, process.execPath, ['--import=tsx', join(import.meta.dirname, 'apiserver-stub.ts'), '127.0.0.1', String(N)], { what: 'stub', stdin: true });
      const ready = await new Promise<Record<string, unknown>>((res, rej) => {
        let buf = '';
        stub.child.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          const i = buf.indexOf('\n');
          if (i >= 0) res(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        });
        stub.child.once('exit', () => rej(new Error(`stub exited: ${stub.output().slice(-500)}`)));
      });
      from = ['--kubeconfig', String(ready.kubeconfig)];
      stubPid = stub.pid;
    } else from = ['--manifests', folder];
    const pins = lab.addPinRoot('p');
    lab.onCleanup(`cleanup ${pins}`, async () => { await lab.exec(ns, process.execPath, [cli, 'cleanup', '--bpffs', pins], { allowFail: true }); });
    const prof = process.env.PROF_DIR ? [`--cpu-prof`, `--cpu-prof-dir=${process.env.PROF_DIR}`, `--cpu-prof-name=${tag}-${src}-${Date.now()}.cpuprofile`] : [];
    const load0 = loadavg();
    const started = Date.now();
    const side = SIDE[tag]!;
    const agent = lab.spawn(ns, '/usr/bin/env', [...side.env, process.execPath, ...side.node, ...prof, cli, 'run', ...from, '--node-name', NODE_NAME, '--node-ip', NODE_IP,
      '--bpffs', pins, '--socket-lb', 'false', '--healthz-bind-address', '', '--metrics-bind-address', '', ...EXTRA], { what: `agent ${tag}` });
    const lines = agentLogLines(agent, ['data plane chosen', 'data plane loaded and source started', 'sync steps']);
    // LOG_DIR: the agent's whole log, each line's time relative to the spawn
    if (process.env.LOG_DIR) {
      const out = createWriteStream(join(process.env.LOG_DIR, `agent-${tag}-${src}-${started}.log`));
      agent.child.stderr!.on('data', (d: Buffer) => out.write(d.toString().replace(/"time":(\d+)/g, (_, t: string) => `"time":${t},"sinceSpawnMs":${Number(t) - started}`)));
      agent.child.stdout!.pipe(out);
    }
    const perf = process.env.PERF_DIR ? spawn('/usr/bin/perf', ['record', '-F', '997', '-g', '-p', String(agent.pid), '-o', join(process.env.PERF_DIR, `perf-${tag}-${src}-${started}.data`)], { stdio: 'ignore' }) : undefined;
    const SAMPLE_MS = Number(process.env.SAMPLE_MS ?? 0);
    const allLines = SAMPLE_MS > 0 ? agentLogLines(agent, { prefix: '' }) : [];
    const samples: Array<{ t: number; v: Record<string, number> }> = [];
    const sampler = SAMPLE_MS > 0 && process.env.LOG_DIR
      ? setInterval(() => samples.push({ t: Date.now() - started, v: sampleThreads(agent.pid, stubPid) }), SAMPLE_MS) : undefined;
    let full: Record<string, unknown> | undefined, cpu = NaN, main: ReturnType<typeof mainThread> | undefined, threads: Record<string, number> | undefined;
    while (!full) {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().slice(-1500)}`);
      full = lines.find((l) => l.msg === 'sync steps' && Number(l.frontends) >= N);
      if (Date.now() - started > TIMEOUT_MS) throw new Error(`no first sync within ${TIMEOUT_MS} ms`);
      if (!full) await new Promise((r) => setTimeout(r, 10));
      else {
        cpu = cpuMs(agent.pid);
        threads = threadsCpu(agent.pid);
        main = mainThread(agent.pid, Date.now() - started);
      }
    }
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((r) => { perf.once('exit', r); setTimeout(r, 20_000); });
    }
    if (sampler) {
      clearInterval(sampler);
      samples.push({ t: Date.now() - started, v: sampleThreads(agent.pid, stubPid) });
      const logged = allLines.map((l) => ({ t: Number(l.time) - started, msg: String(l.msg) }));
      writeFileSync(join(process.env.LOG_DIR!, `timeline-${tag}-${src}-${started}.txt`), timeline(samples, logged, Number(process.env.BUCKET_MS ?? 250)));
    }
    const st = lines.find((l) => l.msg === 'data plane loaded and source started') ?? {};
    const chosen = lines.find((l) => l.msg === 'data plane chosen') ?? {};
    const rssAtSync = rssMiB(agent.pid);
    // SMAPS (with LOG_DIR): the agent's /proc/PID/smaps at its first sync, beside the log
    if (process.env.SMAPS && process.env.LOG_DIR) writeFileSync(join(process.env.LOG_DIR, `smaps-${tag}-${src}-${started}.txt`), readFileSync(`/proc/${agent.pid}/smaps`, 'utf8'));
    let rssAfter: ReturnType<typeof rssMiB> | undefined;
    if (AFTER_MS > 0) {
      await new Promise((r) => setTimeout(r, AFTER_MS));
      if (agent.child.exitCode === null) rssAfter = rssMiB(agent.pid);
    }
    agent.child.kill('SIGTERM');
    await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 20_000))]);
    const pick = (o: Record<string, unknown>, ks: string[]) => Object.fromEntries(ks.filter((k) => k in o).map((k) => [k, o[k]]));
    return {
      tag, src, load0, load1: loadavg(), firstSyncMs: Number(full.endedAt) - started, agentCpuMs: cpu,
      // until the first sync's line (after it: the full GC that follows a big sync, in both figures)
      rssAtSyncMiB: rssAtSync.rss, rssAfterMiB: rssAfter?.rss, peakMiB: rssAfter?.hwm ?? rssAtSync.hwm, threadsCpuMs: threads, mainRunMs: main?.runMs, mainRunQueueMs: main?.runQueueMs, mainIdleMs: main?.idleMs,
      ...pick(st, ['sourceMs', 'compileAheadMs', 'compileWhileListingMs', 'aheadSteps', 'loadMs', 'loadTotalMs', 'readPlanMs', 'plannedBesideLoad']),
      startLineAt: Number(st.time) - started,
      // the process's CPU when the mode was chosen (node, the re-exec, the modules, the settings), and when
      chosenCpuMs: chosen.cpuMs, chosenAt: Number(chosen.time) - started,
      sync: pick(full, ['totalMs', 'cpuMs', 'threadCpuMs', 'compileMs', 'fitMs', 'planMs', 'diffMs', 'applyMs', 'loadWaitMs', 'afterMs', 'otherMs', 'gcMs', 'gcs', 'runQueueMs']),
    };
  } finally {
    await lab.cleanup();
  }
}

const rows: Array<Record<string, unknown>> = [];
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const src of SOURCES) {
      // the order alternates by round, so neither build always runs second
      const order: Array<[string, string]> = A ? (r % 2 ? [[B, 'this'], [A, 'base']] : [[A, 'base'], [B, 'this']]) : [[B, 'this']];
      for (const [cli, tag] of order) {
        const row = { round: r + 1, ...(await one(cli, src, tag)) };
        rows.push(row);
        process.stdout.write(JSON.stringify(row) + '\n');
      }
    }
  }
} finally {
  rmSync(folder, { recursive: true, force: true });
}
if (A) {
  for (const src of SOURCES) {
    for (const k of ['firstSyncMs', 'agentCpuMs', 'mainRunMs', 'mainIdleMs'] as const) {
      const ratios: number[] = [];
      for (let r = 1; r <= ROUNDS; r++) {
        const b = rows.find((x) => x.round === r && x.src === src && x.tag === 'base'), t = rows.find((x) => x.round === r && x.src === src && x.tag === 'this');
        if (b && t) ratios.push(Number(t[k]) / Number(b[k]));
      }
      ratios.sort((a, b) => a - b);
      process.stdout.write(`${src} ${k} this/base per round: ${ratios.map((x) => x.toFixed(2)).join(' ')} (median ${ratios[Math.floor((ratios.length - 1) / 2)]?.toFixed(2)})\n`);
    }
  }
}
