// Per-packet cost of the tc and XDP programs through BPF_PROG_TEST_RUN.
//
// Two ways to time a packet:
// - In-kernel repeat (the steady-state rows): one test run repeats the packet N times and the kernel
//   reports the mean program time, the timer's cost spread over N. The kernel reruns the program on
//   the SAME buffer, so only a packet the program leaves as it found it can be repeated: a conntrack
//   hit or a reply of a frontend whose only backend is the frontend's own address and port (the
//   rewrite writes the same bytes, every lookup and checksum helper still runs), and a packet to no
//   Service (left untouched anyway). Each row checks afterwards that the bytes are intact and that the
//   counters say the path was the one named (e.g. fwd_ct_hit counted once per repeat).
// - First packets by in-kernel repeat over a chain (the warm first-packet rows, judged against the
//   target): K frontends, frontend i's only backend is frontend i+1's address and port, so each repeat
//   of one test run translates the packet rewritten by the previous one, a new flow every time (a
//   conntrack miss, Maglev, the clash check, two inserts, the rewrite). One run of K repeats walks the
//   chain once; conntrack is emptied between rounds (and lb_ct_filter cleared, as the agent's next
//   sweep would leave it); each round checks that the packet reached the
//   chain's end and that fwd_new counted K.
//   The frontends are installed in a shuffled order (chainInstallOrder: KBP_CHAIN_SHUFFLE=0 keeps the
//   chain's order, whose constant stride between Maglev tables the CPU's prefetcher may follow).
// - One run per packet (the cold first-packet rows): the flow's conntrack entry is deleted before each
//   run, so each is a first packet again; a single run includes the test-run timer and runs with cold
//   caches (a conntrack hit timed this way costs ~600 ns here against ~100 ns repeated), so these rows
//   are compared with each other and with the floor row measured the same way, not with the repeat rows.
//
// A/B: KBP_BENCH_BASE_OBJECT=/path/to/old/kbp.bpf.o loads that build beside the current one and
// interleaves the two round by round (rounds alternate which goes first); every row then reports
// both, min/median/max over rounds, and the median of the per-round ratios new/base.
// KBP_BENCH_ROWS=REGEX runs only the rows whose label matches (an experiment's rows).
import { parseMapSizes } from '../src/dataplane/bpf/map-sizes.js';
import { existsSync } from 'node:fs';
import { defineBench, stats, type BenchContext } from './lib.js';
import { Datapath, OBJECT_PATH, TC_ACT_OK, XDP_PASS, LB_BE_F_LOCAL, type ProgName, type TestService } from '../testing/datapath.js';
import { buildRows, prepareRow, BASE_SERVICES, toService, reply, type Row } from '../testing/datapath-rows.js';
import { frame, parse, tcp, udp, TCP_ACK, TCP_PSH, TCP_SYN } from '../testing/packets.js';
import { encodeCtKey, encodeFeKey, LB_CT_DIR_FWD, LB_FE_F_SOURCE_RANGES } from '../src/dataplane/bpf/layout.js';
import { nativeAvailable } from '../src/dataplane/bpf/native/addon.js';
import type { LbStatName } from '../src/dataplane/bpf/layout.js';

function protoName(n: number): 'TCP' | 'UDP' {
  return n === 6 ? 'TCP' : 'UDP';
}

const be = (id: number, address: string, port: number) => ({ id, address, port, flags: LB_BE_F_LOCAL });
/** frontends whose only backend is their own address and port: translation rewrites a packet to itself */
export const SELF = {
  tcp4: { feId: 90, address: '10.96.90.1', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(901, '10.96.90.1', 80)] },
  udp4: { feId: 91, address: '10.96.90.1', port: 53, protocol: 'UDP', scope: 'internal', backends: [be(911, '10.96.90.1', 53)] },
  tcp6: { feId: 92, address: 'fd00:96::90', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(921, 'fd00:96::90', 80)] },
  udp6: { feId: 93, address: 'fd00:96::90', port: 53, protocol: 'UDP', scope: 'internal', backends: [be(931, 'fd00:96::90', 53)] },
  np4: { feId: 94, address: '192.168.1.10', port: 30090, protocol: 'TCP', scope: 'external', type: 'NodePort', backends: [be(941, '192.168.1.10', 30090)] },
  np6: { feId: 95, address: 'fd00:1::10', port: 30090, protocol: 'TCP', scope: 'external', type: 'NodePort', backends: [be(951, 'fd00:1::10', 30090)] },
  npUdp4: { feId: 96, address: '192.168.1.10', port: 30053, protocol: 'UDP', scope: 'external', type: 'NodePort', backends: [be(961, '192.168.1.10', 30053)] },
  // a LoadBalancer IP with loadBalancerSourceRanges: its hits check the source (an LPM lookup)
  lbRanges4: { feId: 97, address: '172.18.0.97', port: 443, protocol: 'TCP', scope: 'external', type: 'LoadBalancer', flags: LB_FE_F_SOURCE_RANGES, sourceRanges: ['192.168.50.0/24'], backends: [be(971, '172.18.0.97', 443)] },
} satisfies Record<string, TestService>;

