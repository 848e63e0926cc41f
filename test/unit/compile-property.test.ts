// compile is total: on arbitrary JSON and on near-valid objects with any field replaced by junk, it
// never throws, and what it does produce keeps the contract's invariants.
import test from 'ava';
import fc from 'fast-check';
import { compile } from '../../src/compile/compile.js';
import { toCompiledState, toJson } from '../../src/model/canonical.js';
import { ipFamily } from '../../src/util/ip.js';
import type { NodeState } from '../../src/model/compiled.js';
import type { Snapshot } from '../../src/source/types.js';

function snapshotOf(services: unknown[], slices: unknown[], nodes: unknown[]): Snapshot {
  // keyed as a source keys them (namespace/name), falling back to the position for junk
  const key = (o: unknown, i: number): string => {
    const m = (o as { metadata?: { namespace?: unknown; name?: unknown } } | null)?.metadata;
    return typeof m?.name === 'string' ? `${typeof m.namespace === 'string' ? m.namespace : 'default'}/${m.name}` : `ns/o${i}`;
  };
  const m = (l: unknown[]) => new Map(l.map((o, i) => [key(o, i), o])) as Map<string, never>;
  return { services: m(services), endpointSlices: m(slices), nodes: m(nodes) };
}

function invariants(state: NodeState): void {
  const seen = new Set<string>();
  for (const f of state.frontends) {
    if (!ipFamily(f.address)) throw new Error(`frontend address ${f.address}`);
    if (!(f.port >= 1 && f.port <= 65535)) throw new Error(`frontend port ${f.port}`);
    const k = `${f.address}|${f.port}|${f.protocol}|${f.scope}`;
    if (seen.has(k)) throw new Error(`duplicate frontend ${k}`);
    seen.add(k);
    for (const b of f.backends) {
      if (ipFamily(b.address) !== ipFamily(f.address)) throw new Error(`backend ${b.address} of another family than ${f.address}`);
      if (!(b.port >= 1 && b.port <= 65535)) throw new Error(`backend port ${b.port}`);
    }
  }
  // already in canonical order
  const canon = toCompiledState(state);
  canon.frontends.forEach((f, i) => {
    const g = state.frontends[i]!;
    if (f.address !== g.address || f.port !== g.port || f.protocol !== g.protocol || f.scope !== g.scope) throw new Error('frontends not sorted');
    if (f.backends.map((b) => `${b.address}:${b.port}`).join() !== g.backends.map((b) => `${b.address}:${b.port}`).join()) throw new Error('backends not sorted');
  });
  toJson(state);
}

test('arbitrary JSON never makes compile throw', (t) => {
  fc.assert(fc.property(
    fc.array(fc.anything(), { maxLength: 4 }), fc.array(fc.anything(), { maxLength: 4 }), fc.array(fc.anything(), { maxLength: 2 }),
    (services, slices, nodes) => {
      const { state } = compile(snapshotOf(services, slices, nodes), { nodeName: 'n1', standalone: true });
      invariants(state);
    }), { numRuns: 300 });
  t.pass();
});

// near-valid objects: each field either a plausible value or junk, so deep code paths are reached
const junk = fc.oneof(fc.anything(), fc.constant(null), fc.constant(-1), fc.constant(''), fc.constant('None'), fc.constant(1e10));
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ weight: 30, arbitrary: arb }, { weight: 1, arbitrary: junk });
const ip4 = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 })).map(([a, b]) => `10.244.${a}.${b}`);
const ip6 = fc.integer({ min: 0, max: 0xffff }).map((a) => `fd00:10:244::${a.toString(16)}`);
const anyIp = fc.oneof(ip4, ip6, fc.constant('192.168.1.1'), fc.constant('::1'));
const rare = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
const proto = maybe(fc.constantFrom('TCP', 'UDP', 'SCTP', undefined));
const portNum = maybe(fc.oneof({ weight: 10, arbitrary: fc.constantFrom(80, 8080, 53) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 70000 }) }));
const name = maybe(fc.constantFrom('', '', 'http', 'dns', 'web'));

