// The stub API server (testing/stub-apiserver.ts) for the agent benches, as a process of its own so
// it can run inside the agent's network namespace: `node --import=tsx bench/apiserver-stub.ts HOST N`
// holds the Node, N Services and N EndpointSlices of 10 endpoints dressed as an API server returns
// them (bench/apiserver-objects.ts), listens on HOST, and prints {"ready":true,"kubeconfig":...}.
// Each object is serialized once, when stored (testing/stub-apiserver.ts): a LIST page costs this
// process a copy, not a JSON.stringify of 500 objects (a real API server's CPU is not the node's).
// Then one command per stdin line, one JSON line back:
//   change I V    EndpointSlice of Service I with its first endpoint moved (variant V), trigger time now
//   create I      Service I and its EndpointSlice (I past N: a new Service)
//   delete I      Service I and its EndpointSlice removed
import { createInterface } from 'node:readline';
import { StubApiServer } from '../testing/stub-apiserver.js';
import { apiNode, apiService, apiSlice } from './apiserver-objects.js';
import type { ClusterShape } from './gen.js';

const host = process.argv[2] ?? '127.0.0.1';
const n = Number(process.argv[3] ?? 0);
if (!Number.isInteger(n) || n < 0) throw new Error(`usage: apiserver-stub.ts HOST N (got N=${process.argv[3]})`);
const shape: ClusterShape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };

const s = new StubApiServer();
s.host = host;
// KBP_STUB_LIST_DELAY_MS: each LIST page answered that much later (a real API server's time per page)
s.listDelayMs = Number(process.env.KBP_STUB_LIST_DELAY_MS ?? 0);
s.apply('Node', apiNode() as never);
for (let i = 0; i < n; i++) {
  s.apply('Service', apiService(i, shape) as never);
  s.apply('EndpointSlice', apiSlice(i, shape) as never);
}
await s.listen();
process.stdout.write(JSON.stringify({ ready: true, url: s.url, kubeconfig: s.kubeconfigPath() }) + '\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [op, a, b] = line.trim().split(/\s+/);
  if (!op) continue;
  let out: unknown;
  if (op === 'change' && Number(a) >= 0 && Number(a) < n) {
    s.apply('EndpointSlice', apiSlice(Number(a), shape, Number(b) || 1) as never);
    out = { ok: true, at: Date.now() };
  } else if (op === 'create' && Number(a) >= 0) {
    s.apply('Service', apiService(Number(a), shape) as never);
    s.apply('EndpointSlice', apiSlice(Number(a), shape) as never);
    out = { ok: true, at: Date.now() };
  } else if (op === 'delete' && Number(a) >= 0) {
    const svc = apiService(Number(a), shape), slice = apiSlice(Number(a), shape);
    const gone = s.remove('EndpointSlice', slice.metadata.namespace, slice.metadata.name) && s.remove('Service', svc.metadata.namespace, svc.metadata.name);
    out = { ok: gone, at: Date.now(), ...(!gone && { error: `no Service ${a}` }) };
  } else out = { ok: false, error: `unknown command ${JSON.stringify(line)}` };
  process.stdout.write(JSON.stringify(out) + '\n');
}
await s.close();
