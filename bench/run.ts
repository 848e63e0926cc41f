// npm run bench [-- --quick] [--out DIR] [--report] [NAME...]
// Runs every bench/*.bench.ts (or the named ones), one after the other in this process, and writes
// DIR/<name>.json, DIR/<name>-<figure>.svg and DIR/REPORT.md (default DIR: bench/results). REPORT.md
// covers every result file in DIR, so running one bench refreshes its part and keeps the others.
// --report only rewrites REPORT.md from the result files (runs merged from several directories).
// Each step prints a progress line on stderr: [bench] what it does now.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatValue, makeContext, type Bench, type Figure, type Metric } from './lib.js';
import { renderSvg } from './svg.js';
import { targetsTable } from './targets.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Report order; benches not listed follow in name order. */
const BENCH_ORDER = ['agent-change', 'sync', 'agent', 'scale', 'connrate', 'datapath', 'plan', 'maglev'];

export interface Result {
  name: string;
  title: string;
  description: string;
  quick: boolean;
  startedAt: string;
  durationMs: number;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  env: Record<string, string | number>;
  metrics: Metric[];
  figures: Figure[];
  notes: string[];
}

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\nusage: node --import=tsx bench/run.ts [--quick] [--out DIR] [--list] [--report] [NAME...]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]) {
  let quick = false, list = false, reportOnly = false, out = path.join(here, 'results');
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') quick = true;
    else if (a === '--list') list = true;
    else if (a === '--report') reportOnly = true;
    else if (a === '--out') out = path.resolve(argv[++i] ?? usage('--out needs a directory'));
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else names.push(a);
  }
  return { quick, list, reportOnly, out, names };
}

async function discover(): Promise<Bench[]> {
  const files = (await readdir(here)).filter((f) => f.endsWith('.bench.ts')).sort();
  const benches: Bench[] = [];
  for (const f of files) {
    // a standalone script (nftables.bench.ts runs, re-executes itself and exits on import) is not one of ours
    if (!(await readFile(path.join(here, f), 'utf8')).includes('defineBench(')) continue;
    const mod = (await import(pathToFileURL(path.join(here, f)).href)) as { default?: Bench | Bench[] };
    if (!mod.default) throw new Error(`bench/${f} has no default export (export default defineBench({...}))`);
    for (const b of Array.isArray(mod.default) ? mod.default : [mod.default]) {
      if (benches.some((x) => x.name === b.name)) throw new Error(`bench name ${b.name} is used twice (bench/${f})`);
      benches.push(b);
    }
  }
  const rank = (n: string) => (BENCH_ORDER.includes(n) ? BENCH_ORDER.indexOf(n) : BENCH_ORDER.length);
  return benches.sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : 1));
}

function environment(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    node: process.version,
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    kernel: os.release(),
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadavg1m: +os.loadavg()[0]!.toFixed(2),
  };
}

async function runOne(b: Bench, quick: boolean): Promise<Result> {
  const started = new Date();
  const t0 = performance.now();
  const base = { name: b.name, title: b.title, description: b.description, quick, startedAt: started.toISOString(), env: environment() };
  const log = (m: string) => process.stderr.write(`[${b.name}] ${m}\n`);
  const reason = await b.skip?.();
  if (reason) {
    log(`skipped: ${reason}`);
    return { ...base, durationMs: 0, status: 'skipped', reason, metrics: [], figures: [], notes: [] };
  }
  const { ctx, recorded } = makeContext(quick, log);
  try {
    await b.run(ctx);
    for (const m of recorded.metrics) {
      if (m.baseline && !recorded.metrics.some((x) => x.name === m.baseline)) throw new Error(`metric ${m.name}: baseline ${m.baseline} was not recorded`);
    }
    return { ...base, durationMs: performance.now() - t0, status: 'ok', ...recorded };
  } catch (e) {
    log(`failed: ${(e as Error).stack ?? e}`);
    return { ...base, durationMs: performance.now() - t0, status: 'failed', reason: (e as Error).message, ...recorded };
  }
}

