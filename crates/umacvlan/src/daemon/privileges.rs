//! Capabilities: right after start-up the daemon gives up every capability its work does not
//! need, in every set (effective, permitted, inheritable, ambient, bounding), before it starts
//! any thread — capabilities are per thread, and threads inherit the creator's.
//!
//! Kept: `CAP_NET_ADMIN` (TAPs, links, rtnetlink changes) and `CAP_NET_RAW` (AF_PACKET sockets
//! for lowers added later), and, unless `--no-netns`:
//! - `CAP_SYS_ADMIN`, which setns(2) demands: the daemon enters other network namespaces to
//!   create TAPs there, to follow TAPs moved there with rtnetlink, and to read their multicast
//!   lists (`/proc/net/dev_mcast` has no netlink equivalent);
//! - `CAP_SYS_PTRACE`, for `netns PID`: opening `/proc/PID/ns/net` (or `setns` on a pidfd)
//!   needs ptrace access to PID, which a daemon with fewer capabilities than that process has
//!   only with it. (iproute2 passes the pid to the kernel, which needs no such check.)

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities the daemon keeps.
pub fn needed(netns: bool) -> CapsHashSet {
    let mut keep: CapsHashSet = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW]
        .into_iter()
        .collect();
    if netns {
        keep.insert(Capability::CAP_SYS_ADMIN);
        keep.insert(Capability::CAP_SYS_PTRACE);
    }
    keep
}

/// Drops the calling thread to `keep` (intersected with what it has). Call before spawning
/// threads. Returns the effective set afterwards.
pub fn drop_to(keep: &CapsHashSet) -> Result<CapsHashSet, caps::errors::CapsError> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes with the rest.
    // A capability this kernel does not know reads as an error: nothing to drop.
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    // Ambient capabilities need kernel 4.3; without them there is nothing to clear.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::clear(None, CapSet::Inheritable)?;
    let have = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = keep.intersection(&have).copied().collect();
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    caps::read(None, CapSet::Effective)
}
