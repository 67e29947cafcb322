//! The fast path's programs run in the kernel (BPF_PROG_TEST_RUN, no redirect carried out) on
//! the spec's unicast cases, with maps computed by `umacvlan_core::engine::fastpath` from a
//! real engine port; each verdict and redirect target (read back from the trace ring buffer)
//! must be what the engine's tables say, and the counters must count what was forwarded.
//! Root only (loading BPF); the devices the programs see are veths in a namespace made for the
//! test and deleted on drop. Skipped, with a message, when not run as root.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use umacvlan_core::engine::fastpath::{tables, FpVerdict};
use umacvlan_core::engine::{DevId, LowerState, MacAddrOp, MacvlanAttrs, Mode, NewDevice, Port};
use umacvlan_core::wire::MacAddr;
use umacvlan_io::bpf::maps::{Stats, Verdict};
use umacvlan_io::bpf::{
    Applied, FastPath, PROG_LOWER, PROG_SLOW_FILTER, PROG_XMIT, TC_ACT_OK, TC_ACT_REDIRECT,
    TC_ACT_SHOT,
};
use umacvlan_io::{NetnsHandle, RtNetlink};

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = format!(
            "umv-bpfp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success());
        Ns(name)
    }
    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    }
    fn ifindex(&self, dev: &str) -> u32 {
        let h = NetnsHandle::from_name(&self.0).unwrap();
        RtNetlink::open_in(Some(&h))
            .unwrap()
            .get_link_by_name(dev)
            .unwrap()
            .ifindex
    }
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NetnsHandle::from_name(&self.0).unwrap().run_in(f).unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn mac(last: u8) -> MacAddr {
    MacAddr::new([2, 0, 0, 0, 0, last])
}

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst.octets());
    f[6..12].copy_from_slice(&src.octets());
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

/// A port on `lower` with macvlans of these modes (and admin states), named mv0, mv1…
fn port(lower: u32, devs: &[(Mode, bool)]) -> (Port, Vec<DevId>) {
    let mut p = Port::create(LowerState::ethernet(lower, "lw", mac(1), 1500)).unwrap();
    let mut ids = Vec::new();
    for (i, (m, up)) in devs.iter().enumerate() {
        let req = NewDevice {
            name: format!("mv{i}"),
            mac: Some(mac(0x10 + i as u8)),
            attrs: MacvlanAttrs {
                mode: Some(m.bits()),
                ..Default::default()
            },
            ..Default::default()
        };
        let id = p.add_device(&req, 0).unwrap();
        if *up {
            p.open(id).unwrap();
        }
        ids.push(id);
    }
    (p, ids)
}

