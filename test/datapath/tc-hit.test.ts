// tc's two paths (bpf/lb_tc.h): a plain conntrack hit is translated inline in lb_tc (lb_tc_hit),
// everything else by the global subprogram lb_tc_forward (lb_select, lb_commit) and the steps it
// hands back (reroute, orphan, refusal). These rows check that a plain hit writes nothing and keeps
// what the whole path gave it (the SNAT mark at ingress), and that each packet the inline path must
// not take (a hit due its refresh, a closing packet, a frontend with source ranges, a flow whose
// backend left) still gets what lb_select and lb_commit give it.
import test from 'ava';
import { Datapath, SNAT_MARK, SVC, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT } from '../../testing/datapath.js';
import { BASE_SERVICES, pick, sportFor, toService } from '../../testing/datapath-rows.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, expectedRst } from '../../testing/packets.js';
import { LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_CT_F_CLOSING, LB_CT_F_SNAT, encodeCtKey, encodeMemberKey, encodeSrcRangeKey, type CtKey } from '../../src/dataplane/bpf/layout.js';
import { isRoot } from './fixtures/util.js';

const EXT = '192.168.50.30';
const DATA = { seq: 1001, ack: 7001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
const np = SVC.nodePort;
const fwdKey = (s: { address: string; port: number }, client: string, sport: number): CtKey =>
  ({ saddr: client, daddr: s.address, sport, dport: s.port, protocol: 'TCP', dir: LB_CT_DIR_FWD });
const revKey = (b: { address: string; port: number }, client: string, sport: number): CtKey =>
  ({ saddr: b.address, daddr: client, sport: b.port, dport: sport, protocol: 'TCP', dir: LB_CT_DIR_REV });

if (!isRoot) {
  test('tc hit tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); dp.install(BASE_SERVICES); });
  test.after.always(() => dp?.close());
  test.beforeEach(() => { dp!.restore(); dp!.addNodeAddress('192.168.1.10'); dp!.setExternal(true); });

  /** a flow to np opened at tc ingress (its SYN, then its ACK: into lb_ct); the port and backend */
  function open(d: Datapath, client: string, n: number, b52 = false) {
    const sport = sportFor(np, client, b52 ? 52 : 51, 40000 + n * 100), b = pick(np, client, sport);
    d.run('lb_tc_ingress', toService(np, client, sport).input);
    d.run('lb_tc_ingress', toService(np, client, sport, { seq: 1001, ack: 7001, flags: TCP_ACK }).input);
    must(d.ct(fwdKey(np, client, sport))?.backendId === b.id, 'established in lb_ct');
    return { sport, b };
  }
  function must(ok: boolean, what: string) { if (!ok) throw new Error(`setup: ${what}`); }

  test.serial('a plain hit: translated inline, counted, its entry left as it was', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 1);
    const before = d.ct(fwdKey(np, EXT, sport))!;
    d.resetStats();
    const g = toService(np, EXT, sport, DATA), r = d.run('lb_tc_ingress', g.input);
    t.is(r.verdict, TC_ACT_OK);
    t.is(r.output.toString('hex'), g.to(b).toString('hex'));
    t.is(r.mark, 0);
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    t.deepEqual(d.ct(fwdKey(np, EXT, sport)), before, 'nothing written');
  });

  test.serial('a plain hit of a masqueraded flow: the SNAT mark set inline, as the whole path sets it', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 2, true);
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

  test.serial('a hit due its refresh takes the whole path: last_seen written, a lost reverse entry restored', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 3);
    const fk = fwdKey(np, EXT, sport), e = d.ct(fk)!;
    d.setCt('lb_ct', fk, { ...e, lastSeen: e.lastSeen - 2_000_000_000n });
    d.map('lb_ct').delete(encodeCtKey(revKey(b, EXT, sport)));
    d.resetStats();
    const g = toService(np, EXT, sport, DATA), r = d.run('lb_tc_ingress', g.input);
    t.is(r.verdict, TC_ACT_OK);
    t.is(r.output.toString('hex'), g.to(b).toString('hex'));
    t.deepEqual(d.stats(), { fwd_ct_hit: 1, ct_rev_restored: 1 });
    t.true(d.ct(fk)!.lastSeen > e.lastSeen - 2_000_000_000n, 'refreshed');
    t.is(d.ct(revKey(b, EXT, sport))?.feId, np.feId, 'the reverse entry written again');
  });

  test.serial('a FIN on an established flow takes the whole path: its entry flagged closing', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 4);
    d.resetStats();
    const fin = toService(np, EXT, sport, { seq: 1001, ack: 7001, flags: TCP_FIN | TCP_ACK }), r = d.run('lb_tc_ingress', fin.input);
    t.is(r.verdict, TC_ACT_OK);
    t.is(r.output.toString('hex'), fin.to(b).toString('hex'));
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    t.truthy(d.ct(fwdKey(np, EXT, sport))!.flags & LB_CT_F_CLOSING);
  });

  test.serial('a packet of a flow whose backend left the frontend: no inline hit, reset by the whole path', (t) => {
    const d = dp!, { sport, b } = open(d, EXT, 5);
    const members = d.map('lb_members'), mk = encodeMemberKey({ feId: np.feId, backendId: b.id });
    members.delete(mk);
    try {
      d.resetStats();
      const g = toService(np, EXT, sport, DATA), r = d.run('lb_tc_ingress', g.input);
      t.is(r.verdict, TC_ACT_REDIRECT, 'a RST bounced to the client');
      t.is(r.output.toString('hex'), expectedRst(g.input).toString('hex'));
      t.deepEqual(d.stats(), { reset_backend_gone: 1 });
    } finally {
      members.update(mk, Buffer.from([1]));
    }
  });

  test.serial('a hit to a frontend with source ranges is checked against them on every packet', (t) => {
    const d = dp!, lb = SVC.lb, ok = '192.168.50.7', sport = 52600, b = pick(lb, ok, sport);
    d.run('lb_tc_ingress', toService(lb, ok, sport).input);
    d.run('lb_tc_ingress', toService(lb, ok, sport, { seq: 1001, ack: 7001, flags: TCP_ACK }).input);
    d.resetStats();
    const g = toService(lb, ok, sport, DATA);
    let r = d.run('lb_tc_ingress', g.input);
    t.is(r.output.toString('hex'), g.to(b).toString('hex'), 'an allowed client\'s hit translated');
    t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    // the ranges changed under an established flow: its next packet is refused, as kube-proxy's
    // firewall chain refuses it
    const ranges = d.map('lb_src_ranges'), v4 = encodeSrcRangeKey({ feId: lb.feId, cidr: '192.168.50.0/24' });
    ranges.delete(v4);
    try {
      d.resetStats();
      r = d.run('lb_tc_ingress', g.input);
      t.is(r.verdict, TC_ACT_SHOT);
      t.deepEqual(d.stats(), { drop_source_range: 1 });
    } finally {
      ranges.update(v4, Buffer.from([1]));
    }
  });
}
