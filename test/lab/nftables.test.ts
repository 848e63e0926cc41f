// The nftables data plane end to end (issue 9): the two-node lab, the real agent on each node with
// --mode nftables, real clients. One lab for the whole file; tests run in order. What every mode must
// do (ClusterIP, NodePort, LB IP, externalIP, UDP, dual-stack, hairpin, ...) is the agent suite's,
// run in this mode by nftables-agent.test.ts; this file checks what is particular to nftables.
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { ClusterLab, nodesYaml, sliceYaml, type LabNode, type LabPod } from '../../lab/cluster.js';
import { labManifests, PORTS, VIP } from '../../lab/services.js';
import { labAvailable, sweepLeftovers, waitForLine } from '../../testing/netns.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const test = anyTest as TestFn;
const avail = labAvailable();
const TABLE = 'kube-bpf-proxy-nft';
let lab: ClusterLab;
let confDir: string | undefined;
/**
 * Per node: node1 has kube-proxy's ClusterCIDR local detector (--cluster-cidr), node2
 * masqueradeAll (from a KubeProxyConfiguration); each is the only thing that tells the nodes apart.
 */
const nodeArgs: string[][] = [];

function pod(name: string): LabPod {
  return lab.pods.get(name)!;
}

function names(seen: Map<string, number>): string[] {
  return [...seen.keys()].sort();
}

async function change(fn: () => void): Promise<void> {
  const since = Date.now() / 1000;
  fn();
  await lab.waitSynced(since);
}

async function dumpJson(n: LabNode): Promise<string> {
  const r = await lab.cli(n, ['dump', '-o', 'json', '--mode', 'nftables', '--bpffs', n.pinRoot]);
  if (r.code !== 0) throw new Error(`dump on ${n.name}: ${r.stderr}`);
  return r.stdout;
}

async function dumpEqualsCompile(t: ExecutionContext): Promise<void> {
  for (const n of lab.nodes) t.is(await dumpJson(n), await lab.compileJson(n), `dump -o json equals compile -o json on ${n.name}`);
}

async function nftList(n: LabNode): Promise<string> {
  return (await lab.lab.exec(n.ns, '/usr/sbin/nft', ['list', 'table', 'inet', TABLE])).stdout;
}

