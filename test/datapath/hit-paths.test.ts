// The two paths of tc and XDP: a plain conntrack hit is translated inline (lb_tc_hit in bpf/lb_tc.h,
// lb_xdp_hit in bpf/lb_xdp.bpf.c), everything else by the whole path (lb_select, lb_commit: tc's
// lb_tc_forward, XDP's global subprogram lb_xdp_forward) and the steps it hands back. These rows check
// that a plain hit writes nothing and keeps what the whole path gave it, and that each packet the
// inline path must not take (a hit due its refresh, a frontend with source ranges, a flow whose
// backend left, a flow tc masquerades at XDP) still gets what lb_select and lb_commit give it. A
// closing packet (FIN, RST) is taken inline since session 29 unless its refresh is due: its entry
// flagged closing as the whole path flags it. Each check fails with its condition taken out of the
// inline path.
import test from 'ava';
import { Datapath, SNAT_MARK, SVC, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS } from '../../testing/datapath.js';
import { BASE_SERVICES, openFlow, pick, sportFor, toService } from '../../testing/datapath-rows.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, expectedRst } from '../../testing/packets.js';
import { LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_CT_F_CLOSING, LB_CT_F_SNAT, encodeCtKey, encodeMemberKey, encodeSrcRangeKey, type CtKey } from '../../src/dataplane/bpf/layout.js';
import { isRoot } from './fixtures/util.js';

