//! Following the system: link events from every watched namespace (lowers and TAPs changed,
//! moved or gone behind the daemon's back) and multicast lists (events, re-reads, the poll).

use super::*;

impl Manager {
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
            // Only ours: a bpf daemon's own namespace has a hidden veth end per macvlan, whose
            // joins would each cost a read of that namespace's whole list.
            LinkEvent::Multicast { ifindex }
                if self.ports.contains_key(&(ns, ifindex))
                    || self.find_by_tap(ns, ifindex).is_some() =>
            {
                self.mc_pending.insert((ns, ifindex));
            }
            LinkEvent::Multicast { .. } => {}
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

    pub(super) fn lower_changed(&mut self, lower: LowerKey, ls: &LinkState) {
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
            let synced = self
                .nsreg
                .rtnl(e.netns.as_deref(), &mut self.rtnl)
                .map_err(OpError::from)
                .and_then(|rtnl| sync_tap(&e.tap, rtnl, e.ifindex, Some(b), a));
            if let Err(err) = synced {
                tracing::warn!(name = %a.name, "could not update the TAP: errno {}", err.errno);
            }
        }
        self.commit(lower);
    }

    /// A bpf port whose lower moved to another namespace: the programs reach hidden ends by
    /// ifindex in the lower's namespace, so its macvlans (veths still) go on to the userspace
    /// data plane, which follows the lower as for TAPs. The hidden ends' sockets take every
    /// frame before the maps stop forwarding, so nothing the macvlans send is lost between.
    fn port_leaves_fast_path(&mut self, lower: LowerKey) {
        let Some(pe) = self.ports.get_mut(&lower) else {
            return;
        };
        for (id, e) in &pe.devs {
            if let Err(err) = e.tap.leave_fast_path() {
                tracing::error!(
                    id = id.0,
                    "a macvlan's hidden end cannot take every frame: {err}"
                );
            }
        }
        if let Some(f) = self.fast.as_mut() {
            f.port_leaves(lower.1);
        }
        pe.bpf = false;
        tracing::warn!(
            lower = %pe.port.lower().name,
            "lower moved to another namespace, out of the programs' reach: its macvlans \
             continue on the userspace data path"
        );
    }

    pub(super) fn lower_gone(&mut self, lower: LowerKey) {
        // NETDEV_UNREGISTER: every macvlan on it goes.
        if let Some(pe) = self.ports.remove(&lower) {
            tracing::info!(lower = %pe.port.lower().name, "lower device gone; removing its macvlans");
            if let Some(f) = self.fast.as_mut() {
                if pe.bpf {
                    f.port_gone(lower.1);
                }
                // Also the veths of a port that left the fast path.
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
    pub(super) fn lower_moved(&mut self, old: LowerKey, nsid: i32, ifindex: u32) {
        let known: Vec<NetnsHandle> = self.watched_namespaces();
        let known: Vec<&NetnsHandle> = known.iter().collect();
        let Some(ns) = self.lower_rtnl(old).netns_by_nsid(nsid, &known) else {
            tracing::warn!(
                nsid,
                "lower moved to a namespace that cannot be found; removing its macvlans"
            );
            return self.lower_gone(old);
        };
        if self.ports.get(&old).is_some_and(|pe| pe.bpf) {
            self.port_leaves_fast_path(old);
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
            // A tap port (a bpf one was removed above), wherever the lower goes.
            let (lowers, members_sock) = self.open_lower(ns.as_ref(), ifindex, false)?;
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

    pub(super) fn tap_gone(&mut self, lower: LowerKey, id: DevId) {
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
                    // Shared with the namespace's other macvlans (see `watched_namespace_ids`).
                    match self.nsreg.share(ns) {
                        Ok(h) => Some(h),
                        Err(_) => return self.remove(lower, id),
                    }
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
    pub(super) fn tap_changed(&mut self, lower: LowerKey, id: DevId, obs: &TapObserved) {
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
            let synced = self
                .nsreg
                .rtnl(e.netns.as_deref(), &mut self.rtnl)
                .map_err(OpError::from)
                .and_then(|rtnl| sync_tap(&e.tap, rtnl, e.ifindex, Some(&observed), &after));
            if let Err(err) = synced {
                tracing::warn!(name = %after.name, "could not restore the TAP: errno {}", err.errno);
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
    pub(super) fn flush_multicast(&mut self) {
        let pending = std::mem::take(&mut self.mc_pending);
        let mut by_ns: BTreeMap<Option<NetnsId>, Vec<u32>> = BTreeMap::new();
        for (ns, ifindex) in pending {
            by_ns.entry(ns).or_default().push(ifindex);
        }
        for (ns, ifindexes) in by_ns {
            let table = match ns {
                None => umacvlan_io::netlink::multicast_table(),
                Some(id) => match self.netns_handle(id) {
                    Some(h) => self.nsreg.multicast_table(&h),
                    // Nothing of ours lives there any more.
                    None => continue,
                },
            };
            let Ok(table) = table else {
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

    /// Re-reads the multicast lists of the TAPs and lowers (there is no event for them): one
    /// read of `/proc/net/dev_mcast` per namespace, however many macvlans live there.
    pub fn poll_multicast(&mut self) {
        let Ok(own) = umacvlan_io::netlink::multicast_table() else {
            return;
        };
        // Other namespaces holding up TAPs, each read once.
        let mut tables: std::collections::HashMap<
            NetnsId,
            std::collections::HashMap<u32, Vec<MacAddr>>,
        > = std::collections::HashMap::new();
        for ns in self.watched_namespaces() {
            if let (Ok(id), Ok(t)) = (ns.id(), self.nsreg.multicast_table(&ns)) {
                tables.insert(id, t);
            }
        }
        let lowers: Vec<LowerKey> = self.ports.keys().copied().collect();
        for lower in lowers {
            let pe = self.ports.get_mut(&lower).expect("present");
            let table_of = |ns: Option<&NetnsHandle>| match ns {
                None => Some(&own),
                Some(ns) => ns.id().ok().and_then(|id| tables.get(&id)),
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
}
