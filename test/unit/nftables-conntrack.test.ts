// Which UDP conntrack entries the nftables data plane deletes after a sync (conntrack.ts), as
// kube-proxy's conntrack.CleanStaleEntries (pkg/proxy/conntrack/cleanup.go) does.
import test from 'ava';
import { buildPlan } from '../../src/plan/plan.js';
import { frontendKey } from '../../src/plan/types.js';
import { staleUdpRules } from '../../src/dataplane/nftables/conntrack.js';
import { be, fe } from './plan-helpers.js';

const udp = { protocol: 'UDP' as const };
const SEED = 7;

test('a UDP frontend that loses a backend address: its entries not from the remaining ones go', (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.10', 53, [be('10.1.0.1', 5353), be('10.1.0.2', 5353)], udp), fe('10.96.0.11', 80, [be('10.1.0.1')])] }, undefined, { seed: SEED });
  const b = buildPlan({ frontends: [fe('10.96.0.10', 53, [be('10.1.0.2', 5353)], udp), fe('10.96.0.11', 80, [])] }, a, { seed: SEED });
  t.deepEqual(staleUdpRules(a, b, [...b.frontends.keys()]), [{ dst: '10.96.0.10', port: 53, any: false, keep: ['10.1.0.2'] }], 'TCP frontends are left alone');
  // a frontend that only gains a backend has nothing stale
  t.deepEqual(staleUdpRules(b, a, [...a.frontends.keys()]), []);
  // a frontend the sync did not touch is not looked at
  t.deepEqual(staleUdpRules(a, b, []), []);
});

test('a UDP frontend left without backends, or removed: every entry to it goes (unlike kube-proxy, which keeps them)', (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.10', 53, [be('10.1.0.1', 5353)], udp), fe('fd00::10', 53, [be('fd01::1', 5353)], udp)] }, undefined, { seed: SEED });
  const b = buildPlan({ frontends: [fe('10.96.0.10', 53, [], udp)] }, a, { seed: SEED });
  const touched = [...a.frontends.keys()];
  t.deepEqual(staleUdpRules(a, b, touched).sort((x, y) => (x.dst < y.dst ? -1 : 1)), [
    { dst: '10.96.0.10', port: 53, any: false, keep: [] },
    { dst: 'fd00::10', port: 53, any: false, keep: [] },
  ]);
});

test('NodePorts match by port on any address; frontends of one address and port share their backends', (t) => {
  const np = { ...udp, type: 'NodePort' as const, scope: 'external' as const };
  const a = buildPlan({ frontends: [
    fe('0.0.0.0', 30053, [be('10.1.0.1', 5353), be('10.1.0.2', 5353)], np),
    // eTP=Local on the VIP's external frontend: its backends still count for the internal one's flows
    fe('10.96.0.10', 53, [be('10.1.0.1', 5353), be('10.1.0.2', 5353)], udp),
    fe('10.96.0.10', 53, [be('10.1.0.1', 5353)], { ...udp, scope: 'external' }),
  ] }, undefined, { seed: SEED });
  const b = buildPlan({ frontends: [
    fe('0.0.0.0', 30053, [be('10.1.0.2', 5353)], np),
    fe('10.96.0.10', 53, [be('10.1.0.1', 5353), be('10.1.0.2', 5353)], udp),
    fe('10.96.0.10', 53, [be('10.1.0.2', 5353)], { ...udp, scope: 'external' }),
  ] }, a, { seed: SEED });
  t.deepEqual(staleUdpRules(a, b, [...b.frontends.values()].map(frontendKey)), [{ dst: '0.0.0.0', port: 30053, any: true, keep: ['10.1.0.2'] }],
    'the VIP kept both addresses over its two scopes: nothing stale there');
});

test('the first sync (no earlier plan) checks every UDP frontend, as kube-proxy checks on every sync', (t) => {
  const a = buildPlan({ frontends: [fe('10.96.0.10', 53, [be('10.1.0.1', 5353)], udp), fe('10.96.0.12', 53, [], udp), fe('10.96.0.11', 80, [be('10.1.0.1')])] }, undefined, { seed: SEED });
  t.deepEqual(staleUdpRules(undefined, a).map((r) => `${r.dst}:${r.port} keep ${r.keep}`).sort(), ['10.96.0.10:53 keep 10.1.0.1', '10.96.0.12:53 keep ']);
});
