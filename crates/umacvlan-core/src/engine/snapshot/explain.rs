//! Why a frame goes where it goes: `trace` for the engine's decisions.
//!
//! The decision is never made twice. [`PortSnapshot::explain_receive`] and
//! [`PortSnapshot::explain_transmit`] run the real [`PortSnapshot::receive`] /
//! [`PortSnapshot::transmit`] and then describe the outcome, step by step, with the facts of
//! the snapshot that led to it (who listens to the source, who owns the destination, which
//! filter bit is set, why a macvlan was left out of a flood). Only the description lives
//! here; if it ever disagrees with the decision, the outcome (copies, verdict) is what
//! stands, since it is printed from the outcome itself.

use super::{
    flood_mask, untagged_protocol, BcSource, Delivery, DevId, ModeMask, PortSnapshot, RxOutcome,
    RxReason, TxOutcome, TxReason, BRIDGE_ONLY,
};
use crate::engine::hash::port_mc_hash;
use crate::engine::types::{Mode, PacketType};
use crate::wire::{ethertype, EthernetFrame};

/// One step of a trace, indented `depth` levels.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TraceLine {
    /// Nesting level (0: a top-level step).
    pub depth: u8,
    /// The step, in words.
    pub text: String,
}

/// The decision tree for one frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Trace {
    /// The steps, in the order the kernel's code takes them.
    pub lines: Vec<TraceLine>,
    /// The rule that decided, named as the spec names it.
    pub verdict: String,
    /// No macvlan (nor the lower's stack, for a frame meant for it) gets the frame.
    pub drop: bool,
    /// Copies made for macvlans.
    pub copies: u32,
    /// The receive decision's code ([`RxReason`] as u8), for a frame from the wire.
    pub rx_reason: Option<u8>,
    /// The transmit decision's code ([`TxReason`] as u8), for a frame a macvlan sent.
    pub tx_reason: Option<u8>,
}

impl Trace {
    fn step(&mut self, depth: u8, text: impl Into<String>) {
        self.lines.push(TraceLine {
            depth,
            text: text.into(),
        });
    }
}

impl RxReason {
    /// The fixed code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// From a code; `None` for an unknown one.
    pub const fn from_code(c: u8) -> Option<RxReason> {
        use RxReason::*;
        Some(match c {
            1 => NotOurs,
            2 => Unicast,
            3 => SourceModeTarget,
            4 => TargetDown,
            5 => NodstConsumed,
            6 => Reflected,
            7 => Queued,
            8 => Flooded,
            9 => Filtered,
            10 => Malformed,
            11 => HostEcho,
            12 => FromHost,
            _ => return None,
        })
    }

    /// Whether the frame reaches neither a macvlan nor the lower's stack, or — for a group
    /// nobody joined — no macvlan.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            RxReason::TargetDown | RxReason::Filtered | RxReason::Malformed | RxReason::HostEcho
        )
    }

    /// A short stable name (for JSON and metrics).
    pub const fn name(self) -> &'static str {
        match self {
            RxReason::NotOurs => "not_ours",
            RxReason::Unicast => "unicast",
            RxReason::SourceModeTarget => "source_mode_target",
            RxReason::TargetDown => "target_down",
            RxReason::NodstConsumed => "nodst_consumed",
            RxReason::Reflected => "reflected",
            RxReason::Queued => "queued",
            RxReason::Flooded => "flooded",
            RxReason::Filtered => "filtered",
            RxReason::Malformed => "malformed",
            RxReason::HostEcho => "host_echo",
            RxReason::FromHost => "from_host",
        }
    }
}

impl TxReason {
    /// The fixed code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// From a code; `None` for an unknown one.
    pub const fn from_code(c: u8) -> Option<TxReason> {
        use TxReason::*;
        Some(match c {
            1 => Wire,
            2 => FloodAndWire,
            3 => Local,
            4 => LocalRefused,
            5 => SenderDown,
            6 => Malformed,
            7 => ToHost,
            _ => return None,
        })
    }

