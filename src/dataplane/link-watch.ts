// Link events of this network namespace (issue 7): a pod's new veth must get the tc programs before
// the pod sends, not at the next housekeeping scan (10 s by default), and an address added to a
// device must answer NodePorts at once (issue 13). An rtnetlink socket subscribed to the link and
// address groups (RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR: RTM_NEWLINK / RTM_DELLINK /
// RTM_NEWADDR / RTM_DELADDR), read on the event loop through the netlink addon, is the trigger; what
// to attach is decided by the same full device scan as housekeeping, so a missed or garbled event
// costs at most one housekeeping interval, never a wrong attachment. Events the kernel dropped
// (ENOBUFS: the socket's buffer overflowed) ask for that scan too.
//
// Why not an `ip -o monitor link address` child, as before (it stays as the fallback where the addon
// cannot load): libuv spawns by fork(), which write-protects every page of the agent, and each page
// then faults at its next write. The child was spawned early for that reason (session 15: a fork
// after the first sync cost ~20 faults, +0.3 ms, in every one-change sync for hundreds of changes),
// but a restart after it died forked the grown agent again; and a process to supervise, a text format
// to parse and iproute2 on the path were the price of every event.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { systemBinary } from '../util/exec.js';
import { netlinkAddonMissing, NetlinkSubscription } from './ipvs/native.js';
import { decodeAddr, NETLINK_ROUTE, RTM } from './ipvs/rtnl.js';
import type { Message } from './ipvs/netlink.js';
import { decodeLink } from './links.js';

/** rtnetlink's multicast groups (linux/rtnetlink.h, the RTMGRP_* bits of a bind) */
export const RTMGRP_LINK = 0x1;
export const RTMGRP_IPV4_IFADDR = 0x10;
export const RTMGRP_IPV6_IFADDR = 0x100;

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

/**
 * The events of rtnetlink messages (a subscription's): a link created or changed (RTM_NEWLINK), deleted
 * (RTM_DELLINK), an address added or removed (RTM_NEWADDR / RTM_DELADDR: ifname is the address's label
 * where the kernel gives one, IPv4's, else empty). Other messages and malformed ones give nothing.
 */
export function linkEventsOf(messages: readonly Message[]): LinkEvent[] {
  const out: LinkEvent[] = [];
  for (const m of messages) {
    const kind = m.type === RTM.NEWLINK || m.type === RTM.NEWADDR ? 'new' : 'del';
    if (m.type === RTM.NEWLINK || m.type === RTM.DELLINK) {
      const l = decodeLink(m);
      if (l) out.push({ kind, ifindex: l.ifindex, ifname: l.ifname });
    } else if (m.type === RTM.NEWADDR || m.type === RTM.DELADDR) {
      const a = decodeAddr(m);
      if (a) out.push({ kind, ifindex: a.index, ifname: a.label ?? '', address: a.address });
    }
  }
  return out;
}

export interface LinkWatcherOptions {
  /** called for every link event (several per new veth: created, moved, up); coalescing is the caller's */
  onEvent: (e: LinkEvent) => void;
  /**
   * called when events may have been missed: once the monitor runs (also after a restart: events
   * before it were not seen), and when the kernel dropped events (the socket's buffer overflowed)
   */
  onStart?: () => void;
  log?: Logger;
  /**
   * an `ip` binary to run as `ip -o monitor link address` instead of the netlink subscription (the
   * fallback where the netlink addon cannot load finds `ip` by absolute path)
   */
  ip?: string;
  /** the subscription's receive buffer in bytes (default 1 MiB; a test makes it small to see a loss) */
  rcvbuf?: number;
  /** restart backoff bounds */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export class LinkWatcher {
  readonly #opts: LinkWatcherOptions;
  readonly #log: Logger;
  #child: ChildProcess | undefined;
  #sub: NetlinkSubscription | undefined;
  #mode: 'netlink' | 'ip' | undefined;
  #losses = 0;
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

  /** how events arrive: a netlink subscription, or an `ip monitor` child (undefined before start) */
  get mode(): 'netlink' | 'ip' | undefined {
    return this.#mode;
  }

  /** how many times the kernel dropped events (each asked for a full scan through onStart) */
  get losses(): number {
    return this.#losses;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (this.#opts.ip === undefined && this.#mode !== 'ip') this.#subscribe();
    else this.#spawn();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#restart) clearTimeout(this.#restart);
    this.#restart = undefined;
    this.#sub?.close();
    this.#sub = undefined;
    const c = this.#child;
    this.#child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }

  #subscribe(): void {
    const missing = netlinkAddonMissing();
    if (missing !== undefined) {
      // no addon on this host (a build without it): the `ip monitor` child, as before
      this.#log.warn({ reason: missing }, 'link events come from an `ip monitor` child (the netlink addon is not available)');
      this.#spawn();
      return;
    }
    let sub: NetlinkSubscription;
    try {
      sub = new NetlinkSubscription(NETLINK_ROUTE, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, {
        onMessages: (m) => {
          this.#failures = 0;
          for (const e of linkEventsOf(m)) this.#opts.onEvent(e);
        },
        onLoss: () => {
          this.#losses++;
          this.#log.info({ losses: this.#losses }, 'link events were dropped by the kernel (the socket buffer overflowed); scanning all devices');
          this.#opts.onStart?.();
        },
        onError: (e) => {
          if (this.#sub !== sub) return;
          this.#sub.close();
          this.#sub = undefined;
          this.#retry(() => this.#subscribe(), { err: e }, 'link event subscription failed; subscribing again');
        },
      }, this.#opts.rcvbuf);
    } catch (e) {
      this.#retry(() => this.#subscribe(), { err: e }, 'link event subscription failed; subscribing again');
      return;
    }
    this.#mode = 'netlink';
    this.#sub = sub;
    this.#starts++;
    // as the child's 'spawn': after start() has returned
    setImmediate(() => { if (this.#sub === sub) this.#opts.onStart?.(); });
  }

  /** Runs `again` after a backoff that doubles with each failure in a row (reset by an event). */
  #retry(again: () => void, fields: Record<string, unknown>, msg: string): void {
    if (this.#stopped) return;
    const min = this.#opts.minBackoffMs ?? 250, max = this.#opts.maxBackoffMs ?? 30_000;
    const delay = Math.min(max, min * 2 ** Math.min(this.#failures, 16));
    this.#failures++;
    this.#log.warn({ ...fields, restartInMs: delay }, msg);
    this.#restart = setTimeout(() => {
      this.#restart = undefined;
      if (!this.#stopped) again();
    }, delay);
    this.#restart.unref();
  }

  #spawn(): void {
    this.#mode = 'ip';
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
      this.#retry(() => this.#spawn(), { code, signal, err, stderr: stderr.trim() || undefined }, 'link monitor (ip monitor link) ended; restarting');
    };
    child.on('error', (e) => end(null, null, e));
    child.on('close', (code, signal) => end(code, signal));
  }
}
