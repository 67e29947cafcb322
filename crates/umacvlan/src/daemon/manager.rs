//! The control core: owns every port (engine state, data plane, lower memberships) and every
//! macvlan's TAP, and applies requests and observed changes to all of them.
//!
//! One thread owns the [`Manager`]; nothing here is shared, so no locks. A request changes the
//! system only once the engine has accepted it, and a system step that fails is undone with
//! what came before it, so a refused request changes nothing (`link add` changes the port in
//! place and takes the device back; `link set` is tried on a copy of the port).
//!
//! Here: the manager's state, requests' dispatch, publication and removal. The rest, in
//! `impl Manager` blocks by responsibility: `requests` (link add/set/del), `follow` (the
//! system's own changes: link events, multicast lists), `present` (`link show`, `ports`, the
//! state file's view), `system` (lowers opened, TAPs made), `registry` (one rtnetlink socket
//! per namespace), `hostaccess`, `observe` (trace, monitor).
//!
//! The daemon's loop applies every request and event queued, then [`Manager::flush`]es once:
//! each changed port is published to its data plane once per turn, not once per change (a
//! publication costs O(macvlans on the port)), and macvlans added up have their TAPs brought
//! up after that (the data plane must know a macvlan up before its TAP is).

use super::dataplane::{Dataplane, View};
use super::fastpath::{FastState, Upper};
use super::lower_refs::LowerRefs;

// `impl Manager` blocks, one file per responsibility: following the system's changes, host
// access, trace and monitor requests, presentation, the namespace registry (one rtnetlink
// socket per namespace), link add/set/del, system side effects.
mod follow;
mod hostaccess;
mod observe;
mod present;
mod registry;
mod requests;
mod system;
use crate::proto::{
    LinkAdd, LinkCounters, LinkInfo, LinkSet, NetnsRef, PortInfo, Request, Response, Stats64,
    PROTOCOL_VERSION,
};
use present::netns_text;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use system::{noqueue_qdisc, sync_tap};
use umacvlan_core::engine::{
    ControlError, DevCounters, DevId, Device, Errno, LowerFilters, LowerMacCause, LowerState,
    MacChange, MacvlanAttrs, Mode, NewDevice, Port, MIN_MTU,
};
use umacvlan_core::wire::MacAddr;
use umacvlan_io::afpacket::{
    Fanout, FanoutMode, LowerOptions, LowerSocket, Membership, MembershipSet,
};
use umacvlan_io::device::{LowerIo, UpperIo};
use umacvlan_io::netlink::{iff, LinkChange, LinkEvent, LinkState, OperState, RtNetlink};
use umacvlan_io::netns::{NetnsHandle, NetnsId};
use umacvlan_io::tap::{Tap, TapOptions};

/// Daemon settings the manager needs.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// Data-plane workers per port.
    pub workers: usize,
}

/// One macvlan's system side.
struct DevEntry {
    tap: Arc<Upper>,
    /// The namespace the TAP lives in; `None`: the daemon's. Shared by the macvlans there.
    netns: Option<Arc<NetnsHandle>>,
    /// How the namespace was named when the macvlan was placed there (for the state file).
    netns_ref: Option<NetnsRef>,
    /// The TAP's ifindex in its namespace.
    ifindex: u32,
    /// Creation order across all ports.
    seq: u64,
    /// The CNI attachment it was made for.
    cni: Option<Box<crate::proto::CniAttachment>>,
    /// Its last record for the state file and the device's stamp it was built at (see
    /// [`Manager::config`]).
    config: Option<(
        umacvlan_core::engine::ChangeStamp,
        Arc<crate::proto::LinkAdd>,
    )>,
}

/// A macvlan added up in this turn, whose TAP comes up in [`Manager::flush`] once the data
/// plane has been given the view that has it up: its `seq` (which tells it from a later
/// macvlan given the same id in the same turn) and the request that asked for it.
#[derive(Clone, Copy)]
struct PendingUp {
    seq: u64,
    op: u64,
}

/// A system step of `link set` already taken, with what undoes it.
enum LinkSetStep {
    /// The passthru lower's address was changed from this one.
    LowerMac(MacAddr),
    /// The TAP moved out of this namespace (and its name for the state file).
    Moved(Option<Arc<NetnsHandle>>, Option<NetnsRef>),
    /// The TAP's address, MTU and state were (perhaps partly) set.
    TapSynced,
}

