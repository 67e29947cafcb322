//! The eBPF fast path's tables, computed from a [`PortSnapshot`] so that the macvlan rules
//! stay in this crate: the programs (`bpf/umacvlan_tc.c`) only look these tables up.
//!
//! The fast path takes unicast only; group destinations stay on the userspace slow path
//! (broadcast queue, filters, `bclim`). [`FastPathTables::receive`] and
//! [`FastPathTables::transmit`] state what the programs do with the tables, frame by frame;
//! the tests check them against [`PortSnapshot::receive`] / [`PortSnapshot::transmit`], and the
//! programs are checked against these in the kernel (`umacvlan-io`'s `bpf_programs` test).

use super::port::DevId;
use super::snapshot::PortSnapshot;
use super::types::Mode;
use crate::wire::{MacAddr, ETH_HLEN, VLAN_HLEN};

/// One macvlan as the programs see it (`struct umv_dev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpDev {
    /// The engine's id.
    pub id: DevId,
    /// Mode.
    pub mode: Mode,
    /// Up.
    pub up: bool,
    /// `hostaccess on`.
    pub hostaccess: bool,
}

/// The tables of one port (`umv_ports`, `umv_macs`, `umv_devs` restricted to one lower).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastPathTables {
    /// The lower's receive path accepts frames.
    pub lower_up: bool,
    /// Longest frame the lower's receive path accepts on the local bridge path.
    pub max_frame: u32,
    /// The passthru macvlan (every unicast goes to it).
    pub passthru: Option<FpDev>,
    /// `macvlan_hash_lookup`: the up macvlan owning each address.
    pub macs: Vec<(MacAddr, FpDev)>,
    /// Every macvlan (senders).
    pub devs: Vec<FpDev>,
    /// Source addresses a source-mode macvlan listens to: unicast from them is left to the
    /// slow path whole (its copies and its delivery), as on the TAP path.
    pub sources: Vec<MacAddr>,
    /// The lower's MAC (its own host's address, for `hostaccess` macvlans).
    pub lower_mac: MacAddr,
    /// Some macvlan has `hostaccess on`: frames the host path injects into the lower's
    /// receive path are not the slow path's.
    pub host_any: bool,
}

/// What a program does with a unicast frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpVerdict {
    /// Left alone: the lower's stack (and the slow path's socket filter) decide.
    Pass,
    /// Into this macvlan.
    Deliver(DevId),
    /// Dropped (a down passthru target, a down sender, a refused local frame).
    Drop,
    /// To the lower's transmit.
    Wire,
    /// Through the lower's receive path (bridge to bridge).
    Local,
    /// The slow path handles it: a group destination, or unicast from a source-mode
    /// macvlan's listed source (which the lower's stack then sees too).
    SlowPath,
    /// Into the lower's receive path, for its own host only (`hostaccess`).
    ToHost,
}

fn fp(d: &super::snapshot::DevSnap) -> FpDev {
    FpDev {
        id: d.id,
        mode: d.mode,
        up: d.up,
        hostaccess: d.hostaccess,
    }
}

/// The tables for `snap`.
pub fn tables(snap: &PortSnapshot) -> FastPathTables {
    let mut macs: Vec<(MacAddr, FpDev)> = snap
        .devices()
        .filter_map(|d| snap.lookup(d.mac))
        .map(|d| (d.mac, fp(d)))
        .collect();
    macs.sort_by_key(|(m, _)| m.to_u64());
    macs.dedup_by_key(|(m, _)| *m);
    FastPathTables {
        lower_up: snap.lower_up(),
        max_frame: snap.lower_mtu() + (ETH_HLEN + VLAN_HLEN) as u32,
        passthru: snap.passthru().and_then(|id| snap.device(id)).map(fp),
        macs,
        devs: snap.devices().map(fp).collect(),
        sources: snap.source_macs().to_vec(),
        lower_mac: snap.lower_mac(),
        host_any: snap.hostaccess(),
    }
}

impl FastPathTables {
    fn lookup(&self, mac: MacAddr) -> Option<&FpDev> {
        self.macs.iter().find(|(m, _)| *m == mac).map(|(_, d)| d)
    }

