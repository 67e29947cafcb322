//! The data plane's view of a port: an immutable [`PortSnapshot`] and the per-frame decisions
//! (`macvlan_handle_frame`, `macvlan_queue_xmit`, `macvlan_broadcast`) as pure functions that
//! fill caller-owned outcome buffers. A data plane swaps snapshots atomically (RCU-style) and
//! keeps counters itself ([`super::DevCounters`]); nothing here allocates once the outcome
//! buffers have grown to their working size.

use super::hash::{mc_hash_key, port_mc_hash, Bitmap256};
use super::port::{DevId, Device, LowerState};
use super::table::MacTable;
use super::types::{Mode, ModeMask, PacketType};
use crate::wire::{ethertype, EthernetFrame, MacAddr, ETH_HLEN, VLAN_HLEN};

// `explain` walks a decision after the fact from its outcome and this snapshot's private
// state; being a child module it reads the fields without widening their visibility.
mod explain;
pub use explain::{rx_rule, tx_rule, Trace, TraceLine};

/// A macvlan as the data plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevSnap {
    /// Id.
    pub id: DevId,
    /// MAC.
    pub mac: MacAddr,
    /// Mode.
    pub mode: Mode,
    /// Up (opened).
    pub up: bool,
    /// MTU.
    pub mtu: u32,
    /// `nodst` flag.
    pub nodst: bool,
    /// `hostaccess on`: the lower's host and this macvlan reach each other directly.
    pub hostaccess: bool,
    /// Accepts every group (promisc or allmulti).
    mc_all: bool,
    /// [`mc_hash_key`] of the joined groups and of broadcast, sorted.
    mc_keys: Box<[u32]>,
}

impl DevSnap {
    pub(crate) fn from_device(d: &Device) -> DevSnap {
        let mut g: Vec<u32> = d
            .mc_list
            .iter()
            .chain(&d.fdb_mc)
            .chain(&d.mc_stale)
            .chain(std::iter::once(&MacAddr::BROADCAST))
            .map(|m| mc_hash_key(*m))
            .collect();
        g.sort_unstable();
        g.dedup();
        DevSnap {
            id: d.id,
            mac: d.mac,
            mode: d.mode,
            up: d.up,
            mtu: d.mtu,
            nodst: d.nodst(),
            hostaccess: d.hostaccess,
            mc_all: d.promisc || d.allmulti,
            mc_keys: g.into_boxed_slice(),
        }
    }

    /// The device's own multicast filter (`vlan->mc_filter`): everything when promisc or
    /// allmulti, else broadcast and the joined groups, compared on the four bytes the
    /// kernel's hash reads (its salted collisions are not reproduced).
    #[inline]
    pub fn accepts_group(&self, dst: MacAddr) -> bool {
        self.mc_all || self.mc_keys.binary_search(&mc_hash_key(dst)).is_ok()
    }
}

/// The sender of a frame on the broadcast queue (`MACVLAN_SKB_CB(skb)->src`), `None` when it
/// came from outside. The mode is the one the sender had when the frame was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BcSource {
    /// The sending macvlan.
    pub id: DevId,
    /// Its mode.
    pub mode: Mode,
}

/// One copy of a frame for one macvlan, and how the kernel counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The receiving macvlan.
    pub dev: DevId,
    /// `skb->pkt_type` the macvlan's stack sees.
    pub pkt_type: PacketType,
    /// Bytes the kernel adds to `rx_bytes` on success (not always the frame length: see the
    /// individual paths).
    pub bytes: u32,
    /// Counts `rx_multicast` too.
    pub multicast: bool,
    /// The kernel checks the delivery's result: a failed write counts `rx_errors`. When false
    /// the kernel counts success before delivering (the unicast path).
    pub checked: bool,
    /// The kernel refuses this copy before delivering it (`is_skb_forwardable`: larger than
    /// the receiver's MTU on a local bridge flood): don't write it, count `rx_errors`.
    pub refused: bool,
}

