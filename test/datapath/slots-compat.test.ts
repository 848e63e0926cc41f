// Upgrade and downgrade across the change that took lb_slots off the first sync (docs/perf-log.md,
// session 22): real agents, this build's and an earlier commit's (testing/old-agent.ts), one after
// the other over the same pins, in a network namespace of their own (a veth pair), from one
// manifests folder. lb_members is what the programs check every conntrack and affinity hit
// against (a pair missing resets the flow's next packet): polled from outside while each agent
// starts, it must never lose a pair.
// - upgrade: the earlier agent's pins (lb_slots written with its apply) taken over by this build's:
//   every pair kept, nothing rewritten (its first sync writes no op: lists and ids read back from
//   lb_members), dump equal to compile.
// - downgrade: this build's agent stopped gracefully (SIGTERM) right after its first sync, whose
//   lists went to lb_slots after it; the earlier agent, which makes lb_members exactly lb_slots'
//   pairs at its start, keeps every pair.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import * as L from '../../src/dataplane/bpf/layout.js';
import { BpfMap } from '../../src/dataplane/bpf/native/map.js';
import { oldAgentCli, OLD_AGENT_COMMIT } from '../../testing/old-agent.js';
import { isRoot, repoRoot } from './fixtures/util.js';
import { agentsInNetns, agentTestDirs, spawnAgent, stopAgent, writeServices, type NetnsAgent } from './fixtures/netns-agent.js';

const CLI = join(repoRoot, 'bin', 'kube-bpf-proxy.js');
const NS = `kbpslots${process.pid % 100000}`;
const NODE_IP = '192.168.77.1';
/** Services x endpoints: 6,000 slots, above the 4,096 from which a first sync leaves lb_slots to a write after it */
const SERVICES = 600, ENDPOINTS = 10;

function manifests(dir: string): void {
  writeServices(dir, SERVICES, (i) => `10.96.${i >> 7}.${(i & 127) + 1}`,
    (i) => Array.from({ length: ENDPOINTS }, (_, j) => `10.244.${(i * ENDPOINTS + j) >> 8 & 255}.${((i * ENDPOINTS + j) & 255)}`));
}

type Agent = NetnsAgent;

