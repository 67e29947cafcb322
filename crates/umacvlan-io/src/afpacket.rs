//! The lower device's AF_PACKET socket ([`LowerSocket`]), batched receive into a preallocated
//! [`RxBatch`], and the kernel-refcounted memberships that make the lower accept our traffic
//! ([`Membership`], [`MembershipSet`], [`reconcile`]).
//!
//! Memberships (`PACKET_ADD_MEMBERSHIP`) are owned by the socket: the kernel counts them per
//! socket and drops them all when the socket is closed, so a crashed daemon leaves the NIC's
//! filters and promiscuity as it found them.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use umacvlan_core::wire::{MacAddr, ETH_HLEN, VLAN_HLEN};

use crate::netns::NetnsHandle;
use crate::sys;

/// The most frames one `recvmmsg`/`sendmmsg` call handles (the size of the on-stack
/// descriptor arrays).
pub const MAX_BATCH: usize = 64;

/// Default room for one frame: a 64 KiB IP datagram plus Ethernet header and tags, so GRO'd
/// or jumbo frames up to 64 KiB are never truncated.
pub const DEFAULT_FRAME_CAPACITY: usize = 65_536 + 128;

/// Bytes reserved in front of each receive slot so a stripped 802.1Q tag can be re-inserted
/// by moving only the 12 address bytes.
const HEADROOM: usize = VLAN_HLEN;

/// Room for one `tpacket_auxdata` control message (`CMSG_SPACE(20)` = 40), as u64s for
/// `cmsghdr` alignment.
const CTRL_WORDS: usize = 8;

/// `htons(ETH_P_ALL)`.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// `sll_pkttype`: how the kernel classified a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Addressed to the device's own MAC (`PACKET_HOST`).
    Host,
    /// Broadcast (`PACKET_BROADCAST`).
    Broadcast,
    /// Multicast (`PACKET_MULTICAST`).
    Multicast,
    /// Unicast to another MAC (`PACKET_OTHERHOST`): seen because of promiscuity, a unicast
    /// filter entry, or a device (like veth) that does not filter at all.
    OtherHost,
    /// Sent by this host (`PACKET_OUTGOING`); only with `ignore_outgoing` off.
    Outgoing,
    /// Any other value (loopback, user, kernel).
    Other(u8),
}

impl PacketType {
    /// From the raw `sll_pkttype`.
    pub fn from_raw(v: u8) -> Self {
        match v {
            libc::PACKET_HOST => PacketType::Host,
            libc::PACKET_BROADCAST => PacketType::Broadcast,
            libc::PACKET_MULTICAST => PacketType::Multicast,
            libc::PACKET_OTHERHOST => PacketType::OtherHost,
            libc::PACKET_OUTGOING => PacketType::Outgoing,
            o => PacketType::Other(o),
        }
    }

    /// The raw `sll_pkttype`.
    pub fn to_raw(self) -> u8 {
        match self {
            PacketType::Host => libc::PACKET_HOST,
            PacketType::Broadcast => libc::PACKET_BROADCAST,
            PacketType::Multicast => libc::PACKET_MULTICAST,
            PacketType::OtherHost => libc::PACKET_OTHERHOST,
            PacketType::Outgoing => libc::PACKET_OUTGOING,
            PacketType::Other(o) => o,
        }
    }
}

/// An 802.1Q/802.1ad tag the kernel had stripped and we re-inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The tag protocol (0x8100 or 0x88a8).
    pub tpid: u16,
    /// Priority, DEI and VLAN id.
    pub tci: u16,
}

/// One received frame, borrowed from an [`RxBatch`].
#[derive(Clone, Copy, Debug)]
pub struct RxFrame<'a> {
    /// The frame bytes from the destination MAC on, with any stripped VLAN tag re-inserted.
    /// Shorter than `orig_len` only if the frame did not fit the slot.
    pub data: &'a [u8],
    /// How the kernel classified it.
    pub pkttype: PacketType,
    /// The frame's full length on the wire (including a re-inserted tag).
    pub orig_len: usize,
    /// The tag that was re-inserted into `data`, if the kernel had stripped one.
    pub vlan: Option<VlanTag>,
    /// The `virtio_net_hdr` (when the socket has [`LowerOptions::vnet_hdr`]) followed by the
    /// frame, contiguous: what a TAP with `IFF_VNET_HDR` takes in one write. Equal to `data`
    /// without a vnet header.
    pub packet: &'a [u8],
}

/// Length of a `virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const VNET_F_NEEDS_CSUM: u8 = 1;

/// Whether a `virtio_net_hdr` describes a GSO super-frame.
pub fn vnet_is_gso(hdr: &[u8]) -> bool {
    hdr.len() >= VNET_HDR_LEN && hdr[1] & 0x7f != 0
}

impl RxFrame<'_> {
    /// The frame was longer than the slot and `data` holds only its start.
    pub fn truncated(&self) -> bool {
        self.data.len() < self.orig_len
    }
}

#[derive(Clone, Copy, Debug)]
struct RxMeta {
    off: usize,
    /// Bytes of vnet header just before `off`.
    hdr: usize,
    len: usize,
    orig_len: usize,
    pkttype: PacketType,
    vlan: Option<VlanTag>,
}

const EMPTY_META: RxMeta = RxMeta {
    off: HEADROOM,
    hdr: 0,
    len: 0,
    orig_len: 0,
    pkttype: PacketType::Host,
    vlan: None,
};

/// A preallocated batch of receive slots. Receiving into it allocates nothing; each receive
/// replaces the previous contents.
pub struct RxBatch {
    /// `count` slots of `stride` bytes: `HEADROOM` then `frame_cap` bytes of frame.
    bufs: Vec<u8>,
    stride: usize,
    frame_cap: usize,
    names: Vec<libc::sockaddr_ll>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
    meta: Vec<RxMeta>,
    len: usize,
}

