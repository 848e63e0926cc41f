// XDP's two paths (bpf/lb_xdp.bpf.c): a plain conntrack hit is translated inline in lb_xdp
// (lb_xdp_hit), everything else by the global subprogram lb_xdp_forward (lb_select, lb_commit). These
// rows check that each packet the inline path must not take (a hit due its refresh, a closing packet,
// a flow that needs tc's SNAT, a frontend with source ranges) still gets what lb_select and lb_commit
// give it, and that a plain hit writes nothing.
import test from 'ava';
import { Datapath, SVC, TC_ACT_OK, XDP_DROP, XDP_PASS } from '../../testing/datapath.js';
import { BASE_SERVICES, pick, sportFor, toService } from '../../testing/datapath-rows.js';
import { TCP_ACK, TCP_FIN, TCP_PSH } from '../../testing/packets.js';
import { LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_CT_F_CLOSING, LB_CT_F_SNAT, encodeCtKey, encodeSrcRangeKey, type CtKey } from '../../src/dataplane/bpf/layout.js';
import { isRoot } from './fixtures/util.js';

const EXT = '192.168.50.30';
const DATA = { seq: 1001, ack: 7001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
const np = SVC.nodePort;
const fwdKey = (s: { address: string; port: number }, client: string, sport: number): CtKey =>
  ({ saddr: client, daddr: s.address, sport, dport: s.port, protocol: 'TCP', dir: LB_CT_DIR_FWD });
const revKey = (b: { address: string; port: number }, client: string, sport: number): CtKey =>
  ({ saddr: b.address, daddr: client, sport: b.port, dport: sport, protocol: 'TCP', dir: LB_CT_DIR_REV });

if (!isRoot) {
  test('XDP hit tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); dp.install(BASE_SERVICES); });
  test.after.always(() => dp?.close());
  test.beforeEach(() => { dp!.restore(); dp!.addNodeAddress('192.168.1.10'); dp!.setExternal(true); });

  /** a flow to np's local backend, opened by XDP (its SYN), then its ACK (into lb_ct); the backend and port */
  function open(d: Datapath, client: string, n: number) {
    const sport = sportFor(np, client, 51, 40000 + n * 100), b = pick(np, client, sport);
    d.run('lb_xdp', toService(np, client, sport).input);
    d.run('lb_xdp', toService(np, client, sport, { seq: 1001, ack: 7001, flags: TCP_ACK }).input);
    return { sport, b };
  }

  test.serial('a plain hit: translated inline, counted, its entry left as it was', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 1);
    const before = d.ct(fwdKey(np, EXT, sport))!;
    d.resetStats();
    const g = toService(np, EXT, sport, DATA), r = d.run('lb_xdp', g.input);
    t.is(r.verdict, XDP_PASS);
    t.is(r.output.toString('hex'), g.to(b).toString('hex'));
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    t.deepEqual(d.ct(fwdKey(np, EXT, sport)), before, 'nothing written');
  });

  test.serial('a hit due its refresh takes the whole path: last_seen written, a lost reverse entry restored', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 2);
    const fk = fwdKey(np, EXT, sport), e = d.ct(fk)!;
    d.setCt('lb_ct', fk, { ...e, lastSeen: e.lastSeen - 2_000_000_000n });
    d.map('lb_ct').delete(encodeCtKey(revKey(b, EXT, sport)));
    d.resetStats();
    const g = toService(np, EXT, sport, DATA), r = d.run('lb_xdp', g.input);
    t.is(r.verdict, XDP_PASS);
    t.is(r.output.toString('hex'), g.to(b).toString('hex'));
    t.deepEqual(d.stats(), { fwd_ct_hit: 1, ct_rev_restored: 1 });
    t.true(d.ct(fk)!.lastSeen > e.lastSeen - 2_000_000_000n, 'refreshed');
    t.is(d.ct(revKey(b, EXT, sport))?.feId, np.feId, 'the reverse entry written again');
  });

  test.serial('a FIN on an established flow takes the whole path: its entry flagged closing', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 3);
    d.resetStats();
    const fin = toService(np, EXT, sport, { seq: 1001, ack: 7001, flags: TCP_FIN | TCP_ACK }), r = d.run('lb_xdp', fin.input);
    t.is(r.verdict, XDP_PASS);
    t.is(r.output.toString('hex'), fin.to(b).toString('hex'));
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    t.truthy(d.ct(fwdKey(np, EXT, sport))!.flags & LB_CT_F_CLOSING);
  });

  test.serial('a hit of a flow tc masquerades is left to tc, untouched', (t) => {
    const d = dp!, sport = sportFor(np, EXT, 52, 40400), b = pick(np, EXT, sport);
    t.is(d.run('lb_tc_ingress', toService(np, EXT, sport).input).verdict, TC_ACT_OK, 'SYN at tc (XDP leaves it)');
    t.truthy(d.ctIn('lb_ct_syn', fwdKey(np, EXT, sport))!.flags & LB_CT_F_SNAT);
    d.run('lb_tc_ingress', toService(np, EXT, sport, { seq: 1001, ack: 7001, flags: TCP_ACK }).input);
    t.is(d.ct(fwdKey(np, EXT, sport))?.backendId, b.id, 'established in lb_ct');
    d.resetStats();
    const g = toService(np, EXT, sport, DATA), r = d.run('lb_xdp', g.input);
    t.is(r.verdict, XDP_PASS);
    t.is(r.output.toString('hex'), g.input.toString('hex'), 'untouched');
    t.deepEqual(d.stats(), { xdp_to_tc: 1 });
  });

  test.serial('a hit to a frontend with source ranges is checked against them on every packet', (t) => {
    const d = dp!, lb = SVC.lb, ok = '192.168.50.7', sport = 52600, b = pick(lb, ok, sport);
    d.run('lb_xdp', toService(lb, ok, sport).input);
    d.run('lb_xdp', toService(lb, ok, sport, { seq: 1001, ack: 7001, flags: TCP_ACK }).input);
    d.resetStats();
    const g = toService(lb, ok, sport, DATA);
    let r = d.run('lb_xdp', g.input);
    t.is(r.output.toString('hex'), g.to(b).toString('hex'), 'an allowed client\'s hit translated');
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    // the ranges changed under an established flow: its next packet is refused, as kube-proxy's
    // firewall chain refuses it
    const ranges = d.map('lb_src_ranges'), v4 = encodeSrcRangeKey({ feId: lb.feId, cidr: '192.168.50.0/24' });
    ranges.delete(v4);
    try {
      d.resetStats();
      r = d.run('lb_xdp', g.input);
      t.is(r.verdict, XDP_DROP);
      t.deepEqual(d.stats(), { drop_source_range: 1 });
    } finally {
      ranges.update(v4, Buffer.from([1]));
    }
  });
}
