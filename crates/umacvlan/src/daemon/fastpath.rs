//! The eBPF data path (`umacvlan daemon --datapath bpf`): each macvlan is the far end of a
//! veth pair whose near ("hidden") end stays in the daemon's namespace, so that programs on the
//! lower can reach it with `bpf_redirect_peer` wherever it lives. Unicast is forwarded by the
//! programs (`bpf/umacvlan_tc.c`); group destinations keep going through the userspace data
//! plane, which reads them from a packet socket on the hidden end (filtered to group frames)
//! and writes flood copies into it. The maps are computed from the engine's snapshot on every
//! publish (`umacvlan_core::engine::fastpath`).

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use umacvlan_core::engine::event::{counter, flag, Entry, FrameEvent, NO_DEV, NO_VLAN};
use umacvlan_core::engine::fastpath::tables;
use umacvlan_core::engine::{DevCounters, DevId, Device, PortSnapshot, RxReason, TxReason};
use umacvlan_core::wire::MacAddr;
use umacvlan_io::bpf::maps::{Event, Stats, Verdict, SNAP};
use umacvlan_io::bpf::{Applied, FastPath, HiddenEnd, Tracer, PROG_LOWER, PROG_XMIT};

use super::monitor::{record_fast, record_lost, ExternalSource, PortTap};
use umacvlan_io::mem::{LowerIo, UpperIo};
use umacvlan_io::netlink::{LinkChange, RtNetlink, VethPeer};
use umacvlan_io::{LowerOptions, LowerSocket, NetnsHandle, RxBatch, Tap};

/// `--datapath`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DatapathArg {
    /// bpf where the kernel and privileges allow, otherwise tap.
    Auto,
    /// The eBPF fast path; fail if unavailable.
    Bpf,
    /// Every frame through the userspace data plane and TAP devices.
    Tap,
}

/// Loads the fast path if `arg` asks for it (before capabilities are dropped: loading needs
/// CAP_BPF or CAP_SYS_ADMIN). `Ok(None)`: the TAP path.
pub fn choose(arg: DatapathArg, bridge_direct: bool) -> io::Result<Option<FastPath>> {
    if arg == DatapathArg::Tap {
        return Ok(None);
    }
    let t0 = std::time::Instant::now();
    match FastPath::supported().and_then(|()| FastPath::load_with(false, bridge_direct)) {
        Ok(fp) => {
            tracing::info!(
                "datapath: bpf (unicast forwarded by tc programs; loaded in {} ms)",
                t0.elapsed().as_millis()
            );
            Ok(Some(fp))
        }
        Err(e) if arg == DatapathArg::Auto => {
            tracing::info!("datapath: tap (the eBPF fast path is unavailable: {e})");
            Ok(None)
        }
        Err(e) => Err(io::Error::other(format!("--datapath bpf: {e}"))),
    }
}

/// The fast path's state in the manager.
pub struct FastState {
    fp: FastPath,
    /// What was written for each lower (by ifindex).
    applied: HashMap<u32, Applied>,
    next_name: u32,
    /// Names for the programs' traced decisions, kept with the maps.
    index: Arc<Mutex<TraceIndex>>,
}

/// What naming a traced decision takes: each lower's monitor tap, and the macvlan (its port,
/// id and mode bits) behind each hidden end.
#[derive(Default)]
struct TraceIndex {
    ports: HashMap<u32, Weak<PortTap>>,
    devs: HashMap<u32, (u32, DevId, u8)>,
    /// (lower, address) → the macvlan owning it, for a local bridge frame's receiver.
    macs: HashMap<(u32, [u8; 6]), DevId>,
}

/// Prefix of this daemon's hidden ends: the guardian deletes what is left of them.
pub fn hidden_prefix(pid: u32) -> String {
    format!("umv{:05x}h", pid & 0xfffff)
}

