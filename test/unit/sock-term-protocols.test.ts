// Which removals need a socket termination pass (src/dataplane/bpf/sock-term.ts FrontendProtocols).
// kube-proxy clears conntrack for UDP only (pkg/proxy/conntrack/cleanup.go CleanStaleEntries:
// filterForNAT / deleteStaleEndpointConnections match v1.ProtocolUDP); our pass walks connected UDP
// sockets only (iter/udp). A backend leaving a TCP frontend must not run a pass (it walks every
// network namespace on the event loop); leaving a UDP frontend, or one we do not know, must.
import test from 'ava';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan } from '../../src/plan/plan.js';
import type { Plan, PlanOp } from '../../src/plan/types.js';
import { FrontendProtocols } from '../../src/dataplane/bpf/sock-term.js';

const SEED = 7;
const be = (address: string, port: number) => ({ address, port, terminating: false, local: false });
function fe(over: Partial<NodeFrontend> & Pick<NodeFrontend, 'address' | 'port'>): NodeFrontend {
  return {
    service: 'default/web', portName: 'p', type: 'ClusterIP', protocol: 'TCP', scope: 'internal',
    backends: [], sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false, ...over,
  };
}
const web = (n: number) => [1, 2, 3].slice(0, n).map((i) => be(`10.244.0.${i}`, 8080));
const dns = (n: number) => [1, 2, 3].slice(0, n).map((i) => be(`10.244.1.${i}`, 53));
const state = (w: number, d: number, dnsProto: 'UDP' | 'TCP' = 'UDP'): NodeState => ({
  frontends: [
    fe({ address: '10.96.0.1', port: 80, backends: web(w) }),
    fe({ service: 'default/dns', address: '10.96.0.10', port: 53, protocol: dnsProto, backends: dns(d) }),
  ],
});

/** the frontends a diff's member removals end (what the map writer reports as leftFrontends) */
function left(prev: Plan, next: Plan): number[] {
  const ids: number[] = [];
  for (const f of prev.frontends.values()) {
    const now = [...next.frontends.values()].find((g) => g.id === f.id);
    if (f.backendIds.some((b) => !now?.backendIds.includes(b))) ids.push(f.id);
  }
  return ids;
}

function written(prev: Plan, next: Plan): { ops: PlanOp[]; left: number[] } {
  return { ops: diffPlans(prev, next), left: left(prev, next) };
}

test('a backend leaving a TCP frontend needs no pass; leaving a UDP one does', (t) => {
  const p = new FrontendProtocols();
  const p0 = buildPlan(state(3, 3), undefined, { seed: SEED });
  p.note(diffPlans(undefined, p0));
  const p1 = buildPlan(state(2, 3), p0, { seed: SEED });
  const a = written(p0, p1);
  t.is(a.left.length, 1);
  t.false(p.mayHoldUdp(a.left, a.ops), 'web (TCP) lost a backend');
  p.note(a.ops);
  const p2 = buildPlan(state(2, 2), p1, { seed: SEED });
  const b = written(p1, p2);
  t.is(b.left.length, 1);
  t.true(p.mayHoldUdp(b.left, b.ops), 'dns (UDP) lost a backend');
});

test('an unknown frontend counts as UDP; a plan read back is known', (t) => {
  const p0 = buildPlan(state(3, 3), undefined, { seed: SEED });
  const p1 = buildPlan(state(2, 3), p0, { seed: SEED });
  const a = written(p0, p1);
  t.true(new FrontendProtocols().mayHoldUdp(a.left, a.ops), 'never seen: a pass too many, not one too few');
  const seeded = new FrontendProtocols();
  seeded.seed(p0);
  t.false(seeded.mayHoldUdp(a.left, a.ops), 'seeded from the plan read back at start');
});

test('a deleted frontend is forgotten; an id upserted as UDP in the same ops counts', (t) => {
  const p = new FrontendProtocols();
  const p0 = buildPlan(state(3, 3, 'TCP'), undefined, { seed: SEED });
  p.note(diffPlans(undefined, p0));
  const dnsId = [...p0.frontends.values()].find((f) => f.service === 'default/dns')!.id;
  t.false(p.mayHoldUdp([dnsId], []), 'dns is TCP here');
  const udp: PlanOp = { op: 'upsertFrontend', frontend: { ...[...p0.frontends.values()].find((f) => f.id === dnsId)!, protocol: 'UDP' } };
  t.true(p.mayHoldUdp([dnsId], [udp]), 'the id is UDP in these ops');
  p.note([{ op: 'deleteFrontend', frontend: [...p0.frontends.values()].find((f) => f.id === dnsId)! }]);
  t.true(p.mayHoldUdp([dnsId], []), 'deleted: unknown again');
});
