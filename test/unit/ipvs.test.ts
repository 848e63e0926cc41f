// The IPVS data plane without a kernel: netlink messages byte for byte (what the kbp_netlink addon
// sends and what the kernel answers, linux/ip_vs.h), and the desired state a plan turns into
// (virtual servers, weights, persistence, the eTP=Local mark services, the nft elements), and the
// read-back that dump prints. The VM tier (test/vm/ipvs-guest.ts) runs the same code on a kernel.
import test from 'ava';
import { buildPlan } from '../../src/plan/plan.js';
import { planToCompiledState } from '../../src/dataplane/plan-to-compiled.js';
import type { NodeState } from '../../src/model/compiled.js';
import { attr, decodeAttrs, decodeError, decodeMessages, encodeAttrs, encodeMessage, genlPayload, ipText, NLM_F_ACK, NLM_F_REQUEST } from '../../src/dataplane/ipvs/netlink.js';
import { decodeDest, decodeService, destAttrs, IPVS_CMD, ipvsOps, serviceAttrs, SVC_F_MH_FALLBACK, SVC_F_MH_PORT, SVC_F_PERSISTENT, vsKey } from '../../src/dataplane/ipvs/ipvs.js';
import { staleUdpRules } from '../../src/dataplane/nftables/conntrack.js';
import { desiredState, FWMARK_BASE, isOurVirtualServer } from '../../src/dataplane/ipvs/model.js';
import { readBackPlan } from '../../src/dataplane/ipvs/dataplane.js';
import { elementDiff } from '../../src/dataplane/ipvs/nft.js';
import { kernelVersion } from '../../src/dataplane/ipvs/host.js';
import { be, fe } from './plan-helpers.js';

const hex = (b: Buffer) => b.toString('hex');

test('NEW_SERVICE for 10.96.0.10:80/TCP rr is the bytes ipvsadm sends (linux/ip_vs.h)', (t) => {
  const vs = { address: '10.96.0.10', protocol: 'TCP' as const, port: 80, scheduler: 'rr', flags: 0, timeout: 0 };
  const payload = genlPayload(IPVS_CMD.NEW_SERVICE, 1, serviceAttrs(vs));
  t.is(hex(payload),
    '01010000' + // genlmsghdr: cmd NEW_SERVICE, version 1
    '54000180' + // IPVS_CMD_ATTR_SERVICE, nested, 84 bytes
    '0600010002000000' + // AF = AF_INET (u16, padded)
    '0600020006000000' + // PROTOCOL = 6
    '140003000a60000a' + '00'.repeat(12) + // ADDR: nf_inet_addr, 16 bytes
    '0600040000500000' + // PORT = 80, network order
    '0700060072720000' + // SCHED_NAME "rr\0"
    '0c00070000000000ffffffff' + // FLAGS { flags 0, mask ~0 }
    '0800080000000000' + // TIMEOUT 0
    '08000900ffffffff'); // NETMASK /32
  const msg = encodeMessage({ type: 0x25, flags: NLM_F_REQUEST | NLM_F_ACK, seq: 7, payload });
  t.is(msg.readUInt32LE(0), 16 + payload.length);
  const [m] = decodeMessages(msg);
  t.deepEqual({ type: m!.type, flags: m!.flags, seq: m!.seq }, { type: 0x25, flags: 5, seq: 7 });
  t.deepEqual(decodeService(m!), vs);
});

