/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Service lookups: frontend, source ranges, conntrack reuse, affinity, Maglev, backend choice. */
/* Shared by tc and XDP, and in part by the socket hooks. lb_select() only reads (apart from
 * refreshing a conntrack entry it reuses), lb_commit() records the choice: XDP can decide to leave a
 * packet to tc after selecting, and tc then makes the same choice from the same maps. */
#ifndef KBP_LB_SVC_H
#define KBP_LB_SVC_H

#include "lb_maps.h"
#include "lb_stats.h"
#include "lb_parse.h"
#include "lb_hash.h"
#include "lb_ct.h"

static __always_inline struct lb_config lb_get_config(void)
{
	struct lb_config cfg = { .snat_mark = LB_SNAT_MARK_DEFAULT };
	__u32 zero = 0;
	struct lb_config *c = bpf_map_lookup_elem(&lb_config, &zero);

	if (c) {
		cfg.hash_seed = c->hash_seed;
		cfg.flags = c->flags;
		if (c->snat_mark)
			cfg.snat_mark = c->snat_mark;
	}
	return cfg;
}

static __always_inline int lb_dev_is_external(__u32 ifindex)
{
	struct lb_device *d = bpf_map_lookup_elem(&lb_devices, &ifindex);

	return d && (d->flags & LB_DEV_F_EXTERNAL);
}

/* the frontend of exactly k's address, port and protocol, in the given scope first, then in the
 * other one (k->scope is overwritten); frontends a node serves alike for everyone
 * (externalTrafficPolicy Cluster) are written once, with external scope */
static __always_inline struct lb_frontend *__lb_lookup_frontend(struct lb_fe_key *k, __u8 scope)
{
	struct lb_frontend *fe;

	k->scope = scope;
	fe = bpf_map_lookup_elem(&lb_frontends, k);
	if (fe)
		return fe;
	k->scope = scope == LB_SCOPE_EXTERNAL ? LB_SCOPE_INTERNAL : LB_SCOPE_EXTERNAL;
	return bpf_map_lookup_elem(&lb_frontends, k);
}

static __always_inline int lb_fe_filter_has(__u32 bit)
{
	__u32 key = 1 + (bit >> 6);
	__u64 *w = bpf_map_lookup_elem(&lb_fe_filter, &key);

	return !w || ((*w >> (bit & 63)) & 1);
}

/* 0 when no frontend can match the packet's destination, on its address or on the any-address;
 * 1 when one may (or the filter is not filled yet) */
static __always_inline int lb_fe_filter_may(const struct lb_pkt *p)
{
	__u32 any[4] = {}, key = 0;
	__u64 *on = bpf_map_lookup_elem(&lb_fe_filter, &key);

	if (!on || !*on)
		return 1;
	if (lb_fe_filter_has(lb_fe_filter_bit(p->daddr.w, p->dport, p->proto)))
		return 1;
	if (lb_addr_is_v4(&p->daddr))
		any[2] = bpf_htonl(0x0000ffff); /* ::ffff:0.0.0.0 */
	return lb_fe_filter_has(lb_fe_filter_bit(any, p->dport, p->proto));
}

/* the frontend a packet addresses, in its own scope first, then in the other one; then a NodePort
 * for any address. Callers ask lb_fe_filter_may() first (and skip the device lookup too). */
static __always_inline struct lb_frontend *lb_lookup_frontend(const struct lb_pkt *p, __u8 scope)
{
	struct lb_fe_key k = {};
	struct lb_frontend *fe;

	__builtin_memcpy(k.addr, p->daddr.b, 16);
	k.port = p->dport;
	k.proto = p->proto;
	fe = __lb_lookup_frontend(&k, scope);
	if (fe)
		return fe;
	/* NodePorts compiled for any address (--nodeport-addresses 0.0.0.0/0, or no node address
	 * known) answer on this node's own addresses only, never on traffic passing through */
	if (!bpf_map_lookup_elem(&lb_node_addrs, k.addr))
		return NULL;
	__builtin_memset(k.addr, 0, 16);
	if (lb_addr_is_v4(&p->daddr)) {
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
	}
	return __lb_lookup_frontend(&k, scope);
}

