// nodePortAddresses as kube-proxy resolves it: pkg/proxy/util/nodeport_addresses.go
// (NewNodePortAddresses: per-family fallback to the zero CIDR) and cmd/kube-proxy/app/server.go
// (detectNodeIPs; 'primary' expanded to the primary node IP per family, loopback skipped), with the
// keywords the current KubeProxyConfiguration defines ('primary', 'localhost', 'all', combinable).
import test from 'ava';
import { checkNodePortAddresses, LOOPBACK, resolveNodePortAddresses, ZERO } from '../../src/compile/nodeport-addresses.js';
import { parseCidr } from '../../src/util/ip.js';
import type { NodeModel } from '../../src/model/types.js';

const dual: NodeModel = { name: 'n1', zone: '', internalIPs: ['192.168.1.1', '10.0.0.1', 'fd00::1'], externalIPs: ['203.0.113.9', 'fd00::99'] };
const v4only: NodeModel = { name: 'n1', zone: '', internalIPs: ['192.168.1.1', '10.0.0.1'], externalIPs: [] };

function r(node: NodeModel | undefined, opts: Parameters<typeof resolveNodePortAddresses>[1]) {
  const m = resolveNodePortAddresses(node, opts);
  return { 4: m.get(4), 6: m.get(6) };
}

test('unset, default all: every known address per family (iptables/ipvs mode semantics)', (t) => {
  t.deepEqual(r(dual, {}), { 4: ['192.168.1.1', '10.0.0.1', '203.0.113.9'], 6: ['fd00::1', 'fd00::99'] });
  // nothing known about a family: any address rather than none
  t.deepEqual(r(v4only, {}), { 4: ['192.168.1.1', '10.0.0.1'], 6: ['::'] });
});

test('unset, default primary: the primary IP per family (nftables mode semantics)', (t) => {
  t.deepEqual(r(dual, { nodePortAddressesDefault: 'primary' }), { 4: ['192.168.1.1'], 6: ['fd00::1'] });
});

test('per-family fallback: a family with no CIDR given answers on all its addresses (NewNodePortAddresses)', (t) => {
  t.deepEqual(r(dual, { nodePortAddresses: ['10.0.0.0/8'] }), { 4: ['10.0.0.1'], 6: ['fd00::1', 'fd00::99'] });
  t.deepEqual(r(dual, { nodePortAddresses: ['fd00::99/128'] }), { 4: ['192.168.1.1', '10.0.0.1', '203.0.113.9'], 6: ['fd00::99'] });
  // a CIDR of the family that matches nothing is still a choice: no NodePorts in that family
  t.deepEqual(r(dual, { nodePortAddresses: ['172.16.0.0/12'] })[4], []);
});

test("primary: InternalIP first, then ExternalIP, per family; a family without one falls back (detectNodeIPs, server.go)", (t) => {
  const extOnly6: NodeModel = { ...v4only, externalIPs: ['fd00::99'] };
  t.deepEqual(r(extOnly6, { nodePortAddresses: ['primary'] }), { 4: ['192.168.1.1'], 6: ['fd00::99'] });
  t.deepEqual(r(v4only, { nodePortAddresses: ['primary'] }), { 4: ['192.168.1.1'], 6: ['::'] });
  // no Node object: the first --node-ip of the family
  t.deepEqual(r(undefined, { nodeIPs: ['10.9.9.9', 'fd00::9'], nodePortAddresses: ['primary'] }), { 4: ['10.9.9.9'], 6: ['fd00::9'] });
});

test('primary: bindAddress overrides its family; loopback is never primary', (t) => {
  t.deepEqual(r(dual, { nodePortAddresses: ['primary'], bindAddress: '10.0.0.1' }), { 4: ['10.0.0.1'], 6: ['fd00::1'] });
  // 0.0.0.0 does not override
  t.deepEqual(r(dual, { nodePortAddresses: ['primary'], bindAddress: '0.0.0.0' })[4], ['192.168.1.1']);
  const lo: NodeModel = { name: 'n1', zone: '', internalIPs: ['127.0.0.1', 'fd00::1'], externalIPs: [] };
  // the v4 primary is loopback: no v4 CIDR, so v4 falls back to all its (known) addresses
  t.deepEqual(r(lo, { nodePortAddresses: ['primary'] }), { 4: ['127.0.0.1'], 6: ['fd00::1'] });
});

test('keywords combine with each other and with CIDRs (current KubeProxyConfiguration)', (t) => {
  t.deepEqual(r(dual, { nodePortAddresses: ['primary', '203.0.113.0/24'] }), { 4: ['192.168.1.1', '203.0.113.9'], 6: ['fd00::1'] });
  t.deepEqual(r(dual, { nodePortAddresses: ['all'] }), { 4: ['0.0.0.0'], 6: ['::'] });
  t.deepEqual(r(dual, { nodePortAddresses: ['primary', 'all'] }), { 4: ['0.0.0.0'], 6: ['::'] });
  // localhost selects loopback, which we do not serve: both families chosen, nothing matches
  t.deepEqual(r(dual, { nodePortAddresses: ['localhost'] }), { 4: [], 6: [] });
  t.deepEqual(r(dual, { nodePortAddresses: ['primary', 'localhost'] }), { 4: ['192.168.1.1'], 6: ['fd00::1'] });
});

test('bad entries are refused with the keyword list', (t) => {
  t.throws(() => checkNodePortAddresses(['10.0.0.1']), { message: /primary, localhost, all/ });
  t.throws(() => checkNodePortAddresses(['10.0.0.0/40']), { message: /--nodeport-addresses/ });
  t.throws(() => checkNodePortAddresses(['Primary']), { message: /not a CIDR/ });
  t.notThrows(() => checkNodePortAddresses(['primary', 'localhost', 'all', '10.0.0.0/8', '::/0']));
});

test('the zero and loopback CIDRs written out are what parseCidr makes of them', (t) => {
  t.deepEqual(ZERO, { 4: parseCidr('0.0.0.0/0'), 6: parseCidr('::/0') });
  t.deepEqual(LOOPBACK, { 4: parseCidr('127.0.0.0/8'), 6: parseCidr('::1/128') });
});
