// The IPVS data plane's sync cost. The host's kernel has no IPVS, so this bench boots the VM tier's
// Debian 6.1 kernel (scripts/test-vm.sh with KBP_VM_MAIN=ipvs-bench.mjs) and runs
// test/vm/ipvs-bench.ts there: full sync of N Services x 10 endpoints and one endpoint change,
// beside `ip -batch` + `ipvsadm -R` of the same servers in the same VM, alternately (and one change
// beside one `ipvsadm` call). Minutes under
// software emulation, so it is skipped by --quick and without qemu; KBP_IPVS_BENCH_SIZES picks N
// (default 1000,10000). Times are the emulated guest's: compare the ratio, not the milliseconds.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { defineBench, stats } from './lib.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');

interface GuestResult { endpoints: number; failed: boolean; sizes: Record<string, { ours: number[]; baseline: number[]; changeMs: number[]; baselineChangeMs?: number[] }> }

function bootBench(sizes: string): Promise<{ result?: GuestResult; tail: string }> {
  return new Promise((resolve) => {
    const p = spawn('bash', [join(repo, 'scripts/test-vm.sh')], {
      cwd: repo, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, KBP_VM_MAIN: 'ipvs-bench.mjs', KBP_VM_BENCH: sizes, KBP_VM_TIMEOUT: process.env.KBP_VM_TIMEOUT ?? '1800' },
    });
    let out = '';
    const keep = (d: Buffer) => { out += d.toString(); process.stderr.write(d); };
    p.stdout.on('data', keep);
    p.stderr.on('data', keep);
    p.on('close', () => {
      // the guest prints its samples after each phase: the last line has them all
      const line = out.split('\n').findLast((l) => l.startsWith('BENCH '));
      resolve({ ...(line && { result: JSON.parse(line.slice(6)) as GuestResult }), tail: out.slice(-1500) });
    });
  });
}

/** bench/ipvs-write.ts in a child (its own heap, and the stand-in netlink addon before any real one loads). */
function hostWrite(n: number): { wallMs: number; cpuMs: number; steps: Record<string, number> } {
  const r = spawnSync(process.execPath, ['--import=tsx', join(repo, 'bench/ipvs-write.ts'), String(n)], {
    cwd: repo, encoding: 'utf8', timeout: 600_000,
    env: { ...process.env, KBP_NETLINK_ADDON: join(repo, 'bench/ipvs-netlink-standin.cjs') },
  });
  const line = r.stdout?.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`bench/ipvs-write.ts ${n}: exit ${r.status}: ${(r.stderr || r.error?.message || '').slice(-800)}`);
  return JSON.parse(line) as { wallMs: number; cpuMs: number; steps: Record<string, number> };
}

export default defineBench({
  name: 'ipvs',
  title: 'IPVS mode: full sync and one change, in the VM (Debian 6.1 under qemu TCG)',
  description: 'IpvsDataplane.apply() of N Services x 10 endpoints on an empty kernel (virtual and real servers, VIPs on the dummy, the nft helper table), then one endpoint change at a time; baseline: `ip -batch` of the VIPs plus `ipvsadm -R` of the same servers (one netlink request per server, as kube-proxy writes), alternately with ours in the same VM. Emulated: the ratio carries over, the milliseconds do not. First row: the same full write on this host without the kernel (bench/ipvs-write.ts, netlink answered by a stand-in addon): the TypeScript side at host speed.',
  skip: () => {
    if (process.getuid?.() !== 0) return 'needs root (the VM tier)';
    if (!existsSync('/usr/bin/qemu-system-x86_64')) return 'qemu-system-x86_64 is not installed';
    if (!existsSync('/usr/sbin/ipvsadm')) return 'ipvsadm is not installed (the baseline; scripts/setup.sh installs it)';
    return undefined;
  },
  async run(ctx) {
    // without the kernel, on this host: the TypeScript side of a full write (model, diff, encoding),
    // which the VM's emulation slows most (its diff step took 30-97 s there before the ops were
    // written straight into buffers)
    {
      const n = ctx.quick ? 2000 : 10000;
      const runs = Array.from({ length: ctx.quick ? 1 : 3 }, () => hostWrite(n));
      const cpu = stats(runs.map((r) => r.cpuMs));
      const step = (k: string) => stats(runs.map((r) => r.steps[k] ?? 0)).median;
      ctx.metric({ name: `full write ${n}, host, no kernel: CPU`, value: cpu.median, unit: 'ms', better: 'lower', note: `min ${cpu.min} max ${cpu.max}, ${cpu.runs} runs; wall steps (median ms): model ${step('model')}, diff ${step('diff')}, ipvs ${step('ipvs')}, nft ${step('nft')}, state ${step('state')}; netlink answered by bench/ipvs-netlink-standin.cjs` });
    }
    if (ctx.quick) {
      ctx.note('skipped in --quick: booting the VM and syncing under emulation takes minutes');
      return;
    }
    const sizes = process.env.KBP_IPVS_BENCH_SIZES ?? '1000,10000';
    const { result, tail } = await bootBench(sizes);
    if (!result) throw new Error(`the VM printed no BENCH line:\n${tail}`);
    if (result.failed) ctx.note('the guest reported a failed run; the sizes below are those that finished');
    for (const [n, r] of Object.entries(result.sizes)) {
      if (!r.ours.length) continue;
      const o = stats(r.ours), c = stats(r.changeMs);
      const b = r.baseline.length ? stats(r.baseline) : undefined;
      if (b) ctx.metric({ name: `ip -batch + ipvsadm -R ${n}`, value: b.median, unit: 'ms', note: `min ${b.min} max ${b.max}, ${b.runs} runs` });
      else ctx.note(`${n}: the baseline did not finish in the VM's time; ours alone`);
      ctx.metric({ name: `full sync ${n}`, value: o.median, unit: 'ms', ...(b && { baseline: `ip -batch + ipvsadm -R ${n}` }), better: 'lower', note: `min ${o.min} max ${o.max}, ${o.runs} runs, emulated` });
      const bc = r.baselineChangeMs?.length ? stats(r.baselineChangeMs) : undefined;
      if (bc) ctx.metric({ name: `ipvsadm one change ${n} p50`, value: bc.median, unit: 'ms', note: `min ${bc.min} max ${bc.max}, ${bc.runs} changes (a process each)` });
      ctx.metric({ name: `one endpoint change ${n} p50`, value: c.median, unit: 'ms', better: 'lower', ...(bc && { baseline: `ipvsadm one change ${n} p50` }), note: `min ${c.min} max ${c.max}, ${c.runs} changes, emulated` });
    }
  },
});
