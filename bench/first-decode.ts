// A LIST's pages from bytes to the store, as the kube source reads them, two ways in one process,
// interleaved (order alternating per round): `whole`, the answer decoded and JSON.parse'd whole and
// each item slimmed (main before session 17), and `pruned`, json-prune.ts's scan and an item at a time
// (kube-http.ts parsePage). N Services and N slices of 10 endpoints dressed as an API server sends
// them (apiserver-objects.ts), in pages of 500 as the stub serves them. One JSON line per round:
// main-thread CPU of each way (GC included); then min / median / max of the ratios. The
// store of each way is dropped before the next. TREE: the checkout whose src/ is measured.
//   node --expose-gc --import=tsx bench/first-decode.ts [N] [ROUNDS]
import { join } from 'node:path';
import { listPages } from './apiserver-objects.js';
import type { ClusterShape } from './gen.js';

const tree = process.env.TREE ?? join(import.meta.dirname, '..');
const n = Number(process.argv[2] ?? 10000);
const rounds = Number(process.argv[3] ?? 8);
const { scanList } = await import(`${tree}/src/source/json-prune.ts`);
const { slimObject } = await import(`${tree}/src/source/slim.ts`);
const { ObjectStore } = await import(`${tree}/src/source/types.ts`);
const shape: ClusterShape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
type Kind = 'Service' | 'EndpointSlice';

const pages: { kind: Kind; buf: Buffer }[] = listPages(shape);

const cpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };

function run(way: 'whole' | 'pruned'): { cpuMs: number; objects: number } {
  const store = new ObjectStore();
  const t0 = cpu();
  for (const { kind, buf } of pages) {
    if (way === 'whole') {
      const list = JSON.parse(buf.toString('utf8', 0, buf.length)) as { items: unknown[] };
      for (const o of list.items) store.upsert(kind, slimObject(kind, o as never, 'node-a', true));
    } else {
      // (a tree before session 18 calls back without `decoded` and ignores the node's name)
      const env = scanList(kind, buf, buf.length, (text: string, plain: boolean, decoded?: unknown) => {
        store.upsert(kind, slimObject(kind, JSON.parse(text) as never, 'node-a', true, plain, decoded));
      }, 'node-a');
      if (env === undefined) throw new Error('the scan refused a page');
      JSON.parse(env);
    }
  }
  const cpuMs = cpu() - t0;
  return { cpuMs: Math.round(cpuMs), objects: store.size('Service') + store.size('EndpointSlice') };
}

const ratios: number[] = [];
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? ['pruned', 'whole'] as const : ['whole', 'pruned'] as const;
  const res: Record<string, ReturnType<typeof run>> = {};
  for (const way of order) {
    globalThis.gc?.();
    await new Promise((ok) => setTimeout(ok, 50));
    res[way] = run(way);
  }
  ratios.push(res.pruned!.cpuMs / res.whole!.cpuMs);
  console.log(JSON.stringify({ round: r + 1, first: order[0], whole: res.whole, pruned: res.pruned }));
}
ratios.sort((a, b) => a - b);
console.log(JSON.stringify({ n, rounds, ratioPrunedToWhole: { min: +ratios[0]!.toFixed(2), median: +ratios[ratios.length >> 1]!.toFixed(2), max: +ratios.at(-1)!.toFixed(2) } }));
