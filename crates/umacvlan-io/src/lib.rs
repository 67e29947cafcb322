//! umacvlan-io: every file descriptor umacvlan touches, behind small safe types.
//!
//! - [`afpacket`]: [`LowerSocket`], the AF_PACKET socket that drives the lower device, with
//!   batched receive into a preallocated [`RxBatch`] and the kernel-refcounted memberships
//!   ([`Membership`], [`MembershipSet`], [`reconcile`]).
//! - [`tap`]: [`Tap`], one macvlan's upper device, creatable in any network namespace.
//! - [`netns`]: [`NetnsHandle`], an owned network-namespace fd; [`socket_in`] and [`open_in`],
//!   which create descriptors in another namespace (through the fd [`Broker`] when one is
//!   installed); and [`NetnsHandle::run_in`].
//! - [`netlink`]: a small synchronous rtnetlink client ([`RtNetlink`]) and [`LinkMonitor`].
//! - [`epoll`]: [`Epoll`] and [`EventFd`] for the workers' event loops.
//! - [`device`]: the [`LowerIo`]/[`UpperIo`] traits the data plane is written against.
//! - [`mem`]: in-memory implementations of them for root-less tests of daemon logic.
//!
//! This is the only crate of the project allowed to use `unsafe`; every block is tiny, sits
//! behind a safe function and says why it is sound. Most of it lives in the private `sys`
//! module.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod afpacket;
pub mod bpf;
pub mod device;
pub mod epoll;
pub mod hostaccess;
pub mod mem;
pub mod netlink;
pub mod netns;
mod sys;
pub mod tap;

pub use afpacket::{
    reconcile, Fanout, FanoutMode, LowerOptions, LowerSocket, Membership, MembershipOps,
    MembershipSet, PacketStats, PacketType, ReconcileError, RxBatch, RxFrame, VlanTag,
    DEFAULT_FRAME_CAPACITY, MAX_BATCH,
};
pub use device::{LowerIo, UpperIo};
pub use epoll::{Epoll, Event, EventFd, Events, Interest};
pub use mem::{MemLower, MemLowerHandle, MemUpper, MemUpperHandle};
pub use netlink::{
    iff, multicast_addresses, multicast_addresses_in, parse_dev_mcast, DevMcastEntry, LinkChange,
    LinkEvent, LinkMonitor, LinkState, NetlinkError, NlResult, OperState, RtNetlink,
};
pub use netns::{name_of, names, open_in, socket_in, Broker, NetnsHandle, NetnsId};
pub use sys::raise_nofile_limit;
pub use tap::{Tap, TapOptions};
pub use umacvlan_core::wire::MacAddr;

/// The process, user and group at the other end of a Unix socket (`SO_PEERCRED`), as the
/// kernel recorded them at connect time.
pub fn peer_credentials(sock: &impl std::os::fd::AsRawFd) -> std::io::Result<(u32, u32, u32)> {
    let (c, _) = sys::getsockopt::<libc::ucred>(sock, libc::SOL_SOCKET, libc::SO_PEERCRED)?;
    Ok((c.pid as u32, c.uid, c.gid))
}
