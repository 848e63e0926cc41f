// New connections after a SYN flood, with both conntrack maps full, below the lab (issue 10; the lab's
// "conntrack full under a SYN flood", test/lab/reliability-faults.test.ts): three namespaces this
// test makes and removes (client -- node -- backend, veth pairs, private addresses), an object with
// a small lb_ct and lb_ct_syn (1,024 / 256 entries), the agent's conntrack sweep and filter rebuilds
// running every 200 ms. New connections fill lb_ct, a flood from an address that answers nothing
// fills lb_ct_syn (ten times its size), then 3,000 new connections each send a byte and read it back.
//
// The flood's entries stay in lb_ct_syn after it (60 s), but a client's handshake takes its two
// entries from its CPU's share and its ACK's move to lb_ct gives them back (per-CPU LRU lists,
// BPF_F_NO_COMMON_LRU: kernel/bpf/bpf_lru_list.c pops from the CPU's free list first and evicts, up to
// 4, only when it is empty): after the first handshake on a CPU nothing is evicted, and no first SYN
// may be lost. The client's own SYN retransmissions (TcpExtTCPSynRetrans in its namespace) count a
// lost first SYN, a SYN-ACK the programs left untranslated or a SYN the backend refused (the client
// resets the answer and sends again).
// The lab's losses after a flood are the masquerade's (its NodePort flows are SNATed): see
// docs/perf-log.md, session 27 (p27syn).
import test from 'ava';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isRoot, removeNamespaces } from './fixtures/util.js';

const tag = `kbpsyn${process.pid % 100000}`;
const NS = { cli: `${tag}-cli`, node: `${tag}-node`, be: `${tag}-be` };
const CT_MAX = 1024, CT_SYN_MAX = 256, FILL = 2000, FLOOD = CT_SYN_MAX * 10, AFTER = 3000;
const servers: ChildProcess[] = [];
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });

function teardown(): void {
  removeNamespaces(Object.values(NS), servers);
}

