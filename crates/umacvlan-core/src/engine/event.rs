//! One frame decision as a plain record, for `monitor` and `capture`.
//!
//! [`FrameEvent`] is `#[repr(C)]` with fixed-width fields and fixed codes ([`Entry`],
//! [`RxReason`], [`TxReason`], the [`counter`] and [`flag`] bits) so that producers other
//! than the userspace data plane — eBPF programs writing to a ring buffer — can emit the same
//! bytes. Builders here fill it from an engine outcome; the caller supplies the time (the
//! engine has no clock).

use super::{DevId, Mode, RxOutcome, RxReason, TxOutcome, TxReason};
use crate::wire::{ethertype, ETH_HLEN};

/// Where a frame entered the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Entry {
    /// Received from the lower device (the wire); `reason` is an [`RxReason`].
    Lower = 1,
    /// Sent by a macvlan (`dev`); `reason` is a [`TxReason`].
    Macvlan = 2,
    /// Taken off the broadcast queue and flooded; `reason` is [`RxReason::Flooded`].
    BcQueue = 3,
    /// Sent by the lower's own host (`hostaccess`); `reason` is an [`RxReason`].
    Host = 4,
}

impl Entry {
    /// From a code.
    pub const fn from_code(c: u8) -> Option<Entry> {
        Some(match c {
            1 => Entry::Lower,
            2 => Entry::Macvlan,
            3 => Entry::BcQueue,
            4 => Entry::Host,
            _ => return None,
        })
    }
}

/// Counter bits of [`FrameEvent::counters`]: which counters the decision moved.
pub mod counter {
    /// Receivers' `rx_packets`/`rx_bytes`.
    pub const RX: u32 = 1 << 0;
    /// Receivers' `multicast`.
    pub const RX_MULTICAST: u32 = 1 << 1;
    /// A receiver's `rx_errors`/`rx_dropped` (refused copy or failed write).
    pub const RX_ERRORS: u32 = 1 << 2;
    /// The sender's `tx_packets`/`tx_bytes`.
    pub const TX: u32 = 1 << 3;
    /// The sender's `tx_dropped` (the send failed).
    pub const TX_DROPPED: u32 = 1 << 4;
    /// The port's `lower_rx_dropped` (what the kernel charges to the lower).
    pub const LOWER_RX_DROPPED: u32 = 1 << 5;
    /// The port's `malformed`.
    pub const MALFORMED: u32 = 1 << 6;
    /// Names, in bit order.
    pub const NAMES: [&str; 7] = [
        "rx_packets",
        "multicast",
        "rx_errors",
        "tx_packets",
        "tx_dropped",
        "lower_rx_dropped",
        "malformed",
    ];
}

/// Flag bits of [`FrameEvent::flags`].
pub mod flag {
    /// The lower's own stack receives the frame too.
    pub const LOWER_STACK: u8 = 1 << 0;
    /// Bound for the broadcast queue, which was full: dropped.
    pub const QUEUE_FULL: u8 = 1 << 1;
    /// Sent to the wire.
    pub const TO_WIRE: u8 = 1 << 2;
    /// The event carries frame bytes after it (capture).
    pub const HAS_DATA: u8 = 1 << 3;
    /// Given to the lower's own host (`hostaccess`).
    pub const TO_HOST: u8 = 1 << 4;
}

/// No device in [`FrameEvent::dev`]/[`FrameEvent::to`].
pub const NO_DEV: u32 = u32::MAX;
/// No VLAN tag in [`FrameEvent::vlan`].
pub const NO_VLAN: u16 = u16::MAX;

