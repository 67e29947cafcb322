//! The CNI plugin (`umacvlan-cni`, installed as `umacvlan`) side by side with the reference
//! `macvlan` plugin from Debian's containernetworking-plugins: the same configurations and
//! environment give the same result shape and the same error codes and messages. Then what
//! the reference plugin cannot do: DEL releasing the lease when the master is gone, GC, STATUS.
//! Root only; each test builds its own lab of namespaces under a unique prefix.

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use umacvlan_lab::lab::{self, Lab};

const PLUGIN: &str = env!("CARGO_BIN_EXE_umacvlan-cni");
const REFERENCE: &str = "/usr/lib/cni/macvlan";
const CNI_DIR: &str = "/usr/lib/cni";

/// One plugin invocation, run in namespace `host` with nothing but the CNI variables (an
/// empty one is left out).
#[derive(Clone)]
struct Call {
    host: String,
    command: &'static str,
    container: String,
    netns: String,
    ifname: String,
    args: String,
}

fn call(host: &str, command: &'static str, container: &str, netns: &str, ifname: &str) -> Call {
    Call {
        host: host.into(),
        command,
        container: container.into(),
        netns: netns.into(),
        ifname: ifname.into(),
        args: String::new(),
    }
}

impl Call {
    fn run(&self, plugin: &str, stdin: &[u8]) -> (Value, i32) {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.host))
            .arg(plugin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in [
            ("CNI_COMMAND", self.command),
            ("CNI_CONTAINERID", &self.container),
            ("CNI_NETNS", &self.netns),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_ARGS", &self.args),
            ("CNI_PATH", CNI_DIR),
        ] {
            if !v.is_empty() {
                c.env(k, v);
            }
        }
        let mut child = c.spawn().expect("nsenter");
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{plugin}: not JSON ({e}): {text}"))
        };
        (v, out.status.code().unwrap_or(-1))
    }
}

/// A configuration for `kind` (`macvlan` or `umacvlan`) with IPAM state in `data`.
fn conf(kind: &str, version: &str, data: &Path, socket: &Path, extra: Value) -> Vec<u8> {
    let mut c = json!({
        "cniVersion": version,
        "name": "sbs",
        "type": kind,
        "master": "eth0",
        "ipam": {
            "type": "host-local",
            "subnet": "10.60.0.0/24",
            "rangeStart": "10.60.0.10",
            "dataDir": data,
            "routes": [{"dst": "0.0.0.0/0"}]
        },
        "dns": {"nameservers": ["10.60.0.53"]}
    });
    if kind == "umacvlan" {
        c["socket"] = json!(socket);
    }
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    serde_json::to_vec(&c).unwrap()
}

/// The result with what differs between two correct runs (the random MAC, the sandbox path)
/// blanked.
fn shape(mut v: Value) -> Value {
    if let Some(ifs) = v.get_mut("interfaces").and_then(Value::as_array_mut) {
        for i in ifs {
            i["mac"] = json!("MAC");
            i["sandbox"] = json!("NETNS");
        }
    }
    v
}

fn leases(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("sbs"))
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

struct World {
    lab: Lab,
    host: String,
    #[allow(dead_code)] // the far end; addressed by its address
    ext: String,
    dir: PathBuf,
}

