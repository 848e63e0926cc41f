// The node side of traffic.test.ts, run INSIDE the node namespace (nsenter --net, as `ip netns exec`
// would hide /sys/fs/bpf): loads the object, writes the services, attaches the tc programs to both
// devices, drives the clients (each in the client namespace via `ip netns exec`), detaches, and
// prints one JSON line of results. argv: <client netns> <nft binary>
import { execFileSync, execSync } from 'node:child_process';
import { Datapath, SEED, SNAT_MARK, type TestService } from '../../testing/datapath.js';
import { masqueradeRuleset, NFT_TABLE } from '../../src/dataplane/bpf/dataplane.js';
import { encodeU32, encodeDevice, encodeConfig, LB_DEV_F_EXTERNAL, LB_FE_F_SNAT_REMOTE, LB_BE_F_LOCAL, LB_CFG_F_HOST_REROUTE } from '../../src/dataplane/bpf/layout.js';

const [cliNs, nft] = process.argv.slice(2) as [string, string];

interface Outcome { ok: boolean; out: string; ms: number }
function client(cmd: string[], input?: string): Outcome {
  const t0 = Date.now();
  try {
    const out = execFileSync('ip', ['netns', 'exec', cliNs, ...cmd], { timeout: 6000, input, stdio: ['pipe', 'pipe', 'pipe'] }).toString().trim();
    return { ok: true, out, ms: Date.now() - t0 };
  } catch (e) {
    const x = e as { status?: number; stderr?: Buffer };
    return { ok: false, out: `exit ${x.status}: ${x.stderr?.toString().trim().split('\n').pop() ?? ''}`, ms: Date.now() - t0 };
  }
}
function host(cmd: string[], input?: string): Outcome {
  const t0 = Date.now();
  try {
    return { ok: true, out: execFileSync(cmd[0]!, cmd.slice(1), { timeout: 6000, input, stdio: ['pipe', 'pipe', 'pipe'] }).toString().trim(), ms: Date.now() - t0 };
  } catch (e) {
    const x = e as { status?: number; stderr?: Buffer };
    return { ok: false, out: `exit ${x.status}: ${x.stderr?.toString().trim().split('\n').pop() ?? ''}`, ms: Date.now() - t0 };
  }
}
const ifindex = (dev: string) => (JSON.parse(execFileSync('ip', ['-j', 'link', 'show', dev]).toString()) as Array<{ ifindex: number }>)[0]!.ifindex;

const services: TestService[] = [
  { feId: 1, address: '10.96.0.10', port: 80, protocol: 'TCP', scope: 'internal', backends: [{ id: 11, address: '10.0.2.2', port: 8080 }] },
  { feId: 2, address: '10.96.0.10', port: 53, protocol: 'UDP', scope: 'internal', backends: [{ id: 21, address: '10.0.2.2', port: 5353 }] },
  // nothing listens on the backend port: the backend's ICMP port unreachable must reach the client
  { feId: 12, address: '10.96.0.10', port: 54, protocol: 'UDP', scope: 'internal', backends: [{ id: 121, address: '10.0.2.2', port: 5454 }] },
  { feId: 3, address: 'fd00:96::10', port: 80, protocol: 'TCP', scope: 'internal', backends: [{ id: 31, address: 'fd00:2::2', port: 8080 }] },
  { feId: 4, address: 'fd00:96::10', port: 53, protocol: 'UDP', scope: 'internal', backends: [{ id: 41, address: 'fd00:2::2', port: 5353 }] },
  { feId: 5, address: '10.0.1.1', port: 30080, protocol: 'TCP', scope: 'external', type: 'NodePort', flags: LB_FE_F_SNAT_REMOTE, backends: [{ id: 51, address: '10.0.2.2', port: 8080 }] },
  // eTP=Cluster NodePort whose backend runs on this node: no SNAT, so XDP translates it itself
  { feId: 10, address: '10.0.1.1', port: 30081, protocol: 'TCP', scope: 'external', type: 'NodePort', flags: LB_FE_F_SNAT_REMOTE, backends: [{ id: 101, address: '10.0.2.2', port: 8080, flags: LB_BE_F_LOCAL }] },
  { feId: 6, address: '10.96.0.20', port: 80, protocol: 'TCP', scope: 'internal', backends: [] },
  { feId: 7, address: '10.96.0.20', port: 53, protocol: 'UDP', scope: 'internal', backends: [] },
  { feId: 8, address: 'fd00:96::20', port: 80, protocol: 'TCP', scope: 'internal', backends: [] },
  { feId: 9, address: 'fd00:96::20', port: 53, protocol: 'UDP', scope: 'internal', backends: [] },
];

