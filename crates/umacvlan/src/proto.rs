//! The control protocol between the daemon and its clients (the CLI is one).
//!
//! Transport: a Unix stream socket (default [`DEFAULT_SOCKET`], mode 0600). Each message is one
//! line of JSON (UTF-8, `\n`-terminated, at most [`MAX_MESSAGE`] bytes). The client sends one
//! [`Envelope`] per line and reads one [`Response`] line back, in order; a connection may carry
//! many requests. Every request is applied completely or not at all.
//!
//! Versioning: `version` must equal [`PROTOCOL_VERSION`]; anything else is answered with
//! `EINVAL` and the message "unsupported protocol version". Fields may be added to responses in
//! the same version; clients ignore fields they do not know.

use serde::{Deserialize, Serialize};
use umacvlan_core::engine::{MacvlanAttrs, Mode};
use umacvlan_core::wire::MacAddr;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/umacvlan/umacvlan.sock";
/// Largest request or response line, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// One request line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What to do.
    pub request: Request,
}

/// A request line of a batch (`umacvlan -batch` without `-force`): an [`Envelope`] with
/// `"stop_on_error": true`. Once one such request on a connection fails, every later one on
/// it is answered `ECANCELED` and not applied — iproute2 stops a batch at its first error,
/// and a pipelining client has already sent what follows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BatchEnvelope {
    /// The request.
    #[serde(flatten)]
    pub envelope: Envelope,
    /// Stop at the batch's first error.
    pub stop_on_error: bool,
}

/// A network namespace named as iproute2 names it: `netns NAME` (a file under
/// `/var/run/netns`) or `netns PID` (that process's namespace).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetnsRef {
    /// `/var/run/netns/NAME`.
    Name(String),
    /// `/proc/PID/ns/net`.
    Pid(u32),
}

/// The requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and version check; answered with [`Response::Hello`].
    Hello,
    /// `link add`.
    LinkAdd(LinkAdd),
    /// `link set`.
    LinkSet(LinkSet),
    /// `link del NAME`.
    LinkDel {
        /// The macvlan's name.
        name: String,
    },
    /// `link show [NAME]`: answered with [`Response::Links`].
    LinkShow {
        /// One device, or all when `None`.
        name: Option<String>,
    },
    /// Port-wide state and drop counters of every lower: answered with [`Response::Ports`].
    PortShow,
    /// Every macvlan's name and counters, nothing else (what the statistics tree reads each
    /// second): answered with [`Response::Counters`].
    LinkStats,
    /// Re-read the configuration file and apply the difference (`umacvlan reload`); answered
    /// with [`Response::Ok`] or, for a refused file, an error whose message is
    /// `FILE:LINE: reason`.
    Reload,
    /// Explain what the engine would do with a frame, sending nothing: answered with
    /// [`Response::Trace`].
    Trace(TraceRequest),
    /// Stream frame decisions (`monitor`, `capture`): answered with [`Response::Ok`], then one
    /// [`MonitorLine`] per line until the client closes the connection.
    Monitor(MonitorRequest),
}

/// `link add [link] LOWER name NAME [address MAC] [mtu N] [netns NS] type macvlan …`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LinkAdd {
    /// The lower device's name, in the daemon's namespace unless `lower_netns` says otherwise.
    pub lower: String,
    /// The namespace the lower lives in (iproute2's `link-netns`, the CNI plugin's
    /// `linkInContainer`); `None`: the daemon's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_netns: Option<NetnsRef>,
    /// The new macvlan's name.
    pub name: String,
    /// `address MAC`.
    pub address: Option<MacAddr>,
    /// `mtu N`.
    pub mtu: Option<u32>,
    /// `netns NS|PID`: create the TAP straight in that namespace.
    pub netns: Option<NetnsRef>,
    /// `up` given on the command line (iproute2 accepts `up` on `link add`).
    pub up: bool,
    /// The `type macvlan …` attributes.
    pub macvlan: MacvlanAttrs,
    /// The CNI attachment this macvlan was made for (set by the CNI plugin, kept in the state
    /// file, shown by `link show`; GC finds stale attachments by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni: Option<Box<CniAttachment>>,
}

