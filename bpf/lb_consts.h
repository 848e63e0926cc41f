/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Constants: every tunable and enumeration of the data plane. */
/* The TypeScript side mirrors these in src/dataplane/bpf/layout.ts; test/unit/btf-layout.test.ts
 * checks the structs against BTF. */
#ifndef KBP_LB_CONSTS_H
#define KBP_LB_CONSTS_H

/* map sizes: the defaults; the agent sets most at load (--bpf-map-max, src/dataplane/bpf/map-sizes.ts),
 * and no program bounds an index by them */
#ifndef LB_FRONTENDS_MAX
#define LB_FRONTENDS_MAX 131072      /* (address, port, proto, scope) entries */
#endif
#ifndef LB_BACKENDS_MAX
#define LB_BACKENDS_MAX 1048576      /* distinct (address, port, proto) backends */
#endif
#ifndef LB_SLOTS_MAX
#define LB_SLOTS_MAX 2097152         /* (frontend, slot) -> backend, all frontends together */
#endif
#ifndef LB_MAGLEV_SLOTS_MAX
#define LB_MAGLEV_SLOTS_MAX 16776192 /* Maglev slots of all tables together (lb_maglev_slots): 64 MiB with
                                      * the array header page, as the kernel counts it;
                                      * 10,000 tables of M=1601 (10 backends, pow2 sizing) and room to resize */
#endif
#ifndef LB_FE_ID_MAX
#define LB_FE_ID_MAX 131072          /* frontend ids are 1..LB_FE_ID_MAX-1; also the per-frontend stats index */
#endif
#ifndef LB_CT_MAX
#define LB_CT_MAX 524288             /* conntrack entries (two per translated flow) */
#endif
#ifndef LB_CT_SYN_MAX
#define LB_CT_SYN_MAX 65536          /* conntrack of TCP flows whose client sent only SYNs so far (two per flow) */
#endif
#ifndef LB_MEMBERS_MAX
#define LB_MEMBERS_MAX 2097152       /* (frontend, backend) pairs: one per slot of lb_slots */
#endif
#ifndef LB_AFFINITY_MAX
#define LB_AFFINITY_MAX 131072
#endif
#ifndef LB_SRC_RANGES_MAX
#define LB_SRC_RANGES_MAX 65536
#endif
#ifndef LB_SOCK_REVNAT_MAX
#define LB_SOCK_REVNAT_MAX 262144
#endif
#ifndef LB_SOCK_SLOTS_MAX
#define LB_SOCK_SLOTS_MAX 32768       /* lb_sock_slots: TCP connect()s' translations, by socket cookie modulo this */
#endif
#ifndef LB_EIP_ALLOW_MAX
#define LB_EIP_ALLOW_MAX 1024         /* --local-external-ip-allow prefixes */
#endif
#ifndef LB_DEVICES_MAX
#define LB_DEVICES_MAX 1024
#endif
#ifndef LB_FRAGS_MAX
#define LB_FRAGS_MAX 8192            /* datagrams in flight in fragments (first fragment seen) */
#endif
#ifndef LB_NODE_ADDRS_MAX
#define LB_NODE_ADDRS_MAX 1024       /* addresses of this node: NodePorts on 0.0.0.0 / :: answer there */
#endif

/* lb_fe_filter: a word per hash of (address, port >> 5), a bit per port of that group and protocol
 * (lb_hash.h lb_fe_filter_bit); 2^20 bits, 128 KiB */
#define LB_FE_FILTER_BITS_LOG2 20
#define LB_FE_FILTER_WORDS 16384        /* u64 words: 2^(LB_FE_FILTER_BITS_LOG2 - 6) */
/* lb_rev_filter: two halves of LB_REV_FILTER_WORDS u64 words, one bit per hash of a reverse entry's
 * source (backend address, port, proto), the same bit and size as lb_fe_filter */
#define LB_REV_FILTER_WORDS 16384       /* u64 words of each half: 2^20 bits */
/* lb_ct_filter: two halves of LB_CT_FILTER_WORDS u64 words, one bit per hash of an lb_ct key
 * (lb_ct.h lb_ct_filter_bit): 2^20 bits a half, 256 KiB with both, interleaved */
#define LB_CT_FILTER_WORDS 16384

/* Maglev: table sizes are primes chosen per frontend by user space (src/plan/maglev.ts);
 * the kernel only needs the bounds. */
#define LB_MAGLEV_M_MIN 251
#define LB_MAGLEV_M_MAX 131071
/* Backend ids per element of lb_maglev_slots: array maps round values up to 8 bytes, so two
 * u32 ids per element use every byte. Slot i lives in element i / 2, position i % 2. */
#define LB_MAGLEV_IDS_PER_ELEM 2

/* frontend scope: which traffic a frontend entry serves */
#define LB_SCOPE_EXTERNAL 0          /* arrived from outside the node */
#define LB_SCOPE_INTERNAL 1          /* started on this node: pods or the host */

