//! `hostaccess on|off` (umacvlan's own option, no kernel counterpart): the lower's own host
//! and a macvlan reach each other directly. Off, every decision is the kernel's (checked
//! against the same port without the option); on, only the host's frames and the frames for
//! the host change.

mod common;
use common::*;
use umacvlan_core::engine::*;
use umacvlan_core::wire::MacAddr;

use Mode::*;

fn set_hostaccess(p: &mut Port, id: DevId, on: bool) {
    p.change(
        id,
        &MacvlanAttrs {
            hostaccess: Some(on),
            ..Default::default()
        },
    )
    .unwrap();
}

fn from_host(p: &Port, f: &[u8]) -> RxOutcome {
    let mut o = RxOutcome::default();
    p.snapshot().from_host(f, &mut o);
    o
}

#[test]
fn off_by_default_and_nothing_comes_from_the_host() {
    let (p, ids) = port_with(&[Bridge, Vepa]);
    assert!(p.devices().iter().all(|d| !d.hostaccess));
    assert!(!p.snapshot().hostaccess());
    for dst in [mac(1), mac(2), MacAddr::BROADCAST] {
        let o = from_host(&p, &frame(dst, LOWER_MAC, 60));
        assert!(o.deliveries.is_empty(), "{dst}");
        assert_eq!(o.reason, Some(RxReason::NotOurs));
    }
    // And the macvlans' frames for the host go to the wire, as the kernel sends them.
    let o = tx(&p, ids[1], &frame(LOWER_MAC, mac(2), 60));
    assert!(o.to_wire && !o.to_host);
    assert_eq!(o.reason, Some(TxReason::Wire));
}

#[test]
fn host_unicast_reaches_only_its_hostaccess_macvlan() {
    let (mut p, ids) = port_with(&[Vepa, Private, Bridge]);
    set_hostaccess(&mut p, ids[0], true);
    let o = from_host(&p, &frame(mac(1), LOWER_MAC, 60));
    assert_eq!(targets(&o.deliveries), vec![ids[0]]);
    assert_eq!(o.deliveries[0].pkt_type, PacketType::Host);
    assert_eq!(o.deliveries[0].bytes, 60);
    assert!(!o.lower_stack);
    assert_eq!(o.reason, Some(RxReason::FromHost));
    // A macvlan without it: the host's frame is only on its way to the wire.
    let o = from_host(&p, &frame(mac(2), LOWER_MAC, 60));
    assert!(o.deliveries.is_empty());
    // Not the host's (another source): ignored.
    let o = from_host(&p, &frame(mac(1), EXT, 60));
    assert!(o.deliveries.is_empty());
    // A down hostaccess macvlan gets nothing.
    p.stop(ids[0]).unwrap();
    assert!(from_host(&p, &frame(mac(1), LOWER_MAC, 60))
        .deliveries
        .is_empty());
}

#[test]
fn host_groups_reach_hostaccess_macvlans_through_their_filters() {
    let (mut p, ids) = port_with(&[Vepa, Private, Bridge]);
    set_hostaccess(&mut p, ids[0], true);
    set_hostaccess(&mut p, ids[1], true);
    let o = from_host(&p, &frame(MacAddr::BROADCAST, LOWER_MAC, 60));
    assert_eq!(targets(&o.deliveries), vec![ids[0], ids[1]]);
    assert!(o
        .deliveries
        .iter()
        .all(|d| d.multicast && d.pkt_type == PacketType::Broadcast));
    // A group only ids[1] joined.
    p.set_mc_list(ids[1], vec![GROUP]).unwrap();
    let o = from_host(&p, &frame(GROUP, LOWER_MAC, 60));
    assert_eq!(targets(&o.deliveries), vec![ids[1]]);
    // PAUSE is never flooded.
    let o = from_host(&p, &frame_et(MacAddr::BROADCAST, LOWER_MAC, 0x8808, 60));
    assert!(o.deliveries.is_empty());
}

