//! Isolation between macvlans on real devices, through the umacvlan daemon, with the kernel's
//! macvlan as the oracle.
//!
//! Every test builds the same topology twice, with identical MACs and addresses: once with
//! kernel macvlans (`ip link add link eth0 … type macvlan`, each created in its own namespace)
//! and once with umacvlan (the daemon in the lower's namespace, `umacvlan link add` with the
//! same words). The lower `eth0` is a veth whose peer is the "external host" (`ext`), either
//! plain or as the only port of a hairpin bridge (a VEPA-capable switch that sends frames back
//! out of the port they came in on).
//!
//! Traffic is real: UDP unicast, UDP to the broadcast address, ARP requests and UDP to a
//! multicast group joined with `IP_ADD_MEMBERSHIP`, all sent by the namespaces' own stacks; or
//! tagged frames injected with AF_PACKET on the external host (for spoofed source MACs). What
//! each macvlan (and the external host) *receives* is captured with an AF_PACKET socket bound to
//! its interface inside its namespace, so a leaked frame is seen frame by frame. Each probe
//! carries a unique tag (ARP requests: a unique target address). Both worlds' observations
//! (probe → where it was seen, how many times) must be equal, and both must match the table of
//! what the kernel gives (so a broken harness cannot pass by agreeing with itself).
//!
//! Absence is only meaningful after presence: after each batch of probes the test waits for
//! every copy that should arrive, then sends a positive control the same way (a broadcast or
//! group frame that every observer must see), and reads the captures only once the control
//! was seen everywhere, plus a settle time for stragglers.
//!
//! Not compared (README "Deviations"): packet types on a TAP, and anything seen at the lower
//! itself (its stack also gets frames delivered to macvlans under umacvlan). Neither is observed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};
use umacvlan_io::afpacket::{LowerOptions, LowerSocket, PacketType, RxBatch};
use umacvlan_io::netns::NetnsHandle;
use umacvlan_lab::lab::{self, Lab};

mod common;
use common::*;

const LOWER_MAC: &str = "02:aa:00:00:00:01";
const EXT_MAC: &str = "02:ee:00:00:00:01";
const EXT_IP: &str = "10.50.0.1";
const BCAST_IP: &str = "10.50.0.255";
const BCAST_MAC: &str = "ff:ff:ff:ff:ff:ff";
/// The group the macvlans join with IP_ADD_MEMBERSHIP (link layer 01:00:5e:01:02:03).
const GROUP: &str = "239.1.2.3";
const UDP_PORT: u16 = 5000;
/// The experimental ethertype: no stack reacts to injected frames.
const EXPERIMENTAL: u16 = 0x88b5;
/// How long frames that should arrive may take (a loaded 2-core machine; the daemon re-reads
/// multicast lists every 0.5 s).
const DEADLINE: Duration = Duration::from_secs(20);
/// After the control was seen everywhere: time for any straggler (another worker, the
/// broadcast queue) to arrive.
const SETTLE: Duration = Duration::from_millis(400);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kernel,
    User,
}

/// A macvlan of a world.
struct Dev {
    ns: String,
    mac: String,
    ip: String,
}

/// What identifies a probe's frames in the captures.
#[derive(Clone, Debug)]
enum Probe {
    /// Frames carrying the label's tag (ICMP errors quoting it excluded).
    Tag,
    /// ARP requests for this address (presence only: the stack repeats them on its own
    /// schedule).
    Arp(Ipv4Addr),
    /// Any frame with this source MAC.
    FromMac([u8; 6]),
}

/// Probe label → point → copies seen.
type Obs = BTreeMap<String, BTreeMap<String, usize>>;

/// Label → the points that see it, once each (nowhere else). For probes that are not frames
/// (ping, control operations) the "points" are outcomes.
type Expect = Vec<(String, Vec<&'static str>)>;

/// One world. Field order is drop order: the sockets (which pin their namespaces) go before
/// the lab deletes the namespaces.
struct World {
    caps: BTreeMap<String, LowerSocket>,
    injectors: BTreeMap<String, LowerSocket>,
    senders: BTreeMap<String, UdpSocket>,
    members: Vec<UdpSocket>,
    /// Every frame captured since the last `clear`: (point, frame).
    log: Vec<(String, Vec<u8>)>,
    /// Probes sent in the current phase.
    probes: BTreeMap<String, Probe>,
    batch: RxBatch,
    devs: BTreeMap<String, Dev>,
    kind: Kind,
    host: String,
    ext: String,
    /// Where the external host's address lives: `br0` with a hairpin switch, else `eth0`.
    ext_if: &'static str,
    ctl: u32,
    lab: Lab,
}

fn tag(label: &str) -> Vec<u8> {
    format!("<<{label}>>").into_bytes()
}

fn contains(data: &[u8], needle: &[u8]) -> bool {
    data.windows(needle.len()).any(|w| w == needle)
}

/// ICMP errors quote the datagram that caused them (and so its tag): not a copy of it.
fn is_icmp(f: &[u8]) -> bool {
    f.len() > 23 && f[12..14] == [0x08, 0x00] && f[23] == 1
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(h, 16).unwrap();
    }
    m
}

/// A 60-byte frame carrying `label`'s tag.
fn frame(dst: &str, src: &str, ethertype: u16, label: &str) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&mac_bytes(dst));
    f.extend_from_slice(&mac_bytes(src));
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&tag(label));
    f.resize(f.len().max(60), 0);
    f
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&lab::must(args).unwrap()).unwrap()
}