/// One frame decision. Fields are native-endian integers and byte arrays, no padding holes
/// between them (56 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FrameEvent {
    /// Nanoseconds since the Unix epoch (the producer's clock).
    pub ts_ns: u64,
    /// The lower device's ifindex (the port).
    pub port: u32,
    /// The sending macvlan's id ([`Entry::Macvlan`]), else [`NO_DEV`].
    pub dev: u32,
    /// The receiving macvlan of a single-copy decision, else [`NO_DEV`].
    pub to: u32,
    /// Frame length in bytes (as seen by the engine, without vnet header).
    pub len: u32,
    /// [`counter`] bits.
    pub counters: u32,
    /// Ethertype after the VLAN tags (0 when the frame is too short to have one).
    pub ethertype: u16,
    /// Outer VLAN id, or [`NO_VLAN`].
    pub vlan: u16,
    /// Copies written to macvlans.
    pub copies: u16,
    /// Copies refused or whose write failed.
    pub failed: u16,
    /// Source MAC.
    pub src: [u8; 6],
    /// Destination MAC.
    pub dst: [u8; 6],
    /// [`Entry`] code.
    pub entry: u8,
    /// [`RxReason`] or [`TxReason`] code, by `entry`.
    pub reason: u8,
    /// The deciding macvlan's mode bits (`MACVLAN_MODE_*`; 0: none): the sender's for
    /// [`Entry::Macvlan`]; for [`Entry::Lower`] the target's (unicast) or the sending
    /// sibling's (multicast); for [`Entry::BcQueue`] the sending sibling's.
    pub mode: u8,
    /// [`flag`] bits.
    pub flags: u8,
}

impl FrameEvent {
    /// The header fields of `frame` (as much as is there).
    fn with_frame(entry: Entry, port: u32, ts_ns: u64, frame: &[u8]) -> FrameEvent {
        let mut e = FrameEvent {
            ts_ns,
            port,
            dev: NO_DEV,
            to: NO_DEV,
            len: frame.len() as u32,
            vlan: NO_VLAN,
            entry: entry as u8,
            ..FrameEvent::default()
        };
        if frame.len() >= 6 {
            e.dst.copy_from_slice(&frame[..6]);
        }
        if frame.len() >= 12 {
            e.src.copy_from_slice(&frame[6..12]);
        }
        if frame.len() >= ETH_HLEN {
            let mut et = u16::from_be_bytes([frame[12], frame[13]]);
            let mut off = ETH_HLEN;
            while (et == ethertype::VLAN_8021Q || et == ethertype::VLAN_8021AD)
                && frame.len() >= off + 4
            {
                if e.vlan == NO_VLAN {
                    e.vlan = u16::from_be_bytes([frame[off], frame[off + 1]]) & 0x0fff;
                }
                et = u16::from_be_bytes([frame[off + 2], frame[off + 3]]);
                off += 4;
            }
            e.ethertype = et;
        }
        e
    }

    /// A frame from the wire and its receive outcome. `written[i]`: delivery `i` was written
    /// (false for refused copies and failed writes); `queue_full`: the broadcast queue refused it.
    pub fn received(
        port: u32,
        ts_ns: u64,
        frame: &[u8],
        out: &RxOutcome,
        failed: u16,
        queue_full: bool,
        snap_mode: impl Fn(DevId) -> Option<Mode>,
    ) -> FrameEvent {
        let mut e = FrameEvent::with_frame(Entry::Lower, port, ts_ns, frame);
        let reason = out.reason.unwrap_or(RxReason::Malformed);
        e.reason = reason as u8;
        e.copies = (out.deliveries.len() as u16).saturating_sub(failed);
        e.failed = failed;
        if out.lower_stack {
            e.flags |= flag::LOWER_STACK;
        }
        if let [d] = out.deliveries.as_slice() {
            e.to = d.dev.0;
            e.mode = snap_mode(d.dev).map_or(0, |m| m.bits() as u8);
        }
        e.counters = delivery_counters(&out.deliveries, failed);
        if queue_full {
            e.flags |= flag::QUEUE_FULL;
            e.counters |= counter::LOWER_RX_DROPPED;
        }
        if reason == RxReason::Malformed {
            e.counters |= counter::MALFORMED;
        }
        e
    }

