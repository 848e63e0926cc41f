// lb_rev_filter (bpf/lb_maps.h): the bitmap in front of the reply lookups in lb_ct and lb_ct_syn.
// The programs set the bit of every reverse entry's source (the backend) when they write one; the
// agent turns the filter on and rebuilds it at each conntrack sweep (ct-sweep.ts FilterBuild).
// A false positive costs a lookup; a false negative leaves a reply untranslated and breaks the flow:
// these rows check that no entry's bit is missing where the programs read (the programs' own writes,
// entries an upgrade or a restart left without bits, entries written during a rebuild), with exact
// bytes, and that the filter is consulted at all (a cleared bit does hide a reply).
import test from 'ava';
import { Datapath, TC_ACT_OK, type TestService } from '../../testing/datapath.js';
import { frame, tcp, udp, TCP_ACK, TCP_RST, TCP_SYN } from '../../testing/packets.js';
import { CT_ENTRY, LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_CT_F_CLOSING, LB_STATS, encodeCtKey, encodeU32, revFilterBit, revFilterElem, sumU64PerCpu, type CtKey } from '../../src/dataplane/bpf/layout.js';
import { FilterBuild, RevFilterZeroing, sweepConntrack } from '../../src/dataplane/bpf/ct-sweep.js';
import { native } from '../../src/dataplane/bpf/native/addon.js';
import { isRoot } from './fixtures/util.js';

const CLIENT = '10.244.5.9';
const be = (id: number, address: string, port: number) => ({ id, address, port, flags: 0 });
const WEB: TestService = { feId: 80, address: '10.96.80.1', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(801, '10.244.8.1', 8080)] };
const DNS: TestService = { feId: 81, address: '10.96.80.2', port: 53, protocol: 'UDP', scope: 'internal', backends: [be(811, '10.244.8.2', 5353)] };
const SYNACK = { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001 };

function l4(s: TestService, sport: number, dport: number, o: { flags?: number; seq?: number; ack?: number } = {}) {
  return s.protocol === 'TCP' ? tcp(sport, dport, o) : udp(sport, dport);
}
/** the client's packet to the frontend, and as translated to the backend */
function fwd(s: TestService, cport: number, o: { flags?: number; seq?: number; ack?: number } = {}) {
  const b = s.backends[0]!;
  return { input: frame({ src: CLIENT, dst: s.address, l4: l4(s, cport, s.port, o) }), output: frame({ src: CLIENT, dst: b.address, l4: l4(s, cport, b.port, o) }) };
}
/** the backend's reply, and as rewritten to come from the frontend */
function rep(s: TestService, cport: number, o: { flags?: number; seq?: number; ack?: number } = SYNACK) {
  const b = s.backends[0]!;
  return { input: frame({ src: b.address, dst: CLIENT, l4: l4(s, b.port, cport, o) }), output: frame({ src: s.address, dst: CLIENT, l4: l4(s, s.port, cport, o) }) };
}
function revKey(s: TestService, cport: number): Buffer {
  const b = s.backends[0]!;
  const k: CtKey = { saddr: b.address, daddr: CLIENT, sport: b.port, dport: cport, protocol: s.protocol, dir: LB_CT_DIR_REV };
  return encodeCtKey(k);
}
const bitOf = (s: TestService) => revFilterBit(revKey(s, 1));

function word(d: Datapath, half: 1 | 2, bit: number): bigint {
  return d.map('lb_rev_filter').lookup(encodeU32(revFilterElem(bit, half)))!.readBigUInt64LE(0);
}
const isSet = (d: Datapath, half: 1 | 2, bit: number) => ((word(d, half, bit) >> BigInt(bit & 63)) & 1n) === 1n;
const switchOf = (d: Datapath) => d.map('lb_rev_filter').lookup(encodeU32(0))!.readBigUInt64LE(0);
function setSwitch(d: Datapath, v: number): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  d.map('lb_rev_filter').update(encodeU32(0), b);
}
/** the agent's rebuild over the current maps, as one sweep does it (dataplane.ts sweepConntrack) */
async function rebuild(d: Datapath, between?: () => void): Promise<FilterBuild> {
  const r = await FilterBuild.begin(d.map('lb_rev_filter'), 'rev');
  between?.();
  for (const name of ['lb_ct', 'lb_ct_syn'] as const) await sweepConntrack(d.map(name), name, undefined, undefined, undefined, r.visit);
  r.finish();
  return r;
}

/** the programs' conntrack inserts (lb_stats ct_insert + ct_syn_insert), as the agent's sweep reads them */
function inserts(d: Datapath): number {
  const cpus = native().numPossibleCpus();
  const at = (name: string) => Number(sumU64PerCpu(d.map('lb_stats').lookup(encodeU32(LB_STATS.indexOf(name as never)))!, cpus));
  return at('ct_insert') + at('ct_syn_insert');
}

