// bench/gen.ts's objects dressed as an API server returns them: uid, creationTimestamp, managedFields,
// kubectl's last-applied annotation on Services, the endpoint controller's labels, annotation,
// ownerReference and targetRefs on EndpointSlices. What a real cluster's LIST carries beside what
// compile reads, so memory figures include what the sources must drop.
import { slimObject } from '../src/source/slim.js';
import { ObjectStore, type Kind } from '../src/source/types.js';
import { endpointSlice, node, NODE_NAME, service, type ClusterShape } from './gen.js';

type Obj = Record<string, any>;

let uid = 0;
function dressed(o: Obj, manager: string): Obj {
  const m = o.metadata as Obj;
  m.uid = `00000000-0000-4000-8000-${(++uid).toString(16).padStart(12, '0')}`;
  m.creationTimestamp = '2026-01-01T00:00:00Z';
  m.managedFields = [{
    manager, operation: 'Update', apiVersion: o.apiVersion, time: '2026-01-01T00:00:00Z', fieldsType: 'FieldsV1',
    fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:ports': {} } },
  }];
  return o;
}

export function apiService(i: number, shape: ClusterShape): Obj {
  const svc = dressed(service(i, shape) as Obj, 'kubectl-client-side-apply');
  svc.metadata.labels = { app: `svc-${i}` };
  svc.metadata.annotations = { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(service(i, shape)) };
  return svc;
}

export function apiSlice(i: number, shape: ClusterShape, variant = 0): Obj {
  const s = dressed(endpointSlice(i, shape, variant) as Obj, 'kube-controller-manager');
  s.metadata.labels = { ...s.metadata.labels, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', app: `svc-${i}` };
  s.metadata.annotations = { 'endpoints.kubernetes.io/last-change-trigger-time': new Date().toISOString() };
  s.metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'Service', name: `svc-${i}`, uid: 'x', controller: true, blockOwnerDeletion: true }];
  s.endpoints.forEach((e: Obj, j: number) => { e.targetRef = { kind: 'Pod', namespace: 'bench', name: `svc-${i}-pod-${j}`, uid: `pod-${i}-${j}` }; });
  return s;
}

export function apiNode(): Obj {
  return dressed(node() as Obj, 'kubelet');
}

/**
 * A LIST answer's pages as the stub API server serves them: for each kind, N objects dressed as an
 * API server sends them in pages of 500 (continue token and remainingItemCount on all but the last),
 * each page's bytes (the bench/first-*.ts probes decode these as the kube source does).
 */
export function listPages(shape: ClusterShape, kinds: ReadonlyArray<'Service' | 'EndpointSlice'> = ['Service', 'EndpointSlice']): Array<{ kind: 'Service' | 'EndpointSlice'; buf: Buffer }> {
  const n = shape.services, pages: Array<{ kind: 'Service' | 'EndpointSlice'; buf: Buffer }> = [];
  for (const kind of kinds) {
    for (let p = 0; p < n; p += 500) {
      const items = Array.from({ length: Math.min(500, n - p) }, (_, j) => (kind === 'Service' ? apiService(p + j, shape) : apiSlice(p + j, shape)));
      const cont = p + 500 < n ? `,"continue":"page-${p + 500}","remainingItemCount":${n - p - 500}` : '';
      const head = `{"kind":"${kind}List","apiVersion":"v1","metadata":{"resourceVersion":"2002"${cont}},"items":[`;
      pages.push({ kind, buf: Buffer.from(head + items.map((o) => JSON.stringify(o)).join(',') + ']}') });
    }
  }
  return pages;
}

/** The agent's object store for `shape`, filled as the kube source fills it: LIST pages of 500 parsed from JSON, each object slimmed. */
export function slimStore(shape: ClusterShape): ObjectStore {
  const s = new ObjectStore();
  const n = shape.services;
  const add = (kind: Kind, make: (i: number) => unknown) => {
    for (let p = 0; p < n; p += 500) {
      const page = JSON.parse(JSON.stringify(Array.from({ length: Math.min(500, n - p) }, (_, j) => make(p + j)))) as never[];
      // as the kube source slims a LIST page: a tree JSON.parse just made (parsedJson)
      for (const o of page) s.upsert(kind, slimObject(kind, o, NODE_NAME, true));
    }
  };
  s.upsert('Node', slimObject('Node', JSON.parse(JSON.stringify(apiNode())) as never, undefined, true));
  add('Service', (i) => apiService(i, shape));
  add('EndpointSlice', (i) => apiSlice(i, shape));
  return s;
}
