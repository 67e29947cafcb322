//! `hostaccess on|off` beside the kernel macvlan. "The host" is the lower's own namespace
//! using the lower itself (10.50.0.10/24 on eth0); each macvlan lives in its own namespace.
//!
//! - The kernel: the host cannot ping its macvlan, nor the macvlan the host (frames leave on
//!   the wire; a macvlan sees only the lower's receive path).
//! - umacvlan with `hostaccess off` (the default): exactly the same.
//! - `hostaccess on`: ping both ways, ARP resolved both ways, a TCP exchange, a broadcast
//!   from the host; with a hairpin switch on the far side no duplicate (`ping` prints `DUP!`);
//!   `hostaccess off` takes effect at once; the hidden device has no address and goes with
//!   the daemon (SIGKILL).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use umacvlan_io::netns::NetnsHandle;
use umacvlan_lab::lab::Lab;

const HOST_IP: &str = "10.50.0.10";

/// host (lower eth0 with 10.50.0.10/24) ↔ ext (10.50.0.1, plain or behind a hairpin bridge);
/// with `daemon`, a umacvlan daemon in the host namespace.
fn topology(tag: &str, hairpin: bool, daemon: bool) -> (Lab, String, String) {
    let (mut lab, host, ext) = host_and_ext(tag, hairpin);
    lab.addr(&host, "eth0", &format!("{HOST_IP}/24")).unwrap();
    if daemon {
        // The lab's data path (UMACVLAN_DATAPATH; CI runs this suite on both).
        lab.start_daemon(&host, &["--log", "debug"]).unwrap();
    }
    (lab, host, ext)
}

/// A kernel macvlan `name` on the host's eth0, moved to its own namespace, 10.50.0.`last`.
fn kernel_macvlan(lab: &mut Lab, host: &str, name: &str, mode: &str, last: u8) -> String {
    let ns = lab.ns(name).unwrap();
    lab.exec_ok(
        host,
        &[
            "ip", "link", "add", "link", "eth0", "name", name, "netns", &ns, "type", "macvlan",
            "mode", mode,
        ],
    )
    .unwrap();
    lab.addr(&ns, name, &format!("10.50.0.{last}/24")).unwrap();
    ns
}

/// `count` pings; the output (with `DUP!` lines) and whether every echo was answered.
fn ping(lab: &Lab, ns: &str, dst: &str, count: u32) -> (bool, String) {
    let r = lab.ping_run(ns, dst, count);
    (r.ok(), format!("{}{}", r.stdout, r.stderr))
}

/// The lines `umacvlan monitor` prints while `during` runs (it subscribes first: the
/// monitor's own start is waited for with a probe of the control socket).
fn watch(lab: &Lab, during: impl FnOnce()) -> Vec<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(lab.socket())
        .arg("monitor")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    // The subscription is made when the monitor connects; give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    during();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    rx.try_iter().collect()
}

/// The MAC `ip neigh` has for `ip` on `dev` in `ns`, if resolved.
fn neigh(lab: &Lab, ns: &str, dev: &str, ip: &str) -> Option<String> {
    let out = lab
        .exec(ns, &["ip", "neigh", "show", ip, "dev", dev])
        .stdout;
    let mut w = out.split_whitespace();
    while let Some(x) = w.next() {
        if x == "lladdr" {
            return w.next().map(str::to_string);
        }
    }
    None
}

fn mac_of(lab: &Lab, ns: &str, dev: &str) -> String {
    lab.exec_ok(ns, &["cat", &format!("/sys/class/net/{dev}/address")])
        .unwrap()
        .trim()
        .to_string()
}

/// A TCP exchange: a listener in `server_ns` on `server_ip`, a client in `client_ns`; the
/// server echoes 100 KiB back (several segments both ways, checksums offloaded).
fn tcp_exchange(server_ns: &str, server_ip: &str, client_ns: &str) -> Result<(), String> {
    let listener = NetnsHandle::from_name(server_ns)
        .unwrap()
        .run_in(|| TcpListener::bind((server_ip, 0)))
        .unwrap()
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 100 * 1024];
        s.read_exact(&mut buf)?;
        s.write_all(&buf)?;
        Ok(())
    });
    let addr = format!("{server_ip}:{port}");
    let mut c = NetnsHandle::from_name(client_ns)
        .unwrap()
        .run_in(|| TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)))
        .unwrap()
        .map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let data: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    c.write_all(&data).map_err(|e| format!("send: {e}"))?;
    let mut back = vec![0u8; data.len()];
    c.read_exact(&mut back)
        .map_err(|e| format!("receive: {e}"))?;
    server.join().unwrap().map_err(|e| format!("server: {e}"))?;
    if back != data {
        return Err("echoed bytes differ".into());
    }
    Ok(())
}

