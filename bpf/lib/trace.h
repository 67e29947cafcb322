/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef UMACVLAN_TRACE_H
#define UMACVLAN_TRACE_H

#include "umacvlan.h"

/* Emits one decision to the ring buffer while the daemon has tracing on (umv_ctl); returns
 * whether it is on. */
static __always_inline int umv_trace(struct __sk_buff *skb, const __u8 *eth, __u32 target,
				      __u32 verdict)
{
	__u32 zero = 0;
	struct umv_ctl *c = bpf_map_lookup_elem(&umv_ctl, &zero);
	if (!c || !c->trace)
		return 0;
	struct umv_event *e = bpf_ringbuf_reserve(&umv_events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&c->lost, 1);
		return 1;
	}
	e->ifindex = skb->ifindex;
	e->target_ifindex = target;
	e->verdict = verdict;
	e->len = skb->len;
	__builtin_memset(e->dst, 0, 12);
	if (eth)
		__builtin_memcpy(e->dst, eth, 12);
	e->protocol = (__u16)skb->protocol;
	e->vlan = skb->vlan_present ? (skb->vlan_tci & 0x0fff) : 0xffff;
	e->cap = 0;
	__u32 n = c->snap;
	if (n > skb->len)
		n = skb->len;
	if (n > UMV_SNAP)
		n = UMV_SNAP;
	if (n > 0 && bpf_skb_load_bytes(skb, 0, e->data, n) == 0)
		e->cap = n;
	bpf_ringbuf_submit(e, 0);
	return 1;
}

#endif
