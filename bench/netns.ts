// Topology helpers for the kernel-facing benches, on top of the lab's Lab (test/lab/netns.ts):
// - ExitGuard: what a bench created (namespaces, pin roots, state files, processes) is also removed
//   synchronously from a process 'exit' handler (and on SIGINT/SIGTERM), so an exception, a timeout
//   kill of the harness or Ctrl-C leaves nothing behind; Lab.cleanup() stays the normal path.
// - run as a script inside a node namespace (`nsenter --net=... node --import=tsx bench/netns.ts attach
//   PINROOT STATEFILE IF...`): loads bpf/kbp.bpf.o with its maps under PINROOT and attaches
//   lb_tc_ingress / lb_tc_egress on the named devices of that namespace. tc attachments are per
//   namespace, so this must run there; the maps are global and the bench fills them from outside.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, NETNS_DIR, Netns, type LabProcess } from '../test/lab/netns.js';

export class ExitGuard {
  private readonly netns = new Set<string>();
  private readonly paths = new Set<string>();
  private readonly pids = new Set<number>();
  private readonly onExit = () => this.sweep();
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.sweep();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };

  constructor() {
    process.on('exit', this.onExit);
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  netnsAdded(ns: Netns): Netns {
    this.netns.add(ns.name);
    return ns;
  }

  /** a file or directory (pin root, state file) to remove */
  path(p: string): string {
    this.paths.add(p);
    return p;
  }

  proc(p: LabProcess): LabProcess {
    this.pids.add(p.pid);
    void p.exited.then(() => this.pids.delete(p.pid));
    return p;
  }

  /** Synchronous last-resort cleanup; idempotent. */
  sweep(): void {
    for (const pid of this.pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    this.pids.clear();
    for (const name of this.netns) {
      if (existsSync(join(NETNS_DIR, name))) {
        try { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore', timeout: 10_000 }); } catch { /* reported by sweepLeftovers */ }
      }
    }
    this.netns.clear();
    for (const p of this.paths) rmSync(p, { recursive: true, force: true });
    this.paths.clear();
  }

  dispose(): void {
    this.sweep();
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

/** A Lab whose namespaces, pin roots and processes are also known to an ExitGuard. */
export class GuardedLab extends Lab {
  readonly guard = new ExitGuard();

  override async addNetns(name: string): Promise<Netns> {
    this.guard.netnsAdded(new Netns(this.prefix + name));
    return super.addNetns(name);
  }

  override addPinRoot(name: string): string {
    return this.guard.path(super.addPinRoot(name));
  }

  override spawn(...args: Parameters<Lab['spawn']>): LabProcess {
    return this.guard.proc(super.spawn(...args));
  }

  override async cleanup(): Promise<void> {
    try {
      await super.cleanup();
    } finally {
      this.guard.dispose();
    }
  }
}

/** ms: wall time from start to exit; done false: killed at the cap, so ms is a lower bound */
export interface Restore { ms: number; done: boolean }

/**
 * Feeds text to cmd inside ns; a run past capMs is killed (by its pid) and reported as a lower bound.
 * The input is tens of MB at 10,000 Services: a killed reader must not crash us with EPIPE.
 */
export function restore(ns: Netns, cmd: string, args: string[], text: string, capMs: number): Promise<Restore> {
  const argv = [`--net=${ns.path}`, cmd, ...(cmd.startsWith('iptables') ? ['-w', '5'] : []), ...args];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('nsenter', argv, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '', killed = false;
    child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
    child.stdin.on('error', () => { /* the reader went away: its exit status tells why */ });
    const timer = setTimeout(() => { killed = true; child.kill('SIGKILL'); }, capMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => {
      clearTimeout(timer);
      const ms = performance.now() - t0;
      if (killed) resolve({ ms: capMs, done: false });
      else if (code === 0) resolve({ ms, done: true });
      else reject(new Error(`${cmd} ${args.join(' ')} in ${ns.name}: exit ${code}: ${stderr.trim().slice(0, 500)}`));
    });
    child.stdin.end(text);
  });
}

export const THIS_FILE = fileURLToPath(import.meta.url);

/**
 * argv that loads the object (maps reused from pinRoot) inside ns and attaches lb_tc_ingress and
 * lb_tc_egress on each of ifnames there, and lb_sock_connect4 to cgroup when given.
 */
export function attachArgv(ns: Netns, pinRoot: string, statePath: string, o: { tc?: string[]; cgroup?: string }): string[] {
  const args = ['nsenter', `--net=${ns.path}`, process.execPath, '--import=tsx', THIS_FILE, 'attach', pinRoot, statePath];
  for (const i of o.tc ?? []) args.push('--tc', i);
  if (o.cgroup) args.push('--cgroup', o.cgroup);
  return args;
}

async function attachMain(argv: string[]): Promise<void> {
  const [pinRoot, statePath, ...rest] = argv;
  const tc: string[] = [];
  let cgroup: string | undefined;
  for (let i = 0; i < rest.length; i += 2) {
    if (rest[i] === '--tc' && rest[i + 1]) tc.push(rest[i + 1]!);
    else if (rest[i] === '--cgroup' && rest[i + 1]) cgroup = rest[i + 1];
    else throw new Error(`netns.ts attach: unexpected argument ${rest[i]}`);
  }
  if (!pinRoot || !statePath || (tc.length === 0 && !cgroup)) throw new Error('usage: netns.ts attach PINROOT STATEFILE [--tc IF]... [--cgroup PATH]');
  const { loadDataplane, attachTc, attachCgroup } = await import('../src/dataplane/bpf/loader.js');
  const { AgentStateFile } = await import('../src/dataplane/bpf/agent-state-file.js');
  const state = AgentStateFile.forPinRoot(pinRoot, statePath);
  const d = loadDataplane({ pinRoot, state, mountBpffs: false });
  try {
    for (const name of tc) {
      // nsenter --net keeps the host's /sys mount, so /sys/class/net would name the host's devices
      const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'dev', name], { encoding: 'utf8' })) as Array<{ ifindex: number }>;
      const ifindex = links[0]?.ifindex ?? 0;
      if (!Number.isInteger(ifindex) || ifindex <= 0) throw new Error(`device ${name}: no ifindex`);
      attachTc(state, d.object.program('lb_tc_ingress'), ifindex, 'ingress');
      attachTc(state, d.object.program('lb_tc_egress'), ifindex, 'egress');
    }
    if (cgroup) attachCgroup(state, d.object.program('lb_sock_connect4'), cgroup, 'connect4');
  } finally {
    d.object.close();
  }
  process.stdout.write('attached\n');
}

if (process.argv[1] === THIS_FILE && process.argv[2] === 'attach') {
  attachMain(process.argv.slice(3)).catch((e: Error) => {
    process.stderr.write(`netns.ts attach: ${e.stack ?? e.message}\n`);
    process.exit(1);
  });
}
