// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4). Each member gets a permutation of the M slots from two hashes of
// its identity; members take turns claiming their next preferred free slot until the table is full.
//
// Cross-node contract: every node must build the identical table for the same member set, because a
// flow that an upstream router moves to another node must land on the same backend there. So the
// permutation comes from the member's identity `address|port` (never its id, which is node-local), the
// seed shared by all nodes, and M, and members are processed in canonical (address, port) order. The
// hash below (MurmurHash3 x86_32) is therefore part of the wire contract between agent versions.
import { compareBackends } from '../model/canonical.js';
import { KbpError } from '../util/errors.js';
import { LB_MAGLEV_IDS_PER_ELEM, LB_MAGLEV_M_MAX, LB_MAGLEV_M_MIN, MAGLEV_ELEM_BYTES } from './limits.js';

/** Slots per backend that keep the imbalance under 1% (the paper's M >= 100 N). */
export const MAGLEV_SLOTS_PER_MEMBER = 100;

/**
 * How M follows the member count N.
 * - exact: the smallest prime >= 100 N. Least memory, but M changes with every change of N, and a new
 *   M reshuffles the whole table (nearly every flow without conntrack moves).
 * - pow2: the smallest prime >= 100 * 2^ceil(log2 N). Up to 2x the memory, but M changes only when N
 *   crosses a power of two, so most single-backend changes keep M and move only ~1/N of the slots.
 * Both are functions of N alone, so every node still agrees on M. maglevSize defaults to exact (the
 * definition); buildPlan defaults to pow2 (plan.ts PlanOptions says why).
 */
export type MaglevSizing = 'exact' | 'pow2';

const SEED2_XOR = 0x9e3779b9; // decorrelates the skip hash from the offset hash

let isComposite: Uint8Array | undefined;

function sieve(): Uint8Array {
  if (isComposite) return isComposite;
  const s = new Uint8Array(LB_MAGLEV_M_MAX + 1);
  s[0] = 1;
  s[1] = 1;
  for (let i = 2; i * i <= LB_MAGLEV_M_MAX; i++) {
    if (s[i]) continue;
    for (let j = i * i; j <= LB_MAGLEV_M_MAX; j += i) s[j] = 1;
  }
  isComposite = s;
  return s;
}

export function isPrime(x: number): boolean {
  if (!Number.isInteger(x) || x < 2) return false;
  if (x <= LB_MAGLEV_M_MAX) return sieve()[x] === 0;
  for (let d = 2; d * d <= x; d++) if (x % d === 0) return false;
  return true;
}

/** The table size for n members: a prime >= 100 n (see MaglevSizing), within [LB_MAGLEV_M_MIN, LB_MAGLEV_M_MAX]. */
export function maglevSize(n: number, sizing: MaglevSizing = 'exact'): number {
  if (!Number.isInteger(n) || n < 1) throw new KbpError('KBP_ERR_INTERNAL', `maglevSize: member count must be a positive integer, got ${n}`);
  const base = sizing === 'pow2' ? 2 ** Math.ceil(Math.log2(n)) : n;
  const want = base * MAGLEV_SLOTS_PER_MEMBER;
  if (want >= LB_MAGLEV_M_MAX) return LB_MAGLEV_M_MAX;
  const s = sieve();
  let m = Math.max(want, LB_MAGLEV_M_MIN);
  while (s[m]) m++; // LB_MAGLEV_M_MAX is prime, so this stops inside the sieve
  return m;
}

/** Bytes the kernel holds for a table of M slots: ceil(M / 2) array elements of 8 bytes (bpf/lb_maps.h, limits.ts). */
export function maglevKernelBytes(m: number): number {
  return Math.ceil(m / LB_MAGLEV_IDS_PER_ELEM) * MAGLEV_ELEM_BYTES;
}

