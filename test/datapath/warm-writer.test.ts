// The agent's warm-up writes the one-change path into scratch maps (BpfMaps.scratch, through
// BpfDataplane.warmWriter): maps of the live ones' definitions, unpinned, that no program reads. The
// writer's code runs there before the first real change; the live maps and the pin root see nothing.
import test from 'ava';
import { readdirSync } from 'node:fs';
import { warmOneChange } from '../../src/agent/warm.js';
import { BpfMaps } from '../../src/dataplane/bpf/maps.js';
import * as L from '../../src/dataplane/bpf/layout.js';
import { loadTemp } from './fixtures/dataplane.js';
import { isRoot } from './fixtures/util.js';

if (!isRoot) {
  test('warm-writer tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('the warm-up\'s changes are written into scratch maps of the live definitions, not into the live maps or pins', (t) => {
    const d = loadTemp(t, { maps: { recycleTables: true } });
    const root = d.pinRoot;
    const pins = readdirSync(root).sort();
    const writes = Object.fromEntries(L.MAP_NAMES.map((n) => [n, d.maps.map(n).writes]));

    const scratch = BpfMaps.scratch(d.maps, { recycleTables: true });
    try {
      for (const n of ['lb_frontends', 'lb_slots', 'lb_maglev_slots', 'lb_backends'] as const) {
        const a = scratch.map(n), b = d.maps.map(n);
        t.deepEqual([a.type, a.keySize, a.valueSize, a.flags], [b.type, b.keySize, b.valueSize, b.flags], n);
        t.true(a.maxEntries <= b.maxEntries, n);
      }
      // as many changes as the agent's warm-up runs (agent.ts WARM_CHANGES): its tables fit the scratch array
      const r = warmOneChange({ nodeName: 'n1' }, 7, true, 48, (ops) => scratch.apply(ops));
      t.is(r.written, 48);
      t.is(r.incremental, 48);
      // what the warm-up wrote is there: its 4 Services' frontends (2 NodePort: one more each), their slots
      t.true(scratch.map('lb_frontends').count() >= 4, `${scratch.map('lb_frontends').count()} frontends`);
      t.true(scratch.map('lb_slots').count() > 0);
      t.true(scratch.map('lb_backends').writes > 0 && scratch.map('lb_maglev_slots').writes > 0);
    } finally {
      scratch.close();
    }
    t.deepEqual(Object.fromEntries(L.MAP_NAMES.map((n) => [n, d.maps.map(n).writes])), writes, 'no live map written');
    t.is(d.maps.map('lb_frontends').count(), 0);
    t.deepEqual(readdirSync(root).sort(), pins, 'nothing pinned');
  });
}
