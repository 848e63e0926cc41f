// One test per kind of bad input: the object is rejected with an error naming namespace/name and the
// field, and the other objects still compile.
import test from 'ava';
import { compile } from '../../src/compile/compile.js';
import type { ObjectError } from '../../src/model/types.js';
import { node, slice, snap, svc } from './compile-helpers.js';

const good = svc('ok/good', { clusterIP: '10.96.0.50', ports: [{ port: 80 }] });
const goodSlice = slice('ok/good-1', 'good', [{ port: 80 }], [{ ip: '10.244.1.1' }]);

function check(t: import('ava').ExecutionContext, services: unknown[], slices: unknown[], expect: Partial<ObjectError>) {
  const { state, errors } = compile(snap([good, ...services], [goodSlice, ...slices], [node('n1', ['192.168.1.1'])]), { nodeName: 'n1', standalone: true });
  const hit = errors.find((e) => e.key === expect.key && e.field === expect.field && e.severity === (expect.severity ?? 'error'));
  t.truthy(hit, `expected ${JSON.stringify(expect)} in ${JSON.stringify(errors, null, 1)}`);
  if (expect.message) t.regex(hit!.message, new RegExp(expect.message));
  if (expect.kind) t.is(hit!.kind, expect.kind);
  // the good Service is untouched
  const fe = state.frontends.find((f) => f.service === 'ok/good');
  t.deepEqual(fe?.backends.map((b) => b.address), ['10.244.1.1']);
  return state;
}

