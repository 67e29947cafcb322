//! A small synchronous rtnetlink client ([`RtNetlink`]), a link-event monitor
//! ([`LinkMonitor`]) and the device multicast list ([`multicast_addresses`]).
//!
//! Hand-rolled rather than built on `netlink-packet-route`: we need five message types and
//! about fifteen attributes, and doing it ourselves keeps full control of extended-ack
//! parsing (`NLM_F_CAPPED`/`NLM_F_ACK_TLVS`), sequence checks and dump retries, without a
//! dependency whose API breaks every few releases. The uapi numbers below are stable ABI.
//!
//! A netlink socket acts on the namespace it was created in, whatever thread uses it later;
//! use the `open_in` constructors for another namespace.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use umacvlan_core::wire::MacAddr;

use crate::netns::NetnsHandle;
use crate::sys::{self, Pod};

mod addr;
pub use addr::{IfAddr, Route, SCOPE_LINK, SCOPE_UNIVERSE, TABLE_MAIN};

// --- uapi constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h) ---
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;

const NLMSGERR_ATTR_MSG: u16 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;

const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;

const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_MCADDR: u32 = 37;
const RTNLGRP_IPV6_MCADDR: u32 = 38;
const RTM_NEWMULTICAST: u16 = 56;
const RTM_DELMULTICAST: u16 = 57;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_PROMISCUITY: u16 = 30;
const IFLA_CARRIER: u16 = 33;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_MIN_MTU: u16 = 50;
const IFLA_MAX_MTU: u16 = 51;
const IFLA_NEW_NETNSID: u16 = 45;
const IFLA_NEW_IFINDEX: u16 = 49;
const IFLA_ALLMULTI: u16 = 61;
const IFLA_INFO_KIND: u16 = 1;

const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// Bounds a blocking request so a lost reply cannot hang the control plane.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `IFF_*` device flag bits as found in [`LinkState::flags`].
pub mod iff {
    /// Administratively up.
    pub const UP: u32 = libc::IFF_UP as u32;
    /// Broadcast capable.
    pub const BROADCAST: u32 = libc::IFF_BROADCAST as u32;
    /// Loopback device.
    pub const LOOPBACK: u32 = libc::IFF_LOOPBACK as u32;
    /// Promiscuous (promiscuity counter > 0).
    pub const PROMISC: u32 = libc::IFF_PROMISC as u32;
    /// All-multicast (allmulti counter > 0).
    pub const ALLMULTI: u32 = libc::IFF_ALLMULTI as u32;
    /// Multicast capable.
    pub const MULTICAST: u32 = libc::IFF_MULTICAST as u32;
    /// Carrier and operationally up (`LOWER_UP`).
    pub const LOWER_UP: u32 = libc::IFF_LOWER_UP as u32;
    /// Dormant.
    pub const DORMANT: u32 = libc::IFF_DORMANT as u32;
}

/// RFC 2863 operational state (`IF_OPER_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperState {
    /// `IF_OPER_UNKNOWN` (0).
    Unknown,
    /// `IF_OPER_NOTPRESENT` (1).
    NotPresent,
    /// `IF_OPER_DOWN` (2).
    Down,
    /// `IF_OPER_LOWERLAYERDOWN` (3).
    LowerLayerDown,
    /// `IF_OPER_TESTING` (4).
    Testing,
    /// `IF_OPER_DORMANT` (5).
    Dormant,
    /// `IF_OPER_UP` (6).
    Up,
    /// Anything else.
    Other(u8),
}

impl OperState {
    /// From the raw `IFLA_OPERSTATE` byte.
    pub fn from_raw(v: u8) -> Self {
        match v {
            0 => OperState::Unknown,
            1 => OperState::NotPresent,
            2 => OperState::Down,
            3 => OperState::LowerLayerDown,
            4 => OperState::Testing,
            5 => OperState::Dormant,
            6 => OperState::Up,
            o => OperState::Other(o),
        }
    }
}

/// A device as `RTM_NEWLINK` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub ifindex: u32,
    /// Name.
    pub name: String,
    /// Link-layer address, when it is six bytes long.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// Smallest MTU the device accepts, if reported.
    pub min_mtu: Option<u32>,
    /// Largest MTU the device accepts, if reported.
    pub max_mtu: Option<u32>,
    /// `IFF_*` bits (see [`iff`]).
    pub flags: u32,
    /// Operational state.
    pub operstate: OperState,
    /// Carrier, if reported.
    pub carrier: Option<bool>,
    /// `ARPHRD_*` link type (1 for Ethernet).
    pub link_type: u16,
    /// `IFLA_INFO_KIND` ("veth", "bridge", "macvlan", "tun", ...), absent for plain NICs.
    pub kind: Option<String>,
    /// The master device (bridge, bond, VRF) when enslaved.
    pub master: Option<u32>,
    /// `IFLA_LINK`: the peer or parent ifindex (possibly in another namespace, see `netnsid`).
    pub link: Option<u32>,
    /// Promiscuity counter.
    pub promiscuity: u32,
    /// All-multicast counter (kernels ≥ 6.6).
    pub allmulti: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the namespace id of `link`'s namespace, if it is another one.
    pub netnsid: Option<i32>,
}

impl LinkState {
    /// `IFF_UP`.
    pub fn is_up(&self) -> bool {
        self.flags & iff::UP != 0
    }
    /// `IFF_LOWER_UP`.
    pub fn is_lower_up(&self) -> bool {
        self.flags & iff::LOWER_UP != 0
    }
}

/// What [`RtNetlink::set_link`] should change; `None` fields are left alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkChange<'a> {
    /// Set administratively up (`true`) or down.
    pub up: Option<bool>,
    /// New MTU.
    pub mtu: Option<u32>,
    /// New MAC address.
    pub mac: Option<MacAddr>,
    /// New name.
    pub name: Option<&'a str>,
    /// Move to this namespace (applied first by the kernel; the rest applies there).
    pub netns: Option<&'a NetnsHandle>,
}

