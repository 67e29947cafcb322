//! One test per rule of `shared/spec/macvlan-semantics.md` (and the kernel behaviour behind it,
//! drivers/net/macvlan.c in Linux 6.18). Test names start with the spec section.

mod common;
use common::*;
use umacvlan_core::engine::*;
use umacvlan_core::wire::MacAddr;

use Mode::*;

// ---------- §1 objects ----------------------------------------------------------------------

#[test]
fn s1_default_mode_is_vepa_with_bcqueuelen_1000_and_bclim_1() {
    let mut p = Port::create(lower()).unwrap();
    let id = p
        .add_device(
            &NewDevice {
                name: "m".into(),
                ..Default::default()
            },
            7,
        )
        .unwrap();
    let d = p.device(id).unwrap();
    assert_eq!(d.mode, Vepa);
    assert_eq!(d.bc_queue_len_req, 1000);
    assert_eq!(p.bc_cutoff(), 1);
    assert_eq!(p.bc_queue_len_used(), 1000);
}

#[test]
fn s1_port_goes_with_its_last_macvlan() {
    let (mut p, ids) = port_with(&[Bridge, Vepa]);
    assert!(!p.remove_device(ids[0]).unwrap().port_empty);
    assert!(p.remove_device(ids[1]).unwrap().port_empty);
    assert_eq!(p.remove_device(ids[1]).unwrap_err().errno, Errno::ENODEV);
}

// ---------- §2 receive, group destination ---------------------------------------------------

#[test]
fn s2_mc_ipv4_fragments_reassembled_before_flooding() {
    // A 3000-byte UDP broadcast datagram in three fragments, delivered out of order.
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let frags = ipv4_fragments(&payload, 1480);
    let mut d = Defragmenter::new(DefragLimits::default());
    assert_eq!(d.process(&frags[2], 0), Defrag::Held);
    assert_eq!(d.process(&frags[0], 1), Defrag::Held);
    let Defrag::Complete(whole) = d.process(&frags[1], 2) else {
        panic!("not complete")
    };
    assert_eq!(whole.len(), 14 + 20 + 3000);
    assert_eq!(&whole[34..], &payload[..]);
    let ip = umacvlan_core::wire::Ipv4Header::new_checked(&whole[14..]).unwrap();
    assert!(!ip.is_fragment());
    assert_eq!(umacvlan_core::wire::ipv4_checksum(ip.header_bytes()), 0);
    assert_eq!(d.pending(), 0);
    assert_eq!(d.held_bytes(), 0);
}

#[test]
fn s2_mc_lone_fragment_expires_and_bounds_hold() {
    let frags = ipv4_fragments(&[7u8; 3000], 1480);
    let mut d = Defragmenter::new(DefragLimits {
        timeout_ns: 1000,
        max_bytes: 2000,
        max_datagrams: 4,
    });
    assert_eq!(d.process(&frags[0], 0), Defrag::Held);
    // Over the memory bound: dropped.
    assert_eq!(d.process(&frags[1], 10), Defrag::Dropped);
    // Past the timeout the first datagram is gone; its last fragment starts a new one.
    assert_eq!(d.process(&frags[2], 5000), Defrag::Held);
    assert_eq!(d.pending(), 1);
    assert!(d.take_dropped() >= 2);
    // Non-fragments pass through untouched.
    assert_eq!(
        d.process(&frame(MacAddr::BROADCAST, EXT, 60), 0),
        Defrag::Whole
    );
}

#[test]
fn s2_mc_overlapping_fragments_kill_the_datagram() {
    let frags = ipv4_fragments(&[1u8; 3000], 1480);
    let mut overlapping = frags[1].clone();
    // Move the second fragment's offset back by 8 bytes so it overlaps the first.
    let off = ((1480 - 8) / 8) as u16 | 0x2000;
    overlapping[20..22].copy_from_slice(&off.to_be_bytes());
    let mut d = Defragmenter::new(DefragLimits::default());
    assert_eq!(d.process(&frags[0], 0), Defrag::Held);
    assert_eq!(d.process(&overlapping, 0), Defrag::Dropped);
    assert_eq!(d.pending(), 0);
    // An exact duplicate is ignored without killing the datagram.
    assert_eq!(d.process(&frags[0], 0), Defrag::Held);
    assert_eq!(d.process(&frags[0], 0), Defrag::Dropped);
    assert_eq!(d.pending(), 1);
}

#[test]
fn s2_mc_source_mode_copies_then_continues() {
    let (mut p, ids) = port_with(&[Source, Bridge]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            macaddr: Some(MacAddrOp::Add(EXT)),
            ..Default::default()
        },
    )
    .unwrap();
    let (o, all) = rx_all(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    assert!(o.lower_stack);
    assert_eq!(targets(&all), vec![ids[0], ids[1]]);
    let src_copy = all.iter().find(|d| d.dev == ids[0]).unwrap();
    assert!(!src_copy.multicast);
    assert_eq!(src_copy.pkt_type, PacketType::Broadcast);
}

#[test]
fn s2_mc_nodst_source_match_consumes_frame() {
    let (mut p, ids) = port_with(&[Source, Bridge]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            flags: Some(FLAG_NODST),
            macaddr: Some(MacAddrOp::Add(EXT)),
            ..Default::default()
        },
    )
    .unwrap();
    let o = rx(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    assert_eq!(o.reason, Some(RxReason::NodstConsumed));
    assert_eq!(targets(&o.deliveries), vec![ids[0]]);
    assert!(!o.lower_stack, "not even the lower's stack gets it");
    assert!(o.enqueue.is_none());
}

#[test]
fn s2_mc_reflection_of_private_passthru_source_goes_back_to_sender_only() {
    for mode in [Private, Source] {
        let (p, ids) = port_with(&[mode, Bridge, Vepa]);
        let o = rx(&p, &frame(MacAddr::BROADCAST, mac(1), 100));
        assert_eq!(o.reason, Some(RxReason::Reflected), "{mode}");
        assert_eq!(targets(&o.deliveries), vec![ids[0]]);
        assert!(!o.lower_stack);
        // The kernel's quirk: counted as one packet of 0 bytes, not as multicast.
        let d = o.deliveries[0];
        assert_eq!(
            (d.bytes, d.multicast, d.pkt_type),
            (0, false, PacketType::Broadcast)
        );
    }
    let mut p = Port::create(lower()).unwrap();
    let id = p.add_device(&req("pt", None, Passthru), 0).unwrap();
    p.open(id).unwrap();
    let o = rx(&p, &frame(GROUP, LOWER_MAC, 100));
    assert_eq!(o.reason, Some(RxReason::Reflected));
    assert_eq!(o.deliveries[0].pkt_type, PacketType::Multicast);
}

