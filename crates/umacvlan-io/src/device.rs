//! The device traits the daemon's data-plane workers are written against: [`LowerIo`] (the
//! lower device) and [`UpperIo`] (one macvlan's device), with their real implementations on
//! [`LowerSocket`] and [`Tap`]. In-memory ones for tests are in [`crate::mem`].

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::afpacket::{
    reconcile, LowerSocket, MembershipOps, MembershipSet, ReconcileError, RxBatch,
};
use crate::tap::Tap;

/// The lower device as a data-plane worker sees it.
pub trait LowerIo: MembershipOps + Send + Sync {
    /// Receives queued frames into `batch` (replacing its contents); 0 when none is queued.
    fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize>;

    /// Sends one frame out of the lower device.
    fn send(&self, frame: &[u8]) -> io::Result<()>;

    /// Sends several frames; returns how many went out (stops at the first failure, which is
    /// returned only if none went out).
    fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut n = 0;
        for f in frames {
            match self.send(f) {
                Ok(()) => n += 1,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    /// Makes the device hold `wanted` memberships given it holds `current` (see
    /// [`reconcile`]).
    fn apply_memberships(
        &self,
        current: &mut MembershipSet,
        wanted: &MembershipSet,
    ) -> Result<(), ReconcileError> {
        reconcile(self, current, wanted)
    }

    /// An fd that polls readable while frames may be queued.
    fn readiness_fd(&self) -> RawFd;

    /// Bytes of `virtio_net_hdr` before each frame received ([`crate::RxFrame::packet`]) and sent.
    fn vnet_hdr_len(&self) -> usize {
        0
    }

    /// Waits until a send may succeed again after `WouldBlock` (the send queue has room), at
    /// most `timeout`. The default sleeps a little.
    fn wait_writable(&self, timeout: Duration) -> io::Result<()> {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        Ok(())
    }

    /// Frames the device's receive queue dropped since the last call (the queue was full);
    /// for a packet socket, `PACKET_STATISTICS`' `tp_drops`.
    fn take_drops(&self) -> u64 {
        0
    }

    /// Stops (`on`) or resumes receiving the frames a
    /// [`HostInjector`](crate::hostaccess::HostInjector) puts into the lower's receive path.
    /// Devices that cannot see them have nothing to do.
    fn drop_host_injected(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
}

/// One upper (macvlan) device as a data-plane worker sees it.
pub trait UpperIo: Send + Sync {
    /// Reads one frame the upper's user sent; `WouldBlock` when none is queued.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Delivers one frame to the upper's user.
    fn write(&self, frame: &[u8]) -> io::Result<()>;

    /// Turns the upper's carrier on or off.
    fn set_carrier(&self, on: bool) -> io::Result<()>;

    /// An fd that polls readable while frames may be queued for [`read`](Self::read).
    fn readiness_fd(&self) -> RawFd;

    /// Bytes of `virtio_net_hdr` before each frame read and written.
    fn vnet_hdr_len(&self) -> usize {
        0
    }
}

impl LowerIo for LowerSocket {
    fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        LowerSocket::recv_batch(self, batch)
    }
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        LowerSocket::send(self, frame)
    }
    fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        LowerSocket::send_batch(self, frames)
    }
    fn readiness_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
    fn take_drops(&self) -> u64 {
        self.stats().map_or(0, |s| u64::from(s.drops))
    }
    fn wait_writable(&self, timeout: Duration) -> io::Result<()> {
        LowerSocket::wait_writable(self, timeout)
    }
    fn vnet_hdr_len(&self) -> usize {
        LowerSocket::vnet_hdr_len(self)
    }
    fn drop_host_injected(&self, on: bool) -> io::Result<()> {
        LowerSocket::drop_host_injected(self, on)
    }
}

/// The host's way in, as the data plane writes to it: writing injects into the lower's
/// receive path; it is never read.
impl UpperIo for crate::hostaccess::HostInjector {
    fn read(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn write(&self, frame: &[u8]) -> io::Result<()> {
        self.inject(frame)
    }
    fn set_carrier(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    fn readiness_fd(&self) -> RawFd {
        -1
    }
}

impl UpperIo for Tap {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Tap::read(self, buf)
    }
    fn write(&self, frame: &[u8]) -> io::Result<()> {
        Tap::write(self, frame)
    }
    fn set_carrier(&self, on: bool) -> io::Result<()> {
        Tap::set_carrier(self, on)
    }
    fn readiness_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
    fn vnet_hdr_len(&self) -> usize {
        Tap::vnet_hdr_len(self)
    }
}
