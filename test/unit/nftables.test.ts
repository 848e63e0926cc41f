// The nftables data plane without a kernel: its transactions run against a small simulator of an nft
// table (objects, elements, references; nft's errors for a missing or duplicate element and for
// deleting an object still named), and packets are walked through the result: dispatch map, choice
// chain, per-index DNAT maps. Behaviour, not rule text (STYLE.md).
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPlan } from '../../src/plan/plan.js';
import { diffPlans } from '../../src/plan/diff.js';
import type { Plan } from '../../src/plan/types.js';
import type { NodeState } from '../../src/model/compiled.js';
import { NftablesDataplane } from '../../src/dataplane/nftables/dataplane.js';
import type { NftTransport } from '../../src/dataplane/nftables/native.js';
import { feRec, fromHostSet, masqSet, membersOf, nextOrder, NftModel, offClusterSet, servicesMap, skeleton, type SkeletonOptions } from '../../src/dataplane/nftables/ruleset.js';
import { arbState, be, fe } from './plan-helpers.js';

const T = 'kbp-test';

/** An nft table as far as this data plane uses it. */
class NftSim {
  exists = false;
  objects = new Map<string, { kind: string; rules: string[] }>();
  elements = new Map<string, Map<string, string>>();
  transactions = 0;

  run(script: string): void {
    // a transaction is atomic: work on a copy
    const copy = this.#clone();
    try {
      copy.#apply(script);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- script ---\n${script.slice(0, 2000)}`);
    }
    this.exists = copy.exists;
    this.objects = copy.objects;
    this.elements = copy.elements;
    this.transactions++;
  }

  #clone(): NftSim {
    const s = new NftSim();
    s.exists = this.exists;
    s.objects = new Map([...this.objects].map(([k, v]) => [k, { kind: v.kind, rules: [...v.rules] }]));
    s.elements = new Map([...this.elements].map(([k, v]) => [k, new Map(v)]));
    return s;
  }

  #apply(script: string): void {
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (!line) continue;
      let m: RegExpMatchArray | null;
      if (line === `add table inet ${T}`) this.exists = true;
      else if (line === `delete table inet ${T}`) {
        if (!this.exists) throw new Error('delete table: no such table');
        this.exists = false;
        this.objects.clear();
        this.elements.clear();
      } else if (line === `table inet ${T} {`) {
        this.exists = true;
        let cur: { name: string; kind: string; rules: string[] } | undefined;
        for (i++; i < lines.length && lines[i] !== '}'; i++) {
          const l = lines[i]!;
          const om = /^ {2}(map|set|chain) (\S+) \{(.*)$/.exec(l);
          if (om) {
            if (this.objects.has(om[2]!)) throw new Error(`${om[2]} exists`);
            cur = { name: om[2]!, kind: om[1]!, rules: [] };
            this.objects.set(cur.name, { kind: cur.kind, rules: cur.rules });
            if (cur.kind !== 'chain') this.elements.set(cur.name, new Map());
            if (om[3]!.trim().endsWith('}')) cur = undefined;
          } else if (cur && l.trim() !== '}') cur.rules.push(l.trim());
        }
      } else if ((m = /^(add|delete) element inet \S+ (\S+) \{ (.*) \}$/.exec(line))) {
        const set = this.elements.get(m[2]!);
        if (!set) throw new Error(`${m[1]} element: no set ${m[2]}`);
        for (const e of m[3]!.split(', ')) {
          const [k, v = ''] = e.split(' : ') as [string, string?];
          if (m[1] === 'add') {
            if (set.has(k) && set.get(k) !== v) throw new Error(`add element ${m[2]} { ${k} }: exists with another value`);
            set.set(k, v);
          } else {
            if (!set.delete(k)) throw new Error(`delete element ${m[2]} { ${k} }: no such element`);
          }
        }
      } else if ((m = /^flush set inet \S+ (\S+)$/.exec(line))) {
        const set = this.elements.get(m[1]!);
        if (!set) throw new Error(`flush set ${m[1]}: no such set`);
        set.clear();
      } else if ((m = /^flush chain inet \S+ (\S+)$/.exec(line))) {
        const c = this.objects.get(m[1]!);
        if (!c) throw new Error(`flush chain ${m[1]}: no such chain`);
        c.rules.length = 0;
      } else if ((m = /^delete (chain|map|set) inet \S+ (\S+)$/.exec(line))) {
        const name = m[2]!;
        if (!this.objects.delete(name)) throw new Error(`delete ${m[1]} ${name}: no such object`);
        this.elements.delete(name);
        for (const [o, def] of this.objects) for (const r of def.rules) if (refs(r).includes(name)) throw new Error(`delete ${name}: still used by ${o}`);
        for (const [s, els] of this.elements) for (const v of els.values()) if (v === `goto ${name}`) throw new Error(`delete ${name}: still named by an element of ${s}`);
      } else throw new Error(`simulator: unknown command ${line}`);
    }
  }

  /** dangling references: a rule or element naming an object that does not exist */
  dangling(): string[] {
    const out: string[] = [];
    for (const [o, def] of this.objects) for (const r of def.rules) for (const x of refs(r)) if (!this.objects.has(x)) out.push(`${o} -> ${x}`);
    for (const [s, els] of this.elements) for (const v of els.values()) {
      const g = /^goto (\S+)$/.exec(v);
      if (g && !this.objects.has(g[1]!)) out.push(`${s} -> ${g[1]}`);
    }
    return out;
  }

  /** Where a new connection to a dispatch map key may go: backends ("addr . port"), or 'reject'. */
  walk(map: string, key: string): Set<string> | 'reject' | 'drop' | undefined {
    const v = this.elements.get(map)?.get(key);
    if (!v) return undefined;
    if (v === 'drop') return 'drop';
    const chainName = /^goto (\S+)$/.exec(v)![1]!;
    if (chainName === 'no-endpoints') return 'reject';
    const pick = this.objects.get(chainName)!;
    const out = new Set<string>();
    const numgen = pick.rules.find((r) => r.startsWith('numgen random mod'))!;
    for (const [, sel] of numgen.matchAll(/: goto ([\w-]+)/g)) {
      const dnat = this.objects.get(sel!)!.rules.find((r) => r.startsWith('dnat'))!;
      const bm = /map @(\S+)$/.exec(dnat)![1]!;
      const target = this.elements.get(bm)?.get(key);
      if (!target) throw new Error(`${sel}: ${bm} has no element ${key}`);
      out.add(target);
    }
    return out;
  }
}

