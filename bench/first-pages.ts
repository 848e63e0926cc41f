// Compile while a first list arrives (Agent.start with the kube source), in process: N Services and
// N slices stored in pages of 500 (Services and slices interleaved, as two concurrent LISTs arrive),
// compiled every STEP pages by CompileAhead (the agent's), then the first sync's compile; against one
// compile of the whole store. CPU of each, rounds interleaved.
//   N=10000 STEP=2 ROUNDS=5 node --expose-gc --max-semi-space-size=16 --import=tsx bench/first-pages.ts
import { Compiler } from '../src/compile/compile.js';
import { ObjectStore } from '../src/source/types.js';
import { CompileAhead } from '../src/agent/compile-ahead.js';
import { snapshot, type ClusterShape } from './gen.js';

const N = Number(process.env.N ?? 10_000), STEP = Number(process.env.STEP ?? 2), ROUNDS = Number(process.env.ROUNDS ?? 5), PAGE = 500;
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
const snap = snapshot(shape);
const opts = { nodeName: 'node-a', nodeIPs: ['192.168.50.2'] };
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

function oneShot(): number {
  const s = new ObjectStore();
  for (const [, n] of snap.nodes) s.upsert('Node', n as never);
  for (const [, o] of snap.services) s.upsert('Service', o as never);
  for (const [, o] of snap.endpointSlices) s.upsert('EndpointSlice', o as never);
  const c0 = cpu();
  new Compiler(opts).compile(s.view());
  return cpu() - c0;
}

function paged(): { ms: number; lastMs: number; steps: number } {
  const s = new ObjectStore();
  const c = new Compiler(opts);
  const ahead = new CompileAhead(s, c);
  s.onChange((kind, key) => ahead.note(kind, key));
  let ms = 0;
  const step = () => {
    const c0 = cpu();
    ahead.step(true);
    ms += cpu() - c0;
  };
  for (const [, n] of snap.nodes) s.upsert('Node', n as never);
  const svcs = [...snap.services.values()], slices = [...snap.endpointSlices.values()];
  let page = 0;
  for (let i = 0; i < Math.max(svcs.length, slices.length); i += PAGE) {
    for (const o of svcs.slice(i, i + PAGE)) s.upsert('Service', o as never);
    if (++page % STEP === 0) step();
    for (const o of slices.slice(i, i + PAGE)) s.upsert('EndpointSlice', o as never);
    if (++page % STEP === 0) step();
  }
  const c0 = cpu();
  c.compile(s.view(), ahead.take());
  const lastMs = cpu() - c0;
  return { ms: ms + lastMs, lastMs, steps: ahead.steps };
}

if (process.env.ONLY === 'paged') {
  for (let r = 0; r < ROUNDS; r++) console.log(JSON.stringify(paged()));
  process.exit(0);
}
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
for (let r = 0; r < ROUNDS; r++) {
  // the order alternates by round; each starts after a full GC of the last one's garbage
  gc();
  const a0 = r % 2 ? undefined : oneShot();
  gc();
  const b = paged();
  gc();
  const a = a0 ?? oneShot();
  console.log(JSON.stringify({ round: r + 1, N, step: STEP, oneShotMs: Math.round(a), pagedMs: Math.round(b.ms), lastMs: Math.round(b.lastMs), steps: b.steps, ratio: +(b.ms / a).toFixed(2) }));
}
