// Runs inside each VM of the cluster tier (scripts/test-vm-cluster.sh; test/vm/init.sh starts it as
// root with KBP_VM_NODE=i, bpffs and cgroup v2 left unmounted as on a new machine). Makes the VM node
// i of test/vm/cluster.ts: eth0 on the shared segment, routes to the other nodes' pod networks via
// their node addresses (a CNI's host routes), a server pod and a client pod (network namespaces with
// veths, testing/netns.ts as in the namespace lab), then starts the agent in the VM's own network
// namespace from the manifests folder the host wrote, with --devices eth0. Once every node's agent
// has synced (each guest serves its state on CONTROL_PORT), it checks with real clients (curl): a
// ClusterIP from the client pod and from the node reaches the server pods of every VM, a NodePort on
// the next VM's address reaches them too, and `dump -o json` equals `compile -o json`. It then waits
// until the other nodes have finished their checks (their clients need this node's pods and agent),
// prints its verdicts and exits 0 only when every check passed. Every wait is bounded.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { uptime } from 'node:os';
import { Lab, Netns, POD_SERVER, run, waitForLine, type LabProcess } from '../../testing/netns.js';
import { clientPod, clusterNodes, CLUSTER_IP, CONTROL_PORT, NODE_PORT, serverPod, SERVER_PORT, type VmNode } from './cluster.js';

const BUILD = process.env.KBP_VM_BUILD ?? '';
const RUN = dirname(BUILD);
const MANIFESTS = join(RUN, 'manifests');
const AGENT = join(BUILD, 'kube-bpf-proxy.mjs');
const COUNT = (JSON.parse(readFileSync(join(RUN, 'cluster.json'), 'utf8')) as { nodes: number }).nodes;
const NODES = clusterNodes(COUNT);
const ME = (() => {
  const me = NODES[Number(process.env.KBP_VM_NODE) - 1];
  if (!me) throw new Error(`cluster-guest: KBP_VM_NODE=${process.env.KBP_VM_NODE} names no node of ${NODES.length}`);
  return me;
})();
if (!ME) throw new Error(`KBP_VM_NODE=${process.env.KBP_VM_NODE}: not a node of this ${COUNT}-node cluster`);
const PEERS = NODES.filter((n) => n !== ME);
/** the node whose NodePort this node's client tries: the next one, so every node's NodePort is tried */
const NEXT = NODES[ME.index % COUNT]!;
const SERVERS = NODES.map((n) => serverPod(n).name).sort();

/** kbp.socket-lb=false on the kernel command line (KBP_VM_SOCKET_LB on the host): the tc path serves pods too */
const SOCKET_LB = !/(^| )kbp\.socket-lb=false( |$)/.test(readFileSync('/proc/cmdline', 'utf8').trim());

const AGENT_READY_MS = 300_000;
const PEERS_READY_MS = 420_000;
const PEERS_DONE_MS = 240_000;

const tag = `vm-cluster: ${ME.name}:`;
const log = (s: string) => console.log(`${tag} [${uptime().toFixed(0)}s] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const verdicts: Array<{ ok: boolean; what: string; why: string }> = [];
async function check(what: string, fn: () => Promise<string>): Promise<boolean> {
  try {
    const why = await fn();
    verdicts.push({ ok: true, what, why });
    log(`ok - ${what}: ${why}`);
    return true;
  } catch (e) {
    const why = (e as Error).message;
    verdicts.push({ ok: false, what, why });
    log(`not ok - ${what}: ${why}`);
    return false;
  }
}

// ---- coordination: every guest serves its state; the others poll it ----------------------------
type State = 'setup' | 'ready' | 'failed' | 'done';
let state: State = 'setup';
const control = createServer((_req, res) => res.end(JSON.stringify({ node: ME.name, state })));
await new Promise<void>((resolve) => control.listen(CONTROL_PORT, '0.0.0.0', resolve));

async function peerState(n: VmNode): Promise<State | 'unreachable'> {
  try {
    const r = await fetch(`http://${n.ip4}:${CONTROL_PORT}/`, { signal: AbortSignal.timeout(5000) });
    return ((await r.json()) as { state: State }).state;
  } catch {
    return 'unreachable';
  }
}

/**
 * Polls every peer until each is in one of `want` (bounded); returns the last state of each. A peer
 * counts as 'unreachable' only after three failed polls in a row (a slow answer under emulation is
 * not a VM gone).
 */
