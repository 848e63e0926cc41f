// Child process of test/datapath/addon-hostile.test.ts (issue 7, "hostile input and the addon"):
// calls every exported native method with wrong types, null/undefined, missing arguments, short
// buffers, wrong handles and huge numbers, next to real maps so that size checks matter. A crash
// (SIGSEGV, SIGABRT) ends this process with a signal, which the parent reports; anything else ends
// with a JSON summary on stdout. Runs in a network namespace of its own (unshare --net): the tc and
// XDP calls that happen to be valid act on that namespace's lo only.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { native, type Handle } from '../src/dataplane/bpf/native/addon.js';

type Kind =
  | 'fd' | 'fdOpt' | 'i32' | 'u32' | 'ifindex' | 'point' | 'prio' | 'level' | 'bool' | 'str' | 'strOpt' | 'handle'
  | { buf: number; nullable?: boolean };
interface Row {
  args: () => unknown[];
  kinds: Kind[];
  cleanup?: (ret: unknown) => void;
  /** false: skip the merely odd numbers (a map of 2^31 entries would be allocated for real) */
  odd?: false;
}

const n = native() as unknown as Record<string, unknown> & ReturnType<typeof native>;
const here = dirname(fileURLToPath(import.meta.url));
const OBJECT = join(here, '..', 'bpf', 'kbp.bpf.o');
const cpus = n.numPossibleCpus();

// real targets: a hash map (key 8, value 16), a per-CPU array (value 12 -> 16 per CPU), a mappable array
const HASH = n.mapCreate(1, 'fz_hash', 8, 16, 64, 0, -1);
const PCPU = n.mapCreate(6, 'fz_pcpu', 4, 12, 8, 0, -1);
const MMAP = n.mapCreate(2, 'fz_mmap', 4, 8, 16, 1 << 10, -1);
if (HASH < 0 || PCPU < 0 || MMAP < 0) throw new Error(`creating the target maps failed: ${HASH} ${PCPU} ${MMAP}`);
const open = n.objectOpen(OBJECT, null);
if (typeof open === 'number') throw new Error(`objectOpen ${OBJECT}: ${open}`);
const closed = n.objectOpen(OBJECT, null);
if (typeof closed === 'number') throw new Error(`objectOpen ${OBJECT}: ${closed}`);
n.objectClose(closed);
/** an fd number that is certainly closed */
const CLOSED_FD = (() => { const fd = n.mapCreate(1, 'fz_gone', 4, 4, 1, 0, -1); n.closeFd(fd); return fd; })();

const B = (len: number): Buffer => Buffer.alloc(len);
const u32s = (...v: number[]): Buffer => Buffer.from(Uint32Array.from(v).buffer);
/** a Maglev fill job with nothing to fill */
const JOB = n.mapMaglevFillStart(MMAP, B(0), B(0), B(0), B(0), 0);
if (typeof JOB === 'number') throw new Error(`mapMaglevFillStart: ${JOB}`);
const closeIfFd = (ret: unknown): void => { if (typeof ret === 'number' && ret > 2) n.closeFd(ret); };