if (!isRoot) {
  test('SYN flood tests need root', (t) => t.pass('skipped: not root'));
} else {
  test.before(async () => {
    teardown();
    for (const ns of Object.values(NS)) ip('netns', 'add', ns);
    ip('link', 'add', 'c0', 'netns', NS.cli, 'type', 'veth', 'peer', 'name', 'n0', 'netns', NS.node);
    ip('link', 'add', 'b0', 'netns', NS.be, 'type', 'veth', 'peer', 'name', 'n1', 'netns', NS.node);
    ip('-n', NS.cli, 'addr', 'add', '10.0.1.2/24', 'dev', 'c0');
    ip('-n', NS.node, 'addr', 'add', '10.0.1.1/24', 'dev', 'n0');
    ip('-n', NS.node, 'addr', 'add', '10.0.2.1/24', 'dev', 'n1');
    ip('-n', NS.be, 'addr', 'add', '10.0.2.2/24', 'dev', 'b0');
    for (const [ns, dev] of [[NS.cli, 'c0'], [NS.node, 'n0'], [NS.node, 'n1'], [NS.be, 'b0'], [NS.cli, 'lo'], [NS.node, 'lo'], [NS.be, 'lo']] as const) ip('-n', ns, 'link', 'set', dev, 'up');
    ip('-n', NS.cli, 'route', 'add', 'default', 'via', '10.0.1.1');
    ip('-n', NS.be, 'route', 'add', 'default', 'via', '10.0.2.1');
    ip('netns', 'exec', NS.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    // full checksums from the client, as a host behind a real NIC sends them (XDP sees no CHECKSUM_PARTIAL)
    ip('netns', 'exec', NS.cli, 'ethtool', '-K', 'c0', 'tx', 'off');
    // one server per row's backend port: a client port reused for the other row's frontend would meet
    // the first row's TIME_WAIT on the same backend tuple, with the timestamps of another client tuple,
    // and PAWS would refuse its SYN (the backend's ACK, the client's RST and a second SYN)
    for (const port of ['8080', '8081']) servers.push(spawn('ip', ['netns', 'exec', NS.be, process.execPath, fileURLToPath(new URL('./fixtures/echo-once-server.mjs', import.meta.url)), port], { stdio: 'ignore' }));
    // ready when the client reaches the backend directly (bounded: 5 s)
    const probe = fileURLToPath(new URL('./fixtures/conn-loop.mjs', import.meta.url));
    for (let i = 0; i < 50; i++) {
      const up = ['8080', '8081'].every((port) => spawnSync('ip', ['netns', 'exec', NS.cli, process.execPath, probe, '10.0.2.2', port, '1', '500', '1000'], { encoding: 'utf8' }).stdout?.includes('"failed":0'));
      if (up) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('echo server in the test namespace did not come up within 5 s');
  });

  test.after.always(teardown);

  interface Phase { sent: number; failed: number; slow: number; failures: unknown[] }
  interface Result {
    cpus: number; fill: Phase; after: Phase; flood: string; synRetrans: number; sweeps: number;
    countsFill: { lb_ct: number; lb_ct_syn: number }; countsFlood: { lb_ct: number; lb_ct_syn: number }; countsAfter: { lb_ct: number; lb_ct_syn: number };
    statsAfter: Record<string, number>;
  }

  for (const mode of ['tc', 'xdp'] as const) {
    test.serial(`${mode}: after a SYN flood, with lb_ct and lb_ct_syn full, every new connection completes on its first SYN`, (t) => {
      const script = fileURLToPath(new URL('./fixtures/synflood-node.ts', import.meta.url));
      const r = spawnSync('nsenter', [`--net=/var/run/netns/${NS.node}`, process.execPath, '--import=tsx', script, NS.cli, mode,
        String(CT_MAX), String(CT_SYN_MAX), String(FILL), String(FLOOD), String(AFTER)], { timeout: 300_000, encoding: 'utf8' });
      t.is(r.status, 0, `node-side script failed: ${r.stderr?.slice(-2000)}`);
      const res = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Result;
      t.log(JSON.stringify({ ...res, fill: { sent: res.fill.sent, failed: res.fill.failed }, after: { sent: res.after.sent, failed: res.after.failed, slow: res.after.slow } }));
      t.regex(res.flood, /^sent \d+/, 'the flood ran');
      t.is(res.fill.failed, 0, `connections before the flood: ${JSON.stringify(res.fill.failures)}`);
      // full: the common LRU keeps up to 128 free entries per CPU aside (target_free), so "full" is
      // more than half here on any CPU count
      t.true(res.countsFill.lb_ct > CT_MAX / 2, `lb_ct filled: ${res.countsFill.lb_ct} of ${CT_MAX}`);
      // the flood's sender ran on one CPU at least: that CPU's share of lb_ct_syn is full
      t.true(res.countsFlood.lb_ct_syn >= (CT_SYN_MAX / res.cpus) * 0.9, `lb_ct_syn filled by the flood: ${res.countsFlood.lb_ct_syn} of ${CT_SYN_MAX}`);
      t.true(res.sweeps > 0, 'the sweep and the filters\' rebuilds ran');

      t.is(res.after.sent, AFTER);
      t.is(res.after.failed, 0, `new connections after the flood: ${JSON.stringify(res.after.failures)}`);
      // a lost or refused first SYN is sent again; one in a thousand is left for a machine that stalls
      // past the 1 s SYN timer (the evictions and refusals this row is for come by the hundred)
      t.true(res.synRetrans <= AFTER / 1000, `SYNs sent again after the flood: ${res.synRetrans} (${res.after.slow} connections took over 900 ms)`);
      // every handshake moved to lb_ct (its lb_ct_syn entries deleted by its ACK), none left behind
      t.is(res.statsAfter.ct_syn_delete, res.statsAfter.ct_syn_insert, `handshakes moved: ${JSON.stringify(res.statsAfter)}`);
      t.true((res.statsAfter.ct_syn_insert ?? 0) >= AFTER, 'the new connections went through lb_ct_syn');
      // the flood's entries stay: the handshakes reuse the entries their own ACKs give back, so only the
      // first SYN on each CPU evicts (at most PERCPU_FREE_TARGET, 4, from that CPU's list)
      t.true(res.countsAfter.lb_ct_syn >= res.countsFlood.lb_ct_syn - 4 * res.cpus,
        `lb_ct_syn kept the flood's entries: ${res.countsFlood.lb_ct_syn} after the flood, ${res.countsAfter.lb_ct_syn} after the connections`);
    });
  }
}
