// The agent's image in the lab (issue 11): scripts/build-image.sh builds it (cached by content), and
// each node of a two-node lab runs the agent FROM THE IMAGE with podman in the node's network
// namespace, with the DaemonSet's own arguments, ConfigMap, mounts and hostPID (deploy/*.yaml): node1 as
// deploy/kube-bpf-proxy.yaml runs it (privileged, bpffs with shared propagation), node2 as
// deploy/kube-bpf-proxy-unprivileged.yaml does (every capability dropped, then only the agent's
// list added). In the lab a node's own cgroup stands for the host's cgroup v2 at
// /run/kube-bpf-proxy/cgroupv2 (where the DaemonSet's init container mounts it), and the manifests
// folder replaces the API server. Then real traffic, the probes, and `dump -o json` run in the image
// equal to `compile -o json`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { parseAllDocuments } from 'yaml';
import { ClusterLab, REPO, nodesYaml, type LabNode, type LabPod } from '../../lab/cluster.js';
import { labManifests, PORTS, VIP } from '../../lab/services.js';
import { LAB_PREFIX, labAvailable, run, sweepLeftovers, type LabProcess } from '../../testing/netns.js';

const test = anyTest as TestFn;
// what this machine needs (scripts/build-image.sh): runc, and rlimits no higher than the current ones
const PODMAN = ['--runtime', 'runc'];
const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const MANIFESTS_IN_IMAGE = '/var/lib/kube-bpf-proxy/manifests';
const NODE_IN_IMAGE = ['/usr/local/bin/node', '/opt/kube-bpf-proxy/bin/kube-bpf-proxy.js'];

type Obj = Record<string, any>;
type Variant = 'privileged' | 'unprivileged';
const FILES: Record<Variant, string> = { privileged: 'deploy/kube-bpf-proxy.yaml', unprivileged: 'deploy/kube-bpf-proxy-unprivileged.yaml' };

function daemonSet(variant: Variant): { container: Obj; hostPID: boolean; config: string } {
  const docs = parseAllDocuments(readFileSync(join(REPO, FILES[variant]), 'utf8')).map((d) => d.toJS() as Obj);
  const ds = docs.find((d) => d.kind === 'DaemonSet')!;
  return {
    container: ds.spec.template.spec.containers.find((c: Obj) => c.name === 'kube-bpf-proxy'),
    hostPID: ds.spec.template.spec.hostPID === true,
    config: docs.find((d) => d.kind === 'ConfigMap')!.data['config.yaml'],
  };
}

function available(): { ok: boolean; why?: string } {
  const lab = labAvailable();
  if (!lab.ok) return lab;
  for (const tool of ['/usr/bin/podman', '/usr/sbin/runc', '/usr/bin/mmdebstrap']) {
    if (!existsSync(tool)) return { ok: false, why: `${tool} is missing (apt-get install podman runc mmdebstrap)` };
  }
  for (const f of ['dist/kube-bpf-proxy.mjs', 'native/build/Release/kbp_native.node', 'bpf/kbp.bpf.o']) {
    if (!existsSync(join(REPO, f))) return { ok: false, why: `${f} is not built (npm run build)` };
  }
  return { ok: true };
}

const avail = available();
let lab: ClusterLab;
let image: string;
/** the host's bpffs as the DaemonSet's Bidirectional mount needs it: on a shared mount */
let bpffs = '/sys/fs/bpf';

function pod(name: string): LabPod {
  return lab.pods.get(name)!;
}

function containerName(node: LabNode): string {
  return `${lab.lab.prefix}${node.name}`;
}

/** Containers of lab runs whose process is gone (the lab's own sweep knows namespaces, not containers). */
async function sweepContainers(): Promise<void> {
  const r = await run('podman', [...PODMAN, 'ps', '-a', '--format', '{{.Names}}'], { allowFail: true });
  for (const name of r.stdout.split('\n').filter((n) => n.startsWith(LAB_PREFIX))) {
    const pid = Number(/^kbplab(\d+)-/.exec(name)?.[1]);
    let alive = false;
    try { process.kill(pid, 0); alive = true; } catch { /* gone */ }
    if (!alive) await run('podman', [...PODMAN, 'rm', '-f', '-t', '0', name], { allowFail: true, timeoutMs: 30_000 });
  }
}

