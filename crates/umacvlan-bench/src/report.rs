//! The results of a run (`results.json`) and the Markdown report made from them
//! (`results.md`): medians, min–max ranges and ratios to the kernel macvlan, the targets of
//! issue 7 marked met or not met, the systems that could not run and why, and the machine.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::control::Method;
use crate::stats::{summary_of, Sample, Summary};
use crate::systems::Kind;

/// The reference system.
pub const REFERENCE: &str = "kernel-macvlan";

/// Whether a system ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SystemStatus {
    /// System id.
    pub id: String,
    /// What it is.
    pub label: String,
    /// `ok`, `unavailable` (cannot run here) or `failed` (set-up failed).
    pub status: String,
    /// Why not, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything a run produced (`results.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    /// Format version.
    pub schema: u32,
    /// `full`, `quick` or `smoke`.
    pub mode: String,
    /// The command that made it.
    pub command: String,
    /// Start time, UTC.
    pub started_utc: String,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    /// Parameters.
    pub config: Value,
    /// The machine.
    pub facts: Value,
    /// Each system's status.
    pub systems: Vec<SystemStatus>,
    /// Every measured value.
    pub samples: Vec<Sample>,
    /// Raw data of every run.
    pub runs: Vec<Value>,
    /// Runs that failed.
    pub errors: Vec<Value>,
    /// Stopped by a signal before the end.
    pub interrupted: bool,
}

impl Results {
    /// Writes `results.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let s = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("results.json"), s).map_err(|e| e.to_string())
    }

    /// Reads `results.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Results, String> {
        let s = std::fs::read_to_string(dir.join("results.json")).map_err(|e| e.to_string())?;
        serde_json::from_str(&s).map_err(|e| e.to_string())
    }

    /// Summary of one metric of one system.
    pub fn summary(&self, system: &str, metric: &str, n: Option<u64>) -> Option<Summary> {
        summary_of(&self.samples, system, metric, n)
    }

    /// Ids of the systems that ran, in report order.
    pub fn ran(&self) -> Vec<String> {
        self.systems
            .iter()
            .filter(|s| s.status == "ok")
            .map(|s| s.id.clone())
            .collect()
    }
}

/// How a metric is shown.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// Key in the samples.
    pub key: &'static str,
    /// Column title.
    pub title: &'static str,
    /// Unit as shown.
    pub unit: &'static str,
    /// Shown value = stored value × this.
    pub scale: f64,
    /// Bigger is better.
    pub higher_better: bool,
    /// The system ratios are taken to.
    pub reference: &'static str,
}

const fn m(
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    scale: f64,
    higher_better: bool,
) -> MetricDef {
    MetricDef {
        key,
        title,
        unit,
        scale,
        higher_better,
        reference: REFERENCE,
    }
}

/// The floor that per-frame CPU and memory are judged against (kernel switches have no
/// switching process).
pub const FLOOR: &str = "tapfwd";

const fn vs_floor(d: MetricDef) -> MetricDef {
    MetricDef {
        reference: FLOOR,
        ..d
    }
}

/// The data-plane metrics, by table.
pub const TABLES: [(&str, &[MetricDef]); 3] = [
    (
        "Throughput",
        &[
            m("tcp1_gbps", "TCP 1 stream", "Gbit/s", 1.0, true),
            m("tcp1_retrans", "retransmits", "", 1.0, false),
            m("tcp2_gbps", "TCP 2 streams", "Gbit/s", 1.0, true),
            m("tcp2_retrans", "retransmits", "", 1.0, false),
            m("udp64_pps", "UDP 64 B received", "kpps", 1e-3, true),
            m("udp64_loss_pct", "UDP loss", "%", 1.0, false),
        ],
    ),
    (
        "Latency",
        &[
            m("ping_avg_us", "ping RTT avg", "µs", 1.0, false),
            m("ping_p99_us", "ping RTT p99", "µs", 1.0, false),
        ],
    ),
    (
        "60-byte frames (our AF_PACKET generator → sink, as fast as the generator can)",
        &[
            m("l2_offered_pps", "offered", "Mpps", 1e-6, true),
            m("l2_delivered_pps", "delivered", "Mpps", 1e-6, true),
            m("l2_loss_pct", "lost", "%", 1.0, false),
            vs_floor(m(
                "l2_switch_ns_per_frame",
                "switch CPU per frame, ×: vs tapfwd",
                "ns",
                1.0,
                false,
            )),
            vs_floor(m(
                "switch_rss_kib",
                "switch RSS, ×: vs tapfwd",
                "MiB",
                1.0 / 1024.0,
                false,
            )),
        ],
    ),
];

