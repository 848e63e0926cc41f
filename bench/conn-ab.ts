// A TCP connection's packets through tc, A/B (session 29): each side runs C connections to a ClusterIP
// (SVC.web4) in BPF test runs, packet by packet, one test run a packet: the client's SYN (lb_tc_ingress),
// the backend's SYN-ACK (lb_tc_egress, the reply undone), the client's handshake ACK (ingress: its
// entries move from lb_ct_syn to lb_ct), the client's FIN (ingress: the entry flagged closing); each
// class's kernel-measured run time is summed over the C connections. Sides alternate pair by pair, the
// order within a pair too; per class it prints each side's median sum and the per-pair ratios A/B
// (min / p25 / median / p75 / max). What connrate's KBP_CONNRATE_PROFILE reads in real traffic, without
// the traffic: the programs' own work per packet class, interleaved closely enough to see ~5 %. Its
// maps are the object's own sizes over the test services (no 10,000 Services: the frontend lookup and
// Maglev read stay warm), so it shows instructions, helper calls and lookups, not the cold touches of
// a large node (docs/perf-log.md sessions 21-23).
// KBP_CONN_AB_HOOK=xdp: the client's packets through lb_xdp instead, to a NodePort (SVC.nodePort) from
// outside, each flow on its local backend (no SNAT: XDP translates it).
// KBP_CONN_AB_A_MAP_MAX / KBP_CONN_AB_B_MAP_MAX=LIST: a side's map sizes as --bpf-map-max takes them
// (e.g. `lb_ct=16384,lb_ct_syn=16384`: the same object at other sizes compares sizes alone).
//   node --import=tsx bench/conn-ab.ts [PAIRS] [OBJECT_A] [OBJECT_B]   (root; C: KBP_CONN_AB_C, 50)
// OBJECT_A defaults to bpf/kbp.bpf.o, OBJECT_B to KBP_BENCH_BASE_OBJECT. Run it in both orders, as
// chain-ab: the side loaded first may read a few % off by itself.
import { Datapath, OBJECT_PATH, SVC, TC_ACT_OK, XDP_PASS } from '../testing/datapath.js';
import { BASE_SERVICES, pick, reply, toService } from '../testing/datapath-rows.js';
import { TCP_ACK, TCP_FIN, parse } from '../testing/packets.js';
import { parseMapSizes } from '../src/dataplane/bpf/map-sizes.js';
import { pairRatios, quantile } from './ab.js';

const pairs = Number(process.argv[2] ?? 100);
const objA = process.argv[3] ?? OBJECT_PATH;
const objB = process.argv[4] ?? process.env.KBP_BENCH_BASE_OBJECT;
if (!objB) throw new Error('conn-ab: no OBJECT_B (argument 3 or KBP_BENCH_BASE_OBJECT)');
const C = Number(process.env.KBP_CONN_AB_C ?? 50);
if (!(Number.isInteger(pairs) && pairs > 0 && Number.isInteger(C) && C > 0 && C <= 200)) throw new Error('conn-ab: PAIRS a positive integer, KBP_CONN_AB_C 1-200');

const CLASSES = ['SYN', 'SYN-ACK', 'ACK', 'FIN'] as const;
const xdp = process.env.KBP_CONN_AB_HOOK === 'xdp';
if (process.env.KBP_CONN_AB_HOOK && !xdp) throw new Error('conn-ab: KBP_CONN_AB_HOOK is xdp or unset');
const fe = xdp ? SVC.nodePort : SVC.web4;
const clientProg = xdp ? 'lb_xdp' : 'lb_tc_ingress', clientOk = xdp ? XDP_PASS : TC_ACT_OK;
const mapSizes = (side: 'A' | 'B') => {
  const v = process.env[`KBP_CONN_AB_${side}_MAP_MAX`];
  return v ? parseMapSizes(v.split(','), `KBP_CONN_AB_${side}_MAP_MAX`) : undefined;
};
const sides = [new Datapath(objA, 'a', { mapSizes: mapSizes('A') }), new Datapath(objB, 'b', { mapSizes: mapSizes('B') })];
let next = 0;

