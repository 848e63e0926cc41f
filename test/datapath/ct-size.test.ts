// lb_ct and lb_ct_syn sized as kube-proxy sizes nf_conntrack (map-sizes.ts defaultCtEntries, loader.ts
// sizeCtByCpus): an upgrade from a build whose maps had the object's sizes (524,288 / 65,536), and a
// restart with other --conntrack-* values, find the pinned conntrack maps of another size; they are
// carried over (migrate.ts, 'copy'), and an established flow and a handshake in flight keep their
// backend through it, though a new flow now picks another. Needs root and bpffs.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataplane, type Loaded } from '../../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';
import { defaultCtEntries, type ConntrackSizing, type MapSizes } from '../../src/dataplane/bpf/map-sizes.js';
import * as L from '../../src/dataplane/bpf/layout.js';
import { numPossibleCpus } from '../../src/dataplane/bpf/native/map.js';
import { Datapath, SVC, TC_ACT_OK, type TestBackend } from '../../testing/datapath.js';
import { BASE_SERVICES, pick, toService } from '../../testing/datapath-rows.js';
import { TCP_ACK } from '../../testing/packets.js';
import { isRoot, tempPinRoot } from './fixtures/util.js';

const OBJECT_SIZES = { lb_ct: L.LB_CT_MAX, lb_ct_syn: L.LB_CT_SYN_MAX };