const TABLE: Record<string, Row> = {
  takeLog: { args: () => [], kinds: [] },
  objectOpen: { args: () => ['/nonexistent/kbp.o', null], kinds: ['str', 'strOpt'] },
  objectLoad: { args: () => [closed], kinds: ['handle'] },
  objectLoadAsync: { args: () => [closed], kinds: ['handle'] },
  objectClose: { args: () => [closed], kinds: ['handle'] },
  objectClearPins: { args: () => [open], kinds: ['handle'] },
  objectMaps: { args: () => [open], kinds: ['handle'] },
  // the object is never loaded: any size, however odd, only sets its definition
  objectSetMaxEntries: { args: () => [open, 'lb_ct', 1024], kinds: ['handle', 'str', 'u32'] },
  objectPrograms: { args: () => [open], kinds: ['handle'] },
  mapLookup: { args: () => [HASH, B(8), B(16), 0], kinds: ['fd', { buf: 8, nullable: true }, { buf: 16 }, 'u32'] },
  mapUpdate: { args: () => [HASH, B(8), B(16), 0], kinds: ['fd', { buf: 8, nullable: true }, { buf: 16 }, 'u32'] },
  mapDelete: { args: () => [HASH, B(8)], kinds: ['fd', { buf: 8 }] },
  mapGetNextKey: { args: () => [HASH, null, B(8)], kinds: ['fd', { buf: 8, nullable: true }, { buf: 8 }] },
  mapUpdateBatch: { args: () => [HASH, B(32), B(64), 4, 0], kinds: ['fd', { buf: 32 }, { buf: 64 }, 'u32', 'u32'] },
  mapDeleteBatch: { args: () => [HASH, B(32), 4], kinds: ['fd', { buf: 32 }, 'u32'] },
  mapUpdateEach: { args: () => [HASH, B(32), B(64), 4, 0], kinds: ['fd', { buf: 32 }, { buf: 64 }, 'u32', 'u32'] },
  mapUpdateBatchAsync: { args: () => [HASH, B(32), B(64), 4, 0], kinds: ['fd', { buf: 32 }, { buf: 64 }, 'u32', 'u32'] },
  mapDeleteBatchAsync: { args: () => [HASH, B(32), 4], kinds: ['fd', { buf: 32 }, 'u32'] },
  mapLookupBatch: { args: () => [HASH, null, B(8), B(32), B(64), 4], kinds: ['fd', { buf: 8, nullable: true }, { buf: 8 }, { buf: 32 }, { buf: 64 }, 'u32'] },
  mapCreate: { args: () => [1, 'fz_new', 4, 4, 1, 0, -1], kinds: ['u32', 'str', 'u32', 'u32', 'u32', 'u32', 'fdOpt'], cleanup: closeIfFd, odd: false },
  mapInfo: { args: () => [HASH], kinds: ['fd'] },
  mapMmapWrite: { args: () => [MMAP, B(8), 0], kinds: ['fd', { buf: 0 }, 'u32'] },
  // no tables: a job with nothing to fill (its threads argument 0..64)
  mapMaglevFillStart: { args: () => [MMAP, B(4), B(4), B(4), B(0), 1], kinds: ['fd', { buf: 0 }, { buf: 0 }, { buf: 0 }, { buf: 0 }, 'u32'] },
  mapMaglevFillStep: { args: () => [JOB], kinds: ['handle'] },
  mapMaglevFillWait: { args: () => [JOB], kinds: ['handle'] },
  progInfo: { args: () => [HASH], kinds: ['fd'] },
  objGet: { args: () => ['/nonexistent/pin'], kinds: ['str'], cleanup: closeIfFd },
  objPin: { args: () => [HASH, '/nonexistent/pin'], kinds: ['fd', 'str'] },
  mapGetFdById: { args: () => [0xffffffff], kinds: ['u32'], cleanup: closeIfFd },
  progGetFdById: { args: () => [0xffffffff], kinds: ['u32'], cleanup: closeIfFd },
  closeFd: { args: () => [CLOSED_FD], kinds: ['fd'], odd: false },
  progTestRun: { args: () => [HASH, B(64), B(64), null, null, 1], kinds: ['fd', { buf: 0 }, { buf: 0, nullable: true }, { buf: 0, nullable: true }, { buf: 0, nullable: true }, 'u32'] },
  tcHookCreate: { args: () => [1, 0], kinds: ['ifindex', 'point'] },
  tcHookDestroy: { args: () => [1], kinds: ['ifindex'] },
  tcAttach: { args: () => [1, 0, HASH, 1, 1, true], kinds: ['ifindex', 'point', 'fd', 'prio', 'u32', 'bool'] },
  tcDetach: { args: () => [1, 0, 1, 1], kinds: ['ifindex', 'point', 'prio', 'u32'] },
  tcQuery: { args: () => [1, 0, 1, 1], kinds: ['ifindex', 'point', 'prio', 'u32'] },
  xdpAttach: { args: () => [1, HASH, 0], kinds: ['ifindex', 'fd', 'u32'] },
  xdpDetach: { args: () => [1, 0], kinds: ['ifindex', 'u32'] },
  xdpQueryId: { args: () => [1, 0], kinds: ['ifindex', 'u32'] },
  progAttach: { args: () => [HASH, HASH, 0, 0, -1], kinds: ['fd', 'fd', 'u32', 'u32', 'fdOpt'] },
  progDetach: { args: () => [HASH, HASH, 0], kinds: ['fd', 'fd', 'u32'] },
  progQuery: { args: () => [HASH, 0, B(256)], kinds: ['fd', 'u32', { buf: 0 }] },
  iterRun: { args: () => [HASH, -1, B(64)], kinds: ['fd', 'fdOpt', { buf: 0 }] },
  numPossibleCpus: { args: () => [], kinds: [] },
  strerror: { args: () => [2], kinds: ['i32'] },
  mallocTrim: { args: () => [], kinds: [] },
  memoryPressure: { args: () => [0], kinds: ['level'] },
};

