// The first changes after a start through the real agent, per change: the agent's own sync steps
// (`--v 2`) and, with --trace, every V8 deoptimization in the change's window (the agent run with
// `--trace-deopt` into a file of its own; the window is the file's growth from the stub's write of
// the change to the agent's 'sync steps' line of the sync that holds it). Not a bench (no report):
// a probe for issue 10's first change after a 100,000-Service start (docs/perf-log.md, session 22).
//   node --import=tsx bench/first-change-agent.ts --n 100000 --changes 5 --rounds 2 --out DIR [--trace] \
//     [--settle-s 20] [--kind endpoint|service|KIND,...|all] [--min-sync-ms MS] CLI [CLI_B]
// --kind service: each change creates a Service (and its slice) past the N, the next deletes it; the
// change's syncs are every sync with ops in the gap after it (a Service and its slice may come apart).
// The other kinds (the stub's `mut`, bench/apiserver-stub.ts) change a Service or its slices in
// pairs, made then undone on the same Service (ep-add, ep-term, ep-notready, slice, port, type, etp,
// affinity, label), or move one endpoint of one Service of 100 endpoints (ep100); a change stands
// for the slowest of every sync in the gap after it (ops or not: a label alone may make none).
// Several kinds (a comma list, or all) run in turn on one agent, `--changes` each, with a line per
// kind (p50 / p99 / max of the sync and of its thread CPU). --min-sync-ms: the agent's
// --min-sync-period (kube-proxy's 1 s by default), so that changes can come closer than 1 s apart.
// Several CLIs (bundles) run in turn, the order alternating per round, against one stub API server
// (bench/apiserver-stub.ts) in one network namespace; each agent run has a fresh pin root. No
// /metrics scrape during the changes (a scrape runs the agent's refreshStats on the same thread):
// the sync's end is its log line. One JSON line per run on stdout, and DIR/<round>-<k>.json.
import { appendFileSync, mkdirSync, statSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Lab, type LabProcess } from '../testing/netns.js';
import { mapMaxFlags } from './agent.bench.js';
import { NODE_IP, NODE_NAME } from './gen.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values: o, positionals: clis } = parseArgs({
  allowPositionals: true,
  options: {
    n: { type: 'string', default: '10000' }, changes: { type: 'string', default: '5' }, rounds: { type: 'string', default: '1' },
    out: { type: 'string', default: '/tmp/first-change-agent' }, trace: { type: 'boolean', default: false },
    'settle-s': { type: 'string', default: '20' }, 'gap-ms': { type: 'string', default: '1500' }, v8: { type: 'string', default: '' },
    // perf record of the agent (kernel and user stacks, 10 kHz) over the first change's window
    perf: { type: 'boolean', default: false },
    kind: { type: 'string', default: 'endpoint' },
    'min-sync-ms': { type: 'string', default: '' },
  },
});
if (!clis.length) throw new Error('usage: first-change-agent.ts [--n N] [--changes K] [--rounds R] [--out DIR] [--trace] CLI [CLI...]');
const n = Number(o.n), changes = Number(o.changes), rounds = Number(o.rounds), settleMs = Number(o['settle-s']) * 1000, gapMs = Number(o['gap-ms']);
const out = resolve(o.out!);
const MUT_KINDS = ['ep-add', 'ep-term', 'ep-notready', 'slice', 'port', 'type', 'etp', 'affinity', 'label', 'ep100'];
const kinds = o.kind === 'all' ? ['endpoint', 'service', ...MUT_KINDS] : o.kind!.split(',');
for (const k of kinds) if (k !== 'endpoint' && k !== 'service' && !MUT_KINDS.includes(k)) throw new Error(`--kind ${k}: not one of endpoint, service, ${MUT_KINDS.join(', ')}, all`);
/** the q-quantile of sorted values (nearest rank) */
const q = (v: readonly number[], f: number): number => v[Math.min(v.length - 1, Math.max(0, Math.ceil(f * v.length) - 1))]!;
/** the stub's command for change k of a kind, at N Services: a Service spread over the N by the change's pair */
function mutCommand(kind: string, k: number, r: number): string {
  if (kind === 'ep100') return `mut ep100 ${Math.floor(n / 3)} ${k + 1 + changes * r}`;
  const pairs = Math.max(1, Math.ceil(changes / 2)), pair = Math.floor(k / 2);
  // type and etp take NodePort Services (gen.ts isNodePort: every 10th, the first 2,768)
  const np = Math.min(Math.floor(n / 10), 2768);
  const i = kind === 'type' || kind === 'etp' ? 10 * Math.floor(((pair + 0.5) / pairs) * np) : Math.floor(((pair + 0.5) / pairs) * n);
  return `mut ${kind} ${i} ${k % 2 ? 0 : 1}`;
}
mkdirSync(out, { recursive: true });
const DEFAULT_V8 = '--max-semi-space-size=16 --no-memory-reducer --disable-warning=DEP0169';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** JSON lines of a stream, each handed to `on` */
function jsonLines(stream: NodeJS.ReadableStream, on: (l: Record<string, unknown>) => void, raw?: (s: string) => void): void {
  let buf = '';
  stream.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      raw?.(l);
      if (l.startsWith('{')) { try { on(JSON.parse(l) as Record<string, unknown>); } catch { /* not ours */ } }
    }
  });
}

