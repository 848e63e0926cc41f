// Canonical order and JSON of the compiled state, shared by `compile` and `dump` so they agree byte for byte.
import type { CompiledBackend, CompiledFrontend, CompiledState, NodeState } from './compiled.js';
import { compareAddresses, ipTo16, isV4Mapped } from '../util/ip.js';

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
  // sort keys instead of compareFrontends / compareBackends: the same order (unit-tested), without
  // parsing both addresses on every comparison of a 10,000-Service state
  const keys = new Map<string, string>();
  const ak = (a: string): string => {
    let k = keys.get(a);
    if (k === undefined) keys.set(a, k = addressKey(a));
    return k;
  };
  const frontends = sortByKey(state.frontends.map((f): CompiledFrontend => ({
    service: f.service,
    portName: f.portName,
    type: f.type,
    address: f.address,
    port: f.port,
    protocol: f.protocol,
    scope: f.scope,
    backends: sortByKey(f.backends.map((b) => ({ address: b.address, port: b.port, terminating: b.terminating })),
      (b) => backendKey(ak(b.address), b.port)),
    sessionAffinitySeconds: f.sessionAffinitySeconds,
    sourceRanges: [...f.sourceRanges].sort(),
  })), (f) => frontendKey(ak(f.address), f.port, f.protocol, f.scope));
  return { frontends };
}

export function toJson(state: NodeState | CompiledState): string {
  return JSON.stringify(toCompiledState(state), null, 2) + '\n';
}

// Fast canonical ordering for large states. compareAddresses parses both addresses on every
// comparison, which dominates compile time at 10,000 Services; these keys are computed once per
// address and order exactly as compareFrontends / compareBackends do (checked by a unit test).

const HEX2 = Array.from({ length: 256 }, (_, i) => (i < 16 ? '0' : '') + i.toString(16));

/** The common case, dotted-quad IPv4, parsed by hand: the key is built at every sync for every address. */
function v4Key(a: string): string | undefined {
  let s = '4', v = 0, digits = 0, parts = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) {
      if (!digits || ++parts > 3) return undefined;
      s += HEX2[v];
      v = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      v = v * 10 + c - 48;
      digits++;
      if (v > 255) return undefined;
    } else return undefined;
  }
  if (!digits || parts !== 3) return undefined;
  return s + HEX2[v];
}

/** A string whose plain (code unit) order is compareAddresses' order: family, then the bytes in hex. */
export function addressKey(address: string): string {
  const fast = v4Key(address);
  if (fast !== undefined) return fast;
  const b = ipTo16(address);
  let s = isV4Mapped(b) ? '4' : '6';
  for (const x of b.subarray(isV4Mapped(b) ? 12 : 0)) s += x.toString(16).padStart(2, '0');
  return s;
}

/** compareBackends' order from a precomputed addressKey */
export function backendKey(addrKey: string, port: number): string {
  return addrKey + HEX2[(port >> 8) & 255] + HEX2[port & 255];
}

/** compareFrontends' order from a precomputed addressKey; the protocols differ in their first letter */
export function frontendKey(addrKey: string, port: number, protocol: string, scope: 'internal' | 'external'): string {
  // joined: a plan keeps this key per frontend, and a concatenation keeps its intermediate strings
  return [addrKey, HEX2[(port >> 8) & 255], HEX2[port & 255], protocol, scopeOrder[scope]].join('');
}

/** Sorts items by precomputed keys (code unit order), stably. */
export function sortByKey<T>(items: T[], key: (t: T) => string): T[] {
  if (items.length < 2) return items;
  const keyed = items.map((item, i) => ({ item, k: key(item), i }));
  keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.i - b.i));
  return keyed.map((x) => x.item);
}
