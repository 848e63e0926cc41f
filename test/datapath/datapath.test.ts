// The datapath table (testing/datapath-rows.ts) run through BPF_PROG_TEST_RUN on the real object: for
// each row, fresh maps with the base services, the row's setup, one packet, then the verdict, the exact output
// bytes, independently recomputed checksums, the skb mark and the counters. Needs root and bpffs.
import test, { type ExecutionContext } from 'ava';
import type { Plan } from '../../src/plan/types.js';
import { Datapath, planOf, SNAT_MARK, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT, XDP_DROP, XDP_PASS, type TestService } from '../../testing/datapath.js';
import { buildRows, checkRow, BASE_SERVICES } from '../../testing/datapath-rows.js';
import { frame, tcp, udp } from '../../testing/packets.js';
import { walkFirstPacket } from '../../src/dataplane/bpf/walk.js';
import { flowHash } from '../../src/dataplane/bpf/hash.js';

let dp: Datapath | undefined;

test.before(() => {
  dp = new Datapath();
  dp.install(BASE_SERVICES);
});

test.after.always(() => {
  dp?.close();
});

const rows = buildRows();

test('the table has at least 30 rows, with unique names', (t) => {
  t.true(rows.length >= 30, `${rows.length} rows`);
  t.is(new Set(rows.map((r) => r.name)).size, rows.length);
});

for (const row of rows) {
  test.serial(row.name, (t) => {
    checkRow(t, dp!, row);
  });
}

// The TypeScript packet walk (src/dataplane/bpf/walk.ts) and the programs must agree on where a
// first packet goes: random flows over every base service, both device roles, tc and XDP.
function walkAgreement(t: ExecutionContext, d: Datapath, plan: Plan, services: TestService[], flows: number): void {
  let seed = 0x1234abcd;
  const rnd = (n: number) => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return seed % n;
  };
  const v4 = ['10.244.5.9', '10.244.1.2', '192.168.50.7', '192.168.60.7', '10.244.9.200', '172.16.3.4'];
  const v6 = ['fd00:244:5::9', 'fd00:50::1', 'fd00:244:1::2', '2001:db8::7'];
  const seen = new Set<string>();
  for (let i = 0; i < flows; i++) {
    const s = services[rnd(services.length)]!;
    const six = s.address.includes(':');
    const src = six ? v6[rnd(v6.length)]! : v4[rnd(v4.length)]!;
    const sport = 1024 + rnd(60000);
    const external = rnd(2) === 1;
    const prog = external && rnd(2) === 1 ? 'lb_xdp' as const : 'lb_tc_ingress' as const;
    const mk = (dst: string, dport: number) => frame({ src, dst, l4: s.protocol === 'TCP' ? tcp(sport, dport) : udp(sport, dport) });
    d.forgetFlows();
    d.setExternal(external);
    const input = mk(s.address, s.port);
    const w = walkFirstPacket(plan, { src, sport, dst: s.address, dport: s.port, protocol: s.protocol, external });
    const r = d.run(prog, input);
    const what = `${prog} ${src}:${sport} -> ${s.address}:${s.port}/${s.protocol}${external ? ' (external)' : ''}: walk says ${w.verdict}`;
    seen.add(w.verdict);
    if (w.verdict === 'translate') {
      const out = mk(w.backend.address, w.backend.port);
      if (prog === 'lb_xdp' && w.snat) {
        t.is(r.verdict, XDP_PASS, what);
        t.is(r.output.toString('hex'), input.toString('hex'), `${what}: XDP leaves SNAT to tc`);
      } else {
        t.is(r.verdict, prog === 'lb_xdp' ? XDP_PASS : TC_ACT_OK, what);
        t.is(r.output.toString('hex'), out.toString('hex'), `${what} to backend ${w.backend.id} (hash ${flowHash(src, sport, s.protocol === 'TCP' ? 6 : 17, plan.seed)})`);
        if (prog !== 'lb_xdp') t.is(r.mark >>> 0, w.snat ? SNAT_MARK >>> 0 : 0, `${what}: SNAT mark`);
      }
    } else if (w.verdict === 'drop') {
      t.is(r.verdict, prog === 'lb_xdp' ? XDP_DROP : TC_ACT_SHOT, what);
    } else if (w.verdict === 'reject') {
      t.is(r.verdict, prog === 'lb_xdp' ? XDP_PASS : TC_ACT_REDIRECT, what);
    } else {
      t.is(r.verdict, prog === 'lb_xdp' ? XDP_PASS : TC_ACT_OK, what);
      t.is(r.output.toString('hex'), input.toString('hex'), what);
    }
  }
  // the random flows must have exercised the outcomes, or the comparison proves little
  t.true(seen.has('translate') && seen.has('reject') && seen.has('drop'), `outcomes seen: ${[...seen].join(', ')}`);
}

test.serial('the programs agree with the TypeScript packet walk on 240 random first packets', (t) => {
  const d = dp!;
  d.restore();
  walkAgreement(t, d, planOf(BASE_SERVICES), BASE_SERVICES, 240);
});

// The same, with the maps written by the agent's writer from a Plan (src/dataplane/bpf/maps.ts).
// The id-0 table is left out: a Plan cannot hold one. Runs last: it replaces the installed state.
test.serial('maps written by the agent (BpfMaps.apply of a Plan) behave as the packet walk predicts', (t) => {
  const d = dp!;
  const services = BASE_SERVICES.filter((s) => !s.slots);
  const plan = planOf(services);
  try {
    d.installPlan(plan);
    walkAgreement(t, d, plan, services, 160);
  } finally {
    d.install(BASE_SERVICES);
  }
});