/// Every data-plane metric.
pub fn metric_defs() -> impl Iterator<Item = &'static MetricDef> {
    TABLES.iter().flat_map(|(_, ms)| ms.iter())
}

/// A number with about three significant digits.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn cell(s: Option<Summary>, scale: f64, reference: Option<Summary>) -> String {
    let Some(s) = s else {
        return "–".into();
    };
    let mut c = if s.n > 1 {
        format!(
            "{} ({}–{})",
            num(s.median * scale),
            num(s.min * scale),
            num(s.max * scale)
        )
    } else {
        num(s.median * scale)
    };
    if let Some(r) = reference {
        if r.median != 0.0 {
            let _ = write!(c, " **×{:.2}**", s.median / r.median);
        }
    }
    c
}

/// Ratio of medians, when both exist.
fn ratio(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b.median != 0.0).then(|| a.median / b.median)
}

fn label_of(id: &str) -> String {
    Kind::from_id(id)
        .map(|k| k.label().to_string())
        .or_else(|| {
            Method::ALL
                .into_iter()
                .find(|m| m.id() == id)
                .map(|m| m.label().to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

/// One target's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// The target as stated in the issue.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// `met`, `not met`, or `not measured`.
    pub status: String,
}

/// The targets, judged on the medians of this run.
pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let k = REFERENCE;
    let u = "umacvlan";
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met".to_string(),
        Some(false) => "not met".to_string(),
        None => "not measured".to_string(),
    };
    for (metric, what) in [
        ("tcp1_gbps", "TCP, 1 stream"),
        ("tcp2_gbps", "TCP, 2 streams"),
    ] {
        let q = ratio(r.summary(u, metric, None), r.summary(k, metric, None));
        t.push(Target {
            target: format!("{what} ≥ 0.9× kernel macvlan"),
            measured: q.map(|q| format!("{q:.2}×")).unwrap_or_else(|| "–".into()),
            status: verdict(q.map(|q| q >= 0.9)),
        });
    }
    let ud = r.summary(u, "l2_delivered_pps", None);
    let fd = r.summary("tapfwd", "l2_delivered_pps", None);
    let q = ratio(ud, fd);
    t.push(Target {
        target: "60-byte frames delivered ≥ the minimal forwarder's rate".into(),
        measured: match (ud, fd, q) {
            (Some(a), Some(b), Some(q)) => format!(
                "{} vs {} Mpps ({q:.2}×)",
                num(a.median * 1e-6),
                num(b.median * 1e-6)
            ),
            _ => "–".into(),
        },
        status: verdict(q.map(|q| q >= 1.0)),
    });
    let uc = r.summary(u, "l2_switch_ns_per_frame", None);
    let fc = r.summary("tapfwd", "l2_switch_ns_per_frame", None);
    let q = ratio(uc, fc);
    t.push(Target {
        target: "… with no more CPU per frame than the minimal forwarder".into(),
        measured: match (uc, fc, q) {
            (Some(a), Some(b), Some(q)) => {
                format!("{} vs {} ns/frame ({q:.2}×)", num(a.median), num(b.median))
            }
            _ => "–".into(),
        },
        status: verdict(q.map(|q| q <= 1.0)),
    });
    let kd = r.summary(k, "l2_delivered_pps", None);
    let q = ratio(ud, kd);
    let loss = r.summary(u, "l2_loss_pct", None);
    t.push(Target {
        target: "… towards ≥ 0.9× the kernel macvlan, nothing lost".into(),
        measured: match (q, loss) {
            (Some(q), Some(l)) => format!("{q:.2}× delivered, {}% lost", num(l.median)),
            _ => "–".into(),
        },
        status: verdict(q.zip(loss).map(|(q, l)| q >= 0.9 && l.median < 0.1)),
    });
    for (metric, what) in [("ping_avg_us", "average"), ("ping_p99_us", "p99")] {
        let q = ratio(r.summary(u, metric, None), r.summary(k, metric, None));
        t.push(Target {
            target: format!("ping round trip ({what}) ≤ 3× kernel macvlan"),
            measured: q.map(|q| format!("{q:.2}×")).unwrap_or_else(|| "–".into()),
            status: verdict(q.map(|q| q <= 3.0)),
        });
    }
    // Issue 13, from the users' control-plane test (N = 1000 over namespaces, `--state`).
    let n = Some(1000);
    let users: [(&str, &str, &str, &str, f64); 5] = [
        (
            "pipelined",
            "users_create_ms",
            "kernel-batch",
            "create + up 1000 over one connection ≤ 1.5× `ip -batch`",
            1.5,
        ),
        (
            "cli",
            "users_create_ms",
            "kernel-each",
            "create + up 1000, a CLI process each ≤ 1.2× one `ip` each",
            1.2,
        ),
        (
            "pipelined",
            "users_delete_ms",
            "kernel-batch",
            "delete all 1000 ≤ 2× the kernel",
            2.0,
        ),
        (
            "pipelined",
            "users_growth",
            "",
            "cost per add flat in N: last 100 ≤ 1.2× first 100 (one connection)",
            1.2,
        ),
        (
            "cli",
            "users_growth",
            "",
            "… and with a CLI process each",
            1.2,
        ),
    ];
    for (m, metric, reference, target, limit) in users {
        let q = if reference.is_empty() {
            r.summary(&format!("users-{m}"), metric, n)
        } else {
            paired(
                r,
                &format!("users-{m}"),
                &format!("users-{reference}"),
                metric,
                n,
            )
        };
        t.push(Target {
            target: target.into(),
            measured: q
                .map(|q| {
                    if q.n > 1 {
                        format!("{:.2}× ({:.2}–{:.2})", q.median, q.min, q.max)
                    } else {
                        format!("{:.2}×", q.median)
                    }
                })
                .unwrap_or_else(|| "–".into()),
            status: verdict(q.map(|q| q.median <= limit)),
        });
    }
    t
}

/// The ratios `a`/`b` of `metric` at `n`, paired by repetition (a shared machine drifts
/// between repetitions, less within one).
fn paired(r: &Results, a: &str, b: &str, metric: &str, n: Option<u64>) -> Option<Summary> {
    let of = |sys: &str| -> Vec<(u32, f64)> {
        r.samples
            .iter()
            .filter(|s| s.system == sys && s.metric == metric && s.n == n)
            .map(|s| (s.rep, s.value))
            .collect()
    };
    let bs = of(b);
    let q: Vec<f64> = of(a)
        .into_iter()
        .filter_map(|(rep, x)| {
            bs.iter()
                .find(|(r, _)| *r == rep)
                .filter(|(_, y)| *y != 0.0)
                .map(|(_, y)| x / y)
        })
        .collect();
    crate::stats::summarize(&q)
}

/// The Markdown report.
pub fn markdown(r: &Results) -> String {
    let mut o = String::new();
    let f = &r.facts;
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let _ = writeln!(
        o,
        "# umacvlan benchmark — {} run, {}\n",
        r.mode, r.started_utc
    );
    let _ = writeln!(
        o,
        "Command: `{}` · {:.0} s in all{}\n",
        r.command,
        r.elapsed_s,
        if r.interrupted {
            " · **interrupted**"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "Machine: {} cores ({}), {} MiB, Linux {}, {} · umacvlan {} ({}) · load average at start {}, at end {}\n",
        f["cores"],
        s(&f["cpu_model"]),
        f["mem_total_mib"],
        s(&f["kernel"]),
        s(&f["os"]),
        s(&f["umacvlan_git"]),
        s(&f["umacvlan_binary"]),
        s(&f["loadavg_start"]),
        s(&f["loadavg_end"]),
    );
    let reps = r.config["reps"].as_u64().unwrap_or(0);
    let _ = writeln!(
        o,
        "Every cell: median (min–max) of {reps} repetitions; **×r**: ratio of medians to the kernel macvlan \
         (bridge mode) measured in the same run, repetitions interleaved across systems. \
         Higher is better for rates, lower for times, losses, CPU and memory.\n"
    );

    let _ = writeln!(o, "## Targets (issue 7)\n");
    let _ = writeln!(o, "| target | measured (medians) | status |\n|---|---|---|");
    for t in targets(r) {
        let st = match t.status.as_str() {
            "met" => "✅ met".to_string(),
            "not met" => "❌ not met".to_string(),
            x => x.to_string(),
        };
        let _ = writeln!(o, "| {} | {} | {} |", t.target, t.measured, st);
    }
    o.push('\n');

    let ran = r.ran();
    for (title, metrics) in TABLES {
        if !metrics.iter().any(|md| {
            r.samples
                .iter()
                .any(|x| x.metric == md.key && x.n.is_none())
        }) {
            continue;
        }
        let _ = writeln!(o, "## {title}\n");
        let _ = write!(o, "| system |");
        for md in metrics {
            let unit = if md.unit.is_empty() {
                String::new()
            } else {
                format!(" ({})", md.unit)
            };
            let _ = write!(o, " {}{unit} |", md.title);
        }
        let _ = write!(o, "\n|---|");
        for _ in metrics {
            o.push_str("---|");
        }
        o.push('\n');
        for sys in &ran {
            let _ = write!(o, "| {} |", label_of(sys));
            for md in metrics {
                let reference = r.summary(md.reference, md.key, None);
                // Ratios only where they mean something: not for counts that are often 0.
                let show_ratio = !md.key.ends_with("_retrans") && !md.key.ends_with("_loss_pct");
                let _ = write!(
                    o,
                    " {} |",
                    cell(
                        r.summary(sys, md.key, None),
                        md.scale,
                        if show_ratio { reference } else { None }
                    )
                );
            }
            o.push('\n');
        }
        o.push('\n');
    }

    // Control plane.
    let ns: Vec<u64> = {
        let mut v: Vec<u64> = r
            .samples
            .iter()
            .filter(|s| s.metric == "create_up_ms")
            .filter_map(|s| s.n)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if !ns.is_empty() {
        let _ = writeln!(o, "## Control plane: create and bring up N macvlans (ms)\n");
        let _ = writeln!(
            o,
            "Each in a fresh namespace with a veth lower; every method sends the same words, \
             `link add link lower name mvI up type macvlan mode bridge`; afterwards `ip link show up` \
             must list all N. Ratios to the kernel with one `ip -batch`.\n"
        );
        let _ = write!(o, "| N |");
        for m in Method::ALL {
            let _ = write!(o, " {} |", m.label());
        }
        let _ = write!(o, "\n|---|");
        for _ in Method::ALL {
            o.push_str("---|");
        }
        o.push('\n');
        for n in &ns {
            let _ = write!(o, "| {n} |");
            let reference = r.summary(Method::KernelBatch.id(), "create_up_ms", Some(*n));
            for m in Method::ALL {
                let _ = write!(
                    o,
                    " {} |",
                    cell(r.summary(m.id(), "create_up_ms", Some(*n)), 1.0, reference)
                );
            }
            o.push('\n');
        }
        let ip = r.summary(Method::KernelEach.id(), "show_ms", None);
        let cli = r.summary(Method::UmacvlanCli.id(), "show_ms", None);
        if ip.is_some() || cli.is_some() {
            let _ = writeln!(
                o,
                "\nFixed cost of one command (`… link show dev mv0`, process start included): \
                 `ip` {} ms, `umacvlan` {} ms. Per macvlan at N = {}: umacvlan CLI {} ms, \
                 one connection {} ms, `ip` per process {} ms, `ip -batch` {} ms.\n",
                cell(ip, 1.0, None),
                cell(cli, 1.0, None),
                ns.last().unwrap_or(&0),
                per(r, Method::UmacvlanCli, *ns.last().unwrap_or(&1)),
                per(r, Method::UmacvlanClient, *ns.last().unwrap_or(&1)),
                per(r, Method::KernelEach, *ns.last().unwrap_or(&1)),
                per(r, Method::KernelBatch, *ns.last().unwrap_or(&1)),
            );
        }
    }

    // Control plane as users run it.
    let users: Vec<(u64, u64)> = r
        .runs
        .iter()
        .filter(|x| x["part"] == "control-users")
        .filter_map(|x| Some((x["n"].as_u64()?, x["k"].as_u64()?)))
        .fold(Vec::new(), |mut v, p| {
            if !v.contains(&p) {
                v.push(p);
            }
            v
        });
    for (n, k) in users {
        let _ = writeln!(
            o,
            "## Control plane, as users run it: {n} macvlans over {k} namespaces
"
        );
        let _ = writeln!(
            o,
            "Each method in a fresh lab: `link add link lower name mvI netns cJ up type macvlan \
             mode bridge` (J = I mod {k}), the daemon with `--state`; then every macvlan deleted \
             (the kernel: one `ip -batch` per namespace; umacvlan: over one connection) and the \
             daemon stopped. Methods: `ip -batch` per block of 100; one `ip` per macvlan; one \
             connection with requests pipelined; one connection, each request waiting for its \
             answer; one `umacvlan` process per macvlan. Ratios are paired within a repetition; \
             medians (min–max).\n"
        );
        let _ = writeln!(
            o,
            "| method | create + up, ms | × `ip -batch` | × one `ip` each | last 100 / first 100 | delete all, ms | × kernel | stop, ms |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
        let ns = Some(n);
        let ratio_cell = |q: Option<Summary>| match q {
            Some(q) if q.n > 1 => format!("{:.2} ({:.2}–{:.2})", q.median, q.min, q.max),
            Some(q) => format!("{:.2}", q.median),
            None => "–".into(),
        };
        for m in crate::runner::USERS_METHODS {
            let sys = format!("users-{m}");
            if r.summary(&sys, "users_create_ms", ns).is_none() {
                continue;
            }
            let _ = writeln!(
                o,
                "| {m} | {} | {} | {} | {} | {} | {} | {} |",
                cell(r.summary(&sys, "users_create_ms", ns), 1.0, None),
                ratio_cell(paired(r, &sys, "users-kernel-batch", "users_create_ms", ns)),
                ratio_cell(paired(r, &sys, "users-kernel-each", "users_create_ms", ns)),
                ratio_cell(r.summary(&sys, "users_growth", ns)),
                cell(r.summary(&sys, "users_delete_ms", ns), 1.0, None),
                ratio_cell(paired(r, &sys, "users-kernel-batch", "users_delete_ms", ns)),
                cell(r.summary(&sys, "users_stop_ms", ns), 1.0, None),
            );
        }
        o.push('\n');
    }

    // Scaling.
    let points: Vec<u64> = {
        let mut v: Vec<u64> = r
            .samples
            .iter()
            .filter(|s| s.metric.starts_with("scale_"))
            .filter_map(|s| s.n)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if !points.is_empty() {
        let base = points[0];
        let _ = writeln!(o, "## Data plane vs number of macvlans on the lower\n");
        let _ = writeln!(
            o,
            "The two endpoint macvlans plus N − 2 more on the same lower, {} to a namespace, up, \
             each with an IPv4 and an IPv6 address, settled {} s; 60-byte frames and ping between \
             the endpoints, and the switching process's CPU while the endpoints send nothing \
             (which the CPU per frame includes). In brackets: the ratio to the kernel at the same \
             N; \"vs N = {base}\": the ratio to the same system with {base}.\n",
            crate::scale::PER_NAMESPACE,
            crate::scale::SETTLE.as_secs()
        );
        let _ = writeln!(
            o,
            "| N | system | delivered (Mpps) | delivered vs N = {base} | CPU per frame (ns) | idle (% of a core) | ping avg (µs) |\n|---|---|---|---|---|---|---|"
        );
        let systems: Vec<&str> = crate::scale::KINDS
            .iter()
            .map(|k| k.id())
            .filter(|sys| {
                r.summary(sys, "scale_l2_delivered_pps", Some(base))
                    .is_some()
            })
            .collect();
        for n in points {
            let kd = r.summary(REFERENCE, "scale_l2_delivered_pps", Some(n));
            let kp = r.summary(REFERENCE, "scale_ping_avg_us", Some(n));
            for sys in &systems {
                let reference = |s| if *sys == REFERENCE { None } else { s };
                let d = r.summary(sys, "scale_l2_delivered_pps", Some(n));
                let vs_base = match (d, r.summary(sys, "scale_l2_delivered_pps", Some(base))) {
                    (Some(d), Some(b)) if b.median > 0.0 => format!("×{:.2}", d.median / b.median),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    o,
                    "| {n} | {sys} | {} | {vs_base} | {} | {} | {} |",
                    cell(d, 1e-6, reference(kd)),
                    cell(
                        r.summary(sys, "scale_l2_switch_ns_per_frame", Some(n)),
                        1.0,
                        None
                    ),
                    cell(r.summary(sys, "scale_idle_cpu_pct", Some(n)), 1.0, None),
                    cell(
                        r.summary(sys, "scale_ping_avg_us", Some(n)),
                        1.0,
                        reference(kp)
                    ),
                );
            }
        }
        o.push('\n');
    }

    let missing: Vec<&SystemStatus> = r.systems.iter().filter(|s| s.status != "ok").collect();
    if !missing.is_empty() {
        let _ = writeln!(o, "## Systems not measured\n");
        for s in missing {
            let _ = writeln!(
                o,
                "- **{}** ({}): {} — {}",
                s.id,
                s.label,
                s.status,
                s.reason.as_deref().unwrap_or("")
            );
        }
        o.push('\n');
    }
    if !r.errors.is_empty() {
        let _ = writeln!(o, "## Failed runs\n");
        for e in &r.errors {
            let _ = writeln!(
                o,
                "- {} {} {} rep {}: {}",
                e["part"].as_str().unwrap_or(""),
                e["system"].as_str().unwrap_or(""),
                e["test"].as_str().unwrap_or(""),
                e["rep"],
                e["error"].as_str().unwrap_or("").replace('\n', " ")
            );
        }
        o.push('\n');
    }

    let _ = writeln!(o, "## Plots\n");
    for p in crate::plot::files(r) {
        let _ = writeln!(o, "![{p}]({p})");
    }
    o.push('\n');

    let _ = writeln!(o, "## Method\n");
    let c = &r.config;
    let _ = writeln!(
        o,
        "- Lab: namespaces `a` and `b` with one interface each (`ea` 198.18.0.1/24, `eb` 198.18.0.2/24), the \
         system in between; macvlans sit on a veth lower (its far end idle, or a Linux bridge with \
         hairpin on for vepa); umacvlan is the release build, its daemon in the lower's namespace \
         with one worker per core.\n\
         - iperf3 TCP: {} s{} per run, received rate and sender retransmits; UDP: 64-byte \
         datagrams offered at {} per second for {} s, 4 MiB socket buffers, rate received and loss.\n\
         - ping: {} echoes {} s apart; average and 99th percentile.\n\
         - 60-byte frames: our generator (AF_PACKET, `sendmmsg` of 64, qdisc bypassed) on `a/ea` \
         for {} s as fast as it can, our sink (AF_PACKET, `recvmmsg`) on `b/eb`; offered and \
         delivered rates over the sending time. Switch CPU per frame: utime + stime of the \
         switching process (umacvlan daemon, tapfwd, vde_switch, ovs-vswitchd) from /proc/PID/stat \
         over the test, divided by the frames delivered (kernel switches have no such process: the \
         work is done in the sender's and receiver's context). RSS: VmRSS of that process after it.\n\
         - Generator, sink and switch share the machine's {} cores, as they would on a host.\n\
         - umacvlan daemons keep their statistics tree on tmpfs (`--stats-dir` under /dev/shm), as \
         the default /run/umacvlan/net is on a normal host; the daemon rewrites it on every change.\n",
        c["params"]["secs"],
        if c["params"]["omit"].as_u64().unwrap_or(0) > 0 {
            format!(" (+{} s warm-up left out)", c["params"]["omit"])
        } else {
            String::new()
        },
        c["params"]["udp_pps"],
        c["params"]["secs"],
        c["params"]["ping_count"],
        c["params"]["ping_interval"],
        c["params"]["l2_secs"],
        f["cores"],
    );

    let _ = writeln!(o, "## Machine and versions\n\n| fact | value |\n|---|---|");
    if let Some(obj) = f.as_object() {
        for (k, v) in obj {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => "not installed / unknown".into(),
                x => x.to_string(),
            };
            let _ = writeln!(o, "| {k} | {} |", v.replace('|', "\\|"));
        }
    }
    o
}

fn per(r: &Results, m: Method, n: u64) -> String {
    r.summary(m.id(), "create_up_ms", Some(n))
        .map(|s| num(s.median / n as f64))
        .unwrap_or_else(|| "–".into())
}
