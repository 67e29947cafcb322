//! Requests: `link add`, `link set` (its system steps taken one by one, each with its undo, so a
//! refusal midway puts everything back) and `link del`.

use super::*;

impl Manager {
    pub(super) fn link_add(&mut self, a: &LinkAdd) -> OpResult {
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
        let bpf = match self.ports.get(&lower_key) {
            Some(pe) => pe.bpf,
            None => self.port_on_bpf(lower_ns.as_ref()),
        };
        let made = match self.fast.as_mut().filter(|_| bpf) {
            Some(f) => f
                .create_upper(&mut self.rtnl, ns.as_ref(), &dev, carrier)
                .map(|(v, ifindex)| (Upper::Veth(v), ifindex))
                .map_err(OpError::from),
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
            config: None,
        };
        if let Some(port) = fresh {
            let pe = self.start_port(lower_key.1, port, lower_ns, a.lower_netns.clone(), bpf)?;
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
    pub(super) fn free_name(&mut self) -> OpResult<String> {
        for i in 0..10_000 {
            let n = format!("macvlan{i}");
            if !self.name_exists(None, &n)? {
                return Ok(n);
            }
        }
        Err(errno(Errno::EEXIST))
    }

    pub(super) fn link_set(&mut self, s: &LinkSet) -> OpResult {
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
    pub(super) fn apply_link_set(
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
        let synced = self
            .nsreg
            .rtnl(entry.netns.as_deref(), &mut self.rtnl)
            .map_err(OpError::from)
            .and_then(|rtnl| sync_tap(&entry.tap, rtnl, entry.ifindex, Some(before), &after));
        if let Err(e) = synced {
            return Err((e, done));
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
        // Shared with the namespace's other macvlans: the registry then knows it is in use.
        let shared = match ns {
            Some(h) => match self.nsreg.share(h) {
                Ok(h) => Some(h),
                Err(e) => return Err((e.into(), done)),
            },
            None => None,
        };
        let from = std::mem::replace(&mut entry.netns, shared);
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
    pub(super) fn undo_link_set(
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
                    self.nsreg
                        .rtnl(e.netns.as_deref(), &mut self.rtnl)
                        .map_err(OpError::from)
                        .and_then(|rtnl| sync_tap(&e.tap, rtnl, e.ifindex, None, before))
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

    pub(super) fn name_exists_elsewhere(
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

    pub(super) fn link_del(&mut self, name: &str) -> OpResult {
        let (lower, id) = self.find(name).ok_or(errno(Errno::ENODEV))?;
        self.remove(lower, id);
        Ok(())
    }
}
