//! Faults of the LOWER device, all under traffic, as root: each is applied at the same time to
//! a umacvlan lower and to a "twin" lower carrying the kernel's own macvlans (the oracle), and
//! umacvlan must end where the kernel ends, without a panic and without leaking a file
//! descriptor or a thread in the daemon.
//!
//! A lower moved to another namespace (and back) is followed, as the kernel follows it: the
//! macvlans stay in their namespaces and forward through the lower in its new one.
//!
//! Leak accounting: the daemon has one thread per data-plane worker plus a broadcast worker per
//! port, and a fixed set of fds per port and per macvlan. Counts are read from `/proc/PID/fd`
//! and `/proc/PID/task`, as the minimum over a short window (a `link show` connection thread,
//! the statistics tree's file write or a multicast poll may be in flight at any instant).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

mod common;
use common::*;

/// Data-plane workers per port, fixed so that a port's thread count is known.
const WORKERS: usize = 2;
/// How long a fault may take to propagate on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Background traffic generators, killed when dropped (also when the test fails).
struct Traffic(Vec<(String, Child, std::path::PathBuf)>);

impl Traffic {
    fn new() -> Traffic {
        Traffic(Vec::new())
    }

    /// `ping` from `ns` to `dst`: a flood (`-f`) or every 10 ms. Not `-w`: with a deadline
    /// ping quits at the first error (an unanswered ARP while the lower is down). `timeout`
    /// bounds it should the test process itself be killed.
    fn ping(&mut self, ns: &str, dst: &str, flood: bool) {
        let mut args = vec!["netns", "exec", ns, "timeout", "120", "ping", "-q"];
        args.extend_from_slice(if flood { &["-f"] } else { &["-i", "0.01"] });
        args.push(dst);
        // Its complaints go to a file: a pipe nobody reads would fill and stop it.
        let log = std::env::temp_dir().join(format!("{ns}-{dst}-{}.ping", self.0.len()));
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("ping log"))
            .spawn()
            .expect("ping");
        self.0.push((format!("{ns} → {dst}"), child, log));
    }

    /// Every generator is still running (traffic was there all along).
    fn assert_running(&mut self) {
        for (what, c, log) in &mut self.0 {
            if let Ok(Some(st)) = c.try_wait() {
                let err = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = err.lines().rev().take(5).collect();
                panic!("traffic {what} stopped ({st}): {tail:?}");
            }
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for (_, c, log) in &mut self.0 {
            // TERM, which `timeout` passes on to ping (KILL would orphan ping).
            let _ = lab::run(&["kill", "-TERM", &c.id().to_string()]);
            let _ = c.wait();
            let _ = std::fs::remove_file(log);
        }
    }
}

fn wait_long(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {PATIENCE:?} waiting for {what}");
}

/// Open fds and threads of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
    fds: usize,
    threads: usize,
}

fn usage_now(pid: u32) -> Usage {
    let count = |d: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{d}"))
            .unwrap_or_else(|e| panic!("daemon {pid} gone? /proc/{pid}/{d}: {e}"))
            .count()
    };
    Usage {
        fds: count("fd"),
        threads: count("task"),
    }
}

/// What the daemon's fds point at (for failure messages).
fn fd_targets(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let t = std::fs::read_link(e.path()).unwrap_or_default();
                    format!("{}→{}", e.file_name().to_string_lossy(), t.display())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The daemon's thread names (for failure messages).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The daemon's usage over ~0.6 s: the minimum, so transient connection threads, file writes
/// and namespace handles held for one poll do not count.
fn usage(lab: &Lab) -> Usage {
    let pid = lab.daemon_pid().expect("daemon");
    let mut u = usage_now(pid);
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(15));
        let n = usage_now(pid);
        u.fds = u.fds.min(n.fds);
        u.threads = u.threads.min(n.threads);
    }
    u
}

/// The daemon's resting usage, to compare against later: two windows in a row that agree. (A
/// request stuck behind the RTNL lock — another test deleting namespaces — can hold transient
/// handles for a whole window.)
fn baseline(lab: &Lab) -> Usage {
    let mut last = usage(lab);
    for _ in 0..10 {
        let u = usage(lab);
        if u == last {
            return u;
        }
        last = u;
    }
    panic!("the daemon's usage does not settle: last {last:?}");
}

