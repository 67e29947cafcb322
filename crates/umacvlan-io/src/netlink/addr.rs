//! Addresses and routes (`RTM_*ADDR`, `RTM_*ROUTE`): what the CNI plugin configures inside a
//! container's namespace and checks again on CNI CHECK, and the default route's device (the
//! plugin's default master).

use std::net::IpAddr;

use super::NLM_F_REQUEST;
use super::{attr_u32, attrs, Msg, NetlinkError, NlResult, RtNetlink, NLM_F_ACK, NLM_F_DUMP};

const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

/// In a request (not an ack), 0x200 and 0x400 mean "fail if it exists" and "create".
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_METRICS: u16 = 8;
const RTA_TABLE: u16 = 15;
const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;

/// `RT_TABLE_MAIN`.
pub const TABLE_MAIN: u32 = 254;
const RTPROT_BOOT: u8 = 3;
/// `RT_SCOPE_UNIVERSE`.
pub const SCOPE_UNIVERSE: u8 = 0;
/// `RT_SCOPE_LINK`.
pub const SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// An address on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// The device's ifindex.
    pub ifindex: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

/// A route, as added or as found in a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network (all zeros with `dst_len` 0 for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub dst_len: u8,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output device.
    pub oif: Option<u32>,
    /// Routing table ([`TABLE_MAIN`] when not given).
    pub table: u32,
    /// Metric (`RTA_PRIORITY`).
    pub priority: Option<u32>,
    /// Scope; `None`: link scope without a gateway, universe with one.
    pub scope: Option<u8>,
    /// Route MTU (`RTAX_MTU`).
    pub mtu: Option<u32>,
    /// Advertised MSS (`RTAX_ADVMSS`).
    pub advmss: Option<u32>,
}

fn family(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn parse_ip(fam: u8, d: &[u8]) -> Option<IpAddr> {
    match (fam as i32, d.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(d).ok()?)),
        (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(d).ok()?)),
        _ => None,
    }
}

/// The IPv4 broadcast address of `a/prefix` (what `ip addr add … brd +` gives).
fn broadcast_v4(a: std::net::Ipv4Addr, prefix: u8) -> std::net::Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    };
    (u32::from(a) | !mask).into()
}