/* lb_fe_ids' entry of id fe_id (a conntrack entry's) when it holds a frontend of exactly p's address,
 * port and protocol, with that id; NULL for anything else (a NodePort on the any-address, an id
 * without a frontend or reused for another key, an id past the array): the caller then looks the
 * frontend up. Its frontend is the one lb_lookup_frontend(p, scope) returns in the entry's scope,
 * and in either scope without LB_FE_SLOT_F_TWIN (lb_frontends holds it under the key that lookup
 * tries first, or it is the only entry the lookup can find): lb_fe_of_slot(). */
static __always_inline struct lb_fe_slot *lb_fe_slot_of(__u32 fe_id, const struct lb_pkt *p)
{
	struct lb_fe_slot *s = bpf_map_lookup_elem(&lb_fe_ids, &fe_id);
	const __u32 *a;

	if (!s || fe_id == 0 || s->fe.fe_id != fe_id || s->key.proto != p->proto || s->key.port != p->dport)
		return NULL;
	a = (const __u32 *)s->key.addr;
	if (a[0] != p->daddr.w[0] || a[1] != p->daddr.w[1] || a[2] != p->daddr.w[2] || a[3] != p->daddr.w[3])
		return NULL;
	return s;
}

/* the frontend of lb_fe_slot_of()'s entry s for a packet in scope (scope -1: not known, as no device
 * was looked up), or NULL where the lookup could find another (the caller looks up) */
static __always_inline struct lb_frontend *lb_fe_of_slot(struct lb_fe_slot *s, int scope)
{
	if (!s || ((s->flags & LB_FE_SLOT_F_TWIN) && s->key.scope != scope))
		return NULL;
	return &s->fe;
}

/* a frontend without backends is refused at once (kube-proxy's REJECT for a Service without
 * endpoints) */
static __always_inline int lb_fe_no_backends(const struct lb_frontend *fe)
{
	return fe->backend_count == 0 || fe->maglev_m == 0;
}

/* the fe_id that keys a frontend's lb_affinity entries: its Service port's group, shared by every
 * frontend of that port (entries of an earlier build have none: their own id) */
static __always_inline __u32 lb_affinity_group(const struct lb_frontend *fe)
{
	return fe->affinity_group ? fe->affinity_group : fe->fe_id;
}

/* an affinity entry still binds its client: last used within the frontend's timeout */
static __always_inline int lb_affinity_fresh(const struct lb_frontend *fe, const struct lb_affinity_val *av,
					     __u64 now)
{
	return (__s64)(now - av->last_used) <= (__s64)((__u64)fe->affinity_timeout * LB_NSEC_PER_SEC);
}

/* loadBalancerSourceRanges: src may use the frontend (tc and XDP with the packet's source, the
 * socket hooks with the socket's) */
static __always_inline int lb_src_range_ok(const struct lb_frontend *fe, const union lb_addr *src)
{
	struct lb_src_range_key k = { .prefixlen = 32 + 128, .fe_id = fe->fe_id };

	if (!(fe->flags & LB_FE_F_SOURCE_RANGES))
		return 1;
	__builtin_memcpy(k.addr, src->b, 16);
	return bpf_map_lookup_elem(&lb_src_ranges, &k) != NULL;
}

static __always_inline int lb_source_allowed(const struct lb_frontend *fe, const struct lb_pkt *p)
{
	return lb_src_range_ok(fe, &p->saddr);
}

/* The backend id in slot h % M of a frontend's Maglev table (tc, XDP and the socket hooks), or 0
 * after counting why: LB_STAT_DROP_TABLE_MISSING with *table_missing set when there is no table to
 * read (M 0, an M user space never builds, or a slot past the array's end), else
 * LB_STAT_DROP_BACKEND_ID_ZERO (an empty slot). The table is slots maglev_off .. maglev_off + M - 1
 * of lb_maglev_slots: one array lookup, which the verifier inlines. The array's size is set at load
 * (--bpf-map-max), so the lookup bounds the slot, not LB_MAGLEV_SLOTS_MAX; off + M must not wrap. */
