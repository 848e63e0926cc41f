// TypeScript mirror of bpf/lb_structs.h and bpf/lb_consts.h: sizes, field offsets, codecs between
// Buffers and objects, and the constants. test/unit/btf-layout.test.ts checks every struct here
// against the compiled object's BTF and every constant against the header, so an edit of the C side
// without this file fails the unit tests.
//
// Byte order (lb_structs.h): addresses are 16 bytes (IPv4-mapped for IPv4, src/util/ip.ts), ports are
// network order, ids and everything else are host order (little-endian on every target we build for).
import { ipFrom16, ipTo16, strictV4 } from '../../util/ip.js';
import type { FrontendType, Protocol, Scope } from '../../model/compiled.js';
import { KbpError } from '../../util/errors.js';

// ---- constants (bpf/lb_consts.h) --------------------------------------------------------------
export const LB_FRONTENDS_MAX = 131072;
export const LB_SLOTS_MAX = 2097152;
export const LB_MAGLEV_SLOTS_MAX = 16776192;
export const LB_CT_MAX = 524288;
export const LB_CT_SYN_MAX = 65536;
export const LB_MEMBERS_MAX = 2097152;
export const LB_AFFINITY_MAX = 131072;
export const LB_SRC_RANGES_MAX = 65536;
export const LB_SOCK_REVNAT_MAX = 262144;
/** lb_sock_slots: a TCP socket's translation in slot cookie % this, from its connect() to its release (lb_sock.h) */
export const LB_SOCK_SLOTS_MAX = 32768;
export const LB_DEVICES_MAX = 1024;
export const LB_NODE_ADDRS_MAX = 1024;
export const LB_EIP_ALLOW_MAX = 1024;
export const LB_FRAGS_MAX = 8192;
export const LB_FE_FILTER_BITS_LOG2 = 20;
export const LB_FE_FILTER_WORDS = 1 << (LB_FE_FILTER_BITS_LOG2 - 6);
export const LB_REV_FILTER_WORDS = LB_FE_FILTER_WORDS;
/** lb_ct_filter: u64 words of each half (2^20 bits), the halves interleaved as lb_rev_filter's */
export const LB_CT_FILTER_WORDS = 16384;

// the limits the plan also needs: one copy, in src/plan/limits.ts (checked against lb_consts.h too)
import { LB_MAGLEV_IDS_PER_ELEM } from '../../plan/limits.js';
export { LB_BACKENDS_MAX, LB_FE_ID_MAX, LB_MAGLEV_IDS_PER_ELEM, LB_MAGLEV_M_MAX, LB_MAGLEV_M_MIN } from '../../plan/limits.js';

export const LB_SCOPE_EXTERNAL = 0;
export const LB_SCOPE_INTERNAL = 1;

export const LB_FE_TYPE_CLUSTER_IP = 1;
export const LB_FE_TYPE_NODE_PORT = 2;
export const LB_FE_TYPE_LOAD_BALANCER = 3;
export const LB_FE_TYPE_EXTERNAL_IP = 4;

export const LB_FE_F_AFFINITY = 1 << 0;
export const LB_FE_F_SOURCE_RANGES = 1 << 1;
export const LB_FE_F_SNAT_REMOTE = 1 << 2;
export const LB_FE_F_DROP_NO_LOCAL = 1 << 3;
export const LB_FE_F_MASQ_ALL = 1 << 4;
export const LB_FE_F_MASQ_OFF_CLUSTER = 1 << 5;
/** lb_fe_slot.flags: lb_frontends holds the entry's address, port and protocol in the other scope too */
export const LB_FE_SLOT_F_TWIN = 1 << 0;

export const LB_BE_F_TERMINATING = 1 << 0;
export const LB_BE_F_LOCAL = 1 << 1;

export const LB_CT_DIR_FWD = 0;
export const LB_CT_DIR_REV = 1;

export const LB_CT_F_SNAT = 1 << 0;
export const LB_CT_F_REV_AT_INGRESS = 1 << 1;
export const LB_CT_F_CLOSING = 1 << 2;
export const LB_CT_F_HAIRPIN = 1 << 3;
/** a deleted frontend's flow: the entry holds its translation, ids 0 (lb_orphan.h, ct-orphan.ts) */
export const LB_CT_F_ORPHAN = 1 << 4;
/** handshake not complete: a SYN over a closed flow's entries wrote them into lb_ct; lives
 * LB_CT_TIMEOUT_TCP_SYN until the client's first packet that is no SYN clears it (lb_svc.h) */
export const LB_CT_F_SYN = 1 << 5;

/** conntrack lifetimes in seconds without a packet (lb_consts.h); the agent's sweep applies them too */
export const LB_CT_TIMEOUT_TCP = 21600;
export const LB_CT_TIMEOUT_TCP_SYN = 60;
export const LB_CT_TIMEOUT_CLOSING = 120;
export const LB_CT_TIMEOUT_UDP = 60;
export const LB_CT_REFRESH_NS = 1000000000;

/** refusals (RST, ICMP unreachable) per CPU: token bucket rate per second and burst */
export const LB_REJECT_RATE = 1000;
export const LB_REJECT_BURST = 100;

export const LB_DEV_F_EXTERNAL = 1 << 0;
export const LB_DEV_F_LOCAL_SRC = 1 << 1;
export const LB_CFG_F_SOCK_LB = 1 << 0;
export const LB_CFG_F_HOST_REROUTE = 1 << 1;
export const LB_SNAT_MARK_DEFAULT = 0x4b500000;

