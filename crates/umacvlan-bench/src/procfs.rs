//! Readings from /proc: a process's CPU time (utime + stime of all its threads) and memory,
//! and the machine's busy time.

use serde::Serialize;
use std::sync::OnceLock;
use std::time::Instant;

/// Clock ticks per second of /proc's times (`getconf CLK_TCK`, 100 on Linux).
pub fn clk_tck() -> u64 {
    static T: OnceLock<u64> = OnceLock::new();
    *T.get_or_init(|| {
        umacvlan_lab::lab::run(&["getconf", "CLK_TCK"])
            .stdout
            .trim()
            .parse()
            .unwrap_or(100)
    })
}

/// The fields of /proc/PID/stat after the command name (field 3 is index 0).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<i64>().map(|v| v as u64).unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of process `pid` (all threads), in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // utime and stime are fields 14 and 15.
    Some(f.get(11)? + f.get(12)?)
}

/// The start time of process `pid` (field 22), to recognise it later.
pub fn starttime(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19).copied()
}

/// `VmRSS` and `VmHWM` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Busy ticks of the whole machine (all CPUs) since boot: everything but idle and iowait.
pub fn machine_busy_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let l = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let total: u64 = v.iter().take(8).sum();
    Some(total - v.get(3)? - v.get(4)?)
}

/// CPU used over an interval.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuUse {
    /// Wall time, seconds.
    pub wall_s: f64,
    /// CPU time of the switching process (if there is one), seconds.
    pub switch_cpu_s: Option<f64>,
    /// Busy time of the whole machine (all CPUs, every process, the kernel), seconds.
    pub machine_busy_s: Option<f64>,
}

/// Measures [`CpuUse`] between [`CpuMeter::start`] and [`CpuMeter::finish`].
pub struct CpuMeter {
    pid: Option<u32>,
    t0: Instant,
    p0: Option<u64>,
    m0: Option<u64>,
}

impl CpuMeter {
    /// Starts measuring; `pid` is the switching process (none for kernel switches).
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            t0: Instant::now(),
            p0: pid.and_then(cpu_ticks),
            m0: machine_busy_ticks(),
        }
    }

    /// What was used since [`CpuMeter::start`].
    pub fn finish(&self) -> CpuUse {
        let tck = clk_tck() as f64;
        let p1 = self.pid.and_then(cpu_ticks);
        let m1 = machine_busy_ticks();
        CpuUse {
            wall_s: self.t0.elapsed().as_secs_f64(),
            switch_cpu_s: match (self.p0, p1) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / tck),
                _ => None,
            },
            machine_busy_s: match (self.m0, m1) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / tck),
                _ => None,
            },
        }
    }
}
