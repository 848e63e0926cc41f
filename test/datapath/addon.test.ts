// The native addon through src/dataplane/bpf/native/, against the real kernel (root, bpffs):
// map operations and their errors, batches, per-CPU values, map-in-map, pins, object load (with the
// verifier's log on failure), BPF_PROG_TEST_RUN, and tc / XDP / cgroup attachment.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { BpfBatchError } from '../../src/dataplane/bpf/native/errors.js';
import { ALL_CPUS, BpfMap, numPossibleCpus } from '../../src/dataplane/bpf/native/map.js';
import { BpfObject } from '../../src/dataplane/bpf/native/object.js';
import { fillTables } from '../../src/plan/slot-source.js';
import { cgroupPrograms } from '../../src/dataplane/bpf/native/program.js';
import { BPF_ANY, BPF_EXIST, BPF_F_INNER_MAP, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_NOEXIST, MapType } from '../../src/dataplane/bpf/native/uapi.js';
import { KbpError } from '../../src/util/errors.js';
import { hostRoots } from '../../testing/netns.js';
import { dataplaneObject, fixtureObject, isRoot, repoRoot, tempPinRoot } from './fixtures/util.js';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

if (!isRoot) {
  test('datapath tests need root', (t) => {
    t.log('skipped: run as root (npm run test:datapath)');
    t.pass();
  });
} else {
  test('lookup, update, delete and their errors on a created hash map', (t) => {
    const m = BpfMap.create({ type: MapType.HASH, name: 'kbp_t_hash', keySize: 4, valueSize: 8, maxEntries: 4 });
    t.teardown(() => m.close());
    t.is(m.lookup(u32(1)), undefined);
    m.update(u32(1), u64(11));
    t.deepEqual(m.lookup(u32(1)), u64(11));
    // BPF_NOEXIST on an existing key: EEXIST, with the operation and the map in the message
    const exists = t.throws(() => m.update(u32(1), u64(12), BPF_NOEXIST), { instanceOf: KbpError });
    t.is(exists.code, 'KBP_ERR_BPF');
    t.is(exists.errno, 17);
    t.regex(exists.message, /^update kbp_t_hash: File exists \(errno 17\)$/);
    const missing = t.throws(() => m.update(u32(2), u64(1), BPF_EXIST), { instanceOf: KbpError });
    t.is(missing.errno, 2);
    t.true(m.delete(u32(1)));
    t.false(m.delete(u32(1)), 'delete of an absent key returns false');
    // sizes are checked in TypeScript, naming the argument; nothing reaches the kernel
    t.throws(() => m.update(Buffer.alloc(3), u64(1)), { message: 'key of map kbp_t_hash must be 4 bytes, got 3' });
    t.throws(() => m.update(u32(1), Buffer.alloc(4)), { message: 'value of map kbp_t_hash must be 8 bytes, got 4' });
    t.throws(() => m.update(u32(1), u64(1), 9), { message: /flags of update on map kbp_t_hash must be BPF_ANY/ });
    t.throws(() => m.lookup('x' as unknown as Buffer), { message: 'key of map kbp_t_hash must be a Buffer' });
    // a full hash map: E2BIG
    for (let i = 0; i < 4; i++) m.update(u32(i), u64(i));
    const full = t.throws(() => m.update(u32(9), u64(9)), { instanceOf: KbpError });
    t.is(full.errno, 7);
    t.is(m.count(), 4);
    t.deepEqual(m.keys().map((k) => k.readUInt32LE(0)).sort(), [0, 1, 2, 3]);
  });

  test('batch update, lookup (entries), delete, and deleteMany skipping absent keys', (t) => {
    const n = 5000;
    const m = BpfMap.create({ type: MapType.HASH, name: 'kbp_t_batch', keySize: 8, valueSize: 20, maxEntries: n });
    t.teardown(() => m.close());
    const keys = Buffer.alloc(n * 8), values = Buffer.alloc(n * 20);
    for (let i = 0; i < n; i++) {
      keys.writeUInt32LE(i, i * 8);
      keys.writeUInt32LE(i * 7, i * 8 + 4);
      values.writeUInt32LE(i ^ 0x5a5a, i * 20 + 16);
    }
    m.updateBatch(keys, values, n);
    const entries = m.entries();
    t.is(entries.length, n);
    for (const [k, v] of entries) t.is(v.readUInt32LE(16), k.readUInt32LE(0) ^ 0x5a5a);
    t.is(m.keys().length, n);
    t.is(m.count(), n);
    t.throws(() => m.updateBatch(keys, values, n + 1), { message: `keys of updateBatch on map kbp_t_batch (${n + 1} keys) must be ${(n + 1) * 8} bytes, got ${n * 8}` });
    // the first 100 keys, then an absent key in the middle of a deleteMany
    m.deleteBatch(keys.subarray(0, 100 * 8), 100);
    t.is(m.count(), n - 100);
    const mixed = Buffer.concat([keys.subarray(100 * 8, 110 * 8), keys.subarray(0, 8), keys.subarray(110 * 8, 120 * 8)]);
    t.is(m.deleteMany(mixed, 21), 20);
    t.is(m.count(), n - 120);
    const err = t.throws(() => m.deleteBatch(keys.subarray(0, 8), 1), { instanceOf: KbpError });
    t.is(err.errno, 2);
  });

  test('updateEach: one update an entry with BPF_NOEXIST, going on past entries that exist or do not fit', (t) => {
    const n = 5000;
    const m = BpfMap.create({ type: MapType.HASH, name: 'kbp_t_each', keySize: 8, valueSize: 20, maxEntries: n - 2 });
    t.teardown(() => m.close());
    const keys = Buffer.alloc(n * 8), values = Buffer.alloc(n * 20);
    for (let i = 0; i < n; i++) {
      keys.writeUInt32LE(i, i * 8);
      values.writeUInt32LE(i ^ 0x5a5a, i * 20 + 16);
    }
    // three written before, with other values: they stay
    for (const i of [0, 2500, 4999]) m.update(keys.subarray(i * 8, i * 8 + 8), Buffer.alloc(20, 0xee));
    const r = m.updateEach(keys, values, n, BPF_NOEXIST);
    t.is(r.existed, 3);
    t.is(r.updated, n - 2 - 3, 'up to the capacity');
    t.is(r.failed, 2, 'the two past the capacity');
    t.is((r.error as KbpError).errno, 7, 'E2BIG, named');
    t.regex(r.error!.message, /kbp_t_each/);
    t.deepEqual(m.lookup(keys.subarray(2500 * 8, 2501 * 8)), Buffer.alloc(20, 0xee), 'an existing entry kept');
    t.is(m.lookup(keys.subarray(8, 16))!.readUInt32LE(16), 1 ^ 0x5a5a);
    t.deepEqual(m.updateEach(Buffer.alloc(0), Buffer.alloc(0), 0, BPF_NOEXIST), { updated: 0, existed: 0, failed: 0 });
    t.throws(() => m.updateEach(keys, values, n + 1, BPF_NOEXIST), { message: `keys of updateEach on map kbp_t_each (${n + 1} keys) must be ${(n + 1) * 8} bytes, got ${n * 8}` });
  });

  test('updateEach over CPUs: an LRU hash with per-CPU lists keeps every entry, where one thread\'s writes keep one CPU\'s share', (t) => {
    const cpus = numPossibleCpus();
    if (cpus < 2) return t.pass('one possible CPU: one list holds the whole capacity');
    const cap = 2048 * cpus, n = Math.floor(cap * 0.75);
    const make = () => BpfMap.create({ type: MapType.LRU_HASH, name: 'kbp_t_each_cpu', keySize: 8, valueSize: 8, maxEntries: cap, flags: BPF_F_NO_COMMON_LRU });
    const keys = Buffer.alloc(n * 8), values = Buffer.alloc(n * 8);
    for (let i = 0; i < n; i++) keys.writeUInt32LE(i + 1, i * 8);
    const spread = make();
    t.teardown(() => spread.close());
    t.like(spread.updateEach(keys, values, n, BPF_NOEXIST, ALL_CPUS), { updated: n, existed: 0, failed: 0 });
    t.is(spread.count(), n, 'every entry held: each CPU\'s list took its share');
    // the kernel's behaviour the spread is for: one thread's inserts fill one CPU's list and evict
    // from it (counted as written); at most a share of the capacity, whichever CPUs the thread ran on
    const one = make();
    t.teardown(() => one.close());
    t.is(one.updateEach(keys, values, n, BPF_NOEXIST).updated, n);
    t.true(one.count() < n, `one thread: ${one.count()} of ${n} held`);
    t.throws(() => spread.updateEach(keys, values, n, BPF_NOEXIST, 0), { message: /cpus of updateEach on map kbp_t_each_cpu must be an integer in 1\.\.1024, got 0/ });
  });

  test('batch update of a map type without batch support falls back to single updates (LPM trie)', (t) => {
    const m = BpfMap.create({ type: MapType.LPM_TRIE, name: 'kbp_t_lpm', keySize: 8, valueSize: 1, maxEntries: 8, flags: 1 /* BPF_F_NO_PREALLOC */ });
    t.teardown(() => m.close());
    const keys = Buffer.from([24, 0, 0, 0, 10, 1, 2, 0, 8, 0, 0, 0, 10, 0, 0, 0]);
    m.updateBatch(keys, Buffer.from([1, 2]), 2);
    t.is(m.entries().length, 2);
    t.deepEqual(m.lookup(Buffer.from([32, 0, 0, 0, 10, 1, 2, 3])), Buffer.from([1]), 'longest prefix wins');
    t.deepEqual(m.lookup(Buffer.from([32, 0, 0, 0, 10, 9, 9, 9])), Buffer.from([2]));
    t.is(m.deleteMany(keys, 2), 2);
  });

  test('per-CPU values are numPossibleCpus() copies of the value rounded up to 8 bytes', (t) => {
    const cpus = numPossibleCpus();
    t.true(cpus >= 1);
    const m = BpfMap.create({ type: MapType.PERCPU_HASH, name: 'kbp_t_pcpu', keySize: 4, valueSize: 4, maxEntries: 4 });
    t.teardown(() => m.close());
    t.is(m.userValueSize, cpus * 8);
    const v = Buffer.alloc(cpus * 8);
    for (let c = 0; c < cpus; c++) v.writeUInt32LE(100 + c, c * 8);
    m.update(u32(1), v);
    const got = m.lookup(u32(1))!;
    t.is(got.length, cpus * 8);
    for (let c = 0; c < cpus; c++) t.is(got.readUInt32LE(c * 8), 100 + c);
    t.throws(() => m.update(u32(1), Buffer.alloc(4)), { message: `value of map kbp_t_pcpu must be ${cpus * 8} bytes, got 4` });
    const entries = m.entries();
    t.is(entries.length, 1);
    t.deepEqual(entries[0]![1], got);
  });

  test('inner arrays of different sizes in a hash-of-maps; lookupId names the inner map', (t) => {
    const template = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_t_tmpl', keySize: 4, valueSize: 8, maxEntries: 1, flags: BPF_F_INNER_MAP });
    const outer = BpfMap.create({ type: MapType.HASH_OF_MAPS, name: 'kbp_t_outer', keySize: 4, valueSize: 4, maxEntries: 8, innerMap: template });
    const inner = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_t_inner', keySize: 4, valueSize: 8, maxEntries: 126, flags: BPF_F_INNER_MAP });
    t.teardown(() => { template.close(); outer.close(); inner.close(); });
    const keys = Buffer.alloc(126 * 4), values = Buffer.alloc(126 * 8);
    for (let i = 0; i < 126; i++) {
      keys.writeUInt32LE(i, i * 4);
      values.writeUInt32LE(2 * i + 1, i * 8);
      values.writeUInt32LE(2 * i + 2, i * 8 + 4);
    }
    inner.updateBatch(keys, values, 126);
    outer.updateFd(u32(5), inner.fd);
    const id = outer.lookupId(u32(5));
    t.is(id, inner.id);
    t.is(outer.lookupId(u32(6)), undefined);
    inner.close(); // the outer map keeps the inner one alive
    const back = BpfMap.fromId(id!);
    t.teardown(() => back.close());
    t.is(back.maxEntries, 126);
    t.is(back.lookup(u32(125))!.readUInt32LE(4), 252);
    t.is(outer.entries().length, 1);
    t.throws(() => template.updateFd(u32(0), 3), { message: /updateFd on map kbp_t_tmpl: not a map-in-map/ });
    t.throws(() => BpfMap.create({ type: MapType.HASH_OF_MAPS, name: 'kbp_t_o2', keySize: 4, valueSize: 4, maxEntries: 1 }), { message: /needs innerMap/ });
    t.throws(() => BpfMap.create({ type: MapType.ARRAY, name: 'a_name_that_is_too_long', keySize: 4, valueSize: 4, maxEntries: 1 }), { message: /must be 1\.\.15 characters/ });
  });

  test('an mmapable array is written with one copy; bounds are checked first', (t) => {
    const m = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_t_mmap', keySize: 4, valueSize: 8, maxEntries: 600, flags: BPF_F_MMAPABLE });
    t.teardown(() => m.close());
    const data = Buffer.alloc(600 * 8);
    for (let i = 0; i < 600; i++) data.writeUInt32LE(i * 3, i * 8);
    m.writeMmap(data);
    t.is(m.lookup(u32(599))!.readUInt32LE(0), 599 * 3);
    m.writeMmap(u64(5), 8 * 10);
    t.deepEqual(m.lookup(u32(10)), u64(5));
    t.throws(() => m.writeMmap(u64(1), 600 * 8), { message: 'writeMmap on map kbp_t_mmap: 8 bytes at offset 4800 exceed its 4800 bytes' });
    let seen = 0;
    m.scan((k, v) => { if (v.readUInt32LE(0) === k.readUInt32LE(0) * 3) seen++; });
    t.is(seen, 599, 'scan visits every element in place (element 10 was overwritten)');
  });

  for (const viaProcMem of [true, false]) test(`an mmapable array written across pages at an offset within one: exactly those bytes change${viaProcMem ? '' : ' (memcpy, as where /proc/self/mem refuses)'}`, (t) => {
    // writeMmap copies through /proc/self/mem where it can (addon.cc CopyIntoMapping), else by memcpy
    if (!viaProcMem) {
      process.env.KBP_ADDON_NO_PROC_MEM = '1';
      t.teardown(() => { delete process.env.KBP_ADDON_NO_PROC_MEM; });
    }
    const n = 4096;
    const m = BpfMap.create({ type: MapType.ARRAY, name: viaProcMem ? 'kbp_t_mmap2' : 'kbp_t_mmap3', keySize: 4, valueSize: 8, maxEntries: n, flags: BPF_F_MMAPABLE });
    t.teardown(() => m.close());
    const before = Buffer.alloc(n * 8);
    for (let i = 0; i < n * 2; i++) before.writeUInt32LE(0xa0000000 + i, i * 4);
    m.writeMmap(before);
    const off = 8 * 301, data = Buffer.alloc(8 * 1500);
    for (let i = 0; i < 1500 * 2; i++) data.writeUInt32LE(i + 1, i * 4);
    m.writeMmap(data, off);
    const want = Buffer.from(before);
    data.copy(want, off);
    const got = Buffer.alloc(n * 8);
    m.scan((k, v) => v.copy(got, k.readUInt32LE(0) * 8));
    t.true(got.equals(want));
  });

  test('a Maglev fill job writes the tables the fill computes into their regions, padding 0, nothing else; bad tables are refused before any thread', (t) => {
    // chunks of adjacent regions (512 KiB each in addon.cc) on 0 or 2 background threads, a gap between
    // runs of regions left as it was; slots equal fillTables' (the JavaScript fill)
    const slots = 1 << 20;
    const m = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_t_fill', keySize: 4, valueSize: 8, maxEntries: slots / 2, flags: BPF_F_MMAPABLE });
    t.teardown(() => m.close());
    const ms = [1601, 1009, 251, 1601, 4099, 3];
    const tables: { first: number; n: number; m: number; off: number; size: number }[] = [];
    let first = 0, off = 2;
    for (let k = 0; k < 400; k++) {
      const M = ms[k % ms.length]!, n = Math.min(M, 1 + (k % 13));
      const size = M + (M & 1);
      // a gap of 6 slots before every 50th table: a new chunk, and slots the job must not touch
      if (k % 50 === 0) off += 6;
      tables.push({ first, n, m: M, off, size });
      first += n;
      off += size;
    }
    const src = { h1: new Uint32Array(first), h2: new Uint32Array(first), ids: new Uint32Array(first) };
    for (let i = 0; i < first; i++) { src.h1[i] = Math.imul(i + 1, 2654435761) >>> 0; src.h2[i] = Math.imul(i + 7, 40503) >>> 0; src.ids[i] = 1 + (i % 1000); }
    const want = new Uint32Array(slots).fill(0xeeeeeeee);
    const desc = new Uint32Array(tables.flatMap((x) => [x.first, x.n, x.m, x.off]));
    fillTables(src, desc, want, 1, false);
    for (const x of tables) want.fill(0, x.off + x.m, x.off + x.size);
    const buf = (a: Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const regions = buf(new Uint32Array(tables.flatMap((x) => [x.first, x.n, x.m, x.off, x.size])));
    // the map's mappings the process holds: the job maps a window of chunks at a time and unmaps it
    // once its last chunk is written (the tests run serially: no other map is mapped meanwhile)
    const mapped = () => readFileSync('/proc/self/maps', 'latin1').split('\n').filter((l) => l.includes('bpf-map')).length;
    // windows: the default (one for all), a chunk each (8), two chunks each (4)
    for (const [threads, window] of [[0, undefined], [2, undefined], [0, 100_000], [2, 100_000], [0, 150_000], [1, 150_000]] as const) {
      m.writeMmap(Buffer.alloc(slots * 4, 0xee));
      const base = mapped();
      const job = m.maglevFillStart(buf(src.h1), buf(src.h2), buf(src.ids), regions, threads, window);
      // without threads, the caller's steps take every chunk: the 8 runs of adjacent regions (each < 512 KiB)
      let steps = 0;
      const held: number[] = [mapped() - base];
      if (!threads) while (job.step()) { steps++; held.push(mapped() - base); }
      if (!threads) t.is(steps, 8);
      // the first window is mapped at the start; one is mapped while its chunks go on, none once
      // the last is done; two chunks a window: mapped, kept after its first chunk, released after its second
      if (!threads && window === 150_000) t.deepEqual(held, [1, 1, 0, 1, 0, 1, 0, 1, 0]);
      if (!threads && window === 100_000) t.deepEqual(held, [1, 0, 0, 0, 0, 0, 0, 0, 0]);
      if (!threads && window === undefined) t.deepEqual(held, [1, 1, 1, 1, 1, 1, 1, 1, 0]);
      job.wait();
      t.is(mapped(), base, 'no window left mapped');
      job.wait();
      t.false(job.step());
      const got = new Uint32Array(slots);
      m.scan((k, v) => { got[2 * k.readUInt32LE(0)] = v.readUInt32LE(0); got[2 * k.readUInt32LE(0) + 1] = v.readUInt32LE(4); });
      let differ = 0;
      for (let i = 0; i < slots; i++) if (got[i] !== want[i]) differ++;
      t.is(differ, 0, `slots that differ, ${threads} threads, window ${window ?? 'default'}`);
    }
    const bad = new Uint32Array(tables.flatMap((x) => [x.first, x.n, x.m, x.off, x.size]));
    bad[5 * 3 + 2] = 1600;
    t.throws(() => m.maglevFillStart(buf(src.h1), buf(src.h2), buf(src.ids), buf(bad), 2), { instanceOf: RangeError, message: /table 3 has a size M that is not prime/ });
    bad[5 * 3 + 2] = tables[3]!.m;
    bad[5 * 399 + 3] = slots;
    t.throws(() => m.maglevFillStart(buf(src.h1), buf(src.h2), buf(src.ids), buf(bad), 2), { instanceOf: RangeError, message: /table 399 ends past the end of the map/ });
    t.throws(() => m.maglevFillStart(buf(src.h1), buf(src.h2.subarray(1)), buf(src.ids), regions, 2), { instanceOf: RangeError });
  });

  test('a batch split over threads writes every entry; a full map stops it with the entries before processed written', (t) => {
    const n = 50_000;
    const keys = Buffer.alloc(n * 8), values = Buffer.alloc(n * 4);
    for (let i = 0; i < n; i++) { keys.writeUInt32LE(1 + (i >> 4), i * 8); keys.writeUInt32LE(i & 15, i * 8 + 4); values.writeUInt32LE(i + 7, i * 4); }
    const m = BpfMap.create({ type: MapType.HASH, name: 'kbp_t_spread', keySize: 8, valueSize: 4, maxEntries: n, flags: BPF_F_NO_PREALLOC });
    t.teardown(() => m.close());
    m.updateBatch(keys, values, n, BPF_ANY, 3);
    let right = 0;
    m.scan((k, v) => { if (v.readUInt32LE(0) === ((k.readUInt32LE(0) - 1) << 4 | k.readUInt32LE(4)) + 7) right++; });
    t.is(right, n);
    t.throws(() => m.updateBatch(keys, values, n, BPF_ANY, 0), { message: /threads of updateBatch on map kbp_t_spread must be an integer in 1\.\.64/ });
    const small = BpfMap.create({ type: MapType.HASH, name: 'kbp_t_spread2', keySize: 8, valueSize: 4, maxEntries: 40_000, flags: BPF_F_NO_PREALLOC });
    t.teardown(() => small.close());
    const e = t.throws(() => small.updateBatch(keys, values, n, BPF_ANY, 2), { instanceOf: BpfBatchError });
    t.true(e.processed < n);
    for (const i of [0, e.processed >> 1, e.processed - 1]) t.is(small.lookup(keys.subarray(i * 8, i * 8 + 8))?.readUInt32LE(0), i + 7);
  });

  test('pin and fromPin; open errors name the path', (t) => {
    const root = tempPinRoot(t);
    const m = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_t_pin', keySize: 4, valueSize: 8, maxEntries: 2 });
    m.update(u32(1), u64(42));
    m.pin(join(root, 'm'));
    m.close();
    const p = BpfMap.fromPin(join(root, 'm'));
    t.teardown(() => p.close());
    t.like(p, { name: 'kbp_t_pin', type: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 2 });
    t.deepEqual(p.lookup(u32(1)), u64(42));
    const e = t.throws(() => BpfMap.fromPin(join(root, 'nope')), { instanceOf: KbpError });
    t.is(e.message, `open pinned map ${join(root, 'nope')}: No such file or directory (errno 2)`);
    t.throws(() => p.pin(join(root, 'm')), { message: /^pin kbp_t_pin at .*: File exists \(errno 17\)$/ });
    t.throws(() => p.writeMmap(Buffer.alloc(8)), { message: 'writeMmap on map kbp_t_pin: only BPF_F_MMAPABLE arrays can be mapped' });
    p.close();
    t.throws(() => p.fd, { message: 'map kbp_t_pin is closed' });
  });

  test('object open, load with pinned maps, reuse of the pins by a second load', (t) => {
    const root = tempPinRoot(t);
    const path = fixtureObject('probe');
    const a = BpfObject.open(path, { pinRoot: root });
    t.throws(() => a.map('probe_count'), { message: /is not loaded/ });
    a.load();
    t.deepEqual(a.mapNames(), ['probe_count']);
    t.deepEqual(a.programNames().sort(), ['probe_connect4', 'probe_tc', 'probe_xdp']);
    t.true(existsSync(join(root, 'probe_count')));
    a.map('probe_count').update(u32(0), u64(77));
    const id = a.map('probe_count').id;
    const b = BpfObject.open(path, { pinRoot: root });
    b.load();
    t.is(b.map('probe_count').id, id, 'the second load reuses the pinned map');
    t.deepEqual(b.map('probe_count').lookup(u32(0)), u64(77));
    a.close();
    b.close();
    t.throws(() => b.map('probe_count'), { message: /is closed/ });
    const e = t.throws(() => BpfObject.open(join(root, 'missing.o')), { instanceOf: KbpError });
    t.regex(e.message, /missing\.o: no such file/);
    const c = BpfObject.open(path);
    c.load();
    t.throws(() => c.map('lb_frontends'), { message: /^map lb_frontends: not in .*probe\.bpf\.o \(maps: probe_count\)$/ });
    t.throws(() => c.program('nope'), { message: /^program nope: not in .*\(programs: / });
    c.close();
  });

  test('a verifier rejection carries the verifier log in the error', (t) => {
    const obj = BpfObject.open(fixtureObject('bad'));
    t.teardown(() => obj.close());
    const e = t.throws(() => obj.load(), { instanceOf: KbpError });
    t.is(e.code, 'KBP_ERR_BPF');
    t.regex(e.message, /^load .*bad\.bpf\.o: .*\(errno 13\)/);
    t.regex(e.message, /invalid (mem access|access to packet)|R\d+ invalid/, 'the verifier says why');
    t.regex(e.message, /bad_unchecked_read/);
  });

  test('loadAsync: the load runs on the thread pool, the object refuses other calls until it settles, a rejection carries the log', async (t) => {
    const root = tempPinRoot(t);
    const a = BpfObject.open(fixtureObject('probe'), { pinRoot: root });
    const p = a.loadAsync();
    t.throws(() => a.close(), { message: /objectClose: the object is being loaded/ });
    t.throws(() => a.mapNames(), { message: /objectMaps: the object is being loaded/ });
    await t.throwsAsync(() => a.loadAsync(), { message: /objectLoadAsync: the object is being loaded/ });
    await p;
    t.deepEqual(a.programNames().sort(), ['probe_connect4', 'probe_tc', 'probe_xdp']);
    a.map('probe_count').update(u32(0), u64(5));
    t.deepEqual(a.map('probe_count').lookup(u32(0)), u64(5));
    await t.throwsAsync(() => a.loadAsync(), { message: /already loaded/ });
    a.close();
    // the event loop turns while the verifier works through the data plane's object (a synchronous
    // load would settle before any setImmediate callback ran)
    const big = BpfObject.open(dataplaneObject());
    t.teardown(() => big.close());
    let turns = 0, settled = false;
    const spin = () => { if (!settled) { turns++; setImmediate(spin); } };
    setImmediate(spin);
    await big.loadAsync().finally(() => { settled = true; });
    t.true(turns > 0, `${turns} turns of the event loop during the load`);
    const bad = BpfObject.open(fixtureObject('bad'));
    t.teardown(() => bad.close());
    const e = await t.throwsAsync(() => bad.loadAsync(), { instanceOf: KbpError });
    t.regex(e.message, /^load .*bad\.bpf\.o: .*\(errno 13\)/);
    t.regex(e.message, /bad_unchecked_read/);
  });

  test('BPF_PROG_TEST_RUN: retval, output packet, repeat', (t) => {
    const obj = BpfObject.open(fixtureObject('probe'));
    t.teardown(() => obj.close());
    obj.load();
    const prog = obj.program('probe_tc');
    t.is(prog.name, 'probe_tc');
    t.is(prog.type, 3 /* SCHED_CLS */);
    const pkt = Buffer.alloc(64, 0x11);
    pkt.writeUInt16BE(0x0800, 12);
    const r = prog.testRun({ data: pkt, repeat: 10 });
    t.is(r.retval, 64);
    t.is(r.data.length, 64);
    t.is(r.data[0], 0xab);
    t.deepEqual(r.data.subarray(1), pkt.subarray(1));
    t.true(r.durationNs >= 0);
    t.is(obj.map('probe_count').lookup(u32(0))!.readBigUInt64LE(0), 10n, 'ran repeat times');
    t.throws(() => prog.testRun({ data: pkt, repeat: 0 }), { message: /repeat must be 1\.\.1e8/ });
    const e = t.throws(() => prog.testRun({ data: Buffer.alloc(2) }), { instanceOf: KbpError });
    t.regex(e.message, /^test_run probe_tc: .*\(errno 22\)$/);
  });

  test('cgroup attach with BPF_F_ALLOW_MULTI, replace, query, detach', (t) => {
    const cg = `${hostRoots().cgroup2}/kbp-test-${process.pid}`;
    mkdirSync(cg);
    t.teardown(() => { if (existsSync(cg)) rmdirSync(cg); });
    const a = BpfObject.open(fixtureObject('probe'));
    const b = BpfObject.open(fixtureObject('probe'));
    t.teardown(() => { a.close(); b.close(); });
    a.load();
    b.load();
    const pa = a.program('probe_connect4'), pb = b.program('probe_connect4');
    pa.attachCgroup(cg, 'connect4');
    pa.attachCgroup(cg, 'connect4'); // again: not an error
    t.deepEqual(cgroupPrograms(cg, 'connect4'), [pa.id]);
    pb.attachCgroup(cg, 'connect4', { replace: pa });
    t.deepEqual(cgroupPrograms(cg, 'connect4'), [pb.id], 'replaced in place, not added');
    t.false(pa.detachCgroup(cg, 'connect4'));
    t.true(pb.detachCgroup(cg, 'connect4'));
    t.deepEqual(cgroupPrograms(cg, 'connect4'), []);
    t.throws(() => pa.attachCgroup(cg, 'connect5'), { message: /unknown cgroup attach type "connect5"/ });
    t.throws(() => pa.attachCgroup('/nonexistent/cg', 'connect4'), { message: /cannot open cgroup \/nonexistent\/cg/ });
  });

  test('tc and XDP attach, replace, query and detach (directly and through the loader\'s records) on the loopback of a test network namespace', (t) => {
    const ns = `kbp-addon-${process.pid}`;
    execFileSync('ip', ['netns', 'add', ns]);
    t.teardown(() => execFileSync('ip', ['netns', 'del', ns]));
    const out = execFileSync('nsenter', [`--net=/var/run/netns/${ns}`, process.execPath, '--import=tsx', join(repoRoot, 'test/datapath/fixtures/attach-child.ts'), fixtureObject('probe')], { encoding: 'utf8', timeout: 60_000, cwd: repoRoot });
    const r = JSON.parse(out) as Record<string, unknown>;
    t.like(r, {
      ingressIsOurs: true, egressIsOurs: true, egressDefaultSlotEmpty: true, reattachIsOurs: true,
      detachIngress: true, detachIngressAgain: false, detachEgress: true, ingressAfter: null,
      xdpIsOurs: true, xdpDetach: true, xdpAfter: 0, xdpDetachAgain: false,
      recorded: ['tc:lo:probe_tc', 'xdp:lo:probe_xdp'], loaderDetached: [true, true], afterLoaderDetach: [null, 0], recordsLeft: 0,
    });
    t.regex(String(r.badIfindex), /^tc hook create ifindex 999999: .*\(errno 19\)$/);
  });
}
