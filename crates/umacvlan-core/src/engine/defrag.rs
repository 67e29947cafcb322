//! IPv4 reassembly for group-addressed frames (`ip_check_defrag(…, IP_DEFRAG_MACVLAN)`): the
//! kernel reassembles fragments of broadcast/multicast datagrams before flooding them, so
//! each macvlan receives whole datagrams. Time is passed in; memory is bounded.

use crate::wire::{ethertype, ipv4_checksum, EthernetFrame, Ipv4Header, VLAN_HLEN};
use core::net::Ipv4Addr;

/// Bounds of the reassembler (the kernel's `ipfrag_time` and `ipfrag_high_thresh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragLimits {
    /// A datagram not complete this long after its first fragment is dropped (ns).
    pub timeout_ns: u64,
    /// Bytes of fragments held at most; fragments beyond it are dropped.
    pub max_bytes: usize,
    /// Datagrams in reassembly at most.
    pub max_datagrams: usize,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            timeout_ns: 30_000_000_000,
            max_bytes: 4 << 20,
            max_datagrams: 1024,
        }
    }
}

/// What the reassembler did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Defrag<'a> {
    /// Not an IPv4 fragment: process the frame as it is.
    Whole,
    /// A fragment, kept until its datagram is complete (the kernel consumes it).
    Held,
    /// The last missing fragment: here is the whole datagram as one frame (the first
    /// fragment's link-layer header, an IPv4 header without fragment bits, all the data).
    Complete(&'a [u8]),
    /// A fragment dropped: over the memory bound, overlapping, oversized, or malformed.
    Dropped,
}

#[derive(Debug)]
struct Queue {
    key: (Ipv4Addr, Ipv4Addr, u16, u8),
    started_ns: u64,
    /// Link-layer header and IP header of the offset-0 fragment.
    head: Option<(Vec<u8>, Vec<u8>)>,
    /// (offset, data), kept sorted by offset and non-overlapping.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Datagram payload length, known once the last fragment arrived.
    total: Option<usize>,
    bytes: usize,
}

/// A per-worker IPv4 reassembler.
#[derive(Debug, Default)]
pub struct Defragmenter {
    limits: DefragLimits,
    queues: Vec<Queue>,
    bytes: usize,
    out: Vec<u8>,
    dropped: u64,
}

/// The IPv4 header of a frame as `ip_check_defrag` finds it: behind at most one VLAN tag.
fn ipv4_of(frame: &[u8]) -> Option<(usize, Ipv4Header<'_>)> {
    let f = EthernetFrame::new_checked(frame).ok()?;
    let (proto, off) = match f.outer_ethertype() {
        ethertype::VLAN_8021Q | ethertype::VLAN_8021AD => {
            (u16::from_be_bytes([frame[16], frame[17]]), 14 + VLAN_HLEN)
        }
        et => (et, 14),
    };
    if proto != ethertype::IPV4 || frame.len() < off {
        return None;
    }
    Ipv4Header::new_checked(&frame[off..]).map(|h| (off, h))
}

