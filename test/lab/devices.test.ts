// Devices (issue 7): the agent in a node namespace with housekeeping set to an hour, so that only
// link events can explain what happens: a new veth gets the tc programs within a bounded wait far
// below the old 10 s scan, and a device whose frames have no Ethernet header (tun; IPIP where the
// kernel has it) gets none, with a log line that names it.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, labAvailable, type LabProcess, type Netns } from '../../testing/netns.js';
import { CLI } from '../../lab/cluster.js';
import { prepareHost } from '../../src/dataplane/host.js';

const avail = labAvailable();
const TC = '/usr/sbin/tc';
const IP = '/usr/sbin/ip';
const SVC = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }] }
`;

async function hasTc(lab: Lab, ns: Netns, dev: string): Promise<boolean> {
  const r = await lab.exec(ns, TC, ['filter', 'show', 'dev', dev, 'ingress'], { allowFail: true });
  return /lb_tc_ingress/.test(r.stdout);
}

/** Polls until tc is on dev; false after maxMs (a bound on the wait, not a timing assertion). */
async function waitTc(lab: Lab, ns: Netns, dev: string, agent: LabProcess, maxMs: number): Promise<boolean> {
  const end = Date.now() + maxMs;
  for (;;) {
    if (await hasTc(lab, ns, dev)) return true;
    if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().slice(-2000)}`);
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

test.serial('a new veth gets tc from a link event; tun and IPIP devices get none, with a log line naming them', async (t) => {
  if (!avail.ok) return t.pass(`skipped: ${avail.why}`);
  prepareHost();
  const lab = new Lab('devices');
  let agent: LabProcess | undefined;
  let ns: Netns | undefined;
  let pins = '';
  try {
    ns = await lab.addNetns('node');
    const peer = await lab.addNetns('peer');
    await lab.addVeth(ns, 'eth0', peer, 'eth0');
    await lab.addAddress(ns, 'eth0', '192.168.78.1/24');
    pins = join(lab.addPinRoot('pins'), 'agent');
    const manifests = mkdtempSync(join(tmpdir(), 'kbp-devices-'));
    lab.onCleanup(`manifests ${manifests}`, () => rmSync(manifests, { recursive: true, force: true }));
    writeFileSync(join(manifests, 'web.yaml'), SVC);
    // a tun device from before the start: skipped at the first scan
    await lab.ip(ns, ['tuntap', 'add', 'dev', 'kbptun0', 'mode', 'tun']);
    await lab.ip(ns, ['link', 'set', 'kbptun0', 'up']);

    agent = lab.spawn(ns, process.execPath, [CLI, 'run', '--manifests', manifests, '--node-name', 'n1', '--node-ip', '192.168.78.1',
      '--bpffs', pins, '--socket-lb', 'false', '--housekeeping-interval', '1h',
      '--healthz-bind-address', '', '--metrics-bind-address', ''], { what: 'agent' });
    t.true(await waitTc(lab, ns, 'eth0', agent, 60_000), `the agent attached to eth0 at start: ${agent.output().slice(-2000)}`);

    // devices that appear while it runs: a tun, an IPIP tunnel (when the kernel has ipip), a veth pair
    await lab.ip(ns, ['tuntap', 'add', 'dev', 'kbptun1', 'mode', 'tun']);
    const ipip = await lab.exec(ns, IP, ['link', 'add', 'kbpipip0', 'type', 'ipip', 'local', '192.168.78.1', 'remote', '192.168.78.2'], { allowFail: true });
    if (ipip.code !== 0) t.log(`no IPIP here (${ipip.stderr.trim()}): tun devices only`);
    await lab.ip(ns, ['link', 'add', 'vnew0', 'type', 'veth', 'peer', 'name', 'vnew1']);
    await lab.ip(ns, ['link', 'set', 'vnew0', 'up']);

    // housekeeping runs hourly: only the link event can attach within this bound
    t.true(await waitTc(lab, ns, 'vnew0', agent, 3000), `tc on the new veth from the link event: ${agent.output().slice(-3000)}`);
    t.true(await waitTc(lab, ns, 'vnew1', agent, 3000), 'and on its peer');
    // the scan that found the veth also saw the devices made before it
    const skipped = ['kbptun0', 'kbptun1', ...(ipip.code === 0 ? ['kbpipip0'] : [])];
    for (const dev of skipped) {
      t.false(await hasTc(lab, ns, dev), `no tc program on ${dev}`);
      t.regex(agent.output(), new RegExp(`"device":"${dev}".*device skipped: its frames have no Ethernet header`), `a log line names ${dev}`);
    }
  } finally {
    if (agent) {
      agent.child.kill('SIGTERM');
      await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    if (ns && pins) await lab.exec(ns, process.execPath, [CLI, 'cleanup', '--bpffs', pins], { allowFail: true, timeoutMs: 60_000 });
    await lab.cleanup();
  }
});
