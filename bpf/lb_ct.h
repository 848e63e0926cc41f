/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Conntrack: the entries of translated flows in lb_ct, one per direction. */
/* The forward entry (client -> frontend, as the client sends it) keeps a flow on its backend; the
 * reverse entry (backend -> client, as the backend answers) finds the frontend to rewrite replies
 * back to. */
#ifndef KBP_LB_CT_H
#define KBP_LB_CT_H

#include "lb_maps.h"
#include "lb_parse.h"
#include "lb_stats.h"
#include "lb_hash.h"

#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef EEXIST
#define EEXIST 17
#endif

/* Writes an entry of an LRU map (lb_ct, lb_ct_syn, lb_frags) and counts it in stat_insert when its
 * key was new. The kernel counts no LRU eviction; the agent derives them at each sweep as the
 * programs' inserts less all deletions less the growth of the map's count (ct-sweep.ts). A key that
 * exists is overwritten in place (BPF_EXIST); one evicted between the two calls is inserted anew.
 * The result is read as an int: before 6.4 a map's update op returns int, and where a call site sees
 * one map only, the verifier calls that op directly, so an error reaches the program zero-extended
 * (-EEXIST as 0xffffffef); compared as a long it matched no errno and every overwrite failed on 6.1
 * (found by s8-pkt11's one-map call sites; main's call sites pass a map chosen at run time, which
 * keeps the sign-extending helper wrapper). */
static __always_inline int lb_lru_put(void *map, const void *k, const void *v, __u32 stat_insert)
{
	int r = (int)bpf_map_update_elem(map, k, v, BPF_NOEXIST);

	if (r == -EEXIST) {
		r = (int)bpf_map_update_elem(map, k, v, BPF_EXIST);
		if (r != -ENOENT)
			return r;
		r = (int)bpf_map_update_elem(map, k, v, BPF_NOEXIST);
	}
	if (r == 0)
		lb_stat_inc(stat_insert);
	return r;
}

/* Rewrites a conntrack entry that exists, in place: no update call, so no LRU node taken and given
 * back (an update of an LRU map pops a free node before it looks at the key, and a BPF_NOEXIST that
 * fails pushes it back: in real traffic that pop, with interrupts off, was the costliest step of a
 * SYN on a reused client port). The (backend_id, fe_id) pair is one aligned 8-byte store, written
 * last: a reader on another CPU sees the old pair or the new one, never a backend of one frontend
 * with the id of another (lb_member_backend() checks the pair). */
static __always_inline void lb_ct_overwrite(struct lb_ct_entry *e, const struct lb_ct_entry *v)
{
	__u64 ids;

	__builtin_memcpy(e->fe_addr, v->fe_addr, 16);
	e->flags = v->flags;
	e->orphan_port = v->orphan_port;
	e->fe_port = v->fe_port;
	e->pad2 = v->pad2;
	e->last_seen = v->last_seen;
	__builtin_memcpy(&ids, &v->backend_id, 8);
	*(volatile __u64 *)&e->backend_id = ids;
}

/* Writes a conntrack entry whose key the caller has just looked up (its bucket is warm): in place
 * where the key exists (lb_ct_overwrite), else inserted (lb_lru_put). */
static __always_inline int lb_ct_put_looked(void *map, const struct lb_ct_key *k, const struct lb_ct_entry *v,
					    __u32 stat_insert)
{
	struct lb_ct_entry *e = bpf_map_lookup_elem(map, k);

	if (e) {
		lb_ct_overwrite(e, v);
		return 0;
	}
	return lb_lru_put(map, k, v, stat_insert);
}

/* deletes an entry, counted in stat_delete when there was one */
static __always_inline void lb_lru_del(void *map, const void *k, __u32 stat_delete)
{
	if (bpf_map_delete_elem(map, k) == 0)
		lb_stat_inc(stat_delete);
}

/* the element of a bit's word in half 1 of a filter (lb_maps.h lb_rev_filter, lb_ct_filter); half
 * 2's is the next one */
static __always_inline __u32 lb_filter_key(__u32 bit)
{
	return 1 + 2 * (bit >> 6);
}

/* A bit set in both halves of a filter (lb_rev_filter, lb_ct_filter), two words of one cache line.
 * A bit already set is left unwritten: no store on the cache line every CPU reads. */
