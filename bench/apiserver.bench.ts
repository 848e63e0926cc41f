// The API path at cluster scale (issue 8, "Scale of the API path"): the stub API server holds N
// Services and N EndpointSlices of 10 endpoints (N = 100,000: a million endpoints), and the real
// Kubernetes source lists it (in pages of 500, as client-go) and watches it, in a process of its own.
// Reported: time from start to every kind listed, the source's RSS and heap once synced, and how long
// one new Service takes to arrive through the watch.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStubApiServer } from '../testing/stub-apiserver.js';
import { apiNode, apiService, apiSlice } from './apiserver-objects.js';
import { service } from './gen.js';
import { defineBench } from './lib.js';

const here = fileURLToPath(new URL('.', import.meta.url));

async function measure(n: number, module?: string): Promise<{ listedMs: number; rssMiB: number; heapMiB: number; watchMs: number }> {
  const stub = await startStubApiServer();
  try {
    const shape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
    for (let i = 0; i < n; i++) {
      stub.apply('Service', apiService(i, shape) as never);
      stub.apply('EndpointSlice', apiSlice(i, shape) as never);
    }
    stub.apply('Node', { ...apiNode(), metadata: { ...apiNode().metadata, name: 'bench-node' } } as never);
    const child = spawn(process.execPath, ['--expose-gc', '--import=tsx', join(here, 'apiserver-client.ts'), stub.kubeconfigPath(), ...(module ? [module] : [])],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: string[] = [];
    let buf = '';
    const next = (): Promise<Record<string, number>> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`apiserver bench at ${n}: the source answered nothing within 600 s`)), 600_000);
      const poll = (): void => {
        const line = lines.shift();
        if (line) { clearTimeout(timer); resolve(JSON.parse(line)); } else setTimeout(poll, 20);
      };
      poll();
    });
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
    });
    const listed = await next();
    stub.apply('Service', service(n, { services: n + 1, endpointsPerService: 10 }) as never);
    child.stdin.write(`bench/svc-${n} ${Date.now()}\n`);
    const watched = await next();
    child.stdin.end();
    await new Promise((r) => child.once('exit', r));
    return { listedMs: listed.listedMs!, rssMiB: listed.rssMiB!, heapMiB: listed.heapMiB!, watchMs: watched.watchMs! };
  } finally {
    await stub.close();
  }
}

export default defineBench({
  name: 'apiserver',
  title: 'The API path at scale: list and watch of N Services x 10 endpoints',
  description: 'The stub API server (testing/stub-apiserver.ts) holds N Services and N EndpointSlices of 10 endpoints, dressed as an API server returns them (managedFields, last-applied annotations, targetRefs: bench/apiserver-objects.ts); the real Kubernetes source (client-node informers, LISTs paged by 500, watches with bookmarks) lists and watches it in a child process. Reported: start to synced, the source\'s RSS and heap after a GC, and one new Service\'s time through the watch. The stub serves from memory, so the time is the client\'s.',
  async run(ctx) {
    const sizes = ctx.quick ? [1000, 10_000] : [1000, 10_000, 100_000];
    const res = new Map<number, Awaited<ReturnType<typeof measure>>>();
    // KBP_BENCH_SOURCE_BASE: another checkout's src/source/kube.ts, measured just before at each size (the same-run baseline)
    const baseModule = process.env.KBP_BENCH_SOURCE_BASE;
    for (const n of sizes) {
      if (baseModule) {
        const b = await measure(n, baseModule);
        ctx.log(`${n} Services, base ${baseModule}: listed in ${b.listedMs.toFixed(0)} ms, RSS ${b.rssMiB.toFixed(0)} MiB, heap ${b.heapMiB.toFixed(0)} MiB`);
        ctx.metric({ name: `base: list ${n}`, value: b.listedMs, unit: 'ms', better: 'lower', note: `KBP_BENCH_SOURCE_BASE=${baseModule}` });
        ctx.metric({ name: `base: rss ${n}`, value: b.rssMiB, unit: 'MiB', better: 'lower' });
        ctx.metric({ name: `base: heap ${n}`, value: b.heapMiB, unit: 'MiB', better: 'lower' });
      }
      const r = await measure(n);
      res.set(n, r);
      ctx.log(`${n} Services (${n * 10} endpoints): listed in ${r.listedMs.toFixed(0)} ms, RSS ${r.rssMiB.toFixed(0)} MiB, heap ${r.heapMiB.toFixed(0)} MiB, a new Service through the watch in ${r.watchMs} ms`);
      const base = (k: string) => (baseModule ? { baseline: `base: ${k} ${n}` } : {});
      ctx.metric({ name: `list ${n}`, value: r.listedMs, unit: 'ms', better: 'lower', note: `${n * 10} endpoints, pages of 500`, ...base('list') });
      ctx.metric({ name: `rss ${n}`, value: r.rssMiB, unit: 'MiB', better: 'lower', note: 'the source alone, after GC', ...base('rss') });
      ctx.metric({ name: `heap ${n}`, value: r.heapMiB, unit: 'MiB', better: 'lower', note: 'V8 heap in use after GC', ...base('heap') });
      ctx.metric({ name: `watch ${n}`, value: r.watchMs, unit: 'ms', better: 'lower', note: 'one new Service, from the API write to the store' });
    }
    ctx.figure({
      id: 'rss', kind: 'line', title: 'Kubernetes source RSS once synced',
      x: { label: 'Services (x10 endpoints)' }, y: { label: 'MiB', min: 0 },
      series: [{ name: 'RSS', points: sizes.map((n) => [n, res.get(n)!.rssMiB]) }],
    });
  },
});
