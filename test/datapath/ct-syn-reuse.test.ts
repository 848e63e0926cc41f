// A SYN that reuses the client port of a closed flow whose lb_ct entries still live (120 s closing):
// lb_select finds the entry, re-selects (a SYN over a closing entry is a new flow) and lb_commit
// rewrites both keys in lb_ct, not lb_ct_syn. kube-proxy's behaviour is nf_conntrack's: a SYN on a
// TIME_WAIT or CLOSE entry ends it and starts a new flow in SYN_SENT (nf_conntrack_proto_tcp.c
// nf_conntrack_tcp_packet: a fresh NAT decision, the SYN timeout while the handshake is not over).
// These rows check both halves at tc and at XDP, IPv4 and IPv6: the new flow's backend is chosen
// anew (the frontend's backends changed under the closed flow), and its entries carry LB_CT_F_SYN so
// that a handshake that never completes expires at LB_CT_TIMEOUT_TCP_SYN (60 s), in the programs and
// in the agent's sweep, not at the established 6 h; the client's first packet that is no SYN clears
// the flag in both entries (at tc when XDP leaves a masqueraded flow to it).
import test from 'ava';
import { Datapath, TC_ACT_OK, XDP_PASS, LB_BE_F_LOCAL, type ProgName, type TestService } from '../../testing/datapath.js';
import { pick, reply, toService } from '../../testing/datapath-rows.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../testing/packets.js';
import { LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_CT_F_CLOSING, LB_CT_F_SYN, type CtKey } from '../../src/dataplane/bpf/layout.js';
import { sweepConntrack } from '../../src/dataplane/bpf/ct-sweep.js';
import { isRoot } from './fixtures/util.js';

const SEC = 1_000_000_000n;
const EXT4 = '192.168.50.31', EXT6 = 'fd00:50::31';
const lbOf = (feId: number, address: string, backends: string[], flags = 0, beFlags = LB_BE_F_LOCAL): TestService => ({
  feId, address, port: 80, protocol: 'TCP', scope: 'external', type: 'LoadBalancer', flags,
  backends: backends.map((a, i) => ({ id: feId * 10 + i + 1, address: a, port: 8080, flags: beFlags })),
});
/** two local backends each (XDP translates them itself), the second family alike */
const LB4 = lbOf(90, '192.168.98.1', ['10.244.9.1', '10.244.9.2']);
const LB6 = lbOf(91, 'fd00:98::1', ['fd00:244:9::1', 'fd00:244:9::2']);
/** eTP Cluster to a remote backend: masqueraded, so XDP leaves every packet of it to tc */
const SNAT4 = lbOf(92, '192.168.98.2', ['10.244.9.5'], 1 << 2, 0);

