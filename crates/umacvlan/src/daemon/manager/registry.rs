//! One rtnetlink socket per namespace holding macvlans, opened once: a socket in another
//! namespace is made by the namespace broker (a round trip to another process), which cost
//! several trips per `link add` when each step opened its own. Its multicast file, likewise
//! (re-read whenever a macvlan there comes up or joins a group, and by every poll). And one
//! handle of each such namespace, shared by its macvlans (a descriptor each would double the
//! daemon's).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use umacvlan_core::wire::MacAddr;
use umacvlan_io::netlink::{MulticastFile, RtNetlink};
use umacvlan_io::netns::{NetnsHandle, NetnsId};

/// The sockets, by namespace. An entry keeps its namespace alive, so entries of namespaces
/// where nothing of ours lives any more are dropped ([`retain`](Self::retain)).
#[derive(Default)]
pub(super) struct NsRegistry {
    rtnl: HashMap<NetnsId, RtNetlink>,
    mcast: HashMap<NetnsId, MulticastFile>,
    handles: HashMap<NetnsId, Arc<NetnsHandle>>,
}

impl NsRegistry {
    /// rtnetlink in `ns`; `own` (the daemon's namespace's) for `None`.
    pub(super) fn rtnl<'a>(
        &'a mut self,
        ns: Option<&NetnsHandle>,
        own: &'a mut RtNetlink,
    ) -> io::Result<&'a mut RtNetlink> {
        let Some(h) = ns else {
            return Ok(own);
        };
        Ok(match self.rtnl.entry(h.id()?) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(RtNetlink::open_in(Some(h))?),
        })
    }

    /// The multicast lists of `h`'s namespace, by ifindex, as they are now.
    pub(super) fn multicast_table(
        &mut self,
        h: &NetnsHandle,
    ) -> io::Result<HashMap<u32, Vec<MacAddr>>> {
        let f = match self.mcast.entry(h.id()?) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(MulticastFile::open_in(Some(h))?)
            }
        };
        f.table()
    }

    /// The shared handle of `h`'s namespace (`h` itself if it is the first).
    pub(super) fn share(&mut self, h: NetnsHandle) -> io::Result<Arc<NetnsHandle>> {
        Ok(self
            .handles
            .entry(h.id()?)
            .or_insert_with(|| Arc::new(h))
            .clone())
    }

    /// The namespaces whose shared handle a macvlan holds (every macvlan in another
    /// namespace holds its namespace's, from [`share`](Self::share)).
    pub(super) fn in_use(&self) -> impl Iterator<Item = NetnsId> + '_ {
        self.handles
            .iter()
            .filter(|(_, h)| Arc::strong_count(h) > 1)
            .map(|(id, _)| *id)
    }

    /// The shared handle of namespace `id`, if one is kept.
    pub(super) fn handle(&self, id: NetnsId) -> Option<&NetnsHandle> {
        self.handles.get(&id).map(|h| &**h)
    }

    /// Keeps the entries of the namespaces in `live` only.
    pub(super) fn retain(&mut self, live: &HashSet<NetnsId>) {
        self.rtnl.retain(|id, _| live.contains(id));
        self.mcast.retain(|id, _| live.contains(id));
        self.handles.retain(|id, _| live.contains(id));
    }
}
