//! Per-device counters exactly as the kernel macvlan keeps them (`macvlan_count_rx`,
//! `macvlan_start_xmit`, `macvlan_dev_get_stats64`). A data plane keeps one set per worker and
//! sums them on read ([`DevCounters::add`]).

use super::snapshot::Delivery;

/// One macvlan's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DevCounters {
    /// rx_packets.
    pub rx_packets: u64,
    /// rx_bytes.
    pub rx_bytes: u64,
    /// multicast.
    pub rx_multicast: u64,
    /// rx_errors (also reported in rx_dropped).
    pub rx_errors: u64,
    /// Drops the kernel charges to the macvlan device itself (`dev_core_stats_rx_dropped_inc`,
    /// e.g. a local flood copy larger than the receiver's MTU), reported in rx_dropped too.
    pub rx_core_dropped: u64,
    /// tx_packets.
    pub tx_packets: u64,
    /// tx_bytes.
    pub tx_bytes: u64,
    /// tx_dropped.
    pub tx_dropped: u64,
}

impl DevCounters {
    /// `macvlan_count_rx(vlan, len, success, multicast)`.
    #[inline]
    pub fn count_rx(&mut self, len: u32, success: bool, multicast: bool) {
        if success {
            self.rx_packets += 1;
            self.rx_bytes += len as u64;
            self.rx_multicast += multicast as u64;
        } else {
            self.rx_errors += 1;
        }
    }

    /// Counts a [`Delivery`] once the copy was written (`written`) or not. A refused copy
    /// is also a core drop on the receiver (`____dev_forward_skb` counts it before returning
    /// the error `macvlan_broadcast` counts).
    #[inline]
    pub fn count_delivery(&mut self, d: &Delivery, written: bool) {
        let success = !d.refused && (written || !d.checked);
        self.count_rx(d.bytes, success, d.multicast);
        self.rx_core_dropped += d.refused as u64;
    }

    /// `macvlan_start_xmit`'s accounting: success counts packets and bytes, failure a drop.
    #[inline]
    pub fn count_tx(&mut self, len: u32, success: bool) {
        if success {
            self.tx_packets += 1;
            self.tx_bytes += len as u64;
        } else {
            self.tx_dropped += 1;
        }
    }

    /// Adds another worker's counters.
    pub fn add(&mut self, o: &DevCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_multicast += o.rx_multicast;
        self.rx_errors += o.rx_errors;
        self.rx_core_dropped += o.rx_core_dropped;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_dropped += o.tx_dropped;
    }

    /// `rx_dropped` as reported: `macvlan_dev_get_stats64` puts rx_errors there, and the
    /// core adds the device's own drops.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_errors + self.rx_core_dropped
    }
}

/// Port-wide counters that the kernel charges to the *lower* device or does not expose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortCounters {
    /// Frames the kernel would count in the lower's rx_dropped: broadcast queue full, local
    /// bridge frames the lower refused.
    pub lower_rx_dropped: u64,
    /// Frames dropped as malformed (runts, truncated VLAN headers).
    pub malformed: u64,
    /// IPv4 fragments dropped by reassembly (timeout, overlap, over the memory bound).
    pub defrag_dropped: u64,
}

impl PortCounters {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &PortCounters) {
        self.lower_rx_dropped += o.lower_rx_dropped;
        self.malformed += o.malformed;
        self.defrag_dropped += o.defrag_dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DevId, PacketType};

    fn d(checked: bool, refused: bool) -> Delivery {
        Delivery {
            dev: DevId(0),
            pkt_type: PacketType::Host,
            bytes: 100,
            multicast: true,
            checked,
            refused,
        }
    }

    #[test]
    fn unchecked_delivery_counts_success_even_if_write_failed() {
        let mut c = DevCounters::default();
        c.count_delivery(&d(false, false), false);
        assert_eq!(
            (c.rx_packets, c.rx_bytes, c.rx_multicast, c.rx_errors),
            (1, 100, 1, 0)
        );
    }

    #[test]
    fn checked_or_refused_delivery_counts_error() {
        let mut c = DevCounters::default();
        c.count_delivery(&d(true, false), false);
        c.count_delivery(&d(true, true), true);
        assert_eq!(
            (c.rx_packets, c.rx_errors, c.rx_dropped()),
            (0, 2, 3),
            "refused: error and core drop"
        );
    }

    #[test]
    fn tx_accounting_and_sum() {
        let mut a = DevCounters::default();
        a.count_tx(60, true);
        a.count_tx(60, false);
        let mut b = a;
        b.add(&a);
        assert_eq!((b.tx_packets, b.tx_bytes, b.tx_dropped), (2, 120, 2));
    }
}
