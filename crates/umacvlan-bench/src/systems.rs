//! The systems under test, each built as the same two-endpoint lab: namespaces `a` and `b`
//! hold one interface each, `ea` (198.18.0.1/24) and `eb` (198.18.0.2/24), and the system in
//! between carries their traffic. (Two names, not one: umacvlan's macvlans share one name
//! space per daemon, as the kernel's do per namespace.) Everything lives in fresh namespaces of one [`Lab`] and goes away with it.
//!
//! | system | between `a/ea` and `b/eb` |
//! |---|---|
//! | `kernel-macvlan` | two kernel macvlans (mode bridge) on a veth lower in `sw` |
//! | `umacvlan` | two umacvlan macvlans (mode bridge) on the same kind of lower; daemon in `sw`, `--datapath tap` |
//! | `umacvlan-bpf` | the same with `--datapath bpf` (unicast forwarded by the eBPF fast path) |
//! | `kernel-macvlan-vepa` | kernel macvlans (mode vepa); the lower's far end is a hairpin bridge |
//! | `umacvlan-vepa` | umacvlan macvlans (mode vepa) through the same hairpin bridge, tap |
//! | `umacvlan-vepa-bpf` | the same with `--datapath bpf` |
//! | `linux-bridge` | veth pairs into a Linux bridge in `sw` |
//! | `veth` | one veth pair, nothing in between (the machine's ceiling) |
//! | `tapfwd` | two TAPs and our minimal forwarder (the floor of TAP-based switches) |
//! | `vde` | two TAPs of a `vde_switch` |
//! | `ovs`, `ovs-tso` | two TAP ports of Open vSwitch's userspace datapath (`datapath_type=netdev`), without and with userspace TSO |

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use umacvlan_io::MacAddr;
use umacvlan_lab::lab::{must, Lab};

use crate::cmd::{self, Proc};
use crate::l2::Port;
use crate::{A_IP, B_IP, PREFIX};

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum Kind {
    /// Kernel macvlan, mode bridge: the reference (= 1.00).
    KernelMacvlan,
    /// umacvlan, mode bridge, TAP datapath.
    Umacvlan,
    /// umacvlan, mode bridge, eBPF datapath.
    UmacvlanBpf,
    /// Kernel macvlan, mode vepa, through a hairpin bridge.
    KernelMacvlanVepa,
    /// umacvlan, mode vepa, through a hairpin bridge, TAP datapath.
    UmacvlanVepa,
    /// umacvlan, mode vepa, through a hairpin bridge, eBPF datapath.
    UmacvlanVepaBpf,
    /// Linux bridge with veths.
    LinuxBridge,
    /// A veth pair, the ceiling.
    Veth,
    /// Our minimal TAP→TAP forwarder, the floor of TAP-based switches.
    TapFwd,
    /// vde_switch with TAPs.
    Vde,
    /// Open vSwitch, userspace datapath, TAP ports, no TSO.
    Ovs,
    /// Open vSwitch, userspace datapath, TAP ports, userspace TSO on.
    OvsTso,
}

impl From<Kind> for String {
    fn from(k: Kind) -> String {
        k.id().to_string()
    }
}

impl Kind {
    /// Every system, in report order.
    pub const ALL: [Kind; 12] = [
        Kind::KernelMacvlan,
        Kind::Umacvlan,
        Kind::UmacvlanBpf,
        Kind::KernelMacvlanVepa,
        Kind::UmacvlanVepa,
        Kind::UmacvlanVepaBpf,
        Kind::LinuxBridge,
        Kind::Veth,
        Kind::TapFwd,
        Kind::Vde,
        Kind::Ovs,
        Kind::OvsTso,
    ];

