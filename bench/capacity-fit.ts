// More Services than the maps hold: CapacityTracker.fit for one endpoint change to a served Service
// (a tenth of N left out by lb_maglev_slots), in process: the first fit, then 40 changes
// run: node --import=tsx bench/capacity-fit.ts (TREE=<another checkout> for its code; N=Services)
const root = process.env.TREE ?? new URL('..', import.meta.url).pathname;
const { CapacityTracker, UNLIMITED } = await import(`${root}/src/plan/capacity.ts`);
const { recordStateDelta } = await import(`${root}/src/plan/delta.ts`);
const { maglevSize } = await import(`${root}/src/plan/maglev.ts`);
const { LB_MAGLEV_IDS_PER_ELEM: E } = await import(`${root}/src/plan/limits.ts`);
const per = Math.ceil(maglevSize(10, 'pow2') / E) * E;
const N = Number(process.env.N ?? 10000);
function fe(i: number, gen: number) {
  return { service: `ns/s${String(i).padStart(6, '0')}`, portName: '', type: 'ClusterIP', address: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 80, protocol: 'TCP', scope: 'internal',
    backends: Array.from({ length: 10 }, (_, j) => ({ address: `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${((i & 255) + j * 13) & 255}`, port: 8080 + gen, terminating: false, local: false })),
    sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false };
}
let fs = Array.from({ length: N }, (_, i) => fe(i, 0));
let state: any = { frontends: fs };
const cap = { ...UNLIMITED, maglevSlots: Math.floor(N * 0.9) * per };
const tr = new CapacityTracker();
let held: any;
const f0 = performance.now();
let r = tr.fit(state, cap, () => new Set(held?.frontends.map((f: any) => f.service)), () => held);
held = r.state;
console.log('dropped', r.dropped.length, r.limit, 'first fit ms', (performance.now() - f0).toFixed(1));
const times: number[] = [];
for (let c = 1; c <= 40; c++) {
  const k = (c * 7919) % Math.floor(N * 0.8);
  const prev = state, old = prev.frontends[k];
  const nf = [...prev.frontends]; const n = fe(k, c); nf[k] = n;
  state = { frontends: nf };
  recordStateDelta(state, prev, [n], [old]);
  const t0 = performance.now();
  r = tr.fit(state, cap, () => new Set(held?.frontends.map((f: any) => f.service)), () => held);
  times.push(performance.now() - t0);
  held = r.state;
  if (r.dropped.length !== Math.ceil(N * 0.1)) console.log('dropped?', r.dropped.length);
}
times.sort((a, b) => a - b);
console.log('fit ms p50', times[20]!.toFixed(2), 'max', times[39]!.toFixed(2), 'min', times[0]!.toFixed(2));