fn one(outcome: &str) -> BTreeMap<String, usize> {
    BTreeMap::from([(outcome.to_string(), 1)])
}

impl World {
    fn new(kind: Kind, tag: &str, hairpin: bool) -> World {
        let tag = format!(
            "{tag}-{}",
            match kind {
                Kind::Kernel => "k",
                Kind::User => "u",
            }
        );
        Lab::sweep(&tag);
        let mut lab = Lab::new(&tag, std::path::Path::new(BIN));
        let host = lab.ns("host").unwrap();
        let ext = lab.ns("ext").unwrap();
        lab.veth(&host, "eth0", &ext, "eth0").unwrap();
        lab::must(&[
            "ip", "-n", &host, "link", "set", "eth0", "address", LOWER_MAC,
        ])
        .unwrap();
        lab::must(&["ip", "-n", &ext, "link", "set", "eth0", "address", EXT_MAC]).unwrap();
        let cidr = format!("{EXT_IP}/24");
        let ext_if = if hairpin {
            // Group frames are flooded (and so reflected) whatever IGMP the bridge heard.
            lab.hairpin_switch(&ext, "eth0", &cidr).unwrap();
            "br0"
        } else {
            lab.addr(&ext, "eth0", &cidr).unwrap();
            "eth0"
        };
        lab::must(&[
            "ip",
            "-n",
            &ext,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            ext_if,
        ])
        .unwrap();
        if kind == Kind::User {
            lab.start_daemon(&host, &[]).unwrap();
        }
        let mut w = World {
            caps: BTreeMap::new(),
            injectors: BTreeMap::new(),
            senders: BTreeMap::new(),
            members: Vec::new(),
            log: Vec::new(),
            probes: BTreeMap::new(),
            batch: RxBatch::new(32),
            devs: BTreeMap::new(),
            kind,
            host,
            ext,
            ext_if,
            ctl: 0,
            lab,
        };
        w.open_cap("ext");
        w
    }

