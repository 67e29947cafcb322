//! umacvlan-core: the Linux macvlan driver's semantics as a pure library.
//!
//! - [`wire`]: zero-copy views of Ethernet/802.1Q frames and IPv4 headers, [`wire::MacAddr`].
//! - [`engine`]: ports, devices, control operations with the kernel's errors, receive and
//!   transmit decisions, filters, source lists, the broadcast queue, counters.
//!
//! No syscalls, no threads, no clocks: time is passed in where it matters (IPv4 reassembly).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod wire;