test('services: persistence, mh flags, IPv6 and firewall marks survive a round trip', (t) => {
  const cases = [
    { address: 'fd00:10:96::a', protocol: 'UDP' as const, port: 53, scheduler: 'mh', flags: SVC_F_MH_PORT | SVC_F_PERSISTENT, timeout: 10800 },
    { address: '10.96.0.1', protocol: 'SCTP' as const, port: 3868, scheduler: 'rr', flags: SVC_F_PERSISTENT, timeout: 30 },
    { address: '0.0.0.0', fwmark: FWMARK_BASE | 5, protocol: 'TCP' as const, port: 0, scheduler: 'rr', flags: 0, timeout: 0 },
  ];
  for (const vs of cases) {
    const [m] = decodeMessages(encodeMessage({ type: 0x25, flags: 0, seq: 1, payload: genlPayload(IPVS_CMD.NEW_SERVICE, 1, serviceAttrs(vs)) }));
    t.deepEqual(decodeService(m!), vs, vsKey(vs));
  }
  // the kernel sets HASHED on every service it lists: not a flag of ours
  const listed = { address: '10.96.0.1', protocol: 'TCP' as const, port: 80, scheduler: 'rr', flags: 0x2 | SVC_F_PERSISTENT, timeout: 5 };
  const [m] = decodeMessages(encodeMessage({ type: 0x25, flags: 2, seq: 1, payload: genlPayload(IPVS_CMD.NEW_SERVICE, 1, serviceAttrs(listed)) }));
  t.is(decodeService(m!)!.flags, SVC_F_PERSISTENT);
});

test('NEW_DEST carries the service key, then the real server (masq, weight, thresholds)', (t) => {
  const op = ipvsOps.addDest({ address: '10.96.0.10', protocol: 'TCP', port: 80 }, { address: '10.244.1.2', port: 8080, weight: 1 });
  t.is(op.cmd, IPVS_CMD.NEW_DEST);
  t.is(hex(op.payload.subarray(0, 4)), '05010000', 'genlmsghdr: NEW_DEST, version 1');
  const top = decodeAttrs(op.payload.subarray(4));
  t.is(hex(top.get(1)!.subarray(0, 8)), '0600010002000000', 'service key first: AF');
  const d = decodeAttrs(top.get(2)!);
  t.is(hex(d.get(1)!), '0af40102' + '00'.repeat(12));
  t.is(hex(d.get(2)!), '1f90', 'port 8080 in network order');
  t.is(d.get(3)!.readUInt32LE(0), 0, 'IP_VS_CONN_F_MASQ');
  t.is(d.get(4)!.readUInt32LE(0), 1);
  // a GET_DEST answer as the kernel writes it, counters included
  const answer = genlPayload(IPVS_CMD.NEW_DEST, 1, [attr.nested(2, [
    attr.bytes(1, Buffer.from('0af40102' + '00'.repeat(12), 'hex')), attr.be16(2, 8080), attr.u32(3, 0), attr.u32(4, 0),
    attr.u32(7, 3), attr.u32(8, 9), attr.u32(9, 1), attr.u16(11, 2),
  ])]);
  t.deepEqual(decodeDest({ type: 0x25, flags: 2, seq: 1, payload: answer }, 2),
    { address: '10.244.1.2', port: 8080, weight: 0, activeConns: 3, inactiveConns: 9, persistConns: 1 });
});

test('real-server ops written straight into one buffer are the bytes of the attribute encoder (destAttrs), and the same for every command and family', (t) => {
  const services = [
    { address: '10.96.0.10', protocol: 'TCP' as const, port: 80, scheduler: 'rr', flags: SVC_F_PERSISTENT, timeout: 60 },
    { address: 'fd00:10:96::a', protocol: 'UDP' as const, port: 53 },
    { address: '0.0.0.0', fwmark: FWMARK_BASE | 5, protocol: 'TCP' as const, port: 0 },
    { address: '::', fwmark: FWMARK_BASE | 77, protocol: 'SCTP' as const, port: 0 },
  ];
  const dests = [
    { address: '10.244.1.2', port: 8080, weight: 1 }, { address: '255.0.9.99', port: 65535, weight: 0 },
    { address: 'fd00:10:244:1::2', port: 1, weight: 7 }, { address: '::ffff:10.1.2.3', port: 80, weight: 1 },
  ];
  for (const v of services) {
    for (const d of dests) {
      const key = { address: v.address, protocol: v.protocol, port: v.port, ...('fwmark' in v && { fwmark: v.fwmark }) };
      t.is(hex(ipvsOps.addDest(v, d).payload), hex(genlPayload(IPVS_CMD.NEW_DEST, 1, destAttrs(key, d, true))), `add ${vsKey(v)} ${d.address}`);
      t.is(hex(ipvsOps.editDest(v, d).payload), hex(genlPayload(IPVS_CMD.SET_DEST, 1, destAttrs(key, d, true))), `edit ${vsKey(v)} ${d.address}`);
      t.is(hex(ipvsOps.delDest(v, d).payload), hex(genlPayload(IPVS_CMD.DEL_DEST, 1, destAttrs(key, { ...d, weight: 0 }, false))), `del ${vsKey(v)} ${d.address}`);
    }
  }
  t.is(ipvsOps.editDest(services[0]!, dests[0]!).what, 'set weight 1 of 10.244.1.2:8080 in 10.96.0.10|80|TCP');
  t.throws(() => ipvsOps.addDest(services[0]!, { address: '10.244.1.256', port: 80, weight: 1 }), { message: /not an IP address/ });
  t.throws(() => ipvsOps.addDest(services[0]!, { address: '10.244.1', port: 80, weight: 1 }), { message: /not an IP address/ });
});

