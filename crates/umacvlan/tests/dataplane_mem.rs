//! The data plane on the in-memory backend: no root, real threads, real engine.

use std::sync::Arc;
use std::time::Duration;
use umacvlan::daemon::dataplane::{Dataplane, View};
use umacvlan_core::engine::*;
use umacvlan_core::wire::{write_header, MacAddr};
use umacvlan_io::afpacket::PacketType as Pkt;
use umacvlan_io::mem::{LowerIo, MemLower, MemUpper, MemUpperHandle, UpperIo};

const EXT: MacAddr = MacAddr([2, 0xee, 0, 0, 0, 1]);
const T: Duration = Duration::from_secs(2);

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 1, n])
}

fn frame(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    write_header(&mut f, dst, src, 0x88b5);
    f[14] = tag;
    f
}

struct Lab {
    port: Port,
    ids: Vec<DevId>,
    uppers: Vec<MemUpperHandle>,
    upper_ios: Vec<Arc<dyn UpperIo>>,
}

fn lab(modes: &[Mode]) -> Lab {
    let mut port = Port::create(LowerState::ethernet(
        2,
        "eth0",
        MacAddr([2, 0, 0, 0, 0, 1]),
        1500,
    ))
    .unwrap();
    let mut ids = Vec::new();
    let mut uppers = Vec::new();
    let mut upper_ios: Vec<Arc<dyn UpperIo>> = Vec::new();
    for (i, m) in modes.iter().enumerate() {
        let req = NewDevice {
            name: format!("mv{i}"),
            mac: Some(mac(i as u8 + 1)),
            mtu: None,
            attrs: MacvlanAttrs {
                mode: Some(m.bits()),
                ..Default::default()
            },
        };
        let id = port.add_device(&req, 0).unwrap();
        port.open(id).unwrap();
        ids.push(id);
        let (u, h) = MemUpper::new().unwrap();
        uppers.push(h);
        upper_ios.push(Arc::new(u));
    }
    Lab {
        port,
        ids,
        uppers,
        upper_ios,
    }
}

fn view(l: &Lab) -> View {
    let mut uppers = vec![None; l.port.snapshot().id_bound()];
    for (id, u) in l.ids.iter().zip(&l.upper_ios) {
        uppers[id.index()] = Some(u.clone());
    }
    View {
        snap: l.port.snapshot(),
        uppers,
    }
}

#[test]
fn frames_flow_between_wire_and_taps_with_kernel_counters() {
    let l = lab(&[Mode::Bridge, Mode::Bridge, Mode::Vepa]);
    let (lower, wire) = MemLower::new().unwrap();
    let lower: Arc<dyn LowerIo> = Arc::new(lower);
    let dp = Dataplane::start(vec![lower], view(&l)).unwrap();

    // Wire → mv1 (unicast).
    wire.inject(&frame(mac(2), EXT, 1), Pkt::OtherHost);
    let got = l.uppers[1].wait_delivered(1, T);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][14], 1);

    // Wire → broadcast: through the queue to all three.
    wire.inject(&frame(MacAddr::BROADCAST, EXT, 2), Pkt::Broadcast);
    for u in &l.uppers {
        let got = u.wait_delivered(1, T);
        assert_eq!(got.len(), 1, "broadcast copy");
        assert_eq!(got[0][14], 2);
    }

    // mv0 → mv1 (bridge, local): never on the wire.
    l.uppers[0].inject(&frame(mac(2), mac(1), 3));
    let got = l.uppers[1].wait_delivered(1, T);
    assert_eq!(got[0][14], 3);

    // mv2 (vepa) → mv1: to the wire only.
    l.uppers[2].inject(&frame(mac(2), mac(3), 4));
    let sent = wire.wait_sent(1, T);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][14], 4);
    std::thread::sleep(Duration::from_millis(50));
    assert!(l.uppers[1].take_delivered().is_empty());

    let c1 = dp.counters(l.ids[1]);
    assert_eq!((c1.rx_packets, c1.rx_bytes, c1.rx_multicast), (3, 180, 1));
    let c0 = dp.counters(l.ids[0]);
    assert_eq!((c0.tx_packets, c0.tx_bytes), (1, 60));
    let c2 = dp.counters(l.ids[2]);
    assert_eq!((c2.tx_packets, c2.rx_packets), (1, 1));
    dp.stop();
}

