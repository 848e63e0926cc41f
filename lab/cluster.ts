// A Kubernetes-shaped lab in network namespaces on this machine: two nodes on one L2 segment with
// routed pod networks, pods with real servers, an external client, and the real agent on each node
// in standalone mode (`run --manifests`). Used by `npm run lab` (lab/main.ts) and the lab tests.
//
//                 ext (192.168.50.100, fd00:50::100)         the "outside": routes the LB range via node1
//                        |
//   net: bridge br0 -----+------------------+
//            |                              |
//   node1 eth0 192.168.50.11          node2 eth0 192.168.50.12        agents: one per node namespace
//     pods 10.244.1.0/24                pods 10.244.2.0/24
//     pod-a .2  pod-b .3  client1 .100  pod-c .2  client2 .100
//
// Pod servers answer their pod name: HTTP on 80 and 8080 (GET /client also tells the source address
// they saw), UDP on 5353. Everything is removed by stop(), also after a failure.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, POD_SERVER, type Netns, type Pod, type LabProcess, waitForLine, run as runCmd } from '../testing/netns.js';
import { explainFailure } from '../testing/lab-diag.js';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = join(here, '..');
export const CLI = join(REPO, 'bin', 'kube-bpf-proxy.js');

export const NODE_NET = { v4: '192.168.50', v6: 'fd00:50::' };
/** addresses the "outside" routes to node1: LoadBalancer IPs and externalIPs of the lab */
export const LB_RANGE = { v4: '192.168.60.0/24', v6: 'fd00:60::/64' };

export interface LabNode {
  name: string;
  index: number;
  ns: Netns;
  ip4: string;
  ip6: string;
  podCidr4: string;
  podCidr6: string;
  pinRoot: string;
  cgroup: string;
  agent?: LabProcess;
}

export interface LabPod {
  name: string;
  node: LabNode;
  pod: Pod;
  ip4: string;
  ip6: string;
  /** the node's address on the pod's veth, its default gateway (and a masqueraded flow's source) */
  gw4: string;
  /** runs servers (backends) or is a client */
  role: 'server' | 'client';
}

export interface ClusterOptions {
  /** short a-z0-9 tag for the names of everything the lab makes */
  tag: string;
  /** socket LB in the agents (per-node cgroups hold the pods' processes) */
  socketLb?: boolean;
  /** extra args for every agent */
  agentArgs?: string[];
  log?: (line: string) => void;
}

export class ClusterLab {
  readonly lab: Lab;
  readonly nodes: LabNode[] = [];
  readonly pods = new Map<string, LabPod>();
  readonly manifests: string;
  readonly socketLb: boolean;
  net!: Netns;
  ext!: Netns;
  readonly #opts: ClusterOptions;
  readonly #servers = new Map<string, LabProcess[]>();

  constructor(opts: ClusterOptions) {
    this.#opts = opts;
    this.lab = new Lab(opts.tag);
    // a signal stops the agents and removes their pins before the namespaces go, as stop() does
    this.lab.onSignal(() => this.stop());
    this.socketLb = opts.socketLb ?? false;
    this.manifests = mkdtempSync(join(tmpdir(), `${this.lab.prefix}manifests-`));
    this.lab.onCleanup(`manifests ${this.manifests}`, () => rmSync(this.manifests, { recursive: true, force: true }));
  }

  log(line: string): void {
    this.#opts.log?.(line);
  }

  /** Builds namespaces, links, addresses, routes and pods (with servers). */
  async build(spec: { pods: Array<{ name: string; node: number; role?: 'server' | 'client' }> }): Promise<void> {
    const { lab } = this;
    this.net = await lab.addNetns('net');
    await lab.ip(this.net, ['link', 'add', 'br0', 'type', 'bridge']);
    await lab.ip(this.net, ['link', 'set', 'br0', 'up']);

    for (const i of [1, 2]) {
      const ns = await lab.addNetns(`node${i}`);
      await lab.addVeth(this.net, `n${i}`, ns, 'eth0');
      await lab.ip(this.net, ['link', 'set', `n${i}`, 'master', 'br0']);
      const node: LabNode = {
        name: `node${i}`, index: i, ns,
        ip4: `${NODE_NET.v4}.1${i}`, ip6: `${NODE_NET.v6}1${i}`,
        podCidr4: `10.244.${i}.0/24`, podCidr6: `fd00:10:244:${i}::/64`,
        pinRoot: lab.addPinRoot(`node${i}`),
        cgroup: lab.addCgroup(`node${i}`),
      };
      await lab.addAddress(ns, 'eth0', `${node.ip4}/24`);
      await lab.addAddress(ns, 'eth0', `${node.ip6}/64`);
      await lab.enableForwarding(ns);
      this.nodes.push(node);
    }
    // each node routes the other's pod network through it, as a CNI's host routes would
    for (const n of this.nodes) {
      for (const o of this.nodes) {
        if (o === n) continue;
        await lab.addRoute(n.ns, o.podCidr4, { via: o.ip4 });
        await lab.addRoute(n.ns, o.podCidr6, { via: o.ip6 });
      }
    }

    this.ext = await lab.addNetns('ext');
    await lab.addVeth(this.net, 'x0', this.ext, 'eth0');
    await lab.ip(this.net, ['link', 'set', 'x0', 'master', 'br0']);
    await lab.addAddress(this.ext, 'eth0', `${NODE_NET.v4}.100/24`);
    await lab.addAddress(this.ext, 'eth0', `${NODE_NET.v6}100/64`);
    await lab.txOff(this.ext, 'eth0');
    // the outside's route to LoadBalancer IPs and externalIPs: node1, as an upstream router would
    await lab.addRoute(this.ext, LB_RANGE.v4, { via: this.nodes[0]!.ip4 });
    await lab.addRoute(this.ext, LB_RANGE.v6, { via: this.nodes[0]!.ip6 });

    for (const p of spec.pods) await this.addPod(p);
    this.log(`lab ${lab.prefix}: 2 nodes, ${this.pods.size} pods, external client ${NODE_NET.v4}.100`);
  }