    /// Whether the frame goes nowhere.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            TxReason::LocalRefused | TxReason::SenderDown | TxReason::Malformed
        )
    }

    /// A short stable name (for JSON and metrics).
    pub const fn name(self) -> &'static str {
        match self {
            TxReason::Wire => "wire",
            TxReason::FloodAndWire => "flood_and_wire",
            TxReason::Local => "local",
            TxReason::LocalRefused => "local_refused",
            TxReason::SenderDown => "sender_down",
            TxReason::Malformed => "malformed",
            TxReason::ToHost => "to_host",
        }
    }
}

/// The rule a received frame's decision is named by (the spec's words). `to` names the
/// single target of a unicast decision.
pub fn rx_rule(reason: RxReason, mode: Option<Mode>, to: &str, copies: u32) -> String {
    match reason {
        RxReason::NotOurs => "not for a macvlan: to the lower's stack".into(),
        RxReason::Unicast => format!("unicast: to {to}"),
        RxReason::SourceModeTarget => {
            format!("source mode: {to}'s own address is not delivered; to the lower's stack")
        }
        RxReason::TargetDown => "macvlan down: dropped".into(),
        RxReason::NodstConsumed => format!("source mode nodst: {copies} copies, consumed"),
        RxReason::Reflected => match mode {
            Some(m) => format!("{m}: own multicast reflected, back to {to} only"),
            None => format!("own multicast reflected, back to {to} only"),
        },
        RxReason::Queued => "multicast: to the broadcast queue".into(),
        RxReason::Flooded if copies == 0 => match mode {
            Some(m) => {
                format!("{m}: a sibling's multicast; no macvlan its mode floods to takes it")
            }
            None => "multicast filter: group not joined by any macvlan up".into(),
        },
        RxReason::Flooded => format!("multicast: flooded to {copies} macvlans"),
        RxReason::Filtered => "multicast filter: group not joined".into(),
        RxReason::Malformed => "malformed: dropped".into(),
        RxReason::HostEcho => {
            format!(
                "hostaccess: the host's own frame came back; {to} had it from the host: dropped"
            )
        }
        RxReason::FromHost if copies == 1 && !to.is_empty() => {
            format!("hostaccess: from the host to {to}")
        }
        RxReason::FromHost => format!("hostaccess: from the host to {copies} macvlans"),
    }
}

/// The rule a transmitted frame's decision is named by. `mode` is the sender's.
pub fn tx_rule(reason: TxReason, mode: Option<Mode>, to: &str, copies: u32) -> String {
    let m = mode.map_or("macvlan", Mode::as_str);
    match reason {
        TxReason::Wire => format!("{m}: to the wire"),
        TxReason::FloodAndWire => {
            format!("bridge: flooded to {copies} siblings and to the wire")
        }
        TxReason::Local => format!("bridge: to sibling {to}"),
        TxReason::LocalRefused => "bridge: to a sibling, refused by the lower: dropped".into(),
        TxReason::SenderDown => "macvlan down: dropped".into(),
        TxReason::Malformed => "malformed: dropped".into(),
        TxReason::ToHost => "hostaccess: to the host".into(),
    }
}

fn ptype(p: PacketType) -> &'static str {
    match p {
        PacketType::Host => "host",
        PacketType::Broadcast => "broadcast",
        PacketType::Multicast => "multicast",
        PacketType::OtherHost => "otherhost",
    }
}

fn modes(mask: ModeMask) -> String {
    let v: Vec<&str> = Mode::ALL
        .into_iter()
        .filter(|m| mask.contains(*m))
        .map(Mode::as_str)
        .collect();
    v.join(", ")
}

impl PortSnapshot {
    fn dev_label(&self, id: DevId, name: &dyn Fn(DevId) -> String) -> String {
        match self.device(id) {
            Some(d) => format!(
                "{} ({}, {})",
                name(id),
                d.mode,
                if d.up { "up" } else { "down" }
            ),
            None => name(id),
        }
    }

