// Whether a live process holds what a pin root pins. The sweepers of dead runs' pin roots judge a run
// by the pid in its root's name, and a pid says nothing about a process in another pid namespace
// (a container, a sandbox sharing the host's bpffs): there it names another process or none, and a
// live run's root would go. A root whose maps or programs some process holds open is spared,
// whatever its name says.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';
import { BpfProgram } from '../src/dataplane/bpf/native/program.js';
import { slotsMarkerPath, stateJournalPath } from '../src/dataplane/bpf/agent-state-file.js';
import { STATE_DIR } from '../src/dataplane/state-file.js';

/** `map:<id>` and `prog:<id>` of every pin under root (bounded depth); our fds are closed again */
export function pinnedIds(root: string, depth = 4): Set<string> {
  const ids = new Set<string>();
  const walk = (dir: string, d: number): void => {
    let names: string[];
    try { names = readdirSync(dir); } catch { return; }
    for (const n of names) {
      const p = join(dir, n);
      let st;
      try { st = statSync(p); } catch { continue; }
      if (st.isDirectory()) {
        if (d > 0) walk(p, d - 1);
        continue;
      }
      try {
        const m = BpfMap.fromPin(p);
        try { ids.add(`map:${m.id}`); } finally { m.close(); }
        continue;
      } catch { /* not a map */ }
      try {
        const g = BpfProgram.fromPin(p);
        try { ids.add(`prog:${g.id}`); } finally { g.close(); }
      } catch { /* neither: a link or a file; nothing to hold */ }
    }
  };
  walk(root, depth);
  return ids;
}

/** `map:<id>` and `prog:<id>` of every BPF object some process this one can see holds an fd to */
export function heldIds(): Set<string> {
  const held = new Set<string>();
  let pids: string[];
  try { pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)); } catch { return held; }
  for (const pid of pids) {
    let fds: string[];
    try { fds = readdirSync(`/proc/${pid}/fd`); } catch { continue; }
    for (const fd of fds) {
      let link: string;
      try { link = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
      const kind = link === 'anon_inode:bpf-map' ? 'map' : link === 'anon_inode:bpf-prog' ? 'prog' : undefined;
      if (!kind) continue;
      let info: string;
      try { info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'); } catch { continue; }
      const id = new RegExp(`^${kind}_id:\\s*(\\d+)`, 'm').exec(info)?.[1];
      if (id) held.add(`${kind}:${id}`);
    }
  }
  return held;
}

/** Whether some process holds a map or program pinned under root (a live run, whatever its pid says). */
export function pinRootHeld(root: string, held: () => Set<string> = heldIds): boolean {
  const ids = pinnedIds(root);
  if (!ids.size) return false;
  const h = held();
  for (const id of ids) if (h.has(id)) return true;
  return false;
}

/** The pin roots tests make, by the pid of the process that made them (fixtures/util.ts tempPinRoot, Datapath). */
const TEST_ROOT = /^kbp-(?:datapath-)?test-(\d+)(?:-|$)/;

/**
 * Removes the test pin roots under bpffs of processes that are gone: one killed (a worker past its
 * timeout, a bench under `timeout`, a SIGKILL) runs no exit handler and left its maps pinned. A live
 * process's roots stay, whoever it is; so does a root something holds open. Returns what it removed.
 */
export function sweepDeadTestRoots(bpffs: string): string[] {
  const removed: string[] = [];
  let held: Set<string> | undefined, names: string[];
  try {
    names = readdirSync(bpffs);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!deadTestRun(name) || pinRootHeld(join(bpffs, name), () => (held ??= heldIds()))) continue;
    rmSync(join(bpffs, name), { recursive: true, force: true });
    removed.push(join(bpffs, name));
  }
  removed.push(...sweepStateFiles((root) => root.startsWith(`${bpffs}/`) && deadTestRun(root.slice(bpffs.length + 1))));
  return removed;
}

/** whether a pin root's name under bpffs is a test's (TEST_ROOT) whose process is gone */
function deadTestRun(name: string): boolean {
  const pid = Number(TEST_ROOT.exec(name)?.[1]);
  return pid > 0 && pid !== process.pid && !pidAlive(pid);
}

/** True while a process of that pid exists (one this process may not signal too). */
export function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * Removes the agent state files (/run/kube-bpf-proxy/<hash>.json, their journal and marker) of pin
 * roots that are gone and that `dead` names: a test's or a lab's pin root removed by hand, not by
 * `cleanup`, left its file there. The file says its pin root in its first bytes. Returns the paths.
 */
export function sweepStateFiles(dead: (pinRoot: string) => boolean): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(STATE_DIR);
  } catch {
    return removed;
  }
  const head = Buffer.alloc(512);
  for (const name of names) {
    if (!/^[0-9a-f]{16}\.json$/.test(name)) continue;
    const path = join(STATE_DIR, name);
    let n = 0;
    try {
      const fd = openSync(path, 'r');
      try { n = readSync(fd, head, 0, head.length, 0); } finally { closeSync(fd); }
    } catch {
      continue;
    }
    const root = /"pinRoot":"([^"]+)"/.exec(head.toString('utf8', 0, n))?.[1];
    if (!root || existsSync(root) || !dead(root)) continue;
    for (const p of [path, stateJournalPath(path), slotsMarkerPath(path)]) rmSync(p, { force: true });
    removed.push(path);
  }
  return removed;
}
