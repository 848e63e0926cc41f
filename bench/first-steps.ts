// The first sync's CPU steps at N Services x 10 endpoints (one Service per file's shape, bench/gen.ts):
// compile, capacity fit, buildPlan from nothing, diff, and (KBP_FIRST_STEPS_KERNEL=1, root) the apply
// into freshly loaded maps under a temporary pin root, as Agent.#sync runs them after a start.
// Standalone, so that it runs unchanged in an older checkout (copy it there) for a same-run A/B:
// `N=10000 node --import=tsx bench/first-steps.ts` in each tree, interleaved. Prints one JSON line of
// CPU ms per step (process CPU, threads included) and wall ms. KBP_FIRST_STEPS_SLOTS=0 plans as the
// nftables and IPVS modes do (no Maglev slots).
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { NODE_NAME, snapshot, type ClusterShape } from './gen.js';
import { Compiler } from '../src/compile/compile.js';
import { CapacityTracker } from '../src/plan/capacity.js';
import { buildPlan } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';

const N = Number(process.env.N ?? 10000);
const shape: ClusterShape = { services: N, endpointsPerService: 10, nodePortEvery: 10 };
const snap = snapshot(shape);
const cap = { frontends: 65536, backends: 1 << 20, slots: 1 << 22, frontendIds: 65536, sourceRanges: 65536, maglevSlots: 1 << 24 };
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const out: Record<string, number | string> = { tree: process.cwd(), N };
const step = <T>(name: string, f: () => T): T => {
  const c0 = cpu(), t0 = performance.now();
  const r = f();
  out[`${name}Cpu`] = Math.round(cpu() - c0);
  out[`${name}Ms`] = Math.round(performance.now() - t0);
  return r;
};
let maps: { apply?(ops: unknown[]): unknown; applyAsync(ops: unknown[]): Promise<unknown> } | undefined;
let dispose = () => {};
if (process.env.KBP_FIRST_STEPS_KERNEL === '1') {
  const { loadDataplane } = await import('../src/dataplane/bpf/loader.js');
  const L = await import('../src/dataplane/bpf/layout.js');
  const pinRoot = mkdtempSync('/sys/fs/bpf/kbp-first-steps-');
  const tmp = mkdtempSync('/tmp/kbp-first-steps-');
  const { AgentStateFile } = await import('../src/dataplane/bpf/agent-state-file.js');
  const state = AgentStateFile.forPinRoot(pinRoot, join(tmp, 'state.json'));
  const remove = () => { rmSync(pinRoot, { recursive: true, force: true }); rmSync(tmp, { recursive: true, force: true }); };
  let d;
  try {
    d = loadDataplane({ pinRoot, state, mountBpffs: false });
  } catch (e) {
    remove(); // a failed load (the verifier interrupted: EAGAIN) leaves nothing behind
    throw e;
  }
  d.maps.writeConfig({ hashSeed: 1, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: 0 });
  maps = d.maps as never;
  dispose = () => { d.object.close(); remove(); };
}
// KBP_FIRST_STEPS_PROF=file: a CPU profile of the steps (started after the load: the profiler's
// signals interrupt the verifier, which then fails with EAGAIN)
const prof = process.env.KBP_FIRST_STEPS_PROF;
const { Session } = await import('node:inspector/promises');
const session = prof ? new Session() : undefined;
if (session) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
try {
  const c = new Compiler({ nodeName: NODE_NAME });
  const { state } = step('compile', () => c.compile(snap));
  const fit = step('fit', () => new CapacityTracker().fit(state, cap));
  // KBP_FIRST_STEPS_SLOTS=0: the plan as the agent builds it for nftables and IPVS (no Maglev slots)
  const slots = process.env.KBP_FIRST_STEPS_SLOTS !== '0';
  const plan = step('plan', () => buildPlan(fit.state, undefined, { seed: 1, consumePrev: true, ...(!slots && { slots }) }));
  out.rssAfterPlanMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
  const ops = step('diff', () => diffPlans(undefined, plan));
  if (process.env.KBP_FIRST_STEPS_DIGEST === '1') {
    // the tables by id, for a comparison of trees (or fills): the same plan gives the same digest
    const h = (await import('node:crypto')).createHash('sha256');
    for (const t of [...plan.tables.values()].sort((a, b) => a.id - b.id)) h.update(`${t.id} ${t.m} ${t.members.join(',')}:`).update(Buffer.from(t.slots.buffer, t.slots.byteOffset, t.slots.byteLength));
    out.tablesDigest = h.digest('hex').slice(0, 16);
  }
  if (maps) {
    const c0 = cpu(), t0 = performance.now();
    await maps.applyAsync(ops);
    out.applyCpu = Math.round(cpu() - c0);
    out.applyMs = Math.round(performance.now() - t0);
  }
  out.ops = ops.length;
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    (await import('node:fs')).writeFileSync(prof!, JSON.stringify(profile));
  }
} finally {
  dispose();
}
console.log(JSON.stringify(out));
