// Builders for compile tests: terse Services, slices and Nodes as raw API objects.
import { compile, type ChangedKeys, type CompileOptions, type Compiler } from '../../src/compile/compile.js';
import type { Kind, ObjectStore, Snapshot } from '../../src/source/types.js';

type Raw = Record<string, unknown>;

export function svc(name: string, spec: Raw, extra: Raw = {}): Raw {
  const [ns, n] = name.includes('/') ? name.split('/') : ['default', name];
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: n, namespace: ns }, spec, ...extra };
}

export interface Ep {
  ip: string;
  node?: string;
  zone?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zones?: string[];
  nodes?: string[];
}

export function slice(name: string, service: string, ports: Raw[], eps: Ep[], addressType = 'IPv4'): Raw {
  const [ns, n] = name.includes('/') ? name.split('/') : ['default', name];
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: n, namespace: ns, labels: { 'kubernetes.io/service-name': service } },
    addressType, ports,
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.node ? { nodeName: e.node } : {}),
      ...(e.zone ? { zone: e.zone } : {}),
      ...(e.zones || e.nodes ? { hints: { ...(e.zones ? { forZones: e.zones.map((z) => ({ name: z })) } : {}), ...(e.nodes ? { forNodes: e.nodes.map((x) => ({ name: x })) } : {}) } } : {}),
    })),
  };
}

export function node(name: string, ips: string[], zone?: string): Raw {
  return {
    apiVersion: 'v1', kind: 'Node',
    metadata: { name, labels: zone ? { 'topology.kubernetes.io/zone': zone } : {} },
    status: { addresses: ips.map((a) => ({ type: 'InternalIP', address: a })) },
  };
}

function keyOf(o: unknown, i: number): string {
  const m = (o as { metadata?: { namespace?: unknown; name?: unknown } } | null)?.metadata;
  const ns = typeof m?.namespace === 'string' ? m.namespace : '';
  const n = typeof m?.name === 'string' ? m.name : `#${i}`;
  return ns ? `${ns}/${n}` : n;
}

/** A snapshot from raw objects; keys as the store would make them (index-suffixed when unnamed). */
export function snap(services: unknown[] = [], slices: unknown[] = [], nodes: unknown[] = []): Snapshot {
  const m = (list: unknown[]) => new Map(list.map((o, i) => [keyOf(o, i), o])) as Map<string, never>;
  return { services: m(services), endpointSlices: m(slices), nodes: m(nodes) };
}

/** Records the store's changes between compiles, as the agent does. */
export function tracker(store: ObjectStore): () => ChangedKeys {
  let changed: Record<Kind, Set<string>> = { Service: new Set(), EndpointSlice: new Set(), Node: new Set() };
  store.onChange((kind, key) => changed[kind].add(key));
  return () => {
    const c = changed;
    changed = { Service: new Set(), EndpointSlice: new Set(), Node: new Set() };
    return c;
  };
}

/**
 * A property test's step: the compiler's (incremental) compile of the store's snapshot with the
 * changes since the last, and a fresh compile of the same snapshot; throws naming step k when their
 * node states differ.
 */
export function compileStep(c: Compiler, store: ObjectStore, take: () => ChangedKeys, opts: CompileOptions, k: number) {
  const snap = store.snapshot();
  const r = c.compile(snap, take());
  const fresh = compile(snap, opts);
  if (JSON.stringify(r.state) !== JSON.stringify(fresh.state)) throw new Error(`step ${k}: state differs`);
  return { r, fresh };
}
