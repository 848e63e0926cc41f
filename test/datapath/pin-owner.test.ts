// The loader adopts only pinned maps this agent made (issue 7, bpffs): the state file records the
// kernel id of every map and program after each load, and a pinned map whose id it does not record
// is unpinned and made anew, named in Loaded.refused. A restart adopts its own pins; a first start
// over an empty pin root creates them; pins without a state file are refused; a state file of an
// agent from before ids were recorded is trusted once and gets them.
import test, { type ExecutionContext } from 'ava';
import { readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Loaded } from '../../src/dataplane/bpf/loader.js';
import * as L from '../../src/dataplane/bpf/layout.js';
import { BpfMap } from '../../src/dataplane/bpf/native/map.js';
import { loadTemp, tempStatePath } from './fixtures/dataplane.js';
import { isRoot, tempPinRoot } from './fixtures/util.js';

const load = (t: ExecutionContext, root: string, statePath: string): Loaded => loadTemp(t, { pinRoot: root, statePath });

// the pinned maps' ids (an unpinned map, lb_scratch, is new at every load)
const ids = (d: Loaded): Record<string, number> => Object.fromEntries(d.object.pinnedMapNames().map((n) => [n, d.object.map(n).id]));

if (!isRoot) {
  test('pin ownership tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('a first start records its ids; a restart adopts its own pins with their contents', (t) => {
    const root = tempPinRoot(t, false);
    const sp = tempStatePath(t);
    const first = load(t, root, sp);
    t.false(first.reused);
    t.deepEqual(first.refused, []);
    first.maps.setDevice(7, 0);
    const json = JSON.parse(readFileSync(sp, 'utf8')) as { maps: Record<string, number>; programs: Record<string, number> };
    t.deepEqual(json.maps, Object.fromEntries(Object.entries(ids(first)).sort()));
    t.true(Object.keys(json.programs).includes('lb_tc_ingress'));
    t.is(statSync(sp).mode & 0o777, 0o600, 'the state file is root\'s alone');
    const before = ids(first);
    first.object.close();

    const again = load(t, root, sp);
    t.true(again.reused);
    t.deepEqual(again.refused, []);
    t.deepEqual(ids(again), before, 'the same maps');
    t.deepEqual([...again.maps.devices()], [[7, 0]], 'with their contents');
  });

  test('a restart switches a pinned lb_fe_filter, lb_rev_filter and lb_ct_filter off until they are rebuilt (a stale filter must not hide frontends, replies or flows)', (t) => {
    const root = tempPinRoot(t, false);
    const sp = tempStatePath(t);
    const first = load(t, root, sp);
    // what another build leaves: the filter switched on, with none of the frontends' bits set
    // (e.g. a build without the filter wrote frontends over these pins meanwhile); likewise the
    // reply filter, without the bits of the reverse entries such a build wrote
    const on = Buffer.alloc(8);
    on.writeBigUInt64LE(1n);
    first.maps.map('lb_fe_filter').update(L.encodeU32(0), on);
    first.object.map('lb_rev_filter').update(L.encodeU32(0), on);
    first.object.map('lb_ct_filter').update(L.encodeU32(0), on);
    first.object.close();
    const again = load(t, root, sp);
    t.true(again.reused);
    t.is(again.maps.map('lb_fe_filter').lookup(L.encodeU32(0))?.readBigUInt64LE(0), 0n, 'off before any program attaches');
    t.is(again.object.map('lb_rev_filter').lookup(L.encodeU32(0))?.readBigUInt64LE(0), 0n, 'lb_rev_filter off until the first sweep');
    t.is(again.object.map('lb_ct_filter').lookup(L.encodeU32(0))?.readBigUInt64LE(0), 0n, 'lb_ct_filter off until the first sweep');
  });

  test('a pinned map this agent did not make is refused: unpinned, made anew, named; the rest are adopted', (t) => {
    const root = tempPinRoot(t, false);
    const sp = tempStatePath(t);
    const first = load(t, root, sp);
    const before = ids(first);
    first.object.close();
    // someone swaps lb_backends for a map of the same definition, holding what they like
    const path = join(root, 'lb_backends');
    const real = BpfMap.fromPin(path);
    const planted = BpfMap.create({ type: real.type, name: 'lb_backends', keySize: real.keySize, valueSize: real.valueSize, maxEntries: real.maxEntries, flags: real.flags });
    real.close();
    t.teardown(() => planted.close());
    planted.update(L.encodeU32(1), Buffer.alloc(planted.valueSize, 0xaa));
    unlinkSync(path);
    planted.pin(path);

    const again = load(t, root, sp);
    t.deepEqual(again.refused, [{ name: 'lb_backends', id: planted.id, reason: `the state file records id ${before.lb_backends}` }]);
    t.not(again.maps.map('lb_backends').id, planted.id, 'the planted map is not used');
    // lb_backends is an array: id 1 of the new map holds no backend (all zero)
    t.deepEqual(again.maps.map('lb_backends').lookup(L.encodeU32(1)), Buffer.alloc(L.BACKEND.size), 'nor its contents');
    for (const n of L.MAP_NAMES) if (n !== 'lb_backends') t.is(again.maps.map(n).id, before[n] ?? -1, `${n} adopted`);
    const recorded = (JSON.parse(readFileSync(sp, 'utf8')) as { maps: Record<string, number> }).maps;
    t.is(recorded.lb_backends, again.maps.map('lb_backends').id, 'the new map\'s id is recorded');
  });

  test('pins without a state file are refused and made anew; a state file without ids (an older agent) is adopted', (t) => {
    const root = tempPinRoot(t, false);
    const sp = tempStatePath(t);
    const first = load(t, root, sp);
    const before = ids(first);
    first.object.close();

    // the state file is gone but the pins are not (/run not shared with the host, or deleted)
    rmSync(sp);
    const fresh = load(t, root, sp);
    t.false(fresh.reused);
    t.deepEqual(fresh.refused.map((r) => r.name).sort(), Object.keys(before).sort());
    t.regex(fresh.refused[0]!.reason, /^no state file .* records the pins under /);
    for (const n of L.MAP_NAMES) t.not(fresh.maps.map(n).id, before[n], `${n} made anew`);
    const made = ids(fresh);
    fresh.object.close();

    // an agent from before ids were recorded wrote its file without them: its pins are adopted
    writeFileSync(sp, JSON.stringify({ version: 1, pinRoot: root, frontends: {}, attachments: [] }));
    const upgraded = load(t, root, sp);
    t.deepEqual(upgraded.refused, []);
    t.deepEqual(ids(upgraded), made);
    t.deepEqual((JSON.parse(readFileSync(sp, 'utf8')) as { maps: Record<string, number> }).maps, Object.fromEntries(Object.entries(made).sort()));
  });
}
