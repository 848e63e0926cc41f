// The addons' worker threads when none can start (native/src/threads.h): a pod's PID limit (a pids
// cgroup at its maximum) makes clone() fail; std::thread then threw into code built without
// exceptions and std::terminate ended the agent. Each threaded path must do the work on the calling
// thread instead, with the same result.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, repoRoot } from './fixtures/util.js';

/** a directory under which a child pids cgroup can be made: v1's pids hierarchy, or v2 with the controller delegated */
function pidsParent(): string | undefined {
  if (existsSync('/sys/fs/cgroup/pids/pids.max') || existsSync('/sys/fs/cgroup/pids/cgroup.procs')) return '/sys/fs/cgroup/pids';
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type !== 'cgroup2' || !dir) continue;
    try {
      if (readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('pids')) return dir;
    } catch { /* not readable: try the next */ }
  }
  return undefined;
}

test('with no thread to be had (a pids cgroup at its limit) the Maglev fill, the fill job and a split hash batch run on the calling thread', (t) => {
  if (!isRoot) { t.log('needs root (cgroups, BPF maps)'); t.pass(); return; }
  const parent = pidsParent();
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