impl RxBatch {
    /// `count` slots (clamped to `1..=MAX_BATCH`) of [`DEFAULT_FRAME_CAPACITY`] bytes.
    pub fn new(count: usize) -> Self {
        Self::with_frame_capacity(count, DEFAULT_FRAME_CAPACITY)
    }

    /// `count` slots (clamped to `1..=MAX_BATCH`) holding frames of up to `frame_cap` bytes
    /// (at least `ETH_HLEN`).
    pub fn with_frame_capacity(count: usize, frame_cap: usize) -> Self {
        let count = count.clamp(1, MAX_BATCH);
        let frame_cap = frame_cap.max(ETH_HLEN);
        let stride = HEADROOM + frame_cap;
        RxBatch {
            bufs: vec![0; count * stride],
            stride,
            frame_cap,
            names: vec![sys::Pod::zeroed(); count],
            ctrl: vec![[0; CTRL_WORDS]; count],
            meta: vec![EMPTY_META; count],
            len: 0,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    /// Largest frame a slot holds without truncation (not counting a re-inserted tag).
    pub fn frame_capacity(&self) -> usize {
        self.frame_cap
    }

    /// Number of frames from the last receive.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No frames.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the frames (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Frame `i` (panics if `i >= len()`).
    pub fn get(&self, i: usize) -> RxFrame<'_> {
        assert!(i < self.len, "RxBatch index {i} out of range {}", self.len);
        let m = &self.meta[i];
        let base = i * self.stride + m.off;
        RxFrame {
            data: &self.bufs[base..base + m.len],
            pkttype: m.pkttype,
            orig_len: m.orig_len,
            vlan: m.vlan,
            packet: &self.bufs[base - m.hdr..base + m.len],
        }
    }

    /// The bytes of frame `i`, mutable, for in-place rewriting (panics if `i >= len()`).
    pub fn data_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.len, "RxBatch index {i} out of range {}", self.len);
        let m = &self.meta[i];
        let base = i * self.stride + m.off;
        &mut self.bufs[base..base + m.len]
    }

    /// The frames of the last receive.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RxFrame<'_>> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }

    /// Appends a copy of `frame` as if received (used by in-memory backends and tests).
    /// Longer frames are truncated to the slot, keeping `orig_len`. Returns `false` when
    /// the batch is full.
    pub fn push(&mut self, frame: &[u8], pkttype: PacketType) -> bool {
        if self.len == self.capacity() {
            return false;
        }
        let i = self.len;
        let stored = frame.len().min(self.frame_cap);
        let base = i * self.stride + HEADROOM;
        self.bufs[base..base + stored].copy_from_slice(&frame[..stored]);
        self.meta[i] = RxMeta {
            off: HEADROOM,
            hdr: 0,
            len: stored,
            orig_len: frame.len(),
            pkttype,
            vlan: None,
        };
        self.len += 1;
        true
    }
}

impl fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxBatch")
            .field("capacity", &self.capacity())
            .field("frame_cap", &self.frame_cap)
            .field("len", &self.len)
            .finish()
    }
}

/// Re-inserts a stripped VLAN tag into a receive slot laid out as `HEADROOM` free bytes then
/// `len` frame bytes. Moves the two MAC addresses back by four bytes and writes the tag after
/// them. Returns the new frame's offset and length in the slot. Frames too short to have MAC
/// addresses are left alone.
#[cfg(test)]
fn reinsert_tag(slot: &mut [u8], len: usize, tag: VlanTag) -> (usize, usize) {
    reinsert_tag_after(slot, 0, len, tag)
}

/// [`reinsert_tag`] for a slot whose frame is preceded by a `hdr`-byte vnet header (which moves
/// with the addresses, its checksum start and GSO header length growing by the tag's four bytes).
fn reinsert_tag_after(slot: &mut [u8], hdr: usize, len: usize, tag: VlanTag) -> (usize, usize) {
    debug_assert!(slot.len() >= HEADROOM + hdr + len);
    if len < 12 {
        return (HEADROOM + hdr, len);
    }
    slot.copy_within(HEADROOM..HEADROOM + hdr + 12, HEADROOM - VLAN_HLEN);
    let t = HEADROOM - VLAN_HLEN + hdr + 12;
    slot[t..t + 2].copy_from_slice(&tag.tpid.to_be_bytes());
    slot[t + 2..t + 4].copy_from_slice(&tag.tci.to_be_bytes());
    if hdr == VNET_HDR_LEN {
        let h = HEADROOM - VLAN_HLEN;
        let bump = |slot: &mut [u8], at: usize| {
            let v = u16::from_le_bytes([slot[at], slot[at + 1]]).wrapping_add(VLAN_HLEN as u16);
            slot[at..at + 2].copy_from_slice(&v.to_le_bytes());
        };
        if slot[h] & VNET_F_NEEDS_CSUM != 0 {
            bump(slot, h + 6);
        }
        if slot[h + 1] != 0 {
            bump(slot, h + 2);
        }
    }
    (HEADROOM - VLAN_HLEN + hdr, len + VLAN_HLEN)
}

/// The VLAN tag in a `PACKET_AUXDATA` control message, if the kernel reports one.
fn parse_aux_vlan(ctrl: &[u8]) -> Option<VlanTag> {
    // Walk the cmsghdr chain by hand: { size_t len; int level; int type; data... }, each
    // entry aligned to size_t. Safe byte parsing instead of the CMSG_* pointer macros.
    const W: usize = mem::size_of::<usize>();
    const HDR: usize = W + 8;
    let mut off = 0;
    while off + HDR <= ctrl.len() {
        let clen = usize::from_ne_bytes(ctrl[off..off + W].try_into().ok()?);
        let level = i32::from_ne_bytes(ctrl[off + W..off + W + 4].try_into().ok()?);
        let ty = i32::from_ne_bytes(ctrl[off + W + 4..off + W + 8].try_into().ok()?);
        if clen < HDR || off + clen > ctrl.len() {
            return None;
        }
        let data = &ctrl[off + HDR..off + clen];
        if level == libc::SOL_PACKET && ty == libc::PACKET_AUXDATA && data.len() >= 20 {
            let u32_at = |o: usize| u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
            let u16_at = |o: usize| u16::from_ne_bytes(data[o..o + 2].try_into().unwrap());
            let status = u32_at(0);
            if status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                u16_at(18)
            } else {
                0x8100
            };
            return Some(VlanTag {
                tpid,
                tci: u16_at(16),
            });
        }
        off += clen.div_ceil(W) * W;
    }
    None
}

