// IPVS mode end to end, inside the test VM (test/vm/guest.ts starts it after the datapath tests; the
// VM's kernel has ip_vs and dummy, which the host's lacks). The VM's namespace as the node, the real agent
// (the CLI, bundled), two server pods and a client pod on veths, and an external client on the node's
// external device. Checks, with real clients:
//   - a mode switch: an nftables-mode agent's table (left when it stopped) is removed by the next one;
//   - auto picks IPVS when BPF is unavailable (KBP_DISABLE_BPF), and says why BPF was skipped;
//   - --mode ipvs takes over from that agent (a restart: the virtual servers are read back, unchanged)
//     under traffic: no new connection fails, a kept-alive one is not reset, no sample of the table
//     differs; its /healthz body and kubebpfproxy_dataplane_mode say ipvs;
//   - ClusterIP balances over both pods, from a pod; NodePort balances from the external client;
//     an externalIP too; hairpin (a pod through its own Service) is masqueraded;
//   - ClientIP affinity keeps one pod;
//   - a removed TCP backend drains (weight 0 while a connection is open) and gets no new connection,
//     and is deleted once that connection ends (bounded by --ipvs-drain-timeout, 10 s here);
//   - a removed UDP backend: the same flow (one source port) moves to the other pod at once;
//   - a dual-stack ClusterIP over IPv6, an LB IP's loadBalancerSourceRanges (allowed and dropped
//     sources), eTP=Local with the client's address preserved, eTP=Cluster masqueraded to an
//     endpoint on another node, SCTP with real associations (socat);
//   - the ip_vs sysctls; the persistence timeout; a removed SCTP backend deleted at once (as UDP);
//     the periodic resync removing strays (a virtual server, a VIP) and restoring what was deleted
//     by hand; a removed Service's virtual server and VIP gone;
//   - --ipvs-scheduler mh: a source (address and port) keeps its pod; while a pod drains, its clients
//     go elsewhere and the others' stay;
//   - dump -o json equals compile -o json, dump -o table equals ipvsadm -Ln; cleanup (without the state file) removes the virtual
//     servers, NodePorts on node addresses included, the dummy and the table, and nothing else.
// Prints "ok - ..." / "not ok - ..." lines and a tally as mini-ava does, so guest.ts counts them.
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { uptime } from 'node:os';
import { Lab, Netns, POD_SERVER, run, waitForLine, type LabProcess } from '../../testing/netns.js';
import { IpvsClient, ipvsOps, type VirtualServer } from '../../src/dataplane/ipvs/ipvs.js';
import { ipvsStatePath } from '../../src/dataplane/ipvs/state.js';
import { formatIpvsTable } from '../../src/dataplane/ipvs/dump.js';
import { DummyLink } from '../../src/dataplane/ipvs/rtnl.js';

const AGENT = join(process.env.KBP_VM_BUILD ?? '', 'kube-bpf-proxy.mjs');
const PIN = '/sys/fs/bpf/kbp-ipvs';
const NODE_IP = '192.168.77.1';
const EXT_IP = '192.168.77.2';
const CIP = '10.96.0.10', AFF_IP = '10.96.0.11', UDP_IP = '10.96.0.12';
const NODE_PORT = 30080;
const EMPTY_IP = '10.96.0.13', LOCAL_IP = '10.96.0.14', LOCAL_NODE_PORT = 30081, REMOTE_IP = '10.244.2.2';
const PODS = [{ name: 'pod-a', ip: '10.244.1.2', ip6: 'fd00:10:244:1::2' }, { name: 'pod-b', ip: '10.244.1.3', ip6: 'fd00:10:244:1::3' }];
// cases the README once listed as "not tested with a client": a dual-stack ClusterIP (served over IPv6), an LB IP
// with loadBalancerSourceRanges (a second external source, refused), eTP=Cluster to an endpoint on
// another node (masqueraded: the pod sees the node, not the client), SCTP (real sockets: socat)
const DUAL_IP = '10.96.0.16', DUAL_IP6 = 'fd00:96::16', SCTP_IP = '10.96.0.17', SCTP_PORT = 9000;
const LB_IP = '192.168.80.10', LB_NODE_PORT = 30082, EXT_IP_DENIED = '192.168.77.3';
const MASQ_IP = '10.96.0.19', MASQ_NODE_PORT = 30083, REMOTE_POD = { name: 'pod-r', ip: '10.244.2.3' };
// an externalIP (a VIP on the dummy like a ClusterIP, reached from outside); the mh Service's three
// endpoints (pod-a, pod-b, pod-r), one of which leaves while the agent runs with --ipvs-scheduler mh
const EXTIP_SVC = '10.96.0.20', EXTERNAL_IP = '192.168.80.20', MH_IP = '10.96.0.21';
/** /healthz and /metrics of the agent that takes over (the others bind none) */
const HEALTHZ = '127.0.0.1:10256', METRICS = '127.0.0.1:10249';


/**
 * --ipvs-drain-timeout: the drain check's wait. A connection that ended still counts in IPVS as
 * inactive (TIME_WAIT, 2 minutes), so a drained server goes at this bound, as in kube-proxy
 * (deleteRsFunc waits for ActiveConn + InactiveConn == 0); short, but longer than the check needs
 * to see the server kept while its connection is open (a few housekeeping ticks of 1 s)
 */
const DRAIN_S = 10;

const log = (s: string) => console.log(`# [${uptime().toFixed(0)}s] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let n = 0, pass = 0, fail = 0;
async function check(what: string, fn: () => Promise<string | void>): Promise<boolean> {
  n++;
  log(`${n}: ${what}`);
  try {
    const why = await fn();
    pass++;
    console.log(`ok ${n} - ipvs: ${what}${why ? ` (${why})` : ''}`);
    return true;
  } catch (e) {
    fail++;
    console.log(`not ok ${n} - ipvs: ${what}\n  ---\n  ${(e as Error).message.split('\n').join('\n  ')}\n  ...`);
    return false;
  }
}
function expect(c: boolean, m: string): void {
  if (!c) throw new Error(m);
}

function slice(svc: string, ips: string[], port: number, proto: 'TCP' | 'UDP', remote: string[] = []): string {
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${svc}-1, namespace: default, labels: { kubernetes.io/service-name: ${svc} } }
addressType: IPv4
ports: [ { name: p, port: ${port}, protocol: ${proto} } ]
endpoints:
${[...ips.map((ip) => [ip, 'vm']), ...remote.map((ip) => [ip, 'other'])].map(([ip, n]) => `  - addresses: ["${ip}"]\n    conditions: { ready: true }\n    nodeName: ${n}`).join('\n') || '  []'}
`;
}
function manifests(dir: string, web: string[], udp: string[]): void {
  writeFileSync(join(dir, 'services.yaml'), `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { type: NodePort, clusterIP: ${CIP}, ports: [ { name: p, port: 80, targetPort: 8080, nodePort: ${NODE_PORT}, protocol: TCP } ] }
---
apiVersion: v1
kind: Service
metadata: { name: sticky, namespace: default }
spec:
  clusterIP: ${AFF_IP}
  sessionAffinity: ClientIP
  sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }
  ports: [ { name: p, port: 80, targetPort: 8080, protocol: TCP } ]
---
apiVersion: v1
kind: Service
metadata: { name: dns, namespace: default }
spec: { clusterIP: ${UDP_IP}, ports: [ { name: p, port: 53, targetPort: 5353, protocol: UDP } ] }
---
apiVersion: v1
kind: Service
metadata: { name: empty, namespace: default }
spec: { clusterIP: ${EMPTY_IP}, ports: [ { name: p, port: 80, targetPort: 8080, protocol: TCP } ] }
---
apiVersion: v1
kind: Service
metadata: { name: local, namespace: default }
spec:
  type: NodePort
  clusterIP: ${LOCAL_IP}
  externalTrafficPolicy: Local
  ports: [ { name: p, port: 80, targetPort: 8080, nodePort: ${LOCAL_NODE_PORT}, protocol: TCP } ]
`);
  // written whole and renamed, so the watcher never reads half a file
  const put = (f: string, text: string) => { writeFileSync(join(dir, `.${f}.tmp`), text); renameSync(join(dir, `.${f}.tmp`), join(dir, f)); };
  put('web.yaml', slice('web', web, 8080, 'TCP'));
  put('sticky.yaml', slice('sticky', PODS.map((p) => p.ip), 8080, 'TCP').replace(/web/g, 'sticky'));
  put('dns.yaml', slice('dns', udp, 5353, 'UDP'));
  // eTP=Local: pod-a here, and an endpoint on another node that nothing routes to (reaching it fails)
  put('local.yaml', slice('local', [PODS[0]!.ip], 8080, 'TCP', [REMOTE_IP]));
}

