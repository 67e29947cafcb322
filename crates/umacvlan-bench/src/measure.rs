//! The data-plane measurements, the same for every system: iperf3 TCP (1 and 2 streams),
//! iperf3 UDP with 64-byte datagrams at a target rate, ping round trips, and the raw
//! 60-byte frame test ([`crate::l2`]) with the switching process's CPU per forwarded frame.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::cmd;
use crate::l2;
use crate::procfs::CpuMeter;
use crate::systems::SystemLab;

/// A measurement's values (metric key → value) and its raw detail.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measured {
    /// Metric values.
    pub values: Vec<(String, f64)>,
    /// Raw data for the JSON.
    pub detail: Value,
}

/// The tests of one repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    /// iperf3 TCP, one stream.
    Tcp1,
    /// iperf3 TCP, two streams.
    Tcp2,
    /// iperf3 UDP, 64-byte datagrams.
    Udp,
    /// ping.
    Ping,
    /// Raw 60-byte frames (and the switch's RSS afterwards).
    L2,
}

impl Test {
    /// All, in run order.
    pub const ALL: [Test; 5] = [Test::Ping, Test::Tcp1, Test::Tcp2, Test::Udp, Test::L2];

    /// Name on the command line and in the JSON.
    pub fn id(self) -> &'static str {
        match self {
            Test::Tcp1 => "tcp1",
            Test::Tcp2 => "tcp2",
            Test::Udp => "udp",
            Test::Ping => "ping",
            Test::L2 => "l2",
        }
    }

    /// From [`Test::id`].
    pub fn from_id(s: &str) -> Option<Test> {
        Test::ALL.into_iter().find(|t| t.id() == s)
    }
}

/// How long and how hard.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// iperf3 test length, seconds.
    pub secs: u32,
    /// iperf3 warm-up seconds left out (`-O`).
    pub omit: u32,
    /// UDP target rate, datagrams per second.
    pub udp_pps: u64,
    /// Pings per run.
    pub ping_count: u32,
    /// Seconds between pings.
    pub ping_interval: f64,
    /// Raw-frame test length, seconds.
    pub l2_secs: f64,
    /// Scaling test: how long the switch's idle CPU is measured, seconds.
    pub idle_secs: f64,
}

/// Runs `test` once on `sl`.
pub fn run(test: Test, sl: &mut SystemLab, p: &Params) -> Result<Measured, String> {
    sl.health()?;
    match test {
        Test::Tcp1 => tcp(sl, 1, p),
        Test::Tcp2 => tcp(sl, 2, p),
        Test::Udp => udp(sl, p),
        Test::Ping => ping(sl, p.ping_count, p.ping_interval),
        Test::L2 => l2(sl, p.l2_secs),
    }
}

fn iperf(
    sl: &mut SystemLab,
    extra: &[&str],
    secs: u32,
) -> Result<(Value, crate::procfs::CpuUse), String> {
    sl.ensure_iperf_server()?;
    let mut args = vec![
        "ip",
        "netns",
        "exec",
        sl.a.netns.as_str(),
        "iperf3",
        "-c",
        sl.b.ip.as_str(),
        "-J",
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let meter = CpuMeter::start(sl.switch_pid);
    let out = cmd::run_for(&argv, Duration::from_secs(u64::from(secs) + 30));
    let cpu = meter.finish();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            let _ = sl.restart_iperf_server();
            return Err(e);
        }
    };
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    if !out.ok() || v.get("error").is_some() {
        let _ = sl.restart_iperf_server();
        return Err(format!(
            "iperf3 failed ({}): {} {}",
            out.code,
            v.get("error").and_then(Value::as_str).unwrap_or(""),
            cmd::tail(&out.stderr, 300)
        ));
    }
    Ok((v, cpu))
}

/// iperf3 TCP with `streams` streams: Gbit/s received and retransmits.
pub fn tcp(sl: &mut SystemLab, streams: u32, p: &Params) -> Result<Measured, String> {
    let t = p.secs.to_string();
    let o = p.omit.to_string();
    let n = streams.to_string();
    let (v, cpu) = iperf(sl, &["-t", &t, "-O", &o, "-P", &n], p.secs + p.omit)?;
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or("iperf3: no end.sum_received.bits_per_second")?;
    let retr = end["sum_sent"]["retransmits"].as_f64().unwrap_or(0.0);
    let key = format!("tcp{streams}");
    Ok(Measured {
        values: vec![
            (format!("{key}_gbps"), bps / 1e9),
            (format!("{key}_retrans"), retr),
        ],
        detail: json!({
            "bits_per_second_received": bps,
            "bits_per_second_sent": end["sum_sent"]["bits_per_second"],
            "retransmits": retr,
            "cpu": cpu,
            "iperf3_cpu": end["cpu_utilization_percent"],
        }),
    })
}

