// util/release.ts releaseArray (the map writer's batches, the plan's dead arrays): a buffer given back at once (its
// ArrayBuffer detached), and only one that owns the whole of its memory: never node's pool, a slice or a view of a larger array.
import test from 'ava';
import { releaseArray } from '../../src/util/release.js';

test('a buffer that is its whole ArrayBuffer is detached: its memory is freed, its length 0', (t) => {
  const b = Buffer.alloc(1 << 20, 7);
  const ab = b.buffer;
  t.true(releaseArray(b));
  t.true(ab.detached);
  t.is(b.length, 0);
  // twice: nothing more to do
  t.false(releaseArray(b));
  // a Uint32Array's bytes (u32Bytes) are the same ArrayBuffer
  const w = new Uint32Array(1 << 16);
  const v = Buffer.from(w.buffer, w.byteOffset, w.byteLength);
  t.true(releaseArray(v));
  t.is(w.length, 0);
});

test('a slice, a view of part of an array, node\'s pool and a small buffer are left to the GC', (t) => {
  const big = Buffer.alloc(1 << 20, 1);
  const slice = big.subarray(0, 1 << 19);
  t.false(releaseArray(slice));
  t.false(big.buffer.detached);
  t.is(big[0], 1);
  const w = new Uint32Array(1 << 18);
  const part = Buffer.from(w.buffer, 0, w.byteLength / 2);
  t.false(releaseArray(part));
  t.is(w.length, 1 << 18);
  // allocUnsafe of a small size comes from node's shared 8 KiB pool: other Buffers live in it
  const pooled = Buffer.allocUnsafe(100), neighbour = Buffer.allocUnsafe(100);
  neighbour.fill(3);
  t.false(releaseArray(pooled));
  t.is(neighbour[99], 3);
  // below 64 KiB: a change's batch, not worth a detach
  t.false(releaseArray(Buffer.alloc(64 * 1024 - 1)));
  t.true(releaseArray(Buffer.alloc(64 * 1024)));
  // a SharedArrayBuffer cannot be detached
  t.false(releaseArray(Buffer.from(new SharedArrayBuffer(1 << 20))));
});