/** Services written once (the checks below never change them), beside services.yaml */
function extraManifests(dir: string, sctp: string[] | null = PODS.map((p) => p.ip), mh: string[] = [...PODS.map((p) => p.ip), REMOTE_POD.ip]): void {
  const eps = (ips: string[], node = 'vm') => ips.map((ip) => `  - addresses: ["${ip}"]\n    conditions: { ready: true }\n    nodeName: ${node}`).join('\n');
  const sl = (svc: string, name: string, family: string, port: number, proto: string, body: string) => `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}, namespace: default, labels: { kubernetes.io/service-name: ${svc} } }
addressType: ${family}
ports: [ { name: p, port: ${port}, protocol: ${proto} } ]
endpoints:
${body}
`;
  const v4 = PODS.map((p) => p.ip), v6 = PODS.map((p) => p.ip6);
  const text = `apiVersion: v1
kind: Service
metadata: { name: dual, namespace: default }
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIP: ${DUAL_IP}
  clusterIPs: [${DUAL_IP}, "${DUAL_IP6}"]
  ports: [ { name: p, port: 80, targetPort: 8080, protocol: TCP } ]
---
apiVersion: v1
kind: Service
metadata: { name: lbr, namespace: default }
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.18
  loadBalancerIP: ${LB_IP}
  loadBalancerSourceRanges: [${EXT_IP}/32]
  ports: [ { name: p, port: 80, targetPort: 8080, nodePort: ${LB_NODE_PORT}, protocol: TCP } ]
---
apiVersion: v1
kind: Service
metadata: { name: masq, namespace: default }
spec:
  type: NodePort
  clusterIP: ${MASQ_IP}
  ports: [ { name: p, port: 80, targetPort: 8080, nodePort: ${MASQ_NODE_PORT}, protocol: TCP } ]
---
apiVersion: v1
kind: Service
metadata: { name: extip, namespace: default }
spec: { clusterIP: ${EXTIP_SVC}, externalIPs: [${EXTERNAL_IP}], ports: [ { name: p, port: 80, targetPort: 8080, protocol: TCP } ] }
---
apiVersion: v1
kind: Service
metadata: { name: hash, namespace: default }
spec: { clusterIP: ${MH_IP}, ports: [ { name: p, port: 80, targetPort: 8080, protocol: TCP } ] }
${sctp ? `---
apiVersion: v1
kind: Service
metadata: { name: sctp, namespace: default }
spec: { clusterIP: ${SCTP_IP}, ports: [ { name: p, port: ${SCTP_PORT}, targetPort: ${SCTP_PORT}, protocol: SCTP } ] }
` : ''}${sl('dual', 'dual-4', 'IPv4', 8080, 'TCP', eps(v4))}${sl('dual', 'dual-6', 'IPv6', 8080, 'TCP', eps(v6))}${sl('lbr', 'lbr-1', 'IPv4', 8080, 'TCP', eps(v4))}${sl('masq', 'masq-1', 'IPv4', 8080, 'TCP', eps([REMOTE_POD.ip], 'other'))}${sl('extip', 'extip-1', 'IPv4', 8080, 'TCP', eps(v4))}${sl('hash', 'hash-1', 'IPv4', 8080, 'TCP', eps(mh.slice(0, 2)) + (mh[2] ? `\n${eps([mh[2]], 'other')}` : ''))}${sctp ? sl('sctp', 'sctp-1', 'IPv4', SCTP_PORT, 'SCTP', eps(sctp)) : ''}`;
  writeFileSync(join(dir, '.extra.yaml.tmp'), text);
  renameSync(join(dir, '.extra.yaml.tmp'), join(dir, 'extra.yaml'));
}

const lab = new Lab('ipvs');
const dir = mkdtempSync('/tmp/kbp-ipvs-');
let node: Netns, client: Netns, ext: Netns;
/** the nftables agent's run (setup starts it): `nft list tables` after it stopped, '' when it failed */
let nftModeLeft: Promise<string> = Promise.resolve('');
/** the server pods' namespaces, by name (hairpin: a pod reaching its own Service) */
const podNs = new Map<string, Netns>();
/** the web Service's endpoints as last written */
let webNow = PODS.map((p) => p.ip);

