// The fill of lb_backends (an ARRAY by backend id) in the metrics: counted by one scan of the whole
// array (a million entries) the first time it is asked for, then followed write by write. Each
// /metrics scrape asks; at 10,000 Services the scan after every endpoint change was ~1/2 of the
// agent's CPU per change (a profile of the real agent).
import test, { type ExecutionContext } from 'ava';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';
import { diffPlans } from '../../src/plan/diff.js';
import { buildPlan } from '../../src/plan/plan.js';
import { loadTemp } from './fixtures/dataplane.js';
import { native } from '../../src/dataplane/bpf/native/addon.js';
import { isRoot } from './fixtures/util.js';

const SEED = 0x1234;

function state(addresses: string[]): NodeState {
  const f: NodeFrontend = {
    service: 'default/web', portName: 'http', type: 'ClusterIP', protocol: 'TCP', scope: 'internal',
    address: '10.96.0.10', port: 80, sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
    backends: addresses.map((address) => ({ address, port: 8080, terminating: false, local: false })),
  };
  return { frontends: [f] };
}

/** a fresh load's lb_backends, its fill as /metrics reads it, and the whole-array scans (scanBatches) counted */
function backendsFill(t: ExecutionContext) {
  const d = loadTemp(t);
  d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
  const arr = d.maps.map('lb_backends');
  const counted = { scans: 0 };
  const scanBatches = arr.scanBatches.bind(arr);
  arr.scanBatches = (visit) => { counted.scans++; scanBatches(visit); };
  const fill = () => d.maps.mapFill().find((m) => m.name === 'lb_backends')!.entries;
  return { d, arr, fill, counted };
}

