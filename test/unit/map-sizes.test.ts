// --bpf-map-max (src/dataplane/bpf/map-sizes.ts): what a user may write, what each map's
// max_entries becomes, and the errors of a bad value; the CLI's exit code and message for one.
import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import fc from 'fast-check';
import { checkSize, conntrackMaxFlows, CONNTRACK_DEFAULTS, ctSynFor, defaultCtEntries, defaultFeStatsEntries, FE_STATS_BUDGET, sizesForMode, formatMapSizes, maxEntriesOf, parseMapSizes, SIZABLE_MAPS, type SizableMap } from '../../src/dataplane/bpf/map-sizes.js';
import { DEFAULTS, validateSettings } from '../../src/agent/config.js';
import * as L from '../../src/dataplane/bpf/layout.js';
import { DEFAULT_ID_LIMITS, setIdLimits } from '../../src/plan/limits.js';
import * as limits from '../../src/plan/limits.js';
import { IdAllocator } from '../../src/plan/ids.js';
import { cliNodeArgs } from '../../testing/cli.js';
import { mapMemoryBytes } from '../../src/dataplane/bpf/map-memory.js';
import { MapType } from '../../src/dataplane/bpf/native/uapi.js';

test('NAME=N with or without lb_, k/M/G suffixes, later items win; lb_maglev_slots counts slots (two an element)', (t) => {
  const s = parseMapSizes(['maglev_slots=40M', 'lb_ct=2M', 'lb_frontends=300k', 'ct=1048576', 'lb_backends=2000001']);
  t.deepEqual(s, { lb_maglev_slots: 40_000_000, lb_ct: 1_048_576, lb_frontends: 300_000, lb_backends: 2_000_001 });
  t.deepEqual(Object.fromEntries(maxEntriesOf(s)), { lb_maglev_slots: 20_000_000, lb_ct: 1_048_576, lb_frontends: 300_000, lb_backends: 2_000_001 });
  t.is(formatMapSizes({ ...s, lb_slots: L.LB_SLOTS_MAX }), 'lb_maglev_slots=40000000,lb_ct=1048576,lb_frontends=300000,lb_backends=2000001', 'defaults left out');
  t.deepEqual(parseMapSizes([]), {});
});

test('the defaults are lb_consts.h\'s, and each is a valid size of its map', (t) => {
  const want: Record<SizableMap, number> = {
    lb_frontends: L.LB_FRONTENDS_MAX, lb_backends: DEFAULT_ID_LIMITS.backends, lb_slots: L.LB_SLOTS_MAX, lb_members: L.LB_MEMBERS_MAX,
    lb_maglev_slots: L.LB_MAGLEV_SLOTS_MAX, lb_revnat: DEFAULT_ID_LIMITS.frontendIds, lb_fe_stats: DEFAULT_ID_LIMITS.frontendIds,
    lb_affinity: L.LB_AFFINITY_MAX, lb_src_ranges: L.LB_SRC_RANGES_MAX, lb_ct: L.LB_CT_MAX, lb_ct_syn: L.LB_CT_SYN_MAX,
    lb_sock_revnat: L.LB_SOCK_REVNAT_MAX, lb_frags: L.LB_FRAGS_MAX,
  };
  for (const [k, v] of Object.entries(SIZABLE_MAPS)) {
    t.is(v.dflt, want[k as SizableMap], k);
    t.notThrows(() => checkSize(k as SizableMap, v.dflt), k);
  }
});

test('lb_fe_stats by default: every frontend id up to 16 CPUs, then as many as 32 MiB of per-CPU counters hold (not 256 MiB at 128 CPUs)', (t) => {
  const all = DEFAULT_ID_LIMITS.frontendIds;
  t.deepEqual([1, 2, 16, 32, 64, 128, 256].map((c) => defaultFeStatsEntries(c)), [all, all, all, all / 2, all / 4, all / 8, all / 16]);
  t.is(defaultFeStatsEntries(2, 1000), 1000, 'never more than the object holds');
  t.is(defaultFeStatsEntries(1e9), SIZABLE_MAPS.lb_fe_stats.min, 'never below the smallest size');
  for (const cpus of [1, 17, 96, 128, 240, 4096]) {
    const n = defaultFeStatsEntries(cpus);
    const bytes = mapMemoryBytes({ name: 'lb_fe_stats', type: MapType.PERCPU_ARRAY, keySize: 4, valueSize: L.FE_STATS.size, maxEntries: n, flags: 0 }, cpus);
    t.true(n * L.FE_STATS.size * cpus <= FE_STATS_BUDGET, `${cpus} CPUs: ${n} entries, ${(bytes / 2 ** 20).toFixed(1)} MiB`);
  }
});

