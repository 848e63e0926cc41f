/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Parsing: Ethernet, IPv4 / IPv6 and TCP / UDP into one struct lb_pkt, for tc and XDP. */
/* IPv6 with the common extension headers; addresses in the 16-byte (IPv4-mapped) form every map
 * uses. Only direct packet access with explicit bounds: a short or lying packet is reported, never
 * read past its end. */
#ifndef KBP_LB_PARSE_H
#define KBP_LB_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_addr.h"

#ifndef NEXTHDR_HOP
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60
#endif
/* extension headers walked before giving up on a packet (bounded loop for the verifier) */
#define LB_IPV6_EXT_MAX 4
/* ... and in the packet an ICMPv6 error quotes */
#define LB_IPV6_QUOTE_EXT_MAX 2
#define LB_IP6_FRAG_OFFSET 0xfff8
#define LB_IP6_FRAG_MF 0x0001
#define LB_IP_MF 0x2000
#define LB_IP_OFFSET 0x1fff
#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

/* what the programs need of a packet, read once */
struct lb_pkt {
	union lb_addr saddr;
	union lb_addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;        /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;       /* 4 or 6 */
	__u8 tcp_flags;    /* FIN SYN RST PSH ACK ... (byte 13 of the TCP header) */
	__u8 frag;         /* LB_FRAG_* */
	__u32 ip_len;      /* IP header(s) + payload, from the IP header's length field (BIG TCP: the skb's) */
	__u32 l4_len;      /* L4 header + payload */
	__u16 l4_off;      /* from the start of the frame */
	__u16 l4_hlen;     /* L4 header only (TCP with options) */
	__be32 seq;        /* TCP */
	__be32 ack_seq;    /* TCP */
	__be16 udp_check;  /* UDP: 0 means no checksum (IPv4 only) */
	__u16 icmp_off;    /* LB_PARSE_ICMP_ERR: the outer ICMP header; the fields above then describe the
			    * packet it quotes (addresses, ports, proto; l4_off its L4 header) */
	__u16 inner_l3_off;/* LB_PARSE_ICMP_ERR: the quoted IP header */
	__u16 pad;
	__u32 frag_id;     /* a fragment's identification (IPv4: its 2 bytes as read) */
};

/* lb_pkt.frag */
#define LB_FRAG_NONE 0
#define LB_FRAG_FIRST 1    /* offset 0, more to come: carries the L4 header */
#define LB_FRAG_LATER 2    /* offset > 0: no L4 header; ports from lb_frags */

enum lb_parse_result {
	LB_PARSE_OK = 0,
	LB_PARSE_SKIP,      /* not IP, or a protocol we do not translate: pass, nothing counted */
	LB_PARSE_MALFORMED, /* truncated or inconsistent headers: pass untouched, counted */
	LB_PARSE_FRAGMENT,  /* an ICMP error in fragments: pass untouched, counted */
	LB_PARSE_ICMP_ERR,  /* ICMP(v6) error quoting a TCP/UDP packet: lb_pkt describes the quoted packet */
	LB_PARSE_FRAG_LATER,/* a TCP/UDP fragment past the first: addresses, proto and frag_id set, no ports */
};

/* linux/icmp.h drags in libc's socket headers, which a BPF build lacks: our own definitions */
#define LB_ICMP_DEST_UNREACH 3
#define LB_ICMP_PORT_UNREACH 3
#define LB_ICMP_TIME_EXCEEDED 11
#define LB_ICMP_PARAMETERPROB 12
#define LB_ICMPV6_DEST_UNREACH 1
#define LB_ICMPV6_PKT_TOOBIG 2
#define LB_ICMPV6_TIME_EXCEED 3
#define LB_ICMPV6_PARAMPROB 4
#define LB_ICMPV6_PORT_UNREACH 4
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
/* ICMP and ICMPv6 errors: type, code, checksum, 4 bytes (unused / MTU / pointer), then the quote */
#define LB_ICMP_HLEN 8

#define LB_L3_OFF ((__u32)sizeof(struct ethhdr))
#define LB_IPV6_TLV_JUMBO 0xc2

