// Lab building blocks: network namespaces, veth links, addresses, routes, real servers and clients,
// child cgroups and bpffs pin roots, all named under one prefix per run (kbplab<pid>-<tag>-) and all
// removed by Lab.cleanup(), in reverse order of creation, even after a failure half-way.
// sweepLeftovers() removes what a crashed run (a dead pid) left behind.
//
// Rules these helpers keep (DESIGN.md "Lab and tests"): traffic stays inside namespaces created here;
// anything BPF runs under `nsenter --net=/var/run/netns/NAME`, never `ip netns exec` (which remounts
// /sys and hides /sys/fs/bpf); every command, wait and loop is bounded in time.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { constants, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { BPFFS_MOUNT, prepareHost } from '../src/dataplane/host.js';
import { cgroupMounts } from '../src/util/cgroup.js';
import { heldIds, pidAlive, pinRootHeld, sweepStateFiles } from './pin-holders.js';

export const NETNS_DIR = '/var/run/netns';
/** where bpffs is mounted for pins (mounted by prepareHost() when missing) */
export const BPFFS_ROOT = BPFFS_MOUNT;

let roots: { bpffs: string; cgroup2: string } | undefined;
/**
 * bpffs and the cgroup v2 root, prepared by the agent's own code (src/dataplane/host.ts): bpffs is
 * mounted when a new machine has none, and cgroup v2 is found where the host mounts it
 * (/sys/fs/cgroup on a systemd host, /sys/fs/cgroup/unified on a hybrid one), never assumed.
 */
export function hostRoots(): { bpffs: string; cgroup2: string } {
  if (!roots) {
    const h = prepareHost();
    for (const did of h.did) process.stderr.write(`lab: ${did}\n`);
    roots = { bpffs: BPFFS_ROOT, cgroup2: h.cgroup2 };
  }
  return roots;
}
/** every lab object's name starts with this, then the pid of the run that made it */
export const LAB_PREFIX = 'kbplab';

const here = dirname(fileURLToPath(import.meta.url));
export const POD_SERVER = join(here, 'servers', 'pod-server.mjs');
export const LAB_CLIENT = join(here, 'servers', 'client.mjs');
export const LAB_LOAD = join(here, 'servers', 'load.mjs');
/**
 * util-linux setpriv: --pdeathsig ties a lab process's life to the test process's. Used when the
 * machine has it (the VM tier's initramfs does not: the VM ends with its test run anyway).
 */
const SETPRIV = '/usr/bin/setpriv';
const HAVE_SETPRIV = existsSync(SETPRIV);

/** What a bounded load (servers/load.mjs) saw: the reliability scenarios' figures. */
export interface LoadResult {
  sent: number;
  failed: number;
  /** the longest time without a successful answer, ms */
  longestGapMs: number;
  durationMs: number;
  /** successful answers by the pod that gave them */
  answers: Record<string, number>;
  /** per pod, when (epoch ms) the last request it answered was sent */
  lastSentAt: Record<string, number>;
  /** atMs: since the load started; at: epoch ms */
  failures: Array<{ atMs: number; at: number; error: string }>;
  /** the first requests answered only after more than 900 ms (a SYN sent again: its first one lost
   * or refused); at: when sent (epoch ms) */
  slow?: Array<{ at: number; ms: number }>;
  /** keep-alive loads: connections opened (1 when the established one never broke) */
  connections?: number;
}

export interface CmdResult { stdout: string; stderr: string; code: number }

/** Runs a command (no shell); throws naming the command, exit code and stderr unless allowFail. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; allowFail?: boolean; input?: string } = {}): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 20_000, maxBuffer: 16 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (err && !opts.allowFail) {
        const why = err.killed ? `killed after ${opts.timeoutMs ?? 20_000} ms` : `exit ${code}`;
        reject(new Error(`${cmd} ${args.join(' ')}: ${why}: ${stderr.trim() || err.message}`));
        return;
      }
      resolve({ stdout, stderr, code });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/**
 * A name a Lab gives an object (namespace, pin root, cgroup) after its prefix: letters, digits, '.',
 * '_' and '-' only. A name with a space or a slash reaches tools and paths that split on them.
 */
