// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* umacvlan's fast path: unicast forwarded in the kernel, decided as drivers/net/macvlan.c
 * decides (and as umacvlan_core::engine::PortSnapshot decides; the maps are computed from its
 * snapshot by umacvlan_core::engine::fastpath). Group destinations and anything not handled
 * here are left to the userspace slow path, unchanged.
 *
 * Two programs, at tc (tcx) ingress hooks:
 *  - umv_lower_ingress, on a lower: macvlan_handle_frame for unicast;
 *  - umv_macvlan_xmit, on the daemon-side ("hidden") end of a macvlan's veth pair, which
 *    receives what the macvlan transmits: macvlan_queue_xmit;
 * and a socket filter, umv_slow_filter, on the slow path's packet sockets on a lower, which
 * see every frame before tc does: it keeps only what umv_lower_ingress leaves to userspace.
 * Section "classifier": the name the loader (aya 0.14) recognizes for tc programs.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lib/umacvlan.h"
#include "lib/trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void count(__u32 ifindex, int rx, __u32 len)
{
	struct umv_stats *s = bpf_map_lookup_elem(&umv_stats, &ifindex);
	if (!s)
		return;
	if (rx) {
		s->rx_packets++;
		s->rx_bytes += len;
	} else {
		s->tx_packets++;
		s->tx_bytes += len;
	}
}

static __always_inline void count_lower_drop(__u32 ifindex)
{
	struct umv_stats *s = bpf_map_lookup_elem(&umv_stats, &ifindex);
	if (s)
		s->rx_dropped++;
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline struct umv_dev *lookup_mac(__u32 lower, const __u8 *mac)
{
	struct umv_mac_key k = { .lower_ifindex = lower };
	__builtin_memcpy(k.mac, mac, 6);
	return bpf_map_lookup_elem(&umv_macs, &k);
}

/* Into the macvlan: the veth peer of its hidden end, in the macvlan's namespace, as received
 * there (macvlan_handle_frame sets PACKET_HOST and hands the skb to the macvlan). */
static __always_inline int deliver(struct __sk_buff *skb, const __u8 *eth, struct umv_dev *t,
				   __u32 verdict)
{
	count(t->hidden_ifindex, 1, skb->len);
	bpf_skb_change_type(skb, PACKET_HOST);
	umv_trace(skb, eth, t->hidden_ifindex, verdict);
	if (t->flags & UMV_DEV_PEER_LOCAL)
		return bpf_redirect(t->hidden_ifindex, 0);
	return bpf_redirect_peer(t->hidden_ifindex, 0);
}

/* The hidden end's receive path took the macvlan's VLAN tags (up to two) out of line
 * (skb_vlan_untag, before tc); the kernel macvlan hands the lower the frame as it was sent,
 * tags inline, and the lower counts and shows them so. Runs only for tagged frames. */
static __always_inline int tags_inline(struct __sk_buff *skb)
{
	__u16 tag[2][2];
	__u32 n = 0;
	__u8 macs[12];

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (!skb->vlan_present)
			break;
		/* vlan_proto is in network order already, the TCI in host order. */
		tag[i][0] = (__u16)skb->vlan_proto;
		tag[i][1] = bpf_htons((__u16)skb->vlan_tci);
		/* Clears the out-of-line tag (and moves a next inline one out of line). */
		if (bpf_skb_vlan_pop(skb))
			return -1;
		n++;
	}
	if (!n)
		return 0;
	if (bpf_skb_change_head(skb, 4 * n, 0) ||
	    bpf_skb_load_bytes(skb, 4 * n, macs, sizeof(macs)) ||
	    bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0))
		return -1;
	for (__u32 i = 0; i < 2 && i < n; i++)
		if (bpf_skb_store_bytes(skb, 12 + 4 * i, tag[i], 4, 0))
			return -1;
	return 0;
}

SEC("classifier")
int umv_lower_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *eth = data;
	__u32 unicast = UMV_V_UNICAST;

	/* A traced local bridge frame back from umv_macvlan_xmit: its mark is not the
	 * receiver's to see. */
	if (skb->mark == UMV_MARK_LOCAL) {
		skb->mark = 0;
		unicast = UMV_V_LOCAL_DELIVERED;
	} else if (skb->mark == UMV_MARK_HOST) {
		/* A hostaccess macvlan's frame for the host (traced as UMV_V_TO_HOST already). */
		skb->mark = 0;
		return TC_ACT_OK;
	}
	if (data + ETH_HLEN > data_end) {
		umv_trace(skb, 0, 0, UMV_V_PASS);
		return TC_ACT_OK;
	}
	/* Group destinations: the broadcast queue and the filters live in userspace. */
	if (eth[0] & 1) {
		umv_trace(skb, eth, 0, UMV_V_PASS);
		return TC_ACT_OK;
	}
	__u32 lower = skb->ifindex;
	struct umv_port *p = bpf_map_lookup_elem(&umv_ports, &lower);
	if (!p) {
		umv_trace(skb, eth, 0, UMV_V_PASS);
		return TC_ACT_OK;
	}
	/* From a source a source-mode macvlan listens to: the slow path makes the copies and
	 * the delivery (macvlan_forward_source). */
	struct umv_mac_key sk = { .lower_ifindex = lower };
	__builtin_memcpy(sk.mac, eth + 6, 6);
	if (bpf_map_lookup_elem(&umv_sources, &sk)) {
		umv_trace(skb, eth, 0, UMV_V_SLOW_PATH);
		return TC_ACT_OK;
	}
	struct umv_dev *t;
	if (p->flags & UMV_PORT_PASSTHRU)
		t = &p->passthru;
	else
		t = lookup_mac(lower, eth);
	/* Not ours, or a source-mode macvlan's own address (traced with that macvlan as the
	 * target): the lower keeps it. */
	if (!t || t->mode == UMV_MODE_SOURCE) {
		umv_trace(skb, eth, t ? t->hidden_ifindex : 0, UMV_V_PASS);
		return TC_ACT_OK;
	}
	if (!(t->flags & UMV_DEV_UP)) {
		umv_trace(skb, eth, t->hidden_ifindex, UMV_V_TARGET_DOWN);
		return TC_ACT_SHOT;
	}
	/* The host's frame to a hostaccess macvlan, back from the wire: it had it from the host. */
	if ((t->flags & UMV_DEV_HOSTACCESS) && mac_eq(eth + 6, p->mac)) {
		umv_trace(skb, eth, t->hidden_ifindex, UMV_V_HOST_ECHO);
		return TC_ACT_SHOT;
	}
	return deliver(skb, eth, t, unicast);
}

