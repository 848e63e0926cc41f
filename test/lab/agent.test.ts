// The agent end to end (issue 4): a two-node lab, the real agent on each node in standalone mode,
// real clients (curl, a UDP client, wrk). One lab for the whole file; tests run in order.
import anyTest, { type TestFn } from 'ava';
import { ClusterLab, nodesYaml, sliceYaml, type LabPod } from '../../lab/cluster.js';
import { labManifests, PORTS, VIP } from '../../lab/services.js';
import { labAvailable, sweepLeftovers } from '../../testing/netns.js';

const test = anyTest as TestFn<{ lab: ClusterLab }>;
const avail = labAvailable();
let lab: ClusterLab;

function pod(name: string): LabPod {
  return lab.pods.get(name)!;
}

/** Rewrites manifests and waits until both agents synced them. */
async function change(fn: () => void): Promise<void> {
  const since = Date.now() / 1000;
  fn();
  await lab.waitSynced(since);
}

async function dumpEqualsCompile(t: import('ava').ExecutionContext): Promise<void> {
  for (const n of lab.nodes) t.is(await lab.dumpJson(n), await lab.compileJson(n), `dump -o json equals compile -o json on ${n.name}`);
}

function names(seen: Map<string, number>): string[] {
  return [...seen.keys()].sort();
}

test.before(async () => {
  if (!avail.ok) return;
  await sweepLeftovers();
  lab = new ClusterLab({ tag: 'agent' });
  await lab.build({ pods: [
    { name: 'pod-a', node: 1 }, { name: 'pod-b', node: 1 }, { name: 'pod-c', node: 2 }, { name: 'pod-d', node: 2 },
    { name: 'client1', node: 1, role: 'client' }, { name: 'client2', node: 2, role: 'client' },
  ] });
  lab.writeManifest('nodes.yaml', nodesYaml(lab.nodes));
  for (const [f, y] of Object.entries(labManifests(lab, ['pod-a', 'pod-b', 'pod-c'].map(pod)))) lab.writeManifest(f, y);
  lab.writeManifest('itp.yaml', `---
apiVersion: v1
kind: Service
metadata: { name: web-itp-local, namespace: default }
spec:
  clusterIP: 10.96.100.60
  internalTrafficPolicy: Local
  ports: [{ name: http, port: 80, targetPort: 80 }]
` + sliceYaml({ service: 'web-itp-local', ports: [{ name: 'http', port: 80 }], endpoints: ['pod-a', 'pod-b', 'pod-c'].map((n) => ({ pod: pod(n) })) }));
  for (const n of lab.nodes) await lab.startAgent(n);
});

test.after.always(async () => {
  if (process.env.KBP_LAB_KEEP) {
    const { writeFileSync, existsSync } = await import('node:fs');
    writeFileSync('/tmp/dbg/info', JSON.stringify({ prefix: lab.lab.prefix, manifests: lab.manifests, nodes: lab.nodes.map((n) => [n.ns.name, n.pinRoot]) }));
    const end = Date.now() + 10 * 60_000;
    while (!existsSync('/tmp/dbg/stop') && Date.now() < end) await new Promise((r) => setTimeout(r, 500));
  }
  if (lab) await lab.stop();
});

const labTest = avail.ok ? test.serial : test.serial.skip;

labTest('ClusterIP balances over every ready backend, from pods on both nodes; dump equals compile', async (t) => {
  for (const c of ['client1', 'client2']) {
    const seen = await lab.curlMany(pod(c).pod.ns, `http://${VIP.mytest}/`, 24);
    t.deepEqual(names(seen), ['pod-a', 'pod-b', 'pod-c'], `from ${c}: ${[...seen]}`);
  }
  await dumpEqualsCompile(t);
});