const EXT = '192.168.50.30';
const ACK = { seq: 1001, ack: 7001, flags: TCP_ACK };
const DATA = { ...ACK, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
const np = SVC.nodePort;
const fwdKey = (s: { address: string; port: number }, client: string, sport: number): CtKey =>
  ({ saddr: client, daddr: s.address, sport, dport: s.port, protocol: 'TCP', dir: LB_CT_DIR_FWD });
const revKey = (b: { address: string; port: number }, client: string, sport: number): CtKey =>
  ({ saddr: b.address, daddr: client, sport: b.port, dport: sport, protocol: 'TCP', dir: LB_CT_DIR_REV });

/** the hooks whose inline hit path is checked: their program and verdicts */
const HOOKS = [
  { hook: 'tc', prog: 'lb_tc_ingress', pass: TC_ACT_OK, drop: TC_ACT_SHOT },
  { hook: 'XDP', prog: 'lb_xdp', pass: XDP_PASS, drop: XDP_DROP },
] as const;

if (!isRoot) {
  test('hit path tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); dp.install(BASE_SERVICES); });
  test.after.always(() => dp?.close());
  test.beforeEach(() => { dp!.restore(); dp!.addNodeAddress('192.168.1.10'); dp!.setExternal(true); });


  for (const { hook, prog, pass, drop } of HOOKS) {
    test.serial(`${hook}: a plain hit: translated inline, counted, its entry left as it was`, (t) => {
      const d = dp!, sport = sportFor(np, EXT, 51, 40100), b = openFlow(d, prog, np, EXT, sport);
      const before = d.ct(fwdKey(np, EXT, sport))!;
      d.resetStats();
      const g = toService(np, EXT, sport, DATA), r = d.run(prog, g.input);
      t.is(r.verdict, pass);
      t.is(r.output.toString('hex'), g.to(b).toString('hex'));
      t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
      t.deepEqual(d.ct(fwdKey(np, EXT, sport)), before, 'nothing written');
    });

    test.serial(`${hook}: a hit due its refresh takes the whole path: last_seen written, a lost reverse entry restored`, (t) => {
      const d = dp!, sport = sportFor(np, EXT, 51, 40200), b = openFlow(d, prog, np, EXT, sport);
      const fk = fwdKey(np, EXT, sport), e = d.ct(fk)!;
      d.setCt('lb_ct', fk, { ...e, lastSeen: e.lastSeen - 2_000_000_000n });
      d.map('lb_ct').delete(encodeCtKey(revKey(b, EXT, sport)));
      d.resetStats();
      const g = toService(np, EXT, sport, DATA), r = d.run(prog, g.input);
      t.is(r.verdict, pass);
      t.is(r.output.toString('hex'), g.to(b).toString('hex'));
      t.deepEqual(d.stats(), { fwd_ct_hit: 1, ct_rev_restored: 1 });
      t.true(d.ct(fk)!.lastSeen > e.lastSeen - 2_000_000_000n, 'refreshed');
      t.is(d.ct(revKey(b, EXT, sport))?.feId, np.feId, 'the reverse entry written again');
    });

    test.serial(`${hook}: a FIN on an established flow: translated, its entry flagged closing`, (t) => {
      const d = dp!, sport = sportFor(np, EXT, 51, 40300), b = openFlow(d, prog, np, EXT, sport);
      d.resetStats();
      const fin = toService(np, EXT, sport, { ...ACK, flags: TCP_FIN | TCP_ACK }), r = d.run(prog, fin.input);
      t.is(r.verdict, pass);
      t.is(r.output.toString('hex'), fin.to(b).toString('hex'));
      t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
      t.truthy(d.ct(fwdKey(np, EXT, sport))!.flags & LB_CT_F_CLOSING);
    });

    test.serial(`${hook}: a FIN due its refresh takes the whole path: flagged closing, refreshed, a lost reverse entry restored`, (t) => {
      const d = dp!, sport = sportFor(np, EXT, 51, 40600), b = openFlow(d, prog, np, EXT, sport);
      const fk = fwdKey(np, EXT, sport), e = d.ct(fk)!;
      d.setCt('lb_ct', fk, { ...e, lastSeen: e.lastSeen - 2_000_000_000n });
      d.map('lb_ct').delete(encodeCtKey(revKey(b, EXT, sport)));
      d.resetStats();
      const fin = toService(np, EXT, sport, { ...ACK, flags: TCP_FIN | TCP_ACK }), r = d.run(prog, fin.input);
      t.is(r.verdict, pass);
      t.is(r.output.toString('hex'), fin.to(b).toString('hex'));
      t.deepEqual(d.stats(), { fwd_ct_hit: 1, ct_rev_restored: 1 });
      const after = d.ct(fk)!;
      t.truthy(after.flags & LB_CT_F_CLOSING, 'flagged closing');
      t.true(after.lastSeen > e.lastSeen - 2_000_000_000n, 'refreshed');
      t.truthy(d.ct(revKey(b, EXT, sport))!.flags & LB_CT_F_CLOSING, 'the reverse entry written again, closing');
    });

    test.serial(`${hook}: a hit to a frontend with source ranges is checked against them on every packet`, (t) => {
      const d = dp!, lb = SVC.lb, ok = '192.168.50.7', sport = 52600, b = openFlow(d, prog, lb, ok, sport);
      d.resetStats();
      const g = toService(lb, ok, sport, DATA);
      let r = d.run(prog, g.input);
      t.is(r.output.toString('hex'), g.to(b).toString('hex'), 'an allowed client\'s hit translated');
      t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
      // the ranges changed under an established flow: its next packet is refused, as kube-proxy's
      // firewall chain refuses it
      const ranges = d.map('lb_src_ranges'), v4 = encodeSrcRangeKey({ feId: lb.feId, cidr: '192.168.50.0/24' });
      ranges.delete(v4);
      try {
        d.resetStats();
        r = d.run(prog, g.input);
        t.is(r.verdict, drop);
        t.deepEqual(d.stats(), { drop_source_range: 1 });
      } finally {
        ranges.update(v4, Buffer.from([1]));
      }
    });
  }

  test.serial('tc: a plain hit of a masqueraded flow: the SNAT mark set inline, as the whole path sets it', (t) => {
    const d = dp!, sport = sportFor(np, EXT, 52, 40400), b = openFlow(d, 'lb_tc_ingress', np, EXT, sport);
    const before = d.ct(fwdKey(np, EXT, sport))!;
    t.truthy(before.flags & LB_CT_F_SNAT, 'a flow tc masquerades');
    d.resetStats();
    const g = toService(np, EXT, sport, DATA), r = d.run('lb_tc_ingress', g.input, { mark: 0x10 });
    t.is(r.verdict, TC_ACT_OK);
    t.is(r.output.toString('hex'), g.to(b).toString('hex'));
    t.is(r.mark, 0x10 | SNAT_MARK);
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    t.deepEqual(d.ct(fwdKey(np, EXT, sport)), before, 'nothing written');
  });

  test.serial('tc: a RST of a masqueraded flow: the SNAT mark set inline, its entry flagged closing', (t) => {
    const d = dp!, sport = sportFor(np, EXT, 52, 40700), b = openFlow(d, 'lb_tc_ingress', np, EXT, sport);
    t.truthy(d.ct(fwdKey(np, EXT, sport))!.flags & LB_CT_F_SNAT, 'a flow tc masquerades');
    d.resetStats();
    const rst = toService(np, EXT, sport, { ...ACK, flags: TCP_RST | TCP_ACK }), r = d.run('lb_tc_ingress', rst.input, { mark: 0x10 });
    t.is(r.verdict, TC_ACT_OK);
    t.is(r.output.toString('hex'), rst.to(b).toString('hex'));
    t.is(r.mark, 0x10 | SNAT_MARK);
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    t.truthy(d.ct(fwdKey(np, EXT, sport))!.flags & LB_CT_F_CLOSING);
  });

  /** a flow opened at tc from sport, its backend then taken out of the frontend's members for fn */
  const withBackendGone = (sport: number, fn: (d: NonNullable<typeof dp>) => void) => {
    const d = dp!, b = openFlow(d, 'lb_tc_ingress', np, EXT, sport);
    const members = d.map('lb_members'), mk = encodeMemberKey({ feId: np.feId, backendId: b.id });
    members.delete(mk);
    try {
      d.resetStats();
      fn(d);
    } finally {
      members.update(mk, Buffer.from([1]));
    }
  };

  test.serial('tc: a FIN of a flow whose backend left the frontend: reset by the whole path, its entry not flagged', (t) => {
    const sport = sportFor(np, EXT, 51, 40800);
    withBackendGone(sport, (d) => {
      const fin = toService(np, EXT, sport, { ...ACK, flags: TCP_FIN | TCP_ACK }), r = d.run('lb_tc_ingress', fin.input);
      t.is(r.verdict, TC_ACT_REDIRECT, 'a RST bounced to the client');
      t.deepEqual(d.stats(), { reset_backend_gone: 1 });
      t.falsy(d.ct(fwdKey(np, EXT, sport))!.flags & LB_CT_F_CLOSING);
    });
  });

  test.serial('tc: a packet of a flow whose backend left the frontend: no inline hit, reset by the whole path', (t) => {
    const sport = sportFor(np, EXT, 51, 40500);
    withBackendGone(sport, (d) => {
      const g = toService(np, EXT, sport, DATA), r = d.run('lb_tc_ingress', g.input);
      t.is(r.verdict, TC_ACT_REDIRECT, 'a RST bounced to the client');
      t.is(r.output.toString('hex'), expectedRst(g.input).toString('hex'));
      t.deepEqual(d.stats(), { reset_backend_gone: 1 });
    });
  });

  test.serial('XDP: a hit of a flow tc masquerades is left to tc, untouched', (t) => {
    const d = dp!, sport = sportFor(np, EXT, 52, 40400);
    t.is(d.run('lb_tc_ingress', toService(np, EXT, sport).input).verdict, TC_ACT_OK, 'SYN at tc (XDP leaves it)');
    t.truthy(d.ctIn('lb_ct_syn', fwdKey(np, EXT, sport))!.flags & LB_CT_F_SNAT);
    d.run('lb_tc_ingress', toService(np, EXT, sport, ACK).input);
    t.is(d.ct(fwdKey(np, EXT, sport))?.backendId, pick(np, EXT, sport).id, 'established in lb_ct');
    d.resetStats();
    const g = toService(np, EXT, sport, DATA), r = d.run('lb_xdp', g.input);
    t.is(r.verdict, XDP_PASS);
    t.is(r.output.toString('hex'), g.input.toString('hex'), 'untouched');
    t.deepEqual(d.stats(), { xdp_to_tc: 1 });
  });
}