const DATA = { seq: 1001, ack: 7001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
const HS_ACK = { seq: 1001, ack: 7001, flags: TCP_ACK };

export interface RepeatRow {
  label: string;
  prog: ProgName;
  external?: boolean;
  /** packets run once before measuring (a flow's handshake) */
  warm: Array<{ prog: ProgName; input: Buffer }>;
  input: Buffer;
  /** the one counter the measured path bumps per packet; none: nothing may be counted */
  counter?: LbStatName;
  /** run on the restored maps before the warm-up packets */
  setup?: (dp: Datapath) => void;
  target?: boolean;
}

export function repeatRows(): RepeatRow[] {
  const C4 = '10.244.5.9', C6 = 'fd00:244:5::9', EXT4 = '192.168.50.7', EXT6 = 'fd00:50::7';
  const rows: RepeatRow[] = [];
  const tcpHit = (label: string, s: TestService, client: string, prog: ProgName, external = false, target = false) => {
    const syn = toService(s, client, 41000), ack = toService(s, client, 41000, HS_ACK), data = toService(s, client, 41000, DATA);
    rows.push({ label, prog, external, warm: [{ prog, input: syn.input }, { prog, input: ack.input }], input: data.input, counter: 'fwd_ct_hit', target });
  };
  const udpHit = (label: string, s: TestService, client: string, prog: ProgName, external = false) => {
    const f = toService(s, client, 52000);
    rows.push({ label, prog, external, warm: [{ prog, input: f.input }], input: f.input, counter: 'fwd_ct_hit' });
  };
  tcpHit('tc ingress, TCP/IPv4 conntrack hit', SELF.tcp4, C4, 'lb_tc_ingress', false, true);
  udpHit('tc ingress, UDP/IPv4 conntrack hit', SELF.udp4, C4, 'lb_tc_ingress');
  tcpHit('tc ingress, TCP/IPv6 conntrack hit', SELF.tcp6, C6, 'lb_tc_ingress', false, true);
  udpHit('tc ingress, UDP/IPv6 conntrack hit', SELF.udp6, C6, 'lb_tc_ingress');
  tcpHit('tc ingress external, TCP/IPv4 NodePort conntrack hit', SELF.np4, EXT4, 'lb_tc_ingress', true, true);
  tcpHit('tc ingress external, TCP/IPv4 conntrack hit, LoadBalancer IP with source ranges', SELF.lbRanges4, EXT4, 'lb_tc_ingress', true);
  tcpHit('XDP, TCP/IPv4 NodePort conntrack hit', SELF.np4, EXT4, 'lb_xdp', true, true);
  tcpHit('XDP, TCP/IPv6 NodePort conntrack hit', SELF.np6, EXT6, 'lb_xdp', true, true);
  udpHit('XDP, UDP/IPv4 NodePort conntrack hit', SELF.npUdp4, EXT4, 'lb_xdp', true);
  {
    // a backend's reply at tc egress (the reverse entry, rev-NAT to the frontend: the same bytes here)
    const s = SELF.tcp4, b = s.backends[0]!;
    const syn = toService(s, C4, 41000), ack = toService(s, C4, 41000, HS_ACK);
    const r = reply(s, b, C4, 41000, { seq: 7001, ack: 1019, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('HTTP/1.1 200 OK\r\n\r\n') });
    rows.push({ label: 'tc egress, TCP/IPv4 reply of a backend (reverse hit)', prog: 'lb_tc_egress', warm: [{ prog: 'lb_tc_ingress', input: syn.input }, { prog: 'lb_tc_ingress', input: ack.input }], input: r.input, counter: 'rev_nat', target: true });
  }
  // every forwarded pod packet: to no frontend, no reply of ours
  const pod4 = frame({ src: '10.244.1.5', dst: '10.244.2.7', l4: tcp(40000, 8080, DATA) });
  const pod6 = frame({ src: 'fd00:244:1::5', dst: 'fd00:244:2::7', l4: tcp(40000, 8080, DATA) });
  const podUdp4 = frame({ src: '10.244.1.5', dst: '10.244.2.7', l4: udp(40000, 8053) });
  rows.push({ label: 'tc ingress, non-Service TCP/IPv4 pod packet', prog: 'lb_tc_ingress', warm: [], input: pod4, target: true });
  rows.push({ label: 'tc egress, non-Service TCP/IPv4 pod packet', prog: 'lb_tc_egress', warm: [], input: pod4, target: true });
  rows.push({ label: 'tc ingress, non-Service UDP/IPv4 pod packet', prog: 'lb_tc_ingress', warm: [], input: podUdp4 });
  rows.push({ label: 'tc ingress, non-Service TCP/IPv6 pod packet', prog: 'lb_tc_ingress', warm: [], input: pod6 });
  rows.push({ label: 'XDP, non-Service TCP/IPv4 packet to a node address', prog: 'lb_xdp', external: true, warm: [], input: frame({ src: EXT4, dst: '192.168.1.10', l4: tcp(40000, 22, DATA) }) });
  // a packet the frontend filter lets through to no frontend (a bit another key shares, or held for
  // a deleted frontend's flows): the device and frontend lookups, the orphan and reverse paths
  {
    const s = SELF.tcp4, key = encodeFeKey({ address: s.address, port: s.port, protocol: s.protocol, scope: s.scope });
    rows.push({ label: 'tc ingress, TCP/IPv4 packet through the frontend filter to no frontend', prog: 'lb_tc_ingress', warm: [], input: toService(s, C4, 41000, DATA).input,
      setup: (dp) => { dp.map('lb_frontends').delete(key); dp.clearFeIds(); } });
  }
  rows.push({ label: 'tc ingress external, non-Service TCP/IPv4 SYN to a node address', prog: 'lb_tc_ingress', external: true, warm: [], input: frame({ src: EXT4, dst: '192.168.1.10', l4: tcp(40000, 22, { flags: TCP_SYN }) }) });
  return rows;
}

export interface Side { name: string; dp: Datapath }

/** a chain of first packets (see the header): K frontends, each one's backend the next one's address */
export interface ChainRow {
  label: string;
  prog: ProgName;
  external: boolean;
  services: TestService[];
  input: Buffer;
  /** where the packet ends after K repeats: the last backend's address and port */
  end: { address: string; port: number };
}

export function chainRows(k: number): ChainRow[] {
  const C4 = '10.244.5.9', C6 = 'fd00:244:5::9', EXT4 = '192.168.50.7', EXT6 = 'fd00:50::7';
  const v4 = (a: number, b: number) => (i: number) => `${a}.${b}.${(i >> 8) & 255}.${i & 255}`;
  const v6 = (prefix: string) => (i: number) => `${prefix}${(i + 1).toString(16)}`;
  const rows: ChainRow[] = [];
  const chain = (label: string, prog: ProgName, protocol: 'TCP' | 'UDP', addr: (i: number) => string, client: string, feBase: number, o: { external?: boolean } = {}) => {
    const services: TestService[] = [];
    for (let i = 0; i < k; i++) {
      services.push({
        feId: feBase + i, address: addr(i), port: 8000, protocol, tableId: feBase + i,
        scope: o.external ? 'external' : 'internal', ...(o.external ? { type: 'LoadBalancer' } : {}),
        backends: [{ id: 100_000 + feBase + i, address: addr(i + 1), port: 8000, flags: LB_BE_F_LOCAL }],
      });
    }
    const input = toService(services[0]!, client, 41000, protocol === 'TCP' ? { flags: TCP_SYN } : {}).input;
    rows.push({ label, prog, external: o.external ?? false, services, input, end: { address: addr(k), port: 8000 } });
  };
  chain('tc ingress, TCP/IPv4 SYN to a ClusterIP', 'lb_tc_ingress', 'TCP', v4(10, 97), C4, 20_000);
  chain('tc ingress, UDP/IPv4 to a ClusterIP', 'lb_tc_ingress', 'UDP', v4(10, 98), C4, 30_000);
  chain('tc ingress, TCP/IPv6 SYN to a ClusterIP', 'lb_tc_ingress', 'TCP', v6('fd00:97:0:0:0:0:0:'), C6, 40_000);
  chain('tc ingress, UDP/IPv6 to a ClusterIP', 'lb_tc_ingress', 'UDP', v6('fd00:98:0:0:0:0:0:'), C6, 50_000);
  chain('XDP, TCP/IPv4 SYN to a LoadBalancer IP, local backend', 'lb_xdp', 'TCP', v4(192, 97), EXT4, 60_000, { external: true });
  chain('XDP, UDP/IPv4 to a LoadBalancer IP, local backend', 'lb_xdp', 'UDP', v4(192, 98), EXT4, 70_000, { external: true });
  chain('XDP, TCP/IPv6 SYN to a LoadBalancer IP, local backend', 'lb_xdp', 'TCP', v6('fd00:99:0:0:0:0:0:'), EXT6, 80_000, { external: true });
  return rows;
}

/**
 * The order a chain's frontends are installed in. Shuffled by default (KBP_CHAIN_SHUFFLE=0: the
 * chain's own order): their Maglev tables get regions, and their frontend entries memory, in install
 * order, so a chain installed in its own order reads them at a constant stride, which the CPU's
 * prefetcher follows or not depending on the program's code. Session 28 measured 8896bca's tc SYN
 * at 1.13-1.15 of 5f4785a's that way, and 1.05-1.09 shuffled; an inline lb_ct_filter read 0.93 of
 * the called one in order and 1.00 shuffled. A Service's first packet meets its tables in no order.
 */
export function chainInstallOrder<T>(services: T[]): T[] {
  return process.env.KBP_CHAIN_SHUFFLE === '0' ? services : shuffled(services);
}

/** a deterministic shuffle (the chain's frontends installed out of order) */
export function shuffled<T>(xs: T[]): T[] {
  const out = [...xs];
  let seed = 12345;
  for (let i = out.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const j = seed % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** one run of the chain: K first packets, conntrack emptied before; throws when another path ran (also bench/chain-ab.ts) */
export function runChain(side: Pick<Side, 'dp' | 'name'>, row: ChainRow): number {
  const dp = side.dp, k = row.services.length;
  for (const name of ['lb_ct', 'lb_ct_syn']) {
    const m = dp.optMap(name);
    if (!m) continue;
    const keys = m.keys();
    if (keys.length) m.deleteMany(Buffer.concat(keys), keys.length);
  }
  // as the agent's next sweep leaves it over an empty lb_ct: no bit set (the round's keys are the
  // last round's; with their bits left, every repeat would look lb_ct up)
  dp.resetFilter('lb_ct_filter');
  dp.resetStats();
  const r = dp.run(row.prog, row.input, { repeat: k });
  const ok = row.prog === 'lb_xdp' ? XDP_PASS : TC_ACT_OK;
  if (r.verdict !== ok) throw new Error(`${side.name}: "${row.label}": verdict ${r.verdict}`);
  const p = parse(r.output);
  if (p.dst !== row.end.address || p.dport !== row.end.port) throw new Error(`${side.name}: "${row.label}": the packet ended at ${p.dst}:${p.dport}, not ${row.end.address}:${row.end.port}: not every repeat was a first packet`);
  const st = side.dp.stats();
  if (JSON.stringify(st) !== JSON.stringify({ fwd_new: k })) throw new Error(`${side.name}: "${row.label}": counters ${JSON.stringify(st)}, want ${JSON.stringify({ fwd_new: k })}`);
  return r.durationNs;
}

export function prepareRepeat(dp: Datapath, row: RepeatRow): void {
  dp.restore();
  dp.addNodeAddress('192.168.1.10');
  dp.addNodeAddress('fd00:1::10');
  dp.setExternal(row.external ?? false);
  row.setup?.(dp);
  for (const w of row.warm) dp.run(w.prog, w.input);
  dp.resetStats();
}

/** one in-kernel repeat run of the row; throws when the packet left changed or another path ran */
export function runRepeat(side: Side, row: RepeatRow, repeat: number): number {
  prepareRepeat(side.dp, row);
  const r = side.dp.run(row.prog, row.input, { repeat });
  const ok = row.prog === 'lb_xdp' ? XDP_PASS : TC_ACT_OK;
  if (r.verdict !== ok) throw new Error(`${side.name}: "${row.label}": verdict ${r.verdict}`);
  if (!r.output.equals(row.input)) throw new Error(`${side.name}: "${row.label}": the packet changed, a repeat would measure another path`);
  const st = side.dp.stats();
  const want = row.counter ? { [row.counter]: repeat } : {};
  if (JSON.stringify(st) !== JSON.stringify(want)) throw new Error(`${side.name}: "${row.label}": counters ${JSON.stringify(st)}, want ${JSON.stringify(want)}`);
  return r.durationNs;
}

/** per-run timing of a table row (first packets: the flow's conntrack entry deleted before each run) */
function runSingles(ctx: BenchContext, dp: Datapath, row: Row, runs: number): number[] {
  prepareRow(dp, row);
  const first = row.bench === 'first-packet' || row.bench === 'xdp-first-packet';
  let fwdKey: Buffer | undefined;
  if (first) {
    const p = parse(row.input);
    fwdKey = encodeCtKey({ saddr: p.src, daddr: p.dst, sport: p.sport, dport: p.dport, protocol: protoName(p.proto), dir: LB_CT_DIR_FWD });
  }
  const ct = dp.map('lb_ct'), syn = dp.optMap('lb_ct_syn');
  const samples: number[] = [];
  let verdict = -1;
  for (let i = 0; i < runs + 50; i++) {
    if (fwdKey) { ct.delete(fwdKey); syn?.delete(fwdKey); }
    const r = dp.run(row.prog, row.input);
    verdict = r.verdict;
    if (i >= 50) samples.push(r.durationNs);
  }
  if (verdict !== row.verdict) ctx.note(`row "${row.name}": verdict ${verdict} while benchmarking, the table says ${row.verdict}`);
  return samples;
}

const fmt = (s: { min: number; median: number; max: number }) => `min ${s.min.toFixed(1)} / median ${s.median.toFixed(1)} / max ${s.max.toFixed(1)} ns`;

export default defineBench({
  name: 'datapath',
  title: 'Per-packet cost of the tc and XDP programs (BPF_PROG_TEST_RUN)',
  description:
    'Steady-state rows (conntrack hits of TCP and UDP over IPv4 and IPv6, at tc and XDP, a backend\'s reply, and packets to no Service) ' +
    'are timed by in-kernel repeat on packets the program leaves byte-identical (frontends whose backend is their own address); ' +
    'first packets are timed one run each, the test-run timer included, beside a parse-only floor timed the same way. ' +
    'With KBP_BENCH_BASE_OBJECT set, an older build runs interleaved with the current one (A/B).',
  skip() {
    if (process.getuid?.() !== 0) return 'needs root (BPF_PROG_TEST_RUN)';
    const n = nativeAvailable();
    if (!n.ok) return `native addon: ${n.reason}`;
    if (!existsSync(OBJECT_PATH)) return `${OBJECT_PATH} not built (make -C bpf)`;
    return undefined;
  },
  run(ctx) {
    const rounds = ctx.quick ? 5 : 11;
    const repeat = ctx.quick ? 5_000 : 50_000;
    const singles = ctx.quick ? 1000 : 5000;
    const basePath = process.env.KBP_BENCH_BASE_OBJECT;
    const services = [...BASE_SERVICES, ...Object.values(SELF)];
    const sides: Side[] = [];
    try {
      // KBP_BENCH_MAP_MAX / KBP_BENCH_BASE_MAP_MAX=LIST: a side's map sizes, as --bpf-map-max (default:
      // the agent's on this node; `lb_ct=524288,lb_ct_syn=65536` gives the sizes before session 23)
      const sizes = (v: string | undefined, what: string) => (v ? { mapSizes: parseMapSizes(v.split(','), what) } : {});
      sides.push({ name: 'new', dp: new Datapath(undefined, '', sizes(process.env.KBP_BENCH_MAP_MAX, 'KBP_BENCH_MAP_MAX')) });
      if (basePath) sides.push({ name: 'base', dp: new Datapath(basePath, 'base', sizes(process.env.KBP_BENCH_BASE_MAP_MAX, 'KBP_BENCH_BASE_MAP_MAX')) });
      for (const s of sides) s.dp.install(services);
      const results: Array<{ label: string; ns: number }> = [];

      const report = (label: string, per: number[][], o: { target?: string; met?: (ns: number) => boolean; how: string }) => {
        const st = per.map((x) => stats(x));
        const ns = Math.round(st[0]!.median * 10) / 10;
        let note = `${o.how}; new: ${fmt(st[0]!)}`;
        if (st[1]) {
          const ratios = per[0]!.map((v, i) => v / per[1]![Math.min(i, per[1]!.length - 1)]!);
          const r = stats(ratios);
          note += `; base (${basePath}): ${fmt(st[1])}; ratio new/base per round min ${r.min.toFixed(2)} / median ${r.median.toFixed(2)} / max ${r.max.toFixed(2)}`;
          ctx.metric({ name: `${label} (base build)`, value: Math.round(st[1].median * 10) / 10, unit: 'ns', better: 'lower' });
        }
        ctx.metric({
          name: label, value: ns, unit: 'ns', better: 'lower', note,
          ...(st[1] ? { baseline: `${label} (base build)` } : {}),
          ...(o.target ? { target: o.target, met: o.met?.(ns) ?? false } : {}),
        });
        ctx.log(`${label}: ${note}`);
        results.push({ label, ns });
      };

      // steady state: in-kernel repeat, rounds interleaved between the builds
      const rows = buildRows();
      const arp = rows.find((r) => r.name.startsWith('ARP'));
      const only = process.env.KBP_BENCH_ROWS ? new RegExp(process.env.KBP_BENCH_ROWS) : undefined;
      const rep = repeatRows().filter((r) => !only || only.test(r.label));
      if (arp) rep.unshift({ label: 'floor: non-IP packet (parse only)', prog: 'lb_tc_ingress', warm: [], input: arp.input });
      for (const row of rep) {
        const per: number[][] = sides.map(() => []);
        for (let i = 0; i < rounds; i++) {
          const order = i % 2 ? [...sides.keys()].reverse() : [...sides.keys()];
          for (const k of order) per[k]!.push(runRepeat(sides[k]!, row, repeat));
        }
        report(row.label, per, { how: `in-kernel repeat ${repeat}, ${rounds} rounds`, ...(row.target ? { target: '<= 100 ns', met: (ns: number) => ns <= 100 } : {}) });
      }

      // first packets, warm: in-kernel repeat over a chain of frontends, rounds interleaved
      const chainLen = ctx.quick ? 1000 : 4000;
      for (const row of chainRows(chainLen).filter((r) => !only || only.test(r.label))) {
        for (const s of sides) s.dp.install([...BASE_SERVICES, ...chainInstallOrder(row.services)]);
        for (const s of sides) {
          s.dp.addNodeAddress('192.168.1.10');
          s.dp.setExternal(row.external);
        }
        const per: number[][] = sides.map(() => []);
        for (let i = 0; i < rounds; i++) {
          const order = i % 2 ? [...sides.keys()].reverse() : [...sides.keys()];
          for (const k of order) per[k]!.push(runChain(sides[k]!, row));
        }
        report(`first packet: ${row.label}`, per, { how: `in-kernel repeat over a chain of ${chainLen} frontends (each repeat a new flow), ${rounds} rounds`, target: '<= 300 ns', met: (ns: number) => ns <= 300 });
      }
      for (const s of sides) s.dp.install(services);

      // first packets cold, and the floor timed the same way: one run per packet
      const singleRows = rows.filter((r) => (r.bench === 'first-packet' || r.bench === 'xdp-first-packet') && (!only || only.test(r.name)));
      if (arp) singleRows.unshift({ ...arp, name: 'floor, one run per packet: non-IP packet (parse only)' });
      for (const row of singleRows) {
        const per: number[][] = sides.map(() => []);
        const chunk = Math.ceil(singles / rounds);
        for (let i = 0; i < rounds; i++) {
          const order = i % 2 ? [...sides.keys()].reverse() : [...sides.keys()];
          for (const k of order) per[k]!.push(stats(runSingles(ctx, sides[k]!.dp, row, chunk)).median);
        }
        const first = row.bench === 'first-packet' || row.bench === 'xdp-first-packet';
        report(`${first ? `${row.bench}, cold: ` : ''}${row.name}`, per, { how: `one run per packet, median of ${chunk} per round, ${rounds} rounds, timer included, caches cold (not the target's measure: see the warm rows)` });
      }
      ctx.figure({
        id: 'per-packet', kind: 'bar', title: 'Program time per packet (median over rounds, BPF_PROG_TEST_RUN)',
        categories: results.map((r) => r.label), y: { label: 'ns per packet' },
        series: [{ name: 'median', values: results.map((r) => r.ns) }],
      });
      ctx.note('Durations are the kernel\'s (ktime around the program): syscall and skb set-up excluded. Two shared CPU cores: medians over rounds, and A/B interleaved when a base build is given.');
    } finally {
      for (const s of sides) s.dp.close();
    }
  },
});
