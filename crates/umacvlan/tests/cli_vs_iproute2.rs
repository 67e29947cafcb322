//! The CLI against the real `ip` (iproute2) on this machine. Needs root: every kernel object is
//! made inside network namespaces named `umv-cli-<pid>-<n>` and removed afterwards (RAII), so
//! nothing on the host changes.
//!
//! - Argument errors: the same words through `ip … link …` and through the `umacvlan` binary;
//!   stderr and exit status must match (with "ip" read as "umacvlan", and the macvlan usage
//!   of current iproute2, which knows `bclim`, in place of 6.1's).
//! - Daemon answers: a fake daemon answers as the kernel did; the output must match `ip`'s.
//! - Printers: kernel macvlans are created with the same name/MAC/MTU/mode as hand-built
//!   `LinkInfo`s; `ip -d -s -s link show` / `ip -j -d -s link show` must match our printer
//!   once normalised (see `strip_generic*`).

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use umacvlan::cli::{print, GlobalOpts, Invocation};
use umacvlan::proto::{Envelope, LinkInfo, Request, Response, Stats64};
use umacvlan_core::engine::Mode;
use umacvlan_core::wire::MacAddr;

const BIN: &str = env!("CARGO_BIN_EXE_umacvlan");

/// iproute2 6.1's macvlan usage (the reference `ip` on the test machine).
const USAGE_61: &str =
    "Usage: ... macvlan mode MODE [flag MODE_FLAG] MODE_OPTS [bcqueuelen BC_QUEUE_LEN]\n\
\n\
MODE: private | vepa | bridge | passthru | source\n\
MODE_FLAG: null | nopromisc | nodst\n\
MODE_OPTS: for mode \"source\":\n\
\tmacaddr { { add | del } <macaddr> | set [ <macaddr> [ <macaddr>  ... ] ] | flush }\n\
BC_QUEUE_LEN: Length of the rx queue for broadcast/multicast: [0-4294967295]\n";

/// Current iproute2's (ip/iplink_macvlan.c at ee2a4a86), which umacvlan prints.
const USAGE_CURRENT: &str = "Usage: ... macvlan mode MODE [flag MODE_FLAG] MODE_OPTS [bcqueuelen BC_QUEUE_LEN] [bclim BCLIM]\n\
\n\
MODE: private | vepa | bridge | passthru | source\n\
MODE_FLAG: null | nopromisc | nodst\n\
MODE_OPTS: for mode \"source\":\n\
\tmacaddr { { add | del } <macaddr> | set [ <macaddr> [ <macaddr>  ... ] ] | flush }\n\
BC_QUEUE_LEN: Length of the rx queue for broadcast/multicast: [0-4294967295]\n\
BCLIM: Threshold for broadcast queueing: 32-bit integer\n";

struct Out {
    stdout: String,
    stderr: String,
    code: i32,
}

fn run(cmd: &str, args: &[&str]) -> Out {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    Out {
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        code: o.status.code().expect("killed by a signal"),
    }
}