async function cli(args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return lab.runIn(node, process.execPath, [AGENT, ...args], { timeoutMs: 180_000 });
}
function startAgent(mode: string, env: Record<string, string> = {}, more: string[] = []): LabProcess {
  const bind = more.includes('--healthz-bind-address') ? [] : ['--healthz-bind-address', '', '--metrics-bind-address', ''];
  const args = [AGENT, 'run', '--manifests', dir, '--node-name', 'vm', '--node-ip', NODE_IP, '--mode', mode, '--bpffs', PIN,
    '--devices', 'ext0', ...bind, '--housekeeping-interval', '1s',
    '--min-sync-period', '100ms', ...(more.includes('--ipvs-drain-timeout') ? [] : ['--ipvs-drain-timeout', `${DRAIN_S}s`]), ...more];
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return lab.spawn(node, envArgs.length ? 'env' : process.execPath, envArgs.length ? [...envArgs, process.execPath, ...args] : args, { what: `agent --mode ${mode}` });
}
async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) { last = e; }
    await sleep(500);
  }
  throw new Error(`${what}: not within ${ms} ms${last ? `: ${(last as Error).message}` : ''}`);
}
// 300 s: with the host at load ~23 and a second VM running, an agent's start took over 120 s
// (an exit ends the wait at once: until() takes a throw for "not yet")
async function waitRunning(p: LabProcess): Promise<void> {
  const r = await until('the agent says it runs', 300_000, async () => (p.child.exitCode !== null ? 'exited' : p.output().includes('agent running') ? 'running' : undefined));
  if (r === 'exited') throw new Error(`agent exited ${p.child.exitCode}: ${p.output().slice(-1500)}`);
}
/** IPVS as `ipvsadm -Ln` prints it, read here (the node is this process's namespace) */
async function table(): Promise<string> {
  const c = await IpvsClient.open();
  try {
    const vs = await c.listServices();
    const dests = await c.listDests(vs);
    return formatIpvsTable(vs.map((v, i) => ({ vs: v, dests: dests[i]! })));
  } finally {
    c.close();
  }
}
/** the real servers of one virtual server in the dump table: "addr:port weight" */
function realServers(t: string, vs: string): string[] {
  const lines = t.split('\n');
  const i = lines.findIndex((l) => l.includes(` ${vs} `));
  if (i < 0) return [];
  const out: string[] = [];
  for (let j = i + 1; j < lines.length && lines[j]!.startsWith('  -> '); j++) {
    const f = lines[j]!.trim().split(/\s+/);
    out.push(`${f[1]} ${f[3]}`);
  }
  return out;
}
async function http(ns: Netns, host: string, port: number, count: number, path?: string): Promise<string[]> {
  // 15 s: at load 30 on the host the emulated guest once needed more than 5 s for one request
  const r = await lab.client(ns, { proto: 'http', host, port, count, timeoutMs: 15_000, ...(path && { path }) });
  const bad = r.filter((x) => !x.ok);
  if (bad.length) throw new Error(`${bad.length} of ${count} requests to ${host}:${port} failed: ${bad.slice(0, 3).map((b) => b.error).join(', ')}`);
  return r.map((x) => x.reply!.trim());
}
/** the client address in a pod server's "/client" answer ("NAME ADDR PORT"), IPv4 without ::ffff: */
function seenFrom(reply: string): string {
  return (reply.split(' ')[1] ?? '').replace(/^::ffff:(?=\d+\.)/, '');
}
function tally(names: string[]): string {
  const c = new Map<string, number>();
  for (const x of names) c.set(x, (c.get(x) ?? 0) + 1);
  return [...c].sort().map(([k, v]) => `${k}=${v}`).join(' ');
}

/** The table without IPVS's connection counters (they move with traffic): "addr:port weight" per real server. */
function stripCounters(t: string): string {
  return t.split('\n').map((l) => (l.startsWith('  -> ') ? l.trim().split(/\s+/).slice(0, 4).join(' ') : l.trim())).filter(Boolean).join('\n');
}
/**
 * The virtual servers of an `ipvsadm -Ln`-like text, each "PROT VIP SCHED FLAGS | -> RS FWD WEIGHT, ...",
 * real servers sorted, the list sorted; headers and connection counters left out.
 */
function ipvsBlocks(text: string): string[] {
  const out: string[] = [];
  let cur: { vs: string; rs: string[] } | undefined;
  const flush = () => { if (cur) out.push(`${cur.vs} | ${cur.rs.sort().join(', ')}`); };
  for (const l of text.split('\n')) {
    if (/^(TCP|UDP|SCTP|FWM) /.test(l)) { flush(); cur = { vs: l.trim().split(/\s+/).join(' '), rs: [] }; }
    else if (cur && /^ {2}-> /.test(l)) cur.rs.push(l.trim().split(/\s+/).slice(1, 4).join(' '));
  }
  flush();
  return out.sort();
}

async function setup(): Promise<void> {
  // the node is the VM's own namespace, named so the lab's helpers reach it: this process reads IPVS
  // there directly instead of starting a CLI per look (seconds each under emulation)
  node = new Netns('vmroot');
  await run('ip', ['netns', 'attach', node.name, '1']);
  ext = await lab.addNetns('ext');
  await lab.enableForwarding(node);
  await lab.addVeth(node, 'ext0', ext, 'eth0');
  await lab.addAddress(node, 'ext0', `${NODE_IP}/24`);
  await lab.addAddress(ext, 'eth0', `${EXT_IP}/24`);
  // a second external source, outside the LB Service's loadBalancerSourceRanges
  await lab.addAddress(ext, 'eth0', `${EXT_IP_DENIED}/24`);
  await lab.addRoute(ext, 'default', { via: NODE_IP, dev: 'eth0' });
  // the mode switch's first agent, in nftables mode, starts now (seconds under emulation) while the
  // pods start; it stops, leaving its table, before the IPVS agent starts
  extraManifests(dir);
  manifests(dir, PODS.map((p) => p.ip), PODS.map((p) => p.ip));
  const nftAgent = startAgent('nftables');
  nftModeLeft = waitRunning(nftAgent).then(async () => {
    await until('the nftables agent\'s table', 60_000, async () => ((await run('/usr/sbin/nft', ['list', 'tables'])).stdout.includes('kube-bpf-proxy-nft') ? true : undefined));
    return (await run('/usr/sbin/nft', ['list', 'tables'])).stdout;
  }).catch((e: Error) => { log(`the nftables agent: ${e.message}`); return ''; }).finally(async () => {
    nftAgent.child.kill('SIGTERM');
    await nftAgent.exited;
  });
  // the servers start side by side (a node process takes seconds to start under emulation) and are
  // waited for together; lab.startPodServer waits 10 s for "ready": too short here
  // (each waiter listens from the spawn on: waitForLine sees only output that comes after it)
  const servers: Array<Promise<void>> = [];
  const ready = (p: LabProcess) => {
    const w = waitForLine(p, 'ready', 120_000);
    w.catch(() => undefined); // awaited below; a setup step failing first must not leave it unhandled
    servers.push(w);
  };
  for (const [i, p] of PODS.entries()) {
    const pod = await lab.addPod({ node, name: p.name, hostIf: `pod${i}`, addresses: [p.ip, p.ip6] });
    podNs.set(p.name, pod.ns);
    ready(lab.spawn(pod.ns, process.execPath, [POD_SERVER, '--name', p.name, '--http', '8080', '--udp', '5353'], { what: `pod-server ${p.name}` }));
    // SCTP: real sockets (the sctp module is in the initramfs), one association per answer
    lab.spawn(pod.ns, 'socat', [`SCTP-LISTEN:${SCTP_PORT},fork,reuseaddr`, `SYSTEM:echo ${p.name}`], { what: `sctp server ${p.name}` });
  }
  // the endpoint "on another node": routed from the node like a pod, but not local in the slice
  const remote = await lab.addPod({ node, name: REMOTE_POD.name, hostIf: 'podr', addresses: [REMOTE_POD.ip] });
  ready(lab.spawn(remote.ns, process.execPath, [POD_SERVER, '--name', REMOTE_POD.name, '--http', '8080'], { what: 'pod-server remote' }));
  await Promise.all(servers);
  await lab.addPod({ node, name: 'client', hostIf: 'podc', addresses: ['10.244.1.9', 'fd00:10:244:1::9'] }).then((p) => { client = p.ns; });
}

/** one UDP socket (one source port) sending every 200 ms, printing who answered */
const UDP_FLOW = `const d=require('node:dgram').createSocket('udp4');let i=0;d.on('message',(m)=>console.log('reply '+m));
const t=setInterval(()=>{d.send('x',53,'${UDP_IP}');if(++i>600)process.exit(0)},200);process.on('SIGTERM',()=>process.exit(0));`;

