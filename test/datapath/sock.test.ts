// The cgroup socket hooks (bpf/lb_sock.h) for real: BPF_PROG_TEST_RUN does not run cgroup sock_addr
// programs, so the hooks are attached to a child cgroup and real client processes in that cgroup
// connect, inside a network namespace of the test, to Service VIPs whose backends are servers on
// 127.0.0.x and fd00:5::x of that namespace. The maps are filled through the real plan -> diff ->
// BpfMaps.apply path. Checks: the backend is reached and both are used, getpeername() and a UDP
// reply's source show the VIP, IPv4-mapped VIPs on IPv6 sockets, ClientIP affinity, refusal with
// ECONNREFUSED at once, and with LB_CFG_F_SOCK_LB clear nothing is translated.
//
// A third server, "direct", listens on the VIP itself: a client that reaches it was not translated.
import test from 'ava';
import { Lab, labAvailable, sweepLeftovers, type ClientResult, type Netns } from '../../testing/netns.js';
import { LabDataplane, clusterIpFrontend } from '../../testing/lab-dataplane.js';
import type { NodeFrontend } from '../../src/model/compiled.js';

const avail = labAvailable();

const VIP4 = '10.96.0.10', VIP6 = 'fd00:96::10';
const VIP4_EMPTY = '10.96.0.20', VIP6_EMPTY = 'fd00:96::20';
const VIP4_AFFINITY = '10.96.0.30';
const VIP4_NO_LOCAL = '10.96.0.40';
const BE = [
  { name: 'be-a', v4: '127.0.0.2', v6: 'fd00:5::a' },
  { name: 'be-b', v4: '127.0.0.3', v6: 'fd00:5::b' },
];
const HTTP = 8080, UDP = 5353;

function frontends(): NodeFrontend[] {
  const fes: NodeFrontend[] = [];
  for (const [vip, fam] of [[VIP4, 'v4'], [VIP6, 'v6']] as const) {
    fes.push(clusterIpFrontend({ service: 'default/web', portName: 'http', address: vip, port: 80, protocol: 'TCP', backends: BE.map((b) => ({ address: b[fam], port: HTTP })) }));
    fes.push(clusterIpFrontend({ service: 'default/web', portName: 'dns', address: vip, port: 53, protocol: 'UDP', backends: BE.map((b) => ({ address: b[fam], port: UDP })) }));
  }
  for (const vip of [VIP4_EMPTY, VIP6_EMPTY]) {
    fes.push(clusterIpFrontend({ service: 'default/empty', portName: 'http', address: vip, port: 80, protocol: 'TCP', backends: [] }));
    fes.push(clusterIpFrontend({ service: 'default/empty', portName: 'dns', address: vip, port: 53, protocol: 'UDP', backends: [] }));
  }
  // iTP=Local with endpoints only on other nodes: kube-proxy drops, so the hook must not refuse
  fes.push({ ...clusterIpFrontend({ service: 'default/nolocal', address: VIP4_NO_LOCAL, port: 80, protocol: 'TCP', backends: [] }), noLocalEndpoints: true });
  fes.push(clusterIpFrontend({ service: 'default/sticky', address: VIP4_AFFINITY, port: 80, protocol: 'TCP', affinitySeconds: 600, backends: BE.map((b) => ({ address: b.v4, port: HTTP })) }));
  return fes;
}

interface Ctx { lab: Lab; ns: Netns; dp: LabDataplane; cgroup: string }
let ctx: Ctx | undefined;

const names = (rs: ClientResult[]) => [...new Set(rs.map((r) => r.reply))].sort();
const errors = (rs: ClientResult[]) => rs.filter((r) => !r.ok).map((r) => r.error);

