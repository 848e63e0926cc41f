// Link events of this network namespace (issue 7): a pod's new veth must get the tc programs before
// the pod sends, not at the next housekeeping scan (10 s by default), and an address added to a
// device must answer NodePorts at once (issue 13). A long-running `ip -o monitor link address` child
// (rtnetlink RTMGRP_LINK and the address groups, one line per RTM_NEWLINK / RTM_DELLINK /
// RTM_NEWADDR / RTM_DELADDR) is the trigger; what to attach is decided by the same full device scan as housekeeping, so a missed or
// garbled line costs at most one housekeeping interval, never a wrong attachment.
//
// Why a child and not a netlink socket in the addon: the addon stays one library call per method (a
// socket, a libuv poll handle and a ThreadSafeFunction would be the addon's first long-lived state
// and thread), `ip` already gives this namespace's view wherever the agent runs (nsenter, a pod),
// and the agent already depends on iproute2. The cost is a process to supervise: it is restarted
// with backoff when it dies, and killed by its pid on stop().
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { systemBinary } from '../util/exec.js';

export interface LinkEvent {
  kind: 'new' | 'del';
  ifindex: number;
  ifname: string;
  /** an address added to or removed from the device (RTM_NEWADDR / RTM_DELADDR), not the link itself */
  address?: string;
}

/**
 * One line of `ip -o monitor link address`: a link ("3: veth1@if2: <...> ..." or "Deleted 3: veth1@if2: ...")
 * or an address ("3: eth0    inet 192.168.50.21/24 scope global eth0\ ..."); undefined for others.
 */
export function parseMonitorLine(line: string): LinkEvent | undefined {
  const t = line.trim();
  const [, adeleted, aindex, aname, address] = /^(Deleted )?(\d+): ([^:@\s]+)\s+inet6? ([0-9a-fA-F.:]+)\/\d+/.exec(t) ?? [];
  if (aname !== undefined && address !== undefined) return { kind: adeleted ? 'del' : 'new', ifindex: Number(aindex), ifname: aname, address };
  const [, deleted, ifindex, ifname] = /^(Deleted )?(\d+): ([^:@\s]+)(?:@[^:\s]*)?:/.exec(t) ?? [];
  if (ifname === undefined) return undefined;
  return { kind: deleted ? 'del' : 'new', ifindex: Number(ifindex), ifname };
}

export interface LinkWatcherOptions {
  /** called for every link event (several per new veth: created, moved, up); coalescing is the caller's */
  onEvent: (e: LinkEvent) => void;
  /** called once the monitor runs (also after a restart): events before it were not seen */
  onStart?: () => void;
  log?: Logger;
  /** `ip` binary; default: found by absolute path */
  ip?: string;
  /** restart backoff bounds */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export class LinkWatcher {
  readonly #opts: LinkWatcherOptions;
  readonly #log: Logger;
  #child: ChildProcess | undefined;
  #stopped = true;
  #restart: NodeJS.Timeout | undefined;
  #failures = 0;
  #starts = 0;

  constructor(opts: LinkWatcherOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? silentLogger;
  }

  /** how many times the monitor was started (restarts included) */
  get starts(): number {
    return this.#starts;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#spawn();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#restart) clearTimeout(this.#restart);
    this.#restart = undefined;
    const c = this.#child;
    this.#child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }

  #spawn(): void {
    let ip: string;
    try {
      ip = this.#opts.ip ?? systemBinary('ip');
    } catch (e) {
      this.#log.warn({ err: e }, 'link events unavailable; new devices wait for the housekeeping scan');
      return;
    }
    const child = spawn(ip, ['-o', 'monitor', 'link', 'address'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#starts++;
    let buf = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buf += d;
      // bounded: a line longer than 64 KiB is not ip's; drop it rather than grow
      if (buf.length > 65_536 && !buf.includes('\n')) buf = '';
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.#failures = 0;
        const e = parseMonitorLine(line);
        if (e) this.#opts.onEvent(e);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { stderr = (stderr + d).slice(-2000); });
    child.on('spawn', () => this.#opts.onStart?.());
    // a failed spawn (ENOENT, EAGAIN, ETXTBSY) may bring 'error' without 'close': restart from either, once
    let ended = false;
    const end = (code: number | null, signal: NodeJS.Signals | null, err?: Error): void => {
      if (ended) return;
      ended = true;
      if (this.#child === child) this.#child = undefined;
      if (this.#stopped) return;
      const min = this.#opts.minBackoffMs ?? 250, max = this.#opts.maxBackoffMs ?? 30_000;
      const delay = Math.min(max, min * 2 ** Math.min(this.#failures, 16));
      this.#failures++;
      this.#log.warn({ code, signal, err, stderr: stderr.trim() || undefined, restartInMs: delay }, 'link monitor (ip monitor link) ended; restarting');
      this.#restart = setTimeout(() => {
        this.#restart = undefined;
        if (!this.#stopped) this.#spawn();
      }, delay);
      this.#restart.unref();
    };
    child.on('error', (e) => end(null, null, e));
    child.on('close', (code, signal) => end(code, signal));
  }
}
