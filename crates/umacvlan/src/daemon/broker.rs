//! The fd broker: a small child process that creates, in another network namespace, the few
//! descriptors the daemon needs there, and hands them over (`SCM_RIGHTS`) — so that the daemon
//! itself keeps neither `CAP_SYS_ADMIN` (setns) nor `CAP_SYS_PTRACE` (`/proc/PID/ns/net`).
//!
//! Sockets, the tun fd (a TAP is created in the namespace its fd was opened in) and
//! `/proc/thread-self/net/dev_mcast` are bound to a namespace when created and work from any
//! process afterwards, so only their creation needs the privilege. The broker is the daemon's
//! own binary (`umacvlan daemon --broker`), started before the daemon drops its capabilities,
//! single-threaded, talking over a `SOCK_SEQPACKET` socket that is its stdin. It answers only
//! what [`umacvlan_io::netns::serve_broker`] allows (a few socket kinds, two paths,
//! `/proc/PID/ns/net`), returns to its own namespace after every request, and exits when the
//! daemon's end closes — however the daemon ends, SIGKILL included. Like the guardian it
//! ignores SIGINT, SIGTERM and SIGHUP, so a signal to the process group cannot take it away
//! before the daemon.

use caps::{Capability, CapsHashSet};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use umacvlan_io::netns::Broker;

/// What the broker keeps: `CAP_SYS_ADMIN` (setns), `CAP_SYS_PTRACE` (the namespace of a
/// process with more capabilities) and `CAP_NET_RAW` (AF_PACKET sockets are checked when
/// created). Not `CAP_NET_ADMIN`: rtnetlink checks the *sender's* capabilities (the daemon's)
/// on every change, and the socket creator's only for a message sent without a destination
/// address, which `RtNetlink` never does (it always names the kernel: `NETLINK_SKB_DST`).
pub fn needed() -> CapsHashSet {
    [
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_SYS_PTRACE,
        Capability::CAP_NET_RAW,
    ]
    .into_iter()
    .collect()
}

/// Starts the broker (the running binary, `daemon --broker`) and returns it with the
/// daemon's end of its socket, to be installed with [`umacvlan_io::netns::install_broker`].
pub fn spawn() -> io::Result<(Child, Broker)> {
    let (client, server) = Broker::pair()?;
    let child = Command::new("/proc/self/exe")
        // Named `umacvlan`, so a binary that is umacvlan by its name (the benchmark's,
        // linked as `umacvlan`) runs as umacvlan here too.
        .arg0("umacvlan")
        .args(["daemon", "--broker"])
        .stdin(Stdio::from(server))
        .stdout(Stdio::null())
        .spawn()?;
    Ok((child, client))
}

/// The broker process.
pub fn main() -> i32 {
    if let Err(e) = super::privileges::drop_to(&needed()) {
        eprintln!("umacvlan broker: cannot drop capabilities: {e}");
        return 1;
    }
    for s in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // Registering a handler replaces the default action (terminate).
        let _ = signal_hook::flag::register(s, std::sync::Arc::new(Default::default()));
    }
    let sock = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("umacvlan broker: no socket on stdin: {e}");
            return 1;
        }
    };
    match umacvlan_io::netns::serve_broker(sock) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("umacvlan broker: {e}");
            1
        }
    }
}
