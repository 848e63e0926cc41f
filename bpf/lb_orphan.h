/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Orphaned conntrack entries: the established flows of a deleted frontend. */
/* kube-proxy's NAT rules meet only a flow's first packet: the kernel's conntrack entry keeps
 * translating both directions after the Service is gone (pkg/proxy/conntrack/cleanup.go
 * CleanStaleEntries flushes only UDP entries, and only of Services that still exist). Our entries
 * name the frontend and backend by id, and the ids go with the Service (and are reused by the next
 * one). So before it deletes a frontend the agent rewrites its flows' lb_ct entries into orphans
 * (src/dataplane/bpf/ct-orphan.ts) that carry the translation themselves: LB_CT_F_ORPHAN, ids 0, a
 * forward entry the backend's address and port, a reverse entry the frontend's. They live and expire
 * as any lb_ct entry. A new flow sees no Service (a SYN never uses an orphaned entry), as kube-proxy
 * has no rule left for it. The agent keeps the lb_fe_filter bit of the flows' destination set while
 * they live: only packets on such a bit (or one a frontend shares) pay the lookup below. */
#ifndef KBP_LB_ORPHAN_H
#define KBP_LB_ORPHAN_H

#include "lb_ct.h"

/* A deleted frontend's flow whose client had sent only SYNs (in lb_ct_syn, orphaned there too: its
 * SYN_SENT entry keeps its DNAT under kube-proxy): the client's first packet that is no SYN moves both
 * entries into lb_ct, as lb_commit's promotion does for a live frontend's flow. Returns the forward
 * entry in lb_ct, or NULL. */
static __always_inline struct lb_ct_entry *lb_orphan_promote(const struct lb_ct_key *k, const struct lb_pkt *p,
							     __u16 want, __u64 now)
{
	struct lb_ct_key rk = {};
	struct lb_ct_entry *syn, *rev;

	syn = lb_ct_syn_lookup(k, now);
	if (!syn || !(syn->flags & LB_CT_F_ORPHAN) || (syn->flags & LB_CT_F_REV_AT_INGRESS) != want)
		return NULL;
	/* written from the map values themselves: no copy on lb_tc_orphan's stack, which with lb_tc's
	 * frame and a callee's is at the verifier's 512 bytes */
	syn->last_seen = now;
	if (lb_lru_put(&lb_ct, k, syn, LB_STAT_CT_INSERT) == 0)
		lb_ct_filter_set(k);
	/* the reply tuple: from the backend, which the forward orphan holds, to the client */
	__builtin_memcpy(rk.saddr, syn->fe_addr, 16);
	__builtin_memcpy(rk.daddr, p->saddr.b, 16);
	rk.sport = syn->orphan_port;
	rk.dport = p->sport;
	rk.proto = p->proto;
	rk.dir = LB_CT_DIR_REV;
	rev = bpf_map_lookup_elem(&lb_ct_syn, &rk);
	if (rev && (rev->flags & LB_CT_F_ORPHAN)) {
		rev->last_seen = now;
		if (lb_lru_put(&lb_ct, &rk, rev, LB_STAT_CT_INSERT) == 0)
			lb_ct_filter_set(&rk);
		lb_lru_del(&lb_ct_syn, &rk, LB_STAT_CT_SYN_DELETE);
	}
	lb_lru_del(&lb_ct_syn, k, LB_STAT_CT_SYN_DELETE);
	return bpf_map_lookup_elem(&lb_ct, k);
}

/* the orphaned forward entry of a client's packet, or NULL; want: the entry's LB_CT_F_REV_AT_INGRESS
 * value where this hook translates forward (0 at ingress); ct_missed: the caller's lookup of the
 * packet's forward key in lb_ct found nothing (tc ingress's lb_plain_ct), so only lb_ct_syn's orphans
 * are left to look for */
static __always_inline struct lb_ct_entry *lb_orphan_lookup(const struct lb_pkt *p, __u16 want, __u64 now, int ct_missed)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *ct = NULL;
	int expired = 0;

	if (lb_tcp_syn(p) || (ct_missed && p->proto != IPPROTO_TCP))
		return NULL;
	lb_ct_key_fwd(&k, p);
	if (!ct_missed)
		ct = lb_ct_lookup(&k, now, &expired);
	if (!ct && p->proto == IPPROTO_TCP)
		ct = lb_orphan_promote(&k, p, want, now);
	if (!ct || !(ct->flags & LB_CT_F_ORPHAN) || (ct->flags & LB_CT_F_REV_AT_INGRESS) != want)
		return NULL;
	return ct;
}

/* A hit on an orphaned forward entry: refreshed as lb_ct_touch() does; when that wrote last_seen, the
 * flow's reverse entry is refreshed too, or written again from this one when eviction took it (the
 * packet's destination is the address and port replies leave from). A flow orphaned in its handshake
 * (LB_CT_F_SYN: a SYN over a closed flow's entries) ends it at the client's first packet that is no
 * SYN (lb_orphan_lookup passes no SYN), as a live frontend's does (lb_select, lb_commit): kube-proxy
 * leaves a deleted Service's TCP conntrack entries alone, so the flow goes on as established; the
 * flag is cleared in the reverse entry first, then here, and the reverse entry refreshed with it. */
static __always_inline void lb_orphan_touch(struct lb_ct_entry *ct, const struct lb_pkt *p,
					    const __u8 *be_addr, __be16 be_port, __u64 now)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *rev, e = {};
	__u16 syn_done = ct->flags & LB_CT_F_SYN;

	if (!lb_ct_touch(ct, p, now) && !syn_done)
		return;
	__builtin_memcpy(k.saddr, be_addr, 16);
	__builtin_memcpy(k.daddr, p->saddr.b, 16);
	k.sport = be_port;
	k.dport = p->sport;
	k.proto = p->proto;
	k.dir = LB_CT_DIR_REV;
	rev = bpf_map_lookup_elem(&lb_ct, &k);
	if (rev) {
		/* a live flow of a frontend on the same reply tuple keeps its entry (lb_ct_clash) */
		if (rev->flags & LB_CT_F_ORPHAN) {
			rev->last_seen = now;
			if (rev->flags & LB_CT_F_SYN)
				rev->flags &= ~LB_CT_F_SYN;
		}
		if (syn_done)
			ct->flags &= ~LB_CT_F_SYN;
		return;
	}
	if (syn_done)
		ct->flags &= ~LB_CT_F_SYN;
	e.last_seen = now;
	e.flags = ct->flags;
	e.orphan_port = p->dport;
	__builtin_memcpy(e.fe_addr, p->daddr.b, 16);
	if (lb_lru_put(&lb_ct, &k, &e, LB_STAT_CT_INSERT) == 0) {
		lb_ct_filter_set(&k);
		lb_stat_inc(LB_STAT_CT_REV_RESTORED);
	}
	lb_rev_filter_set(be_addr, be_port, p->proto, &p->saddr);
}

#endif
