/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* NAT: address and port rewriting with checksum fix-up, for tc and XDP. */
/* tc uses bpf_l3/l4_csum_replace, which also know the CHECKSUM_PARTIAL state of locally generated
 * packets (the L4 field then holds only the pseudo-header sum); XDP always sees complete checksums
 * and updates them itself (RFC 1624). */
#ifndef KBP_LB_NAT_H
#define KBP_LB_NAT_H

#include <linux/pkt_cls.h>
#include "lb_parse.h"
#include "lb_csum.h"

#define LB_NAT_SRC 0
#define LB_NAT_DST 1

static __always_inline __u32 lb_l4_csum_off(const struct lb_pkt *p)
{
	return p->l4_off + (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
						     : offsetof(struct udphdr, check));
}

/* rewrites the source or destination address and port of a parsed packet; 0 or a negative errno.
 * The checksum helpers first (they know CHECKSUM_PARTIAL), then the new values written by direct
 * packet access: two bpf_skb_store_bytes calls cost more than the whole bounds check. A fragment past
 * the first has no L4 header: only its addresses change (the L4 checksum, in the first fragment,
 * covers the whole datagram and was updated there). */
static __always_inline int lb_skb_nat(struct __sk_buff *skb, const struct lb_pkt *p, int which,
				      const __u8 *addr, __be16 port)
{
	__u32 csum_off = lb_l4_csum_off(p);
	__u32 l4_off = p->l4_off;
	/* an IPv4 UDP datagram without checksum (0) keeps none; a result of 0 is sent as 0xffff */
	__u64 mangled = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	const union lb_addr *old = which == LB_NAT_DST ? &p->daddr : &p->saddr;
	__be16 old_port = which == LB_NAT_DST ? p->dport : p->sport;
	int l4 = p->frag != LB_FRAG_LATER;
	union lb_addr new;
	void *data, *data_end;
	__be16 *l4port;
	int ret = 0;

	__builtin_memcpy(new.b, addr, 16);
	if (p->family == 4) {
		if (l4) {
			ret = bpf_l4_csum_replace(skb, csum_off, old->w[3], new.w[3], BPF_F_PSEUDO_HDR | mangled | 4);
			if (ret < 0)
				return ret;
		}
	} else if (l4) {
		__s64 diff = bpf_csum_diff((__be32 *)old->w, 16, new.w, 16, 0);

		if (diff < 0)
			return (int)diff;
		ret = bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, BPF_F_PSEUDO_HDR | mangled);
	}
	if (ret < 0)
		return ret;
	if (l4 && port != old_port) {
		ret = bpf_l4_csum_replace(skb, csum_off, old_port, port, mangled | 2);
		if (ret < 0)
			return ret;
	}

	/* the helpers may have moved the data: fresh pointers, fresh bounds */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (l4) {
		/* 6.1's verifier: clang may check one spilled copy of l4_off and build the pointer
		 * from another, unbounded one; the barrier makes the checked register the one used */
		asm volatile("" : "+r"(l4_off));
		if (l4_off > 512)
			return -1;
		l4port = data + l4_off + (which == LB_NAT_DST ? 2 : 0);
		if ((void *)(l4port + 1) > data_end)
			return -1;
		*l4port = port;
	}
	if (p->family == 4) {
		struct iphdr *ip = data + LB_L3_OFF;

		if ((void *)(ip + 1) > data_end)
			return -1;
		/* the header checksum is always complete (no CHECKSUM_PARTIAL for it): updated here,
		 * RFC 1624 as the kernel's csum_replace4, with no bpf_l3_csum_replace call (a helper call
		 * and its writability check: ~3 % of a conntrack hit's samples, docs/perf-log.md session 17) */
		ip->check = lb_csum_replace4(ip->check, old->w[3], new.w[3]);
		if (which == LB_NAT_DST)
			ip->daddr = new.w[3];
		else
			ip->saddr = new.w[3];
	} else {
		struct ipv6hdr *ip6 = data + LB_L3_OFF;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		if (which == LB_NAT_DST)
			__builtin_memcpy(ip6->daddr.in6_u.u6_addr8, new.b, 16);
		else
			__builtin_memcpy(ip6->saddr.in6_u.u6_addr8, new.b, 16);
	}
	return 0;
}

/* Rewrites an ICMP(v6) error about a translated flow so that its receiver can match it:
 * - which LB_NAT_DST: the error goes to the client about a packet it sent to a backend; the quoted
 *   destination (the backend) becomes the frontend, and so does the outer source when the backend
 *   itself sent the error (a router on the way, e.g. a PMTU "too big", keeps its address);
 * - which LB_NAT_SRC: the error was sent toward the frontend about a reply the client got from it
 *   (a router's "fragmentation needed" for a Service's large response); the quoted source (the
 *   frontend) becomes the backend, and so does the outer destination.
 * Checksums: IPv4: the quoted header's own (whose sum, when it changes with its address, leaves the
 * ICMP checksum alone), the ICMP checksum for the quoted port, the outer header's; ICMPv6: one
 * checksum covering the quote and, through the pseudo-header, the outer addresses. The quoted L4
 * checksum stays as it was (as the kernel's NAT leaves a cut quote's): nobody checks it in a
 * truncated quote. Rare packets: the plain helpers, no direct access. */
