// --bpf-map-max on the real kernel (src/dataplane/bpf/map-sizes.ts): the data plane's object loaded
// with its Service maps sized past lb_consts.h's bounds passes the verifier, and a Service whose
// frontend id, backend id and Maglev region lie past those bounds is translated (BPF_PROG_TEST_RUN);
// a restart with another size carries the entries over (migrate.ts), a smaller one drops the ids that
// no longer fit (a Maglev table past a smaller array's end moves: maglev-shrink.test.ts). Needs root and bpffs.
import test from 'ava';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import * as L from '../../src/dataplane/bpf/layout.js';
import { loadDataplane, startLoad, type Loaded } from '../../src/dataplane/bpf/loader.js';
import { SockTerminator, sockTermObjectPath } from '../../src/dataplane/bpf/sock-term.js';
import { AgentStateFile, defaultStatePath } from '../../src/dataplane/bpf/agent-state-file.js';
import { BpfDataplane } from '../../src/dataplane/bpf/dataplane.js';
import { BpfMap, numPossibleCpus } from '../../src/dataplane/bpf/native/map.js';
import { defaultCtEntries, type MapSizes } from '../../src/dataplane/bpf/map-sizes.js';
import * as limits from '../../src/plan/limits.js';
import { OBJECT_PATH, type TestService } from '../../testing/datapath.js';
import { keepFlows, newOrphanCache } from '../../src/dataplane/bpf/ct-orphan.js';
import { TCP_ACK } from '../../testing/packets.js';
import { toService } from '../../testing/datapath-rows.js';
import { tempStatePath } from './fixtures/dataplane.js';
import { isRoot, tempPinRoot } from './fixtures/util.js';

const D = limits.DEFAULT_ID_LIMITS;
const M = 251;

/** A ClusterIP of one backend with every id and its table past the compiled-in bounds. */
const svc = {
  feId: D.frontendIds + 7, address: '10.96.0.77', port: 80, protocol: 'TCP', scope: 'internal',
  backends: [{ id: D.backends + 9, address: '10.244.9.9', port: 8080 }],
} satisfies TestService;
const OFF = L.LB_MAGLEV_SLOTS_MAX + 2 * 1024;

function writeService(l: Loaded): void {
  const b = svc.backends[0]!;
  const m = (n: L.MapName) => l.maps.map(n);
  m('lb_backends').update(L.encodeU32(b.id), L.encodeBackend({ address: b.address, port: b.port, protocol: 'TCP', flags: 0 }));
  m('lb_maglev_slots').writeMmap(L.encodeMaglevTable(new Uint32Array(M + 1).fill(b.id)), OFF * 4);
  m('lb_slots').update(L.encodeSlotKey({ feId: svc.feId, slot: 0 }), L.encodeU32(b.id));
  m('lb_members').update(L.encodeMemberKey({ feId: svc.feId, backendId: b.id }), Buffer.of(1));
  m('lb_revnat').update(L.encodeU32(svc.feId), L.encodeRevNat({ address: svc.address, port: svc.port }));
  m('lb_frontends').update(L.encodeFeKey({ address: svc.address, port: svc.port, protocol: 'TCP', scope: 'internal' }),
    L.encodeFrontend({ feId: svc.feId, maglevOff: OFF, maglevM: M, backendCount: 1, type: 'ClusterIP', flags: 0, affinityTimeout: 0, affinityGroup: 0 }));
}

/** One SYN through lb_tc_ingress: whether it left DNATed to the backend, and the frontend's packet count. */
function syn(l: Loaded, sport: number): { translated: boolean; feFound: boolean; packets: number } {
  const f = toService(svc, '10.244.5.9', sport);
  const ctx = Buffer.alloc(192);
  const r = l.object.program('lb_tc_ingress').testRun({ data: f.input, ctx, dataOutSize: f.input.length + 256 });
  const v = l.maps.map('lb_fe_stats').lookup(L.encodeU32(svc.feId));
  return { translated: r.retval === 0 && r.data.equals(f.to(svc.backends[0]!)), feFound: !!v, packets: v ? Number(L.decodeFeStatsPerCpu(v, numPossibleCpus()).packets) : 0 };
}

