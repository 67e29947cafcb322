//! Multicast lists that may lag the system, made to look immediate.
//!
//! A link-layer group added to a TAP (`ip maddr add`) raises no netlink event (tun's
//! `ndo_set_rx_mode` does nothing and nothing is notified; tracing programs that could watch
//! it are refused on kernels that lock them down), so the daemon learns it only by reading
//! `/proc/net/dev_mcast`. Reading it on a timer alone leaves a window in which a group frame
//! is filtered as if the group had not been joined. So a group frame that some macvlan's
//! filter refuses is held (a copy, a bounded number of them) while the manager re-reads the
//! lists, then offered again with the view current after the re-read: the macvlans that now
//! accept it get it, those that already had it do not get it twice.
//!
//! Tickets order the two sides: a frame takes ticket `t` when it asks; a re-read that starts
//! after that (it reads `wanted >= t` first) serves it, and `done` says which tickets are
//! served. Re-reads cost a read of `/proc/net/dev_mcast` per namespace, so the manager spaces
//! them by their own cost ([`Pacer`]); a group refused again after a re-read is left alone for
//! [`QUIET`] (a steady stream to a group a macvlan has not joined asks no more than that).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use umacvlan_io::epoll::EventFd;

/// How long a group refused again after a re-read asks for no further re-read.
pub const QUIET: Duration = Duration::from_millis(100);
/// Longest a frame is held when no re-read comes (the manager busy or stopping).
pub const HOLD_LIMIT: Duration = Duration::from_millis(1000);
/// Frames held per port at most; beyond that a refused frame keeps its first decision.
pub const HOLD_FRAMES: usize = 256;
/// The shortest gap between two re-reads asked for by frames.
const MIN_GAP: Duration = Duration::from_millis(5);
/// Re-reads asked for by frames take at most 1 / (1 + SPACING) of the manager's time.
const SPACING: u32 = 9;

/// The rendezvous between the data planes (which ask) and the manager (which re-reads).
pub struct GroupRefresh {
    wanted: AtomicU64,
    done: AtomicU64,
    /// The manager has been woken and not yet taken the request.
    signalled: AtomicBool,
    /// Readable when a re-read is asked for; `None`: nobody re-reads (an embedded data plane
    /// without a manager), so frames are never held.
    wake: Option<EventFd>,
}

impl GroupRefresh {
    /// One the manager serves: it watches [`GroupRefresh::fd`].
    pub fn new() -> io::Result<GroupRefresh> {
        Ok(GroupRefresh {
            wanted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            signalled: AtomicBool::new(false),
            wake: Some(EventFd::new()?),
        })
    }

    /// One nobody serves: refused frames keep their first decision.
    pub fn detached() -> GroupRefresh {
        GroupRefresh {
            wanted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            signalled: AtomicBool::new(false),
            wake: None,
        }
    }

    /// Whether someone re-reads when asked.
    pub fn served(&self) -> bool {
        self.wake.is_some()
    }

    /// The fd the manager polls, if served.
    pub fn fd(&self) -> Option<RawFd> {
        self.wake.as_ref().map(|w| w.as_raw_fd())
    }

    /// Data plane: asks for a re-read that starts from now on; returns the ticket it serves.
    pub fn ask(&self) -> u64 {
        let t = self.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.signalled.swap(true, Ordering::SeqCst) {
            if let Some(w) = &self.wake {
                let _ = w.notify();
            }
        }
        t
    }

    /// Whether the re-read serving ticket `t` is over.
    pub fn served_up_to(&self, t: u64) -> bool {
        self.done.load(Ordering::SeqCst) >= t
    }

    /// Manager: takes the wake-up (the request stays pending until [`GroupRefresh::begin`]).
    pub fn take_signal(&self) {
        if let Some(w) = &self.wake {
            let _ = w.drain();
        }
        self.signalled.store(false, Ordering::SeqCst);
    }

    /// Manager: whether a ticket is waiting for a re-read.
    pub fn pending(&self) -> bool {
        self.wanted.load(Ordering::SeqCst) > self.done.load(Ordering::SeqCst)
    }

    /// Manager: a re-read starts; pass the result to [`GroupRefresh::finish`] once the
    /// views it changed are published.
    pub fn begin(&self) -> u64 {
        self.wanted.load(Ordering::SeqCst)
    }

    /// Manager: the re-read that began with `ticket` is over and published.
    pub fn finish(&self, ticket: u64) {
        self.done.fetch_max(ticket, Ordering::SeqCst);
    }
}

/// Spaces the re-reads frames ask for by what they cost.
pub struct Pacer {
    next: Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            next: Instant::now(),
        }
    }
}

impl Pacer {
    /// How long until a re-read may run (zero: now).
    pub fn wait(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// A re-read that started at `started` just ended.
    pub fn ran(&mut self, started: Instant) {
        let now = Instant::now();
        let cost = now - started;
        self.next = now + (cost * SPACING).max(MIN_GAP);
    }
}

/// Per port: when each group (by the port hash of its address) may ask again.
pub struct QuietGroups {
    base: Instant,
    /// Milliseconds since `base` before which the group does not ask.
    until: [AtomicU64; 256],
}

impl Default for QuietGroups {
    fn default() -> Self {
        QuietGroups {
            base: Instant::now(),
            until: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl QuietGroups {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Whether a frame to the group with port hash `h` may ask for a re-read.
    pub fn may_ask(&self, h: u8) -> bool {
        self.until[h as usize].load(Ordering::Relaxed) <= self.now_ms()
    }

    /// The group was refused again after a re-read: it asks no more for [`QUIET`].
    pub fn quiet(&self, h: u8) {
        let t = self.now_ms() + QUIET.as_millis() as u64;
        self.until[h as usize].store(t, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_served_only_by_a_re_read_that_began_after_it() {
        let r = GroupRefresh::new().unwrap();
        let early = r.begin();
        let t = r.ask();
        assert!(r.pending());
        r.finish(early);
        assert!(
            !r.served_up_to(t),
            "a re-read begun before the ask does not serve it"
        );
        r.take_signal();
        let b = r.begin();
        r.finish(b);
        assert!(r.served_up_to(t));
        assert!(!r.pending());
    }

    #[test]
    fn the_manager_is_woken_once_per_signal() {
        let r = GroupRefresh::new().unwrap();
        r.ask();
        r.ask();
        let w = r.wake.as_ref().unwrap();
        assert_eq!(
            w.drain().unwrap(),
            1,
            "one wake-up for two asks before it was taken"
        );
        r.take_signal();
        r.ask();
        assert_eq!(w.drain().unwrap(), 1);
    }

    #[test]
    fn a_quiet_group_does_not_ask_and_others_still_do() {
        let q = QuietGroups::default();
        assert!(q.may_ask(7));
        q.quiet(7);
        assert!(!q.may_ask(7));
        assert!(q.may_ask(8));
    }

    #[test]
    fn re_reads_are_spaced_by_their_cost() {
        let mut p = Pacer::default();
        assert_eq!(p.wait(), Duration::ZERO);
        p.ran(Instant::now() - Duration::from_millis(10));
        let w = p.wait();
        assert!(
            w > Duration::from_millis(80) && w <= Duration::from_millis(100),
            "{w:?}"
        );
    }
}