/// A failed netlink request: the error (the kernel's errno for rejected requests) and the
/// kernel's extended-ack message, when it sent one.
#[derive(Debug)]
pub struct NetlinkError {
    error: io::Error,
    extack: Option<String>,
}

impl NetlinkError {
    fn kernel(errno: i32, extack: Option<String>) -> Self {
        NetlinkError {
            error: io::Error::from_raw_os_error(errno),
            extack,
        }
    }

    /// The errno (`EINVAL`, `ENODEV`, ...), for kernel rejections and system-call failures.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.error.raw_os_error()
    }

    /// The kernel's explanation (`NLMSGERR_ATTR_MSG`), e.g. "mtu less than device minimum".
    pub fn extack(&self) -> Option<&str> {
        self.extack.as_deref()
    }

    /// The underlying error.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.extack {
            Some(m) => write!(f, "{m}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for NetlinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<io::Error> for NetlinkError {
    fn from(error: io::Error) -> Self {
        NetlinkError {
            error,
            extack: None,
        }
    }
}

/// Keeps the errno (so `raw_os_error()` still works); the extack message is dropped — use
/// [`NetlinkError`] directly to show it.
impl From<NetlinkError> for io::Error {
    fn from(e: NetlinkError) -> Self {
        e.error
    }
}

/// Result of netlink requests.
pub type NlResult<T> = Result<T, NetlinkError>;

// --- message building ---

struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, seq: u32) -> Self {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        Msg(b)
    }

    fn ifinfomsg(mut self, index: u32, flags: u32, change: u32) -> Self {
        self.0.push(libc::AF_UNSPEC as u8);
        self.0.push(0);
        self.0.extend_from_slice(&0u16.to_ne_bytes());
        self.0.extend_from_slice(&(index as i32).to_ne_bytes());
        self.0.extend_from_slice(&flags.to_ne_bytes());
        self.0.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn attr(mut self, ty: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align4(self.0.len()), 0);
        self
    }

    fn attr_str(self, ty: u16, s: &str) -> Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink attribute (`struct nlattr` and its data, padded to 4 bytes), for nesting.
fn nla(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(align4(4 + data.len()));
    b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(data);
    b.resize(align4(b.len()), 0);
    b
}

// --- message parsing ---

#[derive(Clone, Copy, Debug)]
struct NlHdr {
    ty: u16,
    flags: u16,
    seq: u32,
}

/// Splits a datagram into `(header, payload)` pairs; stops at the first malformed one.
fn messages(buf: &[u8]) -> impl Iterator<Item = (NlHdr, &[u8])> + '_ {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + NLMSG_HDRLEN > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return None;
        }
        let h = NlHdr {
            ty: u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap()),
            flags: u16::from_ne_bytes(buf[off + 6..off + 8].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap()),
        };
        let payload = &buf[off + NLMSG_HDRLEN..off + len];
        off += align4(len);
        Some((h, payload))
    })
}

/// Splits attributes into `(type without flag bits, data)` pairs.
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> + '_ {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 4 > buf.len() {
            return None;
        }
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > buf.len() {
            return None;
        }
        let data = &buf[off + 4..off + len];
        off += align4(len);
        Some((ty, data))
    })
}

fn attr_u32(d: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(d.get(..4)?.try_into().ok()?))
}

fn attr_string(d: &[u8]) -> String {
    let end = d.iter().position(|&c| c == 0).unwrap_or(d.len());
    String::from_utf8_lossy(&d[..end]).into_owned()
}

/// From an `RTM_DELLINK` payload: where the device went when it was moved to another namespace
/// rather than deleted — `IFLA_NEW_NETNSID` (the new namespace's id as seen from the old one)
/// and `IFLA_NEW_IFINDEX` (its index there).
fn parse_move(p: &[u8]) -> (Option<i32>, Option<u32>) {
    let (mut nsid, mut ifindex) = (None, None);
    if let Some(a) = p.get(IFINFOMSG_LEN..) {
        for (ty, d) in attrs(a) {
            match ty {
                IFLA_NEW_NETNSID => nsid = attr_u32(d).map(|v| v as i32).filter(|&v| v >= 0),
                IFLA_NEW_IFINDEX => ifindex = attr_u32(d).filter(|&v| v != 0),
                _ => {}
            }
        }
    }
    (nsid, ifindex)
}

/// Parses an `RTM_NEWLINK`/`RTM_DELLINK` payload.
fn parse_link(p: &[u8]) -> Option<LinkState> {
    if p.len() < IFINFOMSG_LEN {
        return None;
    }
    let mut l = LinkState {
        ifindex: i32::from_ne_bytes(p[4..8].try_into().ok()?) as u32,
        name: String::new(),
        mac: None,
        mtu: 0,
        min_mtu: None,
        max_mtu: None,
        flags: u32::from_ne_bytes(p[8..12].try_into().ok()?),
        operstate: OperState::Unknown,
        carrier: None,
        link_type: u16::from_ne_bytes(p[2..4].try_into().ok()?),
        kind: None,
        master: None,
        link: None,
        promiscuity: 0,
        allmulti: None,
        netnsid: None,
    };
    for (ty, d) in attrs(&p[IFINFOMSG_LEN..]) {
        match ty {
            IFLA_IFNAME => l.name = attr_string(d),
            IFLA_ADDRESS if d.len() == 6 => l.mac = Some(MacAddr::from_slice(d)),
            IFLA_MTU => l.mtu = attr_u32(d).unwrap_or(0),
            IFLA_MIN_MTU => l.min_mtu = attr_u32(d),
            IFLA_MAX_MTU => l.max_mtu = attr_u32(d),
            IFLA_OPERSTATE => l.operstate = OperState::from_raw(*d.first().unwrap_or(&0)),
            IFLA_CARRIER => l.carrier = d.first().map(|&c| c != 0),
            IFLA_MASTER => l.master = attr_u32(d).filter(|&m| m != 0),
            IFLA_LINK => l.link = attr_u32(d).filter(|&m| m != 0),
            IFLA_PROMISCUITY => l.promiscuity = attr_u32(d).unwrap_or(0),
            IFLA_ALLMULTI => l.allmulti = attr_u32(d),
            IFLA_LINK_NETNSID => l.netnsid = attr_u32(d).map(|v| v as i32),
            IFLA_LINKINFO => {
                for (t, kd) in attrs(d) {
                    if t == IFLA_INFO_KIND {
                        l.kind = Some(attr_string(kd));
                    }
                }
            }
            _ => {}
        }
    }
    Some(l)
}