/// Why a received frame ended where it did (for tracing, monitoring and tests). The codes are
/// fixed (`#[repr(u8)]`): monitor events carry them, and producers outside this crate (eBPF
/// programs) emit the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RxReason {
    /// Not addressed to any macvlan: only the lower's own stack takes it.
    NotOurs = 1,
    /// Unicast delivered to its macvlan.
    Unicast = 2,
    /// Unicast for a source-mode macvlan's own address: left to the lower.
    SourceModeTarget = 3,
    /// The target macvlan is down: dropped.
    TargetDown = 4,
    /// A `nodst` source-mode macvlan took it; nothing else gets it.
    NodstConsumed = 5,
    /// Multicast sent by a private/passthru/source macvlan came back: only it gets it.
    Reflected = 6,
    /// Multicast put on the broadcast queue.
    Queued = 7,
    /// Multicast flooded at once.
    Flooded = 8,
    /// Multicast whose group is in neither port filter: nobody gets it.
    Filtered = 9,
    /// Shorter than an Ethernet header or a truncated VLAN header: dropped and counted.
    Malformed = 10,
    /// Unicast from the lower's own MAC to a `hostaccess` macvlan, back from the wire (a
    /// hairpin switch reflected what the host sent): the macvlan already had it from the
    /// host, so it is dropped.
    HostEcho = 11,
    /// A frame the lower's own host sent (entry: host), given to `hostaccess` macvlans.
    FromHost = 12,
}

/// What to do with one frame from the wire.
#[derive(Clone, Debug, Default)]
pub struct RxOutcome {
    /// Copies for macvlans, in the kernel's order.
    pub deliveries: Vec<Delivery>,
    /// The lower's own stack receives the frame too (`RX_HANDLER_PASS`).
    pub lower_stack: bool,
    /// Put the frame on the port's broadcast queue with this sender.
    pub enqueue: Option<Option<BcSource>>,
    /// Why.
    pub reason: Option<RxReason>,
    /// A multicast group some macvlan refused by its filter (or that both port filters
    /// refused while a macvlan is up): a data plane whose filters may lag the system (a
    /// link-layer join raises no event) re-reads them and offers the frame again.
    pub group_refused: bool,
    /// A group frame whose sender is one of this port's macvlans: the far side reflects what
    /// the port sends (a hairpin switch).
    pub from_port: bool,
}

impl RxOutcome {
    fn reset(&mut self) {
        self.deliveries.clear();
        self.lower_stack = false;
        self.enqueue = None;
        self.reason = None;
        self.group_refused = false;
        self.from_port = false;
    }
}

/// Why a transmitted frame ended where it did. Fixed codes, as for [`RxReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TxReason {
    /// Sent to the wire.
    Wire = 1,
    /// Bridge-mode multicast: flooded to bridge siblings and sent to the wire.
    FloodAndWire = 2,
    /// Bridge-mode unicast to a bridge sibling: looped through the lower's receive path.
    Local = 3,
    /// Looped locally but the lower refused it (down, or larger than its MTU, or a cut VLAN
    /// tag): dropped.
    LocalRefused = 4,
    /// The sender is unknown or down.
    SenderDown = 5,
    /// Malformed frame.
    Malformed = 6,
    /// A `hostaccess` macvlan's unicast to the lower's own MAC: into the lower's receive path
    /// (its host), not to the wire.
    ToHost = 7,
}

/// What to do with one frame a macvlan sent.
#[derive(Clone, Debug, Default)]
pub struct TxOutcome {
    /// Local copies for siblings.
    pub deliveries: Vec<Delivery>,
    /// Send the frame on the lower.
    pub to_wire: bool,
    /// Bytes for `tx_bytes` when the transmit succeeds (0: count nothing).
    pub tx_bytes: u32,
    /// The kernel reports success whatever happens after (local bridge delivery).
    pub tx_always_ok: bool,
    /// Count one `rx_dropped` on the lower (`dev_forward_skb` refused the frame).
    pub lower_rx_dropped: bool,
    /// Give the frame to the lower's own host too (into the lower's receive path): a
    /// `hostaccess` macvlan's frame for the lower's MAC or a group.
    pub to_host: bool,
    /// Why.
    pub reason: Option<TxReason>,
    /// A bridge sibling refused the group by its filter (see [`RxOutcome::group_refused`]).
    pub group_refused: bool,
}

impl TxOutcome {
    fn reset(&mut self) {
        self.deliveries.clear();
        self.to_wire = false;
        self.tx_bytes = 0;
        self.tx_always_ok = false;
        self.lower_rx_dropped = false;
        self.to_host = false;
        self.reason = None;
        self.group_refused = false;
    }
}

/// Flood masks of `macvlan_multicast_rx`.
const FROM_OUTSIDE: ModeMask = ModeMask(
    Mode::Private as u32 | Mode::Vepa as u32 | Mode::Passthru as u32 | Mode::Bridge as u32,
);
const FROM_VEPA: ModeMask = ModeMask(Mode::Vepa as u32 | Mode::Bridge as u32);
const FROM_OTHER: ModeMask = ModeMask(Mode::Vepa as u32);
const BRIDGE_ONLY: ModeMask = ModeMask(Mode::Bridge as u32);

