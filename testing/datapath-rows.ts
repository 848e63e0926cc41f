// The datapath table: one row per case, {description, map setup, input packet, program, expected
// verdict, expected output bytes, counters}. test/datapath/datapath.test.ts runs every row;
// bench/datapath.bench.ts reruns the rows marked `bench` with repeat as the per-packet benchmark
// (Katran's tester does both from one table too).
import type { ExecutionContext } from 'ava';
import {
  Datapath, SVC, SEED, SNAT_MARK, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT, XDP_DROP, XDP_PASS,
  LB_BE_F_TERMINATING, type ProgName, type TestService, type TestBackend,
} from './datapath.js';
import {
  frame, tcp, udp, expectedRst, expectedUnreach, icmpError, requote, fragment, checksum, checksumErrors, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, TCP_RST,
  type FrameSpec, type L4Spec,
} from './packets.js';
import { pickBackend } from '../src/dataplane/bpf/hash.js';
import { buildMaglevTable, maglevSize } from '../src/plan/maglev.js';
import { LB_FE_F_MASQ_ALL, LB_CT_F_CLOSING, LB_CT_F_ORPHAN, LB_CT_F_SYN, LB_CT_F_HAIRPIN, LB_CT_F_REV_AT_INGRESS, LB_CT_F_SNAT, LB_CT_DIR_FWD, LB_CT_DIR_REV, encodeEipAllowKey, encodeCtKey, type LbStatName } from '../src/dataplane/bpf/layout.js';

export interface Check {
  ok(cond: boolean, msg: string): void;
  eq<T>(actual: T, expected: T, msg: string): void;
}

export interface Row {
  name: string;
  prog: ProgName;
  /** the device the packet is seen on is flagged LB_DEV_F_EXTERNAL */
  external?: boolean;
  /** extra state on top of the base services; may run packets (their counters are cleared after) */
  setup?: (dp: Datapath) => void;
  input: Buffer;
  /** skb mark before the program runs (tc only) */
  mark?: number;
  verdict: number;
  /** the exact frame the program leaves behind; 'input' = untouched */
  output: Buffer | 'input';
  /** tc rows: the skb mark afterwards (default: unchanged) */
  markOut?: number;
  /** lb_stats afterwards: exactly these counters are non-zero */
  stats: Partial<Record<LbStatName, number>>;
  /** further checks of the maps afterwards */
  after?: (dp: Datapath, c: Check) => void;
  /** rerun by the benchmark */
  bench?: 'ct-hit' | 'first-packet' | 'reverse' | 'xdp-first-packet' | 'xdp-ct-hit' | 'ct-hit-repeat';
}

const PROTO_NUM = { TCP: 6, UDP: 17, SCTP: 132 } as const;

export function tableOf(s: TestService): Uint32Array {
  return buildMaglevTable(s.backends.map((b) => ({ address: b.address, port: b.port, id: b.id })), SEED, maglevSize(s.backends.length));
}

function backend(s: TestService, id: number): TestBackend {
  const b = s.backends.find((x) => x.id === id);
  if (!b) throw new Error(`${s.address}:${s.port}: no backend ${id} (slot held an id outside the set)`);
  return b;
}

/** the backend the kernel must pick for a first packet (no conntrack, no affinity) */
export function pick(s: TestService, client: string, sport: number, affinity = false): TestBackend {
  return backend(s, pickBackend(tableOf(s), client, affinity ? 0 : sport, PROTO_NUM[s.protocol], SEED));
}

/** the first client port >= from whose flow lands on backend id (a bounded search) */
export function sportFor(s: TestService, client: string, id: number, from = 40000): number {
  for (let p = from; p < from + 5000; p++) if (pick(s, client, p).id === id) return p;
  throw new Error(`no port of ${client} lands on backend ${id} of ${s.address}:${s.port}`);
}

type L4Opts = { seq?: number; ack?: number; flags?: number; payload?: Buffer; noChecksum?: boolean };
const clean = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
function l4(s: { protocol: string }, sport: number, dport: number, o: L4Opts = {}): L4Spec {
  if (s.protocol === 'TCP') return tcp(sport, dport, clean({ seq: o.seq, ack: o.ack, flags: o.flags, payload: o.payload }));
  return udp(sport, dport, clean({ payload: o.payload, noChecksum: o.noChecksum }));
}

/** a client's packet to a service, and the same packet translated to a backend */
export function toService(s: TestService, client: string, sport: number, o: L4Opts & { extra?: Partial<FrameSpec> } = {}) {
  const lo = clean({ seq: o.seq, ack: o.ack, flags: o.flags, payload: o.payload, noChecksum: o.noChecksum });
  const input = frame({ src: client, dst: s.address, l4: l4(s, sport, s.port, lo), ...o.extra });
  const to = (b: TestBackend) => frame({ src: client, dst: b.address, l4: l4(s, sport, b.port, lo), ...o.extra });
  return { input, to };
}

/** a backend's reply to a client, and the same reply as the client must see it (from the service) */
export function reply(s: TestService, b: TestBackend, client: string, cport: number, o: L4Opts = {}) {
  const lo = clean({ seq: o.seq ?? 5000, ack: o.ack ?? 1001, flags: o.flags ?? (s.protocol === 'TCP' ? TCP_SYN | TCP_ACK : undefined), payload: o.payload });
  const spec = (src: string, port: number): FrameSpec => ({ src, dst: client, l4: l4(s, port, cport, lo), macSrc: Buffer.from('02000000cc03', 'hex'), macDst: Buffer.from('02000000dd04', 'hex') });
  return { input: frame(spec(b.address, b.port)), output: frame(spec(s.address, s.port)) };
}

const ACK_DATA = { seq: 1001, ack: 7001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };

/** a TCP flow to s opened through prog (its SYN, then the client's ACK: into lb_ct); its backend */
export function openFlow(d: Datapath, prog: ProgName, s: TestService, client: string, sport: number): TestBackend {
  const b = pick(s, client, sport);
  d.run(prog, toService(s, client, sport).input);
  d.run(prog, toService(s, client, sport, { seq: 1001, ack: 7001, flags: TCP_ACK }).input);
  if (d.ct(ctKey(s, client, sport))?.backendId !== b.id) throw new Error('setup: not established in lb_ct');
  return b;
}

function ctKey(s: TestService, client: string, sport: number) {
  return { saddr: client, daddr: s.address, sport, dport: s.port, protocol: s.protocol, dir: LB_CT_DIR_FWD };
}
function ctRevKey(s: TestService, b: TestBackend, client: string, sport: number) {
  return { saddr: b.address, daddr: client, sport: b.port, dport: sport, protocol: s.protocol, dir: LB_CT_DIR_REV };
}

/** Fresh maps with the base services, the row's setup, and counters cleared: the state a row's packet meets. */
export function prepareRow(dp: Datapath, row: Row): void {
  dp.restore();
  dp.setExternal(row.external ?? false);
  row.setup?.(dp);
  dp.resetStats();
  for (const s of BASE_SERVICES) dp.clearFeStats(s.feId);
}

/**
 * One row end to end: the row's state, its packet through its program, then every check of the row:
 * verdict, exact output bytes, the output's checksums recomputed, the skb mark, counters, after().
 */
export function checkRow(t: ExecutionContext, dp: Datapath, row: Row): void {
  prepareRow(dp, row);
  const r = dp.run(row.prog, row.input, { mark: row.mark });
  t.is(r.verdict, row.verdict, 'verdict');
  const want = row.output === 'input' ? row.input : row.output;
  t.is(r.output.toString('hex'), want.toString('hex'), 'output bytes');
  if (row.output !== 'input') t.deepEqual(checksumErrors(r.output), [], 'checksums of the output, recomputed');
  if (row.prog !== 'lb_xdp') t.is(r.mark >>> 0, (row.markOut ?? row.mark ?? 0) >>> 0, 'skb mark');
  t.deepEqual(dp.stats(), row.stats, 'counters');
  row.after?.(dp, { ok: (c, m) => t.true(c, m), eq: (a, e, m) => t.deepEqual(a, e, m) });
}

export const BASE_SERVICES = Object.values(SVC) as TestService[];

function run(dp: Datapath, prog: ProgName, data: Buffer) {
  return dp.run(prog, data);
}