const cases: [string, unknown, Partial<ObjectError>][] = [
  ['clusterIP that does not parse', svc('ns1/a', { clusterIP: '10.96.0.999', ports: [{ port: 80 }] }), { key: 'ns1/a', field: 'spec.clusterIP', message: 'not an IP' }],
  ['port 0', svc('ns1/b', { ports: [{ name: 'x', port: 80 }, { name: 'y', port: 0 }] }), { key: 'ns1/b', field: 'spec.ports[1].port', message: 'out of range' }],
  ['port over 65535', svc('ns1/c', { ports: [{ port: 65536 }] }), { key: 'ns1/c', field: 'spec.ports[0].port', message: 'out of range' }],
  ['port not a number', svc('ns1/c2', { ports: [{ port: '80a' }] }), { key: 'ns1/c2', field: 'spec.ports[0].port' }],
  ['missing port', svc('ns1/c3', { ports: [{ name: 'x' }] }), { key: 'ns1/c3', field: 'spec.ports[0].port', message: 'required' }],
  ['nodePort on a ClusterIP Service', svc('ns1/d2', { ports: [{ port: 80, nodePort: 30001 }] }), { key: 'ns1/d2', field: 'spec.ports[0].nodePort' }],
  ['duplicate port', svc('ns1/e', { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80, protocol: 'TCP' }] }), { key: 'ns1/e', field: 'spec.ports[1]', message: 'duplicate' }],
  ['duplicate port name', svc('ns1/e2', { ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] }), { key: 'ns1/e2', field: 'spec.ports[1].name' }],
  ['duplicate nodePort', svc('ns1/e3', { type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 30010 }, { name: 'b', port: 81, nodePort: 30010 }] }), { key: 'ns1/e3', field: 'spec.ports[1].nodePort' }],
  ['affinity timeout too long', svc('ns1/k', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } }, ports: [{ port: 80 }] }), { key: 'ns1/k', field: 'spec.sessionAffinityConfig.clientIP.timeoutSeconds' }],
  ['bad externalIP', svc('ns1/l', { externalIPs: ['192.168.1.1', 'nine'], ports: [{ port: 80 }] }), { key: 'ns1/l', field: 'spec.externalIPs[1]' }],
  ['bad LB ingress ip', svc('ns1/m', { type: 'LoadBalancer', ports: [{ port: 80 }] }, { status: { loadBalancer: { ingress: [{ ip: '300.1.1.1' }] } } }), { key: 'ns1/m', field: 'status.loadBalancer.ingress[0].ip' }],
  ['bad loadBalancerIP', svc('ns1/m2', { type: 'LoadBalancer', loadBalancerIP: 'lb', ports: [{ port: 80 }] }), { key: 'ns1/m2', field: 'spec.loadBalancerIP' }],
  ['bad source range', svc('ns1/n', { type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/8', '10.0.0.0/40'], ports: [{ port: 80 }] }), { key: 'ns1/n', field: 'spec.loadBalancerSourceRanges[1]' }],
  ['unknown ipFamily', svc('ns1/o', { ipFamilies: ['IPv5'], ports: [{ port: 80 }] }), { key: 'ns1/o', field: 'spec.ipFamilies[0]' }],
  ['ipFamilies not matching clusterIPs', svc('ns1/p', { clusterIP: '10.96.0.60', ipFamilies: ['IPv6'], ports: [{ port: 80 }] }), { key: 'ns1/p', field: 'spec.ipFamilies[0]' }],
  ['two clusterIPs of one family', svc('ns1/q', { clusterIP: '10.96.0.61', clusterIPs: ['10.96.0.61', '10.96.0.62'], ipFamilyPolicy: 'RequireDualStack', ports: [{ port: 80 }] }), { key: 'ns1/q', field: 'spec.clusterIPs[1]' }],
  ['bad named targetPort', svc('ns1/s', { ports: [{ port: 80, targetPort: 'Not_A_Name' }] }), { key: 'ns1/s', field: 'spec.ports[0].targetPort' }],
  ['targetPort out of range', svc('ns1/s2', { ports: [{ port: 80, targetPort: 70000 }] }), { key: 'ns1/s2', field: 'spec.ports[0].targetPort' }],
  ['spec not an object', svc('ns1/t', 'ClusterIP' as never), { key: 'ns1/t', field: 'spec' }],
  ['no ports', svc('ns1/u', { clusterIP: '10.96.0.63' }), { key: 'ns1/u', field: 'spec.ports' }],
  ['no name', { kind: 'Service', metadata: { namespace: 'ns1' }, spec: { ports: [{ port: 80 }] } }, { field: 'metadata.name' }],
];

for (const [title, s, expect] of cases) {
  test(`Service: ${title}`, (t) => {
    if (expect.key === undefined) {
      // an unnamed object is keyed by its position in the snapshot
      const { errors } = compile(snap([s]), { nodeName: 'n1' });
      t.true(errors.some((e) => e.field === expect.field && e.kind === 'Service'));
      return;
    }
    const state = check(t, [s], [], { ...expect, kind: 'Service' });
    t.false(state.frontends.some((f) => f.service === expect.key), 'nothing of the rejected Service is compiled');
  });
}

const sliceCases: [string, unknown, Partial<ObjectError>][] = [
  ['address that does not parse', slice('ok/good-2', 'good', [{ port: 80 }], [{ ip: '10.244.1.2' }, { ip: '10.244.1' }]), { key: 'ok/good-2', field: 'endpoints[1].addresses[0]' }],
  ['address of the wrong family', slice('ok/good-3', 'good', [{ port: 80 }], [{ ip: 'fd00::2' }]), { key: 'ok/good-3', field: 'endpoints[0].addresses[0]' }],
  ['port 0', slice('ok/good-4', 'good', [{ port: 0 }], [{ ip: '10.244.1.3' }]), { key: 'ok/good-4', field: 'ports[0].port' }],
  ['port over 65535', slice('ok/good-5', 'good', [{ port: 65536 }], [{ ip: '10.244.1.3' }]), { key: 'ok/good-5', field: 'ports[0].port' }],
  ['duplicate port', slice('ok/good-7', 'good', [{ port: 80 }, { port: 81 }], [{ ip: '10.244.1.3' }]), { key: 'ok/good-7', field: 'ports[1]' }],
  ['unknown addressType', { ...slice('ok/good-8', 'good', [{ port: 80 }], [{ ip: '10.244.1.3' }]), addressType: 'IPv7' }, { key: 'ok/good-8', field: 'addressType' }],
  ['condition not a boolean', { ...slice('ok/good-9', 'good', [{ port: 80 }], []), endpoints: [{ addresses: ['10.244.1.3'], conditions: { serving: 1 } }] }, { key: 'ok/good-9', field: 'endpoints[0].conditions.serving' }],
  ['endpoint without addresses', { ...slice('ok/good-10', 'good', [{ port: 80 }], []), endpoints: [{ addresses: [] }] }, { key: 'ok/good-10', field: 'endpoints[0].addresses' }],
];

for (const [title, s, expect] of sliceCases) {
  test(`EndpointSlice: ${title}`, (t) => {
    check(t, [], [s], { ...expect, kind: 'EndpointSlice' });
  });
}

test('a slice without the service-name label is ignored with a warning', (t) => {
  const s = slice('ok/stray', 'good', [{ port: 80 }], [{ ip: '10.244.1.9' }]) as { metadata: { labels: object } };
  s.metadata.labels = {};
  check(t, [], [s], { kind: 'EndpointSlice', key: 'ok/stray', field: 'metadata.labels[kubernetes.io/service-name]', severity: 'warning' });
});

test('an externalIP outside the allow list gets no frontend and a warning', (t) => {
  const s = svc('ns2/x', { clusterIP: '10.96.0.70', externalIPs: ['192.168.5.5', '172.16.5.5'], ports: [{ port: 80 }] });
  const { state, errors } = compile(snap([s]), { nodeName: 'n1', externalIPAllowCidrs: ['192.168.0.0/16'] });
  t.deepEqual(state.frontends.filter((f) => f.type === 'ExternalIP').map((f) => f.address), ['192.168.5.5']);
  t.deepEqual(errors.map((e) => [e.key, e.field, e.severity]), [['ns2/x', 'spec.externalIPs[1]', 'warning']]);
});

test('bad options are configuration errors (KbpError, exit 2), not object errors', (t) => {
  const s = snap([good]);
  for (const opts of [{ nodeName: 'n1', serviceCidrs: ['10.96.0.0/40'] }, { nodeName: 'n1', nodePortAddresses: ['bogus'] },
    { nodeName: 'n1', nodeIPs: ['x'] }, { nodeName: 'n1', externalIPAllowCidrs: ['1.2.3.0/99'] }, { nodeName: '' }]) {
    const e = t.throws(() => compile(s, opts));
    t.is((e as { code?: string }).code, 'KBP_ERR_CONFIG', JSON.stringify(opts));
  }
});