impl FastState {
    /// Wraps a loaded fast path.
    pub fn new(fp: FastPath) -> FastState {
        FastState {
            fp,
            applied: HashMap::new(),
            next_name: 0,
            index: Arc::default(),
        }
    }

    /// The reader of the programs' decisions, for the monitor (once).
    pub fn tracer(&mut self) -> Option<FastTracer> {
        Some(FastTracer {
            tracer: self.fp.take_tracer()?,
            index: self.index.clone(),
            on: (false, false),
            lost: 0,
        })
    }

    /// A port on lower `ifindex` (named `name`, in the daemon's namespace) starts.
    pub fn port_started(&mut self, name: &str, ifindex: u32) -> io::Result<()> {
        self.fp
            .attach(PROG_LOWER, name, ifindex)
            .map_err(io::Error::other)
    }

    /// Makes a slow-path packet socket on a lower keep only what the programs leave to it.
    pub fn filter_socket(&self, sock: &LowerSocket) -> io::Result<()> {
        self.fp.filter_socket(sock).map_err(io::Error::other)
    }

    /// The port on lower `ifindex` ends: its entries go, then its program.
    pub fn port_gone(&mut self, ifindex: u32) {
        self.forget_port(ifindex, true);
    }

    /// The port on lower `ifindex` leaves the fast path, its macvlans staying (the lower moved
    /// to another namespace, where the programs cannot reach the hidden ends): its entries
    /// and its lower's program go; the macvlans' counters stay, still added to the data
    /// plane's, and their transmit programs stay, dropping what the slow path took (each
    /// upper first [`Upper::leave_fast_path`]).
    pub fn port_leaves(&mut self, ifindex: u32) {
        self.forget_port(ifindex, false);
    }

    fn forget_port(&mut self, ifindex: u32, counters: bool) {
        {
            let mut ix = self.index.lock().unwrap_or_else(|e| e.into_inner());
            ix.ports.remove(&ifindex);
            ix.devs.retain(|_, (l, _, _)| *l != ifindex);
            ix.macs.retain(|(l, _), _| *l != ifindex);
        }
        if let Some(mut a) = self.applied.remove(&ifindex) {
            self.fp.clear(ifindex, &mut a, counters);
        }
        self.fp.detach(PROG_LOWER, ifindex);
    }

    /// Writes the maps of lower `ifindex` for the port's snapshot `snap`; `hidden` gives each
    /// macvlan's hidden end.
    pub fn publish(
        &mut self,
        ifindex: u32,
        snap: &PortSnapshot,
        hidden: &dyn Fn(DevId) -> Option<HiddenEnd>,
        tap: &Arc<PortTap>,
    ) {
        let t = tables(snap);
        {
            let mut ix = self.index.lock().unwrap_or_else(|e| e.into_inner());
            ix.ports.insert(ifindex, Arc::downgrade(tap));
            ix.devs.retain(|_, (l, _, _)| *l != ifindex);
            for d in t.devs.iter().chain(t.passthru.iter()) {
                if let Some(h) = hidden(d.id) {
                    ix.devs
                        .insert(h.ifindex, (ifindex, d.id, d.mode.bits() as u8));
                }
            }
            ix.macs.retain(|(l, _), _| *l != ifindex);
            for (m, d) in &t.macs {
                ix.macs.insert((ifindex, m.octets()), d.id);
            }
        }
        let a = self.applied.entry(ifindex).or_default();
        if let Err(e) = self.fp.apply(ifindex, &t, hidden, a) {
            tracing::error!("fast path map update failed: {e}");
        }
    }

    /// Counters the programs kept for a macvlan's hidden end, as the engine's counters.
    pub fn counters(&self, hidden: u32) -> DevCounters {
        Self::dev_counters(self.fp.stats(hidden))
    }

    /// Every device's counters at once (in batches), for answers about all macvlans; `None`
    /// when the kernel refuses batch lookups (ask [`FastState::counters`] per device).
    pub fn all_counters(&self) -> Option<HashMap<u32, Stats>> {
        self.fp
            .all_stats()
            .inspect_err(|e| tracing::debug!("batch counter lookup: {e}"))
            .ok()
    }

