// New-connection rate through a ClusterIP as N Services are loaded, against the direct pod path:
// client pods, nodes and a server pod (nginx) in network namespaces; wrk with `Connection: close` so
// every request is a new connection (only a connection's first packet walks the rules; keep-alive
// would hide them). Paths: (a) the pod IP directly, no rules (the physical limit); (b) the ClusterIP
// through kube-proxy's iptables ruleset for N Services, in a second node namespace of its own (the
// server pod has a veth into each node) so that its rules never slow the other paths and all four
// can be measured round by round, interleaved; (c) the ClusterIP through our tc programs on the tc
// client's veth with N Services in the maps; (d) the ClusterIP through our cgroup connect4 socket
// hook (the client runs in a cgroup with lb_sock_connect4 attached).
import { systemBinary } from '../src/util/exec.js';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as L from '../src/dataplane/bpf/layout.js';
import { defaultObjectPath, loadDataplane, type Loaded } from '../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import type { NodeFrontend, NodeState } from '../src/model/compiled.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan } from '../src/plan/plan.js';
import type { Plan } from '../src/plan/types.js';
import { waitForLine, type Netns } from '../test/lab/netns.js';
import { iptablesRestore } from './baseline/iptables.js';
import { servicePortsOf } from './baseline/services.js';
import { nodeState } from './gen.js';
import { defineBench, type BenchContext } from './lib.js';
import { attachArgv, GuardedLab, restore } from './netns.js';

const SEED = 0x6b627078;
/**
 * One client pod per path. A server in TIME_WAIT accepts a reused 4-tuple's SYN only when the client's
 * TCP timestamps have moved on (PAWS), and the client's timestamp offset is keyed by (source,
 * destination) address: the pod IP and the VIP give different offsets, so a client that alternated
 * between them would have its SYNs dropped by the server's TIME_WAIT sockets of the other path and
 * retransmitted after 1 s. With a client address per path each path only meets its own TIME_WAITs.
 */
const CLIENTS: Record<Mode, { ip: string; hostIf: string }> = {
  direct: { ip: '10.244.0.2', hostIf: 'vcd' },
  iptables: { ip: '10.244.0.4', hostIf: 'vci' },
  tc: { ip: '10.244.0.5', hostIf: 'vct' },
  socket: { ip: '10.244.0.6', hostIf: 'vcs' },
};
const SERVER_IP = '10.244.0.3';
/** the server's address on its veth into the iptables node */
const SERVER_IP2 = '10.244.1.3';
/** gateway addresses on the node side of the pod veths, one per node */
const GW1 = '10.244.255.254';
const GW2 = '10.244.254.254';
const SERVER_PORT = 8080;
/** outside bench/gen.ts's 10.96.0.1.. range, so the N-1 other Services never collide with it */
const VIP = '10.100.0.10';
const VIP_PORT = 80;
const CLUSTER_CIDR = '10.244.0.0/16';
const WRK_SECONDS = 3;
const WRK_CONNECTIONS = 8;

type Mode = 'direct' | 'iptables' | 'tc' | 'socket';


interface WrkResult { rps: number; requests: number; errors: number }

/** N Services: N-1 synthetic ones (10 endpoints each) with the measured one in the middle of the list. */
function stateWith(n: number, backend: string): NodeState {
  const others = nodeState({ services: n - 1, endpointsPerService: 10 }).frontends;
  const target: NodeFrontend = {
    service: 'bench/target', portName: 'http', type: 'ClusterIP', address: VIP, port: VIP_PORT, protocol: 'TCP',
    scope: 'internal', backends: [{ address: backend, port: SERVER_PORT, terminating: false, local: true }],
    sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
  };
  const mid = Math.floor(others.length / 2);
  return { frontends: [...others.slice(0, mid), target, ...others.slice(mid)] };
}

function parseWrk(out: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const req = /(\d+) requests in/.exec(out);
  if (!rps || !req) throw new Error(`wrk printed no result: ${out.slice(0, 500)}`);
  let errors = 0;
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  if (sock) errors += sock.slice(1).reduce((s, x) => s + Number(x), 0);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (non2xx) errors += Number(non2xx[1]);
  return { rps: Number(rps[1]), requests: Number(req[1]), errors };
}

class Topology {
  node!: Netns;
  /** the node whose tables hold kube-proxy's iptables rules */
  iptNode!: Netns;
  readonly clients = {} as Record<Mode, Netns>;
  server!: Netns;
  cgroup!: string;
  pinRoot!: string;
  statePath!: string;
  dp!: Loaded;
  plan: Plan | undefined;
  private dir!: string;

