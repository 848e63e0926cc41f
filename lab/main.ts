// `npm run lab`: the main job. Builds a two-node lab in network namespaces, starts the agent on each
// node in standalone mode with the seeds' example Services, shows which pod answers each request
// (ClusterIP, NodePort on each node, LoadBalancer IP, externalIP, session affinity), then removes
// everything. Traffic never leaves this machine.
import { ClusterLab, nodesYaml } from './cluster.js';
import { labManifests, PORTS, VIP } from './services.js';
import { labAvailable, sweepLeftovers } from '../testing/netns.js';

const out = (s = '') => process.stdout.write(`${s}\n`);

function tally(seen: Map<string, number>): string {
  return [...seen].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} x${v}`).join(', ');
}

async function main(): Promise<number> {
  const avail = labAvailable();
  if (!avail.ok) {
    out(`lab: cannot run here: ${avail.why}`);
    return 1;
  }
  await sweepLeftovers();
  const lab = new ClusterLab({ tag: 'demo', log: (l) => out(l) });
  const stop = () => { void lab.stop().finally(() => process.exit(130)); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
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
    const show = async (what: string, from: typeof client1, url: string, n = 12) => {
      out(`${what.padEnd(58)} ${tally(await lab.curlMany(from, url, n))}`);
    };
    out('Which pod answered (12 requests each, a new connection each time):');
    await show(`ClusterIP  http://${VIP.mytest}:80 from client1 (seed 001)`, client1, `http://${VIP.mytest}:80/`);
    await show(`ClusterIP  http://${VIP.redis}:6379 (chosen IP, seed 003)`, client1, `http://${VIP.redis}:6379/`);
    await show(`NodePort   http://${node1.ip4}:${PORTS.nodePortFixed} from outside`, lab.ext, `http://${node1.ip4}:${PORTS.nodePortFixed}/`);
    await show(`NodePort   http://${node2.ip4}:${PORTS.nodePortFixed} from outside`, lab.ext, `http://${node2.ip4}:${PORTS.nodePortFixed}/`);
    await show(`LB IP      http://${VIP.lb}:8000 from outside (seed 004)`, lab.ext, `http://${VIP.lb}:8000/`);
    await show(`externalIP http://${VIP.externalIP}:8000 from outside (seed 004)`, lab.ext, `http://${VIP.externalIP}:8000/`);
    await show(`IPv6       http://[${VIP.dual6}]:80 from client1 (dual-stack)`, client1, `http://[${VIP.dual6}]:80/`);
    await show(`affinity   http://${VIP.affinity}:8000 from client1 (ClientIP)`, client1, `http://${VIP.affinity}:8000/`);
    await show(`affinity   NodePort ${node1.ip4}:${PORTS.nodePortAffinity} from outside (seed 002)`, lab.ext, `http://${node1.ip4}:${PORTS.nodePortAffinity}/`);
    out(`waiting 3 s for the 2 s affinity timeout of seed 004 to expire...`);
    const expired0 = await lab.datapathEvent(node1, 'affinity_expired');
    await new Promise((r) => setTimeout(r, 3000));
    await show(`affinity   after expiry`, client1, `http://${VIP.affinity}:8000/`, 6);
    out(`           node1's kernel counted ${await lab.datapathEvent(node1, 'affinity_expired') - expired0} expired affinity entry; the new pick is Maglev's for this client address, the same on every node`);
    const seenFrom = new Map<string, Set<string>>();
    for (let i = 0; i < 12; i++) {
      const [name, addr] = (await lab.curl(lab.ext, `http://${node1.ip4}:${PORTS.nodePortFixed}/client`)).split(' ');
      if (name && addr) (seenFrom.get(name) ?? seenFrom.set(name, new Set()).get(name)!).add(addr.replace('::ffff:', ''));
    }
    out(`source     NodePort via node1, the address each pod saw: ${[...seenFrom].sort().map(([n, a]) => `${n} <- ${[...a].join(',')}`).join('; ')}`);
    out(`           (pods on node1 see the client itself; pod-c on node2 sees node1, which SNATs so replies come back through it)`);
    const local = await lab.curl(lab.ext, `http://${VIP.lbLocal}:80/client`);
    out(`eTP=Local  http://${VIP.lbLocal}:80/client from outside answers: ${local}  (the pod sees the client's own address)`);
    const refused = await lab.curl(client1, `http://${VIP.empty}:80/`);
    out(`no endpoints http://${VIP.empty}:80 answers at once: ${refused}`);
    out();
    out('Tearing down the lab.');
    return 0;
  } catch (e) {
    out(`lab failed: ${(e as Error).stack ?? e}`);
    return 1;
  } finally {
    await lab.stop().catch((e) => out(`cleanup: ${(e as Error).message}`));
  }
}

process.exitCode = await main();
