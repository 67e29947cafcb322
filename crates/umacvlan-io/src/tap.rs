//! [`Tap`]: one macvlan's upper device, a non-persistent TAP (`IFF_TAP | IFF_NO_PI`).
//!
//! The TAP is deleted when its last fd closes. It may be created in any network namespace
//! ([`Tap::create_in`]) and may later be moved by the user (`ip link set X netns Y`); the fd
//! keeps working from any thread, and the control methods find the device wherever it is now
//! (`TUNGETDEVNETNS` + `TUNGETIFF`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use umacvlan_core::wire::MacAddr;

use crate::netns::{self, NetnsHandle};
use crate::sys::{self, IfReq, IfreqIoctl, Pod};

/// The largest MTU a TAP takes: the kernel's `MAX_MTU` (65535) less the Ethernet header.
pub const MAX_MTU: u32 = 65535 - 14;

/// Options for [`Tap::create`] beyond the name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// `IFF_VNET_HDR`: each frame read or written is preceded by a `virtio_net_hdr`.
    pub vnet_hdr: bool,
    /// `IFF_MULTI_QUEUE`: more queues can be attached with [`Tap::attach_queue`].
    pub multi_queue: bool,
}

/// A TAP device fd, non-blocking and close-on-exec.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    opts: TapOptions,
}

impl Tap {
    /// Creates TAP `name` (empty: the kernel picks `tapN`) in the calling thread's namespace.
    pub fn create(name: &str, opts: TapOptions) -> io::Result<Tap> {
        let fd = sys::open_rw_nonblock(Path::new("/dev/net/tun"))?;
        Self::configure(fd, name, opts)
    }

    /// Makes the tun fd `fd` TAP `name` (`TUNSETIFF`; in the namespace `fd` was opened in).
    fn configure(fd: OwnedFd, name: &str, opts: TapOptions) -> io::Result<Tap> {
        let mut req = if name.is_empty() {
            IfReq::zeroed()
        } else {
            IfReq::with_name(name)?
        };
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if opts.vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        if opts.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        req.set_flags(flags as i16);
        sys::ioctl_ifreq(&fd, IfreqIoctl::TunSetIff, &mut req)?;
        if opts.vnet_hdr {
            // We pass checksum and GSO state on to the lower untouched, so we take frames with
            // partial checksums and TCP/UDP super-frames (UDP segmentation needs Linux ≥ 6.2).
            let base = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
            const TUN_F_USO4: libc::c_uint = 0x20;
            const TUN_F_USO6: libc::c_uint = 0x40;
            sys::tun_set_offload(&fd, base | TUN_F_USO4 | TUN_F_USO6)
                .or_else(|_| sys::tun_set_offload(&fd, base))?;
        }
        Ok(Tap { fd, opts })
    }

    /// Bytes of `virtio_net_hdr` in front of every frame read or written (0 or 10).
    pub fn vnet_hdr_len(&self) -> usize {
        if self.opts.vnet_hdr {
            crate::afpacket::VNET_HDR_LEN
        } else {
            0
        }
    }

    /// Creates TAP `name` in namespace `netns` (`None`: the caller's). The kernel ties the
    /// device to the namespace the tun fd was *opened* in, so only that open happens there
    /// ([`netns::open_in`]: the broker, or a helper thread); `TUNSETIFF` is done here.
    pub fn create_in(netns: Option<&NetnsHandle>, name: &str, opts: TapOptions) -> io::Result<Tap> {
        let fd = netns::open_in(netns, TUN_PATH, libc::O_RDWR | libc::O_NONBLOCK)?;
        Self::configure(fd, name, opts)
    }

    /// The options it was created with.
    pub fn options(&self) -> TapOptions {
        self.opts
    }

    /// The device's current name (follows renames).
    pub fn name(&self) -> io::Result<String> {
        let mut req = IfReq::zeroed();
        sys::ioctl_ifreq(&self.fd, IfreqIoctl::TunGetIff, &mut req)?;
        Ok(req.name())
    }

    /// The namespace the device is in now (`TUNGETDEVNETNS`).
    pub fn netns(&self) -> io::Result<NetnsHandle> {
        let fd = sys::owned(sys::ioctl_none(&self.fd, libc::TUNGETDEVNETNS)?)?;
        NetnsHandle::from_fd(fd)
    }