/* frontend type (struct lb_frontend.type) */
#define LB_FE_TYPE_CLUSTER_IP 1
#define LB_FE_TYPE_NODE_PORT 2
#define LB_FE_TYPE_LOAD_BALANCER 3
#define LB_FE_TYPE_EXTERNAL_IP 4

/* frontend flags (struct lb_frontend.flags) */
#define LB_FE_F_AFFINITY (1 << 0)        /* sessionAffinity ClientIP; timeout in affinity_timeout */
#define LB_FE_F_SOURCE_RANGES (1 << 1)   /* only sources in lb_src_ranges for this frontend may pass */
#define LB_FE_F_SNAT_REMOTE (1 << 2)     /* external traffic to a non-local backend is SNATed (eTP Cluster) */
#define LB_FE_F_DROP_NO_LOCAL (1 << 3)   /* no backend because a Local traffic policy found none on this node,
					  * while the Service has some elsewhere: drop, don't refuse (kube-proxy) */
#define LB_FE_F_MASQ_ALL (1 << 4)        /* every new flow is masqueraded (KUBE-MARK-MASQ: masqueradeAll, eTP Cluster) */
#define LB_FE_F_MASQ_OFF_CLUSTER (1 << 5) /* new flows from outside the cluster's pods are masqueraded (detectLocal) */

/* lb_fe_ids entry flags (struct lb_fe_slot.flags) */
#define LB_FE_SLOT_F_TWIN (1 << 0)       /* lb_frontends holds the entry's address, port and protocol in the
					  * other scope too (an eTP=Local external address): the device decides */

/* backend flags (struct lb_backend.flags) */
#define LB_BE_F_TERMINATING (1 << 0)     /* keeps its flows, gets no new ones unless the table holds it */
#define LB_BE_F_LOCAL (1 << 1)           /* runs on this node */

/* conntrack direction (struct lb_ct_key.dir) */
#define LB_CT_DIR_FWD 0                  /* client -> frontend, as the client sent it */
#define LB_CT_DIR_REV 1                  /* backend -> client, as the backend replies */

/* conntrack flags (struct lb_ct_entry.flags) */
#define LB_CT_F_SNAT (1 << 0)            /* the kernel masquerades this flow (skb mark set) */
#define LB_CT_F_REV_AT_INGRESS (1 << 1)  /* translated at egress (host-originated): undo replies at ingress */
#define LB_CT_F_CLOSING (1 << 2)         /* FIN or RST seen */
#define LB_CT_F_HAIRPIN (1 << 3)         /* client is its own backend */
#define LB_CT_F_ORPHAN (1 << 4)          /* a flow of a deleted frontend: the entry holds its translation, no
					  * id (fe_id and backend_id 0; lb_orphan.h) */
#define LB_CT_F_SYN (1 << 5)             /* handshake not complete: a SYN over a closed flow's entries wrote
					  * them into lb_ct (lb_commit); lives LB_CT_TIMEOUT_TCP_SYN, cleared
					  * in both entries by the client's first packet that is no SYN */

/* Conntrack lifetimes: seconds an entry lives without a packet, checked on every lookup (an expired
 * entry is a miss) and by the agent's sweep, which deletes expired entries. The kernel's TCP
 * established timeout (5 days) would leave LRU eviction as the only reclaim: Cilium's 6 h instead.
 * UDP: between the kernel's unreplied (30 s) and replied (120 s) streams, as Cilium (60 s). */
#define LB_CT_TIMEOUT_TCP 21600          /* established */
#define LB_CT_TIMEOUT_TCP_SYN 60         /* lb_ct_syn, and lb_ct entries LB_CT_F_SYN: handshake not completed */
#define LB_CT_TIMEOUT_CLOSING 120        /* FIN or RST seen: the kernel's TIME_WAIT */
#define LB_CT_TIMEOUT_UDP 60
/* last_seen is written at most once per this many ns (Cilium's report interval): a hit on an entry
 * refreshed less than a second ago writes nothing; the refresh also restores the flow's reverse entry */
#define LB_CT_REFRESH_NS 1000000000

/* Refusals (TCP RST, ICMP unreachable) sent per CPU: a token bucket of LB_REJECT_BURST refilled
 * at LB_REJECT_RATE a second, the order of the kernel's own ICMP limits (icmp_msgs_per_sec 1000,
 * burst 50, for the whole host); past it a refusal is dropped and counted */
#define LB_REJECT_RATE 1000
#define LB_REJECT_BURST 100

/* device flags (lb_devices value) */
#define LB_DEV_F_EXTERNAL (1 << 0)       /* receives NodePort / LoadBalancer / externalIP traffic */
#define LB_DEV_F_LOCAL_SRC (1 << 1)      /* what arrives here comes from this node's pods (detectLocalMode
					  * BridgeInterface / InterfaceNamePrefix) */

/* config (lb_config, one entry) flags */
#define LB_CFG_F_SOCK_LB (1 << 0)        /* socket hooks translate; packets from such sockets need no NAT */
#define LB_CFG_F_HOST_REROUTE (1 << 1)   /* host packets translated at tc egress are routed anew (FIB) */