/** MurmurHash3 x86_32 of a string's UTF-8 bytes. */
export function murmur3(text: string, seed: number): number {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return murmur3Bytes(new TextEncoder().encode(text), seed);
  }
  // ASCII (every identity: an address, '|', a port): the string's char codes are its bytes, read
  // without a closure per byte (a first sync hashes ~100,000 identities, issue 10)
  const len = text.length;
  let h = seed >>> 0;
  const blocks = len & ~3;
  for (let i = 0; i < blocks; i += 4) {
    h = mixBlock(h, text.charCodeAt(i) | (text.charCodeAt(i + 1) << 8) | (text.charCodeAt(i + 2) << 16) | (text.charCodeAt(i + 3) << 24));
  }
  const rest = len & 3;
  let k = 0;
  if (rest === 3) k ^= text.charCodeAt(blocks + 2) << 16;
  if (rest >= 2) k ^= text.charCodeAt(blocks + 1) << 8;
  if (rest) k ^= text.charCodeAt(blocks);
  return finish(h, k, rest, len);
}

function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  const len = bytes.length;
  let h = seed >>> 0;
  const blocks = len & ~3;
  for (let i = 0; i < blocks; i += 4) h = mixBlock(h, bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
  const rest = len & 3;
  let k = 0;
  if (rest === 3) k ^= bytes[blocks + 2]! << 16;
  if (rest >= 2) k ^= bytes[blocks + 1]! << 8;
  if (rest) k ^= bytes[blocks]!;
  return finish(h, k, rest, len);
}

const C1 = 0xcc9e2d51, C2 = 0x1b873593;