static __always_inline int lb_skb_icmp_nat(struct __sk_buff *skb, const struct lb_pkt *p, int which,
					   const __u8 *addr, __be16 port)
{
	__u32 csum_off = p->icmp_off + 2;
	const union lb_addr *old = which == LB_NAT_DST ? &p->daddr : &p->saddr;
	__be16 old_port = which == LB_NAT_DST ? p->dport : p->sport;
	__u32 qport_off = p->l4_off + (which == LB_NAT_DST ? 2 : 0);
	union lb_addr new, outer;
	__u32 in_off, out_off;
	int ret;

	__builtin_memcpy(new.b, addr, 16);
	if (port != old_port) {
		ret = bpf_l4_csum_replace(skb, csum_off, old_port, port, 2);
		if (ret < 0)
			return ret;
		ret = bpf_skb_store_bytes(skb, qport_off, &port, 2, 0);
		if (ret < 0)
			return ret;
	}
	if (p->family == 4) {
		in_off = p->inner_l3_off + (which == LB_NAT_DST ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
		out_off = LB_L3_OFF + (which == LB_NAT_DST ? offsetof(struct iphdr, saddr) : offsetof(struct iphdr, daddr));
		ret = bpf_l3_csum_replace(skb, p->inner_l3_off + offsetof(struct iphdr, check), old->w[3], new.w[3], 4);
		if (ret < 0)
			return ret;
		ret = bpf_skb_store_bytes(skb, in_off, &new.w[3], 4, 0);
		if (ret < 0)
			return ret;
		if (bpf_skb_load_bytes(skb, out_off, &outer.w[3], 4) < 0)
			return -1;
		if (outer.w[3] != old->w[3])
			return 0;
		ret = bpf_l3_csum_replace(skb, LB_L3_OFF + offsetof(struct iphdr, check), outer.w[3], new.w[3], 4);
		if (ret < 0)
			return ret;
		return bpf_skb_store_bytes(skb, out_off, &new.w[3], 4, 0);
	}
	{
		__s64 diff = bpf_csum_diff((__be32 *)old->w, 16, new.w, 16, 0);

		in_off = p->inner_l3_off + (which == LB_NAT_DST ? offsetof(struct ipv6hdr, daddr) : offsetof(struct ipv6hdr, saddr));
		out_off = LB_L3_OFF + (which == LB_NAT_DST ? offsetof(struct ipv6hdr, saddr) : offsetof(struct ipv6hdr, daddr));
		if (diff < 0)
			return (int)diff;
		ret = bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, 0);
		if (ret < 0)
			return ret;
		ret = bpf_skb_store_bytes(skb, in_off, new.b, 16, 0);
		if (ret < 0)
			return ret;
		if (bpf_skb_load_bytes(skb, out_off, outer.b, 16) < 0)
			return -1;
		if (!lb_addr_eq(&outer, old))
			return 0;
		/* the outer address is in the ICMPv6 pseudo-header */
		ret = bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, BPF_F_PSEUDO_HDR);
		if (ret < 0)
			return ret;
		return bpf_skb_store_bytes(skb, out_off, new.b, 16, 0);
	}
}

/* the same for XDP, by direct packet access; the packet was parsed from these very pointers. The
 * checksums are summed inline (lb_csum.h lb_csum_replace4/16): no bpf_csum_diff call per field. The
 * new address is read as words where it lies (a backend entry, 4-byte aligned) and the old one in the
 * header: no copy on the stack, which lb_xdp shares with its subprogram's (512 bytes for all). */
static __always_inline int lb_xdp_nat_dst(void *data, void *data_end, const struct lb_pkt *p,
					  const __u8 *addr, __be16 port)
{
	const __u32 *nw = (const __u32 *)(const void *)addr;
	__u16 *l4check;
	__be16 *dport;
	__u32 l4_off = p->l4_off;
	int udp_nocsum;

	if (l4_off > 512)
		return -1;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4_off;

		if ((void *)(th + 1) > data_end)
			return -1;
		l4check = &th->check;
		dport = &th->dest;
	} else {
		struct udphdr *uh = data + l4_off;

		if ((void *)(uh + 1) > data_end)
			return -1;
		l4check = &uh->check;
		dport = &uh->dest;
	}
	udp_nocsum = p->proto == IPPROTO_UDP && p->family == 4 && *l4check == 0;

	if (p->family == 4) {
		struct iphdr *ip = data + LB_L3_OFF;
		__be32 old, n4 = nw[3];

		if ((void *)(ip + 1) > data_end)
			return -1;
		old = ip->daddr;
		ip->check = lb_csum_replace4(ip->check, old, n4);
		if (!udp_nocsum)
			*l4check = lb_csum_replace4(*l4check, old, n4);
		ip->daddr = n4;
	} else {
		struct ipv6hdr *ip6 = data + LB_L3_OFF;
		__u32 *d;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		d = ip6->daddr.in6_u.u6_addr32;
		*l4check = lb_csum_replace16(*l4check, d, nw);
		d[0] = nw[0];
		d[1] = nw[1];
		d[2] = nw[2];
		d[3] = nw[3];
	}
	if (port != *dport) {
		__u32 o = *dport, n = port;

		if (!udp_nocsum)
			*l4check = lb_csum_replace4(*l4check, o, n);
		*dport = port;
	}
	if (p->proto == IPPROTO_UDP && !udp_nocsum && *l4check == 0)
		*l4check = 0xffff;
	return 0;
}

#endif
