// Service ports with a Local traffic policy, endpoints elsewhere and none on this node: kube-proxy
// counts them in syncProxyRules (serviceNoLocalEndpointsTotalInternal / External, pkg/proxy/iptables
// and nftables proxier.go) into kubeproxy_sync_proxy_rules_no_local_endpoints_total, and drops their
// traffic rather than rejecting it. compile reports both: the counts, and the frontends to drop.
import test from 'ava';
import { Compiler, compile } from '../../src/compile/compile.js';
import { node, slice, snap, svc } from './compile-helpers.js';

const nodes = [node('n1', ['192.168.1.1'])];
const opts = { nodeName: 'n1', standalone: true };

const local = svc('ns/local', {
  clusterIP: '10.96.0.10', type: 'NodePort', externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local',
  ports: [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81, nodePort: 30081 }],
});
const remoteOnly = slice('ns/local-1', 'local', [{ name: 'a', port: 80 }, { name: 'b', port: 81 }], [{ ip: '10.244.2.2', node: 'n2' }]);

test('counted per Service port and policy, and the frontends flagged (CategorizeEndpoints hasAnyEndpoints, no local)', (t) => {
  const { state, noLocalEndpoints } = compile(snap([local], [remoteOnly], nodes), opts);
  t.deepEqual(noLocalEndpoints, { IPv4: { internal: 2, external: 2 }, IPv6: { internal: 0, external: 0 } });
  const flagged = state.frontends.filter((f) => f.noLocalEndpoints).map((f) => `${f.type}/${f.port}/${f.scope}`).sort();
  t.deepEqual(flagged, ['ClusterIP/80/internal', 'ClusterIP/81/internal', 'NodePort/30080/external', 'NodePort/30081/external']);
  for (const f of state.frontends) if (f.noLocalEndpoints) t.deepEqual(f.backends, []);
  // in-cluster traffic to the NodePort short-circuits to every endpoint: not dropped
  t.true(state.frontends.filter((f) => f.type === 'NodePort' && f.scope === 'internal').every((f) => !f.noLocalEndpoints && f.backends.length === 1));
});

test('no endpoints at all is not counted: kube-proxy rejects instead (hasEndpoints false)', (t) => {
  const { state, noLocalEndpoints } = compile(snap([local], [], nodes), opts);
  t.deepEqual(noLocalEndpoints.IPv4, { internal: 0, external: 0 });
  t.false(state.frontends.some((f) => f.noLocalEndpoints));
});

test('a serving-terminating endpoint elsewhere counts as an endpoint; a not-serving one does not', (t) => {
  const term = slice('ns/local-1', 'local', [{ name: 'a', port: 80 }], [{ ip: '10.244.2.2', node: 'n2', ready: false, serving: true, terminating: true }]);
  t.is(compile(snap([local], [term], nodes), opts).noLocalEndpoints.IPv4.external, 1);
  const dead = slice('ns/local-1', 'local', [{ name: 'a', port: 80 }], [{ ip: '10.244.2.2', node: 'n2', ready: false, serving: false }]);
  t.is(compile(snap([local], [dead], nodes), opts).noLocalEndpoints.IPv4.external, 0);
});

test('eTP=Local on a ClusterIP Service without externalIPs is not external-Local (apiservice.ExternalPolicyLocal)', (t) => {
  const cip = svc('ns/local', { clusterIP: '10.96.0.10', externalTrafficPolicy: 'Local', ports: [{ name: 'a', port: 80 }] });
  t.deepEqual(compile(snap([cip], [remoteOnly], nodes), opts).noLocalEndpoints.IPv4, { internal: 0, external: 0 });
});

test('the incremental Compiler keeps the counts equal to a fresh compile as endpoints move', (t) => {
  const c = new Compiler(opts);
  const other = svc('ns/other', { clusterIP: '10.96.0.11', internalTrafficPolicy: 'Local', ports: [{ port: 80 }] });
  const otherEps = slice('ns/other-1', 'other', [{ port: 80 }], [{ ip: '10.244.2.9', node: 'n2' }]);
  const steps = [
    snap([local, other], [remoteOnly, otherEps], nodes),
    snap([local, other], [slice('ns/local-1', 'local', [{ name: 'a', port: 80 }, { name: 'b', port: 81 }], [{ ip: '10.244.1.1', node: 'n1' }]), otherEps], nodes),
    snap([local], [remoteOnly], nodes),
    snap([local, other], [remoteOnly, otherEps], [node('n1', ['192.168.1.2'])]),
  ];
  for (const s of steps) t.deepEqual(c.compile(s).noLocalEndpoints, compile(s, opts).noLocalEndpoints);
  t.deepEqual(c.compile(steps[0]!).noLocalEndpoints.IPv4, { internal: 3, external: 2 });
});
