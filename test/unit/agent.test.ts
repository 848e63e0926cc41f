import test from 'ava';
import { waitFor } from '../../testing/wait.js';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, statMinorFaults } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import type { Dataplane } from '../../src/dataplane/types.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { toJson } from '../../src/model/canonical.js';
import { compile } from '../../src/compile/compile.js';
import { planToCompiledState } from '../../src/dataplane/plan-to-compiled.js';
import { Metrics } from '../../src/agent/metrics.js';
import { webYaml } from './agent-helpers.js';
import { silentLogger, type Logger } from '../../src/util/log.js';
import { fullGc } from '../../src/util/heap-trim.js';
import type { Plan, PlanOp } from '../../src/plan/types.js';
import { planDelta } from '../../src/plan/plan.js';
import { UNLIMITED } from '../../src/plan/capacity.js';
import { pino } from 'pino';


function setup(t: import('ava').ExecutionContext, dp = new FakeDataplane()) {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-agent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, dp };
}

function newAgent(dir: string, dp: FakeDataplane) {
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  return { agent, source };
}

test('the agent programs the data plane from manifests, follows changes, and removes what is gone', async (t) => {
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { agent, source } = newAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  t.true(dp.initialized);
  const want = () => toJson(compile(source.store.snapshot(), { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }).state);
  const held = async () => toJson(planToCompiledState((await dp.readPlan())!));
  t.is(await held(), want());
  t.is(dp.frontends.size, 1);

  // scale up: one new backend, a new table swapped in, the frontend updated last
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3', '10.244.2.4']));
  await source.scan();
  await agent.whenIdle();
  t.is(await held(), want());
  const ops = dp.log.map((o) => o.op);
  const lastUpsertFrontend = ops.lastIndexOf('upsertFrontend');
  t.true(ops.lastIndexOf('createTable') < lastUpsertFrontend);
  t.true(ops.lastIndexOf('upsertBackend') < lastUpsertFrontend);

  rmSync(join(dir, 'web.yaml'));
  await source.scan();
  await agent.whenIdle();
  t.is(dp.frontends.size, 0);
  t.is(dp.backends.size, 0);
  t.is(dp.tables.size, 0);
});

test('a restarted agent reuses the ids the data plane holds and writes nothing', async (t) => {
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const first = newAgent(dir, dp);
  await first.agent.start();
  await first.agent.whenIdle();
  await first.agent.stop();
  const idsBefore = [...dp.frontends.values()].map((f) => [f.id, f.tableId, ...f.backendIds]);
  const opsBefore = dp.log.length;

  const second = newAgent(dir, dp);
  await second.agent.start();
  t.teardown(() => second.agent.stop());
  await second.agent.whenIdle();
  t.is(dp.log.length, opsBefore, 'no write after a restart with unchanged state');
  t.deepEqual([...dp.frontends.values()].map((f) => [f.id, f.tableId, ...f.backendIds]), idsBefore);
});

