// lb_ct_filter (bpf/lb_maps.h): the bit array in front of a new flow's lb_ct lookups (a SYN's forward
// key, the clash check's reverse key, a SYN-ACK's reply key, lb_ct_forget_closed's). The programs set
// a key's bit after every lb_ct insert; the agent turns the filter on and rebuilds it from its scan of
// lb_ct at each sweep (ct-sweep.ts FilterBuild). A false positive costs a lookup; a false negative
// would hide a flow's entry: a reused client port would be balanced anew while its old entries live
// on, a clash would go unseen, a SYN-ACK of a flow re-selected in lb_ct would leave untranslated.
// These rows check that the kernel sets the bit layout.ts ctFilterBit() computes, that no key the
// programs read is missing its bit (their own inserts, entries a rebuild must find, entries written
// during one), and that the filter is read at all (a clear bit does hide an entry, off looks it up).
import test from 'ava';
import { Datapath, LB_BE_F_LOCAL, TC_ACT_OK, TC_ACT_SHOT, XDP_DROP, XDP_PASS, type TestService } from '../../testing/datapath.js';
import { frame, tcp, udp, TCP_ACK, TCP_FIN, TCP_SYN } from '../../testing/packets.js';
import { LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_CT_F_CLOSING, ctFilterBit, encodeCtKey, encodeU32, revFilterElem, type CtKey } from '../../src/dataplane/bpf/layout.js';
import { FilterBuild, RevFilterZeroing, sweepConntrack } from '../../src/dataplane/bpf/ct-sweep.js';
import { isRoot } from './fixtures/util.js';

const CLIENT = '10.244.5.9';
const be = (id: number, address: string, port: number) => ({ id, address, port, flags: 0 });
const WEB: TestService = { feId: 80, address: '10.96.80.1', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(801, '10.244.8.1', 8080)] };
/** a second frontend of WEB's backend: a client port live to WEB clashes here */
const WEB2: TestService = { feId: 82, address: '10.96.80.3', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(801, '10.244.8.1', 8080)] };
/** two LoadBalancer IPs of one local backend, reached from outside (XDP translates them) */
const EXT = '192.168.50.7';
const LB1: TestService = { feId: 83, address: '192.168.97.1', port: 80, protocol: 'TCP', scope: 'external', type: 'LoadBalancer', backends: [{ id: 831, address: '10.244.8.3', port: 8080, flags: LB_BE_F_LOCAL }] };
const LB2: TestService = { feId: 84, address: '192.168.97.2', port: 80, protocol: 'TCP', scope: 'external', type: 'LoadBalancer', backends: [{ id: 831, address: '10.244.8.3', port: 8080, flags: LB_BE_F_LOCAL }] };
const DNS: TestService = { feId: 81, address: '10.96.80.2', port: 53, protocol: 'UDP', scope: 'internal', backends: [be(811, '10.244.8.2', 5353)] };

type Flags = { flags?: number; seq?: number; ack?: number };
function l4(s: TestService, sport: number, dport: number, o: Flags = {}) {
  return s.protocol === 'TCP' ? tcp(sport, dport, o) : udp(sport, dport);
}
/** the client's packet to the frontend, and as translated to the backend */
function fwd(s: TestService, cport: number, o: Flags = {}, client = CLIENT) {
  const b = s.backends[0]!;
  return { input: frame({ src: client, dst: s.address, l4: l4(s, cport, s.port, o) }), output: frame({ src: client, dst: b.address, l4: l4(s, cport, b.port, o) }) };
}
/** the backend's reply, and as rewritten to come from the frontend */
function rep(s: TestService, cport: number, o: Flags = { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001 }, client = CLIENT) {
  const b = s.backends[0]!;
  return { input: frame({ src: b.address, dst: client, l4: l4(s, b.port, cport, o) }), output: frame({ src: s.address, dst: client, l4: l4(s, s.port, cport, o) }) };
}
function fwdKey(s: TestService, cport: number, client = CLIENT): Buffer {
  const k: CtKey = { saddr: client, daddr: s.address, sport: cport, dport: s.port, protocol: s.protocol, dir: LB_CT_DIR_FWD };
  return encodeCtKey(k);
}
function revKey(s: TestService, cport: number, client = CLIENT): Buffer {
  const b = s.backends[0]!;
  const k: CtKey = { saddr: b.address, daddr: client, sport: b.port, dport: cport, protocol: s.protocol, dir: LB_CT_DIR_REV };
  return encodeCtKey(k);
}
const ACK = { flags: TCP_ACK, seq: 1001, ack: 5001 };

