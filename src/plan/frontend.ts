// A compiled frontend as the plan takes it: the checks both builds make (each rule written once),
// the sort key that orders a plan's frontends, which backends its table holds (KEP-1669), the key
// of that table, and the PlanFrontend entry itself. build-full.ts and build-incremental.ts both take
// these from here, so the two builds cannot drift apart on what they accept or what they emit.
import { isIP } from 'node:net';
import type { NodeBackend, NodeFrontend, Protocol, Scope } from '../model/compiled.js';
import { addressKey, frontendKey as canonicalFrontendKey } from '../model/canonical.js';
import { KbpError } from '../util/errors.js';
import { AFFINITY_TIMEOUT_MAX, MAX_BACKENDS_PER_FRONTEND } from './limits.js';
import type { PlanFrontend, PlanTable } from './types.js';

const PROTOCOLS: ReadonlySet<string> = new Set<Protocol>(['TCP', 'UDP', 'SCTP']);
const SCOPES: ReadonlySet<string> = new Set<Scope>(['internal', 'external']);

/**
 * model/canonical.ts addressKey (the order of util/ip.ts compareAddresses: IPv4 first, then by
 * value) of valid addresses, cached per distinct string, which also caches the address's validation.
 */
export class AddressKeys {
  readonly #cache = new Map<string, string>();

  /** undefined when the text is not an IP address */
  get(address: string): string | undefined {
    let k = this.#cache.get(address);
    if (k === undefined) {
      // isIP first: addressKey takes forms such as 01.2.3.4 that the data plane must refuse
      k = isIP(address) ? addressKey(address) : '';
      this.#cache.set(address, k);
    }
    return k || undefined;
  }
}

/** The order of a plan's frontends, compile's canonical one: address (AddressKeys' key), port, protocol, scope. */
export function frontendSortKey(f: NodeFrontend, addrKey: string): string {
  return canonicalFrontendKey(addrKey, f.port, f.protocol, f.scope);
}

/** The shared empty list (a frontend without terminating backends), compared by identity. */
export const NONE: number[] = [];

/** The shared empty source ranges (most frontends): an array of its own per frontend is 32 bytes kept per frontend. Frozen: nothing edits a plan's lists in place. */
const NO_RANGES = Object.freeze([]) as unknown as string[];

export function bad(f: { service?: string; address?: string; port?: number }, reason: string): KbpError {
  return new KbpError('KBP_ERR_INVALID_OBJECT', `frontend ${f.service ?? '?'} ${f.address ?? '?'}:${f.port ?? '?'}: ${reason}`);
}

function validPort(p: unknown): p is number {
  return Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535;
}

/**
 * Why the data plane cannot hold f (its own fields; backends: backendFault), or undefined. addrKey is
 * AddressKeys' key of f.address. The full build throws bad(f, reason); the incremental one leaves
 * such a state to the full build, so every error reads the same.
 */
export function frontendFault(f: NodeFrontend, addrKey: string | undefined): string | undefined {
  if (addrKey === undefined) return `address ${JSON.stringify(f.address)} is not an IP address`;
  if (!validPort(f.port)) return `port ${f.port} is not in 1..65535`;
  if (!PROTOCOLS.has(f.protocol)) return `protocol ${JSON.stringify(f.protocol)} is not TCP, UDP or SCTP`;
  if (!SCOPES.has(f.scope)) return `scope ${JSON.stringify(f.scope)} is not internal or external`;
  if (!Number.isInteger(f.sessionAffinitySeconds) || f.sessionAffinitySeconds < 0 || f.sessionAffinitySeconds > AFFINITY_TIMEOUT_MAX) {
    return `sessionAffinitySeconds ${f.sessionAffinitySeconds} is not a u32`;
  }
  if (f.backends.length > MAX_BACKENDS_PER_FRONTEND) {
    return `${f.backends.length} backends exceed the data plane's ${MAX_BACKENDS_PER_FRONTEND} per frontend`;
  }
  return undefined;
}

/** Why a backend the plan does not hold yet cannot be added (addrKey as in frontendFault), or undefined. */
export function backendFault(b: NodeBackend, addrKey: string | undefined): string | undefined {
  if (addrKey === undefined) return `backend address ${JSON.stringify(b.address)} is not an IP address`;
  if (!validPort(b.port)) return `backend ${b.address} port ${b.port} is not in 1..65535`;
  return undefined;
}

/**
 * The members of a frontend's table, from its backends xs in canonical order: the non-terminating
 * ones, or xs itself when none or all of them are terminating (KEP-1669: only when no backend is
 * ready do terminating, still serving, ones take new flows; decided per frontend).
 */
