//! A small safe wrapper over epoll ([`Epoll`], [`Events`]) and eventfd ([`EventFd`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::sys;

/// What to wait for on a registered fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// Readable (`EPOLLIN`).
    pub const READABLE: Interest = Interest(libc::EPOLLIN as u32);
    /// Writable (`EPOLLOUT`).
    pub const WRITABLE: Interest = Interest(libc::EPOLLOUT as u32);
    /// Readable and writable.
    pub const BOTH: Interest = Interest((libc::EPOLLIN | libc::EPOLLOUT) as u32);

    /// The same interest, edge-triggered (`EPOLLET`).
    pub const fn edge(self) -> Interest {
        Interest(self.0 | libc::EPOLLET as u32)
    }

    /// The raw `EPOLL*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

/// An epoll instance. Tokens are caller-chosen `u64`s returned with each event.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with an integer argument.
        let fd = sys::owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the call; a stale or invalid `fd` makes the
        // kernel return EBADF, it cannot cause memory unsafety.
        sys::cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Registers `fd` with `token`.
    pub fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest.0)
    }

    /// Changes the token or interest of a registered `fd`.
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest.0)
    }

    /// Unregisters `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits for events into `events` (replacing its contents); `None` waits forever.
    /// Returns the number of events; an interrupted wait (`EINTR`) returns 0.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            // Round up so a 100 µs timeout does not become a busy 0 ms poll.
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
        };
        events.len = 0;
        // SAFETY: the pointer and capacity describe `events.buf`, whose elements are plain data
        // the kernel may overwrite.
        let r = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                events.buf.len() as libc::c_int,
                ms,
            )
        };
        match sys::cvt(r) {
            Ok(n) => {
                events.len = n as usize;
                Ok(events.len)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One readiness event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token the fd was registered with.
    pub token: u64,
    /// The raw `EPOLL*` bits.
    pub bits: u32,
}

impl Event {
    /// `EPOLLIN`.
    pub fn readable(&self) -> bool {
        self.bits & libc::EPOLLIN as u32 != 0
    }
    /// `EPOLLOUT`.
    pub fn writable(&self) -> bool {
        self.bits & libc::EPOLLOUT as u32 != 0
    }
    /// `EPOLLHUP` or `EPOLLERR`.
    pub fn hangup_or_error(&self) -> bool {
        self.bits & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
    }
}

/// A reusable buffer of epoll events (no allocation per wait).
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// Room for up to `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// Number of events from the last wait.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No events from the last wait.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events from the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|e| {
            // Copy out of the (packed on x86_64) struct before use.
            let (bits, token) = (e.events, e.u64);
            Event { token, bits }
        })
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A non-blocking, close-on-exec eventfd (counter mode).
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with counter 0.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with integer arguments.
        let fd = sys::owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, making the fd readable.
    pub fn notify(&self) -> io::Result<()> {
        match sys::write(&self.fd, &1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            // Counter saturated: it is readable already, which is all a notification means.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads and resets the counter; 0 if it was 0 (not readable).
    pub fn drain(&self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        match sys::read(&self.fd, &mut b) {
            Ok(_) => Ok(u64::from_ne_bytes(b)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_epoll() {
        let ep = Epoll::new().unwrap();
        let a = EventFd::new().unwrap();
        let b = EventFd::new().unwrap();
        ep.add(a.as_raw_fd(), 7, Interest::READABLE).unwrap();
        ep.add(b.as_raw_fd(), 9, Interest::READABLE).unwrap();
        let mut evs = Events::with_capacity(4);
        assert_eq!(ep.wait(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
        b.notify().unwrap();
        b.notify().unwrap();
        assert_eq!(ep.wait(&mut evs, Some(Duration::from_secs(1))).unwrap(), 1);
        let ev = evs.iter().next().unwrap();
        assert_eq!(ev.token, 9);
        assert!(ev.readable() && !ev.hangup_or_error());
        assert_eq!(b.drain().unwrap(), 2);
        assert_eq!(b.drain().unwrap(), 0);
        assert_eq!(
            ep.wait(&mut evs, Some(Duration::from_millis(1))).unwrap(),
            0
        );
        ep.modify(a.as_raw_fd(), 8, Interest::READABLE.edge())
            .unwrap();
        a.notify().unwrap();
        ep.wait(&mut evs, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(evs.iter().map(|e| e.token).collect::<Vec<_>>(), vec![8]);
        // Edge-triggered: no new edge, no new event even though still readable.
        assert_eq!(ep.wait(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
        ep.delete(a.as_raw_fd()).unwrap();
        assert!(ep.delete(a.as_raw_fd()).is_err());
    }
}