static __always_inline void lb_filter_set(void *filter, __u32 bit)
{
	__u32 key = lb_filter_key(bit);
	__u64 *v, m = 1ULL << (bit & 63);

	v = bpf_map_lookup_elem(filter, &key);
	if (v && !(*v & m))
		__sync_fetch_and_or(v, m);
	key += 1;
	v = bpf_map_lookup_elem(filter, &key);
	if (v && !(*v & m))
		__sync_fetch_and_or(v, m);
}

/* After a reverse entry with this source (a backend) and destination (its client) was written
 * (lb_maps.h lb_rev_filter): its bit, in both halves (lb_filter_set). */
static __always_inline void lb_rev_filter_set(const __u8 *addr, __be16 port, __u8 proto, const union lb_addr *client)
{
	__u32 w[4];

	__builtin_memcpy(w, addr, 16);
	lb_filter_set(&lb_rev_filter, lb_rev_filter_bit(w, port, proto, client->w));
}

/* 0 when no reverse entry in lb_ct or lb_ct_syn has this source and destination (a packet between
 * them is no reply of ours); 1 when one may, or the filter is off */
static __always_inline int lb_rev_filter_may(const union lb_addr *src, __be16 port, __u8 proto,
					     const union lb_addr *dst)
{
	__u32 key = 0, bit;
	__u64 *v, half;

	v = bpf_map_lookup_elem(&lb_rev_filter, &key);
	if (!v)
		return 1;
	half = *v;
	if (half != 1 && half != 2)
		return 1;
	bit = lb_rev_filter_bit(src->w, port, proto, dst->w);
	key = lb_filter_key(bit) + (__u32)(half - 1);
	v = bpf_map_lookup_elem(&lb_rev_filter, &key);
	return !v || ((*v >> (bit & 63)) & 1);
}

/* An address's four words as loaded, mixed (lb_fe_filter_bit's first steps). Read in place as words
 * (the keys are the callers' stack variables, 8-byte aligned), not copied: a program and its calls
 * share the verifier's 512 bytes of stack, and XDP's own frame is near it. */
static __always_inline __u32 lb_ct_filter_addr(const __u8 *a)
{
	const __u32 *w = (const __u32 *)(const void *)a;
	__u32 h;

	h = (w[0] ^ w[1] ^ w[2]) * 0x85ebca6bU;
	h = (h ^ w[3]) * 0x9e3779b1U;
	return h ^ (h >> 15);
}

/* The bit of an lb_ct key in lb_ct_filter: the word a hash of the client's address, the client
 * port's group of 32 and the protocol; the bit the client port's place in its group and the
 * direction, XORed with 6 bits of a hash of the other end (the frontend of a forward key, the backend
 * of a reverse one). The client is a forward key's source and a reverse key's destination. So a
 * flow's two keys share one word (one line read by a SYN, one written by an lb_ct insert), and so do
 * a client's consecutive connections (connect() steps through its ephemeral ports): a cached line,
 * where a hash of the whole key read a cold one per key (chain bench: UDP first packets 1.06-1.14 of
 * no filter, two cold lines written a flow). src/dataplane/bpf/layout.ts ctFilterBit() computes the
 * same from the key's bytes. */
static __always_inline __u32 lb_ct_filter_bit(const struct lb_ct_key *k)
{
	__u32 s = lb_ct_filter_addr(k->saddr), d = lb_ct_filter_addr(k->daddr);
	__u32 sport = bpf_ntohs(k->sport), dport = bpf_ntohs(k->dport);
	__u32 fwd = k->dir == LB_CT_DIR_FWD;
	__u32 client = fwd ? s : d, other = fwd ? d : s;
	__u32 cport = fwd ? sport : dport, oport = fwd ? dport : sport;
	__u32 h, o;

	h = (client ^ ((cport >> 5) << 8) ^ k->proto) * 0x85ebca6bU;
	h ^= h >> 16;
	h *= 0x9e3779b1U;
	o = (other ^ oport) * 0x85ebca6bU;
	o ^= o >> 15;
	o *= 0x9e3779b1U;
	return ((h >> (32 - 20 + 6)) << 6) | ((((cport & 31) << 1) | (k->dir & 1)) ^ (o >> 26));
}
_Static_assert(LB_CT_FILTER_WORDS == 1 << (20 - 6), "lb_ct_filter_bit: 2^20 bits a half");

/* The two lb_ct_filter functions are global subprograms where tc calls them: the verifier checks each
 * once per program instead of at each of their eight call sites on every path that reaches one
 * (inlined, they made the object's load ~10-20 % slower, docs/perf-log.md session 24). XDP's subprogram
 * lb_xdp_forward, itself verified once, inlines them (LB_CTF_INLINE): no third frame on its stack. */
