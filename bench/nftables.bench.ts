// The nftables data plane's sync cost: a full sync of N Services x 10 endpoints (buildPlan, diff,
// NftablesDataplane.apply: the model's transaction and the kernel taking it) and one endpoint change
// at a time at 10,000 Services, through the addon with elements in bulk (its own netlink batch: the
// default), through libnftables alone (every element parsed by it: the baseline, measured in the same
// run) and through `nft -f -` (a spawn per transaction). Then kube-proxy's own nftables-mode
// ruleset for the same Services (bench/baseline/nftables.ts: a chain per Service and per endpoint)
// against ours, full syncs interleaved A/B/A/B in the same run, with ratios; our apply's CPU is
// split into the model (TypeScript), the addon's encoding and the kernel taking the batch.
// Runs in a fresh network namespace of its own (re-executes itself under unshare -n), so it never
// touches the host's ruleset. `npm run bench -- nftables` runs it the same way (the child prints its
// results as JSON, the harness records them) with --lib-only: no `nft -f -` spawn per transaction.
//   node --import=tsx bench/nftables.bench.ts [--quick] [--lib-only] [--upstream-only] [--upstream-n N] [--rounds R]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPlan } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';
import type { Plan } from '../src/plan/types.js';
import type { NodeState } from '../src/model/compiled.js';
import { NftablesDataplane } from '../src/dataplane/nftables/dataplane.js';
import { createTransport, type NftTransport } from '../src/dataplane/nftables/native.js';
import { clusterIp, endpointSlice, node, NODE_IP, NODE_NAME, nodeState, podIp, service, type ClusterShape } from './gen.js';
import { stringify } from 'yaml';
import { Lab, type LabProcess, type Netns } from '../testing/netns.js';
import { NFT_TABLE } from '../src/dataplane/nftables/helpers.js';
import { bundle } from './agent.bench.js';
import { nftRuleset, NFT_TABLE as KP_TABLE } from './baseline/nftables.js';
import { servicePortsOf } from './baseline/services.js';
import type { BulkStats } from '../src/dataplane/nftables/native.js';
import { agentLogLines, defineBench, stats as stats2, type BenchContext, type TimeStats } from './lib.js';

const self = fileURLToPath(import.meta.url);
const direct = process.argv[1] !== undefined && fileURLToPath(new URL(`file://${process.argv[1]}`)) === self;

if (direct && !process.env.KBP_NFT_BENCH_NETNS) {
  const r = spawnSync('unshare', ['-n', process.execPath, ...process.execArgv, self, ...process.argv.slice(2)],
    { stdio: 'inherit', env: { ...process.env, KBP_NFT_BENCH_NETNS: '1' } });
  process.exit(r.status ?? 1);
}

const quick = process.argv.includes('--quick');
const SEED = 0x6b627078;
let dir = '';

function ms(t0: number): number {
  return Math.round((performance.now() - t0) * 100) / 100;
}

/** CPU time of this process since c0 (libnftables runs in its worker threads: counted; a spawned nft: not) */
function cpuMs(c0: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(c0);
  return Math.round((d.user + d.system) / 10) / 100;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

type Via = 'bulk' | 'libnftables' | 'nft-spawn';

/** the last bulk call's stats, when the transport is 'bulk' */
let lastBulk: BulkStats | undefined;
let runCpuMs = 0;

function transportOf(via: Via): NftTransport {
  const t = createTransport(via === 'nft-spawn' ? 'nft-spawn' : 'libnftables');
  if (via === 'bulk' && !t.bulk) throw new Error('the kbp_nft addon has no bulk element call: npm run build:native');
  if (via === 'libnftables') (t as { bulk?: unknown }).bulk = undefined;
  if (via === 'bulk') {
    const bulk = t.bulk!.bind(t);
    t.bulk = async (table, groups) => (lastBulk = await bulk(table, groups));
    // the CPU of the libnftables steps (the structure: table, chains, maps)
    const run = t.run.bind(t);
    t.run = async (commands, opts) => {
      const c0 = process.cpuUsage();
      try {
        return await run(commands, opts);
      } finally {
        runCpuMs += cpuMs(c0);
      }
    };
  }
  return t;
}

function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { min: r(s[0]!), median: r(s[Math.floor((s.length - 1) / 2)]!), max: r(s[s.length - 1]!) };
}