/// The kernel's verdict and traced target for one run, against the tables' verdict.
fn check(
    fp: &mut FastPath,
    program: &'static str,
    f: &[u8],
    on: u32,
    want: FpVerdict,
    lower: u32,
    hidden: &dyn Fn(DevId) -> u32,
) {
    let rc = fp.test_run(program, f, on).unwrap();
    let ev = fp.take_events();
    assert_eq!(ev.len(), 1, "{program}: one traced decision, got {ev:?}");
    let ev = ev[0];
    assert_eq!(ev.ifindex, on);
    let v = Verdict::from_code(ev.verdict);
    let ctx = format!("{program} on {on}, dst {:?}: want {want:?}", &f[..6]);
    match want {
        FpVerdict::Pass => {
            assert_eq!((rc, v), (TC_ACT_OK, Some(Verdict::Pass)), "{ctx}")
        }
        FpVerdict::Deliver(id) => {
            assert_eq!((rc, v), (TC_ACT_REDIRECT, Some(Verdict::Unicast)), "{ctx}");
            assert_eq!(ev.target_ifindex, hidden(id), "{ctx}");
        }
        FpVerdict::Drop => {
            assert_eq!(rc, TC_ACT_SHOT, "{ctx}");
            assert!(
                matches!(
                    v,
                    Some(
                        Verdict::TargetDown
                            | Verdict::SenderDown
                            | Verdict::LocalRefused
                            | Verdict::HostEcho
                    )
                ),
                "{ctx}: {v:?}"
            );
        }
        FpVerdict::Wire => {
            assert_eq!((rc, v), (TC_ACT_REDIRECT, Some(Verdict::Wire)), "{ctx}");
            assert_eq!(ev.target_ifindex, lower, "{ctx}");
        }
        FpVerdict::Local => {
            assert_eq!((rc, v), (TC_ACT_REDIRECT, Some(Verdict::Local)), "{ctx}");
            assert_eq!(ev.target_ifindex, lower, "{ctx}");
        }
        FpVerdict::ToHost => {
            assert_eq!((rc, v), (TC_ACT_REDIRECT, Some(Verdict::ToHost)), "{ctx}");
            assert_eq!(ev.target_ifindex, lower, "{ctx}");
        }
        // From a macvlan: userspace has its copy, the hidden end's stack must not. From the
        // wire: the lower's stack and the slow path take it.
        FpVerdict::SlowPath if program == PROG_XMIT => {
            assert_eq!((rc, v), (TC_ACT_SHOT, Some(Verdict::SlowPath)), "{ctx}")
        }
        FpVerdict::SlowPath => {
            assert_eq!((rc, v), (TC_ACT_OK, Some(Verdict::SlowPath)), "{ctx}")
        }
    }
}

/// A namespace with a "lower" and one "hidden end" per macvlan (veths: the programs only need
/// the ifindexes to exist).
fn devices(ns: &Ns, n: usize) -> (u32, Vec<u32>) {
    ns.ip(&["link", "add", "lw", "type", "veth", "peer", "name", "lwp"]);
    let mut hidden = Vec::new();
    for i in 0..n {
        let h = format!("h{i}");
        let p = format!("p{i}");
        ns.ip(&["link", "add", &h, "type", "veth", "peer", "name", &p]);
        hidden.push(ns.ifindex(&h));
    }
    (ns.ifindex("lw"), hidden)
}

#[test]
fn programs_decide_unicast_as_the_engine_in_every_mode_mix() {
    require_root!();
    let ns = Ns::new();
    let (lower, hid) = devices(&ns, 3);
    ns.run(|| {
        let mut fp = FastPath::load(true).expect("the verifier accepts both programs");
        let modes = [Mode::Bridge, Mode::Vepa, Mode::Private];
        let mut runs = 0;
        for a in modes {
            for b in modes {
                for (up_a, up_b) in [(true, true), (false, true)] {
                    let (p, ids) = port(lower, &[(a, up_a), (b, up_b), (Mode::Bridge, true)]);
                    let t = tables(&p.snapshot());
                    let hidden = |id: DevId| hid[id.index()];
                    let mut applied = Applied::default();
                    fp.apply(lower, &t, &|id| Some(hidden(id).into()), &mut applied)
                        .unwrap();
                    let dsts = [mac(0x10), mac(0x11), mac(0x12), mac(1), mac(0x77)];
                    for dst in dsts.into_iter().chain([MacAddr::BROADCAST]) {
                        for len in [60, 1514, 1600] {
                            let f = frame(dst, mac(0x99), len);
                            check(
                                &mut fp,
                                PROG_LOWER,
                                &f,
                                lower,
                                t.receive(&f),
                                lower,
                                &hidden,
                            );
                            for from in &ids {
                                let f = frame(dst, mac(0x10 + from.index() as u8), len);
                                let want = t.transmit(*from, &f, false);
                                check(&mut fp, PROG_XMIT, &f, hidden(*from), want, lower, &hidden);
                                runs += 2;
                            }
                        }
                    }
                    fp.clear(lower, &mut applied, true);
                    assert!(fp.macs().is_empty() && fp.devs().is_empty() && fp.ports().is_empty());
                }
            }
        }
        assert!(runs > 500);
    });
}

