//! `monitor`, `trace` and `capture` against a running daemon: decisions named as the spec
//! names them, drops filtered, nothing sent by a trace, pcapng that tcpdump and tshark read
//! with the decision in each packet's comment.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

/// A streaming CLI process (monitor or capture) and the lines it printed so far.
struct Stream {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Stream {
    fn start(lab: &Lab, args: &[&str]) -> Stream {
        let mut child = Command::new(BIN)
            .arg("--socket")
            .arg(lab.socket())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Stream {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    fn take(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    fn any(&mut self, f: impl Fn(&str) -> bool) -> bool {
        self.take();
        self.seen.iter().any(|l| f(l))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Repeats `traffic` until `done` holds (the monitor may subscribe after the first frames).
fn drive(what: &str, mut traffic: impl FnMut(), mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        traffic();
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// [`drive`], showing what a stream printed when it times out.
fn drive_seen(what: &str, s: &mut Stream, traffic: impl FnMut(), done: impl Fn(&str) -> bool) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drive(what, traffic, || s.any(&done))
    }));
    if r.is_err() {
        s.take();
        panic!(
            "timed out waiting for {what}; the stream printed:\n{}",
            s.seen.join("\n")
        );
    }
}

fn lab3(tag: &str) -> (Lab, String, String, [String; 3]) {
    let (mut lab, host, ext) = base(tag, true);
    let n1 = macvlan(&mut lab, "mv1", &["mode", "bridge"], 11);
    let n2 = macvlan(&mut lab, "mv2", &["mode", "bridge"], 12);
    let n3 = macvlan(&mut lab, "mv3", &["mode", "private"], 13);
    (lab, host, ext, [n1, n2, n3])
}

fn json(l: &str) -> serde_json::Value {
    serde_json::from_str(l).unwrap_or(serde_json::Value::Null)
}

#[test]
fn monitor_names_each_decision_and_drops_shows_only_drops() {
    need_root!();
    let (lab, _host, ext, ns) = lab3("obsmon");
    let mut all = Stream::start(&lab, &["monitor", "-j"]);
    let mut drops = Stream::start(&lab, &["monitor", "drops"]);
    let mut mv3 = Stream::start(&lab, &["monitor", "dev", "mv3"]);

    // Bridge to bridge: local delivery, named with its target, counters listed.
    drive_seen(
        "bridge: to sibling mv2",
        &mut all,
        || {
            lab.ping(&ns[0], "10.50.0.12", 1);
        },
        |l| {
            let e = json(l);
            e["rule"] == "bridge: to sibling mv2"
                && e["dev"] == "mv1"
                && e["entry"] == "macvlan"
                && e["reason"] == "local"
                && e["to"][0] == "mv2"
                && e["counters"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|x| x == "rx_packets"))
        },
    );
    // Private: its ARP goes to the wire, and the hairpin switch's reflection comes back to
    // it alone.
    drive(
        "private decisions",
        || {
            lab.ping(&ns[2], "10.50.0.11", 1);
        },
        || {
            mv3.any(|l| l.contains("from mv3") && l.contains(": private: to the wire;"))
                && mv3.any(|l| {
                    l.contains("from wire")
                        && l.contains("private: own multicast reflected, back to mv3 only")
                })
        },
    );
    // A drop: a group nobody joined, sent from outside.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drive(
            "a multicast-filter drop",
            || {
                lab.exec(
                    &ext,
                    &["ping", "-c", "1", "-W", "1", "-I", "br0", "239.1.2.3"],
                );
            },
            || {
                drops.any(|l| {
                    l.contains("> 01:00:5e:01:02:03 ipv4")
                        && l.contains("multicast filter: group not joined")
                        && l.ends_with(" DROP")
                })
            },
        )
    }));
    if r.is_err() {
        all.take();
        drops.take();
        panic!(
            "no drop line; drops printed {:#?}; all printed for the group: {:#?}",
            drops.seen,
            all.seen
                .iter()
                .filter(|l| l.contains("01:00:5e:01:02:03"))
                .collect::<Vec<_>>()
        );
    }
    drops.take();
    assert!(
        drops.seen.iter().all(|l| l.ends_with(" DROP")),
        "only drops: {:#?}",
        drops.seen
    );
    mv3.take();
    assert!(
        mv3.seen
            .iter()
            .all(|l| l.contains("mv3") || l.contains("multicast: to the broadcast queue")),
        "only mv3's decisions (and the broadcasts it may get): {:#?}",
        mv3.seen
    );
    // Every JSON line is an event or a lost count.
    all.take();
    for l in &all.seen {
        let v = json(l);
        assert!(
            v["rule"].is_string() || v["lost"].is_u64(),
            "unexpected line {l}"
        );
    }
    eprintln!("sample (monitor drops):\n{}", drops.seen.join("\n"));
}

