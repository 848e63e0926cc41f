// How many CPUs the agent may use: the fewer of the CPUs it may run on (affinity, what
// os.availableParallelism() counts) and its cgroup's CPU quota. A DaemonSet pod with
// `resources.limits.cpu: 1` on a 64-CPU node sees 64 in availableParallelism(); four worker threads
// there would be throttled by the quota (CFS bandwidth) and hold the sync longer, not shorter. The
// addon's threads (a full sync's hash batches and Maglev fill) are sized by cpuBudget().
//
// The quota is the smallest along the process's cgroup and its ancestors up to the hierarchy's
// mount: cgroup v2's cpu.max ("max 100000" or "150000 100000"), v1's cpu.cfs_quota_us (-1 for none)
// over cpu.cfs_period_us. A quota of 1.5 CPUs counts 1 (whole CPUs, as Go's automaxprocs does).
import { availableParallelism } from 'node:os';
import { cgroupDirs, procView, type CgroupView } from './cgroup.js';

export type { CgroupView } from './cgroup.js';

/** The CPU quota in CPUs (fractional) that applies to this process, or undefined for none. */
export function cpuQuota(view: CgroupView = procView()): number | undefined {
  let best: number | undefined;
  const take = (quota: number, period: number) => {
    if (quota > 0 && period > 0 && (best === undefined || quota / period < best)) best = quota / period;
  };
  for (const { dir, v2 } of cgroupDirs(view, 'cpu')) {
    if (v2) {
      // cpu.max is there when the cpu controller is enabled for the directory
      const [q, p] = (view.read(`${dir}/cpu.max`) ?? '').trim().split(/\s+/);
      if (q && q !== 'max') take(Number(q), Number(p ?? 100000));
    } else {
      const q = Number((view.read(`${dir}/cpu.cfs_quota_us`) ?? '').trim());
      const p = Number((view.read(`${dir}/cpu.cfs_period_us`) ?? '').trim());
      if (Number.isFinite(q) && Number.isFinite(p)) take(q, p);
    }
  }
  return best;
}

let cached: number | undefined;

/** Whole CPUs the agent may use: min(availableParallelism(), the cgroup quota rounded down), >= 1. */
export function cpuBudget(view?: CgroupView): number {
  if (view === undefined && cached !== undefined) return cached;
  const quota = cpuQuota(view);
  const n = Math.max(1, Math.min(availableParallelism(), quota === undefined ? Infinity : Math.floor(quota)));
  if (view === undefined) cached = n;
  return n;
}
