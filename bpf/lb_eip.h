/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* externalIPs and CVE-2020-8554: which traffic from this node a Service's externalIP may capture. */
/* Anyone who may create a Service may give it any externalIP, a public DNS resolver's say, and every
 * pod's traffic to that address would go to the Service's pods. Traffic from outside reaches a node
 * only when the address is routed to it, so external scope is unaffected; traffic that starts on
 * this node (pods, host processes: the socket hooks, tc on pod-facing devices, tc egress) is
 * translated to an externalIP frontend only when the address is one of this node's (lb_node_addrs)
 * or lies in the operator's allowlist (lb_sock_eip_ok, --local-external-ip-allow). Otherwise it goes
 * to the real address. As Cilium's socket LB (sock4_skip_xlate) does for externalIPs. */
#ifndef KBP_LB_EIP_H
#define KBP_LB_EIP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"
#include "lb_addr.h"

static __always_inline int lb_eip_local_ok(const struct lb_frontend *fe, const union lb_addr *daddr)
{
	struct lb_eip_allow_key k = { .prefixlen = 128 };

	if (fe->type != LB_FE_TYPE_EXTERNAL_IP)
		return 1;
	if (bpf_map_lookup_elem(&lb_node_addrs, daddr->b))
		return 1;
	__builtin_memcpy(k.addr, daddr->b, 16);
	return bpf_map_lookup_elem(&lb_sock_eip_ok, &k) != NULL;
}

#endif
