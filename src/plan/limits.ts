// What the kernel side can hold, as the plan must respect it: the #defines of bpf/lb_consts.h and the
// widths of bpf/lb_structs.h fields that bound a value. Pure TypeScript (plan loads no addon), so these
// are copies; test/unit/btf-layout.test.ts checks every one against lb_consts.h and the BTF of the
// compiled object, so a C edit without this file fails the unit tests.
//
// An LB_ name is the #define of that name; the others are field widths. src/dataplane/bpf/layout.ts
// mirrors lb_consts.h too (for the map writer) and is checked the same way.

/**
 * lb_consts.h: frontend ids are 1..LB_FE_ID_MAX-1 (lb_revnat is an array of this size; lb_fe_stats's
 * per-CPU counters, as large or smaller, count the ids below their size).
 * The default; a data plane whose maps were sized at load (--bpf-map-max) sets the loaded size with
 * setIdLimits(), and every reader of this binding (the plan's id allocators) follows it.
 */
export let LB_FE_ID_MAX = 131072;

/** lb_consts.h: the bounds of a Maglev table's M; both are prime */
export const LB_MAGLEV_M_MIN = 251;
export const LB_MAGLEV_M_MAX = 131071;

/** lb_consts.h: table slots per element of lb_maglev_slots (struct lb_maglev_elem.backend_id) */
export const LB_MAGLEV_IDS_PER_ELEM = 2;
/** sizeof(struct lb_maglev_elem): array maps hold whole elements */
export const MAGLEV_ELEM_BYTES = 8;

/** backend and table ids are __u32 (lb_backends' key, lb_frontend.table_id), never 0 */
export const ID_MAX = 0xffffffff;
/** lb_consts.h: lb_backends is an array of this size, indexed by backend id (the default: setIdLimits()) */
export let LB_BACKENDS_MAX = 1048576;
/** backend ids are 1..BACKEND_ID_MAX: indexes of lb_backends */
export let BACKEND_ID_MAX = LB_BACKENDS_MAX - 1;

/** lb_consts.h's sizes, whatever setIdLimits() set */
export const DEFAULT_ID_LIMITS = { frontendIds: LB_FE_ID_MAX, backends: LB_BACKENDS_MAX } as const;

/**
 * The id ranges of the loaded maps (max_entries of lb_revnat and of
 * lb_backends), when they were sized at load (src/dataplane/bpf/map-sizes.ts): ids are allocated
 * below them. One data plane per process; its load sets them before the first plan.
 */
export function setIdLimits(l: { frontendIds: number; backends: number }): void {
  if (!Number.isInteger(l.frontendIds) || l.frontendIds < 2 || !Number.isInteger(l.backends) || l.backends < 2) {
    throw new RangeError(`setIdLimits: frontendIds ${l.frontendIds} and backends ${l.backends} must be integers >= 2`);
  }
  LB_FE_ID_MAX = l.frontendIds;
  LB_BACKENDS_MAX = l.backends;
  BACKEND_ID_MAX = l.backends - 1;
}
/** lb_frontend.backend_count is a __u16 */
export const MAX_BACKENDS_PER_FRONTEND = 0xffff;
/** lb_frontend.affinity_timeout is a __u32, in seconds */
export const AFFINITY_TIMEOUT_MAX = 0xffffffff;
/** lb_config.hash_seed, the Maglev seed, is a __u32 */
export const HASH_SEED_MAX = 0xffffffff;
