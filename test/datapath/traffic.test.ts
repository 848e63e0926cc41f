// Real packets through the tc programs, on top of the BPF_PROG_TEST_RUN table: three namespaces
// this test creates and removes (client -- node -- backend, veth pairs, private addresses), real
// clients (curl, socat) and servers. It covers what test runs cannot: CHECKSUM_PARTIAL packets from
// veth, the kernel's routing and conntrack around the hooks, the RST / ICMP bounce actually reaching
// the client, host-originated flows, and SNAT through an nftables masquerade rule on the mark.
import test from 'ava';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeNamespaces } from './fixtures/util.js';

const tag = `kbpdp${process.pid % 100000}`;
const NS = { cli: `${tag}-cli`, node: `${tag}-node`, be: `${tag}-be` };
const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => existsSync(p));
const servers: ChildProcess[] = [];
let www: string | undefined;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });

function teardown(): void {
  removeNamespaces(Object.values(NS), servers);
  if (www) rmSync(www, { recursive: true, force: true });
}

test.before(async () => {
  teardown();
  for (const ns of Object.values(NS)) ip('netns', 'add', ns);
  ip('link', 'add', 'c0', 'netns', NS.cli, 'type', 'veth', 'peer', 'name', 'n0', 'netns', NS.node);
  ip('link', 'add', 'b0', 'netns', NS.be, 'type', 'veth', 'peer', 'name', 'n1', 'netns', NS.node);
  const addr = (ns: string, dev: string, a: string) => ip('-n', ns, 'addr', 'add', a, 'dev', dev, ...(a.includes(':') ? ['nodad'] : []));
  addr(NS.cli, 'c0', '10.0.1.2/24'); addr(NS.cli, 'c0', 'fd00:1::2/64');
  addr(NS.node, 'n0', '10.0.1.1/24'); addr(NS.node, 'n0', 'fd00:1::1/64');
  addr(NS.node, 'n1', '10.0.2.1/24'); addr(NS.node, 'n1', 'fd00:2::1/64');
  addr(NS.be, 'b0', '10.0.2.2/24'); addr(NS.be, 'b0', 'fd00:2::2/64');
  for (const [ns, dev] of [[NS.cli, 'c0'], [NS.node, 'n0'], [NS.node, 'n1'], [NS.be, 'b0'], [NS.cli, 'lo'], [NS.node, 'lo'], [NS.be, 'lo']] as const) ip('-n', ns, 'link', 'set', dev, 'up');
  ip('-n', NS.cli, 'route', 'add', 'default', 'via', '10.0.1.1');
  ip('-n', NS.cli, '-6', 'route', 'add', 'default', 'via', 'fd00:1::1');
  ip('-n', NS.be, 'route', 'add', 'default', 'via', '10.0.2.1');
  ip('-n', NS.be, '-6', 'route', 'add', 'default', 'via', 'fd00:2::1');
  ip('netns', 'exec', NS.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');

  www = mkdtempSync(join(tmpdir(), 'kbp-dp-www-'));
  writeFileSync(join(www, 'ok.txt'), 'backend-ok\n');
  servers.push(spawn('ip', ['netns', 'exec', NS.be, 'python3', '-m', 'http.server', '8080', '--bind', '::', '--directory', www], { stdio: 'ignore' }));
  servers.push(spawn('ip', ['netns', 'exec', NS.be, 'socat', '-T3', 'UDP6-LISTEN:5353,fork,ipv6only=0', 'EXEC:cat'], { stdio: 'ignore' }));
  // ready when the client reaches the backend directly (bounded: 5 s)
  for (let i = 0; i < 50; i++) {
    const r = spawnSync('ip', ['netns', 'exec', NS.cli, 'curl', '-s', '-m', '1', 'http://10.0.2.2:8080/ok.txt']);
    if (r.stdout?.toString().includes('backend-ok')) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('backend server in the test namespace did not come up within 5 s');
});

test.after.always(teardown);

test.serial('tc programs translate, refuse and SNAT real traffic between namespaces', (t) => {
  if (!NFT) return t.fail('nft (nftables) is needed for the SNAT part and was not found in /usr/sbin, /sbin, /usr/bin');
  const script = fileURLToPath(new URL('./traffic-node.ts', import.meta.url));
  const r = spawnSync('nsenter', [`--net=/var/run/netns/${NS.node}`, process.execPath, '--import=tsx', script, NS.cli, NFT], { timeout: 90_000 });
  const lines = r.stdout?.toString().trim().split('\n') ?? [];
  t.is(r.status, 0, `node-side script failed: ${r.stderr?.toString().slice(-2000)}`);
  type O = { ok: boolean; out: string; ms: number };
  const res = JSON.parse(lines[lines.length - 1] ?? '{}') as Record<string, O> & { masquerade?: string; stats?: Record<string, number> };

  t.deepEqual(res.tcp4, { ...res.tcp4, ok: true, out: 'backend-ok' }, 'TCP over IPv4 through the ClusterIP');
  t.deepEqual(res.tcp6, { ...res.tcp6, ok: true, out: 'backend-ok' }, 'TCP over IPv6 through the ClusterIP');
  t.deepEqual(res.udp4, { ...res.udp4, ok: true, out: 'hello4' }, 'UDP over IPv4, reply from the ClusterIP');
  t.deepEqual(res.udp6, { ...res.udp6, ok: true, out: 'hello6' }, 'UDP over IPv6, reply from the ClusterIP');
  // curl exit 7 = connection refused: the RST arrived (a drop would be exit 28, timeout, after 4 s)
  for (const k of ['tcp4Refused', 'tcp6Refused'] as const) {
    t.false(res[k]!.ok, k);
    t.regex(res[k]!.out, /^exit 7:/, `${k}: refused, not timed out`);
    t.true(res[k]!.ms < 3000, `${k}: refused at once (${res[k]!.ms} ms)`);
  }
  for (const k of ['udp4Refused', 'udp6Refused'] as const) {
    t.false(res[k]!.ok, k);
    t.regex(res[k]!.out, /Connection refused/, `${k}: ICMP port unreachable reached the client`);
  }
  t.false(res.udp4BackendUnreach!.ok, 'UDP to a backend port nobody listens on');
  t.regex(res.udp4BackendUnreach!.out, /Connection refused/, 'the backend\'s ICMP error, rewritten to the frontend, reached the client socket');
  t.deepEqual(res.hostTcp4, { ...res.hostTcp4, ok: true, out: 'backend-ok' }, 'host-originated TCP (translated at tc egress, undone at ingress)');
  t.deepEqual(res.hostUdp4, { ...res.hostUdp4, ok: true, out: 'host' }, 'host-originated UDP');
  t.deepEqual(res.hostTcp4Rerouted, { ...res.hostTcp4Rerouted, ok: true, out: 'backend-ok' }, 'host-originated TCP whose VIP route leaves by another device: rerouted to the backend\'s');
  t.deepEqual(res.hostUdp4Rerouted, { ...res.hostUdp4Rerouted, ok: true, out: 'rerouted' }, 'host-originated UDP, rerouted likewise');
  t.true((res.stats?.host_reroute ?? 0) >= 2, `reroutes counted (${res.stats?.host_reroute})`);
  t.deepEqual(res.nodePortSnat, { ...res.nodePortSnat, ok: true, out: 'backend-ok' }, 'external NodePort with SNAT: reply de-SNATed and rev-NATed');
  t.true(Number(res.masquerade) >= 1, `the masquerade rule saw the marked flow (counter ${res.masquerade})`);
  t.deepEqual(res.xdpNodePort, { ...res.xdpNodePort, ok: true, out: 'backend-ok' }, 'NodePort translated by XDP (tc ingress detached)');
  t.false(res.xdpLeavesSnat!.ok, 'a flow needing SNAT is not translated by XDP');
  t.true((res.stats?.xdp_to_tc ?? 0) >= 1, 'XDP counted what it left to tc');
  t.true((res.stats?.reject_no_backend ?? 0) >= 4, 'refusals counted');
  t.true((res.stats?.rev_nat ?? 0) >= 6, 'replies rewritten');
});
