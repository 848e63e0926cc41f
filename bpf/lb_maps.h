/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps: every map of the data plane, definitions only. */
/* Pinned by name under the agent's bpffs root so that maps and programs outlive an agent restart.
 * Names are at most 15 characters (BPF_OBJ_NAME_LEN). */
#ifndef KBP_LB_MAPS_H
#define KBP_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_consts.h"
#include "lb_structs.h"

/* (frontend address, port, proto, scope) -> frontend */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_FRONTENDS_MAX);
	__type(key, struct lb_fe_key);
	__type(value, struct lb_frontend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_frontends SEC(".maps");

/* fe_id -> its lb_frontends entry (struct lb_fe_slot), which the agent writes after lb_frontends and
 * clears before it: a packet's conntrack entry names its frontend's id, and a plain hit finds the
 * frontend here, an array read the verifier inlines, instead of lb_frontends' hashed lookup (a call
 * and a 20-byte hash: ~15 % of a tc hit on this VM, docs/perf-log.md session 32). It stands for that
 * lookup only where the lookup could return nothing else (lb_fe_slot_of). A map created by this load (an
 * upgrade) is filled from lb_frontends by the agent before its first write; until then hits look up. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_FE_ID_MAX);
	__type(key, __u32);
	__type(value, struct lb_fe_slot);
	/* the agent rewrites it whole through a shared mapping (~1 ms; a batch update: ~30 ms) */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_fe_ids SEC(".maps");

/* A filter in front of lb_frontends (and lb_node_addrs): bit lb_fe_filter_bit(address, port,
 * proto) is set for every frontend key, whatever its scope, by the agent before it writes the
 * frontend and cleared after the last frontend on that bit is gone. A clear bit, for the packet's
 * address and for the any-address, means no frontend: a packet to no Service (every forwarded pod
 * packet) costs two inlined array reads here instead of three or four hash lookups. Element 0 is
 * the filter's switch: 0 until the agent has filled the words 1..LB_FE_FILTER_WORDS from
 * lb_frontends (a map created by this load, an upgrade), and the programs do every lookup then. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_FE_FILTER_WORDS + 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_fe_filter SEC(".maps");
_Static_assert(LB_FE_FILTER_WORDS == 1 << (LB_FE_FILTER_BITS_LOG2 - 6), "lb_fe_filter: words for the bits");

/* A filter in front of the reply lookups in lb_ct and lb_ct_syn: a packet whose source (address,
 * port, proto) and destination address no reverse entry has (lb_hash.h lb_rev_filter_bit) is no
 * reply of a translated flow, and a packet to no Service
 * (every forwarded pod packet) then costs one inlined array read instead of a cold lb_ct bucket.
 * Two halves of LB_REV_FILTER_WORDS words, interleaved (word i of half h is element 1 + 2 i + h - 1:
 * a bit's two words share a cache line): a program that writes a reverse entry sets its source's
 * bit in both, after the entry (lb_rev_filter_set), and never clears one. Element 0 is the switch: 1 or 2, the half lookups read; anything else, the
 * filter is off and every packet is looked up. The agent turns it on and rebuilds it at each
 * conntrack sweep (ct-sweep.ts FilterBuild): it zeroes the half not in use, scans lb_ct and
 * lb_ct_syn, ORs in the bits of the entries found and switches to that half,
 * so bits of entries gone are dropped. An entry written after the zeroing sets its bit there itself; one
 * written before it is in the maps when the scan begins. Mappable: the agent ORs its bits in place
 * (an update of a word would undo a bit a program set meanwhile). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 + 2 * LB_REV_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rev_filter SEC(".maps");

/* A filter in front of the lb_ct lookups of a new flow (the SYN's forward key, the clash check's
 * and the SYN-ACK's reverse key): every key in lb_ct has its bit (lb_ct.h lb_ct_filter_bit), so a
 * clear bit means the key is not there, and the lookup of a cold bucket of a 4-8 MiB array
 * (~0.4-1 us on this VM, docs/perf-log.md session 23) is skipped for an inlined array read. Laid out,
 * switched and rebuilt as lb_rev_filter is: two interleaved halves, element 0 the half in use (1 or
 * 2; anything else: off, every key looked up), the programs set a key's bit in both halves after
 * each lb_ct insert (lb_ct_filter_set) and never clear one, and the agent rebuilds the half not in
 * use from its scan of lb_ct at each sweep (ct-sweep.ts FilterBuild) and switches to it, so bits
 * of entries gone are dropped. lb_ct_syn has no bits here: its lookups hit or warm a bucket the
 * handshake writes anyway. Hits (established packets) never read it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 + 2 * LB_CT_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ct_filter SEC(".maps");

/* backend id -> backend: an ARRAY indexed by id, so the lookup on every hit and first packet is
 * inlined (no hash of the key). An id without a backend is an all-zero entry (proto 0): read it
 * through lb_backend_get(). 24 bytes an entry, allocated at load (24 MiB at LB_BACKENDS_MAX); a hash
 * map of that capacity allocated 16 MiB of buckets at load and ~80 bytes more per backend. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

/* the backend of an id, or NULL when the id has none (an empty entry of the array) */
static __always_inline struct lb_backend *lb_backend_get(__u32 id)
{
	struct lb_backend *be = bpf_map_lookup_elem(&lb_backends, &id);

	return be && be->proto ? be : NULL;
}

/* (fe_id, slot) -> backend id: each frontend's ordered backend list. No program reads it, nor does
 * this build's agent (lb_members is its record): it is written after the first sync for an agent of
 * an earlier build, which takes lb_members from it at its start (a downgrade) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_SLOTS_MAX);
	__type(key, struct lb_slot_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_slots SEC(".maps");

/* Every Maglev table in one array of backend ids, carved into regions by user space (map-writer.ts):
 * a frontend's table is slots maglev_off .. maglev_off + M - 1. An ARRAY, so the lookup is inlined
 * (no hash-of-maps lookup per first packet), and its memory is its slots (no page per table).
 * An endpoint change rewrites a region in place, slot by slot (each aligned u32 old or new, both
 * members); a resize fills a free region and switches the frontend with one update. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAGLEV_SLOTS_MAX / LB_MAGLEV_IDS_PER_ELEM);
	__type(key, __u32);
	__type(value, struct lb_maglev_elem);
	/* user space writes regions with one copy through a shared mapping */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_maglev_slots SEC(".maps");

/* fe_id -> the frontend address and port that replies are rewritten to */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_FE_ID_MAX);
	__type(key, __u32);
	__type(value, struct lb_revnat);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_revnat SEC(".maps");

