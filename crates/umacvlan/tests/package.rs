//! The .deb (`packaging/build-deb`): built from this build's binaries, installed with
//! `dpkg -i` (binary, CNI plugin in /usr/lib/cni and /opt/cni/bin, unit, default
//! configuration, man pages, completions; the unit passes `systemd-analyze verify` with its
//! man page and binary in place), removed with `dpkg -r` (files gone, the configuration kept as
//! a conffile), purged with `dpkg -P` (nothing left). Root only: it installs on this machine,
//! so it refuses to run where umacvlan is already installed rather than remove it.

mod common;

use std::path::Path;
use umacvlan_lab::lab;

const FILES: &[&str] = &[
    "/usr/bin/umacvlan",
    "/usr/lib/cni/umacvlan",
    "/opt/cni/bin/umacvlan",
    "/lib/systemd/system/umacvlan.service",
    "/usr/share/man/man8/umacvlan.8.gz",
    "/usr/share/man/man8/umacvlan-daemon.8.gz",
    "/usr/share/man/man8/umacvlan-cni.8.gz",
    "/usr/share/bash-completion/completions/umacvlan",
    "/usr/share/zsh/vendor-completions/_umacvlan",
    "/usr/share/fish/vendor_completions.d/umacvlan.fish",
];
const CONFIG: &str = "/etc/umacvlan/umacvlan.toml";

fn installed() -> bool {
    lab::run(&["dpkg-query", "-W", "-f", "${Status}", "umacvlan"])
        .stdout
        .contains("installed")
}

/// dpkg under the same lock the other engineers' apt-get runs take.
fn dpkg(args: &[&str]) -> lab::Run {
    let mut v = vec!["flock", "/tmp/apt.lock", "dpkg"];
    v.extend_from_slice(args);
    lab::run(&v)
}

/// Purges the package if a failed assertion left it installed.
struct Purge;
impl Drop for Purge {
    fn drop(&mut self) {
        if installed() {
            let _ = dpkg(&["-P", "umacvlan"]);
        }
    }
}

#[test]
fn deb_installs_and_removes_cleanly() {
    need_root!();
    assert!(
        lab::run(&["dpkg-deb", "--version"]).ok(),
        "dpkg-deb is needed (.ci/setup installs dpkg-dev)"
    );
    assert!(
        !installed(),
        "umacvlan is already installed here; this test installs and removes the package, so it \
         will not run over an existing installation"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let out = std::env::temp_dir().join(format!("umv-deb-{}", std::process::id()));
    let build = std::process::Command::new(root.join("packaging/build-deb"))
        .arg(&out)
        .env("UMACVLAN_BIN_DIR", bin_dir)
        .env("UMACVLAN_DEB_COMPRESS", "none")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build-deb: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let deb = String::from_utf8_lossy(&build.stdout).trim().to_string();
    let _purge = Purge;

    let r = dpkg(&["-i", &deb]);
    assert!(r.ok(), "dpkg -i: {}{}", r.stdout, r.stderr);
    for f in FILES.iter().chain([&CONFIG]) {
        assert!(Path::new(f).exists(), "{f} missing after dpkg -i");
    }
    // What was installed runs: the CLI, and the plugin under its installed names.
    assert!(lab::run(&["/usr/bin/umacvlan", "reload", "--help"]).ok());
    for plugin in ["/usr/lib/cni/umacvlan", "/opt/cni/bin/umacvlan"] {
        let v = lab::run(&["env", "CNI_COMMAND=VERSION", plugin]);
        assert!(
            v.ok() && v.stdout.contains("\"1.1.0\""),
            "{plugin}: {}",
            v.stdout
        );
    }
    // The unit as installed, man page and binary in place.
    let v = lab::run(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/umacvlan.service",
    ]);
    assert!(v.ok() && v.stderr.trim().is_empty(), "verify: {}", v.stderr);
    let man = lab::run(&["man", "-w", "umacvlan"]);
    assert!(
        man.stdout.contains("umacvlan.8"),
        "man -w: {}{}",
        man.stdout,
        man.stderr
    );

    let r = dpkg(&["-r", "umacvlan"]);
    assert!(r.ok(), "dpkg -r: {}{}", r.stdout, r.stderr);
    for f in FILES {
        assert!(
            std::fs::symlink_metadata(f).is_err(),
            "{f} left after dpkg -r"
        );
    }
    assert!(Path::new(CONFIG).exists(), "dpkg -r keeps the conffile");
    let r = dpkg(&["-P", "umacvlan"]);
    assert!(r.ok(), "dpkg -P: {}{}", r.stdout, r.stderr);
    assert!(!Path::new(CONFIG).exists() && !installed());
    let _ = std::fs::remove_dir_all(&out);
}
