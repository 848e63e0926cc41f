// A start that fails half-way through attaching (issue 11): the agent has loaded the object, pinned
// its maps, installed its nftables table and attached tc to the node's device when attaching the
// socket hooks fails. A first start removes all of it and exits 1; a restart over an earlier agent's
// pins leaves that agent's state serving. The failure is the kernel's own: an exclusive (flags 0)
// cgroup program on the parent forbids any attach below it (kernel/bpf/cgroup.c hierarchy_allows_attach).
import test from 'ava';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, labAvailable, run, type Netns } from '../../testing/netns.js';
import { CLI } from '../../lab/cluster.js';
import { BpfObject } from '../../src/dataplane/bpf/native/object.js';
import { defaultObjectPath } from '../../src/dataplane/bpf/loader.js';
import { prepareHost } from '../../src/dataplane/host.js';

const avail = labAvailable();
const SVC = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }] }
`;

interface Rig { lab: Lab; ns: Netns; pins: string; goodCgroup: string; badCgroup: string; manifests: string }

async function rig(tag: string): Promise<Rig> {
  prepareHost();
  const lab = new Lab(tag);
  const ns = await lab.addNetns('node');
  const peer = await lab.addNetns('peer');
  await lab.addVeth(ns, 'eth0', peer, 'eth0');
  await lab.addAddress(ns, 'eth0', '192.168.77.1/24');
  const pins = join(lab.addPinRoot('pins'), 'agent');
  const goodCgroup = lab.addCgroup('good');
  const locked = lab.addCgroup('locked');
  const badCgroup = join(locked, 'child');
  mkdirSync(badCgroup);
  lab.onCleanup(`cgroup ${badCgroup}`, () => { if (existsSync(badCgroup)) rmdirSync(badCgroup); });
  // an exclusive connect4 program on the parent: the kernel then refuses every attach below it
  const obj = BpfObject.open(defaultObjectPath(), { pinRoot: lab.addPinRoot('locker') });
  obj.load();
  const prog = join(lab.addPinRoot('lockprog'), 'connect4');
  obj.program('lb_sock_connect4').pin(prog);
  obj.close();
  await run('/usr/sbin/bpftool', ['cgroup', 'attach', locked, 'connect4', 'pinned', prog]);
  lab.onCleanup(`exclusive program on ${locked}`, async () => {
    await run('/usr/sbin/bpftool', ['cgroup', 'detach', locked, 'connect4', 'pinned', prog], { allowFail: true });
  });
  const manifests = mkdtempSync(join(tmpdir(), 'kbp-startfail-'));
  lab.onCleanup(`manifests ${manifests}`, () => rmSync(manifests, { recursive: true, force: true }));
  writeFileSync(join(manifests, 'web.yaml'), SVC);
  return { lab, ns, pins, goodCgroup, badCgroup, manifests };
}

function agentArgs(r: Rig, cgroup: string): string[] {
  return [CLI, 'run', '--manifests', r.manifests, '--node-name', 'n1', '--node-ip', '192.168.77.1', '--devices', 'eth0',
    '--bpffs', r.pins, '--cgroup', cgroup, '--socket-lb', 'true', '--healthz-bind-address', '', '--metrics-bind-address', ''];
}

/** what of ours is on the node: tc filters on eth0, the pin root, our nftables table */
async function traces(r: Rig): Promise<{ tc: boolean; pins: boolean; nft: boolean }> {
  const tc = await r.lab.exec(r.ns, '/usr/sbin/tc', ['filter', 'show', 'dev', 'eth0', 'ingress'], { allowFail: true });
  const nft = await r.lab.exec(r.ns, '/usr/sbin/nft', ['list', 'table', 'inet', 'kube-bpf-proxy'], { allowFail: true });
  return { tc: /lb_tc_ingress/.test(tc.stdout), pins: existsSync(r.pins), nft: nft.code === 0 };
}

test.serial('a first start that fails attaching the socket hooks removes everything it installed, and exits 1', async (t) => {
  if (!avail.ok) return t.pass(`skipped: ${avail.why}`);
  const r = await rig('startfail');
  try {
    const res = await r.lab.exec(r.ns, process.execPath, agentArgs(r, r.badCgroup), { allowFail: true, timeoutMs: 60_000 });
    t.is(res.code, 1, res.stderr);
    t.regex(res.stderr, /attaching socket hook lb_sock_connect4 \(connect4\) to cgroup .*child failed/);
    t.regex(res.stderr + res.stdout, /start failed: removed what this start installed/);
    t.deepEqual(await traces(r), { tc: false, pins: false, nft: false });
  } finally {
    await r.lab.cleanup();
  }
});

test.serial('a first start that fails before the agent starts (its health address is not the node\'s) removes the maps its load pinned, and exits 2', async (t) => {
  // the BPF load begins as soon as the mode is chosen (the verifier runs beside the rest of the
  // start): a failure after it, here the health server's listen, must still leave nothing pinned
  if (!avail.ok) return t.pass(`skipped: ${avail.why}`);
  const r = await rig('earlyfail');
  try {
    const args = agentArgs(r, r.goodCgroup);
    args[args.indexOf('--healthz-bind-address') + 1] = '192.0.2.55:10256';
    const res = await r.lab.exec(r.ns, process.execPath, args, { allowFail: true, timeoutMs: 60_000 });
    t.is(res.code, 2, res.stderr);
    t.regex(res.stderr, /--healthz-bind-address 192\.0\.2\.55:10256/);
    t.deepEqual(await traces(r), { tc: false, pins: false, nft: false });
  } finally {
    await r.lab.cleanup();
  }
});

test.serial('the same start with a usable cgroup succeeds (the failure above is the cgroup alone); a restart that fails keeps the first agent serving', async (t) => {
  if (!avail.ok) return t.pass(`skipped: ${avail.why}`);
  const r = await rig('restartfail');
  try {
    const first = r.lab.spawn(r.ns, process.execPath, agentArgs(r, r.goodCgroup), { what: 'first agent' });
    const deadline = Date.now() + 30_000;
    while (!(await traces(r)).tc) {
      if (first.child.exitCode !== null) throw new Error(`first agent exited: ${first.output()}`);
      if (Date.now() > deadline) throw new Error(`first agent attached nothing: ${first.output()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    first.child.kill('SIGTERM');
    await first.exited;
    t.deepEqual(await traces(r), { tc: true, pins: true, nft: true }, 'a stopped agent leaves the data plane serving');
    const res = await r.lab.exec(r.ns, process.execPath, agentArgs(r, r.badCgroup), { allowFail: true, timeoutMs: 60_000 });
    t.is(res.code, 1, res.stderr);
    t.deepEqual(await traces(r), { tc: true, pins: true, nft: true }, 'the earlier agent\'s state keeps serving');
    await r.lab.exec(r.ns, process.execPath, [CLI, 'cleanup', '--bpffs', r.pins], { allowFail: true });
  } finally {
    await r.lab.cleanup();
  }
});

