// What the data plane needs from the host before it touches the kernel: a bpf filesystem for pins,
// the cgroup v2 hierarchy for the socket hooks. The agent, the lab, the tests and the bench all
// prepare the host through these functions, so a new machine (bpffs not mounted, a systemd host whose
// cgroup v2 sits at /sys/fs/cgroup, or a hybrid one with it at /sys/fs/cgroup/unified) behaves the
// same everywhere. Each function says what it did, for the caller to log.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KbpError } from '../util/errors.js';
import { unescapeMountField } from '../util/cgroup.js';

export const BPFFS_MOUNT = '/sys/fs/bpf';
/** where cgroup v2 is mounted when the host has none mounted (Cilium mounts at /run/cilium/cgroupv2) */
export const CGROUP2_FALLBACK = '/run/kube-bpf-proxy/cgroupv2';

interface Mount { point: string; fstype: string }

/** The mounts this process sees, from /proc/self/mounts (octal escapes decoded). */
export function mounts(): Mount[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return [];
  }
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const [, point, fstype] = line.split(' ');
    if (!point || !fstype) continue;
    out.push({ point: unescapeMountField(point), fstype });
  }
  return out;
}

/** The filesystem type of the mount that holds path ('' when none is found). */
export function fsTypeOf(path: string): string {
  const real = resolve(path);
  let best = '', type = '';
  for (const m of mounts()) {
    const inside = real === m.point || real.startsWith(m.point.endsWith('/') ? m.point : `${m.point}/`);
    // a later mount over the same point hides the earlier one, hence >=
    if (inside && m.point.length >= best.length) {
      best = m.point;
      type = m.fstype;
    }
  }
  return type;
}

export function isBpffs(path: string): boolean {
  return fsTypeOf(path) === 'bpf';
}

export function isCgroup2(path: string): boolean {
  return fsTypeOf(path) === 'cgroup2' && existsSync(resolve(path, 'cgroup.procs'));
}

