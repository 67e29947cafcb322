//! `frame_views`: [`EthernetFrame::new_checked`], [`Ipv4Header::new_checked`] and every
//! accessor on arbitrary bytes. Beyond "no panic" it checks that the views agree with the bytes:
//! a checked frame's tags are whole and walked to the end, its payload is the rest of the
//! buffer, an IPv4 view's payload is exactly `total_len - header_len` bytes.

use umacvlan_core::wire::{
    ethertype, insert_vlan_tag, ipv4_checksum, EthernetFrame, FrameError, Ipv4Header, MacAddr,
    ETH_HLEN, VLAN_HLEN,
};

fn is_tpid(et: u16) -> bool {
    et == ethertype::VLAN_8021Q || et == ethertype::VLAN_8021AD
}

/// Checks one Ethernet frame view against the bytes it was built from.
fn check_frame(buf: &[u8]) {
    match EthernetFrame::new_checked(buf) {
        Err(FrameError::Runt) => assert!(buf.len() < ETH_HLEN),
        Err(FrameError::TruncatedVlan) => {
            assert!(buf.len() >= ETH_HLEN);
            // Some announced tag does not fit.
            let mut off = ETH_HLEN;
            while is_tpid(u16::from_be_bytes([buf[off - 2], buf[off - 1]])) {
                off += VLAN_HLEN;
                if off > buf.len() {
                    return;
                }
            }
            panic!("TruncatedVlan for a frame whose tags all fit");
        }
        Ok(f) => {
            assert!(buf.len() >= ETH_HLEN);
            assert_eq!(f.as_bytes(), buf);
            assert_eq!(f.len(), buf.len());
            assert!(!f.is_empty());
            assert_eq!(f.dst(), MacAddr::from_slice(&buf[0..6]));
            assert_eq!(f.src(), MacAddr::from_slice(&buf[6..12]));
            assert_eq!(f.outer_ethertype(), u16::from_be_bytes([buf[12], buf[13]]));
            let off = f.payload_offset();
            assert!(off >= ETH_HLEN && off <= buf.len());
            assert_eq!((off - ETH_HLEN) % VLAN_HLEN, 0);
            assert_eq!(f.payload(), &buf[off..]);
            // The tags were walked to the end: the inner ethertype is not a TPID.
            assert!(!is_tpid(f.ethertype()));
            assert_eq!(f.vlan_tci().is_some(), is_tpid(f.outer_ethertype()));
            assert_eq!(f.vlan_tci().is_some(), off > ETH_HLEN);
            if let Some(tci) = f.vlan_tci() {
                assert_eq!(tci, u16::from_be_bytes([buf[14], buf[15]]));
            }
            let dst = f.dst();
            let _ = (
                dst.is_multicast(),
                dst.is_broadcast(),
                dst.is_valid_unicast(),
            );
            let _ = (dst.to_string(), format!("{:?}", f.src()));
            if f.ethertype() == ethertype::IPV4 {
                check_ipv4(f.payload());
            }
        }
    }
}

/// Checks one IPv4 header view against the bytes it was built from.
fn check_ipv4(buf: &[u8]) {
    let _ = ipv4_checksum(buf);
    let Some(h) = Ipv4Header::new_checked(buf) else {
        return;
    };
    let hl = h.header_len();
    assert!((20..=60).contains(&hl) && hl % 4 == 0);
    assert!(h.total_len() >= hl && h.total_len() <= buf.len());
    assert_eq!(h.header_bytes(), &buf[..hl]);
    assert_eq!(h.payload(), &buf[hl..h.total_len()]);
    assert_eq!(h.is_fragment(), h.more_fragments() || h.frag_offset() != 0);
    assert_eq!(h.frag_offset() % 8, 0);
    let _ = (h.ident(), h.protocol(), h.src(), h.dst());
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    check_frame(data);
    check_ipv4(data);
    // A tag put back in front of the frame's ethertype must be seen by the view.
    let mut out = Vec::new();
    let tci = u16::from_be_bytes([data.first().copied().unwrap_or(0), 7]);
    insert_vlan_tag(data, ethertype::VLAN_8021Q, tci, &mut out);
    if data.len() < 12 {
        assert_eq!(out, data, "a runt has nowhere to put a tag");
    } else {
        assert_eq!(out.len(), data.len() + VLAN_HLEN);
        assert_eq!(&out[12..14], &ethertype::VLAN_8021Q.to_be_bytes());
        if let Ok(f) = EthernetFrame::new_checked(&out) {
            assert_eq!(f.vlan_tci(), Some(tci));
        }
    }
    check_frame(&out);
    // MAC text round trip (the parser behind `address`, `macaddr`, the protocol's MACs).
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(m) = s.parse::<MacAddr>() {
            assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
        }
    }
}
