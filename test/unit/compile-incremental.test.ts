// The reusing Compiler gives exactly what a fresh compile of the same snapshot gives, through any
// sequence of changes (objects replaced, added, removed; the node's zone and addresses changing),
// with or without the change hint the agent passes, and keeps the frontend objects of Services no
// change touched (plan.ts skips a frontend whose object it has already planned).
import test from 'ava';
import fc from 'fast-check';
import { compile, Compiler, type ChangedKeys } from '../../src/compile/compile.js';
import { toJson } from '../../src/model/canonical.js';
import type { NodeFrontend } from '../../src/model/compiled.js';
import { formatObjectError } from '../../src/model/types.js';
import { ObjectStore, type Snapshot } from '../../src/source/types.js';
import { node, slice, svc, tracker } from './compile-helpers.js';

const op = fc.oneof(
  fc.record({ kind: fc.constant('svc' as const), i: fc.nat(5), type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
    eTP: fc.constantFrom('Cluster', 'Local'), td: fc.constantFrom(undefined, 'PreferClose'), port: fc.constantFrom(80, 81, 0),
    ext: fc.constantFrom(undefined, '192.168.9.9'),
    // explicit clusterIPs and nodePorts that collide between Services, so one change moves another's allocation
    ip: fc.constantFrom(undefined, undefined, '10.96.0.10', '10.96.0.11'), nodePort: fc.constantFrom(undefined, undefined, 30080, 30081),
    dual: fc.boolean() }),
  fc.record({ kind: fc.constant('slice' as const), i: fc.nat(5), j: fc.nat(1), owner: fc.constantFrom(0, 0, 0, 1), eps: fc.array(fc.record({
    host: fc.nat(20), ready: fc.boolean(), terminating: fc.boolean(), node: fc.constantFrom('n1', 'n2'), zone: fc.constantFrom('z1', 'z2') }), { maxLength: 4 }) }),
  fc.record({ kind: fc.constant('badslice' as const), i: fc.nat(5), j: fc.nat(1) }),
  fc.record({ kind: fc.constant('del' as const), i: fc.nat(5), j: fc.nat(1), what: fc.constantFrom('Service', 'EndpointSlice') }),
  fc.record({ kind: fc.constant('node' as const), zone: fc.constantFrom('z1', 'z2', ''), ip: fc.constantFrom('192.168.1.1', '192.168.1.2') }),
  fc.record({ kind: fc.constant('othernode' as const), ip: fc.constantFrom('192.168.1.7', '192.168.1.8') }),
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

/** Applies one change; returns the Services whose frontends it may change (a slice's old and new Service). */
function apply(store: ObjectStore, o: Op): string[] {
  const ownerOf = (key: string): string[] => {
    const sl = store.get('EndpointSlice', key);
    const name = sl?.metadata?.labels?.['kubernetes.io/service-name'];
    return name ? [`d/${name}`] : [];
  };
  const touched = o.kind === 'svc' ? [`d/s${o.i}`]
    : o.kind === 'slice' || o.kind === 'badslice' || (o.kind === 'del' && o.what === 'EndpointSlice') ? [`d/s${o.i}`, ...ownerOf(`d/s${o.i}-${o.j}`)]
      : [];
  if (o.kind === 'svc') {
    store.upsert('Service', svc(`d/s${o.i}`, {
      type: o.type, externalTrafficPolicy: o.eTP, ...(o.td ? { trafficDistribution: o.td } : {}), ...(o.ext ? { externalIPs: [o.ext] } : {}),
      ...(o.ip ? { clusterIP: o.ip } : {}), ...(o.dual ? { ipFamilyPolicy: 'PreferDualStack' } : {}),
      ports: [{ port: o.port, targetPort: 8080, ...(o.nodePort && o.type !== 'ClusterIP' ? { nodePort: o.nodePort } : {}) }],
    }) as never);
  } else if (o.kind === 'slice') {
    // owner 1: the slice moves to the next Service (relabelled)
    store.upsert('EndpointSlice', slice(`d/s${o.i}-${o.j}`, `s${(o.i + o.owner) % 6}`, [{ port: 8080 }], o.eps.map((e) => ({
      ip: `10.244.0.${e.host}`, ready: e.ready, serving: e.ready || e.terminating, terminating: e.terminating, node: e.node, zone: e.zone,
    }))) as never);
  } else if (o.kind === 'badslice') {
    store.upsert('EndpointSlice', slice(`d/s${o.i}-${o.j}`, `s${o.i}`, [{ port: 99999 }], [{ ip: '10.244.1.1' }]) as never);
  } else if (o.kind === 'del') {
    store.delete(o.what, o.what === 'Service' ? `d/s${o.i}` : `d/s${o.i}-${o.j}`);
  } else if (o.kind === 'node') {
    store.upsert('Node', node('n1', [o.ip], o.zone || undefined) as never);
  } else {
    store.upsert('Node', node('n2', [o.ip]) as never);
  }
  if (o.kind === 'slice') touched.push(`d/s${(o.i + o.owner) % 6}`);
  return touched;
}

function sameResult(inc: ReturnType<typeof compile>, fresh: ReturnType<typeof compile>): void {
  if (toJson(inc.state) !== toJson(fresh.state)) throw new Error('state differs');
  if (JSON.stringify(inc.state) !== JSON.stringify(fresh.state)) throw new Error('node state (local, snatRemote) differs');
  if (inc.errors.map(formatObjectError).join('\n') !== fresh.errors.map(formatObjectError).join('\n')) throw new Error('errors differ');
  if (JSON.stringify(inc.services) !== JSON.stringify(fresh.services)) throw new Error('compiled services differ');
}

test('incremental compile equals a fresh compile after every change, with and without the change hint', (t) => {
  fc.assert(fc.property(fc.boolean(), fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 20 }), (standalone, steps) => {
    const store = new ObjectStore();
    const take = tracker(store);
    const opts = { nodeName: 'n1', standalone };
    const plain = new Compiler(opts), hinted = new Compiler(opts);
    // the merges of sorted lists that many changes take (a first list's pages), on every change
    const merging = new Compiler(opts, { mergeAt: 0 });
    let prev: NodeFrontend[] = [];
    for (const step of steps) {
      const touched = new Set(step.flatMap((o) => apply(store, o)));
      const snap = store.snapshot();
      const inc = plain.compile(snap), fresh = compile(snap, opts);
      const hint = take();
      const viaHint = hinted.compile(snap, hint), viaMerge = merging.compile(snap, hint);
      sameResult(inc, fresh);
      sameResult(viaHint, fresh);
      sameResult(viaMerge, fresh);
      // a step of slice changes only: every other Service keeps its frontend objects
      if (step.every((o) => o.kind === 'slice' || o.kind === 'badslice' || (o.kind === 'del' && o.what === 'EndpointSlice'))) {
        const before = new Map(prev.map((f) => [`${f.address}|${f.port}|${f.protocol}|${f.scope}`, f]));
        for (const f of inc.state.frontends) {
          const b = before.get(`${f.address}|${f.port}|${f.protocol}|${f.scope}`);
          if (!touched.has(f.service) && b && b.service === f.service && b !== f) throw new Error(`${f.service}: frontend object not reused`);
        }
      }
      prev = inc.state.frontends;
    }
  }), { numRuns: 300 });
  t.pass();
});

