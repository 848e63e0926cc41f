// Shared by the plan and diff tests: small NodeState builders and fast-check arbitraries whose pools
// are small enough that two random states overlap (kept, changed, added and removed objects).
import fc from 'fast-check';
import type { NodeBackend, NodeFrontend, NodeState, Protocol, Scope } from '../../src/model/compiled.js';

export function be(address: string, port = 8080, terminating = false, local = false): NodeBackend {
  return { address, port, terminating, local };
}

export function fe(address: string, port: number, backends: NodeBackend[], more: Partial<NodeFrontend> = {}): NodeFrontend {
  return {
    service: more.service ?? `default/svc-${address}-${port}`,
    portName: '',
    type: 'ClusterIP',
    address,
    port,
    protocol: 'TCP',
    scope: 'internal',
    backends,
    sessionAffinitySeconds: 0,
    sourceRanges: [],
    snatRemote: false,
    ...more,
  };
}

const backendPool = [
  '10.244.1.2', '10.244.1.3', '10.244.1.10', '10.244.2.2', '10.244.2.7', '10.244.3.1', '10.244.3.9',
  'fd00:10:244::2', 'fd00:10:244::a',
];
const frontendPool: { address: string; port: number; protocol: Protocol; scope: Scope }[] = [];
for (const address of ['10.96.0.10', '10.96.0.11', '10.96.1.1', '192.168.50.2', 'fd00:10:96::1']) {
  for (const port of [53, 80]) {
    for (const protocol of ['TCP', 'UDP'] as Protocol[]) frontendPool.push({ address, port, protocol, scope: 'internal' });
  }
}
frontendPool.push({ address: '192.168.50.2', port: 30080, protocol: 'TCP', scope: 'external' });
frontendPool.push({ address: '0.0.0.0', port: 30080, protocol: 'TCP', scope: 'external' });
const rangePool = ['10.0.0.0/8', '192.168.0.0/16', '172.16.0.0/12', 'fd00::/8'];

const arbBackends = fc.uniqueArray(
  fc.record({ a: fc.constantFrom(...backendPool), p: fc.constantFrom(8080, 9090), t: fc.boolean(), l: fc.boolean() }),
  { selector: (x) => `${x.a}|${x.p}`, maxLength: 7 },
).map((xs) => xs.map((x) => be(x.a, x.p, x.t, x.l)));

export const arbState: fc.Arbitrary<NodeState> = fc.uniqueArray(
  fc.record({
    key: fc.constantFrom(...frontendPool),
    backends: arbBackends,
    // a few shared backend lists make table sharing likely
    shared: fc.boolean(),
    affinity: fc.constantFrom(0, 0, 10800),
    ranges: fc.subarray(rangePool, { maxLength: 2 }),
    snat: fc.boolean(),
  }),
  { selector: (x) => `${x.key.address}|${x.key.port}|${x.key.protocol}|${x.key.scope}`, maxLength: 10 },
).map((xs) => ({
  frontends: xs.map((x) => fe(x.key.address, x.key.port,
    x.shared ? [be('10.244.1.2'), be('10.244.2.2'), be('10.244.3.1')] : x.backends,
    { protocol: x.key.protocol, scope: x.key.scope, sessionAffinitySeconds: x.affinity, sourceRanges: x.ranges, snatRemote: x.snat })),
}));

export function counts(table: ArrayLike<number>): Map<number, number> {
  const c = new Map<number, number>();
  for (let i = 0; i < table.length; i++) c.set(table[i]!, (c.get(table[i]!) ?? 0) + 1);
  return c;
}
