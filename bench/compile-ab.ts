// Compile from scratch, two trees interleaved in one process (a process per tree at load 10-30 gives
// ratios all over the place): each tree's Compiler bundled with esbuild, the same slimmed store (the
// agent's first compile from the API server's objects), rounds alternating which tree goes first.
// Per round and tree: the compile's CPU (process), its wall, and the heap it leaves live (a full GC
// after, the Compiler and its result kept as the agent keeps them).
//   A=/tmp/base N=10000 ROUNDS=8 node --expose-gc --import=tsx bench/compile-ab.ts   (one JSON line)
// A is the other tree (e.g. `git archive main | tar -x -C /tmp/base`); B is this one.
import { build } from 'esbuild';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { slimStore } from './apiserver-objects.js';
import { NODE_IP, NODE_NAME } from './gen.js';

type CompilerCtor = new (opts: { nodeName: string; nodeIPs?: string[] }) => { compile(s: unknown): { state: { frontends: unknown[] } } };
const N = Number(process.env.N ?? 10_000);
const ROUNDS = Number(process.env.ROUNDS ?? 6);
const A = process.env.A;
if (!A) throw new Error('A=<the other tree> is required');
const B = resolve(fileURLToPath(new URL('..', import.meta.url)));
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const dir = mkdtempSync(join(tmpdir(), 'kbp-compile-ab-'));
async function load(tree: string, name: string): Promise<CompilerCtor> {
  const entry = join(dir, `${name}-entry.ts`);
  writeFileSync(entry, `export { Compiler } from ${JSON.stringify(join(tree, 'src/compile/compile.ts'))};\n`);
  const outfile = join(dir, `${name}.mjs`);
  await build({ entryPoints: [entry], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node24', logLevel: 'warning' });
  return ((await import(pathToFileURL(outfile).href)) as { Compiler: CompilerCtor }).Compiler;
}
const trees = { A: await load(resolve(A), 'a'), B: await load(B, 'b') };
rmSync(dir, { recursive: true, force: true });
const snap = slimStore({ services: N, endpointsPerService: 10, nodePortEvery: 10 }).view();
const settle = async (): Promise<number> => {
  await new Promise((r) => setTimeout(r, 20)); // a WeakRef made in this turn keeps its target until the turn ends
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

// the Compiler and result of the last compile, kept as the agent keeps them until the next is measured
let held: unknown;
function compileOnce(t: 'A' | 'B'): { cpu: number; wall: number } {
  const c0 = process.cpuUsage(), t0 = performance.now();
  const c = new trees[t]({ nodeName: NODE_NAME, nodeIPs: [NODE_IP] });
  const res = c.compile(snap);
  const wall = performance.now() - t0, cu = process.cpuUsage(c0);
  void res.state.frontends.length; // read, as the plan does (a lazy state builds its array)
  held = [c, res];
  return { cpu: (cu.user + cu.system) / 1000, wall };
}

const rounds: Record<string, number>[] = [];
const ratio = (k: string) => rounds.map((r) => r[`B${k}`]! / r[`A${k}`]!).sort((x, y) => x - y);
for (let r = 0; r < ROUNDS; r++) {
  const row: Record<string, number> = {};
  for (const t of (r % 2 ? ['B', 'A'] : ['A', 'B']) as ('A' | 'B')[]) {
    held = undefined;
    const h0 = await settle();
    const { cpu, wall } = compileOnce(t);
    const h1 = await settle();
    row[`${t}CpuMs`] = Math.round(cpu);
    row[`${t}WallMs`] = Math.round(wall);
    row[`${t}HeapMiB`] = Math.round((h1 - h0) / 2 ** 20 * 10) / 10;
  }
  held = undefined;
  rounds.push(row);
  process.stderr.write(`[compile-ab] ${N} round ${r + 1}/${ROUNDS}: ${JSON.stringify(row)}\n`);
}
const mmm = (a: number[]) => ({ min: +a[0]!.toFixed(3), median: +a[a.length >> 1]!.toFixed(3), max: +a[a.length - 1]!.toFixed(3) });
const median = (k: string) => rounds.map((r) => r[k]!).sort((x, y) => x - y)[rounds.length >> 1];
console.log(JSON.stringify({
  N, rounds: ROUNDS, A, B, load: (await import('node:os')).loadavg().map((x) => +x.toFixed(1)),
  ACpuMs: median('ACpuMs'), BCpuMs: median('BCpuMs'), cpuRatio: mmm(ratio('CpuMs')),
  AHeapMiB: median('AHeapMiB'), BHeapMiB: median('BHeapMiB'), heapRatio: mmm(ratio('HeapMiB')), perRound: rounds,
}));