test('Services that collided and change together are reallocated whole (the rejection goes away)', (t) => {
  const store = new ObjectStore();
  const opts = { nodeName: 'n1' };
  const c = new Compiler(opts);
  store.upsert('Service', svc('d/a', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }) as never);
  store.upsert('Service', svc('d/b', { clusterIP: '10.96.0.10', ports: [{ port: 80 }] }) as never);
  t.true(c.compile(store.snapshot()).errors.some((e) => e.key === 'd/b' && e.severity === 'error'));
  // each alone now claims nothing, but before, one of them was rejected for the other
  store.upsert('Service', svc('d/a', { clusterIP: '10.96.0.11', ports: [{ port: 80 }] }) as never);
  store.upsert('Service', svc('d/b', { clusterIP: '10.96.0.12', ports: [{ port: 80 }] }) as never);
  const snap = store.snapshot();
  const inc = c.compile(snap);
  t.deepEqual(inc.errors, []);
  t.is(JSON.stringify(inc), JSON.stringify(compile(snap, opts)));
});

test('a hint is ignored on the first compile, so a Compiler can start from any snapshot', (t) => {
  const store = new ObjectStore();
  store.upsert('Service', svc('d/a', { clusterIP: '10.96.0.1', ports: [{ port: 80 }] }) as never);
  const empty: ChangedKeys = { Service: new Set(), EndpointSlice: new Set(), Node: new Set() };
  const snap = store.snapshot();
  t.is(new Compiler({ nodeName: 'n1' }).compile(snap, empty).state.frontends.length, 1);
});

