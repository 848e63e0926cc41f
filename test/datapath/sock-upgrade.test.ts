// Upgrade of the socket hooks from the last build with the sock_release hook (SOCK_RELEASE_COMMIT:
// a connected socket's reverse entry in the lb_sock_revnat LRU, deleted by that hook) to socket-local
// storage (lb_sock_store): a socket the old connect() translated keeps showing the VIP through the new
// recvmsg() (lb_sock_revnat is still read), and the old release hook is replaced in place by this
// build's (the same name: it frees a TCP socket's slot of lb_sock_slots), nothing left to retire.
// The old object is built from that commit's bpf/.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labAvailable, sweepLeftovers } from '../../testing/netns.js';
import { buildObjectAt } from '../../testing/old-object.js';
import { LabDataplane, clusterIpFrontend } from '../../testing/lab-dataplane.js';
import { attachCgroup, loadDataplane } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { SOCK_HOOKS, SOCK_RELEASE_HOOK, retireSockHooks } from '../../src/dataplane/bpf/dataplane.js';
import { cgroupPrograms } from '../../src/dataplane/bpf/native/program.js';
import * as L from '../../src/dataplane/bpf/layout.js';
import { until } from '../../testing/wait.js';

const SOCK_RELEASE_COMMIT = 'a1fcf3b';
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STREAM = join(REPO, 'testing', 'servers', 'udp-stream.mjs');
const VIP = '10.96.0.10', BE = '127.0.0.2', UDP = 5353;

const avail = labAvailable();
if (!avail.ok) {
  test('socket hook upgrade needs root, bpffs and cgroup v2', (t) => { t.log(`skipped: ${avail.why}`); t.pass(); });
} else {
  test('upgrade from the old release hook: an old connected socket keeps showing the VIP, the release hook is this build\'s', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kbp-sock-upgrade-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const old = buildObjectAt(SOCK_RELEASE_COMMIT, dir, 'kbp-old.bpf.o');
    if (!old) {
      t.log(`skipped: commit ${SOCK_RELEASE_COMMIT} is not in this checkout's history`);
      t.pass();
      return;
    }
    await sweepLeftovers();
    const lab = new Lab('sockup');
    t.teardown(() => lab.cleanup());
    const ns = await lab.addNetns('h');
    await lab.startPodServer(ns, { name: 'be-a', bind: [BE], udp: UDP });
    const dp = LabDataplane.load(lab, 'pins', { socketLb: true, objectPath: old });
    dp.apply({ frontends: [clusterIpFrontend({ service: 'default/dns', address: VIP, port: 53, protocol: 'UDP', backends: [{ address: BE, port: UDP }] })] });
    const cgroup = lab.addCgroup('clients');
    dp.attachSockHooks(cgroup);
    t.is(cgroupPrograms(cgroup, 'sock_release').length, 1, 'the old build\'s release hook attached');

    const stream = lab.spawn(ns, process.execPath, [STREAM, '--host', VIP, '--port', '53', '--interval-ms', '100', '--duration-ms', '90000'], { cgroup, what: 'udp-stream' });
    type Ev = { t: number; kind: string; reply?: string; from?: string };
    const events = (): Ev[] => stream.output().split('\n').filter((l) => l.startsWith('{"t"')).map((l) => JSON.parse(l) as Ev);
    // the stream prints each event as it comes: wait for its first reply (bounded for a loaded machine)
    const replied = (e: Ev) => e.kind === 'reply' && e.from === `${VIP}:53`;
    await until(() => events().some(replied));
    const before = events();
    t.true(before.some(replied), JSON.stringify(before.slice(0, 3)));
    const revnat = dp.loaded.maps.map('lb_sock_revnat');
    t.true([...revnat.entries()].some(([, v]) => L.decodeSockRevNatVal(v).address === VIP), 'the old connect() wrote lb_sock_revnat');

    // the upgrade, as a restarted agent does it: the new object on the same pins and state file,
    // its hooks attached in place of the old ones, then the retired one detached
    const state = AgentStateFile.forPinRoot(dp.pinRoot, dp.statePath);
    const next = loadDataplane({ pinRoot: dp.pinRoot, state, mountBpffs: false });
    t.teardown(() => next.object.close());
    attachCgroup(state, next.object.program(SOCK_RELEASE_HOOK[1]), cgroup, SOCK_RELEASE_HOOK[0]);
    for (const [type, prog] of SOCK_HOOKS) attachCgroup(state, next.object.program(prog), cgroup, type);
    t.is(retireSockHooks(state, cgroup), 0);
    t.deepEqual(cgroupPrograms(cgroup, 'sock_release'), [next.object.program(SOCK_RELEASE_HOOK[1]).id], 'this build\'s release hook alone runs at a socket\'s close');
    for (const [type, prog] of SOCK_HOOKS) t.deepEqual(cgroupPrograms(cgroup, type), [next.object.program(prog).id], `${type}: the new program alone`);

    const seen = events().length;
    const replies = () => events().slice(seen).filter((e) => e.kind === 'reply');
    await until(() => replies().length >= 3);
    stream.child.kill('SIGTERM');
    await stream.exited;
    const after = replies();
    t.true(after.length >= 3, `replies after the upgrade: ${after.length}`);
    t.true(after.every((e) => e.reply === 'be-a' && e.from === `${VIP}:53`), JSON.stringify(after.slice(0, 3)));
  });
}