/**
 * kube-proxy's nftables mode against ours, full syncs at n Services interleaved (ours, upstream,
 * ours, ...): ours is NftablesDataplane.apply with elements in bulk; upstream's is the transaction
 * its syncProxyRules writes, taken by libnftables in this process (knftables pipes the same text
 * to `nft -f -`; in-process, its CPU is counted as ours is). Text generation is not timed for
 * either (buildPlan/diff for ours, nftRuleset for upstream).
 */
async function versusUpstream(n: number, rounds: number): Promise<Record<string, unknown>> {
  const state = nodeState({ services: n, endpointsPerService: 10 });
  const kp = nftRuleset(servicePortsOf(state), { clusterCidr: '10.128.0.0/9', serviceCidr: '10.96.0.0/12' });
  const lib = createTransport('libnftables');
  const ours = { wall: [] as number[], cpu: [] as number[], model: [] as number[], nft: [] as number[], encode: [] as number[], kernel: [] as number[] };
  const up = { wall: [] as number[], cpu: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    runCpuMs = 0;
    const { dp, applyMs, applyCpuMs } = await fullSync(n, 'bulk', () => { runCpuMs = 0; });
    ours.nft.push(runCpuMs);
    ours.wall.push(applyMs);
    ours.cpu.push(applyCpuMs);
    ours.encode.push(lastBulk?.encodeCpuMs ?? NaN);
    ours.kernel.push(lastBulk?.kernelCpuMs ?? NaN);
    ours.model.push(applyCpuMs - runCpuMs - (lastBulk?.encodeCpuMs ?? 0) - (lastBulk?.kernelCpuMs ?? 0));
    await dp.cleanup();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await lib.run(kp.text);
    up.wall.push(ms(t0));
    up.cpu.push(cpuMs(c0));
    await lib.run(`delete table ip ${KP_TABLE}\n`);
    // each round as it ends: at 10,000 Services upstream's load takes minutes on a loaded machine
    console.log(`vs upstream N=${n} round ${i + 1}: ours cpu ${ours.cpu[i]} ms (model ${ours.model[i]!.toFixed(0)}, libnftables ${ours.nft[i]!.toFixed(0)}, encode ${ours.encode[i]!.toFixed(0)}, kernel ${ours.kernel[i]!.toFixed(0)}), wall ${ours.wall[i]} ms; upstream cpu ${up.cpu[i]} ms, wall ${up.wall[i]} ms`);
  }
  const ratio = (a: number[], b: number[]) => stats(a.map((x, i) => x / b[i]!));
  const r = {
    services: n, rounds, upstream: { chains: kp.chains, rules: kp.rules, elements: kp.elements, applyMs: stats(up.wall), applyCpuMs: stats(up.cpu) },
    ours: { applyMs: stats(ours.wall), applyCpuMs: stats(ours.cpu), modelCpuMs: stats(ours.model), libnftablesCpuMs: stats(ours.nft), encodeCpuMs: stats(ours.encode), kernelCpuMs: stats(ours.kernel) },
    oursOverUpstreamCpu: ratio(ours.cpu, up.cpu), oursOverUpstreamWall: ratio(ours.wall, up.wall), loadAverage: (await import('node:os')).loadavg()[0],
  };
  const f = (x: { min: number; median: number; max: number }) => `${x.min}/${x.median}/${x.max}`;
  console.log(`vs upstream N=${n} (${rounds} rounds interleaved; min/median/max): kube-proxy's ruleset (${kp.chains} chains, ${kp.rules} rules, ${kp.elements} elements) cpu ${f(r.upstream.applyCpuMs)} ms, wall ${f(r.upstream.applyMs)} ms; ` +
    `ours cpu ${f(r.ours.applyCpuMs)} ms (model ${f(r.ours.modelCpuMs)}, libnftables ${f(r.ours.libnftablesCpuMs)}, encode ${f(r.ours.encodeCpuMs)}, kernel ${f(r.ours.kernelCpuMs)}), wall ${f(r.ours.applyMs)} ms; ` +
    `ratio ours/upstream cpu ${f(r.oursOverUpstreamCpu)}, wall ${f(r.oursOverUpstreamWall)}; load ${r.loadAverage?.toFixed(1)}`);
  return r;
}

