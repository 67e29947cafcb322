//! Network namespaces: [`NetnsHandle`], an owned fd of one; [`socket_in`] and [`open_in`], the
//! one place where descriptors bound to another namespace are made; and
//! [`NetnsHandle::run_in`] to do any work inside one on a short-lived helper thread.
//!
//! Sockets, TAP devices (the tun fd) and `/proc/thread-self/net/*` files belong to the
//! namespace their descriptor was *created* in and keep working from any thread or process
//! afterwards. Creating one in another namespace needs `setns(2)`, hence `CAP_SYS_ADMIN`; a
//! process that gave that up installs a [`Broker`] ([`install_broker`]): a small privileged
//! process (see [`serve_broker`]) that creates the descriptor in the namespace it is sent and
//! hands it back over a `SOCK_SEQPACKET` socket (`SCM_RIGHTS`). Without one, a short-lived
//! helper thread enters the namespace. Long-lived daemon threads never `setns`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// Where iproute2 keeps its named namespaces (`/var/run` is normally a symlink to `/run`;
/// both are tried in case it is not).
const NETNS_DIRS: [&str; 2] = ["/var/run/netns", "/run/netns"];

/// `EINVAL`, as the kernel answers an `IFLA_NET_NS_FD` that is not a network namespace.
fn not_a_netns(_path: &Path) -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// The identity of a namespace: the nsfs device and inode, as `stat` reports them. Two handles
/// refer to the same namespace exactly when their ids are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetnsId {
    /// `st_dev` of the nsfs file.
    pub dev: u64,
    /// `st_ino` of the nsfs file (what `ip netns identify` and `/proc/PID/ns/net` show).
    pub ino: u64,
}

/// An owned file descriptor of a network namespace. Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct NetnsHandle {
    file: File,
    /// Read once when opened: a namespace file's identity cannot change while it is open, and
    /// the daemon compares identities in loops over all its macvlans.
    id: NetnsId,
}

impl NetnsHandle {
    /// The calling thread's namespace (`/proc/thread-self/ns/net`, not `/proc/self`, which
    /// names the main thread's).
    pub fn current() -> io::Result<Self> {
        Self::from_path("/proc/thread-self/ns/net")
    }

    /// A namespace named by iproute2 (`ip netns add NAME`): `/var/run/netns/NAME`, then
    /// `/run/netns/NAME`.
    pub fn from_name(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid netns name {name:?}"),
            ));
        }
        let mut last = None;
        for dir in NETNS_DIRS {
            match Self::from_path(Path::new(dir).join(name)) {
                Ok(h) => return Ok(h),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("NETNS_DIRS is not empty"))
    }

    /// The namespace of process `pid` (`/proc/PID/ns/net`). Opening it needs ptrace access to
    /// `pid` (`CAP_SYS_PTRACE` for a process with more capabilities than the caller): with a
    /// [`Broker`] installed, the broker opens it.
    pub fn from_pid(pid: u32) -> io::Result<Self> {
        match broker() {
            Some(b) => {
                let fd = b.request(&format!("pidns {pid}"), None)?;
                Self::from_fd(fd)
            }
            None => Self::from_pid_local(pid),
        }
    }

    /// [`from_pid`](Self::from_pid) by this process itself.
    fn from_pid_local(pid: u32) -> io::Result<Self> {
        Self::from_path(format!("/proc/{pid}/ns/net"))
    }

    /// Opens a namespace file (an nsfs file or a bind mount of one) and checks that it is a
    /// network namespace.
    ///
    /// Anything else is refused without blocking and without side effects: only a regular
    /// file (what nsfs files and their bind mounts look like) is opened at all — a FIFO would
    /// block the opener, a device could act on being opened — and then non-blocking.
    pub fn from_path(path: impl AsRef<Path>) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref();
        if !std::fs::metadata(path)?.file_type().is_file() {
            return Err(not_a_netns(path));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        Self::from_fd(file.into()).map_err(|e| match e.raw_os_error() {
            // NS_GET_NSTYPE on an ordinary file.
            Some(libc::ENOTTY) | Some(libc::EINVAL) => not_a_netns(path),
            _ => e,
        })
    }

    /// Wraps a namespace fd obtained elsewhere (e.g. from `TUNGETDEVNETNS`), checking that it
    /// is a network namespace.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let nstype = sys::ioctl_none(&fd, NS_GET_NSTYPE)?;
        if nstype != libc::CLONE_NEWNET {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let file: File = fd.into();
        let m = file.metadata()?;
        Ok(NetnsHandle {
            file,
            id: NetnsId {
                dev: m.dev(),
                ino: m.ino(),
            },
        })
    }

    /// A second handle to the same namespace.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(NetnsHandle {
            file: self.file.try_clone()?,
            id: self.id,
        })
    }

    /// The namespace's identity (`st_dev`, `st_ino`).
    pub fn id(&self) -> io::Result<NetnsId> {
        Ok(self.id)
    }

    /// Whether both handles refer to the same namespace.
    pub fn same_as(&self, other: &NetnsHandle) -> io::Result<bool> {
        Ok(self.id()? == other.id()?)
    }

    /// Whether this is the calling thread's namespace.
    pub fn is_current(&self) -> io::Result<bool> {
        self.same_as(&Self::current()?)
    }

    /// The iproute2 name of this namespace, if one of the files in `/var/run/netns` (or
    /// `/run/netns`) is a mount of it. For display only: names are not identities.
    pub fn name(&self) -> io::Result<Option<String>> {
        Ok(name_of(self.id()?))
    }

    /// Runs `f` on a fresh thread that has entered this namespace, waits for it and returns its
    /// result. A panic in `f` is resumed on the caller's thread. The calling thread's own
    /// namespace is never changed.
    ///
    /// Needs `CAP_SYS_ADMIN`, which the daemon does not keep: to create a descriptor in another
    /// namespace use [`socket_in`] and [`open_in`], which go through the broker when one is
    /// installed.
    pub fn run_in<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|s| {
            let h = std::thread::Builder::new()
                .name("umv-netns".into())
                .spawn_scoped(s, || -> io::Result<T> {
                    sys::setns_net(&self.file)?;
                    Ok(f())
                })?;
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Like [`run_in`](Self::run_in) with `None` meaning "the caller's namespace, on the
    /// caller's thread" (no helper thread).
    pub fn run_in_opt<T, F>(ns: Option<&NetnsHandle>, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        match ns {
            Some(ns) => ns.run_in(f),
            None => Ok(f()),
        }
    }
}

