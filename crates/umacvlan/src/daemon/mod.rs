//! The daemon: workers, control socket, lower monitoring, state.
//!
//! Threads: one manager thread (this module's loop) owns all state and applies requests and
//! observed link changes one at a time; one thread per client connection; per port, the data
//! plane's workers and broadcast worker ([`dataplane`]).

pub mod broker;
pub mod config;
pub mod control;
pub mod counters;
pub mod dataplane;
pub mod fastpath;
pub mod group_refresh;
pub mod guardian;
pub mod lower_refs;
pub mod manager;
pub mod monitor;
pub mod notify;
pub mod privileges;
pub mod state;
pub mod stats;

use clap::Parser;
use manager::{Manager, ManagerOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;
use umacvlan_io::epoll::{Epoll, Events, Interest};
use umacvlan_io::netlink::{LinkEvent, LinkMonitor};
use umacvlan_io::netns::{NetnsHandle, NetnsId};

/// `umacvlan daemon` flags.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "umacvlan daemon",
    about = "Run the userspace macvlan daemon in the foreground"
)]
pub struct DaemonArgs {
    /// Control socket path.
    #[arg(long, default_value = crate::proto::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Keep the configuration in this file and restore it at start.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Data-plane workers per lower device (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Directory of the sysfs-like counter tree (`DIR/NAME/statistics/<counter>`); default
    /// `/run/umacvlan/net` with the default socket, else `SOCKET.net`.
    #[arg(long)]
    pub stats_dir: Option<PathBuf>,
    /// Serve Prometheus metrics: `--metrics` alone serves 127.0.0.1:9478, `--metrics PORT`
    /// loopback on that port, `--metrics ADDR:PORT` exactly there.
    #[arg(long, num_args = 0..=1, default_missing_value = "9478", value_parser = metrics_addr)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Start no namespace broker (the helper that keeps CAP_SYS_ADMIN and CAP_SYS_PTRACE to
    /// create descriptors in other namespaces): no `netns`, and TAPs moved to other namespaces
    /// by hand are not followed there.
    #[arg(long)]
    pub no_netns: bool,
    /// Internal: run as the guardian of a daemon (see `daemon::guardian`).
    #[arg(long, hide = true)]
    pub guardian: bool,
    /// Declarative configuration (TOML, see `daemon::config`): applied at start and on
    /// reload (SIGHUP, `umacvlan reload`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Internal: run as the namespace broker of a daemon (see `daemon::broker`).
    #[arg(long, hide = true, conflicts_with = "guardian")]
    pub broker: bool,
    /// Data path: `bpf` forwards unicast with eBPF programs (veth-based macvlans), `tap`
    /// moves every frame through userspace (TAP-based macvlans), `auto` is bpf where the kernel
    /// and privileges allow, else tap. On bpf, a lower in another namespace takes tap.
    #[arg(long, value_enum, default_value = "auto")]
    pub datapath: fastpath::DatapathArg,
    /// With the bpf datapath (experiment): bridge-to-bridge unicast straight into the
    /// destination, not through the lower's receive path.
    #[arg(long, hide = true)]
    pub bpf_bridge_direct: bool,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `umacvlan=debug`.
    #[arg(long, default_value = "info")]
    pub log: String,
}

/// `--metrics` values: a bare port means loopback.
fn metrics_addr(v: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = v.parse::<u16>() {
        return Ok((std::net::Ipv4Addr::LOCALHOST, port).into());
    }
    v.parse()
        .map_err(|_| format!("{v:?} is neither a port nor an address:port"))
}

/// `umacvlan daemon …`: parses flags and runs until SIGTERM/SIGINT.
pub fn main(args: Vec<String>) -> i32 {
    let args = match DaemonArgs::try_parse_from(
        std::iter::once("umacvlan daemon".to_string()).chain(args),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    if args.guardian {
        return guardian::main();
    }
    if args.broker {
        return broker::main();
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(io::stderr)
        .try_init();
    match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("umacvlan daemon: {e}");
            1
        }
    }
}

