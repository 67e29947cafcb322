//! `trace`: the engine explains its own decisions, one test per rule. Each checks the verdict
//! and the steps that name the rule, and that the trace agrees with the decision itself.

mod common;
use common::*;
use umacvlan_core::engine::Mode::*;
use umacvlan_core::engine::*;
use umacvlan_core::wire::MacAddr;

fn names(p: &Port) -> impl Fn(DevId) -> String + '_ {
    move |id| {
        p.device(id)
            .map_or(format!("#{}", id.0), |d| d.name.clone())
    }
}

fn trace_rx(p: &Port, f: &[u8]) -> Trace {
    let t = p.snapshot().explain_receive(f, &names(p));
    // The trace reports the decision receive() makes, not a second opinion.
    assert_eq!(t.rx_reason, rx(p, f).reason.map(|r| r.code()));
    t
}

fn trace_tx(p: &Port, from: DevId, f: &[u8]) -> Trace {
    let t = p.snapshot().explain_transmit(from, f, &names(p));
    assert_eq!(t.tx_reason, tx(p, from, f).reason.map(|r| r.code()));
    t
}

fn has(t: &Trace, needle: &str) -> bool {
    t.lines.iter().any(|l| l.text.contains(needle))
}

fn dump(t: &Trace) -> String {
    let mut s: String = t
        .lines
        .iter()
        .map(|l| format!("{}{}\n", "  ".repeat(l.depth as usize), l.text))
        .collect();
    s.push_str(&format!("Verdict: {}\n", t.verdict));
    s
}

#[test]
fn bridge_unicast_to_a_sibling_is_local() {
    let (p, ids) = port_with(&[Bridge, Bridge]);
    let t = trace_tx(&p, ids[0], &frame(mac(2), mac(1), 60));
    assert_eq!(t.verdict, "bridge: to sibling mv1", "{}", dump(&t));
    assert!(
        has(&t, "-> copy to mv1 (host): rx_packets +1"),
        "{}",
        dump(&t)
    );
    assert_eq!((t.copies, t.drop), (1, false));
}

#[test]
fn vepa_sends_everything_to_the_wire() {
    let (p, ids) = port_with(&[Vepa, Vepa]);
    let t = trace_tx(&p, ids[0], &frame(mac(2), mac(1), 60));
    assert_eq!(t.verdict, "vepa: to the wire", "{}", dump(&t));
    assert!(has(&t, "vepa mode: no local switching"));
    assert!(has(&t, "mv0: tx_packets +1, tx_bytes +60"));
    assert_eq!(t.copies, 0);
}

#[test]
fn bridge_to_a_non_bridge_sibling_goes_to_the_wire() {
    let (p, ids) = port_with(&[Bridge, Vepa]);
    let t = trace_tx(&p, ids[0], &frame(mac(2), mac(1), 60));
    assert_eq!(t.verdict, "bridge: to the wire", "{}", dump(&t));
    assert!(
        has(&t, "is mv1 (vepa, up): not a bridge sibling"),
        "{}",
        dump(&t)
    );
}

#[test]
fn bridge_multicast_floods_bridge_siblings_and_the_wire() {
    let (p, ids) = port_with(&[Bridge, Bridge, Private]);
    let t = trace_tx(&p, ids[0], &frame(MacAddr::BROADCAST, mac(1), 60));
    assert_eq!(
        t.verdict,
        "bridge: flooded to 1 siblings and to the wire",
        "{}",
        dump(&t)
    );
    assert!(
        has(&t, "mv0 (bridge, up): the sender: skipped"),
        "{}",
        dump(&t)
    );
    assert!(
        has(&t, "mv2 (private, up): private: only bridge siblings"),
        "{}",
        dump(&t)
    );
}

#[test]
fn private_multicast_from_a_sibling_is_not_flooded_to_it() {
    let (p, _) = port_with(&[Private, Vepa]);
    // The vepa sibling's broadcast reflected by the hairpin switch: queued, and when
    // flooded the private macvlan is left out.
    let t = trace_rx(&p, &frame(MacAddr::BROADCAST, mac(2), 60));
    assert_eq!(
        t.verdict,
        "multicast: to the broadcast queue",
        "{}",
        dump(&t)
    );
    assert!(
        has(
            &t,
            "mv0 (private, up): private: source is a sibling: skipped"
        ),
        "{}",
        dump(&t)
    );
    assert!(
        has(&t, "mv1 (vepa, up): the sender: skipped"),
        "{}",
        dump(&t)
    );
    assert!(has(&t, "bcqueuelen 1000"));
}

#[test]
fn private_reflection_goes_back_to_its_sender_only() {
    let (p, _) = port_with(&[Private, Vepa]);
    let mut f = frame(MacAddr::BROADCAST, mac(1), 60);
    f[0] = 0x01; // a group, not broadcast: same rule
    let t = trace_rx(&p, &f);
    assert_eq!(
        t.verdict,
        "private: own multicast reflected, back to mv0 only",
        "{}",
        dump(&t)
    );
    assert_eq!(t.copies, 1);
}

