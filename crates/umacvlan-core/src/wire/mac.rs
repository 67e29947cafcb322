//! `MacAddr`: a 48-bit Ethernet address, parsed and printed the way iproute2 does.

use core::fmt;
use core::str::FromStr;

/// A 48-bit IEEE 802 MAC address.
///
/// Printed lowercase and colon-separated (`02:00:00:00:00:01`), exactly as `ip link` prints it.
/// Parsing accepts what iproute2's `ll_addr_a2n` accepts for Ethernet: six colon-separated
/// groups of one or two hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct ParseMacError(pub String);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from its six octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }

    /// Reads the first six bytes of `b`. Panics if `b` is shorter than six bytes.
    #[inline]
    pub fn from_slice(b: &[u8]) -> Self {
        let mut o = [0u8; 6];
        o.copy_from_slice(&b[..6]);
        MacAddr(o)
    }

    /// The six octets.
    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The address as the low 48 bits of a `u64` (first octet most significant).
    #[inline]
    pub const fn to_u64(&self) -> u64 {
        let o = self.0;
        ((o[0] as u64) << 40)
            | ((o[1] as u64) << 32)
            | ((o[2] as u64) << 24)
            | ((o[3] as u64) << 16)
            | ((o[4] as u64) << 8)
            | (o[5] as u64)
    }

    /// Inverse of [`MacAddr::to_u64`]; the top 16 bits are ignored.
    #[inline]
    pub const fn from_u64(v: u64) -> Self {
        MacAddr([
            (v >> 40) as u8,
            (v >> 32) as u8,
            (v >> 24) as u8,
            (v >> 16) as u8,
            (v >> 8) as u8,
            v as u8,
        ])
    }

    /// Group bit set: multicast or broadcast (`is_multicast_ether_addr`).
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// `ff:ff:ff:ff:ff:ff`.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// All zero.
    #[inline]
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// Locally administered bit set.
    #[inline]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 2 != 0
    }

    /// The kernel's `is_valid_ether_addr`: not multicast and not all zero.
    #[inline]
    pub fn is_valid_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// A locally administered unicast address made from 48 random bits, as
    /// `eth_random_addr` does (clears the group bit, sets the local bit).
    pub fn random_local(random: u64) -> Self {
        let mut m = Self::from_u64(random);
        m.0[0] &= 0xfe;
        m.0[0] |= 0x02;
        m
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut o = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            o[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(MacAddr(o))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_iproute2() {
        let m = MacAddr([0x02, 0xAB, 0, 1, 0x10, 0xff]);
        assert_eq!(m.to_string(), "02:ab:00:01:10:ff");
    }

    #[test]
    fn parses_short_groups_and_rejects_garbage() {
        assert_eq!(
            "2:0:0:0:0:1".parse::<MacAddr>().unwrap(),
            MacAddr([2, 0, 0, 0, 0, 1])
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "0g:00:00:00:00:00",
            "002:0:0:0:0:0",
            "02::00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn u64_round_trip_and_classes() {
        let m: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
        assert!(m.is_multicast() && !m.is_valid_unicast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::ZERO.is_valid_unicast());
        let r = MacAddr::random_local(u64::MAX);
        assert!(r.is_valid_unicast() && r.is_local());
    }
}
