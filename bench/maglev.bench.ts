// Maglev figures (DESIGN.md "Performance targets"): build time and total table memory at 10,000
// Services against a fixed 16381-slot table per frontend (Cilium's default, 4 bytes a slot), disruption
// when one of N backends leaves, and imbalance.
import type { NodeState } from '../src/model/compiled.js';
import { MaglevBuilder, maglevHashes, maglevKernelBytes, maglevSize, type MaglevSizing } from '../src/plan/maglev.js';
import { buildPlan } from '../src/plan/plan.js';
import type { Plan } from '../src/plan/types.js';
import { nodeState } from './gen.js';
import { defineBench, stats, type BenchContext } from './lib.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Datapath, OBJECT_PATH } from '../testing/datapath.js';
import { BASE_SERVICES, buildRows, prepareRow, type Row } from '../testing/datapath-rows.js';
import { buildHashOfMapsObject, HASH_OF_MAPS_COMMIT } from '../testing/hash-of-maps-object.js';
import { parse } from '../testing/packets.js';
import { encodeCtKey, LB_CT_DIR_FWD, LB_MAGLEV_SLOTS_MAX, MAGLEV_ELEM } from '../src/dataplane/bpf/layout.js';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';
import { nativeAvailable } from '../src/dataplane/bpf/native/addon.js';
import { BPF_F_MMAPABLE, MapType } from '../src/dataplane/bpf/native/uapi.js';