async function waitPeers(want: Array<State | 'unreachable'>, timeoutMs: number): Promise<Map<string, string>> {
  const deadline = Date.now() + timeoutMs;
  const last = new Map<string, string>();
  const misses = new Map<string, number>();
  const settled = (p: VmNode) => want.includes(last.get(p.name) as State);
  for (;;) {
    for (const p of PEERS) {
      if (settled(p)) continue;
      const s = await peerState(p);
      misses.set(p.name, s === 'unreachable' ? (misses.get(p.name) ?? 0) + 1 : 0);
      last.set(p.name, s === 'unreachable' && misses.get(p.name)! < 3 ? 'no answer yet' : s);
    }
    if (PEERS.every(settled) || Date.now() > deadline) return last;
    await sleep(1000);
  }
}

// ---- the node ---------------------------------------------------------------------------------------
const lab = new Lab('vm');
// the VM's own network namespace under a name, so the lab's helpers (ip -n NAME) address it too
const root = new Netns('vmroot');
let agent: LabProcess | undefined;
const sh = (cmd: string, args: string[]) => run(cmd, args, { timeoutMs: 30_000 });

async function setupNode(): Promise<string> {
  await sh('ip', ['netns', 'attach', root.name, '1']);
  for (const [k, v] of [['net.ipv4.ip_forward', 1], ['net.ipv6.conf.all.forwarding', 1], ['net.ipv6.conf.all.accept_dad', 0], ['net.ipv6.conf.default.accept_dad', 0]] as const) {
    await sh('sysctl', ['-q', '-w', `${k}=${v}`]);
  }
  await sh('ip', ['link', 'set', 'eth0', 'up']);
  await lab.addAddress(root, 'eth0', `${ME.ip4}/24`);
  await lab.addAddress(root, 'eth0', `${ME.ip6}/64`);
  for (const o of PEERS) {
    await lab.addRoute(root, o.podCidr4, { via: o.ip4 });
    await lab.addRoute(root, o.podCidr6, { via: o.ip6 });
  }
  return `eth0 ${ME.ip4}, ${ME.ip6}; routes to ${PEERS.map((o) => `${o.podCidr4} via ${o.ip4}`).join(', ')}`;
}

const pods = new Map<string, Netns>();
async function setupPods(): Promise<string> {
  for (const p of [serverPod(ME), clientPod(ME)]) {
    const pod = await lab.addPod({
      name: p.name, node: root, hostIf: `v${p.name}`.slice(0, 15),
      addresses: [p.ip4, p.ip6], gateways: { v4: ME.gw4, v6: ME.gw6 },
    });
    pods.set(p.name, pod.ns);
    if (p.role !== 'server') continue;
    // started by hand rather than lab.startPodServer: node takes seconds to start under emulation
    const proc = lab.spawn(pod.ns, process.execPath, [POD_SERVER, '--name', p.name, '--http', String(SERVER_PORT)], { what: `pod-server ${p.name}` });
    await waitForLine(proc, 'ready', 90_000);
  }
  return `${serverPod(ME).name} ${serverPod(ME).ip4}:${SERVER_PORT} (pod-server.mjs), ${clientPod(ME).name} ${clientPod(ME).ip4}`;
}

async function metrics(): Promise<string> {
  const r = await fetch('http://127.0.0.1:10249/metrics', { signal: AbortSignal.timeout(3000) });
  return r.text();
}

async function startAgent(): Promise<string> {
  const args = [AGENT, 'run', '--manifests', MANIFESTS, '--node-name', ME.name, '--node-ip', ME.ip4, '--node-ip', ME.ip6,
    '--devices', 'eth0', '--mode', 'bpf', '--socket-lb', String(SOCKET_LB)];
  const t0 = Date.now();
  agent = lab.spawn(null, process.execPath, args, { what: `agent ${ME.name}` });
  const deadline = t0 + AGENT_READY_MS;
  for (;;) {
    if (agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`the agent exited: ${agent.output().slice(-3000)}`);
    try {
      const h = await fetch('http://127.0.0.1:10256/healthz', { signal: AbortSignal.timeout(3000) });
      if (h.status === 200 && /^kubeproxy_sync_proxy_rules_last_timestamp_seconds [1-9]/m.test(await metrics())) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`not healthy and synced within ${AGENT_READY_MS / 1000}s: ${agent.output().slice(-3000)}`);
    await sleep(1000);
  }
  return `healthy and synced ${((Date.now() - t0) / 1000).toFixed(0)}s after start: node ${process.execPath.split('/').pop()} ${args.slice(1).join(' ')}`;
}