/// A UDP broadcast from the host's stack (to 10.50.0.255) reaches a socket in `ns`.
fn broadcast_reaches(host: &str, ns: &str) -> bool {
    let rx = NetnsHandle::from_name(ns)
        .unwrap()
        .run_in(|| UdpSocket::bind(("0.0.0.0", 5999)))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = NetnsHandle::from_name(host)
        .unwrap()
        .run_in(|| UdpSocket::bind((HOST_IP, 0)))
        .unwrap()
        .unwrap();
    tx.set_broadcast(true).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..10 {
        tx.send_to(b"hostaccess-bcast", ("10.50.0.255", 5999))
            .unwrap();
        if let Ok((n, _)) = rx.recv_from(&mut buf) {
            if &buf[..n] == b"hostaccess-bcast" {
                return true;
            }
        }
    }
    false
}

/// The daemon's hidden devices (`uvh…`) in `ns`.
fn hidden_devices(lab: &Lab, ns: &str) -> Vec<String> {
    lab.exec(ns, &["ip", "-o", "link", "show"])
        .stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("uvh"))
        .collect()
}

/// Whether the hidden devices are gone within `secs` (the last view holding a hidden device's
/// descriptor can outlive the answer by a few milliseconds: a worker drops it on its next
/// round).
fn hidden_devices_gone(lab: &Lab, ns: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !hidden_devices(lab, ns).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn kernel_isolates_the_host_and_so_does_hostaccess_off() {
    need_root!();
    // The oracle.
    let (mut k, khost, _kext) = topology("ha-kern", false, false);
    let kmv = kernel_macvlan(&mut k, &khost, "kmv", "bridge", 21);
    assert!(
        !ping(&k, &khost, "10.50.0.21", 2).0,
        "kernel: host reached its macvlan"
    );
    assert!(
        !ping(&k, &kmv, HOST_IP, 2).0,
        "kernel: macvlan reached its host"
    );

    // umacvlan, default (off): the same.
    let (mut u, uhost, _uext) = topology("ha-off", false, true);
    let umv = macvlan(&mut u, "umv", &["mode", "bridge"], 21);
    assert!(
        !ping(&u, &uhost, "10.50.0.21", 2).0,
        "hostaccess off: host reached the macvlan"
    );
    assert!(
        !ping(&u, &umv, HOST_IP, 2).0,
        "hostaccess off: macvlan reached the host"
    );
    assert!(
        hidden_devices(&u, &uhost).is_empty(),
        "a hidden device without hostaccess"
    );
    let d = u.cli_ok(&["-d", "link", "show", "umv"]).unwrap();
    assert!(!d.contains("hostaccess"), "off is not shown: {d}");
    // Both still reach the outside world.
    assert!(ping(&k, &kmv, "10.50.0.1", 2).0);
    assert!(ping(&u, &umv, "10.50.0.1", 2).0);
}

#[test]
fn hostaccess_on_reaches_both_ways_and_off_stops_at_once() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-on", false, true);
    let mv = macvlan(&mut lab, "mv", &["mode", "vepa", "hostaccess", "on"], 22);
    let d = lab.cli_ok(&["-d", "link", "show", "mv"]).unwrap();
    assert!(d.contains("hostaccess on"), "{d}");
    let j = show_json(&lab);
    assert_eq!(
        link(&j, "mv")["linkinfo"]["info_data"]["hostaccess"],
        true,
        "{j}"
    );

    // The hidden device: one, no address, no IPv6 link-local.
    let hidden = hidden_devices(&lab, &host);
    assert_eq!(hidden.len(), 1, "{hidden:?}");
    let addrs = lab
        .exec_ok(&host, &["ip", "-o", "addr", "show", "dev", &hidden[0]])
        .unwrap();
    assert!(
        addrs.trim().is_empty(),
        "the hidden device has addresses: {addrs}"
    );

    // The monitor names both directions' rules while the pings run.
    let mut seen = Vec::new();
    let monitor = watch(&lab, || {
        let (ok, out) = ping(&lab, &host, "10.50.0.22", 3);
        assert!(ok, "host → macvlan: {out}\n{}", lab.daemon_log());
        let (ok, out) = ping(&lab, &mv, HOST_IP, 3);
        assert!(ok, "macvlan → host: {out}\n{}", lab.daemon_log());
        assert!(
            broadcast_reaches_host(&host, &mv),
            "macvlan broadcast → host"
        );
    });
    seen.extend(monitor);
    // Without a hairpin the host copy is the host's only one (it waited for no reflection).
    assert_eq!(broadcasts_seen_by_host(&host, &mv), 1);
    let has = |f: &dyn Fn(&str) -> bool| seen.iter().any(|l| f(l));
    assert!(
        has(&|l| l.contains(" from host ")
            && l.contains("ipv4 len 98: hostaccess: from the host to mv; copies 1 (mv)")),
        "{seen:#?}"
    );
    assert!(
        has(&|l| l.contains(" from mv ") && l.contains("hostaccess: to the host; copies 0")),
        "{seen:#?}"
    );
    assert!(
        has(&|l| l.contains(" from mv ")
            && l.contains("> ff:ff:ff:ff:ff:ff ipv4")
            && l.contains("vepa: to the wire; hostaccess: and to the host")
            && l.contains("+wire +host")),
        "{seen:#?}"
    );
    // ARP resolved both ways, to the right addresses.
    assert_eq!(
        neigh(&lab, &host, "eth0", "10.50.0.22"),
        Some(mac_of(&lab, &mv, "mv"))
    );
    assert_eq!(
        neigh(&lab, &mv, "mv", HOST_IP),
        Some(mac_of(&lab, &host, "eth0"))
    );
    tcp_exchange(&mv, "10.50.0.22", &host).expect("TCP host → macvlan");
    tcp_exchange(&host, HOST_IP, &mv).expect("TCP macvlan → host");
    assert!(
        broadcast_reaches(&host, &mv),
        "host broadcast did not reach the macvlan"
    );

    // trace names the rules, sending nothing.
    let host_mac = mac_of(&lab, &host, "eth0");
    let mv_mac = mac_of(&lab, &mv, "mv");
    let t = lab
        .cli_ok(&[
            "trace", "host", "eth0", "frame", "src", &host_mac, "dst", &mv_mac,
        ])
        .unwrap();
    assert!(
        t.contains("Verdict: hostaccess: from the host to mv"),
        "{t}"
    );
    let t = lab
        .cli_ok(&[
            "trace", "dev", "mv", "frame", "src", &mv_mac, "dst", &host_mac,
        ])
        .unwrap();
    assert!(t.contains("Verdict: hostaccess: to the host"), "{t}");

    // A second hostaccess macvlan on the port shares the host path (its filter lets the new
    // destination through).
    let mv2 = macvlan(&mut lab, "mv2", &["mode", "bridge", "hostaccess", "on"], 32);
    let (ok, out) = ping(&lab, &host, "10.50.0.32", 2);
    assert!(ok, "host → second macvlan: {out}");
    assert!(ping(&lab, &mv2, HOST_IP, 2).0);
    assert_eq!(hidden_devices(&lab, &host).len(), 1);
    lab.cli_ok(&["link", "del", "mv2"]).unwrap();

    // The counters saw it: the macvlan sent to the host and received from it.
    let j = show_json(&lab);
    let s = &link(&j, "mv")["stats64"];
    assert!(s["tx"]["packets"].as_u64().unwrap() > 0 && s["rx"]["packets"].as_u64().unwrap() > 0);

    // Off: at once (no waiting), both ways; the hidden device goes.
    lab.cli_ok(&["link", "set", "mv", "type", "macvlan", "hostaccess", "off"])
        .unwrap();
    assert!(
        !ping(&lab, &host, "10.50.0.22", 2).0,
        "off: host still reaches the macvlan"
    );
    assert!(
        !ping(&lab, &mv, HOST_IP, 2).0,
        "off: the macvlan still reaches the host"
    );
    assert!(hidden_devices(&lab, &host).is_empty());
    let d = lab.cli_ok(&["-d", "link", "show", "mv"]).unwrap();
    assert!(!d.contains("hostaccess"), "{d}");
    // And on again.
    lab.cli_ok(&["link", "set", "mv", "type", "macvlan", "hostaccess", "on"])
        .unwrap();
    // The neighbour entry the isolated attempts left is retried once a second: start afresh.
    lab.exec_ok(&host, &["ip", "neigh", "flush", "to", "10.50.0.22"])
        .unwrap();
    let (ok, out) = ping(&lab, &host, "10.50.0.22", 2);
    assert!(ok, "on again: {out}");
}

