//! `engine_decisions`: arbitrary port configurations and arbitrary frames through the engine.
//!
//! The input is a program: each step is either a control operation on a [`Port`] (create
//! devices with modes, flags, MACs and source lists from a small pool; delete, open, stop,
//! change, `macaddr`, `mtu`, rx flags, multicast joins, `bridge fdb`, `bclim`, `bcqueuelen`, and
//! the lower's own events) or a frame (built from a template or taken raw) sent through
//! [`PortSnapshot::receive`], [`PortSnapshot::transmit`], the [`Defragmenter`] then `receive`,
//! or the broadcast queue and [`PortSnapshot::flood_from_wire`]. The snapshot is rebuilt after
//! every successful control operation, as the daemon does.
//!
//! Input format (bytes read as needed; zeros once the input runs out): one configuration byte
//! (lower MTU in bits 0–1, reassembly timeout, byte and datagram limits in bits 2–7), then up
//! to `MAX_STEPS` (64) steps, each an opcode byte whose bit 7 makes writes to TAPs fail and whose
//! low 7 bits select: 0–39 a control operation (`op % 20`, see `World::control_step`), 40–59
//! receive, 60–79 transmit (a device id byte first), 80–99 reassemble then receive, 100–109
//! process the broadcast queue, 110–119 advance the clock, 120–123 transmit then hairpin back,
//! 124–127 a frame the lower's own host sent (`hostaccess`).
//! Frames are built by `frame` (templates or raw bytes).
//!
//! Invariants checked (a violation panics):
//! - a rejected control operation leaves the `Port` equal to its copy from before;
//! - after every operation: up devices have distinct MACs; a passthru port has one device;
//! - every delivery targets an up device of the port, in a mode the path allows;
//! - a unicast frame reaches at most one device that is not in source mode, and that device
//!   owns the destination MAC (or is the passthru device);
//! - a `nodst`-consumed frame never reaches the lower stack, the broadcast queue or a device
//!   that is not in source mode;
//! - a malformed frame is dropped (no delivery, no lower stack) exactly when the frame view
//!   refuses it;
//! - a flood never delivers to its sender nor to a source-mode device; a frame on the broadcast
//!   queue is not also flooded inline;
//! - transmit from a device that is not in bridge mode never has local deliveries; a frame is
//!   either sent to the wire or looped locally, never both; a down or unknown sender sends
//!   nothing;
//! - `hostaccess`: only such a sender sends to the host, and its unicast for the lower's MAC
//!   only there; what the lower's host sends reaches only up `hostaccess` devices (unicast: the
//!   one owning the destination), and what comes back from the wire with the lower's source
//!   never reaches one again;
//! - reassembly: held bytes and datagrams stay within the limits; a completed datagram is a
//!   valid, unfragmented IPv4 packet whose total length and checksum match its bytes;
//! - per-device counters (as the data plane keeps them with [`DevCounters`]) summed over the
//!   devices equal the deliveries made: packets + errors = deliveries, bytes = bytes of the
//!   successful ones.

use crate::Input;
use umacvlan_core::engine::*;
use umacvlan_core::wire::{
    ethertype, ipv4_checksum, write_header, EthernetFrame, Ipv4Header, MacAddr, ETH_HLEN,
};

const LOWER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// Device ids the program refers to: a few more than it can usually create, for ENODEV.
const MAX_ID: u8 = 6;
/// Steps per input, to keep each execution short.
const MAX_STEPS: usize = 64;

/// A small pool of addresses, so that frames hit devices, source lists and groups often.
fn pool_mac(inp: &mut Input) -> MacAddr {
    match inp.u8() % 16 {
        0 => LOWER_MAC,
        n @ 1..=5 => MacAddr([0x02, 0, 0, 0, 0, 0x10 + n]),
        6 => MacAddr([0x02, 0, 0, 0, 0, 0x99]),
        7 => MacAddr([0x02, 0, 0, 0, 0, 0x98]),
        8 => MacAddr::BROADCAST,
        9 => MacAddr([0x01, 0, 0x5e, 0, 0, 0x01]),
        10 => MacAddr([0x33, 0x33, 0, 0, 0, 0x01]),
        11 => MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x01]),
        12 => MacAddr::ZERO,
        13 => MacAddr([0x01, 0, 0x5e, 0, 0, 0x02]),
        14 => MacAddr([0x03, 0, 0, 0, 0, 0x10]),
        _ => {
            let b = inp.bytes(6);
            let mut m = [0u8; 6];
            m[..b.len()].copy_from_slice(b);
            MacAddr(m)
        }
    }
}

