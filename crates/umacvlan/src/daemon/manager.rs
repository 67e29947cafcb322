//! The control core: owns every port (engine state, data plane, lower memberships) and every
//! macvlan's TAP, and applies requests and observed changes to all of them.
//!
//! One thread owns the [`Manager`]; nothing here is shared, so no locks. Each request is tried
//! on a copy of the engine port first and committed only when the engine and the system have
//! both accepted it, so a refused request changes nothing.
//!
//! The daemon's loop applies every request and event queued, then [`Manager::flush`]es once:
//! each changed port is published to its data plane once per turn, not once per change (a
//! publication costs O(macvlans on the port)), and macvlans added up have their TAPs brought
//! up after that (the data plane must know a macvlan up before its TAP is).

use super::dataplane::{Dataplane, View};
use super::fastpath::{FastState, Upper};
use super::lower_refs::LowerRefs;

// trace and monitor requests (`impl Manager` in manager/observe.rs).
mod hostaccess;
mod observe;
// one rtnetlink socket per namespace.
mod registry;
use crate::proto::{
    LinkAdd, LinkInfo, LinkSet, NetnsRef, PortInfo, Request, Response, Stats64, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use umacvlan_core::engine::{
    ControlError, DevCounters, DevId, Device, Errno, LowerMacCause, LowerState, MacChange,
    MacvlanAttrs, Mode, NewDevice, Port, MIN_MTU,
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

/// The packet-socket memberships that realise the engine's [`umacvlan_core::engine::LowerFilters`].
fn wanted_members(port: &Port) -> MembershipSet {
    let f = port.lower_filters();
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

    /// Brings a new macvlan's TAP up, with a kernel macvlan's qdisc (see [`noqueue_qdisc`]),
    /// through its namespace's rtnetlink socket.
    fn bring_up(&mut self, lower: LowerKey, id: DevId) -> OpResult {
        let e = &self.ports[&lower].devs[&id];
        let Upper::Tap(_) = &*e.tap else {
            noqueue_qdisc(&e.tap);
            return Ok(e.tap.set_up(true)?);
        };
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

    fn link_add(&mut self, a: &LinkAdd) -> OpResult {
        let name = if a.name.is_empty() {
            self.free_name()?
        } else {
            a.name.clone()
        };
        if !valid_ifname(&name) {
            return Err(errno(Errno::EINVAL));
        }
        let lower_ns = match &a.lower_netns {
            Some(r) => self.resolve_netns(r)?,
            None => None,
        };
        let (lower_key, lower) = self.resolve_lower(lower_ns.as_ref(), &a.lower)?;
        self.check_hostaccess(
            &a.macvlan,
            lower_ns.is_some()
                || self
                    .ports
                    .get(&lower_key)
                    .is_some_and(|p| p.netns.is_some()),
        )?;
        let ns = match &a.netns {
            Some(r) => self.resolve_netns(r)?,
            None => None,
        };
        if self.name_exists(ns.as_ref(), &name)? {
            return Err(errno(Errno::EEXIST));
        }
        // A new port is made aside; an existing one is changed in place (copying it would cost
        // O(macvlans) per add) and taken back with `undo_add` if the system refuses.
        let mut fresh = match self.ports.contains_key(&lower_key) {
            true => None,
            false => Some(Port::create(lower_state_in(lower_ns.as_ref(), &lower))?),
        };
        let req = NewDevice {
            name: name.clone(),
            mac: a.address,
            // A macvlan takes its lower's MTU, unless that is more than a TAP can take (a
            // veth at 65535, say): then the TAP's most (a listed deviation).
            mtu: a
                .mtu
                .or((lower.mtu > umacvlan_io::tap::MAX_MTU).then_some(umacvlan_io::tap::MAX_MTU)),
            attrs: a.macvlan.clone(),
        };
        let (id, undo, dev, carrier) = {
            let port = match fresh.as_mut() {
                Some(p) => p,
                None => &mut self.ports.get_mut(&lower_key).expect("present").port,
            };
            let undo = port.add_undo_point();
            let id = port.add_device(&req, random_u64())?;
            if a.up {
                if let Err(e) = port.open(id) {
                    port.undo_add(id, undo);
                    return Err(e.into());
                }
            }
            let dev = port.device(id).cloned().expect("just added");
            (id, undo, dev, port.carrier())
        };
        // Created down and brought up only once the data plane sees it up (see `flush`).
        let made = match self.fast.as_mut() {
            Some(f) => f
                .create_upper(ns.as_ref(), &dev, carrier)
                .map_err(OpError::from)
                .and_then(|v| {
                    let u = Upper::Veth(v);
                    let ifindex = u.ifindex()?;
                    Ok((u, ifindex))
                }),
            None => self
                .create_tap(ns.as_ref(), &dev, carrier)
                .map(|(t, ifindex)| (Upper::Tap(t), ifindex)),
        };
        let (tap, ifindex) = match made {
            Ok(m) => m,
            Err(e) => {
                if let Some(pe) = self.ports.get_mut(&lower_key) {
                    pe.port.undo_add(id, undo);
                }
                return Err(e);
            }
        };
        self.seq += 1;
        let netns = match ns {
            Some(h) => Some(self.nsreg.share(h)?),
            None => None,
        };
        let entry = DevEntry {
            tap: Arc::new(tap),
            netns,
            netns_ref: a.netns.clone(),
            ifindex,
            seq: self.seq,
            cni: a.cni.clone(),
        };
        if let Some(port) = fresh {
            let pe = self.start_port(lower_key.1, port, lower_ns, a.lower_netns.clone())?;
            self.ports.insert(lower_key, pe);
        }
        // The host path is made (or widened) before the port with this macvlan is published;
        // `ensure_host` reads the port's next state, copied only for a port that wants it.
        let next = {
            let pe = &self.ports[&lower_key];
            hostaccess::wants_host(&pe.port).then(|| pe.port.clone())
        };
        if let Some(next) = next {
            if let Err(e) = self.ensure_host(lower_key, &next) {
                // Nothing published yet: the TAP goes with `entry`, a port made for it with it.
                let pe = self.ports.get_mut(&lower_key).expect("present");
                if pe.devs.is_empty() {
                    let pe = self.ports.remove(&lower_key).expect("present");
                    pe.dp.stop();
                } else {
                    pe.port.undo_add(id, undo);
                }
                return Err(e);
            }
        }
        let ns_id = entry.netns.as_deref().and_then(|n| n.id().ok());
        let pe = self.ports.get_mut(&lower_key).expect("present");
        pe.devs.insert(id, entry);
        self.by_name.insert(name.clone(), (lower_key, id));
        self.by_tap.insert((ns_id, ifindex), (lower_key, id));
        self.commit_later(lower_key);
        // As in link_set: the kernel's first frames on the new device (IPv6 DAD, MLD) must
        // find it up in the data plane, so its TAP comes up in `flush`, after the publication.
        if dev.up {
            self.pending_up.insert(
                (lower_key, id),
                PendingUp {
                    seq: self.seq,
                    op: self.ops,
                },
            );
        }
        tracing::info!(%name, lower = %lower.name, mode = %dev.mode, mac = %dev.mac, "macvlan added");
        Ok(())
    }

    /// `macvlan%d`, the kernel's pick for a nameless macvlan.
    fn free_name(&mut self) -> OpResult<String> {
        for i in 0..10_000 {
            let n = format!("macvlan{i}");
            if !self.name_exists(None, &n)? {
                return Ok(n);
            }
        }
        Err(errno(Errno::EEXIST))
    }

    /// A port on the lower `lower` of the daemon's namespace.
    fn start_port(
        &mut self,
        lower: u32,
        port: Port,
        ns: Option<NetnsHandle>,
        ns_ref: Option<NetnsRef>,
    ) -> OpResult<PortEntry> {
        let (lowers, members_sock) = self.open_lower(ns.as_ref(), lower)?;
        let rtnl = match &ns {
            Some(h) => Some(RtNetlink::open_in(Some(h))?),
            None => None,
        };
        if let Some(f) = self.fast.as_mut() {
            if ns.is_some() {
                // Its programs would have to live in that namespace, with every hidden end.
                return Err(OpError {
                    errno: libc::EOPNOTSUPP,
                    message: Some(
                        "the bpf datapath serves lowers in the daemon's namespace only".into(),
                    ),
                });
            }
            f.port_started(&port.lower().name, lower)?;
        }
        let view = View {
            snap: port.snapshot(),
            uppers: Vec::new(),
        };
        let dp = match &self.group_refresh {
            Some(r) => Dataplane::start_with_refresh(lowers, view, r.clone())?,
            None => Dataplane::start(lowers, view)?,
        };
        if let Some(hub) = &self.monitor {
            hub.register(dp.monitor_tap());
        }
        Ok(PortEntry {
            port,
            netns: ns,
            rtnl,
            netns_ref: ns_ref,
            dp,
            members_sock,
            members: MembershipSet::new(),
            refs: LowerRefs::new(),
            devs: BTreeMap::new(),
            host: None,
        })
    }

    /// The packet sockets of a port on the lower `ifindex` of namespace `ns` (`None`: the
    /// daemon's): one per data-plane worker (one fanout group), and one holding the
    /// memberships.
    fn open_lower(
        &mut self,
        ns: Option<&NetnsHandle>,
        ifindex: u32,
    ) -> io::Result<(Vec<Arc<dyn LowerIo>>, LowerSocket)> {
        let workers = self.opts.workers.max(1);
        // The first socket gets a group id no other program uses; the others join it.
        let mut opts = LowerOptions {
            fanout: (workers > 1).then_some(Fanout {
                group: None,
                mode: FanoutMode::Hash,
                rollover: false,
            }),
            rcvbuf: Some(4 << 20),
            sndbuf: Some(4 << 20),
            vnet_hdr: true,
            ..LowerOptions::default()
        };
        // Each socket is created in the lower's namespace (by the broker when it is another
        // one) and configured here.
        let mut sockets = Vec::new();
        for _ in 0..workers {
            let s = LowerSocket::open_in(ns, ifindex, &opts)?;
            if let Some(f) = opts.fanout.as_mut().filter(|f| f.group.is_none()) {
                f.group = Some(s.fanout_group()?);
            }
            sockets.push(s);
        }
        let members = LowerSocket::open_membership_holder_in(ns, ifindex)?;
        if let Some(f) = &self.fast {
            // Unicast is the fast path's, and these sockets see every frame before it does.
            for s in &sockets {
                f.filter_socket(s)?;
            }
        }
        let lowers: Vec<Arc<dyn LowerIo>> = sockets
            .into_iter()
            .map(|s| Arc::new(s) as Arc<dyn LowerIo>)
            .collect();
        Ok((lowers, members))
    }

    /// Publishes the port's new state to the data plane and the lower's filter.
    fn commit(&mut self, lower: LowerKey) {
        let Some(pe) = self.ports.get_mut(&lower) else {
            return;
        };
        if let Some(f) = self.fast.as_mut() {
            // Before the view: a removed macvlan's entries go before its device.
            let devs = &pe.devs;
            f.publish(
                lower.1,
                &pe.port,
                &|id| devs.get(&id).and_then(|d| d.tap.hidden_end()),
                pe.dp.monitor_tap(),
            );
        }
        let snap = pe.port.snapshot();
        let mut uppers: Vec<Option<Arc<dyn UpperIo>>> = vec![None; snap.id_bound()];
        for (id, d) in &pe.devs {
            uppers[id.index()] = Some(d.tap.clone());
        }
        pe.dp.publish(View { snap, uppers });
        observe::publish_names(pe);
        let wanted = wanted_members(&pe.port);
        if let Err(e) = umacvlan_io::afpacket::reconcile(&pe.members_sock, &mut pe.members, &wanted)
        {
            tracing::warn!("lower filter update failed: {e}");
        }
        let f = pe.port.lower_filters();
        if let Err(e) = pe
            .refs
            .sync(pe.netns.as_ref(), lower.1, f.promisc, f.allmulti)
        {
            tracing::warn!("lower promiscuity/allmulti references update failed: {e}");
        }
        // Our memberships change the lower's promiscuity and allmulti counts, which widen the
        // port filters: read them back. (Its multicast list is polled with the macvlans'.)
        let rtnl = match pe.rtnl.as_mut() {
            Some(r) => r,
            None => &mut self.rtnl,
        };
        if let Ok(l) = rtnl.get_link_by_index(lower.1) {
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

    fn link_set(&mut self, s: &LinkSet) -> OpResult {
        let (lower, id) = self.find(&s.name).ok_or(errno(Errno::ENODEV))?;
        let new_ns = match &s.netns {
            Some(r) => Some(self.resolve_netns(r)?),
            None => None,
        };
        if let Some(ns) = &new_ns {
            if self.name_exists_elsewhere(ns.as_ref(), &s.name, (lower, id))? {
                return Err(errno(Errno::EEXIST));
            }
        }
        let pe = self.ports.get(&lower).expect("found");
        if let Some(m) = &s.macvlan {
            self.check_hostaccess(m, pe.netns.is_some())?;
        }
        let pe = self.ports.get(&lower).expect("found");
        let mut port = pe.port.clone();
        let before = port.device(id).cloned().expect("found");
        // The kernel's order: changelink, then (do_setlink) netns, address, MTU, flags.
        if let Some(attrs) = &s.macvlan {
            port.change(id, attrs)?;
        }
        let mut lower_mac = None;
        if let Some(mac) = s.address {
            match port.set_mac(id, mac)? {
                MacChange::LowerMustChange(m) => lower_mac = Some(m),
                MacChange::Changed | MacChange::Unchanged => {}
            }
        }
        if let Some(mtu) = s.mtu {
            port.set_mtu(id, mtu)?;
        }
        if let Some(up) = s.up {
            port.set_up(id, up)?;
        }
        self.ensure_host(lower, &port)?;
        // The kernel transmits on a device from the moment it is up (a gratuitous ARP with
        // arp_notify, IPv6 DAD): the data plane must see the macvlan up before its TAP is, or
        // those first frames are dropped as sent by a down device.
        let coming_up = !before.up && port.device(id).is_some_and(|d| d.up);
        let published = coming_up.then(|| {
            let pe = self.ports.get_mut(&lower).expect("found");
            std::mem::replace(&mut pe.port, port.clone())
        });
        if published.is_some() {
            self.commit(lower);
        }
        // The engine accepts; now the system, each step undone if a later one fails.
        let moves = new_ns.is_some();
        let r = match self.apply_link_set(lower, id, s, new_ns, lower_mac, &before, &mut port) {
            Ok(()) => {
                let pe = self.ports.get_mut(&lower).expect("found");
                pe.port = port;
                self.commit(lower);
                Ok(())
            }
            Err((e, done)) => {
                if let Some(old) = published {
                    self.ports.get_mut(&lower).expect("found").port = old;
                    self.commit(lower);
                }
                self.undo_link_set(lower, id, &before, done);
                Err(e)
            }
        };
        if moves {
            self.reindex();
        }
        r
    }

    /// The system side of `link set`: the passthru lower's address, the TAP's address, MTU
    /// and state, then its namespace — last, because a move cannot be undone without loss
    /// (the TAP's addresses in its namespace go with it), so every step that can fail on the
    /// device comes first. On failure, returns the error and the steps already done, for
    /// [`undo_link_set`](Self::undo_link_set).
    #[allow(clippy::too_many_arguments)]
    fn apply_link_set(
        &mut self,
        lower: LowerKey,
        id: DevId,
        s: &LinkSet,
        new_ns: Option<Option<NetnsHandle>>,
        lower_mac: Option<MacAddr>,
        before: &Device,
        port: &mut Port,
    ) -> Result<(), (OpError, Vec<LinkSetStep>)> {
        let mut done = Vec::new();
        if let Some(m) = lower_mac {
            let old = port.lower().mac;
            if let Err(e) = self.lower_rtnl(lower).set_link(
                lower.1,
                &LinkChange {
                    mac: Some(m),
                    ..Default::default()
                },
            ) {
                return Err((e.into(), done));
            }
            done.push(LinkSetStep::LowerMac(old));
            port.lower_mac_changed(m, LowerMacCause::Passthru);
        }
        let pe = self.ports.get_mut(&lower).expect("found");
        let entry = pe.devs.get_mut(&id).expect("has a TAP");
        let after = port.device(id).cloned().expect("found");
        done.push(LinkSetStep::TapSynced);
        if let Err(e) = sync_tap(&entry.tap, Some(before), &after) {
            return Err((e.into(), done));
        }
        let Some(ns) = new_ns else {
            return Ok(());
        };
        let same = match (&entry.netns, &ns) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_as(b).unwrap_or(false),
            _ => false,
        };
        if same {
            return Ok(());
        }
        let moved = (|| -> OpResult {
            let target = match &ns {
                Some(h) => h.try_clone()?,
                None => NetnsHandle::current()?,
            };
            RtNetlink::open_in(entry.netns.as_deref())?.set_link(
                entry.ifindex,
                &LinkChange {
                    netns: Some(&target),
                    ..Default::default()
                },
            )?;
            Ok(())
        })();
        if let Err(e) = moved {
            return Err((e, done));
        }
        let from = std::mem::replace(&mut entry.netns, ns.map(Arc::new));
        let from_ref = std::mem::replace(
            &mut entry.netns_ref,
            s.netns.clone().filter(|_| entry.netns.is_some()),
        );
        done.push(LinkSetStep::Moved(from, from_ref));
        // A move takes the device down: up again, as it was asked to be.
        let settled = (|| -> io::Result<()> {
            entry.ifindex = entry.tap.ifindex()?;
            if after.up {
                // The move also reset its qdisc.
                noqueue_qdisc(&entry.tap);
                entry.tap.set_up(true)?;
            }
            Ok(())
        })();
        settled.map_err(|e| (e.into(), done))
    }

    /// Puts back what [`apply_link_set`](Self::apply_link_set) did, last step first, so a
    /// failed `link set` changes nothing.
    fn undo_link_set(
        &mut self,
        lower: LowerKey,
        id: DevId,
        before: &Device,
        steps: Vec<LinkSetStep>,
    ) {
        for step in steps.into_iter().rev() {
            let r: OpResult = match step {
                LinkSetStep::TapSynced => {
                    let Some(e) = self.ports.get(&lower).and_then(|p| p.devs.get(&id)) else {
                        continue;
                    };
                    sync_tap(&e.tap, None, before).map_err(OpError::from)
                }
                LinkSetStep::Moved(from, from_ref) => {
                    let Some(e) = self.ports.get_mut(&lower).and_then(|p| p.devs.get_mut(&id))
                    else {
                        continue;
                    };
                    (|| -> OpResult {
                        let target = match &from {
                            Some(h) => h.try_clone()?,
                            None => NetnsHandle::current()?,
                        };
                        RtNetlink::open_in(e.netns.as_deref())?.set_link(
                            e.ifindex,
                            &LinkChange {
                                netns: Some(&target),
                                ..Default::default()
                            },
                        )?;
                        e.netns = from;
                        e.netns_ref = from_ref;
                        e.ifindex = e.tap.ifindex()?;
                        Ok(())
                    })()
                }
                LinkSetStep::LowerMac(old) => self
                    .lower_rtnl(lower)
                    .set_link(
                        lower.1,
                        &LinkChange {
                            mac: Some(old),
                            ..Default::default()
                        },
                    )
                    .map_err(OpError::from),
            };
            if let Err(e) = r {
                tracing::error!(name = %before.name, "could not undo a failed link set: errno {}", e.errno);
            }
        }
    }

    fn name_exists_elsewhere(
        &self,
        ns: Option<&NetnsHandle>,
        name: &str,
        me: (LowerKey, DevId),
    ) -> OpResult<bool> {
        let mut rtnl = RtNetlink::open_in(ns)?;
        match rtnl.get_link_by_name(name) {
            Ok(l) => Ok(self.find_by_tap(ns.and_then(|n| n.id().ok()), l.ifindex) != Some(me)),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn link_del(&mut self, name: &str) -> OpResult {
        let (lower, id) = self.find(name).ok_or(errno(Errno::ENODEV))?;
        self.remove(lower, id);
        Ok(())
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
            if let Some(f) = self.fast.as_mut() {
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

    fn show(&self, name: Option<&str>) -> Response {
        let mut all: Vec<(u64, LinkInfo)> = Vec::new();
        // A namespace's name is looked up once per answer, not once per macvlan (each lookup
        // reads /var/run/netns).
        let names = std::cell::RefCell::new(HashMap::<NetnsId, String>::new());
        let ns_name = |n: &NetnsHandle| -> String {
            let id = n.id().ok();
            if let Some(s) = id.and_then(|i| names.borrow().get(&i).cloned()) {
                return s;
            }
            let s = n.name().ok().flatten().unwrap_or_else(|| "?".into());
            if let Some(i) = id {
                names.borrow_mut().insert(i, s.clone());
            }
            s
        };
        for pe in self.ports.values() {
            for d in pe.port.devices() {
                if name.is_some_and(|n| n != d.name) {
                    continue;
                }
                let Some(e) = pe.devs.get(&d.id) else {
                    continue;
                };
                let mut c = pe.dp.counters(d.id);
                if let (Some(f), Some(h)) = (&self.fast, e.tap.hidden_ifindex()) {
                    c.add(&f.counters(h));
                }
                all.push((
                    e.seq,
                    link_info(&pe.port, pe.netns.as_ref(), d, e, c, &ns_name),
                ));
            }
        }
        if name.is_some() && all.is_empty() {
            return Response::Error {
                errno: Errno::ENODEV.code(),
                message: None,
            };
        }
        all.sort_by_key(|(s, _)| *s);
        Response::Links {
            links: all.into_iter().map(|(_, l)| l).collect(),
        }
    }

    fn ports_info(&self) -> Response {
        let ports = self
            .ports
            .iter()
            .map(|((_, ifindex), pe)| {
                let c = pe.dp.port_counters();
                PortInfo {
                    lower: pe.port.lower().name.clone(),
                    ifindex: *ifindex,
                    devices: pe.port.devices().iter().map(|d| d.name.clone()).collect(),
                    bc_queue_len: pe.port.bc_queue_len_used(),
                    bc_cutoff: pe.port.bc_cutoff(),
                    lower_rx_dropped: c.lower_rx_dropped
                        + self
                            .fast
                            .as_ref()
                            .map_or(0, |f| f.lower_rx_dropped(*ifindex)),
                    malformed: c.malformed,
                    defrag_dropped: c.defrag_dropped,
                    socket_dropped: pe.dp.socket_drops(),
                    worker_restarts: pe.dp.worker_restarts(),
                }
            })
            .collect();
        Response::Ports { ports }
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

    /// Link events read together from namespace `ns`, in order. Of several `New` of one device
    /// only the last is applied (up to a `Del` of it): the earlier ones describe states it has
    /// already left (a TAP is created down, then given its address and MTU, then brought up,
    /// each with its event), and following them would publish those states again.
    pub fn link_events(&mut self, ns: Option<NetnsId>, evs: &mut Vec<LinkEvent>) {
        let mut later = std::collections::HashSet::new();
        let mut keep = vec![true; evs.len()];
        for (i, ev) in evs.iter().enumerate().rev() {
            match ev {
                LinkEvent::New(ls) => keep[i] = later.insert(ls.ifindex),
                LinkEvent::Del { ifindex, .. } => {
                    later.remove(ifindex);
                }
                LinkEvent::Overrun | LinkEvent::Multicast { .. } => {}
            }
        }
        for (ev, keep) in evs.drain(..).zip(keep) {
            if keep {
                self.link_event(ns, ev);
            }
        }
    }

    /// A link event from namespace `ns` (`None`: the daemon's).
    pub fn link_event(&mut self, ns: Option<NetnsId>, ev: LinkEvent) {
        match ev {
            LinkEvent::New(ls) => {
                // Events queue up behind changes already made: acting on a stale address would
                // set it back, and a passthru macvlan and its lower would then chase each
                // other's old addresses forever. So the address is read fresh, not taken from
                // the event.
                let key = (ns, ls.ifindex);
                if self.ports.contains_key(&key) {
                    if let Ok(now) = self.lower_rtnl(key).get_link_by_index(ls.ifindex) {
                        self.lower_changed(key, &now);
                    }
                }
                if let Some((lower, id)) = self
                    .find_by_tap(ns, ls.ifindex)
                    .filter(|k| !self.pending_up.contains_key(k))
                {
                    let fresh_mac = self.ports[&lower].devs[&id].tap.mac().ok();
                    let obs = TapObserved {
                        up: ls.flags & iff::UP != 0,
                        mtu: ls.mtu,
                        mac: fresh_mac.or(ls.mac).unwrap_or_default(),
                        promisc: ls.promiscuity > 0,
                        allmulti: ls.allmulti.unwrap_or(0) > 0 || ls.flags & iff::ALLMULTI != 0,
                    };
                    self.tap_changed(lower, id, &obs);
                    // Coming up, its stack joined groups (all-hosts, all-nodes): some have
                    // an event of their own, link-level ones with IPv6 off have none.
                    if obs.up {
                        self.mc_pending.insert((ns, ls.ifindex));
                    }
                }
            }
            LinkEvent::Del {
                ifindex,
                new_netnsid,
                new_ifindex,
                ..
            } => {
                let key = (ns, ifindex);
                if self.ports.contains_key(&key) {
                    match new_netnsid {
                        Some(nsid) => self.lower_moved(key, nsid, new_ifindex.unwrap_or(ifindex)),
                        None => self.lower_gone(key),
                    }
                }
                if let Some((lower, id)) = self.find_by_tap(ns, ifindex) {
                    self.tap_gone(lower, id);
                }
            }
            LinkEvent::Overrun => self.resync(ns),
            LinkEvent::Multicast { ifindex } => {
                self.mc_pending.insert((ns, ifindex));
            }
        }
    }

    /// Re-reads every lower and TAP of namespace `ns` (`None`: the daemon's), after events
    /// were lost there or before they were watched there. A lower missing there is taken
    /// for deleted: a move, had it been seen, would have been followed.
    pub fn resync(&mut self, ns: Option<NetnsId>) {
        let lowers: Vec<LowerKey> = self.ports.keys().copied().filter(|k| k.0 == ns).collect();
        for l in lowers {
            match self.lower_rtnl(l).get_link_by_index(l.1) {
                Ok(ls) => self.lower_changed(l, &ls),
                Err(_) => self.lower_gone(l),
            }
        }
        let devs: Vec<(LowerKey, DevId)> = self
            .ports
            .iter()
            .flat_map(|(l, p)| p.devs.keys().map(move |id| (*l, *id)))
            .filter(|k| !self.pending_up.contains_key(k))
            .collect();
        for (l, id) in devs {
            let Some(e) = self.ports.get(&l).and_then(|p| p.devs.get(&id)) else {
                continue;
            };
            if e.netns.as_deref().and_then(|n| n.id().ok()) != ns {
                continue;
            }
            let state = RtNetlink::open_in(e.netns.as_deref())
                .and_then(|mut r| r.get_link_by_index(e.ifindex).map_err(Into::into));
            match state {
                Ok(ls) => {
                    let obs = TapObserved {
                        up: ls.flags & iff::UP != 0,
                        mtu: ls.mtu,
                        mac: ls.mac.unwrap_or_default(),
                        promisc: ls.promiscuity > 0,
                        allmulti: ls.allmulti.unwrap_or(0) > 0 || ls.flags & iff::ALLMULTI != 0,
                    };
                    self.tap_changed(l, id, &obs);
                }
                Err(_) => self.tap_gone(l, id),
            }
        }
    }

    fn lower_changed(&mut self, lower: LowerKey, ls: &LinkState) {
        let Some(pe) = self.ports.get_mut(&lower) else {
            return;
        };
        let s = lower_state_in(pe.netns.as_ref(), ls);
        let old = pe.port.lower().clone();
        let before: Vec<Device> = pe.port.devices().to_vec();
        pe.port.lower_link_changed(s.up, s.carrier, s.dormant);
        if s.mtu != old.mtu {
            pe.port.lower_mtu_changed(s.mtu);
        }
        if s.mac != old.mac {
            pe.port.lower_mac_changed(s.mac, LowerMacCause::External);
        }
        if s.name != old.name {
            pe.port.lower_renamed(&s.name);
        }
        pe.port.lower_rx_flags_changed(s.promisc, s.allmulti);
        pe.port.lower_mc_list_changed(s.mc_list);
        if old.carrier != s.carrier {
            for d in pe.devs.values() {
                let _ = d.tap.set_carrier(s.carrier);
            }
        }
        for b in &before {
            let (Some(a), Some(e)) = (pe.port.device(b.id), pe.devs.get(&b.id)) else {
                continue;
            };
            if let Err(err) = sync_tap(&e.tap, Some(b), a) {
                tracing::warn!(name = %a.name, "could not update the TAP: {err}");
            }
        }
        self.commit(lower);
    }

    fn lower_gone(&mut self, lower: LowerKey) {
        // NETDEV_UNREGISTER: every macvlan on it goes.
        if let Some(pe) = self.ports.remove(&lower) {
            tracing::info!(lower = %pe.port.lower().name, "lower device gone; removing its macvlans");
            if let Some(f) = self.fast.as_mut() {
                f.port_gone(lower.1);
                for e in pe.devs.values() {
                    if let Some(h) = e.tap.hidden_ifindex() {
                        f.upper_gone(h);
                    }
                }
            }
            pe.dp.stop();
            self.reindex();
        }
    }

    /// The lower `old` left its namespace for the one that namespace calls `nsid`, where its
    /// index is `ifindex`. The kernel's macvlans stay where they are and keep working through
    /// it (macvlan has no netns notifier; the lower only goes down on the way), so ours do
    /// too: its packet sockets lost their binding and their memberships with the move
    /// (`packet_notifier`, `NETDEV_UNREGISTER`), so the port gets new ones in the new
    /// namespace, and the engine port and the TAPs stay as they are. If the new namespace
    /// cannot be found (nothing we can open holds it), the lower is taken for deleted.
    fn lower_moved(&mut self, old: LowerKey, nsid: i32, ifindex: u32) {
        let known: Vec<NetnsHandle> = self.watched_namespaces();
        let known: Vec<&NetnsHandle> = known.iter().collect();
        let Some(ns) = self.lower_rtnl(old).netns_by_nsid(nsid, &known) else {
            tracing::warn!(
                nsid,
                "lower moved to a namespace that cannot be found; removing its macvlans"
            );
            return self.lower_gone(old);
        };
        if self.fast.is_some() {
            // The programs reach the macvlans' hidden ends by ifindex in the lower's namespace.
            tracing::warn!(
                nsid,
                "lower moved to another namespace, where the bpf datapath cannot follow it; \
                 removing its macvlans"
            );
            return self.lower_gone(old);
        }
        let ns = if ns.is_current().unwrap_or(false) {
            None
        } else {
            Some(ns)
        };
        let key = (ns.as_ref().and_then(|n| n.id().ok()), ifindex);
        if self.ports.contains_key(&key) {
            tracing::warn!(
                ifindex,
                "lower moved onto a port already known; removing its macvlans"
            );
            return self.lower_gone(old);
        }
        let moved = (|| -> io::Result<(Option<RtNetlink>, LinkState)> {
            let mut rtnl = ns
                .as_ref()
                .map(|n| RtNetlink::open_in(Some(n)))
                .transpose()?;
            let ls = rtnl
                .as_mut()
                .unwrap_or(&mut self.rtnl)
                .get_link_by_index(ifindex)?;
            let (lowers, members_sock) = self.open_lower(ns.as_ref(), ifindex)?;
            let pe = self.ports.get_mut(&old).expect("present");
            pe.dp.restart(lowers)?;
            pe.members_sock = members_sock;
            // The old memberships went with the old socket.
            pe.members = MembershipSet::new();
            pe.refs.clear();
            Ok((rtnl, ls))
        })();
        let (rtnl, ls) = match moved {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(
                    "cannot follow the lower into its new namespace ({e}); removing its macvlans"
                );
                return self.lower_gone(old);
            }
        };
        let mut pe = self.ports.remove(&old).expect("present");
        let ns_name = ns.as_ref().and_then(|n| n.name().ok().flatten());
        tracing::info!(
            lower = %pe.port.lower().name,
            ifindex,
            netns = ns_name.as_deref().unwrap_or(if ns.is_none() { "(the daemon's)" } else { "?" }),
            "lower moved to another namespace; following it"
        );
        pe.netns = ns;
        pe.rtnl = rtnl;
        self.ports.insert(key, pe);
        self.dirty.remove(&old);
        self.reindex();
        // Its state there (down after the move), the memberships back on the new socket.
        self.lower_changed(key, &ls);
    }

    fn tap_gone(&mut self, lower: LowerKey, id: DevId) {
        let Some(e) = self.ports.get_mut(&lower).and_then(|p| p.devs.get_mut(&id)) else {
            return;
        };
        // Moved by the user (`ip link set NAME netns X`), or deleted (`ip link del NAME`)? Or
        // neither: it left and came back (an undone `link set … netns`), so the event is old.
        if let (Ok(ns), Ok(ifindex)) = (e.tap.netns(), e.tap.ifindex()) {
            let here = match &e.netns {
                Some(o) => o.same_as(&ns).unwrap_or(false),
                None => ns.is_current().unwrap_or(false),
            };
            if here {
                e.ifindex = ifindex;
                self.reindex();
                return;
            }
        }
        match e.tap.netns() {
            Ok(ns)
                if e.netns
                    .as_ref()
                    .is_none_or(|o| !o.same_as(&ns).unwrap_or(false))
                    && e.tap.ifindex().is_ok() =>
            {
                e.ifindex = e.tap.ifindex().unwrap_or(e.ifindex);
                e.netns = if ns.is_current().unwrap_or(false) {
                    None
                } else {
                    Some(Arc::new(ns))
                };
                e.netns_ref = e
                    .netns
                    .as_ref()
                    .and_then(|n| n.name().ok().flatten())
                    .map(NetnsRef::Name);
                tracing::info!(ifindex = e.ifindex, "macvlan moved to another namespace");
                self.reindex();
            }
            _ => self.remove(lower, id),
        }
    }

    /// The user changed the TAP with plain iproute2: apply it as the kernel macvlan would, or
    /// put the TAP back when the kernel would have refused.
    fn tap_changed(&mut self, lower: LowerKey, id: DevId, obs: &TapObserved) {
        let Some(pe) = self.ports.get_mut(&lower) else {
            return;
        };
        let Some(before) = pe.port.device(id) else {
            return;
        };
        // Most events are the echo of our own changes: nothing to follow.
        if (obs.mac, obs.mtu, obs.up, obs.promisc, obs.allmulti)
            == (
                before.mac,
                before.mtu,
                before.up,
                before.promisc,
                before.allmulti,
            )
        {
            return;
        }
        let before = before.clone();
        let mut port = pe.port.clone();
        let mut lower_mac = None;
        if obs.mac != before.mac && obs.mac.is_valid_unicast() {
            match port.set_mac(id, obs.mac) {
                Ok(MacChange::LowerMustChange(m)) => lower_mac = Some(m),
                Ok(_) => {}
                Err(e) => tracing::warn!(name = %before.name, "address {} refused: {e}", obs.mac),
            }
        }
        if obs.mtu != before.mtu && obs.mtu >= MIN_MTU {
            if let Err(e) = port.set_mtu(id, obs.mtu) {
                tracing::warn!(name = %before.name, "mtu {} refused: {e}", obs.mtu);
            }
        }
        if obs.up != before.up {
            if let Err(e) = port.set_up(id, obs.up) {
                tracing::warn!(name = %before.name, "up refused: {e}");
            }
            // Brought up with plain `ip`: the kernel gave the TAP its default qdisc.
            if obs.up {
                if let Some(e) = pe.devs.get(&id) {
                    noqueue_qdisc(&e.tap);
                }
            }
        }
        if (obs.promisc, obs.allmulti) != (before.promisc, before.allmulti) {
            let _ = port.set_rx_flags(id, obs.promisc, obs.allmulti);
        }
        if let Some(m) = lower_mac {
            let r = self.lower_rtnl(lower).set_link(
                lower.1,
                &LinkChange {
                    mac: Some(m),
                    ..Default::default()
                },
            );
            match r {
                Ok(()) => port.lower_mac_changed(m, LowerMacCause::Passthru),
                Err(e) => tracing::warn!("passthru address change refused by the lower: {e}"),
            }
        }
        let pe = self.ports.get_mut(&lower).expect("present");
        let after = port.device(id).cloned().expect("present");
        pe.port = port;
        if after != before {
            tracing::debug!(name = %after.name, "followed a change made to the TAP");
        }
        // Whatever was refused is put back on the TAP.
        let mut observed = after.clone();
        observed.mac = obs.mac;
        observed.mtu = obs.mtu;
        observed.up = obs.up;
        if let Some(e) = pe.devs.get(&id) {
            if let Err(err) = sync_tap(&e.tap, Some(&observed), &after) {
                tracing::warn!(name = %after.name, "could not restore the TAP: {err}");
            }
        }
        if after != before {
            self.commit_later(lower);
        }
    }

    /// Re-reads the multicast list of the one device `ifindex` of namespace `ns` (a TAP or a
    /// lower) after an event said it may have changed, and applies it at once.
    pub fn multicast_changed(&mut self, ns: Option<NetnsId>, ifindex: u32) {
        if let Some((lower, id)) = self.find_by_tap(ns, ifindex) {
            let pe = self.ports.get_mut(&lower).expect("present");
            if !pe.port.device(id).is_some_and(|d| d.up) {
                return;
            }
            let e = &pe.devs[&id];
            let read = umacvlan_io::netlink::multicast_addresses_in(e.netns.as_deref(), e.ifindex);
            let Ok(mut g) = read else { return };
            g.sort_unstable();
            g.dedup();
            if pe.port.device(id).is_some_and(|d| d.mc_list != g) {
                let _ = pe.port.set_mc_list(id, g);
                self.commit(lower);
            }
        }
        let key = (ns, ifindex);
        if let Some(pe) = self.ports.get_mut(&key) {
            let read = umacvlan_io::netlink::multicast_addresses_in(pe.netns.as_ref(), ifindex);
            let Ok(mut g) = read else { return };
            g.sort_unstable();
            g.dedup();
            if g != pe.port.lower().mc_list {
                pe.port.lower_mc_list_changed(g);
                self.commit(key);
            }
        }
    }

    /// [`multicast_changed`](Self::multicast_changed) for every device queued by events since
    /// the last flush, with one read of each namespace's lists however many devices changed
    /// there (each read formats every device of the namespace). Marks the ports changed.
    fn flush_multicast(&mut self) {
        let pending = std::mem::take(&mut self.mc_pending);
        let mut by_ns: BTreeMap<Option<NetnsId>, Vec<u32>> = BTreeMap::new();
        for (ns, ifindex) in pending {
            by_ns.entry(ns).or_default().push(ifindex);
        }
        for (ns, ifindexes) in by_ns {
            let handle = match ns {
                None => None,
                Some(id) => match self.netns_handle(id) {
                    Some(h) => Some(h),
                    // Nothing of ours lives there any more.
                    None => continue,
                },
            };
            let Ok(table) = umacvlan_io::netlink::multicast_table_in(handle.as_ref()) else {
                continue;
            };
            let list = |ifindex: u32| {
                let mut g = table.get(&ifindex).cloned().unwrap_or_default();
                g.sort_unstable();
                g.dedup();
                g
            };
            for ifindex in ifindexes {
                if let Some((lower, id)) = self.find_by_tap(ns, ifindex) {
                    let pe = self.ports.get_mut(&lower).expect("present");
                    if pe.port.device(id).is_some_and(|d| d.up) {
                        let g = list(ifindex);
                        if pe.port.device(id).is_some_and(|d| d.mc_list != g) {
                            let _ = pe.port.set_mc_list(id, g);
                            self.dirty.insert(lower);
                        }
                    }
                }
                let key = (ns, ifindex);
                if let Some(pe) = self.ports.get_mut(&key) {
                    let g = list(ifindex);
                    if g != pe.port.lower().mc_list {
                        pe.port.lower_mc_list_changed(g);
                        self.dirty.insert(key);
                    }
                }
            }
        }
    }

    /// A handle of namespace `id` taken from a TAP or a lower of ours living there.
    fn netns_handle(&self, id: NetnsId) -> Option<NetnsHandle> {
        self.ports.values().find_map(|pe| {
            let taps = pe.devs.values().filter_map(|d| d.netns.as_deref());
            pe.netns
                .iter()
                .chain(taps)
                .find(|n| n.id().ok() == Some(id))
                .and_then(|n| n.try_clone().ok())
        })
    }

    /// Re-reads the multicast lists of the TAPs and lowers (there is no event for them): one
    /// read of `/proc/net/dev_mcast` per namespace, however many macvlans live there.
    pub fn poll_multicast(&mut self) {
        let Ok(own) = umacvlan_io::netlink::multicast_table() else {
            return;
        };
        // Other namespaces holding up TAPs, each read once.
        let mut tables: Vec<(NetnsHandle, std::collections::HashMap<u32, Vec<MacAddr>>)> =
            Vec::new();
        for ns in self.watched_namespaces() {
            if let Ok(t) = umacvlan_io::netlink::multicast_table_in(Some(&ns)) {
                tables.push((ns, t));
            }
        }
        let lowers: Vec<LowerKey> = self.ports.keys().copied().collect();
        for lower in lowers {
            let pe = self.ports.get_mut(&lower).expect("present");
            let table_of = |ns: Option<&NetnsHandle>| match ns {
                None => Some(&own),
                Some(ns) => tables
                    .iter()
                    .find(|(n, _)| n.same_as(ns).unwrap_or(false))
                    .map(|(_, t)| t),
            };
            let mut changed = false;
            for (id, e) in &pe.devs {
                if !pe.port.device(*id).is_some_and(|d| d.up) {
                    continue;
                }
                let Some(table) = table_of(e.netns.as_deref()) else {
                    continue;
                };
                let mut g = table.get(&e.ifindex).cloned().unwrap_or_default();
                g.sort_unstable();
                g.dedup();
                if pe.port.device(*id).is_some_and(|d| d.mc_list != g) {
                    let _ = pe.port.set_mc_list(*id, g);
                    changed = true;
                }
            }
            let Some(lower_table) = table_of(pe.netns.as_ref()) else {
                if changed {
                    self.commit(lower);
                }
                continue;
            };
            let mut lower_mc = lower_table.get(&lower.1).cloned().unwrap_or_default();
            lower_mc.sort_unstable();
            lower_mc.dedup();
            if lower_mc != pe.port.lower().mc_list {
                pe.port.lower_mc_list_changed(lower_mc);
                changed = true;
            }
            if changed {
                self.commit(lower);
            }
        }
    }

    /// Every macvlan, as the state file records them, in creation order. The lower is recorded
    /// by name; for a lower moved to another namespace that is its name there, which a
    /// restarted daemon looks up in its own namespace: such a macvlan is not restored
    /// (`ENODEV`, logged as for a missing lower) unless a device of that name is there.
    pub fn config(&self) -> Vec<LinkAdd> {
        let mut all: Vec<(u64, LinkAdd)> = Vec::new();
        for pe in self.ports.values() {
            for d in pe.port.devices() {
                let Some(e) = pe.devs.get(&d.id) else {
                    continue;
                };
                let sources = d.sources();
                all.push((
                    e.seq,
                    LinkAdd {
                        lower: pe.port.lower().name.clone(),
                        lower_netns: pe.netns_ref.clone(),
                        name: d.name.clone(),
                        address: (d.mode != Mode::Passthru).then_some(d.mac),
                        mtu: Some(d.mtu),
                        netns: e.netns_ref.clone(),
                        up: d.up,
                        macvlan: MacvlanAttrs {
                            mode: Some(d.mode.bits()),
                            flags: Some(d.flags),
                            macaddr: (d.mode == Mode::Source && !sources.is_empty())
                                .then_some(umacvlan_core::engine::MacAddrOp::Set(sources)),
                            bcqueuelen: Some(d.bc_queue_len_req),
                            bclim: (pe.port.bc_cutoff()
                                != umacvlan_core::engine::DEFAULT_BC_CUTOFF)
                                .then_some(pe.port.bc_cutoff()),
                            macaddr_count: None,
                            hostaccess: d.hostaccess.then_some(true),
                        },
                        cni: e.cni.clone(),
                    },
                ));
            }
        }
        all.sort_by_key(|(s, _)| *s);
        all.into_iter().map(|(_, a)| a).collect()
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

fn netns_text(r: &NetnsRef) -> String {
    match r {
        NetnsRef::Name(n) => n.clone(),
        NetnsRef::Pid(p) => p.to_string(),
    }
}

impl Manager {
    /// Creates a macvlan's TAP with its MAC, MTU and carrier, down (the caller brings it up
    /// once the data plane knows it); returns it with its ifindex.
    fn create_tap(
        &mut self,
        ns: Option<&NetnsHandle>,
        dev: &Device,
        carrier: bool,
    ) -> OpResult<(Tap, u32)> {
        // Vnet headers on both sides: partial checksums and GSO super-frames pass through.
        let tap = Tap::create_in(
            ns,
            &dev.name,
            TapOptions {
                vnet_hdr: true,
                multi_queue: false,
            },
        )?;
        tap.set_mac(dev.mac)?;
        // Through the namespace's socket: the TAP's own ioctls would need a socket made
        // there for each call.
        let rtnl = self.nsreg.rtnl(ns, &mut self.rtnl)?;
        let l = rtnl.get_link_by_name(&dev.name)?;
        if l.mtu != dev.mtu {
            rtnl.set_link(
                l.ifindex,
                &LinkChange {
                    mtu: Some(dev.mtu),
                    ..Default::default()
                },
            )?;
        }
        // A TAP is born with carrier on, a state linkwatch never computed an operstate for
        // (`ip` shows `state UNKNOWN`): one transition has it computed (`UP`), as for a
        // kernel macvlan.
        tap.set_carrier(false)?;
        tap.set_carrier(carrier)?;
        Ok((tap, l.ifindex))
    }
}

/// Gives the TAP a kernel macvlan's `noqueue` root qdisc as it comes up (a kernel macvlan,
/// `IFF_NO_QUEUE`, shows `noop` until its first up and `noqueue` from then on; a TAP would
/// get `pfifo_fast`). Set before the first up, it is what up keeps; moving the TAP to
/// another namespace resets it, so it is set on every up. Failing leaves only the look.
fn noqueue_qdisc(tap: &Upper) {
    let r = tap.netns().and_then(|ns| {
        let ifindex = tap.ifindex()?;
        RtNetlink::open_in(Some(&ns))?
            .set_root_qdisc_noqueue(ifindex)
            .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)))
    });
    if let Err(e) = r {
        tracing::warn!("could not give a TAP the noqueue qdisc: {e}");
    }
}

/// Makes the TAP show what the engine says the macvlan is.
fn sync_tap(tap: &Upper, before: Option<&Device>, after: &Device) -> io::Result<()> {
    let b = before.cloned();
    if b.as_ref().is_none_or(|b| b.mac != after.mac) {
        tap.set_mac(after.mac)?;
    }
    if b.as_ref().is_none_or(|b| b.mtu != after.mtu) {
        tap.set_mtu(after.mtu)?;
    }
    if b.as_ref().is_none_or(|b| b.up != after.up) {
        if after.up {
            noqueue_qdisc(tap);
        }
        tap.set_up(after.up)?;
    }
    Ok(())
}

/// `link show` for one macvlan, whose lower lives in `lower_ns` (`None`: the daemon's
/// namespace). Where the kernel's answer depends on the macvlan's namespace (operstate
/// without carrier, `M-DOWN`), it is computed from there.
fn link_info(
    port: &Port,
    lower_ns: Option<&NetnsHandle>,
    d: &Device,
    e: &DevEntry,
    c: DevCounters,
    ns_name: &dyn Fn(&NetnsHandle) -> String,
) -> LinkInfo {
    let lower = port.lower();
    let nsid = |n: Option<&NetnsHandle>| n.map(|n| n.id().ok());
    let with_lower = nsid(e.netns.as_deref()) == nsid(lower_ns);
    let carrier = port.carrier();
    let mut flags = Vec::new();
    if d.up && !carrier {
        flags.push("NO-CARRIER");
    }
    flags.extend(["BROADCAST", "MULTICAST"]);
    if d.allmulti {
        flags.push("ALLMULTI");
    }
    if d.promisc {
        flags.push("PROMISC");
    }
    if d.up {
        flags.push("UP");
        if carrier {
            flags.push("LOWER_UP");
        }
    }
    // iproute2 prints M-DOWN from the lower's flags only when it can see the lower: in the
    // same namespace.
    if !lower.up && with_lower {
        flags.push("M-DOWN");
    }
    // Without carrier the kernel says LOWERLAYERDOWN only if the lower's ifindex, looked up in
    // the macvlan's own namespace, names a device that is not operationally up.
    let operstate = match &e.netns {
        _ if with_lower => port.operstate(d.id),
        ns if d.up && !carrier => {
            // A kernel macvlan never finds itself there; our TAP, created in place, may have
            // been given the lower's ifindex.
            let peer = RtNetlink::open_in(ns.as_deref())
                .ok()
                .and_then(|mut r| r.get_link_by_index(lower.ifindex).ok())
                .filter(|l| l.ifindex != e.ifindex || l.name != d.name)
                .map(|l| matches!(l.operstate, OperState::Up | OperState::Unknown));
            port.operstate_seen_from(d.id, peer)
        }
        _ => port.operstate_seen_from(d.id, None),
    };
    LinkInfo {
        ifindex: e.ifindex,
        ifname: d.name.clone(),
        link: lower.name.clone(),
        link_ifindex: lower.ifindex,
        netns: e.netns.as_deref().map(ns_name),
        lower_netns: lower_ns.map(ns_name),
        flags: flags.into_iter().map(String::from).collect(),
        mtu: d.mtu,
        operstate: operstate.to_string(),
        qdisc: if d.ever_up { "noqueue" } else { "noop" }.to_string(),
        address: d.mac,
        promiscuity: d.promisc as u32,
        allmulti: d.allmulti as u32,
        min_mtu: MIN_MTU,
        max_mtu: d.max_mtu,
        mode: Some(d.mode),
        nopromisc: d.nopromisc(),
        nodst: d.nodst(),
        bcqueuelen: d.bc_queue_len_req,
        usedbcqueuelen: port.bc_queue_len_used(),
        bclim: (port.bc_cutoff() != umacvlan_core::engine::DEFAULT_BC_CUTOFF)
            .then_some(port.bc_cutoff()),
        macaddr_count: d.macaddr_count(),
        macaddr_data: d.sources(),
        datapath: (e.tap.datapath() != "tap").then(|| e.tap.datapath().to_string()),
        hostaccess: d.hostaccess,
        stats: Stats64 {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            rx_errors: c.rx_errors,
            rx_dropped: c.rx_dropped(),
            multicast: c.rx_multicast,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            tx_errors: 0,
            tx_dropped: c.tx_dropped,
        },
        cni: e.cni.clone(),
    }
}
