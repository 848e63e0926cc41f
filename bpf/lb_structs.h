/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Structs shared by kernel and user space: fixed-width fields, explicit padding, one comment each. */
/* Addresses are 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d). Ports are network order,
 * ids host order. The TypeScript codecs (src/dataplane/bpf/layout.ts) are checked against BTF. */
#ifndef KBP_LB_STRUCTS_H
#define KBP_LB_STRUCTS_H

#include <linux/types.h>

/* lb_frontends key: what a client addresses */
struct lb_fe_key {
	__u8 addr[16];     /* frontend address */
	__be16 port;       /* frontend port */
	__u8 proto;        /* IPPROTO_TCP / UDP / SCTP */
	__u8 scope;        /* LB_SCOPE_* */
};

/* lb_frontends value */
struct lb_frontend {
	__u32 fe_id;            /* never 0; rev-NAT, affinity, slots and stats key */
	__u32 maglev_off;       /* first slot of this frontend's Maglev table in lb_maglev_slots (even) */
	__u32 maglev_m;         /* slots in that table (a prime); 0 when no backend */
	__u16 backend_count;    /* backends of fe_id (its pairs in lb_members); 0 = refuse */
	__u8 type;              /* LB_FE_TYPE_* */
	__u8 flags;             /* LB_FE_F_* */
	__u32 affinity_timeout; /* seconds, with LB_FE_F_AFFINITY */
	__u32 affinity_group;   /* lb_affinity's fe_id: the fe_id of the Service port's clusterIP frontend,
	                         * shared by its NodePorts, LB IPs and externalIPs (kube-proxy's affinity is
	                         * per Service port); 0 in entries of an earlier build (then fe_id) */
};

/* lb_fe_ids value; key is the __u32 fe_id: the lb_frontends entry that holds that id, key and value
 * as the agent wrote them; an id without a frontend is all zero */
struct lb_fe_slot {
	struct lb_fe_key key;
	struct lb_frontend fe;
	__u32 flags;            /* LB_FE_SLOT_F_* */
};

/* lb_backends value; key is a __u32 backend id, never 0 */
struct lb_backend {
	__u8 addr[16];     /* backend address */
	__be16 port;       /* backend (target) port */
	__u8 proto;        /* IPPROTO_* */
	__u8 flags;        /* LB_BE_F_* */
};

/* lb_slots key: the ordered backend list of a frontend (for an earlier build's agent); value __u32 backend id */
struct lb_slot_key {
	__u32 fe_id;
	__u32 slot;        /* 0 .. backend_count-1 */
};

/* lb_members key: a backend that is a member of a frontend now; value __u8 1. Conntrack and
 * affinity entries are honoured only while their (fe_id, backend_id) is here: ids are reused. */
struct lb_member_key {
	__u32 fe_id;
	__u32 backend_id;
};

/* lb_maglev_slots element: LB_MAGLEV_IDS_PER_ELEM consecutive slots (slot i in element i / 2) */
struct lb_maglev_elem {
	__u32 backend_id[2];
};

/* lb_revnat value; key is the __u32 fe_id: what replies must look like they come from */
struct lb_revnat {
	__u8 addr[16];     /* frontend address */
	__be16 port;       /* frontend port */
	__u16 pad;
};

/* lb_ct key: a flow as seen at one point, per direction */
struct lb_ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;          /* LB_CT_DIR_* */
	__u16 pad;
};

/* lb_ct value */
struct lb_ct_entry {
	__u64 last_seen;   /* bpf_ktime_get_coarse_ns(), refreshed at most every LB_CT_REFRESH_NS */
	__u32 backend_id;  /* chosen backend (both directions) */
	__u32 fe_id;       /* frontend, for rev-NAT and stats */
	__u16 flags;       /* LB_CT_F_* */
	__be16 orphan_port; /* LB_CT_F_ORPHAN only: the backend's port (forward entry), the frontend's (reverse) */
	__be16 fe_port;    /* the port the client sent to: with fe_addr, what replies leave from, without a
	                    * lookup in lb_revnat; 0 in entries of an earlier build (then lb_revnat's) */
	__u16 pad2;
	__u8 fe_addr[16];  /* the address the client sent to (the node address of a NodePort on 0.0.0.0 /
	                    * ::): replies leave from it; all zero in entries of an earlier build (then
	                    * lb_revnat's address). LB_CT_F_ORPHAN forward entry: the backend's address */
};