    /// The device's current name and a socket for `SIOC*IF*` ioctls in its current namespace
    /// (made there by [`netns::socket_in`] when that is not the caller's).
    fn ctl_in_dev_ns(&self) -> io::Result<(String, OwnedFd)> {
        let name = self.name()?;
        let ns = self.netns()?;
        let ns = if ns.is_current()? { None } else { Some(ns) };
        Ok((name, ctl_socket(ns.as_ref())?))
    }

    /// The device's ifindex in its current namespace (it can change when the device moves).
    pub fn ifindex(&self) -> io::Result<u32> {
        let (name, s) = self.ctl_in_dev_ns()?;
        let mut req = IfReq::with_name(&name)?;
        sys::ioctl_ifreq(&s, IfreqIoctl::GetIndex, &mut req)?;
        Ok(req.int() as u32)
    }

    /// The device's MAC address.
    pub fn mac(&self) -> io::Result<MacAddr> {
        let mut req = IfReq::zeroed();
        // The tun fd answers SIOCGIFHWADDR itself, whatever namespace the device is in.
        sys::ioctl_ifreq(&self.fd, IfreqIoctl::GetHwAddr, &mut req)?;
        Ok(MacAddr(req.hwaddr()))
    }

    /// Sets the device's MAC address (allowed while up for TAPs).
    pub fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        let mut req = IfReq::zeroed();
        req.set_hwaddr(mac.0);
        sys::ioctl_ifreq(&self.fd, IfreqIoctl::SetHwAddr, &mut req)
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        let mtu = i32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let (name, s) = self.ctl_in_dev_ns()?;
        let mut req = IfReq::with_name(&name)?;
        req.set_int(mtu);
        sys::ioctl_ifreq(&s, IfreqIoctl::SetMtu, &mut req)
    }

    /// Sets the device administratively up or down.
    pub fn set_up(&self, up: bool) -> io::Result<()> {
        let (name, s) = self.ctl_in_dev_ns()?;
        let mut req = IfReq::with_name(&name)?;
        sys::ioctl_ifreq(&s, IfreqIoctl::GetFlags, &mut req)?;
        let f = req.flags();
        let iff_up = libc::IFF_UP as i16;
        let nf = if up { f | iff_up } else { f & !iff_up };
        if nf != f {
            req.set_flags(nf);
            sys::ioctl_ifreq(&s, IfreqIoctl::SetFlags, &mut req)?;
        }
        Ok(())
    }

    /// Turns the carrier on or off (`TUNSETCARRIER`); off shows as `NO-CARRIER` and the
    /// kernel stops transmitting to the TAP, while frames written to it are still received.
    pub fn set_carrier(&self, on: bool) -> io::Result<()> {
        sys::tun_set_carrier(&self.fd, on)
    }

    /// Reads one frame the kernel transmitted on the device (what the upper's user sent).
    /// `WouldBlock` when none is queued. `buf` should hold the MTU plus headers (64 KiB is
    /// always enough); a longer frame is cut.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(&self.fd, buf)
    }

    /// Writes one frame, which the device then receives (also without carrier). `EIO` while
    /// the device is down.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        let n = sys::write(&self.fd, frame)?;
        if n != frame.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short TAP write"));
        }
        Ok(())
    }

    /// Writes one frame given in pieces (`writev`: one frame for the device, no copy).
    pub fn write_parts(&self, parts: &[&[u8]]) -> io::Result<()> {
        let n = sys::writev(&self.fd, parts)?;
        if n != parts.iter().map(|p| p.len()).sum::<usize>() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short TAP write"));
        }
        Ok(())
    }

    /// Opens one more queue of a multi-queue TAP (created with `multi_queue`), in whatever
    /// namespace the device is now.
    pub fn attach_queue(&self) -> io::Result<Tap> {
        if !self.opts.multi_queue {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let name = self.name()?;
        let ns = self.netns()?;
        let ns = if ns.is_current()? { None } else { Some(ns) };
        let fd = netns::open_in(ns.as_ref(), TUN_PATH, libc::O_RDWR | libc::O_NONBLOCK)?;
        Tap::configure(fd, &name, self.opts)
    }
}

/// The tun clone device.
const TUN_PATH: &str = "/dev/net/tun";

/// A socket for the `SIOC*IF*` ioctls in `ns` (`None`: the caller's); they act on the
/// socket's namespace.
fn ctl_socket(ns: Option<&NetnsHandle>) -> io::Result<OwnedFd> {
    netns::socket_in(ns, libc::AF_INET, libc::SOCK_DGRAM, 0)
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
