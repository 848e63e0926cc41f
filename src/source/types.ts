// What the API says, before any interpretation: the raw objects of the kinds we watch, kept by
// namespace/name. Both sources (Kubernetes informers, a manifests folder) fill an ObjectStore;
// src/model turns a snapshot of it into the normalized model.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { ShardedMap, stringHash } from '../util/sharded-map.js';

export type Kind = 'Service' | 'EndpointSlice' | 'Node';

export interface KindMap {
  Service: V1Service;
  EndpointSlice: V1EndpointSlice;
  Node: V1Node;
}

export interface Snapshot {
  services: ReadonlyMap<string, V1Service>;
  endpointSlices: ReadonlyMap<string, V1EndpointSlice>;
  nodes: ReadonlyMap<string, V1Node>;
}

/** namespace/name, or name for cluster-scoped objects */
export function objectKey(obj: { metadata?: { namespace?: string; name?: string } }): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}

const NO_KEYS: ReadonlySet<string> = new Set();

/** namespace/service-name of a slice (its kubernetes.io/service-name label), or undefined */
export function groupOf(slice: V1EndpointSlice | undefined): string | undefined {
  const name = slice?.metadata?.labels?.['kubernetes.io/service-name'];
  return typeof name === 'string' && name ? `${slice?.metadata?.namespace ?? 'default'}/${name}` : undefined;
}

export type StoreListener = (kind: Kind, key: string) => void;

/** Holds the latest version of each object; tells listeners what changed (level-triggered: the reader re-reads). */
export class ObjectStore {
  /**
   * Services and slices in shards (util/sharded-map.ts): a Service created or deleted inserts a fresh
   * key, and V8 copies a whole Map's table every ~(capacity - n) such inserts, on the one change that
   * makes it (at 100,000 Services, tens of ms). Their readers sort what they walk in order (compile).
   */
  readonly #maps: { [K in Kind]: Map<string, KindMap[K]> } = {
    Service: new ShardedMap(stringHash), EndpointSlice: new ShardedMap(stringHash), Node: new Map(),
  };
  readonly #listeners = new Set<StoreListener>();
  /**
   * namespace/service-name (the kubernetes.io/service-name label) -> keys of its EndpointSlices: the
   * key itself while there is one (most Services; a Set costs ~150 bytes), a Set from the second on
   */
  readonly #slicesBySvc: Map<string, string | Set<string>> = new ShardedMap(stringHash);

  upsert<K extends Kind>(kind: K, obj: KindMap[K]): void {
    const key = objectKey(obj);
    const map = this.#maps[kind];
    if (kind === 'EndpointSlice') this.#index(key, map.get(key) as V1EndpointSlice | undefined, obj as V1EndpointSlice);
    map.set(key, obj);
    this.#emit(kind, key);
  }

  delete(kind: Kind, key: string): void {
    const map = this.#maps[kind];
    const old = map.get(key);
    if (map.delete(key)) {
      if (kind === 'EndpointSlice') this.#index(key, old as V1EndpointSlice, undefined);
      this.#emit(kind, key);
    }
  }

  /** Keys of the EndpointSlices labelled for a Service (namespace/name), as the store holds them now. */
  slicesOf(serviceKey: string): ReadonlySet<string> {
    const v = this.#slicesBySvc.get(serviceKey);
    return v === undefined ? NO_KEYS : typeof v === 'string' ? new Set([v]) : v;
  }

  /**
   * Moves a slice key from the group of the object it replaces (prev) to the group of next. The
   * group is read from the objects themselves (stored objects are never changed in place), not
   * kept in a second map of every slice key (~3.6 MiB at 100,000 slices).
   */
  #index(key: string, prev: V1EndpointSlice | undefined, next: V1EndpointSlice | undefined): void {
    const old = groupOf(prev), group = groupOf(next);
    if (old === group) return;
    if (old !== undefined) {
      const v = this.#slicesBySvc.get(old);
      if (v === key) this.#slicesBySvc.delete(old);
      else if (typeof v === 'object') {
        v.delete(key);
        if (v.size === 1) this.#slicesBySvc.set(old, v.values().next().value!);
      }
    }
    if (group !== undefined) {
      const v = this.#slicesBySvc.get(group);
      if (v === undefined) this.#slicesBySvc.set(group, key);
      else if (typeof v === 'string') {
        if (v !== key) this.#slicesBySvc.set(group, new Set([v, key]));
      } else v.add(key);
    }
  }

  /** Replaces every object of a kind (a relist): objects not in objs are removed. */
  replace<K extends Kind>(kind: K, objs: Iterable<KindMap[K]>): void {
    const map = this.#maps[kind];
    if (map.size === 0) {
      // the first list of a kind (every start): each object is new, so no second map of the list and
      // no set of changed keys (a third of the kube source's store time at 10,000 Services)
      const added: string[] = [];
      for (const o of objs) {
        const key = objectKey(o);
        if (!map.has(key)) added.push(key);
        map.set(key, o);
      }
      if (kind === 'EndpointSlice') for (const key of added) this.#index(key, undefined, map.get(key) as V1EndpointSlice);
      for (const key of added) this.#emit(kind, key);
      return;
    }
    const next = new Map<string, KindMap[K]>();
    for (const o of objs) next.set(objectKey(o), o);
    const changed = new Set<string>();
    for (const key of map.keys()) if (!next.has(key)) changed.add(key);
    for (const [key, o] of next) if (map.get(key) !== o) changed.add(key);
    if (kind === 'EndpointSlice') {
      for (const key of changed) this.#index(key, map.get(key) as V1EndpointSlice | undefined, next.get(key) as V1EndpointSlice | undefined);
    }
    map.clear();
    for (const [key, o] of next) map.set(key, o);
    for (const key of changed) this.#emit(kind, key);
  }

  get<K extends Kind>(kind: K, key: string): KindMap[K] | undefined {
    return this.#maps[kind].get(key);
  }

  /** how many objects of a kind are stored */
  size(kind: Kind): number {
    return this.#maps[kind].size;
  }

  /**
   * The store's own maps, read-only, in O(1): what a snapshot would hold now, and later changes too.
   * For a reader that is done before it yields (the agent's compile); snapshot() for one that is not.
   */
  view(): Snapshot {
    return { services: this.#maps.Service, endpointSlices: this.#maps.EndpointSlice, nodes: this.#maps.Node };
  }

  snapshot(): Snapshot {
    return {
      services: new Map(this.#maps.Service),
      endpointSlices: new Map(this.#maps.EndpointSlice),
      nodes: new Map(this.#maps.Node),
    };
  }

  onChange(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(kind: Kind, key: string): void {
    for (const l of this.#listeners) l(kind, key);
  }
}

/** A source fills a store and keeps it current until stopped. Errors are reported, never thrown at the agent. */
export interface Source {
  readonly store: ObjectStore;
  /** resolves once the first full list of every kind is in the store */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** the agent's first sync is done: work the source put off until then may run now */
  afterFirstSync?(): void;
}
