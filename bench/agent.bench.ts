// The real agent against the stub API server, as a user runs it: the bundle (built here, under
// bench/results/.agent/, so the lab keeps running the sources) with --kubeconfig, in a network
// namespace of its own with the stub API server (bench/apiserver-stub.ts) beside it on loopback,
// holding N Services x 10 endpoints dressed as an API server returns them.
//   agent: RSS at 0, 1,000 and 10,000 Services (DESIGN.md: <= 300 MiB at 10,000), the time from start
//          to the first sync, and the heap by part (store, compile, plan) measured in this process.
// (the 100,000-Service row, `scale`, is bench/scale.bench.ts and runs the agent through runAgent)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Compiler } from '../src/compile/compile.js';
import { buildPlan, releaseSlots } from '../src/plan/plan.js';
import { CapacityTracker, UNLIMITED } from '../src/plan/capacity.js';
import { maglevSize } from '../src/plan/maglev.js';
import { LB_MAGLEV_IDS_PER_ELEM } from '../src/plan/limits.js';
import * as L from '../src/dataplane/bpf/layout.js';
import { Lab, type LabProcess, type Netns } from '../testing/netns.js';
import { slimStore } from './apiserver-objects.js';
import { NODE_IP, NODE_NAME } from './gen.js';
import { defineBench, MULTIARCH_INCLUDE, type BenchContext } from './lib.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const BUNDLE = join(here, 'results', '.agent', 'kube-bpf-proxy.mjs');
const MiB = 2 ** 20;

/** the agent as a user runs it: bundled (npm run build), not through tsx */
export function bundle(ctx: BenchContext): string {
  ctx.log('bundling the agent (esbuild)');
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'bundle.mjs'), '--outfile', BUNDLE], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bundling the agent failed: ${r.stderr || r.stdout}`);
  return BUNDLE;
}

/**
 * Maglev slots for n tables of 10 backends with a quarter to spare, when the default array
 * (LB_MAGLEV_SLOTS_MAX: 64 MiB, sized for 10,000 Services) cannot hold them: at 100,000 Services
 * every Service past ~10,400 would be left out for capacity and the run could never see all its
 * frontends. undefined when the default suffices.
 */
export function maglevSlotsFor(n: number): number | undefined {
  const perTable = Math.ceil(maglevSize(10, 'pow2') / LB_MAGLEV_IDS_PER_ELEM) * LB_MAGLEV_IDS_PER_ELEM;
  if (n * perTable <= L.LB_MAGLEV_SLOTS_MAX) return undefined;
  return Math.ceil((n * perTable * 1.25) / 4096) * 4096;
}

/** lb_maglev_slots (a multiple of 4096) that holds n Services of the benches' shape and no more than 4095 slots over */
export function maglevSlotsHolding(n: number): number {
  const perTable = Math.ceil(maglevSize(10, 'pow2') / LB_MAGLEV_IDS_PER_ELEM) * LB_MAGLEV_IDS_PER_ELEM;
  return Math.ceil((n * perTable) / 4096) * 4096;
}

/** The agent's flags for n Services: the Maglev array sized at load (run --bpf-map-max). */
export function mapMaxFlags(n: number): string[] {
  const need = maglevSlotsFor(n);
  return need === undefined ? [] : ['--bpf-map-max', `lb_maglev_slots=${need}`];
}

/**
 * For a build without --bpf-map-max (a baseline before it): a BPF object built with
 * -DLB_MAGLEV_SLOTS_MAX=maglevSlotsFor(n), beside the bundle (with lb_sock_term.bpf.o, which the
 * agent finds next to it); undefined when the shipped object suffices.
 */
export function objectFor(ctx: BenchContext, n: number): string | undefined {
  const need = maglevSlotsFor(n);
  if (need === undefined) return undefined;
  const dir = join(here, 'results', '.agent', `bpf-maglev-${need}`);
  mkdirSync(dir, { recursive: true });
  ctx.log(`building a BPF object with LB_MAGLEV_SLOTS_MAX=${need} (${((need * 4) / MiB).toFixed(0)} MiB of Maglev slots) for ${n} Services`);
  for (const o of ['kbp', 'lb_sock_term']) {
    const r = spawnSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86', MULTIARCH_INCLUDE,
      `-I${join(root, 'bpf')}`, `-DLB_MAGLEV_SLOTS_MAX=${need}`, '-c', join(root, 'bpf', `${o}.bpf.c`), '-o', join(dir, `${o}.bpf.o`)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building ${o}.bpf.o failed: ${r.stderr}`);
  }
  return join(dir, 'kbp.bpf.o');
}