/// Parses an `NLMSG_ERROR` payload (`is_done == false`) or an `NLMSG_DONE` payload: the
/// (negative) errno, 0 for success, and the extack message if present.
fn parse_error(h: &NlHdr, p: &[u8], is_done: bool) -> (i32, Option<String>) {
    let Some(e) = p.get(..4) else {
        return if is_done {
            (0, None)
        } else {
            (-libc::EPROTO, None)
        };
    };
    let err = i32::from_ne_bytes(e.try_into().unwrap());
    let mut msg = None;
    if h.flags & NLM_F_ACK_TLVS != 0 {
        // In NLMSG_ERROR the errno is followed by the offending request's header, and its
        // payload too unless the reply was capped (NETLINK_CAP_ACK); then the TLVs. In
        // NLMSG_DONE the TLVs follow the errno directly.
        let skip = if is_done {
            0
        } else if h.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            p.get(4..8).map_or(p.len(), |l| {
                align4(u32::from_ne_bytes(l.try_into().unwrap()) as usize)
            })
        };
        if let Some(tlvs) = p.get(4 + skip..) {
            for (ty, d) in attrs(tlvs) {
                if ty == NLMSGERR_ATTR_MSG {
                    msg = Some(attr_string(d)).filter(|s| !s.is_empty());
                }
            }
        }
    }
    (err, msg)
}

fn netlink_socket(netns: Option<&NetnsHandle>, nonblocking: bool) -> io::Result<OwnedFd> {
    let mut ty = libc::SOCK_RAW;
    if nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    crate::netns::socket_in(netns, libc::AF_NETLINK, ty, libc::NETLINK_ROUTE)
}

fn bind_nl(fd: &OwnedFd, groups: u32) -> io::Result<()> {
    let mut sa: libc::sockaddr_nl = Pod::zeroed();
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    sys::bind(fd, &sa)
}

/// Receives one datagram into `buf`, growing it first if the datagram is larger.
fn recv_datagram(fd: &OwnedFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let need = sys::recv(fd, buf, libc::MSG_PEEK | libc::MSG_TRUNC)?;
    if need > buf.len() {
        buf.resize(need, 0);
    }
    sys::recv(fd, buf, 0)
}

/// A synchronous rtnetlink socket, bound to the namespace it was created in.
#[derive(Debug)]
pub struct RtNetlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl RtNetlink {
    /// Opens a socket in the calling thread's namespace.
    pub fn open() -> io::Result<Self> {
        Self::open_in(None)
    }

