// The seeds' example Services (shared/seeds), with private addresses in place of public ones, as
// standalone manifests for the lab's pods. Each names the seed it comes from.
import { ClusterLab, nodesYaml, sliceYaml, type LabPod } from './cluster.js';

export const VIP = {
  mytest: '10.100.77.149',         // seed 001: mytest-svc, ClusterIP 10.100.77.149, 80 -> 8080
  affinity: '10.96.100.20',        // seed 004: sessionAffinity ClientIP, timeoutSeconds 2
  redis: '172.16.66.66',           // seed 003: a chosen clusterIP
  dns: '10.96.0.10',               // UDP
  dual4: '10.96.100.30',
  dual6: 'fd00:10:96::30',
  lb: '192.168.60.4',              // seed 004: loadBalancerIP 1.2.3.4, here private
  lbLocal: '192.168.60.5',
  lbRanges: '192.168.60.6',
  externalIP: '192.168.60.111',    // seed 004: externalIPs 192.168.198.111, routed to the lab's nodes
  empty: '10.96.100.40',
} as const;

export const PORTS = {
  nodePortFixed: 30000,            // seed 001: nodePort 30000
  nodePortAffinity: 30081,         // seed 002: myapp with sessionAffinity ClientIP (30080 in the seed)
  nodePortLocal: 30090,
  healthCheckLocal: 32000,
} as const;

function service(name: string, seed: string, spec: string): string {
  return `---
# seed ${seed}
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
${spec.trim().split('\n').map((l) => `  ${l}`).join('\n')}
`;
}

/** All lab Services over the given server pods. */
export function labManifests(lab: ClusterLab, servers: LabPod[]): Record<string, string> {
  const http8080 = [{ name: 'http', port: 8080 }];
  const http80 = [{ name: 'http', port: 80 }];
  const eps = servers.map((pod) => ({ pod }));
  const local1 = servers.filter((p) => p.node.index === 1).map((pod) => ({ pod }));
  return {
    'mytest.yaml': service('mytest-svc', '001 (ClusterIP 10.100.77.149, port 80 -> targetPort 8080)', `
selector: { run: mytest }
clusterIP: ${VIP.mytest}
ports: [{ name: http, port: 80, targetPort: 8080 }]`) + sliceYaml({ service: 'mytest-svc', ports: http8080, endpoints: eps }),

    'mytest-nodeport.yaml': service('mytest-svc-fixed', '001 (type NodePort, nodePort 30000)', `
type: NodePort
selector: { run: mytest }
clusterIP: 10.100.77.150
ports: [{ name: http, port: 80, targetPort: 8080, nodePort: ${PORTS.nodePortFixed} }]`) + sliceYaml({ service: 'mytest-svc-fixed', ports: http8080, endpoints: eps }),

    'affinity.yaml': service('nginx-clusterip-svc-sessionaffinityconfig', '004 (sessionAffinity ClientIP, timeoutSeconds 2)', `
selector: { app: nginx }
clusterIP: ${VIP.affinity}
sessionAffinity: ClientIP
sessionAffinityConfig: { clientIP: { timeoutSeconds: 2 } }
ports: [{ name: http, port: 8000, targetPort: 80 }]`) + sliceYaml({ service: 'nginx-clusterip-svc-sessionaffinityconfig', ports: http80, endpoints: eps }),

    'myapp-affinity.yaml': service('myapp', '002 (NodePort with sessionAffinity ClientIP)', `
type: NodePort
selector: { app: myapp, release: dev }
clusterIP: 10.96.100.21
sessionAffinity: ClientIP
ports: [{ name: http, port: 80, targetPort: 80, nodePort: ${PORTS.nodePortAffinity} }]`) + sliceYaml({ service: 'myapp', ports: http80, endpoints: eps }),

    'redis.yaml': service('redis-server', '003 (chosen clusterIP 172.16.66.66)', `
selector: { app: redis-servers }
clusterIP: ${VIP.redis}
ports: [{ port: 6379, targetPort: 80 }]`) + sliceYaml({ service: 'redis-server', ports: [{ port: 80 }], endpoints: eps }),

    'dns.yaml': service('kube-dns', '002 (multi-port, UDP)', `
clusterIP: ${VIP.dns}
ports:
  - { name: dns, port: 53, targetPort: 5353, protocol: UDP }
  - { name: dns-tcp, port: 53, targetPort: 80, protocol: TCP }`) + sliceYaml({
      service: 'kube-dns', ports: [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 80 }], endpoints: eps,
    }),

    'lb.yaml': service('nginx-loadblancer-svc', '004 (type LoadBalancer, loadBalancerIP 1.2.3.4 -> 192.168.60.4)', `
type: LoadBalancer
selector: { app: nginx }
clusterIP: 10.96.100.50
loadBalancerIP: ${VIP.lb}
ports: [{ name: http, port: 8000, targetPort: 80, nodePort: 30100 }]`) + sliceYaml({ service: 'nginx-loadblancer-svc', ports: http80, endpoints: eps }),

    'lb-local.yaml': service('web-local', 'policy: externalTrafficPolicy Local (kube-proxy semantics)', `
type: LoadBalancer
selector: { app: web }
clusterIP: 10.96.100.51
loadBalancerIP: ${VIP.lbLocal}
externalTrafficPolicy: Local
healthCheckNodePort: ${PORTS.healthCheckLocal}
ports: [{ name: http, port: 80, targetPort: 80, nodePort: ${PORTS.nodePortLocal} }]`) + sliceYaml({ service: 'web-local', ports: http80, endpoints: local1 }),

    'lb-ranges.yaml': service('web-ranges', 'loadBalancerSourceRanges', `
type: LoadBalancer
selector: { app: web }
clusterIP: 10.96.100.52
loadBalancerIP: ${VIP.lbRanges}
loadBalancerSourceRanges: [10.9.9.0/24]
ports: [{ name: http, port: 80, targetPort: 80, nodePort: 30101 }]`) + sliceYaml({ service: 'web-ranges', ports: http80, endpoints: eps }),

    'externalip.yaml': service('nginx-clusterip-svc-with-externalip', '004 (externalIPs 192.168.198.111 -> 192.168.60.111)', `
selector: { app: nginx }
clusterIP: 10.96.100.53
externalIPs: [${VIP.externalIP}]
ports: [{ name: http, port: 8000, targetPort: 80 }]`) + sliceYaml({ service: 'nginx-clusterip-svc-with-externalip', ports: http80, endpoints: eps }),

    'dual.yaml': service('web-dual', 'dual-stack (ipFamilies IPv4, IPv6)', `
selector: { app: web }
ipFamilyPolicy: RequireDualStack
ipFamilies: [IPv4, IPv6]
clusterIP: ${VIP.dual4}
clusterIPs: [${VIP.dual4}, "${VIP.dual6}"]
ports: [{ name: http, port: 80, targetPort: 80 }]`) + sliceYaml({ service: 'web-dual', ports: http80, endpoints: eps })
      + sliceYaml({ service: 'web-dual', family: 'IPv6', ports: http80, endpoints: eps }),

    'empty.yaml': service('no-endpoints', 'a Service without endpoints: refused at once', `
selector: { app: nothing }
clusterIP: ${VIP.empty}
ports: [{ name: http, port: 80 }, { name: udp, port: 53, protocol: UDP }]`),
  };
}

