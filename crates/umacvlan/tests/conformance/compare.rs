//! Comparing two recordings, and the two lists every disagreement is checked against:
//! [`DEVIATIONS`] (deliberate: what a TAP + AF_PACKET design cannot do) and
//! [`KNOWN_DAEMON_BUGS`] (must be empty, or the suite fails).
//! Anything else fails the test.

use super::world::{Entry, FrameMeta, McState, Obs, Seen};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One disagreement.
#[derive(Clone, Debug)]
pub struct Diff {
    pub scenario: String,
    /// The recording key (step and label).
    pub key: String,
    /// "frame", "counters", "control", "command", "details", "sys", "lower", "structure".
    pub kind: &'static str,
    /// The device/point the entry is about.
    pub dev: String,
    /// The step of a frame or counter entry (0: none).
    pub step: u32,
    /// The control operation the entry followed.
    pub after: String,
    /// What differs: a point (frames), a counter, a JSON path, "send", "result".
    pub item: String,
    pub kernel: String,
    pub user: String,
    /// Frames: the injected frame.
    pub meta: Option<FrameMeta>,
    /// Frames: the copies seen at `item`.
    pub kseen: Vec<Seen>,
    pub useen: Vec<Seen>,
    /// Frames: the receiving macvlan's multicast state in the kernel world.
    pub kmc: Option<McState>,
    /// Counters: both values, both whole delta sets, and the user world's side information.
    pub kval: i64,
    pub uval: i64,
    pub kall: BTreeMap<String, i64>,
    pub uall: BTreeMap<String, i64>,
    pub uaux: BTreeMap<String, i64>,
    /// Exit codes (kernel, umacvlan) of the control operation `after` names, once one ran.
    pub after_codes: Option<(i32, i32)>,
}

impl Diff {
    fn new(scenario: &str, e: &Entry, item: &str, kernel: String, user: String) -> Diff {
        Diff {
            scenario: scenario.to_string(),
            key: e.key.clone(),
            kind: e.kind,
            dev: e.dev.clone(),
            step: e.step,
            after: e.after.clone(),
            item: item.to_string(),
            kernel,
            user,
            meta: None,
            kseen: Vec::new(),
            useen: Vec::new(),
            kmc: None,
            kval: 0,
            uval: 0,
            kall: BTreeMap::new(),
            uall: BTreeMap::new(),
            uaux: BTreeMap::new(),
            after_codes: None,
        }
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {} :: {}", self.scenario, self.key, self.item)?;
        if let Some(m) = &self.meta {
            write!(f, " (frame {} from {})", m.desc, m.from)?;
        }
        write!(
            f,
            "\n      kernel:   {}\n      umacvlan: {}",
            self.kernel, self.user
        )
    }
}

fn seen_text(v: &[Seen]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Flattens JSON into path → scalar text.
fn flatten(v: &Value, path: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                flatten(x, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            out.insert(
                if path.is_empty() {
                    ".".into()
                } else {
                    path.to_string()
                },
                v.to_string(),
            );
        }
    }
}

/// Tallies of one comparison.
#[derive(Default, Debug, Clone)]
pub struct Tally {
    pub frames: usize,
    pub controls: usize,
    pub counters: usize,
    pub views: usize,
    /// Entries that agree exactly.
    pub agree: usize,
    /// Entries with at least one difference.
    pub disagree: usize,
}