if (!isRoot) {
  test('datapath tests need root', (t) => {
    t.log('skipped: run as root (npm run test:datapath)');
    t.pass();
  });
} else {
  test('startLoad says before the verifier runs what each pinned map will hold, and sets the plan\'s id limits then (a fresh node plans beside the load)', async (t) => {
    t.teardown(() => limits.setIdLimits(D));
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    const up: MapSizes = {
      lb_maglev_slots: L.LB_MAGLEV_SLOTS_MAX + 4096, lb_revnat: D.frontendIds + 64, lb_fe_stats: D.frontendIds + 64,
      lb_backends: D.backends + 64, lb_frontends: 1024, lb_ct_syn: 1001,
    };
    const start = () => startLoad({ pinRoot: root, objectPath: OBJECT_PATH, state: AgentStateFile.forPinRoot(root, statePath), mapSizes: up });
    const s = start();
    t.false(s.reused, 'nothing pinned yet: a fresh data plane');
    t.deepEqual([limits.LB_FE_ID_MAX, limits.BACKEND_ID_MAX], [D.frontendIds + 64, D.backends + 63], 'id limits set before the verifier');
    const l = await s.loaded;
    let pinnedMaps = 0;
    try {
      for (const name of l.object.mapNames()) {
        if (!existsSync(join(root, name))) continue;
        const pinned = BpfMap.fromPin(join(root, name));
        try {
          t.is(s.maxEntries.get(name), pinned.maxEntries, name);
        } finally {
          pinned.close();
        }
        pinnedMaps++;
      }
    } finally {
      l.object.close();
    }
    t.true(pinnedMaps > 10);
    const again = start();
    t.true(again.reused, 'a restart over the pins is not fresh');
    (await again.loaded).object.close();
  });

  test('maps sized up at load: the verifier accepts the programs, entries past the old bounds translate; restarts carry or drop them', (t) => {
    t.teardown(() => limits.setIdLimits(D));
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    // the object the datapath table runs (KBP_BPF_OBJECT or bpf/kbp.bpf.o): the VM tier runs this file too
    const obj = OBJECT_PATH;
    const up: MapSizes = {
      lb_maglev_slots: L.LB_MAGLEV_SLOTS_MAX + 4096, lb_revnat: D.frontendIds + 64, lb_fe_stats: D.frontendIds + 64,
      lb_backends: D.backends + 64, lb_frontends: 1024, lb_ct: 4096, lb_ct_syn: 1001,
    };
    const load = (sizes?: MapSizes) => loadDataplane({ pinRoot: root, objectPath: obj, state: AgentStateFile.forPinRoot(root, statePath), ...(sizes && { mapSizes: sizes }) });

    const a = load(up);
    try {
      t.is(a.maps.map('lb_maglev_slots').maxEntries, (L.LB_MAGLEV_SLOTS_MAX + 4096) / 2);
      t.is(a.maps.map('lb_revnat').maxEntries, D.frontendIds + 64);
      if (a.object.mapNames().includes('lb_fe_ids')) t.is(a.object.map('lb_fe_ids').maxEntries, D.frontendIds + 64, 'lb_fe_ids, indexed by frontend id, with lb_revnat');
      t.is(a.maps.map('lb_backends').maxEntries, D.backends + 64);
      t.is(a.maps.map('lb_frontends').maxEntries, 1024, 'sized down too');
      t.is(a.maps.map('lb_ct').maxEntries, 4096);
      // per-CPU LRU lists: a multiple of the CPUs, as the kernel rounds it (so the pin matches next time)
      const pinned = BpfMap.fromPin(join(root, 'lb_ct_syn'));
      t.teardown(() => pinned.close());
      t.is(pinned.maxEntries, Math.ceil(1001 / numPossibleCpus()) * numPossibleCpus());
      t.deepEqual([limits.LB_FE_ID_MAX, limits.BACKEND_ID_MAX], [D.frontendIds + 64, D.backends + 63], 'the plan\'s id ranges follow the loaded maps');
      a.maps.writeConfig({ hashSeed: 1, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
      writeService(a);
      t.deepEqual(syn(a, 41000), { translated: true, feFound: true, packets: 1 }, 'frontend id, backend id and Maglev region past lb_consts.h\'s bounds');
      // the UDP socket terminator's object shares the pinned maps: it must reuse them at their sizes
      // (bpf_sock_destroy: 6.5 and later; the VM's 6.1 cannot load it whatever the sizes)
      const [maj, min] = release().split('.').map(Number);
      if (maj! > 6 || (maj === 6 && min! >= 5)) {
        const path = sockTermObjectPath(obj);
        if (existsSync(path)) t.notThrows(() => SockTerminator.load(root, path).close(), 'lb_sock_term.bpf.o loads over the sized pins');
      }
    } finally {
      a.object.close();
    }

    // a restart with a larger Maglev array: moved aside, copied through the mapping, nothing else changed
    const b = load({ ...up, lb_maglev_slots: L.LB_MAGLEV_SLOTS_MAX + 8192 });
    try {
      t.deepEqual(b.migrations.map((m) => [m.name, m.how]), [['lb_maglev_slots', 'copy']]);
      const carried = b.finishMigration();
      t.deepEqual(carried.map((m) => [m.name, m.copied, m.dropped]), [['lb_maglev_slots', (M + 1) / 2, 0]]);
      t.false(readdirSync(root).includes('upgrade'));
      t.deepEqual(syn(b, 41001), { translated: true, feFound: true, packets: 2 }, 'a new flow reads the copied region');
    } finally {
      b.object.close();
    }

    // back to the defaults: the table past the array's end moves below it (maglev-shrink.test.ts),
    // but the backend and frontend ids past the defaults are dropped: nothing to translate to
    const c = load();
    try {
      const carried = Object.fromEntries(c.finishMigration().map((m) => [m.name, m]));
      t.like(carried.lb_maglev_slots, { copied: (M + 1) / 2, dropped: 0 });
      t.is(carried.lb_backends?.dropped, 1);
      t.is(carried.lb_fe_stats?.how, 'recreate', 'per-CPU counters start again');
      t.deepEqual([limits.LB_FE_ID_MAX, limits.BACKEND_ID_MAX], [D.frontendIds, D.backends - 1]);
      const r = syn(c, 41002);
      t.false(r.translated, 'no backend past lb_backends\' end');
      t.false(r.feFound);
    } finally {
      c.object.close();
    }
  });

  test('fewer per-CPU counters than frontend ids (lb_fe_stats below lb_revnat): ids follow lb_revnat; a frontend past the counters is translated uncounted and its flows are kept at its deletion', async (t) => {
    // what a node of many CPUs gets by default (defaultFeStatsEntries): the counters are per CPU, ids
    // are not, so a small lb_fe_stats must not cap the Services the node serves
    t.teardown(() => limits.setIdLimits(D));
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    const l = loadDataplane({ pinRoot: root, objectPath: OBJECT_PATH, state: AgentStateFile.forPinRoot(root, statePath), mapSizes: { lb_revnat: D.frontendIds + 64, lb_fe_stats: 8, lb_backends: D.backends + 64, lb_maglev_slots: L.LB_MAGLEV_SLOTS_MAX + 4096 } });
    try {
      t.is(limits.LB_FE_ID_MAX, D.frontendIds + 64, 'frontend ids are lb_revnat\'s, not the counters\'');
      l.maps.writeConfig({ hashSeed: 1, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
      writeService(l);
      t.deepEqual(syn(l, 42000), { translated: true, feFound: false, packets: 0 }, 'translated, with no counter to add to');
      // the handshake's ACK makes the flow established (lb_ct); the frontend's deletion keeps it
      const ack = toService(svc, '10.244.5.9', 42000, { flags: TCP_ACK, seq: 1001, ack: 5001 });
      l.object.program('lb_tc_ingress').testRun({ data: ack.input, ctx: Buffer.alloc(192), dataOutSize: ack.input.length + 256 });
      const r = await keepFlows(l.maps, new Set([svc.feId]), newOrphanCache());
      t.true(r.orphaned >= 1, `an uncounted frontend may have flows: they are kept (${r.orphaned} orphaned)`);
      t.is(l.maps.readFrontendStats(svc.feId).size, 0, 'reading the counters stops at the map\'s end');
    } finally {
      l.object.close();
    }
  });

  test('socket hooks off: a fresh data plane makes lb_sock_revnat with one entry; a restart with them on carries it over at its default size', async (t) => {
    const root = tempPinRoot(t, false);
    t.teardown(() => rmSync(defaultStatePath(root), { force: true }));
    const revnatSize = () => {
      const m = BpfMap.fromPin(join(root, 'lb_sock_revnat'));
      try { return m.maxEntries; } finally { m.close(); }
    };
    const off = new BpfDataplane({ pinRoot: root, objectPath: OBJECT_PATH, seed: 1, socketLb: false, cgroup: '', nodeAddresses: () => [], ctSweepMs: 0, watchLinks: false });
    off.startLoad();
    t.true(off.fresh());
    await off.close();
    t.is(revnatSize(), 1, 'nothing reads it with the hooks off');
    const ct = BpfMap.fromPin(join(root, 'lb_ct'));
    t.teardown(() => ct.close());
    t.is(ct.maxEntries, defaultCtEntries(cpus().length, { lb_ct: L.LB_CT_MAX, lb_ct_syn: L.LB_CT_SYN_MAX }).lb_ct, 'the other maps at their defaults (lb_ct: kube-proxy\'s sizing for this node)');

    // what an agent with the hooks on loads (no --bpf-map-max): the pinned map is carried over
    const on = loadDataplane({ pinRoot: root, objectPath: OBJECT_PATH, state: AgentStateFile.forPinRoot(root) });
    try {
      t.true(on.reused, 'a restart: the other pins are reused');
      t.deepEqual(on.migrations.map((m) => m.name), ['lb_sock_revnat']);
      on.finishMigration();
      t.is(on.maps.map('lb_sock_revnat').maxEntries, L.LB_SOCK_REVNAT_MAX);
    } finally {
      on.object.close();
    }
    t.is(revnatSize(), L.LB_SOCK_REVNAT_MAX);
    t.false(readdirSync(root).includes('upgrade'), 'the old map is gone');
  });

  test('a size the kernel refuses fails the load, naming the map', (t) => {
    const root = tempPinRoot(t, false);
    const statePath = tempStatePath(t);
    // a valid u32, but a per-CPU array of 2^32-1 entries is more than the kernel allocates
    const e = t.throws(() => loadDataplane({ pinRoot: root, objectPath: OBJECT_PATH, state: AgentStateFile.forPinRoot(root, statePath), mapSizes: { lb_fe_stats: 0xffffffff } }));
    // (t.true over a test: the VM's mini-ava has no t.regex)
    t.true(/^load \S+\.o: /.test(e.message), e.message);
    t.true(e.message.includes('lb_fe_stats'), e.message);
  });
}
