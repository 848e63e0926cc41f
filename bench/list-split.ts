// Where a first list's main-thread CPU goes, page by page, in process (no server): the pruning scan
// alone (onItem does nothing), with each item's JSON.parse, with slimObject, with the store's upsert.
// N Services and N slices of 10 endpoints as bench/apiserver-objects.ts dresses them. Rounds of each
// way interleaved; one JSON line per round (main-thread CPU per way, ms).
//   N=100000 ROUNDS=2 node --expose-gc --import=tsx bench/list-split.ts
import { listPages } from './apiserver-objects.js';
import { scanList } from '../src/source/json-prune.js';
import { slimObject } from '../src/source/slim.js';
import { ObjectStore } from '../src/source/types.js';

const n = Number(process.env.N ?? 10000), rounds = Number(process.env.ROUNDS ?? 2);
const pages = listPages({ services: n, endpointsPerService: 10, nodePortEvery: 10 });
const bytes = pages.reduce((s, p) => s + p.buf.length, 0);
const cpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
type Way = 'scan' | 'parse' | 'slim' | 'store';
function run(way: Way): number {
  const store = new ObjectStore();
  let keep: unknown[] = [];
  const t0 = cpu();
  for (const { kind, buf } of pages) {
    scanList(kind, buf, buf.length, (text, plain, decoded) => {
      if (way === 'scan') return;
      const o = JSON.parse(text);
      if (way === 'parse') { keep.push(o); return; }
      const s = slimObject(kind, o, 'node-a', true, plain, decoded);
      if (way === 'slim') { keep.push(s); return; }
      store.upsert(kind, s);
    }, 'node-a');
  }
  const ms = cpu() - t0;
  keep = [];
  return Math.round(ms);
}
console.log(JSON.stringify({ n, pages: pages.length, MiB: +(bytes / 2 ** 20).toFixed(1) }));
for (let r = 0; r < rounds; r++) {
  const res: Record<string, number> = {};
  for (const way of ['scan', 'parse', 'slim', 'store'] as Way[]) {
    globalThis.gc?.();
    res[way] = run(way);
  }
  console.log(JSON.stringify({ round: r + 1, ...res, load: (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ')[0] }));
}