    /// `umv_lower_ingress` on a frame of at least an Ethernet header.
    pub fn receive(&self, frame: &[u8]) -> FpVerdict {
        let dst = MacAddr::from_slice(&frame[..6]);
        if dst.is_multicast() {
            return FpVerdict::Pass;
        }
        if self.sources.contains(&MacAddr::from_slice(&frame[6..12])) {
            return FpVerdict::SlowPath;
        }
        let t = match self.passthru {
            Some(p) => Some(p),
            None => self.lookup(dst).copied(),
        };
        match t {
            None => FpVerdict::Pass,
            Some(t) if t.mode == Mode::Source => FpVerdict::Pass,
            Some(t) if !t.up => FpVerdict::Drop,
            // The host's frame back from the wire: the macvlan had it from the host.
            Some(t) if t.hostaccess && frame[6..12] == self.lower_mac.0 => FpVerdict::Drop,
            Some(t) => FpVerdict::Deliver(t.id),
        }
    }

    /// `umv_macvlan_xmit` on a frame macvlan `from` sent (`gso`: a GSO super-frame).
    pub fn transmit(&self, from: DevId, frame: &[u8], gso: bool) -> FpVerdict {
        let Some(d) = self.devs.iter().find(|d| d.id == from).filter(|d| d.up) else {
            return FpVerdict::Drop;
        };
        let dst = MacAddr::from_slice(&frame[..6]);
        if dst.is_multicast() {
            return FpVerdict::SlowPath;
        }
        if d.hostaccess && dst == self.lower_mac {
            return FpVerdict::ToHost;
        }
        if d.mode == Mode::Bridge && self.lookup(dst).is_some_and(|t| t.mode == Mode::Bridge) {
            if !self.lower_up || (!gso && frame.len() as u32 > self.max_frame) {
                return FpVerdict::Drop;
            }
            return FpVerdict::Local;
        }
        FpVerdict::Wire
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        LowerState, MacvlanAttrs, NewDevice, Port, RxOutcome, RxReason, TxOutcome, TxReason,
    };

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    fn port(modes: &[(Mode, bool)]) -> (Port, Vec<DevId>) {
        let lower = LowerState::ethernet(2, "eth0", mac(1), 1500);
        let mut p = Port::create(lower).unwrap();
        let mut ids = Vec::new();
        for (i, (m, up)) in modes.iter().enumerate() {
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

    fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    /// The engine's receive decision for a unicast frame, in fast-path terms.
    fn engine_rx(snap: &PortSnapshot, f: &[u8]) -> FpVerdict {
        let mut out = RxOutcome::default();
        snap.receive(f, &mut out);
        match out.reason.unwrap() {
            RxReason::Unicast => FpVerdict::Deliver(out.deliveries[0].dev),
            RxReason::TargetDown | RxReason::HostEcho => FpVerdict::Drop,
            RxReason::NotOurs | RxReason::SourceModeTarget => FpVerdict::Pass,
            r => panic!("unexpected {r:?} for unicast"),
        }
    }

    fn engine_tx(snap: &PortSnapshot, from: DevId, f: &[u8]) -> FpVerdict {
        let mut out = TxOutcome::default();
        snap.transmit(from, f, &mut out);
        match out.reason.unwrap() {
            TxReason::Wire => FpVerdict::Wire,
            TxReason::Local => FpVerdict::Local,
            TxReason::LocalRefused | TxReason::SenderDown => FpVerdict::Drop,
            TxReason::FloodAndWire => FpVerdict::SlowPath,
            TxReason::ToHost => FpVerdict::ToHost,
            r => panic!("unexpected {r:?}"),
        }
    }

    /// Every mode mix (bridge, vepa, private; up and down), every destination (each macvlan,
    /// the lower, a stranger, broadcast), from the wire and from each macvlan: the tables say
    /// what the engine says for unicast, and leave group destinations to the slow path.
    #[test]
    fn tables_decide_as_the_engine_for_unicast() {
        let modes = [Mode::Bridge, Mode::Vepa, Mode::Private];
        let mut cases = 0;
        for a in modes {
            for b in modes {
                for (up_a, up_b) in [(true, true), (true, false), (false, true)] {
                    let (p, ids) = port(&[(a, up_a), (b, up_b), (Mode::Bridge, true)]);
                    let snap = p.snapshot();
                    let t = tables(&snap);
                    let dsts = [mac(0x10), mac(0x11), mac(0x12), mac(1), mac(0x77)];
                    for dst in dsts {
                        for len in [60, 1514, 1520] {
                            let f = frame(dst, mac(0x99), len);
                            assert_eq!(t.receive(&f), engine_rx(&snap, &f), "rx {dst} {len}");
                            for from in &ids {
                                let f = frame(dst, mac(0x10 + from.index() as u8), len);
                                assert_eq!(
                                    t.transmit(*from, &f, false),
                                    engine_tx(&snap, *from, &f),
                                    "tx {a:?}/{b:?} {from:?} → {dst} {len}"
                                );
                                cases += 1;
                            }
                        }
                    }
                    let bc = frame(MacAddr::BROADCAST, mac(0x99), 60);
                    assert_eq!(t.receive(&bc), FpVerdict::Pass);
                    let bc = frame(MacAddr::BROADCAST, mac(0x10), 60);
                    if up_a {
                        assert_eq!(t.transmit(ids[0], &bc, false), FpVerdict::SlowPath);
                    }
                }
            }
        }
        assert!(cases > 1000);
    }

    /// `hostaccess on` for one macvlan of each mode mix: its unicast to the lower's MAC goes
    /// to the host, the host's unicast back from the wire is dropped, as the engine decides;
    /// everything else as without it.
    #[test]
    fn tables_decide_hostaccess_as_the_engine() {
        let modes = [Mode::Bridge, Mode::Vepa, Mode::Private];
        let mut to_host = 0;
        let mut echoes = 0;
        for a in modes {
            for b in modes {
                for host in [0usize, 1] {
                    let (mut p, ids) = port(&[(a, true), (b, true), (Mode::Bridge, true)]);
                    p.change(
                        ids[host],
                        &MacvlanAttrs {
                            hostaccess: Some(true),
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    let snap = p.snapshot();
                    let t = tables(&snap);
                    assert!(t.host_any);
                    let dsts = [mac(0x10), mac(0x11), mac(0x12), mac(1), mac(0x77)];
                    for dst in dsts {
                        for src in [mac(1), mac(0x99)] {
                            let f = frame(dst, src, 60);
                            let want = engine_rx(&snap, &f);
                            echoes += usize::from(src == mac(1) && want == FpVerdict::Drop);
                            assert_eq!(t.receive(&f), want, "rx {src} → {dst}");
                        }
                        for from in &ids {
                            let f = frame(dst, mac(0x10 + from.index() as u8), 60);
                            let want = engine_tx(&snap, *from, &f);
                            to_host += usize::from(want == FpVerdict::ToHost);
                            assert_eq!(t.transmit(*from, &f, false), want, "tx {from:?} → {dst}");
                        }
                    }
                }
            }
        }
        // Each case ran: one hostaccess macvlan per port, 18 ports.
        assert_eq!((to_host, echoes), (18, 18));
    }

    #[test]
    fn lower_down_refuses_local_bridge_frames_as_the_engine() {
        let (mut p, ids) = port(&[(Mode::Bridge, true), (Mode::Bridge, true)]);
        p.lower_link_changed(false, false, false);
        let snap = p.snapshot();
        let t = tables(&snap);
        let f = frame(mac(0x11), mac(0x10), 60);
        assert_eq!(t.transmit(ids[0], &f, false), FpVerdict::Drop);
        assert_eq!(engine_tx(&snap, ids[0], &f), FpVerdict::Drop);
    }

    #[test]
    fn passthru_takes_every_unicast_and_a_down_one_drops() {
        for up in [true, false] {
            let (p, ids) = port(&[(Mode::Passthru, up)]);
            let snap = p.snapshot();
            let t = tables(&snap);
            for dst in [mac(0x10), mac(0x55), mac(1)] {
                let f = frame(dst, mac(0x99), 60);
                let want = if up {
                    FpVerdict::Deliver(ids[0])
                } else {
                    FpVerdict::Drop
                };
                assert_eq!(t.receive(&f), want);
                assert_eq!(engine_rx(&snap, &f), want);
            }
        }
    }

    #[test]
    fn unicast_from_a_listed_source_is_left_to_the_slow_path() {
        let (mut p, ids) = port(&[(Mode::Bridge, true), (Mode::Source, true)]);
        p.change(
            ids[1],
            &MacvlanAttrs {
                macaddr: Some(crate::engine::MacAddrOp::Add(mac(0x99))),
                ..Default::default()
            },
        )
        .unwrap();
        let snap = p.snapshot();
        let t = tables(&snap);
        assert_eq!(t.sources, vec![mac(0x99)]);
        // The engine copies it to the source-mode macvlan as well as delivering it.
        let f = frame(mac(0x10), mac(0x99), 60);
        let mut out = RxOutcome::default();
        snap.receive(&f, &mut out);
        assert_eq!(out.deliveries.len(), 2);
        assert_eq!(t.receive(&f), FpVerdict::SlowPath);
        // Other sources stay on the fast path.
        let f = frame(mac(0x10), mac(0x98), 60);
        assert_eq!(t.receive(&f), FpVerdict::Deliver(ids[0]));
        assert_eq!(engine_rx(&snap, &f), FpVerdict::Deliver(ids[0]));
    }
}