/// Compares two recordings of one scenario.
pub fn compare(scenario: &str, k: &[Entry], u: &[Entry], t: &mut Tally) -> Vec<Diff> {
    let mut diffs = Vec::new();
    if k.len() != u.len() || k.iter().zip(u).any(|(a, b)| a.key != b.key) {
        let e = k.first().or(u.first()).cloned();
        if let Some(e) = e {
            let ks: Vec<&str> = k.iter().map(|e| e.key.as_str()).collect();
            let us: Vec<&str> = u.iter().map(|e| e.key.as_str()).collect();
            let mut d = Diff::new(
                scenario,
                &e,
                "recording",
                format!("{ks:?}"),
                format!("{us:?}"),
            );
            d.kind = "structure";
            diffs.push(d);
        }
        return diffs;
    }
    // Per step, how many frame copies the lower received (captured there, not sent by its
    // host), in each world: the most it can have dropped (see the lower-rx-dropped rule).
    let lower_rx = |entries: &[Entry]| {
        let mut m: BTreeMap<u32, i64> = BTreeMap::new();
        for e in entries {
            if let Obs::Frame { seen, .. } = &e.obs {
                let n = seen
                    .get("low")
                    .map_or(0, |v| v.iter().filter(|c| c.pkt != "OUTGOING").count());
                *m.entry(e.step).or_default() += n as i64;
            }
        }
        m
    };
    let (k_lower_rx, u_lower_rx) = (lower_rx(k), lower_rx(u));
    // Per step, the frames macvlans sent with a VLAN ethertype but too short for the tag, and
    // their bytes (see the vlan-runt-untagged rule).
    let mut vlan_runts: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
    for e in k {
        if let Obs::Frame { meta, .. } = &e.obs {
            if vlan_runt_from_macvlan(meta) {
                let v = vlan_runts.entry(e.step).or_default();
                v.0 += 1;
                v.1 += meta.len as i64;
            }
        }
    }
    let mut codes: Option<(i32, i32)> = None;
    for (a, b) in k.iter().zip(u) {
        let before = diffs.len();
        match (&a.obs, &b.obs) {
            (
                Obs::Frame {
                    meta,
                    sent: ks,
                    seen: kseen,
                    ctx: kctx,
                },
                Obs::Frame {
                    sent: us,
                    seen: useen,
                    ..
                },
            ) => {
                t.frames += 1;
                if ks != us {
                    let mut d = Diff::new(scenario, a, "send", ks.clone(), us.clone());
                    d.meta = Some(meta.clone());
                    diffs.push(d);
                }
                let pts: BTreeSet<&String> = kseen.keys().chain(useen.keys()).collect();
                for p in pts {
                    let kv = kseen.get(p).cloned().unwrap_or_default();
                    let uv = useen.get(p).cloned().unwrap_or_default();
                    if kv != uv {
                        let mut d = Diff::new(scenario, a, p, seen_text(&kv), seen_text(&uv));
                        d.meta = Some(meta.clone());
                        d.kseen = kv;
                        d.useen = uv;
                        d.kmc = kctx.get(p.as_str()).cloned();
                        diffs.push(d);
                    }
                }
            }
            (Obs::Counters { delta: kd, .. }, Obs::Counters { delta: ud, aux }) => {
                t.counters += 1;
                match (kd, ud) {
                    (Some(kd), Some(ud)) => {
                        for (f, kv) in kd {
                            let uv = ud.get(f).copied().unwrap_or(0);
                            if *kv != uv {
                                let mut d =
                                    Diff::new(scenario, a, f, kv.to_string(), uv.to_string());
                                d.kval = *kv;
                                d.uval = uv;
                                d.kall = kd.clone();
                                d.uall = ud.clone();
                                d.uaux = aux.clone();
                                for (key, m) in [
                                    ("lower_rx_frames_kernel", &k_lower_rx),
                                    ("lower_rx_frames_user", &u_lower_rx),
                                ] {
                                    d.uaux
                                        .insert(key.into(), m.get(&a.step).copied().unwrap_or(0));
                                }
                                let (n, bytes) =
                                    vlan_runts.get(&a.step).copied().unwrap_or_default();
                                d.uaux.insert("vlan_runts_from_macvlans".into(), n);
                                d.uaux.insert("vlan_runt_bytes_from_macvlans".into(), bytes);
                                diffs.push(d);
                            }
                        }
                    }
                    (None, None) => {}
                    (kd, ud) => diffs.push(Diff::new(
                        scenario,
                        a,
                        "device",
                        format!("{kd:?}"),
                        format!("{ud:?}"),
                    )),
                }
            }
            (Obs::Control { out: ko, .. }, Obs::Control { out: uo, .. }) => {
                t.controls += 1;
                codes = Some((ko.code, uo.code));
                if ko != uo {
                    diffs.push(Diff::new(
                        scenario,
                        a,
                        "result",
                        ko.to_string(),
                        uo.to_string(),
                    ));
                }
            }
            (Obs::Json(kv), Obs::Json(uv)) => {
                t.views += 1;
                if kv != uv {
                    let mut km = BTreeMap::new();
                    let mut um = BTreeMap::new();
                    flatten(kv, "", &mut km);
                    flatten(uv, "", &mut um);
                    let paths: BTreeSet<&String> = km.keys().chain(um.keys()).collect();
                    for p in paths {
                        let x = km.get(p).cloned().unwrap_or_else(|| "(absent)".into());
                        let y = um.get(p).cloned().unwrap_or_else(|| "(absent)".into());
                        if x != y {
                            let mut d = Diff::new(scenario, a, p, x, y);
                            d.after_codes = codes;
                            diffs.push(d);
                        }
                    }
                }
            }
            _ => diffs.push(Diff::new(
                scenario,
                a,
                "kind",
                format!("{:?}", a.kind),
                format!("{:?}", b.kind),
            )),
        }
        if diffs.len() == before {
            t.agree += 1;
        } else {
            t.disagree += 1;
        }
    }
    diffs
}

