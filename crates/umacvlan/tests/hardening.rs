//! Hardening, as root on real devices: the daemon keeps only the capabilities it needs; bad,
//! huge, partial, slow and vanishing control clients get a clear answer (or none) and change
//! nothing while others are served; a corrupt state file is reported and never half-applied;
//! metrics bind to loopback unless told.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

mod common;
use common::*;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_PTRACE: u32 = 19;

/// `CapEff` etc. of every thread of `pid`.
fn thread_caps(pid: u32) -> Vec<(String, [u64; 5])> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue; // a thread that ended meanwhile
        };
        let field = |k: &str| {
            let line = status
                .lines()
                .find(|l| l.starts_with(k))
                .unwrap_or_else(|| panic!("{k} missing"));
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        let name = status.lines().next().unwrap_or("").to_string();
        out.push((
            name,
            [
                field("CapEff:"),
                field("CapPrm:"),
                field("CapBnd:"),
                field("CapInh:"),
                field("CapAmb:"),
            ],
        ));
    }
    out
}

fn mask(caps: &[u32]) -> u64 {
    caps.iter().map(|c| 1u64 << c).sum()
}

fn assert_only(pid: u32, caps: &[u32]) {
    let want = mask(caps);
    let threads = thread_caps(pid);
    assert!(threads.len() > 2, "workers running: {threads:?}");
    for (name, [eff, prm, bnd, inh, amb]) in threads {
        assert_eq!(
            (eff, prm, bnd, inh, amb),
            (want, want, want, 0, 0),
            "thread {name}: eff/prm/bnd/inh/amb {eff:x}/{prm:x}/{bnd:x}/{inh:x}/{amb:x}, want {want:x}"
        );
    }
}

