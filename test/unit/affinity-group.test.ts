// Session affinity per Service port, as kube-proxy keeps it: one `recent` list (iptables) or affinity
// set (nftables) per endpoint of the Service port's chain, checked from the clusterIP's chain and the
// external chains alike (pkg/proxy/iptables/proxier.go writeServiceToEndpointRules; nftables'
// writeServiceToEndpointRules, "affinity sets per endpoint"). Here: every frontend of a Service port
// (clusterIP, NodePorts, LB IPs, externalIPs, the internal copies of an eTP=Local Service's external
// addresses) carries the id of the port's clusterIP frontend as its affinity group, which keys
// lb_affinity (bpf/lb_svc.h lb_affinity_group); the datapath rows hold the kernel to it.
import test from 'ava';
import { Compiler } from '../../src/compile/compile.js';
import { buildPlan, planDelta } from '../../src/plan/plan.js';
import { diffPlans } from '../../src/plan/diff.js';
import { frontendValue } from '../../src/dataplane/bpf/map-writer.js';
import type { Snapshot } from '../../src/source/types.js';
import type { Plan, PlanFrontend } from '../../src/plan/types.js';

const node = { metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }] } };

function svc(name: string, clusterIP: string, extra: Record<string, unknown> = {}) {
  return {
    metadata: { name, namespace: 'd' },
    spec: {
      type: 'LoadBalancer', clusterIP, externalIPs: ['192.168.1.1'], sessionAffinity: 'ClientIP',
      ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 + Number(clusterIP.split('.')[3]) }, { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 31053 + Number(clusterIP.split('.')[3]) }],
      ...extra,
    },
    status: { loadBalancer: { ingress: [{ ip: `172.18.0.${clusterIP.split('.')[3]}` }] } },
  };
}
function slice(name: string, eps: { ip: string; node: string }[]) {
  return {
    metadata: { name: `${name}-1`, namespace: 'd', labels: { 'kubernetes.io/service-name': name } }, addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }],
    endpoints: eps.map((e) => ({ addresses: [e.ip], nodeName: e.node, conditions: { ready: true } })),
  };
}
function snapshot(services: ReturnType<typeof svc>[], slices: ReturnType<typeof slice>[]): Snapshot {
  const m = (l: { metadata: { name: string } }[]) => new Map(l.map((o) => [`d/${o.metadata.name}`, o])) as Map<string, never>;
  return { services: m(services), endpointSlices: m(slices), nodes: new Map([['n1', node]]) as Map<string, never> };
}
const EPS = [{ ip: '10.244.1.2', node: 'n1' }, { ip: '10.244.2.2', node: 'n2' }, { ip: '10.244.3.2', node: 'n3' }];

function ofService(plan: Plan, service: string): PlanFrontend[] {
  return [...plan.frontends.values()].filter((f) => f.service === service);
}

/** every frontend of each Service port has the port's clusterIP frontend's id as its group */
function checkGroups(t: import('ava').ExecutionContext, plan: Plan, service: string, affinity: boolean): void {
  const fes = ofService(plan, service);
  t.true(fes.length > 0, service);
  for (const port of ['http', 'dns']) {
    const mine = fes.filter((f) => f.portName === port);
    const cip = mine.find((f) => f.type === 'ClusterIP');
    t.truthy(cip, `${service} ${port} clusterIP`);
    for (const f of mine) {
      t.is(f.affinityGroup, affinity ? cip!.id : 0, `${service} ${port} ${f.type} ${f.address}:${f.port} ${f.scope}`);
      t.is(frontendValue(f).affinityGroup, f.affinityGroup, 'lb_frontend.affinity_group');
    }
  }
}