/// Which CNI attachment a macvlan belongs to: the network configuration's `name`, the
/// container id and the interface name inside the container (`CNI_IFNAME`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(default)]
pub struct CniAttachment {
    /// The network configuration's `name`.
    pub network: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`: the macvlan's name inside the container.
    pub ifname: String,
    /// `CNI_NETNS` as given on ADD.
    pub netns: String,
}

/// `link set [dev] NAME [up|down] [address MAC] [mtu N] [netns NS] [type macvlan …]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LinkSet {
    /// The macvlan's name.
    pub name: String,
    /// `up` (true) or `down` (false).
    pub up: Option<bool>,
    /// `address MAC`.
    pub address: Option<MacAddr>,
    /// `mtu N`.
    pub mtu: Option<u32>,
    /// `netns NS|PID`.
    pub netns: Option<NetnsRef>,
    /// `type macvlan …` attributes, when `type macvlan` was given.
    pub macvlan: Option<MacvlanAttrs>,
}

/// Replies.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// The request was applied.
    Ok,
    /// Answer to [`Request::Hello`].
    Hello {
        /// The daemon's protocol version.
        version: u32,
        /// The daemon's package version.
        daemon: String,
    },
    /// Answer to [`Request::LinkShow`].
    Links {
        /// The macvlans, in creation order.
        links: Vec<LinkInfo>,
    },
    /// Answer to [`Request::PortShow`].
    Ports {
        /// One entry per lower device with macvlans.
        ports: Vec<PortInfo>,
    },
    /// Answer to [`Request::LinkStats`].
    Counters {
        /// The macvlans, in creation order.
        counters: Vec<LinkCounters>,
    },
    /// Answer to [`Request::Trace`].
    Trace {
        /// The decision tree.
        trace: TraceReport,
    },
    /// The request was refused; nothing changed.
    Error {
        /// Linux errno value.
        errno: i32,
        /// The kernel's extack message where it gives one (printed as `Error: <message>.`);
        /// otherwise absent and clients print `RTNETLINK answers: <strerror(errno)>`.
        message: Option<String>,
    },
}

/// One macvlan's counters, by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LinkCounters {
    /// Name.
    pub ifname: String,
    /// Counters, as in [`LinkInfo::stats`].
    pub stats: Stats64,
}

/// Everything `link show -d -s` prints for one macvlan.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LinkInfo {
    /// The TAP's ifindex in its namespace.
    pub ifindex: u32,
    /// Name.
    pub ifname: String,
    /// The lower device's name.
    pub link: String,
    /// The lower device's ifindex (in the lower's namespace).
    pub link_ifindex: u32,
    /// Name of the namespace the macvlan lives in, when it is not the daemon's.
    pub netns: Option<String>,
    /// Name of the namespace the lower device lives in, when it is not the daemon's (it was
    /// moved there after the macvlan was created on it).
    pub lower_netns: Option<String>,
    /// iproute2 flag names in iproute2 order, e.g. `["BROADCAST","MULTICAST","UP","LOWER_UP"]`.
    pub flags: Vec<String>,
    /// MTU.
    pub mtu: u32,
    /// `UP`, `DOWN`, `LOWERLAYERDOWN`, …
    pub operstate: String,
    /// The qdisc a kernel macvlan would show: `noop` until first opened, `noqueue` after.
    /// Empty from daemons that do not report it (clients then decide by `UP`).
    pub qdisc: String,
    /// The macvlan's MAC.
    pub address: MacAddr,
    /// Promiscuity count of the macvlan device.
    pub promiscuity: u32,
    /// Allmulti count of the macvlan device.
    pub allmulti: u32,
    /// `min_mtu`.
    pub min_mtu: u32,
    /// `max_mtu`.
    pub max_mtu: u32,
    /// Mode.
    pub mode: Option<Mode>,
    /// `nopromisc` flag.
    pub nopromisc: bool,
    /// `nodst` flag.
    pub nodst: bool,
    /// This device's `bcqueuelen` request.
    pub bcqueuelen: u32,
    /// The port's queue length (max of the requests).
    pub usedbcqueuelen: u32,
    /// The port's `bclim`, present only when not the default 1 (as the kernel dumps it).
    pub bclim: Option<i32>,
    /// Source-mode list length (always present for the kernel; printed in source mode).
    pub macaddr_count: u32,
    /// Source-mode list.
    pub macaddr_data: Vec<MacAddr>,
    /// Counters.
    pub stats: Stats64,
    /// The CNI attachment the macvlan was made for, if the CNI plugin made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni: Option<Box<CniAttachment>>,
    /// The data path, when not the TAP path (`bpf`: the eBPF fast path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapath: Option<String>,
    /// `hostaccess on` (umacvlan's own option; absent when off).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hostaccess: bool,
}