/** The sticky-port Service's ports: ClientIP affinity per Service port, NodePorts 30170 and 30171. */
export const STICKY_PORTS = [{ name: 'http', port: 80 }, { name: 'alt', port: 8080 }];

/** The sticky-port Service (ClusterIP 10.96.100.70, NodePort, ClientIP affinity) and its slice over `pods`. */
export function stickyPortYaml(pods: LabPod[]): string {
  return `---
apiVersion: v1
kind: Service
metadata: { name: sticky-port, namespace: default }
spec:
  type: NodePort
  clusterIP: 10.96.100.70
  sessionAffinity: ClientIP
  ports: [{ name: http, port: 80, targetPort: 80, nodePort: 30170 }, { name: alt, port: 8080, targetPort: 8080, nodePort: 30171 }]
` + sliceYaml({ service: 'sticky-port', ports: STICKY_PORTS, endpoints: pods.map((pod) => ({ pod })) });
}

/** mytest.yaml of `labManifests` over pod-a..c, its EndpointSlice replaced by one over `endpoints`. */
export function mytestWithEndpoints(lab: ClusterLab, endpoints: Parameters<typeof sliceYaml>[0]['endpoints']): string {
  const pods = ['pod-a', 'pod-b', 'pod-c'].map((n) => lab.pods.get(n)!);
  return labManifests(lab, pods)['mytest.yaml']!.replace(/---\napiVersion: discovery.k8s.io\/v1[\s\S]*$/, '')
    + sliceYaml({ service: 'mytest-svc', ports: [{ name: 'http', port: 8080 }], endpoints });
}

/**
 * The long loop scripts' lab (test/lab/*.run.ts): two nodes, pod-a..d (a, b on node 1), `clients`
 * client pods (client1 on node 1, client2 on node 2), the lab's manifests over pod-a..c, an agent per
 * node started with `agentArgs`.
 */
export async function startLoopLab(tag: string, agentArgs: string[], clients = 2): Promise<ClusterLab> {
  const lab = new ClusterLab({ tag, agentArgs });
  await lab.build({ pods: [
    { name: 'pod-a', node: 1 }, { name: 'pod-b', node: 1 }, { name: 'pod-c', node: 2 }, { name: 'pod-d', node: 2 },
    ...[1, 2].slice(0, clients).map((n) => ({ name: `client${n}`, node: n, role: 'client' as const })),
  ] });
  lab.writeManifest('nodes.yaml', nodesYaml(lab.nodes));
  for (const [f, y] of Object.entries(labManifests(lab, ['pod-a', 'pod-b', 'pod-c'].map((n) => lab.pods.get(n)!)))) lab.writeManifest(f, y);
  for (const n of lab.nodes) await lab.startAgent(n);
  return lab;
}