#[test]
fn full_broadcast_queue_counts_on_the_lower() {
    let mut l = lab(&[Mode::Vepa]);
    l.port
        .change(
            l.ids[0],
            &MacvlanAttrs {
                bcqueuelen: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    for i in 0..5 {
        wire.inject(&frame(MacAddr::BROADCAST, EXT, i), Pkt::Broadcast);
    }
    let deadline = std::time::Instant::now() + T;
    while dp.port_counters().lower_rx_dropped < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dp.port_counters().lower_rx_dropped, 5);
    assert!(l.uppers[0].take_delivered().is_empty());
    dp.stop();
}

#[test]
fn republished_view_adds_and_removes_taps() {
    let l = lab(&[Mode::Bridge, Mode::Bridge]);
    let (lower, wire) = MemLower::new().unwrap();
    let mut v = view(&l);
    v.uppers[l.ids[1].index()] = None;
    let dp = Dataplane::start(vec![Arc::new(lower)], v).unwrap();
    // mv1 has no TAP yet: its frames are lost, counted as delivered-by-kernel-rules.
    l.uppers[1].inject(&frame(mac(1), mac(2), 9));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        l.uppers[0].take_delivered().is_empty(),
        "unregistered TAP is not read"
    );
    dp.publish(view(&l));
    let got = l.uppers[0].wait_delivered(1, T);
    assert_eq!(
        got.len(),
        1,
        "frame queued in the TAP is read once registered"
    );
    drop(wire);
    dp.stop();
}

#[test]
fn batched_sends_count_each_frame_and_failures_as_drops() {
    let l = lab(&[Mode::Vepa]);
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    for i in 0..20 {
        l.uppers[0].inject(&frame(EXT, mac(1), i));
    }
    assert_eq!(wire.wait_sent(20, T).len(), 20);
    wire.fail_sends(Some(libc::ENOBUFS));
    for i in 0..5 {
        l.uppers[0].inject(&frame(EXT, mac(1), 100 + i));
    }
    let deadline = std::time::Instant::now() + T;
    while dp.counters(l.ids[0]).tx_dropped < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = dp.counters(l.ids[0]);
    assert_eq!((c.tx_packets, c.tx_bytes, c.tx_dropped), (20, 20 * 60, 5));
    dp.stop();
}

/// An upper whose delivery panics for frames tagged 0xee: a stand-in for any bug a frame
/// could trip while a worker forwards it.
struct PanickyUpper(Arc<dyn UpperIo>, Arc<std::sync::atomic::AtomicUsize>);

impl UpperIo for PanickyUpper {
    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, frame: &[u8]) -> std::io::Result<()> {
        if frame.get(14) == Some(&0xee) {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            panic!("tripped on purpose");
        }
        self.0.write(frame)
    }
    fn set_carrier(&self, on: bool) -> std::io::Result<()> {
        self.0.set_carrier(on)
    }
    fn readiness_fd(&self) -> std::os::fd::RawFd {
        self.0.readiness_fd()
    }
}

#[test]
fn a_panic_while_forwarding_costs_the_batch_not_the_worker() {
    let mut l = lab(&[Mode::Bridge]);
    let trips = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    l.upper_ios[0] = Arc::new(PanickyUpper(l.upper_ios[0].clone(), trips.clone()));
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    // Unicast (the lower's worker) and broadcast (the broadcast worker) both trip, then both
    // paths still forward.
    // One at a time, so no good frame shares a dropped batch.
    let tripped = |n: usize| {
        let deadline = std::time::Instant::now() + T;
        while trips.load(std::sync::atomic::Ordering::SeqCst) < n
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(trips.load(std::sync::atomic::Ordering::SeqCst), n);
    };
    wire.inject(&frame(mac(1), EXT, 0xee), Pkt::OtherHost);
    tripped(1);
    wire.inject(&frame(MacAddr::BROADCAST, EXT, 0xee), Pkt::Broadcast);
    tripped(2);
    wire.inject(&frame(mac(1), EXT, 1), Pkt::OtherHost);
    wire.inject(&frame(MacAddr::BROADCAST, EXT, 2), Pkt::Broadcast);
    let mut got: Vec<u8> = l.uppers[0]
        .wait_delivered(2, T)
        .iter()
        .map(|f| f[14])
        .collect();
    got.sort();
    assert_eq!(got, [1, 2]);
    dp.stop();
}

