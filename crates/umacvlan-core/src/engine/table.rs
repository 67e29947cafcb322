//! A read-only open-addressing map from MAC to a small value, built once per snapshot.
//! Lookups cost one multiply and (almost always) one probe, whatever the number of entries.

use crate::wire::MacAddr;

const EMPTY: u64 = u64::MAX;

/// Immutable MAC → `u32` map with linear probing. Built by [`MacTable::build`].
#[derive(Clone, Debug)]
pub struct MacTable {
    keys: Box<[u64]>,
    vals: Box<[u32]>,
    shift: u32,
    mask: usize,
}

impl Default for MacTable {
    fn default() -> Self {
        Self::build(std::iter::empty())
    }
}

impl MacTable {
    /// Builds a table from `(mac, value)` pairs; a later duplicate key replaces an earlier one.
    pub fn build(entries: impl IntoIterator<Item = (MacAddr, u32)>) -> Self {
        let entries: Vec<(u64, u32)> = entries.into_iter().map(|(m, v)| (m.to_u64(), v)).collect();
        // Load factor ≤ 1/4 keeps probe chains short.
        let cap = (entries.len() * 4).next_power_of_two().max(16);
        let mut t = MacTable {
            keys: vec![EMPTY; cap].into_boxed_slice(),
            vals: vec![0; cap].into_boxed_slice(),
            shift: 64 - cap.trailing_zeros(),
            mask: cap - 1,
        };
        for (k, v) in entries {
            let mut i = t.slot(k);
            while t.keys[i] != EMPTY && t.keys[i] != k {
                i = (i + 1) & t.mask;
            }
            t.keys[i] = k;
            t.vals[i] = v;
        }
        t
    }

    #[inline]
    fn slot(&self, k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The value stored for `mac`.
    #[inline]
    pub fn get(&self, mac: MacAddr) -> Option<u32> {
        let k = mac.to_u64();
        let mut i = self.slot(k);
        loop {
            let key = self.keys[i];
            if key == k {
                return Some(self.vals[i]);
            }
            if key == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_all_and_only_inserted() {
        let macs: Vec<MacAddr> = (0..5000u64)
            .map(|i| MacAddr::from_u64(0x0200_0000_0000 + i * 7))
            .collect();
        let t = MacTable::build(macs.iter().enumerate().map(|(i, m)| (*m, i as u32)));
        for (i, m) in macs.iter().enumerate() {
            assert_eq!(t.get(*m), Some(i as u32));
        }
        assert_eq!(t.get(MacAddr::from_u64(0x0200_0000_0001)), None);
        assert_eq!(MacTable::default().get(MacAddr::BROADCAST), None);
    }
}
