//! The eBPF data path (`umacvlan daemon --datapath bpf`) on real devices, beside a kernel
//! macvlan twin built the same way in the same lab. Root only; every test has its own
//! namespaces (removed on failure too) and sends traffic only inside them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

mod common;
use common::*;

/// One side of the comparison: a lower `eth0` in `host` whose peer sits behind a hairpin
/// switch in `ext` (`net.1`), and macvlans a (bridge, .11), b (bridge, .12), v (vepa, .13) in
/// their own namespaces.
struct Side {
    host: String,
    ext: String,
    a: String,
    b: String,
    v: String,
    net: &'static str,
}

fn build(lab: &mut Lab, kernel: bool) -> Side {
    let (pfx, net) = if kernel {
        ("k", "10.61.0")
    } else {
        ("u", "10.60.0")
    };
    let host = lab.ns(&format!("{pfx}host")).unwrap();
    let ext = lab.ns(&format!("{pfx}ext")).unwrap();
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    lab.hairpin_switch(&ext, "eth0", &format!("{net}.1/24"))
        .unwrap();
    if !kernel {
        lab.start_daemon(&host, &["--datapath", "bpf", "--log", "debug"])
            .unwrap();
    }
    let mut mk = |name: &str, mode: &str, last: u8| -> String {
        let ns = lab.ns(&format!("{pfx}{name}")).unwrap();
        let words = [
            "link", "add", "link", "eth0", "name", name, "netns", &ns, "type", "macvlan", "mode",
            mode,
        ];
        if kernel {
            let mut v = vec!["ip", "-n", host.as_str()];
            v.extend_from_slice(&words);
            lab::must(&v).unwrap();
        } else {
            lab.cli_ok(&words).unwrap();
        }
        lab.addr(&ns, name, &format!("{net}.{last}/24")).unwrap();
        ns
    };
    let a = mk("mva", "bridge", 11);
    let b = mk("mvb", "bridge", 12);
    let v = mk("mvv", "vepa", 13);
    Side {
        host,
        ext,
        a,
        b,
        v,
        net,
    }
}

/// Pings `count` times; returns (received, duplicates).
fn ping(lab: &Lab, ns: &str, dst: &str, count: u32) -> (u32, u32) {
    let r = lab.ping_run(ns, dst, count);
    let text = r.stdout;
    let num_before = |word: &str| -> u32 {
        text.split(',')
            .find(|p| p.contains(word))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.trim_start_matches('+').parse().ok())
            .unwrap_or(0)
    };
    (num_before("received"), num_before("duplicates"))
}