static __always_inline __u32 lb_maglev_backend(const struct lb_frontend *fe, __u32 h, int *table_missing)
{
	__u32 off = fe->maglev_off, m = fe->maglev_m, slot, idx, id = 0;
	struct lb_maglev_elem *e = NULL;

	if (m != 0 && m <= LB_MAGLEV_M_MAX && off <= 0xffffffffU - m) {
		slot = off + h % m;
		idx = slot / LB_MAGLEV_IDS_PER_ELEM;
		e = bpf_map_lookup_elem(&lb_maglev_slots, &idx);
	}
	*table_missing = !e;
	if (!e) {
		lb_stat_inc(LB_STAT_DROP_TABLE_MISSING);
		return 0;
	}
	id = e->backend_id[slot & 1];
	if (id == 0)
		lb_stat_inc(LB_STAT_DROP_BACKEND_ID_ZERO);
	return id;
}

enum lb_verdict {
	LB_V_XLATE = 0,   /* translate to sel->be */
	LB_V_DROP,        /* drop; the reason is already counted */
	LB_V_REJECT,      /* no backend: refuse (TCP RST / ICMP unreachable) */
	LB_V_RESET,       /* TCP flow whose backend is gone: reset */
	LB_V_ORPHAN,      /* a deleted frontend's flow (lb_orphan.h): translated by its own entry */
};

/* events counted only when the caller acts on the selection (XDP may leave it to tc) */
#define LB_EV_AFFINITY_HIT (1 << 0)
#define LB_EV_AFFINITY_EXPIRED (1 << 1)
#define LB_EV_CT_BACKEND_GONE (1 << 2)
#define LB_EV_CT_EXPIRED (1 << 3)
#define LB_EV_CT_REFRESHED (1 << 4)  /* a hit that refreshed last_seen: the reverse entry is refreshed too */
#define LB_EV_CT_SYN_DONE (1 << 5)   /* the client's first packet that is no SYN on an LB_CT_F_SYN flow */

struct lb_sel {
	struct lb_backend be;   /* copy of the chosen backend */
	__u32 backend_id;
	__u16 ct_flags;         /* LB_CT_F_* for a new entry, or the reused entry's */
	__u8 ct_hit;            /* reused a conntrack entry: nothing to commit */
	__u8 events;            /* LB_EV_* */
	__u8 promote;           /* the handshake's ACK of an lb_ct_syn flow: its entries move to lb_ct */
	__u8 had_ct;            /* an lb_ct entry existed for the tuple (a SYN re-selecting over it) */
	__u16 pad;
};

static __always_inline void lb_count_events(__u8 ev)
{
	if (ev & LB_EV_AFFINITY_HIT)
		lb_stat_inc(LB_STAT_AFFINITY_HIT);
	if (ev & LB_EV_AFFINITY_EXPIRED)
		lb_stat_inc(LB_STAT_AFFINITY_EXPIRED);
	if (ev & LB_EV_CT_BACKEND_GONE)
		lb_stat_inc(LB_STAT_CT_BACKEND_GONE);
	if (ev & LB_EV_CT_EXPIRED)
		lb_stat_inc(LB_STAT_CT_EXPIRED);
}

/* a backend of this frontend now, or NULL: a conntrack or affinity entry names a backend id, and the
 * id may since have left the frontend (still serving others) or been freed and reused */
static __always_inline struct lb_backend *lb_member_backend(__u32 fe_id, __u32 id)
{
	struct lb_member_key mk = { .fe_id = fe_id, .backend_id = id };

	if (!bpf_map_lookup_elem(&lb_members, &mk))
		return NULL;
	return lb_backend_get(id);
}

/* lb_ct's entry of a packet's forward tuple, for lb_plain_hit(): NULL when there is none, and for a
 * SYN, which is not looked up here (lb_select's lookup behind lb_ct_filter is its). tc looks it up
 * before the frontend, whose id the entry names (lb_fe_slot_of). */
static __always_inline struct lb_ct_entry *lb_plain_ct(const struct lb_pkt *p)
{
	struct lb_ct_key ck = {};

	if (lb_tcp_syn(p))
		return NULL;
	lb_ct_key_fwd(&ck, p);
	return bpf_map_lookup_elem(&lb_ct, &ck);
}

