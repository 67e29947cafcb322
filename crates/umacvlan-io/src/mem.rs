//! In-memory implementations of the data plane's device traits ([`MemLower`], [`MemUpper`]),
//! for root-less tests of daemon logic. The traits themselves are in [`crate::device`]; they
//! are re-exported here for existing users.
//!
//! The in-memory backends are queues with an eventfd that is readable exactly while frames
//! are queued, so they plug into the same epoll loop as the real fds. Each comes with a
//! test-side handle to inject frames and collect what the daemon sent.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::afpacket::{Membership, MembershipOps, MembershipSet, PacketType, RxBatch};
pub use crate::device::{LowerIo, UpperIo};
use crate::epoll::EventFd;

/// Locks, ignoring poisoning: a test that panicked while holding the lock must not turn every
/// later access into a second panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A queue whose eventfd is readable exactly while it is non-empty.
#[derive(Debug)]
struct ReadyQueue<T> {
    q: Mutex<VecDeque<T>>,
    ready: EventFd,
}

impl<T> ReadyQueue<T> {
    fn new() -> io::Result<Self> {
        Ok(ReadyQueue {
            q: Mutex::new(VecDeque::new()),
            ready: EventFd::new()?,
        })
    }

    fn push(&self, v: T) -> io::Result<()> {
        let mut q = lock(&self.q);
        q.push_back(v);
        // Under the lock, so a concurrent pop that empties the queue cannot reset the eventfd
        // after this notification.
        self.ready.notify()
    }

    /// Pops up to `max` items via `f`; resets readiness once empty.
    fn pop_with(&self, max: usize, mut f: impl FnMut(T) -> bool) -> io::Result<usize> {
        let mut q = lock(&self.q);
        let mut n = 0;
        while n < max {
            let Some(v) = q.pop_front() else { break };
            n += 1;
            if !f(v) {
                break;
            }
        }
        if q.is_empty() {
            self.ready.drain()?;
        }
        Ok(n)
    }

    fn len(&self) -> usize {
        lock(&self.q).len()
    }
}

/// A collection of sent frames with a condition variable for waiting tests.
#[derive(Debug, Default)]
struct Sink {
    frames: Mutex<Vec<Vec<u8>>>,
    cv: Condvar,
}

impl Sink {
    fn push(&self, f: &[u8]) {
        lock(&self.frames).push(f.to_vec());
        self.cv.notify_all();
    }

    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *lock(&self.frames))
    }

    fn wait(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.frames);
        while g.len() < count {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        std::mem::take(&mut *g)
    }
}

#[derive(Debug)]
struct LowerShared {
    rx: ReadyQueue<(Vec<u8>, PacketType)>,
    tx: Sink,
    memberships: Mutex<MembershipSet>,
    failing: Mutex<Vec<(Membership, i32)>>,
    send_errno: Mutex<Option<i32>>,
    drops: std::sync::atomic::AtomicU64,
}

/// An in-memory lower device. Create with [`MemLower::new`], which also returns the test's
/// [`MemLowerHandle`].
#[derive(Debug, Clone)]
pub struct MemLower(Arc<LowerShared>);

/// The test side of a [`MemLower`]: inject received frames, collect sent ones, inspect
/// memberships, inject failures.
#[derive(Debug, Clone)]
pub struct MemLowerHandle(Arc<LowerShared>);

impl MemLower {
    /// A new in-memory lower and its test handle.
    pub fn new() -> io::Result<(MemLower, MemLowerHandle)> {
        let s = Arc::new(LowerShared {
            rx: ReadyQueue::new()?,
            tx: Sink::default(),
            memberships: Mutex::new(MembershipSet::new()),
            failing: Mutex::new(Vec::new()),
            send_errno: Mutex::new(None),
            drops: std::sync::atomic::AtomicU64::new(0),
        });
        Ok((MemLower(s.clone()), MemLowerHandle(s)))
    }
}

impl MembershipOps for MemLower {
    fn add_membership(&self, m: Membership) -> io::Result<()> {
        if let Some(&(_, e)) = lock(&self.0.failing).iter().find(|(f, _)| *f == m) {
            return Err(io::Error::from_raw_os_error(e));
        }
        lock(&self.0.memberships).insert(m);
        Ok(())
    }

    fn drop_membership(&self, m: Membership) -> io::Result<()> {
        if let Some(&(_, e)) = lock(&self.0.failing).iter().find(|(f, _)| *f == m) {
            return Err(io::Error::from_raw_os_error(e));
        }
        // Like the kernel: dropping a membership that is not held succeeds and does nothing.
        lock(&self.0.memberships).remove(&m);
        Ok(())
    }
}

