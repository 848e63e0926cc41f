/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket load balancing: the steps of the cgroup sock_addr programs (lb_sock.bpf.c). */
/* The hooks translate a Service VIP to a backend when the application calls connect() or
 * sendmsg(), so the packets carry the backend address from the start and tc finds nothing to
 * translate. recvmsg() and getpeername() show the frontend back to the application. Attached by the
 * agent to a cgroup v2 (--cgroup); switched off by clearing LB_CFG_F_SOCK_LB in lb_config (or by
 * not attaching).
 *
 * Decisions a reader cannot see in the code:
 * - Backend choice: Maglev over a hash of the socket cookie and the configured seed. One socket
 *   always gets the same backend (an unconnected UDP socket that sends many datagrams to a VIP keeps
 *   talking to one backend, so its replies map back); different sockets spread.
 *   LB_STAT_SOCK_CONNECT counts every translated connect() and every translated sendmsg().
 * - Session affinity: a socket hook does not know the client's source address before the kernel
 *   picks one (after this hook, at route lookup), so the affinity client is the socket's network
 *   namespace, as Cilium does: a pod is one netns, so "this pod keeps its backend" holds. The netns
 *   cookie is stored in the 16-byte client field under 0100::/64 (RFC 6666 discard-only prefix) so it
 *   can never collide with a real client address that tc stores for traffic from outside. Under
 *   affinity Maglev hashes the netns cookie too, so an expired entry is re-made on the same backend.
 * - Reverse translation: connect() keeps the socket's (backend, frontend) in the socket's own
 *   storage (lb_sock_store, BPF_MAP_TYPE_SK_STORAGE), freed by the kernel with the socket: no LRU
 *   insert into a large map per connection. A TCP socket's goes to its cookie's slot of
 *   lb_sock_slots instead where that slot is free (an ARRAY line: no allocation, no memcg charge,
 *   no RCU free at close, which were most of connect()'s time), and the socket's release hook
 *   (lb_sock_release_hook) frees the slot: a slot names one live socket, so getpeername(), the only
 *   reader of a TCP socket's translation, finds it for the socket's whole life, however many
 *   sockets connect meanwhile. A socket whose slot is taken gets the storage. sendmsg() on an
 *   unconnected UDP socket, which may talk to several VIPs at once, writes lb_sock_revnat, keyed by
 *   (socket, backend): a socket talking to two VIPs that share a backend sees that backend's
 *   replies as coming from the VIP it sent to last (where the storage names the same backend,
 *   sendmsg() updates the storage instead, so the two never disagree). An entry is believed on
 *   read only while its backend is still a member of its frontend (lb_sock_revnat.h), and forgotten
 *   when found stale on an unconnected socket (a connected socket's stays, so the termination
 *   iterator can find it). lb_sock_revnat's entries are left to LRU eviction.
 * - loadBalancerSourceRanges: the hook translates a frontend with source ranges only when it knows
 *   the source (the socket is bound to an address, or sendmsg() names one with IP_PKTINFO) and the
 *   ranges allow it (lb_src_range_ok(), the rule tc and XDP apply). Otherwise the call goes out
 *   untranslated, to the frontend's own address, and tc on the way, which sees the source the kernel
 *   chose, applies the ranges: kube-proxy drops such packets (its KUBE-FW chain), so does tc.
 * - externalIPs (CVE-2020-8554): translated only for this node's addresses and the allowlist
 *   (lb_eip.h); otherwise the call reaches the real address.
 * - Refusal: a frontend without backends fails connect()/sendmsg() at once with ECONNREFUSED
 *   (bpf_set_retval, kernel 5.18+); without it the kernel would report EPERM.
 * - NodePort wildcard frontends (0.0.0.0 / ::) are not looked up here: the hook cannot tell whether a
 *   destination is one of this node's addresses, and a connect() to another host's port would be
 *   hijacked. Such connects go out untranslated and tc handles them.
 * - The reverse hooks (recvmsg, getpeername) ignore LB_CFG_F_SOCK_LB: an entry in lb_sock_store or
 *   lb_sock_revnat exists only for a socket these hooks translated, and it must keep showing the frontend after the
 *   switch is turned off, or a connected UDP client would drop replies from an unknown address. */