/* A plain conntrack hit (tc's lb_tc_hit, XDP's lb_xdp_hit: most packets to a frontend, translated
 * inline by the hook): what lb_select() and lb_commit() would do for a packet of an established flow
 * with no refresh due, not in its handshake, whose entry has none of the flags in `unless`
 * (LB_CT_F_ORPHAN and LB_CT_F_SYN always: the handshake's end clears the flag in both entries), from a source the frontend's
 * source ranges allow (an LPM lookup, only with LB_FE_F_SOURCE_RANGES; since session 32, when the
 * whole path's second lb_ct lookup made such a hit dearer). A FIN or RST is one too: its entry
 * flagged LB_CT_F_CLOSING here, in place, as lb_select()'s lb_ct_touch() flags it (lb_commit writes
 * nothing more for such a hit);
 * the whole path cost a client's closing packet a second lb_ct lookup, the lb_members and
 * lb_backends lookups and tc's scratch and copies, or XDP's subprogram call (docs/perf-log.md, session
 * 29). ct: lb_plain_ct(p), the caller's lookup. 1 with *bep its backend; -1 when lb_ct holds no
 * entry of the packet's tuple (a UDP first packet, a handshake's ACK); 0 for anything else (the whole
 * path looks again). One function for both hooks, so that a condition the whole path has cannot be
 * left out of one of them. */
static __always_inline int lb_plain_hit(const struct lb_pkt *p, const struct lb_frontend *fe, __u32 unless,
					struct lb_ct_entry *ct, struct lb_backend **bep)
{
	__u64 now;

	if (lb_tcp_syn(p))
		return 0;
	if (!ct)
		return -1;
	if (fe->fe_id == 0)
		return 0;
	now = lb_now(); /* not for a SYN: the whole path reads its own */
	if (ct->fe_id != fe->fe_id || (ct->flags & (LB_CT_F_ORPHAN | LB_CT_F_SYN | unless)) || !lb_ct_alive(ct, p->proto, now) ||
	    lb_ct_refresh_due(ct, now))
		return 0;
	/* loadBalancerSourceRanges hold for every packet, as lb_select checks them: a source outside
	 * them takes the whole path, which drops it and counts it */
	if (!lb_source_allowed(fe, p))
		return 0;
	*bep = lb_member_backend(fe->fe_id, ct->backend_id);
	if (!*bep)
		return 0; /* the whole path resets the flow (lb_select: LB_V_RESET), its entry untouched */
	lb_ct_touch(ct, p, now); /* a FIN's or RST's CLOSING flag only: no refresh is due */
	return 1;
}

static __always_inline int lb_backend_is_v4(const struct lb_backend *be)
{
	union lb_addr a;

	__builtin_memcpy(a.b, be->addr, 16);
	return lb_addr_is_v4(&a);
}

static __always_inline int lb_backend_family_ok(const struct lb_backend *be, const struct lb_pkt *p)
{
	return lb_backend_is_v4(be) == (p->family == 4);
}

/* a source of the cluster's own pods, as kube-proxy's detect-local tells it: arrived on a device
 * flagged LB_DEV_F_LOCAL_SRC (BridgeInterface, InterfaceNamePrefix), or from an address in the
 * fe_id 0 ranges of lb_src_ranges (ClusterCIDR, NodeCIDR); ifindex 0 is host-originated */
static __always_inline int lb_src_is_local(const struct lb_pkt *p, __u32 ifindex)
{
	struct lb_src_range_key k = { .prefixlen = 32 + 128, .fe_id = 0 };
	struct lb_device *d;

	if (ifindex) {
		d = bpf_map_lookup_elem(&lb_devices, &ifindex);
		if (d && (d->flags & LB_DEV_F_LOCAL_SRC))
			return 1;
	}
	__builtin_memcpy(k.addr, p->saddr.b, 16);
	return bpf_map_lookup_elem(&lb_src_ranges, &k) != NULL;
}

/* SNAT through the kernel's masquerade: a pod balanced to itself (it would answer itself directly,
 * from the wrong address); what kube-proxy's KUBE-MARK-MASQ marks (every flow with masqueradeAll or
 * to an eTP=Cluster external address; to a clusterIP, flows from outside the cluster's pods); and
 * external traffic of an eTP=Cluster frontend to a backend on another node (its reply must come back
 * through this node) */
