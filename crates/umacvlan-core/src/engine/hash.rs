//! The kernel's hash functions where their results are visible: which multicast groups share
//! a port filter bit (and so take the broadcast queue together), and the order in which the
//! kernel walks its MAC hash tables (flood order, `macaddr_data` dump order).

use crate::wire::MacAddr;

const GOLDEN_RATIO_32: u32 = 0x61C8_8647;
const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;

/// `MACVLAN_MC_FILTER_BITS`.
pub const MC_FILTER_BITS: u32 = 8;
/// `MACVLAN_HASH_BITS`.
pub const MAC_HASH_BITS: u32 = 8;

/// `hash_32(val, bits)`.
#[inline]
pub const fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// `hash_64(val, bits)` on 64-bit kernels.
#[inline]
pub const fn hash_64(val: u64, bits: u32) -> u32 {
    (val.wrapping_mul(GOLDEN_RATIO_64) >> (64 - bits)) as u32
}

/// `mc_hash(NULL, addr)`: the unsalted bit a group takes in the port's multicast and broadcast
/// filters (a little-endian load of bytes 2..6, as on x86-64 and arm64).
#[inline]
pub fn port_mc_hash(addr: MacAddr) -> u8 {
    let o = addr.0;
    let val = u32::from_le_bytes([o[2], o[3], o[4], o[5]]);
    hash_32(val, MC_FILTER_BITS) as u8
}

/// What the kernel's per-device multicast hash (`mc_hash(vlan, addr)`) reads of an address:
/// bytes 2..6 only. Two groups with the same key take the same bit on *every* macvlan whatever
/// its salt, so a device that joined one also passes the other (`03:00:00:00:00:01` passes
/// wherever `33:33:00:00:00:01` was joined, `xx:xx:ff:ff:ff:ff` wherever broadcast passes).
#[inline]
pub fn mc_hash_key(addr: MacAddr) -> u32 {
    let o = addr.0;
    u32::from_le_bytes([o[2], o[3], o[4], o[5]])
}

/// `macvlan_eth_hash(addr)`: the bucket of `addr` in the port's device and source tables.
#[inline]
pub fn eth_hash(addr: MacAddr) -> u8 {
    let o = addr.0;
    let value = u64::from_le_bytes([o[0], o[1], o[2], o[3], o[4], o[5], 0, 0]) << 16;
    hash_64(value, MAC_HASH_BITS) as u8
}

/// A 256-bit filter (`DECLARE_BITMAP(…, MACVLAN_MC_FILTER_SZ)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bitmap256([u64; 4]);

impl Bitmap256 {
    /// All bits clear.
    pub const EMPTY: Bitmap256 = Bitmap256([0; 4]);
    /// All bits set (`bitmap_fill`).
    pub const FULL: Bitmap256 = Bitmap256([u64::MAX; 4]);

    /// Sets bit `b`.
    #[inline]
    pub fn set(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1 << (b & 63);
    }

    /// Tests bit `b`.
    #[inline]
    pub fn test(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] & (1 << (b & 63)) != 0
    }

    /// Whether no bit is set.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_32_matches_kernel_formula() {
        // hash_32(1, 8) = (0x61C88647 * 1) >> 24 = 0x61
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
    }

    #[test]
    fn broadcast_takes_one_port_bit() {
        let b = port_mc_hash(MacAddr::BROADCAST);
        assert_eq!(b as u32, hash_32(u32::MAX, 8));
    }

    #[test]
    fn bitmap_set_test() {
        let mut m = Bitmap256::EMPTY;
        assert!(m.is_empty());
        for b in [0u8, 63, 64, 200, 255] {
            m.set(b);
            assert!(m.test(b));
        }
        assert!(!m.test(1));
        assert!(Bitmap256::FULL.test(77));
    }
}
