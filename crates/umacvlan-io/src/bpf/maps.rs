//! The map keys and values, mirrored from `bpf/lib/umacvlan.h` (must stay in sync with it;
//! aya refuses a map whose key or value size differs, and `tests/bpf_programs.rs` runs every
//! field through the programs).

/// `struct umv_mac_key`: a macvlan's address on one lower.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    /// The lower's ifindex.
    pub lower_ifindex: u32,
    /// The macvlan's address.
    pub mac: [u8; 6],
    /// Zero.
    pub pad: [u8; 2],
}

/// `struct umv_dev`: one macvlan.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevEntry {
    /// The daemon-side end of the macvlan's veth pair (it names the macvlan in the maps).
    pub hidden_ifindex: u32,
    /// Its lower.
    pub lower_ifindex: u32,
    /// `MACVLAN_MODE_*`.
    pub mode: u32,
    /// [`DEV_UP`], [`DEV_PEER_LOCAL`], [`DEV_HOSTACCESS`].
    pub flags: u32,
}

/// `struct umv_port`: one lower.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortEntry {
    /// [`PORT_LOWER_UP`], [`PORT_PASSTHRU`], [`PORT_HOST`].
    pub flags: u32,
    /// Longest frame the lower's receive path accepts (MTU + Ethernet header + one tag).
    pub max_frame: u32,
    /// The passthru macvlan, when [`PORT_PASSTHRU`] is set.
    pub passthru: DevEntry,
    /// The lower's MAC (its own host's address).
    pub mac: [u8; 6],
    /// Zero.
    pub pad: [u8; 2],
}

/// `struct umv_stats`: one device's counters on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames delivered to the macvlan.
    pub rx_packets: u64,
    /// Their bytes, counted as the kernel counts them.
    pub rx_bytes: u64,
    /// Frames the macvlan sent that the fast path forwarded.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// On a lower: local bridge frames `dev_forward_skb` refused.
    pub rx_dropped: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_dropped += o.rx_dropped;
    }
}

/// `struct umv_event`: one traced decision.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The device the program ran on.
    pub ifindex: u32,
    /// Where the frame went (a hidden end or a lower), 0 if nowhere.
    pub target_ifindex: u32,
    /// A [`Verdict`] code.
    pub verdict: u32,
    /// `skb->len`.
    pub len: u32,
    /// Destination address.
    pub dst: [u8; 6],
    /// Source address.
    pub src: [u8; 6],
    /// `skb->protocol` in network order: the ethertype after an out-of-line VLAN tag.
    pub protocol: u16,
    /// The out-of-line VLAN id, `0xffff` if none.
    pub vlan: u16,
    /// Bytes of `data` set.
    pub cap: u32,
    /// The frame's first bytes (when tracing with a snap length).
    pub data: [u8; SNAP],
}

impl Default for Event {
    fn default() -> Event {
        Event {
            ifindex: 0,
            target_ifindex: 0,
            verdict: 0,
            len: 0,
            dst: [0; 6],
            src: [0; 6],
            protocol: 0,
            vlan: 0,
            cap: 0,
            data: [0; SNAP],
        }
    }
}

/// `UMV_SNAP`: frame bytes an [`Event`] carries at most.
pub const SNAP: usize = 128;

/// `struct umv_ctl`: runtime switches (one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ctl {
    /// Emit every decision to the ring buffer.
    pub trace: u32,
    /// With each, the frame's first bytes, at most [`SNAP`].
    pub snap: u32,
    /// Decisions the full ring buffer could not take (the programs only count up).
    pub lost: u64,
}

/// `UMV_DEV_UP`.
pub const DEV_UP: u32 = 1;
/// `UMV_DEV_PEER_LOCAL`: the macvlan end is in the hidden end's namespace.
pub const DEV_PEER_LOCAL: u32 = 2;
/// `UMV_DEV_HOSTACCESS`: `hostaccess on`.
pub const DEV_HOSTACCESS: u32 = 4;
/// `UMV_PORT_LOWER_UP`.
pub const PORT_LOWER_UP: u32 = 1;
/// `UMV_PORT_PASSTHRU`.
pub const PORT_PASSTHRU: u32 = 2;
/// `UMV_PORT_HOST`: some macvlan has `hostaccess on`.
pub const PORT_HOST: u32 = 4;

/// `enum umv_verdict`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Left to the lower's stack and the slow path.
    Pass = 1,
    /// Redirected into a macvlan.
    Unicast = 2,
    /// Passthru macvlan down: dropped.
    TargetDown = 3,
    /// To the lower's transmit.
    Wire = 4,
    /// Bridge to bridge through the lower's receive path.
    Local = 5,
    /// The lower refused the local frame.
    LocalRefused = 6,
    /// Sender unknown or down.
    SenderDown = 7,
    /// Group destination from a macvlan: the slow path has it.
    SlowPath = 8,
    /// Shorter than an Ethernet header.
    Malformed = 9,
    /// A traced [`Verdict::Local`] frame delivered through the lower's receive path.
    LocalDelivered = 10,
    /// A `hostaccess` macvlan's unicast to the lower's MAC, into the lower's receive path.
    ToHost = 11,
    /// The host's unicast to a `hostaccess` macvlan back from the wire: dropped.
    HostEcho = 12,
}

impl Verdict {
    /// From the code in an [`Event`].
    pub fn from_code(c: u32) -> Option<Verdict> {
        use Verdict::*;
        [
            Pass,
            Unicast,
            TargetDown,
            Wire,
            Local,
            LocalRefused,
            SenderDown,
            SlowPath,
            Malformed,
            LocalDelivered,
            ToHost,
            HostEcho,
        ]
        .into_iter()
        .find(|v| *v as u32 == c)
    }
}

// SAFETY: plain `#[repr(C)]` integers and byte arrays with explicit padding fields: every bit
// pattern is valid and there are no implicit padding bytes.
unsafe impl aya::Pod for MacKey {}
// SAFETY: as above.
unsafe impl aya::Pod for DevEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for PortEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for Stats {}
// SAFETY: as above (two u32s and a u64, no padding).
unsafe impl aya::Pod for Ctl {}
