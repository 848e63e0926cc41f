/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The tc programs, attached to every device (their steps are in lb_tc.h). */
/*
 * tc ingress: packets to a frontend are translated to a backend (forward, before the kernel's
 *   conntrack, which so sees client -> backend); replies to flows the host started are translated
 *   back (their conntrack entry has LB_CT_F_REV_AT_INGRESS).
 * tc egress: replies of backends are translated back to the frontend (after the kernel's conntrack
 *   and de-SNAT); packets the host itself sends to a frontend are translated forward, flagged
 *   LB_CT_F_REV_AT_INGRESS.
 * Fragments are translated like their first fragment (lb_frag.h); ICMP errors about translated
 * flows are translated in both directions (lb_tc_icmp). SCTP and anything not TCP/UDP over
 * IPv4/IPv6 pass untouched. */
#include "lb_tc.h"

SEC("tc")
int lb_tc_ingress(struct __sk_buff *skb)
{
	return lb_tc(skb, 1);
}

SEC("tc")
int lb_tc_egress(struct __sk_buff *skb)
{
	return lb_tc(skb, 0);
}
