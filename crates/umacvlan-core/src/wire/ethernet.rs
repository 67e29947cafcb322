//! Zero-copy views of Ethernet II frames with optional 802.1Q / 802.1ad tags.

use super::MacAddr;

/// Length of an untagged Ethernet header (`ETH_HLEN`).
pub const ETH_HLEN: usize = 14;
/// Length of one VLAN tag (`VLAN_HLEN`).
pub const VLAN_HLEN: usize = 4;
/// Shortest frame the engine accepts: a bare Ethernet header.
pub const MIN_FRAME: usize = ETH_HLEN;

/// Ethertype values the engine looks at.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag.
    pub const VLAN_8021Q: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const VLAN_8021AD: u16 = 0x88a8;
    /// 802.3x MAC control (PAUSE) frames.
    pub const PAUSE: u16 = 0x8808;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// Why bytes are not an Ethernet frame the engine can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than an Ethernet header.
    #[error("frame shorter than an Ethernet header")]
    Runt,
    /// A VLAN ethertype with no room for the tag behind it.
    #[error("truncated VLAN header")]
    TruncatedVlan,
}

/// A read-only view of an Ethernet frame. Construction checks the length, so no accessor
/// can panic.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
    /// Offset of the first byte after all VLAN tags (the payload's ethertype is just before it).
    payload_off: usize,
}

impl<'a> EthernetFrame<'a> {
    /// Checks that `buf` holds a whole Ethernet header and every VLAN tag it announces.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, FrameError> {
        Self::walk_tags(buf, false)
    }

    /// Like [`new_checked`](Self::new_checked), but a VLAN tag cut short stays in the payload
    /// instead of refusing the frame: the transmit path's view, since the kernel's macvlan
    /// sends what it is given without parsing its tags. See [`truncated_vlan`](Self::truncated_vlan).
    #[inline]
    pub fn new_lenient(buf: &'a [u8]) -> Result<Self, FrameError> {
        Self::walk_tags(buf, true)
    }

    /// Walks stacked tags (802.1ad outer, 802.1Q inner, or repeated 802.1Q); one that is cut
    /// short ends the walk (`lenient`) or refuses the frame.
    #[inline]
    fn walk_tags(buf: &'a [u8], lenient: bool) -> Result<Self, FrameError> {
        if buf.len() < ETH_HLEN {
            return Err(FrameError::Runt);
        }
        let mut off = ETH_HLEN;
        loop {
            let et = u16::from_be_bytes([buf[off - 2], buf[off - 1]]);
            if et != ethertype::VLAN_8021Q && et != ethertype::VLAN_8021AD {
                break;
            }
            if buf.len() < off + VLAN_HLEN {
                if lenient {
                    break;
                }
                return Err(FrameError::TruncatedVlan);
            }
            off += VLAN_HLEN;
        }
        Ok(EthernetFrame {
            buf,
            payload_off: off,
        })
    }

    /// Whether the frame announces a VLAN tag it has no room for (only a
    /// [`new_lenient`](Self::new_lenient) view can).
    #[inline]
    pub fn truncated_vlan(&self) -> bool {
        // A cut tag leaves fewer than four bytes after the last whole one: test that first.
        self.buf.len() < self.payload_off + VLAN_HLEN
            && matches!(
                self.ethertype(),
                ethertype::VLAN_8021Q | ethertype::VLAN_8021AD
            )
    }

    /// The whole frame.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf[0..6])
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.buf[6..12])
    }

    /// The ethertype right after the addresses (a VLAN TPID when tagged).
    #[inline]
    pub fn outer_ethertype(&self) -> u16 {
        u16::from_be_bytes([self.buf[12], self.buf[13]])
    }

    /// The ethertype after all VLAN tags: what `skb->protocol` holds once the kernel has
    /// untagged the frame.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([
            self.buf[self.payload_off - 2],
            self.buf[self.payload_off - 1],
        ])
    }

    /// The outermost VLAN tag control information (PCP/DEI/VID), if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        if self.payload_off > ETH_HLEN {
            Some(u16::from_be_bytes([self.buf[14], self.buf[15]]))
        } else {
            None
        }
    }

    /// Bytes after the last tag's ethertype (the L3 packet).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_off..]
    }

    /// Offset of [`EthernetFrame::payload`] within the frame.
    #[inline]
    pub fn payload_offset(&self) -> usize {
        self.payload_off
    }

    /// Total length in bytes (header included, no FCS).
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Never true for a checked frame; present for API symmetry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Writes an untagged Ethernet header into `buf[..14]`. Handy for tests and tools.
pub fn write_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    buf[0..6].copy_from_slice(&dst.0);
    buf[6..12].copy_from_slice(&src.0);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Inserts an 802.1Q tag (`tpid`, `tci`) after the addresses of `frame`, in place at the end
/// of `out` (cleared first). Used to put back tags that AF_PACKET reported out of band.
///
/// A frame shorter than its two addresses has nowhere to put a tag: it is copied unchanged
/// (and stays a runt that [`EthernetFrame::new_checked`] refuses) rather than panicking.
pub fn insert_vlan_tag(frame: &[u8], tpid: u16, tci: u16, out: &mut Vec<u8>) {
    out.clear();
    if frame.len() < 12 {
        out.extend_from_slice(frame);
        return;
    }
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(et: u16, extra: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 14];
        write_header(&mut b, MacAddr::BROADCAST, MacAddr([2, 0, 0, 0, 0, 1]), et);
        b.extend_from_slice(extra);
        b
    }

    #[test]
    fn untagged_fields() {
        let b = frame(ethertype::IPV4, &[0x45]);
        let f = EthernetFrame::new_checked(&b).unwrap();
        assert_eq!(f.dst(), MacAddr::BROADCAST);
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_tci(), None);
        assert_eq!(f.payload(), &[0x45]);
    }

    #[test]
    fn qinq_tags_are_walked() {
        let b = frame(
            ethertype::VLAN_8021AD,
            &[0x00, 0x0a, 0x81, 0x00, 0x20, 0x05, 0x08, 0x06, 1],
        );
        let f = EthernetFrame::new_checked(&b).unwrap();
        assert_eq!(f.vlan_tci(), Some(10));
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.payload(), &[1]);
    }

    #[test]
    fn runt_and_truncated_tag_rejected() {
        assert_eq!(
            EthernetFrame::new_checked(&[0; 13]).unwrap_err(),
            FrameError::Runt
        );
        let b = frame(ethertype::VLAN_8021Q, &[0, 1]);
        assert_eq!(
            EthernetFrame::new_checked(&b).unwrap_err(),
            FrameError::TruncatedVlan
        );
    }

    #[test]
    fn vlan_tag_insertion() {
        let b = frame(ethertype::IPV4, &[0x45]);
        let mut out = Vec::new();
        insert_vlan_tag(&b, ethertype::VLAN_8021Q, 7, &mut out);
        let f = EthernetFrame::new_checked(&out).unwrap();
        assert_eq!(f.vlan_tci(), Some(7));
        assert_eq!(f.ethertype(), ethertype::IPV4);
    }

    #[test]
    fn vlan_tag_insertion_into_a_runt_copies_it() {
        // Found by the frame_views fuzz target: used to panic on a slice index.
        let mut out = vec![9];
        insert_vlan_tag(&[1, 2, 3], ethertype::VLAN_8021Q, 7, &mut out);
        assert_eq!(out, [1, 2, 3]);
        insert_vlan_tag(&[], ethertype::VLAN_8021Q, 7, &mut out);
        assert!(out.is_empty());
    }
}
