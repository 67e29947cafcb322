//! The daemon on real devices, as root, each test in its own namespaces (removed on failure
//! too). A lower veth whose peer is an "external host"; macvlans in their own namespaces.

use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

mod common;
use common::*;

#[test]
fn bridge_vepa_private_reach_exactly_whom_the_kernel_lets_them() {
    need_root!();
    let (mut lab, _host, ext) = base("d-modes", true);
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let b = macvlan(&mut lab, "mvb", &["mode", "bridge"], 12);
    let v = macvlan(&mut lab, "mvv", &["mode", "vepa"], 13);
    let p = macvlan(&mut lab, "mvp", &["mode", "private"], 14);
    // Both ways with the external host, for every mode.
    for ns in [&a, &b, &v, &p] {
        assert!(lab.ping(ns, "10.50.0.1", 2), "{ns} → ext");
    }
    for ip in ["10.50.0.11", "10.50.0.12", "10.50.0.13", "10.50.0.14"] {
        assert!(lab.ping(&ext, ip, 2), "ext → {ip}");
    }
    // bridge ↔ bridge locally; bridge ↔ vepa through the hairpin switch.
    assert!(lab.ping(&a, "10.50.0.12", 2));
    assert!(lab.ping(&v, "10.50.0.11", 2));
    // Private is isolated from its siblings.
    assert!(!lab.ping(&p, "10.50.0.11", 1));
    assert!(!lab.ping(&a, "10.50.0.14", 1));
    // TCP both ways between two macvlans and with the external host.
    for (server, client, ip) in [
        (&b, &a, "10.50.0.12"),
        (&ext, &v, "10.50.0.1"),
        (&a, &ext, "10.50.0.11"),
    ] {
        lab.exec_ok(server, &["iperf3", "-s", "-1", "-D", "-p", "5301"])
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let r = lab.exec(
            client,
            &[
                "timeout",
                "10",
                "iperf3",
                "-c",
                ip,
                "-p",
                "5301",
                "-t",
                "1",
                "-J",
                "--connect-timeout",
                "2000",
            ],
        );
        assert!(r.ok(), "iperf3 {client} → {ip}: {}{}", r.stderr, r.stdout);
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let bps = j["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(bps > 1e6, "TCP {client} → {ip} at {bps} bit/s");
    }
    // Counters are the macvlan's own: mva sent and received.
    let v = show_json(&lab);
    let mva = link(&v, "mva");
    assert!(mva["stats64"]["rx"]["packets"].as_u64().unwrap() > 0);
    assert!(mva["stats64"]["tx"]["packets"].as_u64().unwrap() > 0);
    assert_eq!(mva["linkinfo"]["info_data"]["mode"], "bridge");
}

#[test]
fn passthru_and_source_modes_on_real_devices() {
    need_root!();
    let (mut lab, host, ext) = base("d-pt", false);
    // Source mode: receives what the external host sends, whatever the destination.
    let s = macvlan(&mut lab, "mvs", &["mode", "source"], 21);
    let ext_mac = lab::must(&["ip", "-n", &ext, "-j", "link", "show", "eth0"]).unwrap();
    let ext_mac = serde_json::from_str::<serde_json::Value>(&ext_mac).unwrap()[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    lab.cli_ok(&[
        "link", "set", "mvs", "type", "macvlan", "macaddr", "add", &ext_mac,
    ])
    .unwrap();
    let v = show_json(&lab);
    assert_eq!(link(&v, "mvs")["linkinfo"]["info_data"]["macaddr_count"], 1);
    let before = link(&v, "mvs")["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap();
    // Anything the external host sends (here: ARP for an unused address) is copied to mvs.
    let _ = lab.exec(&ext, &["ping", "-c", "2", "-W", "1", "10.50.0.99"]);
    let after = link(&show_json(&lab), "mvs")["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap();
    assert!(
        after > before,
        "source-mode copies counted ({before} → {after})"
    );
    let _ = s;
    lab.cli_ok(&["link", "del", "mvs"]).unwrap();

    // Passthru: takes the lower's MAC, puts the lower in promiscuous mode while up (unless
    // nopromisc), and gets everything; a second macvlan on that lower is refused.
    let base_promisc = promiscuity(&host, "eth0");
    let pt = macvlan(&mut lab, "mvpt", &["mode", "passthru"], 31);
    let lower_mac = serde_json::from_str::<serde_json::Value>(
        &lab::must(&["ip", "-n", &host, "-j", "link", "show", "eth0"]).unwrap(),
    )
    .unwrap()[0]["address"]
        .clone();
    assert_eq!(link(&show_json(&lab), "mvpt")["address"], lower_mac);
    assert!(promiscuity(&host, "eth0") > base_promisc);
    assert!(lab.ping(&pt, "10.50.0.1", 2));
    assert!(lab.ping(&ext, "10.50.0.31", 2));
    let r = lab.cli(&[
        "link", "add", "link", "eth0", "name", "mvx", "type", "macvlan", "mode", "bridge",
    ]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (2, "RTNETLINK answers: Invalid argument")
    );
    // iproute2 accepts nopromisc only with `mode passthru` on the same line.
    lab.cli_ok(&[
        "link",
        "set",
        "mvpt",
        "type",
        "macvlan",
        "mode",
        "passthru",
        "flag",
        "nopromisc",
    ])
    .unwrap();
    wait_for("promiscuity back to its base", || {
        promiscuity(&host, "eth0") == base_promisc
    });
}

#[test]
fn lower_down_carrier_off_and_lower_deleted_removes_macvlans() {
    need_root!();
    let (mut lab, host, _ext) = base("d-lower", false);
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    // The TAP's carrier: LOWER_UP while the lower has carrier, NO-CARRIER otherwise.
    let flags = || {
        lab::must(&["ip", "-n", &a, "-j", "link", "show", "mva"])
            .map(|o| serde_json::from_str::<serde_json::Value>(&o).unwrap()[0]["flags"].clone())
            .unwrap()
    };
    let has = |v: &serde_json::Value, f: &str| v.as_array().unwrap().iter().any(|x| x == f);
    wait_for("carrier on the TAP", || has(&flags(), "LOWER_UP"));
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "down"]).unwrap();
    wait_for("carrier off on the TAP", || has(&flags(), "NO-CARRIER"));
    // In its own namespace the kernel finds no lower to blame: DOWN, not LOWERLAYERDOWN.
    assert_eq!(link(&show_json(&lab), "mva")["operstate"], "DOWN");
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "up"]).unwrap();
    wait_for("carrier back", || has(&flags(), "LOWER_UP"));
    // Lower MTU lowered: the macvlan follows; raised: it does not.
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "mtu", "1400"]).unwrap();
    wait_for("mtu follows", || {
        link(&show_json(&lab), "mva")["mtu"] == 1400
    });
    lab::must(&["ip", "-n", &host, "link", "del", "eth0"]).unwrap();
    wait_for("macvlan gone with its lower", || {
        show_json(&lab).as_array().unwrap().is_empty()
            && !lab::run(&["ip", "-n", &a, "link", "show", "mva"]).ok()
    });
}

