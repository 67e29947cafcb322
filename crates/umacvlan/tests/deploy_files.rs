//! The deployment files agree with the binary and pass their own tools: the Kubernetes
//! manifests validate against the Kubernetes schemas (kubernetes-validate, strict) and the
//! Multus CRD's, their CNI configuration is one the plugin accepts and their daemon flags
//! parse; the systemd unit passes `systemd-analyze verify` and its ExecStart parses; the
//! default configuration file parses. No root needed.

use clap::Parser;
use std::path::{Path, PathBuf};
use umacvlan::cni::config::{Env, NetConf};
use umacvlan::daemon::DaemonArgs;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn daemon_args(args: &[String]) -> DaemonArgs {
    DaemonArgs::try_parse_from(
        std::iter::once("umacvlan daemon".to_string()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("daemon flags {args:?}: {e}"))
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let out = std::process::Command::new("python3")
        .arg(repo().join("deploy/kubernetes/validate.py"))
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "validate.py (needs `pip install kubernetes-validate`, as .ci/setup does): {stderr}"
    );
    let (mut configs, mut daemons) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(c) = v["cni_config"].as_str() {
            let conf = NetConf::parse(c.as_bytes()).unwrap();
            conf.check_version().unwrap();
            assert_eq!(conf.kind, "umacvlan");
            assert_eq!(conf.ipam_type().unwrap().as_deref(), Some("host-local"));
            conf.macvlan_spec(&Env::default(), 1500).unwrap();
            configs += 1;
        }
        if let Some(a) = v["daemon_args"].as_array() {
            let a: Vec<String> = a.iter().map(|s| s.as_str().unwrap().to_string()).collect();
            let d = daemon_args(&a);
            assert_eq!(
                d.socket,
                Path::new(umacvlan::proto::DEFAULT_SOCKET),
                "the plugin's default"
            );
            daemons += 1;
        }
    }
    assert_eq!((configs, daemons), (1, 1));
}

#[test]
fn systemd_unit_and_default_config_match_the_binary() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/umacvlan.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}="))
            .to_string()
    };
    assert_eq!(value("Type"), "notify");
    let exec: Vec<String> = value("ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(exec[..2], ["/usr/bin/umacvlan", "daemon"]);
    let d = daemon_args(&exec[2..]);
    assert_eq!(
        d.config.as_deref(),
        Some(Path::new(umacvlan::daemon::config::DEFAULT_PATH))
    );
    assert!(value("ExecReload").starts_with("/usr/bin/umacvlan reload"));
    // The default configuration parses (and declares nothing).
    let default = repo().join("deploy/umacvlan.toml");
    let text = std::fs::read_to_string(&default).unwrap();
    assert!(umacvlan::daemon::config::parse(&default, &text)
        .unwrap()
        .is_empty());

    // systemd-analyze verify, in a root holding the system's units and this binary at the
    // unit's path (the package test verifies the installed unit with its man page).
    let root = std::env::temp_dir().join(format!("umv-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["usr/bin", "etc/systemd/system", "usr/lib/systemd"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(
        env!("CARGO_BIN_EXE_umacvlan"),
        root.join("usr/bin/umacvlan"),
    )
    .unwrap();
    std::fs::write(root.join("etc/systemd/system/umacvlan.service"), &unit).unwrap();
    let cp = std::process::Command::new("cp")
        .args(["-r", "/lib/systemd/system"])
        .arg(root.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(cp.success());
    let v = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg("/etc/systemd/system/umacvlan.service")
        .output()
        .expect("systemd-analyze (.ci/setup installs systemd)");
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        v.status.success() && v.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&v.stderr)
    );
}
