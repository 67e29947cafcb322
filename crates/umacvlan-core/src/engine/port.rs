//! The control plane: one [`Port`] per lower device, holding its macvlans, with every control
//! operation the kernel has (`macvlan_common_newlink`, `macvlan_changelink`, `macvlan_open`,
//! `macvlan_set_mac_address`, `macvlan_change_mtu`, `macvlan_fdb_add`, the netdevice notifier,
//! …) and the kernel's errors.
//!
//! Every operation validates completely before it changes anything, so a rejected operation
//! leaves the port exactly as it was. Where the kernel itself half-applies a failing request
//! (`changelink` with `macaddr` on a device that is not in source mode, after mode/flags were
//! already set), umacvlan refuses up front with the same errno and changes nothing.
//!
//! What the lower device must do (unicast/multicast filter entries, promiscuity, allmulti) and
//! what each TAP must show (carrier, MTU, MAC) is *derived* from this state
//! ([`Port::lower_filters`], [`Port::carrier`]), never tracked as increments, so it cannot drift.

use super::hash::{eth_hash, port_mc_hash, Bitmap256};
use super::snapshot::{DevSnap, PortSnapshot};
use super::types::*;
use crate::wire::MacAddr;

/// When a device last changed, from a per-port counter that only grows: a layer that derives
/// something from a device (the state file's record of it, say) keeps it while the stamp is
/// the same. It is not part of the device's value: two devices equal in every setting are equal
/// whatever their stamps, so "the port is exactly as it was" comparisons are unaffected.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChangeStamp(u64);

impl PartialEq for ChangeStamp {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ChangeStamp {}

impl ChangeStamp {
    /// Whether `other` is the very same stamp (the value comparison, which `==` is not).
    pub fn same(self, other: ChangeStamp) -> bool {
        self.0 == other.0
    }
}

/// Identifies a macvlan within its port: a small integer, reused after deletion, suitable as an
/// index into per-worker counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DevId(pub u32);

impl DevId {
    /// As an array index.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the engine needs to know about the lower device. The daemon fills it from rtnetlink and
/// keeps it current with the `lower_*` event methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerState {
    /// ifindex of the lower (in the daemon's namespace).
    pub ifindex: u32,
    /// Name of the lower.
    pub name: String,
    /// The lower's current MAC.
    pub mac: MacAddr,
    /// The lower's MTU.
    pub mtu: u32,
    /// The lower's `max_mtu`, which becomes each macvlan's `max_mtu`.
    pub max_mtu: u32,
    /// `dev->type == ARPHRD_ETHER`.
    pub is_ether: bool,
    /// `IFF_LOOPBACK`.
    pub is_loopback: bool,
    /// Another rx handler owns the lower (bridge/bond/team port, kernel macvlan/ipvlan port…).
    pub rx_handler_busy: bool,
    /// `IFF_UP`.
    pub up: bool,
    /// `netif_carrier_ok`.
    pub carrier: bool,
    /// Operstate is `IF_OPER_DORMANT`.
    pub dormant: bool,
    /// The lower's promiscuity count is non-zero (the kernel's internal `IFF_PROMISC`, which
    /// netlink's flags do not show when a driver or packet socket set it: use the count).
    pub promisc: bool,
    /// The lower's allmulti count is non-zero.
    pub allmulti: bool,
    /// The lower's link-layer multicast list as the system reports it.
    pub mc_list: Vec<MacAddr>,
}

impl LowerState {
    /// A plain, up Ethernet lower with carrier: handy for tests and examples.
    pub fn ethernet(ifindex: u32, name: &str, mac: MacAddr, mtu: u32) -> Self {
        LowerState {
            ifindex,
            name: name.to_string(),
            mac,
            mtu,
            max_mtu: MAX_MTU,
            is_ether: true,
            is_loopback: false,
            rx_handler_busy: false,
            up: true,
            carrier: true,
            dormant: false,
            promisc: false,
            allmulti: false,
            mc_list: Vec::new(),
        }
    }
}

/// One macvlan device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its id in the port.
    pub id: DevId,
    /// Interface name.
    pub name: String,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u32,
    /// Its `max_mtu` (the lower's `max_mtu` at creation).
    pub max_mtu: u32,
    /// Mode.
    pub mode: Mode,
    /// `MACVLAN_FLAG_*` bits.
    pub flags: u16,
    /// Administratively up (`IFF_UP`): opened, and so in the port's MAC table.
    pub up: bool,
    /// `IFF_PROMISC` on the macvlan.
    pub promisc: bool,
    /// `IFF_ALLMULTI` on the macvlan.
    pub allmulti: bool,
    /// Multicast groups joined by the macvlan's own stack (sorted, no duplicates).
    pub mc_list: Vec<MacAddr>,
    /// Groups the device left (or static entries it deleted) since its filter was last
    /// computed, that its filter still passes. Linux 6.18 quirk, observed against the kernel:
    /// an entry synced to the lower keeps a reference until `dev_mc_sync` drops it, and
    /// `macvlan_set_mac_lists` computes the device's filter *before* syncing, so a left
    /// group keeps passing until the next rx-mode change of the device (another join or
    /// leave, a promisc/allmulti change, reopening). Sorted.
    pub mc_stale: Vec<MacAddr>,
    /// Passthru only: the allmulti reference the device holds on the lower. The kernel takes
    /// and drops it only when allmulti is toggled while the device is up
    /// (`macvlan_change_rx_flags`); a passthru device's open and stop leave it alone.
    pub passthru_allmulti_ref: bool,
    /// The device has been opened at least once (a kernel macvlan's qdisc shows `noop`
    /// until then and `noqueue` ever after).
    pub ever_up: bool,
    /// Static multicast entries added with `bridge fdb add` (sorted).
    pub fdb_mc: Vec<MacAddr>,
    /// Secondary unicast entries (`bridge fdb add` on passthru; sorted).
    pub fdb_uc: Vec<MacAddr>,
    /// `bcqueuelen` request.
    pub bc_queue_len_req: u32,
    /// `hostaccess on`: the lower's own host and this macvlan reach each other directly
    /// (umacvlan's option; never in passthru or source mode).
    pub hostaccess: bool,
    /// Source-mode list with insertion sequence numbers (for the kernel's dump order).
    sources: Vec<(MacAddr, u64)>,
    /// When the device was last put into the MAC table (for the kernel's walk order).
    hash_seq: u64,
    /// Set anew by every change of the device (see [`ChangeStamp`]).
    stamp: ChangeStamp,
}