/** enum lb_stat, in enum order: LB_STATS[i] is the counter at index i of lb_stats (LB_STAT_ prefix dropped, lower case). */
export const LB_STATS = [
  'unspec', 'fwd_new', 'fwd_ct_hit', 'rev_nat', 'reject_no_backend', 'drop_source_range',
  'drop_backend_id_zero', 'drop_backend_missing', 'drop_table_missing', 'drop_fe_id_zero',
  'drop_revnat_missing', 'pass_malformed', 'pass_fragment', 'ct_backend_gone', 'reset_backend_gone',
  'affinity_hit', 'affinity_expired', 'ct_full', 'xdp_to_tc', 'drop_csum', 'sock_connect', 'sock_reject',
  'ct_expired', 'ct_rev_restored', 'drop_ct_clash', 'sock_skip_src_range', 'sock_skip_ext_ip', 'sock_revnat_stale',
  'drop_no_local',
  'frag_xlate', 'drop_reject_limit', 'icmp_xlate',
  'host_reroute', 'drop_host_no_route',
  'ct_insert', 'ct_delete', 'ct_syn_insert', 'ct_syn_delete', 'frag_insert', 'host_no_snat',
  'ct_orphan',
] as const;
export type LbStatName = (typeof LB_STATS)[number];
export const LB_STAT_MAX = LB_STATS.length;

/** Every map of bpf/lb_maps.h, pinned by these names under the pin root. */
export const MAP_NAMES = [
  'lb_frontends', 'lb_backends', 'lb_slots', 'lb_maglev_slots', 'lb_revnat', 'lb_ct', 'lb_affinity',
  'lb_src_ranges', 'lb_stats', 'lb_fe_stats', 'lb_sock_revnat', 'lb_config', 'lb_devices', 'lb_node_addrs',
  'lb_members', 'lb_ct_syn', 'lb_sock_eip_ok',
  'lb_frags', 'lb_reject_rl', 'lb_fe_filter',
] as const;
export type MapName = (typeof MAP_NAMES)[number];
/**
 * Maps of bpf/lb_maps.h outside the BpfMaps handle, reached through the loaded object where it has
 * them: the programs write them, the agent only switches and rebuilds them (dataplane.ts) or never
 * reads them (lb_sock_store: socket-local storage, read by the socket hooks and lb_sock_term;
 * lb_scratch: tc's per-CPU scratch, not pinned), or write them beside a map of the handle (lb_fe_ids,
 * lb_frontends' entries by id: the writer's, MapWriter.feIds), and an object of an earlier build (KBP_CONNRATE_B,
 * --bpf-object) lacks them.
 */
export const EXTRA_MAP_NAMES = ['lb_rev_filter', 'lb_ct_filter', 'lb_sock_store', 'lb_sock_slots', 'lb_sock_slotbit', 'lb_scratch', 'lb_fe_ids'] as const;
export type ObjectMapName = MapName | (typeof EXTRA_MAP_NAMES)[number];

const C1 = 0x85ebca6b | 0, C2 = 0x9e3779b1 | 0;
/** the address's part of both filter bits (lb_fe_filter_bit's first steps): its four little-endian words mixed */
function filterAddrHash(key: Buffer, off: number): number {
  let h = Math.imul(key.readUInt32LE(off) ^ key.readUInt32LE(off + 4) ^ key.readUInt32LE(off + 8), C1);
  h = Math.imul(h ^ key.readUInt32LE(off + 12), C2);
  return h ^ (h >>> 15);
}

/**
 * The lb_fe_filter bit of a frontend key (lb_hash.h lb_fe_filter_bit(), which computes it from the
 * packet's destination the same way): the word a hash of the address (four little-endian words) and
 * the port's group of 32 (port >> 5), the bit the port's place in that group and the protocol's low
 * bit (TCP 0, UDP 1), XORed with 6 other bits of the hash. Scope is not part of it: one bit covers
 * both scopes.
 */
export function feFilterBit(key: Buffer, off = 0): number {
  const port = key.readUInt16BE(off + 16);
  let h = Math.imul(filterAddrHash(key, off) ^ (port >>> 5), C1);
  h ^= h >>> 16;
  h = Math.imul(h, C2);
  return (((h >>> (32 - LB_FE_FILTER_BITS_LOG2 + 6)) << 6) | ((((port & 31) << 1) | (key[off + 18]! & 1)) ^ ((h >>> 12) & 63))) >>> 0;
}

/**
 * The bit builds before session 12 read (a hash of the whole tuple): the writer sets it beside
 * feFilterBit()'s, so an older object driven by this agent (--bpf-object, the A/B benches' base
 * objects, an upgrade test's old build) still finds every frontend and reply; ~1 % more false
 * positives at 10,000 Services for this build's programs. Drop it when such objects no longer matter.
 */
export function feFilterBitLegacy(key: Buffer, off = 0): number {
  let h = Math.imul(filterAddrHash(key, off) ^ ((key.readUInt16LE(off + 16) << 16) | key[off + 18]!), C1);
  h ^= h >>> 16;
  h = Math.imul(h, C2);
  return h >>> (32 - LB_FE_FILTER_BITS_LOG2);
}