export function tableMembers<T>(xs: T[], terminating: (j: number) => boolean): T[] {
  let any = false, all = true;
  for (let j = 0; j < xs.length; j++) {
    if (terminating(j)) any = true;
    else all = false;
  }
  return any && !all ? xs.filter((_, j) => !terminating(j)) : xs;
}

/** tableKey's UTF-16 units, reused: the key is made from them in one call */
const KEY_UNITS: number[] = [];
/** members per String.fromCharCode call: its arguments go on the stack */
const KEY_CHUNK = 4096;

/**
 * A table's identity under one seed: its member ids and M, each as two UTF-16 units (ids and M are
 * u32), in one flat string. Not the ids as decimal text joined: a full build makes one per table
 * (~100,000 at 100,000 Services), and the join made a string per id and the lists around them
 * (~80 MiB of garbage a first sync); the chain keeps the keys, 60 against ~90 bytes each.
 */
export function tableKey(memberIds: readonly number[], m: number): string {
  const n = memberIds.length;
  if (n > KEY_CHUNK) {
    const parts: string[] = [];
    for (let at = 0; at < n; at += KEY_CHUNK) parts.push(keyUnits(memberIds, at, Math.min(n, at + KEY_CHUNK), -1));
    parts.push(keyUnits(memberIds, n, n, m));
    return parts.join('');
  }
  return keyUnits(memberIds, 0, n, m);
}

/** ids[from..to) as units, then m unless it is -1 */
function keyUnits(ids: readonly number[], from: number, to: number, m: number): string {
  const u = KEY_UNITS;
  u.length = 2 * (to - from) + (m < 0 ? 0 : 2);
  let k = 0;
  for (let j = from; j < to; j++) {
    const id = ids[j]!;
    u[k++] = id >>> 16;
    u[k++] = id & 0xffff;
  }
  if (m >= 0) {
    u[k++] = m >>> 16;
    u[k++] = m & 0xffff;
  }
  return String.fromCharCode.apply(null, u);
}

/** the same elements in the same order (an array handed on unchanged is the same array) */
export function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The plan's entry for one compiled frontend; the full and the incremental build both make it here. */
/**
 * The affinity group of frontend f with id `id`: the id that `idOf` gives its NodeFrontend.affinityGroup
 * (the Service port's clusterIP frontend), or its own when that frontend is not in the plan; 0
 * without affinity.
 */
export function affinityGroupOf(f: NodeFrontend, id: number, idOf: (key: string) => number | undefined): number {
  if (!(f.sessionAffinitySeconds > 0)) return 0;
  return (f.affinityGroup !== undefined ? idOf(f.affinityGroup) : undefined) ?? id;
}

export function planFrontend(id: number, f: NodeFrontend, backendIds: number[], terminatingIds: number[], table: PlanTable | undefined, affinityGroup: number): PlanFrontend {
  return {
    id,
    service: f.service,
    portName: f.portName,
    type: f.type,
    address: f.address,
    port: f.port,
    protocol: f.protocol,
    scope: f.scope,
    backendIds,
    terminatingIds,
    tableId: table?.id ?? 0,
    maglevM: table?.m ?? 0,
    affinityTimeout: f.sessionAffinitySeconds,
    affinityGroup,
    snatRemote: f.snatRemote,
    sourceRanges: f.sourceRanges.length === 0 ? NO_RANGES : [...new Set(f.sourceRanges)].sort(),
    ...(f.noLocalEndpoints && backendIds.length === 0 && { dropNoLocal: true }),
    ...(f.masquerade && { masquerade: f.masquerade }),
  };
}

/** The policy bits of an entry beyond its backends: equal when both drop (or refuse) and masquerade alike. */
export function samePolicy(a: PlanFrontend, b: PlanFrontend): boolean {
  return !!a.dropNoLocal === !!b.dropNoLocal && a.masquerade === b.masquerade;
}

/** Whether two entries are equal, so that a build may keep prev's object (diff skips it). */
export function samePlanFrontend(a: PlanFrontend, b: PlanFrontend): boolean {
  return a.id === b.id && a.service === b.service && a.portName === b.portName && a.type === b.type &&
    a.address === b.address && a.port === b.port && a.protocol === b.protocol && a.scope === b.scope &&
    a.tableId === b.tableId && a.maglevM === b.maglevM && a.affinityTimeout === b.affinityTimeout &&
    a.affinityGroup === b.affinityGroup && a.snatRemote === b.snatRemote && samePolicy(a, b) && sameList(a.backendIds, b.backendIds) && sameList(a.sourceRanges, b.sourceRanges) &&
    sameList(a.terminatingIds, b.terminatingIds);
}
