//! `umacvlan-bench run`: the whole benchmark. Builds every system's lab, then runs the
//! repetitions interleaved (each repetition visits every system, starting each time with a
//! different one, so slow drifts of a shared machine hit all systems alike), then the control
//! plane and the scaling test, then writes `results.json`, `results.md` and the plots.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::cmd;
use crate::control::{self, Method};
use crate::ctlscale;
use crate::measure::{self, Params, Test};
use crate::report::{Results, SystemStatus};
use crate::scale;
use crate::stats::Sample;
use crate::systems::{self, Ctx, Kind, SystemLab};

/// How much to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// ≥ 3 repetitions of everything, longer runs (under 45 minutes on 2 cores).
    Full,
    /// Shorter runs (under 10 minutes on 2 cores).
    Quick,
    /// One short repetition of ping and the frame test, kernel macvlan and umacvlan only:
    /// for the test suite.
    Smoke,
}

impl Mode {
    /// Its name.
    pub fn id(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        }
    }
}

/// The methods of the users' control-plane test (see [`ctlscale`]).
pub const USERS_METHODS: [&str; 5] = ["kernel-batch", "kernel-each", "pipelined", "client", "cli"];

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Mode.
    pub mode: Mode,
    /// Data-plane repetitions.
    pub reps: u32,
    /// Data-plane parameters.
    pub params: Params,
    /// Systems.
    pub systems: Vec<Kind>,
    /// Data-plane tests.
    pub tests: Vec<Test>,
    /// Control-plane N values (empty: skip).
    pub ctl_counts: Vec<usize>,
    /// Control-plane repetitions.
    pub ctl_reps: u32,
    /// The control plane as users run it ([`ctlscale`]): (N macvlans, K namespaces) each
    /// (empty: skip).
    pub users: Vec<(usize, usize)>,
    /// Its methods, interleaved per repetition (see [`ctlscale`]).
    pub users_methods: Vec<String>,
    /// Scaling points (total macvlans on the lower; empty: skip).
    pub scale_points: Vec<usize>,
    /// Scaling repetitions.
    pub scale_reps: u32,
    /// Scaling parameters (frame test and ping lengths).
    pub scale_params: Params,
    /// Output directory.
    pub out: PathBuf,
    /// umacvlan binary.
    pub umacvlan: PathBuf,
    /// This binary.
    pub self_bin: PathBuf,
    /// Source tree (for the git revision).
    pub repo: Option<PathBuf>,
    /// The command line to show in the report.
    pub command: String,
}

impl Config {
    /// The defaults of `mode`.
    pub fn for_mode(mode: Mode, out: PathBuf, umacvlan: PathBuf, self_bin: PathBuf) -> Config {
        let (reps, params, ctl, scale_points, scale_params) = match mode {
            Mode::Full => (
                3,
                Params {
                    secs: 5,
                    omit: 1,
                    udp_pps: 200_000,
                    ping_count: 300,
                    ping_interval: 0.01,
                    l2_secs: 5.0,
                    idle_secs: 0.0,
                },
                vec![1, 100, 1000],
                vec![2, 10, 100, 1000],
                Params {
                    secs: 0,
                    omit: 0,
                    udp_pps: 0,
                    ping_count: 200,
                    ping_interval: 0.01,
                    l2_secs: 3.0,
                    idle_secs: 2.0,
                },
            ),
            Mode::Quick => (
                3,
                Params {
                    secs: 2,
                    omit: 0,
                    udp_pps: 200_000,
                    ping_count: 100,
                    ping_interval: 0.01,
                    l2_secs: 1.5,
                    idle_secs: 0.0,
                },
                vec![1, 100, 1000],
                vec![2, 100, 1000],
                Params {
                    secs: 0,
                    omit: 0,
                    udp_pps: 0,
                    ping_count: 50,
                    ping_interval: 0.01,
                    l2_secs: 1.5,
                    idle_secs: 1.0,
                },
            ),
            Mode::Smoke => (
                1,
                Params {
                    secs: 1,
                    omit: 0,
                    udp_pps: 50_000,
                    ping_count: 20,
                    ping_interval: 0.01,
                    l2_secs: 0.5,
                    idle_secs: 0.0,
                },
                vec![],
                vec![],
                Params {
                    secs: 0,
                    omit: 0,
                    udp_pps: 0,
                    ping_count: 10,
                    ping_interval: 0.01,
                    l2_secs: 0.5,
                    idle_secs: 0.5,
                },
            ),
        };
        // The quick run repeats the control plane and the scaling test twice, not three
        // times: most of their time is the kernel tearing down 1000 TAPs (one RCU grace
        // period each), which is not measured but would push the run past 10 minutes.
        let side_reps = if mode == Mode::Quick { 2 } else { reps };
        let (systems, tests) = if mode == Mode::Smoke {
            (
                vec![Kind::KernelMacvlan, Kind::Umacvlan],
                vec![Test::Ping, Test::L2],
            )
        } else {
            (Kind::ALL.to_vec(), Test::ALL.to_vec())
        };
        Config {
            mode,
            reps,
            params,
            systems,
            tests,
            // The one-namespace test above stops at 100 in the quick run: at 1000, the test
            // below measures the same thing as users run it.
            ctl_counts: if mode == Mode::Quick {
                vec![1, 100]
            } else {
                ctl
            },
            ctl_reps: side_reps,
            users: if mode == Mode::Smoke {
                vec![]
            } else {
                vec![(1000, 10)]
            },
            users_methods: USERS_METHODS.iter().map(|m| m.to_string()).collect(),
            scale_points,
            scale_reps: side_reps,
            scale_params,
            out,
            umacvlan,
            self_bin,
            repo: None,
            command: String::new(),
        }
    }
}

