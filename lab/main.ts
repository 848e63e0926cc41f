// `npm run lab`: the main job. Builds a two-node lab in network namespaces, starts the agent on each
// node in standalone mode with the seeds' example Services, shows which pod answers each request
// (ClusterIP, NodePort on each node, LoadBalancer IP, externalIP, session affinity), then removes
// everything. Traffic never leaves this machine.
import { ClusterLab, NODE_NET, nodesYaml } from './cluster.js';
import { labManifests, PORTS, VIP } from './services.js';
import { labAvailable, sweepLeftovers } from '../testing/netns.js';

/** the external client's address (lab/cluster.ts) */
const EXT4 = `${NODE_NET.v4}.100`;

const out = (s = '') => process.stdout.write(`${s}\n`);

function tally(seen: Map<string, number>): string {
  return [...seen].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} x${v}`).join(', ');
}

/** Each behaviour the lab shows, with its verdict, for the summary a person reads at the end. */
const verdicts: Array<{ what: string; ok: boolean; why: string }> = [];
function check(what: string, ok: boolean, why: string): void {
  verdicts.push({ what, ok, why });
}
const failures = (seen: Map<string, number>): number => [...seen].filter(([k]) => k.startsWith('ERR')).reduce((n, [, v]) => n + v, 0);
const pods = (seen: Map<string, number>): string[] => [...seen.keys()].filter((k) => !k.startsWith('ERR')).sort();

function summary(): number {
  const bad = verdicts.filter((v) => !v.ok).length;
  out();
  out(`Summary: ${verdicts.length - bad} of ${verdicts.length} behaviours shown as expected${bad ? `, ${bad} not` : ''}`);
  for (const v of verdicts) out(`  ${v.ok ? 'PASS' : 'FAIL'}  ${v.what.padEnd(46)} ${v.why}`);
  return bad ? 1 : 0;
}

async function main(): Promise<number> {
  const avail = labAvailable();
  if (!avail.ok) {
    out(`lab: cannot run here: ${avail.why}`);
    return 1;
  }
  await sweepLeftovers();
  const lab = new ClusterLab({ tag: 'demo', log: (l) => out(l) });
  // SIGINT / SIGTERM / SIGHUP: the lab's own handler (testing/netns.ts) runs lab.stop(), then exits
  try {
    out('Building the lab: 2 nodes, 3 server pods (pod-a, pod-b on node1; pod-c on node2), 2 client pods, an external client');
    await lab.build({ pods: [
      { name: 'pod-a', node: 1 }, { name: 'pod-b', node: 1 }, { name: 'pod-c', node: 2 },
      { name: 'client1', node: 1, role: 'client' }, { name: 'client2', node: 2, role: 'client' },
    ] });
    const servers = ['pod-a', 'pod-b', 'pod-c'].map((n) => lab.pods.get(n)!);
    lab.writeManifest('nodes.yaml', nodesYaml(lab.nodes));
    for (const [file, yaml] of Object.entries(labManifests(lab, servers))) lab.writeManifest(file, yaml);
    for (const n of lab.nodes) {
      await lab.startAgent(n);
      out(`agent on ${n.name} (${n.ip4}) is running and synced`);
    }
    const [node1, node2] = lab.nodes as [typeof lab.nodes[0], typeof lab.nodes[0]];
    const client1 = lab.pods.get('client1')!.pod.ns;
    out();
    out(`node1's tables (kube-bpf-proxy dump, first lines):`);
    const dump = await lab.cli(node1, ['dump', '--bpffs', node1.pinRoot]);
    out(dump.stdout.split('\n').slice(0, 14).map((l) => `  ${l}`).join('\n'));
    out();
    /**
     * n requests; the verdict: no failure, and at least `spread` pods answered (exactly 1 when spread
     * is 1). Where fewer answered, up to 3n more requests before the verdict: 12 requests reach only
     * 2 of 3 pods by chance ~2 % of the time (Maglev on random source ports), 48 about 1e-8.
     */
    const show = async (what: string, from: typeof client1, url: string, expect: { label: string; spread: number }, n = 12) => {
      const seen = await lab.curlMany(from, url, n);
      out(`${what.padEnd(58)} ${tally(seen)}`);
      if (expect.spread > 1 && failures(seen) === 0 && pods(seen).length < expect.spread) {
        for (const [pod, c] of await lab.curlMany(from, url, 3 * n)) seen.set(pod, (seen.get(pod) ?? 0) + c);
        n *= 4;
      }
      const p = pods(seen), failed = failures(seen);
      const ok = failed === 0 && (expect.spread === 1 ? p.length === 1 : p.length >= expect.spread);
      check(expect.label, ok, `${n - failed}/${n} answered by ${p.length} pod${p.length === 1 ? '' : 's'}${expect.spread === 1 ? ' (want one: sticky)' : ` (want >= ${expect.spread})`}`);
      return seen;
    };
    out('Which pod answered (12 requests each, a new connection each time):');
    await show(`ClusterIP  http://${VIP.mytest}:80 from client1 (seed 001)`, client1, `http://${VIP.mytest}:80/`, { label: 'ClusterIP balances across pods', spread: 2 });
    await show(`ClusterIP  http://${VIP.redis}:6379 (chosen IP, seed 003)`, client1, `http://${VIP.redis}:6379/`, { label: 'a chosen clusterIP (seed 003)', spread: 2 });
    await show(`NodePort   http://${node1.ip4}:${PORTS.nodePortFixed} from outside`, lab.ext, `http://${node1.ip4}:${PORTS.nodePortFixed}/`, { label: 'NodePort on node1, local and remote pods', spread: 3 });
    await show(`NodePort   http://${node2.ip4}:${PORTS.nodePortFixed} from outside`, lab.ext, `http://${node2.ip4}:${PORTS.nodePortFixed}/`, { label: 'NodePort on node2, local and remote pods', spread: 3 });
    await show(`LB IP      http://${VIP.lb}:8000 from outside (seed 004)`, lab.ext, `http://${VIP.lb}:8000/`, { label: 'LoadBalancer IP from outside', spread: 2 });
    await show(`externalIP http://${VIP.externalIP}:8000 from outside (seed 004)`, lab.ext, `http://${VIP.externalIP}:8000/`, { label: 'externalIP from outside', spread: 2 });
    await show(`IPv6       http://[${VIP.dual6}]:80 from client1 (dual-stack)`, client1, `http://[${VIP.dual6}]:80/`, { label: 'dual-stack Service over IPv6', spread: 2 });
    await show(`affinity   http://${VIP.affinity}:8000 from client1 (ClientIP)`, client1, `http://${VIP.affinity}:8000/`, { label: 'session affinity ClientIP sticks', spread: 1 });
    await show(`affinity   NodePort ${node1.ip4}:${PORTS.nodePortAffinity} from outside (seed 002)`, lab.ext, `http://${node1.ip4}:${PORTS.nodePortAffinity}/`, { label: 'affinity on a NodePort (seed 002)', spread: 1 });
    out(`waiting 3 s for the 2 s affinity timeout of seed 004 to expire...`);
    const expired0 = await lab.datapathEvent(node1, 'affinity_expired');
    await new Promise((r) => setTimeout(r, 3000));
    await show(`affinity   after expiry`, client1, `http://${VIP.affinity}:8000/`, { label: 'after expiry the flow is served again', spread: 1 }, 6);
    const expired = await lab.datapathEvent(node1, 'affinity_expired') - expired0;
    out(`           node1's kernel counted ${expired} expired affinity entry; the new pick is Maglev's for this client address, the same on every node`);
    check('affinity expires after timeoutSeconds (2 s)', expired >= 1, `the kernel counted ${expired} expired entr${expired === 1 ? 'y' : 'ies'} (want >= 1)`);
    const seenFrom = new Map<string, Set<string>>();
    for (let i = 0; i < 12; i++) {
      const [name, addr] = (await lab.curl(lab.ext, `http://${node1.ip4}:${PORTS.nodePortFixed}/client`)).split(' ');
      if (name && addr) (seenFrom.get(name) ?? seenFrom.set(name, new Set()).get(name)!).add(addr.replace('::ffff:', ''));
    }
    out(`source     NodePort via node1, the address each pod saw: ${[...seenFrom].sort().map(([n, a]) => `${n} <- ${[...a].join(',')}`).join('; ')}`);
    out(`           (eTP=Cluster hides the client's address, as seed 004 says and kube-proxy does: pods on node1 see node1's address toward them, pod-c on node2 sees node1's)`);
    const saw = (pod: string): string => [...(seenFrom.get(pod) ?? [])].join(',');
    // kube-proxy marks every eTP=Cluster flow to a node port for masquerade, local endpoints included
    // (pkg/proxy/iptables/proxier.go syncProxyRules: the external chain's KUBE-MARK-MASQ jump for
    // Cluster policy; the same in its nftables proxier), and POSTROUTING's masquerade gives a flow
    // the node's address on the device toward the pod: its gateway on the pod's veth
    const gw = (pod: string): string => lab.pods.get(pod)!.gw4;
    const localOk = ['pod-a', 'pod-b'].filter((p) => seenFrom.has(p)).every((p) => saw(p) === gw(p));
    const remoteOk = !seenFrom.has('pod-c') || saw('pod-c') === node1.ip4;
    check('NodePort eTP=Cluster: local pods see node1', localOk && seenFrom.size > 0, `local pods saw ${['pod-a', 'pod-b'].map((p) => `${p} <- ${saw(p) || '-'}`).join(', ')}`);
    check('NodePort eTP=Cluster: remote pod sees node1', remoteOk, `pod-c saw ${saw('pod-c') || '(not picked)'}`);
    const local = await lab.curl(lab.ext, `http://${VIP.lbLocal}:80/client`);
    out(`eTP=Local  http://${VIP.lbLocal}:80/client from outside answers: ${local}  (the pod sees the client's own address)`);
    check('eTP=Local preserves the client address', local.includes(EXT4) && !local.startsWith('ERR'), local);
    const refused = await lab.curl(client1, `http://${VIP.empty}:80/`);
    out(`no endpoints http://${VIP.empty}:80 answers at once: ${refused}`);
    // curl's exit 7: connection refused (our TCP RST), not 28 (timed out)
    check('no endpoints: refused at once', refused.startsWith('ERR 7 '), refused.slice(0, 60));
    out();
    out('Tearing down the lab.');
  } catch (e) {
    // a signal's stop ends the agents under the steps still running: not a failure of the lab
    if (lab.stopping) { out('Interrupted: taking the lab down.'); return 1; }
    out(`lab failed: ${(e as Error).stack ?? e}`);
    check('the lab ran to the end', false, (e as Error).message.split('\n')[0] ?? '');
  } finally {
    await lab.stop().catch((e) => out(`cleanup: ${(e as Error).message}`));
  }
  return summary();
}

process.exitCode = await main();
