/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Hashes: the flow hash that picks a Maglev slot in tc and XDP, and the socket hooks' hash. */
/* The flow hash is mirrored bit for bit by src/dataplane/bpf/hash.ts, so that tc, XDP (and every
 * node, as the seed is shared) send a flow to the same backend. MurmurHash3 x86_32 over five
 * big-endian words: the client address (16 bytes, IPv4-mapped), then (client port << 16 | protocol).
 * The frontend address and port are left out on purpose: a Service's ClusterIP, NodePorts and LB IPs
 * share one table and must agree. */
#ifndef KBP_LB_HASH_H
#define KBP_LB_HASH_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

static __always_inline __u32 lb_rotl32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 lb_murmur_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = lb_rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = lb_rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

/* addr: 16 bytes, 4-byte aligned; sport in network order; proto an IPPROTO_* */
static __always_inline __u32 lb_flow_hash(const __u32 *addr, __be16 sport, __u8 proto, __u32 seed)
{
	__u32 h = seed;

	h = lb_murmur_mix(h, bpf_ntohl(addr[0]));
	h = lb_murmur_mix(h, bpf_ntohl(addr[1]));
	h = lb_murmur_mix(h, bpf_ntohl(addr[2]));
	h = lb_murmur_mix(h, bpf_ntohl(addr[3]));
	h = lb_murmur_mix(h, ((__u32)bpf_ntohs(sport) << 16) | proto);
	h ^= 20; /* message length in bytes, as MurmurHash3 finishes */
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* the socket hooks' hash of a socket (or netns) cookie: murmur3's 64-bit finalizer, as cookies are
 * consecutive integers and this spreads them */
static __always_inline __u32 lb_sock_hash(__u64 cookie, __u32 seed)
{
	__u64 h = cookie ^ (((__u64)seed << 32) | seed);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (__u32)h ^ (__u32)(h >> 32);
}

/* The bit of (address, port, proto) in lb_fe_filter and lb_rev_filter: the word is a hash of the
 * address and the port's group of 32 (port >> 5), the bit in it the port's place in the group and the
 * protocol (TCP / UDP: proto & 1), XORed with 6 other bits of the hash: so one address's nearby
 * ports share a word (exactly, no collision among them) while a port many frontends have (80, 443)
 * is on another bit in each word (else a pod packet to port 80 would pass the filter as often as a
 * word holds any port-80 frontend: ~45 % at 10,000 Services), and a client's consecutive ephemeral ports (connect() steps through them) read the
 * word the previous connection read: a cached line, where a hash of the whole tuple read a cold one
 * per connection (~40-50 ns a packet in real traffic, docs/perf-log.md session 12). Address words and
 * port as loaded (src/dataplane/bpf/layout.ts feFilterBit() computes the same from lb_fe_key's
 * bytes). A few ALU operations, not a hash helper call. */
static __always_inline __u32 lb_fe_filter_bit(const __u32 *w, __be16 port, __u8 proto)
{
	__u32 p = bpf_ntohs(port);
	__u32 h = (w[0] ^ w[1] ^ w[2]) * 0x85ebca6bU;

	h = (h ^ w[3]) * 0x9e3779b1U;
	h ^= h >> 15;
	h = (h ^ (p >> 5)) * 0x85ebca6bU;
	h ^= h >> 16;
	h *= 0x9e3779b1U;
	return ((h >> (32 - LB_FE_FILTER_BITS_LOG2 + 6)) << 6) | ((((p & 31) << 1) | (proto & 1)) ^ ((h >> 12) & 63));
}

/* The bit of a reverse entry's key (backend address src, port and proto, client address dst) in
 * lb_rev_filter: lb_fe_filter_bit() of the backend's address with the client's address mixed into
 * its last word. A reply is looked up by a key holding its own destination, so the client's address
 * narrows the filter at no risk: a pod's packets to or from a Service's backend that it reaches
 * directly (a headless Service, a pod IP) pass it only when that pod has a translated flow to the
 * same backend port (session 16: before, every such packet was looked up in lb_ct). The client's
 * port is left out, so consecutive connections still read one word. src/dataplane/bpf/layout.ts
 * revFilterBit() computes the same from an lb_ct key. */
static __always_inline __u32 lb_rev_filter_bit(const __u32 *src, __be16 port, __u8 proto, const __u32 *dst)
{
	__u32 w[4], x;

	x = (dst[0] ^ dst[1] ^ dst[2]) * 0x85ebca6bU;
	x = (x ^ dst[3]) * 0x9e3779b1U;
	x ^= x >> 15;
	w[0] = src[0];
	w[1] = src[1];
	w[2] = src[2];
	w[3] = src[3] ^ x;
	return lb_fe_filter_bit(w, port, proto);
}

#endif
