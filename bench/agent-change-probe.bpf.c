/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* bench/agent-change.bench.ts: when did the kernel hold a change? At the exit of each bpf() call
 * of the agent's process, while a change is armed in probe_want, this checks what the bench's poll
 * checked (the frontend's backend list in lb_slots names a backend at the wanted address in
 * lb_backends) and stamps the first call after which it holds with bpf_ktime_get_ns()
 * (CLOCK_MONOTONIC, the clock of the bench's process.hrtime()). The bench then reads probe_got at
 * its leisure: the figure's resolution is this stamp, not how often the bench looks, and the bench
 * no longer polls 11 lookups every 0.2 ms on the cores the agent needs. Every map write that the
 * check reads is a bpf() call (lb_frontends, lb_slots, lb_backends; the Maglev table's mmap writes
 * are not read by it, as the poll did not read them).
 * The change's start is stamped in the kernel too, in the bench's renaming thread (rename_*): the entry
 * of its rename syscall, the wake-up of the agent's main thread from inside it (sched_waking: vfs_rename
 * has done the rename and fsnotify's move event woke the agent's inotify/epoll wait: the moment the
 * agent is told) and the syscall's exit. The bench starts a change at the wake-up, or, where the agent
 * was not asleep to be woken, at the syscall's entry (never later than the rename took effect). Both
 * ends are then bpf_ktime_get_ns(): a bench descheduled before its rename no longer counts as the
 * agent's time. (fentry on fsnotify() would be the plainer hook; this machine refuses tracing
 * programs with EPERM, tracepoints load.) */
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
	__u32 bench_tgid;     /* the bench's process id and the thread that renames (its main thread); 0: no rename stamps */
	__u32 bench_tid;
};

/* probe_got value: the last change seen to land */
struct probe_got {
	__u64 ns;             /* bpf_ktime_get_ns() at the exit of the agent's bpf() call after which it held */
	__u32 id;             /* its probe_want id */
	__u32 calls;          /* the agent's bpf() calls checked for it (the last one included) */
	__u64 rename_enter_ns; /* the bench's rename syscall for change rename_id: its entry, */
	__u64 rename_wake_ns;  /* the agent's main thread woken from inside it (0: not woken), */
	__u64 rename_exit_ns;  /* and its exit (0: not yet) */
	__u32 rename_id;       /* the probe_want id of the change that rename is for */
	__s32 rename_ret;      /* the syscall's return */
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

/* the armed change when the current thread is the bench's renaming thread, else NULL */
static __always_inline struct probe_want *bench_thread(void)
{
	__u32 zero = 0;
	struct probe_want *w = bpf_map_lookup_elem(&probe_want, &zero);

	if (!w || !w->id || !w->bench_tgid || bpf_get_current_pid_tgid() != (((__u64)w->bench_tgid << 32) | w->bench_tid))
		return NULL;
	return w;
}

/* the first rename syscall of the bench's thread after a change is armed is that change's */
static __always_inline int rename_enter(void)
{
	__u32 zero = 0;
	struct probe_want *w = bench_thread();
	struct probe_got *g = w ? bpf_map_lookup_elem(&probe_got, &zero) : NULL;

	if (!g || g->rename_id == w->id)
		return 0;
	g->rename_enter_ns = bpf_ktime_get_ns();
	g->rename_wake_ns = 0;
	g->rename_exit_ns = 0;
	g->rename_id = w->id;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_rename")
int rename_enter_rename(void *ctx) { return rename_enter(); }
SEC("tracepoint/syscalls/sys_enter_renameat")
int rename_enter_renameat(void *ctx) { return rename_enter(); }
SEC("tracepoint/syscalls/sys_enter_renameat2")
int rename_enter_renameat2(void *ctx) { return rename_enter(); }

/* tracefs events/syscalls/sys_exit_rename*: format */
struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__s64 ret;
};

static __always_inline int rename_exit(struct sys_exit_ctx *ctx)
{
	__u32 zero = 0;
	struct probe_want *w = bench_thread();
	struct probe_got *g = w ? bpf_map_lookup_elem(&probe_got, &zero) : NULL;

	if (!g || g->rename_id != w->id || g->rename_exit_ns)
		return 0;
	g->rename_ret = (__s32)ctx->ret;
	g->rename_exit_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_rename")
int rename_exit_rename(struct sys_exit_ctx *ctx) { return rename_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_renameat")
int rename_exit_renameat(struct sys_exit_ctx *ctx) { return rename_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_renameat2")
int rename_exit_renameat2(struct sys_exit_ctx *ctx) { return rename_exit(ctx); }

/* tracefs events/sched/sched_waking/format: the woken task's pid at offset 24 */
struct sched_waking_ctx {
	__u64 common;
	char comm[16];
	__s32 pid;
	__s32 prio;
	__s32 target_cpu;
};

/* the agent's main thread (tid = its pid) woken by the bench's thread inside the armed rename call:
 * fsnotify's move event through the agent's inotify descriptor and epoll wait. An interrupt taken
 * inside the call that wakes the agent (its epoll timeout) would stamp too, still between the call's
 * entry and exit; the trace header's irq flags, which would tell, are not readable from a tracepoint
 * program (its context starts past them: the verifier refuses the load). */
SEC("tracepoint/sched/sched_waking")
int rename_wakes_agent(struct sched_waking_ctx *ctx)
{
	__u32 zero = 0;
	struct probe_want *w = bench_thread();

	if (!w || (__u32)ctx->pid != w->tgid)
		return 0;
	struct probe_got *g = bpf_map_lookup_elem(&probe_got, &zero);

	if (!g || g->rename_id != w->id || g->rename_exit_ns || g->rename_wake_ns)
		return 0;
	g->rename_wake_ns = bpf_ktime_get_ns();
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
