// New-connection rate through a ClusterIP as N Services are loaded, against the direct pod path:
// client pods, nodes and a server pod in network namespaces; bench/connloop.c opens connections one
// after the other (connect, then close with RST) against a server that accepts and closes, so the
// figure is the path's cost per new connection, not an HTTP client's and server's CPU (wrk and nginx
// gave tc/direct from 0.75 to 1.20 within one run). In a round the paths take turns connection by
// connection (connloop multi: one process times connect() on sockets made in each path's client
// namespace), and the ratio to direct is taken per round; min / median / max over the rounds. Paths: (a) the pod IP directly, no rules (the physical limit); (b) the ClusterIP
// through kube-proxy's iptables ruleset for N Services, in a second node namespace of its own (the
// server pod has a veth into each node) so that its rules never slow the other paths and all four
// can be measured round by round, interleaved; (c) the ClusterIP through our tc programs on the tc
// client's veth with N Services in the maps; (d) the ClusterIP through our cgroup connect4 socket
// hook (the client runs in a cgroup with lb_sock_connect4 attached).
import { parseMapSizes } from '../src/dataplane/bpf/map-sizes.js';
import { systemBinary } from '../src/util/exec.js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultObjectPath } from '../src/dataplane/bpf/loader.js';
import type { NodeFrontend, NodeState } from '../src/model/compiled.js';
import { LabDataplane } from '../testing/lab-dataplane.js';
import { type Netns } from '../testing/netns.js';
import { iptablesRestore } from './baseline/iptables.js';
import { servicePortsOf } from './baseline/services.js';
import { nodeState } from './gen.js';
import { compileAside, defineBench, type BenchContext } from './lib.js';
import { GuardedLab, restore } from './guarded-lab.js';
import { FilterBuild, sweepConntrack } from '../src/dataplane/bpf/ct-sweep.js';

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
  hooked: { ip: '10.244.0.9', hostIf: 'vch' },
  iptables: { ip: '10.244.0.4', hostIf: 'vci' },
  tc: { ip: '10.244.0.5', hostIf: 'vct' },
  socket: { ip: '10.244.0.6', hostIf: 'vcs' },
  tcB: { ip: '10.244.0.7', hostIf: 'vctb' },
  socketB: { ip: '10.244.0.8', hostIf: 'vcsb' },
  hookedB: { ip: '10.244.0.10', hostIf: 'vchb' },
};
/**
 * KBP_CONNRATE_B=FILE: a second BPF object (another build of bpf/kbp.bpf.c) loaded beside the
 * checkout's, with maps of its own, on a tc client and a socket-hook cgroup of its own; its paths
 * take turns with the others connection by connection, so a change to the programs is judged by its
 * per-round ratio to the checkout's build in the same run (A/B).
 */
const OBJECT_B = process.env.KBP_CONNRATE_B;
/** KBP_CONNRATE_A=FILE: the object of the main paths instead of the checkout's (run A/B, then B/A with
 * the two swapped: a path's place in the topology is worth a few percent, the same object on both
 * sides (A/A) read 0.98-1.04) */
const OBJECT_A = process.env.KBP_CONNRATE_A;
/** KBP_CONNRATE_A_MAP_MAX / KBP_CONNRATE_B_MAP_MAX=LIST: map sizes of that side's load, as --bpf-map-max
 * (e.g. `lb_ct=524288,lb_ct_syn=65536`: the same object at the conntrack sizes before session 23) */
const MAP_MAX_A = process.env.KBP_CONNRATE_A_MAP_MAX ? parseMapSizes(process.env.KBP_CONNRATE_A_MAP_MAX.split(','), 'KBP_CONNRATE_A_MAP_MAX') : undefined;
const MAP_MAX_B = process.env.KBP_CONNRATE_B_MAP_MAX ? parseMapSizes(process.env.KBP_CONNRATE_B_MAP_MAX.split(','), 'KBP_CONNRATE_B_MAP_MAX') : undefined;
const SERVER_IP = '10.244.0.3';
/** the server's address on its veth into the iptables node */
const SERVER_IP2 = '10.244.1.3';
/** gateway addresses on the node side of the pod veths, one per node */
const GW1 = '10.244.255.254';
const GW2 = '10.244.254.254';
const SERVER_PORT = 8080;
/**
 * KBP_CONNRATE_HOOKED_PORT=P: the hooked path connects to the server's port P (the server listens
 * there too) instead of SERVER_PORT, the port of the measured Service's backend: a connection to a
 * port no Service leads to. (Since session 16 the hooked path's packets to and from the Service's
 * backend port skip the reply lookups too: lb_rev_filter's bit holds the client's address, and only
 * the tc path's client has translated flows to that backend.)
 */
