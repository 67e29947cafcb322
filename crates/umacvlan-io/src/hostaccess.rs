//! Host access (`hostaccess on`): the two ways between the lower's own host (its IP stack on
//! the lower) and the macvlans, which a kernel macvlan does not have.
//!
//! - **From the host**: what the host sends leaves through the lower's transmit path, which
//!   the data plane's sockets ignore (`PACKET_IGNORE_OUTGOING`: a kernel macvlan sees only the
//!   receive path). [`open_host_tx`] opens one more packet socket on the lower that takes only
//!   outgoing frames whose source is the lower's MAC; the engine decides which macvlans get
//!   them. The frames still go out on the wire (a packet socket observes, it cannot consume).
//! - **To the host**: a packet socket cannot put a frame into a receive path. [`HostInjector`]
//!   is a hidden TAP in the lower's namespace, with the lower's MAC, no ARP and no addresses,
//!   whose ingress redirects every frame into the lower's receive path (`tc` `ingress` qdisc,
//!   match-all `u32`, `mirred ingress redirect`). It is not persistent: it disappears, with its
//!   qdisc and filter, when the daemon's descriptor closes (also on SIGKILL).
//!
//! Packet taps on the lower see what is redirected into its receive path, so the data plane's
//! own sockets would take injected frames for frames from the wire. Each injected frame
//! therefore carries a marker, an 802.1ad priority tag ([`MARK_TPID`], [`MARK_TCI`]: VID 0,
//! PCP 7, DEI 1), which the TAP's receive path moves out of line, the lower's taps report as
//! the frame's tag (where [`crate::LowerSocket::drop_host_injected`] drops it), and the
//! lower's stack ignores (VID 0 is a priority tag: the frame is taken as untagged).

use std::io;

use crate::afpacket::{LowerOptions, LowerSocket, VNET_HDR_LEN};
use crate::netlink::{LinkChange, RtNetlink};
use crate::tap::{Tap, TapOptions};
use umacvlan_core::wire::MacAddr;

/// TPID of the marker tag on injected frames (802.1ad).
pub const MARK_TPID: u16 = 0x88a8;
/// TCI of the marker tag: VID 0 (a priority tag, which the receiving stack ignores), PCP 7,
/// DEI 1 — a combination no sane sender uses on an untagged port.
pub const MARK_TCI: u16 = 0xf000;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const VNET_F_NEEDS_CSUM: u8 = 1;

/// The hidden device that carries frames into the lower's receive path.
#[derive(Debug)]
pub struct HostInjector {
    tap: Tap,
    name: String,
    ifindex: u32,
    hdr: usize,
}

impl HostInjector {
    /// Creates the hidden TAP `name` in the calling thread's namespace, which must be the
    /// lower's, for the lower `lower_ifindex` with address `lower_mac` (so that frames for
    /// the lower's MAC are the host's, `PACKET_HOST`). `vnet_hdr`: frames written carry a
    /// `virtio_net_hdr`, as the data plane's do. Nothing is left behind on error.
    pub fn create(
        name: &str,
        lower_ifindex: u32,
        lower_mac: MacAddr,
        vnet_hdr: bool,
    ) -> io::Result<HostInjector> {
        let tap = Tap::create(
            name,
            TapOptions {
                vnet_hdr,
                multi_queue: false,
            },
        )?;
        let ifindex = tap.ifindex()?;
        let mut nl = RtNetlink::open()?;
        nl.set_link_silent(ifindex).map_err(to_io)?;
        tap.set_mac(lower_mac)?;
        nl.redirect_to_ingress(ifindex, lower_ifindex)
            .map_err(to_io)?;
        nl.set_link(
            ifindex,
            &LinkChange {
                up: Some(true),
                ..LinkChange::default()
            },
        )
        .map_err(to_io)?;
        Ok(HostInjector {
            tap,
            name: name.to_string(),
            ifindex,
            hdr: if vnet_hdr { VNET_HDR_LEN } else { 0 },
        })
    }

    /// The hidden device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hidden device's ifindex.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Follows a change of the lower's MAC.
    pub fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        self.tap.set_mac(mac)
    }

    /// Puts `packet` (the vnet header, if any, then the frame) into the lower's receive path,
    /// with the marker tag after the addresses (the header's offsets move with it).
    pub fn inject(&self, packet: &[u8]) -> io::Result<()> {
        if packet.len() < self.hdr + 14 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (h, frame) = packet.split_at(self.hdr);
        let mut vh = [0u8; VNET_HDR_LEN];
        vh[..self.hdr].copy_from_slice(h);
        if self.hdr == VNET_HDR_LEN {
            let bump = |b: &mut [u8; VNET_HDR_LEN], at: usize| {
                let v = u16::from_le_bytes([b[at], b[at + 1]]).wrapping_add(4);
                b[at..at + 2].copy_from_slice(&v.to_le_bytes());
            };
            if vh[0] & VNET_F_NEEDS_CSUM != 0 {
                bump(&mut vh, 6);
            }
            if vh[1] != 0 {
                bump(&mut vh, 2);
            }
        }
        let mut tag = [0u8; 4];
        tag[..2].copy_from_slice(&MARK_TPID.to_be_bytes());
        tag[2..].copy_from_slice(&MARK_TCI.to_be_bytes());
        self.tap
            .write_parts(&[&vh[..self.hdr], &frame[..12], &tag, &frame[12..]])
    }
}

/// A packet socket on the lower `ifindex` (of the calling thread's namespace) that receives
/// only what the lower's own host sends (`PACKET_OUTGOING` from `lower_mac`) to a group or to
/// one of `dsts` (see [`LowerSocket::keep_only_outgoing_from`]), with vnet headers when
/// `vnet_hdr`. Not in any fanout group, holding no membership.
pub fn open_host_tx(
    ifindex: u32,
    lower_mac: MacAddr,
    dsts: &[MacAddr],
    vnet_hdr: bool,
) -> io::Result<LowerSocket> {
    let s = LowerSocket::open(
        ifindex,
        &LowerOptions {
            ignore_outgoing: false,
            vnet_hdr,
            rcvbuf: Some(4 << 20),
            ..LowerOptions::default()
        },
    )?;
    s.keep_only_outgoing_from(lower_mac, dsts)?;
    // Frames queued between bind and the filter passed no filter: drop them.
    let mut b = crate::afpacket::RxBatch::new(8);
    while s.recv_batch(&mut b).unwrap_or(0) > 0 {}
    Ok(s)
}

fn to_io(e: crate::netlink::NetlinkError) -> io::Error {
    match e.raw_os_error() {
        Some(c) => io::Error::from_raw_os_error(c),
        None => io::Error::other(e.to_string()),
    }
}
