/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The data plane's one BPF object: tc and XDP Service translation (lb_tc.h) and the cgroup socket
 * hooks (lb_sock.h), over the maps of lb_maps.h. */
#include "lb_maps.h"
#include "lb_tc.h"
#include "lb_sock.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
