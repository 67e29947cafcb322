//! The configuration file and systemd's notify protocol, with a real daemon: the file is
//! applied at start and on reload (SIGHUP, `umacvlan reload`); only the difference is applied,
//! an untouched macvlan keeps forwarding without losing a frame, macvlans made by commands are
//! left alone, a bad file is refused whole with FILE:LINE and nothing changes. READY=1,
//! STATUS=, RELOADING=1, WATCHDOG=1 and STOPPING=1 reach a socket standing in for systemd.
//! Root only; labs under a unique prefix.

mod common;

use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

fn links(lab: &Lab) -> Value {
    serde_json::from_str(&lab.cli_ok(&["-s", "-j", "link", "show"]).unwrap()).unwrap()
}

fn find<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_array().unwrap().iter().find(|l| l["ifname"] == name)
}

fn entry(name: &str, ns: &str, extra: &str) -> String {
    format!(
        "[[macvlan]]\nname = \"{name}\"\nlower = \"eth0\"\nmode = \"bridge\"\nnetns = \"{ns}\"\n{extra}\n"
    )
}

struct Files(Vec<PathBuf>);
impl Drop for Files {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn reload_applies_only_the_difference() {
    need_root!();
    let mut l = Lab::new("cfg", Path::new(common::BIN));
    let host = l.ns("host").unwrap();
    let ext = l.ns("ext").unwrap();
    let (na, nb, nc) = (l.ns("a").unwrap(), l.ns("b").unwrap(), l.ns("c").unwrap());
    l.veth(&host, "eth0", &ext, "eth0").unwrap();
    l.addr(&ext, "eth0", "10.62.0.1/24").unwrap();
    let file = std::env::temp_dir().join(format!("{}.toml", l.prefix()));
    let _files = Files(vec![file.clone()]);
    std::fs::write(&file, entry("mva", &na, "") + &entry("mvb", &nb, "")).unwrap();
    let file_arg = file.to_string_lossy().into_owned();
    l.start_daemon(&host, &["--config", &file_arg]).unwrap();

