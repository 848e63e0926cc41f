/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The tc path's steps: forward, reply and ICMP-error translation, and the programs' dispatch. */
/* Entry points in lb_tc.bpf.c. ICMP(v6) errors about translated flows are rewritten where replies
 * are, so clients see errors (port unreachable, PMTU "too big") from the frontend they talk to. */
#ifndef KBP_LB_TC_H
#define KBP_LB_TC_H

#include <linux/pkt_cls.h>
#include "lb_maps.h"
#include "lb_parse.h"
#include "lb_stats.h"
#include "lb_svc.h"
#include "lb_nat.h"
#include "lb_reject.h"
#include "lb_eip.h"
#include "lb_frag.h"
#include "lb_orphan.h"

/* bytes of a frame the parser may read by direct access: Ethernet, IPv6 with an extension header or
 * two and TCP with options, or an ICMPv6 error quoting such a header. A shorter linear area (headers
 * in paged fragments, as some drivers and GRO leave them) is pulled up to this first. */
#define LB_PULL_LEN 128

/* lb_scratch's value (per CPU, key 0): what lb_tc_forward() would otherwise build on its stack, a
 * new flow's selection, configuration, two conntrack keys and entry (the verifier's 512 bytes hold
 * lb_tc's frame, lb_tc_forward inlined in it, and one global callee's). Nothing in it outlives one packet: a tc program
 * runs to its end on one CPU with bottom halves off, and no other program uses it. */
struct lb_scratch {
	struct lb_sel sel;
	struct lb_config cfg;
	struct lb_ct_key fwd;
	struct lb_ct_key rev;
	struct lb_ct_entry e;
};

/* Not pinned: it holds no state, each loaded object has its own. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_scratch);
} lb_scratch SEC(".maps");

/* what lb_tc_forward() returns besides a TC_ACT_* verdict: the step its caller takes next, each
 * off lb_tc_forward's stack (the verifier's 512 bytes hold lb_tc's frame and one callee's) */
#define LB_TC_FWD_REROUTE 1000 /* translated; routed anew to *reroute (lb_tc_reroute) */
#define LB_TC_FWD_ORPHAN 1001  /* a deleted frontend's flow: lb_tc_orphan() */
#define LB_TC_FWD_REJECT 1002  /* no backend: refused (lb_tc_refuse) */
#define LB_TC_FWD_RESET 1003   /* a TCP flow whose backend is gone: reset (lb_tc_refuse) */
/* lb_tc_hit(): no plain hit, and lb_ct holds no entry of the packet's forward tuple (lb_select's
 * ct_missed) */
#define LB_TC_HIT_NO_CT (-2)

#ifndef AF_INET
#define AF_INET 2
#define AF_INET6 10
#endif

/* A packet the host sends was routed for the frontend address, before tc egress translated it:
 * the backend may be behind another device (a local pod's veth while the VIP's route is the default
 * route), or behind none. It is routed anew for the backend (bpf_fib_lookup) and redirected there
 * (bpf_redirect_neigh, which resolves the next hop); where the backend is not reachable that way
 * (no route, a local address, forwarding off) it is dropped and counted, never sent out the wrong
 * device. */
static __always_inline int lb_tc_reroute(struct __sk_buff *skb, const struct lb_pkt *p, const struct lb_backend *be)
{
	struct bpf_fib_lookup fib = {};
	long ret;

	fib.ifindex = skb->ifindex;
	fib.l4_protocol = p->proto;
	fib.sport = p->sport;
	fib.dport = be->port;
	if (p->family == 4) {
		union lb_addr a;

		__builtin_memcpy(a.b, be->addr, 16);
		fib.family = AF_INET;
		fib.ipv4_src = p->saddr.w[3];
		fib.ipv4_dst = a.w[3];
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, p->saddr.b, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
	}
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret == BPF_FIB_LKUP_RET_SUCCESS || ret == BPF_FIB_LKUP_RET_NO_NEIGH) {
		if (fib.ifindex == skb->ifindex)
			return TC_ACT_OK;
		lb_stat_inc(LB_STAT_HOST_REROUTE);
		return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
	}
	lb_stat_inc(LB_STAT_DROP_HOST_NO_ROUTE);
	return TC_ACT_SHOT;
}

