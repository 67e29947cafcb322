//! Two more views of the counters, beside `umacvlan -s link show` and `umacvlan stats`:
//!
//! - a sysfs-like tree, `DIR/NAME/statistics/<counter>` (read-only files named as the kernel's
//!   `/sys/class/net/NAME/statistics/`), rewritten when counters change;
//! - Prometheus text on `--metrics ADDR` (loopback unless told otherwise), with
//!   node_exporter's netdev metric names, `device`/`lower`/`mode` labels, and umacvlan's
//!   per-lower drop reasons.

use super::control::Inbox;
use crate::proto::{LinkCounters, LinkInfo, PortInfo, Request, Response, Stats64};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The kernel's statistics file names, with the value umacvlan has for each (the rest are 0).
fn counter_files(s: &Stats64) -> [(&'static str, u64); 23] {
    [
        ("collisions", 0),
        ("multicast", s.multicast),
        ("rx_bytes", s.rx_bytes),
        ("rx_compressed", 0),
        ("rx_crc_errors", 0),
        ("rx_dropped", s.rx_dropped),
        ("rx_errors", s.rx_errors),
        ("rx_fifo_errors", 0),
        ("rx_frame_errors", 0),
        ("rx_length_errors", 0),
        ("rx_missed_errors", 0),
        ("rx_nohandler", 0),
        ("rx_over_errors", 0),
        ("rx_packets", s.rx_packets),
        ("tx_aborted_errors", 0),
        ("tx_bytes", s.tx_bytes),
        ("tx_carrier_errors", 0),
        ("tx_compressed", 0),
        ("tx_dropped", s.tx_dropped),
        ("tx_errors", s.tx_errors),
        ("tx_fifo_errors", 0),
        ("tx_heartbeat_errors", 0),
        ("tx_packets", s.tx_packets),
    ]
}

/// Keeps `DIR/NAME/statistics/*` in step with the macvlans (names are unique across
/// namespaces in the daemon).
pub struct StatsTree {
    dir: PathBuf,
    /// What each macvlan's files say, by name.
    last: HashMap<String, Stats64>,
}

impl StatsTree {
    /// A tree under `dir` (created on first write).
    pub fn new(dir: PathBuf) -> StatsTree {
        StatsTree {
            dir,
            last: HashMap::new(),
        }
    }

    /// Writes what changed since the last call and removes departed macvlans. A macvlan whose
    /// files could not be written is written whole next time; the first error is returned.
    pub fn update(&mut self, links: &[LinkCounters]) -> io::Result<()> {
        self.update_with(links, true)
    }

    /// Adds new macvlans and removes departed ones; rewrites the counters that moved only when
    /// `moved` (what costs with traffic, paced by the caller, while the set follows at once).
    pub fn update_with(&mut self, links: &[LinkCounters], moved: bool) -> io::Result<()> {
        let mut now = HashMap::with_capacity(links.len());
        let mut first_err = None;
        for l in links {
            let old = self.last.remove(&l.ifname);
            let shown = match old {
                Some(o) if o == l.stats || !moved => o,
                _ => {
                    if let Err(e) = self.write(&l.ifname, old.as_ref(), &l.stats) {
                        first_err.get_or_insert(e);
                        continue;
                    }
                    l.stats
                }
            };
            now.insert(l.ifname.clone(), shown);
        }
        // What is left was not in this answer.
        for gone in self.last.keys() {
            let _ = std::fs::remove_dir_all(self.dir.join(gone));
        }
        self.last = now;
        first_err.map_or(Ok(()), Err)
    }

    /// Writes one macvlan's files: all of them when `old` is `None`, else those that moved.
    /// A new macvlan's zeros (most of its 23 files, for good: umacvlan has no such counter) are
    /// hard links to one file: one syscall each instead of create, write, close and rename.
    fn write(&self, name: &str, old: Option<&Stats64>, new: &Stats64) -> io::Result<()> {
        let stats = self.dir.join(name).join("statistics");
        if old.is_none() {
            std::fs::create_dir_all(&stats)?;
        }
        let before = old.map(counter_files);
        for (i, (file, v)) in counter_files(new).into_iter().enumerate() {
            let path = stats.join(file);
            if before.is_none() && v == 0 && self.link_zero(&path).is_ok() {
                continue;
            }
            if before.is_none_or(|b| b[i].1 != v) {
                write_readonly(&path, &format!("{v}\n"))?;
            }
        }
        Ok(())
    }

    /// The shared zero file: `:` cannot be in a device's name, so no macvlan's directory
    /// takes its place.
    fn zero(&self) -> PathBuf {
        self.dir.join(":zero")
    }

    /// Makes `path` a link to the zero file (made on first use; a file of a previous run in
    /// the way is replaced). Fails where links cannot be made (e.g. the file system's limit
    /// of links to one file): the caller writes the file instead.
    fn link_zero(&self, path: &Path) -> io::Result<()> {
        let zero = self.zero();
        if !zero.exists() {
            write_readonly(&zero, "0\n")?;
        }
        match std::fs::hard_link(&zero, path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(path)?;
                std::fs::hard_link(&zero, path)
            }
            r => r,
        }
    }

    /// Removes the whole tree.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces a file atomically with mode 0444 (a reader never sees half a number). The
/// temporary file is made with its mode: the daemon has no `CAP_DAC_OVERRIDE`, so one a crash
/// left behind is removed rather than reopened.
fn write_readonly(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)
    };
    let mut f = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            create()?
        }
        r => r?,
    };
    f.write_all(text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DevLabels {
    device: String,
    lower: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    lower: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    lower: String,
}

/// Renders the Prometheus text exposition of the current counters.
pub fn render_metrics(links: &[LinkInfo], ports: &[PortInfo]) -> String {
    let mut reg = Registry::default();
    let fam = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<DevLabels, Counter>::default();
        reg.register(name, help, f.clone());
        f
    };
    let rx_bytes = fam(
        &mut reg,
        "node_network_receive_bytes",
        "Bytes delivered to the macvlan",
    );
    let rx_packets = fam(
        &mut reg,
        "node_network_receive_packets",
        "Frames delivered to the macvlan",
    );
    let rx_errs = fam(
        &mut reg,
        "node_network_receive_errs",
        "Deliveries that failed (rx_errors)",
    );
    let rx_drop = fam(
        &mut reg,
        "node_network_receive_drop",
        "rx_dropped (equal to rx_errors, as the kernel reports it)",
    );
    let rx_mc = fam(
        &mut reg,
        "node_network_receive_multicast",
        "Multicast frames delivered to the macvlan",
    );
    let tx_bytes = fam(
        &mut reg,
        "node_network_transmit_bytes",
        "Bytes the macvlan sent",
    );
    let tx_packets = fam(
        &mut reg,
        "node_network_transmit_packets",
        "Frames the macvlan sent",
    );
    let tx_errs = fam(&mut reg, "node_network_transmit_errs", "Transmit errors");
    let tx_drop = fam(
        &mut reg,
        "node_network_transmit_drop",
        "Frames the macvlan sent that could not be transmitted",
    );
    for l in links {
        let lab = DevLabels {
            device: l.ifname.clone(),
            lower: l.link.clone(),
            mode: l.mode.map(|m| m.to_string()).unwrap_or_default(),
        };
        let s = &l.stats;
        for (f, v) in [
            (&rx_bytes, s.rx_bytes),
            (&rx_packets, s.rx_packets),
            (&rx_errs, s.rx_errors),
            (&rx_drop, s.rx_dropped),
            (&rx_mc, s.multicast),
            (&tx_bytes, s.tx_bytes),
            (&tx_packets, s.tx_packets),
            (&tx_errs, s.tx_errors),
            (&tx_drop, s.tx_dropped),
        ] {
            f.get_or_create(&lab).inc_by(v);
        }
    }
    let drops = Family::<DropLabels, Counter>::default();
    reg.register(
        "umacvlan_port_drops",
        "Frames dropped by a port, by reason",
        drops.clone(),
    );
    for p in ports {
        for (reason, v) in [
            ("broadcast_queue_full_or_lower_refused", p.lower_rx_dropped),
            ("malformed", p.malformed),
            ("defrag", p.defrag_dropped),
            ("socket", p.socket_dropped),
        ] {
            drops
                .get_or_create(&DropLabels {
                    lower: p.lower.clone(),
                    reason: reason.into(),
                })
                .inc_by(v);
        }
    }
    let restarts = Family::<PortLabels, Counter>::default();
    reg.register(
        "umacvlan_worker_restarts",
        "Data-plane workers restarted after their epoll set failed",
        restarts.clone(),
    );
    for p in ports {
        restarts
            .get_or_create(&PortLabels {
                lower: p.lower.clone(),
            })
            .inc_by(p.worker_restarts);
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// Rewriting moved counters takes at most 1 / TREE_SPACING of a core, unless that would leave
/// them older than TREE_STALE_MAX: with many macvlans whose counters all move (1000 in a
/// broadcast domain, each receiving one ARP a second, is 3000 files a second, 13 µs each on
/// tmpfs and ~100 µs on ext4) they are rewritten less often than each second. Macvlans coming
/// and going are followed every second.
const TREE_SPACING: u32 = 100;
const TREE_STALE_MAX: Duration = Duration::from_secs(10);

/// Keeps the tree under `dir` current from its own thread, so the manager thread never waits
/// on the file system. Returns the thread's stop flag.
pub fn run_tree(dir: PathBuf, inbox: Arc<Inbox>) -> io::Result<Arc<std::sync::atomic::AtomicBool>> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    std::thread::Builder::new()
        .name("umv-stats".into())
        .spawn(move || {
            let mut tree = StatsTree::new(dir);
            let mut next_moved = std::time::Instant::now();
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                let started = std::time::Instant::now();
                let moved = started >= next_moved;
                if let Response::Counters { counters } = inbox.call(Request::LinkStats) {
                    if let Err(e) = tree.update_with(&counters, moved) {
                        tracing::warn!("cannot write the statistics tree: {e}");
                    }
                }
                if moved {
                    next_moved = started
                        + (started.elapsed() * TREE_SPACING)
                            .clamp(Duration::from_secs(1), TREE_STALE_MAX);
                }
                // A second, in steps, so that a stop is not kept waiting.
                let until = started + Duration::from_secs(1);
                while !s.load(std::sync::atomic::Ordering::SeqCst) {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(200)));
                }
            }
            tree.remove();
        })?;
    Ok(stop)
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub fn serve_metrics(listener: TcpListener, inbox: Arc<Inbox>) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    std::thread::Builder::new()
        .name("umv-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = metrics_request(conn, &inbox);
            }
        })?;
    Ok(())
}