    // Applied at start.
    let v = links(&l);
    assert!(
        find(&v, "mva").is_some() && find(&v, "mvb").is_some(),
        "{v}"
    );
    let mva_index = find(&v, "mva").unwrap()["ifindex"].clone();
    l.addr(&na, "mva", "10.62.0.11/24").unwrap();
    l.addr(&nb, "mvb", "10.62.0.12/24").unwrap();
    // A macvlan made by a command.
    l.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mvc", "netns", &nc, "type", "macvlan", "mode",
        "bridge",
    ])
    .unwrap();

    // Traffic to mva while the file changes mvb and adds mvd.
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &ext, "ping", "-q", "-i", "0.01", "-c", "300", "-W", "2",
        ])
        .arg("10.62.0.11")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for("mva to forward the first echoes", || {
        find(&links(&l), "mva").unwrap()["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap_or(0)
            >= 20
    });
    std::fs::write(
        &file,
        entry("mva", &na, "") + &entry("mvb", &nb, "mtu = 1400") + &entry("mvd", &nc, ""),
    )
    .unwrap();
    let pid = l.daemon_pid().unwrap().to_string();
    lab::must(&["kill", "-HUP", &pid]).unwrap();
    common::wait_for("SIGHUP to apply the file", || {
        let v = links(&l);
        find(&v, "mvb").is_some_and(|b| b["mtu"] == 1400) && find(&v, "mvd").is_some()
    });
    // The same through the control socket: mode change on mvb.
    std::fs::write(
        &file,
        entry("mva", &na, "")
            + &entry("mvb", &nb, "mtu = 1400").replace("bridge", "private")
            + &entry("mvd", &nc, ""),
    )
    .unwrap();
    let r = l.cli(&["reload", "--socket", &l.socket().to_string_lossy()]);
    assert!(r.ok(), "umacvlan reload: {}", r.stderr);
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("300 packets transmitted, 300 received"),
        "mva lost frames during the reloads: {text}"
    );
    let v = links(&l);
    assert_eq!(
        find(&v, "mva").unwrap()["ifindex"],
        mva_index,
        "mva was not recreated"
    );
    let d: Value =
        serde_json::from_str(&l.cli_ok(&["-d", "-j", "link", "show", "mvb"]).unwrap()).unwrap();
    assert_eq!(d[0]["linkinfo"]["info_data"]["mode"], "private");
    assert!(
        find(&v, "mvc").is_some(),
        "the command's macvlan is left alone"
    );
    let log = l.daemon_log();
    assert!(
        log.contains("configuration applied: 0 added, 1 changed, 0 removed, 2 unchanged"),
        "{log}"
    );

    // Dropping mvb from the file removes it, and only it.
    std::fs::write(&file, entry("mva", &na, "") + &entry("mvd", &nc, "")).unwrap();
    assert!(l
        .cli(&["reload", "--socket", &l.socket().to_string_lossy()])
        .ok());
    let v = links(&l);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mva", "mvc", "mvd"]);

    // A bad file (the second entry's mode) is refused whole: FILE:LINE, nothing changes — not
    // even the valid first entry's new MTU.
    let before = l.cli_ok(&["-d", "-j", "link", "show"]).unwrap();
    std::fs::write(
        &file,
        entry("mva", &na, "mtu = 1300") + &entry("mvd", &nc, "").replace("bridge", "bogus"),
    )
    .unwrap();
    let r = l.cli(&["reload", "--socket", &l.socket().to_string_lossy()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("{file_arg}:10: unknown mode \"bogus\"")),
        "{}",
        r.stderr
    );
    assert_eq!(l.cli_ok(&["-d", "-j", "link", "show"]).unwrap(), before);
    // A file the daemon refuses half way (a missing lower) is rolled back.
    std::fs::write(
        &file,
        entry("mva", &na, "mtu = 1300") + &entry("mve", &nc, "").replace("eth0", "nosuchdev"),
    )
    .unwrap();
    let r = l.cli(&["reload", "--socket", &l.socket().to_string_lossy()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(":7: mve: "), "{}", r.stderr);
    assert_eq!(l.cli_ok(&["-d", "-j", "link", "show"]).unwrap(), before);
}

/// Collects notify datagrams until `pred` holds for the last one or the deadline passes.
fn wait_msg(sock: &UnixDatagram, seen: &mut Vec<String>, what: &str, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what}; got {seen:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(m.clone());
            if pred(&m) {
                return;
            }
        }
    }
}