#[test]
fn hostaccess_unicast_for_the_host_skips_the_wire_in_every_mode() {
    for mode in [Private, Vepa, Bridge] {
        let (mut p, ids) = port_with(&[mode]);
        set_hostaccess(&mut p, ids[0], true);
        let o = tx(&p, ids[0], &frame(LOWER_MAC, mac(1), 60));
        assert!(o.to_host && !o.to_wire, "{mode}");
        assert_eq!(o.tx_bytes, 60);
        assert_eq!(o.reason, Some(TxReason::ToHost));
        // Anything else goes as the kernel sends it.
        let o = tx(&p, ids[0], &frame(EXT, mac(1), 60));
        assert!(o.to_wire && !o.to_host, "{mode}");
    }
}

#[test]
fn hostaccess_groups_go_to_the_wire_and_to_the_host() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    set_hostaccess(&mut p, ids[0], true);
    let o = tx(&p, ids[0], &frame(MacAddr::BROADCAST, mac(1), 60));
    assert!(o.to_host && o.to_wire);
    assert_eq!(o.reason, Some(TxReason::FloodAndWire));
    assert_eq!(targets(&o.deliveries), vec![ids[1]]);
}

#[test]
fn reflections_of_the_hosts_frames_are_not_delivered_twice() {
    // A hairpin switch sends what the host sent back in: hostaccess macvlans had it from the
    // host; the others get it exactly as with the kernel.
    let (mut p, ids) = port_with(&[Vepa, Vepa, Private]);
    set_hostaccess(&mut p, ids[0], true);
    let o = rx(&p, &frame(mac(1), LOWER_MAC, 60));
    assert!(o.deliveries.is_empty() && !o.lower_stack);
    assert_eq!(o.reason, Some(RxReason::HostEcho));
    let o = rx(&p, &frame(mac(2), LOWER_MAC, 60));
    assert_eq!(targets(&o.deliveries), vec![ids[1]]);
    let (_, all) = rx_all(&p, &frame(MacAddr::BROADCAST, LOWER_MAC, 60));
    assert_eq!(targets(&all), vec![ids[1], ids[2]]);
    // Frames from elsewhere are untouched.
    let (_, all) = rx_all(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    assert_eq!(targets(&all), ids.clone());
    assert_eq!(
        targets(&rx(&p, &frame(mac(1), EXT, 60)).deliveries),
        vec![ids[0]]
    );
}

#[test]
fn a_hostaccess_macvlan_with_the_lowers_address_gets_no_echo_of_the_host() {
    // Found by fuzzing: the lower's MAC changed to a private macvlan's. A group frame from that
    // address is the macvlan's own reflection to the kernel (back to it only); with hostaccess
    // it is just as well the host's, which the host path gave it already.
    let (mut p, ids) = port_with(&[Private, Bridge]);
    let shared = p.device(ids[0]).unwrap().mac;
    p.lower_mac_changed(shared, LowerMacCause::External);
    let reflected = frame(MacAddr::BROADCAST, shared, 60);
    let o = rx(&p, &reflected);
    assert_eq!(o.reason, Some(RxReason::Reflected));
    assert_eq!(targets(&o.deliveries), vec![ids[0]]);
    set_hostaccess(&mut p, ids[0], true);
    let o = rx(&p, &reflected);
    assert!(o.deliveries.is_empty() && !o.lower_stack, "{o:?}");
    assert_eq!(o.reason, Some(RxReason::HostEcho));
}

#[test]
fn off_is_the_kernel_decision_for_every_frame() {
    // The same port with one hostaccess macvlan switched off again decides every frame as the
    // port that never had it.
    let (plain, _) = port_with(&[Vepa, Bridge, Private]);
    let (mut toggled, ids) = port_with(&[Vepa, Bridge, Private]);
    set_hostaccess(&mut toggled, ids[0], true);
    set_hostaccess(&mut toggled, ids[0], false);
    let srcs = [LOWER_MAC, EXT, mac(1), mac(2), mac(3)];
    let dsts = [
        LOWER_MAC,
        EXT,
        mac(1),
        mac(2),
        mac(3),
        MacAddr::BROADCAST,
        GROUP,
    ];
    for s in srcs {
        for d in dsts {
            let f = frame(d, s, 60);
            let (a, aa) = rx_all(&plain, &f);
            let (b, bb) = rx_all(&toggled, &f);
            assert_eq!((a.reason, a.lower_stack, aa), (b.reason, b.lower_stack, bb));
            for id in &ids {
                let (x, y) = (tx(&plain, *id, &f), tx(&toggled, *id, &f));
                assert_eq!(
                    (x.reason, x.to_wire, x.to_host, x.deliveries),
                    (y.reason, y.to_wire, y.to_host, y.deliveries)
                );
            }
        }
    }
}

#[test]
fn not_in_passthru_or_source_mode() {
    let mut p = Port::create(lower()).unwrap();
    for mode in [Passthru, Source] {
        let mut r = req("x", Some(mac(9)), mode);
        r.attrs.hostaccess = Some(true);
        let e = p.add_device(&r, 0).unwrap_err();
        assert_eq!(e.errno, Errno::EINVAL);
        assert_eq!(
            e.extack,
            Some("hostaccess is not supported in passthru or source mode")
        );
    }
    assert!(p.devices().is_empty());
    let (mut p, ids) = port_with(&[Vepa]);
    set_hostaccess(&mut p, ids[0], true);
    let before = p.clone();
    let to_source = MacvlanAttrs {
        mode: Some(Source.bits()),
        ..Default::default()
    };
    assert_eq!(
        p.change(ids[0], &to_source).unwrap_err().errno,
        Errno::EINVAL
    );
    assert_eq!(p.devices(), before.devices());
    // Together with hostaccess off, the switch is fine.
    let both = MacvlanAttrs {
        hostaccess: Some(false),
        ..to_source
    };
    p.change(ids[0], &both).unwrap();
    assert!(!p.device(ids[0]).unwrap().hostaccess);
}

#[test]
fn trace_names_the_hostaccess_rules() {
    let (mut p, ids) = port_with(&[Vepa]);
    set_hostaccess(&mut p, ids[0], true);
    let s = p.snapshot();
    let name = |id: DevId| format!("mv{}", id.0);
    let t = s.explain_transmit(ids[0], &frame(LOWER_MAC, mac(1), 60), &name);
    assert_eq!(t.verdict, "hostaccess: to the host");
    let t = s.explain_from_host(&frame(mac(1), LOWER_MAC, 60), &name);
    assert_eq!(
        t.verdict,
        format!("hostaccess: from the host to {}", name(ids[0]))
    );
    let t = s.explain_receive(&frame(mac(1), LOWER_MAC, 60), &name);
    assert!(t
        .verdict
        .starts_with("hostaccess: the host's own frame came back"));
    let t = s.explain_transmit(ids[0], &frame(MacAddr::BROADCAST, mac(1), 60), &name);
    assert_eq!(t.verdict, "vepa: to the wire; hostaccess: and to the host");
}

#[test]
fn a_group_frame_from_the_wire_says_whether_the_port_sent_it() {
    // The data plane learns from it that a hairpin switch reflects (and so how long a
    // hostaccess macvlan's group frame waits for its reflection before the host gets a copy).
    let (p, ids) = port_with(&[Vepa, Bridge, Private]);
    for (i, id) in ids.iter().enumerate() {
        let m = p.device(*id).unwrap().mac;
        for dst in [MacAddr::BROADCAST, GROUP] {
            let o = rx(&p, &frame(dst, m, 60));
            assert!(o.from_port, "{i} {dst}");
        }
    }
    for src in [EXT, LOWER_MAC] {
        for dst in [MacAddr::BROADCAST, GROUP] {
            assert!(!rx(&p, &frame(dst, src, 60)).from_port, "{src} {dst}");
        }
    }
    // Unicast says nothing about it.
    assert!(!rx(&p, &frame(mac(1), mac(2), 60)).from_port);
}