if (!isRoot) {
  test('ct-size tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('conntrack maps of another size (an upgrade, other --conntrack-max-per-core): carried over, flows and handshakes keep their backend', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kbp-ctsize-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // the earlier build's agent: the object's own sizes
    const old = new Datapath(undefined, 'ctsize', { mapSizes: OBJECT_SIZES });
    t.teardown(() => old.close());
    old.install(BASE_SERVICES);
    const s = SVC.web4, client = '10.244.9.9';
    const est = 47100, shake = 47101;
    const b = pick(s, client, est), bShake = pick(s, client, shake);
    const ack = (sport: number) => toService(s, client, sport, { flags: TCP_ACK, seq: 1001, ack: 5001 });
    // an established flow (SYN, then the ACK that moves it into lb_ct) and a handshake (a SYN: lb_ct_syn)
    t.deepEqual(old.run('lb_tc_ingress', toService(s, client, est).input).output, toService(s, client, est).to(b));
    t.deepEqual(old.run('lb_tc_ingress', ack(est).input).output, ack(est).to(b));
    t.deepEqual(old.run('lb_tc_ingress', toService(s, client, shake).input).output, toService(s, client, shake).to(bShake));

    const statePath = join(dir, 'state.json');
    const st = AgentStateFile.forPinRoot(old.pinRoot, statePath);
    st.setObjectIds(Object.fromEntries(old.mapNames().map((n) => [n, old.map(n).id])), {});
    st.save();
    const load = (conntrack?: ConntrackSizing): Loaded => loadDataplane({ pinRoot: old.pinRoot, state: AgentStateFile.forPinRoot(old.pinRoot, statePath), ...(conntrack && { conntrack }) });
    const roundCpus = (n: number) => Math.ceil(n / numPossibleCpus()) * numPossibleCpus();

    // every slot of the table now names another backend (still a member): only conntrack keeps a
    // flow where it was, a new flow goes to the other one
    const other = s.backends.find((x) => x.id !== b.id && x.id !== bShake.id) as TestBackend;
    old.writeTable(s.feId + 1000, new Uint32Array(old.tables.get(s.feId + 1000)!.length).fill(other.id));
    let sport = 47200;
    const check = (d: Loaded, what: string) => {
      const run = (data: Buffer) => d.object.program('lb_tc_ingress').testRun({ data, ctx: Buffer.alloc(192), dataOutSize: data.length + 256 });
      const data = toService(s, client, est, { flags: TCP_ACK, seq: 2001, ack: 5001 });
      const r = run(data.input);
      t.is(r.retval, TC_ACT_OK);
      t.deepEqual(r.data, data.to(b), `${what}: the established flow keeps its backend`);
      const fresh = toService(s, client, sport++);
      t.deepEqual(run(fresh.input).data, fresh.to(other), `${what}: a new flow takes the table's backend`);
    };

    // this build at its default: kube-proxy's sizing for this node's CPUs
    const want = defaultCtEntries(cpus().length, OBJECT_SIZES);
    const a = load();
    try {
      t.is(a.maps.map('lb_ct').maxEntries, want.lb_ct);
      t.is(a.maps.map('lb_ct_syn').maxEntries, roundCpus(want.lb_ct_syn));
      const sized = want.lb_ct !== OBJECT_SIZES.lb_ct;
      t.deepEqual(a.migrations.map((m) => [m.name, m.how]).sort(), sized ? [['lb_ct', 'copy'], ['lb_ct_syn', 'copy']] : [], 'only the conntrack maps differ');
      // the agent's order: maps the programs write are copied once the new programs are attached
      const carried = Object.fromEntries(a.finishMigration().map((m) => [m.name, m]));
      if (sized) {
        t.like(carried.lb_ct, { copied: 2, dropped: 0 }, 'both directions of the established flow');
        t.like(carried.lb_ct_syn, { copied: 2, dropped: 0 }, 'both directions of the handshake');
      }
      check(a, 'upgraded');
      // the handshake's ACK after the switch: the copied lb_ct_syn entry sends it to its backend
      const r = a.object.program('lb_tc_ingress').testRun({ data: ack(shake).input, ctx: Buffer.alloc(192), dataOutSize: ack(shake).input.length + 256 });
      t.deepEqual(r.data, ack(shake).to(bShake), 'the handshake completes on the backend its SYN went to');
    } finally {
      a.object.close();
    }

    // a restart with other kube-proxy values: sized again, carried again
    const b2 = load({ maxPerCore: 1024, min: 4096 });
    try {
      t.is(b2.maps.map('lb_ct').maxEntries, 2 * Math.max(1024 * cpus().length, 4096));
      t.deepEqual(b2.migrations.map((m) => m.name).sort(), ['lb_ct', 'lb_ct_syn']);
      const carried = Object.fromEntries(b2.finishMigration().map((m) => [m.name, m]));
      t.like(carried.lb_ct, { copied: 4, dropped: 0 }, 'both flows, both directions');
      check(b2, 'resized');
    } finally {
      b2.object.close();
    }

    // maxPerCore 0 (kube-proxy: leave the limit alone): the object's sizes, as the earlier build had
    const c = load({ maxPerCore: 0, min: 0 });
    try {
      t.is(c.maps.map('lb_ct').maxEntries, OBJECT_SIZES.lb_ct);
      t.is(c.maps.map('lb_ct_syn').maxEntries, roundCpus(OBJECT_SIZES.lb_ct_syn));
      c.finishMigration();
      check(c, 'back to the object\'s sizes');
    } finally {
      c.object.close();
    }
    // and the same again: the pins are reused as they are
    const d = load({ maxPerCore: 0, min: 0 });
    try {
      t.true(d.reused);
      t.deepEqual(d.migrations, []);
    } finally {
      d.object.close();
    }
  });

  test('--bpf-map-max sizes win: lb_ct set alone takes lb_ct_syn along in the object\'s ratio, lb_ct_syn set alone leaves lb_ct to kube-proxy\'s sizing', (t) => {
    const root = tempPinRoot(t, false);
    const dir = mkdtempSync(join(tmpdir(), 'kbp-ctsize-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const roundCpus = (n: number) => Math.ceil(n / numPossibleCpus()) * numPossibleCpus();
    const sizes = (mapSizes: MapSizes, conntrack?: ConntrackSizing): [number, number] => {
      rmSync(root, { recursive: true, force: true });
      const l = loadDataplane({ pinRoot: root, state: AgentStateFile.forPinRoot(root, join(dir, 'state.json')), mapSizes, ...(conntrack && { conntrack }) });
      try {
        return [l.maps.map('lb_ct').maxEntries, l.maps.map('lb_ct_syn').maxEntries];
      } finally {
        l.object.close();
      }
    };
    t.deepEqual(sizes({ lb_ct: 4096 }), [4096, roundCpus(512)]);
    t.deepEqual(sizes({ lb_ct: 2 * L.LB_CT_MAX }), [2 * L.LB_CT_MAX, roundCpus(L.LB_CT_SYN_MAX)], 'past the object\'s: lb_ct_syn stays at the object\'s');
    t.deepEqual(sizes({ lb_ct_syn: 1000 }, { maxPerCore: 1024, min: 4096 }), [2 * Math.max(1024 * cpus().length, 4096), roundCpus(1000)]);
  });
}
