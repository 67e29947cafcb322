//! `umacvlan demo` runs to completion and leaves nothing behind.

use umacvlan::lab;

#[test]
fn demo_runs_to_completion_and_leaves_no_namespace_link_or_process() {
    if !lab::can_build_labs() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
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
        "[6/6]",
        "This is exactly what kernel macvlans show",
        "macvlan mode private",
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
