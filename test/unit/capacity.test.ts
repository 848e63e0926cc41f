import test from 'ava';
import { fitToCapacity, UNLIMITED } from '../../src/plan/capacity.js';
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
