// Traffic policies from Service to kernel flags: compile marks what kube-proxy drops or masquerades,
// the plan carries it, the lb_frontends value has the flag, and the TypeScript packet walk (which the
// datapath tests hold the programs to) lands where kube-proxy's rules would. Upstream references:
// kubernetes pkg/proxy/nftables/proxier.go syncProxyRules ("Set up internal traffic handling":
// masqueradeAll, else localDetector.IfNotLocal; the external traffic chain: masquerade unless
// ExternalPolicyLocal; the "has no local endpoints" drop vs the "has no endpoints" reject).
import test from 'ava';
import { compile, type CompileOptions } from '../../src/compile/compile.js';
import { buildPlan } from '../../src/plan/plan.js';
import { walkFirstPacket, type WalkPacket } from '../../src/dataplane/bpf/walk.js';
import { frontendValue } from '../../src/dataplane/bpf/map-writer.js';
import * as L from '../../src/dataplane/bpf/layout.js';
import type { Snapshot } from '../../src/source/types.js';
import type { Plan } from '../../src/plan/types.js';

const node = { metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }] } };

function svc(name: string, spec: Record<string, unknown>) {
  return { metadata: { name, namespace: 'd' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080, ...(spec.type === 'NodePort' || spec.type === 'LoadBalancer' ? { nodePort: spec.nodePort } : {}) }], ...spec } };
}
function slice(name: string, eps: { ip: string; node: string }[]) {
  return { metadata: { name: `${name}-1`, namespace: 'd', labels: { 'kubernetes.io/service-name': name } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080 }],
    endpoints: eps.map((e) => ({ addresses: [e.ip], nodeName: e.node, conditions: { ready: true } })) };
}
function snapshot(services: ReturnType<typeof svc>[], slices: ReturnType<typeof slice>[]): Snapshot {
  const m = (l: { metadata: { name: string } }[]) => new Map(l.map((o) => [`d/${o.metadata.name}`, o])) as Map<string, never>;
  return { services: m(services), endpointSlices: m(slices), nodes: new Map([['n1', node]]) as Map<string, never> };
}
function planOf(snap: Snapshot, opts: Partial<CompileOptions> = {}): Plan {
  const { state, errors } = compile(snap, { nodeName: 'n1', standalone: true, ...opts });
  if (errors.some((e) => e.severity === 'error')) throw new Error(JSON.stringify(errors));
  return buildPlan(state, undefined, { seed: 7 });
}
function fe(plan: Plan, type: string, scope: string) {
  const f = [...plan.frontends.values()].find((x) => x.type === type && x.scope === scope);
  if (!f) throw new Error(`no ${type} ${scope} frontend`);
  return f;
}
const pkt = (dst: string, dport: number, o: Partial<WalkPacket> = {}): WalkPacket => ({ src: '192.168.50.7', sport: 40000, dst, dport, protocol: 'TCP', external: true, ...o });