/// The kernel's `rtnl_link_stats64` fields that a macvlan fills (others are zero).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Stats64 {
    /// rx_packets.
    pub rx_packets: u64,
    /// rx_bytes.
    pub rx_bytes: u64,
    /// rx_errors.
    pub rx_errors: u64,
    /// rx_dropped (reported equal to rx_errors, as the kernel does).
    pub rx_dropped: u64,
    /// multicast.
    pub multicast: u64,
    /// tx_packets.
    pub tx_packets: u64,
    /// tx_bytes.
    pub tx_bytes: u64,
    /// tx_errors.
    pub tx_errors: u64,
    /// tx_dropped.
    pub tx_dropped: u64,
}

/// One lower device and what umacvlan counts for it beyond the macvlans' own counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PortInfo {
    /// The lower's name.
    pub lower: String,
    /// The lower's ifindex.
    pub ifindex: u32,
    /// Its macvlans, in creation order.
    pub devices: Vec<String>,
    /// `usedbcqueuelen`.
    pub bc_queue_len: u32,
    /// `bclim`.
    pub bc_cutoff: i32,
    /// Frames the kernel would count in the lower's rx_dropped (broadcast queue full, local
    /// bridge frames the lower refused).
    pub lower_rx_dropped: u64,
    /// Malformed frames dropped.
    pub malformed: u64,
    /// IPv4 fragments dropped by reassembly.
    pub defrag_dropped: u64,
    /// Frames the lower's packet sockets dropped (receive buffer full).
    #[serde(default)]
    pub socket_dropped: u64,
    /// Data-plane workers whose epoll set failed and that were restarted with a new one.
    #[serde(default)]
    pub worker_restarts: u64,
}

/// A frame to trace: `src MAC dst MAC [vlan N] [ethertype X] [size N]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrameSpec {
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// An 802.1Q tag with this VLAN id (0–4095).
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Ethertype (after the tag); default IPv4.
    #[serde(default = "FrameSpec::default_ethertype")]
    pub ethertype: u16,
    /// Frame length in bytes, without FCS; default 60.
    #[serde(default = "FrameSpec::default_size")]
    pub size: u32,
}

impl FrameSpec {
    fn default_ethertype() -> u16 {
        0x0800
    }
    fn default_size() -> u32 {
        60
    }
    /// Largest `size` accepted (a 64 KiB GSO frame).
    pub const MAX_SIZE: u32 = 65535;

    /// The frame's bytes: header, tag, zero payload, cut or padded to `size`.
    pub fn build(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.size as usize);
        b.extend_from_slice(&self.dst.octets());
        b.extend_from_slice(&self.src.octets());
        if let Some(v) = self.vlan {
            b.extend_from_slice(&0x8100u16.to_be_bytes());
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&self.ethertype.to_be_bytes());
        b.resize(self.size as usize, 0);
        b
    }
}

/// `trace dev NAME frame …` (the macvlan sends it) or `trace lower NAME frame …` (it arrives
/// from the wire on that lower device).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TraceRequest {
    /// The sending macvlan.
    #[serde(default)]
    pub dev: Option<String>,
    /// The lower device it arrives on.
    #[serde(default)]
    pub lower: Option<String>,
    /// The lower whose own host sends it (`hostaccess`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The frame.
    pub frame: FrameSpec,
}

/// Answer to a [`TraceRequest`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TraceReport {
    /// Where the frame enters: `lower eth0` or `macvlan mv0 (bridge) on eth0`.
    pub entry: String,
    /// The frame as built, in words.
    pub frame: String,
    /// The steps and the verdict.
    pub trace: umacvlan_core::engine::Trace,
}

/// Which frames of a macvlan `capture` takes.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Frames delivered to it.
    Rx,
    /// Frames it sent.
    Tx,
    /// Both.
    #[default]
    Both,
}