    /// Short id used in files and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Kind::KernelMacvlan => "kernel-macvlan",
            Kind::Umacvlan => "umacvlan",
            Kind::UmacvlanBpf => "umacvlan-bpf",
            Kind::KernelMacvlanVepa => "kernel-macvlan-vepa",
            Kind::UmacvlanVepa => "umacvlan-vepa",
            Kind::UmacvlanVepaBpf => "umacvlan-vepa-bpf",
            Kind::LinuxBridge => "linux-bridge",
            Kind::Veth => "veth",
            Kind::TapFwd => "tapfwd",
            Kind::Vde => "vde",
            Kind::Ovs => "ovs",
            Kind::OvsTso => "ovs-tso",
        }
    }

    /// From [`Kind::id`].
    pub fn from_id(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.id() == s)
    }

    /// What it is, for the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::KernelMacvlan => "kernel macvlan, bridge (reference)",
            Kind::Umacvlan => "umacvlan (tap), bridge",
            Kind::UmacvlanBpf => "umacvlan (bpf), bridge",
            Kind::KernelMacvlanVepa => "kernel macvlan, vepa via hairpin bridge",
            Kind::UmacvlanVepa => "umacvlan (tap), vepa via hairpin bridge",
            Kind::UmacvlanVepaBpf => "umacvlan (bpf), vepa via hairpin bridge",
            Kind::LinuxBridge => "Linux bridge + veths",
            Kind::Veth => "veth pair (ceiling)",
            Kind::TapFwd => "minimal TAP→TAP forwarder (floor)",
            Kind::Vde => "vde_switch + TAPs",
            Kind::Ovs => "OVS userspace (netdev) + TAPs",
            Kind::OvsTso => "OVS userspace (netdev) + TAPs, TSO",
        }
    }

    /// Whether a userspace process does the switching.
    pub fn has_switch_process(self) -> bool {
        matches!(
            self,
            Kind::Umacvlan
                | Kind::UmacvlanBpf
                | Kind::UmacvlanVepa
                | Kind::UmacvlanVepaBpf
                | Kind::TapFwd
                | Kind::Vde
                | Kind::Ovs
                | Kind::OvsTso
        )
    }

    /// Programs it needs beyond iproute2, and the Debian package that has them.
    pub fn needs(self) -> (&'static [&'static str], &'static str) {
        match self {
            Kind::Vde => (&["vde_switch"], "vde2"),
            Kind::Ovs | Kind::OvsTso => (
                &["ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"],
                "openvswitch-switch",
            ),
            _ => (&[], ""),
        }
    }

    /// Why it cannot run here, if it cannot (a missing program).
    pub fn unavailable(self) -> Option<String> {
        let (progs, pkg) = self.needs();
        let missing: Vec<&str> = progs.iter().copied().filter(|p| !cmd::have(p)).collect();
        if missing.is_empty() {
            None
        } else {
            Some(format!(
                "{} not installed (Debian package {pkg}; bench/run installs it with apt-get unless told not to)",
                missing.join(", ")
            ))
        }
    }
}

/// One endpoint of a lab.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// Namespace.
    pub netns: String,
    /// Interface.
    pub ifname: String,
    /// Its index.
    pub ifindex: u32,
    /// Its MAC.
    #[serde(serialize_with = "ser_mac")]
    pub mac: MacAddr,
    /// Its IPv4 address.
    pub ip: String,
}

fn ser_mac<S: serde::Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.to_string())
}

impl Endpoint {
    /// As an [`l2::Port`](crate::l2::Port).
    pub fn port(&self) -> Port {
        Port {
            netns: self.netns.clone(),
            ifindex: self.ifindex,
            mac: self.mac,
        }
    }
}

/// What the systems need from the run.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The umacvlan binary (daemon and CLI).
    pub umacvlan: PathBuf,
    /// This binary (for `tapfwd`).
    pub self_bin: PathBuf,
}

/// A built lab carrying one system. Dropping it stops every process and removes every
/// namespace (processes first: fields drop in order).
pub struct SystemLab {
    /// Background processes: servers, switches, forwarders.
    procs: Vec<Proc>,
    /// The lab (namespaces, umacvlan daemon).
    pub lab: Lab,
    /// Which system.
    pub kind: Kind,
    /// Endpoint A (the sender).
    pub a: Endpoint,
    /// Endpoint B (the receiver, runs the iperf3 server).
    pub b: Endpoint,
    /// The switching process, if any.
    pub switch_pid: Option<u32>,
    /// Namespace of the switch (`sw`), when there is one.
    pub sw: Option<String>,
    /// The lower device's name in `sw` (macvlan systems).
    pub lower: Option<String>,
    iperf_index: Option<usize>,
}

impl SystemLab {
    /// The iperf3 server is (still) running; restarts it if not.
    pub fn ensure_iperf_server(&mut self) -> Result<(), String> {
        if let Some(i) = self.iperf_index {
            if self.procs[i].running() {
                return Ok(());
            }
            let _ = self.procs.remove(i);
            self.iperf_index = None;
        }
        let mut p = Proc::spawn(
            &format!("iperf3-server-{}", self.kind.id()),
            &[
                "ip",
                "netns",
                "exec",
                &self.b.netns,
                "iperf3",
                "-s",
                "--forceflush",
                "-B",
                &self.b.ip,
            ],
            &[],
            false,
        )?;
        p.wait_for_log("Server listening", Duration::from_secs(10))?;
        self.procs.push(p);
        self.iperf_index = Some(self.procs.len() - 1);
        Ok(())
    }