/// `PACKET_FANOUT` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// By flow hash: a flow always reaches the same socket (keeps per-flow order).
    Hash,
    /// Round robin.
    LoadBalance,
    /// By receiving CPU.
    Cpu,
    /// By the NIC's receive queue.
    QueueMapping,
}

/// Joining a fanout group: sockets on the same device with the same group id share its
/// traffic, each frame reaching exactly one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fanout {
    /// The group id (one namespace-wide id space shared with every other program). `None`
    /// asks the kernel for an id no one uses (`PACKET_FANOUT_FLAG_UNIQUEID`); read it back with
    /// [`LowerSocket::fanout_group`] and let the other members join with `Some(id)`.
    pub group: Option<u16>,
    /// How frames are spread.
    pub mode: FanoutMode,
    /// Hand frames to another socket when the chosen one's buffer is full.
    pub rollover: bool,
}

/// How to open a [`LowerSocket`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    /// Do not receive frames this host sends on the device (`PACKET_IGNORE_OUTGOING`, and
    /// `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` for a fanout group). Default `true`: the kernel
    /// macvlan sees only the lower's receive path, never what the lower's host sends.
    pub ignore_outgoing: bool,
    /// Join a fanout group.
    pub fanout: Option<Fanout>,
    /// `SO_RCVBUF` in bytes (forced past `rmem_max` when permitted).
    pub rcvbuf: Option<usize>,
    /// `SO_SNDBUF` in bytes (forced past `wmem_max` when permitted).
    pub sndbuf: Option<usize>,
    /// Transmit straight to the driver, skipping the qdisc (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// `PACKET_VNET_HDR`: each received frame comes after a `virtio_net_hdr` (checksum and GSO
    /// state, so offloaded super-frames and partial checksums survive the trip), and each sent
    /// frame must be preceded by one ([`RxFrame::packet`] has the received layout).
    pub vnet_hdr: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            ignore_outgoing: true,
            fanout: None,
            rcvbuf: None,
            sndbuf: None,
            qdisc_bypass: false,
            vnet_hdr: false,
        }
    }
}

/// `PACKET_STATISTICS` since the last call (reading resets the kernel's counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Frames queued to the socket, including dropped ones.
    pub packets: u32,
    /// Frames dropped because the receive buffer was full.
    pub drops: u32,
}

/// A membership on the lower device, held by a socket (`PACKET_ADD_MEMBERSHIP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Membership {
    /// Promiscuous mode (`PACKET_MR_PROMISC`).
    Promisc,
    /// All multicast (`PACKET_MR_ALLMULTI`).
    AllMulti,
    /// A secondary unicast address in the device's filter (`PACKET_MR_UNICAST`). Devices
    /// without a unicast filter go promiscuous instead.
    Unicast(MacAddr),
    /// A multicast address in the device's filter (`PACKET_MR_MULTICAST`).
    Multicast(MacAddr),
}

impl Membership {
    fn mreq(&self, ifindex: u32) -> libc::packet_mreq {
        let mut r: libc::packet_mreq = sys::Pod::zeroed();
        r.mr_ifindex = ifindex as libc::c_int;
        let (ty, mac) = match self {
            Membership::Promisc => (libc::PACKET_MR_PROMISC, None),
            Membership::AllMulti => (libc::PACKET_MR_ALLMULTI, None),
            Membership::Unicast(m) => (libc::PACKET_MR_UNICAST, Some(m)),
            Membership::Multicast(m) => (libc::PACKET_MR_MULTICAST, Some(m)),
        };
        r.mr_type = ty as libc::c_ushort;
        if let Some(m) = mac {
            r.mr_alen = 6;
            r.mr_address[..6].copy_from_slice(&m.0);
        }
        r
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Membership::Promisc => f.write_str("promisc"),
            Membership::AllMulti => f.write_str("allmulti"),
            Membership::Unicast(m) => write!(f, "unicast {m}"),
            Membership::Multicast(m) => write!(f, "multicast {m}"),
        }
    }
}

/// A set of memberships (what a socket holds, or what it should hold).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipSet(BTreeSet<Membership>);

impl MembershipSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds `m`; `false` if it was present.
    pub fn insert(&mut self, m: Membership) -> bool {
        self.0.insert(m)
    }
    /// Removes `m`; `false` if it was absent.
    pub fn remove(&mut self, m: &Membership) -> bool {
        self.0.remove(m)
    }
    /// Whether `m` is in the set.
    pub fn contains(&self, m: &Membership) -> bool {
        self.0.contains(m)
    }
    /// Number of memberships.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// No memberships.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// In order.
    pub fn iter(&self) -> impl Iterator<Item = &Membership> + '_ {
        self.0.iter()
    }
    /// What `wanted` has and `self` lacks.
    pub fn missing_from<'a>(
        &'a self,
        wanted: &'a MembershipSet,
    ) -> impl Iterator<Item = Membership> + 'a {
        wanted.0.difference(&self.0).copied()
    }
    /// What `self` has and `wanted` lacks.
    pub fn surplus_over<'a>(
        &'a self,
        wanted: &'a MembershipSet,
    ) -> impl Iterator<Item = Membership> + 'a {
        self.0.difference(&wanted.0).copied()
    }
}

impl FromIterator<Membership> for MembershipSet {
    fn from_iter<I: IntoIterator<Item = Membership>>(iter: I) -> Self {
        MembershipSet(iter.into_iter().collect())
    }
}