    /// What the programs count for a device, as the engine's counters.
    pub fn dev_counters(s: Stats) -> DevCounters {
        DevCounters {
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            ..DevCounters::default()
        }
    }

    /// Local bridge frames the lower refused, counted by the programs.
    pub fn lower_rx_dropped(&self, lower: u32) -> u64 {
        self.fp.stats(lower).rx_dropped
    }

    /// Creates macvlan `dev`'s device (down) in namespace `ns`: a veth pair, its far end named
    /// and addressed as the macvlan, its hidden end carrying the transmit program and the slow
    /// path's socket. Returns it with the far end's ifindex in `ns`. `rtnl` is the daemon's
    /// own namespace's socket. Nothing is left behind on failure.
    pub fn create_upper(
        &mut self,
        rtnl: &mut RtNetlink,
        ns: Option<&NetnsHandle>,
        dev: &Device,
        carrier: bool,
    ) -> io::Result<(VethUpper, u32)> {
        let hidden = format!("{}{:x}", hidden_prefix(std::process::id()), self.next_name);
        self.next_name += 1;
        let peer = VethPeer {
            name: &dev.name,
            mac: dev.mac,
            mtu: dev.mtu,
        };
        // The hidden end takes any frame the macvlan may send or receive.
        rtnl.add_veth(&hidden, 65535, &peer, ns)
            .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let (hidden_ifindex, peer_local, far_ifindex) = match rtnl.get_link_by_name(&hidden) {
            // A veth names its peer's namespace only when it is another one.
            Ok(l) => (l.ifindex, l.netnsid.is_none(), l.link),
            Err(e) => return Err(e.into()),
        };
        let cleanup = |fp: &mut FastPath, rtnl: &mut RtNetlink| {
            fp.detach(PROG_XMIT, hidden_ifindex);
            let _ = rtnl.del_link(hidden_ifindex);
        };
        let r = (|| -> io::Result<(VethUpper, u32)> {
            // The hidden end must stay silent toward the macvlan (no IPv6 autoconfiguration).
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{hidden}/disable_ipv6"),
                "1",
            );
            self.fp
                .attach(PROG_XMIT, &hidden, hidden_ifindex)
                .map_err(io::Error::other)?;
            let sock = LowerSocket::open(
                hidden_ifindex,
                &LowerOptions {
                    vnet_hdr: true,
                    rcvbuf: Some(1 << 20),
                    ..LowerOptions::default()
                },
            )?;
            sock.keep_only_group_frames()?;
            let up = VethUpper {
                hidden_ifindex,
                peer_local: AtomicBool::new(peer_local),
                far_ns: Mutex::new((None, ns.map(|n| n.try_clone()).transpose()?)),
                sock,
                batch: Mutex::new(RxBatch::with_frame_capacity(1, 65536 + 64)),
                fast: AtomicBool::new(true),
            };
            // The macvlan end starts down; the manager brings it up once the data plane has it.
            up.hidden_up(rtnl, carrier)?;
            let far = far_ifindex.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
            Ok((up, far))
        })();
        if r.is_err() {
            cleanup(&mut self.fp, rtnl);
        }
        r
    }

    /// A macvlan's device is going: its transmit program's link is let go (the maps no longer
    /// name it; the caller has published).
    pub fn upper_gone(&mut self, hidden: u32) {
        self.fp.detach(PROG_XMIT, hidden);
        // Kept while its port was off the fast path (see `port_leaves`).
        self.fp.remove_stats(hidden);
    }
}

/// Reads the programs' traced decisions into the monitor while someone listens; tracing is
/// off (the programs' one-load check) the rest of the time.
pub struct FastTracer {
    tracer: Tracer,
    index: Arc<Mutex<TraceIndex>>,
    /// (tracing, with bytes) as last set.
    on: (bool, bool),
    /// The programs' lost count already reported.
    lost: u64,
}

