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
import { readFileSync } from 'node:fs';

export interface CgroupView {
  /** /proc/self/cgroup */
  cgroup: string;
  /** /proc/self/mountinfo */
  mountinfo: string;
  /** a file's text, or undefined when it cannot be read */
  read: (path: string) => string | undefined;
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function procView(): CgroupView {
  return { cgroup: readOrUndefined('/proc/self/cgroup') ?? '', mountinfo: readOrUndefined('/proc/self/mountinfo') ?? '', read: readOrUndefined };
}

export interface CgroupMount {
  /** the directory of the hierarchy the mount shows (its root in /proc/self/mountinfo) */
  root: string;
  point: string;
  v2: boolean;
  /** cgroup v1: the controllers of the hierarchy (its super options); [] for v2 */
  controllers: string[];
}

/** The cgroup (v1) and cgroup2 mounts in mountinfo's text (/proc/self/mountinfo). */
export function cgroupMounts(mountinfo: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const [fstype, , options = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({ root: unescape(pre[3] ?? '/'), point: unescape(pre[4] ?? ''), v2: fstype === 'cgroup2', controllers: fstype === 'cgroup' ? options.split(',') : [] });
  }
  return out;
}

/** The directories from the process's cgroup up to the mount's root, innermost first. */
function chain(m: CgroupMount, path: string): string[] {
  // the mount shows the hierarchy from m.root down; a path outside it (another namespace's view)
  // can't be read here
  const root = m.root === '/' ? '' : m.root;
  if (root !== '' && path !== root && !path.startsWith(`${root}/`)) return [];
  const parts = path.slice(root.length).split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  const dirs: string[] = [];
  for (let i = parts.length; i >= 0; i--) dirs.push([m.point, ...parts.slice(0, i)].join('/'));
  return dirs;
}

/** The CPU quota in CPUs (fractional) that applies to this process, or undefined for none. */
export function cpuQuota(view: CgroupView = procView()): number | undefined {
  const mounts = cgroupMounts(view.mountinfo);
  let best: number | undefined;
  const take = (quota: number, period: number) => {
    if (quota > 0 && period > 0 && (best === undefined || quota / period < best)) best = quota / period;
  };
  for (const line of view.cgroup.split('\n')) {
    const first = line.indexOf(':'), second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second), path = line.slice(second + 1);
    if (controllers === '') {
      // cgroup v2: one hierarchy; cpu.max is there when the cpu controller is enabled for it
      for (const m of mounts.filter((x) => x.v2)) {
        for (const dir of chain(m, path)) {
          const [q, p] = (view.read(`${dir}/cpu.max`) ?? '').trim().split(/\s+/);
          if (q && q !== 'max') take(Number(q), Number(p ?? 100000));
        }
      }
    } else if (controllers.split(',').includes('cpu')) {
      for (const m of mounts.filter((x) => x.controllers.includes('cpu'))) {
        for (const dir of chain(m, path)) {
          const q = Number((view.read(`${dir}/cpu.cfs_quota_us`) ?? '').trim());
          const p = Number((view.read(`${dir}/cpu.cfs_period_us`) ?? '').trim());
          if (Number.isFinite(q) && Number.isFinite(p)) take(q, p);
        }
      }
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
