//! One "world": a lab with a lower device (`low0` in namespace `h`), an external host behind it
//! (`ext0`, its veth peer, in namespace `x`) and macvlans, each in its own namespace — built
//! either with kernel macvlans or with umacvlan (daemon in `h` + CLI). Scenarios drive both
//! worlds through the same methods; every method records what it observed in `rec`, and the
//! two recordings are compared afterwards.
//!
//! Points (where frames are injected and captured): `ext` (ext0 in x), `low` (low0 in h),
//! and every macvlan by name (from inside its namespace).

use super::frames::{self, Frame, TAG_LEN};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use umacvlan_io::afpacket::{LowerOptions, LowerSocket, PacketType, RxBatch};
use umacvlan_io::netlink::RtNetlink;
use umacvlan_io::netns::NetnsHandle;
use umacvlan_lab::lab::{run, Lab, Run};

pub const BIN: &str = env!("CARGO_BIN_EXE_umacvlan");

pub const LOWER_MAC: &str = "02:aa:00:00:00:01";
pub const EXT_MAC: &str = "02:ee:00:00:00:01";

/// Which implementation a world runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kernel,
    User,
}

/// One captured copy of a frame at one point.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub pkt: &'static str,
    pub len: usize,
    /// A VLAN tag the kernel reported out of band (re-inserted by the capture socket).
    pub vlan: Option<u16>,
    /// FNV-1a of the bytes (tag re-inserted): the copies must be byte-identical too.
    pub sum: u32,
}

fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pkt, self.len)?;
        if let Some(v) = self.vlan {
            write!(f, "/vlan{v}")?;
        }
        write!(f, "/#{:08x}", self.sum)
    }
}

fn pkt_name(p: PacketType) -> &'static str {
    match p {
        PacketType::Host => "HOST",
        PacketType::Broadcast => "BROADCAST",
        PacketType::Multicast => "MULTICAST",
        PacketType::OtherHost => "OTHERHOST",
        PacketType::Outgoing => "OUTGOING",
        PacketType::Other(_) => "OTHER",
    }
}

/// What the scenario knows about an injected frame (for reports and allow-list rules).
#[derive(Clone, Debug)]
pub struct FrameMeta {
    pub from: String,
    pub dst: String,
    pub desc: String,
    /// Bytes sent, and the ethertype field at bytes 12..14 (0 if the frame is shorter).
    pub len: usize,
    pub ethertype: u16,
}

/// Outcome of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for CtlOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.code)?;
        if !self.stdout.is_empty() {
            write!(f, " stdout {:?}", self.stdout)?;
        }
        if !self.stderr.is_empty() {
            write!(f, " stderr {:?}", self.stderr)?;
        }
        Ok(())
    }
}

/// A macvlan's multicast state as its namespace shows it: joined link-layer groups, and
/// whether it takes every group (PROMISC or ALLMULTI set on it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McState {
    pub groups: Vec<String>,
    pub all: bool,
    pub mtu: i64,
}

/// One observation.
#[derive(Clone, Debug)]
pub enum Obs {
    /// Where one injected frame was seen: point → copies (sorted: compared as multisets,
    /// since the broadcast queue and the daemon's workers do not keep a global order).
    Frame {
        meta: FrameMeta,
        sent: String,
        seen: BTreeMap<String, Vec<Seen>>,
        /// Each macvlan's own multicast state during the step (for allow-list rules).
        ctx: BTreeMap<String, McState>,
    },
    /// Counter deltas of one device over a step (`None`: the device is absent). `aux`:
    /// side information for allow-list rules, never compared.
    Counters {
        delta: Option<BTreeMap<String, i64>>,
        aux: BTreeMap<String, i64>,
    },
    /// A control operation's result.
    Control { out: CtlOut },
    /// A normalised JSON view (`-d -j` details, the netdev as the system shows it, the
    /// lower's filters).
    Json(Value),
}

/// A recorded observation.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub kind: &'static str,
    /// The device or point the entry is about ("" if none).
    pub dev: String,
    /// The step (numbered per scenario) a frame or counter entry belongs to; 0 otherwise.
    pub step: u32,
    /// The last control operation before this entry (its words).
    pub after: String,
    pub obs: Obs,
}

struct Cap {
    ifindex: u32,
    sock: LowerSocket,
}

struct Pending {
    label: String,
    tag: [u8; TAG_LEN],
    meta: FrameMeta,
    sent: String,
    seen: BTreeMap<String, Vec<Seen>>,
    /// The bytes are the sending stack's (its IPv4 id differs between the worlds): compare
    /// copies without their hash.
    unhashed: bool,
}

struct Step {
    no: u32,
    label: String,
    before: Snap,
    ctx: BTreeMap<String, McState>,
    frames: Vec<Pending>,
}

type Snap = BTreeMap<String, (Option<BTreeMap<String, i64>>, BTreeMap<String, i64>)>;