fn opt<T>(inp: &mut Input, f: impl FnOnce(&mut Input) -> T) -> Option<T> {
    if inp.bool() {
        Some(f(inp))
    } else {
        None
    }
}

fn mtu(inp: &mut Input) -> u32 {
    match inp.u8() % 8 {
        0 => 1500,
        1 => 68,
        2 => 67,
        3 => 576,
        4 => 9000,
        5 => 65535,
        6 => 0,
        _ => 1280,
    }
}

fn mode_bits(inp: &mut Input) -> u32 {
    match inp.u8() % 8 {
        0 => 1,
        1 => 2,
        2 => 4,
        3 => 8,
        4 => 16,
        5 => 16,
        6 => 4,
        _ => [0, 3, 32, u32::MAX][inp.u8() as usize % 4],
    }
}

fn macaddr_op(inp: &mut Input) -> MacAddrOp {
    match inp.u8() % 4 {
        0 => MacAddrOp::Add(pool_mac(inp)),
        1 => MacAddrOp::Del(pool_mac(inp)),
        2 => MacAddrOp::Flush,
        _ => {
            let n = inp.u8() % 4;
            MacAddrOp::Set((0..n).map(|_| pool_mac(inp)).collect())
        }
    }
}

fn attrs(inp: &mut Input) -> MacvlanAttrs {
    let present = inp.u8();
    let mut a = MacvlanAttrs::default();
    if present & 1 != 0 {
        a.mode = Some(mode_bits(inp));
    }
    if present & 2 != 0 {
        a.flags = Some(match inp.u8() % 5 {
            0 => 0,
            1 => FLAG_NOPROMISC,
            2 => FLAG_NODST,
            3 => FLAG_NOPROMISC | FLAG_NODST,
            _ => 4,
        });
    }
    if present & 4 != 0 {
        a.macaddr = Some(macaddr_op(inp));
    }
    if present & 8 != 0 {
        a.bcqueuelen = Some([0, 1, 2, DEFAULT_BC_QUEUE_LEN, u32::MAX][inp.u8() as usize % 5]);
    }
    if present & 16 != 0 {
        a.bclim = Some([-1, 0, 1, 2, i32::MIN, i32::MAX][inp.u8() as usize % 6]);
    }
    if present & 32 != 0 && present & 64 != 0 {
        a.macaddr_count = Some(inp.u8() as u32);
    }
    if present & 128 != 0 {
        a.hostaccess = Some(inp.bool());
    }
    a
}

fn dev_id(inp: &mut Input) -> DevId {
    DevId((inp.u8() % MAX_ID) as u32)
}

/// Runs a control operation; a refusal must leave the port exactly as it was.
fn control<T>(
    port: &mut Port,
    what: &str,
    op: impl FnOnce(&mut Port) -> ControlResult<T>,
) -> Option<T> {
    let before = port.clone();
    match op(port) {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(
                *port == before,
                "{what} was refused ({e:?}) but changed the port:\nbefore {before:#?}\nafter {port:#?}"
            );
            None
        }
    }
}

/// Structural invariants of a port after any operation.
fn check_port(port: &Port) {
    let up: Vec<&Device> = port.devices().iter().filter(|d| d.up).collect();
    for (i, a) in up.iter().enumerate() {
        for b in &up[i + 1..] {
            assert!(
                a.mac != b.mac,
                "two up devices share {}: {:?} and {:?}",
                a.mac,
                a.id,
                b.id
            );
        }
    }
    if port.is_passthru() {
        assert!(
            port.devices().len() <= 1,
            "passthru port with several devices"
        );
    }
    for d in port.devices() {
        if d.mode != Mode::Source {
            assert_eq!(
                d.macaddr_count(),
                0,
                "{:?} has sources out of source mode",
                d.id
            );
        }
        assert!(d.flags & !FLAGS_VALID == 0, "invalid flags kept");
    }
}