#[test]
fn unicast_from_the_wire_names_its_target() {
    let (p, _) = port_with(&[Bridge, Vepa]);
    let t = trace_rx(&p, &frame(mac(2), EXT, 60));
    assert_eq!(t.verdict, "unicast: to mv1", "{}", dump(&t));
    assert_eq!(t.copies, 1);
    assert!(has(&t, "dst lookup: 02:00:00:00:01:02 is mv1 (vepa, up)"));
    assert!(has(&t, "source mode: no macvlan lists src"));
    let t = trace_rx(&p, &frame(MacAddr([2, 0, 0, 0, 9, 9]), EXT, 60));
    assert_eq!(t.verdict, "not for a macvlan: to the lower's stack");
    assert!(!t.drop);
}

#[test]
fn passthru_down_drops() {
    let (mut p, ids) = port_with(&[Passthru]);
    p.stop(ids[0]).unwrap();
    let t = trace_rx(&p, &frame(LOWER_MAC, EXT, 60));
    assert_eq!(t.verdict, "macvlan down: dropped", "{}", dump(&t));
    assert!(has(&t, "passthru port: the target is mv0"));
    assert!(t.drop);
}

#[test]
fn a_down_sender_is_named() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    p.stop(ids[0]).unwrap();
    let t = trace_tx(&p, ids[0], &frame(mac(2), mac(1), 60));
    assert_eq!(t.verdict, "macvlan down: dropped");
    assert!(t.drop);
}

#[test]
fn source_mode_copies_and_nodst_consumes() {
    let (mut p, ids) = port_with(&[Source, Bridge]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            macaddr: Some(MacAddrOp::Add(EXT)),
            ..Default::default()
        },
    )
    .unwrap();
    let t = trace_rx(&p, &frame(mac(2), EXT, 60));
    assert!(
        has(&t, "source mode: copy to mv0 (otherhost)"),
        "{}",
        dump(&t)
    );
    assert_eq!(t.verdict, "unicast: to mv1");
    assert_eq!(t.copies, 2, "the source-mode copy and the unicast one");
    p.change(
        ids[0],
        &MacvlanAttrs {
            flags: Some(FLAG_NODST),
            ..Default::default()
        },
    )
    .unwrap();
    let t = trace_rx(&p, &frame(mac(2), EXT, 60));
    assert_eq!(
        t.verdict,
        "source mode nodst: 1 copies, consumed",
        "{}",
        dump(&t)
    );
    assert!(has(&t, "mv0 (source, up), nodst: source mode: copy to mv0"));
}

#[test]
fn a_full_broadcast_queue_is_explained_and_bcqueuelen_named() {
    let (mut p, ids) = port_with(&[Bridge]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            bcqueuelen: Some(2000),
            ..Default::default()
        },
    )
    .unwrap();
    let t = trace_rx(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    assert!(
        has(
            &t,
            "to the broadcast queue (bcqueuelen 2000); full queue: dropped"
        ),
        "{}",
        dump(&t)
    );
    assert!(has(&t, "-> copy to mv0 (broadcast)"), "{}", dump(&t));
}

#[test]
fn multicast_filters_port_and_device() {
    let (mut p, ids) = port_with(&[Bridge, Bridge]);
    let t = trace_rx(&p, &frame(GROUP, EXT, 60));
    assert_eq!(
        t.verdict,
        "multicast filter: group not joined",
        "{}",
        dump(&t)
    );
    assert!(t.drop);
    p.set_mc_list(ids[0], vec![GROUP]).unwrap();
    p.lower_mc_list_changed(vec![GROUP]);
    let t = trace_rx(&p, &frame(GROUP, EXT, 60));
    assert_eq!(
        t.verdict,
        "multicast: flooded to 1 macvlans",
        "{}",
        dump(&t)
    );
    assert!(
        has(
            &t,
            "mv1 (bridge, up): multicast filter: group not joined: skipped"
        ),
        "{}",
        dump(&t)
    );
}

#[test]
fn pause_and_malformed() {
    let (p, _) = port_with(&[Bridge]);
    let pause = frame_et(MacAddr::BROADCAST, EXT, 0x8808, 60);
    let t = trace_rx(&p, &pause);
    assert!(
        has(&t, "PAUSE frame (0x8808): never flooded"),
        "{}",
        dump(&t)
    );
    let t = trace_rx(&p, &[0u8; 10]);
    assert_eq!(t.verdict, "malformed: dropped");
    assert!(has(&t, "port: malformed +1"));
}

#[test]
fn a_flood_after_source_copies_lists_each_flooded_macvlan() {
    let (mut p, ids) = port_with(&[Source, Bridge, Vepa]);
    p.change(
        ids[0],
        &MacvlanAttrs {
            macaddr: Some(MacAddrOp::Add(EXT)),
            bclim: Some(-1),
            ..Default::default()
        },
    )
    .unwrap();
    let t = trace_rx(&p, &frame(MacAddr::BROADCAST, EXT, 60));
    assert_eq!(
        t.verdict,
        "multicast: flooded to 3 macvlans",
        "{}",
        dump(&t)
    );
    assert!(has(&t, "source mode: copy to mv0"), "{}", dump(&t));
    assert!(has(&t, "-> copy to mv1 (broadcast)"), "{}", dump(&t));
    assert!(has(&t, "-> copy to mv2 (broadcast)"), "{}", dump(&t));
}