/// A world. Field order matters for drop order: sockets (which pin their namespaces) go
/// before the lab deletes the namespaces.
pub struct World {
    pub kind: Kind,
    caps: BTreeMap<String, Cap>,
    senders: BTreeMap<String, Cap>,
    batch: RxBatch,
    /// What was observed in the current scenario.
    pub rec: Vec<Entry>,
    /// Macvlans the current scenario created (names, in order).
    devs: Vec<String>,
    /// Namespace of each macvlan name (created on first use, kept across scenarios).
    nss: BTreeMap<String, String>,
    pub h: String,
    pub x: String,
    step: Option<Step>,
    steps: u32,
    cur_step: u32,
    last_ctl: String,
    /// A macvlan came up or joined a group since the daemon last polled multicast lists.
    mc_dirty: bool,
    seq: u32,
    tagseq: u32,
    /// Times the daemon had to be restarted.
    pub restarts: u32,
    /// Sockets holding IP-level multicast memberships ([`World::join_ip`]).
    joined: Vec<std::net::UdpSocket>,
    lab: Lab,
}

fn out_of(r: Run) -> CtlOut {
    CtlOut {
        code: r.code,
        stdout: r.stdout,
        stderr: r.stderr,
    }
}

/// iproute2 6.1's macvlan usage and the current one umacvlan prints (see cli_vs_iproute2.rs).
const USAGE_61_TAIL: &str = "[bcqueuelen BC_QUEUE_LEN]\n\nMODE:";
const USAGE_CUR_TAIL: &str = "[bcqueuelen BC_QUEUE_LEN] [bclim BCLIM]\n\nMODE:";

impl World {
    pub fn new(kind: Kind) -> Result<World, String> {
        let tag = match kind {
            Kind::Kernel => "confk",
            Kind::User => "confu",
        };
        Lab::sweep(tag);
        let mut lab = Lab::new(tag, std::path::Path::new(BIN));
        let h = lab.ns("h")?;
        let x = lab.ns("x")?;
        let mut w = World {
            kind,
            caps: BTreeMap::new(),
            senders: BTreeMap::new(),
            batch: RxBatch::new(32),
            rec: Vec::new(),
            devs: Vec::new(),
            nss: BTreeMap::new(),
            h,
            x,
            step: None,
            steps: 0,
            cur_step: 0,
            last_ctl: String::new(),
            mc_dirty: false,
            seq: 0,
            tagseq: 0,
            restarts: 0,
            joined: Vec::new(),
            lab,
        };
        w.make_veth()?;
        if kind == Kind::User {
            let h = w.h.clone();
            w.lab.start_daemon(&h, &daemon_args())?;
        }
        Ok(w)
    }

    fn make_veth(&self) -> Result<(), String> {
        let (h, x) = (self.h.as_str(), self.x.as_str());
        lab_must(&[
            "ip", "-n", h, "link", "add", "low0", "type", "veth", "peer", "name", "ext0", "netns",
            x,
        ])?;
        lab_must(&["ip", "-n", h, "link", "set", "low0", "address", LOWER_MAC])?;
        lab_must(&["ip", "-n", x, "link", "set", "ext0", "address", EXT_MAC])?;
        lab_must(&["ip", "-n", h, "link", "set", "low0", "up"])?;
        lab_must(&["ip", "-n", x, "link", "set", "ext0", "up"])?;
        Ok(())
    }

    /// The daemon's log (user world).
    pub fn daemon_log(&self) -> String {
        self.lab.daemon_log()
    }

    // ------------------------------------------------------------------ namespaces, points

    /// The namespace of macvlan `dev` (created on first use). Macvlans whose names start
    /// with `h` live in the lower's own namespace `h`.
    pub fn dev_ns(&mut self, dev: &str) -> String {
        if in_lower_ns(dev) {
            return self.h.clone();
        }
        if let Some(n) = self.nss.get(dev) {
            return n.clone();
        }
        let n = self
            .lab
            .ns(&format!("d-{dev}"))
            .expect("create a namespace");
        self.nss.insert(dev.to_string(), n.clone());
        n
    }

    /// (namespace, interface) of a point.
    fn point(&mut self, p: &str) -> (String, String) {
        match p {
            "ext" => (self.x.clone(), "ext0".into()),
            "low" => (self.h.clone(), "low0".into()),
            "br" => (self.x.clone(), "br0".into()),
            d => (self.dev_ns(d), d.to_string()),
        }
    }

    /// The namespace for a short name: `h`, `x` or a macvlan's.
    fn ns_of(&mut self, who: &str) -> String {
        match who {
            "h" | "low" => self.h.clone(),
            "x" | "ext" => self.x.clone(),
            d => self.dev_ns(d),
        }
    }

    fn points(&self) -> Vec<String> {
        let mut v = vec!["ext".to_string(), "low".to_string()];
        v.extend(self.devs.iter().cloned());
        v
    }

    fn ifindex(ns: &str, ifname: &str) -> Option<u32> {
        let h = NetnsHandle::from_name(ns).ok()?;
        let mut r = RtNetlink::open_in(Some(&h)).ok()?;
        r.get_link_by_name(ifname).ok().map(|l| l.ifindex)
    }

    fn open_sock(ns: &str, ifindex: u32, capture: bool) -> Option<LowerSocket> {
        let h = NetnsHandle::from_name(ns).ok()?;
        let opts = LowerOptions {
            ignore_outgoing: !capture,
            rcvbuf: Some(if capture { 8 << 20 } else { 1 << 16 }),
            ..LowerOptions::default()
        };
        LowerSocket::open_in(Some(&h), ifindex, &opts).ok()
    }

