// The established flows of a deleted Service keep working, as under kube-proxy: its NAT rules meet
// only a flow's first packet and the kernel's conntrack entry translates the rest after the Service is
// gone (pkg/proxy/iptables/proxier.go syncProxyRules writes no rule for a deleted Service, and
// pkg/proxy/conntrack/cleanup.go CleanStaleEntries flushes only UDP entries of Services that still
// exist). The agent's own delete path runs here: the plan's ops through the writer (BpfMaps.apply) with
// the deleted frontends' flows orphaned before and after (ct-orphan.ts keepFlows, as
// BpfDataplane.apply does), then packets through the programs with exact output bytes.
import test, { type ExecutionContext } from 'ava';
import { Datapath, planOf, SVC, TC_ACT_OK, XDP_PASS, type ProgName, type TestService } from '../../testing/datapath.js';
import { pick, toService, reply } from '../../testing/datapath-rows.js';
import { checksumErrors, icmpError, requote, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN } from '../../testing/packets.js';
import { diffPlans } from '../../src/plan/diff.js';
import type { Plan } from '../../src/plan/types.js';
import type { BpfMaps } from '../../src/dataplane/bpf/maps.js';
import { keepFlows, newOrphanCache, orphanKeyCollector, deletedFrontendIds } from '../../src/dataplane/bpf/ct-orphan.js';
import { sweepConntrack } from '../../src/dataplane/bpf/ct-sweep.js';
import { encodeU32, feFilterBit, encodeFeKey, LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_CT_F_ORPHAN, LB_CT_F_SYN, type LbStatName } from '../../src/dataplane/bpf/layout.js';
import { isRoot } from './fixtures/util.js';

