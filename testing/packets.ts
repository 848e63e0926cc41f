// Packet crafting for the datapath tests: Ethernet + IPv4/IPv6 + TCP/UDP frames with checksums
// computed here, from scratch and independently of the BPF programs (which update checksums
// incrementally), so comparing bytes checks both. Also builds the refusals the programs must send
// (TCP RST, ICMP / ICMPv6 port unreachable) and verifies any frame's checksums.
import { ipTo16, isV4Mapped } from '../src/util/ip.js';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMP = 1;
export const PROTO_ICMPV6 = 58;
export const TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10;

/** the client side's MAC and the node's: fixed, so expected frames can be written down */
export const MAC_CLIENT = Buffer.from('02000000aa01', 'hex');
export const MAC_NODE = Buffer.from('02000000bb02', 'hex');

/** RFC 1071: one's-complement sum of 16-bit big-endian words (odd tail padded), not complemented */
export function sum16(data: Uint8Array, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < data.length; i += 2) s += (data[i]! << 8) | data[i + 1]!;
  if (data.length & 1) s += data[data.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

export function checksum(...parts: Uint8Array[]): number {
  let s = 0;
  parts.forEach((p, i) => {
    if (p.length & 1 && i < parts.length - 1) throw new Error('checksum: only the last part may have an odd length');
  });
  for (const p of parts) s = sum16(p, s);
  return ~s & 0xffff;
}

function isV4(addr: string): boolean {
  return isV4Mapped(ipTo16(addr));
}

function addrBytes(addr: string): Buffer {
  const b = Buffer.from(ipTo16(addr));
  return isV4Mapped(b) ? b.subarray(12) : b;
}

function pseudoHeader(src: string, dst: string, proto: number, len: number): Buffer {
  if (isV4(src)) {
    const p = Buffer.alloc(12);
    addrBytes(src).copy(p, 0);
    addrBytes(dst).copy(p, 4);
    p[9] = proto;
    p.writeUInt16BE(len, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  addrBytes(src).copy(p, 0);
  addrBytes(dst).copy(p, 16);
  p.writeUInt32BE(len, 32);
  p[39] = proto;
  return p;
}

export interface TcpSpec { kind: 'tcp'; sport: number; dport: number; seq?: number; ack?: number; flags?: number; window?: number; options?: Buffer; payload?: Buffer }
export interface UdpSpec { kind: 'udp'; sport: number; dport: number; payload?: Buffer; /** IPv4 only: send without checksum */ noChecksum?: boolean }
export interface RawL4 { kind: 'raw'; proto: number; bytes: Buffer }
export type L4Spec = TcpSpec | UdpSpec | RawL4;

export interface FrameSpec {
  src: string;
  dst: string;
  l4: L4Spec;
  macSrc?: Buffer;
  macDst?: Buffer;
  ttl?: number;
  /** IPv4 options (a multiple of 4 bytes) */
  ipOptions?: Buffer;
  /** IPv4 fragment field (flags + offset), e.g. 0x2000 for MF */
  fragOff?: number;
  ipId?: number;
  /** IPv6 extension headers between the fixed header and L4: [nexthdr-type, body without the 2-byte head] */
  v6Ext?: Array<{ type: number; body: Buffer }>;
}

export function l4Bytes(src: string, dst: string, l4: L4Spec): { proto: number; bytes: Buffer } {
  if (l4.kind === 'raw') return { proto: l4.proto, bytes: l4.bytes };
  if (l4.kind === 'tcp') {
    const opts = l4.options ?? Buffer.alloc(0);
    if (opts.length % 4) throw new Error('TCP options must be a multiple of 4 bytes');
    const payload = l4.payload ?? Buffer.alloc(0);
    const h = Buffer.alloc(20 + opts.length);
    h.writeUInt16BE(l4.sport, 0);
    h.writeUInt16BE(l4.dport, 2);
    h.writeUInt32BE((l4.seq ?? 0) >>> 0, 4);
    h.writeUInt32BE((l4.ack ?? 0) >>> 0, 8);
    h[12] = ((20 + opts.length) / 4) << 4;
    h[13] = l4.flags ?? TCP_ACK;
    h.writeUInt16BE(l4.window ?? 64240, 14);
    opts.copy(h, 20);
    const seg = Buffer.concat([h, payload]);
    seg.writeUInt16BE(checksum(pseudoHeader(src, dst, PROTO_TCP, seg.length), seg), 16);
    return { proto: PROTO_TCP, bytes: seg };
  }
  const payload = l4.payload ?? Buffer.alloc(0);
  const seg = Buffer.alloc(8 + payload.length);
  seg.writeUInt16BE(l4.sport, 0);
  seg.writeUInt16BE(l4.dport, 2);
  seg.writeUInt16BE(seg.length, 4);
  payload.copy(seg, 8);
  if (!l4.noChecksum) {
    let c = checksum(pseudoHeader(src, dst, PROTO_UDP, seg.length), seg);
    if (c === 0) c = 0xffff;
    seg.writeUInt16BE(c, 6);
  }
  return { proto: PROTO_UDP, bytes: seg };
}

export function ipv4Header(src: string, dst: string, proto: number, payloadLen: number, o: { ttl?: number; options?: Buffer; fragOff?: number; id?: number; tos?: number } = {}): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opts.length);
  h[0] = 0x40 | ((20 + opts.length) / 4);
  h[1] = o.tos ?? 0;
  h.writeUInt16BE(h.length + payloadLen, 2);
  h.writeUInt16BE(o.id ?? 0, 4);
  h.writeUInt16BE(o.fragOff ?? 0, 6);
  h[8] = o.ttl ?? 64;
  h[9] = proto;
  addrBytes(src).copy(h, 12);
  addrBytes(dst).copy(h, 16);
  opts.copy(h, 20);
  h.writeUInt16BE(checksum(h), 10);
  return h;
}

export function ipv6Header(src: string, dst: string, nexthdr: number, payloadLen: number, hopLimit = 64): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payloadLen, 4);
  h[6] = nexthdr;
  h[7] = hopLimit;
  addrBytes(src).copy(h, 8);
  addrBytes(dst).copy(h, 24);
  return h;
}

