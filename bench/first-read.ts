// The manifests source's first read alone: ManifestsSource.start() on a folder of N files (one Service
// + its slice each, as bench/first-start.ts writes them), in this fresh process. One JSON line: wall,
// process and main-thread CPU, GC pauses, the heap after a full GC. TREE: the checkout whose src/ is
// measured (a same-run A/B: main's and this one's, interleaved, one process each). DIR: a folder to
// read, written first when it has no node.yaml and kept (else one is written, and removed after).
//   TREE=/path/to/main node --expose-gc --import=tsx bench/first-read.ts 10000
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { endpointSlice, node, service, type ClusterShape } from './gen.js';

const tree = process.env.TREE ?? join(import.meta.dirname, '..');
const n = Number(process.argv[2] ?? 10000);
const made = !process.env.DIR;
const dir = process.env.DIR ?? mkdtempSync(join(tmpdir(), 'kbp-first-read-'));
if (!existsSync(join(dir, 'node.yaml'))) {
  const shape: ClusterShape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
  writeFileSync(join(dir, 'node.yaml'), stringify(node()));
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `svc-${i}.yaml`), `${stringify(service(i, shape))}---\n${stringify(endpointSlice(i, shape, 0))}`);
}
const { ManifestsSource } = await import(`${tree}/src/source/manifests.ts`);
let gcMs = 0, gcs = 0;
const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) { gcMs += e.duration; gcs++; } });
obs.observe({ entryTypes: ['gc'] });
const c0 = process.cpuUsage(), t0 = performance.now(), th0 = process.threadCpuUsage();
const src = new ManifestsSource({ dir, watch: false, rescanMs: 0 });
await src.start();
const t1 = performance.now(), c1 = process.cpuUsage(c0), th1 = process.threadCpuUsage(th0);
await new Promise((r) => setTimeout(r, 10));
obs.disconnect();
globalThis.gc?.();
const heap = process.memoryUsage().heapUsed;
console.log(JSON.stringify({ tree, n, wallMs: Math.round(t1 - t0), cpuMs: Math.round((c1.user + c1.system) / 1000), mainCpuMs: Math.round((th1.user + th1.system) / 1000),
  gcMs: Math.round(gcMs), gcs, heapMiB: +(heap / 2 ** 20).toFixed(1), services: src.store.view().services.size, slices: src.store.view().endpointSlices.size,
  load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] }));
await src.stop();
if (made) rmSync(dir, { recursive: true, force: true });