#[test]
fn monitor_of_an_unknown_device_is_refused_like_ip() {
    need_root!();
    let (lab, _host, _ext) = base("obsbad", false);
    let r = lab.cli(&["monitor", "dev", "nope"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "Cannot find device \"nope\"\n");
    let r = lab.cli(&["monitor", "bogus"]);
    assert_eq!(r.code, 255);
    assert_eq!(
        r.stderr,
        "Error: either \"dev\" is duplicate, or \"bogus\" is a garbage.\n"
    );
}

#[test]
fn trace_explains_without_sending() {
    need_root!();
    let (lab, _host, _ext, _ns) = lab3("obstrace");
    let v = show_json(&lab);
    let mac1 = link(&v, "mv1")["address"].as_str().unwrap().to_string();
    let mac2 = link(&v, "mv2")["address"].as_str().unwrap().to_string();
    let rx_before = link(&v, "mv2")["stats64"]["rx"]["packets"].clone();
    let out = lab
        .cli_ok(&["trace", "dev", "mv1", "frame", "src", &mac1, "dst", &mac2])
        .unwrap();
    assert!(out.contains("Verdict: bridge: to sibling mv2\n"), "{out}");
    assert!(
        out.contains("-> copy to mv2 (host): rx_packets +1, rx_bytes +60"),
        "{out}"
    );
    let out = lab
        .cli_ok(&[
            "trace",
            "lower",
            "eth0",
            "frame",
            "src",
            "02:ee:00:00:00:09",
            "dst",
            "ff:ff:ff:ff:ff:ff",
            "ethertype",
            "arp",
        ])
        .unwrap();
    assert!(
        out.contains("Verdict: multicast: to the broadcast queue"),
        "{out}"
    );
    assert!(
        out.contains("mv3 (private, up): -> copy to mv3")
            || out.contains("-> copy to mv3 (broadcast)"),
        "{out}"
    );
    let out = lab
        .cli_ok(&[
            "-j", "trace", "dev", "mv3", "frame", "src", &mac1, "dst", &mac2,
        ])
        .unwrap();
    let j = json(out.trim());
    assert_eq!(j["trace"]["verdict"], "private: to the wire", "{out}");
    // Nothing was sent: mv2 received nothing from the traces.
    let v = show_json(&lab);
    assert_eq!(link(&v, "mv2")["stats64"]["rx"]["packets"], rx_before);
    let r = lab.cli(&["trace", "dev", "nope", "frame", "src", &mac1, "dst", &mac2]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "Cannot find device \"nope\"\n")
    );
}

fn tool_output(args: &[&str]) -> String {
    let r = lab::run(args);
    assert!(r.ok(), "{args:?} failed: {}", r.stderr);
    r.stdout
}