test('eTP=Local with endpoints only elsewhere: dropped (flag and walk), not refused; no endpoints at all: refused', (t) => {
  const remote = [{ ip: '10.244.2.2', node: 'n2' }];
  const plan = planOf(snapshot(
    [svc('local', { clusterIP: '10.96.0.1', type: 'NodePort', nodePort: 30001, externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local' }),
      svc('none', { clusterIP: '10.96.0.2', type: 'NodePort', nodePort: 30002, externalTrafficPolicy: 'Local' })],
    [slice('local', remote)]));
  const np = [...plan.frontends.values()].find((f) => f.port === 30001 && f.scope === 'external')!;
  t.true(np.dropNoLocal);
  t.is(frontendValue(np).flags & L.LB_FE_F_DROP_NO_LOCAL, L.LB_FE_F_DROP_NO_LOCAL);
  const w = walkFirstPacket(plan, pkt('192.168.1.1', 30001));
  t.is(w.verdict, 'drop');
  t.is(w.verdict === 'drop' && w.reason, 'no-local-backend');
  // iTP=Local clusterIP likewise (the pod's view)
  t.is(walkFirstPacket(plan, pkt('10.96.0.1', 80, { external: false, src: '10.244.1.5' })).verdict, 'drop');
  // the internal copy of the eTP=Local NodePort (pods, host) goes to the cluster-wide endpoints
  t.is(walkFirstPacket(plan, pkt('192.168.1.1', 30001, { external: false, src: '10.244.1.5' })).verdict, 'translate');
  // a Service without any endpoint is rejected, as upstream ("has no endpoints")
  const none = [...plan.frontends.values()].find((f) => f.port === 30002 && f.scope === 'external')!;
  t.falsy(none.dropNoLocal);
  t.is(walkFirstPacket(plan, pkt('192.168.1.1', 30002)).verdict, 'reject');
});

test('eTP=Cluster masquerades every flow to its external addresses, a local backend\'s too; eTP=Local keeps the source', (t) => {
  const local = [{ ip: '10.244.1.2', node: 'n1' }];
  const plan = planOf(snapshot(
    [svc('c', { clusterIP: '10.96.0.1', type: 'NodePort', nodePort: 30001 }),
      svc('l', { clusterIP: '10.96.0.2', type: 'NodePort', nodePort: 30002, externalTrafficPolicy: 'Local' })],
    [slice('c', local), slice('l', local)]));
  const c = [...plan.frontends.values()].find((f) => f.port === 30001)!;
  t.is(c.masquerade, 'all');
  t.is(frontendValue(c).flags & L.LB_FE_F_MASQ_ALL, L.LB_FE_F_MASQ_ALL);
  const wc = walkFirstPacket(plan, pkt('192.168.1.1', 30001));
  t.true(wc.verdict === 'translate' && wc.backend.local && wc.snat, 'local backend, masqueraded');
  // a pod reaching the eTP=Cluster NodePort is masqueraded too (upstream: pod traffic included)
  const wp = walkFirstPacket(plan, pkt('192.168.1.1', 30001, { external: false, src: '10.244.3.3', fromPods: true }));
  t.true(wp.verdict === 'translate' && wp.snat);
  const wl = walkFirstPacket(plan, pkt('192.168.1.1', 30002));
  t.true(wl.verdict === 'translate' && !wl.snat, 'eTP=Local: source preserved');
  // the clusterIP is not masqueraded without masqueradeAll or a local detector (upstream's no-op detector)
  t.is(fe(plan, 'ClusterIP', 'internal').masquerade, undefined);
  const wi = walkFirstPacket(plan, pkt('10.96.0.1', 80));
  t.true(wi.verdict === 'translate' && !wi.snat);
});

test('masqueradeAll and detectLocal: clusterIP flows masqueraded (all, or from outside the pods), per family', (t) => {
  const snap = snapshot([svc('c', { clusterIP: '10.96.0.1' })], [slice('c', [{ ip: '10.244.2.2', node: 'n2' }])]);
  const all = planOf(snap, { masqueradeAll: true });
  t.is(fe(all, 'ClusterIP', 'internal').masquerade, 'all');
  t.is(frontendValue(fe(all, 'ClusterIP', 'internal')).flags & L.LB_FE_F_MASQ_ALL, L.LB_FE_F_MASQ_ALL);
  const wa = walkFirstPacket(all, pkt('10.96.0.1', 80, { external: false, src: '10.244.1.5', fromPods: true }));
  t.true(wa.verdict === 'translate' && wa.snat, 'masqueradeAll: a pod too');

  const det = planOf(snap, { detectLocalFamilies: [4] });
  const f = fe(det, 'ClusterIP', 'internal');
  t.is(f.masquerade, 'offCluster');
  t.is(frontendValue(f).flags & L.LB_FE_F_MASQ_OFF_CLUSTER, L.LB_FE_F_MASQ_OFF_CLUSTER);
  const off = walkFirstPacket(det, pkt('10.96.0.1', 80));
  const pod = walkFirstPacket(det, pkt('10.96.0.1', 80, { external: false, src: '10.244.1.5', fromPods: true }));
  t.true(off.verdict === 'translate' && off.snat, 'off-cluster client masqueraded');
  t.true(pod.verdict === 'translate' && !pod.snat, 'pod keeps its source');
  // a detector for IPv6 only leaves the IPv4 clusterIP alone
  t.is(fe(planOf(snap, { detectLocalFamilies: [6] }), 'ClusterIP', 'internal').masquerade, undefined);
});
