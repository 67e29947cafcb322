//! End to end with podman 4.3 (CNI backend, Debian's package): two containers from a busybox
//! root filesystem (no image registry) attach through the umacvlan plugin, get addresses
//! from host-local, ping a host in another namespace and each other; the MAC given with
//! `--mac-address` (CNI_ARGS) is the container's; the leases are released when they exit.
//! Root only; podman is run with `--root`/`--runroot` in a temporary directory and a
//! `containers.conf` of its own, so nothing global is touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use umacvlan_lab::lab::{self, Lab};

const PLUGIN: &str = env!("CARGO_BIN_EXE_umacvlan-cni");

struct Podman {
    dir: PathBuf,
    host: String,
}

impl Podman {
    fn command(&self, args: &[&str]) -> Command {
        let d = &self.dir;
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.host))
            .arg("podman")
            .arg("--network-backend")
            .arg("cni")
            .arg("--network-config-dir")
            .arg(d.join("net.d"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--runtime")
            .arg("runc")
            .args(["run", "--rm", "--ulimit", "nofile=1024:1024"])
            .args(["--ulimit", "nproc=1024:1024", "--cap-add", "NET_RAW"])
            .args(["--network", "umvpod"])
            .args(args)
            .arg("--rootfs")
            .arg(d.join("rootfs"))
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn leases(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("ipam/umvpod"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn finish(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn podman_containers_attach_through_the_plugin() {
    need_root!();
    assert!(
        lab::run(&["podman", "--version"]).ok() && Path::new("/bin/busybox").exists(),
        "podman and busybox-static are needed (.ci/setup installs them)"
    );
    let mut l = Lab::new("podman", Path::new(common::BIN));
    let host = l.ns("host").unwrap();
    let ext = l.ns("ext").unwrap();
    l.veth(&host, "eth0", &ext, "eth0").unwrap();
    l.addr(&ext, "eth0", "10.61.0.1/24").unwrap();
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "up"]).unwrap();
    l.start_daemon(&host, &[]).unwrap();

    let p = Podman {
        dir: std::env::temp_dir().join(format!("{}.podman", l.prefix())),
        host: host.clone(),
    };
    let d = &p.dir;
    for sub in ["bin", "net.d", "rootfs/bin", "ipam"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    // The plugin directory: the plugin under its installed name, and host-local.
    std::os::unix::fs::symlink(PLUGIN, d.join("bin/umacvlan")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/cni/host-local", d.join("bin/host-local")).unwrap();
    std::fs::copy("/bin/busybox", d.join("rootfs/bin/busybox")).unwrap();
    for applet in ["sh", "ip", "ping", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", d.join("rootfs/bin").join(applet)).unwrap();
    }
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "umvpod",
        "plugins": [{
            "type": "umacvlan",
            "master": "eth0",
            // podman 4.3 keeps this in the configuration and sends the MAC in CNI_ARGS.
            "capabilities": {"mac": true},
            "socket": l.socket(),
            "ipam": {
                "type": "host-local",
                "subnet": "10.61.0.0/24",
                "rangeStart": "10.61.0.10",
                "dataDir": d.join("ipam"),
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    });
    std::fs::write(d.join("net.d/umvpod.conflist"), conflist.to_string()).unwrap();
    std::fs::write(
        d.join("containers.conf"),
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\n",
            d.join("bin").display()
        ),
    )
    .unwrap();

    let started = Instant::now();
    // Container A waits (at most 30 s) for the test to say it is done.
    let a = p
        .command(&[])
        .args(["/bin/sh", "-c"])
        .arg("i=0; while [ ! -e /done ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.leases().is_empty() {
        assert!(Instant::now() < deadline, "container A got no address");
        std::thread::sleep(Duration::from_millis(50));
    }
    let a_addr = p.leases()[0].clone();
    assert_eq!(a_addr, "10.61.0.10");
    // Container B: a given MAC (podman passes it in CNI_ARGS), pings the external host and A.
    let b = p
        .command(&["--mac-address", "02:00:00:61:00:0b"])
        .args(["/bin/sh", "-c"])
        .arg(format!(
            "ip link show eth0; ip -4 addr show eth0; ip route; \
             ping -c 2 -W 2 10.61.0.1 && ping -c 2 -W 2 {a_addr}"
        ))
        .spawn()
        .unwrap();
    let out_b = finish(b, "container B");
    std::fs::write(d.join("rootfs/done"), "").unwrap();
    finish(a, "container A");
    let elapsed = started.elapsed();
    assert!(out_b.contains("link/ether 02:00:00:61:00:0b"), "{out_b}");
    assert!(out_b.contains("inet 10.61.0.11/24"), "{out_b}");
    assert!(out_b.contains("default via 10.61.0.1 dev eth0"), "{out_b}");
    assert!(out_b.contains("2 packets received"), "{out_b}");
    // Both exited: their leases are released and the daemon holds no macvlan.
    assert_eq!(p.leases(), Vec::<String>::new());
    let links = l.cli_ok(&["-j", "link", "show"]).unwrap();
    assert_eq!(links.trim(), "[]");
    eprintln!("two podman containers, end to end: {elapsed:?}");
}