const HOOKED_PORT = Number(process.env.KBP_CONNRATE_HOOKED_PORT ?? SERVER_PORT);
/** KBP_CONNRATE_SIZES=10000[,...]: the Service counts measured instead of the default ones */
const SIZES = process.env.KBP_CONNRATE_SIZES?.split(',').map(Number);
/** outside bench/gen.ts's 10.96.0.1.. range, so the N-1 other Services never collide with it */
const VIP = '10.100.0.10';
const VIP_PORT = 80;
const CLUSTER_CIDR = '10.244.0.0/16';
/** connections per path per round, and rounds */
const CONNS = { quick: 500, full: 2000 };
const ROUNDS = { quick: 7, full: 15 };
const here = dirname(fileURLToPath(import.meta.url));
const CONNLOOP = join(here, 'results', '.connloop', 'connloop');

/** bench/connloop.c, built with the system's compiler */
function buildConnloop(): void {
  mkdirSync(dirname(CONNLOOP), { recursive: true });
  compileAside('cc', 'bench/connloop.c', CONNLOOP, (to) => ['-O2', '-Wall', '-o', to, join(here, 'connloop.c')]);
}

type Mode = 'direct' | 'hooked' | 'iptables' | 'tc' | 'socket' | 'tcB' | 'socketB' | 'hookedB';
/** the paths measured: 'hooked' is the pod IP from a client under our tc programs and socket hook
 * (a connection to no Service: what every other connection of a pod pays for them) */
const MODES: Mode[] = ['direct', 'hooked', 'iptables', 'tc', 'socket', ...(OBJECT_B ? ['hookedB', 'tcB', 'socketB'] as const : [])];
/** KBP_CONNRATE_B: each path of the checkout's object and the same path of B's */
const AB_PAIRS: Array<[Mode, Mode]> = [['hooked', 'hookedB'], ['tc', 'tcB'], ['socket', 'socketB']];
/** the paths to the ClusterIP */
const VIA_VIP = new Set<Mode>(['iptables', 'tc', 'socket', 'tcB', 'socketB']);


interface LoopResult { rps: number; ok: number; failed: number; p50us: number; /** connect() and close() together (multi only) */ cycleP50us?: number }

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

function parseLoop(out: string): LoopResult {
  const m = /^(\d+) (\d+) (\d+) (\d+) (\d+)(?: (\d+))?$/m.exec(out);
  if (!m) throw new Error(`connloop printed no result: ${out.slice(0, 500)}`);
  const ok = Number(m[1]), totalNs = Number(m[3]);
  return { ok, failed: Number(m[2]), rps: ok / (totalNs / 1e9), p50us: Number(m[4]) / 1000, ...(m[6] ? { cycleP50us: Number(m[6]) / 1000 } : {}) };
}

class Topology {
  node!: Netns;
  /** the node whose tables hold kube-proxy's iptables rules */
  iptNode!: Netns;
  readonly clients = {} as Record<Mode, Netns>;
  server!: Netns;
  cgroup!: string;
  dp!: LabDataplane;
  /** KBP_CONNRATE_B's object and the cgroup of its socket hook */
  dpB: LabDataplane | undefined;
  cgroupB: string | undefined;
  private dir!: string;

  constructor(readonly lab: GuardedLab, readonly ctx: BenchContext) {}

