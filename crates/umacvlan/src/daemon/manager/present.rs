//! Presentation: what `link show`, `ports` and the state file say about the macvlans.

use super::*;
use umacvlan_io::bpf::maps::Stats;

impl Manager {
    pub(super) fn show(&self, name: Option<&str>) -> Response {
        let mut all: Vec<(u64, LinkInfo)> = Vec::new();
        let table = name
            .is_none()
            .then(|| self.fast.as_ref().and_then(|f| f.all_counters()))
            .flatten();
        // The namespaces' names are read once per answer, on the first macvlan that needs
        // one, with one scan of /var/run/netns (a scan per namespace cost as many `stat`s as
        // namespaces squared: a quarter of the idle daemon's time with 100 of them).
        let names = std::cell::OnceCell::new();
        let ns_name = |n: &NetnsHandle| -> String {
            let names = names.get_or_init(umacvlan_io::names);
            n.id()
                .ok()
                .and_then(|i| names.get(&i).cloned())
                .unwrap_or_else(|| "?".into())
        };
        for pe in self.ports.values() {
            for d in pe.port.devices() {
                if name.is_some_and(|n| n != d.name) {
                    continue;
                }
                let Some(e) = pe.devs.get(&d.id) else {
                    continue;
                };
                let c = self.dev_counters(pe, d.id, e, table.as_ref());
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

    /// Names and counters only: the statistics tree asks every second, and building every
    /// [`LinkInfo`] (flags, states, namespace names) for that was most of an idle daemon's
    /// time with many macvlans.
    pub(super) fn link_counters(&self) -> Response {
        let mut all: Vec<(u64, LinkCounters)> = Vec::new();
        // The fast path's counters in batches, not a `bpf` syscall per macvlan.
        let table = self.fast.as_ref().and_then(|f| f.all_counters());
        for pe in self.ports.values() {
            for d in pe.port.devices() {
                let Some(e) = pe.devs.get(&d.id) else {
                    continue;
                };
                all.push((
                    e.seq,
                    LinkCounters {
                        ifname: d.name.clone(),
                        stats: stats64(&self.dev_counters(pe, d.id, e, table.as_ref())),
                    },
                ));
            }
        }
        all.sort_by_key(|(s, _)| *s);
        Response::Counters {
            counters: all.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// A macvlan's counters: its data plane's, plus the fast path's on that path (from
    /// `table`, all of them read at once, when the caller has it).
    fn dev_counters(
        &self,
        pe: &PortEntry,
        id: DevId,
        e: &DevEntry,
        table: Option<&HashMap<u32, Stats>>,
    ) -> DevCounters {
        let mut c = pe.dp.counters(id);
        if let (Some(f), Some(h)) = (&self.fast, e.tap.hidden_ifindex()) {
            c.add(&match table {
                Some(t) => FastState::dev_counters(t.get(&h).copied().unwrap_or_default()),
                None => f.counters(h),
            });
        }
        c
    }

    pub(super) fn ports_info(&self) -> Response {
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
                            .filter(|_| pe.bpf)
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

    /// Every macvlan, as the state file records them, in creation order. The lower is recorded
    /// by name; for a lower moved to another namespace that is its name there, which a
    /// restarted daemon looks up in its own namespace: such a macvlan is not restored
    /// (`ENODEV`, logged as for a missing lower) unless a device of that name is there.
    ///
    /// Asked after every turn (for the state file), so a macvlan's record is built again only
    /// when it may differ: the device has a new stamp, or what comes from outside it (the
    /// lower's name and namespace, the port's `bclim`, its own namespace and CNI attachment)
    /// is no longer what the record says. The others are shared with the last answer.
    pub fn config(&mut self) -> Vec<Arc<LinkAdd>> {
        let mut all: Vec<(u64, Arc<LinkAdd>)> = Vec::new();
        for pe in self.ports.values_mut() {
            let bclim = (pe.port.bc_cutoff() != umacvlan_core::engine::DEFAULT_BC_CUTOFF)
                .then_some(pe.port.bc_cutoff());
            // What every record of the port says of it, compared once per port.
            let port_same =
                pe.devs
                    .values()
                    .find_map(|e| e.config.as_ref())
                    .is_none_or(|(_, c)| {
                        c.lower == pe.port.lower().name
                            && c.lower_netns == pe.netns_ref
                            && c.macvlan.bclim == bclim
                    });
            for d in pe.port.devices() {
                let Some(e) = pe.devs.get_mut(&d.id) else {
                    continue;
                };
                let current = e.config.as_ref().filter(|(stamp, c)| {
                    port_same && stamp.same(d.stamp()) && c.netns == e.netns_ref && c.cni == e.cni
                });
                let record = match current {
                    Some((_, c)) => c.clone(),
                    None => {
                        let c = Arc::new(link_add(&pe.port, &pe.netns_ref, bclim, d, e));
                        e.config = Some((d.stamp(), c.clone()));
                        c
                    }
                };
                all.push((e.seq, record));
            }
        }
        all.sort_by_key(|(s, _)| *s);
        all.into_iter().map(|(_, a)| a).collect()
    }
}

/// One macvlan as the state file records it (see [`Manager::config`]).
fn link_add(
    port: &Port,
    lower_netns: &Option<NetnsRef>,
    bclim: Option<i32>,
    d: &umacvlan_core::engine::Device,
    e: &DevEntry,
) -> LinkAdd {
    let sources = d.sources();
    LinkAdd {
        lower: port.lower().name.clone(),
        lower_netns: lower_netns.clone(),
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
            bclim,
            macaddr_count: None,
            hostaccess: d.hostaccess.then_some(true),
        },
        cni: e.cni.clone(),
    }
}

pub(super) fn netns_text(r: &NetnsRef) -> String {
    match r {
        NetnsRef::Name(n) => n.clone(),
        NetnsRef::Pid(p) => p.to_string(),
    }
}

/// `link show` for one macvlan, whose lower lives in `lower_ns` (`None`: the daemon's
/// namespace). Where the kernel's answer depends on the macvlan's namespace (operstate
/// without carrier, `M-DOWN`), it is computed from there.
pub(super) fn link_info(
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
        stats: stats64(&c),
        cni: e.cni.clone(),
    }
}

/// The counters as `link show -s` names them.
fn stats64(c: &DevCounters) -> Stats64 {
    Stats64 {
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        rx_errors: c.rx_errors,
        rx_dropped: c.rx_dropped(),
        multicast: c.rx_multicast,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        tx_errors: 0,
        tx_dropped: c.tx_dropped,
    }
}