impl Device {
    /// When it last changed.
    pub fn stamp(&self) -> ChangeStamp {
        self.stamp
    }

    /// `nopromisc` flag.
    pub fn nopromisc(&self) -> bool {
        self.flags & FLAG_NOPROMISC != 0
    }
    /// `nodst` flag.
    pub fn nodst(&self) -> bool {
        self.flags & FLAG_NODST != 0
    }
    /// Number of source-mode entries (`IFLA_MACVLAN_MACADDR_COUNT`).
    pub fn macaddr_count(&self) -> u32 {
        self.sources.len() as u32
    }
    /// Whether `mac` is in the source list.
    pub fn has_source(&self, mac: MacAddr) -> bool {
        self.sources.iter().any(|(m, _)| *m == mac)
    }
    /// The source list in the order the kernel dumps it (`IFLA_MACVLAN_MACADDR_DATA`): by hash
    /// bucket, newest first within a bucket.
    pub fn sources(&self) -> Vec<MacAddr> {
        let mut v = self.sources.clone();
        v.sort_by_key(|(m, seq)| (eth_hash(*m), std::cmp::Reverse(*seq)));
        v.into_iter().map(|(m, _)| m).collect()
    }
    /// Whether a multicast frame to `dst` passes this device's own filter (`vlan->mc_filter`).
    /// The rule lives in [`DevSnap::accepts_group`], which the data plane uses; this asks it
    /// (it builds a snapshot of the device: for control-plane use and tests, not per frame).
    pub fn accepts_group(&self, dst: MacAddr) -> bool {
        DevSnap::from_device(self).accepts_group(dst)
    }
}

/// How a MAC change request ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacChange {
    /// Same address: nothing to do.
    Unchanged,
    /// The device now has the new address.
    Changed,
    /// Passthru: the *lower's* MAC must change to this; the device follows through
    /// [`Port::lower_mac_changed`] with [`LowerMacCause::Passthru`] once it has.
    LowerMustChange(MacAddr),
}

/// Why the lower's MAC changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerMacCause {
    /// Someone changed the lower directly: a passthru port records it as the address to
    /// restore when the port goes away.
    External,
    /// umacvlan changed it on behalf of a passthru macvlan's address change.
    Passthru,
}

/// What a deletion leaves to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The device that was removed.
    pub device: Device,
    /// The port has no device left and must be destroyed.
    pub port_empty: bool,
    /// When the port is destroyed: the MAC to put back on the lower (passthru changed it).
    pub restore_lower_mac: Option<MacAddr>,
}

/// What the lower device must accept on behalf of the port's up macvlans, as the kernel
/// macvlan programs it (`dev_uc_add`, `dev_uc_sync`, `dev_mc_sync`, `dev_set_promiscuity`,
/// `dev_set_allmulti`). umacvlan realises it with packet-socket memberships.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LowerFilters {
    /// Unicast addresses to accept (sorted, distinct).
    pub unicast: Vec<MacAddr>,
    /// Multicast groups to accept (sorted, distinct).
    pub multicast: Vec<MacAddr>,
    /// Promiscuity references the macvlans hold on the lower.
    pub promisc: u32,
    /// Allmulti references the macvlans hold on the lower.
    pub allmulti: u32,
}

