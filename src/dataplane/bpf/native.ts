// The only module that loads the native addon (native/src/addon.cc). The addon makes one libbpf call
// per function and reports failure as a negative errno; everything else is here: argument checks
// with messages that name the argument, buffer sizing, KbpError construction, fd ownership.
import { createRequire } from 'node:module';
import { existsSync, openSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KbpError } from '../../util/errors.js';

// ---- the addon's raw surface (native/src/addon.cc) ------------------------------------------------
interface RawMapDesc { name: string; fd: number; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number; pinPath: string | null }
interface RawProgDesc { name: string; fd: number; type: number; section: string }
interface RawMapInfo { type: number; id: number; keySize: number; valueSize: number; maxEntries: number; flags: number; name: string }
interface RawProgInfo { type: number; id: number; name: string }
type Handle = { readonly __brand: 'bpf_object' };
type Buf = Buffer | null;
interface Native {
  takeLog(): string;
  objectOpen(path: string, pinRoot: string | null): Handle | number;
  objectLoad(h: Handle): number;
  objectClose(h: Handle): void;
  objectClearPins(h: Handle): number;
  objectMaps(h: Handle): RawMapDesc[];
  objectPrograms(h: Handle): RawProgDesc[];
  mapLookup(fd: number, key: Buf, value: Buffer, flags: number): number;
  mapUpdate(fd: number, key: Buf, value: Buffer, flags: number): number;
  mapDelete(fd: number, key: Buf): number;
  mapGetNextKey(fd: number, key: Buf, next: Buffer): number;
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, elemFlags: number): [number, number];
  mapDeleteBatch(fd: number, keys: Buffer, count: number): [number, number];
  mapLookupBatch(fd: number, inBatch: Buf, outBatch: Buffer, keys: Buffer, values: Buffer, count: number): [number, number];
  mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags: number, innerFd: number): number;
  mapInfo(fd: number): RawMapInfo | number;
  mapMmapWrite(fd: number, data: Buffer, offset: number): number;
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
  numPossibleCpus(): number;
  strerror(errno: number): string;
  constants: {
    attachTypes: Record<string, number>;
    BPF_F_ALLOW_MULTI: number;
    XDP_FLAGS_UPDATE_IF_NOEXIST: number;
    XDP_FLAGS_SKB_MODE: number;
    XDP_FLAGS_DRV_MODE: number;
  };
}

const ADDON_FILE = join('native', 'build', 'Release', 'kbp_native.node');
let addon: Native | undefined;

/** Finds the built addon above this file (src/dataplane/bpf in the tree, or dist/ when bundled). */
function native(): Native {
  if (addon) return addon;
  const candidates: string[] = [];
  if (process.env.KBP_NATIVE_ADDON) candidates.push(process.env.KBP_NATIVE_ADDON);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    candidates.push(join(dir, ADDON_FILE));
    dir = dirname(dir);
  }
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new KbpError('KBP_ERR_BPF', `native addon ${ADDON_FILE} not found (looked in ${candidates.join(', ')}): run npm run build:native`);
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

// ---- constants (include/uapi/linux/bpf.h) -----------------------------------------------------
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const BPF_F_LOCK = 4;
export const BPF_F_NO_PREALLOC = 1 << 0;
export const BPF_F_MMAPABLE = 1 << 10;
export const BPF_F_INNER_MAP = 1 << 12;

export const MapType = {
  HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERF_EVENT_ARRAY: 4, PERCPU_HASH: 5, PERCPU_ARRAY: 6,
  STACK_TRACE: 7, CGROUP_ARRAY: 8, LRU_HASH: 9, LRU_PERCPU_HASH: 10, LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12, HASH_OF_MAPS: 13,
} as const;

export const ProgType = { SOCKET_FILTER: 1, SCHED_CLS: 3, SCHED_ACT: 4, XDP: 6, CGROUP_SKB: 8, CGROUP_SOCK: 9, CGROUP_SOCK_ADDR: 18 } as const;

