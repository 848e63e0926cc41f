import test from 'ava';
import { CapacityTracker, fitToCapacity, UNLIMITED } from '../../src/plan/capacity.js';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';

function fe(service: string, address: string, backends: number): NodeFrontend {
  return {
    service, portName: '', type: 'ClusterIP', address, port: 80, protocol: 'TCP', scope: 'internal',
    backends: Array.from({ length: backends }, (_, i) => ({ address: `10.244.${address.split('.')[3]}.${i + 1}`, port: 80, terminating: false, local: false })),
    sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
  };
}

const state: NodeState = { frontends: [fe('ns/c', '10.96.0.3', 2), fe('ns/a', '10.96.0.1', 2), fe('ns/b', '10.96.0.2', 2)] };

test('a state that fits is returned as it is', (t) => {
  const r = fitToCapacity(state, UNLIMITED);
  t.is(r.state, state);
  t.deepEqual(r.dropped, []);
});

test('over a limit, the last Services by name are dropped until the rest fits, and named', (t) => {
  const r = fitToCapacity(state, { ...UNLIMITED, backends: 4 });
  t.deepEqual(r.dropped, ['ns/c']);
  t.is(r.limit, 'backends');
  t.deepEqual(r.state.frontends.map((f) => f.service).sort(), ['ns/a', 'ns/b']);
  t.deepEqual(fitToCapacity(state, { ...UNLIMITED, frontends: 1 }).dropped, ['ns/b', 'ns/c']);
  t.deepEqual(fitToCapacity(state, { ...UNLIMITED, frontendIds: 3 }).dropped, ['ns/c']);
  t.deepEqual(fitToCapacity(state, { ...UNLIMITED, slots: 0 }).dropped, ['ns/a', 'ns/b', 'ns/c']);
});

test('Maglev slots: a table per distinct member set (pow2 M, whole elements); frontends sharing one count it once', (t) => {
  // 2 backends: M = 251 (the minimum), 252 slots; ns/a's second frontend shares its table
  const shared = { ...fe('ns/a', '10.96.0.1', 2), address: '10.96.1.1' };
  const s: NodeState = { frontends: [...state.frontends, shared] };
  t.deepEqual(fitToCapacity(s, { ...UNLIMITED, maglevSlots: 756 }).dropped, []);
  const r = fitToCapacity(s, { ...UNLIMITED, maglevSlots: 755 });
  t.deepEqual(r.dropped, ['ns/c']);
  t.is(r.limit, 'maglevSlots');
  const tr = new CapacityTracker();
  t.deepEqual(tr.fit(s, { ...UNLIMITED, maglevSlots: 755 }).dropped, ['ns/c'], 'the tracker counts the same');
  t.deepEqual(tr.fit({ frontends: s.frontends.filter((f) => f !== shared) }, { ...UNLIMITED, maglevSlots: 755 }).dropped, ['ns/c']);
});

test('CapacityTracker gives fitToCapacity\'s result over a sequence of states sharing objects', async (t) => {
  const { CapacityTracker } = await import('../../src/plan/capacity.js');
  const tr = new CapacityTracker();
  const a = fe('ns/a', '10.96.0.1', 2), b = fe('ns/b', '10.96.0.2', 2), c = fe('ns/c', '10.96.0.3', 2);
  // a second frontend of ns/a over the same backends: they count once
  const a2 = { ...a, port: 81, backends: a.backends };
  const states: NodeState[] = [
    { frontends: [a, b, c] },
    { frontends: [a, a2, b, c] },
    { frontends: [a, b] },
    { frontends: [a, fe('ns/b', '10.96.0.2', 3), c] },
    { frontends: [] },
    { frontends: [c, c] },
    { frontends: [a, a2, b, c] },
  ];
  const caps = [UNLIMITED, { ...UNLIMITED, backends: 4 }, { ...UNLIMITED, slots: 5 }, { ...UNLIMITED, frontends: 2 }];
  for (const s of states) {
    for (const cap of caps) {
      const want = fitToCapacity(s, cap);
      const got = tr.fit(s, cap);
      t.deepEqual(got.dropped, want.dropped);
      t.is(got.limit, want.limit);
      t.deepEqual(got.state.frontends, want.state.frontends);
    }
  }
});

test('a Service the data plane holds keeps its place: the newcomer is left out, even when it sorts first (issue 13)', (t) => {
  const held = { frontends: [fe('ns/b', '10.96.0.2', 2), fe('ns/c', '10.96.0.3', 2)] };
  const r = fitToCapacity(state, { ...UNLIMITED, frontends: 2 }, () => new Set(held.frontends.map((f) => f.service)));
  t.deepEqual(r.dropped, ['ns/a']);
  const tr = new CapacityTracker();
  t.deepEqual(tr.fit(held, { ...UNLIMITED, frontends: 2 }).dropped, []);
  t.deepEqual(tr.fit(state, { ...UNLIMITED, frontends: 2 }, () => new Set(['ns/b', 'ns/c']), () => held).dropped, ['ns/a']);
});