fn metrics_request(mut conn: TcpStream, inbox: &Inbox) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut first = String::new();
    BufReader::new(&conn).read_line(&mut first)?;
    let path = first.split_whitespace().nth(1).unwrap_or("");
    if !first.starts_with("GET ") || (path != "/metrics" && path != "/") {
        return conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let links = match inbox.call(Request::LinkShow { name: None }) {
        Response::Links { links } => links,
        _ => Vec::new(),
    };
    let ports = match inbox.call(Request::PortShow) {
        Response::Ports { ports } => ports,
        _ => Vec::new(),
    };
    let body = render_metrics(&links, &ports);
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn info(name: &str, rx: u64) -> LinkInfo {
        LinkInfo {
            ifname: name.into(),
            link: "eth0".into(),
            mode: Some(umacvlan_core::engine::Mode::Bridge),
            stats: Stats64 {
                rx_packets: rx,
                rx_bytes: rx * 60,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn metrics_use_node_exporter_names_and_labels() {
        let m = render_metrics(
            &[info("mv0", 3)],
            &[PortInfo {
                lower: "eth0".into(),
                malformed: 2,
                worker_restarts: 1,
                ..Default::default()
            }],
        );
        assert!(
            m.contains(
                r#"node_network_receive_packets_total{device="mv0",lower="eth0",mode="bridge"} 3"#
            ),
            "{m}"
        );
        assert!(
            m.contains(
                r#"node_network_receive_bytes_total{device="mv0",lower="eth0",mode="bridge"} 180"#
            ),
            "{m}"
        );
        assert!(
            m.contains(r#"umacvlan_port_drops_total{lower="eth0",reason="malformed"} 2"#),
            "{m}"
        );
        assert!(
            m.contains(r#"umacvlan_worker_restarts_total{lower="eth0"} 1"#),
            "{m}"
        );
    }

    fn counters(name: &str, rx: u64) -> LinkCounters {
        let i = info(name, rx);
        LinkCounters {
            ifname: i.ifname,
            stats: i.stats,
        }
    }

    #[test]
    fn tree_has_kernel_file_names_read_only_and_follows_departures() {
        let dir = std::env::temp_dir().join(format!("umv-stats-{}", std::process::id()));
        let mut t = StatsTree::new(dir.clone());
        t.update(&[counters("mv0", 3), counters("mv1", 1)]).unwrap();
        let f = dir.join("mv0/statistics/rx_packets");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "3\n");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o444
        );
        // The zeros are one file, linked: a moved counter gets its own and leaves it alone.
        let z = dir.join("mv0/statistics/tx_packets");
        assert_eq!(std::fs::read_to_string(&z).unwrap(), "0\n");
        assert_eq!(
            std::fs::metadata(&z).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert!(std::fs::metadata(&z).unwrap().nlink() > 1);
        assert_eq!(
            std::fs::read_dir(dir.join("mv0/statistics"))
                .unwrap()
                .count(),
            23
        );
        t.update(&[counters("mv0", 4)]).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "4\n");
        assert!(!dir.join("mv1").exists());
        t.remove();
        assert!(!dir.exists());
    }

    #[test]
    fn only_what_moved_is_rewritten() {
        let dir = std::env::temp_dir().join(format!("umv-stats-moved-{}", std::process::id()));
        let mut t = StatsTree::new(dir.clone());
        t.update(&[counters("mv0", 5), counters("mv1", 7)]).unwrap();
        let ino = |p: &str| std::fs::metadata(dir.join(p)).unwrap().ino();
        let (rx0, tx0, rx1) = (
            ino("mv0/statistics/rx_packets"),
            ino("mv0/statistics/tx_packets"),
            ino("mv1/statistics/rx_packets"),
        );
        t.update(&[counters("mv0", 6), counters("mv1", 7)]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("mv0/statistics/rx_packets")).unwrap(),
            "6\n"
        );
        assert_ne!(ino("mv0/statistics/rx_packets"), rx0);
        assert_eq!(ino("mv0/statistics/tx_packets"), tx0);
        assert_eq!(ino("mv1/statistics/rx_packets"), rx1);
        // A zero that moves gets a file of its own; the others still read 0.
        let mut c = counters("mv0", 6);
        c.stats.tx_packets = 2;
        t.update(&[c, counters("mv1", 7)]).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        assert_eq!(read("mv0/statistics/tx_packets"), "2\n");
        assert_eq!(read("mv1/statistics/tx_packets"), "0\n");
        assert_eq!(read("mv0/statistics/tx_bytes"), "0\n");
        t.remove();
    }

    #[test]
    fn between_rewrites_macvlans_still_come_and_go() {
        let dir = std::env::temp_dir().join(format!("umv-stats-set-{}", std::process::id()));
        let mut t = StatsTree::new(dir.clone());
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        t.update(&[counters("mv0", 5)]).unwrap();
        t.update_with(&[counters("mv0", 6), counters("mv1", 2)], false)
            .unwrap();
        assert_eq!(
            read("mv0/statistics/rx_packets"),
            "5\n",
            "not rewritten yet"
        );
        assert_eq!(read("mv1/statistics/rx_packets"), "2\n", "a new one, whole");
        t.update_with(&[counters("mv1", 3)], false).unwrap();
        assert!(!dir.join("mv0").exists(), "a departed one goes at once");
        assert_eq!(read("mv1/statistics/rx_packets"), "2\n");
        // The next rewrite brings what moved meanwhile.
        t.update_with(&[counters("mv1", 3)], true).unwrap();
        assert_eq!(read("mv1/statistics/rx_packets"), "3\n");
        t.remove();
    }

    #[test]
    fn a_temporary_file_left_by_a_crash_is_replaced() {
        let dir = std::env::temp_dir().join(format!("umv-stats-tmp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("mv0/statistics")).unwrap();
        let tmp = dir.join("mv0/statistics/rx_packets.tmp");
        std::fs::write(&tmp, "junk").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444)).unwrap();
        let mut t = StatsTree::new(dir.clone());
        t.update(&[counters("mv0", 3)]).unwrap();
        let f = dir.join("mv0/statistics/rx_packets");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "3\n");
        assert!(!tmp.exists());
        t.remove();
    }
}