#[test]
fn s2_mc_flood_mask_from_outside_reaches_all_but_source_mode() {
    let (p, ids) = port_with(&[Private, Vepa, Bridge, Source]);
    let (o, all) = rx_all(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    assert_eq!(
        o.enqueue,
        Some(None),
        "broadcast goes through the queue, sender external"
    );
    assert_eq!(targets(&all), vec![ids[0], ids[1], ids[2]]);
    assert!(all
        .iter()
        .all(|d| d.multicast && d.pkt_type == PacketType::Broadcast && d.bytes == 60));
}

#[test]
fn s2_mc_flood_mask_from_vepa_reaches_vepa_and_bridge_not_sender() {
    let (p, ids) = port_with(&[Vepa, Vepa, Bridge, Private]);
    let (o, all) = rx_all(&p, &frame(MacAddr::BROADCAST, mac(1), 60));
    assert_eq!(
        o.enqueue,
        Some(Some(BcSource {
            id: ids[0],
            mode: Vepa
        }))
    );
    assert_eq!(targets(&all), vec![ids[1], ids[2]]);
}

#[test]
fn s2_mc_flood_mask_from_bridge_reaches_vepa_only() {
    let (p, ids) = port_with(&[Bridge, Bridge, Vepa, Private]);
    let (_, all) = rx_all(&p, &frame(MacAddr::BROADCAST, mac(1), 60));
    assert_eq!(targets(&all), vec![ids[2]]);
}

#[test]
fn s2_mc_frame_from_down_macvlan_mac_counts_as_external() {
    let (mut p, ids) = port_with(&[Private, Vepa]);
    p.stop(ids[0]).unwrap();
    let (o, all) = rx_all(&p, &frame(MacAddr::BROADCAST, mac(1), 60));
    assert_eq!(o.enqueue, Some(None));
    assert_eq!(targets(&all), vec![ids[1]]);
}

#[test]
fn s2_mc_single_member_group_floods_inline_and_unjoined_group_is_filtered() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    let (o, all) = rx_all(&p, &frame(GROUP, EXT, 60));
    assert_eq!(o.reason, Some(RxReason::Flooded));
    assert!(o.enqueue.is_none());
    assert_eq!(targets(&all), vec![ids[0]]);
    assert_eq!(all[0].pkt_type, PacketType::Multicast);
    let other = MacAddr([0x01, 0x00, 0x5e, 0x7f, 0x00, 0x09]);
    let o = rx(&p, &frame(other, EXT, 60));
    assert_eq!(o.reason, Some(RxReason::Filtered));
    assert!(o.lower_stack);
}

#[test]
fn a_group_refused_by_a_filter_is_reported_so_a_lagging_list_can_be_re_read() {
    let (mut p, ids) = port_with(&[Bridge, Bridge, Private]);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    // Joined by mv0 only: mv1 and mv2 refuse it.
    assert!(rx(&p, &frame(GROUP, EXT, 60)).group_refused);
    // A group nobody joined: both port filters refuse it while macvlans are up.
    let other = MacAddr([0x01, 0x00, 0x5e, 0x7f, 0x00, 0x09]);
    let o = rx(&p, &frame(other, EXT, 60));
    assert_eq!(o.reason, Some(RxReason::Filtered));
    assert!(o.group_refused);
    // Broadcast and unicast are never refused by a group filter.
    assert!(!rx(&p, &frame(MacAddr::BROADCAST, EXT, 60)).group_refused);
    assert!(!rx(&p, &frame(mac(2), EXT, 60)).group_refused);
    // Joined by every macvlan the flood reaches: nothing refused.
    for id in &ids[1..] {
        p.set_mc_list(*id, vec![GROUP]).unwrap();
    }
    assert!(!rx(&p, &frame(GROUP, EXT, 60)).group_refused);
    // A bridge sibling's own filter on the local flood: mv0 sends a group mv1 has not joined.
    assert!(tx(&p, ids[0], &frame(other, mac(1), 60)).group_refused);
    // The private macvlan is not flooded to from a bridge sender: its filter does not count.
    p.set_mc_list(ids[1], vec![GROUP, other]).unwrap();
    assert!(!tx(&p, ids[0], &frame(other, mac(1), 60)).group_refused);
}

#[test]
fn no_group_is_refused_when_no_macvlan_is_up() {
    let (mut p, ids) = port_with(&[Bridge]);
    p.stop(ids[0]).unwrap();
    assert!(!rx(&p, &frame(GROUP, EXT, 60)).group_refused);
}

#[test]
fn s2_mc_lower_stack_also_receives_group_frames() {
    let (p, _) = port_with(&[Bridge]);
    assert!(rx(&p, &frame(MacAddr::BROADCAST, EXT, 60)).lower_stack);
}

#[test]
fn s2_mc_pause_frames_are_never_flooded() {
    let (mut p, ids) = port_with(&[Bridge, Vepa]);
    p.set_rx_flags(ids[0], true, false).unwrap();
    let pause = frame_et(MacAddr([0x01, 0x80, 0xc2, 0, 0, 1]), EXT, 0x8808, 60);
    let (o, all) = rx_all(&p, &pause);
    assert!(o.lower_stack);
    assert!(all.is_empty());
    // Nor on a bridge macvlan's transmit.
    assert!(tx(&p, ids[0], &pause).deliveries.is_empty());
}

// ---------- §2 receive, unicast -------------------------------------------------------------