/// `hostaccess on` (one macvlan of each mode mix): unicast to the lower's MAC into the lower's
/// receive path, the host's unicast back from the wire dropped, the rest as without it.
#[test]
fn hostaccess_as_the_engine() {
    require_root!();
    let ns = Ns::new();
    let (lower, hid) = devices(&ns, 3);
    ns.run(|| {
        let mut fp = FastPath::load(true).unwrap();
        let hidden = |id: DevId| hid[id.index()];
        let modes = [Mode::Bridge, Mode::Vepa, Mode::Private];
        let (mut to_host, mut echoes) = (0, 0);
        for a in modes {
            for b in modes {
                let (mut p, ids) = port(lower, &[(a, true), (b, true), (Mode::Bridge, true)]);
                p.change(
                    ids[0],
                    &MacvlanAttrs {
                        hostaccess: Some(true),
                        ..Default::default()
                    },
                )
                .unwrap();
                let t = tables(&p.snapshot());
                let mut applied = Applied::default();
                fp.apply(lower, &t, &|id| Some(hidden(id).into()), &mut applied)
                    .unwrap();
                for dst in [mac(0x10), mac(0x11), mac(0x12), mac(1), mac(0x77)] {
                    for src in [mac(1), mac(0x99)] {
                        let f = frame(dst, src, 60);
                        let want = t.receive(&f);
                        echoes += usize::from(src == mac(1) && want == FpVerdict::Drop);
                        check(&mut fp, PROG_LOWER, &f, lower, want, lower, &hidden);
                    }
                    for from in &ids {
                        let f = frame(dst, mac(0x10 + from.index() as u8), 60);
                        let want = t.transmit(*from, &f, false);
                        to_host += usize::from(want == FpVerdict::ToHost);
                        check(&mut fp, PROG_XMIT, &f, hidden(*from), want, lower, &hidden);
                    }
                }
                fp.clear(lower, &mut applied, true);
            }
        }
        assert_eq!((to_host, echoes), (9, 9));
    });
}

#[test]
fn passthru_down_target_and_lower_down_as_the_engine() {
    require_root!();
    let ns = Ns::new();
    let (lower, hid) = devices(&ns, 2);
    ns.run(|| {
        let mut fp = FastPath::load(true).unwrap();
        let hidden = |id: DevId| hid[id.index()];
        // Passthru, up then down: every unicast to it, or dropped.
        for up in [true, false] {
            let (p, _) = port(lower, &[(Mode::Passthru, up)]);
            let t = tables(&p.snapshot());
            let mut applied = Applied::default();
            fp.apply(lower, &t, &|id| Some(hidden(id).into()), &mut applied)
                .unwrap();
            for dst in [mac(0x10), mac(0x55), mac(1)] {
                let f = frame(dst, mac(0x99), 60);
                let want = t.receive(&f);
                assert!(matches!(want, FpVerdict::Deliver(_) | FpVerdict::Drop));
                check(&mut fp, PROG_LOWER, &f, lower, want, lower, &hidden);
            }
            fp.clear(lower, &mut applied, true);
        }
        // Two bridges, the lower down: the local frame is refused and counted on the lower.
        let (mut p, ids) = port(lower, &[(Mode::Bridge, true), (Mode::Bridge, true)]);
        p.lower_link_changed(false, false, false);
        let t = tables(&p.snapshot());
        let mut applied = Applied::default();
        fp.apply(lower, &t, &|id| Some(hidden(id).into()), &mut applied)
            .unwrap();
        let f = frame(mac(0x11), mac(0x10), 60);
        assert_eq!(t.transmit(ids[0], &f, false), FpVerdict::Drop);
        check(
            &mut fp,
            PROG_XMIT,
            &f,
            hidden(ids[0]),
            FpVerdict::Drop,
            lower,
            &hidden,
        );
        assert_eq!(fp.stats(lower).rx_dropped, 1);
        assert_eq!(
            fp.stats(hidden(ids[0])).tx_packets,
            1,
            "sent, as the kernel counts"
        );
    });
}