function mount(args: string[], what: string): void {
  try {
    execFileSync(systemMount(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new KbpError('KBP_ERR_KERNEL_FEATURE', `${what}: ${stderr || (e as Error).message}`, { cause: e });
  }
}

function systemMount(): string {
  for (const p of ['/usr/bin/mount', '/bin/mount', '/usr/sbin/mount', '/sbin/mount']) if (existsSync(p)) return p;
  throw new KbpError('KBP_ERR_KERNEL_FEATURE', 'mount not found (install util-linux / mount)');
}

/**
 * Mounts bpffs at mountPoint (mode 0700: pins are the agent's alone) unless one is there. Returns what
 * it did, or undefined when nothing was needed. KBP_ERR_KERNEL_FEATURE when the mount fails (no
 * CONFIG_BPF_SYSCALL, not root, a container without the host's bpffs).
 */
export function ensureBpffs(mountPoint = BPFFS_MOUNT): string | undefined {
  if (isBpffs(mountPoint)) return undefined;
  checkMountHidesNothing(mountPoint, `bpffs at ${mountPoint}`);
  try {
    mkdirSync(mountPoint, { recursive: true });
  } catch (e) {
    throw new KbpError('KBP_ERR_KERNEL_FEATURE', `bpffs: cannot create ${mountPoint}: ${(e as Error).message}`, { cause: e });
  }
  mount(['-t', 'bpf', '-o', 'mode=0700', 'bpf', mountPoint], `bpffs is not mounted at ${mountPoint} and mounting it failed`);
  if (!isBpffs(mountPoint)) throw new KbpError('KBP_ERR_KERNEL_FEATURE', `bpffs at ${mountPoint}: mount reported success but no bpf filesystem is there`);
  return `mounted bpffs at ${mountPoint} (mode 0700)`;
}

/**
 * Refuses to mount over a folder that holds anything but empty folders (an earlier, empty pin root):
 * a mount hides what the folder holds from every process of the mount namespace, so a pin root such
 * as /tmp/kbp (whose bpffs would be mounted on /tmp) must fail with the reason, not hide /tmp.
 */
function checkMountHidesNothing(mountPoint: string, what: string): void {
  let names: string[];
  try {
    names = readdirSync(mountPoint);
  } catch {
    return; // missing (created at the mount) or unreadable (the mount itself says why)
  }
  const held = names.filter((n) => {
    try {
      const p = join(mountPoint, n);
      return !statSync(p).isDirectory() || readdirSync(p).length > 0;
    } catch {
      return true;
    }
  }).sort();
  if (!held.length) return;
  const shown = held.slice(0, 3).join(', ') + (held.length > 3 ? ` and ${held.length - 3} more` : '');
  throw new KbpError('KBP_ERR_CONFIG', `${what}: ${mountPoint} is not a bpf filesystem and holds ${shown}: mounting bpffs there would hide them; use a pin root under ${BPFFS_MOUNT} (the default ${join(BPFFS_MOUNT, 'kube-bpf-proxy')}) or in a folder of its own`);
}

/** The bpffs mount point a pin root lives on: /sys/fs/bpf for pins under it, else the pin root's parent. */
export function bpffsOf(pinRoot: string): string {
  const abs = resolve(pinRoot);
  if (abs === BPFFS_MOUNT || abs.startsWith(`${BPFFS_MOUNT}/`)) return BPFFS_MOUNT;
  return resolve(abs, '..');
}

/**
 * Refuses a pin root that is a bpf filesystem's mount point itself (/sys/fs/bpf): pins there sit
 * beside every other agent's and test's roots, and a cleanup of it would remove them all.
 */
export function checkPinRootNotMount(pinRoot: string, what: string): void {
  const root = resolve(pinRoot);
  if (mounts().some((m) => m.fstype === 'bpf' && m.point === root)) {
    throw new KbpError('KBP_ERR_CONFIG', `${what}: pin root ${root} is a bpf filesystem's mount point itself; use a directory under it (e.g. ${join(root, 'kube-bpf-proxy')}): pins there would sit beside every other agent's, and a cleanup would remove them all`);
  }
}

/**
 * Refuses a pin root that another user could have planted or can write into: an existing one must be
 * a directory owned by this process's user and writable by no one else. Pins there are loaded into
 * the kernel's data path, so a writable pin root is a way in for anyone who can write it.
 */
export function checkPinRoot(pinRoot: string, opts: { mountsBpffs?: boolean } = {}): void {
  const root = resolve(pinRoot);
  checkPinRootNotMount(root, '--bpffs');
  if (existsSync(root)) {
    const st = statSync(root);
    if (!st.isDirectory()) throw new KbpError('KBP_ERR_CONFIG', `--bpffs ${root}: exists and is not a directory`);
    const uid = process.getuid?.() ?? 0;
    if (st.uid !== uid) throw new KbpError('KBP_ERR_CONFIG', `--bpffs ${root}: owned by uid ${st.uid}, not by this agent's uid ${uid}; refusing to load pins another user created`);
    if ((st.mode & 0o022) !== 0) throw new KbpError('KBP_ERR_CONFIG', `--bpffs ${root}: mode ${(st.mode & 0o777).toString(8)} lets other users write pins; chmod go-w it or remove it`);
  }
  // the BPF loader mounts bpffs where the pin root lives (bpffsOf) when none is there (IPVS and
  // nftables modes mount nothing: mountsBpffs false)
  const mountPoint = bpffsOf(root);
  if (opts.mountsBpffs !== false && !isBpffs(mountPoint)) checkMountHidesNothing(mountPoint, `--bpffs ${root}`);
}

/**
 * The cgroup v2 hierarchy for the socket hooks: /sys/fs/cgroup on a unified (systemd) host,
 * /sys/fs/cgroup/unified on a hybrid one, any other cgroup2 mount, or undefined when none is mounted.
 */
export function findCgroup2(): string | undefined {
  const points = mounts().filter((m) => m.fstype === 'cgroup2').map((m) => m.point).filter((p) => existsSync(`${p}/cgroup.procs`));
  for (const preferred of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) if (points.includes(preferred)) return preferred;
  return points.sort((a, b) => a.length - b.length)[0];
}

/**
 * findCgroup2(), or cgroup v2 mounted at CGROUP2_FALLBACK when the host has no cgroup2 mount (a
 * cgroup v1 host whose kernel has v2 nonetheless). Returns the path and what was done.
 */
export function ensureCgroup2(): { path: string; did?: string } {
  const found = findCgroup2();
  if (found) return { path: found };
  if (isCgroup2(CGROUP2_FALLBACK)) return { path: CGROUP2_FALLBACK };
  mkdirSync(CGROUP2_FALLBACK, { recursive: true });
  mount(['-t', 'cgroup2', 'none', CGROUP2_FALLBACK], `no cgroup v2 mount found and mounting one at ${CGROUP2_FALLBACK} failed`);
  return { path: CGROUP2_FALLBACK, did: `mounted cgroup v2 at ${CGROUP2_FALLBACK} (the host had none mounted)` };
}

/**
 * Everything the BPF data plane needs of the host, in one call for the agent, the lab, the tests and
 * the bench: bpffs for pinRoot, a cgroup v2 path. Returns the cgroup v2 root and the list of what it
 * did (empty when the host was ready).
 */
export function prepareHost(opts: { pinRoot?: string } = {}): { cgroup2: string; did: string[] } {
  const did: string[] = [];
  const b = ensureBpffs(opts.pinRoot ? bpffsOf(opts.pinRoot) : BPFFS_MOUNT);
  if (b) did.push(b);
  const cg = ensureCgroup2();
  if (cg.did) did.push(cg.did);
  return { cgroup2: cg.path, did };
}
