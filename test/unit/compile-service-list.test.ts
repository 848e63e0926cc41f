// The Compiler's Service list (CompileResult.services) after Services created, deleted and changed:
// made by edits over the previous list and built only when read, it equals a fresh compile's list
// whenever it is read, however late (after later compiles, past the chain's bound); and the edits it
// carries (removed / added since the list it was made from), followed from list to list as the
// agent's healthCheckNodePort set follows them, give what a walk of the whole list gives.
import test from 'ava';
import fc from 'fast-check';
import { compile, Compiler, type CompileResult } from '../../src/compile/compile.js';
import { healthCheckWanted, type HealthCheckWanted } from '../../src/agent/agent.js';
import { ObjectStore } from '../../src/source/types.js';
import { compileStep, slice, svc, tracker } from './compile-helpers.js';

const op = fc.oneof(
  // a Service created or changed: every type, headless and ExternalName among them; clusterIPs and
  // healthCheckNodePorts given (as the API server gives them) that change and, now and then, collide
  fc.record({ kind: fc.constant('svc' as const), i: fc.nat(7),
    type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'LoadBalancer', 'Headless', 'ExternalName'),
    eTP: fc.constantFrom('Cluster', 'Local'), ip: fc.nat(9), hc: fc.constantFrom(30100, 30101, 30102), port: fc.constantFrom(80, 81) }),
  fc.record({ kind: fc.constant('slice' as const), i: fc.nat(7), host: fc.nat(3), local: fc.boolean() }),
  fc.record({ kind: fc.constant('delsvc' as const), i: fc.nat(7) }),
  fc.record({ kind: fc.constant('delslice' as const), i: fc.nat(7) }),
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function apply(store: ObjectStore, o: Op): void {
  const name = `d/s${o.i}`;
  if (o.kind === 'svc') {
    const spec: Record<string, unknown> = o.type === 'ExternalName' ? { type: 'ExternalName', externalName: 'example.org' }
      : {
        type: o.type === 'Headless' ? 'ClusterIP' : o.type, clusterIP: o.type === 'Headless' ? 'None' : `10.96.0.${10 + o.ip}`,
        ports: [{ port: o.port, targetPort: 8080, ...(o.type === 'NodePort' || o.type === 'LoadBalancer' ? { nodePort: 30000 + o.i } : {}) }],
        ...(o.type === 'LoadBalancer' ? { externalTrafficPolicy: o.eTP, ...(o.eTP === 'Local' ? { healthCheckNodePort: o.hc } : {}) } : {}),
      };
    store.upsert('Service', svc(name, spec) as never);
  } else if (o.kind === 'slice') {
    store.upsert('EndpointSlice', slice(`${name}-a`, `s${o.i}`, [{ port: 8080 }],
      [{ ip: `10.244.${o.i}.${o.host}`, node: o.local ? 'n1' : 'n2' }]) as never);
  } else if (o.kind === 'delsvc') store.delete('Service', name);
  else store.delete('EndpointSlice', `${name}-a`);
}

/** the healthCheckNodePort set as a walk of a list gives it, printed */
const wantedOf = (r: CompileResult): string => JSON.stringify([...healthCheckWanted(r.serviceList, undefined).wanted].sort());
const printed = (w: HealthCheckWanted): string => JSON.stringify([...w.wanted].sort());

test('a Service list read late equals a fresh compile\'s; its edits followed give the healthCheckNodePort set a walk gives', (t) => {
  // short runs (a list built past the Service count's edits, mid-run) and the agent's
  fc.assert(fc.property(fc.boolean(), fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 150 }), fc.nat(9),
    fc.constantFrom(0, 4, undefined), fc.constantFrom(1, 3, undefined), (standalone, steps, every, serviceRun, serviceStep) => {
      const store = new ObjectStore();
      const take = tracker(store);
      const opts = { nodeName: 'n1', standalone };
      const c = new Compiler(opts, { serviceRun, serviceStep });
      const kept: Array<{ r: CompileResult; want: string }> = [];
      let followed: HealthCheckWanted | undefined;
      steps.forEach((step, k) => {
        for (const o of step) apply(store, o);
        const { r, fresh } = compileStep(c, store, take, opts, k);
        kept.push({ r, want: JSON.stringify(fresh.services) });
        // the agent's warm-up counts the claims ahead of the first Service change (Compiler.prepare)
        if (k === every) c.prepare();
        // the agent's way: from the last set by the list's edits (no read of the list when it has them)
        followed = healthCheckWanted(r.serviceList, followed);
        if (printed(followed) !== wantedOf(fresh)) throw new Error(`step ${k}: the healthCheckNodePort set followed differs`);
        // now and then an older list is read in the middle of the run (else only at the end)
        if (every && k % (every + 1) === 0) {
          const old = kept[k >> 1]!;
          if (JSON.stringify(old.r.services) !== old.want) throw new Error(`list ${k >> 1} read after ${k} differs`);
        }
      });
      kept.forEach(({ r, want }, k) => {
        if (JSON.stringify(r.services) !== want) throw new Error(`list ${k} read at the end differs`);
      });
    }), { numRuns: 200 });
  t.pass();
});