    /// A frame macvlan `from` (in `mode`) sent and its transmit outcome; `sent`: whether the
    /// send to the wire succeeded (ignored when not sent to the wire).
    #[allow(clippy::too_many_arguments)]
    pub fn transmitted(
        port: u32,
        ts_ns: u64,
        from: DevId,
        mode: Option<Mode>,
        frame: &[u8],
        out: &TxOutcome,
        failed: u16,
        sent: bool,
    ) -> FrameEvent {
        let mut e = FrameEvent::with_frame(Entry::Macvlan, port, ts_ns, frame);
        let reason = out.reason.unwrap_or(TxReason::Malformed);
        e.reason = reason as u8;
        e.dev = from.0;
        e.mode = mode.map_or(0, |m| m.bits() as u8);
        e.copies = (out.deliveries.len() as u16).saturating_sub(failed);
        e.failed = failed;
        if let [d] = out.deliveries.as_slice() {
            e.to = d.dev.0;
        }
        e.counters = delivery_counters(&out.deliveries, failed);
        if out.to_wire {
            e.flags |= flag::TO_WIRE;
            e.counters |= if sent {
                counter::TX
            } else {
                counter::TX_DROPPED
            };
        } else if out.reason == Some(TxReason::ToHost) {
            // `sent`: whether the host took it.
            e.counters |= if sent {
                counter::TX
            } else {
                counter::TX_DROPPED
            };
        } else if out.tx_bytes > 0 {
            e.counters |= counter::TX;
        }
        if out.to_host {
            e.flags |= flag::TO_HOST;
        }
        if out.lower_rx_dropped {
            e.counters |= counter::LOWER_RX_DROPPED;
        }
        if reason == TxReason::Malformed {
            e.counters |= counter::MALFORMED;
        }
        e
    }

    /// A frame taken off the broadcast queue and flooded to `deliveries`; `src_mode`: the
    /// sending sibling's mode when a macvlan of the port sent it.
    pub fn flooded(
        port: u32,
        ts_ns: u64,
        frame: &[u8],
        deliveries: &[super::Delivery],
        failed: u16,
        src_mode: Option<Mode>,
    ) -> FrameEvent {
        let mut e = FrameEvent::with_frame(Entry::BcQueue, port, ts_ns, frame);
        e.mode = src_mode.map_or(0, |m| m.bits() as u8);
        e.reason = RxReason::Flooded as u8;
        e.copies = (deliveries.len() as u16).saturating_sub(failed);
        e.failed = failed;
        if let [d] = deliveries {
            e.to = d.dev.0;
        }
        e.counters = delivery_counters(deliveries, failed);
        e
    }

    /// The entry point.
    pub fn entry(&self) -> Option<Entry> {
        Entry::from_code(self.entry)
    }

    /// The receive reason, for [`Entry::Lower`] and [`Entry::BcQueue`].
    pub fn rx_reason(&self) -> Option<RxReason> {
        match self.entry() {
            Some(Entry::Lower | Entry::BcQueue | Entry::Host) => RxReason::from_code(self.reason),
            _ => None,
        }
    }

    /// The transmit reason, for [`Entry::Macvlan`].
    pub fn tx_reason(&self) -> Option<TxReason> {
        match self.entry() {
            Some(Entry::Macvlan) => TxReason::from_code(self.reason),
            _ => None,
        }
    }

    /// The deciding macvlan's mode.
    pub fn mode(&self) -> Option<Mode> {
        Mode::from_bits(self.mode as u32)
    }

