//! Network namespaces: [`NetnsHandle`], an owned fd of one, and [`NetnsHandle::run_in`] to do
//! work inside it on a short-lived helper thread.
//!
//! Sockets, TAP devices and netlink sockets belong to the namespace of the thread that created
//! them and keep working from any thread afterwards, so "create it in namespace X" is always
//! "create it on a helper thread that entered X". Long-lived daemon threads never `setns`.

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

    /// The namespace of process `pid` (`/proc/PID/ns/net`).
    pub fn from_pid(pid: u32) -> io::Result<Self> {
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

/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)`: returns the `CLONE_NEW*` type of an nsfs fd.
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

/// The iproute2 name of the namespace with identity `id`, scanning `/var/run/netns` and
/// `/run/netns`. `None` when it has no name (or the directory does not exist).
pub fn name_of(id: NetnsId) -> Option<String> {
    for dir in NETNS_DIRS {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path: PathBuf = e.path();
            // stat (not lstat, not the dirent): the entry is a bind mount of an nsfs file, and
            // only stat sees through the mount to the namespace's inode.
            if let Ok(m) = std::fs::metadata(&path) {
                if m.dev() == id.dev && m.ino() == id.ino {
                    return Some(e.file_name().to_string_lossy().into_owned());
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
    fn rejects_bad_names_and_non_netns_files() {
        assert!(NetnsHandle::from_name("../x").is_err());
        assert!(NetnsHandle::from_name("").is_err());
        assert!(NetnsHandle::from_path("/proc/thread-self/ns/uts").is_err());
        assert!(NetnsHandle::from_path("/dev/null").is_err());
    }
}