test('a Service created, deleted and created again with the same name: each list made by its edits alone', (t) => {
  const store = new ObjectStore();
  const take = tracker(store);
  const c = new Compiler({ nodeName: 'n1' });
  for (let i = 0; i < 20; i++) {
    store.upsert('Service', svc(`d/s${String(i).padStart(2, '0')}`, { clusterIP: `10.96.0.${i + 1}`, ports: [{ port: 80 }] }) as never);
    store.upsert('EndpointSlice', slice(`d/s${String(i).padStart(2, '0')}-a`, `s${String(i).padStart(2, '0')}`, [{ port: 80 }], [{ ip: `10.244.0.${i + 1}` }]) as never);
  }
  const first = c.compile(store.snapshot(), take());
  t.is(first.services.length, 20);
  const lb = svc('d/s05x', { type: 'LoadBalancer', clusterIP: '10.96.1.1', externalTrafficPolicy: 'Local', healthCheckNodePort: 30200,
    ports: [{ port: 80, nodePort: 30201 }] });
  // created before its slice
  store.upsert('Service', lb as never);
  const created = c.compile(store.snapshot(), take());
  t.is(created.serviceList.from, first.serviceList.version);
  t.deepEqual(created.serviceList.removed, []);
  t.deepEqual(created.serviceList.added.map((s) => s.service.key), ['d/s05x']);
  const wanted = healthCheckWanted(created.serviceList, healthCheckWanted(first.serviceList, undefined));
  t.deepEqual([...wanted.wanted.keys()], ['d/s05x']);
  // its slice: endpoints only, the same list
  store.upsert('EndpointSlice', slice('d/s05x-a', 's05x', [{ port: 80 }], [{ ip: '10.244.1.1', node: 'n1' }]) as never);
  const sliced = c.compile(store.snapshot(), take());
  t.is(sliced.serviceList, created.serviceList);
  store.delete('Service', 'd/s05x');
  const deleted = c.compile(store.snapshot(), take());
  t.is(deleted.serviceList.from, created.serviceList.version);
  t.deepEqual(deleted.serviceList.removed, created.serviceList.added);
  t.deepEqual(deleted.serviceList.added, []);
  t.is(healthCheckWanted(deleted.serviceList, wanted).wanted.size, 0);
  // again, the same name, now after its slice (still in the store), with another clusterIP
  store.upsert('Service', svc('d/s05x', { clusterIP: '10.96.1.2', ports: [{ port: 80 }] }) as never);
  const again = c.compile(store.snapshot(), take());
  t.is(again.serviceList.from, deleted.serviceList.version);
  t.deepEqual(again.serviceList.added.map((s) => s.clusterIPs), [['10.96.1.2']]);
  // read in the end, in any order: each as a fresh compile then gave it
  t.deepEqual(again.services.map((s) => s.service.key), [...first.services.map((s) => s.service.key), 'd/s05x'].sort());
  t.is(JSON.stringify(deleted.services), JSON.stringify(first.services));
  t.is(created.services.length, 21);
  t.is(JSON.stringify(again.services), JSON.stringify(compile(store.snapshot(), { nodeName: 'n1' }).services));
});

test('Service churn without a walk: lists made over a base built a few elements per change equal a fresh compile\'s', (t) => {
  // distinct clusterIPs and no nodePorts, from the API server: every change is an edit of the list
  // (no allocation walk), so runs grow past their bound and the next run's base is built in steps
  // (RunBuild) over the changes after, while lists keep being made from the run being built
  const change = fc.record({ i: fc.nat(23), op: fc.constantFrom('create', 'create', 'delete', 'affinity', 'label', 'slice') });
  fc.assert(fc.property(fc.array(fc.array(change, { minLength: 1, maxLength: 3 }), { minLength: 20, maxLength: 200, size: 'max' }),
    fc.constantFrom(0, 2, 8), fc.constantFrom(1, 2, 7), fc.nat(15), (steps, serviceRun, serviceStep, readEvery) => {
      const store = new ObjectStore();
      const take = tracker(store);
      const opts = { nodeName: 'n1' };
      const c = new Compiler(opts, { serviceRun, serviceStep });
      const kept: Array<{ r: CompileResult; want: string }> = [];
      steps.forEach((step, k) => {
        for (const { i, op } of step) {
          const name = `d/s${String(i).padStart(2, '0')}`;
          if (op === 'delete') store.delete('Service', name);
          else if (op === 'slice') store.upsert('EndpointSlice', slice(`${name}-a`, name.slice(2), [{ port: 8080 }], [{ ip: `10.244.0.${i + k % 7}` }]) as never);
          else {
            store.upsert('Service', svc(name, { clusterIP: `10.96.0.${i + 1}`, ports: [{ port: 80, targetPort: 8080 }],
              ...(op === 'affinity' && k % 2 ? { sessionAffinity: 'ClientIP' } : {}) }, op === 'label' ? { metadata: { namespace: 'd', name: name.slice(2), labels: { k: String(k) } } } : {}) as never);
          }
        }
        const snap = store.snapshot();
        const r = c.compile(snap, take());
        kept.push({ r, want: JSON.stringify(compile(snap, opts).services) });
        // now and then an older list is read mid-run (the newest stays unread: its run goes on)
        if (readEvery && k % readEvery === 0 && k) {
          const at = Math.max(0, k - 1 - (k % 3)), old = kept[at]!;
          if (JSON.stringify(old.r.services) !== old.want) throw new Error(`list ${at} read after ${k} differs`);
        }
      });
      kept.forEach(({ r, want }, k) => {
        if (JSON.stringify(r.services) !== want) throw new Error(`list ${k} read at the end differs`);
      });
    }), { numRuns: 150 });
  t.pass();
});