impl ExternalSource for FastTracer {
    fn set_listening(&mut self, on: bool, bytes: bool) {
        if (on, bytes) == self.on {
            return;
        }
        let snap = if bytes { SNAP as u32 } else { 0 };
        if let Err(e) = self.tracer.set(on, snap) {
            tracing::warn!("cannot switch the fast path's tracing: {e}");
            return;
        }
        self.on = (on, bytes);
        if !on {
            // What is left would be stale for the next listener.
            self.tracer.drain(|_| {});
            self.lost = self.tracer.lost();
        }
    }

    fn pump(&mut self) {
        let ix = self.index.lock().unwrap_or_else(|e| e.into_inner());
        // Losses name no port: any port's ring carries them to every listener.
        let lost = self.tracer.lost();
        if lost > self.lost {
            if let Some(ring) = ix
                .ports
                .values()
                .find_map(|t| t.upgrade().and_then(|t| t.fast_ring()))
            {
                record_lost(&ring, lost - self.lost);
                self.lost = lost;
            }
        }
        self.tracer.drain(|e| {
            let Some((port, ev, to)) = frame_event(&e, &ix) else {
                return;
            };
            if let Some(ring) = ix
                .ports
                .get(&port)
                .and_then(Weak::upgrade)
                .and_then(|t| t.fast_ring())
            {
                let cap = (e.cap as usize).min(e.data.len());
                record_fast(&ring, ev, to.as_slice(), &e.data[..cap]);
            }
        });
    }
}

/// A program's decision as the engine names the same decision (its port, the event, the
/// receiver), or `None` for what the slow path records itself (group destinations, frames
/// from a listed source, runts) and for devices no longer known.
fn frame_event(e: &Event, ix: &TraceIndex) -> Option<(u32, FrameEvent, Option<DevId>)> {
    let v = Verdict::from_code(e.verdict)?;
    let mut ev = FrameEvent {
        port: 0,
        dev: NO_DEV,
        to: NO_DEV,
        len: e.len,
        ethertype: u16::from_be(e.protocol),
        vlan: if e.vlan == 0xffff { NO_VLAN } else { e.vlan },
        src: e.src,
        dst: e.dst,
        ..FrameEvent::default()
    };
    let group = e.dst[0] & 1 == 1;
    let mut to = None;
    if ix.ports.contains_key(&e.ifindex) {
        // The lower's ingress: macvlan_handle_frame.
        ev.port = e.ifindex;
        ev.entry = Entry::Lower as u8;
        let target = ix.devs.get(&e.target_ifindex).copied();
        let reason = match v {
            Verdict::Unicast => {
                let (_, id, mode) = target?;
                (ev.to, ev.mode, ev.copies, to) = (id.0, mode, 1, Some(id));
                ev.counters = counter::RX;
                RxReason::Unicast
            }
            // Already recorded as the sender's local decision.
            Verdict::LocalDelivered => return None,
            Verdict::TargetDown => {
                let (_, id, mode) = target?;
                (ev.to, ev.mode) = (id.0, mode);
                RxReason::TargetDown
            }
            Verdict::HostEcho => {
                let (_, id, mode) = target?;
                (ev.to, ev.mode) = (id.0, mode);
                RxReason::HostEcho
            }
            // The slow path's socket filter keeps these and the engine records them.
            Verdict::Pass if group || e.len < 14 => return None,
            Verdict::Pass => {
                ev.flags |= flag::LOWER_STACK;
                match target {
                    Some((_, id, mode)) => {
                        (ev.to, ev.mode) = (id.0, mode);
                        RxReason::SourceModeTarget
                    }
                    None => RxReason::NotOurs,
                }
            }
            _ => return None,
        };
        ev.reason = reason as u8;
    } else {
        // A hidden end's ingress: what its macvlan sent (macvlan_queue_xmit).
        let (port, id, mode) = ix.devs.get(&e.ifindex).copied()?;
        (ev.port, ev.dev, ev.mode) = (port, id.0, mode);
        ev.entry = Entry::Macvlan as u8;
        let reason = match v {
            Verdict::Wire => {
                ev.flags |= flag::TO_WIRE;
                ev.counters = counter::TX;
                TxReason::Wire
            }
            // Delivered through the lower's receive path, whose program marks the delivery
            // as this decision's (not recorded twice).
            Verdict::Local => {
                if let Some(&id) = ix.macs.get(&(port, e.dst)) {
                    (ev.to, ev.copies, to) = (id.0, 1, Some(id));
                    ev.counters = counter::TX | counter::RX;
                } else {
                    ev.counters = counter::TX;
                }
                TxReason::Local
            }
            Verdict::LocalRefused => {
                ev.counters = counter::TX | counter::LOWER_RX_DROPPED;
                TxReason::LocalRefused
            }
            Verdict::ToHost => {
                ev.flags |= flag::TO_HOST;
                ev.counters = counter::TX;
                TxReason::ToHost
            }
            Verdict::SenderDown => TxReason::SenderDown,
            Verdict::Malformed => {
                ev.counters = counter::MALFORMED;
                TxReason::Malformed
            }
            // A group frame: the slow path has its copy and records it.
            _ => return None,
        };
        ev.reason = reason as u8;
    }
    Some((ev.port, ev, to))
}

