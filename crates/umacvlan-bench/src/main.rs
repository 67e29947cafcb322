//! `umacvlan-bench`: see the crate docs and `bench/README.md`. Normally run through
//! `bench/run`, which installs the tools, builds the release binaries and calls `run`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use umacvlan_bench::measure::Test;
use umacvlan_bench::runner::{self, Config, Mode};
use umacvlan_bench::systems::Kind;
use umacvlan_bench::tapfwd::Side;
use umacvlan_bench::{cmd, l2, report, systems, tapfwd};

#[derive(Parser)]
#[command(
    name = "umacvlan-bench",
    about = "umacvlan's benchmark suite (normally run through bench/run)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark and write results.json, results.md and SVG plots into --out.
    Run {
        /// full, quick or smoke.
        #[arg(long, default_value = "full")]
        mode: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// The umacvlan binary (daemon and CLI) to measure.
        #[arg(long)]
        umacvlan: PathBuf,
        /// Source tree, for the git revision in the facts.
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Repetitions (default: 3; 1 for smoke).
        #[arg(long)]
        reps: Option<u32>,
        /// Comma-separated systems (default: all): kernel-macvlan, umacvlan, umacvlan-bpf,
        /// kernel-macvlan-vepa, umacvlan-vepa, umacvlan-vepa-bpf, linux-bridge, veth, tapfwd,
        /// vde, ovs, ovs-tso.
        #[arg(long, value_delimiter = ',')]
        systems: Option<Vec<String>>,
        /// Comma-separated data-plane tests (default: all): ping, tcp1, tcp2, udp, l2.
        #[arg(long, value_delimiter = ',')]
        tests: Option<Vec<String>>,
        /// Skip the control-plane test.
        #[arg(long)]
        no_control: bool,
        /// Skip the scaling test.
        #[arg(long)]
        no_scale: bool,
        /// The command line to show in the report.
        #[arg(long, default_value = "")]
        command: String,
    },
    /// The minimal TAP→TAP forwarder: creates NETNS/IFNAME TAPs and forwards until SIGTERM.
    Tapfwd {
        /// First TAP, NETNS/IFNAME.
        #[arg(long)]
        a: Side,
        /// Second TAP, NETNS/IFNAME.
        #[arg(long)]
        b: Side,
        /// Plain TAPs (no virtio-net header, no offloads).
        #[arg(long)]
        plain: bool,
    },
    /// Offer 60-byte frames from NETNS/IFNAME to NETNS/IFNAME for SECS seconds; print counts.
    L2 {
        /// Sender, NETNS/IFNAME.
        #[arg(long)]
        tx: Side,
        /// Receiver, NETNS/IFNAME.
        #[arg(long)]
        rx: Side,
        /// Seconds.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
    },
    /// The control plane as users run it: N macvlans over K namespaces, `--state` on, each
    /// block of 100 timed, then teardown; kernel `ip` beside, methods interleaved per
    /// repetition. Prints one JSON line per run, then medians and ratios to kernel-batch.
    Ctl {
        /// umacvlan binaries to compare (each: LABEL=PATH or PATH).
        #[arg(long, required = true)]
        umacvlan: Vec<String>,
        /// Macvlans.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Namespaces they are spread over.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Repetitions.
        #[arg(long, default_value_t = 3)]
        reps: u32,
        /// Comma-separated: kernel-batch, kernel-each, client, pipelined, batch, cli.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "kernel-batch,kernel-each,client,pipelined,batch,cli"
        )]
        methods: Vec<String>,
    },
    /// Remove what killed runs left behind (processes, namespaces, scratch files).
    Sweep,
    /// Redraw results.md and the plots of an earlier run from its results.json.
    Report {
        /// The run's directory.
        dir: PathBuf,
    },
}

