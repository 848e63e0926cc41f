// The addons' worker threads when none can start (native/src/threads.h): a pod's PID limit (a pids
// cgroup at its maximum) makes clone() fail; std::thread then threw into code built without
// exceptions and std::terminate ended the agent. Each threaded path must do the work on the calling
// thread instead, with the same result.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupMounts } from '../../src/util/cgroup.js';
import { isRoot, repoRoot } from './fixtures/util.js';

/**
 * a directory under which a child cgroup with the given controller can be made: the v1 hierarchy
 * that has it, or cgroup v2 with it delegated (in cgroup.subtree_control)
 */
function controllerParent(controller: 'pids' | 'cpu'): { dir: string; v2: boolean } | undefined {
  for (const m of cgroupMounts(readFileSync('/proc/self/mountinfo', 'utf8'))) {
    if (m.controllers.includes(controller)) return { dir: m.point, v2: false };
    try {
      if (m.v2 && readFileSync(join(m.point, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes(controller)) return { dir: m.point, v2: true };
    } catch { /* not readable: try the next */ }
  }
  return undefined;
}

test('with no thread to be had (a pids cgroup at its limit) the Maglev fill, the fill job and a split hash batch run on the calling thread', (t) => {
  if (!isRoot) { t.log('needs root (cgroups, BPF maps)'); t.pass(); return; }
  const parent = controllerParent('pids')?.dir;
  if (!parent) { t.log('no pids cgroup controller to limit a child with'); t.pass(); return; }
  const cg = join(parent, `kbp-pids-${process.pid}-${Date.now()}`);
  mkdirSync(cg);
  t.teardown(() => { try { rmdirSync(cg); } catch { /* the child has exited: empty; else left for the log */ } });
  const r = spawnSync(process.execPath, [join(repoRoot, 'testing', 'pids-limit-child.mjs'), cg, repoRoot], { encoding: 'utf8', timeout: 60_000 });
  t.is(r.signal, null, `the child ended by ${r.signal}: ${r.stderr.slice(-400)}`);
  t.is(r.status, 0, r.stderr.slice(-400));
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { fillSame: boolean; jobSame: boolean; batch: { ret: number; processed: number } };
  t.true(out.fillSame, 'the fill over 4 threads equals the fill on one');
  t.true(out.jobSame, 'the fill job wrote the same slots');
  t.deepEqual(out.batch, { ret: 0, processed: 40000 });
});

test('in a cgroup with a one-CPU quota the addon\'s threads are sized for one CPU (cpuBudget reads the real cgroup)', (t) => {
  if (!isRoot) { t.log('needs root (cgroups)'); t.pass(); return; }
  const parent = controllerParent('cpu');
  if (!parent) { t.log('no cpu cgroup controller to limit a child with'); t.pass(); return; }
  const cg = join(parent.dir, `kbp-cpu-${process.pid}-${Date.now()}`);
  mkdirSync(cg);
  t.teardown(() => { try { rmdirSync(cg); } catch { /* the child has exited: empty; else left for the log */ } });
  if (parent.v2) writeFileSync(join(cg, 'cpu.max'), '100000 100000');
  else writeFileSync(join(cg, 'cpu.cfs_quota_us'), '100000');
  // the child joins the cgroup before it reads /proc/self/cgroup
  const code = `import { writeFileSync } from 'node:fs';
writeFileSync(${JSON.stringify(join(cg, 'cgroup.procs'))}, String(process.pid));
const { cpuBudget, cpuQuota } = await import(${JSON.stringify(join(repoRoot, 'src/util/cpus.ts'))});
console.log(JSON.stringify({ quota: cpuQuota(), budget: cpuBudget() }));`;
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', code], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  t.is(r.status, 0, r.stderr.slice(-400));
  t.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), { quota: 1, budget: 1 });
});
