//! The control plane as users run it: `n` macvlans spread over `k` namespaces, the daemon
//! with `--state`, created and brought up in blocks of 100 (each block timed), then deleted,
//! beside the kernel doing the same into the same namespaces with `ip`. `bench/run` runs it
//! (N = 1000 over 10 namespaces); `umacvlan-bench ctl` runs it alone and can pair binaries.
//!
//! Every method creates `mvI` with `link add link lower name mvI netns NS(I mod k) up type
//! macvlan mode bridge` on a veth `lower` in the lab's `sw` namespace:
//!
//! - `kernel-batch`: one `ip -n sw -batch FILE` per block of 100 (the reference);
//! - `kernel-each`: one `ip` process per macvlan;
//! - `client`: one control connection, each request waiting for its answer (a sequential
//!   client: with `--state` it pays one durable state-file write per request);
//! - `pipelined`: one control connection, requests sent without waiting (at most
//!   [`WINDOW`] outstanding), answers read in order;
//! - `batch`: one `umacvlan -batch FILE` process per block of 100;
//! - `cli`: one `umacvlan` process per macvlan.
//!
//! Teardown: the kernel methods delete with one `ip -n NS -batch` per namespace; the umacvlan
//! methods delete all over one pipelined connection (timed), then the daemon is stopped with
//! SIGTERM; `stop_ms` is also measured with all `n` still present in a second daemon run only
//! when asked (`--stop-full`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use umacvlan::cli::client::{Client, DEFAULT_TIMEOUT};
use umacvlan::cli::{parse, Invocation};
use umacvlan::proto::{Request, Response};
use umacvlan_lab::lab::{must, Lab};

use crate::cmd;

/// Requests in flight on a pipelined connection.
pub const WINDOW: usize = 256;

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct CtlRun {
    /// Method id.
    pub method: String,
    /// Binary label (umacvlan methods).
    pub bin: String,
    /// Macvlans.
    pub n: usize,
    /// Namespaces.
    pub k: usize,
    /// Milliseconds per block of 100 (create + up).
    pub blocks_ms: Vec<f64>,
    /// Total create + up, milliseconds.
    pub create_ms: f64,
    /// Delete all, milliseconds.
    pub delete_ms: f64,
    /// Stopping the daemon (umacvlan), milliseconds.
    pub stop_ms: Option<f64>,
}