labTest('multi-port Service: named ports over TCP and UDP, UDP reaching every backend', async (t) => {
  const tcp = await lab.curlMany(pod('client1').pod.ns, `http://${VIP.dns}:53/`, 12);
  t.deepEqual(names(tcp), ['pod-a', 'pod-b', 'pod-c']);
  const udp = await lab.lab.client(pod('client1').pod.ns, { proto: 'udp', host: VIP.dns, port: 53, count: 24, timeoutMs: 2000 });
  t.true(udp.every((r) => r.ok), JSON.stringify(udp.filter((r) => !r.ok)));
  t.deepEqual([...new Set(udp.map((r) => r.reply))].sort(), ['pod-a', 'pod-b', 'pod-c']);
  // the reply comes from the frontend, not the backend
  t.true(udp.every((r) => r.from?.startsWith(`${VIP.dns}:53`) || r.from?.includes(`${VIP.dns}`)), JSON.stringify(udp[0]));
});

// issue 7: a datagram over the MTU reaches the ClusterIP in fragments, and the answer, as large,
// comes back in fragments from the VIP (the later fragments carry no UDP header: tc translates them
// by the first fragment's ports, lb_frags)
labTest('UDP over the MTU through a ClusterIP: 3000-byte datagrams in fragments both ways, answered from the VIP', async (t) => {
  const payload = 'big:'.padEnd(3000, 'x');
  const udp = await lab.lab.client(pod('client1').pod.ns, { proto: 'udp', host: VIP.dns, port: 53, count: 8, timeoutMs: 3000, payload });
  t.true(udp.every((r) => r.ok), JSON.stringify(udp.filter((r) => !r.ok)));
  t.true(udp.every((r) => r.reply?.length === 3000 && /^pod-[abc] \.+$/.test(r.reply)), JSON.stringify(udp.map((r) => [r.reply?.slice(0, 12), r.reply?.length])));
  t.true(udp.every((r) => r.from?.startsWith(`${VIP.dns}:53`)), JSON.stringify(udp.map((r) => r.from)));
  t.true(new Set(udp.map((r) => r.reply?.split(' ')[0])).size >= 2, 'more than one backend answered');
});

labTest('NodePort from outside on each node reaches local and remote backends (eTP Cluster)', async (t) => {
  for (const n of lab.nodes) {
    const seen = await lab.curlMany(lab.ext, `http://${n.ip4}:${PORTS.nodePortFixed}/`, 24);
    t.deepEqual(names(seen), ['pod-a', 'pod-b', 'pod-c'], `via ${n.name}: ${[...seen]}`);
  }
});

labTest('LoadBalancer IP and externalIP from outside', async (t) => {
  t.deepEqual(names(await lab.curlMany(lab.ext, `http://${VIP.lb}:8000/`, 18)), ['pod-a', 'pod-b', 'pod-c']);
  t.deepEqual(names(await lab.curlMany(lab.ext, `http://${VIP.externalIP}:8000/`, 18)), ['pod-a', 'pod-b', 'pod-c']);
});

labTest('externalTrafficPolicy Local: source address preserved, a node without local endpoints refuses, healthCheckNodePort', async (t) => {
  const [node1, node2] = lab.nodes as [ClusterLab['nodes'][0], ClusterLab['nodes'][0]];
  for (let i = 0; i < 6; i++) {
    const a = await lab.curl(lab.ext, `http://${node1.ip4}:${PORTS.nodePortLocal}/client`);
    t.regex(a, /^pod-[ab] (::ffff:)?192\.168\.50\.100 \d+$/, 'the pod sees the external client itself');
  }
  const refused = await lab.curl(lab.ext, `http://${node2.ip4}:${PORTS.nodePortLocal}/`, { timeoutSec: 3 });
  t.regex(refused, /^ERR 7 /, `node2 has no local endpoint: refused at once, got ${refused}`);
  const h1 = await lab.lab.exec(lab.ext, 'curl', ['-s', '-w', ' %{http_code}', '--max-time', '2', `http://${node1.ip4}:${PORTS.healthCheckLocal}/`]);
  t.regex(h1.stdout, /"localEndpoints":2.* 200$/);
  const h2 = await lab.lab.exec(lab.ext, 'curl', ['-s', '-w', ' %{http_code}', '--max-time', '2', `http://${node2.ip4}:${PORTS.healthCheckLocal}/`], { allowFail: true });
  t.regex(h2.stdout, /"localEndpoints":0.* 503$/);
});