function word(d: Datapath, half: 1 | 2, bit: number): bigint {
  return d.map('lb_ct_filter').lookup(encodeU32(revFilterElem(bit, half)))!.readBigUInt64LE(0);
}
const isSet = (d: Datapath, half: 1 | 2, key: Buffer) => {
  const bit = ctFilterBit(key);
  return ((word(d, half, bit) >> BigInt(bit & 63)) & 1n) === 1n;
};
function clearBit(d: Datapath, half: 1 | 2, key: Buffer): void {
  const bit = ctFilterBit(key), v = Buffer.alloc(8);
  v.writeBigUInt64LE(word(d, half, bit) & ~(1n << BigInt(bit & 63)));
  d.map('lb_ct_filter').update(encodeU32(revFilterElem(bit, half)), v);
}
const switchOf = (d: Datapath) => d.map('lb_ct_filter').lookup(encodeU32(0))!.readBigUInt64LE(0);
function setSwitch(d: Datapath, v: number): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  d.map('lb_ct_filter').update(encodeU32(0), b);
}
/** the agent's rebuild over lb_ct, as one sweep does it (dataplane.ts sweepConntrack) */
async function rebuild(d: Datapath, between?: () => void) {
  const r = await FilterBuild.begin(d.map('lb_ct_filter'), 'ct', new RevFilterZeroing(), 0);
  between?.();
  await sweepConntrack(d.map('lb_ct'), 'lb_ct', undefined, undefined, undefined, r.visit);
  r.finish();
  return r;
}

function runOk(t: import('ava').ExecutionContext, d: Datapath, prog: 'lb_tc_ingress' | 'lb_tc_egress' | 'lb_xdp', p: { input: Buffer; output: Buffer | 'input' }, what: string): void {
  const r = d.run(prog, p.input);
  t.is(r.verdict, prog === 'lb_xdp' ? XDP_PASS : TC_ACT_OK, what);
  t.is(r.output.toString('hex'), (p.output === 'input' ? p.input : p.output).toString('hex'), what);
}
/** a TCP flow through its handshake into lb_ct, then closed by the client's FIN */
function closedFlow(t: import('ava').ExecutionContext, d: Datapath, s: TestService, cport: number): void {
  runOk(t, d, 'lb_tc_ingress', fwd(s, cport), 'SYN');
  runOk(t, d, 'lb_tc_egress', rep(s, cport), 'SYN-ACK');
  runOk(t, d, 'lb_tc_ingress', fwd(s, cport, ACK), 'ACK: into lb_ct');
  runOk(t, d, 'lb_tc_ingress', fwd(s, cport, { flags: TCP_FIN | TCP_ACK, seq: 1001, ack: 5001 }), 'FIN');
  t.true(d.ctIn('lb_ct', { saddr: CLIENT, daddr: s.address, sport: cport, dport: s.port, protocol: 'TCP', dir: LB_CT_DIR_FWD })!.flags & LB_CT_F_CLOSING ? true : false, 'closing');
}

/** the same from outside through XDP (SYN, ACK, FIN; the SYN-ACK at tc egress), each forward packet
 * translated by XDP itself (fwd_new, then fwd_ct_hit: no packet left to tc) */
