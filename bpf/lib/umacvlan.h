/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The fast path's shared definitions: every map and every struct shared with userspace is
 * declared here once. Userspace mirrors the structs in crates/umacvlan-io/src/bpf/maps.rs
 * ("must stay in sync with bpf/lib/umacvlan.h"): the loader refuses a map whose key or value
 * size differs, and umacvlan-io's bpf_programs test runs every field through the programs. */
#ifndef UMACVLAN_H
#define UMACVLAN_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Modes, as the kernel's MACVLAN_MODE_* (and umacvlan_core::engine::Mode). */
#define UMV_MODE_PRIVATE  1
#define UMV_MODE_VEPA     2
#define UMV_MODE_BRIDGE   4
#define UMV_MODE_PASSTHRU 8
#define UMV_MODE_SOURCE   16

/* umv_dev.flags */
#define UMV_DEV_UP 1
/* The macvlan end is in the hidden end's own namespace, where bpf_redirect_peer refuses to
 * go (it only crosses namespaces): delivered by transmitting on the hidden end instead. */
#define UMV_DEV_PEER_LOCAL 2
/* `hostaccess on`: unicast to the lower's MAC goes into the lower's receive path (its host),
 * and unicast from the lower's MAC back from the wire is the host's echo, dropped. */
#define UMV_DEV_HOSTACCESS 4
/* umv_port.flags */
#define UMV_PORT_LOWER_UP 1
#define UMV_PORT_PASSTHRU 2
/* Some macvlan of the port has hostaccess: frames the host path injected into the lower's
 * receive path (marker tag below) are not the slow path's. */
#define UMV_PORT_HOST 4

/* The host path's marker tag on injected frames (umacvlan_io::hostaccess::MARK_TPID/TCI). */
#define UMV_HOST_MARK_TPID 0x88a8
#define UMV_HOST_MARK_TCI 0xf000

/* A macvlan's address on one lower: macvlan_hash_lookup's key. */
struct umv_mac_key {
	__u32 lower_ifindex;
	__u8 mac[6];
	__u8 pad[2];
};

/* One macvlan as the programs see it. `hidden_ifindex` is the daemon-side end of the veth
 * pair whose other end is the macvlan; it also names the macvlan in the other maps. */
struct umv_dev {
	__u32 hidden_ifindex;
	__u32 lower_ifindex;
	__u32 mode;
	__u32 flags;
};

/* One lower device (a port). */
struct umv_port {
	__u32 flags;
	/* Frames longer than this are refused on the local bridge path (lower MTU + 18). */
	__u32 max_frame;
	/* The passthru macvlan when UMV_PORT_PASSTHRU is set. */
	struct umv_dev passthru;
	/* The lower's MAC: its own host's address (for hostaccess macvlans). */
	__u8 mac[6];
	__u8 pad[2];
};

/* Per-CPU counters of one device (a hidden end's ifindex, or a lower's), summed by the daemon
 * with its own data plane's. */
struct umv_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	/* On a lower: frames dev_forward_skb(lowerdev) refused (macvlan_queue_xmit). */
	__u64 rx_dropped;
};

/* Decision codes, for tracing (the ring buffer) and tests. */
enum umv_verdict {
	UMV_V_PASS = 1,       /* left to the lower's stack and the userspace slow path */
	UMV_V_UNICAST = 2,    /* redirected into a macvlan (macvlan_handle_frame) */
	UMV_V_TARGET_DOWN = 3,/* passthru macvlan down: consumed and dropped */
	UMV_V_WIRE = 4,       /* macvlan transmit to the lower's transmit */
	UMV_V_LOCAL = 5,      /* bridge to bridge through the lower's receive path */
	UMV_V_LOCAL_REFUSED = 6,
	UMV_V_SENDER_DOWN = 7,
	UMV_V_SLOW_PATH = 8,  /* group destination sent by a macvlan: userspace has its copy */
	UMV_V_MALFORMED = 9,
	/* The second half of UMV_V_LOCAL: the frame back through the lower's receive path,
	 * delivered (traced so the daemon can fold it into the LOCAL decision). */
	UMV_V_LOCAL_DELIVERED = 10,
	UMV_V_TO_HOST = 11,   /* hostaccess: to the lower's MAC, into the lower's receive path */
	UMV_V_HOST_ECHO = 12, /* hostaccess: the host's own unicast back from the wire, dropped */
};

/* skb->mark of a traced local bridge frame between the transmit program and the lower's
 * receive program (cleared there). Set only while tracing. */
#define UMV_MARK_LOCAL 0x756d7601
/* skb->mark of a hostaccess macvlan's frame for the host, between the transmit program and
 * the lower's receive program (cleared there): the host's, even if a macvlan shares the
 * lower's MAC. */
#define UMV_MARK_HOST 0x756d7602

/* Frame bytes a traced decision carries at most. */
#define UMV_SNAP 128

/* One decision, when tracing is on. */
struct umv_event {
	__u32 ifindex;
	__u32 target_ifindex;
	__u32 verdict;
	__u32 len;
	__u8 dst[6];
	__u8 src[6];
	/* skb->protocol (network order): the ethertype after an out-of-line VLAN tag. */
	__u16 protocol;
	/* The out-of-line VLAN id, 0xffff if none. */
	__u16 vlan;
	/* Bytes of the frame in data (umv_ctl.snap, at most the frame). */
	__u32 cap;
	__u8 data[UMV_SNAP];
};

/* Runtime switches, one entry (key 0), written by the daemon. */
struct umv_ctl {
	/* Emit every decision to umv_events (while someone monitors). */
	__u32 trace;
	/* With it, the frame's first bytes, at most UMV_SNAP (while someone captures). */
	__u32 snap;
	/* Decisions the full ring buffer could not take (only counts up). */
	__u64 lost;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct umv_mac_key);
	__type(value, struct umv_dev);
} umv_macs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct umv_dev);
} umv_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct umv_port);
} umv_ports SEC(".maps");

/* Source addresses some source-mode macvlan of the lower listens to (value unused): unicast
 * from them goes to the slow path whole, which makes the source-mode copies. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct umv_mac_key);
	__type(value, __u32);
} umv_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct umv_stats);
} umv_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} umv_events SEC(".maps");

/* An array: the verifier inlines its lookup, so a tracing check costs a load and a branch. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct umv_ctl);
} umv_ctl SEC(".maps");

/* The hash maps are not preallocated (BPF_F_NO_PREALLOC): entries are added only on the
 * control path, and preallocating 64 Ki entries each made daemon start take a third of a
 * second. */

/* Set at load time (an experiment, off by default): bridge-to-bridge unicast straight into the
 * destination with bpf_redirect_peer instead of through the lower's receive path, which packet
 * taps on the lower then no longer see (the kernel's dev_forward_skb(lowerdev) lets them). */
volatile const __u32 UMV_BRIDGE_DIRECT = 0;

#endif
