/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench/agent-change.bench.ts: when did the kernel hold a change? At the exit of each bpf() call
 * of the agent's process, while a change is armed in probe_want, this checks what the bench's poll
 * checked (the frontend's backend list in lb_slots names a backend at the wanted address in
 * lb_backends) and stamps the first call after which it holds with bpf_ktime_get_ns()
 * (CLOCK_MONOTONIC, the clock of the bench's process.hrtime()). The bench then reads probe_got at
 * its leisure: the figure's resolution is this stamp, not how often the bench looks, and the bench
 * no longer polls 11 lookups every 0.2 ms on the cores the agent needs. Every map write that the
 * check reads is a bpf() call (lb_frontends, lb_slots, lb_backends; the Maglev table's mmap writes
 * are not read by it, as the poll did not read them). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../bpf/lb_structs.h"

/* a frontend lists at most this many backends in the bench (10 endpoints a Service) */
#define PROBE_MAX_SLOTS 64

/* probe_want value: the change the bench waits for; id 0 = none */
struct probe_want {
	__u8 addr[16];        /* the new backend's address (IPv4-mapped, as lb_backends holds it) */
	struct lb_fe_key fe;  /* the frontend whose list must name it */
	__u32 id;             /* the bench's change id, never 0 while armed */
	__u32 tgid;           /* the agent's process id */
};

/* probe_got value: the last change seen to land */
struct probe_got {
	__u64 ns;             /* bpf_ktime_get_ns() at the exit of the agent's bpf() call after which it held */
	__u32 id;             /* its probe_want id */
	__u32 calls;          /* the agent's bpf() calls checked for it (the last one included) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_want);
} probe_want SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_got);
} probe_got SEC(".maps");

/* the agent's maps: the loader (agent-change-probe.c) puts the pinned ones' fds in place of these */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct lb_fe_key);
	__type(value, struct lb_frontend);
} lb_frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct lb_slot_key);
	__type(value, __u32);
} lb_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_backend);
} lb_backends SEC(".maps");

/* calls checked for the armed change so far */
static __u32 checked_id, checked_calls;

SEC("tracepoint/syscalls/sys_exit_bpf")
int agent_bpf_exit(void *ctx)
{
	__u32 zero = 0;
	struct probe_want *w = bpf_map_lookup_elem(&probe_want, &zero);

	if (!w || !w->id || (__u32)(bpf_get_current_pid_tgid() >> 32) != w->tgid)
		return 0;
	struct probe_got *g = bpf_map_lookup_elem(&probe_got, &zero);

	if (!g || g->id == w->id)
		return 0;
	if (checked_id != w->id) {
		checked_id = w->id;
		checked_calls = 0;
	}
	checked_calls++;
	struct lb_frontend *fe = bpf_map_lookup_elem(&lb_frontends, &w->fe);

	if (!fe)
		return 0;
	__u32 n = fe->backend_count, fe_id = fe->fe_id;
	const __u32 *want = (const __u32 *)w->addr;

	for (__u32 s = 0; s < PROBE_MAX_SLOTS && s < n; s++) {
		struct lb_slot_key k = { .fe_id = fe_id, .slot = s };
		__u32 *id = bpf_map_lookup_elem(&lb_slots, &k);

		if (!id)
			continue;
		struct lb_backend *b = bpf_map_lookup_elem(&lb_backends, id);

		if (!b || !b->proto)
			continue;
		const __u32 *have = (const __u32 *)b->addr;

		if (have[0] == want[0] && have[1] == want[1] && have[2] == want[2] && have[3] == want[3]) {
			g->ns = bpf_ktime_get_ns();
			g->calls = checked_calls;
			g->id = w->id;
			return 0;
		}
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
