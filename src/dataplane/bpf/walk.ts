// A packet walk over a Plan in TypeScript: what the tc / XDP programs (bpf/lb_svc.h lb_select) do
// with the FIRST packet of a flow (no conntrack entry yet, no affinity entry), predicted without a
// kernel. kube-proxy's nftables tests walk packets through the generated ruleset the same way; the
// datapath tests check that the BPF programs agree with this walk on random flows.
import type { Plan, PlanBackend, PlanFrontend } from '../../plan/types.js';
import { frontendKey } from '../../plan/types.js';
import type { Protocol, Scope } from '../../model/compiled.js';
import { canonicalIp, cidrContains, ipFrom16, parseCidr } from '../../util/ip.js';
import { pickBackend } from './hash.js';

export interface WalkPacket {
  src: string;
  sport: number;
  dst: string;
  dport: number;
  protocol: Protocol;
  /** seen on a device flagged external (tc ingress or XDP there); false for pod devices and host egress */
  external: boolean;
  /** from the cluster's pods as the local detector tells (lb_src_is_local); default false */
  fromPods?: boolean;
}

export type WalkResult =
  /** not a frontend, or a protocol the programs do not translate (SCTP) */
  | { verdict: 'pass'; reason: 'no-frontend' | 'protocol' }
  | { verdict: 'drop'; frontend: PlanFrontend; reason: 'source-range' | 'no-local-backend' | 'backend-id-zero' | 'backend-missing' }
  /** refused at once: TCP RST / ICMP port unreachable */
  | { verdict: 'reject'; frontend: PlanFrontend; reason: 'no-backend' | 'table-missing' }
  | { verdict: 'translate'; frontend: PlanFrontend; backend: PlanBackend; snat: boolean };

const PROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;

export interface WalkOptions {
  /** this node's addresses (lb_node_addrs): where NodePorts compiled for any address answer */
  nodeAddresses?: Iterable<string>;
  /** whether traffic that starts on this node may be translated to an externalIP at this address */
  localExternalIp?: (address: string) => boolean;
}

function lookupExact(plan: Plan, address: string, p: WalkPacket): PlanFrontend | undefined {
  const first: Scope = p.external ? 'external' : 'internal';
  const second: Scope = p.external ? 'internal' : 'external';
  return plan.frontends.get(frontendKey({ address, port: p.dport, protocol: p.protocol, scope: first }))
    ?? plan.frontends.get(frontendKey({ address, port: p.dport, protocol: p.protocol, scope: second }));
}

/** Whether a canonical address is one of this node's (lb_node_addrs). */
function isNodeAddress(o: WalkOptions, address: string): boolean {
  return [...(o.nodeAddresses ?? [])].some((a) => canonicalIp(a) === address);
}

/** lb_lookup_frontend: the exact address in both scopes, then, for a node address only, the NodePort
 * compiled for any address (0.0.0.0 or ::). The flow's replies leave from p.dst, the address the
 * client used (lb_commit records it in lb_ct_entry.fe_addr), never from the wildcard. */
function lookupFrontend(plan: Plan, p: WalkPacket, o: WalkOptions): PlanFrontend | undefined {
  const address = canonicalIp(p.dst);
  const exact = lookupExact(plan, address, p);
  if (exact) return exact;
  if (!isNodeAddress(o, address)) return undefined;
  return lookupExact(plan, address.includes(':') ? '::' : '0.0.0.0', p);
}

/**
 * The fate of a flow's first packet. An externalIP is translated for traffic that starts on this node
 * only where `o.localExternalIp` allows it (a node address, or in --local-external-ip-allow:
 * bpf/lb_eip.h); by default only for this node's addresses, as the kernel with an empty allowlist.
 */