/// A lower device: its namespace (`None`: the daemon's) and its ifindex there. A lower moved
/// to another namespace keeps its port, under a new key.
type LowerKey = (Option<NetnsId>, u32);

/// One lower device with its macvlans.
struct PortEntry {
    port: Port,
    /// The lower's namespace when it is not the daemon's (it was moved there).
    netns: Option<NetnsHandle>,
    /// rtnetlink in that namespace (`None`: use the daemon's).
    rtnl: Option<RtNetlink>,
    /// How that namespace was named when the port was made there (`link-netns`,
    /// `linkInContainer`), for the state file; `None` for a lower followed there.
    netns_ref: Option<NetnsRef>,
    dp: Dataplane,
    /// Holds the lower's filter memberships; they vanish with it (and with the daemon).
    members_sock: LowerSocket,
    members: MembershipSet,
    /// Promiscuity/allmulti references beyond the first (one per macvlan, as the kernel).
    refs: LowerRefs,
    devs: BTreeMap<DevId, DevEntry>,
    /// The host path, while some macvlan has `hostaccess on` (see [`hostaccess`]).
    host: Option<hostaccess::HostPath>,
    /// Its macvlans are on the eBPF fast path (veth pairs and programs); otherwise on the TAP
    /// path. Fixed when the port is made: see [`Manager::port_on_bpf`].
    bpf: bool,
}

/// A change of one macvlan's TAP, as the system reported it.
#[derive(Clone, Debug)]
pub struct TapObserved {
    /// Up.
    pub up: bool,
    /// MTU.
    pub mtu: u32,
    /// MAC.
    pub mac: MacAddr,
    /// `promiscuity > 0`.
    pub promisc: bool,
    /// `allmulti > 0`.
    pub allmulti: bool,
}

/// An error for a client: errno and, where the kernel has one, its message.
#[derive(Debug)]
pub struct OpError {
    errno: i32,
    message: Option<String>,
}

impl From<ControlError> for OpError {
    fn from(e: ControlError) -> Self {
        OpError {
            errno: e.errno.code(),
            message: e.extack.map(str::to_string),
        }
    }
}

impl From<io::Error> for OpError {
    fn from(e: io::Error) -> Self {
        OpError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            message: None,
        }
    }
}

impl From<umacvlan_io::netlink::NetlinkError> for OpError {
    fn from(e: umacvlan_io::netlink::NetlinkError) -> Self {
        OpError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            message: e.extack().map(str::to_string),
        }
    }
}

fn errno(e: Errno) -> OpError {
    ControlError::new(e).into()
}

type OpResult<T = ()> = Result<T, OpError>;

/// `dev_valid_name`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// What the engine needs to know about a lower, from rtnetlink and its multicast list.
pub fn lower_state(l: &LinkState) -> LowerState {
    lower_state_in(None, l)
}

/// [`lower_state`] of a lower in namespace `ns` (`None`: the caller's).
fn lower_state_in(ns: Option<&NetnsHandle>, l: &LinkState) -> LowerState {
    let mut s = lower_flags(l);
    let ifindex = l.ifindex;
    s.mc_list = umacvlan_io::netlink::multicast_addresses_in(ns, ifindex).unwrap_or_default();
    s
}

/// [`lower_state`] without the multicast list (which costs a read of `/proc/net/dev_mcast`).
fn lower_flags(l: &LinkState) -> LowerState {
    LowerState {
        ifindex: l.ifindex,
        name: l.name.clone(),
        mac: l.mac.unwrap_or_default(),
        mtu: l.mtu,
        max_mtu: l.max_mtu.unwrap_or(umacvlan_core::engine::MAX_MTU),
        is_ether: l.link_type == 1 && l.mac.is_some(),
        is_loopback: l.flags & iff::LOOPBACK != 0,
        // A bridge/bond/team port's rx handler is taken; so is a lower of kernel macvlans, which
        // we cannot see from here (the kernel then refuses its own, not ours).
        rx_handler_busy: l.master.is_some(),
        up: l.flags & iff::UP != 0,
        carrier: l.carrier.unwrap_or(l.flags & iff::LOWER_UP != 0),
        dormant: l.operstate == OperState::Dormant,
        promisc: l.promiscuity > 0,
        allmulti: l.allmulti.unwrap_or(0) > 0 || l.flags & iff::ALLMULTI != 0,
        mc_list: Vec::new(),
    }
}