impl AsFd for NetnsHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for NetnsHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Whether a descriptor may be created in another namespace through [`socket_in`]: the
/// sockets umacvlan needs there and no others — AF_PACKET (lowers), `NETLINK_ROUTE`
/// (rtnetlink, link monitors) and AF_INET datagram (the `SIOC*IF*` ioctls).
fn socket_allowed(domain: i32, ty: i32, proto: i32) -> bool {
    let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    match domain {
        libc::AF_PACKET => base == libc::SOCK_RAW || base == libc::SOCK_DGRAM,
        libc::AF_NETLINK => {
            (base == libc::SOCK_RAW || base == libc::SOCK_DGRAM) && proto == libc::NETLINK_ROUTE
        }
        libc::AF_INET => base == libc::SOCK_DGRAM && proto == 0,
        _ => false,
    }
}

/// The files [`open_in`] opens in another namespace, each with the one access mode it needs
/// (plus `O_NONBLOCK` at will): the tun clone device (a TAP is created in the namespace its
/// fd was opened in) and that namespace's multicast lists.
const OPEN_ALLOWED: [(&str, i32); 2] = [
    ("/dev/net/tun", libc::O_RDWR),
    ("/proc/thread-self/net/dev_mcast", libc::O_RDONLY),
];

fn open_allowed(path: &str, flags: i32) -> bool {
    let rest = flags & !libc::O_NONBLOCK & !libc::O_CLOEXEC;
    OPEN_ALLOWED.iter().any(|&(p, f)| p == path && rest == f)
}

fn refused(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("not allowed in another namespace: {what}"),
    )
}

/// Creates `socket(domain, ty, proto)` in namespace `ns` (`None`: the caller's). `SOCK_CLOEXEC`
/// is always added. Only the sockets umacvlan needs are allowed (AF_PACKET, `NETLINK_ROUTE`,
/// AF_INET datagram); others are refused with `PermissionDenied` before anything is created.
pub fn socket_in(
    ns: Option<&NetnsHandle>,
    domain: i32,
    ty: i32,
    proto: i32,
) -> io::Result<OwnedFd> {
    if !socket_allowed(domain, ty, proto) {
        return Err(refused(format!("socket({domain}, {ty:#x}, {proto})")));
    }
    let local = || sys::socket(domain, ty | libc::SOCK_CLOEXEC, proto);
    match (ns, broker()) {
        (None, _) => local(),
        (Some(ns), Some(b)) => b.request(&format!("socket {domain} {ty} {proto}"), Some(ns)),
        (Some(ns), None) => ns.run_in(local)?,
    }
}

