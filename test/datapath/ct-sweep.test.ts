// The agent's conntrack sweep (src/dataplane/bpf/ct-sweep.ts) over the real maps: it deletes exactly
// the entries the programs would treat as expired (the lifetimes of lb_consts.h), in both lb_ct and
// lb_ct_syn, and keeps the rest. Needs root and bpffs.
import test from 'ava';
import { Datapath, SVC } from '../../testing/datapath.js';
import { BASE_SERVICES } from '../../testing/datapath-rows.js';
import { FilterBuild, RevFilterZeroing, sweepConntrack } from '../../src/dataplane/bpf/ct-sweep.js';
import type { BpfMap } from '../../src/dataplane/bpf/native/map.js';
import { LB_CT_DIR_FWD, LB_CT_F_CLOSING, LB_CT_F_SYN } from '../../src/dataplane/bpf/layout.js';
import { isRoot } from './fixtures/util.js';

const SEC = 1_000_000_000n;

if (!isRoot) {
  test('datapath tests need root', (t) => t.pass('skipped: not root'));
} else {
  test('the sweep deletes expired conntrack entries of both maps and keeps live ones', async (t) => {
    const dp = new Datapath();
    t.teardown(() => dp.close());
    dp.install(BASE_SERVICES);
    const now = process.hrtime.bigint();
    const key = (sport: number, protocol: 'TCP' | 'UDP') => ({ saddr: '10.244.5.9', daddr: SVC.web4.address, sport, dport: 80, protocol, dir: LB_CT_DIR_FWD });
    const entry = (age: bigint, flags = 0) => ({ lastSeen: BigInt.asUintN(64, now - age), backendId: 11, feId: SVC.web4.feId, flags });
    const cases: Array<[map: 'lb_ct' | 'lb_ct_syn', sport: number, proto: 'TCP' | 'UDP', age: bigint, flags: number, kept: boolean]> = [
      ['lb_ct', 1, 'TCP', 3600n * SEC, 0, true], // established, an hour idle
      ['lb_ct', 2, 'TCP', 21601n * SEC, 0, false], // established, past 6 h
      ['lb_ct', 3, 'TCP', 100n * SEC, LB_CT_F_CLOSING, true],
      ['lb_ct', 4, 'TCP', 121n * SEC, LB_CT_F_CLOSING, false],
      ['lb_ct', 5, 'UDP', 59n * SEC, 0, true],
      ['lb_ct', 6, 'UDP', 61n * SEC, 0, false],
      ['lb_ct', 9, 'TCP', 59n * SEC, LB_CT_F_SYN, true], // a SYN over a closed flow's entries, handshake not complete
      ['lb_ct', 10, 'TCP', 61n * SEC, LB_CT_F_SYN, false], // ... past the SYN timeout
      ['lb_ct', 11, 'TCP', 61n * SEC, LB_CT_F_SYN | LB_CT_F_CLOSING, false], // ... refused: still the SYN timeout
      ['lb_ct_syn', 7, 'TCP', 30n * SEC, 0, true],
      ['lb_ct_syn', 8, 'TCP', 61n * SEC, 0, false],
    ];
    for (const [map, sport, proto, age, flags] of cases) dp.setCt(map, key(sport, proto), entry(age, flags));
    const r = [await sweepConntrack(dp.map('lb_ct'), 'lb_ct', now), await sweepConntrack(dp.map('lb_ct_syn'), 'lb_ct_syn', now)];
    t.deepEqual(r.map((x) => [x.map, x.entries, x.expired]), [['lb_ct', 9, 5], ['lb_ct_syn', 2, 1]]);
    for (const [map, sport, proto, , , kept] of cases) t.is(dp.ctIn(map, key(sport, proto)) !== undefined, kept, `${map} entry ${sport}/${proto}`);
    t.deepEqual((await sweepConntrack(dp.map('lb_ct'), 'lb_ct', now)).expired, 0, 'a second pass finds nothing more');
  });

  test('a sweep hands the kernel the buffers of the sweep before: its batches, its expired keys, its filters\' words', async (t) => {
    const dp = new Datapath();
    t.teardown(() => dp.close());
    dp.install(BASE_SERVICES);
    // three batches of the default 4096, every third entry expired at each sweep
    const N = 10_000, key = (i: number) => ({ saddr: `10.245.${i >> 8}.${i & 255}`, daddr: SVC.web4.address, sport: 2000 + (i % 50_000), dport: 80, protocol: 'UDP' as const, dir: LB_CT_DIR_FWD });
    const ct = dp.map('lb_ct');
    // what a sweep hands the addon: each batch's keys (the visits' views into them), the deletes'
    // keys, the filters' words
    const seen = { batches: new Set<ArrayBufferLike>(), deletes: new Set<ArrayBufferLike>(), words: new Set<ArrayBufferLike>() };
    let on = false; // the sweeps' calls only, not the setup's (setCt writes the filters' bits)
    const spy = <K extends 'deleteManyAsync' | 'writeMmap'>(m: BpfMap, name: K, into: Set<ArrayBufferLike>) => {
      const f = (m[name] as (...a: unknown[]) => unknown).bind(m);
      (m as unknown as Record<string, unknown>)[name] = (b: Buffer, ...rest: unknown[]) => { if (on) into.add(b.buffer); return f(b, ...rest); };
    };
    spy(ct, 'deleteManyAsync', seen.deletes);
    spy(dp.map('lb_rev_filter'), 'writeMmap', seen.words);
    spy(dp.map('lb_ct_filter'), 'writeMmap', seen.words);
    const revZ = new RevFilterZeroing(), ctZ = new RevFilterZeroing();
    const sweeps: Array<[number, number]> = [];
    for (let round = 0; round < 3; round++) {
      const now = process.hrtime.bigint();
      for (let i = 0; i < N; i++) dp.setCt('lb_ct', key(i), { lastSeen: BigInt.asUintN(64, now - (i % 3 ? 1n : 61n) * SEC), backendId: 11, feId: SVC.web4.feId, flags: 0 });
      // as dataplane.ts sweeps: both filters rebuilt from the scan
      on = true;
      const rev = await FilterBuild.begin(dp.map('lb_rev_filter'), 'rev', revZ, round);
      const ctf = await FilterBuild.begin(dp.map('lb_ct_filter'), 'ct', ctZ, round);
      const r = await sweepConntrack(ct, 'lb_ct', now, undefined, undefined, (k) => { seen.batches.add(k.buffer); rev.visit(k); ctf.visit(k); });
      rev.finish();
      ctf.finish();
      on = false;
      sweeps.push([r.entries, r.expired]);
    }
    t.deepEqual(sweeps, [[N, Math.ceil(N / 3)], [N, Math.ceil(N / 3)], [N, Math.ceil(N / 3)]]);
    t.is(seen.batches.size, 1, 'every batch of the three sweeps in one buffer');
    t.is(seen.deletes.size, 1, 'every batch\'s expired keys in one buffer');
    t.is(seen.words.size, 2, 'two filters a sweep, their words\' two buffers reused');
  });

  test('scanYielding with the kept buffers sees every entry once, through a bucket bigger than its batch (ENOSPC: the buffers grown, the cursor carried)', async (t) => {
    const dp = new Datapath();
    t.teardown(() => dp.close());
    dp.install(BASE_SERVICES);
    const N = 5000, now = process.hrtime.bigint();
    for (let i = 0; i < N; i++) dp.setCt('lb_ct', { saddr: `10.246.${i >> 8}.${i & 255}`, daddr: SVC.web4.address, sport: 3000 + i, dport: 80, protocol: 'UDP', dir: LB_CT_DIR_FWD }, { lastSeen: now, backendId: 11, feId: SVC.web4.feId, flags: 0 });
    const ct = dp.map('lb_ct');
    for (const batch of [1, 1, 4096, 1]) {
      const seen = new Set<string>();
      let visits = 0;
      await ct.scanYielding((k) => { visits++; seen.add(k.toString('hex')); }, { batch });
      t.deepEqual([visits, seen.size], [N, N], `batch ${batch}: every entry once`);
    }
  });

  test('the sweep yields to the event loop between batches and still deletes every expired entry', async (t) => {
    const dp = new Datapath();
    t.teardown(() => dp.close());
    dp.install(BASE_SERVICES);
    const now = process.hrtime.bigint();
    const N = 600;
    const key = (i: number) => ({ saddr: `10.244.${6 + (i >> 8)}.${i & 255}`, daddr: SVC.web4.address, sport: 1000 + i, dport: 80, protocol: 'UDP' as const, dir: LB_CT_DIR_FWD });
    // every other entry past UDP's 60 s
    for (let i = 0; i < N; i++) dp.setCt('lb_ct', key(i), { lastSeen: BigInt.asUintN(64, now - (i % 2 ? 61n : 1n) * SEC), backendId: 11, feId: SVC.web4.feId, flags: 0 });
    // the event loop's turns while the sweep runs: a synchronous sweep gives it none
    let turns = 0, done = false;
    const spin = (): void => {
      if (done || turns > 100_000) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    const r = await sweepConntrack(dp.map('lb_ct'), 'lb_ct', now, 50);
    done = true;
    t.deepEqual([r.entries, r.expired], [N, N / 2]);
    t.true(turns >= N / 50 - 1, `event loop turns during the sweep: ${turns}`);
    for (let i = 0; i < N; i++) t.is(dp.ctIn('lb_ct', key(i)) !== undefined, i % 2 === 0, `entry ${i}`);
  });
}
