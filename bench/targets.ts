// The targets table at the top of REPORT.md (bench/run.ts): every row of issue 10's table, read from
// one bench's result, whichever sizes the run measured.
import { formatValue, type Metric } from './lib.js';

/** what targetsTable reads of a result file (bench/run.ts's Result) */
export interface ResultLike {
  name: string;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  quick: boolean;
  metrics: Metric[];
}

/**
 * The targets (issue 10's table, DESIGN.md "Performance targets"), each read from one bench's metric.
 * `metric` is the metric's name with `{n}` where its size stands (`10k`, or `10000` in `agent`), and
 * `n` the size the target is stated at. The row takes, in order: that metric at `n`; the same figure
 * at `n` from another bench (`alt`: `scale --quick` runs the agent at 10,000 Services); the metric at
 * the largest size the run measured (a `--quick` run measures smaller sizes), shown with its size and
 * not judged. `met` is judged here against `limit` in the metric's own unit, so every row is judged
 * the same way.
 */
export interface TargetRow {
  figure: string;
  bench: string;
  metric: string;
  n?: number;
  alt?: { bench: string; metric: string }[];
  unit: string;
  op: '<' | '<=' | '>=';
  limit: number;
  target: string;
}

export const TARGETS: TargetRow[] = [
  { figure: 'one endpoint change at 10,000 Services, through the real agent (sync-duration metric, p99)', bench: 'agent-change', metric: 'sync duration {n} p99', n: 10_000, unit: 'ms', op: '<', limit: 5, target: '< 5 ms' },
  { figure: 'one endpoint change at 10,000 Services, change to kernel (p99)', bench: 'agent-change', metric: 'change to kernel {n} p99', n: 10_000, unit: 'ms', op: '<', limit: 5, target: '< 5 ms' },
  { figure: 'one endpoint change at 10,000 Services, compile + plan + diff + apply in isolation (p99)', bench: 'sync', metric: 'one endpoint change {n}: ours p99', n: 10_000, unit: 'ms', op: '<', limit: 5, target: '< 5 ms' },
  { figure: 'full sync, 10,000 Services x 10 endpoints, raw objects to kernel', bench: 'sync', metric: 'full sync {n}: ours', n: 10_000, unit: 'ms', op: '<', limit: 1000, target: '< 1 s' },
  { figure: 'full sync at 10,000 Services against the fastest iptables-restore', bench: 'sync', metric: 'full sync {n}: speed-up over the fastest iptables-restore', n: 10_000, unit: 'x', op: '>=', limit: 10, target: '>= 10x' },
  { figure: 'first sync after start at 10,000 Services (list, compile, plan, load, write)', bench: 'agent', metric: 'first sync {n}', n: 10_000, alt: [{ bench: 'scale', metric: 'full sync {n}' }], unit: 'ms', op: '<', limit: 3000, target: '< 3 s' },
  { figure: 'agent RSS at 10,000 Services', bench: 'agent', metric: 'rss {n}', n: 10_000, alt: [{ bench: 'scale', metric: 'rss {n}' }], unit: 'MiB', op: '<=', limit: 300, target: '<= 300 MiB' },
  { figure: 'agent RSS at 10,000 Services, highest sample from the first sync to 20 s after', bench: 'scale', metric: 'rss {n}: max after the first sync', n: 10_000, unit: 'MiB', op: '<=', limit: 300, target: '<= 300 MiB' },
  { figure: 'control plane alone for one endpoint change at 100,000 Services (plan)', bench: 'plan', metric: 'one endpoint change {n}: plan', n: 100_000, unit: 'ms', op: '<', limit: 5, target: '< 5 ms (proportional to the change)' },
  { figure: '100,000 Services x 10 endpoints: full sync, API server to kernel', bench: 'scale', metric: 'full sync {n}', n: 100_000, alt: [{ bench: 'scale-100k', metric: 'full sync {n}' }], unit: 'ms', op: '<', limit: 10_000, target: '< 10 s' },
  { figure: '100,000 Services x 10 endpoints: one change (sync-duration metric, max)', bench: 'scale', metric: 'one change {n}: sync (max)', n: 100_000, alt: [{ bench: 'scale-100k', metric: 'one change {n}: sync (max)' }], unit: 'ms', op: '<', limit: 5, target: '< 5 ms' },
  { figure: '100,000 Services x 10 endpoints: agent RSS', bench: 'scale', metric: 'rss {n}', n: 100_000, alt: [{ bench: 'scale-100k', metric: 'rss {n}' }], unit: 'MiB', op: '<', limit: 1024, target: '< 1 GiB' },
  { figure: 'tc program, TCP conntrack hit (BPF_PROG_TEST_RUN repeat)', bench: 'datapath', metric: 'tc ingress, TCP/IPv4 conntrack hit', alt: [{ bench: 'datapath', metric: 'ct-hit, in-kernel repeat*' }], unit: 'ns', op: '<=', limit: 100, target: '<= 100 ns' },
  { figure: 'first packet, TCP/IPv4 (Maglev pick, conntrack insert)', bench: 'datapath', metric: 'first packet: tc ingress, TCP/IPv4 SYN to a ClusterIP', alt: [{ bench: 'datapath', metric: 'first-packet: TCP/IPv4*' }], unit: 'ns', op: '<=', limit: 300, target: '<= 300 ns' },
  { figure: 'new connections through a ClusterIP at 10,000 Services, tc / direct', bench: 'connrate', metric: 'tc BPF (ours) {n}: ratio to direct', n: 10_000, unit: 'ratio', op: '>=', limit: 0.95, target: '>= 0.95' },
  { figure: 'new connections through a ClusterIP at 10,000 Services, socket hook / direct', bench: 'connrate', metric: 'socket LB (ours) {n}: ratio to direct', n: 10_000, unit: 'ratio', op: '>=', limit: 0.95, target: '>= 0.95' },
  { figure: 'Maglev kernel memory at 10,000 Services, counted as the kernel does (the flat array; else the inner arrays with page rounding)', bench: 'maglev', metric: 'kernel table memory, flat lb_maglev_slots (allocated, as the kernel counts it)', alt: [{ bench: 'maglev', metric: 'kernel table memory, pow2 M, page rounding counted' }], unit: 'bytes', op: '<=', limit: 64 * 2 ** 20, target: '<= 64 MiB' },
];