/// Opens `path` with `flags` (`O_CLOEXEC` always added) in namespace `ns` (`None`: the
/// caller's). Only `/dev/net/tun` (`O_RDWR`) and `/proc/thread-self/net/dev_mcast`
/// (`O_RDONLY`), each optionally `O_NONBLOCK`, are allowed; anything else is refused with
/// `PermissionDenied` before anything is opened.
pub fn open_in(ns: Option<&NetnsHandle>, path: &str, flags: i32) -> io::Result<OwnedFd> {
    if !open_allowed(path, flags) {
        return Err(refused(format!("open({path:?}, {flags:#o})")));
    }
    let local = || sys::open(&std::ffi::CString::new(path)?, flags);
    match (ns, broker()) {
        (None, _) => local(),
        (Some(ns), Some(b)) => b.request(&format!("open {flags} {path}"), Some(ns)),
        (Some(ns), None) => ns.run_in(local)?,
    }
}

/// The daemon's end of the socket to its fd broker (see [`serve_broker`]). Requests are
/// serialised; each waits at most [`BROKER_TIMEOUT`] for its answer.
#[derive(Debug)]
pub struct Broker {
    /// The socket and the number of the last request sent on it.
    sock: std::sync::Mutex<(OwnedFd, u64)>,
}

/// How long a request to the broker may take before it fails with `TimedOut`.
pub const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Largest request or answer.
const BROKER_MSG: usize = 512;

static BROKER: std::sync::OnceLock<Broker> = std::sync::OnceLock::new();

fn broker() -> Option<&'static Broker> {
    BROKER.get()
}

impl Broker {
    /// A connected pair: the client end, and the end to hand to the broker process (as its
    /// stdin, say; both ends are close-on-exec, which `dup2` onto 0 clears).
    pub fn pair() -> io::Result<(Broker, OwnedFd)> {
        let (a, b) = sys::seqpacket_pair()?;
        let tv = libc::timeval {
            tv_sec: BROKER_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        sys::setsockopt(&a, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        Ok((
            Broker {
                sock: std::sync::Mutex::new((a, 0)),
            },
            b,
        ))
    }

    /// Sends one request (with namespace `ns` attached) and returns the descriptor answered.
    /// Public so that tests can send what umacvlan itself never would. Each request carries a
    /// number its answer repeats, so that a late answer to a request that timed out is
    /// recognised and dropped (its descriptor closed), never taken for the next one's.
    pub fn request(&self, req: &str, ns: Option<&NetnsHandle>) -> io::Result<OwnedFd> {
        let mut guard = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        guard.1 += 1;
        let (sock, id) = (&guard.0, guard.1);
        if req.len() > BROKER_MSG - 24 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request too long for the namespace broker",
            ));
        }
        let gone = || {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the namespace broker is gone (it creates descriptors in other namespaces)",
            )
        };
        sys::send_with_fd(
            sock,
            format!("{id} {req}").as_bytes(),
            ns.map(|n| n.as_fd()),
        )
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::EPIPE) {
                gone()
            } else {
                e
            }
        })?;
        let mut buf = [0u8; BROKER_MSG];
        loop {
            let (n, mut fds) = sys::recv_with_fds(sock, &mut buf).map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the namespace broker did not answer within {BROKER_TIMEOUT:?}"),
                    )
                } else {
                    e
                }
            })?;
            if n == 0 {
                return Err(gone());
            }
            let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
            let (for_id, answer) = text.split_once(' ').unwrap_or(("", text));
            if for_id.parse::<u64>().ok() != Some(id) {
                continue; // an earlier request's late answer: `fds` closes here
            }
            return match (answer, fds.len()) {
                ("ok", 1) => Ok(fds.pop().expect("one")),
                _ => match answer
                    .strip_prefix("err ")
                    .and_then(|e| e.parse::<i32>().ok())
                {
                    Some(errno) if fds.is_empty() => Err(io::Error::from_raw_os_error(errno)),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the namespace broker answered {text:?}"),
                    )),
                },
            };
        }
    }
}

/// Makes every later [`socket_in`], [`open_in`] and [`NetnsHandle::from_pid`] of this process
/// go through `broker`. Once per process; a second call is refused (`AlreadyExists`).
pub fn install_broker(broker: Broker) -> io::Result<()> {
    BROKER
        .set(broker)
        .map_err(|_| io::Error::new(io::ErrorKind::AlreadyExists, "a broker is installed"))
}

