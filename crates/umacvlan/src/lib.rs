//! umacvlan: the userspace macvlan daemon, its I/O backends and its iproute2-style CLI.
//!
//! Layers: `umacvlan_io` (its own crate: the only code that touches file descriptors), [`daemon`] (workers, control
//! socket, lower monitoring, state), [`cli`] (iproute2 grammar and printers), [`proto`] (the
//! control protocol between them). The decisions themselves live in `umacvlan_core::engine`.

#![forbid(unsafe_code)]

pub mod cli;
pub mod cni;
pub mod daemon;
pub mod proto;
