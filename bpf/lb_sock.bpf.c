/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The cgroup sock_addr programs (socket load balancing). */
/* connect() and sendmsg() translate a frontend to a backend, recvmsg() and getpeername() show the
 * frontend back; the design is described in lb_sock.h. */
#include "lb_sock.h"

SEC("cgroup/connect4")
int lb_sock_connect4(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd4(ctx);
}

SEC("cgroup/connect6")
int lb_sock_connect6(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd6(ctx);
}

SEC("cgroup/sendmsg4")
int lb_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd4(ctx);
}

SEC("cgroup/sendmsg6")
int lb_sock_sendmsg6(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd6(ctx);
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
