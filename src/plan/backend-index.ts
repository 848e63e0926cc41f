// A plan's backends by address (an array only when several ports share one): how the next build finds
// a backend's previous id without a key string per backend. The full build makes one from prev (or
// takes its chain's); the incremental build keeps its chain's up to date.
import type { Protocol } from '../model/compiled.js';
import type { PlanBackend } from './types.js';

export type BackendIndex = Map<string, PlanBackend | PlanBackend[]>;

export function backendIndex(backends: Iterable<PlanBackend>): BackendIndex {
  const index: BackendIndex = new Map();
  for (const b of backends) indexAdd(index, b);
  return index;
}

export function indexAdd(index: BackendIndex, b: PlanBackend): void {
  const same = index.get(b.address);
  if (same === undefined) index.set(b.address, b);
  else if (Array.isArray(same)) same.push(b);
  else index.set(b.address, [same, b]);
}

/** removes b's (address, port, protocol) */
export function indexRemove(index: BackendIndex, b: PlanBackend): void {
  const same = index.get(b.address);
  if (same === undefined) return;
  if (!Array.isArray(same)) {
    if (same.port === b.port && same.protocol === b.protocol) index.delete(b.address);
    return;
  }
  const j = same.findIndex((x) => x.port === b.port && x.protocol === b.protocol);
  if (j >= 0) same.splice(j, 1);
  const [only] = same;
  if (only && same.length === 1) index.set(b.address, only);
}

export function findIn(index: BackendIndex, address: string, port: number, protocol: Protocol): PlanBackend | undefined {
  const same = index.get(address);
  if (same === undefined) return undefined;
  if (!Array.isArray(same)) return same.port === port && same.protocol === protocol ? same : undefined;
  return same.find((b) => b.port === port && b.protocol === protocol);
}
