// The benchmark harness: a bench is one file `bench/<name>.bench.ts` whose default export is
// defineBench({...}) (or an array of them); bench/run.ts finds it, so adding a bench is that one file
// (list it in BENCH_ORDER in run.ts only to fix where it appears in the report). A bench records
// metrics (a number, a unit, optionally the baseline metric measured in the same run that it is a
// ratio against, and the target it is held to) and figures (line or bar charts); the harness writes
// results/<name>.json, one SVG per figure and results/REPORT.md.
//
// Benchmarks measure, they do not assert: a missed target is reported, not thrown. Timings on this
// project's shared machines are noisy, so every timing keeps min and median, and the report names
// the machine's load.
import { spawnSync } from 'node:child_process';
import { renameSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import type { LabProcess } from '../testing/netns.js';

export interface Metric {
  /** unique within the bench; baselines refer to it */
  name: string;
  value: number;
  unit: string;
  /** name of a metric of the same bench this one is compared against: the report prints value / baseline */
  baseline?: string;
  /** which way is better, for the report's wording */
  better?: 'lower' | 'higher';
  /** the target from DESIGN.md, as text ("< 1 s", ">= 10x") */
  target?: string;
  /** whether the target is met, when the bench can tell */
  met?: boolean;
  note?: string;
}

export interface LineSeries {
  name: string;
  points: [number, number][];
  /** drawn dashed: a reference (target, ideal), not a measurement */
  reference?: boolean;
}

export interface LineFigure {
  id: string;
  kind: 'line';
  title: string;
  x: { label: string; log?: boolean };
  y: { label: string; log?: boolean; min?: number };
  series: LineSeries[];
  note?: string;
}

export interface BarFigure {
  id: string;
  kind: 'bar';
  title: string;
  categories: string[];
  y: { label: string; log?: boolean };
  series: { name: string; values: number[] }[];
  note?: string;
}

export type Figure = LineFigure | BarFigure;

export interface TimeStats {
  /** wall-clock milliseconds */
  min: number;
  median: number;
  mean: number;
  p99: number;
  max: number;
  runs: number;
  /**
   * median CPU time of this process per run (user + system, ms): steadier than wall time on a machine
   * shared with other work, though it counts GC helper threads too
   */
  cpuMedian: number;
}

export interface HeapSample {
  /** V8 heap in use, bytes */
  heapUsed: number;
  /** ArrayBuffer memory (typed arrays live here, outside the V8 heap), bytes */
  arrayBuffers: number;
  rss: number;
}

export interface BenchContext {
  /** --quick: small sizes, the whole run within ~30 s */
  readonly quick: boolean;
  log(message: string): void;
  metric(m: Metric): void;
  figure(f: Figure): void;
  /** a sentence for the report: what was measured how, and what was left out */
  note(text: string): void;
  /** warmup runs, then `repeat` timed runs of fn (synchronous) */
  time(fn: () => unknown, opts?: { repeat?: number; warmup?: number }): TimeStats;
  timeAsync(fn: () => Promise<unknown>, opts?: { repeat?: number; warmup?: number }): Promise<TimeStats>;
  /** full garbage collection (exposed through V8 flags by the harness) */
  gc(): void;
  heap(): HeapSample;
  /**
   * Bytes retained by what `make` returns: heap + ArrayBuffer growth after a full GC, with the result
   * kept alive until measured.
   */
  retained<T>(make: () => T): { value: T; bytes: number };
}

export interface Bench {
  /** file-name-like: results/<name>.json */
  name: string;
  title: string;
  /** one paragraph for the report */
  description: string;
  /** a reason to skip on this machine (no root, no BPF, no iptables-restore...), or undefined to run */
  skip?: () => string | undefined | Promise<string | undefined>;
  run(ctx: BenchContext): void | Promise<void>;
}

export function defineBench(b: Bench): Bench {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(b.name)) throw new Error(`bench name ${JSON.stringify(b.name)}: use lower case, digits and dashes`);
  return b;
}

let gcFn: (() => void) | undefined;

export function gc(): void {
  if (!gcFn) {
    // --expose-gc after start-up: the flag only takes effect for contexts created afterwards
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
  gcFn();
}

export function heap(): HeapSample {
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, rss: m.rss };
}