  constructor(readonly lab: GuardedLab, readonly ctx: BenchContext) {}

  async build(): Promise<void> {
    const lab = this.lab;
    this.dir = lab.guard.path(mkdtempSync(join(tmpdir(), 'kbp-bench-conn-')));
    this.node = await lab.addNetns('node');
    await lab.enableForwarding(this.node);
    this.iptNode = await lab.addNetns('nodeipt');
    await lab.enableForwarding(this.iptNode);
    for (const [m, c] of Object.entries(CLIENTS) as Array<[Mode, { ip: string; hostIf: string }]>) {
      const ipt = m === 'iptables';
      this.clients[m] = (await lab.addPod({
        name: `c${m.slice(0, 3)}`, node: ipt ? this.iptNode : this.node, hostIf: c.hostIf, addresses: [c.ip], gateways: { v4: ipt ? GW2 : GW1 },
      })).ns;
    }
    this.server = (await lab.addPod({ name: 'srv', node: this.node, hostIf: 'vs', addresses: [SERVER_IP], gateways: { v4: GW1 } })).ns;
    // the server's second leg, into the iptables node; replies to that node's client go back through it
    await lab.addVeth(this.iptNode, 'vs2', this.server, 'eth1');
    await lab.addAddress(this.server, 'eth1', SERVER_IP2);
    await lab.addAddress(this.iptNode, 'vs2', GW2);
    await lab.addRoute(this.iptNode, SERVER_IP2, { dev: 'vs2' });
    await lab.addRoute(this.server, GW2, { dev: 'eth1' });
    await lab.addRoute(this.server, CLIENTS.iptables.ip, { via: GW2, dev: 'eth1' });
    await lab.txOff(this.server, 'eth1');
    await this.startServer();
    this.cgroup = lab.addCgroup('sock');
    this.pinRoot = lab.addPinRoot('pins');
    this.statePath = lab.guard.path(join(this.dir, 'state.json'));
    this.dp = loadDataplane({ pinRoot: this.pinRoot, state: AgentStateFile.forPinRoot(this.pinRoot, this.statePath), mountBpffs: false });
    this.dp.maps.writeConfig({ hashSeed: SEED, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: L.LB_CFG_F_SOCK_LB });
    // Both stay attached for the whole run without touching the other paths: the socket hook sees only
    // processes in this cgroup (the socket-LB client), and the tc programs sit only on the tc client's
    // veth (ingress translates its packets to the backend, egress translates the replies back).
    await this.attach({ cgroup: this.cgroup, tc: [CLIENTS.tc.hostIf] });
  }

  private async startServer(): Promise<void> {
    const conf = join(this.dir, 'nginx.conf');
    writeFileSync(conf, [
      'worker_processes 1;', 'master_process off;', 'daemon off;', `pid ${join(this.dir, 'nginx.pid')};`,
      `error_log ${join(this.dir, 'nginx-error.log')} warn;`, 'events { worker_connections 4096; }',
      'http {', '  access_log off;', `  client_body_temp_path ${this.dir};`,
      `  server { listen ${SERVER_IP}:${SERVER_PORT} backlog=4096; listen ${SERVER_IP2}:${SERVER_PORT} backlog=4096; location / { return 200 "ok\\n"; } }`, '}', '',
    ].join('\n'));
    this.lab.spawn(this.server, 'nginx', ['-p', this.dir, '-c', conf, '-e', join(this.dir, 'nginx-error.log')], { what: 'nginx' });
    for (let i = 0; i < 50; i++) {
      const r = await this.lab.exec(this.clients.direct, 'curl', ['-s', '-m', '1', `http://${SERVER_IP}:${SERVER_PORT}/`], { allowFail: true, timeoutMs: 3000 });
      if (r.code === 0 && r.stdout === 'ok\n') return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`nginx in ${this.server.name} does not answer on ${SERVER_IP}:${SERVER_PORT}`);
  }

  /** Loads the object inside the node namespace (maps reused from the pin root) and attaches there. */
  async attach(o: { tc?: string[]; cgroup?: string }): Promise<void> {
    const [cmd, ...args] = attachArgv(this.node, this.pinRoot, this.statePath, o);
    const p = this.lab.spawn(null, cmd!, args, { what: 'attach' });
    await waitForLine(p, 'attached', 60_000);
    const code = await p.exited;
    if (code !== 0) throw new Error(`attach exited ${code}: ${p.output().slice(-500)}`);
  }