/// The harness's model of one data-plane worker.
struct World {
    port: Port,
    snap: PortSnapshot,
    defrag: Defragmenter,
    limits: DefragLimits,
    bcq: BcQueue<(Vec<u8>, Option<BcSource>)>,
    counters: Vec<DevCounters>,
    port_counters: PortCounters,
    /// Deliveries made, and the rx bytes of those that succeeded.
    deliveries: u64,
    delivered_bytes: u64,
    now_ns: u64,
    rx: RxOutcome,
    tx: TxOutcome,
    flood: Vec<Delivery>,
    names: u32,
    /// Where the last fragment built for each datagram id ended (see [`frame`]).
    next_off: [usize; 4],
}

fn lower_state(mtu: u32) -> LowerState {
    LowerState::ethernet(2, "eth0", LOWER_MAC, mtu)
}

impl World {
    fn new(inp: &mut Input) -> World {
        let cfg = inp.u8();
        let lower_mtu = [1500, 9000, 576, 68][cfg as usize % 4];
        let port = Port::create(lower_state(lower_mtu)).expect("an Ethernet lower");
        let limits = DefragLimits {
            timeout_ns: [1_000, 1_000_000, 30_000_000_000, 0][(cfg >> 2) as usize % 4],
            max_bytes: [4096, 1 << 20, 300, 0][(cfg >> 4) as usize % 4],
            max_datagrams: [4, 1, 1024, 0][(cfg >> 6) as usize % 4],
        };
        World {
            snap: port.snapshot(),
            port,
            defrag: Defragmenter::new(limits),
            limits,
            bcq: BcQueue::default(),
            counters: Vec::new(),
            port_counters: PortCounters::default(),
            deliveries: 0,
            delivered_bytes: 0,
            now_ns: 0,
            rx: RxOutcome::default(),
            tx: TxOutcome::default(),
            flood: Vec::new(),
            names: 0,
            next_off: [0; 4],
        }
    }

    fn changed(&mut self) {
        check_port(&self.port);
        self.snap = self.port.snapshot();
        // The snapshot's MAC table agrees with the port: every up device is found by its MAC.
        for d in self.port.devices() {
            let snap = self
                .snap
                .device(d.id)
                .expect("every device is in the snapshot");
            assert_eq!((snap.mac, snap.mode, snap.up), (d.mac, d.mode, d.up));
            if d.up {
                assert_eq!(self.snap.lookup(d.mac).map(|s| s.id), Some(d.id));
            } else if !self.port.devices().iter().any(|o| o.up && o.mac == d.mac) {
                assert!(self.snap.lookup(d.mac).is_none(), "down {:?} found", d.id);
            }
        }
    }