function refs(rule: string): string[] {
  return [...rule.matchAll(/(?:@|goto |jump )([\w-]+)/g)].map((m) => m[1]!);
}

function simTransport(sim: NftSim): NftTransport {
  return {
    kind: 'libnftables',
    async run(commands: string, opts: { json?: boolean } = {}): Promise<string> {
      if (opts.json) {
        if (commands === 'list tables inet\n') return JSON.stringify({ nftables: sim.exists ? [{ table: { family: 'inet', name: T } }] : [] });
        if (!sim.exists) throw new Error('No such file or directory');
        const gen = sim.elements.get('generation');
        if (/^list set /.test(commands)) {
          if (!gen) throw new Error('No such file or directory');
          return JSON.stringify({ nftables: [{ set: { elem: [...gen.keys()].map(Number) } }] });
        }
        return '{"nftables":[]}';
      }
      sim.run(commands);
      return '';
    },
  };
}

function target(plan: Plan, id: number): string {
  const b = plan.backends.get(id)!;
  return `${b.address} . ${b.port}`;
}

/** Every frontend of the plan walks to exactly its members; shared sets hold exactly what the plan says. */
function checkTable(t: import('ava').ExecutionContext, sim: NftSim, plan: Plan): void {
  t.deepEqual(sim.dangling(), []);
  let dispatch = 0;
  for (const f of plan.frontends.values()) {
    const r = feRec(plan, f, undefined);
    const got = sim.walk(servicesMap(r.d), r.tuple);
    const members = membersOf(plan, f);
    t.deepEqual(got === 'reject' || got === 'drop' || got === undefined ? got : [...got].sort(),
      members.length ? members.map((id) => target(plan, id)).sort() : f.dropNoLocal ? 'drop' : 'reject', `${f.address}:${f.port}/${f.protocol}/${f.scope}`);
  }
  // masquerade sets: exactly the tuples of the frontends marked so (PlanFrontend.masquerade)
  const want = new Map<string, Set<string>>();
  for (const f of plan.frontends.values()) {
    const r = feRec(plan, f, undefined);
    if (!r.masq) continue;
    const name = r.masq === 'all' ? masqSet(r.d) : r.masq === 'offCluster' ? offClusterSet(r.d) : fromHostSet(r.d);
    if (!want.has(name)) want.set(name, new Set());
    want.get(name)!.add(r.tuple);
  }
  for (const [name, els] of sim.elements) {
    if (name.startsWith('masq-')) t.deepEqual([...els.keys()].sort(), [...(want.get(name) ?? [])].sort(), name);
  }
  for (const [name, els] of sim.elements) if (name.startsWith('services-')) dispatch += els.size;
  t.is(dispatch, plan.frontends.size, 'one dispatch element per frontend');
  const locals = new Set([...plan.backends.values()].filter((b) => b.local).map((b) => b.address));
  const held = new Set([...(sim.elements.get('hairpin4')?.keys() ?? []), ...(sim.elements.get('hairpin6')?.keys() ?? [])]);
  t.deepEqual([...held].sort(), [...locals].map((a) => `${a} . ${a}`).sort());
}