fn mac_of(ns: &str, dev: &str) -> String {
    let out = lab::must(&["ip", "-n", ns, "-j", "link", "show", dev]).unwrap();
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Frames from `src` to `dst` (MACs) that a packet tap on `host`'s `eth0` sees while `f` runs.
fn tapped_on_lower(host: &str, src: &str, dst: &str, f: impl FnOnce()) -> usize {
    let filter = format!("ether src {src} and ether dst {dst}");
    let mut child = Command::new("ip")
        .args([
            "netns", "exec", host, "timeout", "10", "tcpdump", "-i", "eth0",
        ])
        .args(["-nn", "-l", "--immediate-mode", "-Q", "in", &filter])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on" once its filter is in place.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !line.contains("listening on") && Instant::now() < deadline {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
    }
    assert!(
        line.contains("listening on"),
        "tcpdump did not start: {line}"
    );
    f();
    let _ = lab::run(&["kill", "-INT", &child.id().to_string()]);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Bridge ↔ bridge, bridge ↔ vepa (hairpin) and both ↔ the external host reach each other on
/// the bpf path exactly as kernel macvlans do, every echo answered once (nothing delivered
/// twice: the fast path and the slow path never both take a frame), broadcast (ARP) working
/// through the slow path; bridge-local unicast passes through the lower's receive path, where
/// a packet tap sees it, as the kernel's `dev_forward_skb(lowerdev)` does.
#[test]
fn bpf_unicast_reaches_whom_the_kernel_twin_reaches_once_each() {
    need_root!();
    let mut lab = Lab::new("fp-twin", std::path::Path::new(BIN));
    let user = build(&mut lab, false);
    let kern = build(&mut lab, true);
    for s in [&user, &kern] {
        let n = s.net;
        let pairs = [
            (&s.a, format!("{n}.1")),
            (&s.a, format!("{n}.12")),
            (&s.b, format!("{n}.11")),
            (&s.v, format!("{n}.11")),
            (&s.a, format!("{n}.13")),
            (&s.ext, format!("{n}.13")),
            (&s.ext, format!("{n}.11")),
        ];
        for (ns, ip) in pairs {
            assert_eq!(ping(&lab, ns, &ip, 3), (3, 0), "{ns} → {ip}");
        }
    }
    // A packet tap on the lower sees a → b (bridge-local) on both.
    for s in [&user, &kern] {
        let (ma, mb) = (mac_of(&s.a, "mva"), mac_of(&s.b, "mvb"));
        let ip = format!("{}.12", s.net);
        let seen = tapped_on_lower(&s.host, &ma, &mb, || {
            assert_eq!(ping(&lab, &s.a, &ip, 3), (3, 0));
        });
        assert!(seen >= 3, "{}: the lower's tap saw {seen} of a → b", s.host);
    }
    // TCP between two bpf macvlans.
    lab.exec_ok(&user.b, &["iperf3", "-s", "-1", "-D", "-p", "5311"])
        .unwrap();
    let ip = format!("{}.12", user.net);
    let mut ok = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok && Instant::now() < deadline {
        let r = lab.exec(
            &user.a,
            &[
                "timeout", "10", "iperf3", "-c", &ip, "-p", "5311", "-t", "1", "-J",
            ],
        );
        if r.ok() {
            let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
            let bps = j["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or(0.0);
            assert!(bps > 1e8, "TCP a → b at {bps} bit/s");
            ok = true;
        } else {
            // The server may not be listening yet.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(ok, "iperf3 a → b never connected");
    // The macvlans say they are on bpf, and count what the programs forwarded.
    for name in ["mva", "mvb", "mvv"] {
        let text = lab.cli_ok(&["-d", "link", "show", name]).unwrap();
        assert!(text.contains(" datapath bpf "), "{text}");
    }
    let v = show_json(&lab);
    let mva = link(&v, "mva");
    assert!(mva["stats64"]["tx"]["packets"].as_u64().unwrap() > 1000);
    assert!(mva["stats64"]["rx"]["packets"].as_u64().unwrap() > 10);
}

/// `--datapath bpf` on a kernel or with privileges that cannot load BPF fails at start with
/// one clear error naming the datapath, creating nothing; `--datapath auto` says once that it
/// falls back to tap and then works on TAPs.
#[test]
fn without_bpf_privileges_bpf_fails_clearly_and_auto_falls_back_to_tap() {
    need_root!();
    let mut lab = Lab::new("fp-nobpf", std::path::Path::new(BIN));
    let host = lab.ns("host").unwrap();
    let ext = lab.ns("ext").unwrap();
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    let sock = std::env::temp_dir().join(format!("{}.nobpf.sock", lab.prefix()));
    let sock = sock.to_string_lossy().into_owned();
    // Root without CAP_BPF and CAP_SYS_ADMIN: the kernel refuses to load programs.
    let daemon = |datapath: &str| {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &host,
            "setpriv",
            "--bounding-set",
            "-bpf,-sys_admin",
        ])
        .args(["--inh-caps", "-bpf,-sys_admin", BIN, "daemon", "--no-netns"])
        .args(["--socket", &sock, "--datapath", datapath])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let out = daemon("bpf").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--datapath bpf") && err.contains("eBPF"),
        "unclear error: {err}"
    );
    let links = lab::must(&["ip", "-n", &host, "-o", "link", "show"]).unwrap();
    assert_eq!(links.lines().count(), 2, "created nothing: {links}");

    let mut child = daemon("auto").spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.contains("daemon ready") && Instant::now() < deadline {
        if err.read_line(&mut log).unwrap_or(0) == 0 {
            break;
        }
    }
    let result = std::panic::catch_unwind(|| {
        assert!(log.contains("daemon ready"), "auto did not start: {log}");
        let fallback = log
            .lines()
            .filter(|l| l.contains("datapath: tap (the eBPF fast path is unavailable"))
            .count();
        assert_eq!(fallback, 1, "one clear line: {log}");
        let cli = |args: &[&str]| {
            let mut v = vec![BIN, "--socket", sock.as_str()];
            v.extend_from_slice(args);
            lab::run(&v)
        };
        let r = cli(&[
            "link", "add", "link", "eth0", "name", "mvt", "type", "macvlan",
        ]);
        assert!(r.ok(), "{}", r.stderr);
        let text = cli(&["-d", "link", "show"]).stdout;
        assert!(text.contains("mvt") && !text.contains("datapath"), "{text}");
    });
    let _ = lab::run(&["kill", "-TERM", &child.id().to_string()]);
    let _ = child.wait();
    let _ = std::fs::remove_file(&sock);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// Killed, the bpf daemon leaves no veth behind (the guardian deletes the hidden ends, which
/// takes the macvlans with them), no program on the lower (tcx links go with the daemon's
/// fds), and the lower's promiscuity as before; restarted with `--state` it restores within
/// 1 s and unicast flows again.
#[test]
fn sigkill_leaves_nothing_behind_and_state_restores_the_bpf_macvlans() {
    need_root!();
    let mut lab = Lab::new("fp-kill", std::path::Path::new(BIN));
    let host = lab.ns("host").unwrap();
    let ext = lab.ns("ext").unwrap();
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    lab.addr(&ext, "eth0", "10.62.0.1/24").unwrap();
    let promisc_before = promiscuity(&host, "eth0");
    let state = std::env::temp_dir().join(format!("{}.state.json", lab.prefix()));
    let state = state.to_string_lossy().into_owned();
    let args = ["--datapath", "bpf", "--state", state.as_str()];
    lab.start_daemon(&host, &args).unwrap();
    let a = lab.ns("a").unwrap();
    lab.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mva", "netns", &a, "type", "macvlan", "mode",
        "bridge",
    ])
    .unwrap();
    lab.addr(&a, "mva", "10.62.0.11/24").unwrap();
    assert_eq!(ping(&lab, &a, "10.62.0.1", 2), (2, 0));
    // (bpftool 7.1 does not list tcx links: ask the kernel directly, from the namespace.)
    let tcx = || {
        umacvlan_io::NetnsHandle::from_name(&host)
            .unwrap()
            .run_in(|| umacvlan_io::bpf::tcx_ingress_programs("eth0").unwrap())
            .unwrap()
    };
    assert_eq!(
        tcx(),
        ["umv_lower_ingre"],
        "(the kernel keeps 15 bytes of a name)"
    );

    lab.stop_daemon("KILL");
    wait_for("the veths, the macvlan and the programs to go", || {
        let host_links = lab::must(&["ip", "-n", &host, "-o", "link", "show"]).unwrap();
        let a_links = lab::must(&["ip", "-n", &a, "-o", "link", "show"]).unwrap();
        host_links.lines().count() == 2
            && !a_links.contains("mva")
            && tcx().is_empty()
            && promiscuity(&host, "eth0") == promisc_before
    });

    let t0 = Instant::now();
    lab.start_daemon(&host, &args).unwrap();
    wait_for("the macvlan to be restored", || {
        lab::run(&["ip", "-n", &a, "link", "show", "mva"]).ok()
    });
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "restored in {took:?}");
    lab.addr(&a, "mva", "10.62.0.11/24").unwrap();
    assert_eq!(ping(&lab, &a, "10.62.0.1", 2), (2, 0));
    let _ = std::fs::remove_file(&state);
}