#[test]
fn notify_protocol_with_a_socket_standing_in_for_systemd() {
    need_root!();
    let mut l = Lab::new("notify", Path::new(common::BIN));
    let host = l.ns("host").unwrap();
    let ext = l.ns("ext").unwrap();
    let na = l.ns("a").unwrap();
    l.veth(&host, "eth0", &ext, "eth0").unwrap();
    let file = std::env::temp_dir().join(format!("{}.toml", l.prefix()));
    let notify_path = std::env::temp_dir().join(format!("{}.notify", l.prefix()));
    let socket = std::env::temp_dir().join(format!("{}.ctl", l.prefix()));
    let _files = Files(vec![file.clone(), notify_path.clone(), socket.clone()]);
    std::fs::write(&file, entry("mva", &na, "")).unwrap();
    let systemd = UnixDatagram::bind(&notify_path).unwrap();
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", &host, common::BIN, "daemon", "--socket"])
        .arg(&socket)
        .arg("--config")
        .arg(&file)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    wait_msg(&systemd, &mut seen, "READY=1", |m| {
        m.starts_with("READY=1\n")
    });
    // Ready means the control socket answers and the file is applied.
    let cli = |args: &[&str]| {
        let mut v = vec![common::BIN, "--socket", socket.to_str().unwrap()];
        v.extend_from_slice(args);
        lab::run(&v)
    };
    let show = cli(&["link", "show", "mva"]);
    assert!(show.ok(), "not ready at READY=1: {}", show.stderr);
    assert!(
        seen.last().unwrap().contains("STATUS=1 macvlans"),
        "{seen:?}"
    );
    // The watchdog every WATCHDOG_USEC/2: five pings take at least 4 × 100 ms.
    let t0 = Instant::now();
    for _ in 0..5 {
        wait_msg(&systemd, &mut seen, "WATCHDOG=1", |m| m == "WATCHDOG=1");
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t0.elapsed()
    );
    // SIGHUP: RELOADING=1, then READY=1 with the outcome.
    lab::must(&["kill", "-HUP", &daemon.id().to_string()]).unwrap();
    wait_msg(&systemd, &mut seen, "RELOADING=1", |m| {
        m.starts_with("RELOADING=1")
    });
    wait_msg(&systemd, &mut seen, "READY=1 after reload", |m| {
        m.starts_with("READY=1\n") && m.contains("1 unchanged")
    });
    // A refused file is said in STATUS=.
    std::fs::write(&file, "[[macvlan]]\nname = 1\n").unwrap();
    assert_eq!(
        cli(&["reload", "--socket", socket.to_str().unwrap()]).code,
        1
    );
    wait_msg(&systemd, &mut seen, "STATUS=configuration refused", |m| {
        m.contains("STATUS=configuration refused")
    });
    // SIGTERM: STOPPING=1.
    lab::must(&["kill", "-TERM", &daemon.id().to_string()]).unwrap();
    wait_msg(&systemd, &mut seen, "STOPPING=1", |m| {
        m.starts_with("STOPPING=1")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With `--state`, the file's macvlans are remembered across restarts: one dropped from the
/// file while the daemon was down is removed at start, though the state restored it; one made
/// by a command is restored and kept.
#[test]
fn a_restart_forgets_what_the_file_dropped() {
    need_root!();
    let mut l = Lab::new("cfgrs", Path::new(common::BIN));
    let host = l.ns("host").unwrap();
    let ext = l.ns("ext").unwrap();
    let na = l.ns("a").unwrap();
    l.veth(&host, "eth0", &ext, "eth0").unwrap();
    let file = std::env::temp_dir().join(format!("{}.toml", l.prefix()));
    let state = std::env::temp_dir().join(format!("{}.state", l.prefix()));
    let side: Vec<PathBuf> = [
        ".prev",
        ".tmp",
        ".journal",
        ".config",
        ".config.tmp",
        ".corrupt",
    ]
    .iter()
    .map(|s| PathBuf::from(format!("{}{s}", state.display())))
    .collect();
    let _files = Files([vec![file.clone(), state.clone()], side].concat());
    std::fs::write(&file, entry("mva", &na, "") + &entry("mvb", &na, "")).unwrap();
    let args = [
        "--config",
        file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    l.start_daemon(&host, &args).unwrap();
    l.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mvc", "type", "macvlan",
    ])
    .unwrap();
    common::wait_for("the state file to hold three macvlans", || {
        common::saved_names(&state).contains(&"mvc".to_string())
    });
    l.stop_daemon("TERM");
    std::fs::write(&file, entry("mva", &na, "")).unwrap();
    l.start_daemon(&host, &args).unwrap();
    let v = links(&l);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mva", "mvc"], "{}", l.daemon_log());
}

/// A file that does not parse stops the daemon at start, before it makes anything.
#[test]
fn a_bad_file_stops_the_start() {
    need_root!();
    let mut l = Lab::new("cfgbad", Path::new(common::BIN));
    let host = l.ns("host").unwrap();
    let file = std::env::temp_dir().join(format!("{}.toml", l.prefix()));
    let socket = std::env::temp_dir().join(format!("{}.ctl", l.prefix()));
    let _files = Files(vec![file.clone(), socket.clone()]);
    std::fs::write(
        &file,
        "[[macvlan]]\nname = \"a\"\nlower = \"eth0\"\nmtu = \"big\"\n",
    )
    .unwrap();
    let r = lab::run(&[
        "ip",
        "netns",
        "exec",
        &host,
        common::BIN,
        "daemon",
        "--socket",
        socket.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("{}:4: ", file.display())),
        "{}",
        r.stderr
    );
    assert!(!socket.exists(), "nothing is made, not even the socket");
}