#[test]
fn s2_uc_source_fanout_then_unicast_target() {
    let (mut p, ids) = port_with(&[Source, Source, Bridge]);
    for id in &ids[..2] {
        p.change(
            *id,
            &MacvlanAttrs {
                macaddr: Some(MacAddrOp::Add(EXT)),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let o = rx(&p, &frame(mac(3), EXT, 80));
    assert_eq!(o.reason, Some(RxReason::Unicast));
    assert_eq!(targets(&o.deliveries), vec![ids[0], ids[1], ids[2]]);
    // The source copies keep the lower's packet type (OTHERHOST here).
    for d in &o.deliveries[..2] {
        assert_eq!(d.pkt_type, PacketType::OtherHost);
        assert!(d.checked);
    }
    assert!(!o.lower_stack);
}

#[test]
fn s2_uc_nodst_consumes_unicast_too() {
    let (mut p, ids) = port_with(&[Source, Bridge]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            flags: Some(FLAG_NODST),
            macaddr: Some(MacAddrOp::Set(vec![EXT, EXT2])),
            ..Default::default()
        },
    )
    .unwrap();
    let o = rx(&p, &frame(mac(2), EXT2, 80));
    assert_eq!(targets(&o.deliveries), vec![ids[0]]);
    assert!(!o.lower_stack);
    assert_eq!(o.reason, Some(RxReason::NodstConsumed));
}

#[test]
fn s2_uc_passthru_takes_every_unicast_whatever_dst() {
    let mut p = Port::create(lower()).unwrap();
    let id = p.add_device(&req("pt", None, Passthru), 0).unwrap();
    p.open(id).unwrap();
    let o = rx(&p, &frame(MacAddr([0x02, 9, 9, 9, 9, 9]), EXT, 60));
    assert_eq!(targets(&o.deliveries), vec![id]);
    assert_eq!(o.deliveries[0].pkt_type, PacketType::Host);
}

#[test]
fn s2_uc_unknown_dst_left_to_lower() {
    let (p, _) = port_with(&[Bridge]);
    let o = rx(&p, &frame(mac(99), EXT, 60));
    assert!(o.deliveries.is_empty() && o.lower_stack);
    assert_eq!(o.reason, Some(RxReason::NotOurs));
}

#[test]
fn s2_uc_to_down_macvlan_left_to_lower() {
    let (mut p, ids) = port_with(&[Bridge]);
    p.stop(ids[0]).unwrap();
    let o = rx(&p, &frame(mac(1), EXT, 60));
    assert!(o.deliveries.is_empty() && o.lower_stack);
}

#[test]
fn s2_uc_source_mode_own_mac_not_delivered_by_unicast_rule() {
    let (p, _) = port_with(&[Source]);
    let o = rx(&p, &frame(mac(1), EXT, 60));
    assert!(o.deliveries.is_empty() && o.lower_stack);
    assert_eq!(o.reason, Some(RxReason::SourceModeTarget));
}

#[test]
fn s2_uc_passthru_down_drops() {
    let mut p = Port::create(lower()).unwrap();
    p.add_device(&req("pt", None, Passthru), 0).unwrap();
    let o = rx(&p, &frame(LOWER_MAC, EXT, 60));
    assert!(o.deliveries.is_empty());
    assert!(!o.lower_stack, "consumed");
    assert_eq!(o.reason, Some(RxReason::TargetDown));
}

#[test]
fn s2_uc_delivered_to_target_only_and_sender_not_checked() {
    // A unicast reflected by a hairpin switch from one private macvlan reaches another.
    let (p, ids) = port_with(&[Private, Private]);
    let o = rx(&p, &frame(mac(2), mac(1), 60));
    assert_eq!(targets(&o.deliveries), vec![ids[1]]);
    assert!(!o.lower_stack);
    let d = o.deliveries[0];
    assert_eq!(
        (d.pkt_type, d.bytes, d.multicast, d.checked),
        (PacketType::Host, 60, false, false)
    );
}

#[test]
fn s2_malformed_frames_are_dropped_not_panicked() {
    let (p, _) = port_with(&[Bridge]);
    for bad in [
        &[0u8; 0][..],
        &[0xff; 13][..],
        &frame_et(MacAddr::BROADCAST, EXT, 0x8100, 15)[..],
    ] {
        let o = rx(&p, bad);
        assert_eq!(o.reason, Some(RxReason::Malformed));
        assert!(o.deliveries.is_empty() && !o.lower_stack && o.enqueue.is_none());
    }
}

// ---------- §3 transmit ---------------------------------------------------------------------

#[test]
fn s3_transmit_sends_a_cut_vlan_tag_as_it_is() {
    // The kernel parses no tag it transmits (checked against it: conformance "bad-headers").
    let (p, ids) = port_with(&[Bridge, Bridge, Vepa]);
    for n in [14, 15, 16, 17] {
        let f = frame_et(MacAddr::BROADCAST, mac(1), 0x8100, n);
        let o = tx(&p, ids[0], &f);
        assert!(o.to_wire, "{n} bytes");
        assert_eq!(targets(&o.deliveries), vec![ids[1]]);
        assert_eq!(o.deliveries[0].bytes as usize, n + 14);
        let o = tx(&p, ids[2], &f);
        assert!(o.to_wire && o.deliveries.is_empty());
    }
    // To a bridge sibling it goes back in through the lower's receive path, which frees a
    // frame whose tag is cut short: counted as sent, delivered to nobody, no drop counted.
    let o = tx(&p, ids[0], &frame_et(mac(2), mac(1), 0x8100, 16));
    assert!(o.tx_always_ok && !o.to_wire && o.deliveries.is_empty());
    assert_eq!(o.reason, Some(TxReason::LocalRefused));
    assert!(!o.lower_rx_dropped);
    // A runt still is malformed.
    let o = tx(&p, ids[0], &[0xff; 13]);
    assert_eq!(o.reason, Some(TxReason::Malformed));
}

#[test]
fn s3_bridge_multicast_floods_bridge_siblings_then_wire() {
    let (p, ids) = port_with(&[Bridge, Bridge, Vepa, Private, Bridge]);
    let o = tx(&p, ids[0], &frame(MacAddr::BROADCAST, mac(1), 60));
    assert!(o.to_wire);
    assert_eq!(targets(&o.deliveries), vec![ids[1], ids[4]]);
    assert_eq!(o.tx_bytes, 60);
    // The kernel counts skb->len + ETH_HLEN on this path: the header twice.
    assert!(o
        .deliveries
        .iter()
        .all(|d| d.bytes == 74 && d.multicast && d.checked));
}

#[test]
fn s3_bridge_unicast_to_bridge_sibling_stays_local() {
    let (p, ids) = port_with(&[Bridge, Bridge]);
    let o = tx(&p, ids[0], &frame(mac(2), mac(1), 60));
    assert!(!o.to_wire);
    assert!(o.tx_always_ok);
    assert_eq!(o.reason, Some(TxReason::Local));
    assert_eq!(targets(&o.deliveries), vec![ids[1]]);
    assert_eq!(o.deliveries[0].bytes, 60);
}

#[test]
fn s3_bridge_unicast_local_refused_when_lower_down_or_too_big() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    let big = frame(mac(2), mac(1), 1500 + 18 + 1);
    let o = tx(&p, ids[0], &big);
    assert_eq!(o.reason, Some(TxReason::LocalRefused));
    assert!(o.lower_rx_dropped && o.tx_always_ok && o.deliveries.is_empty());
    p.lower_link_changed(false, false, false);
    let o = tx(&p, ids[0], &frame(mac(2), mac(1), 60));
    assert!(o.lower_rx_dropped);
}

#[test]
fn s3_bridge_unicast_local_path_applies_source_mode() {
    let (mut p, ids) = port_with(&[Bridge, Bridge, Source]);
    p.change(
        ids[2],
        &MacvlanAttrs {
            flags: Some(FLAG_NODST),
            macaddr: Some(MacAddrOp::Add(mac(1))),
            ..Default::default()
        },
    )
    .unwrap();
    let o = tx(&p, ids[0], &frame(mac(2), mac(1), 60));
    assert_eq!(
        targets(&o.deliveries),
        vec![ids[2]],
        "nodst listener consumes it on the way in"
    );
}

#[test]
fn s3_everything_else_goes_to_the_wire() {
    let (p, ids) = port_with(&[Private, Vepa, Bridge, Vepa]);
    for (from, dst) in [
        (ids[0], mac(2)),
        (ids[1], mac(4)),
        (ids[2], mac(2)),
        (ids[2], mac(77)),
        (ids[0], MacAddr::BROADCAST),
        (ids[1], MacAddr::BROADCAST),
    ] {
        let o = tx(&p, from, &frame(dst, mac(9), 60));
        assert!(o.to_wire && o.deliveries.is_empty(), "{from:?} -> {dst}");
        assert_eq!(o.reason, Some(TxReason::Wire));
    }
}

#[test]
fn s3_flood_rule_up_mode_not_sender_and_filter() {
    let (mut p, ids) = port_with(&[Bridge, Bridge, Bridge, Bridge]);
    p.stop(ids[1]).unwrap();
    p.set_mc_list(ids[2], vec![GROUP]).unwrap();
    let o = tx(&p, ids[0], &frame(GROUP, mac(1), 60));
    assert_eq!(targets(&o.deliveries), vec![ids[2]]);
}

#[test]
fn s3_local_flood_over_receiver_mtu_is_refused() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    p.set_mtu(ids[1], 1000).unwrap();
    let o = tx(
        &p,
        ids[0],
        &frame(MacAddr::BROADCAST, mac(1), 1000 + 18 + 1),
    );
    assert!(o.deliveries[0].refused);
    let o = tx(&p, ids[0], &frame(MacAddr::BROADCAST, mac(1), 1000 + 18));
    assert!(!o.deliveries[0].refused);
}