static __always_inline __u16 lb_snat_flags(const struct lb_frontend *fe, const struct lb_backend *be,
					   const struct lb_pkt *p, int external, __u32 ifindex)
{
	union lb_addr a;

	__builtin_memcpy(a.b, be->addr, 16);
	if (lb_addr_eq(&a, &p->saddr))
		return LB_CT_F_SNAT | LB_CT_F_HAIRPIN;
	if (fe->flags & LB_FE_F_MASQ_ALL)
		return LB_CT_F_SNAT;
	if ((fe->flags & LB_FE_F_MASQ_OFF_CLUSTER) && !lb_src_is_local(p, ifindex))
		return LB_CT_F_SNAT;
	if (external && (fe->flags & LB_FE_F_SNAT_REMOTE) && !(be->flags & LB_BE_F_LOCAL))
		return LB_CT_F_SNAT;
	return 0;
}

/* Chooses the backend of one forward packet that arrived on ifindex (0: host-originated). ct_filter
 * (LB_CTF_*, a constant at each call site): a SYN's lb_ct lookups go behind lb_ct_filter, its
 * functions called (tc) or inlined (XDP's lb_xdp_forward, lb_xdp.bpf.c). ct_missed: the caller has
 * just looked ck up in lb_ct and found nothing (tc's lb_tc_hit): not looked up again. ck: the
 * caller's storage for the forward key (tc's lb_scratch). */
static __always_inline int lb_select(const struct lb_frontend *fe, const struct lb_pkt *p, int external,
				     __u32 ifindex, const struct lb_config *cfg, __u64 now, struct lb_sel *sel,
				     struct lb_ct_key *ck, int ct_filter, int ct_missed)
{
	struct lb_ct_entry *ct;
	struct lb_backend *be = NULL;
	__u32 id = 0, h;
	__be16 hport = p->sport;
	int missing, expired = 0;

	if (fe->fe_id == 0) {
		lb_stat_inc(LB_STAT_DROP_FE_ID_ZERO);
		return LB_V_DROP;
	}
	if (!lb_source_allowed(fe, p)) {
		lb_stat_inc(LB_STAT_DROP_SOURCE_RANGE);
		return LB_V_DROP;
	}

	lb_ct_key_fwd(ck, p);
	/* a connection attempt's key is rarely there (a client port reused, a retransmitted SYN): a
	 * clear filter bit skips the lookup; every other packet is a hit and looks up at once */
	ct = ct_missed ? NULL
	     : !ct_filter || !lb_tcp_syn(p) || lb_ct_filter_may_as(ck, ct_filter) ? lb_ct_lookup(ck, now, &expired) : NULL;
	if (expired)
		sel->events |= LB_EV_CT_EXPIRED;
	else
		sel->had_ct = ct != NULL;
	/* the handshake's ACK (or any later packet) of a flow that so far sent only SYNs */
	if (!ct && p->proto == IPPROTO_TCP && !lb_tcp_syn(p)) {
		ct = lb_ct_syn_lookup(ck, now);
		sel->promote = ct != NULL;
	}
	if (ct) {
		/* a flow of a deleted frontend on the address of a new one keeps its backend, as the
		 * kernel's conntrack keeps it under kube-proxy; a SYN is a new flow (fe_id 0: re-selected) */
		if ((ct->flags & LB_CT_F_ORPHAN) && !lb_tcp_syn(p))
			return LB_V_ORPHAN;
		id = ct->backend_id;
		/* the entry must still belong to this frontend (ids are reused) and its backend to it */
		be = ct->fe_id == fe->fe_id ? lb_member_backend(fe->fe_id, id) : NULL;
		if (be) {
			/* a terminating backend drains its flows, but a new connection on a reused
			 * client port must not land on it; and a SYN on a flow that saw FIN or RST is a
			 * new flow, whose entries (both directions) are written afresh */
			if (!(lb_tcp_syn(p) && ((be->flags & LB_BE_F_TERMINATING) || (ct->flags & LB_CT_F_CLOSING)))) {
				sel->be = *be;
				sel->backend_id = id;
				if (sel->promote) {
					sel->ct_flags = ct->flags;
					if (lb_tcp_closing(p))
						sel->ct_flags |= LB_CT_F_CLOSING;
					sel->ct_hit = 0;
					return LB_V_XLATE;
				}
				if (lb_ct_touch(ct, p, now))
					sel->events |= LB_EV_CT_REFRESHED;
				sel->ct_flags = ct->flags;
				/* the handshake of a SYN over a closed flow's entries is over: lb_commit
				 * clears the flag in both entries (here nothing is written: XDP may still
				 * leave the packet to tc, whose own selection must see the flag) */
				if ((ct->flags & LB_CT_F_SYN) && !lb_tcp_syn(p)) {
					sel->ct_flags &= ~LB_CT_F_SYN;
					sel->events |= LB_EV_CT_REFRESHED | LB_EV_CT_SYN_DONE;
				}
				sel->ct_hit = 1;
				return LB_V_XLATE;
			}
		} else if (p->proto == IPPROTO_TCP && !lb_tcp_syn(p)) {
			return LB_V_RESET;
		} else {
			sel->events |= LB_EV_CT_BACKEND_GONE;
		}
		sel->promote = 0;
	}