impl RtNetlink {
    /// Adds `addr/prefix` to device `ifindex` (`EEXIST` if it is there already). An IPv4
    /// address shorter than /31 gets its broadcast address, as `ip addr add … brd +` does.
    pub fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix: u8) -> NlResult<()> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(NetlinkError::kernel(libc::EINVAL, None));
        }
        let seq = self.next_seq();
        let mut m = Msg::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            seq,
        );
        m.0.extend_from_slice(&[family(&addr), prefix, 0, 0]);
        m.0.extend_from_slice(&ifindex.to_ne_bytes());
        let o = octets(&addr);
        m = m.attr(IFA_LOCAL, &o).attr(IFA_ADDRESS, &o);
        if let IpAddr::V4(v4) = addr {
            if prefix < 31 {
                m = m.attr(IFA_BROADCAST, &broadcast_v4(v4, prefix).octets());
            }
        }
        let req = m.finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }

    /// Every address of the namespace (`ifindex` 0) or of one device.
    pub fn addresses(&mut self, ifindex: u32) -> NlResult<Vec<IfAddr>> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
        m.0.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        m.0.extend_from_slice(&0u32.to_ne_bytes());
        let req = m.finish();
        let mut out = Vec::new();
        self.transact(&req, seq, |ty, p| {
            if ty != RTM_NEWADDR || p.len() < 8 {
                return;
            }
            let (fam, prefix) = (p[0], p[1]);
            let index = u32::from_ne_bytes(p[4..8].try_into().unwrap());
            let (mut local, mut address) = (None, None);
            for (t, d) in attrs(&p[8..]) {
                match t {
                    IFA_LOCAL => local = parse_ip(fam, d),
                    IFA_ADDRESS => address = parse_ip(fam, d),
                    _ => {}
                }
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
            // point-to-point links, and the only one IPv6 sends.
            if let Some(addr) = local.or(address) {
                if ifindex == 0 || index == ifindex {
                    out.push(IfAddr {
                        ifindex: index,
                        addr,
                        prefix,
                    });
                }
            }
        })?;
        Ok(out)
    }

    /// Adds a route beside any other to the same destination (no `NLM_F_EXCL`, as the
    /// reference CNI library's `RouteAddEcmp`: two interfaces may each get a default route);
    /// `EEXIST` only if this very route is there.
    pub fn add_route(&mut self, r: &Route) -> NlResult<()> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, seq);
        let scope = r.scope.unwrap_or(if r.gateway.is_some() {
            SCOPE_UNIVERSE
        } else {
            SCOPE_LINK
        });
        let table_byte = if r.table < 256 { r.table as u8 } else { 0 };
        m.0.extend_from_slice(&[
            family(&r.dst),
            r.dst_len,
            0,
            0,
            table_byte,
            RTPROT_BOOT,
            scope,
            RTN_UNICAST,
        ]);
        m.0.extend_from_slice(&0u32.to_ne_bytes());
        m = m.attr(RTA_DST, &octets(&r.dst));
        m = m.attr(RTA_TABLE, &r.table.to_ne_bytes());
        if let Some(gw) = r.gateway {
            m = m.attr(RTA_GATEWAY, &octets(&gw));
        }
        if let Some(oif) = r.oif {
            m = m.attr(RTA_OIF, &oif.to_ne_bytes());
        }
        if let Some(p) = r.priority {
            m = m.attr(RTA_PRIORITY, &p.to_ne_bytes());
        }
        let mut metrics = Vec::new();
        for (ty, v) in [(RTAX_MTU, r.mtu), (RTAX_ADVMSS, r.advmss)] {
            if let Some(v) = v {
                metrics.extend_from_slice(&8u16.to_ne_bytes());
                metrics.extend_from_slice(&ty.to_ne_bytes());
                metrics.extend_from_slice(&v.to_ne_bytes());
            }
        }
        if !metrics.is_empty() {
            m = m.attr(RTA_METRICS, &metrics);
        }
        let req = m.finish();
        self.transact(&req, seq, |_, _| {})?;
        Ok(())
    }

    /// Every route of every table, IPv4 and IPv6.
    pub fn routes(&mut self) -> NlResult<Vec<Route>> {
        let seq = self.next_seq();
        let mut m = Msg::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq);
        m.0.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0]);
        m.0.extend_from_slice(&0u32.to_ne_bytes());
        let req = m.finish();
        let mut out = Vec::new();
        self.transact(&req, seq, |ty, p| {
            if ty != RTM_NEWROUTE || p.len() < 12 {
                return;
            }
            let fam = p[0];
            let unspecified = match fam as i32 {
                libc::AF_INET => IpAddr::from([0u8; 4]),
                libc::AF_INET6 => IpAddr::from([0u8; 16]),
                _ => return,
            };
            let mut r = Route {
                dst: unspecified,
                dst_len: p[1],
                gateway: None,
                oif: None,
                table: p[4] as u32,
                priority: None,
                scope: Some(p[6]),
                mtu: None,
                advmss: None,
            };
            for (t, d) in attrs(&p[12..]) {
                match t {
                    RTA_DST => r.dst = parse_ip(fam, d).unwrap_or(unspecified),
                    RTA_GATEWAY => r.gateway = parse_ip(fam, d),
                    RTA_OIF => r.oif = attr_u32(d),
                    RTA_TABLE => r.table = attr_u32(d).unwrap_or(r.table),
                    RTA_PRIORITY => r.priority = attr_u32(d),
                    RTA_METRICS => {
                        for (mt, md) in attrs(d) {
                            match mt {
                                RTAX_MTU => r.mtu = attr_u32(md),
                                RTAX_ADVMSS => r.advmss = attr_u32(md),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            out.push(r);
        })?;
        Ok(out)
    }

    /// The output device of the first IPv4 default route of the main table, as the reference
    /// CNI macvlan plugin picks its default master.
    pub fn default_route_oif(&mut self) -> NlResult<Option<u32>> {
        Ok(self
            .routes()?
            .into_iter()
            .find(|r| r.dst.is_ipv4() && r.dst_len == 0 && r.table == TABLE_MAIN)
            .and_then(|r| r.oif))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_of_common_prefixes() {
        let a: std::net::Ipv4Addr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            broadcast_v4(a, 24),
            "10.1.2.255".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(
            broadcast_v4(a, 16),
            "10.1.255.255".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(broadcast_v4(a, 0), std::net::Ipv4Addr::BROADCAST);
        assert_eq!(broadcast_v4(a, 32), a);
    }

    #[test]
    fn parse_ip_checks_length_against_family() {
        assert_eq!(
            parse_ip(libc::AF_INET as u8, &[10, 0, 0, 1]),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_ip(libc::AF_INET as u8, &[10, 0, 0]), None);
        assert_eq!(parse_ip(libc::AF_INET6 as u8, &[0; 4]), None);
    }
}