labTest('internalTrafficPolicy Local: each node reaches only its own endpoints', async (t) => {
  t.deepEqual(names(await lab.curlMany(pod('client1').pod.ns, 'http://10.96.100.60/', 12)), ['pod-a', 'pod-b']);
  t.deepEqual(names(await lab.curlMany(pod('client2').pod.ns, 'http://10.96.100.60/', 6)), ['pod-c']);
});

labTest('session affinity sticks, and expires after timeoutSeconds (2 s, seed 004)', async (t) => {
  const c = pod('client1').pod.ns;
  const node1 = lab.nodes[0]!;
  const first = await lab.curlMany(c, `http://${VIP.affinity}:8000/`, 10);
  t.is(first.size, 1, `sticky: ${[...first]}`);
  // Maglev hashes the client address without its port under affinity (every node picks alike), so
  // an expired entry shows in the kernel's counters, not in a different pick
  const expiredBefore = await lab.datapathEvent(node1, 'affinity_expired');
  const hitsBefore = await lab.datapathEvent(node1, 'affinity_hit');
  await lab.curl(c, `http://${VIP.affinity}:8000/`);
  t.is(await lab.datapathEvent(node1, 'affinity_expired'), expiredBefore, 'not expired within the timeout');
  t.true(await lab.datapathEvent(node1, 'affinity_hit') > hitsBefore);
  await new Promise((r) => setTimeout(r, 2500));
  t.true(first.has(await lab.curl(c, `http://${VIP.affinity}:8000/`)));
  t.true(await lab.datapathEvent(node1, 'affinity_expired') > expiredBefore, 'the entry expired after 2 s idle');
});

labTest('loadBalancerSourceRanges deny other sources; a Service without endpoints refuses at once', async (t) => {
  const denied = await lab.curl(lab.ext, `http://${VIP.lbRanges}/`, { timeoutSec: 2 });
  t.regex(denied, /^ERR/, 'the external client is not in 10.9.9.0/24');
  const t0 = Date.now();
  const refused = await lab.curl(pod('client1').pod.ns, `http://${VIP.empty}/`, { timeoutSec: 5 });
  t.regex(refused, /^ERR 7 /);
  t.true(Date.now() - t0 < 2000, 'refused, not timed out');
  const udp = await lab.lab.client(pod('client1').pod.ns, { proto: 'udp', host: VIP.empty, port: 53, count: 1, timeoutMs: 3000, udpConnect: true });
  t.false(udp[0]!.ok);
  t.regex(udp[0]!.error ?? '', /ECONNREFUSED/, 'ICMP port unreachable reaches the client');
});

labTest('dual-stack Service over IPv6', async (t) => {
  const seen = await lab.curlMany(pod('client1').pod.ns, `http://[${VIP.dual6}]/`, 18);
  t.deepEqual(names(seen), ['pod-a', 'pod-b', 'pod-c']);
  t.deepEqual(names(await lab.curlMany(pod('client2').pod.ns, `http://${VIP.dual4}/`, 12)), ['pod-a', 'pod-b', 'pod-c']);
  await dumpEqualsCompile(t);
});