export function checkLabName(name: string, what: string): void {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new Error(`lab ${what} name ${JSON.stringify(name)}: use 1-64 of A-Za-z0-9._- (no spaces, no slashes)`);
}

/** A network namespace made by a Lab. */
export class Netns {
  constructor(readonly name: string) {}
  get path(): string { return join(NETNS_DIR, this.name); }
  /** argv prefix that runs a command inside this namespace, keeping /sys/fs/bpf visible */
  nsenter(): string[] { return ['nsenter', `--net=${this.path}`]; }
}

/** A process started by a Lab; killed by PID at cleanup. */
export interface LabProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly what: string;
  /** stdout and stderr so far (bounded), for failure messages */
  output(): string;
  /** resolves with the exit code (or signal name) */
  readonly exited: Promise<number | string>;
}

export interface PodOptions {
  /** pod name: the netns is <prefix><name>, servers answer this name */
  name: string;
  /** the namespace the pod's veth peer goes into (the node) */
  node: Netns;
  /** device name on the node side, <= 15 characters */
  hostIf: string;
  /** pod addresses (a /32 or /128 each is implied), e.g. ['10.244.0.2', 'fd00:10:244::2'] */
  addresses: string[];
  /** gateway addresses put on the node-side device (same on every pod veth of that node) */
  gateways?: { v4?: string; v6?: string };
  /** turn TX checksum offload off in the pod (veth leaves checksums to the receiver otherwise,
   * and a BPF rewrite of a CHECKSUM_PARTIAL packet is what we must not depend on) */
  txOff?: boolean;
}

export interface Pod { name: string; ns: Netns; hostIf: string; addresses: string[] }

interface Cleanup { what: string; fn: () => Promise<void> | void }

/**
 * What a signal undoes before the process ends: each open lab's cleanup, or what its owner put in its
 * place (a cluster stops its agents first). SIGINT, SIGTERM and SIGHUP run them all, bounded by
 * SIGNAL_CLEANUP_MS, then end the process with the signal's exit code (128 + its number); the same
 * signal again ends it at once. Without this a Ctrl-C or a CI timeout left everything to the next
 * run's sweepLeftovers().
 */
const onSignal = new Map<object, () => Promise<void>>();
const SIGNAL_CLEANUP_MS = 60_000;
let signalsHooked = false;

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const code = 128 + constants.signals[signal];
    process.once(signal, () => {
      process.once(signal, () => process.exit(code));
      process.stderr.write(`lab: ${signal}: cleaning up ${onSignal.size} lab(s) before exiting\n`);
      const timer = setTimeout(() => {
        process.stderr.write(`lab: cleanup still running after ${SIGNAL_CLEANUP_MS} ms; exiting (the next run's sweep removes the rest)\n`);
        process.exit(code);
      }, SIGNAL_CLEANUP_MS);
      void Promise.allSettled([...onSignal.values()].map((fn) => fn())).then((results) => {
        for (const r of results) if (r.status === 'rejected') process.stderr.write(`lab: ${(r.reason as Error).message}\n`);
        clearTimeout(timer);
        process.exit(code);
      });
    });
  }
}

export class Lab {
  readonly prefix: string;
  private readonly cleanups: Cleanup[] = [];
  private readonly procs = new Set<LabProcess>();
  private closed = false;

  /** tag: a short word naming the test (a-z0-9); the prefix is kbplab<pid>-<tag>- */
  constructor(tag: string) {
    if (!/^[a-z0-9]{1,12}$/.test(tag)) throw new Error(`Lab tag ${JSON.stringify(tag)}: use 1-12 of a-z0-9`);
    this.prefix = `${LAB_PREFIX}${process.pid}-${tag}-`;
    hookSignals();
    onSignal.set(this, () => this.cleanup());
  }

  /** What a signal runs in place of this lab's cleanup() (which it must include): an owner's stop. */
  onSignal(fn: () => Promise<void>): void {
    if (!this.closed) onSignal.set(this, fn);
  }

