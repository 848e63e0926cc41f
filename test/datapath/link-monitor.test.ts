// The BPF data plane follows link events from startLoad() on (before the agent's heap holds the source
// and the first sync's plan) through an rtnetlink subscription in the agent itself: no child process.
// The `ip monitor` child it replaced was spawned by fork, which write-protects every page of the
// process; spawned after a fresh node's first sync had planned, it left a one-change sync ~20 page
// faults (+0.3 ms) slower for hundreds of changes (docs/perf-log.md, session 15 p15chg), and a restart
// after it died forked the grown agent again.
import test from 'ava';
import { readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
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

/** inodes of this process's rtnetlink sockets bound to multicast groups (a subscription) */
function routeSubscriptions(): number[] {
  const mine = new Set<number>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) mine.add(Number(m[1]));
    } catch { /* closed meanwhile */ }
  }
  // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
  return readFileSync('/proc/self/net/netlink', 'latin1').split('\n').slice(1).flatMap((l) => {
    const f = l.trim().split(/\s+/);
    return f.length >= 10 && f[1] === '0' && parseInt(f[3]!, 16) !== 0 && mine.has(Number(f[9])) ? [Number(f[9])] : [];
  });
}

if (!isRoot) {
  test('link monitor tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('startLoad() subscribes to link events before the load is done, without a child process (a fork after the first sync planned write-protected its pages); close() ends it', async (t) => {
    const root = tempPinRoot(t, false);
    t.teardown(() => rmSync(defaultStatePath(root), { force: true }));
    const beforeKids = new Set(monitorChildren());
    const beforeSubs = new Set(routeSubscriptions());
    const dp = new BpfDataplane({
      pinRoot: root, objectPath: dataplaneObject(), seed: 1, socketLb: false, cgroup: '', nodeAddresses: () => [], ctSweepMs: 0,
    });
    let closed = false;
    t.teardown(async () => { if (!closed) await dp.close(); });
    dp.startLoad();
    const subs = routeSubscriptions().filter((i) => !beforeSubs.has(i));
    t.is(subs.length, 1, 'one rtnetlink subscription right after startLoad(), before init()');
    t.deepEqual(monitorChildren().filter((p) => !beforeKids.has(p)), [], 'no `ip monitor` child');
    t.true(dp.fresh(), 'the load is under way (a fresh pin root)');
    await dp.close();
    closed = true;
    // the socket closes on the loop's next turn after the subscription is stopped
    for (let i = 0; i < 200 && routeSubscriptions().some((s) => subs.includes(s)); i++) await new Promise((r) => setTimeout(r, 10));
    t.deepEqual(routeSubscriptions().filter((s) => subs.includes(s)), [], 'close() ended the subscription');
  });
}