/**
 * Traffic across an agent's restart, from the client pod: one kept-alive connection asking every
 * 500 ms (it must never be reset), and a new connection every 300 ms (none may fail); a line of
 * counts each second and at SIGTERM. Bounded: exits by itself after 400 s.
 */
const TRAFFIC = `const net=require('node:net'),http=require('node:http');let ok=0,bad=0,held=0,heldGone='';
const s=net.connect(80,'${CIP}');let tail='';
s.on('data',(d)=>{const t=tail+d;held+=(t.match(/HTTP\\/1\\.1 200/g)||[]).length;tail=t.slice(-16);});
s.on('close',()=>{heldGone=heldGone||'closed'});s.on('error',(e)=>{heldGone='error '+e.code});
setInterval(()=>{if(!heldGone)s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')},500);
setInterval(()=>{const r=http.get({host:'${CIP}',port:80,path:'/',agent:false,timeout:15000},(res)=>{res.resume();res.on('end',()=>ok++)});
r.on('error',(e)=>{bad++;console.log('new connection failed: '+e.message)});r.on('timeout',()=>r.destroy(new Error('timeout')))},300);
const line=()=>'counts ok='+ok+' bad='+bad+' held='+held+' heldGone='+(heldGone||'no');
setInterval(()=>console.log(line()),1000);process.on('SIGTERM',()=>{console.log('final '+line());process.exit(0)});setTimeout(()=>process.exit(0),400000);`;

/** The last "counts" or "final" line of the traffic process, parsed. */
function trafficCounts(out: string): { ok: number; bad: number; held: number; heldGone: string } | undefined {
  const m = [...out.matchAll(/(?:counts|final) ok=(\d+) bad=(\d+) held=(\d+) heldGone=(\S+(?: \S+)?)/g)].at(-1);
  return m && { ok: Number(m[1]), bad: Number(m[2]), held: Number(m[3]), heldGone: m[4]! };
}

/**
 * Each of `ports` (the client's source ports) connects once to the mh Service, all at once, reads
 * which pod answered and resets the connection (no TIME_WAIT, so the next round can reuse the port):
 * port -> pod. Parallel: a reused tuple's first SYN is dropped by IPVS (conn_reuse_mode with
 * conntrack) and resent a second later, so one at a time would take a second per port.
 */
async function mhRound(ports: number[]): Promise<Map<number, string>> {
  const script = `const net=require('node:net');const out={};let left=${ports.length};
for(const p of ${JSON.stringify(ports)}){const s=net.connect({host:'${MH_IP}',port:80,localAddress:'10.244.1.9',localPort:p});let b='';
s.setTimeout(20000,()=>{s.destroy();out[p]='timeout';if(!--left)done()});
s.on('connect',()=>s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'));
s.on('data',(d)=>{b+=d;const m=/\\r\\n\\r\\n(\\S+)/.exec(b);if(m&&!out[p]){out[p]=m[1];s.resetAndDestroy();if(!--left)done()}});
s.on('error',(e)=>{if(!out[p]){out[p]='error '+e.code;if(!--left)done()}});}
function done(){console.log(JSON.stringify(out));process.exit(0)}setTimeout(()=>{console.log(JSON.stringify(out));process.exit(0)},60000);`;
  const r = await lab.runIn(client, process.execPath, ['-e', script], { timeoutMs: 90_000 });
  const got = JSON.parse(r.stdout.trim().split('\n').at(-1) || '{}') as Record<string, string>;
  const m = new Map(ports.map((p) => [p, got[p] ?? 'none']));
  const bad = [...m].filter(([, v]) => !v.startsWith('pod-'));
  if (bad.length) throw new Error(`${bad.length} of ${ports.length} connections to ${MH_IP}:80 failed: ${bad.slice(0, 4).map(([p, v]) => `${p}: ${v}`).join(', ')}`);
  return m;
}

