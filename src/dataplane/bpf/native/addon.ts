// The only module that loads the native addon (native/build/Release/kbp_native.node, built from
// native/src/addon.cc). The addon makes one libbpf call per function and reports failure as a
// negative errno; argument checks, buffer sizing, errors and fd ownership are the wrappers' (map.ts,
// program.ts, object.ts), which reach the addon only through native(). Nothing outside this folder
// calls native(). The addon does not trust them: it checks types and buffer sizes again and throws.
import { findAddon } from '../../../util/addon-path.js';
import { createRequire } from 'node:module';
import { KbpError } from '../../../util/errors.js';

// ---- the addon's raw surface (native/src/addon.cc) ------------------------------------------------
// The addon checks every argument's type, range and buffer size itself too (a TypeError or RangeError
// naming the method and the argument, never a crash: test/datapath/addon-hostile.test.ts); the
// wrappers' checks come first and give the messages a user sees.
interface RawMapDesc { name: string; fd: number; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number; pinPath: string | null }
interface RawProgDesc { name: string; fd: number; type: number; section: string }
interface RawMapInfo { type: number; id: number; keySize: number; valueSize: number; maxEntries: number; flags: number; name: string }
interface RawProgInfo { type: number; id: number; name: string }
export type Handle = { readonly __brand: 'bpf_object' };
type Buf = Buffer | null;
interface Native {
  takeLog(): string;
  objectOpen(path: string, pinRoot: string | null): Handle | number;
  objectLoad(h: Handle): number;
  /** objectLoad on libuv's thread pool; every other call on h throws until it settles */
  objectLoadAsync(h: Handle): Promise<number>;
  objectClose(h: Handle): void;
  objectClearPins(h: Handle): number;
  /** before load: a map's max_entries (bpf_map__set_max_entries); 0 or -errno */
  objectSetMaxEntries(h: Handle, name: string, maxEntries: number): number;
  objectMaps(h: Handle): RawMapDesc[];
  objectPrograms(h: Handle): RawProgDesc[];
  mapLookup(fd: number, key: Buf, value: Buffer, flags: number): number;
  mapUpdate(fd: number, key: Buf, value: Buffer, flags: number): number;
  mapDelete(fd: number, key: Buf): number;
  mapGetNextKey(fd: number, key: Buf, next: Buffer): number;
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, elemFlags: number, threads?: number): [number, number];
  /** [updated, existed (EEXIST), failed otherwise, the first failure's -errno or 0] */
  mapUpdateEach(fd: number, keys: Buffer, values: Buffer, count: number, flags: number, cpus?: number): [number, number, number, number];
  mapDeleteBatch(fd: number, keys: Buffer, count: number): [number, number];
  mapLookupBatch(fd: number, inBatch: Buf, outBatch: Buffer, keys: Buffer, values: Buffer, count: number): [number, number];
  /** the batch write on libuv's thread pool (a map-in-map write waits for an RCU grace period) */
  mapUpdateBatchAsync(fd: number, keys: Buffer, values: Buffer, count: number, elemFlags: number, threads?: number): Promise<[number, number]>;
  mapDeleteBatchAsync(fd: number, keys: Buffer, count: number): Promise<[number, number]>;
  mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags: number, innerFd: number): number;
  mapInfo(fd: number): RawMapInfo | number;
  mapMmapWrite(fd: number, data: Buffer, offset: number, or?: boolean): number;
  mapMaglevFillStart(fd: number, h1: Buffer, h2: Buffer, ids: Buffer, regions: Buffer, threads: number, windowSlots?: number): object | number;
  mapMaglevFillStep(job: object): boolean;
  mapMaglevFillWait(job: object): number;
  progInfo(fd: number): RawProgInfo | number;
  objGet(path: string): number;
  objPin(fd: number, path: string): number;
  mapGetFdById(id: number): number;
  progGetFdById(id: number): number;
  closeFd(fd: number): number;
  progTestRun(fd: number, dataIn: Buffer, dataOut: Buf, ctxIn: Buf, ctxOut: Buf, repeat: number): [number, number, number, number, number];
  tcHookCreate(ifindex: number, point: number): number;
  tcHookDestroy(ifindex: number): number;
  tcAttach(ifindex: number, point: number, progFd: number, priority: number, handle: number, replace: boolean): number;
  tcDetach(ifindex: number, point: number, priority: number, handle: number): number;
  tcQuery(ifindex: number, point: number, priority: number, handle: number): number;
  xdpAttach(ifindex: number, progFd: number, flags: number): number;
  xdpDetach(ifindex: number, flags: number): number;
  xdpQueryId(ifindex: number, flags: number): number;
  progAttach(progFd: number, targetFd: number, attachType: number, flags: number, replaceFd: number): number;
  progDetach(progFd: number, targetFd: number, attachType: number): number;
  progQuery(targetFd: number, attachType: number, ids: Buffer): number;
  iterRun(progFd: number, netnsFd: number, out: Buffer): number;
  numPossibleCpus(): number;
  strerror(errno: number): string;
  /** glibc malloc_trim(0): true when memory was returned to the kernel (false elsewhere) */
  mallocTrim(): boolean;
  /** V8's memory pressure notification (0 none, 1 moderate, 2 critical: one full GC that shrinks the heap) */
  memoryPressure(level: 0 | 1 | 2): void;
  constants: {
    attachTypes: Record<string, number>;
    BPF_F_ALLOW_MULTI: number;
    XDP_FLAGS_UPDATE_IF_NOEXIST: number;
    XDP_FLAGS_SKB_MODE: number;
    XDP_FLAGS_DRV_MODE: number;
  };
}

let addon: Native | undefined;

/** Finds the built addon above this file (src/dataplane/bpf/native in the tree, or dist/ when bundled). */
export function native(): Native {
  if (addon) return addon;
  const { file, found, candidates } = findAddon('kbp_native.node', 'KBP_NATIVE_ADDON', import.meta.url);
  if (!found) {
    throw new KbpError('KBP_ERR_BPF', `native addon ${file} not found (looked in ${candidates.join(', ')}): run npm run build:native`);
  }
  const require = createRequire(import.meta.url);
  try {
    addon = require(found) as Native;
  } catch (cause) {
    throw new KbpError('KBP_ERR_BPF', `native addon ${found} could not be loaded: ${(cause as Error).message}`, { cause });
  }
  return addon;
}

/** Whether the addon is built and loads; the reason when it does not (for --mode auto). */
export function nativeAvailable(): { ok: true } | { ok: false; reason: string } {
  try {
    native();
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}