const nodeDirs = new Map<string, { etc: string; runDir: string }>();

/** podman run: the DaemonSet's container of `variant` on `node`, in the node's network namespace. */
async function startImageAgent(node: LabNode, variant: Variant, extra: string[] = []): Promise<LabProcess> {
  const { container, hostPID, config } = daemonSet(variant);
  const name = containerName(node);
  // the ConfigMap, and the host's /run/kube-bpf-proxy with cgroupv2 in it (here: the node's cgroup)
  // one per node for its lifetime, as the DaemonSet's hostPath: a restarted container finds the
  // state file of the agent before it (its attachments, which a mode switch removes)
  let dirs = nodeDirs.get(node.name);
  if (!dirs) {
    dirs = { etc: mkdtempSync(join(tmpdir(), `${lab.lab.prefix}etc-${node.name}-`)), runDir: mkdtempSync(join(tmpdir(), `${lab.lab.prefix}run-${node.name}-`)) };
    const d = dirs;
    nodeDirs.set(node.name, d);
    lab.lab.onCleanup(`dirs of ${name}`, () => { rmSync(d.etc, { recursive: true, force: true }); rmSync(d.runDir, { recursive: true, force: true }); });
    mkdirSync(join(d.runDir, 'cgroupv2'));
  }
  const { etc, runDir } = dirs;
  writeFileSync(join(etc, 'config.yaml'), config);
  lab.lab.onCleanup(`container ${name}`, async () => { await run('podman', [...PODMAN, 'rm', '-f', '-t', '2', name], { allowFail: true, timeoutMs: 30_000 }); });

  const security = container.securityContext as Obj;
  const privileged = security.privileged === true;
  const caps = (security.capabilities?.add ?? []) as string[];
  const propagation = (path: string) => {
    const m = (container.volumeMounts as Obj[]).find((v) => v.mountPath === path)!;
    return ({ Bidirectional: 'rshared', HostToContainer: 'rslave', None: 'rprivate' } as Record<string, string>)[m.mountPropagation ?? 'None'];
  };
  const args = (container.args as string[]).map((a) => a.replace('$(NODE_NAME)', node.name));
  const argv = [...PODMAN, 'run', '--rm', '--name', name, '--network', `ns:${node.ns.path}`, ...ULIMITS,
    ...(privileged ? ['--privileged'] : ['--cap-drop=all', ...caps.map((c) => `--cap-add=CAP_${c}`)]),
    ...(hostPID ? ['--pid', 'host'] : []),
    '-v', `${bpffs}:/sys/fs/bpf:${propagation('/sys/fs/bpf')}`,
    '-v', `${runDir}:/run/kube-bpf-proxy:${propagation('/run/kube-bpf-proxy')}`,
    '-v', `${node.cgroup}:/run/kube-bpf-proxy/cgroupv2`,
    '-v', `${etc}:/etc/kube-bpf-proxy:ro`,
    ...(existsSync('/lib/modules') ? ['-v', '/lib/modules:/lib/modules:ro'] : []),
    '-v', `${lab.manifests}:${MANIFESTS_IN_IMAGE}:ro`,
    image, ...args,
    // the lab's part: the manifests folder in place of the API server, this node's pins and addresses
    '--manifests', MANIFESTS_IN_IMAGE, '--node-ip', node.ip4, '--node-ip', node.ip6, '--devices', 'eth0', '--bpffs', node.pinRoot, ...extra];
  const proc = lab.lab.spawn(null, 'podman', argv, { what: `agent ${node.name} (image, ${variant}${extra.length ? ` ${extra.join(' ')}` : ''})` });
  node.agent = proc;
  await lab.waitHealthy(node, proc, 60_000);
  return proc;
}