// values of the wrong JavaScript type for each kind: every one must throw
const NOT_NUMBER: unknown[] = ['3', {}, [], true, Symbol('s'), 1n, () => 3, B(4), undefined, null];
const NOT_BUFFER: unknown[] = [3, 'abc', {}, [1, 2, 3], true, Symbol('s'), 1n, new ArrayBuffer(64), undefined];
const NOT_STRING: unknown[] = [3, {}, B(4), true, Symbol('s'), 1n, undefined];
function wrongTypes(k: Kind): unknown[] {
  if (typeof k === 'object') return k.nullable ? NOT_BUFFER.filter((v) => v !== undefined) : [...NOT_BUFFER, null];
  switch (k) {
    case 'str': return [...NOT_STRING, null, '', 'a\0b'];
    case 'strOpt': return [...NOT_STRING.filter((v) => v !== undefined), '', 'a\0b'];
    case 'handle': return [3, 'h', {}, B(8), null, undefined, HASH, Symbol('h')];
    case 'bool': return [1, 'true', null, undefined, {}];
    default: return NOT_NUMBER;
  }
}
// numbers out of each kind's range: every one must throw
const NOT_INTEGER = [NaN, Infinity, -Infinity, 1.5, 1e20, -1e20, 2 ** 53, -(2 ** 53)];
function outOfRange(k: Kind): unknown[] {
  switch (k) {
    case 'fd': return [...NOT_INTEGER, -1, -2, 2 ** 31, 2 ** 32 + 3];
    case 'fdOpt': return [...NOT_INTEGER, -2, 2 ** 31];
    case 'i32': return [...NOT_INTEGER, 2 ** 31, -(2 ** 31) - 1];
    case 'u32': return [...NOT_INTEGER, -1, 2 ** 32, 2 ** 32 + 1];
    case 'ifindex': return [...NOT_INTEGER, 0, -1, 2 ** 31];
    case 'point': return [...NOT_INTEGER, -1, 2, 2 ** 32];
    case 'prio': return [...NOT_INTEGER, -1, 0x10000];
    case 'level': return [...NOT_INTEGER, -1, 3, 2 ** 32];
    default: return [];
  }
}
// buffers shorter than the kernel reads or writes: every one must throw
function shortBuffers(k: Kind): Buffer[] {
  if (typeof k !== 'object' || k.buf === 0) return [];
  return [B(0), B(k.buf - 1), B(k.buf + 8).subarray(0, k.buf - 1), B(1)];
}
// values that are merely unusual (closed or foreign fds, other maps' sizes, big counts): must not crash
const ODD_NUMBERS = [0, 1, 2, CLOSED_FD, 1000, 0x7fffffff, PCPU, MMAP, HASH];

interface Violation { method: string; args: string; why: string }
const violations: Violation[] = [];
let calls = 0, threw = 0;

function show(v: unknown): string {
  if (Buffer.isBuffer(v)) return `Buffer(${v.length})`;
  if (typeof v === 'symbol' || typeof v === 'bigint' || typeof v === 'function') return String(v);
  if (v === open) return '<open handle>';
  if (v === closed) return '<closed handle>';
  try { return JSON.stringify(v) ?? String(v); } catch { return String(v); }
}

async function call(method: string, args: unknown[], expect: 'throw' | 'any', cleanup?: (ret: unknown) => void): Promise<void> {
  calls++;
  const fn = n[method] as (...a: unknown[]) => unknown;
  let ret: unknown;
  try {
    ret = fn(...args);
    if (ret instanceof Promise) ret = await ret;
  } catch (e) {
    threw++;
    const msg = (e as Error)?.message ?? '';
    if (!(e instanceof TypeError || e instanceof RangeError) || !msg.startsWith(`${method}: `)) {
      violations.push({ method, args: args.map(show).join(', '), why: `threw ${(e as Error)?.constructor?.name}: ${msg} (expected a TypeError or RangeError naming the method)` });
    }
    return;
  }
  cleanup?.(ret);
  if (expect === 'throw') violations.push({ method, args: args.map(show).join(', '), why: `returned ${show(ret)} instead of throwing` });
}