  /** Registers an undo step; cleanup() runs them last-in first-out. */
  onCleanup(what: string, fn: () => Promise<void> | void): void {
    this.cleanups.push({ what, fn });
  }

  async addNetns(name: string): Promise<Netns> {
    checkLabName(name, 'namespace');
    const ns = new Netns(this.prefix + name);
    await run('ip', ['netns', 'add', ns.name]);
    this.onCleanup(`netns ${ns.name}`, async () => {
      // deleting the namespace deletes its veths (and the peers in other namespaces)
      await run('ip', ['netns', 'del', ns.name], { allowFail: true });
    });
    // link-local addresses of new veths would sit in DAD for a second, and neighbour discovery
    // from a tentative address drops a test's first IPv6 packets
    await this.sysctl(ns, 'net.ipv6.conf.default.accept_dad', 0);
    await this.sysctl(ns, 'net.ipv6.conf.all.accept_dad', 0);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** ip -n NS ARGS */
  ip(ns: Netns, args: string[]): Promise<CmdResult> {
    return run('ip', ['-n', ns.name, ...args]);
  }

  /** Runs a command inside ns (nsenter, so BPF and bpffs work there). */
  exec(ns: Netns, cmd: string, args: string[], opts?: { timeoutMs?: number; allowFail?: boolean }): Promise<CmdResult> {
    return run('nsenter', [`--net=${ns.path}`, cmd, ...args], opts);
  }

  async sysctl(ns: Netns, key: string, value: string | number): Promise<void> {
    await this.exec(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
  }

  /** A veth pair a:aIf <-> b:bIf, created inside a so no name is ever taken in the host namespace. */
  async addVeth(a: Netns, aIf: string, b: Netns, bIf: string): Promise<void> {
    for (const n of [aIf, bIf]) if (n.length > 15) throw new Error(`veth name ${n}: longer than 15 characters`);
    await this.ip(a, ['link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
    // the namespace's removal would take it too; deleting it first keeps a partial lab tidy
    this.onCleanup(`veth ${a.name}:${aIf}`, async () => {
      if (existsSync(a.path)) await run('ip', ['-n', a.name, 'link', 'del', aIf], { allowFail: true });
    });
    await this.ip(a, ['link', 'set', aIf, 'up']);
    await this.ip(b, ['link', 'set', bIf, 'up']);
  }

  /** address: "10.0.0.1/24" or a bare address (then /32 or /128); IPv6 without DAD so it is usable at once */
  async addAddress(ns: Netns, ifname: string, address: string): Promise<void> {
    const v6 = address.includes(':');
    const cidr = address.includes('/') ? address : `${address}/${v6 ? 128 : 32}`;
    await this.ip(ns, [...(v6 ? ['-6'] : []), 'addr', 'add', cidr, 'dev', ifname, ...(v6 ? ['nodad'] : [])]);
  }

  /** ip route replace DST [via GW] [dev IF] [onlink]; dst "default" picks the family from via */
  async addRoute(ns: Netns, dst: string, opts: { via?: string; dev?: string; onlink?: boolean; src?: string }): Promise<void> {
    const v6 = dst.includes(':') || (opts.via ?? '').includes(':');
    const args = [...(v6 ? ['-6'] : []), 'route', 'replace', dst];
    if (opts.via) args.push('via', opts.via);
    if (opts.dev) args.push('dev', opts.dev);
    if (opts.src) args.push('src', opts.src);
    if (opts.onlink) args.push('onlink');
    await this.ip(ns, args);
  }

  /** ethtool -K IF tx off inside ns */
  async txOff(ns: Netns, ifname: string): Promise<void> {
    await this.exec(ns, 'ethtool', ['-K', ifname, 'tx', 'off']);
  }

  /** Makes ns route between its devices (a node). */
  async enableForwarding(ns: Netns): Promise<void> {
    await this.sysctl(ns, 'net.ipv4.ip_forward', 1);
    await this.sysctl(ns, 'net.ipv6.conf.all.forwarding', 1);
  }

  async ifindex(ns: Netns, ifname: string): Promise<number> {
    const out = await this.exec(ns, 'cat', [`/sys/class/net/${ifname}/ifindex`]);
    const n = Number(out.stdout.trim());
    if (!Number.isInteger(n) || n <= 0) throw new Error(`ifindex of ${ns.name}:${ifname}: got ${JSON.stringify(out.stdout)}`);
    return n;
  }

  /** Device names in ns except lo. */
  async devices(ns: Netns): Promise<string[]> {
    const out = await this.ip(ns, ['-o', 'link', 'show']);
    return out.stdout.split('\n').filter(Boolean)
      .map((l) => l.split(':')[1]!.trim().split('@')[0]!)
      .filter((n) => n !== 'lo');
  }

  /**
   * A pod: its own namespace, eth0 veth'd to hostIf in the node namespace, routed (no bridge): the
   * pod has /32 (/128) addresses and a default route through a gateway address that sits on the
   * node-side device; the node routes each pod address to its device. The node must forward
   * (enableForwarding).
   */
  async addPod(o: PodOptions): Promise<Pod> {
    const gw4 = o.gateways?.v4 ?? '10.244.255.254';
    const gw6 = o.gateways?.v6 ?? 'fd00:10:244:ffff::fffe';
    const ns = await this.addNetns(o.name);
    await this.addVeth(o.node, o.hostIf, ns, 'eth0');
    const has4 = o.addresses.some((a) => !a.includes(':'));
    const has6 = o.addresses.some((a) => a.includes(':'));
    for (const a of o.addresses) {
      await this.addAddress(ns, 'eth0', a);
      await this.addRoute(o.node, a, { dev: o.hostIf });
    }
    if (has4) {
      await this.addAddress(o.node, o.hostIf, gw4);
      await this.addRoute(ns, gw4, { dev: 'eth0' });
      await this.addRoute(ns, 'default', { via: gw4, dev: 'eth0' });
    }
    if (has6) {
      await this.addAddress(o.node, o.hostIf, gw6);
      await this.addRoute(ns, gw6, { dev: 'eth0' });
      await this.addRoute(ns, 'default', { via: gw6, dev: 'eth0' });
    }
    if (o.txOff ?? true) await this.txOff(ns, 'eth0');
    return { name: o.name, ns, hostIf: o.hostIf, addresses: o.addresses };
  }

  /**
   * Starts a tracked process inside ns (or in the host namespace when ns is null), optionally inside
   * a cgroup: the wrapper shell moves itself into the cgroup before it execs, so the process never
   * runs a syscall outside it.
   */
  spawn(ns: Netns | null, cmd: string, args: string[], opts: { cgroup?: string; what?: string; stdin?: boolean } = {}): LabProcess {
    if (this.closed) throw new Error(`lab ${this.prefix}: spawn after cleanup`);
    let argv = ns ? ['nsenter', `--net=${ns.path}`, cmd, ...args] : [cmd, ...args];
    if (opts.cgroup) {
      const procs = join(opts.cgroup, 'cgroup.procs');
      argv = ['sh', '-c', 'echo $$ > "$0" && exec "$@"', procs, ...argv];
    }
    // killed with this process: when ava times a test file out it ends the worker without the
    // after.always hooks, and an agent left running (it was seen) keeps syncing, holding CPU and
    // pins; the signal survives the execs (sh, nsenter) as the same pid
    const what = opts.what ?? argv.join(' ');
    if (HAVE_SETPRIV) argv = [SETPRIV, '--pdeathsig', 'KILL', ...argv];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) throw new Error(`could not start ${argv.join(' ')}`);
    let out = '';
    const keep = (d: Buffer) => { out = (out + d.toString()).slice(-64 << 10); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const exited = new Promise<number | string>((resolve) => {
      // 'close' (not 'exit') so that every byte of stdout and stderr has arrived
      child.on('close', (code, signal) => resolve(code ?? signal ?? -1));
      child.on('error', () => resolve(-1));
    });
    const proc: LabProcess = { child, pid: child.pid, what, output: () => out, exited };
    this.procs.add(proc);
    void exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** Runs a tracked process to its end (bounded by timeoutMs, killed past it); returns its stdout. */
  async runIn(ns: Netns | null, cmd: string, args: string[], opts: { cgroup?: string; timeoutMs?: number } = {}): Promise<{ code: number | string; stdout: string; stderr: string }> {
    const p = this.spawn(ns, cmd, args, opts);
    let stdout = '', stderr = '';
    p.child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const limit = opts.timeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), limit); });
    const code = await Promise.race([p.exited, timeout]);
    clearTimeout(timer);
    if (code === 'timeout') {
      await killProc(p);
      throw new Error(`${p.what}: still running after ${limit} ms: ${p.output().slice(-500)}`);
    }
    return { code, stdout, stderr };
  }

  /** Starts testing/servers/pod-server.mjs in ns and waits (bounded) for it to listen. */
  async startPodServer(ns: Netns, o: { name: string; bind?: string[]; http?: number; udp?: number }): Promise<LabProcess> {
    const args = [POD_SERVER, '--name', o.name];
    for (const b of o.bind ?? []) args.push('--bind', b);
    if (o.http) args.push('--http', String(o.http));
    if (o.udp) args.push('--udp', String(o.udp));
    const p = this.spawn(ns, process.execPath, args, { what: `pod-server ${o.name} in ${ns.name}` });
    // bounded generously: a node process starting at load 35 took over 10 s
    await waitForLine(p, 'ready', 60_000);
    return p;
  }

  /**
   * Runs testing/servers/client.mjs in ns (optionally in a cgroup) and returns its per-request
   * results. Bounded: count * timeoutMs plus start-up.
   */
  /**
   * Starts a bounded load (servers/load.mjs: sequential requests until durationMs) from ns; stop()
   * ends it early (SIGTERM) and both resolve to what it saw.
   */
  load(ns: Netns, o: { proto: 'http' | 'udp'; host: string; port: number; durationMs: number; timeoutMs?: number; intervalMs?: number; keepAlive?: boolean; max?: number }): { done: Promise<LoadResult>; stop(): Promise<LoadResult> } {
    const args = [LAB_LOAD, '--proto', o.proto, '--host', o.host, '--port', String(o.port), '--duration-ms', String(o.durationMs), '--max', String(o.max ?? 1_000_000),
      '--timeout-ms', String(o.timeoutMs ?? 1000), '--interval-ms', String(o.intervalMs ?? 0), ...(o.keepAlive ? ['--keep-alive', 'true'] : [])];
    const p = this.spawn(ns, process.execPath, args, { what: `load ${o.proto} ${o.host}:${o.port}` });
    const done = p.exited.then(() => {
      const line = p.output().split('\n').find((l) => l.startsWith('{"sent"'));
      if (!line) throw new Error(`load ${o.host}:${o.port}: no result: ${p.output().slice(-500)}`);
      return JSON.parse(line) as LoadResult;
    });
    return { done, stop: () => { p.child.kill('SIGTERM'); return done; } };
  }

  async client(ns: Netns, o: ClientOptions, cgroup?: string): Promise<ClientResult[]> {
    const count = o.count ?? 1, timeoutMs = o.timeoutMs ?? 2000;
    const args = [LAB_CLIENT, '--proto', o.proto, '--host', o.host, '--port', String(o.port),
      '--count', String(count), '--timeout-ms', String(timeoutMs)];
    if (o.udpConnect) args.push('--udp-connect');
    if (o.payload !== undefined) args.push('--payload', o.payload);
    if (o.path !== undefined) args.push('--path', o.path);
    if (o.bind !== undefined) args.push('--bind', o.bind);
    if (o.sport !== undefined) args.push('--sport', String(o.sport));
    const r = await this.runIn(ns, process.execPath, args, { cgroup, timeoutMs: count * timeoutMs + 15_000 });
    if (r.code !== 0) throw new Error(`client in ${ns.name} exited ${r.code}: ${r.stderr.trim()}`);
    return (JSON.parse(r.stdout) as { results: ClientResult[] }).results;
  }

  /**
   * One curl request from inside ns (optionally in a cgroup), bounded by timeoutS. exit is curl's
   * exit code: 0 ok, 7 refused (could not connect), 28 timed out.
   */
  async curl(ns: Netns, url: string, opts: { timeoutS?: number; cgroup?: string } = {}): Promise<{ exit: number; body: string; stderr: string }> {
    const t = opts.timeoutS ?? 2;
    const r = await this.runIn(ns, 'curl', ['-sS', '--max-time', String(t), '--connect-timeout', String(t), url], { cgroup: opts.cgroup, timeoutMs: t * 1000 + 10_000 });
    return { exit: typeof r.code === 'number' ? r.code : -1, body: r.stdout.trim(), stderr: r.stderr.trim() };
  }

  /** A child cgroup (v2) named <prefix><name>; removed at cleanup after its processes are killed. */
  addCgroup(name: string): string {
    checkLabName(name, 'cgroup');
    const path = join(hostRoots().cgroup2, this.prefix + name);
    mkdirSync(path);
    this.onCleanup(`cgroup ${path}`, async () => { await removeCgroup(path); });
    return path;
  }

  /**
   * A memory cgroup <prefix><name> limited to limitBytes, removed at cleanup: on cgroup v2 where its
   * root delegates the memory controller, else in a v1 memory hierarchy (a hybrid host); undefined
   * where neither exists. Returns the file a process writes its PID to, to join it.
   */
  addMemoryCgroup(name: string, limitBytes: number): string | undefined {
    checkLabName(name, 'cgroup');
    const mem = memoryHierarchy();
    if (!mem) return undefined;
    const dir = join(mem.root, this.prefix + name);
    mkdirSync(dir);
    this.onCleanup(`cgroup ${dir}`, async () => { await removeCgroup(dir); });
    writeFileSync(join(dir, mem.limitFile), String(limitBytes));
    return join(dir, 'cgroup.procs');
  }

  /** A directory on bpffs for pins, <prefix><name>; removed (recursively) at cleanup. */
  addPinRoot(name: string): string {
    checkLabName(name, 'pin root');
    const path = join(hostRoots().bpffs, this.prefix + name);
    mkdirSync(path);
    this.onCleanup(`pins ${path}`, () => { rmSync(path, { recursive: true, force: true }); });
    return path;
  }

  /**
   * Undoes everything, last first: kills every process it started (by PID), then runs the undo
   * steps. Never stops half-way; throws one error listing every step that failed.
   */
  async cleanup(): Promise<void> {
    this.closed = true;
    onSignal.delete(this);
    const failures: string[] = [];
    await Promise.all([...this.procs].map((p) => killProc(p).catch((e: Error) => { failures.push(`kill ${p.what}: ${e.message}`); })));
    while (this.cleanups.length) {
      const c = this.cleanups.pop()!;
      try { await c.fn(); } catch (e) { failures.push(`${c.what}: ${(e as Error).message}`); }
    }
    if (failures.length) throw new Error(`lab ${this.prefix} cleanup: ${failures.join('; ')}`);
  }
}

export interface ClientOptions {
  proto: 'http' | 'udp';
  host: string;
  port: number;
  count?: number;
  timeoutMs?: number;
  udpConnect?: boolean;
  payload?: string;
  path?: string;
  /** source address the client binds its sockets to */
  bind?: string;
  /** request i's source port is sport + i (a 5-tuple no earlier exchange used) */
  sport?: number;
}

export interface ClientResult { ok: boolean; reply?: string; peer?: string; from?: string; error?: string }

async function killProc(p: LabProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const gone = await Promise.race([p.exited.then(() => true), sleep(2000).then(() => false)]);
  if (!gone) {
    p.child.kill('SIGKILL');
    await Promise.race([p.exited, sleep(2000)]);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until the process prints a line equal to `line`; fails with its output on exit or timeout. */
export function waitForLine(p: LabProcess, line: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => { done(); reject(new Error(`${p.what}: no "${line}" within ${timeoutMs} ms: ${p.output().slice(-500)}`)); }, timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString();
      if (buf.split('\n').includes(line)) { done(); resolve(); }
    };
    const onExit = (code: number | null) => { done(); reject(new Error(`${p.what}: exited ${code} before "${line}": ${p.output().slice(-500)}`)); };
    const done = () => { clearTimeout(timer); p.child.stdout!.off('data', onData); p.child.off('exit', onExit); };
    p.child.stdout!.on('data', onData);
    p.child.once('exit', onExit);
  });
}

