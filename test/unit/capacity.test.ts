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