/** what this VM's init left to the agent (kbp.bare=1): it must have mounted bpffs and cgroup v2 itself */
async function hostPrepared(): Promise<string> {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  const bpf = mounts.filter((m) => m[2] === 'bpf').map((m) => m[1]);
  const cg = mounts.filter((m) => m[2] === 'cgroup2').map((m) => m[1]);
  if (!bpf.includes('/sys/fs/bpf')) throw new Error(`no bpffs at /sys/fs/bpf (bpf mounts: ${bpf.join(', ') || 'none'})`);
  if (cg.length === 0) throw new Error('no cgroup v2 mounted');
  return `bpffs at ${bpf.join(', ')}, cgroup v2 at ${cg.join(', ')} (init mounted neither)`;
}

// ---- checks with real clients -----------------------------------------------------------------------
/**
 * curl `url` from `ns` (null: the node itself) until every server pod answered (at least 6, at most
 * 30 requests); fails on any error or any other answer, or when a server was never reached. With a
 * /client URL the pods also tell the source address they saw: returned per pod.
 */
async function reachesAll(ns: Netns | null, url: string): Promise<{ tally: string; sources: Map<string, Set<string>> }> {
  const seen = new Map<string, number>();
  const sources = new Map<string, Set<string>>();
  for (let i = 0; i < 30; i++) {
    const r = ns
      ? await lab.curl(ns, url, { timeoutS: 5 })
      : await lab.runIn(null, 'curl', ['-sS', '--max-time', '5', url], { timeoutMs: 20_000 }).then((x) => ({ exit: x.code, body: x.stdout.trim(), stderr: x.stderr.trim() }));
    const [name = '', source] = r.body.split(' ');
    // errors alike but for their timing count as one kind
    const answer = r.exit === 0 ? name : `ERR curl exit ${r.exit}: ${r.stderr.replace(/ after \d+ ms/, '').slice(0, 160)}`;
    seen.set(answer, (seen.get(answer) ?? 0) + 1);
    // the pods listen dual-stack: IPv4 peers show as ::ffff:a.b.c.d
    if (r.exit === 0 && source) sources.set(name, (sources.get(name) ?? new Set()).add(source.replace(/^::ffff:/, '')));
    if (i >= 5 && SERVERS.every((s) => seen.has(s))) break;
  }
  const tally = [...seen].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} x${v}`).join(', ');
  const wrong = [...seen.keys()].filter((k) => !SERVERS.includes(k));
  const missing = SERVERS.filter((s) => !seen.has(s));
  if (wrong.length || missing.length) throw new Error(`${tally}${missing.length ? `; never reached ${missing.join(', ')}` : ''}`);
  return { tally, sources };
}

/**
 * The NodePort of another node: every pod answers, and the pods of other nodes than the one
 * addressed saw that node's address as the source (its nftables masquerade: their replies must go
 * back through it to be translated back).
 */
async function nodePort(ns: Netns, target: VmNode): Promise<string> {
  const { tally, sources } = await reachesAll(ns, `http://${target.ip4}:${NODE_PORT}/client`);
  const seenFrom = [...sources].map(([pod, src]) => `${pod} saw ${[...src].join(' ')}`).join(', ');
  const remote = NODES.filter((n) => n !== target).map((n) => serverPod(n).name);
  const wrong = remote.filter((pod) => [...(sources.get(pod) ?? [])].some((a) => a !== target.ip4));
  if (wrong.length) throw new Error(`${tally}; ${seenFrom}: ${wrong.join(', ')} should see only ${target.ip4} (masquerade on ${target.name})`);
  return `${tally}; ${seenFrom}`;
}

async function direct(): Promise<string> {
  const out: string[] = [];
  for (const n of NODES) {
    const s = serverPod(n);
    const r = await lab.curl(pods.get(clientPod(ME).name)!, `http://${s.ip4}:${SERVER_PORT}/`, { timeoutS: 5 });
    if (r.exit !== 0 || r.body !== s.name) throw new Error(`${s.ip4}:${SERVER_PORT}: curl exit ${r.exit}, ${JSON.stringify(r.body)} ${r.stderr}`);
    out.push(`${s.name} on ${n.name}`);
  }
  return out.join(', ');
}

