// A LIST's pages from bytes to the store as the kube source reads them (json-prune.ts's scan, each
// item's text parsed and slimmed, into an ObjectStore), this tree against another checkout (BASE), in
// one process, interleaved with the order alternating per round: per kind, the main thread's CPU
// (GC included); bench/first-list.ts reads the heap a list leaves. N Services and N slices of 10
// endpoints dressed as an API server sends them (apiserver-objects.ts), pages of 500. A tree before
// session 18 ignores the node's name and calls back without `decoded`.
//   BASE=/tmp/p18/basetree node --expose-gc --max-semi-space-size=16 --import=tsx bench/first-decode-ab.ts [N] [ROUNDS]
import { AbResults, importTrees, threadMs } from './ab.js';
import { listPages } from './apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from './gen.js';

const n = Number(process.argv[2] ?? 10000);
const rounds = Number(process.argv[3] ?? 8);
const base = process.env.BASE;
if (!base) throw new Error('BASE=/path/to/another/checkout');
const trees = await importTrees(base, async (im) => ({
  scanList: (await im('source/json-prune.ts')).scanList,
  slimObject: (await im('source/slim.ts')).slimObject,
  ObjectStore: (await im('source/types.ts')).ObjectStore,
}));
const shape: ClusterShape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
type Kind = 'Service' | 'EndpointSlice';
const pages: { kind: Kind; buf: Buffer }[] = listPages(shape);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const res = new AbResults();
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [...trees].reverse() : trees;
  for (const t of order) {
    gc();
    await new Promise((ok) => setTimeout(ok, 50));
    const store = new t.ObjectStore();
    for (const kind of ['Service', 'EndpointSlice'] as const) {
      const m = threadMs();
      for (const p of pages) {
        if (p.kind !== kind) continue;
        const env = t.scanList(kind, p.buf, p.buf.length, (text: string, plain: boolean, decoded?: unknown) => {
          store.upsert(kind, t.slimObject(kind, JSON.parse(text), NODE_NAME, true, plain, decoded));
        }, NODE_NAME);
        if (env === undefined) throw new Error('the scan refused a page');
        JSON.parse(env);
      }
      res.put(t.name, `${kind}Main`, threadMs() - m);
    }
    if (store.size('EndpointSlice') !== n) throw new Error('not every slice stored');
  }
}
res.print({ n, rounds });
