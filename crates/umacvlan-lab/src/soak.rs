//! `umacvlan demo --soak MINUTES`: a bounded soak test of the daemon, in a throw-away lab.
//!
//! The lab: a lower veth (`eth0` in the daemon's namespace) whose far end sits behind a Linux
//! bridge with hairpin on in an "external host" namespace (10.79.0.1), and 64 macvlans — 48
//! bridge, 8 vepa, 8 private — eight to a namespace (`m0`…`m7`), each with an address, a static
//! neighbour entry for every peer it talks to, and a policy route so that what it sends leaves
//! through it and not through a sibling in the same namespace.
//!
//! For the whole duration, at the same time:
//!
//! - **traffic**, from a generator in this process (UDP sockets opened inside the namespaces;
//!   every datagram carries a stream id and a sequence number): unicast from the external host
//!   to every macvlan; macvlan → macvlan in other namespaces (bridge → bridge switched locally,
//!   bridge → vepa and vepa → bridge through the hairpin switch); macvlan → external host
//!   (bridge and private); a subnet broadcast from the external host (every macvlan gets it);
//!   a multicast group joined on 16 macvlans; and `ping` (iputils) on five pairs;
//! - **control churn**: extra macvlans are created, brought up and down, get a new MTU, change
//!   mode, fill and flush a source-mode address list, move between namespaces and are deleted,
//!   and some requests that must fail are made — through the CLI, a process per request —;
//!   and, through one control-socket connection, the mode of eight traffic-carrying macvlans
//!   cycles bridge → vepa → private and the MTU of eight others toggles (neither can lose a
//!   frame of this traffic: every mode receives from the external host, frames are small);
//! - **sampling** of the daemon's RSS, open fds and threads every half second.
//!
//! Checks, printed as a report and turned into the exit status (0 = all passed, 1 = a check
//! failed or the lab could not be built, 130 = interrupted):
//!
//! - (a) RSS flat: after a warm-up (a quarter of the run, at least 3 s), none of the last three
//!   samples is more than max(2 MiB, 10 %) above the first sample after the warm-up;
//! - (b) no frame unaccounted: for every stream and receiving socket,
//!   `received = sent × copies − lost` with no duplicate, where `copies` is 1 for unicast and the
//!   number of macvlans in the namespace that receive it for broadcast (8) and multicast (2);
//!   `lost` must be 0 unless a drop counter on the stream's path moved, and never more than the
//!   sum of those counters. The counters: the macvlans' `rx_dropped`/`tx_dropped` as umacvlan
//!   keeps them (`umacvlan -s -j link show`), the port's drops (broadcast queue, lower socket buffers, malformed,
//!   reassembly), the kernel's `rx_dropped`/`tx_dropped` of the TAPs, the lower and the
//!   external host's devices (`ip -s -j link`), and UDP `InErrors` (receive buffer full included) in the
//!   receiving namespace. The rate is chosen so that all of them are expected to stay 0.
//!   Also, per macvlan, umacvlan's counters agree with the TAP's kernel counters:
//!   `Δrx_packets(umacvlan) = Δrx_packets(TAP)` and
//!   `Δtx_packets(umacvlan) + Δtx_dropped(umacvlan) = Δtx_packets(TAP)`;
//!   and every ping is answered;
//! - (c) the daemon's log has no `ERROR` line and no `panicked`;
//! - (d) the daemon's fd and thread counts after the churn equal those before it, and the churn
//!   left no macvlan, TAP or counter directory behind.
//!
//! `UMACVLAN_SOAK_FAULT=lose-one` makes the receiver ignore one measured datagram, to show that
//! check (b) catches a lost frame.

use crate::lab::{self, Lab};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use umacvlan::cli::client::{Client, DEFAULT_TIMEOUT};
use umacvlan::proto::{LinkSet, Request, Response};
use umacvlan_core::engine::{MacvlanAttrs, Mode};
use umacvlan_io::epoll::{Epoll, Events, Interest};
use umacvlan_io::netns::NetnsHandle;

const SUBNET: &str = "10.79.0";
/// Namespaces holding the traffic macvlans, and macvlans per namespace.
const NS_COUNT: usize = 8;
const PER_NS: usize = 8;
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 79, 0, 1);
const PORT_UNI: u16 = 7000;
/// The external host receives each macvlan → ext stream on its own socket, from this port on.
const PORT_TO_EXT: u16 = 7100;
const PORT_EXT_TX: u16 = 7001;
const PORT_BCAST: u16 = 7002;
const PORT_MCAST: u16 = 7003;
/// Datagrams per second of each unicast stream, of the broadcast and of the multicast stream.
/// About 3,000 datagrams/s in all and ~4,100 TAP deliveries/s: far below what the daemon
/// forwards, so no drop counter is expected to move.
const UNI_PPS: f64 = 25.0;
const BCAST_PPS: f64 = 10.0;
const MCAST_PPS: f64 = 20.0;
const PAYLOAD: usize = 96;
const MAGIC: &[u8; 4] = b"UMVS";
/// RSS may grow by at most max(this, 10 %) after the warm-up.
const RSS_SLACK_KIB: u64 = 2048;
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Ping interval (seconds) and pairs.
const PING_INTERVAL: f64 = 0.1;

/// Role of each macvlan by its index in the namespace.
fn mode_of(j: usize) -> &'static str {
    match j {
        6 => "vepa",
        7 => "private",
        _ => "bridge",
    }
}

/// Macvlans joined to the group (per namespace): a bridge and the vepa one.
const MCAST_JOINED: [usize; 2] = [1, 6];
/// Macvlans whose mode the churn cycles, and whose MTU it toggles.
const MODE_FLIPPED: usize = 3;
const MTU_TOGGLED: usize = 4;

#[derive(Clone, Debug)]
struct Dev {
    ns: usize,
    j: usize,
    name: String,
    ip: Ipv4Addr,
    mac: String,
}

fn dev_index(ns: usize, j: usize) -> usize {
    (ns % NS_COUNT) * PER_NS + j
}

fn devices() -> Vec<Dev> {
    (0..NS_COUNT * PER_NS)
        .map(|i| Dev {
            ns: i / PER_NS,
            j: i % PER_NS,
            name: format!("sk{i:02}"),
            ip: Ipv4Addr::new(10, 79, 0, 10 + i as u8),
            mac: format!("02:79:00:00:00:{:02x}", 10 + i),
        })
        .collect()
}

/// Who sends a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    Ext,
    Dev(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unicast,
    Broadcast,
    Multicast,
}

/// One flow of datagrams, and who must receive how many copies of each.
struct Stream {
    kind: Kind,
    src: Src,
    dst: SocketAddr,
    pps: f64,
    /// Receiving socket index → copies of each datagram it must get.
    expect: Vec<(usize, u32)>,
    /// Devices whose drop counters lie on the path (sender, receivers).
    path_devs: Vec<usize>,
    /// Namespaces (lab short names) where the datagram is received.
    rx_ns: Vec<String>,
    label: String,
}

/// A receiving socket and where it lives.
struct RxSock {
    sock: Arc<UdpSocket>,
    label: String,
}

fn payload(phase: u8, stream: u32, seq: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..4].copy_from_slice(MAGIC);
    p[4] = phase;
    p[8..12].copy_from_slice(&stream.to_le_bytes());
    p[12..20].copy_from_slice(&seq.to_le_bytes());
    p
}

fn parse_payload(p: &[u8]) -> Option<(u8, u32, u64)> {
    if p.len() != PAYLOAD || &p[..4] != MAGIC {
        return None;
    }
    Some((
        p[4],
        u32::from_le_bytes(p[8..12].try_into().ok()?),
        u64::from_le_bytes(p[12..20].try_into().ok()?),
    ))
}

/// What the receiver saw in the measured phase: copies of each sequence number per
/// (stream, socket), and datagrams that arrived where they were not expected.
#[derive(Default)]
struct Tally {
    copies: HashMap<(u32, usize), Vec<u8>>,
    unexpected: u64,
    foreign: u64,
}

