/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* A diagnostic build of bpf/kbp.bpf.c (not shipped): the tc programs time each run and add it to
 * lb_diag_pkt by hook and TCP packet class, so a connrate round tells where a connection's program
 * time goes packet by packet in real traffic (bpf_stats gives one sum per program). Built by
 * bench/pkt-time.sh; the object otherwise is the checkout's, loaded as KBP_CONNRATE_A. The timer
 * (two bpf_ktime_get_ns) is inside each figure: ~20-40 ns a run. */
#include "lb_tc.h"
/* with bench/pkt-time-steps.patch applied to the headers (LB_DIAG_STEP defined): the forward path's
 * steps are timed for the packets of class LB_DIAG_CLASS to the VIP (lb_maps.h lb_diag_steps) */
#ifndef LB_DIAG_CLASS
#define LB_DIAG_CLASS 0
#endif
#include "lb_xdp.bpf.c"
#include "lb_sock.bpf.c"

/* classes: 0 SYN, 1 SYN-ACK, 2 bare ACK, 3 ACK with data, 4 FIN, 5 RST, 6 other TCP, 7 not TCP/IPv4;
 * slot hook * 8 + class, hook 0 ingress, 1 egress; + 16 for a packet of connrate's Service (to
 * LB_DIAG_VIP before ingress, from it after egress) */
#ifndef LB_DIAG_VIP
#define LB_DIAG_VIP 0x0a64000a /* 10.100.0.10, connrate's VIP */
#endif
struct lb_diag_val {
	__u64 n;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 32);
	__type(key, __u32);
	__type(value, struct lb_diag_val);
} lb_diag_pkt SEC(".maps");

/* per slot, a histogram of run times: bucket b counts runs of [64 << (b-1), 64 << b) ns (b 0: under
 * 64), the last bucket all longer ones; a mean is moved by the rare run a vCPU was preempted in */
#define LB_DIAG_BUCKETS 16
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 32 * LB_DIAG_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} lb_diag_hist SEC(".maps");

static __always_inline __u32 lb_diag_class(struct __sk_buff *skb)
{
	__u8 vihl, proto, flags;
	__u16 tot;
	__u32 ihl;

	if (skb->protocol != bpf_htons(0x0800))
		return 7;
	if (bpf_skb_load_bytes(skb, 14, &vihl, 1) || bpf_skb_load_bytes(skb, 14 + 9, &proto, 1) || proto != 6)
		return 7;
	ihl = (vihl & 0xf) * 4;
	if (bpf_skb_load_bytes(skb, 14 + ihl + 13, &flags, 1) || bpf_skb_load_bytes(skb, 14 + 2, &tot, 2))
		return 7;
	if (flags & 0x04)
		return 5;
	if (flags & 0x01)
		return 4;
	if ((flags & 0x12) == 0x02)
		return 0;
	if ((flags & 0x12) == 0x12)
		return 1;
	if (flags & 0x10) {
		__u8 doff;

		if (bpf_skb_load_bytes(skb, 14 + ihl + 12, &doff, 1))
			return 6;
		return bpf_ntohs(tot) > ihl + (doff >> 4) * 4 ? 3 : 2;
	}
	return 6;
}

/* 16 when the IPv4 address at offset off of the frame is LB_DIAG_VIP */
static __always_inline __u32 lb_diag_vip(struct __sk_buff *skb, __u32 off)
{
	__u32 a;

	if (skb->protocol != bpf_htons(0x0800) || bpf_skb_load_bytes(skb, off, &a, 4))
		return 0;
	return a == bpf_htonl(LB_DIAG_VIP) ? 16 : 0;
}

static __always_inline void lb_diag_add(struct __sk_buff *skb, __u32 hook, __u64 dt, __u32 vip)
{
	__u32 k = vip + hook * 8 + lb_diag_class(skb);
	struct lb_diag_val *v = bpf_map_lookup_elem(&lb_diag_pkt, &k);

	__u64 *h;
	__u32 b = 0;

	if (v) {
		v->n++;
		v->ns += dt;
	}
	while (b < LB_DIAG_BUCKETS - 1 && (dt >> 6) >= (1ULL << b))
		b++;
	k = k * LB_DIAG_BUCKETS + b;
	h = bpf_map_lookup_elem(&lb_diag_hist, &k);
	if (h)
		(*h)++;
}

SEC("tc")
int lb_tc_ingress(struct __sk_buff *skb)
{
	__u32 vip = lb_diag_vip(skb, 14 + 16);
#ifdef LB_DIAG_STEP
	__u32 z = 0, cls = vip ? lb_diag_class(skb) : 7;
	struct lb_diag_steps *d = bpf_map_lookup_elem(&lb_diag_steps, &z);
#endif
	__u64 t0 = bpf_ktime_get_ns();
	int r;

#ifdef LB_DIAG_STEP
	if (d) {
		d->active = cls == LB_DIAG_CLASS ? 1 : 0;
		d->last = t0;
	}
#endif
	r = lb_tc(skb, 1);
#ifdef LB_DIAG_STEP
	LB_DIAG_STEP(10);
	if (d)
		d->active = 0;
#endif
	lb_diag_add(skb, 0, bpf_ktime_get_ns() - t0, vip);
	return r;
}

SEC("tc")
int lb_tc_egress(struct __sk_buff *skb)
{
	__u64 t0 = bpf_ktime_get_ns();
	int r = lb_tc(skb, 0);
	__u64 dt = bpf_ktime_get_ns() - t0;

	lb_diag_add(skb, 1, dt, lb_diag_vip(skb, 14 + 12));
	return r;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
