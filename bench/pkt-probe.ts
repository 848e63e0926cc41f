// Runs one row of the datapath bench in a loop, for a profile of that path alone (session 17):
//   perf record -e cpu-clock -F 20000 -g -o /tmp/p.data -- node --import=tsx bench/pkt-probe.ts 'tc ingress, TCP/IPv4 conntrack hit' 6
//   perf script -F ip,sym,symoff -i /tmp/p.data | python3 bench/perf-sites.py
// ROW_REGEX matches a steady-state row's label (in-kernel repeat of 200,000) or else a chain row's
// (first packets over 1,000 frontends, conntrack emptied before each run); SECONDS; OBJECT: another
// build of bpf/kbp.bpf.c. Prints the runs and their mean ns per packet.
import { Datapath } from '../testing/datapath.js';
import { BASE_SERVICES } from '../testing/datapath-rows.js';
import { repeatRows, chainRows, prepareRepeat, SELF, chainInstallOrder } from './datapath.bench.js';

const re = new RegExp(process.argv[2] ?? 'TCP/IPv4 conntrack hit');
const secs = Number(process.argv[3] ?? 5);
const dp = new Datapath(process.argv[4]);
dp.install([...BASE_SERVICES, ...Object.values(SELF)]);
const row = repeatRows().find((r) => re.test(r.label));
const end = Date.now() + secs * 1000;
let n = 0, ns = 0;
if (row) {
  prepareRepeat(dp, row);
  while (Date.now() < end) { const r = dp.run(row.prog, row.input, { repeat: 200_000 }); ns += r.durationNs; n++; }
} else {
  const c = chainRows(1000).find((r) => re.test(r.label))!;
  // installed in the bench's order (chainInstallOrder: shuffled unless KBP_CHAIN_SHUFFLE=0)
  dp.install([...BASE_SERVICES, ...chainInstallOrder(c.services)]);
  dp.addNodeAddress('192.168.1.10');
  dp.setExternal(c.external);
  while (Date.now() < end) {
    for (const name of ['lb_ct', 'lb_ct_syn']) { const m = dp.optMap(name); if (!m) continue; const keys = m.keys(); if (keys.length) m.deleteMany(Buffer.concat(keys), keys.length); }
    const r = dp.run(c.prog, c.input, { repeat: 1000 }); ns += r.durationNs; n++;
  }
}
console.log(JSON.stringify({ row: row?.label ?? re.source, runs: n, meanNs: ns / n }));
dp.close();
