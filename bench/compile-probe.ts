// The first compile of a big store, two trees interleaved in one process, main-thread CPU per round:
// a one-shot compile into an empty Compiler (MODE=oneshot), or the agent's compiles while a first list
// arrives (MODE=paged: CompileAhead steps every N/500*2/STEPS pages, as bench/scale-ahead.ts, then the
// first sync's compile). Each tree is bundled with esbuild with its own ObjectStore and slimObject, so
// the store's slices are packed as that tree's normalize reads them (compile-ab.ts slims them with
// tsx's copy of slim.ts: another module's PACKED symbol, so its normalize reads every endpoint through
// the getter's objects, which the agent never does).
//   N=100000 ROUNDS=4 BASE=/tmp/p25/basetree node --expose-gc --max-semi-space-size=16 --import=tsx bench/compile-probe.ts
// PROF=DIR writes a CPU profile per tree and round (sampling every 250 us); line numbers are the bundle's
// (DIR/<tree>.mjs). DIGEST=1: a hash of each result's frontends (every field, in order) and problems,
// which must be the same for both trees and both modes. One JSON line per tree and round; the last line the ratios (this / base).
import { createHash } from 'node:crypto';
import { build } from 'esbuild';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { NODE_IP, NODE_NAME, type ClusterShape } from './gen.js';

const N = Number(process.env.N ?? 10_000), ROUNDS = Number(process.env.ROUNDS ?? 4), STEPS = Number(process.env.STEPS ?? 12);
const MODE = process.env.MODE ?? 'oneshot';
const PROF = process.env.PROF;
const DIGEST = process.env.DIGEST === '1';
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
if (MODE !== 'oneshot' && MODE !== 'paged') throw new Error(`MODE=${MODE}: oneshot or paged`);

type Kind = 'Service' | 'EndpointSlice' | 'Node';
interface Tree {
  name: string;
  Compiler: new (o: object) => { compile(s: unknown, h?: unknown): { state: { frontends: unknown[] } } };
  CompileAhead: new (s: unknown, c: unknown) => { note(k: Kind, key: string): void; step(p: boolean): number; take(): unknown };
  ObjectStore: new () => { upsert(k: Kind, o: unknown): void; view(): unknown; onChange(l: (k: Kind, key: string) => void): unknown };
  slimObject: (k: Kind, o: unknown, node?: string, parsed?: boolean) => unknown;
}
const dir = PROF ?? mkdtempSync(join(tmpdir(), 'kbp-compile-probe-'));
mkdirSync(dir, { recursive: true });
async function load(name: string, root: string): Promise<Tree> {
  const entry = join(dir, `${name}-entry.ts`);
  const q = (p: string) => JSON.stringify(join(root, p));
  writeFileSync(entry, `export { Compiler } from ${q('src/compile/compile.ts')};\nexport { CompileAhead } from ${q('src/agent/compile-ahead.ts')};\n`
    + `export { ObjectStore } from ${q('src/source/types.ts')};\nexport { slimObject } from ${q('src/source/slim.ts')};\n`);
  const outfile = join(dir, `${name}.mjs`);
  await build({ entryPoints: [entry], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node24', logLevel: 'warning', packages: 'external' });
  return { name, ...(await import(pathToFileURL(outfile).href)) } as Tree;
}
const { apiNode, apiService, apiSlice } = await import('./apiserver-objects.js');
const trees = [await load('this', resolve(fileURLToPath(new URL('..', import.meta.url))))];
if (process.env.BASE) trees.push(await load('base', resolve(process.env.BASE)));

// the LIST pages as JSON text (500 a page, the two kinds interleaved), parsed and slimmed by each tree
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
const texts: { kind: Kind; text: string }[] = [];
for (let p = 0; p < N; p += 500) {
  const n = Math.min(500, N - p);
  texts.push({ kind: 'Service', text: JSON.stringify(Array.from({ length: n }, (_, j) => apiService(p + j, shape))) });
  texts.push({ kind: 'EndpointSlice', text: JSON.stringify(Array.from({ length: n }, (_, j) => apiSlice(p + j, shape))) });
}
const nodeText = JSON.stringify(apiNode());
const pages = new Map<Tree, { kind: Kind; objs: unknown[] }[]>();
for (const t of trees) pages.set(t, texts.map(({ kind, text }) => ({ kind, objs: (JSON.parse(text) as unknown[]).map((o) => t.slimObject(kind, o, NODE_NAME, true)) })));
texts.length = 0;
const opts = { nodeName: NODE_NAME, nodeIPs: [NODE_IP] };
const every = Math.max(1, Math.round(2 * Math.ceil(N / 500) / STEPS));
const session = new Session();
session.connect();
if (PROF) {
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 250 });
}
const ms = (u: { user: number; system: number }) => (u.user + u.system) / 1000;
// the main thread's GC pauses while measuring (their entries come after; counted by their start)
let gcMs = 0, gcs = 0;
const spans: [number, number][] = [];
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) spans.push([e.startTime, e.duration]);
}).observe({ entryTypes: ['gc'] });