    fn copy_lines(
        &self,
        t: &mut Trace,
        depth: u8,
        ds: &[Delivery],
        name: &dyn Fn(DevId) -> String,
    ) {
        for d in ds {
            if d.refused {
                t.step(
                    depth,
                    format!(
                        "-> {}: refused (larger than its MTU): rx_errors +1",
                        name(d.dev)
                    ),
                );
                continue;
            }
            let mc = if d.multicast { ", multicast +1" } else { "" };
            t.step(
                depth,
                format!(
                    "-> copy to {} ({}): rx_packets +1, rx_bytes +{}{mc}",
                    name(d.dev),
                    ptype(d.pkt_type),
                    d.bytes
                ),
            );
        }
    }

    /// The source-mode step (`macvlan_forward_source`), shared by both kinds of destination.
    fn explain_sources(
        &self,
        t: &mut Trace,
        f: &EthernetFrame,
        ds: &[Delivery],
        name: &dyn Fn(DevId) -> String,
    ) {
        let src = f.src();
        let Some(i) = self.sources.get(src) else {
            t.step(0, format!("source mode: no macvlan lists src {src}"));
            return;
        };
        t.step(0, format!("source mode: src {src} is listed by"));
        for id in self.source_lists[i as usize].iter() {
            let Some(d) = self.device(*id) else { continue };
            let nodst = if d.nodst { ", nodst" } else { "" };
            match ds.iter().find(|x| x.dev == d.id) {
                Some(x) => t.step(
                    1,
                    format!(
                        "{}{nodst}: source mode: copy to {} ({}): rx_packets +1, rx_bytes +{}",
                        self.dev_label(d.id, name),
                        name(d.id),
                        ptype(x.pkt_type),
                        x.bytes
                    ),
                ),
                None => t.step(
                    1,
                    format!(
                        "{}{nodst}: macvlan down: no copy",
                        self.dev_label(d.id, name)
                    ),
                ),
            }
        }
    }

    /// Walks the flood order and says, for each macvlan, why it gets a copy or not.
    #[allow(clippy::too_many_arguments)]
    fn explain_flood(
        &self,
        t: &mut Trace,
        depth: u8,
        f: &EthernetFrame,
        src: Option<DevId>,
        mask: ModeMask,
        sibling_reason: &str,
        ds: &[Delivery],
        name: &dyn Fn(DevId) -> String,
    ) {
        if untagged_protocol(f).0 == ethertype::PAUSE {
            t.step(depth, "PAUSE frame (0x8808): never flooded to macvlans");
            return;
        }
        t.step(
            depth,
            format!("flood to up macvlans in modes {{{}}}", modes(mask)),
        );
        if self.flood.is_empty() {
            t.step(depth + 1, "no macvlan is up");
        }
        let dst = f.dst();
        for id in &self.flood {
            let Some(d) = self.device(*id) else { continue };
            let label = self.dev_label(d.id, name);
            if Some(d.id) == src {
                t.step(depth + 1, format!("{label}: the sender: skipped"));
            } else if !mask.contains(d.mode) {
                t.step(
                    depth + 1,
                    format!("{label}: {}: {sibling_reason}: skipped", d.mode),
                );
            } else if !d.accepts_group(dst) {
                t.step(
                    depth + 1,
                    format!("{label}: multicast filter: group not joined: skipped"),
                );
            } else if d.hostaccess && f.src() == self.lower_mac && src.is_none() {
                t.step(
                    depth + 1,
                    format!(
                        "{label}: hostaccess: sent by the host, which gave it a copy already: \
                         skipped"
                    ),
                );
            } else if let Some(x) = ds.iter().find(|x| x.dev == d.id) {
                self.copy_lines(t, depth + 1, std::slice::from_ref(x), name);
            }
        }
    }

