// Steady-state rows A/B, many short interleaved pairs (session 32): the datapath bench's repeat rows
// (bench/datapath.bench.ts repeatRows: conntrack hits, a reply, packets to no Service, and the
// parse-only floor) run alternately on two builds of bpf/kbp.bpf.c, PAIRS times, each pair's order
// alternating; prints per row the medians and the per-pair ratios A/B (min / p25 / median / p75 /
// max), as chain-ab does for first packets. Both sides are written by this checkout's harness.
//   node --import=tsx bench/repeat-ab.ts [ROW_REGEX] [PAIRS] [OBJECT_A] [OBJECT_B]
// OBJECT_A defaults to bpf/kbp.bpf.o, OBJECT_B to KBP_BENCH_BASE_OBJECT; REPEAT: KBP_REPEAT_AB_N
// (in-kernel repeats a run, 20,000).
import { loadavg } from 'node:os';
import { Datapath, OBJECT_PATH } from '../testing/datapath.js';
import { BASE_SERVICES, buildRows } from '../testing/datapath-rows.js';
import { repeatRows, runRepeat, SELF, type RepeatRow } from './datapath.bench.js';
import { pairRatios, quantile } from './ab.js';

const re = new RegExp(process.argv[2] ?? 'conntrack hit');
const pairs = Number(process.argv[3] ?? 40);
const objA = process.argv[4] ?? OBJECT_PATH;
const objB = process.argv[5] ?? process.env.KBP_BENCH_BASE_OBJECT;
if (!objB) throw new Error('repeat-ab: no OBJECT_B (argument 4 or KBP_BENCH_BASE_OBJECT)');
const repeat = Number(process.env.KBP_REPEAT_AB_N ?? 20_000);

const sides = [{ dp: new Datapath(objA, 'a'), name: objA }, { dp: new Datapath(objB, 'b'), name: objB }];
try {
  for (const s of sides) s.dp.install([...BASE_SERVICES, ...Object.values(SELF)]);
  const rows: RepeatRow[] = repeatRows();
  const arp = buildRows().find((r) => r.name.startsWith('ARP'));
  if (arp) rows.unshift({ label: 'floor: non-IP packet (parse only)', prog: 'lb_tc_ingress', warm: [], input: arp.input });
  for (const row of rows.filter((r) => re.test(r.label))) {
    for (const s of sides) runRepeat(s, row, 1000);
    const a: number[] = [], b: number[] = [], ratio: number[] = [];
    const load0 = loadavg()[0]!;
    for (let i = 0; i < pairs; i++) {
      let ta: number, tb: number;
      if (i % 2) { tb = runRepeat(sides[1]!, row, repeat); ta = runRepeat(sides[0]!, row, repeat); } else { ta = runRepeat(sides[0]!, row, repeat); tb = runRepeat(sides[1]!, row, repeat); }
      a.push(ta); b.push(tb); ratio.push(ta / tb);
    }
    console.log(`${row.label}: A ${quantile(a, 0.5).toFixed(1)} ns, B ${quantile(b, 0.5).toFixed(1)} ns; ${pairRatios(ratio)} (${pairs} pairs, load ${load0.toFixed(1)}-${loadavg()[0]!.toFixed(1)})`);
  }
} finally {
  for (const { dp } of sides) dp.close();
}