const ENOENT = 2;
const EEXIST = 17;
const EINVAL = 22;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
/** the kernel's internal ENOTSUPP, which the bpf() syscall leaks for unsupported batch operations */
const ENOTSUPP = 524;

const PERCPU_TYPES = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, 21 /* PERCPU_CGROUP_STORAGE */]);
const MAP_IN_MAP_TYPES = new Set<number>([MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS]);
/** kernel limit on map and program names, NUL included */
const BPF_OBJ_NAME_LEN = 16;

// ---- errors -------------------------------------------------------------------------------------
function strerror(errno: number): string {
  try {
    return native().strerror(errno);
  } catch {
    return `errno ${errno}`;
  }
}

/** KbpError('KBP_ERR_BPF', "<op> <object>: <strerror> (errno N)") for a negative return of the addon. */
export function bpfError(op: string, object: string, ret: number, detail?: string): KbpError {
  const errno = -ret;
  const msg = `${op} ${object}: ${strerror(errno)} (errno ${errno})${detail ? `\n${detail}` : ''}`;
  return new KbpError('KBP_ERR_BPF', msg, { errno });
}

/** A failed batch operation: `processed` elements (from the start) were applied before the failure. */
export class BpfBatchError extends KbpError {
  readonly processed: number;
  constructor(err: KbpError, processed: number) {
    super('KBP_ERR_BPF', err.message, { errno: err.errno! });
    this.name = 'KbpError';
    this.processed = processed;
  }
}

/** A caller's mistake caught before any system call (wrong size, bad flag, closed handle). */
function usage(message: string): KbpError {
  return new KbpError('KBP_ERR_INTERNAL', message);
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw usage(`${what} must be an integer in 0..2^32-1, got ${value}`);
}

function checkBuffer(buf: unknown, size: number, what: string): asserts buf is Buffer {
  if (!Buffer.isBuffer(buf)) throw usage(`${what} must be a Buffer`);
  if (buf.length !== size) throw usage(`${what} must be ${size} bytes, got ${buf.length}`);
}

function checkName(name: unknown, what: string): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) throw usage(`${what} must be a non-empty string`);
}

// fds we own are closed by close(), or by the garbage collector if the owner forgot
const fdFinalizer = new FinalizationRegistry<number>((fd) => {
  try {
    native().closeFd(fd);
  } catch {
    // nothing to report to from a finalizer
  }
});

const HANDLE = Symbol('kbp.native.handle');
const INTERNAL = Symbol('kbp.native.internal');

// ---- maps ---------------------------------------------------------------------------------------
// a borrowed fd (a map or program of a BpfObject) keeps its object alive: the object's finalizer
// closes every fd of the object
interface MapState { fd: number; owned: boolean; closed: boolean; owner?: BpfObject }

/** bpf_obj_pin of a map's or program's fd */
function pinFd(fd: number, path: string, kind: 'map' | 'program', name: string): void {
  checkName(path, `pin path of ${kind} ${name}`);
  const ret = native().objPin(fd, path);
  if (ret < 0) throw bpfError('pin', `${name} at ${path}`, ret);
}

/** Closes a map's or program's fd once, if it is ours (an object's maps and programs close with it). */
function closeHandle(owner: object, s: { closed: boolean; owned: boolean; fd: number }): void {
  if (s.closed) return;
  s.closed = true;
  if (s.owned) {
    fdFinalizer.unregister(owner);
    native().closeFd(s.fd);
  }
}