function cluster(n: number, variant = new Map<number, number>()): Snapshot {
  const store = new ObjectStore();
  for (let i = 0; i < n; i++) {
    store.upsert('Service', svc(`d/s${String(i).padStart(3, '0')}`, { type: i % 7 ? 'ClusterIP' : 'NodePort', ports: [{ port: 80, targetPort: 8080 }] }) as never);
    const v = variant.get(i) ?? 0;
    store.upsert('EndpointSlice', slice(`d/s${String(i).padStart(3, '0')}-x`, `s${String(i).padStart(3, '0')}`, [{ port: 8080 }],
      [{ ip: `10.244.${i >> 8}.${i & 255}`, node: 'n1' }, { ip: `10.245.${v}.${i & 255}`, node: 'n2' }]) as never);
  }
  return store.snapshot();
}

test('a large first compile (bulk path) equals one grown a Service at a time, and changes keep object reuse', (t) => {
  const opts = { nodeName: 'n1', standalone: true };
  const full = cluster(150);
  const grown = new Compiler(opts);
  const services = new Map<string, never>(), endpointSlices = new Map<string, never>();
  for (const [k, v] of full.services) {
    services.set(k, v as never);
    const sk = `${k}-x`;
    endpointSlices.set(sk, full.endpointSlices.get(sk) as never);
    grown.compile({ services: new Map(services), endpointSlices: new Map(endpointSlices), nodes: new Map() });
  }
  const a = grown.compile(full), b = compile(full, opts);
  t.is(JSON.stringify(a), JSON.stringify(b));
  // one endpoint change: one Service's frontends are new objects, all others are the same objects
  const changed = cluster(150, new Map([[42, 1]]));
  const next = { ...full, endpointSlices: new Map(full.endpointSlices).set('d/s042-x', changed.endpointSlices.get('d/s042-x')!) };
  const c = grown.compile(next);
  t.is(JSON.stringify(c), JSON.stringify(compile(next, opts)));
  const byKey = new Map(a.state.frontends.map((f) => [`${f.address}:${f.port}/${f.scope}`, f]));
  let reused = 0;
  for (const f of c.state.frontends) {
    const old = byKey.get(`${f.address}:${f.port}/${f.scope}`);
    if (f.service === 'd/s042') t.not(f, old);
    else if (f === old) reused++;
  }
  t.is(reused, c.state.frontends.filter((f) => f.service !== 'd/s042').length);
  t.is(c.services[42], a.services[42], 'the CompiledService of a Service whose allocation did not change is kept');
});