/// The modes a frame from the wire is flooded to, by its sender (`macvlan_multicast_rx`).
#[inline]
fn flood_mask(src: Option<BcSource>) -> ModeMask {
    match src {
        None => FROM_OUTSIDE,
        Some(s) if s.mode == Mode::Vepa => FROM_VEPA,
        Some(_) => FROM_OTHER,
    }
}

/// `skb->protocol` after the kernel's receive path has moved one outer VLAN tag out of the
/// frame (`skb_vlan_untag`), and that tag's length. A tag cut short (a transmitted frame's
/// lenient view) stays as it is.
#[inline]
fn untagged_protocol(f: &EthernetFrame) -> (u16, usize) {
    let et = f.outer_ethertype();
    let b = f.as_bytes();
    if (et == ethertype::VLAN_8021Q || et == ethertype::VLAN_8021AD)
        && b.len() >= ETH_HLEN + VLAN_HLEN
    {
        (u16::from_be_bytes([b[16], b[17]]), VLAN_HLEN)
    } else {
        (et, 0)
    }
}

/// The length the receive path counts: `skb->len + ETH_HLEN` once one VLAN tag is out of line.
#[inline]
fn rx_len(f: &EthernetFrame) -> u32 {
    (f.len() - untagged_protocol(f).1) as u32
}

/// An immutable view of a port for the data plane.
#[derive(Clone, Debug)]
pub struct PortSnapshot {
    lower_mac: MacAddr,
    lower_mtu: u32,
    lower_up: bool,
    passthru: Option<DevId>,
    by_mac: MacTable,
    devs: Vec<Option<DevSnap>>,
    /// Up devices in the kernel's hash-walk order.
    flood: Vec<DevId>,
    sources: MacTable,
    /// `source_lists[i]` are the devices listening to a source MAC, in the kernel's order.
    source_lists: Vec<Box<[DevId]>>,
    /// The source addresses some source-mode macvlan listens to, sorted.
    source_macs: Box<[MacAddr]>,
    mc_filter: Bitmap256,
    bc_filter: Bitmap256,
    bc_queue_len: u32,
    /// Some macvlan has `hostaccess on` (the only per-frame cost of the option when none
    /// has: this one test on frames from the lower's own MAC).
    host_any: bool,
}

impl Default for PortSnapshot {
    fn default() -> Self {
        PortSnapshot::new(
            &LowerState::ethernet(0, "", MacAddr::ZERO, 1500),
            None,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Bitmap256::EMPTY,
            Bitmap256::EMPTY,
            0,
        )
    }
}