export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  /** the kernel's value size; lookup() of a per-CPU map returns numPossibleCpus() * roundup(valueSize, 8) bytes */
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  private readonly [HANDLE]: MapState;

  /** @internal use BpfObject.map, BpfMap.fromPin, BpfMap.fromId or BpfMap.create */
  constructor(token: symbol, desc: { fd: number; owned: boolean; owner?: BpfObject; name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }) {
    if (token !== INTERNAL) throw usage('BpfMap cannot be constructed directly: use BpfMap.fromPin, BpfMap.create or BpfObject.map');
    this.name = desc.name;
    this.type = desc.type;
    this.keySize = desc.keySize;
    this.valueSize = desc.valueSize;
    this.maxEntries = desc.maxEntries;
    this.flags = desc.flags;
    this[HANDLE] = { fd: desc.fd, owned: desc.owned, closed: false, ...(desc.owner ? { owner: desc.owner } : {}) };
    if (desc.owned) fdFinalizer.register(this, desc.fd, this);
  }

  private static fromOwnedFd(fd: number, what: string): BpfMap {
    const info = native().mapInfo(fd);
    if (typeof info === 'number') {
      native().closeFd(fd);
      throw bpfError('info', what, info);
    }
    return new BpfMap(INTERNAL, { fd, owned: true, ...info });
  }

  /** Opens a map pinned in bpffs. */
  static fromPin(path: string): BpfMap {
    checkName(path, 'pin path');
    const fd = native().objGet(path);
    if (fd < 0) throw bpfError('open pinned map', path, fd);
    return BpfMap.fromOwnedFd(fd, path);
  }

  /** Opens a map by its kernel id (e.g. an inner map found through lookupId). */
  static fromId(id: number): BpfMap {
    checkU32(id, 'map id');
    const fd = native().mapGetFdById(id);
    if (fd < 0) throw bpfError('open map id', String(id), fd);
    return BpfMap.fromOwnedFd(fd, `map id ${id}`);
  }

  /** Creates a map that no object declares (Maglev inner arrays); pass BPF_F_INNER_MAP in flags for those. */
  static create(opts: { type: number; name: string; keySize: number; valueSize: number; maxEntries: number; flags?: number; innerMap?: BpfMap }): BpfMap {
    checkName(opts.name, 'map name');
    if (opts.name.length >= BPF_OBJ_NAME_LEN || !/^[A-Za-z0-9_.]+$/.test(opts.name)) {
      throw usage(`map name ${JSON.stringify(opts.name)} must be 1..15 characters of [A-Za-z0-9_.]`);
    }
    checkU32(opts.type, `type of map ${opts.name}`);
    checkU32(opts.keySize, `keySize of map ${opts.name}`);
    checkU32(opts.valueSize, `valueSize of map ${opts.name}`);
    checkU32(opts.maxEntries, `maxEntries of map ${opts.name}`);
    checkU32(opts.flags ?? 0, `flags of map ${opts.name}`);
    if (opts.maxEntries === 0) throw usage(`maxEntries of map ${opts.name} must be at least 1`);
    if (MAP_IN_MAP_TYPES.has(opts.type) && !opts.innerMap) throw usage(`map ${opts.name}: a map-in-map needs innerMap (a template)`);
    const fd = native().mapCreate(opts.type, opts.name, opts.keySize, opts.valueSize, opts.maxEntries, opts.flags ?? 0, opts.innerMap ? opts.innerMap.fd : -1);
    if (fd < 0) throw bpfError('create map', opts.name, fd);
    return new BpfMap(INTERNAL, { fd, owned: true, name: opts.name, type: opts.type, keySize: opts.keySize, valueSize: opts.valueSize, maxEntries: opts.maxEntries, flags: opts.flags ?? 0 });
  }

  get fd(): number {
    const s = this[HANDLE];
    if (s.closed) throw usage(`map ${this.name} is closed`);
    return s.fd;
  }

  /** The kernel's id of this map (stable for its lifetime; what a map-in-map lookup returns). */
  get id(): number {
    const info = native().mapInfo(this.fd);
    if (typeof info === 'number') throw bpfError('info', this.name, info);
    return info.id;
  }

  get perCpu(): boolean {
    return PERCPU_TYPES.has(this.type);
  }

  /** Bytes of one value as user space reads it: per-CPU maps hold one 8-byte-aligned copy per possible CPU. */
  get userValueSize(): number {
    return this.perCpu ? numPossibleCpus() * roundUp8(this.valueSize) : this.valueSize;
  }

  lookup(key: Buffer): Buffer | undefined {
    checkBuffer(key, this.keySize, `key of map ${this.name}`);
    const value = Buffer.alloc(this.userValueSize);
    const ret = native().mapLookup(this.fd, key, value, 0);
    if (ret === -ENOENT) return undefined;
    if (ret < 0) throw bpfError('lookup', this.name, ret);
    return value;
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    checkBuffer(key, this.keySize, `key of map ${this.name}`);
    checkBuffer(value, this.userValueSize, `value of map ${this.name}`);
    checkFlags(flags, `flags of update on map ${this.name}`);
    const ret = native().mapUpdate(this.fd, key, value, flags);
    if (ret < 0) throw bpfError('update', this.name, ret);
  }

  /**
   * Writes raw values into a BPF_F_MMAPABLE array through a shared mapping: `data` lands at byte
   * `offset` of the value area (element i at i * roundup(valueSize, 8)). One copy, no system call per
   * element, for filling large arrays.
   */
  writeMmap(data: Buffer, offset = 0): void {
    if (this.type !== MapType.ARRAY || (this.flags & BPF_F_MMAPABLE) === 0) throw usage(`writeMmap on map ${this.name}: only BPF_F_MMAPABLE arrays can be mapped`);
    if (!Buffer.isBuffer(data)) throw usage(`data for writeMmap on map ${this.name} must be a Buffer`);
    const size = this.maxEntries * roundUp8(this.valueSize);
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > size) {
      throw usage(`writeMmap on map ${this.name}: ${data.length} bytes at offset ${offset} exceed its ${size} bytes`);
    }
    if (data.length === 0) return;
    const ret = native().mapMmapWrite(this.fd, data, offset);
    if (ret < 0) throw bpfError('mmap write', this.name, ret);
  }

  /** Map-in-map: stores the inner map whose fd is given (the kernel keeps its own reference). */
  updateFd(key: Buffer, innerMapFd: number, flags = BPF_ANY): void {
    if (!MAP_IN_MAP_TYPES.has(this.type)) throw usage(`updateFd on map ${this.name}: not a map-in-map (type ${this.type})`);
    checkBuffer(key, this.keySize, `key of map ${this.name}`);
    if (!Number.isInteger(innerMapFd) || innerMapFd < 0) throw usage(`innerMapFd for map ${this.name} must be an open fd, got ${innerMapFd}`);
    checkFlags(flags, `flags of update on map ${this.name}`);
    const v = Buffer.alloc(4);
    v.writeUInt32LE(innerMapFd);
    const ret = native().mapUpdate(this.fd, key, v, flags);
    if (ret < 0) throw bpfError('update', this.name, ret);
  }

  /** Map-in-map: the id of the inner map stored under key. */
  lookupId(key: Buffer): number | undefined {
    if (!MAP_IN_MAP_TYPES.has(this.type)) throw usage(`lookupId on map ${this.name}: not a map-in-map (type ${this.type})`);
    const v = this.lookup(key);
    return v === undefined ? undefined : v.readUInt32LE(0);
  }

  /** false when the key was absent */
  delete(key: Buffer): boolean {
    checkBuffer(key, this.keySize, `key of map ${this.name}`);
    const ret = native().mapDelete(this.fd, key);
    if (ret === -ENOENT) return false;
    if (ret < 0) throw bpfError('delete', this.name, ret);
    return true;
  }

  /**
   * Writes count entries (keys and values packed back to back) in one system call. Map types without
   * batch support (LPM tries, some kernels' map-in-maps) get one update per entry instead. On failure
   * throws BpfBatchError: the first `processed` entries were written.
   */
  updateBatch(keys: Buffer, values: Buffer, count: number, flags = BPF_ANY): void {
    checkU32(count, `count of updateBatch on map ${this.name}`);
    checkBuffer(keys, count * this.keySize, `keys of updateBatch on map ${this.name} (${count} keys)`);
    checkBuffer(values, count * this.userValueSize, `values of updateBatch on map ${this.name} (${count} values)`);
    checkFlags(flags, `flags of updateBatch on map ${this.name}`);
    if (count === 0) return;
    const [ret, processed] = native().mapUpdateBatch(this.fd, keys, values, count, flags);
    if (ret === 0) return;
    if (unsupported(ret) && processed === 0) {
      const vs = this.userValueSize;
      for (let i = 0; i < count; i++) {
        const r = native().mapUpdate(this.fd, keys.subarray(i * this.keySize, (i + 1) * this.keySize), values.subarray(i * vs, (i + 1) * vs), flags);
        if (r < 0) throw new BpfBatchError(bpfError('update', `${this.name} (entry ${i} of ${count})`, r), i);
      }
      return;
    }
    throw new BpfBatchError(bpfError('updateBatch', `${this.name} (entry ${processed} of ${count})`, ret), processed);
  }

  /** Deletes count keys in one system call; an absent key fails the batch with ENOENT (see deleteMany). */
  deleteBatch(keys: Buffer, count: number): void {
    checkU32(count, `count of deleteBatch on map ${this.name}`);
    checkBuffer(keys, count * this.keySize, `keys of deleteBatch on map ${this.name} (${count} keys)`);
    if (count === 0) return;
    const [ret, processed] = native().mapDeleteBatch(this.fd, keys, count);
    if (ret === 0) return;
    if (unsupported(ret) && processed === 0) {
      for (let i = 0; i < count; i++) {
        const r = native().mapDelete(this.fd, keys.subarray(i * this.keySize, (i + 1) * this.keySize));
        if (r < 0) throw new BpfBatchError(bpfError('delete', `${this.name} (entry ${i} of ${count})`, r), i);
      }
      return;
    }
    throw new BpfBatchError(bpfError('deleteBatch', `${this.name} (entry ${processed} of ${count})`, ret), processed);
  }

  /** Deletes the keys that exist; returns how many did. Batched, skipping absent keys. */
  deleteMany(keys: Buffer, count: number): number {
    checkU32(count, `count of deleteMany on map ${this.name}`);
    checkBuffer(keys, count * this.keySize, `keys of deleteMany on map ${this.name} (${count} keys)`);
    let deleted = 0;
    let start = 0;
    while (start < count) {
      const n = count - start;
      const chunk = keys.subarray(start * this.keySize);
      const [ret, processed] = native().mapDeleteBatch(this.fd, chunk, n);
      if (ret === 0) return deleted + n;
      if (unsupported(ret) && processed === 0) {
        for (let i = start; i < count; i++) if (this.delete(keys.subarray(i * this.keySize, (i + 1) * this.keySize))) deleted++;
        return deleted;
      }
      deleted += processed;
      if (ret !== -ENOENT) throw new BpfBatchError(bpfError('deleteBatch', `${this.name} (entry ${start + processed} of ${count})`, ret), start + processed);
      start += processed + 1; // the absent key
    }
    return deleted;
  }

  /** Every key, in the kernel's iteration order. */
  keys(): Buffer[] {
    const out: Buffer[] = [];
    let prev: Buffer | null = null;
    // bounded: a map cannot hold more than maxEntries keys; concurrent deletes may restart a hash walk
    for (let guard = 0; guard <= 4 * this.maxEntries + 16; guard++) {
      const next = Buffer.alloc(this.keySize);
      const ret = native().mapGetNextKey(this.fd, prev, next);
      if (ret === -ENOENT) return out;
      if (ret < 0) throw bpfError('get_next_key', this.name, ret);
      out.push(next);
      prev = next;
    }
    throw usage(`keys of map ${this.name}: iteration did not end after ${4 * this.maxEntries + 16} keys`);
  }

  /** Number of keys (ARRAY maps: always maxEntries), counted in batches without keeping them. */
  count(): number {
    if (this.type === MapType.ARRAY || this.type === MapType.PERCPU_ARRAY) return this.maxEntries;
    let n = 0;
    if (this.scanBatched(() => { n++; })) return n;
    return this.keys().length;
  }

  /**
   * Every [key, value]: batched lookups where the map type has them (thousands of entries per system
   * call), else get_next_key + lookup. Map-in-map values are inner map ids (u32).
   */
  entries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    const ks = this.keySize, vs = this.userValueSize;
    const batched = this.scanBatched((keys, values, i) => {
      out.push([Buffer.from(keys.subarray(i * ks, (i + 1) * ks)), Buffer.from(values.subarray(i * vs, (i + 1) * vs))]);
    });
    if (batched) return out;
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) out.push([k, v]); // deleted since the walk saw it
    }
    return out;
  }

  /**
   * Visits every entry without copying: key and value are views that are valid only during the call.
   * Batched where the map type allows, else get_next_key + lookup.
   */
  scan(visit: (key: Buffer, value: Buffer) => void): void {
    const ks = this.keySize, vs = this.userValueSize;
    const batched = this.scanBatched((keys, values, i) => visit(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs)));
    if (batched) return;
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) visit(k, v);
    }
  }

  /** Visits every entry through BPF_MAP_LOOKUP_BATCH; false when the map type has no batch lookup. */
  private scanBatched(visit: (keys: Buffer, values: Buffer, i: number) => void): boolean {
    const ks = this.keySize;
    const vs = this.userValueSize;
    let chunk = Math.max(1, Math.min(this.maxEntries, 4096));
    // batch cursors: the kernel reads a u32 bucket for hash maps and a key for arrays
    const cursorSize = Math.max(8, ks);
    let inBatch: Buffer | null = null;
    let keys = Buffer.alloc(chunk * ks);
    let values = Buffer.alloc(chunk * vs);
    for (let guard = 0; guard < 10_000_000; guard++) {
      const outBatch = Buffer.alloc(cursorSize);
      const [ret, n] = native().mapLookupBatch(this.fd, inBatch, outBatch, keys, values, chunk);
      if (ret < 0 && ret !== -ENOENT) {
        if (unsupported(ret) && inBatch === null) return false;
        // one hash bucket holds more entries than fit: retry the same cursor with a bigger chunk
        if (ret === -ENOSPC && chunk < this.maxEntries) {
          chunk = Math.min(this.maxEntries, chunk * 4);
          keys = Buffer.alloc(chunk * ks);
          values = Buffer.alloc(chunk * vs);
          continue;
        }
        throw bpfError('lookup_batch', this.name, ret);
      }
      for (let i = 0; i < n; i++) visit(keys, values, i);
      if (ret === -ENOENT) return true;
      inBatch = outBatch;
    }
    throw usage(`entries of map ${this.name}: batch lookup did not end`);
  }

  pin(path: string): void {
    pinFd(this.fd, path, 'map', this.name);
  }

  /** Closes our fd (maps of a BpfObject are closed with the object). Pinned or referenced maps live on. */
  close(): void {
    closeHandle(this, this[HANDLE]);
  }
}