    fn control_step(&mut self, inp: &mut Input, op: u8) {
        let port = &mut self.port;
        match op {
            0 | 1 => {
                self.names += 1;
                let req = NewDevice {
                    name: format!("mv{}", self.names),
                    mac: opt(inp, pool_mac),
                    mtu: opt(inp, mtu),
                    attrs: attrs(inp),
                };
                let random = u64::from(inp.u8()) << 8 | 0x0200_0000_0000;
                let up = inp.bool();
                // The daemon adds on a copy and keeps it only when everything succeeded.
                let mut copy = port.clone();
                if let Some(id) = control(&mut copy, "add_device", |p| p.add_device(&req, random)) {
                    let d = copy.device(id).expect("just added");
                    assert_eq!(d.name, req.name);
                    assert!(!d.up);
                    if !up || control(&mut copy, "open", |p| p.open(id)).is_some() {
                        *port = copy;
                    }
                }
            }
            2 => {
                let id = dev_id(inp);
                if let Some(r) = control(port, "remove_device", |p| p.remove_device(id)) {
                    assert_eq!(r.device.id, id);
                    assert_eq!(r.port_empty, port.is_empty());
                    if r.port_empty {
                        // The daemon destroys the port; the next add creates a new one.
                        let mut lower = port.lower().clone();
                        if let Some(mac) = r.restore_lower_mac {
                            lower.mac = mac;
                        }
                        *port = Port::create(lower).expect("same lower");
                    }
                }
            }
            3 | 4 => {
                let id = dev_id(inp);
                if control(port, "open", |p| p.open(id)).is_some() {
                    assert!(port.device(id).is_some_and(|d| d.up));
                }
            }
            5 => {
                let id = dev_id(inp);
                if control(port, "stop", |p| p.stop(id)).is_some() {
                    assert!(port.device(id).is_some_and(|d| !d.up));
                }
            }
            6 | 7 => {
                let id = dev_id(inp);
                let a = attrs(inp);
                control(port, "change", |p| p.change(id, &a));
            }
            8 => {
                let id = dev_id(inp);
                let mac = pool_mac(inp);
                match control(port, "set_mac", |p| p.set_mac(id, mac)) {
                    Some(MacChange::LowerMustChange(m)) => {
                        assert!(port.is_passthru());
                        // The daemon changes the lower, then reports it.
                        port.lower_mac_changed(m, LowerMacCause::Passthru);
                        assert!(port.device(id).is_some_and(|d| d.mac == m));
                    }
                    Some(_) => assert!(port.device(id).is_some_and(|d| d.mac == mac)),
                    None => {}
                }
            }
            9 => {
                let id = dev_id(inp);
                let m = mtu(inp);
                control(port, "set_mtu", |p| p.set_mtu(id, m));
            }
            10 => {
                let id = dev_id(inp);
                let (promisc, allmulti) = (inp.bool(), inp.bool());
                control(port, "set_rx_flags", |p| {
                    p.set_rx_flags(id, promisc, allmulti)
                });
            }
            11 | 12 => {
                let id = dev_id(inp);
                let n = inp.u8() % 4;
                let groups: Vec<MacAddr> = (0..n).map(|_| pool_mac(inp)).collect();
                control(port, "set_mc_list", |p| p.set_mc_list(id, groups));
            }
            13 => {
                let id = dev_id(inp);
                let mac = pool_mac(inp);
                let replace = inp.u8().is_multiple_of(8);
                control(port, "fdb_add", |p| p.fdb_add(id, mac, replace));
            }
            14 => {
                let id = dev_id(inp);
                let mac = pool_mac(inp);
                control(port, "fdb_del", |p| p.fdb_del(id, mac));
            }
            15 => {
                let b = inp.u8();
                port.lower_link_changed(b & 1 == 0, b & 2 == 0, b & 4 != 0);
            }
            16 => {
                let m = mtu(inp);
                let changed = port.lower_mtu_changed(m);
                for id in changed {
                    assert!(port.device(id).is_some_and(|d| d.mtu == m));
                }
            }
            17 => {
                let mac = pool_mac(inp);
                let cause = if inp.bool() {
                    LowerMacCause::External
                } else {
                    LowerMacCause::Passthru
                };
                port.lower_mac_changed(mac, cause);
            }
            18 => port.lower_rx_flags_changed(inp.bool(), inp.bool()),
            _ => {
                let n = inp.u8() % 4;
                let groups: Vec<MacAddr> = (0..n).map(|_| pool_mac(inp)).collect();
                port.lower_mc_list_changed(groups);
            }
        }
        self.changed();
    }

    /// Counts one delivery the way the data plane does, after checking its target.
    fn count(&mut self, d: &Delivery, written: bool) {
        let dev = self
            .port
            .device(d.dev)
            .unwrap_or_else(|| panic!("delivery to {:?}, not a device of the port", d.dev));
        assert!(dev.up, "delivery to {:?}, which is down", d.dev);
        let i = d.dev.index();
        if self.counters.len() <= i {
            self.counters.resize(i + 1, DevCounters::default());
        }
        self.counters[i].count_delivery(d, written);
        self.deliveries += 1;
        if !d.refused && (written || !d.checked) {
            self.delivered_bytes += u64::from(d.bytes);
        }
    }

    fn mode_of(&self, id: DevId) -> Mode {
        self.port.device(id).expect("checked by count").mode
    }

