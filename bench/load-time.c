// What a fresh load of a BPF object costs, part by part (issue 10: the first sync's start): each
// map created alone (thread CPU, the best of 3; lb_ct and lb_ct_syn at the agent's sizes on a node
// of CPUS online CPUs, map-sizes.ts), then the object's load with the verifier's statistics of each
// program (BPF_LOG_STATS: verification time, the kernel's wall, which a busy machine's preemption
// stretches; processed instructions, states), and the load's wall and thread CPU (the verifier's CPU). Nothing is pinned (every pin path cleared: libbpf's default would pin into the
// bpffs root and reuse what another run left there).
//   cc -O2 -o /tmp/load-time bench/load-time.c -lbpf && /tmp/load-time bpf/kbp.bpf.o [CPUS]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double ms(clockid_t c) {
	struct timespec t;
	clock_gettime(c, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int quiet(enum libbpf_print_level l, const char *f, va_list a) { return 0; }

static struct bpf_object *open_unpinned(const char *path) {
	struct bpf_object *o = bpf_object__open(path);
	if (!o) return NULL;
	struct bpf_map *m;
	bpf_object__for_each_map(m, o) bpf_map__set_pin_path(m, NULL);
	return o;
}

#define MAX_PROGS 64
static char logs[MAX_PROGS][4096];

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s OBJECT [CPUS]\n", argv[0]);
		return 2;
	}
	libbpf_set_print(quiet);
	long cpus = argc > 2 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
	// kube-proxy's conntrack sizing (map-sizes.ts defaultCtEntries): 2 x max(32768 x CPUs, 131072)
	unsigned ct = 2 * (32768 * cpus > 131072 ? 32768 * cpus : 131072);
	struct bpf_object *o = open_unpinned(argv[1]);
	if (!o) {
		perror("open");
		return 1;
	}
	double total = 0;
	struct bpf_map *m;
	printf("%-18s %5s %10s %7s %9s\n", "map", "type", "max", "flags", "cpu ms");
	bpf_object__for_each_map(m, o) {
		const char *name = bpf_map__name(m);
		if (strchr(name, '.')) continue;
		unsigned max = bpf_map__max_entries(m);
		if (!strcmp(name, "lb_ct") && ct < max) max = ct;
		if (!strcmp(name, "lb_ct_syn") && ct / 4 < max) max = ct / 4;
		LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = bpf_map__map_flags(m));
		double best = -1;
		for (int r = 0; r < 3; r++) {
			double t = ms(CLOCK_THREAD_CPUTIME_ID);
			int fd = bpf_map_create(bpf_map__type(m), name, bpf_map__key_size(m), bpf_map__value_size(m), max, &opts);
			double d = ms(CLOCK_THREAD_CPUTIME_ID) - t;
			if (fd < 0) break;  // (a map that needs BTF, e.g. socket storage: made by the load below)
			close(fd);
			if (best < 0 || d < best) best = d;
		}
		if (best < 0) {
			printf("%-18s %5d %10u %#7x %9s\n", name, bpf_map__type(m), max, bpf_map__map_flags(m), "-");
			continue;
		}
		total += best;
		printf("%-18s %5d %10u %#7x %9.1f\n", name, bpf_map__type(m), max, bpf_map__map_flags(m), best);
	}
	printf("maps alone: %.1f ms of CPU\n\n", total);
	bpf_object__close(o);

	o = open_unpinned(argv[1]);
	struct bpf_program *p;
	int i = 0;
	bpf_object__for_each_program(p, o) {
		if (i >= MAX_PROGS) break;
		bpf_program__set_log_level(p, 4);  // BPF_LOG_STATS
		bpf_program__set_log_buf(p, logs[i++], sizeof logs[0]);
	}
	double w0 = ms(CLOCK_MONOTONIC), c0 = ms(CLOCK_THREAD_CPUTIME_ID);
	int err = bpf_object__load(o);
	double w1 = ms(CLOCK_MONOTONIC), c1 = ms(CLOCK_THREAD_CPUTIME_ID);
	printf("load: %s, wall %.1f ms, thread CPU %.1f ms (maps at the object's own sizes)\n", err ? "FAILED" : "ok", w1 - w0, c1 - c0);
	i = 0;
	bpf_object__for_each_program(p, o) {
		if (i >= MAX_PROGS) break;
		const char *log = logs[i++];
		long usec = 0, insns = 0, states = 0;
		const char *v = strstr(log, "verification time ");
		const char *n = strstr(log, "processed ");
		const char *s = strstr(log, "total_states ");
		if (v) usec = atol(v + strlen("verification time "));
		if (n) insns = atol(n + strlen("processed "));
		if (s) states = atol(s + strlen("total_states "));
		printf("%-28s %-20s verifier %8.1f ms wall  processed %7ld insns  %6ld states\n", bpf_program__name(p), bpf_program__section_name(p), usec / 1e3, insns, states);
	}
	bpf_object__close(o);
	return err ? 1 : 0;
}