test('room is kept for what a sync removes while it writes: a newcomer replacing a removed Service waits one sync (issue 13)', (t) => {
  const cap = { ...UNLIMITED, frontends: 3 };
  const tr = new CapacityTracker();
  const s1: NodeState = { frontends: [fe('ns/b', '10.96.0.2', 2), fe('ns/c', '10.96.0.3', 2)] };
  t.deepEqual(tr.fit(s1, cap).dropped, []);
  // ns/c goes, ns/a and ns/d come: the maps hold b, c, a, d during the write, one more than fits
  const s2: NodeState = { frontends: [fe('ns/a', '10.96.0.1', 2), s1.frontends[0]!, fe('ns/d', '10.96.0.4', 2)] };
  const r2 = tr.fit(s2, cap, () => new Set(['ns/b', 'ns/c']), () => s1);
  t.deepEqual(r2.dropped, ['ns/d']);
  t.true(r2.waitsForRemovals);
  // the next sync, with c gone from the kernel, takes it
  const r3 = tr.fit(s2, cap, () => new Set(['ns/a', 'ns/b']), () => r2.state);
  t.deepEqual(r3.dropped, []);
  t.falsy(r3.waitsForRemovals);
});

test('KeyCounts: the same counts and size as a Map over random adds and removals, through growth and collisions', async (t) => {
  const { KeyCounts } = await import('../../src/plan/capacity.js');
  const kc = new KeyCounts();
  const model = new Map<number | string, number>();
  let seed = 7;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  // keys near 2^50 and small ones, a few text keys; a narrow range so removals hit often
  const keyOf = (i: number): number | string => i % 17 === 0 ? `fd00::${i}|80|TCP` : i % 2 ? 2 ** 49 + i * 262144 : i;
  for (let step = 0; step < 20_000; step++) {
    const k = keyOf(rnd(3000));
    const sign = rnd(3) === 0 ? -1 : 1;
    const have = model.get(k) ?? 0;
    if (sign < 0 && !have) continue;
    kc.add(k, sign);
    if (have + sign) model.set(k, have + sign);
    else model.delete(k);
    if (step % 997 === 0) t.is(kc.size, model.size, `size at step ${step}`);
  }
  t.is(kc.size, model.size);
  // every count reaches 0 exactly when the model's does
  for (const [k, n] of [...model]) for (let i = 0; i < n; i++) kc.add(k, -1);
  t.is(kc.size, 0);
});

test('backend and table keys: equal exactly for the same backend or member set, whatever the order', async (t) => {
  const { backendCountKey, tableKey } = await import('../../src/plan/capacity.js');
  t.is(backendCountKey('10.244.1.2', 8080, 'TCP'), backendCountKey('10.244.1.2', 8080, 'TCP'));
  const distinct = [
    backendCountKey('10.244.1.2', 8080, 'TCP'), backendCountKey('10.244.1.2', 8080, 'UDP'), backendCountKey('10.244.1.2', 8081, 'TCP'),
    backendCountKey('10.244.1.3', 8080, 'TCP'), backendCountKey('255.255.255.255', 65535, 'SCTP'), backendCountKey('0.0.0.0', 0, 'TCP'),
    // not canonical, or not IPv4: text, so never equal to another spelling's number
    backendCountKey('10.244.1.02', 8080, 'TCP'), backendCountKey('fd00::2', 8080, 'TCP'),
  ];
  t.is(new Set(distinct).size, distinct.length);
  t.is(typeof distinct[6], 'string');
  const m = (a: string, port: number) => ({ address: a, port });
  const set = [m('10.0.0.1', 80), m('10.0.0.2', 80), m('10.0.1.1', 443)];
  t.is(tableKey('TCP', set), tableKey('TCP', [...set].reverse()));
  const others = [
    tableKey('TCP', set), tableKey('UDP', set), tableKey('TCP', set.slice(1)), tableKey('TCP', [...set, m('10.0.0.1', 80)]),
    tableKey('TCP', [m('10.0.0.1', 81), m('10.0.0.2', 80), m('10.0.1.1', 443)]), tableKey('TCP', [...set.slice(1), m('fd00::1', 80)]),
    tableKey('TCP', [m('fd00::1', 80)]), tableKey('TCP', [m('fd00::1', 81)]),
  ];
  t.is(new Set(others).size, others.length);
  // a large member set is built in pieces and is still order-free
  const big = Array.from({ length: 5000 }, (_, i) => m(`10.${i >> 8}.${i & 255}.1`, 80));
  t.is(tableKey('TCP', big), tableKey('TCP', [...big].reverse()));
});

test('a change record that does not match the state is recounted afresh: Maglev tables too, as a fresh tracker counts them', async (t) => {
  const { recordStateDelta } = await import('../../src/plan/delta.js');
  const a = fe('ns/a', '10.96.0.1', 2), b = fe('ns/b', '10.96.0.2', 2), c = fe('ns/c', '10.96.0.3', 2);
  const s1: NodeState = { frontends: [a, b] };
  const s2: NodeState = { frontends: [a, c] };
  // the record says c was added and omits b's removal: it does not add up, so the tracker recounts
  recordStateDelta(s2, s1, [c], []);
  const tr = new CapacityTracker();
  tr.fit(s1, UNLIMITED);
  // two tables of 252 slots: exactly what s2 needs
  const cap = { ...UNLIMITED, maglevSlots: 504 };
  const fresh = new CapacityTracker().fit(s2, cap);
  t.deepEqual(fresh.dropped, []);
  const got = tr.fit(s2, cap);
  t.deepEqual(got.dropped, fresh.dropped, 'no table counted twice, none of b left behind');
  t.is(got.limit, fresh.limit);
  // and the counts stay right afterwards: removing ns/a frees its table
  const s3: NodeState = { frontends: [c] };
  recordStateDelta(s3, s2, [], [a]);
  const tight = { ...UNLIMITED, maglevSlots: 252 };
  t.deepEqual(tr.fit(s3, tight).dropped, new CapacityTracker().fit(s3, tight).dropped);
  t.deepEqual(tr.fit(s3, tight).dropped, []);
});