  async build(): Promise<void> {
    const lab = this.lab;
    this.dir = lab.guard.path(mkdtempSync(join(tmpdir(), 'kbp-bench-conn-')));
    this.node = await lab.addNetns('node');
    await lab.enableForwarding(this.node);
    this.iptNode = await lab.addNetns('nodeipt');
    await lab.enableForwarding(this.iptNode);
    for (const m of MODES) {
      const c = CLIENTS[m], ipt = m === 'iptables';
      this.clients[m] = (await lab.addPod({
        name: `c${c.hostIf.slice(1)}`, node: ipt ? this.iptNode : this.node, hostIf: c.hostIf, addresses: [c.ip], gateways: { v4: ipt ? GW2 : GW1 },
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
    this.dp = LabDataplane.load(lab, 'pins', { seed: SEED, socketLb: true, ...(OBJECT_A ? { objectPath: OBJECT_A } : {}), ...(MAP_MAX_A && { mapSizes: MAP_MAX_A }) });
    lab.guard.path(this.dp.statePath);
    lab.guard.path(`${this.dp.statePath}.tc`);
    if (OBJECT_B) {
      this.cgroupB = lab.addCgroup('sockb');
      this.dpB = LabDataplane.load(lab, 'pinsb', { seed: SEED, socketLb: true, objectPath: OBJECT_B, ...(MAP_MAX_B && { mapSizes: MAP_MAX_B }) });
      lab.guard.path(this.dpB.statePath);
      lab.guard.path(`${this.dpB.statePath}.tc`);
      this.dpB.attachSockHooks(this.cgroupB);
      await this.dpB.attachTc(lab, this.node, { devices: [CLIENTS.tcB.hostIf, CLIENTS.hookedB.hostIf] });
    }
    // Both stay attached for the whole run without touching the other paths: the socket hooks see only
    // processes in this cgroup (the socket-LB and hooked clients), and the tc programs sit only on the
    // tc and hooked clients' veths (ingress translates its packets to the backend, egress translates
    // the replies back). Every socket hook, as the agent attaches them (an older object's release
    // hook too, which deleted a socket's lb_sock_revnat entry with the socket).
    this.dp.attachSockHooks(this.cgroup);
    await this.dp.attachTc(lab, this.node, { devices: [CLIENTS.tc.hostIf, CLIENTS.hooked.hostIf] });
    // the reply filter on, as the agent's first conntrack sweep leaves it
    for (const dp of [this.dp, this.dpB]) if (dp) await revFilterOn(dp);
  }

  /** the cgroup a path's sockets are made in (the socket hooks act there) */
  cgroupOf(m: Mode): string | undefined {
    return m === 'socket' || m === 'hooked' ? this.cgroup : m === 'socketB' || m === 'hookedB' ? this.cgroupB : undefined;
  }

  /** the data plane whose programs a path goes through */
  dataplaneOf(m: Mode): LabDataplane | undefined {
    return m === 'tcB' || m === 'socketB' || m === 'hookedB' ? this.dpB : m === 'iptables' || m === 'direct' ? undefined : this.dp;
  }

  private async startServer(): Promise<void> {
    for (const ip of [SERVER_IP, SERVER_IP2]) this.lab.spawn(this.server, CONNLOOP, ['serve', ip, String(SERVER_PORT)], { what: `connloop serve ${ip}` });
    if (HOOKED_PORT !== SERVER_PORT) this.lab.spawn(this.server, CONNLOOP, ['serve', SERVER_IP, String(HOOKED_PORT)], { what: `connloop serve ${SERVER_IP}:${HOOKED_PORT}` });
    for (let i = 0; i < 50; i++) {
      if (!(await this.probe('direct', SERVER_IP, SERVER_PORT))) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`the server in ${this.server.name} does not accept on ${SERVER_IP}:${SERVER_PORT}`);
  }

  /** Brings the maps to state (incremental after the first call, as the agent does). */
  fillMaps(state: NodeState): number {
    this.dpB?.apply(state);
    return this.dp.apply(state).length;
  }

  /** One connection through the path: does it work at all (bounded)? */
  async probe(m: Mode, ip: string, port: number, cgroup?: string): Promise<string | undefined> {
    const r = await this.lab.runIn(this.clients[m], CONNLOOP, ['connect', ip, String(port), '1'], { cgroup, timeoutMs: 5000 });
    return r.code === 0 && /^1 0 /.test(r.stdout) ? undefined : `connect ${ip}:${port}: exit ${r.code} ${r.stdout.trim()} ${r.stderr.trim()}`;
  }



  /**
   * One round: conns connections per path, the paths taking turns connection by connection
   * (connloop multi), so that load from other users falls on every path alike; each path's sockets
   * are made in its client's namespace (and the socket path's in the cgroup of the socket hook).
   */
  async interleaved(paths: Array<{ m: Mode; ip: string; port: number; cgroup?: string }>, conns: number): Promise<Map<Mode, LoopResult>> {
    const args = ['multi', String(conns)];
    for (const p of paths) args.push(`${this.clients[p.m].path}${p.cgroup ? `@${p.cgroup}` : ''}`, p.ip, String(p.port));
    const r = await this.lab.runIn(null, CONNLOOP, args, { timeoutMs: 60_000 + conns * paths.length * 20 });
    if (r.code !== 0) throw new Error(`connloop multi exited ${r.code}: ${r.stderr.trim()}`);
    const lines = r.stdout.trim().split('\n');
    if (lines.length !== paths.length) throw new Error(`connloop multi printed ${lines.length} lines for ${paths.length} paths: ${r.stdout.slice(0, 500)}`);
    return new Map(paths.map((p, i) => [p.m, parseLoop(lines[i]!)]));
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

/** lb_rev_filter and lb_ct_filter rebuilt and switched on as the agent's conntrack sweep does it (dataplane.ts); an object without them (an older build) is left as it is */
async function revFilterOn(dp: LabDataplane): Promise<void> {
  const { object, maps } = dp.loaded;
  if (object.mapNames().includes('lb_rev_filter')) {
    const r = await FilterBuild.begin(object.map('lb_rev_filter'), 'rev');
    for (const name of ['lb_ct', 'lb_ct_syn'] as const) await sweepConntrack(maps.map(name), name, undefined, undefined, undefined, r.visit);
    r.finish();
  }
  if (object.mapNames().includes('lb_ct_filter')) {
    const r = await FilterBuild.begin(object.map('lb_ct_filter'), 'ct');
    await sweepConntrack(maps.map('lb_ct'), 'lb_ct', undefined, undefined, undefined, r.visit);
    r.finish();
  }
}

interface Row { n: number; runs: Record<Mode, LoopResult[]>; broken: Partial<Record<Mode, string>>; ops: number; iptLoadMs: number }

const target = (m: Mode): [string, number] => (VIA_VIP.has(m) ? [VIP, VIP_PORT] : m === 'hooked' || m === 'hookedB' ? [SERVER_IP, HOOKED_PORT] : [SERVER_IP, SERVER_PORT]);

async function measure(ctx: BenchContext, t: Topology, n: number, rounds: number, conns: number): Promise<Row> {
  const row: Row = { n, runs: Object.fromEntries(MODES.map((m) => [m, []])) as unknown as Record<Mode, LoopResult[]>, broken: {}, ops: 0, iptLoadMs: 0 };
  row.ops = t.fillMaps(stateWith(n, SERVER_IP));
  row.iptLoadMs = await t.loadIptables(stateWith(n, SERVER_IP2));
  try {
    for (const m of MODES.filter((x) => x !== 'direct')) {
      const why = await t.probe(m, ...target(m), t.cgroupOf(m));
      if (why) row.broken[m] = why;
    }
    // every path in every round, taking turns connection by connection (connloop multi): the
    // machine's other load falls on all alike, and a round's ratios compare like with like
    const paths = MODES.filter((m) => !row.broken[m]).map((m) => pathOf(t, m));
    for (let i = 0; i < rounds; i++) {
      const got = await t.interleaved(paths, conns);
      for (const [m, res] of got) row.runs[m].push(res);
    }
    if (process.env.KBP_CONNRATE_PROFILE === '1') await profile(ctx, t, n, conns, row.broken);
  } finally {
    await t.flushIptables();
  }
  const f = (m: Mode) => (row.runs[m].length ? spread(ratios(row, m)).median.toFixed(3) : `broken (${row.broken[m]})`);
  ctx.log(`${n} Services: direct connect p50 ${spread(row.runs.direct.map((x) => x.p50us)).median.toFixed(1)} us; per-round median ratio ` +
    MODES.filter((m) => m !== 'direct').map((m) => `${m} ${f(m)}`).join(', ') +
    '; connect+close ' + MODES.filter((m) => m !== 'direct' && row.runs[m].length).map((m) => `${m} ${spread(ratiosAB(row, 'direct', m, true)).median.toFixed(3)}`).join(', ') +
    (OBJECT_B ? '; B over A: ' + AB_PAIRS.map(([a, b]) => `${a} ${ratiosAB(row, a, b).length ? spread(ratiosAB(row, a, b)).median.toFixed(3) : '-'}` +
      ` (connect+close ${ratiosAB(row, a, b, true).length ? spread(ratiosAB(row, a, b, true)).median.toFixed(3) : '-'})`).join(', ') : ''));
  return row;
}

/**
 * per round: the direct path's median connect latency over this path's, in the same round. A loop's
 * rate (connections/s) follows the CPU it gets on a shared machine (rounds of one run ranged 836 to
 * 16,899 conn/s direct); the median connect() time is the path's own cost, and as a ratio it reads
 * as the rate would on an idle machine (a handshake-only connection's rate is 1 / its latency).
 */
function ratios(row: Row, m: Mode): number[] {
  return ratiosAB(row, 'direct', m);
}

/** per round: a's median connect latency over b's (above 1: b is faster); cycle: of connect and close */
function ratiosAB(row: Row, a: Mode, b: Mode, cycle = false): number[] {
  if (row.runs[a].length !== row.runs[b].length) return [];
  const v = (x: LoopResult) => (cycle ? x.cycleP50us ?? NaN : x.p50us);
  return row.runs[b].map((x, i) => v(row.runs[a][i]!) / v(x)).filter((r) => Number.isFinite(r));
}

function pathOf(t: Topology, m: Mode): { m: Mode; ip: string; port: number; cgroup?: string } {
  const cg = t.cgroupOf(m);
  return { m, ip: target(m)[0], port: target(m)[1], ...(cg ? { cgroup: cg } : {}) };
}

const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

/** run_time_ns and run_cnt of a program (kernel.bpf_stats_enabled must be on) */
async function progStats(t: Topology, id: number): Promise<{ ns: number; runs: number }> {
  const r = await t.lab.runIn(null, '/usr/sbin/bpftool', ['-j', 'prog', 'show', 'id', String(id)], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`bpftool prog show id ${id} exited ${r.code}: ${r.stderr.trim()}`);
  const j = JSON.parse(r.stdout) as { run_time_ns?: number; run_cnt?: number };
  return { ns: j.run_time_ns ?? 0, runs: j.run_cnt ?? 0 };
}

/**
 * KBP_CONNRATE_PROFILE=1: where a path's extra time per connection goes. With kernel.bpf_stats_enabled
 * on for the round (restored after), one round of direct and the path, taking turns: each program's
 * runs per connection and ns per run, against the path's connect() p50 less direct's. The programs'
 * own time is what a cut in them can win; the rest of the gap is the kernel's work around them.
 */
async function profile(ctx: BenchContext, t: Topology, n: number, conns: number, broken: Partial<Record<Mode, string>>): Promise<void> {
  const sock = (m: Mode): string[] => ['lb_sock_connect4', 'lb_sock_release_hook'].filter((p) => t.dataplaneOf(m)!.loaded.object.programNames().includes(p));
  const progs = (m: Mode): string[] => (m === 'tc' || m === 'tcB' ? ['lb_tc_ingress', 'lb_tc_egress'] : m === 'hooked' || m === 'hookedB' ? ['lb_tc_ingress', 'lb_tc_egress', ...sock(m)] : sock(m));
  const old = readFileSync(BPF_STATS, 'utf8').trim();
  writeFileSync(BPF_STATS, '1');
  try {
    // a broken path (a diagnostic B object that translates nothing) is left out, the others still profiled
    for (const m of MODES.filter((x) => x !== 'direct' && x !== 'iptables' && !broken[x])) {
      const dp = t.dataplaneOf(m)!;
      const ids = progs(m).map((name) => dp.loaded.object.program(name).id);
      const before = await Promise.all(ids.map((id) => progStats(t, id)));
      const statsBefore = dp.stats();
      const got = await t.interleaved([pathOf(t, 'direct'), pathOf(t, m)], conns);
      const after = await Promise.all(ids.map((id) => progStats(t, id)));
      const statsAfter = dp.stats();
      // the map writes a connection makes: conntrack entries inserted and deleted, the socket hook's translations
      const writes = (['ct_syn_insert', 'ct_syn_delete', 'ct_insert', 'ct_delete', 'sock_connect'] as const)
        .map((k) => [k, (statsAfter[k] - statsBefore[k]) / Math.max(1, got.get(m)!.ok)] as const).filter(([, v]) => v > 0)
        .map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
      const d = got.get('direct')!, x = got.get(m)!;
      const parts = progs(m).map((name, i) => {
        const ns = after[i]!.ns - before[i]!.ns, runs = after[i]!.runs - before[i]!.runs;
        return { name, runs, ns, perRun: runs ? ns / runs : 0, perConn: ns / Math.max(1, x.ok) };
      });
      const own = parts.reduce((s, p) => s + p.perConn, 0) / 1000;
      ctx.log(`${n} Services, profile ${m}: connect p50 ${x.p50us.toFixed(1)} us vs direct ${d.p50us.toFixed(1)} (gap ${(x.p50us - d.p50us).toFixed(1)} us); programs ${own.toFixed(2)} us a connection: ` +
        parts.map((p) => `${p.name} ${(p.runs / Math.max(1, x.ok)).toFixed(2)} runs x ${p.perRun.toFixed(0)} ns`).join(', ') +
        `; per connection: ${writes || 'no map writes counted'}`);
      ctx.note(`profile at ${n} Services, ${m}: connect p50 ${x.p50us.toFixed(1)} us, direct ${d.p50us.toFixed(1)} us; the programs' own time ${own.toFixed(2)} us a connection (` +
        parts.map((p) => `${p.name}: ${(p.runs / Math.max(1, x.ok)).toFixed(2)} runs of ${p.perRun.toFixed(0)} ns`).join('; ') + `); per connection: ${writes || 'no map writes counted'}`);
    }
  } finally {
    writeFileSync(BPF_STATS, old);
  }
}

function spread(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return { min: s[0]!, median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, max: s[s.length - 1]! };
}

export default defineBench({
  name: 'connrate',
  title: 'New-connection rate through a ClusterIP vs N Services loaded',
  description:
    'Client pod -> node -> server pod, network namespaces joined by veths, routed. A light client (bench/connloop.c) ' +
    'opens connections one after the other (connect, close with RST, so no TIME_WAIT) to a server that accepts and closes: ' +
    'the rate is the path\'s cost per new connection (only a connection\'s first packets walk the rules), without an HTTP ' +
    'client\'s and server\'s CPU. Each path has its own client pod. Paths: the pod IP with nothing loaded (direct); the ' +
    'ClusterIP through kube-proxy\'s iptables ruleset for N Services (the measured Service in the middle of KUBE-SERVICES), ' +
    'loaded in a second node namespace that only the iptables client uses (the server pod has a veth into each node); the ' +
    'ClusterIP through our tc programs (lb_tc_ingress / lb_tc_egress on the tc client\'s veth in the node) with N Services ' +
    'in the maps; and through the cgroup connect4 hook. In a round the paths take turns connection by connection (one ' +
    'process times connect() on sockets made in each path\'s client namespace, and cgroup for the socket hook, passed to it ' +
    'over a Unix socket), so the machine\'s other load falls on every path alike; each path\'s figure is direct\'s median ' +
    'connect() latency over its own in the same round (what the rate ratio is on an idle machine), min / median / max over the rounds.',
  skip() {
    if (process.getuid?.() !== 0) return 'needs root (network namespaces, BPF)';
    if (!existsSync(defaultObjectPath())) return `no BPF object at ${defaultObjectPath()} (make -C bpf)`;
    if (OBJECT_B && !existsSync(OBJECT_B)) return `KBP_CONNRATE_B: no BPF object at ${OBJECT_B}`;
    if (OBJECT_A && !existsSync(OBJECT_A)) return `KBP_CONNRATE_A: no BPF object at ${OBJECT_A}`;
    for (const tool of ['/usr/bin/cc', '/usr/sbin/iptables-restore', '/usr/sbin/nft', ...(process.env.KBP_CONNRATE_PROFILE === '1' ? ['/usr/sbin/bpftool'] : [])]) {
      if (!existsSync(tool)) return `${tool} is not installed`;
    }
    return undefined;
  },
  async run(ctx) {
    const sizes = SIZES ?? (ctx.quick ? [1, 1000] : [1, 1000, 10_000]);
    const rounds = ctx.quick ? ROUNDS.quick : ROUNDS.full, conns = ctx.quick ? CONNS.quick : CONNS.full;
    buildConnloop();
    const lab = new GuardedLab('conn');
    const rows: Row[] = [];
    try {
      const t = new Topology(lab, ctx);
      await t.build();
      // the lab's cleanup detaches the socket hook and closes the data plane
      for (const n of sizes) rows.push(await measure(ctx, t, n, rounds, conns));
    } finally {
      await lab.cleanup();
    }
    const label = (n: number) => (n >= 1000 ? `${n / 1000}k` : `${n}`);
    const modes: Array<[Mode, string]> = [['hooked', 'pod IP under our hooks (no Service)'], ['iptables', 'iptables (kube-proxy)'], ['tc', 'tc BPF (ours)'], ['socket', 'socket LB (ours)'],
      ...(OBJECT_B ? [['hookedB', 'pod IP under our hooks (B)'], ['tcB', 'tc BPF (B)'], ['socketB', 'socket LB (B)']] as Array<[Mode, string]> : [])];
    for (const r of rows) {
      const k = label(r.n);
      const d = spread(r.runs.direct.map((x) => x.rps));
      const lat = spread(r.runs.direct.map((x) => x.p50us));
      ctx.metric({ name: `direct ${k}: connect p50`, value: lat.median / 1000, unit: 'ms', better: 'lower',
        note: `median over ${rounds} rounds of ${conns} connections (min ${lat.min.toFixed(1)}, max ${lat.max.toFixed(1)} us); ${d.median.toFixed(0)} conn/s (min ${d.min.toFixed(0)}, max ${d.max.toFixed(0)})` });
      for (const [m, name] of modes) {
        if (!r.runs[m].length) {
          ctx.note(`${name} at ${r.n} Services did not carry traffic: ${r.broken[m]}`);
          continue;
        }
        const q = spread(ratios(r, m));
        const qc = ratiosAB(r, 'direct', m, true);
        const cyc = qc.length ? `; connect+close per round: median ${spread(qc).median.toFixed(3)} (min ${spread(qc).min.toFixed(3)}, max ${spread(qc).max.toFixed(3)})` : '';
        const failed = r.runs[m].reduce((s, x) => s + x.failed, 0);
        const isTarget = r.n === 10_000 && (m === 'tc' || m === 'socket');
        ctx.metric({
          name: `${name} ${k}: ratio to direct`, value: q.median, unit: 'ratio', better: 'higher',
          ...(isTarget ? { target: '>= 0.95', met: q.median >= 0.95 } : {}),
          note: `per round: min ${q.min.toFixed(3)}, max ${q.max.toFixed(3)}; connect p50 ${spread(r.runs[m].map((x) => x.p50us)).median.toFixed(1)} us; ${spread(r.runs[m].map((x) => x.rps)).median.toFixed(0)} conn/s${failed ? `; ${failed} failed` : ''}${m === 'iptables' ? `; rules loaded in ${(r.iptLoadMs / 1000).toFixed(1)} s` : ''}${cyc}`,
        });
      }
    }
    if (OBJECT_B) {
      for (const r of rows) {
        for (const [a, b] of AB_PAIRS) {
          const xs = ratiosAB(r, a, b), cs = ratiosAB(r, a, b, true);
          if (!xs.length) continue;
          const q = spread(xs);
          ctx.metric({ name: `${b} over ${a} ${label(r.n)}: ratio`, value: q.median, unit: 'ratio', better: 'higher',
            note: `A's connect p50 over B's per round (above 1: B is faster; B = ${OBJECT_B}): min ${q.min.toFixed(3)}, max ${q.max.toFixed(3)}` +
              (cs.length ? `; connect+close: median ${spread(cs).median.toFixed(3)} (min ${spread(cs).min.toFixed(3)}, max ${spread(cs).max.toFixed(3)})` : '') });
        }
      }
    }
    const ratio = (m: Mode) => rows.filter((r) => r.runs[m].length).map((r): [number, number] => [r.n, spread(ratios(r, m)).median]);
    ctx.figure({
      id: 'ratio', kind: 'line', title: 'New connections through a ClusterIP: direct connect latency over the path\'s (median of rounds)',
      x: { label: 'Services loaded', log: true }, y: { label: 'ratio to direct', min: 0 },
      series: [
        ...modes.map(([m, name]) => ({ name, points: ratio(m) })).filter((s) => s.points.length),
        { name: 'target 0.95', points: [[sizes[0]!, 0.95], [sizes[sizes.length - 1]!, 0.95]], reference: true },
      ],
    });
    ctx.note('The machine is shared: in a round the paths take turns connection by connection (in a new random order each turn, so each path follows every other alike), and each ratio is of the same round, so load from other users falls on both sides of it. conn/s is 1 / the mean connect() time. The client and the server are single-threaded and share the vCPUs with the kernel work being measured.');
    if (!sizes.includes(10_000)) ctx.note('--quick: up to 1000 Services; the 10,000-Service target is not judged.');
  },
});
