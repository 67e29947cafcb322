//! The raw system calls, each behind a safe function. The rest of the crate builds on these,
//! so most of its `unsafe` lives here where it can be audited in one place.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Plain old data: every bit pattern of the type is a valid value and it holds no pointers or
/// references, so the kernel may read it from or write it into our memory byte by byte.
///
/// # Safety
/// Implement only for `#[repr(C)]` integer aggregates with no invariants (uapi structs).
pub(crate) unsafe trait Pod: Copy + 'static {
    /// An all-zero value (valid by the trait's contract).
    fn zeroed() -> Self {
        // SAFETY: `Pod` guarantees that the all-zero bit pattern is a valid value.
        unsafe { mem::zeroed() }
    }
}

// SAFETY: primitive integers: every bit pattern is valid, no pointers.
unsafe impl Pod for libc::c_int {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: uapi struct of integers and a byte array; no invariants.
unsafe impl Pod for libc::packet_mreq {}
// SAFETY: uapi struct of two integers.
unsafe impl Pod for libc::tpacket_stats {}
// SAFETY: uapi struct of integers and a byte array.
unsafe impl Pod for libc::sockaddr_ll {}
// SAFETY: uapi struct of integers.
unsafe impl Pod for libc::sockaddr_nl {}
// SAFETY: uapi struct of integers.
unsafe impl Pod for libc::tpacket_auxdata {}
// SAFETY: two integers.
unsafe impl Pod for libc::timeval {}
// SAFETY: `ucred` is three integers; every bit pattern is valid.
unsafe impl Pod for libc::ucred {}
// SAFETY: a name array plus a 24-byte union modelled as bytes; no invariants.
unsafe impl Pod for IfReq {}

/// `struct ifreq` with its union modelled as raw bytes, which we fill field by field.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct IfReq {
    pub name: [u8; libc::IFNAMSIZ],
    pub data: [u8; 24],
}

impl IfReq {
    /// An `ifreq` naming `name` (must be shorter than IFNAMSIZ, checked).
    pub fn with_name(name: &str) -> io::Result<Self> {
        let mut r = IfReq::zeroed();
        let b = name.as_bytes();
        if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?}"),
            ));
        }
        r.name[..b.len()].copy_from_slice(b);
        Ok(r)
    }

    /// The name field up to its NUL.
    pub fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    /// `ifr_flags` (a `short`).
    pub fn flags(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    /// Sets `ifr_flags`.
    pub fn set_flags(&mut self, f: i16) {
        self.data[..2].copy_from_slice(&f.to_ne_bytes());
    }

    /// `ifr_ifindex` / `ifr_mtu` (an `int`).
    pub fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }

    /// Sets `ifr_mtu` / `ifr_ifindex`.
    pub fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets `ifr_hwaddr` to an Ethernet address.
    pub fn set_hwaddr(&mut self, mac: [u8; 6]) {
        self.data[..2].copy_from_slice(&(libc::ARPHRD_ETHER).to_ne_bytes());
        self.data[2..8].copy_from_slice(&mac);
    }

    /// The first six bytes of `ifr_hwaddr.sa_data`.
    pub fn hwaddr(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.data[2..8]);
        m
    }
}

/// Maps a `-1` return to `errno`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Maps a negative `ssize_t` return to `errno`.
pub(crate) fn cvt_size(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Takes ownership of a freshly returned descriptor.
pub(crate) fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `socket(2)`.
pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    owned(unsafe { libc::socket(domain, ty, proto) })
}

