// Upgrade across the build that records the frontend port in lb_ct entries (lb_ct_entry.fe_port, in
// what was pad2): the value keeps its size, so the agent reuses the pinned lb_ct of the build before
// as it is (no migration), and the replies of flows that build created, whose entries hold no port,
// are still translated, from lb_revnat. The old object is built from BEFORE_FE_PORT's bpf/.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataplane } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { LB_CT_DIR_REV } from '../../src/dataplane/bpf/layout.js';
import { Datapath, SVC, TC_ACT_OK } from '../../testing/datapath.js';
import { BASE_SERVICES, pick, reply, toService } from '../../testing/datapath-rows.js';
import { buildObjectAt } from '../../testing/old-object.js';
import { TCP_ACK } from '../../testing/packets.js';
import { dataplaneObject, isRoot } from './fixtures/util.js';

/** the last commit whose lb_ct entries hold no frontend port */
const BEFORE_FE_PORT = '30b0764';
const SKB_CTX_SIZE = 192;

if (!isRoot) {
  test('ct-fe-port-upgrade tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('a flow of the build before lb_ct recorded the frontend port keeps its replies translated after the upgrade', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kbp-feport-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const older = buildObjectAt(BEFORE_FE_PORT, dir, 'kbp-before-fe-port.bpf.o');
    if (!older) return t.pass(`skipped: commit ${BEFORE_FE_PORT} is not in this checkout's history`);

    // the old build's programs make a flow (SYN, then the ACK that moves it into lb_ct)
    const old = new Datapath(older, 'feport');
    t.teardown(() => old.close());
    old.install(BASE_SERVICES);
    const s = SVC.web4, client = '10.244.9.9', sport = 47000, b = pick(s, client, sport);
    const syn = toService(s, client, sport), ack = toService(s, client, sport, { flags: TCP_ACK, seq: 1001, ack: 5001 });
    t.deepEqual(old.run('lb_tc_ingress', syn.input).output, syn.to(b));
    t.deepEqual(old.run('lb_tc_ingress', ack.input).output, ack.to(b));
    const rk = { saddr: b.address, daddr: client, sport: b.port, dport: sport, protocol: 'TCP' as const, dir: LB_CT_DIR_REV };
    const before = old.ctIn('lb_ct', rk);
    t.truthy(before, 'the old build wrote the reverse entry into lb_ct');
    t.is(before?.fePort, undefined, 'the old build records no frontend port');

    // the new build over those pins, as the agent loads it
    const st = AgentStateFile.forPinRoot(old.pinRoot, join(dir, 'state.json'));
    st.setObjectIds(Object.fromEntries(old.mapNames().map((n) => [n, old.map(n).id])), {});
    st.save();
    const d = loadDataplane({ pinRoot: old.pinRoot, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(old.pinRoot, join(dir, 'state.json')) });
    t.teardown(() => d.object.close());
    t.deepEqual(d.migrations.filter((m) => m.name === 'lb_ct' || m.name === 'lb_ct_syn'), [], 'lb_ct and lb_ct_syn reused as they are');
    d.finishMigration();
    t.is(d.maps.map('lb_ct').id, old.map('lb_ct').id, 'the pinned lb_ct itself');

    const run = (prog: 'lb_tc_ingress' | 'lb_tc_egress', data: Buffer) => d.object.program(prog).testRun({ data, ctx: Buffer.alloc(SKB_CTX_SIZE), dataOutSize: data.length + 256 });
    // the old flow's reply: its entry has no port, so lb_revnat gives the frontend's
    const r = reply(s, b, client, sport, { flags: TCP_ACK });
    const out = run('lb_tc_egress', r.input);
    t.is(out.retval, TC_ACT_OK);
    t.deepEqual(out.data, r.output, 'reply of the old flow rewritten to the frontend');
    // the old flow's next packet is a hit of the new programs, on its backend
    const data = toService(s, client, sport, { flags: TCP_ACK, seq: 1001, ack: 5001 });
    t.deepEqual(run('lb_tc_ingress', data.input).data, data.to(b));

    // a flow the new build makes records the port, and its replies need no lb_revnat
    const sport2 = 47001, b2 = pick(s, client, sport2);
    const syn2 = toService(s, client, sport2);
    t.deepEqual(run('lb_tc_ingress', syn2.input).data, syn2.to(b2));
    const ack2 = toService(s, client, sport2, { flags: TCP_ACK, seq: 1001, ack: 5001 });
    t.deepEqual(run('lb_tc_ingress', ack2.input).data, ack2.to(b2));
    t.is(old.ctIn('lb_ct', { ...rk, saddr: b2.address, sport: b2.port, dport: sport2 })?.fePort, s.port, 'the new build records the frontend port');
    old.map('lb_revnat').delete(Buffer.from([s.feId, 0, 0, 0]));
    const r2 = reply(s, b2, client, sport2, { flags: TCP_ACK });
    t.deepEqual(run('lb_tc_egress', r2.input).data, r2.output, 'the new flow\'s reply is rewritten from its entry alone');
    t.deepEqual(run('lb_tc_egress', r.input).data, r.input, 'the old flow\'s reply, without lb_revnat, is left untouched (as before)');
  });
}