#define LB_CTF_OFF 0    /* lb_select: a SYN's lookups not behind the filter */
#define LB_CTF_CALL 1   /* behind it, through the global subprograms */
#define LB_CTF_INLINE 2 /* behind it, inlined */

/* After an lb_ct insert of k: its bit in both halves of lb_ct_filter (two words of one cache line,
 * lb_filter_key's layout), each written only when clear. (One call for a flow's two keys, which
 * share a word, would save two atomic ORs a flow, but its frame put XDP's stack over the verifier's
 * 512 bytes for a program and its calls together; measured in session 26, no change to see.) */
static __always_inline void lb_ct_filter_set_inl(const struct lb_ct_key *k)
{
	lb_filter_set(&lb_ct_filter, lb_ct_filter_bit(k));
}

__noinline int lb_ct_filter_set(const struct lb_ct_key *k)
{
	if (!k)
		return 0;
	lb_ct_filter_set_inl(k);
	return 0;
}

/* 0 when lb_ct has no entry of key k (its bit is clear in the half in use); 1 when it may, or the
 * filter is off */
static __always_inline int lb_ct_filter_may_inl(const struct lb_ct_key *k)
{
	__u32 key = 0, bit;
	__u64 *v, half;

	v = bpf_map_lookup_elem(&lb_ct_filter, &key);
	if (!v)
		return 1;
	half = *v;
	if (half != 1 && half != 2)
		return 1;
	bit = lb_ct_filter_bit(k);
	key = lb_filter_key(bit) + (__u32)(half - 1);
	v = bpf_map_lookup_elem(&lb_ct_filter, &key);
	return !v || ((*v >> (bit & 63)) & 1);
}

__noinline int lb_ct_filter_may(const struct lb_ct_key *k)
{
	if (!k)
		return 1;
	return lb_ct_filter_may_inl(k);
}

/* the two, called or inlined as mode (LB_CTF_*, a constant at each call site) says */
static __always_inline void lb_ct_filter_set_as(const struct lb_ct_key *k, int mode)
{
	if (mode == LB_CTF_INLINE)
		lb_ct_filter_set_inl(k);
	else
		lb_ct_filter_set(k);
}

static __always_inline int lb_ct_filter_may_as(const struct lb_ct_key *k, int mode)
{
	return mode == LB_CTF_INLINE ? lb_ct_filter_may_inl(k) : lb_ct_filter_may(k);
}

/* an lb_ct lookup of a new flow's key behind lb_ct_filter: NULL at once when the filter says the key
 * is not there */
static __always_inline struct lb_ct_entry *lb_ct_get_filtered(const struct lb_ct_key *k, int mode)
{
	return lb_ct_filter_may_as(k, mode) ? bpf_map_lookup_elem(&lb_ct, k) : NULL;
}

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

/* What a backend may send a client whose flow is in its handshake (in lb_ct_syn, or in lb_ct flagged
 * LB_CT_F_SYN) and have translated: what nf_conntrack passes with its entry in SYN_SENT
 * (nf_conntrack_proto_tcp.c, tcp_conntracks' reply row): a SYN-ACK (to SYN_RECV) or a SYN
 * (simultaneous open), a RST (to CLOSE), and an ACK without FIN, which it ignores but accepts
 * ("not flagged as invalid": NATed): a TIME_WAIT socket's bare ACK (or a challenge ACK), a stale
 * socket's data, which the client answers with the RST that ends that socket only if it comes from
 * the frontend. A FIN, or a segment with none of SYN ACK FIN RST, is INVALID there: kube-proxy does
 * not translate it (and KUBE-FORWARD drops it), nor do we. ECN, PSH, URG bits ignored. */
static __always_inline int lb_tcp_handshake_reply(const struct lb_pkt *p)
{
	return p->proto == IPPROTO_TCP &&
	       ((p->tcp_flags & (LB_TCP_SYN | LB_TCP_RST)) || (p->tcp_flags & (LB_TCP_ACK | LB_TCP_FIN)) == LB_TCP_ACK);
}

#define LB_NSEC_PER_SEC 1000000000ULL

/* the clock of conntrack and affinity: CLOCK_MONOTONIC at tick resolution, a read of the kernel's
 * cached time instead of the clock source (issue 10: no clock read per hit worth the name) */
static __always_inline __u64 lb_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* ns an entry of lb_ct lives without a packet (an established flow's entry has neither flag: one
 * test on its hit path) */
