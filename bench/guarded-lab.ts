// The kernel-facing benches' Lab (testing/netns.ts) with an ExitGuard: what a bench created
// (namespaces, pin roots, state files, processes) is also removed synchronously from a process 'exit'
// handler (and on SIGINT/SIGTERM), so an exception, a timeout kill of the harness or Ctrl-C leaves
// nothing behind; Lab.cleanup() stays the normal path. Also restore(), which feeds a ruleset to
// iptables-restore or nft inside a namespace with a time cap.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, NETNS_DIR, Netns, type LabProcess } from '../testing/netns.js';

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
