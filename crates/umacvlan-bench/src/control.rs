//! Control plane: the time to create and bring up N macvlans on one lower, in a fresh lab
//! each time, with the same words for every method —
//! `link add link lower name mvI up type macvlan mode bridge`:
//!
//! - `kernel-ip-batch`: one `ip -batch` with N lines (the reference);
//! - `kernel-ip-each`: N `ip` processes (the per-process cost of iproute2, for comparison);
//! - `umacvlan-cli`: N `umacvlan` processes against the daemon (what a user types);
//! - `umacvlan-client`: the same N requests over one control connection from this process
//!   (the daemon's own cost, without a process per command).
//!
//! Every method is checked afterwards: `ip link show up` must list the N devices. Also
//! measured: one `umacvlan … link show dev mv0` and one `ip link show dev mv0` round trip,
//! the fixed cost of a command.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use umacvlan::cli::client::{Client, DEFAULT_TIMEOUT};
use umacvlan::cli::{parse, Invocation};
use umacvlan::proto::Response;
use umacvlan_lab::lab::{must, Lab};

use crate::cmd;

/// How the macvlans are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    /// `ip -batch`.
    KernelBatch,
    /// One `ip` per macvlan.
    KernelEach,
    /// One `umacvlan` CLI process per macvlan.
    UmacvlanCli,
    /// One control connection, one request per macvlan.
    UmacvlanClient,
}

impl Method {
    /// All methods, reference first.
    pub const ALL: [Method; 4] = [
        Method::KernelBatch,
        Method::KernelEach,
        Method::UmacvlanCli,
        Method::UmacvlanClient,
    ];

    /// Id in the JSON and report.
    pub fn id(self) -> &'static str {
        match self {
            Method::KernelBatch => "kernel-ip-batch",
            Method::KernelEach => "kernel-ip-each",
            Method::UmacvlanCli => "umacvlan-cli",
            Method::UmacvlanClient => "umacvlan-client",
        }
    }

    /// What it is.
    pub fn label(self) -> &'static str {
        match self {
            Method::KernelBatch => "kernel, one `ip -batch` (reference)",
            Method::KernelEach => "kernel, one `ip` process per macvlan",
            Method::UmacvlanCli => "umacvlan, one CLI process per macvlan",
            Method::UmacvlanClient => "umacvlan, one control connection (no process per macvlan)",
        }
    }

    fn is_user(self) -> bool {
        matches!(self, Method::UmacvlanCli | Method::UmacvlanClient)
    }
}

/// The words that create macvlan `i`, for `ip` and `umacvlan` alike.
pub fn add_words(lower: &str, name: &str) -> Vec<String> {
    [
        "link", "add", "link", lower, "name", name, "up", "type", "macvlan", "mode", "bridge",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sends `words` (one `link add …` each) to the daemon at `lab`'s socket over one connection.
pub fn client_adds(lab: &Lab, all_words: &[Vec<String>]) -> Result<(), String> {
    let mut c = Client::connect(lab.socket(), DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
    c.hello().map_err(|e| e.to_string())?;
    for w in all_words {
        let Invocation::Run { action, .. } = parse(w) else {
            return Err(format!("cannot parse {w:?}"));
        };
        match c.call(action.request()).map_err(|e| e.to_string())? {
            Response::Ok => {}
            other => return Err(format!("`umacvlan {}`: {other:?}", w.join(" "))),
        }
        cmd::check()?;
    }
    Ok(())
}

/// Adds `words` lines to the kernel with one `ip -n NS -batch`.
pub fn kernel_batch(ns: &str, all_words: &[Vec<String>]) -> Result<(), String> {
    let path = cmd::scratch_file("batch");
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    for w in all_words {
        writeln!(f, "{}", w.join(" ")).map_err(|e| e.to_string())?;
    }
    drop(f);
    let p = path.to_string_lossy().into_owned();
    let r = must(&["ip", "-n", ns, "-batch", &p]);
    let _ = std::fs::remove_file(&path);
    r.map(drop)
}

/// One control-plane result.
#[derive(Clone, Debug, Serialize)]
pub struct CtlResult {
    /// Time to create and bring up all N, milliseconds.
    pub create_up_ms: f64,
    /// Mean time of one `link show` command round trip (process included), milliseconds;
    /// measured for `kernel-ip-each` and `umacvlan-cli` when N = 1.
    pub show_ms: Option<f64>,
}

/// Creates and brings up `n` macvlans with `method` in a fresh lab; checks they are up.
pub fn create_up(
    method: Method,
    n: usize,
    umacvlan: &std::path::Path,
) -> Result<CtlResult, String> {
    let mut lab = Lab::new(crate::TAG, umacvlan);
    let sw = lab.ns("sw")?;
    let wire = lab.ns("wire")?;
    lab.veth(&sw, "lower", &wire, "peer")?;
    if method.is_user() {
        let args = cmd::daemon_args(lab.prefix());
        lab.start_daemon(&sw, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        if let Some(p) = lab.daemon_pid() {
            cmd::register(p, "umacvlan daemon (control plane)");
        }
    }
    let words: Vec<Vec<String>> = (0..n)
        .map(|i| add_words("lower", &format!("mv{i}")))
        .collect();
    let t0 = Instant::now();
    match method {
        Method::KernelBatch => kernel_batch(&sw, &words)?,
        Method::KernelEach => {
            for w in &words {
                let mut v = vec!["ip", "-n", sw.as_str()];
                v.extend(w.iter().map(String::as_str));
                must(&v)?;
                cmd::check()?;
            }
        }
        Method::UmacvlanCli => {
            for w in &words {
                let v: Vec<&str> = w.iter().map(String::as_str).collect();
                lab.cli_ok(&v)?;
                cmd::check()?;
            }
        }
        Method::UmacvlanClient => client_adds(&lab, &words)?,
    }
    let create_up_ms = t0.elapsed().as_secs_f64() * 1e3;
    let up = must(&["ip", "-n", &sw, "-o", "link", "show", "up"])?
        .lines()
        .filter(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|name| name.trim().starts_with("mv"))
        })
        .count();
    if up != n {
        return Err(format!(
            "{}: {up} of {n} macvlans are up afterwards",
            method.id()
        ));
    }
    let show_ms = if n == 1 && matches!(method, Method::KernelEach | Method::UmacvlanCli) {
        const K: u32 = 30;
        let t = Instant::now();
        for _ in 0..K {
            if method == Method::KernelEach {
                must(&["ip", "-n", &sw, "link", "show", "dev", "mv0"])?;
            } else {
                lab.cli_ok(&["link", "show", "dev", "mv0"])?;
            }
        }
        Some(t.elapsed().as_secs_f64() * 1e3 / f64::from(K))
    } else {
        None
    };
    // Teardown is not measured. The daemon is killed rather than asked to remove its
    // macvlans one by one; the kernel still unregisters each TAP as its fd closes, one RCU
    // grace period each (seconds for 1000), before the next measurement starts.
    lab.stop_daemon("KILL");
    drop(lab);
    if n >= 100 {
        cmd::sleep(Duration::from_millis(300));
    }
    Ok(CtlResult {
        create_up_ms,
        show_ms,
    })
}