async function until<T>(what: string, f: () => T | undefined, timeoutMs: number, p?: LabProcess): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (p && p.child.exitCode !== null) throw new Error(`${what}: ${p.what} exited: ${p.output().slice(-2000)}`);
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(5);
  }
}

export interface Deopt { fn: string; kind: string; reason: string }
/** the deopts in a --trace-deopt text: one per "[bailout (kind: K, reason: R): begin. deoptimizing ... <JSFunction NAME" */
export function deopts(text: string): Deopt[] {
  const r: Deopt[] = [];
  for (const m of text.matchAll(/\[bailout \(kind: ([^,]+), reason: ([^)]*)\): begin\. deoptimizing [^<]*<JSFunction ([^ >]*)/g)) r.push({ kind: m[1]!, reason: m[2]!, fn: m[3] || '(anon)' });
  return r;
}

const lab = new Lab('fcagent');
let stopping = false;
process.on('SIGINT', () => { stopping = true; });
try {
  const ns = await lab.addNetns(`f${n}`);
  await lab.ip(ns, ['link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1']);
  await lab.ip(ns, ['link', 'set', 'e0', 'up']);
  await lab.ip(ns, ['link', 'set', 'e1', 'up']);
  await lab.addAddress(ns, 'e0', `${NODE_IP}/24`);
  const stub = lab.spawn(ns, process.execPath, ['--import=tsx', join(here, 'apiserver-stub.ts'), '127.0.0.1', String(n)], { what: `stub apiserver ${n}`, stdin: true });
  const fromStub: Record<string, unknown>[] = [];
  jsonLines(stub.child.stdout!, (l) => fromStub.push(l));
  const ready = await until('stub ready', () => fromStub.shift(), 900_000, stub);
  const kubeconfig = String(ready.kubeconfig);
  const variant = new Map<number, number>();
  for (let r = 0; r < rounds && !stopping; r++) {
    const order = r % 2 ? [...clis].reverse() : clis;
    for (const cli of order) {
      if (stopping) break;
      const tag = `${r}-${clis.indexOf(cli)}`;
      const trace = join(out, `${tag}.deopt`);
      const logFile = join(out, `${tag}.log`);
      writeFileSync(trace, '');
      writeFileSync(logFile, '');
      const pins = lab.addPinRoot(`p${tag.replace('-', '')}`);
      const env = `${DEFAULT_V8}${o.v8 ? ` ${o.v8}` : ''}${o.trace ? ` --trace-deopt --redirect-code-traces --redirect-code-traces-to=${trace}` : ''}`;
      process.env.KBP_V8_FLAGS = env;
      const started = Date.now();
      const agent = lab.spawn(ns, process.execPath, [cli, 'run', '--kubeconfig', kubeconfig, '--node-name', NODE_NAME, '--node-ip', NODE_IP,
        '--bpffs', pins, '--socket-lb', 'false', '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249', ...mapMaxFlags(n), '--v', '2',
        ...(o['min-sync-ms'] ? ['--min-sync-period', `${o['min-sync-ms']}ms`] : [])],
      { what: `agent ${tag}` });
      const steps: Record<string, unknown>[] = [];
      let warmed: Record<string, unknown> | undefined;
      jsonLines(agent.child.stderr!, (l) => {
        if (l.msg === 'sync steps') steps.push(l);
        if (l.msg === 'one-change path warmed') warmed = l;
      }, (s) => appendFileSync(logFile, s + '\n'));
      // stdout too (V8's --trace-gc and the like)
      jsonLines(agent.child.stdout!, () => {}, (s) => appendFileSync(logFile, `[stdout ${Date.now()}] ${s}\n`));
      try {
        const first = await until('first sync', () => steps.find((s) => s.full && Number(s.frontends) >= n), 900_000, agent);
        await until('warm-up', () => warmed, 120_000, agent);
        await sleep(settleMs);
        const res: Record<string, unknown>[] = [];
        const perKind: Record<string, unknown>[] = [];
        for (const kind of kinds) {
        const res0 = res.length;
        for (let k = 0; k < changes && !stopping; k++) {
          const i = Math.floor(((k + 0.5) / changes) * n);
          const perf = o.perf && k === 0 ? spawn('/usr/bin/perf', ['record', '-F', '10000', '-g', '-p', String(agent.pid), '-o', join(out, `${tag}.perf.data`)], { stdio: 'ignore' }) : undefined;
          if (perf) await sleep(1000);
          const had = steps.length, size0 = statSync(trace).size;
          // a variant other than the stub's current one for that slice (the runs change the same Services)
          const v = (variant.get(i) ?? 0) % 3 + 1;
          // (only a change that the stub applies moves it: else the next run's change is none)
          if (kind === 'endpoint') variant.set(i, v);
          // a Service past the N that no other run uses: odd, so never a NodePort (gen.ts isNodePort)
          const created = n + 1 + 2 * Math.floor(k / 2) + 2 * changes * r;
          const mut = kind !== 'service' && kind !== 'endpoint';
          stub.child.stdin!.write(kind === 'service' ? `${k % 2 ? 'delete' : 'create'} ${created}\n` : mut ? `${mutCommand(kind, k, r)}\n` : `change ${i} ${v}\n`);
          const ack = await until('stub ack', () => fromStub.shift(), 30_000, stub);
          if (ack.ok === false) throw new Error(`stub: ${String(ack.error)}`);
          let s: Record<string, unknown>;
          if (mut) {
            // every sync in the gap, with ops or not (a label alone: none, or a sync without ops)
            await sleep(gapMs);
            const all = steps.slice(had).filter((x) => !x.full);
            s = all.length ? all.reduce((a, b) => (Number(b.totalMs) > Number(a.totalMs) ? b : a)) : { totalMs: undefined };
            s = { ...s, opSyncs: all.length, totalMsAll: all.map((x) => x.totalMs) };
          } else s = await until(`change ${k}`, () => steps.slice(had).find((x) => Number(x.ops) > 0 && !x.full), 60_000, agent);
          if (kind === 'service') {
            // every sync of the change: the slowest stands for it, with their count
            await sleep(Math.min(gapMs, 1000));
            const all = steps.slice(had).filter((x) => Number(x.ops) > 0 && !x.full);
            s = all.reduce((a, b) => (Number(b.totalMs) > Number(a.totalMs) ? b : a));
            s = { ...s, opSyncs: all.length, totalMsAll: all.map((x) => x.totalMs) };
          }
          await sleep(20); // the trace's last lines
          if (perf) {
            perf.kill('SIGINT');
            await new Promise((r) => perf.once('exit', r));
          }
          const text = readFileSync(trace, 'utf8').slice(size0);
          const d = deopts(text);
          res.push({ kind, k, at: ack.at, endedAt: s.endedAt, totalMs: s.totalMs, threadCpuMs: s.threadCpuMs, compileMs: s.compileMs, fitMs: s.fitMs, planMs: s.planMs, diffMs: s.diffMs,
            applyMs: s.applyMs, afterMs: s.afterMs, otherMs: s.otherMs, queuedMs: s.queuedMs, runQueueMs: s.runQueueMs, minorFaults: s.minorFaults,
            gcMs: s.gcMs, ops: s.ops, syncs: steps.length - had, ...(kind === 'service' && { op: k % 2 ? 'delete' : 'create' }), ...(kind !== 'endpoint' && { opSyncs: s.opSyncs, totalMsAll: s.totalMsAll }), deopts: d.length, deoptList: d.map((x) => `${x.fn} [${x.kind}: ${x.reason}]`) });
          if (!mut) await sleep(gapMs);
        }
        if (kind === 'ep100' && !stopping) {
          // Service back to 10 endpoints for the next run (not measured)
          stub.child.stdin!.write(`mut ep100 ${Math.floor(n / 3)} 0\n`);
          await until('stub ack', () => fromStub.shift(), 30_000, stub);
          await sleep(gapMs);
        }
        const mine = res.slice(res0), tot = mine.map((c) => Number(c.totalMs)).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
        const cpu = mine.map((c) => Number(c.threadCpuMs)).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
        const worst = mine.reduce<Record<string, unknown> | undefined>((a, b) => (!a || Number(b.totalMs) > Number(a.totalMs) ? b : a), undefined);
        const sum = { kind, changes: mine.length, withSync: tot.length, p50: q(tot, 0.5), p99: q(tot, 0.99), max: tot.at(-1), cpuP50: q(cpu, 0.5), cpuP99: q(cpu, 0.99), cpuMax: cpu.at(-1),
          over5: tot.filter((x) => x > 5).length, worst: worst && { k: worst.k, totalMs: worst.totalMs, threadCpuMs: worst.threadCpuMs, compileMs: worst.compileMs, fitMs: worst.fitMs, planMs: worst.planMs,
            diffMs: worst.diffMs, applyMs: worst.applyMs, afterMs: worst.afterMs, otherMs: worst.otherMs, runQueueMs: worst.runQueueMs, gcMs: worst.gcMs, ops: worst.ops } };
        perKind.push(sum);
        console.log(JSON.stringify({ cli, round: r, load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), ...sum }));
        }
        // CLOCK_MONOTONIC (a --cpu-prof profile's clock, us) minus the epoch (the log's endedAt), in ms
        const monoMinusEpochMs = Number(process.hrtime.bigint()) / 1e6 - (performance.timeOrigin + performance.now());
        const line = { cli, round: r, n, monoMinusEpochMs, firstSyncMs: Number(first.endedAt) - started, load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), warmed, kinds: perKind, changes: res };
        writeFileSync(join(out, `${tag}.json`), JSON.stringify(line, null, 1));
        if (kinds.length === 1) console.log(JSON.stringify({ cli, round: r, load: line.load, firstSyncMs: line.firstSyncMs,
          changes: res.map((c) => ({ kind: c.kind, k: c.k, ...(c.op !== undefined && { op: c.op, totalMsAll: c.totalMsAll }), totalMs: c.totalMs, applyMs: c.applyMs, threadCpuMs: c.threadCpuMs, runQueueMs: c.runQueueMs, deopts: c.deopts })) }));
      } finally {
        agent.child.kill('SIGTERM');
        await Promise.race([agent.exited, sleep(15_000)]);
        if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
        await lab.exec(ns, process.execPath, [cli, 'cleanup', '--bpffs', pins], { allowFail: true });
      }
    }
  }
} finally {
  await lab.cleanup();
}
void existsSync;
