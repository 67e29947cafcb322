//! The machine's facts, recorded with every run: cores, CPU, memory, kernel, load, and the
//! versions of everything measured.

use serde_json::{json, Value};
use umacvlan_lab::lab::run;

fn first_line(args: &[&str]) -> Option<String> {
    let r = run(args);
    let s = if r.stdout.trim().is_empty() {
        r.stderr
    } else {
        r.stdout
    };
    let l = s.lines().find(|l| !l.trim().is_empty())?.trim().to_string();
    if r.code == 127 {
        None
    } else {
        Some(l)
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The load averages now (1, 5, 15 minutes).
pub fn loadavg() -> Option<String> {
    read("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Collects the facts. `umacvlan` is the binary under test, `repo` the source tree.
pub fn collect(umacvlan: &std::path::Path, repo: Option<&std::path::Path>) -> Value {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string());
    let mem_kib = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    });
    let git = repo.and_then(|r| {
        let r = r.to_string_lossy().into_owned();
        let rev = run(&["git", "-C", &r, "rev-parse", "--short", "HEAD"]);
        if !rev.ok() {
            return None;
        }
        let dirty = !run(&[
            "git",
            "-C",
            &r,
            "status",
            "--porcelain",
            "--untracked-files=no",
        ])
        .stdout
        .trim()
        .is_empty();
        Some(format!(
            "{}{}",
            rev.stdout.trim(),
            if dirty { "-dirty" } else { "" }
        ))
    });
    let bin = umacvlan.to_string_lossy().into_owned();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_total_mib": mem_kib.map(|k| k / 1024),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "os": read("/etc/os-release").and_then(|s| s.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| l.trim_start_matches("PRETTY_NAME=").trim_matches('"').to_string())),
        "loadavg_start": loadavg(),
        "umacvlan_binary": bin,
        "umacvlan_version": first_line(&[&bin, "-V"]),
        "umacvlan_git": git,
        "rustc": first_line(&["rustc", "-V"]),
        "iproute2": first_line(&["ip", "-V"]),
        "iperf3": first_line(&["iperf3", "-v"]),
        "ping": first_line(&["ping", "-V"]),
        "vde_switch": first_line(&["vde_switch", "-v"]),
        "ovs_vswitchd": first_line(&["ovs-vswitchd", "--version"]),
        "perf": first_line(&["perf", "--version"]),
    })
}