function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number, k: number, rest: number, len: number): number {
  if (rest) {
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Both of a member's hashes (maglevHashes(maglevIdentity({address, port}), seed)) written to
 * out[at] and out[at + 1], in one pass over the identity's bytes and without making its string: a
 * first sync hashes ~100,000 identities, and the string made per identity, flattened for each of two
 * reads, was most of that hashing (issue 10). Non-ASCII text takes murmur3's UTF-8 path.
 */
export function maglevHashesInto(address: string, port: number, seed: number, out: Float64Array | Uint32Array, at: number): void {
  const seed2 = maglevSeed2(seed);
  let h1 = seed >>> 0, h2 = seed2, k = 0, n = 0;
  const len = address.length;
  for (let i = 0; i < len; i++) {
    const c = address.charCodeAt(i);
    if (c > 0x7f) return hashesOfIdentity(address, port, seed, seed2, out, at);
    k |= c << ((n & 3) << 3);
    if ((++n & 3) === 0) {
      h1 = mixBlock(h1, k);
      h2 = mixBlock(h2, k);
      k = 0;
    }
  }
  // '|' and the port's decimal digits (String(port) of an integer port: no sign, no leading zero)
  let p = Math.trunc(port), div = 1;
  if (p !== port || p < 0 || p > 0xffffffff) return hashesOfIdentity(address, port, seed, seed2, out, at);
  while (div * 10 <= p) div *= 10;
  for (let c = 0x7c; ; ) {
    k |= c << ((n & 3) << 3);
    if ((++n & 3) === 0) {
      h1 = mixBlock(h1, k);
      h2 = mixBlock(h2, k);
      k = 0;
    }
    if (div === 0) break;
    const d = Math.floor(p / div);
    p -= d * div;
    div = div === 1 ? 0 : div / 10;
    c = 0x30 + d;
  }
  out[at] = finish(h1, k, n & 3, n);
  out[at + 1] = finish(h2, k, n & 3, n);
}

/** maglevHashesInto's way for what it does not take byte by byte: through the identity's string */
function hashesOfIdentity(address: string, port: number, seed: number, seed2: number, out: Float64Array | Uint32Array, at: number): void {
  const id = maglevIdentity({ address, port });
  out[at] = murmur3(id, seed);
  out[at + 1] = murmur3(id, seed2);
}

/** The identity a member's permutation is derived from. */
export function maglevIdentity(m: { address: string; port: number }): string {
  return `${m.address}|${m.port}`;
}

/** The two hashes of a member; offset = h1 mod M, skip = h2 mod (M - 1) + 1. */
export function maglevHashes(identity: string, seed: number): [number, number] {
  return [murmur3(identity, seed), murmur3(identity, maglevSeed2(seed))];
}

/** The seed of a member's second hash: maglevHashes(id, seed) is [murmur3(id, seed), murmur3(id, maglevSeed2(seed))]. */
export function maglevSeed2(seed: number): number {
  return (seed ^ SEED2_XOR) >>> 0;
}

/**
 * Builds tables with reusable scratch space: per table it allocates only the result. Not reentrant;
 * use one per caller.
 */
export class MaglevBuilder {
  #cur = new Uint32Array(64);
  #skip = new Uint32Array(64);

  /**
   * Fills a table of m slots with member indices 0..n-1. h1[i], h2[i] are member i's hashes
   * (maglevHashes), members in canonical order. `out`, when given, must have length m.
   */
  buildIndices(h1: ArrayLike<number>, h2: ArrayLike<number>, n: number, m: number, out?: Uint32Array): Uint32Array {
    if (n < 1) throw new KbpError('KBP_ERR_INTERNAL', 'Maglev table without members');
    if (!isPrime(m)) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table size ${m} is not prime`);
    if (n > m) throw new KbpError('KBP_ERR_INTERNAL', `Maglev table of ${m} slots cannot hold ${n} members`);
    const table = out ?? new Uint32Array(m);
    if (table.length !== m) throw new KbpError('KBP_ERR_INTERNAL', `Maglev output has ${table.length} slots, want ${m}`);
    if (n === 1) return table.fill(0);
    if (this.#cur.length < n) {
      this.#cur = new Uint32Array(n * 2);
      this.#skip = new Uint32Array(n * 2);
    }
    const cur = this.#cur, skip = this.#skip;
    for (let i = 0; i < n; i++) {
      cur[i] = h1[i]! % m;
      skip[i] = (h2[i]! % (m - 1)) + 1;
    }
    // filled through a signed view with -1 for empty: a Uint32Array element of 0xffffffff is not a
    // small integer to V8, so each probe's comparison took the slow path (4x the fill, issue 10)
    const t = new Int32Array(table.buffer, table.byteOffset, m);
    t.fill(-1);
    // Each member's permutation is offset, offset+skip, offset+2 skip, ... (mod m); m prime makes
    // it visit every slot, so the inner search always ends. cur[i] is the member's next candidate.
    let filled = 0;
    for (;;) {
      for (let i = 0; i < n; i++) {
        let c = cur[i]!;
        const s = skip[i]!;
        while (t[c] !== -1) {
          c += s;
          if (c >= m) c -= m;
        }
        t[c] = i;
        c += s;
        cur[i] = c >= m ? c - m : c;
        if (++filled === m) return table;
      }
    }
  }
}

const shared = new MaglevBuilder();

export interface MaglevMember {
  address: string;
  port: number;
  /** written into the table's slots */
  id: number;
}

/**
 * The table for a set of members, as slot -> member id. Order of `members` does not matter: they are
 * sorted canonically first. m defaults to maglevSize(members.length).
 */
export function buildMaglevTable(members: readonly MaglevMember[], seed: number, m = maglevSize(members.length)): Uint32Array {
  const sorted = [...members].sort(compareBackends);
  let prev: MaglevMember | undefined;
  for (const cur of sorted) {
    if (prev && compareBackends(prev, cur) === 0) throw new KbpError('KBP_ERR_INTERNAL', `Maglev member ${maglevIdentity(cur)} appears twice`);
    prev = cur;
  }
  return maglevSlots(shared, sorted, seed, m);
}

/** The table of m slots over members already in canonical order, as slot -> member id. */
export function maglevSlots(builder: MaglevBuilder, members: readonly MaglevMember[], seed: number, m: number): Uint32Array {
  const n = members.length;
  const h1 = new Uint32Array(n), h2 = new Uint32Array(n);
  members.forEach((mb, j) => ([h1[j], h2[j]] = maglevHashes(maglevIdentity(mb), seed)));
  const slots = builder.buildIndices(h1, h2, n, m);
  for (let j = 0; j < m; j++) slots[j] = members[slots[j]!]!.id;
  return slots;
}
