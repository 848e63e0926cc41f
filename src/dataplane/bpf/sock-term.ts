// Socket termination (issue 7): connected UDP sockets whose backend left their frontend.
//
// The socket hooks translate a connected UDP socket once, at connect(); from then on the kernel sends
// every datagram to that backend, and nothing of ours runs again. kube-proxy meets the same problem
// with conntrack: it flushes the UDP conntrack entries of a removed endpoint
// (pkg/proxy/conntrack/cleanup.go, CleanStaleEntries -> filterForNAT / deleteStaleEndpointConnections),
// and the client's next datagram is balanced anew. Here the socket itself holds the choice, so it is
// destroyed: bpf/lb_sock_term.bpf.c, an iter/udp program, calls the bpf_sock_destroy kfunc (kernel
// 6.5+) on every connected UDP socket whose lb_sock_revnat entry no longer holds; the application
// gets ECONNABORTED and reconnects through the hooks. A UDP iterator walks the sockets of the network
// namespace it was created in, so the agent runs it once per namespace of the host (pods are
// namespaces), entered through /proc/<pid>/ns/net of one process in each: an iter/task program of the
// same object (lb_netns_tasks) lists every process's namespace in one read.
//
// A separate object: where it does not load (a kernel before 6.5, no BTF), the agent logs once that
// connected UDP sockets keep a removed backend until the application reconnects, and goes on.
import { closeSync, fstatSync, openSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ipFrom16 } from '../../util/ip.js';
import { BpfObject } from './native/object.js';
import { sizeLikePins } from './loader.js';
import type { BpfProgram } from './native/program.js';
import type { Plan, PlanOp } from '../../plan/types.js';
import type { Protocol } from '../../model/compiled.js';

/** struct lb_sock_term_rec of bpf/lb_sock_term.bpf.c */
const REC_SIZE = 40;
/** struct lb_netns_rec of bpf/lb_sock_term.bpf.c: a process's tgid and its network namespace's inode */
const NETNS_REC_SIZE = 8;

export interface TerminatedSocket {
  cookie: bigint;
  /** the backend the socket was connected to */
  address: string;
  port: number;
  feId: number;
  /** bpf_sock_destroy's result: 0, or a negative errno */
  err: number;
}

export interface SockTermRun {
  /** network namespaces walked */
  namespaces: number;
  /** namespaces that could not be entered (a process exited meanwhile): skipped */
  skipped: number;
  /** of those, namespaces whose processes' /proc/PID/ns/net this agent may not open (EACCES, EPERM: no CAP_SYS_PTRACE) */
  denied: number;
  terminated: TerminatedSocket[];
}

/** bpf/lb_sock_term.bpf.o beside the main object. */
export function sockTermObjectPath(mainObjectPath: string): string {
  return join(dirname(mainObjectPath), 'lb_sock_term.bpf.o');
}

/**
 * The frontends' protocols by id, kept from what the data plane writes: a pass walks UDP sockets
 * only (iter/udp), so a backend that left a TCP or SCTP frontend needs none, and a pass walks every
 * network namespace of the host on the event loop (~0.1 ms each, and a read of every process's namespace) in the
 * way of the next change. An id never seen (maps of an earlier agent not read back) counts as UDP:
 * a pass too many, never one too few.
 */
export class FrontendProtocols {
  readonly #proto = new Map<number, Protocol>();

  /** the plan read back from the maps at start */
  seed(plan: Plan): void {
    for (const f of plan.frontends.values()) this.#proto.set(f.id, f.protocol);
  }

  /**
   * Whether a backend that left one of `left` (ops' frontends) may leave a connected UDP socket
   * behind: the frontend was UDP before ops or is UDP in them (an id deleted and reused in one
   * apply), or is unknown.
   */
  mayHoldUdp(left: Iterable<number>, ops: readonly PlanOp[]): boolean {
    let udpInOps: Set<number> | undefined;
    for (const id of left) {
      const p = this.#proto.get(id);
      if (p === undefined || p === 'UDP') return true;
      udpInOps ??= new Set(ops.flatMap((o) => (o.op === 'upsertFrontend' && o.frontend.protocol === 'UDP' ? [o.frontend.id] : [])));
      if (udpInOps.has(id)) return true;
    }
    return false;
  }