#[test]
fn counters_count_what_the_programs_forward() {
    require_root!();
    let ns = Ns::new();
    let (lower, hid) = devices(&ns, 2);
    ns.run(|| {
        // Tracing off: the programs run without the ring buffer.
        let mut fp = FastPath::load(false).unwrap();
        let (p, ids) = port(lower, &[(Mode::Bridge, true), (Mode::Vepa, true)]);
        let t = tables(&p.snapshot());
        let hidden = |id: DevId| hid[id.index()];
        let mut applied = Applied::default();
        fp.apply(lower, &t, &|id| Some(hidden(id).into()), &mut applied)
            .unwrap();
        for _ in 0..5 {
            let rc = fp
                .test_run(PROG_LOWER, &frame(mac(0x11), mac(0x99), 100), lower)
                .unwrap();
            assert_eq!(rc, TC_ACT_REDIRECT);
        }
        for _ in 0..3 {
            let rc = fp
                .test_run(PROG_XMIT, &frame(mac(0x99), mac(0x10), 200), hidden(ids[0]))
                .unwrap();
            assert_eq!(rc, TC_ACT_REDIRECT);
        }
        // Broadcast is the slow path's: not counted here.
        fp.test_run(
            PROG_XMIT,
            &frame(MacAddr::BROADCAST, mac(0x10), 60),
            hidden(ids[0]),
        )
        .unwrap();
        let s1 = fp.stats(hidden(ids[1]));
        assert_eq!((s1.rx_packets, s1.rx_bytes), (5, 500));
        let s0 = fp.stats(hidden(ids[0]));
        assert_eq!((s0.tx_packets, s0.tx_bytes, s0.rx_packets), (3, 600, 0));
        // Read in batches, the same counters; more devices than one batch holds are all there.
        for i in 0..2500 {
            fp.reset_stats(1_000_000 + i).unwrap();
        }
        let all = fp.all_stats().unwrap();
        assert_eq!(all[&hidden(ids[1])], s1);
        assert_eq!(all[&hidden(ids[0])], s0);
        assert_eq!(all[&lower], fp.stats(lower));
        assert!((0..2500).all(|i| all[&(1_000_000 + i)] == Stats::default()));
        for i in 0..2500 {
            fp.remove_stats(1_000_000 + i);
        }
        assert!(fp.take_events().is_empty(), "tracing is off");
        // Removing the vepa macvlan removes its entries (and its counters).
        let mut p2 = p.clone();
        p2.remove_device(ids[1]).unwrap();
        fp.apply(
            lower,
            &tables(&p2.snapshot()),
            &|id| Some(hidden(id).into()),
            &mut applied,
        )
        .unwrap();
        assert_eq!(fp.devs().len(), 1);
        assert_eq!(fp.macs().len(), 1);
        let rc = fp
            .test_run(PROG_LOWER, &frame(mac(0x11), mac(0x99), 100), lower)
            .unwrap();
        assert_eq!(rc, TC_ACT_OK, "its address is no longer the fast path's");
    });
}