const FILTER_BITS = 2 ** LB_FE_FILTER_BITS_LOG2;
/** a key's two filter bits (feFilterBit's, feFilterBitLegacy's) as one number, what the writer keeps per key */
export function feFilterBitPair(key: Buffer, off = 0): number {
  return feFilterBit(key, off) * FILTER_BITS + feFilterBitLegacy(key, off);
}
/** the two bits of a feFilterBitPair(): this build's, then older builds' */
export function filterBitHigh(pair: number): number {
  return Math.floor(pair / FILTER_BITS);
}
export function filterBitLow(pair: number): number {
  return pair % FILTER_BITS;
}
export function filterBitsOf(pair: number): [number, number] {
  return [filterBitHigh(pair), filterBitLow(pair)];
}

/** the lb_rev_filter element of a bit's word in half 1 or 2 (lb_ct.h lb_filter_key: the halves interleaved) */
export function revFilterElem(bit: number, half: 1 | 2): number {
  return 1 + 2 * (bit >>> 6) + (half - 1);
}

const revScratch = Buffer.alloc(19);
/** revScratch holds an lb_ct key's source address, source port and protocol (a reverse entry's backend) */
function revScratchOf(ctKey: Buffer): void {
  const f = CT_KEY.fields;
  ctKey.copy(revScratch, 0, f.saddr.offset, f.saddr.offset + 16);
  ctKey.copy(revScratch, 16, f.sport.offset, f.sport.offset + 2);
  revScratch[18] = ctKey[f.proto.offset]!;
}
/**
 * The lb_rev_filter bit of an lb_ct key (lb_hash.h lb_rev_filter_bit()): feFilterBit() of its source
 * address (the backend of a reverse entry) with its destination address (the client) mixed into the
 * last word, source port and protocol.
 */
export function revFilterBit(ctKey: Buffer): number {
  revScratchOf(ctKey);
  const w3 = revScratch.readUInt32LE(12) ^ filterAddrHash(ctKey, CT_KEY.fields.daddr.offset);
  revScratch.writeUInt32LE(w3 >>> 0, 12);
  return feFilterBit(revScratch);
}
/**
 * revFilterBit() and the bits older builds read: feFilterBit() of the source alone (builds of
 * sessions 12-15), feFilterBitLegacy() (before): what a rebuild sets, so that an older object driven
 * by this agent (the A/B benches' base objects, --bpf-object) still finds every reply.
 */
export function revFilterBits(ctKey: Buffer): [number, number, number] {
  const bit = revFilterBit(ctKey);
  revScratchOf(ctKey);
  return [bit, feFilterBit(revScratch), feFilterBitLegacy(revScratch)];
}

/**
 * The lb_ct_filter bit of an lb_ct key (lb_ct.h lb_ct_filter_bit()): the word a hash of the client's
 * address (its little-endian words as loaded), the client port's group of 32 and the protocol; the
 * bit the client port's place in the group and the direction, XORed with 6 bits of a hash of the
 * other end's address and port. The client: a forward key's source, a reverse key's destination.
 */
export function ctFilterBit(ctKey: Buffer, off = 0): number {
  const f = CT_KEY.fields;
  const s = filterAddrHash(ctKey, off + f.saddr.offset), d = filterAddrHash(ctKey, off + f.daddr.offset);
  const sport = ctKey.readUInt16BE(off + f.sport.offset), dport = ctKey.readUInt16BE(off + f.dport.offset);
  const proto = ctKey[off + f.proto.offset]!, dir = ctKey[off + f.dir.offset]!;
  const fwd = dir === LB_CT_DIR_FWD;
  const [client, other, cport, oport] = fwd ? [s, d, sport, dport] : [d, s, dport, sport];
  let h = Math.imul(client ^ ((cport >>> 5) << 8) ^ proto, C1);
  h ^= h >>> 16;
  h = Math.imul(h, C2);
  let o = Math.imul(other ^ oport, C1);
  o ^= o >>> 15;
  o = Math.imul(o, C2);
  return (((h >>> 18) << 6) | ((((cport & 31) << 1) | (dir & 1)) ^ (o >>> 26))) >>> 0;
}

// ---- enum translations --------------------------------------------------------------------------
const PROTO_NUM: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };
const SCOPE_NUM: Record<Scope, number> = { external: LB_SCOPE_EXTERNAL, internal: LB_SCOPE_INTERNAL };
const TYPE_NUM: Record<FrontendType, number> = {
  ClusterIP: LB_FE_TYPE_CLUSTER_IP, NodePort: LB_FE_TYPE_NODE_PORT,
  LoadBalancer: LB_FE_TYPE_LOAD_BALANCER, ExternalIP: LB_FE_TYPE_EXTERNAL_IP,
};

function invert<K extends string>(r: Record<K, number>): Map<number, K> {
  return new Map(Object.entries(r).map(([k, v]) => [v as number, k as K]));
}
const PROTO_NAME = invert(PROTO_NUM);
const SCOPE_NAME = invert(SCOPE_NUM);
const TYPE_NAME = invert(TYPE_NUM);

function decodeErr(what: string, value: number): KbpError {
  return new KbpError('KBP_ERR_DATAPLANE', `unknown ${what} ${value} in a BPF map entry`);
}