  /** ops written: deleted frontends forgotten, then upserted ones noted (an id may be reused) */
  note(ops: readonly PlanOp[]): void {
    // by index: a first sync's 1.4M ops at 100,000 Services, where a for-of step allocated its result
    for (let k = 0; k < ops.length; k++) {
      const o = ops[k]!;
      if (o.op === 'deleteFrontend') this.#proto.delete(o.frontend.id);
    }
    for (let k = 0; k < ops.length; k++) {
      const o = ops[k]!;
      if (o.op === 'upsertFrontend') this.#proto.set(o.frontend.id, o.frontend.protocol);
    }
  }
}

export class SockTerminator {
  readonly #object: BpfObject;
  readonly #prog: BpfProgram;
  /** lb_netns_tasks (an object of an earlier build lacks it: the namespaces then come from /proc) */
  readonly #tasks: BpfProgram | undefined;
  #taskBuf = Buffer.alloc(NETNS_REC_SIZE * 4096);
  /** whether this process is in the host's pid namespace, where the iterator's pids are /proc's */
  #hostPids: boolean | undefined;

  private constructor(object: BpfObject, prog: BpfProgram, tasks: BpfProgram | undefined) {
    this.#object = object;
    this.#prog = prog;
    this.#tasks = tasks;
  }

  /**
   * Loads the iterator object with the main object's maps (pinned under pinRoot, which must be loaded
   * first). Throws when the kernel cannot load it (no bpf_sock_destroy before 6.5): the caller logs.
   */
  static load(pinRoot: string, objectPath: string): SockTerminator {
    const object = BpfObject.open(objectPath, { pinRoot });
    try {
      // maps the agent sized at load (--bpf-map-max) are reused as they are pinned
      sizeLikePins(object, pinRoot);
      object.load();
      const tasks = object.programNames().includes('lb_netns_tasks') ? object.program('lb_netns_tasks') : undefined;
      return new SockTerminator(object, object.program('lb_sock_term_udp'), tasks);
    } catch (e) {
      object.close();
      throw e;
    }
  }

  /** Runs the iterator in this thread's namespace and in every other namespace a process of this host is in. */
  run(namespaces: Iterable<NetnsPaths> = this.netnsPaths()): SockTermRun {
    const out: SockTermRun = { namespaces: 0, skipped: 0, denied: 0, terminated: [] };
    const buf = Buffer.alloc(REC_SIZE * 1024);
    const walk = (fd: number): void => {
      const n = this.#prog.runIter(fd, buf);
      for (let off = 0; off + REC_SIZE <= Math.min(n, buf.length); off += REC_SIZE) out.terminated.push(decodeRec(buf, off));
      out.namespaces++;
    };
    walk(-1);
    for (const ns of namespaces) {
      const fd = openNetns(ns);
      if (typeof fd !== 'number') {
        out.skipped++;
        if (fd === 'denied') out.denied++;
        continue;
      }
      try {
        walk(fd);
      } finally {
        closeSync(fd);
      }
    }
    return out;
  }

