// A manifests folder's periodic rescan at N files (issue 10): this tree's ManifestsReader.staleFiles
// against another tree's (KBP_RESCAN_BASE: that tree's root, e.g. a worktree of main), interleaved
// round by round: CPU (threads included), wall, and the longest the event loop went without a 1 ms
// timer. `KBP_RESCAN_BASE=/path/to/main N=10000 node --import=tsx bench/rescan-ab.ts`
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestsReader } from '../src/source/manifests.js';
const base = process.env.KBP_RESCAN_BASE;
if (!base) throw new Error('KBP_RESCAN_BASE: the root of the tree to compare with');
const { ManifestsReader: OldReader } = (await import(join(base, 'src/source/manifests.ts'))) as typeof import('../src/source/manifests.js');
const N = Number(process.env.N ?? 10000), ROUNDS = Number(process.env.ROUNDS ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'kbp-rescan-'));
for (let i = 0; i < N; i++) writeFileSync(join(dir, `svc-${i}.yaml`), `apiVersion: v1\nkind: Service\nmetadata: {name: s${i}, namespace: d}\nspec: {clusterIP: 10.96.${i >> 8}.${i & 255}, ports: [{port: 80}]}\n`);
await new Promise((r) => setTimeout(r, 2100)); // past the 2 s "recently changed" window
const a = new OldReader(dir), b = new ManifestsReader(dir);
a.read(); b.read();
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const res: Record<string, number[][]> = { old: [], new: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const [k, rd] of [['old', a], ['new', b]] as const) {
    let maxGap = 0, last = performance.now();
    const tick = setInterval(() => { const t = performance.now(); maxGap = Math.max(maxGap, t - last); last = t; }, 1);
    const c0 = cpu(), t0 = performance.now();
    const { paths } = await rd.staleFiles();
    const c1 = cpu(), t1 = performance.now();
    clearInterval(tick);
    if (paths.length) throw new Error(`${k}: ${paths.length} stale`);
    res[k]!.push([c1 - c0, t1 - t0, maxGap]);
  }
}
const med = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1]!;
for (const [k, v] of Object.entries(res)) {
  const col = (i: number) => v.map((x) => x[i]!);
  console.log(`${k}: cpu ms min/med/max ${Math.min(...col(0)).toFixed(0)}/${med(col(0)).toFixed(0)}/${Math.max(...col(0)).toFixed(0)}; wall med ${med(col(1)).toFixed(0)}; longest loop gap med ${med(col(2)).toFixed(1)} ms`);
}
console.log("gaps", JSON.stringify(Object.fromEntries(Object.entries(res).map(([k, v]) => [k, v.map((x) => +x[2]!.toFixed(1))]))));
console.log('cpu ratio new/old per round:', res.new!.map((x, i) => (x[0]! / res.old![i]![0]!).toFixed(2)).join(' '));
rmSync(dir, { recursive: true, force: true });
