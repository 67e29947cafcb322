//! The IPv4 header fields the engine needs to reassemble fragments (`ip_check_defrag`).

use core::net::Ipv4Addr;

/// A checked, read-only view of an IPv4 header.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Header<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv4Header<'a> {
    /// Accepts `buf` if it starts with a plausible IPv4 header: version 4, IHL ≥ 5, the whole
    /// header present, and a total length covering the header and not more than `buf`
    /// (the same checks `ip_check_defrag` makes before looking at fragment fields).
    pub fn new_checked(buf: &'a [u8]) -> Option<Self> {
        if buf.len() < 20 || buf[0] >> 4 != 4 {
            return None;
        }
        let ihl = ((buf[0] & 0x0f) as usize) * 4;
        if ihl < 20 || buf.len() < ihl {
            return None;
        }
        let total = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if total < ihl || total > buf.len() {
            return None;
        }
        Some(Ipv4Header { buf })
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        ((self.buf[0] & 0x0f) as usize) * 4
    }
    /// Total length field (header + payload).
    pub fn total_len(&self) -> usize {
        u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize
    }
    /// Identification field.
    pub fn ident(&self) -> u16 {
        u16::from_be_bytes([self.buf[4], self.buf[5]])
    }
    /// More-fragments flag.
    pub fn more_fragments(&self) -> bool {
        self.buf[6] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        ((u16::from_be_bytes([self.buf[6], self.buf[7]]) & 0x1fff) as usize) * 8
    }
    /// `ip_is_fragment`: MF set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }
    /// Protocol field.
    pub fn protocol(&self) -> u8 {
        self.buf[9]
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[12], self.buf[13], self.buf[14], self.buf[15])
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[16], self.buf[17], self.buf[18], self.buf[19])
    }
    /// The bytes covered by the total length field after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..self.total_len()]
    }
    /// The raw header bytes.
    pub fn header_bytes(&self) -> &'a [u8] {
        &self.buf[..self.header_len()]
    }
}

/// The Internet checksum of `data` (RFC 1071), as stored in the IPv4 header.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_fields() {
        let mut h = [0u8; 28];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&28u16.to_be_bytes());
        h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        h[6] = 0x20; // MF, offset 0
        h[9] = 17;
        let v = Ipv4Header::new_checked(&h).unwrap();
        assert!(v.is_fragment() && v.more_fragments());
        assert_eq!((v.ident(), v.frag_offset(), v.protocol()), (0x1234, 0, 17));
        assert_eq!(v.payload().len(), 8);
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(Ipv4Header::new_checked(&[0x45; 19]).is_none());
        let mut h = [0u8; 20];
        h[0] = 0x65;
        assert!(Ipv4Header::new_checked(&h).is_none());
        h[0] = 0x45;
        h[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert!(Ipv4Header::new_checked(&h).is_none());
    }

    #[test]
    fn checksum_of_known_header() {
        // RFC 1071 example-ish: a header whose checksum field makes the sum zero.
        let mut h = [
            0x45, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }
}
