// resolveCandidates orders IPv4 candidates by a numeric key and removes copies after one ordered
// pass; the oracle here is the text-keyed version it replaced (a Map of the keys seen, then a sort).
import test from 'ava';
import fc from 'fast-check';
import { categorizeEndpoints, categorizePlain, resolveCandidates, type Candidate } from '../../src/compile/topology.js';
import { addressKey, backendKey } from '../../src/model/canonical.js';
import type { EndpointModel, ServiceModel, ServicePortModel } from '../../src/model/types.js';

function oracle(eps: EndpointModel[], sp: ServicePortModel, nodeName: string): Candidate[] {
  const portKey = `${sp.name}/${sp.protocol}`;
  const out: Candidate[] = [];
  const seen = new Map<string, number>();
  for (const ep of eps) {
    const port = ep.ports.get(portKey);
    if (port === undefined) continue;
    const c: Candidate = {
      ep, key: backendKey(addressKey(ep.address), port), forZones: ep.forZones, forNodes: ep.forNodes,
      backend: { address: ep.address, port, terminating: !ep.ready, local: ep.nodeName === nodeName },
    };
    const at = seen.get(c.key as string);
    if (at === undefined) {
      seen.set(c.key as string, out.length);
      out.push(c);
    } else if (!ep.terminating) out[at] = c;
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

const v4 = ['10.0.0.1', '10.0.0.2', '10.0.0.10', '9.255.255.255', '10.0.1.0', '0.0.0.0', '255.255.255.255', '192.168.3.4'];
const v6 = ['2001:db8::1', '2001:db8::2', 'fd00::a'];
const portsA = new Map([['http/TCP', 8080]]), portsB = new Map([['http/TCP', 80]]), portsC = new Map([['dns/UDP', 53]]);

test('candidates: one per address:port in canonical order, copies resolved as before (property)', (t) => {
  const ep = (addrs: string[]) => fc.record({
    address: fc.constantFrom(...addrs), ready: fc.boolean(), terminating: fc.boolean(), nodeName: fc.constantFrom('n1', 'n2', ''),
    ports: fc.constantFrom(portsA, portsA, portsB, portsC),
  }).map((e): EndpointModel => ({ ...e, family: e.address.includes(':') ? 6 : 4, serving: true, zone: '', forZones: null, forNodes: null, ports: e.ports }));
  const list = fc.oneof(fc.array(ep(v4), { maxLength: 12 }), fc.array(ep(v6), { maxLength: 6 }), fc.array(ep([...v4, ...v6]), { maxLength: 8 }));
  const sp = { name: 'http', protocol: 'TCP' } as ServicePortModel;
  fc.assert(fc.property(list, (eps) => {
    const got = resolveCandidates(eps, sp, 'n1'), want = oracle(eps, sp, 'n1');
    t.is(got.length, want.length);
    got.forEach((c, i) => {
      t.is(c.ep, want[i]!.ep);
      t.deepEqual(c.backend, want[i]!.backend);
    });
  }), { numRuns: 3000 });
});

test('categorizePlain gives what the general path gives, where it answers (property)', (t) => {
  // sorted runs of distinct IPv4 addresses (the common slice), then now and then a copy, an IPv6
  // address, a hint or an unsorted pair: the general path's cases
  const addr = fc.oneof({ weight: 6, arbitrary: fc.nat(40).map((n) => `10.0.${n >> 3}.${n}`) }, { weight: 1, arbitrary: fc.constantFrom(...v4, ...v6) });
  const ep = fc.record({
    address: addr, ready: fc.boolean(), serving: fc.boolean(), terminating: fc.boolean(), nodeName: fc.constantFrom('n1', 'n2', ''),
    zone: fc.constantFrom('z1', ''), hint: fc.constantFrom(false, false, false, false, 'zone', 'node'),
    ports: fc.constantFrom(portsA, portsA, portsA, portsB, portsC),
  }).map((e): EndpointModel => ({
    address: e.address, family: e.address.includes(':') ? 6 : 4, ready: e.ready, serving: e.serving, terminating: e.terminating,
    nodeName: e.nodeName, zone: e.zone, forZones: e.hint === 'zone' ? ['z1'] : null, forNodes: e.hint === 'node' ? ['n1'] : null, ports: e.ports,
  }));
  const sorted = (eps: EndpointModel[]) => {
    const seen = new Set<string>();
    return eps.filter((e) => !seen.has(e.address) && seen.add(e.address))
      .sort((a, b) => (addressKey(a.address) < addressKey(b.address) ? -1 : addressKey(a.address) > addressKey(b.address) ? 1 : 0));
  };
  const list = fc.oneof(fc.array(ep, { maxLength: 12 }).map(sorted), fc.array(ep, { maxLength: 12 }));
  const sp = { name: 'http', protocol: 'TCP' } as ServicePortModel;
  const svc = { trafficDistribution: null } as ServiceModel;
  let answered = 0;
  fc.assert(fc.property(list, fc.constantFrom('n1', 'n2'), fc.constantFrom('z1', 'z2', ''), fc.boolean(), (eps, nodeName, zone, nodeHints) => {
    const plain = categorizePlain(eps, sp, nodeName);
    const general = categorizeEndpoints(svc, resolveCandidates(eps, sp, nodeName), { nodeName, zone, synthesize: false, nodeHints });
    if (!plain) return;
    answered++;
    t.deepEqual(plain, general);
    // one backend object for an endpoint in both sets, as the general path shares its Candidate's
    for (const b of plain.local) t.true(plain.cluster.includes(b));
  }), { numRuns: 3000 });
  t.true(answered > 500, `answered ${answered} of 3000`);
});