export function walkFirstPacket(plan: Plan, p: WalkPacket, o: WalkOptions = {}): WalkResult {
  if (p.protocol === 'SCTP') return { verdict: 'pass', reason: 'protocol' };
  const fe = lookupFrontend(plan, p, o);
  if (!fe) return { verdict: 'pass', reason: 'no-frontend' };
  if (!p.external && fe.type === 'ExternalIP') {
    const dst = canonicalIp(p.dst);
    const ok = o.localExternalIp ? o.localExternalIp(dst) : isNodeAddress(o, dst);
    if (!ok) return { verdict: 'pass', reason: 'no-frontend' };
  }
  if (fe.sourceRanges.length > 0 && !fe.sourceRanges.some((c) => cidrContains(parseCidr(c), p.src))) {
    return { verdict: 'drop', frontend: fe, reason: 'source-range' };
  }
  if (fe.backendIds.length === 0 || fe.tableId === 0) {
    return fe.dropNoLocal ? { verdict: 'drop', frontend: fe, reason: 'no-local-backend' } : { verdict: 'reject', frontend: fe, reason: 'no-backend' };
  }
  const table = plan.tables.get(fe.tableId);
  if (!table) return { verdict: 'reject', frontend: fe, reason: 'table-missing' };
  // under ClientIP affinity the port is left out of the hash, so every connection of a client agrees
  const id = pickBackend(table.slots, p.src, fe.affinityTimeout > 0 ? 0 : p.sport, PROTO[p.protocol], plan.seed);
  if (id === 0) return { verdict: 'drop', frontend: fe, reason: 'backend-id-zero' };
  const be = plan.backends.get(id);
  if (!be || (be.address.includes(':') !== fe.address.includes(':'))) return { verdict: 'drop', frontend: fe, reason: 'backend-missing' };
  const hairpin = canonicalIp(be.address) === canonicalIp(p.src);
  const snat = hairpin || fe.masquerade === 'all' || (fe.masquerade === 'offCluster' && !p.fromPods) ||
    (p.external && fe.snatRemote && !be.local);
  return { verdict: 'translate', frontend: fe, backend: be, snat };
}

// ---- the parser: lb_parse (bpf/lb_parse.h) over a frame --------------------------------------------

export type ParsedFrame =
  /** a TCP/UDP packet (or the first fragment of one) the programs would look up */
  | { kind: 'l4'; src: string; dst: string; sport: number; dport: number; protocol: 'TCP' | 'UDP'; tcpFlags: number; firstFragment: boolean; l4Off: number;
      /** an IPv4 fragment or any IPv6 fragment header (an atomic one too): XDP leaves such packets to tc */
      fragmentHeader: boolean }
  /** an ICMP(v6) error quoting a TCP/UDP packet: the quoted tuple */
  | { kind: 'icmp-error'; src: string; dst: string; sport: number; dport: number; protocol: 'TCP' | 'UDP' }
  /** a fragment past the first: translated only by its first fragment's ports (lb_frags) */
  | { kind: 'later-fragment' }
  | { kind: 'malformed' | 'skip' };

const ETH_HLEN = 14;
const EXT_MAX = 4;

function addr(b: Buffer, off: number, len: 4 | 16): string {
  if (len === 4) return [...b.subarray(off, off + 4)].join('.');
  return ipFrom16(b.subarray(off, off + 16));
}

function l4(f: Buffer, src: string, dst: string, proto: number, l4Off: number, l4Len: number, firstFragment: boolean, fragmentHeader = firstFragment): ParsedFrame {
  if (l4Off > 512) return { kind: 'malformed' };
  if (proto === 6) {
    if (l4Off + 20 > f.length) return { kind: 'malformed' };
    const hlen = (f[l4Off + 12]! >> 4) * 4;
    if (hlen < 20 || hlen > l4Len) return { kind: 'malformed' };
    return { kind: 'l4', src, dst, sport: f.readUInt16BE(l4Off), dport: f.readUInt16BE(l4Off + 2), protocol: 'TCP', tcpFlags: f[l4Off + 13]!, firstFragment, l4Off, fragmentHeader };
  }
  if (l4Off + 8 > f.length || l4Len < 8) return { kind: 'malformed' };
  return { kind: 'l4', src, dst, sport: f.readUInt16BE(l4Off), dport: f.readUInt16BE(l4Off + 2), protocol: 'UDP', tcpFlags: 0, firstFragment, l4Off, fragmentHeader };
}

function quotedPorts(f: Buffer, src: string, dst: string, proto: number, off: number): ParsedFrame {
  if (off > 512 || off + 4 > f.length) return { kind: 'skip' };
  return { kind: 'icmp-error', src, dst, sport: f.readUInt16BE(off), dport: f.readUInt16BE(off + 2), protocol: proto === 6 ? 'TCP' : 'UDP' };
}

function icmp4(f: Buffer, off: number): ParsedFrame {
  if (off > 128 || off + 8 > f.length) return { kind: 'skip' };
  if (![3, 11, 12].includes(f[off]!)) return { kind: 'skip' };
  const q = off + 8;
  if (q + 20 > f.length || f[q]! >> 4 !== 4 || (f[q]! & 0x0f) < 5) return { kind: 'skip' };
  if (f.readUInt16BE(q + 6) & 0x1fff) return { kind: 'skip' };
  const proto = f[q + 9]!;
  if (proto !== 6 && proto !== 17) return { kind: 'skip' };
  return quotedPorts(f, addr(f, q + 12, 4), addr(f, q + 16, 4), proto, q + (f[q]! & 0x0f) * 4);
}