/// The packet-socket memberships that realise the engine's [`LowerFilters`].
fn wanted_members(f: &LowerFilters) -> MembershipSet {
    let mut s: MembershipSet = f.unicast.iter().map(|m| Membership::Unicast(*m)).collect();
    s.extend(f.multicast.iter().map(|m| Membership::Multicast(*m)));
    if f.promisc > 0 {
        s.insert(Membership::Promisc);
    }
    if f.allmulti > 0 {
        s.insert(Membership::AllMulti);
    }
    s
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ (std::process::id() as u64) << 32;
    }
    u64::from_ne_bytes(b)
}

/// The control core.
pub struct Manager {
    /// Restores passthru lowers' addresses should the daemon die (see [`super::guardian`]).
    guardian: Option<super::guardian::Guardian>,
    /// rtnetlink in the daemon's namespace.
    rtnl: RtNetlink,
    ports: BTreeMap<LowerKey, PortEntry>,
    opts: ManagerOptions,
    seq: u64,
    /// Where ports' data planes report decisions while someone monitors.
    monitor: Option<Arc<super::monitor::MonitorHub>>,
    /// The eBPF fast path, when the daemon runs `--datapath bpf` (see [`super::fastpath`]).
    fast: Option<FastState>,
    /// Asked by the data planes to re-read multicast lists (see [`super::group_refresh`]).
    group_refresh: Option<Arc<super::group_refresh::GroupRefresh>>,
    /// Ports changed since the last [`flush`](Self::flush), published there.
    dirty: BTreeSet<LowerKey>,
    /// TAPs [`flush`](Self::flush) brings up. Until then, what events say of them is older
    /// than the engine's state (they were created down) and is not followed.
    pending_up: BTreeMap<(LowerKey, DevId), PendingUp>,
    /// Devices whose multicast list may have changed, re-read in [`flush`](Self::flush) with
    /// one read of each namespace's list.
    mc_pending: BTreeSet<(Option<NetnsId>, u32)>,
    /// Requests handled so far (numbers them for [`flush`](Self::flush)'s answers).
    ops: u64,
    /// Every macvlan by name, and by its TAP's namespace and ifindex: requests and events look
    /// devices up by these, and a scan of every port would make each cost O(macvlans).
    by_name: HashMap<String, (LowerKey, DevId)>,
    by_tap: HashMap<(Option<NetnsId>, u32), (LowerKey, DevId)>,
    /// rtnetlink in the namespaces holding TAPs.
    nsreg: registry::NsRegistry,
    /// A macvlan left or moved: [`flush`](Self::flush) drops registry entries no longer used.
    ns_prune: bool,
    /// The daemon's namespace (this thread never leaves it), known once rather than opened
    /// for every request that names a namespace.
    own_ns: Option<NetnsId>,
}

impl Manager {
    /// A manager for the calling thread's namespace.
    pub fn new(opts: ManagerOptions) -> io::Result<Manager> {
        Ok(Manager {
            guardian: None,
            rtnl: RtNetlink::open()?,
            ports: BTreeMap::new(),
            opts,
            seq: 0,
            monitor: None,
            fast: None,
            group_refresh: None,
            dirty: BTreeSet::new(),
            pending_up: BTreeMap::new(),
            mc_pending: BTreeSet::new(),
            ops: 0,
            by_name: HashMap::new(),
            by_tap: HashMap::new(),
            nsreg: registry::NsRegistry::default(),
            ns_prune: false,
            own_ns: NetnsHandle::current().and_then(|h| h.id()).ok(),
        })
    }

    /// Answers one request, completely: published and its TAPs up.
    pub fn handle(&mut self, req: Request) -> Response {
        let (op, mut r) = self.handle_deferred(req);
        for (o, late) in self.flush() {
            if o == op {
                r = late;
            }
        }
        r
    }

    /// Answers one request, leaving the publication of its changes to [`flush`](Self::flush),
    /// which the caller must call before sending the answer. Returns the request's number (a
    /// `flush` failure names it) and the answer.
    pub fn handle_deferred(&mut self, req: Request) -> (u64, Response) {
        self.ops += 1;
        (self.ops, self.handle_one(req))
    }