    /// A frame from the wire, through the engine's receive decision.
    fn receive(&mut self, frame: &[u8], written: bool) {
        self.snap.receive(frame, &mut self.rx);
        let out = std::mem::take(&mut self.rx);
        // The host's frames are those from the lower's address now (it may have changed).
        let lower_mac = self.snap.lower_mac();
        let from_host = EthernetFrame::new_checked(frame).is_ok_and(|f| f.src() == lower_mac);
        for d in &out.deliveries {
            self.count(d, written);
            if from_host {
                assert!(
                    !self.port.device(d.dev).is_some_and(|x| x.hostaccess),
                    "the host's own frame back to hostaccess {:?}",
                    d.dev
                );
            }
        }
        let reason = out.reason.expect("receive always gives a reason");
        let parsed = EthernetFrame::new_checked(frame);
        assert_eq!(
            reason == RxReason::Malformed,
            parsed.is_err(),
            "malformed iff the view refuses the frame"
        );
        let non_source: Vec<DevId> = out
            .deliveries
            .iter()
            .map(|d| d.dev)
            .filter(|id| self.mode_of(*id) != Mode::Source)
            .collect();
        match reason {
            RxReason::Malformed => {
                assert!(out.deliveries.is_empty() && !out.lower_stack && out.enqueue.is_none());
                self.port_counters.malformed += 1;
            }
            RxReason::NodstConsumed => {
                assert!(
                    !out.lower_stack,
                    "a nodst-consumed frame reached the lower stack"
                );
                assert!(out.enqueue.is_none(), "a nodst-consumed frame was queued");
                assert!(
                    non_source.is_empty(),
                    "a nodst-consumed frame reached {non_source:?}"
                );
            }
            _ => {}
        }
        if let Ok(f) = parsed {
            let dst = f.dst();
            if !dst.is_multicast() {
                assert!(out.enqueue.is_none());
                assert!(
                    non_source.len() <= 1,
                    "unicast frame to {dst} reached {non_source:?}"
                );
                if let Some(id) = non_source.first() {
                    let d = self.port.device(*id).expect("checked");
                    assert!(
                        d.mac == dst || self.port.is_passthru(),
                        "unicast to {dst} delivered to {id:?} ({})",
                        d.mac
                    );
                    assert_eq!(reason, RxReason::Unicast);
                }
            } else {
                match reason {
                    RxReason::Queued => {
                        assert!(out.enqueue.is_some() && out.lower_stack);
                        // Only what forward_source copied; the flood comes from the queue.
                        assert!(non_source.is_empty(), "queued and flooded: {non_source:?}");
                    }
                    RxReason::Reflected => {
                        assert!(!out.lower_stack && out.enqueue.is_none());
                        let last = out.deliveries.last().expect("the reflected copy");
                        assert!(matches!(
                            self.mode_of(last.dev),
                            Mode::Private | Mode::Passthru | Mode::Source
                        ));
                    }
                    RxReason::HostEcho => {
                        // A hostaccess macvlan sharing the lower's address: its reflection
                        // and the host's echo look alike; consumed, nobody gets it.
                        assert!(!out.lower_stack && out.enqueue.is_none());
                        assert!(non_source.is_empty(), "host echo delivered: {non_source:?}");
                        let s = self.snap.lookup(f.src());
                        assert!(
                            f.src() == lower_mac
                                && s.is_some_and(|s| s.hostaccess
                                    && matches!(
                                        s.mode,
                                        Mode::Private | Mode::Passthru | Mode::Source
                                    )),
                            "multicast host echo from {} (lower {lower_mac})",
                            f.src()
                        );
                    }
                    RxReason::Flooded => {
                        assert!(out.lower_stack && out.enqueue.is_none());
                        let sender = self.snap.lookup(f.src()).map(|s| (s.id, s.mode));
                        let mask = flood_mask(sender.map(|s| s.1));
                        for id in &non_source {
                            assert!(sender.map(|s| s.0) != Some(*id), "flood back to {id:?}");
                            let m = self.mode_of(*id);
                            assert!(mask.contains(&m), "{m:?} device flooded from {sender:?}");
                        }
                    }
                    RxReason::Filtered => {
                        assert!(out.lower_stack && non_source.is_empty());
                    }
                    RxReason::NodstConsumed => {}
                    r => panic!("multicast frame ended as {r:?}"),
                }
            }
        }
        if let Some(src) = out.enqueue {
            let cap = self.snap.bc_queue_len();
            if self.bcq.push((frame.to_vec(), src), cap).is_err() {
                assert!(self.bcq.len() >= cap as usize);
                self.port_counters.lower_rx_dropped += 1;
            }
        }
        self.rx = out;
    }