#[test]
fn the_daemon_keeps_only_the_capabilities_it_needs() {
    need_root!();
    let (mut lab, host, ext) = base("h-caps", false);
    // Everything still works with the reduced set: a TAP created in another namespace by
    // name and by pid, a port with workers, traffic.
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let b = lab.ns("b").unwrap();
    let mut holder = std::process::Command::new("ip")
        .args(["netns", "exec", &b, "sleep", "60"])
        .spawn()
        .unwrap();
    wait_for("holder in its namespace", || {
        std::fs::read_link(format!("/proc/{}/ns/net", holder.id())).ok()
            != std::fs::read_link("/proc/self/ns/net").ok()
    });
    lab.cli_ok(&[
        "link",
        "add",
        "link",
        "eth0",
        "name",
        "mvb",
        "netns",
        &holder.id().to_string(),
        "type",
        "macvlan",
    ])
    .unwrap();
    assert!(lab::run(&["ip", "-n", &b, "link", "show", "mvb"]).ok());
    assert!(lab.ping(&a, "10.50.0.1", 2));
    assert!(lab.ping(&ext, "10.50.0.11", 2));
    // A macvlan moved to the holder's namespace (by pid again) is followed there: a change
    // made there by `ip` is seen, one made by us applied there, and traffic flows.
    lab.cli_ok(&["link", "set", "mva", "netns", &holder.id().to_string()])
        .unwrap();
    lab::must(&["ip", "-n", &b, "link", "set", "mva", "mtu", "1300"]).unwrap();
    wait_for("mtu 1300 followed", || {
        link(&show_json(&lab), "mva")["mtu"] == 1300
    });
    lab.cli_ok(&["link", "set", "mva", "mtu", "1400"]).unwrap();
    assert!(lab::must(&["ip", "-n", &b, "link", "show", "mva"])
        .unwrap()
        .contains("mtu 1400"));
    lab.addr(&b, "mva", "10.50.0.11/24").unwrap();
    assert!(lab.ping(&b, "10.50.0.1", 2));
    // Moved by hand to a namespace no name leads to, only a process with all capabilities:
    // still followed (the TAP names its namespace; the monitor there is made by the broker).
    let mut anon = std::process::Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .spawn()
        .unwrap();
    wait_for("anonymous namespace", || {
        std::fs::read_link(format!("/proc/{}/ns/net", anon.id())).ok()
            != std::fs::read_link("/proc/self/ns/net").ok()
    });
    let anon_pid = anon.id().to_string();
    lab::must(&["ip", "-n", &b, "link", "set", "mva", "netns", &anon_pid]).unwrap();
    lab::must(&[
        "nsenter", "-t", &anon_pid, "-n", "ip", "link", "set", "mva", "mtu", "1280",
    ])
    .unwrap();
    wait_for("mtu 1280 followed in the anonymous namespace", || {
        link(&show_json(&lab), "mva")["mtu"] == 1280
    });
    // The lower moved there too: the daemon cannot even stat that namespace's file, so it is
    // found through the broker (RTM_GETNSID on each /proc/PID/ns/net it opens), and mvb keeps
    // its lower and its traffic.
    // (mva leaves first, so that the daemon holds no handle of that namespace.)
    lab::must(&[
        "nsenter", "-t", &anon_pid, "-n", "ip", "link", "set", "mva", "netns", &b,
    ])
    .unwrap();
    wait_for("mva followed back", || {
        link(&show_json(&lab), "mva")["link_netns"] == b.as_str()
    });
    std::thread::sleep(Duration::from_millis(300));
    lab.addr(&b, "mvb", "10.50.0.12/24").unwrap();
    // On the bpf datapath the port leaves the fast path for the userspace one (README, "The
    // eBPF fast path"), found through the broker all the same.
    let bpf = lab
        .cli_ok(&["-d", "link", "show", "mvb"])
        .unwrap()
        .contains(" datapath bpf ");
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "netns", &anon_pid]).unwrap();
    lab::must(&[
        "nsenter", "-t", &anon_pid, "-n", "ip", "link", "set", "eth0", "up",
    ])
    .unwrap();
    wait_for(
        "mvb forwards over the lower in the anonymous namespace",
        || lab.ping(&b, "10.50.0.1", 1),
    );
    assert!(link(&show_json(&lab), "mvb").is_object());
    if bpf {
        assert!(
            lab.daemon_log()
                .contains("continue on the userspace data path"),
            "{}",
            lab.daemon_log()
        );
    }
    lab::must(&[
        "nsenter", "-t", &anon_pid, "-n", "ip", "link", "set", "eth0", "netns", &host,
    ])
    .unwrap();
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "up"]).unwrap();
    let _ = anon.kill();
    let _ = anon.wait();
    let pid = lab.daemon_pid().unwrap();
    assert_only(pid, &[CAP_NET_ADMIN, CAP_NET_RAW]);
    assert!(lab.daemon_log().contains("capabilities kept"));
    // What needs more is done by the namespace broker: one thread, its own three.
    let bpid = broker_of(pid).expect("a broker");
    let threads = thread_caps(bpid);
    let three = mask(&[CAP_NET_RAW, CAP_SYS_ADMIN, CAP_SYS_PTRACE]);
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(threads[0].1, [three, three, three, 0, 0], "{threads:?}");
    let _ = holder.kill();
    let _ = holder.wait();

    // --no-netns: only NET_ADMIN and NET_RAW; macvlans in the daemon's namespace work, a
    // namespace request is refused as rtnetlink refuses it, and nothing is left behind.
    // (`host` is the lab's host namespace, as above.)
    lab.stop_daemon("TERM");
    lab.start_daemon(&host, &["--no-netns"]).unwrap();
    lab.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mvc", "type", "macvlan", "mode", "bridge",
    ])
    .unwrap();
    lab.cli_ok(&["link", "set", "mvc", "up"]).unwrap();
    let r = lab.cli(&[
        "link", "add", "link", "eth0", "name", "mvd", "netns", &b, "type", "macvlan",
    ]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (2, "RTNETLINK answers: Operation not permitted")
    );
    assert!(!lab::run(&["ip", "-n", &b, "link", "show", "mvd"]).ok());
    assert!(!lab::run(&["ip", "-n", &host, "link", "show", "mvd"]).ok());
    assert_eq!(show_json(&lab).as_array().unwrap().len(), 1);
    assert_only(lab.daemon_pid().unwrap(), &[CAP_NET_ADMIN, CAP_NET_RAW]);
    assert_eq!(
        broker_of(lab.daemon_pid().unwrap()),
        None,
        "--no-netns: no broker"
    );
}