export function protoNum(p: Protocol): number {
  const n = PROTO_NUM[p];
  if (n === undefined) throw new KbpError('KBP_ERR_INTERNAL', `unknown protocol ${JSON.stringify(p)}`);
  return n;
}
export function protoName(n: number): Protocol {
  const p = PROTO_NAME.get(n);
  if (!p) throw decodeErr('IP protocol', n);
  return p;
}
export function scopeNum(s: Scope): number {
  const n = SCOPE_NUM[s];
  if (n === undefined) throw new KbpError('KBP_ERR_INTERNAL', `unknown scope ${JSON.stringify(s)}`);
  return n;
}
export function scopeName(n: number): Scope {
  const s = SCOPE_NAME.get(n);
  if (!s) throw decodeErr('frontend scope', n);
  return s;
}
export function feTypeNum(t: FrontendType): number {
  const n = TYPE_NUM[t];
  if (n === undefined) throw new KbpError('KBP_ERR_INTERNAL', `unknown frontend type ${JSON.stringify(t)}`);
  return n;
}
export function feTypeName(n: number): FrontendType {
  const t = TYPE_NAME.get(n);
  if (!t) throw decodeErr('frontend type', n);
  return t;
}

// ---- struct layouts -----------------------------------------------------------------------------
/** How a field is stored: its C type as BTF names it, which the layout test compares. */
export type FieldKind = 'u8' | 'u16' | 'u32' | 'u64' | 'be16' | 'addr' | 'u32[2]' | 'struct lb_fe_key' | 'struct lb_frontend';
export interface FieldLayout { offset: number; size: number; kind: FieldKind }
export interface StructLayout<F extends string = string> {
  /** the C struct name */
  name: string;
  size: number;
  fields: Record<F, FieldLayout>;
}

const KIND_SIZE: Record<FieldKind, number> = { u8: 1, u16: 2, u32: 4, u64: 8, be16: 2, addr: 16, 'u32[2]': 8, 'struct lb_fe_key': 20, 'struct lb_frontend': 24 };

function struct<F extends string>(name: string, size: number, fields: Record<F, [number, FieldKind]>): StructLayout<F> {
  const out = {} as Record<F, FieldLayout>;
  for (const [f, [offset, kind]] of Object.entries(fields) as Array<[F, [number, FieldKind]]>) {
    out[f] = { offset, size: KIND_SIZE[kind], kind };
  }
  return { name, size, fields: out };
}

export const FE_KEY = struct('lb_fe_key', 20, { addr: [0, 'addr'], port: [16, 'be16'], proto: [18, 'u8'], scope: [19, 'u8'] });
export const FRONTEND = struct('lb_frontend', 24, {
  fe_id: [0, 'u32'], maglev_off: [4, 'u32'], maglev_m: [8, 'u32'], backend_count: [12, 'u16'],
  type: [14, 'u8'], flags: [15, 'u8'], affinity_timeout: [16, 'u32'], affinity_group: [20, 'u32'],
});
/** lb_fe_ids value: an lb_frontends entry, key then value, at its fe_id */
export const FE_SLOT = struct('lb_fe_slot', 48, { key: [0, 'struct lb_fe_key'], fe: [20, 'struct lb_frontend'], flags: [44, 'u32'] });
export const BACKEND = struct('lb_backend', 20, { addr: [0, 'addr'], port: [16, 'be16'], proto: [18, 'u8'], flags: [19, 'u8'] });
export const SLOT_KEY = struct('lb_slot_key', 8, { fe_id: [0, 'u32'], slot: [4, 'u32'] });
export const MEMBER_KEY = struct('lb_member_key', 8, { fe_id: [0, 'u32'], backend_id: [4, 'u32'] });
export const MAGLEV_ELEM = struct('lb_maglev_elem', 8, { backend_id: [0, 'u32[2]'] });
export const REVNAT = struct('lb_revnat', 20, { addr: [0, 'addr'], port: [16, 'be16'], pad: [18, 'u16'] });
export const CT_KEY = struct('lb_ct_key', 40, {
  saddr: [0, 'addr'], daddr: [16, 'addr'], sport: [32, 'be16'], dport: [34, 'be16'], proto: [36, 'u8'], dir: [37, 'u8'], pad: [38, 'u16'],
});
export const CT_ENTRY = struct('lb_ct_entry', 40, {
  last_seen: [0, 'u64'], backend_id: [8, 'u32'], fe_id: [12, 'u32'], flags: [16, 'u16'], orphan_port: [18, 'be16'], fe_port: [20, 'be16'], pad2: [22, 'u16'], fe_addr: [24, 'addr'],
});
export const AFFINITY_KEY = struct('lb_affinity_key', 20, { client: [0, 'addr'], fe_id: [16, 'u32'] });
export const AFFINITY_VAL = struct('lb_affinity_val', 16, { last_used: [0, 'u64'], backend_id: [8, 'u32'], pad: [12, 'u32'] });
export const SRC_RANGE_KEY = struct('lb_src_range_key', 24, { prefixlen: [0, 'u32'], fe_id: [4, 'u32'], addr: [8, 'addr'] });
export const FE_STATS = struct('lb_fe_stats', 16, { packets: [0, 'u64'], bytes: [8, 'u64'] });
export const SOCK_REVNAT_KEY = struct('lb_sock_revnat_key', 32, { cookie: [0, 'u64'], addr: [8, 'addr'], port: [24, 'be16'], pad: [26, 'u16'], pad2: [28, 'u32'] });
export const SOCK_REVNAT_VAL = struct('lb_sock_revnat_val', 28, { addr: [0, 'addr'], port: [16, 'be16'], pad: [18, 'u16'], fe_id: [20, 'u32'], backend_id: [24, 'u32'] });
export const SOCK_PEER = struct('lb_sock_peer', 48, {
  addr: [0, 'addr'], port: [16, 'be16'], pad: [18, 'u16'], fe_addr: [20, 'addr'], fe_port: [36, 'be16'], pad2: [38, 'u16'], fe_id: [40, 'u32'], backend_id: [44, 'u32'],
});
export const SOCK_SLOT = struct('lb_sock_slot', 64, {
  cookie: [0, 'u64'], addr: [8, 'addr'], port: [24, 'be16'], pad: [26, 'u16'], fe_addr: [28, 'addr'], fe_port: [44, 'be16'], pad2: [46, 'u16'], fe_id: [48, 'u32'], backend_id: [52, 'u32'], pad3: [56, 'u64'],
});
export const EIP_ALLOW_KEY = struct('lb_eip_allow_key', 20, { prefixlen: [0, 'u32'], addr: [4, 'addr'] });
export const CONFIG = struct('lb_config', 16, { hash_seed: [0, 'u32'], snat_mark: [4, 'u32'], flags: [8, 'u32'], pad: [12, 'u32'] });
export const DEVICE = struct('lb_device', 4, { flags: [0, 'u32'] });
export const NODE_ADDR = struct('lb_node_addr', 16, { addr: [0, 'addr'] });
export const FRAG_KEY = struct('lb_frag_key', 40, { saddr: [0, 'addr'], daddr: [16, 'addr'], id: [32, 'u32'], proto: [36, 'u8'], pad: [37, 'u8'], pad2: [38, 'u16'] });
export const FRAG_VAL = struct('lb_frag_val', 4, { sport: [0, 'be16'], dport: [2, 'be16'] });
export const RATE_LIMIT = struct('lb_rate_limit', 16, { last_ns: [0, 'u64'], tokens: [8, 'u64'] });

