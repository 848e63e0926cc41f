// The child of bench/apiserver.bench.ts: the real Kubernetes source (client-node informers, paged
// LISTs, watches) against the stub API server's kubeconfig, alone in its process so its RSS is its
// own. Prints JSON lines: {listedMs, rssMiB, heapMiB, objects} once synced, then {watchMs} when the
// object named on stdin has arrived through the watch.
// An optional second argument names another checkout's src/source/kube.ts: the same-run baseline.
import { silentLogger } from '../src/util/log.js';
import type { createKubeSource as Create } from '../src/source/kube.js';

const [kubeconfig, module = '../src/source/kube.js'] = process.argv.slice(2);
if (!kubeconfig) throw new Error('usage: apiserver-client.ts KUBECONFIG [KUBE_SOURCE_MODULE]');
const { createKubeSource } = (await import(module)) as { createKubeSource: typeof Create };
const t0 = performance.now();
const source = createKubeSource({ kubeconfig, logger: silentLogger, nodeName: 'bench-node' });
await source.start();
const listedMs = performance.now() - t0;
const snap = source.store.snapshot();
global.gc?.();
const rssMiB = process.memoryUsage().rss / 2 ** 20;
const heapMiB = process.memoryUsage().heapUsed / 2 ** 20;
process.stdout.write(JSON.stringify({ listedMs, rssMiB, heapMiB, objects: snap.services.size + snap.endpointSlices.size }) + '\n');
// wait for the key the parent names, then report how long the watch took to bring it
process.stdin.setEncoding('utf8');
for await (const line of process.stdin) {
  const [key, sentAt] = String(line).trim().split(' ');
  if (!key) continue;
  const deadline = Date.now() + 30_000;
  while (!source.store.get('Service', key) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  process.stdout.write(JSON.stringify({ watchMs: Date.now() - Number(sentAt), found: !!source.store.get('Service', key) }) + '\n');
  break;
}
await source.stop();
