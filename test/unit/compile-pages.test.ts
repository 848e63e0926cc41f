// The agent compiles a first list while its pages arrive (Agent.start, CompileAhead: the kube source
// stores a first list page by page), each compile told only the keys stored since the one before and
// the Services it held back (no slice yet), some pages coalesced, then the first sync's compile with
// what came after the last one. Its result must be exactly what one compile of the whole list gives.
import test from 'ava';
import fc from 'fast-check';
import { Compiler, type CompileResult } from '../../src/compile/compile.js';
import { formatObjectError } from '../../src/model/types.js';
import { ObjectStore } from '../../src/source/types.js';
import { CompileAhead } from '../../src/agent/compile-ahead.js';
import { aheadGap } from '../../src/agent/agent.js';
import { node, slice, svc } from './compile-helpers.js';

const svcObj = fc.record({
  kind: fc.constant('svc' as const), i: fc.nat(9),
  type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'),
  eTP: fc.constantFrom('Cluster', 'Local'),
  port: fc.constantFrom(80, 81, 70000), nodePort: fc.constantFrom(undefined, 30080, 30081),
  // clusterIPs of their own, some shared between Services (an allocation clash), headless, IPv6
  ip: fc.constantFrom(undefined, 'own', 'own', 'own', '10.96.0.10', 'None', 'fd00:10:96::10'),
  dual: fc.boolean(),
});
const sliceObj = fc.record({
  kind: fc.constant('slice' as const), i: fc.nat(9), j: fc.nat(1), owner: fc.nat(9), v6: fc.boolean(),
  eps: fc.array(fc.record({ host: fc.nat(20), ready: fc.boolean(), terminating: fc.boolean(), node: fc.constantFrom('n1', 'n2'),
    bad: fc.constantFrom(false, false, false, true) }), { maxLength: 4 }),
});
const obj = fc.oneof(svcObj, svcObj, sliceObj, sliceObj, sliceObj,
  fc.record({ kind: fc.constant('node' as const), ip: fc.constantFrom('192.168.1.1', '192.168.1.2') }));
type Obj = typeof obj extends fc.Arbitrary<infer T> ? T : never;

function store(s: ObjectStore, o: Obj): void {
  if (o.kind === 'svc') {
    s.upsert('Service', svc(`d/s${o.i}`, {
      type: o.type, externalTrafficPolicy: o.eTP, ...(o.ip ? { clusterIP: o.ip === 'own' ? `10.96.1.${o.i}` : o.ip } : {}),
      ...(o.dual ? { ipFamilyPolicy: 'PreferDualStack' } : {}),
      ports: [{ port: o.port, targetPort: 8080, name: 'http', ...(o.nodePort && o.type !== 'ClusterIP' ? { nodePort: o.nodePort } : {}) }],
    }) as never);
  } else if (o.kind === 'slice') {
    s.upsert('EndpointSlice', slice(`d/s${o.i}-${o.j}`, `s${o.owner}`, [{ port: 8080, name: 'http' }],
      o.eps.map((e) => ({
        ip: e.bad ? 'nope' : o.v6 ? `fd00:244::${e.host}` : `10.244.0.${e.host}`, ready: e.ready, serving: e.ready || e.terminating,
        terminating: e.terminating, node: e.node,
      })), o.v6 ? 'IPv6' : 'IPv4') as never);
  } else s.upsert('Node', node('n1', [o.ip]) as never);
}

function differs(a: CompileResult, b: CompileResult): string | undefined {
  if (JSON.stringify(a.state) !== JSON.stringify(b.state)) return 'states differ';
  const ea = a.errors.map(formatObjectError).join('\n'), eb = b.errors.map(formatObjectError).join('\n');
  if (ea !== eb) return `errors differ:\n${ea}\n--\n${eb}`;
  if (JSON.stringify(a.services) !== JSON.stringify(b.services)) return 'Service lists differ';
  if (JSON.stringify(a.noLocalEndpoints) !== JSON.stringify(b.noLocalEndpoints)) return 'no-local counts differ';
  return undefined;
}

/**
 * What Agent.start and the first sync do with a list stored page by page (CompileAhead): a compile
 * after some pages (`run`: the throttle skips others; Services with no slice stored yet held back),
 * one more over the whole store when the list ends unless the data plane was loaded first (`last`),
 * then the first sync's compile with what changed since. `lose`: the store changes of that page are
 * not noted (a step left out).
 */
function inPages(standalone: boolean, pages: Obj[][], run: boolean[], last: boolean, lose = -1, mergeAt?: number): CompileResult {
  const s = new ObjectStore();
  const c = new Compiler({ nodeName: 'n1', standalone }, { mergeAt });
  const ahead = new CompileAhead(s, c);
  let losing = false;
  s.onChange((kind, key) => { if (!losing) ahead.note(kind, key); });
  pages.forEach((page, i) => {
    losing = i === lose;
    for (const o of page) store(s, o);
    losing = false;
    if (run[i]) ahead.step(true);
  });
  if (last) ahead.step(false);
  return c.compile(s.view(), ahead.take());
}

