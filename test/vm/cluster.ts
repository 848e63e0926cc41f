// The VM cluster's shape (scripts/test-vm-cluster.sh): node i (1..count) is VM i with eth0 on one
// shared qemu segment at 192.168.77.1i (fd00:77::1i), a routed pod network 10.244.i.0/24 in which a
// server pod web<i> (.2) answers its name on 8080 and a client pod (.100) runs curl. The Services
// are the namespace lab's (lab/services.ts: seed 001's ClusterIP and NodePort), with EndpointSlices
// over the server pods of every node, and the Node objects; the host writes them into one manifests
// folder that every VM's agent reads (cluster-manifests.ts).
import type { LabNode, LabPod } from '../../lab/cluster.js';
import { nodesYaml } from '../../lab/cluster.js';
import { labManifests, PORTS, VIP } from '../../lab/services.js';

export const SEGMENT = { v4: '192.168.77', v6: 'fd00:77::' };
/** the port of each guest's coordination server (its state: setup, ready, failed, done) */
export const CONTROL_PORT = 9000;
export const SERVER_PORT = 8080;
export const CLUSTER_IP = VIP.mytest;
export const NODE_PORT = PORTS.nodePortFixed;
/** the lab's files this tier uses: ClusterIP 10.100.77.149:80 and NodePort 30000, both -> 8080 */
export const SERVICE_FILES = ['mytest.yaml', 'mytest-nodeport.yaml'];

export interface VmNode {
  name: string;
  index: number;
  ip4: string;
  ip6: string;
  podCidr4: string;
  podCidr6: string;
  /** the pod networks' gateway on the node side of every pod veth */
  gw4: string;
  gw6: string;
}

export interface VmPod {
  name: string;
  node: VmNode;
  ip4: string;
  ip6: string;
  role: 'server' | 'client';
}

export function clusterNodes(count: number): VmNode[] {
  return Array.from({ length: count }, (_, k) => {
    const i = k + 1;
    return {
      name: `node${i}`, index: i, ip4: `${SEGMENT.v4}.1${i}`, ip6: `${SEGMENT.v6}1${i}`,
      podCidr4: `10.244.${i}.0/24`, podCidr6: `fd00:10:244:${i}::/64`,
      gw4: `10.244.${i}.1`, gw6: `fd00:10:244:${i}::1`,
    };
  });
}

export function serverPod(node: VmNode): VmPod {
  return { name: `web${node.index}`, node, ip4: `10.244.${node.index}.2`, ip6: `fd00:10:244:${node.index}::2`, role: 'server' };
}

export function clientPod(node: VmNode): VmPod {
  return { name: `client${node.index}`, node, ip4: `10.244.${node.index}.100`, ip6: `fd00:10:244:${node.index}::64`, role: 'client' };
}

/** file name -> YAML: the lab's Services over the server pods of every node, and the Nodes */
export function clusterManifests(count: number): Record<string, string> {
  const nodes = clusterNodes(count);
  // labManifests and nodesYaml read only the fields VmPod and VmNode have
  const all = labManifests(undefined as never, nodes.map(serverPod) as unknown as LabPod[]);
  const out: Record<string, string> = {};
  for (const f of SERVICE_FILES) {
    const yaml = all[f];
    if (!yaml) throw new Error(`lab/services.ts has no ${f} any more; test/vm/cluster.ts names the Services it checks`);
    out[f] = yaml;
  }
  out['nodes.yaml'] = nodesYaml(nodes as unknown as LabNode[]);
  return out;
}