impl Extend<Membership> for MembershipSet {
    fn extend<I: IntoIterator<Item = Membership>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

/// Something that holds memberships: a [`LowerSocket`] or an in-memory stand-in.
pub trait MembershipOps {
    /// Adds one membership.
    fn add_membership(&self, m: Membership) -> io::Result<()>;
    /// Drops one membership.
    fn drop_membership(&self, m: Membership) -> io::Result<()>;
}

/// Which step of a [`reconcile`] failed.
#[derive(Debug)]
pub struct ReconcileError {
    /// `true` when adding failed, `false` when dropping did.
    pub adding: bool,
    /// The membership that could not be added or dropped.
    pub membership: Membership,
    /// The kernel's error.
    pub error: io::Error,
}

impl fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.adding { "add" } else { "drop" };
        write!(
            f,
            "cannot {op} membership {}: {}",
            self.membership, self.error
        )
    }
}

impl std::error::Error for ReconcileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Makes `target` hold `wanted`, given that it holds `current`: adds what is missing, then
/// drops what is surplus (adding first so that e.g. swapping one unicast address for another
/// never leaves a moment without a filter, and a needed promiscuity count never touches 0).
/// `current` is updated after each step, so on the first error it is exactly what was applied
/// and the error says which step failed.
pub fn reconcile<T: MembershipOps + ?Sized>(
    target: &T,
    current: &mut MembershipSet,
    wanted: &MembershipSet,
) -> Result<(), ReconcileError> {
    let add: Vec<Membership> = current.missing_from(wanted).collect();
    for m in add {
        target.add_membership(m).map_err(|error| ReconcileError {
            adding: true,
            membership: m,
            error,
        })?;
        current.insert(m);
    }
    let drop: Vec<Membership> = current.surplus_over(wanted).collect();
    for m in drop {
        target.drop_membership(m).map_err(|error| ReconcileError {
            adding: false,
            membership: m,
            error,
        })?;
        current.remove(&m);
    }
    Ok(())
}

/// An AF_PACKET raw socket bound to one device, non-blocking and close-on-exec, receiving
/// every protocol and reporting stripped VLAN tags (`PACKET_AUXDATA`).
#[derive(Debug)]
pub struct LowerSocket {
    fd: OwnedFd,
    ifindex: u32,
    /// `PACKET_VNET_HDR` is on: frames carry a `virtio_net_hdr` in front, both ways.
    vnet: bool,
    /// The fast path's eBPF filter is attached: it also drops the host path's injected frames
    /// (from its map), and no classic filter may replace it.
    ebpf_filter: std::sync::atomic::AtomicBool,
}

impl LowerSocket {
    /// Opens a socket on device `ifindex` of the calling thread's network namespace.
    pub fn open(ifindex: u32, opts: &LowerOptions) -> io::Result<Self> {
        Self::open_in(None, ifindex, opts)
    }

    /// Opens a socket on device `ifindex` of namespace `netns`; `None` means the caller's
    /// namespace. Only the socket's creation happens there ([`crate::netns::socket_in`]: the
    /// broker, or a helper thread); it stays bound to that namespace and is configured here.
    pub fn open_in(
        netns: Option<&NetnsHandle>,
        ifindex: u32,
        opts: &LowerOptions,
    ) -> io::Result<Self> {
        // Protocol 0 at creation, ETH_P_ALL only at bind: a socket created with ETH_P_ALL
        // would queue frames from every device until bound.
        let fd = crate::netns::socket_in(
            netns,
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            0,
        )?;
        Self::configure(fd, ifindex, opts)
    }