#ifndef KBP_LB_SOCK_H
#define KBP_LB_SOCK_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_consts.h"
#include "lb_structs.h"
#include "lb_maps.h"
#include "lb_addr.h"
#include "lb_stats.h"
#include "lb_hash.h"
#include "lb_svc.h"
#include "lb_sock_revnat.h"
#include "lb_eip.h"

/* the sock_addr hooks' verdicts (connect/sendmsg: 0 fails the call) */
#define LB_SOCK_ALLOW 1
#define LB_SOCK_DENY 0

/* outcome of a forward lookup */
enum lb_sock_xlate {
	LB_SOCK_XLATE_NONE = 0,   /* not a frontend (or switched off): leave the call alone */
	LB_SOCK_XLATE_DONE,       /* rewritten to a backend */
	LB_SOCK_XLATE_REFUSE,     /* a frontend that cannot be served: fail the call */
};

static __always_inline __u8 lb_sock_proto(struct bpf_sock_addr *ctx)
{
	return (__u8)ctx->protocol;
}

/* 0 when no frontend has the address, port and protocol (lb_fe_filter's bit is clear), 1 when
 * one may, or the filter is not filled yet. The hooks look up the exact address only (no NodePort
 * any-address, see above), so one bit decides: a connect() to no Service, most of a pod's, costs
 * one inlined array read instead of two hash lookups that miss. */
static __always_inline int lb_sock_fe_may(const union lb_addr *addr, __be16 port, __u8 proto)
{
	__u32 key = 0;
	__u64 *on = bpf_map_lookup_elem(&lb_fe_filter, &key);

	if (!on || !*on)
		return 1;
	return lb_fe_filter_has(lb_fe_filter_bit(addr->w, port, proto));
}

/* the backend behind Maglev slot hash % M of the frontend's table; 0 after counting why not */
static __always_inline __u32 lb_sock_maglev_pick(const struct lb_frontend *fe, __u32 hash,
						 struct lb_backend **be_out)
{
	struct lb_backend *be;
	int missing;
	__u32 id;

	id = lb_maglev_backend(fe, hash, &missing);
	if (id == 0)
		return 0;
	be = lb_backend_get(id);
	if (!be) {
		lb_stat_inc(LB_STAT_DROP_BACKEND_MISSING);
		return 0;
	}
	*be_out = be;
	return id;
}

/* the affinity client of a socket: its netns cookie under 0100::/64 (see the header comment) */
static __always_inline void lb_sock_affinity_key(struct bpf_sock_addr *ctx, __u32 fe_id,
						 struct lb_affinity_key *key)
{
	__u64 netns = bpf_get_netns_cookie(ctx);

	__builtin_memset(key, 0, sizeof(*key));
	key->client[0] = 0x01;
	__builtin_memcpy(&key->client[8], &netns, sizeof(netns));
	key->fe_id = fe_id;
}