test('a bad value is a config error naming the flag, the map, what is wrong and the default', (t) => {
  const bad: Array<[string, RegExp]> = [
    ['lb_maglev_slots=1001', /--bpf-map-max lb_maglev_slots=1001: below 131072, the smallest it can be \(the largest table, M 131071\); lb_maglev_slots holds Maglev slots .* 16776192 by default/],
    ['lb_maglev_slots=16776193', /lb_maglev_slots=16776193: must be a multiple of 2/],
    ['lb_ct=0', /lb_ct=0: below 1/],
    ['lb_backends=1', /lb_backends=1: below 2/],
    ['lb_frontends=5G', /lb_frontends=5000000000: above 4294967295/],
    ['lb_devices=10', /"lb_devices=10": lb_devices is not a map sized at load \(maps: lb_frontends, /],
    ['lb_ct', /"lb_ct": expected MAP=N/],
    ['lb_ct=-5', /expected MAP=N/],
    ['lb_ct=1.5M', /expected MAP=N/],
  ];
  for (const [item, re] of bad) {
    const e = t.throws(() => parseMapSizes([item]), { message: re }, item);
    t.is((e as { code?: string }).code, 'KBP_ERR_CONFIG', item);
  }
  // settings made another way (a test, an embedding) are checked as a whole too
  t.throws(() => validateSettings({ ...DEFAULTS, manifests: '/tmp', nodeName: 'n', ignored: [], bpfMapMax: { lb_maglev_slots: 3 } }), { message: /lb_maglev_slots=3/ });
});

test('property: every accepted size gives a max_entries of at least 1 that fits a u32, and holds n slots or entries', (t) => {
  const names = Object.keys(SIZABLE_MAPS) as SizableMap[];
  fc.assert(fc.property(fc.constantFrom(...names), fc.integer({ min: 0, max: 2 ** 33 }), (name, n) => {
    let ok = true;
    try { checkSize(name, n); } catch { ok = false; }
    if (!ok) return true;
    const entries = maxEntriesOf({ [name]: n })[0]![1];
    t.true(entries >= 1 && entries <= 0xffffffff && Number.isInteger(entries));
    t.is(name === 'lb_maglev_slots' ? entries * L.LB_MAGLEV_IDS_PER_ELEM : entries, n);
    return true;
  }), { numRuns: 500 });
});

test('setIdLimits: the plan allocates ids below the loaded maps (the live bindings follow), and back', (t) => {
  t.teardown(() => setIdLimits(DEFAULT_ID_LIMITS));
  setIdLimits({ frontendIds: 300_000, backends: 3_000_000 });
  t.is(limits.LB_FE_ID_MAX, 300_000);
  t.is(L.LB_FE_ID_MAX, 300_000, 'layout re-exports the same binding (the writer\'s fe id check)');
  t.is(limits.BACKEND_ID_MAX, 2_999_999);
  // an allocator bounded as build-full bounds it hands out ids past the default range
  const taken = Array.from({ length: DEFAULT_ID_LIMITS.frontendIds - 1 }, (_, i) => i + 1);
  t.is(new IdAllocator(taken, limits.LB_FE_ID_MAX - 1, 'frontend').next(), DEFAULT_ID_LIMITS.frontendIds);
  setIdLimits({ frontendIds: 4, backends: 3 });
  t.throws(() => new IdAllocator([1, 2, 3], limits.LB_FE_ID_MAX - 1, 'frontend').next(), { message: /no free frontend id: all ids 1..3/ });
  t.throws(() => setIdLimits({ frontendIds: 1, backends: 10 }), { instanceOf: RangeError });
  setIdLimits(DEFAULT_ID_LIMITS);
  t.is(limits.LB_FE_ID_MAX, 131072);
  t.is(limits.BACKEND_ID_MAX, L.LB_BACKENDS_MAX - 1);
});

test('run --bpf-map-max with a bad value exits 2 before touching anything, naming the value', async (t) => {
  const root = join(import.meta.dirname, '..', '..');
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [...cliNodeArgs(), 'run', '--manifests', '/nonexistent-kbp', '--bpf-map-max', 'lb_maglev_slots=7'], { cwd: root, timeout: 60_000 },
      (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr }));
  });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /--bpf-map-max lb_maglev_slots=7: below 131072/);
});

