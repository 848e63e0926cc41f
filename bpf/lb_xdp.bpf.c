/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The XDP program, attached to external devices. */
/* The forward path of external traffic, except flows that need SNAT and refusals, which it leaves
 * to tc ingress (the same maps make tc choose the same backend, lb_svc.h). IP fragments are left to
 * tc; SCTP and anything not TCP/UDP over IPv4/IPv6 pass untouched. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_maps.h"
#include "lb_parse.h"
#include "lb_stats.h"
#include "lb_svc.h"
#include "lb_nat.h"

/* A plain conntrack hit (lb_plain_hit: most packets, a FIN or RST with no refresh due among them)
 * that needs nothing of tc (no SNAT), translated inline in lb_xdp. -1 for anything else:
 * lb_xdp_forward() then takes the whole path (and looks the entry up again, its bucket warm). Calling the subprogram for hits too cost them ~10 ns on this VM
 * (its return through the kernel's SRSO safe-RET thunk; chain bench 1.04-1.06 of inline), and
 * lb_select() inline here for its hit path alone put lb_xdp's frame over the verifier's 512 bytes of
 * stack for a program and its calls. */
static __always_inline int lb_xdp_hit(void *data, void *data_end, const struct lb_pkt *p,
				      const struct lb_frontend *fe, struct lb_ct_entry *ct)
{
	struct lb_backend *be = NULL;

	if (lb_plain_hit(p, fe, LB_CT_F_SNAT, ct, &be) <= 0 || !be)
		return -1;
	if (lb_xdp_nat_dst(data, data_end, p, be->addr, be->port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return XDP_DROP;
	}
	lb_stat_inc(LB_STAT_FWD_CT_HIT);
	lb_fe_stat(fe->fe_id, data_end - data);
	return XDP_PASS;
}

/* A packet to a frontend that is no plain conntrack hit (a new flow, a handshake's ACK, a refresh, an
 * orphan): the whole selection, in a global subprogram, which the verifier checks once with the
 * packet's fields unknown instead of once for every path of lb_parse that reaches it
 * (IPv4 or IPv6, TCP or UDP, each extension header: their packet pointers and parsed fields differ,
 * so their states never merge). Inlined, lb_xdp took 997,400 of the 1,000,000 instructions Debian
 * 6.1's verifier processes at most (6.18: 339,776), and no lookup more fitted: a SYN's lb_ct lookups
 * behind lb_ct_filter did not. It reads the packet through ctx anew and returns the XDP verdict. */
__noinline int lb_xdp_forward(struct xdp_md *ctx, const struct lb_pkt *p, const struct lb_frontend *fe, int external)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_config cfg;
	struct lb_sel sel = {};
	struct lb_ct_key k, rk;
	struct lb_ct_entry e;
	__u64 now;
	int r;

	if (!p || !fe)
		return XDP_PASS;
	cfg = lb_get_config();
	now = lb_now();
	r = lb_select(fe, p, external, ctx->ingress_ifindex, &cfg, now, &sel, &k, LB_CTF_INLINE, 0);
	if (r == LB_V_DROP)
		return XDP_DROP;
	/* refusals need a packet rebuilt and bounced, and SNAT needs the skb mark: both are tc's */
	if (r != LB_V_XLATE || (sel.ct_flags & LB_CT_F_SNAT)) {
		lb_stat_inc(LB_STAT_XDP_TO_TC);
		return XDP_PASS;
	}
	if (lb_xdp_nat_dst(data, data_end, p, sel.be.addr, sel.be.port) < 0) {
		lb_stat_inc(LB_STAT_DROP_CSUM);
		return XDP_DROP;
	}
	lb_commit(fe, p, &sel, 0, now, LB_CTF_INLINE, &k, &rk, &e);
	lb_fe_stat(fe->fe_id, data_end - data);
	return XDP_PASS;
}

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_ct_entry *ct;
	struct lb_fe_slot *slot;
	struct lb_frontend *fe;
	struct lb_pkt p = {};
	int external, r;
	__u8 scope;

	r = lb_parse(data, data_end, data_end - data, &p, 0);
	/* fragments are tc's, all of them: it remembers the first one's ports for the rest (lb_frag.h),
	 * and counts them there */
	if (r == LB_PARSE_FRAGMENT)
		return XDP_PASS;
	if (r != LB_PARSE_OK) {
		lb_count_unparsed(r);
		return XDP_PASS;
	}
	/* a packet to no frontend skips the device and frontend lookups */
	if (!lb_fe_filter_may(&p))
		return XDP_PASS;
	/* the flow's entry first: its frontend's id stands for the lookups in lb_frontends and
	 * lb_devices where they could return nothing else (lb_fe_slot_of, as tc's lb_tc) */
	ct = lb_plain_ct(&p);
	slot = ct ? lb_fe_slot_of(ct->fe_id, &p) : NULL;
	external = -1;
	fe = lb_fe_of_slot(slot, -1);
	if (!fe) {
		external = lb_dev_is_external(ctx->ingress_ifindex);
		scope = external ? LB_SCOPE_EXTERNAL : LB_SCOPE_INTERNAL;
		fe = lb_fe_of_slot(slot, scope);
		if (!fe)
			fe = lb_lookup_frontend(&p, scope);
	}
	if (!fe)
		return XDP_PASS;
	r = lb_xdp_hit(data, data_end, &p, fe, ct);
	if (r >= 0)
		return r;
	if (external < 0)
		external = lb_dev_is_external(ctx->ingress_ifindex);
	return lb_xdp_forward(ctx, &p, fe, external);
}