#[test]
fn s3_gso_super_frames_pass_local_mtu_checks() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    p.set_mtu(ids[1], 1000).unwrap();
    let big = frame(MacAddr::BROADCAST, mac(1), 60000);
    let mut o = TxOutcome::default();
    p.snapshot().transmit_offloaded(ids[0], &big, true, &mut o);
    assert!(!o.deliveries[0].refused);
    p.snapshot()
        .transmit_offloaded(ids[0], &frame(mac(2), mac(1), 60000), true, &mut o);
    assert_eq!(o.reason, Some(TxReason::Local));
    assert_eq!(targets(&o.deliveries), vec![ids[1]]);
}

#[test]
fn s3_down_sender_sends_nothing() {
    let (mut p, ids) = port_with(&[Bridge]);
    p.stop(ids[0]).unwrap();
    let o = tx(&p, ids[0], &frame(EXT, mac(1), 60));
    assert!(!o.to_wire && o.tx_bytes == 0);
    assert_eq!(o.reason, Some(TxReason::SenderDown));
}

// ---------- §4 source mode ------------------------------------------------------------------

#[test]
fn s4_copies_to_each_up_listener_whatever_dst() {
    let (mut p, ids) = port_with(&[Source, Source]);
    for id in &ids {
        p.change(
            *id,
            &MacvlanAttrs {
                macaddr: Some(MacAddrOp::Add(EXT)),
                ..Default::default()
            },
        )
        .unwrap();
    }
    p.stop(ids[1]).unwrap();
    for dst in [mac(50), LOWER_MAC, mac(1)] {
        let o = rx(&p, &frame(dst, EXT, 60));
        assert_eq!(targets(&o.deliveries), vec![ids[0]], "{dst}");
    }
    // To the lower's own MAC the copy is PACKET_HOST (lower's view); to its own MAC too.
    assert_eq!(
        rx(&p, &frame(LOWER_MAC, EXT, 60)).deliveries[0].pkt_type,
        PacketType::Host
    );
    assert_eq!(
        rx(&p, &frame(mac(1), EXT, 60)).deliveries[0].pkt_type,
        PacketType::Host
    );
}

#[test]
fn s4_macaddr_ops_and_kernel_dump_order() {
    let (mut p, ids) = port_with(&[Source]);
    let id = ids[0];
    let set = |p: &mut Port, op| {
        p.change(
            id,
            &MacvlanAttrs {
                macaddr: Some(op),
                ..Default::default()
            },
        )
    };
    set(&mut p, MacAddrOp::Add(EXT)).unwrap();
    set(&mut p, MacAddrOp::Add(EXT)).unwrap();
    assert_eq!(
        p.device(id).unwrap().macaddr_count(),
        1,
        "add is idempotent"
    );
    set(&mut p, MacAddrOp::Del(EXT2)).unwrap();
    assert_eq!(
        p.device(id).unwrap().macaddr_count(),
        1,
        "deleting an absent entry is fine"
    );
    let many: Vec<MacAddr> = (1..=5).map(|i| MacAddr([2, 0xaa, 0, 0, 0, i])).collect();
    set(&mut p, MacAddrOp::Set(many.clone())).unwrap();
    let dumped = p.device(id).unwrap().sources();
    assert_eq!(dumped.len(), 5);
    let mut sorted = dumped.clone();
    sorted.sort_by_key(|m| umacvlan_core::engine::hash::eth_hash(*m));
    assert_eq!(dumped, sorted, "dumped bucket by bucket");
    set(&mut p, MacAddrOp::Flush).unwrap();
    assert_eq!(p.device(id).unwrap().macaddr_count(), 0);
}

