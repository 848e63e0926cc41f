// A long reproducer, not in npm test (`KBP_LAB_TRANSIENT_S=120 npx ava --serial --verbose
// test/lab/clusterip-transient.run.ts`): new connections from a pod to a ClusterIP as fast as one
// sequential client makes them, while mytest's endpoints change in a loop (scale up, one
// serving-terminating, scale down, and a second Service on the same backends added and removed, as
// scaling-loop.run.ts does), until KBP_LAB_TRANSIENT_S seconds are up. Every failed request is listed
// with what node1's lb_frontends and lb_fe_filter held for the ClusterIP around it
// (KBP_LAB_FEPOLL=path of a poller binary, optional) and the datapath counters that moved.
import { closeSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { type ClusterLab, sliceYaml, type LabPod } from '../../lab/cluster.js';
import { mytestWithEndpoints, stickyPortYaml, VIP, startLoopLab } from '../../lab/services.js';
import { labAvailable, sweepLeftovers } from '../../testing/netns.js';

const test = anyTest as TestFn;
const SECONDS = Number(process.env.KBP_LAB_TRANSIENT_S ?? 0);
const FEPOLL = process.env.KBP_LAB_FEPOLL;
// KBP_LAB_TRANSIENT_INPLACE_MS=N: mytest.yaml is rewritten in place with N ms between the
// truncation and the write (what a writer preempted under load does; writeFileSync is both)
const INPLACE_MS = Number(process.env.KBP_LAB_TRANSIENT_INPLACE_MS ?? 0);
const avail = labAvailable();
let lab: ClusterLab;
const pod = (name: string): LabPod => lab.pods.get(name)!;

test.before(async () => {
  if (!avail.ok || !SECONDS) return;
  await sweepLeftovers();
  lab = await startLoopLab('transient', (process.env.KBP_LAB_AGENT_ARGS ?? '').split(' ').filter(Boolean), 1);
});

test.after.always(async () => {
  if (lab) await lab.stop();
});

(avail.ok && SECONDS ? test.serial : test.serial.skip)(`a pod's new connections to a ClusterIP while its endpoints change for ${SECONDS} s: none fails`, async (t) => {
  t.timeout(SECONDS * 1000 + 300_000);
  const c = pod('client1').pod.ns;
  const slice = (eps: Parameters<typeof sliceYaml>[0]['endpoints']) => mytestWithEndpoints(lab, eps);
  // the sticky-port Service of scaling-loop.run.ts: its alt port's backends become mytest's on scale-up
  const twin = (pods: string[]) => stickyPortYaml(pods.map(pod));
  const four = ['pod-a', 'pod-b', 'pod-c', 'pod-d'];
  let inPlace: Promise<void> = Promise.resolve();
  const writeMytest = (yaml: string) => {
    if (!INPLACE_MS) return lab.writeManifest('mytest.yaml', yaml);
    const fd = openSync(join(lab.manifests, 'mytest.yaml'), 'w');
    inPlace = new Promise((r) => setTimeout(r, INPLACE_MS)).then(() => { writeSync(fd, yaml); closeSync(fd); });
  };
  const eps = (ready: string[], term: string[] = []) => slice([...ready, ...term].sort().map((p) => (
    term.includes(p) ? { pod: pod(p), ready: false, serving: true, terminating: true } : { pod: pod(p) })));
  // a backend leaves only after a second of serving-terminating (an abrupt removal resets its
  // flows by design: docs/datapath.md)
  const steps: Array<[string, () => void]> = [
    ['twin a', () => lab.writeManifest('twin.yaml', twin(['pod-a']))],
    ['twin a-d', () => lab.writeManifest('twin.yaml', twin(four))],
    ['twin gone', () => lab.removeManifest('twin.yaml')],
    ['up', () => writeMytest(eps(four))],
    ['b terminating', () => writeMytest(eps(['pod-a', 'pod-c', 'pod-d'], ['pod-b']))],
    ['b gone', () => writeMytest(eps(['pod-a', 'pod-c', 'pod-d']))],
    ['b back', () => writeMytest(eps(four))],
    ['d terminating', () => writeMytest(eps(['pod-a', 'pod-b', 'pod-c'], ['pod-d']))],
    ['d gone', () => writeMytest(eps(['pod-a', 'pod-b', 'pod-c']))],
  ];
  const counters = async () => {
    const all: Record<string, number> = {};
    for (const node of lab.nodes) {
      const m = await lab.lab.exec(node.ns, 'curl', ['-s', '--max-time', '10', 'http://127.0.0.1:10249/metrics'], { allowFail: true, timeoutMs: 20_000 });
      for (const x of m.stdout.matchAll(/^kubebpfproxy_datapath_events_total\{reason="(\w+)"\} (\d+)$/gm)) all[`${node.name}.${x[1]}`] = Number(x[2]);
    }
    return all;
  };
  const c0 = await counters();
  // what node1 routes after tc ingress: a TCP SYN that no route of the lab covers (tcpdump on a
  // device sees ingress before tc, so it cannot tell whether tc translated)
  const n1 = lab.nodes[0]!.ns;
  const rules = join(lab.manifests, '..', `${lab.lab.prefix}nflog.nft`);
  writeFileSync(rules, `table ip kbpflake {
  chain pre {
    type filter hook prerouting priority -300;
    ip daddr != { 10.244.0.0/16, 192.168.50.0/24, 192.168.60.0/24, 127.0.0.0/8 } tcp flags & (syn|ack) == syn log group 5
  }
}
`);
  await lab.lab.exec(n1, '/usr/sbin/nft', ['-f', rules]);
  rmSync(rules);
  const nflog = lab.lab.spawn(n1, 'tcpdump', ['-i', 'nflog:5', '-nn', '-tt', '-l', '-c', '50'], { what: 'nflog' });
  const poll = FEPOLL ? lab.lab.spawn(null, FEPOLL, [lab.nodes[0]!.pinRoot, VIP.mytest, '80', '6', String(SECONDS + 5)], { what: 'fepoll' }) : undefined;
  const load = lab.lab.load(c, { proto: 'http', host: VIP.mytest, port: 80, durationMs: SECONDS * 1000, timeoutMs: 3000 });
  const marks: Array<[number, string]> = [];
  const end = Date.now() + SECONDS * 1000;
  for (let i = 0; Date.now() < end - 3000 && i < 10_000; i++) {
    const [what, fn] = steps[i % steps.length]!;
    const since = Date.now() / 1000;
    marks.push([Date.now(), `${what} written`]);
    fn();
    await inPlace;
    await lab.waitSynced(since, 30_000);
    marks.push([Date.now(), `${what} synced`]);
    await new Promise((r) => setTimeout(r, [1200, 200, 500, 1000][i % 4]!));
  }
  const r = await load.done;
  if (poll) poll.child.kill('SIGTERM');
  if (poll) await poll.exited;
  if (r.failed) {
    const c1 = await counters();
    t.log(`counters that moved: ${JSON.stringify(Object.fromEntries(Object.keys(c1).filter((k) => c1[k] !== (c0[k] ?? 0)).map((k) => [k, c1[k]! - (c0[k] ?? 0)])))}`);
    for (const f of r.failures) {
      const near = marks.filter(([at]) => Math.abs(at - f.at) < 3000).map(([at, w]) => `${w}@${at - f.at}ms`);
      t.log(`failed at ${f.at} (${f.error}); changes around it: ${near.join(' ')}`);
      if (poll) {
        const lines = poll.output().split('\n').filter((l) => { const us = Number(l.split(' ')[0]); return us && Math.abs(us / 1000 - f.at) < 3000; });
        t.log(`node1's frontend around it:\n${lines.join('\n')}`);
      }
    }
  }
  t.log(`SYNs node1 routed to no lab address: ${nflog.output()}`);
  nflog.child.kill('SIGTERM');
  if (poll && r.failed) t.log(`fepoll: ${poll.output()}`);
  t.log(`${r.sent} requests, ${r.failed} failed, ${marks.length / 2} changes`);
  t.is(r.failed, 0);
});
