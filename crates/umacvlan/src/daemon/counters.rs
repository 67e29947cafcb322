//! Per-worker counters, summed on read (the kernel's per-CPU `vlan_pcpu_stats`).
//!
//! Each table has exactly one writer (its worker), so an increment is a relaxed load and store:
//! no atomic read-modify-write, no lock, no shared cache line between workers.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use umacvlan_core::engine::{Delivery, DevCounters, DevId, PortCounters};

const CHUNK: usize = 64;
const CHUNKS: usize = 1024;
/// Devices per port whose counters can be kept.
pub const MAX_DEVICES: usize = CHUNK * CHUNKS;

#[derive(Default)]
struct Slot {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_multicast: AtomicU64,
    rx_errors: AtomicU64,
    rx_core_dropped: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
}

#[inline]
fn bump(a: &AtomicU64, by: u64) {
    a.store(a.load(Relaxed).wrapping_add(by), Relaxed);
}

/// 64 devices' counters, each on its own cache line.
type Chunk = Box<[CachePadded<Slot>]>;

/// One worker's counters for every device of a port, allocated 64 devices at a time.
pub struct CounterTable {
    chunks: Box<[OnceLock<Chunk>]>,
    lower_rx_dropped: AtomicU64,
    malformed: AtomicU64,
    defrag_dropped: AtomicU64,
}

impl Default for CounterTable {
    fn default() -> Self {
        CounterTable {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
            lower_rx_dropped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            defrag_dropped: AtomicU64::new(0),
        }
    }
}

impl CounterTable {
    fn slot(&self, id: DevId) -> Option<&Slot> {
        let i = id.index();
        let chunk = self.chunks.get(i / CHUNK)?;
        let c = chunk.get_or_init(|| {
            (0..CHUNK)
                .map(|_| CachePadded::new(Slot::default()))
                .collect()
        });
        Some(&c[i % CHUNK])
    }

    fn peek(&self, id: DevId) -> Option<&Slot> {
        let i = id.index();
        self.chunks.get(i / CHUNK)?.get().map(|c| &*c[i % CHUNK])
    }

    /// Counts one delivery (see [`DevCounters::count_delivery`]).
    #[inline]
    pub fn delivery(&self, d: &Delivery, written: bool) {
        let Some(s) = self.slot(d.dev) else { return };
        if !d.refused && (written || !d.checked) {
            bump(&s.rx_packets, 1);
            bump(&s.rx_bytes, d.bytes as u64);
            if d.multicast {
                bump(&s.rx_multicast, 1);
            }
        } else {
            bump(&s.rx_errors, 1);
        }
        if d.refused {
            bump(&s.rx_core_dropped, 1);
        }
    }

    /// Counts one transmit.
    #[inline]
    pub fn tx(&self, id: DevId, bytes: u32, ok: bool) {
        let Some(s) = self.slot(id) else { return };
        if ok {
            bump(&s.tx_packets, 1);
            bump(&s.tx_bytes, bytes as u64);
        } else {
            bump(&s.tx_dropped, 1);
        }
    }

    /// A frame the kernel would count in the lower's rx_dropped.
    pub fn lower_rx_dropped(&self) {
        bump(&self.lower_rx_dropped, 1);
    }
    /// A malformed frame.
    pub fn malformed(&self) {
        bump(&self.malformed, 1);
    }
    /// Fragments dropped by reassembly.
    pub fn defrag_dropped(&self, n: u64) {
        bump(&self.defrag_dropped, n);
    }

    /// Zeroes a device's counters (a new device reusing an id). Called by the control thread;
    /// a worker still finishing a frame of the old device may add to the fresh counters.
    pub fn reset(&self, id: DevId) {
        if let Some(s) = self.peek(id) {
            for a in [
                &s.rx_packets,
                &s.rx_bytes,
                &s.rx_multicast,
                &s.rx_errors,
                &s.rx_core_dropped,
                &s.tx_packets,
                &s.tx_bytes,
                &s.tx_dropped,
            ] {
                a.store(0, Relaxed);
            }
        }
    }

    /// This table's share of a device's counters.
    pub fn read(&self, id: DevId) -> DevCounters {
        match self.peek(id) {
            None => DevCounters::default(),
            Some(s) => DevCounters {
                rx_packets: s.rx_packets.load(Relaxed),
                rx_bytes: s.rx_bytes.load(Relaxed),
                rx_multicast: s.rx_multicast.load(Relaxed),
                rx_errors: s.rx_errors.load(Relaxed),
                rx_core_dropped: s.rx_core_dropped.load(Relaxed),
                tx_packets: s.tx_packets.load(Relaxed),
                tx_bytes: s.tx_bytes.load(Relaxed),
                tx_dropped: s.tx_dropped.load(Relaxed),
            },
        }
    }

    /// This table's share of the port counters.
    pub fn read_port(&self) -> PortCounters {
        PortCounters {
            lower_rx_dropped: self.lower_rx_dropped.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            defrag_dropped: self.defrag_dropped.load(Relaxed),
        }
    }
}

/// Sums a device's counters over all tables.
pub fn sum(tables: &[CounterTable], id: DevId) -> DevCounters {
    let mut c = DevCounters::default();
    for t in tables {
        c.add(&t.read(id));
    }
    c
}

/// Sums the port counters over all tables.
pub fn sum_port(tables: &[CounterTable]) -> PortCounters {
    let mut c = PortCounters::default();
    for t in tables {
        c.add(&t.read_port());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use umacvlan_core::engine::PacketType;

    #[test]
    fn tables_sum_and_reset() {
        let tables: Vec<CounterTable> = (0..3).map(|_| CounterTable::default()).collect();
        let d = Delivery {
            dev: DevId(70),
            pkt_type: PacketType::Host,
            bytes: 60,
            multicast: true,
            checked: true,
            refused: false,
        };
        tables[0].delivery(&d, true);
        tables[2].delivery(&d, false);
        tables[1].tx(DevId(70), 100, true);
        let c = sum(&tables, DevId(70));
        assert_eq!(
            (
                c.rx_packets,
                c.rx_bytes,
                c.rx_multicast,
                c.rx_errors,
                c.tx_bytes
            ),
            (1, 60, 1, 1, 100)
        );
        assert_eq!(sum(&tables, DevId(3)), DevCounters::default());
        for t in &tables {
            t.reset(DevId(70));
        }
        assert_eq!(sum(&tables, DevId(70)), DevCounters::default());
        assert_eq!(
            sum(&tables, DevId(MAX_DEVICES as u32)),
            DevCounters::default()
        );
    }
}
