//! The engine's vocabulary: modes, flags, errors, and the requests control operations take.

use crate::wire::MacAddr;
use core::fmt;
use core::str::FromStr;

/// A macvlan mode (`enum macvlan_mode`, values as in the kernel UAPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[repr(u32)]
pub enum Mode {
    /// No traffic between macvlans of the port, not even reflected multicast.
    Private = 1,
    /// Everything goes to the wire; an external hairpin switch reflects it back.
    Vepa = 2,
    /// Bridge-mode macvlans talk to each other directly.
    Bridge = 4,
    /// One macvlan owns the lower device (and its MAC).
    Passthru = 8,
    /// Receives by source MAC from a per-device list.
    Source = 16,
}

impl Mode {
    /// The kernel default when no mode is given.
    pub const DEFAULT: Mode = Mode::Vepa;

    /// The UAPI value (`MACVLAN_MODE_*`).
    pub const fn bits(self) -> u32 {
        self as u32
    }

    /// From a UAPI value; `None` for anything the kernel's `macvlan_validate` rejects.
    pub const fn from_bits(v: u32) -> Option<Mode> {
        Some(match v {
            1 => Mode::Private,
            2 => Mode::Vepa,
            4 => Mode::Bridge,
            8 => Mode::Passthru,
            16 => Mode::Source,
            _ => return None,
        })
    }

    /// iproute2's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Private => "private",
            Mode::Vepa => "vepa",
            Mode::Bridge => "bridge",
            Mode::Passthru => "passthru",
            Mode::Source => "source",
        }
    }

    /// All modes, in UAPI order.
    pub const ALL: [Mode; 5] = [
        Mode::Private,
        Mode::Vepa,
        Mode::Bridge,
        Mode::Passthru,
        Mode::Source,
    ];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s).ok_or(())
    }
}

/// A set of [`Mode`]s, as the kernel's flood masks use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeMask(pub u32);

impl ModeMask {
    /// Whether `m` is in the mask.
    #[inline]
    pub const fn contains(self, m: Mode) -> bool {
        self.0 & m as u32 != 0
    }
}

/// `MACVLAN_FLAG_NOPROMISC`.
pub const FLAG_NOPROMISC: u16 = 1;
/// `MACVLAN_FLAG_NODST`.
pub const FLAG_NODST: u16 = 2;
/// Every flag the kernel accepts.
pub const FLAGS_VALID: u16 = FLAG_NOPROMISC | FLAG_NODST;

/// The default `bcqueuelen` request (`MACVLAN_DEFAULT_BC_QUEUE_LEN`).
pub const DEFAULT_BC_QUEUE_LEN: u32 = 1000;
/// The default port broadcast cutoff (`bclim`).
pub const DEFAULT_BC_CUTOFF: i32 = 1;
/// `ETH_MIN_MTU`.
pub const MIN_MTU: u32 = 68;
/// `ETH_MAX_MTU`.
pub const MAX_MTU: u32 = 65535;

/// Errno values the control operations return (Linux numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(i32)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory (an entry to delete is absent).
    ENOENT = 2,
    /// No such process (unknown netns pid).
    ESRCH = 3,
    /// Out of memory.
    ENOMEM = 12,
    /// Device or resource busy.
    EBUSY = 16,
    /// File exists.
    EEXIST = 17,
    /// No such device.
    ENODEV = 19,
    /// Invalid argument.
    EINVAL = 22,
    /// Numerical result out of range.
    ERANGE = 34,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// Network is down.
    ENETDOWN = 100,
}

impl Errno {
    /// The numeric value.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// `strerror` text, as `RTNETLINK answers: …` prints it.
    pub const fn message(self) -> &'static str {
        match self {
            Errno::EPERM => "Operation not permitted",
            Errno::ENOENT => "No such file or directory",
            Errno::ESRCH => "No such process",
            Errno::ENOMEM => "Cannot allocate memory",
            Errno::EBUSY => "Device or resource busy",
            Errno::EEXIST => "File exists",
            Errno::ENODEV => "No such device",
            Errno::EINVAL => "Invalid argument",
            Errno::ERANGE => "Numerical result out of range",
            Errno::EOPNOTSUPP => "Operation not supported",
            Errno::EADDRINUSE => "Address already in use",
            Errno::EADDRNOTAVAIL => "Cannot assign requested address",
            Errno::ENETDOWN => "Network is down",
        }
    }

    /// From a numeric value, for the values listed above.
    pub fn from_code(c: i32) -> Option<Errno> {
        use Errno::*;
        [
            EPERM,
            ENOENT,
            ESRCH,
            ENOMEM,
            EBUSY,
            EEXIST,
            ENODEV,
            EINVAL,
            ERANGE,
            EOPNOTSUPP,
            EADDRINUSE,
            EADDRNOTAVAIL,
            ENETDOWN,
        ]
        .into_iter()
        .find(|e| e.code() == c)
    }
}

