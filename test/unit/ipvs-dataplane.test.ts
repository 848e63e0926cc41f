// The IPVS data plane's sync logic against in-memory fakes of IPVS (netlink ops decoded back to
// virtual and real servers), the dummy device and the nft transport: a sync that touches a few
// frontends (the DesiredIndex, the ops' touched set) leaves the kernel as a walk over every frontend
// would; steps that read or write the kernel never interleave; the state file's journal replays to
// the plan. The VM tier runs the same class against a real kernel (test/vm/ipvs-guest.ts).
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { canonicalIp } from '../../src/util/ip.js';
import { join } from 'node:path';
import { buildPlan } from '../../src/plan/plan.js';
import { diffPlans } from '../../src/plan/diff.js';
import type { Plan } from '../../src/plan/types.js';
import type { NodeState } from '../../src/model/compiled.js';
import { decodeDest, decodeService, IPVS_CMD, vsKey, type IpvsOp, type RealServer, type VirtualServer } from '../../src/dataplane/ipvs/ipvs.js';
import { IpvsDataplane, touchedFrontends, type IpvsHost, type IpvsKernel } from '../../src/dataplane/ipvs/dataplane.js';
import { DesiredIndex, desiredState, frontendPart, rsKey, tupleKey, type ModelOptions } from '../../src/dataplane/ipvs/model.js';
import { IpvsStateFile, journalPath, loadIpvsState } from '../../src/dataplane/ipvs/state.js';
import { planToCompiledState } from '../../src/dataplane/plan-to-compiled.js';
import type { BulkGroup, BulkStats, NftTransport } from '../../src/dataplane/nftables/native.js';
import { arbState, be, fe } from './plan-helpers.js';

const OPTS: ModelOptions = { scheduler: 'rr', nodeAddresses: { 4: ['192.168.1.1'], 6: [] } };
const plan = (s: NodeState, prev?: Plan) => buildPlan(s, prev, { seed: 1 });

/** IPVS in memory: the ops' bytes decoded as the kernel would. `gate` holds the next run() until released. */
class FakeIpvs implements IpvsKernel {
  services = new Map<string, { vs: VirtualServer; dests: Map<string, RealServer> }>();
  async listServices(): Promise<VirtualServer[]> {
    return [...this.services.values()].map((s) => s.vs);
  }
  async listDests(vs: Array<{ address: string; protocol: 'TCP' | 'UDP' | 'SCTP'; port: number; fwmark?: number }>): Promise<RealServer[][]> {
    return vs.map((v) => [...(this.services.get(vsKey(v))?.dests.values() ?? [])].map((d) => ({ ...d, activeConns: 0, inactiveConns: 0 })));
  }
  async run(ops: IpvsOp[]): Promise<Array<{ op: IpvsOp; errno: number; message: string }>> {
    const failed: Array<{ op: IpvsOp; errno: number; message: string }> = [];
    for (const op of ops) {
      const m = { type: 0, flags: 0, seq: 0, payload: op.payload };
      const vs = decodeService(m)!;
      const k = vsKey(vs);
      const s = this.services.get(k);
      const fail = (errno: number) => failed.push({ op, errno, message: `${op.what}: ${errno}` });
      switch (op.cmd) {
        case IPVS_CMD.NEW_SERVICE: if (s) fail(-17); else this.services.set(k, { vs, dests: new Map() }); break;
        case IPVS_CMD.SET_SERVICE: if (!s) fail(-3); else s.vs = vs; break;
        case IPVS_CMD.DEL_SERVICE: this.services.delete(k); break;
        default: {
          const d = decodeDest(m, vs.address.includes(':') ? 10 : 2)!;
          if (!s) { fail(-3); break; }
          const rk = rsKey(d);
          if (op.cmd === IPVS_CMD.NEW_DEST) { if (s.dests.has(rk)) fail(-17); else s.dests.set(rk, { address: d.address, port: d.port, weight: d.weight }); }
          if (op.cmd === IPVS_CMD.SET_DEST) { if (!s.dests.has(rk)) fail(-2); else s.dests.set(rk, { address: d.address, port: d.port, weight: d.weight }); }
          if (op.cmd === IPVS_CMD.DEL_DEST) s.dests.delete(rk);
        }
      }
    }
    return failed;
  }
  close(): void {}
}

