// Standalone allocation: deterministic clusterIPs and nodePorts that stay put when other Services
// come and go, inside the configured ranges, never colliding with chosen ones.
import test from 'ava';
import { compile } from '../../src/compile/compile.js';
import { cidrContains, parseCidr } from '../../src/util/ip.js';
import { snap, svc } from './compile-helpers.js';

function alloc(services: unknown[], opts: Record<string, unknown> = {}) {
  const r = compile(snap(services), { nodeName: 'n1', standalone: true, ...opts });
  return new Map(r.services.map((s) => [s.service.key, { ips: s.clusterIPs, ports: s.nodePorts, hc: s.healthCheckNodePort }]));
}

const many = Array.from({ length: 200 }, (_, i) => svc(`ns/s${i}`, { type: 'NodePort', ports: [{ port: 80 }] }));

test('the same Services get the same clusterIPs and nodePorts on every run', (t) => {
  const a = alloc(many), b = alloc([...many].reverse());
  t.deepEqual([...a].sort(), [...b].sort());
});

test('adding or removing other Services does not move an uncontested allocation', (t) => {
  // an allocation is a hash of the Service's own key; only a Service that lost a collision (and
  // probed on) can move when the winner goes away
  const a = alloc(many);
  const b = alloc([...many.slice(0, 50), ...many.slice(120), svc('other/new', { type: 'NodePort', ports: [{ port: 1 }] })]);
  let uncontested = 0;
  for (const [k, v] of b) {
    if (!a.has(k)) continue;
    const solo = alloc([many.find((s) => `ns/${(s as { metadata: { name: string } }).metadata.name}` === k)]).get(k);
    if (JSON.stringify(a.get(k)) !== JSON.stringify(solo)) continue;
    uncontested++;
    t.deepEqual(v, a.get(k), k);
  }
  t.true(uncontested > 100, `${uncontested} uncontested`);
});

test('allocations stay in range and never collide', (t) => {
  const a = alloc(many, { serviceCidrs: ['10.100.0.0/24'], nodePortRange: { min: 31000, max: 31400 } });
  const cidr = parseCidr('10.100.0.0/24');
  const ips = new Set<string>(), ports = new Set<number>();
  for (const v of a.values()) {
    t.is(v.ips.length, 1);
    t.true(cidrContains(cidr, v.ips[0]!));
    t.not(v.ips[0], '10.100.0.0');
    t.not(v.ips[0], '10.100.0.1');
    t.not(v.ips[0], '10.100.0.255');
    t.false(ips.has(v.ips[0]!));
    ips.add(v.ips[0]!);
    for (const p of v.ports) {
      t.true(p >= 31000 && p <= 31400);
      t.false(ports.has(p));
      ports.add(p);
    }
  }
  t.is(ips.size, 200);
});

test('a chosen clusterIP or nodePort is never handed to another Service', (t) => {
  // find what s0 would get, then let another Service choose exactly that
  const first = alloc([many[0]]).get('ns/s0')!;
  const taker = svc('aaa/taker', { type: 'NodePort', clusterIP: first.ips[0], ports: [{ port: 80, nodePort: first.ports[0] }] });
  const next = alloc([many[0], taker]).get('ns/s0')!;
  t.not(next.ips[0], first.ips[0]);
  t.not(next.ports[0], first.ports[0]);
  t.is(alloc([many[0], taker]).get('aaa/taker')!.ips[0], first.ips[0]);
});

test('a full range is reported, not looped over', (t) => {
  const r = compile(snap(many.slice(0, 5)), { nodeName: 'n1', standalone: true, nodePortRange: { min: 30000, max: 30002 } });
  t.is(r.services.length, 3);
  t.is(r.errors.filter((e) => e.field === 'spec.ports' && /full/.test(e.message)).length, 2);
  const r2 = compile(snap(many.slice(0, 5)), { nodeName: 'n1', standalone: true, serviceCidrs: ['10.100.0.0/30'] });
  t.is(r2.services.length, 2); // a /30: two hosts between the network and broadcast addresses
  t.true(r2.errors.some((e) => e.field === 'spec.clusterIP' && /full/.test(e.message)));
});