#[test]
fn hostaccess_with_a_hairpin_switch_delivers_once() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-hairpin", true, true);
    let mv = macvlan(&mut lab, "mv", &["mode", "vepa", "hostaccess", "on"], 23);
    // A sibling without host access still gets what the hairpin reflects, as with the kernel.
    let sib = macvlan(&mut lab, "sib", &["mode", "vepa"], 24);
    let (ok, out) = ping(&lab, &host, "10.50.0.23", 5);
    assert!(ok, "host → macvlan: {out}");
    assert!(!out.contains("DUP!"), "duplicates host → macvlan: {out}");
    let (ok, out) = ping(&lab, &mv, HOST_IP, 5);
    assert!(ok, "macvlan → host: {out}");
    assert!(!out.contains("DUP!"), "duplicates macvlan → host: {out}");
    // The kernel's behaviour for the sibling is untouched: through the hairpin the host
    // reaches a vepa macvlan (the reflected frame comes in from the wire).
    let (ok, out) = ping(&lab, &host, "10.50.0.24", 3);
    assert!(
        ok && !out.contains("DUP!"),
        "host → vepa sibling via the hairpin: {out}"
    );
    let (ok, out) = ping(&lab, &sib, "10.50.0.23", 3);
    assert!(
        ok && !out.contains("DUP!"),
        "sibling → hostaccess macvlan: {out}"
    );
    // A hostaccess macvlan's broadcast reaches the host once: the hairpin's reflection, which
    // the lower's stack receives as it does with a kernel macvlan, stands for the host copy
    // (which waits to see it).
    assert_eq!(broadcasts_seen_by_host(&host, &mv), 1);
    assert_eq!(broadcasts_seen_by_host(&host, &mv), 1);
}

