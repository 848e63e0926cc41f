// First packets A/B, many short interleaved pairs (session 28): the datapath bench's chain rows
// (bench/datapath.bench.ts: K frontends, each repeat of one test run a new flow) run alternately on
// two builds of bpf/kbp.bpf.c, PAIRS times, each pair's order alternating; prints per row the
// medians and the per-pair ratios A/B (min / p25 / median / p75 / max). Five rounds of the bench
// move a row's median ±10 % between runs of the same object (A/A) at this machine's load; 200 pairs
// in both orders hold the combined ratio to ±3-4 % between repeats (session 28).
//   node --import=tsx bench/chain-ab.ts [ROW_REGEX] [PAIRS] [OBJECT_A] [OBJECT_B]
// OBJECT_A defaults to bpf/kbp.bpf.o, OBJECT_B to KBP_BENCH_BASE_OBJECT. K: KBP_CHAIN_K (1000).
// The frontends are installed shuffled as in the bench (KBP_CHAIN_SHUFFLE=0: in the chain's order).
// Run it in both orders (A/B, then B/A): the side loaded first reads a few % slower or faster by
// itself (an A/A run: 0.98-1.02); the square root of the two orders' medians cancels that.
import { Datapath, OBJECT_PATH } from '../testing/datapath.js';
import { BASE_SERVICES } from '../testing/datapath-rows.js';
import { chainRows, chainInstallOrder, runChain } from './datapath.bench.js';
import { pairRatios, quantile } from './ab.js';

const re = new RegExp(process.argv[2] ?? '^tc ingress');
const pairs = Number(process.argv[3] ?? 200);
const objA = process.argv[4] ?? OBJECT_PATH;
const objB = process.argv[5] ?? process.env.KBP_BENCH_BASE_OBJECT;
if (!objB) throw new Error('chain-ab: no OBJECT_B (argument 4 or KBP_BENCH_BASE_OBJECT)');
const k = Number(process.env.KBP_CHAIN_K ?? 1000);


const sides = [{ dp: new Datapath(objA, 'a'), name: objA }, { dp: new Datapath(objB, 'b'), name: objB }];
try {
  for (const row of chainRows(k).filter((r) => re.test(r.label))) {
    for (const { dp } of sides) {
      dp.install([...BASE_SERVICES, ...chainInstallOrder(row.services)]);
      dp.addNodeAddress('192.168.1.10');
      dp.setExternal(row.external);
      runChain({ dp, name: 'warm' }, row);
    }
    const a: number[] = [], b: number[] = [], ratio: number[] = [];
    const load0 = (await import('node:os')).loadavg()[0]!;
    for (let i = 0; i < pairs; i++) {
      let ta: number, tb: number;
      if (i % 2) { tb = runChain(sides[1]!, row); ta = runChain(sides[0]!, row); } else { ta = runChain(sides[0]!, row); tb = runChain(sides[1]!, row); }
      a.push(ta); b.push(tb); ratio.push(ta / tb);
    }
    const load1 = (await import('node:os')).loadavg()[0]!;
    console.log(`${row.label}: A ${quantile(a, 0.5).toFixed(0)} ns, B ${quantile(b, 0.5).toFixed(0)} ns; ${pairRatios(ratio)} (${pairs} pairs, load ${load0.toFixed(1)}-${load1.toFixed(1)})`);
  }
} finally {
  for (const { dp } of sides) dp.close();
}