async function cli(args: string[]): Promise<string> {
  const r = await run(process.execPath, [AGENT, ...args], { timeoutMs: 120_000, allowFail: true });
  if (r.code !== 0) throw new Error(`kube-bpf-proxy ${args[0]} exited ${r.code}: ${r.stderr.trim().slice(-1000)}`);
  return r.stdout;
}

async function dumpEqualsCompile(): Promise<string> {
  const dump = await cli(['dump', '-o', 'json']);
  const compiled = await cli(['compile', '-o', 'json', '--manifests', MANIFESTS, '--node-name', ME.name, '--node-ip', ME.ip4, '--node-ip', ME.ip6]);
  if (dump !== compiled) {
    const a = dump.split('\n'), b = compiled.split('\n');
    const at = a.findIndex((l, i) => l !== b[i]);
    throw new Error(`they differ from line ${at + 1}: dump ${JSON.stringify(a[at])}, compile ${JSON.stringify(b[at])}`);
  }
  return `${dump.length} bytes alike`;
}

// ---- the run ------------------------------------------------------------------------------------------
log(`node ${ME.index} of ${COUNT}: ${ME.ip4}, pods ${ME.podCidr4}; servers ${SERVERS.join(', ')}; socket LB ${SOCKET_LB ? 'on' : 'off (tc only)'}`);
let up = await check('node network (eth0 on the shared segment, routes to the other pod networks)', setupNode);
up = up && await check('pods (network namespaces on veths, a real server in the server pod)', setupPods);
up = up && await check('the agent (run --manifests, in the VM\'s network namespace, --devices eth0)', startAgent);
if (up) await check('the agent prepared the host itself (bpffs, cgroup v2)', hostPrepared);
state = up ? 'ready' : 'failed';
log(`state ${state}; waiting for ${PEERS.map((p) => p.name).join(', ')}`);
const ready = await waitPeers(['ready', 'failed', 'done'], PEERS_READY_MS);
log(`peers: ${[...ready].map(([n, s]) => `${n} ${s}`).join(', ')}`);
if (up) {
  const client = pods.get(clientPod(ME).name)!;
  await check(`pod network: ${clientPod(ME).name} reaches every server pod directly (no Service)`, direct);
  await check(`ClusterIP ${CLUSTER_IP}:80 from pod ${clientPod(ME).name} reaches the pods of every VM`, async () => (await reachesAll(client, `http://${CLUSTER_IP}/`)).tally);
  // without the socket hooks a host-network client's packet to a ClusterIP needs a route out of the
  // node before tc can translate it (the nodes here have no default route), and tc does not re-route
  // after translating: not a behaviour this tier can claim, so only checked with socket LB on
  if (SOCKET_LB) await check(`ClusterIP ${CLUSTER_IP}:80 from ${ME.name} itself (host network) reaches the pods of every VM`, async () => (await reachesAll(null, `http://${CLUSTER_IP}/`)).tally);
  else log(`skipped: ClusterIP from ${ME.name} itself (host network): needs the socket hooks here`);
  await check(`NodePort ${NEXT.ip4}:${NODE_PORT} (${NEXT.name}) from pod ${clientPod(ME).name} on ${ME.name} reaches the pods of every VM`, () => nodePort(client, NEXT));
  await check('dump -o json equals compile -o json', dumpEqualsCompile);
}
const bad = verdicts.filter((v) => !v.ok).length;
if (bad && agent) log(`the agent's output (last 3000 characters):\n${agent.output().slice(-3000)}`);
state = 'done';
// the other nodes' clients still need this node's pods and agent until they are done too
const done = await waitPeers(['done', 'failed', 'unreachable'], PEERS_DONE_MS);
log(`peers at the end: ${[...done].map(([n, s]) => `${n} ${s}`).join(', ')}`);
for (const v of verdicts) console.log(`${tag} ${v.ok ? 'PASS' : 'FAIL'}  ${v.what}${v.ok ? '' : `: ${v.why}`}`);
console.log(`${tag} ${verdicts.length - bad} passed, ${bad} failed`);
process.exit(bad || !up ? 1 : 0);