function ethHeader(dst: Buffer, src: Buffer, type: number): Buffer {
  const h = Buffer.alloc(14);
  dst.copy(h, 0);
  src.copy(h, 6);
  h.writeUInt16BE(type, 12);
  return h;
}

/** A whole Ethernet frame. */
export function frame(s: FrameSpec): Buffer {
  const { proto, bytes } = l4Bytes(s.src, s.dst, s.l4);
  const macDst = s.macDst ?? MAC_NODE, macSrc = s.macSrc ?? MAC_CLIENT;
  if (isV4(s.src)) {
    const ip = ipv4Header(s.src, s.dst, proto, bytes.length, { ttl: s.ttl, options: s.ipOptions, fragOff: s.fragOff, id: s.ipId });
    return Buffer.concat([ethHeader(macDst, macSrc, ETH_P_IP), ip, bytes]);
  }
  const exts = s.v6Ext ?? [];
  const extBufs: Buffer[] = [];
  for (let i = 0; i < exts.length; i++) {
    const e = exts[i]!;
    const next = i + 1 < exts.length ? exts[i + 1]!.type : proto;
    const total = 2 + e.body.length;
    if (total % 8) throw new Error('an IPv6 extension header must be a multiple of 8 bytes');
    extBufs.push(Buffer.concat([Buffer.from([next, total / 8 - 1]), e.body]));
  }
  const ext = Buffer.concat(extBufs);
  const first = exts.length ? exts[0]!.type : proto;
  return Buffer.concat([ethHeader(macDst, macSrc, ETH_P_IPV6), ipv6Header(s.src, s.dst, first, ext.length + bytes.length, s.ttl ?? 64), ext, bytes]);
}

export const tcp = (sport: number, dport: number, o: Omit<TcpSpec, 'kind' | 'sport' | 'dport'> = {}): TcpSpec => ({ kind: 'tcp', sport, dport, seq: 1000, ack: 0, flags: TCP_SYN, ...o });
export const udp = (sport: number, dport: number, o: Omit<UdpSpec, 'kind' | 'sport' | 'dport'> = {}): UdpSpec => ({ kind: 'udp', sport, dport, payload: Buffer.from('kbp-query'), ...o });