    /// Publishes every port changed since the last call (once each), then brings up the TAPs
    /// of macvlans added up. A TAP that cannot come up takes its macvlan away again; the
    /// answer of the request that added it becomes that error (returned with the request's
    /// number). Within a `-batch`, requests after it were already applied by then.
    pub fn flush(&mut self) -> Vec<(u64, Response)> {
        self.flush_multicast();
        for lower in std::mem::take(&mut self.dirty) {
            self.commit(lower);
        }
        let mut failed = Vec::new();
        for ((lower, id), p) in std::mem::take(&mut self.pending_up) {
            let Some(pe) = self.ports.get(&lower) else {
                continue;
            };
            if pe.devs.get(&id).is_none_or(|e| e.seq != p.seq) {
                continue;
            }
            if !pe.port.device(id).is_some_and(|d| d.up) {
                continue;
            }
            if let Err(err) = self.bring_up(lower, id) {
                self.remove(lower, id);
                failed.push((
                    p.op,
                    Response::Error {
                        errno: err.errno,
                        message: err.message,
                    },
                ));
            }
        }
        if std::mem::take(&mut self.ns_prune) {
            let live: std::collections::HashSet<NetnsId> = self
                .ports
                .values()
                .flat_map(|pe| {
                    pe.netns
                        .iter()
                        .chain(pe.devs.values().filter_map(|d| d.netns.as_deref()))
                })
                .filter_map(|n| n.id().ok())
                .collect();
            self.nsreg.retain(&live);
        }
        failed
    }

    /// Brings a new macvlan's device (a TAP, or a veth pair's far end) up, with a kernel
    /// macvlan's qdisc (see [`noqueue_qdisc`]), through its namespace's rtnetlink socket: it
    /// was made in this turn, so its ifindex there is the one recorded.
    fn bring_up(&mut self, lower: LowerKey, id: DevId) -> OpResult {
        let e = &self.ports[&lower].devs[&id];
        let rtnl = self.nsreg.rtnl(e.netns.as_deref(), &mut self.rtnl)?;
        if let Err(err) = rtnl.set_root_qdisc_noqueue(e.ifindex) {
            tracing::warn!("could not give a TAP the noqueue qdisc: {err}");
        }
        rtnl.set_link(
            e.ifindex,
            &LinkChange {
                up: Some(true),
                ..Default::default()
            },
        )?;
        Ok(())
    }

    /// Publishes `lower` in the next [`flush`](Self::flush).
    fn commit_later(&mut self, lower: LowerKey) {
        self.dirty.insert(lower);
    }

    fn handle_one(&mut self, req: Request) -> Response {
        let r = match req {
            Request::Hello => {
                return Response::Hello {
                    version: PROTOCOL_VERSION,
                    daemon: env!("CARGO_PKG_VERSION").to_string(),
                }
            }
            Request::LinkShow { name } => return self.show(name.as_deref()),
            Request::PortShow => return self.ports_info(),
            Request::LinkStats => return self.link_counters(),
            Request::Trace(t) => return self.trace(&t),
            Request::Monitor(m) => return self.monitor_check(&m),
            Request::LinkAdd(a) => self.link_add(&a),
            Request::LinkSet(s) => self.link_set(&s),
            Request::LinkDel { name } => self.link_del(&name),
            // The daemon's loop answers it (it owns the configuration file).
            Request::Reload => Err(errno(Errno::EOPNOTSUPP)),
        };
        match r {
            Ok(()) => Response::Ok,
            Err(e) => Response::Error {
                errno: e.errno,
                message: e.message,
            },
        }
    }

    fn find(&self, name: &str) -> Option<(LowerKey, DevId)> {
        let hit = *self.by_name.get(name)?;
        let valid = self
            .ports
            .get(&hit.0)
            .and_then(|p| p.port.device(hit.1))
            .is_some_and(|d| d.name == name);
        debug_assert!(valid, "name index out of date for {name}");
        if !valid {
            return self
                .ports
                .iter()
                .find_map(|(l, p)| p.port.device_by_name(name).map(|d| (*l, d.id)));
        }
        Some(hit)
    }