    /// Opens a socket in `netns` (`None`: the caller's); it keeps acting there. Only the
    /// socket's creation happens there ([`crate::netns::socket_in`]).
    pub fn open_in(netns: Option<&NetnsHandle>) -> io::Result<Self> {
        let fd = netlink_socket(netns, false)?;
        sys::setsockopt_int(&fd, SOL_NETLINK, NETLINK_EXT_ACK, 1)?;
        // Capped acks: errors carry only the request's header, not the whole request.
        sys::setsockopt_int(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1)?;
        let tv = libc::timeval {
            tv_sec: REQUEST_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        bind_nl(&fd, 0)?;
        Ok(RtNetlink {
            fd,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends `req` (whose sequence number is `seq`) and hands every reply message to
    /// `on_msg` until the ACK, error or end of dump. Returns `Ok(false)` if a dump was
    /// interrupted by a concurrent change (`NLM_F_DUMP_INTR`) and should be redone.
    fn transact(
        &mut self,
        req: &[u8],
        seq: u32,
        mut on_msg: impl FnMut(u16, &[u8]),
    ) -> NlResult<bool> {
        let mut kernel: libc::sockaddr_nl = Pod::zeroed();
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sys::sendto(&self.fd, req, 0, &kernel)?;
        let mut consistent = true;
        loop {
            let n = recv_datagram(&self.fd, &mut self.buf)?;
            for (h, p) in messages(&self.buf[..n]) {
                if h.seq != seq {
                    continue; // a late reply to an earlier, timed-out request
                }
                if h.flags & NLM_F_DUMP_INTR != 0 {
                    consistent = false;
                }
                match h.ty {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR => {
                        let (err, msg) = parse_error(&h, p, false);
                        if err == 0 {
                            return Ok(consistent);
                        }
                        return Err(NetlinkError::kernel(-err, msg));
                    }
                    NLMSG_DONE => {
                        // A dump can end with an error code in the DONE payload.
                        let (err, msg) = parse_error(&h, p, true);
                        if err < 0 {
                            return Err(NetlinkError::kernel(-err, msg));
                        }
                        return Ok(consistent);
                    }
                    NLMSG_OVERRUN => return Err(NetlinkError::kernel(libc::ENOBUFS, None)),
                    // Requests always ask for an ACK (or are dumps ending in DONE), so a
                    // reply message never ends the exchange by itself.
                    ty => on_msg(ty, p),
                }
            }
        }
    }

    fn get_link(&mut self, index: u32, name: Option<&str>) -> NlResult<LinkState> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
            .ifinfomsg(index, 0, 0)
            .attr(IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
        if let Some(n) = name {
            m = m.attr_str(IFLA_IFNAME, n);
        }
        let req = m.finish();
        let mut out = None;
        self.transact(&req, seq, |ty, p| {
            if ty == RTM_NEWLINK && out.is_none() {
                out = parse_link(p);
            }
        })?;
        out.ok_or_else(|| NetlinkError::kernel(libc::ENODEV, None))
    }

    /// The device named `name` (`ENODEV` if none).
    pub fn get_link_by_name(&mut self, name: &str) -> NlResult<LinkState> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(NetlinkError::kernel(libc::EINVAL, None));
        }
        self.get_link(0, Some(name))
    }

    /// The device with index `ifindex` (`ENODEV` if none).
    pub fn get_link_by_index(&mut self, ifindex: u32) -> NlResult<LinkState> {
        if ifindex == 0 || ifindex > i32::MAX as u32 {
            return Err(NetlinkError::kernel(libc::ENODEV, None));
        }
        self.get_link(ifindex, None)
    }

    /// Every device of the namespace. Retried (a few times) if the kernel reports the dump
    /// was interrupted by a concurrent change.
    pub fn dump_links(&mut self) -> NlResult<Vec<LinkState>> {
        let mut last = Vec::new();
        for _ in 0..5 {
            let seq = self.next_seq();
            let req = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq)
                .ifinfomsg(0, 0, 0)
                .attr(IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes())
                .finish();
            let mut out = Vec::new();
            let consistent = self.transact(&req, seq, |ty, p| {
                if ty == RTM_NEWLINK {
                    out.extend(parse_link(p));
                }
            })?;
            if consistent {
                return Ok(out);
            }
            last = out;
        }
        Ok(last)
    }

    /// Changes a device (`RTM_SETLINK`). On failure the error carries the kernel's errno and
    /// extack message.
    pub fn set_link(&mut self, ifindex: u32, change: &LinkChange<'_>) -> NlResult<()> {
        let (flags, mask) = match change.up {
            Some(true) => (iff::UP, iff::UP),
            Some(false) => (0, iff::UP),
            None => (0, 0),
        };
        let seq = self.next_seq();
        let mut m =
            Msg::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq).ifinfomsg(ifindex, flags, mask);
        if let Some(ns) = change.netns {
            m = m.attr(IFLA_NET_NS_FD, &(ns.as_raw_fd() as u32).to_ne_bytes());
        }
        if let Some(mac) = change.mac {
            m = m.attr(IFLA_ADDRESS, &mac.0);
        }
        if let Some(mtu) = change.mtu {
            m = m.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        if let Some(name) = change.name {
            m = m.attr_str(IFLA_IFNAME, name);
        }
        let req = m.finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }

    /// The id this socket's namespace gives the namespace `ns` (`RTM_GETNSID` with
    /// `NETNSA_FD`), `None` if it has none. Asking does not assign one.
    pub fn get_nsid(&mut self, ns: &NetnsHandle) -> NlResult<Option<i32>> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_GETNSID, NLM_F_REQUEST | NLM_F_ACK, seq);
        // struct rtgenmsg, padded to 4 bytes.
        m.0.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        let req = m
            .attr(NETNSA_FD, &(ns.as_raw_fd() as u32).to_ne_bytes())
            .finish();
        let mut out = None;
        self.transact(&req, seq, |ty, p| {
            if ty == RTM_NEWNSID {
                for (t, d) in attrs(p.get(4..).unwrap_or(&[])) {
                    if t == NETNSA_NSID {
                        out = attr_u32(d).map(|v| v as i32).filter(|&v| v >= 0);
                    }
                }
            }
        })?;
        Ok(out)
    }

    /// The namespace this socket's namespace calls `nsid` (e.g. a [`LinkEvent::Del`]'s
    /// `new_netnsid`), found by asking for the id of each namespace the caller can open:
    /// `known` first, then iproute2's named namespaces, then every process's. `None` if none
    /// matches (e.g. a namespace only a bind mount elsewhere keeps alive).
    pub fn netns_by_nsid(&mut self, nsid: i32, known: &[&NetnsHandle]) -> Option<NetnsHandle> {
        let mut seen = std::collections::HashSet::new();
        for h in known {
            let Ok(id) = h.id() else { continue };
            if seen.insert(id) && self.get_nsid(h).ok().flatten() == Some(nsid) {
                return h.try_clone().ok();
            }
        }
        let mut paths: Vec<std::path::PathBuf> = Vec::new();
        for dir in ["/run/netns", "/var/run/netns"] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                paths.extend(rd.flatten().map(|e| e.path()));
            }
        }
        if let Ok(rd) = std::fs::read_dir("/proc") {
            paths.extend(
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                    .map(|e| e.path().join("ns/net")),
            );
        }
        let mut denied: Vec<u32> = Vec::new();
        let pid_of = |p: &std::path::Path| -> Option<u32> {
            p.strip_prefix("/proc")
                .ok()?
                .iter()
                .next()?
                .to_str()?
                .parse()
                .ok()
        };
        for path in paths {
            // stat first (it sees through a bind mount to the namespace), open only the new.
            let m = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
                        denied.extend(pid_of(&path));
                    }
                    continue;
                }
            };
            use std::os::unix::fs::MetadataExt;
            let id = crate::netns::NetnsId {
                dev: m.dev(),
                ino: m.ino(),
            };
            if !seen.insert(id) {
                continue;
            }
            let Ok(h) = NetnsHandle::from_path(&path) else {
                continue;
            };
            if self.get_nsid(&h).ok().flatten() == Some(nsid) {
                return Some(h);
            }
        }
        // Processes whose namespace this process may not even stat (ptrace access: a process
        // with more capabilities): through [`NetnsHandle::from_pid`], i.e. the broker.
        if crate::netns::broker_installed() {
            for pid in denied {
                let Ok(h) = NetnsHandle::from_pid(pid) else {
                    continue;
                };
                let Ok(id) = h.id() else { continue };
                if seen.insert(id) && self.get_nsid(&h).ok().flatten() == Some(nsid) {
                    return Some(h);
                }
            }
        }
        None
    }

    /// Makes `noqueue` the device's root qdisc (`RTM_NEWQDISC`, create or replace: what
    /// `tc qdisc replace dev DEV root noqueue` does), as a kernel macvlan has it
    /// (`IFF_NO_QUEUE`): frames go straight to the driver.
    pub fn set_root_qdisc_noqueue(&mut self, ifindex: u32) -> NlResult<()> {
        const RTM_NEWQDISC: u16 = 36;
        const NLM_F_REPLACE: u16 = 0x100;
        const NLM_F_CREATE: u16 = 0x400;
        const TCA_KIND: u16 = 1;
        const TC_H_ROOT: u32 = 0xFFFF_FFFF;
        let seq = self.next_seq();
        let mut m = Msg::new(
            RTM_NEWQDISC,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            seq,
        );
        // struct tcmsg: family, 3 bytes padding, ifindex, handle, parent, info.
        m.0.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        m.0.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        m.0.extend_from_slice(&0u32.to_ne_bytes());
        m.0.extend_from_slice(&TC_H_ROOT.to_ne_bytes());
        m.0.extend_from_slice(&0u32.to_ne_bytes());
        let req = m.attr_str(TCA_KIND, "noqueue").finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }

    /// Readies a device that must stay invisible to the host's stack: no ARP (`IFF_NOARP`)
    /// and no IPv6 address generated for it (`IFLA_INET6_ADDR_GEN_MODE` none), so it never
    /// holds an address or sends anything of its own. Call before bringing it up.
    pub fn set_link_silent(&mut self, ifindex: u32) -> NlResult<()> {
        const IFLA_AF_SPEC: u16 = 26;
        const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
        const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
        const NLA_F_NESTED: u16 = 0x8000;
        let mut gen = Vec::new();
        gen.extend_from_slice(&5u16.to_ne_bytes());
        gen.extend_from_slice(&IFLA_INET6_ADDR_GEN_MODE.to_ne_bytes());
        gen.extend_from_slice(&[IN6_ADDR_GEN_MODE_NONE, 0, 0, 0]);
        let mut inet6 = Vec::new();
        inet6.extend_from_slice(&((4 + gen.len()) as u16).to_ne_bytes());
        inet6.extend_from_slice(&(libc::AF_INET6 as u16 | NLA_F_NESTED).to_ne_bytes());
        inet6.extend_from_slice(&gen);
        let seq = self.next_seq();
        let noarp = libc::IFF_NOARP as u32;
        let req = Msg::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
            .ifinfomsg(ifindex, noarp, noarp)
            .attr(IFLA_AF_SPEC | NLA_F_NESTED, &inet6)
            .finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }

    /// Sends every frame device `from` receives into the receive path of device `to`: an
    /// `ingress` qdisc on `from` with a match-all `u32` filter whose action is `mirred ingress
    /// redirect dev TO` (what `tc filter add dev FROM parent ffff: protocol all u32 match u32
    /// 0 0 action mirred ingress redirect dev TO` sets up). Both devices in this socket's
    /// namespace. Goes with `from` when it is deleted.
    pub fn redirect_to_ingress(&mut self, from: u32, to: u32) -> NlResult<()> {
        const RTM_NEWQDISC: u16 = 36;
        const RTM_NEWTFILTER: u16 = 44;
        const NLM_F_CREATE: u16 = 0x400;
        const NLM_F_EXCL: u16 = 0x200;
        const NLA_F_NESTED: u16 = 0x8000;
        const TCA_KIND: u16 = 1;
        const TCA_OPTIONS: u16 = 2;
        const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
        const INGRESS_HANDLE: u32 = 0xFFFF_0000;
        const TCA_U32_SEL: u16 = 5;
        const TCA_U32_ACT: u16 = 7;
        const TC_U32_TERMINAL: u8 = 1;
        const TCA_ACT_KIND: u16 = 1;
        const TCA_ACT_OPTIONS: u16 = 2;
        const TCA_MIRRED_PARMS: u16 = 2;
        const TC_ACT_STOLEN: i32 = 4;
        const TCA_INGRESS_REDIR: i32 = 3;
        // struct tcmsg: family, 3 bytes padding, ifindex, handle, parent, info.
        fn tcmsg(m: &mut Msg, ifindex: u32, handle: u32, parent: u32, info: u32) {
            m.0.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
            m.0.extend_from_slice(&(ifindex as i32).to_ne_bytes());
            m.0.extend_from_slice(&handle.to_ne_bytes());
            m.0.extend_from_slice(&parent.to_ne_bytes());
            m.0.extend_from_slice(&info.to_ne_bytes());
        }
        let seq = self.next_seq();
        let mut m = Msg::new(
            RTM_NEWQDISC,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            seq,
        );
        tcmsg(&mut m, from, INGRESS_HANDLE, TC_H_INGRESS, 0);
        let req = m.attr_str(TCA_KIND, "ingress").finish();
        self.transact(&req, seq, |_, _| {})?;

        // struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex.
        let mut parms = Vec::with_capacity(28);
        for v in [0i32, 0, TC_ACT_STOLEN, 0, 0, TCA_INGRESS_REDIR, to as i32] {
            parms.extend_from_slice(&v.to_ne_bytes());
        }
        let mut act = nla(TCA_ACT_KIND, b"mirred\0");
        act.extend(nla(
            TCA_ACT_OPTIONS | NLA_F_NESTED,
            &nla(TCA_MIRRED_PARMS, &parms),
        ));
        let acts = nla(1 | NLA_F_NESTED, &act);
        // struct tc_u32_sel (flags, offshift, nkeys, pad, offmask, off, offoff, hoff, hmask)
        // and one key matching everything (mask 0, val 0, off 0, offmask 0).
        let mut sel = vec![TC_U32_TERMINAL, 0, 1, 0];
        sel.extend_from_slice(&[0u8; 12]);
        sel.extend_from_slice(&[0u8; 16]);
        let mut opts = nla(TCA_U32_SEL, &sel);
        opts.extend(nla(TCA_U32_ACT | NLA_F_NESTED, &acts));
        let seq = self.next_seq();
        let mut m = Msg::new(
            RTM_NEWTFILTER,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            seq,
        );
        // info: priority 1, protocol ETH_P_ALL in network order.
        let info = (1u32 << 16) | u32::from(0x0003u16.to_be());
        tcmsg(&mut m, from, 0, INGRESS_HANDLE, info);
        let req = m
            .attr_str(TCA_KIND, "u32")
            .attr(TCA_OPTIONS | NLA_F_NESTED, &opts)
            .finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }

    /// Deletes a device (`RTM_DELLINK`).
    pub fn del_link(&mut self, ifindex: u32) -> NlResult<()> {
        let seq = self.next_seq();
        let req = Msg::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
            .ifinfomsg(ifindex, 0, 0)
            .finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }

    /// Creates a veth pair (`RTM_NEWLINK`, kind `veth`): `name` in this socket's namespace,
    /// its peer `peer.name` in namespace `peer_ns` (`None`: this one) with `peer`'s MAC and
    /// MTU. Both ends start down. Fails (`EEXIST`…) without creating anything.
    pub fn add_veth(
        &mut self,
        name: &str,
        mtu: u32,
        peer: &VethPeer<'_>,
        peer_ns: Option<&NetnsHandle>,
    ) -> NlResult<()> {
        const NLM_F_CREATE: u16 = 0x400;
        const NLM_F_EXCL: u16 = 0x200;
        const IFLA_INFO_DATA: u16 = 2;
        const VETH_INFO_PEER: u16 = 1;
        const NLA_F_NESTED: u16 = 0x8000;
        let mut cname = peer.name.as_bytes().to_vec();
        cname.push(0);
        // The peer: a struct ifinfomsg, then its attributes.
        let mut p = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        p.extend_from_slice(&[0u8; 12]);
        p.extend(nla(IFLA_IFNAME, &cname));
        p.extend(nla(IFLA_ADDRESS, &peer.mac.0));
        p.extend(nla(IFLA_MTU, &peer.mtu.to_ne_bytes()));
        if let Some(ns) = peer_ns {
            p.extend(nla(IFLA_NET_NS_FD, &(ns.as_raw_fd() as u32).to_ne_bytes()));
        }
        let data = nla(VETH_INFO_PEER | NLA_F_NESTED, &p);
        let mut info = nla(IFLA_INFO_KIND, b"veth\0");
        info.extend(nla(IFLA_INFO_DATA | NLA_F_NESTED, &data));
        let seq = self.next_seq();
        let req = Msg::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            seq,
        )
        .ifinfomsg(0, 0, 0)
        .attr_str(IFLA_IFNAME, name)
        .attr(IFLA_MTU, &mtu.to_ne_bytes())
        .attr(IFLA_LINKINFO | NLA_F_NESTED, &info)
        .finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }
}