    /// `macvlan_process_broadcast` with the current snapshot.
    fn process_bc_queue(&mut self, written: bool) {
        for (frame, src) in self.bcq.take_all() {
            let mut out = std::mem::take(&mut self.flood);
            out.clear();
            self.snap.flood_from_wire(&frame, src, &mut out);
            let mask = flood_mask(src.map(|s| s.mode));
            for d in &out {
                self.count(d, written);
                assert!(Some(d.dev) != src.map(|s| s.id), "flood back to its sender");
                let m = self.mode_of(d.dev);
                assert!(mask.contains(&m), "{m:?} device flooded from {src:?}");
                assert!(d.multicast && d.checked && !d.refused);
                // The lower's address when the queue is processed (it may have changed since).
                let lower_mac = self.snap.lower_mac();
                let back = EthernetFrame::new_checked(&frame).is_ok_and(|f| f.src() == lower_mac);
                assert!(
                    !(back && self.port.device(d.dev).is_some_and(|x| x.hostaccess)),
                    "the host's own frame flooded back to hostaccess {:?}",
                    d.dev
                );
            }
            self.flood = out;
        }
    }

    /// A frame the lower's own host sent (`hostaccess`).
    fn from_host(&mut self, frame: &[u8], written: bool) {
        self.snap.from_host(frame, &mut self.rx);
        let out = std::mem::take(&mut self.rx);
        for d in &out.deliveries {
            self.count(d, written);
            let dev = self.port.device(d.dev).expect("a device of the port");
            assert!(dev.up && dev.hostaccess, "host frame to {:?}", d.dev);
        }
        assert!(!out.lower_stack && out.enqueue.is_none());
        if let Ok(f) = EthernetFrame::new_checked(frame) {
            if f.src() != self.snap.lower_mac() {
                assert!(out.deliveries.is_empty(), "not the host's, delivered");
            }
            if !f.dst().is_multicast() {
                assert!(out.deliveries.len() <= 1);
                for d in &out.deliveries {
                    assert_eq!(self.port.device(d.dev).map(|x| x.mac), Some(f.dst()));
                }
            }
        }
        self.rx = out;
    }

    /// A frame a macvlan sent, through the engine's transmit decision.
    fn transmit(&mut self, from: DevId, frame: &[u8], written: bool) {
        self.snap.transmit(from, frame, &mut self.tx);
        let out = std::mem::take(&mut self.tx);
        for d in &out.deliveries {
            self.count(d, written);
        }
        let reason = out.reason.expect("transmit always gives a reason");
        let sender = self.port.device(from).filter(|d| d.up).cloned();
        let Some(sender) = sender else {
            assert_eq!(reason, TxReason::SenderDown);
            assert!(out.deliveries.is_empty() && !out.to_wire && out.tx_bytes == 0);
            self.tx = out;
            return;
        };
        if sender.mode != Mode::Bridge {
            assert!(
                out.deliveries.is_empty(),
                "{:?} sender had local deliveries",
                sender.mode
            );
        }
        assert!(
            !(out.to_wire && reason == TxReason::Local),
            "sent to the wire and looped"
        );
        assert!(
            !out.to_host || sender.hostaccess,
            "{from:?} without hostaccess sent to the host"
        );
        match reason {
            TxReason::Malformed => {
                assert!(EthernetFrame::new_checked(frame).is_err());
                assert!(out.deliveries.is_empty() && !out.to_wire && out.tx_bytes == 0);
                self.port_counters.malformed += 1;
            }
            TxReason::SenderDown => panic!("an up sender reported down"),
            TxReason::ToHost => {
                assert!(out.deliveries.is_empty() && !out.to_wire && out.to_host);
                let dst = EthernetFrame::new_lenient(frame).map(|f| f.dst());
                let lower_mac = self.snap.lower_mac();
                assert_eq!(dst.ok(), Some(lower_mac), "to the host, not for its MAC");
            }
            TxReason::Wire => assert!(out.to_wire && out.deliveries.is_empty()),
            TxReason::FloodAndWire => {
                assert!(out.to_wire);
                for d in &out.deliveries {
                    assert!(d.dev != from, "bridge flood back to its sender");
                    assert_eq!(self.mode_of(d.dev), Mode::Bridge);
                }
            }
            TxReason::Local => {
                let non_source = out
                    .deliveries
                    .iter()
                    .filter(|d| self.mode_of(d.dev) != Mode::Source)
                    .count();
                assert!(non_source <= 1, "local unicast to several devices");
            }
            TxReason::LocalRefused => {
                assert!(out.deliveries.is_empty() && !out.to_wire);
                // The lower's receive path counts a refusal in its rx_dropped (lower down, frame
                // too big); a frame whose VLAN tag is cut short passes those checks and is then
                // freed silently, uncounted.
                let cut_tag = EthernetFrame::new_lenient(frame).is_ok_and(|f| f.truncated_vlan());
                assert!(out.lower_rx_dropped || cut_tag, "an uncounted refusal");
                if out.lower_rx_dropped {
                    self.port_counters.lower_rx_dropped += 1;
                }
            }
        }
        if out.tx_bytes > 0 {
            let i = from.index();
            if self.counters.len() <= i {
                self.counters.resize(i + 1, DevCounters::default());
            }
            self.counters[i].count_tx(out.tx_bytes, written || out.tx_always_ok);
        }
        self.tx = out;
    }