#[test]
fn drops_in_the_lowers_receive_queue_are_counted_and_kept() {
    let l = lab(&[Mode::Bridge]);
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    assert_eq!(dp.socket_drops(), 0);
    wire.drop_on_receive(3);
    assert_eq!(dp.socket_drops(), 3);
    // Reading the socket's statistics resets them; the data plane's sum does not.
    wire.drop_on_receive(2);
    assert_eq!(dp.socket_drops(), 5);
    assert_eq!(dp.socket_drops(), 5);
    dp.stop();
}

#[test]
fn a_panic_while_sending_to_the_wire_leaves_no_stale_batch() {
    // mv0 (bridge) sends one frame to the wire, then one to its sibling mv1 whose delivery
    // trips: the wire frame was still in the batch. It is dropped with the batch and counted;
    // it must never be sent later out of a reused arena.
    let mut l = lab(&[Mode::Bridge, Mode::Bridge]);
    let trips = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    l.upper_ios[1] = Arc::new(PanickyUpper(l.upper_ios[1].clone(), trips.clone()));
    let (lower, wire) = MemLower::new().unwrap();
    // Both queued before the worker starts: one drain reads them together.
    l.uppers[0].inject(&frame(EXT, mac(1), 1));
    l.uppers[0].inject(&frame(mac(2), mac(1), 0xee));
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    let deadline = std::time::Instant::now() + T;
    while trips.load(std::sync::atomic::Ordering::SeqCst) < 1
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(trips.load(std::sync::atomic::Ordering::SeqCst), 1);
    l.uppers[0].inject(&frame(EXT, mac(1), 3));
    let sent = wire.wait_sent(1, T);
    std::thread::sleep(Duration::from_millis(100));
    let mut tags: Vec<u8> = sent.iter().map(|f| f[14]).collect();
    tags.extend(wire.take_sent().iter().map(|f| f[14]));
    assert_eq!(tags, [3], "only the frame after the panic goes out, once");
    let c = dp.counters(l.ids[0]);
    assert_eq!(
        (c.tx_packets, c.tx_dropped),
        (1, 1),
        "the lost batch is counted"
    );
    dp.stop();
}

#[test]
fn a_full_lower_queue_holds_frames_back_instead_of_dropping_them() {
    let l = lab(&[Mode::Vepa]);
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    wire.fail_sends(Some(libc::EAGAIN));
    for i in 0..20 {
        l.uppers[0].inject(&frame(EXT, mac(1), i));
    }
    // Held well inside the worker's 0.5 s patience, even on a loaded machine.
    std::thread::sleep(Duration::from_millis(50));
    assert!(wire.take_sent().is_empty());
    wire.fail_sends(None);
    let sent = wire.wait_sent(20, T);
    let tags: Vec<u8> = sent.iter().map(|f| f[14]).collect();
    assert_eq!(tags, (0..20).collect::<Vec<u8>>(), "all of them, in order");
    // The worker counts a batch once its send has returned: wait for it.
    let deadline = std::time::Instant::now() + T;
    while dp.counters(l.ids[0]).tx_packets < 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = dp.counters(l.ids[0]);
    assert_eq!((c.tx_packets, c.tx_dropped), (20, 0));
    dp.stop();
}

/// An upper deleted behind the daemon's back: its fd polls ready forever and every read fails
/// (`EBADFD`, as a TAP whose device is gone).
struct DeadUpper {
    ready: umacvlan_io::epoll::EventFd,
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl UpperIo for DeadUpper {
    fn read(&self, _buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(std::io::Error::from_raw_os_error(libc::EBADFD))
    }
    fn write(&self, _frame: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EBADFD))
    }
    fn set_carrier(&self, _on: bool) -> std::io::Result<()> {
        Ok(())
    }
    fn readiness_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.ready.as_raw_fd()
    }
}