/* chooses the backend for a socket: a live affinity entry first, else Maglev */
static __always_inline __u32 lb_sock_select(struct bpf_sock_addr *ctx, const struct lb_frontend *fe,
					    __u64 cookie, __u32 seed, struct lb_backend **be_out)
{
	struct lb_affinity_key akey;
	struct lb_affinity_val *aval, nval = {};
	__u64 now = 0;
	__u32 id;

	if (fe->flags & LB_FE_F_AFFINITY) {
		lb_sock_affinity_key(ctx, lb_affinity_group(fe), &akey);
		now = lb_now();
		aval = bpf_map_lookup_elem(&lb_affinity, &akey);
		if (aval) {
			__u32 aid = aval->backend_id;

			if (lb_affinity_fresh(fe, aval, now)) {
				struct lb_backend *be = lb_member_backend(fe->fe_id, aid);

				/* a backend that left re-balances; a terminating one gets no new sockets
				 * through affinity (as in tc, lb_svc.h) */
				if (be && be->proto == lb_sock_proto(ctx) && !(be->flags & LB_BE_F_TERMINATING)) {
					aval->last_used = now;
					lb_stat_inc(LB_STAT_AFFINITY_HIT);
					*be_out = be;
					return aid;
				}
			} else {
				lb_stat_inc(LB_STAT_AFFINITY_EXPIRED);
			}
		}
	}
	/* under affinity the client, not the socket, is hashed: when its entry expires or is
	 * evicted, the client still lands where it was while the backends are unchanged */
	id = lb_sock_maglev_pick(fe, lb_sock_hash((fe->flags & LB_FE_F_AFFINITY) ?
						  bpf_get_netns_cookie(ctx) : cookie, seed), be_out);
	if (id && (fe->flags & LB_FE_F_AFFINITY)) {
		nval.last_used = now;
		nval.backend_id = id;
		bpf_map_update_elem(&lb_affinity, &akey, &nval, BPF_ANY);
	}
	return id;
}

static __always_inline void lb_sock_peer_set_fe(struct lb_sock_peer *p, const struct lb_sock_revnat_val *fe)
{
	__builtin_memcpy(p->fe_addr, fe->addr, 16);
	p->fe_port = fe->port;
	p->fe_id = fe->fe_id;
	p->backend_id = fe->backend_id;
}

/* the peer in a socket's storage is the backend at (addr, port) */
static __always_inline int lb_sock_peer_is(const struct lb_sock_peer *p, const __u8 *addr, __be16 port)
{
	return p->port == port && lb_sock_addr16_eq(p->addr, addr);
}

_Static_assert((LB_SOCK_SLOTS_MAX & (LB_SOCK_SLOTS_MAX - 1)) == 0, "lb_sock_slots: a power of two");

static __always_inline struct lb_sock_slot *lb_sock_slot_of(__u64 cookie)
{
	__u32 idx = (__u32)cookie & (LB_SOCK_SLOTS_MAX - 1);

	return bpf_map_lookup_elem(&lb_sock_slots, &idx);
}

/* the word of lb_sock_slotbit that holds the cookie's slot's bit (*m: the bit) */
static __always_inline __u64 *lb_sock_slot_word(__u64 cookie, __u64 *m)
{
	__u32 idx = (__u32)cookie & (LB_SOCK_SLOTS_MAX - 1), w = idx >> 6;

	*m = 1ULL << (idx & 63);
	return bpf_map_lookup_elem(&lb_sock_slotbit, &w);
}

/* A TCP socket's slot of lb_sock_slots, taken for it: the one its cookie already holds (it connects
 * again after connect(AF_UNSPEC)), or a free one claimed by compare-and-swap (another CPU's socket
 * may claim the same); NULL when another live socket holds it. Only the owner writes the fields
 * after the claim and only the owner reads them (getpeername() checks the cookie first): the
 * kernel runs a socket's connect(), getpeername() and release one at a time. */
static __always_inline struct lb_sock_slot *lb_sock_slot_take(__u64 cookie)
{
	struct lb_sock_slot *s = lb_sock_slot_of(cookie);
	__u64 owner;

	if (!s)
		return NULL;
	__u64 *w, m;

	owner = s->cookie;
	if (owner == cookie)
		return s;
	if (owner != 0 || __sync_val_compare_and_swap(&s->cookie, 0, cookie) != 0)
		return NULL;
	w = lb_sock_slot_word(cookie, &m);
	if (w)
		__sync_fetch_and_or(w, m);
	return s;
}

/* The reverse translation of a socket connect() translated. TCP: in the cookie's slot of
 * lb_sock_slots while it is free (see the header comment), else in the socket's own storage. UDP: in
 * the storage, which recvmsg() reads for every datagram and the termination iterator finds the
 * socket by. A socket that has storage already (it connects anew) has it overwritten. Without
 * memory only the reverse view is lost, as with a full LRU: the call proceeds. */