test('affinity per Service port: clusterIP, NodePorts, LB IP and externalIP share the clusterIP frontend\'s id; ports apart', (t) => {
  const c = new Compiler({ nodeName: 'n1', standalone: true });
  const { state } = c.compile(snapshot([svc('a', '10.96.0.1'), svc('b', '10.96.0.2', { sessionAffinity: 'None' })], [slice('a', EPS), slice('b', EPS)]));
  const plan = buildPlan(state, undefined, { seed: 7 });
  checkGroups(t, plan, 'd/a', true);
  checkGroups(t, plan, 'd/b', false);
  const a = ofService(plan, 'd/a');
  t.true(a.some((f) => f.type === 'NodePort') && a.some((f) => f.type === 'LoadBalancer') && a.some((f) => f.type === 'ExternalIP'));
  // the two ports of one Service are two groups, as upstream's two Service ports
  const groups = new Set(a.map((f) => f.affinityGroup));
  t.is(groups.size, 2);
});

test('affinity per Service port, eTP=Local: the external frontends (local endpoints only) and their internal copies share the group', (t) => {
  const c = new Compiler({ nodeName: 'n1', standalone: true });
  const { state } = c.compile(snapshot([svc('a', '10.96.0.1', { externalTrafficPolicy: 'Local' })], [slice('a', EPS)]));
  const plan = buildPlan(state, undefined, { seed: 7 });
  checkGroups(t, plan, 'd/a', true);
  const np = ofService(plan, 'd/a').find((f) => f.type === 'NodePort' && f.scope === 'external' && f.portName === 'http')!;
  t.is(np.backendIds.length, 1, 'eTP=Local: the local endpoint only');
});

test('affinity groups: the incremental plan (compile and plan both incremental) equals the full one through adds, changes and removals', (t) => {
  const c = new Compiler({ nodeName: 'n1', standalone: true });
  const steps: Snapshot[] = [
    snapshot([svc('a', '10.96.0.1')], [slice('a', EPS)]),
    // a new affinity Service: its clusterIP frontend's id is taken in the same build as its NodePorts'
    snapshot([svc('a', '10.96.0.1'), svc('b', '10.96.0.2')], [slice('a', EPS), slice('b', EPS)]),
    // endpoints change: every frontend of b is replaced, the group's id stays
    snapshot([svc('a', '10.96.0.1'), svc('b', '10.96.0.2')], [slice('a', EPS), slice('b', EPS.slice(1))]),
    // affinity off, then a new clusterIP (the group moves with it), then a removed Service
    snapshot([svc('a', '10.96.0.1', { sessionAffinity: 'None' }), svc('b', '10.96.0.2')], [slice('a', EPS), slice('b', EPS)]),
    snapshot([svc('a', '10.96.0.1'), svc('b', '10.96.0.9')], [slice('a', EPS), slice('b', EPS)]),
    snapshot([svc('b', '10.96.0.9')], [slice('b', EPS)]),
  ];
  let prev: Plan | undefined;
  const affinityOf = (name: string, s: Snapshot) => (s.services.get(`d/${name}`) as { spec: { sessionAffinity: string } } | undefined)?.spec.sessionAffinity;
  for (const [i, s] of steps.entries()) {
    const { state } = c.compile(s);
    const inc = buildPlan(state, prev, { seed: 7 });
    if (prev) t.truthy(planDelta(prev, inc), `step ${i}: the incremental build ran`);
    const full = buildPlan(state, prev && { seed: prev.seed, frontends: new Map(prev.frontends), backends: new Map(prev.backends), tables: new Map(prev.tables) }, { seed: 7 });
    t.deepEqual([...inc.frontends.values()].map((f) => [f.id, f.affinityGroup]), [...full.frontends.values()].map((f) => [f.id, f.affinityGroup]), `step ${i}`);
    for (const name of ['a', 'b']) if (s.services.has(`d/${name}`)) checkGroups(t, inc, `d/${name}`, affinityOf(name, s) === 'ClientIP');
    if (prev && i === 2) {
      // the group is unchanged by an endpoint change, so no frontend entry is rewritten for it
      const ops = diffPlans(prev, inc).filter((o) => o.op === 'upsertFrontend');
      for (const o of ops) if (o.op === 'upsertFrontend') t.is(o.frontend.affinityGroup, prev.frontends.get(`${o.frontend.address}|${o.frontend.port}|${o.frontend.protocol}|${o.frontend.scope}`)?.affinityGroup ?? -1);
    }
    prev = inc;
  }
});