// ---- reading frames back ------------------------------------------------------------------------

export interface Parsed {
  family: 4 | 6;
  src: string;
  dst: string;
  proto: number;
  l3Off: number;
  l4Off: number;
  ipLen: number;
  sport: number;
  dport: number;
  tcpFlags: number;
  seq: number;
  ack: number;
  payloadLen: number;
}

function text16(b: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return parts.join(':');
}

/** Parses a frame this module built (no extension headers beyond the ones it writes). */
export function parse(f: Buffer): Parsed {
  const type = f.readUInt16BE(12);
  if (type === ETH_P_IP) {
    const ihl = (f[14]! & 0x0f) * 4;
    const ipLen = f.readUInt16BE(16);
    const l4Off = 14 + ihl;
    const proto = f[23]!;
    const src = [...f.subarray(26, 30)].join('.'), dst = [...f.subarray(30, 34)].join('.');
    return finishParse(f, 4, src, dst, proto, 14, l4Off, ipLen);
  }
  if (type !== ETH_P_IPV6) throw new Error(`not an IP frame (ethertype 0x${type.toString(16)})`);
  let nh = f[20]!, off = 54;
  while (nh === 0 || nh === 60 || nh === 43) {
    nh = f[off]!;
    off += (f[off + 1]! + 1) * 8;
  }
  return finishParse(f, 6, text16(f.subarray(22, 38)), text16(f.subarray(38, 54)), nh, 14, off, 40 + f.readUInt16BE(18));
}

function finishParse(f: Buffer, family: 4 | 6, src: string, dst: string, proto: number, l3Off: number, l4Off: number, ipLen: number): Parsed {
  const p: Parsed = { family, src, dst, proto, l3Off, l4Off, ipLen, sport: 0, dport: 0, tcpFlags: 0, seq: 0, ack: 0, payloadLen: 0 };
  const l4Len = l3Off + ipLen - l4Off;
  if (proto === PROTO_TCP || proto === PROTO_UDP) {
    p.sport = f.readUInt16BE(l4Off);
    p.dport = f.readUInt16BE(l4Off + 2);
  }
  if (proto === PROTO_TCP) {
    p.seq = f.readUInt32BE(l4Off + 4);
    p.ack = f.readUInt32BE(l4Off + 8);
    p.tcpFlags = f[l4Off + 13]!;
    p.payloadLen = l4Len - (f[l4Off + 12]! >> 4) * 4;
  } else if (proto === PROTO_UDP) {
    p.payloadLen = l4Len - 8;
  }
  return p;
}

/**
 * Checks every checksum of a frame (IPv4 header, TCP, UDP, ICMP, ICMPv6) by summing from scratch;
 * returns the problems found, [] when all are right.
 */
export function checksumErrors(f: Buffer): string[] {
  const errors: string[] = [];
  const p = parse(f);
  // a fragment's L4 checksum covers the whole datagram: only the IPv4 header's can be checked
  if (p.family === 4 && (f.readUInt16BE(20) & 0x3fff)) return sum16(f.subarray(14, p.l4Off)) === 0xffff ? [] : ['IPv4 header checksum'];
  if (p.family === 6 && p.proto === 44) return [];
  const l4 = f.subarray(p.l4Off, p.l3Off + p.ipLen);
  if (p.family === 4) {
    const hdr = f.subarray(14, p.l4Off);
    if (sum16(hdr) !== 0xffff) errors.push('IPv4 header checksum');
  }
  const srcB = p.family === 4 ? f.subarray(26, 30) : f.subarray(22, 38);
  const dstB = p.family === 4 ? f.subarray(30, 34) : f.subarray(38, 54);
  const pseudo = (proto: number) => {
    if (p.family === 4) {
      const b = Buffer.alloc(12);
      srcB.copy(b, 0); dstB.copy(b, 4); b[9] = proto; b.writeUInt16BE(l4.length, 10);
      return b;
    }
    const b = Buffer.alloc(40);
    srcB.copy(b, 0); dstB.copy(b, 16); b.writeUInt32BE(l4.length, 32); b[39] = proto;
    return b;
  };
  if (p.proto === PROTO_TCP || p.proto === PROTO_UDP || p.proto === PROTO_ICMPV6) {
    if (p.proto === PROTO_UDP && p.family === 4 && l4.readUInt16BE(6) === 0) return errors; // no checksum
    if (sum16(l4, sum16(pseudo(p.proto))) !== 0xffff) errors.push(`${p.proto === PROTO_TCP ? 'TCP' : p.proto === PROTO_UDP ? 'UDP' : 'ICMPv6'} checksum`);
  } else if (p.proto === PROTO_ICMP) {
    if (sum16(l4) !== 0xffff) errors.push('ICMP checksum');
  }
  return errors;
}

