// The LIST pages' decode in steps, each alone in a fresh store (MODES, default all): `scan` (json-prune's
// scan and the item's text, with what the scan decodes itself), `parse` (+ JSON.parse of each item),
// `slim` (+ slimObject), `store` (+ ObjectStore.upsert). N Services and N slices as an API server
// sends them (KINDS: one or both), pages of 500; main-thread CPU ms per step, one JSON line a round.
// TREE: the checkout whose src/ is measured (a tree before session 18 ignores the node's name).
//   KINDS=EndpointSlice node --expose-gc --max-semi-space-size=16 --import=tsx bench/first-parts.ts [N] [ROUNDS]
import { join } from 'node:path';
import { listPages } from './apiserver-objects.js';
const tree = process.env.TREE ?? join(import.meta.dirname, '..');
const n = Number(process.argv[2] ?? 10000);
const rounds = Number(process.argv[3] ?? 4);
const { scanList } = await import(`${tree}/src/source/json-prune.ts`);
const { slimObject } = await import(`${tree}/src/source/slim.ts`);
const { ObjectStore } = await import(`${tree}/src/source/types.ts`);
const shape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
const pages = listPages(shape, (process.env.KINDS ?? 'Service,EndpointSlice').split(',') as Array<'Service' | 'EndpointSlice'>);
const cpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const modes = (process.env.MODES ?? 'scan,text,parse,slim,store').split(',');
for (let r = 0; r < rounds; r++) {
  const res: Record<string, number> = {};
  for (const m of modes) {
    globalThis.gc?.();
    await new Promise((ok) => setTimeout(ok, 50));
    const store = new ObjectStore();
    const keep: unknown[] = [];
    const t0 = cpu();
    for (const { kind, buf } of pages) {
      scanList(kind, buf, buf.length, (text: string, plain: boolean, decoded?: unknown) => {
        if (m === 'scan') return;
        if (m === 'text') return;
        const o = JSON.parse(text);
        if (m === 'parse') { keep.push(o); return; }
        const s = slimObject(kind, o, 'node-a', true, plain, decoded);
        if (m === 'slim') { keep.push(s); return; }
        store.upsert(kind, s);
      }, 'node-a');
    }
    res[m] = Math.round(cpu() - t0);
  }
  console.log(JSON.stringify(res));
}