impl PortSnapshot {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        lower: &LowerState,
        passthru: Option<DevId>,
        devs: Vec<Option<DevSnap>>,
        up_in_walk_order: Vec<(MacAddr, DevId)>,
        sources_sorted: Vec<(MacAddr, DevId)>,
        mc_filter: Bitmap256,
        bc_filter: Bitmap256,
        bc_queue_len: u32,
    ) -> Self {
        let by_mac = MacTable::build(up_in_walk_order.iter().map(|(m, id)| (*m, id.0)));
        let flood = up_in_walk_order.iter().map(|(_, id)| *id).collect();
        let mut source_lists: Vec<Box<[DevId]>> = Vec::new();
        let mut keys = Vec::new();
        let mut i = 0;
        while i < sources_sorted.len() {
            let mac = sources_sorted[i].0;
            let mut j = i;
            let mut list = Vec::new();
            while j < sources_sorted.len() && sources_sorted[j].0 == mac {
                list.push(sources_sorted[j].1);
                j += 1;
            }
            keys.push((mac, source_lists.len() as u32));
            source_lists.push(list.into_boxed_slice());
            i = j;
        }
        let host_any = devs.iter().flatten().any(|d| d.hostaccess);
        PortSnapshot {
            host_any,
            lower_mac: lower.mac,
            lower_mtu: lower.mtu,
            lower_up: lower.up,
            passthru,
            by_mac,
            devs,
            flood,
            source_macs: keys.iter().map(|(m, _)| *m).collect(),
            sources: MacTable::build(keys),
            source_lists,
            mc_filter,
            bc_filter,
            bc_queue_len,
        }
    }

    /// The lower is up (its receive path accepts frames).
    pub fn lower_up(&self) -> bool {
        self.lower_up
    }

    /// The lower's MTU.
    pub fn lower_mtu(&self) -> u32 {
        self.lower_mtu
    }

    /// Some macvlan of the port has `hostaccess on`: the data plane needs its host path.
    pub fn hostaccess(&self) -> bool {
        self.host_any
    }

    /// The lower's MAC (the address of the lower's own host).
    pub fn lower_mac(&self) -> MacAddr {
        self.lower_mac
    }

    /// The passthru macvlan, when the port is in passthru mode.
    pub fn passthru(&self) -> Option<DevId> {
        self.passthru
    }

    /// The source addresses source-mode macvlans listen to (`macvlan_forward_source`).
    pub fn source_macs(&self) -> &[MacAddr] {
        &self.source_macs
    }

    /// Every macvlan, in id order.
    pub fn devices(&self) -> impl Iterator<Item = &DevSnap> + '_ {
        self.devs.iter().flatten()
    }

    /// The broadcast queue's capacity (`usedbcqueuelen`).
    pub fn bc_queue_len(&self) -> u32 {
        self.bc_queue_len
    }

    /// A device by id.
    #[inline]
    pub fn device(&self, id: DevId) -> Option<&DevSnap> {
        self.devs.get(id.index()).and_then(|d| d.as_ref())
    }

    /// The up macvlan owning `mac` (`macvlan_hash_lookup`).
    #[inline]
    pub fn lookup(&self, mac: MacAddr) -> Option<&DevSnap> {
        self.by_mac.get(mac).and_then(|i| self.device(DevId(i)))
    }

    /// Highest device id + 1: the size per-worker counter arrays need.
    pub fn id_bound(&self) -> usize {
        self.devs.len()
    }

    /// A frame from the wire whose source is the lower's own MAC, for a `hostaccess` macvlan:
    /// the host's frame back from the wire, which that macvlan had from the host already.
    fn host_echo_for(&self, d: &DevSnap, f: &EthernetFrame) -> bool {
        d.hostaccess && f.src() == self.lower_mac
    }

    /// `macvlan_forward_source`: copies to up source-mode listeners of `src`; returns whether a
    /// `nodst` listener consumes the frame. A listener that has left source mode no longer has a
    /// list, so every entry belongs to a source-mode device.
    fn forward_source(&self, f: &EthernetFrame, out: &mut Vec<Delivery>) -> bool {
        let Some(i) = self.sources.get(f.src()) else {
            return false;
        };
        let dst = f.dst();
        let mut consume = false;
        for id in self.source_lists[i as usize].iter() {
            let Some(d) = self.device(*id) else { continue };
            consume |= d.nodst;
            if !d.up {
                continue;
            }
            // The copy keeps the type the lower gave it, unless it is for the device's own MAC.
            let pkt_type = if dst == d.mac {
                PacketType::Host
            } else {
                PacketType::classify(dst, self.lower_mac)
            };
            out.push(Delivery {
                dev: d.id,
                pkt_type,
                bytes: rx_len(f),
                multicast: false,
                checked: true,
                refused: false,
            });
        }
        consume
    }

    /// `macvlan_handle_frame`: decides what happens to a frame the lower received. `frame` must
    /// already be reassembled if it is an IPv4 fragment with a group destination (see
    /// [`super::Defragmenter`]).
    pub fn receive(&self, frame: &[u8], out: &mut RxOutcome) {
        out.reset();
        let f = match EthernetFrame::new_checked(frame) {
            Ok(f) => f,
            Err(_) => {
                out.reason = Some(RxReason::Malformed);
                return;
            }
        };
        let dst = f.dst();
        if dst.is_multicast() {
            if self.forward_source(&f, &mut out.deliveries) {
                out.reason = Some(RxReason::NodstConsumed);
                return;
            }
            let src = self.lookup(f.src());
            out.from_port = src.is_some();
            if let Some(s) = src {
                if s.mode != Mode::Vepa && s.mode != Mode::Bridge {
                    // A hostaccess macvlan sharing the lower's address (the lower's MAC was
                    // changed to its own) cannot tell its reflection from the host's frame
                    // back from the wire, and had the host's from the host already: consumed,
                    // as every other path treats the host's echo.
                    if self.host_echo_for(s, &f) {
                        out.reason = Some(RxReason::HostEcho);
                        return;
                    }
                    // Its own transmission reflected by the far side: back to it only. The
                    // kernel counts it with length 0 and not as multicast (`len` is unset on
                    // this path of macvlan_handle_frame).
                    out.deliveries.push(Delivery {
                        dev: s.id,
                        pkt_type: PacketType::classify(dst, s.mac),
                        bytes: 0,
                        multicast: false,
                        checked: true,
                        refused: false,
                    });
                    out.reason = Some(RxReason::Reflected);
                    return;
                }
            }
            let src = src.map(|s| BcSource {
                id: s.id,
                mode: s.mode,
            });
            let h = port_mc_hash(dst);
            out.lower_stack = true;
            if self.bc_filter.test(h) {
                out.enqueue = Some(src);
                out.reason = Some(RxReason::Queued);
            } else if self.mc_filter.test(h) {
                out.group_refused = self.flood_from_wire(frame, src, &mut out.deliveries);
                out.reason = Some(RxReason::Flooded);
            } else {
                out.group_refused = !self.flood.is_empty();
                out.reason = Some(RxReason::Filtered);
            }
            return;
        }
        self.receive_unicast(&f, out);
    }

    fn receive_unicast(&self, f: &EthernetFrame, out: &mut RxOutcome) {
        if self.forward_source(f, &mut out.deliveries) {
            out.reason = Some(RxReason::NodstConsumed);
            return;
        }
        let target = match self.passthru {
            Some(id) => self.device(id),
            None => self.lookup(f.dst()),
        };
        let Some(t) = target else {
            out.lower_stack = true;
            out.reason = Some(RxReason::NotOurs);
            return;
        };
        if t.mode == Mode::Source {
            out.lower_stack = true;
            out.reason = Some(RxReason::SourceModeTarget);
            return;
        }
        if !t.up {
            out.reason = Some(RxReason::TargetDown);
            return;
        }
        if self.host_echo_for(t, f) {
            out.reason = Some(RxReason::HostEcho);
            return;
        }
        out.deliveries.push(Delivery {
            dev: t.id,
            pkt_type: PacketType::Host,
            bytes: rx_len(f),
            multicast: false,
            checked: false,
            refused: false,
        });
        out.reason = Some(RxReason::Unicast);
    }

    /// `macvlan_multicast_rx` for a frame from the wire (inline, or when the broadcast queue
    /// is processed): flood to the up macvlans the sender's mode allows. Returns whether one
    /// of them refused the group by its own filter (see [`RxOutcome::group_refused`]).
    pub fn flood_from_wire(
        &self,
        frame: &[u8],
        src: Option<BcSource>,
        out: &mut Vec<Delivery>,
    ) -> bool {
        let Ok(f) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        self.broadcast(&f, src.map(|s| s.id), flood_mask(src), false, false, out)
    }

    /// `macvlan_broadcast`. `gso`: the frame is a GSO super-frame, which
    /// `is_skb_forwardable` lets through whatever its length. Returns whether a macvlan the
    /// mode mask allows refused the group by its own filter.
    #[allow(clippy::too_many_arguments)]
    fn broadcast(
        &self,
        f: &EthernetFrame,
        src: Option<DevId>,
        mask: ModeMask,
        local: bool,
        gso: bool,
        out: &mut Vec<Delivery>,
    ) -> bool {
        if untagged_protocol(f).0 == ethertype::PAUSE {
            return false;
        }
        let dst = f.dst();
        // On transmit skb->len already includes the Ethernet header and the kernel adds
        // ETH_HLEN again; on receive it is the length after the header.
        let bytes = if local {
            (f.len() + ETH_HLEN) as u32
        } else {
            rx_len(f)
        };
        let mut group_refused = false;
        // What the lower's own host sent, back from the wire: hostaccess macvlans had it
        // from the host already.
        let host_echo = !local && self.host_any && f.src() == self.lower_mac;
        for id in &self.flood {
            let Some(d) = self.device(*id) else { continue };
            if Some(d.id) == src || !mask.contains(d.mode) {
                continue;
            }
            if !d.accepts_group(dst) {
                group_refused = true;
                continue;
            }
            if host_echo && d.hostaccess {
                continue;
            }
            let (pkt_type, refused) = if local {
                // __dev_forward_skb: eth_type_trans on the receiver, is_skb_forwardable.
                let limit = d.mtu as usize + ETH_HLEN + VLAN_HLEN;
                (PacketType::classify(dst, d.mac), !gso && f.len() > limit)
            } else {
                (PacketType::classify(dst, d.mac), false)
            };
            out.push(Delivery {
                dev: d.id,
                pkt_type,
                bytes,
                multicast: true,
                checked: true,
                refused,
            });
        }
        group_refused
    }

    /// A frame the lower's own host sent (seen on the lower's transmit path), for
    /// `hostaccess` macvlans: unicast to one of them, up, is delivered to it; a group frame to
    /// each up one whose filter passes it. Anything else, and anything not from the lower's
    /// MAC, concerns no macvlan here (it is on its way to the wire, and what comes back is
    /// decided by [`receive`](Self::receive)).
    pub fn from_host(&self, frame: &[u8], out: &mut RxOutcome) {
        out.reset();
        let f = match EthernetFrame::new_checked(frame) {
            Ok(f) => f,
            Err(_) => {
                out.reason = Some(RxReason::Malformed);
                return;
            }
        };
        out.reason = Some(RxReason::NotOurs);
        if !self.host_any || f.src() != self.lower_mac {
            return;
        }
        let dst = f.dst();
        if dst.is_multicast() {
            if untagged_protocol(&f).0 == ethertype::PAUSE {
                return;
            }
            for id in &self.flood {
                let Some(d) = self.device(*id) else { continue };
                if d.hostaccess && d.accepts_group(dst) {
                    out.deliveries.push(Delivery {
                        dev: d.id,
                        pkt_type: PacketType::classify(dst, d.mac),
                        bytes: rx_len(&f),
                        multicast: true,
                        checked: true,
                        refused: false,
                    });
                }
            }
        } else if let Some(d) = self.lookup(dst).filter(|d| d.hostaccess) {
            out.deliveries.push(Delivery {
                dev: d.id,
                pkt_type: PacketType::Host,
                bytes: rx_len(&f),
                multicast: false,
                checked: true,
                refused: false,
            });
        } else {
            return;
        }
        out.reason = Some(RxReason::FromHost);
    }

    /// `macvlan_start_xmit` / `macvlan_queue_xmit`: decides what happens to a frame macvlan
    /// `from` sent.
    pub fn transmit(&self, from: DevId, frame: &[u8], out: &mut TxOutcome) {
        self.transmit_offloaded(from, frame, false, out)
    }

    /// [`PortSnapshot::transmit`] for a frame that may be a GSO super-frame (`gso`): such
    /// frames pass the MTU checks of local delivery, as in the kernel.
    pub fn transmit_offloaded(&self, from: DevId, frame: &[u8], gso: bool, out: &mut TxOutcome) {
        out.reset();
        let Some(dev) = self.device(from).filter(|d| d.up) else {
            out.reason = Some(TxReason::SenderDown);
            return;
        };
        // The kernel parses no tag it sends: only a runt is refused here.
        let f = match EthernetFrame::new_lenient(frame) {
            Ok(f) => f,
            Err(_) => {
                out.reason = Some(TxReason::Malformed);
                return;
            }
        };
        out.tx_bytes = f.len() as u32;
        if dev.hostaccess {
            let dst = f.dst();
            if dst == self.lower_mac {
                // For the host only: a copy on the wire would reach it again by a hairpin.
                out.to_host = true;
                out.reason = Some(TxReason::ToHost);
                return;
            }
            out.to_host = dst.is_multicast();
        }
        if dev.mode == Mode::Bridge {
            let dst = f.dst();
            if dst.is_multicast() {
                out.group_refused =
                    self.broadcast(&f, Some(from), BRIDGE_ONLY, true, gso, &mut out.deliveries);
                out.to_wire = true;
                out.reason = Some(TxReason::FloodAndWire);
                return;
            }
            if self.lookup(dst).is_some_and(|t| t.mode == Mode::Bridge) {
                // dev_forward_skb(lowerdev): back in through the lower's receive path.
                out.tx_always_ok = true;
                let limit = self.lower_mtu as usize + ETH_HLEN + VLAN_HLEN;
                if !self.lower_up || (!gso && f.len() > limit) {
                    out.lower_rx_dropped = true;
                    out.reason = Some(TxReason::LocalRefused);
                    return;
                }
                // The lower's receive path strips tags first and silently frees a frame
                // whose tag is cut short (skb_vlan_untag).
                if f.truncated_vlan() {
                    out.reason = Some(TxReason::LocalRefused);
                    return;
                }
                let mut rx = RxOutcome {
                    deliveries: std::mem::take(&mut out.deliveries),
                    ..RxOutcome::default()
                };
                self.receive_unicast(&f, &mut rx);
                out.deliveries = rx.deliveries;
                out.reason = Some(TxReason::Local);
                return;
            }
        }
        out.to_wire = true;
        out.reason = Some(TxReason::Wire);
    }
}
