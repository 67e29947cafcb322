//! Moving one port's [`FastPathTables`] into the maps, entry by entry. Each entry is
//! self-contained, so a frame sees either an entry's old or its new value, never half of one;
//! new and changed entries are written before stale ones are removed, so a macvlan's entries
//! are gone before the daemon deletes its device.

use super::maps::{
    DevEntry, MacKey, PortEntry, DEV_HOSTACCESS, DEV_PEER_LOCAL, DEV_UP, PORT_HOST, PORT_LOWER_UP,
    PORT_PASSTHRU,
};
use super::{FastPath, FastPathError};
use std::collections::{BTreeMap, BTreeSet};
use umacvlan_core::engine::fastpath::{FastPathTables, FpDev};
use umacvlan_core::engine::DevId;

/// What was last written for one port, to remove exactly that later.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    macs: BTreeMap<[u8; 6], DevEntry>,
    devs: BTreeMap<u32, DevEntry>,
    sources: BTreeSet<[u8; 6]>,
    port: Option<PortEntry>,
}

impl Applied {
    /// Hidden ends that have an entry.
    pub fn hidden(&self) -> impl Iterator<Item = u32> + '_ {
        self.devs.keys().copied()
    }
}

/// A macvlan's hidden end, as the maps need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiddenEnd {
    /// Its ifindex (the daemon's namespace).
    pub ifindex: u32,
    /// Whether the macvlan end is in the same namespace (`bpf_redirect_peer` only crosses
    /// namespaces, so the programs reach it another way).
    pub peer_local: bool,
}

impl From<u32> for HiddenEnd {
    /// A hidden end whose macvlan end is in another namespace (the usual case).
    fn from(ifindex: u32) -> HiddenEnd {
        HiddenEnd {
            ifindex,
            peer_local: false,
        }
    }
}

fn entry(lower: u32, d: &FpDev, hidden: HiddenEnd) -> DevEntry {
    let mut flags = if d.up { DEV_UP } else { 0 };
    if hidden.peer_local {
        flags |= DEV_PEER_LOCAL;
    }
    if d.hostaccess {
        flags |= DEV_HOSTACCESS;
    }
    DevEntry {
        hidden_ifindex: hidden.ifindex,
        lower_ifindex: lower,
        mode: d.mode.bits(),
        flags,
    }
}

fn mac_key(lower: u32, mac: [u8; 6]) -> MacKey {
    MacKey {
        lower_ifindex: lower,
        mac,
        pad: [0; 2],
    }
}

impl FastPath {
    /// Makes the maps of lower `lower` say what `t` says; `hidden` gives each macvlan's hidden
    /// end (a macvlan without one yet is left out, and so stays on no path until it has one).
    /// `prev` is what the last call wrote; it becomes what this one wrote.
    pub fn apply(
        &mut self,
        lower: u32,
        t: &FastPathTables,
        hidden: &dyn Fn(DevId) -> Option<HiddenEnd>,
        prev: &mut Applied,
    ) -> Result<(), FastPathError> {
        let mut next = Applied::default();
        for d in &t.devs {
            if let Some(h) = hidden(d.id) {
                next.devs.insert(h.ifindex, entry(lower, d, h));
            }
        }
        for (mac, d) in &t.macs {
            if let Some(h) = hidden(d.id) {
                next.macs.insert(mac.octets(), entry(lower, d, h));
            }
        }
        let mut port = PortEntry {
            flags: if t.lower_up { PORT_LOWER_UP } else { 0 },
            max_frame: t.max_frame,
            passthru: DevEntry::default(),
            mac: t.lower_mac.octets(),
            pad: [0; 2],
        };
        if t.host_any {
            port.flags |= PORT_HOST;
        }
        if let Some(p) = &t.passthru {
            if let Some(h) = hidden(p.id) {
                port.flags |= PORT_PASSTHRU;
                port.passthru = entry(lower, p, h);
            }
        }
        next.port = Some(port);
        next.sources = t.sources.iter().map(|m| m.octets()).collect();

        // Counters first, so a new macvlan's first frame is counted.
        for h in next.devs.keys() {
            if !prev.devs.contains_key(h) {
                self.reset_stats(*h)?;
            }
        }
        if prev.port.is_none() {
            self.reset_stats(lower)?;
        }
        for (h, e) in &next.devs {
            if prev.devs.get(h) != Some(e) {
                self.set_dev(*h, *e)?;
            }
        }
        for (m, e) in &next.macs {
            if prev.macs.get(m) != Some(e) {
                self.set_mac(mac_key(lower, *m), *e)?;
            }
        }
        for m in next.sources.difference(&prev.sources) {
            self.set_source(mac_key(lower, *m))?;
        }
        if prev.port != next.port {
            self.set_port(lower, port)?;
        }
        let stale_macs: BTreeSet<_> = prev
            .macs
            .keys()
            .filter(|m| !next.macs.contains_key(*m))
            .copied()
            .collect();
        for m in stale_macs {
            self.remove_mac(&mac_key(lower, m));
        }
        let stale_devs: Vec<u32> = prev
            .devs
            .keys()
            .filter(|h| !next.devs.contains_key(*h))
            .copied()
            .collect();
        for m in prev.sources.difference(&next.sources) {
            self.remove_source(&mac_key(lower, *m));
        }
        for h in stale_devs {
            self.remove_dev(h);
            self.remove_stats(h);
        }
        *prev = next;
        Ok(())
    }

    /// Removes everything `prev` wrote for lower `lower` (the port is going away, or leaving
    /// the fast path): its counters too when `counters`.
    pub fn clear(&mut self, lower: u32, prev: &mut Applied, counters: bool) {
        for m in prev.macs.keys() {
            self.remove_mac(&mac_key(lower, *m));
        }
        for m in &prev.sources {
            self.remove_source(&mac_key(lower, *m));
        }
        for h in prev.devs.keys() {
            self.remove_dev(*h);
            if counters {
                self.remove_stats(*h);
            }
        }
        self.remove_port(lower);
        if counters {
            self.remove_stats(lower);
        }
        *prev = Applied::default();
    }
}