/** what the kernel charges a map (fdinfo memlock: bpf_map_memory_usage) */
function memlock(fd: number): number {
  const m = /^memlock:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** CPUs the kernel sizes per-CPU maps for (/sys/devices/system/cpu/possible, e.g. "0-127") */
function possibleCpus(): number {
  try {
    return readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim().split(',')
      .reduce((n, r) => { const [a, b] = r.split('-').map(Number); return n + (b === undefined ? 1 : b! - a! + 1); }, 0);
  } catch {
    return NaN;
  }
}

/**
 * What the whole data plane holds in the kernel once loaded, as the kernel counts it (fdinfo memlock
 * of every map of the object: page-rounded mmapable arrays, per-CPU maps times the possible CPUs,
 * preallocated hash and LRU maps whole; hash maps without prealloc only their buckets while empty),
 * with the largest maps named: the Maglev array is one line of it.
 */
function dataplaneMemory(ctx: BenchContext): void {
  if (process.getuid?.() !== 0 || !nativeAvailable().ok) return ctx.note('data-plane kernel memory skipped: needs root and the native addon');
  const dp = new Datapath(OBJECT_PATH, 'mem');
  try {
    const names = dp.mapNames();
    const by = names.map((name) => ({ name, bytes: memlock(dp.map(name).fd) })).sort((a, b) => b.bytes - a.bytes);
    const total = by.reduce((s, m) => s + m.bytes, 0);
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    ctx.metric({
      name: 'kernel memory of the whole data plane, loaded, no Service', value: total, unit: 'bytes', better: 'lower',
      target: 'report (values only)',
      note: `fdinfo memlock of its ${by.length} maps, ${possibleCpus()} possible CPUs: ${by.slice(0, 6).map((m) => `${m.name} ${mib(m.bytes)}`).join(', ')}`,
    });
  } finally {
    dp.close();
  }
}

/** median program time of a first-packet row over runs (its conntrack entry deleted before each) */
function firstPacketNs(dp: Datapath, row: Row, runs: number): number {
  prepareRow(dp, row);
  const p = parse(row.input);
  const key = encodeCtKey({ saddr: p.src, daddr: p.dst, sport: p.sport, dport: p.dport, protocol: p.proto === 6 ? 'TCP' : 'UDP', dir: LB_CT_DIR_FWD });
  const ct = dp.map('lb_ct'), syn = dp.optMap('lb_ct_syn');
  const samples: number[] = [];
  for (let i = 0; i < runs + 50; i++) {
    ct.delete(key);
    syn?.delete(key);
    const r = dp.run(row.prog, row.input);
    if (i >= 50) samples.push(r.durationNs);
  }
  return stats(samples).median;
}

/**
 * First packets through lb_maglev_slots (this build) and through the hash-of-maps lb_maglev (the
 * object of HASH_OF_MAPS_COMMIT), interleaved round by round on the same rows; per-round ratios.
 */
function firstPacketAB(ctx: BenchContext): void {
  if (process.getuid?.() !== 0) return ctx.note('first packet A/B skipped: needs root (BPF_PROG_TEST_RUN)');
  const n = nativeAvailable();
  if (!n.ok) return ctx.note(`first packet A/B skipped: native addon: ${n.reason}`);
  const dir = mkdtempSync(join(tmpdir(), 'kbp-maglev-bench-'));
  let flat: Datapath | undefined, hom: Datapath | undefined;
  try {
    const old = buildHashOfMapsObject(dir);
    if (!old) return ctx.note(`first packet A/B skipped: commit ${HASH_OF_MAPS_COMMIT} (hash-of-maps object) not in this checkout`);
    flat = new Datapath(OBJECT_PATH, 'flat');
    hom = new Datapath(old, 'hom');
    flat.install(BASE_SERVICES);
    hom.install(BASE_SERVICES);
    const rows = buildRows().filter((r) => r.bench === 'first-packet' || r.bench === 'xdp-first-packet');
    const rounds = ctx.quick ? 5 : 15, runs = ctx.quick ? 500 : 2000;
    for (const row of rows) {
      const a: number[] = [], b: number[] = [], ratio: number[] = [];
      for (let i = 0; i < rounds; i++) {
        // interleaved, the order alternating: drift in the machine's load falls on both
        const [x, y] = i % 2 ? [firstPacketNs(hom, row, runs), firstPacketNs(flat, row, runs)].reverse() as [number, number] : [firstPacketNs(flat, row, runs), firstPacketNs(hom, row, runs)];
        a.push(x);
        b.push(y);
        ratio.push(x / y);
      }
      const sa = stats(a), sb = stats(b), sr = stats(ratio);
      const name = `first packet, flat lb_maglev_slots: ${row.name}`;
      ctx.metric({ name: `first packet, hash-of-maps (${HASH_OF_MAPS_COMMIT}): ${row.name}`, value: sb.median, unit: 'ns', better: 'lower', note: `median of ${rounds} rounds of ${runs} runs; min ${sb.min}, max ${sb.max}` });
      ctx.metric({
        name, value: sa.median, unit: 'ns', better: 'lower', target: '<= 300 ns', met: sa.median <= 300,
        baseline: `first packet, hash-of-maps (${HASH_OF_MAPS_COMMIT}): ${row.name}`,
        note: `flat / hash-of-maps per round: min ${sr.min.toFixed(3)}, median ${sr.median.toFixed(3)}, max ${sr.max.toFixed(3)} (${rounds} interleaved rounds of ${runs} runs); flat min ${sa.min}, max ${sa.max} ns`,
      });
      ctx.log(`${row.name}: flat ${sa.median} ns, hash-of-maps ${sb.median} ns, ratio min/median/max ${sr.min.toFixed(3)}/${sr.median.toFixed(3)}/${sr.max.toFixed(3)}`);
    }
  } finally {
    flat?.close();
    hom?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const CILIUM_M = 16381;
const KATRAN_M = 65537;
const SERVICES = 10_000;

/** xorshift32: deterministic flow hashes */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

function memberHashes(state: NodeState, seed: number): { h1: Uint32Array; h2: Uint32Array }[] {
  const seen = new Set<string>();
  const out: { h1: Uint32Array; h2: Uint32Array }[] = [];
  for (const f of state.frontends) {
    const key = f.backends.map((b) => `${b.address}|${b.port}`).join(',');
    if (seen.has(key)) continue; // shared table
    seen.add(key);
    const h1 = new Uint32Array(f.backends.length), h2 = new Uint32Array(f.backends.length);
    f.backends.forEach((b, i) => { [h1[i], h2[i]] = maglevHashes(`${b.address}|${b.port}`, seed); });
    out.push({ h1, h2 });
  }
  return out;
}

function buildAll(sets: { h1: Uint32Array; h2: Uint32Array }[], m: ((n: number) => number), builder: MaglevBuilder, keep: boolean): Uint32Array[] {
  const tables: Uint32Array[] = [];
  for (const s of sets) {
    const t = builder.buildIndices(s.h1, s.h2, s.h1.length, m(s.h1.length));
    if (keep) tables.push(t);
  }
  return tables;
}

function frontendBackends(n: number, salt: number) {
  return Array.from({ length: n }, (_, i) => ({ address: `10.${100 + (salt % 100)}.${(i >> 8) & 255}.${(i & 255) + 1}`, port: 8080, terminating: false, local: false }));
}

function stateOf(backends: ReturnType<typeof frontendBackends>): NodeState {
  return {
    frontends: [{
      service: 'bench/svc', portName: '', type: 'ClusterIP', address: '10.96.0.1', port: 80, protocol: 'TCP', scope: 'internal',
      backends, sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
    }],
  };
}

/** backend identity a flow hash lands on through the plan's only frontend, as the kernel looks it up */
function lookup(p: Plan, hashes: Uint32Array): string[] {
  const f = [...p.frontends.values()][0]!;
  const t = p.tables.get(f.tableId)!;
  return Array.from(hashes, (h) => p.backends.get(t.slots[h % t.m]!)!.address);
}

interface DisruptionRow { n: number; fixedMean: number; fixedMax: number; exactMean: number; pow2Mean: number; pow2Max: number }

function disruption(ctx: BenchContext, ns: number[], seeds: number): DisruptionRow[] {
  const flows = new Uint32Array(ctx.quick ? 20_000 : 100_000);
  const r = rng(42);
  for (let i = 0; i < flows.length; i++) flows[i] = r();
  const rows: DisruptionRow[] = [];
  for (const n of ns) {
    const fixed: number[] = [], exact: number[] = [], pow2: number[] = [];
    for (let s = 0; s < seeds; s++) {
      const seed = 1000 + s;
      const all = frontendBackends(n, s);
      const gone = (s * 7919) % n;
      const rest = all.filter((_, i) => i !== gone);
      for (const [sizing, out] of [['exact', exact], ['pow2', pow2]] as [MaglevSizing, number[]][]) {
        const before = buildPlan(stateOf(all), undefined, { seed, maglevSizing: sizing });
        const after = buildPlan(stateOf(rest), before, { seed, maglevSizing: sizing });
        const a = lookup(before, flows), b = lookup(after, flows);
        let moved = 0;
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) moved++;
        out.push(moved / flows.length);
      }
      // the algorithm alone: M held at the N-member size
      const m = maglevSize(n);
      const builder = new MaglevBuilder();
      const hs = all.map((b) => maglevHashes(`${b.address}|${b.port}`, seed));
      const ta = builder.buildIndices(hs.map((h) => h[0]), hs.map((h) => h[1]), n, m);
      const hr = hs.filter((_, i) => i !== gone);
      const tb = builder.buildIndices(hr.map((h) => h[0]), hr.map((h) => h[1]), n - 1, m);
      let moved = 0;
      for (let j = 0; j < m; j++) {
        const x = ta[j]!, y = tb[j]!;
        // indices of survivors above `gone` shift down by one in the smaller table
        if (x === gone || (x > gone ? x - 1 : x) !== y) moved++;
      }
      fixed.push(moved / m);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    rows.push({ n, fixedMean: mean(fixed), fixedMax: Math.max(...fixed), exactMean: mean(exact), pow2Mean: mean(pow2), pow2Max: Math.max(...pow2) });
  }
  return rows;
}

export default defineBench({
  name: 'maglev',
  title: 'Maglev: build time, memory, disruption, imbalance',
  description:
    'Tables as src/plan/maglev.ts builds them (M per table from its member count N, tables shared between ' +
    'frontends with the same backends) against a fixed M per frontend as peers do (Cilium 16381, Katran 65537). ' +
    'Kernel memory follows the data-plane layout: ceil(M/2) array elements of 8 bytes per table (bpf/lb_maps.h); ' +
    'the fixed-M baselines use 4 bytes a slot per frontend. Disruption is the share of flow hashes (uniform ' +
    'random) whose backend changes when one of N backends leaves, which includes the leaving backend\'s 1/N.',
  run(ctx) {
    const state = nodeState({ services: SERVICES, endpointsPerService: 10, nodePortEvery: 10 });
    const seed = 0x6b627078;

    // build time, all distinct tables of the 10k-Service cluster
    const sets = memberHashes(state, seed);
    const builder = new MaglevBuilder();
    const repeat = ctx.quick ? 2 : 5;
    const ours = ctx.time(() => buildAll(sets, (n) => maglevSize(n), builder, false), { repeat });
    const sample = ctx.quick ? sets.slice(0, 1000) : sets;
    const scale = sets.length / sample.length;
    const cil = ctx.time(() => buildAll(sample, () => CILIUM_M, builder, false), { repeat: ctx.quick ? 1 : 3 });
    ctx.metric({
      name: `build 10k tables, M=${CILIUM_M}`, value: cil.median * scale, unit: 'ms', better: 'lower',
      note: scale > 1 ? `${sample.length} tables timed, scaled x${scale}` : `${sets.length} tables`,
    });
    ctx.metric({
      name: 'build 10k tables, exact M', value: ours.median, unit: 'ms', better: 'lower', baseline: `build 10k tables, M=${CILIUM_M}`,
      note: `${sets.length} tables of M=${maglevSize(10)} (N=10); min ${ours.min.toFixed(0)} ms, CPU ${ours.cpuMedian.toFixed(0)} ms`,
    });
    const oursPow2 = ctx.time(() => buildAll(sets, (n) => maglevSize(n, 'pow2'), builder, false), { repeat });
    ctx.metric({
      name: 'build 10k tables, pow2 M (default)', value: oursPow2.median, unit: 'ms', better: 'lower', baseline: `build 10k tables, M=${CILIUM_M}`,
      note: `${sets.length} tables of M=${maglevSize(10, 'pow2')}; min ${oursPow2.min.toFixed(0)} ms, CPU ${oursPow2.cpuMedian.toFixed(0)} ms`,
    });

    // memory
    const exact = buildPlan(state, undefined, { seed, maglevSizing: 'exact' });
    const plan = buildPlan(state, undefined, { seed });
    const kernelBytes = (p: Plan) => [...p.tables.values()].reduce((s, t) => s + maglevKernelBytes(t.m), 0);
    const fixedBytes = (m: number) => plan.frontends.size * m * 4;
    const heapTables = ctx.retained(() => buildAll(sets, (n) => maglevSize(n), new MaglevBuilder(), true)).bytes;
    ctx.metric({ name: `kernel table memory, M=${CILIUM_M} per frontend`, value: fixedBytes(CILIUM_M), unit: 'bytes', better: 'lower', note: 'computed, not allocated' });
    ctx.metric({ name: `kernel table memory, M=${KATRAN_M} per frontend`, value: fixedBytes(KATRAN_M), unit: 'bytes', better: 'lower', note: 'computed, not allocated' });
    ctx.metric({
      name: 'kernel table memory, exact M per table', value: kernelBytes(exact), unit: 'bytes', better: 'lower',
      baseline: `kernel table memory, M=${CILIUM_M} per frontend`,
      target: 'report (values only)',
      note: `${exact.frontends.size} frontends, ${exact.tables.size} tables`,
    });
    ctx.metric({
      name: 'kernel table memory, pow2 M per table (default)', value: kernelBytes(plan), unit: 'bytes', better: 'lower',
      baseline: `kernel table memory, M=${CILIUM_M} per frontend`,
      target: 'report (values only; the row below counts pages)',
    });
    // honest: what the kernel charges each inner map (array_map_mem_usage, kernel/bpf/arraymap.c): a
    // BPF_F_MMAPABLE array is its header rounded up to a page plus its values rounded up to pages; a
    // plain one of this size comes from kmalloc's 8 KiB class or vmalloc pages, about the same
    const PAGE = 4096, ARRAY_HDR = 512;
    const pageUp = (b: number) => Math.ceil(b / PAGE) * PAGE;
    const pagedBytes = (p: Plan) => [...p.tables.values()].reduce((s, t) => s + pageUp(ARRAY_HDR) + pageUp(maglevKernelBytes(t.m)), 0);
    ctx.metric({
      name: 'kernel table memory, pow2 M, page rounding counted', value: pagedBytes(plan), unit: 'bytes', better: 'lower',
      baseline: `kernel table memory, M=${CILIUM_M} per frontend`,
      target: 'report (the layout replaced; the flat row below has the target)',
      note: `the hash-of-maps layout before lb_maglev_slots: ${plan.tables.size} inner arrays (BPF_F_MMAPABLE), a page of header and the values in whole pages each`,
    });
    ctx.metric({ name: 'user-space heap of the tables (exact M)', value: heapTables, unit: 'bytes', better: 'lower', note: 'measured: a Uint32Array per table, 4 bytes a slot' });
    // the flat layout (lb_maglev_slots): one array, allocated whole at load, counted by the kernel
    const flatSlots = [...plan.tables.values()].reduce((s, t) => s + Math.ceil(t.m / 2) * 2, 0);
    let flatKernel: number | undefined;
    if (process.getuid?.() === 0 && nativeAvailable().ok) {
      const arr = BpfMap.create({ type: MapType.ARRAY, name: 'kbp_bench_mg', keySize: 4, valueSize: MAGLEV_ELEM.size, maxEntries: LB_MAGLEV_SLOTS_MAX / 2, flags: BPF_F_MMAPABLE });
      try {
        flatKernel = memlock(arr.fd);
      } finally {
        arr.close();
      }
    }
    ctx.metric({
      name: 'kernel table memory, flat lb_maglev_slots (allocated, as the kernel counts it)', value: flatKernel ?? NaN, unit: 'bytes', better: 'lower',
      baseline: 'kernel table memory, pow2 M, page rounding counted',
      target: '<= 64 MiB at 10k Services, counted honestly', met: flatKernel !== undefined && flatKernel <= 64 * 2 ** 20 && flatSlots <= LB_MAGLEV_SLOTS_MAX,
      note: `fdinfo memlock of an array of LB_MAGLEV_SLOTS_MAX=${LB_MAGLEV_SLOTS_MAX} slots (allocated at load, whatever the Service count); the ${plan.tables.size} pow2 tables of 10k Services take ${flatSlots} slots (${(flatSlots * 4 / 2 ** 20).toFixed(1)} MiB) of it`,
    });
    dataplaneMemory(ctx);
    firstPacketAB(ctx);
    const mib = (b: number) => +(b / 2 ** 20).toFixed(1);
    ctx.figure({
      id: 'memory', kind: 'bar', title: `Maglev table memory at ${SERVICES.toLocaleString('en')} Services x 10 endpoints`,
      categories: ['exact M per table', 'pow2 M per table', 'flat array (allocated)', `M=${CILIUM_M}/frontend`, `M=${KATRAN_M}/frontend`],
      y: { label: 'MiB (kernel)', log: true },
      series: [{ name: 'kernel bytes', values: [mib(kernelBytes(exact)), mib(kernelBytes(plan)), mib(flatKernel ?? 0), mib(fixedBytes(CILIUM_M)), mib(fixedBytes(KATRAN_M))] }],
    });

    // disruption
    const ns = [2, 3, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100];
    const rows = disruption(ctx, ns, ctx.quick ? 4 : 20);
    const pct = (v: number) => +(v * 100).toFixed(2);
    ctx.figure({
      id: 'disruption', kind: 'line', title: 'Flows moved when one of N backends leaves',
      x: { label: 'backends N', log: true }, y: { label: '% of flows (no conntrack)', log: true },
      series: [
        { name: 'ideal 1/N', points: rows.map((r) => [r.n, pct(1 / r.n)]), reference: true },
        { name: 'target 1/N + 1%', points: rows.map((r) => [r.n, pct(1 / r.n + 0.01)]), reference: true },
        { name: 'Maglev, M kept (mean)', points: rows.map((r) => [r.n, pct(r.fixedMean)]) },
        { name: 'Maglev, M kept (max)', points: rows.map((r) => [r.n, pct(r.fixedMax)]) },
        { name: 'plan, exact M (mean)', points: rows.map((r) => [r.n, pct(r.exactMean)]) },
        { name: 'plan, pow2 M (mean)', points: rows.map((r) => [r.n, pct(r.pow2Mean)]) },
      ],
      note: 'exact M: M = smallest prime >= 100 N changes with N and reshuffles; pow2 keeps M within a power of two',
    });
    for (const n of [3, 10, 100]) {
      const r = rows.find((x) => x.n === n)!;
      const target = 1 / n + 0.01;
      ctx.metric({ name: `disruption N=${n}, M kept (mean)`, value: pct(r.fixedMean), unit: '%', target: `<= ${pct(target)}%`, met: r.fixedMean <= target, note: `max ${pct(r.fixedMax)}%` });
      ctx.metric({ name: `disruption N=${n}, plan exact M (mean)`, value: pct(r.exactMean), unit: '%', target: `<= ${pct(target)}%`, met: r.exactMean <= target });
      ctx.metric({ name: `disruption N=${n}, plan pow2 M (mean)`, value: pct(r.pow2Mean), unit: '%', target: `<= ${pct(target)}%`, met: r.pow2Mean <= target, note: `max ${pct(r.pow2Max)}%` });
    }

    // imbalance and per-table build time by N
    const imb: [number, number][] = [], perTable: [number, number][] = [];
    let worst = 0;
    for (const n of ns) {
      const m = maglevSize(n);
      const hs = frontendBackends(n, 7).map((b) => maglevHashes(`${b.address}|${b.port}`, seed));
      const h1 = hs.map((h) => h[0]), h2 = hs.map((h) => h[1]);
      const t = builder.buildIndices(h1, h2, n, m);
      const c = new Uint32Array(n);
      for (const i of t) c[i]!++;
      const v = Math.max(...c) / Math.min(...c) - 1;
      worst = Math.max(worst, v);
      imb.push([n, pct(v)]);
      const reps = Math.max(3, Math.floor(2000 / n));
      const st = ctx.time(() => { for (let k = 0; k < reps; k++) builder.buildIndices(h1, h2, n, m); }, { repeat: 3 });
      perTable.push([n, (st.median / reps) * 1000]);
    }
    ctx.metric({ name: 'imbalance, worst over N=2..100', value: pct(worst), unit: '%', target: '<= 1%', met: worst <= 0.01 + 1e-9, note: 'max/min slots per backend - 1' });
    ctx.figure({
      id: 'imbalance', kind: 'line', title: 'Slot imbalance (max/min - 1) at M = smallest prime >= 100 N',
      x: { label: 'backends N', log: true }, y: { label: '%', min: 0 },
      series: [{ name: 'imbalance', points: imb }, { name: 'target 1%', points: ns.map((n) => [n, 1]), reference: true }],
    });
    ctx.figure({
      id: 'build', kind: 'line', title: 'Build time of one table (M = smallest prime >= 100 N)',
      x: { label: 'backends N', log: true }, y: { label: 'µs per table', log: true },
      series: [{ name: 'build', points: perTable }],
    });
    ctx.note('Disruption "M kept" isolates the algorithm: the same M before and after. "plan" goes through buildPlan, where M follows N; with exact sizing nearly every change of N changes M and reshuffles the table, which conntrack hides for established flows on this node but not for flows that move between nodes.');
  },
});
