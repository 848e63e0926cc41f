/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Fragments: the first fragment's ports remembered for the ones that carry no L4 header. */
/* tc sees fragments one by one (the kernel reassembles after tc ingress, and refragments before tc
 * egress), so every fragment of a translated datagram must be translated alike: the first by its own
 * ports, the later ones by the ports lb_frags remembered for (addresses, protocol, id). A later
 * fragment that arrives before its first, or after its entry aged out, passes untouched and counted
 * (LB_STAT_PASS_FRAGMENT): the kernel then drops the datagram it cannot reassemble, as it would any
 * datagram missing a piece. */
#ifndef KBP_LB_FRAG_H
#define KBP_LB_FRAG_H

#include "lb_maps.h"
#include "lb_parse.h"
#include "lb_ct.h"

static __always_inline void lb_frag_key_of(struct lb_frag_key *k, const struct lb_pkt *p)
{
	__builtin_memcpy(k->saddr, p->saddr.b, 16);
	__builtin_memcpy(k->daddr, p->daddr.b, 16);
	k->id = p->frag_id;
	k->proto = p->proto;
}

/* a first fragment: its ports, for the fragments that follow */
static __always_inline void lb_frag_remember(const struct lb_pkt *p)
{
	struct lb_frag_key k = {};
	struct lb_frag_val v = { .sport = p->sport, .dport = p->dport };

	lb_frag_key_of(&k, p);
	lb_lru_put(&lb_frags, &k, &v, LB_STAT_FRAG_INSERT);
}

/* a later fragment: the ports of its first fragment into p; -1 when it was not seen */
static __always_inline int lb_frag_ports(struct lb_pkt *p)
{
	struct lb_frag_key k = {};
	struct lb_frag_val *v;

	lb_frag_key_of(&k, p);
	v = bpf_map_lookup_elem(&lb_frags, &k);
	if (!v)
		return -1;
	p->sport = v->sport;
	p->dport = v->dport;
	return 0;
}

/* The parse result a program acts on: a first fragment is remembered, a later one gets its first
 * fragment's ports and is then translated like it (lb_skb_nat rewrites only its addresses). */
static __always_inline int lb_frag_resolve(struct lb_pkt *p, int r)
{
	if (r == LB_PARSE_OK && p->frag == LB_FRAG_FIRST)
		lb_frag_remember(p);
	if (r != LB_PARSE_FRAG_LATER)
		return r;
	if (lb_frag_ports(p) < 0)
		return LB_PARSE_FRAGMENT;
	return LB_PARSE_OK;
}

#endif
