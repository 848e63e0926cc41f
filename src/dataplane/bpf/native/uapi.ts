// Constants of the bpf() system call the wrappers and their callers pass (include/uapi/linux/bpf.h).
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const BPF_F_LOCK = 4;
export const BPF_F_NO_PREALLOC = 1 << 0;
export const BPF_F_NO_COMMON_LRU = 1 << 1;
export const BPF_F_MMAPABLE = 1 << 10;
export const BPF_F_INNER_MAP = 1 << 12;

export const MapType = {
  HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERF_EVENT_ARRAY: 4, PERCPU_HASH: 5, PERCPU_ARRAY: 6,
  STACK_TRACE: 7, CGROUP_ARRAY: 8, LRU_HASH: 9, LRU_PERCPU_HASH: 10, LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12, HASH_OF_MAPS: 13,
} as const;

export const ProgType = { SOCKET_FILTER: 1, SCHED_CLS: 3, SCHED_ACT: 4, XDP: 6, CGROUP_SKB: 8, CGROUP_SOCK: 9, CGROUP_SOCK_ADDR: 18 } as const;

/** kernel limit on map and program names, NUL included */
export const BPF_OBJ_NAME_LEN = 16;
