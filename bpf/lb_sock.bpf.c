/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The cgroup sock_addr programs (socket load balancing). */
/* connect() and sendmsg() translate a frontend to a backend, recvmsg() and getpeername() show the
 * frontend back; the design is described in lb_sock.h. */
#include "lb_sock.h"

SEC("cgroup/connect4")
int lb_sock_connect4(struct bpf_sock_addr *ctx)
{
	union lb_addr src;

	return lb_sock_fwd4(ctx, lb_sock_bound4(ctx, &src), 0);
}

SEC("cgroup/connect6")
int lb_sock_connect6(struct bpf_sock_addr *ctx)
{
	union lb_addr src;

	return lb_sock_fwd6(ctx, lb_sock_bound6(ctx, &src), 0);
}

/* msg_src_ip4/6 (a source named with IP_PKTINFO) may be read in the sendmsg hooks only */
SEC("cgroup/sendmsg4")
int lb_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	union lb_addr src;
	__be32 ip = ctx->msg_src_ip4;

	if (ip) {
		lb_addr_set_v4(&src, ip);
		return lb_sock_fwd4(ctx, &src, 1);
	}
	return lb_sock_fwd4(ctx, lb_sock_bound4(ctx, &src), 1);
}

SEC("cgroup/sendmsg6")
int lb_sock_sendmsg6(struct bpf_sock_addr *ctx)
{
	union lb_addr src;

	src.w[0] = ctx->msg_src_ip6[0];
	src.w[1] = ctx->msg_src_ip6[1];
	src.w[2] = ctx->msg_src_ip6[2];
	src.w[3] = ctx->msg_src_ip6[3];
	if (src.w[0] | src.w[1] | src.w[2] | src.w[3])
		return lb_sock_fwd6(ctx, &src, 1);
	return lb_sock_fwd6(ctx, lb_sock_bound6(ctx, &src), 1);
}

SEC("cgroup/recvmsg4")
int lb_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev4(ctx);
}

SEC("cgroup/recvmsg6")
int lb_sock_recvmsg6(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev6(ctx);
}

SEC("cgroup/getpeername4")
int lb_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev4(ctx);
}

SEC("cgroup/getpeername6")
int lb_sock_getpeername6(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev6(ctx);
}

/* attached before connect4/6, so that no translated socket closes unseen */
SEC("cgroup/sock_release")
int lb_sock_release_hook(struct bpf_sock *sk)
{
	lb_sock_release(sk);
	return 1;
}