#[test]
fn a_tap_deleted_behind_our_back_leaves_the_epoll_set_at_once() {
    let mut l = lab(&[Mode::Bridge, Mode::Bridge]);
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ready = umacvlan_io::epoll::EventFd::new().unwrap();
    ready.notify().unwrap(); // readable, and never drained
    l.upper_ios[1] = Arc::new(DeadUpper {
        ready,
        reads: reads.clone(),
    });
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A republish of the same view (any change elsewhere) does not put it back.
    dp.publish(view(&l));
    std::thread::sleep(Duration::from_millis(200));
    let n = reads.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n <= 2, "the worker spun on a dead TAP: {n} reads");
    // The other macvlan is served as before.
    wire.inject(&frame(mac(1), EXT, 7), Pkt::OtherHost);
    assert_eq!(l.uppers[0].wait_delivered(1, T)[0][14], 7);
    dp.stop();
}

#[test]
fn a_worker_whose_epoll_fails_is_restarted_and_counted() {
    let l = lab(&[Mode::Bridge]);
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    let fd = dp.worker_epoll_fds()[0];
    let null = std::fs::File::open("/dev/null").unwrap();
    // The worker's next epoll_wait gets EINVAL: its fd is no epoll set any more.
    // SAFETY: both fds are open; `fd` is the worker's, replaced on purpose.
    assert!(unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } >= 0);
    // Wakes the wait already in progress (on the old set), so the next one fails.
    wire.inject(&frame(mac(1), EXT, 1), Pkt::OtherHost);
    assert_eq!(l.uppers[0].wait_delivered(1, T)[0][14], 1);
    let deadline = std::time::Instant::now() + T;
    while dp.worker_restarts() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dp.worker_restarts(), 1);
    // And it forwards on its new set: both ways.
    wire.inject(&frame(mac(1), EXT, 2), Pkt::OtherHost);
    assert_eq!(l.uppers[0].wait_delivered(1, T)[0][14], 2);
    l.uppers[0].inject(&frame(EXT, mac(1), 3));
    assert_eq!(wire.wait_sent(1, T)[0][14], 3);
    dp.stop();
}

/// An upper whose delivery of frames tagged 0x55 takes a while: a worker caught mid-frame.
struct SlowUpper(Arc<dyn UpperIo>);

impl UpperIo for SlowUpper {
    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, frame: &[u8]) -> std::io::Result<()> {
        if frame.get(14) == Some(&0x55) {
            std::thread::sleep(Duration::from_millis(300));
        }
        self.0.write(frame)
    }
    fn set_carrier(&self, on: bool) -> std::io::Result<()> {
        self.0.set_carrier(on)
    }
    fn readiness_fd(&self) -> std::os::fd::RawFd {
        self.0.readiness_fd()
    }
}

#[test]
fn a_reused_device_id_never_inherits_counts() {
    let mut l = lab(&[Mode::Bridge, Mode::Bridge]);
    l.upper_ios[1] = Arc::new(SlowUpper(l.upper_ios[1].clone()));
    let (lower, wire) = MemLower::new().unwrap();
    let dp = Dataplane::start(vec![Arc::new(lower)], view(&l)).unwrap();
    // The worker is inside mv1's delivery (holding the old view) while mv1 is removed and
    // a new macvlan takes its id.
    wire.inject(&frame(mac(2), EXT, 0x55), Pkt::OtherHost);
    std::thread::sleep(Duration::from_millis(50));
    let old = l.ids[1];
    l.port.remove_device(old).unwrap();
    let snap = l.port.snapshot();
    let mut uppers = vec![None; snap.id_bound().max(old.index() + 1)];
    uppers[l.ids[0].index()] = Some(l.upper_ios[0].clone());
    dp.publish(View { snap, uppers });
    dp.retire(old);
    let new = l
        .port
        .add_device(
            &NewDevice {
                name: "mvnew".into(),
                mac: Some(mac(9)),
                mtu: None,
                attrs: MacvlanAttrs {
                    mode: Some(Mode::Bridge.bits()),
                    ..Default::default()
                },
            },
            0,
        )
        .unwrap();
    assert_eq!(new, old, "the engine reuses the id");
    l.port.open(new).unwrap();
    let (u, _h) = MemUpper::new().unwrap();
    let snap = l.port.snapshot();
    let mut uppers = vec![None; snap.id_bound()];
    uppers[l.ids[0].index()] = Some(l.upper_ios[0].clone());
    uppers[new.index()] = Some(Arc::new(u) as Arc<dyn UpperIo>);
    dp.publish(View { snap, uppers });
    std::thread::sleep(Duration::from_millis(400));
    let c = dp.counters(new);
    assert_eq!((c.rx_packets, c.rx_bytes), (0, 0), "inherited: {c:?}");
    dp.stop();
}