function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

function unsupported(ret: number): boolean {
  return ret === -ENOTSUPP || ret === -EOPNOTSUPP || ret === -EINVAL;
}

function checkFlags(flags: number, what: string): void {
  if (flags !== BPF_ANY && flags !== BPF_NOEXIST && flags !== BPF_EXIST && flags !== BPF_F_LOCK) {
    throw usage(`${what} must be BPF_ANY (0), BPF_NOEXIST (1), BPF_EXIST (2) or BPF_F_LOCK (4), got ${flags}`);
  }
}

// ---- programs -----------------------------------------------------------------------------------
export type AttachPoint = 'ingress' | 'egress';
export interface TestRunResult { retval: number; data: Buffer; ctx?: Buffer; durationNs: number }

interface ProgState { fd: number; owned: boolean; closed: boolean; owner?: BpfObject }

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
  private readonly [HANDLE]: ProgState;

  /** @internal use BpfObject.program or BpfProgram.fromPin */
  constructor(token: symbol, desc: { fd: number; owned: boolean; owner?: BpfObject; name: string; type: number }) {
    if (token !== INTERNAL) throw usage('BpfProgram cannot be constructed directly: use BpfObject.program or BpfProgram.fromPin');
    this.name = desc.name;
    this.type = desc.type;
    this[HANDLE] = { fd: desc.fd, owned: desc.owned, closed: false, ...(desc.owner ? { owner: desc.owner } : {}) };
    if (desc.owned) fdFinalizer.register(this, desc.fd, this);
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
    if (ret === -ENOENT || ret === -EINVAL || ret === -19 /* ENODEV: device gone */) return false;
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
      if (id === -19 /* ENODEV */) return false;
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
  if (id === -ENOENT || id === -EINVAL || id === -19) return undefined;
  if (id < 0) throw bpfError('tc query', `ifindex ${ifindex} ${point}`, id);
  return id;
}