/// A rule that explains disagreements.
pub struct Rule {
    pub id: &'static str,
    pub reason: &'static str,
    pub applies: fn(&Diff) -> bool,
}

/// The mode a scenario gives a macvlan, from its name (b…=bridge, v…=vepa, p…=private,
/// s…=source, pt…=passthru).
/// A leading `h` (a macvlan in the lower's namespace) does not count.
pub fn mode_of(dev: &str) -> &'static str {
    let dev = dev.strip_prefix('h').unwrap_or(dev);
    if dev.starts_with("pt") {
        "passthru"
    } else if dev.starts_with('b') {
        "bridge"
    } else if dev.starts_with('v') {
        "vepa"
    } else if dev.starts_with('p') {
        "private"
    } else if dev.starts_with('s') {
        "source"
    } else {
        ""
    }
}

fn is_macvlan_point(p: &str) -> bool {
    !matches!(p, "ext" | "low" | "br")
}

/// Bytes 2..5 of a MAC: all the kernel's per-device multicast hash looks at.
fn hash_key(mac: &str) -> Vec<String> {
    mac.split(':').skip(2).map(str::to_string).collect()
}

/// `dst` shares its hashed bytes with broadcast or a group in `joined`: it passes the kernel's
/// per-device filter on every device, whatever the salt, so it is no random collision.
fn aliases_joined(dst: &str, joined: &[String]) -> bool {
    let k = hash_key(dst);
    k == hash_key("ff:ff:ff:ff:ff:ff") || joined.iter().any(|g| hash_key(g) == k)
}

fn group(mac: &str) -> bool {
    u8::from_str_radix(&mac[..2], 16).is_ok_and(|b| b & 1 == 1)
}

/// Same copies, except that the kernel says HOST where umacvlan says OTHERHOST.
fn host_vs_otherhost(d: &Diff) -> bool {
    d.kseen.len() == d.useen.len()
        && !d.kseen.is_empty()
        && d.kseen.iter().zip(&d.useen).all(|(k, u)| {
            k.len == u.len
                && k.vlan == u.vlan
                && k.sum == u.sum
                && (k.pkt == u.pkt || (k.pkt == "HOST" && u.pkt == "OTHERHOST"))
        })
}

/// Whether the umacvlan world's daemon runs on the eBPF data path (the lab daemons take
/// `UMACVLAN_DATAPATH`; the default is tap).
pub fn on_bpf() -> bool {
    std::env::var("UMACVLAN_DATAPATH").is_ok_and(|v| v == "bpf")
}

/// A frame a macvlan sent whose ethertype says 802.1Q/802.1ad but that ends before the tag.
pub fn vlan_runt_from_macvlan(m: &FrameMeta) -> bool {
    is_macvlan_point(&m.from) && matches!(m.ethertype, 0x8100 | 0x88a8) && m.len < 18
}

/// Id of the rule whose frames umacvlan counts as failed deliveries (rx_errors, rx_dropped).
pub const FLOOD_OVER_VETH_MTU: &str = "flood-copy-over-veth-mtu";