static __always_inline void lb_sock_note_connect(struct bpf_sock_addr *ctx, __u64 cookie, const struct lb_backend *be,
						 const struct lb_sock_revnat_val *fe)
{
	struct bpf_sock *sk = ctx->sk;
	struct lb_sock_peer *p;
	struct lb_sock_slot *s;

	if (!sk)
		return;
	if (lb_sock_proto(ctx) == IPPROTO_TCP) {
		p = bpf_sk_storage_get(&lb_sock_store, sk, 0, 0);
		if (!p && (s = lb_sock_slot_take(cookie))) {
			__builtin_memcpy(s->addr, be->addr, 16);
			s->port = be->port;
			__builtin_memcpy(s->fe_addr, fe->addr, 16);
			s->fe_port = fe->port;
			s->fe_id = fe->fe_id;
			s->backend_id = fe->backend_id;
			return;
		}
	}
	p = bpf_sk_storage_get(&lb_sock_store, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!p)
		return;
	__builtin_memcpy(p->addr, be->addr, 16);
	p->port = be->port;
	lb_sock_peer_set_fe(p, fe);
}

/* sendmsg() on an unconnected socket may reach several backends: an lb_sock_revnat entry per
 * (socket, backend), left to LRU eviction. Where the socket's storage names the same backend (it
 * connected there before), the storage is what recvmsg() reads first, so it is kept in step
 * instead. An entry is written only when it is missing or differs: a socket sending many datagrams
 * to one VIP writes once, not once a datagram. */
static __always_inline void lb_sock_note_sendmsg(struct bpf_sock_addr *ctx, __u64 cookie, const struct lb_backend *be,
						 const struct lb_sock_revnat_val *fe)
{
	struct lb_sock_revnat_key rkey = {};
	struct lb_sock_revnat_val *old;
	struct bpf_sock *sk = ctx->sk;
	struct lb_sock_peer *p;

	if (sk) {
		p = bpf_sk_storage_get(&lb_sock_store, sk, 0, 0);
		if (p && lb_sock_peer_is(p, be->addr, be->port)) {
			lb_sock_peer_set_fe(p, fe);
			return;
		}
	}
	rkey.cookie = cookie;
	__builtin_memcpy(rkey.addr, be->addr, 16);
	rkey.port = be->port;
	old = bpf_map_lookup_elem(&lb_sock_revnat, &rkey);
	if (!old || old->fe_id != fe->fe_id || old->backend_id != fe->backend_id || old->port != fe->port ||
	    !lb_sock_addr16_eq(old->addr, fe->addr))
		bpf_map_update_elem(&lb_sock_revnat, &rkey, fe, BPF_ANY);
}

/* The common forward path. addr holds the destination and is rewritten to the backend on
 * LB_SOCK_XLATE_DONE; want_v4 says the socket can only take an IPv4 backend; src is the source
 * the packets will carry when the socket fixes it (bound, or named by sendmsg), else NULL;
 * sendmsg is 1 in the sendmsg hooks, 0 in connect. */
