// The first changes after a start through the real agent, per change: the agent's own sync steps
// (`--v 2`) and, with --trace, every V8 deoptimization in the change's window (the agent run with
// `--trace-deopt` into a file of its own; the window is the file's growth from the stub's write of
// the change to the agent's 'sync steps' line of the sync that holds it). Not a bench (no report):
// a probe for issue 10's first change after a 100,000-Service start (docs/PERF.md, session 22).
//   node --import=tsx bench/first-change-agent.ts --n 100000 --changes 5 --rounds 2 --out DIR [--trace] \
//     [--settle-s 20] [--kind endpoint|service] CLI [CLI_B]
// --kind service: each change creates a Service (and its slice) past the N, the next deletes it; the
// change's syncs are every sync with ops in the gap after it (a Service and its slice may come apart).
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
  },
});
if (!clis.length) throw new Error('usage: first-change-agent.ts [--n N] [--changes K] [--rounds R] [--out DIR] [--trace] CLI [CLI...]');
const n = Number(o.n), changes = Number(o.changes), rounds = Number(o.rounds), settleMs = Number(o['settle-s']) * 1000, gapMs = Number(o['gap-ms']);
const out = resolve(o.out!);
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
        '--bpffs', pins, '--socket-lb', 'false', '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249', ...mapMaxFlags(n), '--v', '2'],
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
        for (let k = 0; k < changes && !stopping; k++) {
          const i = Math.floor(((k + 0.5) / changes) * n);
          const perf = o.perf && k === 0 ? spawn('/usr/bin/perf', ['record', '-F', '10000', '-g', '-p', String(agent.pid), '-o', join(out, `${tag}.perf.data`)], { stdio: 'ignore' }) : undefined;
          if (perf) await sleep(1000);
          const had = steps.length, size0 = statSync(trace).size;
          // a variant other than the stub's current one for that slice (the runs change the same Services)
          const v = (variant.get(i) ?? 0) % 3 + 1;
          variant.set(i, v);
          // a Service past the N that no other run uses: odd, so never a NodePort (gen.ts isNodePort)
          const created = n + 1 + 2 * Math.floor(k / 2) + 2 * changes * r;
          stub.child.stdin!.write(o.kind === 'service' ? `${k % 2 ? 'delete' : 'create'} ${created}\n` : `change ${i} ${v}\n`);
          const ack = await until('stub ack', () => fromStub.shift(), 30_000, stub);
          let s = await until(`change ${k}`, () => steps.slice(had).find((x) => Number(x.ops) > 0 && !x.full), 60_000, agent);
          if (o.kind === 'service') {
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
          res.push({ k, at: ack.at, endedAt: s.endedAt, totalMs: s.totalMs, threadCpuMs: s.threadCpuMs, compileMs: s.compileMs, fitMs: s.fitMs, planMs: s.planMs, diffMs: s.diffMs,
            applyMs: s.applyMs, afterMs: s.afterMs, otherMs: s.otherMs, queuedMs: s.queuedMs, runQueueMs: s.runQueueMs, minorFaults: s.minorFaults,
            gcMs: s.gcMs, syncs: steps.length - had, ...(o.kind === 'service' && { op: k % 2 ? 'delete' : 'create', opSyncs: s.opSyncs, totalMsAll: s.totalMsAll }), deopts: d.length, deoptList: d.map((x) => `${x.fn} [${x.kind}: ${x.reason}]`) });
          await sleep(gapMs);
        }
        // CLOCK_MONOTONIC (a --cpu-prof profile's clock, us) minus the epoch (the log's endedAt), in ms
        const monoMinusEpochMs = Number(process.hrtime.bigint()) / 1e6 - (performance.timeOrigin + performance.now());
        const line = { cli, round: r, n, monoMinusEpochMs, firstSyncMs: Number(first.endedAt) - started, load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), warmed, changes: res };
        writeFileSync(join(out, `${tag}.json`), JSON.stringify(line, null, 1));
        console.log(JSON.stringify({ cli, round: r, load: line.load, firstSyncMs: line.firstSyncMs,
          changes: res.map((c) => ({ k: c.k, ...(c.op !== undefined && { op: c.op, totalMsAll: c.totalMsAll }), totalMs: c.totalMs, applyMs: c.applyMs, threadCpuMs: c.threadCpuMs, runQueueMs: c.runQueueMs, deopts: c.deopts })) }));
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