/** The chains and maps a table built from scratch for the plan would have. */
function freshObjects(plan: Plan): string[] {
  const sim = new NftSim();
  const m = new NftModel(T);
  const { tx, commit } = m.plan(plan);
  sim.run(tx.script);
  commit();
  return [...sim.objects.keys()].sort();
}

async function newDataplane(sim: NftSim, statePath: string): Promise<NftablesDataplane> {
  const dp = new NftablesDataplane({ pinRoot: '/nonexistent', table: T, statePath, devices: ['eth0'], nodeAddresses: () => [], transport: simTransport(sim) });
  await dp.init();
  return dp;
}

function tmpState(): { path: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-nft-'));
  return { path: join(dir, 'state.json'), done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('swap-remove keeps staying backends at their index', (t) => {
  t.deepEqual(nextOrder(undefined, [1, 2, 3]), [1, 2, 3]);
  t.deepEqual(nextOrder([1, 2, 3, 4], [1, 3, 4]), [1, 4, 3]);
  t.deepEqual(nextOrder([1, 2, 3], [1, 2, 3, 5]), [1, 2, 3, 5]);
  t.deepEqual(nextOrder([1, 2, 3], [4]), [4]);
  t.deepEqual(nextOrder([1, 2, 3], []), []);
});

test('a small plan: dispatch, per-index DNAT, refusal, affinity, source ranges, NodePort on any address', async (t) => {
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const dp = await newDataplane(sim, st.path);
  const state: NodeState = { frontends: [
    fe('10.96.0.1', 80, [be('10.244.1.2', 8080, false, true), be('10.244.2.2')]),
    fe('10.96.0.2', 53, [be('10.244.1.2', 5353)], { protocol: 'UDP', sessionAffinitySeconds: 10 }),
    fe('10.96.0.3', 80, []),
    // iTP=Local with endpoints only elsewhere: kube-proxy drops, rejects only without any endpoint
    fe('10.96.0.4', 80, [], { noLocalEndpoints: true }),
    fe('fd00:10:96::1', 80, [be('fd00:10:244:1::2', 80, false, true)]),
    fe('192.168.60.6', 80, [be('10.244.2.2', 80)], { type: 'LoadBalancer', scope: 'external', snatRemote: true, sourceRanges: ['10.9.9.0/24'] }),
    fe('0.0.0.0', 30000, [be('10.244.2.2', 80)], { type: 'NodePort', scope: 'external', snatRemote: true }),
  ] };
  const p = buildPlan(state, undefined, { seed: 1 });
  await dp.apply(diffPlans(undefined, p), p);
  checkTable(t, sim, p);
  t.is(sim.walk('services-int4', '10.96.0.3 . tcp . 80'), 'reject');
  t.is(sim.walk('services-int4', '10.96.0.4 . tcp . 80'), 'drop');
  t.deepEqual([...(sim.walk('services-ext4np', 'tcp . 30000') as Set<string>)], ['10.244.2.2 . 80']);
  t.true(sim.elements.get('firewall-allow4')!.has('192.168.60.6 . tcp . 80 . 10.9.9.0/24'));
  t.true(sim.elements.get('masq-ext4')!.has('192.168.60.6 . tcp . 80'));
  t.true(sim.elements.get('masq-ext4np')!.has('tcp . 30000'));
  t.true(sim.elements.get('hairpin4')!.has('10.244.1.2 . 10.244.1.2'));
  const aff = [...sim.objects].find(([n]) => n.startsWith('asel-int4-10-'));
  t.truthy(aff, 'an affinity chain for timeout 10');
  t.regex(aff![1].rules[0]!, /^update @aff-int4-0 \{ ip saddr \. ip daddr \. meta l4proto \. th dport timeout 10s \}$/);
  t.deepEqual(sim.elements.get('external-devices'), new Map([['"eth0"', '']]));
});

test('one endpoint change is a handful of element writes, no chain rewritten for other Services', async (t) => {
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const dp = await newDataplane(sim, st.path);
  const eps = (n: number) => Array.from({ length: n }, (_, i) => be(`10.244.${(i >> 8) & 255}.${(i & 255) + 1}`));
  const frontends = Array.from({ length: 200 }, (_, i) => fe(`10.96.${i >> 8}.${(i & 255) + 1}`, 80, eps(10)));
  const p1 = buildPlan({ frontends }, undefined, { seed: 1 });
  await dp.apply(diffPlans(undefined, p1), p1);
  const before = sim.objects.size;
  const changed = frontends.map((f, i) => (i === 7 ? { ...f, backends: f.backends.slice(1) } : f));
  const p2 = buildPlan({ frontends: changed }, p1, { seed: 1 });
  const model = new NftModel(T);
  model.restore(p1, new Map(), 1);
  const { tx } = model.plan(p2, ['10.96.0.8|80|TCP|internal'], []);
  // the dispatch element moves to pick-int4-9; index 0 takes the last backend; index 9 goes
  t.true(tx.elements <= 5, `${tx.elements} element writes:\n${tx.script}`);
  t.notRegex(tx.script, /chain pick-int4-10/);
  await dp.apply(diffPlans(p1, p2), p2);
  checkTable(t, sim, p2);
  t.is(sim.objects.size, before + 1, 'one new choice chain (9 backends)');
});

test('random sequences of plans: every step walks to exactly its members; no object leaks; a restart reads back', async (t) => {
  await fc.assert(fc.asyncProperty(fc.array(arbState, { minLength: 1, maxLength: 6 }), async (states) => {
    const st = tmpState();
    try {
      const sim = new NftSim();
      let dp = await newDataplane(sim, st.path);
      let prev: Plan | undefined;
      for (const [i, s] of states.entries()) {
        const next = buildPlan(s, prev, { seed: 7 });
        const ops = diffPlans(prev, next);
        if (ops.length) await dp.apply(ops, next);
        if (next.frontends.size || prev) {
          if (sim.exists) checkTable(t, sim, next);
          t.deepEqual([...sim.objects.keys()].sort(), sim.exists ? freshObjects(next) : [], 'the same chains and maps as a table built from scratch');
        }
        prev = next;
        if (i === 1) {
          // restart: a new agent reads the plan back and continues from it
          await dp.close();
          dp = await newDataplane(sim, st.path);
          const back = await dp.readPlan();
          if (sim.exists) t.deepEqual(back && [...back.frontends.keys()].sort(), [...next.frontends.keys()].sort());
          prev = back;
        }
      }
      await dp.close();
    } finally {
      st.done();
    }
  }), { seed: 9, numRuns: 60 });
});

/** A plan's content by value (a plan built in place changes under a reference kept to it). */
function planView(p: Plan): unknown {
  return {
    seed: p.seed,
    frontends: [...p.frontends].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, f]) => [k, { ...f }]),
    backends: [...p.backends.values()].sort((a, b) => a.id - b.id).map((b) => ({ ...b })),
    tables: [...p.tables.values()].sort((a, b) => a.id - b.id).map((x) => ({ id: x.id, m: x.m, members: [...x.members] })),
  };
}

