//! Helpers shared by the root integration tests: a lab with an "external host", macvlans in
//! their own namespaces, and readers of what the kernel shows.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

pub const BIN: &str = env!("CARGO_BIN_EXE_umacvlan");

/// Skips (passes with a note) when not root; fails instead when `CI` is set or
/// `UMACVLAN_REQUIRE_ROOT=1` (see `lab::skip_root_test`), so CI cannot pass by skipping.
#[macro_export]
macro_rules! need_root {
    () => {
        if !umacvlan_lab::lab::can_build_labs() {
            umacvlan_lab::lab::skip_root_test("needs root and iproute2");
            return;
        }
    };
}

/// host (daemon, lower eth0) ↔ ext (10.50.0.1 on eth0, or on a hairpin bridge).
pub fn base(tag: &str, hairpin: bool) -> (Lab, String, String) {
    base_with(tag, hairpin, &[])
}

/// host (lower eth0) ↔ ext (10.50.0.1 on eth0, or on a hairpin bridge), no daemon yet.
pub fn host_and_ext(tag: &str, hairpin: bool) -> (Lab, String, String) {
    let mut lab = Lab::new(tag, std::path::Path::new(BIN));
    let host = lab.ns("host").unwrap();
    let ext = lab.ns("ext").unwrap();
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    if hairpin {
        lab.hairpin_switch(&ext, "eth0", "10.50.0.1/24").unwrap();
    } else {
        lab.addr(&ext, "eth0", "10.50.0.1/24").unwrap();
    }
    (lab, host, ext)
}

/// [`base`], with more daemon arguments (e.g. `--datapath bpf`).
pub fn base_with(tag: &str, hairpin: bool, daemon_args: &[&str]) -> (Lab, String, String) {
    let (mut lab, host, ext) = host_and_ext(tag, hairpin);
    let mut args = vec!["--log", "debug"];
    args.extend_from_slice(daemon_args);
    lab.start_daemon(&host, &args).unwrap();
    (lab, host, ext)
}

/// Creates macvlan `name` in its own namespace `name` with address 10.50.0.`last`.
pub fn macvlan(lab: &mut Lab, name: &str, words: &[&str], last: u8) -> String {
    let ns = lab.ns(name).unwrap();
    let mut args = vec![
        "link",
        "add",
        "link",
        "eth0",
        "name",
        name,
        "netns",
        ns.as_str(),
        "type",
        "macvlan",
    ];
    args.extend_from_slice(words);
    lab.cli_ok(&args).unwrap();
    lab.addr(&ns, name, &format!("10.50.0.{last}/24")).unwrap();
    ns
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub fn show_json(lab: &Lab) -> serde_json::Value {
    serde_json::from_str(&lab.cli_ok(&["-d", "-s", "-j", "link", "show"]).unwrap()).unwrap()
}

/// The names `link show` lists, in its order.
pub fn shown_names(lab: &Lab) -> Vec<String> {
    show_json(lab)
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

pub fn link<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v.as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == name)
        .unwrap_or_else(|| panic!("{name} not shown: {v}"))
}

pub fn promiscuity(ns: &str, ifname: &str) -> u64 {
    let out = lab::must(&["ip", "-n", ns, "-d", "-j", "link", "show", ifname]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["promiscuity"].as_u64().unwrap()
}

/// The lower's link-layer multicast list, as `ip maddr` shows it.
pub fn lower_groups(ns: &str, ifname: &str) -> Vec<String> {
    let out = lab::must(&["ip", "-n", ns, "maddr", "show", "dev", ifname]).unwrap();
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("link  ")
                .map(|g| g.trim().to_string())
        })
        .collect();
    v.sort();
    v
}

/// The lower's unicast and multicast address lists (its "self" fdb entries), as
/// `bridge fdb show dev` prints them.
pub fn lower_fdb(ns: &str, ifname: &str) -> Vec<String> {
    let out = lab::must(&["bridge", "-n", ns, "fdb", "show", "dev", ifname]).unwrap();
    let mut v: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
    v.sort();
    v
}

/// The names of the macvlans the `--state` files at `path` hold (snapshot and journal), in
/// creation order.
pub fn saved_names(path: &std::path::Path) -> Vec<String> {
    umacvlan::daemon::state::load(path)
        .links
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// Makes sure `umacvlan-demo` (the lab crate's program, which `umacvlan demo` becomes) is
/// built beside [`BIN`]: `cargo test` builds only this package's binaries for its tests.
pub fn build_demo_program() {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "umacvlan-lab",
        "--bin",
        "umacvlan-demo",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("run cargo");
    assert!(st.success(), "cargo build -p umacvlan-lab failed: {st}");
}
