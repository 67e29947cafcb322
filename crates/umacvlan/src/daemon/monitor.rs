//! `monitor` and `capture`: frame decisions from the data plane to listening clients.
//!
//! - Each data plane owns a [`PortTap`]: a `listening` flag the workers read once per batch
//!   (one relaxed load — the whole cost while nobody listens) and, once someone has listened,
//!   one lossy ring per worker (`crossbeam_queue::ArrayQueue`, allocated by the subscriber,
//!   never by a worker). A worker pushes a fixed-size [`Record`]; a full ring counts the event
//!   as lost and forwarding goes on. Nothing on the forwarding path blocks or allocates.
//! - The [`MonitorHub`] knows every port's tap and its subscribers. While anyone subscribes,
//!   one pump thread drains the rings every few milliseconds, names the devices, and hands
//!   each subscriber the events its filter wants through a bounded queue (full: lost, counted).
//! - The records are plain [`FrameEvent`]s (plus receivers and frame bytes), so a second
//!   producer — eBPF programs writing the same struct to a ring buffer — can feed the pump.

use crate::proto::{Direction, MonitorEvent, MonitorLine, MonitorRequest};
use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use umacvlan_core::engine::event::{flag, Entry, FrameEvent, NO_DEV, NO_VLAN};
use umacvlan_core::engine::{rx_rule, tx_rule, Delivery, DevId, RxReason, TxReason};
use umacvlan_core::wire::MacAddr;

/// Frame bytes a record carries at most (capture's snap length).
pub const SNAP_MAX: usize = 256;
/// Receivers a record names.
pub const MAX_RECEIVERS: usize = 16;
/// Records per worker ring.
pub const RING_SLOTS: usize = 4096;
/// Lines queued per subscriber before its events count as lost.
pub const SUBSCRIBER_QUEUE: usize = 16384;
/// How often the pump drains the rings.
const PUMP_PERIOD: Duration = Duration::from_millis(10);

/// One decision as a worker records it.
#[derive(Clone, Copy)]
pub struct Record {
    /// The decision.
    pub ev: FrameEvent,
    /// The first receivers (`nrecv` of them).
    pub recv: [u32; MAX_RECEIVERS],
    /// How many of `recv` are set.
    pub nrecv: u8,
    /// Bytes of `data` captured.
    pub cap: u16,
    /// The frame's first bytes (when `flag::HAS_DATA`).
    pub data: [u8; SNAP_MAX],
}

/// One worker's ring.
pub struct Ring {
    q: ArrayQueue<Record>,
    lost: AtomicU64,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            q: ArrayQueue::new(RING_SLOTS),
            lost: AtomicU64::new(0),
        }
    }
}

/// Names of a port's devices, for the pump.
#[derive(Default, Clone)]
struct PortNames {
    lower: String,
    bc_queue_len: u32,
    devs: Vec<Option<String>>,
}

/// A port's side of the monitor: the flag and the rings its workers write.
pub struct PortTap {
    listening: AtomicBool,
    /// Someone wants frame bytes (capture).
    bytes: AtomicBool,
    rings: Box<[ArcSwapOption<Ring>]>,
    /// The lower's ifindex, for [`FrameEvent::port`].
    port: AtomicU32,
    names: Mutex<PortNames>,
}

impl PortTap {
    /// A tap for `producers` workers (the broadcast worker included), and one more ring for
    /// the eBPF programs' decisions ([`PortTap::fast_ring`]).
    pub fn new(producers: usize) -> PortTap {
        PortTap {
            listening: AtomicBool::new(false),
            bytes: AtomicBool::new(false),
            rings: (0..=producers).map(|_| ArcSwapOption::empty()).collect(),
            port: AtomicU32::new(0),
            names: Mutex::new(PortNames::default()),
        }
    }