fn main() {
    // Called as `umacvlan` (a symlink): be the umacvlan command.
    let argv0 = std::env::args().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "umacvlan")
    {
        std::process::exit(umacvlan::cli::main_entry(
            std::env::args().skip(1).collect(),
        ));
    }
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Run {
            mode,
            out,
            umacvlan,
            repo,
            reps,
            systems,
            tests,
            no_control,
            no_scale,
            command,
        } => {
            let mode = match mode.as_str() {
                "full" => Mode::Full,
                "quick" => Mode::Quick,
                "smoke" => Mode::Smoke,
                m => fail(&format!("unknown mode {m:?} (full, quick, smoke)")),
            };
            let self_bin = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
            // Absolute, but symlinks kept: the name `umacvlan` matters (see main's start).
            let umacvlan = std::path::absolute(&umacvlan)
                .unwrap_or_else(|e| fail(&format!("{}: {e}", umacvlan.display())));
            let mut cfg = Config::for_mode(mode, out, umacvlan, self_bin);
            cfg.repo = repo;
            cfg.command = command;
            if let Some(r) = reps {
                cfg.reps = r.max(1);
                cfg.ctl_reps = cfg.reps;
                cfg.scale_reps = cfg.reps;
            }
            if let Some(s) = systems {
                cfg.systems = s
                    .iter()
                    .map(|x| {
                        Kind::from_id(x).unwrap_or_else(|| fail(&format!("unknown system {x:?}")))
                    })
                    .collect();
            }
            if let Some(t) = tests {
                cfg.tests = t
                    .iter()
                    .filter(|x| !x.is_empty())
                    .map(|x| {
                        Test::from_id(x).unwrap_or_else(|| fail(&format!("unknown test {x:?}")))
                    })
                    .collect();
            }
            if no_control {
                cfg.ctl_counts.clear();
                cfg.users.clear();
            }
            if no_scale {
                cfg.scale_points.clear();
            }
            match runner::run(&cfg) {
                Ok(_) => 0,
                Err(e) if e == "interrupted" => 130,
                Err(e) => {
                    eprintln!("umacvlan-bench: {e}");
                    1
                }
            }
        }
        Cmd::Tapfwd { a, b, plain } => match tapfwd::main(&a, &b, !plain) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tapfwd: {e}");
                1
            }
        },
        Cmd::L2 { tx, rx, secs } => {
            let port = |s: &Side| -> l2::Port {
                let (ifindex, mac) =
                    systems::link_info(&s.netns, &s.ifname).unwrap_or_else(|e| fail(&e));
                l2::Port {
                    netns: s.netns.clone(),
                    ifindex,
                    mac,
                }
            };
            let spec = l2::Spec {
                tx: port(&tx),
                rx: port(&rx),
                secs,
                frame_len: 60,
                drain: std::time::Duration::from_millis(300),
            };
            match l2::run(&spec, || {}, || {}) {
                Ok(c) => {
                    println!(
                        "{}",
                        serde_json::json!({
                            "counts": c,
                            "offered_pps": c.offered_pps(),
                            "delivered_pps": c.delivered_pps(),
                            "loss_pct": c.loss_pct(),
                        })
                    );
                    0
                }
                Err(e) => {
                    eprintln!("l2: {e}");
                    1
                }
            }
        }
        Cmd::Ctl {
            umacvlan,
            n,
            k,
            reps,
            methods,
        } => ctl(&umacvlan, n, k.max(1), reps.max(1), &methods),
        Cmd::Sweep => {
            for what in cmd::sweep() {
                eprintln!("removed {what}");
            }
            0
        }
        Cmd::Report { dir } => {
            match report::Results::load(&dir).and_then(|r| runner::write_outputs(&r, &dir)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("report: {e}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}

fn ctl(bins: &[String], n: usize, k: usize, reps: u32, methods: &[String]) -> i32 {
    use umacvlan_bench::ctlscale::{median, run_one, CtlRun};
    if let Err(e) = cmd::install_signal_handlers() {
        fail(&e.to_string());
    }
    let bins: Vec<(String, PathBuf)> = bins
        .iter()
        .enumerate()
        .map(|(i, b)| match b.split_once('=') {
            Some((l, p)) => (l.to_string(), PathBuf::from(p)),
            None => (format!("bin{i}"), PathBuf::from(b)),
        })
        .map(|(l, p)| (l, std::path::absolute(&p).unwrap_or(p)))
        .collect();
    let mut runs: Vec<CtlRun> = Vec::new();
    for rep in 0..reps {
        for m in methods {
            let targets: Vec<&(String, PathBuf)> = if m.starts_with("kernel") {
                bins.iter().take(1).collect()
            } else {
                bins.iter().collect()
            };
            for (label, path) in targets {
                match run_one(m, n, k, path, label) {
                    Ok(r) => {
                        println!("{}", serde_json::to_string(&r).unwrap_or_default());
                        runs.push(r);
                    }
                    Err(e) => {
                        eprintln!("rep {rep} {m} {label}: {e}");
                        if cmd::interrupted() {
                            cmd::remove_scratch();
                            return 130;
                        }
                    }
                }
            }
        }
    }
    cmd::remove_scratch();
    // Ratios are taken per repetition (paired), then summarized.
    let kb: Vec<&CtlRun> = runs.iter().filter(|r| r.method == "kernel-batch").collect();
    let ke: Vec<&CtlRun> = runs.iter().filter(|r| r.method == "kernel-each").collect();
    println!("n={n} k={k} reps={reps}: median [min..max]");
    let fmt = |v: &[f64]| {
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.2} [{:.2}..{:.2}]", median(v), lo, hi)
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in &runs {
        let key = (r.method.clone(), r.bin.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (m, b) in keys {
        let mine: Vec<&CtlRun> = runs
            .iter()
            .filter(|r| r.method == m && r.bin == b)
            .collect();
        let create: Vec<f64> = mine.iter().map(|r| r.create_ms).collect();
        let del: Vec<f64> = mine.iter().map(|r| r.delete_ms).collect();
        let growth: Vec<f64> = mine
            .iter()
            .filter(|r| r.blocks_ms.len() > 1)
            .map(|r| r.blocks_ms[r.blocks_ms.len() - 1] / r.blocks_ms[0])
            .collect();
        let pair = |refs: &[&CtlRun], f: &dyn Fn(&CtlRun) -> f64| -> Vec<f64> {
            mine.iter()
                .zip(refs.iter())
                .map(|(a, b)| f(a) / f(b))
                .collect()
        };
        let vs_batch = pair(&kb, &|r| r.create_ms);
        let vs_each = pair(&ke, &|r| r.create_ms);
        let del_ratio = pair(&kb, &|r| r.delete_ms);
        let stop: Vec<f64> = mine.iter().filter_map(|r| r.stop_ms).collect();
        println!(
            "{m:>13} {b:>6}: create {} ms; x kernel-batch {}; x kernel-each {}; last/first block {}; delete {} ms (x kernel {}); stop {} ms",
            fmt(&create),
            fmt(&vs_batch),
            fmt(&vs_each),
            fmt(&growth),
            fmt(&del),
            fmt(&del_ratio),
            if stop.is_empty() { "-".into() } else { fmt(&stop) },
        );
    }
    0
}

fn fail(msg: &str) -> ! {
    eprintln!("umacvlan-bench: {msg}");
    std::process::exit(2);
}