async function main(): Promise<void> {
  const exported = Object.keys(n).filter((k) => typeof n[k] === 'function').sort();
  const untabled = exported.filter((m) => !(m in TABLE));
  for (const method of exported) {
    const row = TABLE[method];
    if (!row) {
      // a method this file does not know yet: garbage of every type at every arity must not crash
      for (let arity = 0; arity <= 4; arity++) {
        for (const v of [...NOT_NUMBER, ...NOT_INTEGER, 'x', B(0)]) await call(method, Array(arity).fill(v), 'any');
      }
      continue;
    }
    await call(method, row.args(), 'any', row.cleanup);
    for (let i = 0; i < row.kinds.length; i++) {
      const k = row.kinds[i]!;
      const withArg = (v: unknown): unknown[] => { const a = row.args(); a[i] = v; return a; };
      for (const v of wrongTypes(k)) await call(method, withArg(v), 'throw', row.cleanup);
      for (const v of outOfRange(k)) await call(method, withArg(v), 'throw', row.cleanup);
      for (const v of shortBuffers(k)) await call(method, withArg(v), 'throw', row.cleanup);
      if (row.odd !== false && typeof k === 'string' && ['fd', 'fdOpt', 'u32', 'i32'].includes(k)) {
        for (const v of ODD_NUMBERS) await call(method, withArg(v), 'any', row.cleanup);
      }
      // missing: this argument and the rest left out
      const missingOk = typeof k === 'object' ? k.nullable : k === 'strOpt';
      if (!missingOk) await call(method, row.args().slice(0, i), 'throw', row.cleanup);
    }
  }
  // sizes come from the map, not from the caller: the per-CPU array's values are 16 bytes per CPU
  const pcpuValue = 16 * cpus;
  for (const len of [0, 4, 12, 16, pcpuValue - 1]) {
    if (len >= pcpuValue) continue;
    await call('mapLookup', [PCPU, B(4), B(len), 0], 'throw');
    await call('mapUpdate', [PCPU, B(4), B(len), 0], 'throw');
  }
  await call('mapLookup', [PCPU, B(4), B(pcpuValue), 0], 'any');
  // counts far beyond the buffers
  for (const count of [5, 1000, 0xffffffff]) {
    await call('mapUpdateBatch', [HASH, B(32), B(64), count, 0], 'throw');
    await call('mapUpdateBatchAsync', [HASH, B(32), B(64), count, 0], 'throw');
    await call('mapDeleteBatch', [HASH, B(32), count], 'throw');
    await call('mapUpdateEach', [HASH, B(32), B(64), count, 0], 'throw');
    await call('mapDeleteBatchAsync', [HASH, B(32), count], 'throw');
    await call('mapLookupBatch', [HASH, null, B(8), B(32), B(64), count], 'throw');
  }
  // mmap writes past the array's 16 x 8 bytes, or into a map that cannot be mapped
  await call('mapMmapWrite', [MMAP, B(129), 0], 'throw');
  await call('mapMmapWrite', [MMAP, B(8), 121], 'throw');
  await call('mapMmapWrite', [MMAP, B(8), 0xffffffff], 'throw');
  await call('mapMmapWrite', [HASH, B(8), 0], 'any');
  await call('mapMmapWrite', [0, B(8), 0], 'any');
  // a fill job's tables past the mappable array's 32 slots, with a size that is not prime, of a member
  // id 0, or members past h1: refused before a thread starts; a real one fills; another type's handle is refused
  await call('mapMaglevFillStart', [MMAP, u32s(1), u32s(2), u32s(3), u32s(0, 1, 31, 1, 32), 1], 'throw');
  await call('mapMaglevFillStart', [MMAP, u32s(1), u32s(2), u32s(3), u32s(0, 1, 30, 0, 30), 1], 'throw');
  await call('mapMaglevFillStart', [MMAP, u32s(1), u32s(2), u32s(0), u32s(0, 1, 31, 0, 32), 1], 'throw');
  await call('mapMaglevFillStart', [MMAP, u32s(1), u32s(2), u32s(3), u32s(0, 2, 31, 0, 32), 1], 'throw');
  await call('mapMaglevFillStart', [MMAP, u32s(1), u32s(2), u32s(3), u32s(0, 1, 31, 0xffffffff, 32), 1], 'throw');
  await call('mapMaglevFillStart', [HASH, u32s(1), u32s(2), u32s(3), u32s(0, 1, 31, 0, 32), 1], 'any');
  const job = n.mapMaglevFillStart(MMAP, u32s(1), u32s(2), u32s(3), u32s(0, 1, 31, 0, 32), 1);
  calls++;
  if (typeof job === 'number' || n.mapMaglevFillWait(job) !== 0 || n.mapMaglevFillWait(job) !== 0 || n.mapMaglevFillStep(job) !== false) {
    violations.push({ method: 'mapMaglevFillStart', args: 'a table of M=31 in the mappable array', why: `returned ${show(job)} or a wait failed` });
  }
  await call('mapMaglevFillStep', [open], 'throw');
  await call('mapMaglevFillWait', [open], 'throw');
  await call('objectClose', [JOB], 'throw');
  // the caller's buffers may change while an async batch runs: the addon works on its own copy
  const keys = B(32), values = B(64);
  const p = n.mapUpdateBatchAsync(HASH, keys, values, 4, 0);
  keys.fill(0xff);
  calls++;
  const [ret] = await p;
  if (ret !== 0) violations.push({ method: 'mapUpdateBatchAsync', args: 'HASH, 4 entries', why: `returned ${ret}` });
  // a handle closed twice, and handles used after close
  n.objectClose(open as Handle);
  for (const m of ['objectClose', 'objectLoad', 'objectLoadAsync', 'objectMaps', 'objectPrograms', 'objectClearPins']) await call(m, [open], 'any');
  await call('objectSetMaxEntries', [open, 'lb_ct', 1024], 'any');
  process.stdout.write(`${JSON.stringify({ calls, threw, exported, untabled, violations })}\n`);
}

await main();