/* lb_affinity key (LRU): client + the frontend's affinity group (lb_frontend.affinity_group) */
struct lb_affinity_key {
	__u8 client[16];
	__u32 fe_id;
};

/* lb_affinity value */
struct lb_affinity_val {
	__u64 last_used;   /* bpf_ktime_get_ns() */
	__u32 backend_id;
	__u32 pad;
};

/* lb_src_ranges key (LPM trie): prefixlen counts fe_id's 32 bits plus the address prefix
 * (an IPv4 /n is 32 + 96 + n, as the address is IPv4-mapped); value __u8 1 = allowed.
 * fe_id 0, never a frontend's, holds the cluster's own sources (detectLocalMode ClusterCIDR /
 * NodeCIDR): traffic from elsewhere to a LB_FE_F_MASQ_OFF_CLUSTER frontend is masqueraded. */
struct lb_src_range_key {
	__u32 prefixlen;
	__u32 fe_id;
	__u8 addr[16];
};

/* lb_fe_stats value (per-CPU array indexed by fe_id) */
struct lb_fe_stats {
	__u64 packets;
	__u64 bytes;
};

/* lb_sock_revnat key (LRU): a socket and the backend it was connected to */
struct lb_sock_revnat_key {
	__u64 cookie;      /* bpf_get_socket_cookie() */
	__u8 addr[16];     /* backend address */
	__be16 port;       /* backend port */
	__u16 pad;
	__u32 pad2;
};

/* lb_sock_revnat value: the frontend the application asked for */
struct lb_sock_revnat_val {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
	__u32 fe_id;
	__u32 backend_id;  /* the backend chosen; the entry holds only while (fe_id, backend_id) is in lb_members
	                    * (0 in entries written by a build before this field: not trusted) */
};

/* lb_sock_store value (socket-local storage): a connected socket's translation, freed with the socket */
struct lb_sock_peer {
	__u8 addr[16];     /* the backend connect() chose */
	__be16 port;       /* its port; 0: no translation held */
	__u16 pad;
	__u8 fe_addr[16];  /* the frontend the application asked for */
	__be16 fe_port;
	__u16 pad2;
	__u32 fe_id;
	__u32 backend_id;  /* the translation holds only while (fe_id, backend_id) is in lb_members */
};

/* lb_sock_slots value: a TCP socket's translation, in slot cookie % LB_SOCK_SLOTS_MAX from its
 * connect() to its release (lb_sock.h); one cache line */
struct lb_sock_slot {
	__u64 cookie;      /* the owner socket's (bpf_get_socket_cookie); 0: free */
	__u8 addr[16];     /* then the fields of struct lb_sock_peer, in its layout */
	__be16 port;
	__u16 pad;
	__u8 fe_addr[16];
	__be16 fe_port;
	__u16 pad2;
	__u32 fe_id;
	__u32 backend_id;
	__u64 pad3;
};

/* lb_sock_eip_allow key (LPM trie): an externalIP prefix that the socket hooks may translate for
 * pods and host processes (CVE-2020-8554); value __u8 1 */
struct lb_eip_allow_key {
	__u32 prefixlen;   /* of addr; an IPv4 /n is 96 + n (IPv4-mapped) */
	__u8 addr[16];
};

/* lb_config (array, one entry) */
struct lb_config {
	__u32 hash_seed;   /* Maglev hash seed, the same on every node */
	__u32 snat_mark;   /* skb mark asking the nftables masquerade rule to SNAT */
	__u32 flags;       /* LB_CFG_F_* */
	__u32 pad;
};

/* lb_node_addrs key: an address of this node; value __u8 1 */
struct lb_node_addr {
	__u8 addr[16];
};

/* lb_devices value; key is the __u32 ifindex */
struct lb_device {
	__u32 flags;       /* LB_DEV_F_* */
};

/* lb_frags key (LRU): the fragments of one datagram, as RFC 791 / RFC 8200 group them */
struct lb_frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;          /* the IPv4 identification (its 2 bytes as read) or the IPv6 fragment header's */
	__u8 proto;        /* IPPROTO_TCP / UDP */
	__u8 pad;
	__u16 pad2;
};

/* lb_frags value: the ports the first fragment carried, for the ones without an L4 header */
struct lb_frag_val {
	__be16 sport;
	__be16 dport;
};

/* lb_reject_rl value (per CPU): the token bucket of the refusals (RST, ICMP) the programs send */
struct lb_rate_limit {
	__u64 last_ns;     /* bpf_ktime_get_ns() of the last refill */
	__u64 tokens;      /* refusals that may still be sent */
};

#endif