/// Waits until the daemon's resting usage is `want`.
fn settle_to(lab: &Lab, want: Usage, what: &str) -> Usage {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let u = usage(lab);
        if u == want {
            return u;
        }
        if Instant::now() > deadline {
            let pid = lab.daemon_pid().expect("daemon");
            panic!(
                "{what}: daemon uses {u:?}, expected {want:?}\nfds: {:?}\nthreads: {:?}",
                fd_targets(pid),
                thread_names(pid)
            );
        }
    }
}

/// The daemon is alive (not a zombie), answers `link show`, and has not panicked.
fn assert_healthy(lab: &Lab, when: &str) {
    let pid = lab.daemon_pid().expect("daemon");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    assert!(
        matches!(state, Some(s) if s != 'Z' && s != 'X'),
        "{when}: daemon dead ({stat})"
    );
    let r = lab.cli(&["link", "show"]);
    assert!(r.ok(), "{when}: link show failed: {r:?}");
    let log = lab.daemon_log();
    assert!(!log.contains("panicked"), "{when}: daemon panicked:\n{log}");
}

/// `ip -j link show` of `ifname` in `ns`, or `None` when it does not exist.
fn dev(ns: &str, ifname: &str) -> Option<serde_json::Value> {
    let r = lab::run(&["ip", "-n", ns, "-j", "link", "show", ifname]);
    r.ok()
        .then(|| serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()[0].clone())
}

fn must_dev(ns: &str, ifname: &str) -> serde_json::Value {
    dev(ns, ifname).unwrap_or_else(|| panic!("{ifname} missing in {ns}"))
}

/// What a macvlan's user sees of its carrier: (UP, LOWER_UP, NO-CARRIER, operstate).
fn carrier_view(ns: &str, ifname: &str) -> (bool, bool, bool, String) {
    let v = must_dev(ns, ifname);
    let has = |f: &str| v["flags"].as_array().unwrap().iter().any(|x| x == f);
    (
        has("UP"),
        has("LOWER_UP"),
        has("NO-CARRIER"),
        v["operstate"].as_str().unwrap_or("").to_string(),
    )
}

fn mtu(ns: &str, ifname: &str) -> u64 {
    must_dev(ns, ifname)["mtu"].as_u64().unwrap()
}