/// `monitor [dev NAME] [drops]` and `capture dev NAME [rx|tx|both]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MonitorRequest {
    /// Only decisions this macvlan sent or received a copy of.
    pub dev: Option<String>,
    /// Only drops.
    pub drops: bool,
    /// Which side of `dev` (with `dev`; default both).
    pub direction: Direction,
    /// Carry up to this many bytes of each frame (`capture`); 0: none.
    pub snaplen: u32,
}

/// One decision as `monitor` streams it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct MonitorEvent {
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The lower device (the port).
    pub lower: String,
    /// Where the frame entered: `lower`, `macvlan` (sent by `dev`), `bcqueue` (flooded off the
    /// broadcast queue).
    pub entry: String,
    /// The sending macvlan, for `macvlan`.
    pub dev: Option<String>,
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// Ethertype after VLAN tags.
    pub ethertype: u16,
    /// Outer VLAN id.
    pub vlan: Option<u16>,
    /// Frame length.
    pub len: u32,
    /// The engine's reason (`RxReason`/`TxReason` name) and its fixed code.
    pub reason: String,
    /// The reason's code.
    pub reason_code: u8,
    /// The rule that decided, named as the spec names it.
    pub rule: String,
    /// Macvlans that received a copy (the first 16).
    pub to: Vec<String>,
    /// Copies written.
    pub copies: u16,
    /// Copies refused or not written.
    pub failed: u16,
    /// Counters the decision moved.
    pub counters: Vec<String>,
    /// A drop.
    pub drop: bool,
    /// The lower's own stack got it too.
    pub lower_stack: bool,
    /// Sent to the wire.
    pub to_wire: bool,
    /// Given to the lower's own host (`hostaccess`; absent when not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub to_host: bool,
    /// The frame's first bytes in hex (`capture`), up to the snap length.
    pub data: Option<String>,
}

/// One line of a [`Request::Monitor`] stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MonitorLine {
    /// A decision.
    Event(Box<MonitorEvent>),
    /// Events lost since the stream began (rings or the connection's queue were full),
    /// sent whenever the count grows.
    Lost(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol examples in the README parse and print as shown.
    #[test]
    fn readme_examples_round_trip() {
        let add: Envelope = serde_json::from_str(
            r#"{"version":1,"request":{"op":"link_add","lower":"eth0","name":"mv0","netns":{"name":"blue"},"up":true,
                "macvlan":{"mode":4,"flags":0,"bcqueuelen":1000}}}"#,
        )
        .unwrap();
        match &add.request {
            Request::LinkAdd(a) => {
                assert_eq!(
                    (a.lower.as_str(), a.name.as_str(), a.up),
                    ("eth0", "mv0", true)
                );
                assert_eq!(a.netns, Some(NetnsRef::Name("blue".into())));
                assert_eq!(a.macvlan.mode, Some(4));
            }
            other => panic!("{other:?}"),
        }
        let set: Envelope = serde_json::from_str(
            r#"{"version":1,"request":{"op":"link_set","name":"mv0","mtu":9000}}"#,
        )
        .unwrap();
        assert!(matches!(
            set.request,
            Request::LinkSet(LinkSet {
                mtu: Some(9000),
                ..
            })
        ));
        let mac: umacvlan_core::engine::MacAddrOp =
            serde_json::from_str(r#"{"op":"set","macs":["02:00:00:00:00:01"]}"#).unwrap();
        assert_eq!(
            mac,
            umacvlan_core::engine::MacAddrOp::Set(vec!["02:00:00:00:00:01".parse().unwrap()])
        );
        assert_eq!(
            serde_json::to_string(&Response::Ok).unwrap(),
            r#"{"status":"ok"}"#
        );
        let e = Response::Error {
            errno: 22,
            message: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"status":"error","errno":22,"message":null}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::LinkStats).unwrap(),
            r#"{"op":"link_stats"}"#
        );
        let c = Response::Counters {
            counters: vec![LinkCounters {
                ifname: "mv0".into(),
                stats: Stats64 {
                    rx_packets: 3,
                    ..Default::default()
                },
            }],
        };
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.starts_with(r#"{"status":"counters","counters":[{"ifname":"mv0""#));
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), c);
    }
}