test('with the socket hooks off lb_sock_revnat is made with one entry (nothing reads it), unless --bpf-map-max sizes it; on, the sizes as given', (t) => {
  t.deepEqual(sizesForMode(undefined, { socketLb: false }), { lb_sock_revnat: 1 });
  t.deepEqual(sizesForMode({ lb_ct: 4096 }, { socketLb: false }), { lb_ct: 4096, lb_sock_revnat: 1 });
  t.deepEqual(sizesForMode({ lb_sock_revnat: 5000 }, { socketLb: false }), { lb_sock_revnat: 5000 }, 'the user\'s size wins');
  t.is(sizesForMode(undefined, { socketLb: true }), undefined, 'hooks on: the object\'s sizes');
  const given = { lb_ct: 4096 };
  t.is(sizesForMode(given, { socketLb: true }), given);
  t.notThrows(() => maxEntriesOf(sizesForMode(undefined, { socketLb: false })!), 'a size the flag could give');
});

test('lb_ct by default: two entries a flow for kube-proxy\'s nf_conntrack_max (32768 x CPUs, at least 131072), at most the object\'s; lb_ct_syn in the object\'s ratio', (t) => {
  const obj = { lb_ct: L.LB_CT_MAX, lb_ct_syn: L.LB_CT_SYN_MAX };
  // kube-proxy's getConntrackMax: max(maxPerCore x CPUs, min); 0 per core: leave it alone
  t.deepEqual([1, 2, 4, 8, 16, 64].map((c) => conntrackMaxFlows(CONNTRACK_DEFAULTS, c)), [131072, 131072, 131072, 262144, 524288, 2097152]);
  t.is(conntrackMaxFlows({ maxPerCore: 0, min: 131072 }, 8), 0);
  t.deepEqual([1, 2, 4, 8, 16, 64].map((c) => defaultCtEntries(c, obj).lb_ct), [262144, 262144, 262144, 524288, 524288, 524288], 'capped at the object\'s 524288');
  t.deepEqual(defaultCtEntries(2, obj), { lb_ct: 262144, lb_ct_syn: 32768 });
  t.deepEqual(defaultCtEntries(8, obj), obj, 'from 8 CPUs on: the object\'s sizes, as before');
  t.deepEqual(defaultCtEntries(2, obj, { maxPerCore: 0, min: 131072 }), obj, '0 per core: the object\'s sizes');
  t.deepEqual(defaultCtEntries(2, obj, { maxPerCore: 1000, min: 5000 }), { lb_ct: 10000, lb_ct_syn: 1250 });
  t.deepEqual(defaultCtEntries(2, obj, { maxPerCore: 1, min: 0 }), { lb_ct: 4, lb_ct_syn: 1 }, 'never below one entry');
  // an object built small (the lab's reliability object, ct-evictions): its sizes stand
  t.deepEqual(defaultCtEntries(2, { lb_ct: 8192, lb_ct_syn: 1024 }), { lb_ct: 8192, lb_ct_syn: 1024 });
  t.is(ctSynFor(4096, obj), 512);
  t.is(ctSynFor(2 * L.LB_CT_MAX, obj), L.LB_CT_SYN_MAX, 'an lb_ct set past the object\'s keeps lb_ct_syn at the object\'s');
  fc.assert(fc.property(fc.integer({ min: 1, max: 1024 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (cpus, maxPerCore, min) => {
    const r = defaultCtEntries(cpus, obj, { maxPerCore, min });
    return r.lb_ct >= 1 && r.lb_ct <= obj.lb_ct && r.lb_ct_syn >= 1 && r.lb_ct_syn <= obj.lb_ct_syn
      && (maxPerCore === 0 ? r.lb_ct === obj.lb_ct : r.lb_ct === Math.max(1, Math.min(obj.lb_ct, 2 * Math.max(maxPerCore * cpus, min))));
  }));
});

test('run --conntrack-max-per-core / --conntrack-min with a bad value exit 2 before touching anything, naming the flag', async (t) => {
  const root = join(import.meta.dirname, '..', '..');
  for (const [flag, v] of [['--conntrack-max-per-core', '-1'], ['--conntrack-min', '12k'], ['--conntrack-min', '4294967296']]) {
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [...cliNodeArgs(), 'run', '--manifests', '/nonexistent-kbp', `${flag}=${v}`], { cwd: root, timeout: 60_000 },
        (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr }));
    });
    t.is(r.code, 2, r.stderr);
    t.true(r.stderr.includes(`${flag} "${v}": expected an integer from 0 to 2147483647`), r.stderr);
  }
});