export function stats(samples: number[], cpuSamples: number[] = []): TimeStats {
  const s = [...samples].sort((a, b) => a - b);
  const c = [...cpuSamples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return {
    min: s[0]!,
    median: at(0.5),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    p99: at(0.99),
    max: s[s.length - 1]!,
    runs: s.length,
    cpuMedian: c.length ? c[Math.ceil(0.5 * c.length) - 1]! : NaN,
  };
}

export interface Recorded {
  metrics: Metric[];
  figures: Figure[];
  notes: string[];
}

export function makeContext(quick: boolean, log: (m: string) => void): { ctx: BenchContext; recorded: Recorded } {
  const recorded: Recorded = { metrics: [], figures: [], notes: [] };
  const ctx: BenchContext = {
    quick,
    log,
    metric(m) {
      if (!Number.isFinite(m.value)) throw new Error(`metric ${m.name}: value ${m.value} is not a finite number`);
      if (recorded.metrics.some((x) => x.name === m.name)) throw new Error(`metric ${m.name} recorded twice`);
      recorded.metrics.push(m);
    },
    figure(f) {
      if (!/^[a-z0-9][a-z0-9-]*$/.test(f.id)) throw new Error(`figure id ${JSON.stringify(f.id)}: use lower case, digits and dashes`);
      if (recorded.figures.some((x) => x.id === f.id)) throw new Error(`figure ${f.id} recorded twice`);
      recorded.figures.push(f);
    },
    note(text) {
      recorded.notes.push(text);
    },
    time(fn, opts = {}) {
      const { repeat = 5, warmup = 1 } = opts;
      for (let i = 0; i < warmup; i++) fn();
      const samples: number[] = [], cpu: number[] = [];
      for (let i = 0; i < repeat; i++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        fn();
        samples.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu.push((c.user + c.system) / 1000);
      }
      return stats(samples, cpu);
    },
    async timeAsync(fn, opts = {}) {
      const { repeat = 5, warmup = 1 } = opts;
      for (let i = 0; i < warmup; i++) await fn();
      const samples: number[] = [], cpu: number[] = [];
      for (let i = 0; i < repeat; i++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await fn();
        samples.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu.push((c.user + c.system) / 1000);
      }
      return stats(samples, cpu);
    },
    gc,
    heap,
    retained(make) {
      gc();
      const before = heap();
      const value = make();
      gc();
      const after = heap();
      return { value, bytes: after.heapUsed - before.heapUsed + after.arrayBuffers - before.arrayBuffers };
    },
  };
  return { ctx, recorded };
}

/** Human units for the report. */
export function formatValue(value: number, unit: string): string {
  const num = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3));
  if (unit === 'bytes') {
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let v = value, i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${num(v)} ${units[i]}`;
  }
  if (unit === 'ms' && Math.abs(value) >= 1000) return `${num(value / 1000)} s`;
  if (unit === 'ms' && Math.abs(value) < 1) return `${num(value * 1000)} µs`;
  if (unit === '%') return `${num(value)}%`;
  return `${num(value)} ${unit}`;
}

/**
 * Collects a spawned agent's JSON log lines whose msg is one of `msgs` (or starts with `prefix`:
 * a message with the object's details in it) from its stderr, as they arrive (the first `max` of
 * them; then it stops listening).
 */
export function agentLogLines(p: LabProcess, msgs: string | readonly string[] | { prefix: string }, max = Infinity): Array<Record<string, unknown>> {
  const prefix = typeof msgs === 'object' && 'prefix' in msgs ? msgs.prefix : undefined;
  const want = prefix !== undefined ? [] : typeof msgs === 'string' ? [msgs] : msgs as readonly string[];
  const got: Array<Record<string, unknown>> = [];
  let buf = '';
  const onData = (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (prefix !== undefined ? !l.includes(`"msg":"${prefix}`) : !want.some((m) => l.includes(`"${m}"`))) continue;
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        if (prefix !== undefined ? String(o.msg).startsWith(prefix) : want.includes(o.msg as string)) got.push(o);
      } catch { /* not a log line */ }
      if (got.length >= max) {
        // the rest of this chunk too: at most `max`
        p.child.stderr!.off('data', onData);
        return;
      }
    }
  };
  p.child.stderr!.on('data', onData);
  return got;
}

/** clang's include flag for the asm/ headers of this machine's architecture (BPF objects built by benches) */
export const MULTIARCH_INCLUDE = `-I/usr/include/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;

/**
 * Runs a compiler (`tool`: cc, clang) that writes `out`, built aside (out.PID) and renamed into
 * place: another bench run may be executing or loading the current file. `args` gets the path to
 * write; `what` names the build in the error, with the compiler's stderr or why it did not run.
 */
export function compileAside(tool: string, what: string, out: string, args: (to: string) => string[]): void {
  const tmp = `${out}.${process.pid}`;
  const r = spawnSync(tool, args(tmp), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${tool} ${what} failed: ${r.stderr || r.error?.message}`);
  renameSync(tmp, out);
}
