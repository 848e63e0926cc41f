/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Conntrack: the entries of translated flows in lb_ct, one per direction. */
/* The forward entry (client -> frontend, as the client sends it) keeps a flow on its backend; the
 * reverse entry (backend -> client, as the backend answers) finds the frontend to rewrite replies
 * back to. */
#ifndef KBP_LB_CT_H
#define KBP_LB_CT_H

#include "lb_maps.h"
#include "lb_parse.h"

static __always_inline void lb_ct_key_fwd(struct lb_ct_key *k, const struct lb_pkt *p)
{
	__builtin_memcpy(k->saddr, p->saddr.b, 16);
	__builtin_memcpy(k->daddr, p->daddr.b, 16);
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->dir = LB_CT_DIR_FWD;
	k->pad = 0;
}

/* the key a reply of the backend will carry: the same tuple a reverse lookup builds from a packet */
static __always_inline void lb_ct_key_rev(struct lb_ct_key *k, const struct lb_pkt *p, const struct lb_backend *be)
{
	__builtin_memcpy(k->saddr, be->addr, 16);
	__builtin_memcpy(k->daddr, p->saddr.b, 16);
	k->sport = be->port;
	k->dport = p->sport;
	k->proto = p->proto;
	k->dir = LB_CT_DIR_REV;
	k->pad = 0;
}

/* the reverse entry of a translated flow from one of its packets past translation (client ->
 * backend): the tuple swapped. k must be zeroed (its padding is not written). */
static __always_inline void lb_ct_key_rev_of(struct lb_ct_key *k, const struct lb_pkt *p)
{
	__builtin_memcpy(k->saddr, p->daddr.b, 16);
	__builtin_memcpy(k->daddr, p->saddr.b, 16);
	k->sport = p->dport;
	k->dport = p->sport;
	k->proto = p->proto;
	k->dir = LB_CT_DIR_REV;
}

/* a packet as a reply: its own tuple, looked up in the reverse direction */
static __always_inline void lb_ct_key_reply(struct lb_ct_key *k, const struct lb_pkt *p)
{
	lb_ct_key_fwd(k, p);
	k->dir = LB_CT_DIR_REV;
}

static __always_inline int lb_tcp_closing(const struct lb_pkt *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (LB_TCP_FIN | LB_TCP_RST));
}

/* a connection attempt, not a retransmitted SYN-ACK */
static __always_inline int lb_tcp_syn(const struct lb_pkt *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN;
}

/* refreshes an entry on a hit; the map value is written in place (no update call per packet) */
static __always_inline void lb_ct_touch(struct lb_ct_entry *e, const struct lb_pkt *p, __u64 now)
{
	e->last_seen = now;
	if (lb_tcp_closing(p) && !(e->flags & LB_CT_F_CLOSING))
		e->flags |= LB_CT_F_CLOSING;
}

/* A SYN that no frontend translates, on a tuple whose reply a closed translated flow still claims
 * (a client port reused for a direct or socket-balanced connection to the same backend): the old
 * reverse entry would rewrite this connection's replies to the frontend. It is dropped. */
static __always_inline void lb_ct_forget_closed(const struct lb_pkt *p)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *ct;

	if (!lb_tcp_syn(p))
		return;
	lb_ct_key_rev_of(&k, p);
	ct = bpf_map_lookup_elem(&lb_ct, &k);
	if (ct && (ct->flags & LB_CT_F_CLOSING))
		bpf_map_delete_elem(&lb_ct, &k);
}

#endif
