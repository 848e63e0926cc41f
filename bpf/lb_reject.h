/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Refusals: a TCP RST or ICMP port unreachable for a flow without backends, built in place. */
/* DESIGN.md "no endpoints": the packet itself is turned into the answer and sent back where it came
 * from. Built at fixed offsets from scratch, so IPv4 options and IPv6 extension headers of the
 * original simply disappear. */
#ifndef KBP_LB_REJECT_H
#define KBP_LB_REJECT_H

#include "lb_parse.h"
#include "lb_csum.h"
#include "lb_svc.h"

#define LB_REJECT_TTL 64
/* an ICMPv6 error must fit the IPv6 minimum MTU (RFC 4443 2.4 (c)) */
#define LB_IPV6_MIN_MTU 1280
#define LB_ICMP_QUOTE_V4 8         /* bytes of the original payload quoted after its IP header */

/* ICMP and ICMPv6 error header: type, code, checksum, 4 unused bytes */
struct lb_icmp_err {
	__u8 type;
	__u8 code;
	__u16 check;
	__u32 unused;
};

struct lb_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct lb_pseudo6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

/* the reply's Ethernet header: the original with its addresses swapped */
static __always_inline int lb_reply_eth(struct __sk_buff *skb, struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(*eth)) < 0)
		return -1;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return 0;
}

static __always_inline void lb_ip4_reply_hdr(struct iphdr *ip, const struct lb_pkt *p, __u8 proto, __u16 tot)
{
	((__u8 *)ip)[0] = 0x45;
	ip->tot_len = bpf_htons(tot);
	ip->frag_off = proto == IPPROTO_TCP ? bpf_htons(0x4000) : 0; /* DF on the RST, as Linux sends it */
	ip->ttl = LB_REJECT_TTL;
	ip->protocol = proto;
	ip->saddr = p->daddr.w[3];
	ip->daddr = p->saddr.w[3];
	ip->check = lb_csum_fold(lb_csum_buf(ip, sizeof(*ip), 0));
}

static __always_inline void lb_ip6_reply_hdr(struct ipv6hdr *ip6, const struct lb_pkt *p, __u8 nexthdr, __u16 plen)
{
	((__u8 *)ip6)[0] = 0x60;
	ip6->payload_len = bpf_htons(plen);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = LB_REJECT_TTL;
	__builtin_memcpy(ip6->saddr.in6_u.u6_addr8, p->daddr.b, 16);
	__builtin_memcpy(ip6->daddr.in6_u.u6_addr8, p->saddr.b, 16);
}

static __always_inline __u32 lb_pseudo6_sum(const struct lb_pkt *p, __u8 nexthdr, __u32 len)
{
	struct lb_pseudo6 ph = {};

	__builtin_memcpy(ph.saddr, p->daddr.b, 16);
	__builtin_memcpy(ph.daddr, p->saddr.b, 16);
	ph.len = bpf_htonl(len);
	ph.nexthdr = nexthdr;
	return lb_csum_buf(&ph, sizeof(ph), 0);
}

/* RST|ACK as RFC 9293 3.10.7.1 answers a segment to a closed port; never answers an RST */
static __always_inline int lb_skb_reset(struct __sk_buff *skb, const struct lb_pkt *p)
{
	struct ethhdr eth;
	struct tcphdr th = {};
	__u32 seglen = p->l4_len - p->l4_hlen;

	if (p->proto != IPPROTO_TCP || (p->tcp_flags & LB_TCP_RST))
		return -1;
	if (p->tcp_flags & LB_TCP_SYN)
		seglen++;
	if (p->tcp_flags & LB_TCP_FIN)
		seglen++;
	if (lb_reply_eth(skb, &eth) < 0)
		return -1;
	th.source = p->dport;
	th.dest = p->sport;
	th.seq = (p->tcp_flags & LB_TCP_ACK) ? p->ack_seq : 0;
	th.ack_seq = bpf_htonl(bpf_ntohl(p->seq) + seglen);
	((__u8 *)&th)[12] = 5 << 4;
	((__u8 *)&th)[13] = LB_TCP_RST | LB_TCP_ACK;

	if (p->family == 4) {
		struct iphdr ip = {};
		struct lb_pseudo4 ph = { .saddr = p->daddr.w[3], .daddr = p->saddr.w[3], .proto = IPPROTO_TCP,
					 .len = bpf_htons(sizeof(th)) };

		lb_ip4_reply_hdr(&ip, p, IPPROTO_TCP, sizeof(ip) + sizeof(th));
		th.check = lb_csum_fold(lb_csum_buf(&th, sizeof(th), lb_csum_buf(&ph, sizeof(ph), 0)));
		if (bpf_skb_change_tail(skb, LB_L3_OFF + sizeof(ip) + sizeof(th), 0) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, LB_L3_OFF, &ip, sizeof(ip), 0) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, LB_L3_OFF + sizeof(ip), &th, sizeof(th), 0) < 0)
			return -1;
	} else {
		struct ipv6hdr ip6 = {};

		lb_ip6_reply_hdr(&ip6, p, IPPROTO_TCP, sizeof(th));
		th.check = lb_csum_fold(lb_csum_buf(&th, sizeof(th), lb_pseudo6_sum(p, IPPROTO_TCP, sizeof(th))));
		if (bpf_skb_change_tail(skb, LB_L3_OFF + sizeof(ip6) + sizeof(th), 0) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, LB_L3_OFF, &ip6, sizeof(ip6), 0) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, LB_L3_OFF + sizeof(ip6), &th, sizeof(th), 0) < 0)
			return -1;
	}
	return bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0);
}

/* ICMP(v6) port unreachable quoting the original datagram: the IP header and 8 bytes for IPv4
 * (RFC 792), as much as fits in 1280 bytes for IPv6 (RFC 4443) */