test('a failed apply is retried and the data plane converges; health reflects it', async (t) => {
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  dp.failNext = 1;
  const { agent } = newAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  // retry after backoff (1 s default): wait, bounded (generous: CI runs this tier beside the VM tier's qemu)
  const deadline = Date.now() + 30_000;
  while (dp.frontends.size === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.is(dp.frontends.size, 1);
  t.true(agent.health.healthy());
  t.is((await agent.metrics.registry.getSingleMetricAsString('kubebpfproxy_sync_errors_total')).includes(' 1'), true);
});

test('after a failed apply the retry plans on what the kernel holds: a Service the failed apply wrote, deleted before the retry, is removed', async (t) => {
  // the failed apply may have written some of its ops; diffing the retry against the plan from
  // before it misses them (here: a frontend the retry no longer wants stays in the kernel)
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  const { agent } = newAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  t.is(dp.frontends.size, 1);
  dp.failAfterNext = 1;
  writeFileSync(join(dir, 'api.yaml'), webYaml(['10.244.1.9']).replaceAll('web', 'api').replace('10.96.0.10', '10.96.0.20'));
  const errors = async () => Number(/ (\d+)\s*$/.exec(await agent.metrics.registry.getSingleMetricAsString('kubebpfproxy_sync_errors_total'))?.[1] ?? 0);
  // bounded, generously: CI runs this tier beside the VM tier's qemu
  const until = Date.now() + 30_000;
  while (Date.now() < until && (await errors()) === 0) await new Promise((r) => setTimeout(r, 20));
  t.is(await errors(), 1, 'the apply that wrote api failed');
  t.is(dp.frontends.size, 2, 'the kernel took its writes');
  rmSync(join(dir, 'api.yaml'));
  // the retry (after its backoff) and the file's removal: bounded wait for the kernel to hold web alone
  const until2 = Date.now() + 30_000;
  while (Date.now() < until2 && dp.frontends.size !== 1) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual([...dp.frontends.values()].map((f) => f.service), ['default/web']);
});

test('a malformed Service is reported and the others are still programmed', async (t) => {
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  writeFileSync(join(dir, 'bad.yaml'), `apiVersion: v1
kind: Service
metadata: { name: bad, namespace: default }
spec:
  clusterIP: 10.96.0.11
  ports: [{ port: 70000 }]
`);
  const { agent } = newAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  t.is(dp.frontends.size, 1);
  t.regex(await agent.metrics.registry.getSingleMetricAsString('kubebpfproxy_rejected_objects'), / 1\n?$/m);
});

test('every seed example compiles and is programmed without error', async (t) => {
  const { dir, dp } = setup(t);
  const seeds = join(import.meta.dirname, '..', '..', 'examples', 'seeds');
  for (const f of readdirSync(seeds)) copyFileSync(join(seeds, f), join(dir, f));
  const source = new ManifestsSource({ dir, rescanMs: 0 });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'node01', standalone: true }, seed: 1, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  t.true(dp.frontends.size > 10);
  t.is(toJson(planToCompiledState((await dp.readPlan())!)), toJson(agent.state!));
});

test('when the maps would overflow, whole Services are left out by name and the others still programmed', async (t) => {
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'a.yaml'), webYaml(['10.244.1.2']).replaceAll('web', 'a-web').replace('10.96.0.10', '10.96.0.11'));
  writeFileSync(join(dir, 'b.yaml'), webYaml(['10.244.1.3']).replaceAll('web', 'b-web').replace('10.96.0.10', '10.96.0.12'));
  dp.limits = { frontends: Infinity, backends: 1, slots: Infinity, frontendIds: Infinity, sourceRanges: Infinity, maglevSlots: Infinity };
  const { agent } = newAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  t.deepEqual([...dp.frontends.values()].map((f) => f.service), ['default/a-web']);
  t.regex(await agent.metrics.registry.getSingleMetricAsString('kubebpfproxy_services_over_capacity'), / 1\n?$/m);
});


test('a Maglev array too small for the Services: the error names the map and the --bpf-map-max size that holds them all', async (t) => {
  // a user's 100,000 Services on the default lb_maglev_slots (sized for ~10,000): the log line must say
  // which map and what to set, not only the capacity key; the Services that fit are still served
  const { dir, dp } = setup(t);
  for (let i = 0; i < 6; i++) {
    writeFileSync(join(dir, `s${i}.yaml`), webYaml([`10.244.${i}.2`, `10.244.${i}.3`]).replaceAll('web', `s${i}-web`).replace('10.96.0.10', `10.96.0.${20 + i}`));
  }
  // M = 251 for 2 backends: 252 slots a table; room for two tables
  dp.limits = { ...UNLIMITED, maglevSlots: 2 * 252 };
  const { lines, agent } = loggedAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  t.deepEqual([...dp.frontends.values()].map((f) => f.service).sort(), ['default/s0-web', 'default/s1-web']);
  const err = lines.find((l) => l.level === 'error' && /left out/.test(String(l.msg)));
  t.truthy(err, 'an error line names the Services left out');
  const msg = String(err!.msg);
  t.regex(msg, /4 Service\(s\) left out: default\/s2-web/);
  t.regex(msg, /\blb_maglev_slots\b/, 'it names the map');
  const set = /--bpf-map-max lb_maglev_slots=(\d+)/.exec(msg);
  t.truthy(set, `it names the flag and a size: ${msg}`);
  t.true(Number(set![1]) >= 6 * 252 && Number(set![1]) % 2 === 0, `a size that holds all six tables, whole elements: ${set![1]}`);
  t.is(err!.map, 'lb_maglev_slots');
});