    /// Explains what [`PortSnapshot::receive`] does with `frame` from the wire: the same
    /// decision, with its steps. `name` gives each macvlan's name.
    pub fn explain_receive(&self, frame: &[u8], name: &dyn Fn(DevId) -> String) -> Trace {
        let mut out = RxOutcome::default();
        self.receive(frame, &mut out);
        let mut t = Trace::default();
        let reason = out.reason.unwrap_or(RxReason::Malformed);
        t.rx_reason = Some(reason.code());
        let Ok(f) = EthernetFrame::new_checked(frame) else {
            t.step(
                0,
                format!(
                    "frame of {} bytes: shorter than an Ethernet header, or its VLAN tag is cut \
                     short",
                    frame.len()
                ),
            );
            t.step(1, "port: malformed +1");
            t.verdict = rx_rule(reason, None, "", 0);
            t.drop = true;
            return t;
        };
        let dst = f.dst();
        let mut to = String::new();
        let mut mode = None;
        // Copies the broadcast queue would make when processed.
        let mut queued_copies = None;
        if dst.is_multicast() {
            t.step(0, format!("dst {dst}: group address: multicast path"));
            self.explain_sources(&mut t, &f, &out.deliveries, name);
            t.copies = out.deliveries.len() as u32;
            match reason {
                RxReason::NodstConsumed => {
                    t.step(
                        1,
                        "a nodst listener consumes the frame: nothing else gets it",
                    );
                }
                RxReason::Reflected => {
                    let d = out.deliveries.last().copied();
                    if let Some(d) = d {
                        let s = self.device(d.dev);
                        mode = s.map(|s| s.mode);
                        to = name(d.dev);
                        t.step(
                            0,
                            format!(
                                "src {} is {}: not vepa or bridge, so this is its own frame \
                                 reflected by the switch",
                                f.src(),
                                self.dev_label(d.dev, name)
                            ),
                        );
                        t.step(
                            1,
                            format!(
                                "-> back to {to} only ({}): rx_packets +1, rx_bytes +0",
                                ptype(d.pkt_type)
                            ),
                        );
                        t.copies = out.deliveries.len() as u32;
                    }
                }
                _ => {
                    let src = self.lookup(f.src()).map(|s| BcSource {
                        id: s.id,
                        mode: s.mode,
                    });
                    match src {
                        Some(s) => t.step(
                            0,
                            format!(
                                "src {} is sibling {}: flooded by the sender's mode rule",
                                f.src(),
                                self.dev_label(s.id, name)
                            ),
                        ),
                        None => t.step(0, format!("src {}: not a macvlan of this port", f.src())),
                    }
                    let h = port_mc_hash(dst);
                    let sibling = match src {
                        None => "not flooded from outside",
                        Some(s) if s.mode == Mode::Vepa => "source is a sibling",
                        Some(_) => "source is a sibling (bridge peers had it on the way out)",
                    };
                    // Source-mode copies come first; floods never reach source-mode devices.
                    let sources = out
                        .deliveries
                        .iter()
                        .take_while(|d| self.device(d.dev).is_some_and(|x| x.mode == Mode::Source))
                        .count();
                    if self.bc_filter.test(h) {
                        t.step(
                            0,
                            format!(
                                "port broadcast filter: bit {h} set: to the broadcast queue \
                                 (bcqueuelen {}); full queue: dropped, lower rx_dropped +1",
                                self.bc_queue_len
                            ),
                        );
                        let mut later = Vec::new();
                        self.flood_from_wire(frame, src, &mut later);
                        queued_copies = Some(later.iter().filter(|d| !d.refused).count() as u32);
                        t.step(
                            1,
                            "when the queue is processed (with the snapshot then in force):",
                        );
                        self.explain_flood(
                            &mut t,
                            2,
                            &f,
                            src.map(|s| s.id),
                            flood_mask(src),
                            sibling,
                            &later,
                            name,
                        );
                    } else if self.mc_filter.test(h) {
                        t.step(0, format!("port multicast filter: bit {h} set: flood now"));
                        let flooded = &out.deliveries[sources..];
                        self.explain_flood(
                            &mut t,
                            1,
                            &f,
                            src.map(|s| s.id),
                            flood_mask(src),
                            sibling,
                            flooded,
                            name,
                        );
                    } else {
                        t.step(
                            0,
                            format!(
                                "port multicast filter: bit {h} clear: multicast filter: group \
                                 not joined by any macvlan"
                            ),
                        );
                    }
                }
            }
        } else {
            t.step(0, format!("dst {dst}: unicast path"));
            self.explain_sources(&mut t, &f, &out.deliveries, name);
            t.copies = out.deliveries.len() as u32;
            if reason == RxReason::NodstConsumed {
                t.step(
                    1,
                    "a nodst listener consumes the frame: nothing else gets it",
                );
            } else {
                let target = match self.passthru {
                    Some(id) => {
                        t.step(0, format!("passthru port: the target is {}", name(id)));
                        self.device(id)
                    }
                    None => {
                        let d = self.lookup(dst);
                        match d {
                            Some(d) => t.step(
                                0,
                                format!("dst lookup: {dst} is {}", self.dev_label(d.id, name)),
                            ),
                            None => t.step(0, format!("dst lookup: no up macvlan has {dst}")),
                        }
                        d
                    }
                };
                if let Some(d) = target {
                    to = name(d.id);
                    mode = Some(d.mode);
                }
                match reason {
                    RxReason::Unicast => {
                        let d = out.deliveries.last().copied();
                        if let Some(d) = d {
                            self.copy_lines(&mut t, 1, &[d], name);
                        }
                    }
                    RxReason::TargetDown => t.step(1, format!("{to} is down: dropped")),
                    RxReason::HostEcho => t.step(
                        1,
                        format!(
                            "{to} has hostaccess on and src is the lower's own MAC: it had \
                             this frame from the host already: dropped"
                        ),
                    ),
                    RxReason::SourceModeTarget => {
                        t.step(1, format!("{to} is in source mode: not delivered by dst"))
                    }
                    _ => {}
                }
            }
        }
        if out.lower_stack {
            t.step(0, "the lower's own stack receives the frame too");
        }
        t.copies = queued_copies
            .unwrap_or_else(|| out.deliveries.iter().filter(|d| !d.refused).count() as u32);
        t.verdict = rx_rule(reason, mode, &to, t.copies);
        t.drop = reason.is_drop();
        t
    }