if (!avail.ok) {
  test('socket hook tests need root, bpffs and cgroup v2', (t) => {
    t.log(`skipped: ${avail.why}`);
    t.pass();
  });
} else {
  test.before(async () => {
    await sweepLeftovers();
    const lab = new Lab('sock');
    ctx = { lab } as Ctx;
    const ns = await lab.addNetns('h');
    for (const b of BE) await lab.addAddress(ns, 'lo', b.v6);
    await lab.addAddress(ns, 'lo', VIP4);
    await lab.addAddress(ns, 'lo', VIP6);
    for (const b of BE) await lab.startPodServer(ns, { name: b.name, bind: [b.v4, b.v6], http: HTTP, udp: UDP });
    await lab.startPodServer(ns, { name: 'direct', bind: [VIP4, VIP6], http: 80, udp: 53 });
    const dp = LabDataplane.load(lab, 'pins', { socketLb: true });
    dp.apply({ frontends: frontends() });
    const cgroup = lab.addCgroup('clients');
    dp.attachSockHooks(cgroup);
    Object.assign(ctx, { ns, dp, cgroup });
  });

  test.after.always(async () => {
    await ctx?.lab.cleanup();
  });

  const client = (o: Parameters<Lab['client']>[1]) => ctx!.lab.client(ctx!.ns, { timeoutMs: 2000, ...o }, ctx!.cgroup);

  test.serial('TCP to an IPv4 VIP reaches both backends; getpeername shows the VIP', async (t) => {
    const before = ctx!.dp.stats().sock_connect;
    const rs = await client({ proto: 'http', host: VIP4, port: 80, count: 16 });
    t.deepEqual(errors(rs), []);
    t.deepEqual(names(rs), ['be-a', 'be-b']);
    t.true(rs.every((r) => r.peer === `${VIP4}:80`), JSON.stringify(rs.map((r) => r.peer)));
    t.is(ctx!.dp.stats().sock_connect - before, 16);
  });

  test.serial('a process outside the cgroup is not translated', async (t) => {
    const rs = await ctx!.lab.client(ctx!.ns, { proto: 'http', host: VIP4, port: 80, count: 2 });
    t.deepEqual(rs.map((r) => r.reply), ['direct', 'direct']);
  });

  test.serial('UDP sendmsg to an IPv4 VIP: both backends, replies come from the VIP (recvmsg)', async (t) => {
    const rs = await client({ proto: 'udp', host: VIP4, port: 53, count: 16 });
    t.deepEqual(errors(rs), []);
    t.deepEqual(names(rs), ['be-a', 'be-b']);
    t.true(rs.every((r) => r.from === `${VIP4}:53`), JSON.stringify(rs.map((r) => r.from)));
  });

  test.serial('connected UDP to an IPv4 VIP: getpeername and the reply source show the VIP', async (t) => {
    const rs = await client({ proto: 'udp', host: VIP4, port: 53, count: 8, udpConnect: true });
    t.deepEqual(errors(rs), []);
    t.true(rs.every((r) => r.peer === `${VIP4}:53` && r.from === `${VIP4}:53`), JSON.stringify(rs));
    t.true(names(rs).length >= 1 && names(rs).every((n) => n === 'be-a' || n === 'be-b'));
  });

  test.serial('IPv6 VIP: TCP and UDP reach both backends and show the VIP', async (t) => {
    const tcp = await client({ proto: 'http', host: VIP6, port: 80, count: 16 });
    t.deepEqual(errors(tcp), []);
    t.deepEqual(names(tcp), ['be-a', 'be-b']);
    t.true(tcp.every((r) => r.peer === `[${VIP6}]:80`));
    const udp = await client({ proto: 'udp', host: VIP6, port: 53, count: 16 });
    t.deepEqual(errors(udp), []);
    t.deepEqual(names(udp), ['be-a', 'be-b']);
    t.true(udp.every((r) => r.from === `[${VIP6}]:53`));
  });

  test.serial('an IPv4 VIP through an IPv6 socket (IPv4-mapped, connect6/sendmsg6)', async (t) => {
    const mapped = `::ffff:${VIP4}`;
    const tcp = await client({ proto: 'http', host: mapped, port: 80, count: 12 });
    t.deepEqual(errors(tcp), []);
    t.deepEqual(names(tcp), ['be-a', 'be-b']);
    t.true(tcp.every((r) => r.peer === `[${mapped}]:80`), JSON.stringify(tcp.map((r) => r.peer)));
    const udp = await client({ proto: 'udp', host: mapped, port: 53, count: 6 });
    t.deepEqual(errors(udp), []);
    t.true(udp.every((r) => r.from === `[${mapped}]:53`), JSON.stringify(udp.map((r) => r.from)));
  });

  test.serial('a VIP without backends refuses at once with ECONNREFUSED (TCP and UDP, both families)', async (t) => {
    const before = ctx!.dp.stats().sock_reject;
    // a timeout of 2 s per request: ETIMEDOUT would mean the refusal did not happen in the hook
    for (const host of [VIP4_EMPTY, VIP6_EMPTY]) {
      const tcp = await client({ proto: 'http', host, port: 80, count: 2 });
      t.deepEqual(tcp.map((r) => r.error), ['ECONNREFUSED', 'ECONNREFUSED'], host);
      const udp = await client({ proto: 'udp', host, port: 53, count: 1 });
      t.deepEqual(udp.map((r) => r.error), ['ECONNREFUSED'], host);
      const cudp = await client({ proto: 'udp', host, port: 53, count: 1, udpConnect: true });
      t.deepEqual(cudp.map((r) => r.error), ['ECONNREFUSED'], `${host} connected UDP`);
    }
    t.is(ctx!.dp.stats().sock_reject - before, 8);
  });

  test.serial('a Local policy without local endpoints is not refused in the hook: the connect goes on untranslated (tc drops it)', async (t) => {
    const before = ctx!.dp.stats().sock_reject;
    // the VIP is on no device here and no tc program runs: the untranslated connect fails on routing
    const rs = await client({ proto: 'http', host: VIP4_NO_LOCAL, port: 80, count: 1 });
    t.deepEqual(rs.map((r) => r.error), ['ENETUNREACH']);
    t.is(ctx!.dp.stats().sock_reject, before, 'not counted as a refusal');
  });

  test.serial('ClientIP affinity: every socket of one client (netns) gets the same backend', async (t) => {
    const before = ctx!.dp.stats().affinity_hit;
    const rs = await client({ proto: 'http', host: VIP4_AFFINITY, port: 80, count: 12 });
    t.deepEqual(errors(rs), []);
    t.is(names(rs).length, 1, JSON.stringify(rs.map((r) => r.reply)));
    t.true(rs.every((r) => r.peer === `${VIP4_AFFINITY}:80`));
    t.is(ctx!.dp.stats().affinity_hit - before, 11, 'the first connect picks, the other 11 hit');
  });

  test.serial('with LB_CFG_F_SOCK_LB clear the hooks translate nothing', async (t) => {
    const dp = ctx!.dp;
    dp.setSocketLb(false);
    t.teardown(() => dp.setSocketLb(true));
    const before = dp.stats();
    const tcp = await client({ proto: 'http', host: VIP4, port: 80, count: 3 });
    t.deepEqual(tcp.map((r) => r.reply), ['direct', 'direct', 'direct']);
    const udp = await client({ proto: 'udp', host: VIP6, port: 53, count: 2 });
    t.deepEqual(udp.map((r) => r.reply), ['direct', 'direct']);
    // the empty VIP is not on any device: untranslated, the connect fails on routing, not in the hook
    const empty = await client({ proto: 'http', host: VIP4_EMPTY, port: 80, count: 1 });
    t.deepEqual(empty.map((r) => r.error), ['ENETUNREACH']);
    const after = dp.stats();
    t.is(after.sock_connect, before.sock_connect);
    t.is(after.sock_reject, before.sock_reject);
  });

  test.serial('backends removed from the plan: new connects refuse; restored: they reach them again', async (t) => {
    const dp = ctx!.dp;
    const without = frontends().map((f) => (f.address === VIP4 && f.port === 80 ? { ...f, backends: [] } : f));
    dp.apply({ frontends: without });
    t.teardown(() => { dp.apply({ frontends: frontends() }); });
    const refused = await client({ proto: 'http', host: VIP4, port: 80, count: 2 });
    t.deepEqual(refused.map((r) => r.error), ['ECONNREFUSED', 'ECONNREFUSED']);
    dp.apply({ frontends: frontends() });
    const back = await client({ proto: 'http', host: VIP4, port: 80, count: 8 });
    t.deepEqual(errors(back), []);
    t.deepEqual(names(back), ['be-a', 'be-b']);
  });
}
