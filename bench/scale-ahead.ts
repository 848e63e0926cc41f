// Compile while a first list arrives (CompileAhead) at the 100,000-Service row's size, in process:
// N Services and N slices as the kube source stores them (LIST pages of 500 parsed from JSON and
// slimmed, the two lists' pages interleaved), a step every N/500*2/STEPS pages, then the first sync's
// compile (take()); against one compile of the whole store. Per step: CPU ms and the keys it brought,
// to show whether a step costs what its pages cost or what the store holds.
//   N=100000 STEPS=12 ROUNDS=2 node --expose-gc --max-semi-space-size=16 --import=tsx bench/scale-ahead.ts
// BASE=DIR (a checkout with node_modules, e.g. /tmp/p14/basetree): that tree's CompileAhead, Compiler
// and ObjectStore run the same pages too, rounds interleaved (order alternating); one JSON line per
// tree and round.
import { slimObject } from '../src/source/slim.js';
import type { Kind } from '../src/source/types.js';
import { apiNode, apiService, apiSlice } from './apiserver-objects.js';
import { NODE_IP, NODE_NAME, type ClusterShape } from './gen.js';

const N = Number(process.env.N ?? 10_000), STEPS = Number(process.env.STEPS ?? 12), ROUNDS = Number(process.env.ROUNDS ?? 2);
const PAGE = 500;
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const cpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

interface Tree {
  name: string;
  Compiler: new (o: object) => { compile(s: unknown, h?: unknown): unknown };
  CompileAhead: new (s: unknown, c: unknown) => { note(k: Kind, key: string): void; step(p: boolean): number; take(): unknown };
  ObjectStore: new () => { upsert(k: Kind, o: unknown): void; view(): unknown; onChange(l: (k: Kind, key: string) => void): unknown };
}
async function tree(name: string, root: string): Promise<Tree> {
  const [c, a, t] = await Promise.all([import(`${root}/src/compile/compile.ts`), import(`${root}/src/agent/compile-ahead.ts`), import(`${root}/src/source/types.ts`)]);
  return { name, Compiler: c.Compiler, CompileAhead: a.CompileAhead, ObjectStore: t.ObjectStore };
}
const trees = [await tree('this', new URL('..', import.meta.url).pathname.replace(/\/$/, ''))];
if (process.env.BASE) trees.push(await tree('base', process.env.BASE));

// the pages, slimmed once as the kube source slims them (stored objects are never changed: shared by every run)
const pages: { kind: Kind; objs: unknown[] }[] = [];
{
  const slim = (kind: Kind, make: (i: number) => unknown, p: number) =>
    (JSON.parse(JSON.stringify(Array.from({ length: Math.min(PAGE, N - p) }, (_, j) => make(p + j)))) as never[])
      .map((o) => slimObject(kind, o, NODE_NAME, true));
  for (let p = 0; p < N; p += PAGE) {
    pages.push({ kind: 'Service', objs: slim('Service', (i) => apiService(i, shape), p) });
    pages.push({ kind: 'EndpointSlice', objs: slim('EndpointSlice', (i) => apiSlice(i, shape), p) });
  }
}
const nodeObj = slimObject('Node', JSON.parse(JSON.stringify(apiNode())) as never, undefined, true);
const every = Math.max(1, Math.round(pages.length / STEPS));
const opts = { nodeName: NODE_NAME, nodeIPs: [NODE_IP] };

function paged(t: Tree): Record<string, unknown> {
  const s = new t.ObjectStore();
  const c = new t.Compiler(opts);
  const ahead = new t.CompileAhead(s, c);
  let brought = 0;
  s.onChange((kind, key) => { brought++; ahead.note(kind, key); });
  s.upsert('Node', nodeObj);
  const stepMs: number[] = [], stepKeys: number[] = [];
  pages.forEach((p, i) => {
    for (const o of p.objs) s.upsert(p.kind, o);
    if ((i + 1) % every || i === pages.length - 1) return;
    const c0 = cpu();
    ahead.step(true);
    stepMs.push(Math.round(cpu() - c0));
    stepKeys.push(brought);
    brought = 0;
  });
  const c0 = cpu();
  c.compile(s.view(), ahead.take());
  const lastMs = cpu() - c0;
  const c1 = cpu();
  new t.Compiler(opts).compile(s.view());
  const oneShotMs = cpu() - c1;
  const aheadMs = stepMs.reduce((a, b) => a + b, 0);
  return { tree: t.name, N, steps: stepMs.length, aheadMs: Math.round(aheadMs), lastMs: Math.round(lastMs), oneShotMs: Math.round(oneShotMs),
    ratio: +((aheadMs + lastMs) / oneShotMs).toFixed(2), stepMs: stepMs.join(' '), stepKeys: stepKeys.join(' ') };
}

for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 ? [...trees].reverse() : trees;
  for (const t of order) {
    gc();
    console.log(JSON.stringify({ round: r + 1, ...paged(t) }));
  }
}
