// What the in-process A/B probes share (bench/sync-ab.ts, bench/scale-plan-ab.ts): this tree and
// another checkout (BASE) imported side by side, CPU clocks, and per step the median of each tree
// with this / base per round as min / median / max.
import { loadavg } from 'node:os';

export type TreeName = 'base' | 'ours';

/** The modules `load` takes from each tree's src/ (`im('plan/plan.ts')`), for BASE and this checkout, base first. */
export async function importTrees<T>(base: string, load: (im: (path: string) => Promise<any>) => Promise<T>): Promise<Array<T & { name: TreeName }>> {
  const one = async (name: TreeName, root: string) => ({ name, ...await load((p) => import(`${root.replace(/\/$/, '')}/src/${p}`)) });
  return [await one('base', base), await one('ours', new URL('..', import.meta.url).pathname)];
}

/** the main thread's CPU ms so far */
export const threadMs = (): number => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
/** the process's CPU ms so far (every thread) */
export const processMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

export class AbResults {
  readonly #res: Record<TreeName, Record<string, number[]>> = { base: {}, ours: {} };

  put(tree: TreeName, key: string, v: number): void {
    (this.#res[tree][key] ??= []).push(v);
  }

  /** Runs fn and records its main-thread CPU (`<key>Main`), process CPU (`<key>`) and wall ms (`<key>Wall`). */
  time<R>(tree: TreeName, key: string, fn: () => R): R {
    const m = threadMs(), p = processMs(), w = performance.now();
    const r = fn();
    this.put(tree, `${key}Main`, threadMs() - m);
    this.put(tree, key, processMs() - p);
    this.put(tree, `${key}Wall`, performance.now() - w);
    return r;
  }

  /** Prints, as JSON with `head`, per key the medians and the per-round ratios' min / median / max. */
  print(head: Record<string, unknown>): void {
    const med = (xs: number[]) => { const v = [...xs].sort((a, b) => a - b); return v[v.length >> 1]!; };
    const out: Record<string, string> = {};
    for (const k of Object.keys(this.#res.base)) {
      const b = this.#res.base[k]!, o = this.#res.ours[k]!;
      const ratios = o.map((x, i) => x / b[i]!).sort((a, c) => a - c);
      out[k] = `base ${med(b).toFixed(0)} ours ${med(o).toFixed(0)} ratio min/med/max ${ratios[0]!.toFixed(2)}/${med(ratios).toFixed(2)}/${ratios[ratios.length - 1]!.toFixed(2)}`;
    }
    console.log(JSON.stringify({ ...head, load: loadavg()[0], ...out }, null, 1));
  }
}

/** the f-quantile of xs (0: min, 0.5: median, 1: max), the nearest sample below */
export const quantile = (xs: readonly number[], f: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(f * xs.length))]!;

/** per-pair ratios A/B as chain-ab and conn-ab print them: min / p25 / median / p75 / max */
export function pairRatios(ratio: readonly number[]): string {
  const f = (x: number) => x.toFixed(3);
  return `A/B per pair min ${f(quantile(ratio, 0))} p25 ${f(quantile(ratio, 0.25))} median ${f(quantile(ratio, 0.5))} p75 ${f(quantile(ratio, 0.75))} max ${f(quantile(ratio, 1))}`;
}