#[test]
fn plain_iproute2_changes_to_the_tap_are_followed_or_refused() {
    need_root!();
    let (mut lab, host, _ext) = base("d-follow", false);
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let b = macvlan(&mut lab, "mvb", &["mode", "bridge"], 12);
    lab::must(&["ip", "-n", &a, "link", "set", "mva", "mtu", "1280"]).unwrap();
    lab::must(&[
        "ip",
        "-n",
        &a,
        "link",
        "set",
        "mva",
        "address",
        "02:50:00:00:00:11",
    ])
    .unwrap();
    wait_for("mtu and address followed", || {
        let v = show_json(&lab);
        link(&v, "mva")["mtu"] == 1280 && link(&v, "mva")["address"] == "02:50:00:00:00:11"
    });
    // Taking a sibling's address is refused as the kernel refuses it (EADDRINUSE): the TAP
    // gets its old address back.
    lab::must(&[
        "ip",
        "-n",
        &b,
        "link",
        "set",
        "mvb",
        "address",
        "02:50:00:00:00:11",
    ])
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = lab::must(&["ip", "-n", &b, "-j", "link", "show", "mvb"]).unwrap();
    assert_ne!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["address"],
        "02:50:00:00:00:11"
    );
    // MTU above the lower's is refused and put back.
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "mtu", "1500"]).unwrap();
    lab::must(&["ip", "-n", &a, "link", "set", "mva", "mtu", "2000"]).unwrap();
    wait_for("mtu put back", || {
        lab::must(&["ip", "-n", &a, "link", "show", "mva"])
            .unwrap()
            .contains("mtu 1280")
    });
    // Down by hand: the engine sees it.
    lab::must(&["ip", "-n", &a, "link", "set", "mva", "down"]).unwrap();
    wait_for("down followed", || {
        link(&show_json(&lab), "mva")["operstate"] == "DOWN"
    });
    // And moved by hand to another namespace: still ours, found there.
    let c = lab.ns("moved").unwrap();
    lab::must(&["ip", "-n", &a, "link", "set", "mva", "netns", &c]).unwrap();
    wait_for("move followed", || {
        link(&show_json(&lab), "mva")["link_netns"] == c.as_str()
    });
    lab::must(&["ip", "-n", &c, "link", "set", "mva", "up"]).unwrap();
    wait_for("up in the new namespace", || {
        link(&show_json(&lab), "mva")["operstate"] == "UP"
    });
}