    /// Worker `i`'s ring while someone listens: the one relaxed load when nobody does.
    #[inline]
    pub fn ring(&self, i: usize) -> Option<Arc<Ring>> {
        if !self.listening.load(Ordering::Relaxed) {
            return None;
        }
        self.rings.get(i).and_then(|r| r.load_full())
    }

    /// The ring the fast path's decisions go to while someone listens (after the workers').
    pub fn fast_ring(&self) -> Option<Arc<Ring>> {
        self.ring(self.rings.len() - 1)
    }

    /// Sets the names the pump prints (the manager calls it after every change; they are
    /// rebuilt only when they differ, as a change of one macvlan rarely renames any).
    pub fn set_names(
        &self,
        lower: &str,
        ifindex: u32,
        bc_queue_len: u32,
        devs: &[umacvlan_core::engine::Device],
    ) {
        self.port.store(ifindex, Ordering::Relaxed);
        let mut n = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let same = n.lower == lower
            && n.bc_queue_len == bc_queue_len
            && n.devs.iter().flatten().count() == devs.len()
            && devs
                .iter()
                .all(|d| n.devs.get(d.id.index()).and_then(Option::as_deref) == Some(&d.name));
        if same {
            return;
        }
        let mut names: Vec<Option<String>> = Vec::new();
        for d in devs {
            if names.len() <= d.id.index() {
                names.resize(d.id.index() + 1, None);
            }
            names[d.id.index()] = Some(d.name.clone());
        }
        *n = PortNames {
            lower: lower.to_string(),
            bc_queue_len,
            devs: names,
        };
    }

    fn start(&self, bytes: bool) {
        for r in self.rings.iter() {
            if r.load().is_none() {
                r.store(Some(Arc::new(Ring::new())));
            }
        }
        self.bytes.store(bytes, Ordering::Relaxed);
        self.listening.store(true, Ordering::Release);
    }

