// Standalone allocation: what kube-apiserver would have assigned (from the API server, Services
// arrive allocated and nothing is invented). A Service read from a manifests
// folder may leave out its clusterIP or nodePorts; we give it deterministic ones so every node (and
// every run) computes the same state without shared storage. Each value is derived from a hash of
// the Service's key, so it does not move when other Services come and go; only when two hash to the
// same value does the later one (by key) probe on to the next free value.
import { createHash } from 'node:crypto';
import { familyOfValid, formatCidr, ipFrom16, ipTo16, parseCidr, type Cidr, type Family } from '../util/ip.js';
import type { NodePortRange, ObjectError, ServiceModel } from '../model/types.js';
import { KbpError } from '../util/errors.js';

export const defaultServiceCidrs = ['10.96.0.0/12', 'fd00:10:96::/108'];

export interface Allocation {
  /**
   * one clusterIP per family, the primary first (an array: a Map each cost ~340 bytes a Service, kept
   * as long as the Service). Shared with the model and the CompiledService where equal: read only.
   */
  clusterIPs: readonly string[];
  /** per spec port index; 0 when the port has no NodePort (read only: shared between Services) */
  nodePorts: readonly number[];
  healthCheckNodePort: number;
}

// A standalone Compiler reruns allocate() over every Service whenever one changes; the seeds (one per
// Service, family and port) repeat from run to run, and a sha256 each is most of that run's cost.
// Bounded: cleared whole when full, which only costs the next run its hashes again.
const hashCache = new Map<string, bigint>();
const HASH_CACHE_MAX = 1 << 18;

function hash64(text: string): bigint {
  let h = hashCache.get(text);
  if (h === undefined) {
    if (hashCache.size >= HASH_CACHE_MAX) hashCache.clear();
    h = BigInt('0x' + createHash('sha256').update(text).digest('hex').slice(0, 16));
    hashCache.set(text, h);
  }
  return h;
}