test('an unchanged Service reuses its frontends; a changed slice recompiles only its Service', (t) => {
  const store = new ObjectStore();
  for (let i = 0; i < 3; i++) {
    store.upsert('Service', svc(`d/s${i}`, { clusterIP: `10.96.0.${i + 1}`, ports: [{ port: 80 }] }) as never);
    store.upsert('EndpointSlice', slice(`d/s${i}-1`, `s${i}`, [{ port: 80 }], [{ ip: `10.244.0.${i + 1}` }]) as never);
  }
  const c = new Compiler({ nodeName: 'n1' });
  const a = c.compile(store.snapshot()).state.frontends;
  store.upsert('EndpointSlice', slice('d/s1-1', 's1', [{ port: 80 }], [{ ip: '10.244.0.99' }]) as never);
  const b = c.compile(store.snapshot()).state.frontends;
  t.is(b[0], a[0]);
  t.is(b[2], a[2]);
  t.not(b[1], a[1]);
  t.deepEqual(b[1]!.backends.map((x) => x.address), ['10.244.0.99']);
});

// kube-proxy's ServiceChangeTracker.Update (pkg/proxy/servicechangetracker.go) drops a change whose
// previous and current ServicePortMaps are equal: a manifests file re-read for its EndpointSlice
// hands a new but equal Service object, which must cost one Service, not a walk of every Service.
test('a Service replaced by an equal object is no change: the same frontends and Service list', (t) => {
  const store = new ObjectStore();
  const svcOf = (i: number, port = 80) => svc(`d/s${i}`, { clusterIP: `10.96.0.${i + 1}`, ports: [{ port }], type: 'LoadBalancer', externalTrafficPolicy: 'Local' });
  for (let i = 0; i < 3; i++) {
    store.upsert('Service', svcOf(i) as never);
    store.upsert('EndpointSlice', slice(`d/s${i}-1`, `s${i}`, [{ port: 80 }], [{ ip: `10.244.0.${i + 1}` }]) as never);
  }
  const hint = tracker(store);
  const c = new Compiler({ nodeName: 'n1', standalone: true });
  const a = c.compile(store.snapshot());
  hint();
  store.upsert('Service', svcOf(1) as never);
  const b = c.compile(store.snapshot(), hint());
  t.is(b.services, a.services, 'the Service list is handed on unchanged');
  t.deepEqual(b.state.frontends, a.state.frontends);
  b.state.frontends.forEach((f, i) => t.true(f === a.state.frontends[i], `frontend ${i}: the same object`));
  t.deepEqual(toJson(b.state), toJson(compile(store.snapshot(), { nodeName: 'n1', standalone: true }).state));
  // a real change still counts
  store.upsert('Service', svcOf(1, 81) as never);
  const d = c.compile(store.snapshot(), hint());
  t.not(d.services, a.services);
  t.true(d.state.frontends.some((f) => f.port === 81));
  t.deepEqual(toJson(d.state), toJson(compile(store.snapshot(), { nodeName: 'n1', standalone: true }).state));
});

test('a state read long after later compiles holds what it held when returned (the list edits are undone)', (t) => {
  // states build their frontends on first read from the Compiler's edited list: read each one late,
  // some never until the end, past the log's bound (64 edits or states) so that copying out is taken too
  fc.assert(fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 90 }), fc.nat(7), (steps, every) => {
    const store = new ObjectStore();
    const take = tracker(store);
    const opts = { nodeName: 'n1' };
    const c = new Compiler(opts);
    const kept: Array<{ state: ReturnType<typeof compile>['state']; want: string }> = [];
    steps.forEach((step, k) => {
      for (const o of step) apply(store, o);
      const snap = store.snapshot();
      const r = c.compile(snap, take());
      kept.push({ state: r.state, want: JSON.stringify(compile(snap, opts).state) });
      // now and then an older state is read in the middle of the run
      if (every && k % (every + 1) === 0) {
        const old = kept[k >> 1]!;
        if (JSON.stringify(old.state) !== old.want) throw new Error(`state ${k >> 1} read after ${k} differs`);
      }
    });
    kept.forEach(({ state, want }, k) => {
      if (JSON.stringify(state) !== want) throw new Error(`state ${k} read at the end differs`);
    });
  }), { numRuns: 150 });
  t.pass();
});