/// Preflight: per (stream, socket), the copies seen of each preflight sequence number.
type Preflight = HashMap<(u32, usize), HashMap<u64, u32>>;

static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn step(n: u32, of: u32, what: &str) {
    let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    println!("[{n}/{of}] (at {t:.1} s) {what}");
    let _ = io::stdout().flush();
}

/// Entry point: `umacvlan demo --soak MINUTES [--keep]` (`args` follow `--soak`).
pub fn main(args: &[String]) -> i32 {
    let usage =
        "usage: umacvlan demo --soak MINUTES [--keep]   (MINUTES may be fractional, e.g. 0.5)";
    let mut minutes = None;
    let mut keep = false;
    for a in args {
        if a == "--keep" {
            keep = true;
        } else if minutes.is_none() {
            match a.parse::<f64>() {
                Ok(m) if m.is_finite() && m > 0.0 && m <= 24.0 * 60.0 => minutes = Some(m),
                _ => {
                    eprintln!("{usage}\nbad MINUTES {a:?}");
                    return 1;
                }
            }
        } else {
            eprintln!("{usage}\nunknown argument {a:?}");
            return 1;
        }
    }
    let Some(minutes) = minutes else {
        eprintln!("{usage}");
        return 1;
    };
    let started = *STARTED.get_or_init(Instant::now);
    let end = lab::run_program("umacvlan demo --soak", "soak", keep, |lab, interrupted| {
        run(lab, minutes, interrupted)
    });
    println!("soak wall time: {:.1} s", started.elapsed().as_secs_f64());
    match end {
        lab::ProgramEnd::NotStarted => 1,
        lab::ProgramEnd::Done(Ok(true)) => {
            println!("soak: PASS");
            0
        }
        lab::ProgramEnd::Done(Ok(false)) => {
            println!("soak: FAIL");
            1
        }
        lab::ProgramEnd::Interrupted(e) => {
            eprintln!("umacvlan demo --soak: interrupted ({e})");
            130
        }
        lab::ProgramEnd::Done(Err(e)) => {
            eprintln!("umacvlan demo --soak: {e}");
            println!("soak: FAIL");
            1
        }
    }
}

fn check(interrupted: &AtomicBool) -> Result<(), String> {
    if interrupted.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Everything the run needs once the lab stands.
struct World {
    host: String,
    ext: String,
    ext_mac: String,
    ns: Vec<String>,
    churn_ns: [String; 2],
    devs: Vec<Dev>,
    pid: u32,
}

fn run(lab: &mut Lab, minutes: f64, interrupted: &AtomicBool) -> Result<bool, String> {
    const STEPS: u32 = 6;
    let duration = Duration::from_secs_f64(minutes * 60.0);
    println!(
        "umacvlan soak: {minutes} min of traffic and control churn against one daemon, in a throw-away lab\n"
    );
    step(1, STEPS, "Building the lab: lower veth, hairpin switch and external host, daemon, 64 macvlans in 8 namespaces");
    let t = Instant::now();
    let w = build(lab, interrupted)?;
    println!(
        "      daemon pid {}; 48 bridge, 8 vepa, 8 private macvlans; built in {:.1} s",
        w.pid,
        t.elapsed().as_secs_f64()
    );
    check(interrupted)?;

    step(
        2,
        STEPS,
        "Opening the generator's sockets in the namespaces; preflight: every stream reaches every receiver",
    );
    let (rx_socks, tx_socks, ext_sock) = open_sockets(&w)?;
    let streams = make_streams(&w, &rx_socks);
    let fault_lose_one = std::env::var("UMACVLAN_SOAK_FAULT").is_ok_and(|v| v == "lose-one");
    let rx_stop = Arc::new(AtomicBool::new(false));
    let rx_count = Arc::new(AtomicU64::new(0));
    let preflight: Arc<Mutex<Preflight>> = Arc::default();
    let expected: Arc<HashSet<(u32, usize)>> = Arc::new(
        streams
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.expect.iter().map(move |(r, _)| (i as u32, *r)))
            .collect(),
    );
    let receiver = {
        let socks: Vec<Arc<UdpSocket>> = rx_socks.iter().map(|r| r.sock.clone()).collect();
        let (stop, count, pre, exp) = (
            rx_stop.clone(),
            rx_count.clone(),
            preflight.clone(),
            expected.clone(),
        );
        std::thread::Builder::new()
            .name("soak-rx".into())
            .spawn(move || receive(socks, stop, count, pre, exp, fault_lose_one))
            .map_err(|e| e.to_string())?
    };
    let senders = Senders {
        ext: ext_sock,
        devs: tx_socks,
    };
    let t = Instant::now();
    let pre = run_preflight(&streams, &senders, &preflight, interrupted);
    if let Err(e) = pre {
        rx_stop.store(true, Ordering::SeqCst);
        let _ = receiver.join();
        return Err(e);
    }
    println!(
        "      {} streams, {} (stream, socket) pairs, all reached in {:.1} s",
        streams.len(),
        expected.len(),
        t.elapsed().as_secs_f64()
    );
    // Let the last preflight frames and the joins' IGMP reports pass before the baseline.
    std::thread::sleep(Duration::from_millis(1500));
    check(interrupted)?;

    step(
        3,
        STEPS,
        "Baseline: counters, and the daemon's fds and threads",
    );
    let before_counters = Counters::read(lab, &w)?;
    // The connections just used for the counters end on their own threads: wait until the
    // counts hold still.
    let (fds_before, threads_before) = settled_fds_threads(w.pid);
    let stats_dir = {
        let mut p = lab.socket().as_os_str().to_owned();
        p.push(".net");
        PathBuf::from(p)
    };
    let stats_entries_before = count_dir(&stats_dir.to_string_lossy());
    println!(
        "      daemon: {} fds, {} threads, RSS {} KiB; counter tree {} entries",
        fds_before,
        threads_before,
        rss_kib(w.pid).unwrap_or(0),
        stats_entries_before
    );

    step(
        4,
        STEPS,
        &format!(
            "Soaking for {:.0} s: {:.0} datagrams/s in {} streams, 5 pings, control churn",
            duration.as_secs_f64(),
            streams.iter().map(|s| s.pps).sum::<f64>(),
            streams.len()
        ),
    );
    let stop_send = Arc::new(AtomicBool::new(false));
    let stop_churn = Arc::new(AtomicBool::new(false));
    let mut pings = start_pings(&w)?;
    let sent = {
        let stop = stop_send.clone();
        let plan: Vec<(Src, SocketAddr, f64)> =
            streams.iter().map(|s| (s.src, s.dst, s.pps)).collect();
        let senders = senders.clone_handles();
        std::thread::Builder::new()
            .name("soak-tx".into())
            .spawn(move || send_measured(&plan, &senders, &stop))
            .map_err(|e| e.to_string())?
    };
    let churn = {
        let stop = stop_churn.clone();
        let bin = lab.bin().to_path_buf();
        let ctx = ChurnCtx {
            bin,
            socket: lab.socket().to_path_buf(),
            churn_ns: w.churn_ns.clone(),
            ext_mac: w.ext_mac.clone(),
            flipped: (0..NS_COUNT)
                .map(|n| w.devs[dev_index(n, MODE_FLIPPED)].name.clone())
                .collect(),
            toggled: (0..NS_COUNT)
                .map(|n| w.devs[dev_index(n, MTU_TOGGLED)].name.clone())
                .collect(),
        };
        std::thread::Builder::new()
            .name("soak-churn".into())
            .spawn(move || churn_loop(&ctx, &stop))
            .map_err(|e| e.to_string())?
    };
    let t0 = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_progress = Instant::now();
    let mut run_err = None;
    while t0.elapsed() < duration {
        if interrupted.load(Ordering::SeqCst) {
            run_err = Some("interrupted".to_string());
            break;
        }
        if let Some(s) = sample(w.pid, t0) {
            samples.push(s);
        } else {
            run_err = Some("the daemon is gone".into());
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(30) {
            let s = samples.last().expect("sampled");
            println!(
                "      {:>5.0} s: RSS {} KiB, {} fds, {} threads, {} datagrams received",
                s.t,
                s.rss,
                s.fds,
                s.threads,
                rx_count.load(Ordering::Relaxed)
            );
            let _ = io::stdout().flush();
            last_progress = Instant::now();
        }
        let left = duration.saturating_sub(t0.elapsed());
        std::thread::sleep(SAMPLE_EVERY.min(left));
    }
    samples.extend(sample(w.pid, t0));
    stop_churn.store(true, Ordering::SeqCst);
    stop_send.store(true, Ordering::SeqCst);
    let sent = sent.join().map_err(|_| "the sender panicked")?;
    let churn = churn.join().map_err(|_| "the churn thread panicked")?;
    if let Some(e) = run_err {
        rx_stop.store(true, Ordering::SeqCst);
        let _ = receiver.join();
        return Err(e);
    }
    let ping_results = finish_pings(&mut pings);
    // Wait until the receiver has been idle for half a second (at most 5 s).
    let settle = Instant::now();
    let mut last = rx_count.load(Ordering::SeqCst);
    let mut idle_since = Instant::now();
    while settle.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        let now = rx_count.load(Ordering::SeqCst);
        if now != last {
            last = now;
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= Duration::from_millis(500) {
            break;
        }
    }
    rx_stop.store(true, Ordering::SeqCst);
    let tally = receiver.join().map_err(|_| "the receiver panicked")?;
    check(interrupted)?;

    step(5, STEPS, "After the soak: counters, fds, threads, log");
    let after_counters = Counters::read(lab, &w)?;
    let (fds_after, threads_after) = settled_fds_threads(w.pid);
    // The counter tree is rewritten once a second: give it up to 3 s to drop the churn's.
    let settle = Instant::now();
    let mut stats_entries_after = count_dir(&stats_dir.to_string_lossy());
    while stats_entries_after != stats_entries_before && settle.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        stats_entries_after = count_dir(&stats_dir.to_string_lossy());
    }
    let leftovers = leftovers(lab, &w);
    let log = lab.daemon_log();

    step(6, STEPS, "Report");
    let mut all_ok = true;
    all_ok &= report_rss(&samples, duration);
    all_ok &= report_frames(
        &w,
        &streams,
        &rx_socks,
        &sent,
        &tally,
        &before_counters,
        &after_counters,
        &ping_results,
    );
    all_ok &= report_log(&log);
    all_ok &= report_resources(
        (fds_before, fds_after),
        (threads_before, threads_after),
        (stats_entries_before, stats_entries_after),
        &leftovers,
        &churn,
    );
    Ok(all_ok)
}