impl LowerIo for MemLower {
    fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.clear();
        self.0
            .rx
            .pop_with(batch.capacity(), |(f, t)| batch.push(&f, t))
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        if let Some(e) = *lock(&self.0.send_errno) {
            return Err(io::Error::from_raw_os_error(e));
        }
        self.0.tx.push(frame);
        Ok(())
    }

    fn readiness_fd(&self) -> RawFd {
        self.0.rx.ready.as_raw_fd()
    }

    fn take_drops(&self) -> u64 {
        self.0.drops.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl MemLowerHandle {
    /// Queues a frame as if the lower device received it.
    pub fn inject(&self, frame: &[u8], pkttype: PacketType) {
        self.0
            .rx
            .push((frame.to_vec(), pkttype))
            .expect("eventfd write cannot fail");
    }

    /// Frames injected but not yet received by the daemon.
    pub fn pending(&self) -> usize {
        self.0.rx.len()
    }

    /// Takes every frame the daemon has sent so far.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        self.0.tx.take()
    }

    /// Waits until at least `count` frames were sent (or `timeout`), then takes them all.
    pub fn wait_sent(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.0.tx.wait(count, timeout)
    }

    /// The memberships the daemon holds now.
    pub fn memberships(&self) -> MembershipSet {
        lock(&self.0.memberships).clone()
    }

    /// Makes adding or dropping `m` fail with `errno` from now on.
    pub fn fail_membership(&self, m: Membership, errno: i32) {
        lock(&self.0.failing).push((m, errno));
    }

    /// Clears injected membership failures.
    pub fn clear_membership_failures(&self) {
        lock(&self.0.failing).clear();
    }

    /// Counts `n` frames as dropped by the receive queue (a full socket buffer).
    pub fn drop_on_receive(&self, n: u64) {
        self.0
            .drops
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes every send fail with `errno` (`None`: succeed again).
    pub fn fail_sends(&self, errno: Option<i32>) {
        *lock(&self.0.send_errno) = errno;
    }
}

#[derive(Debug)]
struct UpperShared {
    from_user: ReadyQueue<Vec<u8>>,
    to_user: Sink,
    carrier: Mutex<bool>,
}

/// An in-memory upper device. Create with [`MemUpper::new`], which also returns the test's
/// [`MemUpperHandle`].
#[derive(Debug, Clone)]
pub struct MemUpper(Arc<UpperShared>);

/// The test side of a [`MemUpper`]: play the upper's user (send frames, collect delivered
/// ones) and observe the carrier.
#[derive(Debug, Clone)]
pub struct MemUpperHandle(Arc<UpperShared>);

impl MemUpper {
    /// A new in-memory upper (carrier on) and its test handle.
    pub fn new() -> io::Result<(MemUpper, MemUpperHandle)> {
        let s = Arc::new(UpperShared {
            from_user: ReadyQueue::new()?,
            to_user: Sink::default(),
            carrier: Mutex::new(true),
        });
        Ok((MemUpper(s.clone()), MemUpperHandle(s)))
    }
}

impl UpperIo for MemUpper {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = None;
        self.0.from_user.pop_with(1, |f| {
            // Like a TAP read: a frame longer than the buffer is cut.
            let k = f.len().min(buf.len());
            buf[..k].copy_from_slice(&f[..k]);
            n = Some(k);
            true
        })?;
        n.ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))
    }

    fn write(&self, frame: &[u8]) -> io::Result<()> {
        self.0.to_user.push(frame);
        Ok(())
    }

    fn set_carrier(&self, on: bool) -> io::Result<()> {
        *lock(&self.0.carrier) = on;
        Ok(())
    }

    fn readiness_fd(&self) -> RawFd {
        self.0.from_user.ready.as_raw_fd()
    }
}

impl MemUpperHandle {
    /// Queues a frame as if the upper's user sent it.
    pub fn inject(&self, frame: &[u8]) {
        self.0
            .from_user
            .push(frame.to_vec())
            .expect("eventfd write cannot fail");
    }

    /// Frames injected but not yet read by the daemon.
    pub fn pending(&self) -> usize {
        self.0.from_user.len()
    }

    /// Takes every frame delivered to the user so far.
    pub fn take_delivered(&self) -> Vec<Vec<u8>> {
        self.0.to_user.take()
    }

    /// Waits until at least `count` frames were delivered (or `timeout`), then takes them all.
    pub fn wait_delivered(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.0.to_user.wait(count, timeout)
    }