test('Services left out for capacity: the error line comes when the list changes, not at every sync (a change to a served Service logs none)', async (t) => {
  // over capacity, every sync logged the error with up to 20 names: one line per change anywhere in
  // the cluster, written to a pipe inside the sync (docs/perf-log.md, session 25)
  const { dir, dp } = setup(t);
  const write = (i: number, ips: string[]) => writeFileSync(join(dir, `s${i}.yaml`),
    webYaml(ips).replaceAll('web', `s${i}-web`).replace('10.96.0.10', `10.96.0.${20 + i}`));
  for (let i = 0; i < 6; i++) write(i, [`10.244.${i}.2`, `10.244.${i}.3`]);
  dp.limits = { ...UNLIMITED, maglevSlots: 3 * 252 };
  const { source, lines, agent } = loggedAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const leftOut = () => lines.filter((l) => l.level === 'error' && /left out/.test(String(l.msg)));
  t.is(leftOut().length, 1);
  for (const ips of [['10.244.1.2', '10.244.1.8'], ['10.244.1.2', '10.244.1.9']]) {
    write(1, ips);
    await source.scan();
    await agent.whenIdle();
  }
  t.true(dp.frontends.size > 0);
  t.is(leftOut().length, 1, 'changes to a served Service: no new line');
  // one more left out: the list changed, a line says so
  write(7, ['10.244.7.2', '10.244.7.3']);
  await source.scan();
  await agent.whenIdle();
  t.is(leftOut().length, 2);
  t.regex(String(leftOut()[1]!.msg), /4 Service\(s\) left out/);
});

test('Services left out for capacity: changes to them, to the ones served and new Services each land as a fresh fit would have them', async (t) => {
  // the fit keeps its last result while only Services it left out change (CapacityTracker #sameFit):
  // each step here is checked against what a fresh agent makes of the same folder
  const { dir, dp } = setup(t);
  const write = (i: number, ips: string[]) => writeFileSync(join(dir, `s${i}.yaml`),
    webYaml(ips).replaceAll('web', `s${i}-web`).replace('10.96.0.10', `10.96.0.${20 + i}`));
  for (let i = 0; i < 6; i++) write(i, [`10.244.${i}.2`, `10.244.${i}.3`]);
  const limits = { ...UNLIMITED, maglevSlots: 3 * 252 };
  dp.limits = limits;
  const { source, agent } = loggedAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const served = async (d: FakeDataplane) => toJson(planToCompiledState((await d.readPlan())!));
  const fresh = async () => {
    const dp2 = new FakeDataplane();
    dp2.limits = limits;
    const a2 = loggedAgent(dir, dp2);
    await a2.agent.start();
    await a2.agent.whenIdle();
    const out = { served: await served(dp2), dropped: a2.agent.metrics };
    await a2.agent.stop();
    return out;
  };
  const overCapacity = async (m: Metrics) => (await m.registry.getSingleMetricAsString('kubebpfproxy_service_over_capacity')).split('\n').filter((l) => l.startsWith('kubebpfproxy_service_over_capacity{')).map((l) => /service="([^"]+)"/.exec(l)![1]).sort();
  const steps: Array<[string, () => void]> = [
    ['a Service left out changes', () => write(4, ['10.244.4.2', '10.244.4.9'])],
    ['another one left out changes twice', () => { write(5, ['10.244.5.7']); }],
    ['a new Service, after the first left out', () => write(7, ['10.244.7.2', '10.244.7.3'])],
    ['a Service left out goes', () => rmSync(join(dir, 's5.yaml'))],
    ['a served Service changes', () => write(1, ['10.244.1.2', '10.244.1.8'])],
    ['a new Service that sorts first, while the first left out changes', () => { write(3, ['10.244.3.4']); }],
    ['a served Service goes: one left out takes its place', () => rmSync(join(dir, 's0.yaml'))],
  ];
  for (const [what, step] of steps) {
    step();
    await source.scan();
    await agent.whenIdle();
    const want = await fresh();
    // a Service taking a removed one's room waits for the sync after (the writes come before the removals)
    for (let k = 0; k < 100 && await served(dp) !== want.served; k++) {
      await new Promise((r) => setTimeout(r, 20));
      await agent.whenIdle();
    }
    t.is(await served(dp), want.served, what);
    t.deepEqual(await overCapacity(agent.metrics), await overCapacity(want.dropped), `${what}: the Services named as left out`);
  }
});


