// LRU evictions of the conntrack maps (issue 7): the kernel does not count them, so the programs
// count the keys they add and the entries they delete (lb_stats ct_insert, ct_delete, ...) and the
// agent derives evictions = inserts - deletions - growth of the count at each sweep
// (ct-sweep.ts EvictionCounter, kubebpfproxy_conntrack_evictions_total). An object built with small
// lb_ct, lb_ct_syn and lb_frags is filled by real flows through lb_tc_ingress (BPF_PROG_TEST_RUN):
// without pressure the figure stays 0; past capacity it moves by what the map could not keep.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Datapath, SVC, TC_ACT_OK } from '../../testing/datapath.js';
import { frame, tcp, fragment } from '../../testing/packets.js';
import { EvictionCounter, evictionCounters, sweepConntrack, type EvictedMap } from '../../src/dataplane/bpf/ct-sweep.js';
import { isRoot, repoRoot } from './fixtures/util.js';

const CT_MAX = 1024, CT_SYN_MAX = 256, FRAGS_MAX = 128;

function smallObject(dir: string): string {
  const out = join(dir, 'kbp-small.bpf.o');
  const arch = execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim();
  execFileSync('clang', ['-O2', '-g', '-Wall', '-target', 'bpf', `-D__TARGET_ARCH_${arch === 'aarch64' ? 'arm64' : 'x86'}`, `-I/usr/include/${arch}-linux-gnu`,
    `-I${join(repoRoot, 'bpf')}`, `-DLB_CT_MAX=${CT_MAX}`, `-DLB_CT_SYN_MAX=${CT_SYN_MAX}`, `-DLB_FRAGS_MAX=${FRAGS_MAX}`,
    '-c', join(repoRoot, 'bpf', 'kbp.bpf.c'), '-o', out]);
  return out;
}

const client = (i: number) => `10.244.${100 + (i >> 8)}.${i & 255}`;
const udp = (i: number, payload = Buffer.alloc(8)) => frame({ src: client(i), dst: SVC.dns4.address, l4: { kind: 'udp', sport: 10000 + i, dport: 53, payload } });
const syn = (i: number) => frame({ src: client(i), dst: SVC.web4.address, l4: tcp(20000 + i, 80) });

if (!isRoot) {
  test('eviction tests need root', (t) => t.pass('skipped: not root'));
} else {
  test('evictions of lb_ct, lb_ct_syn and lb_frags: 0 without pressure, what the map could not keep past capacity', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kbp-evict-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const dp = new Datapath(smallObject(dir));
    t.teardown(() => dp.close());
    dp.install([SVC.web4, SVC.dns4]);
    const ev = new EvictionCounter();
    const observe = async (map: EvictedMap): Promise<{ evicted: number; inserts: number; entries: number }> => {
      const { inserts } = evictionCounters(dp.stats({ bookkeeping: true }), map);
      let entries: number;
      if (map === 'lb_frags') entries = dp.map(map).count();
      else {
        const r = await sweepConntrack(dp.map(map), map);
        ev.agentDeleted(map, r.expired);
        entries = r.entries - r.expired;
      }
      return { evicted: ev.observe(map, inserts, evictionCounters(dp.stats({ bookkeeping: true }), map).deletes, entries), inserts, entries };
    };
    const send = (f: Buffer) => t.is(dp.run('lb_tc_ingress', f).verdict, TC_ACT_OK);
    for (const m of ['lb_ct', 'lb_ct_syn', 'lb_frags'] as const) t.is((await observe(m)).evicted, 0, `${m}: the base`);

    // no pressure: 100 UDP flows (200 entries of 1024), a few SYNs (lb_ct_syn is split between the
    // possible CPUs, BPF_F_NO_COMMON_LRU, and a test run stays on one: a quarter of one CPU's share),
    // 20 fragmented datagrams
    const syns = Math.min(50, Math.floor(CT_SYN_MAX / dp.cpus / 4));
    for (let i = 0; i < 100; i++) send(udp(i));
    for (let i = 0; i < syns; i++) send(syn(i));
    for (let i = 0; i < 20; i++) send(fragment(udp(i, Buffer.alloc(64)), 32, 100 + i)[0]!);
    const quiet = { lb_ct: await observe('lb_ct'), lb_ct_syn: await observe('lb_ct_syn'), lb_frags: await observe('lb_frags') };
    t.deepEqual([quiet.lb_ct.entries, quiet.lb_ct_syn.entries, quiet.lb_frags.entries], [200, 2 * syns, 20], 'every entry kept');
    t.deepEqual([quiet.lb_ct.inserts, quiet.lb_ct_syn.inserts, quiet.lb_frags.inserts], [200, 2 * syns, 20], 'inserts counted once per new key');
    for (const m of ['lb_ct', 'lb_ct_syn', 'lb_frags'] as const) t.is(quiet[m].evicted, 0, `${m}: no eviction without pressure`);
    // the same flows again: refreshes and overwrites, no new key
    for (let i = 0; i < 100; i++) send(udp(i));
    t.is((await observe('lb_ct')).evicted, 0, 'lb_ct: hits insert nothing');
    for (let i = 100; i < 110; i++) send(udp(i));
    const c = evictionCounters(dp.stats({ bookkeeping: true }), 'lb_ct');
    t.is(ev.fillNow('lb_ct', c.inserts, c.deletes, CT_MAX), 220, 'lb_ct: 10 new flows since the sweep, counted at once');

    // pressure: 1500 more UDP flows (3000 entries) into 1024, the SYNs up to 550, 500 more datagrams
    for (let i = 100; i < 1600; i++) send(udp(i));
    for (let i = syns; i < 550; i++) send(syn(i));
    for (let i = 20; i < 520; i++) send(fragment(udp(i, Buffer.alloc(64)), 32, 100 + i)[0]!);
    // between sweeps, the fill the metrics report: the last count plus inserts less deletions since, at most capacity
    for (const [m, cap] of [['lb_ct', CT_MAX], ['lb_ct_syn', CT_SYN_MAX]] as const) {
      const { inserts, deletes } = evictionCounters(dp.stats({ bookkeeping: true }), m);
      t.is(ev.fillNow(m, inserts, deletes, cap), cap, `${m}: full, before any sweep saw it`);
    }
    for (const [m, added, cap] of [['lb_ct', 3000, CT_MAX], ['lb_ct_syn', 2 * (550 - syns), CT_SYN_MAX], ['lb_frags', 500, FRAGS_MAX]] as const) {
      const r = await observe(m);
      // exact on a quiet map: everything inserted that is not there any more was evicted
      t.is(r.evicted, r.inserts - r.entries, `${m}: evictions = inserts - entries (${JSON.stringify(r)})`);
      t.true(r.evicted >= quiet[m].entries + added - cap, `${m}: at least what exceeds capacity: ${r.evicted}`);
      t.true(r.entries <= cap, `${m}: ${r.entries} entries`);
    }
  });
}