function icmp6(f: Buffer, off: number): ParsedFrame {
  if (off > 512 || off + 8 > f.length) return { kind: 'skip' };
  if (f[off]! < 1 || f[off]! > 4) return { kind: 'skip' };
  const q = off + 8;
  if (q + 40 > f.length || f[q]! >> 4 !== 6) return { kind: 'skip' };
  let nh = f[q + 6]!, qoff = q + 40;
  for (let i = 0; i < 2; i++) {
    if (nh === 6 || nh === 17) break;
    if (nh !== 0 && nh !== 60 && nh !== 51 && nh !== 44) return { kind: 'skip' };
    if (qoff > 768 || qoff + 8 > f.length) return { kind: 'skip' };
    if (nh === 44 && (f.readUInt16BE(qoff + 2) & 0xfff8)) return { kind: 'skip' };
    const next = f[qoff]!;
    qoff += nh === 44 ? 8 : nh === 51 ? (f[qoff + 1]! + 2) * 4 : (f[qoff + 1]! + 1) * 8;
    nh = next;
  }
  if (nh !== 6 && nh !== 17) return { kind: 'skip' };
  return quotedPorts(f, addr(f, q + 8, 16), addr(f, q + 24, 16), nh, qoff);
}

/**
 * What lb_parse makes of a frame (tc: pktLen is the frame's length; no BIG TCP here). The fuzz test
 * compares the programs against it: a packet this parser calls malformed, skipped or a later
 * fragment must never come out translated.
 */
export function parseFrame(f: Buffer): ParsedFrame {
  if (f.length < ETH_HLEN) return { kind: 'skip' };
  const type = f.readUInt16BE(12);
  const o = ETH_HLEN;
  if (type === 0x0800) {
    if (o + 20 > f.length) return { kind: 'malformed' };
    if (f[o]! >> 4 !== 4 || (f[o]! & 0x0f) < 5) return { kind: 'malformed' };
    const hlen = (f[o]! & 0x0f) * 4, tot = f.readUInt16BE(o + 2);
    if (tot < hlen || tot > f.length - o) return { kind: 'malformed' };
    const fo = f.readUInt16BE(o + 6);
    const frag = fo & 0x3fff ? (fo & 0x1fff ? 'later' : 'first') : 'none';
    const proto = f[o + 9]!;
    if (proto === 1) return frag !== 'none' ? { kind: 'skip' } : icmp4(f, o + hlen);
    if (proto !== 6 && proto !== 17) return { kind: 'skip' };
    if (frag === 'later') return { kind: 'later-fragment' };
    return l4(f, addr(f, o + 12, 4), addr(f, o + 16, 4), proto, o + hlen, tot - hlen, frag === 'first');
  }
  if (type !== 0x86dd) return { kind: 'skip' };
  if (o + 40 > f.length) return { kind: 'malformed' };
  if (f[o]! >> 4 !== 6) return { kind: 'malformed' };
  const tot = 40 + f.readUInt16BE(o + 4);
  if (tot > f.length - o) return { kind: 'malformed' };
  let nh = f[o + 6]!, off = o + 40;
  let frag: 'none' | 'first' | 'later' = 'none';
  let fragHeader = false;
  for (let i = 0; i < EXT_MAX; i++) {
    if (nh === 6 || nh === 17 || nh === 58) break;
    // a routing header may change the final destination: not translated
    if (nh !== 0 && nh !== 60 && nh !== 51 && nh !== 44) return { kind: 'skip' };
    if (off + 8 > f.length) return { kind: 'malformed' };
    const next = f[off]!;
    if (nh === 44) {
      // the last fragment header counts; the walk goes on past it (into a later fragment's data,
      // where the kernel's parser does too)
      fragHeader = true;
      const fo = f.readUInt16BE(off + 2);
      frag = fo & 0xfff8 ? 'later' : fo & 1 ? 'first' : 'none';
      off += 8;
    } else {
      off += nh === 51 ? (f[off + 1]! + 2) * 4 : (f[off + 1]! + 1) * 8;
    }
    nh = next;
    if (off > tot + o) return { kind: 'malformed' };
  }
  if (nh === 58) return frag !== 'none' ? { kind: 'skip' } : icmp6(f, off);
  if (nh !== 6 && nh !== 17) return { kind: 'skip' };
  if (frag === 'later') return off > 512 ? { kind: 'malformed' } : { kind: 'later-fragment' };
  return l4(f, addr(f, o + 8, 16), addr(f, o + 24, 16), nh, off, tot + o - off, frag === 'first', fragHeader);
}
