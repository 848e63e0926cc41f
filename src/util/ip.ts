// IP address helpers shared by every stage. The data plane keeps every address in 16 bytes: IPv6 as is,
// IPv4 as an IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one map and one code path serve both families.
import { isIPv4, isIPv6 } from 'node:net';
import { KbpError } from './errors.js';

export type Family = 4 | 6;

export function ipFamily(address: string): Family | 0 {
  return isIPv4(address) ? 4 : isIPv6(address) ? 6 : 0;
}

/** The family of an address already checked to be one (a model's, a plan's): a colon means IPv6. */
export function familyOfValid(address: string): Family {
  return address.includes(':') ? 6 : 4;
}

/** `address:port`, an IPv6 address in brackets (`[fd00::1]:80`), as the dump tables print them. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Parses an address into its 16-byte data-plane form; throws on anything that is not an IP address. */
export function ipTo16(address: string): Uint8Array {
  const out = new Uint8Array(16);
  if (isIPv4(address)) {
    out[10] = 0xff;
    out[11] = 0xff;
    address.split('.').forEach((p, i) => { out[12 + i] = Number(p); });
    return out;
  }
  if (!isIPv6(address)) throw new KbpError('KBP_ERR_INVALID_VALUE', `not an IP address: ${JSON.stringify(address)}`);
  let text = address;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1, 5).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

export function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** The canonical text of a 16-byte data-plane address (IPv4-mapped ones print as IPv4). */
export function ipFrom16(b: Uint8Array): string {
  if (isV4Mapped(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  const view = new DataView(b.buffer, b.byteOffset, 16);
  for (let i = 0; i < 16; i += 2) groups.push(view.getUint16(i));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on a tie
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':');
}

/** The canonical text of an address (lower case, compressed IPv6); throws when it does not parse. */
export function canonicalIp(address: string): string {
  return ipFrom16(ipTo16(address));
}

/** Orders IPv4 before IPv6, then numerically. */
export function compareAddresses(a: string, b: string): number {
  if (a === b) return 0;
  const x = ipTo16(a), y = ipTo16(b);
  const fx = isV4Mapped(x) ? 0 : 1, fy = isV4Mapped(y) ? 0 : 1;
  if (fx !== fy) return fx - fy;
  for (let i = 0; i < 16; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

export interface Cidr {
  address: string;
  prefix: number;
  family: Family;
}

/** Parses "a.b.c.d/n" or "x::/n" (a bare address is a host route); throws with the reason. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family = ipFamily(addr);
  if (!family) throw new KbpError('KBP_ERR_INVALID_VALUE', `not a CIDR: ${JSON.stringify(text)}`);
  const max = family === 4 ? 32 : 128;
  const prefix = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash >= 0 && !/^\d+$/.test(text.slice(slash + 1)))) {
    throw new KbpError('KBP_ERR_INVALID_VALUE', `bad prefix length in CIDR ${JSON.stringify(text)}`);
  }
  // mask host bits so that equal networks compare equal
  const b = ipTo16(addr);
  const bits = (family === 4 ? 96 : 0) + prefix;
  b.forEach((x, i) => {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    b[i] = x & ((0xff << (8 - keep)) & 0xff);
  });
  return { address: ipFrom16(b), prefix, family };
}

export function cidrContains(cidr: Cidr, address: string): boolean {
  if (ipFamily(address) !== cidr.family) return false;
  const a = ipTo16(address), n = ipTo16(cidr.address);
  const bits = (cidr.family === 4 ? 96 : 0) + cidr.prefix;
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    const mask = (0xff << (8 - keep)) & 0xff;
    if ((a[i]! & mask) !== (n[i]! & mask)) return false;
  }
  return true;
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/**
 * A dotted quad exactly as node:net isIPv4 takes it (four parts 0..255 without leading zeros) as a
 * u32, else -1: the plan's backend index and compile's candidate order take IPv4 addresses by value
 * (for those isIP is 4), skipping the text checks and keys that were a third of a build's JavaScript.
 */
export function strictV4(a: string): number {
  let v = 0, part = 0, digits = 0, parts = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) {
      if (!digits || ++parts > 3) return -1;
      v = v * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return -1; // a leading zero
      if (++digits > 3) return -1;
      part = part * 10 + c - 48;
      if (part > 255) return -1;
    } else return -1;
  }
  if (!digits || parts !== 3) return -1;
  return v * 256 + part;
}

/**
 * A strictV4 value mixed so that its low bits depend on every bit: the slot of an open-addressing
 * table by address value (mask it with the table's size - 1).
 */
export function v4Hash(v: number): number {
  let h = Math.imul(v ^ (v >>> 16), 0x45d9f3b);
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  return (h ^ (h >>> 16)) >>> 0;
}