/** Kills what is left in a cgroup (by PID, from cgroup.procs), then removes it. */
async function removeCgroup(path: string): Promise<void> {
  if (!existsSync(path)) return;
  for (let round = 0; round < 20; round++) {
    const pids = readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    if (pids.length === 0) break;
    for (const pid of pids) { try { process.kill(pid, round < 10 ? 'SIGTERM' : 'SIGKILL'); } catch { /* gone */ } }
    await sleep(100);
  }
  // a child cgroup can only go when its descendants have gone
  for (const d of readdirSync(path, { withFileTypes: true })) {
    if (d.isDirectory()) await removeCgroup(join(path, d.name));
  }
  rmdirSync(path);
}

/**
 * Where a lab makes memory-limited cgroups: cgroup v2's root where it delegates the memory controller,
 * else the v1 memory hierarchy (a hybrid host); undefined where neither exists.
 */
function memoryHierarchy(): { root: string; limitFile: string } | undefined {
  const v2 = hostRoots().cgroup2;
  if (existsSync(join(v2, 'cgroup.subtree_control')) && /\bmemory\b/.test(readFileSync(join(v2, 'cgroup.subtree_control'), 'utf8'))) return { root: v2, limitFile: 'memory.max' };
  const v1 = cgroupMounts(readFileSync('/proc/self/mountinfo', 'utf8')).find((m) => m.controllers.includes('memory') && m.root === '/');
  return v1 && { root: v1.point, limitFile: 'memory.limit_in_bytes' };
}

