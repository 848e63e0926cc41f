// The lab helpers' promise: everything a lab makes goes away at cleanup, even when the test failed
// half-way, and sweepLeftovers() removes what a dead run left while sparing a live run's objects.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { defaultStatePath } from '../../src/dataplane/bpf/agent-state-file.js';
import { writeStateFile } from '../../src/dataplane/state-file.js';
import { BpfMap } from '../../src/dataplane/bpf/native/map.js';
import { MapType } from '../../src/dataplane/bpf/native/uapi.js';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { clusterIpFrontend, LabDataplane } from '../../testing/lab-dataplane.js';
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

  test.serial('cleanup removes a lab data plane\'s state file and every file the writer puts beside it', async (t) => {
    // the state file's journal (written by the hooks' attach) and lb_slots marker sit beside it: each
    // connrate bench run left 2-4 of them in /tmp, the cleanup removing the state file alone
    const lab = new Lab('dpfiles');
    const mine = () => readdirSync(tmpdir()).filter((n) => n.startsWith(lab.prefix)).sort();
    try {
      const dp = LabDataplane.load(lab, 'pins', { socketLb: true });
      const fe = (i: number, backend: number) => clusterIpFrontend({ service: `default/web-${i}`, address: `10.96.${i >> 8}.${i & 255}`, port: 80, protocol: 'TCP', backends: [{ address: `10.244.0.${backend}`, port: 8080 }] });
      const N = 3000;
      dp.apply({ frontends: Array.from({ length: N }, (_, i) => fe(i, 2)) });
      dp.apply({ frontends: Array.from({ length: N }, (_, i) => fe(i, i === 0 ? 3 : 2)) });
      dp.attachSockHooks(lab.addCgroup('cg'));
      t.true(mine().some((n) => n.endsWith('.journal')), `the files beside the state file: ${mine().join(', ')}`);
    } finally {
      await lab.cleanup();
    }
    t.deepEqual(mine(), []);
  });

  test.serial('sweepLeftovers removes a dead run\'s objects and spares a live run\'s', async (t) => {
    // a pid that certainly belonged to a run that has ended
    const dead = spawnSync('true').pid!;
    t.false(alive(dead));
    const stale = `${LAB_PREFIX}${dead}-gone-`;
    await run('ip', ['netns', 'add', `${stale}node`]);
    mkdirSync(join(hostRoots().cgroup2, `${stale}cg`));
    mkdirSync(join(BPFFS_ROOT, `${stale}pins`));
    // a lab data plane's files in the temporary directory (testing/lab-dataplane.ts)
    const staleFile = join(tmpdir(), `${stale}pins.state.json.journal`);
    writeFileSync(staleFile, '');
    const live = new Lab('live');
    t.teardown(() => live.cleanup());
    await live.addNetns('node');
    live.addPinRoot('pins');
    // a memory cgroup (v1's hierarchy on a hybrid host), a dead run's beside a live run's
    const liveMem = live.addMemoryCgroup('mem', 64 * 2 ** 20);
    const staleMem = liveMem && join(dirname(dirname(liveMem)), `${stale}mem`);
    if (staleMem) mkdirSync(staleMem);
    // agent state files (/run/kube-bpf-proxy): a dead run's whose pin root was removed by hand, not by
    // `cleanup`, beside a live run's
    const liveFile = join(tmpdir(), `${live.prefix}pins.state.json`);
    writeFileSync(liveFile, '');
    t.teardown(() => rmSync(liveFile, { force: true }));
    const livePins = join(BPFFS_ROOT, `${live.prefix}pins`), stalePins = join(BPFFS_ROOT, `${stale}gone/agent`);
    for (const root of [livePins, stalePins]) writeStateFile(defaultStatePath(root), { version: 1, pinRoot: root, frontends: {} });
    t.teardown(() => { for (const root of [livePins, stalePins]) rmSync(defaultStatePath(root), { force: true }); });

    const removed = await sweepLeftovers();
    t.false(existsSync(defaultStatePath(stalePins)), 'a dead run\'s state file is removed');
    t.false(existsSync(staleFile), 'a dead run\'s lab data plane file is removed');
    t.true(existsSync(defaultStatePath(livePins)), 'a live run\'s state file is spared');
    t.true(removed.includes(`netns ${stale}node`), removed.join(', '));
    t.deepEqual(ours(stale), { netns: [], cgroups: [], pins: [] });
    t.true(existsSync(join(NETNS_DIR, `${live.prefix}node`)));
    t.true(existsSync(join(BPFFS_ROOT, `${live.prefix}pins`)));
    t.true(existsSync(liveFile), 'a live run\'s lab data plane file is spared');
    if (staleMem) {
      t.false(existsSync(staleMem), 'a dead run\'s memory cgroup is removed');
      t.true(existsSync(dirname(liveMem!)), 'a live run\'s memory cgroup is spared');
    }
  });

  test.serial('sweepLeftovers spares a root named by a pid it cannot see when a live process holds its maps (another pid namespace)', async (t) => {
    // the pid in the name is gone here, as a pid of another pid namespace is; the maps are held by a
    // live process (sleep, given the map's fd), as an agent in a container holds its own
    const dead = spawnSync('true').pid!;
    t.false(alive(dead));
    const root = join(BPFFS_ROOT, `${LAB_PREFIX}${dead}-other-pins`);
    const gone = join(BPFFS_ROOT, `${LAB_PREFIX}${dead}-other-gone`);
    mkdirSync(root);
    mkdirSync(gone);
    t.teardown(() => { rmSync(root, { recursive: true, force: true }); rmSync(gone, { recursive: true, force: true }); });
    const m = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_t_held', keySize: 4, valueSize: 4, maxEntries: 1 });
    m.pin(join(root, 'lb_held'));
    const m2 = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_t_gone', keySize: 4, valueSize: 4, maxEntries: 1 });
    m2.pin(join(gone, 'lb_gone'));
    m2.close();
    const holder = spawn('/usr/bin/sleep', ['60'], { stdio: ['ignore', 'ignore', 'ignore', m.fd] });
    t.teardown(() => { holder.kill('SIGKILL'); });
    m.close();
    const removed = await sweepLeftovers();
    t.true(existsSync(join(root, 'lb_held')), `a held root was removed: ${removed.join(', ')}`);
    t.false(existsSync(gone), 'a root nothing holds, of a dead pid, still goes');
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    await sweepLeftovers();
    t.false(existsSync(root), 'once its holder is gone, the root goes');
  });

  // ava ends a worker that timed out without its after.always hooks; an agent the worker started kept
  // running (seen in a lab run: both agents of a timed-out agent.test.ts still syncing minutes later)
  test.serial('processes a lab started die with the test process, even one killed with SIGKILL', async (t) => {
    const script = `
      const { Lab } = await import(${JSON.stringify(join(import.meta.dirname, '..', '..', 'testing', 'netns.ts'))});
      const lab = new Lab('orphan');
      const ns = await lab.addNetns('node');
      const cg = lab.addCgroup('cg');
      const a = lab.spawn(ns, 'sleep', ['60']), b = lab.spawn(null, 'sleep', ['60'], { cgroup: cg });
      console.log(JSON.stringify({ pids: [a.pid, b.pid], prefix: lab.prefix }));
      setInterval(() => {}, 1000);`;
    const worker = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`no pids from the worker: ${out}`)), 60_000);
      worker.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) { clearTimeout(timer); resolve(out.split('\n')[0]!); } });
    });
    const { pids } = JSON.parse(line) as { pids: number[] };
    t.teardown(async () => {
      for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      await sweepLeftovers();
    });
    t.deepEqual(pids.filter(alive), pids);
    worker.kill('SIGKILL');
    await new Promise((r) => worker.once('close', r));
    for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    t.deepEqual(pids.filter(alive), [], 'no process of the killed run is left');
  });

  // a run ended by a signal (Ctrl-C on npm test or the lab, a CI timeout's SIGTERM) used to leave its
  // namespaces, cgroups and pins until the next run's sweep
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    test.serial(`${signal} to a test process removes what its labs made before it ends`, async (t) => {
      const script = `
        const { Lab } = await import(${JSON.stringify(join(import.meta.dirname, '..', '..', 'testing', 'netns.ts'))});
        const lab = new Lab('sig'), other = new Lab('sigb');
        const ns = await lab.addNetns('node');
        const cg = lab.addCgroup('cg');
        lab.addPinRoot('pins');
        await other.addNetns('node');
        const a = lab.spawn(ns, 'sleep', ['60']), b = lab.spawn(null, 'sleep', ['60'], { cgroup: cg });
        console.log(JSON.stringify({ pids: [a.pid, b.pid], prefixes: [lab.prefix, other.prefix] }));
        setInterval(() => {}, 1000);`;
      const worker = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise<number | null>((r) => worker.once('exit', (c) => r(c)));
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`no pids from the worker: ${out}`)), 60_000);
        worker.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) { clearTimeout(timer); resolve(out.split('\n')[0]!); } });
      });
      const { pids, prefixes } = JSON.parse(line) as { pids: number[]; prefixes: string[] };
      t.teardown(async () => {
        worker.kill('SIGKILL');
        for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
        await sweepLeftovers();
      });
      t.deepEqual(ours(prefixes[0]!).netns, [`${prefixes[0]}node`]);
      worker.kill(signal);
      t.is(await exited, code, 'the process still ends, with the signal\'s exit code');
      // no sweep here: the process itself undid everything
      for (const prefix of prefixes) t.deepEqual(ours(prefix), { netns: [], cgroups: [], pins: [] }, prefix);
      t.deepEqual(pids.filter(alive), [], 'every process the lab started is gone');
    });
  }

  test.serial('the lab refuses bad names before touching the system', (t) => {
    t.throws(() => new Lab('Bad Tag'), { message: /Lab tag "Bad Tag"/ });
  });

  test.serial('the lab refuses a namespace, pin root or cgroup name with a space or a slash, naming it', async (t) => {
    const lab = new Lab('names');
    t.teardown(() => lab.cleanup());
    t.throws(() => lab.addPinRoot('cr1 base 10000'), { message: 'lab pin root name "cr1 base 10000": use 1-64 of A-Za-z0-9._- (no spaces, no slashes)' });
    t.throws(() => lab.addCgroup('a/b'), { message: /^lab cgroup name "a\/b"/ });
    await t.throwsAsync(lab.addNetns('r1 base'), { message: /^lab namespace name "r1 base"/ });
    t.deepEqual(ours(lab.prefix), { netns: [], cgroups: [], pins: [] });
  });
}
