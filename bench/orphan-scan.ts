// What keeping a deleted Service's flows costs the sync that deletes it: one orphanFlows() pass
// (ct-orphan.ts) over a filled lb_ct, against the conntrack sweep's pass over the same map (the
// baseline: the agent already runs one every 30 s), interleaved, min/median/max. Root and bpffs.
//   npx tsx bench/orphan-scan.ts [entries=200000] [rounds=5]
import { Datapath, SVC, planOf } from '../testing/datapath.js';
import { encodeCtKey, encodeCtEntry, LB_CT_DIR_FWD, LB_CT_DIR_REV } from '../src/dataplane/bpf/layout.js';
import { newOrphanCache, orphanFlows } from '../src/dataplane/bpf/ct-orphan.js';
import { sweepConntrack } from '../src/dataplane/bpf/ct-sweep.js';

const N = Number(process.argv[2] ?? 200_000), ROUNDS = Number(process.argv[3] ?? 5);
const dp = new Datapath(undefined, 'orphan-bench');
try {
  dp.installPlan(planOf([SVC.web4, SVC.dns4]));
  const ct = dp.map('lb_ct'), now = process.hrtime.bigint();
  const fill = (): void => {
    const chunk = 8192;
    for (let i = 0; i < N; i += chunk) {
      const n = Math.min(chunk, N - i), ks = Buffer.alloc(n * 40), vs = Buffer.alloc(n * 40);
      for (let j = 0; j < n; j++) {
        const f = i + j, client = `10.${(f >> 16) & 255}.${(f >> 8) & 255}.${f & 255}`, rev = (f & 1) === 1;
        // one flow in 100 is the deleted frontend's (id 1), the rest another's (id 2)
        const fe = (f >> 1) % 100 === 0 ? 1 : 2;
        encodeCtKey(rev ? { saddr: '10.244.1.2', daddr: client, sport: 8080, dport: 40000, protocol: 'TCP', dir: LB_CT_DIR_REV }
          : { saddr: client, daddr: '10.96.0.10', sport: 40000, dport: 80, protocol: 'TCP', dir: LB_CT_DIR_FWD }, ks, j * 40);
        encodeCtEntry({ lastSeen: now, backendId: 11, feId: fe, flags: 0 }, vs, j * 40);
      }
      ct.updateBatch(ks, vs, n);
    }
  };
  const orphan: number[] = [], sweep: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    fill();
    let t0 = process.hrtime.bigint();
    const o = await orphanFlows({ lb_ct: ct, lb_backends: dp.map('lb_backends'), lb_revnat: dp.map('lb_revnat'), lb_members: dp.map('lb_members') }, new Set([1]), newOrphanCache());
    orphan.push(Number(process.hrtime.bigint() - t0) / 1e6);
    t0 = process.hrtime.bigint();
    await sweepConntrack(ct, 'lb_ct', now);
    sweep.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r === 0) console.log(`entries ${ct.count()}, orphaned ${o.orphaned}`);
  }
  const mmm = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return `min ${s[0]!.toFixed(1)} / median ${s[s.length >> 1]!.toFixed(1)} / max ${s[s.length - 1]!.toFixed(1)} ms`; };
  const ratio = orphan.map((o, i) => o / sweep[i]!);
  console.log(`lb_ct ${N} entries, ${ROUNDS} rounds interleaved\n  orphanFlows: ${mmm(orphan)}\n  sweep (baseline): ${mmm(sweep)}\n  ratio per round: ${ratio.map((x) => x.toFixed(2)).join(' ')}`);
} finally {
  dp.close();
}
