// Per-packet cost of the tc and XDP programs, measured on the rows of the datapath test table
// (testing/datapath-rows.ts): the same setup, the same packet, run many times through
// BPF_PROG_TEST_RUN, reporting the kernel-measured run time per packet.
//
// Why not one test run with repeat = N: the kernel reruns the program on the SAME skb, which the
// first run has already translated (its destination is now the backend), so runs 2..N would measure
// the "not a Service packet" path. Instead each packet is a separate test run with repeat = 1 and
// fresh bytes, and the kernel's own duration (program time only, no syscall) is taken per run; for
// the first-packet rows the flow's conntrack entry is deleted between runs so every run is a first
// packet again. A row that only parses (ARP) is measured the same way as the floor: the
// bpf_test_run timer itself costs a few tens of ns per run.
import { existsSync } from 'node:fs';
import { defineBench, stats, type BenchContext } from './lib.js';
import { Datapath, OBJECT_PATH, type RunResult } from '../testing/datapath.js';
import { buildRows, prepareRow, BASE_SERVICES, type Row } from '../testing/datapath-rows.js';
import { parse } from '../testing/packets.js';
import { encodeCtKey, LB_CT_DIR_FWD } from '../src/dataplane/bpf/layout.js';
import { nativeAvailable } from '../src/dataplane/bpf/native/addon.js';

function protoName(n: number): 'TCP' | 'UDP' {
  return n === 6 ? 'TCP' : 'UDP';
}

/** one test run repeating the packet in the kernel: right only for a row whose packet the program leaves as it found it */
function measureRepeat(dp: Datapath, row: Row, repeat: number): number {
  prepareRow(dp, row);
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) samples.push(dp.run(row.prog, row.input, { repeat }).durationNs);
  return stats(samples).median;
}

function measureRow(ctx: BenchContext, dp: Datapath, row: Row, runs: number): { medianNs: number; minNs: number; p99Ns: number } {
  prepareRow(dp, row);
  const first = row.bench === 'first-packet' || row.bench === 'xdp-first-packet';
  let fwdKey: Buffer | undefined;
  if (first) {
    const p = parse(row.input);
    fwdKey = encodeCtKey({ saddr: p.src, daddr: p.dst, sport: p.sport, dport: p.dport, protocol: protoName(p.proto), dir: LB_CT_DIR_FWD });
  }
  const ct = dp.map('lb_ct');
  const samples: number[] = [];
  let last: RunResult | undefined;
  for (let i = 0; i < runs + 100; i++) {
    if (fwdKey) ct.delete(fwdKey);
    last = dp.run(row.prog, row.input);
    if (i >= 100) samples.push(last.durationNs);
  }
  if (last && last.verdict !== row.verdict) ctx.note(`row "${row.name}": verdict ${last.verdict} while benchmarking, the table says ${row.verdict}`);
  const s = stats(samples);
  return { medianNs: s.median, minNs: s.min, p99Ns: s.p99 };
}

export default defineBench({
  name: 'datapath',
  title: 'Per-packet cost of the tc and XDP programs (BPF_PROG_TEST_RUN)',
  description:
    'Rows of the datapath test table rerun as a benchmark: a TCP/IPv4 conntrack hit (the steady state of a flow), ' +
    'first packets (frontend lookup, Maglev, two conntrack inserts, DNAT), a reply rewritten at tc egress, and XDP. ' +
    'Each packet is one BPF_PROG_TEST_RUN with fresh bytes; the value is the median of the kernel-measured program ' +
    'time per run (Katran\'s tester reports ~100-120 ns/packet for its XDP path).',
  skip() {
    if (process.getuid?.() !== 0) return 'needs root (BPF_PROG_TEST_RUN)';
    const n = nativeAvailable();
    if (!n.ok) return `native addon: ${n.reason}`;
    if (!existsSync(OBJECT_PATH)) return `${OBJECT_PATH} not built (make -C bpf)`;
    return undefined;
  },
  run(ctx) {
    const runs = ctx.quick ? 2000 : 20000;
    const rows = buildRows();
    const benchRows = rows.filter((r) => r.bench);
    const floor = rows.find((r) => r.name.startsWith('ARP'));
    const dp = new Datapath();
    try {
      dp.install(BASE_SERVICES);
      const results: Array<{ label: string; ns: number }> = [];
      if (floor) {
        const f = measureRow(ctx, dp, { ...floor, bench: 'ct-hit' }, runs);
        ctx.metric({ name: 'floor: non-IP packet (parse only)', value: f.medianNs, unit: 'ns', better: 'lower', note: `min ${f.minNs} ns; includes the test-run timer` });
        results.push({ label: 'non-IP (floor)', ns: f.medianNs });
      }
      for (const row of benchRows) {
        if (row.bench === 'ct-hit-repeat') {
          const repeat = ctx.quick ? 10_000 : 100_000;
          const ns = measureRepeat(dp, row, repeat);
          ctx.metric({
            name: 'ct-hit, in-kernel repeat: TCP/IPv4 conntrack hit + DNAT (self-mapped backend)', value: ns, unit: 'ns', better: 'lower',
            target: '<= 100 ns', met: ns <= 100, note: `BPF_PROG_TEST_RUN repeat ${repeat}, median of 5; the timer cost is spread over the repeats (Katran's tester ~100-120 ns)`,
          });
          ctx.log(`ct-hit, in-kernel repeat ${repeat}: ${ns} ns/packet`);
          results.push({ label: 'ct-hit tc_ingress (repeat)', ns });
          continue;
        }
        const m = measureRow(ctx, dp, row, runs);
        const name = `${row.bench}: ${row.name}`;
        const isCtHit4 = (row.bench === 'ct-hit' || row.bench === 'xdp-ct-hit') && !row.name.includes('IPv6');
        ctx.metric({
          name, value: m.medianNs, unit: 'ns', better: 'lower',
          ...(isCtHit4 ? { target: '<= 100 ns', met: m.medianNs <= 100 } : {}),
          ...(row.bench === 'first-packet' || row.bench === 'xdp-first-packet' ? { target: '<= 300 ns', met: m.medianNs <= 300 } : {}),
          note: `min ${m.minNs} ns, p99 ${m.p99Ns} ns over ${runs} runs`,
        });
        ctx.log(`${name}: median ${m.medianNs} ns (min ${m.minNs}, p99 ${m.p99Ns})`);
        results.push({ label: `${row.bench} ${row.prog.replace('lb_', '')}${row.name.includes('IPv6') ? ' v6' : ''}`, ns: m.medianNs });
      }
      ctx.figure({
        id: 'per-packet', kind: 'bar', title: 'Program time per packet (median, BPF_PROG_TEST_RUN)',
        categories: results.map((r) => r.label), y: { label: 'ns per packet' },
        series: [{ name: 'median', values: results.map((r) => r.ns) }],
      });
      ctx.note(`${runs} runs per row after 100 warm-up runs; durations are the kernel's (ktime around the program), so syscall and skb set-up are excluded. Two shared CPU cores: medians, not means.`);
    } finally {
      dp.close();
    }
  },
});
