// cpuQuota / cpuBudget (src/util/cpus.ts): the addon's threads are sized by the cgroup's CPU quota,
// not by the CPUs the node has. Views of /proc/self/cgroup, /proc/self/mountinfo and the cgroup
// files as a hybrid host, a systemd host, a container and a v1 host show them.
import test from 'ava';
import { availableParallelism } from 'node:os';
import { cpuBudget, cpuQuota, type CgroupView } from '../../src/util/cpus.js';

function view(cgroup: string, mountinfo: string, files: Record<string, string>): CgroupView {
  return { cgroup, mountinfo, read: (p) => files[p] };
}

const V2_SYSTEMD = '30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n';
const V1_HYBRID = [
  '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');

test('cgroup v2: the smallest cpu.max from the process cgroup up to the mount', (t) => {
  const cg = '0::/kubepods.slice/pod1/ctr\n';
  const files = {
    '/sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max': 'max 100000\n',
    '/sys/fs/cgroup/kubepods.slice/pod1/cpu.max': '150000 100000\n',
    '/sys/fs/cgroup/kubepods.slice/cpu.max': '800000 100000\n',
  };
  t.is(cpuQuota(view(cg, V2_SYSTEMD, files)), 1.5);
  t.is(cpuBudget(view(cg, V2_SYSTEMD, files)), 1, 'a quota of 1.5 CPUs counts one whole CPU');
});

test('cgroup v2 in a container: the namespace root holds the pod limit', (t) => {
  const files = { '/sys/fs/cgroup/cpu.max': '200000 100000\n' };
  t.is(cpuQuota(view('0::/\n', V2_SYSTEMD, files)), 2);
  t.is(cpuBudget(view('0::/\n', V2_SYSTEMD, files)), Math.min(2, availableParallelism()));
});

test('no quota anywhere (max, -1, files missing): the CPUs the process may run on', (t) => {
  t.is(cpuQuota(view('0::/a\n', V2_SYSTEMD, { '/sys/fs/cgroup/a/cpu.max': 'max 100000' })), undefined);
  t.is(cpuQuota(view('0::/a\n', V2_SYSTEMD, {})), undefined);
  t.is(cpuQuota(view('', '', {})), undefined);
  const v1 = '4:memory:/x\n2:cpu,cpuacct:/x\n0::/\n';
  t.is(cpuQuota(view(v1, V1_HYBRID, { '/sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu,cpuacct/x/cpu.cfs_period_us': '100000' })), undefined);
  t.is(cpuBudget(view(v1, V1_HYBRID, {})), availableParallelism());
});

test('cgroup v1: cfs_quota_us over cfs_period_us of the cpu hierarchy, a mount rooted inside the tree', (t) => {
  const v1 = '2:cpu,cpuacct:/docker/abc\n0::/\n';
  const files = { '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '50000\n', '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n' };
  t.is(cpuQuota(view(v1, V1_HYBRID, files)), 0.5);
  t.is(cpuBudget(view(v1, V1_HYBRID, files)), 1, 'never fewer than one');
  // a container's v1 mount shows its own cgroup as the mount's root
  const inner = '31 30 0:28 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n';
  t.is(cpuQuota(view(v1, inner, { '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '300000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), 3);
  // a path outside the mount's root (another namespace's view) is not guessed at
  t.is(cpuQuota(view('2:cpu:/elsewhere\n', inner, { '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), undefined);
});

test('garbage in the files is ignored, not a crash', (t) => {
  const files = { '/sys/fs/cgroup/a/cpu.max': 'lots of cpu\n', '/sys/fs/cgroup/cpu.max': '0 0' };
  t.is(cpuQuota(view('0::/a\n', V2_SYSTEMD, files)), undefined);
  t.is(cpuQuota(view('garbage\n::\n', 'x - y\n', {})), undefined);
});