function startAgent(cli: string, pinRoot: string, dir: string): Agent {
  return spawnAgent(NS, cli, ['run', '--manifests', dir, '--node-name', 'n1', '--node-ip', NODE_IP, '--devices', 'eth0', '--bpffs', pinRoot,
    '--socket-lb', 'false', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249']);
}

/** Resolves with the first log line of the agent's first full sync (its JSON), polling lb_members meanwhile. */
async function firstSync(a: Agent, pinRoot: string, timeoutMs = 180_000): Promise<{ sync: Record<string, unknown>; leastPairs: number; polls: number }> {
  const deadline = Date.now() + timeoutMs;
  let leastPairs = Infinity, polls = 0;
  for (;;) {
    const line = a.log().split('\n').find((l) => l.includes('"msg":"sync steps"') && l.includes('"full":true'));
    if (line) return { sync: JSON.parse(line) as Record<string, unknown>, leastPairs, polls };
    if (a.child.exitCode !== null || a.child.signalCode !== null) throw new Error(`agent exited before its first sync: ${a.log().slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`no first sync within ${timeoutMs} ms: ${a.log().slice(-2000)}`);
    const n = pairCount(pinRoot);
    if (n !== undefined) {
      leastPairs = Math.min(leastPairs, n);
      polls++;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** lb_members' pairs now (the pin reopened each time: an agent may replace the map); undefined before it is pinned */
function pairCount(pinRoot: string): number | undefined {
  let m: BpfMap;
  try {
    m = BpfMap.fromPin(join(pinRoot, 'lb_members'));
  } catch {
    return undefined;
  }
  try {
    return m.count();
  } finally {
    m.close();
  }
}

function pairs(pinRoot: string): string[] {
  const m = BpfMap.fromPin(join(pinRoot, 'lb_members'));
  try {
    const out: string[] = [];
    m.scan((k) => { const p = L.decodeMemberKey(k); out.push(`${p.feId}/${p.backendId}`); });
    return out.sort();
  } finally {
    m.close();
  }
}

/** lb_slots as each frontend's list: "feId:id,id,..." (slots in order) */
function slotLists(pinRoot: string): string[] {
  const m = BpfMap.fromPin(join(pinRoot, 'lb_slots'));
  const lists = new Map<number, number[]>();
  try {
    m.scan((k, v) => {
      const s = L.decodeSlotKey(k);
      let l = lists.get(s.feId);
      if (!l) lists.set(s.feId, l = []);
      l[s.slot] = L.decodeU32(v);
    });
  } finally {
    m.close();
  }
  return [...lists].map(([fe, l]) => `${fe}:${l.join(',')}`).sort();
}

function pairsOfLists(lists: string[]): string[] {
  return lists.flatMap((x) => { const [fe, ids] = x.split(':'); return ids!.split(',').map((id) => `${fe}/${id}`); }).sort();
}

const stop = stopAgent;

function cliJson(cmd: 'dump' | 'compile', pinRoot: string, dir: string): string {
  const args = cmd === 'dump' ? ['dump', '-o', 'json', '--bpffs', pinRoot] : ['compile', '--manifests', dir, '--node-name', 'n1', '--node-ip', NODE_IP, '-o', 'json'];
  return execFileSync('/usr/bin/nsenter', [`--net=/var/run/netns/${NS}`, process.execPath, CLI, ...args], { encoding: 'utf8', env: { ...process.env, KBP_FROM_SOURCE: '1' }, maxBuffer: 64 << 20 });
}

if (!isRoot) {
  test('slots-compat tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  const agents = agentsInNetns(test, NS, NODE_IP);

  const setup = (t: ExecutionContext) => agentTestDirs(t, 'kbp-slots-', manifests);

  test.serial('upgrade: the earlier agent\'s pins taken over without a pair of lb_members lost or a write', async (t) => {
    t.timeout(600_000);
    const old = oldAgentCli();
    if (!old) return t.pass(`skipped: commit ${OLD_AGENT_COMMIT} is not in this checkout's history`);
    const { pinRoot, dir } = setup(t);
    const a = startAgent(old, pinRoot, dir);
    agents.push(a);
    await firstSync(a, pinRoot);
    await stop(a);
    const before = pairs(pinRoot);
    t.is(before.length, SERVICES * ENDPOINTS);
    t.deepEqual(pairsOfLists(slotLists(pinRoot)), before, 'the earlier agent wrote lb_slots');
    const ours = startAgent(CLI, pinRoot, dir);
    agents.push(ours);
    const s = await firstSync(ours, pinRoot);
    t.true(s.polls > 0, 'lb_members polled while the agent started');
    t.is(s.leastPairs, before.length, 'no pair of lb_members lost while the agent started');
    t.is(s.sync.ops, 0, 'nothing rewritten: every list and id read back from lb_members');
    t.deepEqual(pairs(pinRoot), before);
    t.is(cliJson('dump', pinRoot, dir), cliJson('compile', pinRoot, dir), 'dump -o json equals compile -o json');
    await stop(ours);
    t.is(await ours.exited, 0, ours.log().slice(-2000));
  });

  test.serial('downgrade: after a graceful stop, the earlier agent keeps every pair of lb_members', async (t) => {
    t.timeout(600_000);
    const old = oldAgentCli();
    if (!old) return t.pass(`skipped: commit ${OLD_AGENT_COMMIT} is not in this checkout's history`);
    const { pinRoot, dir } = setup(t);
    const ours = startAgent(CLI, pinRoot, dir);
    agents.push(ours);
    await firstSync(ours, pinRoot);
    // at once: the write of lb_slots after the sync may not have ended; the stop completes it
    await stop(ours);
    t.is(await ours.exited, 0, ours.log().slice(-2000));
    t.regex(ours.log(), /"msg":"lb_slots written/, 'lb_slots written after the first sync or at the stop');
    const before = pairs(pinRoot);
    t.is(before.length, SERVICES * ENDPOINTS);
    t.deepEqual(pairsOfLists(slotLists(pinRoot)), before, 'lb_slots holds every pair of lb_members');
    const a = startAgent(old, pinRoot, dir);
    agents.push(a);
    const s = await firstSync(a, pinRoot);
    t.true(s.polls > 0, 'lb_members polled while the earlier agent started');
    t.is(s.leastPairs, before.length, 'no pair of lb_members lost while the earlier agent started');
    t.notRegex(a.log(), /"removed":[1-9]/, 'the earlier agent removed no pair at its start');
    t.deepEqual(pairs(pinRoot), before);
    await stop(a);
  });
}