    fn is_user(&self) -> bool {
        self.kind == Kind::User
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Kernel => "kernel",
            Kind::User => "umacvlan",
        }
    }

    /// Macvlan `name` in its own namespace `name`, MAC 02:50:00:00:00:`last` (the lower's for
    /// passthru) and address 10.50.0.`last`; up; captured.
    fn add(&mut self, name: &str, words: &[&str], last: u8) {
        let ns = self.lab.ns(name).unwrap();
        let passthru = words.contains(&"passthru");
        let mac = if passthru {
            LOWER_MAC.to_string()
        } else {
            format!("02:50:00:00:00:{last:02x}")
        };
        let mut args = vec!["link", "add", "link", "eth0", "name", name];
        if !passthru {
            args.extend(["address", mac.as_str()]);
        }
        args.extend(["netns", ns.as_str(), "type", "macvlan"]);
        args.extend_from_slice(words);
        let r = self.ctl(&args);
        assert!(r.ok(), "{}: {args:?} failed: {r:?}", self.name());
        let ip = format!("10.50.0.{last}");
        self.lab.addr(&ns, name, &format!("{ip}/24")).unwrap();
        lab::must(&["ip", "-n", &ns, "route", "add", "224.0.0.0/4", "dev", name]).unwrap();
        self.devs.insert(name.to_string(), Dev { ns, mac, ip });
        self.open_cap(name);
    }

    /// A control operation on macvlans: `ip -n HOST …` (kernel) or `umacvlan …`.
    fn ctl(&self, args: &[&str]) -> lab::Run {
        match self.kind {
            Kind::Kernel => {
                let mut v = vec!["ip", "-n", self.host.as_str()];
                v.extend_from_slice(args);
                lab::run(&v)
            }
            Kind::User => self.lab.cli(args),
        }
    }

    /// `ip link set NAME type macvlan …` on a macvlan (the kernel's lives in its namespace).
    fn set_macvlan(&self, name: &str, words: &[&str]) {
        let mut args = vec!["link", "set", name, "type", "macvlan"];
        args.extend_from_slice(words);
        match self.kind {
            Kind::Kernel => {
                let mut v = vec!["ip", "-n", self.devs[name].ns.as_str()];
                v.extend_from_slice(&args);
                lab::must(&v).unwrap();
            }
            Kind::User => {
                self.lab.cli_ok(&args).unwrap();
            }
        }
    }

    /// (namespace, interface) of a point.
    fn point(&self, p: &str) -> (String, String) {
        match p {
            "ext" => (self.ext.clone(), "eth0".into()),
            d => (self.devs[d].ns.clone(), d.to_string()),
        }
    }

    fn packet_socket(&self, p: &str, capture: bool) -> LowerSocket {
        let (ns, ifname) = self.point(p);
        let ifindex = json(&["ip", "-n", &ns, "-j", "link", "show", &ifname])[0]["ifindex"]
            .as_u64()
            .unwrap() as u32;
        let opts = LowerOptions {
            // A point records what it receives, not what it sends.
            ignore_outgoing: true,
            rcvbuf: Some(if capture { 4 << 20 } else { 1 << 16 }),
            ..LowerOptions::default()
        };
        let h = NetnsHandle::from_name(&ns).unwrap();
        LowerSocket::open_in(Some(&h), ifindex, &opts).unwrap()
    }

    fn open_cap(&mut self, p: &str) {
        let s = self.packet_socket(p, true);
        self.caps.insert(p.to_string(), s);
    }

    /// Injects a raw frame on point `p`'s interface.
    fn inject(&mut self, p: &str, f: &[u8]) {
        if !self.injectors.contains_key(p) {
            let s = self.packet_socket(p, false);
            self.injectors.insert(p.to_string(), s);
        }
        self.injectors[p].send(f).unwrap();
    }

    /// Probe `label`: a frame `src` → `dst` injected on the external host's wire.
    fn inject_probe(&mut self, dst: &str, src: &str, ethertype: u16, label: &str) {
        self.probes.insert(label.to_string(), Probe::Tag);
        self.inject("ext", &frame(dst, src, ethertype, label));
    }

    /// A UDP socket in point `p`'s namespace, allowed to broadcast, multicast not looped.
    fn sender(&mut self, p: &str) -> &UdpSocket {
        if !self.senders.contains_key(p) {
            let (ns, _) = self.point(p);
            let s = NetnsHandle::from_name(&ns)
                .unwrap()
                .run_in(|| -> std::io::Result<UdpSocket> {
                    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                    s.set_broadcast(true)?;
                    s.set_multicast_loop_v4(false)?;
                    s.set_multicast_ttl_v4(1)?;
                    Ok(s)
                })
                .unwrap()
                .unwrap();
            self.senders.insert(p.to_string(), s);
        }
        &self.senders[p]
    }

    fn send_udp(&mut self, p: &str, dst: &str, label: &str) -> std::io::Result<()> {
        let dst: Ipv4Addr = dst.parse().unwrap();
        self.sender(p)
            .send_to(&tag(label), (dst, UDP_PORT))
            .map(|_| ())
    }

    /// Probe `label` sent by `p`'s stack to `dst` (unicast, broadcast or group); the result
    /// of the send.
    fn try_udp(&mut self, p: &str, dst: &str, label: &str) -> std::io::Result<()> {
        self.probes.insert(label.to_string(), Probe::Tag);
        self.send_udp(p, dst, label)
    }

    fn udp(&mut self, p: &str, dst: &str, label: &str) {
        let who = self.name();
        self.try_udp(p, dst, label)
            .unwrap_or_else(|e| panic!("{who}: UDP {label} from {p} to {dst}: {e}"));
    }

    /// Probe `label`: `p`'s stack sends an ARP request for `target` (an address nobody has).
    fn arp(&mut self, p: &str, target: &str, label: &str) {
        self.probes
            .insert(label.to_string(), Probe::Arp(target.parse().unwrap()));
        // The datagram waits for the neighbour; the request goes out at once.
        let _ = self.send_udp(p, target, "arp-trigger");
    }

    /// Joins `GROUP` on macvlan `d` (IP_ADD_MEMBERSHIP: the stack adds 01:00:5e:01:02:03 to
    /// the device's multicast list) and listens on the probes' port.
    fn join(&mut self, d: &str) {
        let dev = &self.devs[d];
        let ip: Ipv4Addr = dev.ip.parse().unwrap();
        let s = NetnsHandle::from_name(&dev.ns)
            .unwrap()
            .run_in(|| -> std::io::Result<UdpSocket> {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, UDP_PORT))?;
                s.join_multicast_v4(&GROUP.parse().unwrap(), &ip)?;
                Ok(s)
            })
            .unwrap()
            .unwrap();
        self.members.push(s);
    }

    /// A permanent neighbour entry at `p` for `peer` (a macvlan or "ext"), so unicast leaves
    /// whatever ARP could or could not resolve.
    fn neigh(&self, p: &str, peer: &str) {
        let (ip, mac) = match peer {
            "ext" => (EXT_IP.to_string(), EXT_MAC.to_string()),
            d => (self.devs[d].ip.clone(), self.devs[d].mac.clone()),
        };
        let (ns, ifname) = match p {
            "ext" => (self.ext.clone(), self.ext_if.to_string()),
            d => self.point(d),
        };
        lab::must(&[
            "ip",
            "-n",
            &ns,
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            &ifname,
            "nud",
            "permanent",
        ])
        .unwrap();
    }

    fn ip(&self, d: &str) -> String {
        self.devs[d].ip.clone()
    }

    fn mac(&self, d: &str) -> String {
        self.devs[d].mac.clone()
    }

    /// Reads everything queued on the capture sockets into the log.
    fn drain(&mut self) {
        for (p, sock) in &self.caps {
            let mut errors = 0;
            loop {
                match sock.recv_batch(&mut self.batch) {
                    Ok(0) => break,
                    Ok(n) => {
                        for i in 0..n {
                            let f = self.batch.get(i);
                            // Our own transmissions, and the stack's loopback copies of its
                            // own broadcasts, are not receptions.
                            if matches!(f.pkttype, PacketType::Outgoing | PacketType::Other(_)) {
                                continue;
                            }
                            self.log.push((p.clone(), f.data.to_vec()));
                        }
                    }
                    // ENETDOWN is reported once after the device went down.
                    Err(_) => {
                        errors += 1;
                        if errors > 4 {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Forgets what was captured so far.
    fn clear(&mut self) {
        self.drain();
        self.log.clear();
    }

    /// Point → copies of `label`'s frames in the log.
    fn observe(&self, label: &str, probe: &Probe) -> BTreeMap<String, usize> {
        let t = tag(label);
        let mut m = BTreeMap::new();
        for (p, f) in &self.log {
            let hit = match probe {
                Probe::Tag => contains(f, &t) && !is_icmp(f),
                Probe::Arp(ip) => {
                    f.len() >= 42
                        && f[12..14] == [0x08, 0x06]
                        && f[20..22] == [0, 1]
                        && f[38..42] == ip.octets()
                }
                Probe::FromMac(mac) => f.len() >= 12 && f[6..12] == *mac,
            };
            if hit {
                let n = m.entry(p.clone()).or_insert(0);
                *n = if matches!(probe, Probe::Arp(_)) {
                    1
                } else {
                    *n + 1
                };
            }
        }
        m
    }

    /// Ends a phase: waits until every copy `exp` says should arrive has arrived, sends the
    /// positive control with `send` until every point in `need` saw one, lets stragglers
    /// arrive, then moves the observation of every probe of the phase into `obs`.
    fn finish(
        &mut self,
        exp: &Expect,
        need: &[&str],
        obs: &mut Obs,
        send: impl FnMut(&mut World, &str),
    ) {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            self.drain();
            let missing = exp.iter().any(|(l, pts)| {
                self.probes
                    .get(l)
                    .is_some_and(|p| pts.iter().any(|x| !self.observe(l, p).contains_key(*x)))
            });
            if !missing {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.control(need, send);
        for (l, p) in std::mem::take(&mut self.probes) {
            let seen = self.observe(&l, &p);
            obs.insert(l, seen);
        }
    }

    /// The positive control: sends a fresh control frame with `send` (again every 0.5 s)
    /// until every point in `need` has seen one, then lets stragglers arrive.
    fn control(&mut self, need: &[&str], mut send: impl FnMut(&mut World, &str)) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.ctl += 1;
            let label = format!("ctl{}", self.ctl);
            send(self, &label);
            let round = Instant::now() + Duration::from_millis(500);
            while Instant::now() < round {
                std::thread::sleep(Duration::from_millis(20));
                self.drain();
                let seen = self.observe(&label, &Probe::Tag);
                if need.iter().all(|p| seen.contains_key(*p)) {
                    std::thread::sleep(SETTLE);
                    self.drain();
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: control never reached all of {need:?} (last saw {:?})\ndaemon log:\n{}",
                    self.name(),
                    self.observe(&label, &Probe::Tag),
                    self.log_tail()
                );
            }
        }
    }

    /// A broadcast from the external host's stack.
    fn ext_bcast(&mut self, label: &str) {
        self.send_udp("ext", BCAST_IP, label).unwrap();
    }

    fn log_tail(&self) -> String {
        let log = self.lab.daemon_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until the daemon shows `d` in `operstate` (the kernel's state changes at once).
    fn wait_operstate(&self, d: &str, operstate: &str) {
        if !self.is_user() {
            return;
        }
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if link(&show_json(&self.lab), d)["operstate"] == operstate {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("umacvlan never showed {d} {operstate}");
    }

    /// Counters of macvlan `d`: the macvlan's own (kernel: the netdev; umacvlan: `umacvlan -s
    /// -j link show`) and, under umacvlan, the TAP netdev's as `tap.*` (its rx_dropped counts
    /// any frame the daemon tried to write into it while it was down).
    fn counters(&self, d: &str) -> BTreeMap<String, u64> {
        let (ns, ifname) = self.point(d);
        let netdev = json(&["ip", "-n", &ns, "-s", "-j", "link", "show", &ifname]);
        let mut m = BTreeMap::new();
        let mut put = |prefix: &str, st: &serde_json::Value| {
            for dir in ["rx", "tx"] {
                for k in ["packets", "bytes", "dropped", "errors"] {
                    m.insert(
                        format!("{prefix}{dir}_{k}"),
                        st[dir][k].as_u64().unwrap_or(0),
                    );
                }
            }
        };
        match self.kind {
            Kind::Kernel => put("", &netdev[0]["stats64"]),
            Kind::User => {
                put("", &link(&show_json(&self.lab), d)["stats64"]);
                put("tap.", &netdev[0]["stats64"]);
            }
        }
        m
    }
}

/// Runs `scenario` on a kernel world and a umacvlan world (concurrently) and returns both
/// observations.
fn both(scenario: impl Fn(Kind) -> Obs + Sync) -> (Obs, Obs) {
    std::thread::scope(|s| {
        let k = s.spawn(|| scenario(Kind::Kernel));
        let u = s.spawn(|| scenario(Kind::User));
        let k = k.join();
        let u = u.join();
        (
            k.unwrap_or_else(|e| std::panic::resume_unwind(e)),
            u.unwrap_or_else(|e| std::panic::resume_unwind(e)),
        )
    })
}

fn show(o: &BTreeMap<String, usize>) -> String {
    if o.is_empty() {
        return "nobody".into();
    }
    o.iter()
        .map(|(p, n)| format!("{p}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The oracle check: umacvlan's observations equal the kernel's, probe by probe; and both
/// equal the expected table (every probe in it, nothing else).
fn check(kernel: &Obs, user: &Obs, exp: &Expect) {
    let empty = BTreeMap::new();
    let labels: BTreeSet<&String> = kernel.keys().chain(user.keys()).collect();
    let mut bad = Vec::new();
    for l in &labels {
        let (k, u) = (
            kernel.get(*l).unwrap_or(&empty),
            user.get(*l).unwrap_or(&empty),
        );
        eprintln!(
            "  {:<42} kernel: {:<24} umacvlan: {}{}",
            l,
            show(k),
            show(u),
            if k == u { "" } else { "   <-- DIFFERENT" }
        );
        if k != u {
            bad.push(l.as_str());
        }
    }
    assert!(
        bad.is_empty(),
        "umacvlan delivered differently from the kernel macvlan: {bad:?}"
    );
    for (who, obs) in [("kernel", kernel), ("umacvlan", user)] {
        for (label, points) in exp {
            let want: BTreeMap<String, usize> = points.iter().map(|p| (p.to_string(), 1)).collect();
            let got = obs
                .get(label)
                .unwrap_or_else(|| panic!("{who}: probe {label:?} was not run"));
            assert_eq!(
                got,
                &want,
                "{who}: {label}: seen at {}, expected at {}",
                show(got),
                show(&want)
            );
        }
        let known: BTreeSet<&String> = exp.iter().map(|(l, _)| l).collect();
        let extra: Vec<&String> = obs.keys().filter(|l| !known.contains(l)).collect();
        assert!(
            extra.is_empty(),
            "{who}: probes without expectation {extra:?}"
        );
    }
}

fn e(label: impl Into<String>, points: &[&'static str]) -> (String, Vec<&'static str>) {
    (label.into(), points.to_vec())
}

// ------------------------------------------------------------------------------ private/vepa

const PVB: [&str; 3] = ["mvp", "mvv", "mvb"];

/// What the kernel does, measured (docs/kernel-oracle.md Q4, Q5): without a hairpin switch
/// nothing a private, vepa or bridge macvlan sends reaches a non-bridge sibling — everything
/// leaves on the wire, once. With one, group frames come back to the private sender alone,
/// to the vepa and bridge siblings of a vepa sender, to the vepa siblings of a bridge sender
/// (bridge siblings had their copy on the way out); unicast comes back to the destination's
/// owner, whichever its mode.
fn expect_private_vepa(hairpin: bool) -> Expect {
    let mut x = Expect::new();
    for from in PVB {
        for to in PVB {
            if from != to {
                let back: &[&str] = if hairpin { &["ext", to] } else { &["ext"] };
                x.push(e(format!("{from}>{to} unicast"), back));
            }
        }
        for what in ["broadcast", "group", "ARP request"] {
            let back: &[&str] = match (hairpin, from) {
                (false, _) => &["ext"],
                (true, "mvp") => &["ext", "mvp"],
                (true, "mvv") => &["ext", "mvb"],
                (true, _) => &["ext", "mvv"],
            };
            x.push(e(format!("{from}>{what}"), back));
        }
    }
    let ping: &[&str] = if hairpin { &["answered"] } else { &["lost"] };
    x.push(e("ping mvp>mvv", ping));
    x.push(e("ping mvv>mvp", ping));
    x
}

/// A private `mvp`, a vepa `mvv` and a bridge `mvb` (a third observer) on one lower, every
/// pair with static neighbours (so only the data path decides); all three in GROUP. Each
/// sends unicast to the others, a broadcast, an ARP request and a datagram to the group.
fn private_vepa(kind: Kind, hairpin: bool) -> Obs {
    let exp = expect_private_vepa(hairpin);
    let mut w = World::new(kind, if hairpin { "iso-hp" } else { "iso-flat" }, hairpin);
    w.add("mvp", &["mode", "private"], 11);
    w.add("mvv", &["mode", "vepa"], 12);
    w.add("mvb", &["mode", "bridge"], 13);
    for a in PVB {
        for c in PVB {
            if a != c {
                w.neigh(a, c);
            }
        }
        w.join(a);
    }
    // Ready: the stacks' broadcasts, and the group (the daemon has read the multicast lists).
    w.control(&PVB, |w, l| w.ext_bcast(l));
    w.control(&PVB, |w, l| w.send_udp("ext", GROUP, l).unwrap());
    w.clear();

    let mut obs = Obs::new();
    for (n, from) in PVB.into_iter().enumerate() {
        for to in PVB {
            if from != to {
                let ip = w.ip(to);
                w.udp(from, &ip, &format!("{from}>{to} unicast"));
            }
        }
        w.udp(from, BCAST_IP, &format!("{from}>broadcast"));
        w.udp(from, GROUP, &format!("{from}>group"));
        w.arp(
            from,
            &format!("10.50.0.{}", 201 + n),
            &format!("{from}>ARP request"),
        );
    }
    w.finish(&exp, &PVB, &mut obs, |w, l| w.ext_bcast(l));
    // What a person would try: ping between private and vepa.
    for (from, to) in [("mvp", "mvv"), ("mvv", "mvp")] {
        let (ns, ip) = (w.devs[from].ns.clone(), w.ip(to));
        let ok = w.lab.ping(&ns, &ip, 2);
        obs.insert(
            format!("ping {from}>{to}"),
            one(if ok { "answered" } else { "lost" }),
        );
    }
    obs
}

/// With no hairpin switch, a private and a vepa macvlan (and a bridge one) never receive
/// anything another sends — unicast, broadcast, ARP or group traffic: each frame leaves on the
/// wire (the external host sees it exactly once) and nothing comes back. As with the kernel.
#[test]
fn private_and_vepa_receive_nothing_from_siblings_without_a_hairpin_switch() {
    need_root!();
    let t0 = Instant::now();
    let (k, u) = both(|kind| private_vepa(kind, false));
    check(&k, &u, &expect_private_vepa(false));
    eprintln!("elapsed {:.1} s", t0.elapsed().as_secs_f64());
}

/// With a hairpin switch reflecting everything back: broadcast, ARP and group frames a
/// private macvlan sends come back to it alone (never to a sibling); a vepa macvlan's come
/// back to its vepa and bridge siblings but never to the private one; unicast comes back to
/// whoever owns the destination MAC — also to and from the private macvlan, because the
/// kernel's macvlan does not filter unicast by sender (docs/kernel-oracle.md Q5): private mode
/// isolates by not switching locally and by the source check on group frames.
#[test]
fn private_and_vepa_receive_from_siblings_only_what_the_kernel_reflects() {
    need_root!();
    let t0 = Instant::now();
    let (k, u) = both(|kind| private_vepa(kind, true));
    check(&k, &u, &expect_private_vepa(true));
    eprintln!("elapsed {:.1} s", t0.elapsed().as_secs_f64());
}

// ------------------------------------------------------------------------------ passthru

const PT_MODES: [&str; 5] = ["bridge", "vepa", "private", "source", "passthru"];

fn expect_passthru() -> Expect {
    let mut x = vec![
        e("to the lower's MAC", &["mvpt"]),
        e("to another MAC", &["mvpt"]),
        e("broadcast", &["mvpt"]),
        e("joined group", &["mvpt"]),
        e("group not joined", &[]),
        e("PAUSE", &[]),
        e("ext stack>mvpt unicast", &["mvpt"]),
        e("macvlans on the lower afterwards", &["mvpt only"]),
    ];
    for mode in PT_MODES {
        x.push(e(
            format!("add {mode} next to passthru"),
            &["exit 2 RTNETLINK answers: Invalid argument"],
        ));
    }
    x
}

fn passthru(kind: Kind) -> Obs {
    let exp = expect_passthru();
    let mut w = World::new(kind, "iso-pt", false);
    w.add("mvpt", &["mode", "passthru"], 31);
    let ns = w.devs["mvpt"].ns.clone();
    lab::must(&[
        "ip",
        "-n",
        &ns,
        "maddr",
        "add",
        "01:00:5e:07:08:09",
        "dev",
        "mvpt",
    ])
    .unwrap();
    w.neigh("ext", "mvpt");
    w.control(&["mvpt"], |w, l| {
        w.inject("ext", &frame("01:00:5e:07:08:09", EXT_MAC, EXPERIMENTAL, l))
    });
    w.clear();

    let mut obs = Obs::new();
    for (l, dst, et) in [
        ("to the lower's MAC", LOWER_MAC, EXPERIMENTAL),
        ("to another MAC", "02:bb:00:00:00:99", EXPERIMENTAL),
        ("broadcast", BCAST_MAC, EXPERIMENTAL),
        ("joined group", "01:00:5e:07:08:09", EXPERIMENTAL),
        ("group not joined", "01:00:5e:01:02:03", EXPERIMENTAL),
        ("PAUSE", "01:80:c2:00:00:01", 0x8808),
    ] {
        w.inject_probe(dst, EXT_MAC, et, l);
    }
    w.udp("ext", "10.50.0.31", "ext stack>mvpt unicast");
    w.finish(&exp, &["mvpt"], &mut obs, |w, l| {
        w.inject("ext", &frame(BCAST_MAC, EXT_MAC, EXPERIMENTAL, l))
    });

    // It owns the lower: nothing else may be added on it, whatever the mode.
    for mode in PT_MODES {
        let r = w.ctl(&[
            "link", "add", "link", "eth0", "name", "mvx", "type", "macvlan", "mode", mode,
        ]);
        obs.insert(
            format!("add {mode} next to passthru"),
            one(&format!("exit {} {}", r.code, r.stderr.trim())),
        );
    }
    let alone = match kind {
        Kind::Kernel => !lab::run(&["ip", "-n", &w.host, "link", "show", "mvx"]).ok(),
        Kind::User => show_json(&w.lab).as_array().unwrap().len() == 1,
    };
    obs.insert(
        "macvlans on the lower afterwards".into(),
        one(if alone { "mvpt only" } else { "more" }),
    );
    obs
}

/// A passthru macvlan gets all unicast on its lower (to the lower's MAC and to any other),
/// broadcast and the groups it joined, but not an unjoined group nor PAUSE; once it exists no
/// other macvlan can be added on the lower (EINVAL). As with the kernel.
#[test]
fn passthru_gets_what_reaches_the_lower_and_refuses_siblings_like_the_kernel() {
    need_root!();
    let t0 = Instant::now();
    let (k, u) = both(passthru);
    check(&k, &u, &expect_passthru());
    eprintln!("elapsed {:.1} s", t0.elapsed().as_secs_f64());
}

// ------------------------------------------------------------------------------ source mode

const LISTED: &str = "02:ee:00:00:00:77";
const UNLISTED: &str = "02:ee:00:00:00:88";

/// docs/kernel-oracle.md Q6.
fn expect_source() -> Expect {
    vec![
        e("from listed: broadcast", &["mvb", "mvs"]),
        e("from listed: group not joined", &["mvs"]),
        e("from listed: to mvb", &["mvb", "mvs"]),
        e("from listed: to mvs's own MAC", &["mvs"]),
        e("from listed: to an unknown MAC", &["mvs"]),
        e("from unlisted: broadcast", &["mvb"]),
        e("from unlisted: group not joined", &[]),
        e("from unlisted: to mvb", &["mvb"]),
        e("from unlisted: to mvs's own MAC", &[]),
        e("from unlisted: to an unknown MAC", &[]),
        e("ext stack>mvb unicast", &["mvb", "mvs"]),
        e("ext stack>mvs unicast", &["mvs"]),
        // Its own sending: to the wire only, never switched locally.
        e("mvs stack>broadcast", &["ext"]),
        e("mvs stack>mvb unicast", &["ext"]),
        e("from removed: broadcast", &["mvb"]),
        e("from removed: group not joined", &[]),
        e("from removed: to mvb", &["mvb"]),
        e("from removed: to mvs's own MAC", &[]),
        e("from removed: to an unknown MAC", &[]),
    ]
}

fn source(kind: Kind) -> Obs {
    let exp = expect_source();
    let mut w = World::new(kind, "iso-src", false);
    w.add("mvs", &["mode", "source"], 21);
    w.add("mvb", &["mode", "bridge"], 22);
    w.set_macvlan("mvs", &["macaddr", "add", LISTED]);
    w.set_macvlan("mvs", &["macaddr", "add", EXT_MAC]);
    w.neigh("ext", "mvb");
    w.neigh("ext", "mvs");
    w.neigh("mvs", "mvb");
    let control = |src: &'static str| {
        move |w: &mut World, l: &str| w.inject("ext", &frame(BCAST_MAC, src, EXPERIMENTAL, l))
    };
    w.control(&["mvs", "mvb"], control(LISTED));
    w.clear();

    let dsts = [
        ("broadcast", BCAST_MAC.to_string()),
        ("group not joined", "01:00:5e:01:02:03".to_string()),
        ("to mvb", w.mac("mvb")),
        ("to mvs's own MAC", w.mac("mvs")),
        ("to an unknown MAC", "02:bb:00:00:00:99".to_string()),
    ];
    let mut obs = Obs::new();
    for (src, sname) in [(LISTED, "listed"), (UNLISTED, "unlisted")] {
        for (what, dst) in &dsts {
            w.inject_probe(dst, src, EXPERIMENTAL, &format!("from {sname}: {what}"));
        }
    }
    // The external host's own stack (its MAC is listed too).
    for to in ["mvb", "mvs"] {
        let ip = w.ip(to);
        w.udp("ext", &ip, &format!("ext stack>{to} unicast"));
    }
    let ip = w.ip("mvb");
    w.udp("mvs", &ip, "mvs stack>mvb unicast");
    w.udp("mvs", BCAST_IP, "mvs stack>broadcast");
    w.finish(&exp, &["mvs", "mvb"], &mut obs, control(LISTED));

    // Taken off the list: nothing from it any more.
    w.set_macvlan("mvs", &["macaddr", "del", LISTED]);
    for (what, dst) in &dsts {
        w.inject_probe(dst, LISTED, EXPERIMENTAL, &format!("from removed: {what}"));
    }
    w.finish(&exp, &["mvs", "mvb"], &mut obs, control(EXT_MAC));
    obs
}

/// A source-mode macvlan receives a copy of every frame whose source MAC is in its list —
/// whatever the destination (broadcast, an unjoined group, a sibling's or an unknown MAC, its
/// own) — and nothing from a source not in its list, not even unicast to its own MAC or a
/// broadcast; a MAC taken off the list stops at once. The bridge sibling meanwhile gets
/// exactly its usual traffic. As with the kernel.
#[test]
fn source_mode_receives_only_from_listed_sources_like_the_kernel() {
    need_root!();
    let t0 = Instant::now();
    let (k, u) = both(source);
    check(&k, &u, &expect_source());
    eprintln!("elapsed {:.1} s", t0.elapsed().as_secs_f64());
}

// ------------------------------------------------------------------------------ down

const DBV: [&str; 3] = ["mvd", "mvb", "mvv"];

/// docs/kernel-oracle.md Q4, Q5, Q11 (and the kernel's own refusal to send on a down device).
fn expect_down() -> Expect {
    let mut x = Expect::new();
    for phase in ["up", "up again"] {
        x.push(e(format!("{phase}: mvb>mvd unicast"), &["mvd"]));
        x.push(e(format!("{phase}: mvv>mvd unicast"), &["ext", "mvd"]));
        x.push(e(format!("{phase}: ext>mvd unicast"), &["mvd"]));
        x.push(e(format!("{phase}: ext>broadcast"), &["mvb", "mvd", "mvv"]));
        x.push(e(format!("{phase}: mvd>unicast to ext"), &["ext"]));
        x.push(e(format!("{phase}: mvd>broadcast"), &["ext", "mvb", "mvv"]));
    }
    // Not local any more: the bridge sibling's frame goes to the wire (and, reflected, to the
    // lower's stack).
    x.push(e("down: mvb>mvd unicast", &["ext"]));
    x.push(e("down: mvv>mvd unicast", &["ext"]));
    x.push(e("down: ext>mvd unicast", &[]));
    x.push(e("down: ext>broadcast", &["mvb", "mvv"]));
    x.push(e("down: mvd>unicast to ext", &[]));
    x.push(e("down: mvd>broadcast", &[]));
    x.push(e("down: mvd>ext raw", &[]));
    x.push(e("down: any frame from mvd's MAC", &[]));
    x.push(e("down: counters of mvd that moved", &[]));
    x.push(e("down: mvd>unicast to ext (send)", &["refused"]));
    x.push(e("down: mvd>broadcast (send)", &["refused"]));
    x.push(e("down: mvd>ext raw (send)", &["refused"]));
    x
}

/// Sends the down test's probes of `phase`.
fn down_probes(w: &mut World, phase: &str, d_sends: bool) {
    let ip_d = w.ip("mvd");
    for from in ["mvb", "mvv", "ext"] {
        w.udp(from, &ip_d, &format!("{phase}: {from}>mvd unicast"));
    }
    w.udp("ext", BCAST_IP, &format!("{phase}: ext>broadcast"));
    if d_sends {
        w.udp("mvd", EXT_IP, &format!("{phase}: mvd>unicast to ext"));
        w.udp("mvd", BCAST_IP, &format!("{phase}: mvd>broadcast"));
    }
}

/// Bridge `mvd` (the one taken down), bridge `mvb` and vepa `mvv` behind a hairpin switch.
fn down(kind: Kind) -> Obs {
    let exp = expect_down();
    let mut w = World::new(kind, "iso-down", true);
    w.add("mvd", &["mode", "bridge"], 41);
    w.add("mvb", &["mode", "bridge"], 42);
    w.add("mvv", &["mode", "vepa"], 43);
    for a in DBV {
        for c in DBV.iter().chain(&["ext"]) {
            if a != *c {
                w.neigh(a, c);
            }
        }
        w.neigh("ext", a);
    }
    w.control(&DBV, |w, l| w.ext_bcast(l));
    w.clear();
    let mut obs = Obs::new();

    // Up: everything arrives (what "nothing" is measured against below).
    down_probes(&mut w, "up", true);
    w.finish(&exp, &DBV, &mut obs, |w, l| w.ext_bcast(l));

    // Down, by hand inside its namespace, as a person would.
    let dns = w.devs["mvd"].ns.clone();
    lab::must(&["ip", "-n", &dns, "link", "set", "mvd", "down"]).unwrap();
    w.wait_operstate("mvd", "DOWN");
    w.clear();
    let before = w.counters("mvd");
    down_probes(&mut w, "down", false);
    // mvd tries to send: its stack refuses (no route on a down device) and so does a raw
    // socket; either way nothing may reach the wire.
    for (what, dst) in [("unicast to ext", EXT_IP), ("broadcast", BCAST_IP)] {
        let r = w.try_udp("mvd", dst, &format!("down: mvd>{what}"));
        obs.insert(
            format!("down: mvd>{what} (send)"),
            one(if r.is_ok() { "sent" } else { "refused" }),
        );
    }
    let raw = w.packet_socket("mvd", false);
    w.probes.insert("down: mvd>ext raw".into(), Probe::Tag);
    let r = raw.send(&frame(
        EXT_MAC,
        &w.mac("mvd"),
        EXPERIMENTAL,
        "down: mvd>ext raw",
    ));
    obs.insert(
        "down: mvd>ext raw (send)".into(),
        one(if r.is_ok() { "sent" } else { "refused" }),
    );
    drop(raw);
    w.probes.insert(
        "down: any frame from mvd's MAC".into(),
        Probe::FromMac(mac_bytes(&w.mac("mvd"))),
    );
    w.finish(&exp, &["mvb", "mvv"], &mut obs, |w, l| w.ext_bcast(l));
    let after = w.counters("mvd");
    let moved: BTreeMap<String, usize> = after
        .iter()
        .filter(|(k, v)| before[*k] != **v)
        .map(|(k, v)| (k.clone(), v.abs_diff(before[k]) as usize))
        .collect();
    obs.insert("down: counters of mvd that moved".into(), moved);

    // Up again: the same probes arrive again (so the captures on mvd do work).
    lab::must(&["ip", "-n", &dns, "link", "set", "mvd", "up"]).unwrap();
    w.wait_operstate("mvd", "UP");
    for c in ["mvb", "mvv", "ext"] {
        w.neigh("mvd", c); // a device going down flushes its neighbours
    }
    w.control(&DBV, |w, l| w.ext_bcast(l));
    w.clear();
    down_probes(&mut w, "up again", true);
    w.finish(&exp, &DBV, &mut obs, |w, l| w.ext_bcast(l));
    obs
}

/// A macvlan set down with plain `ip link set NAME down` in its namespace receives nothing
/// (unicast from the wire, from a vepa sibling through the hairpin switch, from a bridge
/// sibling — which then goes to the wire instead —, broadcast), sends nothing (its stack and a
/// raw socket are refused; no frame with its MAC appears anywhere), and no counter of it
/// moves — under umacvlan neither the macvlan's nor the TAP's (whose rx_dropped would count
/// a frame the daemon tried to write into it); up again, it gets everything again. As with the
/// kernel.
#[test]
fn a_down_macvlan_neither_receives_nor_sends_like_the_kernel() {
    need_root!();
    let t0 = Instant::now();
    let (k, u) = both(down);
    check(&k, &u, &expect_down());
    eprintln!("elapsed {:.1} s", t0.elapsed().as_secs_f64());
}
