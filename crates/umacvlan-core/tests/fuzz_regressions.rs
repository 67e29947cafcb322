//! Regressions for what the fuzz targets (`fuzz/`, see docs/fuzzing.md) found in the core.
//! The raw crashing inputs are also replayed by `cargo test --manifest-path fuzz/Cargo.toml`;
//! these tests state each bug through the public API so they run with the core's own tests.

use umacvlan_core::engine::{Defrag, DefragLimits, Defragmenter};
use umacvlan_core::wire::{
    ethertype, insert_vlan_tag, write_header, EthernetFrame, Ipv4Header, MacAddr,
};

/// An Ethernet frame to a group carrying one IPv4 fragment of datagram 7.
fn fragment(ihl: u8, offset: usize, more: bool, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 14];
    write_header(
        &mut b,
        MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
        MacAddr([0x02, 0, 0, 0, 0, 0x99]),
        ethertype::IPV4,
    );
    let hl = ihl as usize * 4;
    let mut h = vec![0u8; hl];
    h[0] = 0x40 | ihl;
    h[2..4].copy_from_slice(&((hl + len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&7u16.to_be_bytes());
    let frag = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = 17;
    b.extend_from_slice(&h);
    b.extend(std::iter::repeat_n(0xab, len));
    b
}

/// engine_decisions: a datagram whose first fragment has IP options (IHL 15) and whose data
/// reaches 65515 bytes does not fit the 16-bit total length. Reassembly used to wrap the length
/// (65575 → 39) and hand out a corrupt datagram; like the kernel (`ip_frag_reasm`, "Oversized
/// IP packet") it must drop it.
#[test]
fn oversized_reassembly_is_dropped_not_wrapped() {
    let mut d = Defragmenter::new(DefragLimits::default());
    let head_len = 65000 & !7;
    assert_eq!(d.process(&fragment(15, 0, true, head_len), 0), Defrag::Held);
    let last = fragment(5, head_len, false, 65515 - head_len);
    assert_eq!(d.process(&last, 1), Defrag::Dropped);
    assert_eq!(d.take_dropped(), 1);
    assert_eq!((d.pending(), d.held_bytes()), (0, 0));
}

/// The same datagram with a 20-byte first header fits exactly and is reassembled whole.
#[test]
fn largest_datagram_still_reassembles() {
    let mut d = Defragmenter::new(DefragLimits::default());
    let head_len = 65000 & !7;
    assert_eq!(d.process(&fragment(5, 0, true, head_len), 0), Defrag::Held);
    let last = fragment(5, head_len, false, 65515 - head_len);
    let Defrag::Complete(whole) = d.process(&last, 1) else {
        panic!("not reassembled");
    };
    let f = EthernetFrame::new_checked(whole).unwrap();
    let ip = Ipv4Header::new_checked(f.payload()).unwrap();
    assert_eq!(ip.total_len(), 65535);
    assert!(!ip.is_fragment());
}

/// frame_views: `insert_vlan_tag` on a frame shorter than its two addresses used to panic on a
/// slice index; it copies the runt unchanged.
#[test]
fn vlan_tag_insertion_into_runts() {
    let mut out = Vec::new();
    for n in 0..12 {
        let runt = vec![0x5a; n];
        insert_vlan_tag(&runt, ethertype::VLAN_8021Q, 1, &mut out);
        assert_eq!(out, runt);
    }
}
