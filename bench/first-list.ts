// The kube source's first list alone: KubeSource.start() against the stub API server (a process of
// its own, bench/apiserver-stub.ts: N Services and N slices dressed as an API server sends them),
// in this fresh process. One JSON line: wall, process and main-thread CPU, the process's minor page faults, the stub's CPU, the heap
// after a full GC, and RSS and V8's heap size before it. TREE: the checkout whose src/ is measured (a same-run A/B: main's and this one's,
// interleaved, one process each); KBP_STUB_LIST_DELAY_MS: the stub's time per page.
//   TREE=/path/to/main node --expose-gc --import=tsx bench/first-list.ts 10000
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
const tree = process.env.TREE ?? join(import.meta.dirname, '..');
const n = Number(process.argv[2] ?? 10000);
const stub = spawn(process.execPath, ['--import=tsx', join(import.meta.dirname, 'apiserver-stub.ts'), '127.0.0.1', String(n)], { stdio: ['pipe', 'pipe', 'inherit'] });
const ready: any = await new Promise((res) => { let b = ''; stub.stdout!.on('data', (d) => { b += d; const i = b.indexOf('\n'); if (i >= 0) res(JSON.parse(b.slice(0, i))); }); });
const cpuOf = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
const { createKubeSource } = await import(`${tree}/src/source/kube.ts`);
const { silentLogger } = await import(`${tree}/src/util/log.ts`);
const stubCpu0 = cpuOf(stub.pid!);
const c0 = process.cpuUsage(), t0 = performance.now(), th0 = process.threadCpuUsage(), f0 = process.resourceUsage().minorPageFault;
const src = createKubeSource({ kubeconfig: ready.kubeconfig, logger: silentLogger, nodeName: 'node-a' });
await src.start();
const t1 = performance.now(), c1 = process.cpuUsage(c0), th1 = process.threadCpuUsage(th0), faults = process.resourceUsage().minorPageFault - f0;
const stubCpu = cpuOf(stub.pid!) - stubCpu0;
// (before the GC: what the list leaves behind, garbage and spare buffers included)
const rssAfter = process.memoryUsage().rss, heapTotal = process.memoryUsage().heapTotal;
globalThis.gc?.();
const heap = process.memoryUsage().heapUsed;
console.log(JSON.stringify({ tree, n, wallMs: Math.round(t1 - t0), cpuMs: Math.round((c1.user + c1.system) / 1000), mainCpuMs: Math.round((th1.user + th1.system) / 1000), faults, stubCpuMs: stubCpu, heapMiB: +(heap / 2 ** 20).toFixed(1), rssMiB: +(rssAfter / 2 ** 20).toFixed(1), heapTotalMiB: +(heapTotal / 2 ** 20).toFixed(1), services: src.store.view().services.size, slices: src.store.view().endpointSlices.size, load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] }));
await src.stop();
stub.kill();
process.exit(0);
