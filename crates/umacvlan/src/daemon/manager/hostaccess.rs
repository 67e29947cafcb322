//! `hostaccess on|off`: the manager keeps one host path per port while some macvlan of the
//! port has it on (the hidden injector and the host's transmit socket of
//! [`umacvlan_io::hostaccess`]), and refuses the option where it cannot be carried out. The
//! rule — which frames go to and come from the host — is the engine's
//! ([`umacvlan_core::engine::PortSnapshot::from_host`] and `transmit`).

use super::{LowerKey, Manager, OpError, OpResult};
use crate::daemon::dataplane::HostLink;
use std::sync::Arc;
use umacvlan_core::engine::{MacvlanAttrs, Port};
use umacvlan_core::wire::MacAddr;
use umacvlan_io::afpacket::LowerSocket;
use umacvlan_io::device::{LowerIo, UpperIo};
use umacvlan_io::hostaccess::{open_host_tx, HostInjector};

/// A port's host path as the manager holds it.
pub(super) struct HostPath {
    injector: Arc<HostInjector>,
    /// The socket taking the host's frames (its filter names the destinations).
    tx: Arc<LowerSocket>,
    /// The lower's MAC it was made for (its hidden device's and its socket filter's).
    mac: MacAddr,
    /// The `hostaccess` macvlans' MACs its socket filter lets through.
    dsts: Vec<MacAddr>,
}

fn unsupported(message: &str) -> OpError {
    OpError {
        errno: libc::EOPNOTSUPP,
        message: Some(message.into()),
    }
}

pub(super) fn wants_host(port: &Port) -> bool {
    port.devices().iter().any(|d| d.hostaccess)
}

/// The MACs of the port's `hostaccess` macvlans, sorted: the unicast the host sends that the
/// host path needs to see.
fn host_dsts(port: &Port) -> Vec<MacAddr> {
    let mut v: Vec<MacAddr> = port
        .devices()
        .iter()
        .filter(|d| d.hostaccess)
        .map(|d| d.mac)
        .collect();
    v.sort();
    v.dedup();
    v
}

impl Manager {
    /// Refuses `hostaccess on` where this daemon cannot carry it out: for a lower living in
    /// another namespace (the hidden device must be in the lower's namespace, and the
    /// daemon's sockets there are the broker's).
    pub(super) fn check_hostaccess(&self, attrs: &MacvlanAttrs, lower_elsewhere: bool) -> OpResult {
        if attrs.hostaccess != Some(true) {
            return Ok(());
        }
        if lower_elsewhere {
            return Err(unsupported(
                "hostaccess needs the lower in the daemon's namespace",
            ));
        }
        Ok(())
    }

    /// Makes sure the port has its host path before `port` (its next state) is published:
    /// created when `port` has a `hostaccess` macvlan and the port has none yet. Fails, with
    /// nothing created, when it cannot be made.
    pub(super) fn ensure_host(&mut self, lower: LowerKey, port: &Port) -> OpResult {
        if !wants_host(port) {
            return Ok(());
        }
        let Some(pe) = self.ports.get_mut(&lower) else {
            return Ok(());
        };
        if let Some(h) = pe.host.as_mut() {
            // Let the new destinations through before they are published (the old ones too
            // until then); the filter is made exact after the publish.
            let mut dsts = host_dsts(port);
            dsts.extend(h.dsts.iter().copied());
            dsts.sort();
            dsts.dedup();
            if dsts != h.dsts {
                h.tx.keep_only_outgoing_from(h.mac, &dsts)?;
                h.dsts = dsts;
            }
            return Ok(());
        }
        if pe.netns.is_some() {
            return Err(unsupported(
                "hostaccess needs the lower in the daemon's namespace",
            ));
        }
        let mac = port.lower().mac;
        let (link, path) = make_host(lower.1, mac, host_dsts(port), &pe.dp)?;
        pe.dp.set_host(Some(link))?;
        tracing::info!(
            lower = %port.lower().name,
            hidden = path.injector.name(),
            "host access on"
        );
        pe.host = Some(path);
        Ok(())
    }

    /// After a publish: the host path goes when no macvlan of the port has `hostaccess` on
    /// any more, and is made again when the lower's MAC changed (its hidden device and its
    /// socket filter carry it) or it is wanted but missing (a failure is logged).
    pub(super) fn sync_host(&mut self, lower: LowerKey) {
        let Some(pe) = self.ports.get_mut(&lower) else {
            return;
        };
        let want = wants_host(&pe.port) && pe.netns.is_none();
        if wants_host(&pe.port) && !want && pe.host.is_some() {
            tracing::warn!(
                lower = %pe.port.lower().name,
                "the lower moved to another namespace: host access stops until it is back"
            );
        }
        let mac = pe.port.lower().mac;
        let stale = pe.host.as_ref().is_some_and(|h| h.mac != mac);
        if pe.host.is_some() && (!want || stale) {
            if let Err(e) = pe.dp.set_host(None) {
                tracing::warn!("host path removal: {e}");
            }
            let old = pe.host.take().expect("present");
            tracing::info!(hidden = old.injector.name(), "host access off");
        }
        let dsts = host_dsts(&pe.port);
        if let Some(h) = pe.host.as_mut().filter(|h| h.dsts != dsts) {
            // A hostaccess macvlan came, went or changed its MAC.
            match h.tx.keep_only_outgoing_from(h.mac, &dsts) {
                Ok(()) => h.dsts = dsts.clone(),
                Err(e) => tracing::error!("host path filter update failed: {e}"),
            }
        }
        if want && pe.host.is_none() {
            let made = make_host(lower.1, mac, dsts, &pe.dp).and_then(|(link, path)| {
                pe.dp
                    .set_host(Some(link))
                    .map(|()| path)
                    .map_err(Into::into)
            });
            match made {
                Ok(path) => pe.host = Some(path),
                Err(e) => tracing::error!(
                    lower = %pe.port.lower().name,
                    "host access could not be set up: errno {}",
                    e.errno
                ),
            }
        }
    }
}

/// The hidden injector and the host's transmit socket for the lower `ifindex` (of the
/// daemon's namespace) whose MAC is `mac`.
fn make_host(
    ifindex: u32,
    mac: MacAddr,
    dsts: Vec<MacAddr>,
    dp: &crate::daemon::dataplane::Dataplane,
) -> OpResult<(HostLink, HostPath)> {
    let vnet = dp.vnet_hdr_len() > 0;
    // A name the user never picks: "uvh", the daemon's pid and a serial number (hex; one
    // being replaced may still be closing, so never the same name twice; at most 15 bytes).
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xf_ffff;
    let name = format!("uvh{:x}.{n:x}", std::process::id());
    let injector = Arc::new(HostInjector::create(&name, ifindex, mac, vnet)?);
    let tx = Arc::new(open_host_tx(ifindex, mac, &dsts, vnet)?);
    let link = HostLink {
        rx: tx.clone() as Arc<dyn LowerIo>,
        inject: injector.clone() as Arc<dyn UpperIo>,
    };
    Ok((
        link,
        HostPath {
            injector,
            tx,
            mac,
            dsts,
        },
    ))
}