/** An agent over a manifests folder (no watch, no rescan) whose info lines are kept in `lines`. */
function loggedAgent(dir: string, dp: Dataplane): { lines: Array<Record<string, unknown>>; source: ManifestsSource; agent: Agent } {
  const lines: Array<Record<string, unknown>> = [];
  const keep = (level: string) => (o: unknown, msg?: string) => { if (typeof o === 'object' && o) lines.push({ ...(o as Record<string, unknown>), level, msg }); };
  const log = { ...silentLogger, info: keep('info'), error: keep('error') } as unknown as Logger;
  const source = new ManifestsSource({ dir, rescanMs: 0, watch: false });
  const agent = new Agent({ source, dataplane: dp, log, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  return { lines, source, agent };
}

test('compiled ahead while the data plane loads: a change made during the load still reaches the first sync', async (t) => {
  // the agent compiles the source's objects while init() runs (the BPF verifier, ~1.5 s at start);
  // the first sync must still see what changed after that compile, and log the compile it ran
  let release!: () => void;
  const loading = new Promise<void>((r) => { release = r; });
  class SlowInit extends FakeDataplane {
    override async init(): Promise<void> {
      await loading;
      await super.init();
    }
  }
  const { dir, dp } = setup(t, new SlowInit());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  writeFileSync(join(dir, 'api.yaml'), webYaml(['10.244.3.1']).replace(/\bweb\b/g, 'api').replace('10.96.0.10', '10.96.0.11'));
  const { lines, source, agent } = loggedAgent(dir, dp);
  const started = agent.start();
  t.teardown(() => agent.stop());
  // the source has been read and compiled; the load still runs: one Service changes, one goes
  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3', '10.244.2.9']));
  rmSync(join(dir, 'api.yaml'));
  await source.scan();
  t.is(dp.log.length, 0);
  release();
  await started;
  await agent.whenIdle();
  const want = toJson(compile(source.store.snapshot(), { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }).state);
  t.is(toJson(planToCompiledState((await dp.readPlan())!)), want);
  t.true(want.includes('10.244.2.9') && !want.includes('10.96.0.11'));
  const start = lines.find((l) => 'compileAheadMs' in l);
  t.true(start !== undefined && Number(start.compileAheadMs) > 0);
});

/** A data plane whose init() waits for release(); fresh() as a first start's BPF load says (nothing pinned yet). */
function freshSlowDataplane(fail = false) {
  let release!: () => void;
  const loading = new Promise<void>((r) => { release = r; });
  const seen = { loaded: false, capacityWhileLoading: 0, writesWhileLoading: 0 };
  class FreshSlowInit extends FakeDataplane {
    override async init(): Promise<void> {
      await loading;
      if (fail) throw new Error('the verifier refused a program');
      seen.loaded = true;
      await super.init();
    }
    fresh(): boolean {
      return true;
    }
    override capacity() {
      if (!seen.loaded) seen.capacityWhileLoading++;
      return super.capacity();
    }
    override async apply(ops: Parameters<FakeDataplane['apply']>[0], next: Parameters<FakeDataplane['apply']>[1]): Promise<void> {
      if (!seen.loaded) seen.writesWhileLoading++;
      return super.apply(ops, next);
    }
    override async setLocalSources(cidrs: readonly string[]): Promise<void> {
      if (!seen.loaded) seen.writesWhileLoading++;
      return super.setLocalSources(cidrs);
    }
  }
  return { dp: new FreshSlowInit(), release, seen };
}

const until = (what: string, cond: () => boolean) => waitFor(cond, what, 20_000, 5);

test('a fresh data plane: the first sync is planned while it loads and written once it is loaded, a change meanwhile after it', async (t) => {
  // a first start on a node: the BPF load (the verifier, ~1.5 s) is the last step to end on a
  // folder, and nothing pinned means nothing to read back: the plan is built beside it (issue 10)
  const { dp, release, seen } = freshSlowDataplane();
  const { dir } = setup(t, dp);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { lines, source, agent } = loggedAgent(dir, dp);
  const started = agent.start();
  t.teardown(() => agent.stop());
  await until('the first sync fits the plan to the maps', () => seen.capacityWhileLoading > 0);
  // a change while the planned sync waits for the load: it must reach the kernel too
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3', '10.244.2.9']));
  await source.scan();
  t.is(dp.log.length, 0);
  release();
  await started;
  await agent.whenIdle();
  t.is(seen.writesWhileLoading, 0, 'nothing is written before the data plane is loaded');
  const want = toJson(compile(source.store.snapshot(), { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }).state);
  t.true(want.includes('10.244.2.9'));
  t.is(toJson(planToCompiledState((await dp.readPlan())!)), want);
  t.true(lines.some((l) => l.plannedBesideLoad === true));
  t.true(lines.some((l) => l.msg === 'sync steps' && Number(l.loadWaitMs) > 0), 'the first sync waited for the load before its writes');
});

test('a fresh data plane whose load fails: start() fails and the sync planned meanwhile writes nothing, nor retries', async (t) => {
  const { dp, release, seen } = freshSlowDataplane(true);
  const { dir } = setup(t, dp);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  const { lines, agent } = loggedAgent(dir, dp);
  const started = agent.start();
  await until('the first sync fits the plan to the maps', () => seen.capacityWhileLoading > 0);
  release();
  await t.throwsAsync(started, { message: /verifier refused/ });
  await agent.whenIdle();
  await new Promise((r) => setTimeout(r, 50));
  await agent.stop();
  t.is(dp.log.length, 0);
  t.is(seen.writesWhileLoading, 0);
  t.false(lines.some((l) => /sync failed/.test(String(l.msg))), 'no retry of a sync over a data plane that never loaded');
});

test('a sync that wrote logs when the kernel held it (appliedAt, epoch ms) between its start and its end', async (t) => {
  // agent-change measures a change's time to the kernel on the agent's clock with it: the bench's
  // poll sees the kernel only when the bench runs, which a loaded machine delays past the agent's sync
  const { dir, dp } = setup(t, new FakeDataplane());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { lines, source, agent } = loggedAgent(dir, dp);
  const before = performance.timeOrigin + performance.now();
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  let steps: Record<string, unknown> | undefined;
  for (let i = 0; i < 200 && !steps; i++) {
    steps = lines.find((l) => 'totalMs' in l && Number(l.ops) > 0);
    if (!steps) await new Promise((r) => setTimeout(r, 10));
  }
  t.truthy(steps);
  // on appliedAt's own clock (timeOrigin + performance.now()): endedAt is Date.now(), and the two
  // clocks drift apart by milliseconds in a long process (a run saw appliedAt 32 ms past endedAt)
  const after = performance.timeOrigin + performance.now();
  const at = Number(steps!.appliedAt);
  t.true(at >= before && at <= after, `appliedAt ${at}, start ${before}, line seen at ${after}`);
});

test('the source hears when the first sync is done (its put-off work: the manifests source\'s first rescan)', async (t) => {
  const { dir, dp } = setup(t, new FakeDataplane());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  let told = 0, syncsThen = -1;
  class Heard extends ManifestsSource {
    override afterFirstSync(): void {
      told++;
      syncsThen = agent.syncs;
    }
  }
  const source = new Heard({ dir, rescanMs: 0, watch: false });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  for (let i = 0; i < 200 && !told; i++) await new Promise((r) => setTimeout(r, 10));
  t.is(told, 1);
  t.true(syncsThen >= 1);
});

// The warm-up after the first sync runs the one-change writes through the data plane's scratch
// writer (Dataplane.warmWriter), never through the data plane itself, and closes it (agent.#warm).
test('the warm-up applies its changes to the data plane\'s scratch writer only, and closes it', async (t) => {
  const warmed: string[][] = [];
  let closed = 0;
  class WarmedDataplane extends FakeDataplane {
    warmWriter() {
      return { apply: (ops: readonly { op: string }[]) => { warmed.push(ops.map((o) => o.op)); }, close: () => { closed++; } };
    }
  }
  const { dir, dp } = setup(t, new WarmedDataplane());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { agent } = newAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const applied = dp.log.length;
  for (let i = 0; i < 300 && closed < 2; i++) await new Promise((r) => setTimeout(r, 10));
  // one writer for warmOneChange, one for the second Agent the warm-up runs its syncs through
  t.is(closed, 2);
  // two full plans (warmOneChange's, and that Agent's first sync: each writes rev-NAT entries),
  // then each of their changes: each a short apply of its own; that Agent's last ones a Service
  // created (its rev-NAT entry too) and deleted, 4 times
  const revNat = warmed.filter((ops) => ops.includes('upsertRevNat')), deleted = warmed.filter((ops) => ops.includes('deleteRevNat'));
  const changes = warmed.filter((ops) => !ops.includes('upsertRevNat') && !ops.includes('deleteRevNat'));
  t.is(revNat.length, 2 + 4, `${revNat.length} full plans and Services created`);
  t.is(deleted.length, 4, `${deleted.length} Services deleted`);
  t.true(revNat.slice(2).every((ops) => ops.includes('upsertFrontend') && ops.length <= 64), JSON.stringify(revNat.slice(2)));
  t.true(deleted.every((ops) => ops.includes('deleteFrontend') && ops.length <= 64), JSON.stringify(deleted));
  t.true(changes.length >= 2, `${changes.length} applies`);
  t.true(changes.every((ops) => ops.includes('upsertBackend') && ops.length <= 64), JSON.stringify(changes));
  t.is(dp.log.length, applied, 'nothing of the warm-up reached the data plane');
});

// The warm-up also runs one-change syncs through a second Agent of its own (agent.ts #warmSyncs),
// over objects made as the agent's source makes them, its maps sized so that a change's fit counts
// the room kept for the write: each change a sync of its own, none leaving a Service out.
for (const standalone of [true, false]) {
  test(`the warm-up's syncs through a second agent: one per change, no Service left out (standalone: ${standalone})`, async (t) => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, unknown>); } });
    class WarmedDataplane extends FakeDataplane {
      warmWriter() {
        return { apply: () => {}, close: () => {} };
      }
    }
    const { dir, dp } = setup(t, new WarmedDataplane());
    writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
    const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
    const agent = new Agent({ source, dataplane: dp, log, metrics: new Metrics({ processMetrics: false }) }, {
      compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone }, seed: 42, minSyncMs: 5, syncPeriodMs: 60_000,
    });
    await agent.start();
    t.teardown(() => agent.stop());
    await agent.whenIdle();
    const warmed = () => lines.find((l) => l.msg === 'one-change path warmed' || l.msg === 'warming the one-change path failed');
    for (let i = 0; i < 500 && !warmed(); i++) await new Promise((r) => setTimeout(r, 10));
    const w = warmed();
    t.is(w?.msg, 'one-change path warmed', JSON.stringify(w));
    // its first sync, 24 endpoint changes, 8 Services created or deleted
    t.is(w?.syncs, 33);
    t.is(w?.leftOut, 0);
  });
}

