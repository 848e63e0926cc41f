/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The data plane's one BPF object, bpf/kbp.bpf.o: every program and map. */
/* One compilation unit over the per-hook entry files. Including them rather than linking separate
 * objects (bpftool gen object) keeps every map defined once in lb_maps.h with no extern
 * declarations, and the object exactly what clang emits. */
#include "lb_tc.bpf.c"
#include "lb_xdp.bpf.c"
#include "lb_sock.bpf.c"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