    /// Configures and binds a fresh AF_PACKET socket.
    fn configure(fd: OwnedFd, ifindex: u32, opts: &LowerOptions) -> io::Result<Self> {
        let s = LowerSocket {
            fd,
            ifindex,
            vnet: opts.vnet_hdr,
            ebpf_filter: false.into(),
        };
        sys::setsockopt_int(&s.fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)?;
        if opts.vnet_hdr {
            sys::setsockopt_int(&s.fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        }
        sys::setsockopt_int(
            &s.fd,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            opts.ignore_outgoing as libc::c_int,
        )?;
        if opts.qdisc_bypass {
            sys::setsockopt_int(&s.fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)?;
        }
        if let Some(n) = opts.rcvbuf {
            s.set_buf(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, n)?;
        }
        if let Some(n) = opts.sndbuf {
            s.set_buf(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, n)?;
        }
        let mut sll: libc::sockaddr_ll = sys::Pod::zeroed();
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = ETH_P_ALL_BE;
        sll.sll_ifindex = ifindex as libc::c_int;
        sys::bind(&s.fd, &sll)?;
        if let Some(f) = opts.fanout {
            let mode = match f.mode {
                FanoutMode::Hash => libc::PACKET_FANOUT_HASH,
                FanoutMode::LoadBalance => libc::PACKET_FANOUT_LB,
                FanoutMode::Cpu => libc::PACKET_FANOUT_CPU,
                FanoutMode::QueueMapping => libc::PACKET_FANOUT_QM,
            };
            let mut flags = if f.rollover {
                libc::PACKET_FANOUT_FLAG_ROLLOVER
            } else {
                0
            };
            if f.group.is_none() {
                flags |= libc::PACKET_FANOUT_FLAG_UNIQUEID;
            }
            // Once in a fanout group, frames reach the socket through the group's hook, not
            // its own, so the socket's PACKET_IGNORE_OUTGOING no longer applies; the group
            // has its own flag (fanout_add sets it on the group's hook).
            if opts.ignore_outgoing {
                flags |= libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
            }
            let arg = (f.group.unwrap_or(0) as u32) | ((mode | flags) << 16);
            sys::setsockopt(&s.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
        }
        Ok(s)
    }

    /// A socket on device `ifindex` that only holds memberships: created with protocol 0
    /// and never bound, it registers no packet hook, so it receives nothing (no frame is
    /// copied to it) while its memberships program the device like any other socket's.
    pub fn open_membership_holder(ifindex: u32) -> io::Result<Self> {
        Self::open_membership_holder_in(None, ifindex)
    }

    /// [`open_membership_holder`](Self::open_membership_holder) for a device of namespace
    /// `netns` (`None`: the caller's); only the socket's creation happens there
    /// ([`crate::netns::socket_in`]).
    pub fn open_membership_holder_in(
        netns: Option<&NetnsHandle>,
        ifindex: u32,
    ) -> io::Result<Self> {
        let fd = crate::netns::socket_in(
            netns,
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            0,
        )?;
        Ok(LowerSocket {
            fd,
            ifindex,
            vnet: false,
            ebpf_filter: false.into(),
        })
    }

    fn set_buf(&self, force: libc::c_int, plain: libc::c_int, n: usize) -> io::Result<()> {
        let v = n.min(i32::MAX as usize / 2) as libc::c_int;
        sys::setsockopt_int(&self.fd, libc::SOL_SOCKET, force, v)
            .or_else(|_| sys::setsockopt_int(&self.fd, libc::SOL_SOCKET, plain, v))
    }

    /// Bytes of `virtio_net_hdr` in front of every frame, both ways (0 or [`VNET_HDR_LEN`]).
    pub fn vnet_hdr_len(&self) -> usize {
        if self.vnet {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// The id of the fanout group this socket is in (the one the kernel picked for a
    /// [`Fanout`] without a group).
    pub fn fanout_group(&self) -> io::Result<u16> {
        let (v, _) =
            sys::getsockopt::<libc::c_int>(&self.fd, libc::SOL_PACKET, libc::PACKET_FANOUT)?;
        Ok(v as u32 as u16)
    }

    /// Waits until the socket's send buffer has room (`POLLOUT`), at most `timeout`.
    pub fn wait_writable(&self, timeout: std::time::Duration) -> io::Result<()> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd, for the duration of the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        sys::cvt(r).map(|_| ())
    }

    /// The device this socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The effective `(SO_RCVBUF, SO_SNDBUF)` (the kernel doubles what was asked for).
    pub fn buffer_sizes(&self) -> io::Result<(usize, usize)> {
        let (r, _) = sys::getsockopt::<libc::c_int>(&self.fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
        let (s, _) = sys::getsockopt::<libc::c_int>(&self.fd, libc::SOL_SOCKET, libc::SO_SNDBUF)?;
        Ok((r as usize, s as usize))
    }

    /// Socket receive statistics since the last call.
    pub fn stats(&self) -> io::Result<PacketStats> {
        let (st, _) = sys::getsockopt::<libc::tpacket_stats>(
            &self.fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
        )?;
        Ok(PacketStats {
            packets: st.tp_packets,
            drops: st.tp_drops,
        })
    }

    /// Receives up to `batch.capacity()` queued frames with one `recvmmsg`, replacing the
    /// batch's contents. Returns the number received; 0 when nothing is queued (never blocks).
    pub fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.len = 0;
        let n = batch.capacity();
        let mut iov: [libc::iovec; MAX_BATCH] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        // Every pointer handed to the kernel is derived once from its buffer's base pointer
        // and never re-derived through a reference, so none is invalidated before the call.
        let bufs = batch.bufs.as_mut_ptr();
        let names = batch.names.as_mut_ptr();
        let ctrl = batch.ctrl.as_mut_ptr();
        for (i, v) in iov.iter_mut().enumerate().take(n) {
            v.iov_base = bufs.wrapping_add(i * batch.stride + HEADROOM).cast();
            v.iov_len = batch.frame_cap;
        }
        let iov = iov.as_mut_ptr();
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = std::array::from_fn(|i| {
            let mut m = zeroed_mmsghdr();
            m.msg_hdr.msg_name = names.wrapping_add(i).cast();
            m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            m.msg_hdr.msg_iov = iov.wrapping_add(i);
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = ctrl.wrapping_add(i).cast();
            m.msg_hdr.msg_controllen = mem::size_of::<[u64; CTRL_WORDS]>() as _;
            m
        });
        // SAFETY: only `hdrs[..n]` are passed; for i < n (n = slot count ≤ MAX_BATCH) their
        // name, iovec and control pointers point at element i of `batch.names`, `iov` and
        // `batch.ctrl`, and the iovec at slot i of `batch.bufs` (frame_cap bytes after the
        // headroom, inside the slot), all alive and untouched by Rust during the call.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        let got = match sys::cvt(r) {
            Ok(k) => k as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        };
        for (i, h) in hdrs.iter().enumerate().take(got) {
            // With MSG_TRUNC the kernel reports the full frame length even when it was cut.
            let wire = h.msg_len as usize;
            let stored = wire.min(batch.frame_cap);
            let mut ctrl = [0u8; CTRL_WORDS * 8];
            for (dst, w) in ctrl.chunks_mut(8).zip(batch.ctrl[i].iter()) {
                dst.copy_from_slice(&w.to_ne_bytes());
            }
            // size_t on glibc, socklen_t on musl: the cast is needed on one of them.
            #[allow(clippy::unnecessary_cast)]
            let clen = (h.msg_hdr.msg_controllen as usize).min(ctrl.len());
            let vlan = parse_aux_vlan(&ctrl[..clen]);
            // With PACKET_VNET_HDR the slot holds the header, then the frame.
            let hdr = if self.vnet {
                VNET_HDR_LEN.min(stored)
            } else {
                0
            };
            let (stored, wire) = (stored - hdr, wire.saturating_sub(hdr));
            let mut m = RxMeta {
                off: HEADROOM + hdr,
                hdr,
                len: stored,
                orig_len: wire,
                pkttype: PacketType::from_raw(batch.names[i].sll_pkttype),
                vlan: None,
            };
            if let Some(tag) = vlan {
                let slot = &mut batch.bufs[i * batch.stride..(i + 1) * batch.stride];
                let (off, len) = reinsert_tag_after(slot, hdr, stored, tag);
                if len != stored {
                    m.off = off;
                    m.len = len;
                    m.orig_len = wire + VLAN_HLEN;
                    m.vlan = Some(tag);
                }
            }
            batch.meta[i] = m;
        }
        batch.len = got;
        Ok(got)
    }

    /// Sends one frame (destination MAC first) out of the device. `WouldBlock` when the send
    /// buffer is full; `ENOBUFS` when the device queue dropped it; `ENETDOWN` when it is down.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = sys::send(&self.fd, frame, libc::MSG_DONTWAIT)?;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short AF_PACKET send",
            ));
        }
        Ok(())
    }

    /// Sends frames with `sendmmsg`, `MAX_BATCH` at a time. Returns how many were sent; stops
    /// at the first failure, which is returned only if nothing was sent.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in frames.chunks(MAX_BATCH) {
            let mut iov: [libc::iovec; MAX_BATCH] = std::array::from_fn(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            });
            for (v, f) in iov.iter_mut().zip(chunk) {
                // The kernel only reads through this pointer (sendmmsg), so casting away
                // const is fine.
                v.iov_base = f.as_ptr() as *mut libc::c_void;
                v.iov_len = f.len();
            }
            let iov = iov.as_mut_ptr();
            let mut hdrs: [libc::mmsghdr; MAX_BATCH] = std::array::from_fn(|i| {
                let mut m = zeroed_mmsghdr();
                m.msg_hdr.msg_iov = iov.wrapping_add(i);
                m.msg_hdr.msg_iovlen = 1;
                m
            });
            // SAFETY: `hdrs[..chunk.len()]` each point at one iovec in `iov` describing a live
            // frame slice; no name or control data. The kernel only reads the frames.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match sys::cvt(r) {
                Ok(k) => {
                    sent += k as usize;
                    if (k as usize) < chunk.len() {
                        return Ok(sent);
                    }
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => return Ok(sent),
            }
        }
        Ok(sent)
    }

    /// Adds a membership on the bound device (counted by the kernel per socket).
    pub fn add_membership(&self, m: Membership) -> io::Result<()> {
        sys::setsockopt(
            &self.fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &m.mreq(self.ifindex),
        )
    }

    /// Drops one count of a membership. The kernel answers success even when the socket
    /// holds no such membership (nothing changes then).
    pub fn drop_membership(&self, m: Membership) -> io::Result<()> {
        sys::setsockopt(
            &self.fd,
            libc::SOL_PACKET,
            libc::PACKET_DROP_MEMBERSHIP,
            &m.mreq(self.ifindex),
        )
    }
}