// ---- what the programs must send back ------------------------------------------------------------

function swapMacs(f: Buffer): { dst: Buffer; src: Buffer } {
  return { dst: Buffer.from(f.subarray(6, 12)), src: Buffer.from(f.subarray(0, 6)) };
}

/** The RST|ACK answering a TCP segment (RFC 9293 3.10.7.1), as the programs build it. */
export function expectedRst(input: Buffer): Buffer {
  const p = parse(input);
  let seglen = p.payloadLen;
  if (p.tcpFlags & TCP_SYN) seglen++;
  if (p.tcpFlags & TCP_FIN) seglen++;
  const { dst: macDst, src: macSrc } = swapMacs(input);
  const seq = p.tcpFlags & TCP_ACK ? p.ack : 0;
  const l4 = l4Bytes(p.dst, p.src, { kind: 'tcp', sport: p.dport, dport: p.sport, seq, ack: (p.seq + seglen) >>> 0, flags: TCP_RST | TCP_ACK, window: 0 }).bytes;
  if (p.family === 4) {
    // DF, id 0, TTL 64: what the program writes
    return Buffer.concat([ethHeader(macDst, macSrc, ETH_P_IP), ipv4Header(p.dst, p.src, PROTO_TCP, l4.length, { fragOff: 0x4000 }), l4]);
  }
  return Buffer.concat([ethHeader(macDst, macSrc, ETH_P_IPV6), ipv6Header(p.dst, p.src, PROTO_TCP, l4.length), l4]);
}

/** ICMP port unreachable quoting the IP header + 8 bytes (IPv4), or ICMPv6 quoting up to 1280 bytes in all. */
export function expectedUnreach(input: Buffer): Buffer {
  const p = parse(input);
  const { dst: macDst, src: macSrc } = swapMacs(input);
  if (p.family === 4) {
    const quote = input.subarray(14, p.l4Off + 8);
    const icmp = Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), quote]);
    icmp.writeUInt16BE(checksum(icmp), 2);
    return Buffer.concat([ethHeader(macDst, macSrc, ETH_P_IP), ipv4Header(p.dst, p.src, PROTO_ICMP, icmp.length), icmp]);
  }
  const quote = input.subarray(14, 14 + Math.min(p.ipLen, 1280 - 48));
  const icmp = Buffer.concat([Buffer.from([1, 4, 0, 0, 0, 0, 0, 0]), quote]);
  icmp.writeUInt16BE(checksum(pseudoHeader(p.dst, p.src, PROTO_ICMPV6, icmp.length), icmp), 2);
  return Buffer.concat([ethHeader(macDst, macSrc, ETH_P_IPV6), ipv6Header(p.dst, p.src, PROTO_ICMPV6, icmp.length), icmp]);
}

// ---- ICMP errors about a flow ---------------------------------------------------------------------

/** An ICMP (IPv4) or ICMPv6 error from src to dst quoting `quoted` (an IP packet, possibly cut). */
export function icmpError(src: string, dst: string, type: number, code: number, quoted: Buffer, rest = Buffer.alloc(4)): Buffer {
  const six = !isV4(src);
  const msg = Buffer.concat([Buffer.from([type, code, 0, 0]), rest, quoted]);
  if (six) {
    msg.writeUInt16BE(checksum(pseudoHeader(src, dst, PROTO_ICMPV6, msg.length), msg), 2);
    return Buffer.concat([ethHeader(MAC_NODE, MAC_CLIENT, ETH_P_IPV6), ipv6Header(src, dst, PROTO_ICMPV6, msg.length), msg]);
  }
  msg.writeUInt16BE(checksum(msg), 2);
  return Buffer.concat([ethHeader(MAC_NODE, MAC_CLIENT, ETH_P_IP), ipv4Header(src, dst, PROTO_ICMP, msg.length), msg]);
}