/// The port's state before an [`add_device`](Port::add_device), for
/// [`undo_add`](Port::undo_add).
#[derive(Clone, Copy, Debug)]
pub struct AddUndo {
    bc_cutoff: i32,
    passthru: bool,
    filters_live: bool,
    seq: u64,
}

/// The port: the lower device and the macvlans on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    lower: LowerState,
    /// All macvlans in creation order (`port->vlans`).
    devices: Vec<Device>,
    bc_cutoff: i32,
    passthru: bool,
    /// The lower's MAC to restore when a passthru port is destroyed (`port->perm_addr`).
    perm_addr: MacAddr,
    /// Whether the port's filters have been computed: the kernel computes them the first time
    /// a macvlan's rx mode is set (on open); until then they are empty.
    filters_live: bool,
    seq: u64,
    /// The last [`ChangeStamp`] given; the port never takes it back (not even
    /// [`Port::undo_add`]). A caller that puts back an earlier clone of the port puts back its
    /// devices with their stamps, and the stamps given since may be given again: whoever
    /// keeps something by stamp must not have kept it from the state that was dropped (the
    /// daemon reads stamps only between requests). Not part of the port's value either.
    stamps: ChangeStamp,
}

fn err(e: Errno) -> ControlError {
    ControlError::new(e)
}

/// `macvlan_validate`, for the parts of a request it looks at.
fn validate(address: Option<MacAddr>, a: &MacvlanAttrs) -> ControlResult<Option<Mode>> {
    if let Some(mac) = address {
        if !mac.is_valid_unicast() {
            return Err(err(Errno::EADDRNOTAVAIL));
        }
    }
    if let Some(f) = a.flags {
        if f & !FLAGS_VALID != 0 {
            return Err(err(Errno::EINVAL));
        }
    }
    let mode = match a.mode {
        Some(bits) => Some(Mode::from_bits(bits).ok_or(err(Errno::EINVAL))?),
        None => None,
    };
    match &a.macaddr {
        Some(MacAddrOp::Add(m)) | Some(MacAddrOp::Del(m)) if !m.is_valid_unicast() => {
            return Err(err(Errno::EADDRNOTAVAIL))
        }
        Some(MacAddrOp::Set(list)) if list.iter().any(|m| !m.is_valid_unicast()) => {
            return Err(err(Errno::EADDRNOTAVAIL))
        }
        _ => {}
    }
    if a.macaddr_count.is_some() {
        return Err(err(Errno::EINVAL));
    }
    Ok(mode)
}

/// `hostaccess on` needs a macvlan with its own MAC that the host can address and that
/// receives by destination: a passthru macvlan owns the host's own MAC, a source-mode one
/// receives by source.
fn check_hostaccess(on: bool, mode: Mode) -> ControlResult {
    if on && matches!(mode, Mode::Passthru | Mode::Source) {
        return Err(ControlError::with_msg(
            Errno::EINVAL,
            "hostaccess is not supported in passthru or source mode",
        ));
    }
    Ok(())
}

/// The generic rtnetlink MTU check (`dev_validate_mtu`), with its extack messages.
fn validate_mtu_range(mtu: u32, max: u32) -> ControlResult {
    if mtu < MIN_MTU {
        return Err(ControlError::with_msg(
            Errno::EINVAL,
            "mtu less than device minimum",
        ));
    }
    if mtu > max {
        return Err(ControlError::with_msg(
            Errno::EINVAL,
            "mtu greater than device maximum",
        ));
    }
    Ok(())
}