fn words(i: usize, ns: &str) -> Vec<String> {
    let name = format!("mv{i}");
    [
        "link", "add", "link", "lower", "name", &name, "netns", ns, "up", "type", "macvlan",
        "mode", "bridge",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn request(w: &[String]) -> Result<Request, String> {
    match parse(w) {
        Invocation::Run { action, .. } => Ok(action.request()),
        _ => Err(format!("cannot parse {w:?}")),
    }
}

/// Sends `reqs` over `c` with at most [`WINDOW`] outstanding; every answer must be `ok`.
pub fn pipelined(c: &mut Client, reqs: &[Request]) -> Result<(), String> {
    for r in c.pipeline(reqs, WINDOW, false).map_err(|e| e.to_string())? {
        if r != Response::Ok {
            return Err(format!("answer {r:?}"));
        }
    }
    Ok(())
}

fn batch_file(lines: &[String]) -> Result<PathBuf, String> {
    let path = cmd::scratch_file("ctl-batch");
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    for l in lines {
        writeln!(f, "{l}").map_err(|e| e.to_string())?;
    }
    Ok(path)
}

/// Runs one method; `bin` is the umacvlan binary.
pub fn run_one(
    method: &str,
    n: usize,
    k: usize,
    bin: &Path,
    label: &str,
) -> Result<CtlRun, String> {
    let mut lab = Lab::new(crate::TAG, bin);
    let sw = lab.ns("sw")?;
    let wire = lab.ns("wire")?;
    lab.veth(&sw, "lower", &wire, "peer")?;
    let mut nss = Vec::new();
    for j in 0..k {
        nss.push(lab.ns(&format!("c{j}"))?);
    }
    let kernel = method.starts_with("kernel");
    let state = cmd::scratch_file("ctl-state");
    let _ = std::fs::remove_file(&state);
    if !kernel {
        let mut args = cmd::daemon_args(lab.prefix());
        args.push("--state".into());
        args.push(state.to_string_lossy().into_owned());
        lab.start_daemon(&sw, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        if let Some(p) = lab.daemon_pid() {
            cmd::register(p, "umacvlan daemon (ctl)");
        }
    }
    let all: Vec<Vec<String>> = (0..n).map(|i| words(i, &nss[i % k])).collect();
    let mut client = if matches!(method, "client" | "pipelined") {
        let mut c = Client::connect(lab.socket(), DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
        c.hello().map_err(|e| e.to_string())?;
        Some(c)
    } else {
        None
    };
    let sock = lab.socket().to_string_lossy().into_owned();
    let bin_s = bin.to_string_lossy().into_owned();
    let mut blocks_ms = Vec::new();
    let t_all = Instant::now();
    for block in all.chunks(100) {
        let t = Instant::now();
        match method {
            "kernel-batch" | "batch" => {
                let lines: Vec<String> = block.iter().map(|w| w.join(" ")).collect();
                let f = batch_file(&lines)?;
                let p = f.to_string_lossy().into_owned();
                let r = if kernel {
                    must(&["ip", "-n", &sw, "-batch", &p])
                } else {
                    must(&[&bin_s, "--socket", &sock, "-batch", &p])
                };
                let _ = std::fs::remove_file(&f);
                r?;
            }
            "kernel-each" => {
                for w in block {
                    let mut v = vec!["ip", "-n", sw.as_str()];
                    v.extend(w.iter().map(String::as_str));
                    must(&v)?;
                }
            }
            "cli" => {
                for w in block {
                    let v: Vec<&str> = w.iter().map(String::as_str).collect();
                    lab.cli_ok(&v)?;
                }
            }
            "client" => {
                let c = client.as_mut().expect("connected");
                for w in block {
                    match c.call(request(w)?).map_err(|e| e.to_string())? {
                        Response::Ok => {}
                        other => return Err(format!("{}: {other:?}", w.join(" "))),
                    }
                }
            }
            "pipelined" => {
                let reqs = block
                    .iter()
                    .map(|w| request(w))
                    .collect::<Result<Vec<_>, _>>()?;
                pipelined(client.as_mut().expect("connected"), &reqs)?;
            }
            m => return Err(format!("unknown method {m:?}")),
        }
        blocks_ms.push(t.elapsed().as_secs_f64() * 1e3);
        cmd::check()?;
    }
    let create_ms = t_all.elapsed().as_secs_f64() * 1e3;
    // Check: every macvlan is up in its namespace.
    let mut up = 0;
    for ns in &nss {
        up += must(&["ip", "-n", ns, "-o", "link", "show", "up"])?
            .lines()
            .filter(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|x| x.trim().starts_with("mv"))
            })
            .count();
    }
    if up != n {
        return Err(format!("{method}: {up} of {n} macvlans up afterwards"));
    }
    // Teardown.
    let t = Instant::now();
    if kernel {
        for (j, ns) in nss.iter().enumerate() {
            let lines: Vec<String> = (0..n)
                .filter(|i| i % k == j)
                .map(|i| format!("link del mv{i}"))
                .collect();
            let f = batch_file(&lines)?;
            let p = f.to_string_lossy().into_owned();
            let r = must(&["ip", "-n", ns, "-batch", &p]);
            let _ = std::fs::remove_file(&f);
            r?;
        }
    } else {
        let mut c = match client.take() {
            Some(c) => c,
            None => {
                let mut c =
                    Client::connect(lab.socket(), DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
                c.hello().map_err(|e| e.to_string())?;
                c
            }
        };
        let reqs: Vec<Request> = (0..n)
            .map(|i| Request::LinkDel {
                name: format!("mv{i}"),
            })
            .collect();
        pipelined(&mut c, &reqs)?;
    }
    let delete_ms = t.elapsed().as_secs_f64() * 1e3;
    let stop_ms = (!kernel).then(|| {
        let t = Instant::now();
        lab.stop_daemon("TERM");
        t.elapsed().as_secs_f64() * 1e3
    });
    drop(lab);
    let _ = std::fs::remove_file(&state);
    Ok(CtlRun {
        method: method.to_string(),
        bin: if kernel {
            String::new()
        } else {
            label.to_string()
        },
        n,
        k,
        blocks_ms,
        create_ms,
        delete_ms,
        stop_ms,
    })
}

/// Median of `v` (empty: NaN).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        f64::NAN
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}