/// A macvlan on the fast path: the hidden end of its veth pair (the far end is the macvlan).
/// Dropping it deletes the pair.
pub struct VethUpper {
    hidden_ifindex: u32,
    /// The macvlan end is in the daemon's namespace (as last seen).
    peer_local: AtomicBool,
    /// The far end's namespace as last seen: its id from the daemon's namespace (`None`: the
    /// daemon's own, or not yet looked up) and a handle (`None`: the daemon's).
    far_ns: Mutex<(Option<i32>, Option<NetnsHandle>)>,
    /// The slow path's socket on the hidden end: group frames the macvlan sent, in; flood
    /// copies for the macvlan, out. Every frame, once the port left the fast path.
    sock: LowerSocket,
    batch: Mutex<RxBatch>,
    /// Still on the fast path (see [`VethUpper::leave_fast_path`]).
    fast: AtomicBool,
}

impl VethUpper {
    /// The hidden end up or down (the macvlan's carrier), through `rtnl`, a socket of the
    /// daemon's namespace.
    fn hidden_up(&self, rtnl: &mut RtNetlink, on: bool) -> io::Result<()> {
        rtnl.set_link(
            self.hidden_ifindex,
            &LinkChange {
                up: Some(on),
                ..Default::default()
            },
        )?;
        Ok(())
    }

    /// The port leaves the fast path: the userspace data plane takes every frame the macvlan
    /// sends from the hidden end's socket (its transmit program, with no map entry left,
    /// drops them after the socket has them: the hidden end's own stack must not).
    pub fn leave_fast_path(&self) -> io::Result<()> {
        self.sock.detach_filter()?;
        self.fast.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The hidden end's ifindex (daemon's namespace).
    pub fn hidden_ifindex(&self) -> u32 {
        self.hidden_ifindex
    }

    /// The hidden end as the fast path's maps need it.
    pub fn hidden_end(&self) -> HiddenEnd {
        HiddenEnd {
            ifindex: self.hidden_ifindex,
            peer_local: self.peer_local.load(Ordering::Relaxed),
        }
    }