/// How many copies of one UDP broadcast sent from `ns` the host's stack receives within
/// `wait`.
fn broadcasts_seen_by_host(host: &str, ns: &str) -> usize {
    broadcast_copies(host, ns, Duration::from_millis(500))
}

fn broadcast_copies(host: &str, ns: &str, wait: Duration) -> usize {
    let rx = NetnsHandle::from_name(host)
        .unwrap()
        .run_in(|| UdpSocket::bind(("0.0.0.0", 5997)))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(wait)).unwrap();
    let tx = NetnsHandle::from_name(ns)
        .unwrap()
        .run_in(|| UdpSocket::bind(("0.0.0.0", 0)))
        .unwrap()
        .unwrap();
    tx.set_broadcast(true).unwrap();
    tx.send_to(b"count-me", ("10.50.0.255", 5997)).unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0;
    while let Ok((len, _)) = rx.recv_from(&mut buf) {
        n += usize::from(&buf[..len] == b"count-me");
    }
    n
}

#[test]
fn hostaccess_refusals_change_nothing() {
    need_root!();
    let (mut lab, _host, _ext) = topology("ha-refuse", false, true);
    let ns = lab.ns("p").unwrap();
    for mode in ["passthru", "source"] {
        let r = lab.cli(&[
            "link",
            "add",
            "link",
            "eth0",
            "name",
            "bad",
            "netns",
            &ns,
            "type",
            "macvlan",
            "mode",
            mode,
            "hostaccess",
            "on",
        ]);
        assert_eq!(r.code, 2, "{mode}: {r:?}");
        assert!(
            r.stderr
                .contains("Error: hostaccess is not supported in passthru or source mode."),
            "{mode}: {}",
            r.stderr
        );
    }
    assert!(lab.cli(&["link", "show", "bad"]).code != 0);
    let r = lab.cli(&[
        "link",
        "add",
        "link",
        "eth0",
        "name",
        "bad",
        "type",
        "macvlan",
        "hostaccess",
        "maybe",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("\"hostaccess\" must be \"on\" or \"off\""),
        "{}",
        r.stderr
    );
    // A source-mode switch of a hostaccess macvlan is refused, the macvlan unchanged.
    let _mv = macvlan(&mut lab, "mv", &["mode", "bridge", "hostaccess", "on"], 25);
    let r = lab.cli(&["link", "set", "mv", "type", "macvlan", "mode", "source"]);
    assert_eq!(r.code, 2, "{r:?}");
    let d = lab.cli_ok(&["-d", "link", "show", "mv"]).unwrap();
    assert!(
        d.contains("mode bridge") && d.contains("hostaccess on"),
        "{d}"
    );
}

#[test]
fn the_hidden_device_goes_with_the_daemon_and_comes_back_from_the_state_file() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-kill", false, false);
    let state = std::env::temp_dir().join(format!("{}.state.json", lab.prefix()));
    let state_s = state.to_string_lossy().into_owned();
    lab.start_daemon(&host, &["--datapath", "tap", "--state", &state_s])
        .unwrap();
    let mv = macvlan(&mut lab, "mv", &["hostaccess", "on"], 26);
    assert_eq!(hidden_devices(&lab, &host).len(), 1);
    lab.stop_daemon("KILL");
    assert!(
        hidden_devices_gone(&lab, &host, 5),
        "left behind after SIGKILL"
    );
    // No filter or qdisc of ours stays on the lower.
    let q = lab
        .exec_ok(&host, &["tc", "qdisc", "show", "dev", "eth0"])
        .unwrap();
    assert!(!q.contains("ingress"), "{q}");
    // Restarted with its state file: the option is restored, with its host path.
    lab.start_daemon(&host, &["--datapath", "tap", "--state", &state_s])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.cli(&["link", "show", "mv"]).code != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = lab.cli_ok(&["-d", "link", "show", "mv"]).unwrap();
    assert!(d.contains("hostaccess on"), "{d}");
    assert_eq!(hidden_devices(&lab, &host).len(), 1);
    // The restored TAP is new: its address is given again, as a container runtime would.
    lab.addr(&mv, "mv", "10.50.0.26/24").unwrap();
    let (ok, out) = ping(&lab, &host, "10.50.0.26", 2);
    assert!(ok, "after restore: {out}");
    let _ = std::fs::remove_file(&state);
}

