// The BPF maps' kernel memory against what the node or pod has (src/dataplane/bpf/map-memory.ts):
// MemAvailable and the tightest memory cgroup limit from the process's cgroup up (v2 and v1), and the
// warning the agent logs before a load that would not fit. The estimate itself is held against the
// kernel's own figure in test/datapath/map-memory.test.ts.
import test from 'ava';
import { mapMemoryBytes, mapMemoryWarning, mapsMemory, memoryAvailable } from '../../src/dataplane/bpf/map-memory.js';
import { BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, MapType } from '../../src/dataplane/bpf/native/uapi.js';
import type { CgroupView } from '../../src/util/cgroup.js';

const MiB = 2 ** 20;
const view = (cgroup: string, mountinfo: string, files: Record<string, string>): CgroupView => ({ cgroup, mountinfo, read: (p) => files[p] });
const V2 = '30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n';
const V1_HYBRID = [
  '31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');
const MEMINFO = 'MemTotal:       24683520 kB\nMemFree:        20000000 kB\nMemAvailable:   2097152 kB\n';

test('MemAvailable alone where no cgroup limits memory', (t) => {
  t.deepEqual(memoryAvailable(view('0::/a\n', V2, { '/sys/fs/cgroup/a/memory.max': 'max\n', '/sys/fs/cgroup/a/memory.current': '1000\n' }), MEMINFO),
    { bytes: 2 * 1024 * MiB, from: '/proc/meminfo MemAvailable' });
  t.is(memoryAvailable(view('', '', {}), ''), undefined, 'nothing readable: nothing known');
});

test('cgroup v2: the tightest room from the process cgroup up, a pod limit above its container', (t) => {
  const files = {
    '/sys/fs/cgroup/kubepods/pod1/ctr/memory.max': 'max\n', '/sys/fs/cgroup/kubepods/pod1/ctr/memory.current': `${100 * MiB}\n`,
    '/sys/fs/cgroup/kubepods/pod1/memory.max': `${512 * MiB}\n`, '/sys/fs/cgroup/kubepods/pod1/memory.current': `${112 * MiB}\n`,
    '/sys/fs/cgroup/kubepods/memory.max': `${8192 * MiB}\n`, '/sys/fs/cgroup/kubepods/memory.current': `${4000 * MiB}\n`,
  };
  t.deepEqual(memoryAvailable(view('0::/kubepods/pod1/ctr\n', V2, files), MEMINFO), { bytes: 400 * MiB, from: '/sys/fs/cgroup/kubepods/pod1/memory.max' });
});

test('cgroup v1 (a hybrid host): the memory hierarchy\'s limit; its "no limit" is not one', (t) => {
  const cg = '4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n';
  const lim = { '/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes': `${300 * MiB}\n`, '/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes': `${50 * MiB}\n` };
  t.deepEqual(memoryAvailable(view(cg, V1_HYBRID, lim), MEMINFO), { bytes: 250 * MiB, from: '/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes' });
  const none = { '/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes': '9223372036854771712\n', '/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes': `${50 * MiB}\n` };
  t.is(memoryAvailable(view(cg, V1_HYBRID, none), MEMINFO)?.from, '/proc/meminfo MemAvailable');
  t.is(memoryAvailable(view(cg, V1_HYBRID, { '/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes': 'garbage' }), MEMINFO)?.from, '/proc/meminfo MemAvailable', 'garbage is no limit');
});

test('a warning names the need, the room, where it was read, the largest maps and the flag; none when they fit', (t) => {
  const specs = [
    { name: 'lb_ct', type: MapType.LRU_HASH, keySize: 40, valueSize: 48, maxEntries: 524288, flags: 0 },
    { name: 'lb_maglev_slots', type: MapType.ARRAY, keySize: 4, valueSize: 8, maxEntries: 8388096, flags: BPF_F_MMAPABLE },
    { name: 'lb_slots', type: MapType.HASH, keySize: 8, valueSize: 4, maxEntries: 2097152, flags: BPF_F_NO_PREALLOC },
  ];
  const need = mapsMemory(specs, 2);
  t.deepEqual(need.largest.map(([n]) => n), ['lb_ct', 'lb_maglev_slots', 'lb_slots'], 'largest first');
  t.is(need.total, specs.reduce((n, s) => n + mapMemoryBytes(s, 2), 0));
  t.is(mapMemoryWarning(need, { bytes: need.total + 1, from: 'x' }), undefined);
  t.is(mapMemoryWarning(need, undefined), undefined);
  const w = mapMemoryWarning(need, { bytes: 100 * MiB, from: '/sys/fs/cgroup/pod/memory.max' });
  t.like(w, { availableMiB: 100, from: '/sys/fs/cgroup/pod/memory.max', mapsMiB: Math.round(need.total / MiB) });
  t.regex(String(w?.largest), /^lb_ct \d+ MiB, lb_maglev_slots 64 MiB, lb_slots 32 MiB$/);
  t.regex(String(w?.hint), /--bpf-map-max/);
});

test('a hash map without preallocation costs its buckets at load and grows by the entry', (t) => {
  const s = { name: 'h', type: MapType.HASH, keySize: 8, valueSize: 4, maxEntries: 1000, flags: BPF_F_NO_PREALLOC };
  const empty = mapMemoryBytes(s, 4);
  t.true(empty >= 1024 * 16, 'buckets: the next power of two');
  t.is(mapMemoryBytes(s, 4, 10) - empty, 10 * (48 + 8 + 8 + 8));
  const pre = mapMemoryBytes({ ...s, flags: 0 }, 4);
  t.true(pre > empty + 1000 * 64, 'preallocated: every element at once');
});
