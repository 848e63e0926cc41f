/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The 16-byte address form every map and hook uses: IPv6 as is, IPv4 IPv4-mapped (::ffff:a.b.c.d). */
#ifndef KBP_LB_ADDR_H
#define KBP_LB_ADDR_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

/* an address in the maps' 16-byte form; the words keep it 4-byte aligned for hashing and copies */
union lb_addr {
	__u8 b[16];
	__u32 w[4];
};

static __always_inline void lb_addr_set_v4(union lb_addr *a, __be32 v4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0x0000ffff);
	a->w[3] = v4;
}

static __always_inline int lb_addr_is_v4(const union lb_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int lb_addr_eq(const union lb_addr *a, const union lb_addr *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

static __always_inline void lb_addr_copy(union lb_addr *dst, const __u8 *src)
{
	__builtin_memcpy(dst->b, src, 16);
}

#endif
