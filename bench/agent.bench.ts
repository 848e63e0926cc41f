// Agent memory (DESIGN.md "Performance targets": agent memory (RSS) at 10,000 Services): the real
// agent (`run --manifests`, the built bundle when there is one) in a network namespace of its own,
// over a manifests folder of N Services x 10 endpoints; RSS once it has synced, against the same agent
// with no Service in the same run. Also the time from start to the first sync.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Lab } from '../testing/netns.js';
import { endpointSlice, node, service, NODE_NAME, NODE_IP } from './gen.js';
import { defineBench, type BenchContext } from './lib.js';
import { CLI } from '../lab/cluster.js';

function writeCluster(dir: string, n: number): void {
  const shape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
  const docs: string[] = [stringify(node())];
  for (let i = 0; i < n; i++) docs.push(stringify(service(i, shape)), stringify(endpointSlice(i, shape)));
  writeFileSync(join(dir, 'cluster.yaml'), docs.join('---\n'));
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function measure(ctx: BenchContext, lab: Lab, n: number): Promise<{ rss: number; syncMs: number }> {
  const ns = await lab.addNetns(`a${n}`);
  await lab.ip(ns, ['link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1']);
  await lab.ip(ns, ['link', 'set', 'e0', 'up']);
  await lab.ip(ns, ['link', 'set', 'e1', 'up']);
  await lab.addAddress(ns, 'e0', `${NODE_IP}/24`);
  const dir = mkdtempSync(join(tmpdir(), `${lab.prefix}m${n}-`));
  lab.onCleanup(`manifests ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  writeCluster(dir, n);
  const pins = lab.addPinRoot(`p${n}`);
  lab.onCleanup(`cleanup ${pins}`, async () => { await lab.exec(ns, process.execPath, [CLI, 'cleanup', '--bpffs', pins], { allowFail: true }); });
  const started = Date.now();
  const agent = lab.spawn(ns, process.execPath, [CLI, 'run', '--manifests', dir, '--node-name', NODE_NAME, '--node-ip', NODE_IP,
    '--bpffs', pins, '--socket-lb', 'false', '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249'], { what: `agent ${n}` });
  const deadline = Date.now() + 300_000;
  for (;;) {
    if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.output().slice(-1000)}`);
    const m = await lab.exec(ns, 'curl', ['-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics'], { allowFail: true });
    const frontends = Number(/^kubebpfproxy_frontends (\d+)/m.exec(m.stdout)?.[1] ?? -1);
    if (/^kubeproxy_sync_proxy_rules_last_timestamp_seconds [1-9]/m.test(m.stdout) && frontends >= n) break;
    if (Date.now() > deadline) throw new Error(`agent with ${n} Services: no sync within 300 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const syncMs = Date.now() - started;
  // let the first sync's garbage go; the agent keeps serving
  await new Promise((r) => setTimeout(r, 3000));
  const rss = rssMiB(agent.pid);
  ctx.log(`${n} Services: RSS ${rss.toFixed(0)} MiB, first sync ${syncMs} ms after start`);
  agent.child.kill('SIGTERM');
  await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 5000))]);
  return { rss, syncMs };
}

export default defineBench({
  name: 'agent',
  title: 'Agent memory (RSS) and start-up at N Services',
  description: 'The real agent (run --manifests, the bundle when built) in a network namespace of its own, over a manifests folder of N Services x 10 ready endpoints (every 10th a NodePort), the BPF data plane loaded and synced. RSS is read from /proc once the first sync is in the metrics and 3 s have passed; the baseline is the same agent with no Service, in the same run.',
  async run(ctx) {
    const lab = new Lab('agentrss');
    try {
      const sizes = ctx.quick ? [0, 1000] : [0, 1000, 10_000];
      const res = new Map<number, { rss: number; syncMs: number }>();
      for (const n of sizes) res.set(n, await measure(ctx, lab, n));
      const base = res.get(0)!;
      ctx.metric({ name: 'rss 0', value: base.rss, unit: 'MiB', better: 'lower', note: 'no Service: node, libraries, addon, maps opened' });
      for (const n of sizes.filter((x) => x > 0)) {
        const r = res.get(n)!;
        ctx.metric({ name: `rss ${n}`, value: r.rss, unit: 'MiB', baseline: 'rss 0', better: 'lower' });
        ctx.metric({ name: `first sync ${n}`, value: r.syncMs, unit: 'ms', better: 'lower', note: 'from process start: parse the YAML, compile, plan, load and write the maps' });
      }
      ctx.figure({
        id: 'rss', kind: 'line', title: 'Agent RSS after the first sync',
        x: { label: 'Services (x10 endpoints)' }, y: { label: 'MiB', min: 0 },
        series: [{ name: 'RSS', points: sizes.map((n) => [n, res.get(n)!.rss]) }],
      });
    } finally {
      await lab.cleanup();
    }
  },
});
