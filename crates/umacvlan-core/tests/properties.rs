//! Property tests of the engine's invariants over random ports, frames and control sequences.

mod common;
use common::*;
use proptest::prelude::*;
use umacvlan_core::engine::*;
use umacvlan_core::wire::MacAddr;

/// A small pool of addresses so that random frames often hit devices and source lists.
fn pool(i: u8) -> MacAddr {
    match i % 8 {
        0 => MacAddr::BROADCAST,
        1 => GROUP,
        2 => EXT,
        3 => EXT2,
        n => mac(n - 3), // mac(1)..mac(4)
    }
}

#[derive(Clone, Debug)]
struct DevPlan {
    mode: Mode,
    mac: u8,
    up: bool,
    sources: Vec<u8>,
    joined: bool,
    promisc: bool,
    nodst: bool,
}

fn mode_strategy() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Private),
        Just(Mode::Vepa),
        Just(Mode::Bridge),
        Just(Mode::Source)
    ]
}

fn dev_plan() -> impl Strategy<Value = DevPlan> {
    (
        mode_strategy(),
        1u8..=4,
        any::<bool>(),
        prop::collection::vec(0u8..8, 0..3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mode, mac, up, sources, joined, promisc, nodst)| DevPlan {
            mode,
            mac,
            up,
            sources,
            joined,
            promisc,
            nodst,
        })
}

/// Builds a port through the control API; operations the kernel refuses are simply skipped.
fn build(plans: &[DevPlan], bclim: i32) -> (Port, Vec<DevId>) {
    let mut p = Port::create(lower()).unwrap();
    let mut ids = Vec::new();
    for (i, d) in plans.iter().enumerate() {
        let mut r = req(&format!("m{i}"), Some(mac(d.mac)), d.mode);
        r.attrs.flags = Some(if d.nodst { FLAG_NODST } else { 0 });
        if d.mode == Mode::Source {
            let list: Vec<MacAddr> = d
                .sources
                .iter()
                .map(|s| pool(*s))
                .filter(|m| m.is_valid_unicast())
                .collect();
            r.attrs.macaddr = Some(MacAddrOp::Set(list));
        }
        let id = p.add_device(&r, i as u64).unwrap();
        if d.up {
            let _ = p.open(id);
        }
        if d.joined {
            p.set_mc_list(id, vec![GROUP]).unwrap();
        }
        p.set_rx_flags(id, d.promisc, false).unwrap();
        ids.push(id);
    }
    if let Some(first) = ids.first() {
        p.change(
            *first,
            &MacvlanAttrs {
                bclim: Some(bclim),
                ..Default::default()
            },
        )
        .unwrap();
    }
    (p, ids)
}