/// Deliberate deviations: things a TAP + AF_PACKET design cannot reproduce.
pub static DEVIATIONS: &[Rule] = &[
    Rule {
        id: "bridge-local-not-on-lower",
        reason: "bridge-mode unicast between siblings: the kernel loops it through the lower's \
                 receive path (dev_forward_skb), so packet taps on the lower see it; umacvlan \
                 switches it in userspace and cannot inject into the lower's receive path",
        applies: |d| {
            d.kind == "frame"
                && d.item == "low"
                && d.meta
                    .as_ref()
                    .is_some_and(|m| mode_of(&m.from) == "bridge" && !group(&m.dst))
                && d.useen.is_empty()
                && d.kseen.len() == 1
                && matches!(d.kseen[0].pkt, "HOST" | "OTHERHOST")
        },
    },
    Rule {
        id: "pkt-type-set-by-tap",
        reason: "the kernel sets skb->pkt_type = PACKET_HOST on passthru deliveries and on \
                 source-mode copies of frames for the lower's own MAC; a TAP classifies by \
                 its own MAC (eth_type_trans), so those copies arrive as OTHERHOST",
        applies: |d| {
            d.kind == "frame"
                && is_macvlan_point(&d.item)
                && matches!(mode_of(&d.item), "passthru" | "source")
                && host_vs_otherhost(d)
        },
    },
    Rule {
        id: "stack-drops-on-tap",
        reason: "the kernel folds the netdev's core drops (frames the macvlan's own stack \
                 discards, e.g. VLAN-tagged frames no VLAN device claims) into the macvlan's \
                 rx_dropped; with a TAP the stack counts them on the TAP netdev (`ip -s link` \
                 in the macvlan's namespace), not in the daemon's macvlan counters",
        applies: |d| {
            d.kind == "counters"
                && d.item == "rx_dropped"
                && d.kval > d.uval
                && d.kval - d.uval <= d.uaux.get("tap_rx_dropped").copied().unwrap_or(0)
        },
    },
    Rule {
        id: "stack-tx-drops-on-tap",
        reason: "frames a macvlan sends while it has no carrier (lower down or without \
                 carrier) are dropped by the netdev's qdisc before the driver sees them; the \
                 kernel counts them in the macvlan's tx_dropped (core stats), with a TAP they \
                 are counted on the TAP netdev and the daemon never sees them",
        applies: |d| {
            d.kind == "counters"
                && d.item == "tx_dropped"
                && d.kval > d.uval
                && d.kval - d.uval <= d.uaux.get("tap_tx_dropped").copied().unwrap_or(0)
        },
    },
    Rule {
        id: "lower-rx-dropped",
        reason: "rx_dropped of the lower netdev itself: the kernel charges broadcast-queue \
                 overflow to it and counts frames its rx_handler passed up that no protocol \
                 takes; umacvlan has no rx_handler (cannot charge the lower's counters, and \
                 AF_PACKET cannot consume frames, so the lower's own stack also sees, and \
                 drops, frames delivered to macvlans, e.g. VLAN-tagged ones)",
        applies: |d| {
            let aux = |k: &str| d.uaux.get(k).copied().unwrap_or(0);
            d.kind == "counters"
                && d.dev == "low"
                && d.item == "rx_dropped"
                // Bounded by the frames the lower received in the step. The kernel charges
                // each at most twice: broadcast-queue overflow, then the stack finding no
                // protocol for what the rx_handler passed up (without an rx_handler the
                // daemon's packet sockets take such frames last, so no drop); umacvlan's
                // lower at most once, for a frame delivered to a macvlan that its own stack
                // also saw and dropped.
                && ((d.kval > d.uval && d.kval - d.uval <= 2 * aux("lower_rx_frames_kernel"))
                    || (d.uval > d.kval && d.uval - d.kval <= aux("lower_rx_frames_user")))
        },
    },
    Rule {
        id: "changelink-transactional",
        reason: "a `link set … type macvlan` that fails on its macaddr part: the kernel has \
                 already applied mode and flags (and flushed the source list) when it returns \
                 EINVAL; umacvlan validates the whole request first and changes nothing (its \
                 control operations are transactional by design, see engine/port.rs)",
        applies: |d| {
            d.kind == "details"
                // Only where both failed: a request the kernel carried out is no excuse.
                && d.after_codes.is_some_and(|(k, u)| k != 0 && u != 0)
                && d.after.contains(" type macvlan ")
                && d.after.contains(" mode ")
                && d.after.contains(" macaddr ")
                && (d.item == ".linkinfo.info_data.mode"
                    || d.item.starts_with(".linkinfo.info_data.macaddr_"))
        },
    },
    Rule {
        id: "lowerlayerdown-on-tap",
        reason: "plain `ip` in the lower's namespace shows a kernel macvlan whose lower lost \
                 carrier as LOWERLAYERDOWN: linkwatch says so only for a device whose iflink \
                 (the lower's ifindex) differs from its own ifindex and names a device there; \
                 a TAP's iflink is its own ifindex (tun has no ndo_get_iflink) and userspace \
                 may only set UP, DORMANT or TESTING (IFLA_OPERSTATE), so the TAP shows DOWN. \
                 `umacvlan link show` reports LOWERLAYERDOWN",
        applies: |d| {
            d.kind == "sys"
                && d.item == ".operstate"
                && super::world::in_lower_ns(&d.dev)
                && d.kernel == "\"LOWERLAYERDOWN\""
                && d.user == "\"DOWN\""
        },
    },
    Rule {
        id: "passthru-allmulti-leak",
        reason: "the kernel leaks a passthru macvlan's allmulti reference on the lower when the \
                 macvlan is deleted with allmulti on (macvlan_stop skips it); umacvlan holds it \
                 as a packet-socket membership, which the kernel drops with the socket",
        applies: |d| {
            d.kind == "lower"
                && d.scenario.starts_with("passthru")
                && d.key.ends_with("deleted: lower")
                && d.item == ".allmulti"
                && d.kernel == "1"
                && d.user == "0"
        },
    },
    Rule {
        id: "mc-filter-hash-collision",
        reason: "the kernel's per-macvlan multicast filter is a 256-bit hash salted per device \
                 (its address), so a group the macvlan has not joined can collide with one it \
                 has (or with broadcast) and get through; umacvlan's filter is exact (spec §5 \
                 allows it). Only for a group absent from the receiver's `ip maddr` list, \
                 receiver neither promisc nor allmulti, and not sharing bytes 2..5 (all the \
                 hash reads) with broadcast or a joined group: those pass on every device",
        applies: |d| {
            d.kind == "frame"
                && is_macvlan_point(&d.item)
                && d.meta.as_ref().is_some_and(|m| {
                    group(&m.dst)
                        && m.dst != "ff:ff:ff:ff:ff:ff"
                        && d.kmc.as_ref().is_some_and(|mc| {
                            !mc.all
                                && !mc.groups.contains(&m.dst)
                                && !aliases_joined(&m.dst, &mc.groups)
                        })
                })
                && d.useen.is_empty()
                && d.kseen.len() == 1
                && d.kseen[0].pkt == "MULTICAST"
        },
    },
    Rule {
        id: FLOOD_OVER_VETH_MTU,
        reason: "bpf data path: a broadcast or multicast copy longer than the receiving \
                 macvlan's MTU + 18 is refused by the veth the macvlan is (veth_xmit → \
                 is_skb_forwardable checks the peer's MTU) and counted as a failed delivery \
                 (rx_errors, rx_dropped); the kernel's macvlan_broadcast_one hands it to \
                 netif_rx without an MTU check. A GSO skb would pass, but a packet socket can \
                 only build one for TCP/UDP, and bpf_redirect_peer (no MTU check) marks every \
                 frame PACKET_HOST (skb_scrub_packet), which would turn the copy into unicast",
        applies: |d| {
            on_bpf()
                && d.kind == "frame"
                && is_macvlan_point(&d.item)
                && d.meta.as_ref().is_some_and(|m| group(&m.dst))
                && d.useen.is_empty()
                && d.kseen.len() == 1
                && matches!(d.kseen[0].pkt, "BROADCAST" | "MULTICAST")
                && d.kmc
                    .as_ref()
                    .is_some_and(|mc| mc.mtu > 0 && d.kseen[0].len as i64 > mc.mtu + 18)
        },
    },
    Rule {
        id: "vlan-runt-untagged-away",
        reason: "bpf data path: a frame a macvlan sends with ethertype 802.1Q/802.1ad but \
                 shorter than the tag (under 18 bytes) is freed by the hidden veth end's \
                 receive path (skb_vlan_untag fails in __netif_receive_skb_core, before any tc \
                 program or packet tap), so it is neither forwarded nor counted; the kernel \
                 macvlan transmits it. No capture shows it in either world (every receiver's \
                 own stack drops it the same way): only counters differ, by at most those \
                 frames (a bridge sibling's copy counts 14 bytes more, as every local flood)",
        applies: |d| {
            let aux = |k: &str| d.uaux.get(k).copied().unwrap_or(0);
            let (n, bytes) = (
                aux("vlan_runts_from_macvlans"),
                aux("vlan_runt_bytes_from_macvlans"),
            );
            on_bpf()
                && d.kind == "counters"
                && n > 0
                && d.kval > d.uval
                && match d.item.as_str() {
                    "tx_packets" | "rx_packets" | "rx_multicast" => d.kval - d.uval <= n,
                    "tx_bytes" | "rx_bytes" => d.kval - d.uval <= bytes + 14 * n,
                    _ => false,
                }
        },
    },
];

/// Daemon bugs found by this suite (reported to the lead with a reproduction). The suite
/// fails while this list is not empty: an expected failure must not hide a real difference.
pub static KNOWN_DAEMON_BUGS: &[Rule] = &[];

/// The first rule of `rules` that explains `d`.
pub fn explain<'a>(rules: &'a [Rule], d: &Diff) -> Option<&'a Rule> {
    rules.iter().find(|r| (r.applies)(d))
}