/** C new connections on side dp: each class's summed run time (ns) */
function conns(dp: Datapath): number[] {
  const sum = [0, 0, 0, 0];
  for (let i = 0; i < C; i++, next++) {
    // a fresh 4-tuple each: the same client tuples on both sides, one connection apart in the sequence
    const client = `${xdp ? '192.168' : '10.244'}.${xdp ? 50 + ((next >> 14) & 63) : 5 + ((next >> 14) & 63)}.${1 + ((next >> 8) & 63)}`;
    let sport = 1024 + (next & 255) * 200;
    // XDP: the next port whose flow lands on the local backend (the other one is masqueraded: tc's)
    while (xdp && pick(fe, client, sport).id !== 51 && sport < 1024 + (next & 255) * 200 + 199) sport++;
    const b = pick(fe, client, sport);
    if (xdp && b.id !== 51) throw new Error(`conn-ab: no port of ${client} near ${sport} lands on the local backend`);
    const steps: Array<[string, Buffer]> = [
      [clientProg, toService(fe, client, sport).input],
      ['lb_tc_egress', reply(fe, b, client, sport).input],
      [clientProg, toService(fe, client, sport, { seq: 1001, ack: 5001, flags: TCP_ACK }).input],
      [clientProg, toService(fe, client, sport, { seq: 1001, ack: 5001, flags: TCP_FIN | TCP_ACK }).input],
    ];
    steps.forEach(([prog, input], k) => {
      const r = dp.run(prog as 'lb_tc_ingress' | 'lb_tc_egress' | 'lb_xdp', input);
      if (r.verdict !== (k === 1 ? TC_ACT_OK : clientOk)) throw new Error(`${CLASSES[k]}: verdict ${r.verdict}`);
      // every packet translated (the client's to its backend, the reply from the frontend), none passed on untouched
      const o = parse(r.output), want = k === 1 ? fe.address : b.address;
      if ((k === 1 ? o.src : o.dst) !== want) throw new Error(`${CLASSES[k]}: not translated (${o.src} -> ${o.dst})`);
      sum[k] = sum[k]! + r.durationNs;
    });
  }
  return sum;
}

try {
  for (const dp of sides) {
    dp.install(BASE_SERVICES);
    if (xdp) { dp.addNodeAddress('192.168.1.10'); dp.setExternal(true); }
    conns(dp);
  }
  const a: number[][] = CLASSES.map(() => []), b: number[][] = CLASSES.map(() => []);
  const load0 = (await import('node:os')).loadavg()[0]!;
  for (let i = 0; i < pairs; i++) {
    const base = next;
    let sa: number[], sb: number[];
    if (i % 2) { sb = conns(sides[1]!); next = base; sa = conns(sides[0]!); } else { sa = conns(sides[0]!); next = base; sb = conns(sides[1]!); }
    CLASSES.forEach((_, k) => { a[k]!.push(sa[k]!); b[k]!.push(sb[k]!); });
  }
  const load1 = (await import('node:os')).loadavg()[0]!;
  const tot = (xs: number[][]) => xs[0]!.map((_, i) => xs.reduce((s, c) => s + c[i]!, 0));
  for (const [label, xa, xb] of [...CLASSES.map((c, k) => [c, a[k]!, b[k]!] as const), ['all four', tot(a), tot(b)] as const]) {
    const ratio = xa.map((x, i) => x / xb[i]!);
    console.log(`${label.padEnd(8)}: A ${(quantile(xa, 0.5) / C).toFixed(0)} ns, B ${(quantile(xb, 0.5) / C).toFixed(0)} ns a packet; ${pairRatios(ratio)} (${pairs} pairs of ${C} connections, load ${load0.toFixed(1)}-${load1.toFixed(1)})`);
  }
} finally {
  for (const dp of sides) dp.close();
}