labTest('scaling up and down under a client loop: no failed request; a terminating backend drains its connection', async (t) => {
  const c = pod('client1').pod.ns;
  const slice = (eps: Parameters<typeof sliceYaml>[0]['endpoints']) => labManifests(lab, ['pod-a', 'pod-b', 'pod-c'].map(pod))['mytest.yaml']!
    .replace(/---\napiVersion: discovery.k8s.io\/v1[\s\S]*$/, '') + sliceYaml({ service: 'mytest-svc', ports: [{ name: 'http', port: 8080 }], endpoints: eps });

  // a keep-alive connection through the VIP, held across the change: a request every 500 ms (the
  // pod server closes idle keep-alive connections after 5 s), each reply printed
  const holder = lab.lab.spawn(c, process.execPath, ['-e', `
    const net = require('node:net');
    const s = net.connect(80, '${VIP.mytest}');
    const req = 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: keep-alive\\r\\n\\r\\n';
    s.on('data', (d) => { const m = /pod-\\w+/.exec(d.toString()); if (m) console.log('reply ' + m[0]); });
    s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
    s.on('close', () => { console.log('closed'); process.exit(0); });
    s.write(req);
    const timer = setInterval(() => s.write(req), 500);
    setTimeout(() => { clearInterval(timer); s.end(); }, 30000);
  `], { what: 'keep-alive holder' });
  t.teardown(() => { holder.child.kill('SIGTERM'); });
  const replies = () => [...holder.output().matchAll(/reply (pod-\w+)/g)].map((m) => m[1]!);
  const deadline = Date.now() + 8000;
  while (replies().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const held = replies()[0];
  if (!held) throw new Error(`keep-alive holder: ${holder.output()}`);
  // put the Service back for the tests after, whatever happens here
  t.teardown(() => change(() => lab.writeManifest('mytest.yaml', labManifests(lab, ['pod-a', 'pod-b', 'pod-c'].map(pod))['mytest.yaml']!)));

  let failures = 0, total = 0;
  let looping = true;
  t.teardown(() => { looping = false; });
  const loop = (async () => {
    while (looping && total < 400) {
      const a = await lab.curl(c, `http://${VIP.mytest}/`, { timeoutSec: 3 });
      total++;
      if (a.startsWith('ERR')) failures++;
    }
  })();
  // scale up: pod-d joins
  await change(() => lab.writeManifest('mytest.yaml', slice(['pod-a', 'pod-b', 'pod-c', 'pod-d'].map((n) => ({ pod: pod(n) })))));
  // the held connection's pod starts terminating (still serving): it drains, gets no new flows
  const before = replies().length;
  await change(() => lab.writeManifest('mytest.yaml', slice(['pod-a', 'pod-b', 'pod-c', 'pod-d'].map((n) => (
    n === held ? { pod: pod(n), ready: false, serving: true, terminating: true } : { pod: pod(n) })))));
  await new Promise((r) => setTimeout(r, 2000));
  const after = replies().slice(before);
  t.true(after.length >= 2, `the held connection kept being answered: ${holder.output()}`);
  t.true(after.every((r) => r === held), `the held connection stayed on ${held}: ${after}`);
  t.notRegex(holder.output(), /error|closed/);
  await dumpEqualsCompile(t);
  const newOnes = await lab.curlMany(c, `http://${VIP.mytest}/`, 16);
  t.false(newOnes.has(held), `terminating ${held} got new flows: ${[...newOnes]}`);
  // scale down: the terminating pod leaves the slice
  await change(() => lab.writeManifest('mytest.yaml', slice(['pod-a', 'pod-b', 'pod-c', 'pod-d'].filter((n) => n !== held).map((n) => ({ pod: pod(n) })))));
  await new Promise((r) => setTimeout(r, 1000));
  looping = false;
  await loop;
  t.true(total > 10, `the loop ran ${total} requests`);
  t.is(failures, 0, `${failures} of ${total} requests failed while scaling`);
});

labTest('kill -9 the agent under load and start it again: zero failed requests, dump unchanged', async (t) => {
  const node1 = lab.nodes[0]!;
  const before = await lab.dumpJson(node1);
  const wrk = lab.lab.spawn(lab.ext, 'wrk', ['-t1', '-c4', '-d6s', '--timeout', '2s', '-H', 'Connection: close', `http://${node1.ip4}:${PORTS.nodePortFixed}/`], { what: 'wrk' });
  await new Promise((r) => setTimeout(r, 1500));
  node1.agent!.child.kill('SIGKILL');
  await node1.agent!.exited;
  node1.agent = undefined;
  await new Promise((r) => setTimeout(r, 1000));
  await lab.startAgent(node1);
  const code = await wrk.exited;
  const out = wrk.output();
  t.is(code, 0, out);
  const reqs = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  t.true(reqs > 20, `wrk made ${reqs} requests: ${out}`);
  t.notRegex(out, /Socket errors/, out);
  t.notRegex(out, /Non-2xx/, out);
  t.is(await lab.dumpJson(node1), before, 'the restarted agent reused every id and entry');
});

labTest('hairpin: a pod balanced to itself through its Service gets through', async (t) => {
  const seen = await lab.curlMany(pod('pod-a').pod.ns, `http://${VIP.mytest}/`, 24);
  t.false([...seen.keys()].some((k) => k.startsWith('ERR')), `${[...seen]}`);
  t.true(seen.has('pod-a'), `pod-a never reached itself: ${[...seen]}`);
});

labTest('a pod that appears after the agent started is served (its new device gets the programs)', async (t) => {
  const c3 = await lab.addPod({ name: 'client3', node: 1, role: 'client' });
  const deadline = Date.now() + 25_000;
  let answer = '';
  while (Date.now() < deadline) {
    answer = await lab.curl(c3.pod.ns, `http://${VIP.mytest}/`, { timeoutSec: 1 });
    if (!answer.startsWith('ERR')) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  t.regex(answer, /^pod-[a-d]$/, 'the new pod reached the ClusterIP');
});

labTest('socket LB through the agent: on, connects are balanced in the hooks; off, tc translates again', async (t) => {
  const node1 = lab.nodes[0]!;
  const c = pod('client1').pod.ns;
  await lab.stopAgent(node1);
  await lab.startAgent(node1, { socketLb: true });
  const sock0 = await lab.datapathEvent(node1, 'sock_connect');
  const fwd0 = await lab.datapathEvent(node1, 'fwd_new');
  const on = await lab.curlMany(c, `http://${VIP.mytest}/`, 18, { cgroup: node1.cgroup });
  t.deepEqual(names(on), ['pod-a', 'pod-b', 'pod-c']);
  t.true(await lab.datapathEvent(node1, 'sock_connect') - sock0 >= 18, 'every connect translated by the hooks');
  t.is(await lab.datapathEvent(node1, 'fwd_new') - fwd0, 0, 'tc had nothing to translate');
  const refused = await lab.curl(c, `http://${VIP.empty}/`, { cgroup: node1.cgroup });
  t.regex(refused, /^ERR 7 /, 'no endpoints: connect refused in the hook');

  await lab.stopAgent(node1);
  await lab.startAgent(node1, { socketLb: false });
  const sock1 = await lab.datapathEvent(node1, 'sock_connect');
  const off = await lab.curlMany(c, `http://${VIP.mytest}/`, 12, { cgroup: node1.cgroup });
  t.deepEqual(names(off), ['pod-a', 'pod-b', 'pod-c']);
  t.is(await lab.datapathEvent(node1, 'sock_connect'), sock1, 'hooks detached');
  await dumpEqualsCompile(t);
});

labTest('cleanup removes every program, pin and rule the agent installed', async (t) => {
  const node2 = lab.nodes[1]!;
  await lab.stopAgent(node2);
  const r = await lab.cli(node2, ['cleanup', '--bpffs', node2.pinRoot]);
  t.is(r.code, 0, r.stderr);
  const tcIn = await lab.lab.exec(node2.ns, 'tc', ['filter', 'show', 'dev', 'eth0', 'ingress']);
  t.notRegex(tcIn.stdout, /lb_tc/);
  const link = await lab.lab.exec(node2.ns, 'ip', ['link', 'show', 'eth0']);
  t.notRegex(link.stdout, /xdp/);
  const nft = await lab.lab.exec(node2.ns, '/usr/sbin/nft', ['list', 'tables']);
  t.notRegex(nft.stdout, /kube-bpf-proxy/);
  const { existsSync, readdirSync } = await import('node:fs');
  t.true(!existsSync(node2.pinRoot) || readdirSync(node2.pinRoot).length === 0, 'no pins left');
  // and nothing translates any more on node2
  t.regex(await lab.curl(pod('client2').pod.ns, `http://${VIP.mytest}/`, { timeoutSec: 1 }), /^ERR/);
});