    /// Explains what [`PortSnapshot::transmit`] does with `frame` sent by macvlan `from`.
    pub fn explain_transmit(
        &self,
        from: DevId,
        frame: &[u8],
        name: &dyn Fn(DevId) -> String,
    ) -> Trace {
        let mut out = TxOutcome::default();
        self.transmit(from, frame, &mut out);
        let mut t = Trace::default();
        let reason = out.reason.unwrap_or(TxReason::Malformed);
        t.tx_reason = Some(reason.code());
        let sender = self.device(from);
        let mode = sender.map(|d| d.mode);
        t.step(0, format!("sender {}", self.dev_label(from, name)));
        let mut to = String::new();
        if sender.is_some_and(|d| d.hostaccess) && reason != TxReason::SenderDown {
            t.step(
                0,
                "hostaccess on: frames for the lower's MAC or a group reach the host",
            );
        }
        match reason {
            TxReason::SenderDown => t.step(1, "macvlan down: dropped, nothing counted"),
            TxReason::Malformed => t.step(1, "shorter than an Ethernet header: dropped"),
            _ => {}
        }
        if let Ok(f) = EthernetFrame::new_lenient(frame) {
            let dst = f.dst();
            match reason {
                TxReason::FloodAndWire => {
                    t.step(0, format!("bridge mode, dst {dst} is a group"));
                    self.explain_flood(
                        &mut t,
                        1,
                        &f,
                        Some(from),
                        BRIDGE_ONLY,
                        "only bridge siblings get it locally",
                        &out.deliveries,
                        name,
                    );
                    t.step(0, "-> to the wire");
                }
                TxReason::Local | TxReason::LocalRefused => {
                    let d = self.lookup(dst);
                    if let Some(d) = d {
                        to = name(d.id);
                    }
                    t.step(
                        0,
                        format!(
                            "bridge mode, dst lookup: {dst} is {}: local delivery through the \
                             lower's receive path",
                            d.map_or_else(|| dst.to_string(), |d| self.dev_label(d.id, name))
                        ),
                    );
                    if reason == TxReason::Local {
                        self.copy_lines(&mut t, 1, &out.deliveries, name);
                    } else if out.lower_rx_dropped {
                        t.step(
                            1,
                            "the lower refuses it (down, or larger than its MTU): lower \
                             rx_dropped +1",
                        );
                    } else {
                        t.step(
                            1,
                            "its VLAN tag is cut short: the lower's receive path frees it",
                        );
                    }
                }
                TxReason::ToHost => {
                    t.step(
                        0,
                        format!(
                            "dst {dst} is the lower's own MAC: into the lower's receive path, not \
                             to the wire"
                        ),
                    );
                }
                TxReason::Wire => {
                    if mode == Some(Mode::Bridge) {
                        match self.lookup(dst) {
                            Some(d) => t.step(
                                0,
                                format!(
                                    "bridge mode, dst lookup: {dst} is {}: not a bridge sibling",
                                    self.dev_label(d.id, name)
                                ),
                            ),
                            None => t.step(
                                0,
                                format!("bridge mode, dst lookup: no up macvlan has {dst}"),
                            ),
                        }
                    } else if let Some(m) = mode {
                        t.step(0, format!("{m} mode: no local switching"));
                    }
                    t.step(0, "-> to the wire");
                }
                _ => {}
            }
        }
        if out.tx_bytes > 0 {
            t.step(
                0,
                format!(
                    "{}: tx_packets +1, tx_bytes +{} (when the send succeeds)",
                    name(from),
                    out.tx_bytes
                ),
            );
        }
        if out.to_host && reason != TxReason::ToHost {
            t.step(0, "-> a copy to the host (into the lower's receive path)");
        }
        t.copies = out.deliveries.iter().filter(|d| !d.refused).count() as u32;
        t.verdict = tx_rule(reason, mode, &to, t.copies);
        if out.to_host && reason != TxReason::ToHost {
            t.verdict.push_str("; hostaccess: and to the host");
        }
        t.drop = reason.is_drop();
        t
    }