test('families: SingleStack takes the first service CIDR, dual-stack policies take both, IPv6 on request', (t) => {
  const a = alloc([
    svc('f/single', { ports: [{ port: 80 }] }),
    svc('f/prefer', { ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 80 }] }),
    svc('f/require6first', { ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv6', 'IPv4'], ports: [{ port: 80 }] }),
    svc('f/v6', { ipFamilies: ['IPv6'], ports: [{ port: 80 }] }),
    svc('f/one-given', { clusterIP: '10.96.50.50', ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 80 }] }),
  ]);
  const fam = (k: string) => a.get(k)!.ips.map((ip) => (ip.includes(':') ? 6 : 4));
  t.deepEqual(fam('f/single'), [4]);
  t.deepEqual(fam('f/prefer'), [4, 6]);
  t.deepEqual(fam('f/require6first'), [6, 4]);
  t.deepEqual(fam('f/v6'), [6]);
  t.deepEqual(fam('f/one-given'), [4, 6]);
  t.is(a.get('f/one-given')!.ips[0], '10.96.50.50');
  // no IPv6 CIDR: RequireDualStack cannot be met, PreferDualStack settles for IPv4
  const r = compile(snap([svc('f/req', { ipFamilyPolicy: 'RequireDualStack', ports: [{ port: 80 }] }), svc('f/pref', { ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 80 }] })]),
    { nodeName: 'n1', standalone: true, serviceCidrs: ['10.96.0.0/16'] });
  t.deepEqual(r.services.map((s) => [s.service.key, s.clusterIPs.length]), [['f/pref', 1]]);
  t.true(r.errors.some((e) => e.key === 'f/req' && e.severity === 'error'));
});

test('LoadBalancer with eTP Local gets a healthCheckNodePort; allocateLoadBalancerNodePorts false gets no nodePorts', (t) => {
  const a = alloc([
    svc('h/lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: [{ port: 80 }] }),
    svc('h/lb-given', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000, ports: [{ port: 80 }] }),
    svc('h/no-np', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ port: 80 }] }),
  ]);
  t.true(a.get('h/lb')!.hc >= 30000 && a.get('h/lb')!.hc <= 32767);
  t.not(a.get('h/lb')!.hc, a.get('h/lb')!.ports[0]);
  t.is(a.get('h/lb-given')!.hc, 32000);
  t.deepEqual(a.get('h/no-np')!.ports, [0]);
});

test('from an API server nothing is allocated: no clusterIP, no frontends; nodePort 0, no NodePort', (t) => {
  const r = compile(snap([
    svc('k/no-ip', { ports: [{ port: 80 }] }),
    svc('k/dual-one-ip', { clusterIP: '10.96.0.5', ipFamilyPolicy: 'PreferDualStack', type: 'NodePort', ports: [{ port: 80 }] }),
    svc('k/lb', { clusterIP: '10.96.0.6', type: 'LoadBalancer', loadBalancerIP: '192.168.200.1', ports: [{ port: 80, nodePort: 30100 }] }),
  ]), { nodeName: 'n1' });
  t.deepEqual(r.services.map((s) => [s.service.key, s.clusterIPs, s.nodePorts]), [['k/dual-one-ip', ['10.96.0.5'], [0]], ['k/lb', ['10.96.0.6'], [30100]]]);
  t.deepEqual(r.errors.map((e) => [e.key, e.field, e.severity]), [['k/no-ip', 'spec.clusterIP', 'warning']]);
  // spec.loadBalancerIP is served only in standalone mode; from an API server only status counts
  t.deepEqual(r.state.frontends.map((f) => f.type).sort(), ['ClusterIP', 'ClusterIP', 'NodePort']);
});