/// The far end of a veth pair made by [`RtNetlink::add_veth`].
#[derive(Clone, Copy, Debug)]
pub struct VethPeer<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u32,
}

/// A link change notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A device appeared or changed (flags, MTU, address, carrier, master, ...).
    New(LinkState),
    /// A device was deleted or left the namespace.
    Del {
        /// Its former index.
        ifindex: u32,
        /// Its former name.
        name: String,
        /// When it was moved to another namespace rather than deleted: that namespace's id
        /// as this one sees it (`IFLA_NEW_NETNSID`; see [`RtNetlink::netns_by_nsid`]).
        new_netnsid: Option<i32>,
        /// Its index in the new namespace (`IFLA_NEW_IFINDEX`).
        new_ifindex: Option<u32>,
    },
    /// The kernel dropped notifications (`ENOBUFS`): re-read the state with a dump.
    Overrun,
    /// An IP-level multicast membership of device `ifindex` was added or removed
    /// (`RTM_NEWMULTICAST`/`RTM_DELMULTICAST` on `RTNLGRP_IPV4_MCADDR`/`RTNLGRP_IPV6_MCADDR`,
    /// Linux 6.13 and later): its link-layer multicast list may have changed with it.
    Multicast {
        /// The device.
        ifindex: u32,
    },
}

