//! Frames the scenarios inject. Every frame carries a tag (8 bytes, unique within a run of
//! one world) in its payload, so captures can be attributed frame by frame whatever else
//! is on the wire.

use umacvlan_core::wire::MacAddr;

/// Length of a tag.
pub const TAG_LEN: usize = 8;

/// The experimental ethertype (IEEE 802 local experimental 1): no protocol handler anywhere,
/// so no stack reacts to the frames.
pub const ETHERTYPE_EXP: u16 = 0x88b5;
/// 802.3x flow control.
pub const ETHERTYPE_PAUSE: u16 = 0x8808;

/// What a frame is made of after its Ethernet header.
#[derive(Clone, Debug)]
enum Body {
    /// The tag, then zeros up to the frame length.
    Tagged,
    /// One fragment of a UDP/IPv4 datagram (10.99.0.1 → `dst_ip`) of 64 UDP bytes split in
    /// two 32-byte fragments; the tag is in both fragments' data, so the reassembled
    /// datagram contains it too.
    Ipv4Frag {
        ident: u16,
        second: bool,
        dst_ip: [u8; 4],
    },
}

/// A frame to inject, built once its tag is known.
#[derive(Clone, Debug)]
pub struct Frame {
    pub dst: String,
    pub src: String,
    pub ethertype: u16,
    pub vlan: Option<u16>,
    /// An outer 802.1ad tag (QinQ), before the 802.1Q one.
    pub svlan: Option<u16>,
    /// Total length (minimum: header + tag), before any VLAN tag is counted.
    pub len: usize,
    /// Cut the built frame to this many bytes (a truncated header; no tag survives).
    pub cut: Option<usize>,
    body: Body,
}

/// A plain frame of 60 bytes with the experimental ethertype.
pub fn eth(dst: &str, src: &str) -> Frame {
    Frame {
        dst: dst.to_string(),
        src: src.to_string(),
        ethertype: ETHERTYPE_EXP,
        vlan: None,
        svlan: None,
        len: 60,
        cut: None,
        body: Body::Tagged,
    }
}

/// Half of a fragmented UDP/IPv4 datagram.
pub fn frag(dst: &str, src: &str, dst_ip: [u8; 4], ident: u16, second: bool) -> Frame {
    Frame {
        dst: dst.to_string(),
        src: src.to_string(),
        ethertype: 0x0800,
        vlan: None,
        svlan: None,
        len: 0,
        cut: None,
        body: Body::Ipv4Frag {
            ident,
            second,
            dst_ip,
        },
    }
}

impl Frame {
    /// Total length.
    pub fn len(mut self, n: usize) -> Frame {
        self.len = n;
        self
    }
    /// An 802.1Q tag with this TCI (inserted after the source MAC; adds 4 bytes).
    pub fn vlan(mut self, tci: u16) -> Frame {
        self.vlan = Some(tci);
        self
    }
    /// An outer 802.1ad tag with this TCI (adds 4 bytes).
    pub fn svlan(mut self, tci: u16) -> Frame {
        self.svlan = Some(tci);
        self
    }
    /// Cut to `n` bytes once built.
    pub fn cut(mut self, n: usize) -> Frame {
        self.cut = Some(n);
        self
    }
    /// Another ethertype.
    pub fn ethertype(mut self, t: u16) -> Frame {
        self.ethertype = t;
        self
    }

    /// The bytes, with `tag` in the payload.
    pub fn build(&self, tag: &[u8; TAG_LEN]) -> Vec<u8> {
        let dst: MacAddr = self.dst.parse().expect("dst MAC");
        let src: MacAddr = self.src.parse().expect("src MAC");
        let mut f = Vec::with_capacity(self.len.max(64));
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        if let Some(tci) = self.svlan {
            f.extend_from_slice(&0x88a8u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        if let Some(tci) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&self.ethertype.to_be_bytes());
        match &self.body {
            Body::Tagged => {
                f.extend_from_slice(tag);
                let want = self.len
                    + if self.vlan.is_some() { 4 } else { 0 }
                    + if self.svlan.is_some() { 4 } else { 0 };
                if f.len() < want {
                    f.resize(want, 0);
                }
            }
            Body::Ipv4Frag {
                ident,
                second,
                dst_ip,
            } => {
                // 64 bytes of UDP (8 header + 56 data) in two fragments of 32.
                let mut data = vec![0u8; 32];
                let off8: u16 = if *second { 4 } else { 0 };
                if *second {
                    data[..TAG_LEN].copy_from_slice(tag);
                } else {
                    data[0..2].copy_from_slice(&40000u16.to_be_bytes());
                    data[2..4].copy_from_slice(&40000u16.to_be_bytes());
                    data[4..6].copy_from_slice(&64u16.to_be_bytes());
                    // checksum 0: none
                    data[8..8 + TAG_LEN].copy_from_slice(tag);
                }
                let mut ip = [0u8; 20];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&(20u16 + 32).to_be_bytes());
                ip[4..6].copy_from_slice(&ident.to_be_bytes());
                let mf: u16 = if *second { 0 } else { 0x2000 };
                ip[6..8].copy_from_slice(&(mf | off8).to_be_bytes());
                ip[8] = 64;
                ip[9] = 17;
                ip[12..16].copy_from_slice(&[10, 99, 0, 1]);
                ip[16..20].copy_from_slice(dst_ip);
                let c = umacvlan_core::wire::ipv4_checksum(&ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
                f.extend_from_slice(&data);
            }
        }
        if let Some(n) = self.cut {
            f.truncate(n);
        }
        f
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        let mut s = format!("{} > {} type {:04x}", self.src, self.dst, self.ethertype);
        if let Some(t) = self.svlan {
            s += &format!(" svlan {t}");
        }
        if let Some(t) = self.vlan {
            s += &format!(" vlan {t}");
        }
        match &self.body {
            Body::Tagged => s += &format!(" len {}", self.len),
            Body::Ipv4Frag { ident, second, .. } => {
                s += &format!(
                    " ipv4 frag id {ident} {}",
                    if *second { "2/2" } else { "1/2" }
                )
            }
        }
        s
    }
}

/// The tag for frame number `n`.
pub fn tag(n: u32) -> [u8; TAG_LEN] {
    let s = format!("UV{:06}", n % 1_000_000);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(s.as_bytes());
    t
}

/// Whether `data` contains `tag`.
pub fn contains(data: &[u8], tag: &[u8; TAG_LEN]) -> bool {
    data.windows(TAG_LEN).any(|w| w == tag)
}
