//! A port with a bridge, a vepa and a private macvlan, and a few frames through it.
//!
//! Run: `cargo run -p umacvlan-core --example three_modes`

use umacvlan_core::engine::*;
use umacvlan_core::wire::{write_header, MacAddr};

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    write_header(&mut f, dst, src, 0x0800);
    f
}

fn main() {
    let lower = LowerState::ethernet(2, "eth0", "02:00:00:00:00:01".parse().unwrap(), 1500);
    let mut port = Port::create(lower).expect("an up Ethernet lower");
    let mut names = Vec::new();
    for (name, mac, mode) in [
        ("br0", "02:00:00:00:00:10", Mode::Bridge),
        ("br1", "02:00:00:00:00:11", Mode::Bridge),
        ("ve0", "02:00:00:00:00:20", Mode::Vepa),
        ("pr0", "02:00:00:00:00:30", Mode::Private),
    ] {
        let req = NewDevice {
            name: name.into(),
            mac: Some(mac.parse().unwrap()),
            mtu: None,
            attrs: MacvlanAttrs {
                mode: Some(mode.bits()),
                ..Default::default()
            },
        };
        let id = port.add_device(&req, 0).expect("valid request");
        port.open(id).expect("free address");
        names.push((id, name));
    }
    let name = |id: DevId| {
        names
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    };
    let snap = port.snapshot();
    let external: MacAddr = "02:ee:00:00:00:01".parse().unwrap();

    let mut rx = RxOutcome::default();
    let mut tx = TxOutcome::default();

    println!("from the wire:");
    for (what, f) in [
        (
            "unicast to ve0",
            frame("02:00:00:00:00:20".parse().unwrap(), external),
        ),
        (
            "unicast to nobody",
            frame("02:00:00:00:00:99".parse().unwrap(), external),
        ),
        ("broadcast", frame(MacAddr::BROADCAST, external)),
        (
            "broadcast reflected from pr0",
            frame(MacAddr::BROADCAST, "02:00:00:00:00:30".parse().unwrap()),
        ),
    ] {
        snap.receive(&f, &mut rx);
        let mut got: Vec<&str> = rx.deliveries.iter().map(|d| name(d.dev)).collect();
        if let Some(src) = rx.enqueue {
            let mut later = Vec::new();
            snap.flood_from_wire(&f, src, &mut later);
            got.extend(later.iter().map(|d| name(d.dev)));
        }
        println!(
            "  {what:30} -> {got:?}  lower stack: {}  ({:?})",
            rx.lower_stack,
            rx.reason.unwrap()
        );
    }

    println!("sent by a macvlan:");
    for (from, what, f) in [
        (
            names[0].0,
            "br0 -> br1 unicast",
            frame(
                "02:00:00:00:00:11".parse().unwrap(),
                "02:00:00:00:00:10".parse().unwrap(),
            ),
        ),
        (
            names[0].0,
            "br0 broadcast",
            frame(MacAddr::BROADCAST, "02:00:00:00:00:10".parse().unwrap()),
        ),
        (
            names[2].0,
            "ve0 -> br0 unicast",
            frame(
                "02:00:00:00:00:10".parse().unwrap(),
                "02:00:00:00:00:20".parse().unwrap(),
            ),
        ),
        (
            names[3].0,
            "pr0 -> ve0 unicast",
            frame(
                "02:00:00:00:00:20".parse().unwrap(),
                "02:00:00:00:00:30".parse().unwrap(),
            ),
        ),
    ] {
        snap.transmit(from, &f, &mut tx);
        let got: Vec<&str> = tx.deliveries.iter().map(|d| name(d.dev)).collect();
        println!(
            "  {what:30} -> local {got:?}  wire: {}  ({:?})",
            tx.to_wire,
            tx.reason.unwrap()
        );
    }
}
