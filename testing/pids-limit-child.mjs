// Joins the pids cgroup named by argv[2] and caps it at the threads this process has, so that no
// thread can start, then runs the addons' threaded paths (test/datapath/addon-threads.test.ts):
// the Maglev fill over 4 threads, the fill job over 3, a hash batch split over 4. Prints one JSON line.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [cg, root] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const maglev = require(join(root, 'native/build/Release/kbp_maglev.node'));
const native = require(join(root, 'native/build/Release/kbp_native.node'));

writeFileSync(join(cg, 'cgroup.procs'), String(process.pid));
const threads = Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
writeFileSync(join(cg, 'pids.max'), String(threads));

// 32 tables of M 16381 (>= 2^18 slots in all: the fill splits over threads), 4 members each
const T = 32, M = 16381, N = 4;
const h1 = new Uint32Array(T * N), h2 = new Uint32Array(T * N), ids = new Uint32Array(T * N);
for (let i = 0; i < T * N; i++) { h1[i] = Math.imul(i + 1, 2654435761) >>> 0; h2[i] = (Math.imul(i + 7, 40503) >>> 0) % M || 1; ids[i] = i + 1; }
const tables = new Uint32Array(T * 4);
for (let t = 0; t < T; t++) tables.set([t * N, N, M, t * M], t * 4);
const one = new Uint32Array(T * M), four = new Uint32Array(T * M);
maglev.fill(h1, h2, ids, tables, one, 1);
maglev.fill(h1, h2, ids, tables, four, 4);
const fillSame = Buffer.compare(Buffer.from(one.buffer), Buffer.from(four.buffer)) === 0;

// the fill job into an mmapable array of u32 slots, two to an 8-byte value (lb_maglev_slots' layout):
// regions of 16384 slots
const REGION = 16384;
const fd = native.mapCreate(2, 'kbp_pids_slots', 4, 8, T * REGION / 2, 1 << 10, -1);
const regions = new Uint32Array(T * 5);
for (let t = 0; t < T; t++) regions.set([t * N, N, M, t * REGION, REGION], t * 5);
const b = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const job = native.mapMaglevFillStart(fd, b(h1), b(h2), b(ids), b(regions), 3);
let jobSame = typeof job === 'object';
if (jobSame) {
  native.mapMaglevFillWait(job);
  const key = Buffer.alloc(4), val = Buffer.alloc(8);
  for (const [t, s] of [[0, 0], [5, 77], [17, 4000], [31, M - 1]]) {
    const k = t * REGION + s;
    key.writeUInt32LE(k >>> 1);
    native.mapLookup(fd, key, val, 0);
    if (val.readUInt32LE((k & 1) * 4) !== one[t * M + s]) jobSame = false;
  }
}

// a hash batch of 40,000 entries split over 4 threads
const n = 40000;
const hfd = native.mapCreate(1, 'kbp_pids_hash', 8, 8, n, 0, -1);
const keys = Buffer.alloc(8 * n), values = Buffer.alloc(8 * n);
for (let i = 0; i < n; i++) { keys.writeUInt32LE(i + 1, 8 * i); values.writeUInt32LE(i, 8 * i); }
const [ret, processed] = native.mapUpdateBatch(hfd, keys, values, n, 0, 4);
console.log(JSON.stringify({ threads, fillSame, jobSame, batch: { ret, processed } }));