impl Defragmenter {
    /// A reassembler with the given bounds.
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            ..Default::default()
        }
    }

    /// Fragments dropped so far (timeouts, overlaps, bounds); the caller may move them into
    /// its counters.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Datagrams currently in reassembly.
    pub fn pending(&self) -> usize {
        self.queues.len()
    }

    /// Bytes currently held.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    fn expire(&mut self, now_ns: u64) {
        let timeout = if self.limits.timeout_ns == 0 {
            DefragLimits::default().timeout_ns
        } else {
            self.limits.timeout_ns
        };
        let before = self.queues.len();
        let mut freed = 0;
        self.queues.retain(|q| {
            let keep = now_ns.saturating_sub(q.started_ns) < timeout;
            if !keep {
                freed += q.bytes;
            }
            keep
        });
        self.bytes -= freed;
        self.dropped += (before - self.queues.len()) as u64;
    }

    fn kill(&mut self, i: usize) {
        let q = self.queues.swap_remove(i);
        self.bytes -= q.bytes;
        self.dropped += 1;
    }

    /// Feeds one frame received from the wire at time `now_ns`.
    pub fn process(&mut self, frame: &[u8], now_ns: u64) -> Defrag<'_> {
        let limits = if self.limits.max_bytes == 0 {
            DefragLimits::default()
        } else {
            self.limits
        };
        let Some((l3, ip)) = ipv4_of(frame) else {
            return Defrag::Whole;
        };
        if !ip.is_fragment() {
            return Defrag::Whole;
        }
        self.expire(now_ns);
        let key = (ip.src(), ip.dst(), ip.ident(), ip.protocol());
        let offset = ip.frag_offset();
        let mut data = ip.payload();
        let last = !ip.more_fragments();
        if !last {
            // Non-final fragments carry multiples of 8 bytes.
            data = &data[..data.len() & !7];
        }
        let end = offset + data.len();
        if end + ip.header_len() > 65535 || (data.is_empty() && !last) {
            self.dropped += 1;
            return Defrag::Dropped;
        }
        let i = match self.queues.iter().position(|q| q.key == key) {
            Some(i) => i,
            None => {
                if self.queues.len() >= limits.max_datagrams {
                    self.dropped += 1;
                    return Defrag::Dropped;
                }
                self.queues.push(Queue {
                    key,
                    started_ns: now_ns,
                    head: None,
                    pieces: Vec::new(),
                    total: None,
                    bytes: 0,
                });
                self.queues.len() - 1
            }
        };
        if self.bytes + frame.len() > limits.max_bytes {
            self.dropped += 1;
            return Defrag::Dropped;
        }
        let q = &mut self.queues[i];
        // The last fragment fixes the length; anything contradicting it kills the datagram.
        let bad_len = match (last, q.total) {
            (true, Some(t)) => t != end,
            (true, None) => q.pieces.iter().any(|(o, d)| o + d.len() > end),
            (false, Some(t)) => end > t,
            (false, None) => false,
        };
        if bad_len {
            self.kill(i);
            return Defrag::Dropped;
        }
        // Exact duplicates are ignored; any other overlap kills the datagram (RFC 5722 style,
        // as Linux does since 4.19).
        let pos = q.pieces.partition_point(|(o, _)| *o < offset);
        if q.pieces
            .get(pos)
            .is_some_and(|(o, d)| *o == offset && d.len() == data.len())
        {
            self.dropped += 1;
            return Defrag::Dropped;
        }
        let overlaps_prev = pos > 0 && {
            let (o, d) = &q.pieces[pos - 1];
            o + d.len() > offset
        };
        let overlaps_next = q.pieces.get(pos).is_some_and(|(o, _)| *o < end);
        if overlaps_prev || overlaps_next {
            self.kill(i);
            return Defrag::Dropped;
        }
        if last {
            q.total = Some(end);
        }
        if offset == 0 {
            q.head = Some((frame[..l3].to_vec(), ip.header_bytes().to_vec()));
        }
        q.pieces.insert(pos, (offset, data.to_vec()));
        q.bytes += frame.len();
        self.bytes += frame.len();
        // Complete when the head and the end are known and the pieces are contiguous.
        let q = &self.queues[i];
        let complete = q.head.is_some()
            && q.total.is_some_and(|t| {
                let mut at = 0;
                for (o, d) in &q.pieces {
                    if *o != at {
                        return false;
                    }
                    at += d.len();
                }
                at == t
            });
        if !complete {
            return Defrag::Held;
        }
        let q = self.queues.swap_remove(i);
        self.bytes -= q.bytes;
        let (l2, iph) = q.head.expect("checked above");
        let total = q.total.expect("checked above");
        if iph.len() + total > 65535 {
            // ip_frag_reasm's "Oversized IP packet": the first fragment's header (options
            // included) and the data do not fit the 16-bit total length. The length used to
            // wrap and a corrupt datagram went out (the engine_decisions fuzz invariant).
            self.dropped += 1;
            return Defrag::Dropped;
        }
        self.out.clear();
        self.out.extend_from_slice(&l2);
        let ip_at = self.out.len();
        self.out.extend_from_slice(&iph);
        let tot_len = (iph.len() + total) as u16;
        self.out[ip_at + 2..ip_at + 4].copy_from_slice(&tot_len.to_be_bytes());
        self.out[ip_at + 6] = 0;
        self.out[ip_at + 7] = 0;
        self.out[ip_at + 10] = 0;
        self.out[ip_at + 11] = 0;
        let c = ipv4_checksum(&self.out[ip_at..ip_at + iph.len()]);
        self.out[ip_at + 10..ip_at + 12].copy_from_slice(&c.to_be_bytes());
        for (_, d) in &q.pieces {
            self.out.extend_from_slice(d);
        }
        Defrag::Complete(&self.out)
    }
}
