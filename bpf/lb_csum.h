/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Checksums: Internet checksums (RFC 1071) built on bpf_csum_diff. */
/* A full sum over headers we build, and the incremental update (RFC 1624) that XDP needs because it
 * has no bpf_l4_csum_replace. */
#ifndef KBP_LB_CSUM_H
#define KBP_LB_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* bytes summed per bpf_skb_load_bytes round: small, the buffer lives on the 512-byte stack */
#define LB_CSUM_CHUNK 64
/* longest range lb_skb_csum() sums: an ICMPv6 error quoting up to the IPv6 minimum MTU */
#define LB_CSUM_RANGE_MAX 1280

/* folds a one's-complement sum and complements it: the value stored in a header, in the byte order
 * bpf_csum_diff summed in (so it is stored as is, without byte swapping) */
static __always_inline __u16 lb_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* RFC 1624 eqn. 3 for one 4-byte field (an IPv4 address), in the byte order the header was loaded
 * in: ~(~HC + ~m + m'), as the kernel's csum_replace4() */
static __always_inline __u16 lb_csum_replace4(__u16 check, __u32 from, __u32 to)
{
	/* under 2^34: lb_csum_fold's folds carry every bit */
	return lb_csum_fold((__u64)(__u16)~check + (__u32)~from + to);
}

/* the same for a 16-byte field (an IPv6 address), as four words */
static __always_inline __u16 lb_csum_replace16(__u16 check, const __u32 *from, const __u32 *to)
{
	__u64 s = (__u64)(__u16)~check;
	int i;

	for (i = 0; i < 4; i++)
		s += (__u64)(__u32)~from[i] + to[i];
	/* under 2^36 */
	return lb_csum_fold(s);
}

/* the unfolded sum of a buffer we built (n a multiple of 4, at most 512) */
static __always_inline __u32 lb_csum_buf(void *buf, __u32 n, __u32 seed)
{
	__s64 s = bpf_csum_diff(NULL, 0, buf, n, seed);

	return s < 0 ? 0 : (__u32)s;
}

/* sums skb bytes [off, off + len) into seed, len <= LB_CSUM_RANGE_MAX; an odd tail is padded with
 * zero as RFC 1071 says. Returns the unfolded sum, or a negative errno. */
/* constant-size loads only: a variable size is a bound that must survive a register spill, which
 * 6.1's verifier does not track (the VM tier, test/vm, checks the object loads there) */
#define LB_CSUM_PART(n)								\
	if (rem & (n)) {							\
		__builtin_memset(buf, 0, sizeof(buf));				\
		if (bpf_skb_load_bytes(skb, off + done, buf, (n)) < 0)		\
			return -1;						\
		s = bpf_csum_diff(NULL, 0, (__be32 *)buf, ((n) + 3) & ~3, 0);	\
		if (s < 0)							\
			return -1;						\
		sum += (__u32)s;						\
		done += (n);							\
	}
static __always_inline __s64 lb_skb_csum(struct __sk_buff *skb, __u32 off, __u32 len, __u32 seed)
{
	__u8 buf[LB_CSUM_CHUNK];
	__u64 sum = seed;
	__u32 done = 0, rem;
	__s64 s;
	int i;

	if (len > LB_CSUM_RANGE_MAX)
		return -1;
	for (i = 0; i < LB_CSUM_RANGE_MAX / LB_CSUM_CHUNK; i++) {
		if (done + LB_CSUM_CHUNK > len)
			break;
		if (bpf_skb_load_bytes(skb, off + done, buf, LB_CSUM_CHUNK) < 0)
			return -1;
		s = bpf_csum_diff(NULL, 0, (__be32 *)buf, LB_CSUM_CHUNK, 0);
		if (s < 0)
			return -1;
		sum += (__u32)s;
		done += LB_CSUM_CHUNK;
	}
	rem = len - done;
	LB_CSUM_PART(32)
	LB_CSUM_PART(16)
	LB_CSUM_PART(8)
	LB_CSUM_PART(4)
	LB_CSUM_PART(2)
	LB_CSUM_PART(1)
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (__s64)sum;
}

#endif
