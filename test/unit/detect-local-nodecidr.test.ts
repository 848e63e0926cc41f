// detectLocalMode NodeCIDR: the cluster's own sources are this node's spec.podCIDRs, the first of
// each family (kube-proxy cmd/kube-proxy/app/server_linux.go getLocalDetectors: NodeCIDR ->
// proxyutil.NewDetectLocalByCIDR(podCIDR) per family; a family without one is the no-op detector).
// Upstream waits for the podCIDRs at start and exits on a change (NodePodCIDRHandler, to be
// restarted); the agent follows the Node instead: compile marks clusterIPs of the families the Node
// has a pod CIDR in (masquerade offCluster, syncProxyRules' localDetector.IfNotLocal), and the data
// plane's sources (lb_src_ranges fe_id 0 in BPF) are set before those frontends are written.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { Metrics } from '../../src/agent/metrics.js';
import { Compiler } from '../../src/compile/compile.js';
import { normalizeNode } from '../../src/model/normalize.js';
import type { Snapshot } from '../../src/source/types.js';

const nodeYaml = (spec: string) => `
apiVersion: v1
kind: Node
metadata: { name: n1 }
spec: ${spec}
status: { addresses: [{ type: InternalIP, address: 192.168.1.10 }] }
`;
const svcYaml = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  clusterIPs: [10.96.0.10, fd00:96::10]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{ name: http, port: 80, targetPort: 8080 }]
`;

test('normalizeNode: spec.podCIDRs canonical, spec.podCIDR as fallback, garbage skipped without rejecting the Node', (t) => {
  t.deepEqual(normalizeNode({ metadata: { name: 'n' }, spec: { podCIDRs: ['10.244.1.7/24', 'fd00:244:1::1/64', 'x', 7, null, '10.1.1.1'] } }, 'n')?.podCIDRs,
    ['10.244.1.0/24', 'fd00:244:1::/64']);
  t.deepEqual(normalizeNode({ metadata: { name: 'n' }, spec: { podCIDR: '10.244.2.0/24' } }, 'n')?.podCIDRs, ['10.244.2.0/24']);
  t.is(normalizeNode({ metadata: { name: 'n' }, spec: { podCIDRs: {} } }, 'n')?.podCIDRs, undefined);
  t.is(normalizeNode({ metadata: { name: 'n' }, spec: 'hostile' }, 'n')?.podCIDRs, undefined);
});

test('compile: NodeCIDR marks the clusterIPs of the families the Node has a pod CIDR in, and follows the Node', (t) => {
  const c = new Compiler({ nodeName: 'n1', standalone: true, detectLocalNodeCidr: true });
  const snap = (spec: Record<string, unknown>): Snapshot => ({
    services: new Map([['default/web', { metadata: { name: 'web', namespace: 'default' }, spec: { clusterIPs: ['10.96.0.10', 'fd00:96::10'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack', ports: [{ name: 'http', port: 80 }] } }]]) as Map<string, never>,
    endpointSlices: new Map(),
    nodes: new Map([['n1', { metadata: { name: 'n1' }, spec }]]) as Map<string, never>,
  });
  const marks = (s: Snapshot) => c.compile(s).state.frontends.map((f) => `${f.address} ${f.masquerade ?? '-'}`);
  t.deepEqual(marks(snap({ podCIDRs: ['10.244.1.0/24', 'fd00:244:1::/64'] })), ['10.96.0.10 offCluster', 'fd00:96::10 offCluster']);
  t.deepEqual(c.localSourceCidrs(), ['10.244.1.0/24', 'fd00:244:1::/64']);
  t.deepEqual(marks(snap({ podCIDRs: ['10.244.1.0/24'] })), ['10.96.0.10 offCluster', 'fd00:96::10 -']);
  t.deepEqual(c.localSourceCidrs(), ['10.244.1.0/24']);
  // no pod CIDR yet: upstream's no-op detector
  t.deepEqual(marks(snap({})), ['10.96.0.10 -', 'fd00:96::10 -']);
  t.deepEqual(c.localSourceCidrs(), []);
});

test('agent: NodeCIDR hands the Node\'s pod CIDRs to the data plane before the frontends that rely on them, and follows Node updates', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-nodecidr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'node.yaml'), nodeYaml('{ podCIDRs: [10.244.1.0/24] }'));
  writeFileSync(join(dir, 'web.yaml'), svcYaml);
  const dp = new FakeDataplane();
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', standalone: true, detectLocalNodeCidr: true },
    seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  let sourcesAtFirstWrite: string[] | undefined | null = null;
  const apply = dp.apply.bind(dp);
  dp.apply = async (ops, next) => {
    if (sourcesAtFirstWrite === null) sourcesAtFirstWrite = dp.localSources;
    return apply(ops, next);
  };
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  t.deepEqual(sourcesAtFirstWrite, ['10.244.1.0/24'], 'set before the first frontend was written');
  const masq = () => [...dp.frontends.values()].map((f) => `${f.address} ${f.masquerade ?? '-'}`).sort();
  t.deepEqual(masq(), ['10.96.0.10 offCluster', 'fd00:96::10 -']);

  // the Node gains an IPv6 pod CIDR and moves its IPv4 one
  writeFileSync(join(dir, 'node.yaml'), nodeYaml('{ podCIDRs: [10.244.9.0/24, "fd00:244:9::/64"] }'));
  await source.scan();
  await agent.whenIdle();
  t.deepEqual(dp.localSources, ['10.244.9.0/24', 'fd00:244:9::/64']);
  t.deepEqual(masq(), ['10.96.0.10 offCluster', 'fd00:96::10 offCluster']);

  // and loses them: nothing is told apart any more, nothing is masqueraded for it
  writeFileSync(join(dir, 'node.yaml'), nodeYaml('{}'));
  await source.scan();
  await agent.whenIdle();
  t.deepEqual(dp.localSources, []);
  t.deepEqual(masq(), ['10.96.0.10 -', 'fd00:96::10 -']);
});
