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