/** The dummy device's addresses; `hold()` makes the next setDummyAddresses() wait for release(). */
class FakeHost implements IpvsHost {
  addrs = new Set<string>();
  #held: Promise<void> | undefined;
  #release: (() => void) | undefined;
  entered: (() => void) | undefined;
  hold(): Promise<void> {
    this.#held = new Promise((r) => { this.#release = r; });
    return new Promise((r) => { this.entered = r; });
  }
  release(): void { this.#release?.(); }
  applySysctls() { return []; }
  async ensureDummy() {}
  async removeDummy() { return true; }
  async dummyAddresses() { return [...this.addrs]; }
  async setDummyAddresses(add: string[], del: string[]): Promise<void> {
    if (this.#held) {
      const h = this.#held;
      this.#held = undefined;
      this.entered?.();
      await h;
    }
    for (const a of del) this.addrs.delete(a);
    for (const a of add) this.addrs.add(a);
  }
}

/** The nft table's elements, from the scripts the data plane sends. */
class FakeNft implements NftTransport {
  readonly kind = 'libnftables' as const;
  exists = false;
  elements = new Map<string, Set<string>>();
  async run(commands: string): Promise<string> {
    if (commands.startsWith('list tables')) return JSON.stringify({ nftables: this.exists ? [{ table: { family: 'inet', name: 'kube-bpf-proxy-ipvs' } }] : [] });
    if (/^table inet /m.test(commands)) { this.elements = new Map(); this.exists = true; }
    for (const m of commands.matchAll(/^(add|delete) element inet \S+ (\S+) \{ (.*) \}$/gm)) {
      const set = m[2]!;
      let s = this.elements.get(set);
      if (!s) this.elements.set(set, s = new Set());
      for (const e of m[3]!.split(', ')) {
        if (m[1] === 'add') s.add(e);
        else for (const x of [...s]) if (x === e || x.startsWith(`${e} : `)) s.delete(x);
      }
    }
    return '';
  }
}

/** The same, with the addon's bulk element path (element-only syncs go there instead of run()). */
class FakeBulkNft extends FakeNft {
  bulkCalls = 0;
  readonly bulk = async (_table: string, groups: BulkGroup[]): Promise<BulkStats> => {
    this.bulkCalls++;
    for (const g of groups) {
      if (!g.keyType) throw new Error(`set ${g.set}: no key type`);
      let s = this.elements.get(g.set);
      if (!s) this.elements.set(g.set, s = new Set());
      for (const e of g.elems.split('\n')) {
        if (!g.del) s.add(e);
        else {
          const before = s.size;
          for (const x of [...s]) if (x === e || x.startsWith(`${e} : `)) s.delete(x);
          // nf_tables fails the whole batch on a missing element (ENOENT)
          if (s.size === before) throw new Error(`delete of a missing element ${e} in ${g.set}`);
        }
      }
    }
    return { messages: groups.length, bytes: 0, encodeCpuMs: 0, kernelCpuMs: 0 };
  };
}

/** The addresses the data plane puts NodePorts on: the node's, and every address of this machine but loopback's. */
function nodeAddresses(): ModelOptions['nodeAddresses'] {
  const all = Object.entries(networkInterfaces()).filter(([n]) => n !== 'lo').flatMap(([, l]) => (l ?? []).map((a) => canonicalIp(a.address)))
    .filter((a) => !a.startsWith('fe80:') && !a.startsWith('127.'));
  const addrs = [...new Set(['192.168.1.1', ...all])].sort();
  return { 4: addrs.filter((a) => !a.includes(':')), 6: addrs.filter((a) => a.includes(':')) };
}

function fakes(bulk = false) {
  const ipvs = new FakeIpvs(), host = new FakeHost(), nft = bulk ? new FakeBulkNft() : new FakeNft();
  const dir = mkdtempSync(join(tmpdir(), 'kbp-ipvs-unit-'));
  const dp = new IpvsDataplane({ pinRoot: join(dir, 'pins'), statePath: join(dir, 'ipvs.json'), devices: [], nodeAddresses: () => ['192.168.1.1'], transport: nft, host, openIpvs: async () => ipvs, drainMs: 60_000, resyncEvery: 1000 });
  return { ipvs, host, nft, dp, dir };
}

/** The kernel's state as desiredState would have it: draining (weight 0, left by the plan) real servers aside. */
function kernelView(ipvs: FakeIpvs, host: FakeHost, nft: FakeNft, want: ReturnType<typeof desiredState>) {
  const services: Record<string, string> = {};
  for (const [k, s] of ipvs.services) {
    const d = want.services.get(k);
    const dests = [...s.dests.values()].filter((r) => r.weight !== 0 || d?.dests.has(rsKey(r))).map((r) => `${rsKey(r)}=${r.weight}`).sort();
    services[k] = `${s.vs.scheduler} ${s.vs.flags} ${s.vs.timeout}: ${dests.join(' ')}`;
  }
  const elements: Record<string, string[]> = {};
  for (const [set, es] of nft.elements) if (es.size) elements[set] = [...es].sort();
  return { services, vips: [...host.addrs].sort(), elements };
}

function wantedView(want: ReturnType<typeof desiredState>) {
  const services: Record<string, string> = {};
  for (const [k, s] of want.services) services[k] = `${s.vs.scheduler} ${s.vs.flags} ${s.vs.timeout}: ${[...s.dests.values()].map((r) => `${rsKey(r)}=${r.weight}`).sort().join(' ')}`;
  const elements: Record<string, string[]> = {};
  for (const [set, es] of want.elements) if (es.size) elements[set] = [...es].sort();
  return { services, vips: [...want.vips].sort(), elements };
}

function indexView(index: DesiredIndex) {
  const services: Record<string, string> = {};
  for (const k of index.serviceKeys()) {
    const s = index.service(k)!;
    services[k] = `${s.vs.scheduler} ${s.vs.flags} ${s.vs.timeout}: ${[...s.dests.values()].map((r) => `${rsKey(r)}=${r.weight}`).sort().join(' ')}`;
  }
  const elements: Record<string, string[]> = {};
  for (const [set, es] of index.elements()) if (es.size) elements[set] = [...es].sort();
  return { services, vips: [...index.vips()].sort(), elements };
}

test('DesiredIndex: replacing the parts of the frontends a diff touches gives desiredState() of the new plan', (t) => {
  fc.assert(fc.property(fc.array(arbState, { minLength: 2, maxLength: 6 }), (states) => {
    let prev = plan(states[0]!);
    const index = new DesiredIndex();
    const inner = (p: Plan, f: ReturnType<Plan['frontends']['get']> & object) => (f.scope === 'external' ? [...p.frontends.values()].find((x) => x.scope === 'internal' && tupleKey(x) === tupleKey(f)) : undefined);
    for (const [k, f] of prev.frontends) index.replace(k, frontendPart(prev, f, inner(prev, f), OPTS));
    t.deepEqual(indexView(index), wantedView(desiredState(prev, OPTS)));
    for (const s of states.slice(1)) {
      const next = plan(s, prev);
      const touched = touchedFrontends(diffPlans(prev, next), prev, next) ?? new Set([...prev.frontends.keys(), ...next.frontends.keys()]);
      for (const k of touched) {
        const f = next.frontends.get(k);
        index.replace(k, f && frontendPart(next, f, inner(next, f), OPTS));
      }
      t.deepEqual(indexView(index), wantedView(desiredState(next, OPTS)));
      prev = next;
    }
  }), { numRuns: 150 });
});

for (const [bulk, inPlace] of [[false, false], [true, false], [false, true]]) test(`apply with ops writes only what changed, and the kernel ends as desiredState() says (random sequences)${bulk ? ', element changes through the bulk path' : ''}${inPlace ? ', plans built in the maps of the one before (consumePrev, no Maglev slots, as the agent builds), a resync after each' : ''}`, async (t) => {
  let bulkCalls = 0;
  await fc.assert(fc.asyncProperty(fc.array(arbState, { minLength: 2, maxLength: 6 }), async (states) => {
    const { ipvs, host, nft, dp, dir } = fakes(bulk);
    try {
      await dp.init();
      let prev: Plan | undefined;
      for (const s of states) {
        // agent.ts: the next plan takes the previous one's maps, so the data plane must keep its own record
        // without Maglev slots, as the agent builds for IPVS, in the in-place variant
        const next = buildPlan(s, prev, { seed: 1, consumePrev: inPlace, ...(inPlace && { slots: false }) });
        await dp.apply(diffPlans(prev, next), next);
        const want = desiredState(next, { scheduler: 'rr', nodeAddresses: nodeAddresses() });
        t.deepEqual(kernelView(ipvs, host, nft, want), wantedView(want));
        if (inPlace) {
          await dp.resync();
          t.deepEqual(kernelView(ipvs, host, nft, want), wantedView(want), 'after a resync');
        }
        prev = next;
      }
    } finally {
      if (nft instanceof FakeBulkNft) bulkCalls += nft.bulkCalls;
      await dp.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  }), { numRuns: 60 });
  if (bulk) t.true(bulkCalls > 0, 'no sync went through the bulk path');
});

test('a backend that turns local, planned in place (consumePrev): every frontend that has it follows (the change is seen against what was written, not the plan the build changed)', async (t) => {
  const { ipvs, host, nft, dp, dir } = fakes();
  try {
    await dp.init();
    const state = (local: boolean) => ({ frontends: [
      fe('10.96.0.10', 80, [be('10.244.1.2', 8080, false, local), be('10.244.1.3')]),
      fe('192.168.50.2', 30080, [be('10.244.1.2', 8080, false, local), be('10.244.1.3')], { type: 'NodePort', scope: 'external', snatRemote: true }),
      fe('10.96.0.11', 80, [be('10.244.1.2', 8080, false, local)]),
    ] });
    const p1 = buildPlan(state(false), undefined, { seed: 1, consumePrev: true });
    await dp.apply(diffPlans(undefined, p1), p1);
    const p2 = buildPlan(state(true), p1, { seed: 1, consumePrev: true });
    const ops = diffPlans(p1, p2);
    t.true(ops.some((o) => o.op === 'upsertBackend' && o.backend.local), 'the diff carries the flag');
    await dp.apply(ops, p2);
    const want = desiredState(p2, { scheduler: 'rr', nodeAddresses: nodeAddresses() });
    t.deepEqual(kernelView(ipvs, host, nft, want), wantedView(want));
  } finally {
    await dp.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resync and a sync never interleave: a resync that began before a sync does not write the older plan back (a removed UDP real server stays removed)', async (t) => {
  const { ipvs, host, dp, dir } = fakes();
  try {
    await dp.init();
    const both = plan({ frontends: [fe('10.96.0.12', 53, [be('10.244.1.2'), be('10.244.1.3')], { protocol: 'UDP' })] });
    await dp.apply(diffPlans(undefined, both), both);
    const one = plan({ frontends: [fe('10.96.0.12', 53, [be('10.244.1.2')], { protocol: 'UDP' })] }, both);
    // the resync's write stops at the dummy device (after it computed what it wants) ...
    const entered = host.hold();
    const resync = dp.resync();
    await Promise.race([entered, new Promise((r) => setTimeout(r, 200))]);
    // ... while the sync that removes a real server comes in
    const sync = dp.apply(diffPlans(both, one), one);
    await new Promise((r) => setTimeout(r, 50));
    host.release();
    await Promise.all([resync, sync]);
    const dests = [...(ipvs.services.get('10.96.0.12|53|UDP')?.dests.keys() ?? [])];
    t.deepEqual(dests, ['10.244.1.2|8080'], 'the resync wrote the plan before the sync back over it');
    await dp.resync();
    t.deepEqual([...(ipvs.services.get('10.96.0.12|53|UDP')?.dests.keys() ?? [])], ['10.244.1.2|8080']);
  } finally {
    await dp.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('state file: a snapshot and journal lines replay to the plan; a torn last line and an older generation\'s journal are not replayed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-ipvs-state-'));
  try {
    const path = join(dir, 'ipvs.json');
    const f = new IpvsStateFile(path, 3);
    let p = plan({ frontends: [fe('10.96.0.10', 80, [be('10.244.1.2')]), fe('10.96.0.11', 80, [be('10.244.1.3')])] });
    f.snapshot(p, ['10.96.0.10|80|TCP', '10.96.0.11|80|TCP']);
    const states: NodeState[] = [
      { frontends: [fe('10.96.0.10', 80, [be('10.244.1.2'), be('10.244.1.4')]), fe('10.96.0.11', 80, [be('10.244.1.3')])] },
      { frontends: [fe('10.96.0.10', 80, [be('10.244.1.4')])] },
    ];
    let owned = new Set(['10.96.0.10|80|TCP', '10.96.0.11|80|TCP']);
    for (const s of states) {
      const next = plan(s, p);
      const ops = diffPlans(p, next);
      const touched = touchedFrontends(ops, p, next)!;
      const gone = [...touched].filter((k) => !next.frontends.has(k)).map((k) => k.replace(/\|internal$/, ''));
      for (const k of gone) owned.delete(k);
      f.append(next, ops, touched, gone.map((k) => [k, false]), () => [...owned]);
      p = next;
    }
    t.is(readFileSync(journalPath(path), 'utf8').trim().split('\n').length, 2, 'one line per sync, no new snapshot');
    const back = loadIpvsState(path)!;
    t.deepEqual(planToCompiledState(back.plan), planToCompiledState(p));
    t.deepEqual([...back.plan.backends.keys()].sort(), [...p.backends.keys()].sort());
    t.deepEqual(back.owned, ['10.96.0.10|80|TCP']);
    // a crash mid-append: the torn line is dropped, the lines before it stand
    appendFileSync(journalPath(path), '{"gen":"x","f":[');
    t.deepEqual(planToCompiledState(loadIpvsState(path)!.plan), planToCompiledState(p));
    // a journal left from an older snapshot (a crash between the snapshot's rename and the journal's removal)
    const j = readFileSync(journalPath(path), 'utf8');
    f.snapshot(p, [...owned]);
    writeFileSync(journalPath(path), j.replace(/"gen":"[0-9a-f]+"/g, '"gen":"0000"'));
    t.deepEqual(planToCompiledState(loadIpvsState(path)!.plan), planToCompiledState(p));
    // every compactEvery lines the snapshot is rewritten and the journal starts over
    for (let i = 0; i < 5; i++) f.append(p, [], [], [], () => [...owned]);
    t.is(readFileSync(journalPath(path), 'utf8').trim().split('\n').length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
