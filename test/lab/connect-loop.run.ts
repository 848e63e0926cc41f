// A long variant, not in npm test (`KBP_LAB_CONNECT_LOOP=N npx ava --serial --verbose
// test/lab/connect-loop.run.ts`, bounded by N rounds and KBP_LAB_CONNECT_LOOP_MIN minutes, 30 by
// default). It repeats the scenario in which a CI run once lost one request of three (agent.test.ts
// "session affinity is per Service port": client1 -> its own node's NodePort 30171 timed out, its
// SYN and the retransmit unanswered) and the one of session 5 (2 of 30 from the external client to
// the LB IP): the sticky-port Service written with one endpoint, requests to its clusterIP, the file
// rewritten with four, requests to each node's NodePorts from the clients and from outside, the file
// removed; between rounds the LB IP from outside. Every failure is printed with the lab's report
// (testing/lab-diag.ts: loss counters, frontends, flows, agent lines), which curlMany attaches.
import anyTest, { type TestFn } from 'ava';
import { type ClusterLab, type LabPod } from '../../lab/cluster.js';
import { STICKY_PORTS, stickyPortYaml, VIP, startLoopLab } from '../../lab/services.js';
import { labAvailable, sweepLeftovers } from '../../testing/netns.js';

const test = anyTest as TestFn;
const ROUNDS = Number(process.env.KBP_LAB_CONNECT_LOOP ?? 0);
const MINUTES = Number(process.env.KBP_LAB_CONNECT_LOOP_MIN ?? 30);
const avail = labAvailable();
let lab: ClusterLab;
const pod = (name: string): LabPod => lab.pods.get(name)!;

test.before(async () => {
  if (!avail.ok || !ROUNDS) return;
  await sweepLeftovers();
  lab = await startLoopLab('connloop', (process.env.KBP_LAB_AGENT_ARGS ?? '').split(' ').filter(Boolean));
});

test.after.always(async () => {
  if (lab) await lab.stop();
});

(avail.ok && ROUNDS ? test.serial : test.serial.skip)(`new connections to NodePorts and LB IPs, ${ROUNDS} rounds: none lost`, async (t) => {
  t.timeout((MINUTES + 5) * 60_000);
  const end = Date.now() + MINUTES * 60_000;
  const sticky = (pods: string[]) => stickyPortYaml(pods.map(pod));
  const failures: string[] = [];
  let sent = 0, round = 0;
  // what a report looks like (and that it can be made here), before any failure
  t.log(`sample report:\n${await lab.explain(pod('client1').pod.ns, `http://${VIP.lb}:8000/`)}`);
  const tally = (what: string, seen: Map<string, number>) => {
    for (const [k, v] of seen) {
      sent += v;
      if (!k.startsWith('ERR')) continue;
      failures.push(`round ${round} ${what}: ${v} failed, first:\n${k}`);
      console.error(`${new Date().toISOString()} ${failures.at(-1)}`); // at once, not at the end
    }
  };
  for (round = 1; round <= ROUNDS && Date.now() < end; round++) {
    await lab.change(() => lab.writeManifest('sticky-port.yaml', sticky(['pod-a'])));
    for (const c of ['client1', 'client2']) {
      for (const p of STICKY_PORTS) tally(`${c} clusterIP:${p.port}`, await lab.curlMany(pod(c).pod.ns, `http://10.96.100.70:${p.port}/`, 2));
    }
    await lab.change(() => lab.writeManifest('sticky-port.yaml', sticky(['pod-a', 'pod-b', 'pod-c', 'pod-d'])));
    for (const c of ['client1', 'client2']) {
      const nodeIP = pod(c).node.ip4;
      for (const [i] of STICKY_PORTS.entries()) {
        tally(`${c} own NodePort ${30170 + i}`, await lab.curlMany(pod(c).pod.ns, `http://${nodeIP}:${30170 + i}/`, 3));
        tally(`${c} clusterIP again`, await lab.curlMany(pod(c).pod.ns, `http://10.96.100.70:${STICKY_PORTS[i]!.port}/`, 2));
      }
    }
    for (const n of lab.nodes) tally(`ext NodePort ${n.name}`, await lab.curlMany(lab.ext, `http://${n.ip4}:30171/`, 3));
    await lab.change(() => lab.removeManifest('sticky-port.yaml'));
    tally('ext LB IP', await lab.curlMany(lab.ext, `http://${VIP.lb}:8000/`, 10));
    if (round % 5 === 0) console.error(`${new Date().toISOString()} round ${round}: ${sent} requests, ${failures.length} failed`);
  }
  t.log(`${round - 1} rounds, ${sent} requests, ${failures.length} calls with failures`);
  for (const f of failures) t.log(f);
  t.deepEqual(failures, []);
});
