// lb_fe_ids (bpf/lb_maps.h): each lb_frontends entry again at its fe_id, which a plain conntrack hit
// reads by its entry's fe_id (lb_fe_slot_of in bpf/lb_svc.h) instead of looking the frontend up in
// lb_frontends (session 32). These rows check that the programs take it only where the lookup could
// return nothing else (the packet's own address, port, protocol and scope, the id the entry holds),
// that anything else is decided by the lookup as before (an eTP=Local frontend's twin in the other
// scope among them), and that the agent's writer keeps it in step with lb_frontends: written after,
// cleared before, rebuilt whole by a new writer (a restart, an upgrade over an older build's pins).
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataplane } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { diffPlans } from '../../src/plan/diff.js';
import { FE_SLOT, LB_FE_SLOT_F_TWIN, encodeFeKey, encodeFrontend, encodeU32 } from '../../src/dataplane/bpf/layout.js';
import { Datapath, SVC, TC_ACT_OK, XDP_PASS, planOf, type TestService } from '../../testing/datapath.js';
import { BASE_SERVICES, openFlow, pick, sportFor, toService } from '../../testing/datapath-rows.js';
import { buildObjectAt } from '../../testing/old-object.js';
import { TCP_ACK, TCP_PSH } from '../../testing/packets.js';
import { dataplaneObject, isRoot } from './fixtures/util.js';