	if (lb_fe_no_backends(fe)) {
		/* kube-proxy rejects only when the Service has no endpoint at all; with endpoints on
		 * other nodes, a Local policy drops, so load balancers go by the health check */
		if (fe->flags & LB_FE_F_DROP_NO_LOCAL) {
			lb_stat_inc(LB_STAT_DROP_NO_LOCAL);
			return LB_V_DROP;
		}
		return LB_V_REJECT;
	}

	id = 0;
	if (fe->flags & LB_FE_F_AFFINITY) {
		struct lb_affinity_key ak = { .fe_id = lb_affinity_group(fe) };
		struct lb_affinity_val *av;

		__builtin_memcpy(ak.client, p->saddr.b, 16);
		av = bpf_map_lookup_elem(&lb_affinity, &ak);
		if (av) {
			__u32 aid = av->backend_id;

			/* the entry is the Service port's (lb_affinity_group); its backend must be one
			 * of THIS frontend's: an eTP=Local frontend has fewer, and kube-proxy's chain
			 * for it checks only its own endpoints' lists, so Maglev picks anew. A
			 * terminating backend gets no new connections through affinity either (as
			 * kube-proxy drops it from the endpoint chains); if only terminating ones are
			 * left, Maglev picks among them anyway */
			if (lb_affinity_fresh(fe, av, now) &&
			    (be = lb_member_backend(fe->fe_id, aid)) && !(be->flags & LB_BE_F_TERMINATING)) {
				id = aid;
				sel->events |= LB_EV_AFFINITY_HIT;
			} else {
				sel->events |= LB_EV_AFFINITY_EXPIRED;
			}
		}
		hport = 0;
	}
	if (!id) {
		h = lb_flow_hash(p->saddr.w, hport, p->proto, cfg->hash_seed);
		id = lb_maglev_backend(fe, h, &missing);
		if (missing)
			return LB_V_REJECT;
		if (id == 0)
			return LB_V_DROP;
		be = lb_backend_get(id);
	}
	if (!be || !lb_backend_family_ok(be, p)) {
		lb_stat_inc(LB_STAT_DROP_BACKEND_MISSING);
		return LB_V_DROP;
	}
	if (lb_ct_clash(p, be, fe->fe_id, now, ct_filter)) {
		lb_stat_inc(LB_STAT_DROP_CT_CLASH);
		return LB_V_DROP;
	}
	sel->be = *be;
	sel->backend_id = id;
	sel->ct_flags = lb_snat_flags(fe, be, p, external, ifindex);
	sel->ct_hit = 0;
	return LB_V_XLATE;
}

/* Records the choice: for a new flow both conntrack entries (in lb_ct_syn while a TCP client has
 * sent only SYNs, else lb_ct) and the affinity; for a hit, the refresh of its reverse entry.
 * extra_flags e.g. REV_AT_INGRESS. */
static __always_inline void lb_commit(const struct lb_frontend *fe, const struct lb_pkt *p,
				      struct lb_sel *sel, __u16 extra_flags, __u64 now, int ctf,
				      struct lb_ct_key *k, struct lb_ct_key *rk, struct lb_ct_entry *e)
{
	void *ctmap = &lb_ct;
	__u32 ins = LB_STAT_CT_INSERT;
	int in_ct = 1;

