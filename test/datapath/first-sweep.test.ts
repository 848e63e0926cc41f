// The conntrack sweep's first pass on a fresh start and on a restart (issue 10: the first sync at
// 10,000 Services). Maps a load made are empty and their filters (lb_rev_filter, lb_ct_filter) all
// zero and off: the first pass there runs after the first sync (it ran at init's end, inside the
// first sync's plan), zeroes neither filter half (it zeroed one of each, 16,384 words and their keys
// built on the main thread) and switches both filters on. An earlier agent's pins are swept at once
// and their halves zeroed as before: what they hold is not known. Real agents from the sources, in
// a network namespace of their own (a veth pair), over one pin root; when the pass began (against
// the sync's endedAt) and whether it zeroed are read from their debug log lines.
import test from 'ava';
import { join } from 'node:path';
import * as L from '../../src/dataplane/bpf/layout.js';
import { BpfMap } from '../../src/dataplane/bpf/native/map.js';
import { isRoot, repoRoot } from './fixtures/util.js';
import { agentsInNetns, agentTestDirs, spawnAgent, stopAgent, writeServices, type NetnsAgent } from './fixtures/netns-agent.js';

const CLI = join(repoRoot, 'bin', 'kube-bpf-proxy.js');
const NS = `kbpsweep${process.pid % 100000}`;
const NODE_IP = '192.168.78.1';

/** enough Services that the first sync outlasts a pass over empty maps begun at init's end (the old order) */
const SERVICES = 600;

function manifests(dir: string): void {
  writeServices(dir, SERVICES, (i) => `10.96.${9 + (i >> 8)}.${(i & 255) + 1}`, (i) => [`10.244.${9 + (i >> 8)}.${(i & 255) + 1}`]);
}

type Agent = NetnsAgent;

function startAgent(pinRoot: string, dir: string): Agent {
  return spawnAgent(NS, CLI, ['run', '--manifests', dir, '--node-name', 'n1', '--node-ip', NODE_IP, '--devices', 'eth0', '--bpffs', pinRoot,
    '--socket-lb', 'false', '--healthz-bind-address', '', '--metrics-bind-address', '', '--v', '2']);
}

const FULL_SYNC = (l: Record<string, unknown>) => l.msg === 'sync steps' && l.full === true;
const REV = (l: Record<string, unknown>) => l.msg === 'reply filter (lb_rev_filter) rebuilt';
const CT = (l: Record<string, unknown>) => l.msg === 'conntrack filter (lb_ct_filter) rebuilt';

/** the agent's log lines once its first full sync and both filters' first rebuild are in it (bounded) */
async function untilSwept(a: Agent, timeoutMs = 180_000): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ls = a.lines();
    if (ls.some(FULL_SYNC) && ls.some(REV) && ls.some(CT)) return ls;
    if (a.child.exitCode !== null || a.child.signalCode !== null) throw new Error(`agent exited: ${JSON.stringify(ls.slice(-20))}`);
    if (Date.now() > deadline) throw new Error(`no first sync and sweep within ${timeoutMs} ms: ${JSON.stringify(ls.slice(-20))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stop = stopAgent;

/** the filter's switch (element 0: 0 off, else the half the programs read) */
function filterSwitch(pinRoot: string, name: 'lb_rev_filter' | 'lb_ct_filter'): bigint | undefined {
  const m = BpfMap.fromPin(join(pinRoot, name));
  try {
    return m.lookup(L.encodeU32(0))?.readBigUInt64LE(0);
  } finally {
    m.close();
  }
}

if (!isRoot) {
  test('first-sweep tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  const agents = agentsInNetns(test, NS, NODE_IP);

  test.serial('a fresh start sweeps after its first sync without zeroing the filters; a restart sweeps its pins at once and zeroes them', async (t) => {
    t.timeout(600_000);
    const { pinRoot, dir } = agentTestDirs(t, 'kbp-sweep-', manifests);
    const first = startAgent(pinRoot, dir);
    agents.push(first);
    const ls = await untilSwept(first);
    // (the sync's line is written once V8's GC figures settle: its endedAt is when it ended)
    const endedAt = Number(ls.find(FULL_SYNC)!.endedAt), rev = ls.find(REV)!, ct = ls.find(CT)!;
    t.true(ls.some((l) => l.msg === 'loaded BPF data plane'), 'a fresh load');
    t.true(Number(rev.startedAt) >= endedAt && Number(ct.startedAt) >= endedAt, `the first pass begun after the first sync ended (${endedAt}; the pass ${String(rev.startedAt)})`);
    t.is(rev.zeroed, false, 'lb_rev_filter: the half of a fresh map not zeroed again');
    t.is(ct.zeroed, false, 'lb_ct_filter: the half of a fresh map not zeroed again');
    t.true((filterSwitch(pinRoot, 'lb_rev_filter') ?? 0n) !== 0n, 'lb_rev_filter switched on');
    t.true((filterSwitch(pinRoot, 'lb_ct_filter') ?? 0n) !== 0n, 'lb_ct_filter switched on');
    await stop(first);
    t.is(await first.exited, 0);

    const again = startAgent(pinRoot, dir);
    agents.push(again);
    const ls2 = await untilSwept(again);
    t.true(ls2.some((l) => l.msg === 'reusing pinned maps of an earlier agent'), 'a restart over the pins');
    t.is(ls2.find(REV)!.zeroed, true, 'lb_rev_filter: an earlier agent\'s half zeroed before the rebuild');
    t.is(ls2.find(CT)!.zeroed, true, 'lb_ct_filter: an earlier agent\'s half zeroed before the rebuild');
    t.true((filterSwitch(pinRoot, 'lb_ct_filter') ?? 0n) !== 0n, 'lb_ct_filter switched on again');
    await stop(again);
    t.is(await again.exited, 0);
  });
}
