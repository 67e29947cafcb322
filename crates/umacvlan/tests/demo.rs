//! `umacvlan demo` runs to completion and leaves nothing behind.

use umacvlan_lab::lab;

mod common;

/// The tests look for leftovers by the demo's name prefix: one demo at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn demo_runs_to_completion_and_leaves_no_namespace_link_or_process() {
    if !lab::can_build_labs() {
        lab::skip_root_test("needs root and iproute2");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::build_demo_program();
    let links_before = lab::run(&["ip", "-o", "link", "show"])
        .stdout
        .lines()
        .count();
    let r = lab::run(&[env!("CARGO_BIN_EXE_umacvlan"), "demo"]);
    assert!(
        r.ok(),
        "demo failed ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    for expect in [
        "[7/7]",
        "This is exactly what kernel macvlans show",
        "host → mv-host, hostaccess on:                           yes",
        "mv-host → host:                                          yes",
        "hostaccess on ",
        "macvlan mode private",
        "`umacvlan monitor`",
        "private: own multicast reflected, back to mv-private only",
        "Cleaning up",
        "done.",
    ] {
        assert!(
            r.stdout.contains(expect),
            "missing {expect:?} in:\n{}",
            r.stdout
        );
    }
    let ns_left: Vec<String> = lab::run(&["ip", "netns", "list"])
        .stdout
        .lines()
        .filter(|l| l.starts_with("umv-demo-"))
        .map(String::from)
        .collect();
    assert!(ns_left.is_empty(), "namespaces left: {ns_left:?}");
    assert_eq!(
        lab::run(&["ip", "-o", "link", "show"])
            .stdout
            .lines()
            .count(),
        links_before,
        "links left in the root namespace"
    );
    let procs = lab::run(&["pgrep", "-f", "umacvlan daemon --socket /tmp/umv-demo-"]);
    assert!(
        procs.stdout.trim().is_empty(),
        "daemon left running: {}",
        procs.stdout
    );
}

#[test]
fn an_interrupted_demo_still_removes_everything() {
    if !lab::can_build_labs() {
        lab::skip_root_test("needs root and iproute2");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::build_demo_program();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_umacvlan"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Interrupt while the lab is up (after the daemon has started).
    std::thread::sleep(std::time::Duration::from_millis(900));
    assert!(lab::run(&["kill", "-INT", &pid.to_string()]).ok());
    let out = child.wait_with_output().unwrap();
    let code = out.status.code();
    assert!(
        code == Some(130) || code == Some(0),
        "exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Cleaning up"), "{stdout}");
    let prefix = format!("umv-demo-{pid}-");
    let left = lab::namespaces_with_prefix(&prefix);
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let procs = lab::run(&[
        "pgrep",
        "-f",
        &format!("daemon --socket /tmp/umv-demo-{pid}-"),
    ]);
    assert!(procs.stdout.trim().is_empty(), "daemon left running");
}
