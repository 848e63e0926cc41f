// The process's cgroups as /proc shows them, for the limits the agent sizes itself by (util/cpus.ts:
// the CPU quota; dataplane/bpf/map-memory.ts: the memory room). v2's single hierarchy and v1's
// per-controller ones, each read from the process's own cgroup up to the hierarchy's mount, since a
// limit set on an ancestor (a pod's cgroup above its container's) binds as well.
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

export function procView(): CgroupView {
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

/** A path field of /proc/self/mounts or mountinfo: the kernel writes space, tab, newline and backslash as octal escapes. */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
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
    out.push({ root: unescapeMountField(pre[3] ?? '/'), point: unescapeMountField(pre[4] ?? ''), v2: fstype === 'cgroup2', controllers: fstype === 'cgroup' ? options.split(',') : [] });
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

/**
 * The directories whose limits apply to this process for a controller, innermost first: on cgroup v2
 * (v2: true) every directory from its cgroup up to the mount, on v1 those of the hierarchies that hold
 * the controller. A controller not enabled somewhere simply has no files there.
 */
export function cgroupDirs(view: CgroupView, controller: string): Array<{ dir: string; v2: boolean }> {
  const mounts = cgroupMounts(view.mountinfo);
  const out: Array<{ dir: string; v2: boolean }> = [];
  for (const line of view.cgroup.split('\n')) {
    const first = line.indexOf(':'), second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second), path = line.slice(second + 1);
    if (controllers === '') {
      for (const m of mounts.filter((x) => x.v2)) for (const dir of chain(m, path)) out.push({ dir, v2: true });
    } else if (controllers.split(',').includes(controller)) {
      for (const m of mounts.filter((x) => x.controllers.includes(controller))) for (const dir of chain(m, path)) out.push({ dir, v2: false });
    }
  }
  return out;
}