static __always_inline __u64 lb_ct_lifetime(__u8 proto, __u16 flags)
{
	if (flags & (LB_CT_F_CLOSING | LB_CT_F_SYN))
		return (flags & LB_CT_F_SYN ? LB_CT_TIMEOUT_TCP_SYN : LB_CT_TIMEOUT_CLOSING) * LB_NSEC_PER_SEC;
	if (proto == IPPROTO_TCP)
		return LB_CT_TIMEOUT_TCP * LB_NSEC_PER_SEC;
	return LB_CT_TIMEOUT_UDP * LB_NSEC_PER_SEC;
}

/* signed: an entry stamped by a finer clock may be a tick ahead of now */
static __always_inline int lb_ct_fresh_for(const struct lb_ct_entry *e, __u64 now, __u64 lifetime)
{
	return (__s64)(now - e->last_seen) <= (__s64)lifetime;
}

static __always_inline int lb_ct_alive(const struct lb_ct_entry *e, __u8 proto, __u64 now)
{
	return lb_ct_fresh_for(e, now, lb_ct_lifetime(proto, e->flags));
}

/* an lb_ct entry, or NULL when there is none or it expired (*expired set then) */
static __always_inline struct lb_ct_entry *lb_ct_lookup(const struct lb_ct_key *k, __u64 now, int *expired)
{
	struct lb_ct_entry *e = bpf_map_lookup_elem(&lb_ct, k);

	if (e && !lb_ct_alive(e, k->proto, now)) {
		*expired = 1;
		return NULL;
	}
	return e;
}

/* an lb_ct_syn entry still within the handshake timeout */
static __always_inline struct lb_ct_entry *lb_ct_syn_lookup(const struct lb_ct_key *k, __u64 now)
{
	struct lb_ct_entry *e = bpf_map_lookup_elem(&lb_ct_syn, k);

	if (e && !lb_ct_fresh_for(e, now, LB_CT_TIMEOUT_TCP_SYN * LB_NSEC_PER_SEC))
		return NULL;
	return e;
}

/* The address a translated flow's replies leave from: the one its client sent to (lb_commit), or,
 * in an entry of an earlier build that did not record it, the frontend's (lb_revnat). They differ
 * for a NodePort on 0.0.0.0 / ::, whose replies come from the node address the client used. */
static __always_inline const __u8 *lb_ct_reply_addr(const struct lb_ct_entry *ct, const struct lb_revnat *rn)
{
	__u32 w0, w1, w2, w3;

	__builtin_memcpy(&w0, &ct->fe_addr[0], 4);
	__builtin_memcpy(&w1, &ct->fe_addr[4], 4);
	__builtin_memcpy(&w2, &ct->fe_addr[8], 4);
	__builtin_memcpy(&w3, &ct->fe_addr[12], 4);
	return (w0 | w1 | w2 | w3) ? ct->fe_addr : rn->addr;
}

/* whether lb_ct_touch() would write last_seen (and the caller then refresh the flow's other entry) */
static __always_inline int lb_ct_refresh_due(const struct lb_ct_entry *e, __u64 now)
{
	return (__s64)(now - e->last_seen) >= (__s64)LB_CT_REFRESH_NS;
}

/* Refreshes an entry on a hit, in place (no update call per packet): the CLOSING flag when a FIN
 * or RST passes, last_seen only when it is LB_CT_REFRESH_NS old. Returns 1 when it wrote
 * last_seen (the caller then refreshes the flow's other entry too). */
static __always_inline int lb_ct_touch(struct lb_ct_entry *e, const struct lb_pkt *p, __u64 now)
{
	if (lb_tcp_closing(p) && !(e->flags & LB_CT_F_CLOSING))
		e->flags |= LB_CT_F_CLOSING;
	if (!lb_ct_refresh_due(e, now))
		return 0;
	e->last_seen = now;
	return 1;
}

/* On a forward entry's refresh: the reverse entry of the flow lives as long as the forward one,
 * and one lost to LRU eviction (or the sweep, for a flow whose backend never answers) is written
 * again from the forward entry, or the backend's replies would leave untranslated. Returns 1 when
 * it had to be written. */