test('plans built in the maps of the one before (consumePrev, no Maglev slots, as the agent builds): every step walks to its members; a restart after the stream (no close) reads back the last plan', async (t) => {
  for (const syncSaveMax of [256, 0]) {
    await fc.assert(fc.asyncProperty(fc.array(arbState, { minLength: 2, maxLength: 8 }), async (states) => {
      const st = tmpState();
      try {
        const sim = new NftSim();
        // syncSaveMax 0: every snapshot is taken in a timer (a large plan's path); 0 ms, so it lands between syncs
        const dp = new NftablesDataplane({ pinRoot: '/nonexistent', table: T, statePath: st.path, devices: ['eth0'], nodeAddresses: () => [], transport: simTransport(sim), syncSaveMax, saveDelayMs: 0 });
        await dp.init();
        let prev: Plan | undefined;
        let last: unknown;
        for (const s of states) {
          const next = buildPlan(s, prev, { seed: 7, consumePrev: true, slots: false });
          const ops = diffPlans(prev, next);
          if (ops.length) await dp.apply(ops, next);
          if (sim.exists) checkTable(t, sim, next);
          last = planView(next);
          prev = next;
          await new Promise((r) => setTimeout(r, 1));
        }
        if (!sim.exists) return;
        // a new agent, the old one gone without close(): the snapshot and its journal give the last plan
        const dp2 = await newDataplane(sim, st.path);
        const back = await dp2.readPlan();
        t.truthy(back, 'the state file describes the table');
        t.deepEqual(back && planView(back), last);
        // and it goes on from there: one more step lands exactly
        const next = buildPlan(states[0]!, back, { seed: 7, consumePrev: true, slots: false });
        await dp2.apply(diffPlans(back, next), next);
        checkTable(t, sim, next);
        await dp2.close();
        await dp.close();
      } finally {
        st.done();
      }
    }), { seed: 11, numRuns: 40 });
  }
});