test('an NLMSG_ERROR answer gives the errno and the kernel\'s extended-ack text', (t) => {
  const p = Buffer.alloc(4 + 16);
  p.writeInt32LE(-17, 0);
  const withText = Buffer.concat([p, encodeAttrs([attr.str(1, 'Service already exists')])]);
  t.deepEqual(decodeError({ type: 2, flags: 0x100 | 0x200, seq: 1, payload: withText }), { errno: -17, message: 'Service already exists' });
  t.deepEqual(decodeError({ type: 2, flags: 0x100, seq: 1, payload: p }), { errno: -17 });
  t.throws(() => decodeMessages(Buffer.from('ff000000020000000100000000000000', 'hex')), { message: /runs past/ });
});

test('IPv6 addresses as IPVS carries them read back as text', (t) => {
  t.is(ipText(10, Buffer.from('fd000010024400000000000000000002', 'hex')), 'fd00:10:244::2');
});

function plan(state: NodeState) {
  return buildPlan(state, undefined, { seed: 1 });
}

test('desired state: a virtual server per frontend address, weights, persistence, NodePort on each node address', (t) => {
  const p = plan({ frontends: [
    fe('10.96.0.10', 80, [be('10.244.1.2'), be('10.244.2.2'), be('10.244.3.3', 8080, true)], { sessionAffinitySeconds: 60 }),
    fe('0.0.0.0', 30080, [be('10.244.1.2'), be('10.244.2.2')], { type: 'NodePort', scope: 'external', snatRemote: true }),
    fe('10.96.0.11', 53, [], { protocol: 'UDP' }),
  ] });
  const d = desiredState(p, { scheduler: 'rr', nodeAddresses: { 4: ['192.168.1.1', '192.168.2.1'], 6: [] } });
  t.deepEqual([...d.services.keys()].sort(), ['10.96.0.10|80|TCP', '192.168.1.1|30080|TCP', '192.168.2.1|30080|TCP']);
  const c = d.services.get('10.96.0.10|80|TCP')!;
  t.is(c.vs.flags, SVC_F_PERSISTENT);
  t.is(c.vs.timeout, 60);
  // KEP-1669: the terminating endpoint keeps its flows (weight 0) while ready ones are left
  t.deepEqual([...c.dests.values()].map((r) => `${r.address}=${r.weight}`), ['10.244.1.2=1', '10.244.2.2=1', '10.244.3.3=0']);
  t.deepEqual([...d.vips].sort(), ['10.96.0.10', '10.96.0.11'], 'NodePorts are on node addresses, not the dummy');
  t.deepEqual([...d.elements.get('no-endpoints4')!], ['10.96.0.11 . udp . 53'], 'no endpoints: refused by nft, no virtual server');
  t.deepEqual([...d.elements.get('masq-frontends4')!].sort(), ['192.168.1.1 . tcp . 30080', '192.168.2.1 . tcp . 30080']);
  const mh = desiredState(p, { scheduler: 'mh', nodeAddresses: { 4: [], 6: [] } });
  // the source port hashed too, as kube-proxy (Proxier.syncProxyRules: FlagSourceHash for mh); and
  // mh-fallback, which kube-proxy leaves off: a draining (weight 0) server's clients go elsewhere
  // instead of being refused (README, differences)
  t.is(mh.services.get('10.96.0.10|80|TCP')!.vs.flags, SVC_F_PERSISTENT | SVC_F_MH_PORT | SVC_F_MH_FALLBACK, 'mh: source port hashed, fallback past weight 0');
});

