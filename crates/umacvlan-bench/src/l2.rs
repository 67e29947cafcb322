//! The raw-frame test: a generator that offers minimum-size (60-byte) Ethernet frames on
//! endpoint A's interface as fast as it can (AF_PACKET, `sendmmsg` batches, qdisc bypassed),
//! and a sink on endpoint B's interface that counts the ones that arrive (AF_PACKET,
//! `recvmmsg` batches). Frames carry the IEEE local-experimental EtherType 0x88B5, a magic
//! and a per-run id, so nothing else is counted. Offered vs delivered shows what the switch
//! in between forwards and what it loses.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::Serialize;
use umacvlan_io::afpacket::{LowerOptions, LowerSocket, RxBatch};
use umacvlan_io::epoll::{Epoll, Events, Interest};
use umacvlan_io::netns::NetnsHandle;
use umacvlan_io::MacAddr;

/// IEEE 802 local experimental EtherType 1.
pub const ETHERTYPE: u16 = 0x88B5;
const MAGIC: &[u8; 4] = b"UMVB";
/// Frames per `sendmmsg`.
const TX_BATCH: usize = 64;

/// One interface in one namespace.
#[derive(Clone, Debug)]
pub struct Port {
    /// Network namespace name.
    pub netns: String,
    /// Interface index there.
    pub ifindex: u32,
    /// Its MAC address.
    pub mac: MacAddr,
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Sender side.
    pub tx: Port,
    /// Receiver side.
    pub rx: Port,
    /// How long to send.
    pub secs: f64,
    /// Frame length without FCS (60 is the minimum).
    pub frame_len: usize,
    /// How long the sink keeps counting after the generator stops.
    pub drain: Duration,
}

/// What happened.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Frames the generator handed to the kernel.
    pub sent: u64,
    /// Frames the sink counted (read from its socket).
    pub received: u64,
    /// Seconds the generator sent for.
    pub tx_secs: f64,
    /// Times the send buffer was full (`EAGAIN`/`ENOBUFS`): the path pushed back.
    pub tx_pushback: u64,
    /// Frames that reached B but that the sink's socket dropped itself, its buffer being
    /// full (the kernel's `PACKET_STATISTICS`): the switch delivered them, our counter could
    /// not keep up. Nothing else runs on B's interface during the test.
    pub sink_drops: u64,
}

impl Counts {
    /// Offered frames per second.
    pub fn offered_pps(&self) -> f64 {
        self.sent as f64 / self.tx_secs.max(1e-9)
    }
    /// Frames that reached B: counted by the sink, or dropped by its full socket.
    pub fn delivered(&self) -> u64 {
        self.received + self.sink_drops
    }
    /// Delivered frames per second (over the sending time).
    pub fn delivered_pps(&self) -> f64 {
        self.delivered() as f64 / self.tx_secs.max(1e-9)
    }
    /// Share of the offered frames that did not reach B, percent.
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * (self.sent.saturating_sub(self.delivered())) as f64 / self.sent as f64
    }
}

fn frame(spec: &Spec, run: u64) -> Vec<u8> {
    let mut f = vec![0u8; spec.frame_len.max(60)];
    f[0..6].copy_from_slice(&spec.rx.mac.0);
    f[6..12].copy_from_slice(&spec.tx.mac.0);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(MAGIC);
    f[18..26].copy_from_slice(&run.to_be_bytes());
    f
}

fn is_ours(data: &[u8], run: u64) -> bool {
    data.len() >= 26
        && data[12..14] == ETHERTYPE.to_be_bytes()
        && &data[14..18] == MAGIC
        && data[18..26] == run.to_be_bytes()
}

/// Runs one test: the sink starts first, then the generator sends for `spec.secs`, then the
/// sink counts for `spec.drain` more. `on_start` runs just before the first frame (to start
/// CPU meters), `on_stop` just after the drain.
pub fn run(spec: &Spec, on_start: impl FnOnce(), on_stop: impl FnOnce()) -> io::Result<Counts> {
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id());
    let rx_ns = NetnsHandle::from_name(&spec.rx.netns)?;
    let tx_ns = NetnsHandle::from_name(&spec.tx.netns)?;
    let rx = LowerSocket::open_in(
        Some(&rx_ns),
        spec.rx.ifindex,
        &LowerOptions {
            rcvbuf: Some(32 << 20),
            ..Default::default()
        },
    )?;
    let tx = LowerSocket::open_in(
        Some(&tx_ns),
        spec.tx.ifindex,
        &LowerOptions {
            sndbuf: Some(4 << 20),
            qdisc_bypass: true,
            ..Default::default()
        },
    )?;
    // Forget anything queued before the test.
    let _ = rx.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let sink = {
        let stop = stop.clone();
        std::thread::Builder::new().name("l2 sink".into()).spawn(
            move || -> io::Result<(u64, u64)> {
                let ep = Epoll::new()?;
                ep.add(rx.as_raw_fd(), 0, Interest::READABLE)?;
                let mut ev = Events::with_capacity(4);
                let mut batch = RxBatch::with_frame_capacity(64, 256);
                let mut got = 0u64;
                let _ = ready_tx.send(());
                loop {
                    let n = rx.recv_batch(&mut batch)?;
                    got += batch.iter().filter(|f| is_ours(f.data, run_id)).count() as u64;
                    if n == 0 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match ep.wait(&mut ev, Some(Duration::from_millis(20))) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                let drops = rx.stats().map(|s| u64::from(s.drops)).unwrap_or(0);
                Ok((got, drops))
            },
        )?
    };
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));

    let f = frame(spec, run_id);
    let frames: Vec<&[u8]> = (0..TX_BATCH).map(|_| f.as_slice()).collect();
    let ep = Epoll::new()?;
    ep.add(tx.as_raw_fd(), 0, Interest::WRITABLE)?;
    let mut ev = Events::with_capacity(4);
    let mut c = Counts::default();
    on_start();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(spec.secs);
    let mut result = Ok(());
    while Instant::now() < end {
        match tx.send_batch(&frames) {
            Ok(n) => c.sent += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(105) => {
                // Send buffer full (EAGAIN) or a device queue full (ENOBUFS): wait a little.
                c.tx_pushback += 1;
                let _ = ep.wait(&mut ev, Some(Duration::from_millis(1)));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    c.tx_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(spec.drain);
    stop.store(true, Ordering::SeqCst);
    let sunk = sink
        .join()
        .map_err(|_| io::Error::other("the sink thread panicked"))?;
    on_stop();
    result?;
    let (got, drops) = sunk?;
    c.received = got;
    c.sink_drops = drops;
    Ok(c)
}