/** one round of one tree: the store filled (not measured; in paged mode the steps are), then its compile(s) */
async function round(t: Tree, r: number): Promise<Record<string, unknown>> {
  const store = new t.ObjectStore();
  store.upsert('Node', t.slimObject('Node', JSON.parse(nodeText), undefined, true));
  const c = new t.Compiler(opts);
  let main = 0, proc = 0, wall = 0, steps = 0, frontends = 0, digest = '';
  const windows: [number, number][] = [];
  // the state as the plan reads it (every field, in the list's order) and the problems reported
  const read = (res: { state: { frontends: unknown[] }; errors?: unknown[] }) => {
    frontends = res.state.frontends.length;
    if (DIGEST) digest = createHash('sha256').update(JSON.stringify([res.state.frontends, res.errors])).digest('hex').slice(0, 16);
  };
  let last: { state: { frontends: unknown[] } } | undefined;
  const measure = (f: () => void) => {
    const c0 = process.threadCpuUsage(), p0 = process.cpuUsage(), w0 = performance.now();
    f();
    main += ms(process.threadCpuUsage(c0));
    proc += ms(process.cpuUsage(p0));
    const w1 = performance.now();
    wall += w1 - w0;
    windows.push([w0, w1]);
  };
  if (MODE === 'oneshot') {
    for (const p of pages.get(t)!) for (const o of p.objs) store.upsert(p.kind, o);
    gc!();
    if (PROF) await session.post('Profiler.start');
    measure(() => { last = c.compile(store.view()); void last.state.frontends.length; });
  } else {
    const ahead = new t.CompileAhead(store, c);
    store.onChange((kind, key) => ahead.note(kind, key));
    gc!();
    if (PROF) await session.post('Profiler.start');
    const list = pages.get(t)!;
    list.forEach((p, i) => {
      for (const o of p.objs) store.upsert(p.kind, o);
      if ((i + 1) % every || i === list.length - 1) return;
      measure(() => ahead.step(true));
      steps++;
    });
    measure(() => { last = c.compile(store.view(), ahead.take()); void last.state.frontends.length; });
  }
  read(last!);
  await new Promise((r) => setTimeout(r, 50)); // the GC entries are delivered later
  let pause = 0, count = 0;
  for (const [t0, d] of spans) if (windows.some(([a, b]) => t0 >= a && t0 < b)) { pause += d; count++; }
  spans.length = 0;
  gcMs = Math.round(pause);
  gcs = count;
  if (PROF) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(dir, `${t.name}-${MODE}-${r}.cpuprofile`), JSON.stringify(profile));
  }
  return { tree: t.name, round: r + 1, N, MODE, steps, frontends, ...(DIGEST && { digest }), mainMs: Math.round(main), gcMs, gcs, procMs: Math.round(proc), wallMs: Math.round(wall) };
}

const rows: Record<string, unknown>[] = [];
for (let r = 0; r < ROUNDS; r++) {
  for (const t of r % 2 ? [...trees].reverse() : trees) {
    const row = { ...(await round(t, r)), load: +loadavg()[0]!.toFixed(1) };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
if (trees.length > 1) {
  const mmm = (k: string) => {
    const rs: number[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const a = rows.find((x) => x.round === r && x.tree === 'this')!, b = rows.find((x) => x.round === r && x.tree === 'base')!;
      rs.push((a[k] as number) / (b[k] as number));
    }
    rs.sort((x, y) => x - y);
    return { min: +rs[0]!.toFixed(3), median: +rs[(rs.length - 1) >> 1]!.toFixed(3), max: +rs[rs.length - 1]!.toFixed(3) };
  };
  console.log(JSON.stringify({ ratio: 'this/base', N, MODE, mainMs: mmm('mainMs'), gcMs: mmm('gcMs'), procMs: mmm('procMs'), wallMs: mmm('wallMs') }));
}