const C4 = '10.244.5.9';
const HANDSHAKE_ACK = { seq: 1001, ack: 5001, flags: TCP_ACK };
const DATA = { seq: 1001, ack: 5001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
const ANSWER = { seq: 5001, ack: 1019, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('HTTP/1.1 200 OK\r\n\r\n') };

let dp: Datapath | undefined;
test.before(() => {
  if (isRoot) dp = new Datapath(undefined, 'orphan');
});
test.after.always(() => dp?.close());

const web = SVC.web4, dns = SVC.dns4;
const ALL: TestService[] = [web, dns, SVC.web6];
const planAll = (): Plan => planOf(ALL);
const planWithoutWeb = (): Plan => planOf(ALL.filter((s) => s !== web));

/** the named fields of a conntrack entry (the VM's ava stand-in has no t.like) */
function pickOf<T extends object>(o: T | undefined, keys: Array<keyof T>): Partial<T> | undefined {
  return o && Object.fromEntries(keys.map((k) => [k, o[k]])) as Partial<T>;
}

/** one packet, and every check of a datapath row: verdict, exact bytes, checksums, counters */
function expectRun(t: ExecutionContext, d: Datapath, prog: ProgName, input: Buffer, want: Buffer | 'input', stats: Partial<Record<LbStatName, number>>, what: string): void {
  d.resetStats();
  const r = d.run(prog, input);
  t.is(r.verdict, prog === 'lb_xdp' ? XDP_PASS : TC_ACT_OK, `${what}: verdict`);
  t.is(r.output.toString('hex'), (want === 'input' ? input : want).toString('hex'), `${what}: output bytes`);
  if (want !== 'input') t.deepEqual(checksumErrors(r.output), [], `${what}: checksums`);
  t.deepEqual(d.stats(), stats, `${what}: counters`);
}

/** the agent's apply of one plan change, keeping the deleted frontends' flows (BpfDataplane.apply) */
async function applyKeeping(maps: BpfMaps, from: Plan, to: Plan): Promise<void> {
  const ops = diffPlans(from, to), gone = deletedFrontendIds(ops), cache = newOrphanCache();
  if (gone.size) await keepFlows(maps, gone, cache);
  maps.apply(ops);
  if (gone.size) await keepFlows(maps, gone, cache);
}

/** an established TCP flow (SYN, then the handshake's ACK: in lb_ct) of client:sport to web */
function establish(d: Datapath, sport: number): void {
  d.run('lb_tc_ingress', toService(web, C4, sport).input);
  d.run('lb_tc_ingress', toService(web, C4, sport, HANDSHAKE_ACK).input);
}

function filterHas(d: Datapath, s: { address: string; port: number; protocol: 'TCP' | 'UDP' }): boolean {
  const bit = feFilterBit(encodeFeKey({ address: s.address, port: s.port, protocol: s.protocol, scope: 'internal' }));
  const w = d.map('lb_fe_filter').lookup(encodeU32(1 + (bit >>> 6)))!.readBigUInt64LE(0);
  return ((w >> BigInt(bit & 63)) & 1n) === 1n;
}

function fresh(d: Datapath): BpfMaps {
  d.installPlan(planAll());
  return d.bpfMaps();
}

test.serial('TCP: an established flow of a deleted ClusterIP keeps its backend both ways; new connections see no Service', async (t) => {
  if (!dp) return t.pass('needs root');
  const maps = fresh(dp);
  try {
    const sport = 41000, b = pick(web, C4, sport);
    establish(dp, sport);
    t.is(dp.ctIn('lb_ct', { saddr: C4, daddr: web.address, sport, dport: web.port, protocol: 'TCP', dir: LB_CT_DIR_FWD })?.backendId, b.id, 'established: in lb_ct');
    await applyKeeping(maps, planAll(), planWithoutWeb());
    t.is(dp.map('lb_revnat').lookup(encodeU32(web.feId)), undefined, 'the Service is gone from the maps (rev-NAT entry deleted)');
    const fwd = dp.ctIn('lb_ct', { saddr: C4, daddr: web.address, sport, dport: web.port, protocol: 'TCP', dir: LB_CT_DIR_FWD });
    t.deepEqual(pickOf(fwd, ['feId', 'backendId', 'feAddr', 'orphanPort']), { feId: 0, backendId: 0, feAddr: b.address, orphanPort: b.port }, 'forward entry orphaned: holds the backend, no id');
    t.true(((fwd?.flags ?? 0) & LB_CT_F_ORPHAN) !== 0);
    t.true(filterHas(dp, web), 'the filter bit of the deleted frontend is held for its flows');

    const g = toService(web, C4, sport, DATA);
    expectRun(t, dp, 'lb_tc_ingress', g.input, g.to(b), { ct_orphan: 1 }, 'client data after the delete');
    const r = reply(web, b, C4, sport, ANSWER);
    expectRun(t, dp, 'lb_tc_egress', r.input, r.output, { ct_orphan: 1, rev_nat: 1 }, 'the backend\'s answer after the delete');
    // XDP leaves it to tc (no frontend there)
    expectRun(t, dp, 'lb_xdp', g.input, 'input', {}, 'XDP: no frontend, left to tc');

    // a new connection, from another port or on the orphaned tuple itself: no Service, no rule
    // (kube-proxy's iptables mode has none for a deleted ClusterIP; the packet is routed as it is)
    expectRun(t, dp, 'lb_tc_ingress', toService(web, C4, 41001).input, 'input', {}, 'a new SYN to the deleted ClusterIP');
    t.is(dp.ct({ saddr: C4, daddr: web.address, sport: 41001, dport: web.port, protocol: 'TCP', dir: LB_CT_DIR_FWD }), undefined, 'no conntrack entry for it');
    expectRun(t, dp, 'lb_tc_ingress', toService(web, C4, sport).input, 'input', {}, 'a SYN on the orphaned flow\'s tuple (a reused port)');
  } finally {
    maps.close();
  }
});

test.serial('TCP: the orphaned flow keeps its old backend when the Service is re-created on the same ClusterIP with the same ids and another backend', async (t) => {
  if (!dp) return t.pass('needs root');
  const maps = fresh(dp);
  try {
    const sport = 41010, b = pick(web, C4, sport);
    establish(dp, sport);
    await applyKeeping(maps, planAll(), planWithoutWeb());
    // the same frontend id and the same backend ids, now for other pods: nothing of the old flow may follow them
    const again: TestService = { ...web, backends: web.backends.map((x, i) => ({ ...x, address: `10.244.9.${10 + i}` })) };
    const planAgain = planOf([again, dns, SVC.web6]);
    await applyKeeping(maps, planWithoutWeb(), planAgain);
    const g = toService(web, C4, sport, DATA);
    expectRun(t, dp, 'lb_tc_ingress', g.input, g.to(b), { ct_orphan: 1 }, 'the old flow\'s data: to its old backend');
    const r = reply(web, b, C4, sport, ANSWER);
    expectRun(t, dp, 'lb_tc_egress', r.input, r.output, { ct_orphan: 1, rev_nat: 1 }, 'its answer: from the ClusterIP');
    expectRun(t, dp, 'lb_xdp', g.input, 'input', { xdp_to_tc: 1 }, 'XDP leaves an orphaned flow to tc');
    const n = pick(again, C4, 41011), f = toService(again, C4, 41011);
    expectRun(t, dp, 'lb_tc_ingress', f.input, f.to(n), { fwd_new: 1 }, 'a new connection: the new Service\'s backend');
    // a SYN on the old flow's tuple is a new connection of the new Service
    const s2 = toService(again, C4, sport);
    expectRun(t, dp, 'lb_tc_ingress', s2.input, s2.to(pick(again, C4, sport)), { fwd_new: 1, ct_backend_gone: 1 }, 'a SYN on the orphaned tuple: the new Service picks');
  } finally {
    maps.close();
  }
});

test.serial('TCP: re-created with the same backends, a SYN on the orphaned flow\'s tuple is a new flow of the new Service (no clash with the orphan)', async (t) => {
  if (!dp) return t.pass('needs root');
  const maps = fresh(dp);
  try {
    const sport = 41015, b = pick(web, C4, sport);
    establish(dp, sport);
    await applyKeeping(maps, planAll(), planWithoutWeb());
    await applyKeeping(maps, planWithoutWeb(), planAll());
    const f = toService(web, C4, sport);
    expectRun(t, dp, 'lb_tc_ingress', f.input, f.to(b), { fwd_new: 1, ct_backend_gone: 1 }, 'the SYN: the new Service\'s pick, the same backend');
    t.deepEqual(pickOf(dp.ctIn('lb_ct', { saddr: b.address, daddr: C4, sport: b.port, dport: sport, protocol: 'TCP', dir: LB_CT_DIR_REV }), ['feId', 'backendId']), { feId: web.feId, backendId: b.id },
      'the reverse entry is the new flow\'s');
  } finally {
    maps.close();
  }
});

test.serial('a host-originated flow (translated at tc egress, replies at ingress) of a deleted Service keeps its backend; at the other hook it is not ours', async (t) => {
  if (!dp) return t.pass('needs root');
  const maps = fresh(dp);
  try {
    const host = '192.168.1.10', sport = 45010, b = pick(web, host, sport);
    dp.run('lb_tc_egress', toService(web, host, sport).input);
    dp.run('lb_tc_egress', toService(web, host, sport, HANDSHAKE_ACK).input);
    await applyKeeping(maps, planAll(), planWithoutWeb());
    const g = toService(web, host, sport, DATA);
    expectRun(t, dp, 'lb_tc_ingress', g.input, 'input', {}, 'its packet at ingress: not where it is translated');
    expectRun(t, dp, 'lb_tc_egress', g.input, g.to(b), { ct_orphan: 1 }, 'its packet at egress');
    const r = reply(web, b, host, sport, ANSWER);
    expectRun(t, dp, 'lb_tc_ingress', r.input, r.output, { ct_orphan: 1, rev_nat: 1 }, 'the answer at ingress');
  } finally {
    maps.close();
  }
});

test.serial('UDP: a deleted Service\'s flow keeps its backend (kube-proxy flushes UDP only for Services that still exist)', async (t) => {
  if (!dp) return t.pass('needs root');
  const maps = fresh(dp);
  try {
    const sport = 42000, b = pick(dns, C4, sport), q = Buffer.from('query');
    const f = toService(dns, C4, sport, { payload: q });
    dp.run('lb_tc_ingress', f.input);
    await applyKeeping(maps, planAll(), planOf([web, SVC.web6]));
    expectRun(t, dp, 'lb_tc_ingress', f.input, f.to(b), { ct_orphan: 1 }, 'the next datagram');
    const r = reply(dns, b, C4, sport, { payload: Buffer.from('answer') });
    expectRun(t, dp, 'lb_tc_egress', r.input, r.output, { ct_orphan: 1, rev_nat: 1 }, 'the answer');
    const other = toService(dns, C4, 42001, { payload: q });
    expectRun(t, dp, 'lb_tc_ingress', other.input, 'input', {}, 'a datagram of a new flow: no Service');
    // ICMP errors of the orphaned flow are translated as a live flow's
    const quoted = f.to(b).subarray(14, 14 + 28);
    expectRun(t, dp, 'lb_tc_egress', icmpError(b.address, C4, 3, 3, quoted), icmpError(dns.address, C4, 3, 3, requote(quoted, dns.address, dns.port)),
      { icmp_xlate: 1 }, 'the backend\'s port unreachable: from the ClusterIP');
    const seen = r.output.subarray(14);
    expectRun(t, dp, 'lb_tc_ingress', icmpError(C4, dns.address, 3, 3, seen), icmpError(C4, b.address, 3, 3, requote(seen, b.address, b.port, 'src')),
      { icmp_xlate: 1 }, 'the client\'s port unreachable about an answer: to the backend');
  } finally {
    maps.close();
  }
});

test.serial('an orphaned flow whose reverse entry was evicted: the next client packet writes it again, the answer is translated', async (t) => {
  if (!dp) return t.pass('needs root');
  const maps = fresh(dp);
  try {
    const sport = 41020, b = pick(web, C4, sport);
    establish(dp, sport);
    await applyKeeping(maps, planAll(), planWithoutWeb());
    const fk = { saddr: C4, daddr: web.address, sport, dport: web.port, protocol: 'TCP' as const, dir: LB_CT_DIR_FWD };
    const rk = { saddr: b.address, daddr: C4, sport: b.port, dport: sport, protocol: 'TCP' as const, dir: LB_CT_DIR_REV };
    dp.deleteCt('lb_ct', rk);
    const e = dp.ctIn('lb_ct', fk)!;
    dp.setCt('lb_ct', fk, { ...e, lastSeen: e.lastSeen - 2_000_000_000n }); // due for its refresh
    const g = toService(web, C4, sport, DATA);
    expectRun(t, dp, 'lb_tc_ingress', g.input, g.to(b), { ct_orphan: 1, ct_rev_restored: 1 }, 'client data');
    t.deepEqual(pickOf(dp.ctIn('lb_ct', rk), ['feId', 'feAddr', 'orphanPort']), { feId: 0, feAddr: web.address, orphanPort: web.port }, 'reverse entry written again as an orphan');
    const r = reply(web, b, C4, sport, ANSWER);
    expectRun(t, dp, 'lb_tc_egress', r.input, r.output, { ct_orphan: 1, rev_nat: 1 }, 'the answer');
  } finally {
    maps.close();
  }
});

// A client port reused while the closed flow's entries live: the SYN rewrites both in lb_ct flagged
// LB_CT_F_SYN (the SYN timeout until the handshake ends). Deleted before the client's ACK, the flow is
// still kube-proxy's to keep: its conntrack entry (SYN_SENT, then ESTABLISHED) is left to live as
// any TCP entry of a deleted Service (only UDP is flushed), so the orphan's flag must end at that ACK
// as a live frontend's does, or the established flow is swept after 60 s idle.
for (const s of [web, SVC.web6]) {
  const fam = s === web ? 'IPv4' : 'IPv6', c = s === web ? C4 : 'fd00:244:5::9';
  const keys = (sport: number, b: { address: string; port: number }) => ({
    fk: { saddr: c, daddr: s.address, sport, dport: s.port, protocol: 'TCP' as const, dir: LB_CT_DIR_FWD },
    rk: { saddr: b.address, daddr: c, sport: b.port, dport: sport, protocol: 'TCP' as const, dir: LB_CT_DIR_REV },
  });
  /** SYN, ACK, FIN on sport, then a SYN on it again: both entries in lb_ct flagged */
  const reopen = (d: Datapath, sport: number): void => {
    for (const o of [{ seq: 1000, flags: TCP_SYN }, HANDSHAKE_ACK, { ...HANDSHAKE_ACK, flags: TCP_FIN | TCP_ACK }, { seq: 3000, flags: TCP_SYN }]) d.run('lb_tc_ingress', toService(s, c, sport, o).input);
  };
  const without = (): Plan => planOf(ALL.filter((x) => x !== s));

  test.serial(`${fam}: a flagged flow (a SYN over a closed flow's entries) whose Service is deleted mid-handshake: the client's ACK clears the flag in both orphaned entries, which then live the established timeout`, async (t) => {
    if (!dp) return t.pass('needs root');
    const maps = fresh(dp);
    try {
      const sport = 41100, b = pick(s, c, sport), { fk, rk } = keys(sport, b);
      reopen(dp, sport);
      t.deepEqual([dp.ctIn('lb_ct', fk)?.flags, dp.ctIn('lb_ct', rk)?.flags], [LB_CT_F_SYN, LB_CT_F_SYN], 'setup: flagged');
      await applyKeeping(maps, planAll(), without());
      t.deepEqual([dp.ctIn('lb_ct', fk)?.flags, dp.ctIn('lb_ct', rk)?.flags], [LB_CT_F_ORPHAN | LB_CT_F_SYN, LB_CT_F_ORPHAN | LB_CT_F_SYN], 'orphaned, still in its handshake');
      const synAck = reply(s, b, c, sport, { seq: 7000, ack: 3001, flags: TCP_SYN | TCP_ACK });
      expectRun(t, dp, 'lb_tc_egress', synAck.input, synAck.output, { ct_orphan: 1, rev_nat: 1 }, 'the backend\'s SYN-ACK after the delete');
      const fin = reply(s, b, c, sport, { seq: 7001, ack: 3001, flags: TCP_FIN | TCP_ACK });
      expectRun(t, dp, 'lb_tc_egress', fin.input, 'input', {}, 'a FIN before the handshake\'s end: not translated (as for a flow in lb_ct_syn)');
      const ack = toService(s, c, sport, { seq: 3001, ack: 7001, flags: TCP_ACK });
      expectRun(t, dp, 'lb_tc_ingress', ack.input, ack.to(b), { ct_orphan: 1 }, 'the client\'s ACK');
      t.deepEqual([dp.ctIn('lb_ct', fk)?.flags, dp.ctIn('lb_ct', rk)?.flags], [LB_CT_F_ORPHAN, LB_CT_F_ORPHAN], 'the handshake is over: the flag cleared in both');
      const answer = reply(s, b, c, sport, { ...ANSWER, seq: 7001, ack: 3019 });
      expectRun(t, dp, 'lb_tc_egress', answer.input, answer.output, { ct_orphan: 1, rev_nat: 1 }, 'data after the handshake: from the deleted Service\'s address');
      const r = await sweepConntrack(dp.map('lb_ct'), 'lb_ct', process.hrtime.bigint() + 121n * 1_000_000_000n);
      t.is(r.expired, 0, 'past the SYN and closing timeouts: both kept');
      t.truthy(dp.ctIn('lb_ct', fk));
      t.truthy(dp.ctIn('lb_ct', rk));
      expectRun(t, dp, 'lb_tc_egress', fin.input, fin.output, { ct_orphan: 1, rev_nat: 1 }, 'the backend\'s FIN now: translated');
    } finally {
      maps.close();
    }
  });

  // the same for a brand-new tuple's flow, still in lb_ct_syn when its Service goes: kube-proxy's
  // SYN_SENT entry keeps its DNAT, the client's ACK reaches the backend and the flow lives on
  test.serial(`${fam}: a new flow whose Service is deleted before the client's ACK (its entries in lb_ct_syn): the ACK reaches the backend, the flow goes on in lb_ct as an orphan`, async (t) => {
    if (!dp) return t.pass('needs root');
    const maps = fresh(dp);
    try {
      const sport = 41120, b = pick(s, c, sport), { fk, rk } = keys(sport, b);
      dp.run('lb_tc_ingress', toService(s, c, sport, { seq: 1000, flags: TCP_SYN }).input);
      t.truthy(dp.ctIn('lb_ct_syn', fk), 'setup: the SYN waits in lb_ct_syn');
      await applyKeeping(maps, planAll(), without());
      const synAck = reply(s, b, c, sport, { seq: 7000, ack: 1001, flags: TCP_SYN | TCP_ACK });
      expectRun(t, dp, 'lb_tc_egress', synAck.input, synAck.output, { ct_orphan: 1, rev_nat: 1 }, 'the backend\'s SYN-ACK after the delete');
      const ack = toService(s, c, sport, { seq: 1001, ack: 7001, flags: TCP_ACK });
      expectRun(t, dp, 'lb_tc_ingress', ack.input, ack.to(b), { ct_orphan: 1 }, 'the client\'s ACK: to the backend');
      t.deepEqual([dp.ctIn('lb_ct', fk)?.flags, dp.ctIn('lb_ct', rk)?.flags], [LB_CT_F_ORPHAN, LB_CT_F_ORPHAN], 'both entries in lb_ct, orphaned');
      t.deepEqual([dp.ctIn('lb_ct_syn', fk), dp.ctIn('lb_ct_syn', rk)], [undefined, undefined], 'lb_ct_syn emptied');
      const answer = reply(s, b, c, sport, { ...ANSWER, seq: 7001, ack: 1019 });
      expectRun(t, dp, 'lb_tc_egress', answer.input, answer.output, { ct_orphan: 1, rev_nat: 1 }, 'the backend\'s data: from the deleted Service\'s address');
      const data = toService(s, c, sport, { ...DATA, ack: 7001 });
      expectRun(t, dp, 'lb_tc_ingress', data.input, data.to(b), { ct_orphan: 1 }, 'the client\'s data');
    } finally {
      maps.close();
    }
  });

  test.serial(`${fam}: a flagged flow whose Service is deleted and whose handshake never ends: both orphaned entries swept at the SYN timeout`, async (t) => {
    if (!dp) return t.pass('needs root');
    const maps = fresh(dp);
    try {
      const sport = 41110, b = pick(s, c, sport), { fk, rk } = keys(sport, b);
      reopen(dp, sport);
      await applyKeeping(maps, planAll(), without());
      t.is(dp.ctIn('lb_ct', fk)?.flags, LB_CT_F_ORPHAN | LB_CT_F_SYN);
      // the sweep's clock from the entries' own last packet, not from now (the VM tier's emulation is slow)
      const seen = [dp.ctIn('lb_ct', fk)!.lastSeen, dp.ctIn('lb_ct', rk)!.lastSeen];
      const last = seen[0]! > seen[1]! ? seen[0]! : seen[1]!, first = seen[0]! < seen[1]! ? seen[0]! : seen[1]!;
      t.is((await sweepConntrack(dp.map('lb_ct'), 'lb_ct', first + 59n * 1_000_000_000n)).expired, 0, 'kept: 59 s after the older last packet');
      t.is((await sweepConntrack(dp.map('lb_ct'), 'lb_ct', last + 61n * 1_000_000_000n)).expired, 2, 'both deleted 61 s after the newer');
      t.is(dp.ctIn('lb_ct', rk), undefined);
    } finally {
      maps.close();
    }
  });
}

test.serial('the orphaned flows end: the sweep deletes them once expired (clock driven) and the filter bit is let go', async (t) => {
  if (!dp) return t.pass('needs root');
  const maps = fresh(dp);
  try {
    const sport = 41030;
    establish(dp, sport);
    await applyKeeping(maps, planAll(), planWithoutWeb());
    t.is(maps.heldFeFilterKeys(), 1);
    // a sweep now keeps them (alive)
    let live = new Set<string>();
    await sweepConntrack(dp.map('lb_ct'), 'lb_ct', process.hrtime.bigint(), 4096, orphanKeyCollector(live));
    maps.holdFeFilterKeys(live, true);
    t.is(maps.heldFeFilterKeys(), 1, 'alive: still held');
    t.true(filterHas(dp, web));
    // 6 h and a minute without a packet: past LB_CT_TIMEOUT_TCP
    live = new Set<string>();
    const r = await sweepConntrack(dp.map('lb_ct'), 'lb_ct', process.hrtime.bigint() + 21_660n * 1_000_000_000n, 4096, orphanKeyCollector(live));
    maps.holdFeFilterKeys(live, true);
    t.is(r.expired, 2, 'both entries of the flow swept');
    t.is(maps.heldFeFilterKeys(), 0);
    t.false(filterHas(dp, web), 'the deleted frontend\'s filter bit is clear: packets to it pay no lookup');
    const g = toService(web, C4, sport, DATA);
    expectRun(t, dp, 'lb_tc_ingress', g.input, 'input', {}, 'the client\'s late packet: no Service');
  } finally {
    maps.close();
  }
});

test.serial('restart: a new agent\'s writer rebuilds the filter from lb_frontends, and its first sweep holds the orphaned flows\' bits again', async (t) => {
  if (!dp) return t.pass('needs root');
  const first = fresh(dp);
  const sport = 41040, b = pick(web, C4, sport);
  try {
    establish(dp, sport);
    await applyKeeping(first, planAll(), planWithoutWeb());
  } finally {
    first.close();
  }
  // the new agent: its writer loads its mirrors from the maps; its first apply writes the filter anew
  const maps = dp.bpfMaps();
  try {
    maps.apply(diffPlans(planWithoutWeb(), planOf([dns, SVC.web6, SVC.sticky])));
    t.false(filterHas(dp, web), 'the filter rebuilt from lb_frontends alone');
    const live = new Set<string>();
    await sweepConntrack(dp.map('lb_ct'), 'lb_ct', process.hrtime.bigint(), 4096, orphanKeyCollector(live));
    maps.holdFeFilterKeys(live, true);
    t.true(filterHas(dp, web), 'held again after the sweep');
    const g = toService(web, C4, sport, DATA);
    expectRun(t, dp, 'lb_tc_ingress', g.input, g.to(b), { ct_orphan: 1 }, 'the flow after the restart');
    // and a later apply keeps the bit (the writer counts it with the frontends' own)
    maps.apply(diffPlans(planOf([dns, SVC.web6, SVC.sticky]), planOf([dns, SVC.web6])));
    t.true(filterHas(dp, web), 'held across later applies');
  } finally {
    maps.close();
  }
});