/**
 * A process's resident memory by kind of mapping (MiB, from /proc/PID/smaps): the brk heap (glibc's
 * main arena), anonymous mappings by size (V8's heap pages and large objects, glibc's thread arenas
 * of 64 MiB, big malloc'd blocks), file-backed ones, and the largest anonymous mappings themselves.
 */
export function smapsByKind(pid: number): Record<string, number | string> {
  const out: Record<string, number> = {};
  const big: [number, string][] = [];
  let name = '', size = 0;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'latin1').split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (h) {
      size = (parseInt(h[2]!, 16) - parseInt(h[1]!, 16)) / 2 ** 20;
      name = h[3]!;
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (!r) continue;
    const rss = Number(r[1]) / 1024;
    const kind = name === '[heap]' ? 'brk heap' : name.startsWith('[') ? name : name ? (name.startsWith('anon_inode') ? name : 'file') : size >= 60 && size <= 64 ? 'anon 60-64 MiB (glibc arenas)' : size < 1 ? 'anon < 1 MiB' : 'anon >= 1 MiB';
    out[kind] = (out[kind] ?? 0) + rss;
    if (!name && rss >= 8) big.push([rss, `${size.toFixed(1)} MiB mapping`]);
  }
  const res: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(out)) if (v >= 1) res[k] = Math.round(v);
  res.largestAnon = big.sort((a, b) => b[0] - a[0]).slice(0, 8).map(([r, w]) => `${Math.round(r)} of ${w}`).join(', ');
  return res;
}

function procStatus(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/**
 * CPU ms of a process by thread, from /proc (CLK_TCK 100): `main` (the thread whose id is the pid),
 * the others by name (libuv's pool "libuv-worker", V8's helpers "V8 DefaultWorke", the addon's
 * threads named as the main thread), `exited` (threads gone, e.g. a joined fill's), `total`.
 */
export function threadCpu(pid: number): Record<string, number> {
  const ms = (stat: string) => {
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  };
  const out: Record<string, number> = { total: ms(readFileSync(`/proc/${pid}/stat`, 'latin1')) };
  let alive = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try { stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1'); } catch { continue; }
    const name = Number(tid) === pid ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const v = ms(stat);
    out[name] = (out[name] ?? 0) + v;
    alive += v;
  }
  out.exited = out.total! - alive;
  return out;
}

interface Metrics { frontends: number; lastSync: number; syncSum: number; syncCount: number; overCapacity: number; progSum: number; progCount: number }

function parseMetrics(text: string): Metrics {
  // the sum over every label set (the histogram is per IP family); NaN when absent
  const num = (name: string) => {
    let v = NaN;
    for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) v = (Number.isNaN(v) ? 0 : v) + Number(m[1]);
    return v;
  };
  return {
    frontends: num('kubebpfproxy_frontends'),
    lastSync: num('kubeproxy_sync_proxy_rules_last_timestamp_seconds'),
    syncSum: num('kubeproxy_sync_proxy_rules_duration_seconds_sum'),
    syncCount: num('kubeproxy_sync_proxy_rules_duration_seconds_count'),
    overCapacity: num('kubebpfproxy_service_over_capacity'),
    progSum: num('kubeproxy_network_programming_duration_seconds_sum'),
    progCount: num('kubeproxy_network_programming_duration_seconds_count'),
  };
}