/// A non-blocking netlink socket subscribed to `RTNLGRP_LINK` in the namespace it was created
/// in. Register [`as_raw_fd`](AsRawFd::as_raw_fd) with epoll and call
/// [`recv_events`](Self::recv_events) when readable.
#[derive(Debug)]
pub struct LinkMonitor {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl LinkMonitor {
    /// Subscribes in the calling thread's namespace.
    pub fn open() -> io::Result<Self> {
        Self::open_in(None)
    }

    /// Subscribes in `netns` (`None`: the caller's). Only the socket's creation happens there
    /// ([`crate::netns::socket_in`]).
    pub fn open_in(netns: Option<&NetnsHandle>) -> io::Result<Self> {
        let fd = netlink_socket(netns, true)?;
        // A large buffer makes overruns during event storms (many devices at once) unlikely.
        let big: libc::c_int = 4 << 20;
        sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, big)
            .or_else(|_| sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, big))?;
        bind_nl(&fd, 0)?;
        sys::setsockopt(
            &fd,
            SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            &RTNLGRP_LINK,
        )?;
        // IP-level multicast joins and leaves (IP_ADD_MEMBERSHIP, the stack's own all-hosts
        // and solicited-node groups). Kernels before 6.13 lack these groups (EINVAL): then
        // only the caller's polling notices such changes.
        for group in [RTNLGRP_IPV4_MCADDR, RTNLGRP_IPV6_MCADDR] {
            let _ = sys::setsockopt(&fd, SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, &group);
        }
        Ok(LinkMonitor {
            fd,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Appends every queued event to `out`; returns how many were appended (0 when none is
    /// queued — never blocks).
    pub fn recv_events(&mut self, out: &mut Vec<LinkEvent>) -> io::Result<usize> {
        let start = out.len();
        loop {
            let n = match recv_datagram(&self.fd, &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.push(LinkEvent::Overrun);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (h, p) in messages(&self.buf[..n]) {
                match h.ty {
                    RTM_NEWLINK => out.extend(parse_link(p).map(LinkEvent::New)),
                    RTM_DELLINK => out.extend(parse_link(p).map(|l| {
                        let (new_netnsid, new_ifindex) = parse_move(p);
                        LinkEvent::Del {
                            ifindex: l.ifindex,
                            name: l.name,
                            new_netnsid,
                            new_ifindex,
                        }
                    })),
                    RTM_NEWMULTICAST | RTM_DELMULTICAST => {
                        // struct ifaddrmsg: family, prefixlen, flags, scope, index (u32).
                        if let Some(b) = p.get(4..8) {
                            let ifindex = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                            out.push(LinkEvent::Multicast { ifindex });
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(out.len() - start)
    }
}

impl AsFd for LinkMonitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for LinkMonitor {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One line of `/proc/net/dev_mcast`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevMcastEntry {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// How many users hold this address.
    pub refcount: u32,
    /// Whether it was added as a global (non-synced) address.
    pub global_use: u32,
    /// The link-layer address (six bytes on Ethernet).
    pub addr: Vec<u8>,
}

/// Parses `/proc/net/dev_mcast` text (columns: ifindex, name, refcount, global_use, hex
/// address). Malformed lines are skipped.
pub fn parse_dev_mcast(text: &str) -> Vec<DevMcastEntry> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let ifindex = it.next()?.parse().ok()?;
            let name = it.next()?.to_string();
            let refcount = it.next()?.parse().ok()?;
            let global_use = it.next()?.parse().ok()?;
            let hex = it.next()?;
            if hex.len() % 2 != 0 || it.next().is_some() {
                return None;
            }
            let addr = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some(DevMcastEntry {
                ifindex,
                name,
                refcount,
                global_use,
                addr,
            })
        })
        .collect()
}

/// The link-layer multicast list of device `ifindex` in the calling thread's namespace (what
/// `ip maddr` shows as `link`). Reads `/proc/thread-self/net/dev_mcast`: `/proc/net` follows
/// the main thread's namespace, not the caller's.
pub fn multicast_addresses(ifindex: u32) -> io::Result<Vec<MacAddr>> {
    multicast_addresses_in(None, ifindex)
}

/// [`multicast_addresses`] of a device in namespace `netns` (`None`: the calling thread's).
pub fn multicast_addresses_in(
    netns: Option<&NetnsHandle>,
    ifindex: u32,
) -> io::Result<Vec<MacAddr>> {
    Ok(multicast_table_in(netns)?
        .remove(&ifindex)
        .unwrap_or_default())
}

/// The link-layer multicast lists of every device in the calling thread's namespace, by
/// ifindex, from one read of `/proc/thread-self/net/dev_mcast` (the kernel formats all devices
/// on every read: read it once for many devices).
pub fn multicast_table() -> io::Result<std::collections::HashMap<u32, Vec<MacAddr>>> {
    multicast_table_in(None)
}

/// [`multicast_table`] of namespace `netns` (`None`: the calling thread's), read once.
pub fn multicast_table_in(
    netns: Option<&NetnsHandle>,
) -> io::Result<std::collections::HashMap<u32, Vec<MacAddr>>> {
    MulticastFile::open_in(netns)?.table()
}

/// A namespace's `/proc/net/dev_mcast`, opened once and read again from its start as often
/// as needed. A `/proc/net` file is bound to the namespace it was opened in (and keeps it
/// alive), so only the open happens there ([`crate::netns::open_in`]: a round trip to the
/// namespace broker for another namespace); the reads happen here.
#[derive(Debug)]
pub struct MulticastFile {
    file: std::fs::File,
    text: String,
}

impl MulticastFile {
    /// Opens the file of namespace `netns` (`None`: the calling thread's).
    pub fn open_in(netns: Option<&NetnsHandle>) -> io::Result<Self> {
        let fd = crate::netns::open_in(netns, "/proc/thread-self/net/dev_mcast", libc::O_RDONLY)?;
        Ok(MulticastFile {
            file: std::fs::File::from(fd),
            text: String::new(),
        })
    }

    /// Every device's link-layer groups, by ifindex, as the kernel lists them now.
    pub fn table(&mut self) -> io::Result<std::collections::HashMap<u32, Vec<MacAddr>>> {
        use std::io::{Read, Seek};
        // The kernel formats the list anew for a read from the start.
        self.file.rewind()?;
        self.text.clear();
        self.file.read_to_string(&mut self.text)?;
        let mut t: std::collections::HashMap<u32, Vec<MacAddr>> = std::collections::HashMap::new();
        for e in parse_dev_mcast(&self.text)
            .into_iter()
            .filter(|e| e.addr.len() == 6)
        {
            t.entry(e.ifindex)
                .or_default()
                .push(MacAddr::from_slice(&e.addr));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_mcast_parsing() {
        let text = "2    ifb0            1     0     333300000001\n\
                    4    eth0            2     1     01005e000001\n\
                    4    eth0            1     0     3333ff000001\n\
                    5    ib0             1     0     00ffffffff12401bffff0000000000000001\n\
                    garbage line\n\
                    6    x               1     0     0g\n";
        let e = parse_dev_mcast(text);
        assert_eq!(e.len(), 4);
        assert_eq!(
            e[1],
            DevMcastEntry {
                ifindex: 4,
                name: "eth0".into(),
                refcount: 2,
                global_use: 1,
                addr: vec![1, 0, 0x5e, 0, 0, 1],
            }
        );
        assert_eq!(e[3].addr.len(), 18);
        assert!(parse_dev_mcast("").is_empty());
    }

    #[test]
    fn multicast_addresses_of_loopback_reads_proc() {
        // Loopback has no multicast list but the file must parse; a non-existent index gives
        // an empty list.
        assert!(multicast_addresses(u32::MAX).unwrap().is_empty());
    }

    fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(align4(v.len()), 0);
        v
    }

    #[test]
    fn dellink_of_a_move_carries_the_new_namespace_and_index() {
        let moved = Msg::new(RTM_DELLINK, 0, 0)
            .ifinfomsg(5, 0, 0)
            .attr_str(IFLA_IFNAME, "eth0")
            .attr(IFLA_NEW_NETNSID, &1i32.to_ne_bytes())
            .attr(IFLA_NEW_IFINDEX, &9u32.to_ne_bytes())
            .finish();
        let (_, p) = messages(&moved).next().unwrap();
        assert_eq!(parse_move(p), (Some(1), Some(9)));
        let deleted = Msg::new(RTM_DELLINK, 0, 0)
            .ifinfomsg(5, 0, 0)
            .attr_str(IFLA_IFNAME, "eth0")
            .finish();
        let (_, p) = messages(&deleted).next().unwrap();
        assert_eq!(parse_move(p), (None, None));
    }

    #[test]
    fn build_and_parse_link_message() {
        let body = Msg::new(RTM_NEWLINK, 0, 1)
            .ifinfomsg(7, iff::UP | iff::LOWER_UP, 0)
            .attr_str(IFLA_IFNAME, "veth0")
            .attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 9])
            .attr(IFLA_MTU, &1500u32.to_ne_bytes())
            .attr(IFLA_MASTER, &0u32.to_ne_bytes())
            .attr(IFLA_PROMISCUITY, &2u32.to_ne_bytes())
            .attr(IFLA_OPERSTATE, &[6])
            .attr(IFLA_CARRIER, &[1])
            .attr(IFLA_LINKINFO | 0x8000, &{
                let mut kind = Vec::new();
                kind.extend_from_slice(&9u16.to_ne_bytes());
                kind.extend_from_slice(&IFLA_INFO_KIND.to_ne_bytes());
                kind.extend_from_slice(b"veth\0");
                kind.resize(12, 0);
                kind
            })
            .finish();
        let (h, p) = messages(&body).next().unwrap();
        assert_eq!(h.ty, RTM_NEWLINK);
        let l = parse_link(p).unwrap();
        assert_eq!(l.ifindex, 7);
        assert_eq!(l.name, "veth0");
        assert_eq!(l.mac, Some(MacAddr([2, 0, 0, 0, 0, 9])));
        assert_eq!(l.mtu, 1500);
        assert_eq!(l.master, None);
        assert_eq!(l.promiscuity, 2);
        assert_eq!(l.operstate, OperState::Up);
        assert_eq!(l.carrier, Some(true));
        assert_eq!(l.kind.as_deref(), Some("veth"));
        assert!(l.is_up() && l.is_lower_up());
    }

    #[test]
    fn parse_extack_capped_and_uncapped() {
        let orig = nlmsg(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 5, &[0u8; 24]);
        let tlv = {
            let mut t = Vec::new();
            let msg = b"mtu less than device minimum\0";
            t.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
            t.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            t.extend_from_slice(msg);
            t.resize(align4(t.len()), 0);
            t
        };
        for capped in [true, false] {
            let mut p = (-libc::EINVAL).to_ne_bytes().to_vec();
            if capped {
                p.extend_from_slice(&orig[..16]);
            } else {
                p.extend_from_slice(&orig);
            }
            p.extend_from_slice(&tlv);
            let flags = NLM_F_ACK_TLVS | if capped { NLM_F_CAPPED } else { 0 };
            let m = nlmsg(NLMSG_ERROR, flags, 5, &p);
            let (h, pl) = messages(&m).next().unwrap();
            let (err, msg) = parse_error(&h, pl, false);
            assert_eq!(err, -libc::EINVAL);
            assert_eq!(msg.as_deref(), Some("mtu less than device minimum"));
        }
        // Plain ACK.
        let mut p = 0i32.to_ne_bytes().to_vec();
        p.extend_from_slice(&orig[..16]);
        let m = nlmsg(NLMSG_ERROR, NLM_F_CAPPED, 5, &p);
        let (h, pl) = messages(&m).next().unwrap();
        assert_eq!(parse_error(&h, pl, false), (0, None));
        // DONE with an error and TLVs right after the errno.
        let mut p = (-libc::EINTR).to_ne_bytes().to_vec();
        p.extend_from_slice(&tlv);
        let m = nlmsg(NLMSG_DONE, NLM_F_ACK_TLVS, 5, &p);
        let (h, pl) = messages(&m).next().unwrap();
        assert_eq!(
            parse_error(&h, pl, true),
            (-libc::EINTR, Some("mtu less than device minimum".into()))
        );
        let e = NetlinkError::kernel(libc::EINVAL, Some("bad".into()));
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert!(e.to_string().starts_with("bad: "));
        assert_eq!(io::Error::from(e).raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn malformed_messages_stop_iteration() {
        assert_eq!(messages(&[1, 2, 3]).count(), 0);
        let mut m = nlmsg(RTM_NEWLINK, 0, 1, &[0; 16]);
        m[0] = 200; // length past the end
        assert_eq!(messages(&m).count(), 0);
        assert!(parse_link(&[0; 8]).is_none());
        assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
    }
}