/// `setsockopt(2)` with a value of a plain-data type.
pub(crate) fn setsockopt<T: Pod>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: the pointer and length describe `val`, which lives for the call; the kernel only reads.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(2)` into a value of a plain-data type; returns the value and the length the kernel wrote.
pub(crate) fn getsockopt<T: Pod>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut val = T::zeroed();
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `val`; `T: Pod` accepts any bytes the kernel writes,
    // and the kernel writes at most `len` bytes.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut val as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok((val, len as usize))
}

/// `setsockopt` with an `int` argument.
pub(crate) fn setsockopt_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, name, &v)
}

/// `bind(2)` with a socket address of a plain-data type.
pub(crate) fn bind<T: Pod>(fd: &impl AsRawFd, addr: &T) -> io::Result<()> {
    // SAFETY: the pointer and length describe `addr`, which lives for the call; the kernel only reads.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The `ioctl` requests that take a `struct ifreq *`. An enum rather than a raw request
/// number so that [`ioctl_ifreq`] cannot be called with a request expecting another type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IfreqIoctl {
    TunSetIff,
    TunGetIff,
    GetIndex,
    GetHwAddr,
    SetHwAddr,
    SetMtu,
    GetFlags,
    SetFlags,
}

/// `ioctl(fd, req, &mut ifreq)`.
pub(crate) fn ioctl_ifreq(fd: &impl AsRawFd, req: IfreqIoctl, r: &mut IfReq) -> io::Result<()> {
    let req = match req {
        IfreqIoctl::TunSetIff => libc::TUNSETIFF,
        IfreqIoctl::TunGetIff => libc::TUNGETIFF,
        IfreqIoctl::GetIndex => libc::SIOCGIFINDEX,
        IfreqIoctl::GetHwAddr => libc::SIOCGIFHWADDR,
        IfreqIoctl::SetHwAddr => libc::SIOCSIFHWADDR,
        IfreqIoctl::SetMtu => libc::SIOCSIFMTU,
        IfreqIoctl::GetFlags => libc::SIOCGIFFLAGS,
        IfreqIoctl::SetFlags => libc::SIOCSIFFLAGS,
    };
    // SAFETY: each of these requests reads and/or writes one `struct ifreq` through the
    // pointer; `IfReq` is at least that large (40 bytes; the kernel's is 40 on 64-bit and 32 on
    // 32-bit) and accepts any bytes. It lives for the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, r as *mut IfReq) }).map(drop)
}

/// `ioctl(tun_fd, TUNSETCARRIER, &int)`.
pub(crate) fn tun_set_carrier(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    let v: libc::c_int = on.into();
    // SAFETY: TUNSETCARRIER reads one `int` through the pointer, which points at `v`.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETCARRIER,
            &v as *const libc::c_int,
        )
    })
    .map(drop)
}

/// `ioctl(tun_fd, TUNSETOFFLOAD, flags)`: the offloads the fd's reader accepts.
pub(crate) fn tun_set_offload(fd: &impl AsRawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) })
        .map(drop)
}

/// `ioctl(2)` with no argument; returns the non-negative result (e.g. a new fd).
pub(crate) fn ioctl_none(fd: &impl AsRawFd, req: libc::Ioctl) -> io::Result<libc::c_int> {
    // SAFETY: the argument is the integer 0, never a pointer into our memory: a request that
    // expected a pointer sees NULL and fails with EFAULT. Used for TUNGETDEVNETNS and
    // NS_GET_NSTYPE, which take no argument.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, 0usize) })
}

/// `read(2)` into `buf`.
pub(crate) fn read(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, writable for the call.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(2)` from `buf`.
pub(crate) fn write(fd: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, readable for the call.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// `writev(2)` of `parts`, in order (one datagram for a TAP).
pub(crate) fn writev(fd: &impl AsRawFd, parts: &[&[u8]]) -> io::Result<usize> {
    const MAX: usize = 8;
    if parts.len() > MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX];
    for (v, p) in iov.iter_mut().zip(parts) {
        v.iov_base = p.as_ptr().cast_mut().cast();
        v.iov_len = p.len();
    }
    // SAFETY: each iovec describes one of `parts`, readable for the call; the kernel only
    // reads them.
    cvt_size(unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), parts.len() as libc::c_int) })
}

/// `send(2)` on a connected or bound socket.
pub(crate) fn send(fd: &impl AsRawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, readable for the call.
    cvt_size(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })
}