/* TCP / UDP header at l4_off; l4_len is what the IP header says follows */
static __always_inline int lb_parse_l4(void *data, void *data_end, struct lb_pkt *p, __u32 l4_off)
{
	if (l4_off > 512)
		return LB_PARSE_MALFORMED;
	p->l4_off = l4_off;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4_off;
		__u32 hlen;

		if ((void *)(th + 1) > data_end)
			return LB_PARSE_MALFORMED;
		hlen = th->doff * 4;
		if (hlen < sizeof(*th) || hlen > p->l4_len)
			return LB_PARSE_MALFORMED;
		p->l4_hlen = hlen;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		p->seq = th->seq;
		p->ack_seq = th->ack_seq;
		return LB_PARSE_OK;
	}
	if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4_off;

		if ((void *)(uh + 1) > data_end)
			return LB_PARSE_MALFORMED;
		if (p->l4_len < sizeof(*uh))
			return LB_PARSE_MALFORMED;
		p->l4_hlen = sizeof(*uh);
		p->sport = uh->source;
		p->dport = uh->dest;
		p->udp_check = uh->check;
		return LB_PARSE_OK;
	}
	return LB_PARSE_SKIP;
}

/* the quoted packet's ports: only its first 8 bytes are sure to be there, the ports are in them */
static __always_inline int lb_parse_quoted_ports(void *data, void *data_end, struct lb_pkt *p, __u32 l4_off)
{
	__be16 *ports = data + l4_off;

	if (l4_off > 512)
		return LB_PARSE_SKIP;
	if ((void *)(ports + 2) > data_end)
		return LB_PARSE_SKIP;
	p->l4_off = l4_off;
	p->sport = ports[0];
	p->dport = ports[1];
	return LB_PARSE_ICMP_ERR;
}

/* an ICMP error at off quoting a TCP/UDP packet (RFC 792: its IP header and 8 bytes) */
static __always_inline int lb_parse_icmp4(void *data, void *data_end, struct lb_pkt *p, __u32 off)
{
	__u8 *ic = data + off;
	struct iphdr *in;

	if (off > 128 || (void *)(ic + LB_ICMP_HLEN) > data_end)
		return LB_PARSE_SKIP;
	if (ic[0] != LB_ICMP_DEST_UNREACH && ic[0] != LB_ICMP_TIME_EXCEEDED && ic[0] != LB_ICMP_PARAMETERPROB)
		return LB_PARSE_SKIP;
	in = (void *)(ic + LB_ICMP_HLEN);
	if ((void *)(in + 1) > data_end || in->version != 4 || in->ihl < 5)
		return LB_PARSE_SKIP;
	/* a later fragment quotes no ports */
	if (in->frag_off & bpf_htons(LB_IP_OFFSET))
		return LB_PARSE_SKIP;
	if (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP)
		return LB_PARSE_SKIP;
	p->family = 4;
	p->proto = in->protocol;
	lb_addr_set_v4(&p->saddr, in->saddr);
	lb_addr_set_v4(&p->daddr, in->daddr);
	p->icmp_off = off;
	p->inner_l3_off = off + LB_ICMP_HLEN;
	return lb_parse_quoted_ports(data, data_end, p, off + LB_ICMP_HLEN + in->ihl * 4);
}

/* an ICMPv6 error quoting a TCP/UDP packet, behind up to LB_IPV6_QUOTE_EXT_MAX extension headers
 * (hop-by-hop, destination options, authentication, a first fragment's header) */
