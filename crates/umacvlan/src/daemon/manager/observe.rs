//! `trace` and `monitor` requests: the manager answers what the engine would do with a frame
//! (sending nothing), checks monitor requests, and keeps the monitor's names current.

use super::{Manager, PortEntry};
use crate::proto::{FrameSpec, MonitorRequest, Response, TraceReport, TraceRequest};
use umacvlan_core::engine::{DevId, Errno};

fn refuse(errno: Errno, message: Option<&str>) -> Response {
    Response::Error {
        errno: errno.code(),
        message: message.map(str::to_string),
    }
}

/// The frame in words, as `trace` prints it.
fn frame_text(f: &FrameSpec) -> String {
    let vlan = f.vlan.map_or(String::new(), |v| format!(" vlan {v}"));
    format!(
        "src {} dst {}{vlan} ethertype 0x{:04x} size {}",
        f.src, f.dst, f.ethertype, f.size
    )
}

/// Gives the port's monitor the names it prints.
pub(super) fn publish_names(pe: &PortEntry) {
    let lower = pe.port.lower();
    pe.dp.monitor_tap().set_names(
        &lower.name,
        lower.ifindex,
        pe.port.bc_queue_len_used(),
        pe.port.devices(),
    );
}

impl Manager {
    /// Hands the manager the hub its ports report to (before any port exists).
    pub fn set_monitor(&mut self, hub: std::sync::Arc<crate::daemon::monitor::MonitorHub>) {
        self.monitor = Some(hub);
    }

    /// `trace dev NAME frame …` / `trace lower NAME frame …`.
    pub(super) fn trace(&self, t: &TraceRequest) -> Response {
        if t.frame.size > FrameSpec::MAX_SIZE {
            return refuse(Errno::EINVAL, Some("frame size above 65535"));
        }
        if t.frame.vlan.is_some_and(|v| v > 4095) {
            return refuse(Errno::EINVAL, Some("VLAN id above 4095"));
        }
        let frame = t.frame.build();
        let (pe, from) = match (&t.dev, t.lower.as_ref().or(t.host.as_ref())) {
            (Some(dev), None) => match self.find(dev) {
                Some((l, id)) => (&self.ports[&l], Some(id)),
                None => return refuse(Errno::ENODEV, None),
            },
            (None, Some(lower)) if t.lower.is_none() || t.host.is_none() => {
                match self.ports.values().find(|p| &p.port.lower().name == lower) {
                    Some(pe) => (pe, None),
                    None => return refuse(Errno::ENODEV, None),
                }
            }
            _ => {
                return refuse(
                    Errno::EINVAL,
                    Some("trace needs exactly one of dev and lower"),
                )
            }
        };
        // The snapshot the data plane uses right now.
        let view = pe.dp.view();
        let name = |id: DevId| {
            pe.port
                .device(id)
                .map_or_else(|| format!("#{}", id.0), |d| d.name.clone())
        };
        let lower = &pe.port.lower().name;
        let (entry, trace) = match from {
            Some(id) => {
                let mode = pe.port.device(id).map(|d| d.mode);
                (
                    format!(
                        "macvlan {} ({}) on {lower}: sends the frame",
                        name(id),
                        mode.map_or("?", |m| m.as_str())
                    ),
                    view.snap.explain_transmit(id, &frame, &name),
                )
            }
            None if t.host.is_some() => (
                format!("host of {lower}: the lower's own stack sends the frame (hostaccess)"),
                view.snap.explain_from_host(&frame, &name),
            ),
            None => (
                format!("lower {lower}: the frame arrives from the wire"),
                view.snap.explain_receive(&frame, &name),
            ),
        };
        Response::Trace {
            trace: TraceReport {
                entry,
                frame: frame_text(&t.frame),
                trace,
            },
        }
    }

    /// A monitor request is valid when its device exists; the control socket then streams.
    pub(super) fn monitor_check(&self, m: &MonitorRequest) -> Response {
        if let Some(dev) = &m.dev {
            if self.find(dev).is_none() {
                return refuse(Errno::ENODEV, None);
            }
        }
        if self.monitor.is_none() {
            return refuse(Errno::EOPNOTSUPP, Some("this daemon has no monitor"));
        }
        Response::Ok
    }
}