    /// The far end (the macvlan): its ifindex and the namespace it is in now.
    fn far_end(&self) -> io::Result<(u32, Option<NetnsHandle>)> {
        let mut rtnl = RtNetlink::open()?;
        let l = rtnl.get_link_by_index(self.hidden_ifindex)?;
        let peer = l
            .link
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        self.peer_local
            .store(l.netnsid.is_none(), Ordering::Relaxed);
        let mut cache = self.far_ns.lock().unwrap_or_else(|e| e.into_inner());
        // Resolving a namespace id can mean scanning every process: only when it changed
        // (the macvlan was moved).
        let known = match (&cache.0, l.netnsid, &cache.1) {
            (Some(a), Some(b), Some(_)) => *a == b,
            (_, None, None) => true,
            _ => false,
        };
        if !known {
            let ns = match l.netnsid {
                Some(id) => {
                    let hint: Vec<&NetnsHandle> = cache.1.iter().collect();
                    Some(
                        rtnl.netns_by_nsid(id, &hint)
                            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?,
                    )
                }
                None => None,
            };
            *cache = (l.netnsid, ns);
        }
        let ns = cache.1.as_ref().map(|n| n.try_clone()).transpose()?;
        Ok((peer, ns))
    }

    fn set_far(&self, change: LinkChange<'_>) -> io::Result<()> {
        let (ifindex, ns) = self.far_end()?;
        RtNetlink::open_in(ns.as_ref())?.set_link(ifindex, &change)?;
        Ok(())
    }

    /// The macvlan's ifindex in its namespace.
    pub fn ifindex(&self) -> io::Result<u32> {
        Ok(self.far_end()?.0)
    }

    /// The macvlan's namespace.
    pub fn netns(&self) -> io::Result<NetnsHandle> {
        match self.far_end()?.1 {
            Some(ns) => Ok(ns),
            None => NetnsHandle::current(),
        }
    }

    /// The macvlan's MAC.
    pub fn mac(&self) -> io::Result<MacAddr> {
        let (ifindex, ns) = self.far_end()?;
        RtNetlink::open_in(ns.as_ref())?
            .get_link_by_index(ifindex)?
            .mac
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// Sets the macvlan's MAC.
    pub fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        self.set_far(LinkChange {
            mac: Some(mac),
            ..Default::default()
        })
    }

    /// Sets the macvlan's MTU.
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        self.set_far(LinkChange {
            mtu: Some(mtu),
            ..Default::default()
        })
    }

    /// Sets the macvlan administratively up or down.
    pub fn set_up(&self, up: bool) -> io::Result<()> {
        self.set_far(LinkChange {
            up: Some(up),
            ..Default::default()
        })
    }
}

impl UpperIo for VethUpper {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        match self.sock.recv_batch(&mut b) {
            Ok(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Ok(_) => {}
            // A packet socket reports its device going down once (the hidden end follows the
            // lower's carrier); the socket stays usable: nothing to read now.
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                return Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => return Err(e),
        }
        let p = b.get(0).packet;
        let n = p.len().min(buf.len());
        buf[..n].copy_from_slice(&p[..n]);
        Ok(n)
    }

    fn write(&self, frame: &[u8]) -> io::Result<()> {
        self.sock.send(frame)
    }

    /// A veth's carrier follows its peer: the hidden end up or down.
    fn set_carrier(&self, on: bool) -> io::Result<()> {
        self.hidden_up(&mut RtNetlink::open()?, on)
    }

    fn readiness_fd(&self) -> RawFd {
        LowerIo::readiness_fd(&self.sock)
    }

    fn vnet_hdr_len(&self) -> usize {
        self.sock.vnet_hdr_len()
    }
}

impl Drop for VethUpper {
    fn drop(&mut self) {
        // Deleting one end deletes the pair (and the macvlan with it).
        if let Ok(mut r) = RtNetlink::open() {
            let _ = r.del_link(self.hidden_ifindex);
        }
    }
}

/// A macvlan's device on either data path.
pub enum Upper {
    /// A TAP (the userspace data path).
    Tap(Tap),
    /// A veth pair (the eBPF fast path).
    Veth(VethUpper),
}