test('a stream of one-frontend changes appends journal lines; the snapshot is not rewritten per change', async (t) => {
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const dp = await newDataplane(sim, st.path);
  const eps = (n: number, off = 0) => Array.from({ length: n }, (_, i) => be(`10.244.1.${i + 1 + off}`));
  let frontends = Array.from({ length: 50 }, (_, i) => fe(`10.96.0.${i + 1}`, 80, eps(3)));
  let prev = buildPlan({ frontends }, undefined, { seed: 1, consumePrev: true });
  await dp.apply(diffPlans(undefined, prev), prev);
  const snapshot = readFileSync(st.path, 'utf8');
  for (let i = 0; i < 20; i++) {
    frontends = frontends.map((f, j) => (j === i ? { ...f, backends: eps(3, i + 1) } : f));
    const next = buildPlan({ frontends }, prev, { seed: 1, consumePrev: true });
    await dp.apply(diffPlans(prev, next), next);
    prev = next;
  }
  t.is(readFileSync(st.path, 'utf8'), snapshot, 'the snapshot stays as the full sync wrote it');
  const j = readFileSync(`${st.path}.journal`, 'utf8');
  t.is(j.trim().split('\n').length, 20, 'one journal line per sync');
  const back = await (await newDataplane(sim, st.path)).readPlan();
  t.deepEqual(back && planView(back), planView(prev));
  // the last line torn (a crash mid-append): the file describes an older generation than the table's,
  // so the next agent does not adopt it and its first sync replaces the table in one transaction
  writeFileSync(st.path, snapshot);
  writeFileSync(`${st.path}.journal`, j.slice(0, j.length - 40));
  const dp3 = await newDataplane(sim, st.path);
  t.is(await dp3.readPlan(), undefined);
  const again = buildPlan({ frontends }, undefined, { seed: 1 });
  await dp3.apply(diffPlans(undefined, again), again);
  checkTable(t, sim, again);
  t.deepEqual(planView((await (await newDataplane(sim, st.path)).readPlan())!), planView(again));
});

test('stats() follows each commit (counted once per generation, not per scrape)', async (t) => {
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const dp = await newDataplane(sim, st.path);
  const entries = async (name: string) => (await dp.stats()).maps.find((m) => m.name === name)?.entries ?? 0;
  const p1 = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.2'), be('10.244.1.3')])] }, undefined, { seed: 1, consumePrev: true });
  await dp.apply(diffPlans(undefined, p1), p1);
  t.is(await entries('backends-int4-1'), 1);
  t.is(await entries('backends-int4-1'), 1, 'a second scrape of the same generation');
  const p2 = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.2')]), fe('10.96.0.2', 80, [be('10.244.1.4')])] }, p1, { seed: 1, consumePrev: true });
  await dp.apply(diffPlans(p1, p2), p2);
  t.is(await entries('backends-int4-1'), 0);
  t.is(await entries('backends-int4-0'), 2);
  t.is(await entries('services-int4'), 2);
});

