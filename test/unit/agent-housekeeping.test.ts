// Housekeeping (the data plane's syncDevices: IPVS drains and full resyncs, device scans) and a
// sync's apply both write the kernel from the data plane's in-memory copy of it. Run at the same
// time, a resync read the kernel mid-apply and wrote the previous plan back over the new one, for
// good: the IPVS VM check "a removed UDP backend" saw the real server never deleted. The agent runs
// them one at a time.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { FakeDataplane } from '../../src/dataplane/fake.js';
import { ManifestsSource } from '../../src/source/manifests.js';
import { Metrics } from '../../src/agent/metrics.js';
import type { Plan, PlanOp } from '../../src/plan/types.js';
import { webYaml } from './agent-helpers.js';

/** A data plane whose apply and syncDevices each take a while, recording when they run. */
class SlowDataplane extends FakeDataplane {
  readonly events: string[] = [];
  #inside = 0;
  overlaps = 0;
  async #busy(what: string, ms: number): Promise<void> {
    if (this.#inside++) this.overlaps++;
    this.events.push(`${what}+`);
    await new Promise((r) => setTimeout(r, ms));
    this.events.push(`${what}-`);
    this.#inside--;
  }

  override async apply(ops: PlanOp[], next: Plan): Promise<void> {
    await this.#busy('apply', 60);
    await super.apply(ops, next);
  }

  override async syncDevices(): Promise<void> {
    await this.#busy('devices', 25);
  }
}

test('housekeeping never runs while a sync applies, nor a sync while housekeeping runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-hk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const dp = new SlowDataplane();
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 1 });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 7, minSyncMs: 1, syncPeriodMs: 60_000, housekeepingMs: 10,
  });
  await agent.start();
  t.teardown(() => agent.stop());
  await agent.whenIdle();
  // a few changes, each applied while housekeeping fires every 10 ms
  for (const ips of [['10.244.1.2'], ['10.244.1.3', '10.244.1.4'], ['10.244.1.5']]) {
    writeFileSync(join(dir, 'web.yaml'), webYaml(ips));
    await source.scan();
    await agent.whenIdle();
    await new Promise((r) => setTimeout(r, 40));
  }
  const applies = dp.events.filter((e) => e === 'apply+').length;
  t.true(applies >= 4, `applies: ${applies}`);
  t.true(dp.events.filter((e) => e === 'devices+').length >= 2, 'housekeeping ran');
  t.is(dp.overlaps, 0, `overlapping calls: ${dp.events.join(' ')}`);
});

/** A BPF-kind data plane whose device scan waits for a gate, counting counter reads. */
class GatedBpfDataplane extends FakeDataplane {
  override readonly kind = 'bpf' as never;
  scanning = false;
  statsCalls = 0;
  #open: (() => void) | undefined;
  #gate: Promise<void> | undefined = new Promise((r) => { this.#open = r; });
  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }

  override async syncDevices(): Promise<void> {
    this.scanning = true;
    await this.#gate;
    this.scanning = false;
  }

  override async stats(): ReturnType<FakeDataplane['stats']> {
    this.statsCalls++;
    return super.stats();
  }
}

// BPF: a device scan writes lb_devices and lb_node_addrs, which no apply writes (and link events
// run it beside syncs anyway): a sync must not queue behind a slow scan, and housekeeping must not
// walk every map for counters (each scrape reads them): at 10,000 Services that walk held the event
// loop ~0.5 s every tick, and a change arriving then waited for it.
test('BPF: a sync does not wait for a device scan, and housekeeping reads no counters', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-hk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.2', '10.244.1.3']));
  const dp = new GatedBpfDataplane();
  t.teardown(() => dp.release());
  const source = new ManifestsSource({ dir, rescanMs: 0, debounceMs: 1 });
  const agent = new Agent({ source, dataplane: dp, metrics: new Metrics({ processMetrics: false }) }, {
    compile: { nodeName: 'n1', nodeIPs: ['192.168.1.10'], standalone: true },
    seed: 7, minSyncMs: 1, syncPeriodMs: 60_000, housekeepingMs: 20,
  });
  await agent.start();
  t.teardown(() => {
    dp.release();
    return agent.stop();
  });
  await agent.whenIdle();
  for (let i = 0; i < 500 && !dp.scanning; i++) await new Promise((r) => setTimeout(r, 10));
  t.true(dp.scanning, 'a housekeeping device scan is under way (held at its gate)');
  writeFileSync(join(dir, 'web.yaml'), webYaml(['10.244.1.9']));
  await source.scan();
  const outcome = await Promise.race([agent.whenIdle().then(() => 'synced'), new Promise((r) => setTimeout(() => r('held behind the scan'), 10_000))]);
  t.is(outcome, 'synced');
  t.true(dp.scanning, 'the scan was still under way');
  t.deepEqual([...agent.plan!.backends.values()].map((b) => b.address), ['10.244.1.9']);
  dp.release();
  await new Promise((r) => setTimeout(r, 100));
  t.is(dp.statsCalls, 0, 'housekeeping ticks read no counters');
});
