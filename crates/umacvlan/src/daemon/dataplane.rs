//! The data plane of one port: worker threads that move frames between the lower device and
//! the macvlans' TAPs using the engine's decisions, plus the broadcast-queue worker.
//!
//! - Workers read the current [`View`] (engine snapshot + the TAPs) lock-free through
//!   `ArcSwap`; the control thread publishes a new view after every change and wakes them.
//! - Each worker has its own lower socket (the sockets share a `PACKET_FANOUT_HASH` group, so a
//!   flow stays on one worker) and reads the TAPs whose id ≡ its index (mod workers).
//! - Counters are per worker ([`CounterTable`]), summed on read.
//! - Nothing spins: workers block in epoll, the broadcast worker on a condition variable.
//! - With vnet headers (`PACKET_VNET_HDR` on the lower, `IFF_VNET_HDR` on the TAPs) every
//!   packet is `[virtio_net_hdr][frame]`: checksum and GSO state pass through untouched, the
//!   engine sees the frame, TAPs and the lower get the whole packet.

use super::counters::CounterTable;
use super::group_refresh::{GroupRefresh, QuietGroups, HOLD_FRAMES, HOLD_LIMIT};
use super::monitor::{self, PortTap, Ring};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use umacvlan_core::engine::hash::port_mc_hash;
use umacvlan_core::engine::{
    BcQueue, BcSource, Defrag, DefragLimits, Defragmenter, Delivery, DevId, PortSnapshot,
    RxOutcome, TxOutcome,
};
use umacvlan_core::wire::MacAddr;
use umacvlan_io::afpacket::RxBatch;
use umacvlan_io::device::{LowerIo, UpperIo};
use umacvlan_io::epoll::{Epoll, EventFd, Events, Interest};

/// What the workers see: the engine snapshot and the TAP of each device (by [`DevId`]).
#[derive(Clone, Default)]
pub struct View {
    /// The engine's snapshot.
    pub snap: PortSnapshot,
    /// Upper device of each macvlan, indexed by id.
    pub uppers: Vec<Option<Arc<dyn UpperIo>>>,
}

impl View {
    fn upper(&self, id: DevId) -> Option<&Arc<dyn UpperIo>> {
        self.uppers.get(id.index()).and_then(|u| u.as_ref())
    }
}

/// The host path of a port with `hostaccess` macvlans (see [`umacvlan_io::hostaccess`]).
pub struct HostLink {
    /// Frames the lower's own host sends.
    pub rx: Arc<dyn LowerIo>,
    /// The way into the lower's receive path (to the host).
    pub inject: Arc<dyn UpperIo>,
}

type BcItem = (Vec<u8>, Option<BcSource>);

/// A group frame some macvlan's filter refused, held until the multicast lists are re-read
/// (see [`super::group_refresh`]).
struct Held {
    /// `None`: from the wire; else the macvlan that sent it (a bridge-mode local flood).
    from: Option<DevId>,
    /// The vnet header (if any) and the frame.
    packet: Vec<u8>,
    /// The macvlans that already had it.
    had: Vec<DevId>,
    ticket: u64,
    since: Instant,
}

struct Shared {
    /// Bytes of vnet header in front of every frame (the lower's and the TAPs' alike).
    hdr: usize,
    view: ArcSwap<View>,
    stop: AtomicBool,
    wakes: Vec<EventFd>,
    /// One table per worker, then one for the broadcast worker.
    counters: Vec<CounterTable>,
    bcq: Mutex<BcQueue<BcItem>>,
    bc_cv: Condvar,
    /// Per worker, then the broadcast worker: where each is, for [`Dataplane::retire`].
    quiescence: Vec<Quiescence>,
    /// Workers whose epoll failed and that were given a new one.
    worker_restarts: AtomicU64,
    /// Each worker's epoll fd (fault-injection tests replace it to make `epoll_wait` fail).
    epoll_fds: Vec<AtomicI32>,
    /// Where decisions go while someone monitors (one ring per worker, then the broadcast
    /// worker's).
    tap: Arc<PortTap>,
    /// Who re-reads multicast lists when a group frame was refused.
    refresh: Arc<GroupRefresh>,
    /// Refused group frames waiting for that re-read (the broadcast worker offers them again).
    held: Mutex<VecDeque<Held>>,
    /// Groups refused again after a re-read, which ask for no other for a while.
    quiet: QuietGroups,
    /// The host path, while some macvlan has `hostaccess on` (worker 0 reads it).
    host: ArcSwapOption<HostLink>,
    /// The lower sockets drop what the host path injects.
    host_filter: AtomicBool,
    /// Host copies of group frames a `hostaccess` macvlan sent to the wire, each waiting until
    /// it is due to see whether a hairpin switch reflects the frame: the lower's stack then
    /// receives the reflection, and the copy would be a second one.
    host_later: Mutex<VecDeque<(Instant, Vec<u8>)>>,
    /// How many are waiting (read on the receive path without the lock).
    host_later_n: AtomicUsize,
    /// When the wire last reflected a group frame of this port's macvlans (milliseconds since
    /// `born`, 0 never): a hairpin switch is there, and a host copy waits longer for it.
    hairpin_seen_ms: AtomicU64,
    born: Instant,
}

impl Shared {
    /// The wire reflected one of this port's group frames at `now`.
    fn hairpin_seen(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.born).as_millis();
        self.hairpin_seen_ms.store(
            u64::try_from(ms).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
    }

