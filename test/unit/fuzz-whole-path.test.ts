// Whole-path fuzz (issue 8): random Services, EndpointSlices and Nodes, valid, malformed and hostile
// (nulls in arrays, wrong types, huge strings, 10,000 ports), through the manifests source's parser,
// the store, the agent's compile, plan and the strict fake data plane (every op checked as a kernel
// reader would need it). A canary Service must stay programmed with its current backend after every
// batch, a change to it must land (the agent never stops syncing), and no sync may fail.
// Bounded: a fixed number of runs of a few objects each, plus one 10,000-port case.
import test from 'ava';
import fc from 'fast-check';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { Metrics } from '../../src/agent/metrics.js';
import { ObjectStore, type Source } from '../../src/source/types.js';
import { CANARY_IP, canarySlice, canarySvc, docsArb, feed } from '../../testing/fuzz-objects.js';

/** checkEvery: the fake's full consistency check after every op is O(maps) per op; at 10,000
 * frontends it runs every checkEvery ops (and once more in the test) */
async function startAgent(t: import('ava').ExecutionContext, checkEvery = 1) {
  const store = new ObjectStore();
  const source: Source = { store, start: async () => {}, stop: async () => {} };
  feed(store, [canarySvc, canarySlice('10.244.1.2')]);
  const dp = new FakeDataplane();
  const check = dp.maps.check.bind(dp.maps);
  let ops = 0;
  dp.maps.check = () => { if (++ops % checkEvery === 0) check(); };
  const metrics = new Metrics({ processMetrics: false });
  const agent = new Agent({ source, dataplane: dp, metrics }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true, detectLocalNodeCidr: true },
    seed: 42, minSyncMs: 0, syncPeriodMs: 60_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const syncErrors = async () => (await metrics.registry.getSingleMetric('kubebpfproxy_sync_errors_total')!.get()).values[0]?.value ?? 0;
  const canaryBackend = () => {
    const fe = [...dp.frontends.values()].find((f) => f.service === 'default/canary' && f.address === CANARY_IP);
    return fe?.backendIds.map((id) => dp.backends.get(id)?.address).join(',');
  };
  return { store, agent, syncErrors, canaryBackend, check, dp: () => dp };
}

test('random hostile objects never stop the agent, fail a sync, or disturb the canary', async (t) => {
  const { store, agent, syncErrors, canaryBackend } = await startAgent(t);
  t.is(canaryBackend(), '10.244.1.2');
  let round = 0;
  const deadline = Date.now() + 30_000;
  await fc.assert(fc.asyncProperty(docsArb, async (docs) => {
    if (Date.now() > deadline) return; // bounded in time as well as in runs, on a loaded machine
    round++;
    feed(store, docs);
    // the canary moves to another backend in the same batch: it must land
    const ip = `10.244.1.${2 + (round % 200)}`;
    feed(store, [canarySlice(ip)]);
    await agent.whenIdle();
    if (await syncErrors() !== 0) throw new Error(`a sync failed after ${JSON.stringify(docs).slice(0, 500)}`);
    if (canaryBackend() !== ip) throw new Error(`canary at ${canaryBackend()}, want ${ip}, after ${JSON.stringify(docs).slice(0, 500)}`);
  }), { numRuns: 100, seed: 0x8fe2 });
  t.true(round > 0);
});

test('a Service with 10,000 ports and a slice to match: programmed, the canary untouched', async (t) => {
  const { store, agent, syncErrors, canaryBackend, check, dp } = await startAgent(t, 5000);
  const ports = Array.from({ length: 10_000 }, (_, i) => ({ name: `p${i}`, port: 1000 + i, targetPort: 1000 + i, protocol: 'TCP' }));
  feed(store, [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'wide', namespace: 'default' }, spec: { clusterIP: '10.96.5.5', ports } },
    { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'wide-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'wide' } },
      addressType: 'IPv4', ports: ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
      endpoints: [{ addresses: ['10.244.3.3'], conditions: { ready: true }, nodeName: 'n2' }, null] },
  ]);
  await agent.whenIdle();
  t.is(await syncErrors(), 0);
  check();
  t.is(canaryBackend(), '10.244.1.2');
  t.is([...dp().frontends.values()].filter((f) => f.service === 'default/wide').length, 10_000, 'every port programmed');
  feed(store, [canarySlice('10.244.1.9')]);
  await agent.whenIdle();
  t.is(canaryBackend(), '10.244.1.9', 'still syncing');
});
