/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The socket hooks' reverse-NAT entries (lb_sock_store, lb_sock_revnat): when one still holds. */
/* Shared by the hooks (lb_sock.h) and the socket-termination iterator (lb_sock_term.bpf.c), which
 * cannot include the packet headers. An entry is written by connect() (lb_sock_store) or sendmsg()
 * (lb_sock_revnat) and read by
 * recvmsg()/getpeername(); it is believed only while its backend is still a member of its frontend
 * and still has the address and port of the key (backend ids are reused one sync after they are
 * freed). */
#ifndef KBP_LB_SOCK_REVNAT_H
#define KBP_LB_SOCK_REVNAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_structs.h"
#include "lb_maps.h"

/* two 16-byte addresses are equal (no memcmp in BPF) */
static __always_inline int lb_sock_addr16_eq(const __u8 *x, const __u8 *y)
{
	__u32 a[4], b[4];

	__builtin_memcpy(a, x, 16);
	__builtin_memcpy(b, y, 16);
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* a translation by frontend fe_id to backend id, at (addr, port), still holds */
static __always_inline int lb_sock_xlate_live(const __u8 *addr, __be16 port, __u32 fe_id, __u32 id)
{
	struct lb_member_key mk = { .fe_id = fe_id, .backend_id = id };
	struct lb_backend *be;

	if (id == 0 || !bpf_map_lookup_elem(&lb_members, &mk))
		return 0;
	be = lb_backend_get(id);
	if (!be || be->port != port)
		return 0;
	return lb_sock_addr16_eq(be->addr, addr);
}

static __always_inline int lb_sock_revnat_live(const struct lb_sock_revnat_key *k,
					       const struct lb_sock_revnat_val *v)
{
	return lb_sock_xlate_live(k->addr, k->port, v->fe_id, v->backend_id);
}

#endif