fn mode_of(p: &Port, id: DevId) -> Mode {
    p.device(id).unwrap().mode
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A unicast frame reaches at most one device, unless source mode says otherwise; source
    /// copies go only to up listeners of the frame's source.
    #[test]
    fn unicast_reaches_at_most_one_device_unless_source_mode(
        plans in prop::collection::vec(dev_plan(), 1..6), d in 2u8..8, s in 0u8..8, len in 14usize..200,
    ) {
        let (p, _) = build(&plans, 1);
        let f = frame(pool(d), pool(s), len);
        let o = rx(&p, &f);
        let (src_copies, others): (Vec<&Delivery>, Vec<&Delivery>) = o.deliveries.iter().partition(|x| mode_of(&p, x.dev) == Mode::Source);
        prop_assert!(others.len() <= 1);
        for c in src_copies {
            let dev = p.device(c.dev).unwrap();
            prop_assert!(dev.up && dev.has_source(pool(s)));
        }
        // Delivered to a device ⇔ the lower's stack doesn't get it (unless nothing matched).
        if !others.is_empty() { prop_assert!(!o.lower_stack); }
    }

    /// Private mode never switches locally: nothing a macvlan sends reaches a private macvlan
    /// directly, and a private macvlan's own sends never reach a sibling directly; from the wire,
    /// a group frame sourced by an up private macvlan reaches only that macvlan.
    #[test]
    fn private_never_delivers_device_to_device(
        plans in prop::collection::vec(dev_plan(), 1..6), d in 0u8..8, len in 14usize..200, who in 0usize..6,
    ) {
        let (p, ids) = build(&plans, 1);
        let from = ids[who % ids.len()];
        let o = tx(&p, from, &frame(pool(d), p.device(from).unwrap().mac, len));
        for x in &o.deliveries {
            let m = mode_of(&p, x.dev);
            prop_assert!(m == Mode::Bridge || m == Mode::Source, "local delivery to {m}");
            prop_assert!(mode_of(&p, from) == Mode::Bridge);
        }
        let src = p.device(from).unwrap();
        if src.mode == Mode::Private && src.up {
            let (_, all) = rx_all(&p, &frame(MacAddr::BROADCAST, src.mac, len));
            for x in all {
                prop_assert!(x.dev == from || mode_of(&p, x.dev) == Mode::Source);
            }
        }
    }

    /// Counters equal the deliveries: after counting every delivery of a random traffic mix,
    /// the summed rx_packets equal the copies that were counted as success, and rx_bytes
    /// their bytes.
    #[test]
    fn counters_equal_deliveries(
        plans in prop::collection::vec(dev_plan(), 1..6),
        frames in prop::collection::vec((0u8..8, 0u8..8, 14usize..300, any::<bool>()), 1..40),
    ) {
        let (p, ids) = build(&plans, 1);
        let snap = p.snapshot();
        let mut counters = vec![DevCounters::default(); snap.id_bound()];
        let (mut pkts, mut bytes, mut errs) = (0u64, 0u64, 0u64);
        let mut out = RxOutcome::default();
        for (d, s, len, ok) in frames {
            let f = frame(pool(d), pool(s), len);
            snap.receive(&f, &mut out);
            let mut all = out.deliveries.clone();
            if let Some(src) = out.enqueue { snap.flood_from_wire(&f, src, &mut all); }
            for x in &all {
                counters[x.dev.index()].count_delivery(x, ok);
                if !x.refused && (ok || !x.checked) { pkts += 1; bytes += x.bytes as u64; } else { errs += 1; }
            }
        }
        let mut sum = DevCounters::default();
        for id in &ids { sum.add(&counters[id.index()]); }
        prop_assert_eq!((sum.rx_packets, sum.rx_bytes, sum.rx_errors), (pkts, bytes, errs));
    }

    /// A rejected control operation leaves the port exactly as it was.
    #[test]
    fn rejected_control_operation_changes_nothing(
        plans in prop::collection::vec(dev_plan(), 1..5),
        ops in prop::collection::vec((0u8..9, 0usize..5, 0u8..8, 0u32..70000, 0u32..40), 1..30),
    ) {
        let (mut p, ids) = build(&plans, 1);
        for (op, who, m, n, raw) in ops {
            let id = ids[who % ids.len()];
            let before = p.clone();
            let r: ControlResult<()> = match op {
                0 => p.open(id),
                1 => p.set_mac(id, pool(m)).map(|_| ()),
                2 => p.set_mtu(id, n),
                3 => p.change(id, &MacvlanAttrs { mode: Some(raw), ..Default::default() }),
                4 => p.change(id, &MacvlanAttrs { flags: Some(raw as u16), macaddr: Some(MacAddrOp::Add(pool(m))), ..Default::default() }),
                5 => p.add_device(&NewDevice { name: "x".into(), mac: Some(pool(m)), mtu: Some(n), attrs: MacvlanAttrs { mode: Some(raw), ..Default::default() } }, 1).map(|_| ()),
                6 => p.fdb_add(id, pool(m), raw % 2 == 0),
                7 => p.change(id, &MacvlanAttrs { macaddr_count: Some(raw), bclim: Some(-5), ..Default::default() }),
                _ => p.stop(id),
            };
            if r.is_err() { prop_assert_eq!(&p, &before); }
        }
    }

    /// Whatever changes a device gives it a new stamp (what the daemon's state file keeps a
    /// device's record by); a device left alone keeps its stamp.
    #[test]
    fn a_changed_device_has_a_new_stamp(
        plans in prop::collection::vec(dev_plan(), 1..5),
        ops in prop::collection::vec((0u8..12, 0usize..5, 0u8..8, 0u32..70000, 0u32..40), 1..30),
    ) {
        let (mut p, ids) = build(&plans, 1);
        for (op, who, m, n, raw) in ops {
            let id = ids[who % ids.len()];
            let before = p.clone();
            let _ = match op {
                0 => p.open(id),
                1 => p.set_mac(id, pool(m)).map(|_| ()),
                2 => p.set_mtu(id, n),
                3 => p.change(id, &MacvlanAttrs { mode: Some(raw), ..Default::default() }),
                4 => p.change(id, &MacvlanAttrs { flags: Some(raw as u16 & 3), bcqueuelen: Some(n), macaddr: Some(MacAddrOp::Add(pool(m))), ..Default::default() }),
                5 => p.fdb_add(id, pool(m), raw % 2 == 0),
                6 => p.set_mc_list(id, vec![GROUP, pool(m)]),
                7 => p.set_rx_flags(id, raw % 2 == 0, raw % 3 == 0),
                8 => { p.lower_mtu_changed(n % 2000); Ok(()) }
                9 => { p.lower_mac_changed(pool(m), LowerMacCause::External); Ok(()) }
                10 => p.set_up(id, raw % 2 == 0),
                _ => p.stop(id),
            };
            for d in before.devices() {
                let now = p.device(d.id).unwrap();
                if now != d {
                    prop_assert!(!now.stamp().same(d.stamp()), "{:?} changed by op {} kept its stamp", d.name, op);
                }
            }
            for d in p.devices() {
                if !ids.contains(&d.id) || d.id != id && op != 8 && op != 9 {
                    let old = before.device(d.id).unwrap();
                    prop_assert!(d.stamp().same(old.stamp()), "{:?} untouched by op {} got a new stamp", d.name, op);
                }
            }
        }
    }

    /// A device added (and opened) then taken back with `undo_add` leaves the port exactly as
    /// it was (the daemon's `link add` does so when the TAP cannot be made).
    #[test]
    fn undo_add_takes_the_port_back(
        plans in prop::collection::vec(dev_plan(), 1..5),
        m in 0u8..8, raw in 0u32..40, up in any::<bool>(), bclim in prop::option::of(-3i32..3),
        sources in any::<bool>(),
    ) {
        let (mut p, _) = build(&plans, 1);
        let before = p.clone();
        let undo = p.add_undo_point();
        let req = NewDevice {
            name: "x".into(),
            mac: Some(pool(m)),
            mtu: None,
            attrs: MacvlanAttrs {
                mode: Some(raw),
                bclim,
                macaddr: sources.then(|| MacAddrOp::Add(pool(m))),
                ..Default::default()
            },
        };
        if let Ok(id) = p.add_device(&req, 7) {
            if up {
                let _ = p.open(id);
            }
            p.undo_add(id, undo);
        }
        prop_assert_eq!(&p, &before);
    }

    /// The snapshot's MAC table agrees with a plain map.
    #[test]
    fn mac_table_agrees_with_a_map(keys in prop::collection::hash_set(any::<u64>(), 0..300), probe in any::<u64>()) {
        let macs: Vec<MacAddr> = keys.iter().map(|k| MacAddr::from_u64(*k & 0xffff_ffff_ffff)).collect();
        let t = MacTable::build(macs.iter().enumerate().map(|(i, m)| (*m, i as u32)));
        let map: std::collections::HashMap<MacAddr, u32> = macs.iter().enumerate().map(|(i, m)| (*m, i as u32)).collect();
        for m in &macs { prop_assert_eq!(t.get(*m), map.get(m).copied()); }
        let pm = MacAddr::from_u64(probe & 0xffff_ffff_ffff);
        prop_assert_eq!(t.get(pm), map.get(&pm).copied());
    }

    /// Reassembly returns the original datagram whatever the fragment order.
    #[test]
    fn defrag_reassembles_in_any_order(len in 9usize..6000, chunk in 1usize..200, order in any::<u64>()) {
        let chunk = chunk * 8;
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut frags = Vec::new();
        let mut off = 0;
        while off < len {
            let end = (off + chunk).min(len);
            let mut f = frame(MacAddr::BROADCAST, EXT, 14);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
            ip[6..8].copy_from_slice(&(((off / 8) as u16) | if end < len { 0x2000 } else { 0 }).to_be_bytes());
            ip[9] = 17;
            f.extend_from_slice(&ip);
            f.extend_from_slice(&payload[off..end]);
            frags.push(f);
            off = end;
        }
        if frags.len() == 1 { return Ok(()); }
        // A deterministic shuffle from `order`.
        let mut seed = order | 1;
        for i in (1..frags.len()).rev() {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            frags.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let mut d = Defragmenter::new(DefragLimits::default());
        let n = frags.len();
        for (i, f) in frags.iter().enumerate() {
            match d.process(f, 0) {
                Defrag::Complete(w) => {
                    prop_assert_eq!(i, n - 1);
                    prop_assert_eq!(&w[34..], &payload[..]);
                }
                Defrag::Held => prop_assert!(i < n - 1),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