const EXT = '192.168.50.31';
const ACK = { seq: 1001, ack: 7001, flags: TCP_ACK };
const DATA = { ...ACK, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
const np = SVC.nodePort;
/** the commit this build's lb_fe_ids came after (its objects have no such map) */
const BEFORE_FE_IDS = 'e9604c7';
const SKB_CTX_SIZE = 192;

const feKeyOf = (s: TestService) => encodeFeKey({ address: s.address, port: s.port, protocol: s.protocol, scope: s.scope });
/** lb_fe_ids' value for s as the writer makes it: its lb_frontends key, then its value, then its flags */
const slotOf = (d: Datapath, s: TestService, flags = 0) => {
  const b = Buffer.concat([feKeyOf(s), d.map('lb_frontends').lookup(feKeyOf(s))!, Buffer.alloc(4)]);
  b.writeUInt32LE(flags, FE_SLOT.fields.flags.offset);
  return b;
};
const withFlags = (slot: Buffer, flags: number) => {
  const b = Buffer.from(slot);
  b.writeUInt32LE(flags, FE_SLOT.fields.flags.offset);
  return b;
};

const HOOKS = [
  { hook: 'tc', prog: 'lb_tc_ingress', pass: TC_ACT_OK },
  { hook: 'XDP', prog: 'lb_xdp', pass: XDP_PASS },
] as const;

if (!isRoot) {
  test('fe-ids tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); dp.install(BASE_SERVICES); });
  test.after.always(() => dp?.close());
  test.beforeEach(() => { dp!.restore(); dp!.addNodeAddress('192.168.1.10'); dp!.setExternal(true); });


  test.serial('the harness writes lb_fe_ids as the writer does: each frontend\'s key and value at its id', (t) => {
    const d = dp!, ids = d.map('lb_fe_ids');
    t.is(ids.valueSize, FE_SLOT.size);
    for (const s of BASE_SERVICES) t.deepEqual(ids.lookup(encodeU32(s.feId)), slotOf(d, s), `frontend ${s.feId}`);
  });

  for (const { hook, prog, pass } of HOOKS) {
    test.serial(`${hook}: a plain hit takes its frontend from lb_fe_ids, not from lb_frontends`, (t) => {
      const d = dp!, sport = sportFor(np, EXT, 51, 41100), b = openFlow(d, prog, np, EXT, sport);
      // lb_frontends' entry gone, lb_fe_ids' left: only lb_fe_ids can name the frontend now
      d.map('lb_frontends').delete(feKeyOf(np));
      d.resetStats();
      const g = toService(np, EXT, sport, DATA), r = d.run(prog, g.input);
      t.is(r.verdict, pass);
      t.is(r.output.toString('hex'), g.to(b).toString('hex'), 'translated to the flow\'s backend');
      t.deepEqual(d.stats(), { fwd_ct_hit: 1 });
    });

    test.serial(`${hook}: lb_fe_ids' entry stands for the lookup only with the packet's address, port, protocol and the entry's own id, and its scope where the key is twinned`, (t) => {
      const d = dp!, ids = d.map('lb_fe_ids');
      const good = slotOf(d, np);
      const other = Buffer.concat([encodeFeKey({ address: np.address, port: np.port, protocol: 'TCP', scope: 'internal' }), good.subarray(20)]);
      const variants: Array<[string, Buffer, boolean]> = [
        ['the entry as written', good, true],
        ['the other scope, the frontend alone on its key (no device decides)', other, true],
        ['the entry\'s own scope, twinned', withFlags(good, LB_FE_SLOT_F_TWIN), true],
        ['the other scope, twinned', withFlags(other, LB_FE_SLOT_F_TWIN), false],
        ['zeroed (no frontend at the id)', Buffer.alloc(FE_SLOT.size), false],
        ['another address', Buffer.concat([encodeFeKey({ address: '192.168.1.11', port: np.port, protocol: 'TCP', scope: 'external' }), good.subarray(20)]), false],
        ['another port', Buffer.concat([encodeFeKey({ address: np.address, port: np.port + 1, protocol: 'TCP', scope: 'external' }), good.subarray(20)]), false],
        ['another protocol', Buffer.concat([encodeFeKey({ address: np.address, port: np.port, protocol: 'UDP', scope: 'external' }), good.subarray(20)]), false],
        ['another id in the value', Buffer.concat([good.subarray(0, 20), encodeFrontend({ feId: np.feId + 100, maglevOff: 0, maglevM: 0, backendCount: 1, type: 'NodePort', flags: 0, affinityTimeout: 0, affinityGroup: 0 }), Buffer.alloc(4)]), false],
      ];
      let port = 41200;
      for (const [what, slot, taken] of variants) {
        d.restore();
        d.addNodeAddress('192.168.1.10');
        d.setExternal(true);
        const sport = sportFor(np, EXT, 51, port += 10), b = openFlow(d, prog, np, EXT, sport);
        // the lookup finds nothing now: only a packet taken from lb_fe_ids is translated
        d.map('lb_frontends').delete(feKeyOf(np));
        ids.update(encodeU32(np.feId), slot);
        d.resetStats();
        const g = toService(np, EXT, sport, DATA), r = d.run(prog, g.input);
        t.is(r.verdict, pass, what);
        if (taken) {
          t.is(r.output.toString('hex'), g.to(b).toString('hex'), `${what}: taken from lb_fe_ids`);
          t.deepEqual(d.stats(), { fwd_ct_hit: 1 }, what);
        } else {
          t.is(r.output.toString('hex'), g.input.toString('hex'), `${what}: left untranslated, as the lookup decides`);
          t.is(d.stats().fwd_ct_hit, undefined, what);
        }
      }
    });
  }

  for (const { hook, prog } of HOOKS) test.serial(`${hook}: an eTP=Local frontend's internal twin: its flow seen at an external device is decided by the external frontend, as the lookup decides`, (t) => {
    const d = dp!;
    // the same key in both scopes: the external frontend (np) and an internal twin with its own backend
    const twin: TestService = { ...np, feId: 40, scope: 'internal', type: 'NodePort', flags: 0, backends: [{ id: 401, address: '10.244.4.40', port: 8080 }] };
    const outcome = (zeroIds: boolean) => {
      d.restore();
      d.addNodeAddress('192.168.1.10');
      d.addService(twin);
      d.setExternal(false);
      const sport = 41500, b = openFlow(d, prog, twin, '10.244.9.9', sport);
      t.is(b.id, 401, 'the flow made through the internal twin');
      t.is(d.map('lb_fe_ids').lookup(encodeU32(twin.feId))!.readUInt32LE(FE_SLOT.fields.flags.offset), LB_FE_SLOT_F_TWIN, 'the twin flagged');
      t.is(d.map('lb_fe_ids').lookup(encodeU32(np.feId))!.readUInt32LE(FE_SLOT.fields.flags.offset), LB_FE_SLOT_F_TWIN, 'the external frontend flagged');
      if (zeroIds) d.clearFeIds();
      d.setExternal(true);
      d.resetStats();
      const r = d.run(prog, toService(np, '10.244.9.9', sport, DATA).input);
      return { verdict: r.verdict, output: r.output.toString('hex'), stats: d.stats() };
    };
    const taken = outcome(false), looked = outcome(true);
    t.is(taken.stats.fwd_ct_hit, undefined, 'no hit on the twin\'s entry');
    t.deepEqual(taken, looked, 'the same as with every frontend looked up');
  });

  test.serial('the writer: lb_fe_ids holds each written frontend at its id, a deleted one zeroed before lb_frontends loses it; a new writer rebuilds it whole', (t) => {
    const d = dp!, ids = d.map('lb_fe_ids');
    d.reset();
    const one = [SVC.web4, SVC.dns4, np], two = [SVC.web4, np];
    d.installPlan(planOf(one));
    for (const s of one) t.deepEqual(ids.lookup(encodeU32(s.feId)), slotOf(d, s), `frontend ${s.feId} written`);
    // dns4 deleted: zeroed
    d.applyPlanDiff(planOf(one), planOf(two));
    t.deepEqual(ids.lookup(encodeU32(SVC.dns4.feId)), Buffer.alloc(FE_SLOT.size), 'a deleted frontend\'s entry zeroed');
    t.deepEqual(ids.lookup(encodeU32(SVC.web4.feId)), slotOf(d, SVC.web4));
    // entries another build left (an id without a frontend, a stale value): a new writer's first apply rewrites them
    ids.update(encodeU32(SVC.dns4.feId), slotOf(d, SVC.web4));
    ids.update(encodeU32(77), slotOf(d, np));
    ids.update(encodeU32(np.feId), Buffer.alloc(FE_SLOT.size));
    const maps = d.bpfMaps();
    try {
      maps.apply(diffPlans(planOf(two), planOf([...two, SVC.dns6])));
    } finally {
      maps.close();
    }
    t.deepEqual(ids.lookup(encodeU32(SVC.dns4.feId)), Buffer.alloc(FE_SLOT.size), 'an id without a frontend zeroed');
    t.deepEqual(ids.lookup(encodeU32(77)), Buffer.alloc(FE_SLOT.size), 'an id without a frontend zeroed');
    for (const s of [...two, SVC.dns6]) t.deepEqual(ids.lookup(encodeU32(s.feId)), slotOf(d, s), `frontend ${s.feId} rewritten`);

    // a key in both scopes (an eTP=Local external address): both flagged, whichever came first; the
    // one left alone unflagged once the other is deleted; a new writer flags both again
    const twin: TestService = { ...np, feId: 40, scope: 'internal', flags: 0, backends: [{ id: 401, address: '10.244.4.40', port: 8080 }] };
    const three = [...two, SVC.dns6], four = [...three, twin];
    d.applyPlanDiff(planOf(three), planOf(four));
    t.deepEqual(ids.lookup(encodeU32(twin.feId)), slotOf(d, twin, LB_FE_SLOT_F_TWIN), 'the new twin flagged');
    t.deepEqual(ids.lookup(encodeU32(np.feId)), slotOf(d, np, LB_FE_SLOT_F_TWIN), 'the frontend already there flagged');
    d.applyPlanDiff(planOf(four), planOf(three));
    t.deepEqual(ids.lookup(encodeU32(twin.feId)), Buffer.alloc(FE_SLOT.size));
    t.deepEqual(ids.lookup(encodeU32(np.feId)), slotOf(d, np), 'alone again: unflagged');
    d.applyPlanDiff(planOf(three), planOf(four));
    ids.update(encodeU32(np.feId), slotOf(d, np));
    d.applyPlanDiff(planOf(four), planOf([...four, SVC.web6]));
    t.deepEqual(ids.lookup(encodeU32(np.feId)), slotOf(d, np, LB_FE_SLOT_F_TWIN), 'flagged again by a new writer\'s rebuild');
    d.install(BASE_SERVICES);
  });

  test('an upgrade over the pins of the build before lb_fe_ids: the map made empty, hits translated by the lookup until the writer fills it', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kbp-feids-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const older = buildObjectAt(BEFORE_FE_IDS, dir, 'kbp-before-fe-ids.bpf.o');
    if (!older) return t.pass(`skipped: commit ${BEFORE_FE_IDS} is not in this checkout's history`);
    const old = new Datapath(older, 'feids');
    t.teardown(() => old.close());
    t.false(old.mapNames().includes('lb_fe_ids'), 'the old build has no lb_fe_ids');
    const s = SVC.web4, client = '10.244.9.9', sport = 47100, b = pick(s, client, sport);
    old.installPlan(planOf([s]));
    old.run('lb_tc_ingress', toService(s, client, sport).input);
    old.run('lb_tc_ingress', toService(s, client, sport, ACK).input);

    const st = AgentStateFile.forPinRoot(old.pinRoot, join(dir, 'state.json'));
    st.setObjectIds(Object.fromEntries(old.mapNames().map((n) => [n, old.map(n).id])), {});
    st.save();
    const d = loadDataplane({ pinRoot: old.pinRoot, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(old.pinRoot, join(dir, 'state.json')) });
    t.teardown(() => d.object.close());
    d.finishMigration();
    const ids = d.object.map('lb_fe_ids');
    t.deepEqual(ids.lookup(encodeU32(s.feId)), Buffer.alloc(FE_SLOT.size), 'made empty by this load');
    const run = (data: Buffer) => d.object.program('lb_tc_ingress').testRun({ data, ctx: Buffer.alloc(SKB_CTX_SIZE), dataOutSize: data.length + 256 });
    const g = toService(s, client, sport, DATA);
    t.deepEqual(run(g.input).data, g.to(b), 'the old flow\'s hit translated through the lookup');
    // the agent's first apply (here: a frontend added) rebuilds lb_fe_ids from lb_frontends first
    d.maps.apply(diffPlans(planOf([s]), planOf([s, SVC.dns4])));
    const key = encodeFeKey({ address: s.address, port: s.port, protocol: s.protocol, scope: s.scope });
    t.deepEqual(ids.lookup(encodeU32(s.feId)), Buffer.concat([key, d.maps.map('lb_frontends').lookup(key)!, Buffer.alloc(4)]), 'filled from lb_frontends');
    const out = run(g.input);
    t.is(out.retval, TC_ACT_OK);
    t.deepEqual(out.data, g.to(b), 'and the hit translated through it');

    // a later load over these pins (a restart, or an upgrade after a downgrade to a build that does
    // not write lb_fe_ids) empties it: the entries may be another build's
    ids.update(encodeU32(77), ids.lookup(encodeU32(s.feId))!);
    const again = loadDataplane({ pinRoot: old.pinRoot, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(old.pinRoot, join(dir, 'state.json')) });
    t.teardown(() => again.object.close());
    again.finishMigration();
    t.is(again.object.map('lb_fe_ids').id, ids.id, 'the pinned map reused');
    t.deepEqual(ids.lookup(encodeU32(77)), Buffer.alloc(FE_SLOT.size), 'emptied at the load');
    t.deepEqual(ids.lookup(encodeU32(s.feId)), Buffer.alloc(FE_SLOT.size), 'emptied at the load');
  });
}
