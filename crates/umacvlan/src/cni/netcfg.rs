//! The container side of an attachment, done over rtnetlink inside the container's namespace:
//! renaming the daemon's device to `CNI_IFNAME`, `arp_notify`/`ndisc_notify`, addresses and
//! routes, and checking them again for CNI CHECK.

use super::error::{CniError, CniResult};
use super::result::{parse_cidr, CniOutput, RouteConfig};
use std::net::IpAddr;
use umacvlan_core::wire::MacAddr;
use umacvlan_io::netlink::{Route, RtNetlink, TABLE_MAIN};
use umacvlan_io::netns::NetnsHandle;

fn in_ns<T: Send>(ns: &NetnsHandle, f: impl FnOnce() -> CniResult<T> + Send) -> CniResult<T> {
    ns.run_in(f)
        .map_err(|e| CniError::generic(format!("cannot enter the container's namespace: {e}")))?
}

/// Renames `tmp` (the daemon's name for the new device) to `ifname`, as the reference plugin
/// renames its temporary macvlan; returns the device's ifindex. An existing `ifname` fails with
/// the reference's words.
pub fn rename(ns: &NetnsHandle, tmp: &str, ifname: &str) -> CniResult<u32> {
    in_ns(ns, || {
        let mut rtnl = RtNetlink::open().map_err(|e| CniError::generic(e.to_string()))?;
        let l = rtnl
            .get_link_by_name(tmp)
            .map_err(|e| CniError::generic(format!("failed to find macvlan {tmp:?}: {e}")))?;
        rtnl.set_link(
            l.ifindex,
            &umacvlan_io::netlink::LinkChange {
                name: Some(ifname),
                ..Default::default()
            },
        )
        .map_err(|e| {
            CniError::generic(format!(
                "failed to rename macvlan to {ifname:?}: {}",
                strerror(e.raw_os_error().unwrap_or(libc::EIO))
            ))
        })?;
        Ok(l.ifindex)
    })
}

/// `strerror` as Go prints syscall errors (lower case, no " (os error N)").
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    let s = match s.rfind(" (os error ") {
        Some(p) => s[..p].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

/// The routes of an IPAM result as the kernel should hold them: a route without `gw` goes
/// through the gateway of the first address of its family, as the reference's
/// `ipam.ConfigureIface` does.
pub fn routes_of(r: &CniOutput, ifindex: u32) -> CniResult<Vec<Route>> {
    let mut out = Vec::new();
    for rc in &r.routes {
        out.push(route_of(r, rc, ifindex)?);
    }
    Ok(out)
}

fn route_of(r: &CniOutput, rc: &RouteConfig, ifindex: u32) -> CniResult<Route> {
    let (dst, dst_len) = parse_cidr(&rc.dst)?;
    let gw = match &rc.gw {
        Some(g) => Some(g.parse::<IpAddr>().map_err(|_| {
            CniError::new(
                super::error::INVALID_CONFIG,
                format!("invalid route gw {g:?}"),
            )
        })?),
        None => r
            .ips
            .iter()
            .filter_map(|ip| ip.gateway.as_deref()?.parse::<IpAddr>().ok())
            .find(|g| g.is_ipv4() == dst.is_ipv4()),
    };
    Ok(Route {
        dst: mask(dst, dst_len),
        dst_len,
        gateway: gw,
        oif: Some(ifindex),
        table: rc.table.unwrap_or(TABLE_MAIN),
        priority: rc.priority,
        scope: rc.scope,
        mtu: rc.mtu,
        advmss: rc.advmss,
    })
}

/// The network address of `a/len`.
fn mask(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            IpAddr::from((u32::from(v) & m).to_be_bytes())
        }
        IpAddr::V6(v) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            IpAddr::from((u128::from(v) & m).to_be_bytes())
        }
    }
}