const TOKEN_INBOX: u64 = 0;
const TOKEN_SIGNAL: u64 = 1;
const TOKEN_GROUPS: u64 = 2;
const TOKEN_RELOAD: u64 = 3;
// Monitors take TOKEN_MONITOR + their slot: keep it last.
const TOKEN_MONITOR: u64 = 4;
/// How often multicast lists are re-read at most (the kernel sends no event for link-layer
/// joins); between two polls, a group frame a filter refused asks for a re-read at once.
const MC_POLL: Duration = Duration::from_millis(500);
/// The poll takes at most 1 / MC_POLL_SPACING of a core (a third of a percent): with many
/// macvlans (a read of `/proc/net/dev_mcast` per namespace, 8–36 ms at 1000 macvlans over
/// 10–100 namespaces) it runs less often. It is the fallback only: a refused group frame asks
/// for a re-read at once, and IP-level joins arrive as events.
const MC_POLL_SPACING: u32 = 300;

/// Runs the daemon until a termination signal.
pub fn run(args: &DaemonArgs) -> io::Result<()> {
    let mut notifier = notify::Notifier::from_env();
    // A configuration file that does not parse stops the start, before anything is made.
    let mut config_file = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: cannot read: {e}", p.display()))
            })?;
            config::parse(p, &text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let memory = args.state.as_ref().map(|s| {
                let mut m = s.clone().into_os_string();
                m.push(".config");
                PathBuf::from(m)
            });
            Some(config::ConfigFile::new(p.clone(), memory))
        }
        None => None,
    };
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // Sockets that may need more than the daemon keeps are bound first; then capabilities
    // are dropped, before any thread exists.
    // Loading BPF needs capabilities the daemon is about to give up; before the control
    // socket, so that a daemon clients can reach has its data path.
    let fast = fastpath::choose(args.datapath, args.bpf_bridge_direct)?;
    let listener = control::bind(&args.socket)?;
    let metrics = args.metrics.map(std::net::TcpListener::bind).transpose()?;
    // Started with every capability the daemon is about to give up (it needs CAP_NET_ADMIN).
    let guardian = guardian::Guardian::spawn();
    // The namespace broker, likewise started before the drop (it keeps what setns and
    // /proc/PID/ns/net need, which the daemon gives up). Its child handle is kept until the
    // daemon ends; the broker exits when the daemon's end of its socket closes.
    let _broker = if args.no_netns {
        None
    } else {
        match broker::spawn().and_then(|(child, b)| {
            umacvlan_io::netns::install_broker(b)?;
            Ok(child)
        }) {
            Ok(child) => {
                tracing::debug!(pid = child.id(), "namespace broker started");
                Some(child)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot start the namespace broker ({e}): macvlans in other namespaces \
                     cannot be made or followed"
                );
                None
            }
        }
    };
    match privileges::drop_to(&privileges::needed()) {
        Ok(kept) => {
            let mut names: Vec<String> = kept.iter().map(|c| c.to_string()).collect();
            names.sort();
            tracing::info!("capabilities kept: {}", names.join(" "));
        }
        Err(e) => tracing::warn!("cannot drop capabilities: {e}"),
    }
    match umacvlan_io::raise_nofile_limit() {
        Ok(n) => tracing::debug!("open files limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let mut mgr = Manager::new(ManagerOptions { workers })?;
    let groups = std::sync::Arc::new(group_refresh::GroupRefresh::new()?);
    mgr.set_group_refresh(groups.clone());
    // The programs' decisions reach `monitor` through this (tracing on only while it listens).
    let mut fast_tracer = None;
    if let Some(fp) = fast {
        let mut f = fastpath::FastState::new(fp);
        fast_tracer = f.tracer();
        mgr.set_fast_path(f);
    }
    match guardian {
        Ok(g) => {
            tracing::debug!(pid = g.pid(), "guardian started");
            mgr.set_guardian(g);
        }
        Err(e) => tracing::warn!(
            "cannot start the guardian ({e}): a passthru lower's address would not be restored \
             after a crash"
        ),
    }
    let inbox = control::Inbox::new()?;
    mgr.set_monitor(inbox.monitor.clone());
    if let Some(t) = fast_tracer {
        inbox.monitor.set_source(Box::new(t));
    }

    let (sig_rx, sig_tx) = UnixStream::pair()?;
    sig_rx.set_nonblocking(true)?;
    for s in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(s, sig_tx.try_clone()?)?;
    }
    // SIGHUP reloads the configuration file (systemd's convention).
    let (hup_rx, hup_tx) = UnixStream::pair()?;
    hup_rx.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, hup_tx)?;

    let mut state_writer = args.state.as_ref().map(|p| {
        let generation = restore(&mut mgr, p);
        mgr.sync_guardian();
        state::StateWriter::new(p, generation)
    });
    // Applied before READY=1; a refusal (e.g. a lower not there yet) is said in its status.
    let start_refusal = match config_file.as_mut().map(|c| reload(&mut mgr, c, None)) {
        Some(crate::proto::Response::Error {
            message: Some(m), ..
        }) => format!("; configuration refused: {m}"),
        _ => String::new(),
    };
    {
        let inbox = inbox.clone();
        std::thread::Builder::new()
            .name("umv-accept".into())
            .spawn(move || control::serve(listener, inbox))?;
    }
    if let Some(l) = metrics {
        stats::serve_metrics(l, inbox.clone())?;
    }
    let stats_dir = args.stats_dir.clone().unwrap_or_else(|| {
        if args.socket == std::path::Path::new(crate::proto::DEFAULT_SOCKET) {
            PathBuf::from("/run/umacvlan/net")
        } else {
            let mut p = args.socket.clone().into_os_string();
            p.push(".net");
            PathBuf::from(p)
        }
    });
    let tree_stop = stats::run_tree(stats_dir.clone(), inbox.clone())?;
    tracing::info!(socket = %args.socket.display(), workers, "umacvlan daemon ready");
    notifier.ready(&format!("{} macvlans{start_refusal}", mgr.config().len()));

    let epoll = Epoll::new()?;
    epoll.add(inbox.wake.as_raw_fd(), TOKEN_INBOX, Interest::READABLE)?;
    epoll.add(sig_rx.as_raw_fd(), TOKEN_SIGNAL, Interest::READABLE)?;
    epoll.add(hup_rx.as_raw_fd(), TOKEN_RELOAD, Interest::READABLE)?;
    if let Some(fd) = groups.fd() {
        epoll.add(fd, TOKEN_GROUPS, Interest::READABLE)?;
    }
    let mut group_pacer = group_refresh::Pacer::default();
    // Link monitors: the daemon's namespace (lowers, TAPs left here), then each namespace
    // holding a TAP or a lower moved there.
    #[allow(clippy::type_complexity)]
    let mut monitors: Vec<Option<(Option<NetnsId>, Option<NetnsHandle>, LinkMonitor)>> = Vec::new();
    let own = LinkMonitor::open()?;
    epoll.add(own.as_raw_fd(), TOKEN_MONITOR, Interest::READABLE)?;
    monitors.push(Some((None, None, own)));
    if let Some(w) = state_writer.as_mut() {
        w.assume_saved(mgr.config());
    }
    // A write that failed is tried again on the next turn.
    let mut unsaved = false;
    let mut events = Events::with_capacity(16);
    let mut last_poll = std::time::Instant::now();
    let mut poll_every = MC_POLL;
    let mut link_events = Vec::new();
    let mut unwatchable = std::collections::HashSet::new();
    loop {
        // Link-layer groups have no netlink event, so multicast lists are polled every
        // `poll_every` whatever else happens — and only while there is something to poll: a
        // daemon without macvlans sleeps until asked.
        let timeout = mgr.has_ports().then(|| {
            let poll = poll_every.saturating_sub(last_poll.elapsed());
            if groups.pending() {
                poll.min(group_pacer.wait())
            } else {
                poll
            }
        });
        let timeout = match (timeout, notifier.watchdog_due_in()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        epoll.wait(&mut events, timeout).or_else(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        let ready: Vec<u64> = events.iter().map(|e| e.token).collect();
        let mut stop = false;
        // Answers wait until the state file holding their changes is durable (below).
        let mut answers = Vec::new();
        // The number the manager gave each request (see `Manager::flush`).
        let mut ops: Vec<Option<u64>> = Vec::new();
        // Whether the configuration may have changed this turn: only then is it rebuilt and
        // compared with the saved one (an O(N) walk; the stats tree asks for a show every
        // second, and the multicast poll runs twice a second).
        let mut touched = false;
        for t in &ready {
            match *t {
                TOKEN_INBOX => {
                    for (req, reply) in inbox.take() {
                        touched |= matches!(
                            req,
                            crate::proto::Request::LinkAdd(_)
                                | crate::proto::Request::LinkSet(_)
                                | crate::proto::Request::LinkDel { .. }
                                | crate::proto::Request::Reload
                        );
                        let mut op = None;
                        let r = reply.apply(|| match (req, config_file.as_mut()) {
                            (crate::proto::Request::Reload, Some(c)) => {
                                reload(&mut mgr, c, Some(&notifier))
                            }
                            (crate::proto::Request::Reload, None) => {
                                crate::proto::Response::Error {
                                    errno: libc::ENOENT,
                                    message: Some("the daemon was started without --config".into()),
                                }
                            }
                            (req, _) => {
                                let (o, r) = mgr.handle_deferred(req);
                                op = Some(o);
                                r
                            }
                        });
                        answers.push((reply, r));
                        ops.push(op);
                    }
                }
                TOKEN_SIGNAL => stop = true,
                TOKEN_GROUPS => groups.take_signal(),
                TOKEN_RELOAD => {
                    touched = true;
                    let mut buf = [0u8; 16];
                    while matches!(io::Read::read(&mut &hup_rx, &mut buf), Ok(n) if n > 0) {}
                    match config_file.as_mut() {
                        Some(c) => {
                            reload(&mut mgr, c, Some(&notifier));
                        }
                        None => tracing::info!("SIGHUP: no --config, nothing to reload"),
                    }
                }
                t => {
                    let i = (t - TOKEN_MONITOR) as usize;
                    let Some((ns, _, m)) = monitors.get_mut(i).and_then(Option::as_mut) else {
                        continue;
                    };
                    let ns = *ns;
                    link_events.clear();
                    let _ = m.recv_events(&mut link_events);
                    touched |= !link_events.is_empty();
                    mgr.link_events(ns, &mut link_events);
                }
            }
        }
        // Everything queued is applied: publish each changed port once, bring new TAPs up.
        for (op, late) in mgr.flush() {
            if let Some(i) = ops.iter().position(|o| *o == Some(op)) {
                answers[i].1 = late;
            }
        }
        notifier.watchdog_tick();
        if stop {
            for (reply, answer) in answers {
                let _ = reply.send(answer);
            }
            break;
        }
        let asked = groups.pending() && group_pacer.wait().is_zero();
        if mgr.has_ports() && (asked || last_poll.elapsed() >= poll_every) {
            let started = std::time::Instant::now();
            let ticket = groups.begin();
            mgr.poll_multicast();
            groups.finish(ticket);
            mgr.groups_refreshed();
            if asked {
                group_pacer.ran(started);
            }
            poll_every = MC_POLL.max(started.elapsed() * MC_POLL_SPACING);
            tracing::trace!(took = ?started.elapsed(), asked, "multicast lists re-read");
            last_poll = std::time::Instant::now();
        }
        // Watch every namespace that holds a TAP or a lower; forget namespaces no longer used.
        // A monitor keeps its slot (its epoll token), so a namespace coming or going touches
        // only its own; the set is compared by id, with no handle duplicated per turn.
        let wanted = mgr.watched_namespace_ids();
        let watched: std::collections::HashSet<NetnsId> = monitors
            .iter()
            .flatten()
            .filter_map(|(id, _, _)| *id)
            .collect();
        for &id in wanted.iter().filter(|id| !watched.contains(id)) {
            let Some(ns) = mgr.netns_handle(id) else {
                continue;
            };
            match LinkMonitor::open_in(Some(&ns)) {
                Ok(m) => {
                    let slot = match monitors.iter().position(Option::is_none) {
                        Some(free) => free,
                        None => {
                            monitors.push(None);
                            monitors.len() - 1
                        }
                    };
                    epoll.add(
                        m.as_raw_fd(),
                        TOKEN_MONITOR + slot as u64,
                        Interest::READABLE,
                    )?;
                    monitors[slot] = Some((Some(id), Some(ns), m));
                    touched = true;
                    // Catch changes made there between creating the TAP (or following the
                    // lower) and watching its namespace.
                    mgr.link_event(Some(id), LinkEvent::Overrun);
                }
                Err(e) => {
                    // E.g. EPERM under --no-netns. Said once per namespace.
                    if unwatchable.insert(Some(id)) {
                        tracing::warn!(
                            "cannot watch a namespace holding a TAP or a lower ({e}): \
                             changes made there are not followed"
                        );
                    }
                }
            }
        }
        for slot in monitors.iter_mut() {
            let gone = slot
                .as_ref()
                .is_some_and(|(id, _, _)| id.is_some_and(|i| !wanted.contains(&i)));
            if gone {
                if let Some((_, _, m)) = slot.take() {
                    let _ = epoll.delete(m.as_raw_fd());
                }
            }
        }
        // What the resyncs of newly watched namespaces found (no request is pending now).
        let _ = mgr.flush();
        mgr.sync_guardian();
        if let Some((w, p)) = state_writer
            .as_mut()
            .zip(args.state.as_ref())
            .filter(|_| touched || unsaved)
        {
            // One write for every change made since the last one, requests and followed
            // system changes alike (nothing when there was none).
            unsaved = true;
            match w.commit(mgr.config()) {
                Ok(()) => unsaved = false,
                Err(e) => {
                    tracing::error!("cannot write state {}: {e}", p.display());
                    for (_, answer) in answers.iter_mut() {
                        if matches!(answer, crate::proto::Response::Ok) {
                            *answer = crate::proto::Response::Error {
                                errno: e.raw_os_error().unwrap_or(libc::EIO),
                                message: Some(format!(
                                    "applied, but the state file {} could not be written: {e}",
                                    p.display()
                                )),
                            };
                        }
                    }
                }
            }
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }
    tracing::info!("terminating: removing macvlans");
    notifier.stopping();
    // Answer whoever is waiting, then take everything down.
    for (_, reply) in inbox.take() {
        let _ = reply.send(crate::proto::Response::Error {
            errno: libc::ESHUTDOWN,
            message: Some("daemon is shutting down".into()),
        });
    }
    mgr.shutdown();
    mgr.sync_guardian();
    tree_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    stats::StatsTree::new(stats_dir).remove();
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

/// Applies the configuration file, telling the log and, on a reload, systemd (RELOADING=1 …
/// READY=1 with the outcome in STATUS=); the answer for `umacvlan reload`.
fn reload(
    mgr: &mut Manager,
    c: &mut config::ConfigFile,
    notifier: Option<&notify::Notifier>,
) -> crate::proto::Response {
    if let Some(n) = notifier {
        n.reloading();
    }
    let r = c.apply(mgr);
    mgr.sync_guardian();
    let (status, response) = match r {
        Ok(summary) => {
            tracing::info!(file = %c.path().display(), "configuration applied: {summary}");
            (
                format!("{} macvlans; configuration: {summary}", mgr.config().len()),
                crate::proto::Response::Ok,
            )
        }
        Err(e) => {
            tracing::error!("configuration refused, nothing changed: {e}");
            (
                format!("configuration refused: {e}"),
                crate::proto::Response::Error {
                    errno: libc::EINVAL,
                    message: Some(e.to_string()),
                },
            )
        }
    };
    if let Some(n) = notifier {
        n.ready(&status);
    }
    response
}

/// Replays the state files; a macvlan that cannot be restored is reported and skipped.
/// Returns the generation of the snapshot read.
fn restore(mgr: &mut Manager, path: &std::path::Path) -> u64 {
    let loaded = state::load(path);
    if let Some(e) = &loaded.problem {
        tracing::error!("{e}");
    }
    let generation = loaded.generation;
    for mut a in loaded.links {
        let name = a.name.clone();
        let mut r = mgr.handle(crate::proto::Request::LinkAdd(a.clone()));
        if let crate::proto::Response::Error { errno, .. } = &r {
            if a.netns.is_some() && (*errno == libc::ENOENT || *errno == libc::ESRCH) {
                tracing::warn!(%name, "its namespace is gone; restoring it in the daemon's");
                a.netns = None;
                r = mgr.handle(crate::proto::Request::LinkAdd(a));
            }
        }
        match r {
            crate::proto::Response::Ok => tracing::info!(%name, "restored"),
            other => tracing::error!(%name, "could not restore: {other:?}"),
        }
    }
    generation
}