/**
 * Removes namespaces, cgroups and bpffs pin roots left by lab runs whose process is gone
 * (names kbplab<pid>-..., pid dead). Never touches objects of a live run. Returns what it removed.
 */
export async function sweepLeftovers(): Promise<string[]> {
  const re = new RegExp(`^${LAB_PREFIX}(\\d+)-`);
  const stale = (name: string) => { const m = re.exec(name); return m !== null && !pidAlive(Number(m[1])); };
  const removed: string[] = [];
  const list = (dir: string) => { try { return readdirSync(dir); } catch { return []; } };
  for (const name of list(NETNS_DIR).filter(stale)) {
    await run('ip', ['netns', 'del', name], { allowFail: true });
    removed.push(`netns ${name}`);
  }
  // cgroup v2's, and a v1 memory hierarchy's (Lab.addMemoryCgroup on a hybrid host)
  const roots = new Set([hostRoots().cgroup2, memoryHierarchy()?.root].filter((r): r is string => r !== undefined));
  for (const root of roots) {
    for (const name of list(root).filter(stale)) {
      const path = join(root, name);
      try { await removeCgroup(path); removed.push(`cgroup ${path}`); } catch { /* reported by the next sweep */ }
    }
  }
  let held: Set<string> | undefined;
  for (const name of list(BPFFS_ROOT).filter(stale)) {
    // a pid says nothing about a process in another pid namespace: a root something holds is live
    if (pinRootHeld(join(BPFFS_ROOT, name), () => (held ??= heldIds()))) continue;
    rmSync(join(BPFFS_ROOT, name), { recursive: true, force: true });
    removed.push(`pins ${join(BPFFS_ROOT, name)}`);
  }
  for (const path of sweepStateFiles((root) => root.startsWith(`${BPFFS_ROOT}/`) && stale(root.slice(BPFFS_ROOT.length + 1)))) removed.push(`state file ${path}`);
  // what a run killed before its cleanup left in the temporary directory: a lab data plane's state
  // file and the files beside it (testing/lab-dataplane.ts)
  for (const name of list(tmpdir()).filter(stale)) {
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
    removed.push(`file ${join(tmpdir(), name)}`);
  }
  return removed;
}

/** True when this process can build labs: root, bpffs, cgroup v2, the tools. */
export function labAvailable(): { ok: boolean; why?: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: 'needs root' };
  try {
    hostRoots();
  } catch (e) {
    return { ok: false, why: (e as Error).message };
  }
  return { ok: true };
}