/// Whether a broker is installed.
pub fn broker_installed() -> bool {
    broker().is_some()
}

/// The broker's side: answers requests on `sock` one at a time until its peer closes it (then
/// `Ok`). Run it in a single-threaded process with `CAP_SYS_ADMIN` (setns), `CAP_SYS_PTRACE`
/// (`/proc/PID/ns/net` of more privileged processes) and `CAP_NET_RAW` (AF_PACKET sockets are
/// checked at creation).
///
/// Requests, one per message, each starting with a number `ID` and a space, the namespace fd
/// attached by `SCM_RIGHTS` where there is one: `socket DOMAIN TYPE PROTO` and
/// `open FLAGS PATH` (in the attached namespace, under the same allow-lists as [`socket_in`]
/// and [`open_in`]), `pidns PID` (opens `/proc/PID/ns/net`). Answers: `ID ok` with the new
/// descriptor, or `ID err ERRNO`. The broker goes back to its own
/// namespace after each request, so it never keeps another one alive.
pub fn serve_broker(sock: OwnedFd) -> io::Result<()> {
    let home = NetnsHandle::current()?;
    let mut buf = [0u8; BROKER_MSG];
    loop {
        let (n, mut fds) = match sys::recv_with_fds(&sock, &mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                answer(&sock, "0", Err(e))?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(()); // the daemon is gone
        }
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (id, req) = text.split_once(' ').unwrap_or(("0", ""));
        let ns = if fds.len() == 1 { fds.pop() } else { None };
        let r = broker_one(req, ns, fds.is_empty());
        // Whatever happened, back home before anything else (an error here is fatal: the
        // broker would be answering from the wrong namespace).
        sys::setns_net(&home)?;
        answer(&sock, id, r)?;
    }
}

fn answer(sock: &OwnedFd, id: &str, r: io::Result<OwnedFd>) -> io::Result<()> {
    // The id is echoed only if it is a number (it is text the broker sends back).
    let id = id.parse::<u64>().unwrap_or(0);
    let sent = match r {
        Ok(fd) => sys::send_with_fd(sock, format!("{id} ok").as_bytes(), Some(fd.as_fd())),
        Err(e) => sys::send_with_fd(
            sock,
            format!("{id} err {}", e.raw_os_error().unwrap_or(libc::EINVAL)).as_bytes(),
            None,
        ),
    };
    sent.map(drop)
}

/// One broker request. `single` is false when more than one descriptor came with it.
fn broker_one(req: &str, ns: Option<OwnedFd>, single: bool) -> io::Result<OwnedFd> {
    let einval = || io::Error::from_raw_os_error(libc::EINVAL);
    let eperm = || io::Error::from_raw_os_error(libc::EPERM);
    if !single {
        return Err(einval());
    }
    let words: Vec<&str> = req.splitn(3, ' ').collect();
    let int = |s: &str| s.parse::<i32>().map_err(|_| einval());
    // Enters the attached namespace, checking first that it is a network namespace.
    let enter = |ns: Option<OwnedFd>| -> io::Result<()> {
        let ns = NetnsHandle::from_fd(ns.ok_or_else(einval)?)?;
        sys::setns_net(&ns)
    };
    match words.as_slice() {
        ["socket", d, rest] => {
            let (t, p) = rest.split_once(' ').ok_or_else(einval)?;
            let (d, t, p) = (int(d)?, int(t)?, int(p)?);
            if !socket_allowed(d, t, p) {
                return Err(eperm());
            }
            enter(ns)?;
            sys::socket(d, t | libc::SOCK_CLOEXEC, p)
        }
        ["open", flags, path] => {
            let flags = int(flags)?;
            if !open_allowed(path, flags) {
                return Err(eperm());
            }
            enter(ns)?;
            sys::open(&std::ffi::CString::new(*path).map_err(|_| einval())?, flags)
        }
        ["pidns", pid] if ns.is_none() => {
            let pid: u32 = pid.parse().map_err(|_| einval())?;
            Ok(NetnsHandle::from_pid_local(pid)?.file.into())
        }
        _ => Err(einval()),
    }
}