/// The namespace broker child of daemon `pid`, if there is one.
fn broker_of(pid: u32) -> Option<u32> {
    lab::must(&["pgrep", "-f", "-P", &pid.to_string(), "daemon --broker"])
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn errno(r: std::io::Result<std::os::fd::OwnedFd>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn the_broker_answers_only_its_list_and_exits_with_the_daemon() {
    need_root!();
    use umacvlan_io::netns::{Broker, NetnsHandle};
    let (mut lab, host, _ext) = base("h-brk", false);
    // The real broker, started as the daemon starts it, driven here.
    let (client, server) = Broker::pair().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["daemon", "--broker"])
        .stdin(std::process::Stdio::from(server))
        .spawn()
        .unwrap();
    let ns = NetnsHandle::from_name(&host).unwrap();
    // A group only the lab's host namespace holds: the dev_mcast the broker opens there
    // lists it, ours does not.
    lab::must(&[
        "ip",
        "-n",
        &host,
        "maddr",
        "add",
        "01:00:5e:7b:5a:3c",
        "dev",
        "eth0",
    ])
    .unwrap();
    let fd = client
        .request(
            &format!("open {} /proc/thread-self/net/dev_mcast", libc::O_RDONLY),
            Some(&ns),
        )
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).unwrap();
    assert!(text.contains("01005e7b5a3c"), "{text}");
    let ours = std::fs::read_to_string("/proc/thread-self/net/dev_mcast").unwrap();
    assert!(!ours.contains("01005e7b5a3c"));
    // Refused: a path not on the list, an allowed path with other flags, a socket not on the
    // list, a request without its namespace, garbage. Each answer is an errno, nothing else
    // happens, and the broker keeps serving.
    let eperm = Some(libc::EPERM);
    let einval = Some(libc::EINVAL);
    for (req, want) in [
        (format!("open {} /etc/shadow", libc::O_RDONLY), eperm),
        (format!("open {} /proc/self/mem", libc::O_RDWR), eperm),
        (
            format!("open {} /dev/net/tun", libc::O_RDWR | libc::O_CREAT),
            eperm,
        ),
        (format!("open {} /dev/net/../net/tun", libc::O_RDWR), eperm),
        (
            format!("socket {} {} 0", libc::AF_INET, libc::SOCK_STREAM),
            eperm,
        ),
        (
            format!("socket {} {} 9", libc::AF_NETLINK, libc::SOCK_RAW),
            eperm,
        ),
        ("exec /bin/sh".to_string(), einval),
        ("socket".to_string(), einval),
    ] {
        assert_eq!(errno(client.request(&req, Some(&ns))), want, "{req}");
    }
    assert_eq!(
        errno(client.request(&format!("open {} /dev/net/tun", libc::O_RDWR), None)),
        einval,
        "no namespace attached"
    );
    assert_eq!(
        errno(client.request("pidns 999999999", None)),
        Some(libc::ENOENT)
    );
    // Still serving, and the namespace of a process with more capabilities than the broker
    // (this test's) comes back.
    let me = client
        .request(&format!("pidns {}", std::process::id()), None)
        .unwrap();
    let me = NetnsHandle::from_fd(me).unwrap();
    assert!(me
        .same_as(&NetnsHandle::from_pid(std::process::id()).unwrap())
        .unwrap());
    // Its end closed, it exits, cleanly.
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the broker outlived its socket");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");

    // The daemon's own broker ends with the daemon, however the daemon ends.
    for signal in ["TERM", "KILL"] {
        let bpid = broker_of(lab.daemon_pid().unwrap()).expect("a broker");
        lab.stop_daemon(signal);
        wait_for("the broker gone", || {
            !std::path::Path::new(&format!("/proc/{bpid}")).exists()
                || std::fs::read_to_string(format!("/proc/{bpid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
        lab.start_daemon(&host, &[]).unwrap();
    }
}

/// One raw protocol exchange on a fresh connection.
fn raw(lab: &Lab, bytes: &[u8]) -> Option<serde_json::Value> {
    let mut c = UnixStream::connect(lab.socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Refused with EBUSY, the daemon may have answered and closed before we write.
    let _ = c.write_all(bytes);
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

fn errno_of(v: &Option<serde_json::Value>) -> i64 {
    let v = v.as_ref().expect("an answer");
    assert_eq!(v["status"], "error", "{v}");
    v["errno"].as_i64().unwrap()
}

const ADD_MVX: &[u8] =
    br#"{"version":1,"request":{"op":"link_add","lower":"eth0","name":"mvx","up":true}}"#;

#[test]
fn bad_partial_slow_and_vanishing_clients_change_nothing_and_others_are_served() {
    need_root!();
    let (mut lab, _host, _ext) = base("h-ctl", false);
    macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let before = show_json(&lab);
    let unchanged = |lab: &Lab| {
        let now = show_json(lab);
        assert_eq!(now.as_array().unwrap().len(), 1, "{now}");
        assert_eq!(now[0]["linkinfo"], before[0]["linkinfo"]);
    };

    // Malformed: not JSON, not UTF-8, wrong version, unknown op, wrong field type, a request
    // missing its name. Each: EINVAL, and the same connection goes on serving.
    for bad in [
        &b"{nope\n"[..],
        b"\xff\xfe\x00garbage\n",
        b"{\"version\":7,\"request\":{\"op\":\"hello\"}}\n",
        b"{\"version\":1,\"request\":{\"op\":\"link_explode\"}}\n",
        b"{\"version\":1,\"request\":{\"op\":\"link_del\",\"name\":42}}\n",
        b"{\"version\":1,\"request\":{\"op\":\"link_del\"}}\n",
    ] {
        let mut c = UnixStream::connect(lab.socket()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(bad).unwrap();
        c.write_all(b"{\"version\":1,\"request\":{\"op\":\"hello\"}}\n")
            .unwrap();
        let mut r = BufReader::new(&c);
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(errno_of(&Some(v)), libc::EINVAL as i64, "{bad:?}");
        let mut second = String::new();
        r.read_line(&mut second).unwrap();
        assert!(second.contains("\"hello\""), "{second}");
    }
    unchanged(&lab);

    // Oversized: EMSGSIZE, then the daemon hangs up; the request is not applied.
    let mut huge = ADD_MVX[..ADD_MVX.len() - 2].to_vec();
    huge.extend(std::iter::repeat_n(b' ', umacvlan::proto::MAX_MESSAGE));
    huge.extend_from_slice(b"}}\n");
    let mut c = UnixStream::connect(lab.socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The daemon may answer and close before taking all of it: ignore a broken pipe.
    let _ = c.write_all(&huge);
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    let v: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
    assert_eq!(errno_of(&Some(v)), libc::EMSGSIZE as i64);
    unchanged(&lab);

    // Partial: half a request, then the client vanishes: nothing applied.
    {
        let mut c = UnixStream::connect(lab.socket()).unwrap();
        c.write_all(&ADD_MVX[..ADD_MVX.len() / 2]).unwrap();
    }
    // A whole request, and the client vanishes before the answer: applied completely (as
    // rtnetlink applies a request whose sender exits), and the daemon is not hurt.
    {
        let mut c = UnixStream::connect(lab.socket()).unwrap();
        let mut req = ADD_MVX.to_vec();
        req.push(b'\n');
        c.write_all(&req).unwrap();
    }
    wait_for("the complete request applied", || {
        show_json(&lab).as_array().unwrap().len() == 2
    });
    lab.cli_ok(&["link", "del", "mvx"]).unwrap();
    unchanged(&lab);

    // Slow: a client that trickles its request in keeps its own thread; others are served
    // meanwhile, promptly, and the slow request is applied once its line is complete.
    let sock = lab.socket().to_path_buf();
    let slow = std::thread::spawn(move || {
        let mut c = UnixStream::connect(sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for chunk in ADD_MVX.chunks(8) {
            c.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(40));
        }
        c.write_all(b"\n").unwrap();
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        line
    });
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(show_json(&lab).as_array().unwrap().len(), 1);
    }
    assert!(
        !slow.is_finished(),
        "the slow client was still sending while others were served"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(slow.join().unwrap().trim(), r#"{"status":"ok"}"#);
    lab.cli_ok(&["link", "del", "mvx"]).unwrap();

    // Stalled clients cannot exhaust the daemon: past MAX_CONNECTIONS idle ones, a newcomer
    // is told EBUSY at once; when they go, service resumes.
    let max = umacvlan::daemon::control::MAX_CONNECTIONS;
    let idle: Vec<UnixStream> = (0..max)
        .map(|_| {
            let mut c = UnixStream::connect(lab.socket()).unwrap();
            c.write_all(b"{\"vers").unwrap();
            c
        })
        .collect();
    let mut refused = None;
    for _ in 0..50 {
        let r = raw(&lab, b"{\"version\":1,\"request\":{\"op\":\"hello\"}}\n");
        if r.as_ref().is_some_and(|v| v["status"] == "error") {
            refused = r;
            break;
        }
        // Accepting may lag behind our connects: give the acceptor a moment.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(errno_of(&refused), libc::EBUSY as i64);
    drop(idle);
    wait_for("served again", || {
        raw(&lab, b"{\"version\":1,\"request\":{\"op\":\"hello\"}}\n")
            .is_some_and(|v| v["status"] == "hello")
    });
    unchanged(&lab);
    assert!(!lab.daemon_log().contains("panicked"));
}

fn write_state(path: &std::path::Path, body: &str) {
    std::fs::write(path, body).unwrap();
}

#[test]
fn a_corrupt_state_file_is_reported_and_the_last_good_state_restored() {
    need_root!();
    let (mut lab, host, ext) = base("h-state", false);
    let state = std::env::temp_dir().join(format!("{}.state.json", lab.prefix()));
    let suffixed = |s: &str| std::path::PathBuf::from(format!("{}{s}", state.display()));
    lab.stop_daemon("TERM");
    let state_arg = state.to_str().unwrap().to_string();

    // Garbage with no earlier good state: reported, moved aside, nothing applied, serving.
    write_state(&state, "{\"version\":1,\"links\":[{\"lower\":\"eth0\",\"na");
    lab.start_daemon(&host, &["--state", &state_arg]).unwrap();
    assert!(show_json(&lab).as_array().unwrap().is_empty());
    let log = lab.daemon_log();
    assert!(
        log.contains("is corrupt") && log.contains("starting empty"),
        "{log}"
    );
    assert!(suffixed(".corrupt").exists());

    // Two good snapshots (a restarted daemon's first change writes a new one), then the
    // current one is torn while the daemon is down.
    let a = macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    wait_for("first state written", || state.exists());
    lab.stop_daemon("TERM");
    lab.start_daemon(&host, &["--state", &state_arg]).unwrap();
    lab.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mvb", "type", "macvlan", "mode", "private",
    ])
    .unwrap();
    assert!(std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"mvb\"")));
    lab.stop_daemon("KILL");
    let full = std::fs::read(&state).unwrap();
    std::fs::write(&state, &full[..full.len() * 2 / 3]).unwrap();
    let t0 = Instant::now();
    lab.start_daemon(&host, &["--state", &state_arg]).unwrap();
    assert_eq!(shown_names(&lab), ["mva"], "the last good state, whole");
    eprintln!("restored in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let log = lab.daemon_log();
    assert!(log.contains("restoring the last good state"), "{log}");
    // Traffic resumes on the restored macvlan once its namespace configures it again.
    lab.addr(&a, "mva", "10.50.0.11/24").unwrap();
    let _ = lab.exec(&a, &["ip", "link", "set", "mva", "up"]);
    assert!(lab.ping(&ext, "10.50.0.11", 2));

    // The journal's last line cut short (the daemon killed in the write): that change was
    // never answered and is left out; the ones before it come back.
    for name in ["mvc", "mvd"] {
        lab.cli_ok(&[
            "link", "add", "link", "eth0", "name", name, "type", "macvlan",
        ])
        .unwrap();
    }
    lab.stop_daemon("KILL");
    let journal = suffixed(".journal");
    let full = std::fs::read(&journal).unwrap();
    assert!(String::from_utf8_lossy(&full).contains("\"mvd\""));
    std::fs::write(&journal, &full[..full.len() - 10]).unwrap();
    lab.start_daemon(&host, &["--state", &state_arg]).unwrap();
    assert_eq!(shown_names(&lab), ["mva", "mvc"]);
    let log = lab.daemon_log();
    assert!(!log.contains("journal is corrupt"), "{log}");
    for s in [
        "",
        ".prev",
        ".corrupt",
        ".tmp",
        ".journal",
        ".journal.tmp",
        ".journal.corrupt",
    ] {
        let _ = std::fs::remove_file(suffixed(s));
    }
}

#[test]
fn metrics_bind_to_loopback_unless_told() {
    need_root!();
    let (mut lab, host, _ext) = base("h-metrics", false);
    lab.stop_daemon("TERM");
    lab.start_daemon(&host, &["--metrics", "19478"]).unwrap();
    let listening = lab::must(&["ip", "netns", "exec", &host, "ss", "-Hltn"]).unwrap();
    assert!(listening.contains("127.0.0.1:19478"), "{listening}");
    lab.stop_daemon("TERM");
    lab.start_daemon(&host, &["--metrics"]).unwrap();
    let listening = lab::must(&["ip", "netns", "exec", &host, "ss", "-Hltn"]).unwrap();
    assert!(listening.contains("127.0.0.1:9478"), "{listening}");
}

fn mac_of(ns: &str, ifname: &str) -> String {
    let out = lab::must(&["ip", "-n", ns, "-j", "link", "show", ifname]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

#[test]
fn a_passthru_lowers_address_settles_and_comes_back_even_after_sigkill() {
    need_root!();
    let (mut lab, host, _ext) = base("h-ptmac", false);
    let original = mac_of(&host, "eth0");
    // The oracle: the kernel's passthru macvlan on a twin lower gives the lower the address it
    // is set to, and the lower gets its own back when the port goes.
    lab::must(&[
        "ip", "-n", &host, "link", "add", "keth0", "type", "veth", "peer", "kp0",
    ])
    .unwrap();
    let kernel_original = mac_of(&host, "keth0");
    for words in [
        &[
            "link", "add", "link", "keth0", "name", "kpt", "type", "macvlan", "mode", "passthru",
        ][..],
        &["link", "set", "kpt", "address", "02:12:34:56:78:9d"],
    ] {
        lab::must(&[&["ip", "-n", &host][..], words].concat()).unwrap();
    }
    assert_eq!(mac_of(&host, "keth0"), "02:12:34:56:78:9d");
    lab::must(&["ip", "-n", &host, "link", "del", "kpt"]).unwrap();
    assert_eq!(mac_of(&host, "keth0"), kernel_original);
    // umacvlan's, left in the daemon's namespace, where its TAP's own creation events arrive
    // at once.
    lab.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mvpt", "type", "macvlan", "mode", "passthru",
    ])
    .unwrap();
    // As the kernel's: the macvlan's address change is applied to the lower.
    lab.cli_ok(&["link", "set", "mvpt", "address", "02:12:34:56:78:9a"])
        .unwrap();
    // Its guardian runs with CAP_NET_ADMIN alone.
    let guardian = lab::must(&[
        "pgrep",
        "-f",
        "-P",
        &lab.daemon_pid().unwrap().to_string(),
        "daemon --guardian",
    ])
    .unwrap();
    let gpid: u32 = guardian.trim().parse().unwrap();
    for (name, sets) in thread_caps(gpid) {
        assert_eq!(
            sets,
            [
                mask(&[CAP_NET_ADMIN]),
                mask(&[CAP_NET_ADMIN]),
                mask(&[CAP_NET_ADMIN]),
                0,
                0
            ],
            "{name}"
        );
    }
    // And it stays put: no echo of an older address (from events still queued) may set it
    // back and start the two chasing each other.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(mac_of(&host, "eth0"));
        seen.insert(mac_of(&host, "mvpt"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["02:12:34:56:78:9a"],
        "lower and macvlan settle on the new address"
    );
    // A change made with plain iproute2 on the macvlan goes the same way.
    lab::must(&[
        "ip",
        "-n",
        &host,
        "link",
        "set",
        "mvpt",
        "address",
        "02:12:34:56:78:9b",
    ])
    .unwrap();
    wait_for("lower follows", || {
        mac_of(&host, "eth0") == "02:12:34:56:78:9b"
    });
    // The daemon dies without a word: its guardian puts the lower's address back, as the
    // kernel does when the port goes.
    lab.stop_daemon("KILL");
    wait_for("lower's own address back", || {
        mac_of(&host, "eth0") == original
    });
    // An orderly delete does the same, as the kernel's did above.
    lab.start_daemon(&host, &[]).unwrap();
    lab.cli_ok(&[
        "link", "add", "link", "eth0", "name", "mvpt", "type", "macvlan", "mode", "passthru",
    ])
    .unwrap();
    lab.cli_ok(&["link", "set", "mvpt", "address", "02:12:34:56:78:9c"])
        .unwrap();
    wait_for("changed", || mac_of(&host, "eth0") == "02:12:34:56:78:9c");
    lab.cli_ok(&["link", "del", "mvpt"]).unwrap();
    assert_eq!(mac_of(&host, "eth0"), original);
}

#[test]
fn a_netns_path_that_is_not_a_namespace_is_refused_at_once_and_changes_nothing() {
    need_root!();
    let (mut lab, _host, _ext) = base("h-nsp", false);
    macvlan(&mut lab, "mva", &["mode", "bridge"], 11);
    let before = show_json(&lab);
    let dir = std::env::temp_dir().join(format!("umv-nsp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    for path in [
        fifo.to_str().unwrap(),
        file.to_str().unwrap(),
        "/dev/null",
        dir.to_str().unwrap(),
    ] {
        for words in [
            vec![
                "link", "add", "link", "eth0", "name", "mvx", "netns", path, "type", "macvlan",
            ],
            vec!["link", "set", "mva", "netns", path],
        ] {
            let t = Instant::now();
            let r = lab.cli(&words);
            assert_eq!(r.code, 2, "{words:?}: {r:?}");
            // What `ip` prints once the kernel has refused such an fd.
            assert_eq!(
                r.stderr.trim(),
                "RTNETLINK answers: Invalid argument",
                "{words:?}"
            );
            // A FIFO opened for reading would block until a writer came: never here.
            assert!(t.elapsed() < Duration::from_secs(5), "{words:?} blocked");
        }
    }
    let after = show_json(&lab);
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after[0]["linkinfo"], before[0]["linkinfo"]);
    assert_eq!(after[0]["ifname"], "mva");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ok_is_answered_only_once_the_state_file_holds_the_change() {
    need_root!();
    let (mut lab, host, _ext) = base("h-durable", false);
    lab.stop_daemon("TERM");
    let dir = std::env::temp_dir().join(format!("{}.d", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let state_arg = state.to_str().unwrap().to_string();
    lab.start_daemon(&host, &["--state", &state_arg]).unwrap();
    // Every `ok` finds its macvlan in the files already: no waiting here.
    let mut names = Vec::new();
    for i in 0..10 {
        let name = format!("mvd{i}");
        lab.cli_ok(&[
            "link", "add", "link", "eth0", "name", &name, "type", "macvlan", "mode", "bridge",
        ])
        .unwrap();
        names.push(name);
        assert_eq!(saved_names(&state), names);
    }
    // The first change wrote a snapshot; the others went to the journal, a line each.
    let snapshot = std::fs::read_to_string(&state).unwrap();
    assert!(snapshot.contains("\"mvd0\"") && !snapshot.contains("\"mvd9\""));
    let journal = std::fs::read_to_string(umacvlan::daemon::state::journal_path(&state)).unwrap();
    assert!(journal.lines().count() > 9, "{journal}");
    lab.cli_ok(&["link", "del", "mvd3"]).unwrap();
    names.retain(|n| n != "mvd3");
    assert_eq!(saved_names(&state), names);
    // When the file cannot be written, the answer says so instead of `ok`.
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap(); // the rename onto it fails
    let r = lab.cli(&[
        "link", "add", "link", "eth0", "name", "mvdx", "type", "macvlan",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("could not be written"), "{}", r.stderr);
    lab.stop_daemon("TERM");
    std::fs::remove_dir_all(&dir).unwrap();
}