impl Upper {
    /// The macvlan's ifindex in its namespace.
    pub fn ifindex(&self) -> io::Result<u32> {
        match self {
            Upper::Tap(t) => t.ifindex(),
            Upper::Veth(v) => v.ifindex(),
        }
    }
    /// The macvlan's namespace.
    pub fn netns(&self) -> io::Result<NetnsHandle> {
        match self {
            Upper::Tap(t) => t.netns(),
            Upper::Veth(v) => v.netns(),
        }
    }
    /// Its MAC.
    pub fn mac(&self) -> io::Result<MacAddr> {
        match self {
            Upper::Tap(t) => t.mac(),
            Upper::Veth(v) => v.mac(),
        }
    }
    /// Sets its MAC.
    pub fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        match self {
            Upper::Tap(t) => t.set_mac(mac),
            Upper::Veth(v) => v.set_mac(mac),
        }
    }
    /// Sets its MTU.
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        match self {
            Upper::Tap(t) => t.set_mtu(mtu),
            Upper::Veth(v) => v.set_mtu(mtu),
        }
    }
    /// Sets it up or down.
    pub fn set_up(&self, up: bool) -> io::Result<()> {
        match self {
            Upper::Tap(t) => t.set_up(up),
            Upper::Veth(v) => v.set_up(up),
        }
    }
    /// The hidden end, on the fast path.
    pub fn hidden_ifindex(&self) -> Option<u32> {
        match self {
            Upper::Tap(_) => None,
            Upper::Veth(v) => Some(v.hidden_ifindex()),
        }
    }
    /// The hidden end as the fast path's maps need it.
    pub fn hidden_end(&self) -> Option<HiddenEnd> {
        match self {
            Upper::Tap(_) => None,
            Upper::Veth(v) => Some(v.hidden_end()),
        }
    }
    /// Which data path: `tap` (the userspace one, also for a veth whose port left the fast
    /// path) or `bpf`.
    pub fn datapath(&self) -> &'static str {
        match self {
            Upper::Veth(v) if v.fast.load(Ordering::Relaxed) => "bpf",
            _ => "tap",
        }
    }
    /// The port leaves the fast path (see [`VethUpper::leave_fast_path`]).
    pub fn leave_fast_path(&self) -> io::Result<()> {
        match self {
            Upper::Tap(_) => Ok(()),
            Upper::Veth(v) => v.leave_fast_path(),
        }
    }
}