/// A source-mode macvlan listening to 02:…:99: unicast from that source goes up whole (the
/// program passes it, the slow path's socket filter keeps it); unicast from elsewhere stays on
/// the fast path and the filter drops it; group frames and runts are always kept.
#[test]
fn source_mode_and_the_slow_path_filter() {
    require_root!();
    let ns = Ns::new();
    let (lower, hid) = devices(&ns, 2);
    ns.run(|| {
        let mut fp = FastPath::load(true).unwrap();
        let hidden = |id: DevId| hid[id.index()];
        let (mut p, ids) = port(lower, &[(Mode::Bridge, true), (Mode::Source, true)]);
        p.change(
            ids[1],
            &MacvlanAttrs {
                macaddr: Some(MacAddrOp::Add(mac(0x99))),
                ..Default::default()
            },
        )
        .unwrap();
        let t = tables(&p.snapshot());
        let mut applied = Applied::default();
        fp.apply(lower, &t, &|id| Some(hidden(id).into()), &mut applied)
            .unwrap();
        let listed = frame(mac(0x10), mac(0x99), 80);
        assert_eq!(t.receive(&listed), FpVerdict::SlowPath);
        check(
            &mut fp,
            PROG_LOWER,
            &listed,
            lower,
            FpVerdict::SlowPath,
            lower,
            &hidden,
        );
        let other = frame(mac(0x10), mac(0x98), 80);
        assert_eq!(t.receive(&other), FpVerdict::Deliver(ids[0]));
        check(
            &mut fp,
            PROG_LOWER,
            &other,
            lower,
            t.receive(&other),
            lower,
            &hidden,
        );
        // (BPF_PROG_TEST_RUN hands a socket filter the frame after its Ethernet header, so
        // "kept" is the length past it; a packet socket's filter sees it from the header on.)
        let kept = |fp: &mut FastPath, f: &[u8]| fp.test_run(PROG_SLOW_FILTER, f, lower).unwrap();
        assert_eq!(kept(&mut fp, &listed), 80 - 14);
        assert_eq!(kept(&mut fp, &other), 0);
        assert_eq!(
            kept(&mut fp, &frame(MacAddr::BROADCAST, mac(0x98), 60)),
            60 - 14
        );
        assert_eq!(kept(&mut fp, &frame(mac(0x77), mac(0x98), 60)), 0);
        // The listed source removed: back on the fast path.
        p.change(
            ids[1],
            &MacvlanAttrs {
                macaddr: Some(MacAddrOp::Flush),
                ..Default::default()
            },
        )
        .unwrap();
        fp.apply(
            lower,
            &tables(&p.snapshot()),
            &|id| Some(hidden(id).into()),
            &mut applied,
        )
        .unwrap();
        assert_eq!(kept(&mut fp, &listed), 0);
        check(
            &mut fp,
            PROG_LOWER,
            &listed,
            lower,
            FpVerdict::Deliver(ids[0]),
            lower,
            &hidden,
        );
    });
}

/// The experiment `load_with(_, bridge_direct = true)`: bridge-to-bridge unicast goes straight
/// into the destination macvlan (and is counted there); everything else is as before.
#[test]
fn bridge_direct_delivers_bridge_local_unicast_to_the_destination() {
    require_root!();
    let ns = Ns::new();
    let (lower, hid) = devices(&ns, 3);
    ns.run(|| {
        let mut fp = FastPath::load_with(true, true).unwrap();
        let hidden = |id: DevId| hid[id.index()];
        let (p, ids) = port(
            lower,
            &[
                (Mode::Bridge, true),
                (Mode::Bridge, true),
                (Mode::Vepa, true),
            ],
        );
        let t = tables(&p.snapshot());
        let mut applied = Applied::default();
        fp.apply(lower, &t, &|id| Some(hidden(id).into()), &mut applied)
            .unwrap();
        let f = frame(mac(0x11), mac(0x10), 60);
        assert_eq!(t.transmit(ids[0], &f, false), FpVerdict::Local);
        check(
            &mut fp,
            PROG_XMIT,
            &f,
            hidden(ids[0]),
            FpVerdict::Deliver(ids[1]),
            lower,
            &hidden,
        );
        assert_eq!(fp.stats(hidden(ids[1])).rx_packets, 1);
        // To a vepa sibling: still the wire.
        let f = frame(mac(0x12), mac(0x10), 60);
        check(
            &mut fp,
            PROG_XMIT,
            &f,
            hidden(ids[0]),
            FpVerdict::Wire,
            lower,
            &hidden,
        );
    });
}
