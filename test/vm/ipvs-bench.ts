// The IPVS data plane's sync cost, inside the test VM (the host's kernel has no IPVS): booted by
// bench/ipvs.bench.ts through scripts/test-vm.sh with KBP_VM_MAIN=ipvs-bench.mjs. For N Services x 10
// endpoints (ClusterIP, bench/gen.ts's cluster), in the VM's own namespace:
//   - ours: IpvsDataplane.apply() of the whole plan on an empty kernel (virtual servers, real
//     servers, the VIPs on the dummy device, the nft helper table), then one endpoint change at a
//     time (a Service loses its first endpoint, then gets it back), each apply() timed;
//   - the baseline, run alternately with ours (A B A B): what a script doing kube-proxy's IPVS writes
//     would run, `ip -batch` binding the VIPs to a dummy device and `ipvsadm -R` of the same virtual
//     and real servers (ipvsadm writes one netlink request per line, as kube-proxy does per server),
//     then the same endpoint changes as one `ipvsadm -d` / `-a` each.
// Sizes from the kernel command line (kbp.bench=1000,10000). Prints a line "BENCH <json>" with every
// sample so far after each phase (the last one counts), then exits 0 (1 when a run failed or the
// VM's time ran out). Under emulation (qemu TCG) every time is several times
// the host's; the ratio between the two, measured in the same VM, is what carries over.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { buildPlan } from '../../src/plan/plan.js';
import { diffPlans } from '../../src/plan/diff.js';
import { IpvsDataplane } from '../../src/dataplane/ipvs/dataplane.js';
import { nodeState } from '../../bench/gen.js';

const SEED = 1;
const ENDPOINTS = 10;
const CHANGES = 10;
const sizes = (/\bkbp\.bench=([\d,]+)/.exec(readFileSync('/proc/cmdline', 'utf8'))?.[1] ?? '1000').split(',').map(Number).filter((n) => n > 0);
const ms = (t0: number) => +(performance.now() - t0).toFixed(1);

function sh(cmd: string, args: string[], input?: string): void {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${(r.stderr || r.error?.message || '').slice(0, 500)}`);
}

async function ours(n: number): Promise<{ fullMs: number; changeMs: number[] }> {
  const state = nodeState({ services: n, endpointsPerService: ENDPOINTS });
  const dp = new IpvsDataplane({ pinRoot: `/bench-ipvs-${n}`, devices: [], nodeAddresses: () => [] });
  await dp.init();
  try {
    const plan = buildPlan(state, undefined, { seed: SEED });
    let t0 = performance.now();
    await dp.apply(diffPlans(undefined, plan), plan);
    const fullMs = ms(t0);
    console.log(`# N=${n} full sync steps ${JSON.stringify(dp.lastWriteSteps)}`);
    const changeMs: number[] = [];
    let prev = plan;
    for (let i = 0; i < CHANGES; i++) {
      const k = (i * 7919) % n;
      const f = state.frontends[k]!;
      const changed = i % 2 === 0 ? { ...f, backends: f.backends.slice(1) } : f;
      const next = buildPlan({ frontends: state.frontends.map((x, j) => (j === k ? changed : x)) }, prev, { seed: SEED });
      const ops = diffPlans(prev, next);
      t0 = performance.now();
      await dp.apply(ops, next);
      changeMs.push(ms(t0));
      console.log(`# N=${n} change ${i} ${changeMs.at(-1)} ms: ${JSON.stringify(dp.lastWriteSteps)}`);
      prev = next;
    }
    return { fullMs, changeMs };
  } finally {
    await dp.cleanup();
  }
}

/** The baseline's full sync, then CHANGES single changes (one `ipvsadm` call each: a real server out, then back). */
function baseline(n: number): { fullMs: number; changeMs: number[] } {
  const state = nodeState({ services: n, endpointsPerService: ENDPOINTS });
  const addrs: string[] = [];
  const rules: string[] = [];
  for (const f of state.frontends) {
    addrs.push(`address add ${f.address}/32 dev kbp-bench0`);
    rules.push(`-A -t ${f.address}:${f.port} -s rr`);
    for (const b of f.backends) rules.push(`-a -t ${f.address}:${f.port} -r ${b.address}:${b.port} -m -w 1`);
  }
  writeFileSync('/tmp/ipvs-bench.rules', `${rules.join('\n')}\n`);
  writeFileSync('/tmp/ipvs-bench.addrs', `${addrs.join('\n')}\n`);
  sh('ip', ['link', 'add', 'kbp-bench0', 'type', 'dummy']);
  try {
    let t0 = performance.now();
    sh('ip', ['-batch', '/tmp/ipvs-bench.addrs']);
    sh('sh', ['-c', 'ipvsadm -R < /tmp/ipvs-bench.rules']);
    const fullMs = ms(t0);
    const changeMs: number[] = [];
    for (let i = 0; i < CHANGES; i++) {
      // as ours: an even change takes a frontend's first endpoint out, the odd one after it puts it back
      const f = state.frontends[((i - (i % 2)) * 7919) % n]!;
      const b = f.backends[0]!;
      const vs = `${f.address}:${f.port}`, rs = `${b.address}:${b.port}`;
      t0 = performance.now();
      sh('ipvsadm', i % 2 === 0 ? ['-d', '-t', vs, '-r', rs] : ['-a', '-t', vs, '-r', rs, '-m', '-w', '1']);
      changeMs.push(ms(t0));
    }
    return { fullMs, changeMs };
  } finally {
    sh('ipvsadm', ['-C']);
    sh('ip', ['link', 'del', 'kbp-bench0']);
  }
}

const out: Record<string, { ours: number[]; baseline: number[]; changeMs: number[]; baselineChangeMs: number[] }> = {};
let failed = false;
/** every sample so far: printed after each phase, so a run the watchdog ends still reports (the last line counts) */
const report = () => console.log(`BENCH ${JSON.stringify({ endpoints: ENDPOINTS, sizes: out, failed })}`);
// under the VM's watchdog (kbp.timeout, boot included): stop a minute before it, with what was measured
const watchdogS = Number(/\bkbp\.timeout=(\d+)/.exec(readFileSync('/proc/cmdline', 'utf8'))?.[1] ?? 1800);
setTimeout(() => {
  failed = true;
  console.log(`# ipvs bench: stopped before the VM's watchdog (${watchdogS} s)`);
  report();
  process.exit(1);
}, Math.max(60, watchdogS - 90) * 1000).unref();
try {
  for (const n of sizes) {
    const r = { ours: [] as number[], baseline: [] as number[], changeMs: [] as number[], baselineChangeMs: [] as number[] };
    out[n] = r;
    const rounds = n >= 10_000 ? 2 : 3;
    for (let i = 0; i < rounds; i++) {
      const a = await ours(n);
      r.ours.push(a.fullMs);
      r.changeMs.push(...a.changeMs);
      report();
      const b = baseline(n);
      r.baseline.push(b.fullMs);
      r.baselineChangeMs.push(...b.changeMs);
      console.log(`# N=${n} round ${i + 1}: ours ${a.fullMs} ms (changes ${a.changeMs.join(' ')} ms), baseline ${b.fullMs} ms (changes ${b.changeMs.join(' ')} ms), load ${loadavg()[0]!.toFixed(1)}`);
    }
  }
} catch (e) {
  failed = true;
  console.log(`# ipvs bench failed: ${(e as Error).stack}`);
}
report();
process.exit(failed ? 1 : 0);
