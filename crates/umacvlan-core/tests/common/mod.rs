//! Builders shared by the engine's integration tests.
#![allow(dead_code)]

use umacvlan_core::engine::*;
use umacvlan_core::wire::{write_header, MacAddr};

pub const LOWER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const EXT: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 0x01]);
pub const EXT2: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 0x02]);
pub const GROUP: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);

pub fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 1, n])
}

pub fn lower() -> LowerState {
    LowerState::ethernet(2, "eth0", LOWER_MAC, 1500)
}

pub fn req(name: &str, mac: Option<MacAddr>, mode: Mode) -> NewDevice {
    NewDevice {
        name: name.into(),
        mac,
        mtu: None,
        attrs: MacvlanAttrs {
            mode: Some(mode.bits()),
            ..Default::default()
        },
    }
}

/// A port with one up device per mode given, MACs mac(1), mac(2), …
pub fn port_with(modes: &[Mode]) -> (Port, Vec<DevId>) {
    let mut p = Port::create(lower()).unwrap();
    let ids = modes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = p
                .add_device(&req(&format!("mv{i}"), Some(mac(i as u8 + 1)), *m), 0)
                .unwrap();
            p.open(id).unwrap();
            id
        })
        .collect();
    (p, ids)
}

pub fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    frame_et(dst, src, 0x0800, len)
}

pub fn frame_et(dst: MacAddr, src: MacAddr, et: u16, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len.max(14)];
    write_header(&mut b, dst, src, et);
    b
}

pub fn rx(p: &Port, f: &[u8]) -> RxOutcome {
    let mut o = RxOutcome::default();
    p.snapshot().receive(f, &mut o);
    o
}

pub fn tx(p: &Port, from: DevId, f: &[u8]) -> TxOutcome {
    let mut o = TxOutcome::default();
    p.snapshot().transmit(from, f, &mut o);
    o
}

pub fn targets(d: &[Delivery]) -> Vec<DevId> {
    let mut v: Vec<DevId> = d.iter().map(|d| d.dev).collect();
    v.sort();
    v
}

/// Receives a frame and, if it is queued, processes the queue at once: what each device gets.
pub fn rx_all(p: &Port, f: &[u8]) -> (RxOutcome, Vec<Delivery>) {
    let o = rx(p, f);
    let mut all = o.deliveries.clone();
    if let Some(src) = o.enqueue {
        p.snapshot().flood_from_wire(f, src, &mut all);
    }
    (o, all)
}