    /// A frame from the wire through the reassembler first (as the data plane does for group
    /// destinations; here for any frame: the reassembler must cope with everything).
    fn receive_defrag(&mut self, frame: &[u8], written: bool) {
        let limits = if self.limits.max_bytes == 0 {
            DefragLimits::default()
        } else {
            self.limits
        };
        let whole = match self.defrag.process(frame, self.now_ns) {
            Defrag::Whole => Some(frame.to_vec()),
            Defrag::Held | Defrag::Dropped => None,
            Defrag::Complete(d) => {
                check_reassembled(d);
                Some(d.to_vec())
            }
        };
        assert!(
            self.defrag.held_bytes() <= limits.max_bytes,
            "reassembly holds {} bytes, limit {}",
            self.defrag.held_bytes(),
            limits.max_bytes
        );
        assert!(self.defrag.pending() <= limits.max_datagrams);
        self.port_counters.defrag_dropped += self.defrag.take_dropped();
        if let Some(w) = whole {
            self.receive(&w, written);
        }
    }

    fn check_counters(&self) {
        let mut sum = DevCounters::default();
        for c in &self.counters {
            sum.add(c);
        }
        assert_eq!(
            sum.rx_packets + sum.rx_errors,
            self.deliveries,
            "counters do not add up to the deliveries"
        );
        assert_eq!(sum.rx_bytes, self.delivered_bytes);
        assert!(sum.rx_multicast <= sum.rx_packets);
    }
}

/// The modes a flood from the wire may reach, by the sender's mode (`macvlan_multicast_rx`):
/// from outside everyone but source mode; from a VEPA sender, VEPA and bridge; from a bridge
/// sender (its siblings had it locally already), VEPA only.
fn flood_mask(sender: Option<Mode>) -> &'static [Mode] {
    match sender {
        None => &[Mode::Private, Mode::Vepa, Mode::Bridge, Mode::Passthru],
        Some(Mode::Vepa) => &[Mode::Vepa, Mode::Bridge],
        Some(_) => &[Mode::Vepa],
    }
}

/// A reassembled datagram is a valid, unfragmented IPv4 packet filling the frame.
fn check_reassembled(frame: &[u8]) {
    let f = EthernetFrame::new_checked(frame).expect("reassembled frame is a frame");
    let l3 = match f.outer_ethertype() {
        ethertype::VLAN_8021Q | ethertype::VLAN_8021AD => ETH_HLEN + 4,
        _ => ETH_HLEN,
    };
    let datagram = &frame[l3..];
    let total = datagram.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]]));
    assert_eq!(
        total.map(usize::from),
        Some(datagram.len()),
        "reassembled total length does not match the datagram"
    );
    let ip = Ipv4Header::new_checked(datagram).expect("reassembled IPv4 header");
    assert!(!ip.is_fragment(), "reassembled datagram still a fragment");
    assert_eq!(ipv4_checksum(ip.header_bytes()), 0, "bad header checksum");
}