/// host (daemon; lower eth0, default route through it) ↔ ext (10.60.0.1).
fn world(tag: &str, daemon_args: &[&str]) -> World {
    let mut lab = Lab::new(tag, Path::new(common::BIN));
    let host = lab.ns("host").unwrap();
    let ext = lab.ns("ext").unwrap();
    lab.veth(&host, "eth0", &ext, "eth0").unwrap();
    lab.addr(&ext, "eth0", "10.60.0.1/24").unwrap();
    lab::must(&["ip", "-n", &host, "link", "set", "eth0", "up"]).unwrap();
    lab::must(&["ip", "-n", &host, "route", "add", "default", "dev", "eth0"]).unwrap();
    lab.start_daemon(&host, daemon_args).unwrap();
    let dir = std::env::temp_dir().join(format!("{}.cni", lab.prefix()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    World {
        lab,
        host,
        ext,
        dir,
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn side_by_side_with_the_reference_macvlan_plugin() {
    need_root!();
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} is missing: apt-get install containernetworking-plugins (.ci/setup does)"
    );
    let w = world("cnisbs", &[]);
    let mut w = w;
    // The reference plugin gets a twin of the host and the external host (same names, same
    // addresses), so that both sides get the same leases without meeting on one wire.
    let rhost = w.lab.ns("rhost").unwrap();
    let rext = w.lab.ns("rext").unwrap();
    w.lab.veth(&rhost, "eth0", &rext, "eth0").unwrap();
    w.lab.addr(&rext, "eth0", "10.60.0.1/24").unwrap();
    lab::must(&["ip", "-n", &rhost, "link", "set", "eth0", "up"]).unwrap();
    lab::must(&["ip", "-n", &rhost, "route", "add", "default", "dev", "eth0"]).unwrap();
    let c_ref = w.lab.ns("cref").unwrap();
    let c_umv = w.lab.ns("cumv").unwrap();
    let sock = w.lab.socket().to_path_buf();
    let (ref_data, umv_data) = (w.dir.join("ref"), w.dir.join("umv"));
    let ns_path = |n: &str| format!("/run/netns/{n}");
    let (ref_ns, umv_ns) = (ns_path(&c_ref), ns_path(&c_umv));
    // ADD (container, ifname) on both plugins, each in its own container namespace.
    let both = |version: &str, extra: Value, container: &str, ifname: &str| {
        let r = call(&rhost, "ADD", container, &ref_ns, ifname).run(
            REFERENCE,
            &conf("macvlan", version, &ref_data, &sock, extra.clone()),
        );
        let u = call(&w.host, "ADD", container, &umv_ns, ifname)
            .run(PLUGIN, &conf("umacvlan", version, &umv_data, &sock, extra));
        (r, u)
    };

    // A plain ADD: the same result, address and route included (fresh IPAM state on each
    // side), and the same configuration in the namespace.
    let ((r, rc), (u, uc)) = both("1.0.0", json!({}), "c1", "eth0");
    assert_eq!((rc, uc), (0, 0), "reference {r}\numacvlan {u}");
    assert_eq!(shape(r.clone()), shape(u.clone()));
    assert_eq!(u["ips"][0]["address"], "10.60.0.10/24");
    assert_eq!(u["interfaces"][0]["sandbox"], json!(umv_ns));
    for ns in [&c_ref, &c_umv] {
        let addr = lab::must(&["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"]).unwrap();
        assert!(
            addr.contains("10.60.0.10/24 brd 10.60.0.255"),
            "{ns}: {addr}"
        );
        let route = lab::must(&["ip", "-n", ns, "route", "show", "default"]).unwrap();
        assert_eq!(route.trim(), "default via 10.60.0.1 dev eth0", "{ns}");
        let notify = w
            .lab
            .exec_ok(ns, &["sysctl", "-n", "net.ipv4.conf.eth0.arp_notify"])
            .unwrap();
        assert_eq!(notify.trim(), "1", "{ns}");
    }
    // The MAC in the result is the device's.
    let link = lab::must(&["ip", "-n", &c_umv, "-j", "link", "show", "eth0"]).unwrap();
    let link: Value = serde_json::from_str(&link).unwrap();
    assert_eq!(link[0]["address"], u["interfaces"][0]["mac"]);
    // Our container reaches the external host through the daemon.
    assert!(
        w.lab.ping(&c_umv, "10.60.0.1", 2),
        "ping from the umacvlan container"
    );
    assert!(
        w.lab.ping(&c_ref, "10.60.0.1", 2),
        "ping from the reference container"
    );

    // The same errors, code and message.
    let cases: Vec<(&str, &str, Value)> = vec![
        ("existing interface", "1.0.0", json!({})),
        ("missing master", "1.0.0", json!({"master": "nosuchdev"})),
        ("bad mode", "1.0.0", json!({"mode": "bogus"})),
        ("MTU above the master's", "1.0.0", json!({"mtu": 9000})),
    ];
    for (what, version, extra) in cases {
        let ((r, rc), (u, uc)) = both(version, extra, "c2", "eth0");
        assert_eq!((rc, uc), (1, 1), "{what}: reference {r}\numacvlan {u}");
        assert_eq!((&r["code"], &r["msg"]), (&u["code"], &u["msg"]), "{what}");
    }
    // Bad JSON: code 6 and the same words before the decoder's own.
    let bad = call(&w.host, "ADD", "c3", &umv_ns, "eth3");
    let (r, _) = Call {
        host: rhost.clone(),
        ..bad.clone()
    }
    .run(REFERENCE, b"{bad");
    let (u, uc) = bad.run(PLUGIN, b"{bad");
    assert_eq!(
        (r["code"].as_u64(), u["code"].as_u64(), uc),
        (Some(6), Some(6), 1)
    );
    let prefix = |v: &Value| {
        v["msg"]
            .as_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(prefix(&r), prefix(&u));
    // Missing environment: code 4, the same list.
    let missing = call(&w.host, "ADD", "", "", "");
    let c = conf("umacvlan", "1.0.0", &umv_data, &sock, json!({}));
    let (r, _) = Call {
        host: rhost.clone(),
        ..missing.clone()
    }
    .run(REFERENCE, &c);
    let (u, _) = missing.run(PLUGIN, &c);
    assert_eq!(u["code"], 4);
    assert_eq!((&r["code"], &r["msg"]), (&u["code"], &u["msg"]));

    // A MAC from CNI_ARGS (as podman sends it, with keys the plugin does not know).
    let args = "IgnoreUnknown=1;K8S_POD_NAME=p;MAC=02:00:00:00:60:07";
    let mut r_call = call(&rhost, "ADD", "c7", &ref_ns, "eth7");
    r_call.args = args.into();
    let mut u_call = call(&w.host, "ADD", "c7", &umv_ns, "eth7");
    u_call.args = args.into();
    let ipam_l2 = json!({"ipam": {}});
    let (r, _) = r_call.run(
        REFERENCE,
        &conf("macvlan", "1.0.0", &ref_data, &sock, ipam_l2.clone()),
    );
    let (u, _) = u_call.run(
        PLUGIN,
        &conf("umacvlan", "1.0.0", &umv_data, &sock, ipam_l2),
    );
    assert_eq!(r["interfaces"][0]["mac"], "02:00:00:00:60:07", "{r}");
    assert_eq!(u["interfaces"][0]["mac"], "02:00:00:00:60:07", "{u}");
    assert_eq!(shape(r), shape(u));
    // Without IgnoreUnknown an unknown key is refused by both.
    let mut r_call = call(&rhost, "ADD", "c8", &ref_ns, "eth8");
    r_call.args = "FOO=1".into();
    let mut u_call = call(&w.host, "ADD", "c8", &umv_ns, "eth8");
    u_call.args = "FOO=1".into();
    let (r, rc) = r_call.run(
        REFERENCE,
        &conf("macvlan", "1.0.0", &ref_data, &sock, json!({"ipam": {}})),
    );
    let (u, uc) = u_call.run(
        PLUGIN,
        &conf("umacvlan", "1.0.0", &umv_data, &sock, json!({"ipam": {}})),
    );
    assert_eq!((rc, uc), (1, 1), "reference {r}\numacvlan {u}");
    assert_eq!((&r["code"], &r["msg"]), (&u["code"], &u["msg"]));

    // The default master (the default route's device), spec 0.4.0 (ips carry "version"), and
    // layer 2 only.
    let ((r, rc), (u, uc)) = both("0.4.0", json!({"master": null}), "c4", "eth1");
    assert_eq!((rc, uc), (0, 0), "reference {r}\numacvlan {u}");
    assert_eq!(shape(r), shape(u.clone()));
    assert_eq!(u["ips"][0]["version"], "4");
    let ((r, rc), (u, uc)) = both("1.0.0", json!({"ipam": {}}), "c5", "eth2");
    assert_eq!((rc, uc), (0, 0), "reference {r}\numacvlan {u}");
    assert_eq!(shape(r), shape(u));

    // DEL: twice, with a namespace that is gone, with none at all — all succeed, and the
    // lease goes.
    assert_eq!(leases(&umv_data), ["10.60.0.10", "10.60.0.11"]);
    for (netns, ifname, container) in [
        (umv_ns.as_str(), "eth0", "c1"),
        (umv_ns.as_str(), "eth0", "c1"),
        ("/run/netns/umv-no-such-namespace", "eth1", "c4"),
        ("", "eth1", "c4"),
    ] {
        let del = call(&w.host, "DEL", container, netns, ifname);
        let (r, rc) = del.run(
            REFERENCE,
            &conf("macvlan", "1.0.0", &ref_data, &sock, json!({})),
        );
        let (u, uc) = del.run(
            PLUGIN,
            &conf("umacvlan", "1.0.0", &umv_data, &sock, json!({})),
        );
        assert_eq!(
            (rc, uc),
            (0, 0),
            "DEL {container} {netns:?}: reference {r}\numacvlan {u}"
        );
    }
    assert_eq!(leases(&umv_data), Vec::<String>::new());
    assert!(!lab::run(&["ip", "-n", &c_umv, "link", "show", "eth0"]).ok());
    let links: Value =
        serde_json::from_str(&w.lab.cli_ok(&["-j", "link", "show"]).unwrap()).unwrap();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cni"]["ifname"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["eth7", "eth2"],
        "only the layer-2 attachments are left: {links}"
    );

    // Where the Debian plugin falls short: DEL after the master is gone releases the lease.
    let _ = both("1.0.0", json!({}), "c6", "eth6");
    assert_eq!(leases(&umv_data), ["10.60.0.12"]);
    assert_eq!(leases(&ref_data), ["10.60.0.12"]);
    for h in [&w.host, &rhost] {
        lab::must(&["ip", "-n", h, "link", "del", "eth0"]).unwrap();
    }
    let del = call(&w.host, "DEL", "c6", &umv_ns, "eth6");
    let (u, uc) = del.run(
        PLUGIN,
        &conf("umacvlan", "1.0.0", &umv_data, &sock, json!({})),
    );
    assert_eq!(uc, 0, "{u}");
    assert_eq!(leases(&umv_data), Vec::<String>::new());
    let del_ref = call(&rhost, "DEL", "c6", &ref_ns, "eth6");
    let (r, rc) = del_ref.run(
        REFERENCE,
        &conf("macvlan", "1.0.0", &ref_data, &sock, json!({})),
    );
    assert_eq!((rc, r["msg"].as_str()), (1, Some("Link not found")));
    assert_eq!(
        leases(&ref_data),
        ["10.60.0.12"],
        "the reference plugin leaks the lease"
    );
}

/// CHECK, GC and STATUS against the daemon; the attachment in the state file and in
/// `link show -j`; two containers on one master talk to each other (bridge mode).
#[test]
fn check_gc_status_and_the_recorded_attachment() {
    need_root!();
    let state = std::env::temp_dir().join(format!("umv-cni-state-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let state_arg = state.to_string_lossy().into_owned();
    let mut w = world("cnigc", &["--state", &state_arg]);
    let sock = w.lab.socket().to_path_buf();
    let data = w.dir.join("ipam");
    let (ca, cb) = (w.lab.ns("ca").unwrap(), w.lab.ns("cb").unwrap());
    let path = |n: &str| format!("/run/netns/{n}");
    let mut results = Vec::new();
    for (c, ns) in [("ctr-a", &ca), ("ctr-b", &cb)] {
        let (r, code) = call(&w.host, "ADD", c, &path(ns), "net1").run(
            PLUGIN,
            &conf("umacvlan", "1.1.0", &data, &sock, json!({"ipam": {}})),
        );
        assert_eq!(code, 0, "{r}");
        results.push(r);
    }
    // mtu, bcqueuelen, and mode source with its list reach the daemon's macvlan.
    let (r, code) = call(&w.host, "ADD", "ctr-s", &path(&cb), "net2").run(
        PLUGIN,
        &conf(
            "umacvlan",
            "1.1.0",
            &data,
            &sock,
            json!({"ipam": {}, "mtu": 1400, "bcqueuelen": 2000, "mode": "source",
                   "sourceMacs": ["02:00:00:00:00:aa", "02:00:00:00:00:bb"]}),
        ),
    );
    assert_eq!(code, 0, "{r}");
    let l = lab::must(&["ip", "-n", &cb, "-j", "link", "show", "net2"]).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&l).unwrap()[0]["mtu"], 1400);
    let d: Value =
        serde_json::from_str(&w.lab.cli_ok(&["-d", "-j", "link", "show"]).unwrap()).unwrap();
    let src = d
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["cni"]["container_id"] == "ctr-s")
        .unwrap();
    let info = &src["linkinfo"]["info_data"];
    assert_eq!(
        (&info["mode"], &info["bcqueuelen"]),
        (&json!("source"), &json!(2000)),
        "{src}"
    );
    assert_eq!(info["macaddr_count"], 2, "{src}");
    // hostAccess reaches the daemon as hostaccess on.
    let (r, code) = call(&w.host, "ADD", "ctr-h", &path(&cb), "net3").run(
        PLUGIN,
        &conf(
            "umacvlan",
            "1.1.0",
            &data,
            &sock,
            json!({"ipam": {}, "mode": "bridge", "hostAccess": true}),
        ),
    );
    assert_eq!(code, 0, "{r}");
    let d: Value =
        serde_json::from_str(&w.lab.cli_ok(&["-d", "-j", "link", "show"]).unwrap()).unwrap();
    let h = d
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["cni"]["container_id"] == "ctr-h")
        .unwrap();
    assert_eq!(h["linkinfo"]["info_data"]["hostaccess"], true, "{h}");
    let (r, code) = call(&w.host, "DEL", "ctr-h", &path(&cb), "net3").run(
        PLUGIN,
        &conf("umacvlan", "1.1.0", &data, &sock, json!({"ipam": {}})),
    );
    assert_eq!(code, 0, "{r}");
    let (r, code) = call(&w.host, "DEL", "ctr-s", &path(&cb), "net2").run(
        PLUGIN,
        &conf("umacvlan", "1.1.0", &data, &sock, json!({"ipam": {}})),
    );
    assert_eq!(code, 0, "{r}");

    // Layer 2 only: address them by hand and let them talk.
    lab::must(&[
        "ip",
        "-n",
        &ca,
        "addr",
        "add",
        "10.60.0.21/24",
        "dev",
        "net1",
    ])
    .unwrap();
    lab::must(&[
        "ip",
        "-n",
        &cb,
        "addr",
        "add",
        "10.60.0.22/24",
        "dev",
        "net1",
    ])
    .unwrap();
    assert!(w.lab.ping(&ca, "10.60.0.22", 2), "container to container");
    assert!(
        w.lab.ping(&ca, "10.60.0.1", 2),
        "container to the external host"
    );

    // The attachment is recorded: link show -j and the state file.
    let links: Value =
        serde_json::from_str(&w.lab.cli_ok(&["-j", "link", "show"]).unwrap()).unwrap();
    let recorded: Vec<(String, String)> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["cni"]["container_id"].as_str().unwrap().to_string(),
                l["cni"]["netns"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("ctr-a".to_string(), path(&ca)),
            ("ctr-b".to_string(), path(&cb))
        ]
    );
    common::wait_for("the state file to record both attachments", || {
        let ids: Vec<String> = umacvlan::daemon::state::load(&state)
            .links
            .into_iter()
            .filter_map(|l| l.cni.map(|c| c.container_id))
            .collect();
        ids == ["ctr-a", "ctr-b"]
    });

    // CHECK passes on what ADD made, and fails, naming it, once the device's MAC changes.
    let with_prev = |r: &Value| {
        let mut c: Value = serde_json::from_slice(&conf(
            "umacvlan",
            "1.1.0",
            &data,
            &sock,
            json!({"ipam": {}}),
        ))
        .unwrap();
        c["prevResult"] = r.clone();
        serde_json::to_vec(&c).unwrap()
    };
    let check = call(&w.host, "CHECK", "ctr-a", &path(&ca), "net1");
    let (r, code) = check.run(PLUGIN, &with_prev(&results[0]));
    assert_eq!(code, 0, "{r}");
    let mut wrong = results[0].clone();
    wrong["interfaces"][0]["mac"] = json!("02:00:00:00:00:99");
    let (r, code) = check.run(PLUGIN, &with_prev(&wrong));
    assert_eq!(code, 1);
    assert!(r["msg"].as_str().unwrap().contains("Mac"), "{r}");
    let (r, code) = call(&w.host, "CHECK", "ctr-a", &path(&ca), "net1").run(
        PLUGIN,
        &conf("umacvlan", "1.1.0", &data, &sock, json!({"ipam": {}})),
    );
    assert_eq!(
        (code, r["msg"].as_str()),
        (1, Some("Required prevResult missing"))
    );

    // GC keeps the valid attachment and removes the other.
    let gc = conf(
        "umacvlan",
        "1.1.0",
        &data,
        &sock,
        json!({"ipam": {}, "cni.dev/valid-attachments": [{"containerID": "ctr-b", "ifname": "net1"}]}),
    );
    let (r, code) = call(&w.host, "GC", "", "", "").run(PLUGIN, &gc);
    assert_eq!((code, &r), (0, &Value::Null));
    assert!(!lab::run(&["ip", "-n", &ca, "link", "show", "net1"]).ok());
    assert!(lab::run(&["ip", "-n", &cb, "link", "show", "net1"]).ok());
    // A GC for another network leaves this one's macvlans alone.
    let mut other: Value = serde_json::from_slice(&gc).unwrap();
    other["name"] = json!("another");
    other["cni.dev/valid-attachments"] = json!([]);
    let (_, code) =
        call(&w.host, "GC", "", "", "").run(PLUGIN, &serde_json::to_vec(&other).unwrap());
    assert_eq!(code, 0);
    assert!(lab::run(&["ip", "-n", &cb, "link", "show", "net1"]).ok());

    // STATUS: 0 with the daemon, 50 without.
    let status = call(&w.host, "STATUS", "", "", "");
    let (r, code) = status.run(PLUGIN, &gc);
    assert_eq!((code, &r), (0, &Value::Null));
    w.lab.stop_daemon("TERM");
    let (r, code) = status.run(PLUGIN, &gc);
    assert_eq!((code, r["code"].as_u64()), (1, Some(50)), "{r}");
    // ADD without the daemon: try again later.
    let (r, code) = call(&w.host, "ADD", "ctr-c", &path(&ca), "net2").run(
        PLUGIN,
        &conf("umacvlan", "1.1.0", &data, &sock, json!({"ipam": {}})),
    );
    assert_eq!((code, r["code"].as_u64()), (1, Some(11)), "{r}");
    let _ = std::fs::remove_file(&state);
    for suffix in [".prev", ".tmp", ".journal"] {
        let _ = std::fs::remove_file(format!("{state_arg}{suffix}"));
    }
}