test('desired state: all terminating means they serve (weight 1); eTP=Local external traffic gets its own mark service', (t) => {
  const local = be('10.244.1.2', 8080, false, true);
  const p = plan({ frontends: [
    fe('10.96.0.12', 80, [be('10.244.1.5', 8080, true), be('10.244.2.5', 8080, true)]),
    fe('192.168.50.1', 80, [local, be('10.244.2.2')], { type: 'LoadBalancer', scope: 'internal' }),
    fe('192.168.50.1', 80, [local], { type: 'LoadBalancer', scope: 'external', sourceRanges: ['10.0.0.0/8'] }),
  ] });
  const d = desiredState(p, { scheduler: 'rr', nodeAddresses: { 4: [], 6: [] } });
  t.deepEqual([...d.services.get('10.96.0.12|80|TCP')!.dests.values()].map((r) => r.weight), [1, 1]);
  const ext = [...p.frontends.values()].find((f) => f.scope === 'external')!;
  const mark = (FWMARK_BASE | ext.id) >>> 0;
  const fw = d.services.get(`fwmark 0x${mark.toString(16)}|4`);
  t.truthy(fw, 'a firewall-mark service for the external frontend');
  t.deepEqual([...fw!.dests.keys()], ['10.244.1.2|8080'], 'local endpoints only');
  t.deepEqual([...d.services.get('192.168.50.1|80|TCP')!.dests.keys()].sort(), ['10.244.1.2|8080', '10.244.2.2|8080'], 'in-cluster traffic: every endpoint');
  t.deepEqual([...d.elements.get('fwmarks4')!], [`192.168.50.1 . tcp . 80 : 0x${mark.toString(16)}`]);
  t.deepEqual([...d.elements.get('firewall-allow4')!], ['192.168.50.1 . tcp . 80 . 10.0.0.0/8']);
  t.deepEqual([...d.elements.get('local-backends4')!], ['10.244.1.2']);
});

test('read-back: what IPVS holds prints as compile -o json would; draining servers are left out, missing ones show', (t) => {
  const state: NodeState = { frontends: [
    fe('10.96.0.10', 80, [be('10.244.1.2'), be('10.244.2.2', 8080, true)]),
    fe('10.96.0.11', 53, [], { protocol: 'UDP' }),
  ] };
  const p = plan(state);
  const d = desiredState(p, { scheduler: 'rr', nodeAddresses: { 4: [], 6: [] } });
  const held = new Map([...d.services].map(([k, v]) => [k, { vs: v.vs, dests: new Map(v.dests) }]));
  t.deepEqual(planToCompiledState(readBackPlan(p, d, held)), planToCompiledState(p));
  // a draining real server (weight 0, not terminating in the plan) is not a backend any more
  held.get('10.96.0.10|80|TCP')!.dests.set('10.244.3.3|8080', { address: '10.244.3.3', port: 8080, weight: 0 });
  t.deepEqual(planToCompiledState(readBackPlan(p, d, held)), planToCompiledState(p));
  // one the kernel lost is not printed as if it were there
  held.get('10.96.0.10|80|TCP')!.dests.delete('10.244.1.2|8080');
  const back = planToCompiledState(readBackPlan(p, d, held));
  t.deepEqual(back.frontends[0]!.backends.map((b) => b.address), ['10.244.2.2']);
});

