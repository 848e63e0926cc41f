// The /metrics scrape's map reads on the main thread: minor page faults (this thread's, from
// /proc/thread-self/stat, and the process's), the arrayBuffers stat's growth and the wall time of each
// of a few scrapes over real maps holding N Services, as BpfDataplane.stats() reads them between
// sweeps: lb_stats, the fill of every map (conntrack from the sweep's figures, not scanned), the
// per-frontend counters up to the highest id. The first scrape warms up (the counts of the maps only
// the agent writes are then cached) and is not printed. No major GC is forced.
//   KBP_SCRAPE_ROOT=<a checkout> (default this one: its BpfMap, map-reader and testing/datapath.ts)
//   KBP_SCRAPE_SERVICES (default 10000, 10 backends each), KBP_SCRAPE_ROUNDS (default 20)
// Prints one JSON line a scrape. Run as root (a BPF load with pins under a test root).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = resolve(process.env.KBP_SCRAPE_ROOT ?? new URL('..', import.meta.url).pathname);
const N = Number(process.env.KBP_SCRAPE_SERVICES ?? 10_000);
const ROUNDS = Number(process.env.KBP_SCRAPE_ROUNDS ?? 20);
if (!Number.isInteger(N) || N < 1 || N > 100_000) throw new Error(`KBP_SCRAPE_SERVICES=${process.env.KBP_SCRAPE_SERVICES}: 1 .. 100000`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 1000) throw new Error(`KBP_SCRAPE_ROUNDS=${process.env.KBP_SCRAPE_ROUNDS}: 1 .. 1000`);

const imp = (p: string) => import(pathToFileURL(`${ROOT}/${p}`).href);
const { Datapath } = await imp('testing/datapath.ts');
const { buildPlan } = await imp('src/plan/plan.ts');

function threadMinflt(): number {
  const s = readFileSync('/proc/thread-self/stat', 'utf8');
  return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[7]);
}

const frontends = [];
for (let i = 0; i < N; i++) {
  frontends.push({
    service: `default/svc-${i}`, portName: 'http', type: 'ClusterIP', protocol: 'TCP', scope: 'internal',
    address: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 80, sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
    backends: Array.from({ length: 10 }, (_, j) => ({ address: `10.${200 + j}.${(i >> 8) & 255}.${i & 255}`, port: 8080, terminating: false, local: false })),
  });
}
const dp = new Datapath(undefined, 'scrapefaults');
try {
  dp.installPlan(buildPlan({ frontends }, undefined, { seed: 0x1234 }));
  const maps = dp.bpfMaps();
  const skip = new Set(['lb_ct', 'lb_ct_syn']);
  for (let round = 0; round <= ROUNDS; round++) {
    await new Promise((r) => setTimeout(r, 20));
    const ab0 = process.memoryUsage().arrayBuffers, t0 = threadMinflt(), p0 = process.resourceUsage().minorPageFault, c0 = performance.now();
    maps.readStats();
    const fill = maps.mapFill(skip);
    maps.readFrontendStats(N);
    const ms = performance.now() - c0, t1 = threadMinflt(), p1 = process.resourceUsage().minorPageFault, ab1 = process.memoryUsage().arrayBuffers;
    if (round > 0) {
      console.log(JSON.stringify({ root: ROOT, services: N, round, maps: fill.length, threadMinflt: t1 - t0, processMinflt: p1 - p0, arrayBuffersKiB: Math.round((ab1 - ab0) / 1024), ms: Number(ms.toFixed(2)), load: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) }));
    }
  }
  maps.close();
} finally {
  dp.close();
}