impl LowerSocket {
    /// Keeps only frames with a group destination (and runts) on this socket
    /// (`SO_ATTACH_FILTER`): with the eBPF fast path, unicast is forwarded in the kernel and
    /// the slow path must not forward it again. Packet taps run before tc, so without this
    /// the socket would see every frame the fast path forwards.
    pub fn keep_only_group_frames(&self) -> io::Result<()> {
        // ld len; jge #14 ? next : accept; ldb [0]; jset #1 ? accept : drop.
        let code: [libc::sock_filter; 6] = [
            sock_filter(0x80, 0, 0, 0),
            sock_filter(0x35, 0, 2, 14),
            sock_filter(0x30, 0, 0, 0),
            sock_filter(0x45, 0, 1, 1),
            sock_filter(0x06, 0, 0, u32::MAX),
            sock_filter(0x06, 0, 0, 0),
        ];
        self.attach_filter(&code)
    }

    /// Keeps only frames the lower's own host sends (`PACKET_OUTGOING`) with source `mac`
    /// and a group destination or one of `dsts`: the frames a `hostaccess` port takes from the
    /// host (what the daemon itself sends for the macvlans has their addresses and stays out,
    /// and so does the host's traffic with anyone else). More than [`HOST_FILTER_MAX`]
    /// destinations: every frame the host sends is kept. Replaces the socket's filter.
    pub fn keep_only_outgoing_from(&self, mac: MacAddr, dsts: &[MacAddr]) -> io::Result<()> {
        const SKF_AD_PKTTYPE: u32 = 0xffff_f000 + 4;
        let split = |m: MacAddr| {
            let m = m.0;
            (
                u32::from_be_bytes([m[0], m[1], m[2], m[3]]),
                u32::from(u16::from_be_bytes([m[4], m[5]])),
            )
        };
        let (hi, lo) = split(mac);
        let all = dsts.len() > HOST_FILTER_MAX;
        let n = if all { 0 } else { dsts.len() };
        // Layout: 8 checks, 4 per destination, then drop, then accept.
        let drop = 8 + 4 * n;
        let accept = drop + 1;
        let to = |from: usize, target: usize| (target - from - 1) as u8;
        let mut code = vec![
            sock_filter(0x20, 0, 0, SKF_AD_PKTTYPE),
            sock_filter(0x15, 0, to(1, drop), libc::PACKET_OUTGOING as u32),
            sock_filter(0x20, 0, 0, 6),
            sock_filter(0x15, 0, to(3, drop), hi),
            sock_filter(0x28, 0, 0, 10),
            sock_filter(0x15, 0, to(5, drop), lo),
            // ldb [0]; jset #1: a group destination.
            sock_filter(0x30, 0, 0, 0),
            sock_filter(0x45, to(7, accept), if all { to(7, accept) } else { 0 }, 1),
        ];
        for d in &dsts[..n] {
            let (dh, dl) = split(*d);
            let b = code.len();
            code.push(sock_filter(0x20, 0, 0, 0));
            code.push(sock_filter(0x15, 0, 2, dh));
            code.push(sock_filter(0x28, 0, 0, 4));
            code.push(sock_filter(0x15, to(b + 3, accept), 0, dl));
        }
        code.push(sock_filter(0x06, 0, 0, 0));
        code.push(sock_filter(0x06, 0, 0, u32::MAX));
        self.attach_filter(&code)
    }