async function main(): Promise<void> {
  await setup();
  // an agent of another mode (started in setup) left its state on the node: its table (an agent
  // that exits keeps its rules, as kube-proxy's), for the next agent to remove when it picks IPVS
    const nftLeft = await nftModeLeft;
  let agent = startAgent('auto', { KBP_DISABLE_BPF: 'vm-ipvs-tier' });
  await check('--mode auto picks IPVS when BPF is unavailable, and logs why BPF was skipped', async () => {
    await waitRunning(agent);
    const out = agent.output();
    expect(/"mode":"ipvs"[^\n]*data plane chosen|data plane chosen[^\n]*"mode":"ipvs"/.test(out), `no "data plane chosen" with mode ipvs: ${out.slice(-800)}`);
    expect(/data plane skipped/.test(out) && out.includes('KBP_DISABLE_BPF'), 'BPF skipped without its reason');
    return 'skipped bpf: KBP_DISABLE_BPF';
  });
  await check('a mode switch into IPVS: the nftables agent\'s table, left when it exited, is removed by the agent that picks IPVS (as kube-proxy cleans up the other proxiers)', async () => {
    expect(nftLeft.includes('kube-bpf-proxy-nft'), `the nftables agent left no table to remove: ${JSON.stringify(nftLeft)}`);
    const tables = (await run('/usr/sbin/nft', ['list', 'tables'])).stdout;
    expect(!tables.includes('kube-bpf-proxy-nft'), `still there after the switch:\n${tables}`);
    expect(agent.output().includes('switched from nftables: removed its table'), 'no "switched from nftables" in the log');
    return tables.split('\n').filter(Boolean).join(', ');
  });
  const before = await until('the first sync', 60_000, async () => {
    const t = await table();
    return realServers(t, `${CIP}:80`).length === 2 ? t : undefined;
  }).catch((e: Error) => { log(e.message); return ''; });

  // the restart under traffic: the table sampled every 500 ms from before the old agent stops until
  // the new one has run a while; any sample that differs is a real server flapped
  const traffic = lab.spawn(client, process.execPath, ['-e', TRAFFIC], { what: 'traffic' });
  await until('traffic flows', 60_000, async () => ((trafficCounts(traffic.output())?.ok ?? 0) >= 2 ? true : undefined)).catch(() => undefined);
  const samples: string[] = [];
  let sampling = true;
  const sampler = (async () => {
    for (let i = 0; sampling && i < 2000; i++) {
      // the new agent's mode probe adds and deletes a scratch virtual server on 127.0.0.127 (probeIpvs): not a Service's
      samples.push(stripCounters(await table().catch((e: Error) => `read failed: ${e.message}`)).split('\n').filter((l) => !l.includes('127.0.0.127:')).join('\n'));
      await sleep(500);
    }
  })();
  agent.child.kill('SIGTERM');
  await agent.exited;
  agent = startAgent('ipvs', {}, ['--healthz-bind-address', HEALTHZ, '--metrics-bind-address', METRICS]);
  await check('--mode ipvs takes over: the earlier agent\'s virtual servers are read back, not rebuilt', async () => {
    await waitRunning(agent);
    expect(agent.output().includes('reusing the IPVS state of an earlier agent'), 'no "reusing the IPVS state" in the log');
    const after = await table();
    expect(before !== '' && stripCounters(after) === stripCounters(before), `the table changed across the restart:\n${before}\n---\n${after}`);
  });
  await check('a restart under traffic: no new connection fails, the kept-alive one is never reset, no real server changes at any sample', async () => {
    // the new agent's first syncs and a housekeeping tick or two under traffic
    const at = trafficCounts(traffic.output())?.ok ?? 0;
    await until('traffic after the restart', 60_000, async () => ((trafficCounts(traffic.output())?.ok ?? 0) >= at + 8 ? true : undefined));
    sampling = false;
    await sampler;
    traffic.child.kill('SIGTERM');
    await traffic.exited;
    const c = trafficCounts(traffic.output());
    expect(!!c, `no counts from the traffic: ${traffic.output().slice(-500)}`);
    expect(c!.bad === 0, `${c!.bad} new connections failed: ${traffic.output().split('\n').filter((l) => l.startsWith('new connection failed')).slice(0, 3).join('; ')}`);
    expect(c!.heldGone === 'no' && c!.held >= 4, `the kept-alive connection: ${c!.heldGone}, ${c!.held} answers`);
    const base = stripCounters(before);
    const differ = samples.filter((x) => x !== base);
    expect(samples.length >= 4 && !differ.length, `${differ.length} of ${samples.length} samples differ from the table before; first:\n${differ[0] ?? ''}\n--- before:\n${base}`);
    return `${c!.ok} new connections, ${c!.held} answers on the kept one, ${samples.length} samples of the table alike`;
  });
  await check('/healthz says ipvs in its body, /metrics has kubebpfproxy_dataplane_mode{mode="ipvs"} 1', async () => {
    const h = await until('/healthz answers 200', 60_000, async () => {
      const r = await fetch(`http://${HEALTHZ}/healthz`);
      return r.status === 200 ? r.text() : undefined;
    });
    expect((JSON.parse(h) as { dataplaneMode?: string }).dataplaneMode === 'ipvs', `/healthz body: ${h}`);
    const m = await (await fetch(`http://${METRICS}/metrics`)).text();
    const line = m.split('\n').find((l) => l.startsWith('kubebpfproxy_dataplane_mode{')) ?? '';
    expect(/mode="ipvs"\} 1$/.test(line), `the mode metric: ${JSON.stringify(line)}`);
    const others = m.split('\n').filter((l) => l.startsWith('kubebpfproxy_dataplane_mode{') && !l.includes('mode="ipvs"') && !/ 0$/.test(l));
    expect(!others.length, `another mode set: ${others.join('; ')}`);
    return `${h.trim().slice(0, 120)}; ${line}`;
  });

  await check('the ip_vs sysctls as kube-proxy sets them: conntrack, expire_nodest_conn, expire_quiescent_template 1; conn_reuse_mode left alone (6.1 >= 5.9)', async () => {
    const v = (k: string) => readFileSync(`/proc/sys/net/ipv4/vs/${k}`, 'utf8').trim();
    const got = ['conntrack', 'expire_nodest_conn', 'expire_quiescent_template', 'conn_reuse_mode'].map((k) => `${k}=${v(k)}`).join(' ');
    expect(got === 'conntrack=1 expire_nodest_conn=1 expire_quiescent_template=1 conn_reuse_mode=1', got);
    return got;
  });

  await check('ClusterIP balances over both pods (from a pod)', async () => {
    const r = await http(client, CIP, 80, 16);
    expect(new Set(r).size === 2, `one pod only: ${tally(r)}`);
    return tally(r);
  });
  await check('hairpin: a pod balanced to itself through its Service\'s ClusterIP is masqueraded (it sees the node, not its own address)', async () => {
    const a = PODS[0]!;
    const r = await http(podNs.get(a.name)!, CIP, 80, 10, '/client');
    const self = r.filter((x) => x.startsWith(`${a.name} `));
    expect(self.length > 0, `no request came back to ${a.name}: ${tally(r.map((x) => x.split(' ')[0]!))}`);
    const from = new Set(self.map(seenFrom));
    expect(!from.has(a.ip), `${a.name} saw its own address ${a.ip} on a hairpin connection: not masqueraded`);
    return `${self.length} of ${r.length} back to ${a.name}, seen from ${[...from].join(', ')}`;
  });
  await check('externalIP: its VIP on kbp-ipvs0, and the external client balances over both pods through it', async () => {
    const r = await http(ext, EXTERNAL_IP, 80, 12);
    expect(new Set(r).size === 2, `one pod only: ${tally(r)}`);
    const dummy = new DummyLink('kbp-ipvs0');
    try {
      expect((await dummy.addresses()).includes(EXTERNAL_IP), `${EXTERNAL_IP} is not on kbp-ipvs0`);
    } finally { dummy.close(); }
    const t = await table();
    expect(realServers(t, `${EXTERNAL_IP}:80`).length === 2, `virtual server ${EXTERNAL_IP}:80: ${realServers(t, `${EXTERNAL_IP}:80`).join(', ')}`);
    return tally(r);
  });
  await check('NodePort on the node address balances over both pods (from the external client)', async () => {
    const r = await http(ext, NODE_IP, NODE_PORT, 16);
    expect(new Set(r).size === 2, `one pod only: ${tally(r)}`);
    return tally(r);
  });
  await check('ClientIP affinity keeps one pod', async () => {
    const r = await http(client, AFF_IP, 80, 12);
    expect(new Set(r).size === 1, `several pods: ${tally(r)}`);
    // persistence with the Service's timeoutSeconds (kube-proxy: FlagPersistent, Timeout = StickyMaxAgeSeconds)
    const line = (await table()).split('\n').find((l) => l.startsWith(`TCP  ${AFF_IP}:80 `)) ?? '';
    expect(/ rr persistent 60$/.test(line), `not persistent 60: ${JSON.stringify(line)}`);
    return `${tally(r)}; ${line.trim()}`;
  });
  // side by side: each CLI is a node process that takes seconds to start under emulation (the
  // table's dump is started here too and checked next)
  const tableDump = Promise.all([cli(['dump', '--mode', 'ipvs', '--bpffs', PIN, '-o', 'table']), lab.runIn(node, 'ipvsadm', ['-Ln'], { timeoutMs: 60_000 })]);
  tableDump.catch(() => undefined); // awaited in its check
  await check('dump -o json equals compile -o json', async () => {
    const [d, c] = await Promise.all([
      cli(['dump', '--mode', 'ipvs', '--bpffs', PIN, '-o', 'json']),
      cli(['compile', '--manifests', dir, '--node-name', 'vm', '--node-ip', NODE_IP, '-o', 'json']),
    ]);
    expect(d.code === 0 && c.code === 0, `dump ${d.code} ${d.stderr} / compile ${c.code} ${c.stderr}`);
    expect(d.stdout === c.stdout, `dump:\n${d.stdout}\ncompile:\n${c.stdout}`);
  });
  await check('dump -o table shows what ipvsadm -Ln shows: the same virtual servers, schedulers, persistence, real servers and weights', async () => {
    const [d, a] = await tableDump;
    expect(d.code === 0 && a.code === 0, `dump ${d.code} ${d.stderr} / ipvsadm ${a.code} ${a.stderr}`);
    const ours = ipvsBlocks(d.stdout), theirs = ipvsBlocks(a.stdout);
    expect(theirs.length >= 10, `ipvsadm -Ln lists ${theirs.length} virtual servers:\n${a.stdout}`);
    expect(JSON.stringify(ours) === JSON.stringify(theirs), `dump -o table:\n${ours.join('\n')}\n--- ipvsadm -Ln:\n${theirs.join('\n')}`);
    return `${theirs.length} virtual servers alike`;
  });

  await check('refused at once: a Service without endpoints, and a VIP port no Service has (nft reject)', async () => {
    const out: string[] = [];
    for (const [host, port] of [[EMPTY_IP, 80], [CIP, 81]] as const) {
      const [r] = await lab.client(client, { proto: 'http', host, port, count: 1, timeoutMs: 8000 });
      expect(!r!.ok && r!.error === 'ECONNREFUSED', `${host}:${port}: ${JSON.stringify(r)}`);
      out.push(`${host}:${port} ${r!.error}`);
    }
    return out.join(', ');
  });
  await check('eTP=Local: external traffic to its NodePort reaches the local endpoint only (a firewall-mark virtual server), the client\'s address preserved', async () => {
    const r = await http(ext, NODE_IP, LOCAL_NODE_PORT, 8, '/client');
    const who = r.map((x) => x.split(' ')[0]!), from = new Set(r.map(seenFrom));
    expect(who.every((x) => x === PODS[0]!.name), tally(who));
    expect(from.size === 1 && from.has(EXT_IP), `the pod saw ${[...from].join(', ')}, not the client ${EXT_IP}`);
    const t = await table();
    expect(/\nFWM {2}\d+ /.test(t), `no firewall-mark virtual server:\n${t}`);
    return `${tally(who)}, source ${[...from].join(',')}`;
  });
  await check('a mark bit another program set (a CNI) is kept on every packet of an eTP=Local flow but its first (the firewall mark is set on new flows only)', async () => {
    // a stand-in CNI: bit 0x40000 on everything from the external device, before our table (a bit
    // outside our marks, 0x4b800000 | id < 2^17, and the masquerade bit); counters of pod-a's packets
    // with and without it, after IPVS
    const cni = 'kbp-vm-cni';
    await run('/usr/sbin/nft', ['-f', '-'], { input: `table inet ${cni} {
  chain pre { type filter hook prerouting priority mangle; policy accept; iifname "ext0" meta mark set meta mark | 0x40000; }
  chain post { type filter hook postrouting priority filter; policy accept;
    oifname "pod0" tcp dport 8080 meta mark & 0x40000 == 0x40000 counter
    oifname "pod0" tcp dport 8080 meta mark & 0x40000 == 0 counter
  }
}
` });
    lab.onCleanup(`nft table ${cni}`, async () => { await run('/usr/sbin/nft', ['delete', 'table', 'inet', cni], { allowFail: true }); });
    const r = await http(ext, NODE_IP, LOCAL_NODE_PORT, 4);
    const listed = (await run('/usr/sbin/nft', ['list', 'chain', 'inet', cni, 'post'])).stdout;
    await run('/usr/sbin/nft', ['delete', 'table', 'inet', cni]);
    const counts = [...listed.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
    expect(counts.length === 2, `no counters in:\n${listed}`);
    const [kept, lost] = counts as [number, number];
    expect(r.every((x) => x === PODS[0]!.name), tally(r));
    // each connection: a SYN (marked by us, 0x1 gone) and at least ACK, request, FIN after it
    expect(kept >= 3 * r.length, `only ${kept} packets kept the bit (${lost} lost it) over ${r.length} connections`);
    expect(lost <= 2 * r.length, `${lost} packets lost the bit over ${r.length} connections (first packets only, SYN retransmits allowed)`);
    return `${kept} packets kept the bit, ${lost} (the first ones) lost it, over ${r.length} connections`;
  });
  await check('eTP=Cluster external traffic to an endpoint on another node is masqueraded (the pod sees the node)', async () => {
    const r = await http(ext, NODE_IP, MASQ_NODE_PORT, 4, '/client');
    const from = new Set(r.map(seenFrom));
    expect(r.every((x) => x.startsWith(`${REMOTE_POD.name} `)), tally(r));
    expect(!from.has(EXT_IP), `the remote pod saw the client's own address ${EXT_IP}: not masqueraded`);
    return `the pod saw ${[...from].join(', ')}`;
  });
  await check('loadBalancerSourceRanges: the allowed source reaches the LB IP, another source is dropped (nft, before IPVS)', async () => {
    const ok = await lab.client(ext, { proto: 'http', host: LB_IP, port: 80, count: 4, timeoutMs: 15_000, bind: EXT_IP });
    expect(ok.every((x) => x.ok), `from ${EXT_IP}: ${JSON.stringify(ok.filter((x) => !x.ok).slice(0, 2))}`);
    const [denied] = await lab.client(ext, { proto: 'http', host: LB_IP, port: 80, count: 1, timeoutMs: 3000, bind: EXT_IP_DENIED });
    expect(!denied!.ok, `from ${EXT_IP_DENIED}: answered by ${denied!.reply?.trim()}`);
    return `${EXT_IP}: ${tally(ok.map((x) => x.reply!.trim()))}; ${EXT_IP_DENIED}: ${denied!.error}`;
  });
  await check('dual-stack ClusterIP: IPv6 balances over both pods (from a pod), and IPv4 too', async () => {
    const r6 = await http(client, DUAL_IP6, 80, 12);
    expect(new Set(r6).size === 2, `IPv6, one pod only: ${tally(r6)}`);
    const r4 = await http(client, DUAL_IP, 80, 8);
    expect(new Set(r4).size === 2, `IPv4, one pod only: ${tally(r4)}`);
    const t = await table();
    expect(t.includes(`[${DUAL_IP6}]:80`), `no IPv6 virtual server:\n${t}`);
    return `v6 ${tally(r6)}; v4 ${tally(r4)}`;
  });
  await check('SCTP ClusterIP: real SCTP associations (socat) balance over both pods', async () => {
    const seen: string[] = [];
    const end = Date.now() + 60_000;
    // the servers may still be starting: retry until both answered, bounded
    while (Date.now() < end && (seen.length < 4 || new Set(seen).size < 2) && seen.length < 20) {
      const r = await lab.runIn(client, 'socat', ['-u', '-T', '5', `SCTP:${SCTP_IP}:${SCTP_PORT}`, 'STDOUT'], { timeoutMs: 20_000 });
      if (r.code === 0 && r.stdout.trim()) seen.push(r.stdout.trim());
      else await sleep(1000);
    }
    expect(new Set(seen).size === 2, `answers: ${tally(seen) || 'none'}`);
    return tally(seen);
  });

  // graceful removal: a connection to pod-b stays open while pod-b leaves the slice
  await check('a removed TCP backend drains: weight 0 while its connection is open, no new connection, deleted once it ends', async () => {
    const holder = lab.spawn(client, process.execPath, ['-e', `const s=require('node:net').connect(80,'${CIP}');let seen='';
s.on('data',(d)=>{seen+=d;if(seen.includes('\\r\\n\\r\\n')&&!seen.done){seen.done=1;}});
s.on('connect',()=>{console.log('connected '+s.localPort)});process.on('SIGTERM',()=>{s.destroy();process.exit(0)});setTimeout(()=>process.exit(0),120000);`], { what: 'tcp holder' });
    // which pod holds it: IPVS counts an active connection there
    const t0 = await until('the held connection shows in IPVS', 60_000, async () => {
      const t = await table();
      return /\n {2}-> \S+\s+Masq\s+\d+\s+[1-9]/.test(t) ? t : undefined;
    });
    const heldLine = t0.split('\n').find((l) => /^ {2}-> \S+\s+Masq\s+\d+\s+[1-9]/.test(l))!;
    const heldIp = heldLine.trim().split(/\s+/)[1]!.split(':')[0]!;
    const keep = PODS.find((p) => p.ip !== heldIp)!;
    webNow = [keep.ip];
    manifests(dir, webNow, PODS.map((p) => p.ip));
    const drained = await until('the held backend goes to weight 0', 60_000, async () => {
      const rs = realServers(await table(), `${CIP}:80`);
      return rs.includes(`${heldIp}:8080 0`) ? rs : undefined;
    });
    const drainedAt = Date.now();
    // kept while its connection is open: two housekeeping ticks (1 s each) find it draining and
    // leave it, unless the bound itself has passed meanwhile (a loaded host), where deleting it is right
    await sleep(2500);
    const boundPassed = Date.now() - drainedAt > (DRAIN_S - 2) * 1000;
    expect(boundPassed || realServers(await table(), `${CIP}:80`).includes(`${heldIp}:8080 0`), 'deleted while its connection was still open');
    const r = await http(client, CIP, 80, 12);
    expect(r.every((x) => x === keep.name), `new connections reached the draining pod: ${tally(r)}`);
    holder.child.kill('SIGTERM');
    await holder.exited;
    await until(`the drained backend is deleted (connection ended or the ${DRAIN_S} s bound)`, 60_000, async () => {
      const rs = realServers(await table(), `${CIP}:80`);
      return rs.length === 1 && rs[0] === `${keep.ip}:8080 1` ? true : undefined;
    });
    const r2 = await http(client, CIP, 80, 8);
    expect(r2.every((x) => x === keep.name), `after deletion: ${tally(r2)}`);
    return `drained ${drained.join(', ')}; new: ${tally(r)}`;
  });

  await check('a removed UDP backend: the same flow moves to the other pod at once', async () => {
    const flow = lab.spawn(client, process.execPath, ['-e', UDP_FLOW], { what: 'udp flow' });
    const first = await until('the flow gets replies', 60_000, async () => /reply (\S+)/.exec(flow.output())?.[1]);
    const other = PODS.find((p) => p.name !== first)!;
    manifests(dir, webNow, [other.ip]);
    await until('the UDP real server is deleted', 60_000, async () => (realServers(await table(), `${UDP_IP}:53`).length === 1 ? true : undefined));
    const mark = flow.output().length;
    const moved = await until('replies from the other pod on the same flow', 15_000, async () => {
      const later = flow.output().slice(mark);
      return later.includes(`reply ${other.name}`) ? later : undefined;
    });
    await sleep(1500);
    const tail = flow.output().slice(mark);
    const lastFirst = tail.lastIndexOf(`reply ${first}`), firstOther = tail.indexOf(`reply ${other.name}`);
    flow.child.kill('SIGTERM');
    await flow.exited;
    expect(lastFirst < firstOther, `the removed pod answered after the other had: ${tail.slice(0, 400)}`);
    return `${first} -> ${other.name}; ${moved.split('\n').filter(Boolean).length} replies after the change`;
  });

  await check('a removed SCTP backend is deleted at once, as UDP (kube-proxy\'s IsRsGracefulTerminationNeeded: false for SCTP)', async () => {
    // associations to pod-b just before it leaves: IPVS holds their entries (CLOSED, 10 s), so a
    // drain would keep it at weight 0 while they count; bounded, at most 8 tries
    let toB = 0;
    for (let i = 0; i < 8 && !toB; i++) {
      const r = await lab.runIn(client, 'socat', ['-u', '-T', '5', `SCTP:${SCTP_IP}:${SCTP_PORT}`, 'STDOUT'], { timeoutMs: 20_000 });
      if (r.stdout.trim() === PODS[1]!.name) toB++;
    }
    expect(toB > 0, 'no association reached pod-b');
    extraManifests(dir, [PODS[0]!.ip]);
    // the first change IPVS shows: deleted (ours), or weight 0 (a drain, as for TCP)
    const rs = await until('the SCTP real servers change', 60_000, async () => {
      const x = realServers(await table(), `${SCTP_IP}:${SCTP_PORT}`);
      return x.length !== 2 || x.some((r) => r.endsWith(' 0')) ? x : undefined;
    });
    expect(rs.length === 1 && rs[0] === `${PODS[0]!.ip}:${SCTP_PORT} 1`, `real servers: ${rs.join(', ')}`);
    return rs.join(', ');
  });

  await check('the periodic resync puts the kernel right: a stray virtual server and a stray VIP go, a real server and a VIP deleted by hand come back', async () => {
    const stray: VirtualServer = { address: CIP, protocol: 'TCP', port: 9999, scheduler: 'rr', flags: 0, timeout: 0 };
    const c = await IpvsClient.open();
    const dummy = new DummyLink('kbp-ipvs0');
    try {
      const failed = await c.run([ipvsOps.addService(stray), ipvsOps.delDest({ address: AFF_IP, protocol: 'TCP', port: 80 }, { address: PODS[1]!.ip, port: 8080 })]);
      expect(!failed.length, `writing the strays: ${failed.map((f) => f.message).join('; ')}`);
      await dummy.set(['10.96.0.99'], [UDP_IP]);
      const fixed = await until('the resync (every 6 housekeeping ticks of 1 s)', 90_000, async () => {
        const t = await table();
        const vips = new Set(await dummy.addresses());
        return !t.includes(`${CIP}:9999`) && realServers(t, `${AFF_IP}:80`).length === 2 && vips.has(UDP_IP) && !vips.has('10.96.0.99') ? true : undefined;
      });
      return fixed ? 'stray virtual server and address gone, real server and VIP back' : '';
    } finally {
      await c.run([ipvsOps.delService(stray)]).catch(() => undefined);
      c.close();
      dummy.close();
    }
  });

  await check('a Service removed: its virtual server goes and its VIP leaves kbp-ipvs0; the others stay', async () => {
    extraManifests(dir, null); // null: no SCTP Service (undefined would take the default)
    const dummy = new DummyLink('kbp-ipvs0');
    try {
      let last = '';
      const vips = await until('the SCTP Service gone', 90_000, async () => {
        const t = await table();
        const v = await dummy.addresses();
        last = `virtual server ${t.includes(`${SCTP_IP}:${SCTP_PORT}`) ? 'still there' : 'gone'}, VIP ${v.includes(SCTP_IP) ? 'still there' : 'gone'}`;
        return !t.includes(`${SCTP_IP}:${SCTP_PORT}`) && !v.includes(SCTP_IP) ? v : undefined;
      }).catch((e: Error) => { throw new Error(`${e.message}: ${last}\nagent:\n${agent.output().slice(-2500)}`); });
      expect([CIP, AFF_IP, UDP_IP, DUAL_IP, DUAL_IP6, LB_IP].every((a) => vips.includes(a)), `VIPs left: ${vips.join(' ')}`);
      return `${vips.length} VIPs left`;
    } finally {
      dummy.close();
    }
  });

  agent.child.kill('SIGTERM');
  await agent.exited;
  // a long drain bound here: the check looks at new connections while the leaving pod drains
  agent = startAgent('ipvs', {}, ['--ipvs-scheduler', 'mh', '--ipvs-drain-timeout', '300s']);
  await check('--ipvs-scheduler mh (source address and port hashed): the same client goes to the same pod; while a leaving pod drains (weight 0), its clients go elsewhere (mh-fallback) and the others\' stay', async () => {
    await waitRunning(agent);
    await until('the virtual servers use mh', 90_000, async () => {
      const t = await table();
      const line = t.split('\n').find((l) => l.startsWith(`TCP  ${MH_IP}:80 `)) ?? '';
      return / mh\b/.test(line) && realServers(t, `${MH_IP}:80`).length === 3 ? true : undefined;
    });
    const ports = Array.from({ length: 24 }, (_, i) => 41000 + i);
    const r1 = await mhRound(ports);
    const r2 = await mhRound(ports);
    const moved12 = ports.filter((p) => r1.get(p) !== r2.get(p));
    expect(!moved12.length, `the same source went elsewhere the second time: ${moved12.map((p) => `${p}: ${r1.get(p)} -> ${r2.get(p)}`).join(', ')}`);
    const onR = ports.filter((p) => r1.get(p) === REMOTE_POD.name);
    expect(new Set(r1.values()).size >= 2 && onR.length >= 2, `spread: ${tally([...r1.values()])}`);
    // one of pod-r's clients keeps a connection open, so pod-r drains (weight 0) instead of going
    const holdPort = onR[0]!;
    const holder = lab.spawn(client, process.execPath, ['-e', `const s=require('node:net').connect({host:'${MH_IP}',port:80,localAddress:'10.244.1.9',localPort:${holdPort}});
s.on('connect',()=>console.log('connected'));s.on('error',(e)=>console.log('error '+e.code));process.on('SIGTERM',()=>{s.resetAndDestroy();process.exit(0)});setTimeout(()=>process.exit(0),300000);`], { what: 'mh holder' });
    try {
      await until('the held connection to pod-r', 60_000, async () => {
        if (holder.output().includes('error ')) throw new Error(holder.output());
        const rs = realServers(await table(), `${MH_IP}:80`);
        return holder.output().includes('connected') && rs.length === 3 ? true : undefined;
      });
      extraManifests(dir, null, PODS.map((p) => p.ip));
      await until('pod-r drains (weight 0)', 60_000, async () => (realServers(await table(), `${MH_IP}:80`).includes(`${REMOTE_POD.ip}:8080 0`) ? true : undefined));
      const rest = ports.filter((p) => p !== holdPort);
      const r3 = await mhRound(rest);
      const draining = realServers(await table(), `${MH_IP}:80`).includes(`${REMOTE_POD.ip}:8080 0`);
      expect(draining, 'pod-r was deleted during the round: the round did not see it draining');
      const movedStay = rest.filter((p) => r1.get(p) !== REMOTE_POD.name && r3.get(p) !== r1.get(p));
      expect(!movedStay.length, `clients of the pods that stayed moved: ${movedStay.map((p) => `${p}: ${r1.get(p)} -> ${r3.get(p)}`).join(', ')}`);
      expect(rest.every((p) => r3.get(p) !== REMOTE_POD.name), `a new connection reached the draining ${REMOTE_POD.name}`);
      return `${tally([...r1.values()])}; while ${REMOTE_POD.name} drains: ${tally([...r3.values()])}, ${onR.length - 1} of its clients served elsewhere`;
    } finally {
      holder.child.kill('SIGTERM');
      await holder.exited;
    }
  });
  agent.child.kill('SIGTERM');
  await agent.exited;
  await check('cleanup without the state file (lost /run) removes the virtual servers, NodePorts on node addresses too, the dummy device and the nftables table, and leaves another\'s virtual server', async () => {
    // someone else's virtual server on a node address, outside the node-port range: left alone
    const foreign: VirtualServer = { address: NODE_IP, protocol: 'TCP', port: 8081, scheduler: 'rr', flags: 0, timeout: 0 };
    const c = await IpvsClient.open();
    try {
      const failed = await c.run([ipvsOps.addService(foreign)]);
      expect(!failed.length, `adding a foreign virtual server: ${failed[0]?.message}`);
    } finally { c.close(); }
    rmSync(ipvsStatePath(PIN), { force: true });
    const r = await cli(['cleanup', '--mode', 'ipvs', '--bpffs', PIN]);
    expect(r.code === 0, `cleanup exited ${r.code}: ${r.stderr}`);
    const left = (await table()).split('\n').filter((l) => /^(TCP|UDP|SCTP|FWM) /.test(l));
    const c2 = await IpvsClient.open();
    try { await c2.run([ipvsOps.delService(foreign)]); } finally { c2.close(); }
    expect(left.length === 1 && left[0]!.startsWith(`TCP  ${NODE_IP}:8081 `), `virtual servers left: ${left.join(' | ')}`);
    const links = await lab.ip(node, ['-o', 'link', 'show']);
    expect(!links.stdout.includes('kbp-ipvs0'), 'kbp-ipvs0 is still there');
    const nft = await lab.exec(node, '/usr/sbin/nft', ['list', 'tables'], { allowFail: true });
    expect(!nft.stdout.includes('kube-bpf-proxy-ipvs'), `table left: ${nft.stdout}`);
    const d = await cli(['dump', '--mode', 'ipvs', '--bpffs', PIN]);
    expect(d.code === 0 && !/\n(TCP|UDP|SCTP|FWM) /.test(d.stdout), `virtual servers left: ${d.stdout}${d.stderr}`);
    return r.stdout.trim();
  });
}

// under the VM's watchdog (KBP_VM_TIMEOUT, default 900 s, boot included: kbp.timeout=), less 120 s
// for boot and cleanup; a loaded host (load 30+) slows the emulated guest ~5x
const watchdogS = Number(/\bkbp\.timeout=(\d+)/.exec(readFileSync('/proc/cmdline', 'utf8'))?.[1] ?? 900);
const boundS = Math.max(300, watchdogS - 120);
const timer = setTimeout(() => {
  fail++;
  console.log(`not ok ${++n} - ipvs: the whole run took over ${boundS} s\n# pass ${pass}\n# fail ${fail}`);
  void lab.cleanup().finally(() => process.exit(1));
}, boundS * 1000);
try {
  await main();
} catch (e) {
  fail++;
  console.log(`not ok ${++n} - ipvs: setup or a step outside the checks failed\n  ${(e as Error).stack}`);
} finally {
  clearTimeout(timer);
  await lab.cleanup().catch((e: Error) => log(`cleanup: ${e.message}`));
}
console.log(`# pass ${pass}\n# fail ${fail}`);
process.exit(fail ? 1 : 0);