fn now_utc() -> String {
    umacvlan_lab::lab::run(&["date", "-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .stdout
        .trim()
        .to_string()
}

/// Runs the benchmark; returns the results (also written to `cfg.out`). An interrupted run
/// still writes what it measured, marked as interrupted.
pub fn run(cfg: &Config) -> Result<Results, String> {
    cmd::install_signal_handlers().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| format!("{}: {e}", cfg.out.display()))?;
    let t0 = Instant::now();
    let log = |s: &str| eprintln!("[{:6.1}s] {s}", t0.elapsed().as_secs_f64());
    for what in cmd::sweep() {
        log(&format!("removed a leftover of an earlier run: {what}"));
    }
    let mut r = Results {
        schema: 1,
        mode: cfg.mode.id().into(),
        command: cfg.command.clone(),
        started_utc: now_utc(),
        elapsed_s: 0.0,
        config: json!({
            "reps": cfg.reps,
            "params": cfg.params,
            "systems": cfg.systems.iter().map(|k| k.id()).collect::<Vec<_>>(),
            "tests": cfg.tests.iter().map(|t| t.id()).collect::<Vec<_>>(),
            "control_counts": cfg.ctl_counts,
            "control_reps": cfg.ctl_reps,
            "control_users": cfg.users,
            "control_users_methods": cfg.users_methods,
            "scale_points": cfg.scale_points,
            "scale_reps": cfg.scale_reps,
            "scale_params": cfg.scale_params,
            "umacvlan_daemon_args": std::env::var("UMACVLAN_DAEMON_ARGS").ok(),
        }),
        facts: crate::facts::collect(&cfg.umacvlan, cfg.repo.as_deref()),
        systems: Vec::new(),
        samples: Vec::new(),
        runs: Vec::new(),
        errors: Vec::new(),
        interrupted: false,
    };
    log(&format!(
        "{} run: {} systems × {} tests × {} repetitions, control plane N = {:?}, scaling N = {:?} → {}",
        cfg.mode.id(),
        cfg.systems.len(),
        cfg.tests.len(),
        cfg.reps,
        cfg.ctl_counts,
        cfg.scale_points,
        cfg.out.display()
    ));
    let outcome = phases(cfg, &mut r, &log);
    r.interrupted = cmd::interrupted();
    if let Err(e) = &outcome {
        if !r.interrupted {
            log(&format!("stopped: {e}"));
            r.errors
                .push(json!({"part": "run", "system": "", "test": "", "rep": null, "error": e}));
        } else {
            log("interrupted: labs removed; writing what was measured");
        }
    }
    if let Some(f) = r.facts.as_object_mut() {
        f.insert("loadavg_end".into(), json!(crate::facts::loadavg()));
    }
    r.elapsed_s = t0.elapsed().as_secs_f64();
    write_outputs(&r, &cfg.out)?;
    cmd::remove_scratch();
    log(&format!(
        "done in {:.0} s: {}",
        r.elapsed_s,
        cfg.out.join("results.md").display()
    ));
    if r.interrupted {
        return Err("interrupted".into());
    }
    Ok(r)
}

/// Writes `results.json`, the plots and `results.md` into `dir`.
pub fn write_outputs(r: &Results, dir: &std::path::Path) -> Result<(), String> {
    r.save(dir)?;
    crate::plot::draw_all(r, dir)?;
    std::fs::write(dir.join("results.md"), crate::report::markdown(r)).map_err(|e| e.to_string())
}

fn phases(cfg: &Config, r: &mut Results, log: &dyn Fn(&str)) -> Result<(), String> {
    let ctx = Ctx {
        umacvlan: cfg.umacvlan.clone(),
        self_bin: cfg.self_bin.clone(),
    };

    // Data plane: all labs up at once, repetitions interleaved.
    let mut labs: Vec<SystemLab> = Vec::new();
    for &k in &cfg.systems {
        cmd::check()?;
        let status = |status: &str, reason: Option<String>| SystemStatus {
            id: k.id().into(),
            label: k.label().into(),
            status: status.into(),
            reason,
        };
        if let Some(why) = k.unavailable() {
            log(&format!("{}: cannot run here: {why}", k.id()));
            r.systems.push(status("unavailable", Some(why)));
            continue;
        }
        let t = Instant::now();
        match systems::setup(k, &ctx) {
            Ok(sl) => {
                log(&format!(
                    "{}: lab ready in {:.1} s",
                    k.id(),
                    t.elapsed().as_secs_f64()
                ));
                r.systems.push(status("ok", None));
                labs.push(sl);
            }
            Err(e) => {
                cmd::check()?;
                log(&format!("{}: set-up failed: {e}", k.id()));
                r.systems.push(status("failed", Some(e)));
            }
        }
    }
    if !cfg.tests.is_empty() {
        for rep in 0..cfg.reps {
            let k = labs.len();
            for j in 0..k {
                let sl = &mut labs[(j + rep as usize) % k];
                for &test in &cfg.tests {
                    cmd::check()?;
                    let sys = sl.kind.id().to_string();
                    match measure::run(test, sl, &cfg.params) {
                        Ok(m) => {
                            log(&format!(
                                "rep {}/{}: {sys} {}: {}",
                                rep + 1,
                                cfg.reps,
                                test.id(),
                                scale::brief(&m.values)
                            ));
                            for (metric, value) in &m.values {
                                r.samples.push(Sample {
                                    system: sys.clone(),
                                    metric: metric.clone(),
                                    n: None,
                                    rep,
                                    value: *value,
                                });
                            }
                            r.runs.push(json!({"part": "data", "system": sys, "test": test.id(), "rep": rep, "detail": m.detail}));
                        }
                        Err(e) => {
                            cmd::check()?;
                            log(&format!(
                                "rep {}/{}: {sys} {} failed: {e}",
                                rep + 1,
                                cfg.reps,
                                test.id()
                            ));
                            r.errors.push(json!({"part": "data", "system": sys, "test": test.id(), "rep": rep, "error": e}));
                        }
                    }
                }
            }
            let _ = r.save(&cfg.out);
        }
    }
    drop(labs);

    // Control plane: fresh lab for each (method, N, repetition).
    if !cfg.ctl_counts.is_empty() {
        for rep in 0..cfg.ctl_reps {
            for &n in &cfg.ctl_counts {
                for (j, _) in Method::ALL.iter().enumerate() {
                    cmd::check()?;
                    let m = Method::ALL[(j + rep as usize) % Method::ALL.len()];
                    match control::create_up(m, n, &cfg.umacvlan) {
                        Ok(c) => {
                            log(&format!(
                                "control rep {}/{}: {} N={n}: {:.1} ms",
                                rep + 1,
                                cfg.ctl_reps,
                                m.id(),
                                c.create_up_ms
                            ));
                            r.samples.push(Sample {
                                system: m.id().into(),
                                metric: "create_up_ms".into(),
                                n: Some(n as u64),
                                rep,
                                value: c.create_up_ms,
                            });
                            if let Some(s) = c.show_ms {
                                r.samples.push(Sample {
                                    system: m.id().into(),
                                    metric: "show_ms".into(),
                                    n: None,
                                    rep,
                                    value: s,
                                });
                            }
                            r.runs.push(json!({"part": "control", "system": m.id(), "test": "create_up", "n": n, "rep": rep, "detail": c}));
                        }
                        Err(e) => {
                            cmd::check()?;
                            log(&format!(
                                "control rep {}/{}: {} N={n} failed: {e}",
                                rep + 1,
                                cfg.ctl_reps,
                                m.id()
                            ));
                            r.errors.push(json!({"part": "control", "system": m.id(), "test": "create_up", "n": n, "rep": rep, "error": e}));
                        }
                    }
                }
            }
            let _ = r.save(&cfg.out);
        }
    }

    // Control plane as users run it: N over K namespaces, `--state` on, teardown timed.
    if !cfg.users.is_empty() && !cfg.users_methods.is_empty() {
        let ms = &cfg.users_methods;
        for rep in 0..cfg.ctl_reps {
            for &(n, k) in &cfg.users {
                for j in 0..ms.len() {
                    cmd::check()?;
                    let m = &ms[(j + rep as usize) % ms.len()];
                    let sys = format!("users-{m}");
                    match ctlscale::run_one(m, n, k, &cfg.umacvlan, "umacvlan") {
                        Ok(c) => {
                            log(&format!(
                                "control (users) rep {}/{}: {m} N={n} K={k}: create {:.0} ms, delete {:.0} ms",
                                rep + 1,
                                cfg.ctl_reps,
                                c.create_ms,
                                c.delete_ms
                            ));
                            let first = c.blocks_ms.first().copied();
                            let last = c.blocks_ms.last().copied();
                            for (metric, v) in [
                                ("users_create_ms", Some(c.create_ms)),
                                ("users_delete_ms", Some(c.delete_ms)),
                                ("users_stop_ms", c.stop_ms),
                                ("users_first100_ms", first),
                                ("users_last100_ms", last),
                                ("users_growth", first.zip(last).map(|(f, l)| l / f)),
                            ] {
                                if let Some(value) = v {
                                    r.samples.push(Sample {
                                        system: sys.clone(),
                                        metric: metric.into(),
                                        n: Some(n as u64),
                                        rep,
                                        value,
                                    });
                                }
                            }
                            r.runs.push(json!({"part": "control-users", "system": sys, "test": "create_up_delete", "n": n, "k": k, "rep": rep, "detail": c}));
                        }
                        Err(e) => {
                            cmd::check()?;
                            log(&format!(
                                "control (users) rep {}/{}: {m} N={n} failed: {e}",
                                rep + 1,
                                cfg.ctl_reps
                            ));
                            r.errors.push(json!({"part": "control-users", "system": sys, "test": "create_up_delete", "n": n, "rep": rep, "error": e}));
                        }
                    }
                }
            }
            let _ = r.save(&cfg.out);
        }
    }

    // Data plane vs number of macvlans.
    if !cfg.scale_points.is_empty() {
        let mut labs = Vec::new();
        // The kernel as the reference, and each umacvlan data path selected.
        let kinds = scale::KINDS
            .into_iter()
            .filter(|k| *k == Kind::KernelMacvlan || cfg.systems.contains(k));
        for k in kinds {
            cmd::check()?;
            match systems::setup(k, &ctx) {
                Ok(sl) => labs.push(sl),
                Err(e) => {
                    cmd::check()?;
                    log(&format!("scale: {} set-up failed: {e}", k.id()));
                    r.errors.push(json!({"part": "scale", "system": k.id(), "test": "setup", "rep": null, "error": e}));
                }
            }
        }
        scale::run(
            &mut labs,
            &cfg.scale_points,
            cfg.scale_reps,
            &cfg.scale_params,
            r,
            log,
        )?;
    }
    Ok(())
}