test('stats(): every map\'s entries are the elements the table holds, at every step of random sequences (scraped or not, across a restart)', async (t) => {
  // the counts are kept by each commit for the records it touches, not walked per scrape: checked
  // against the table itself (hairpin and the helper sets are not reported)
  const reported = (name: string) => !/^(hairpin|generation|external-devices|local-backends)/.test(name);
  const seen = new Set<string>();
  await fc.assert(fc.asyncProperty(fc.array(fc.tuple(arbState, fc.boolean()), { minLength: 2, maxLength: 8 }), fc.nat(7), async (steps, restartAt) => {
    const st = tmpState();
    try {
      const sim = new NftSim();
      let dp = new NftablesDataplane({ pinRoot: '/nonexistent', table: T, statePath: st.path, devices: ['eth0'], nodeAddresses: () => [], transport: simTransport(sim), syncSaveMax: Infinity });
      await dp.init();
      let prev: Plan | undefined;
      for (const [i, [s, scrape]] of steps.entries()) {
        const next = buildPlan(s, prev, { seed: 7, consumePrev: true, slots: false });
        const ops = diffPlans(prev, next);
        if (ops.length) await dp.apply(ops, next);
        prev = next;
        if (i === restartAt && sim.exists) {
          await dp.close();
          dp = await newDataplane(sim, st.path);
          prev = await dp.readPlan();
          t.truthy(prev);
        }
        if (!scrape && i < steps.length - 1) continue;
        const got = new Map((await dp.stats()).maps.map((m) => [m.name, m.entries]));
        const want = new Map([...sim.elements].filter(([name, es]) => es.size > 0 && reported(name)).map(([name, es]) => [name, es.size]));
        t.deepEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()), `step ${i}`);
        for (const n of got.keys()) seen.add(n.replace(/\d+$/, ''));
      }
      await dp.close();
    } finally {
      st.done();
    }
  }), { seed: 13, numRuns: 60 });
  // the sequences held elements of each kind: owned (services, backends) and shared (masquerade, firewall)
  for (const kind of ['services-', 'backends-', 'masq-', 'firewall']) t.true([...seen].some((n) => n.startsWith(kind)), kind);
});

test('a UDP frontend that loses a backend, planned in place (consumePrev): its stale conntrack entries are flushed', async (t) => {
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const flushed: unknown[] = [];
  const dp = new NftablesDataplane({
    pinRoot: '/nonexistent', table: T, statePath: st.path, devices: ['eth0'], nodeAddresses: () => [], transport: simTransport(sim),
    udpConntrackCleanup: async (rules) => { flushed.push(...rules); return { deleted: 0 }; },
  });
  await dp.init();
  const udp = (bs: ReturnType<typeof be>[]) => ({ frontends: [fe('10.96.0.10', 53, bs, { protocol: 'UDP' }), fe('10.96.0.11', 80, [be('10.244.9.9')])] });
  const p1 = buildPlan(udp([be('10.244.1.2'), be('10.244.1.3')]), undefined, { seed: 1, consumePrev: true });
  await dp.apply(diffPlans(undefined, p1), p1);
  flushed.length = 0;
  const p2 = buildPlan(udp([be('10.244.1.2')]), p1, { seed: 1, consumePrev: true });
  await dp.apply(diffPlans(p1, p2), p2);
  // kube-proxy's CleanStaleEntries: the frontend's entries not from the backends left
  t.deepEqual(flushed, [{ dst: '10.96.0.10', port: 53, any: false, keep: ['10.244.1.2'] }]);
});

test('a failed transaction leaves the model (and so the next diff) where the table is', async (t) => {
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const dp = await newDataplane(sim, st.path);
  const p1 = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.2')])] }, undefined, { seed: 1 });
  await dp.apply(diffPlans(undefined, p1), p1);
  const p2 = buildPlan({ frontends: [fe('10.96.0.1', 80, [be('10.244.1.2'), be('10.244.1.3')])] }, p1, { seed: 1 });
  const real = sim.run.bind(sim);
  sim.run = () => { throw new Error('injected'); };
  await t.throwsAsync(dp.apply(diffPlans(p1, p2), p2));
  sim.run = real;
  checkTable(t, sim, p1);
  // the agent retries the same diff (its plan did not advance)
  await dp.apply(diffPlans(p1, p2), p2);
  checkTable(t, sim, p2);
});

