//! System side effects: opening a lower (its packet sockets and data plane) and creating a
//! macvlan's TAP as the kernel would show its macvlan.

use super::*;

impl Manager {
    /// A port on the lower `lower` of namespace `ns` (`None`: the daemon's); `bpf`: on the
    /// eBPF fast path (see [`Manager::port_on_bpf`]).
    pub(super) fn start_port(
        &mut self,
        lower: u32,
        port: Port,
        ns: Option<NetnsHandle>,
        ns_ref: Option<NetnsRef>,
        bpf: bool,
    ) -> OpResult<PortEntry> {
        let (lowers, members_sock) = self.open_lower(ns.as_ref(), lower, bpf)?;
        let rtnl = match &ns {
            Some(h) => Some(RtNetlink::open_in(Some(h))?),
            None => None,
        };
        if let Some(f) = self.fast.as_mut() {
            if bpf {
                f.port_started(&port.lower().name, lower)?;
            } else {
                // Its programs would have to live in that namespace, with every hidden end.
                tracing::info!(
                    lower = %port.lower().name,
                    "the lower is in another namespace: its macvlans take the tap datapath"
                );
            }
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
            bpf,
        })
    }

    /// The packet sockets of a port on the lower `ifindex` of namespace `ns` (`None`: the
    /// daemon's): one per data-plane worker (one fanout group), and one holding the
    /// memberships. `bpf`: the port is on the fast path, whose filter they carry.
    pub(super) fn open_lower(
        &mut self,
        ns: Option<&NetnsHandle>,
        ifindex: u32,
        bpf: bool,
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
        if let Some(f) = self.fast.as_ref().filter(|_| bpf) {
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

    /// Creates a macvlan's TAP with its MAC, MTU and carrier, down (the caller brings it up
    /// once the data plane knows it); returns it with its ifindex.
    pub(super) fn create_tap(
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
pub(super) fn noqueue_qdisc(tap: &Upper) {
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

/// Makes the macvlan's device show what the engine says the macvlan is. A TAP is changed
/// through `rtnl`, the rtnetlink socket of its namespace, in one message (MAC, MTU, up, in the
/// order the kernel applies them) with the qdisc set first when it comes up: its own ioctls
/// would each need a socket made in that namespace. A failure midway is the caller's to undo.
pub(super) fn sync_tap(
    tap: &Upper,
    rtnl: &mut RtNetlink,
    ifindex: u32,
    before: Option<&Device>,
    after: &Device,
) -> OpResult {
    let mac = before
        .is_none_or(|b| b.mac != after.mac)
        .then_some(after.mac);
    let mtu = before
        .is_none_or(|b| b.mtu != after.mtu)
        .then_some(after.mtu);
    let up = before.is_none_or(|b| b.up != after.up).then_some(after.up);
    let Upper::Tap(_) = tap else {
        if let Some(m) = mac {
            tap.set_mac(m)?;
        }
        if let Some(m) = mtu {
            tap.set_mtu(m)?;
        }
        if let Some(u) = up {
            if u {
                noqueue_qdisc(tap);
            }
            tap.set_up(u)?;
        }
        return Ok(());
    };
    if up == Some(true) {
        if let Err(e) = rtnl.set_root_qdisc_noqueue(ifindex) {
            tracing::warn!("could not give a TAP the noqueue qdisc: {e}");
        }
    }
    if mac.is_none() && mtu.is_none() && up.is_none() {
        return Ok(());
    }
    rtnl.set_link(
        ifindex,
        &LinkChange {
            mac,
            mtu,
            up,
            ..Default::default()
        },
    )?;
    Ok(())
}