/// Dual stack: host-local hands out an IPv4 and an IPv6 address; both are configured with
/// their default routes, `arp_notify` and `ndisc_notify` are set, and CHECK finds it all.
#[test]
fn dual_stack_addresses_routes_and_announcements() {
    need_root!();
    let mut w = world("cni6", &[]);
    let sock = w.lab.socket().to_path_buf();
    let data = w.dir.join("ipam");
    let c = w.lab.ns("c").unwrap();
    // Labs turn IPv6 off; this one needs it.
    w.lab
        .exec_ok(
            &c,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
            ],
        )
        .unwrap();
    let extra = json!({"ipam": {
        "type": "host-local",
        "dataDir": data,
        "ranges": [[{"subnet": "10.60.0.0/24", "rangeStart": "10.60.0.30"}],
                   [{"subnet": "fd60::/64", "rangeStart": "fd60::30"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    }});
    let netns = format!("/run/netns/{c}");
    let (r, code) = call(&w.host, "ADD", "d1", &netns, "eth0").run(
        PLUGIN,
        &conf("umacvlan", "1.0.0", &data, &sock, extra.clone()),
    );
    assert_eq!(code, 0, "{r}");
    let ips: Vec<&str> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.60.0.30/24", "fd60::30/64"]);
    let a6 = lab::must(&["ip", "-n", &c, "-6", "-o", "addr", "show", "dev", "eth0"]).unwrap();
    assert!(a6.contains("fd60::30/64"), "{a6}");
    let r6 = lab::must(&["ip", "-n", &c, "-6", "route", "show", "default"]).unwrap();
    assert!(r6.contains("default via fd60::1 dev eth0"), "{r6}");
    for key in [
        "net.ipv4.conf.eth0.arp_notify",
        "net.ipv6.conf.eth0.ndisc_notify",
    ] {
        let v = w.lab.exec_ok(&c, &["sysctl", "-n", key]).unwrap();
        assert_eq!(v.trim(), "1", "{key}");
    }
    let mut with_prev: Value =
        serde_json::from_slice(&conf("umacvlan", "1.0.0", &data, &sock, extra)).unwrap();
    with_prev["prevResult"] = r.clone();
    let (r, code) = call(&w.host, "CHECK", "d1", &netns, "eth0")
        .run(PLUGIN, &serde_json::to_vec(&with_prev).unwrap());
    assert_eq!((code, &r), (0, &Value::Null), "{r}");
    // An IPv6 route removed: CHECK names it.
    lab::must(&["ip", "-n", &c, "-6", "route", "del", "default"]).unwrap();
    let (r, code) = call(&w.host, "CHECK", "d1", &netns, "eth0")
        .run(PLUGIN, &serde_json::to_vec(&with_prev).unwrap());
    assert_eq!(code, 1);
    assert!(r["msg"].as_str().unwrap().contains("::/0"), "{r}");
}

/// ADD announces the address: the external host sees a gratuitous ARP for it from the
/// container's MAC (arp_notify, set before the link comes up with its address).
#[test]
fn add_announces_the_address_with_a_gratuitous_arp() {
    need_root!();
    use std::io::BufRead;
    let mut w = world("cniarp", &[]);
    let sock = w.lab.socket().to_path_buf();
    let data = w.dir.join("ipam");
    let c = w.lab.ns("c").unwrap();
    let mut dump = Command::new("ip")
        .args([
            "netns", "exec", &w.ext, "tcpdump", "-l", "-n", "-e", "-c", "1", "-i", "eth0",
        ])
        .args(["arp and host 10.60.0.10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    // Wait until it listens.
    let mut err = std::io::BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
        line.clear();
    }
    let (r, code) = call(&w.host, "ADD", "g1", &format!("/run/netns/{c}"), "eth0")
        .run(PLUGIN, &conf("umacvlan", "1.0.0", &data, &sock, json!({})));
    assert_eq!(code, 0, "{r}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while dump.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = dump.kill();
            panic!("no ARP for 10.60.0.10 seen within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut dump.stdout.take().unwrap(), &mut out).unwrap();
    let mac = r["interfaces"][0]["mac"].as_str().unwrap();
    assert!(
        out.contains(mac) && out.contains("who-has 10.60.0.10 tell 10.60.0.10"),
        "not a gratuitous ARP from {mac}: {out}"
    );
}

/// `linkInContainer`: the master is a device inside the container's namespace (as Multus
/// hands over an SR-IOV VF or a veth); the macvlan is made on it there and reaches its wire.
#[test]
fn link_in_container_takes_the_master_from_the_containers_namespace() {
    need_root!();
    let mut w = world("cnilic", &[]);
    let sock = w.lab.socket().to_path_buf();
    let data = w.dir.join("ipam");
    let c = w.lab.ns("c").unwrap();
    let far = w.lab.ns("far").unwrap();
    // The container's own device net1, wired to a far host that only it can reach.
    w.lab.veth(&c, "net1", &far, "eth0").unwrap();
    w.lab.addr(&far, "eth0", "10.61.0.1/24").unwrap();
    lab::must(&["ip", "-n", &c, "link", "set", "net1", "up"]).unwrap();
    let extra = json!({
        "master": "net1",
        "linkInContainer": true,
        "mode": "bridge",
        "ipam": {"type": "host-local", "subnet": "10.61.0.0/24", "rangeStart": "10.61.0.40",
                 "dataDir": data}
    });
    let netns = format!("/run/netns/{c}");
    let body = conf("umacvlan", "1.0.0", &data, &sock, extra.clone());
    // Not in the plugin's (the daemon's) namespace: without linkInContainer it is not found.
    let mut outside = extra.clone();
    outside["linkInContainer"] = json!(false);
    let (r, code) = call(&w.host, "ADD", "l0", &netns, "eth0")
        .run(PLUGIN, &conf("umacvlan", "1.0.0", &data, &sock, outside));
    assert_eq!(
        (code, r["msg"].as_str()),
        (1, Some("Link not found")),
        "{r}"
    );
    let (r, code) = call(&w.host, "ADD", "l1", &netns, "eth0").run(PLUGIN, &body);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ips"][0]["address"], "10.61.0.40/24");
    assert!(
        w.lab.ping(&c, "10.61.0.1", 2),
        "the container reaches its master's wire"
    );
    let shown = common::show_json(&w.lab);
    let l = &shown.as_array().unwrap()[0];
    assert_eq!(l["link"], "net1", "{l}");
    let mut with_prev: Value = serde_json::from_slice(&body).unwrap();
    with_prev["prevResult"] = r.clone();
    let prev = serde_json::to_vec(&with_prev).unwrap();
    let (r, code) = call(&w.host, "CHECK", "l1", &netns, "eth0").run(PLUGIN, &prev);
    assert_eq!((code, &r), (0, &Value::Null), "{r}");
    let (r, code) = call(&w.host, "DEL", "l1", &netns, "eth0").run(PLUGIN, &prev);
    assert_eq!(code, 0, "{r}");
    assert!(common::show_json(&w.lab).as_array().unwrap().is_empty());
    assert!(leases(&data).is_empty());
    assert!(
        lab::run(&["ip", "-n", &c, "link", "show", "net1"]).ok(),
        "the master stays"
    );
}

/// A daemon on the eBPF data path: a macvlan on a lower in the daemon's namespace is on the
/// fast path; one whose master lives in the container (`linkInContainer`), which the programs
/// cannot reach, takes the TAP path in the same daemon. Both reach their wires.
#[test]
fn on_a_bpf_daemon_a_master_in_the_container_takes_the_tap_path() {
    need_root!();
    let mut w = world("cnilicbpf", &["--datapath", "bpf"]);
    let sock = w.lab.socket().to_path_buf();
    let data = w.dir.join("ipam");
    let (c, d) = (w.lab.ns("c").unwrap(), w.lab.ns("d").unwrap());
    let far = w.lab.ns("far").unwrap();
    w.lab.veth(&c, "net1", &far, "eth0").unwrap();
    w.lab.addr(&far, "eth0", "10.61.0.1/24").unwrap();
    lab::must(&["ip", "-n", &c, "link", "set", "net1", "up"]).unwrap();
    let ipam = |subnet: &str, start: &str| json!({"type": "host-local", "subnet": subnet, "rangeStart": start, "dataDir": data});
    let in_c = json!({"master": "net1", "linkInContainer": true, "mode": "bridge",
        "ipam": ipam("10.61.0.0/24", "10.61.0.40")});
    let on_host = json!({"master": "eth0", "mode": "bridge",
        "ipam": ipam("10.60.0.0/24", "10.60.0.40")});
    let (r, code) = call(&w.host, "ADD", "b1", &format!("/run/netns/{c}"), "net0")
        .run(PLUGIN, &conf("umacvlan", "1.0.0", &data, &sock, in_c));
    assert_eq!(code, 0, "{r}");
    let (r, code) = call(&w.host, "ADD", "b2", &format!("/run/netns/{d}"), "eth0")
        .run(PLUGIN, &conf("umacvlan", "1.0.0", &data, &sock, on_host));
    assert_eq!(code, 0, "{r}");
    assert!(
        w.lab.ping(&c, "10.61.0.1", 2),
        "the tap macvlan reaches its wire"
    );
    assert!(
        w.lab.ping(&d, "10.60.0.1", 2),
        "the bpf macvlan reaches its wire"
    );
    // `-d link show`: `datapath bpf` on the one on the fast path only.
    let shown = w.lab.cli_ok(&["-d", "link", "show"]).unwrap();
    // Each macvlan's lines, found by what names its lower ("@net1" in the container; the
    // host's eth0 from the macvlan's namespace, "link-netns D").
    let on_bpf = |key: &str| {
        let blocks: Vec<String> = shown.split('\n').fold(Vec::new(), |mut v: Vec<String>, l| {
            if l.split(':')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
            {
                v.push(String::new());
            }
            if let Some(b) = v.last_mut() {
                b.push_str(l);
            }
            v
        });
        let mine: Vec<&String> = blocks.iter().filter(|b| b.contains(key)).collect();
        assert_eq!(mine.len(), 1, "{key}: {shown}");
        mine[0].contains("datapath bpf")
    };
    assert!(!on_bpf("@net1:"), "{shown}");
    assert!(on_bpf(&format!("link-netns {d} ")), "{shown}");
    assert!(
        w.lab
            .daemon_log()
            .contains("its macvlans take the tap datapath"),
        "{}",
        w.lab.daemon_log()
    );
}

/// IPAM `static` and `dhcp` are delegated like host-local: a static address as configured, and
/// a lease from a DHCP server on the wire (busybox udhcpd behind the lower), obtained through
/// the reference `dhcp` daemon over the macvlan itself and released on DEL.
#[test]
fn static_and_dhcp_ipam_are_delegated() {
    need_root!();
    let mut w = world("cnidhcp", &[]);
    let sock = w.lab.socket().to_path_buf();
    let data = w.dir.join("ipam");
    let c = w.lab.ns("c").unwrap();
    let netns = format!("/run/netns/{c}");
    // static
    let extra = json!({"mode": "bridge", "ipam": {"type": "static",
        "addresses": [{"address": "10.60.0.77/24"}]}});
    let body = conf("umacvlan", "1.0.0", &data, &sock, extra);
    let (r, code) = call(&w.host, "ADD", "s1", &netns, "eth0").run(PLUGIN, &body);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ips"][0]["address"], "10.60.0.77/24");
    assert!(w.lab.ping(&c, "10.60.0.1", 2));
    let (r, code) = call(&w.host, "DEL", "s1", &netns, "eth0").run(PLUGIN, &body);
    assert_eq!(code, 0, "{r}");
    // dhcp: a server on the far side of the lower, the reference dhcp daemon on the host.
    let leases = w.dir.join("udhcpd.leases");
    std::fs::write(&leases, b"").unwrap();
    let udhcpd_conf = w.dir.join("udhcpd.conf");
    std::fs::write(
        &udhcpd_conf,
        format!(
            "start 10.60.0.100\nend 10.60.0.110\ninterface eth0\nlease_file {}\n\
             option subnet 255.255.255.0\noption lease 600\n",
            leases.display()
        ),
    )
    .unwrap();
    let _server = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &w.ext, "busybox", "udhcpd", "-f"])
            .arg(&udhcpd_conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dsock = w.dir.join("dhcp.sock");
    let dhcpd = KillOnDrop(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", w.host))
            .args(["/usr/lib/cni/dhcp", "daemon", "-socketpath"])
            .arg(&dsock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for("the dhcp daemon's socket", || dsock.exists());
    let extra = json!({"mode": "bridge",
        "ipam": {"type": "dhcp", "daemonSocketPath": dsock}});
    let body = conf("umacvlan", "1.0.0", &data, &sock, extra);
    let (r, code) = call(&w.host, "ADD", "d1", &netns, "eth0").run(PLUGIN, &body);
    let got = r["ips"][0]["address"].as_str().unwrap_or("").to_string();
    let del = call(&w.host, "DEL", "d1", &netns, "eth0").run(PLUGIN, &body);
    drop(dhcpd);
    assert_eq!(code, 0, "{r}");
    // Anywhere in the server's range, 10.60.0.100–110 (udhcpd picks by the client's MAC).
    let host: Option<u8> = got
        .strip_prefix("10.60.0.")
        .and_then(|a| a.strip_suffix("/24"))
        .and_then(|h| h.parse().ok());
    assert!(host.is_some_and(|h| (100..=110).contains(&h)), "{r}");
    assert_eq!(del.1, 0, "{}", del.0);
    assert!(common::show_json(&w.lab).as_array().unwrap().is_empty());
}

/// A helper process stopped however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