test.before(async () => {
  if (!avail.ok) return;
  await sweepLeftovers();
  lab = new ClusterLab({ tag: 'nft', agentArgs: ['--mode', 'nftables'] });
  await lab.build({ pods: [
    { name: 'pod-a', node: 1 }, { name: 'pod-b', node: 1 }, { name: 'pod-c', node: 2 },
    { name: 'client1', node: 1, role: 'client' }, { name: 'client2', node: 2, role: 'client' },
  ] });
  lab.writeManifest('nodes.yaml', nodesYaml(lab.nodes));
  for (const [f, y] of Object.entries(labManifests(lab, ['pod-a', 'pod-b', 'pod-c'].map(pod)))) lab.writeManifest(f, y);
  confDir = mkdtempSync(join(tmpdir(), 'kbp-nft-conf-'));
  writeFileSync(join(confDir, 'masq-all.yaml'), 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: nftables\nnftables:\n  masqueradeAll: true\n');
  nodeArgs.push(['--cluster-cidr', '10.244.0.0/16,fd00:10:244::/48'], ['--config', join(confDir, 'masq-all.yaml')]);
  for (const n of lab.nodes) await lab.startAgent(n, { args: nodeArgs[n.index - 1] });
});

test.after.always(async () => {
  if (lab) await lab.stop();
  if (confDir) rmSync(confDir, { recursive: true, force: true });
});

const labTest = avail.ok ? test.serial : test.serial.skip;

labTest('the agent runs in nftables mode: metric, /healthz body, one table, no BPF program', async (t) => {
  const n = lab.nodes[0]!;
  const m = await lab.lab.exec(n.ns, 'curl', ['-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics']);
  t.regex(m.stdout, /^kubebpfproxy_dataplane_mode\{mode="nftables"\} 1$/m);
  const h = await lab.lab.exec(n.ns, 'curl', ['-s', '--max-time', '2', 'http://127.0.0.1:10256/healthz']);
  t.is(JSON.parse(h.stdout).dataplaneMode, 'nftables');
  t.regex(await nftList(n), /map services-int4 \{/);
  const tc = await lab.lab.exec(n.ns, 'tc', ['filter', 'show', 'dev', 'eth0', 'ingress']);
  t.notRegex(tc.stdout, /lb_tc/);
});

labTest('ClusterIP balances over every backend from pods on both nodes; dump equals compile', async (t) => {
  for (const c of ['client1', 'client2']) {
    const seen = await lab.curlMany(pod(c).pod.ns, `http://${VIP.mytest}/`, 24, { untilSeen: ['pod-a', 'pod-b', 'pod-c'] });
    t.deepEqual(names(seen), ['pod-a', 'pod-b', 'pod-c'], `from ${c}: ${[...seen]}`);
  }
  await dumpEqualsCompile(t);
  const table = await lab.cli(lab.nodes[0]!, ['dump', '--mode', 'nftables', '--bpffs', lab.nodes[0]!.pinRoot]);
  t.regex(table.stdout, /TCP  10\.100\.77\.149:80 +internal random +default\/mytest-svc:http ClusterIP/);
});

labTest('externalTrafficPolicy Local: source preserved; a node without local endpoints drops', async (t) => {
  const [node1, node2] = lab.nodes as [LabNode, LabNode];
  for (let i = 0; i < 6; i++) {
    const a = await lab.curl(lab.ext, `http://${node1.ip4}:${PORTS.nodePortLocal}/client`);
    t.regex(a, /^pod-[ab] (::ffff:)?192\.168\.50\.100 \d+$/, 'the pod sees the external client itself');
  }
  // dropped, not refused: kube-proxy's syncProxyRules rejects only when there is no endpoint at all
  const dropped = await lab.curl(lab.ext, `http://${node2.ip4}:${PORTS.nodePortLocal}/`, { timeoutSec: 2 });
  t.regex(dropped, /^ERR 28 /, `node2 has no local endpoint: dropped (curl times out), got ${dropped}`);
});

labTest('eTP=Cluster: every external flow is masqueraded, also to a local backend (kube-proxy), on NodePorts of both nodes', async (t) => {
  // syncProxyRules (pkg/proxy/nftables/proxier.go): an eTP=Cluster Service's external chain jumps
  // to mark-for-masquerade for every flow before it picks an endpoint, local or not
  const [node1, node2] = lab.nodes as [LabNode, LabNode];
  for (const [n, localPods, podGw] of [[node2, ['pod-c'], '10.244.2.1'], [node1, ['pod-a', 'pod-b'], '10.244.1.1']] as const) {
    const seen = new Map<string, string>();
    for (let i = 0; i < 30 && seen.size < 3; i++) {
      const a = await lab.curl(lab.ext, `http://${n.ip4}:${PORTS.nodePortFixed}/client`);
      seen.set(a.split(' ')[0]!, a);
    }
    t.deepEqual([...seen.keys()].sort(), ['pod-a', 'pod-b', 'pod-c'], `via ${n.name}: ${[...seen.values()]}`);
    for (const [p, a] of seen) {
      // a local backend sees the node's address toward it (its gateway), a remote one the node's eth0 address
      const want = (localPods as readonly string[]).includes(p) ? podGw : n.ip4;
      t.is(a.split(' ')[1]?.replace(/^::ffff:/, ''), want, `via ${n.name}, ${p} sees the node (masqueraded), not the client: ${a}`);
    }
  }
});

labTest('eTP=Local: the node\'s own flows to its NodePort are masqueraded and reach the cluster-wide endpoints (kube-proxy)', async (t) => {
  // syncProxyRules (pkg/proxy/nftables/proxier.go), an eTP=Local Service's external chain:
  // "fib saddr type local jump mark-for-masquerade" (masquerade local traffic), then "fib saddr type
  // local goto <cluster chain>" (short-circuit local traffic)
  const [node1, node2] = lab.nodes as [LabNode, LabNode];
  const seen = new Map<string, string>();
  for (let i = 0; i < 30 && seen.size < 2; i++) {
    const a = await lab.curl(node1.ns, `http://${node1.ip4}:${PORTS.nodePortLocal}/client`, { timeoutSec: 3 });
    seen.set(a.split(' ')[0]!, a);
  }
  t.deepEqual([...seen.keys()].sort(), ['pod-a', 'pod-b'], `from node1 itself: ${[...seen.values()]}`);
  // masqueraded: the pod sees node1's address toward it (its gateway), not the node address the flow left from
  for (const [p, a] of seen) t.is(a.split(' ')[1]?.replace(/^::ffff:/, ''), '10.244.1.1', `${p} sees node1's address toward it: ${a}`);
  // node2 has no local endpoint: an external client is dropped there, the node itself is served
  const a = await lab.curl(node2.ns, `http://${node2.ip4}:${PORTS.nodePortLocal}/client`, { timeoutSec: 3 });
  t.regex(a, new RegExp(`^pod-[ab] (::ffff:)?${node2.ip4.replace(/\./g, '\\.')} \\d+$`), `from node2 itself: ${a}`);
});

labTest('local detector (ClusterCIDR, node1): an off-cluster client of a ClusterIP is masqueraded, pods keep their source', async (t) => {
  // syncProxyRules: without masqueradeAll, a service chain marks for masquerade the flows
  // localDetector.IfNotLocalNFT() matches (ip saddr != clusterCIDR); the pods' own flows keep their source
  const node1 = lab.nodes[0]!;
  await lab.lab.ip(lab.ext, ['route', 'add', `${VIP.mytest}/32`, 'via', node1.ip4]);
  t.teardown(() => lab.lab.ip(lab.ext, ['route', 'del', `${VIP.mytest}/32`, 'via', node1.ip4]).then(() => undefined, () => undefined));
  const seen = new Map<string, string>();
  for (let i = 0; i < 30 && seen.size < 3; i++) {
    const a = await lab.curl(lab.ext, `http://${VIP.mytest}/client`, { timeoutSec: 3 });
    seen.set(a.split(' ')[0]!, a);
  }
  // without masquerade pod-c (node2) would answer the client directly, from its own address: no reply
  t.deepEqual([...seen.keys()].sort(), ['pod-a', 'pod-b', 'pod-c'], `from outside: ${[...seen.values()]}`);
  for (const [p, a] of seen) t.is(a.split(' ')[1]?.replace(/^::ffff:/, ''), p === 'pod-c' ? node1.ip4 : '10.244.1.1', `${p} sees node1, not 192.168.50.100: ${a}`);
  const fromPod = new Set<string>();
  for (let i = 0; i < 24 && fromPod.size < 3; i++) fromPod.add(await lab.curl(pod('client1').pod.ns, `http://${VIP.mytest}/client`));
  t.is(fromPod.size, 3, `${[...fromPod]}`);
  for (const a of fromPod) t.regex(a, /^pod-\w+ (::ffff:)?10\.244\.1\.100 /, `a pod's flow keeps its source: ${a}`);
});

labTest('masqueradeAll (node2): every flow to a ClusterIP is masqueraded, a pod\'s too', async (t) => {
  // syncProxyRules: with masqueradeAll the service chain jumps to mark-for-masquerade for every
  // flow to the clusterIP
  const node2 = lab.nodes[1]!;
  const seen = new Map<string, string>();
  for (let i = 0; i < 30 && seen.size < 3; i++) {
    const a = await lab.curl(pod('client2').pod.ns, `http://${VIP.mytest}/client`);
    seen.set(a.split(' ')[0]!, a);
  }
  t.deepEqual([...seen.keys()].sort(), ['pod-a', 'pod-b', 'pod-c'], `${[...seen.values()]}`);
  for (const [p, a] of seen) t.is(a.split(' ')[1]?.replace(/^::ffff:/, ''), p === 'pod-c' ? '10.244.2.1' : node2.ip4, `${p} sees node2, not client2 (10.244.2.100): ${a}`);
});

labTest('loadBalancerSourceRanges deny other sources; a Service without endpoints refuses at once (TCP and UDP)', async (t) => {
  const denied = await lab.curl(lab.ext, `http://${VIP.lbRanges}/`, { timeoutSec: 2 });
  t.regex(denied, /^ERR 28 /, `the external client is not in 10.9.9.0/24: dropped, got ${denied}`);
  const refused = await lab.curl(pod('client1').pod.ns, `http://${VIP.empty}/`, { timeoutSec: 5 });
  t.regex(refused, /^ERR 7 /);
  const udp = await lab.lab.client(pod('client1').pod.ns, { proto: 'udp', host: VIP.empty, port: 53, count: 1, timeoutMs: 3000, udpConnect: true });
  t.false(udp[0]!.ok);
  t.regex(udp[0]!.error ?? '', /ECONNREFUSED/, 'ICMP port unreachable reaches the client');
});

labTest('session affinity sticks, and its entry expires after timeoutSeconds (2 s)', async (t) => {
  const c = pod('client1').pod.ns;
  const node1 = lab.nodes[0]!;
  const first = await lab.curlMany(c, `http://${VIP.affinity}:8000/`, 10);
  t.is(first.size, 1, `sticky: ${[...first]}`);
  const entry = new RegExp(`${pod('client1').ip4.replace(/\./g, '\\.')} \\. ${VIP.affinity.replace(/\./g, '\\.')} \\. tcp \\. 8000 `);
  t.regex(await nftList(node1), entry, 'the affinity set holds the client');
  await new Promise((r) => setTimeout(r, 3000));
  t.notRegex(await nftList(node1), entry, 'the entry expired after 2 s idle');
});

labTest('a removed backend is never chosen again, also by a client with affinity; dump equals compile', async (t) => {
  const all = ['pod-a', 'pod-b', 'pod-c'].map(pod);
  const yaml = labManifests(lab, all);
  const without = (file: string, service: string, ports: Parameters<typeof sliceYaml>[0]['ports'], gone: string) =>
    yaml[file]!.replace(/---\napiVersion: discovery.k8s.io\/v1[\s\S]*$/, '') +
    sliceYaml({ service, ports, endpoints: all.filter((p) => p.name !== gone).map((p) => ({ pod: p })) });
  t.teardown(() => change(() => {
    lab.writeManifest('mytest.yaml', yaml['mytest.yaml']!);
    lab.writeManifest('affinity.yaml', yaml['affinity.yaml']!);
  }));
  // the affinity client's backend is the one removed
  const c = pod('client2').pod.ns;
  const sticky = [...(await lab.curlMany(c, `http://${VIP.affinity}:8000/`, 3)).keys()][0]!;
  await change(() => {
    lab.writeManifest('mytest.yaml', without('mytest.yaml', 'mytest-svc', [{ name: 'http', port: 8080 }], 'pod-c'));
    lab.writeManifest('affinity.yaml', without('affinity.yaml', 'nginx-clusterip-svc-sessionaffinityconfig', [{ name: 'http', port: 80 }], sticky));
  });
  for (const cl of ['client1', 'client2']) {
    const seen = await lab.curlMany(pod(cl).pod.ns, `http://${VIP.mytest}/`, 24);
    t.deepEqual(names(seen), ['pod-a', 'pod-b'], `from ${cl}: ${[...seen]}`);
  }
  const after = await lab.curlMany(c, `http://${VIP.affinity}:8000/`, 8);
  t.false(after.has(sticky), `affinity kept sending to removed ${sticky}: ${[...after]}`);
  t.is(after.size, 1, `a new sticky backend: ${[...after]}`);
  await dumpEqualsCompile(t);
});

labTest('UDP: a flow whose backend left the Service moves to another backend at once (stale conntrack entries deleted)', async (t) => {
  // kube-proxy: conntrack.CleanStaleEntries (pkg/proxy/conntrack/cleanup.go) deletes the entries to
  // a UDP Service port whose reply source is no longer a serving endpoint; without that, one socket
  // keeps reaching the pod that left (it still runs: only the slice dropped it)
  const all = ['pod-a', 'pod-b', 'pod-c'].map(pod);
  const yaml = labManifests(lab, all);
  t.teardown(() => change(() => lab.writeManifest('dns.yaml', yaml['dns.yaml']!)));
  const sender = lab.lab.spawn(pod('client1').pod.ns, process.execPath, ['-e', `
    const s = require('node:dgram').createSocket('udp4');
    s.on('message', (m) => console.log('reply ' + m.toString().split(' ')[0]));
    s.bind(0, () => {
      const timer = setInterval(() => s.send('x', 53, '${VIP.dns}'), 150);
      setTimeout(() => { clearInterval(timer); s.close(); }, 25000);
    });
  `], { what: 'one UDP flow' });
  t.teardown(() => { sender.child.kill('SIGTERM'); });
  const replies = () => [...sender.output().matchAll(/reply (pod-\w+)/g)].map((m) => m[1]!);
  const waitFor = async (n: number, ms: number) => {
    const end = Date.now() + ms;
    while (replies().length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  };
  await waitFor(4, 8000);
  const held = replies()[0];
  if (!held) throw new Error(`UDP flow: no reply: ${sender.output()}`);
  t.true(replies().every((r) => r === held), `one flow, one backend: ${replies()}`);
  await change(() => lab.writeManifest('dns.yaml', yaml['dns.yaml']!.replace(/---\napiVersion: discovery.k8s.io\/v1[\s\S]*$/, '') +
    sliceYaml({ service: 'kube-dns', ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 80 }],
      endpoints: all.filter((p) => p.name !== held).map((p) => ({ pod: p })) })));
  const since = replies().length;
  await waitFor(since + 8, 6000);
  // one datagram may have been on its way while the entry went
  const after = replies().slice(since + 1);
  t.true(after.length >= 4, `the flow kept being answered: ${sender.output()}`);
  t.false(after.includes(held), `datagrams still reach ${held}, which left the Service: ${after}`);
  t.is(new Set(after).size, 1, `the flow sticks to its new backend: ${after}`);
});

labTest('SCTP: a ClusterIP Service is served (INIT packets DNATed to a backend); the table holds it', async (t) => {
  // this kernel has no sctp module (no SCTP sockets), so the client and the backends use raw IP
  // sockets: the client sends an SCTP INIT (CRC32c computed) to the VIP, the pods print the SCTP
  // packets they receive. conntrack and NAT for SCTP are built in.
  const vip = '10.96.100.70';
  const all = ['pod-a', 'pod-b', 'pod-c'].map(pod);
  t.teardown(() => change(() => lab.removeManifest('sctp.yaml')));
  await change(() => lab.writeManifest('sctp.yaml', `---
apiVersion: v1
kind: Service
metadata: { name: sctp-svc, namespace: default }
spec:
  clusterIP: ${vip}
  ports: [{ name: s, port: 7777, targetPort: 7778, protocol: SCTP }]
` + sliceYaml({ service: 'sctp-svc', ports: [{ name: 's', port: 7778, protocol: 'SCTP' }], endpoints: all.map((p) => ({ pod: p })) })));
  const list = await nftList(lab.nodes[0]!);
  t.regex(list, new RegExp(`${vip.replace(/\./g, '\\.')} \\. sctp \\. 7777 : goto pick-int4-3`), 'the dispatch map holds the SCTP frontend');
  for (const p of all) t.regex(list, new RegExp(`${vip.replace(/\./g, '\\.')} \\. sctp \\. 7777 : ${p.ip4.replace(/\./g, '\\.')} \\. 7778`), `a DNAT map holds ${p.name}`);
  await dumpEqualsCompile(t);

  const listen = `
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
s.settimeout(0.5)
print('ready', flush=True)
end = time.time() + 60
while time.time() < end:
    try:
        d = s.recv(2048)
    except socket.timeout:
        continue
    ihl = (d[0] & 15) * 4
    sp, dp = struct.unpack('!HH', d[ihl:ihl + 4])
    print('got', socket.inet_ntoa(d[16:20]), dp, 'from', socket.inet_ntoa(d[12:16]), sp, flush=True)
`;
  const send = `
import socket, struct
def crc32c(b):
    c = 0xffffffff
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
for sport in range(40001, 40013):
    init = struct.pack('!BBHIIHHI', 1, 0, 20, 0x1000 + sport, 65535, 1, 1, 7)
    pkt = struct.pack('!HHII', sport, 7777, 0, 0) + init
    pkt = pkt[:8] + struct.pack('<I', crc32c(pkt)) + pkt[12:]
    s.sendto(pkt, ('${vip}', 0))
print('sent', flush=True)
`;
  const listeners = all.map((p) => lab.lab.spawn(p.pod.ns, 'python3', ['-c', listen], { what: `SCTP listener in ${p.name}` }));
  t.teardown(() => { for (const l of listeners) l.child.kill('SIGTERM'); });
  await Promise.all(listeners.map((l) => waitForLine(l, 'ready', 60_000)));
  await lab.lab.exec(pod('client1').pod.ns, 'python3', ['-c', send]);
  // bounded: a few seconds for the last packets, then the listeners go
  const deadline = Date.now() + 5000;
  const count = () => listeners.reduce((n, l) => n + [...l.output().matchAll(/^got /gm)].length, 0);
  while (count() < 12 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const l of listeners) l.child.kill('SIGTERM');
  await Promise.all(listeners.map((l) => l.exited));
  const got = all.map((p, i) => ({ p, lines: [...listeners[i]!.output().matchAll(/^got (\S+) (\d+) from (\S+) (\d+)$/gm)] }));
  const inits = got.flatMap(({ p, lines }) => lines.filter((m) => m[3] === pod('client1').ip4).map((m) => ({ pod: p.name, dst: m[1], dport: m[2], want: p.ip4 })));
  t.true(inits.length >= 12, `every INIT reached a backend: ${JSON.stringify(got.map(({ p, lines }) => [p.name, lines.length]))}`);
  t.true(inits.every((x) => x.dst === x.want && x.dport === '7778'), `DNATed to the pod's address and target port: ${JSON.stringify(inits.slice(0, 3))}`);
  t.true(new Set(inits.map((x) => x.pod)).size >= 2, `spread over backends: ${JSON.stringify(inits.map((x) => x.pod))}`);
});

labTest('kill -9 the agent and start it again: requests keep working, the table is reused, dump unchanged', async (t) => {
  const node1 = lab.nodes[0]!;
  const before = await dumpJson(node1);
  const gen = /set generation \{[^}]*elements = \{ (\S+) \}/.exec(await nftList(node1))?.[1];
  let looping = true, failures = 0, total = 0;
  const loop = (async () => {
    while (looping && total < 300) {
      const a = await lab.curl(lab.ext, `http://${node1.ip4}:${PORTS.nodePortFixed}/`, { timeoutSec: 3 });
      total++;
      if (a.startsWith('ERR')) failures++;
    }
  })();
  t.teardown(() => { looping = false; });
  await new Promise((r) => setTimeout(r, 800));
  node1.agent!.child.kill('SIGKILL');
  await node1.agent!.exited;
  node1.agent = undefined;
  await new Promise((r) => setTimeout(r, 800));
  await lab.startAgent(node1, { args: nodeArgs[0] });
  await new Promise((r) => setTimeout(r, 800));
  looping = false;
  await loop;
  t.true(total > 5, `${total} requests`);
  t.is(failures, 0, `${failures} of ${total} requests failed across the restart`);
  t.is(await dumpJson(node1), before, 'the restarted agent holds the same state');
  const gen2 = /set generation \{[^}]*elements = \{ (\S+) \}/.exec(await nftList(node1))?.[1];
  t.is(gen2, gen, 'no transaction was needed: the table was read back, not rebuilt');
});

labTest('cleanup --mode nftables removes the table; nothing translates any more', async (t) => {
  const node2 = lab.nodes[1]!;
  await lab.stopAgent(node2);
  const r = await lab.cli(node2, ['cleanup', '--mode', 'nftables', '--bpffs', node2.pinRoot]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /table removed/);
  const nft = await lab.lab.exec(node2.ns, '/usr/sbin/nft', ['list', 'tables']);
  t.notRegex(nft.stdout, new RegExp(TABLE));
  t.regex(await lab.curl(pod('client2').pod.ns, `http://${VIP.mytest}/`, { timeoutSec: 1 }), /^ERR/);
});
