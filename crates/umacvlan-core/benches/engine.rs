//! Criterion benchmarks of the per-frame decisions.
//!
//! Run: `cargo bench -p umacvlan-core --bench engine`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use umacvlan_core::engine::*;
use umacvlan_core::wire::{write_header, MacAddr};

fn mac(i: u32) -> MacAddr {
    MacAddr([0x02, 0x10, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0x01])
}

fn port(n: u32, mode: Mode) -> (Port, Vec<DevId>) {
    let lower = LowerState::ethernet(2, "eth0", MacAddr([2, 0, 0, 0, 0, 1]), 1500);
    let mut p = Port::create(lower).unwrap();
    let ids = (0..n)
        .map(|i| {
            let req = NewDevice {
                name: format!("mv{i}"),
                mac: Some(mac(i)),
                mtu: None,
                attrs: MacvlanAttrs {
                    mode: Some(mode.bits()),
                    ..Default::default()
                },
            };
            let id = p.add_device(&req, 0).unwrap();
            p.open(id).unwrap();
            id
        })
        .collect();
    (p, ids)
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    write_header(&mut f, dst, src, 0x0800);
    f
}

fn unicast_rx(c: &mut Criterion) {
    let mut g = c.benchmark_group("rx_unicast_decision");
    g.throughput(Throughput::Elements(1));
    for n in [1u32, 64, 4096] {
        let (p, _) = port(n, Mode::Bridge);
        let snap = p.snapshot();
        // Hit the last-created device: worst case for any list-shaped structure.
        let f = frame(mac(n - 1), MacAddr([2, 0xee, 0, 0, 0, 1]));
        let mut out = RxOutcome::default();
        g.bench_with_input(BenchmarkId::from_parameter(n), &f, |b, f| {
            b.iter(|| {
                snap.receive(black_box(f), &mut out);
                black_box(out.deliveries.len())
            })
        });
    }
    g.finish();
}

fn broadcast_flood(c: &mut Criterion) {
    let mut g = c.benchmark_group("rx_broadcast_flood");
    let (p, _) = port(64, Mode::Bridge);
    let snap = p.snapshot();
    let f = frame(MacAddr::BROADCAST, MacAddr([2, 0xee, 0, 0, 0, 1]));
    let mut out = Vec::with_capacity(64);
    g.throughput(Throughput::Elements(64));
    g.bench_function("64_devices", |b| {
        b.iter(|| {
            out.clear();
            snap.flood_from_wire(black_box(&f), None, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn bridge_tx(c: &mut Criterion) {
    let mut g = c.benchmark_group("tx_bridge_decision");
    g.throughput(Throughput::Elements(1));
    let (p, ids) = port(64, Mode::Bridge);
    let snap = p.snapshot();
    let mut out = TxOutcome::default();
    let to_sibling = frame(mac(7), mac(0));
    let to_wire = frame(MacAddr([2, 0xee, 0, 0, 0, 1]), mac(0));
    g.bench_function("to_sibling", |b| {
        b.iter(|| {
            snap.transmit(ids[0], black_box(&to_sibling), &mut out);
            black_box(out.deliveries.len())
        })
    });
    g.bench_function("to_wire", |b| {
        b.iter(|| {
            snap.transmit(ids[0], black_box(&to_wire), &mut out);
            black_box(out.to_wire)
        })
    });
    g.finish();
}

criterion_group!(benches, unicast_rx, broadcast_flood, bridge_tx);
criterion_main!(benches);
