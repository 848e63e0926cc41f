// A restart with a smaller lb_maglev_slots (--bpf-map-max lb_maglev_slots=N, what the agent's own
// out-of-memory error suggests) over pinned maps whose Maglev tables lie past the new end: the
// tables are moved into free room of the new array and their frontends follow (migrate.ts
// planMoves), so those Services keep translating from the load on, not only after the first sync;
// the map writer then counts every table inside the array. Needs root and bpffs.
import test from 'ava';
import * as L from '../../src/dataplane/bpf/layout.js';
import { loadDataplane, type Loaded } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { regionSize } from '../../src/dataplane/bpf/slot-alloc.js';
import type { MapSizes } from '../../src/dataplane/bpf/map-sizes.js';
import { OBJECT_PATH, type TestService } from '../../testing/datapath.js';
import { toService } from '../../testing/datapath-rows.js';
import { tempStatePath } from './fixtures/dataplane.js';
import { isRoot, tempPinRoot } from './fixtures/util.js';

const M = 251;
/** the smaller array, in slots (far above the largest table's region) */
const SMALL = 1 << 20;

interface Placed extends TestService { off: number }
const svc = (n: number, off: number, backend = n): Placed => ({
  feId: 10 + n, address: `10.96.7.${n}`, port: 80, protocol: 'TCP', scope: 'internal', off,
  backends: [{ id: 20 + backend, address: `10.244.7.${backend}`, port: 8080 }],
});
// a table inside the smaller array; one past its end shared by two frontends (as equal endpoint
// sets share a table); one of its own at the very end of the default array
const inside = svc(1, 0);
const shared = [svc(2, SMALL + 4096), svc(3, SMALL + 4096, 2)];
const last = svc(4, L.LB_MAGLEV_SLOTS_MAX - regionSize(M));
const all = [inside, ...shared, last];

function feKey(s: Placed): Buffer {
  return L.encodeFeKey({ address: s.address, port: s.port, protocol: 'TCP', scope: 'internal' });
}

/** Writes s with its table at s.off (two frontends of one table write the same region twice). */
function write(l: Loaded, s: Placed): void {
  const b = s.backends[0]!;
  const m = (n: L.MapName) => l.maps.map(n);
  m('lb_backends').update(L.encodeU32(b.id), L.encodeBackend({ address: b.address, port: b.port, protocol: 'TCP', flags: 0 }));
  m('lb_maglev_slots').writeMmap(L.encodeMaglevTable(new Uint32Array(M).fill(b.id)), s.off * 4);
  m('lb_slots').update(L.encodeSlotKey({ feId: s.feId, slot: 0 }), L.encodeU32(b.id));
  m('lb_members').update(L.encodeMemberKey({ feId: s.feId, backendId: b.id }), Buffer.of(1));
  m('lb_revnat').update(L.encodeU32(s.feId), L.encodeRevNat({ address: s.address, port: s.port }));
  m('lb_frontends').update(feKey(s), L.encodeFrontend({ feId: s.feId, maglevOff: s.off, maglevM: M, backendCount: 1, type: 'ClusterIP', flags: 0, affinityTimeout: 0, affinityGroup: 0 }));
}

/** One SYN through lb_tc_ingress: did it leave DNATed to s's backend? */
function translated(l: Loaded, s: Placed, sport: number): boolean {
  const f = toService(s, '10.244.5.9', sport);
  const r = l.object.program('lb_tc_ingress').testRun({ data: f.input, ctx: Buffer.alloc(192), dataOutSize: f.input.length + 256 });
  return r.retval === 0 && r.data.equals(f.to(s.backends[0]!));
}

function frontendOf(l: Loaded, s: Placed): L.FrontendValue {
  return L.decodeFrontend(l.maps.map('lb_frontends').lookup(feKey(s))!);
}

if (!isRoot) {
  test('datapath tests need root', (t) => {
    t.log('skipped: run as root (npm run test:datapath)');
    t.pass();
  });
} else {
  test('a smaller lb_maglev_slots at restart: tables past its end move into free room, their frontends follow, and the Services translate at once', (t) => {
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    const load = (sizes?: MapSizes) => loadDataplane({ pinRoot: root, objectPath: OBJECT_PATH, state: AgentStateFile.forPinRoot(root, statePath), ...(sizes && { mapSizes: sizes }) });

    // the old agent's programs stay loaded through the restart, as they stay attached until the
    // new ones replace them: they read the old array through the same lb_frontends
    const a = load();
    t.teardown(() => a.object.close());
    a.maps.writeConfig({ hashSeed: 1, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
    for (const s of all) write(a, s);
    all.forEach((s, i) => t.true(translated(a, s, 40000 + i), `${s.address} before the restart`));

    const b = load({ lb_maglev_slots: SMALL });
    try {
      t.deepEqual(b.migrations.map((m) => [m.name, m.how]), [['lb_maglev_slots', 'copy']]);
      const carried = b.finishMigration();
      t.like(carried.find((m) => m.name === 'lb_maglev_slots'), { dropped: 0 });
      all.forEach((s, i) => t.true(translated(b, s, 41000 + i), `${s.address} right after the restart, before any sync`));
      all.forEach((s, i) => t.true(translated(a, s, 42000 + i), `${s.address} through the old programs, until the switch`));
      const fes = all.map((s) => frontendOf(b, s));
      t.is(fes[0]!.maglevOff, 0, 'a table inside the new array stays where it was');
      t.is(fes[1]!.maglevOff, fes[2]!.maglevOff, 'a shared table is moved once: both frontends point at it');
      const regions = [fes[0]!, fes[1]!, fes[3]!].map((f) => ({ off: f.maglevOff, end: f.maglevOff + regionSize(f.maglevM) }));
      for (const r of regions) t.true(r.end <= SMALL, `region ${r.off}-${r.end} inside the array of ${SMALL} slots`);
      regions.sort((x, y) => x.off - y.off);
      for (let i = 1; i < regions.length; i++) t.true(regions[i - 1]!.end <= regions[i]!.off, 'regions do not overlap');
      t.deepEqual(b.maps.maglevSlotUse(), { used: 3 * regionSize(M), quarantined: 0, capacity: SMALL }, 'the writer finds three tables, all inside the array');
    } finally {
      b.object.close();
    }
  });
}