  /** Brings the maps to state (incremental after the first call, as the agent does). */
  fillMaps(state: NodeState): number {
    const next = buildPlan(state, this.plan, { seed: SEED });
    const ops = diffPlans(this.plan, next);
    this.dp.maps.apply(ops);
    this.plan = next;
    return ops.length;
  }

  /** One curl through the path: does it work at all (bounded)? */
  async probe(m: Mode, url: string, cgroup?: string): Promise<string | undefined> {
    const r = await this.lab.runIn(this.clients[m], 'curl', ['-s', '-S', '-m', '2', url], { cgroup, timeoutMs: 5000 });
    return r.code === 0 && r.stdout === 'ok\n' ? undefined : `curl ${url}: exit ${r.code} ${r.stderr.trim()}`;
  }

  async wrk(m: Mode, url: string, cgroup?: string): Promise<WrkResult> {
    const args = ['-t1', `-c${WRK_CONNECTIONS}`, `-d${WRK_SECONDS}s`, '--timeout', '2s', '-H', 'Connection: close', url];
    const r = await this.lab.runIn(this.clients[m], 'wrk', args, { cgroup, timeoutMs: (WRK_SECONDS + 15) * 1000 });
    if (r.code !== 0) throw new Error(`wrk ${url} exited ${r.code}: ${r.stderr.trim()}`);
    return parseWrk(r.stdout);
  }

  async loadIptables(state: NodeState): Promise<number> {
    const text = iptablesRestore(servicePortsOf(state), { clusterCidr: CLUSTER_CIDR, withJumps: true }).text;
    // a flushing restore into the node's empty tables: the same rules kube-proxy's sync leaves, loaded fast
    const r = await restore(this.iptNode, 'iptables-restore', [], text, 300_000);
    if (!r.done) throw new Error(`iptables-restore of ${state.frontends.length} Services into ${this.iptNode.name} did not finish in 300 s`);
    return r.ms;
  }

  async flushIptables(): Promise<void> {
    // iptables-nft keeps its tables in nf_tables: one flush removes all of them
    await this.lab.exec(this.iptNode, systemBinary('nft'), ['flush', 'ruleset'], { timeoutMs: 120_000 });
  }
}

interface Row { n: number; runs: Record<Mode, WrkResult[]>; broken: Partial<Record<Mode, string>>; ops: number; iptLoadMs: number }

async function measure(ctx: BenchContext, t: Topology, n: number, rounds: number): Promise<Row> {
  const row: Row = { n, runs: { direct: [], iptables: [], tc: [], socket: [] }, broken: {}, ops: 0, iptLoadMs: 0 };
  const vipUrl = `http://${VIP}:${VIP_PORT}/`, podUrl = `http://${SERVER_IP}:${SERVER_PORT}/`;
  row.ops = t.fillMaps(stateWith(n, SERVER_IP));
  row.iptLoadMs = await t.loadIptables(stateWith(n, SERVER_IP2));
  try {
    for (const m of ['iptables', 'tc', 'socket'] as const) {
      const why = await t.probe(m, vipUrl, m === 'socket' ? t.cgroup : undefined);
      if (why) row.broken[m] = why;
    }
    // every path once per round, so the machine's other load falls on all of them alike
    for (let i = 0; i < rounds; i++) {
      row.runs.direct.push(await t.wrk('direct', podUrl));
      if (!row.broken.iptables) row.runs.iptables.push(await t.wrk('iptables', vipUrl));
      if (!row.broken.tc) row.runs.tc.push(await t.wrk('tc', vipUrl));
      if (!row.broken.socket) row.runs.socket.push(await t.wrk('socket', vipUrl, t.cgroup));
    }
  } finally {
    await t.flushIptables();
  }
  const d = rate(row, 'direct')!;
  const f = (m: Mode) => (row.runs[m].length ? `${(rate(row, m)! / d).toFixed(2)}` : `broken (${row.broken[m]})`);
  ctx.log(`${n} Services: direct ${d.toFixed(0)} req/s; iptables ${f('iptables')}, tc ${f('tc')}, socket ${f('socket')} of direct`);
  return row;
}

/** median requests/s of a path's runs */
function rate(row: Row, m: Mode): number | undefined {
  const xs = row.runs[m].map((x) => x.rps).sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
}