    fn find_by_tap(&self, ns: Option<NetnsId>, ifindex: u32) -> Option<(LowerKey, DevId)> {
        let hit = *self.by_tap.get(&(ns, ifindex))?;
        let valid = self
            .ports
            .get(&hit.0)
            .and_then(|p| p.devs.get(&hit.1))
            .is_some_and(|d| {
                d.ifindex == ifindex && d.netns.as_deref().and_then(|n| n.id().ok()) == ns
            });
        debug_assert!(valid, "TAP index out of date for {ifindex}");
        if !valid {
            return self.ports.iter().find_map(|(l, p)| {
                p.devs
                    .iter()
                    .find(|(_, d)| {
                        d.ifindex == ifindex && d.netns.as_deref().and_then(|n| n.id().ok()) == ns
                    })
                    .map(|(id, _)| (*l, *id))
            });
        }
        Some(hit)
    }

    /// Rebuilds [`by_name`](Self::by_name) and [`by_tap`](Self::by_tap) after a change that
    /// moved TAPs or ports (rare: adds and removes update them in place).
    fn reindex(&mut self) {
        self.ns_prune = true;
        self.by_name.clear();
        self.by_tap.clear();
        for (l, p) in &self.ports {
            for (id, e) in &p.devs {
                if let Some(d) = p.port.device(*id) {
                    self.by_name.insert(d.name.clone(), (*l, *id));
                }
                self.by_tap.insert(
                    (e.netns.as_deref().and_then(|n| n.id().ok()), e.ifindex),
                    (*l, *id),
                );
            }
        }
    }

    fn resolve_netns(&self, r: &NetnsRef) -> OpResult<Option<NetnsHandle>> {
        let h = match r {
            NetnsRef::Name(n) if n.contains('/') => NetnsHandle::from_path(n),
            NetnsRef::Name(n) => NetnsHandle::from_name(n),
            NetnsRef::Pid(p) => NetnsHandle::from_pid(*p),
        }
        .map_err(|e| match e.raw_os_error() {
            // It exists but is no network namespace: the kernel's answer to such an
            // `IFLA_NET_NS_FD`.
            Some(libc::EINVAL) => errno(Errno::EINVAL),
            code => OpError {
                errno: code.unwrap_or(libc::EINVAL),
                message: Some(format!("Invalid \"netns\" value \"{}\"", netns_text(r))),
            },
        })?;
        // The daemon's own namespace is kept as `None`.
        let own = match self.own_ns {
            Some(id) => h.id().ok() == Some(id),
            None => h.is_current().unwrap_or(false),
        };
        Ok(if own { None } else { Some(h) })
    }