export function buildRows(): Row[] {
  const rows: Row[] = [];
  const add = (r: Row) => rows.push(r);
  const C4 = '10.244.5.9', C6 = 'fd00:244:5::9', EXT = '192.168.50.7';

  // ---- forward: first packet through Maglev, then conntrack ----
  {
    const s = SVC.web4, b = pick(s, C4, 41000), f = toService(s, C4, 41000);
    add({
      name: 'TCP/IPv4 SYN to a ClusterIP: DNAT to the Maglev backend, checksums fixed, CT both ways',
      prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 }, bench: 'first-packet',
      after: (dp, c) => {
        c.eq(dp.ct(ctKey(s, C4, 41000))?.backendId, b.id, 'forward CT entry holds the backend');
        c.eq(dp.ct(ctRevKey(s, b, C4, 41000))?.feId, s.feId, 'reverse CT entry names the frontend');
        c.eq(dp.feStats(s.feId).packets, 1, 'per-frontend packet counter');
        c.eq(dp.feStats(s.feId).bytes, f.input.length, 'per-frontend byte counter');
      },
    });
    const g = toService(s, C4, 41000, ACK_DATA);
    add({
      name: 'TCP/IPv4 data on an established flow: conntrack hit, same backend',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); },
      input: g.input, verdict: TC_ACT_OK, output: g.to(b), stats: { fwd_ct_hit: 1 }, bench: 'ct-hit',
    });
  }
  {
    const s = SVC.selfMapped, client = '192.168.50.40', f = toService(s, client, 44000), g = toService(s, client, 44000, ACK_DATA);
    add({
      name: 'backend on the frontend\'s own address and port: conntrack hit rewrites the packet to itself, bytes intact',
      prog: 'lb_tc_ingress', external: true, setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); }, input: g.input, verdict: TC_ACT_OK,
      output: 'input', stats: { fwd_ct_hit: 1 }, bench: 'ct-hit-repeat',
      after: (dp, c) => c.eq(dp.feStats(s.feId).packets, 1, 'translated (counted), not passed by'),
    });
  }
  // CVE-2020-8554 (bpf/lb_eip.h): traffic that starts on this node reaches an externalIP's Service
  // only for a node address or an allowlisted one; from outside it always does
  {
    const s = SVC.selfMapped, f = toService(s, C4, 45000);
    add({ name: 'pod to an externalIP that is neither a node address nor allowlisted: passed untouched', prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: 'input', stats: {},
      after: (dp, c) => c.eq(dp.feStats(s.feId).packets, 0, 'not translated') });
    add({ name: 'pod to an allowlisted externalIP: translated', prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: 'input', stats: { fwd_new: 1 },
      setup: (dp) => { dp.map('lb_sock_eip_ok').update(encodeEipAllowKey('192.168.1.8/30'), Buffer.of(1)); },
      after: (dp, c) => c.eq(dp.feStats(s.feId).packets, 1, 'translated (to itself: its backend is that address)') });
    add({ name: 'pod to an externalIP on a node address: translated', prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: 'input', stats: { fwd_new: 1 },
      setup: (dp) => { dp.addNodeAddress(s.address); } });
  }
  // Maglev agrees with the TypeScript mirror for clients landing on every backend
  for (const target of SVC.web4.backends) {
    const s = SVC.web4, client = '10.244.7.21', sport = sportFor(s, client, target.id, 33000), f = toService(s, client, sport);
    add({ name: `Maglev: ${client}:${sport} lands on backend ${target.id} as hash.ts predicts`, prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(target), stats: { fwd_new: 1 } });
  }
  {
    const s = SVC.dns4, b = pick(s, C4, 52000), f = toService(s, C4, 52000);
    add({ name: 'UDP/IPv4 to a ClusterIP: DNAT with UDP checksum fixed', prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 } });
    const z = toService(s, C4, 52001, { noChecksum: true }), bz = pick(s, C4, 52001);
    add({ name: 'UDP/IPv4 without checksum (0): translated, checksum stays 0', prog: 'lb_tc_ingress', input: z.input, verdict: TC_ACT_OK, output: z.to(bz), stats: { fwd_new: 1 } });
  }
  {
    const s = SVC.web6, b = pick(s, C6, 41000), f = toService(s, C6, 41000);
    add({ name: 'TCP/IPv6 SYN to a ClusterIP: DNAT, pseudo-header checksum fixed', prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 } });
    const g = toService(s, C6, 41000, ACK_DATA);
    add({ name: 'TCP/IPv6 established flow: conntrack hit', prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); }, input: g.input, verdict: TC_ACT_OK, output: g.to(b), stats: { fwd_ct_hit: 1 }, bench: 'ct-hit' });
  }
  {
    const s = SVC.dns6, b = pick(s, C6, 52000), f = toService(s, C6, 52000);
    add({ name: 'UDP/IPv6 to a ClusterIP: DNAT, mandatory checksum fixed', prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 }, bench: 'first-packet' });
  }
  {
    const s = SVC.web4, b = pick(s, C4, 41500);
    const f = toService(s, C4, 41500, { extra: { ipOptions: Buffer.from([0x01, 0x01, 0x01, 0x00]) } });
    add({ name: 'TCP/IPv4 with IP options: L4 found past the options and translated', prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 } });
    const s6 = SVC.web6, b6 = pick(s6, C6, 41600);
    const e = toService(s6, C6, 41600, { extra: { v6Ext: [{ type: 0, body: Buffer.from([1, 4, 0, 0, 0, 0]) }, { type: 60, body: Buffer.from([1, 4, 0, 0, 0, 0]) }] } });
    add({ name: 'TCP/IPv6 behind hop-by-hop and destination options headers: translated', prog: 'lb_tc_ingress', input: e.input, verdict: TC_ACT_OK, output: e.to(b6), stats: { fwd_new: 1 } });
  }

  // ---- reverse: replies rewritten at tc egress ----
  for (const s of [SVC.web4, SVC.dns4, SVC.web6, SVC.dns6] as TestService[]) {
    const client = s.address.includes(':') ? C6 : C4;
    const f = toService(s, client, 43000), b = pick(s, client, 43000), r = reply(s, b, client, 43000);
    add({
      name: `${s.protocol}/IPv${s.address.includes(':') ? 6 : 4} reply of the backend at tc egress: source rewritten to the frontend`,
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); }, input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
      ...(s === SVC.web4 ? { bench: 'reverse' as const } : {}),
    });
  }
  {
    const s = SVC.web4, f = toService(s, C4, 43100), b = pick(s, C4, 43100), r = reply(s, b, C4, 43100);
    add({ name: 'reply at tc ingress of a flow translated at ingress: left to egress, untouched', prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); }, input: r.input, verdict: TC_ACT_OK, output: 'input', stats: {} });
    // A reply leaves from the address and port its entry recorded (lb_ct_reply_from), without a
    // lookup in lb_revnat: a frontend deleted (or its id reused) under a flow the agent has not
    // orphaned yet cannot change them. An entry of an earlier build (no port recorded) still
    // takes them from lb_revnat, and is passed untouched and counted where that entry is gone.
    const dropRevNat = (dp: Datapath) => { dp.map('lb_revnat').delete(Buffer.from([s.feId, 0, 0, 0])); };
    add({
      name: 'reply whose frontend lost its rev-NAT entry: rewritten from its conntrack entry all the same',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dropRevNat(dp); },
      input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
      after: (dp, c) => c.eq(dp.ct(ctRevKey(s, b, C4, 43100))?.fePort, s.port, 'reverse entry records the frontend port'),
    });
    const earlier = (dp: Datapath) => {
      run(dp, 'lb_tc_ingress', f.input);
      const k = ctRevKey(s, b, C4, 43100), e = dp.ct(k)!;
      dp.setCt('lb_ct', k, { ...e, fePort: undefined, feAddr: undefined });
    };
    add({
      name: 'reply of an entry of an earlier build (no frontend port or address): rewritten from lb_revnat',
      prog: 'lb_tc_egress', setup: earlier, input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
    });
    add({
      name: 'reply of an entry of an earlier build whose frontend lost its rev-NAT entry: passed untouched, counted',
      prog: 'lb_tc_egress', setup: (dp) => { earlier(dp); dropRevNat(dp); },
      input: r.input, verdict: TC_ACT_OK, output: 'input', stats: { drop_revnat_missing: 1 },
    });
  }
  {
    // host-originated: the node itself connects to the VIP; tc egress is the first hook
    const s = SVC.web4, host = '192.168.1.10', f = toService(s, host, 45000), b = pick(s, host, 45000), r = reply(s, b, host, 45000);
    add({
      name: 'host-originated TCP SYN at tc egress: translated, CT flagged REV_AT_INGRESS',
      prog: 'lb_tc_egress', input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 },
      after: (dp, c) => c.eq(dp.ct(ctKey(s, host, 45000))?.flags, LB_CT_F_REV_AT_INGRESS, 'CT flags'),
    });
    add({ name: 'reply to a host-originated flow at tc ingress: source rewritten to the frontend', prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_egress', f.input); }, input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 } });
    add({ name: 'reply to a host-originated flow at tc egress: not ours there, untouched', prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_egress', f.input); }, input: r.input, verdict: TC_ACT_OK, output: 'input', stats: {} });
    // masqueradeAll: the kernel's masquerade (POSTROUTING) is behind a host packet at tc egress, so
    // the SNAT mark would be dead; none is set, the flow is counted (README, limits)
    const m: TestService = { feId: 98, address: '10.96.0.98', port: 80, protocol: 'TCP', scope: 'internal', flags: LB_FE_F_MASQ_ALL, backends: [{ id: 981, address: '10.244.2.98', port: 8080 }] };
    const mf = toService(m, host, 45001);
    add({
      name: 'host-originated SYN at tc egress to a masqueradeAll clusterIP: translated, no SNAT mark (past POSTROUTING), counted host_no_snat',
      prog: 'lb_tc_egress', setup: (dp) => { dp.addService(m); }, mark: 0x10, input: mf.input, verdict: TC_ACT_OK, output: mf.to(m.backends[0]!), markOut: 0x10, stats: { fwd_new: 1, host_no_snat: 1 },
    });
  }

  // ---- ICMP errors about translated flows ----
  {
    const s = SVC.dns4, f = toService(s, C4, 43500), b = pick(s, C4, 43500);
    const quoted = f.to(b).subarray(14, 14 + 28);
    add({
      name: 'ICMP port unreachable from a UDP/IPv4 backend: outer source and quoted destination back to the frontend',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); },
      input: icmpError(b.address, C4, 3, 3, quoted), verdict: TC_ACT_OK,
      output: icmpError(s.address, C4, 3, 3, requote(quoted, s.address, s.port)), stats: { icmp_xlate: 1 },
    });
    const w = SVC.web4, g = toService(w, C4, 43501, { payload: Buffer.alloc(100, 7) }), bw = pick(w, C4, 43501);
    const q2 = g.to(bw).subarray(14);
    const mtu = Buffer.from([0, 0, 0x05, 0x78]);
    add({
      name: 'ICMP fragmentation needed from a router on the way (PMTU): quoted destination rewritten, router source kept',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', g.input); },
      input: icmpError('10.244.0.1', C4, 3, 4, q2, mtu), verdict: TC_ACT_OK,
      output: icmpError('10.244.0.1', C4, 3, 4, requote(q2, w.address, w.port), mtu), stats: { icmp_xlate: 1 },
    });
    const s6 = SVC.dns6, f6 = toService(s6, C6, 43502), b6 = pick(s6, C6, 43502);
    const q6 = f6.to(b6).subarray(14);
    add({
      name: 'ICMPv6 port unreachable from a UDP/IPv6 backend: rewritten, ICMPv6 pseudo-header checksum fixed',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', f6.input); },
      input: icmpError(b6.address, C6, 1, 4, q6), verdict: TC_ACT_OK,
      output: icmpError(s6.address, C6, 1, 4, requote(q6, s6.address, s6.port)), stats: { icmp_xlate: 1 },
    });
    const w6 = SVC.web6, g6 = toService(w6, C6, 43503, { payload: Buffer.alloc(64, 9) }), bw6 = pick(w6, C6, 43503);
    const q7 = g6.to(bw6).subarray(14), mtu6 = Buffer.from([0, 0, 0x05, 0x00]);
    add({
      name: 'ICMPv6 packet too big from a router for a TCP/IPv6 flow: quoted destination rewritten',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', g6.input); },
      input: icmpError('fd00:244::1', C6, 2, 0, q7, mtu6), verdict: TC_ACT_OK,
      output: icmpError('fd00:244::1', C6, 2, 0, requote(q7, w6.address, w6.port), mtu6), stats: { icmp_xlate: 1 },
    });
    add({
      name: 'ICMP error about a flow we never translated: untouched',
      prog: 'lb_tc_egress', input: icmpError(b.address, C4, 3, 3, quoted), verdict: TC_ACT_OK, output: 'input', stats: {},
    });
    const host = '192.168.1.10', h = toService(w, host, 43504), bh = pick(w, host, 43504), qh = h.to(bh).subarray(14, 14 + 28);
    add({
      name: 'ICMP error about a host-originated flow, at tc ingress: rewritten there',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_egress', h.input); },
      input: icmpError(bh.address, host, 3, 3, qh), verdict: TC_ACT_OK,
      output: icmpError(w.address, host, 3, 3, requote(qh, w.address, w.port)), stats: { icmp_xlate: 1 },
    });
    const echo = Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]), Buffer.from('ping')]);
    echo.writeUInt16BE(checksum(echo), 2);
    add({
      name: 'ICMP echo request to a frontend address: not ours, untouched',
      prog: 'lb_tc_ingress', input: frame({ src: C4, dst: SVC.web4.address, l4: { kind: 'raw', proto: 1, bytes: echo } }), verdict: TC_ACT_OK, output: 'input', stats: {},
    });
  }

  // ---- conntrack across backend changes ----
  const SEC = 1_000_000_000n;
  const now = () => process.hrtime.bigint(); // CLOCK_MONOTONIC, the programs' clock
  /** a last_seen `age` ns ago; the programs compare times as signed 64-bit differences, so a time
   * before boot (a VM up for less than the age) is written as its two's complement */
  const ago = (age: bigint) => BigInt.asUintN(64, now() - age);
  /** a TCP flow past its handshake (SYN, then the client's ACK): its entries in lb_ct */
  const established = (dp: Datapath, s: TestService, client: string, sport: number) => {
    run(dp, 'lb_tc_ingress', toService(s, client, sport).input);
    run(dp, 'lb_tc_ingress', toService(s, client, sport, { seq: 1001, ack: 5001, flags: TCP_ACK }).input);
  };
  {
    // issue 10: a SYN without ACK is a connection attempt, never a reply of a translated flow, so
    // the reply path does not look it up (one lb_ct lookup fewer for every pod's SYN). A backend
    // opening a connection from its Service port to a client's port of a live flow is a new flow:
    // before, its SYN left rewritten to the frontend
    const s = SVC.web4, sport = 46500, b = pick(s, C4, sport);
    const synOut = reply(s, b, C4, sport, { flags: TCP_SYN, seq: 9000, ack: 0 });
    add({
      name: 'a SYN from a backend on the reply tuple of a live translated flow: a new flow, not a reply, untouched',
      prog: 'lb_tc_egress', setup: (dp) => established(dp, s, C4, sport),
      input: synOut.input, verdict: TC_ACT_OK, output: 'input', stats: {},
    });
  }
  {
    const s = SVC.web4, client = '10.244.8.8';
    // a flow whose backend the grown table would move elsewhere
    const grown: TestBackend[] = [...s.backends, { id: 14, address: '10.244.4.5', port: 8080 }, { id: 15, address: '10.244.4.6', port: 8080 }];
    const sGrown = { ...s, backends: grown };
    let sport = 46000;
    while (pick(s, client, sport).id === pick(sGrown, client, sport).id) sport++;
    const b = pick(s, client, sport), f = toService(s, client, sport), g = toService(s, client, sport, ACK_DATA);
    add({
      name: 'conntrack hit after the backend set changed: the flow keeps its backend',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dp.replaceBackends(s, grown); },
      input: g.input, verdict: TC_ACT_OK, output: g.to(b), stats: { fwd_ct_hit: 1 },
    });
  }
  {
    const s = SVC.dns4, f = toService(s, C4, 47000), gone = pick(s, C4, 47000);
    const rest = s.backends.filter((x) => x.id !== gone.id), sRest = { ...s, backends: rest };
    const nb = pick(sRest, C4, 47000);
    add({
      name: 'UDP flow whose backend was removed: re-balanced to a live backend (no stale blackhole)',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dp.replaceBackends(s, rest); },
      input: f.input, verdict: TC_ACT_OK, output: toService(sRest, C4, 47000).to(nb), stats: { ct_backend_gone: 1, fwd_new: 1 },
      after: (dp, c) => c.eq(dp.ct(ctKey(s, C4, 47000))?.backendId, nb.id, 'CT entry moved to the new backend'),
    });
  }
  {
    const s = SVC.web4, f = toService(s, C4, 47100), gone = pick(s, C4, 47100), g = toService(s, C4, 47100, ACK_DATA);
    const rest = s.backends.filter((x) => x.id !== gone.id);
    add({
      name: 'TCP data on a flow whose backend was removed: answered with RST|ACK (exact bytes), bounced',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dp.replaceBackends(s, rest); },
      input: g.input, verdict: TC_ACT_REDIRECT, output: expectedRst(g.input), stats: { reset_backend_gone: 1 },
    });
    const sRest = { ...s, backends: rest }, nb = pick(sRest, C4, 47100);
    add({
      name: 'TCP SYN reusing the port of a flow whose backend was removed: a new backend is chosen',
      prog: 'lb_tc_ingress', setup: (dp) => { established(dp, s, C4, 47100); dp.replaceBackends(s, rest); },
      input: f.input, verdict: TC_ACT_OK, output: toService(sRest, C4, 47100).to(nb), stats: { ct_backend_gone: 1, fwd_new: 1 },
    });
  }
  {
    const s = SVC.terminating, client = '10.244.9.9';
    const sport = sportFor(s, client, 131, 48000);
    const f = toService(s, client, sport), g = toService(s, client, sport, ACK_DATA);
    const t131 = { ...backend(s, 131), flags: LB_BE_F_TERMINATING };
    add({
      name: 'terminating backend keeps its established flow (KEP-1669 drain)',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dp.replaceBackends(s, [backend(s, 132)]); dp.upsertBackend(t131, 'TCP'); dp.addMember(s.feId, 131); },
      input: g.input, verdict: TC_ACT_OK, output: g.to(t131), stats: { fwd_ct_hit: 1 },
    });
    add({
      name: 'terminating backend: a new SYN on the same tuple re-selects from the table',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dp.replaceBackends(s, [backend(s, 132)]); dp.upsertBackend(t131, 'TCP'); dp.addMember(s.feId, 131); },
      input: f.input, verdict: TC_ACT_OK, output: f.to(backend(s, 132)), stats: { fwd_new: 1 },
      after: (dp, c) => c.eq(dp.ct(ctKey(s, client, sport))?.backendId, 132, 'CT entry now names the ready backend'),
    });
  }
  {
    const s = SVC.web4, f = toService(s, C4, 49000), b = pick(s, C4, 49000);
    const fin = toService(s, C4, 49000, { seq: 2001, ack: 9001, flags: TCP_FIN | TCP_ACK });
    add({
      name: 'TCP FIN: translated and the CT entry marked CLOSING for the agent GC',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); }, input: fin.input, verdict: TC_ACT_OK, output: fin.to(b), stats: { fwd_ct_hit: 1 },
      after: (dp, c) => c.ok(((dp.ct(ctKey(s, C4, 49000))?.flags ?? 0) & LB_CT_F_CLOSING) !== 0, 'CT entry is CLOSING'),
    });
  }
  {
    // a flow to the frontend that closed (FIN both ways), then the same client port reused
    const s = SVC.web4, sport = 49100, f = toService(s, C4, sport), b = pick(s, C4, sport);
    const fin = toService(s, C4, sport, { seq: 2001, ack: 9001, flags: TCP_FIN | TCP_ACK });
    const finBack = reply(s, b, C4, sport, { seq: 9001, ack: 2002, flags: TCP_FIN | TCP_ACK });
    const closed = (dp: Datapath) => { run(dp, 'lb_tc_ingress', f.input); run(dp, 'lb_tc_ingress', fin.input); run(dp, 'lb_tc_egress', finBack.input); };
    const direct = toService({ ...s, address: b.address, port: b.port }, C4, sport);
    add({
      name: 'direct SYN to a backend on the client port of a closed translated flow: passed, the stale reverse entry dropped',
      prog: 'lb_tc_ingress', setup: closed, input: direct.input, verdict: TC_ACT_OK, output: 'input', stats: {},
      after: (dp, c) => c.eq(dp.ct(ctRevKey(s, b, C4, sport)), undefined, 'no reverse entry left to rewrite the direct connection\'s replies'),
    });
    const synAck = reply(s, b, C4, sport);
    add({
      name: 'reply of that direct connection at tc egress: not rewritten to the frontend',
      prog: 'lb_tc_egress', setup: (dp) => { closed(dp); run(dp, 'lb_tc_ingress', direct.input); }, input: synAck.input, verdict: TC_ACT_OK, output: 'input', stats: {},
    });
    add({
      name: 'SYN to the frontend on the client port of a closed flow: a new flow, both entries written afresh',
      prog: 'lb_tc_ingress', setup: closed, input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 },
      after: (dp, c) => {
        c.eq(((dp.ct(ctKey(s, C4, sport))?.flags ?? 0) & LB_CT_F_CLOSING), 0, 'forward entry no longer CLOSING');
        c.eq(((dp.ct(ctRevKey(s, b, C4, sport))?.flags ?? 0) & LB_CT_F_CLOSING), 0, 'reverse entry no longer CLOSING');
      },
    });
    // The SYN's entries are rewritten in place where their keys exist (lb_ct_overwrite): every
    // field, here over a deleted frontend's orphaned forward entry and another frontend's closed
    // reverse entry, whose orphan port, addresses, ids and flags must all go.
    // (their age is taken at the setup: taken when the rows are built, it had passed the 120 s of a
    // closing entry by this row on the VM's emulated 6.1 at load ~18, which counted ct_expired)
    add({
      name: 'SYN on the client port of an orphaned flow and of another frontend\'s closed flow: both entries rewritten whole',
      prog: 'lb_tc_ingress',
      setup: (dp) => {
        const old = { lastSeen: ago(5n * SEC), feId: 77, flags: LB_CT_F_CLOSING };
        dp.setCt('lb_ct', ctKey(s, C4, sport + 1), { ...old, backendId: 98, flags: LB_CT_F_ORPHAN | LB_CT_F_CLOSING, feAddr: '10.244.77.7', orphanPort: 7777 });
        dp.setCt('lb_ct', ctRevKey(s, pick(s, C4, sport + 1), C4, sport + 1), { ...old, backendId: 97, feAddr: '10.96.77.7', fePort: 7070 });
      },
      input: toService(s, C4, sport + 1).input, verdict: TC_ACT_OK, output: toService(s, C4, sport + 1).to(pick(s, C4, sport + 1)), stats: { ct_backend_gone: 1, fwd_new: 1 },
      after: (dp, c) => {
        // flagged LB_CT_F_SYN: the handshake over the old entries is not complete (ct-syn-reuse.test.ts)
        const want = { backendId: pick(s, C4, sport + 1).id, feId: s.feId, flags: LB_CT_F_SYN, feAddr: s.address, fePort: s.port };
        for (const [what, k] of [['forward', ctKey(s, C4, sport + 1)], ['reverse', ctRevKey(s, pick(s, C4, sport + 1), C4, sport + 1)]] as const) {
          const e = dp.ctIn('lb_ct', k);
          c.ok(e !== undefined && BigInt.asIntN(64, now() - e.lastSeen) < SEC, `${what} entry written now`);
          c.eq(e && { backendId: e.backendId, feId: e.feId, flags: e.flags, feAddr: e.feAddr, fePort: e.fePort, orphanPort: e.orphanPort }, { ...want, orphanPort: undefined }, `${what} entry`);
        }
      },
    });
  }

  // ---- session affinity ----
  {
    const s = SVC.sticky, client = '10.244.6.6', first = pick(s, client, 0);
    const f = toService(s, client, 50001);
    add({
      name: 'affinity, first packet: Maglev over the client address only (port hashed as 0), entry recorded',
      prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(first), stats: { fwd_new: 1 },
      after: (dp, c) => c.eq(dp.affinity(client, s.feId)?.backendId, first.id, 'affinity entry'),
    });
    const other = s.backends.find((x) => x.id !== first.id)!;
    add({
      name: 'affinity hit: the remembered backend wins over Maglev',
      prog: 'lb_tc_ingress', setup: (dp) => dp.setAffinity(client, s.feId, { lastUsed: process.hrtime.bigint(), backendId: other.id }),
      input: f.input, verdict: TC_ACT_OK, output: f.to(other), stats: { affinity_hit: 1, fwd_new: 1 },
    });
    add({
      name: 'affinity to a backend now terminating: not honoured for a new connection, Maglev again',
      prog: 'lb_tc_ingress',
      setup: (dp) => { dp.setAffinity(client, s.feId, { lastUsed: process.hrtime.bigint(), backendId: other.id }); dp.upsertBackend({ ...other, flags: LB_BE_F_TERMINATING }, 'TCP'); },
      input: f.input, verdict: TC_ACT_OK, output: f.to(first), stats: { affinity_expired: 1, fwd_new: 1 },
    });
    add({
      name: 'affinity expired (last used long before the timeout): Maglev again, entry refreshed',
      prog: 'lb_tc_ingress', setup: (dp) => dp.setAffinity(client, s.feId, { lastUsed: 1n, backendId: other.id }),
      input: f.input, verdict: TC_ACT_OK, output: f.to(first), stats: { affinity_expired: 1, fwd_new: 1 },
      after: (dp, c) => {
        const a = dp.affinity(client, s.feId);
        c.eq(a?.backendId, first.id, 'affinity entry re-pointed');
        c.ok((a?.lastUsed ?? 0n) > 1n, 'affinity entry refreshed');
      },
    });
  }

  // ---- session affinity per Service port: the clusterIP, NodePorts and LB IPs share it ----
  // (kube-proxy: iptables' `recent` list / nftables' affinity set is per endpoint chain of the Service
  // port, checked from the clusterIP's and the external chains alike: syncProxyRules, writeServiceToEndpointRules)
  {
    const s = SVC.sticky, np = SVC.stickyNp, loc = SVC.stickyLocal, client = '10.244.6.7';
    const maglev = pick(np, client, 0, true);
    const other = np.backends.find((x) => x.id !== maglev.id)!;
    const f = toService(np, client, 50011);
    add({
      name: 'affinity per Service port: a NodePort honours the entry its clusterIP made, not Maglev',
      prog: 'lb_tc_ingress', setup: (dp) => dp.setAffinity(client, s.feId, { lastUsed: process.hrtime.bigint(), backendId: other.id }),
      input: f.input, verdict: TC_ACT_OK, output: f.to(other), stats: { affinity_hit: 1, fwd_new: 1 },
      after: (dp, c) => c.eq(dp.affinity(client, np.feId), undefined, 'no entry of the NodePort\'s own'),
    });
    add({
      name: 'affinity per Service port: a NodePort\'s first pick is recorded for the group (the clusterIP\'s id)',
      prog: 'lb_tc_ingress', input: f.input, verdict: TC_ACT_OK, output: f.to(maglev), stats: { fwd_new: 1 },
      after: (dp, c) => {
        c.eq(dp.affinity(client, s.feId)?.backendId, maglev.id, 'the group\'s entry');
        c.eq(dp.affinity(client, np.feId), undefined, 'no entry of the NodePort\'s own');
      },
    });
    const l = toService(loc, client, 50012), remote = s.backends.find((x) => x.id !== loc.backends[0]!.id)!;
    add({
      name: 'affinity per Service port, eTP=Local: the group\'s backend is not local, so Maglev picks among the local ones anew',
      prog: 'lb_tc_ingress', setup: (dp) => dp.setAffinity(client, s.feId, { lastUsed: process.hrtime.bigint(), backendId: remote.id }),
      input: l.input, verdict: TC_ACT_OK, output: l.to(loc.backends[0]!), stats: { affinity_expired: 1, fwd_new: 1 },
      after: (dp, c) => c.eq(dp.affinity(client, s.feId)?.backendId, loc.backends[0]!.id, 'the group\'s entry re-pointed'),
    });
  }

  // ---- no backends: refuse at once ----
  {
    const syn4 = toService(SVC.empty4, C4, 51000).input;
    add({ name: 'no backend, TCP/IPv4 SYN: RST|ACK back out of the device (exact bytes)', prog: 'lb_tc_ingress', input: syn4, verdict: TC_ACT_REDIRECT, output: expectedRst(syn4), stats: { reject_no_backend: 1 } });
    const syn6 = toService(SVC.empty6, C6, 51000, { payload: Buffer.from('abc') }).input;
    add({ name: 'no backend, TCP/IPv6 SYN with payload: RST|ACK acking seq + len + 1', prog: 'lb_tc_ingress', input: syn6, verdict: TC_ACT_REDIRECT, output: expectedRst(syn6), stats: { reject_no_backend: 1 } });
    const u4 = toService(SVC.emptyUdp4, C4, 51000).input;
    add({ name: 'no backend, UDP/IPv4: ICMP port unreachable quoting IP header + 8 bytes', prog: 'lb_tc_ingress', input: u4, verdict: TC_ACT_REDIRECT, output: expectedUnreach(u4), stats: { reject_no_backend: 1 } });
    const u6 = toService(SVC.emptyUdp6, C6, 51000).input;
    add({ name: 'no backend, UDP/IPv6: ICMPv6 port unreachable quoting the whole datagram', prog: 'lb_tc_ingress', input: u6, verdict: TC_ACT_REDIRECT, output: expectedUnreach(u6), stats: { reject_no_backend: 1 } });
    const big6 = toService(SVC.emptyUdp6, C6, 51001, { payload: Buffer.alloc(1401, 0x5a) }).input;
    add({ name: 'no backend, big UDP/IPv6: ICMPv6 quote cut so the error fits 1280 bytes', prog: 'lb_tc_ingress', input: big6, verdict: TC_ACT_REDIRECT, output: expectedUnreach(big6), stats: { reject_no_backend: 1 } });
    const rst = toService(SVC.empty4, C4, 51002, { flags: TCP_RST, seq: 5 }).input;
    add({ name: 'no backend, incoming RST: dropped, never answered', prog: 'lb_tc_ingress', input: rst, verdict: TC_ACT_SHOT, output: 'input', stats: {} });
    const host = toService(SVC.empty4, '192.168.1.10', 51003).input;
    add({ name: 'no backend, host-originated SYN at tc egress: RST bounced up the stack', prog: 'lb_tc_egress', input: host, verdict: TC_ACT_REDIRECT, output: expectedRst(host), stats: { reject_no_backend: 1 } });
    const missing = toService(SVC.web4, C4, 51004).input;
    add({
      name: 'frontend whose Maglev table is missing: refused, counted',
      prog: 'lb_tc_ingress', setup: (dp) => dp.deleteTable(SVC.web4.feId + 1000),
      input: missing, verdict: TC_ACT_REDIRECT, output: expectedRst(missing), stats: { drop_table_missing: 1, reject_no_backend: 1 },
    });
  }

  // ---- source ranges ----
  {
    const s = SVC.lb, f = toService(s, EXT, 52100), b = backend(s, 111);
    add({ name: 'loadBalancerSourceRanges: a client inside 192.168.50.0/24 passes', prog: 'lb_tc_ingress', external: true, input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { fwd_new: 1 } });
    const d = toService(s, '192.168.60.7', 52100);
    add({ name: 'loadBalancerSourceRanges: a client outside every range is dropped and counted', prog: 'lb_tc_ingress', external: true, input: d.input, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_source_range: 1 } });
  }

  // ---- broken tables ----
  {
    const z = toService(SVC.zeroSlots, C4, 53000).input;
    add({ name: 'Maglev slot holding backend id 0: dropped and counted, never sent to 0.0.0.0', prog: 'lb_tc_ingress', input: z, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_backend_id_zero: 1 } });
    const m = toService(SVC.web4, C4, 53001).input;
    add({
      name: 'Maglev slot naming a backend lb_backends lacks: dropped and counted',
      prog: 'lb_tc_ingress', setup: (dp) => { for (const b of SVC.web4.backends) dp.deleteBackend(b.id); },
      input: m, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_backend_missing: 1 },
    });
  }

  // ---- what is not ours passes untouched ----
  {
    const unknown = frame({ src: C4, dst: '10.96.0.99', l4: tcp(41000, 80) });
    add({ name: 'packet to no frontend: passed untouched', prog: 'lb_tc_ingress', input: unknown, verdict: TC_ACT_OK, output: 'input', stats: {} });
    const otherPort = frame({ src: C4, dst: SVC.web4.address, l4: tcp(41000, 81) });
    add({ name: 'frontend address on another port: passed untouched', prog: 'lb_tc_ingress', input: otherPort, verdict: TC_ACT_OK, output: 'input', stats: {} });
    const full = toService(SVC.web4, C4, 54000).input;
    const truncL4 = full.subarray(0, 14 + 20 + 10);
    const t = Buffer.from(truncL4); t.writeUInt16BE(30, 16); // IP length consistent, TCP header cut at 10 bytes
    add({ name: 'TCP header cut short: passed untouched, counted malformed', prog: 'lb_tc_ingress', input: t, verdict: TC_ACT_OK, output: 'input', stats: { pass_malformed: 1 } });
    const lying = Buffer.from(full); lying.writeUInt16BE(1500, 16);
    add({ name: 'IPv4 total length beyond the frame: passed untouched, counted malformed', prog: 'lb_tc_ingress', input: lying, verdict: TC_ACT_OK, output: 'input', stats: { pass_malformed: 1 } });
    const badIhl = Buffer.from(full); badIhl[14] = 0x44;
    add({ name: 'IPv4 header length below 20: passed untouched, counted malformed', prog: 'lb_tc_ingress', input: badIhl, verdict: TC_ACT_OK, output: 'input', stats: { pass_malformed: 1 } });
    // BPF_PROG_TEST_RUN refuses an IPv6 frame shorter than its fixed header (EINVAL), so the cut
    // falls in the TCP header, with a payload length that agrees
    const short6 = Buffer.from(toService(SVC.web6, C6, 54000).input.subarray(0, 14 + 40 + 12));
    short6.writeUInt16BE(12, 18);
    add({ name: 'IPv6 with its TCP header cut short: passed untouched, counted malformed', prog: 'lb_tc_ingress', input: short6, verdict: TC_ACT_OK, output: 'input', stats: { pass_malformed: 1 } });
    const lying6 = Buffer.from(toService(SVC.web6, C6, 54000).input);
    lying6.writeUInt16BE(1400, 18);
    add({ name: 'IPv6 payload length beyond the frame: passed untouched, counted malformed', prog: 'lb_tc_ingress', input: lying6, verdict: TC_ACT_OK, output: 'input', stats: { pass_malformed: 1 } });
    const zeroLen = Buffer.from(full); zeroLen.writeUInt16BE(0, 16);
    add({ name: 'IPv4 total length 0 on a frame under 64 KiB (not BIG TCP): passed untouched, counted malformed', prog: 'lb_tc_ingress', input: zeroLen, verdict: TC_ACT_OK, output: 'input', stats: { pass_malformed: 1 } });
    const zeroLen6 = Buffer.from(toService(SVC.web6, C6, 54000).input); zeroLen6.writeUInt16BE(0, 18);
    add({ name: 'IPv6 payload length 0 on a frame under 64 KiB (not BIG TCP): passed untouched, counted malformed', prog: 'lb_tc_ingress', input: zeroLen6, verdict: TC_ACT_OK, output: 'input', stats: { pass_malformed: 1 } });
    const arp = Buffer.concat([Buffer.from('ffffffffffff02000000aa010806', 'hex'), Buffer.alloc(28, 1)]);
    add({ name: 'ARP: passed untouched, nothing counted', prog: 'lb_tc_ingress', input: arp, verdict: TC_ACT_OK, output: 'input', stats: {} });
    const sctp = frame({ src: C4, dst: SVC.web4.address, l4: { kind: 'raw', proto: 132, bytes: Buffer.from('9c40005000000000000000000000000000000000', 'hex') } });
    add({ name: 'SCTP to a frontend address: not translated (documented), passed untouched', prog: 'lb_tc_ingress', input: sctp, verdict: TC_ACT_OK, output: 'input', stats: {} });
  }

  // ---- SNAT through the kernel ----
  {
    const s = SVC.nodePort, ext = '192.168.50.20';
    const rp = sportFor(s, ext, 52), remote = toService(s, ext, rp);
    add({
      name: 'external NodePort, eTP=Cluster, remote backend: DNAT and the SNAT mark set',
      prog: 'lb_tc_ingress', external: true, mark: 0x10, input: remote.input, verdict: TC_ACT_OK, output: remote.to(backend(s, 52)), markOut: 0x10 | SNAT_MARK, stats: { fwd_new: 1 },
      after: (dp, c) => c.eq(dp.ct(ctKey(s, ext, rp))?.flags, LB_CT_F_SNAT, 'CT flags SNAT'),
    });
    const lp = sportFor(s, ext, 51), local = toService(s, ext, lp);
    add({ name: 'external NodePort, local backend: no SNAT (source IP kept)', prog: 'lb_tc_ingress', external: true, input: local.input, verdict: TC_ACT_OK, output: local.to(backend(s, 51)), stats: { fwd_new: 1 } });
    add({ name: 'NodePort reached from inside the node (internal device), remote backend: no SNAT', prog: 'lb_tc_ingress', input: remote.input, verdict: TC_ACT_OK, output: remote.to(backend(s, 52)), stats: { fwd_new: 1 } });
    const w = SVC.web4, pod = '10.244.1.2', hp = sportFor(w, pod, 11), hair = toService(w, pod, hp);
    add({
      name: 'hairpin: a pod balanced to itself gets the SNAT mark',
      prog: 'lb_tc_ingress', input: hair.input, verdict: TC_ACT_OK, output: hair.to(backend(w, 11)), markOut: SNAT_MARK, stats: { fwd_new: 1 },
      after: (dp, c) => c.eq(dp.ct(ctKey(w, pod, hp))?.flags, LB_CT_F_SNAT | LB_CT_F_HAIRPIN, 'CT flags SNAT|HAIRPIN'),
    });
  }

  // ---- XDP ----
  {
    const s = SVC.nodePort, ext = '192.168.50.30';
    const lp = sportFor(s, ext, 51), local = toService(s, ext, lp);
    add({
      name: 'XDP: external NodePort to a local backend translated in XDP, CT recorded',
      prog: 'lb_xdp', external: true, input: local.input, verdict: XDP_PASS, output: local.to(backend(s, 51)), stats: { fwd_new: 1 }, bench: 'xdp-first-packet',
      after: (dp, c) => c.eq(dp.ct(ctKey(s, ext, lp))?.backendId, 51, 'CT entry'),
    });
    const rp = sportFor(s, ext, 52), remote = toService(s, ext, rp);
    add({
      name: 'XDP: SNAT needed (remote backend): left untouched to tc, which picks the same backend',
      prog: 'lb_xdp', external: true, input: remote.input, verdict: XDP_PASS, output: 'input', stats: { xdp_to_tc: 1 },
      after: (dp, c) => {
        c.eq(dp.ct(ctKey(s, ext, rp)), undefined, 'XDP recorded no CT entry');
        const r = dp.run('lb_tc_ingress', remote.input);
        c.eq(r.output.toString('hex'), remote.to(backend(s, 52)).toString('hex'), 'tc ingress translated to the same backend');
        c.eq(r.mark, SNAT_MARK, 'tc set the SNAT mark');
      },
    });
    const d = toService(SVC.lb, '192.168.60.7', 52200);
    add({ name: 'XDP: source range deny dropped in XDP', prog: 'lb_xdp', external: true, input: d.input, verdict: XDP_DROP, output: 'input', stats: { drop_source_range: 1 } });
    const none = toService(SVC.empty4, '192.168.50.31', 52300).input;
    add({ name: 'XDP: no backend left to tc for the RST', prog: 'lb_xdp', external: true, input: none, verdict: XDP_PASS, output: 'input', stats: { xdp_to_tc: 1 } });
    const s6 = SVC.dns6, b6 = pick(s6, C6, 52400), u6 = toService(s6, C6, 52400);
    add({ name: 'XDP: UDP/IPv6 translated with the checksum updated by hand', prog: 'lb_xdp', external: true, input: u6.input, verdict: XDP_PASS, output: u6.to(b6), stats: { fwd_new: 1 } });
    const g = toService(SVC.web4, C4, 52500, ACK_DATA), bw = pick(SVC.web4, C4, 52500), first = toService(SVC.web4, C4, 52500);
    add({ name: 'XDP: established flow, conntrack hit', prog: 'lb_xdp', external: true, setup: (dp) => { dp.run('lb_xdp', first.input); }, input: g.input, verdict: XDP_PASS, output: g.to(bw), stats: { fwd_ct_hit: 1 }, bench: 'xdp-ct-hit' });
  }
  // ---- NodePort compiled for any address (0.0.0.0): answered on this node's addresses only ----
  {
    const s: TestService = { feId: 60, address: '0.0.0.0', port: 30600, protocol: 'TCP', scope: 'external', type: 'NodePort', tableId: 1060, backends: [{ id: 61, address: '10.244.1.61', port: 8080, flags: 2 /* LOCAL */ }] };
    const b = s.backends[0]!;
    const local = toService({ ...s, address: '192.168.1.10' }, EXT, 45000), other = toService({ ...s, address: '192.168.9.9' }, EXT, 45001);
    add({
      name: 'NodePort on 0.0.0.0: a packet to a node address is translated',
      prog: 'lb_tc_ingress', external: true, setup: (dp) => { dp.addService(s); dp.addNodeAddress('192.168.1.10'); },
      input: local.input, verdict: TC_ACT_OK, output: local.to(b), stats: { fwd_new: 1 },
    });
    add({
      name: 'NodePort on 0.0.0.0: a packet to another address on that port passes untouched',
      prog: 'lb_tc_ingress', external: true, setup: (dp) => { dp.addService(s); dp.addNodeAddress('192.168.1.10'); },
      input: other.input, verdict: TC_ACT_OK, output: 'input', stats: {},
    });
    // the reply of a local backend must leave from the node address the client used (the frontend's
    // own address, 0.0.0.0 / ::, is no address a client can talk to), whichever hook translated the
    // first packet; the address comes from the flow's conntrack entry (lb_ct_entry.fe_addr)
    const s6: TestService = { feId: 62, address: '::', port: 30602, protocol: 'UDP', scope: 'external', type: 'NodePort', tableId: 1062, backends: [{ id: 63, address: 'fd00:244:1::63', port: 5353, flags: 2 /* LOCAL */ }] };
    const b6 = s6.backends[0]!;
    const EXT6 = 'fd00:50::7';
    const both = (dp: Datapath) => { dp.addService(s); dp.addService(s6); for (const a of ['192.168.1.10', '192.168.1.11', 'fd00:1::10', 'fd00:1::11']) dp.addNodeAddress(a); };
    for (const [node, sport] of [['192.168.1.10', 45010], ['192.168.1.11', 45011]] as const) {
      const at = { ...s, address: node }, f = toService(at, EXT, sport), r = reply(at, b, EXT, sport);
      for (const prog of ['lb_tc_ingress', 'lb_xdp'] as const) {
        add({
          name: `NodePort on 0.0.0.0, local backend, first packet at ${prog} to ${node}: the reply leaves from ${node}:${s.port}`,
          prog: 'lb_tc_egress', setup: (dp) => { both(dp); dp.setExternal(true); run(dp, prog, f.input); dp.setExternal(false); },
          input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
        });
      }
    }
    for (const [node, sport] of [['fd00:1::10', 45020], ['fd00:1::11', 45021]] as const) {
      const at = { ...s6, address: node }, f = toService(at, EXT6, sport), r = reply(at, b6, EXT6, sport);
      for (const prog of ['lb_tc_ingress', 'lb_xdp'] as const) {
        add({
          name: `NodePort on ::, local backend, UDP/IPv6 first packet at ${prog} to ${node}: the reply leaves from [${node}]:${s6.port}`,
          prog: 'lb_tc_egress', setup: (dp) => { both(dp); dp.setExternal(true); run(dp, prog, f.input); dp.setExternal(false); },
          input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
        });
      }
      const quoted = f.to(b6).subarray(14);
      add({
        name: `NodePort on ::, ICMPv6 port unreachable from the local backend: quoted destination back to [${node}]:${s6.port}`,
        prog: 'lb_tc_egress', setup: (dp) => { both(dp); dp.setExternal(true); run(dp, 'lb_tc_ingress', f.input); dp.setExternal(false); },
        input: icmpError(b6.address, EXT6, 1, 4, quoted), verdict: TC_ACT_OK,
        output: icmpError(node, EXT6, 1, 4, requote(quoted, node, s6.port)), stats: { icmp_xlate: 1 },
      });
    }
    {
      // the reverse entry lost (LRU) and written again from the forward entry on a refresh: it keeps the address
      const at = { ...s, address: '192.168.1.11' }, f = toService(at, EXT, 45030), g = toService(at, EXT, 45030, ACK_DATA), r = reply(at, b, EXT, 45030, { seq: 7001, ack: 1019, flags: TCP_ACK });
      add({
        name: 'NodePort on 0.0.0.0: a reverse entry restored from the forward one keeps the node address the client used',
        prog: 'lb_tc_egress',
        setup: (dp) => {
          both(dp); dp.setExternal(true); run(dp, 'lb_tc_ingress', f.input); run(dp, 'lb_tc_ingress', g.input);
          dp.map('lb_ct').delete(encodeCtKey(ctRevKey(at, b, EXT, 45030)));
          const fwd = dp.ct(ctKey(at, EXT, 45030))!;
          dp.setCt('lb_ct', ctKey(at, EXT, 45030), { ...fwd, lastSeen: fwd.lastSeen - 5_000_000_000n });
          run(dp, 'lb_tc_ingress', g.input); dp.setExternal(false);
        },
        input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
      });
    }
  }
  // ---- issue 7: conntrack and affinity entries that must not carry a flow to the wrong backend ----
  {
    // the backend left this Service but still serves another one: lb_backends still holds its id
    const s = SVC.dns4, f = toService(s, C4, 47200), gone = pick(s, C4, 47200);
    const rest = s.backends.filter((x) => x.id !== gone.id), nb = pick({ ...s, backends: rest }, C4, 47200);
    add({
      name: 'UDP flow whose backend left the frontend but serves another: re-balanced, not sent to it',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dp.replaceBackends(s, rest, { keep: true }); },
      input: f.input, verdict: TC_ACT_OK, output: toService({ ...s, backends: rest }, C4, 47200).to(nb), stats: { ct_backend_gone: 1, fwd_new: 1 },
      after: (dp, c) => c.eq(dp.ct(ctKey(s, C4, 47200))?.backendId, nb.id, 'CT entry moved to a member'),
    });
    const w = SVC.web4, wg = pick(w, C4, 47300), g = toService(w, C4, 47300, ACK_DATA);
    const wrest = w.backends.filter((x) => x.id !== wg.id);
    add({
      name: 'TCP data on a flow whose backend left the frontend but serves another: RST|ACK, bounced',
      prog: 'lb_tc_ingress', setup: (dp) => { established(dp, w, C4, 47300); dp.replaceBackends(w, wrest, { keep: true }); },
      input: g.input, verdict: TC_ACT_REDIRECT, output: expectedRst(g.input), stats: { reset_backend_gone: 1 },
    });
    // the id was freed, then reused for another Service's pod on another port
    const other: TestService = { feId: 71, address: '10.96.0.71', port: 9000, protocol: 'UDP', scope: 'internal', backends: [{ id: gone.id, address: '10.244.7.77', port: 9999 }] };
    add({
      name: 'UDP flow whose backend id was freed and reused by another Service: re-balanced, never to the other pod',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); dp.replaceBackends(s, rest); dp.addService(other); },
      input: f.input, verdict: TC_ACT_OK, output: toService({ ...s, backends: rest }, C4, 47200).to(nb), stats: { ct_backend_gone: 1, fwd_new: 1 },
    });
    add({
      name: 'conntrack entry of another frontend id (ids reused) on this tuple: not honoured',
      prog: 'lb_tc_ingress',
      setup: (dp) => { dp.setCt('lb_ct', ctKey(s, C4, 47200), { lastSeen: now(), backendId: gone.id, feId: 71, flags: 0 }); dp.replaceBackends(s, rest, { keep: true }); dp.addService({ ...other, backends: [gone] }); },
      input: f.input, verdict: TC_ACT_OK, output: toService({ ...s, backends: rest }, C4, 47200).to(nb), stats: { ct_backend_gone: 1, fwd_new: 1 },
    });
  }
  {
    const s = SVC.sticky, client = '10.244.6.7', f = toService(s, client, 50101);
    const left = s.backends.find((x) => x.id !== pick(s, client, 0).id)!;
    const rest = s.backends.filter((x) => x.id !== left.id), want = pick({ ...s, backends: rest }, client, 0);
    add({
      name: 'affinity to a backend that left the frontend (still serving another): picks anew',
      prog: 'lb_tc_ingress',
      setup: (dp) => { dp.setAffinity(client, s.feId, { lastUsed: now(), backendId: left.id }); dp.replaceBackends(s, rest, { keep: true }); },
      input: f.input, verdict: TC_ACT_OK, output: toService({ ...s, backends: rest }, client, 50101).to(want), stats: { affinity_expired: 1, fwd_new: 1 },
      after: (dp, c) => c.eq(dp.affinity(client, s.feId)?.backendId, want.id, 'affinity entry re-pointed'),
    });
  }
  {
    // lifetimes: an entry idle past its timeout is a miss
    const s = SVC.dns4, f = toService(s, C4, 47400), b = pick(s, C4, 47400);
    const stale = s.backends.find((x) => x.id !== b.id)!;
    add({
      name: 'UDP conntrack entry idle past 60 s: expired on lookup, Maglev again, counted',
      prog: 'lb_tc_ingress', setup: (dp) => dp.setCt('lb_ct', ctKey(s, C4, 47400), { lastSeen: ago(61n * SEC), backendId: stale.id, feId: s.feId, flags: 0 }),
      input: f.input, verdict: TC_ACT_OK, output: f.to(b), stats: { ct_expired: 1, fwd_new: 1 },
    });
    const w = SVC.web4, wb = pick(w, C4, 47500), wother = w.backends.find((x) => x.id !== wb.id)!, g = toService(w, C4, 47500, ACK_DATA);
    add({
      name: 'TCP conntrack entry idle for an hour: still alive (6 h), kept on its backend and refreshed',
      prog: 'lb_tc_ingress', setup: (dp) => { dp.setCt('lb_ct', ctKey(w, C4, 47500), { lastSeen: ago(3600n * SEC), backendId: wother.id, feId: w.feId, flags: 0 }); },
      input: g.input, verdict: TC_ACT_OK, output: g.to(wother), stats: { fwd_ct_hit: 1, ct_rev_restored: 1 },
      after: (dp, c) => c.ok(BigInt.asIntN(64, now() - (dp.ct(ctKey(w, C4, 47500))?.lastSeen ?? 0n)) < 10n * SEC, 'last_seen refreshed'),
    });
    const fin = toService(w, C4, 47501, ACK_DATA);
    add({
      name: 'TCP conntrack entry that saw FIN, idle past 120 s: expired, the packet balanced anew',
      prog: 'lb_tc_ingress', setup: (dp) => { dp.setCt('lb_ct', ctKey(w, C4, 47501), { lastSeen: ago(121n * SEC), backendId: 99, feId: w.feId, flags: LB_CT_F_CLOSING }); },
      input: fin.input, verdict: TC_ACT_OK, output: fin.to(pick(w, C4, 47501)), stats: { ct_expired: 1, fwd_new: 1 },
    });
    let last = 0n;
    add({
      name: 'conntrack hit on an entry refreshed under a second ago: last_seen not written (no per-packet store)',
      prog: 'lb_tc_ingress', setup: (dp) => { established(dp, w, C4, 47502); last = now() - SEC / 4n; dp.setCt('lb_ct', ctKey(w, C4, 47502), { ...dp.ct(ctKey(w, C4, 47502))!, lastSeen: last }); },
      input: toService(w, C4, 47502, ACK_DATA).input, verdict: TC_ACT_OK, output: toService(w, C4, 47502, ACK_DATA).to(pick(w, C4, 47502)), stats: { fwd_ct_hit: 1 },
      after: (dp, c) => c.eq(dp.ct(ctKey(w, C4, 47502))?.lastSeen, last, 'last_seen untouched'),
    });
  }
  {
    // a reverse entry lost to LRU eviction comes back from the forward entry
    const w = SVC.web4, sport = 47600, b = pick(w, C4, sport), r = reply(w, b, C4, sport, { flags: TCP_ACK, seq: 5001, ack: 1020 });
    const lose = (dp: Datapath) => {
      established(dp, w, C4, sport);
      dp.deleteCt('lb_ct', ctRevKey(w, b, C4, sport));
      dp.setCt('lb_ct', ctKey(w, C4, sport), { ...dp.ct(ctKey(w, C4, sport))!, lastSeen: ago(2n * SEC) });
    };
    add({
      name: 'client packet of a flow whose reverse entry was evicted: the reverse entry is written again',
      prog: 'lb_tc_ingress', setup: lose, input: toService(w, C4, sport, ACK_DATA).input, verdict: TC_ACT_OK, output: toService(w, C4, sport, ACK_DATA).to(b),
      stats: { fwd_ct_hit: 1, ct_rev_restored: 1 },
      after: (dp, c) => c.eq(dp.ctIn('lb_ct', ctRevKey(w, b, C4, sport))?.feId, w.feId, 'reverse entry back'),
    });
    add({
      name: 'backend reply after its reverse entry was evicted and the client sent again: rewritten to the frontend',
      prog: 'lb_tc_egress', setup: (dp) => { lose(dp); run(dp, 'lb_tc_ingress', toService(w, C4, sport, ACK_DATA).input); },
      input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
    });
  }
  {
    // a SYN flood to a NodePort: new flows wait in lb_ct_syn, established ones in lb_ct stay put
    const s = SVC.nodePort, ext = '192.168.50.40', sport = sportFor(s, ext, 51), b = backend(s, 51);
    add({
      name: 'SYN flood to a NodePort: 300 SYNs write nothing into lb_ct, the established flow keeps its entries',
      prog: 'lb_tc_ingress', external: true,
      setup: (dp) => {
        established(dp, s, ext, sport);
        for (let i = 0; i < 300; i++) run(dp, 'lb_tc_ingress', toService(s, `198.51.100.${i % 250}`, 20000 + i).input);
      },
      input: toService(s, ext, sport, ACK_DATA).input, verdict: TC_ACT_OK, output: toService(s, ext, sport, ACK_DATA).to(b), stats: { fwd_ct_hit: 1 },
      after: (dp, c) => {
        c.eq(dp.map('lb_ct').count(), 2, 'lb_ct holds the established flow only');
        c.eq(dp.optMap('lb_ct_syn')?.count(), 600, 'the SYNs wait in lb_ct_syn');
      },
    });
    const syn = toService(s, ext, sport + 1), ack = toService(s, ext, sport + 1, { seq: 1001, ack: 5001, flags: TCP_ACK });
    const bb = pick(s, ext, sport + 1);
    add({
      name: 'the handshake\'s ACK moves the flow from lb_ct_syn to lb_ct',
      prog: 'lb_tc_ingress', external: true, setup: (dp) => { run(dp, 'lb_tc_ingress', syn.input); },
      input: ack.input, verdict: TC_ACT_OK, output: ack.to(bb), ...(bb.id === 52 ? { markOut: SNAT_MARK } : {}), stats: { fwd_ct_hit: 1 },
      after: (dp, c) => {
        c.eq(dp.ctIn('lb_ct', ctKey(s, ext, sport + 1))?.backendId, bb.id, 'forward entry in lb_ct');
        c.eq(dp.ctIn('lb_ct', ctRevKey(s, bb, ext, sport + 1))?.feId, s.feId, 'reverse entry in lb_ct');
        c.eq(dp.optMap('lb_ct_syn')?.count() ?? 0, 0, 'lb_ct_syn emptied');
      },
    });
    // The backend still holds the tuple in TIME_WAIT (the node's masquerade gave the new flow a
    // source port an older flow used) and rejects the SYN by PAWS: it answers a bare ACK of the
    // old connection (tcp_timewait_state_process). The client must see that ACK from the
    // NodePort, so that it answers with the RST that ends the TIME_WAIT; untranslated, it comes
    // from a pod address the client knows nothing of, and every retransmitted SYN meets the
    // same ACK until the TIME_WAIT ends (60 s).
    const sp = sportFor(s, ext, 52, sport + 2), b52 = backend(s, 52);
    const twAck = reply(s, b52, ext, sp, { flags: TCP_ACK, seq: 7001, ack: 4001 });
    add({
      name: 'a TIME_WAIT backend\'s bare ACK to a SYN that waits in lb_ct_syn: rewritten to the NodePort',
      prog: 'lb_tc_egress', external: true, setup: (dp) => { run(dp, 'lb_tc_ingress', toService(s, ext, sp).input); },
      input: twAck.input, verdict: TC_ACT_OK, output: twAck.output, stats: { rev_nat: 1 },
    });
    const rst = toService(s, ext, sp, { seq: 4001, ack: 0, flags: TCP_RST });
    add({
      name: 'the client\'s RST answering that ACK reaches the backend, and the flow leaves lb_ct_syn as closing',
      prog: 'lb_tc_ingress', external: true,
      setup: (dp) => { run(dp, 'lb_tc_ingress', toService(s, ext, sp).input); run(dp, 'lb_tc_egress', twAck.input); },
      input: rst.input, verdict: TC_ACT_OK, output: rst.to(b52), markOut: SNAT_MARK, stats: { fwd_ct_hit: 1 },
      after: (dp, c) => {
        c.eq(dp.ctIn('lb_ct', ctKey(s, ext, sp))?.flags, LB_CT_F_SNAT | LB_CT_F_CLOSING, 'forward entry in lb_ct, closing');
        c.eq(dp.optMap('lb_ct_syn')?.count() ?? 0, 0, 'lb_ct_syn emptied');
      },
    });
  }
  {
    // one client ip:port to two frontends that share a backend
    const w = SVC.web4, sport = sportFor(w, C4, 11, 47700), b = backend(w, 11);
    const twin: TestService = { feId: 72, address: '10.96.0.72', port: 80, protocol: 'TCP', scope: 'internal', backends: [{ ...b }] };
    const second = toService(twin, C4, sport);
    const setup = (dp: Datapath) => { dp.addService(twin); established(dp, w, C4, sport); };
    add({
      name: 'one client ip:port to a second frontend sharing the backend: refused and counted, the first flow\'s reverse entry kept',
      prog: 'lb_tc_ingress', setup, input: second.input, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_ct_clash: 1 },
      after: (dp, c) => c.eq(dp.ct(ctRevKey(w, b, C4, sport))?.feId, w.feId, 'reverse entry still the first frontend\'s'),
    });
    const r = reply(w, b, C4, sport, { flags: TCP_ACK, seq: 5001, ack: 1001 });
    add({
      name: 'after such a refused second flow, the first flow\'s replies still come from its own frontend',
      prog: 'lb_tc_egress', setup: (dp) => { setup(dp); run(dp, 'lb_tc_ingress', second.input); }, input: r.input, verdict: TC_ACT_OK, output: r.output, stats: { rev_nat: 1 },
    });
    const fin = toService(w, C4, sport, { seq: 2001, ack: 9001, flags: TCP_FIN | TCP_ACK });
    const finBack = reply(w, b, C4, sport, { seq: 9001, ack: 2002, flags: TCP_FIN | TCP_ACK });
    add({
      name: 'one client ip:port to the second frontend once the first flow closed (FIN both ways): translated',
      prog: 'lb_tc_ingress', setup: (dp) => { setup(dp); run(dp, 'lb_tc_ingress', fin.input); run(dp, 'lb_tc_egress', finBack.input); }, input: second.input, verdict: TC_ACT_OK, output: second.to(b), stats: { fwd_new: 1 },
    });
    // The lab's rare connect timeout (connect-loop.run.ts, its report): the client's kernel reused
    // the port of a closed flow to the first frontend for a SYN to the second (another destination
    // to it), the new flow waits in lb_ct_syn, and the backend's SYN-ACK found the closed flow's
    // reverse entry in lb_ct first: it left from the first frontend, the client answered with a
    // RST, and so again for the retransmitted SYN. A handshake reply prefers the flow in its handshake.
    const closed = (dp: Datapath) => { setup(dp); run(dp, 'lb_tc_ingress', fin.input); run(dp, 'lb_tc_egress', finBack.input); };
    const synAck = reply(twin, b, C4, sport, { flags: TCP_SYN | TCP_ACK, seq: 8001, ack: 1001 });
    add({
      name: 'the backend\'s SYN-ACK to the second frontend\'s SYN on the port of a closed flow to the first: from the second frontend',
      prog: 'lb_tc_egress', setup: (dp) => { closed(dp); run(dp, 'lb_tc_ingress', second.input); },
      input: synAck.input, verdict: TC_ACT_OK, output: synAck.output, stats: { rev_nat: 1 },
    });
    add({
      name: 'XDP: the clashing second flow is dropped in XDP',
      prog: 'lb_xdp', external: true, setup, input: second.input, verdict: XDP_DROP, output: 'input', stats: { drop_ct_clash: 1 },
    });
    // the first flow still in its handshake (lb_ct_syn): the second SYN's reverse insert finds it
    const synOnly = (dp: Datapath) => { dp.addService(twin); run(dp, 'lb_tc_ingress', toService(w, C4, sport).input); };
    for (const prog of ['lb_tc_ingress', 'lb_xdp'] as const) {
      add({
        name: `${prog === 'lb_xdp' ? 'XDP: ' : ''}one client ip:port to a second frontend while the first flow waits in lb_ct_syn: refused, nothing written, the first flow's reverse entry kept`,
        prog, ...(prog === 'lb_xdp' ? { external: true } : {}), setup: synOnly, input: second.input,
        verdict: prog === 'lb_xdp' ? XDP_DROP : TC_ACT_SHOT, output: 'input', stats: { drop_ct_clash: 1 },
        after: (dp, c) => {
          c.eq(dp.ctIn('lb_ct_syn', ctRevKey(w, b, C4, sport))?.feId, w.feId, 'reverse entry in lb_ct_syn still the first frontend\'s');
          c.eq(dp.ctIn('lb_ct_syn', ctKey(twin, C4, sport)), undefined, 'no forward entry of the refused flow');
          c.eq(dp.optMap('lb_ct_syn')?.count() ?? 0, 2, 'lb_ct_syn holds only the first flow');
        },
      });
    }
    // An ICMP error about the second frontend's SYN on the port of a closed flow to the first (a
    // router's "fragmentation needed", an unreachable next hop): like the SYN-ACK above, it belongs
    // to the flow in its handshake, not to the closed flow's reverse entry in lb_ct.
    const mtu = Buffer.from([0, 0, 0x05, 0x78]);
    const synQuote = second.to(b).subarray(14, 14 + 40);
    add({
      name: 'ICMP error about the second frontend\'s SYN on the port of a closed flow to the first: quoted destination the second frontend',
      prog: 'lb_tc_egress', setup: (dp) => { closed(dp); run(dp, 'lb_tc_ingress', second.input); },
      input: icmpError('10.244.0.1', C4, 3, 4, synQuote, mtu), verdict: TC_ACT_OK,
      output: icmpError('10.244.0.1', C4, 3, 4, requote(synQuote, twin.address, twin.port), mtu), stats: { icmp_xlate: 1 },
    });
    // A SYN the backend refused with a RST: that flow is over (its lb_ct_syn entries closing), and
    // the client's next connection on the same port to another frontend of that backend is a new
    // flow, as after a FIN (the lb_ct row above), not a clash held for the 60 s handshake timeout.
    const synRst = reply(w, b, C4, sport, { flags: TCP_RST | TCP_ACK, seq: 0, ack: 1001 });
    add({
      name: 'one client ip:port to the second frontend after the backend refused the first frontend\'s SYN with a RST: translated',
      prog: 'lb_tc_ingress', setup: (dp) => { synOnly(dp); run(dp, 'lb_tc_egress', synRst.input); },
      input: second.input, verdict: TC_ACT_OK, output: second.to(b), stats: { fwd_new: 1 },
      after: (dp, c) => {
        c.eq(dp.ctIn('lb_ct_syn', ctRevKey(twin, b, C4, sport))?.feId, twin.feId, 'reverse entry in lb_ct_syn the second frontend\'s');
        c.eq(dp.ctIn('lb_ct_syn', ctKey(twin, C4, sport))?.backendId, b.id, 'forward entry of the second flow in lb_ct_syn');
      },
    });
    const synAck2 = reply(twin, b, C4, sport, { flags: TCP_SYN | TCP_ACK, seq: 8001, ack: 1001 });
    add({
      name: 'and the backend\'s SYN-ACK to that second SYN leaves from the second frontend',
      prog: 'lb_tc_egress', setup: (dp) => { synOnly(dp); run(dp, 'lb_tc_egress', synRst.input); run(dp, 'lb_tc_ingress', second.input); },
      input: synAck2.input, verdict: TC_ACT_OK, output: synAck2.output, stats: { rev_nat: 1 },
    });
  }
  {
    // the same for UDP, whose entries live in lb_ct only
    const d = SVC.dns4, sport = sportFor(d, C4, 21, 47800), b = backend(d, 21);
    const twin: TestService = { feId: 73, address: '10.96.0.73', port: 53, protocol: 'UDP', scope: 'internal', backends: [{ ...b }] };
    const second = toService(twin, C4, sport);
    add({
      name: 'UDP: one client ip:port to a second frontend sharing the backend: refused and counted, the first flow\'s reverse entry kept',
      prog: 'lb_tc_ingress', setup: (dp) => { dp.addService(twin); run(dp, 'lb_tc_ingress', toService(d, C4, sport).input); },
      input: second.input, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_ct_clash: 1 },
      after: (dp, c) => c.eq(dp.ct(ctRevKey(d, b, C4, sport))?.feId, d.feId, 'reverse entry still the first frontend\'s'),
    });
  }
  // ---- issue 7: IP fragments, translated like their first fragment ----
  {
    const big = { payload: Buffer.alloc(100, 0x61) };
    for (const [s, client] of [[SVC.dns4, C4], [SVC.dns6, C6]] as Array<[TestService, string]>) {
      const v = s.address.includes(':') ? 'IPv6' : 'IPv4', sport = 54100, b = pick(s, client, sport);
      const f = toService(s, client, sport, big);
      const inFr = fragment(f.input, 64, 0x1234), outFr = fragment(f.to(b), 64, 0x1234);
      add({
        name: `UDP/${v} datagram in two fragments to a ClusterIP: the first translated by its ports and remembered`,
        prog: 'lb_tc_ingress', input: inFr[0]!, verdict: TC_ACT_OK, output: outFr[0]!, stats: { fwd_new: 1 },
        after: (dp, c) => c.eq(dp.map('lb_frags').count(), 1, 'lb_frags holds the datagram'),
      });
      add({
        name: `UDP/${v}: the later fragment (no UDP header) translated as the first was: addresses only`,
        prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', inFr[0]!); }, input: inFr[1]!, verdict: TC_ACT_OK, output: outFr[1]!,
        stats: { fwd_ct_hit: 1, frag_xlate: 1 },
      });
      add({
        name: `UDP/${v}: a later fragment whose first was not seen: passed untouched, counted`,
        prog: 'lb_tc_ingress', input: inFr[1]!, verdict: TC_ACT_OK, output: 'input', stats: { pass_fragment: 1 },
      });
      add({
        name: `UDP/${v}: a later fragment of another datagram (other id) is not taken for this one`,
        prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', inFr[0]!); }, input: fragment(f.input, 64, 0x1235)[1]!, verdict: TC_ACT_OK, output: 'input', stats: { pass_fragment: 1 },
      });
      const r = reply(s, b, client, sport, big);
      const rIn = fragment(r.input, 64, 0x4321), rOut = fragment(r.output, 64, 0x4321);
      add({
        name: `UDP/${v} reply in fragments at tc egress: the first leaves with the frontend as source`,
        prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); }, input: rIn[0]!, verdict: TC_ACT_OK, output: rOut[0]!, stats: { rev_nat: 1 },
      });
      add({
        name: `UDP/${v} reply in fragments at tc egress: the later fragment leaves with the frontend as source too`,
        prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); run(dp, 'lb_tc_egress', rIn[0]!); }, input: rIn[1]!, verdict: TC_ACT_OK, output: rOut[1]!,
        stats: { rev_nat: 1, frag_xlate: 1 },
      });
      add({
        name: `XDP: UDP/${v} fragments are left to tc, untouched`,
        prog: 'lb_xdp', external: true, input: inFr[0]!, verdict: XDP_PASS, output: 'input', stats: {},
        after: (dp, c) => c.eq(dp.run('lb_xdp', inFr[1]!).output.toString('hex'), inFr[1]!.toString('hex'), 'the later fragment too'),
      });
    }
    const e = toService(SVC.emptyUdp4, C4, 54200, big), ef = fragment(e.input, 64, 77);
    add({
      name: 'fragments to a frontend without backends: the first refused (ICMP), the later ones dropped',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', ef[0]!); }, input: ef[1]!, verdict: TC_ACT_SHOT, output: 'input', stats: {},
    });
    const w = SVC.web4, tb = pick(w, C4, 54300), tf = toService(w, C4, 54300, { seq: 1001, ack: 7001, flags: TCP_ACK, payload: Buffer.alloc(120, 0x62) });
    const tIn = fragment(tf.input, 80, 9), tOut = fragment(tf.to(tb), 80, 9);
    add({
      name: 'TCP/IPv4 segment in fragments: every fragment translated alike',
      prog: 'lb_tc_ingress', setup: (dp) => { established(dp, w, C4, 54300); run(dp, 'lb_tc_ingress', tIn[0]!); }, input: tIn[1]!, verdict: TC_ACT_OK, output: tOut[1]!,
      stats: { fwd_ct_hit: 1, frag_xlate: 1 },
      after: (dp, c) => c.eq(dp.run('lb_tc_ingress', tIn[0]!).output.toString('hex'), tOut[0]!.toString('hex'), 'the first fragment (TCP checksum over the datagram)'),
    });
  }

  // ---- issue 7: ICMP errors toward the frontend about its replies (PMTU for Service responses) ----
  {
    const mtu = Buffer.from([0, 0, 0x05, 0x78]);
    const s = SVC.dns4, sport = 54400, b = pick(s, C4, sport), f = toService(s, C4, sport);
    const seen = reply(s, b, C4, sport, { payload: Buffer.alloc(200, 1) }).output.subarray(14); // the reply as it left the node
    add({
      name: 'ICMP fragmentation needed from a router toward the frontend about a UDP/IPv4 reply: to the backend, quote rewritten',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); },
      input: icmpError('192.168.50.1', s.address, 3, 4, seen.subarray(0, 28), mtu), verdict: TC_ACT_OK,
      output: icmpError('192.168.50.1', b.address, 3, 4, requote(seen.subarray(0, 28), b.address, b.port, 'src'), mtu), stats: { icmp_xlate: 1 },
    });
    add({
      name: 'ICMP port unreachable from the client about a UDP/IPv4 reply: to the backend',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); },
      input: icmpError(C4, s.address, 3, 3, seen), verdict: TC_ACT_OK,
      output: icmpError(C4, b.address, 3, 3, requote(seen, b.address, b.port, 'src')), stats: { icmp_xlate: 1 },
    });
    add({
      name: 'ICMP error toward the frontend quoting a reply of no flow of ours: untouched',
      prog: 'lb_tc_ingress', input: icmpError('192.168.50.1', s.address, 3, 4, seen.subarray(0, 28), mtu), verdict: TC_ACT_OK, output: 'input', stats: {},
    });
    add({
      name: 'ICMP error toward the frontend at tc egress (a flow translated at ingress): not ours there, untouched',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', f.input); }, input: icmpError('192.168.50.1', s.address, 3, 4, seen.subarray(0, 28), mtu), verdict: TC_ACT_OK, output: 'input', stats: {},
    });
    const w6 = SVC.web6, p6 = 54401, b6 = pick(w6, C6, p6), g6 = toService(w6, C6, p6);
    const hop = [{ type: 0, body: Buffer.from([1, 4, 0, 0, 0, 0]) }];
    const seen6 = frame({ src: w6.address, dst: C6, l4: tcp(w6.port, p6, { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001, payload: Buffer.alloc(64, 2) }), v6Ext: hop }).subarray(14);
    const mtu6 = Buffer.from([0, 0, 0x05, 0x00]);
    add({
      name: 'ICMPv6 packet too big toward the frontend about a TCP/IPv6 SYN-ACK behind a hop-by-hop header: to the backend, pseudo-header checksum fixed',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', g6.input); },
      input: icmpError('fd00:50::1', w6.address, 2, 0, seen6, mtu6), verdict: TC_ACT_OK,
      output: icmpError('fd00:50::1', b6.address, 2, 0, requote(seen6, b6.address, b6.port, 'src'), mtu6), stats: { icmp_xlate: 1 },
    });
    const d6 = SVC.dns6, q6p = 54402, bd6 = pick(d6, C6, q6p), h6 = toService(d6, C6, q6p, { extra: { v6Ext: [{ type: 60, body: Buffer.from([1, 4, 0, 0, 0, 0]) }] } });
    const quoted6 = h6.to(bd6).subarray(14);
    add({
      name: 'ICMPv6 port unreachable from a backend quoting a datagram with a destination options header: rewritten to the frontend',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_ingress', h6.input); },
      input: icmpError(bd6.address, C6, 1, 4, quoted6), verdict: TC_ACT_OK,
      output: icmpError(d6.address, C6, 1, 4, requote(quoted6, d6.address, d6.port)), stats: { icmp_xlate: 1 },
    });
    const host = '192.168.1.10', w = SVC.web4, hp = 54403, hb = pick(w, host, hp), hf = toService(w, host, hp);
    const hseen = reply(w, hb, host, hp).output.subarray(14, 14 + 28);
    add({
      name: 'ICMP error the host sends toward the frontend about a reply of a host-originated flow: at tc egress, to the backend',
      prog: 'lb_tc_egress', setup: (dp) => { run(dp, 'lb_tc_egress', hf.input); },
      input: icmpError(host, w.address, 3, 3, hseen), verdict: TC_ACT_OK,
      output: icmpError(host, hb.address, 3, 3, requote(hseen, hb.address, hb.port, 'src')), stats: { icmp_xlate: 1 },
    });
  }

  // ---- issue 7: refusals are rate-limited per CPU ----
  {
    const SECS = 1_000_000_000n;
    const u4 = toService(SVC.emptyUdp4, C4, 54500).input, syn = toService(SVC.empty4, C4, 54501).input;
    // the last refill an hour ahead: no refill can happen during the row, however slow the machine
    const empty = (dp: Datapath) => dp.setRejectBucket({ tokens: 0n, lastNs: process.hrtime.bigint() + 3600n * SECS });
    add({ name: 'no backend, UDP/IPv4, the refusal bucket empty: no ICMP sent, dropped, counted', prog: 'lb_tc_ingress', setup: empty, input: u4, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_reject_limit: 1 } });
    add({ name: 'no backend, TCP SYN, the refusal bucket empty: no RST sent, dropped, counted', prog: 'lb_tc_ingress', setup: empty, input: syn, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_reject_limit: 1 } });
    add({
      name: 'no backend, TCP SYN, the bucket emptied 10 s ago: refilled, RST sent',
      prog: 'lb_tc_ingress', setup: (dp) => dp.setRejectBucket({ tokens: 0n, lastNs: process.hrtime.bigint() - 10n * SECS }), input: syn, verdict: TC_ACT_REDIRECT, output: expectedRst(syn), stats: { reject_no_backend: 1 },
    });
    const w = SVC.web4, gone = pick(w, C4, 54502), g = toService(w, C4, 54502, ACK_DATA);
    add({
      name: 'TCP data on a flow whose backend was removed, the refusal bucket empty: no RST, dropped, counted',
      prog: 'lb_tc_ingress', setup: (dp) => { run(dp, 'lb_tc_ingress', toService(w, C4, 54502).input); dp.replaceBackends(w, w.backends.filter((x) => x.id !== gone.id)); empty(dp); },
      input: g.input, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_reject_limit: 1 },
    });
  }
  return rows;
}
