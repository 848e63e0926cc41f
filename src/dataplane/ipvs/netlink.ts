// Netlink messages as bytes: the header (nlmsghdr), generic netlink's (genlmsghdr)
// and attributes (nested or not), encoded and decoded here so the kbp_netlink addon only
// sends and receives buffers. Pure: unit-tested without a kernel (test/unit/ipvs-netlink.test.ts).
// Layouts: linux/netlink.h, linux/genetlink.h.
import { ipFrom16, ipTo16 } from '../../util/ip.js';

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLA_F_NESTED = 0x8000;
export const NLA_TYPE_MASK = 0x3fff;
/** NLMSGERR_ATTR_MSG: the kernel's error text (NETLINK_EXT_ACK) */
const NLMSGERR_ATTR_MSG = 1;
const NLM_F_ACK_TLVS = 0x200;

export const NETLINK_GENERIC = 16;

const align = (n: number) => (n + 3) & ~3;

/** An attribute: a type and either raw bytes or nested attributes. */
export type Attr = { type: number; value: Buffer } | { type: number; nested: Attr[] };

export const attr = {
  u8: (type: number, v: number): Attr => ({ type, value: Buffer.from([v & 0xff]) }),
  u16: (type: number, v: number): Attr => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return { type, value: b }; },
  /** big-endian (network order), as ports are in IPVS and ctnetlink */
  be16: (type: number, v: number): Attr => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return { type, value: b }; },
  u32: (type: number, v: number): Attr => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return { type, value: b }; },
  /** NUL-terminated */
  str: (type: number, v: string): Attr => ({ type, value: Buffer.concat([Buffer.from(v, 'utf8'), Buffer.from([0])]) }),
  bytes: (type: number, v: Buffer): Attr => ({ type, value: v }),
  nested: (type: number, nested: Attr[]): Attr => ({ type, nested }),
};

export function encodeAttrs(attrs: Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const payload = 'nested' in a ? encodeAttrs(a.nested) : a.value;
    const len = 4 + payload.length;
    if (len > 0xffff) throw new RangeError(`netlink attribute ${a.type}: ${payload.length} bytes is too long`);
    const h = Buffer.alloc(4);
    h.writeUInt16LE(len, 0);
    h.writeUInt16LE(a.type | ('nested' in a ? NLA_F_NESTED : 0), 2);
    parts.push(h, payload, Buffer.alloc(align(len) - len));
  }
  return Buffer.concat(parts);
}

/** Attributes of a buffer by type (NLA_F_NESTED and byte-order flags masked off); the last one wins. */
export function decodeAttrs(b: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= b.length) {
    const len = b.readUInt16LE(off);
    if (len < 4 || off + len > b.length) throw new RangeError(`netlink attribute at ${off}: length ${len} runs past ${b.length} bytes`);
    out.set(b.readUInt16LE(off + 2) & NLA_TYPE_MASK, b.subarray(off + 4, off + len));
    off += align(len);
  }
  return out;
}

export interface Message {
  type: number;
  flags: number;
  seq: number;
  /** what follows the nlmsghdr */
  payload: Buffer;
}

/** One message: nlmsghdr + payload (padded). */
export function encodeMessage(m: { type: number; flags: number; seq: number; payload: Buffer }): Buffer {
  const len = 16 + m.payload.length;
  const h = Buffer.alloc(16);
  h.writeUInt32LE(len, 0);
  h.writeUInt16LE(m.type, 4);
  h.writeUInt16LE(m.flags, 6);
  h.writeUInt32LE(m.seq >>> 0, 8);
  h.writeUInt32LE(0, 12);
  return Buffer.concat([h, m.payload, Buffer.alloc(align(len) - len)]);
}

export function decodeMessages(b: Buffer): Message[] {
  const out: Message[] = [];
  let off = 0;
  while (off + 16 <= b.length) {
    const len = b.readUInt32LE(off);
    if (len < 16 || off + len > b.length) throw new RangeError(`netlink message at ${off}: length ${len} runs past ${b.length} bytes`);
    out.push({ type: b.readUInt16LE(off + 4), flags: b.readUInt16LE(off + 6), seq: b.readUInt32LE(off + 8), payload: b.subarray(off + 16, off + len) });
    off += align(len);
  }
  return out;
}

/** genlmsghdr (cmd, version, reserved) followed by attributes. */
export function genlPayload(cmd: number, version: number, attrs: Attr[]): Buffer {
  return Buffer.concat([Buffer.from([cmd, version, 0, 0]), encodeAttrs(attrs)]);
}

/** The errno (negative, 0 for an ACK) and the kernel's text of an NLMSG_ERROR message. */
export function decodeError(m: Message): { errno: number; message?: string } {
  const errno = m.payload.readInt32LE(0);
  let message: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS) {
    // NETLINK_CAP_ACK: only the request's header (16 bytes) follows the errno, then the TLVs
    const tlv = decodeAttrs(m.payload.subarray(4 + 16)).get(NLMSGERR_ATTR_MSG);
    if (tlv) message = tlv.toString('utf8').replace(/\0+$/, '');
  }
  return { errno, ...(message !== undefined && { message }) };
}

// ---- addresses as IPVS carries them ---------------------------------------------------
export const AF_INET = 2;
export const AF_INET6 = 10;

export function familyOf(address: string): number {
  return address.includes(':') ? AF_INET6 : AF_INET;
}

/** The address's own bytes: 4 for IPv4, 16 for IPv6 (src/util/ip.ts parses). */
export function ipBytes(address: string): Buffer {
  const b = Buffer.from(ipTo16(address));
  return address.includes(':') ? b : b.subarray(12);
}

/** IPVS's union nf_inet_addr: 16 bytes, an IPv4 address in the first 4. */
export function inetAddr(address: string): Buffer {
  const b = Buffer.alloc(16);
  ipBytes(address).copy(b);
  return b;
}

/** The canonical text of an address of that family (the first 4 bytes for IPv4). */
export function ipText(af: number, b: Buffer): string {
  if (af === AF_INET) return [...b.subarray(0, 4)].join('.');
  return ipFrom16(b.subarray(0, 16));
}