/// Builds a frame from a template, or takes raw bytes. `next_off` is where the last IPv4
/// fragment built for each of the four datagram ids ended.
fn frame(inp: &mut Input, next_off: &mut [usize; 4]) -> Vec<u8> {
    let kind = inp.u8();
    if kind % 4 == 3 {
        let n = inp.u8() as usize;
        return inp.bytes(n).to_vec();
    }
    let dst = pool_mac(inp);
    let src = pool_mac(inp);
    let et = match (kind >> 2) % 8 {
        0..=2 => ethertype::IPV4,
        3 => ethertype::ARP,
        4 => ethertype::VLAN_8021Q,
        5 => ethertype::VLAN_8021AD,
        6 => ethertype::PAUSE,
        _ => inp.u16(),
    };
    let mut b = vec![0u8; ETH_HLEN];
    write_header(&mut b, dst, src, et);
    let mut inner = et;
    if et == ethertype::VLAN_8021Q || et == ethertype::VLAN_8021AD {
        let tci = inp.u16();
        inner = match inp.u8() % 4 {
            0 | 1 => ethertype::IPV4,
            2 => ethertype::VLAN_8021Q,
            _ => inp.u16(),
        };
        b.extend_from_slice(&tci.to_be_bytes());
        b.extend_from_slice(&inner.to_be_bytes());
    }
    if inner == ethertype::IPV4 && kind & 0x80 == 0 {
        // An IPv4 header, often a fragment of one of a few datagrams.
        let flags = inp.u8();
        let ihl = if flags & 0x40 != 0 {
            5 + (inp.u8() % 11)
        } else {
            5
        };
        let hl = ihl as usize * 4;
        let unit = match flags & 0xa0 {
            0 => 1,
            0x20 => 8,
            0x80 => 64,
            _ => 256, // big fragments, so two reach the 64 KiB datagram limit
        };
        let len = (inp.u8() as usize * unit).min(65535 - hl);
        let ident = usize::from(flags & 3);
        // Either where the previous fragment of this datagram ended (as senders fragment) or
        // anywhere.
        let off = if flags & 0x10 != 0 {
            (next_off[ident] / 8).min(0x1fff) as u16
        } else {
            inp.u16() & 0x1fff
        };
        next_off[ident] = off as usize * 8 + (len & !7);
        let total = if flags & 0x08 != 0 {
            inp.u16()
        } else {
            (hl + len).min(65535) as u16
        };
        let mut h = vec![0u8; hl];
        h[0] = 0x40 | ihl;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&(ident as u16).to_be_bytes());
        let mf = if flags & 0x04 != 0 { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&(mf | off).to_be_bytes());
        h[8] = 64;
        h[9] = 17;
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[16..20].copy_from_slice(&[224, 0, 0, 1]);
        let c = ipv4_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(&h);
        let fill = inp.u8();
        b.extend((0..len).map(|i| fill.wrapping_add(i as u8)));
    } else {
        let n = inp.u8() as usize;
        let p = inp.bytes(n);
        b.extend_from_slice(p);
    }
    if kind & 0x40 != 0 && !b.is_empty() {
        // Cut it short: runts, truncated tags and headers, bad length fields.
        let keep = inp.u8() as usize % b.len();
        b.truncate(keep);
    }
    b
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut w = World::new(&mut inp);
    for _ in 0..MAX_STEPS {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        let written = op & 0x80 == 0;
        match op & 0x7f {
            op @ 0..=39 => w.control_step(&mut inp, op % 20),
            40..=59 => {
                let f = frame(&mut inp, &mut w.next_off);
                w.receive(&f, written);
            }
            60..=79 => {
                let from = dev_id(&mut inp);
                let f = frame(&mut inp, &mut w.next_off);
                w.transmit(from, &f, written);
            }
            80..=99 => {
                let f = frame(&mut inp, &mut w.next_off);
                w.receive_defrag(&f, written);
            }
            100..=109 => w.process_bc_queue(written),
            110..=119 => {
                w.now_ns += [1, 1_000, 1_000_000, 40_000_000_000][inp.u8() as usize % 4];
            }
            124..=127 => {
                let f = frame(&mut inp, &mut w.next_off);
                w.from_host(&f, written);
            }
            _ => {
                // Loop a transmitted frame back in from the wire (a VEPA hairpin).
                let from = dev_id(&mut inp);
                let f = frame(&mut inp, &mut w.next_off);
                w.transmit(from, &f, written);
                if w.tx.to_wire {
                    w.receive(&f, written);
                }
            }
        }
        w.check_counters();
    }
    w.process_bc_queue(true);
    w.check_counters();
}
