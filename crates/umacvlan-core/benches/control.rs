//! Criterion benchmarks of the control operations' engine cost against the number of
//! macvlans N on the port (1, 100, 1000, 10,000): building a snapshot, and one `link add`
//! + `up` as the daemon applies it today (the port cloned, changed, snapshotted), `link set
//! up`, `link del`, and a name lookup. A cost that grows with N here is paid per operation.
//!
//! Run: `cargo bench -p umacvlan-core --bench control`

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use std::hint::black_box;
use umacvlan_core::engine::*;
use umacvlan_core::wire::MacAddr;

const NS: [u32; 4] = [1, 100, 1000, 10_000];

fn mac(i: u32) -> MacAddr {
    MacAddr([0x02, 0x10, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0x01])
}

fn req(i: u32) -> NewDevice {
    NewDevice {
        name: format!("mv{i}"),
        mac: Some(mac(i)),
        mtu: None,
        attrs: MacvlanAttrs {
            mode: Some(Mode::Bridge.bits()),
            ..Default::default()
        },
    }
}

fn port(n: u32) -> Port {
    let lower = LowerState::ethernet(2, "eth0", MacAddr([2, 0, 0, 0, 0, 1]), 1500);
    let mut p = Port::create(lower).unwrap();
    for i in 0..n {
        let id = p.add_device(&req(i), 0).unwrap();
        p.open(id).unwrap();
    }
    p
}

/// `port(n)` with each macvlan in the groups an IPv6 host joins (all-nodes, its
/// solicited-node group, all-hosts for IPv4), as macvlans in containers are.
fn port_with_groups(n: u32) -> Port {
    let mut p = port(n);
    let ids: Vec<_> = p.devices().iter().map(|d| d.id).collect();
    for (i, id) in ids.into_iter().enumerate() {
        let groups = vec![
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            MacAddr([0x33, 0x33, 0xff, 0x10, (i >> 8) as u8, i as u8]),
            MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
        ];
        p.set_mc_list(id, groups).unwrap();
    }
    p
}

fn control(c: &mut Criterion) {
    let mut g = c.benchmark_group("control");
    for &n in &NS {
        let p = port_with_groups(n);
        g.bench_with_input(BenchmarkId::new("snapshot_with_groups", n), &p, |b, p| {
            b.iter(|| black_box(p.snapshot()))
        });
        let p = port(n);
        g.bench_with_input(BenchmarkId::new("snapshot", n), &p, |b, p| {
            b.iter(|| black_box(p.snapshot()))
        });
        g.bench_with_input(BenchmarkId::new("add_up_clone_snapshot", n), &p, |b, p| {
            b.iter(|| {
                let mut q = p.clone();
                let id = q.add_device(&req(n + 1), 0).unwrap();
                q.open(id).unwrap();
                black_box(q.snapshot())
            })
        });
        g.bench_with_input(BenchmarkId::new("add_up_in_place", n), &p, |b, p| {
            b.iter_batched_ref(
                || p.clone(),
                |q| {
                    let id = q.add_device(&req(n + 1), 0).unwrap();
                    q.open(id).unwrap();
                    black_box(id)
                },
                BatchSize::LargeInput,
            )
        });
        let last = p.device_by_name(&format!("mv{}", n - 1)).unwrap().id;
        g.bench_with_input(BenchmarkId::new("set_down_up", n), &p, |b, p| {
            b.iter_batched_ref(
                || p.clone(),
                |q| {
                    q.set_up(last, false).unwrap();
                    q.set_up(last, true).unwrap();
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("del", n), &p, |b, p| {
            b.iter_batched_ref(
                || p.clone(),
                |q| black_box(q.remove_device(last).unwrap().port_empty),
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("find_by_name_last", n), &p, |b, p| {
            let name = format!("mv{}", n - 1);
            b.iter(|| black_box(p.device_by_name(&name).map(|d| d.id)))
        });
    }
    g.finish();
}

criterion_group!(benches, control);
criterion_main!(benches);