/// `recv(2)` into `buf`; returns the length reported by the kernel (the full datagram length
/// when `MSG_TRUNC` is in `flags`).
pub(crate) fn recv(fd: &impl AsRawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, writable for the call.
    cvt_size(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) })
}

/// `sendto(2)` with a plain-data destination address.
pub(crate) fn sendto<T: Pod>(
    fd: &impl AsRawFd,
    buf: &[u8],
    flags: libc::c_int,
    addr: &T,
) -> io::Result<usize> {
    // SAFETY: both pointer/length pairs describe live, readable values for the call.
    cvt_size(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags,
            (addr as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread.
pub(crate) fn setns_net(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments; it changes only the calling thread's netns,
    // which the callers restrict to short-lived helper threads they own, or to the
    // single-threaded broker process (which returns to its own namespace after each request).
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// Opens a device read-write, non-blocking and close-on-exec.
pub(crate) fn open_rw_nonblock(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    Ok(OwnedFd::from(f))
}

/// A connected pair of `SOCK_SEQPACKET` Unix sockets, close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as socketpair(2) requires.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((owned(fds[0])?, owned(fds[1])?))
}

/// At most this many descriptors are taken from one message; more is a protocol error.
const MAX_FDS: usize = 4;

/// Sends one message carrying `buf` and, when given, one descriptor (`SCM_RIGHTS`). Never
/// raises SIGPIPE (`MSG_NOSIGNAL`): a closed peer is `EPIPE`.
pub(crate) fn send_with_fd(
    sock: &impl AsRawFd,
    buf: &[u8],
    fd: Option<std::os::fd::BorrowedFd<'_>>,
) -> io::Result<usize> {
    // Room for one int's worth of cmsg data, 8-byte aligned as cmsghdr requires.
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is the empty message.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        use std::os::fd::AsRawFd as _;
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
        let (space, len) = unsafe {
            (
                libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) as usize,
                libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize,
            )
        };
        assert!(space <= mem::size_of_val(&cbuf));
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `cbuf`, zeroed and large enough for one cmsghdr with
        // an int (asserted above), so CMSG_FIRSTHDR is non-null and CMSG_DATA lies inside it;
        // the int is written unaligned-safe.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = len as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd.as_raw_fd());
        }
    }
    // SAFETY: `msg` points at `iov` (describing `buf`, readable) and at `cbuf` (initialised
    // control data), all alive for the call; the kernel only reads them.
    cvt_size(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })
}

/// Receives one message into `buf`, with the descriptors it carries (`SCM_RIGHTS`), which
/// arrive close-on-exec. A message cut short (`MSG_TRUNC`, `MSG_CTRUNC`) is `EMSGSIZE`, its
/// descriptors closed. `Ok((0, []))` is the peer's orderly close.
pub(crate) fn recv_with_fds(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is the empty message.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&cbuf) as _;
    // SAFETY: `msg` points at `iov` (describing `buf`, writable) and `cbuf` (writable), both
    // alive for the call.
    let n = cvt_size(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_controllen` bytes of `cbuf` with well-formed cmsghdrs;
    // CMSG_FIRSTHDR/CMSG_NXTHDR walk only inside them, and each SCM_RIGHTS payload holds
    // (cmsg_len - CMSG_LEN(0)) / 4 descriptors that are new in this process and owned by
    // nobody else, so each is taken over exactly once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / mem::size_of::<libc::c_int>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 || fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok((n, fds))
}

/// `open(2)` of `path` with `flags` (`O_CLOEXEC` always added), mode 0.
pub(crate) fn open(path: &std::ffi::CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string alive for the call.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0) })
}

/// Raises the soft limit of open files to the hard one and returns it: the daemon holds one
/// TAP descriptor per macvlan, and a service's default soft limit (1024 under systemd) would
/// stop it at a few hundred.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit, read above; only the soft limit changed.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(lim.rlim_cur)
}