const ACK = { seq: 1001, ack: 7001, flags: TCP_ACK };
const DATA = { ...ACK, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
const FIN = { ...ACK, flags: TCP_FIN | TCP_ACK };
const SYN = { seq: 1000, flags: TCP_SYN };
const clientOf = (s: TestService) => (s.address.includes(':') ? EXT6 : EXT4);
const fwdKey = (s: TestService, sport: number): CtKey =>
  ({ saddr: clientOf(s), daddr: s.address, sport, dport: s.port, protocol: 'TCP', dir: LB_CT_DIR_FWD });
const revKey = (s: TestService, b: { address: string; port: number }, sport: number): CtKey =>
  ({ saddr: b.address, daddr: clientOf(s), sport: b.port, dport: sport, protocol: 'TCP', dir: LB_CT_DIR_REV });

const HOOKS = [
  { hook: 'tc', prog: 'lb_tc_ingress' as ProgName, pass: TC_ACT_OK },
  { hook: 'XDP', prog: 'lb_xdp' as ProgName, pass: XDP_PASS },
] as const;

if (!isRoot) {
  test('SYN-over-a-closed-flow tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); dp.install([LB4, LB6, SNAT4]); });
  test.after.always(() => dp?.close());
  test.beforeEach(() => { dp!.restore(); dp!.setExternal(true); });

  /** one packet of the client through prog, translated to backend b */
  function send(t: import('ava').ExecutionContext, prog: ProgName, pass: number, s: TestService, sport: number, o: typeof ACK | typeof SYN, b: { address: string; port: number }, what: string): void {
    const g = toService(s, clientOf(s), sport, o), r = dp!.run(prog, g.input);
    t.is(r.verdict, pass, what);
    t.is(r.output.toString('hex'), g.to(b as never).toString('hex'), `${what}: translated to ${b.address}`);
  }
  /** a flow opened and closed by the client (SYN, ACK, FIN) through prog: its entries closing in lb_ct */
  function closed(t: import('ava').ExecutionContext, prog: ProgName, pass: number, s: TestService, sport: number) {
    const b = pick(s, clientOf(s), sport);
    send(t, prog, pass, s, sport, SYN, b, 'SYN');
    send(t, prog, pass, s, sport, ACK, b, 'ACK');
    send(t, prog, pass, s, sport, FIN, b, 'FIN');
    const e = dp!.ctIn('lb_ct', fwdKey(s, sport));
    if (!e || !(e.flags & LB_CT_F_CLOSING) || e.backendId !== b.id) throw new Error('setup: the flow is not closing in lb_ct');
    return b;
  }
  const flags = (k: CtKey) => dp!.ctIn('lb_ct', k)?.flags ?? -1;
  const sweepAt = async (now: bigint) => (await sweepConntrack(dp!.map('lb_ct'), 'lb_ct', now)).expired;
  /** the first and the last of the entries' last packets: a sweep's clock from them, not from now (a loaded machine may take seconds between) */
  const lastSeen = (...ks: CtKey[]) => {
    const v = ks.map((k) => dp!.ctIn('lb_ct', k)!.lastSeen).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return { first: v[0]!, last: v[v.length - 1]! };
  };

  for (const { hook, prog, pass } of HOOKS) {
    for (const s of [LB4, LB6]) {
      const fam = s === LB4 ? 'IPv4' : 'IPv6';

      test.serial(`${hook} ${fam}: a SYN over a closed flow's entries: both in lb_ct flagged LB_CT_F_SYN; unanswered, the sweep deletes them at the SYN timeout`, async (t) => {
        const d = dp!, sport = 43100, b = closed(t, prog, pass, s, sport);
        send(t, prog, pass, s, sport, SYN, b, 'the SYN on the reused port');
        t.is(d.ctIn('lb_ct_syn', fwdKey(s, sport)), undefined, 'over its lb_ct entry, not into lb_ct_syn');
        const fk = fwdKey(s, sport), rk = revKey(s, b, sport);
        t.is(flags(fk), LB_CT_F_SYN, 'the forward entry: handshake not complete, no longer closing');
        t.is(flags(rk), LB_CT_F_SYN, 'the reverse entry alike');
        const at = lastSeen(fk, rk);
        t.is(await sweepAt(at.first + 59n * SEC), 0, 'kept: 59 s after the older last packet');
        t.is(await sweepAt(at.last + 61n * SEC), 2, 'both deleted past the SYN timeout (not the established 6 h)');
        t.is(d.ctIn('lb_ct', fk), undefined);
        t.is(d.ctIn('lb_ct', rk), undefined);
      });

      test.serial(`${hook} ${fam}: a flagged entry past the SYN timeout is expired for the programs too: a retransmitted SYN starts a new handshake`, (t) => {
        const d = dp!, sport = 43200, b = closed(t, prog, pass, s, sport);
        send(t, prog, pass, s, sport, SYN, b, 'the SYN on the reused port');
        const fk = fwdKey(s, sport), e = d.ctIn('lb_ct', fk)!;
        d.setCt('lb_ct', fk, { ...e, lastSeen: e.lastSeen - 61n * SEC });
        d.resetStats();
        send(t, prog, pass, s, sport, SYN, b, 'the SYN again, 61 s later');
        t.deepEqual(d.stats(), { ct_expired: 1, fwd_new: 1 }, 'its entry read as expired: a new flow');
        t.truthy(d.ctIn('lb_ct_syn', fk), 'a brand-new handshake in lb_ct_syn');
      });

      test.serial(`${hook} ${fam}: the client's ACK ends the handshake: the flag cleared in both entries, which then live the established timeout and are plain hits`, async (t) => {
        const d = dp!, sport = 43300, b = closed(t, prog, pass, s, sport);
        send(t, prog, pass, s, sport, SYN, b, 'the SYN on the reused port');
        send(t, prog, pass, s, sport, SYN, b, 'a retransmitted SYN');
        const fk = fwdKey(s, sport), rk = revKey(s, b, sport);
        t.is(flags(fk), LB_CT_F_SYN, 'a retransmitted SYN keeps the flag');
        d.resetStats();
        send(t, prog, pass, s, sport, ACK, b, 'the handshake\'s ACK');
        t.deepEqual(d.stats(), { fwd_ct_hit: 1 }, 'a hit of its entry');
        t.is(flags(fk), 0, 'forward entry: flag cleared');
        t.is(flags(rk), 0, 'reverse entry: flag cleared');
        const before = d.ctIn('lb_ct', fk);
        d.resetStats();
        send(t, prog, pass, s, sport, DATA as never, b, 'data');
        t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
        t.deepEqual(d.ctIn('lb_ct', fk), before, 'a plain hit: nothing written');
        t.is(await sweepAt(lastSeen(fk, rk).first + 121n * SEC), 0, 'both kept past the SYN and closing timeouts');
      });

      // nf_conntrack's reply direction in SYN_SENT (nf_conntrack_proto_tcp.c, tcp_conntracks' reply
      // row): a SYN-ACK moves it to SYN_RECV, a RST closes it, an ACK without FIN (a TIME_WAIT socket's
      // bare ACK, a stale socket's data) is ignored but accepted with its NAT, so that the client's
      // RST answering it ends that socket; a FIN, or a segment with none of SYN ACK FIN RST, is
      // INVALID, which kube-proxy does not translate (KUBE-FORWARD drops ctstate INVALID). A flow in
      // lb_ct_syn and a flagged flow in lb_ct are the same handshake: both answer so
      // (lb_tcp_handshake_reply) until the client's ACK ends it.
      test.serial(`${hook} ${fam}: replies to a flagged flow as to one in lb_ct_syn (nf_conntrack's SYN_SENT): a SYN-ACK, RST or ACK translated, a FIN or no flags not; after the client's ACK, all`, (t) => {
        const d = dp!, sport = 43600, b = closed(t, prog, pass, s, sport), c = clientOf(s);
        send(t, prog, pass, s, sport, SYN, b, 'the SYN on the reused port');
        const fk = fwdKey(s, sport), rk = revKey(s, b, sport);
        const back = (bb: { address: string; port: number }, sp: number, o: Parameters<typeof reply>[4], xlated: boolean, what: string): void => {
          const g = reply(s, bb as never, c, sp, o), r = d.run('lb_tc_egress', g.input);
          t.is(r.verdict, TC_ACT_OK, `${what}: verdict`);
          t.is(r.output.toString('hex'), (xlated ? g.output : g.input).toString('hex'), `${what}: ${xlated ? 'from the frontend' : 'left untranslated'}`);
        };
        const FIN_BACK = { seq: 7001, ack: 1001, flags: TCP_FIN | TCP_ACK };
        const NONE_BACK = { seq: 7001, ack: 0, flags: 0 };
        const DATA_BACK = { seq: 9001, ack: 1019, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('HTTP/1.1 200 OK\r\n\r\n') };
        back(b, sport, FIN_BACK, false, 'a FIN before the handshake\'s end');
        back(b, sport, NONE_BACK, false, 'a segment without flags');
        t.is(flags(fk), LB_CT_F_SYN, 'the flow still in its handshake');
        t.is(flags(rk), LB_CT_F_SYN, 'its reverse entry too: what was left untranslated did not close it');
        back(b, sport, { seq: 7000, ack: 1001, flags: TCP_SYN | TCP_ACK }, true, 'SYN-ACK');
        back(b, sport, { seq: 9001, ack: 1001, flags: TCP_ACK }, true, 'a TIME_WAIT socket\'s bare ACK');
        back(b, sport, DATA_BACK, true, 'a stale socket\'s data (ignored by nf_conntrack, not invalid)');
        // the same replies to a brand-new tuple's flow, in lb_ct_syn
        const sp2 = sport + 1, b2 = pick(s, c, sp2);
        send(t, prog, pass, s, sp2, SYN, b2, 'a brand-new tuple\'s SYN');
        back(b2, sp2, FIN_BACK, false, 'lb_ct_syn: a FIN');
        back(b2, sp2, NONE_BACK, false, 'lb_ct_syn: no flags');
        back(b2, sp2, DATA_BACK, true, 'lb_ct_syn: data');
        send(t, prog, pass, s, sport, ACK, b, 'the client\'s ACK ends the handshake');
        back(b, sport, { seq: 7020, ack: 1019, flags: TCP_FIN | TCP_ACK }, true, 'a FIN after the handshake');
      });

      test.serial(`${hook} ${fam}: the backend's RST to a flagged flow is translated and closes it (the SYN timeout still)`, (t) => {
        const d = dp!, sport = 43700, b = closed(t, prog, pass, s, sport), c = clientOf(s);
        send(t, prog, pass, s, sport, SYN, b, 'the SYN on the reused port');
        const g = reply(s, b, c, sport, { seq: 0, ack: 1001, flags: TCP_RST | TCP_ACK }), r = d.run('lb_tc_egress', g.input);
        t.is(r.output.toString('hex'), g.output.toString('hex'), 'RST from the frontend');
        t.is(flags(revKey(s, b, sport)), LB_CT_F_SYN | LB_CT_F_CLOSING);
      });

      test.serial(`${hook} ${fam}: the new flow's backend is chosen anew when the frontend's backends changed under the closed flow`, (t) => {
        const d = dp!, one = { ...s, backends: [s.backends[0]!] };
        d.replaceBackends(s, one.backends, { keep: true });
        try {
          // a port whose flow the two-backend table sends to the second backend; with one backend it lands on the first
          let sport = 43400;
          while (pick(s, clientOf(s), sport).id !== s.backends[1]!.id) sport++;
          const a = closed(t, prog, pass, one, sport), old = d.ctIn('lb_ct', revKey(s, a, sport));
          t.is(a.id, s.backends[0]!.id);
          d.replaceBackends(one, s.backends);
          send(t, prog, pass, s, sport, SYN, s.backends[1]!, 'the SYN on the reused port goes where the table says now');
          t.is(d.ctIn('lb_ct', fwdKey(s, sport))!.backendId, s.backends[1]!.id, 'its entry rewritten for the new backend');
          t.is(d.ctIn('lb_ct', revKey(s, s.backends[1]!, sport))!.flags, LB_CT_F_SYN, 'the new backend\'s reverse entry, flagged');
          t.deepEqual(d.ctIn('lb_ct', revKey(s, a, sport)), old, 'the old backend\'s reverse entry left as it was');
        } finally {
          d.replaceBackends(s, s.backends);
        }
      });
    }
  }

  test.serial('XDP leaves a masqueraded flow\'s ACK to tc without clearing the flag; tc clears it in both entries', (t) => {
    const d = dp!, s = SNAT4, sport = 43500, b = s.backends[0]!;
    for (const o of [SYN, ACK, FIN, SYN]) {
      const g = toService(s, EXT4, sport, o);
      t.is(d.run('lb_xdp', g.input).verdict, XDP_PASS);
      const r = d.run('lb_tc_ingress', g.input);
      t.is(r.output.toString('hex'), g.to(b).toString('hex'), 'tc translates it');
    }
    const fk = fwdKey(s, sport), rk = revKey(s, b, sport);
    t.true((flags(fk) & LB_CT_F_SYN) !== 0 && (flags(rk) & LB_CT_F_SYN) !== 0, 'the SYN over the closed flow: flagged');
    const g = toService(s, EXT4, sport, ACK);
    d.resetStats();
    t.is(d.run('lb_xdp', g.input).verdict, XDP_PASS);
    t.deepEqual(d.stats(), { xdp_to_tc: 1 });
    t.true((flags(fk) & LB_CT_F_SYN) !== 0 && (flags(rk) & LB_CT_F_SYN) !== 0, 'XDP wrote nothing');
    t.is(d.run('lb_tc_ingress', g.input).output.toString('hex'), g.to(b).toString('hex'));
    t.is(flags(fk) & LB_CT_F_SYN, 0, 'tc: forward entry cleared');
    t.is(flags(rk) & LB_CT_F_SYN, 0, 'tc: reverse entry cleared');
  });
}