async function fullSync(n: number, transport: Via, beforeApply?: () => void): Promise<{ dp: NftablesDataplane; plan: Plan; state: NodeState; planMs: number; applyMs: number; applyCpuMs: number }> {
  const dp = new NftablesDataplane({ pinRoot: `/bench-${n}-${transport}`, statePath: join(dir, `${n}-${transport}.json`), devices: ['eth0'], nodeAddresses: () => [], transport: transportOf(transport), syncSaveMax: 0,
    // the state file (O(N) JSON, written off the sync's path, coalesced) is measured apart below
    saveDelayMs: 1e9 });
  await dp.init();
  const state = nodeState({ services: n, endpointsPerService: 10 });
  let t0 = performance.now();
  const plan = buildPlan(state, undefined, { seed: SEED });
  const ops = diffPlans(undefined, plan);
  const planMs = ms(t0);
  beforeApply?.();
  t0 = performance.now();
  const c0 = process.cpuUsage();
  await dp.apply(ops, plan);
  const applyMs = ms(t0);
  return { dp, plan, state, planMs, applyMs, applyCpuMs: cpuMs(c0) };
}

async function main(): Promise<void> {
dir = mkdtempSync(join(tmpdir(), 'kbp-nft-bench-'));
const results: Record<string, unknown> = {};
try {
  const upstreamOnly = process.argv.includes('--upstream-only');
  for (const transport of (upstreamOnly ? [] : process.argv.includes('--lib-only') ? ['bulk', 'libnftables'] : ['bulk', 'libnftables', 'nft-spawn']) as Via[]) {
    for (const n of quick ? [1000] : [1000, 10000]) {
      runCpuMs = 0;
      lastBulk = undefined;
      const { dp, plan, state, planMs, applyMs, applyCpuMs } = await fullSync(n, transport, () => { runCpuMs = 0; });
      // our TypeScript's share: the apply's CPU but libnftables' (the structure) and the addon's (encoding, kernel)
      const lb = lastBulk as BulkStats | undefined; // set by the wrapped transport during the apply
      const fullModelCpuMs = transport === 'bulk' && lb ? Math.round(applyCpuMs - runCpuMs - lb.encodeCpuMs - lb.kernelCpuMs) : undefined;
      // one endpoint change at a time: a Service loses its first endpoint, then gets it back
      const samples: number[] = [], cpu: number[] = [];
      let prev = plan;
      for (let i = 0; i < (quick ? 10 : 40); i++) {
        const k = (i * 7919) % n;
        const f = state.frontends[k]!;
        const changed = i % 2 === 0 ? { ...f, backends: f.backends.slice(1) } : f;
        const next = buildPlan({ frontends: state.frontends.map((x, j) => (j === k ? changed : x)) }, prev, { seed: SEED });
        const ops = diffPlans(prev, next);
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        await dp.apply(ops, next);
        samples.push(ms(t0));
        cpu.push(cpuMs(c0));
        prev = next;
      }
      await dp.cleanup();
      const r = { services: n, endpoints: 10, planMs, fullSyncApplyMs: applyMs, fullSyncApplyCpuMs: applyCpuMs, fullSyncModelCpuMs: fullModelCpuMs,
        oneChangeApplyMs: { p50: pct(samples, 50), p99: pct(samples, 99), max: Math.max(...samples) },
        oneChangeApplyCpuMs: { p50: pct(cpu, 50), p99: pct(cpu, 99) }, loadAverage: (await import('node:os')).loadavg()[0] };
      results[`${transport}/${n}`] = r;
      console.log(`${transport.padEnd(12)} N=${String(n).padEnd(6)} full sync: plan ${planMs} ms + apply ${applyMs} ms (cpu ${applyCpuMs} ms${fullModelCpuMs !== undefined ? `, model ${fullModelCpuMs}` : ''}); one endpoint change: p50 ${r.oneChangeApplyMs.p50} ms (cpu ${r.oneChangeApplyCpuMs.p50}), p99 ${r.oneChangeApplyMs.p99} ms; load ${r.loadAverage?.toFixed(1) ?? '?'}`);
    }
  }
  // --upstream-n N: another size (upstream's 10,000-Service load alone takes 16-32 s of CPU quiet)
  const at = process.argv.indexOf('--upstream-n');
  const un = at > 0 ? Number(process.argv[at + 1]) : quick ? 1000 : 10000;
  const ar = process.argv.indexOf('--rounds');
  results[`vsUpstream/${un}`] = await versusUpstream(un, ar > 0 ? Number(process.argv[ar + 1]) : un > 3000 ? 2 : 3);
  console.log(`KBP_NFT_BENCH_JSON ${JSON.stringify(results)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
}

if (direct) await main();

type Row = { fullSyncApplyMs: number; fullSyncApplyCpuMs: number; fullSyncModelCpuMs?: number; oneChangeApplyMs: { p50: number; p99: number }; oneChangeApplyCpuMs: { p50: number }; loadAverage?: number };
type Mmm = { min: number; median: number; max: number };
type Vs = { services: number; rounds: number; upstream: { chains: number; rules: number; elements: number; applyCpuMs: Mmm; applyMs: Mmm }; ours: { applyCpuMs: Mmm; applyMs: Mmm; modelCpuMs: Mmm }; oursOverUpstreamCpu: Mmm; oursOverUpstreamWall: Mmm };

/** `npm run bench -- nftables`: this file in a network namespace of its own, its JSON recorded. */
const dataplaneBench = defineBench({
  name: 'nftables',
  title: 'nftables data plane: full sync and one endpoint change',
  description: 'NftablesDataplane.apply at N Services x 10 endpoints in a network namespace of its own (unshare -n): a full sync into a fresh table ' +
    '(elements sent by the addon in one netlink batch, the backend maps as one fan-out group per class: each key and target encoded once; structure through libnftables) ' +
    'and one endpoint change at a time (40 samples; element changes only: one addon batch, no libnftables context). ' +
    'Baselines in the same run: every element through libnftables (`nft_run_cmd_from_buffer`), and kube-proxy\'s own nftables ruleset for the same Services ' +
    '(a chain per Service and per endpoint, bench/baseline/nftables.ts), full syncs interleaved with ours. CPU is this process\'s (libnftables and the addon run in it); ' +
    '"model" is our TypeScript\'s share of it.',
  skip: () => (process.getuid?.() === 0 ? undefined : 'needs root (unshare -n, nftables)'),
  async run(ctx: BenchContext) {
    const args = [...(ctx.quick ? ['--quick'] : []), '--lib-only', '--upstream-n', ctx.quick ? '1000' : '3000', '--rounds', '3'];
    ctx.log(`running ${self} ${args.join(' ')} under unshare -n`);
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('unshare', ['-n', process.execPath, '--import=tsx', '--expose-gc', self, ...args],
        { env: { ...process.env, KBP_NFT_BENCH_NETNS: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d: string) => {
        text += d;
        for (const l of d.split('\n')) if (l && !l.startsWith('KBP_NFT_BENCH_JSON')) ctx.log(l);
      });
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`nftables bench exited ${code}`))));
    });
    const line = out.split('\n').find((l) => l.startsWith('KBP_NFT_BENCH_JSON '));
    if (!line) throw new Error('the nftables bench printed no results');
    const res = JSON.parse(line.slice('KBP_NFT_BENCH_JSON '.length)) as Record<string, Row | Vs>;
    for (const n of ctx.quick ? [1000] : [1000, 10000]) {
      const k = n >= 10000 ? `${n / 1000}k` : `${n}`;
      const b = res[`bulk/${n}`] as Row | undefined, l = res[`libnftables/${n}`] as Row | undefined;
      if (!b || !l) continue;
      ctx.metric({ name: `full sync ${k}: libnftables alone, cpu`, value: l.fullSyncApplyCpuMs, unit: 'ms', better: 'lower', note: 'every element parsed by libnftables: the baseline' });
      ctx.metric({ name: `full sync ${k}: cpu`, value: b.fullSyncApplyCpuMs, unit: 'ms', better: 'lower', baseline: `full sync ${k}: libnftables alone, cpu`,
        ...(n === 10000 && { target: '< 1 s', met: b.fullSyncApplyCpuMs < 1000 }), note: `model (TypeScript) ${b.fullSyncModelCpuMs ?? '?'} ms; load ${b.loadAverage?.toFixed(1) ?? '?'}` });
      ctx.metric({ name: `full sync ${k}: wall`, value: b.fullSyncApplyMs, unit: 'ms', better: 'lower', note: 'the machine is shared: wall time follows its load' });
      ctx.metric({ name: `one endpoint change ${k}: p50`, value: b.oneChangeApplyMs.p50, unit: 'ms', better: 'lower', note: `cpu p50 ${b.oneChangeApplyCpuMs.p50} ms` });
      ctx.metric({ name: `one endpoint change ${k}: p99`, value: b.oneChangeApplyMs.p99, unit: 'ms', better: 'lower', ...(n === 10000 && { target: 'a few ms' }) });
    }
    for (const [key, v] of Object.entries(res)) {
      if (!key.startsWith('vsUpstream/')) continue;
      const u = v as Vs;
      const f = (x: Mmm) => `${x.min}/${x.median}/${x.max}`;
      ctx.metric({ name: `full sync ${u.services}: kube-proxy's ruleset, cpu (median)`, value: u.upstream.applyCpuMs.median, unit: 'ms', better: 'lower',
        note: `${u.upstream.chains} chains, ${u.upstream.rules} rules, ${u.upstream.elements} elements; min/median/max ${f(u.upstream.applyCpuMs)} ms` });
      ctx.metric({ name: `full sync ${u.services}: ours, cpu (median)`, value: u.ours.applyCpuMs.median, unit: 'ms', better: 'lower', baseline: `full sync ${u.services}: kube-proxy's ruleset, cpu (median)`,
        note: `${u.rounds} rounds interleaved; per-round ratio ours/upstream cpu min/median/max ${f(u.oursOverUpstreamCpu)}, wall ${f(u.oursOverUpstreamWall)}` });
    }
  },
});