/// A lower moved to another namespace, where the programs cannot reach the hidden ends: its
/// program leaves it (also when the move happens while the daemon is stopped), and its
/// macvlans stay and keep reaching the wire through the userspace data plane, as the kernel's
/// macvlans keep working through a moved lower, with their counters carried on.
#[test]
fn a_lower_moved_away_keeps_its_bpf_macvlans_on_the_userspace_path_and_no_program() {
    need_root!();
    let mut lab = Lab::new("fp-move", std::path::Path::new(BIN));
    let host = lab.ns("host").unwrap();
    let ext = lab.ns("ext").unwrap();
    let away = lab.ns("away").unwrap();
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    lab.addr(&ext, "eth0", "10.63.0.1/24").unwrap();
    lab.start_daemon(&host, &["--datapath", "bpf"]).unwrap();
    let a = lab.ns("a").unwrap();
    lab.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mva", "netns", &a, "type", "macvlan", "mode",
        "bridge",
    ])
    .unwrap();
    lab.addr(&a, "mva", "10.63.0.11/24").unwrap();
    assert_eq!(ping(&lab, &a, "10.63.0.1", 2), (2, 0));
    let rx_packets = || -> u64 {
        let j = lab.cli_ok(&["-j", "-s", "link", "show", "mva"]).unwrap();
        serde_json::from_str::<serde_json::Value>(&j).unwrap()[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap()
    };
    let rx_before = rx_packets();
    assert!(rx_before >= 2, "{rx_before}");
    let tcx = |ns: &str| {
        umacvlan_io::NetnsHandle::from_name(ns)
            .unwrap()
            .run_in(|| umacvlan_io::bpf::tcx_ingress_programs("eth0").unwrap())
            .unwrap()
    };
    let pid = lab.daemon_pid().unwrap().to_string();
    lab::must(&["kill", "-STOP", &pid]).unwrap();
    let moved = lab::run(&["ip", "-n", &host, "link", "set", "eth0", "netns", &away]);
    let attached_while_stopped = moved.ok().then(|| tcx(&away));
    lab::must(&["kill", "-CONT", &pid]).unwrap();
    assert!(moved.ok(), "{moved:?}");
    eprintln!(
        "tcx ingress on the moved lower before the daemon saw it: {attached_while_stopped:?}"
    );
    wait_for(
        "the program to leave the moved lower, the move followed",
        || {
            tcx(&away).is_empty()
                && lab
                    .cli_ok(&["-j", "link", "show", "mva"])
                    .is_ok_and(|j| j.contains(&format!("\"link_netns\":\"{away}\"")))
        },
    );
    assert!(
        lab.daemon_log()
            .contains("continue on the userspace data path"),
        "{}",
        lab.daemon_log()
    );
    let d = lab.cli_ok(&["-d", "link", "show", "mva"]).unwrap();
    assert!(!d.contains("datapath bpf"), "{d}");
    // The move took the lower down; up again, the macvlan reaches the wire through it.
    lab::must(&["ip", "-n", &away, "link", "set", "eth0", "up"]).unwrap();
    let (got, dups) = ping(&lab, &a, "10.63.0.1", 3);
    assert!(
        got >= 2 && dups == 0,
        "{got} received, {dups} duplicates\n{}",
        lab.daemon_log()
    );
    assert!(rx_packets() >= rx_before + 2, "counters carried on");
    lab.cli_ok(&["link", "del", "mva"]).unwrap();
    wait_for("the macvlan and its veth to go", || {
        let host_links = lab::must(&["ip", "-n", &host, "-o", "link", "show"]).unwrap();
        let a_links = lab::must(&["ip", "-n", &a, "-o", "link", "show"]).unwrap();
        host_links.lines().count() == 1 && !a_links.contains("mva")
    });
}
