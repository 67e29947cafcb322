//! `umacvlan demo --soak` for a short while: traffic and control churn against one daemon, with
//! the soak's own checks (RSS flat, every datagram accounted for, a clean log, no fd or thread
//! leaked) turned into this test's verdict. `UMACVLAN_SOAK_MINUTES` sets the duration (default
//! 0.3 minutes; the whole test then takes about 25 s).

use std::time::Instant;
use umacvlan_lab::lab;

mod common;

#[test]
fn a_short_soak_passes_every_check_and_leaves_nothing_behind() {
    need_root!();
    common::build_demo_program();
    let minutes = std::env::var("UMACVLAN_SOAK_MINUTES").unwrap_or_else(|_| "0.3".into());
    let t = Instant::now();
    let child = std::process::Command::new(common::BIN)
        .args(["demo", "--soak", &minutes])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the soak");
    let pid = child.id();
    let out = child.wait_with_output().expect("soak output");
    let r = lab::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let wall = t.elapsed().as_secs_f64();
    eprintln!(
        "{}\n{}\n(soak of {minutes} min: {wall:.1} s)",
        r.stdout, r.stderr
    );
    assert_eq!(r.code, 0, "soak failed:\n{}\n{}", r.stdout, r.stderr);
    // Each check reported, and passed.
    for expect in [
        "(a) RSS: PASS",
        "(b) frames: PASS",
        "lost and not covered by a drop counter: 0",
        "umacvlan vs TAP counters, 64 macvlans",
        "Δrx TAP",
        "(c) log: PASS",
        "(d) resources: PASS",
        "leftovers none",
        "Cleaning up",
        "done.",
        "soak: PASS",
    ] {
        assert!(
            r.stdout.contains(expect),
            "missing {expect:?} in:\n{}",
            r.stdout
        );
    }
    assert!(!r.stdout.contains("FAIL"), "{}", r.stdout);
    let counters = r
        .stdout
        .lines()
        .find(|l| l.contains("umacvlan vs TAP counters"))
        .expect("counter line");
    assert!(counters.ends_with(": equal"), "{counters}");
    for l in r.stdout.lines().filter(|l| l.contains("        ping ")) {
        assert!(!l.contains("lost"), "{l}");
    }
    // Traffic really flowed in every class, and the churn really ran.
    for class in [
        "unicast ext → macvlan",
        "unicast macvlan → macvlan",
        "unicast macvlan → ext",
        "broadcast ext → all",
        "multicast ext → joined",
    ] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(class))
            .unwrap_or_else(|| panic!("no {class:?} line in:\n{}", r.stdout));
        let received: u64 = field(line, "received");
        let expected: u64 = field(line, "expected");
        assert!(received > 0 && received == expected, "{line}");
    }
    let churn = r
        .stdout
        .lines()
        .find(|l| l.contains("churn:"))
        .expect("churn line");
    assert!(field(churn, "churn:") > 0, "no churn cycle: {churn}");
    assert!(churn.contains(" 0 ended wrongly"), "{churn}");
    // Nothing of this soak left: namespaces, daemon.
    let prefix = format!("umv-soak-{pid}-");
    let procs = lab::run(&["pgrep", "-f", &format!("daemon --socket /tmp/{prefix}")]);
    assert!(procs.stdout.trim().is_empty(), "daemon left running");
    let left = lab::namespaces_with_prefix(&prefix);
    assert!(left.is_empty(), "namespaces left: {left:?}");
}

/// The number right after `key` in `line` ("received   1234," → 1234).
fn field(line: &str, key: &str) -> u64 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} in {line}"))
        + key.len()..];
    rest.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {key:?} in {line}"))
}
