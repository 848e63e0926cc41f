// What storing a first list costs on the main thread, as the kube source stores it page by page
// (ObjectStore.upsert per object), with the agent's store listener behind it (Agent.start's onChange:
// metrics, the trigger-time annotation, the runner, CompileAhead's note) and with none: N slimmed
// Services and N slices (apiserver-objects.ts slimStore), each way in a fresh store, order
// alternating, ROUNDS rounds. One JSON line per round: main-thread CPU ms of each way.
//   node --expose-gc --max-semi-space-size=16 --import=tsx bench/first-store.ts [N] [ROUNDS]
import { Agent } from '../src/agent/agent.js';
import { Metrics } from '../src/agent/metrics.js';
import { FakeDataplane } from '../src/dataplane/fake.js';
import { ObjectStore, type Kind, type Source } from '../src/source/types.js';
import { slimStore } from './apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from './gen.js';

const n = Number(process.argv[2] ?? 10000);
const rounds = Number(process.argv[3] ?? 4);
const shape: ClusterShape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
const all = slimStore(shape).view();
const objects: [Kind, never][] = [...[...all.services.values()].map((o) => ['Service', o] as [Kind, never]), ...[...all.endpointSlices.values()].map((o) => ['EndpointSlice', o] as [Kind, never])];
const cpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

/** the objects upserted into the source's store inside start(), timed */
class TimedSource implements Source {
  readonly store = new ObjectStore();
  ms = 0;
  async start(): Promise<void> {
    const t0 = cpu();
    for (const [kind, o] of objects) this.store.upsert(kind, o);
    this.ms = cpu() - t0;
  }
  async stop(): Promise<void> {}
}

async function one(withAgent: boolean): Promise<number> {
  gc();
  const source = new TimedSource();
  if (!withAgent) {
    await source.start();
    return source.ms;
  }
  const agent = new Agent({ source, dataplane: new FakeDataplane(), metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: NODE_NAME, nodeIPs: ['192.168.1.10'] }, seed: 42, minSyncMs: 60_000, syncPeriodMs: 600_000,
  });
  await agent.start();
  await agent.stop();
  return source.ms;
}

for (let r = 0; r < rounds; r++) {
  const res: Record<string, number> = {};
  for (const w of r % 2 ? [true, false] : [false, true]) res[w ? 'agentMs' : 'storeMs'] = Math.round(await one(w));
  console.log(JSON.stringify({ round: r + 1, n, ...res }));
}