static __always_inline int lb_ct_refresh_rev(const struct lb_pkt *p, const struct lb_backend *be,
					     const struct lb_ct_entry *fwd, __u64 now, int ctf)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *rev, e = {};

	lb_ct_key_rev(&k, p, be);
	rev = bpf_map_lookup_elem(&lb_ct, &k);
	if (rev && rev->fe_id == fwd->fe_id && rev->backend_id == fwd->backend_id) {
		rev->last_seen = now;
		/* the handshake's end (lb_select cleared LB_CT_F_SYN in *fwd): the reverse entry's too */
		if ((rev->flags & LB_CT_F_SYN) && !(fwd->flags & LB_CT_F_SYN))
			rev->flags &= ~LB_CT_F_SYN;
		return 0;
	}
	/* another frontend's live flow on the same reply tuple keeps it (see lb_ct_clash) */
	if (rev && rev->fe_id != fwd->fe_id && lb_ct_alive(rev, p->proto, now))
		return 0;
	e.last_seen = now;
	e.backend_id = fwd->backend_id;
	e.fe_id = fwd->fe_id;
	e.flags = fwd->flags;
	e.fe_port = fwd->fe_port;
	__builtin_memcpy(e.fe_addr, fwd->fe_addr, 16);
	if (rev)
		lb_ct_overwrite(rev, &e);
	else if (lb_lru_put(&lb_ct, &k, &e, LB_STAT_CT_INSERT) == 0)
		lb_ct_filter_set_as(&k, ctf);
	lb_rev_filter_set(be->addr, be->port, p->proto, &p->saddr);
	return 1;
}

/* a reverse entry orphaned from this very tuple's earlier flow (the same client to the same frontend
 * address and port, lb_orphan.h): a SYN there starts a new flow that takes its place, no clash */
static __always_inline int lb_ct_orphan_of(const struct lb_ct_entry *rev, const struct lb_pkt *p)
{
	__u32 a[4];

	if (!(rev->flags & LB_CT_F_ORPHAN) || rev->orphan_port != p->dport)
		return 0;
	__builtin_memcpy(a, rev->fe_addr, 16);
	return a[0] == p->daddr.w[0] && a[1] == p->daddr.w[1] && a[2] == p->daddr.w[2] && a[3] == p->daddr.w[3];
}

/* A new flow whose replies would carry the same tuple as the replies of another frontend's live flow
 * (one client ip:port to two frontends that share a backend): its reverse entry would take over the
 * other flow's, and that flow's replies would leave with this frontend's address. lb_ct_syn holds
 * TCP flows only: a UDP first packet does not look there (one cold bucket fewer). */
static __always_inline int lb_ct_clash(const struct lb_pkt *p, const struct lb_backend *be, __u32 fe_id, __u64 now,
				       int ct_filter)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *rev;

	lb_ct_key_rev(&k, p, be);
	/* a TCP SYN writes lb_ct_syn, not lb_ct: behind the filter its lb_ct bucket stays untouched. A
	 * UDP first packet writes this very key into lb_ct next, so its lookup warms the bucket the
	 * insert takes, and the filter read would be a cost of its own (chain bench: UDP 1.06-1.14 with it) */
	rev = ct_filter && p->proto == IPPROTO_TCP ? lb_ct_get_filtered(&k, ct_filter) : bpf_map_lookup_elem(&lb_ct, &k);
	if (rev && rev->fe_id != fe_id && !(rev->flags & LB_CT_F_CLOSING) && lb_ct_alive(rev, p->proto, now) &&
	    !lb_ct_orphan_of(rev, p))
		return 1;
	if (p->proto != IPPROTO_TCP)
		return 0;
	/* a handshake the backend refused (its RST flagged the entry closing) holds the tuple no more
	 * than a closed lb_ct flow does */
	rev = lb_ct_syn_lookup(&k, now);
	return rev && rev->fe_id != fe_id && !(rev->flags & LB_CT_F_CLOSING);
}

/* A SYN that no frontend translates, on a tuple whose reply a closed translated flow still claims
 * (a client port reused for a direct or socket-balanced connection to the same backend): the old
 * reverse entry would rewrite this connection's replies to the frontend. It is dropped. */
static __always_inline void lb_ct_forget_closed(const struct lb_pkt *p)
{
	struct lb_ct_key k = {};
	struct lb_ct_entry *ct;

	if (!lb_tcp_syn(p) || !lb_rev_filter_may(&p->daddr, p->dport, p->proto, &p->saddr))
		return;
	lb_ct_key_rev_of(&k, p);
	ct = lb_ct_get_filtered(&k, LB_CTF_CALL);
	if (ct && (ct->flags & LB_CT_F_CLOSING))
		lb_lru_del(&lb_ct, &k, LB_STAT_CT_DELETE);
}

#endif
