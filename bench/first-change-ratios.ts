// Per-round A/B ratios of a bench/first-change-agent.ts run: for each kind and round, the first
// CLI's median over the round's changes against each other CLI's (a copy of the first CLI's bundle
// as a third gives an A/A: the spread that is the machine's alone), for the thread CPU of a change and
// for each of the agent's sync steps, with the load at each run's end; then min / median / max of
// the per-round ratios and the ratio of the medians of every change pooled over the rounds.
// A shift of every step alike (the apply that neither build changed as much as the compile) is
// the machine in that run (the other core's work, caches), not the code: docs/perf-log.md, session 27, p27chg.
//   node --import=tsx bench/first-change-ratios.ts DIR [DIR...]   (DIR: first-change-agent's --out)
// Several DIRs (runs of the same two CLIs, in the same order) are read as one series of rounds.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dirs = process.argv.slice(2);
if (!dirs.length) throw new Error('usage: first-change-ratios.ts DIR [DIR...]');
const STEPS = ['threadCpuMs', 'totalMs', 'compileMs', 'fitMs', 'planMs', 'diffMs', 'applyMs', 'afterMs', 'otherMs'] as const;
interface Change { kind: string; [k: string]: unknown }
interface Run { cli: string; round: number; load: string; changes: Change[] }

/** the median of values (the mean of the middle two for an even count) */
export function median(v: readonly number[]): number {
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// the CLIs by the <round>-<k>.json names (k: the CLI's place on the command line)
const runs: { series: number; k: number; run: Run }[] = [];
dirs.forEach((d, series) => {
  for (const f of readdirSync(d)) {
    const m = /^(\d+)-(\d+)\.json$/.exec(f);
    if (m) runs.push({ series, k: Number(m[2]), run: JSON.parse(readFileSync(join(d, f), 'utf8')) as Run });
  }
});
const ks = [...new Set(runs.map((r) => r.k))].sort((a, b) => a - b);
if (ks[0] !== 0 || ks.length < 2) throw new Error(`${dirs.join(' ')}: no run of two CLIs`);
const kinds = [...new Set(runs.flatMap((r) => r.run.changes.map((c) => c.kind)))];
const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
for (const b of ks.slice(1)) for (const kind of kinds) {
  console.log(`\nA: ${runs.find((r) => r.k === 0)!.run.cli}\nB: ${runs.find((r) => r.k === b)!.run.cli}`);
  const ratios: Record<string, number[]> = Object.fromEntries(STEPS.map((s) => [s, []]));
  const pooled: Record<string, number[]>[] = [{}, {}];
  console.log(`\n${kind}: per round, A / B of the median change (ms), then each step's ratio`);
  const rounds = [...new Set(runs.map((r) => `${r.series}-${r.run.round}`))];
  for (const key of rounds) {
    const pair = [0, b].map((k) => runs.find((r) => `${r.series}-${r.run.round}` === key && r.k === k)?.run);
    if (!pair[0] || !pair[1]) continue;
    const med = pair.map((run, i) => Object.fromEntries(STEPS.map((s) => {
      const v = run!.changes.filter((c) => c.kind === kind).map((c) => num(c[s])).filter((x): x is number => x !== undefined);
      (pooled[i]![s] ??= []).push(...v);
      return [s, median(v)];
    })));
    for (const s of STEPS) ratios[s]!.push(med[0]![s]! / med[1]![s]!);
    console.log(`  round ${key}: CPU ${med[0]!.threadCpuMs!.toFixed(3)} / ${med[1]!.threadCpuMs!.toFixed(3)} = ${(med[0]!.threadCpuMs! / med[1]!.threadCpuMs!).toFixed(3)}`
      + `  steps ${STEPS.slice(1).map((s) => `${s.replace(/Ms$/, '')} ${(med[0]![s]! / med[1]![s]!).toFixed(2)}`).join(' ')}  load ${pair[0].load.split(' ')[0]} / ${pair[1].load.split(' ')[0]}`);
  }
  for (const s of STEPS) {
    const r = ratios[s]!;
    if (!r.length) continue;
    console.log(`  ${s.padEnd(12)} rounds ${r.length}: per-round ratio min / median / max ${Math.min(...r).toFixed(3)} / ${median(r).toFixed(3)} / ${Math.max(...r).toFixed(3)};`
      + ` pooled medians ${median(pooled[0]![s]!).toFixed(3)} / ${median(pooled[1]![s]!).toFixed(3)} = ${(median(pooled[0]![s]!) / median(pooled[1]![s]!)).toFixed(3)}`);
  }
}
