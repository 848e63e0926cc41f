// A large LIST's pages from bytes to the store, in process, without a server: `here` (json-prune's
// scan, each item's JSON.parse, slimObject and the store on the main thread, as before session 23)
// against `there` (the scan on the decode thread, list-decode.ts, two pages in flight as the list's
// ahead request allows; the rest here). Rounds interleaved, order alternating; per round: wall,
// main-thread CPU, process CPU (the decode thread's included) in ms. The decode thread is started and
// ready before the first round (its start is not in the figures).
//   N=100000 ROUNDS=4 node --expose-gc --import=tsx bench/list-decode-ab.ts
import { readFileSync } from 'node:fs';
import { listPages } from './apiserver-objects.js';
import { scanList } from '../src/source/json-prune.js';
import { acquireDecoder, releaseDecoder, type Decoded } from '../src/source/list-decode.js';
import { slimObject } from '../src/source/slim.js';
import { ObjectStore } from '../src/source/types.js';

const n = Number(process.env.N ?? 10000), rounds = Number(process.env.ROUNDS ?? 4);
const pages = listPages({ services: n, endpointsPerService: 10, nodePortEvery: 10 });
const main = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const proc = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const dec = acquireDecoder()!;
while (!dec.usable) await new Promise((r) => setTimeout(r, 10));

async function run(way: 'here' | 'there') {
  const store = new ObjectStore();
  // (the pages copied: the decode thread takes the buffers it is given)
  const bufs = pages.map((p) => Buffer.from(p.buf));
  globalThis.gc?.();
  const m0 = main(), p0 = proc(), t0 = performance.now();
  const take = (kind: 'Service' | 'EndpointSlice') => (text: string, plain: boolean, decoded?: unknown) => {
    store.upsert(kind, slimObject(kind, JSON.parse(text) as never, 'node-a', true, plain, decoded as never));
  };
  if (way === 'here') {
    for (let i = 0; i < pages.length; i++) {
      if (scanList(pages[i]!.kind, bufs[i]!, bufs[i]!.length, take(pages[i]!.kind), 'node-a') === undefined) throw new Error('refused');
    }
  } else {
    const inflight: Promise<Decoded>[] = [];
    const send = (i: number) => { if (i < pages.length) inflight[i] = dec.decode('x', pages[i]!.kind, bufs[i]!, bufs[i]!.length, 'node-a'); };
    send(0);
    send(1);
    for (let i = 0; i < pages.length; i++) {
      const d = await inflight[i]!;
      send(i + 2);
      d.items(take(pages[i]!.kind));
      JSON.parse(d.env!);
    }
  }
  return { wallMs: Math.round(performance.now() - t0), mainMs: Math.round(main() - m0), procMs: Math.round(proc() - p0), objects: store.size('Service') + store.size('EndpointSlice') };
}

const ratios: Record<string, number[]> = { wall: [], main: [], proc: [] };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? ['there', 'here'] as const : ['here', 'there'] as const;
  const res: Record<string, Awaited<ReturnType<typeof run>>> = {};
  for (const w of order) res[w] = await run(w);
  ratios.wall!.push(res.there!.wallMs / res.here!.wallMs);
  ratios.main!.push(res.there!.mainMs / res.here!.mainMs);
  ratios.proc!.push(res.there!.procMs / res.here!.procMs);
  console.log(JSON.stringify({ round: r + 1, first: order[0], here: res.here, there: res.there, load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] }));
}
const mmm = (a: number[]) => { a.sort((x, y) => x - y); return [a[0], a[a.length >> 1], a.at(-1)].map((x) => +x!.toFixed(2)); };
console.log(JSON.stringify({ n, rounds, thereToHere: { wall: mmm(ratios.wall!), main: mmm(ratios.main!), proc: mmm(ratios.proc!) } }));
releaseDecoder(dec);