static __always_inline int lb_skb_unreach(struct __sk_buff *skb, const struct lb_pkt *p)
{
	struct ethhdr eth;
	__s64 sum;
	__u32 quote;

	if (lb_reply_eth(skb, &eth) < 0)
		return -1;
	if (p->family == 4) {
		struct iphdr ip = {};
		struct lb_icmp_err ic = { .type = LB_ICMP_DEST_UNREACH, .code = LB_ICMP_PORT_UNREACH };
		__u32 hdrs = sizeof(ip) + sizeof(ic);

		quote = p->l4_off - LB_L3_OFF + LB_ICMP_QUOTE_V4;
		if (quote > p->ip_len)
			quote = p->ip_len;
		if (quote > 60 + LB_ICMP_QUOTE_V4)
			return -1;
		if (bpf_skb_change_tail(skb, LB_L3_OFF + quote, 0) < 0)
			return -1;
		if (bpf_skb_adjust_room(skb, hdrs, BPF_ADJ_ROOM_MAC, 0) < 0)
			return -1;
		sum = lb_skb_csum(skb, LB_L3_OFF + hdrs, quote, lb_csum_buf(&ic, sizeof(ic), 0));
		if (sum < 0)
			return -1;
		ic.check = lb_csum_fold(sum);
		lb_ip4_reply_hdr(&ip, p, IPPROTO_ICMP, hdrs + quote);
		if (bpf_skb_store_bytes(skb, LB_L3_OFF, &ip, sizeof(ip), 0) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, LB_L3_OFF + sizeof(ip), &ic, sizeof(ic), 0) < 0)
			return -1;
	} else {
		struct ipv6hdr ip6 = {};
		struct lb_icmp_err ic = { .type = LB_ICMPV6_DEST_UNREACH, .code = LB_ICMPV6_PORT_UNREACH };
		__u32 hdrs = sizeof(ip6) + sizeof(ic);

		quote = p->ip_len;
		if (quote > LB_IPV6_MIN_MTU - hdrs)
			quote = LB_IPV6_MIN_MTU - hdrs;
		if (bpf_skb_change_tail(skb, LB_L3_OFF + quote, 0) < 0)
			return -1;
		if (bpf_skb_adjust_room(skb, hdrs, BPF_ADJ_ROOM_MAC, 0) < 0)
			return -1;
		sum = lb_pseudo6_sum(p, IPPROTO_ICMPV6, sizeof(ic) + quote);
		sum = lb_skb_csum(skb, LB_L3_OFF + hdrs, quote, lb_csum_buf(&ic, sizeof(ic), (__u32)sum));
		if (sum < 0)
			return -1;
		ic.check = lb_csum_fold(sum);
		lb_ip6_reply_hdr(&ip6, p, IPPROTO_ICMPV6, sizeof(ic) + quote);
		if (bpf_skb_store_bytes(skb, LB_L3_OFF, &ip6, sizeof(ip6), 0) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, LB_L3_OFF + sizeof(ip6), &ic, sizeof(ic), 0) < 0)
			return -1;
	}
	return bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0);
}

/* sends the answer back: out of the device a packet came in on, or, for a packet the host was
 * sending (tc egress), up its own stack */
static __always_inline int lb_skb_bounce(struct __sk_buff *skb, int at_ingress)
{
	return bpf_redirect(skb->ifindex, at_ingress ? 0 : BPF_F_INGRESS);
}

/* The per-CPU token bucket of refusals: 1 when one may be sent now, else 0 (counted). A flood to a
 * Service without endpoints must not turn the node into a packet source at line rate (as the
 * kernel limits its own ICMP errors, icmp_ratelimit). Refilled by whole tokens; a bucket whose
 * last refill lies ahead of now (another CPU's clock, a test) waits for it. */
static __always_inline int lb_reject_allowed(void)
{
	const __u64 per_token = LB_NSEC_PER_SEC / LB_REJECT_RATE;
	struct lb_rate_limit *rl;
	__u32 zero = 0;
	__u64 now, add;
	__s64 elapsed;

	rl = bpf_map_lookup_elem(&lb_reject_rl, &zero);
	if (!rl)
		return 1;
	now = bpf_ktime_get_ns();
	elapsed = (__s64)(now - rl->last_ns);
	if (elapsed >= (__s64)per_token) {
		add = (__u64)elapsed / per_token;
		rl->tokens = rl->tokens + add > LB_REJECT_BURST ? LB_REJECT_BURST : rl->tokens + add;
		rl->last_ns = now;
	}
	if (rl->tokens == 0) {
		lb_stat_inc(LB_STAT_DROP_REJECT_LIMIT);
		return 0;
	}
	rl->tokens--;
	return 1;
}

/* refuses a flow to a frontend without backends */
static __always_inline int lb_tc_reject(struct __sk_buff *skb, const struct lb_pkt *p, int at_ingress)
{
	int ret;

	/* a later fragment: its first fragment got the refusal */
	if (p->frag == LB_FRAG_LATER)
		return TC_ACT_SHOT;
	if (p->proto == IPPROTO_TCP) {
		if (p->tcp_flags & LB_TCP_RST)
			return TC_ACT_SHOT;
		if (!lb_reject_allowed())
			return TC_ACT_SHOT;
		ret = lb_skb_reset(skb, p);
	} else {
		if (!lb_reject_allowed())
			return TC_ACT_SHOT;
		ret = lb_skb_unreach(skb, p);
	}
	if (ret < 0)
		return TC_ACT_SHOT;
	lb_stat_inc(LB_STAT_REJECT_NO_BACKEND);
	return lb_skb_bounce(skb, at_ingress);
}

#endif