if (!isRoot) {
  test('map fill (skipped: not root)', (t) => {
    t.log('skipped: run as root (npm run test:datapath)');
    t.pass();
  });
} else {
  // A scrape reads lb_stats, counts the maps the programs write (lb_affinity, lb_sock_revnat, lb_frags,
  // ...) and reads lb_fe_stats: a batch lookup each, whose keys, values and cursors were fresh
  // ArrayBuffers at every scrape (up to ~150 KiB each at 4096 entries a batch), faulting in their
  // pages each time. They are kept now (BpfMap's synchronous scans share one set).
  test('a /metrics scrape\'s scans hand the addon the buffers of the scrape before: no fresh batch buffers at each scrape', (t) => {
    const d = loadTemp(t);
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    d.maps.apply(diffPlans(undefined, buildPlan(state(['10.244.0.1', '10.244.0.2', '10.244.0.3']), undefined, { seed: SEED })));
    const n = native(), lookupBatch = n.mapLookupBatch;
    let seen: Set<ArrayBufferLike> | undefined;
    n.mapLookupBatch = (fd, inBatch, outBatch, keys, values, count) => {
      for (const b of [inBatch, outBatch, keys, values]) if (b) seen?.add(b.buffer);
      return lookupBatch(fd, inBatch, outBatch, keys, values, count);
    };
    t.teardown(() => { n.mapLookupBatch = lookupBatch; });
    const scrape = (): Set<ArrayBufferLike> => {
      const s = seen = new Set();
      d.maps.readStats();
      d.maps.mapFill();
      d.maps.readFrontendStats();
      seen = undefined;
      return s;
    };
    const first = scrape(), second = scrape(), third = scrape();
    t.true(first.size > 0, 'the scrape looks up in batches');
    t.deepEqual([...second].filter((b) => !first.has(b)).map((b) => b.byteLength), [], 'every buffer of the second scrape was the first\'s');
    t.deepEqual([...third].filter((b) => !first.has(b)).map((b) => b.byteLength), [], 'and of the third');
    t.true(second.size <= 4, `one set: keys, values, two cursors (${second.size})`);
  });

  test('lb_backends fill: one scan, then followed through backend writes and removals', (t) => {
    const { d, arr, fill, counted } = backendsFill(t);
    // a batch at a time (scanBatches), never a view per entry (scan): at a million entries those were
    // ~215 MB of garbage on the first /metrics scrape
    let perEntry = 0;
    const scan = arr.scan.bind(arr);
    arr.scan = (visit) => { perEntry++; scan(visit); };
    let plan = buildPlan(state(['10.244.0.1', '10.244.0.2', '10.244.0.3']), undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, plan));
    t.is(fill(), 3);
    t.is(counted.scans, 1, 'the first count scans the array');
    // an endpoint change: a new backend written, the old one's entry zeroed
    for (const [k, addrs] of [['10.244.0.1', '10.244.0.2', '10.244.0.9'], ['10.244.0.2', '10.244.0.9'], ['10.244.0.2', '10.244.0.9', '10.244.0.7', '10.244.0.8']].entries()) {
      const next = buildPlan(state(addrs), plan, { seed: SEED });
      d.maps.apply(diffPlans(plan, next));
      plan = next;
      t.is(fill(), plan.backends.size, `after change ${k}: the backends the plan holds`);
    }
    t.is(counted.scans, 1, 'no scan after a write: the count followed it');
    t.is(perEntry, 0, 'no view per entry');
  });

  test('lb_backends made by this load (known empty): its fill follows the writes from nothing, with no scan of the array', (t) => {
    const { d, fill, counted } = backendsFill(t);
    d.maps.backendsEmpty();
    t.is(fill(), 0);
    let plan = buildPlan(state(['10.244.0.1', '10.244.0.2', '10.244.0.3']), undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, plan));
    t.is(fill(), 3);
    const next = buildPlan(state(['10.244.0.2', '10.244.0.9']), plan, { seed: SEED });
    d.maps.apply(diffPlans(plan, next));
    plan = next;
    t.is(fill(), plan.backends.size);
    t.is(counted.scans, 0, 'never read: the million entries of a fresh array are all empty');
    // written since: no longer known empty from the load
    d.maps.backendsEmpty();
    t.is(fill(), plan.backends.size);
  });

  // a /metrics scrape while applyAsync has lb_backends' batch on the thread pool (a first sync at
  // 100,000 Services writes a million backends, 131,072 a batch): the scan of the whole array held the
  // event loop ~0.26 s there (docs/perf-log.md, session 30, p30big), and what it read raced the batch
  test('lb_backends fill asked while its write is on the thread pool: the count before the write, no scan; the count after it exact', async (t) => {
    const { d, arr, fill, counted } = backendsFill(t);
    d.maps.backendsEmpty();
    const seen: number[] = [];
    const update = arr.updateBatchAsync.bind(arr);
    arr.updateBatchAsync = (...a: Parameters<typeof update>) => { seen.push(fill()); return update(...a); };
    let plan = buildPlan(state(['10.244.0.1', '10.244.0.2', '10.244.0.3']), undefined, { seed: SEED });
    await d.maps.applyAsync(diffPlans(undefined, plan));
    t.deepEqual(seen, [0], 'asked once, during the write: what the array held before it');
    t.is(counted.scans, 0, 'no scan while the write was under way');
    t.is(fill(), 3);
    const next = buildPlan(state(['10.244.0.2', '10.244.0.9', '10.244.0.7', '10.244.0.8']), plan, { seed: SEED });
    seen.length = 0;
    await d.maps.applyAsync(diffPlans(plan, next));
    plan = next;
    // two writes: the new backends (3 + 3), then the entries of the two gone zeroed
    t.deepEqual(seen, [3, 6], 'during each write, the count before it');
    t.is(fill(), plan.backends.size);
    t.is(counted.scans, 0);
  });

  test('lb_backends first counted while a write is on the thread pool: the scan made then is completed by the write it raced', async (t) => {
    const { d, arr, fill } = backendsFill(t);
    // no count asked before (not known empty): the first ask, during the write, scans before the kernel has the batch
    const seen: number[] = [];
    const update = arr.updateBatchAsync.bind(arr);
    arr.updateBatchAsync = (...a: Parameters<typeof update>) => { seen.push(fill()); return update(...a); };
    const plan = buildPlan(state(['10.244.0.1', '10.244.0.2', '10.244.0.3']), undefined, { seed: SEED });
    await d.maps.applyAsync(diffPlans(undefined, plan));
    t.deepEqual(seen, [0]);
    t.is(fill(), 3, 'the ids the write added are counted, though the scan did not see them');
  });

  // a /metrics scrape before the agent's first sync has ended (no plan to give the highest frontend id)
  test('lb_fe_stats on maps this load made: read up to the highest frontend id written since, not all its entries', async (t) => {
    const d = loadTemp(t);
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    const st = d.maps.map('lb_fe_stats');
    const reads: (number | 'all')[] = [];
    const scan = st.scan.bind(st), scanFirst = st.scanFirst.bind(st);
    st.scan = (visit) => { reads.push('all'); scan(visit); };
    st.scanFirst = (n, visit) => { reads.push(n); scanFirst(n, visit); };
    t.is(d.maps.readFrontendStats().size, 0);
    t.deepEqual(reads, ['all'], 'not known to be empty: every entry');
    d.maps.statsEmpty();
    reads.length = 0;
    t.is(d.maps.readFrontendStats().size, 0);
    const two: NodeState = { frontends: [state(['10.244.0.1']).frontends[0]!, { ...state(['10.244.0.2']).frontends[0]!, port: 81, portName: 'alt' }] };
    const plan = buildPlan(two, undefined, { seed: SEED });
    await d.maps.applyAsync(diffPlans(undefined, plan));
    const top = Math.max(...[...plan.frontends.values()].map((f) => f.id));
    t.is(d.maps.readFrontendStats().size, 0);
    t.is(d.maps.readFrontendStats(7).size, 0);
    t.deepEqual(reads, [1, top + 1, 8], 'none written: id 0 only; then up to the highest written; the caller\'s bound wins');
    // written since the load: not known empty any more
    const e = loadTemp(t);
    e.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    e.maps.apply(diffPlans(undefined, buildPlan(two, undefined, { seed: SEED })));
    const est = e.maps.map('lb_fe_stats');
    let all = 0;
    const escan = est.scan.bind(est);
    est.scan = (visit) => { all++; escan(visit); };
    e.maps.statsEmpty();
    e.maps.readFrontendStats();
    t.is(all, 1, 'frontends written before statsEmpty: every entry read');
  });

  test('maps only the agent writes: lb_frontends, lb_slots, lb_members from the writer\'s mirrors (equal to a count, never walked), the others counted again only after a write', (t) => {
    const d = loadTemp(t);
    d.maps.writeConfig({ hashSeed: SEED, snatMark: 0, flags: 0 });
    const counts = new Map<string, number>();
    const real = new Map<string, () => number>();
    for (const name of ['lb_slots', 'lb_members', 'lb_frontends', 'lb_revnat', 'lb_ct'] as const) {
      const m = d.maps.map(name);
      const count = m.count.bind(m);
      real.set(name, count);
      m.count = () => { counts.set(name, (counts.get(name) ?? 0) + 1); return count(); };
    }
    const fill = (name: string) => d.maps.mapFill().find((m) => m.name === name)!.entries;
    let plan = buildPlan(state(['10.244.0.1', '10.244.0.2', '10.244.0.3']), undefined, { seed: SEED });
    d.maps.apply(diffPlans(undefined, plan));
    t.is(fill('lb_slots'), 3);
    t.is(fill('lb_members'), 3);
    t.is(fill('lb_frontends'), 1);
    t.is(fill('lb_slots'), 3);
    t.is(fill('lb_frontends'), real.get('lb_frontends')!());
    t.true(counts.get('lb_ct')! >= 3, 'lb_ct (the programs write it) counted on every read');
    t.is(fill('lb_revnat'), 1);
    t.is(counts.get('lb_revnat'), 1, 'lb_revnat counted once while nothing wrote it');
    // lb_slots, lb_members, lb_frontends: what the writer's mirrors hold, never a walk of their
    // buckets (2M each for the first two), and equal to a count of the maps
    t.is(counts.get('lb_slots'), undefined);
    t.is(counts.get('lb_members'), undefined);
    t.is(counts.get('lb_frontends'), undefined);
    for (const [k, addrs] of [['10.244.0.1', '10.244.0.2'], ['10.244.0.2', '10.244.0.5', '10.244.0.6', '10.244.0.7'], []].entries()) {
      const next = buildPlan(state(addrs), plan, { seed: SEED });
      d.maps.apply(diffPlans(plan, next));
      plan = next;
      for (const name of ['lb_slots', 'lb_members', 'lb_frontends']) t.is(fill(name), real.get(name)!(), `after change ${k}: ${name} as counted`);
    }
    t.is(fill('lb_slots'), 0);
    t.is(counts.get('lb_slots'), undefined);
  });
}