test('masquerade as kube-proxy: masqueradeAll and the local detector on clusterIPs, every eTP=Cluster external flow', async (t) => {
  // pkg/proxy/nftables/proxier.go syncProxyRules: a service chain jumps to mark-for-masquerade for
  // every flow with masqueradeAll, else for flows localDetector.IfNotLocalNFT() matches; an external
  // chain of an eTP=Cluster Service jumps to it for every flow (local endpoints too); the
  // masquerading chain (postrouting) masquerades what is marked
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const dp = await newDataplane(sim, st.path);
  const local = be('10.244.1.2', 80, false, true);
  const p = buildPlan({ frontends: [
    fe('10.96.0.1', 80, [local], { masquerade: 'all' }),
    fe('10.96.0.2', 80, [local], { masquerade: 'offCluster' }),
    fe('10.96.0.3', 80, [local]),
    // eTP=Cluster NodePort whose only backend is local: still masqueraded (upstream; before: exempt)
    fe('192.168.50.11', 30080, [local], { type: 'NodePort', scope: 'external', snatRemote: true, masquerade: 'all' }),
    fe('0.0.0.0', 30081, [local], { type: 'NodePort', scope: 'external', snatRemote: true, masquerade: 'all' }),
    // eTP=Local keeps the source
    fe('192.168.50.11', 30082, [local], { type: 'NodePort', scope: 'external' }),
  ] }, undefined, { seed: 1 });
  await dp.apply(diffPlans(undefined, p), p);
  checkTable(t, sim, p);
  t.deepEqual([...sim.elements.get('masq-int4')!.keys()], ['10.96.0.1 . tcp . 80']);
  t.deepEqual([...sim.elements.get('masq-offcluster-int4')!.keys()], ['10.96.0.2 . tcp . 80']);
  t.deepEqual([...sim.elements.get('masq-ext4')!.keys()], ['192.168.50.11 . tcp . 30080']);
  t.deepEqual([...sim.elements.get('masq-ext4np')!.keys()], ['tcp . 30081']);
  // no exemption of local backends: the marked flow is masqueraded whatever backend it goes to
  const post = sim.objects.get('masquerading')!.rules;
  t.false(post.some((r) => /local-backends/.test(r)), post.join('\n'));
});

