// Pins never land in a bpf filesystem's root: an object opened without a pin root pins nothing
// (libbpf's default for LIBBPF_PIN_BY_NAME maps is /sys/fs/bpf/<name>: lb_* maps were found there,
// held by no process), and a pin root that is a mount point itself is refused by open, load and
// cleanup (a cleanup of /sys/fs/bpf would remove every other agent's and test's roots).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/dataplane/bpf/native/addon.js';
import { BpfObject } from '../../src/dataplane/bpf/native/object.js';
import { cleanup, loadDataplane } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { KbpError } from '../../src/util/errors.js';
import { hostRoots } from '../../testing/netns.js';
import { dataplaneObject, fixtureObject, isRoot } from './fixtures/util.js';
import { Datapath } from '../../testing/datapath.js';

if (!isRoot) {
  test('pin root tests need root', (t) => {
    t.log('skipped: run as root (npm run test:datapath)');
    t.pass();
  });
} else {
  /** a bpf filesystem of its own, mounted on a temp dir: what a wrong cleanup removes is only ours */
  function privateBpffs(t: { teardown: (f: () => void) => void }): string {
    const dir = mkdtempSync(join(tmpdir(), `kbp-test-${process.pid}-bpffs-`));
    execFileSync('/usr/bin/mount', ['-t', 'bpf', 'bpf', dir]);
    t.teardown(() => {
      execFileSync('/usr/bin/umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    });
    return dir;
  }
  /** a bpffs's entries but the kernel's own (maps.debug, progs.debug) */
  const ours = (dir: string): string[] => readdirSync(dir).filter((n) => !n.endsWith('.debug')).sort();

  test.serial('an object opened without a pin root pins nothing, not even through the addon directly', (t) => {
    const bpffs = hostRoots().bpffs;
    const stray = join(bpffs, 'probe_count');
    t.false(existsSync(stray), `${stray} is there before the test: remove it`);
    t.teardown(() => rmSync(stray, { force: true }));
    const n = native();
    const h = n.objectOpen(fixtureObject('probe'), null);
    if (typeof h === 'number') return t.fail(`objectOpen: ${h}`);
    try {
      t.is(n.objectLoad(h), 0);
      t.false(existsSync(stray), 'a load without a pin root pinned its map in the bpffs root');
    } finally {
      n.objectClose(h);
    }
    const obj = BpfObject.open(fixtureObject('probe'));
    obj.load();
    obj.close();
    t.false(existsSync(stray));
  });

  test.serial('a pin root that is a bpffs mount point is refused by open, load and cleanup, naming it', (t) => {
    const mnt = privateBpffs(t);
    // another agent's root on the same mount
    mkdirSync(join(mnt, 'other-agent'));
    const e1 = t.throws(() => BpfObject.open(fixtureObject('probe'), { pinRoot: mnt }), { instanceOf: KbpError });
    t.regex(e1.message, new RegExp(`pin root ${mnt} is a bpf filesystem's mount point itself`));
    const statePath = join(tmpdir(), `kbp-test-${process.pid}-state.json`);
    t.teardown(() => rmSync(statePath, { force: true }));
    const e2 = t.throws(() => loadDataplane({ pinRoot: mnt, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(mnt, statePath), mountBpffs: false }), { instanceOf: KbpError });
    t.regex(e2.message, /mount point itself/);
    const e3 = t.throws(() => cleanup(mnt), { instanceOf: KbpError });
    t.regex(e3.message, /^cleanup: pin root .* mount point itself/);
    t.deepEqual(ours(mnt), ['other-agent'], 'nothing was pinned, nothing removed');
    // a directory under it is a pin root like any other
    const root = join(mnt, 'kbp');
    mkdirSync(root);
    const obj = BpfObject.open(fixtureObject('probe'), { pinRoot: root });
    obj.load();
    obj.close();
    t.true(existsSync(join(root, 'probe_count')));
    cleanup(root);
    t.deepEqual(ours(mnt), ['other-agent']);
  });

  test('a test process killed before its clean-up leaves no pins for good: the next Datapath removes a dead pid\'s root, not a live one\'s', (t) => {
    // bench/pkt-probe.ts under `timeout`, a worker past its timeout: no exit handler runs
    const bpffs = hostRoots().bpffs;
    const dead = Number(execFileSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim());
    const deadRoot = join(bpffs, `kbp-datapath-test-${dead}`), liveRoot = join(bpffs, `kbp-datapath-test-${process.ppid}-x`);
    for (const r of [deadRoot, liveRoot]) mkdirSync(r, { recursive: true });
    t.teardown(() => { for (const r of [deadRoot, liveRoot]) rmSync(r, { recursive: true, force: true }); });
    const d = new Datapath();
    try {
      t.false(existsSync(deadRoot), `${deadRoot}: its process is gone`);
      t.true(existsSync(liveRoot), `${liveRoot}: its process lives`);
    } finally {
      d.close();
    }
  });
}

