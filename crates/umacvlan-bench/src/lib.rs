//! umacvlan's benchmark suite, driven by `bench/run` (see `bench/README.md`).
//!
//! One binary, `umacvlan-bench`, holds every tool the suite needs:
//! - `run`: the orchestrator ([`runner`]): builds the same two-endpoint lab for each system
//!   ([`systems`]), measures each the same way ([`measure`], [`control`], [`scale`]),
//!   repeats, and writes raw JSON, a Markdown report with ratios to the kernel macvlan
//!   ([`report`]) and SVG plots ([`plot`]) with the machine's facts ([`facts`]);
//! - `tapfwd`: the minimal TAP→TAP forwarder, the floor of any TAP-based switch ([`tapfwd`]);
//! - `l2`: the raw-frame generator and sink over AF_PACKET ([`l2`]);
//! - `sweep`: removes what a killed run left behind ([`cmd::sweep`]);
//! - `report`: redraws the report and plots of an earlier run.
//!
//! Invoked under the name `umacvlan` (a symlink), the binary is the umacvlan command itself
//! ([`umacvlan::cli::main_entry`]); the smoke test uses that to run the suite against a debug
//! build without building the `umacvlan` package's binary separately.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cmd;
pub mod control;
pub mod ctlscale;
pub mod facts;
pub mod l2;
pub mod measure;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod runner;
pub mod scale;
pub mod stats;
pub mod systems;
pub mod tapfwd;

/// Address of endpoint A (198.18.0.0/15 is the range reserved for benchmarking, RFC 2544).
pub const A_IP: &str = "198.18.0.1";
/// Address of endpoint B.
pub const B_IP: &str = "198.18.0.2";
/// Prefix length of the endpoints' subnet.
pub const PREFIX: u8 = 24;
/// Address of the "external host" (the hairpin bridge) in the VEPA labs.
pub const EXT_CIDR: &str = "198.18.0.254/24";
/// The lab tag: every namespace is `umv-bench-<pid>-<n>-…`.
pub const TAG: &str = "bench";