SEC("classifier")
int umv_macvlan_xmit(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *eth = data;
	__u32 self = skb->ifindex;

	if (data + ETH_HLEN > data_end) {
		umv_trace(skb, 0, 0, UMV_V_MALFORMED);
		return TC_ACT_SHOT;
	}
	struct umv_dev *d = bpf_map_lookup_elem(&umv_devs, &self);
	if (!d || !(d->flags & UMV_DEV_UP)) {
		umv_trace(skb, eth, 0, UMV_V_SENDER_DOWN);
		return TC_ACT_SHOT;
	}
	/* Group destinations: the slow path's packet socket on this device already has its copy
	 * (packet taps run before tc ingress); the daemon-side end's own stack must not. */
	if (eth[0] & 1) {
		umv_trace(skb, eth, 0, UMV_V_SLOW_PATH);
		return TC_ACT_SHOT;
	}
	__u32 lower = d->lower_ifindex;
	/* The macvlan counts the frame as sent, with a tag the veth carried out of line. */
	__u32 len = skb->len + (skb->vlan_present ? 4 : 0);
	count(self, 0, len);
	if (d->flags & UMV_DEV_HOSTACCESS) {
		struct umv_port *p = bpf_map_lookup_elem(&umv_ports, &lower);
		/* For the host only (a copy on the wire would reach it again by a hairpin). */
		if (p && mac_eq(eth, p->mac)) {
			umv_trace(skb, eth, lower, UMV_V_TO_HOST);
			skb->mark = UMV_MARK_HOST;
			return bpf_redirect(lower, BPF_F_INGRESS);
		}
	}
	if (d->mode == UMV_MODE_BRIDGE) {
		struct umv_dev *t = lookup_mac(lower, eth);
		if (t && t->mode == UMV_MODE_BRIDGE) {
			struct umv_port *p = bpf_map_lookup_elem(&umv_ports, &lower);
			/* dev_forward_skb(lowerdev) refuses a down lower and, unless GSO, a frame
			 * longer than its MTU; the sender still counts it as sent. */
			if (!p || !(p->flags & UMV_PORT_LOWER_UP) ||
			    (!skb->gso_size && len > p->max_frame)) {
				count_lower_drop(lower);
				umv_trace(skb, eth, lower, UMV_V_LOCAL_REFUSED);
				return TC_ACT_SHOT;
			}
			if (UMV_BRIDGE_DIRECT)
				return deliver(skb, eth, t, UMV_V_UNICAST);
			/* Marked so that the lower's program says the delivery is this decision's. */
			if (umv_trace(skb, eth, lower, UMV_V_LOCAL))
				skb->mark = UMV_MARK_LOCAL;
			return bpf_redirect(lower, BPF_F_INGRESS);
		}
	}
	umv_trace(skb, eth, lower, UMV_V_WIRE);
	if (skb->vlan_present && tags_inline(skb)) {
		umv_trace(skb, 0, 0, UMV_V_MALFORMED);
		return TC_ACT_SHOT;
	}
	return bpf_redirect(lower, 0);
}

/* Keeps (returns the length) what umv_lower_ingress leaves to the slow path: runts, group
 * destinations, unicast from a listed source. Drops (0) the rest: the fast path has it, and,
 * while the port has a hostaccess macvlan, what the host path injected (its marker tag). */
SEC("socket")
int umv_slow_filter(struct __sk_buff *skb)
{
	__u8 h[12];

	/* What this host sends (the fast path's transmissions to the wire among it): a fanout
	 * group does not inherit its sockets' PACKET_IGNORE_OUTGOING. */
	if (skb->pkt_type == PACKET_OUTGOING)
		return 0;
	if (skb->vlan_present && (skb->vlan_tci & 0xffff) == UMV_HOST_MARK_TCI &&
	    (skb->vlan_proto == bpf_htons(UMV_HOST_MARK_TPID) ||
	     skb->vlan_proto == UMV_HOST_MARK_TPID)) {
		__u32 lower = skb->ifindex;
		struct umv_port *p = bpf_map_lookup_elem(&umv_ports, &lower);
		if (p && (p->flags & UMV_PORT_HOST))
			return 0;
	}
	/* Relative to the MAC header: where a packet socket's data starts is not ours to know. */
	if (bpf_skb_load_bytes_relative(skb, 0, h, sizeof(h), BPF_HDR_START_MAC) < 0)
		return skb->len;
	if (h[0] & 1)
		return skb->len;
	struct umv_mac_key k = { .lower_ifindex = skb->ifindex };
	__builtin_memcpy(k.mac, h + 6, 6);
	if (bpf_map_lookup_elem(&umv_sources, &k))
		return skb->len;
	return 0;
}
