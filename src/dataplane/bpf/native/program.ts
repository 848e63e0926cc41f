// BpfProgram: one BPF program's fd with test runs and attachment to tc, XDP and cgroups, and the
// queries of what is attached where (the loader's cleanup detaches only what is still ours).
import { openSync, closeSync } from 'node:fs';
import { KbpError } from '../../../util/errors.js';
import { native } from './addon.js';
import { EEXIST, EINVAL, ENODEV, ENOENT, bpfError, checkName, checkU32, usage } from './errors.js';
import { HANDLE, INTERNAL, closeHandle, holdFd, pinFd, type FdState } from './fd.js';
import type { BpfObject } from './object.js';

export type AttachPoint = 'ingress' | 'egress';
export interface TestRunResult { retval: number; data: Buffer; ctx?: Buffer; durationNs: number }

function tcPoint(point: AttachPoint): number {
  if (point === 'ingress') return 0;
  if (point === 'egress') return 1;
  throw usage(`tc attach point must be 'ingress' or 'egress', got ${JSON.stringify(point)}`);
}

function checkIfindex(ifindex: number): void {
  if (!Number.isInteger(ifindex) || ifindex <= 0 || ifindex > 0x7fffffff) throw usage(`ifindex must be a positive integer, got ${ifindex}`);
}

function tcOpts(opts: { priority?: number; handle?: number } | undefined, what: string): { priority: number; handle: number } {
  const priority = opts?.priority ?? 1;
  const handle = opts?.handle ?? 1;
  if (!Number.isInteger(priority) || priority < 1 || priority > 0xffff) throw usage(`${what}: priority must be 1..65535, got ${priority}`);
  if (!Number.isInteger(handle) || handle < 1 || handle > 0xffffffff) throw usage(`${what}: handle must be 1..2^32-1, got ${handle}`);
  return { priority, handle };
}

function attachTypeOf(attachType: string, what: string): number {
  const t = native().constants.attachTypes[attachType];
  if (t === undefined) throw usage(`${what}: unknown cgroup attach type ${JSON.stringify(attachType)} (known: ${Object.keys(native().constants.attachTypes).join(', ')})`);
  return t;
}

