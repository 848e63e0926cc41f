// BpfMap: one BPF map's fd (pinned, by id, created, or borrowed from a BpfObject) with lookups,
// updates, batches and iteration sized and checked against the map's own key and value sizes.
import { native } from './addon.js';
import {
  BpfBatchError, ENOENT, ENOSPC, ENOTSUPP, EINVAL, EOPNOTSUPP, bpfError, checkBuffer, checkName, checkU32, usage,
} from './errors.js';
import { HANDLE, INTERNAL, closeHandle, holdFd, pinFd, type FdState } from './fd.js';
import type { BpfObject } from './object.js';
import { Kept } from '../../../util/kept.js';
import { BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_MMAPABLE, BPF_NOEXIST, BPF_OBJ_NAME_LEN, MapType } from './uapi.js';

const PERCPU_TYPES = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH, 21 /* PERCPU_CGROUP_STORAGE */]);
const MAP_IN_MAP_TYPES = new Set<number>([MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS]);

/** A Maglev fill running on background threads (BpfMap.maglevFillStart); wait() joins it, once. */
export interface MaglevFillJob {
  /** fills one chunk no thread has begun on this thread; false when none was left (then wait()) */
  step(): boolean;
  wait(): void;
}

/** updateEach's `cpus` for every CPU the calling thread may run on (CPU_SETSIZE: the addon's bound) */
export const ALL_CPUS = 1024;

/** a batch lookup's buffers: keys and values of at least chunk entries of the map that made them, two cursors */
interface ScanBufs { keys: Buffer; values: Buffer; cursors: [Buffer, Buffer] }
function scanBufs(keyBytes: number, valueBytes: number, cursorSize: number): ScanBufs {
  return { keys: Buffer.alloc(keyBytes), values: Buffer.alloc(valueBytes), cursors: [Buffer.alloc(cursorSize), Buffer.alloc(cursorSize)] };
}

/**
 * A batch's bytes (keys and values) at most, where the batch's entry count allows: a per-CPU map's
 * value is 8-byte-rounded times every possible CPU (lb_fe_stats: 2 KiB at 128 CPUs, 8 MiB for 4096
 * of them), and the synchronous scans' buffers are kept (syncScanBufs).
 */
const SCAN_BATCH_BYTES = 512 * 1024;
/**
 * The synchronous scans' buffers (count(), scan(), entries(), scanBatches(), scanFirst(): a /metrics
 * scrape's counts and counters, every few seconds), kept for the next of any map: such a scan runs
 * to its end before another begins, except one its visitor starts, which gets its own. Sized to the
 * largest keys and values seen (a batch's at most SCAN_BATCH_BYTES, or its ENOSPC growth up to
 * SCAN_KEEP_BYTES), not one set a map: fresh ones at every scrape faulted in their pages each time.
 */
const syncScanBufs = new Kept<ScanBufs>();
const SCAN_KEEP_BYTES = 4 * SCAN_BATCH_BYTES;