static __always_inline enum lb_sock_xlate lb_sock_fwd(struct bpf_sock_addr *ctx, union lb_addr *addr,
						      __be16 *port, int want_v4, const union lb_addr *src,
						      int sendmsg)
{
	struct lb_sock_revnat_val rval = {};
	struct lb_config cfg = lb_get_config();
	struct lb_fe_key fkey = {};
	struct lb_frontend *fe;
	struct lb_backend *be = 0;
	__u32 id;
	__u64 cookie;

	if (!(cfg.flags & LB_CFG_F_SOCK_LB))
		return LB_SOCK_XLATE_NONE;

	fkey.proto = lb_sock_proto(ctx);
	if (!lb_sock_fe_may(addr, *port, fkey.proto))
		return LB_SOCK_XLATE_NONE;
	__builtin_memcpy(fkey.addr, addr->b, 16);
	fkey.port = *port;
	fe = __lb_lookup_frontend(&fkey, LB_SCOPE_INTERNAL);
	if (!fe)
		return LB_SOCK_XLATE_NONE;
	if (fe->fe_id == 0) {
		lb_stat_inc(LB_STAT_DROP_FE_ID_ZERO);
		return LB_SOCK_XLATE_REFUSE;
	}
	if (!lb_eip_local_ok(fe, addr)) {
		lb_stat_inc(LB_STAT_SOCK_SKIP_EXT_IP);
		return LB_SOCK_XLATE_NONE;
	}
	if ((fe->flags & LB_FE_F_SOURCE_RANGES) && (!src || !lb_src_range_ok(fe, src))) {
		lb_stat_inc(LB_STAT_SOCK_SKIP_SRC_RANGE);
		return LB_SOCK_XLATE_NONE;
	}
	/* a Local policy's drop is the tc path's: the connect goes ahead untranslated and its
	 * packets are dropped there, so the client times out as under kube-proxy */
	if (lb_fe_no_backends(fe) && (fe->flags & LB_FE_F_DROP_NO_LOCAL))
		return LB_SOCK_XLATE_NONE;
	if (lb_fe_no_backends(fe)) {
		lb_stat_inc(LB_STAT_SOCK_REJECT);
		return LB_SOCK_XLATE_REFUSE;
	}

	cookie = bpf_get_socket_cookie(ctx);
	id = lb_sock_select(ctx, fe, cookie, cfg.hash_seed, &be);
	if (!id || !be) {
		lb_stat_inc(LB_STAT_SOCK_REJECT);
		return LB_SOCK_XLATE_REFUSE;
	}
	if (want_v4 && !lb_backend_is_v4(be)) {
		/* an IPv4 socket cannot reach an IPv6 backend; user space never builds such a frontend */
		lb_stat_inc(LB_STAT_SOCK_REJECT);
		return LB_SOCK_XLATE_REFUSE;
	}

	__builtin_memcpy(rval.addr, addr->b, 16);
	rval.port = *port;
	rval.fe_id = fe->fe_id;
	rval.backend_id = id;
	if (sendmsg)
		lb_sock_note_sendmsg(ctx, cookie, be, &rval);
	else
		lb_sock_note_connect(ctx, cookie, be, &rval);

	__builtin_memcpy(addr->b, be->addr, 16);
	*port = be->port;
	lb_stat_inc(LB_STAT_SOCK_CONNECT);
	return LB_SOCK_XLATE_DONE;
}

/* a connected socket (TCP, or UDP after connect()): the kernel keeps UDP's state TCP_ESTABLISHED */
static __always_inline int lb_sock_is_connected(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	return sk && sk->state == 1 /* TCP_ESTABLISHED */;
}

/* A TCP socket's translation in its slot of lb_sock_slots (lb_sock_note_connect): -1 when the slot
 * is not this socket's or names another peer; else 1 with addr/port rewritten to the frontend, or 0
 * when the translation no longer holds. */
static __always_inline int lb_sock_rev_slot(__u64 cookie, union lb_addr *addr, __be16 *port)
{
	struct lb_sock_slot *s = lb_sock_slot_of(cookie);

	if (!s || s->cookie != cookie || s->port != *port || !lb_sock_addr16_eq(s->addr, addr->b))
		return -1;
	if (!lb_sock_xlate_live(s->addr, s->port, s->fe_id, s->backend_id)) {
		lb_stat_inc(LB_STAT_SOCK_REVNAT_STALE);
		return 0;
	}
	__builtin_memcpy(addr->b, s->fe_addr, 16);
	*port = s->fe_port;
	return 1;
}

/* The common reverse path: addr/port hold the peer (a backend); rewritten to the frontend when this
 * socket was translated to that backend. */