    /// Restarts the iperf3 server (after a failed client run, which can leave it stuck).
    pub fn restart_iperf_server(&mut self) -> Result<(), String> {
        if let Some(i) = self.iperf_index.take() {
            let _ = self.procs.remove(i);
        }
        self.ensure_iperf_server()
    }

    /// RSS and peak RSS of the switching process, KiB.
    pub fn switch_rss(&self) -> Option<(u64, u64)> {
        crate::procfs::rss_kib(self.switch_pid?)
    }

    /// Whether every background process is still alive; else what died.
    pub fn health(&mut self) -> Result<(), String> {
        for p in &mut self.procs {
            if !p.running() {
                return Err(format!(
                    "a process of the lab exited: {}",
                    cmd::tail(&p.log(), 500)
                ));
            }
        }
        Ok(())
    }
}

/// Index and MAC of `ifname` in `netns`.
pub fn link_info(netns: &str, ifname: &str) -> Result<(u32, MacAddr), String> {
    let out = must(&["ip", "-n", netns, "-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let l = &v[0];
    let idx = l["ifindex"]
        .as_u64()
        .ok_or_else(|| format!("no ifindex for {ifname}: {out}"))? as u32;
    let mac: MacAddr = l["address"]
        .as_str()
        .ok_or_else(|| format!("no address for {ifname}: {out}"))?
        .parse()
        .map_err(|e| format!("bad MAC for {ifname}: {e:?}"))?;
    Ok((idx, mac))
}

/// Waits until `ifname` exists in `netns`.
fn wait_link(netns: &str, ifname: &str, timeout: Duration) -> Result<(), String> {
    let end = std::time::Instant::now() + timeout;
    loop {
        if umacvlan_lab::lab::run(&["ip", "-n", netns, "link", "show", "dev", ifname]).ok() {
            return Ok(());
        }
        cmd::check()?;
        if std::time::Instant::now() > end {
            return Err(format!("{ifname} did not appear in {netns}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Moves `ifname` from `from` into `to`, renamed `name`.
fn move_to(from: &str, ifname: &str, to: &str, name: &str) -> Result<(), String> {
    must(&["ip", "-n", from, "link", "set", "dev", ifname, "netns", to])?;
    must(&["ip", "-n", to, "link", "set", "dev", ifname, "name", name])?;
    Ok(())
}

/// Builds the lab for `kind`, checks that A reaches B, and starts B's iperf3 server.
pub fn setup(kind: Kind, ctx: &Ctx) -> Result<SystemLab, String> {
    if let Some(why) = kind.unavailable() {
        return Err(why);
    }
    let mut lab = Lab::new(crate::TAG, &ctx.umacvlan);
    let a = lab.ns("a")?;
    let b = lab.ns("b")?;
    let mut procs = Vec::new();
    let mut switch_pid = None;
    let mut sw = None;
    let mut lower = None;
    match kind {
        Kind::Veth => lab.veth(&a, "ea", &b, "eb")?,
        Kind::KernelMacvlan
        | Kind::Umacvlan
        | Kind::UmacvlanBpf
        | Kind::KernelMacvlanVepa
        | Kind::UmacvlanVepa
        | Kind::UmacvlanVepaBpf => {
            let s = lab.ns("sw")?;
            let vepa = matches!(
                kind,
                Kind::KernelMacvlanVepa | Kind::UmacvlanVepa | Kind::UmacvlanVepaBpf
            );
            if vepa {
                let hp = lab.ns("hp")?;
                lab.veth(&s, "lower", &hp, "peer")?;
                lab.hairpin_switch(&hp, "peer", crate::EXT_CIDR)?;
            } else {
                let wire = lab.ns("wire")?;
                lab.veth(&s, "lower", &wire, "peer")?;
            }
            let mode = if vepa { "vepa" } else { "bridge" };
            let user = kind != Kind::KernelMacvlan && kind != Kind::KernelMacvlanVepa;
            if user {
                let mut args = cmd::daemon_args(lab.prefix());
                let bpf = matches!(kind, Kind::UmacvlanBpf | Kind::UmacvlanVepaBpf);
                args.push("--datapath".into());
                args.push(if bpf { "bpf" } else { "tap" }.into());
                lab.start_daemon(&s, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
                switch_pid = lab.daemon_pid();
                if let Some(p) = switch_pid {
                    cmd::register(p, "umacvlan daemon");
                }
            }
            for (ns, name) in [(&a, "ea"), (&b, "eb")] {
                let words = [
                    "link", "add", "link", "lower", "name", name, "netns", ns, "type", "macvlan",
                    "mode", mode,
                ];
                if user {
                    lab.cli_ok(&words)?;
                } else {
                    let mut v = vec!["ip", "-n", &s];
                    v.extend_from_slice(&words);
                    must(&v)?;
                }
            }
            sw = Some(s);
            lower = Some("lower".to_string());
        }
        Kind::LinuxBridge => {
            let s = lab.ns("sw")?;
            must(&["ip", "-n", &s, "link", "add", "br0", "type", "bridge"])?;
            must(&["ip", "-n", &s, "link", "set", "br0", "up"])?;
            lab.veth(&a, "ea", &s, "pa")?;
            lab.veth(&b, "eb", &s, "pb")?;
            must(&["ip", "-n", &s, "link", "set", "pa", "master", "br0"])?;
            must(&["ip", "-n", &s, "link", "set", "pb", "master", "br0"])?;
            sw = Some(s);
        }
        Kind::TapFwd => {
            let s = lab.ns("sw")?;
            let self_bin = ctx.self_bin.to_string_lossy().into_owned();
            let mut p = Proc::spawn(
                "tapfwd",
                &[
                    "ip",
                    "netns",
                    "exec",
                    &s,
                    &self_bin,
                    "tapfwd",
                    "--a",
                    &format!("{a}/ea"),
                    "--b",
                    &format!("{b}/eb"),
                ],
                &[],
                false,
            )?;
            p.wait_for_log("ready", Duration::from_secs(10))?;
            switch_pid = Some(p.pid());
            procs.push(p);
            sw = Some(s);
        }
        Kind::Vde => {
            let s = lab.ns("sw")?;
            let sock = cmd::scratch_file("vde");
            let sock = sock.to_string_lossy().into_owned();
            let p = Proc::spawn(
                "vde_switch",
                &[
                    "ip",
                    "netns",
                    "exec",
                    &s,
                    "vde_switch",
                    "-s",
                    &sock,
                    "-t",
                    "vdea",
                    "-t",
                    "vdeb",
                ],
                &[],
                true,
            )?;
            switch_pid = Some(p.pid());
            procs.push(p);
            wait_link(&s, "vdea", Duration::from_secs(10))?;
            wait_link(&s, "vdeb", Duration::from_secs(10))?;
            move_to(&s, "vdea", &a, "ea")?;
            move_to(&s, "vdeb", &b, "eb")?;
            sw = Some(s);
        }
        Kind::Ovs | Kind::OvsTso => {
            let s = lab.ns("sw")?;
            let (p, vs) = start_ovs(&s, kind == Kind::OvsTso)?;
            switch_pid = Some(p[1].pid());
            procs.extend(p);
            vsctl(
                &vs,
                &[
                    "add-br",
                    "br0",
                    "--",
                    "set",
                    "bridge",
                    "br0",
                    "datapath_type=netdev",
                ],
            )?;
            for t in ["ovsa", "ovsb"] {
                vsctl(
                    &vs,
                    &[
                        "add-port",
                        "br0",
                        t,
                        "--",
                        "set",
                        "Interface",
                        t,
                        "type=tap",
                    ],
                )?;
            }
            wait_link(&s, "ovsa", Duration::from_secs(10))?;
            wait_link(&s, "ovsb", Duration::from_secs(10))?;
            move_to(&s, "ovsa", &a, "ea")?;
            move_to(&s, "ovsb", &b, "eb")?;
            sw = Some(s);
        }
    }
    let cidr_a = format!("{A_IP}/{PREFIX}");
    let cidr_b = format!("{B_IP}/{PREFIX}");
    lab.addr(&a, "ea", &cidr_a)?;
    lab.addr(&b, "eb", &cidr_b)?;
    let (ia, ma) = link_info(&a, "ea")?;
    let (ib, mb) = link_info(&b, "eb")?;
    let mut sl = SystemLab {
        procs,
        lab,
        kind,
        a: Endpoint {
            netns: a.clone(),
            ifname: "ea".into(),
            ifindex: ia,
            mac: ma,
            ip: A_IP.into(),
        },
        b: Endpoint {
            netns: b,
            ifname: "eb".into(),
            ifindex: ib,
            mac: mb,
            ip: B_IP.into(),
        },
        switch_pid,
        sw,
        lower,
        iperf_index: None,
    };
    // A reaches B (this also fills both neighbour tables and the switches' MAC tables).
    let mut reached = false;
    for _ in 0..20 {
        if sl
            .lab
            .exec(&a, &["ping", "-c", "1", "-W", "1", "-q", B_IP])
            .ok()
        {
            reached = true;
            break;
        }
        cmd::check()?;
    }
    if !reached {
        let extra = if kind.has_switch_process() {
            sl.lab.daemon_log()
        } else {
            String::new()
        };
        return Err(format!(
            "{}: A cannot ping B {}",
            kind.id(),
            cmd::tail(&extra, 400)
        ));
    }
    sl.ensure_iperf_server()?;
    Ok(sl)
}

/// `ovs-vsctl` against a private database.
fn vsctl(db: &str, args: &[&str]) -> Result<String, String> {
    let mut v = vec!["ovs-vsctl", "--timeout=20", db];
    v.extend_from_slice(args);
    cmd::must_for(&v, Duration::from_secs(30))
}

/// A private Open vSwitch (database and switch daemon, both ours, in namespace `ns`);
/// returns the processes (ovsdb-server, ovs-vswitchd) and the `--db=` option for ovs-vsctl.
fn start_ovs(ns: &str, tso: bool) -> Result<(Vec<Proc>, String), String> {
    let dir = cmd::scratch_file(if tso { "ovs-tso" } else { "ovs" });
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let d = dir.to_string_lossy().into_owned();
    let p = |f: &str| -> String { Path::new(&d).join(f).to_string_lossy().into_owned() };
    let schema = [
        "/usr/share/openvswitch/vswitch.ovsschema",
        "/usr/local/share/openvswitch/vswitch.ovsschema",
    ]
    .into_iter()
    .find(|f| Path::new(f).exists())
    .ok_or("vswitch.ovsschema not found (openvswitch-common)")?;
    cmd::must_for(
        &["ovsdb-tool", "create", &p("conf.db"), schema],
        Duration::from_secs(20),
    )?;
    let env = [
        ("OVS_RUNDIR", d.as_str()),
        ("OVS_LOGDIR", d.as_str()),
        ("OVS_DBDIR", d.as_str()),
        ("OVS_SYSCONFDIR", d.as_str()),
    ];
    let db_sock = p("db.sock");
    let db = Proc::spawn(
        "ovsdb-server",
        &[
            "ip",
            "netns",
            "exec",
            ns,
            "ovsdb-server",
            &p("conf.db"),
            &format!("--remote=punix:{db_sock}"),
            &format!("--unixctl={}", p("ovsdb.ctl")),
            &format!("--pidfile={}", p("ovsdb.pid")),
            &format!("--log-file={}", p("ovsdb.log")),
        ],
        &env,
        false,
    )?;
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !Path::new(&db_sock).exists() {
        cmd::check()?;
        if std::time::Instant::now() > end {
            return Err(format!(
                "ovsdb-server did not start: {}",
                cmd::tail(&db.log(), 400)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let vs = format!("--db=unix:{db_sock}");
    vsctl(&vs, &["--no-wait", "init"])?;
    vsctl(
        &vs,
        &[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("other_config:userspace-tso-enable={tso}"),
        ],
    )?;
    let mut sw = Proc::spawn(
        "ovs-vswitchd",
        &[
            "ip",
            "netns",
            "exec",
            ns,
            "ovs-vswitchd",
            &format!("unix:{db_sock}"),
            &format!("--unixctl={}", p("vswitchd.ctl")),
            &format!("--pidfile={}", p("vswitchd.pid")),
            &format!("--log-file={}", p("vswitchd.log")),
        ],
        &env,
        false,
    )?;
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while !Path::new(&p("vswitchd.ctl")).exists() {
        cmd::check()?;
        if !sw.running() || std::time::Instant::now() > end {
            return Err(format!(
                "ovs-vswitchd did not start: {}",
                cmd::tail(
                    &std::fs::read_to_string(p("vswitchd.log")).unwrap_or_default(),
                    400
                )
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((vec![db, sw], vs))
}