/// A group frame refused by a filter is held until the lists are re-read, then offered again:
/// to the macvlan that joined meanwhile, not twice to the one that had it; refused again, the
/// group goes quiet (no second hold); and nothing is held when nobody re-reads.
#[test]
fn a_refused_group_frame_waits_for_the_re_read_and_is_offered_again_once() {
    use umacvlan::daemon::group_refresh::GroupRefresh;
    const G: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);
    let mut l = lab(&[Mode::Bridge, Mode::Bridge]);
    l.port.set_mc_list(l.ids[0], vec![G]).unwrap();
    let (lower, wire) = MemLower::new().unwrap();
    let lower: Arc<dyn LowerIo> = Arc::new(lower);
    let refresh = Arc::new(GroupRefresh::new().unwrap());
    let dp = Dataplane::start_with_refresh(vec![lower], view(&l), refresh.clone()).unwrap();

    // mv1 has joined G "in the system" but the view does not know yet.
    wire.inject(&frame(G, EXT, 1), Pkt::Multicast);
    assert_eq!(l.uppers[0].wait_delivered(1, T).len(), 1);
    let deadline = std::time::Instant::now() + T;
    while !refresh.pending() {
        assert!(std::time::Instant::now() < deadline, "no re-read asked for");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        l.uppers[1].take_delivered().is_empty(),
        "held, not delivered"
    );
    // The manager's part: re-read (mv1's list now has G), publish, say it is done.
    refresh.take_signal();
    let ticket = refresh.begin();
    l.port.set_mc_list(l.ids[1], vec![G]).unwrap();
    dp.publish(view(&l));
    refresh.finish(ticket);
    dp.groups_refreshed();
    let got = l.uppers[1].wait_delivered(1, T);
    assert_eq!((got.len(), got[0][14]), (1, 1), "offered again to mv1");
    std::thread::sleep(Duration::from_millis(50));
    assert!(l.uppers[0].take_delivered().is_empty(), "not twice to mv0");
    assert_eq!(dp.counters(l.ids[1]).rx_multicast, 1);

    // A group nobody joined: held, re-read finds nothing, goes quiet.
    const H: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0x09, 0x09, 0x09]);
    wire.inject(&frame(H, EXT, 2), Pkt::Multicast);
    while !refresh.pending() {
        assert!(std::time::Instant::now() < deadline, "no re-read asked for");
        std::thread::sleep(Duration::from_millis(5));
    }
    refresh.take_signal();
    let ticket = refresh.begin();
    refresh.finish(ticket);
    dp.groups_refreshed();
    std::thread::sleep(Duration::from_millis(30));
    wire.inject(&frame(H, EXT, 3), Pkt::Multicast);
    std::thread::sleep(Duration::from_millis(30));
    assert!(!refresh.pending(), "a quiet group asks for no re-read");
    for u in &l.uppers {
        assert!(u.take_delivered().is_empty());
    }
    dp.stop();

    // Nobody re-reads: the frame keeps its first decision at once.
    let l = lab(&[Mode::Bridge]);
    let (lower, wire) = MemLower::new().unwrap();
    let lower: Arc<dyn LowerIo> = Arc::new(lower);
    let dp = Dataplane::start(vec![lower], view(&l)).unwrap();
    wire.inject(&frame(G, EXT, 4), Pkt::Multicast);
    std::thread::sleep(Duration::from_millis(50));
    assert!(l.uppers[0].take_delivered().is_empty());
    dp.stop();
}
