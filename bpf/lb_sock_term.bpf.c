/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bpf/lb_sock_term.bpf.o: terminates connected UDP sockets whose backend left their frontend. */
/* A connected UDP socket is translated once, at connect(): the kernel then sends every datagram to
 * the backend, whatever happens to it, and our hooks never run again. When the agent removes a
 * backend from a frontend it runs this iterator (iter/udp) in every network namespace: a socket
 * whose translation (lb_sock_store, written by connect4/6; lb_sock_revnat from an agent before it)
 * no longer holds (lb_sock_revnat.h) is destroyed
 * with the bpf_sock_destroy kfunc (kernel 6.5+): the application sees ECONNABORTED and, like a
 * client after kube-proxy's UDP conntrack flush, reconnects through the hooks to a current backend.
 * Sockets the hooks did not translate (no entry) are never touched. TCP is left alone, as
 * kube-proxy leaves established TCP connections to a removed endpoint.
 *
 * A separate object: the kfunc does not exist before 6.5, and the main object must still load there
 * (the agent logs that connected UDP sockets then keep a removed backend). It shares the pinned maps
 * of the main object by name. Kernel types are declared here with only the fields used, relocated
 * by CO-RE against the running kernel's BTF, instead of a vmlinux.h of one kernel. */
#include <linux/bpf.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include "lb_structs.h"
#include "lb_maps.h"
#include "lb_sock_revnat.h"

#define LB_CORE __attribute__((preserve_access_index))

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} LB_CORE;

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
} LB_CORE;

struct sock {
	struct sock_common __sk_common;
} LB_CORE;

struct udp_sock;

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
} LB_CORE;

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* one line of the iterator's output per socket destroyed (decoded by src/dataplane/bpf/sock-term.ts) */
struct lb_sock_term_rec {
	__u64 cookie;
	__u8 addr[16];     /* the backend it was connected to */
	__be16 port;
	__u16 pad;
	__u32 fe_id;
	__s32 err;         /* bpf_sock_destroy's result */
	__u32 pad2;
};

SEC("iter/udp")
int lb_sock_term_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	struct lb_sock_revnat_key k = {};
	struct lb_sock_peer *p;
	__u32 fe_id;
	struct lb_sock_term_rec rec = {};
	__u16 family;

	if (!sk)
		return 0;
	k.port = sk->__sk_common.skc_dport;
	if (k.port == 0)
		return 0; /* not connected */
	family = sk->__sk_common.skc_family;
	if (family == 2 /* AF_INET */) {
		__be32 a = sk->__sk_common.skc_daddr;

		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], &a, 4);
	} else if (family == 10 /* AF_INET6 */) {
		__builtin_memcpy(k.addr, &sk->__sk_common.skc_v6_daddr, 16);
	} else {
		return 0;
	}
	k.cookie = bpf_get_socket_cookie(sk);
	/* the socket's storage first (connect() writes it), then lb_sock_revnat (a socket an agent
	 * before lb_sock_store translated, or sendmsg() before it connected) */
	p = bpf_sk_storage_get(&lb_sock_store, sk, 0, 0);
	if (p && p->port == k.port && lb_sock_addr16_eq(p->addr, k.addr)) {
		if (lb_sock_xlate_live(k.addr, k.port, p->fe_id, p->backend_id))
			return 0;
		fe_id = p->fe_id;
	} else {
		struct lb_sock_revnat_val *v = bpf_map_lookup_elem(&lb_sock_revnat, &k);

		if (!v || lb_sock_revnat_live(&k, v))
			return 0;
		fe_id = v->fe_id;
		p = 0;
	}
	rec.cookie = k.cookie;
	__builtin_memcpy(rec.addr, k.addr, 16);
	rec.port = k.port;
	rec.fe_id = fe_id;
	rec.err = bpf_sock_destroy((struct sock_common *)sk);
	if (p)
		p->port = 0;
	else
		bpf_map_delete_elem(&lb_sock_revnat, &k);
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

/* The network namespaces to run lb_sock_term_udp in: one line (tgid, netns inode) per process, all
 * of them in one read() of this iterator, where a walk of /proc stats /proc/PID/ns/net once per
 * process (~30 us each here: ~40 ms on the event loop of a busy node at every pass). The agent opens
 * /proc/PID/ns/net of one process per namespace. A task without a namespace (exiting, or a kernel
 * thread's) is left out. */
struct ns_common {
	unsigned int inum;
} LB_CORE;

struct net {
	struct ns_common ns;
} LB_CORE;

struct nsproxy {
	struct net *net_ns;
} LB_CORE;

struct task_struct {
	int pid;
	int tgid;
	struct nsproxy *nsproxy;
} LB_CORE;

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} LB_CORE;

/* decoded by src/dataplane/bpf/sock-term.ts */
struct lb_netns_rec {
	__u32 tgid;
	__u32 inum;
};

SEC("iter/task")
int lb_netns_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	struct lb_netns_rec rec;
	struct nsproxy *nsp;
	struct net *net;

	if (!t || t->pid != t->tgid)
		return 0; /* one line per process, not per thread */
	nsp = t->nsproxy;
	if (!nsp)
		return 0;
	net = nsp->net_ns;
	if (!net)
		return 0;
	rec.tgid = t->tgid;
	rec.inum = net->ns.inum;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