static __always_inline int lb_parse_icmp6(void *data, void *data_end, struct lb_pkt *p, __u32 off)
{
	__u8 *ic = data + off;
	struct ipv6hdr *in;
	__u32 qoff;
	__u8 nh;
	int i;

	if (off > 512 || (void *)(ic + LB_ICMP_HLEN) > data_end)
		return LB_PARSE_SKIP;
	if (ic[0] < LB_ICMPV6_DEST_UNREACH || ic[0] > LB_ICMPV6_PARAMPROB)
		return LB_PARSE_SKIP;
	in = (void *)(ic + LB_ICMP_HLEN);
	if ((void *)(in + 1) > data_end || in->version != 6)
		return LB_PARSE_SKIP;
	qoff = off + LB_ICMP_HLEN + sizeof(*in);
	nh = in->nexthdr;
#pragma unroll
	for (i = 0; i < LB_IPV6_QUOTE_EXT_MAX; i++) {
		__u8 *ext = data + qoff;

		if (nh == IPPROTO_TCP || nh == IPPROTO_UDP)
			break;
		if (nh != NEXTHDR_HOP && nh != NEXTHDR_DEST && nh != NEXTHDR_AUTH && nh != NEXTHDR_FRAGMENT)
			return LB_PARSE_SKIP;
		if (qoff > 768 || (void *)(ext + 8) > data_end)
			return LB_PARSE_SKIP;
		/* a later fragment quotes no ports */
		if (nh == NEXTHDR_FRAGMENT && (*(__be16 *)(ext + 2) & bpf_htons(LB_IP6_FRAG_OFFSET)))
			return LB_PARSE_SKIP;
		qoff += nh == NEXTHDR_FRAGMENT ? 8 : nh == NEXTHDR_AUTH ? (ext[1] + 2) * 4 : (ext[1] + 1) * 8;
		nh = ext[0];
	}
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return LB_PARSE_SKIP;
	p->family = 6;
	p->proto = nh;
	lb_addr_copy(&p->saddr, in->saddr.in6_u.u6_addr8);
	lb_addr_copy(&p->daddr, in->daddr.in6_u.u6_addr8);
	p->icmp_off = off;
	p->inner_l3_off = off + LB_ICMP_HLEN;
	return lb_parse_quoted_ports(data, data_end, p, qoff);
}

/* BIG TCP (RFC 2675-sized GSO packets, kernel 6.3+): an IPv4 total length of 0, or an IPv6 payload
 * length of 0 without a jumbo option, on a packet longer than the field can say; the length is then
 * the skb's, as the kernel's skb_ip_totlen() and ipv6_payload_len() read it. IPv6 BIG TCP packets
 * that the stack sends carry a Hop-by-Hop header with the jumbo option instead (ip6_xmit; up to 6.x
 * it is removed only by the drivers): lb_parse_v6 reads the length from it. */
static __always_inline int lb_big_packet(__u32 pkt_len, __u32 fixed_hdr)
{
	return pkt_len - LB_L3_OFF > 0xffff + fixed_hdr;
}

static __always_inline int lb_parse_v4(void *data, void *data_end, __u32 pkt_len, struct lb_pkt *p, int full)
{
	struct iphdr *ip = data + LB_L3_OFF;
	__u32 hlen, tot;

	if ((void *)(ip + 1) > data_end)
		return LB_PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return LB_PARSE_MALFORMED;
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (full && tot == 0 && lb_big_packet(pkt_len, 0))
		tot = pkt_len - LB_L3_OFF;
	if (tot < hlen || tot > pkt_len - LB_L3_OFF)
		return LB_PARSE_MALFORMED;
	if (ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET)) {
		if (!full)
			return LB_PARSE_FRAGMENT;
		p->frag = (ip->frag_off & bpf_htons(LB_IP_OFFSET)) ? LB_FRAG_LATER : LB_FRAG_FIRST;
		p->frag_id = ip->id;
	}
	if (ip->protocol == IPPROTO_ICMP) {
		if (!full)
			return LB_PARSE_SKIP;
		return p->frag ? LB_PARSE_FRAGMENT : lb_parse_icmp4(data, data_end, p, LB_L3_OFF + hlen);
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return LB_PARSE_SKIP;
	p->family = 4;
	p->proto = ip->protocol;
	p->ip_len = tot;
	p->l4_len = tot - hlen;
	lb_addr_set_v4(&p->saddr, ip->saddr);
	lb_addr_set_v4(&p->daddr, ip->daddr);
	if (p->frag == LB_FRAG_LATER) {
		p->l4_off = LB_L3_OFF + hlen;
		return LB_PARSE_FRAG_LATER;
	}
	return lb_parse_l4(data, data_end, p, LB_L3_OFF + hlen);
}