#[test]
fn s4_leaving_source_mode_flushes_the_list() {
    let (mut p, ids) = port_with(&[Source]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            macaddr: Some(MacAddrOp::Add(EXT)),
            ..Default::default()
        },
    )
    .unwrap();
    p.change(
        ids[0],
        &MacvlanAttrs {
            mode: Some(Bridge.bits()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.device(ids[0]).unwrap().macaddr_count(), 0);
    assert!(rx(&p, &frame(mac(77), EXT, 60)).deliveries.is_empty());
}

#[test]
fn s4_macaddr_on_non_source_is_einval_and_changes_nothing() {
    let (mut p, ids) = port_with(&[Source]);
    let before = p.clone();
    let e = p
        .change(
            ids[0],
            &MacvlanAttrs {
                mode: Some(Bridge.bits()),
                flags: Some(FLAG_NODST),
                macaddr: Some(MacAddrOp::Add(EXT)),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    assert_eq!(p, before);
    let mut p2 = Port::create(lower()).unwrap();
    let mut r = req("b", None, Bridge);
    r.attrs.macaddr = Some(MacAddrOp::Add(EXT));
    assert_eq!(p2.add_device(&r, 0).unwrap_err().errno, Errno::EINVAL);
}

#[test]
fn s4_invalid_source_mac_is_eaddrnotavail() {
    let (mut p, ids) = port_with(&[Source]);
    for op in [
        MacAddrOp::Add(GROUP),
        MacAddrOp::Del(MacAddr::ZERO),
        MacAddrOp::Set(vec![EXT, MacAddr::BROADCAST]),
    ] {
        let e = p
            .change(
                ids[0],
                &MacvlanAttrs {
                    macaddr: Some(op),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(e.errno, Errno::EADDRNOTAVAIL);
    }
}

// ---------- §5 multicast filters ------------------------------------------------------------

#[test]
fn s5_device_filter_joined_groups_plus_broadcast() {
    let (mut p, ids) = port_with(&[Vepa, Vepa]);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    let d0 = p.device(ids[0]).unwrap();
    assert!(d0.accepts_group(GROUP) && d0.accepts_group(MacAddr::BROADCAST));
    assert!(!p.device(ids[1]).unwrap().accepts_group(GROUP));
}

#[test]
fn s5_device_filter_promisc_or_allmulti_takes_all_groups() {
    let (mut p, ids) = port_with(&[Vepa, Vepa, Vepa]);
    p.set_rx_flags(ids[0], true, false).unwrap();
    p.set_rx_flags(ids[1], false, true).unwrap();
    p.set_mc_list(ids[2], vec![GROUP]).unwrap();
    let (_, all) = rx_all(&p, &frame(GROUP, EXT, 60));
    assert_eq!(targets(&all), vec![ids[0], ids[1], ids[2]]);
    let (_, all) = rx_all(&p, &frame(MacAddr([1, 0, 0x5e, 0, 0, 0x42]), EXT, 60));
    assert_eq!(targets(&all), vec![ids[0], ids[1]]);
}

#[test]
fn s5_device_filter_reads_only_bytes_2_to_5() {
    // Kernel (found by the conformance suite): mc_hash() hashes bytes 2..5 only, so on every
    // device whatever its salt, xx:xx:ff:ff:ff:ff passes like broadcast and a group passes
    // wherever one with the same last four bytes was joined.
    let (mut p, ids) = port_with(&[Vepa, Vepa]);
    p.lower_rx_flags_changed(true, false);
    p.set_mc_list(ids[0], vec![MacAddr([0x33, 0x33, 0, 0, 0, 1])])
        .unwrap();
    let d0 = p.device(ids[0]).unwrap();
    assert!(d0.accepts_group(MacAddr([1, 0, 0xff, 0xff, 0xff, 0xff])));
    assert!(d0.accepts_group(MacAddr([3, 0, 0, 0, 0, 1])));
    assert!(!d0.accepts_group(MacAddr([3, 0, 0, 0, 0, 2])));
    let got = |g: MacAddr| targets(&rx_all(&p, &frame(g, EXT, 60)).1);
    assert_eq!(got(MacAddr([3, 0, 0, 0, 0, 1])), vec![ids[0]]);
    assert_eq!(
        got(MacAddr([1, 0, 0xff, 0xff, 0xff, 0xff])),
        vec![ids[0], ids[1]]
    );
    let snap = p.snapshot();
    assert!(snap
        .device(ids[1])
        .unwrap()
        .accepts_group(MacAddr([7, 7, 0xff, 0xff, 0xff, 0xff])));
}

#[test]
fn s5_left_group_passes_until_the_next_rx_mode_change() {
    // Kernel 6.18 (found by the conformance suite): macvlan_set_mac_lists computes the
    // device's filter before dev_mc_sync drops the left entry, so after `ip maddr del` the
    // group keeps passing until the device's rx mode changes again.
    let g2 = MacAddr([1, 0, 0x5e, 1, 2, 4]);
    let (mut p, ids) = port_with(&[Vepa, Vepa]);
    let got = |p: &Port, g: MacAddr| targets(&rx_all(p, &frame(g, EXT, 60)).1);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    p.set_mc_list(ids[0], vec![]).unwrap();
    assert!(p.device(ids[0]).unwrap().accepts_group(GROUP));
    // The port's filter is computed after the sync: on a lower that filters, the group is
    // gone at the port already.
    assert_eq!(got(&p, GROUP), Vec::<DevId>::new());
    // A promiscuous lower (veth, bridge ports: no unicast filter) passes every group to
    // the devices' own filters.
    p.lower_rx_flags_changed(true, false);
    assert_eq!(got(&p, GROUP), vec![ids[0]]);
    // The next change (joining another group) recomputes without it.
    p.set_mc_list(ids[0], vec![g2]).unwrap();
    assert_eq!(got(&p, GROUP), Vec::<DevId>::new());
    assert_eq!(got(&p, g2), vec![ids[0]]);
    // Leaving g2: it lingers; a promisc/allmulti change recomputes exactly.
    p.set_mc_list(ids[0], vec![]).unwrap();
    assert_eq!(got(&p, g2), vec![ids[0]]);
    p.set_rx_flags(ids[0], false, true).unwrap();
    p.set_rx_flags(ids[0], false, false).unwrap();
    assert_eq!(got(&p, g2), Vec::<DevId>::new());
    // So does reopening.
    p.set_mc_list(ids[1], vec![GROUP]).unwrap();
    p.set_mc_list(ids[1], vec![]).unwrap();
    p.stop(ids[1]).unwrap();
    p.open(ids[1]).unwrap();
    assert_eq!(got(&p, GROUP), Vec::<DevId>::new());
    // A down device computes nothing: leaving while down leaves nothing behind.
    p.stop(ids[1]).unwrap();
    p.set_mc_list(ids[1], vec![GROUP]).unwrap();
    p.set_mc_list(ids[1], vec![]).unwrap();
    assert!(!p.device(ids[1]).unwrap().accepts_group(GROUP));
    // Static entries (`bridge fdb del`) linger the same way.
    p.fdb_add(ids[0], GROUP, false).unwrap();
    p.fdb_del(ids[0], GROUP).unwrap();
    assert_eq!(got(&p, GROUP), vec![ids[0]]);
    // The lower's filters are exact: nothing left is asked of the lower.
    assert!(!p.lower_filters().multicast.contains(&GROUP));
}

#[test]
fn s7_device_remembers_having_been_opened() {
    // A kernel macvlan's qdisc reads `noop` until its first open, `noqueue` ever after.
    let mut p = Port::create(lower()).unwrap();
    let id = p
        .add_device(
            &NewDevice {
                name: "m".into(),
                mac: Some(mac(1)),
                ..Default::default()
            },
            0,
        )
        .unwrap();
    assert!(!p.device(id).unwrap().ever_up);
    p.open(id).unwrap();
    p.stop(id).unwrap();
    assert!(p.device(id).unwrap().ever_up);
}

#[test]
fn s5_port_bc_filter_holds_groups_joined_by_more_than_bclim() {
    let (mut p, ids) = port_with(&[Bridge, Bridge, Bridge]);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    assert_eq!(
        rx(&p, &frame(GROUP, EXT, 60)).reason,
        Some(RxReason::Flooded)
    );
    p.set_mc_list(ids[1], vec![GROUP]).unwrap();
    assert_eq!(
        rx(&p, &frame(GROUP, EXT, 60)).reason,
        Some(RxReason::Queued)
    );
    p.change(
        ids[2],
        &MacvlanAttrs {
            bclim: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        rx(&p, &frame(GROUP, EXT, 60)).reason,
        Some(RxReason::Flooded)
    );
    p.change(
        ids[2],
        &MacvlanAttrs {
            bclim: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    p.set_mc_list(ids[1], vec![]).unwrap();
    assert_eq!(
        rx(&p, &frame(GROUP, EXT, 60)).reason,
        Some(RxReason::Queued)
    );
}

#[test]
fn s5_bclim_negative_floods_everything_inline() {
    let (mut p, ids) = port_with(&[Bridge, Vepa]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            bclim: Some(-1),
            ..Default::default()
        },
    )
    .unwrap();
    let o = rx(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    assert_eq!(o.reason, Some(RxReason::Flooded));
    assert_eq!(targets(&o.deliveries), vec![ids[0], ids[1]]);
}

#[test]
fn s5_promisc_or_allmulti_lower_queues_every_group() {
    let (mut p, ids) = port_with(&[Bridge]);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    p.lower_rx_flags_changed(true, false);
    assert_eq!(
        rx(&p, &frame(GROUP, EXT, 60)).reason,
        Some(RxReason::Queued)
    );
    let o = rx(&p, &frame(MacAddr([1, 0, 0x5e, 0, 0, 0x42]), EXT, 60));
    assert_eq!(
        o.reason,
        Some(RxReason::Queued),
        "port filter full, device filter decides later"
    );
}

#[test]
fn s5_port_filters_are_empty_until_a_macvlan_first_opens() {
    let mut p = Port::create(lower()).unwrap();
    p.add_device(&req("a", Some(mac(1)), Bridge), 0).unwrap();
    assert_eq!(
        rx(&p, &frame(MacAddr::BROADCAST, EXT, 60)).reason,
        Some(RxReason::Filtered)
    );
}

#[test]
fn s5_lower_filters_follow_up_devices_joins_and_flags() {
    let (mut p, ids) = port_with(&[Bridge, Vepa, Private]);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    p.set_mc_list(ids[1], vec![GROUP]).unwrap();
    p.set_rx_flags(ids[1], false, true).unwrap();
    p.set_rx_flags(ids[2], true, false).unwrap();
    let f = p.lower_filters();
    assert_eq!(f.unicast, vec![mac(1), mac(2), mac(3)]);
    assert_eq!(f.multicast, vec![GROUP]);
    assert_eq!((f.promisc, f.allmulti), (1, 1));
    p.stop(ids[2]).unwrap();
    let f = p.lower_filters();
    assert_eq!(f.unicast, vec![mac(1), mac(2)]);
    assert_eq!(f.promisc, 0);
}

// ---------- §6 broadcast queue --------------------------------------------------------------

#[test]
fn s6_queue_capacity_is_max_request_including_down_devices() {
    let mut p = Port::create(lower()).unwrap();
    let mut r = req("a", Some(mac(1)), Bridge);
    r.attrs.bcqueuelen = Some(10);
    let a = p.add_device(&r, 0).unwrap();
    let mut r = req("b", Some(mac(2)), Bridge);
    r.attrs.bcqueuelen = Some(5000);
    let b = p.add_device(&r, 0).unwrap();
    p.open(a).unwrap();
    assert_eq!(p.bc_queue_len_used(), 5000);
    assert_eq!(p.snapshot().bc_queue_len(), 5000);
    p.change(
        b,
        &MacvlanAttrs {
            bcqueuelen: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.bc_queue_len_used(), 10);
    p.remove_device(a).unwrap();
    assert_eq!(p.bc_queue_len_used(), 0);
}

#[test]
fn s6_full_queue_refuses_frame() {
    let mut q = BcQueue::default();
    let cap = 1;
    assert!(q.push(1, cap).is_ok());
    assert_eq!(q.push(2, cap), Err(2));
}

// ---------- §7 control operations -----------------------------------------------------------

#[test]
fn s7_create_lower_must_be_ethernet_not_loopback_not_busy() {
    let mut l = lower();
    l.is_loopback = true;
    assert_eq!(Port::create(l).unwrap_err().errno, Errno::EINVAL);
    let mut l = lower();
    l.is_ether = false;
    assert_eq!(Port::create(l).unwrap_err().errno, Errno::EINVAL);
    let mut l = lower();
    l.rx_handler_busy = true;
    assert_eq!(Port::create(l).unwrap_err().errno, Errno::EBUSY);
}

#[test]
fn s7_create_mtu_defaults_to_lower_and_is_bounded() {
    let mut p = Port::create(lower()).unwrap();
    let id = p.add_device(&req("a", None, Bridge), 0).unwrap();
    assert_eq!(p.device(id).unwrap().mtu, 1500);
    let mut r = req("b", None, Bridge);
    r.mtu = Some(1501);
    assert_eq!(
        p.add_device(&r, 0).unwrap_err(),
        ControlError::new(Errno::EINVAL)
    );
    r.mtu = Some(67);
    assert_eq!(
        p.add_device(&r, 0).unwrap_err(),
        ControlError::with_msg(Errno::EINVAL, "mtu less than device minimum")
    );
    r.mtu = Some(68);
    assert!(p.add_device(&r, 0).is_ok());
}

#[test]
fn s7_create_mac_must_be_valid_unicast_or_random_local() {
    let mut p = Port::create(lower()).unwrap();
    for bad in [GROUP, MacAddr::ZERO] {
        let e = p.add_device(&req("a", Some(bad), Bridge), 0).unwrap_err();
        assert_eq!(e.errno, Errno::EADDRNOTAVAIL);
    }
    let id = p
        .add_device(&req("a", None, Bridge), 0xffff_ffff_ffff)
        .unwrap();
    let m = p.device(id).unwrap().mac;
    assert!(m.is_valid_unicast() && m.is_local());
}

#[test]
fn s7_passthru_only_alone_and_takes_lower_mac() {
    let mut p = Port::create(lower()).unwrap();
    let pt = p.add_device(&req("pt", Some(mac(5)), Passthru), 0).unwrap();
    assert_eq!(
        p.device(pt).unwrap().mac,
        LOWER_MAC,
        "inherits the lower's address"
    );
    for m in [Bridge, Passthru] {
        assert_eq!(
            p.add_device(&req("x", None, m), 0).unwrap_err().errno,
            Errno::EINVAL
        );
    }
    let (mut p, _) = port_with(&[Bridge]);
    assert_eq!(
        p.add_device(&req("pt", None, Passthru), 0)
            .unwrap_err()
            .errno,
        Errno::EINVAL
    );
}

#[test]
fn s7_passthru_puts_lower_in_promisc_while_up_unless_nopromisc() {
    let mut p = Port::create(lower()).unwrap();
    let pt = p.add_device(&req("pt", None, Passthru), 0).unwrap();
    assert_eq!(p.lower_filters().promisc, 0);
    p.open(pt).unwrap();
    assert_eq!(p.lower_filters().promisc, 1);
    assert!(
        p.lower_filters().unicast.is_empty(),
        "no unicast entry in passthru"
    );
    p.change(
        pt,
        &MacvlanAttrs {
            flags: Some(FLAG_NOPROMISC),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.lower_filters().promisc, 0);
}

#[test]
fn s7_bad_flags_mode_or_macaddr_count_are_einval() {
    let mut p = Port::create(lower()).unwrap();
    for attrs in [
        MacvlanAttrs {
            flags: Some(4),
            ..Default::default()
        },
        MacvlanAttrs {
            mode: Some(3),
            ..Default::default()
        },
        MacvlanAttrs {
            mode: Some(32),
            ..Default::default()
        },
        MacvlanAttrs {
            macaddr_count: Some(0),
            ..Default::default()
        },
    ] {
        let r = NewDevice {
            name: "a".into(),
            attrs,
            ..Default::default()
        };
        assert_eq!(p.add_device(&r, 0).unwrap_err().errno, Errno::EINVAL);
    }
    assert!(p.is_empty());
}

#[test]
fn s7_change_into_or_out_of_passthru_is_einval_and_mode_applies_last() {
    let (mut p, ids) = port_with(&[Bridge]);
    let e = p
        .change(
            ids[0],
            &MacvlanAttrs {
                mode: Some(Passthru.bits()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    let mut q = Port::create(lower()).unwrap();
    let pt = q.add_device(&req("pt", None, Passthru), 0).unwrap();
    let e = q
        .change(
            pt,
            &MacvlanAttrs {
                mode: Some(Vepa.bits()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    p.change(
        ids[0],
        &MacvlanAttrs {
            mode: Some(Private.bits()),
            flags: Some(FLAG_NODST),
            bcqueuelen: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    let d = p.device(ids[0]).unwrap();
    assert_eq!(
        (d.mode, d.flags, d.bc_queue_len_req),
        (Private, FLAG_NODST, 7)
    );
}

#[test]
fn s7_up_refuses_lower_mac_or_a_taken_mac() {
    let mut p = Port::create(lower()).unwrap();
    let a = p.add_device(&req("a", Some(LOWER_MAC), Bridge), 0).unwrap();
    assert_eq!(p.open(a).unwrap_err().errno, Errno::EADDRINUSE);
    let b = p.add_device(&req("b", Some(mac(1)), Bridge), 0).unwrap();
    let c = p.add_device(&req("c", Some(mac(1)), Vepa), 0).unwrap();
    p.open(b).unwrap();
    assert_eq!(p.open(c).unwrap_err().errno, Errno::EADDRINUSE);
    p.stop(b).unwrap();
    p.open(c).unwrap();
}

#[test]
fn s7_set_mac_rules() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    assert_eq!(
        p.set_mac(ids[0], GROUP).unwrap_err().errno,
        Errno::EADDRNOTAVAIL
    );
    assert_eq!(p.set_mac(ids[0], mac(1)).unwrap(), MacChange::Unchanged);
    assert_eq!(
        p.set_mac(ids[0], mac(2)).unwrap_err().errno,
        Errno::EADDRINUSE
    );
    assert_eq!(
        p.set_mac(ids[0], LOWER_MAC).unwrap_err().errno,
        Errno::EADDRINUSE
    );
    // Checked even while down.
    p.stop(ids[0]).unwrap();
    assert_eq!(
        p.set_mac(ids[0], mac(2)).unwrap_err().errno,
        Errno::EADDRINUSE
    );
    assert_eq!(p.set_mac(ids[0], mac(9)).unwrap(), MacChange::Changed);
    p.open(ids[0]).unwrap();
    assert_eq!(rx(&p, &frame(mac(9), EXT, 60)).deliveries[0].dev, ids[0]);
    assert!(rx(&p, &frame(mac(1), EXT, 60)).deliveries.is_empty());
}

#[test]
fn s7_passthru_mac_change_changes_the_lower() {
    let mut p = Port::create(lower()).unwrap();
    let pt = p.add_device(&req("pt", None, Passthru), 0).unwrap();
    p.open(pt).unwrap();
    assert_eq!(
        p.set_mac(pt, mac(7)).unwrap(),
        MacChange::LowerMustChange(mac(7))
    );
    assert_eq!(
        p.device(pt).unwrap().mac,
        LOWER_MAC,
        "nothing changes until the lower has"
    );
    p.lower_mac_changed(mac(7), LowerMacCause::Passthru);
    assert_eq!(p.device(pt).unwrap().mac, mac(7));
    let r = p.remove_device(pt).unwrap();
    assert_eq!(r.restore_lower_mac, Some(LOWER_MAC));
}

#[test]
fn s7_set_mtu_above_lower_is_einval() {
    let (mut p, ids) = port_with(&[Bridge]);
    assert_eq!(
        p.set_mtu(ids[0], 1501).unwrap_err(),
        ControlError::new(Errno::EINVAL)
    );
    assert_eq!(
        p.set_mtu(ids[0], 10).unwrap_err().extack,
        Some("mtu less than device minimum")
    );
    p.set_mtu(ids[0], 1400).unwrap();
    assert_eq!(p.device(ids[0]).unwrap().mtu, 1400);
}

#[test]
fn s7_fdb_unicast_needs_passthru_and_replace_is_unsupported() {
    let (mut p, ids) = port_with(&[Bridge]);
    assert_eq!(
        p.fdb_add(ids[0], EXT, false).unwrap_err().errno,
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        p.fdb_add(ids[0], GROUP, true).unwrap_err().errno,
        Errno::EOPNOTSUPP
    );
    p.fdb_add(ids[0], GROUP, false).unwrap();
    assert_eq!(
        p.fdb_add(ids[0], GROUP, false).unwrap_err().errno,
        Errno::EEXIST
    );
    assert!(p.lower_filters().multicast.contains(&GROUP));
    assert_eq!(p.fdb_del(ids[0], EXT).unwrap_err().errno, Errno::EOPNOTSUPP);
    p.fdb_del(ids[0], GROUP).unwrap();
    let mut q = Port::create(lower()).unwrap();
    let pt = q.add_device(&req("pt", None, Passthru), 0).unwrap();
    q.open(pt).unwrap();
    q.fdb_add(pt, EXT, false).unwrap();
    assert_eq!(q.lower_filters().unicast, vec![EXT]);
}

#[test]
fn s7_delete_last_destroys_port_restoring_passthru_lower_mac() {
    let mut p = Port::create(lower()).unwrap();
    let pt = p.add_device(&req("pt", None, Passthru), 0).unwrap();
    let r = p.remove_device(pt).unwrap();
    assert!(r.port_empty);
    assert_eq!(
        r.restore_lower_mac, None,
        "unchanged lower MAC needs no restore"
    );
}

// ---------- §8 following the lower ---------------------------------------------------------

#[test]
fn s8_lower_carrier_mirrored_on_macvlans() {
    let (mut p, ids) = port_with(&[Bridge]);
    assert!(p.carrier());
    assert_eq!(p.operstate(ids[0]), "UP");
    p.lower_link_changed(false, false, false);
    assert!(!p.carrier());
    assert_eq!(p.operstate(ids[0]), "LOWERLAYERDOWN");
    p.lower_link_changed(true, true, true);
    assert_eq!(p.operstate(ids[0]), "DORMANT");
    p.stop(ids[0]).unwrap();
    assert_eq!(p.operstate(ids[0]), "DOWN");
}

#[test]
fn s8_operstate_without_carrier_depends_on_the_macvlans_namespace() {
    // Kernel (found by the conformance suite): default_operstate looks the lower's ifindex up
    // in the macvlan's namespace; a macvlan moved elsewhere usually finds nothing (or an
    // oper-up device) there and says DOWN, not LOWERLAYERDOWN.
    let (mut p, ids) = port_with(&[Bridge]);
    p.lower_link_changed(false, false, false);
    assert_eq!(p.operstate_seen_from(ids[0], Some(false)), "LOWERLAYERDOWN");
    assert_eq!(p.operstate_seen_from(ids[0], None), "DOWN");
    assert_eq!(p.operstate_seen_from(ids[0], Some(true)), "DOWN");
    p.lower_link_changed(true, true, false);
    assert_eq!(p.operstate_seen_from(ids[0], None), "UP");
}

#[test]
fn s5_passthru_allmulti_reaches_the_lower_only_when_toggled_up() {
    // Kernel (found by the conformance suite): macvlan_change_rx_flags passes a passthru
    // macvlan's allmulti to the lower (not its promisc) when toggled while up; its open and
    // stop leave that reference alone. The lower then takes every group.
    let (mut p, ids) = port_with(&[Passthru]);
    let pt = ids[0];
    p.set_rx_flags(pt, true, false).unwrap();
    assert_eq!(p.lower_filters().allmulti, 0);
    assert_eq!(
        p.lower_filters().promisc,
        1,
        "its own passthru reference only"
    );
    p.set_rx_flags(pt, false, true).unwrap();
    assert_eq!(p.lower_filters().allmulti, 1);
    // Held across stop/open.
    p.stop(pt).unwrap();
    assert_eq!(p.lower_filters().allmulti, 1);
    p.open(pt).unwrap();
    assert_eq!(p.lower_filters().allmulti, 1);
    let (mc, _) = p.port_filters();
    assert_eq!(mc, umacvlan_core::engine::hash::Bitmap256::FULL);
    p.set_rx_flags(pt, false, false).unwrap();
    assert_eq!(p.lower_filters().allmulti, 0);
    // Toggled while down: no reference, and none taken at open.
    p.stop(pt).unwrap();
    p.set_rx_flags(pt, false, true).unwrap();
    p.open(pt).unwrap();
    assert_eq!(p.lower_filters().allmulti, 0);
}

#[test]
fn s8_lower_mtu_lowered_lowers_macvlans_raised_does_not() {
    let (mut p, ids) = port_with(&[Bridge, Vepa]);
    p.set_mtu(ids[1], 1000).unwrap();
    assert_eq!(p.lower_mtu_changed(1200), vec![ids[0]]);
    assert_eq!(p.device(ids[0]).unwrap().mtu, 1200);
    assert_eq!(p.device(ids[1]).unwrap().mtu, 1000);
    assert!(p.lower_mtu_changed(9000).is_empty());
    assert_eq!(p.device(ids[0]).unwrap().mtu, 1200);
}

#[test]
fn s8_lower_mac_change_followed_in_passthru_only() {
    let mut p = Port::create(lower()).unwrap();
    let pt = p.add_device(&req("pt", None, Passthru), 0).unwrap();
    p.lower_mac_changed(mac(42), LowerMacCause::External);
    assert_eq!(p.device(pt).unwrap().mac, mac(42));
    assert_eq!(
        p.perm_addr(),
        mac(42),
        "an external change becomes the address to restore"
    );
    assert_eq!(p.remove_device(pt).unwrap().restore_lower_mac, None);
    let (mut q, ids) = port_with(&[Bridge]);
    q.lower_mac_changed(mac(42), LowerMacCause::External);
    assert_eq!(q.device(ids[0]).unwrap().mac, mac(1));
    // The lower's new MAC is now the one an up macvlan may not take.
    assert_eq!(
        q.set_mac(ids[0], mac(42)).unwrap_err().errno,
        Errno::EADDRINUSE
    );
}

// ---------- §9 counters ---------------------------------------------------------------------

#[test]
fn s9_unicast_counts_whole_frame_success_first() {
    let (p, ids) = port_with(&[Bridge]);
    let o = rx(&p, &frame(mac(1), EXT, 98));
    let mut c = DevCounters::default();
    c.count_delivery(&o.deliveries[0], false);
    assert_eq!(
        (c.rx_packets, c.rx_bytes, c.rx_multicast, c.rx_errors),
        (1, 98, 0, 0)
    );
    let _ = ids;
}

#[test]
fn s9_vlan_tagged_frame_counts_without_one_tag() {
    let (p, _) = port_with(&[Bridge]);
    let mut f = frame_et(mac(1), EXT, 0x8100, 64);
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_eq!(rx(&p, &f).deliveries[0].bytes, 60);
}

#[test]
fn s9_flood_counts_multicast_and_failed_write_counts_error_as_dropped() {
    let (p, ids) = port_with(&[Bridge, Vepa]);
    let (_, all) = rx_all(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    let mut c = [DevCounters::default(); 2];
    c[0].count_delivery(all.iter().find(|d| d.dev == ids[0]).unwrap(), true);
    c[1].count_delivery(all.iter().find(|d| d.dev == ids[1]).unwrap(), false);
    assert_eq!(
        (c[0].rx_packets, c[0].rx_bytes, c[0].rx_multicast),
        (1, 60, 1)
    );
    assert_eq!(
        (c[1].rx_packets, c[1].rx_errors, c[1].rx_dropped()),
        (0, 1, 1)
    );
}

#[test]
fn s9_tx_counts_whole_frame_or_drop() {
    let (p, ids) = port_with(&[Vepa]);
    let o = tx(&p, ids[0], &frame(EXT, mac(1), 342));
    let mut c = DevCounters::default();
    c.count_tx(o.tx_bytes, true);
    c.count_tx(o.tx_bytes, false);
    assert_eq!((c.tx_packets, c.tx_bytes, c.tx_dropped), (1, 342, 1));
}

/// Fragments `payload` as a UDP-ish broadcast datagram into frames with `chunk` data bytes each.
fn ipv4_fragments(payload: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mf = end < payload.len();
        let mut f = frame(MacAddr::BROADCAST, EXT, 14);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
        let fo = ((off / 8) as u16) | if mf { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&fo.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[255, 255, 255, 255]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&payload[off..end]);
        out.push(f);
        off = end;
    }
    out
}
