// ObjectStore: view() is the live maps; slicesOf() follows the kubernetes.io/service-name label
// through upserts, deletes and relists.
import test from 'ava';
import fc from 'fast-check';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { ObjectStore } from '../../src/source/types.js';

function slice(name: string, svc: string | undefined, ns = 'default'): V1EndpointSlice {
  return { addressType: 'IPv4', endpoints: [], metadata: { namespace: ns, name, ...(svc && { labels: { 'kubernetes.io/service-name': svc } }) } };
}

test('slicesOf follows upserts, relabels, deletes and replace()', (t) => {
  const s = new ObjectStore();
  s.upsert('EndpointSlice', slice('web-a', 'web'));
  s.upsert('EndpointSlice', slice('web-b', 'web'));
  s.upsert('EndpointSlice', slice('orphan', undefined));
  s.upsert('EndpointSlice', slice('web-c', 'web', 'other'));
  t.deepEqual([...s.slicesOf('default/web')], ['default/web-a', 'default/web-b']);
  t.deepEqual([...s.slicesOf('other/web')], ['other/web-c']);
  s.upsert('EndpointSlice', slice('web-b', 'api'));
  t.deepEqual([...s.slicesOf('default/web')], ['default/web-a']);
  t.deepEqual([...s.slicesOf('default/api')], ['default/web-b']);
  s.delete('EndpointSlice', 'default/web-a');
  t.deepEqual([...s.slicesOf('default/web')], []);
  s.replace('EndpointSlice', [slice('web-a', 'web'), slice('web-b', 'api')]);
  t.deepEqual([...s.slicesOf('default/web')], ['default/web-a']);
  t.deepEqual([...s.slicesOf('other/web')], []);
  t.deepEqual([...s.slicesOf('default/api')], ['default/web-b']);
});

test('view() is the store itself, snapshot() a copy', (t) => {
  const s = new ObjectStore();
  const v = s.view(), snap = s.snapshot();
  s.upsert('EndpointSlice', slice('web-a', 'web'));
  t.is(v.endpointSlices.size, 1);
  t.is(snap.endpointSlices.size, 0);
});

test('slicesOf: a Service going from one slice to three and back, in insertion order', (t) => {
  const s = new ObjectStore();
  s.upsert('EndpointSlice', slice('web-a', 'web'));
  t.deepEqual([...s.slicesOf('default/web')], ['default/web-a']);
  s.upsert('EndpointSlice', slice('web-b', 'web'));
  s.upsert('EndpointSlice', slice('web-c', 'web'));
  t.deepEqual([...s.slicesOf('default/web')], ['default/web-a', 'default/web-b', 'default/web-c']);
  s.delete('EndpointSlice', 'default/web-a');
  s.delete('EndpointSlice', 'default/web-c');
  t.deepEqual([...s.slicesOf('default/web')], ['default/web-b']);
  s.upsert('EndpointSlice', slice('web-a', 'web'));
  t.deepEqual([...s.slicesOf('default/web')], ['default/web-b', 'default/web-a']);
  s.delete('EndpointSlice', 'default/web-a');
  s.delete('EndpointSlice', 'default/web-b');
  t.deepEqual([...s.slicesOf('default/web')], []);
  // re-labelled away and back
  s.upsert('EndpointSlice', slice('web-a', 'web'));
  s.upsert('EndpointSlice', slice('web-a', 'api'));
  t.deepEqual([...s.slicesOf('default/web')], []);
  t.deepEqual([...s.slicesOf('default/api')], ['default/web-a']);
});

test('replace() into an empty kind (the first list) stores, indexes and announces what replace() into a filled one does', (t) => {
  fc.assert(fc.property(fc.array(fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd'), svc: fc.option(fc.constantFrom('web', 'api'), { nil: undefined }), ns: fc.constantFrom('default', 'x') }), { maxLength: 12 }),
    (list) => {
      const objs = list.map((o) => slice(o.name, o.svc, o.ns));
      const fresh = new ObjectStore(), filled = new ObjectStore();
      // the general path: a kind that held something the list does not
      filled.upsert('EndpointSlice', slice('zz', 'web', 'gone'));
      filled.delete('EndpointSlice', 'gone/zz');
      filled.upsert('EndpointSlice', slice('zz', 'web', 'gone'));
      const heard: string[] = [], heard2: string[] = [];
      fresh.onChange((_, k) => heard.push(k));
      filled.onChange((_, k) => heard2.push(k));
      fresh.replace('EndpointSlice', objs);
      filled.replace('EndpointSlice', objs);
      t.deepEqual([...fresh.view().endpointSlices], [...filled.view().endpointSlices]);
      t.deepEqual(heard.sort(), heard2.filter((k) => k !== 'gone/zz').sort(), 'each key once');
      for (const g of ['default/web', 'default/api', 'x/web', 'x/api']) t.deepEqual([...fresh.slicesOf(g)].sort(), [...filled.slicesOf(g)].sort(), g);
    }), { numRuns: 300, seed: 12 });
});