/// Sets `arp_notify` (and `ndisc_notify` where IPv6 is on) on `ifname`, then the addresses:
/// the kernel announces them when the link comes up.
pub fn configure(
    ns: &NetnsHandle,
    ifindex: u32,
    ifname: &str,
    r: Option<&CniOutput>,
) -> CniResult<()> {
    let ifname = ifname.to_string();
    let addrs: Vec<(IpAddr, u8)> = match r {
        Some(r) => r
            .ips
            .iter()
            .map(|ip| parse_cidr(&ip.address))
            .collect::<CniResult<_>>()?,
        None => Vec::new(),
    };
    in_ns(ns, move || {
        // Opened from a thread inside the namespace, /proc/sys/net is that namespace's.
        let sysctl = |p: String| std::fs::write(&p, "1").map_err(|e| (p, e));
        if let Err((p, e)) = sysctl(format!("/proc/sys/net/ipv4/conf/{ifname}/arp_notify")) {
            return Err(CniError::generic(format!("failed to set {p}: {e}")));
        }
        // Absent when IPv6 is disabled: nothing to announce then.
        let _ = sysctl(format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify"));
        let mut rtnl = RtNetlink::open().map_err(|e| CniError::generic(e.to_string()))?;
        for (a, p) in addrs {
            rtnl.add_address(ifindex, a, p).map_err(|e| {
                CniError::generic(format!("failed to add IP addr {a}/{p} to {ifname:?}: {e}"))
            })?;
        }
        Ok(())
    })
}

/// Adds the routes (after the link is up; the kernel refuses a gateway it cannot reach).
pub fn add_routes(ns: &NetnsHandle, routes: Vec<Route>) -> CniResult<()> {
    in_ns(ns, move || {
        let mut rtnl = RtNetlink::open().map_err(|e| CniError::generic(e.to_string()))?;
        for r in &routes {
            rtnl.add_route(r).map_err(|e| {
                CniError::generic(format!(
                    "failed to add route '{}/{} via {}': {}",
                    r.dst,
                    r.dst_len,
                    r.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    strerror(e.raw_os_error().unwrap_or(libc::EIO))
                ))
            })?;
        }
        Ok(())
    })
}

/// CNI CHECK inside the namespace: `ifname` is the daemon's device (`ifindex`), has `mac`, and
/// holds the addresses and routes of `prev` that point at it.
pub fn check(
    ns: &NetnsHandle,
    ifname: &str,
    ifindex: u32,
    mac: MacAddr,
    prev: &CniOutput,
    iface_index: usize,
) -> CniResult<()> {
    let ifname = ifname.to_string();
    let addrs: Vec<(IpAddr, u8)> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == iface_index))
        .map(|ip| parse_cidr(&ip.address))
        .collect::<CniResult<_>>()?;
    let routes = routes_of(prev, ifindex)?;
    in_ns(ns, move || {
        let mut rtnl = RtNetlink::open().map_err(|e| CniError::generic(e.to_string()))?;
        let l = rtnl
            .get_link_by_name(&ifname)
            .map_err(|_| CniError::generic(format!("Container interface {ifname} not found")))?;
        if l.ifindex != ifindex {
            return Err(CniError::generic(format!(
                "Container interface {ifname} is not the umacvlan device (ifindex {} instead of \
                 {ifindex})",
                l.ifindex
            )));
        }
        if l.mac != Some(mac) {
            return Err(CniError::generic(format!(
                "Container interface {ifname} Mac {} doesn't match: {mac}",
                l.mac.map(|m| m.to_string()).unwrap_or_default()
            )));
        }
        let have = rtnl
            .addresses(ifindex)
            .map_err(|e| CniError::generic(e.to_string()))?;
        for (a, p) in addrs {
            if !have.iter().any(|h| h.addr == a && h.prefix == p) {
                return Err(CniError::generic(format!(
                    "Failed to match addr {a}/{p} on interface {ifname}"
                )));
            }
        }
        let table = rtnl
            .routes()
            .map_err(|e| CniError::generic(e.to_string()))?;
        for r in routes {
            let found = table.iter().any(|t| {
                t.dst == r.dst
                    && t.dst_len == r.dst_len
                    && t.oif == Some(ifindex)
                    && t.table == r.table
                    && (r.gateway.is_none() || t.gateway == r.gateway)
            });
            if !found {
                return Err(CniError::generic(format!(
                    "Failed to match route {}/{} via {} on interface {ifname}",
                    r.dst,
                    r.dst_len,
                    r.gateway.map(|g| g.to_string()).unwrap_or_default()
                )));
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::result::IpConfig;

    #[test]
    fn routes_take_the_gateway_of_their_family() {
        let r = CniOutput {
            ips: vec![
                IpConfig {
                    address: "10.0.0.2/24".into(),
                    gateway: Some("10.0.0.1".into()),
                    ..Default::default()
                },
                IpConfig {
                    address: "fd00::2/64".into(),
                    gateway: Some("fd00::1".into()),
                    ..Default::default()
                },
            ],
            routes: vec![
                RouteConfig {
                    dst: "0.0.0.0/0".into(),
                    ..Default::default()
                },
                RouteConfig {
                    dst: "::/0".into(),
                    ..Default::default()
                },
                RouteConfig {
                    dst: "192.168.7.9/24".into(),
                    gw: Some("10.0.0.9".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let rs = routes_of(&r, 7).unwrap();
        assert_eq!(rs[0].gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(rs[1].gateway, Some("fd00::1".parse().unwrap()));
        assert_eq!(rs[2].dst, "192.168.7.0".parse::<IpAddr>().unwrap());
        assert_eq!(rs[2].gateway, Some("10.0.0.9".parse().unwrap()));
        assert!(rs.iter().all(|r| r.oif == Some(7) && r.table == TABLE_MAIN));
    }

    #[test]
    fn strerror_reads_like_go() {
        assert_eq!(strerror(libc::EEXIST), "file exists");
    }
}
