//! Data-plane cost as the number of macvlans on the lower grows, with the macvlans as users
//! have them: the kernel macvlan and umacvlan labs (mode bridge; umacvlan on each data path
//! selected) get extra macvlans until the lower carries N in all, [`PER_NAMESPACE`] to a
//! namespace (a container each), up, with an IPv4 and an IPv6 address (so IPv6 runs its
//! DAD, router solicitations and MLD reports as it does in containers). At each N, once they
//! have settled, the raw-frame test and ping run again between the same two endpoints, and
//! the switching process's CPU is measured while the endpoints send nothing (what the daemon
//! spends on N macvlans by itself). Repetitions alternate between the systems at each N.

use serde_json::json;

use crate::control::{client_adds, kernel_batch};
use crate::measure::{self, Params};
use crate::report::Results;
use crate::stats::Sample;
use crate::systems::{Kind, SystemLab};

/// Extra macvlans per namespace.
pub const PER_NAMESPACE: usize = 10;

/// How long new macvlans get to settle (IPv6 DAD takes ~1 s; router solicitations follow)
/// before anything is measured.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The systems the scaling test can grow.
pub const KINDS: [Kind; 3] = [Kind::KernelMacvlan, Kind::Umacvlan, Kind::UmacvlanBpf];

/// Grows `sl` (a macvlan lab with two macvlans) to `n` macvlans on its lower: extra macvlan
/// `e` (from 0) is `x<e>` in lab namespace `c<e / PER_NAMESPACE>`, with 10.77.0.0/16 and
/// fd77::/64 addresses.
pub fn grow(sl: &mut SystemLab, have: usize, n: usize) -> Result<(), String> {
    if n <= have {
        return Ok(());
    }
    let sw = sl.sw.clone().ok_or("no switch namespace")?;
    let lower = sl.lower.clone().ok_or("no lower")?;
    let extra = |count: usize| count.saturating_sub(2);
    let made_ns = extra(have).div_ceil(PER_NAMESPACE);
    for j in made_ns..extra(n).div_ceil(PER_NAMESPACE) {
        let ns = sl.lab.ns(&format!("c{j}"))?;
        // The lab turns IPv6 off in its namespaces; containers have it.
        sl.lab.exec_ok(
            &ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
            ],
        )?;
    }
    let words: Vec<Vec<String>> = (extra(have)..extra(n))
        .map(|e| {
            let ns = sl.lab.ns_name(&format!("c{}", e / PER_NAMESPACE));
            [
                "link",
                "add",
                "link",
                &lower,
                "name",
                &format!("x{e}"),
                "netns",
                &ns,
                "up",
                "type",
                "macvlan",
                "mode",
                "bridge",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        })
        .collect();
    match sl.kind {
        Kind::KernelMacvlan => kernel_batch(&sw, &words)?,
        Kind::Umacvlan | Kind::UmacvlanBpf => client_adds(&sl.lab, &words)?,
        k => return Err(format!("{} has no macvlans to add", k.id())),
    }
    // Addresses, one `ip -batch` per namespace.
    let mut e = extra(have);
    while e < extra(n) {
        let j = e / PER_NAMESPACE;
        let end = ((j + 1) * PER_NAMESPACE).min(extra(n));
        let lines: Vec<Vec<String>> = (e..end)
            .flat_map(|e| {
                let dev = format!("x{e}");
                [
                    format!("addr add 10.77.{}.{}/16 dev {dev}", e / 250, e % 250 + 1),
                    format!("addr add fd77::{:x}/64 dev {dev}", e + 1),
                ]
            })
            .map(|l| l.split(' ').map(String::from).collect())
            .collect();
        kernel_batch(&sl.lab.ns_name(&format!("c{j}")), &lines)?;
        e = end;
    }
    Ok(())
}

/// Metrics measured at each N.
pub const SCALE_METRICS: [&str; 4] = [
    "l2_delivered_pps",
    "l2_switch_ns_per_frame",
    "ping_avg_us",
    "ping_p99_us",
];

/// Runs the scaling test on `labs` over `points`; adds samples (with `n`), raw runs and
/// errors to `r`.
pub fn run(
    labs: &mut [SystemLab],
    points: &[usize],
    reps: u32,
    p: &Params,
    r: &mut Results,
    log: &dyn Fn(&str),
) -> Result<(), String> {
    let Results {
        samples,
        runs: raw,
        errors,
        ..
    } = r;
    let mut have = vec![2usize; labs.len()];
    for &n in points {
        let grew = have.iter().any(|h| *h < n);
        for (i, sl) in labs.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            grow(sl, have[i], n)?;
            log(&format!(
                "scale: {} now has {n} macvlans on its lower (+{} in {:.1} s)",
                sl.kind.id(),
                n.saturating_sub(have[i]),
                t.elapsed().as_secs_f64()
            ));
            have[i] = have[i].max(n);
        }
        if grew {
            crate::cmd::sleep(SETTLE);
        }
        for rep in 0..reps {
            let k = labs.len();
            for j in 0..k {
                crate::cmd::check()?;
                let sl = &mut labs[(j + rep as usize) % k];
                let sys = sl.kind.id().to_string();
                if let (Some(pid), true) = (sl.switch_pid, p.idle_secs > 0.0) {
                    let m = crate::procfs::CpuMeter::start(Some(pid));
                    crate::cmd::sleep(std::time::Duration::from_secs_f64(p.idle_secs));
                    let u = m.finish();
                    if let Some(c) = u.switch_cpu_s {
                        let pct = 100.0 * c / u.wall_s.max(1e-3);
                        samples.push(Sample {
                            system: sys.clone(),
                            metric: "scale_idle_cpu_pct".into(),
                            n: Some(n as u64),
                            rep,
                            value: pct,
                        });
                        log(&format!(
                            "scale n={n} rep {}: {sys} idle: {pct:.1}% of a core",
                            rep + 1
                        ));
                    }
                }
                for (what, res) in [
                    ("l2", measure::l2(sl, p.l2_secs)),
                    ("ping", measure::ping(sl, p.ping_count, p.ping_interval)),
                ] {
                    match res {
                        Ok(m) => {
                            for (metric, value) in &m.values {
                                if SCALE_METRICS.contains(&metric.as_str()) {
                                    samples.push(Sample {
                                        system: sys.clone(),
                                        metric: format!("scale_{metric}"),
                                        n: Some(n as u64),
                                        rep,
                                        value: *value,
                                    });
                                }
                            }
                            raw.push(json!({"part": "scale", "system": sys, "test": what, "n": n, "rep": rep, "detail": m.detail}));
                            log(&format!(
                                "scale n={n} rep {}: {sys} {what}: {}",
                                rep + 1,
                                brief(&m.values)
                            ));
                        }
                        Err(e) => {
                            crate::cmd::check()?;
                            log(&format!(
                                "scale n={n} rep {}: {sys} {what} failed: {e}",
                                rep + 1
                            ));
                            errors.push(json!({"part": "scale", "system": sys, "test": what, "n": n, "rep": rep, "error": e}));
                        }
                    }
                }
            }
        }
    }
    // Teardown is not measured: kill the daemon rather than have it remove 1000 macvlans one
    // by one.
    for sl in labs.iter_mut() {
        sl.lab.stop_daemon("KILL");
    }
    Ok(())
}

/// A short text of some values for the progress log.
pub fn brief(values: &[(String, f64)]) -> String {
    values
        .iter()
        .map(|(k, v)| {
            if v.abs() >= 1000.0 {
                format!("{k}={v:.0}")
            } else {
                format!("{k}={v:.3}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