  /**
   * The network namespaces of this host other than this thread's, each as the /proc/<pid>/ns/net
   * paths of its processes (any one enters it): from one read of lb_netns_tasks, where hostNetnsPaths
   * stats a path per process (~30 us each: ~40 ms on the event loop of a busy node). The walk of
   * /proc where the object lacks the program or this process is not in the host's pid namespace.
   */
  netnsPaths(procRoot = '/proc'): NetnsPaths[] {
    // the iterator gives pids in the host's pid namespace: /proc of another pid namespace (a container
    // without hostPID) names other processes by them, or none
    if (!this.#tasks || !(this.#hostPids ??= inInitialPidNamespace(procRoot))) return hostNetnsPaths(procRoot);
    let n = this.#tasks.runIter(-1, this.#taskBuf);
    if (n > this.#taskBuf.length) {
      // more processes than last time: once more with room for them and some to spare
      this.#taskBuf = Buffer.alloc(Math.ceil((n * 1.5) / NETNS_REC_SIZE) * NETNS_REC_SIZE);
      n = this.#tasks.runIter(-1, this.#taskBuf);
    }
    const own = nsInum(join(procRoot, 'thread-self', 'ns', 'net'));
    const byNs = new Map<number, string[]>();
    const b = this.#taskBuf, end = Math.min(n, b.length);
    for (let off = 0; off + NETNS_REC_SIZE <= end; off += NETNS_REC_SIZE) {
      const inum = b.readUInt32LE(off + 4);
      if (inum === own) continue;
      let paths = byNs.get(inum);
      if (!paths) byNs.set(inum, paths = []);
      paths.push(join(procRoot, String(b.readUInt32LE(off)), 'ns', 'net'));
    }
    return [...byNs].map(([inum, paths]) => ({ inum, paths }));
  }

  close(): void {
    this.#object.close();
  }
}

/** One network namespace: its inode and the /proc/<pid>/ns/net of its processes (any one enters it). */
export interface NetnsPaths { inum: number; paths: string[] }

/**
 * An fd of the first of the namespace's paths that opens and still is that namespace (a process that
 * exited since the list, or whose pid was reused, is passed over); else 'denied' when a path exists
 * that this agent may not open, 'gone' when none does.
 */
function openNetns(ns: NetnsPaths): number | 'denied' | 'gone' {
  let denied = false;
  for (const path of ns.paths) {
    const fd = openNs(path);
    if (fd === 'denied') denied = true;
    if (typeof fd !== 'number') continue;
    if (fstatSync(fd).ino === ns.inum) return fd;
    closeSync(fd);
  }
  return denied ? 'denied' : 'gone';
}

function openNs(path: string): number | 'denied' | 'gone' {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM' ? 'denied' : 'gone';
  }
}

/** The initial pid namespace's inode (PROC_PID_INIT_INO, include/linux/proc_ns.h): fixed. */
const PROC_PID_INIT_INO = 0xeffffffc;

/**
 * Whether this process is in the host's (the initial) pid namespace, where it sees every process and
 * so every pod's network namespace; in a container without hostPID it sees its own processes only.
 */
export function inInitialPidNamespace(procRoot = '/proc'): boolean {
  return nsInum(join(procRoot, 'self', 'ns', 'pid')) === PROC_PID_INIT_INO;
}

/** A namespace file's inode (nsfs: the namespace's inum, unique among namespaces), or undefined. */
function nsInum(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

function decodeRec(b: Buffer, off: number): TerminatedSocket {
  return {
    cookie: b.readBigUInt64LE(off),
    address: ipFrom16(b.subarray(off + 8, off + 24)),
    port: b.readUInt16BE(off + 24),
    feId: b.readUInt32LE(off + 28),
    err: b.readInt32LE(off + 32),
  };
}

/**
 * One /proc/<pid>/ns/net path per network namespace of this host other than this thread's own,
 * found by the namespace's inode: a stat per process (what lb_netns_tasks replaces where the
 * object has it). A process that exits while we look is skipped.
 */
export function hostNetnsPaths(procRoot = '/proc'): NetnsPaths[] {
  const own = nsInum(join(procRoot, 'thread-self', 'ns', 'net'));
  const seen = new Set<number>(own === undefined ? [] : [own]);
  const out: NetnsPaths[] = [];
  let pids: string[];
  try {
    pids = readdirSync(procRoot).filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    const p = join(procRoot, pid, 'ns', 'net');
    const inum = nsInum(p);
    if (inum === undefined || seen.has(inum)) continue;
    seen.add(inum);
    out.push({ inum, paths: [p] });
  }
  return out;
}