function ratioText(m: Metric, all: Metric[]): string {
  if (!m.baseline) return '';
  const b = all.find((x) => x.name === m.baseline);
  if (!b || b.value === 0) return '';
  const r = m.value / b.value;
  const word = r >= 1 ? `${r >= 10 ? r.toFixed(0) : r.toFixed(2)}x` : `${(r * 100).toFixed(1)}%`;
  return `${word} of ${b.name}`;
}

function report(results: Result[]): string {
  const lines = [
    '# Benchmark report',
    '',
    'Written by `npm run bench` (bench/run.ts) from the result files beside it; each section says when and',
    'where it ran. Ratios are against a baseline measured in the same run. Timings come from machines shared',
    'with other work: the load average at the start of each bench is given, and min / median are kept.',
    '',
    ...targetsTable(results),
  ];
  for (const r of results) {
    lines.push(`## ${r.title} (\`${r.name}\`)`, '');
    lines.push(r.description, '');
    const env = r.env;
    lines.push(`Run ${r.startedAt}${r.quick ? ' with `--quick`' : ''}, ${(r.durationMs / 1000).toFixed(1)} s; node ${env.node}, ${env.cpu} x${env.cores}, kernel ${env.kernel}, load ${env.loadavg1m}.`, '');
    if (r.status !== 'ok') lines.push(`**${r.status}**: ${r.reason ?? ''}`, '');
    if (r.metrics.length) {
      lines.push('| metric | value | vs baseline | target | met |', '|---|---:|---|---|---|');
      for (const m of r.metrics) {
        const met = m.met === undefined ? '' : m.met ? 'yes' : '**no**';
        lines.push(`| ${m.name}${m.note ? ` <br><sub>${m.note}</sub>` : ''} | ${formatValue(m.value, m.unit)} | ${ratioText(m, r.metrics)} | ${m.target ?? ''} | ${met} |`);
      }
      lines.push('');
    }
    for (const f of r.figures) lines.push(`![${f.title}](${r.name}-${f.id}.svg)`, '');
    if (r.notes.length) {
      for (const n of r.notes) lines.push(`- ${n}`);
      lines.push('');
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const benches = await discover();
  if (args.list) {
    for (const b of benches) process.stdout.write(`${b.name}\t${b.title}\n`);
    return;
  }
  for (const n of args.names) if (!benches.some((b) => b.name === n)) usage(`no bench named ${n} (have: ${benches.map((b) => b.name).join(', ')})`);
  const chosen = args.reportOnly ? [] : args.names.length ? benches.filter((b) => args.names.includes(b.name)) : benches;
  await mkdir(args.out, { recursive: true });
  let failed = 0;
  let step = 0;
  for (const b of chosen) {
    process.stderr.write(`[${b.name}] bench ${++step} of ${chosen.length}${args.quick ? ' (--quick)' : ''}: ${b.title}\n`);
    const r = await runOne(b, args.quick);
    if (r.status === 'failed') failed++;
    await writeFile(path.join(args.out, `${b.name}.json`), JSON.stringify(r, null, 2) + '\n');
    for (const f of r.figures) await writeFile(path.join(args.out, `${b.name}-${f.id}.svg`), renderSvg(f) + '\n');
    process.stderr.write(`[${b.name}] ${r.status} in ${(r.durationMs / 1000).toFixed(1)} s\n`);
  }
  const all: Result[] = [];
  for (const f of (await readdir(args.out)).filter((x) => x.endsWith('.json')).sort()) {
    try {
      const r = JSON.parse(await readFile(path.join(args.out, f), 'utf8')) as Result;
      if (!r.name || !r.metrics) continue;
      // two files of one bench (a renamed or copied result file): the newest run only, or the report has two sections
      const other = all.findIndex((x) => x.name === r.name);
      if (other < 0) all.push(r);
      else if (r.startedAt > all[other]!.startedAt) all[other] = r;
    } catch {
      // not one of ours
    }
  }
  const rank = (n: string) => (BENCH_ORDER.includes(n) ? BENCH_ORDER.indexOf(n) : BENCH_ORDER.length);
  all.sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : 1));
  await writeFile(path.join(args.out, 'REPORT.md'), report(all));
  process.stderr.write(`wrote ${path.relative(process.cwd(), path.join(args.out, 'REPORT.md'))}\n`);
  if (failed) process.exitCode = 1;
}

await main();