    /// The carrier as last set by the daemon.
    pub fn carrier(&self) -> bool {
        *lock(&self.0.carrier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epoll::{Epoll, Events, Interest};
    use umacvlan_core::wire::MacAddr;

    fn readable(fd: RawFd) -> bool {
        let ep = Epoll::new().unwrap();
        ep.add(fd, 1, Interest::READABLE).unwrap();
        let mut ev = Events::with_capacity(1);
        ep.wait(&mut ev, Some(Duration::ZERO)).unwrap() == 1
    }

    #[test]
    fn mem_lower_rx_tx_and_readiness() {
        let (lower, h) = MemLower::new().unwrap();
        let dyn_lower: &dyn LowerIo = &lower;
        let mut b = RxBatch::with_frame_capacity(2, 64);
        assert_eq!(dyn_lower.recv_batch(&mut b).unwrap(), 0);
        assert!(!readable(dyn_lower.readiness_fd()));
        for i in 0..3u8 {
            h.inject(&[i; 20], PacketType::Broadcast);
        }
        assert!(readable(dyn_lower.readiness_fd()));
        assert_eq!(dyn_lower.recv_batch(&mut b).unwrap(), 2);
        assert_eq!(b.get(1).data, &[1; 20]);
        assert!(readable(dyn_lower.readiness_fd()), "one frame still queued");
        assert_eq!(dyn_lower.recv_batch(&mut b).unwrap(), 1);
        assert_eq!(b.get(0).data, &[2; 20]);
        assert_eq!(b.get(0).pkttype, PacketType::Broadcast);
        assert!(!readable(dyn_lower.readiness_fd()));
        assert_eq!(h.pending(), 0);

        assert_eq!(dyn_lower.send_batch(&[&[1, 2], &[3]]).unwrap(), 2);
        dyn_lower.send(&[4]).unwrap();
        assert_eq!(h.take_sent(), vec![vec![1, 2], vec![3], vec![4]]);
        h.fail_sends(Some(libc::ENOBUFS));
        assert_eq!(
            dyn_lower.send(&[5]).unwrap_err().raw_os_error(),
            Some(libc::ENOBUFS)
        );
        assert!(dyn_lower.send_batch(&[&[5]]).is_err());
        h.fail_sends(None);

        // Another thread sends; wait_sent wakes up.
        let l2 = lower.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            l2.send(&[9]).unwrap();
        });
        assert_eq!(h.wait_sent(1, Duration::from_secs(5)), vec![vec![9]]);
        t.join().unwrap();
    }

    #[test]
    fn mem_lower_memberships() {
        let (lower, h) = MemLower::new().unwrap();
        let m1 = Membership::Unicast(MacAddr([2, 0, 0, 0, 0, 1]));
        let m2 = Membership::Multicast(MacAddr([1, 0, 0x5e, 0, 0, 1]));
        let mut cur = MembershipSet::new();
        let want: MembershipSet = [m1, m2].into_iter().collect();
        lower.apply_memberships(&mut cur, &want).unwrap();
        assert_eq!(h.memberships(), want);
        lower.drop_membership(Membership::Promisc).unwrap();
        assert_eq!(h.memberships(), want);
        h.fail_membership(m2, libc::EPERM);
        let e = lower
            .apply_memberships(&mut cur, &MembershipSet::new())
            .unwrap_err();
        assert_eq!(e.membership, m2);
        assert_eq!(cur, [m2].into_iter().collect());
        assert_eq!(
            h.memberships(),
            cur,
            "the handle agrees with what was applied"
        );
        h.clear_membership_failures();
        lower
            .apply_memberships(&mut cur, &MembershipSet::new())
            .unwrap();
        assert!(h.memberships().is_empty());
    }

    #[test]
    fn mem_upper_roundtrip() {
        let (up, h) = MemUpper::new().unwrap();
        let up: Box<dyn UpperIo> = Box::new(up);
        let mut buf = [0u8; 4];
        assert_eq!(
            up.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        h.inject(&[1, 2, 3, 4, 5, 6]);
        assert!(readable(up.readiness_fd()));
        assert_eq!(up.read(&mut buf).unwrap(), 4);
        assert_eq!(buf, [1, 2, 3, 4]);
        assert!(!readable(up.readiness_fd()));
        up.write(&[7, 7]).unwrap();
        assert_eq!(
            h.wait_delivered(1, Duration::from_secs(1)),
            vec![vec![7, 7]]
        );
        assert!(h.carrier());
        up.set_carrier(false).unwrap();
        assert!(!h.carrier());
        assert!(h.take_delivered().is_empty());
        assert_eq!(h.pending(), 0);
    }
}