    /// A drop: the decision sends the frame nowhere it was meant to go, or a copy failed.
    pub fn is_drop(&self) -> bool {
        // A flood no macvlan's filter let through reaches none of them (the lower's stack
        // still gets a frame from the wire).
        // (From a sibling — `mode` set — an empty flood is the mode rule working: bridge peers
        // had the frame on the way out.)
        let flooded_to_none =
            self.rx_reason() == Some(RxReason::Flooded) && self.copies == 0 && self.mode == 0;
        flooded_to_none
            || self.flags & flag::QUEUE_FULL != 0
            || self.failed > 0
            || self.counters & counter::TX_DROPPED != 0
            || self.rx_reason().is_some_and(RxReason::is_drop)
            || self.tx_reason().is_some_and(TxReason::is_drop)
    }

    /// The names of the counters touched.
    pub fn counter_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        counter::NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.counters & (1 << i) != 0)
            .map(|(_, n)| *n)
    }
}

fn delivery_counters(ds: &[super::Delivery], failed: u16) -> u32 {
    let mut c = 0;
    if ds.len() > failed as usize {
        c |= counter::RX;
        if ds.iter().any(|d| d.multicast) {
            c |= counter::RX_MULTICAST;
        }
    }
    if failed > 0 {
        c |= counter::RX_ERRORS;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// The layout other producers (eBPF) mirror: sizes and offsets are part of the format.
    #[test]
    fn frame_event_layout_is_fixed() {
        assert_eq!(size_of::<FrameEvent>(), 56);
        assert_eq!(offset_of!(FrameEvent, ts_ns), 0);
        assert_eq!(offset_of!(FrameEvent, port), 8);
        assert_eq!(offset_of!(FrameEvent, dev), 12);
        assert_eq!(offset_of!(FrameEvent, to), 16);
        assert_eq!(offset_of!(FrameEvent, len), 20);
        assert_eq!(offset_of!(FrameEvent, counters), 24);
        assert_eq!(offset_of!(FrameEvent, ethertype), 28);
        assert_eq!(offset_of!(FrameEvent, vlan), 30);
        assert_eq!(offset_of!(FrameEvent, copies), 32);
        assert_eq!(offset_of!(FrameEvent, failed), 34);
        assert_eq!(offset_of!(FrameEvent, src), 36);
        assert_eq!(offset_of!(FrameEvent, dst), 42);
        assert_eq!(offset_of!(FrameEvent, entry), 48);
        assert_eq!(offset_of!(FrameEvent, reason), 49);
        assert_eq!(offset_of!(FrameEvent, mode), 50);
        assert_eq!(offset_of!(FrameEvent, flags), 51);
    }

    #[test]
    fn reason_codes_are_fixed() {
        assert_eq!(RxReason::NotOurs as u8, 1);
        assert_eq!(RxReason::Malformed as u8, 10);
        assert_eq!(TxReason::Wire as u8, 1);
        assert_eq!(TxReason::Malformed as u8, 6);
        assert_eq!(RxReason::HostEcho as u8, 11);
        assert_eq!(RxReason::FromHost as u8, 12);
        assert_eq!(TxReason::ToHost as u8, 7);
        assert_eq!(Entry::from_code(4), Some(Entry::Host));
        for c in 0..=255u8 {
            if let Some(r) = RxReason::from_code(c) {
                assert_eq!(r.code(), c);
            }
            if let Some(r) = TxReason::from_code(c) {
                assert_eq!(r.code(), c);
            }
        }
    }

    #[test]
    fn header_fields_come_from_the_frame() {
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        f[14..16].copy_from_slice(&0x2005u16.to_be_bytes());
        f[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
        let e = FrameEvent::with_frame(Entry::Lower, 7, 1, &f);
        assert_eq!((e.vlan, e.ethertype, e.len), (5, 0x0806, 64));
        assert_eq!(e.src, [2, 0, 0, 0, 0, 1]);
        assert_eq!(e.dst, [0xff; 6]);
        let short = FrameEvent::with_frame(Entry::Lower, 7, 1, &f[..8]);
        assert_eq!((short.vlan, short.ethertype), (NO_VLAN, 0));
    }
}
