//! Wire formats: zero-copy views of Ethernet/802.1Q frames and the IPv4 header, and
//! [`MacAddr`]. No I/O, no allocation except in the explicit builder helpers.

mod ethernet;
mod ipv4;
mod mac;

pub use ethernet::{
    ethertype, insert_vlan_tag, write_header, EthernetFrame, FrameError, ETH_HLEN, MIN_FRAME,
    VLAN_HLEN,
};
pub use ipv4::{checksum as ipv4_checksum, Ipv4Header};
pub use mac::{MacAddr, ParseMacError};
