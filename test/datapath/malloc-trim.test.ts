// The addon's mallocTrim (glibc malloc_trim(0)), which the agent calls after large frees
// (src/util/heap-trim.ts): ArrayBuffers freed between live ones leave holes in malloc's heap that
// only a trim gives back to the kernel.
import test from 'ava';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { native } from '../../src/dataplane/bpf/native/addon.js';

test('mallocTrim returns freed ArrayBuffer memory (holes between live buffers) to the kernel', (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // 64 MiB of 16 KiB buffers (below glibc's mmap threshold: from the heap), every 8th kept
  let bufs: (ArrayBuffer | undefined)[] = Array.from({ length: 4096 }, () => new ArrayBuffer(16384));
  for (const b of bufs) new Uint8Array(b!).fill(1);
  const kept = bufs.filter((_, i) => i % 8 === 0);
  bufs = [];
  gc();
  gc();
  const before = process.memoryUsage.rss();
  t.true(native().mallocTrim(), 'malloc_trim released nothing');
  const released = before - process.memoryUsage.rss();
  // 56 MiB were freed in holes; at least half of it leaves the process
  t.true(released >= 28 * 2 ** 20, `RSS fell by ${(released / 2 ** 20).toFixed(1)} MiB`);
  t.is(kept.length, 512);
});