test('UDP conntrack flush (one deleter for both fallback modes): a removed UDP real server names its VIP with the backends left', (t) => {
  const before = plan({ frontends: [
    fe('10.96.0.53', 53, [be('10.244.1.2', 5353), be('10.244.2.2', 5353)], { protocol: 'UDP' }),
    fe('0.0.0.0', 30053, [be('10.244.1.2', 5353), be('10.244.2.2', 5353)], { protocol: 'UDP', type: 'NodePort', scope: 'external' }),
    fe('10.96.0.10', 80, [be('10.244.1.2'), be('10.244.2.2')]),
  ] });
  const after = plan({ frontends: [
    fe('10.96.0.53', 53, [be('10.244.1.2', 5353)], { protocol: 'UDP' }),
    fe('0.0.0.0', 30053, [be('10.244.1.2', 5353)], { protocol: 'UDP', type: 'NodePort', scope: 'external' }),
    fe('10.96.0.10', 80, [be('10.244.1.2')]),
  ] });
  // kube-proxy's IPVS mode: deleteEndpointConnections (ClearEntriesForNAT / ForPortNAT for NodePorts)
  t.deepEqual(staleUdpRules(before, after).sort((a, b) => a.port - b.port), [
    { dst: '10.96.0.53', port: 53, any: false, keep: ['10.244.1.2'] },
    { dst: '0.0.0.0', port: 30053, any: true, keep: ['10.244.1.2'] },
  ], 'TCP drains instead: no rule for 10.96.0.10');
  t.deepEqual(staleUdpRules(after, after), [], 'nothing left: nothing flushed');
});

test('ownership without a state file: NodePorts on node addresses are ours, other virtual servers of the node are not', (t) => {
  const o = { owned: new Set<string>(), onDummy: new Set(['10.96.0.10']), nodeAddresses: new Set(['192.168.77.1', 'fd00::1']), nodePortRange: { min: 30000, max: 32767 } };
  const vs = (address: string, port: number, fwmark?: number) => ({ address, port, protocol: 'TCP' as const, scheduler: 'rr', flags: 0, timeout: 0, ...(fwmark !== undefined && { fwmark }) });
  t.true(isOurVirtualServer(vs('192.168.77.1', 30080), o), 'a NodePort on a node address');
  t.true(isOurVirtualServer(vs('fd00::1', 32767), o), 'IPv6, the range\'s last port');
  t.true(isOurVirtualServer(vs('10.96.0.10', 80), o), 'on the dummy');
  t.true(isOurVirtualServer(vs('0.0.0.0', 0, FWMARK_BASE | 7), o), 'our mark');
  t.false(isOurVirtualServer(vs('192.168.77.1', 8080), o), 'a node address outside the node-port range: someone else\'s');
  t.false(isOurVirtualServer(vs('192.168.99.1', 30080), o), 'not a node address');
  t.false(isOurVirtualServer(vs('0.0.0.0', 0, 0x10), o), 'another mark');
  t.true(isOurVirtualServer(vs('192.168.99.1', 8080), { ...o, owned: new Set(['192.168.99.1|8080|TCP']) }), 'recorded in the state file');
});

test('nft element diff: deletes name the key only, adds the whole element', (t) => {
  const have = new Map([['fwmarks4', new Set(['10.0.0.1 . tcp . 80 : 0x1', '10.0.0.2 . tcp . 80 : 0x2'])]]);
  const want = new Map([['fwmarks4', new Set(['10.0.0.2 . tcp . 80 : 0x2', '10.0.0.3 . tcp . 80 : 0x3'])], ['vips4', new Set<string>()]]);
  t.is(elementDiff('T', have, want),
    'delete element inet T fwmarks4 { 10.0.0.1 . tcp . 80 }\nadd element inet T fwmarks4 { 10.0.0.3 . tcp . 80 : 0x3 }\n');
  t.is(elementDiff('T', want, want), '');
});

test('conn_reuse_mode is left alone from 5.9 on: the kernel version is read as major.minor', (t) => {
  t.deepEqual(kernelVersion('6.1.0-57-amd64'), [6, 1]);
  t.deepEqual(kernelVersion('5.10.0'), [5, 10]);
  t.deepEqual(kernelVersion('4.19.0-1'), [4, 19]);
});
