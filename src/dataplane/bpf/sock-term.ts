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
// namespaces), found through /proc/<pid>/ns/net.
//
// A separate object: where it does not load (a kernel before 6.5, no BTF), the agent logs once that
// connected UDP sockets keep a removed backend until the application reconnects, and goes on.
import { closeSync, existsSync, openSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ipFrom16 } from '../../util/ip.js';
import { BpfObject } from './native/object.js';
import { sizeLikePins } from './loader.js';
import type { BpfProgram } from './native/program.js';
import type { Plan, PlanOp } from '../../plan/types.js';
import type { Protocol } from '../../model/compiled.js';

/** struct lb_sock_term_rec of bpf/lb_sock_term.bpf.c */
const REC_SIZE = 40;

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
  terminated: TerminatedSocket[];
}

/** bpf/lb_sock_term.bpf.o beside the main object. */
export function sockTermObjectPath(mainObjectPath: string): string {
  return join(dirname(mainObjectPath), 'lb_sock_term.bpf.o');
}

/**
 * The frontends' protocols by id, kept from what the data plane writes: a pass walks UDP sockets
 * only (iter/udp), so a backend that left a TCP or SCTP frontend needs none, and a pass walks every
 * network namespace of the host on the event loop (~2-5 ms here, ~40 ms on a busy node) in the
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
    for (const o of ops) if (o.op === 'deleteFrontend') this.#proto.delete(o.frontend.id);
    for (const o of ops) if (o.op === 'upsertFrontend') this.#proto.set(o.frontend.id, o.frontend.protocol);
  }
}

export class SockTerminator {
  readonly #object: BpfObject;
  readonly #prog: BpfProgram;

  private constructor(object: BpfObject, prog: BpfProgram) {
    this.#object = object;
    this.#prog = prog;
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
      return new SockTerminator(object, object.program('lb_sock_term_udp'));
    } catch (e) {
      object.close();
      throw e;
    }
  }

  /** Runs the iterator in this thread's namespace and in every other namespace a process of this host is in. */
  run(namespaces: Iterable<string> = hostNetnsPaths()): SockTermRun {
    const out: SockTermRun = { namespaces: 0, skipped: 0, terminated: [] };
    const buf = Buffer.alloc(REC_SIZE * 1024);
    const walk = (fd: number): void => {
      const n = this.#prog.runIter(fd, buf);
      for (let off = 0; off + REC_SIZE <= Math.min(n, buf.length); off += REC_SIZE) out.terminated.push(decodeRec(buf, off));
      out.namespaces++;
    };
    walk(-1);
    for (const path of namespaces) {
      let fd: number;
      try {
        fd = openSync(path, 'r');
      } catch {
        out.skipped++;
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

  close(): void {
    this.#object.close();
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
 * found by the namespace's inode. A process that exits while we look is skipped.
 */
export function hostNetnsPaths(procRoot = '/proc'): string[] {
  const own = nsInode(join(procRoot, 'thread-self', 'ns', 'net'));
  const seen = new Set<string>(own ? [own] : []);
  const out: string[] = [];
  let pids: string[];
  try {
    pids = readdirSync(procRoot).filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    const p = join(procRoot, pid, 'ns', 'net');
    const ino = nsInode(p);
    if (!ino || seen.has(ino)) continue;
    seen.add(ino);
    out.push(p);
  }
  return out;
}

function nsInode(path: string): string | undefined {
  try {
    if (!existsSync(path)) return undefined;
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}