#[test]
fn sigterm_and_sigkill_leave_no_tap_and_restore_the_lower() {
    need_root!();
    for signal in ["TERM", "KILL"] {
        let (mut lab, host, _ext) = base(&format!("d-{}", signal.to_lowercase()), false);
        let base_promisc = promiscuity(&host, "eth0");
        let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
        let p = macvlan(&mut lab, "mvp", &["mode", "private"], 12);
        wait_for("filters applied", || {
            promiscuity(&host, "eth0") > base_promisc
        });
        lab.stop_daemon(signal);
        wait_for("TAPs gone", || {
            !lab::run(&["ip", "-n", &a, "link", "show", "mva"]).ok()
                && !lab::run(&["ip", "-n", &p, "link", "show", "mvp"]).ok()
        });
        wait_for("lower promiscuity restored", || {
            promiscuity(&host, "eth0") == base_promisc
        });
    }
}

#[test]
fn state_file_restores_every_macvlan_after_a_crash() {
    need_root!();
    let (mut lab, host, ext) = base("d-state", false);
    let state = std::env::temp_dir().join(format!("{}.state.json", lab.prefix()));
    lab.stop_daemon("TERM");
    lab.start_daemon(&host, &["--state", state.to_str().unwrap()])
        .unwrap();
    let a = macvlan(&mut lab, "mva", &["mode", "bridge", "bcqueuelen", "77"], 11);
    macvlan(&mut lab, "mvs", &["mode", "source", "nodst"], 12);
    lab.cli_ok(&[
        "link",
        "set",
        "mvs",
        "type",
        "macvlan",
        "macaddr",
        "set",
        "02:aa:00:00:00:01",
        "02:aa:00:00:00:02",
    ])
    .unwrap();
    lab.cli_ok(&["link", "set", "mva", "mtu", "1400"]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = show_json(&lab);
    lab.stop_daemon("KILL");
    let t0 = Instant::now();
    lab.start_daemon(&host, &["--state", state.to_str().unwrap()])
        .unwrap();
    wait_for("both restored", || {
        show_json(&lab).as_array().unwrap().len() == 2
    });
    // Issue 8's bound, process start included (typically tens of milliseconds).
    eprintln!("restored in {:?}", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "restored in {:?}",
        t0.elapsed()
    );
    let after = show_json(&lab);
    for name in ["mva", "mvs"] {
        let (b, a) = (link(&before, name), link(&after, name));
        for key in ["address", "mtu", "linkinfo", "link_netns"] {
            assert_eq!(b[key], a[key], "{name}.{key}");
        }
    }
    // The macvlan's namespace kept its address configuration? No: a new TAP is a new device;
    // the address is re-added, as after a reboot, and traffic resumes.
    let _ = lab.exec(&a, &["ip", "addr", "add", "10.50.0.11/24", "dev", "mva"]);
    let _ = lab.exec(&a, &["ip", "link", "set", "mva", "up"]);
    assert!(lab.ping(&ext, "10.50.0.11", 2));
    let _ = std::fs::remove_file(state);
}

#[test]
fn control_errors_come_back_like_iproute2_and_change_nothing() {
    need_root!();
    let (mut lab, _host, _ext) = base("d-errors", false);
    macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let before = show_json(&lab);
    for (args, code, text) in [
        (
            vec![
                "link", "add", "link", "eth0", "name", "mva", "type", "macvlan",
            ],
            2,
            "RTNETLINK answers: File exists",
        ),
        (
            vec![
                "link", "add", "link", "nosuch", "name", "mvz", "type", "macvlan",
            ],
            1,
            "Cannot find device \"nosuch\"",
        ),
        (
            vec![
                "link", "add", "link", "eth0", "name", "mvz", "mtu", "9000", "type", "macvlan",
            ],
            2,
            "RTNETLINK answers: Invalid argument",
        ),
        (
            vec!["link", "set", "mva", "type", "macvlan", "mode", "passthru"],
            2,
            "RTNETLINK answers: Invalid argument",
        ),
        (
            vec![
                "link",
                "set",
                "mva",
                "type",
                "macvlan",
                "macaddr",
                "add",
                "02:00:00:00:00:09",
            ],
            2,
            "RTNETLINK answers: Invalid argument",
        ),
        (
            vec!["link", "set", "mva", "mtu", "60"],
            2,
            "Error: mtu less than device minimum.",
        ),
    ] {
        let r = lab.cli(&args);
        assert_eq!(
            (r.code, r.stderr.trim()),
            (code, text),
            "umacvlan {}",
            args.join(" ")
        );
    }
    assert_eq!(show_json(&lab)[0]["linkinfo"], before[0]["linkinfo"]);
    assert_eq!(show_json(&lab)[0]["mtu"], before[0]["mtu"]);
}

#[test]
fn the_counter_views_agree() {
    need_root!();
    let mut lab = Lab::new("d-views", std::path::Path::new(BIN));
    let host = lab.ns("host").unwrap();
    let ext = lab.ns("ext").unwrap();
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    lab.addr(&ext, "eth0", "10.50.0.1/24").unwrap();
    lab.start_daemon(&host, &["--metrics", "127.0.0.1:9478"])
        .unwrap();
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    assert!(lab.ping(&a, "10.50.0.1", 3));
    let link_json = show_json(&lab);
    let rx = link(&link_json, "mva")["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap();
    assert!(rx >= 3);
    // The sysfs-like tree (rewritten within a second).
    let tree = format!("{}.net/mva/statistics/rx_packets", lab.socket().display());
    wait_for("tree written", || {
        std::fs::read_to_string(&tree).is_ok_and(|t| t.trim() == rx.to_string())
    });
    // /proc/net/dev layout.
    let table = lab.cli_ok(&["stats"]).unwrap();
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("mva:"))
        .expect("mva row");
    assert_eq!(
        row.split_whitespace().nth(2).unwrap(),
        rx.to_string(),
        "{table}"
    );
    // Prometheus, from inside the daemon's namespace (it binds that namespace's loopback).
    let ns = umacvlan_io::netns::NetnsHandle::from_name(&host).unwrap();
    let body = ns
        .run_in(|| {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect("127.0.0.1:9478").unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        })
        .unwrap();
    let want = format!(
        "node_network_receive_packets_total{{device=\"mva\",lower=\"eth0\",mode=\"bridge\"}} {rx}"
    );
    assert!(body.contains(&want), "{want} not in:\n{body}");
    assert!(body.contains("umacvlan_port_drops_total{lower=\"eth0\",reason=\"malformed\"} 0"));
    assert!(body.contains("umacvlan_port_drops_total{lower=\"eth0\",reason=\"socket\"} 0"));
}

#[test]
fn an_unprivileged_user_is_refused_like_ip_refuses_it() {
    need_root!();
    if !lab::run(&["id", "nobody"]).ok() {
        lab::skip_root_test("no user `nobody`");
        return;
    }
    let (mut lab, _host, _ext) = base("d-access", false);
    macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    // The binary must be runnable by `nobody`: copy it somewhere world-readable.
    let bin = std::env::temp_dir().join(format!("{}.umacvlan", lab.prefix()));
    std::fs::copy(BIN, &bin).unwrap();
    let sock = lab.socket().display().to_string();
    let as_nobody = |words: &str| {
        lab::run(&[
            "su",
            "nobody",
            "-s",
            "/bin/sh",
            "-c",
            &format!("{} --socket {sock} {words}", bin.display()),
        ])
    };
    // The socket is root's (0600): refused at connect, reported as rtnetlink reports it.
    let r = as_nobody("link add link eth0 name mvz type macvlan");
    assert_eq!(
        (r.code, r.stderr.trim()),
        (2, "RTNETLINK answers: Operation not permitted")
    );
    // Opened up by an administrator: reading works, changing is still refused by the daemon.
    lab::must(&["chmod", "0666", &sock]).unwrap();
    let r = as_nobody("link show mva");
    assert!(r.ok() && r.stdout.contains("mva@"), "{r:?}");
    let r = as_nobody("link del mva");
    assert_eq!(
        (r.code, r.stderr.trim()),
        (2, "RTNETLINK answers: Operation not permitted")
    );
    assert_eq!(
        show_json(&lab).as_array().unwrap().len(),
        1,
        "nothing changed"
    );
    let _ = std::fs::remove_file(bin);
}

#[test]
fn sigkill_under_traffic_leaves_the_lowers_filters_as_they_were() {
    need_root!();
    let (mut lab, host, ext) = base("d-crash", false);
    let promisc_before = promiscuity(&host, "eth0");
    let groups_before = lower_groups(&host, "eth0");
    let fdb_before = lower_fdb(&host, "eth0");
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    // A group joined inside the macvlan's namespace reaches the lower's filter.
    lab::must(&[
        "ip",
        "-n",
        &a,
        "maddr",
        "add",
        "01:00:5e:01:02:03",
        "dev",
        "mva",
    ])
    .unwrap();
    wait_for("group on the lower", || {
        lower_groups(&host, "eth0")
            .iter()
            .any(|g| g == "01:00:5e:01:02:03")
    });
    assert!(promiscuity(&host, "eth0") > promisc_before);
    // The macvlan's MAC is in the lower's unicast filter.
    let mac = link(&show_json(&lab), "mva")["address"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("unicast address on the lower", || {
        lower_fdb(&host, "eth0").iter().any(|e| e.starts_with(&mac))
    });
    // Traffic through the daemon while it dies.
    let mut flood = std::process::Command::new("ip")
        .args(["netns", "exec", &ext, "ping", "-f", "-w", "5", "10.50.0.11"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    lab.stop_daemon("KILL");
    wait_for("TAP gone", || {
        !lab::run(&["ip", "-n", &a, "link", "show", "mva"]).ok()
    });
    wait_for("promiscuity as before", || {
        promiscuity(&host, "eth0") == promisc_before
    });
    wait_for("multicast filter as before", || {
        lower_groups(&host, "eth0") == groups_before
    });
    wait_for("unicast filter as before", || {
        lower_fdb(&host, "eth0") == fdb_before
    });
    let _ = flood.kill();
    let _ = flood.wait();
}

#[test]
fn link_set_netns_moves_the_macvlan_and_traffic_follows() {
    need_root!();
    let (mut lab, _host, ext) = base("d-move", false);
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let b = lab.ns("elsewhere").unwrap();
    lab.cli_ok(&["link", "set", "mva", "netns", &b]).unwrap();
    assert!(
        !lab::run(&["ip", "-n", &a, "link", "show", "mva"]).ok(),
        "gone from its old namespace"
    );
    assert_eq!(link(&show_json(&lab), "mva")["link_netns"], b.as_str());
    // A device moved between namespaces loses its addresses, as with the kernel's macvlans.
    lab.addr(&b, "mva", "10.50.0.11/24").unwrap();
    assert!(lab.ping(&b, "10.50.0.1", 2));
    assert!(lab.ping(&ext, "10.50.0.11", 2));
    // Moving to a namespace that does not exist changes nothing.
    let r = lab.cli(&["link", "set", "mva", "netns", "umv-no-such-namespace"]);
    assert_ne!(r.code, 0);
    assert_eq!(link(&show_json(&lab), "mva")["link_netns"], b.as_str());
}

/// The daemon's CPU time (user + system) in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_tap_deleted_with_ip_is_removed_as_the_kernel_removes_its_macvlan_and_nothing_spins() {
    need_root!();
    let (mut lab, _host, ext) = base("d-tapdel", false);
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let b = macvlan(&mut lab, "mvb", &["mode", "bridge"], 12);
    assert!(lab.ping(&ext, "10.50.0.11", 1));
    // Traffic towards mva keeps coming while it is deleted under the daemon.
    let mut flood = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ext,
            "ping",
            "-q",
            "-i",
            "0.002",
            "-w",
            "3",
            "10.50.0.11",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    lab::must(&["ip", "-n", &a, "link", "del", "mva"]).unwrap();
    wait_for("mva removed", || {
        show_json(&lab)
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "mva")
    });
    // As a kernel macvlan deleted with `ip link del`: gone, its siblings untouched.
    let pid = lab.daemon_pid().unwrap();
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - t0;
    // 100 ticks = one core for the second; a spinning worker would take most of one.
    assert!(
        used < 30,
        "daemon used {used} ticks in one second after the deletion"
    );
    let _ = flood.wait();
    assert!(lab.ping(&b, "10.50.0.1", 2), "mvb still forwards");
    assert!(lab.ping(&ext, "10.50.0.12", 2));
    let log = lab.daemon_log();
    assert!(log.contains("macvlan removed"), "{log}");
}

#[test]
fn link_set_failing_midway_puts_everything_back() {
    need_root!();
    // The TAP path whatever UMACVLAN_DATAPATH says: the failing step is a TAP's MTU limit (a
    // veth has none).
    let (mut lab, host, _ext) = base_with("d-undo", false, &["--datapath", "tap"]);
    // A lower whose MTU allows more than a TAP can take (65521): the engine accepts MTU
    // 65530, the TAP refuses it — after the lower's address has changed and the TAP moved.
    let a = macvlan(&mut lab, "mvpt", &["mode", "passthru"], 11);
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "mtu", "65535"]).unwrap();
    let other = lab.ns("other").unwrap();
    let lower_mac = |_: &Lab| {
        let out = lab::must(&["ip", "-n", &host, "-j", "link", "show", "eth0"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["address"].as_str().unwrap().to_string()
    };
    let before_mac = lower_mac(&lab);
    let before = show_json(&lab);
    let r = lab.cli(&[
        "link",
        "set",
        "mvpt",
        "address",
        "02:11:22:33:44:55",
        "netns",
        &other,
        "mtu",
        "65530",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    // Nothing changed: the lower's address, where the TAP lives, its address and MTU.
    assert_eq!(lower_mac(&lab), before_mac);
    assert!(
        lab.exec(&a, &["ip", "link", "show", "mvpt"]).ok(),
        "mvpt left {a}: {}",
        lab.daemon_log()
    );
    assert!(!lab.exec(&other, &["ip", "link", "show", "mvpt"]).ok());
    let after = show_json(&lab);
    assert_eq!(
        link(&after, "mvpt")["address"],
        link(&before, "mvpt")["address"]
    );
    assert_eq!(link(&after, "mvpt")["mtu"], link(&before, "mvpt")["mtu"]);
    assert_eq!(
        link(&after, "mvpt")["linkinfo"],
        link(&before, "mvpt")["linkinfo"]
    );
    let out = lab::must(&["ip", "-n", &a, "-j", "link", "show", "mvpt"]).unwrap();
    let tap: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tap[0]["address"].as_str().unwrap(), before_mac);
    assert_eq!(tap[0]["mtu"], link(&before, "mvpt")["mtu"]);
    // It never left: its address in its namespace is there, and it still forwards.
    assert!(lab.ping(&a, "10.50.0.1", 2));
    // On this lower a new macvlan takes the most a TAP can take (a listed deviation: the
    // kernel's would take the lower's 65535).
    lab.cli_ok(&["link", "del", "mvpt"]).unwrap();
    lab.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mvbig", "type", "macvlan",
    ])
    .unwrap();
    assert_eq!(link(&show_json(&lab), "mvbig")["mtu"], 65521);
}

#[test]
fn a_batch_goes_pipelined_stops_at_its_first_error_and_is_durable() {
    need_root!();
    let (mut lab, host, _ext) = base("d-batch", false);
    let state = std::env::temp_dir().join(format!("{}.state.json", lab.prefix()));
    lab.stop_daemon("TERM");
    lab.start_daemon(&host, &["--state", state.to_str().unwrap()])
        .unwrap();
    let c = lab.ns("c").unwrap();
    let file = std::env::temp_dir().join(format!("{}.batch", lab.prefix()));
    let add =
        |n: &str| format!("link add link eth0 name {n} netns {c} up type macvlan mode bridge");
    // Line 5 fails (the name is taken): ip stops there, so mvb9 must not exist although a
    // pipelining client has already sent it.
    let text = [
        "# a comment".to_string(),
        add("mvb0"),
        add("mvb1"),
        String::new(),
        add("mvb0"),
        add("mvb9"),
    ]
    .join("\n");
    std::fs::write(&file, text).unwrap();
    let r = lab.cli(&["-batch", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("Command failed {}:5", file.display())),
        "{}",
        r.stderr
    );
    let names: Vec<String> = show_json(&lab)
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["mvb0", "mvb1"]);
    // Answered means durable: the state file already holds both.
    assert_eq!(saved_names(&state), ["mvb0", "mvb1"]);
    // -force goes on past the error (exit 1 still); `-batch -` reads standard input.
    let mut child = std::process::Command::new(BIN)
        .args([
            "--socket",
            lab.socket().to_str().unwrap(),
            "-force",
            "-batch",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let input = format!("{}\n{}\nlink del mvb1\n", add("mvb0"), add("mvb9"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Command failed -:1"));
    lab::must(&["ip", "-n", &c, "link", "show", "mvb9"]).unwrap();
    assert!(lab::must(&["ip", "-n", &c, "link", "show", "mvb1"]).is_err());
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(state);
}