/// iperf3 UDP, 64-byte datagrams at `p.udp_pps`: datagrams per second received, loss.
pub fn udp(sl: &mut SystemLab, p: &Params) -> Result<Measured, String> {
    let t = p.secs.to_string();
    let bw = (p.udp_pps * 64 * 8).to_string();
    // A 4 MiB socket buffer: without it the iperf3 receiver itself drops on a busy machine.
    let (v, cpu) = iperf(
        sl,
        &["-u", "-l", "64", "-b", &bw, "-w", "4M", "-t", &t],
        p.secs,
    )?;
    let r = &v["end"]["sum_received"];
    let r = if r.is_object() { r } else { &v["end"]["sum"] };
    let packets = r["packets"]
        .as_f64()
        .ok_or("iperf3: no end.sum_received.packets")?;
    let lost = r["lost_packets"].as_f64().unwrap_or(0.0);
    let secs = r["seconds"].as_f64().unwrap_or(f64::from(p.secs)).max(1e-3);
    let got = (packets - lost).max(0.0);
    let loss = if packets > 0.0 {
        100.0 * lost / packets
    } else {
        0.0
    };
    let mut values = vec![
        ("udp64_pps".to_string(), got / secs),
        ("udp64_loss_pct".to_string(), loss),
    ];
    if let Some(s) = cpu.switch_cpu_s {
        if got > 0.0 {
            values.push(("udp64_switch_ns_per_pkt".into(), s * 1e9 / got));
        }
    }
    Ok(Measured {
        values,
        detail: json!({
            "target_pps": p.udp_pps,
            "packets_sent": packets,
            "lost_packets": lost,
            "seconds": secs,
            "cpu": cpu,
        }),
    })
}

/// `count` pings at `interval`: average and 99th percentile round trip, microseconds.
pub fn ping(sl: &mut SystemLab, count: u32, interval: f64) -> Result<Measured, String> {
    let c = count.to_string();
    let i = format!("{interval}");
    let out = cmd::run_for(
        &[
            "ip",
            "netns",
            "exec",
            &sl.a.netns,
            "ping",
            "-c",
            &c,
            "-i",
            &i,
            "-W",
            "1",
            &sl.b.ip,
        ],
        Duration::from_secs_f64(f64::from(count) * interval + 15.0),
    )?;
    let mut rtts: Vec<f64> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect();
    if rtts.is_empty() {
        return Err(format!(
            "ping: no replies ({}): {}",
            out.code,
            cmd::tail(&out.stderr, 300)
        ));
    }
    rtts.sort_by(f64::total_cmp);
    let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
    let p99 = crate::stats::percentile_sorted(&rtts, 99.0);
    let lost = count as usize - rtts.len().min(count as usize);
    Ok(Measured {
        values: vec![("ping_avg_us".into(), avg), ("ping_p99_us".into(), p99)],
        detail: json!({
            "count": count,
            "replies": rtts.len(),
            "lost": lost,
            "min_us": rtts[0],
            "p50_us": crate::stats::percentile_sorted(&rtts, 50.0),
            "max_us": rtts[rtts.len() - 1],
        }),
    })
}

/// The raw 60-byte frame test from A to B, with the switch's CPU per forwarded frame and,
/// afterwards, its memory.
pub fn l2(sl: &mut SystemLab, secs: f64) -> Result<Measured, String> {
    let spec = l2::Spec {
        tx: sl.a.port(),
        rx: sl.b.port(),
        secs,
        frame_len: 60,
        drain: Duration::from_millis(300),
    };
    let pid = sl.switch_pid;
    let rx0 = rx_packets(&sl.b.netns, &sl.b.ifname);
    let meter = std::cell::RefCell::new(None);
    let cpu = std::cell::RefCell::new(None);
    let c = l2::run(
        &spec,
        || *meter.borrow_mut() = Some(CpuMeter::start(pid)),
        || *cpu.borrow_mut() = meter.borrow().as_ref().map(CpuMeter::finish),
    )
    .map_err(|e| format!("l2: {e}"))?;
    let cpu = cpu.into_inner().unwrap_or_default();
    let rx1 = rx_packets(&sl.b.netns, &sl.b.ifname);
    let mut values = vec![
        ("l2_offered_pps".to_string(), c.offered_pps()),
        ("l2_delivered_pps".to_string(), c.delivered_pps()),
        ("l2_loss_pct".to_string(), c.loss_pct()),
    ];
    let delivered = c.delivered();
    if let (Some(s), true) = (cpu.switch_cpu_s, delivered > 0) {
        values.push(("l2_switch_ns_per_frame".into(), s * 1e9 / delivered as f64));
    }
    if let (Some(m), true) = (cpu.machine_busy_s, delivered > 0) {
        values.push(("l2_machine_ns_per_frame".into(), m * 1e9 / delivered as f64));
    }
    let rss = sl.switch_rss();
    if let Some((rss, _)) = rss {
        values.push(("switch_rss_kib".into(), rss as f64));
    }
    Ok(Measured {
        values,
        detail: json!({
            "counts": c,
            "delivered": delivered,
            // Cross-check: B's own receive counter over the test (also counts any other frame).
            "b_rx_packets_delta": rx0.zip(rx1).map(|(a, b)| b.saturating_sub(a)),
            "cpu": cpu,
            "switch_rss_kib": rss.map(|r| r.0),
            "switch_peak_rss_kib": rss.map(|r| r.1),
        }),
    })
}

/// The receive packet counter of `ifname` in `netns` (`ip -s -j link show`).
fn rx_packets(netns: &str, ifname: &str) -> Option<u64> {
    let r = umacvlan_lab::lab::run(&["ip", "-n", netns, "-s", "-j", "link", "show", "dev", ifname]);
    let v: Value = serde_json::from_str(&r.stdout).ok()?;
    v[0]["stats64"]["rx"]["packets"].as_u64()
}