/** The CLI inside the node's running agent container (kubectl exec ds/kube-bpf-proxy -- ...). */
async function inImage(node: LabNode, args: string[]): Promise<string> {
  const r = await run('podman', [...PODMAN, 'exec', containerName(node), ...NODE_IN_IMAGE, ...args], { allowFail: true, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${args[0]} in the image on ${node.name}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

function names(seen: Map<string, number>): string[] {
  return [...seen.keys()].sort();
}

test.before(async (t) => {
  if (!avail.ok) return;
  // a cold build makes the Debian base with mmdebstrap (minutes on a slow mirror); later runs reuse it
  t.timeout(15 * 60_000);
  const t0 = Date.now();
  const out = execFileSync('bash', [join(REPO, 'scripts', 'build-image.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 14 * 60_000 });
  image = out.trim().split('\n').pop()!;
  t.log(`image ${image} ready in ${Math.round((Date.now() - t0) / 1000)} s`);
  await sweepLeftovers();
  await sweepContainers();
  lab = new ClusterLab({ tag: 'image' });
  // kubelet and podman refuse shared propagation from a private mount (this host's /sys/fs/bpf is
  // one): a shared bind of it, the same bpffs, stands in for a systemd host's shared /sys/fs/bpf
  const shared = mkdtempSync(join(tmpdir(), `${lab.lab.prefix}bpffs-`));
  lab.lab.onCleanup(`bpffs bind ${shared}`, async () => {
    await run('umount', ['-l', shared], { allowFail: true });
    rmSync(shared, { recursive: true, force: true });
  });
  await run('mount', ['--bind', '/sys/fs/bpf', shared]);
  await run('mount', ['--make-shared', shared]);
  bpffs = shared;
  await lab.build({ pods: [
    { name: 'pod-a', node: 1 }, { name: 'pod-b', node: 1 }, { name: 'pod-c', node: 2 },
    { name: 'client1', node: 1, role: 'client' }, { name: 'client2', node: 2, role: 'client' },
  ] });
  lab.writeManifest('nodes.yaml', nodesYaml(lab.nodes));
  for (const [f, y] of Object.entries(labManifests(lab, ['pod-a', 'pod-b', 'pod-c'].map(pod)))) lab.writeManifest(f, y);
  await startImageAgent(lab.nodes[0]!, 'privileged');
  await startImageAgent(lab.nodes[1]!, 'unprivileged');
});

test.after.always(async () => {
  if (lab) await lab.stop();
});

const labTest = avail.ok ? test.serial : test.serial.skip;
if (!avail.ok) test('the image in the lab', (t) => { t.log(`skipped: ${avail.why}`); t.pass(); });

labTest('ClusterIP from pods on both nodes reaches every backend (tc and the socket hooks)', async (t) => {
  for (const c of ['client1', 'client2']) {
    const p = pod(c);
    const viaTc = await lab.curlMany(p.pod.ns, `http://${VIP.mytest}/`, 30, { untilSeen: ['pod-a', 'pod-b', 'pod-c'] });
    t.deepEqual(names(viaTc), ['pod-a', 'pod-b', 'pod-c'], `from ${c}: ${[...viaTc]}`);
    // in the node's cgroup: the agent attached its socket hooks to /run/kube-bpf-proxy/cgroupv2
    const viaSock = await lab.curlMany(p.pod.ns, `http://${VIP.mytest}/`, 18, { cgroup: p.node.cgroup, untilSeen: ['pod-a', 'pod-b', 'pod-c'] });
    t.deepEqual(names(viaSock), ['pod-a', 'pod-b', 'pod-c'], `from ${c} in its node's cgroup: ${[...viaSock]}`);
  }
});

labTest('NodePort from outside on each node reaches local and remote backends', async (t) => {
  for (const n of lab.nodes) {
    const seen = await lab.curlMany(lab.ext, `http://${n.ip4}:${PORTS.nodePortFixed}/`, 30);
    t.deepEqual(names(seen), ['pod-a', 'pod-b', 'pod-c'], `via ${n.name}: ${[...seen]}`);
  }
});

labTest('the probes of the DaemonSet answer: /livez and /healthz on the ConfigMap\'s port', async (t) => {
  for (const n of lab.nodes) {
    for (const probe of ['livenessProbe', 'readinessProbe']) {
      const g = daemonSet('privileged').container[probe].httpGet as Obj;
      const r = await lab.lab.exec(n.ns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', `http://${g.host}:${g.port}${g.path}`]);
      t.is(r.stdout, '200', `${n.name} ${probe} ${g.path}`);
    }
  }
});

async function dumpEqualsCompile(t: ExecutionContext, node: LabNode): Promise<void> {
  const dump = await inImage(node, ['dump', '-o', 'json', '--bpffs', node.pinRoot]);
  const compile = await inImage(node, ['compile', '-o', 'json', '--manifests', MANIFESTS_IN_IMAGE, '--node-name', node.name,
    '--node-ip', node.ip4, '--node-ip', node.ip6, '--nodeport-addresses', 'primary']);
  t.true(JSON.parse(dump).frontends.length > 0);
  t.is(dump, compile, `${node.name}: dump -o json (image) equals compile -o json (image)`);
}

labTest('dump -o json from the image equals compile -o json, on the privileged and the unprivileged node', async (t) => {
  for (const n of lab.nodes) await dumpEqualsCompile(t, n);
});

labTest('a Service added to the manifests folder is served (the agent in the image watches the mounted folder)', async (t) => {
  const since = Date.now() / 1000;
  lab.writeManifest('late.yaml', labManifests(lab, ['pod-c'].map(pod))['mytest.yaml']!
    .replaceAll('mytest-svc', 'late-svc').replaceAll(VIP.mytest, '10.96.100.77'));
  await lab.waitSynced(since, 20_000);
  t.deepEqual(names(await lab.curlMany(pod('client1').pod.ns, 'http://10.96.100.77/', 6)), ['pod-c']);
  for (const n of lab.nodes) await dumpEqualsCompile(t, n);
});

// The socket hooks translate a connected UDP socket once; when its backend leaves, the agent closes it
// (bpf_sock_destroy, 6.5+) in the pod's network namespace, which it enters through a process of the
// pod: the DaemonSet's agent must see the node's processes (hostPID), and open their namespaces
// (SYS_PTRACE in the unprivileged variant). Before, the agent in the image saw only its own
// container's processes, and a pod's socket kept the removed backend.
labTest('a pod\'s connected UDP socket to a ClusterIP is closed when its backend leaves, by the agent in the image on both nodes', async (t) => {
  const [maj = 0, min = 0] = (await import('node:os')).release().split('.').map(Number);
  if (maj * 100 + min < 605) {
    t.log('bpf_sock_destroy needs kernel 6.5+');
    t.pass();
    return;
  }
  const servers = ['pod-a', 'pod-b', 'pod-c'].map(pod);
  const write = async (keep: LabPod[]): Promise<void> => {
    const since = Date.now() / 1000;
    for (const [f, y] of Object.entries(labManifests(lab, keep))) lab.writeManifest(f, y);
    await lab.waitSynced(since, 20_000);
  };
  t.teardown(() => write(servers));
  type Ev = { kind: string; reply?: string; from?: string; error?: string };
  const streams = ['client1', 'client2'].map((c) => {
    const p = pod(c);
    // in the node's cgroup, where the agent attached its socket hooks
    const proc = lab.lab.spawn(p.pod.ns, process.execPath,
      [join(REPO, 'testing', 'servers', 'udp-stream.mjs'), '--host', VIP.dns, '--port', '53', '--interval-ms', '100', '--duration-ms', '60000'],
      { cgroup: p.node.cgroup, what: `udp-stream ${c}` });
    const events = (): Ev[] => proc.output().split('\n').filter((l) => l.startsWith('{"t"')).map((l) => JSON.parse(l) as Ev);
    return { c, proc, events };
  });
  const waitFor = async (ok: () => boolean): Promise<boolean> => {
    for (let i = 0; i < 150; i++) {
      if (ok()) return true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return false;
  };
  const replied = (e: Ev[]) => e.some((x) => x.kind === 'reply');
  const reconnected = (e: Ev[]) => {
    const i = e.findIndex((x) => x.kind === 'error');
    return i >= 0 && e.slice(i).filter((x) => x.kind === 'reply').length >= 3;
  };
  try {
    t.true(await waitFor(() => streams.every((s) => replied(s.events()))), streams.map((s) => s.proc.output().slice(-300)).join('\n'));
    const used = new Set(streams.map((s) => s.events().find((x) => x.kind === 'reply')!.reply!));
    await write(servers.filter((p) => !used.has(p.name)));
    t.true(await waitFor(() => streams.every((s) => reconnected(s.events()))), streams.map((s) => `${s.c}: ${JSON.stringify(s.events().slice(-3))}`).join('\n'));
    for (const s of streams) {
      const ev = s.events(), i = ev.findIndex((x) => x.kind === 'error');
      // aborted (bpf_sock_destroy): ECONNABORTED at its next recv, or EDESTADDRREQ at a send that comes first
      t.true(['ECONNABORTED', 'EDESTADDRREQ'].includes(ev[i]?.error ?? ''), `${s.c} (${s.c === 'client1' ? 'privileged' : 'unprivileged'} agent): ${ev[i]?.error}`);
      const after = ev.slice(i).filter((x) => x.kind === 'reply');
      t.true(after.length >= 3 && after.every((x) => !used.has(x.reply!) && x.from === `${VIP.dns}:53`), `${s.c}: ${JSON.stringify(after.slice(0, 3))}`);
    }
  } finally {
    for (const s of streams) {
      s.proc.child.kill('SIGTERM');
      await s.proc.exited;
    }
  }
});

labTest('the image runs the nftables mode too: node 2 switched from BPF to --mode nftables serves ClusterIP and NodePort', async (t) => {
  // a fallback mode needs its own addon and libraries in the image (kbp_nft.node: libnftables,
  // libnetfilter_conntrack); the image shipped the BPF addon only, so every other mode failed in it
  const node = lab.nodes[1]!;
  await run('podman', [...PODMAN, 'rm', '-f', '-t', '5', containerName(node)], { allowFail: true, timeoutMs: 30_000 });
  await node.agent?.exited;
  await startImageAgent(node, 'unprivileged', ['--mode', 'nftables']);
  const metrics = await lab.lab.exec(node.ns, 'curl', ['-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics']);
  t.regex(metrics.stdout, /^kubebpfproxy_dataplane_mode\{mode="nftables"\} 1$/m);
  // the switch removed the BPF agent's programs (kube-proxy's cleanup of the other modes): nftables serves alone
  const tc = await lab.lab.exec(node.ns, '/usr/sbin/tc', ['filter', 'show', 'dev', 'eth0', 'ingress'], { allowFail: true });
  t.notRegex(tc.stdout, /bpf/, `tc ingress of ${node.name}'s eth0 after the switch: ${tc.stdout}`);
  const p = pod('client2');
  t.deepEqual(names(await lab.curlMany(p.pod.ns, `http://${VIP.mytest}/`, 30)), ['pod-a', 'pod-b', 'pod-c'], 'ClusterIP from client2 (nftables)');
  t.deepEqual(names(await lab.curlMany(lab.ext, `http://${node.ip4}:${PORTS.nodePortFixed}/`, 30)), ['pod-a', 'pod-b', 'pod-c'], 'NodePort via node 2 (nftables)');
  const dump = await inImage(node, ['dump', '-o', 'json', '--mode', 'nftables', '--bpffs', node.pinRoot]);
  const compile = await inImage(node, ['compile', '-o', 'json', '--manifests', MANIFESTS_IN_IMAGE, '--node-name', node.name,
    '--node-ip', node.ip4, '--node-ip', node.ip6, '--nodeport-addresses', 'primary']);
  t.is(dump, compile, 'dump -o json --mode nftables (image) equals compile -o json (image)');
});