	__builtin_memset(e, 0, sizeof(*e));
	e->last_seen = now;
	e->backend_id = sel->backend_id;
	e->fe_id = fe->fe_id;
	/* a forward packet's destination is the frontend address and port the client used: for a
	 * NodePort on the any-address, the node address its replies must come from */
	__builtin_memcpy(e->fe_addr, p->daddr.b, 16);
	e->fe_port = p->dport;
	lb_count_events(sel->events);
	if (sel->ct_hit) {
		lb_stat_inc(LB_STAT_FWD_CT_HIT);
		if ((sel->events & LB_EV_CT_REFRESHED)) {
			e->flags = sel->ct_flags;
			if (lb_ct_refresh_rev(p, &sel->be, e, now, ctf))
				lb_stat_inc(LB_STAT_CT_REV_RESTORED);
			/* the forward entry's flag after the reverse one's: k still holds the key
			 * lb_select looked up */
			if (sel->events & LB_EV_CT_SYN_DONE) {
				struct lb_ct_entry *f = bpf_map_lookup_elem(&lb_ct, k);

				if (f)
					f->flags &= ~LB_CT_F_SYN;
			}
		}
		return;
	}
	if (!sel->promote)
		sel->ct_flags |= extra_flags;
	e->flags = sel->ct_flags;
	if (lb_tcp_closing(p))
		e->flags |= LB_CT_F_CLOSING;
	lb_ct_key_fwd(k, p);
	lb_ct_key_rev(rk, p, &sel->be);
	/* a brand-new tuple's SYN waits in lb_ct_syn; a SYN re-selecting over an lb_ct entry replaces it,
	 * flagged LB_CT_F_SYN: a handshake that never completes lives the SYN timeout there too (as
	 * nf_conntrack's SYN_SENT after a SYN over a TIME_WAIT or CLOSE entry), not the established one */
	if (lb_tcp_syn(p)) {
		if (sel->had_ct) {
			e->flags |= LB_CT_F_SYN;
		} else {
			ctmap = &lb_ct_syn;
			ins = LB_STAT_CT_SYN_INSERT;
			in_ct = 0;
		}
	}
	/* A SYN re-selecting over an lb_ct entry (a client port reused while the closed flow's entries
	 * live on) finds both keys there, buckets warm: each is rewritten in place (no LRU node popped
	 * and pushed back). A brand-new tuple's keys are inserted at once: its reverse key was looked up
	 * by lb_ct_clash() and is rarely there (a retransmitted SYN, a flow past its lifetime), and
	 * lb_lru_put() overwrites it then. One condition for both keys: a second one (whether the clash
	 * check saw the key) cost the verifier 0.65 s at every load (session 19). */
	if (sel->had_ct ? lb_ct_put_looked(ctmap, k, e, ins) : lb_lru_put(ctmap, k, e, ins))
		lb_stat_inc(LB_STAT_CT_FULL);
	if (sel->had_ct ? lb_ct_put_looked(ctmap, rk, e, ins) : lb_lru_put(ctmap, rk, e, ins))
		lb_stat_inc(LB_STAT_CT_FULL);
	/* after the entries, as lb_rev_filter's bits (a rebuild's scan then finds an entry written before
	 * its zeroing, and one written after sets its bit in the new half itself) */
	if (in_ct) {
		lb_ct_filter_set_as(k, ctf);
		lb_ct_filter_set_as(rk, ctf);
	}
	lb_rev_filter_set(sel->be.addr, sel->be.port, p->proto, &p->saddr);
	if (sel->promote) {
		lb_lru_del(&lb_ct_syn, k, LB_STAT_CT_SYN_DELETE);
		lb_lru_del(&lb_ct_syn, rk, LB_STAT_CT_SYN_DELETE);
		lb_stat_inc(LB_STAT_FWD_CT_HIT);
		return;
	}
	if (fe->flags & LB_FE_F_AFFINITY) {
		struct lb_affinity_key ak = { .fe_id = lb_affinity_group(fe) };
		struct lb_affinity_val av = { .last_used = now, .backend_id = sel->backend_id };

		__builtin_memcpy(ak.client, p->saddr.b, 16);
		bpf_map_update_elem(&lb_affinity, &ak, &av, BPF_ANY);
	}
	lb_stat_inc(LB_STAT_FWD_NEW);
}

#endif