// refreshStats reads per-frontend counters up to the highest frontend id: followed through each
// sync's writes (no walk over every frontend at the first scrape after a change), never below an id
// the data plane holds.
test('refreshStats asks the data plane for counters up to the highest frontend id, followed through the syncs', async (t) => {
  const hints: Array<number | undefined> = [];
  class CountedDataplane extends FakeDataplane {
    override async stats(hint: { maxFrontendId?: number } = {}) {
      hints.push(hint.maxFrontendId);
      return super.stats();
    }
  }
  const { dir, dp } = setup(t, new CountedDataplane());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  const { agent, source } = newAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  const highest = () => Math.max(...[...agent.plan!.frontends.values()].map((f) => f.id));
  await agent.refreshStats();
  t.is(hints.at(-1), highest());
  for (let i = 0; i < 3; i++) {
    writeFileSync(join(dir, `other${i}.yaml`), webYaml(['10.244.2.2']).replace(/\bweb\b/g, `other${i}`).replace('10.96.0.10', `10.96.0.${20 + i}`));
    await source.scan();
    await agent.whenIdle();
    await agent.refreshStats();
    t.is(agent.plan!.frontends.size, 2 + i);
    t.is(hints.at(-1), highest(), `after Service other${i}`);
  }
  rmSync(join(dir, 'other2.yaml'));
  await source.scan();
  await agent.whenIdle();
  await agent.refreshStats();
  t.is(agent.plan!.frontends.size, 3);
  t.true(hints.at(-1)! >= highest(), `${hints.at(-1)} covers ${highest()}`);
});

