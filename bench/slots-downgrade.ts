// What an earlier build's agent does at its start over this build's pins, in each window of the
// write of lb_slots after the first sync (docs/perf-log.md, session 22, p22slots). Such an agent (75dca1d
// and before) makes lb_members exactly lb_slots' pairs before it attaches: a pair missing there is a
// flow reset on its next packet (reset_backend_gone) until that agent's first sync writes it back.
// Run as root: node --import=tsx bench/slots-downgrade.ts [N] (N Services x 10 endpoints, default
// 10,000); KBP_OLD_AGENT_CLI names the earlier agent (default: testing/old-agent.ts's build of
// 75dca1d), KBP_NEW_AGENT_CLI this build's (default bin/kube-bpf-proxy.js). For each window: this
// build's agent from fresh pins, stopped (SIGKILL or SIGTERM) at a point; then the earlier agent
// over the pins, lb_members counted every 10 ms from its start to its first sync's end.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';
import { defaultStatePath, slotsMarkerPath } from '../src/dataplane/bpf/agent-state-file.js';
import { oldAgentCli } from '../testing/old-agent.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const N = Number(process.argv[2] ?? 10_000), EPS = 10;
const NS = `kbpslotw${process.pid % 100000}`;
const NODE_IP = '192.168.78.1';
const ip = (...args: string[]) => execFileSync('/usr/sbin/ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function manifests(dir: string): void {
  const docs: string[] = [];
  for (let i = 0; i < N; i++) {
    docs.push(`apiVersion: v1\nkind: Service\nmetadata: {name: s${i}, namespace: default}\nspec:\n  clusterIP: 10.${96 + (i >> 15)}.${(i >> 7) & 255}.${(i & 127) + 1}\n  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]`);
    const eps = Array.from({ length: EPS }, (_, j) => { const k = i * EPS + j; return `  - addresses: [10.${64 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}]\n    conditions: {ready: true}`; });
    docs.push(`apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s${i}-a, namespace: default, labels: {kubernetes.io/service-name: s${i}}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n${eps.join('\n')}`);
  }
  writeFileSync(join(dir, 'services.yaml'), docs.join('\n---\n') + '\n');
}

interface Agent { child: ChildProcess; log: () => string; exited: Promise<number | null>; t0: number }
function start(cli: string, pinRoot: string, dir: string): Agent {
  const child = spawn('/usr/bin/nsenter', [`--net=/var/run/netns/${NS}`, process.execPath, cli, 'run', '--manifests', dir, '--node-name', 'n1',
    '--node-ip', NODE_IP, '--devices', 'eth0', '--bpffs', pinRoot, '--socket-lb', 'false', '--healthz-bind-address', '127.0.0.1:10256',
    '--metrics-bind-address', '127.0.0.1:10249'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return { child, log: () => out, exited: new Promise((r) => child.once('exit', (c) => r(c))), t0: Date.now() };
}
function count(pinRoot: string, name: string): number | undefined {
  let m: BpfMap;
  try { m = BpfMap.fromPin(join(pinRoot, name)); } catch { return undefined; }
  try { return m.count(); } finally { m.close(); }
}
const line = (a: Agent, msg: string) => a.log().split('\n').find((l) => l.includes(`"msg":"${msg}`));

async function window(name: string, how: 'kill at sync end' | 'term at sync end' | 'kill after lb_slots written'): Promise<void> {
  const pinRoot = `/sys/fs/bpf/kbp-slotw-${process.pid}-${name}`;
  const dir = mkdtempSync(join(tmpdir(), 'kbp-slotw-'));
  manifests(dir);
  try {
    const ours = start(process.env.KBP_NEW_AGENT_CLI ?? join(REPO, 'bin', 'kube-bpf-proxy.js'), pinRoot, dir);
    // the first sync's end: every frontend in lb_frontends (its last write)
    const deadline = Date.now() + 600_000;
    if (how === 'kill after lb_slots written') {
      while (!line(ours, 'lb_slots written') && Date.now() < deadline && ours.child.exitCode === null) await sleep(20);
    } else {
      while ((count(pinRoot, 'lb_frontends') ?? 0) < N && Date.now() < deadline && ours.child.exitCode === null) await sleep(2);
    }
    ours.child.kill(how.startsWith('term') ? 'SIGTERM' : 'SIGKILL');
    await ours.exited;
    const pairs = count(pinRoot, 'lb_members') ?? 0, slots = count(pinRoot, 'lb_slots') ?? 0;
    const written = line(ours, 'lb_slots written');
    // the earlier agent over these pins
    const old = start(process.env.KBP_OLD_AGENT_CLI ?? oldAgentCli()!, pinRoot, dir);
    let least = Infinity, lowSince: number | undefined, lowMs = 0;
    const oldDeadline = Date.now() + 600_000;
    while (!line(old, 'sync steps') && Date.now() < oldDeadline && old.child.exitCode === null) {
      const n = count(pinRoot, 'lb_members');
      if (n !== undefined) {
        least = Math.min(least, n);
        if (n < pairs) lowSince ??= Date.now();
        else if (lowSince !== undefined) { lowMs += Date.now() - lowSince; lowSince = undefined; }
      }
      await sleep(10);
    }
    if (lowSince !== undefined) lowMs += Date.now() - lowSince;
    const rebuilt = line(old, 'frontend membership');
    const sync = line(old, 'sync steps');
    process.stdout.write(`${JSON.stringify({
      window: how, services: N, pairs, slotsAtStop: slots, oursSlotsWritten: written && JSON.parse(written), oursSync: line(ours, 'sync steps') && JSON.parse(line(ours, 'sync steps')!),
      old: { leastPairs: least, pairsLostMs: lowMs, rebuilt: rebuilt && JSON.parse(rebuilt), firstSyncAfterStartMs: sync ? (JSON.parse(sync) as { endedAt: number }).endedAt - old.t0 : undefined },
    })}\n`);
    old.child.kill('SIGTERM');
    await old.exited;
  } finally {
    try {
      execFileSync('/usr/bin/nsenter', [`--net=/var/run/netns/${NS}`, process.execPath, join(REPO, 'bin', 'kube-bpf-proxy.js'), 'cleanup', '--bpffs', pinRoot], { stdio: 'ignore' });
    } catch { /* gone */ }
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(defaultStatePath(pinRoot), { force: true });
    rmSync(slotsMarkerPath(defaultStatePath(pinRoot)), { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

mkdirSync('/var/run/netns', { recursive: true });
try { ip('netns', 'del', NS); } catch { /* absent */ }
ip('netns', 'add', NS);
try {
  ip('-n', NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
  ip('-n', NS, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'eth0');
  for (const d of ['eth0', 'eth1', 'lo']) ip('-n', NS, 'link', 'set', d, 'up');
  const only = process.env.KBP_SLOTW_ONLY;
  for (const [name, how] of [['a', 'kill at sync end'], ['b', 'term at sync end'], ['c', 'kill after lb_slots written']] as const) {
    if (only && !only.includes(name)) continue;
    await window(name, how);
  }
} finally {
  try { ip('netns', 'del', NS); } catch { /* gone */ }
}
