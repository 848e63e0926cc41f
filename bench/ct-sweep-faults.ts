// The conntrack sweep's memory on the main thread: minor page faults (this thread's, from
// /proc/thread-self/stat, and the process's) and the arrayBuffers stat's growth over each of a few
// sweeps of a real lb_ct of N entries, as the agent sweeps (dataplane.ts sweepConntrack: both filters
// rebuilt from the scans of lb_ct and lb_ct_syn). A tenth of the entries is written expired before
// each sweep. No major GC is forced: what a sweep leaves behind stays counted until one comes.
//   KBP_CT_SWEEP_ROOT=<a checkout> (default this one: its ct-sweep.ts, its BpfMap and its testing/datapath.ts)
//   KBP_CT_SWEEP_N=entries (default 200000), KBP_CT_SWEEP_ROUNDS (default 5)
// Prints one JSON line a sweep. Run as root (a BPF load with pins under a test root).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = resolve(process.env.KBP_CT_SWEEP_ROOT ?? new URL('..', import.meta.url).pathname);
const N = Number(process.env.KBP_CT_SWEEP_N ?? 200_000);
const ROUNDS = Number(process.env.KBP_CT_SWEEP_ROUNDS ?? 5);
if (!Number.isInteger(N) || N < 1 || N > 4_000_000) throw new Error(`KBP_CT_SWEEP_N=${process.env.KBP_CT_SWEEP_N}: 1 .. 4000000`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 100) throw new Error(`KBP_CT_SWEEP_ROUNDS=${process.env.KBP_CT_SWEEP_ROUNDS}: 1 .. 100`);

const imp = (p: string) => import(pathToFileURL(`${ROOT}/${p}`).href);
const { Datapath, SVC } = await imp('testing/datapath.ts');
const { BASE_SERVICES } = await imp('testing/datapath-rows.ts');
const { FilterBuild, RevFilterZeroing, sweepConntrack } = await imp('src/dataplane/bpf/ct-sweep.ts');
const L = await imp('src/dataplane/bpf/layout.ts');

/** this thread's minor faults (field 10 of stat) */
function threadMinflt(): number {
  const s = readFileSync('/proc/thread-self/stat', 'utf8');
  return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[7]);
}

const size = Math.max(Math.ceil(N * 1.25), 1 << 17); // room: an LRU map evicts before it is full
const dp = new Datapath(undefined, 'ctfaults', { mapSizes: { lb_ct: size } });
try {
  dp.install(BASE_SERVICES);
  const ct = dp.map('lb_ct');
  const ks = ct.keySize, vs = ct.userValueSize, keys = Buffer.alloc(N * ks), values = Buffer.alloc(N * vs);
  for (let i = 0; i < N; i++) {
    L.encodeCtKey({ saddr: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, daddr: SVC.web4.address, sport: 1024 + (i % 60_000), dport: 80, protocol: 'TCP', dir: i & 1 ? L.LB_CT_DIR_REV : L.LB_CT_DIR_FWD }, keys, i * ks);
  }
  const revZ = new RevFilterZeroing(), ctZ = new RevFilterZeroing();
  for (let round = 0; round < ROUNDS + 1; round++) {
    const now = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      L.encodeCtEntry({ lastSeen: BigInt.asUintN(64, now - (i % 10 === round % 10 ? 21_601n : 1n) * 1_000_000_000n), backendId: 11, feId: SVC.web4.feId, flags: 0 }, values, i * vs);
    }
    await ct.updateBatchAsync(keys, values, N);
    await new Promise((r) => setTimeout(r, 50));
    const ab0 = process.memoryUsage().arrayBuffers, t0 = threadMinflt(), p0 = process.resourceUsage().minorPageFault, c0 = performance.now();
    const rev = await FilterBuild.begin(dp.map('lb_rev_filter'), 'rev', revZ, round);
    const ctf = await FilterBuild.begin(dp.map('lb_ct_filter'), 'ct', ctZ, round);
    const out = [];
    for (const name of ['lb_ct', 'lb_ct_syn']) {
      const visit = name === 'lb_ct' ? (k: Buffer) => { rev.visit(k); ctf.visit(k); } : rev.visit;
      out.push(await sweepConntrack(dp.map(name), name, now, undefined, undefined, visit));
    }
    rev.finish();
    ctf.finish();
    const ms = performance.now() - c0, t1 = threadMinflt(), p1 = process.resourceUsage().minorPageFault, ab1 = process.memoryUsage().arrayBuffers;
    // round 0 warms up (first allocations of either build, the code's first compile)
    if (round > 0) console.log(JSON.stringify({ root: ROOT, n: N, round, entries: out[0].entries, expired: out[0].expired, threadMinflt: t1 - t0, processMinflt: p1 - p0, arrayBuffersKiB: Math.round((ab1 - ab0) / 1024), ms: Math.round(ms), load: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]) }));
  }
} finally {
  dp.close();
}