static __always_inline int lb_sock_rev(struct bpf_sock_addr *ctx, union lb_addr *addr, __be16 *port)
{
	struct lb_sock_revnat_key rkey = {};
	struct lb_sock_revnat_val *rval;
	struct bpf_sock *sk = ctx->sk;
	struct lb_sock_peer *p = 0;

	/* a connected socket's translation first (lb_sock_store), then sendmsg()'s (lb_sock_revnat);
	 * an lb_sock_revnat entry for the backend of the storage is older than the storage */
	if (sk)
		p = bpf_sk_storage_get(&lb_sock_store, sk, 0, 0);
	if (p && lb_sock_peer_is(p, addr->b, *port)) {
		if (!lb_sock_xlate_live(p->addr, p->port, p->fe_id, p->backend_id)) {
			lb_stat_inc(LB_STAT_SOCK_REVNAT_STALE);
			/* a connected socket's stays for the termination iterator (lb_sock_term.bpf.c),
			 * which finds the sockets to close by it; an unconnected one's is forgotten */
			if (!lb_sock_is_connected(ctx))
				p->port = 0;
			return 0;
		}
		__builtin_memcpy(addr->b, p->fe_addr, 16);
		*port = p->fe_port;
		return 1;
	}
	rkey.cookie = bpf_get_socket_cookie(ctx);
	if (lb_sock_proto(ctx) == IPPROTO_TCP) {
		int r = lb_sock_rev_slot(rkey.cookie, addr, port);

		if (r >= 0)
			return r;
	}
	__builtin_memcpy(rkey.addr, addr->b, 16);
	rkey.port = *port;
	rval = bpf_map_lookup_elem(&lb_sock_revnat, &rkey);
	if (!rval)
		return 0;
	if (!lb_sock_revnat_live(&rkey, rval)) {
		/* its backend left the frontend (or the id now names another backend): showing the
		 * frontend would claim a translation that no longer holds */
		lb_stat_inc(LB_STAT_SOCK_REVNAT_STALE);
		/* a connected socket's entry (written by an agent before lb_sock_store, or by sendmsg()
		 * before it connected) stays for the termination iterator */
		if (!lb_sock_is_connected(ctx))
			bpf_map_delete_elem(&lb_sock_revnat, &rkey);
		return 0;
	}
	__builtin_memcpy(addr->b, rval->addr, 16);
	*port = rval->port;
	return 1;
}

/* ---- family glue: ctx fields to and from the 16-byte form ---- */

static __always_inline void lb_sock_load4(struct bpf_sock_addr *ctx, union lb_addr *addr, __be16 *port)
{
	lb_addr_set_v4(addr, ctx->user_ip4);
	*port = (__be16)ctx->user_port;
}

static __always_inline void lb_sock_store4(struct bpf_sock_addr *ctx, const union lb_addr *addr, __be16 port)
{
	ctx->user_ip4 = addr->w[3];
	ctx->user_port = (__u32)port;
}

/* user_ip6 allows only 4-byte accesses, one word at a time */
static __always_inline void lb_sock_load6(struct bpf_sock_addr *ctx, union lb_addr *addr, __be16 *port)
{
	addr->w[0] = ctx->user_ip6[0];
	addr->w[1] = ctx->user_ip6[1];
	addr->w[2] = ctx->user_ip6[2];
	addr->w[3] = ctx->user_ip6[3];
	*port = (__be16)ctx->user_port;
}

static __always_inline void lb_sock_store6(struct bpf_sock_addr *ctx, const union lb_addr *addr, __be16 port)
{
	ctx->user_ip6[0] = addr->w[0];
	ctx->user_ip6[1] = addr->w[1];
	ctx->user_ip6[2] = addr->w[2];
	ctx->user_ip6[3] = addr->w[3];
	ctx->user_port = (__u32)port;
}

/* A TCP socket's release: the slot its cookie holds in lb_sock_slots is freed (lb_sock_note_connect).
 * Runs at every close of a TCP socket in the cgroup: a socket never translated reads its slot's bit
 * in lb_sock_slotbit and no more. The bit is cleared before the slot is freed: a socket that claims
 * the slot next sets it again after its claim. */