/* a client's packet of a deleted frontend's established flow (lb_orphan.h), translated by its
 * orphaned entry as lb_tc_forward() translates a hit; -1 when the packet has none. ct_missed: lb_ct
 * holds no entry of the packet's forward key (the caller looked): only a flow orphaned in its
 * handshake (lb_ct_syn) can be one */
__noinline int lb_tc_orphan(struct __sk_buff *skb, const struct lb_pkt *p, int at_ingress, int ct_missed)
{
	struct lb_backend be = {};
	struct lb_ct_entry *ct;
	struct lb_config cfg;
	__u64 now;

	if (!p)
		return -1;
	now = lb_now();
	ct = lb_orphan_lookup(p, at_ingress ? 0 : LB_CT_F_REV_AT_INGRESS, now, ct_missed);
	if (!ct)
		return -1;
	__builtin_memcpy(be.addr, ct->fe_addr, 16);
	be.port = ct->orphan_port;
	if (at_ingress && (ct->flags & LB_CT_F_SNAT)) {
		cfg = lb_get_config();
		skb->mark |= cfg.snat_mark;
	}
	lb_orphan_touch(ct, p, be.addr, be.port, now);
	if (lb_skb_nat(skb, p, LB_NAT_DST, be.addr, be.port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return TC_ACT_SHOT;
	}
	lb_stat_inc(LB_STAT_CT_ORPHAN);
	if (!at_ingress) {
		cfg = lb_get_config();
		if (cfg.flags & LB_CFG_F_HOST_REROUTE)
			return lb_tc_reroute(skb, p, &be);
	}
	return TC_ACT_OK;
}

/* A plain conntrack hit (lb_plain_hit: most packets to a frontend, and a FIN or RST with no refresh
 * due, its entry flagged closing there), translated inline in lb_tc; a call for every hit would cost
 * it ~10 ns on this VM (the call's return through the kernel's SRSO safe-RET thunk). Else negative: lb_tc_forward() then takes the whole path, LB_TC_HIT_NO_CT when
 * lb_ct holds no entry of the packet's tuple (lb_select does not look again), -1 for anything else
 * (it looks the entry up again, its bucket warm). A host packet's hit to be routed anew returns
 * LB_TC_FWD_REROUTE with *reroute its backend. */
static __always_inline int lb_tc_hit(struct __sk_buff *skb, const struct lb_pkt *p, const struct lb_frontend *fe,
				     int at_ingress, const struct lb_backend **reroute, struct lb_ct_entry *ct)
{
	struct lb_backend *be = NULL;
	__u32 fe_id = fe->fe_id;
	int hit = lb_plain_hit(p, fe, 0, ct, &be);

	if (hit < 0)
		return LB_TC_HIT_NO_CT;
	if (!hit || !ct || !be)
		return -1;
	lb_stat_inc(LB_STAT_FWD_CT_HIT);
	/* the configuration read where each hook needs it, not held across the rewrite (a frame's
	 * spills: lb_tc's frame and its callees' share the verifier's 512 bytes) */
	if (at_ingress && (ct->flags & LB_CT_F_SNAT))
		skb->mark |= lb_get_config().snat_mark;
	if (lb_skb_nat(skb, p, LB_NAT_DST, be->addr, be->port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return TC_ACT_SHOT;
	}
	if (p->frag == LB_FRAG_LATER)
		lb_stat_inc(LB_STAT_FRAG_XLATE);
	lb_fe_stat(fe_id, skb->len);
	if (!at_ingress && (lb_get_config().flags & LB_CFG_F_HOST_REROUTE)) {
		*reroute = be;
		return LB_TC_FWD_REROUTE;
	}
	return TC_ACT_OK;
}

/* Forward translation of a packet to a frontend that is no plain conntrack hit (a new flow, a
 * handshake's ACK, a refresh, a closing packet, an orphan, a refusal); at egress (host-originated)
 * the flow is flagged LB_CT_F_REV_AT_INGRESS so that its replies are undone at ingress. Its keys,
 * entry and selection live in lb_scratch, not on the stack: that took lb_tc_ingress from ~350,000
 * instructions processed (6.18) to ~126,000. As a global subprogram (verified once) it read ~76,000,
 * but the call cost a first packet 7-12 % (docs/perf-log.md, session 27): inline is kept. */
static __always_inline int lb_tc_forward(struct __sk_buff *skb, const struct lb_pkt *p, const struct lb_frontend *fe,
					 int at_ingress, int external, int ct_missed, const struct lb_backend **reroute)
{
	struct lb_config *cfg;
	struct lb_sel *sel;
	struct lb_scratch *s;
	__u32 zero = 0, fe_id;
	__u64 now;
	int v;

	s = bpf_map_lookup_elem(&lb_scratch, &zero);
	if (!s)
		return TC_ACT_OK;
	sel = &s->sel;
	cfg = &s->cfg;
	*cfg = lb_get_config();
	__builtin_memset(sel, 0, sizeof(*sel));
	now = lb_now();
	fe_id = fe->fe_id;
	v = lb_select(fe, p, external, at_ingress ? skb->ifindex : 0, cfg, now, sel, &s->fwd, LB_CTF_CALL, ct_missed);
	if (v == LB_V_ORPHAN)
		return LB_TC_FWD_ORPHAN;
	if (v == LB_V_DROP)
		return TC_ACT_SHOT;
	if (v == LB_V_REJECT)
		return LB_TC_FWD_REJECT;
	if (v == LB_V_RESET)
		return LB_TC_FWD_RESET;
	lb_commit(fe, p, sel, at_ingress ? 0 : LB_CT_F_REV_AT_INGRESS, now, LB_CTF_CALL, &s->fwd, &s->rev, &s->e);
	/* The masquerade is the kernel's (nftables POSTROUTING, by this mark). A host packet reaches tc
	 * egress after POSTROUTING: marked here, it would never be masqueraded, so it is not, and is
	 * counted; it leaves with the source address the host chose (README, limits). Its replies are
	 * undone at ingress all the same. */
	if (sel->ct_flags & LB_CT_F_SNAT) {
		if (at_ingress)
			skb->mark |= cfg->snat_mark;
		else if (!sel->ct_hit && !sel->promote)
			lb_stat_inc(LB_STAT_HOST_NO_SNAT);
	}
	if (lb_skb_nat(skb, p, LB_NAT_DST, sel->be.addr, sel->be.port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return TC_ACT_SHOT;
	}
	if (p->frag == LB_FRAG_LATER)
		lb_stat_inc(LB_STAT_FRAG_XLATE);
	lb_fe_stat(fe_id, skb->len);
	if (!at_ingress && (cfg->flags & LB_CFG_F_HOST_REROUTE)) {
		*reroute = &sel->be;
		return LB_TC_FWD_REROUTE;
	}
	return TC_ACT_OK;
}

/* a refusal lb_tc_forward() asked for (LB_TC_FWD_REJECT: no backend; LB_TC_FWD_RESET: a TCP
 * flow's backend is gone), built and bounced; its own global subprogram, off the stack of
 * lb_tc_forward */
__noinline int lb_tc_refuse(struct __sk_buff *skb, const struct lb_pkt *p, int what, int at_ingress)
{
	if (!p)
		return TC_ACT_SHOT;
	if (what == LB_TC_FWD_REJECT)
		return lb_tc_reject(skb, p, at_ingress);
	if (p->frag == LB_FRAG_LATER || !lb_reject_allowed())
		return TC_ACT_SHOT;
	if (lb_skb_reset(skb, p) < 0)
		return TC_ACT_SHOT;
	lb_stat_inc(LB_STAT_RESET_BACKEND_GONE);
	return lb_skb_bounce(skb, at_ingress);
}

/* a packet to frontend fe, ct its lb_plain_ct(): its plain conntrack hit inline, anything else
 * through lb_tc_forward() and what it asks for; one lb_tc_reroute() for both (its bpf_fib_lookup's 64
 * bytes once in lb_tc's frame) */
static __always_inline int lb_tc_to_frontend(struct __sk_buff *skb, const struct lb_pkt *p,
					     const struct lb_frontend *fe, int external, int at_ingress,
					     struct lb_ct_entry *ct)
{
	const struct lb_backend *be = NULL;
	int r = lb_tc_hit(skb, p, fe, at_ingress, &be, ct);

	if (r < 0) {
		r = lb_tc_forward(skb, p, fe, at_ingress, external, r == LB_TC_HIT_NO_CT, &be);
		if (r == LB_TC_FWD_ORPHAN) {
			r = lb_tc_orphan(skb, p, at_ingress, 0);
			return r >= 0 ? r : TC_ACT_OK;
		} else if (r == LB_TC_FWD_REJECT || r == LB_TC_FWD_RESET) {
			return lb_tc_refuse(skb, p, r, at_ingress);
		}
	}
	if (r == LB_TC_FWD_REROUTE)
		return be ? lb_tc_reroute(skb, p, be) : TC_ACT_SHOT;
	return r;
}

/* Where a reply of ct's flow leaves from: an orphan's own frontend (a deleted frontend's flow: the
 * entry holds it, lb_orphan.h); the address and port its client sent to, which the entry holds
 * (lb_commit); in an entry of an earlier build, its frontend's rev-NAT entry. -1 (counted) when that
 * is gone. */
static __always_inline int lb_ct_reply_from(const struct lb_ct_entry *ct, const __u8 **addr, __be16 *port)
{
	struct lb_revnat *rn;
	__u32 fe_id;

	if (ct->flags & LB_CT_F_ORPHAN) {
		*addr = ct->fe_addr;
		*port = ct->orphan_port;
		return 0;
	}
	/* no lb_revnat lookup per reply (a hashed lookup: ~10 % of a warm reply hit, and a cold bucket
	 * for a connection's SYN-ACK); a frontend id freed and reused meanwhile cannot lend the flow
	 * another frontend's address */
	if (ct->fe_port) {
		*addr = ct->fe_addr;
		*port = ct->fe_port;
		return 0;
	}
	fe_id = ct->fe_id;
	rn = bpf_map_lookup_elem(&lb_revnat, &fe_id);
	if (!rn) {
		lb_stat_inc(LB_STAT_DROP_REVNAT_MISSING);
		return -1;
	}
	*addr = lb_ct_reply_addr(ct, rn);
	*port = rn->port;
	return 0;
}

/* reply translation; want is the LB_CT_F_REV_AT_INGRESS value this hook handles. Returns -1 when
 * the packet is no reply of ours. */
static __always_inline int lb_tc_reverse(struct __sk_buff *skb, struct lb_pkt *p, __u16 want)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *ct;
	const __u8 *addr;
	__be16 port;
	__u64 now;
	int expired = 0;

	/* a packet between a source and destination no reverse entry has (most packets to no Service)
	 * ends here */
	if (!lb_rev_filter_may(&p->saddr, p->sport, p->proto, &p->daddr))
		return -1;
	now = lb_now();
	lb_ct_key_reply(&k, p);
	/* a SYN-ACK's flow is usually in lb_ct_syn: lb_ct is looked up only when its filter may hold
	 * the key (other replies are hits and look up at once) */
	if (p->proto != IPPROTO_TCP || !(p->tcp_flags & LB_TCP_SYN) || lb_ct_filter_may(&k))
		ct = lb_ct_lookup(&k, now, &expired);
	else
		ct = NULL;
	if (expired)
		lb_stat_inc(LB_STAT_CT_EXPIRED);
	/* the backend's SYN-ACK (or RST, or TIME_WAIT ACK) of a flow whose client has sent only SYNs;
	 * it wins over a closed flow's entry of another frontend on the same reply tuple (the client
	 * reused that flow's port for this frontend, with the same backend): replied from the old
	 * frontend, the handshake would never complete */
	if ((!ct || (ct->flags & LB_CT_F_CLOSING)) && lb_tcp_handshake_reply(p)) {
		struct lb_ct_entry *syn = lb_ct_syn_lookup(&k, now);

		if (syn)
			ct = syn;
	}
	if (!ct || (ct->flags & LB_CT_F_REV_AT_INGRESS) != want)
		return -1;
	/* a flow in its handshake in lb_ct (LB_CT_F_SYN: a SYN over a closed flow's entries) is answered
	 * as one in lb_ct_syn: a backend's FIN or flagless segment before the client's ACK is INVALID to
	 * nf_conntrack in SYN_SENT and left untranslated (lb_tcp_handshake_reply). An established flow's
	 * entry pays one bit test */
	if ((ct->flags & LB_CT_F_SYN) && !lb_tcp_handshake_reply(p))
		return -1;
	lb_ct_touch(ct, p, now);
	if (ct->flags & LB_CT_F_ORPHAN)
		lb_stat_inc(LB_STAT_CT_ORPHAN);
	if (lb_ct_reply_from(ct, &addr, &port) < 0)
		return TC_ACT_OK;
	if (lb_skb_nat(skb, p, LB_NAT_SRC, addr, port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return TC_ACT_SHOT;
	}
	if (p->frag == LB_FRAG_LATER)
		lb_stat_inc(LB_STAT_FRAG_XLATE);
	lb_stat_inc(LB_STAT_REV_NAT);
	return TC_ACT_OK;
}

/* an ICMP(v6) error about a client's packet of a translated flow, seen where the flow's replies are
 * undone (want as above): the quoted packet went client -> backend, so the reverse entry is found by
 * its swapped tuple. -1 when it is about no flow of ours. */
static __always_inline int lb_tc_icmp_reverse(struct __sk_buff *skb, struct lb_pkt *p, __u16 want)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *ct;
	const __u8 *addr;
	__be16 port;

	lb_ct_key_rev_of(&k, p);
	ct = bpf_map_lookup_elem(&lb_ct, &k);
	/* an error about a SYN (a PMTU "too big", an unreachable router) finds its flow in lb_ct_syn;
	 * as for the handshake's replies (lb_tc_reverse), that flow wins over a closed flow's entry on
	 * the same tuple (the client reused the port for another frontend of the same backend) */
	if ((!ct || (ct->flags & LB_CT_F_CLOSING)) && p->proto == IPPROTO_TCP) {
		struct lb_ct_entry *syn = bpf_map_lookup_elem(&lb_ct_syn, &k);

		if (syn)
			ct = syn;
	}
	if (!ct || (ct->flags & LB_CT_F_REV_AT_INGRESS) != want)
		return -1;
	if (lb_ct_reply_from(ct, &addr, &port) < 0)
		return TC_ACT_OK;
	if (lb_skb_icmp_nat(skb, p, LB_NAT_DST, addr, port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return TC_ACT_SHOT;
	}
	lb_stat_inc(LB_STAT_ICMP_XLATE);
	return TC_ACT_OK;
}

/* An ICMP(v6) error about a reply of a translated flow, sent toward the frontend (a router's
 * "fragmentation needed" / "packet too big" for a Service's response, the client's port
 * unreachable), seen where the flow's client packets are translated (want: the flow's
 * LB_CT_F_REV_AT_INGRESS value there). The quoted reply went frontend -> client: swapped, it is the
 * flow's forward tuple, whose entry names the backend the error belongs to. -1 when it is about no
 * flow of ours. */
static __always_inline int lb_tc_icmp_forward(struct __sk_buff *skb, struct lb_pkt *p, __u16 want)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *ct;
	struct lb_backend *be;
	const __u8 *addr;
	__be16 port;

	__builtin_memcpy(k.saddr, p->daddr.b, 16);
	__builtin_memcpy(k.daddr, p->saddr.b, 16);
	k.sport = p->dport;
	k.dport = p->sport;
	k.proto = p->proto;
	k.dir = LB_CT_DIR_FWD;
	ct = bpf_map_lookup_elem(&lb_ct, &k);
	/* the backend's SYN-ACK, of a flow still in its handshake */
	if (!ct && p->proto == IPPROTO_TCP)
		ct = bpf_map_lookup_elem(&lb_ct_syn, &k);
	if (!ct || (ct->flags & LB_CT_F_REV_AT_INGRESS) != want)
		return -1;
	if (ct->flags & LB_CT_F_ORPHAN) {
		/* a deleted frontend's flow: the entry holds the backend (lb_orphan.h) */
		addr = ct->fe_addr;
		port = ct->orphan_port;
	} else {
		/* only to a backend still serving the flow's frontend: ids are reused */
		be = lb_member_backend(ct->fe_id, ct->backend_id);
		if (!be)
			return -1;
		addr = be->addr;
		port = be->port;
	}
	if (lb_skb_icmp_nat(skb, p, LB_NAT_SRC, addr, port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return TC_ACT_SHOT;
	}
	lb_stat_inc(LB_STAT_ICMP_XLATE);
	return TC_ACT_OK;
}

static __always_inline int lb_tc_icmp(struct __sk_buff *skb, struct lb_pkt *p, int at_ingress)
{
	int r = lb_tc_icmp_reverse(skb, p, at_ingress ? LB_CT_F_REV_AT_INGRESS : 0);

	if (r >= 0)
		return r;
	r = lb_tc_icmp_forward(skb, p, at_ingress ? 0 : LB_CT_F_REV_AT_INGRESS);
	return r >= 0 ? r : TC_ACT_OK;
}

static __always_inline int lb_tc(struct __sk_buff *skb, int at_ingress)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct lb_ct_entry *ct;
	struct lb_frontend *fe;
	struct lb_pkt p = {};
	int external, may, r;
	__u8 scope;

	if (data + LB_PULL_LEN > data_end && skb->len > data_end - data) {
		bpf_skb_pull_data(skb, skb->len < LB_PULL_LEN ? skb->len : LB_PULL_LEN);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	r = lb_parse(data, data_end, skb->len, &p, 1);
	if (r == LB_PARSE_ICMP_ERR)
		return lb_tc_icmp(skb, &p, at_ingress);
	r = lb_frag_resolve(&p, r);
	if (r != LB_PARSE_OK) {
		lb_count_unparsed(r);
		return TC_ACT_OK;
	}
	/* a packet to no frontend (most forwarded pod packets) skips the device and frontend lookups */
	may = lb_fe_filter_may(&p);
	if (at_ingress) {
		fe = NULL;
		if (may) {
			const struct lb_backend *be = NULL;
			struct lb_fe_slot *slot;

			/* the flow's entry first: it names the frontend's id, whose lb_fe_ids entry stands
			 * for the lookup in lb_frontends where that could return nothing else, and for the
			 * device's lookup too where the frontend is alone on its address, port and protocol
			 * (an externalIP's allowlist asks for the device). Only a plain hit is taken with
			 * it: anything else looks the frontend up and goes on as before, so that
			 * lb_tc_forward() (inline) is verified with lb_frontends' entries alone (with either
			 * map's, lb_tc_ingress took 160,000 instructions against 121,000) */
			ct = lb_plain_ct(&p);
			slot = ct ? lb_fe_slot_of(ct->fe_id, &p) : NULL;
			external = -1;
			fe = slot && slot->fe.type != LB_FE_TYPE_EXTERNAL_IP ? lb_fe_of_slot(slot, -1) : NULL;
			if (slot && !fe) {
				external = lb_dev_is_external(skb->ifindex);
				fe = lb_fe_of_slot(slot, external ? LB_SCOPE_EXTERNAL : LB_SCOPE_INTERNAL);
				if (fe && !external && !lb_eip_local_ok(fe, &p.daddr))
					fe = NULL;
			}
			if (fe) {
				r = lb_tc_hit(skb, &p, fe, 1, &be, ct);
				if (r >= 0)
					return r; /* no LB_TC_FWD_REROUTE at ingress */
			}
			if (external < 0)
				external = lb_dev_is_external(skb->ifindex);
			scope = external ? LB_SCOPE_EXTERNAL : LB_SCOPE_INTERNAL;
			fe = lb_lookup_frontend(&p, scope);
			if (fe && !external && !lb_eip_local_ok(fe, &p.daddr))
				fe = NULL; /* CVE-2020-8554 (lb_eip.h) */
			if (fe)
				return lb_tc_to_frontend(skb, &p, fe, external, 1, ct);
			/* an orphan is an entry of lb_ct, or of lb_ct_syn for a TCP flow orphaned in its
			 * handshake: without an lb_ct entry (none was found, or a SYN) only a TCP packet
			 * that is no SYN can be one, and lb_ct is not looked up again (a packet the filter
			 * lets through to no frontend) */
			r = ct || (p.proto == IPPROTO_TCP && !lb_tcp_syn(&p)) ? lb_tc_orphan(skb, &p, 1, !ct) : -1;
			if (r >= 0)
				return r;
		}
		/* a connection attempt (SYN without ACK) is no reply of a translated flow: one
		 * lb_ct lookup (lb_ct_forget_closed's) for it, not two */
		r = lb_tcp_syn(&p) ? -1 : lb_tc_reverse(skb, &p, LB_CT_F_REV_AT_INGRESS);
		if (r >= 0)
			return r;
		lb_ct_forget_closed(&p);
		return TC_ACT_OK;
	}
	r = lb_tcp_syn(&p) ? -1 : lb_tc_reverse(skb, &p, 0);
	if (r >= 0)
		return r;
	fe = may ? lb_lookup_frontend(&p, LB_SCOPE_INTERNAL) : NULL;
	if (fe && !lb_eip_local_ok(fe, &p.daddr))
		fe = NULL; /* CVE-2020-8554 (lb_eip.h) */
	if (fe)
		return lb_tc_to_frontend(skb, &p, fe, 0, 0, lb_plain_ct(&p));
	if (may) {
		r = lb_tc_orphan(skb, &p, 0, 0);
		if (r >= 0)
			return r;
	}
	lb_ct_forget_closed(&p);
	return TC_ACT_OK;
}

#endif