/// A rejected control operation: the errno and, where the kernel sets one, the extack message.
/// A rejected operation has changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ControlError {
    /// The errno the kernel returns.
    pub errno: Errno,
    /// The kernel's extack message (`Error: <msg>.` in iproute2), if it gives one.
    pub extack: Option<&'static str>,
}

impl ControlError {
    /// An error without an extack message.
    pub const fn new(errno: Errno) -> Self {
        ControlError {
            errno,
            extack: None,
        }
    }
    /// An error with the kernel's extack message.
    pub const fn with_msg(errno: Errno, msg: &'static str) -> Self {
        ControlError {
            errno,
            extack: Some(msg),
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.extack {
            Some(m) => write!(f, "Error: {m}."),
            None => write!(f, "RTNETLINK answers: {}", self.errno.message()),
        }
    }
}

/// Result of a control operation.
pub type ControlResult<T = ()> = Result<T, ControlError>;

/// `IFLA_MACVLAN_MACADDR_MODE` with its address argument(s).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "lowercase", tag = "op", content = "macs")
)]
pub enum MacAddrOp {
    /// `macaddr add MAC`.
    Add(MacAddr),
    /// `macaddr del MAC`.
    Del(MacAddr),
    /// `macaddr flush`.
    Flush,
    /// `macaddr set [MAC …]`.
    Set(Vec<MacAddr>),
}

/// The macvlan-specific attributes of a create or change request (`IFLA_INFO_DATA`).
/// `None` means the attribute is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct MacvlanAttrs {
    /// `IFLA_MACVLAN_MODE` as a raw UAPI value (validated by the engine: unknown → EINVAL).
    pub mode: Option<u32>,
    /// `IFLA_MACVLAN_FLAGS` (unknown bits → EINVAL).
    pub flags: Option<u16>,
    /// `IFLA_MACVLAN_MACADDR_MODE` and addresses.
    pub macaddr: Option<MacAddrOp>,
    /// `IFLA_MACVLAN_BC_QUEUE_LEN`.
    pub bcqueuelen: Option<u32>,
    /// `IFLA_MACVLAN_BC_CUTOFF` (`bclim`).
    pub bclim: Option<i32>,
    /// Set when a request carries `IFLA_MACVLAN_MACADDR_COUNT`, which the kernel rejects.
    pub macaddr_count: Option<u32>,
    /// `hostaccess on|off` (umacvlan's own, no kernel attribute): the lower's own host and
    /// the macvlan reach each other directly. Not in passthru or source mode (EINVAL).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub hostaccess: Option<bool>,
}

/// A request to create a macvlan on a port (`ip link add link LOWER name NAME type macvlan …`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewDevice {
    /// Interface name.
    pub name: String,
    /// `address`; `None` → random locally administered (passthru: the lower's).
    pub mac: Option<MacAddr>,
    /// `mtu`; `None` → the lower's MTU.
    pub mtu: Option<u32>,
    /// The macvlan attributes.
    pub attrs: MacvlanAttrs,
}

/// Packet type the receiving stack sees (`skb->pkt_type`), for deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PacketType {
    /// `PACKET_HOST`.
    Host,
    /// `PACKET_BROADCAST`.
    Broadcast,
    /// `PACKET_MULTICAST`.
    Multicast,
    /// `PACKET_OTHERHOST`.
    OtherHost,
}

impl PacketType {
    /// The type the kernel's `eth_type_trans` gives a frame with destination `dst` arriving on a
    /// device whose address is `own`.
    pub fn classify(dst: MacAddr, own: MacAddr) -> PacketType {
        if dst.is_multicast() {
            if dst.is_broadcast() {
                PacketType::Broadcast
            } else {
                PacketType::Multicast
            }
        } else if dst == own {
            PacketType::Host
        } else {
            PacketType::OtherHost
        }
    }
}