const pagesArb = fc.array(fc.array(obj, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 7 });

test('compiling a list page by page, with the keys each page stored, gives what one compile of the whole list gives', (t) => {
  let caught = 0, runsWithSteps = 0;
  fc.assert(fc.property(fc.boolean(), pagesArb, fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }), fc.boolean(), fc.nat(99),
    fc.constantFrom(undefined, 0), (standalone, pages, run, last, at, mergeAt) => {
      const all = new ObjectStore();
      for (const p of pages) for (const o of p) store(all, o);
      const once = new Compiler({ nodeName: 'n1', standalone }).compile(all.snapshot());
      // mergeAt 0: the merges of sorted lists that a step of many pages takes, on every step
      const why = differs(inPages(standalone, pages, run, last, -1, mergeAt), once);
      if (why) throw new Error(why);
      if (run.slice(0, pages.length).some(Boolean)) runsWithSteps++;
      // the same with one page's keys left out of the hints: the test must see that
      if (differs(inPages(standalone, pages, run, last, at % pages.length), once)) caught++;
    }), { numRuns: 300 });
  t.true(runsWithSteps > 150, `${runsWithSteps} runs compiled between pages`);
  // a page left out goes unseen only where no compile ran before it (nothing to be stale) or it changed nothing
  t.true(caught > 35, `a page left out of the hints was caught in ${caught} runs`);
});

/** A Map that counts walks over it (a step must not walk every stored Service). */
class CountedMap<V> extends Map<string, V> {
  walks = 0;
  override entries(): MapIterator<[string, V]> { this.walks++; return super.entries(); }
  override keys(): MapIterator<string> { this.walks++; return super.keys(); }
  override values(): MapIterator<V> { this.walks++; return super.values(); }
  override forEach(f: (v: V, k: string, m: Map<string, V>) => void): void { this.walks++; super.forEach(f); }
  override [Symbol.iterator](): MapIterator<[string, V]> { this.walks++; return super[Symbol.iterator](); }
}

test('a step after the first costs what its pages brought: no walk of the stored Services, a hint of the keys stored since', (t) => {
  const s = new ObjectStore();
  const view = s.view();
  const services = new CountedMap(view.services);
  s.view = () => ({ ...view, services: services as never });
  // the store's own map is what it writes; the counted copy follows it
  s.onChange((kind, key) => {
    if (kind !== 'Service') return;
    const o = view.services.get(key);
    if (o) services.set(key, o); else services.delete(key);
  });
  const hints: number[] = [];
  const shown: string[][] = [];
  const compiler = { compile: (snap: { services: ReadonlyMap<string, unknown> }, hint?: { Service: ReadonlySet<string> }) => {
    hints.push(hint ? hint.Service.size : -1);
    shown.push(hint ? [...hint.Service].filter((k) => snap.services.has(k)).sort() : [...snap.services.keys()].sort());
  } };
  const ahead = new CompileAhead(s, compiler as never);
  s.onChange((kind, key) => ahead.note(kind, key));
  const page = (from: number, n: number, slices: boolean) => {
    for (let i = from; i < from + n; i++) {
      if (slices) s.upsert('EndpointSlice', slice(`d/s${i}-x`, `s${i}`, [{ port: 8080 }], [{ ip: '10.244.0.1' }]) as never);
      else s.upsert('Service', svc(`d/s${i}`, { clusterIP: `10.96.0.${i + 2}`, ports: [{ port: 80, targetPort: 8080 }] }) as never);
    }
  };
  page(0, 20, false);
  page(0, 10, true);
  ahead.step(true);
  const walks = services.walks;
  t.deepEqual(shown[0], Array.from({ length: 10 }, (_, i) => `d/s${i}`).sort(), 'Services with no slice are held back');
  page(20, 5, false);
  page(10, 3, true);
  ahead.step(true);
  t.is(services.walks, walks, 'the second step walked the stored Services');
  // the 5 new Services (held back) and the 3 of the held ones that got a slice
  t.is(hints[1], 8);
  t.deepEqual(shown[1], ['d/s10', 'd/s11', 'd/s12']);
  page(13, 12, true);
  const hint = ahead.take();
  t.is(services.walks, walks);
  // what is still held back goes to the first sync, with the keys stored since
  t.is(hint?.Service.size, 12);
});

test('the wait after a compile ahead is twice its time, at least 100 ms and at most 500: a long step leaves the list a short wait, not a longer one', (t) => {
  t.is(aheadGap(0), 100);
  t.is(aheadGap(120), 240);
  // 100,000 Services under load: steps of 1.4-3.7 s were followed by 2.8-7.4 s waits, and a third of
  // the list was left to the first sync's compile
  t.is(aheadGap(3700), 500);
  t.is(aheadGap(60_000), 500);
});