/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)`: returns the `CLONE_NEW*` type of an nsfs fd.
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

/// The iproute2 name of the namespace with identity `id`, scanning `/var/run/netns` and
/// `/run/netns`. `None` when it has no name (or the directory does not exist).
pub fn name_of(id: NetnsId) -> Option<String> {
    named(|found, name| (found == id).then(|| name.to_string()))
}

/// Every named namespace, by identity, from one scan of `/var/run/netns` and `/run/netns`
/// (the first name wins where one namespace has two): for naming many devices at once.
pub fn names() -> std::collections::HashMap<NetnsId, String> {
    let mut all = std::collections::HashMap::new();
    named::<()>(|id, name| {
        all.entry(id).or_insert_with(|| name.to_string());
        None
    });
    all
}

/// Calls `f` with each entry of the namespace directories until it returns something.
fn named<T>(mut f: impl FnMut(NetnsId, &str) -> Option<T>) -> Option<T> {
    // /var/run is usually /run: one directory, scanned once.
    let mut seen = Vec::new();
    for dir in NETNS_DIRS {
        let Ok(d) = std::fs::metadata(dir) else {
            continue;
        };
        if seen.contains(&(d.dev(), d.ino())) {
            continue;
        }
        seen.push((d.dev(), d.ino()));
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path: PathBuf = e.path();
            // stat (not lstat, not the dirent): the entry is a bind mount of an nsfs file, and
            // only stat sees through the mount to the namespace's inode.
            if let Ok(m) = std::fs::metadata(&path) {
                let id = NetnsId {
                    dev: m.dev(),
                    ino: m.ino(),
                };
                if let Some(t) = f(id, &e.file_name().to_string_lossy()) {
                    return Some(t);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_is_current_and_run_in_current_works() {
        let a = NetnsHandle::current().unwrap();
        let b = NetnsHandle::current().unwrap();
        assert!(a.same_as(&b).unwrap());
        assert!(a.is_current().unwrap());
        let c = a.try_clone().unwrap();
        assert_eq!(a.id().unwrap(), c.id().unwrap());
        // Entering our own namespace is allowed for root only; elsewhere just check the error
        // path is an error and not a panic.
        let r = a.run_in(|| NetnsHandle::current().unwrap().id().unwrap());
        if let Ok(id) = r {
            assert_eq!(id, a.id().unwrap());
        }
    }

    #[test]
    fn only_the_listed_descriptors_are_made_even_here() {
        let denied =
            |r: io::Result<OwnedFd>| r.is_err_and(|e| e.kind() == io::ErrorKind::PermissionDenied);
        assert!(denied(open_in(None, "/etc/passwd", libc::O_RDONLY)));
        assert!(denied(open_in(
            None,
            "/dev/net/tun",
            libc::O_RDWR | libc::O_CREAT
        )));
        assert!(denied(open_in(
            None,
            "/proc/thread-self/net/dev_mcast",
            libc::O_RDWR
        )));
        assert!(denied(socket_in(None, libc::AF_INET, libc::SOCK_STREAM, 0)));
        assert!(denied(socket_in(None, libc::AF_UNIX, libc::SOCK_DGRAM, 0)));
        assert!(denied(socket_in(None, libc::AF_NETLINK, libc::SOCK_RAW, 9)));
        // What is listed works in the caller's namespace, for anyone.
        assert!(open_in(None, "/proc/thread-self/net/dev_mcast", libc::O_RDONLY).is_ok());
        assert!(socket_in(None, libc::AF_INET, libc::SOCK_DGRAM, 0).is_ok());
        assert!(socket_in(None, libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE).is_ok());
    }

    #[test]
    fn a_late_answer_is_never_taken_for_the_next_requests() {
        let (client, server) = Broker::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let mut buf = [0u8; BROKER_MSG];
            let (n, _) = sys::recv_with_fds(&server, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"1 pidns 7");
            // An answer to an earlier request, with a descriptor, then the right one.
            let stale = File::open("/dev/null").unwrap();
            sys::send_with_fd(&server, b"0 ok", Some(stale.as_fd())).unwrap();
            sys::send_with_fd(&server, format!("1 err {}", libc::ESRCH).as_bytes(), None).unwrap();
            let (n, _) = sys::recv_with_fds(&server, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"2 pidns 8");
            sys::send_with_fd(&server, b"2 nonsense", None).unwrap();
            // Closing is "gone".
        });
        let e = client.request("pidns 7", None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
        let e = client.request("pidns 8", None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        fake.join().unwrap();
        let e = client.request("pidns 9", None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    }

    #[test]
    fn rejects_bad_names_and_non_netns_files() {
        assert!(NetnsHandle::from_name("../x").is_err());
        assert!(NetnsHandle::from_name("").is_err());
        assert!(NetnsHandle::from_path("/proc/thread-self/ns/uts").is_err());
        assert!(NetnsHandle::from_path("/dev/null").is_err());
    }
}
