//! The macvlan semantics (drivers/net/macvlan.c, Linux 6.18) as pure, deterministic code.
//!
//! - [`Port`]: the control plane of one lower device — its macvlans and every control operation,
//!   each validated completely before anything changes and failing with the kernel's errno.
//! - [`PortSnapshot`]: an immutable view built by [`Port::snapshot`] for the data plane, whose
//!   per-frame decisions ([`PortSnapshot::receive`], [`PortSnapshot::transmit`],
//!   [`PortSnapshot::flood_from_wire`]) fill caller-owned [`RxOutcome`]/[`TxOutcome`] buffers.
//! - [`DevCounters`]: the kernel's counting rules; kept per worker by the data plane.
//! - [`BcQueue`] and [`Defragmenter`]: the broadcast queue rule and IPv4 reassembly.
//!
//! ```
//! use umacvlan_core::engine::*;
//! use umacvlan_core::wire::MacAddr;
//!
//! let lower = LowerState::ethernet(2, "eth0", "02:00:00:00:00:01".parse().unwrap(), 1500);
//! let mut port = Port::create(lower).unwrap();
//! let req = NewDevice {
//!     name: "mv0".into(),
//!     mac: Some("02:00:00:00:00:10".parse().unwrap()),
//!     attrs: MacvlanAttrs { mode: Some(Mode::Bridge.bits()), ..Default::default() },
//!     ..Default::default()
//! };
//! let id = port.add_device(&req, 0).unwrap();
//! port.open(id).unwrap();
//! let snap = port.snapshot();
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
//! frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
//! let mut out = RxOutcome::default();
//! snap.receive(&frame, &mut out);
//! assert_eq!(out.deliveries[0].dev, id);
//! assert!(!out.lower_stack);
//! ```

mod bcqueue;
mod counters;
mod defrag;
pub mod event;
pub mod fastpath;
pub mod hash;
mod port;
mod snapshot;
mod table;
mod types;

pub use bcqueue::BcQueue;
pub use counters::{DevCounters, PortCounters};
pub use defrag::{Defrag, DefragLimits, Defragmenter};
pub use port::{
    AddUndo, ChangeStamp, DevId, Device, LowerFilters, LowerMacCause, LowerState, MacChange, Port,
    Removed,
};
pub use snapshot::{
    rx_rule, tx_rule, BcSource, Delivery, DevSnap, PortSnapshot, RxOutcome, RxReason, Trace,
    TraceLine, TxOutcome, TxReason,
};
pub use table::MacTable;
pub use types::*;
