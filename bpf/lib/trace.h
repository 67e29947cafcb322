/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef UMACVLAN_TRACE_H
#define UMACVLAN_TRACE_H

#include "umacvlan.h"

/* Emits one decision to the ring buffer when UMV_TRACE was set at load time. */
static __always_inline void umv_trace(struct __sk_buff *skb, const __u8 *eth, __u32 target,
				      __u32 verdict)
{
	if (!UMV_TRACE)
		return;
	struct umv_event *e = bpf_ringbuf_reserve(&umv_events, sizeof(*e), 0);
	if (!e)
		return;
	e->ifindex = skb->ifindex;
	e->target_ifindex = target;
	e->verdict = verdict;
	e->len = skb->len;
	__builtin_memset(e->dst, 0, 12);
	if (eth)
		__builtin_memcpy(e->dst, eth, 12);
	bpf_ringbuf_submit(e, 0);
}

#endif
