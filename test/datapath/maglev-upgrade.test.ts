// Upgrade from the hash-of-maps Maglev layout (one inner array per table in lb_maglev, the frontend
// holding the table's key; last built at HASH_OF_MAPS_COMMIT, testing/hash-of-maps-object.ts) to lb_maglev_slots: the maps an agent
// of that build pinned are carried over before the new programs attach (migrate.ts carryMaglev).
// The old object is built from that commit's bpf/; its maps are filled as its agent wrote them.
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as L from '../../src/dataplane/bpf/layout.js';
import { loadDataplane } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { pickBackend } from '../../src/dataplane/bpf/hash.js';
import { BpfMap } from '../../src/dataplane/bpf/native/map.js';
import { BpfObject } from '../../src/dataplane/bpf/native/object.js';
import type { BpfProgram } from '../../src/dataplane/bpf/native/program.js';
import { MapType } from '../../src/dataplane/bpf/native/uapi.js';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';
import { buildMaglevTable, maglevSize } from '../../src/plan/maglev.js';
import { buildPlan } from '../../src/plan/plan.js';
import { diffPlans } from '../../src/plan/diff.js';
import { frame, parse, tcp } from '../../testing/packets.js';
import { buildHashOfMapsObject, HASH_OF_MAPS_COMMIT } from '../../testing/hash-of-maps-object.js';
import { dataplaneObject, isRoot, tempPinRoot } from './fixtures/util.js';

const SEED = 0x5eed1234;
const SKB_CTX_SIZE = 192;

/** the backend address a SYN from client:sport to the VIP was translated to */
function translatedTo(prog: BpfProgram, client: string, sport: number, vip: string, port: number): string {
  const r = prog.testRun({ data: frame({ src: client, dst: vip, l4: tcp(sport, port) }), ctx: Buffer.alloc(SKB_CTX_SIZE), dataOutSize: 512 });
  return parse(r.data).dst;
}

const BACKENDS = [{ id: 11, address: '10.244.1.2', port: 8080 }, { id: 12, address: '10.244.2.3', port: 8080 }, { id: 13, address: '10.244.3.4', port: 8080 }];
const FRONTENDS = [
  { feId: 1, address: '10.96.0.10', port: 80, type: 'ClusterIP' as const },
  { feId: 2, address: '10.96.0.11', port: 80, type: 'ClusterIP' as const },
];