fn must(args: &[&str]) -> String {
    let o = run("ip", args);
    assert_eq!(o.code, 0, "ip {args:?} failed: {}", o.stderr);
    o.stdout
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A scratch network namespace with `veth0`/`veth1` (both up), deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "umv-cli-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let o = run("ip", &["netns", "add", &name]);
        assert_eq!(
            o.code, 0,
            "ip netns add {name} failed (this test needs root): {}",
            o.stderr
        );
        let ns = Netns { name };
        ns.ip(&[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ]);
        ns.ip(&["link", "set", "veth0", "up"]);
        ns.ip(&["link", "set", "veth1", "up"]);
        // No IPv6 chatter: counters of links that go up stay where the test expects them.
        let _ = run(
            "ip",
            &[
                "netns",
                "exec",
                &ns.name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        ns
    }

    /// `ip -n NS ARGS…`, which must succeed.
    fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        must(&v)
    }

    /// `ip -n NS ARGS…`, whatever happens.
    fn try_ip(&self, args: &[&str]) -> Out {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        run("ip", &v)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// What `ip` printed, in umacvlan's words.
fn as_umacvlan(s: &str) -> String {
    s.replace(USAGE_61, USAGE_CURRENT)
        .replace("\"ip link help\"", "\"umacvlan link help\"")
        .replace("\"ip -help\"", "\"umacvlan -help\"")
        .replace("\"ip help\"", "\"umacvlan help\"")
}

fn ours(args: &[&str], socket: &Path) -> Out {
    let mut v = vec!["--socket", socket.to_str().unwrap()];
    v.extend_from_slice(args);
    run(BIN, &v)
}

fn nowhere() -> PathBuf {
    PathBuf::from(format!("/nonexistent/umv-cli-{}.sock", std::process::id()))
}

fn split(s: &str) -> Vec<&str> {
    s.split(' ').filter(|w| !w.is_empty()).collect()
}

/// Compares one command line through `ip -n NS` and through our binary.
fn compare(ns: &Netns, args: &[&str], socket: &Path, failures: &mut Vec<String>) {
    let want = ns.try_ip(args);
    let got = ours(args, socket);
    let want_err = as_umacvlan(&want.stderr);
    let want_out = as_umacvlan(&want.stdout);
    if want_err != got.stderr || want.code != got.code || want_out != got.stdout {
        failures.push(format!(
            "{args:?}\n  ip:       code {} stdout {:?} stderr {:?}\n  umacvlan: code {} stdout {:?} stderr {:?}",
            want.code, want_out, want_err, got.code, got.stdout, got.stderr
        ));
    }
}

/// Words after `link add link veth0 name x type macvlan` that iproute2 refuses.
const MACVLAN_ERRORS: &[&str] = &[
    "mode foo",
    "mode Bridge",
    "m foo",
    "mode",
    "mode bridge mode",
    "flag foo",
    "fl x",
    "flag",
    "macaddr",
    "macaddr foo",
    "ma foo",
    "macaddr add",
    "macaddr del",
    "macaddr add 02:00",
    "macaddr add zz:00:00:00:00:00",
    "macaddr add 100:0:0:0:0:0",
    "macaddr del 1:2:3:4:5:6:7",
    "macaddr add 1.2.3.4",
    "macaddr add 1.2.3",
    "macaddr set 02:00:00:00:00:01 bogus",
    "macaddr set 02:00:00:00:00:01 02:00:00:00:00:zz",
    "macaddr set 02:00",
    "macaddr set mode foo",
    "macaddr set nodst nopromisc",
    "nopromisc",
    "nop",
    "flag nopromisc",
    "mode bridge nopromisc",
    "mode passthru nopromisc mode bridge",
    "nodst nopromisc",
    "bcqueuelen abc",
    "bcqueuelen -1",
    "bcqueuelen 4294967296",
    "bcqueuelen 0x",
    "bcqueuelen 08",
    "bcqueuelen",
    "b x",
    "bcl 1",
    "foo",
    "help",
    "h",
    "mode source help",
];

#[test]
fn argument_errors_match_ip() {
    let ns = Netns::new();
    ns.ip(&[
        "link", "add", "link", "veth0", "name", "mv0", "type", "macvlan",
    ]);
    let sock = nowhere();
    let mut failures = Vec::new();

    let base = [
        "link", "add", "link", "veth0", "name", "x", "type", "macvlan",
    ];
    for extra in MACVLAN_ERRORS {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(split(extra));
        compare(&ns, &args, &sock, &mut failures);
    }
    // An empty word.
    let mut args: Vec<&str> = base.to_vec();
    args.push("");
    compare(&ns, &args, &sock, &mut failures);
    // The same parser on "link set … type macvlan".
    for extra in ["mode foo", "nopromisc", "bcqueuelen x", "foo", "help"] {
        let mut args = vec!["link", "set", "mv0", "type", "macvlan"];
        args.extend(split(extra));
        compare(&ns, &args, &sock, &mut failures);
    }

    for line in [
        "link add link veth0 name x",
        "link add link veth0 name x dev y type macvlan",
        "link add link veth0 name x name y type macvlan",
        "link add link veth0 name x y z type macvlan",
        "link add link veth0 name x mtu abc type macvlan",
        "link add link veth0 name x mtu 1 mtu 2 type macvlan",
        "link add link veth0 name x netns umv-cli-no-such-ns type macvlan",
        "link add link veth0 name x netns 1 netns 2 type macvlan",
        "link add link veth0 name x mode bridge type macvlan",
        "link add link veth0 name x address zz type macvlan",
        "link add link veth0 name x address 02:zz:00:00:00:00 type macvlan",
        "link add link veth0 name abcdefghijklmnopq type macvlan",
        "link add link veth0 name x/y type macvlan",
        "link add link veth0 name x type",
        "link add link veth0 name",
        "link add link",
        "link add link veth0 name x type blah foo",
        "link add link veth0 name x mtu 1400 type macvlan mode foo",
        // Refused by the kernel before anything changes: exit 2.
        "link add link veth0 name x address 02:00 type macvlan",
        "link add link veth0 name x address 02:00:00:00:00:01:02 type macvlan",
        "link add name x type macvlan",
        "link add link veth0 name x type blah",
        "link set up",
        "link set dev",
        "link set mv0 address 02:00",
        "link set mv0 address 1.2.3.4",
        "link set mv0 address 1.2.3.256",
        "link set mv0 address 0x1.2.3",
        "link add link veth0 name x address 1.2.3.4 type macvlan",
        "link set mv0 mtu abc",
        "link set mv0 mtu",
        "link set mv0 type",
        "link del",
        "link del dev",
        "link show mv0 veth0",
        "link show dev",
        "link show type",
        "link bogus",
        "link help macvlan",
        "bogus",
    ] {
        compare(&ns, &split(line), &sock, &mut failures);
    }

    // Global options: refused before any netlink socket is opened, no namespace needed.
    for line in ["-x link", "--x link", "-stats -x link", "-Z"] {
        let args = split(line);
        let want = run("ip", &args);
        let got = ours(&args, &sock);
        if as_umacvlan(&want.stderr) != got.stderr || want.code != got.code {
            failures.push(format!(
                "{args:?}: ip {} {:?} / umacvlan {} {:?}",
                want.code, want.stderr, got.code, got.stderr
            ));
        }
    }
    // Usage texts differ by design (umacvlan's lists only what it does); statuses must not.
    for line in [
        "link help",
        "link add link veth0 name x help",
        "link show help",
        "help",
        "-help",
        "-h",
    ] {
        let args = split(line);
        let want = ns.try_ip(&args);
        let got = ours(&args, &sock);
        if want.code != got.code
            || !got.stderr.starts_with("Usage: umacvlan")
            || !want.stderr.starts_with("Usage: ip")
        {
            failures.push(format!(
                "{args:?}: ip {} / umacvlan {} {:?}",
                want.code, got.code, got.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Words only current iproute2 knows: checked against ip/iplink_macvlan.c's texts.
#[test]
fn bclim_matches_current_iproute2_source() {
    let sock = nowhere();
    let base = [
        "link", "add", "link", "veth0", "name", "x", "type", "macvlan",
    ];
    for (extra, stderr, code) in [
        (
            "bclim x",
            "Error: illegal value for \"bclim\": \"x\"\n".to_string(),
            1,
        ),
        (
            "bclim 2147483648",
            "Error: illegal value for \"bclim\": \"2147483648\"\n".to_string(),
            1,
        ),
        (
            "bclim 1.5",
            "Error: illegal value for \"bclim\": \"1.5\"\n".to_string(),
            1,
        ),
        (
            "bclim",
            "Command line is not complete. Try option \"help\"\n".to_string(),
            255,
        ),
        // Exact match only: a prefix is an unknown option.
        (
            "bcli 5",
            format!("macvlan: unknown option \"bcli\"?\n{USAGE_CURRENT}"),
            1,
        ),
        (
            "bclimit 5",
            format!("macvlan: unknown option \"bclimit\"?\n{USAGE_CURRENT}"),
            1,
        ),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(split(extra));
        let got = ours(&args, &sock);
        assert_eq!(
            (got.stderr.as_str(), got.code),
            (stderr.as_str(), code),
            "{extra}"
        );
    }
    // Accepted values parse (the command then goes on to the daemon).
    for (v, want) in [
        ("-1", -1),
        ("0", 0),
        ("0x10", 16),
        ("-2147483648", i32::MIN),
    ] {
        let args: Vec<String> = base
            .iter()
            .map(|s| s.to_string())
            .chain(["bclim".into(), v.into()])
            .collect();
        match umacvlan::cli::parse(&args) {
            Invocation::Run { action, .. } => match action.request() {
                Request::LinkAdd(a) => assert_eq!(a.macvlan.bclim, Some(want)),
                r => panic!("{r:?}"),
            },
            o => panic!("bclim {v}: {o:?}"),
        }
    }
    let got = ours(&["link", "help", "macvlan"], &sock);
    assert_eq!((got.stdout.as_str(), got.code), (USAGE_CURRENT, 0));
}

/// Lines that iproute2 accepts (with notes on stderr) parse here too, with the same notes.
#[test]
fn accepted_lines_parse_alike() {
    let ns = Netns::new();
    for extra in [
        "mode source macaddr set 02:00:00:00:00:01 mode source",
        "mode source macaddr set bcqueuelen 5",
        "mode source macaddr add 2:0:0:0:0:1",
        "mode source macaddr add -ffffffff:00:00:00:00:02",
        "mode private flag null",
        "mode passthru nopromisc nodst",
        "mod vepa nod",
        "bcqueuelen 0x10",
    ] {
        let mut args = vec![
            "link", "add", "link", "veth0", "name", "x", "type", "macvlan",
        ];
        args.extend(split(extra));
        let want = ns.try_ip(&args);
        let _ = ns.try_ip(&["link", "del", "x"]);
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match umacvlan::cli::parse(&owned) {
            Invocation::Run { stderr, .. } => {
                // ip's status then depends on the kernel; its notes do not.
                let kernel_lines: String = want
                    .stderr
                    .lines()
                    .filter(|l| !l.starts_with("RTNETLINK answers") && !l.starts_with("Error: "))
                    .map(|l| format!("{l}\n"))
                    .collect();
                assert_eq!(stderr, kernel_lines, "{extra}");
            }
            o => panic!(
                "{extra}: ip said {:?} / {:?}, we said {o:?}",
                want.code, want.stderr
            ),
        }
    }
}

/// A fake daemon on a temporary socket: answers Hello, then `answer` to every request.
struct FakeDaemon {
    path: PathBuf,
}

impl FakeDaemon {
    fn start(answer: Response) -> FakeDaemon {
        let path = std::env::temp_dir().join(format!(
            "umv-cli-{}-{}.sock",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut w = s.try_clone().unwrap();
                    for line in BufReader::new(s).lines() {
                        let Ok(line) = line else { return };
                        let env: Envelope = serde_json::from_str(&line).unwrap();
                        let r = match env.request {
                            Request::Hello => Response::Hello {
                                version: 1,
                                daemon: "fake".into(),
                            },
                            _ => answer.clone(),
                        };
                        let mut out = serde_json::to_string(&r).unwrap();
                        out.push('\n');
                        if w.write_all(out.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeDaemon { path }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn daemon_errors_print_as_ip_prints_kernel_errors() {
    let ns = Netns::new();
    ns.ip(&[
        "link", "add", "link", "veth0", "name", "mv0", "type", "macvlan",
    ]);
    let enodev = FakeDaemon::start(Response::Error {
        errno: 19,
        message: None,
    });
    let eexist = FakeDaemon::start(Response::Error {
        errno: 17,
        message: None,
    });
    let mut failures = Vec::new();
    for line in [
        "link add link nope name x type macvlan",
        "link add link nope name x type macvlan mode bridge",
        "link set nope up",
        "link set dev nope type macvlan mode bridge",
        "link del nope",
        "link show nope",
        "link show dev nope up",
    ] {
        compare(&ns, &split(line), &enodev.path, &mut failures);
    }
    compare(
        &ns,
        &split("link add link veth0 name mv0 type macvlan"),
        &eexist.path,
        &mut failures,
    );
    // The kernel's extack for an MTU above the lower's: same words through the daemon.
    let msg = ns.try_ip(&split("link set mv0 mtu 70000"));
    assert_eq!(msg.code, 2, "{}", msg.stderr);
    let text = msg
        .stderr
        .trim_end()
        .strip_prefix("Error: ")
        .map(|m| m.trim_end_matches('.').to_string());
    let emtu = FakeDaemon::start(Response::Error {
        errno: 22,
        message: text,
    });
    compare(
        &ns,
        &split("link set mv0 mtu 70000"),
        &emtu.path,
        &mut failures,
    );
    let ok = FakeDaemon::start(Response::Ok);
    let got = ours(&split("link set mv0 up"), &ok.path);
    assert_eq!(
        (got.stdout.as_str(), got.stderr.as_str(), got.code),
        ("", "", 0)
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn unreachable_daemon_is_named() {
    let got = ours(&["link", "show"], Path::new("/nonexistent/x.sock"));
    assert_eq!(got.code, 1);
    assert_eq!(
        got.stderr,
        "umacvlan: cannot connect to /nonexistent/x.sock: No such file or directory; is the daemon running? (umacvlan daemon)\n"
    );
}

// ---------------------------------------------------------------- printers

/// The kernel's view of one link, from `ip -j -d -s -s link show NAME`.
fn kernel_json(ns: &Netns, name: &str) -> Value {
    let s = ns.ip(&["-j", "-d", "-s", "-s", "link", "show", name]);
    let v: Value = serde_json::from_str(&s).unwrap();
    v[0].clone()
}

fn kernel_stats(k: &Value) -> Stats64 {
    let rx = &k["stats64"]["rx"];
    let tx = &k["stats64"]["tx"];
    let n = |v: &Value| v.as_u64().unwrap();
    // Counters a macvlan does not have must be zero for the comparison to mean anything.
    for key in [
        "over_errors",
        "length_errors",
        "crc_errors",
        "frame_errors",
        "fifo_errors",
        "missed_errors",
    ] {
        assert_eq!(n(&rx[key]), 0, "rx {key}");
    }
    for key in [
        "carrier_errors",
        "collisions",
        "aborted_errors",
        "fifo_errors",
        "window_errors",
        "heartbeat_errors",
        "carrier_changes",
    ] {
        assert_eq!(n(&tx[key]), 0, "tx {key}");
    }
    Stats64 {
        rx_packets: n(&rx["packets"]),
        rx_bytes: n(&rx["bytes"]),
        rx_errors: n(&rx["errors"]),
        rx_dropped: n(&rx["dropped"]),
        multicast: n(&rx["multicast"]),
        tx_packets: n(&tx["packets"]),
        tx_bytes: n(&tx["bytes"]),
        tx_errors: n(&tx["errors"]),
        tx_dropped: n(&tx["dropped"]),
    }
}

/// Generic fields a kernel macvlan prints after its own (`addrgenmode … gro_max_size N `):
/// they belong to the netdev, not to the macvlan, and umacvlan leaves them out.
fn strip_generic_text(s: &str) -> String {
    s.lines()
        .map(
            |l| match (l.starts_with("    macvlan "), l.find("addrgenmode ")) {
                (true, Some(p)) => format!("{}\n", &l[..p]),
                _ => format!("{l}\n"),
            },
        )
        .collect()
}

const GENERIC_KEYS: &[&str] = &[
    "inet6_addr_gen_mode",
    "num_tx_queues",
    "num_rx_queues",
    "gso_max_size",
    "gso_max_segs",
    "tso_max_size",
    "tso_max_segs",
    "gro_max_size",
];

/// The same for compact JSON (`,"key":scalar`) and pretty JSON (one key a line).
fn strip_generic_json(s: &str) -> String {
    let mut out = s.to_string();
    for key in GENERIC_KEYS {
        let pat = format!(",\"{key}\":");
        while let Some(p) = out.find(&pat) {
            let rest = &out[p + pat.len()..];
            let end = rest.find([',', '}']).unwrap();
            out.replace_range(p..p + pat.len() + end, "");
        }
    }
    out.lines()
        .filter(|l| {
            !GENERIC_KEYS
                .iter()
                .any(|k| l.trim_start().starts_with(&format!("\"{k}\": ")))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn base_info(name: &str, mac: &str, mode: Mode) -> LinkInfo {
    LinkInfo {
        ifindex: 0,
        ifname: name.into(),
        link: "veth0".into(),
        link_ifindex: 0,
        netns: None,
        lower_netns: None,
        flags: vec!["BROADCAST".into(), "MULTICAST".into()],
        mtu: 1500,
        operstate: "DOWN".into(),
        qdisc: String::new(),
        address: mac.parse::<MacAddr>().unwrap(),
        promiscuity: 0,
        allmulti: 0,
        min_mtu: 68,
        max_mtu: 65535,
        mode: Some(mode),
        nopromisc: false,
        nodst: false,
        bcqueuelen: 1000,
        usedbcqueuelen: 1000,
        bclim: None,
        macaddr_count: 0,
        macaddr_data: vec![],
        stats: Stats64::default(),
        cni: None,
        datapath: None,
        hostaccess: false,
    }
}

fn opts(stats: u32, details: bool, json: bool, pretty: bool) -> GlobalOpts {
    GlobalOpts {
        stats,
        details,
        json,
        pretty,
        ..Default::default()
    }
}

/// Every output form of one link: ours vs the kernel's through `ip`.
fn compare_printers(ns: &Netns, mut info: LinkInfo, failures: &mut Vec<String>) {
    let k = kernel_json(ns, &info.ifname);
    info.ifindex = k["ifindex"].as_u64().unwrap() as u32;
    info.stats = kernel_stats(&k);
    let name = info.ifname.clone();
    let forms: &[(&[&str], GlobalOpts)] = &[
        (&[], opts(0, false, false, false)),
        (&["-d"], opts(0, true, false, false)),
        (&["-s"], opts(1, false, false, false)),
        (&["-d", "-s", "-s"], opts(2, true, false, false)),
        (&["-j"], opts(0, false, true, false)),
        (&["-j", "-d"], opts(0, true, true, false)),
        (&["-j", "-d", "-s"], opts(1, true, true, false)),
        (&["-j", "-d", "-s", "-s"], opts(2, true, true, false)),
        (&["-j", "-p", "-d", "-s", "-s"], opts(2, true, true, true)),
    ];
    for (flags, o) in forms {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["link", "show", name.as_str()]);
        let want = ns.ip(&args);
        let want = if o.json {
            strip_generic_json(&want)
        } else {
            strip_generic_text(&want)
        };
        let got = print::links(std::slice::from_ref(&info), o);
        if want != got {
            failures.push(format!(
                "ip {args:?}\n--- ip (normalised)\n{want}--- umacvlan\n{got}"
            ));
        }
    }
}

#[test]
fn printers_match_ip_for_kernel_macvlans() {
    let ns = Netns::new();
    let mut failures = Vec::new();

    // vepa (the default mode), down.
    ns.ip(&[
        "link",
        "add",
        "link",
        "veth0",
        "name",
        "mva",
        "address",
        "02:00:00:00:01:01",
        "type",
        "macvlan",
    ]);
    compare_printers(
        &ns,
        base_info("mva", "02:00:00:00:01:01", Mode::Vepa),
        &mut failures,
    );

    // bridge, up, another MTU.
    ns.ip(&[
        "link",
        "add",
        "link",
        "veth0",
        "name",
        "mvb",
        "address",
        "02:00:00:00:01:02",
        "mtu",
        "1400",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    ns.ip(&["link", "set", "mvb", "up"]);
    let mut b = base_info("mvb", "02:00:00:00:01:02", Mode::Bridge);
    b.mtu = 1400;
    b.flags = vec![
        "BROADCAST".into(),
        "MULTICAST".into(),
        "UP".into(),
        "LOWER_UP".into(),
    ];
    b.operstate = "UP".into();
    compare_printers(&ns, b, &mut failures);

    // passthru nopromisc on its own lower, which is down (M-DOWN); passthru takes the
    // lower's MAC.
    ns.ip(&[
        "link",
        "add",
        "vp0",
        "address",
        "02:00:00:00:02:01",
        "type",
        "veth",
        "peer",
        "name",
        "vp1",
    ]);
    ns.ip(&[
        "link",
        "add",
        "link",
        "vp0",
        "name",
        "mvp",
        "type",
        "macvlan",
        "mode",
        "passthru",
        "nopromisc",
    ]);
    let mut p = base_info("mvp", "02:00:00:00:02:01", Mode::Passthru);
    p.link = "vp0".into();
    p.nopromisc = true;
    p.flags.push("M-DOWN".into());
    compare_printers(&ns, p, &mut failures);

    // source with nodst and two remotes.
    ns.ip(&[
        "link",
        "add",
        "link",
        "veth0",
        "name",
        "mvs",
        "address",
        "02:00:00:00:01:03",
        "type",
        "macvlan",
        "mode",
        "source",
        "nodst",
    ]);
    ns.ip(&[
        "link",
        "set",
        "mvs",
        "type",
        "macvlan",
        "macaddr",
        "add",
        "02:aa:00:00:00:01",
    ]);
    ns.ip(&[
        "link",
        "set",
        "mvs",
        "type",
        "macvlan",
        "macaddr",
        "add",
        "02:aa:00:00:00:02",
    ]);
    let mut s = base_info("mvs", "02:00:00:00:01:03", Mode::Source);
    s.nodst = true;
    s.macaddr_count = 2;
    // The list in the kernel's (hash) order, as the daemon reports its own order.
    let k = kernel_json(&ns, "mvs");
    s.macaddr_data = k["linkinfo"]["info_data"]["macaddr_data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(s.macaddr_data.len(), 2);
    compare_printers(&ns, s, &mut failures);

    // source with an empty list: "remotes (0)", no macaddr_data key.
    ns.ip(&[
        "link",
        "add",
        "link",
        "veth0",
        "name",
        "mve",
        "address",
        "02:00:00:00:01:04",
        "type",
        "macvlan",
        "mode",
        "source",
    ]);
    compare_printers(
        &ns,
        base_info("mve", "02:00:00:00:01:04", Mode::Source),
        &mut failures,
    );

    // private, bcqueuelen request above the port's: usedbcqueuelen is the max.
    ns.ip(&[
        "link",
        "add",
        "link",
        "veth0",
        "name",
        "mvq",
        "address",
        "02:00:00:00:01:05",
        "type",
        "macvlan",
        "mode",
        "private",
        "bcqueuelen",
        "2000",
    ]);
    let mut q = base_info("mvq", "02:00:00:00:01:05", Mode::Private);
    q.bcqueuelen = 2000;
    q.usedbcqueuelen = 2000;
    compare_printers(&ns, q, &mut failures);
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// bclim: iproute2 6.1 neither sets nor prints it. Expected output is 6.1's for the same
/// link with `bclim N ` / `"bclim":N` placed where current iproute2's macvlan_print_opt
/// puts it (after usedbcqueuelen).
#[test]
fn bclim_printed_as_current_iproute2_source() {
    let ns = Netns::new();
    ns.ip(&[
        "link",
        "add",
        "link",
        "veth0",
        "name",
        "mvl",
        "address",
        "02:00:00:00:01:06",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    let k = kernel_json(&ns, "mvl");
    let mut l = base_info("mvl", "02:00:00:00:01:06", Mode::Bridge);
    l.ifindex = k["ifindex"].as_u64().unwrap() as u32;
    l.bclim = Some(-1);
    let text = strip_generic_text(&ns.ip(&["-d", "link", "show", "mvl"]))
        .replace("usedbcqueuelen 1000 ", "usedbcqueuelen 1000 bclim -1 ");
    assert_eq!(
        print::links(std::slice::from_ref(&l), &opts(0, true, false, false)),
        text
    );
    let json = strip_generic_json(&ns.ip(&["-j", "-d", "link", "show", "mvl"])).replace(
        "\"usedbcqueuelen\":1000",
        "\"usedbcqueuelen\":1000,\"bclim\":-1",
    );
    assert_eq!(
        print::links(std::slice::from_ref(&l), &opts(0, true, true, false)),
        json
    );
}

/// A macvlan in another namespace than its lower: `NAME@ifN` and `link-netns NAME`.
#[test]
fn link_in_other_netns_printed_like_ip() {
    let ns = Netns::new();
    let other = Netns::new();
    ns.ip(&[
        "link",
        "add",
        "link",
        "veth0",
        "name",
        "mvn",
        "address",
        "02:00:00:00:01:07",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    let lower_idx: Value = serde_json::from_str(&ns.ip(&["-j", "link", "show", "veth0"])).unwrap();
    ns.ip(&["link", "set", "mvn", "netns", &other.name]);
    let k = kernel_json(&other, "mvn");
    let mut l = base_info("mvn", "02:00:00:00:01:07", Mode::Bridge);
    l.ifindex = k["ifindex"].as_u64().unwrap() as u32;
    l.link_ifindex = lower_idx[0]["ifindex"].as_u64().unwrap() as u32;
    // ip names the lower's namespace as seen from the macvlan's; the format is the point.
    l.netns = Some(ns.name.clone());
    for (flags, o) in [
        (vec![], opts(0, false, false, false)),
        (vec!["-d"], opts(0, true, false, false)),
    ] {
        let mut args = flags.clone();
        args.extend(["link", "show", "mvn"]);
        let want = strip_generic_text(&other.ip(&args));
        assert_eq!(print::links(std::slice::from_ref(&l), &o), want, "{args:?}");
    }
    let nsid = k["link_netnsid"].as_i64().unwrap();
    let want = strip_generic_json(&other.ip(&["-j", "-d", "link", "show", "mvn"])).replace(
        &format!("\"link_netnsid\":{nsid}"),
        &format!("\"link_netns\":\"{}\"", ns.name),
    );
    assert_eq!(
        print::links(std::slice::from_ref(&l), &opts(0, true, true, false)),
        want
    );
}

#[test]
fn stats_table_header_is_proc_net_dev() {
    let ns = Netns::new();
    ns.ip(&[
        "link", "add", "link", "veth0", "name", "mvt", "type", "macvlan",
    ]);
    let proc = run("ip", &["netns", "exec", &ns.name, "cat", "/proc/net/dev"]).stdout;
    let header: String = proc.lines().take(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(header, print::PROC_NET_DEV_HEADER);
    // The kernel's row for a zero-traffic macvlan vs ours.
    let row = proc
        .lines()
        .find(|l| l.trim_start().starts_with("mvt:"))
        .unwrap();
    let t = print::proc_net_dev(&[base_info("mvt", "02:00:00:00:00:01", Mode::Vepa)]);
    assert_eq!(t.lines().nth(2).unwrap(), row);
    // And through the binary, against a fake daemon.
    let mut l = base_info("mvt", "02:00:00:00:00:01", Mode::Vepa);
    l.stats.rx_bytes = 12345678;
    let d = FakeDaemon::start(Response::Links {
        links: vec![l.clone()],
    });
    let got = ours(&["stats"], &d.path);
    assert_eq!((got.stdout, got.code), (print::proc_net_dev(&[l]), 0));
}