    /// Drops (`on`) or keeps again (`!on`, detaching the filter) frames carrying the
    /// [`crate::hostaccess`] marker tag: frames a [`crate::hostaccess::HostInjector`] put into
    /// the lower's receive path, which packet taps on the lower see like frames from the wire.
    pub fn drop_host_injected(&self, on: bool) -> io::Result<()> {
        if self.ebpf_filter.load(std::sync::atomic::Ordering::Relaxed) {
            // `umv_slow_filter` drops them while the port's map entry says it has host access.
            return Ok(());
        }
        if !on {
            return self.detach_filter();
        }
        const SKF_AD: u32 = 0xffff_f000;
        const VLAN_TAG: u32 = SKF_AD + 44;
        const VLAN_TAG_PRESENT: u32 = SKF_AD + 48;
        const VLAN_TPID: u32 = SKF_AD + 60;
        let tpid = u32::from(crate::hostaccess::MARK_TPID);
        // ld vlan_avail; jeq 0 → accept; ld vlan_tci; jne MARK → accept; ld vlan_tpid;
        // jeq MARK (either byte order) → drop; accept.
        let code: [libc::sock_filter; 9] = [
            sock_filter(0x20, 0, 0, VLAN_TAG_PRESENT),
            sock_filter(0x15, 5, 0, 0),
            sock_filter(0x20, 0, 0, VLAN_TAG),
            sock_filter(0x15, 0, 3, u32::from(crate::hostaccess::MARK_TCI)),
            sock_filter(0x20, 0, 0, VLAN_TPID),
            sock_filter(0x15, 2, 0, tpid),
            sock_filter(0x15, 1, 0, u32::from((tpid as u16).swap_bytes())),
            sock_filter(0x06, 0, 0, u32::MAX),
            sock_filter(0x06, 0, 0, 0),
        ];
        self.attach_filter(&code)
    }

    /// Takes off the socket's filter (if any): it sees every frame again.
    pub fn detach_filter(&self) -> io::Result<()> {
        // SO_DETACH_FILTER ignores its value, but every socket option needs an int's room.
        match sys::setsockopt_int(&self.fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, 0) {
            // No filter attached: nothing to take off.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(drop),
        }
    }

    /// The fast path's filter program is attached (see [`Self::drop_host_injected`]).
    pub(crate) fn set_ebpf_filter(&self) {
        self.ebpf_filter
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn attach_filter(&self, code: &[libc::sock_filter]) -> io::Result<()> {
        let prog = libc::sock_fprog {
            len: code.len() as u16,
            filter: code.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `code`, both alive for the call; the kernel copies the
        // program and only reads.
        sys::cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })
        .map(drop)
    }
}

/// Most destinations [`LowerSocket::keep_only_outgoing_from`] lists one by one (its jumps are
/// one byte).
pub const HOST_FILTER_MAX: usize = 60;

