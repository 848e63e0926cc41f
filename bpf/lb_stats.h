/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Counters: the global LB_STAT_* counters (lb_stats) and per-frontend traffic (lb_fe_stats). */
#ifndef KBP_LB_STATS_H
#define KBP_LB_STATS_H

#include "lb_maps.h"
#include "lb_parse.h"

/* idx: an LB_STAT_* */
static __always_inline void lb_stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lb_stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline void lb_fe_stat(__u32 fe_id, __u32 bytes)
{
	struct lb_fe_stats *s = bpf_map_lookup_elem(&lb_fe_stats, &fe_id);

	if (s) {
		s->packets += 1;
		s->bytes += bytes;
	}
}

/* counts why a packet the parser gave up on is passed untouched */
static __always_inline void lb_count_unparsed(int r)
{
	if (r == LB_PARSE_MALFORMED)
		lb_stat_inc(LB_STAT_PASS_MALFORMED);
	else if (r == LB_PARSE_FRAGMENT)
		lb_stat_inc(LB_STAT_PASS_FRAGMENT);
}

#endif