/** Every struct of lb_structs.h, for the layout test. */
export const STRUCTS: StructLayout[] = [
  FE_KEY, FRONTEND, FE_SLOT, BACKEND, SLOT_KEY, MEMBER_KEY, MAGLEV_ELEM, REVNAT, CT_KEY, CT_ENTRY, AFFINITY_KEY,
  AFFINITY_VAL, SRC_RANGE_KEY, FE_STATS, SOCK_REVNAT_KEY, SOCK_REVNAT_VAL, SOCK_PEER, SOCK_SLOT, CONFIG, DEVICE, NODE_ADDR,
  EIP_ALLOW_KEY,
  FRAG_KEY, FRAG_VAL, RATE_LIMIT,
];

// ---- codecs -------------------------------------------------------------------------------------
// encodeX(value, buf?, off?) writes into buf at off (so a batch is one Buffer) and returns buf;
// decodeX(buf, off?) reads one struct. Padding is always written as zero: hash keys compare bytes.

function alloc(buf: Buffer | undefined, off: number, size: number, name: string): Buffer {
  if (!buf) return Buffer.alloc(off + size);
  if (off < 0 || off + size > buf.length) throw new KbpError('KBP_ERR_INTERNAL', `${name}: buffer of ${buf.length} bytes has no room for ${size} bytes at offset ${off}`);
  buf.fill(0, off, off + size);
  return buf;
}

// Addresses are the bulk of a full sync's encoding work (100,000+ per sync), so dotted-quad IPv4 is
// parsed and printed here without intermediate arrays; everything else goes through util/ip.ts.
function writeAddr(buf: Buffer, off: number, address: string): void {
  const v4 = strictV4(address);
  if (v4 < 0) {
    buf.set(ipTo16(address), off);
    return;
  }
  writeV4Mapped(buf, off, v4);
}

/** a dotted quad's value (strictV4's) as its v4-mapped IPv6 address, byte by byte: no checked write */
function writeV4Mapped(buf: Buffer, off: number, v4: number): void {
  for (let i = 0; i < 10; i++) buf[off + i] = 0;
  buf[off + 10] = 0xff;
  buf[off + 11] = 0xff;
  buf[off + 12] = v4 >>> 24;
  buf[off + 13] = (v4 >>> 16) & 0xff;
  buf[off + 14] = (v4 >>> 8) & 0xff;
  buf[off + 15] = v4 & 0xff;
}