function closedFlowXdp(t: import('ava').ExecutionContext, d: Datapath, s: TestService, cport: number): void {
  d.resetStats();
  runOk(t, d, 'lb_xdp', fwd(s, cport, {}, EXT), 'XDP: SYN');
  runOk(t, d, 'lb_tc_egress', rep(s, cport, undefined, EXT), 'SYN-ACK');
  runOk(t, d, 'lb_xdp', fwd(s, cport, ACK, EXT), 'XDP: ACK, into lb_ct');
  runOk(t, d, 'lb_xdp', fwd(s, cport, { flags: TCP_FIN | TCP_ACK, seq: 1001, ack: 5001 }, EXT), 'XDP: FIN');
  t.is(d.stats().xdp_to_tc, undefined, 'every forward packet translated in XDP');
  t.truthy(d.ctIn('lb_ct', { saddr: EXT, daddr: s.address, sport: cport, dport: s.port, protocol: 'TCP', dir: LB_CT_DIR_FWD })!.flags & LB_CT_F_CLOSING, 'closing');
}

if (!isRoot) {
  test('lb_ct_filter tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); dp.install([WEB, WEB2, DNS, LB1, LB2]); });
  test.after.always(() => dp?.close());

  test.serial('the programs set both keys\' bits at each lb_ct insert (as ctFilterBit computes), none for a handshake in lb_ct_syn', (t) => {
    const d = dp!;
    d.restore();
    t.is(switchOf(d), 1n, 'on, as the agent leaves it');
    const tcpKeys = [fwdKey(WEB, 41000), revKey(WEB, 41000)], udpKeys = [fwdKey(DNS, 52000), revKey(DNS, 52000)];
    for (const k of [...tcpKeys, ...udpKeys]) t.false(isSet(d, 1, k));
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41000), 'SYN translated');
    t.truthy(d.map('lb_ct_syn').lookup(fwdKey(WEB, 41000)), 'the handshake waits in lb_ct_syn');
    for (const k of tcpKeys) t.false(isSet(d, 1, k), 'no bit for lb_ct_syn\'s keys');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41000), 'SYN-ACK rewritten (lb_ct looked up behind a clear bit, then lb_ct_syn)');
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41000, ACK), 'ACK: the flow moves to lb_ct');
    for (const k of tcpKeys) t.true(isSet(d, 1, k) && isSet(d, 2, k), 'both keys, both halves');
    runOk(t, d, 'lb_tc_ingress', fwd(DNS, 52000), 'UDP translated (straight into lb_ct)');
    for (const k of udpKeys) t.true(isSet(d, 1, k) && isSet(d, 2, k), 'UDP: both keys, both halves');
  });

  test.serial('a reused client port finds its closed flow\'s entries behind the filter; a clear bit hides them, off looks them up', (t) => {
    const d = dp!;
    d.restore();
    closedFlow(t, d, WEB, 41001);
    d.resetStats();
    // the port reused: the SYN finds the closing entry (had_ct) and rewrites both in lb_ct, no handshake in lb_ct_syn
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41001), 'the new SYN on the reused port: translated');
    t.falsy(d.map('lb_ct_syn').lookup(fwdKey(WEB, 41001)), 'found its lb_ct entry: re-selected in place, nothing in lb_ct_syn');
    t.is(d.ctIn('lb_ct', { saddr: CLIENT, daddr: WEB.address, sport: 41001, dport: 80, protocol: 'TCP', dir: LB_CT_DIR_FWD })!.flags & LB_CT_F_CLOSING, 0, 'written afresh: no longer closing');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41001), 'its SYN-ACK (in lb_ct, its bit set): rewritten');

    // the filter is read: the same with the forward key's bit cleared in the half in use
    closedFlow(t, d, WEB, 41002);
    clearBit(d, 1, fwdKey(WEB, 41002));
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41002), 'SYN behind a clear bit');
    t.truthy(d.map('lb_ct_syn').lookup(fwdKey(WEB, 41002)), 'not looked up in lb_ct: a brand-new handshake');
    setSwitch(d, 0);
    closedFlow(t, d, WEB, 41003);
    clearBit(d, 1, fwdKey(WEB, 41003));
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41003), 'SYN, filter off');
    t.falsy(d.map('lb_ct_syn').lookup(fwdKey(WEB, 41003)), 'off: looked up, found in lb_ct');
    setSwitch(d, 3);
    closedFlow(t, d, WEB, 41004);
    clearBit(d, 1, fwdKey(WEB, 41004));
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41004), 'SYN, a switch value of no half');
    t.falsy(d.map('lb_ct_syn').lookup(fwdKey(WEB, 41004)), 'a switch value of no half: off, looked up');
    setSwitch(d, 1);
  });

  test.serial('the clash check sees another frontend\'s live flow on the reply tuple behind the filter', (t) => {
    const d = dp!;
    d.restore();
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41010), 'SYN to WEB');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41010), 'SYN-ACK');
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41010, ACK), 'ACK: live in lb_ct');
    d.resetStats();
    const r = d.run('lb_tc_ingress', fwd(WEB2, 41010).input);
    t.is(r.verdict, TC_ACT_SHOT, 'the same client port to WEB2, whose replies would carry WEB\'s tuple: dropped');
    t.deepEqual(d.stats(), { drop_ct_clash: 1 });
    // and the check reads the filter: with the reverse key's bit clear it would not see the flow
    clearBit(d, 1, revKey(WEB, 41010));
    d.resetStats();
    t.is(d.run('lb_tc_ingress', fwd(WEB2, 41010).input).verdict, TC_ACT_OK, 'a clear bit hides the live flow (what the programs\' own bits prevent)');
  });

  test.serial('the agent\'s rebuild: entries without bits (an upgrade\'s fresh map, a restart) are found by its scan, later ones by the programs', async (t) => {
    const d = dp!;
    d.restore();
    closedFlow(t, d, WEB, 41020);
    runOk(t, d, 'lb_tc_ingress', fwd(DNS, 52020), 'a UDP flow');
    // the filter as an upgrade's fresh map, or a restart's switched-off one, has it: all zero, off
    d.resetFilter('lb_ct_filter', 0);
    // switched on without the rebuild (what the agent must never do): the reused port is not found
    setSwitch(d, 1);
    closedFlow(t, d, WEB, 41021);
    d.resetFilter('lb_ct_filter', 1);
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41021), 'on without the rebuild');
    t.truthy(d.map('lb_ct_syn').lookup(fwdKey(WEB, 41021)), 'the closed flow\'s entry missed (a bit-less key)');
    d.resetFilter('lb_ct_filter', 0);

    const r1 = await rebuild(d);
    t.is(r1.half, 1);
    t.is(switchOf(d), 1n, 'switched on');
    for (const k of [fwdKey(WEB, 41020), revKey(WEB, 41020), fwdKey(DNS, 52020), revKey(DNS, 52020)]) t.true(isSet(d, 1, k), 'the scan set every lb_ct key\'s bit');
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41020), 'the reused port after the rebuild');
    t.falsy(d.map('lb_ct_syn').lookup(fwdKey(WEB, 41020)), 'found in lb_ct');

    // the next rebuild takes the other half and drops the bits of entries gone (DNS's flow); a flow
    // written after it zeroed that half and before the switch sets its bit there itself
    for (const k of [fwdKey(DNS, 52020), revKey(DNS, 52020)]) d.map('lb_ct').delete(k);
    const r2 = await rebuild(d, () => { d.run('lb_tc_ingress', fwd(DNS, 52021).input); });
    t.is(r2.half, 2);
    t.is(switchOf(d), 2n);
    t.true(isSet(d, 2, fwdKey(DNS, 52021)) && isSet(d, 2, revKey(DNS, 52021)), 'set by the program during the rebuild');
    t.false(isSet(d, 2, fwdKey(DNS, 52020)), 'an entry gone: its bit dropped');
    t.true(isSet(d, 2, fwdKey(WEB, 41020)), 'a live entry\'s bit kept');
  });

  test.serial('a SYN-ACK of a flow re-selected in lb_ct and one in lb_ct_syn are both rewritten with the filter on', (t) => {
    const d = dp!;
    d.restore();
    closedFlow(t, d, WEB, 41030);
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41030), 'SYN on the reused port: in lb_ct');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41030), 'its SYN-ACK found in lb_ct');
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41031), 'SYN of a new port: in lb_ct_syn');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41031), 'its SYN-ACK found in lb_ct_syn');
  });

  test.serial('XDP reads the filter too: a reused client port\'s SYN finds its closed flow behind a set bit, a clear bit hides it, off looks it up', (t) => {
    const d = dp!;
    d.restore();
    d.setExternal(true);
    try {
      closedFlowXdp(t, d, LB1, 42001);
      for (const k of [fwdKey(LB1, 42001, EXT), revKey(LB1, 42001, EXT)]) t.true(isSet(d, 1, k) && isSet(d, 2, k), 'XDP\'s promotion set both keys\' bits');
      runOk(t, d, 'lb_xdp', fwd(LB1, 42001, {}, EXT), 'XDP: the SYN on the reused port');
      t.falsy(d.map('lb_ct_syn').lookup(fwdKey(LB1, 42001, EXT)), 'found its lb_ct entry: re-selected in place, nothing in lb_ct_syn');

      closedFlowXdp(t, d, LB1, 42002);
      clearBit(d, 1, fwdKey(LB1, 42002, EXT));
      d.resetStats();
      runOk(t, d, 'lb_xdp', fwd(LB1, 42002, {}, EXT), 'XDP: SYN behind a clear bit');
      t.deepEqual(d.stats(), { fwd_new: 1 }, 'translated in XDP as a new flow');
      t.truthy(d.map('lb_ct_syn').lookup(fwdKey(LB1, 42002, EXT)), 'not looked up in lb_ct: a brand-new handshake');

      setSwitch(d, 0);
      closedFlowXdp(t, d, LB1, 42003);
      clearBit(d, 1, fwdKey(LB1, 42003, EXT));
      runOk(t, d, 'lb_xdp', fwd(LB1, 42003, {}, EXT), 'XDP: SYN, filter off');
      t.falsy(d.map('lb_ct_syn').lookup(fwdKey(LB1, 42003, EXT)), 'off: looked up, found in lb_ct');
    } finally {
      setSwitch(d, 1);
      d.setExternal(false);
    }
  });

  test.serial('XDP\'s clash check sees another frontend\'s live flow on the reply tuple behind the filter', (t) => {
    const d = dp!;
    d.restore();
    d.setExternal(true);
    try {
      runOk(t, d, 'lb_xdp', fwd(LB1, 42010, {}, EXT), 'XDP: SYN to LB1');
      runOk(t, d, 'lb_tc_egress', rep(LB1, 42010, undefined, EXT), 'SYN-ACK');
      runOk(t, d, 'lb_xdp', fwd(LB1, 42010, ACK, EXT), 'XDP: ACK, live in lb_ct');
      d.resetStats();
      t.is(d.run('lb_xdp', fwd(LB2, 42010, {}, EXT).input).verdict, XDP_DROP, 'the same client port to LB2, whose replies would carry LB1\'s tuple: dropped in XDP');
      t.deepEqual(d.stats(), { drop_ct_clash: 1 });
      clearBit(d, 1, revKey(LB1, 42010, EXT));
      d.resetStats();
      t.is(d.run('lb_xdp', fwd(LB2, 42010, {}, EXT).input).verdict, XDP_PASS, 'a clear bit hides the live flow from XDP (what the programs\' own bits prevent)');
      t.deepEqual(d.stats(), { fwd_new: 1 }, 'translated as a new flow');
    } finally {
      d.setExternal(false);
    }
  });
}