impl Port {
    /// `macvlan_port_create`: refuses a lower that is not Ethernet or is loopback (EINVAL) and
    /// one whose rx handler is taken (EBUSY).
    pub fn create(lower: LowerState) -> ControlResult<Port> {
        if !lower.is_ether || lower.is_loopback {
            return Err(err(Errno::EINVAL));
        }
        if lower.rx_handler_busy {
            return Err(err(Errno::EBUSY));
        }
        Ok(Port {
            perm_addr: lower.mac,
            lower,
            devices: Vec::new(),
            bc_cutoff: DEFAULT_BC_CUTOFF,
            passthru: false,
            filters_live: false,
            seq: 0,
            stamps: ChangeStamp::default(),
        })
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ----- queries -------------------------------------------------------------------------

    /// The lower device as last reported.
    pub fn lower(&self) -> &LowerState {
        &self.lower
    }
    /// All macvlans in creation order.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }
    /// One macvlan.
    pub fn device(&self, id: DevId) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }
    /// One macvlan by name.
    pub fn device_by_name(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }
    /// The device to change: it gets a new stamp.
    fn dev_mut(&mut self, id: DevId) -> ControlResult<&mut Device> {
        let stamp = self.next_stamp();
        let dev = self
            .devices
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or(err(Errno::ENODEV))?;
        dev.stamp = stamp;
        Ok(dev)
    }
    fn next_stamp(&mut self) -> ChangeStamp {
        self.stamps.0 += 1;
        self.stamps
    }
    fn dev(&self, id: DevId) -> ControlResult<&Device> {
        self.device(id).ok_or(err(Errno::ENODEV))
    }
    /// No macvlan left.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
    /// The port is in passthru mode.
    pub fn is_passthru(&self) -> bool {
        self.passthru
    }
    /// The port's broadcast cutoff (`bclim`).
    pub fn bc_cutoff(&self) -> i32 {
        self.bc_cutoff
    }
    /// `usedbcqueuelen`: the largest `bcqueuelen` any macvlan of the port requests (0 if none).
    pub fn bc_queue_len_used(&self) -> u32 {
        self.devices
            .iter()
            .map(|d| d.bc_queue_len_req)
            .max()
            .unwrap_or(0)
    }
    /// The lower MAC a passthru port restores when it is destroyed.
    pub fn perm_addr(&self) -> MacAddr {
        self.perm_addr
    }
    /// Carrier of a macvlan: the lower's (`netif_stacked_transfer_operstate`).
    pub fn carrier(&self) -> bool {
        self.lower.carrier
    }
    /// Operstate name of a macvlan as `ip link` shows it, for a macvlan in its lower's
    /// namespace (see [`Port::operstate_seen_from`] for one elsewhere).
    pub fn operstate(&self, id: DevId) -> &'static str {
        self.operstate_seen_from(id, Some(false))
    }

    /// Operstate of a macvlan as the kernel computes it (`default_operstate`,
    /// net/core/link_watch.c): without carrier it looks the lower's ifindex up *in the
    /// macvlan's own namespace* and says LOWERLAYERDOWN only if it finds a device there that
    /// is not oper-up (UP or UNKNOWN), DOWN otherwise. `peer_oper_up`: `None` when no device
    /// there has the lower's ifindex; `Some(oper_up)` of that device (for a macvlan in the
    /// lower's namespace it is the lower itself, which without carrier is not oper-up). The
    /// conformance suite found a macvlan moved to another namespace reporting DOWN.
    pub fn operstate_seen_from(&self, id: DevId, peer_oper_up: Option<bool>) -> &'static str {
        match self.device(id) {
            Some(d) if d.up => {
                if !self.lower.carrier {
                    match peer_oper_up {
                        Some(false) => "LOWERLAYERDOWN",
                        _ => "DOWN",
                    }
                } else if self.lower.dormant {
                    "DORMANT"
                } else {
                    "UP"
                }
            }
            _ => "DOWN",
        }
    }

    /// `macvlan_addr_busy`: the lower's MAC (non-passthru) or an up macvlan's MAC.
    fn addr_busy(&self, mac: MacAddr) -> bool {
        (!self.passthru && mac == self.lower.mac)
            || self.devices.iter().any(|d| d.up && d.mac == mac)
    }

    fn alloc_id(&self) -> DevId {
        let mut used: Vec<u32> = self.devices.iter().map(|d| d.id.0).collect();
        used.sort_unstable();
        let mut id = 0;
        for u in used {
            if u != id {
                break;
            }
            id += 1;
        }
        DevId(id)
    }

    // ----- create / delete -----------------------------------------------------------------

    /// `macvlan_common_newlink`: adds a macvlan (down). `random` supplies the 48 bits of a
    /// random MAC when none is given. Name uniqueness across the namespace is the caller's
    /// (`EEXIST` comes from rtnetlink before the driver sees the request).
    pub fn add_device(&mut self, req: &NewDevice, random: u64) -> ControlResult<DevId> {
        let mode = validate(req.mac, &req.attrs)?.unwrap_or(Mode::DEFAULT);
        if let Some(mtu) = req.mtu {
            validate_mtu_range(mtu, MAX_MTU)?;
            if mtu > self.lower.mtu {
                return Err(err(Errno::EINVAL));
            }
        }
        if self.passthru {
            return Err(err(Errno::EINVAL));
        }
        if mode == Mode::Passthru && !self.devices.is_empty() {
            return Err(err(Errno::EINVAL));
        }
        if req.attrs.macaddr.is_some() && mode != Mode::Source {
            return Err(err(Errno::EINVAL));
        }
        check_hostaccess(req.attrs.hostaccess.unwrap_or(false), mode)?;
        let mac = if mode == Mode::Passthru {
            self.lower.mac
        } else {
            req.mac.unwrap_or_else(|| MacAddr::random_local(random))
        };
        let id = self.alloc_id();
        let mut dev = Device {
            id,
            name: req.name.clone(),
            mac,
            mtu: req.mtu.unwrap_or(self.lower.mtu),
            max_mtu: self.lower.max_mtu,
            mode,
            flags: req.attrs.flags.unwrap_or(0),
            up: false,
            promisc: false,
            allmulti: false,
            mc_list: Vec::new(),
            mc_stale: Vec::new(),
            passthru_allmulti_ref: false,
            ever_up: false,
            fdb_mc: Vec::new(),
            fdb_uc: Vec::new(),
            bc_queue_len_req: req.attrs.bcqueuelen.unwrap_or(DEFAULT_BC_QUEUE_LEN),
            hostaccess: req.attrs.hostaccess.unwrap_or(false),
            sources: Vec::new(),
            hash_seq: 0,
            stamp: self.next_stamp(),
        };
        if let Some(op) = &req.attrs.macaddr {
            self.apply_sources(&mut dev, op);
        }
        if let Some(c) = req.attrs.bclim {
            self.bc_cutoff = c;
        }
        if mode == Mode::Passthru {
            self.passthru = true;
        }
        self.devices.push(dev);
        Ok(id)
    }

    /// Where [`undo_add`](Self::undo_add) takes the port back to: taken before
    /// [`add_device`](Self::add_device), so that a caller whose system side then fails can take
    /// the new device back without having copied the whole port.
    pub fn add_undo_point(&self) -> AddUndo {
        AddUndo {
            bc_cutoff: self.bc_cutoff,
            passthru: self.passthru,
            filters_live: self.filters_live,
            seq: self.seq,
        }
    }

    /// Takes back device `id`, added (and perhaps opened) since `undo` was taken with nothing
    /// else changed in between: the port is then as it was.
    pub fn undo_add(&mut self, id: DevId, undo: AddUndo) {
        self.devices.retain(|d| d.id != id);
        self.bc_cutoff = undo.bc_cutoff;
        self.passthru = undo.passthru;
        self.filters_live = undo.filters_live;
        self.seq = undo.seq;
    }

    /// `macvlan_dellink` (+ `macvlan_stop` when up, + `macvlan_port_destroy` with the last one).
    pub fn remove_device(&mut self, id: DevId) -> ControlResult<Removed> {
        let pos = self
            .devices
            .iter()
            .position(|d| d.id == id)
            .ok_or(err(Errno::ENODEV))?;
        let device = self.devices.remove(pos);
        let port_empty = self.devices.is_empty();
        let restore_lower_mac = (port_empty && self.passthru && self.lower.mac != self.perm_addr)
            .then_some(self.perm_addr);
        Ok(Removed {
            device,
            port_empty,
            restore_lower_mac,
        })
    }

    // ----- changelink ----------------------------------------------------------------------

    /// `macvlan_changelink` (`ip link set NAME type macvlan …`).
    pub fn change(&mut self, id: DevId, a: &MacvlanAttrs) -> ControlResult {
        let new_mode = validate(None, a)?;
        let dev = self.dev(id)?;
        if let Some(m) = new_mode {
            // Passthrough can't be set or cleared dynamically.
            if (m == Mode::Passthru) != (dev.mode == Mode::Passthru) {
                return Err(err(Errno::EINVAL));
            }
        }
        let final_mode = new_mode.unwrap_or(dev.mode);
        if a.macaddr.is_some() && final_mode != Mode::Source {
            return Err(err(Errno::EINVAL));
        }
        check_hostaccess(a.hostaccess.unwrap_or(dev.hostaccess), final_mode)?;
        // Everything is valid: apply in the kernel's order.
        if let Some(c) = a.bclim {
            self.bc_cutoff = c;
        }
        let mut dev = self.dev(id)?.clone();
        if dev.mode == Mode::Source && final_mode != Mode::Source {
            dev.sources.clear();
        }
        if let Some(f) = a.flags {
            dev.flags = f;
        }
        if let Some(q) = a.bcqueuelen {
            dev.bc_queue_len_req = q;
        }
        if let Some(h) = a.hostaccess {
            dev.hostaccess = h;
        }
        dev.mode = final_mode;
        if let Some(op) = &a.macaddr {
            self.apply_sources(&mut dev, op);
        }
        // The copy's stamp is the old one: the change is a change.
        dev.stamp = self.next_stamp();
        *self.dev_mut(id)? = dev;
        Ok(())
    }

    /// `macvlan_changelink_sources`.
    fn apply_sources(&mut self, dev: &mut Device, op: &MacAddrOp) {
        match op {
            MacAddrOp::Add(m) => self.add_source(dev, *m),
            MacAddrOp::Del(m) => dev.sources.retain(|(s, _)| s != m),
            MacAddrOp::Flush => dev.sources.clear(),
            MacAddrOp::Set(list) => {
                dev.sources.clear();
                for m in list {
                    self.add_source(dev, *m);
                }
            }
        }
    }

    fn add_source(&mut self, dev: &mut Device, m: MacAddr) {
        if !dev.has_source(m) {
            let seq = self.next_seq();
            dev.sources.push((m, seq));
        }
    }

    // ----- open / stop ---------------------------------------------------------------------

    /// `dev_open` → `macvlan_open`. Refuses a MAC that is the lower's (non-passthru) or another
    /// up macvlan's with EADDRINUSE.
    pub fn open(&mut self, id: DevId) -> ControlResult {
        let dev = self.dev(id)?;
        if dev.up {
            return Ok(());
        }
        if !self.passthru && self.addr_busy(dev.mac) {
            return Err(err(Errno::EADDRINUSE));
        }
        let seq = self.next_seq();
        let dev = self.dev_mut(id)?;
        dev.up = true;
        dev.ever_up = true;
        // dev_open recomputes the filter with nothing pending: exact again.
        dev.mc_stale.clear();
        dev.hash_seq = seq;
        self.filters_live = true;
        Ok(())
    }

    /// `dev_close` → `macvlan_stop`.
    pub fn stop(&mut self, id: DevId) -> ControlResult {
        self.dev_mut(id)?.up = false;
        Ok(())
    }

    /// `open` or `stop`.
    pub fn set_up(&mut self, id: DevId, up: bool) -> ControlResult {
        if up {
            self.open(id)
        } else {
            self.stop(id)
        }
    }

    // ----- address, MTU, rx mode -----------------------------------------------------------

    /// `macvlan_set_mac_address`.
    pub fn set_mac(&mut self, id: DevId, mac: MacAddr) -> ControlResult<MacChange> {
        if !mac.is_valid_unicast() {
            return Err(err(Errno::EADDRNOTAVAIL));
        }
        let dev = self.dev(id)?;
        if dev.mac == mac {
            return Ok(MacChange::Unchanged);
        }
        if dev.mode == Mode::Passthru {
            return Ok(MacChange::LowerMustChange(mac));
        }
        if self.addr_busy(mac) {
            return Err(err(Errno::EADDRINUSE));
        }
        self.sync_address(id, mac);
        Ok(MacChange::Changed)
    }

    /// `macvlan_sync_address` once the address is known to be free.
    fn sync_address(&mut self, id: DevId, mac: MacAddr) {
        let seq = self.next_seq();
        if let Ok(dev) = self.dev_mut(id) {
            if dev.up {
                dev.hash_seq = seq;
            }
            dev.mac = mac;
        }
    }

    /// `dev_set_mtu` → `macvlan_change_mtu`.
    pub fn set_mtu(&mut self, id: DevId, mtu: u32) -> ControlResult {
        let dev = self.dev(id)?;
        if dev.mtu == mtu {
            return Ok(());
        }
        validate_mtu_range(mtu, dev.max_mtu)?;
        if mtu > self.lower.mtu {
            return Err(err(Errno::EINVAL));
        }
        self.dev_mut(id)?.mtu = mtu;
        Ok(())
    }

    /// The macvlan's own `IFF_PROMISC` / `IFF_ALLMULTI` changed (`macvlan_change_rx_flags`).
    pub fn set_rx_flags(&mut self, id: DevId, promisc: bool, allmulti: bool) -> ControlResult {
        let passthru = self.passthru;
        let dev = self.dev_mut(id)?;
        if passthru && dev.up && dev.allmulti != allmulti {
            dev.passthru_allmulti_ref = allmulti;
        }
        if (dev.promisc, dev.allmulti) != (promisc, allmulti) {
            // __dev_change_flags → dev_set_rx_mode: the filter is recomputed, exact.
            dev.mc_stale.clear();
        }
        dev.promisc = promisc;
        dev.allmulti = allmulti;
        Ok(())
    }

    /// The macvlan's stack joined or left multicast groups (`macvlan_set_mac_lists`).
    pub fn set_mc_list(&mut self, id: DevId, mut groups: Vec<MacAddr>) -> ControlResult {
        groups.retain(|g| g.is_multicast());
        groups.sort_unstable();
        groups.dedup();
        let dev = self.dev_mut(id)?;
        if dev.mc_list == groups {
            return Ok(());
        }
        // While the device is up its entries are synced to the lower, and a left group's
        // entry survives the filter computation of this very change (see `mc_stale`); the
        // ones left before are gone. A down device syncs nothing and computes nothing.
        dev.mc_stale = if dev.up {
            dev.mc_list
                .iter()
                .filter(|g| groups.binary_search(g).is_err())
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        dev.mc_list = groups;
        Ok(())
    }

    /// `macvlan_fdb_add` (`bridge fdb add MAC dev NAME`). `replace` is `NLM_F_REPLACE`.
    pub fn fdb_add(&mut self, id: DevId, mac: MacAddr, replace: bool) -> ControlResult {
        let passthru = self.passthru;
        let dev = self.dev_mut(id)?;
        if !passthru && !mac.is_multicast() {
            return Err(err(Errno::EOPNOTSUPP));
        }
        if replace {
            return Err(err(Errno::EOPNOTSUPP));
        }
        let list = if mac.is_multicast() {
            &mut dev.fdb_mc
        } else {
            &mut dev.fdb_uc
        };
        match list.binary_search(&mac) {
            Ok(_) => Err(err(Errno::EEXIST)),
            Err(i) => {
                list.insert(i, mac);
                if mac.is_multicast() {
                    dev.mc_stale.clear();
                }
                Ok(())
            }
        }
    }

    /// `macvlan_fdb_del`.
    pub fn fdb_del(&mut self, id: DevId, mac: MacAddr) -> ControlResult {
        let passthru = self.passthru;
        let dev = self.dev_mut(id)?;
        if !passthru && !mac.is_multicast() {
            return Err(err(Errno::EOPNOTSUPP));
        }
        let list = if mac.is_multicast() {
            &mut dev.fdb_mc
        } else {
            &mut dev.fdb_uc
        };
        match list.binary_search(&mac) {
            Ok(i) => {
                list.remove(i);
                if mac.is_multicast() {
                    dev.mc_stale = if dev.up && dev.mc_list.binary_search(&mac).is_err() {
                        vec![mac]
                    } else {
                        Vec::new()
                    };
                }
                Ok(())
            }
            Err(_) => Err(err(Errno::ENOENT)),
        }
    }

    // ----- lower device events (macvlan_device_event) ---------------------------------------

    /// `NETDEV_UP` / `NETDEV_DOWN` / `NETDEV_CHANGE`: admin state, carrier, dormant.
    pub fn lower_link_changed(&mut self, up: bool, carrier: bool, dormant: bool) {
        self.lower.up = up;
        self.lower.carrier = carrier;
        self.lower.dormant = dormant;
    }

    /// `NETDEV_CHANGEMTU`: macvlans above the new MTU come down to it. Returns the devices
    /// whose MTU changed.
    pub fn lower_mtu_changed(&mut self, mtu: u32) -> Vec<DevId> {
        self.lower.mtu = mtu;
        let mut changed = Vec::new();
        for d in &mut self.devices {
            // dev_set_mtu refuses values below the macvlan's minimum; the macvlan then keeps its MTU.
            if d.mtu > mtu && mtu >= MIN_MTU {
                d.mtu = mtu;
                self.stamps.0 += 1;
                d.stamp = self.stamps;
                changed.push(d.id);
            }
        }
        changed
    }

    /// `NETDEV_CHANGEADDR`: a passthru macvlan follows the lower's MAC.
    pub fn lower_mac_changed(&mut self, mac: MacAddr, cause: LowerMacCause) {
        if self.lower.mac == mac {
            return;
        }
        self.lower.mac = mac;
        if !self.passthru {
            return;
        }
        if let Some(id) = self.devices.first().map(|d| d.id) {
            self.sync_address(id, mac);
        }
        if cause == LowerMacCause::External {
            self.perm_addr = mac;
        }
    }

    /// The lower's own `IFF_PROMISC` / `IFF_ALLMULTI` (they widen the port filters).
    pub fn lower_rx_flags_changed(&mut self, promisc: bool, allmulti: bool) {
        self.lower.promisc = promisc;
        self.lower.allmulti = allmulti;
    }

    /// The lower's multicast list as the system reports it.
    pub fn lower_mc_list_changed(&mut self, mut groups: Vec<MacAddr>) {
        groups.sort_unstable();
        groups.dedup();
        self.lower.mc_list = groups;
    }

    /// The lower was renamed.
    pub fn lower_renamed(&mut self, name: &str) {
        self.lower.name = name.to_string();
    }

    // ----- derived state -------------------------------------------------------------------

    /// The promiscuity and allmulti references the macvlans put on the lower: the counts of
    /// [`Port::lower_filters`] without its address lists (which cost a sort of every
    /// macvlan's groups).
    pub fn lower_refs(&self) -> (u32, u32) {
        let (mut promisc, mut allmulti) = (0, 0);
        if self.passthru {
            // Held across stop and open (see `Device::passthru_allmulti_ref`).
            allmulti += self
                .devices
                .iter()
                .filter(|d| d.passthru_allmulti_ref)
                .count() as u32;
        }
        for d in self.devices.iter().filter(|d| d.up) {
            if self.passthru {
                promisc += !d.nopromisc() as u32;
            } else {
                promisc += d.promisc as u32;
                allmulti += d.allmulti as u32;
            }
        }
        (promisc, allmulti)
    }

    /// What the lower must accept for the up macvlans (see [`LowerFilters`]).
    pub fn lower_filters(&self) -> LowerFilters {
        let (promisc, allmulti) = self.lower_refs();
        let mut f = LowerFilters {
            promisc,
            allmulti,
            ..LowerFilters::default()
        };
        for d in self.devices.iter().filter(|d| d.up) {
            if !self.passthru {
                f.unicast.push(d.mac);
            }
            f.unicast.extend_from_slice(&d.fdb_uc);
            f.multicast.extend_from_slice(&d.mc_list);
            f.multicast.extend_from_slice(&d.fdb_mc);
        }
        f.unicast.sort_unstable();
        f.unicast.dedup();
        f.multicast.sort_unstable();
        f.multicast.dedup();
        f
    }

    /// The port's multicast and broadcast filters (`macvlan_compute_filter` on the lower with
    /// cutoff 0 and `bc_cutoff`): which groups are flooded inline and which go through the
    /// broadcast queue. Group bits collide exactly as in the kernel.
    pub fn port_filters(&self) -> (Bitmap256, Bitmap256) {
        if !self.filters_live {
            return (Bitmap256::EMPTY, Bitmap256::EMPTY);
        }
        let bc_off = self.bc_cutoff < 0;
        // The lower's flags as the kernel would have them: its own, plus the references the
        // macvlans themselves put on it (reported flags may lag behind our own changes).
        let (promisc, allmulti) = self.lower_refs();
        if self.lower.promisc || self.lower.allmulti || promisc > 0 || allmulti > 0 {
            let bc = if bc_off {
                Bitmap256::EMPTY
            } else {
                Bitmap256::FULL
            };
            return (Bitmap256::FULL, bc);
        }
        // Each group on the lower, with how many up macvlans synced it (`ha->synced`).
        let mut groups: Vec<(MacAddr, i64)> = self.lower.mc_list.iter().map(|g| (*g, 0)).collect();
        for d in self.devices.iter().filter(|d| d.up) {
            for g in d.mc_list.iter().chain(&d.fdb_mc) {
                match groups.iter_mut().find(|(m, _)| m == g) {
                    Some(e) => e.1 += 1,
                    None => groups.push((*g, 1)),
                }
            }
        }
        let mut mc = Bitmap256::EMPTY;
        let mut bc = Bitmap256::EMPTY;
        let bcast = port_mc_hash(MacAddr::BROADCAST);
        mc.set(bcast);
        if !bc_off {
            bc.set(bcast);
        }
        for (g, synced) in groups {
            mc.set(port_mc_hash(g));
            if !bc_off && synced > self.bc_cutoff as i64 {
                bc.set(port_mc_hash(g));
            }
        }
        (mc, bc)
    }

    /// Builds the immutable snapshot the data plane reads.
    pub fn snapshot(&self) -> PortSnapshot {
        let (mc_filter, bc_filter) = self.port_filters();
        let max = self
            .devices
            .iter()
            .map(|d| d.id.index() + 1)
            .max()
            .unwrap_or(0);
        let mut devs: Vec<Option<DevSnap>> = vec![None; max];
        for d in &self.devices {
            devs[d.id.index()] = Some(DevSnap::from_device(d));
        }
        let mut up: Vec<&Device> = self.devices.iter().filter(|d| d.up).collect();
        // The kernel walks its MAC hash bucket by bucket, newest entry first in each.
        up.sort_by_key(|d| (eth_hash(d.mac), std::cmp::Reverse(d.hash_seq)));
        let mut sources: Vec<(MacAddr, u64, DevId)> = Vec::new();
        for d in &self.devices {
            for (m, seq) in &d.sources {
                sources.push((*m, *seq, d.id));
            }
        }
        sources.sort_by_key(|(m, seq, _)| (m.to_u64(), std::cmp::Reverse(*seq)));
        PortSnapshot::new(
            &self.lower,
            self.passthru
                .then(|| self.devices.first().map(|d| d.id))
                .flatten(),
            devs,
            up.iter().map(|d| (d.mac, d.id)).collect(),
            sources.into_iter().map(|(m, _, id)| (m, id)).collect(),
            mc_filter,
            bc_filter,
            self.bc_queue_len_used(),
        )
    }
}
