// A long apply must not stall the agent's own HTTP servers (issue 7): every map write is a system
// call, and a write to a map-in-map (a Maglev swap) waits for an RCU grace period. applyAsync (what
// BpfDataplane.apply runs) writes each batch on libuv's thread pool and pauses between chunks of
// work, so a request to this process is answered within one chunk, whatever the apply's length.
// Asserted by order, not by time: the request started after the apply completes before it.
import test from 'ava';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NodeState } from '../../src/model/compiled.js';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan } from '../../src/plan/plan.js';
import type { BpfMap } from '../../src/dataplane/bpf/native/map.js';
import { loadTemp } from './fixtures/dataplane.js';
import { isRoot } from './fixtures/util.js';

const SEED = 0x1234;

function services(n: number, endpoints: number): NodeState {
  const state: NodeState = { frontends: [] };
  for (let i = 0; i < n; i++) {
    const backends = Array.from({ length: endpoints }, (_, j) => ({ address: `10.${64 + (i >> 8)}.${i & 255}.${j + 1}`, port: 8080, terminating: false, local: false }));
    state.frontends.push({
      service: `ns/svc-${i}`, portName: 'http', type: 'ClusterIP', protocol: 'TCP', scope: 'internal', address: `10.96.${i >> 8}.${i & 255}`,
      port: 80, backends, sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
    });
  }
  return state;
}

function request(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    // a connection of its own (agent: false): a socket kept alive from the first request is closed by
    // the server 5 s after its answer (keepAliveTimeout), and when a slow apply puts that between the
    // two requests, the second one's reuse of it was reset (ECONNRESET)
    const req = get({ host: '127.0.0.1', port, path: '/healthz', timeout: 60_000, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 60 s')));
    req.on('error', reject);
  });
}

if (!isRoot) {
  test('apply-async tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('an HTTP request to this process is answered while thousands of Maglev tables are applied, before the apply ends', async (t) => {
    const d = loadTemp(t);
    const server: Server = createServer((_req, res) => { res.end('ok'); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => { server.close(); });
    const port = (server.address() as AddressInfo).port;

    const N = 3000;
    const plan = buildPlan(services(N, 10), undefined, { seed: SEED });
    const ops = diffPlans(undefined, plan);

    const order: string[] = [];
    const applying = d.maps.applyAsync(ops).then((r) => { order.push('apply'); return r; });
    // started after the apply: its connection, request and response each need the event loop
    const answered = request(port).then((body) => { order.push('request'); return body; });
    const [res, body] = await Promise.all([applying, answered]);
    t.is(body, 'ok');
    t.is(res.tables, N);
    t.deepEqual(order, ['request', 'apply'], 'the request completed before the apply did');
    const back = d.maps.readPlan();
    t.is(back.frontends.size, N);
    t.is(back.backends.size, N * 10);
    // the tables were filled beside the other writes (map-writer.ts startFill, a fill job on background
    // threads joined a chunk per turn): a sample of them, the first and last included, holds the plan's slots
    const all = [...plan.tables.values()];
    let differ = 0;
    for (const tb of all.filter((_, i) => i % 97 === 0 || i === all.length - 1)) {
      const got = d.maps.readTable(tb.id, tb.m);
      if (!got || got.length !== tb.m || got.some((v, j) => v !== tb.slots[j])) differ++;
    }
    t.is(differ, 0, 'tables whose slots in lb_maglev_slots differ from the plan');

    // the control: the synchronous apply() holds the event loop until it ends, so the same request
    // can only complete after it (this is what the agent did before)
    const order2: string[] = [];
    const answered2 = request(port).then(() => { order2.push('request'); });
    d.maps.apply(diffPlans(plan, buildPlan({ frontends: [] }, plan, { seed: SEED })));
    order2.push('apply');
    await answered2;
    t.deepEqual(order2, ['apply', 'request']);
    t.true(d.maps.isEmpty());
  });

  test('a first apply gives its large batch buffers back once the kernel holds their entries (map-writer, releaseArray); the maps hold the plan', async (t) => {
    const d = loadTemp(t);
    // the large buffers each batch of these maps was given
    const seen: { map: string; bufs: Buffer[] }[] = [];
    const maps = (d.maps as unknown as { maps: Record<string, BpfMap> }).maps;
    for (const name of ['lb_backends', 'lb_members'] as const) {
      const m = maps[name]!;
      const f = m.updateBatchAsync.bind(m);
      m.updateBatchAsync = async (keys: Buffer, values: Buffer, ...rest: unknown[]) => {
        const r = await (f as (...a: unknown[]) => Promise<void>)(keys, values, ...rest);
        seen.push({ map: name, bufs: [keys, values].filter((b) => b.byteLength >= 64 * 1024) });
        return r;
      };
    }
    const N = 3000;
    const plan = buildPlan(services(N, 10), undefined, { seed: SEED });
    await d.maps.applyAsync(diffPlans(undefined, plan));
    // lb_backends: 30,000 keys and values; lb_members: 30,000 keys (its values, 1 byte each, stay small)
    t.deepEqual(seen.map((x) => `${x.map} ${x.bufs.length}`).sort(), ['lb_backends 2', 'lb_members 1']);
    for (const x of seen) for (const b of x.bufs) t.true((b.buffer as ArrayBuffer).detached && b.length === 0, `${x.map}: a buffer of ${b.byteLength} bytes not given back`);
    const back = d.maps.readPlan();
    t.is(back.frontends.size, N);
    t.is(back.backends.size, N * 10);
    t.deepEqual([...back.backends.keys()].sort(), [...plan.backends.keys()].sort());
  });

  test('a first apply writes lb_backends backendsPerBatch entries at a time, each batch\'s buffers given back before the next is encoded; the maps hold the plan', async (t) => {
    const d = loadTemp(t, { maps: { backendsPerBatch: 4096 } });
    const m = (d.maps as unknown as { maps: Record<string, BpfMap> }).maps.lb_backends!;
    const batches: { count: number; valuesLive: boolean[] }[] = [];
    const f = m.updateBatchAsync.bind(m);
    m.updateBatchAsync = async (keys: Buffer, values: Buffer, count: number, ...rest: unknown[]) => {
      // the earlier batches' values (4096 x 20 bytes: over releaseArray's 64 KiB) are gone by now
      batches.push({ count, valuesLive: [] });
      for (const b of seen) batches[batches.length - 1]!.valuesLive.push(!(b.buffer as ArrayBuffer).detached);
      seen.push(values);
      return (f as (...a: unknown[]) => Promise<void>)(keys, values, count, ...rest);
    };
    const seen: Buffer[] = [];
    const N = 3000;
    const plan = buildPlan(services(N, 10), undefined, { seed: SEED });
    const res = await d.maps.applyAsync(diffPlans(undefined, plan));
    // 30,000 backends: 7 batches of 4096 and one of 1328
    t.deepEqual(batches.map((b) => b.count), [...Array<number>(7).fill(4096), 30_000 - 7 * 4096]);
    t.true(batches.every((b) => b.valuesLive.every((live) => !live)), JSON.stringify(batches.map((b) => b.valuesLive)));
    t.true(res.batches >= batches.length);
    const back = d.maps.readPlan();
    t.is(back.backends.size, N * 10);
    t.deepEqual([...back.backends.values()].sort((a, b) => a.id - b.id), [...plan.backends.values()].sort((a, b) => a.id - b.id));
  });
}