    /// Whether the wire reflected a group frame of this port within [`HAIRPIN_MEMORY`].
    fn hairpin_known(&self, now: Instant) -> bool {
        let seen = self.hairpin_seen_ms.load(Ordering::Relaxed);
        let ms = now.saturating_duration_since(self.born).as_millis();
        seen != 0 && ms.saturating_sub(u128::from(seen)) < HAIRPIN_MEMORY.as_millis()
    }
}

/// Where a worker is, as far as views go: it holds no view while `idle` (blocked waiting), and
/// `epoch` moves each time it finishes a round of work (and so drops the view it used).
#[derive(Default)]
struct Quiescence {
    idle: AtomicBool,
    epoch: AtomicU64,
}

impl Quiescence {
    fn waiting(&self, idle: bool) {
        self.idle.store(idle, Ordering::SeqCst);
    }

    fn round_done(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// A running data plane.
pub struct Dataplane {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The workers' lower sockets, for their drop statistics.
    lowers: Vec<Arc<dyn LowerIo>>,
    /// Frames the lower sockets dropped, summed (reading a socket's statistics resets them).
    socket_drops: std::sync::atomic::AtomicU64,
}

/// A TAP a worker reads.
struct Registered {
    upper: Arc<dyn UpperIo>,
    fd: RawFd,
    /// Its reads failed: no longer in the epoll set.
    dead: bool,
}

const TOKEN_LOWER: u64 = 0;
const TOKEN_WAKE: u64 = 1;
const TOKEN_UPPER: u64 = 2;
const TOKEN_HOST: u64 = u64::MAX;
/// Frames read from one TAP per wake-up before the worker looks at its other fds.
const TAP_BUDGET: usize = 64;
/// Largest packet a TAP hands us: a 64 KiB GSO frame, its vnet header and VLAN tags.
const MAX_PACKET: usize = 65536 + 64;
/// The TAP read arena: room for many small frames or a few large ones per `sendmmsg`.
const ARENA: usize = 4 * MAX_PACKET;
/// Frames per `recvmmsg`.
const RX_BATCH: usize = 32;

impl Dataplane {
    /// Starts one worker per lower socket, plus the broadcast worker. Group frames refused by a
    /// filter keep their first decision (nobody re-reads the lists).
    pub fn start(lowers: Vec<Arc<dyn LowerIo>>, view: View) -> io::Result<Dataplane> {
        Self::start_with_refresh(lowers, view, Arc::new(GroupRefresh::detached()))
    }

    /// [`Dataplane::start`], with `refresh` asked to re-read the multicast lists when a group
    /// frame is refused by a filter; the frame is offered again after that.
    pub fn start_with_refresh(
        lowers: Vec<Arc<dyn LowerIo>>,
        view: View,
        refresh: Arc<GroupRefresh>,
    ) -> io::Result<Dataplane> {
        let n = lowers.len();
        let hdr = lowers.first().map_or(0, |l| l.vnet_hdr_len());
        let shared = Arc::new(Shared {
            hdr,
            view: ArcSwap::from_pointee(view),
            stop: AtomicBool::new(false),
            wakes: (0..n).map(|_| EventFd::new()).collect::<io::Result<_>>()?,
            counters: (0..=n).map(|_| CounterTable::default()).collect(),
            bcq: Mutex::new(BcQueue::default()),
            bc_cv: Condvar::new(),
            quiescence: (0..=n).map(|_| Quiescence::default()).collect(),
            worker_restarts: AtomicU64::new(0),
            epoll_fds: (0..n).map(|_| AtomicI32::new(-1)).collect(),
            tap: Arc::new(PortTap::new(n + 1)),
            refresh,
            held: Mutex::new(VecDeque::new()),
            quiet: QuietGroups::default(),
            host: ArcSwapOption::empty(),
            host_filter: AtomicBool::new(false),
            host_later: Mutex::new(VecDeque::new()),
            host_later_n: AtomicUsize::new(0),
            hairpin_seen_ms: AtomicU64::new(0),
            born: Instant::now(),
        });
        let mut dp = Dataplane {
            shared,
            threads: Vec::new(),
            lowers: Vec::new(),
            socket_drops: std::sync::atomic::AtomicU64::new(0),
        };
        dp.spawn(lowers)?;
        Ok(dp)
    }

    fn spawn(&mut self, lowers: Vec<Arc<dyn LowerIo>>) -> io::Result<()> {
        let n = lowers.len();
        self.lowers = lowers.clone();
        for (i, lower) in lowers.into_iter().enumerate() {
            let mut w = Worker::new(i, n, lower, self.shared.clone())?;
            self.threads.push(
                std::thread::Builder::new()
                    .name(format!("umv-worker{i}"))
                    .spawn(move || w.run())?,
            );
        }
        let s = self.shared.clone();
        self.threads.push(
            std::thread::Builder::new()
                .name("umv-bcast".into())
                .spawn(move || bc_worker(s, n))?,
        );
        Ok(())
    }

    /// Stops the workers and starts them again on new lower sockets (as many as before, with
    /// the same options): the lower moved to another namespace. The view and the counters
    /// carry over.
    pub fn restart(&mut self, lowers: Vec<Arc<dyn LowerIo>>) -> io::Result<()> {
        assert_eq!(
            lowers.len(),
            self.shared.wakes.len(),
            "same number of workers"
        );
        self.shutdown();
        self.socket_drops();
        self.shared.stop.store(false, Ordering::SeqCst);
        if self.shared.host_filter.load(Ordering::SeqCst) {
            for l in &lowers {
                l.drop_host_injected(true)?;
            }
        }
        self.spawn(lowers)
    }

    /// Installs (`Some`) or removes the host path. Before the first one is in use, every
    /// lower socket is told to drop what it will inject (so nothing it puts into the lower's
    /// receive path comes back as a frame from the wire); after the last is gone, they take
    /// everything again. A socket that cannot be told fails the call and nothing changes.
    pub fn set_host(&self, host: Option<HostLink>) -> io::Result<()> {
        let on = host.is_some();
        if on && !self.shared.host_filter.load(Ordering::SeqCst) {
            for (i, l) in self.lowers.iter().enumerate() {
                if let Err(e) = l.drop_host_injected(true) {
                    for l in &self.lowers[..i] {
                        let _ = l.drop_host_injected(false);
                    }
                    return Err(e);
                }
            }
            self.shared.host_filter.store(true, Ordering::SeqCst);
        }
        // What the outgoing host path dropped stays counted.
        if let Some(old) = self.shared.host.load_full() {
            self.socket_drops
                .fetch_add(old.rx.take_drops(), Ordering::Relaxed);
        }
        self.shared.host.store(host.map(Arc::new));
        for w in &self.shared.wakes {
            let _ = w.notify();
        }
        if !on && self.shared.host_filter.load(Ordering::SeqCst) {
            // Injection ends with the last view holding the injector.
            self.wait_quiescent();
            for l in &self.lowers {
                let _ = l.drop_host_injected(false);
            }
            self.shared.host_filter.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Bytes of vnet header in front of every frame the workers move.
    pub fn vnet_hdr_len(&self) -> usize {
        self.shared.hdr
    }

    /// Whether a host path is installed.
    pub fn has_host(&self) -> bool {
        self.shared.host.load().is_some()
    }

    /// Frames the lower's packet sockets dropped so far (their receive buffers were full).
    /// The kernel's macvlan has no such queue; counted so that no frame goes unaccounted.
    pub fn socket_drops(&self) -> u64 {
        let mut new: u64 = self.lowers.iter().map(|l| l.take_drops()).sum();
        // The host path's socket too (hostaccess): the host's frames it had no room for.
        new += self
            .shared
            .host
            .load()
            .as_ref()
            .map_or(0, |h| h.rx.take_drops());
        self.socket_drops.fetch_add(new, Ordering::Relaxed) + new
    }

    /// Publishes a new view and wakes the workers so they pick up new or removed TAPs.
    pub fn publish(&self, view: View) {
        self.shared.view.store(Arc::new(view));
        for w in &self.shared.wakes {
            let _ = w.notify();
        }
    }

    /// The multicast lists were re-read and the views published: held group frames are
    /// offered again.
    pub fn groups_refreshed(&self) {
        let _q = self.shared.bcq.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.bc_cv.notify_all();
    }

    /// The monitor's side of this data plane (see [`monitor`]).
    pub fn monitor_tap(&self) -> &Arc<PortTap> {
        &self.shared.tap
    }

    /// The view in force.
    pub fn view(&self) -> Arc<View> {
        self.shared.view.load_full()
    }

    /// A device's counters, summed over the workers.
    pub fn counters(&self, id: DevId) -> umacvlan_core::engine::DevCounters {
        super::counters::sum(&self.shared.counters, id)
    }

    /// The port-wide counters.
    pub fn port_counters(&self) -> umacvlan_core::engine::PortCounters {
        super::counters::sum_port(&self.shared.counters)
    }

    /// Forgets a removed device's counters so a later device given the same id starts from
    /// zero. Call after publishing a view without it: this waits until no worker can still
    /// hold an older view (each has finished a round of work or is waiting), so no count for
    /// the old device can land after the reset.
    pub fn retire(&self, id: DevId) {
        self.wait_quiescent();
        for t in &self.shared.counters {
            t.reset(id);
        }
    }

    /// Waits (at most a second) until every worker has dropped the views it held when called.
    fn wait_quiescent(&self) {
        let q = &self.shared.quiescence;
        let start: Vec<u64> = q.iter().map(|w| w.epoch.load(Ordering::SeqCst)).collect();
        let deadline = Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let done = q.iter().zip(&start).all(|(w, e)| {
                w.idle.load(Ordering::SeqCst) || w.epoch.load(Ordering::SeqCst) != *e
            });
            if done || self.threads.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                tracing::warn!("a worker held an old view for over a second");
                return;
            }
            std::thread::yield_now();
        }
    }

    /// How many times a worker's epoll failed and was replaced.
    pub fn worker_restarts(&self) -> u64 {
        self.shared.worker_restarts.load(Ordering::Relaxed)
    }

    /// Each worker's current epoll fd. For fault-injection tests only.
    #[doc(hidden)]
    pub fn worker_epoll_fds(&self) -> Vec<RawFd> {
        self.shared
            .epoll_fds
            .iter()
            .map(|f| f.load(Ordering::SeqCst))
            .collect()
    }

    /// Stops and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for w in &self.shared.wakes {
            let _ = w.notify();
        }
        {
            let _q = self.shared.bcq.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.bc_cv.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    index: usize,
    workers: usize,
    lower: Arc<dyn LowerIo>,
    shared: Arc<Shared>,
    epoll: Epoll,
    /// The host path registered in this worker's epoll (worker 0 only).
    host_reg: Option<Arc<HostLink>>,
    host_batch: Option<RxBatch>,
    /// TAPs registered in this worker's epoll, kept alive until unregistered so their fd
    /// numbers cannot be reused under us. A TAP whose reads fail (deleted behind our back)
    /// stays here, out of the epoll set, until the view drops it.
    registered: HashMap<DevId, Registered>,
    defrag: Defragmenter,
    batch: RxBatch,
    rx: RxOutcome,
    tx: TxOutcome,
    /// Frames read from TAPs, back to back, until sent.
    arena: Vec<u8>,
    /// Frames in the arena bound for the wire: offset, length, bytes to count.
    wire: Vec<(usize, usize, u32)>,
    /// A reassembled datagram with a blank vnet header in front.
    whole: Vec<u8>,
    epoch: Instant,
}

impl Worker {
    fn new(
        index: usize,
        workers: usize,
        lower: Arc<dyn LowerIo>,
        shared: Arc<Shared>,
    ) -> io::Result<Worker> {
        let epoll = Self::new_epoll(index, &*lower, &shared)?;
        let mut w = Worker {
            index,
            workers,
            lower,
            shared,
            epoll,
            registered: HashMap::new(),
            host_reg: None,
            host_batch: None,
            defrag: Defragmenter::new(DefragLimits::default()),
            batch: RxBatch::new(RX_BATCH),
            rx: RxOutcome::default(),
            tx: TxOutcome::default(),
            arena: vec![0u8; ARENA],
            wire: Vec::with_capacity(TAP_BUDGET),
            whole: Vec::new(),
            epoch: Instant::now(),
        };
        w.sync_uppers();
        Ok(w)
    }

    /// An epoll set watching the lower and the wake-up eventfd (TAPs are added by
    /// [`sync_uppers`](Self::sync_uppers)).
    fn new_epoll(index: usize, lower: &dyn LowerIo, shared: &Shared) -> io::Result<Epoll> {
        let epoll = Epoll::new()?;
        epoll.add(lower.readiness_fd(), TOKEN_LOWER, Interest::READABLE)?;
        epoll.add(
            shared.wakes[index].as_raw_fd(),
            TOKEN_WAKE,
            Interest::READABLE,
        )?;
        shared.epoll_fds[index].store(epoll.as_raw_fd(), Ordering::SeqCst);
        Ok(epoll)
    }

    /// Replaces a failed epoll set with a new one holding the same fds, retrying until it can
    /// (or the data plane stops). Counted in [`Dataplane::worker_restarts`].
    fn restart_epoll(&mut self) {
        self.shared.worker_restarts.fetch_add(1, Ordering::Relaxed);
        while !self.shared.stop.load(Ordering::Relaxed) {
            match Self::new_epoll(self.index, &*self.lower, &self.shared) {
                Ok(e) => {
                    self.epoll = e;
                    self.registered.clear();
                    self.host_reg = None;
                    self.sync_uppers();
                    tracing::warn!(worker = self.index, "worker restarted with a new epoll set");
                    return;
                }
                Err(e) => {
                    tracing::error!(worker = self.index, "cannot make a new epoll set: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }

    /// Registers the TAPs this worker owns in the current view and drops the others.
    fn sync_uppers(&mut self) {
        if self.index == 0 {
            self.sync_host();
        }
        let view = self.shared.view.load();
        // Compared in place, with nothing built per publication: a port with many macvlans
        // is republished on every change of one of them.
        let wanted = |id: DevId| {
            view.uppers
                .get(id.index())
                .and_then(Option::as_ref)
                .filter(|_| id.index() % self.workers == self.index)
        };
        let stale: Vec<DevId> = self
            .registered
            .iter()
            .filter(|(id, r)| wanted(**id).is_none_or(|w| !Arc::ptr_eq(w, &r.upper)))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(r) = self.registered.remove(&id) {
                if !r.dead {
                    let _ = self.epoll.delete(r.fd);
                }
            }
        }
        for i in (self.index..view.uppers.len()).step_by(self.workers) {
            let id = DevId(i as u32);
            let Some(u) = wanted(id) else {
                continue;
            };
            if self.registered.contains_key(&id) {
                continue;
            }
            let fd = u.readiness_fd();
            if self
                .epoll
                .add(fd, TOKEN_UPPER + id.0 as u64, Interest::READABLE)
                .is_ok()
            {
                self.registered.insert(
                    id,
                    Registered {
                        upper: u.clone(),
                        fd,
                        dead: false,
                    },
                );
            }
        }
    }

    /// Worker 0 reads the host path's socket while there is one.
    fn sync_host(&mut self) {
        let want = self.shared.host.load_full();
        let same = match (&want, &self.host_reg) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if let Some(old) = self.host_reg.take() {
            let _ = self.epoll.delete(old.rx.readiness_fd());
        }
        if let Some(h) = want {
            match self
                .epoll
                .add(h.rx.readiness_fd(), TOKEN_HOST, Interest::READABLE)
            {
                Ok(()) => self.host_reg = Some(h),
                Err(e) => tracing::error!("host path not read: {e}"),
            }
        }
    }

    /// Hands what the lower's own host sent to the engine (`hostaccess`).
    fn drain_host(&mut self) {
        let Some(host) = self.host_reg.clone() else {
            return;
        };
        let batch = self
            .host_batch
            .get_or_insert_with(|| RxBatch::new(RX_BATCH));
        let shared = &*self.shared;
        loop {
            let n = match host.rx.recv_batch(batch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    tracing::warn!("host path receive failed: {e}");
                    0
                }
            };
            if n == 0 {
                return;
            }
            let view = shared.view.load_full();
            let ring = shared.tap.ring(self.index);
            let c = &shared.counters[self.index];
            for i in 0..n {
                let frame = batch.get(i);
                if frame.truncated() {
                    continue;
                }
                view.snap.from_host(frame.data, &mut self.rx);
                let mut failed = 0u16;
                for d in &self.rx.deliveries {
                    failed += u16::from(!deliver(&view, c, d, frame.packet));
                }
                if let Some(r) = ring.as_deref().filter(|_| !self.rx.deliveries.is_empty()) {
                    monitor::record_host(&shared.tap, r, frame.data, &self.rx, failed);
                }
            }
            if n < batch.capacity() {
                return;
            }
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        let shared = self.shared.clone();
        let q = &shared.quiescence[self.index];
        while !shared.stop.load(Ordering::Relaxed) {
            q.waiting(true);
            let waited = self.epoll.wait(&mut events, None);
            q.waiting(false);
            match waited {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Never silently gone: a new epoll set, counted, and on we go.
                    tracing::error!(worker = self.index, "epoll failed: {e}");
                    self.restart_epoll();
                    continue;
                }
            }
            for token in events.iter().map(|e| e.token) {
                // A frame that trips a bug costs its batch, not the worker: the engine is
                // pure, its snapshot immutable and counters atomic, so nothing is left half
                // changed. (The panic hook has logged the panic itself.)
                let handled =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match token {
                        TOKEN_LOWER => self.drain_lower(),
                        TOKEN_HOST => self.drain_host(),
                        TOKEN_WAKE => {
                            let _ = self.shared.wakes[self.index].drain();
                            self.sync_uppers();
                        }
                        t => self.drain_upper(DevId((t - TOKEN_UPPER) as u32)),
                    }));
                if handled.is_err() {
                    // Frames of the batch not yet sent to the wire go with it (counted as
                    // dropped), or a later flush would send them from a reused arena.
                    if let Some(id) = token.checked_sub(TOKEN_UPPER) {
                        let c = &self.shared.counters[self.index];
                        for (_, _, bytes) in self.wire.drain(..) {
                            c.tx(DevId(id as u32), bytes, false);
                        }
                    }
                    self.wire.clear();
                    tracing::error!(
                        worker = self.index,
                        "a panic while forwarding: batch dropped, worker goes on"
                    );
                }
            }
            q.round_done();
        }
    }

    fn drain_lower(&mut self) {
        loop {
            let n = match self.lower.recv_batch(&mut self.batch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(worker = self.index, "lower receive failed: {e}");
                    0
                }
            };
            if n == 0 {
                return;
            }
            let view = self.shared.view.load_full();
            // Checked once per batch: the monitor's whole cost while nobody listens.
            let ring = self.shared.tap.ring(self.index);
            let ring = ring.as_deref();
            for i in 0..n {
                let frame = self.batch.get(i);
                let shared = &*self.shared;
                if frame.truncated() {
                    shared.counters[self.index].malformed();
                    if let Some(r) = ring {
                        // Cut short by the socket: the engine never sees it.
                        let out = RxOutcome {
                            reason: Some(umacvlan_core::engine::RxReason::Malformed),
                            ..RxOutcome::default()
                        };
                        monitor::record_rx(&shared.tap, r, &view.snap, frame.data, &out, 0, false);
                    }
                    continue;
                }
                // Frames for groups may be IPv4 fragments to reassemble first.
                let data = frame.data;
                if data.len() >= 14 && data[0] & 1 != 0 {
                    let now = self.epoch.elapsed().as_nanos() as u64;
                    match self.defrag.process(data, now) {
                        Defrag::Whole => {
                            receive(shared, self.index, &view, frame.packet, &mut self.rx, ring)
                        }
                        Defrag::Complete(whole) => {
                            self.whole.clear();
                            self.whole.resize(shared.hdr, 0);
                            self.whole.extend_from_slice(whole);
                            receive(shared, self.index, &view, &self.whole, &mut self.rx, ring)
                        }
                        Defrag::Held | Defrag::Dropped => {}
                    }
                    let d = self.defrag.take_dropped();
                    if d > 0 {
                        shared.counters[self.index].defrag_dropped(d);
                    }
                } else {
                    receive(shared, self.index, &view, frame.packet, &mut self.rx, ring);
                }
            }
            if n < self.batch.capacity() {
                return;
            }
        }
    }

    /// Reads up to [`TAP_BUDGET`] frames a macvlan sent, delivers local copies at once and
    /// sends the frames bound for the wire in batches (`sendmmsg`): frames are read into an
    /// arena and go out together when it fills or the budget is spent.
    fn drain_upper(&mut self, id: DevId) {
        let Some(upper) = self.registered.get(&id).map(|r| r.upper.clone()) else {
            return;
        };
        let hdr = self.shared.hdr;
        let mut used = 0;
        let ring = self.shared.tap.ring(self.index);
        for _ in 0..TAP_BUDGET {
            if self.arena.len() - used < MAX_PACKET {
                self.flush_wire(id);
                used = 0;
            }
            let len = match upper.read(&mut self.arena[used..used + MAX_PACKET]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // Deleted behind our back (EBADFD) or broken: its fd would poll ready
                    // forever, so it leaves the epoll set now; the manager removes the macvlan
                    // when the link's deletion is reported.
                    self.unregister_dead(id, &e);
                    break;
                }
            };
            if len < hdr {
                continue;
            }
            let view = self.shared.view.load();
            let packet = &self.arena[used..used + len];
            let gso = umacvlan_io::afpacket::vnet_is_gso(&packet[..hdr]);
            view.snap
                .transmit_offloaded(id, &packet[hdr..], gso, &mut self.tx);
            let c = &self.shared.counters[self.index];
            let mut failed = 0u16;
            for d in &self.tx.deliveries {
                failed += u16::from(!deliver(&view, c, d, packet));
            }
            // hostaccess: the host's copy (for ToHost its only one, counted as the transmit).
            // A group frame's copy waits for a possible hairpin reflection.
            let host_ok = !self.tx.to_host
                || (self.tx.to_wire
                    && packet.get(hdr).is_some_and(|b| b & 1 == 1)
                    && to_host_later(&self.shared, packet))
                || self
                    .shared
                    .host
                    .load()
                    .as_ref()
                    .is_some_and(|h| h.inject.write(packet).is_ok());
            if let Some(r) = ring.as_deref() {
                monitor::record_tx(
                    &self.shared.tap,
                    r,
                    &view.snap,
                    id,
                    &packet[hdr..],
                    &self.tx,
                    failed,
                    self.tx.reason != Some(umacvlan_core::engine::TxReason::ToHost) || host_ok,
                );
            }
            if self.tx.lower_rx_dropped {
                c.lower_rx_dropped();
            }
            if let (true, Some(g)) = (self.tx.group_refused, group_of(&packet[hdr..])) {
                hold(
                    &self.shared,
                    Some(id),
                    g,
                    || packet.to_vec(),
                    &self.tx.deliveries,
                );
            }
            if self.tx.to_wire {
                self.wire.push((used, len, self.tx.tx_bytes));
                // Keep the next frame 8-byte aligned.
                used += (len + 7) & !7;
            } else if self.tx.tx_bytes > 0 {
                let ok = self.tx.reason != Some(umacvlan_core::engine::TxReason::ToHost) || host_ok;
                c.tx(id, self.tx.tx_bytes, ok);
            } else if self.tx.reason == Some(umacvlan_core::engine::TxReason::Malformed) {
                c.malformed();
            }
        }
        self.flush_wire(id);
    }

    /// Takes a TAP whose reads fail out of the epoll set (it stays registered, so a republish
    /// of the same view does not add it back).
    fn unregister_dead(&mut self, id: DevId, e: &io::Error) {
        if let Some(r) = self.registered.get_mut(&id).filter(|r| !r.dead) {
            r.dead = true;
            let _ = self.epoll.delete(r.fd);
            tracing::warn!(
                worker = self.index,
                dev = id.0,
                "TAP read failed ({e}): no longer read"
            );
        }
    }

    /// Tells the monitor that wire frame `i` of the arena could not be sent (`tx_dropped`).
    fn record_failed_send(&self, id: DevId, i: usize) {
        let Some(r) = self.shared.tap.ring(self.index) else {
            return;
        };
        let (o, l, bytes) = self.wire[i];
        let hdr = self.shared.hdr.min(l);
        let failed_send = TxOutcome {
            to_wire: true,
            tx_bytes: bytes,
            reason: Some(umacvlan_core::engine::TxReason::Wire),
            ..TxOutcome::default()
        };
        let view = self.shared.view.load();
        monitor::record_tx(
            &self.shared.tap,
            &r,
            &view.snap,
            id,
            &self.arena[o + hdr..o + l],
            &failed_send,
            0,
            false,
        );
    }

    /// Sends the frames collected in the arena and counts each one's transmit.
    ///
    /// A full send queue (`WouldBlock`) is back-pressure, not loss: the worker waits for room
    /// (reading no more TAP frames meanwhile) up to [`BACKPRESSURE_LIMIT`] per flush; only a
    /// lower that stays full that long, or any other error, costs the frame (`tx_dropped`).
    fn flush_wire(&mut self, id: DevId) {
        let c = &self.shared.counters[self.index];
        let mut start = 0;
        let mut waited = std::time::Duration::ZERO;
        // At most TAP_BUDGET frames per drain: the batch fits on the stack.
        let mut slices: [&[u8]; TAP_BUDGET] = [&[]; TAP_BUDGET];
        while start < self.wire.len() {
            let n = self.wire.len() - start;
            for (slot, (o, l, _)) in slices.iter_mut().zip(&self.wire[start..]) {
                *slot = &self.arena[*o..*o + *l];
            }
            match self.lower.send_batch(&slices[..n]) {
                Ok(sent) if sent > 0 => {
                    for (_, _, bytes) in &self.wire[start..start + sent] {
                        c.tx(id, *bytes, true);
                    }
                    start += sent;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && waited < BACKPRESSURE_LIMIT => {
                    let t = Instant::now();
                    let _ = self.lower.wait_writable(BACKPRESSURE_STEP);
                    waited += t.elapsed().max(std::time::Duration::from_micros(1));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => {
                    c.tx(id, self.wire[start].2, false);
                    self.record_failed_send(id, start);
                    start += 1;
                }
            }
        }
        self.wire.clear();
    }
}

/// Longest a worker waits for room on the lower in one flush before it drops frames.
const BACKPRESSURE_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);
/// One wait for room on the lower.
const BACKPRESSURE_STEP: std::time::Duration = std::time::Duration::from_millis(10);

/// Writes one delivery (unless refused) and counts it; returns whether it was written.
/// `packet` is the vnet header (if any) and the frame.
#[inline]
fn deliver(
    view: &View,
    c: &CounterTable,
    d: &umacvlan_core::engine::Delivery,
    packet: &[u8],
) -> bool {
    let written = !d.refused && view.upper(d.dev).is_some_and(|u| u.write(packet).is_ok());
    c.delivery(d, written);
    written
}

/// Runs one packet from the wire through the engine and carries out the outcome.
/// `ring`: where the decision is recorded while someone monitors.
fn receive(
    shared: &Shared,
    worker: usize,
    view: &View,
    packet: &[u8],
    rx: &mut RxOutcome,
    ring: Option<&Ring>,
) {
    let frame = &packet[shared.hdr.min(packet.len())..];
    if shared.host_later_n.load(Ordering::Relaxed) > 0 && frame.first().is_some_and(|b| b & 1 == 1)
    {
        reflection_seen(shared, frame);
    }
    view.snap.receive(frame, rx);
    if rx.from_port {
        shared.hairpin_seen(Instant::now());
    }
    let c = &shared.counters[worker];
    let mut failed = 0u16;
    for d in &rx.deliveries {
        failed += u16::from(!deliver(view, c, d, packet));
    }
    let mut queue_full = false;
    if let Some(src) = rx.enqueue {
        let cap = view.snap.bc_queue_len();
        let mut q = shared.bcq.lock().unwrap_or_else(|e| e.into_inner());
        if q.push((packet.to_vec(), src), cap).is_err() {
            c.lower_rx_dropped();
            queue_full = true;
        } else {
            shared.bc_cv.notify_one();
        }
    }
    if rx.reason == Some(umacvlan_core::engine::RxReason::Malformed) {
        c.malformed();
    }
    if let (true, Some(g)) = (rx.group_refused, group_of(frame)) {
        hold(shared, None, g, || packet.to_vec(), &rx.deliveries);
    }
    if let Some(r) = ring {
        monitor::record_rx(&shared.tap, r, &view.snap, frame, rx, failed, queue_full);
    }
}

/// How long a `hostaccess` macvlan's group frame waits before its host copy is injected while
/// no hairpin switch is known: a hairpin's reflection comes back well within it (tens of
/// microseconds on a bridge), unless the machine is loaded.
const HOST_ECHO_WAIT: std::time::Duration = std::time::Duration::from_millis(3);
/// The wait once the wire is known to reflect (the reflection is the host's copy, the
/// injected one only stands in for a lost reflection): long enough for a loaded machine.
const HOST_ECHO_WAIT_HAIRPIN: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a reflection seen counts as a hairpin switch being there.
const HAIRPIN_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);
/// Host copies waiting at most; beyond that they are injected at once.
const HOST_LATER_MAX: usize = 256;

/// Queues the host copy of a group frame a `hostaccess` macvlan sent to the wire; false when
/// the queue is full (the caller injects at once).
fn to_host_later(shared: &Shared, packet: &[u8]) -> bool {
    let mut q = shared.host_later.lock().unwrap_or_else(|e| e.into_inner());
    if q.len() >= HOST_LATER_MAX {
        return false;
    }
    let first = q.is_empty();
    let now = Instant::now();
    let wait = if shared.hairpin_known(now) {
        HOST_ECHO_WAIT_HAIRPIN
    } else {
        HOST_ECHO_WAIT
    };
    // Due times stay in order: a copy queued behind a longer wait is not due before it.
    let due = q.back().map_or(now + wait, |(t, _)| (*t).max(now + wait));
    q.push_back((due, packet.to_vec()));
    shared.host_later_n.store(q.len(), Ordering::Relaxed);
    drop(q);
    if first {
        // The broadcast worker injects it when due: give it a deadline.
        let _q = shared.bcq.lock().unwrap_or_else(|e| e.into_inner());
        shared.bc_cv.notify_all();
    }
    true
}

/// A group frame came in from the wire: if it is the reflection of one whose host copy is
/// waiting, the lower's stack has it now and the copy is dropped. The wire may have padded it
/// to 60 bytes.
fn reflection_seen(shared: &Shared, frame: &[u8]) {
    let hdr = shared.hdr;
    let mut q = shared.host_later.lock().unwrap_or_else(|e| e.into_inner());
    let same = |p: &Vec<u8>| {
        let sent = &p[hdr.min(p.len())..];
        frame.len() >= sent.len()
            && frame.len() <= sent.len().max(60)
            && frame[..sent.len()] == *sent
            && frame[sent.len()..].iter().all(|b| *b == 0)
    };
    if let Some(i) = q.iter().position(|(_, p)| same(p)) {
        q.remove(i);
        shared.host_later_n.store(q.len(), Ordering::Relaxed);
    }
}

/// The host copies that are due, and when the next of the others is.
fn take_host_due(shared: &Shared) -> (Vec<Vec<u8>>, Option<Instant>) {
    let mut q = shared.host_later.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let mut due = Vec::new();
    while q.front().is_some_and(|(t, _)| *t <= now) {
        due.extend(q.pop_front().map(|(_, p)| p));
    }
    shared.host_later_n.store(q.len(), Ordering::Relaxed);
    (due, q.front().map(|(t, _)| *t))
}

/// Holds a group frame that a filter refused until the multicast lists are re-read, unless
/// nobody re-reads them, the group is quiet, or enough frames are held already. `packet`
/// gives the frame (with its vnet header) only when it is held.
fn hold(
    shared: &Shared,
    from: Option<DevId>,
    group: MacAddr,
    packet: impl FnOnce() -> Vec<u8>,
    had: &[Delivery],
) {
    if !shared.refresh.served() || !shared.quiet.may_ask(port_mc_hash(group)) {
        return;
    }
    let mut held = shared.held.lock().unwrap_or_else(|e| e.into_inner());
    if held.len() >= HOLD_FRAMES {
        return;
    }
    let first = held.is_empty();
    held.push_back(Held {
        from,
        packet: packet(),
        had: had.iter().map(|d| d.dev).collect(),
        ticket: shared.refresh.ask(),
        since: Instant::now(),
    });
    drop(held);
    if first {
        // The broadcast worker may be waiting without a deadline: give it one.
        let _q = shared.bcq.lock().unwrap_or_else(|e| e.into_inner());
        shared.bc_cv.notify_all();
    }
}

/// The held frames whose re-read is over (or that waited too long), and when the next of the
/// others runs out of time.
fn take_held(shared: &Shared) -> (Vec<Held>, Option<Instant>) {
    let mut held = shared.held.lock().unwrap_or_else(|e| e.into_inner());
    let mut ready = Vec::new();
    let mut next = None::<Instant>;
    let mut i = 0;
    while i < held.len() {
        let h = &held[i];
        if shared.refresh.served_up_to(h.ticket) || h.since.elapsed() >= HOLD_LIMIT {
            ready.extend(held.remove(i));
        } else {
            let end = h.since + HOLD_LIMIT;
            next = Some(next.map_or(end, |n| n.min(end)));
            i += 1;
        }
    }
    (ready, next)
}

/// Offers a held frame again with the current view: the macvlans that accept it now and did
/// not have it get it; a group refused again goes quiet.
fn offer_again(
    shared: &Shared,
    view: &View,
    c: &CounterTable,
    held: &Held,
    (rx, tx): (&mut RxOutcome, &mut TxOutcome),
    out: &mut Vec<Delivery>,
    ring: Option<&Ring>,
) {
    let hdr = shared.hdr.min(held.packet.len());
    let frame = &held.packet[hdr..];
    out.clear();
    let refused = match held.from {
        None => {
            view.snap.receive(frame, rx);
            out.extend_from_slice(&rx.deliveries);
            match rx.enqueue {
                Some(src) => view.snap.flood_from_wire(frame, src, out),
                None => rx.group_refused,
            }
        }
        Some(id) => {
            // Only the local copies: the frame went to the wire when it was sent.
            let gso = umacvlan_io::afpacket::vnet_is_gso(&held.packet[..hdr]);
            view.snap.transmit_offloaded(id, frame, gso, tx);
            out.extend_from_slice(&tx.deliveries);
            tx.group_refused
        }
    };
    // Source-mode copies do not depend on group filters: the first pass made them (those of a
    // queued frame on the receive path, so they are not in `had`).
    out.retain(|d| {
        !held.had.contains(&d.dev)
            && view
                .snap
                .device(d.dev)
                .is_some_and(|s| s.mode != umacvlan_core::engine::Mode::Source)
    });
    let mut failed = 0u16;
    for d in out.iter() {
        failed += u16::from(!deliver(view, c, d, &held.packet));
    }
    if let (Some(r), false) = (ring, out.is_empty()) {
        let src = match held.from {
            None => rx.enqueue.flatten(),
            Some(id) => view.snap.device(id).map(|d| BcSource { id, mode: d.mode }),
        };
        monitor::record_flood(&shared.tap, r, frame, out, failed, src);
    }
    if let (true, Some(g)) = (refused, group_of(frame)) {
        shared.quiet.quiet(port_mc_hash(g));
    }
}

/// A frame's destination.
fn group_of(frame: &[u8]) -> Option<MacAddr> {
    Some(MacAddr(frame.get(..6)?.try_into().ok()?))
}

/// `macvlan_process_broadcast`: floods queued frames with the view current at processing time;
/// also offers held group frames again once the multicast lists were re-read.
fn bc_worker(shared: Arc<Shared>, index: usize) {
    let mut out = Vec::new();
    let mut rx = RxOutcome::default();
    let mut tx = TxOutcome::default();
    loop {
        let quiescence = &shared.quiescence[index];
        let (items, ready, host_due) = {
            let mut q = shared.bcq.lock().unwrap_or_else(|e| e.into_inner());
            quiescence.waiting(true);
            let (ready, host_due) = loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let (ready, next) = take_held(&shared);
                let (host_due, host_next) = take_host_due(&shared);
                if !q.is_empty() || !ready.is_empty() || !host_due.is_empty() {
                    break (ready, host_due);
                }
                let next = match (next, host_next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                q = match next {
                    Some(t) => {
                        let wait = t.saturating_duration_since(Instant::now());
                        let wait = wait.max(std::time::Duration::from_millis(1));
                        shared
                            .bc_cv
                            .wait_timeout(q, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => shared.bc_cv.wait(q).unwrap_or_else(|e| e.into_inner()),
                };
            };
            quiescence.waiting(false);
            (q.take_all(), ready, host_due)
        };
        if let Some(h) = shared.host.load().as_ref() {
            for p in &host_due {
                // Counted as sent when queued (the frame went to the wire too).
                let _ = h.inject.write(p);
            }
        }
        let view = shared.view.load_full();
        let c = &shared.counters[index];
        let ring = shared.tap.ring(index);
        let flooded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (packet, src) in items {
                out.clear();
                let frame = &packet[shared.hdr.min(packet.len())..];
                let refused = view.snap.flood_from_wire(frame, src, &mut out);
                let mut failed = 0u16;
                for d in &out {
                    failed += u16::from(!deliver(&view, c, d, &packet));
                }
                if let Some(r) = ring.as_deref() {
                    monitor::record_flood(&shared.tap, r, frame, &out, failed, src);
                }
                if let (true, Some(g)) = (refused, group_of(frame)) {
                    hold(&shared, None, g, move || packet, &out);
                }
            }
            for h in &ready {
                let outcomes = (&mut rx, &mut tx);
                offer_again(&shared, &view, c, h, outcomes, &mut out, ring.as_deref());
            }
        }));
        if flooded.is_err() {
            tracing::error!("a panic while flooding: batch dropped, broadcast worker goes on");
        }
        drop(view);
        quiescence.round_done();
    }
}