function runOk(t: import('ava').ExecutionContext, d: Datapath, prog: 'lb_tc_ingress' | 'lb_tc_egress', p: { input: Buffer; output: Buffer | 'input' }, what: string): void {
  const r = d.run(prog, p.input);
  t.is(r.verdict, TC_ACT_OK, what);
  t.is(r.output.toString('hex'), (p.output === 'input' ? p.input : p.output).toString('hex'), what);
}

if (!isRoot) {
  test('lb_rev_filter tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); dp.install([WEB, DNS]); });
  test.after.always(() => dp?.close());

  test.serial('the programs set the bit of each reverse entry they write; a clear bit hides the reply, the filter off looks it up', (t) => {
    const d = dp!;
    d.restore();
    t.is(switchOf(d), 1n, 'on, as the agent leaves it');
    t.not(bitOf(WEB), bitOf(DNS), 'WEB and DNS backends on different bits (else the test proves less)');
    t.false(isSet(d, 1, bitOf(WEB)));
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41000), 'SYN translated');
    t.true(isSet(d, 1, bitOf(WEB)) && isSet(d, 2, bitOf(WEB)), 'the SYN set its backend\'s bit in both halves');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41000), 'SYN-ACK (lb_ct_syn) rewritten to the frontend');
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41000, { flags: TCP_ACK, seq: 1001, ack: 5001 }), 'ACK: the flow moves to lb_ct');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41000, { flags: TCP_ACK, seq: 5001, ack: 1001 }), 'reply (lb_ct) rewritten');
    runOk(t, d, 'lb_tc_ingress', fwd(DNS, 52000), 'UDP translated');
    runOk(t, d, 'lb_tc_egress', rep(DNS, 52000), 'UDP reply rewritten');

    // the programs read it: WEB's bit cleared in the half in use hides WEB's replies, not DNS's
    const w = word(d, 1, bitOf(WEB)) & ~(1n << BigInt(bitOf(WEB) & 63));
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(w);
    d.map('lb_rev_filter').update(encodeU32(revFilterElem(bitOf(WEB), 1)), v);
    d.resetStats();
    runOk(t, d, 'lb_tc_egress', { input: rep(WEB, 41000, { flags: TCP_ACK }).input, output: 'input' }, 'a clear bit: no lookup, the reply leaves untranslated');
    t.deepEqual(d.stats(), {}, 'nothing counted');
    runOk(t, d, 'lb_tc_egress', rep(DNS, 52000), 'DNS still rewritten');
    setSwitch(d, 2);
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41000, { flags: TCP_ACK }), 'the other half has it');
    setSwitch(d, 0);
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41000, { flags: TCP_ACK }), 'off: looked up');
    setSwitch(d, 3);
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41000, { flags: TCP_ACK }), 'a switch value of no half: off');
  });

  // The bit is the reverse entry's backend AND its client (lb_hash.h lb_rev_filter_bit): a pod that
  // reaches a Service's backend directly (a headless Service, a pod IP) while other pods use the
  // Service pays no lb_ct lookup for its packets. Shown by entries the programs would find but whose
  // bit is clear: the other client's (planted without its bit) is not looked up, where a bit of the
  // backend alone (sessions 12-15) let both through.
  test.serial('the bit holds the client: a backend\'s packets to a client without a translated flow to it skip the reply lookups', (t) => {
    const d = dp!;
    d.restore();
    const OTHER = '10.244.5.77', b = WEB.backends[0]!;
    const otherRev = encodeCtKey({ saddr: b.address, daddr: OTHER, sport: b.port, dport: 43000, protocol: 'TCP', dir: LB_CT_DIR_REV });
    t.not(revFilterBit(otherRev), bitOf(WEB), 'the two clients on different bits (else the test proves less)');
    runOk(t, d, 'lb_tc_ingress', fwd(WEB, 41005), 'CLIENT\'s SYN translated: its bit set');
    t.true(isSet(d, 1, bitOf(WEB)));
    t.false(isSet(d, 1, revFilterBit(otherRev)), 'no bit for the other client');
    // an entry of the other client's flow that no program wrote (so no bit): found only by a lookup
    const fwdEntry = d.map('lb_ct_syn').lookup(revKey(WEB, 41005))!;
    d.map('lb_ct').update(otherRev, fwdEntry);
    d.resetStats();
    const reply = frame({ src: b.address, dst: OTHER, l4: tcp(b.port, 43000, { flags: TCP_ACK, seq: 7, ack: 9 }) });
    runOk(t, d, 'lb_tc_egress', { input: reply, output: 'input' }, 'the other client\'s packet: not looked up, untouched');
    t.deepEqual(d.stats(), {}, 'nothing counted');
    setSwitch(d, 0);
    const r = d.run('lb_tc_egress', reply);
    t.not(r.output.toString('hex'), reply.toString('hex'), 'off: the same packet is looked up and rewritten (the entry is real)');
    setSwitch(d, 1);
    // the other client's direct SYN to the backend: lb_ct_forget_closed's lookup skipped too, so a
    // closing entry of its (planted) is left alone; with the filter off it is forgotten
    const closing = Buffer.from(fwdEntry);
    const flags = closing.readUInt16LE(CT_ENTRY.fields.flags.offset) | LB_CT_F_CLOSING;
    closing.writeUInt16LE(flags, CT_ENTRY.fields.flags.offset);
    d.map('lb_ct').update(otherRev, closing);
    d.passCtFilter(otherRev); // lb_ct_filter's bit, as a program's insert sets it: this row is about lb_rev_filter
    const syn = frame({ src: OTHER, dst: b.address, l4: tcp(43000, b.port, { flags: TCP_SYN }) });
    runOk(t, d, 'lb_tc_ingress', { input: syn, output: 'input' }, 'a direct SYN passes');
    t.truthy(d.map('lb_ct').lookup(otherRev), 'not looked up: the closing entry stays');
    setSwitch(d, 0);
    runOk(t, d, 'lb_tc_ingress', { input: syn, output: 'input' }, 'a direct SYN passes (filter off)');
    t.falsy(d.map('lb_ct').lookup(otherRev), 'off: looked up, the closed flow\'s entry forgotten');
    setSwitch(d, 1);
  });

  test.serial('the agent\'s rebuild: entries left without bits (an upgrade\'s fresh map, a restart) are found by its scans, later ones by the programs', async (t) => {
    const d = dp!;
    d.restore();
    // an established flow (lb_ct) and a handshake (lb_ct_syn), then the filter as an upgrade's
    // fresh map has it: all zero and off; the replies are looked up meanwhile
    d.run('lb_tc_ingress', fwd(WEB, 41001).input);
    d.run('lb_tc_ingress', fwd(WEB, 41001, { flags: TCP_ACK, seq: 1001, ack: 5001 }).input);
    d.run('lb_tc_ingress', fwd(DNS, 52001).input);
    t.truthy(d.map('lb_ct').lookup(revKey(WEB, 41001)));
    d.resetFilter('lb_rev_filter', 0);
    d.run('lb_tc_ingress', fwd(WEB, 41002).input);
    t.truthy(d.map('lb_ct_syn').lookup(revKey(WEB, 41002)), 'the handshake waits in lb_ct_syn');
    d.resetFilter('lb_rev_filter', 0);
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41002), 'off: the SYN-ACK is rewritten');
    // switched on without the rebuild (what the agent must never do): the replies are lost
    setSwitch(d, 1);
    runOk(t, d, 'lb_tc_egress', { input: rep(WEB, 41002).input, output: 'input' }, 'on without the rebuild: the SYN-ACK is hidden');
    setSwitch(d, 0);

    const r1 = await rebuild(d);
    t.is(r1.half, 1);
    t.is(switchOf(d), 1n, 'switched on');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41001, { flags: TCP_ACK }), 'established flow (lb_ct): rewritten');
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41002), 'handshake (lb_ct_syn): rewritten');
    runOk(t, d, 'lb_tc_egress', rep(DNS, 52001), 'UDP flow: rewritten');

    // the next rebuild takes the other half and drops the bits of entries gone (DNS's flow);
    // a flow that starts after it zeroed that half and before the switch sets its bit there itself
    const dnsKeys = [revKey(DNS, 52001), encodeCtKey({ saddr: CLIENT, daddr: DNS.address, sport: 52001, dport: 53, protocol: 'UDP', dir: LB_CT_DIR_FWD })];
    for (const k of dnsKeys) d.map('lb_ct').delete(k);
    const r2 = await rebuild(d, () => { d.run('lb_tc_ingress', fwd(DNS, 52002).input); });
    t.is(r2.half, 2);
    t.is(switchOf(d), 2n);
    t.true(isSet(d, 2, bitOf(DNS)), 'set by the program during the rebuild');
    runOk(t, d, 'lb_tc_egress', rep(DNS, 52002), 'a flow started during the rebuild: rewritten');
    d.map('lb_ct').delete(revKey(DNS, 52002));
    const r3 = await rebuild(d);
    t.is(r3.half, 1);
    t.false(isSet(d, 1, bitOf(DNS)), 'no entry left from that backend: its bit dropped');
    t.true(isSet(d, 1, bitOf(WEB)));
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41001, { flags: TCP_ACK }), 'still rewritten after three rebuilds');
  });

  // A half known all zero is not zeroed again (RevFilterZeroing): zeroing 16,384 words every sweep
  // on a node without conntrack traffic was a batch on the thread pool every 30 s for nothing. A
  // flow the programs write after a half's zeroing makes the next rebuild of that half zero it again,
  // and its bit is set where the programs read.
  test.serial('a sweep zeroes a half of lb_rev_filter only when it may hold a bit: none ORed in, no conntrack insert since', async (t) => {
    const d = dp!;
    d.restore();
    d.resetFilter('lb_rev_filter', 0);
    const f = d.map('lb_rev_filter'), zeroed = new RevFilterZeroing();
    // a rebuild as the sweep runs it (rebuild() above), counting the zeroing's batch: the writes of begin()
    const writesOf = async (between?: () => void) => {
      const w = f.writes;
      const r = await FilterBuild.begin(f, 'rev', zeroed, inserts(d));
      const zeroings = f.writes - w;
      between?.();
      for (const name of ['lb_ct', 'lb_ct_syn'] as const) await sweepConntrack(d.map(name), name, undefined, undefined, undefined, r.visit);
      r.finish();
      return { half: r.half, zeroings };
    };
    t.deepEqual(await writesOf(), { half: 1, zeroings: 1 }, 'the first rebuild of each half zeroes it');
    t.deepEqual(await writesOf(), { half: 2, zeroings: 1 });
    t.deepEqual(await writesOf(), { half: 1, zeroings: 0 }, 'no entry, no insert since: half 1 is still zero');
    t.deepEqual(await writesOf(), { half: 2, zeroings: 0 });
    // a flow written during this rebuild (after its zeroing was skipped): its bit is set by the program
    t.deepEqual(await writesOf(() => { d.run('lb_tc_ingress', fwd(WEB, 43001).input); }), { half: 1, zeroings: 0 });
    t.true(isSet(d, 1, bitOf(WEB)));
    runOk(t, d, 'lb_tc_egress', rep(WEB, 43001), 'the SYN-ACK of a flow written during the rebuild is rewritten');
    // half 2: the insert count moved since its zeroing (the programs set the bit in both halves)
    t.deepEqual(await writesOf(), { half: 2, zeroings: 1 });
    t.true(isSet(d, 2, bitOf(WEB)), 'ORed by the rebuild from the entry its scan saw');
    // the entry gone: half 1 held its bit (ORed in), so it is zeroed; half 2 as well, once
    const clear = (m: 'lb_ct' | 'lb_ct_syn') => { const ks: Buffer[] = []; d.map(m).scan((k) => { ks.push(Buffer.from(k)); }); for (const k of ks) d.map(m).delete(k); };
    clear('lb_ct');
    clear('lb_ct_syn');
    t.deepEqual(await writesOf(), { half: 1, zeroings: 1 });
    t.false(isSet(d, 1, bitOf(WEB)), 'the bit of an entry gone is dropped');
    t.deepEqual(await writesOf(), { half: 2, zeroings: 1 });
    t.deepEqual(await writesOf(), { half: 1, zeroings: 0 }, 'quiet again: no zeroing');
  });

  test.serial('a SYN to no Service skips the closed-flow lookup only where no reverse entry has its destination as source', (t) => {
    const d = dp!;
    d.restore();
    // a closed translated flow on a client port, then a direct SYN from that port to the backend:
    // its replies must not be rewritten (lb_ct_forget_closed deletes the closed flow's entries)
    d.run('lb_tc_ingress', fwd(WEB, 41003).input);
    d.run('lb_tc_ingress', fwd(WEB, 41003, { flags: TCP_ACK, seq: 1001, ack: 5001 }).input);
    runOk(t, d, 'lb_tc_egress', rep(WEB, 41003, { flags: TCP_ACK | TCP_RST, seq: 5001, ack: 1001 }), 'the backend\'s RST: rewritten, the flow closing');
    t.truthy(d.map('lb_ct').lookup(revKey(WEB, 41003)), 'the closed flow\'s reverse entry');
    const b = WEB.backends[0]!;
    const direct = frame({ src: CLIENT, dst: b.address, l4: tcp(41003, b.port) });
    runOk(t, d, 'lb_tc_ingress', { input: direct, output: 'input' }, 'the direct SYN passes untouched');
    t.falsy(d.map('lb_ct').lookup(revKey(WEB, 41003)), 'and deleted the closed flow\'s reverse entry (its bit is set)');
    runOk(t, d, 'lb_tc_egress', { input: rep(WEB, 41003).input, output: 'input' }, 'the direct connection\'s SYN-ACK is left alone');
  });
}