/** Offset of the L4 header in an IP packet (no Ethernet header), past IPv6 extension headers. */
export function ipL4Offset(q: Buffer): number {
  if ((q[0]! >> 4) === 4) return (q[0]! & 0x0f) * 4;
  let nh = q[6]!, off = 40;
  while (nh === 0 || nh === 60 || nh === 51 || nh === 44) {
    const next = q[off]!;
    off += nh === 44 ? 8 : nh === 51 ? (q[off + 1]! + 2) * 4 : (q[off + 1]! + 1) * 8;
    nh = next;
  }
  return off;
}

/**
 * A quoted IP packet with its destination (or, `which` 'src', its source) changed: the frontend
 * instead of the backend, or back. A valid IPv4 header checksum, the L4 checksum left as it was
 * (what the programs do to a quote).
 */
export function requote(quoted: Buffer, addr: string, port: number, which: 'src' | 'dst' = 'dst'): Buffer {
  const q = Buffer.from(quoted);
  const l4 = ipL4Offset(q);
  if ((q[0]! >> 4) === 4) {
    const ihl = (q[0]! & 0x0f) * 4;
    addrBytes(addr).copy(q, which === 'dst' ? 16 : 12);
    q.writeUInt16BE(0, 10);
    q.writeUInt16BE(checksum(q.subarray(0, ihl)), 10);
  } else {
    addrBytes(addr).copy(q, which === 'dst' ? 24 : 8);
  }
  q.writeUInt16BE(port, l4 + (which === 'dst' ? 2 : 0));
  return q;
}

// ---- IP fragments --------------------------------------------------------------------------------

/**
 * Splits a frame (Ethernet + IPv4 or IPv6 without extension headers + payload) into IP fragments
 * of `size` payload bytes (a multiple of 8), as the kernel's ip_fragment / ip6_fragment would:
 * IPv4 fragments share the identification `id`; IPv6 ones get a fragment header with it.
 */
export function fragment(f: Buffer, size: number, id: number): Buffer[] {
  if (size % 8) throw new Error('fragment: size must be a multiple of 8');
  const eth = f.subarray(0, 14);
  const out: Buffer[] = [];
  if (f.readUInt16BE(12) === ETH_P_IP) {
    const ihl = (f[14]! & 0x0f) * 4;
    const hdr = f.subarray(14, 14 + ihl), payload = f.subarray(14 + ihl, 14 + f.readUInt16BE(16));
    for (let off = 0; off < payload.length; off += size) {
      const part = payload.subarray(off, off + size);
      const h = Buffer.from(hdr);
      h.writeUInt16BE(ihl + part.length, 2);
      h.writeUInt16BE(id & 0xffff, 4);
      h.writeUInt16BE((off / 8) | (off + size < payload.length ? 0x2000 : 0), 6);
      h.writeUInt16BE(0, 10);
      h.writeUInt16BE(checksum(h), 10);
      out.push(Buffer.concat([eth, h, part]));
    }
    return out;
  }
  const hdr = f.subarray(14, 54), payload = f.subarray(54, 54 + f.readUInt16BE(18));
  for (let off = 0; off < payload.length; off += size) {
    const part = payload.subarray(off, off + size);
    const h = Buffer.from(hdr);
    h.writeUInt16BE(8 + part.length, 4);
    h[6] = 44;
    const fh = Buffer.alloc(8);
    fh[0] = hdr[6]!;
    fh.writeUInt16BE(off | (off + size < payload.length ? 1 : 0), 2);
    fh.writeUInt32BE(id >>> 0, 4);
    out.push(Buffer.concat([eth, h, fh, part]));
  }
  return out;
}