const servicePort = fc.record({
  name, protocol: proto, port: portNum,
  targetPort: maybe(fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constantFrom('web', 'http', '8080'))),
  nodePort: rare(fc.integer({ min: 30000, max: 30010 })),
}, { requiredKeys: ['port'] });

const service = fc.record({
  kind: fc.constant('Service'),
  metadata: maybe(fc.record({ name: maybe(fc.constantFrom('a', 'b', 'c')), namespace: rare(fc.constantFrom('default', 'x')) }, { requiredKeys: ['name'] })),
  spec: maybe(fc.record({
    type: maybe(fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName', undefined, undefined)),
    clusterIP: maybe(fc.oneof(ip4, ip6, fc.constantFrom('None', '', undefined, undefined, undefined))),
    clusterIPs: rare(fc.array(maybe(anyIp), { maxLength: 3 })),
    ipFamilies: rare(fc.array(maybe(fc.constantFrom('IPv4', 'IPv6')), { maxLength: 3 })),
    ipFamilyPolicy: rare(fc.constantFrom('SingleStack', 'PreferDualStack', 'RequireDualStack')),
    ports: maybe(fc.oneof(fc.constant([{ port: 80, targetPort: 8080 }]), fc.array(maybe(servicePort), { minLength: 1, maxLength: 1 }), fc.array(maybe(servicePort), { maxLength: 3 }))),
    externalIPs: rare(fc.array(maybe(anyIp), { maxLength: 2 })),
    loadBalancerIP: rare(anyIp),
    loadBalancerSourceRanges: rare(fc.array(maybe(fc.constantFrom('10.0.0.0/8', 'fd00::/8', '1.2.3.4/33')), { maxLength: 2 })),
    sessionAffinity: maybe(fc.constantFrom('None', 'ClientIP')),
    sessionAffinityConfig: rare(fc.record({ clientIP: maybe(fc.record({ timeoutSeconds: maybe(fc.integer({ min: 0, max: 100000 })) })) })),
    externalTrafficPolicy: maybe(fc.constantFrom('Cluster', 'Local')),
    internalTrafficPolicy: maybe(fc.constantFrom('Cluster', 'Local')),
    trafficDistribution: maybe(fc.constantFrom('PreferClose', 'PreferSameZone', 'PreferSameNode')),
    allocateLoadBalancerNodePorts: maybe(fc.boolean()),
  }, { requiredKeys: ['ports'] })),
  status: maybe(fc.record({ loadBalancer: maybe(fc.record({ ingress: maybe(fc.array(maybe(fc.record({ ip: maybe(anyIp), ipMode: maybe(fc.constantFrom('VIP', 'Proxy')) })), { maxLength: 2 })) })) })),
}, { requiredKeys: ['kind'] });

const endpoint = fc.record({
  addresses: maybe(fc.array(maybe(fc.oneof({ weight: 8, arbitrary: ip4 }, { weight: 1, arbitrary: anyIp })), { minLength: 1, maxLength: 2 })),
  conditions: maybe(fc.record({ ready: maybe(fc.boolean()), serving: maybe(fc.boolean()), terminating: maybe(fc.boolean()) }, { requiredKeys: [] })),
  nodeName: maybe(fc.constantFrom('n1', 'n2')),
  zone: maybe(fc.constantFrom('z1', 'z2')),
  hints: rare(fc.record({
    forZones: maybe(fc.array(maybe(fc.record({ name: maybe(fc.constantFrom('z1', 'z2')) })), { maxLength: 2 })),
    forNodes: maybe(fc.array(maybe(fc.record({ name: maybe(fc.constantFrom('n1', 'n2')) })), { maxLength: 2 })),
  }, { requiredKeys: [] })),
}, { requiredKeys: ['addresses'] });

const endpointSlice = fc.record({
  kind: fc.constant('EndpointSlice'),
  metadata: maybe(fc.record({
    name: maybe(fc.constantFrom('s1', 's2', 's3', 's4')), namespace: rare(fc.constantFrom('default', 'x')),
    labels: maybe(fc.record({ 'kubernetes.io/service-name': maybe(fc.constantFrom('a', 'b', 'c')) })),
  }, { requiredKeys: ['name', 'labels'] })),
  addressType: maybe(fc.constantFrom('IPv4', 'IPv4', 'IPv4', 'IPv6', 'FQDN')),
  ports: maybe(fc.oneof(fc.constant([{ port: 8080 }]), fc.array(maybe(fc.record({ name, protocol: proto, port: portNum }, { requiredKeys: ['port'] })), { maxLength: 3 }))),
  endpoints: maybe(fc.array(maybe(endpoint), { maxLength: 4 })),
}, { requiredKeys: ['kind', 'addressType', 'ports', 'endpoints'] });

const nodeObj = fc.record({
  metadata: maybe(fc.record({ name: maybe(fc.constantFrom('n1', 'n2')), labels: maybe(fc.record({ 'topology.kubernetes.io/zone': maybe(fc.constantFrom('z1', 'z2')) })) })),
  status: maybe(fc.record({ addresses: maybe(fc.array(maybe(fc.record({ type: maybe(fc.constantFrom('InternalIP', 'ExternalIP')), address: maybe(anyIp) })), { maxLength: 3 })) })),
});

test('near-valid objects with junk fields never make compile throw, and the output keeps its invariants', (t) => {
  fc.assert(fc.property(
    fc.array(service, { maxLength: 5 }), fc.array(endpointSlice, { maxLength: 5 }), fc.array(nodeObj, { maxLength: 2 }),
    fc.constantFrom(undefined, ['primary'], ['0.0.0.0/0', '::/0'], ['10.0.0.0/8']),
    (services, slices, nodes, nodePortAddresses) => {
      const opts = { nodeName: 'n1', standalone: true, nodePortAddresses: nodePortAddresses ? [...nodePortAddresses] : undefined, nodeIPs: ['192.168.1.1'] };
      const snapshot = snapshotOf(services, slices, nodes);
      const a = compile(snapshot, opts);
      invariants(a.state);
      for (const e of a.errors) if (!e.key || !e.message) throw new Error(`error without key or message: ${JSON.stringify(e)}`);
      // deterministic
      if (toJson(compile(snapshot, opts).state) !== toJson(a.state)) throw new Error('not deterministic');
    }), { numRuns: 400 });
  t.pass();
});

// valid-by-construction Services with random endpoint states, policies and hints: kube-proxy's rules
// hold for every frontend
const validCase = fc.record({
  eTP: fc.constantFrom('Cluster', 'Local'),
  iTP: fc.constantFrom('Cluster', 'Local'),
  type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
  td: fc.constantFrom(undefined, 'PreferClose', 'PreferSameNode'),
  eps: fc.array(fc.record({
    host: fc.integer({ min: 1, max: 250 }),
    ready: fc.boolean(), serving: fc.boolean(), terminating: fc.boolean(),
    node: fc.constantFrom('n1', 'n2', 'n3', undefined),
    zone: fc.constantFrom('z1', 'z2', undefined),
    zones: fc.constantFrom(undefined, ['z1'], ['z2'], ['z1', 'z2']),
  }), { maxLength: 8 }),
});

test('kube-proxy endpoint rules hold on valid Services with random endpoint states', (t) => {
  fc.assert(fc.property(validCase, (c) => {
    const s = { kind: 'Service', metadata: { name: 'a', namespace: 'd' }, spec: {
      clusterIP: '10.96.0.10', type: c.type, externalTrafficPolicy: c.eTP, internalTrafficPolicy: c.iTP,
      ...(c.td ? { trafficDistribution: c.td } : {}), externalIPs: ['192.168.9.9'],
      ports: [{ port: 80, targetPort: 8080, ...(c.type !== 'ClusterIP' ? { nodePort: 30080 } : {}) }],
    }, status: { loadBalancer: { ingress: [{ ip: '192.168.200.1' }] } } };
    const sl = { kind: 'EndpointSlice', metadata: { name: 'a-1', namespace: 'd', labels: { 'kubernetes.io/service-name': 'a' } },
      addressType: 'IPv4', ports: [{ port: 8080 }],
      endpoints: c.eps.map((e) => ({ addresses: [`10.244.0.${e.host}`], conditions: { ready: e.ready, serving: e.serving || e.ready, terminating: e.terminating },
        ...(e.node ? { nodeName: e.node } : {}), ...(e.zone ? { zone: e.zone } : {}), ...(e.zones ? { hints: { forZones: e.zones.map((name) => ({ name })) } } : {}) })) };
    const nodes = [{ metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z1' } }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }] } }];
    const { state, errors } = compile(snapshotOf([s], [sl], nodes), { nodeName: 'n1', standalone: true });
    if (errors.some((e) => e.severity === 'error')) throw new Error(JSON.stringify(errors));
    invariants(state);
    // the winning copy per address (the same address may appear twice): EndpointSliceCache.addEndpoints
    // lets a later copy replace the kept one unless the later one is terminating
    const best = new Map<string, { ready: boolean; serving: boolean; terminating: boolean; node: string | undefined }>();
    for (const e of c.eps) {
      const a = `10.244.0.${e.host}`;
      const st = { ready: e.ready, serving: e.serving || e.ready, terminating: e.terminating, node: e.node };
      if (!best.has(a) || !st.terminating) best.set(a, st);
    }
    const readyAll = [...best].filter(([, e]) => e.ready).map(([a]) => a).sort();
    const hasHints = c.eps.some((e) => e.zones);
    for (const f of state.frontends) {
      for (const b of f.backends) {
        const e = best.get(b.address)!;
        if (!(e.ready || (e.serving && e.terminating))) throw new Error(`unusable backend ${b.address}`);
        if (b.terminating !== !e.ready) throw new Error(`terminating flag of ${b.address}`);
        if (b.local !== (e.node === 'n1')) throw new Error(`local flag of ${b.address}`);
        if (b.port !== 8080) throw new Error('port');
      }
      const localOnly = f.scope === 'external' ? c.eTP === 'Local' : f.type === 'ClusterIP' && c.iTP === 'Local';
      if (localOnly && f.backends.some((b) => !b.local)) throw new Error(`${f.type} ${f.scope} has a remote backend`);
      if (f.snatRemote !== (f.scope === 'external' && c.eTP === 'Cluster')) throw new Error('snatRemote');
      // syncProxyRules' external traffic chain: eTP=Cluster masquerades every flow to an external address
      if (f.masquerade !== (f.scope === 'external' && c.eTP === 'Cluster' ? 'all' : undefined)) throw new Error(`masquerade of ${f.type} ${f.scope}`);
      if (!localOnly && !hasHints && !c.td) {
        const got = f.backends.filter((b) => !b.terminating).map((b) => b.address).sort();
        if (got.join() !== readyAll.join()) throw new Error(`cluster set ${got} != ready ${readyAll}`);
      }
      // syncProxyRules drops (not rejects) Local-policy traffic when only other nodes have endpoints
      const anyUsable = [...best.values()].some((e) => e.ready || (e.serving && e.terminating));
      const dropping = localOnly && !f.backends.length && anyUsable && (f.scope === 'external' || c.iTP === 'Local');
      if (!!f.noLocalEndpoints !== dropping) throw new Error(`noLocalEndpoints of ${f.type} ${f.scope}`);
      // an internal copy exists exactly for the external addresses of an eTP=Local Service
      if (f.type !== 'ClusterIP' && f.scope === 'internal' && c.eTP !== 'Local') throw new Error('internal copy under eTP Cluster');
    }
    const ext = state.frontends.filter((f) => f.type !== 'ClusterIP');
    if (c.eTP === 'Local' && ext.filter((f) => f.scope === 'internal').length * 2 !== ext.length) throw new Error('eTP Local without internal copies');
  }), { numRuns: 300 });
  t.pass();
});