// ---------------------------------------------------------------------------------------------
// The lab.

fn build(lab: &mut Lab, interrupted: &AtomicBool) -> Result<World, String> {
    let host = lab.ns("host")?;
    let ext = lab.ns("ext")?;
    lab.veth(&host, "eth0", &ext, "eth0")?;
    // The switch floods multicast whatever IGMP reports it saw (no snooping).
    lab.hairpin_switch(&ext, "eth0", &format!("{SUBNET}.1/24"))?;
    lab::must(&[
        "ip",
        "-n",
        &ext,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        "br0",
    ])?;
    let ext_mac = link_json(&ext, "br0")?["address"]
        .as_str()
        .ok_or("no address on br0")?
        .to_string();
    lab.start_daemon(&host, &["--log", "info"])?;
    let pid = lab.daemon_pid().ok_or("no daemon")?;
    check(interrupted)?;

    let devs = devices();
    let mut ns = Vec::new();
    for n in 0..NS_COUNT {
        let name = lab.ns(&format!("m{n}"))?;
        // Several macvlans on one subnet in one namespace: each answers only for its own
        // address, and nothing is filtered by reverse path.
        lab.exec_ok(
            &name,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.default.arp_ignore=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        )?;
        ns.push(name);
    }
    let churn_ns = [lab.ns("churn")?, lab.ns("churn2")?];
    check(interrupted)?;
    for d in &devs {
        lab.cli_ok(&[
            "link",
            "add",
            "link",
            "eth0",
            "name",
            &d.name,
            "address",
            &d.mac,
            "netns",
            &ns[d.ns],
            "type",
            "macvlan",
            "mode",
            mode_of(d.j),
        ])?;
    }
    check(interrupted)?;
    // Who talks to whom by unicast (both directions get static neighbour entries).
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (a, b) in mv_streams().into_iter().chain(ping_mv_pairs()) {
        pairs.push((a, b));
        pairs.push((b, a));
    }
    for (n, name) in ns.iter().enumerate() {
        let mut batch = String::new();
        for d in devs.iter().filter(|d| d.ns == n) {
            let table = 100 + d.j;
            batch += &format!("addr add {}/24 dev {}\n", d.ip, d.name);
            batch += &format!("link set {} up\n", d.name);
            batch += &format!("rule add from {} lookup {table}\n", d.ip);
            batch += &format!(
                "route add {SUBNET}.0/24 dev {} src {} table {table}\n",
                d.name, d.ip
            );
            batch += &format!(
                "neigh replace {SUBNET}.1 lladdr {ext_mac} dev {} nud permanent\n",
                d.name
            );
        }
        for (a, b) in &pairs {
            let (da, db) = (&devs[*a], &devs[*b]);
            if da.ns == n {
                batch += &format!(
                    "neigh replace {} lladdr {} dev {} nud permanent\n",
                    db.ip, db.mac, da.name
                );
            }
        }
        ip_batch(name, &batch)?;
    }
    let mut batch = String::new();
    for d in &devs {
        batch += &format!(
            "neigh replace {} lladdr {} dev br0 nud permanent\n",
            d.ip, d.mac
        );
    }
    ip_batch(&ext, &batch)?;
    Ok(World {
        host,
        ext,
        ext_mac,
        ns,
        churn_ns,
        devs,
        pid,
    })
}