/// What the host path injects into the lower's receive path is seen by packet taps on the
/// lower; the daemon must not take it for a frame from the wire. A private macvlan's
/// broadcast taken that way would come back to it ("own multicast reflected").
#[test]
fn injected_frames_are_not_taken_for_frames_from_the_wire() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-echo", false, true);
    let mv = macvlan(&mut lab, "mv", &["mode", "private", "hostaccess", "on"], 27);
    let mac = mac_of(&lab, &mv, "mv");
    let mac_bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let ifindex: u32 = lab
        .exec_ok(&mv, &["cat", "/sys/class/net/mv/ifindex"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ns = NetnsHandle::from_name(&mv).unwrap();
    // Receive path only (outgoing ignored): what the daemon delivers to mv.
    let cap = umacvlan_io::afpacket::LowerSocket::open_in(
        Some(&ns),
        ifindex,
        &umacvlan_io::afpacket::LowerOptions::default(),
    )
    .unwrap();
    // The host hears mv's broadcasts (hostaccess), so they were injected.
    assert!(
        broadcast_reaches_host(&host, &mv),
        "mv's broadcast did not reach the host"
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut b = umacvlan_io::afpacket::RxBatch::new(64);
    let mut own = 0;
    while let Ok(n) = cap.recv_batch(&mut b) {
        if n == 0 {
            break;
        }
        own += (0..n)
            .filter(|i| b.get(*i).data.get(6..12) == Some(&mac_bytes[..]))
            .count();
    }
    assert_eq!(own, 0, "mv received its own frames back");
}

/// A UDP broadcast from `ns` (10.50.0.255) reaches a socket of the host (up to ten tries).
fn broadcast_reaches_host(host: &str, ns: &str) -> bool {
    (0..10).any(|_| broadcast_copies(host, ns, Duration::from_millis(300)) > 0)
}

/// The bpf data path carries the option whatever the lab's data path: unicast both ways by
/// the programs (to the host through the lower's receive path), ARP and broadcast through the
/// slow path and the host path, TCP.
#[test]
fn the_bpf_datapath_carries_hostaccess() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-bpf", false, false);
    lab.start_daemon(&host, &["--datapath", "bpf"]).unwrap();
    let mv = macvlan(&mut lab, "mv", &["mode", "bridge", "hostaccess", "on"], 28);
    let d = lab.cli_ok(&["-d", "link", "show", "mv"]).unwrap();
    assert!(
        d.contains("hostaccess on") && d.contains("datapath bpf"),
        "{d}"
    );
    let (ok, out) = ping(&lab, &host, "10.50.0.28", 3);
    assert!(ok, "host → macvlan: {out}\n{}", lab.daemon_log());
    let (ok, out) = ping(&lab, &mv, HOST_IP, 3);
    assert!(ok && !out.contains("DUP!"), "macvlan → host: {out}");
    assert!(
        broadcast_reaches_host(&host, &mv),
        "macvlan broadcast → host"
    );
    assert!(broadcast_reaches(&host, &mv), "host broadcast → macvlan");
    tcp_exchange(&mv, "10.50.0.28", &host).expect("TCP host → macvlan");
    tcp_exchange(&host, HOST_IP, &mv).expect("TCP macvlan → host");
    // Off: isolated again, at once.
    lab.cli_ok(&["link", "set", "mv", "type", "macvlan", "hostaccess", "off"])
        .unwrap();
    let (ok, _) = ping(&lab, &mv, HOST_IP, 1);
    assert!(!ok, "hostaccess off: the macvlan still reaches the host");
}

/// The host path carries the lower's MAC (its hidden device and its socket filter): a change
/// of the lower's address is followed.
#[test]
fn a_change_of_the_lowers_mac_is_followed() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-mac", false, true);
    let mv = macvlan(&mut lab, "mv", &["mode", "bridge", "hostaccess", "on"], 28);
    assert!(ping(&lab, &host, "10.50.0.28", 2).0);
    lab.exec_ok(
        &host,
        &["ip", "link", "set", "eth0", "address", "02:aa:bb:cc:dd:01"],
    )
    .unwrap();
    // The daemon hears of it from netlink; the host path is made again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let follows = || {
        let hidden = hidden_devices(&lab, &host);
        // (Read without failing: the device may be in the middle of being made again.)
        hidden.len() == 1
            && lab
                .exec(&host, &["ip", "-o", "link", "show", "dev", &hidden[0]])
                .stdout
                .contains("link/ether 02:aa:bb:cc:dd:01")
    };
    while !follows() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        follows(),
        "{:?}\n{}",
        hidden_devices(&lab, &host),
        lab.daemon_log()
    );
    lab.exec_ok(&mv, &["ip", "neigh", "flush", "dev", "mv"])
        .unwrap();
    let (ok, out) = ping(&lab, &host, "10.50.0.28", 2);
    assert!(ok, "host → macvlan after the change: {out}");
    let (ok, out) = ping(&lab, &mv, HOST_IP, 2);
    assert!(ok, "macvlan → host after the change: {out}");
    assert_eq!(
        neigh(&lab, &mv, "mv", HOST_IP).as_deref(),
        Some("02:aa:bb:cc:dd:01")
    );
}