/** one JSON line at a time from a child's stdout */
function lines(p: LabProcess): () => Promise<Record<string, unknown>> {
  const queue: string[] = [];
  let buf = '';
  p.child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { queue.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  return async () => {
    const deadline = Date.now() + 900_000;
    for (;;) {
      const l = queue.shift();
      if (l !== undefined) {
        if (l.startsWith('{')) return JSON.parse(l) as Record<string, unknown>;
        continue;
      }
      if (p.child.exitCode !== null) throw new Error(`${p.what} exited: ${p.output().slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`${p.what}: no answer within 900 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
}

export interface AgentRun {
  /**
   * start to the end of the first sync holding every frontend (the agent's own stamp of it, the
   * sync-time metric, read at the first scrape that shows every frontend); with synced false, to the deadline
   */
  syncMs: number;
  /**
   * start to the first /metrics answer that showed every frontend (what a scraper or a probe saw:
   * syncMs plus whatever held the agent's event loop after the sync, the heap trimmer's GC and the
   * warm-up, plus this bench's poll interval)
   */
  answeredMs: number;
  synced: boolean;
  /** RSS right after the first sync, and once settled (after `settleMs`) */
  rssSynced: number;
  rss: number;
  /** peak RSS (VmHWM) */
  hwm: number;
  /** RSS sampled about once a second while settling: [ms after the first sync, bytes] */
  rssSeries: [number, number][];
  frontends: number;
  /** per endpoint change: the agent's own sync duration (ms), and API write to that sync's end (ms) */
  /** programmingMs: the agent's own kubeproxy_network_programming_duration_seconds for the change (the slice's trigger time to synced), NaN when not observed */
  changes: { syncMs: number; wallMs: number; programmingMs: number }[];
  /** why the changes stopped short, if they did */
  changeError?: string;
  /** the agent's log (its last 64 KiB) */
  output: string;
  /** CPU ms by thread at the first sync (threadCpu): the agent's, and the stub API server's since the agent started */
  cpuAtSync?: { agent: Record<string, number>; stub: number };
}

/**
 * sizing: how the agent gets a Maglev array for n Services, 'flag' (--bpf-map-max, the default) or
 * 'object' (a rebuilt object: a baseline whose agent lacks the flag)
 */
export async function runAgent(ctx: BenchContext, lab: Lab, cli: string, n: number, opts: { changes: number; settleMs: number; timeoutMs: number; sizing?: 'flag' | 'object' }): Promise<AgentRun> {
  const ns: Netns = await lab.addNetns(`a${n}`);
  await lab.ip(ns, ['link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1']);
  await lab.ip(ns, ['link', 'set', 'e0', 'up']);
  await lab.ip(ns, ['link', 'set', 'e1', 'up']);
  await lab.addAddress(ns, 'e0', `${NODE_IP}/24`);
  ctx.log(`${n} Services: starting the stub API server`);
  const stub = lab.spawn(ns, process.execPath, ['--import=tsx', join(here, 'apiserver-stub.ts'), '127.0.0.1', String(n)], { what: `stub apiserver ${n}`, stdin: true });
  const fromStub = lines(stub);
  const ready = await fromStub();
  const kubeconfig = String(ready.kubeconfig);
  const pins = lab.addPinRoot(`p${n}`);
  lab.onCleanup(`cleanup ${pins}`, async () => { await lab.exec(ns, process.execPath, [cli, 'cleanup', '--bpffs', pins], { allowFail: true }); });
  const scrape = async (): Promise<Metrics> => {
    const m = await lab.exec(ns, 'curl', ['-s', '--max-time', '10', 'http://127.0.0.1:10249/metrics'], { allowFail: true });
    return parseMetrics(m.stdout);
  };
  const object = opts.sizing === 'object' ? objectFor(ctx, n) : undefined;
  const sizing = opts.sizing === 'object' ? [] : mapMaxFlags(n);
  ctx.log(`${n} Services: starting the agent${object ? ` (--bpf-object ${object})` : sizing.length ? ` (${sizing.join(' ')})` : ''}`);
  // the stub's CPU from here on: what serving the agent cost it, not making its objects
  let stubCpu0 = NaN;
  try { stubCpu0 = threadCpu(stub.pid).total!; } catch { /* read again at the sync: NaN */ }
  const started = Date.now();
  // KBP_BENCH_CPU_TIMELINE=PREFIX: the agent's CPU by thread and the stub's, every 100 ms from the
  // start to the first sync, written to PREFIX-N-<started>.json (where a start's cores went idle)
  const timeline: [number, Record<string, number>, number, number[]][] = [];
  // the machine's: user+nice+system+irq+softirq+steal, and idle+iowait, in ms (USER_HZ 100)
  const machine = () => {
    const f = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return [(f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) * 10, (f[3]! + f[4]!) * 10];
  };
  const timelineTo = process.env.KBP_BENCH_CPU_TIMELINE;
  const agent = lab.spawn(ns, process.execPath, [cli, 'run', '--kubeconfig', kubeconfig, '--node-name', NODE_NAME, '--node-ip', NODE_IP,
    '--bpffs', pins, '--socket-lb', 'false', '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249',
    ...(object ? ['--bpf-object', object] : []), ...sizing,
    // KBP_BENCH_AGENT_ARGS: more flags for every agent run (e.g. `--v 2` for each sync's steps in the log)
    ...(process.env.KBP_BENCH_AGENT_ARGS?.split(' ').filter(Boolean) ?? [])], { what: `agent ${n}` });
  // KBP_BENCH_MEM_TIMELINE=PREFIX: the agent's memory by kind every 100 ms from spawn to the end of
  // the settling (VmRSS, RssAnon, RssFile, RssShmem, VmHWM in KiB from /proc/PID/status), written with
  // the agent's log to PREFIX-N-<started>.json: where in the start the peak comes
  const memTo = process.env.KBP_BENCH_MEM_TIMELINE;
  const mem: [number, number, number, number, number, number][] = [];
  const memSampler = memTo ? setInterval(() => {
    try {
      const s = readFileSync(`/proc/${agent.pid}/status`, 'latin1');
      const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN);
      mem.push([Date.now() - started, kb('VmRSS'), kb('RssAnon'), kb('RssFile'), kb('RssShmem'), kb('VmHWM')]);
    } catch { /* gone */ }
  }, 100) : undefined;
  const sampler = timelineTo ? setInterval(() => {
    try { timeline.push([Date.now() - started, threadCpu(agent.pid), threadCpu(stub.pid).total! - stubCpu0, machine()]); } catch { /* gone */ }
  }, 100) : undefined;
  try {
    const deadline = started + opts.timeoutMs;
    let m: Metrics;
    let told = Date.now();
    for (;;) {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().slice(-2000)}`);
      m = await scrape();
      if (m.lastSync > 0 && m.frontends >= n) break;
      if (Date.now() > deadline) {
        // what it got to is the figure: reported, not thrown away
        const st = procStatus(agent.pid);
        const why = `no full sync within ${opts.timeoutMs / 1000} s (frontends ${m.frontends}, over capacity ${m.overCapacity}, ${agent.output().slice(-300).replace(/\s+/g, ' ')})`;
        ctx.log(`${n} Services: ${why}`);
        return { syncMs: Date.now() - started, answeredMs: Date.now() - started, synced: false, rssSynced: st.rss, rss: st.rss, hwm: st.hwm, rssSeries: [], frontends: m.frontends, changes: [], changeError: why, output: agent.output().slice(-65536) };
      }
      if (Date.now() - told > 15_000) {
        told = Date.now();
        ctx.log(`${n} Services: waiting for the first sync, ${((Date.now() - started) / 1000).toFixed(0)} s, frontends ${m.frontends}, RSS ${(procStatus(agent.pid).rss / MiB).toFixed(0)} MiB`);
      }
      await new Promise((r) => setTimeout(r, n >= 10_000 ? 500 : 200));
    }
    const answeredMs = Date.now() - started;
    // the sync's own end (kubeproxy_sync_proxy_rules_last_timestamp_seconds, ms in the fraction): the
    // scrape above may have waited out the agent's GC after the sync, and polls every 0.5 s
    const syncMs = m.lastSync * 1000 - started > 0 && m.lastSync * 1000 - started <= answeredMs ? Math.round(m.lastSync * 1000 - started) : answeredMs;
    if (sampler) {
      clearInterval(sampler);
      writeFileSync(`${timelineTo}-${n}-${started}.json`, JSON.stringify({ syncMs, log: agent.output().slice(-65536), timeline }));
    }
    const rssSynced = procStatus(agent.pid).rss;
    // with the memory timeline: the mappings' RSS right after the sync (the start's plateau, before
    // the heap trimmer's GC) and 20 s later, by kind (smapsByKind)
    const smapsSynced = memTo ? smapsByKind(agent.pid) : undefined;
    let cpuAtSync: AgentRun['cpuAtSync'];
    try { cpuAtSync = { agent: threadCpu(agent.pid), stub: threadCpu(stub.pid).total! - stubCpu0 }; } catch { /* a process gone: no figure */ }
    ctx.log(`${n} Services: synced ${m.frontends} frontends ${syncMs} ms after start (/metrics answered it at ${answeredMs} ms), RSS ${(rssSynced / MiB).toFixed(0)} MiB; settling ${opts.settleMs / 1000} s`);
    const syncedAt = Date.now();
    const rssSeries: [number, number][] = [[0, rssSynced]];
    while (Date.now() - syncedAt < opts.settleMs) {
      await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, opts.settleMs - (Date.now() - syncedAt)))));
      rssSeries.push([Date.now() - syncedAt, procStatus(agent.pid).rss]);
    }
    const settled = procStatus(agent.pid);
    const changes: AgentRun['changes'] = [];
    let changeError: string | undefined;
    try {
      for (let k = 0; k < opts.changes; k++) {
        const before = await scrape();
        const i = Math.floor(((k + 0.5) / opts.changes) * n);
        stub.child.stdin!.write(`change ${i} ${1 + (k % 3)}\n`);
        const at = Number((await fromStub()).at);
        const end = Date.now() + 120_000;
        let after: Metrics;
        // the sync that holds it: one that ended after the write (the metric has 1 s resolution, so also a new count)
        for (;;) {
          after = await scrape();
          if (after.syncCount > before.syncCount && after.lastSync * 1000 >= at - 1000) break;
          if (Date.now() > end) throw new Error(`agent with ${n} Services: change ${k} not synced within 120 s`);
          await new Promise((r) => setTimeout(r, 25));
        }
        const wallMs = Date.now() - at;
        const syncs = after.syncCount - before.syncCount;
        const progs = after.progCount - before.progCount;
        changes.push({ syncMs: ((after.syncSum - before.syncSum) / syncs) * 1000, wallMs, programmingMs: progs > 0 ? ((after.progSum - before.progSum) / progs) * 1000 : NaN });
        await new Promise((r) => setTimeout(r, 1500));
      }
    } catch (e) {
      // the full sync and RSS are still worth reporting
      changeError = (e as Error).message;
      ctx.log(`${n} Services: ${changeError}`);
    }
    if (changes.length) {
      const s = changes.map((c) => c.syncMs.toFixed(1)).join(', ');
      ctx.log(`${n} Services: ${changes.length} endpoint changes, sync ${s} ms`);
    }
    const last = procStatus(agent.pid);
    if (memSampler) {
      clearInterval(memSampler);
      writeFileSync(`${memTo}-${n}-${started}.json`, JSON.stringify({ syncMs, cli, columns: ['ms', 'VmRSS', 'RssAnon', 'RssFile', 'RssShmem', 'VmHWM'], mem, smapsSynced, smapsAfter: smapsByKind(agent.pid), log: agent.output().slice(-65536) }));
    }
    return { syncMs, answeredMs, synced: true, rssSynced, rss: settled.rss, hwm: last.hwm, rssSeries, frontends: m.frontends, changes, ...(changeError !== undefined && { changeError }), output: agent.output().slice(-65536), ...(cpuAtSync && { cpuAtSync }) };
  } finally {
    if (sampler) clearInterval(sampler);
    if (memSampler) clearInterval(memSampler);
    agent.child.kill('SIGTERM');
    await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 10_000))]);
    stub.child.stdin!.end();
    stub.child.kill('SIGTERM');
    await Promise.race([stub.exited, new Promise((r) => setTimeout(r, 5000))]);
  }
}

/** heap after GC of each part the agent keeps, built in this process from the same objects */
function heapByPart(ctx: BenchContext, n: number): { store: number; compile: number; capacity: number; plan: number } {
  const shape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
  const store = ctx.retained(() => slimStore(shape));
  const compiler = new Compiler({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] });
  const compiled = ctx.retained(() => compiler.compile(store.value.view()).state);
  const capacity = ctx.retained(() => {
    const c = new CapacityTracker();
    c.fit(compiled.value, UNLIMITED);
    return c;
  });
  // as the agent keeps it: the slots dropped once the kernel holds them (releaseSlots)
  const plan = ctx.retained(() => {
    const p = buildPlan(compiled.value, undefined, { seed: 1 });
    releaseSlots(p);
    return p;
  });
  void plan.value.frontends.size;
  void capacity.value;
  return { store: store.bytes, compile: compiled.bytes, capacity: capacity.bytes, plan: plan.bytes };
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

export default [
  defineBench({
    name: 'agent',
    title: 'Agent memory (RSS) and start-up at N Services, from the API server',
    description: 'The real agent (bundled, --kubeconfig) in a network namespace of its own, the stub API server beside it holding N Services x 10 ready endpoints (every 10th a NodePort) dressed as an API server returns them (managedFields, last-applied annotations, targetRefs), the BPF data plane loaded and synced. RSS is read from /proc right after the first sync and again 10 s later (settled, the figure held to the target); the baseline is the same agent with no Service, in the same run. The heap by part is measured in the bench process from the same objects after a full GC: the source\'s store, compile\'s caches and state, the capacity tracker, the plan as the agent keeps it (Maglev slots released). The agent re-executes itself with its V8 flags (src/cli/v8-flags.ts: 16 MiB semi-spaces) as it does for every user.',
    async run(ctx) {
      const cli = bundle(ctx);
      const lab = new Lab('agentrss');
      try {
        const sizes = ctx.quick ? [0, 1000] : [0, 1000, 10_000];
        const res = new Map<number, AgentRun>();
        for (const n of sizes) res.set(n, await runAgent(ctx, lab, cli, n, { changes: 0, settleMs: 10_000, timeoutMs: 600_000 }));
        const base = res.get(0)!;
        ctx.metric({ name: 'rss 0', value: base.rss / MiB, unit: 'MiB', better: 'lower', note: 'no Service: node, libraries, addon, maps opened' });
        for (const n of sizes.filter((x) => x > 0)) {
          const r = res.get(n)!;
          ctx.metric({ name: `rss ${n}`, value: r.rss / MiB, unit: 'MiB', baseline: 'rss 0', better: 'lower',
            note: r.synced ? `10 s after the first sync; ${(r.rssSynced / MiB).toFixed(0)} MiB right after it, peak ${(r.hwm / MiB).toFixed(0)} MiB`
              : `at the deadline, first sync NOT FINISHED; peak ${(r.hwm / MiB).toFixed(0)} MiB`,
            ...(n === 10_000 && { target: '<= 300 MiB', met: r.synced && r.rss / MiB <= 300 }) });
          ctx.metric({ name: `first sync ${n}`, value: r.syncMs, unit: 'ms', better: 'lower', note: r.synced ? 'from process start: list, compile, plan, load and write the maps' : 'NOT FINISHED by the deadline',
            ...(n === 10_000 && { target: '< 3 s', met: r.syncMs < 3000 }) });
        }
        const hn = ctx.quick ? 1000 : 10_000;
        ctx.log(`heap by part at ${hn} Services`);
        const h = heapByPart(ctx, hn);
        ctx.metric({ name: `heap ${hn}: store`, value: h.store / MiB, unit: 'MiB', better: 'lower', note: 'the source\'s objects, slimmed at ingestion (src/source/slim.ts)' });
        ctx.metric({ name: `heap ${hn}: compile`, value: h.compile / MiB, unit: 'MiB', better: 'lower', note: 'compile\'s per-Service caches and the NodeState' });
        ctx.metric({ name: `heap ${hn}: capacity`, value: h.capacity / MiB, unit: 'MiB', better: 'lower', note: 'the capacity tracker\'s counts (a key per backend and per Maglev member set)' });
        ctx.metric({ name: `heap ${hn}: plan`, value: h.plan / MiB, unit: 'MiB', better: 'lower', note: 'the plan as the agent keeps it: frontends, backends, tables without their slots (released once written)' });
        ctx.figure({
          id: 'rss', kind: 'line', title: 'Agent RSS 10 s after the first sync',
          x: { label: 'Services (x10 endpoints)' }, y: { label: 'MiB', min: 0 },
          series: [{ name: 'RSS', points: sizes.map((n) => [n, res.get(n)!.rss / MiB]) },
            ...(ctx.quick ? [] : [{ name: 'target at 10k', points: [[0, 300], [10_000, 300]] as [number, number][], reference: true }])],
        });
      } finally {
        await lab.cleanup();
      }
    },
  }),
];