export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  /** the kernel's value size; lookup() of a per-CPU map returns numPossibleCpus() * roundup(valueSize, 8) bytes */
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  private readonly [HANDLE]: FdState;

  /** @internal use BpfObject.map, BpfMap.fromPin, BpfMap.fromId or BpfMap.create */
  constructor(token: symbol, desc: { fd: number; owned: boolean; owner?: BpfObject; name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }) {
    if (token !== INTERNAL) throw usage('BpfMap cannot be constructed directly: use BpfMap.fromPin, BpfMap.create or BpfObject.map');
    this.name = desc.name;
    this.type = desc.type;
    this.keySize = desc.keySize;
    this.valueSize = desc.valueSize;
    this.maxEntries = desc.maxEntries;
    this.flags = desc.flags;
    this[HANDLE] = holdFd(this, desc);
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

  #writes = 0;
  /** scanYielding's batch buffers, kept for this map's next scanYielding (two at once on one map: the second makes its own) */
  readonly #scanBufs = new Kept<ScanBufs>();
  /**
   * Write calls made through this handle so far (each counted before its system call, so a failed
   * one counts too): a count of entries taken at one value stays true while this process alone writes.
   */
  get writes(): number {
    return this.#writes;
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
    this.#writes++;
    checkBuffer(key, this.keySize, `key of map ${this.name}`);
    checkBuffer(value, this.userValueSize, `value of map ${this.name}`);
    checkFlags(flags, `flags of update on map ${this.name}`);
    const ret = native().mapUpdate(this.fd, key, value, flags);
    if (ret < 0) throw bpfError('update', this.name, ret);
  }

  /**
   * Writes raw values into a BPF_F_MMAPABLE array through a shared mapping: `data` lands at byte
   * `offset` of the value area (element i at i * roundup(valueSize, 8)). One copy, no system call per
   * element, for filling large arrays. With `or`, each non-zero 8-byte word of data is ORed into the
   * array's word with an atomic OR instead (offset and length multiples of 8): bits the programs set
   * meanwhile are kept.
   */
  writeMmap(data: Buffer, offset = 0, or = false): void {
    this.#writes++;
    if (this.type !== MapType.ARRAY || (this.flags & BPF_F_MMAPABLE) === 0) throw usage(`writeMmap on map ${this.name}: only BPF_F_MMAPABLE arrays can be mapped`);
    if (!Buffer.isBuffer(data)) throw usage(`data for writeMmap on map ${this.name} must be a Buffer`);
    const size = this.maxEntries * roundUp8(this.valueSize);
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > size) {
      throw usage(`writeMmap on map ${this.name}: ${data.length} bytes at offset ${offset} exceed its ${size} bytes`);
    }
    if (data.length === 0) return;
    if (or && (offset % 8 || data.length % 8)) throw usage(`writeMmap on map ${this.name}: an OR needs 8-byte words (offset ${offset}, ${data.length} bytes)`);
    const ret = native().mapMmapWrite(this.fd, data, offset, or);
    if (ret < 0) throw bpfError('mmap write', this.name, ret);
  }

  /**
   * Starts filling Maglev tables into this BPF_F_MMAPABLE array of u32 slots (lb_maglev_slots) on
   * `threads` background threads, each filling a reused 512 KiB chunk of adjacent regions and copying it
   * in (writeMmap's copy). h1, h2, ids: u32 per member (maglev-native.ts nativeFill's), regions: 5 u32
   * per table by offset (first member, count, M, first slot, region slots; slots past M written 0).
   * The arguments are checked and copied before a thread starts; the returned job's wait() (which
   * takes what chunks are left on the calling thread) must be called before anything reads the slots.
   * The job maps the array a window of consecutive chunks at a time (at most `windowSlots` slots,
   * 2^23 by default: 32 MiB), each for as long as a thread writes in it: what counts in the process's
   * RSS is a window or two per thread, not the span of every region.
   */
  maglevFillStart(h1: Buffer, h2: Buffer, ids: Buffer, regions: Buffer, threads: number, windowSlots = 1 << 23): MaglevFillJob {
    this.#writes++;
    if (this.type !== MapType.ARRAY || (this.flags & BPF_F_MMAPABLE) === 0) throw usage(`maglevFillStart on map ${this.name}: only BPF_F_MMAPABLE arrays can be mapped`);
    for (const [b, what] of [[h1, 'h1'], [h2, 'h2'], [ids, 'ids'], [regions, 'regions']] as const) {
      if (!Buffer.isBuffer(b)) throw usage(`${what} for maglevFillStart on map ${this.name} must be a Buffer`);
    }
    if (!Number.isInteger(threads) || threads < 0 || threads > 64) throw usage(`threads for maglevFillStart on map ${this.name} must be an integer in 0..64, got ${threads}`);
    checkU32(windowSlots, `windowSlots for maglevFillStart on map ${this.name}`);
    const job = native().mapMaglevFillStart(this.fd, h1, h2, ids, regions, threads, windowSlots);
    if (typeof job === 'number') throw bpfError('Maglev fill', this.name, job);
    const name = this.name;
    let done = false;
    return {
      step: () => !done && native().mapMaglevFillStep(job),
      wait(): void {
        if (done) return;
        done = true;
        const ret = native().mapMaglevFillWait(job);
        if (ret < 0) throw bpfError('Maglev fill', name, ret);
      },
    };
  }

  /** Map-in-map: stores the inner map whose fd is given (the kernel keeps its own reference). */
  updateFd(key: Buffer, innerMapFd: number, flags = BPF_ANY): void {
    this.#writes++;
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
    this.#writes++;
    checkBuffer(key, this.keySize, `key of map ${this.name}`);
    const ret = native().mapDelete(this.fd, key);
    if (ret === -ENOENT) return false;
    if (ret < 0) throw bpfError('delete', this.name, ret);
    return true;
  }

  /**
   * Writes count entries (keys and values packed back to back) in one system call. Map types without
   * batch support (LPM tries, some kernels' map-in-maps) get one update per entry instead. With
   * threads > 1, a large batch is split into that many slices written at once (the kernel's hash
   * inserts are independent): its entries land in no set order, so its keys must be distinct. On
   * failure throws BpfBatchError:
   * the first `processed` entries were written (with threads, maybe some after them too).
   */
  updateBatch(keys: Buffer, values: Buffer, count: number, flags = BPF_ANY, threads = 1): void {
    this.#writes++;
    checkU32(count, `count of updateBatch on map ${this.name}`);
    checkBuffer(keys, count * this.keySize, `keys of updateBatch on map ${this.name} (${count} keys)`);
    checkBuffer(values, count * this.userValueSize, `values of updateBatch on map ${this.name} (${count} values)`);
    checkFlags(flags, `flags of updateBatch on map ${this.name}`);
    checkThreads(threads, `threads of updateBatch on map ${this.name}`);
    if (count === 0) return;
    const [ret, processed] = native().mapUpdateBatch(this.fd, keys, values, count, flags, threads);
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

  /**
   * Writes count packed entries one update each, in one call to the addon, with `flags` (e.g.
   * BPF_NOEXIST, which the kernel's batch update does not take), going on past a failed entry:
   * how many were written, how many existed already (EEXIST), how many failed otherwise and the
   * first of those failures (a BpfError, or undefined). `cpus` > 1 writes the entries in even slices,
   * each from a thread pinned to one of the first `cpus` CPUs the agent may run on: an LRU hash with
   * per-CPU lists (BPF_F_NO_COMMON_LRU, lb_ct_syn) holds at most capacity / CPUs entries written from
   * one CPU, and evicts the earlier ones past that.
   */
  updateEach(keys: Buffer, values: Buffer, count: number, flags = BPF_ANY, cpus = 1): { updated: number; existed: number; failed: number; error?: Error } {
    this.#writes++;
    checkU32(count, `count of updateEach on map ${this.name}`);
    checkBuffer(keys, count * this.keySize, `keys of updateEach on map ${this.name} (${count} keys)`);
    checkBuffer(values, count * this.userValueSize, `values of updateEach on map ${this.name} (${count} values)`);
    checkFlags(flags, `flags of updateEach on map ${this.name}`);
    if (count === 0) return { updated: 0, existed: 0, failed: 0 };
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > ALL_CPUS) throw usage(`cpus of updateEach on map ${this.name} must be an integer in 1..${ALL_CPUS}, got ${cpus}`);
    const [updated, existed, failed, first] = cpus > 1
      ? native().mapUpdateEach(this.fd, keys, values, count, flags, cpus)
      : native().mapUpdateEach(this.fd, keys, values, count, flags);
    return { updated, existed, failed, ...(failed > 0 && { error: bpfError('update', this.name, first) }) };
  }

  /** Deletes count keys in one system call; an absent key fails the batch with ENOENT (see deleteMany). */
  deleteBatch(keys: Buffer, count: number): void {
    this.#writes++;
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
    this.#writes++;
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

  /**
   * updateBatch on libuv's thread pool: the event loop keeps running while the kernel writes (a
   * map-in-map write waits for an RCU grace period). The addon copies keys and values, so the caller
   * may reuse them at once. Same fallbacks and errors as updateBatch.
   */
  async updateBatchAsync(keys: Buffer, values: Buffer, count: number, flags = BPF_ANY, threads = 1): Promise<void> {
    this.#writes++;
    checkU32(count, `count of updateBatch on map ${this.name}`);
    checkBuffer(keys, count * this.keySize, `keys of updateBatch on map ${this.name} (${count} keys)`);
    checkBuffer(values, count * this.userValueSize, `values of updateBatch on map ${this.name} (${count} values)`);
    checkFlags(flags, `flags of updateBatch on map ${this.name}`);
    checkThreads(threads, `threads of updateBatch on map ${this.name}`);
    if (count === 0) return;
    const [ret, processed] = await native().mapUpdateBatchAsync(this.fd, keys, values, count, flags, threads);
    if (ret === 0) return;
    if (unsupported(ret) && processed === 0) return this.updateBatch(keys, values, count, flags);
    throw new BpfBatchError(bpfError('updateBatch', `${this.name} (entry ${processed} of ${count})`, ret), processed);
  }

  /** deleteMany on libuv's thread pool (see updateBatchAsync): deletes the keys that exist, returns how many did. */
  async deleteManyAsync(keys: Buffer, count: number): Promise<number> {
    this.#writes++;
    checkU32(count, `count of deleteMany on map ${this.name}`);
    checkBuffer(keys, count * this.keySize, `keys of deleteMany on map ${this.name} (${count} keys)`);
    let deleted = 0;
    let start = 0;
    // bounded: each round consumes at least one key
    while (start < count) {
      const n = count - start;
      const [ret, processed] = await native().mapDeleteBatchAsync(this.fd, keys.subarray(start * this.keySize), n);
      if (ret === 0) return deleted + n;
      if (unsupported(ret) && processed === 0) return deleted + this.deleteMany(keys.subarray(start * this.keySize), n);
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

  /** Whether the map holds any key (ARRAY maps: always): one get_next_key, no walk of the rest. */
  hasAny(): boolean {
    if (this.type === MapType.ARRAY || this.type === MapType.PERCPU_ARRAY) return this.maxEntries > 0;
    const ret = native().mapGetNextKey(this.fd, null, Buffer.alloc(this.keySize));
    if (ret === -ENOENT) return false;
    if (ret < 0) throw bpfError('get_next_key', this.name, ret);
    return true;
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

  /**
   * scan() a batch at a time: keys and values hold n entries each, packed (keySize and userValueSize
   * apart), valid only during the call (reused by the next batch, and by the next scan). No object per entry: a scan() of the million entries of
   * lb_backends made two views each, ~215 MB of garbage (the first /metrics scrape's count of it).
   * Batched where the map type allows, else one entry per call.
   */
  scanBatches(visit: (keys: Buffer, values: Buffer, n: number) => void): void {
    const state = { unsupported: false };
    for (const { keys, values, n } of this.batchSteps(4096, state)) visit(keys, values, n);
    if (!state.unsupported) return;
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) visit(k, v, 1);
    }
  }

  /**
   * scan() that gives the event loop a turn after each batch of `batch` entries (a million-entry
   * conntrack map is a second of lookups): onBatch runs after each batch's visits, before the turn,
   * and may return a promise (e.g. deleting what the batch found). Without batch lookups, scan().
   * Its batch buffers are the map's, reused by its next scanYielding (the conntrack sweep's every
   * 30 s: 352 KiB of lb_ct's at 4096 entries a batch, fresh each time, lived to a major GC and
   * faulted in fresh pages at every sweep; docs/perf-log.md session 31, p31ct).
   */
  async scanYielding(visit: (key: Buffer, value: Buffer) => void, opts: { batch?: number; onBatch?: () => unknown } = {}): Promise<void> {
    const ks = this.keySize, vs = this.userValueSize;
    const batch = opts.batch ?? 4096;
    checkU32(batch, `batch of scanYielding on map ${this.name}`);
    const state = { unsupported: false };
    for (const { keys, values, n } of this.batchSteps(Math.max(1, batch), state, true)) {
      for (let i = 0; i < n; i++) visit(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
      await opts.onBatch?.();
      await new Promise<void>((res) => setImmediate(res));
    }
    if (state.unsupported) {
      this.scan(visit);
      await opts.onBatch?.();
    }
  }

  /**
   * An ARRAY's (or PERCPU_ARRAY's) entries 0..n-1 only, in key order: the per-frontend counters of
   * 10,000 frontends without the other 120,000 slots. Views valid only during the call.
   */
  scanFirst(n: number, visit: (key: Buffer, value: Buffer) => void): void {
    if (this.type !== MapType.ARRAY && this.type !== MapType.PERCPU_ARRAY) throw usage(`scanFirst on map ${this.name}: not an array`);
    checkU32(n, `count of scanFirst on map ${this.name}`);
    const ks = this.keySize, vs = this.userValueSize;
    let left = Math.min(n, this.maxEntries);
    if (left === 0) return;
    for (const { keys, values, n: got } of this.batchSteps(Math.min(left, 4096), { unsupported: false })) {
      const take = Math.min(got, left);
      for (let i = 0; i < take; i++) visit(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
      left -= take;
      if (left === 0) return;
    }
  }

  /** Visits every entry through BPF_MAP_LOOKUP_BATCH; false when the map type has no batch lookup. */
  private scanBatched(visit: (keys: Buffer, values: Buffer, i: number) => void): boolean {
    const state = { unsupported: false };
    for (const { keys, values, n } of this.batchSteps(4096, state)) {
      for (let i = 0; i < n; i++) visit(keys, values, i);
    }
    return !state.unsupported;
  }

  /**
   * BPF_MAP_LOOKUP_BATCH, one batch per step; the buffers are reused by the next step and kept for
   * the next scan: with `own`, this map's next scanYielding's (#scanBufs: it holds them across turns
   * of the event loop), else any map's next synchronous scan's (syncScanBufs). A batch is `size`
   * entries, fewer where they would pass SCAN_BATCH_BYTES, more when one hash bucket holds more
   * (ENOSPC: grown, the cursor carried over). Sets state.unsupported (producing nothing) when the map
   * type has no batch lookup.
   */
  private *batchSteps(size: number, state: { unsupported: boolean }, own = false): Generator<{ keys: Buffer; values: Buffer; n: number }, void> {
    const ks = this.keySize;
    const vs = this.userValueSize;
    let chunk = Math.max(1, Math.min(this.maxEntries, size, Math.floor(SCAN_BATCH_BYTES / (ks + vs))));
    // batch cursors: the kernel reads a u32 bucket for hash maps and a key for arrays
    const cursorSize = Math.max(8, ks);
    const kept = own ? this.#scanBufs : syncScanBufs;
    const fits = (x: ScanBufs): boolean => x.keys.length >= chunk * ks && x.values.length >= chunk * vs && x.cursors[0].length >= cursorSize;
    const fresh = (old: ScanBufs | undefined): ScanBufs =>
      scanBufs(Math.max(chunk * ks, old?.keys.length ?? 0), Math.max(chunk * vs, old?.values.length ?? 0), Math.max(cursorSize, old?.cursors[0].length ?? 0));
    // one set for maps of every key and value size: a set too small is replaced by one as big as
    // both (the sizes of a scrape's maps converge in its first pass, not swap at every scan)
    const had = kept.take();
    let b = had && fits(had) ? had : fresh(had);
    try {
      let keys = b.keys.subarray(0, chunk * ks), values = b.values.subarray(0, chunk * vs);
      let inBatch: Buffer | null = null;
      let out = 0;
      for (let guard = 0; guard < 10_000_000; guard++) {
        // the two cursors alternate: the kernel reads one and writes the other
        const outBatch = b.cursors[out]!;
        const [ret, n] = native().mapLookupBatch(this.fd, inBatch, outBatch, keys, values, chunk);
        if (ret < 0 && ret !== -ENOENT) {
          if (unsupported(ret) && inBatch === null) {
            state.unsupported = true;
            return;
          }
          // one hash bucket holds more entries than fit: retry the same cursor with a bigger chunk
          if (ret === -ENOSPC && chunk < this.maxEntries) {
            chunk = Math.min(this.maxEntries, chunk * 4);
            if (!fits(b)) {
              const nb = fresh(b);
              // the cursor to retry from, into the new pair's place of it
              if (inBatch) {
                const c = nb.cursors[out ^ 1]!;
                inBatch.copy(c);
                inBatch = c;
              }
              b = nb;
            }
            keys = b.keys.subarray(0, chunk * ks);
            values = b.values.subarray(0, chunk * vs);
            continue;
          }
          throw bpfError('lookup_batch', this.name, ret);
        }
        if (n > 0) yield { keys, values, n };
        if (ret === -ENOENT) return;
        inBatch = outBatch;
        out ^= 1;
      }
      throw usage(`entries of map ${this.name}: batch lookup did not end`);
    } finally {
      // a bucket's growth past the bound is not kept for every scrape after
      if (b.keys.length + b.values.length <= SCAN_KEEP_BYTES || own) kept.give(b);
    }
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

function checkThreads(threads: number, what: string): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw usage(`${what} must be an integer in 1..64, got ${threads}`);
}

let cpus: number | undefined;
/** Possible CPUs (libbpf_num_possible_cpus): a per-CPU map value holds one slot for each. */
export function numPossibleCpus(): number {
  if (cpus === undefined) {
    const n = native().numPossibleCpus();
    if (n < 0) throw bpfError('num_possible_cpus', 'libbpf', n);
    cpus = n;
  }
  return cpus;
}
