// lb_fe_filter (bpf/lb_maps.h): the bitmap in front of lb_frontends that lets a packet to no Service
// leave without hash lookups. Written by the agent's writer (map-writer.ts): a bit is set before the
// first frontend key on it is written and cleared after the last one is deleted; a writer that starts
// over existing maps (a restart, an upgrade's fresh map) rebuilds it from lb_frontends first. These
// rows check that the filter never hides a frontend the programs must find, and that it is consulted.
import test from 'ava';
import { Datapath, planOf, TC_ACT_OK, type TestService } from '../../testing/datapath.js';
import { frame, tcp } from '../../testing/packets.js';
import { encodeFeKey, encodeU32, feFilterBit } from '../../src/dataplane/bpf/layout.js';
import { isRoot } from './fixtures/util.js';

const be = (id: number, address: string, port: number) => ({ id, address, port, flags: 0 });
const X_INT: TestService = { feId: 70, address: '10.96.70.1', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(701, '10.244.7.1', 8080)] };
const X_EXT: TestService = { ...X_INT, feId: 71, scope: 'external' };
const Y: TestService = { feId: 72, address: '10.96.70.2', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(702, '10.244.7.2', 8080)] };
const ANY: TestService = { feId: 73, address: '0.0.0.0', port: 30070, protocol: 'TCP', scope: 'internal', type: 'NodePort', backends: [be(703, '10.244.7.3', 8080)] };
const NODE = '192.168.1.10', CLIENT = '10.244.5.9';

const syn = (dst: string, port: number) => frame({ src: CLIENT, dst, l4: tcp(41000, port) });

function bitOf(s: TestService): number {
  return feFilterBit(encodeFeKey({ address: s.address, port: s.port, protocol: s.protocol, scope: s.scope }));
}

function bitSet(d: Datapath, bit: number): boolean {
  const w = d.map('lb_fe_filter').lookup(encodeU32(1 + (bit >>> 6)))?.readBigUInt64LE(0) ?? 0n;
  return ((w >> BigInt(bit & 63)) & 1n) === 1n;
}

/** the SYN through tc ingress: the backend address it was sent to, or undefined when passed untouched */
function sentTo(d: Datapath, dst: string, port: number): string | undefined {
  d.forgetFlows();
  d.resetStats();
  const input = syn(dst, port);
  const r = d.run('lb_tc_ingress', input);
  if (r.verdict !== TC_ACT_OK) throw new Error(`verdict ${r.verdict}`);
  if (r.output.equals(input)) return undefined;
  return [...r.output.subarray(14 + 16, 14 + 20)].join('.');
}

if (!isRoot) {
  test('lb_fe_filter tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  let dp: Datapath | undefined;
  test.before(() => { dp = new Datapath(); });
  test.after.always(() => dp?.close());

  test.serial('the writer\'s filter: shared keys counted, cleared with the last frontend, rebuilt by a new writer', (t) => {
    const d = dp!;
    const p1 = planOf([X_INT, X_EXT, Y, ANY]);
    d.installPlan(p1);
    d.addNodeAddress(NODE);
    t.is(d.map('lb_fe_filter').lookup(encodeU32(0))?.readBigUInt64LE(0), 1n, 'switched on by the writer');
    t.not(bitOf(X_INT), bitOf(Y), 'X and Y on different bits (else the test proves less)');
    t.is(bitOf(X_INT), bitOf(X_EXT), 'scope is not part of the bit');
    t.is(sentTo(d, X_INT.address, 80), '10.244.7.1');
    t.is(sentTo(d, NODE, 30070), '10.244.7.3', 'a NodePort on the any-address, through the any-address bit');

    // X's internal entry goes, its external one stays on the same bit: still found (other scope)
    const p2 = planOf([X_EXT, Y, ANY]);
    d.applyPlanDiff(p1, p2);
    t.true(bitSet(d, bitOf(X_EXT)), 'the bit stays while a key on it remains');
    t.is(sentTo(d, X_INT.address, 80), '10.244.7.1');

    // X gone altogether: its bit cleared, its packets pass, Y still served
    const p3 = planOf([Y, ANY]);
    d.applyPlanDiff(p2, p3);
    t.false(bitSet(d, bitOf(X_EXT)), 'cleared with the last key on it');
    t.is(sentTo(d, X_INT.address, 80), undefined);
    t.deepEqual(d.stats(), {}, 'nothing counted for a packet to no Service');
    t.is(sentTo(d, Y.address, 80), '10.244.7.2');

    // the programs consult it: a filter that lost Y's bit hides Y (what a writer starting over
    // stale or fresh maps must never leave behind) ...
    const w = encodeU32(1 + (bitOf(Y) >>> 6));
    d.map('lb_fe_filter').update(w, Buffer.alloc(8));
    t.is(sentTo(d, Y.address, 80), undefined, 'a clear bit with the filter on: no lookup');
    // ... and switched off, every packet is looked up
    d.map('lb_fe_filter').update(encodeU32(0), Buffer.alloc(8));
    t.is(sentTo(d, Y.address, 80), '10.244.7.2', 'filter off: looked up');
    d.map('lb_fe_filter').update(encodeU32(0), Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
    // a new writer (a restarted agent) rebuilds it from lb_frontends before its first write
    d.applyPlanDiff(p3, p3);
    t.true(bitSet(d, bitOf(Y)), 'rebuilt');
    t.is(sentTo(d, Y.address, 80), '10.244.7.2');
    t.is(sentTo(d, NODE, 30070), '10.244.7.3');
  });
}