export default defineBench({
  name: 'connrate',
  title: 'New-connection rate through a ClusterIP vs N Services loaded',
  description:
    `Client pod -> node -> server pod (nginx, one worker), network namespaces joined by veths, routed. wrk -t1 ` +
    `-c${WRK_CONNECTIONS} -d${WRK_SECONDS}s -H 'Connection: close' from the client pod, so every request is a new TCP ` +
    'connection; each path has its own client pod. Paths: the pod IP with nothing loaded (direct); the ClusterIP through ' +
    'kube-proxy\'s iptables ruleset for N Services (the measured Service in the middle of KUBE-SERVICES), loaded in a ' +
    'second node namespace that only the iptables client uses (the server pod has a veth into each node); the ClusterIP ' +
    'through our tc programs (lb_tc_ingress / lb_tc_egress on the tc client\'s veth in the node) with N Services in the ' +
    'maps; and through the cgroup connect4 hook. Each rate is a ratio to the direct rate of the same N.',
  skip() {
    if (process.getuid?.() !== 0) return 'needs root (network namespaces, BPF)';
    if (!existsSync(defaultObjectPath())) return `no BPF object at ${defaultObjectPath()} (make -C bpf)`;
    for (const tool of ['/usr/bin/wrk', '/usr/sbin/nginx', '/usr/bin/curl', '/usr/sbin/iptables-restore', '/usr/sbin/nft']) {
      if (!existsSync(tool)) return `${tool} is not installed${tool.includes('nginx') ? ' (apt-get install nginx-light)' : ''}`;
    }
    return undefined;
  },
  async run(ctx) {
    const sizes = ctx.quick ? [1, 1000] : [1, 1000, 10_000];
    const lab = new GuardedLab('conn');
    const rows: Row[] = [];
    try {
      const t = new Topology(lab, ctx);
      await t.build();
      for (const n of sizes) rows.push(await measure(ctx, t, n, ctx.quick ? 1 : 5));
      t.dp.object.close();
    } finally {
      await lab.cleanup();
    }
    const label = (n: number) => (n >= 1000 ? `${n / 1000}k` : `${n}`);
    const modes: Array<[Mode, string]> = [['iptables', 'iptables (kube-proxy)'], ['tc', 'tc BPF (ours)'], ['socket', 'socket LB (ours)']];
    for (const r of rows) {
      const k = label(r.n);
      const direct = rate(r, 'direct')!;
      ctx.metric({ name: `direct ${k}`, value: direct, unit: 'req/s', better: 'higher', note: `median of ${r.runs.direct.map((x) => x.rps.toFixed(0)).join(', ')}` });
      for (const [m, name] of modes) {
        const v = rate(r, m);
        if (v === undefined) {
          ctx.note(`${name} at ${r.n} Services did not carry traffic: ${r.broken[m]}`);
          continue;
        }
        const errors = r.runs[m].reduce((s, x) => s + x.errors, 0);
        const isTarget = r.n === 10_000 && m !== 'iptables';
        ctx.metric({
          name: `${name} ${k}`, value: v, unit: 'req/s', better: 'higher', baseline: `direct ${k}`,
          ...(isTarget ? { target: '>= 95% of direct', met: v / direct >= 0.95 } : {}),
          note: `median of ${r.runs[m].map((x) => x.rps.toFixed(0)).join(', ')}${errors ? `; ${errors} errors` : ''}${m === 'iptables' ? `; rules loaded in ${(r.iptLoadMs / 1000).toFixed(1)} s` : ''}`,
        });
      }
    }
    const ratio = (m: Mode) => rows.filter((r) => r.runs[m].length).map((r): [number, number] => [r.n, rate(r, m)! / rate(r, 'direct')!]);
    ctx.figure({
      id: 'ratio', kind: 'line', title: 'New connections/s through a ClusterIP, as a ratio to the direct pod path',
      x: { label: 'Services loaded', log: true }, y: { label: 'ratio to direct', min: 0 },
      series: [
        ...modes.map(([m, name]) => ({ name, points: ratio(m) })).filter((s) => s.points.length),
        { name: 'target 0.95', points: [[sizes[0]!, 0.95], [sizes[sizes.length - 1]!, 0.95]], reference: true },
      ],
    });
    ctx.note('The machine is shared: the four paths run one after the other in each round (medians of the rounds are kept), so load from other users falls on all of them alike; ratios are per N. wrk and nginx share 2 vCPUs with the kernel work being measured.');
    if (!sizes.includes(10_000)) ctx.note('--quick: up to 1000 Services; the 10,000-Service target is not judged.');
  },
});