/* (fe_id, backend id) -> 1 for every backend of every frontend: validates conntrack and affinity */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MEMBERS_MAX);
	__type(key, struct lb_member_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_members SEC(".maps");

/* conntrack of translated flows: both directions, holding the chosen backend. One LRU for the
 * node (no BPF_F_NO_COMMON_LRU): per-CPU lists would give each CPU max_entries / CPUs (4K of 512K
 * on a 128-CPU node), and a CPU that RSS hands more flows would evict established ones while the
 * others' shares sit free. Floods go to lb_ct_syn, so only completed handshakes insert here. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_CT_MAX);
	__type(key, struct lb_ct_key);
	__type(value, struct lb_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ct SEC(".maps");

/* conntrack of TCP flows whose client has sent only SYNs: moved to lb_ct by the client's first
 * other packet (the handshake's ACK), so a SYN flood churns this map, never established flows.
 * Per-CPU LRU lists (BPF_F_NO_COMMON_LRU): a flood's inserts evict only from their own CPU's share,
 * without the global lock, and a flood steered to one CPU leaves the others' handshakes alone. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_CT_SYN_MAX);
	__type(key, struct lb_ct_key);
	__type(value, struct lb_ct_entry);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_ct_syn SEC(".maps");

/* sessionAffinity ClientIP: (client, fe_id) -> backend, expiring after the frontend's timeout */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_AFFINITY_MAX);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_affinity SEC(".maps");

/* loadBalancerSourceRanges: (fe_id, source prefix) -> 1 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LB_SRC_RANGES_MAX);
	__type(key, struct lb_src_range_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_src_ranges SEC(".maps");

/* enum lb_stat -> packets, per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_stats SEC(".maps");

/* fe_id -> packets and bytes translated, per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_FE_ID_MAX);
	__type(key, __u32);
	__type(value, struct lb_fe_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_fe_stats SEC(".maps");

/* socket LB: (socket cookie, backend) -> the frontend the application connected to */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_SOCK_REVNAT_MAX);
	__type(key, struct lb_sock_revnat_key);
	__type(value, struct lb_sock_revnat_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_revnat SEC(".maps");

/* socket LB: a connected socket -> its backend and the frontend it connected to. Socket-local
 * storage: connect() writes it beside the socket (no LRU insert, no bucket of a large map), and it
 * is freed with the socket (no release hook). lb_sock_revnat keeps the entries of sendmsg() on
 * unconnected sockets, which may talk to several backends at once. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lb_sock_peer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_store SEC(".maps");

/* socket LB: a TCP socket's translation, in slot cookie % LB_SOCK_SLOTS_MAX (lb_sock.h). connect()
 * takes a free slot (its cookie 0) and the socket's release hook frees it: a slot names one live
 * socket, so getpeername() finds the translation for the socket's whole life. An ARRAY: one cache
 * line written, no allocation, no memcg charge, no RCU free at close (socket storage's cost). A
 * socket whose slot is taken gets socket storage (lb_sock_store) instead. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SOCK_SLOTS_MAX);
	__type(key, __u32);
	__type(value, struct lb_sock_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_slots SEC(".maps");

/* A bit per slot of lb_sock_slots, set while a socket holds it: the release hook runs at every TCP
 * socket's close in the cgroup, and for one never translated (every pod connection to no Service)
 * it reads this 4 KiB array, mostly cached, instead of a cold line of the 2 MiB slots (~300 ns a
 * connection in connrate's profile). Set after a slot is claimed, cleared before it is freed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SOCK_SLOTS_MAX / 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_slotbit SEC(".maps");

/* externalIP prefixes the socket hooks translate although they are not this node's (CVE-2020-8554) */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LB_EIP_ALLOW_MAX);
	__type(key, struct lb_eip_allow_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_eip_ok SEC(".maps");

/* global settings, written by the agent before it attaches any program */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_config SEC(".maps");

/* ifindex -> device role */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_DEVICES_MAX);
	__type(key, __u32);
	__type(value, struct lb_device);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_devices SEC(".maps");

/* the addresses of this node: a packet to one of them may hit a NodePort frontend on 0.0.0.0 / :: */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_NODE_ADDRS_MAX);
	__type(key, struct lb_node_addr);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_node_addrs SEC(".maps");

/* the first fragment's ports by (addresses, protocol, id): the later fragments, which carry no L4
 * header, are translated as it was (Cilium keeps the same table). LRU: a datagram whose last
 * fragment never comes just ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_FRAGS_MAX);
	__type(key, struct lb_frag_key);
	__type(value, struct lb_frag_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_frags SEC(".maps");

/* the refusals' token bucket, per CPU (key 0) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_rate_limit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_reject_rl SEC(".maps");

#endif