fn mac(ns: &str, ifname: &str) -> String {
    must_dev(ns, ifname)["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A umacvlan macvlan `name` on `lower`, placed in the existing namespace `ns`, with `cidr`.
fn umv_add(lab: &Lab, lower: &str, name: &str, ns: &str, words: &[&str], cidr: &str) {
    let mut args = vec![
        "link", "add", "link", lower, "name", name, "netns", ns, "type", "macvlan",
    ];
    args.extend_from_slice(words);
    lab.cli_ok(&args).unwrap();
    lab.addr(ns, name, cidr).unwrap();
}

/// A kernel macvlan `name` on `lower` (in `host`), placed in the existing namespace `ns`.
fn kernel_add(
    lab: &Lab,
    host: &str,
    lower: &str,
    name: &str,
    ns: &str,
    words: &[&str],
    cidr: &str,
) {
    let mut args = vec![
        "ip", "-n", host, "link", "add", "link", lower, "name", name, "netns", ns, "type",
        "macvlan",
    ];
    args.extend_from_slice(words);
    lab::must(&args).unwrap();
    lab.addr(ns, name, cidr).unwrap();
}

fn ip(args: &[&str]) {
    let mut v = vec!["ip"];
    v.extend_from_slice(args);
    lab::must(&v).unwrap();
}

/// `dst` answers a ping from `ns` (retried: ARP, linkwatch and the daemon may lag).
fn reachable(lab: &Lab, ns: &str, dst: &str) {
    wait_long(&format!("{ns} → {dst} answers"), || lab.ping(ns, dst, 1));
}

/// The lab of [`base`], with the daemon restarted with a fixed number of workers.
fn lab(tag: &str) -> (Lab, String, String) {
    let (mut lab, host, ext) = base(tag, false);
    lab.stop_daemon("TERM");
    lab.start_daemon(
        &host,
        &["--log", "debug", "--workers", &WORKERS.to_string()],
    )
    .unwrap();
    (lab, host, ext)
}

#[test]
fn lower_down_carrier_mtu_and_mac_changes_under_traffic_end_as_the_kernels() {
    need_root!();
    let (mut lab, host, ext) = lab("lf-follow");
    // A second lower for passthru (which takes a lower to itself).
    lab.veth(&host, "eth1", &ext, "eth1").unwrap();
    lab.addr(&ext, "eth1", "10.51.0.1/24").unwrap();
    // The kernel twin: the same two lowers in `khost`, peers keth0/keth1 in ext.
    let khost = lab.ns("khost").unwrap();
    lab.veth(&khost, "eth0", &ext, "keth0").unwrap();
    lab.veth(&khost, "eth1", &ext, "keth1").unwrap();
    lab.addr(&ext, "keth0", "10.60.0.1/24").unwrap();
    lab.addr(&ext, "keth1", "10.61.0.1/24").unwrap();

    // (umacvlan name, kernel name, lower, mode, address last byte)
    let devs = [
        ("mva", "kmva", "eth0", "bridge", 11),
        ("mvv", "kmvv", "eth0", "vepa", 12),
        ("mvpt", "kmvpt", "eth1", "passthru", 31),
    ];
    let net = |lower: &str, kernel: bool| match (lower, kernel) {
        ("eth0", false) => "10.50.0",
        ("eth1", false) => "10.51.0",
        ("eth0", true) => "10.60.0",
        _ => "10.61.0",
    };
    for (u, k, lower, mode, last) in devs {
        let uns = lab.ns(u).unwrap();
        umv_add(
            &lab,
            lower,
            u,
            &uns,
            &["mode", mode],
            &format!("{}.{last}/24", net(lower, false)),
        );
        let kns = lab.ns(k).unwrap();
        kernel_add(
            &lab,
            &khost,
            lower,
            k,
            &kns,
            &["mode", mode],
            &format!("{}.{last}/24", net(lower, true)),
        );
    }
    // For a macvlan created during a fault.
    lab.ns("mvn").unwrap();
    lab.ns("kmvn").unwrap();
    let ns = |n: &str| lab.ns_name(n);
    // mvv below the lower's MTU from the start, to see who is clamped.
    lab.cli_ok(&["link", "set", "mvv", "mtu", "1300"]).unwrap();
    ip(&["-n", &ns("kmvv"), "link", "set", "kmvv", "mtu", "1300"]);
    for (_, _, lower, _, last) in devs {
        reachable(&lab, &ext, &format!("{}.{last}", net(lower, false)));
        reachable(&lab, &ext, &format!("{}.{last}", net(lower, true)));
    }

    let mut traffic = Traffic::new();
    traffic.ping(&ext, "10.50.0.11", true);
    traffic.ping(&ext, "10.50.0.12", false);
    traffic.ping(&ext, "10.51.0.31", false);
    traffic.ping(&ns("mva"), "10.50.0.1", false);
    traffic.ping(&ns("mvpt"), "10.51.0.1", false);
    std::thread::sleep(Duration::from_millis(500));
    let before = baseline(&lab);
    eprintln!("usage under traffic before the faults: {before:?}");
    let rx_packets = |lab: &Lab| {
        link(&show_json(lab), "mva")["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap()
    };
    let rx_before = rx_packets(&lab);
    // The lowers' filters (umacvlan's packet-socket memberships, the kernel's own
    // promiscuity): the same on both sides, and the same again after every fault.
    let promisc = || ["eth0", "eth1"].map(|l| (promiscuity(&host, l), promiscuity(&khost, l)));
    let promisc_before = promisc();
    for (l, (u, k)) in ["eth0", "eth1"].iter().zip(promisc_before) {
        assert_eq!(
            u, k,
            "{l}: promiscuity under umacvlan {u}, under the kernel {k}"
        );
    }

    // Both sides of a pair agree on what the macvlan's user sees of its carrier.
    let same_view = |u: &str, k: &str, want_carrier: bool| {
        wait_long(&format!("kernel {k} carrier {want_carrier}"), || {
            let (up, lower_up, no_carrier, _) = carrier_view(&ns(k), k);
            up && lower_up == want_carrier && no_carrier != want_carrier
        });
        wait_long(&format!("{u} shows what {k} shows"), || {
            carrier_view(&ns(u), u) == carrier_view(&ns(k), k)
        });
        // `umacvlan link show` answers what `ip link show` answers for the kernel's.
        wait_long(
            &format!("umacvlan link show {u} like ip link show {k}"),
            || {
                let (v, kv) = (show_json(&lab), must_dev(&ns(k), k));
                let l = link(&v, u);
                (&l["flags"], &l["operstate"]) == (&kv["flags"], &kv["operstate"])
            },
        );
    };
    let same_carrier = |want_carrier: bool| {
        for (u, k, _, _, _) in devs {
            same_view(u, k, want_carrier);
        }
    };
    let all_reachable = |lab: &Lab| {
        for (_, _, lower, _, last) in devs {
            reachable(lab, &ext, &format!("{}.{last}", net(lower, false)));
            reachable(lab, &ext, &format!("{}.{last}", net(lower, true)));
        }
    };

    // 1. Lower admin down, then up.
    for h in [&host, &khost] {
        ip(&["-n", h, "link", "set", "eth0", "down"]);
        ip(&["-n", h, "link", "set", "eth1", "down"]);
    }
    same_carrier(false);
    assert!(
        !lab.ping(&ext, "10.50.0.11", 1),
        "answered with the lower down"
    );
    // Set down and up again while the lower is down: still no carrier (oracle Q17).
    for (n, d) in [("mvv", "mvv"), ("kmvv", "kmvv")] {
        ip(&["-n", &ns(n), "link", "set", d, "down"]);
        ip(&["-n", &ns(n), "link", "set", d, "up"]);
    }
    same_view("mvv", "kmvv", false);
    assert_healthy(&lab, "lower down");
    for h in [&host, &khost] {
        ip(&["-n", h, "link", "set", "eth0", "up"]);
        ip(&["-n", h, "link", "set", "eth1", "up"]);
    }
    same_carrier(true);
    all_reachable(&lab);
    assert_healthy(&lab, "lower up again");
    settle_to(&lab, before, "lower up again");

    // 2. Carrier loss: the wire's end goes down in ext; then comes back.
    for p in ["eth0", "eth1", "keth0", "keth1"] {
        ip(&["-n", &ext, "link", "set", p, "down"]);
    }
    same_carrier(false);
    // A macvlan created during the carrier loss has no carrier from the start (oracle Q17).
    umv_add(
        &lab,
        "eth0",
        "mvn",
        &ns("mvn"),
        &["mode", "bridge"],
        "10.50.0.13/24",
    );
    kernel_add(
        &lab,
        &khost,
        "eth0",
        "kmvn",
        &ns("kmvn"),
        &["mode", "bridge"],
        "10.60.0.13/24",
    );
    same_view("mvn", "kmvn", false);
    assert_healthy(&lab, "carrier lost");
    for p in ["eth0", "eth1", "keth0", "keth1"] {
        ip(&["-n", &ext, "link", "set", p, "up"]);
    }
    same_carrier(true);
    same_view("mvn", "kmvn", true);
    all_reachable(&lab);
    reachable(&lab, &ext, "10.50.0.13");
    reachable(&lab, &ext, "10.60.0.13");
    lab.cli_ok(&["link", "del", "mvn"]).unwrap();
    ip(&["-n", &ns("kmvn"), "link", "del", "kmvn"]);
    assert_healthy(&lab, "carrier back");
    settle_to(&lab, before, "carrier back");

    // 2b. Both flapping fast, events racing the data plane: the last state wins.
    for _ in 0..10 {
        for (dev_ns, d) in [
            (&host, "eth0"),
            (&khost, "eth0"),
            (&ext, "eth1"),
            (&ext, "keth1"),
        ] {
            ip(&["-n", dev_ns, "link", "set", d, "down"]);
            ip(&["-n", dev_ns, "link", "set", d, "up"]);
        }
    }
    same_carrier(true);
    all_reachable(&lab);
    assert_healthy(&lab, "flapping");
    settle_to(&lab, before, "flapping");

    // 3. The lower's MTU: lowered, macvlans above it are clamped (only those); raised, none
    // follows; lowered again below everyone, all are clamped.
    let mtus_match = |step: &str| {
        for (u, k, _, _, _) in devs {
            let want = mtu(&ns(k), k);
            wait_long(&format!("{step}: {u} mtu {want} like {k}"), || {
                mtu(&ns(u), u) == want && link(&show_json(&lab), u)["mtu"] == want
            });
        }
    };
    for (lower_mtu, expect) in [("1400", [1400, 1300, 1400]), ("9000", [1400, 1300, 1400])] {
        for h in [&host, &khost] {
            ip(&["-n", h, "link", "set", "eth0", "mtu", lower_mtu]);
            ip(&["-n", h, "link", "set", "eth1", "mtu", lower_mtu]);
        }
        // The kernel's answer, checked against what the oracle documents (Q15).
        let kernel: Vec<u64> = devs.iter().map(|(_, k, ..)| mtu(&ns(k), k)).collect();
        assert_eq!(
            kernel, expect,
            "kernel macvlan MTUs after lower mtu {lower_mtu}"
        );
        mtus_match(&format!("lower mtu {lower_mtu}"));
    }
    // With the lower at 9000, a macvlan may go above its old MTU; then the lower drops below.
    lab.cli_ok(&["link", "set", "mvv", "mtu", "9000"]).unwrap();
    ip(&["-n", &ns("kmvv"), "link", "set", "kmvv", "mtu", "9000"]);
    for h in [&host, &khost] {
        ip(&["-n", h, "link", "set", "eth0", "mtu", "1280"]);
        ip(&["-n", h, "link", "set", "eth1", "mtu", "1280"]);
    }
    let kernel: Vec<u64> = devs.iter().map(|(_, k, ..)| mtu(&ns(k), k)).collect();
    assert_eq!(kernel, [1280, 1280, 1280]);
    mtus_match("lower mtu 1280");
    all_reachable(&lab);
    // A datagram filling the clamped MTU passes; one byte more is refused at the sender.
    assert!(lab
        .exec(
            &ns("mva"),
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "-M",
                "do",
                "-s",
                "1252",
                "10.50.0.1"
            ]
        )
        .ok());
    assert!(!lab
        .exec(
            &ns("mva"),
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "-M",
                "do",
                "-s",
                "1253",
                "10.50.0.1"
            ]
        )
        .ok());
    assert_healthy(&lab, "mtu changes");
    settle_to(&lab, before, "mtu changes");

    // 4. The lower's MAC: bridge and vepa keep theirs, passthru follows the lower.
    let old: Vec<(String, String)> = devs
        .iter()
        .map(|(u, k, ..)| (mac(&ns(u), u), mac(&ns(k), k)))
        .collect();
    ip(&[
        "-n",
        &host,
        "link",
        "set",
        "eth0",
        "address",
        "02:dd:00:00:00:01",
    ]);
    ip(&[
        "-n",
        &khost,
        "link",
        "set",
        "eth0",
        "address",
        "02:dd:00:00:01:01",
    ]);
    ip(&[
        "-n",
        &host,
        "link",
        "set",
        "eth1",
        "address",
        "02:dd:00:00:00:02",
    ]);
    ip(&[
        "-n",
        &khost,
        "link",
        "set",
        "eth1",
        "address",
        "02:dd:00:00:01:02",
    ]);
    // The kernel: non-passthru keep theirs, passthru takes the lower's.
    assert_eq!(mac(&ns("kmva"), "kmva"), old[0].1);
    assert_eq!(mac(&ns("kmvv"), "kmvv"), old[1].1);
    assert_eq!(mac(&ns("kmvpt"), "kmvpt"), "02:dd:00:00:01:02");
    wait_long("mvpt follows its lower's MAC", || {
        mac(&ns("mvpt"), "mvpt") == "02:dd:00:00:00:02"
            && link(&show_json(&lab), "mvpt")["address"] == "02:dd:00:00:00:02"
    });
    // Give a wrong reaction time to show, then check the others kept theirs.
    std::thread::sleep(Duration::from_millis(300));
    let v = show_json(&lab);
    for (i, u) in ["mva", "mvv"].into_iter().enumerate() {
        assert_eq!(mac(&ns(u), u), old[i].0, "{u} keeps its MAC");
        assert_eq!(link(&v, u)["address"], old[i].0.as_str());
    }
    // The external host still has the passthru macvlans' old MAC in its ARP cache; refresh
    // it as the next ARP probe would (the kernel's passthru also takes frames to the old MAC
    // as HOST; a TAP sees them as OTHERHOST — see README, "Packet type on a TAP").
    for p in ["eth1", "keth1"] {
        ip(&["-n", &ext, "neigh", "flush", "dev", p]);
    }
    all_reachable(&lab);
    // The kernel does not check a lower's new MAC against its macvlans (oracle Q14): the
    // lower may take mva's, and mva keeps it and keeps working.
    ip(&["-n", &host, "link", "set", "eth0", "address", &old[0].0]);
    ip(&["-n", &khost, "link", "set", "eth0", "address", &old[0].1]);
    assert_eq!(mac(&ns("kmva"), "kmva"), old[0].1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mac(&ns("mva"), "mva"), old[0].0);
    assert_eq!(link(&show_json(&lab), "mva")["address"], old[0].0.as_str());
    all_reachable(&lab);
    assert_healthy(&lab, "mac changes");

    // Nothing leaked, nothing died; traffic flowed through all of it.
    assert_eq!(
        promisc(),
        promisc_before,
        "lower promiscuity after the faults"
    );
    traffic.assert_running();
    let rx_after = rx_packets(&lab);
    eprintln!(
        "mva received {} packets during the faults",
        rx_after - rx_before
    );
    assert!(
        rx_after > rx_before + 500,
        "mva rx {rx_before} → {rx_after}"
    );
    let after = settle_to(&lab, before, "after every fault and its recovery");
    eprintln!("usage after recovery: {after:?}");
    assert_healthy(&lab, "end");
}

#[test]
fn lower_deleted_recreated_and_moved_away_under_traffic() {
    need_root!();
    let (mut lab, host, ext) = lab("lf-gone");
    let khost = lab.ns("khost").unwrap();
    let kaway = lab.ns("kaway").unwrap();
    let away = lab.ns("away").unwrap();
    let kernel_lower = |lab: &Lab| {
        lab.veth(&khost, "eth0", &ext, "keth0").unwrap();
        lab.addr(&ext, "keth0", "10.60.0.1/24").unwrap();
    };
    kernel_lower(&lab);
    let mva = lab.ns("mva").unwrap();
    let mvp = lab.ns("mvp").unwrap();
    let kmva = lab.ns("kmva").unwrap();
    let _ = lab.cli_ok(&["link", "show"]).unwrap();
    let idle = baseline(&lab);
    eprintln!("usage without macvlans: {idle:?}");

    let add_all = |lab: &Lab| {
        umv_add(
            lab,
            "eth0",
            "mva",
            &mva,
            &["mode", "bridge"],
            "10.50.0.11/24",
        );
        umv_add(
            lab,
            "eth0",
            "mvp",
            &mvp,
            &["mode", "private"],
            "10.50.0.12/24",
        );
        reachable(lab, &ext, "10.50.0.11");
        reachable(lab, &ext, "10.50.0.12");
        reachable(lab, &mva, "10.50.0.1");
    };
    let all_gone = |lab: &Lab, what: &str| {
        wait_long(what, || {
            show_json(lab).as_array().unwrap().is_empty()
                && dev(&mva, "mva").is_none()
                && dev(&mvp, "mvp").is_none()
        });
    };
    add_all(&lab);
    kernel_add(
        &lab,
        &khost,
        "eth0",
        "kmva",
        &kmva,
        &["mode", "bridge"],
        "10.60.0.11/24",
    );

    let mut traffic = Traffic::new();
    traffic.ping(&ext, "10.50.0.11", true);
    traffic.ping(&ext, "10.50.0.12", false);
    traffic.ping(&mva, "10.50.0.1", false);
    traffic.ping(&mvp, "10.50.0.1", false);
    std::thread::sleep(Duration::from_millis(500));
    let serving = baseline(&lab);
    let promisc_serving = promiscuity(&host, "eth0");
    assert!(promisc_serving > 0, "macvlans up: the lower is promiscuous");
    eprintln!("usage with one port under traffic: {serving:?}");
    assert_eq!(
        serving.threads,
        idle.threads + WORKERS + 1,
        "a port has its workers and a broadcast worker"
    );

    // 1. The lower is deleted: its macvlans go (the kernel's too), and so do the port's
    // threads and fds — back to the idle daemon.
    ip(&["-n", &host, "link", "del", "eth0"]);
    ip(&["-n", &khost, "link", "del", "eth0"]);
    assert!(
        dev(&kmva, "kmva").is_none(),
        "the kernel deletes its macvlans"
    );
    all_gone(&lab, "macvlans gone with their lower");
    assert_healthy(&lab, "lower deleted");
    let gone = settle_to(&lab, idle, "after the lower was deleted");
    eprintln!("usage after the lower was deleted: {gone:?}");

    // 2. A new lower of the same name: new macvlans work on it again.
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    lab.addr(&ext, "eth0", "10.50.0.1/24").unwrap();
    add_all(&lab);
    assert_healthy(&lab, "lower re-created");
    assert_eq!(promiscuity(&host, "eth0"), promisc_serving);
    let again = settle_to(&lab, serving, "with macvlans on the re-created lower");
    eprintln!("usage on the re-created lower: {again:?}");

    // 3. The lower moves to another namespace, and back. The kernel keeps its macvlans where
    // they are: they lose carrier (the lower goes down on the way), keep their MTU and address,
    // and forward again through the lower once it is up in its new namespace. umacvlan follows
    // the lower the same way (new packet sockets there, memberships re-applied).
    kernel_lower(&lab);
    kernel_add(
        &lab,
        &khost,
        "eth0",
        "kmva",
        &kmva,
        &["mode", "bridge"],
        "10.60.0.11/24",
    );
    reachable(&lab, &ext, "10.60.0.11");
    let (mtu_before, mac_before) = (mtu(&mva, "mva"), mac(&mva, "mva"));
    let (kmtu_before, kmac_before) = (mtu(&kmva, "kmva"), mac(&kmva, "kmva"));
    let rx_packets = |lab: &Lab| {
        link(&show_json(lab), "mva")["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap()
    };
    let rx_before_move = rx_packets(&lab);
    ip(&["-n", &host, "link", "set", "eth0", "netns", &away]);
    ip(&["-n", &khost, "link", "set", "eth0", "netns", &kaway]);
    wait_long("the macvlans without carrier, like the kernel's", || {
        let k = carrier_view(&kmva, "kmva");
        k == (true, false, true, "DOWN".to_string())
            && carrier_view(&mva, "mva") == k
            && carrier_view(&mvp, "mvp") == k
    });
    assert_eq!(
        (mtu(&kmva, "kmva"), mac(&kmva, "kmva")),
        (kmtu_before, kmac_before)
    );
    assert_eq!(
        (mtu(&mva, "mva"), mac(&mva, "mva")),
        (mtu_before, mac_before)
    );
    // Kept, and shown as ip shows a macvlan whose lower lives elsewhere: `@ifN`, link-netns.
    let away_index = must_dev(&away, "eth0")["ifindex"].as_u64().unwrap();
    let shown = show_json(&lab);
    assert_eq!(shown.as_array().unwrap().len(), 2, "{shown}");
    for name in ["mva", "mvp"] {
        let l = link(&shown, name);
        assert_eq!(l["link_netns"], away.as_str(), "{l}");
        assert_eq!(l["link_index"].as_u64(), Some(away_index), "{l}");
    }
    let text = lab.cli_ok(&["link", "show", "mva"]).unwrap();
    assert!(
        text.contains(&format!("mva@if{away_index}:"))
            && text.contains(&format!("link-netns {away}")),
        "{text}"
    );
    ip(&["-n", &away, "link", "set", "eth0", "up"]);
    ip(&["-n", &kaway, "link", "set", "eth0", "up"]);
    reachable(&lab, &ext, "10.60.0.11");
    reachable(&lab, &ext, "10.50.0.11");
    reachable(&lab, &ext, "10.50.0.12");
    reachable(&lab, &mva, "10.50.0.1");
    assert_eq!(
        carrier_view(&mva, "mva"),
        (true, true, false, "UP".to_string())
    );
    // The memberships are back on the moved lower.
    wait_long("the moved lower's memberships re-applied", || {
        promiscuity(&away, "eth0") == promisc_serving
    });
    traffic.assert_running();
    assert_healthy(&lab, "lower moved away");
    // The same threads; the lower's namespace handle, rtnetlink socket and multicast file,
    // and a monitor of that namespace with its handle. On the bpf data path the port left the fast path (the
    // programs cannot reach a lower elsewhere): its lower's tcx link went, and it stays on the
    // userspace path when the lower comes back.
    let left_fast_path = usize::from(std::env::var("UMACVLAN_DATAPATH").is_ok_and(|d| d == "bpf"));
    let moved = settle_to(
        &lab,
        Usage {
            fds: serving.fds + 5 - left_fast_path,
            threads: serving.threads,
        },
        "after the lower moved away",
    );
    eprintln!("usage after the lower moved away: {moved:?}");

    // And back: the macvlans keep working, at the same cost as before the move.
    ip(&["-n", &away, "link", "set", "eth0", "netns", &host]);
    ip(&["-n", &kaway, "link", "set", "eth0", "netns", &khost]);
    ip(&["-n", &host, "link", "set", "eth0", "up"]);
    ip(&["-n", &khost, "link", "set", "eth0", "up"]);
    reachable(&lab, &ext, "10.60.0.11");
    reachable(&lab, &ext, "10.50.0.11");
    reachable(&lab, &ext, "10.50.0.12");
    reachable(&lab, &mva, "10.50.0.1");
    let home_index = must_dev(&host, "eth0")["ifindex"].as_u64().unwrap();
    let shown = show_json(&lab);
    assert_eq!(
        link(&shown, "mva")["link_index"].as_u64(),
        Some(home_index),
        "{shown}"
    );
    assert_eq!(link(&shown, "mva")["link_netns"], mva.as_str(), "{shown}");
    wait_long("the lower's memberships re-applied at home", || {
        promiscuity(&host, "eth0") == promisc_serving
    });
    traffic.assert_running();
    // The counters carried over both moves, and traffic kept coming in.
    let rx_back = rx_packets(&lab);
    assert!(
        rx_back > rx_before_move + 100,
        "mva rx {rx_before_move} → {rx_back}"
    );
    let back = settle_to(
        &lab,
        Usage {
            fds: serving.fds - left_fast_path,
            threads: serving.threads,
        },
        "with macvlans on the lower moved back",
    );
    eprintln!("usage on the lower moved back: {back:?}");
    let log = lab.daemon_log();
    assert_eq!(
        log.matches("lower moved to another namespace; following it")
            .count(),
        2,
        "followed there and back:\n{log}"
    );
    assert_healthy(&lab, "end");
}

/// A lower moved to a namespace the daemon cannot find (held only by a file descriptor of a
/// process living elsewhere): its macvlans are removed, with a warning, and nothing leaks.
#[test]
fn lower_moved_where_it_cannot_be_followed_takes_its_macvlans() {
    need_root!();
    let (mut lab, host, _ext) = lab("lf-lost");
    let _ = lab.cli_ok(&["link", "show"]).unwrap();
    let idle = baseline(&lab);
    let mva = lab.ns("mva").unwrap();
    umv_add(
        &lab,
        "eth0",
        "mva",
        &mva,
        &["mode", "bridge"],
        "10.50.0.11/24",
    );
    // A namespace that only a sleeping process's fd 3 holds.
    let hidden = format!("umv-lf-hidden-{}", std::process::id());
    ip(&["netns", "add", &hidden]);
    let mut holder = Command::new("sh")
        .args(["-c", &format!("exec sleep 120 3</run/netns/{hidden}")])
        .spawn()
        .expect("sleep");
    let fd3 = format!("/proc/{}/fd/3", holder.id());
    wait_long("the holder's fd", || std::path::Path::new(&fd3).exists());
    ip(&["netns", "del", &hidden]);
    let r = lab::run(&["ip", "-n", &host, "link", "set", "eth0", "netns", &fd3]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(r.ok(), "{r:?}");
    wait_long("the macvlan removed", || {
        show_json(&lab).as_array().unwrap().is_empty() && dev(&mva, "mva").is_none()
    });
    assert!(lab
        .daemon_log()
        .contains("lower moved to a namespace that cannot be found; removing its macvlans"));
    assert_healthy(&lab, "lower lost");
    let after = settle_to(&lab, idle, "after the lower was lost");
    eprintln!("usage after the lower was lost: {after:?}");
}
