// Whole-path fuzz on the real kernel (issue 8), the bounded part: hostile objects (testing/
// fuzz-objects.ts) parsed as manifests, compiled, planned and written by the agent's own writer into
// the real maps; then packets through BPF_PROG_TEST_RUN. The canary Service's first packet must go to
// its backend, and every frontend's first packet must land where the TypeScript walk says (which the
// unit fuzz checks against kube-proxy's rules). 25 runs, each a fresh install.
import test from 'ava';
import fc from 'fast-check';
import { Datapath, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT } from '../../testing/datapath.js';
import { CANARY_IP, canarySlice, canarySvc, docsArb, feed } from '../../testing/fuzz-objects.js';
import { frame, tcp, udp } from '../../testing/packets.js';
import { ObjectStore } from '../../src/source/types.js';
import { compile } from '../../src/compile/compile.js';
import { buildPlan } from '../../src/plan/plan.js';
import { walkFirstPacket } from '../../src/dataplane/bpf/walk.js';

let dp: Datapath | undefined;
test.before(() => { dp = new Datapath(); });
test.after.always(() => dp?.close());

test('hostile objects through compile, plan and the real maps: the canary and every first packet land as walked', (t) => {
  const d = dp!;
  let runs = 0, packets = 0;
  const deadline = Date.now() + 60_000;
  fc.assert(fc.property(docsArb, (docs) => {
    if (Date.now() > deadline) return;
    runs++;
    const store = new ObjectStore();
    feed(store, [canarySvc, canarySlice('10.244.1.2'), ...docs]);
    const { state } = compile(store.snapshot(), { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true });
    const plan = buildPlan(state, undefined, { seed: 0x5eed1234 });
    d.installPlan(plan);
    const fes = [...plan.frontends.values()].filter((f) => f.protocol !== 'SCTP' && f.address !== '0.0.0.0' && f.address !== '::').slice(0, 12);
    if (!fes.some((f) => f.address === CANARY_IP)) throw new Error('canary frontend missing from the plan');
    for (const f of fes) {
      const src = f.address.includes(':') ? 'fd00:244:9::9' : '10.244.9.9';
      const external = f.scope === 'external';
      d.forgetFlows();
      d.setExternal(external);
      const l4 = (port: number) => (f.protocol === 'TCP' ? tcp(40000, port) : udp(40000, port));
      const input = frame({ src, dst: f.address, l4: l4(f.port) });
      const w = walkFirstPacket(plan, { src, sport: 40000, dst: f.address, dport: f.port, protocol: f.protocol, external });
      const r = d.run('lb_tc_ingress', input);
      packets++;
      const what = `${f.service} ${f.address}:${f.port}/${f.protocol} ${f.scope}: walk ${w.verdict}`;
      if (w.verdict === 'translate') {
        const want = frame({ src, dst: w.backend.address, l4: l4(w.backend.port) });
        if (r.verdict !== TC_ACT_OK || !r.output.equals(want)) throw new Error(`${what}: kernel ${r.verdict}, output differs`);
        if (f.address === CANARY_IP && w.backend.address !== '10.244.1.2') throw new Error(`canary to ${w.backend.address}`);
      } else if (w.verdict === 'reject') {
        if (r.verdict !== TC_ACT_REDIRECT) throw new Error(`${what}: kernel ${r.verdict}`);
      } else if (w.verdict === 'drop') {
        if (r.verdict !== TC_ACT_SHOT) throw new Error(`${what}: kernel ${r.verdict}`);
      }
    }
  }), { numRuns: 25, seed: 0x51ab });
  t.true(runs > 0 && packets >= runs, `${runs} runs, ${packets} packets`);
  t.log(`${runs} runs, ${packets} packets`);
});
