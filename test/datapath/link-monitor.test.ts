// The BPF data plane's link monitor (an `ip monitor` child) is spawned by startLoad(), before the
// agent's heap holds the source and the first sync's plan: libuv spawns by fork, which write-protects
// every page of the process, and each page then faults at its next write. Spawned in init(), after a
// fresh node's first sync had planned beside the verifier, it left a one-change sync ~20 page faults
// (+0.3 ms) slower for hundreds of changes (docs/PERF.md, session 15 p15chg).
import test from 'ava';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { BpfDataplane } from '../../src/dataplane/bpf/dataplane.js';
import { defaultStatePath } from '../../src/dataplane/bpf/agent-state-file.js';
import { dataplaneObject, isRoot, tempPinRoot } from './fixtures/util.js';

/** this process's children (of any of its threads) running `ip ... monitor` */
function monitorChildren(): number[] {
  const out: number[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    let kids: string;
    try {
      kids = readFileSync(`/proc/self/task/${tid}/children`, 'latin1');
    } catch {
      continue;
    }
    for (const pid of kids.split(' ').filter(Boolean)) {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
        if (/(^|\/)ip$/.test(argv[0] ?? '') && argv.includes('monitor')) out.push(Number(pid));
      } catch { /* gone */ }
    }
  }
  return out;
}

if (!isRoot) {
  test('link monitor tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('startLoad() spawns the link monitor before the load is done (a fork after the first sync planned write-protected its pages); close() ends it', async (t) => {
    const root = tempPinRoot(t, false);
    t.teardown(() => rmSync(defaultStatePath(root), { force: true }));
    const before = new Set(monitorChildren());
    const dp = new BpfDataplane({
      pinRoot: root, objectPath: dataplaneObject(), seed: 1, socketLb: false, cgroup: '', nodeAddresses: () => [], ctSweepMs: 0,
    });
    let closed = false;
    t.teardown(async () => { if (!closed) await dp.close(); });
    dp.startLoad();
    // spawn() returns once the child has exec'd: no wait
    const spawned = monitorChildren().filter((p) => !before.has(p));
    t.is(spawned.length, 1, 'one `ip monitor` child right after startLoad(), before init()');
    t.true(dp.fresh(), 'the load is under way (a fresh pin root)');
    await dp.close();
    closed = true;
    // SIGTERM: gone once reaped (bounded wait)
    for (let i = 0; i < 200 && monitorChildren().some((p) => spawned.includes(p)); i++) await new Promise((r) => setTimeout(r, 10));
    t.deepEqual(monitorChildren().filter((p) => spawned.includes(p)), [], 'close() ended the monitor');
  });
}
