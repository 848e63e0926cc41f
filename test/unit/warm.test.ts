// The warm-up after the first sync must run the one-change path itself (warm.ts): every change an
// incremental plan with writes, in BPF mode and in the slotless modes, whatever the compile options.
import test from 'ava';
import { manifestText, warmMaglev, warmOneChange, warmSource } from '../../src/agent/warm.js';
import { maglevSize } from '../../src/plan/maglev.js';
import { ManifestsReader } from '../../src/source/manifests.js';
import { fastLoadAll } from '../../src/source/yaml-fast.js';

for (const slots of [true, false]) {
  test(`warmOneChange runs each change through the incremental plan, with writes (slots: ${slots})`, (t) => {
    for (const opts of [{ nodeName: 'n1' }, { nodeName: 'n1', standalone: true, nodePortAddresses: ['10.0.0.0/8'], nodeIPs: ['192.168.1.1'] }]) {
      const r = warmOneChange(opts, 7, slots, 5);
      t.is(r.incremental, 5);
      t.true(r.ops >= 5, `ops ${r.ops}`);
    }
  });
}

// past one change per Service each change must still move an endpoint: a shift that repeats per
// Service (the old `1 + (k % 2)` with 4 Services) made changes 5-8 no change at all
test('warmOneChange: every change writes, also past one change per Service', (t) => {
  const four = warmOneChange({ nodeName: 'n1' }, 7, true, 4), eight = warmOneChange({ nodeName: 'n1' }, 7, true, 8);
  t.is(eight.incremental, 8);
  t.true(eight.ops > four.ops * 1.5, `8 changes ${eight.ops} ops, 4 changes ${four.ops}`);
});

// The source's warm-up must take the path a watch event takes (warm.ts warmSource): each file parsed
// by the fast YAML path, slimmed, indexed and upserted, every round a change of both of its objects,
// no problems; and the Maglev warm-up fills tables of a one-change table's size.
test('warmSource reads and changes every file through the reader into its store; warmMaglev fills one-change tables', (t) => {
  const r = warmSource('n1', 7, 2);
  t.deepEqual(r, { changes: 7 * 2 * 3, objects: 14, problems: 0 });
  t.is(warmMaglev(7, 3), 3 * maglevSize(10, 'pow2'));
});

test('the source warm-up text is what the fast YAML path reads; its slice keeps 10 endpoints of two nodes', (t) => {
  const reader = new ManifestsReader('/nonexistent/x', 0);
  for (const shift of [0, 1]) {
    const text = manifestText(3, 'n1', shift);
    t.truthy(fastLoadAll(text), 'fast path');
    const { changes, problems } = reader.updateText('/nonexistent/x/s3.yaml', text);
    t.deepEqual(problems, []);
    t.deepEqual(changes.map((c) => c.kind).sort(), ['EndpointSlice', 'Service']);
    const s = changes.find((c) => c.kind === 'EndpointSlice')!.obj as { endpoints: { addresses: string[]; nodeName: string }[] };
    t.is(s.endpoints.length, 10);
    t.deepEqual(new Set(s.endpoints.map((e) => e.nodeName)), new Set(['n1', 'n1-other']));
    t.is(new Set(s.endpoints.map((e) => e.addresses[0])).size, 10);
    t.is(s.endpoints[0]!.addresses[0], `10.200.0.${100 + shift}`);
  }
});
