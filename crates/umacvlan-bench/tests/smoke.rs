//! Smoke test of the benchmark suite, so that `bench/run` cannot rot: runs
//! `bench/run --smoke` — one short repetition of ping and the 60-byte frame test for the
//! kernel macvlan and umacvlan — against this build, and checks the outputs. Needs root
//! (skips with a note otherwise, fails under CI or UMACVLAN_REQUIRE_ROOT=1); takes a few seconds.
//!
//! The umacvlan binary under test is this crate's binary under the name `umacvlan` (a
//! symlink: invoked so, it is the umacvlan command), so no other package has to be built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn bench_run_smoke() {
    if !is_root() {
        // CI sets `CI`; there (or with UMACVLAN_REQUIRE_ROOT=1) a skip would be a silent pass.
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty())
            || std::env::var("UMACVLAN_REQUIRE_ROOT").is_ok_and(|v| v == "1")
        {
            panic!("the benchmark smoke test needs root, and CI or UMACVLAN_REQUIRE_ROOT=1 says it must run");
        }
        eprintln!("skipped: the benchmark smoke test needs root");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_umacvlan-bench"));
    let dir = std::env::temp_dir().join(format!("umv-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = RemoveOnDrop(dir.clone());
    let bins = dir.join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    std::os::unix::fs::symlink(&bench, bins.join("umacvlan-bench")).unwrap();
    std::os::unix::fs::symlink(&bench, bins.join("umacvlan")).unwrap();
    let out = dir.join("out");

    let t = Instant::now();
    let o = Command::new(repo.join("bench/run"))
        .arg("--smoke")
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("cannot run bench/run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench/run --smoke failed: {stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "smoke run too slow: {:?}",
        t.elapsed()
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let samples = json["samples"].as_array().unwrap();
    let value = |system: &str, metric: &str| {
        samples
            .iter()
            .find(|s| s["system"] == system && s["metric"] == metric)
            .and_then(|s| s["value"].as_f64())
    };
    for system in ["kernel-macvlan", "umacvlan"] {
        let st = json["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == system)
            .unwrap_or_else(|| panic!("{system} missing: {stderr}"));
        assert_eq!(st["status"], "ok", "{system}: {st}");
        let d = value(system, "l2_delivered_pps")
            .unwrap_or_else(|| panic!("{system}: no frame rate: {stderr}"));
        assert!(d > 1000.0, "{system} delivered only {d} frames/s");
        let rtt =
            value(system, "ping_avg_us").unwrap_or_else(|| panic!("{system}: no ping: {stderr}"));
        assert!(rtt > 0.0 && rtt < 100_000.0, "{system}: RTT {rtt} µs");
    }
    assert!(
        value("umacvlan", "l2_switch_ns_per_frame").is_some(),
        "no CPU per frame for the daemon"
    );
    assert!(
        value("umacvlan", "switch_rss_kib").is_some(),
        "no RSS for the daemon"
    );
    assert!(
        json["errors"].as_array().unwrap().is_empty(),
        "errors: {}",
        json["errors"]
    );

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| umacvlan (tap), bridge |"), "{md}");
    assert!(md.contains("×1.00"), "no ratios: {md}");
    for svg in ["l2_delivered_pps.svg", "ping_avg_us.svg"] {
        let s = std::fs::read_to_string(out.join(svg)).unwrap_or_default();
        assert!(
            s.starts_with("<svg") && s.contains("umacvlan"),
            "{svg} is not a plot"
        );
    }
    // Nothing left behind: every benchmark namespace still there belongs to a live run.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for line in String::from_utf8_lossy(&ns.stdout).lines() {
        if let Some(rest) = line.strip_prefix("umv-bench-") {
            let pid = rest.split('-').next().unwrap_or("");
            assert!(
                Path::new("/proc").join(pid).exists(),
                "namespace left behind: {line}"
            );
        }
    }
}

/// Removes a directory when dropped (also when the test fails).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
