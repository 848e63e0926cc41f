// The lab helpers' promise: everything a lab makes goes away at cleanup, even when the test failed
// half-way, and sweepLeftovers() removes what a dead run left while sparing a live run's objects.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BPFFS_ROOT, LAB_PREFIX, hostRoots, Lab, NETNS_DIR, labAvailable, run, sweepLeftovers } from '../../testing/netns.js';

const avail = labAvailable();

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

const ours = (prefix: string) => ({
  netns: readdirSync(NETNS_DIR).filter((n) => n.startsWith(prefix)),
  cgroups: readdirSync(hostRoots().cgroup2).filter((n) => n.startsWith(prefix)),
  pins: readdirSync(BPFFS_ROOT).filter((n) => n.startsWith(prefix)),
});

if (!avail.ok) {
  test('lab helper tests need root, bpffs and cgroup v2', (t) => {
    t.log(`skipped: ${avail.why}`);
    t.pass();
  });
} else {
  test.serial('cleanup after a failure half-way removes namespaces, links, processes, cgroups and pins', async (t) => {
    const lab = new Lab('fail');
    const pids: number[] = [];
    await t.throwsAsync(async () => {
      const node = await lab.addNetns('node');
      await lab.enableForwarding(node);
      const pod = await lab.addPod({ name: 'pod', node, hostIf: 'lxcp', addresses: ['10.244.0.2', 'fd00:10:244::2'] });
      pids.push((await lab.startPodServer(pod.ns, { name: 'pod', http: 8080, udp: 5353 })).pid);
      const cg = lab.addCgroup('cg');
      pids.push(lab.spawn(pod.ns, 'sleep', ['60'], { cgroup: cg }).pid);
      lab.addPinRoot('pins');
      const before = ours(lab.prefix);
      t.deepEqual(before.netns.sort(), [`${lab.prefix}node`, `${lab.prefix}pod`]);
      t.deepEqual(before.cgroups, [`${lab.prefix}cg`]);
      t.deepEqual(before.pins, [`${lab.prefix}pins`]);
      // a command that fails, as a test's setup might
      await lab.ip(node, ['link', 'set', 'no-such-device', 'up']);
    }, { message: /no-such-device/ });
    await lab.cleanup();
    t.deepEqual(ours(lab.prefix), { netns: [], cgroups: [], pins: [] });
    t.deepEqual(pids.filter(alive), [], 'every process the lab started is gone');
    t.throws(() => lab.spawn(null, 'true', []), { message: /spawn after cleanup/ });
  });

  test.serial('sweepLeftovers removes a dead run\'s objects and spares a live run\'s', async (t) => {
    // a pid that certainly belonged to a run that has ended
    const dead = spawnSync('true').pid!;
    t.false(alive(dead));
    const stale = `${LAB_PREFIX}${dead}-gone-`;
    await run('ip', ['netns', 'add', `${stale}node`]);
    mkdirSync(join(hostRoots().cgroup2, `${stale}cg`));
    mkdirSync(join(BPFFS_ROOT, `${stale}pins`));
    const live = new Lab('live');
    t.teardown(() => live.cleanup());
    await live.addNetns('node');
    live.addPinRoot('pins');

    const removed = await sweepLeftovers();
    t.true(removed.includes(`netns ${stale}node`), removed.join(', '));
    t.deepEqual(ours(stale), { netns: [], cgroups: [], pins: [] });
    t.true(existsSync(join(NETNS_DIR, `${live.prefix}node`)));
    t.true(existsSync(join(BPFFS_ROOT, `${live.prefix}pins`)));
  });

  test.serial('the lab refuses bad names before touching the system', (t) => {
    t.throws(() => new Lab('Bad Tag'), { message: /Lab tag "Bad Tag"/ });
  });
}