// With the heap trimmer (launch.ts), the warm-up goes to onSynced, which runs it after the
// trimmer's GC (that GC flushes idle bytecode), which itself waits for a quiet moment after the sync.
test('with onSynced set, the first full sync hands it the warm-up, once, and nothing warms until it runs it', async (t) => {
  let closed = 0;
  class WarmedDataplane extends FakeDataplane {
    warmWriter() {
      return { apply: () => {}, close: () => { closed++; } };
    }
  }
  const { dir, dp } = setup(t, new WarmedDataplane());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { agent } = newAgent(dir, dp);
  const handed: Array<(() => void) | undefined> = [];
  agent.onSynced = (_ops, warm) => { handed.push(warm); };
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.4']));
  for (let i = 0; i < 300 && handed.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.true(handed.length >= 2, `${handed.length} syncs`);
  t.is(typeof handed[0], 'function');
  t.true(handed.slice(1).every((w) => w === undefined), 'a later sync hands no warm-up');
  await new Promise((r) => setTimeout(r, 50));
  t.is(closed, 0, 'not warmed before the hook ran it');
  handed[0]!();
  // its syncs through a second Agent run on the event loop: both writers are closed after them
  for (let i = 0; i < 300 && closed < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.is(closed, 2);
});

test('a sync holds its ops no longer than its apply: the heap trimmer\'s GC after a big sync finds them garbage', async (t) => {
  // The full sync's ops are ~1.4M objects at 100,000 Services (~80 MiB). The sync's log line waits
  // for V8's GC entries (two turns of the loop) in a closure of the sync's scope; while the ops
  // shared that scope, the trimmer's full GC, a timer set in onSynced, found them alive, and with
  // V8's memory reducer off nothing collected them after (docs/perf-log.md, session 18, p18big).
  class Recording extends FakeDataplane {
    applied: WeakRef<PlanOp[]> | undefined;
    override async apply(ops: PlanOp[], next: Plan): Promise<void> {
      this.applied = new WeakRef(ops);
      return super.apply(ops, next);
    }
  }
  const { dir, dp } = setup(t, new Recording());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { agent } = newAgent(dir, dp);
  const gc = fullGc('regular');
  const held = new Promise<boolean>((resolve) => {
    // the check runs before the log line's closure does (it waits for a second turn of the loop)
    agent.onSynced = () => setImmediate(() => {
      gc();
      resolve((dp as Recording).applied?.deref() !== undefined);
    });
  });
  await agent.start();
  t.teardown(() => agent.stop());
  const reachable = await held;
  t.truthy((dp as Recording).applied, 'the first sync applied ops');
  t.false(reachable, 'the first sync\'s ops array is still reachable after it ended');
});

test('a full sync makes the plan\'s records for the next change on the turn after its end, and the next change is planned incrementally', async (t) => {
  // the first sync's build leaves its chain (build-incremental.ts) to the turn after the sync's end
  // (buildPlan deferChain; not the apply's waits, where it held up the apply's next writes): made
  // there, not lost, so the change after it is planned from it
  const plans: Plan[] = [];
  class AsyncApply extends FakeDataplane {
    override async apply(ops: Parameters<FakeDataplane['apply']>[0], next: Parameters<FakeDataplane['apply']>[1]): Promise<void> {
      plans.push(next);
      // as applyAsync: batches on the thread pool, the event loop free meanwhile
      await new Promise((r) => setTimeout(r, 5));
      return super.apply(ops, next);
    }
  }
  const { dir, dp } = setup(t, new AsyncApply());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { lines, source, agent } = loggedAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  // the line is written once the sync's GC figures settle
  await until('the first sync\'s steps line', () => lines.some((l) => l.msg === 'sync steps' && l.full === true));
  const first = lines.find((l) => l.msg === 'sync steps' && l.full === true);
  t.true(first !== undefined && typeof first.chainMs === 'number', 'the records were made before the first sync\'s line');
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3', '10.244.2.4']));
  await source.scan();
  await agent.whenIdle();
  t.is(plans.length, 2);
  t.truthy(planDelta(plans[0]!, plans[1]!), 'the change was planned incrementally from the first sync\'s plan');
  const want = toJson(compile(source.store.snapshot(), { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }).state);
  t.is(toJson(planToCompiledState((await dp.readPlan())!)), want);
});

test('a first sync that fits by the bound leaves the capacity count to the turn after its end; the next change is fitted on it', async (t) => {
  // the first fit's exact count (0.4-0.5 s at 100,000 Services, between compile and plan) is made
  // after the sync (CapacityTracker deferCount / settle): made there, the Services still land as
  // the maps' capacity has them once a change comes
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const { lines, source, agent } = loggedAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  await until('the first sync\'s steps line', () => lines.some((l) => l.msg === 'sync steps' && l.full === true));
  const first = lines.find((l) => l.msg === 'sync steps' && l.full === true)!;
  t.is(typeof first.fitCountMs, 'number', 'the count was made after the sync, before its line');
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3', '10.244.2.4']));
  await source.scan();
  await agent.whenIdle();
  const want = toJson(compile(source.store.snapshot(), { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true }).state);
  t.is(toJson(planToCompiledState((await dp.readPlan())!)), want);
  t.false(lines.some((l) => l.level === 'error' && /left out/.test(String(l.msg))));
});

test('a sync\'s steps line counts the main thread\'s own page faults beside the process\'s', async (t) => {
  // minorFaults is every thread's (getrusage): a V8 worker's optimizing compile beside a one-change
  // sync put 58-321 there (docs/perf-log.md, session 30, p30tail); threadMinorFaults is the sync's thread's
  const { dir, dp } = setup(t);
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  const { lines, agent } = loggedAgent(dir, dp);
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  await until('the first sync\'s steps line', () => lines.some((l) => l.msg === 'sync steps' && l.full === true));
  const first = lines.find((l) => l.msg === 'sync steps' && l.full === true)!;
  for (const k of ['minorFaults', 'threadMinorFaults']) t.true(Number.isInteger(first[k]) && (first[k] as number) >= 0, `${k}: ${String(first[k])}`);
});

test('statMinorFaults reads minflt past a command name with spaces and parentheses; the thread\'s count grows with its own first touches', (t) => {
  t.is(statMinorFaults('4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 3173 0 12 0 25 3 0 0 20 0 1 0 100'), 3173);
  const before = statMinorFaults(readFileSync('/proc/thread-self/stat', 'latin1'));
  // 4 MiB of fresh pages, touched by this thread
  Buffer.alloc(4 * 2 ** 20).fill(1);
  t.true(statMinorFaults(readFileSync('/proc/thread-self/stat', 'latin1')) > before);
});

test('startHeadroom: begun by start(), ended by the first full sync that succeeds (not by a failed one), once; not begun again by the warm-up; stop() ends one still on', async (t) => {
  // the warm-up runs a second Agent with this one's options: it must not take a headroom of its own
  let closed = 0;
  class WarmedDataplane extends FakeDataplane {
    warmWriter() {
      return { apply: () => {}, close: () => { closed++; } };
    }
  }
  const { dir, dp } = setup(t, new WarmedDataplane());
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2']));
  dp.failNext = 1;
  const events: string[] = [];
  const headroom = () => {
    events.push('begin');
    return {
      end: () => events.push(`end after ${dp.frontends.size} frontends`),
      // called by each full sync under the headroom twice: before compile, and once its diff is made (before the apply)
      collect: () => { events.push(`collect at ${dp.frontends.size} frontends`); return true; },
    };
  };
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 5 });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 42, minSyncMs: 5, syncPeriodMs: 60_000, startHeadroom: headroom,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  // the first apply failed: the start is not over
  await until('the first sync\'s collects', () => events.length >= 3);
  t.deepEqual(events, ['begin', 'collect at 0 frontends', 'collect at 0 frontends']);
  await until('the retried first sync', () => dp.frontends.size === 1);
  await agent.whenIdle();
  const started = ['begin', ...Array<string>(4).fill('collect at 0 frontends'), 'end after 1 frontends'];
  t.deepEqual(events, started);
  // the warm-up after the first sync: one writer for warmOneChange, one for its second Agent
  await until('the warm-up', () => closed >= 2);
  t.deepEqual(events, started);
  // a change after the start leaves it ended
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  await source.scan();
  await agent.whenIdle();
  await agent.stop();
  t.deepEqual(events, started);

  // an agent stopped before any sync succeeded ends its headroom at stop()
  const { dir: dir2, dp: dp2 } = setup(t);
  writeFileSync(join(dir2, 'web.yaml'), webYaml(['10.244.1.2']));
  dp2.failNext = 100;
  const ended: number[] = [];
  const agent2 = new Agent({ source: new ManifestsSource({ dir: dir2, rescanMs: 0, debounceMs: 5 }), dataplane: dp2, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 42, minSyncMs: 5, syncPeriodMs: 60_000, startHeadroom: () => ({ end: () => ended.push(1), collect: () => false }),
  });
  await agent2.start();
  t.deepEqual(ended, []);
  await agent2.stop();
  t.deepEqual(ended, [1]);
});
