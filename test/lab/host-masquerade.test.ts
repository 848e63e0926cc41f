// Host traffic to a Service that must be masqueraded, translated at tc egress (issue 7). Without the
// socket hooks (--socket-lb=false), a host process's packet to a clusterIP is translated at tc egress
// of the device its route to the VIP names, and re-routed to the backend's device. That is after
// POSTROUTING, where the kernel's masquerade runs (kube-proxy marks such flows in OUTPUT,
// KUBE-MARK-MASQ, and masquerades them in POSTROUTING: pkg/proxy/iptables/proxier.go syncProxyRules,
// the masqueradeAll and local-detector jumps): a SNAT mark set there is never acted on. So the
// programs set none and count the flow (host_no_snat); it keeps the source address the host chose,
// the connection works, and the README lists it. Shown here with a real client on the node: a
// masqueradeAll clusterIP whose pod sees the host's own address as the client.
import test from 'ava';
import { Lab, labAvailable, sweepLeftovers, type Netns, type Pod } from '../../testing/netns.js';
import { LabDataplane, clusterIpFrontend } from '../../testing/lab-dataplane.js';

const avail = labAvailable();
const VIP = '10.96.0.10', NODE_ADDR = '192.168.79.1', HTTP = 8080;

interface Ctx { lab: Lab; node: Netns; pod: Pod; dp: LabDataplane }
let ctx: Ctx | undefined;

if (!avail.ok) {
  test('host masquerade lab test needs root, bpffs and cgroup v2', (t) => t.pass(`skipped: ${avail.why}`));
} else {
  test.before(async () => {
    await sweepLeftovers();
    const lab = new Lab('hostmasq');
    ctx = { lab } as Ctx;
    const node = await lab.addNetns('node');
    await lab.enableForwarding(node);
    const pod = await lab.addPod({ name: 'be', node, hostIf: 'lxcbe', addresses: ['10.244.0.2'] });
    await lab.startPodServer(pod.ns, { name: 'be', http: HTTP });
    // the node's uplink: the VIP's route (as a default route would) goes there, not to the pod
    const up = await lab.addNetns('up');
    await lab.addVeth(node, 'eth0', up, 'eth0');
    await lab.addAddress(node, 'eth0', `${NODE_ADDR}/24`);
    await lab.addAddress(up, 'eth0', '192.168.79.2/24');
    await lab.addRoute(node, '10.96.0.0/16', { via: '192.168.79.2', dev: 'eth0' });
    const dp = LabDataplane.load(lab, 'node', { socketLb: false });
    dp.apply({ frontends: [{
      ...clusterIpFrontend({ service: 'default/web', portName: 'http', address: VIP, port: 80, protocol: 'TCP', backends: [{ address: '10.244.0.2', port: HTTP }] }),
      masquerade: 'all',
    }] });
    await dp.attachTc(lab, node);
    Object.assign(ctx, { node, pod, dp });
  });

  test.after.always(async () => {
    await ctx?.lab.cleanup();
  });

  test.serial('host -> masqueradeAll clusterIP, socket LB off: translated at tc egress and served, not masqueraded, counted', async (t) => {
    const { lab, node, dp } = ctx!;
    const before = dp.stats();
    const r = await lab.curl(node, `http://${VIP}/client`, { timeoutS: 5 });
    const after = dp.stats();
    t.is(r.exit, 0, `curl: ${r.stderr}`);
    const [name, peer] = r.body.trim().split(' ');
    const client = peer?.replace(/^::ffff:/, '');
    t.is(name, 'be');
    // the host's own source for the VIP's route; masqueraded it would be lxcbe's 10.244.255.254
    t.is(client, NODE_ADDR, 'the pod sees the host\'s address, not a masqueraded one');
    t.is(after.host_no_snat - before.host_no_snat, 1, 'the flow that needed masquerade is counted');
    t.true(after.host_reroute > before.host_reroute, 'translated at tc egress of eth0 and re-routed to the pod');
    t.true(after.rev_nat > before.rev_nat, 'replies translated back at ingress');
  });
}