/// IPv6: neighbour discovery (solicitations to the solicited-node groups, which the macvlan's
/// own multicast filter passes) and ping, both ways.
#[test]
fn hostaccess_carries_neighbour_discovery_and_ipv6() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-v6", false, true);
    let mv = macvlan(&mut lab, "mv", &["mode", "bridge", "hostaccess", "on"], 29);
    for (ns, dev, addr) in [
        (&host, "eth0", "fd00:50::10/64"),
        (&mv, "mv", "fd00:50::29/64"),
    ] {
        lab.exec_ok(
            ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
            ],
        )
        .unwrap();
        lab.exec_ok(ns, &["ip", "addr", "add", addr, "dev", dev, "nodad"])
            .unwrap();
    }
    let ping6 = |ns: &str, dst: &str| {
        let r = lab.exec(ns, &["ping", "-6", "-c", "3", "-i", "0.3", "-W", "2", dst]);
        (r.ok(), format!("{}{}", r.stdout, r.stderr))
    };
    let (ok, out) = ping6(&host, "fd00:50::29");
    assert!(
        ok && !out.contains("DUP!"),
        "host → macvlan over IPv6: {out}"
    );
    let (ok, out) = ping6(&mv, "fd00:50::10");
    assert!(
        ok && !out.contains("DUP!"),
        "macvlan → host over IPv6: {out}"
    );
    let n = lab
        .exec(&host, &["ip", "-6", "neigh", "show", "fd00:50::29"])
        .stdout;
    assert!(n.contains(&mac_of(&lab, &mv, "mv")), "{n}");
}

