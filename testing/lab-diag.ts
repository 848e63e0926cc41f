// What a failed lab request leaves behind, for its test's message: each node's datapath counters
// that tell of a lost or refused packet (kubebpfproxy_datapath_events_total, by reason), its sync
// count and last sync time, the frontend entries of the request's port and the conntrack entries
// of the client (lb_ct, lb_ct_syn; the newest), the kernel's conntrack entries of the client, and the agent's last log lines.
// Gathered only after a failure (a few short processes per node); every part that cannot be read
// says why instead of failing the test in another way.
import * as L from '../src/dataplane/bpf/layout.js';
import { run, type LabProcess, type Netns } from './netns.js';

export interface DiagNode {
  name: string;
  ns: Netns;
  pinRoot: string;
  agent?: LabProcess;
}

export interface DiagTarget {
  /** the URL that failed (its host and port pick the frontends and flows shown) */
  url: string;
  /** the client's addresses (flows from them are shown) */
  client: string[];
}

/** counters whose growth means a packet was dropped, refused, reset or left untranslated */
const LOSS = /^(drop_|reject_|reset_|pass_|sock_reject|ct_full|ct_backend_gone|ct_expired|host_no)/;
const BPFTOOL = '/usr/sbin/bpftool';
const CURL = '/usr/bin/curl';

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  return { host, port };
}

async function metrics(n: DiagNode): Promise<string> {
  const r = await run('nsenter', [`--net=${n.ns.path}`, CURL, '-s', '--max-time', '2', 'http://127.0.0.1:10249/metrics'], { allowFail: true, timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout : '';
}

function counters(text: string): string {
  const out: string[] = [];
  for (const m of text.matchAll(/^kubebpfproxy_datapath_events_total\{reason="([^"]+)"\} (\d+)$/gm)) {
    if (LOSS.test(m[1]!) && m[2] !== '0') out.push(`${m[1]}=${m[2]}`);
  }
  const syncs = /^kubeproxy_sync_proxy_rules_duration_seconds_count(?:\{[^}]*\})? (\S+)/m.exec(text)?.[1];
  const last = Number(/^kubeproxy_sync_proxy_rules_last_timestamp_seconds (\S+)/m.exec(text)?.[1] ?? NaN);
  const ago = Number.isFinite(last) ? `${Math.round(Date.now() - last * 1000)} ms ago` : '?';
  return `loss counters: ${out.join(' ') || 'none'}; syncs ${syncs ?? '?'}, last ${ago}`;
}

async function dumpMap(n: DiagNode, map: string): Promise<Array<{ key: Buffer; value: Buffer }>> {
  const r = await run(BPFTOOL, ['-j', 'map', 'dump', 'pinned', `${n.pinRoot}/${map}`], { allowFail: true, timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`bpftool map dump ${map}: ${r.stderr.trim().slice(0, 200)}`);
  const hex = (a: string[]): Buffer => Buffer.from(a.map((x) => parseInt(x, 16)));
  return (JSON.parse(r.stdout) as Array<{ key: string[]; value: string[] }>).map((e) => ({ key: hex(e.key), value: hex(e.value) }));
}

async function frontends(n: DiagNode, host: string, port: number): Promise<string> {
  const rows: string[] = [];
  let others = 0;
  for (const e of await dumpMap(n, 'lb_frontends')) {
    const k = L.decodeFeKey(e.key);
    if (k.port !== port) continue;
    if (k.address !== host && k.address !== '0.0.0.0' && k.address !== '::') { others++; continue; }
    const v = L.decodeFrontend(e.value);
    rows.push(`${k.address}:${k.port}/${k.protocol} ${k.scope} id ${v.feId} backends ${v.backendCount} m ${v.maglevM} flags 0x${v.flags.toString(16)}`);
  }
  return `${rows.length ? rows.join('; ') : `none for ${host}:${port}`} (${others} on other addresses)`;
}

async function flows(n: DiagNode, t: DiagTarget): Promise<string[]> {
  const now = process.hrtime.bigint(); // CLOCK_MONOTONIC, as bpf_ktime_get_coarse_ns
  const rows: Array<{ age: bigint; line: string }> = [];
  for (const map of ['lb_ct_syn', 'lb_ct'] as const) {
    for (const e of await dumpMap(n, map)) {
      const k = L.decodeCtKey(e.key);
      const v = L.decodeCtEntry(e.value);
      // every entry of the client: a reverse entry of another frontend's flow on the same client
      // port (lb_ct_clash) is as telling as the flow's own
      if (!t.client.includes(k.saddr) && !t.client.includes(k.daddr)) continue;
      const age = now - v.lastSeen;
      rows.push({ age, line: `${map} ${k.dir === 0 ? 'fwd' : 'rev'} ${k.saddr}:${k.sport}>${k.daddr}:${k.dport} fe ${v.feId} be ${v.backendId} flags 0x${v.flags.toString(16)} ${Number(age / 1_000_000n)} ms ago` });
    }
  }
  rows.sort((a, b) => (a.age < b.age ? -1 : 1));
  return rows.slice(0, 12).map((r) => r.line);
}

/** The kernel's conntrack entries (nf_conntrack, the masquerade's) whose original source is the client. */
async function kernelFlows(n: DiagNode, t: DiagTarget): Promise<string[]> {
  const out: string[] = [];
  for (const a of t.client) {
    const r = await run('nsenter', [`--net=${n.ns.path}`, '/usr/sbin/conntrack', '-L', '-s', a], { allowFail: true, timeoutMs: 10_000 });
    out.push(...r.stdout.split('\n').filter((l) => l.trim()).map((l) => l.replace(/\s+/g, ' ')));
  }
  return out.length ? out.slice(-12) : ['none'];
}

/** The agent's last log lines (the lab runs it with `-v 2`: one "sync steps" line per sync). */
function agentTail(n: DiagNode, lines = 8): string[] {
  if (!n.agent) return ['no agent'];
  return n.agent.output().trimEnd().split('\n').slice(-lines).map((l) => {
    try {
      const { level: _l, time, component: _c, msg, ...rest } = JSON.parse(l) as Record<string, unknown>;
      return `${Date.now() - Number(time)} ms ago: ${String(msg)} ${JSON.stringify(rest)}`.slice(0, 300);
    } catch {
      return l.slice(0, 300);
    }
  });
}

/** A multi-line report of every node's state for a request that failed; never throws. */
export async function explainFailure(nodes: DiagNode[], t: DiagTarget): Promise<string> {
  const { host, port } = hostPort(t.url);
  const out = [`-- data plane at ${new Date().toISOString()} for ${t.url} from ${t.client.join(', ')}`];
  for (const n of nodes) {
    const part = async (what: string, f: () => Promise<string | string[]>): Promise<void> => {
      try {
        const r = await f();
        for (const l of Array.isArray(r) ? r : [r]) out.push(`${n.name} ${what}: ${l}`);
      } catch (e) {
        out.push(`${n.name} ${what}: unreadable (${(e as Error).message})`);
      }
    };
    await part('metrics', async () => counters(await metrics(n)));
    await part('frontends', () => frontends(n, host, port));
    await part('flows', async () => { const f = await flows(n, t); return f.length ? f : ['none']; });
    await part('nf_conntrack', () => kernelFlows(n, t));
    await part('agent', async () => agentTail(n));
  }
  return out.join('\n');
}