function withCgroup<T>(cgroupPath: string, what: string, fn: (fd: number) => T): T {
  checkName(cgroupPath, `${what}: cgroup path`);
  let fd: number;
  try {
    fd = openSync(cgroupPath, 'r');
  } catch (cause) {
    const e = cause as NodeJS.ErrnoException;
    throw new KbpError('KBP_ERR_BPF', `${what}: cannot open cgroup ${cgroupPath}: ${e.message}`, { cause, errno: -(e.errno ?? 0) });
  }
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

export class BpfProgram {
  readonly name: string;
  readonly type: number;
  private readonly [HANDLE]: FdState;

  /** @internal use BpfObject.program or BpfProgram.fromPin */
  constructor(token: symbol, desc: { fd: number; owned: boolean; owner?: BpfObject; name: string; type: number }) {
    if (token !== INTERNAL) throw usage('BpfProgram cannot be constructed directly: use BpfObject.program or BpfProgram.fromPin');
    this.name = desc.name;
    this.type = desc.type;
    this[HANDLE] = holdFd(this, desc);
  }

  private static fromOwnedFd(fd: number, what: string): BpfProgram {
    const info = native().progInfo(fd);
    if (typeof info === 'number') {
      native().closeFd(fd);
      throw bpfError('info', what, info);
    }
    return new BpfProgram(INTERNAL, { fd, owned: true, name: info.name, type: info.type });
  }

  /** Opens a program pinned in bpffs (the name is the kernel's, cut to 15 characters). */
  static fromPin(path: string): BpfProgram {
    checkName(path, 'pin path');
    const fd = native().objGet(path);
    if (fd < 0) throw bpfError('open pinned program', path, fd);
    return BpfProgram.fromOwnedFd(fd, path);
  }

  static fromId(id: number): BpfProgram {
    checkU32(id, 'program id');
    const fd = native().progGetFdById(id);
    if (fd < 0) throw bpfError('open program id', String(id), fd);
    return BpfProgram.fromOwnedFd(fd, `program id ${id}`);
  }

  get fd(): number {
    const s = this[HANDLE];
    if (s.closed) throw usage(`program ${this.name} is closed`);
    return s.fd;
  }

  get id(): number {
    const info = native().progInfo(this.fd);
    if (typeof info === 'number') throw bpfError('info', this.name, info);
    return info.id;
  }

  /** BPF_PROG_TEST_RUN. dataOutSize defaults to the input plus 512 bytes (room for a grown packet). */
  testRun(opts: { data: Buffer; ctx?: Buffer; repeat?: number; dataOutSize?: number }): TestRunResult {
    if (!Buffer.isBuffer(opts.data)) throw usage(`testRun ${this.name}: data must be a Buffer`);
    if (opts.ctx !== undefined && !Buffer.isBuffer(opts.ctx)) throw usage(`testRun ${this.name}: ctx must be a Buffer`);
    const repeat = opts.repeat ?? 1;
    if (!Number.isInteger(repeat) || repeat < 1 || repeat > 100_000_000) throw usage(`testRun ${this.name}: repeat must be 1..1e8, got ${repeat}`);
    const outSize = opts.dataOutSize ?? opts.data.length + 512;
    if (!Number.isInteger(outSize) || outSize < 0) throw usage(`testRun ${this.name}: dataOutSize must be a non-negative integer, got ${outSize}`);
    const dataOut = Buffer.alloc(outSize);
    const ctxOut = opts.ctx ? Buffer.alloc(opts.ctx.length) : null;
    const [ret, retval, dataLen, ctxLen, duration] = native().progTestRun(this.fd, opts.data, outSize ? dataOut : null, opts.ctx ?? null, ctxOut, repeat);
    if (ret < 0) throw bpfError('test_run', this.name, ret);
    const result: TestRunResult = { retval, data: dataOut.subarray(0, Math.min(dataLen, outSize)), durationNs: duration };
    if (ctxOut) result.ctx = ctxOut.subarray(0, Math.min(ctxLen, ctxOut.length));
    return result;
  }

  /**
   * Attaches to a device's clsact hook (created when missing) as a direct-action filter, replacing
   * whatever filter holds the same priority and handle: a restarted agent swaps its programs in place.
   */
  attachTc(ifindex: number, point: AttachPoint, opts?: { priority?: number; handle?: number }): void {
    checkIfindex(ifindex);
    const p = tcPoint(point);
    const { priority, handle } = tcOpts(opts, `attachTc ${this.name}`);
    const hook = native().tcHookCreate(ifindex, p);
    if (hook < 0 && hook !== -EEXIST) throw bpfError('tc hook create', `ifindex ${ifindex}`, hook);
    const ret = native().tcAttach(ifindex, p, this.fd, priority, handle, true);
    if (ret < 0) throw bpfError('tc attach', `${this.name} to ifindex ${ifindex} ${point}`, ret);
  }

  /** Removes the filter at (priority, handle); false when none was there. */
  detachTc(ifindex: number, point: AttachPoint, opts?: { priority?: number; handle?: number }): boolean {
    checkIfindex(ifindex);
    const p = tcPoint(point);
    const { priority, handle } = tcOpts(opts, `detachTc ${this.name}`);
    const ret = native().tcDetach(ifindex, p, priority, handle);
    if (ret === -ENOENT || ret === -EINVAL || ret === -ENODEV /* device gone */) return false;
    if (ret < 0) throw bpfError('tc detach', `${this.name} from ifindex ${ifindex} ${point}`, ret);
    return true;
  }

  /** Attaches XDP, replacing any program in that mode (native = driver mode, generic = skb mode). */
  attachXdp(ifindex: number, mode: 'native' | 'generic' = 'native'): void {
    checkIfindex(ifindex);
    const flags = xdpFlags(mode);
    const ret = native().xdpAttach(ifindex, this.fd, flags);
    if (ret < 0) throw bpfError('xdp attach', `${this.name} to ifindex ${ifindex} (${mode})`, ret);
  }

  /** Detaches this program from ifindex in whichever mode holds it; false when it is not attached there. */
  detachXdp(ifindex: number): boolean {
    checkIfindex(ifindex);
    const myId = this.id;
    let detached = false;
    for (const mode of ['native', 'generic'] as const) {
      const flags = xdpFlags(mode);
      const id = native().xdpQueryId(ifindex, flags);
      if (id === -ENODEV) return false;
      if (id < 0) throw bpfError('xdp query', `ifindex ${ifindex}`, id);
      if (id !== myId) continue;
      const ret = native().xdpDetach(ifindex, flags);
      if (ret < 0) throw bpfError('xdp detach', `${this.name} from ifindex ${ifindex} (${mode})`, ret);
      detached = true;
    }
    return detached;
  }

  /**
   * Attaches to a cgroup v2 with BPF_F_ALLOW_MULTI: the attachment holds a reference to the program,
   * so it outlives the agent. `replace` swaps an older program of ours for this one in one step;
   * attaching a program that is already there is not an error.
   */
  attachCgroup(cgroupPath: string, attachType: string, opts?: { replace?: BpfProgram }): void {
    const what = `attachCgroup ${this.name}`;
    const t = attachTypeOf(attachType, what);
    withCgroup(cgroupPath, what, (cg) => {
      // the kernel refuses the same program twice with a bare EINVAL: check first
      if (queryCgroup(cg, t, `${cgroupPath} ${attachType}`).includes(this.id)) return;
      const replaceFd = opts?.replace && opts.replace.id !== this.id ? opts.replace.fd : -1;
      let ret = native().progAttach(this.fd, cg, t, native().constants.BPF_F_ALLOW_MULTI, replaceFd);
      // the program to replace is no longer attached (e.g. removed by hand): attach alongside
      if (ret === -ENOENT && replaceFd >= 0) ret = native().progAttach(this.fd, cg, t, native().constants.BPF_F_ALLOW_MULTI, -1);
      if (ret < 0) throw bpfError('cgroup attach', `${this.name} to ${cgroupPath} ${attachType}`, ret);
    });
  }

  /** false when this program was not attached there */
  detachCgroup(cgroupPath: string, attachType: string): boolean {
    const what = `detachCgroup ${this.name}`;
    const t = attachTypeOf(attachType, what);
    return withCgroup(cgroupPath, what, (cg) => {
      const ret = native().progDetach(this.fd, cg, t);
      if (ret === -ENOENT) return false;
      if (ret < 0) throw bpfError('cgroup detach', `${this.name} from ${cgroupPath} ${attachType}`, ret);
      return true;
    });
  }

  /**
   * Runs this iterator program (SEC("iter/...")) once, to the end: a BPF_TRACE_ITER link and an
   * iterator created in the network namespace behind netnsFd (-1: this thread's), read out. Returns
   * the bytes the program wrote into out; more than out.length means the rest did not fit (the run
   * still visited every object).
   */
  runIter(netnsFd: number, out: Buffer): number {
    if (!Number.isInteger(netnsFd) || netnsFd < -1) throw usage(`runIter ${this.name}: netnsFd must be an fd or -1, got ${String(netnsFd)}`);
    const n = native().iterRun(this.fd, netnsFd, out);
    if (n < 0) throw bpfError('iterator run', this.name, n);
    return n;
  }

  pin(path: string): void {
    pinFd(this.fd, path, 'program', this.name);
  }

  close(): void {
    closeHandle(this, this[HANDLE]);
  }
}

function xdpFlags(mode: 'native' | 'generic'): number {
  if (mode === 'native') return native().constants.XDP_FLAGS_DRV_MODE;
  if (mode === 'generic') return native().constants.XDP_FLAGS_SKB_MODE;
  throw usage(`XDP mode must be 'native' or 'generic', got ${JSON.stringify(mode)}`);
}

/** Ids of the programs attached to a cgroup at one attach point. */
export function cgroupPrograms(cgroupPath: string, attachType: string): number[] {
  const what = 'query cgroup';
  const t = attachTypeOf(attachType, what);
  return withCgroup(cgroupPath, what, (cg) => queryCgroup(cg, t, `${cgroupPath} ${attachType}`));
}

function queryCgroup(cgFd: number, attachType: number, what: string): number[] {
  // BPF_CGROUP_MAX_PROGS is 64
  const ids = Buffer.alloc(4 * 64);
  const n = native().progQuery(cgFd, attachType, ids);
  if (n < 0) throw bpfError('cgroup query', what, n);
  return Array.from({ length: n }, (_, i) => ids.readUInt32LE(i * 4));
}

/** The id of the tc program at (priority, handle) of a device's hook, or undefined. */
export function tcProgramId(ifindex: number, point: AttachPoint, opts?: { priority?: number; handle?: number }): number | undefined {
  checkIfindex(ifindex);
  const { priority, handle } = tcOpts(opts, 'tc query');
  const id = native().tcQuery(ifindex, tcPoint(point), priority, handle);
  if (id === -ENOENT || id === -EINVAL || id === -ENODEV) return undefined;
  if (id < 0) throw bpfError('tc query', `ifindex ${ifindex} ${point}`, id);
  return id;
}

/** Removes a device's clsact qdisc with every filter on it (only for devices the agent owns). */
export function destroyTcHook(ifindex: number): boolean {
  checkIfindex(ifindex);
  const ret = native().tcHookDestroy(ifindex);
  if (ret === -ENOENT || ret === -EINVAL || ret === -ENODEV) return false;
  if (ret < 0) throw bpfError('tc hook destroy', `ifindex ${ifindex}`, ret);
  return true;
}

/** The id of the XDP program on a device in a mode (0 when none). */
export function xdpProgramId(ifindex: number, mode: 'native' | 'generic'): number {
  checkIfindex(ifindex);
  const id = native().xdpQueryId(ifindex, xdpFlags(mode));
  if (id < 0) throw bpfError('xdp query', `ifindex ${ifindex}`, id);
  return id;
}
