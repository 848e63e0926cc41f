// Enum values a newer API server may send (issue 8): kube-proxy's code has no case for them and
// falls back to its default, so the Service keeps working; we do the same, with one warning naming
// the field. Each case names the upstream function whose reading it follows.
import test from 'ava';
import { compile } from '../../src/compile/compile.js';
import { node, slice, snap, svc } from './compile-helpers.js';

const ep = slice('ns1/x-1', 'x', [{ port: 80 }], [{ ip: '10.244.1.1', node: 'n1' }, { ip: '10.244.2.2', node: 'n2' }]);

function run(spec: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const res = compile(snap([svc('ns1/x', { clusterIP: '10.96.0.10', ports: [{ port: 80 }], ...spec }, extra)], [ep], [node('n1', ['192.168.1.1'])]),
    { nodeName: 'n1', standalone: true });
  return { ...res, rejected: res.errors.filter((e) => e.severity === 'error'), warnings: res.errors.filter((e) => e.severity === 'warning') };
}

const cases: [string, Record<string, unknown>, string, string, Record<string, unknown>?][] = [
  // newBaseServiceInfo: stickyMaxAgeSeconds only for ServiceAffinityClientIP
  ['unknown sessionAffinity: no affinity', { sessionAffinity: 'Cookie' }, 'spec.sessionAffinity', 'newBaseServiceInfo'],
  // apiservice.ExternalPolicyLocal / InternalPolicyLocal: only "Local" is Local
  ['unknown externalTrafficPolicy: Cluster', { type: 'NodePort', externalTrafficPolicy: 'Nearest', ports: [{ port: 80, nodePort: 30080 }] }, 'spec.externalTrafficPolicy', 'ExternalPolicyLocal'],
  ['unknown internalTrafficPolicy: Cluster', { internalTrafficPolicy: 'Node' }, 'spec.internalTrafficPolicy', 'InternalPolicyLocal'],
  // kube-proxy never reads trafficDistribution (topologyModeFromHints reads hints only)
  ['unknown trafficDistribution: ignored', { trafficDistribution: 'PreferFar' }, 'spec.trafficDistribution', 'topologyModeFromHints'],
  // ipFamilyPolicy is read by the API server's allocator, never by kube-proxy
  ['unknown ipFamilyPolicy', { ipFamilyPolicy: 'PreferTripleStack' }, 'spec.ipFamilyPolicy', 'GetClusterIPByFamily'],
  // ShouldSkipService skips only headless and ExternalName: any other type keeps its clusterIP
  ['unknown type: served as ClusterIP', { type: 'Balanced' }, 'spec.type', 'ShouldSkipService'],
];

for (const [name, spec, field] of cases) {
  test(`enum: ${name}`, (t) => {
    const { state, rejected, warnings } = run(spec);
    t.deepEqual(rejected, []);
    t.is(warnings.filter((w) => w.field === field).length, 1, JSON.stringify(warnings));
    const cip = state.frontends.find((f) => f.type === 'ClusterIP');
    t.deepEqual(cip?.backends.map((b) => b.address), ['10.244.1.1', '10.244.2.2']);
    t.is(cip?.sessionAffinitySeconds, 0);
    // an unknown policy is not Local: the NodePort reaches both backends
    for (const f of state.frontends.filter((x) => x.type === 'NodePort')) t.is(f.backends.length, 2);
  });
}

test('enum: an ingress whose ipMode is neither VIP nor unset is skipped, the rest of the Service works (IsVIPMode)', (t) => {
  const { state, rejected, warnings } = run({ type: 'LoadBalancer', ports: [{ port: 80, nodePort: 30080 }] }, {
    status: { loadBalancer: { ingress: [{ ip: '192.168.200.1', ipMode: 'Tunnel' }, { ip: '192.168.200.2' }, { ip: '192.168.200.3', ipMode: 'Proxy' }, { ip: '192.168.200.4', ipMode: 'VIP' }] } },
  });
  t.deepEqual(rejected, []);
  t.deepEqual(warnings.map((w) => w.field), ['status.loadBalancer.ingress[0].ipMode']);
  t.deepEqual(state.frontends.filter((f) => f.type === 'LoadBalancer' && f.scope === 'external').map((f) => f.address), ['192.168.200.2', '192.168.200.4']);
  t.truthy(state.frontends.find((f) => f.type === 'ClusterIP'));
});

test('enum: a port of an unknown protocol is not served, the other ports are', (t) => {
  const { state, rejected, warnings } = run({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81, protocol: 'QUIC' }] });
  t.deepEqual(rejected, []);
  t.deepEqual(warnings.map((w) => w.field), ['spec.ports[1].protocol']);
  t.deepEqual(state.frontends.map((f) => `${f.portName}/${f.port}`), ['a/80']);
});

test('enum: a slice port of an unknown protocol is skipped, its other ports are used', (t) => {
  const sl = slice('ns1/x-1', 'x', [{ port: 80 }, { name: 'q', port: 81, protocol: 'QUIC' }], [{ ip: '10.244.1.1' }]);
  const res = compile(snap([svc('ns1/x', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] })], [sl], [node('n1', ['192.168.1.1'])]), { nodeName: 'n1', standalone: true });
  t.deepEqual(res.errors.map((e) => `${e.severity} ${e.field}`), ['warning ports[1].protocol']);
  t.deepEqual(res.state.frontends[0]?.backends.map((b) => b.address), ['10.244.1.1']);
});

test('enum: a value of the wrong type still rejects the Service (the API server never sends one)', (t) => {
  const { rejected } = run({ sessionAffinity: 7 });
  t.deepEqual(rejected.map((e) => e.field), ['spec.sessionAffinity']);
});