    /// Explains what [`PortSnapshot::from_host`] does with `frame` the lower's own host sent.
    pub fn explain_from_host(&self, frame: &[u8], name: &dyn Fn(DevId) -> String) -> Trace {
        let mut out = RxOutcome::default();
        self.from_host(frame, &mut out);
        let mut t = Trace::default();
        let reason = out.reason.unwrap_or(RxReason::Malformed);
        t.rx_reason = Some(reason.code());
        let mut to = String::new();
        if let Ok(f) = EthernetFrame::new_checked(frame) {
            if f.src() != self.lower_mac {
                t.step(
                    0,
                    format!("src {} is not the lower's MAC {}", f.src(), self.lower_mac),
                );
            } else if !self.host_any {
                t.step(0, "no macvlan of this port has hostaccess on");
            } else {
                t.step(0, "sent by the lower's own host, on its way to the wire");
                for id in &self.flood {
                    let Some(d) = self.device(*id) else { continue };
                    if !d.hostaccess {
                        continue;
                    }
                    let label = self.dev_label(d.id, name);
                    match out.deliveries.iter().find(|x| x.dev == d.id) {
                        Some(x) => self.copy_lines(&mut t, 1, std::slice::from_ref(x), name),
                        None if f.dst().is_multicast() => t.step(
                            1,
                            format!("{label}: multicast filter: group not joined: skipped"),
                        ),
                        None => {}
                    }
                }
                if let [d] = out.deliveries.as_slice() {
                    to = name(d.dev);
                }
            }
        } else {
            t.step(0, "shorter than an Ethernet header: ignored");
        }
        t.copies = out.deliveries.len() as u32;
        t.verdict = if reason == RxReason::NotOurs {
            "hostaccess: not for a hostaccess macvlan (on to the wire only)".into()
        } else {
            rx_rule(reason, None, &to, t.copies)
        };
        t.drop = false;
        t
    }
}