const escapeRe = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** a metric name template as a regex: `{n}` captures a size (10k, 1.5k, 10000), a trailing `*` any rest */
export function templateRe(t: string): RegExp {
  const star = t.endsWith('*');
  const parts = (star ? t.slice(0, -1) : t).split('{n}').map(escapeRe);
  return new RegExp(`^${parts.join('(\\d+(?:\\.\\d+)?k?)')}${star ? '' : '$'}`);
}

/** '10k' -> 10000, '10000' -> 10000 */
export function parseSize(x: string): number {
  return x.endsWith('k') ? Number(x.slice(0, -1)) * 1000 : Number(x);
}

const sizeText = (n: number) => n.toLocaleString('en-US');

/**
 * The metric a target row reads: at the row's size (from its bench, then its alternatives), else
 * at the largest size measured (`at` set: not the size the target is stated at).
 */
export function findTarget(t: TargetRow, results: readonly Pick<ResultLike, 'name' | 'metrics'>[]): { bench: string; m: Metric; at?: number } | undefined {
  const sources = [{ bench: t.bench, metric: t.metric }, ...(t.alt ?? [])];
  let best: { bench: string; m: Metric; at?: number } | undefined;
  for (const src of sources) {
    const re = templateRe(src.metric);
    for (const m of results.find((x) => x.name === src.bench)?.metrics ?? []) {
      const hit = re.exec(m.name);
      if (!hit) continue;
      const size = hit[1] === undefined ? undefined : parseSize(hit[1]);
      if (size === undefined || t.n === undefined || size === t.n) return { bench: src.bench, m };
      if (size < t.n && (!best || best.at! < size)) best = { bench: src.bench, m, at: size };
    }
  }
  return best;
}

/** The targets table: every row, measured or saying why not. */
export function targetsTable(results: readonly ResultLike[]): string[] {
  const lines = ['## The targets', '',
    'Every row of issue 10\'s table, read from the bench named in the last column (its section below has the',
    'details and the same-run baselines). "not measured" names what is missing from this run; a figure',
    'measured at a smaller size than the target\'s (a `--quick` run) names its size and is not judged.', '',
    '| figure | measured | target | met | from |', '|---|---:|---|---|---|'];
  for (const t of TARGETS) {
    const found = findTarget(t, results);
    const r = results.find((x) => x.name === (found?.bench ?? t.bench));
    let measured: string, met: string;
    if (!r || !found) {
      measured = !r ? `not measured: \`${t.bench}\` did not run` : `not measured: ${r.status === 'ok' ? 'no such metric' : r.status}${r.reason ? ` (${r.reason.slice(0, 120)})` : ''}`;
      met = '';
    } else {
      const { m, at } = found;
      const v = m.value;
      const ok = m.unit === t.unit;
      measured = !Number.isFinite(v) ? 'no value' : t.unit === 'ratio' ? v.toFixed(3) : formatValue(v, m.unit);
      met = !ok || !Number.isFinite(v) ? `(unit ${m.unit})` : at !== undefined ? `not judged (at ${sizeText(at)})` : (t.op === '<' ? v < t.limit : t.op === '<=' ? v <= t.limit : v >= t.limit) ? 'yes' : '**no**';
      if (m.note?.includes('NOT FINISHED')) measured = m.unit === 'ms' ? `> ${measured} (not finished)` : `${measured} (first sync not finished)`;
      if (at !== undefined) measured += ` at ${sizeText(at)} Services`;
      if (r.quick) measured += ' (quick)';
    }
    lines.push(`| ${t.figure} | ${measured} | ${t.target} | ${met} | \`${found?.bench ?? t.bench}\`${found ? `: ${found.m.name}` : ''} |`);
  }
  lines.push('');
  return lines;
}