// ---- the nftables mode through the real agent --------------------------------------------------
// `npm run bench -- nftables-agent`: the agent (`run --mode nftables --manifests DIR`, bundled as a
// user runs it) in a network namespace of the lab, over a folder with one file per Service (its
// Service and EndpointSlice; every tenth a NodePort), N Services x 10 endpoints. After its first sync,
// one file at a time is replaced (written aside, renamed into place) with one endpoint's address
// changed, spaced by minSyncPeriod (1 s) so each is a sync of its own; per change the agent's own
// kubeproxy_sync_proxy_rules_duration_seconds (the _sum delta over a _count delta of exactly one) and
// its CPU. Each change is checked in the kernel: the frontend's backend maps hold the new address.

const AGENT_E = 10;
const AGENT_MIN_SYNC_MS = 1000;

interface AgentResult {
  n: number;
  /** process start to the first sync holding every Service's frontends (/metrics polled every 0.5 s) */
  firstSyncMs: number;
  /** the agent's user + system CPU up to then */
  firstSyncCpuMs: number;
  /** the first sync's own duration (the metric's _sum when its _count is 1) */
  firstSyncDurationMs: number;
  sync: TimeStats;
  cpuPerChange: number;
  skipped: number;
}

/** CPU ms on each of a process's threads, by thread name (the main thread as 'main'): schedstat */
function threadCpuMs(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const cpuNs = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]);
      const k = tid === String(pid) ? 'main' : readFileSync(`/proc/${pid}/task/${tid}/comm`, 'latin1').trim();
      out[k] = (out[k] ?? 0) + cpuNs / 1e6;
    } catch { /* the thread ended */ }
  }
  return out;
}

