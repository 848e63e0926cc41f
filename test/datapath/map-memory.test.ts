// What the maps cost in kernel memory, known before they exist (src/dataplane/bpf/map-memory.ts): the
// estimate of each map of the data plane's object, at the default sizes and at --bpf-map-max sizes,
// against the kernel's own figure once the map is made (/proc/self/fdinfo's memlock, the kernel's
// bpf_map_memory_usage). A node that cannot hold them is told before the load, not OOM-killed
// during it. Needs root and bpffs.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mapMemoryBytes, mapsMemory } from '../../src/dataplane/bpf/map-memory.js';
import { defaultFeStatsEntries } from '../../src/dataplane/bpf/map-sizes.js';
import { parseAllDocuments } from 'yaml';
import { numPossibleCpus } from '../../src/dataplane/bpf/native/map.js';
import type { MapSizes } from '../../src/dataplane/bpf/map-sizes.js';
import * as limits from '../../src/plan/limits.js';
import { OBJECT_PATH } from '../../testing/datapath.js';
import { loadTemp } from './fixtures/dataplane.js';
import { isRoot } from './fixtures/util.js';

function memlock(fd: number): number {
  const m = /^memlock:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m) throw new Error(`fd ${fd}: no memlock in fdinfo`);
  return Number(m[1]);
}

if (!isRoot) {
  test('datapath tests need root', (t) => t.pass('skipped: run as root (npm run test:datapath)'));
} else {
  for (const [what, sizes] of [
    ['the default sizes', undefined],
    ['--bpf-map-max sizes', { lb_ct: 4096, lb_ct_syn: 1001, lb_frontends: 1000, lb_slots: 300_000, lb_maglev_slots: 1_000_000, lb_fe_stats: 5000, lb_affinity: 777 }],
  ] as Array<[string, MapSizes | undefined]>) {
    test(`each map's kernel memory is known before the load: ${what}`, (t) => {
      t.teardown(() => limits.setIdLimits(limits.DEFAULT_ID_LIMITS));
      const l = loadTemp(t, { objectPath: OBJECT_PATH, ...(sizes && { mapSizes: sizes }) });
      try {
        let total = 0, kernel = 0;
        for (const spec of l.object.mapSpecs()) {
          const m = l.object.map(spec.name);
          const have = memlock(m.fd), want = mapMemoryBytes(spec, numPossibleCpus());
          total += want;
          kernel += have;
          // the kernel's structs differ by a few bytes between versions: within 1 % or a page
          t.true(Math.abs(have - want) <= Math.max(4096, have * 0.01), `${spec.name} (type ${spec.type}, ${spec.maxEntries} entries): estimated ${want}, the kernel says ${have}`);
        }
        t.log(`${what}: ${(kernel / 2 ** 20).toFixed(1)} MiB as the kernel counts, ${(total / 2 ** 20).toFixed(1)} estimated`);
      } finally {
        l.object.close();
      }
    });
  }

  test('the DaemonSets request the memory the maps take at the default sizes, on a node of 2 to 512 CPUs, and the agent beside them', (t) => {
    // the kernel charges the maps to the agent's cgroup: a request below them lets the scheduler
    // place the agent where it cannot load (deploy/*.yaml set no --bpf-map-max)
    t.teardown(() => limits.setIdLimits(limits.DEFAULT_ID_LIMITS));
    const l = loadTemp(t, { objectPath: OBJECT_PATH });
    let most = 0;
    try {
      const specs = l.object.mapSpecs();
      for (const cpus of [2, 16, 64, 128, 512]) {
        const sized = specs.map((m) => (m.name === 'lb_fe_stats' ? { ...m, maxEntries: defaultFeStatsEntries(cpus) } : m));
        most = Math.max(most, mapsMemory(sized, cpus).total);
      }
    } finally {
      l.object.close();
    }
    // the agent itself with no Service and its maps open, as the bench's `agent` rows read it (106 MiB;
    // 10,000 Services: ~200 MiB)
    const agent = 128 * 2 ** 20;
    for (const file of ['kube-bpf-proxy.yaml', 'kube-bpf-proxy-unprivileged.yaml']) {
      const ds = parseAllDocuments(readFileSync(fileURLToPath(new URL(`../../deploy/${file}`, import.meta.url)), 'utf8')).map((d) => d.toJS()).find((d) => d?.kind === 'DaemonSet');
      const req = String(ds.spec.template.spec.containers[0].resources.requests.memory);
      const m = /^(\d+)Mi$/.exec(req);
      t.truthy(m, `${file}: memory request ${req} in Mi`);
      t.true(Number(m![1]) * 2 ** 20 >= most + agent, `${file}: requests ${req}; the maps take up to ${(most / 2 ** 20).toFixed(0)} MiB and the agent ~128 more`);
    }
  });
}