impl UpperIo for Upper {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Upper::Tap(t) => UpperIo::read(t, buf),
            Upper::Veth(v) => v.read(buf),
        }
    }
    fn write(&self, frame: &[u8]) -> io::Result<()> {
        match self {
            Upper::Tap(t) => UpperIo::write(t, frame),
            Upper::Veth(v) => v.write(frame),
        }
    }
    fn set_carrier(&self, on: bool) -> io::Result<()> {
        match self {
            Upper::Tap(t) => UpperIo::set_carrier(t, on),
            Upper::Veth(v) => UpperIo::set_carrier(v, on),
        }
    }
    fn readiness_fd(&self) -> RawFd {
        match self {
            Upper::Tap(t) => UpperIo::readiness_fd(t),
            Upper::Veth(v) => v.readiness_fd(),
        }
    }
    fn vnet_hdr_len(&self) -> usize {
        match self {
            Upper::Tap(t) => UpperIo::vnet_hdr_len(t),
            Upper::Veth(v) => UpperIo::vnet_hdr_len(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOWER: u32 = 5;
    const H1: u32 = 101;
    const H2: u32 = 102;
    const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// Port 5 with macvlans 0 (bridge, hidden end 101) and 1 (bridge, hidden end 102, MAC2).
    fn index() -> TraceIndex {
        let mut ix = TraceIndex::default();
        ix.ports.insert(LOWER, Weak::new());
        ix.devs.insert(H1, (LOWER, DevId(0), 4));
        ix.devs.insert(H2, (LOWER, DevId(1), 4));
        ix.macs.insert((LOWER, MAC2), DevId(1));
        ix
    }

    fn event(on: u32, target: u32, v: Verdict, dst: [u8; 6]) -> Event {
        Event {
            ifindex: on,
            target_ifindex: target,
            verdict: v as u32,
            len: 60,
            dst,
            protocol: 0x0800u16.to_be(),
            vlan: 0xffff,
            ..Event::default()
        }
    }

    #[test]
    fn program_verdicts_are_named_as_the_engine_names_them() {
        let ix = index();
        let (port, ev, to) = frame_event(&event(LOWER, H2, Verdict::Unicast, MAC2), &ix).unwrap();
        assert_eq!(
            (port, ev.entry, ev.reason),
            (LOWER, Entry::Lower as u8, RxReason::Unicast as u8)
        );
        assert_eq!(
            (ev.to, to, ev.copies, ev.counters),
            (1, Some(DevId(1)), 1, counter::RX)
        );
        assert_eq!((ev.ethertype, ev.vlan), (0x0800, NO_VLAN));

        let (_, ev, _) = frame_event(&event(LOWER, 0, Verdict::Pass, [2; 6]), &ix).unwrap();
        assert_eq!(ev.reason, RxReason::NotOurs as u8);
        assert_ne!(ev.flags & flag::LOWER_STACK, 0);
        let (_, ev, _) = frame_event(&event(LOWER, H1, Verdict::Pass, [2; 6]), &ix).unwrap();
        assert_eq!((ev.reason, ev.to), (RxReason::SourceModeTarget as u8, 0));

        let (port, ev, to) = frame_event(&event(H1, LOWER, Verdict::Local, MAC2), &ix).unwrap();
        assert_eq!((port, ev.entry, ev.dev), (LOWER, Entry::Macvlan as u8, 0));
        assert_eq!((ev.reason, to), (TxReason::Local as u8, Some(DevId(1))));
        assert_eq!(ev.counters, counter::TX | counter::RX);
        let (_, ev, _) = frame_event(&event(H1, LOWER, Verdict::Wire, [2; 6]), &ix).unwrap();
        assert_eq!(
            (ev.reason, ev.flags & flag::TO_WIRE),
            (TxReason::Wire as u8, flag::TO_WIRE)
        );

        // hostaccess: to the host, and the host's echo from the wire.
        let (_, ev, to) = frame_event(&event(H1, LOWER, Verdict::ToHost, [2; 6]), &ix).unwrap();
        assert_eq!(
            (ev.reason, ev.counters, to),
            (TxReason::ToHost as u8, counter::TX, None)
        );
        assert_eq!(ev.flags & (flag::TO_HOST | flag::TO_WIRE), flag::TO_HOST);
        let (_, ev, _) = frame_event(&event(LOWER, H2, Verdict::HostEcho, MAC2), &ix).unwrap();
        assert_eq!(
            (ev.reason, ev.to, ev.counters),
            (RxReason::HostEcho as u8, 1, 0)
        );
    }

    #[test]
    fn what_the_slow_path_records_or_nobody_knows_is_left_out() {
        let ix = index();
        for e in [
            // Group frames and runts from the wire: the userspace data plane records them.
            event(LOWER, 0, Verdict::Pass, [1, 0, 0x5e, 0, 0, 1]),
            Event {
                len: 10,
                ..event(LOWER, 0, Verdict::Pass, [0; 6])
            },
            event(LOWER, 0, Verdict::SlowPath, [2; 6]),
            // The second half of a local frame: already its sender's decision.
            event(LOWER, H2, Verdict::LocalDelivered, MAC2),
            // A group frame a macvlan sent.
            event(H1, 0, Verdict::SlowPath, [0xff; 6]),
            // Devices the index does not know (any more).
            event(999, 0, Verdict::Wire, [2; 6]),
            event(LOWER, 999, Verdict::Unicast, [2; 6]),
        ] {
            assert!(frame_event(&e, &ix).is_none(), "{e:?}");
        }
    }
}