  /** A pod on node 1 or 2 (also after the agents started: a device appears), servers started for role server. */
  async addPod(p: { name: string; node: number; role?: 'server' | 'client' }): Promise<LabPod> {
    const node = this.nodes[p.node - 1]!;
    const role = p.role ?? 'server';
    // servers take .2, .3, ... of the node's pod network; clients .100, .101, ...
    const taken = [...this.pods.values()].filter((x) => x.node === node && x.role === role).length;
    const n = role === 'client' ? 100 + taken : 2 + taken;
    const ip4 = `10.244.${p.node}.${n}`, ip6 = `fd00:10:244:${p.node}::${n.toString(16)}`, gw4 = `10.244.${p.node}.1`;
    const pod = await this.lab.addPod({
      name: p.name, node: node.ns, hostIf: `v${p.name}`.slice(0, 15),
      addresses: [ip4, ip6], gateways: { v4: gw4, v6: `fd00:10:244:${p.node}::1` },
    });
    const lp: LabPod = { name: p.name, node, pod, ip4, ip6, gw4, role };
    this.pods.set(p.name, lp);
    if (role === 'server') await this.startServers(lp);
    return lp;
  }

  /** HTTP on 80 and 8080, UDP on 5353, in the pod's node cgroup (socket LB sees them as pods of that node). */
  async startServers(p: LabPod): Promise<void> {
    const procs: LabProcess[] = [];
    for (const [http, udp] of [[80, 5353], [8080, 0]] as const) {
      const args = [POD_SERVER, '--name', p.name, '--http', String(http)];
      if (udp) args.push('--udp', String(udp));
      const proc = this.lab.spawn(p.pod.ns, process.execPath, args, { cgroup: p.node.cgroup, what: `servers of ${p.name}` });
      await waitForLine(proc, 'ready', 60_000); // over 10 s at load 35
      procs.push(proc);
    }
    this.#servers.set(p.name, procs);
  }

  /** Stops a pod's servers (a pod going away; its backends refuse from now on). */
  async stopServers(name: string): Promise<void> {
    for (const p of this.#servers.get(name) ?? []) {
      p.child.kill('SIGTERM');
      await Promise.race([p.exited, new Promise((r) => setTimeout(r, 3000))]);
    }
    this.#servers.delete(name);
  }

  writeManifest(file: string, yaml: string): void {
    writeFileSync(join(this.manifests, file), yaml);
  }

  removeManifest(file: string): void {
    rmSync(join(this.manifests, file), { force: true });
  }