test('eTP=Local: flows from the node itself to an external address are masqueraded (kube-proxy), pods\' and others\' are not', async (t) => {
  // pkg/proxy/nftables/proxier.go syncProxyRules, an eTP=Local Service's external chain: pod traffic
  // short-circuits to the cluster chain unmarked; "fib saddr type local jump mark-for-masquerade"
  // ("masquerade local traffic": the node's own flows, whose source may be the LB IP itself), then
  // "fib saddr type local goto <cluster chain>". Ours: the eTP=Local short-circuit frontend (internal
  // scope on an external address) is where host traffic lands (nat-output goes to the internal chain)
  const st = tmpState();
  t.teardown(st.done);
  const sim = new NftSim();
  const dp = await newDataplane(sim, st.path);
  const local = be('10.244.1.2', 80, false, true), remote = be('10.244.2.2', 80, false, false);
  const p = buildPlan({ frontends: [
    fe('10.96.0.3', 80, [local, remote]),
    // eTP=Local LB IP and NodePorts: the external frontend keeps the source (local endpoints only),
    // the internal one (cluster-wide endpoints) serves pods and the node
    fe('192.168.60.5', 80, [local], { type: 'LoadBalancer', scope: 'external' }),
    fe('192.168.60.5', 80, [local, remote], { type: 'LoadBalancer', scope: 'internal' }),
    fe('192.168.50.11', 30090, [local], { type: 'NodePort', scope: 'external' }),
    fe('192.168.50.11', 30090, [local, remote], { type: 'NodePort', scope: 'internal' }),
    fe('0.0.0.0', 30091, [local], { type: 'NodePort', scope: 'external' }),
    fe('0.0.0.0', 30091, [local, remote], { type: 'NodePort', scope: 'internal' }),
    fe('fd00:10:96::60:5', 80, [local], { type: 'LoadBalancer', scope: 'external' }),
    fe('fd00:10:96::60:5', 80, [local, remote], { type: 'LoadBalancer', scope: 'internal' }),
  ] }, undefined, { seed: 1 });
  await dp.apply(diffPlans(undefined, p), p);
  checkTable(t, sim, p);
  // the rules that mark only flows whose source is a local address, and the sets they read
  const fromHost = new Map<string, string[]>();
  for (const [name, o] of sim.objects) {
    for (const r of o.rules) {
      const m = /@(\S+) fib saddr type local meta mark set meta mark \| 0x4b500000$/.exec(r);
      if (m) fromHost.set(m[1]!, [...(fromHost.get(m[1]!) ?? []), name]);
    }
  }
  const marked = [...fromHost.keys()].flatMap((s) => [...(sim.elements.get(s)?.keys() ?? [])].map((e) => `${s}: ${e}`)).sort();
  t.deepEqual(marked, [
    'masq-fromhost-int4: 192.168.50.11 . tcp . 30090',
    'masq-fromhost-int4: 192.168.60.5 . tcp . 80',
    'masq-fromhost-int4np: tcp . 30091',
    'masq-fromhost-int6: fd00:10:96::60:5 . tcp . 80',
  ]);
  // the node's own flows reach those rules: nat-output goes to the internal chain, which looks the
  // sets up before its dispatch maps
  t.is(sim.objects.get('nat-output')!.rules.at(-1), 'goto internal');
  t.true(fromHost.get('masq-fromhost-int4')!.includes('internal'));
  t.true(fromHost.get('masq-fromhost-int4np')!.includes('nodeports-internal'));
  // nothing else marks them: not masq-<D> (every flow) nor the external scope
  for (const s of ['masq-int4', 'masq-ext4', 'masq-ext4np', 'masq-int4np', 'masq-int6']) t.is(sim.elements.get(s)?.size ?? 0, 0, s);
  // the mark goes away with the frontend
  const p2 = buildPlan({ frontends: [fe('10.96.0.3', 80, [local, remote])] }, p, { seed: 1 });
  await dp.apply(diffPlans(p, p2), p2);
  checkTable(t, sim, p2);
  for (const s of fromHost.keys()) t.is(sim.elements.get(s)!.size, 0, s);
});

test('the local detector: each mode\'s "not from the cluster\'s pods" match marks offCluster frontends; none without one', (t) => {
  // pkg/proxy/util/localdetector.go: IfNotLocalNFT is `ip saddr != CIDR` (ClusterCIDR, NodeCIDR),
  // `iifname != BRIDGE` (BridgeInterface), `iifname != PREFIX*` (InterfaceNamePrefix); the no-op
  // detector marks nothing
  // the set's rule, once per chain that dispatches clusterIPs (pods' and external traffic)
  const rulesOf = (localTraffic?: SkeletonOptions['localTraffic']): string[] =>
    [...new Set(skeleton(T, { localTraffic }).split('\n').map((l) => l.trim()).filter((l) => l.includes('@masq-offcluster-int4 ')))];
  t.deepEqual(rulesOf(undefined), []);
  t.deepEqual(rulesOf({ cidrs: ['10.244.0.0/16'] }), [`ip daddr . meta l4proto . th dport @masq-offcluster-int4 ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4b500000`]);
  t.deepEqual(rulesOf({ cidrs: ['fd00:10:244::/48'] }), [], 'an IPv6-only detector leaves IPv4 alone');
  t.regex(rulesOf({ cidrs: [], bridgeInterface: 'cbr0' })[0]!, / iifname != "cbr0" meta mark set/);
  t.regex(rulesOf({ cidrs: [], interfaceNamePrefix: 'veth' })[0]!, / iifname != "veth\*" meta mark set/);
  t.throws(() => skeleton(T, { localTraffic: { cidrs: [], bridgeInterface: 'br0"; drop' } }), { message: /detectLocal.bridgeInterface "br0\\"; drop" is not a device name/ });
  t.throws(() => new NftablesDataplane({ pinRoot: '/x', table: T, devices: [], nodeAddresses: () => [], localTraffic: { cidrs: [], interfaceNamePrefix: 'a'.repeat(16) } }),
    { message: /nftables data plane: detectLocal.interfaceNamePrefix "a{16}" is not a device name/ });
});