const dp = new Datapath();
const devs = ['n0', 'n1'].map(ifindex);
const results: Record<string, unknown> = {};
try {
  dp.install(services);
  // as the agent writes it
  dp.map('lb_config').update(encodeU32(0), encodeConfig({ hashSeed: SEED, snatMark: SNAT_MARK, flags: LB_CFG_F_HOST_REROUTE }));
  // n0 faces the client: external, so NodePort traffic there is external-scope (SNAT for eTP=Cluster)
  dp.map('lb_devices').update(encodeU32(devs[0]!), encodeDevice({ flags: LB_DEV_F_EXTERNAL }));
  for (const i of devs) {
    dp.prog('lb_tc_ingress').attachTc(i, 'ingress');
    dp.prog('lb_tc_egress').attachTc(i, 'egress');
  }
  // the agent's own ruleset: masquerade to ports outside the NodePort range
  execFileSync(nft, ['-f', '-'], { input: masqueradeRuleset(SNAT_MARK) });
  // host-originated traffic needs a route for the service range (the agent adds one)
  execFileSync('ip', ['route', 'replace', '10.96.0.0/16', 'via', '10.0.2.2', 'dev', 'n1']);

  const curl = (url: string) => ['curl', '-s', '-g', '-m', '4', url];
  results.tcp4 = client(curl('http://10.96.0.10:80/ok.txt'));
  results.tcp6 = client(curl('http://[fd00:96::10]:80/ok.txt'));
  results.udp4 = client(['socat', '-T2', '-', 'UDP:10.96.0.10:53'], 'hello4\n');
  results.udp6 = client(['socat', '-T2', '-', 'UDP6:[fd00:96::10]:53'], 'hello6\n');
  results.tcp4Refused = client(curl('http://10.96.0.20:80/'));
  results.tcp6Refused = client(curl('http://[fd00:96::20]:80/'));
  // the first datagram only provokes the ICMP error; the refusal surfaces on the next read
  results.udp4Refused = client(['socat', '-T2', '-', 'UDP:10.96.0.20:53'], 'x\n');
  results.udp6Refused = client(['socat', '-T2', '-', 'UDP6:[fd00:96::20]:53'], 'x\n');
  results.udp4BackendUnreach = client(['socat', '-T2', '-', 'UDP:10.96.0.10:54'], 'x\n');
  results.hostTcp4 = host(curl('http://10.96.0.10:80/ok.txt'));
  results.hostUdp4 = host(['socat', '-T2', '-', 'UDP:10.96.0.10:53'], 'host\n');
  // issue 7: the service range routed out the client-facing device (as a default route would take
  // it): translated at n0's egress, the packet must be routed anew, out n1 (bpf_fib_lookup,
  // bpf_redirect_neigh), not sent to the client's side with the backend's address
  execFileSync('ip', ['route', 'replace', '10.96.0.0/16', 'via', '10.0.1.2', 'dev', 'n0']);
  try {
    results.hostTcp4Rerouted = host(curl('http://10.96.0.10:80/ok.txt'));
    results.hostUdp4Rerouted = host(['socat', '-T2', '-', 'UDP:10.96.0.10:53'], 'rerouted\n');
  } finally {
    execFileSync('ip', ['route', 'replace', '10.96.0.0/16', 'via', '10.0.2.2', 'dev', 'n1']);
  }
  results.nodePortSnat = client(curl('http://10.0.1.1:30080/ok.txt'));
  results.masquerade = execFileSync(nft, ['list', 'chain', 'inet', NFT_TABLE, 'postrouting']).toString().match(/counter packets (\d+)/)?.[1];

  // XDP on the client-facing device, tc ingress there removed: only XDP can translate the forward
  // direction now (tc egress still rewrites the replies). The client sends full checksums, as a
  // host behind a real NIC does: XDP sees no CHECKSUM_PARTIAL state and must not get one.
  execFileSync('ip', ['netns', 'exec', cliNs, 'ethtool', '-K', 'c0', 'tx', 'off'], { stdio: 'ignore' });
  dp.prog('lb_tc_ingress').detachTc(devs[0]!, 'ingress');
  dp.prog('lb_xdp').attachXdp(devs[0]!, 'native');
  try {
    results.xdpNodePort = client(curl('http://10.0.1.1:30081/ok.txt'));
    // a flow that needs SNAT is left to tc, which is not there now: it must not get through
    results.xdpLeavesSnat = client(['curl', '-s', '-m', '2', 'http://10.0.1.1:30080/ok.txt']);
  } finally {
    dp.prog('lb_xdp').detachXdp(devs[0]!);
  }
  results.stats = dp.stats();
} finally {
  for (const i of devs) {
    dp.prog('lb_tc_ingress').detachTc(i, 'ingress');
    dp.prog('lb_tc_egress').detachTc(i, 'egress');
  }
  dp.close();
  try { execSync(`${nft} delete table inet ${NFT_TABLE} 2>/dev/null`); } catch { /* never created */ }
}
process.stdout.write(`${JSON.stringify(results)}\n`);
