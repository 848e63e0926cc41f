// What client-node's ListWatch does at a list's end when it is handed the list's items (as the kube
// source did before session 24): its cache built from them (deleteItems' cacheMapFromList, then one
// insert and one 'add' callback per item, the callback finding the object stored already, as
// KindWatcher's did), against handed none (the kube source now: the store is the one index). In
// process, N slimmed Services in a store, rounds alternating; per round the main-thread CPU from
// ListWatch's start to its watch request, and the heap kept after a full GC.
//   N=100000 ROUNDS=4 node --expose-gc --import=tsx bench/list-informer-cache.ts
import { readFileSync } from 'node:fs';
import { KubeConfig, ListWatch, Watch } from '@kubernetes/client-node';
import { slimObject } from '../src/source/slim.js';
import { ObjectStore, objectKey } from '../src/source/types.js';
import { apiService } from './apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from './gen.js';

const n = Number(process.env.N ?? 100_000), rounds = Number(process.env.ROUNDS ?? 4);
const shape: ClusterShape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const store = new ObjectStore();
const items = Array.from({ length: n }, (_, i) => slimObject('Service', JSON.parse(JSON.stringify(apiService(i, shape))) as never, NODE_NAME, true));
for (const o of items) store.upsert('Service', o);
const main = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };

/** a Watch that asks nothing: resolves at once (the list's end is what is timed) */
class NoWatch extends Watch {
  onWatch: () => void = () => {};
  override async watch(): Promise<AbortController> {
    this.onWatch();
    return new AbortController();
  }
}

async function run(handItems: boolean): Promise<{ mainMs: number; heapMiB: number }> {
  const w = new NoWatch(new KubeConfig());
  let m0 = 0, m1 = 0;
  const watched = new Promise<void>((r) => { w.onWatch = () => { m1 = main(); r(); }; });
  const lw = new ListWatch('/api/v1/services', w, async () => ({ metadata: { resourceVersion: '1' }, items: handItems ? items : [] }), false);
  lw.on('add', (o) => {
    const cur = store.get('Service', objectKey(o));
    if (cur && cur.metadata?.resourceVersion === o.metadata?.resourceVersion) return;
    store.upsert('Service', o);
  });
  gc!();
  m0 = main();
  await lw.start();
  await watched;
  gc!();
  const heapMiB = +(process.memoryUsage().heapUsed / 2 ** 20).toFixed(1);
  await lw.stop();
  return { mainMs: Math.round(m1 - m0), heapMiB };
}

for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [false, true] : [true, false];
  const res: Record<string, unknown> = {};
  for (const h of order) res[h ? 'items' : 'none'] = await run(h);
  console.log(JSON.stringify({ round: r + 1, n, ...res, load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] }));
}
