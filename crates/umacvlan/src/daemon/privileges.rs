//! Capabilities: right after start-up the daemon gives up every capability its work does not
//! need, in every set (effective, permitted, inheritable, ambient, bounding), before it starts
//! any thread — capabilities are per thread, and threads inherit the creator's.
//!
//! Kept: `CAP_NET_ADMIN` (TAPs, links, rtnetlink changes) and `CAP_NET_RAW` (AF_PACKET sockets
//! for lowers added later in the daemon's namespace). Nothing else, `--no-netns` or not: what
//! needs more — creating a socket, a TAP or a `/proc/net` file in another namespace (setns,
//! `CAP_SYS_ADMIN`), opening `/proc/PID/ns/net` of a more privileged process
//! (`CAP_SYS_PTRACE`) — is done by the namespace broker ([`super::broker`]), a separate
//! process started before the drop, which hands the descriptors over.

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities the daemon keeps.
pub fn needed() -> CapsHashSet {
    [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW]
        .into_iter()
        .collect()
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
