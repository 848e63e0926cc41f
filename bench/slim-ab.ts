// The kube source's slimming (src/source/slim.ts) against the JSON round trip it replaced
// (testing/slim-json.ts), in one process, interleaved round by round (the order alternates): N Services
// and N EndpointSlices of 10 as the API server's LIST pages of 500, parsed from JSON outside the
// measurement. Per variant and round: CPU of slimming every object, the heap the slimmed objects retain
// after the pages are dropped, and whether every page was collected (a WeakRef per page).
// `N=10000 ROUNDS=5 node --expose-gc --import=tsx bench/slim-ab.ts`
import { slimObject } from '../src/source/slim.js';
import type { Kind, KindMap } from '../src/source/types.js';
import { slimObjectJson } from '../testing/slim-json.js';
import { apiService, apiSlice } from './apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from './gen.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const N = Number(process.env.N ?? 10000), ROUNDS = Number(process.env.ROUNDS ?? 5);
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
// the pages' text, made once: each round parses it afresh, as a LIST would arrive
const texts: [Kind, string][] = [];
for (const [kind, make] of [['Service', (i: number) => apiService(i, shape)], ['EndpointSlice', (i: number) => apiSlice(i, shape)]] as const) {
  for (let p = 0; p < N; p += 500) texts.push([kind, JSON.stringify({ items: Array.from({ length: Math.min(500, N - p) }, (_, j) => make(p + j)) })]);
}
type Slim = (kind: Kind, obj: KindMap[Kind], nodeName?: string, parsedJson?: boolean) => KindMap[Kind];
const variants: [string, Slim][] = [['json round trip', slimObjectJson as Slim], ['direct copy', slimObject as Slim]];
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const settle = () => { for (let i = 0; i < 3; i++) gc!(); return process.memoryUsage().heapUsed; };

async function round(slim: Slim): Promise<{ ms: number; retainedMiB: number; pagesAlive: number }> {
  const kept: unknown[] = [];
  const refs: WeakRef<object>[] = [];
  let ms = 0;
  const h0 = settle();
  for (const [kind, text] of texts) {
    const page = JSON.parse(text) as { items: KindMap[Kind][] };
    refs.push(new WeakRef(page));
    const c0 = cpu();
    for (const o of page.items) kept.push(slim(kind, o, NODE_NAME, true)); // as kube.ts calls it
    ms += cpu() - c0;
  }
  await new Promise((r) => setImmediate(r)); // a WeakRef keeps its target alive until the job ends
  const h1 = settle();
  const pagesAlive = refs.filter((r) => r.deref() !== undefined).length;
  if (kept.length !== 2 * N) throw new Error('lost objects');
  return { ms, retainedMiB: (h1 - h0) / 2 ** 20, pagesAlive };
}

const res = new Map<string, { ms: number; retainedMiB: number; pagesAlive: number }[]>(variants.map(([k]) => [k, []]));
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 ? [...variants].reverse() : variants;
  for (const [k, f] of order) res.get(k)!.push(await round(f));
  process.stderr.write(`round ${r + 1}/${ROUNDS}\n`);
}
const stats = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return `${s[0]!.toFixed(2)}/${s[s.length >> 1]!.toFixed(2)}/${s[s.length - 1]!.toFixed(2)}`; };
console.log(`slimObject, ${N} Services + ${N} EndpointSlices x 10 as LIST pages of 500, ${ROUNDS} interleaved rounds (min/median/max)`);
for (const [k, rs] of res) {
  console.log(`${k.padEnd(16)} CPU ms ${stats(rs.map((x) => x.ms))}  us/object ${stats(rs.map((x) => (x.ms * 1000) / (2 * N)))}  retained MiB ${stats(rs.map((x) => x.retainedMiB))}  pages alive max ${Math.max(...rs.map((x) => x.pagesAlive))} of ${texts.length}`);
}
const [a, b] = [...res.values()];
console.log(`ratio json/direct, CPU per round: ${stats(a!.map((x, i) => x.ms / b![i]!.ms))}`);