/** Removes a device's clsact qdisc with every filter on it (only for devices the agent owns). */
export function destroyTcHook(ifindex: number): boolean {
  checkIfindex(ifindex);
  const ret = native().tcHookDestroy(ifindex);
  if (ret === -ENOENT || ret === -EINVAL || ret === -19) return false;
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

// ---- objects ------------------------------------------------------------------------------------
interface ObjState { h: Handle | null; loaded: boolean; maps: Map<string, BpfMap>; progs: Map<string, BpfProgram> }

export class BpfObject {
  readonly path: string;
  readonly pinRoot: string | undefined;
  private readonly [HANDLE]: ObjState;

  private constructor(path: string, pinRoot: string | undefined, h: Handle) {
    this.path = path;
    this.pinRoot = pinRoot;
    this[HANDLE] = { h, loaded: false, maps: new Map(), progs: new Map() };
  }

  /**
   * Opens (parses) an object file. pinRoot: the directory of its LIBBPF_PIN_BY_NAME maps (reused when
   * pinned there, pinned there when new). Without pinRoot, no map is pinned or reused.
   */
  static open(path: string, opts?: { pinRoot?: string }): BpfObject {
    checkName(path, 'object path');
    if (!existsSync(path)) throw new KbpError('KBP_ERR_BPF', `open ${path}: no such file (build it with make -C bpf)`);
    if (opts?.pinRoot !== undefined) {
      checkName(opts.pinRoot, `pinRoot of ${path}`);
      if (!existsSync(opts.pinRoot)) throw new KbpError('KBP_ERR_BPF', `open ${path}: pin root ${opts.pinRoot} does not exist`);
    }
    native().takeLog();
    const h = native().objectOpen(path, opts?.pinRoot ?? null);
    if (typeof h === 'number') throw bpfError('open', path, h, logTail(native().takeLog()));
    if (opts?.pinRoot === undefined) {
      const ret = native().objectClearPins(h);
      if (ret < 0) {
        native().objectClose(h);
        throw bpfError('clear pin paths', path, ret);
      }
    }
    return new BpfObject(path, opts?.pinRoot, h);
  }

  private get handle(): Handle {
    const h = this[HANDLE].h;
    if (!h) throw usage(`object ${this.path} is closed`);
    return h;
  }

  /**
   * Creates the maps (reusing compatible maps pinned under pinRoot, pinning new ones) and loads every
   * program. A failure carries libbpf's log, the verifier's included.
   */
  load(): void {
    const h = this.handle;
    if (this[HANDLE].loaded) throw usage(`load ${this.path}: already loaded`);
    native().takeLog();
    const ret = native().objectLoad(h);
    const log = native().takeLog();
    if (ret < 0) throw bpfError('load', this.path, ret, logTail(log));
    this[HANDLE].loaded = true;
  }

  private requireLoaded(what: string): Handle {
    const h = this.handle;
    if (!this[HANDLE].loaded) throw usage(`${what}: object ${this.path} is not loaded`);
    return h;
  }

  map(name: string): BpfMap {
    checkName(name, 'map name');
    this.handle; // throws when closed
    const st = this[HANDLE];
    const cached = st.maps.get(name);
    if (cached) return cached;
    const h = this.requireLoaded(`map ${name}`);
    const d = native().objectMaps(h).find((m) => m.name === name);
    if (!d) throw new KbpError('KBP_ERR_BPF', `map ${name}: not in ${this.path} (maps: ${this.mapNames().join(', ')})`);
    const m = new BpfMap(INTERNAL, { fd: d.fd, owned: false, owner: this, name: d.name, type: d.type, keySize: d.keySize, valueSize: d.valueSize, maxEntries: d.maxEntries, flags: d.flags });
    st.maps.set(name, m);
    return m;
  }

  program(name: string): BpfProgram {
    checkName(name, 'program name');
    this.handle; // throws when closed
    const st = this[HANDLE];
    const cached = st.progs.get(name);
    if (cached) return cached;
    const h = this.requireLoaded(`program ${name}`);
    const d = native().objectPrograms(h).find((p) => p.name === name);
    if (!d) throw new KbpError('KBP_ERR_BPF', `program ${name}: not in ${this.path} (programs: ${this.programNames().join(', ') || 'none'})`);
    const p = new BpfProgram(INTERNAL, { fd: d.fd, owned: false, owner: this, name: d.name, type: d.type });
    st.progs.set(name, p);
    return p;
  }

  programNames(): string[] {
    return native().objectPrograms(this.handle).map((p) => p.name);
  }

  /** ELF section of each program (e.g. "tc", "xdp", "cgroup/connect4"). */
  programSections(): Record<string, string> {
    return Object.fromEntries(native().objectPrograms(this.handle).map((p) => [p.name, p.section]));
  }

  /** The object's own maps as declared (before load) or created (after): what a pinned map must match. */
  mapSpecs(): Array<{ name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }> {
    return native().objectMaps(this.handle).filter((m) => !m.name.includes('.'))
      .map(({ name, type, keySize, valueSize, maxEntries, flags }) => ({ name, type, keySize, valueSize, maxEntries, flags }));
  }

  mapNames(): string[] {
    // libbpf's internal maps (.rodata, .bss, .kconfig) are not ours to name
    return native().objectMaps(this.handle).map((m) => m.name).filter((n) => !n.includes('.'));
  }

  /** Closes every fd of the object; pinned maps and attached programs stay in the kernel. */
  close(): void {
    const st = this[HANDLE];
    if (!st.h) return;
    for (const m of st.maps.values()) m.close();
    for (const p of st.progs.values()) p.close();
    native().objectClose(st.h);
    st.h = null;
  }
}

/** The end of libbpf's log: the verifier states its verdict last. */
function logTail(log: string, maxLines = 60): string | undefined {
  const lines = log.trimEnd().split('\n');
  if (lines.length === 1 && lines[0] === '') return undefined;
  const tail = lines.length > maxLines ? ['...', ...lines.slice(-maxLines)] : lines;
  return tail.join('\n');
}

let cpus: number | undefined;
export function numPossibleCpus(): number {
  if (cpus === undefined) {
    const n = native().numPossibleCpus();
    if (n < 0) throw bpfError('num_possible_cpus', 'libbpf', n);
    cpus = n;
  }
  return cpus;
}
