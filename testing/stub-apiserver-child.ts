// The stub API server (stub-apiserver.ts) as a process of its own, for lab tests whose agents run in
// network namespaces: started inside the lab (`node --import=tsx stub-apiserver-child.ts HOST`), it
// listens on HOST and takes one JSON command per stdin line, answering each with one JSON line:
//   {"op":"apply","kind":"Service","obj":{...}}       {"op":"remove","kind":"Service","namespace":"default","name":"x"}
//   {"op":"down"} (stop listening, cut every watch)   {"op":"up"} (listen again on the same port)
//   {"op":"compact"} (watches from older versions get 410 Gone: clients must relist)
// The first line it prints is {"ready":true,"url":...,"kubeconfig":...}.
import { createInterface } from 'node:readline';
import { StubApiServer, type StubKind } from './stub-apiserver.js';

const host = process.argv[2] ?? '127.0.0.1';
const s = new StubApiServer();
s.host = host;
s.closeOnExit();
await s.listen();
process.stdout.write(JSON.stringify({ ready: true, url: s.url, kubeconfig: s.kubeconfigPath() }) + '\n');
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let out: unknown;
  try {
    const c = JSON.parse(line) as { op: string; kind?: StubKind; obj?: Record<string, unknown>; namespace?: string; name?: string };
    if (c.op === 'apply') out = { ok: true, rv: (s.apply(c.kind!, c.obj as never).metadata as { resourceVersion: string }).resourceVersion };
    else if (c.op === 'remove') out = { ok: s.remove(c.kind!, c.namespace, c.name!) };
    else if (c.op === 'down') { await s.stopListening(); out = { ok: true }; }
    else if (c.op === 'up') { await s.listen(); out = { ok: true }; }
    else if (c.op === 'compact') { s.compact(); out = { ok: true }; }
    else out = { ok: false, error: `unknown op ${c.op}` };
  } catch (e) {
    out = { ok: false, error: (e as Error).message };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
await s.close();