fn ip_batch(ns: &str, batch: &str) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("{ns}.batch"));
    std::fs::write(&path, batch).map_err(|e| e.to_string())?;
    let r = lab::must(&["ip", "-n", ns, "-batch", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    r.map(drop)
}

fn link_json(ns: &str, ifname: &str) -> Result<serde_json::Value, String> {
    let out = lab::must(&["ip", "-n", ns, "-j", "link", "show", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    Ok(v[0].clone())
}

/// Macvlan → macvlan unicast streams, as (source, destination) device indexes: bridge → bridge
/// in the next namespace (switched locally), vepa → bridge and bridge → vepa (through the
/// hairpin switch).
fn mv_streams() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for n in 0..NS_COUNT {
        for j in 0..3 {
            v.push((dev_index(n, j), dev_index(n + 1, j)));
        }
        v.push((dev_index(n, 6), dev_index(n + 1, MTU_TOGGLED)));
        v.push((dev_index(n, 5), dev_index(n + 2, 6)));
    }
    v
}

/// Macvlan → external host streams, as (device index, index in its namespace): a bridge and
/// the private macvlan of every namespace.
fn to_ext_streams() -> Vec<(usize, usize)> {
    (0..NS_COUNT)
        .flat_map(|n| [0, 7].map(|j| (dev_index(n, j), j)))
        .collect()
}

/// Macvlan → macvlan pings: bridge → bridge, vepa → bridge.
fn ping_mv_pairs() -> Vec<(usize, usize)> {
    vec![
        (dev_index(1, 2), dev_index(2, 2)),
        (dev_index(4, 6), dev_index(5, 4)),
    ]
}

/// Sockets opened inside namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> Result<T, String> {
    let h = NetnsHandle::from_name(ns).map_err(|e| format!("namespace {ns}: {e}"))?;
    h.run_in(f)
        .and_then(|r| r)
        .map_err(|e| format!("in {ns}: {e}"))
}

/// Receiving sockets (per macvlan on PORT_UNI, per namespace for broadcast and multicast, the
/// external host's), the macvlans' sending sockets (the same per-macvlan sockets), and the
/// external host's socket.
#[allow(clippy::type_complexity)]
fn open_sockets(w: &World) -> Result<(Vec<RxSock>, Vec<Arc<UdpSocket>>, Arc<UdpSocket>), String> {
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    for d in &w.devs {
        let ip = d.ip;
        let s = Arc::new(in_ns(&w.ns[d.ns], move || {
            UdpSocket::bind(SocketAddrV4::new(ip, PORT_UNI))
        })?);
        tx.push(s.clone());
        rx.push(RxSock {
            sock: s,
            label: d.name.clone(),
        });
    }
    for (n, ns) in w.ns.iter().enumerate() {
        let b = in_ns(ns, || {
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT_BCAST))
        })?;
        rx.push(RxSock {
            sock: Arc::new(b),
            label: format!("m{n}:bcast"),
        });
        let m = in_ns(ns, || {
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT_MCAST))
        })?;
        for j in MCAST_JOINED {
            m.join_multicast_v4(&GROUP, &w.devs[dev_index(n, j)].ip)
                .map_err(|e| format!("join on {}: {e}", w.devs[dev_index(n, j)].name))?;
        }
        rx.push(RxSock {
            sock: Arc::new(m),
            label: format!("m{n}:mcast"),
        });
    }
    let ext_ip: Ipv4Addr = format!("{SUBNET}.1").parse().expect("address");
    for (k, (a, _)) in to_ext_streams().into_iter().enumerate() {
        let s = in_ns(&w.ext, move || {
            UdpSocket::bind(SocketAddrV4::new(ext_ip, PORT_TO_EXT + k as u16))
        })?;
        rx.push(RxSock {
            sock: Arc::new(s),
            label: format!("ext:{}", w.devs[a].name),
        });
    }
    let e = in_ns(&w.ext, move || {
        UdpSocket::bind(SocketAddrV4::new(ext_ip, PORT_EXT_TX))
    })?;
    e.set_broadcast(true).map_err(|e| e.to_string())?;
    e.set_multicast_loop_v4(false).map_err(|e| e.to_string())?;
    e.set_multicast_ttl_v4(1).map_err(|e| e.to_string())?;
    let e = Arc::new(e);
    rx.push(RxSock {
        sock: e.clone(),
        label: "ext".into(),
    });
    for r in &rx {
        r.sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    Ok((rx, tx, e))
}

/// Index of the receiving socket labelled `label`.
fn rx_index(rx: &[RxSock], label: &str) -> usize {
    rx.iter()
        .position(|r| r.label == label)
        .expect("socket exists")
}

fn make_streams(w: &World, rx: &[RxSock]) -> Vec<Stream> {
    let mut v = Vec::new();
    let ext_ip: Ipv4Addr = format!("{SUBNET}.1").parse().expect("address");
    for (i, d) in w.devs.iter().enumerate() {
        v.push(Stream {
            kind: Kind::Unicast,
            src: Src::Ext,
            dst: SocketAddr::V4(SocketAddrV4::new(d.ip, PORT_UNI)),
            pps: UNI_PPS,
            expect: vec![(i, 1)],
            path_devs: vec![i],
            rx_ns: vec![format!("m{}", d.ns)],
            label: format!("ext → {} ({})", d.name, mode_of(d.j)),
        });
    }
    for (a, b) in mv_streams() {
        let (da, db) = (&w.devs[a], &w.devs[b]);
        v.push(Stream {
            kind: Kind::Unicast,
            src: Src::Dev(a),
            dst: SocketAddr::V4(SocketAddrV4::new(db.ip, PORT_UNI)),
            pps: UNI_PPS,
            expect: vec![(b, 1)],
            path_devs: vec![a, b],
            rx_ns: vec![format!("m{}", db.ns)],
            label: format!(
                "{} ({}) → {} ({})",
                da.name,
                mode_of(da.j),
                db.name,
                mode_of(db.j)
            ),
        });
    }
    for (k, (a, j)) in to_ext_streams().into_iter().enumerate() {
        let ext_rx = rx_index(rx, &format!("ext:{}", w.devs[a].name));
        v.push(Stream {
            kind: Kind::Unicast,
            src: Src::Dev(a),
            dst: SocketAddr::V4(SocketAddrV4::new(ext_ip, PORT_TO_EXT + k as u16)),
            pps: UNI_PPS,
            expect: vec![(ext_rx, 1)],
            path_devs: vec![a],
            rx_ns: vec!["ext".into()],
            label: format!("{} ({}) → ext", w.devs[a].name, mode_of(j)),
        });
    }
    v.push(Stream {
        kind: Kind::Broadcast,
        src: Src::Ext,
        dst: format!("{SUBNET}.255:{PORT_BCAST}").parse().expect("addr"),
        pps: BCAST_PPS,
        expect: (0..NS_COUNT)
            .map(|n| (rx_index(rx, &format!("m{n}:bcast")), PER_NS as u32))
            .collect(),
        path_devs: (0..w.devs.len()).collect(),
        rx_ns: (0..NS_COUNT).map(|n| format!("m{n}")).collect(),
        label: format!("ext → {SUBNET}.255 (broadcast, {PER_NS} copies per namespace)"),
    });
    v.push(Stream {
        kind: Kind::Multicast,
        src: Src::Ext,
        dst: SocketAddr::V4(SocketAddrV4::new(GROUP, PORT_MCAST)),
        pps: MCAST_PPS,
        expect: (0..NS_COUNT)
            .map(|n| {
                (
                    rx_index(rx, &format!("m{n}:mcast")),
                    MCAST_JOINED.len() as u32,
                )
            })
            .collect(),
        path_devs: (0..NS_COUNT)
            .flat_map(|n| MCAST_JOINED.map(|j| dev_index(n, j)))
            .collect(),
        rx_ns: (0..NS_COUNT).map(|n| format!("m{n}")).collect(),
        label: format!(
            "ext → {GROUP} (multicast, joined on {} per namespace)",
            MCAST_JOINED.len()
        ),
    });
    v
}

// ---------------------------------------------------------------------------------------------
// Traffic.

struct Senders {
    ext: Arc<UdpSocket>,
    devs: Vec<Arc<UdpSocket>>,
}

impl Senders {
    fn sock(&self, src: Src) -> &UdpSocket {
        match src {
            Src::Ext => &self.ext,
            Src::Dev(i) => &self.devs[i],
        }
    }

    fn clone_handles(&self) -> Senders {
        Senders {
            ext: self.ext.clone(),
            devs: self.devs.clone(),
        }
    }
}

