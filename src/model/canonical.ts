// Canonical order and JSON of the compiled state, shared by `compile` and `dump` so they agree byte for byte.
import type { CompiledBackend, CompiledFrontend, CompiledState, NodeState } from './compiled.js';
import { compareAddresses } from '../util/ip.js';

const scopeOrder = { external: 0, internal: 1 } as const;

export function compareFrontends(a: Pick<CompiledFrontend, 'address' | 'port' | 'protocol' | 'scope'>,
  b: Pick<CompiledFrontend, 'address' | 'port' | 'protocol' | 'scope'>): number {
  return compareAddresses(a.address, b.address) || a.port - b.port ||
    (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0) ||
    scopeOrder[a.scope] - scopeOrder[b.scope];
}

export function compareBackends(a: Pick<CompiledBackend, 'address' | 'port'>, b: Pick<CompiledBackend, 'address' | 'port'>): number {
  return compareAddresses(a.address, b.address) || a.port - b.port;
}

/** Strips what the contract does not print, sorts, and fixes key order. */
export function toCompiledState(state: NodeState | CompiledState): CompiledState {
  const frontends = state.frontends.map((f): CompiledFrontend => ({
    service: f.service,
    portName: f.portName,
    type: f.type,
    address: f.address,
    port: f.port,
    protocol: f.protocol,
    scope: f.scope,
    backends: f.backends
      .map((b) => ({ address: b.address, port: b.port, terminating: b.terminating }))
      .sort(compareBackends),
    sessionAffinitySeconds: f.sessionAffinitySeconds,
    sourceRanges: [...f.sourceRanges].sort(),
  }));
  frontends.sort(compareFrontends);
  return { frontends };
}

export function toJson(state: NodeState | CompiledState): string {
  return JSON.stringify(toCompiledState(state), null, 2) + '\n';
}