test.serial('with health and metrics off the agent still runs until told to stop (nothing else holds its event loop)', async (t) => {
  if (!avail.ok) return t.pass(`skipped: ${avail.why}`);
  const r = await rig('daemon');
  try {
    const agent = r.lab.spawn(r.ns, process.execPath, agentArgs(r, r.goodCgroup), { what: 'agent' });
    const deadline = Date.now() + 30_000;
    while (!(await traces(r)).tc) {
      if (agent.child.exitCode !== null) break;
      if (Date.now() > deadline) throw new Error(`the agent attached nothing: ${agent.output()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    // the first sync is done once tc is attached; an agent that only lived for it would be gone soon after
    await new Promise((res) => setTimeout(res, 3000));
    t.is(agent.child.exitCode, null, `the agent exited on its own: ${agent.output().slice(-800)}`);
    agent.child.kill('SIGTERM');
    t.is(await agent.exited, 0);
    await r.lab.exec(r.ns, process.execPath, [CLI, 'cleanup', '--bpffs', r.pins], { allowFail: true });
  } finally {
    await r.lab.cleanup();
  }
});

test.serial('maps that do not fit the pod\'s memory: the agent says so before the load, fails naming the need, the room and --bpf-map-max, leaves nothing; smaller maps run there', async (t) => {
  // the maps are allocated at load whatever the Service count (~290 MiB at the default sizes) and
  // charged to the agent's memory cgroup: in a 512 MiB VM the kernel's OOM killer ended the agent
  // with no word of why (src/dataplane/bpf/map-memory.ts)
  if (!avail.ok) return t.pass(`skipped: ${avail.why}`);
  const r = await rig('memfail');
  try {
    const procs = r.lab.addMemoryCgroup('mem', 224 * 2 ** 20);
    if (!procs) return t.pass('skipped: no memory cgroup controller to limit the agent with');
    // the agent joins the cgroup before it starts (sh writes its own PID, then becomes node)
    const inCgroup = (args: string[], timeoutMs: number) => r.lab.exec(r.ns, '/bin/sh', ['-c', `echo $$ > ${procs} && exec "$0" "$@"`, process.execPath, ...args], { allowFail: true, timeoutMs });
    const res = await inCgroup(agentArgs(r, r.goodCgroup), 60_000);
    t.is(res.code, 1, res.stderr);
    t.regex(res.stdout + res.stderr, /"msg":"the BPF maps at these sizes need more memory than this node or pod has/);
    // the largest first: lb_ct's size follows the node's CPUs (kube-proxy's conntrack sizing), so it
    // leads the list from 8 CPUs up and follows lb_maglev_slots below that
    t.regex(res.stderr, /Cannot allocate memory \(errno 12\): the maps need ~\d+ MiB of kernel memory and \S+ leaves \d+ MiB \(largest: lb_\w+ \d+ MiB(, lb_\w+ \d+ MiB)*\); size them down with --bpf-map-max/);
    t.deepEqual(await traces(r), { tc: false, pins: false, nft: false });
    // the same start with the big maps sized down: no warning, and it serves
    const small = [...agentArgs(r, r.goodCgroup), '--bpf-map-max', 'lb_ct=65536,lb_maglev_slots=4194304,lb_slots=262144,lb_members=262144,lb_sock_revnat=32768'];
    const agent = r.lab.spawn(r.ns, '/bin/sh', ['-c', `echo $$ > ${procs} && exec "$0" "$@"`, process.execPath, ...small], { what: 'agent with small maps' });
    const deadline = Date.now() + 30_000;
    while (!(await traces(r)).tc) {
      if (agent.child.exitCode !== null) throw new Error(`the agent exited: ${agent.output().slice(-1500)}`);
      if (Date.now() > deadline) throw new Error(`the agent attached nothing: ${agent.output().slice(-1500)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    t.notRegex(agent.output(), /need more memory/);
    agent.child.kill('SIGTERM');
    t.is(await agent.exited, 0);
    await r.lab.exec(r.ns, process.execPath, [CLI, 'cleanup', '--bpffs', r.pins], { allowFail: true });
  } finally {
    await r.lab.cleanup();
  }
});