    fn stop(&self) {
        self.listening.store(false, Ordering::Relaxed);
        self.bytes.store(false, Ordering::Relaxed);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Pushes one decision into `ring`; a full ring counts it lost. `frame` is without vnet header.
#[inline]
fn push(tap: &PortTap, ring: &Ring, mut ev: FrameEvent, receivers: &[Delivery], frame: &[u8]) {
    let mut r = Record {
        ev,
        recv: [NO_DEV; MAX_RECEIVERS],
        nrecv: 0,
        cap: 0,
        data: [0; SNAP_MAX],
    };
    for (slot, d) in r
        .recv
        .iter_mut()
        .zip(receivers.iter().filter(|d| !d.refused))
    {
        *slot = d.dev.0;
        r.nrecv += 1;
    }
    if tap.bytes.load(Ordering::Relaxed) {
        let n = frame.len().min(SNAP_MAX);
        r.data[..n].copy_from_slice(&frame[..n]);
        r.cap = n as u16;
        ev.flags |= flag::HAS_DATA;
        r.ev = ev;
    }
    if ring.q.push(r).is_err() {
        ring.lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records a receive decision (see [`FrameEvent::received`]).
#[allow(clippy::too_many_arguments)]
pub fn record_rx(
    tap: &PortTap,
    ring: &Ring,
    snap: &umacvlan_core::engine::PortSnapshot,
    frame: &[u8],
    out: &umacvlan_core::engine::RxOutcome,
    failed: u16,
    queue_full: bool,
) {
    let ev = FrameEvent::received(
        tap.port.load(Ordering::Relaxed),
        now_ns(),
        frame,
        out,
        failed,
        queue_full,
        |id| snap.device(id).map(|d| d.mode),
    );
    let mut ev = ev;
    match out.reason {
        Some(RxReason::Reflected | RxReason::Unicast) => {
            if let Some(d) = out.deliveries.last() {
                ev.mode = snap.device(d.dev).map_or(0, |d| d.mode.bits() as u8);
            }
        }
        Some(RxReason::Flooded | RxReason::Queued) => {
            ev.mode = snap
                .lookup(MacAddr(ev.src))
                .map_or(0, |d| d.mode.bits() as u8);
        }
        _ => {}
    }
    push(tap, ring, ev, &out.deliveries, frame);
}

/// Records what the engine did with a frame the lower's own host sent (`hostaccess`).
pub fn record_host(
    tap: &PortTap,
    ring: &Ring,
    frame: &[u8],
    out: &umacvlan_core::engine::RxOutcome,
    failed: u16,
) {
    let mut ev = FrameEvent::received(
        tap.port.load(Ordering::Relaxed),
        now_ns(),
        frame,
        out,
        failed,
        false,
        |_| None,
    );
    ev.entry = Entry::Host as u8;
    push(tap, ring, ev, &out.deliveries, frame);
}

/// Records a transmit decision.
#[allow(clippy::too_many_arguments)]
pub fn record_tx(
    tap: &PortTap,
    ring: &Ring,
    snap: &umacvlan_core::engine::PortSnapshot,
    from: DevId,
    frame: &[u8],
    out: &umacvlan_core::engine::TxOutcome,
    failed: u16,
    sent: bool,
) {
    let mode = snap.device(from).map(|d| d.mode);
    let ev = FrameEvent::transmitted(
        tap.port.load(Ordering::Relaxed),
        now_ns(),
        from,
        mode,
        frame,
        out,
        failed,
        sent,
    );
    push(tap, ring, ev, &out.deliveries, frame);
}

/// Records a flood off the broadcast queue.
pub fn record_flood(
    tap: &PortTap,
    ring: &Ring,
    frame: &[u8],
    out: &[Delivery],
    failed: u16,
    src: Option<umacvlan_core::engine::BcSource>,
) {
    let port = tap.port.load(Ordering::Relaxed);
    let ev = FrameEvent::flooded(port, now_ns(), frame, out, failed, src.map(|s| s.mode));
    push(tap, ring, ev, out, frame);
}

/// Records a decision the fast path's programs made in the kernel, with the frame's first
/// `bytes` (empty unless someone captures).
pub fn record_fast(ring: &Ring, mut ev: FrameEvent, receivers: &[DevId], bytes: &[u8]) {
    ev.ts_ns = now_ns();
    let n = bytes.len().min(SNAP_MAX);
    if n > 0 {
        ev.flags |= flag::HAS_DATA;
    }
    let mut r = Record {
        ev,
        recv: [NO_DEV; MAX_RECEIVERS],
        nrecv: 0,
        cap: n as u16,
        data: [0; SNAP_MAX],
    };
    r.data[..n].copy_from_slice(&bytes[..n]);
    for (slot, d) in r.recv.iter_mut().zip(receivers) {
        *slot = d.0;
        r.nrecv += 1;
    }
    if ring.q.push(r).is_err() {
        ring.lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts `n` decisions a producer outside the workers lost before they reached `ring`.
pub fn record_lost(ring: &Ring, n: u64) {
    ring.lost.fetch_add(n, Ordering::Relaxed);
}

/// A producer of decisions outside the data plane's workers (the eBPF programs): told when
/// someone starts or stops listening, and asked to move what it has into the ports' rings on
/// every pump round.
pub trait ExternalSource: Send {
    /// Someone listens (`on`; `bytes`: someone captures frame bytes) or nobody does any more.
    fn set_listening(&mut self, on: bool, bytes: bool);
    /// Moves waiting decisions into the taps' rings.
    fn pump(&mut self);
}

struct Subscriber {
    req: MonitorRequest,
    tx: SyncSender<MonitorLine>,
    lost: AtomicU64,
}

/// Every port's tap and every listener.
#[derive(Default)]
pub struct MonitorHub {
    ports: Mutex<Vec<Weak<PortTap>>>,
    subs: Mutex<Vec<Arc<Subscriber>>>,
    pump: Mutex<Option<std::thread::JoinHandle<()>>>,
    source: Mutex<Option<Box<dyn ExternalSource>>>,
}

/// A listener's end: lines to send, and the count of lost events. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<MonitorHub>,
    sub: Arc<Subscriber>,
    /// Lines for the client.
    pub rx: Receiver<MonitorLine>,
}

impl Subscription {
    /// Events lost so far for this listener.
    pub fn lost(&self) -> u64 {
        self.sub.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.sub);
    }
}

impl MonitorHub {
    /// An empty hub.
    pub fn new() -> Arc<MonitorHub> {
        Arc::new(MonitorHub::default())
    }

    /// Adds a second producer (the fast path's programs).
    pub fn set_source(&self, source: Box<dyn ExternalSource>) {
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    fn source_listening(&self, on: bool, bytes: bool) {
        if let Some(s) = self
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            s.set_listening(on, bytes);
        }
    }

    /// Adds a port's tap; it starts recording at once if someone listens.
    pub fn register(&self, tap: &Arc<PortTap>) {
        let subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        if !subs.is_empty() {
            tap.start(subs.iter().any(|s| s.req.snaplen > 0));
        }
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        ports.retain(|p| p.strong_count() > 0);
        ports.push(Arc::downgrade(tap));
    }

    fn taps(&self) -> Vec<Arc<PortTap>> {
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Starts streaming decisions matching `req`.
    pub fn subscribe(self: &Arc<Self>, req: MonitorRequest) -> Subscription {
        let (tx, rx) = sync_channel(SUBSCRIBER_QUEUE);
        let sub = Arc::new(Subscriber {
            req,
            tx,
            lost: AtomicU64::new(0),
        });
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(sub.clone());
        let bytes = subs.iter().any(|s| s.req.snaplen > 0);
        drop(subs);
        for t in self.taps() {
            t.start(bytes);
        }
        self.source_listening(true, bytes);
        let mut pump = self.pump.lock().unwrap_or_else(|e| e.into_inner());
        if pump.as_ref().is_none_or(|h| h.is_finished()) {
            let hub = self.clone();
            *pump = std::thread::Builder::new()
                .name("umv-monitor".into())
                .spawn(move || hub.run_pump())
                .ok();
        }
        Subscription {
            hub: self.clone(),
            sub,
            rx,
        }
    }

    fn unsubscribe(&self, sub: &Arc<Subscriber>) {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| !Arc::ptr_eq(s, sub));
        let (none, bytes) = (subs.is_empty(), subs.iter().any(|s| s.req.snaplen > 0));
        drop(subs);
        for t in self.taps() {
            if none {
                t.stop();
            } else {
                t.bytes.store(bytes, Ordering::Relaxed);
            }
        }
        self.source_listening(!none, bytes);
    }

    /// Drains the rings and fans out until nobody listens.
    fn run_pump(self: Arc<Self>) {
        loop {
            std::thread::sleep(PUMP_PERIOD);
            let subs: Vec<Arc<Subscriber>> =
                self.subs.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if subs.is_empty() {
                // Drain what is left so a later listener does not see stale events.
                for t in self.taps() {
                    for r in t.rings.iter().filter_map(|r| r.load_full()) {
                        while r.q.pop().is_some() {}
                        r.lost.store(0, Ordering::Relaxed);
                    }
                }
                let mut pump = self.pump.lock().unwrap_or_else(|e| e.into_inner());
                if self
                    .subs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
                {
                    *pump = None;
                    return;
                }
                continue;
            }
            if let Some(s) = self
                .source
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                s.pump();
            }
            for t in self.taps() {
                let names = t.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for r in t.rings.iter().filter_map(|r| r.load_full()) {
                    let lost = r.lost.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        for s in &subs {
                            s.lost.fetch_add(lost, Ordering::Relaxed);
                        }
                    }
                    while let Some(rec) = r.q.pop() {
                        let ev = describe(&rec, &names);
                        for s in &subs {
                            if !wanted(&s.req, &ev) {
                                continue;
                            }
                            let mut e = ev.clone();
                            if s.req.snaplen == 0 {
                                e.data = None;
                            } else if let Some(d) = &mut e.data {
                                d.truncate(2 * s.req.snaplen as usize);
                            }
                            match s.tx.try_send(MonitorLine::Event(Box::new(e))) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) => {
                                    s.lost.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TrySendError::Disconnected(_)) => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether a subscriber wants an event.
fn wanted(req: &MonitorRequest, ev: &MonitorEvent) -> bool {
    if req.drops && !ev.drop {
        return false;
    }
    let Some(dev) = &req.dev else {
        return true;
    };
    let sent = ev.dev.as_deref() == Some(dev.as_str());
    let got = ev.to.iter().any(|t| t == dev);
    match req.direction {
        Direction::Rx => got,
        Direction::Tx => sent,
        Direction::Both => sent || got,
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// An event with names and words.
fn describe(rec: &Record, names: &PortNames) -> MonitorEvent {
    let ev = &rec.ev;
    let name = |id: u32| -> String {
        names
            .devs
            .get(id as usize)
            .and_then(|n| n.clone())
            .unwrap_or_else(|| format!("#{id}"))
    };
    let to: Vec<String> = rec.recv[..rec.nrecv as usize]
        .iter()
        .map(|i| name(*i))
        .collect();
    let single = if ev.to != NO_DEV {
        name(ev.to)
    } else {
        String::new()
    };
    let (entry, reason, mut rule) = match ev.entry() {
        Some(Entry::Macvlan) => {
            let r = ev.tx_reason().unwrap_or(TxReason::Malformed);
            (
                "macvlan",
                r.name(),
                tx_rule(r, ev.mode(), &single, ev.copies as u32),
            )
        }
        Some(Entry::Host) => {
            let r = ev.rx_reason().unwrap_or(RxReason::Malformed);
            (
                "host",
                r.name(),
                rx_rule(r, None, &single, ev.copies as u32),
            )
        }
        Some(Entry::BcQueue) => (
            "bcqueue",
            RxReason::Flooded.name(),
            if ev.copies == 0 {
                rx_rule(RxReason::Flooded, ev.mode(), "", 0)
            } else {
                format!("broadcast queue: flooded to {} macvlans", ev.copies)
            },
        ),
        _ => {
            let r = ev.rx_reason().unwrap_or(RxReason::Malformed);
            (
                "lower",
                r.name(),
                rx_rule(r, ev.mode(), &single, ev.copies as u32),
            )
        }
    };
    if ev.flags & flag::QUEUE_FULL != 0 {
        rule = format!(
            "broadcast queue full (bcqueuelen {}): dropped",
            names.bc_queue_len
        );
    }
    if ev.flags & flag::TO_HOST != 0 && ev.tx_reason() != Some(TxReason::ToHost) {
        rule.push_str("; hostaccess: and to the host");
    }
    if ev.failed > 0 {
        rule.push_str(&format!("; {} copies not written (rx_errors)", ev.failed));
    }
    if ev.counters & umacvlan_core::engine::event::counter::TX_DROPPED != 0 {
        rule.push_str("; the send failed (tx_dropped)");
    }
    MonitorEvent {
        time_ns: ev.ts_ns,
        lower: names.lower.clone(),
        entry: entry.into(),
        dev: (ev.dev != NO_DEV).then(|| name(ev.dev)),
        src: MacAddr(ev.src),
        dst: MacAddr(ev.dst),
        ethertype: ev.ethertype,
        vlan: (ev.vlan != NO_VLAN).then_some(ev.vlan),
        len: ev.len,
        reason: reason.into(),
        reason_code: ev.reason,
        rule,
        to,
        copies: ev.copies,
        failed: ev.failed,
        counters: ev.counter_names().map(String::from).collect(),
        drop: ev.is_drop(),
        lower_stack: ev.flags & flag::LOWER_STACK != 0,
        to_wire: ev.flags & flag::TO_WIRE != 0,
        to_host: ev.flags & flag::TO_HOST != 0,
        data: (ev.flags & flag::HAS_DATA != 0).then(|| hex(&rec.data[..rec.cap as usize])),
    }
}

/// Streams a subscription to a client until it goes away: event lines as they come, and a
/// [`MonitorLine::Lost`] line whenever the count of lost events grows.
pub fn stream(
    sub: Subscription,
    out: &mut impl std::io::Write,
    peer: &std::os::unix::net::UnixStream,
) {
    use std::io::Read;
    let mut reported = 0;
    let mut buf = Vec::new();
    let mut scratch = [0u8; 256];
    loop {
        buf.clear();
        let first = sub.rx.recv_timeout(Duration::from_millis(200));
        match first {
            Ok(line) => {
                push_line(&mut buf, &line);
                // Whatever else is waiting goes out in the same write.
                while let Ok(line) = sub.rx.try_recv() {
                    push_line(&mut buf, &line);
                    if buf.len() > 1 << 16 {
                        break;
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Nothing to say: is the client still there? (It sends nothing; EOF means gone.)
                let _ = peer.set_read_timeout(Some(Duration::from_millis(1)));
                match (&*peer).read(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let lost = sub.lost();
        if lost > reported {
            reported = lost;
            push_line(&mut buf, &MonitorLine::Lost(lost));
        }
        if !buf.is_empty() && (out.write_all(&buf).is_err() || out.flush().is_err()) {
            return;
        }
    }
}

fn push_line(buf: &mut Vec<u8>, line: &MonitorLine) {
    if serde_json::to_writer(&mut *buf, line).is_ok() {
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umacvlan_core::engine::{PacketType, RxOutcome};

    fn frame() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn unicast_to(dev: u32) -> RxOutcome {
        RxOutcome {
            deliveries: vec![Delivery {
                dev: DevId(dev),
                pkt_type: PacketType::Host,
                bytes: 46,
                multicast: false,
                checked: false,
                refused: false,
            }],
            reason: Some(RxReason::Unicast),
            ..RxOutcome::default()
        }
    }

    fn port_of(names: &[&str]) -> umacvlan_core::engine::Port {
        use umacvlan_core::engine::{LowerState, NewDevice, Port};
        let lower = LowerState::ethernet(2, "eth0", MacAddr([2, 0, 0, 0, 0, 1]), 1500);
        let mut port = Port::create(lower).unwrap();
        for (i, n) in names.iter().enumerate() {
            let req = NewDevice {
                name: n.to_string(),
                mac: None,
                mtu: None,
                attrs: Default::default(),
            };
            port.add_device(&req, i as u64).unwrap();
        }
        port
    }

    /// The names follow the port: a macvlan added, removed or renamed, the lower renamed.
    #[test]
    fn names_follow_the_port() {
        use umacvlan_core::engine::DevId;
        let tap = PortTap::new(1);
        let names = |tap: &PortTap| tap.names.lock().unwrap().clone();
        let mut port = port_of(&["mv0", "mv1"]);
        tap.set_names("eth0", 2, 1000, port.devices());
        assert_eq!(
            names(&tap).devs,
            vec![Some("mv0".into()), Some("mv1".into())]
        );
        port.remove_device(DevId(0)).unwrap();
        tap.set_names("eth0", 2, 1000, port.devices());
        assert_eq!(names(&tap).devs, vec![None, Some("mv1".into())]);
        let mut renamed = port_of(&["mv0", "mvX"]);
        renamed.remove_device(DevId(0)).unwrap();
        tap.set_names("eth0", 2, 1000, renamed.devices());
        assert_eq!(names(&tap).devs, vec![None, Some("mvX".into())]);
        tap.set_names("eth9", 2, 7, renamed.devices());
        assert_eq!(
            (names(&tap).lower.as_str(), names(&tap).bc_queue_len),
            ("eth9", 7)
        );
    }

    /// Nobody listening: no ring; a full ring loses events (counted) instead of blocking.
    #[test]
    fn rings_exist_only_while_listened_and_overflow_is_counted() {
        let hub = MonitorHub::new();
        let tap = Arc::new(PortTap::new(2));
        let port = port_of(&["mv0", "mv1"]);
        tap.set_names("eth0", 2, 1000, port.devices());
        hub.register(&tap);
        assert!(tap.ring(0).is_none());
        let snap = umacvlan_core::engine::PortSnapshot::default();
        let sub = hub.subscribe(MonitorRequest::default());
        let ring = tap.ring(0).expect("a ring while someone listens");
        let out = unicast_to(1);
        for _ in 0..RING_SLOTS + 10 {
            record_rx(&tap, &ring, &snap, &frame(), &out, 0, false);
        }
        assert_eq!(ring.q.len(), RING_SLOTS);
        assert_eq!(ring.lost.load(Ordering::Relaxed), 10);
        // The pump drains the ring and reports the loss to the listener.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut got = 0;
        while got < RING_SLOTS && std::time::Instant::now() < deadline {
            if let Ok(MonitorLine::Event(e)) = sub.rx.recv_timeout(Duration::from_millis(100)) {
                assert_eq!(e.to, vec!["mv1".to_string()]);
                assert_eq!(e.rule, "unicast: to mv1");
                assert_eq!(e.lower, "eth0");
                got += 1;
            }
        }
        assert_eq!(got, RING_SLOTS);
        assert_eq!(sub.lost(), 10);
        drop(sub);
        assert!(
            tap.ring(0).is_none(),
            "the flag goes down with the last listener"
        );
    }

    /// A broadcast the full queue refused is a drop, named with the port's queue length.
    #[test]
    fn a_full_broadcast_queue_is_named_with_its_length() {
        let tap = PortTap::new(1);
        tap.set_names("eth0", 2, 1000, &[]);
        tap.start(false);
        let ring = tap.ring(0).unwrap();
        let snap = umacvlan_core::engine::PortSnapshot::default();
        let mut f = frame();
        f[..6].copy_from_slice(&[0xff; 6]);
        let out = RxOutcome {
            lower_stack: true,
            enqueue: Some(None),
            reason: Some(RxReason::Queued),
            ..RxOutcome::default()
        };
        record_rx(&tap, &ring, &snap, &f, &out, 0, true);
        let rec = ring.q.pop().unwrap();
        let names = tap.names.lock().unwrap().clone();
        let e = describe(&rec, &names);
        assert_eq!(e.rule, "broadcast queue full (bcqueuelen 1000): dropped");
        assert!(e.drop);
        assert_eq!(e.counters, vec!["lower_rx_dropped".to_string()]);
        assert_eq!(e.reason, "queued");
    }

    #[test]
    fn filters_by_device_direction_and_drops() {
        let ev = MonitorEvent {
            dev: Some("mv0".into()),
            to: vec!["mv1".into()],
            ..MonitorEvent::default()
        };
        let req = |dev: &str, direction, drops| MonitorRequest {
            dev: Some(dev.into()),
            direction,
            drops,
            snaplen: 0,
        };
        assert!(wanted(&req("mv0", Direction::Tx, false), &ev));
        assert!(!wanted(&req("mv0", Direction::Rx, false), &ev));
        assert!(wanted(&req("mv1", Direction::Rx, false), &ev));
        assert!(wanted(&req("mv1", Direction::Both, false), &ev));
        assert!(!wanted(&req("mv2", Direction::Both, false), &ev));
        assert!(!wanted(&req("mv1", Direction::Both, true), &ev));
    }
}
