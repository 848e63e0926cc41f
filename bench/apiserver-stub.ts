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
//   mut KIND I ON  Service I's one change of a kind (bench/first-change-agent.ts --kind), made (ON 1) or
//                 undone (ON 0: the object as at the start): ep-add (an 11th endpoint), ep-term
//                 (endpoint 0 terminating), ep-notready (endpoint 0 not ready), slice (a second
//                 EndpointSlice of 5 endpoints), port (a second port), type (a NodePort Service,
//                 I % 10 == 0 and I < 27680, turned ClusterIP; undone: NodePort again), etp (externalTrafficPolicy Local), affinity (sessionAffinity ClientIP), label (a
//                 label only), ep100 (ON > 0: 100 endpoints, the first moved by ON; 0: back to 10)
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
s.closeOnExit();
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
  } else if (op === 'mut' && Number(b) >= 0) {
    const err = mutate(a!, Number(b), Number(line.trim().split(/\s+/)[3] ?? 1));
    out = err ? { ok: false, error: err } : { ok: true, at: Date.now() };
  } else out = { ok: false, error: `unknown command ${JSON.stringify(line)}` };
  process.stdout.write(JSON.stringify(out) + '\n');
}
await s.close();

/** `mut KIND I ON`: Service i's objects with (on) or without (0) a change of that kind; an error's text or undefined */
function mutate(kind: string, i: number, on: number): string | undefined {
  const svc = apiService(i, shape), slice = apiSlice(i, shape);
  const eps = slice.endpoints as Record<string, any>[];
  switch (kind) {
    case 'ep-add':
      if (on) eps.push({ ...structuredClone(eps[1]), addresses: [`10.127.${(i >> 8) & 255}.${i & 255}`] });
      s.apply('EndpointSlice', slice as never);
      return;
    case 'ep-term':
      if (on) eps[0]!.conditions = { ready: false, serving: true, terminating: true };
      s.apply('EndpointSlice', slice as never);
      return;
    case 'ep-notready':
      if (on) eps[0]!.conditions = { ready: false, serving: false, terminating: false };
      s.apply('EndpointSlice', slice as never);
      return;
    case 'ep100': {
      if (on) {
        // 100 endpoints outside the clusterIPs and the pods: 10.64-95.x.J
        const base = structuredClone(eps[0]!);
        eps.length = 0;
        for (let j = 0; j < 100; j++) {
          const host = j === 0 ? 100 + (on % 100) : j;
          eps.push({ ...structuredClone(base), addresses: [`10.${64 + ((i >> 8) & 31)}.${i & 255}.${host}`], nodeName: j % 2 ? 'node-b' : base.nodeName });
        }
      }
      s.apply('EndpointSlice', slice as never);
      return;
    }
    case 'slice': {
      const second = apiSlice(i, shape);
      second.metadata.name = `svc-${i}-second`;
      // 10.112-116.x.y: outside the clusterIPs (10.96.0.0/12) and the pods (10.128.0.0/9)
      second.endpoints = (second.endpoints as Record<string, any>[]).slice(0, 5).map((e, j) => ({ ...e, addresses: [`10.${112 + j}.${(i >> 8) & 255}.${i & 255}`] }));
      if (on) s.apply('EndpointSlice', second as never);
      else if (!s.remove('EndpointSlice', second.metadata.namespace, second.metadata.name)) return `no second slice of Service ${i}`;
      return;
    }
    case 'port':
      if (on) svc.spec.ports.push({ name: 'https', port: 443, targetPort: 8443, protocol: 'TCP' });
      break;
    case 'type':
      if (!on) break;
      if (svc.spec.type === 'NodePort') {
        svc.spec.type = 'ClusterIP';
        for (const p of svc.spec.ports) delete p.nodePort;
      } else return `Service ${i} is not a NodePort (type takes NodePort Services: I % 10 == 0, I < 27680)`;
      break;
    case 'etp':
      if (svc.spec.type !== 'NodePort') return `Service ${i} is not a NodePort (etp takes NodePort Services)`;
      if (on) svc.spec.externalTrafficPolicy = 'Local';
      break;
    case 'affinity':
      if (on) svc.spec.sessionAffinity = 'ClientIP';
      break;
    case 'label':
      if (on) svc.metadata.labels = { ...svc.metadata.labels, 'bench/changed': String(on) };
      break;
    default:
      return `unknown kind ${kind}`;
  }
  s.apply('Service', svc as never);
  return undefined;
}