static __always_inline int lb_parse_v6(void *data, void *data_end, __u32 pkt_len, struct lb_pkt *p, int full)
{
	struct ipv6hdr *ip6 = data + LB_L3_OFF;
	__u32 off = LB_L3_OFF + sizeof(*ip6), tot;
	__u8 nh;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return LB_PARSE_MALFORMED;
	if (ip6->version != 6)
		return LB_PARSE_MALFORMED;
	tot = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	nh = ip6->nexthdr;
	if (full && tot == sizeof(*ip6) && lb_big_packet(pkt_len, sizeof(*ip6))) {
		__u8 *hbh = data + off;

		if (nh != NEXTHDR_HOP) {
			tot = pkt_len - LB_L3_OFF;
		} else {
			/* RFC 2675 jumbogram: an 8-byte Hop-by-Hop header holding only the jumbo option
			 * (type 0xC2, 4 bytes: the length after the IPv6 header), as ip6_xmit writes it and
			 * ipv6_hopopt_jumbo_remove() expects it */
			if ((void *)(hbh + 8) > data_end)
				return LB_PARSE_MALFORMED;
			if (hbh[1] != 0 || hbh[2] != LB_IPV6_TLV_JUMBO || hbh[3] != 4)
				return LB_PARSE_MALFORMED;
			tot = sizeof(*ip6) + bpf_ntohl(*(__be32 *)(hbh + 4));
			if (tot <= sizeof(*ip6) + 0xffff)
				return LB_PARSE_MALFORMED;
		}
	}
	if (tot > pkt_len - LB_L3_OFF)
		return LB_PARSE_MALFORMED;
#pragma unroll
	for (i = 0; i < LB_IPV6_EXT_MAX; i++) {
		__u8 *ext = data + off;

		if (nh == IPPROTO_TCP || nh == IPPROTO_UDP || nh == IPPROTO_ICMPV6)
			break;
		/* a routing header may change the final destination: not ours to translate */
		if (nh != NEXTHDR_HOP && nh != NEXTHDR_DEST && nh != NEXTHDR_AUTH && nh != NEXTHDR_FRAGMENT)
			return LB_PARSE_SKIP;
		/* XDP leaves fragments to tc: its copy of the walk stops here, as small as it was */
		if (nh == NEXTHDR_FRAGMENT && !full)
			return LB_PARSE_FRAGMENT;
		if ((void *)(ext + 8) > data_end)
			return LB_PARSE_MALFORMED;
		if (nh == NEXTHDR_FRAGMENT) {
			__u16 fo = bpf_ntohs(*(__be16 *)(ext + 2));
			__u32 later = (fo & LB_IP6_FRAG_OFFSET) != 0;

			/* offset 0 without M is an atomic fragment (RFC 6946): a whole datagram. Computed
			 * without branches: 6.1's verifier then keeps one state, not one per outcome. */
			p->frag = later * LB_FRAG_LATER + ((later ^ 1) & (fo & LB_IP6_FRAG_MF)) * LB_FRAG_FIRST;
			p->frag_id = *(__u32 *)(ext + 4);
			off += 8;
		} else {
			off += nh == NEXTHDR_AUTH ? (ext[1] + 2) * 4 : (ext[1] + 1) * 8;
		}
		nh = ext[0];
		if (off > tot + LB_L3_OFF)
			return LB_PARSE_MALFORMED;
	}
	if (nh == IPPROTO_ICMPV6) {
		if (!full)
			return LB_PARSE_SKIP;
		return p->frag ? LB_PARSE_FRAGMENT : lb_parse_icmp6(data, data_end, p, off);
	}
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return LB_PARSE_SKIP;
	p->family = 6;
	p->proto = nh;
	p->ip_len = tot;
	p->l4_len = tot + LB_L3_OFF - off;
	lb_addr_copy(&p->saddr, ip6->saddr.in6_u.u6_addr8);
	lb_addr_copy(&p->daddr, ip6->daddr.in6_u.u6_addr8);
	if (p->frag == LB_FRAG_LATER) {
		if (off > 512)
			return LB_PARSE_MALFORMED;
		p->l4_off = off;
		return LB_PARSE_FRAG_LATER;
	}
	return lb_parse_l4(data, data_end, p, off);
}

/* pkt_len: the whole frame's length (skb->len; for XDP data_end - data). full 0 (XDP, which leaves
 * ICMP and fragments to tc) reports any fragment as LB_PARSE_FRAGMENT and ICMP as LB_PARSE_SKIP,
 * which keeps their parsers out of the program: 6.1's verifier gives up on XDP with them */
static __always_inline int lb_parse(void *data, void *data_end, __u32 pkt_len, struct lb_pkt *p, int full)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return LB_PARSE_SKIP;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return lb_parse_v4(data, data_end, pkt_len, p, full);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return lb_parse_v6(data, data_end, pkt_len, p, full);
	return LB_PARSE_SKIP;
}

#endif