/// The configuration file: `hostaccess = true` turns it on at start; a file without the line
/// turns it off on reload.
#[test]
fn the_configuration_file_turns_it_on_and_off() {
    need_root!();
    let (mut lab, host, _ext) = topology("ha-cfg", false, false);
    let ns = lab.ns("mv").unwrap();
    let file = std::env::temp_dir().join(format!("{}.toml", lab.prefix()));
    let entry = |extra: &str| {
        format!("[[macvlan]]\nname = \"mv\"\nlower = \"eth0\"\nmode = \"bridge\"\nnetns = \"{ns}\"\n{extra}")
    };
    std::fs::write(&file, entry("hostaccess = true\n")).unwrap();
    let file_s = file.to_string_lossy().into_owned();
    lab.start_daemon(&host, &["--datapath", "tap", "--config", &file_s])
        .unwrap();
    let d = lab.cli_ok(&["-d", "link", "show", "mv"]).unwrap();
    assert!(d.contains("hostaccess on"), "{d}");
    assert_eq!(hidden_devices(&lab, &host).len(), 1);
    std::fs::write(&file, entry("")).unwrap();
    lab.cli_ok(&["reload"]).unwrap();
    let d = lab.cli_ok(&["-d", "link", "show", "mv"]).unwrap();
    assert!(!d.contains("hostaccess"), "{d}");
    assert!(hidden_devices_gone(&lab, &host, 2));
    let _ = std::fs::remove_file(&file);
}

/// A lower moved to another namespace takes host access with it out of reach (the hidden
/// device must live beside the lower); moved back, the host path is made again.
#[test]
fn a_lower_moved_away_and_back_gets_its_host_path_again() {
    need_root!();
    // The TAP path, whatever the lab's (on bpf the moved lower's port leaves the fast path,
    // which `fastpath_root` and `lower_faults` cover).
    let (mut lab, host, _ext) = topology("ha-move", false, false);
    lab.start_daemon(&host, &["--datapath", "tap", "--log", "debug"])
        .unwrap();
    let mv = macvlan(&mut lab, "mv", &["mode", "bridge", "hostaccess", "on"], 30);
    let away = lab.ns("away").unwrap();
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(f(), "{what}\n{}", lab.daemon_log());
    };
    lab.exec_ok(&host, &["ip", "link", "set", "eth0", "netns", &away])
        .unwrap();
    wait("the host path to go", &|| {
        hidden_devices(&lab, &host).is_empty()
    });
    // The daemon follows the lower there (the macvlan stays, shown with link-netns); moved
    // back before that, the lower is taken for deleted.
    wait("the move to be followed", &|| {
        lab.cli_ok(&["-j", "link", "show", "mv"])
            .is_ok_and(|j| j.contains(&format!("\"link_netns\":\"{away}\"")))
    });
    lab.exec_ok(&away, &["ip", "link", "set", "eth0", "up"])
        .unwrap();
    lab.exec_ok(&away, &["ip", "link", "set", "eth0", "netns", &host])
        .unwrap();
    lab.addr(&host, "eth0", &format!("{HOST_IP}/24")).unwrap();
    wait("the host path to come back", &|| {
        hidden_devices(&lab, &host).len() == 1
    });
    let (ok, out) = ping(&lab, &host, "10.50.0.30", 3);
    assert!(ok, "host → macvlan after the lower came back: {out}");
    let (ok, out) = ping(&lab, &mv, HOST_IP, 3);
    assert!(ok, "macvlan → host after the lower came back: {out}");
}