  agentArgs(node: LabNode, opts: { socketLb?: boolean; args?: string[] } = {}): string[] {
    return ['run', '--manifests', this.manifests, '--node-name', node.name,
      '--node-ip', node.ip4, '--node-ip', node.ip6, '--devices', 'eth0',
      '--bpffs', node.pinRoot, '--socket-lb', String(opts.socketLb ?? this.socketLb), '--cgroup', node.cgroup,
      '--healthz-bind-address', '0.0.0.0:10256', '--metrics-bind-address', '127.0.0.1:10249',
      '--min-sync-period', '100ms', '--sync-period', '30s',
      // debug: a line per sync that wrote (ops), and the manifests source's deferred reads, for
      // explainFailure's report of a failed request
      '-v', '2',
      ...(this.#opts.agentArgs ?? []), ...(opts.args ?? [])];
  }

  /** Starts the agent of a node inside its namespace and waits until it has programmed the data plane. */
  async startAgent(node: LabNode, opts: { socketLb?: boolean; args?: string[] } = {}): Promise<LabProcess> {
    const proc = this.lab.spawn(node.ns, process.execPath, [CLI, ...this.agentArgs(node, opts)], { what: `agent ${node.name}` });
    node.agent = proc;
    await this.waitHealthy(node, proc);
    return proc;
  }

  /** Polls /healthz inside the node namespace (bounded; an agent run from source through tsx takes 15 s to start on a loaded 2-core machine). */
  async waitHealthy(node: LabNode, proc?: LabProcess, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
        throw new Error(`agent ${node.name} exited: ${proc.output().slice(-2000)}`);
      }
      const r = await this.lab.exec(node.ns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', 'http://127.0.0.1:10256/healthz'], { allowFail: true });
      if (r.stdout.trim() === '200') {
        // healthy means synced: also wait for the first sync's metric
        const m = await this.lab.exec(node.ns, 'curl', ['-s', '--max-time', '1', 'http://127.0.0.1:10249/metrics'], { allowFail: true });
        if (/^kubeproxy_sync_proxy_rules_last_timestamp_seconds [1-9]/m.test(m.stdout)) return;
      }
      if (Date.now() > deadline) throw new Error(`agent ${node.name}: not healthy within ${timeoutMs} ms: ${proc?.output().slice(-2000) ?? ''}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Makes a change (a manifest written, removed) and waits until every agent has synced it. */
  async change(fn: () => void, timeoutMs = 30_000): Promise<void> {
    const since = Date.now() / 1000;
    fn();
    await this.waitSynced(since, timeoutMs);
  }

  /** Waits until every agent has synced a change made after `since` (epoch seconds). */
  async waitSynced(sinceSec: number, timeoutMs = 10_000): Promise<void> {
    for (const node of this.nodes) {
      if (!node.agent) continue;
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = await this.lab.exec(node.ns, 'curl', ['-s', '--max-time', '1', 'http://127.0.0.1:10249/metrics'], { allowFail: true });
        const last = Number(/^kubeproxy_sync_proxy_rules_last_timestamp_seconds (\S+)/m.exec(m.stdout)?.[1] ?? 0);
        if (last > sinceSec) break;
        if (Date.now() > deadline) throw new Error(`agent ${node.name}: no sync after ${sinceSec} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** A datapath counter of a node (lb_stats summed over CPUs), from its agent's /metrics. */
  async datapathEvent(node: LabNode, reason: string): Promise<number> {
    const m = await this.lab.exec(node.ns, 'curl', ['-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics']);
    const v = new RegExp(`^kubebpfproxy_datapath_events_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(m.stdout);
    return v ? Number(v[1]) : 0;
  }

  async stopAgent(node: LabNode, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = node.agent;
    if (!p) return;
    p.child.kill(signal);
    const gone = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    // an agent still saving its state after cleanup would leave a state file behind
    if (!gone) {
      p.child.kill('SIGKILL');
      await Promise.race([p.exited, new Promise((r) => setTimeout(r, 2000))]);
    }
    node.agent = undefined;
  }

  /** `kube-bpf-proxy ARGS` inside a node namespace (dump, compile, cleanup). */
  async cli(node: LabNode, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const r = await runCmd('nsenter', [`--net=${node.ns.path}`, process.execPath, CLI, ...args], { allowFail: true, timeoutMs: 30_000 });
    return r;
  }

  async dumpJson(node: LabNode): Promise<string> {
    const r = await this.cli(node, ['dump', '-o', 'json', '--bpffs', node.pinRoot]);
    if (r.code !== 0) throw new Error(`dump on ${node.name}: ${r.stderr}`);
    return r.stdout;
  }

  async compileJson(node: LabNode, extra: string[] = []): Promise<string> {
    const r = await this.cli(node, ['compile', '-o', 'json', '--manifests', this.manifests, '--node-name', node.name, '--node-ip', node.ip4, '--node-ip', node.ip6, ...extra]);
    if (r.code !== 0) throw new Error(`compile for ${node.name}: ${r.stderr}`);
    return r.stdout;
  }

  /**
   * One HTTP request with curl from a namespace; returns the body (the pod name) or an error string
   * starting with "ERR". A fresh connection each time, bounded by timeoutSec.
   */
  async curl(from: Netns, url: string, opts: { timeoutSec?: number; cgroup?: string } = {}): Promise<string> {
    const args = ['-s', '-S', '--max-time', String(opts.timeoutSec ?? 2), '-g', url];
    if (opts.cgroup) {
      const r = await this.lab.runIn(from, 'curl', args, { cgroup: opts.cgroup, timeoutMs: ((opts.timeoutSec ?? 2) + 5) * 1000 });
      return r.code === 0 ? r.stdout.trim() : `ERR ${r.code} ${r.stderr.trim()}`;
    }
    const r = await this.lab.exec(from, 'curl', args, { allowFail: true, timeoutMs: ((opts.timeoutSec ?? 2) + 5) * 1000 });
    return r.code === 0 ? r.stdout.trim() : `ERR ${r.code} ${r.stderr.trim()}`;
  }

  /**
   * count sequential requests; returns how often each answer came back. A failed request's answer
   * ("ERR ...") carries explain()'s report (BPF mode: counters, frontends, flows, agent lines), so
   * the test's message says what the data plane saw; only the first failure of a call is explained.
   * untilSeen: go on past count, up to 3 x count requests in all, until each of these answers has come
   * back. A check that every backend is reached then fails by chance only when one is missed 3 x count
   * times: at 18 requests over three backends that chance was (2/3)^18, 1 in ~1,500 a check (an image
   * tier run missed pod-a so, 10 and 8 answers from the other two).
   */
  async curlMany(from: Netns, url: string, count: number, opts: { timeoutSec?: number; cgroup?: string; untilSeen?: readonly string[] } = {}): Promise<Map<string, number>> {
    const seen = new Map<string, number>();
    let explained = false;
    const more = (i: number) => i < count || (opts.untilSeen !== undefined && i < 3 * count && !opts.untilSeen.every((a) => seen.has(a)));
    for (let i = 0; more(i); i++) {
      let a = await this.curl(from, url, opts);
      if (a.startsWith('ERR') && !explained) {
        explained = true;
        a = `${a} (request ${i + 1} of ${count}${opts.untilSeen ? ' or more' : ''})\n${await this.explain(from, url)}`;
      }
      seen.set(a, (seen.get(a) ?? 0) + 1);
    }
    return seen;
  }

  /** explainFailure (testing/lab-diag.ts) for a request from a lab namespace; never throws. */
  async explain(from: Netns, url: string): Promise<string> {
    const client = from === this.ext ? [`${NODE_NET.v4}.100`, `${NODE_NET.v6}100`]
      : [...this.pods.values()].filter((p) => p.pod.ns === from).flatMap((p) => [p.ip4, p.ip6]);
    try {
      return await explainFailure(this.nodes, { url, client });
    } catch (e) {
      return `no report: ${(e as Error).message}`;
    }
  }

  /** True once stop() has begun (a signal's, or the end's). */
  stopping = false;

  async stop(): Promise<void> {
    this.stopping = true;
    // agents first (SIGTERM leaves pins; the lab removes pin roots and namespaces afterwards)
    for (const n of this.nodes) await this.stopAgent(n).catch(() => {});
    for (const n of this.nodes) await this.cli(n, ['cleanup', '--bpffs', n.pinRoot]).catch(() => {});
    await this.lab.cleanup();
  }
}

/** Fixed-address EndpointSlice YAML for lab pods. */
export function sliceYaml(o: {
  service: string; name?: string; family?: 'IPv4' | 'IPv6'; ports: Array<{ name?: string; port: number; protocol?: string }>;
  endpoints: Array<{ pod: LabPod; ready?: boolean; serving?: boolean; terminating?: boolean }>;
}): string {
  const fam = o.family ?? 'IPv4';
  const eps = o.endpoints.map((e) => `  - addresses: [${JSON.stringify(fam === 'IPv4' ? e.pod.ip4 : e.pod.ip6)}]
    conditions: { ready: ${e.ready ?? true}, serving: ${e.serving ?? e.ready ?? true}, terminating: ${e.terminating ?? false} }
    nodeName: ${e.pod.node.name}
    targetRef: { kind: Pod, name: ${e.pod.name}, namespace: default }`).join('\n');
  return `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${o.name ?? `${o.service}-${fam.toLowerCase()}`}
  namespace: default
  labels: { kubernetes.io/service-name: ${o.service} }
addressType: ${fam}
ports:
${o.ports.map((p) => `  - { ${p.name ? `name: ${p.name}, ` : ''}port: ${p.port}, protocol: ${p.protocol ?? 'TCP'} }`).join('\n')}
endpoints:
${eps || '  []'}
`.replace('endpoints:\n  []', 'endpoints: []');
}

/** Node objects for the lab's nodes (standalone mode reads addresses from them). */
export function nodesYaml(nodes: LabNode[]): string {
  return nodes.map((n) => `---
apiVersion: v1
kind: Node
metadata:
  name: ${n.name}
  labels: { topology.kubernetes.io/zone: zone-${n.index} }
status:
  addresses:
    - { type: InternalIP, address: ${n.ip4} }
    - { type: InternalIP, address: "${n.ip6}" }
`).join('');
}