#[test]
fn capture_writes_pcapng_that_tcpdump_and_tshark_read_with_decision_comments() {
    need_root!();
    let (lab, _host, _ext, ns) = lab3("obscap");
    let dir = std::env::temp_dir().join(format!("{}-cap", lab.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let file = dir.join("mv2.pcapng");
    let file_s = file.to_string_lossy().into_owned();
    // -w FILE, rx only, four packets.
    let mut cap = Stream::start(
        &lab,
        &["capture", "dev", "mv2", "rx", "-c", "4", "-w", &file_s],
    );
    drive(
        "four packets captured",
        || {
            lab.ping(&ns[0], "10.50.0.12", 1);
        },
        || matches!(cap.child.try_wait(), Ok(Some(_))),
    );
    let text = tool_output(&["tcpdump", "-n", "-r", &file_s]);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.contains("10.50.0.11 > 10.50.0.12: ICMP echo request"),
        "{text}"
    );
    let comments = tool_output(&[
        "tshark",
        "-r",
        &file_s,
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ]);
    assert_eq!(comments.lines().count(), 4, "{comments}");
    assert!(
        comments.lines().all(|c| c.starts_with("umacvlan: ")),
        "{comments}"
    );
    assert!(
        comments.contains("umacvlan: bridge: to sibling mv2"),
        "{comments}"
    );
    // -w -: the same format on stdout (for `… | wireshark -k -i -`); tx side this time.
    let mut child = Command::new(BIN)
        .arg("--socket")
        .arg(lab.socket())
        .args(["capture", "dev", "mv1", "tx", "-c", "2", "-w", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    drive(
        "two packets on stdout",
        || {
            lab.ping(&ns[0], "10.50.0.12", 1);
        },
        || matches!(child.try_wait(), Ok(Some(_))),
    );
    let bytes = reader.join().unwrap();
    let piped = dir.join("stdout.pcapng");
    std::fs::write(&piped, &bytes).unwrap();
    let piped_s = piped.to_string_lossy().into_owned();
    let comments = tool_output(&[
        "tshark",
        "-r",
        &piped_s,
        "-T",
        "fields",
        "-e",
        "frame.comment",
        "-e",
        "eth.src",
    ]);
    let mac1 = link(&show_json(&lab), "mv1")["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(comments.lines().count(), 2, "{comments}");
    assert!(
        comments
            .lines()
            .all(|l| l.starts_with("umacvlan: bridge: ") && l.ends_with(&mac1)),
        "{comments}"
    );
}

struct Cleanup(std::path::PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fast path's tracing switch (`umv_ctl.trace`) in daemon `pid`'s programs: the one
/// single-entry array map of 16-byte values among its BPF map fds, read with bpftool.
fn fast_trace_switch(pid: u32) -> u64 {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        if field("map_type:").as_deref() == Some("2")
            && field("max_entries:").as_deref() == Some("1")
            && field("value_size:").as_deref() == Some("16")
        {
            ids.extend(field("map_id:"));
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "the daemon's umv_ctl map: {ids:?}");
    let out = tool_output(&["bpftool", "-j", "map", "dump", "id", &ids[0]]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let value = &v[0]["value"];
    // With BTF bpftool names the fields; without, it prints the bytes.
    match value.get("trace") {
        Some(t) => t.as_u64().unwrap(),
        None => {
            u64::from_str_radix(value[0].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        }
    }
}

/// On the eBPF data path the programs' decisions reach `monitor` too, named as the engine
/// names them (from the wire, local bridge frames once), and the programs trace only while
/// someone listens.
#[test]
fn monitor_on_the_bpf_datapath_shows_what_the_programs_forward() {
    need_root!();
    let (mut lab, _host, ext) = base_with("obsbpf", true, &["--datapath", "bpf"]);
    let n1 = macvlan(&mut lab, "mv1", &["mode", "bridge"], 11);
    macvlan(&mut lab, "mv2", &["mode", "bridge"], 12);
    let pid = lab.daemon_pid().unwrap();
    assert_eq!(
        fast_trace_switch(pid),
        0,
        "tracing off while nobody listens"
    );
    let mut all = Stream::start(&lab, &["monitor", "-j"]);
    wait_for("tracing on", || fast_trace_switch(pid) == 1);
    drive_seen(
        "from the wire: unicast to mv1",
        &mut all,
        || {
            lab.ping(&ext, "10.50.0.11", 1);
        },
        |l| {
            let e = json(l);
            e["entry"] == "lower"
                && e["reason"] == "unicast"
                && e["to"][0] == "mv1"
                && e["ethertype"] == 0x0800
        },
    );
    drive_seen(
        "bridge: to sibling mv2",
        &mut all,
        || {
            lab.ping(&n1, "10.50.0.12", 1);
        },
        |l| {
            let e = json(l);
            e["entry"] == "macvlan"
                && e["dev"] == "mv1"
                && e["reason"] == "local"
                && e["to"][0] == "mv2"
                && e["ethertype"] == 0x0800
        },
    );
    // The local frames' second half (back through the lower's receive path) is not a
    // decision of its own.
    all.take();
    let mv1_mac = all
        .seen
        .iter()
        .map(|l| json(l))
        .find(|e| e["dev"] == "mv1")
        .map(|e| e["src"].clone())
        .unwrap();
    assert!(
        !all.seen
            .iter()
            .map(|l| json(l))
            .any(|e| e["entry"] == "lower" && e["src"] == mv1_mac && e["to"][0] == "mv2"),
        "local frames recorded twice: {:#?}",
        all.seen
    );
    drop(all);
    wait_for("tracing off again", || fast_trace_switch(pid) == 0);
}