/// Sends preflight datagrams (phase 0) until every (stream, socket) pair has seen one
/// datagram in full (all its copies), or 15 s pass.
fn run_preflight(
    streams: &[Stream],
    senders: &Senders,
    pre: &Mutex<Preflight>,
    interrupted: &AtomicBool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seq = 0u64;
    loop {
        check(interrupted)?;
        for (i, s) in streams.iter().enumerate() {
            let _ = senders
                .sock(s.src)
                .send_to(&payload(0, i as u32, seq), s.dst);
        }
        seq += 1;
        std::thread::sleep(Duration::from_millis(200));
        let missing: Vec<String> = {
            let p = pre.lock().unwrap_or_else(|e| e.into_inner());
            streams
                .iter()
                .enumerate()
                .flat_map(|(i, s)| s.expect.iter().map(move |e| (i, s, e)))
                .filter(|(i, _, (r, k))| {
                    !p.get(&(*i as u32, *r))
                        .is_some_and(|m| m.values().any(|c| c == k))
                })
                .map(|(_, s, (r, k))| format!("{} at socket #{r} ({k} copies)", s.label))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "preflight: {} (stream, socket) pairs never reached, e.g. {}",
                missing.len(),
                missing
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
}

/// Sends the measured datagrams (phase 1) of every stream at its rate until `stop`; returns
/// how many were sent (accepted by the kernel) per stream.
fn send_measured(
    plan: &[(Src, SocketAddr, f64)],
    senders: &Senders,
    stop: &AtomicBool,
) -> Vec<u64> {
    let mut sent = vec![0u64; plan.len()];
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let now = start.elapsed().as_secs_f64();
        for (i, (src, dst, pps)) in plan.iter().enumerate() {
            // Spread the streams' phases so they do not all fire at once.
            let phase = (i as f64 * 0.618_033_988_7).fract();
            let mut burst = 0;
            while (sent[i] as f64 + phase) / pps <= now && burst < 8 {
                match senders
                    .sock(*src)
                    .send_to(&payload(1, i as u32, sent[i]), dst)
                {
                    Ok(_) => sent[i] += 1,
                    Err(_) => break,
                }
                burst += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    sent
}

/// The receiver: reads every socket until `stop`; preflight datagrams go to `pre`, measured
/// ones into the returned [`Tally`].
fn receive(
    socks: Vec<Arc<UdpSocket>>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    pre: Arc<Mutex<Preflight>>,
    expected: Arc<HashSet<(u32, usize)>>,
    lose_one: bool,
) -> Tally {
    let mut tally = Tally::default();
    let Ok(ep) = Epoll::new() else {
        return tally;
    };
    for (i, s) in socks.iter().enumerate() {
        let _ = ep.add(s.as_raw_fd(), i as u64, Interest::READABLE);
    }
    let mut events = Events::with_capacity(128);
    let mut buf = [0u8; 2048];
    let mut lost_on_purpose = !lose_one;
    while !stop.load(Ordering::SeqCst) {
        if ep
            .wait(&mut events, Some(Duration::from_millis(50)))
            .is_err()
        {
            continue;
        }
        let ready: Vec<usize> = events.iter().map(|e| e.token as usize).collect();
        for r in ready {
            while let Ok(n) = socks[r].recv(&mut buf) {
                let Some((phase, stream, seq)) = parse_payload(&buf[..n]) else {
                    tally.foreign += 1;
                    continue;
                };
                if phase == 0 {
                    let mut p = pre.lock().unwrap_or_else(|e| e.into_inner());
                    *p.entry((stream, r)).or_default().entry(seq).or_default() += 1;
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                if !expected.contains(&(stream, r)) {
                    tally.unexpected += 1;
                    continue;
                }
                if !lost_on_purpose && seq > 100 {
                    lost_on_purpose = true;
                    continue;
                }
                let v = tally.copies.entry((stream, r)).or_default();
                let seq = seq as usize;
                if v.len() <= seq {
                    v.resize(seq + 1, 0);
                }
                v[seq] = v[seq].saturating_add(1);
            }
        }
    }
    tally
}

struct Ping {
    label: String,
    child: Child,
}

/// The running pings; whatever is still running when this is dropped is killed.
struct Pings(Vec<Ping>);

impl Drop for Pings {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

struct PingResult {
    label: String,
    transmitted: u32,
    received: u32,
}

impl PingResult {
    /// Every echo answered, but the one that may be in flight when ping is stopped.
    fn ok(&self) -> bool {
        self.transmitted > 0 && self.received + 1 >= self.transmitted
    }
}

/// Starts the pings; they run until [`finish_pings`] stops them.
fn start_pings(w: &World) -> Result<Pings, String> {
    let d = |n: usize, j: usize| &w.devs[dev_index(n, j)];
    let mut plan: Vec<(String, String, Option<Ipv4Addr>, Ipv4Addr)> = Vec::new();
    for (n, j) in [(0, 0), (3, 6), (5, 7)] {
        plan.push((
            format!("ext → {} ({})", d(n, j).name, mode_of(j)),
            w.ext.clone(),
            None,
            d(n, j).ip,
        ));
    }
    for (a, b) in ping_mv_pairs() {
        let (da, db) = (&w.devs[a], &w.devs[b]);
        plan.push((
            format!(
                "{} ({}) → {} ({})",
                da.name,
                mode_of(da.j),
                db.name,
                mode_of(db.j)
            ),
            w.ns[da.ns].clone(),
            Some(da.ip),
            db.ip,
        ));
    }
    let mut out = Pings(Vec::new());
    for (label, ns, src, dst) in plan {
        let mut cmd = Command::new("ip");
        // `ip netns exec` execs ping: the child is ping itself.
        cmd.args(["netns", "exec", &ns, "ping", "-q", "-n"])
            .args(["-i", &PING_INTERVAL.to_string()]);
        if let Some(s) = src {
            cmd.args(["-I", &s.to_string()]);
        }
        cmd.arg(dst.to_string());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ping: {e}"))?;
        out.0.push(Ping { label, child });
    }
    Ok(out)
}

/// Stops the pings (SIGINT: each prints its statistics) and reads their results.
fn finish_pings(pings: &mut Pings) -> Vec<PingResult> {
    for p in pings.0.iter() {
        let _ = lab::run(&["kill", "-INT", &p.child.id().to_string()]);
    }
    let mut out = Vec::new();
    for mut p in pings.0.drain(..) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = p.child.kill();
        let text = p
            .child
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let (mut transmitted, mut received) = (0, 0);
        if let Some(l) = text.lines().find(|l| l.contains("packets transmitted")) {
            let nums: Vec<u32> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|x| x.parse().ok())
                .collect();
            if nums.len() >= 2 {
                (transmitted, received) = (nums[0], nums[1]);
            }
        }
        out.push(PingResult {
            label: p.label,
            transmitted,
            received,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Control churn.

struct ChurnCtx {
    bin: PathBuf,
    socket: PathBuf,
    churn_ns: [String; 2],
    ext_mac: String,
    flipped: Vec<String>,
    toggled: Vec<String>,
}

#[derive(Default)]
struct ChurnStats {
    cycles: u64,
    cli_ok: u64,
    cli_refused_as_expected: u64,
    ctl_ok: u64,
    /// Requests that did not end as they must (text for the report).
    wrong: Vec<String>,
    /// Slowest CLI request.
    slowest: Duration,
}

impl ChurnCtx {
    fn cli(&self, st: &mut ChurnStats, words: &[&str], must_fail: bool) {
        let t = Instant::now();
        let r = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(words)
            .stdin(Stdio::null())
            .output();
        st.slowest = st.slowest.max(t.elapsed());
        let (code, err) = match r {
            Ok(o) => (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
            ),
            Err(e) => (-1, e.to_string()),
        };
        match (code == 0, must_fail) {
            (true, false) => st.cli_ok += 1,
            (false, true) if code > 0 => st.cli_refused_as_expected += 1,
            _ => {
                if st.wrong.len() < 20 {
                    st.wrong.push(format!(
                        "`umacvlan {}` exited {code}{}: {err}",
                        words.join(" "),
                        if must_fail { " (must fail)" } else { "" }
                    ));
                } else {
                    st.wrong.push(String::new());
                }
            }
        }
    }
}

/// One churn cycle per iteration until `stop`; a cycle always runs to its end, so every extra
/// macvlan it made is gone when this returns.
fn churn_loop(ctx: &ChurnCtx, stop: &AtomicBool) -> ChurnStats {
    let mut st = ChurnStats::default();
    let mut ctl = Client::connect(&ctx.socket, DEFAULT_TIMEOUT).ok();
    let mut ctl_n = 0usize;
    let mut last_ctl = Instant::now();
    let modes = [Mode::Bridge, Mode::Vepa, Mode::Private];
    let pace = Duration::from_millis(15);
    // One step of the traffic macvlans' churn (over the control socket), at most every 150 ms.
    let mut ctl_step = |st: &mut ChurnStats| {
        if last_ctl.elapsed() < Duration::from_millis(150) {
            return;
        }
        last_ctl = Instant::now();
        let Some(c) = ctl.as_mut() else {
            st.wrong
                .push("no control-socket connection for the churn".into());
            return;
        };
        let k = ctl_n;
        ctl_n += 1;
        // Even steps flip a mode, odd ones toggle an MTU (no `is_multiple_of`: MSRV 1.85).
        let req = if k & 1 == 0 {
            let name = &ctx.flipped[(k / 2) % ctx.flipped.len()];
            let mode = modes[(k / 2 / ctx.flipped.len() + 1) % modes.len()];
            LinkSet {
                name: name.clone(),
                macvlan: Some(MacvlanAttrs {
                    mode: Some(mode.bits()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        } else {
            let name = &ctx.toggled[(k / 2) % ctx.toggled.len()];
            let mtu = [1400, 1500][(k / 2 / ctx.toggled.len()) & 1];
            LinkSet {
                name: name.clone(),
                mtu: Some(mtu),
                ..Default::default()
            }
        };
        let what = format!("{req:?}");
        match c.call(Request::LinkSet(req)) {
            Ok(Response::Ok) => st.ctl_ok += 1,
            other => st.wrong.push(format!("control {what}: {other:?}")),
        }
    };
    let (c0, c1, ext_mac) = (&ctx.churn_ns[0], &ctx.churn_ns[1], &ctx.ext_mac);
    // (request, whether it must be refused)
    let cycle: Vec<(String, bool)> = [
        // ch0, in the daemon's namespace: up, MTU, every mode, down, gone.
        "link add link eth0 name ch0 type macvlan mode bridge".to_string(),
        "link set ch0 up".into(),
        "link set ch0 mtu 1400".into(),
        "link set ch0 type macvlan mode vepa".into(),
        "link set ch0 type macvlan mode private".into(),
        "link set ch0 down".into(),
        // ch1, in its own namespace, source mode: copies of the external host's frames.
        format!("link add link eth0 name ch1 netns {c0} up type macvlan mode source"),
        format!("link set ch1 type macvlan macaddr add {ext_mac}"),
        "link set ch1 type macvlan macaddr add 02:79:ff:00:00:01".into(),
        format!(
            "link set ch1 type macvlan macaddr set 02:79:ff:00:00:02 02:79:ff:00:00:03 {ext_mac}"
        ),
        "link del ch0".into(),
        "link set ch1 type macvlan macaddr flush".into(),
        "link set ch1 type macvlan mode bridge".into(),
        // ch2: made in the daemon's namespace, moved to another, up, MTU, gone.
        "link add link eth0 name ch2 type macvlan mode vepa".into(),
        format!("link set ch2 netns {c1}"),
        "link set ch2 up".into(),
        "link set ch2 mtu 1280".into(),
        "link del ch1".into(),
    ]
    .into_iter()
    .map(|r| (r, false))
    .chain(
        // Requests that must be refused, changing nothing.
        [
            "link add link eth0 name sk00 type macvlan",
            "link set ch2 mtu 9000",
            "link set nosuchmv up",
            "link set ch2 type macvlan mode passthru",
        ]
        .map(|r| (r.to_string(), true)),
    )
    .chain([("link del ch2".to_string(), false)])
    .collect();
    while !stop.load(Ordering::SeqCst) {
        for (request, must_fail) in &cycle {
            let words: Vec<&str> = request.split_whitespace().collect();
            ctx.cli(&mut st, &words, *must_fail);
            ctl_step(&mut st);
            std::thread::sleep(pace);
        }
        st.cycles += 1;
    }
    drop(ctl);
    st
}

// ---------------------------------------------------------------------------------------------
// Counters and samples.

#[derive(Clone, Copy, Default, Debug)]
struct Kstats {
    rx_packets: u64,
    tx_packets: u64,
    rx_dropped: u64,
    tx_dropped: u64,
    rx_errors: u64,
    tx_errors: u64,
}

fn kstats_of(v: &serde_json::Value) -> Kstats {
    let g = |d: &str, k: &str| v["stats64"][d][k].as_u64().unwrap_or(0);
    Kstats {
        rx_packets: g("rx", "packets"),
        tx_packets: g("tx", "packets"),
        rx_dropped: g("rx", "dropped"),
        tx_dropped: g("tx", "dropped"),
        rx_errors: g("rx", "errors"),
        tx_errors: g("tx", "errors"),
    }
}

/// Every counter the accounting uses, read at one moment.
struct Counters {
    /// umacvlan's own, per macvlan (`umacvlan -s -j link show`).
    umv: HashMap<String, Kstats>,
    /// The kernel's, per (namespace short name, interface).
    kernel: HashMap<(String, String), Kstats>,
    /// qdisc drops per (namespace short name, interface).
    qdisc_drops: HashMap<(String, String), u64>,
    /// UDP InErrors per namespace short name.
    udp_errors: HashMap<String, u64>,
    /// Port-wide drops (broadcast queue full, malformed, reassembly, lower socket buffers).
    port_drops: u64,
}

impl Counters {
    fn read(lab: &Lab, w: &World) -> Result<Counters, String> {
        let out = lab.cli_ok(&["-s", "-j", "link", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let mut umv = HashMap::new();
        for l in v.as_array().ok_or("link show: not a list")? {
            if let Some(n) = l["ifname"].as_str() {
                umv.insert(n.to_string(), kstats_of(l));
            }
        }
        let mut spaces: Vec<(String, String)> = vec![
            ("host".into(), w.host.clone()),
            ("ext".into(), w.ext.clone()),
        ];
        for (n, ns) in w.ns.iter().enumerate() {
            spaces.push((format!("m{n}"), ns.clone()));
        }
        let mut kernel = HashMap::new();
        let mut qdisc_drops = HashMap::new();
        let mut udp_errors = HashMap::new();
        for (short, ns) in &spaces {
            let out = lab::must(&["ip", "-n", ns, "-s", "-j", "link", "show"])?;
            let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            for l in v.as_array().into_iter().flatten() {
                if let Some(n) = l["ifname"].as_str() {
                    kernel.insert((short.clone(), n.to_string()), kstats_of(l));
                }
            }
            let out = lab::must(&["tc", "-n", ns, "-s", "-j", "qdisc", "show"]).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) {
                for q in v.as_array().into_iter().flatten() {
                    if let Some(dev) = q["dev"].as_str() {
                        *qdisc_drops
                            .entry((short.clone(), dev.to_string()))
                            .or_insert(0) += q["drops"].as_u64().unwrap_or(0);
                    }
                }
            }
            udp_errors.insert(short.clone(), udp_errors_in(ns)?);
        }
        let port_drops = match Client::connect(lab.socket(), DEFAULT_TIMEOUT)
            .and_then(|mut c| c.call(Request::PortShow))
        {
            Ok(Response::Ports { ports }) => ports
                .iter()
                .map(|p| p.lower_rx_dropped + p.malformed + p.defrag_dropped + p.socket_dropped)
                .sum(),
            other => return Err(format!("port show: {other:?}")),
        };
        Ok(Counters {
            umv,
            kernel,
            qdisc_drops,
            udp_errors,
            port_drops,
        })
    }
}

/// UDP `InErrors` in namespace `ns` (its `/proc/net/snmp`, read from a thread
/// inside it).
fn udp_errors_in(ns: &str) -> Result<u64, String> {
    let text = in_ns(ns, || std::fs::read_to_string("/proc/thread-self/net/snmp"))?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return Err(format!("no Udp line in {ns}'s snmp"));
    };
    let map: HashMap<&str, u64> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
        .collect();
    // InErrors counts every datagram the stack dropped on receive (RcvbufErrors included).
    Ok(map.get("InErrors").copied().unwrap_or(0))
}

struct Sample {
    t: f64,
    rss: u64,
    fds: usize,
    threads: usize,
}

/// The daemon's RSS, fds and threads now; `None` once it is gone.
fn sample(pid: u32, t0: Instant) -> Option<Sample> {
    Some(Sample {
        t: t0.elapsed().as_secs_f64(),
        rss: rss_kib(pid)?,
        fds: count_dir(&format!("/proc/{pid}/fd")),
        threads: count_dir(&format!("/proc/{pid}/task")),
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The daemon's fd and thread counts once they have not changed for 300 ms (at most 3 s).
fn settled_fds_threads(pid: u32) -> (usize, usize) {
    let read = || {
        (
            count_dir(&format!("/proc/{pid}/fd")),
            count_dir(&format!("/proc/{pid}/task")),
        )
    };
    let start = Instant::now();
    let mut last = read();
    let mut still_since = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
        let now = read();
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
    last
}

fn count_dir(p: &str) -> usize {
    std::fs::read_dir(Path::new(p)).map_or(0, |d| d.count())
}

/// What the churn may have left behind: extra macvlans, TAPs in the churn namespaces, TAPs
/// named ch* in the daemon's namespace.
fn leftovers(lab: &Lab, w: &World) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(s) = lab.cli_ok(&["-j", "link", "show"]) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
            let names: Vec<&str> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["ifname"].as_str())
                .collect();
            for n in &names {
                if !n.starts_with("sk") {
                    out.push(format!("macvlan {n}"));
                }
            }
            if names.len() != w.devs.len() {
                out.push(format!(
                    "{} macvlans instead of {}",
                    names.len(),
                    w.devs.len()
                ));
            }
        }
    }
    for ns in w.churn_ns.iter().chain([&w.host]) {
        let links = lab::run(&["ip", "-n", ns, "-o", "link", "show"]).stdout;
        for l in links.lines() {
            let name = l.split(':').nth(1).unwrap_or("").trim();
            if name.starts_with("ch") {
                out.push(format!("interface {name} in {ns}"));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The report.

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn report_rss(samples: &[Sample], duration: Duration) -> bool {
    let total = duration.as_secs_f64();
    let warm = (total * 0.25).max(3.0).min(total * 0.5);
    let post: Vec<&Sample> = samples.iter().filter(|s| s.t >= warm).collect();
    let (Some(first), true) = (post.first(), post.len() >= 4) else {
        println!(
            "  (a) RSS: FAIL — too few samples after the {warm:.1} s warm-up ({})",
            post.len()
        );
        return false;
    };
    let tail = &post[post.len() - 3..];
    let last = tail.iter().map(|s| s.rss).max().unwrap_or(0);
    let bound = RSS_SLACK_KIB.max(first.rss / 10);
    let max = post.iter().map(|s| s.rss).max().unwrap_or(0);
    let start = samples.first().map_or(0, |s| s.rss);
    // Least-squares slope over the post-warm-up samples, for the record.
    let n = post.len() as f64;
    let (mt, mr) = (
        post.iter().map(|s| s.t).sum::<f64>() / n,
        post.iter().map(|s| s.rss as f64).sum::<f64>() / n,
    );
    let cov: f64 = post.iter().map(|s| (s.t - mt) * (s.rss as f64 - mr)).sum();
    let var: f64 = post.iter().map(|s| (s.t - mt).powi(2)).sum();
    let slope = if var > 0.0 { cov / var * 60.0 } else { 0.0 };
    let ok = last <= first.rss + bound;
    println!(
        "  (a) RSS: {} — {} samples; at start {start} KiB; first after the {warm:.1} s warm-up {} KiB, \
         last three max {last} KiB ({:+} KiB; bound +{bound} KiB = max(2 MiB, 10 %)); max {max} KiB; \
         trend {slope:+.0} KiB/min",
        verdict(ok),
        samples.len(),
        first.rss,
        last as i64 - first.rss as i64
    );
    let (fmin, fmax) = (
        samples.iter().map(|s| s.fds).min().unwrap_or(0),
        samples.iter().map(|s| s.fds).max().unwrap_or(0),
    );
    let (tmin, tmax) = (
        samples.iter().map(|s| s.threads).min().unwrap_or(0),
        samples.iter().map(|s| s.threads).max().unwrap_or(0),
    );
    println!("      during the soak: fds {fmin}–{fmax}, threads {tmin}–{tmax}");
    ok
}

fn delta(a: u64, b: u64) -> u64 {
    b.saturating_sub(a)
}

#[allow(clippy::too_many_arguments)]
fn report_frames(
    w: &World,
    streams: &[Stream],
    rx: &[RxSock],
    sent: &[u64],
    tally: &Tally,
    before: &Counters,
    after: &Counters,
    pings: &[PingResult],
) -> bool {
    let mut ok = true;
    // Drop counters that moved, by where they are.
    let k = |c: &Counters, ns: &str, dev: &str| {
        c.kernel
            .get(&(ns.to_string(), dev.to_string()))
            .copied()
            .unwrap_or_default()
    };
    let kdrops = |ns: &str, dev: &str| {
        let (a, b) = (k(before, ns, dev), k(after, ns, dev));
        delta(a.rx_dropped, b.rx_dropped)
            + delta(a.tx_dropped, b.tx_dropped)
            + delta(a.rx_errors, b.rx_errors)
            + delta(a.tx_errors, b.tx_errors)
    };
    let qdrops = |ns: &str, dev: &str| {
        let key = (ns.to_string(), dev.to_string());
        delta(
            before.qdisc_drops.get(&key).copied().unwrap_or(0),
            after.qdisc_drops.get(&key).copied().unwrap_or(0),
        )
    };
    let udp = |ns: &str| {
        delta(
            before.udp_errors.get(ns).copied().unwrap_or(0),
            after.udp_errors.get(ns).copied().unwrap_or(0),
        )
    };
    let umv_drops = |name: &str| {
        let a = before.umv.get(name).copied().unwrap_or_default();
        let b = after.umv.get(name).copied().unwrap_or_default();
        delta(a.rx_dropped, b.rx_dropped) + delta(a.tx_dropped, b.tx_dropped)
    };
    let mut moved: BTreeMap<String, u64> = BTreeMap::new();
    let mut note = |what: String, n: u64| {
        if n > 0 {
            moved.insert(what, n);
        }
    };
    // The wire: the lower, the external host's port and bridge, the port's own drops.
    let wire = kdrops("host", "eth0")
        + qdrops("host", "eth0")
        + kdrops("ext", "eth0")
        + kdrops("ext", "br0")
        + qdrops("ext", "eth0")
        + delta(before.port_drops, after.port_drops);
    note("lower eth0 (kernel)".into(), kdrops("host", "eth0"));
    note(
        "ext eth0/br0 (kernel)".into(),
        kdrops("ext", "eth0") + kdrops("ext", "br0"),
    );
    note(
        "port drops (umacvlan)".into(),
        delta(before.port_drops, after.port_drops),
    );
    note("UDP errors in ext".into(), udp("ext"));
    let dev_drops: Vec<u64> = w
        .devs
        .iter()
        .map(|d| {
            let ns = format!("m{}", d.ns);
            let (u, kk, q) = (
                umv_drops(&d.name),
                kdrops(&ns, &d.name),
                qdrops(&ns, &d.name),
            );
            note(format!("{} (umacvlan)", d.name), u);
            note(format!("{} TAP (kernel)", d.name), kk + q);
            u + kk + q
        })
        .collect();
    for n in 0..NS_COUNT {
        note(format!("UDP errors in m{n}"), udp(&format!("m{n}")));
    }

    #[derive(Default)]
    struct Sum {
        streams: usize,
        sent: u64,
        expected: u64,
        received: u64,
        lost: u64,
        dups: u64,
        covered: u64,
    }
    let mut sums: BTreeMap<&str, Sum> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let path_drops: u64 = wire
            + s.path_devs.iter().map(|d| dev_drops[*d]).sum::<u64>()
            + s.rx_ns.iter().map(|n| udp(n)).sum::<u64>();
        let class = match (s.kind, s.src) {
            (Kind::Unicast, Src::Ext) => "unicast ext → macvlan",
            (Kind::Unicast, Src::Dev(_)) if s.rx_ns == ["ext"] => "unicast macvlan → ext",
            (Kind::Unicast, Src::Dev(_)) => "unicast macvlan → macvlan",
            (Kind::Broadcast, _) => "broadcast ext → all",
            (Kind::Multicast, _) => "multicast ext → joined",
        };
        let sum = sums.entry(class).or_default();
        sum.streams += 1;
        sum.sent += sent[i];
        let mut stream_lost = 0;
        for (r, k) in &s.expect {
            let copies = tally.copies.get(&(i as u32, *r));
            let received: u64 = copies.map_or(0, |v| v.iter().map(|c| *c as u64).sum());
            let expected = sent[i] * *k as u64;
            // Copies beyond k of one sequence number, and copies of numbers never sent.
            let dups: u64 = copies.map_or(0, |v| {
                v.iter()
                    .enumerate()
                    .map(|(q, c)| {
                        if q as u64 >= sent[i] {
                            *c as u64
                        } else {
                            (*c as u64).saturating_sub(*k as u64)
                        }
                    })
                    .sum()
            });
            let lost = (expected + dups).saturating_sub(received);
            sum.expected += expected;
            sum.received += received;
            sum.lost += lost;
            sum.dups += dups;
            stream_lost += lost;
            if dups > 0 {
                failures.push(format!(
                    "{} at {}: {dups} duplicate or unsent datagram(s)",
                    s.label, rx[*r].label
                ));
            }
        }
        if stream_lost > path_drops {
            failures.push(format!(
                "{}: sent {}, lost {stream_lost}, but drop counters on its path moved by only {path_drops}",
                s.label, sent[i]
            ));
        } else {
            sum.covered += stream_lost;
        }
        if sent[i] == 0 {
            failures.push(format!("{}: nothing sent", s.label));
        }
    }
    if tally.unexpected > 0 {
        failures.push(format!(
            "{} datagram(s) arrived at a socket that must not get them",
            tally.unexpected
        ));
    }
    println!("  (b) frames: accounting, per stream and receiving socket:");
    println!("        received = sent × copies − lost, no duplicates; lost = 0 unless a drop counter on the path moved,");
    println!("        and lost ≤ Σ those counters (umacvlan rx/tx_dropped, port drops, kernel rx/tx_dropped and");
    println!(
        "        qdisc drops of TAPs, lower and ext, UDP InErrors of the receiving namespace)"
    );
    let (mut tsent, mut trecv, mut tlost) = (0, 0, 0);
    for (class, s) in &sums {
        println!(
            "        {class:<27} {:>3} streams: sent {:>8}, expected {:>8}, received {:>8}, lost {}, duplicates {}",
            s.streams, s.sent, s.expected, s.received, s.lost, s.dups
        );
        tsent += s.sent;
        trecv += s.received;
        tlost += s.lost;
    }
    let total_drops: u64 = moved.values().sum();
    println!(
        "        total: datagrams sent {tsent}, copies received {trecv}, lost {tlost}; drop counters moved: {total_drops}{}",
        if moved.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                moved
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if tally.foreign > 0 {
        println!("        ({} foreign datagram(s) ignored)", tally.foreign);
    }
    // umacvlan's counters against the TAPs' kernel counters.
    let mut mismatch = Vec::new();
    let (mut urx, mut utx) = (0u64, 0u64);
    for d in &w.devs {
        let ns = format!("m{}", d.ns);
        let (ua, ub) = (
            before.umv.get(&d.name).copied().unwrap_or_default(),
            after.umv.get(&d.name).copied().unwrap_or_default(),
        );
        let (ka, kb) = (k(before, &ns, &d.name), k(after, &ns, &d.name));
        let (u_rx, k_rx) = (
            delta(ua.rx_packets, ub.rx_packets),
            delta(ka.rx_packets, kb.rx_packets),
        );
        let u_tx = delta(ua.tx_packets, ub.tx_packets) + delta(ua.tx_dropped, ub.tx_dropped);
        let k_tx = delta(ka.tx_packets, kb.tx_packets);
        urx += u_rx;
        utx += u_tx;
        if u_rx != k_rx || u_tx != k_tx {
            mismatch.push(format!(
                "{}: umacvlan rx {u_rx} tx+dropped {u_tx}, TAP rx {k_rx} tx {k_tx}",
                d.name
            ));
        }
    }
    println!(
        "        umacvlan vs TAP counters, 64 macvlans: Δrx umacvlan = Δrx TAP ({urx}), Δ(tx+tx_dropped) umacvlan = Δtx TAP ({utx}): {}",
        if mismatch.is_empty() { "equal" } else { "DIFFERENT" }
    );
    for m in mismatch.iter().take(10) {
        println!("          {m}");
    }
    if !mismatch.is_empty() {
        failures.push(format!(
            "{} macvlan(s) whose counters disagree with their TAP's",
            mismatch.len()
        ));
    }
    let mut ping_ok = true;
    for p in pings {
        ping_ok &= p.ok();
        println!(
            "        ping {:<28} {:>5} sent, {:>5} answered{}",
            p.label,
            p.transmitted,
            p.received,
            if p.ok() { "" } else { "  ← lost" }
        );
    }
    println!(
        "        (a ping passes with every echo answered but the one in flight when it is stopped)"
    );
    if !ping_ok {
        failures.push("a ping lost echoes".into());
    }
    for f in failures.iter().take(15) {
        println!("        ✗ {f}");
    }
    ok &= failures.is_empty();
    let unaccounted = tlost > 0 && tlost > sums.values().map(|s| s.covered).sum::<u64>();
    let texp: u64 = sums.values().map(|s| s.expected).sum();
    println!(
        "  (b) frames: {} — expected (sent × copies) {texp} = received {trecv} + lost {tlost}; lost and not covered by a drop counter: {}",
        verdict(ok),
        if unaccounted {
            (tlost - sums.values().map(|s| s.covered).sum::<u64>()).to_string()
        } else {
            "0".into()
        }
    );
    ok
}

fn report_log(log: &str) -> bool {
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .collect();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    let ok = bad.is_empty();
    println!(
        "  (c) log: {} — {} lines, {} ERROR/panicked, {} WARN",
        verdict(ok),
        log.lines().count(),
        bad.len(),
        warns.len()
    );
    for l in bad.iter().chain(warns.iter()).take(8) {
        println!("        {}", l.trim());
    }
    ok
}

fn report_resources(
    fds: (usize, usize),
    threads: (usize, usize),
    stats_entries: (usize, usize),
    leftovers: &[String],
    churn: &ChurnStats,
) -> bool {
    let wrong = churn.wrong.len();
    println!(
        "      churn: {} cycles, {} CLI requests done, {} refused as they must be, {} control-socket changes to traffic macvlans; slowest CLI request {:.0} ms; {} ended wrongly",
        churn.cycles,
        churn.cli_ok,
        churn.cli_refused_as_expected,
        churn.ctl_ok,
        churn.slowest.as_secs_f64() * 1000.0,
        wrong
    );
    for w in churn.wrong.iter().filter(|w| !w.is_empty()).take(10) {
        println!("        ✗ {w}");
    }
    let ok = fds.0 == fds.1
        && threads.0 == threads.1
        && stats_entries.0 == stats_entries.1
        && leftovers.is_empty()
        && wrong == 0
        && churn.cycles > 0;
    println!(
        "  (d) resources: {} — fds before/after the churn {}/{}, threads {}/{}, counter-tree entries {}/{}, leftovers {}",
        verdict(ok),
        fds.0,
        fds.1,
        threads.0,
        threads.1,
        stats_entries.0,
        stats_entries.1,
        if leftovers.is_empty() {
            "none".to_string()
        } else {
            leftovers.join(", ")
        }
    );
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_foreign_data() {
        let p = payload(1, 77, 123_456);
        assert_eq!(parse_payload(&p), Some((1, 77, 123_456)));
        assert_eq!(parse_payload(&p[..20]), None);
        assert_eq!(parse_payload(&[0u8; PAYLOAD]), None);
    }

    #[test]
    fn the_lab_has_64_macvlans_mostly_bridge_and_streams_cross_namespaces() {
        let d = devices();
        assert_eq!(d.len(), 64);
        let bridge = d.iter().filter(|d| mode_of(d.j) == "bridge").count();
        assert_eq!(bridge, 48);
        for (a, b) in mv_streams() {
            assert_ne!(d[a].ns, d[b].ns, "{a} → {b} stays in one namespace");
        }
    }
}