    fn name_exists(&mut self, ns: Option<&NetnsHandle>, name: &str) -> OpResult<bool> {
        if self.find(name).is_some() {
            return Ok(true);
        }
        let rtnl = self.nsreg.rtnl(ns, &mut self.rtnl)?;
        match rtnl.get_link_by_name(name) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// rtnetlink in the namespace of the lower `key`.
    fn lower_rtnl(&mut self, key: LowerKey) -> &mut RtNetlink {
        match self.ports.get_mut(&key).and_then(|p| p.rtnl.as_mut()) {
            Some(r) => r,
            None => &mut self.rtnl,
        }
    }

    /// Finds the real lower for `name`: a umacvlan macvlan or a kernel macvlan stands for its
    /// own lower, as the kernel does when macvlans are stacked. A name of a device is looked
    /// up in the daemon's namespace (as `ip link add link NAME` would); a umacvlan macvlan's
    /// lower may live elsewhere.
    ///
    /// With `ns` (`link-netns`, CNI `linkInContainer`; `None`: the daemon's), the lower is the
    /// device of that name there.
    fn resolve_lower(
        &mut self,
        ns: Option<&NetnsHandle>,
        name: &str,
    ) -> OpResult<(LowerKey, LinkState)> {
        if let Some(ns) = ns {
            let id = ns.id()?;
            let l = RtNetlink::open_in(Some(ns))?
                .get_link_by_name(name)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ENODEV) => errno(Errno::ENODEV),
                    _ => e.into(),
                })?;
            return Ok(((Some(id), l.ifindex), l));
        }
        if let Some((lower, _)) = self.find(name) {
            return Ok((lower, self.lower_rtnl(lower).get_link_by_index(lower.1)?));
        }
        let l = self
            .rtnl
            .get_link_by_name(name)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENODEV) => errno(Errno::ENODEV),
                _ => e.into(),
            })?;
        if l.kind.as_deref() == Some("macvlan") && l.netnsid.is_none() {
            if let Some(link) = l.link {
                let l = self.rtnl.get_link_by_index(link)?;
                return Ok(((None, l.ifindex), l));
            }
        }
        Ok(((None, l.ifindex), l))
    }

    /// Publishes the port's new state to the data plane and the lower's filter.
    fn commit(&mut self, lower: LowerKey) {
        let Some(pe) = self.ports.get_mut(&lower) else {
            return;
        };
        // One snapshot for the programs' maps and the data plane's view.
        let snap = pe.port.snapshot();
        if let Some(f) = self.fast.as_mut().filter(|_| pe.bpf) {
            // Before the view: a removed macvlan's entries go before its device.
            let devs = &pe.devs;
            f.publish(
                lower.1,
                &snap,
                &|id| devs.get(&id).and_then(|d| d.tap.hidden_end()),
                pe.dp.monitor_tap(),
            );
        }
        let mut uppers: Vec<Option<Arc<dyn UpperIo>>> = vec![None; snap.id_bound()];
        for (id, d) in &pe.devs {
            uppers[id.index()] = Some(d.tap.clone());
        }
        pe.dp.publish(View { snap, uppers });
        observe::publish_names(pe);
        let f = pe.port.lower_filters();
        let wanted = wanted_members(&f);
        let mut held_changed = pe.members != wanted;
        if let Err(e) = umacvlan_io::afpacket::reconcile(&pe.members_sock, &mut pe.members, &wanted)
        {
            tracing::warn!("lower filter update failed: {e}");
        }
        match pe
            .refs
            .sync(pe.netns.as_ref(), lower.1, f.promisc, f.allmulti)
        {
            Ok(changed) => held_changed |= changed,
            Err(e) => {
                held_changed = true;
                tracing::warn!("lower promiscuity/allmulti references update failed: {e}");
            }
        }
        // Our memberships change the lower's promiscuity and allmulti counts, which widen the
        // port filters: read them back when they changed (anyone else's changes arrive as
        // events). Its multicast list is polled with the macvlans'.
        let rtnl = match pe.rtnl.as_mut() {
            Some(r) => r,
            None => &mut self.rtnl,
        };
        let read_back = if held_changed {
            rtnl.get_link_by_index(lower.1).ok()
        } else {
            None
        };
        if let Some(l) = read_back {
            let s = lower_flags(&l);
            if (s.promisc, s.allmulti) != (pe.port.lower().promisc, pe.port.lower().allmulti) {
                pe.port.lower_rx_flags_changed(s.promisc, s.allmulti);
                let snap = pe.port.snapshot();
                let uppers = pe.dp.view().uppers.clone();
                pe.dp.publish(View { snap, uppers });
            }
        }
        self.sync_host(lower);
    }

    /// Removes a macvlan (and its port with the last one).
    fn remove(&mut self, lower: LowerKey, id: DevId) {
        let Some(pe) = self.ports.get_mut(&lower) else {
            return;
        };
        let Ok(removed) = pe.port.remove_device(id) else {
            return;
        };
        let gone = pe.devs.remove(&id);
        let hidden = gone.as_ref().and_then(|e| e.tap.hidden_ifindex());
        if let Some(e) = &gone {
            self.by_tap
                .remove(&(e.netns.as_deref().and_then(|n| n.id().ok()), e.ifindex));
        }
        self.by_name.remove(&removed.device.name);
        self.ns_prune = true;
        tracing::info!(name = %removed.device.name, "macvlan removed");
        if removed.port_empty {
            if let Some(f) = self.fast.as_mut().filter(|_| self.ports[&lower].bpf) {
                f.port_gone(lower.1);
            }
            let pe = self.ports.remove(&lower).expect("present");
            self.dirty.remove(&lower);
            pe.dp.stop();
            if let Some(mac) = removed.restore_lower_mac {
                let mut own = pe.rtnl;
                let rtnl = own.as_mut().unwrap_or(&mut self.rtnl);
                let _ = rtnl.set_link(
                    lower.1,
                    &LinkChange {
                        mac: Some(mac),
                        ..Default::default()
                    },
                );
            }
        } else {
            self.commit(lower);
            // Its id may be given to the next macvlan: its counts go once no worker can still
            // be counting for it.
            if let Some(pe) = self.ports.get(&lower) {
                pe.dp.retire(id);
            }
        }
        if let (Some(f), Some(h)) = (self.fast.as_mut(), hidden) {
            f.upper_gone(h);
        }
    }

    // ----- following the system -------------------------------------------------------------

    /// Whether any lower has macvlans.
    pub fn has_ports(&self) -> bool {
        !self.ports.is_empty()
    }

    /// The namespaces our TAPs and lowers live in (other than the daemon's), to watch.
    pub fn watched_namespaces(&self) -> Vec<NetnsHandle> {
        let mut out: Vec<NetnsHandle> = Vec::new();
        // By id: the loop calls this every turn, over every macvlan.
        let mut seen = std::collections::HashSet::new();
        for pe in self.ports.values() {
            let taps = pe.devs.values().filter_map(|d| d.netns.as_deref());
            for ns in pe.netns.iter().chain(taps) {
                if seen.insert(ns.id().ok()) {
                    if let Ok(c) = ns.try_clone() {
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    /// Every namespace holding a TAP or a lower of ours, by id. The loop asks every turn, so
    /// this is O(namespaces), not O(macvlans): a macvlan in another namespace holds the
    /// registry's shared handle of it.
    pub fn watched_namespace_ids(&self) -> std::collections::HashSet<NetnsId> {
        let mut out: std::collections::HashSet<NetnsId> = self
            .ports
            .values()
            .filter_map(|pe| pe.netns.as_ref()?.id().ok())
            .collect();
        out.extend(self.nsreg.in_use());
        out
    }

    /// A handle of namespace `id` where a TAP or a lower of ours lives.
    pub fn netns_handle(&self, id: NetnsId) -> Option<NetnsHandle> {
        let lower_ns = || {
            self.ports
                .values()
                .filter_map(|pe| pe.netns.as_ref())
                .find(|n| n.id().ok() == Some(id))
        };
        self.nsreg
            .handle(id)
            .or_else(lower_ns)
            .and_then(|n| n.try_clone().ok())
    }

    /// Whether the macvlans of a port on a lower in namespace `lower_ns` (`None`: the daemon's)
    /// go on the eBPF fast path: when the daemon has one and the lower is in its namespace
    /// (the programs reach the hidden ends by ifindex in the lower's namespace). The others
    /// take the TAP path, in the same daemon.
    fn port_on_bpf(&self, lower_ns: Option<&NetnsHandle>) -> bool {
        self.fast.is_some() && lower_ns.is_none()
    }

    /// Puts new macvlans on the eBPF fast path (before any is created).
    pub fn set_fast_path(&mut self, f: FastState) {
        self.fast = Some(f);
    }

    /// Lets the data planes of ports made from now on ask for multicast lists to be re-read;
    /// the caller serves `r` ([`Manager::poll_multicast`], then [`Manager::groups_refreshed`]).
    pub fn set_group_refresh(&mut self, r: Arc<super::group_refresh::GroupRefresh>) {
        self.group_refresh = Some(r);
    }

    /// The multicast lists were re-read and published: the data planes offer the group frames
    /// they held again.
    pub fn groups_refreshed(&self) {
        for pe in self.ports.values() {
            pe.dp.groups_refreshed();
        }
    }

    /// Hands over the guardian; [`sync_guardian`](Self::sync_guardian) keeps it informed.
    pub fn set_guardian(&mut self, g: super::guardian::Guardian) {
        self.guardian = Some(g);
    }

    /// Tells the guardian which lowers carry an address a passthru macvlan gave them, and the
    /// address to put back (the kernel's `port->perm_addr`) should the daemon die.
    pub fn sync_guardian(&mut self) {
        let Some(g) = self.guardian.as_mut() else {
            return;
        };
        // The guardian works in the daemon's namespace, by ifindex: a lower moved to another
        // namespace is not armed (its address is not put back should the daemon die).
        let want = self
            .ports
            .iter()
            .filter(|((ns, _), pe)| {
                ns.is_none() && pe.port.is_passthru() && pe.port.lower().mac != pe.port.perm_addr()
            })
            .map(|((_, l), pe)| (*l, pe.port.perm_addr()))
            .collect();
        g.sync(&want);
    }

    /// Removes every macvlan (daemon shutdown): TAPs go, memberships go, passthru MACs return.
    pub fn shutdown(&mut self) {
        let all: Vec<(LowerKey, DevId)> = self
            .ports
            .iter()
            .flat_map(|(l, p)| p.devs.keys().map(move |id| (*l, *id)))
            .collect();
        for (l, id) in all {
            self.remove(l, id);
        }
    }
}