function readAddr(buf: Buffer, off: number): string {
  let mapped = buf[off + 10] === 0xff && buf[off + 11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) if (buf[off + i] !== 0) mapped = false;
  if (mapped) return `${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
  return ipFrom16(buf.subarray(off, off + 16));
}

export interface FeKey { address: string; port: number; protocol: Protocol; scope: Scope }
export function encodeFeKey(k: FeKey, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, FE_KEY.size, FE_KEY.name);
  writeAddr(b, off, k.address);
  b.writeUInt16BE(k.port, off + 16);
  b.writeUInt8(protoNum(k.protocol), off + 18);
  b.writeUInt8(scopeNum(k.scope), off + 19);
  return b;
}
export function decodeFeKey(b: Buffer, off = 0): FeKey {
  return { address: readAddr(b, off), port: b.readUInt16BE(off + 16), protocol: protoName(b.readUInt8(off + 18)), scope: scopeName(b.readUInt8(off + 19)) };
}

export interface FrontendValue {
  /** maglevOff: the table's first slot in lb_maglev_slots; maglevM 0: no table */
  feId: number; maglevOff: number; maglevM: number; backendCount: number;
  type: FrontendType; flags: number; affinityTimeout: number;
  /** lb_affinity's fe_id for this frontend (its Service port's group); 0 = its own fe_id */
  affinityGroup: number;
}
export function encodeFrontend(v: FrontendValue, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, FRONTEND.size, FRONTEND.name);
  b.writeUInt32LE(v.feId, off);
  b.writeUInt32LE(v.maglevOff, off + 4);
  b.writeUInt32LE(v.maglevM, off + 8);
  b.writeUInt16LE(v.backendCount, off + 12);
  b.writeUInt8(feTypeNum(v.type), off + 14);
  b.writeUInt8(v.flags, off + 15);
  b.writeUInt32LE(v.affinityTimeout, off + 16);
  b.writeUInt32LE(v.affinityGroup, off + 20);
  return b;
}
export function decodeFrontend(b: Buffer, off = 0): FrontendValue {
  return {
    feId: b.readUInt32LE(off), maglevOff: b.readUInt32LE(off + 4), maglevM: b.readUInt32LE(off + 8),
    backendCount: b.readUInt16LE(off + 12), type: feTypeName(b.readUInt8(off + 14)), flags: b.readUInt8(off + 15),
    affinityTimeout: b.readUInt32LE(off + 16), affinityGroup: b.readUInt32LE(off + 20),
  };
}

export interface BackendValue { address: string; port: number; protocol: Protocol; flags: number }
export function encodeBackend(v: BackendValue, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, BACKEND.size, BACKEND.name);
  writeAddr(b, off, v.address);
  b.writeUInt16BE(v.port, off + 16);
  b.writeUInt8(protoNum(v.protocol), off + 18);
  b.writeUInt8(v.flags, off + 19);
  return b;
}
/**
 * encodeBackend's bytes for a dotted quad's value (a u32, as strictV4 gives it), a port known to be
 * an integer in 0..65535 and a protocol number, into buf at off (which must hold BACKEND.size): no
 * value object and no checked writes (a first sync writes ~100,000 backends).
 */
export function encodeBackendV4(v4: number, port: number, proto: number, flags: number, buf: Buffer, off: number): void {
  writeV4Mapped(buf, off, v4);
  buf[off + 16] = port >>> 8;
  buf[off + 17] = port & 0xff;
  buf[off + 18] = proto;
  buf[off + 19] = flags;
}
export function decodeBackend(b: Buffer, off = 0): BackendValue {
  return { address: readAddr(b, off), port: b.readUInt16BE(off + 16), protocol: protoName(b.readUInt8(off + 18)), flags: b.readUInt8(off + 19) };
}

/** A __u32 key or value (backend id, fe_id, table id, ifindex, stat index). */
export function encodeU32(v: number, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, 4, 'u32');
  b.writeUInt32LE(v, off);
  return b;
}
export function decodeU32(b: Buffer, off = 0): number {
  return b.readUInt32LE(off);
}

export interface MemberKey { feId: number; backendId: number }
export function encodeMemberKey(k: MemberKey, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, MEMBER_KEY.size, MEMBER_KEY.name);
  b.writeUInt32LE(k.feId, off);
  b.writeUInt32LE(k.backendId, off + 4);
  return b;
}
export function decodeMemberKey(b: Buffer, off = 0): MemberKey {
  return { feId: b.readUInt32LE(off), backendId: b.readUInt32LE(off + 4) };
}

export interface SlotKey { feId: number; slot: number }
export function encodeSlotKey(k: SlotKey, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, SLOT_KEY.size, SLOT_KEY.name);
  b.writeUInt32LE(k.feId, off);
  b.writeUInt32LE(k.slot, off + 4);
  return b;
}
export function decodeSlotKey(b: Buffer, off = 0): SlotKey {
  return { feId: b.readUInt32LE(off), slot: b.readUInt32LE(off + 4) };
}

/** Elements of lb_maglev_slots an M-slot region takes: slot i is in element i / 2, position i % 2. */
export function maglevElems(m: number): number {
  return Math.ceil(m / LB_MAGLEV_IDS_PER_ELEM);
}
/**
 * The values of a Maglev region, one u32 backend id per slot (the odd tail slot stays 0, which the
 * kernel never reads because it indexes with hash % M).
 */
export function encodeMaglevTable(slots: Uint32Array | number[]): Buffer {
  const b = Buffer.allocUnsafe(maglevElems(slots.length) * MAGLEV_ELEM.size);
  encodeMaglevTableInto(slots, b, 0);
  return b;
}

/** encodeMaglevTable into out at offset (the padding of the last element zeroed); returns the bytes written */
export function encodeMaglevTableInto(slots: Uint32Array | number[], out: Buffer, offset: number): number {
  const len = maglevElems(slots.length) * MAGLEV_ELEM.size;
  if (slots instanceof Uint32Array && LITTLE_ENDIAN) {
    out.set(new Uint8Array(slots.buffer, slots.byteOffset, slots.length * 4), offset);
  } else {
    slots.forEach((id, i) => out.writeUInt32LE(id, offset + i * 4));
  }
  out.fill(0, offset + slots.length * 4, offset + len);
  return len;
}
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

const arrayKeys = new Map<number, Buffer>();
/** The keys 0..n-1 of an array map, packed for a batch update (cached: tables share a few sizes). */
export function encodeArrayKeys(n: number): Buffer {
  let b = arrayKeys.get(n);
  if (!b) {
    b = Buffer.alloc(n * 4);
    for (let i = 0; i < n; i++) b.writeUInt32LE(i, i * 4);
    if (arrayKeys.size < 256) arrayKeys.set(n, b);
  }
  return b;
}
export function decodeMaglevTable(values: Buffer, m: number): Uint32Array {
  const out = new Uint32Array(m);
  for (let i = 0; i < m; i++) out[i] = values.readUInt32LE(i * 4);
  return out;
}

export interface RevNat { address: string; port: number }
export function encodeRevNat(v: RevNat, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, REVNAT.size, REVNAT.name);
  writeAddr(b, off, v.address);
  b.writeUInt16BE(v.port, off + 16);
  return b;
}
export function decodeRevNat(b: Buffer, off = 0): RevNat {
  return { address: readAddr(b, off), port: b.readUInt16BE(off + 16) };
}

export interface CtKey { saddr: string; daddr: string; sport: number; dport: number; protocol: Protocol; dir: number }
export function encodeCtKey(k: CtKey, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, CT_KEY.size, CT_KEY.name);
  writeAddr(b, off, k.saddr);
  writeAddr(b, off + 16, k.daddr);
  b.writeUInt16BE(k.sport, off + 32);
  b.writeUInt16BE(k.dport, off + 34);
  b.writeUInt8(protoNum(k.protocol), off + 36);
  b.writeUInt8(k.dir, off + 37);
  return b;
}
export function decodeCtKey(b: Buffer, off = 0): CtKey {
  return {
    saddr: readAddr(b, off), daddr: readAddr(b, off + 16), sport: b.readUInt16BE(off + 32), dport: b.readUInt16BE(off + 34),
    protocol: protoName(b.readUInt8(off + 36)), dir: b.readUInt8(off + 37),
  };
}

export interface CtEntry {
  lastSeen: bigint; backendId: number; feId: number; flags: number;
  /** the address the client sent to, replies leave from it (a NodePort on 0.0.0.0 / ::: the node
   * address); undefined: all zero, as in entries of an earlier build (lb_revnat's address then).
   * LB_CT_F_ORPHAN forward entry: the backend's address */
  feAddr?: string;
  /** LB_CT_F_ORPHAN only: the backend's port (forward entry), the frontend's (reverse); else 0 */
  orphanPort?: number;
  /** the port the client sent to, replies leave from it with feAddr (no lb_revnat lookup);
   * undefined: 0, as in entries of an earlier build (lb_revnat's address and port then) */
  fePort?: number;
}
export function encodeCtEntry(v: CtEntry, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, CT_ENTRY.size, CT_ENTRY.name);
  b.writeBigUInt64LE(v.lastSeen, off);
  b.writeUInt32LE(v.backendId, off + 8);
  b.writeUInt32LE(v.feId, off + 12);
  b.writeUInt16LE(v.flags, off + 16);
  b.writeUInt16BE(v.orphanPort ?? 0, off + 18);
  b.writeUInt16BE(v.fePort ?? 0, off + 20);
  if (v.feAddr !== undefined) writeAddr(b, off + 24, v.feAddr);
  return b;
}
export function decodeCtEntry(b: Buffer, off = 0): CtEntry {
  const e: CtEntry = { lastSeen: b.readBigUInt64LE(off), backendId: b.readUInt32LE(off + 8), feId: b.readUInt32LE(off + 12), flags: b.readUInt16LE(off + 16) };
  if (b.subarray(off + 24, off + 40).some((x) => x !== 0)) e.feAddr = readAddr(b, off + 24);
  const port = b.readUInt16BE(off + 18);
  if (port) e.orphanPort = port;
  const fePort = b.readUInt16BE(off + 20);
  if (fePort) e.fePort = fePort;
  return e;
}

const NS = 1_000_000_000n;
/** ns an entry lives without a packet, as lb_ct_lifetime() (lb_ct.h) computes it; lb_ct_syn and
 * LB_CT_F_SYN: TCP_SYN */
export function ctLifetimeNs(map: 'lb_ct' | 'lb_ct_syn', proto: number, flags: number): bigint {
  if (map === 'lb_ct_syn' || flags & LB_CT_F_SYN) return BigInt(LB_CT_TIMEOUT_TCP_SYN) * NS;
  if (flags & LB_CT_F_CLOSING) return BigInt(LB_CT_TIMEOUT_CLOSING) * NS;
  return BigInt(proto === 6 ? LB_CT_TIMEOUT_TCP : LB_CT_TIMEOUT_UDP) * NS;
}

export interface AffinityKey { client: string; feId: number }
export function encodeAffinityKey(k: AffinityKey, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, AFFINITY_KEY.size, AFFINITY_KEY.name);
  writeAddr(b, off, k.client);
  b.writeUInt32LE(k.feId, off + 16);
  return b;
}
export function decodeAffinityKey(b: Buffer, off = 0): AffinityKey {
  return { client: readAddr(b, off), feId: b.readUInt32LE(off + 16) };
}

export interface AffinityVal { lastUsed: bigint; backendId: number }
export function encodeAffinityVal(v: AffinityVal, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, AFFINITY_VAL.size, AFFINITY_VAL.name);
  b.writeBigUInt64LE(v.lastUsed, off);
  b.writeUInt32LE(v.backendId, off + 8);
  return b;
}
export function decodeAffinityVal(b: Buffer, off = 0): AffinityVal {
  return { lastUsed: b.readBigUInt64LE(off), backendId: b.readUInt32LE(off + 8) };
}

/**
 * An LPM key for one source range of a frontend. The trie matches fe_id exactly (its 32 bits count in
 * prefixlen) and then the address prefix; IPv4 prefixes count the 96 bits of the ::ffff: mapping.
 */
export interface SrcRangeKey { feId: number; cidr: string }
export function encodeSrcRangeKey(k: SrcRangeKey, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, SRC_RANGE_KEY.size, SRC_RANGE_KEY.name);
  const slash = k.cidr.indexOf('/');
  const addr = slash < 0 ? k.cidr : k.cidr.slice(0, slash);
  const bytes = ipTo16(addr);
  const v4 = !addr.includes(':');
  const max = v4 ? 32 : 128;
  const prefix = slash < 0 ? max : Number(k.cidr.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new KbpError('KBP_ERR_INTERNAL', `bad source range ${JSON.stringify(k.cidr)} for frontend ${k.feId}`);
  const bits = (v4 ? 96 : 0) + prefix;
  // host bits are zeroed so that the same network always makes the same key
  bytes.forEach((x, i) => {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] = x & ((0xff << (8 - keep)) & 0xff);
  });
  b.writeUInt32LE(32 + bits, off);
  b.writeUInt32LE(k.feId, off + 4);
  b.set(bytes, off + 8);
  return b;
}
export function decodeSrcRangeKey(b: Buffer, off = 0): SrcRangeKey {
  const prefixlen = b.readUInt32LE(off);
  const bytes = b.subarray(off + 8, off + 24);
  const address = ipFrom16(bytes);
  const v4 = !address.includes(':');
  // an IPv4-mapped prefix shorter than the mapping itself (< /96) cannot come from encodeSrcRangeKey
  const prefix = prefixlen - 32 - (v4 ? 96 : 0);
  return { feId: b.readUInt32LE(off + 4), cidr: `${address}/${prefix}` };
}

export interface FeStats { packets: bigint; bytes: bigint }
/** Sums a per-CPU lb_fe_stats value (one 16-byte copy per possible CPU). */
export function decodeFeStatsPerCpu(b: Buffer, cpus: number): FeStats {
  let packets = 0n, bytes = 0n;
  for (let c = 0; c < cpus; c++) {
    packets += b.readBigUInt64LE(c * FE_STATS.size);
    bytes += b.readBigUInt64LE(c * FE_STATS.size + 8);
  }
  return { packets, bytes };
}
/** Sums a per-CPU __u64 value. */
export function sumU64PerCpu(b: Buffer, cpus: number): bigint {
  let s = 0n;
  for (let c = 0; c < cpus; c++) s += b.readBigUInt64LE(c * 8);
  return s;
}

export interface SockRevNatKey { cookie: bigint; address: string; port: number }
export function encodeSockRevNatKey(k: SockRevNatKey, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, SOCK_REVNAT_KEY.size, SOCK_REVNAT_KEY.name);
  b.writeBigUInt64LE(k.cookie, off);
  writeAddr(b, off + 8, k.address);
  b.writeUInt16BE(k.port, off + 24);
  return b;
}
export function decodeSockRevNatKey(b: Buffer, off = 0): SockRevNatKey {
  return { cookie: b.readBigUInt64LE(off), address: readAddr(b, off + 8), port: b.readUInt16BE(off + 24) };
}

/** backendId: the backend the socket was given; 0 in entries of a build before the field (never believed) */
export interface SockRevNatVal { address: string; port: number; feId: number; backendId: number }
export function encodeSockRevNatVal(v: SockRevNatVal, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, SOCK_REVNAT_VAL.size, SOCK_REVNAT_VAL.name);
  writeAddr(b, off, v.address);
  b.writeUInt16BE(v.port, off + 16);
  b.writeUInt32LE(v.feId, off + 20);
  b.writeUInt32LE(v.backendId, off + 24);
  return b;
}
export function decodeSockRevNatVal(b: Buffer, off = 0): SockRevNatVal {
  return { address: readAddr(b, off), port: b.readUInt16BE(off + 16), feId: b.readUInt32LE(off + 20), backendId: b.readUInt32LE(off + 24) };
}

/** An LPM key of lb_sock_eip_ok: an externalIP prefix (IPv4 counts the 96 bits of the ::ffff: mapping). */
export function encodeEipAllowKey(cidr: string, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, EIP_ALLOW_KEY.size, EIP_ALLOW_KEY.name);
  const slash = cidr.indexOf('/');
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const bytes = ipTo16(addr);
  const v4 = !addr.includes(':');
  const max = v4 ? 32 : 128;
  const prefix = slash < 0 ? max : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new KbpError('KBP_ERR_INTERNAL', `bad externalIP allowlist prefix ${JSON.stringify(cidr)}`);
  const bits = (v4 ? 96 : 0) + prefix;
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  b.writeUInt32LE(bits, off);
  b.set(bytes, off + 4);
  return b;
}

export interface Config { hashSeed: number; snatMark: number; flags: number }
export function encodeConfig(v: Config, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, CONFIG.size, CONFIG.name);
  b.writeUInt32LE(v.hashSeed >>> 0, off);
  b.writeUInt32LE(v.snatMark >>> 0, off + 4);
  b.writeUInt32LE(v.flags >>> 0, off + 8);
  return b;
}
export function decodeConfig(b: Buffer, off = 0): Config {
  return { hashSeed: b.readUInt32LE(off), snatMark: b.readUInt32LE(off + 4), flags: b.readUInt32LE(off + 8) };
}

export interface Device { flags: number }
export function encodeNodeAddr(address: string, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, NODE_ADDR.size, NODE_ADDR.name);
  writeAddr(b, off, address);
  return b;
}

export function encodeDevice(v: Device, buf?: Buffer, off = 0): Buffer {
  const b = alloc(buf, off, DEVICE.size, DEVICE.name);
  b.writeUInt32LE(v.flags, off);
  return b;
}
export function decodeDevice(b: Buffer, off = 0): Device {
  return { flags: b.readUInt32LE(off) };
}