/* default skb mark that asks the kernel (nftables masquerade rule) to SNAT a flow */
#define LB_SNAT_MARK_DEFAULT 0x4b500000

/* counters: index into lb_stats (per-CPU u64). Drops and notable events, never reused. */
enum lb_stat {
	LB_STAT_UNSPEC = 0,
	LB_STAT_FWD_NEW,              /* first packet of a flow translated */
	LB_STAT_FWD_CT_HIT,           /* packet translated through its conntrack entry */
	LB_STAT_REV_NAT,              /* reply translated back to the frontend */
	LB_STAT_REJECT_NO_BACKEND,    /* refused: frontend has no backend (RST / ICMP sent) */
	LB_STAT_DROP_SOURCE_RANGE,    /* source not in loadBalancerSourceRanges */
	LB_STAT_DROP_BACKEND_ID_ZERO, /* a Maglev slot held backend id 0 */
	LB_STAT_DROP_BACKEND_MISSING, /* a Maglev slot named a backend id that lb_backends lacks */
	LB_STAT_DROP_TABLE_MISSING,   /* frontend has no Maglev table to read (M 0 or a region out of range) */
	LB_STAT_DROP_FE_ID_ZERO,      /* a frontend entry with id 0 */
	LB_STAT_DROP_REVNAT_MISSING,  /* a reply whose frontend has no reverse-NAT entry */
	LB_STAT_PASS_MALFORMED,       /* truncated or malformed header: passed untouched */
	LB_STAT_PASS_FRAGMENT,        /* IP fragment whose first fragment was not seen (or an ICMP error in fragments): passed untouched */
	LB_STAT_CT_BACKEND_GONE,      /* conntrack named a backend no longer in its frontend: re-balanced (UDP, SYN) */
	LB_STAT_RESET_BACKEND_GONE,   /* conntrack named a backend no longer in its frontend: TCP reset */
	LB_STAT_AFFINITY_HIT,
	LB_STAT_AFFINITY_EXPIRED,
	LB_STAT_CT_FULL,              /* conntrack insert failed */
	LB_STAT_XDP_TO_TC,            /* XDP left a packet to tc (SNAT needed) */
	LB_STAT_DROP_CSUM,            /* checksum helper failed */
	LB_STAT_SOCK_CONNECT,         /* socket hook translated a connect/sendmsg */
	LB_STAT_SOCK_REJECT,          /* socket hook refused: no backend */
	LB_STAT_CT_EXPIRED,           /* conntrack entry past its lifetime on lookup: treated as a miss */
	LB_STAT_CT_REV_RESTORED,      /* a flow's lost reverse entry written again from its forward entry */
	LB_STAT_DROP_CT_CLASH,        /* new flow refused: its replies' tuple is another frontend's live flow */
	LB_STAT_SOCK_SKIP_SRC_RANGE,  /* socket hook left a source-ranged frontend to tc: source unknown or not allowed */
	LB_STAT_SOCK_SKIP_EXT_IP,     /* socket hook left an externalIP untranslated (CVE-2020-8554 allowlist) */
	LB_STAT_SOCK_REVNAT_STALE,    /* recvmsg/getpeername found a reverse entry whose backend left its frontend */
	LB_STAT_DROP_NO_LOCAL,        /* dropped: a Local traffic policy and no backend on this node (LB_FE_F_DROP_NO_LOCAL) */
	LB_STAT_FRAG_XLATE,           /* a later IP fragment translated as its first fragment was */
	LB_STAT_DROP_REJECT_LIMIT,    /* a refusal (RST, ICMP) not sent: over the per-CPU rate limit */
	LB_STAT_ICMP_XLATE,           /* an ICMP error about a client's packet or a reply translated */
	LB_STAT_HOST_REROUTE,         /* a host packet translated at tc egress, redirected to the backend's device */
	LB_STAT_DROP_HOST_NO_ROUTE,   /* a host packet translated at tc egress with no route to its backend off this device: dropped */
	/* entries the programs added (a new key) and deleted: with the agent's sweep and the map's count,
	 * they give the LRU evictions the kernel does not count (ct-sweep.ts EvictionCounter) */
	LB_STAT_CT_INSERT,            /* lb_ct: a new key written */
	LB_STAT_CT_DELETE,            /* lb_ct: an entry deleted */
	LB_STAT_CT_SYN_INSERT,        /* lb_ct_syn: a new key written */
	LB_STAT_CT_SYN_DELETE,        /* lb_ct_syn: an entry deleted */
	LB_STAT_FRAG_INSERT,          /* lb_frags: a new key written */
	LB_STAT_HOST_NO_SNAT,         /* a host flow translated at tc egress that needed masquerade: past POSTROUTING, not masqueraded */
	LB_STAT_CT_ORPHAN,            /* a packet of a deleted frontend's established flow translated by its orphaned entry */
	LB_STAT_MAX,
};

#endif