fn sock_filter(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl MembershipOps for LowerSocket {
    fn add_membership(&self, m: Membership) -> io::Result<()> {
        LowerSocket::add_membership(self, m)
    }
    fn drop_membership(&self, m: Membership) -> io::Result<()> {
        LowerSocket::drop_membership(self, m)
    }
}

impl AsFd for LowerSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for LowerSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a C struct of integers and raw pointers; all-zero (null pointers,
    // zero lengths) is a valid value. Built this way because some libcs have private padding
    // fields that a struct literal cannot name.
    unsafe { mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_reinsertion_in_place() {
        let mut slot = vec![0xeeu8; HEADROOM + 64];
        let frame: Vec<u8> = (0u8..20).collect();
        slot[HEADROOM..HEADROOM + 20].copy_from_slice(&frame);
        let (off, len) = reinsert_tag(
            &mut slot,
            20,
            VlanTag {
                tpid: 0x8100,
                tci: 0x2064,
            },
        );
        assert_eq!((off, len), (0, 24));
        let mut want = frame[..12].to_vec();
        want.extend_from_slice(&[0x81, 0x00, 0x20, 0x64]);
        want.extend_from_slice(&frame[12..]);
        assert_eq!(&slot[off..off + len], &want[..]);
        // Same result as the core's allocating helper.
        let mut out = Vec::new();
        umacvlan_core::wire::insert_vlan_tag(&frame, 0x8100, 0x2064, &mut out);
        assert_eq!(out, want);
        // Runts are left alone.
        let mut s2 = vec![0u8; HEADROOM + 8];
        assert_eq!(
            reinsert_tag(
                &mut s2,
                8,
                VlanTag {
                    tpid: 0x8100,
                    tci: 1
                }
            ),
            (HEADROOM, 8)
        );
    }

    fn cmsg(level: i32, ty: i32, data: &[u8]) -> Vec<u8> {
        let w = mem::size_of::<usize>();
        let len = w + 8 + data.len();
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(len.div_ceil(w) * w, 0);
        v
    }

    fn aux(status: u32, tci: u16, tpid: u16) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&status.to_ne_bytes());
        d.extend_from_slice(&100u32.to_ne_bytes());
        d.extend_from_slice(&100u32.to_ne_bytes());
        d.extend_from_slice(&0u16.to_ne_bytes());
        d.extend_from_slice(&14u16.to_ne_bytes());
        d.extend_from_slice(&tci.to_ne_bytes());
        d.extend_from_slice(&tpid.to_ne_bytes());
        d
    }

    #[test]
    fn auxdata_parsing() {
        let valid = libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID;
        let c = cmsg(
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &aux(valid, 7, 0x88a8),
        );
        assert_eq!(
            parse_aux_vlan(&c),
            Some(VlanTag {
                tpid: 0x88a8,
                tci: 7
            })
        );
        // Priority-tagged frame: VLAN id 0 but VALID set must still be re-inserted.
        let c = cmsg(
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &aux(libc::TP_STATUS_VLAN_VALID, 0, 0),
        );
        assert_eq!(
            parse_aux_vlan(&c),
            Some(VlanTag {
                tpid: 0x8100,
                tci: 0
            })
        );
        let c = cmsg(libc::SOL_PACKET, libc::PACKET_AUXDATA, &aux(0, 5, 0x8100));
        assert_eq!(parse_aux_vlan(&c), None);
        // Another cmsg first, then ours.
        let mut c = cmsg(libc::SOL_SOCKET, 1, &[1, 2, 3]);
        c.extend(cmsg(
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &aux(valid, 9, 0x8100),
        ));
        assert_eq!(
            parse_aux_vlan(&c),
            Some(VlanTag {
                tpid: 0x8100,
                tci: 9
            })
        );
        assert_eq!(parse_aux_vlan(&[]), None);
        assert_eq!(parse_aux_vlan(&[0xff; 16]), None);
    }

    #[test]
    fn rxbatch_push_and_truncate() {
        let mut b = RxBatch::with_frame_capacity(2, 16);
        assert!(b.is_empty());
        assert!(b.push(&[1; 20], PacketType::Broadcast));
        assert!(b.push(&[2; 14], PacketType::Host));
        assert!(!b.push(&[3; 14], PacketType::Host));
        let f = b.get(0);
        assert_eq!(f.data, &[1; 16]);
        assert_eq!(f.orig_len, 20);
        assert!(f.truncated());
        assert_eq!(f.pkttype, PacketType::Broadcast);
        b.data_mut(1)[0] = 9;
        assert_eq!(b.iter().nth(1).unwrap().data[0], 9);
        b.clear();
        assert_eq!(b.len(), 0);
        assert_eq!(RxBatch::new(1000).capacity(), MAX_BATCH);
    }

    #[test]
    fn pkttype_roundtrip() {
        for v in 0u8..10 {
            assert_eq!(PacketType::from_raw(v).to_raw(), v);
        }
    }

    struct Rec {
        log: std::cell::RefCell<Vec<(bool, Membership)>>,
        fail: Option<Membership>,
    }
    impl MembershipOps for Rec {
        fn add_membership(&self, m: Membership) -> io::Result<()> {
            if self.fail == Some(m) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.log.borrow_mut().push((true, m));
            Ok(())
        }
        fn drop_membership(&self, m: Membership) -> io::Result<()> {
            if self.fail == Some(m) {
                return Err(io::Error::from_raw_os_error(libc::EADDRNOTAVAIL));
            }
            self.log.borrow_mut().push((false, m));
            Ok(())
        }
    }

    #[test]
    fn reconcile_adds_then_drops_and_stops_on_error() {
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        let mc = MacAddr([1, 0, 0x5e, 0, 0, 1]);
        let mut cur: MembershipSet = [Membership::Unicast(a), Membership::Promisc]
            .into_iter()
            .collect();
        let want: MembershipSet = [Membership::Unicast(b), Membership::Multicast(mc)]
            .into_iter()
            .collect();
        let ok = Rec {
            log: Default::default(),
            fail: None,
        };
        let mut c1 = cur.clone();
        reconcile(&ok, &mut c1, &want).unwrap();
        assert_eq!(c1, want);
        let log = ok.log.borrow();
        assert!(
            log[..2].iter().all(|(add, _)| *add),
            "adds come first: {log:?}"
        );
        assert!(log[2..].iter().all(|(add, _)| !*add));
        assert_eq!(log.len(), 4);

        // Fail on dropping Unicast(a): the adds stay applied, Promisc (ordered before a) is
        // already dropped, a is still held.
        let bad = Rec {
            log: Default::default(),
            fail: Some(Membership::Unicast(a)),
        };
        let e = reconcile(&bad, &mut cur, &want).unwrap_err();
        assert!(!e.adding);
        assert_eq!(e.membership, Membership::Unicast(a));
        assert_eq!(e.error.raw_os_error(), Some(libc::EADDRNOTAVAIL));
        let expect: MembershipSet = [
            Membership::Unicast(a),
            Membership::Unicast(b),
            Membership::Multicast(mc),
        ]
        .into_iter()
        .collect();
        assert_eq!(cur, expect);
        assert!(e
            .to_string()
            .contains("drop membership unicast 02:00:00:00:00:01"));

        // Fail on an add: nothing after it is applied.
        let bad = Rec {
            log: Default::default(),
            fail: Some(Membership::Unicast(b)),
        };
        let mut cur = MembershipSet::new();
        let e = reconcile(&bad, &mut cur, &want).unwrap_err();
        assert!(e.adding);
        assert!(cur.is_empty());
        // No-op when equal.
        let mut same = want.clone();
        reconcile(&ok, &mut same, &want).unwrap();
        assert_eq!(same, want);
    }
    #[test]
    fn tag_reinsertion_keeps_the_vnet_header_in_front_and_shifts_its_offsets() {
        let mut slot = vec![0u8; HEADROOM + VNET_HDR_LEN + 30];
        let h = HEADROOM;
        slot[h] = VNET_F_NEEDS_CSUM;
        slot[h + 1] = 1; // TCPv4 GSO
        slot[h + 2..h + 4].copy_from_slice(&54u16.to_le_bytes());
        slot[h + 6..h + 8].copy_from_slice(&34u16.to_le_bytes());
        for i in 0..30 {
            slot[h + VNET_HDR_LEN + i] = i as u8;
        }
        let (off, len) = reinsert_tag_after(
            &mut slot,
            VNET_HDR_LEN,
            30,
            VlanTag {
                tpid: 0x8100,
                tci: 7,
            },
        );
        assert_eq!((off, len), (HEADROOM - VLAN_HLEN + VNET_HDR_LEN, 34));
        let hdr = &slot[off - VNET_HDR_LEN..off];
        assert_eq!(
            u16::from_le_bytes([hdr[2], hdr[3]]),
            58,
            "GSO header length grows"
        );
        assert_eq!(
            u16::from_le_bytes([hdr[6], hdr[7]]),
            38,
            "checksum start moves"
        );
        let f = &slot[off..off + len];
        assert_eq!(&f[..12], &(0..12).collect::<Vec<u8>>()[..]);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x07]);
        assert_eq!(f[16], 12);
        assert!(vnet_is_gso(hdr));
    }
}