    /// Opens capture sockets on every point that exists (again if it was re-created) and
    /// closes those of points that are gone.
    fn ensure_caps(&mut self) {
        let pts = self.points();
        self.caps.retain(|k, _| pts.contains(k));
        for p in pts {
            let (ns, ifname) = self.point(&p);
            match Self::ifindex(&ns, &ifname) {
                None => {
                    self.caps.remove(&p);
                }
                Some(i) => {
                    if self.caps.get(&p).map(|c| c.ifindex) != Some(i) {
                        match Self::open_sock(&ns, i, true) {
                            Some(sock) => {
                                self.caps.insert(p, Cap { ifindex: i, sock });
                            }
                            None => {
                                self.caps.remove(&p);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads everything queued on the capture sockets; tagged frames go to the pending
    /// frames of the current step, everything else is dropped.
    fn drain(&mut self) -> usize {
        let mut got = 0;
        let step = self.step.as_mut();
        let mut pend: Vec<&mut Pending> = match step {
            Some(s) => s.frames.iter_mut().collect(),
            None => Vec::new(),
        };
        for (p, cap) in &self.caps {
            let mut errors = 0;
            loop {
                match cap.sock.recv_batch(&mut self.batch) {
                    Ok(0) => break,
                    Ok(n) => {
                        for i in 0..n {
                            let f = self.batch.get(i);
                            for pf in pend.iter_mut() {
                                if frames::contains(f.data, &pf.tag) {
                                    pf.seen.entry(p.clone()).or_default().push(Seen {
                                        pkt: pkt_name(f.pkttype),
                                        len: f.orig_len,
                                        vlan: f.vlan.map(|v| v.tci),
                                        sum: if pf.unhashed { 0 } else { fnv1a(f.data) },
                                    });
                                    got += 1;
                                    break;
                                }
                            }
                        }
                    }
                    // ENETDOWN is reported once after the device went down, and so on.
                    Err(_) => {
                        errors += 1;
                        if errors > 8 {
                            break;
                        }
                    }
                }
            }
        }
        got
    }

    // ------------------------------------------------------------------ recording

    fn push(&mut self, kind: &'static str, dev: &str, what: &str, obs: Obs) {
        self.seq += 1;
        self.rec.push(Entry {
            key: format!("{:03} {what}", self.seq),
            kind,
            dev: dev.to_string(),
            step: self.cur_step,
            after: self.last_ctl.clone(),
            obs,
        });
    }

    /// Text as it would read in the other world: namespace names and "ip" vs "umacvlan".
    fn normalise(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (d, ns) in &self.nss {
            s = s.replace(ns.as_str(), &format!("<ns:{d}>"));
        }
        s = s
            .replace(self.h.as_str(), "<ns:h>")
            .replace(self.x.as_str(), "<ns:x>");
        if self.kind == Kind::Kernel {
            s = s
                .replace(USAGE_61_TAIL, USAGE_CUR_TAIL)
                .replace("BC_QUEUE_LEN: Length of the rx queue for broadcast/multicast: [0-4294967295]\n",
                         "BC_QUEUE_LEN: Length of the rx queue for broadcast/multicast: [0-4294967295]\nBCLIM: Threshold for broadcast queueing: 32-bit integer\n")
                .replace("\"ip link help\"", "\"umacvlan link help\"")
                .replace("\"ip -help\"", "\"umacvlan -help\"")
                .replace("\"ip help\"", "\"umacvlan help\"");
        }
        s
    }

    fn subst(&mut self, words: &[&str]) -> Vec<String> {
        words
            .iter()
            .map(|w| match w.strip_prefix("NS:") {
                Some(d) => self.ns_of(d),
                None => w.to_string(),
            })
            .collect()
    }

    // ------------------------------------------------------------------ control

    /// `ip -n NS <words>` (kernel) / `umacvlan <words>` (umacvlan): the same words. `NS:dev`
    /// in the words is replaced by that macvlan's namespace. The kernel runs `link add` in
    /// the lower's namespace and everything else in the named macvlan's namespace. Records
    /// the result and then every macvlan's `-d -j` details.
    pub fn ctl(&mut self, words: &[&str]) -> CtlOut {
        let out = self.ctl_quiet(words);
        self.last_ctl = words.join(" ");
        let shown = words.join(" ");
        self.push(
            "control",
            "",
            &format!("ctl `{shown}`"),
            Obs::Control { out: out.clone() },
        );
        self.details_all();
        out
    }

    /// Like [`World::ctl`] without recording (setup whose result a later check covers).
    pub fn ctl_quiet(&mut self, words: &[&str]) -> CtlOut {
        self.note_mc_change(words);
        if let Some(i) = words.iter().position(|w| *w == "name") {
            if words.get(1) == Some(&"add") {
                if let Some(n) = words.get(i + 1) {
                    if !self.devs.iter().any(|d| d == n) {
                        self.devs.push(n.to_string());
                    }
                }
            }
        }
        let words = self.subst(words);
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let raw = match self.kind {
            Kind::Kernel => {
                let ns = if w.get(1).is_some_and(|a| "add".starts_with(a)) {
                    self.h.clone()
                } else {
                    let name = match w.iter().position(|x| *x == "dev") {
                        Some(i) => w.get(i + 1).copied().unwrap_or(""),
                        None => w.get(2).copied().unwrap_or(""),
                    };
                    match self.nss.get(name) {
                        Some(n) => n.clone(),
                        None => self.h.clone(),
                    }
                };
                let mut v = vec!["ip", "-n", ns.as_str()];
                v.extend_from_slice(&w);
                run(&v)
            }
            Kind::User => self.lab.cli(&w),
        };
        let mut out = out_of(raw);
        out.stdout = self.normalise(&out.stdout);
        out.stderr = self.normalise(&out.stderr);
        out
    }

    /// A plain command in a namespace (`h`, `x` or a macvlan's), the same in both worlds
    /// (`ip maddr add …`, `ip link set … promisc on`, `bridge link set …`). Recorded.
    pub fn sh(&mut self, who: &str, argv: &[&str]) -> CtlOut {
        let out = self.sh_quiet(who, argv);
        let shown = format!("[{who}] {}", argv.join(" "));
        self.push(
            "command",
            "",
            &shown.clone(),
            Obs::Control { out: out.clone() },
        );
        out
    }

    /// Like [`World::sh`], recording only the exit status (for commands whose output has
    /// timings, like ping).
    pub fn sh_status(&mut self, who: &str, argv: &[&str]) -> i32 {
        let out = self.sh_quiet(who, argv);
        let shown = format!("[{who}] {}", argv.join(" "));
        let status = CtlOut {
            code: out.code,
            stdout: String::new(),
            stderr: String::new(),
        };
        self.push("command", "", &shown.clone(), Obs::Control { out: status });
        out.code
    }

    /// Like [`World::sh`], not recorded.
    pub fn sh_quiet(&mut self, who: &str, argv: &[&str]) -> CtlOut {
        self.note_mc_change(argv);
        let ns = self.ns_of(who);
        let argv = self.subst(argv);
        let mut v = vec!["ip".to_string(), "netns".into(), "exec".into(), ns];
        v.extend(argv);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        let mut out = out_of(run(&v));
        out.stdout = self.normalise(&out.stdout);
        out.stderr = self.normalise(&out.stderr);
        out
    }

    /// Whether the lower's multicast list holds `group`.
    pub fn lower_has_group(&self, group: &str) -> bool {
        self.lower_groups().iter().any(|g| g == group)
    }

    /// Waits until the lower's multicast list does (or does not) hold `group`: the kernel
    /// syncs a macvlan's groups at once, the daemon polls them (~0.5 s).
    pub fn wait_lower_group(&mut self, group: &str, present: bool) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let has = self.lower_groups().iter().any(|g| g == group);
            if has == present || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Gives the daemon time to follow a change made with plain iproute2 to a TAP or to the
    /// lower (it learns them from link events); no-op for the kernel.
    pub fn settle(&self) {
        // The kernel applies lower events from linkwatch work, which is rate-limited to once
        // a second unless "urgent" (and a veth whose ifindex equals its peer's in the other
        // namespace is not): wait until the lower's operstate agrees with its carrier, i.e.
        // linkwatch has run and the macvlans (kernel) / the daemon (rtnetlink) were told.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let Some(v) = Self::json(&["ip", "-n", &self.h, "-j", "link", "show", "dev", "low0"])
            else {
                break;
            };
            let flags: Vec<&str> = v["flags"]
                .as_array()
                .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
                .unwrap_or_default();
            let carrier = flags.contains(&"LOWER_UP");
            let oper_up = v["operstate"] == "UP";
            if carrier == oper_up {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let ms = match self.kind {
            Kind::Kernel => 100,
            Kind::User => 300,
        };
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// A macvlan's stack joins groups by itself when it comes up (IPv4 all-hosts, and
    /// 33:33:00:00:00:01 even with IPv6 off), and `maddr` joins more: the kernel syncs them
    /// at once, the daemon polls them. Remember to give it time before the next step.
    fn note_mc_change(&mut self, words: &[&str]) {
        // (An MTU below 1280 makes IPv6 leave its groups.)
        if words
            .iter()
            .any(|w| matches!(*w, "add" | "up" | "maddr" | "mtu"))
        {
            self.mc_dirty = true;
        }
    }

    /// Keeps the daemon busy for `secs` seconds: `-s link show` every 100 ms (kernel world:
    /// the same through `ip` in the macvlans' namespaces), as a monitoring agent would.
    pub fn keep_asking(&mut self, secs: f64) {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < deadline {
            match self.kind {
                Kind::User => {
                    let _ = self.lab.cli(&["-s", "link", "show"]);
                }
                Kind::Kernel => {
                    for d in self.devs.clone() {
                        let ns = self.dev_ns(&d);
                        let _ = run(&["ip", "-n", &ns, "-s", "link", "show"]);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.mc_dirty = false;
    }

    /// Lets the daemon pick up the groups the macvlans' own stacks joined by themselves
    /// (IPv4 all-hosts): it polls multicast lists every 0.5 s, the kernel syncs them at once.
    pub fn wait_mc_poll(&self) {
        if self.kind == Kind::User {
            std::thread::sleep(Duration::from_millis(900));
        }
    }

    // ------------------------------------------------------------------ views

    fn json(argv: &[&str]) -> Option<Value> {
        let r = run(argv);
        if !r.ok() {
            return None;
        }
        let v: Value = serde_json::from_str(&r.stdout).ok()?;
        v.get(0).cloned()
    }

    /// `-d -j link show` of one macvlan, normalised: without ifindexes, link-netns
    /// references and the generic netdev fields a TAP cannot match.
    fn details_json(&mut self, dev: &str) -> Value {
        let raw = match self.kind {
            Kind::Kernel => {
                let ns = self.dev_ns(dev);
                Self::json(&["ip", "-n", &ns, "-d", "-j", "link", "show", "dev", dev])
            }
            Kind::User => {
                let r = self.lab.cli(&["-d", "-j", "link", "show", dev]);
                if r.ok() {
                    serde_json::from_str::<Value>(&r.stdout)
                        .ok()
                        .and_then(|v| v.get(0).cloned())
                } else {
                    None
                }
            }
        };
        let Some(mut v) = raw else { return Value::Null };
        if let Some(o) = v.as_object_mut() {
            for k in [
                "ifindex",
                "link_index",
                "link_netnsid",
                "link_netns",
                "inet6_addr_gen_mode",
                "num_tx_queues",
                "num_rx_queues",
                "gso_max_size",
                "gso_max_segs",
                "tso_max_size",
                "tso_max_segs",
                "gro_max_size",
                "gso_ipv4_max_size",
                "gro_ipv4_max_size",
                "parentbus",
                "parentdev",
            ] {
                o.remove(k);
            }
        }
        v
    }

    /// The netdev as plain `ip` shows it in its namespace (the TAP, for umacvlan): MTU,
    /// MAC, up, carrier, operstate and qdisc.
    fn sys_json(&mut self, dev: &str) -> Value {
        let ns = self.dev_ns(dev);
        // linkwatch computes the operstate after a carrier change, rate-limited to once a
        // second: wait (bounded) until it agrees with the flags, in both worlds alike.
        let settled = |v: &Value| {
            let has = |f: &str| {
                v["flags"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == f))
            };
            let op = v["operstate"].as_str().unwrap_or("");
            match (has("UP"), has("LOWER_UP")) {
                (false, _) => op == "DOWN",
                (true, true) => op == "UP",
                (true, false) => matches!(op, "DOWN" | "LOWERLAYERDOWN"),
            }
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        let v = loop {
            let Some(v) = Self::json(&["ip", "-n", &ns, "-j", "link", "show", "dev", dev]) else {
                return Value::Null;
            };
            if settled(&v) || Instant::now() > deadline {
                break v;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let flags: Vec<&str> = v["flags"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
            .unwrap_or_default();
        serde_json::json!({
            "mtu": v["mtu"],
            "address": v["address"],
            "up": flags.contains(&"UP"),
            "lower_up": flags.contains(&"LOWER_UP"),
            "operstate": v["operstate"],
            "qdisc": v["qdisc"],
        })
    }

    fn lower_groups(&self) -> Vec<String> {
        let r = run(&["ip", "-n", &self.h, "maddr", "show", "dev", "low0"]);
        let mut g: Vec<String> = r
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("link  "))
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
            .collect();
        g.sort();
        g
    }

    /// The lower as the macvlans leave it: promiscuity/allmulti counts, MTU, MAC, state, its
    /// multicast list and its unicast filter (`bridge fdb … self`).
    fn lower_json(&self) -> Value {
        let Some(v) = Self::json(&[
            "ip", "-n", &self.h, "-d", "-j", "link", "show", "dev", "low0",
        ]) else {
            return Value::Null;
        };
        let flags: Vec<&str> = v["flags"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
            .unwrap_or_default();
        let fdb = run(&["bridge", "-n", &self.h, "fdb", "show", "dev", "low0"]);
        let mut uc: Vec<String> = fdb
            .stdout
            .lines()
            .filter(|l| l.contains(" self"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|m| {
                // unicast entries only (multicast ones are the maddr list)
                u8::from_str_radix(&m[..2.min(m.len())], 16).is_ok_and(|b| b & 1 == 0)
            })
            .collect();
        uc.sort();
        serde_json::json!({
            "mtu": v["mtu"],
            "address": v["address"],
            "up": flags.contains(&"UP"),
            "lower_up": flags.contains(&"LOWER_UP"),
            "promiscuity": v["promiscuity"],
            "allmulti": v["allmulti"],
            "multicast": self.lower_groups(),
            "unicast_filter": uc,
        })
    }

    fn details_all(&mut self) {
        for d in self.devs.clone() {
            let v = self.details_json(&d);
            self.push("details", &d, &format!("details {d}"), Obs::Json(v));
        }
    }

    /// Records every macvlan's details and system view, and the lower's state.
    pub fn checkpoint(&mut self, label: &str) {
        if std::mem::take(&mut self.mc_dirty) {
            self.wait_mc_poll();
        }
        self.details_all();
        for d in self.devs.clone() {
            let v = self.sys_json(&d);
            self.push("sys", &d, &format!("{label}: netdev {d}"), Obs::Json(v));
        }
        let v = self.lower_json();
        self.push("lower", "low", &format!("{label}: lower"), Obs::Json(v));
    }

    // ------------------------------------------------------------------ counters

    fn stats_of(v: &Value) -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        for (dir, keys) in [
            (
                "rx",
                &["packets", "bytes", "errors", "dropped", "multicast"][..],
            ),
            ("tx", &["packets", "bytes", "errors", "dropped"][..]),
        ] {
            for k in keys {
                let name = if *k == "multicast" {
                    "rx_multicast".to_string()
                } else {
                    format!("{dir}_{k}")
                };
                m.insert(name, v["stats64"][dir][k].as_i64().unwrap_or(0));
            }
        }
        m
    }

    fn snap(&mut self) -> Snap {
        let mut s = Snap::new();
        let user: Option<Vec<Value>> = match self.kind {
            Kind::User => {
                let r = self.lab.cli(&["-s", "-j", "link", "show"]);
                serde_json::from_str::<Value>(&r.stdout)
                    .ok()
                    .and_then(|v| v.as_array().cloned())
            }
            Kind::Kernel => None,
        };
        for d in self.devs.clone() {
            let ns = self.dev_ns(&d);
            let sys = Self::json(&["ip", "-n", &ns, "-s", "-j", "link", "show", "dev", &d]);
            let mut aux = BTreeMap::new();
            let main = match self.kind {
                Kind::Kernel => sys.as_ref().map(Self::stats_of),
                Kind::User => {
                    if let Some(t) = &sys {
                        aux.insert("tap_rx_dropped".into(), Self::stats_of(t)["rx_dropped"]);
                        aux.insert("tap_tx_dropped".into(), Self::stats_of(t)["tx_dropped"]);
                    }
                    user.as_ref()
                        .and_then(|l| l.iter().find(|v| v["ifname"] == d.as_str()))
                        .map(Self::stats_of)
                }
            };
            s.insert(d, (main, aux));
        }
        for (p, ns, i) in [("low", &self.h, "low0"), ("ext", &self.x, "ext0")] {
            let v = Self::json(&["ip", "-n", ns, "-s", "-j", "link", "show", "dev", i]);
            s.insert(
                p.to_string(),
                (v.as_ref().map(Self::stats_of), BTreeMap::new()),
            );
        }
        s
    }

    /// Every macvlan's multicast state (`ip maddr` and its flags, in its namespace).
    fn mc_states(&mut self) -> BTreeMap<String, McState> {
        let mut m = BTreeMap::new();
        for d in self.devs.clone() {
            let ns = self.dev_ns(&d);
            let r = run(&["ip", "-n", &ns, "maddr", "show", "dev", &d]);
            let groups = r
                .stdout
                .lines()
                .filter_map(|l| l.trim().strip_prefix("link  "))
                .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
                .collect();
            let v = Self::json(&["ip", "-n", &ns, "-j", "link", "show", "dev", &d]);
            let all = v.as_ref().is_some_and(|v| {
                v["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "PROMISC" || x == "ALLMULTI"))
            });
            let mtu = v.as_ref().and_then(|v| v["mtu"].as_i64()).unwrap_or(0);
            m.insert(d, McState { groups, all, mtu });
        }
        m
    }

    // ------------------------------------------------------------------ frames

    /// Starts a step: captures ready and drained, counters read.
    pub fn step(&mut self, label: &str) {
        assert!(self.step.is_none(), "step {label} inside another step");
        if std::mem::take(&mut self.mc_dirty) {
            self.wait_mc_poll();
        }
        self.ensure_caps();
        self.drain();
        let before = self.snap();
        let ctx = self.mc_states();
        self.steps += 1;
        self.step = Some(Step {
            no: self.steps,
            label: label.to_string(),
            before,
            ctx,
            frames: Vec::new(),
        });
    }

    /// Injects a frame at `point` (sent from inside its namespace). `label` names it in
    /// the report.
    pub fn send(&mut self, label: &str, point: &str, f: Frame) {
        self.tagseq += 1;
        let tag = frames::tag(self.tagseq);
        let bytes = f.build(&tag);
        let (ns, ifname) = self.point(point);
        let idx = Self::ifindex(&ns, &ifname);
        let sent = match idx {
            None => "no such device".to_string(),
            Some(i) => {
                if self.senders.get(point).map(|c| c.ifindex) != Some(i) {
                    self.senders.remove(point);
                    if let Some(sock) = Self::open_sock(&ns, i, false) {
                        self.senders
                            .insert(point.to_string(), Cap { ifindex: i, sock });
                    }
                }
                match self.senders.get(point) {
                    None => "cannot open a socket".into(),
                    Some(c) => match c.sock.send(&bytes) {
                        Ok(()) => "ok".into(),
                        Err(e) => e.to_string(),
                    },
                }
            }
        };
        let meta = FrameMeta {
            from: point.to_string(),
            dst: f.dst.clone(),
            desc: f.describe(),
            len: bytes.len(),
            ethertype: bytes
                .get(12..14)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
        };
        let st = self.step.as_mut().expect("send outside a step");
        st.frames.push(Pending {
            label: label.to_string(),
            tag,
            meta,
            sent,
            seen: BTreeMap::new(),
            unhashed: false,
        });
    }

    /// Sends a UDP datagram carrying a fresh tag through the IP stack of `point`'s namespace
    /// (from `src`:40000 to `dst`:40001, broadcast allowed), so the frame is the host's
    /// own, not a packet socket's. `dst_mac` is where the stack will address it (for the
    /// report and the rules).
    pub fn send_udp(
        &mut self,
        label: &str,
        point: &str,
        src: [u8; 4],
        dst: [u8; 4],
        dst_mac: &str,
    ) {
        self.tagseq += 1;
        let tag = frames::tag(self.tagseq);
        let (ns, _) = self.point(point);
        let sent = match NetnsHandle::from_name(&ns).and_then(|h| {
            h.run_in(|| -> std::io::Result<()> {
                let s = std::net::UdpSocket::bind((std::net::Ipv4Addr::from(src), 40000))?;
                s.set_broadcast(true)?;
                s.send_to(&tag, (std::net::Ipv4Addr::from(dst), 40001))?;
                Ok(())
            })?
        }) {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let meta = FrameMeta {
            from: point.to_string(),
            dst: dst_mac.to_string(),
            desc: format!("UDP {src:?} -> {dst:?} through the IP stack"),
            len: 0,
            ethertype: 0x0800,
        };
        let st = self.step.as_mut().expect("send outside a step");
        st.frames.push(Pending {
            label: label.to_string(),
            tag,
            meta,
            sent,
            seen: BTreeMap::new(),
            unhashed: true,
        });
    }

    /// Joins IPv4 `group` on macvlan `dev` (whose address is `addr`) with a socket
    /// (`IP_ADD_MEMBERSHIP`), held until the scenario ends. Recorded like a command.
    pub fn join_ip(&mut self, dev: &str, group: [u8; 4], addr: [u8; 4]) {
        let ns = self.dev_ns(dev);
        let (g, a) = (
            std::net::Ipv4Addr::from(group),
            std::net::Ipv4Addr::from(addr),
        );
        let r = NetnsHandle::from_name(&ns).and_then(|h| {
            h.run_in(|| -> std::io::Result<std::net::UdpSocket> {
                let s = std::net::UdpSocket::bind((a, 0))?;
                s.join_multicast_v4(&g, &a)?;
                Ok(s)
            })?
        });
        let code = match r {
            Ok(s) => {
                self.joined.push(s);
                0
            }
            Err(_) => 1,
        };
        self.mc_dirty = true;
        let out = CtlOut {
            code,
            stdout: String::new(),
            stderr: String::new(),
        };
        self.push(
            "command",
            "",
            &format!("[{dev}] join {g}"),
            Obs::Control { out },
        );
    }

    /// Waits `ms` milliseconds (inside a step: a frame sent that long after a change).
    pub fn pause(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Ends a step: waits for the frames to land, records where each was seen and every
    /// device's counter deltas.
    pub fn end(&mut self) {
        // The kernel decides synchronously (the broadcast queue runs on a workqueue right
        // after); the daemon needs a few scheduler rounds. Then wait for quiet.
        let min = match self.kind {
            Kind::Kernel => 60,
            Kind::User => 150,
        };
        std::thread::sleep(Duration::from_millis(min));
        let mut quiet = 0;
        while quiet < 2 {
            std::thread::sleep(Duration::from_millis(40));
            if self.drain() == 0 {
                quiet += 1;
            } else {
                quiet = 0;
            }
        }
        let after = self.snap();
        // The multicast state the frames met: what each device had at the start and at the
        // end of the step (a group joined inside the step is joined for its frames' rules).
        let end_ctx = self.mc_states();
        let mut st = self.step.take().expect("end outside a step");
        for (d, e) in end_ctx {
            let c = st.ctx.entry(d).or_insert_with(|| McState {
                groups: Vec::new(),
                all: false,
                mtu: e.mtu,
            });
            c.all |= e.all;
            for g in e.groups {
                if !c.groups.contains(&g) {
                    c.groups.push(g);
                }
            }
        }
        self.cur_step = st.no;
        for p in st.frames {
            let mut seen = p.seen;
            for v in seen.values_mut() {
                v.sort();
            }
            self.push(
                "frame",
                &p.meta.from.clone(),
                &format!("{}: {}", st.label, p.label),
                Obs::Frame {
                    meta: p.meta,
                    sent: p.sent,
                    seen,
                    ctx: st.ctx.clone(),
                },
            );
        }
        let names: Vec<String> = after.keys().cloned().collect();
        for d in names {
            let (a, aux_a) = &after[&d];
            let (b, aux_b) = st
                .before
                .get(&d)
                .cloned()
                .unwrap_or((None, BTreeMap::new()));
            let delta = match (a, &b) {
                (Some(a), Some(b)) => Some(
                    a.iter()
                        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0)))
                        .collect(),
                ),
                (Some(a), None) => Some(a.clone()),
                _ => None,
            };
            let aux = aux_a
                .iter()
                .map(|(k, v)| (k.clone(), v - aux_b.get(k).copied().unwrap_or(0)))
                .collect();
            self.push(
                "counters",
                &d,
                &format!("{}: counters {d}", st.label),
                Obs::Counters { delta, aux },
            );
        }
        self.cur_step = 0;
    }

    // ------------------------------------------------------------------ scenario lifecycle

    /// Back to the base topology: no macvlans, no bridge on the far side, lower and ext0
    /// with their MACs, MTU 1500, up. Clears the recording.
    pub fn reset(&mut self) -> Result<(), String> {
        self.step = None;
        self.joined.clear();
        self.caps.clear();
        self.senders.clear();
        if self.kind == Kind::User {
            if !self.lab.cli(&["link", "show"]).ok() {
                // The daemon died: note it (it shows up as a disagreement) and restart it.
                self.restarts += 1;
                self.lab.stop_daemon("KILL");
                let h = self.h.clone();
                self.lab.start_daemon(&h, &daemon_args())?;
            }
            if let Ok(v) =
                serde_json::from_str::<Value>(&self.lab.cli(&["-j", "link", "show"]).stdout)
            {
                for l in v.as_array().cloned().unwrap_or_default() {
                    if let Some(n) = l["ifname"].as_str() {
                        let _ = self.lab.cli(&["link", "del", n]);
                    }
                }
            }
        }
        // Whatever is left in the macvlans' namespaces (kernel macvlans, stray TAPs).
        for ns in self.nss.values() {
            if let Some(v) = Self::json_all(&["ip", "-n", ns, "-j", "link", "show"]) {
                for l in v {
                    if let Some(n) = l["ifname"].as_str() {
                        if n != "lo" {
                            let _ = run(&["ip", "-n", ns, "link", "del", n]);
                        }
                    }
                }
            }
        }
        // Kernel macvlans living in the lower's namespace.
        if let Some(v) = Self::json_all(&["ip", "-n", &self.h, "-j", "link", "show"]) {
            for l in v {
                if let Some(n) = l["ifname"].as_str().filter(|n| in_lower_ns(n)) {
                    let _ = run(&["ip", "-n", &self.h, "link", "del", n]);
                }
            }
        }
        let _ = run(&["ip", "-n", &self.x, "link", "del", "br0"]);
        // Addresses and neighbours a scenario gave the lower's own stack.
        let _ = run(&["ip", "-n", &self.h, "-4", "addr", "flush", "dev", "low0"]);
        let _ = run(&["ip", "-n", &self.h, "neigh", "flush", "dev", "low0"]);
        // A lower that kept promiscuity/allmulti references after its macvlans went (the
        // kernel leaks a passthru macvlan's allmulti) is replaced.
        let lower = Self::json(&[
            "ip", "-n", &self.h, "-d", "-j", "link", "show", "dev", "low0",
        ]);
        if lower.as_ref().is_some_and(|l| {
            l["promiscuity"].as_u64().unwrap_or(0) > 0 || l["allmulti"].as_u64().unwrap_or(0) > 0
        }) {
            let _ = run(&["ip", "-n", &self.h, "link", "del", "low0"]);
            self.settle();
        }
        if Self::json(&["ip", "-n", &self.h, "-j", "link", "show", "dev", "low0"]).is_none() {
            let _ = run(&["ip", "-n", &self.x, "link", "del", "ext0"]);
            self.make_veth()?;
        }
        let (h, x) = (self.h.clone(), self.x.clone());
        for (ns, i, mac) in [(&h, "low0", LOWER_MAC), (&x, "ext0", EXT_MAC)] {
            let v = Self::json(&["ip", "-n", ns, "-j", "link", "show", "dev", i])
                .unwrap_or(Value::Null);
            if v["mtu"] != 1500 {
                lab_must(&["ip", "-n", ns, "link", "set", i, "mtu", "1500"])?;
            }
            if v["address"] != mac {
                lab_must(&["ip", "-n", ns, "link", "set", i, "address", mac])?;
            }
            let up = v["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            if !up {
                lab_must(&["ip", "-n", ns, "link", "set", i, "up"])?;
            }
        }
        // Let the daemon see the last deletions before the next scenario starts.
        self.settle();
        self.devs.clear();
        self.rec.clear();
        self.last_ctl.clear();
        self.mc_dirty = false;
        self.seq = 0;
        self.steps = 0;
        Ok(())
    }

    fn json_all(argv: &[&str]) -> Option<Vec<Value>> {
        let r = run(argv);
        serde_json::from_str::<Value>(&r.stdout)
            .ok()?
            .as_array()
            .cloned()
    }
}

/// Macvlans named `h…` live in the lower's namespace (created there without `netns`).
pub fn in_lower_ns(dev: &str) -> bool {
    dev.starts_with('h')
}

/// Extra daemon flags from `CONFORMANCE_DAEMON_ARGS` (e.g. `--log umacvlan=debug`).
fn daemon_args() -> Vec<&'static str> {
    match std::env::var("CONFORMANCE_DAEMON_ARGS") {
        Ok(s) => s.leak().split_whitespace().collect(),
        Err(_) => Vec::new(),
    }
}

fn lab_must(args: &[&str]) -> Result<String, String> {
    umacvlan_lab::lab::must(args)
}