if (!isRoot) {
  test('maglev-upgrade tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('maps of the hash-of-maps layout are carried into lb_maglev_slots: same backend per flow, one region per shared table', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kbp-hom-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const older = buildHashOfMapsObject(dir);
    if (!older) return t.pass(`skipped: commit ${HASH_OF_MAPS_COMMIT} is not in this checkout's history`);
    const root = tempPinRoot(t);
    const statePath = join(dir, 'state.json');

    // the old build, its maps as its agent wrote them: two frontends sharing table 7
    const old = BpfObject.open(older, { pinRoot: root });
    old.load();
    const m = maglevSize(BACKENDS.length);
    const table = buildMaglevTable(BACKENDS, SEED, m);
    const inner = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_mg_7', keySize: 4, valueSize: L.MAGLEV_ELEM.size, maxEntries: L.maglevElems(m), flags: (1 << 12) | (1 << 10) });
    inner.writeMmap(L.encodeMaglevTable(table));
    old.map('lb_maglev').updateFd(L.encodeU32(7), inner.fd);
    inner.close();
    old.map('lb_config').update(L.encodeU32(0), L.encodeConfig({ hashSeed: SEED, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 }));
    for (const b of BACKENDS) old.map('lb_backends').update(L.encodeU32(b.id), L.encodeBackend({ address: b.address, port: b.port, protocol: 'TCP', flags: 0 }));
    for (const f of FRONTENDS) {
      BACKENDS.forEach((b, i) => {
        old.map('lb_slots').update(L.encodeSlotKey({ feId: f.feId, slot: i }), L.encodeU32(b.id));
        old.map('lb_members').update(L.encodeMemberKey({ feId: f.feId, backendId: b.id }), Buffer.of(1));
      });
      old.map('lb_revnat').update(L.encodeU32(f.feId), L.encodeRevNat({ address: f.address, port: f.port }));
      // field 4 is the table's lb_maglev key in this layout
      old.map('lb_frontends').update(L.encodeFeKey({ address: f.address, port: f.port, protocol: 'TCP', scope: 'internal' }),
        L.encodeFrontend({ feId: f.feId, maglevOff: 7, maglevM: m, backendCount: BACKENDS.length, type: f.type, flags: 0, affinityTimeout: 0, affinityGroup: 0 }).subarray(0, 20));
    }
    const ids = Object.fromEntries(old.mapNames().map((n) => [n, old.map(n).id]));
    const st = AgentStateFile.forPinRoot(root, statePath);
    st.setObjectIds(ids, {});
    st.save();
    // the old program balances by the table (the check that the old maps are what its agent wrote)
    const byId = new Map(BACKENDS.map((b) => [b.id, b.address]));
    const want = (_f: typeof FRONTENDS[number], sport: number) => byId.get(pickBackend(table, '10.244.9.9', sport, 6, SEED))!;
    for (let sport = 40000; sport < 40008; sport++) t.is(translatedTo(old.program('lb_tc_ingress'), '10.244.9.9', sport, FRONTENDS[0]!.address, 80), want(FRONTENDS[0]!, sport));
    old.close();

    // the new build over those pins
    const d = loadDataplane({ pinRoot: root, objectPath: dataplaneObject(), state: AgentStateFile.forPinRoot(root, statePath) });
    t.teardown(() => d.object.close());
    t.deepEqual(d.migrations.filter((x) => x.name === 'lb_frontends' || x.name === 'lb_maglev').map((x) => [x.name, x.how]), [['lb_frontends', 'maglev'], ['lb_maglev', 'recreate']]);
    // the agent's own maps, before any program attaches (dataplane.ts init)
    const done = d.finishMigration((n) => !['lb_ct', 'lb_ct_syn', 'lb_affinity', 'lb_sock_revnat', 'lb_stats', 'lb_fe_stats', 'lb_frags', 'lb_reject_rl'].includes(n));
    t.like(done.find((x) => x.name === 'lb_frontends'), { how: 'maglev', copied: 2, dropped: 0, newer: 0 });
    d.finishMigration();
    t.false(existsSync(join(root, 'lb_maglev')), 'the old hash-of-maps is unpinned');
    t.false(readdirSync(root).includes('upgrade'));
    const offs = FRONTENDS.map((f) => L.decodeFrontend(d.maps.map('lb_frontends').lookup(L.encodeFeKey({ address: f.address, port: f.port, protocol: 'TCP', scope: 'internal' }))!));
    t.is(offs[0]!.maglevOff, offs[1]!.maglevOff, 'one region for the shared table');
    t.is(offs[0]!.maglevM, m);
    // new flows through the new program land where the old table sent them, on both frontends
    for (const f of FRONTENDS) {
      // each frontend its own client ports: a SYN on a port with a live flow is that flow's
      for (let sport = 41000 + f.feId * 100; sport < 41016 + f.feId * 100; sport++) t.is(translatedTo(d.object.program('lb_tc_ingress'), '10.244.9.9', sport, f.address, 80), want(f, sport), `${f.address} sport ${sport}`);
    }
    // the read-back plan is what compile would build: nothing to write at the first sync but names
    const back = d.maps.readPlan();
    t.is(back.tables.size, 1);
    t.deepEqual(d.maps.readTable([...back.tables.keys()][0]!, m), table);
    t.is(d.maps.maglevSlotUse().used, Math.ceil(m / 2) * 2);
    const state: NodeState = { frontends: FRONTENDS.map((f): NodeFrontend => ({
      service: `default/s${f.feId}`, portName: '', type: f.type, address: f.address, port: f.port, protocol: 'TCP', scope: 'internal',
      backends: BACKENDS.map((b) => ({ address: b.address, port: b.port, terminating: false, local: false })),
      sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
    })) };
    const ops = diffPlans(back, buildPlan(state, back, { seed: SEED, maglevSizing: 'exact' }));
    t.deepEqual(ops.filter((o) => o.op !== 'upsertFrontend').map((o) => o.op), [], 'no table or backend rewritten');
  });
}