function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function agentMetrics(lab: Lab, ns: Netns): Promise<{ count: number; sum: number; frontends: number }> {
  const m = await lab.exec(ns, 'curl', ['-s', '--max-time', '5', 'http://127.0.0.1:10249/metrics'], { allowFail: true });
  const num = (re: RegExp) => Number(re.exec(m.stdout)?.[1] ?? NaN);
  return {
    count: num(/^kubeproxy_sync_proxy_rules_duration_seconds_count\{ip_family="IPv4"\} (\S+)/m),
    sum: num(/^kubeproxy_sync_proxy_rules_duration_seconds_sum\{ip_family="IPv4"\} (\S+)/m),
    frontends: num(/^kubebpfproxy_frontends (\d+)/m),
  };
}

async function agentNftables(ctx: BenchContext, lab: Lab, n: number, samples: number, cli: string, tag: string): Promise<AgentResult> {
  const shape: ClusterShape = { services: n, endpointsPerService: AGENT_E, nodePortEvery: 10 };
  const file = (i: number, v: number) => `${stringify(service(i, shape))}---\n${stringify(endpointSlice(i, shape, v))}`;
  const ns = await lab.addNetns(`n${tag}${n}`);
  await lab.ip(ns, ['link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1']);
  await lab.ip(ns, ['link', 'set', 'e0', 'up']);
  await lab.ip(ns, ['link', 'set', 'e1', 'up']);
  await lab.addAddress(ns, 'e0', `${NODE_IP}/24`);
  const mdir = mkdtempSync(join(tmpdir(), `${lab.prefix}n${tag}${n}-`));
  lab.onCleanup(`manifests ${mdir}`, () => rmSync(mdir, { recursive: true, force: true }));
  writeFileSync(join(mdir, 'node.yaml'), stringify(node()));
  for (let i = 0; i < n; i++) writeFileSync(join(mdir, `svc-${i}.yaml`), file(i, 0));
  const pins = lab.addPinRoot(`n${tag}${n}`);
  lab.onCleanup(`cleanup nftables ${pins}`, async () => {
    await lab.exec(ns, process.execPath, [cli, 'cleanup', '--mode', 'nftables', '--bpffs', pins], { allowFail: true });
  });
  const started = Date.now();
  // KBP_BENCH_NFT_AGENT_PROF_DIR: the agent runs under --cpu-prof (written there when it exits); the
  // changes' window is logged in CLOCK_MONOTONIC us, the clock of the profile's samples
  const profDir = process.env.KBP_BENCH_NFT_AGENT_PROF_DIR;
  if (profDir) mkdirSync(profDir, { recursive: true });
  const prof = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=nft-${tag}${n}-${Date.now()}.cpuprofile`] : [];
  const agent: LabProcess = lab.spawn(ns, process.execPath, [...prof, cli, 'run', '--mode', 'nftables', '--manifests', mdir, '--node-name', NODE_NAME,
    '--node-ip', NODE_IP, '--bpffs', pins, '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249', '--v', '2'], { what: `agent nftables ${n}` });
  // the agent's 'sync steps' lines (--v 2 logs every sync's): where a change's sync spends its time
  const steps = agentLogLines(agent, 'sync steps') as Array<Record<string, number | boolean>>;
  try {
    let first: { count: number; sum: number; frontends: number } | undefined;
    while (Date.now() - started < 600_000) {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().slice(-1500)}`);
      const m = await agentMetrics(lab, ns);
      if (m.count >= 1 && m.frontends >= n) {
        first = m;
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    if (!first) throw new Error(`agent (nftables) with ${n} Services: no full sync within 600 s`);
    const firstSyncMs = Date.now() - started, firstSyncCpuMs = procCpuMs(agent.pid);
    const firstSyncDurationMs = first.count === 1 ? first.sum * 1000 : NaN;
    await new Promise((r) => setTimeout(r, 2000));
    let before = await agentMetrics(lab, ns);
    const cpu0 = procCpuMs(agent.pid), threads0 = threadCpuMs(agent.pid), mono0 = process.hrtime.bigint();
    const syncMs: number[] = [];
    let skipped = 0;
    const variant = new Map<number, number>();
    for (let k = 0; k < samples; k++) {
      if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().slice(-1500)}`);
      const i = (k * 7919 + 13) % n;
      const v = variant.get(i) ? 0 : 1;
      variant.set(i, v);
      const want = v ? podIp(i, AGENT_E - 1 + v, AGENT_E) : podIp(i, 0, AGENT_E);
      const tmp = join(mdir, `.svc-${i}.yaml.tmp`);
      writeFileSync(tmp, file(i, v));
      const t0 = performance.now();
      renameSync(tmp, join(mdir, `svc-${i}.yaml`));
      // the change's sync: one more count (bounded wait), then the next change after minSyncPeriod
      let after = before;
      while (performance.now() - t0 < 20_000) {
        await new Promise((r) => setTimeout(r, performance.now() - t0 < AGENT_MIN_SYNC_MS ? AGENT_MIN_SYNC_MS + 150 - (performance.now() - t0) : 200));
        after = await agentMetrics(lab, ns);
        if (after.count > before.count) break;
      }
      if (after.count === before.count) throw new Error(`change ${k} (Service ${i}): no sync within 20 s`);
      if (after.count - before.count === 1) syncMs.push((after.sum - before.sum) * 1000);
      else skipped++;
      before = after;
      // in the kernel: one of the ClusterIP's backend maps holds the new address
      const key = `${clusterIp(i)} . tcp . 80`;
      const cmds = Array.from({ length: AGENT_E }, (_, j) => `get element inet ${NFT_TABLE} backends-int4-${j} { ${key} }`).join('; ');
      // (nft fetches each map whole to answer: slow at 10,000 under load; a generous bound, one retry)
      let got = await lab.exec(ns, '/usr/sbin/nft', [cmds], { allowFail: true, timeoutMs: 60_000 });
      if (!got.stdout.includes(`${want} . 8080`)) got = await lab.exec(ns, '/usr/sbin/nft', [cmds], { allowFail: true, timeoutMs: 60_000 });
      if (!got.stdout.includes(`${want} . 8080`)) throw new Error(`${tag}${n}: change ${k} (Service ${i}): the table does not send ${key} to ${want}: rc ${got.code} ${got.stdout.slice(0, 500)} ${got.stderr.slice(0, 300)}`);
    }
    const cpuPerChange = (procCpuMs(agent.pid) - cpu0) / samples;
    const threads1 = threadCpuMs(agent.pid), mono1 = process.hrtime.bigint();
    const perThread = Object.entries(threads1).map(([k, v]) => [k, (v - (threads0[k] ?? 0)) / samples] as const).filter(([, v]) => v >= 0.05).sort((a, b) => b[1] - a[1]);
    ctx.log(`${tag}${n} Services (nftables agent): CPU per change by thread, ms: ${perThread.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}` +
      `${profDir ? `; the changes' window in CLOCK_MONOTONIC us ${mono0 / 1000n}-${mono1 / 1000n}` : ''}`);
    const partial = steps.filter((l) => l.full === false);
    if (partial.length) {
      const keys = ['totalMs', 'cpuMs', 'threadCpuMs', 'runQueueMs', 'compileMs', 'fitMs', 'planMs', 'diffMs', 'applyMs', 'afterMs', 'otherMs'];
      ctx.log(`${tag}${n} Services (nftables agent): ${partial.length} partial syncs by step, median ms: ${keys.map((k) => `${k.replace(/Ms$/, '')} ${stats2(partial.map((l) => Number(l[k]))).median.toFixed(2)}`).join(', ')}`);
      // the slowest one whole: where a p99 went (its steps, the run queue, GC)
      const worst = partial.reduce((a, b) => (Number(b.totalMs) > Number(a.totalMs) ? b : a));
      ctx.log(`${tag}${n} Services (nftables agent): the slowest partial sync: ${JSON.stringify(worst)}`);
    }
    const sync = stats2(syncMs.length ? syncMs : [NaN]);
    ctx.log(`${tag}${n} Services (nftables agent): first sync ${firstSyncMs} ms after start (its duration ${firstSyncDurationMs.toFixed(0)} ms, agent CPU ${firstSyncCpuMs} ms); ` +
      `one change: sync p50 ${sync.median.toFixed(2)} p99 ${sync.p99.toFixed(2)} ms, agent CPU ${cpuPerChange.toFixed(1)} ms per change (${syncMs.length} syncs, ${skipped} not counted)`);
    return { n, firstSyncMs, firstSyncCpuMs, firstSyncDurationMs, sync, cpuPerChange, skipped };
  } finally {
    agent.child.kill('SIGTERM');
    await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 5000))]);
  }
}

export const agentBench = defineBench({
  name: 'nftables-agent',
  title: 'nftables mode through the real agent: first sync and one endpoint change',
  description: 'The agent (run --mode nftables --manifests DIR, bundled) in a network namespace of its own over one file per Service, N Services x 10 endpoints ' +
    '(every tenth a NodePort); then one file at a time replaced with one endpoint changed, 1 s apart (minSyncPeriod): the agent\'s own ' +
    'kubeproxy_sync_proxy_rules_duration_seconds per change, each change checked in the table. KBP_BENCH_NFT_AGENT_BASE_CLI: another build of the ' +
    'agent measured right before this one at each size (the same-run baseline).',
  skip: () => (process.getuid?.() === 0 ? undefined : 'needs root (network namespaces, nftables)'),
  async run(ctx: BenchContext) {
    const env = process.env.KBP_BENCH_NFT_AGENT_SIZES;
    const sizes = env ? env.split(',').map(Number) : ctx.quick ? [1000] : [1000, 10_000];
    const samples = Number(process.env.KBP_BENCH_NFT_AGENT_CHANGES ?? (ctx.quick ? 10 : 30));
    const rounds = Math.max(1, Number(process.env.KBP_BENCH_NFT_AGENT_ROUNDS ?? 1));
    const cli = bundle(ctx);
    const baseCli = process.env.KBP_BENCH_NFT_AGENT_BASE_CLI;
    const lab = new Lab('nftagent');
    const ours = new Map<number, AgentResult[]>(), base = new Map<number, AgentResult[]>();
    try {
      for (const n of sizes) {
        ours.set(n, []);
        base.set(n, []);
        for (let r = 0; r < rounds; r++) {
          const tag = rounds > 1 ? `r${r + 1}` : '';
          if (baseCli) base.get(n)!.push(await agentNftables(ctx, lab, n, samples, baseCli, `${tag}b`));
          ours.get(n)!.push(await agentNftables(ctx, lab, n, samples, cli, tag));
        }
      }
    } finally {
      await lab.cleanup();
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1]!;
    const ratio = (o: AgentResult[], b: AgentResult[], f: (r: AgentResult) => number): string => {
      const v = o.map((r, i) => f(r) / f(b[i]!)).filter(Number.isFinite).sort((x, y) => x - y);
      return v.length ? `; per-round ratio to the base build min/median/max ${v[0]!.toFixed(2)}/${v[(v.length - 1) >> 1]!.toFixed(2)}/${v[v.length - 1]!.toFixed(2)}` : '';
    };
    for (const [n, rs] of ours) {
      const k = n >= 1000 ? `${n / 1000}k` : `${n}`;
      const b = base.get(n) ?? [];
      const figs: Array<[string, (r: AgentResult) => number, string, Record<string, unknown>]> = [
        [`one endpoint change ${k}: sync duration p50`, (r) => r.sync.median, 'the agent\'s kubeproxy_sync_proxy_rules_duration_seconds, one sync per change', {}],
        [`one endpoint change ${k}: sync duration p99`, (r) => r.sync.p99, '', n >= 10_000 ? { target: 'a few ms' } : {}],
        [`one endpoint change ${k}: agent CPU per change`, (r) => r.cpuPerChange, 'user + system CPU of the agent over the changes (folder watch, syncs, one /metrics scrape each) over their count', {}],
        [`first sync ${k}: its duration`, (r) => r.firstSyncDurationMs, 'the first sync\'s own kubeproxy_sync_proxy_rules_duration_seconds (compile, plan, the nftables transaction)', {}],
        [`first sync ${k}: from start`, (r) => r.firstSyncMs, 'process start to /metrics showing every frontend (polled every 0.5 s)', {}],
      ];
      for (const [name, f, note, extra] of figs) {
        ctx.metric({ name, value: med(rs.map(f)), unit: 'ms', better: 'lower', ...extra,
          note: `${note}${rs.length > 1 ? ` (median of ${rs.length} rounds)` : ''}${b.length ? `; base build ${med(b.map(f)).toFixed(2)} ms${ratio(rs, b, f)}` : ''}` });
      }
    }
  },
});

export default [dataplaneBench, agentBench];