function toBig(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function fromBig(v: bigint): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 15; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

class IpPool {
  readonly base: bigint;
  /** first and last usable offsets */
  readonly lo: bigint;
  readonly hi: bigint;
  constructor(readonly cidr: Cidr) {
    this.base = toBig(ipTo16(cidr.address));
    const size = 1n << BigInt((cidr.family === 4 ? 32 : 128) - cidr.prefix);
    // like kube-apiserver: not the network address, not the first host (kubernetes.default's
    // conventional address), and for IPv4 not the broadcast address
    this.lo = size >= 8n ? 2n : 1n;
    this.hi = cidr.family === 4 ? size - 2n : size - 1n;
  }

  get usable(): boolean {
    return this.hi >= this.lo;
  }

  at(offset: bigint): string {
    return ipFrom16(fromBig(this.base + offset));
  }

  allocate(seed: string, used: UsedSet<string>, skip?: (ip: string) => void): string | undefined {
    const span = this.hi - this.lo + 1n;
    let off = hash64(seed) % span;
    // bounded: each step either finds a free address or passes a used one
    for (let n = 0; n <= used.size && BigInt(n) < span; n++) {
      const ip = this.at(this.lo + off);
      if (!used.has(ip)) return ip;
      skip?.(ip);
      off = (off + 1n) % span;
    }
    return undefined;
  }
}

/** What allocate() reads and adds to of the addresses and ports in use (a Set, or the caller's index). */
export interface UsedSet<T> {
  has(x: T): boolean;
  add(x: T): unknown;
  readonly size: number;
}

/**
 * What allocate() tells of each standalone allocation, for a caller that indexes them (the Compiler's
 * local allocation of a changed Service): every address and port a chosen Service holds (its own and
 * those allocated), and each one an allocation probed past, in use at its turn.
 */
export interface AllocTrace {
  took(key: string, slot: string | number): void;
  skipped(key: string, slot: string | number): void;
}

/** n zeros, one shared array per n: most Services have no nodePort, and the arrays live as long as they do */
const ZEROS: (readonly number[])[] = [];

/** The nodePorts a Service names itself, per port (0 for none). */
function nodePortsOf(s: ServiceModel): readonly number[] {
  if (s.ports.some((p) => p.nodePort)) return s.ports.map((p) => p.nodePort);
  return ZEROS[s.ports.length] ??= Object.freeze(s.ports.map(() => 0));
}

export interface AllocateOptions {
  serviceCidrs: string[];
  nodePortRange: NodePortRange;
}

/** Parses the service CIDRs (at most one per family, as kube-apiserver's --service-cluster-ip-range). */
export function parseServiceCidrs(cidrs: string[]): Map<Family, Cidr> {
  const out = new Map<Family, Cidr>();
  for (const text of cidrs) {
    const c = parseCidr(text.trim());
    if (out.has(c.family)) throw new KbpError('KBP_ERR_CONFIG', `two service CIDRs of IPv${c.family}: ${formatCidr(out.get(c.family)!)} and ${text}`);
    out.set(c.family, c);
  }
  return out;
}

/**
 * Decides the clusterIPs and nodePorts of every Service. Services that cannot be placed (an
 * explicit clusterIP or nodePort already taken by an earlier Service, a family with no service
 * CIDR) are reported and left out of the result. `out`: the (empty) Map to fill and return.
 * `used`: the addresses and ports in use besides these Services' (standalone: allocations avoid
 * them, and what these Services take is added); `trace` hears of each (standalone).
 */
export function allocate(services: ServiceModel[], cidrs: Map<Family, Cidr>, range: NodePortRange,
  errors: ObjectError[], standalone = true, out: Map<string, Allocation> = new Map(),
  used?: { ips: UsedSet<string>; ports: UsedSet<number> }, trace?: AllocTrace): Map<string, Allocation> {
  const usedIPs: UsedSet<string> = used?.ips ?? new Set<string>();
  const usedNodePorts: UsedSet<number> = used?.ports ?? new Set<number>();
  const explicitNodePorts = new Map<string, string>(); // `${port}/${proto}` -> service key
  const pools = new Map<Family, IpPool>();
  const cidrOrder: Family[] = [...cidrs.keys()];
  // only standalone allocation draws from the pools (a Service of the API server allocated alone, one
  // per added Service, would build them for nothing)
  if (standalone) for (const [f, c] of cidrs) pools.set(f, new IpPool(c));
  const reject = (s: ServiceModel, field: string, message: string): void => {
    errors.push({ kind: 'Service', key: s.key, field, message, severity: 'error' });
  };

  // first pass: what the Services chose themselves; a collision rejects the later Service by key
  const chosen: ServiceModel[] = [];
  const ipOwner = new Map<string, string>();
  for (const s of services) {
    if (s.headless || s.type === 'ExternalName') continue;
    let ok = true;
    s.clusterIPs.forEach((ip, i) => {
      const owner = ipOwner.get(ip);
      if (owner) {
        reject(s, i === 0 ? 'spec.clusterIP' : `spec.clusterIPs[${i}]`, `${ip} is already the clusterIP of ${owner}`);
        ok = false;
      }
    });
    s.ports.forEach((p, i) => {
      if (!p.nodePort) return;
      const k = `${p.nodePort}/${p.protocol}`;
      const owner = explicitNodePorts.get(k);
      if (owner) {
        reject(s, `spec.ports[${i}].nodePort`, `${k} is already used by ${owner}`);
        ok = false;
      }
    });
    if (!ok) continue;
    // (what is used is read only by the standalone pass below: from the API server two Sets of
    // every clusterIP and nodePort fewer, 100,000 entries each at 100,000 Services)
    for (const ip of s.clusterIPs) {
      ipOwner.set(ip, s.key);
      if (standalone) usedIPs.add(ip);
      trace?.took(s.key, ip);
    }
    for (const p of s.ports) {
      if (!p.nodePort) continue;
      explicitNodePorts.set(`${p.nodePort}/${p.protocol}`, s.key);
      if (standalone) usedNodePorts.add(p.nodePort);
      trace?.took(s.key, p.nodePort);
    }
    if (s.healthCheckNodePort && standalone) {
      usedNodePorts.add(s.healthCheckNodePort);
      trace?.took(s.key, s.healthCheckNodePort);
    }
    chosen.push(s);
  }

  const span = range.max - range.min + 1;
  const allocPort = (key: string, seed: string): number => {
    let off = Number(hash64(seed) % BigInt(span));
    for (let n = 0; n < span; n++) {
      const port = range.min + off;
      if (!usedNodePorts.has(port)) {
        usedNodePorts.add(port);
        trace?.took(key, port);
        return port;
      }
      trace?.skipped(key, port);
      off = (off + 1) % span;
    }
    return 0;
  };

  // from the API server, what is missing stays missing: kube-proxy skips a Service without a
  // clusterIP and programs no NodePort for a port without one
  if (!standalone) {
    for (const s of chosen) {
      if (!s.clusterIPs.length) {
        errors.push({ kind: 'Service', key: s.key, field: 'spec.clusterIP', severity: 'warning', message: 'no clusterIP assigned yet: nothing to program' });
        continue;
      }
      // the model's own list: normalize gives at most one clusterIP per family, primary first
      out.set(s.key, { clusterIPs: s.clusterIPs, nodePorts: nodePortsOf(s), healthCheckNodePort: s.healthCheckNodePort });
    }
    return out;
  }

  // second pass: fill in what is missing, in key order
  for (const s of chosen) {
    let clusterIPs: readonly string[] = s.clusterIPs;
    if (s.clusterIPs.length) {
      // a Service that asks for dual-stack but names one clusterIP gets the other family allocated
      if (s.clusterIPs.length === 1 && s.ipFamilyPolicy !== 'SingleStack') {
        const other: Family = familyOfValid(s.clusterIPs[0]!) === 4 ? 6 : 4;
        const ip = pools.get(other)?.allocate(`${s.key}/${other}`, usedIPs, trace && ((x) => trace.skipped(s.key, x)));
        if (ip) {
          clusterIPs = [s.clusterIPs[0]!, ip];
          usedIPs.add(ip);
          trace?.took(s.key, ip);
        } else if (s.ipFamilyPolicy === 'RequireDualStack') {
          reject(s, 'spec.ipFamilyPolicy', `RequireDualStack, but no IPv${other} service CIDR is configured`);
          continue;
        }
      }
    } else {
      let families: Family[] = s.ipFamilies.length ? [...s.ipFamilies] : [cidrOrder[0] ?? 4];
      if (s.ipFamilyPolicy === 'SingleStack') families = families.slice(0, 1);
      else for (const f of [...cidrOrder, 4, 6] as Family[]) if (!families.includes(f)) families.push(f);
      let failed = false;
      const picked: string[] = [];
      clusterIPs = picked;
      for (const f of families) {
        const pool = pools.get(f);
        const required = s.ipFamilyPolicy === 'SingleStack' || s.ipFamilyPolicy === 'RequireDualStack' || f === families[0];
        if (!pool || !pool.usable) {
          if (required) {
            reject(s, s.ipFamilies.length ? 'spec.ipFamilies' : 'spec.clusterIP',
              `no clusterIP given and no IPv${f} service CIDR to allocate one from`);
            failed = true;
            break;
          }
          continue;
        }
        const ip = pool.allocate(`${s.key}/${f}`, usedIPs, trace && ((x) => trace.skipped(s.key, x)));
        if (!ip) {
          reject(s, 'spec.clusterIP', `the IPv${f} service CIDR ${formatCidr(pool.cidr)} is full`);
          failed = true;
          break;
        }
        picked.push(ip);
        usedIPs.add(ip);
        trace?.took(s.key, ip);
      }
      if (failed) continue;
    }
    const wantsNodePorts = s.type === 'NodePort' || (s.type === 'LoadBalancer' && s.allocateLoadBalancerNodePorts);
    const nodePorts = !wantsNodePorts ? nodePortsOf(s) : s.ports.map((p, i) => {
      if (p.nodePort) return p.nodePort;
      return allocPort(s.key, `${s.key}/${p.name || i}/${p.protocol}`);
    });
    if (nodePorts.some((p, i) => wantsNodePorts && !s.ports[i]?.nodePort && p === 0)) {
      reject(s, 'spec.ports', `the nodePort range ${range.min}-${range.max} is full`);
      continue;
    }
    // kube-apiserver allocates a health check port for LoadBalancer Services with eTP Local
    let healthCheckNodePort = s.healthCheckNodePort;
    if (!healthCheckNodePort && s.type === 'LoadBalancer' && s.externalTrafficPolicy === 'Local') {
      healthCheckNodePort = allocPort(s.key, `${s.key}/healthCheckNodePort`);
    }
    out.set(s.key, { clusterIPs, nodePorts, healthCheckNodePort });
  }
  return out;
}