static __always_inline void lb_sock_release(struct bpf_sock *sk)
{
	struct lb_sock_slot *s;
	__u64 cookie, *w, m;

	/* the protocol as connect() reads it (lb_sock_proto: an MPTCP socket's 262 is TCP's 6 there) */
	if ((__u8)sk->protocol != IPPROTO_TCP)
		return;
	cookie = bpf_get_socket_cookie(sk);
	w = lb_sock_slot_word(cookie, &m);
	if (!w || !(*w & m))
		return;
	s = lb_sock_slot_of(cookie);
	if (!s || s->cookie != cookie)
		return;
	__sync_fetch_and_and(w, ~m);
	__sync_val_compare_and_swap(&s->cookie, cookie, 0);
}

static __always_inline int lb_sock_verdict(enum lb_sock_xlate r)
{
	if (r != LB_SOCK_XLATE_REFUSE)
		return LB_SOCK_ALLOW;
	bpf_set_retval(-ECONNREFUSED);
	return LB_SOCK_DENY;
}

/* the source a socket has fixed: its bound address, else NULL (the kernel picks one after this
 * hook, at route lookup) */
static __always_inline const union lb_addr *lb_sock_bound4(struct bpf_sock_addr *ctx, union lb_addr *src)
{
	struct bpf_sock *sk = ctx->sk;
	__be32 ip;

	if (!sk)
		return 0;
	ip = sk->src_ip4;
	if (ip == 0)
		return 0;
	lb_addr_set_v4(src, ip);
	return src;
}

static __always_inline const union lb_addr *lb_sock_bound6(struct bpf_sock_addr *ctx, union lb_addr *src)
{
	struct bpf_sock *sk = ctx->sk;

	if (!sk)
		return 0;
	src->w[0] = sk->src_ip6[0];
	src->w[1] = sk->src_ip6[1];
	src->w[2] = sk->src_ip6[2];
	src->w[3] = sk->src_ip6[3];
	if ((src->w[0] | src->w[1] | src->w[2] | src->w[3]) == 0)
		return 0;
	return src;
}

static __always_inline int lb_sock_fwd4(struct bpf_sock_addr *ctx, const union lb_addr *src, int sendmsg)
{
	union lb_addr addr;
	__be16 port;
	enum lb_sock_xlate r;

	lb_sock_load4(ctx, &addr, &port);
	r = lb_sock_fwd(ctx, &addr, &port, 1, src, sendmsg);
	if (r == LB_SOCK_XLATE_DONE)
		lb_sock_store4(ctx, &addr, port);
	return lb_sock_verdict(r);
}

/* an IPv6 socket may address an IPv4 Service through an IPv4-mapped address (dual-stack socket);
 * the 16-byte form is the same, and a v4 backend is written back IPv4-mapped */
static __always_inline int lb_sock_fwd6(struct bpf_sock_addr *ctx, const union lb_addr *src, int sendmsg)
{
	union lb_addr addr;
	__be16 port;
	enum lb_sock_xlate r;
	int was_v4;

	lb_sock_load6(ctx, &addr, &port);
	was_v4 = lb_addr_is_v4(&addr);
	r = lb_sock_fwd(ctx, &addr, &port, was_v4, src, sendmsg);
	if (r == LB_SOCK_XLATE_DONE)
		lb_sock_store6(ctx, &addr, port);
	return lb_sock_verdict(r);
}

static __always_inline int lb_sock_rev4(struct bpf_sock_addr *ctx)
{
	union lb_addr addr;
	__be16 port;

	lb_sock_load4(ctx, &addr, &port);
	if (lb_sock_rev(ctx, &addr, &port) && lb_addr_is_v4(&addr))
		lb_sock_store4(ctx, &addr, port);
	return LB_SOCK_ALLOW;
}

static __always_inline int lb_sock_rev6(struct bpf_sock_addr *ctx)
{
	union lb_addr addr;
	__be16 port;

	lb_sock_load6(ctx, &addr, &port);
	if (lb_sock_rev(ctx, &addr, &port))
		lb_sock_store6(ctx, &addr, port);
	return LB_SOCK_ALLOW;
}

#endif
