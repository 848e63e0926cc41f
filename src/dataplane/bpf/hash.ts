// The flow hash of the tc and XDP programs (bpf/lb_hash.h), bit for bit: which Maglev slot, and so
// which backend, a packet gets. Used to predict the kernel's choice (tests, the packet walk, `dump`
// explanations). MurmurHash3 x86_32 over five big-endian 32-bit words: the client address in its
// 16-byte form (IPv4-mapped), then (client port << 16 | IP protocol number). The frontend address and
// port are not hashed: every frontend of a Service shares one table and must pick alike.
import { ipTo16 } from '../../util/ip.js';
import { KbpError } from '../../util/errors.js';

function rotl32(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = rotl32(k, 15);
  k = Math.imul(k, 0x1b873593);
  h = (h ^ k) >>> 0;
  h = rotl32(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

/**
 * lb_flow_hash(): client address (text or 16 bytes), client port (host order; 0 under ClientIP
 * session affinity), protocol number (6 TCP, 17 UDP), seed (lb_config.hash_seed).
 */
export function flowHash(client: string | Uint8Array, sport: number, proto: number, seed: number): number {
  const a = typeof client === 'string' ? ipTo16(client) : client;
  if (a.length !== 16) throw new KbpError('KBP_ERR_INTERNAL', `flowHash: client address must be 16 bytes, got ${a.length}`);
  if (!Number.isInteger(sport) || sport < 0 || sport > 0xffff) throw new KbpError('KBP_ERR_INTERNAL', `flowHash: port ${sport} is not 0..65535`);
  if (!Number.isInteger(proto) || proto < 0 || proto > 0xff) throw new KbpError('KBP_ERR_INTERNAL', `flowHash: protocol ${proto} is not 0..255`);
  let h = seed >>> 0;
  const words = new DataView(a.buffer, a.byteOffset, 16);
  for (let i = 0; i < 16; i += 4) h = mix(h, words.getUint32(i));
  h = mix(h, ((sport << 16) | proto) >>> 0);
  h = (h ^ 20) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The Maglev slot the kernel reads for a flow: hash % M. */
export function maglevSlot(hash: number, m: number): number {
  if (!Number.isInteger(m) || m <= 0) throw new KbpError('KBP_ERR_INTERNAL', `maglevSlot: table size ${m} is not a positive integer`);
  return (hash >>> 0) % m;
}

/** The backend id a flow lands on in a table (slot -> id), as lb_select() picks it without conntrack or affinity. */
export function pickBackend(table: Uint32Array | readonly number[], client: string | Uint8Array, sport: number, proto: number, seed: number): number {
  const id = table[maglevSlot(flowHash(client, sport, proto, seed), table.length)];
  if (id === undefined) throw new KbpError('KBP_ERR_INTERNAL', 'pickBackend: empty Maglev table');
  return id;
}
