//! The scenario table. Each scenario is one function run against both worlds; it only uses
//! [`World`]'s methods, so what it does is the same words and the same frames in both.
//! Adding a scenario = a function + a line in [`SCENARIOS`].

use super::frames::{eth, frag, ETHERTYPE_PAUSE};
use super::world::{World, EXT_MAC, LOWER_MAC};

pub const EXT2: &str = "02:ee:00:00:00:02";
pub const UNK: &str = "02:bb:00:00:00:99";
pub const BCAST: &str = "ff:ff:ff:ff:ff:ff";
pub const G1: &str = "01:00:5e:01:02:03";
pub const G2: &str = "01:00:5e:01:02:04";
/// Groups whose bytes 2..5 equal those of broadcast, of 33:33:00:00:00:01 and of
/// 01:00:5e:00:00:01 (which every macvlan's stack joins): the kernel's per-device filter hashes
/// only those four bytes, so these pass on every device whatever its salt.
pub const ALIASES: [&str; 3] = [
    "01:00:ff:ff:ff:ff",
    "03:00:00:00:00:01",
    "03:00:5e:00:00:01",
];
pub const PAUSE_DST: &str = "01:80:c2:00:00:01";
pub const NEW_MAC: &str = "02:bb:00:00:00:42";

/// Each macvlan name has a fixed MAC (the passthru one inherits the lower's).
pub fn mac(dev: &str) -> &'static str {
    match dev {
        "b0" => "02:bb:00:00:00:01",
        "b1" => "02:bb:00:00:00:02",
        "b2" => "02:bb:00:00:00:0b",
        "v0" => "02:bb:00:00:00:03",
        "v1" => "02:bb:00:00:00:04",
        "p0" => "02:bb:00:00:00:05",
        "p1" => "02:bb:00:00:00:06",
        "s0" => "02:bb:00:00:00:07",
        "s1" => "02:bb:00:00:00:08",
        "e0" => "02:bb:00:00:00:e0",
        "e1" => "02:bb:00:00:00:e1",
        "hb0" => "02:bb:00:00:00:a0",
        "hb1" => "02:bb:00:00:00:a1",
        "hv0" => "02:bb:00:00:00:a2",
        "pt0" => LOWER_MAC,
        "ext" => EXT_MAC,
        _ => panic!("no MAC for {dev}"),
    }
}

pub type Scenario = fn(&mut World);

/// name → driver.
pub static SCENARIOS: &[(&str, Scenario)] = &[
    ("bridge-alone", bridge_alone),
    ("vepa-alone", vepa_alone),
    ("private-alone", private_alone),
    ("mixed-modes", mixed_modes),
    ("hairpin-reflection", hairpin_reflection),
    ("source-mode", source_mode),
    ("source-on-bridge-path", source_bridge_path),
    ("passthru", passthru),
    ("passthru-nopromisc", passthru_nopromisc),
    ("bcqueuelen-0-burst", bcqueuelen_zero),
    ("mtu-limits", mtu_limits),
    ("mac-conflicts", mac_conflicts),
    ("devices-down", devices_down),
    ("lower-down-up", lower_down_up),
    ("lower-mtu-change", lower_mtu),
    ("lower-deleted", lower_deleted),
    ("vlan-8021q", vlan_tagged),
    ("ipv4-fragments", fragments),
    ("pause-frames", pause_frames),
    ("runt-and-oversized", runt_oversize),
    ("bad-headers", bad_headers),
    ("control-errors", control_errors),
    ("promisc-allmulti", promisc_allmulti),
    ("ip-stack", ip_stack),
    ("mc-poll-under-load", mc_poll_under_load),
    ("lower-host-sends", lower_host_sends),
    ("lower-host-sends-hairpin", lower_host_sends_hairpin),
    ("lower-references", lower_references),
    ("operstate-and-qdisc", operstate_and_qdisc),
    ("macvlan-on-macvlan", macvlan_on_macvlan),
    ("passthru-multicast", passthru_multicast),
    ("joins-then-traffic", joins_then_traffic),
];

// ---------------------------------------------------------------------------- helpers

/// `link add link low0 name DEV netns NS address MAC up type macvlan mode MODE EXTRA…`.
fn add(w: &mut World, dev: &str, mode: &str, extra: &[&str]) {
    add_opts(w, dev, mode, true, &[], extra);
}

fn add_opts(w: &mut World, dev: &str, mode: &str, up: bool, link_opts: &[&str], extra: &[&str]) {
    let ns = format!("NS:{dev}");
    let mut words = vec!["link", "add", "link", "low0", "name", dev];
    if !super::world::in_lower_ns(dev) {
        words.extend(["netns", ns.as_str()]);
    }
    if mode != "passthru" {
        words.extend(["address", mac(dev)]);
    }
    words.extend_from_slice(link_opts);
    if up {
        words.push("up");
    }
    words.extend(["type", "macvlan", "mode", mode]);
    words.extend_from_slice(extra);
    w.ctl(&words);
}

fn join(w: &mut World, dev: &str, g: &str) {
    let already = w.lower_has_group(g);
    w.sh(dev, &["ip", "maddr", "add", g, "dev", dev]);
    if already {
        // Nothing to watch on the lower: give the daemon its poll period.
        w.wait_mc_poll();
    } else {
        w.wait_lower_group(g, true);
    }
}

fn leave(w: &mut World, dev: &str, g: &str) {
    w.sh(dev, &["ip", "maddr", "del", g, "dev", dev]);
    // The group may stay on the lower for another reason: give the daemon its poll period.
    w.settle();
    w.settle();
    w.settle();
}

/// From `from` (a macvlan or "ext"): unicast to each of `to`, to ext, to an unknown MAC and
/// to the lower's MAC; broadcast; two multicast groups.
fn probe(w: &mut World, from: &str, to: &[&str]) {
    let src = mac(from);
    w.step(&format!("probe from {from}"));
    for t in to {
        if *t != from {
            w.send(&format!("{from}->{t}"), from, eth(mac(t), src));
        }
    }
    if from != "ext" {
        w.send(&format!("{from}->ext"), from, eth(EXT_MAC, src));
    }
    w.send(&format!("{from}->unknown"), from, eth(UNK, src));
    w.send(&format!("{from}->lower"), from, eth(LOWER_MAC, src));
    w.send(&format!("{from}->broadcast"), from, eth(BCAST, src));
    w.send(&format!("{from}->G1"), from, eth(G1, src));
    w.send(&format!("{from}->G2"), from, eth(G2, src));
    for g in ALIASES {
        w.send(&format!("{from}->{g}"), from, eth(g, src));
    }
    w.end();
}

/// Probes from ext and from every macvlan.
fn probe_all(w: &mut World, devs: &[&str]) {
    probe(w, "ext", devs);
    for d in devs {
        probe(w, d, devs);
    }
}

/// A two-device mode on its own: unicast, broadcast, multicast with and without the group
/// joined on the receiver.
fn pair(w: &mut World, mode: &str, a: &str, b: &str) {
    add(w, a, mode, &[]);
    add(w, b, mode, &[]);
    w.checkpoint("created");
    probe_all(w, &[a, b]);
    join(w, b, G1);
    w.checkpoint("G1 joined");
    probe(w, "ext", &[a, b]);
    probe(w, a, &[b]);
    probe(w, b, &[a]);
    leave(w, b, G1);
    probe(w, "ext", &[a, b]);
    probe(w, a, &[b]);
}

fn bridge_alone(w: &mut World) {
    pair(w, "bridge", "b0", "b1");
}

fn vepa_alone(w: &mut World) {
    pair(w, "vepa", "v0", "v1");
}

fn private_alone(w: &mut World) {
    pair(w, "private", "p0", "p1");
}

const MIXED: &[&str] = &["b0", "b1", "v0", "v1", "p0", "p1", "s0"];

fn add_mixed(w: &mut World) {
    for d in MIXED {
        add(w, d, super::compare::mode_of(d), &[]);
    }
}

fn mixed_modes(w: &mut World) {
    add_mixed(w);
    w.checkpoint("created");
    probe_all(w, MIXED);
    // From the wire with a macvlan's own source MAC (what a reflecting switch returns).
    w.step("from the wire with macvlan sources");
    for d in MIXED {
        w.send(
            &format!("broadcast from {d}'s MAC"),
            "ext",
            eth(BCAST, mac(d)),
        );
        w.send(&format!("G1 from {d}'s MAC"), "ext", eth(G1, mac(d)));
        w.send(
            &format!("unicast to p1 from {d}'s MAC"),
            "ext",
            eth(mac("p1"), mac(d)),
        );
    }
    w.end();
    join(w, "v1", G1);
    join(w, "p1", G1);
    probe(w, "ext", MIXED);
    probe(w, "b0", MIXED);
    probe(w, "v0", MIXED);
    probe(w, "p0", MIXED);
}

/// The far side becomes a Linux bridge with ext0 as a hairpin port: what goes out comes back.
fn hairpin(w: &mut World) {
    w.sh(
        "x",
        &[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    );
    w.sh(
        "x",
        &["ip", "link", "set", "br0", "address", "02:ee:00:00:00:bb"],
    );
    w.sh("x", &["ip", "link", "set", "ext0", "master", "br0"]);
    w.sh(
        "x",
        &["bridge", "link", "set", "dev", "ext0", "hairpin", "on"],
    );
    w.sh("x", &["ip", "link", "set", "br0", "up"]);
    // The port starts forwarding at once (no STP); the lower sees its peer's change.
    w.settle();
}

fn hairpin_reflection(w: &mut World) {
    add_mixed(w);
    hairpin(w);
    w.checkpoint("hairpin");
    // Teach the bridge where everyone is (then unicast is hairpinned, not flooded).
    w.step("learn");
    for d in MIXED {
        w.send(&format!("{d} hello"), d, eth("02:ee:00:00:00:bb", mac(d)));
    }
    w.end();
    for d in MIXED {
        probe(w, d, MIXED);
    }
    join(w, "v1", G1);
    probe(w, "v0", MIXED);
    probe(w, "p0", MIXED);
    probe(w, "b0", MIXED);
}

fn source_mode(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    add(w, "s0", "source", &[]);
    w.ctl(&[
        "link", "set", "s0", "type", "macvlan", "macaddr", "add", EXT_MAC,
    ]);
    let from_ext = |w: &mut World, label: &str| {
        w.step(label);
        for (l, dst) in [
            ("b0", mac("b0")),
            ("s0", mac("s0")),
            ("unknown", UNK),
            ("lower", LOWER_MAC),
            ("broadcast", BCAST),
            ("G1", G1),
        ] {
            w.send(&format!("ext->{l}"), "ext", eth(dst, EXT_MAC));
            w.send(&format!("ext2->{l}"), "ext", eth(dst, EXT2));
        }
        w.end();
    };
    from_ext(w, "listed ext");
    probe(w, "b0", &["v0", "s0"]);
    probe(w, "s0", &["b0", "v0"]);
    w.ctl(&[
        "link", "set", "s0", "type", "macvlan", "macaddr", "add", EXT2,
    ]);
    w.ctl(&[
        "link", "set", "s0", "type", "macvlan", "macaddr", "add", EXT2,
    ]);
    w.ctl(&[
        "link", "set", "s0", "type", "macvlan", "macaddr", "del", EXT_MAC,
    ]);
    w.ctl(&[
        "link",
        "set",
        "s0",
        "type",
        "macvlan",
        "macaddr",
        "del",
        "02:ee:00:00:00:77",
    ]);
    from_ext(w, "listed ext2 only");
    w.ctl(&[
        "link",
        "set",
        "s0",
        "type",
        "macvlan",
        "macaddr",
        "set",
        EXT_MAC,
        EXT2,
        "02:ee:00:00:00:03",
    ]);
    w.ctl(&["link", "set", "s0", "type", "macvlan", "macaddr", "flush"]);
    from_ext(w, "flushed");
    w.ctl(&[
        "link", "set", "s0", "type", "macvlan", "macaddr", "set", EXT_MAC,
    ]);
    // A second source-mode macvlan with nodst listening to the same MAC.
    add(w, "s1", "source", &["nodst"]);
    w.ctl(&[
        "link", "set", "s1", "type", "macvlan", "macaddr", "add", EXT_MAC,
    ]);
    from_ext(w, "nodst s1");
    w.ctl(&["link", "set", "s1", "down"]);
    from_ext(w, "nodst s1 down");
    w.ctl(&["link", "set", "s1", "type", "macvlan", "flag", "null"]);
    w.ctl(&["link", "set", "s1", "up"]);
    from_ext(w, "s1 without nodst");
    w.ctl(&[
        "link",
        "set",
        "s1",
        "type",
        "macvlan",
        "macaddr",
        "add",
        "01:00:5e:00:00:09",
    ]);
    w.ctl(&[
        "link", "set", "v0", "type", "macvlan", "macaddr", "add", EXT2,
    ]);
    // Leaving source mode flushes the list.
    w.ctl(&["link", "set", "s0", "type", "macvlan", "mode", "vepa"]);
    from_ext(w, "s0 now vepa");
    w.ctl(&["link", "set", "s0", "type", "macvlan", "mode", "source"]);
    w.ctl(&["link", "del", "s1"]);
    w.checkpoint("end");
}

fn passthru_common(w: &mut World, extra: &[&str]) {
    add(w, "pt0", "passthru", extra);
    w.checkpoint("created");
    let from_ext = |w: &mut World, label: &str| {
        w.step(label);
        for (l, dst) in [
            ("own", LOWER_MAC),
            ("unknown", UNK),
            ("new", NEW_MAC),
            ("broadcast", BCAST),
            ("G1", G1),
            ("G2", G2),
        ] {
            w.send(&format!("ext->{l}"), "ext", eth(dst, EXT_MAC));
        }
        w.end();
    };
    from_ext(w, "up");
    probe(w, "pt0", &[]);
    add(w, "b0", "bridge", &[]);
    w.ctl(&["link", "set", "pt0", "type", "macvlan", "mode", "bridge"]);
    w.ctl(&["link", "set", "pt0", "down"]);
    from_ext(w, "down");
    w.ctl(&["link", "set", "pt0", "up"]);
    join(w, "pt0", G1);
    w.checkpoint("G1 joined");
    w.ctl(&["link", "set", "pt0", "address", NEW_MAC]);
    w.checkpoint("address changed");
    from_ext(w, "new address");
    w.ctl(&["link", "set", "pt0", "type", "macvlan", "flag", "nopromisc"]);
    w.checkpoint("flag nopromisc");
    w.ctl(&["link", "set", "pt0", "type", "macvlan", "flag", "null"]);
    w.checkpoint("flag null");
    // The passthru macvlan's own rx flags: promisc stays on pt0, allmulti reaches the lower.
    w.sh("pt0", &["ip", "link", "set", "pt0", "allmulticast", "on"]);
    w.settle();
    w.checkpoint("pt0 allmulticast");
    from_ext(w, "pt0 allmulticast");
    w.sh("pt0", &["ip", "link", "set", "pt0", "promisc", "on"]);
    w.settle();
    w.checkpoint("pt0 promisc");
    // A MAC set on the lower directly is followed, and is what deletion leaves.
    w.sh(
        "h",
        &["ip", "link", "set", "low0", "address", "02:aa:00:00:00:77"],
    );
    w.settle();
    w.checkpoint("lower MAC set directly");
    w.ctl(&["link", "del", "pt0"]);
    w.checkpoint("deleted");
}

fn passthru(w: &mut World) {
    passthru_common(w, &[]);
}

fn passthru_nopromisc(w: &mut World) {
    passthru_common(w, &["nopromisc"]);
}

fn bcqueuelen_zero(w: &mut World) {
    for (d, m) in [("b0", "bridge"), ("b1", "bridge"), ("v0", "vepa")] {
        add(w, d, m, &["bcqueuelen", "0"]);
    }
    w.checkpoint("created");
    let burst = |w: &mut World, label: &str, dst: &str| {
        w.step(label);
        for i in 0..20 {
            w.send(&format!("burst {i}"), "ext", eth(dst, EXT_MAC));
        }
        w.end();
    };
    burst(w, "broadcast burst", BCAST);
    probe(w, "b0", &["b1", "v0"]);
    join(w, "b0", G1);
    burst(w, "G1 burst (joined by b0)", G1);
    w.ctl(&["link", "set", "v0", "type", "macvlan", "bcqueuelen", "100"]);
    burst(w, "broadcast burst, usedbcqueuelen 100", BCAST);
    w.ctl(&["link", "set", "v0", "type", "macvlan", "bcqueuelen", "0"]);
    burst(w, "broadcast burst, back to 0", BCAST);
    // usedbcqueuelen counts down macvlans too.
    add_opts(w, "b2", "bridge", false, &[], &["bcqueuelen", "5000"]);
    burst(w, "broadcast burst, a down macvlan asks for 5000", BCAST);
    w.ctl(&["link", "del", "b2"]);
    burst(w, "broadcast burst, it is gone", BCAST);
}

fn mtu_limits(w: &mut World) {
    w.sh("h", &["ip", "link", "set", "low0", "mtu", "9000"]);
    w.sh("x", &["ip", "link", "set", "ext0", "mtu", "9000"]);
    w.settle();
    add(w, "b0", "bridge", &[]);
    add_opts(w, "b1", "bridge", true, &["mtu", "1500"], &[]);
    add_opts(w, "v0", "vepa", true, &["mtu", "1500"], &[]);
    w.checkpoint("created");
    w.step("from ext");
    w.send("3000 to b1", "ext", eth(mac("b1"), EXT_MAC).len(3000));
    w.send("3000 broadcast", "ext", eth(BCAST, EXT_MAC).len(3000));
    w.send("9014 to b0", "ext", eth(mac("b0"), EXT_MAC).len(9014));
    w.send("9015 to b0", "ext", eth(mac("b0"), EXT_MAC).len(9015));
    w.end();
    w.step("from b0 (mtu 9000)");
    w.send("3000 to b1", "b0", eth(mac("b1"), mac("b0")).len(3000));
    w.send("3000 broadcast", "b0", eth(BCAST, mac("b0")).len(3000));
    w.send("3000 to ext", "b0", eth(EXT_MAC, mac("b0")).len(3000));
    w.send("3000 to v0", "b0", eth(mac("v0"), mac("b0")).len(3000));
    w.send("1514 broadcast", "b0", eth(BCAST, mac("b0")).len(1514));
    w.send("1515 broadcast", "b0", eth(BCAST, mac("b0")).len(1515));
    w.end();
    w.step("from b1 (mtu 1500)");
    w.send("1514 to ext", "b1", eth(EXT_MAC, mac("b1")).len(1514));
    w.send("1515 to ext", "b1", eth(EXT_MAC, mac("b1")).len(1515));
    w.send("1514 to b0", "b1", eth(mac("b0"), mac("b1")).len(1514));
    w.end();
    w.ctl(&["link", "set", "b1", "mtu", "9001"]);
    w.ctl(&["link", "set", "b1", "mtu", "67"]);
    w.ctl(&["link", "set", "b1", "mtu", "9000"]);
    w.ctl(&["link", "set", "v0", "mtu", "68"]);
    add_opts(w, "b2", "bridge", true, &["mtu", "9001"], &[]);
    w.checkpoint("end");
}

fn mac_conflicts(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add_opts(w, "v0", "vepa", false, &[], &[]);
    w.ctl(&["link", "set", "b1", "address", mac("b0")]);
    w.ctl(&["link", "set", "b1", "address", LOWER_MAC]);
    w.ctl(&["link", "set", "b1", "address", "01:00:5e:00:00:01"]);
    w.ctl(&["link", "set", "b1", "address", "00:00:00:00:00:00"]);
    w.ctl(&["link", "set", "b1", "address", mac("b1")]);
    w.ctl(&["link", "set", "v0", "address", mac("b0")]);
    w.ctl(&["link", "set", "v0", "up"]);
    w.ctl(&["link", "set", "b0", "down"]);
    w.ctl(&["link", "set", "v0", "up"]);
    w.ctl(&["link", "set", "b0", "up"]);
    w.ctl(&["link", "set", "b1", "address", NEW_MAC]);
    w.checkpoint("after changes");
    w.step("after changes");
    for (l, dst) in [
        ("old b0 MAC (now v0)", mac("b0")),
        ("new b1 MAC", NEW_MAC),
        ("old b1 MAC", mac("b1")),
    ] {
        w.send(l, "ext", eth(dst, EXT_MAC));
        w.send(&format!("{l} from b1"), "b1", eth(dst, NEW_MAC));
    }
    w.end();
    // Creating up with a MAC in use fails as a whole.
    w.ctl(&[
        "link", "add", "link", "low0", "name", "e0", "netns", "NS:e0", "address", NEW_MAC, "up",
        "type", "macvlan",
    ]);
    w.ctl(&[
        "link", "add", "link", "low0", "name", "e0", "netns", "NS:e0", "address", LOWER_MAC, "up",
        "type", "macvlan",
    ]);
    w.ctl(&[
        "link", "add", "link", "low0", "name", "e0", "netns", "NS:e0", "address", LOWER_MAC,
        "type", "macvlan",
    ]);
    w.ctl(&["link", "set", "e0", "up"]);
    w.ctl(&["link", "set", "e0", "address", mac("e0")]);
    w.ctl(&["link", "set", "e0", "up"]);
    w.checkpoint("end");
}

fn devices_down(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    join(w, "b1", G1);
    w.ctl(&["link", "set", "b1", "down"]);
    probe(w, "ext", &["b0", "b1", "v0"]);
    probe(w, "b0", &["b1", "v0"]);
    probe(w, "b1", &["b0"]);
    w.ctl(&["link", "set", "b1", "up"]);
    // The same through the netdev itself (plain iproute2 in the macvlan's namespace).
    w.sh("v0", &["ip", "link", "set", "v0", "down"]);
    w.settle();
    w.checkpoint("v0 down (ip)");
    probe(w, "ext", &["b0", "b1", "v0"]);
    probe(w, "b0", &["b1", "v0"]);
    w.sh("v0", &["ip", "link", "set", "v0", "up"]);
    w.settle();
    w.checkpoint("v0 up (ip)");
    probe(w, "ext", &["b0", "b1", "v0"]);
}

fn lower_down_up(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    // Once the lower is down its own stack leaves 224.0.0.1: what stays on its list is what
    // the macvlans synced (daemon: polled).
    w.wait_mc_poll();
    w.sh("h", &["ip", "link", "set", "low0", "down"]);
    w.settle();
    w.checkpoint("lower down");
    probe(w, "ext", &["b0", "v0"]);
    probe(w, "b0", &["b1", "v0"]);
    w.sh("h", &["ip", "link", "set", "low0", "up"]);
    w.settle();
    w.checkpoint("lower up");
    probe(w, "ext", &["b0", "v0"]);
    probe(w, "b0", &["b1", "v0"]);
    // Far end down: the lower loses its carrier.
    w.sh("x", &["ip", "link", "set", "ext0", "down"]);
    w.settle();
    w.checkpoint("peer down");
    probe(w, "b0", &["b1", "v0"]);
    w.sh("x", &["ip", "link", "set", "ext0", "up"]);
    w.settle();
    w.checkpoint("peer up");
}

fn lower_mtu(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add_opts(w, "b1", "bridge", true, &["mtu", "1400"], &[]);
    add_opts(w, "v0", "vepa", false, &[], &[]);
    w.sh("h", &["ip", "link", "set", "low0", "mtu", "1300"]);
    w.settle();
    w.checkpoint("lower 1300");
    w.sh("h", &["ip", "link", "set", "low0", "mtu", "1500"]);
    w.settle();
    w.checkpoint("lower 1500");
    w.step("b0 at lower's old mtu");
    w.send("1314 to ext", "b0", eth(EXT_MAC, mac("b0")).len(1314));
    w.send("1315 to ext", "b0", eth(EXT_MAC, mac("b0")).len(1315));
    w.end();
    w.ctl(&["link", "set", "b0", "mtu", "1500"]);
    w.ctl(&["link", "set", "b1", "mtu", "1501"]);
    w.sh("h", &["ip", "link", "set", "low0", "mtu", "100"]);
    w.settle();
    w.checkpoint("lower 100");
}

fn lower_deleted(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    w.sh("h", &["ip", "link", "del", "low0"]);
    w.settle();
    w.checkpoint("lower deleted");
    w.ctl(&["link", "show", "b0"]);
    w.ctl(&["link", "set", "b0", "up"]);
    w.ctl(&[
        "link", "add", "link", "low0", "name", "b1", "netns", "NS:b1", "type", "macvlan",
    ]);
}

fn vlan_tagged(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    join(w, "v0", G1);
    w.step("tagged from ext");
    w.send(
        "vid 10 to b0 len 60",
        "ext",
        eth(mac("b0"), EXT_MAC).vlan(10),
    );
    w.send(
        "vid 10 to b0 len 100",
        "ext",
        eth(mac("b0"), EXT_MAC).vlan(10).len(100),
    );
    w.send("vid 0 to v0", "ext", eth(mac("v0"), EXT_MAC).vlan(0));
    w.send(
        "vid 10 broadcast",
        "ext",
        eth(BCAST, EXT_MAC).vlan(10).len(100),
    );
    w.send("vid 10 G1", "ext", eth(G1, EXT_MAC).vlan(10));
    w.send("vid 10 unknown", "ext", eth(UNK, EXT_MAC).vlan(10));
    w.send(
        "vid 4095 to b1 prio 7",
        "ext",
        eth(mac("b1"), EXT_MAC).vlan(0xefff),
    );
    w.send(
        "QinQ 20/10 to b0",
        "ext",
        eth(mac("b0"), EXT_MAC).svlan(20).vlan(10),
    );
    w.send(
        "QinQ 20/10 broadcast",
        "ext",
        eth(BCAST, EXT_MAC).svlan(20).vlan(10),
    );
    w.send("802.1ad 20 G1", "ext", eth(G1, EXT_MAC).svlan(20));
    w.end();
    w.step("tagged from b0");
    w.send("vid 10 to b1", "b0", eth(mac("b1"), mac("b0")).vlan(10));
    w.send("vid 10 to v0", "b0", eth(mac("v0"), mac("b0")).vlan(10));
    w.send("vid 10 to ext", "b0", eth(EXT_MAC, mac("b0")).vlan(10));
    w.send("vid 10 broadcast", "b0", eth(BCAST, mac("b0")).vlan(10));
    w.send(
        "vid 10 1518 to ext",
        "b0",
        eth(EXT_MAC, mac("b0")).vlan(10).len(1514),
    );
    w.send(
        "QinQ to b1",
        "b0",
        eth(mac("b1"), mac("b0")).svlan(20).vlan(10),
    );
    w.send(
        "QinQ broadcast",
        "b0",
        eth(BCAST, mac("b0")).svlan(20).vlan(10),
    );
    w.end();
}

fn fragments(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    add(w, "p0", "private", &[]);
    join(w, "v0", G1);
    let bc = [255, 255, 255, 255];
    w.step("broadcast datagram in order");
    w.send("frag 1/2", "ext", frag(BCAST, EXT_MAC, bc, 101, false));
    w.send("frag 2/2", "ext", frag(BCAST, EXT_MAC, bc, 101, true));
    w.end();
    w.step("broadcast datagram reversed");
    w.send("frag 2/2", "ext", frag(BCAST, EXT_MAC, bc, 102, true));
    w.send("frag 1/2", "ext", frag(BCAST, EXT_MAC, bc, 102, false));
    w.end();
    w.step("broadcast datagram, first fragment only");
    w.send("frag 1/2", "ext", frag(BCAST, EXT_MAC, bc, 103, false));
    w.end();
    w.step("multicast datagram");
    w.send(
        "frag 1/2",
        "ext",
        frag(G1, EXT_MAC, [224, 1, 2, 3], 104, false),
    );
    w.send(
        "frag 2/2",
        "ext",
        frag(G1, EXT_MAC, [224, 1, 2, 3], 104, true),
    );
    w.end();
    w.step("unicast datagram to b0");
    w.send(
        "frag 1/2",
        "ext",
        frag(mac("b0"), EXT_MAC, [10, 99, 0, 2], 105, false),
    );
    w.send(
        "frag 2/2",
        "ext",
        frag(mac("b0"), EXT_MAC, [10, 99, 0, 2], 105, true),
    );
    w.end();
    w.step("broadcast datagram from b0");
    w.send("frag 1/2", "b0", frag(BCAST, mac("b0"), bc, 106, false));
    w.send("frag 2/2", "b0", frag(BCAST, mac("b0"), bc, 106, true));
    w.end();
    w.step("broadcast datagram with p0's source MAC (reflection path)");
    w.send("frag 1/2", "ext", frag(BCAST, mac("p0"), bc, 107, false));
    w.send("frag 2/2", "ext", frag(BCAST, mac("p0"), bc, 107, true));
    w.end();
}

fn pause_frames(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    add(w, "p0", "private", &[]);
    add(w, "s0", "source", &[]);
    w.ctl(&[
        "link", "set", "s0", "type", "macvlan", "macaddr", "add", EXT2,
    ]);
    w.sh("b0", &["ip", "link", "set", "b0", "promisc", "on"]);
    w.settle();
    w.step("pause");
    w.send(
        "PAUSE from ext",
        "ext",
        eth(PAUSE_DST, EXT_MAC).ethertype(ETHERTYPE_PAUSE),
    );
    w.send(
        "PAUSE with p0's MAC",
        "ext",
        eth(PAUSE_DST, mac("p0")).ethertype(ETHERTYPE_PAUSE),
    );
    w.send(
        "PAUSE from listed source",
        "ext",
        eth(PAUSE_DST, EXT2).ethertype(ETHERTYPE_PAUSE),
    );
    w.send(
        "PAUSE to broadcast",
        "ext",
        eth(BCAST, EXT_MAC).ethertype(ETHERTYPE_PAUSE),
    );
    w.send(
        "0x8808 unicast to b0",
        "ext",
        eth(mac("b0"), EXT_MAC).ethertype(ETHERTYPE_PAUSE),
    );
    w.send(
        "0x88b5 to the PAUSE address",
        "ext",
        eth(PAUSE_DST, EXT_MAC),
    );
    w.send(
        "tagged PAUSE",
        "ext",
        eth(PAUSE_DST, EXT_MAC).ethertype(ETHERTYPE_PAUSE).vlan(5),
    );
    w.end();
    w.step("pause from b0");
    w.send(
        "PAUSE",
        "b0",
        eth(PAUSE_DST, mac("b0")).ethertype(ETHERTYPE_PAUSE),
    );
    w.end();
}

fn runt_oversize(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    w.step("runts from ext");
    w.send("22 to b0", "ext", eth(mac("b0"), EXT_MAC).len(22));
    w.send("22 broadcast", "ext", eth(BCAST, EXT_MAC).len(22));
    w.send("22 unknown", "ext", eth(UNK, EXT_MAC).len(22));
    w.send(
        "26 tagged to b0",
        "ext",
        eth(mac("b0"), EXT_MAC).len(22).vlan(3),
    );
    w.end();
    w.step("runts from b0");
    w.send("22 to b1", "b0", eth(mac("b1"), mac("b0")).len(22));
    w.send("22 broadcast", "b0", eth(BCAST, mac("b0")).len(22));
    w.send("22 to ext", "b0", eth(EXT_MAC, mac("b0")).len(22));
    w.end();
    w.sh("x", &["ip", "link", "set", "ext0", "mtu", "9000"]);
    w.step("oversized from ext (lower mtu 1500)");
    w.send("1518 to b0", "ext", eth(mac("b0"), EXT_MAC).len(1518));
    w.send("1519 to b0", "ext", eth(mac("b0"), EXT_MAC).len(1519));
    w.send("1518 broadcast", "ext", eth(BCAST, EXT_MAC).len(1518));
    w.send("4000 to b0", "ext", eth(mac("b0"), EXT_MAC).len(4000));
    w.end();
    w.step("oversized from b0");
    w.send("1514 to ext", "b0", eth(EXT_MAC, mac("b0")).len(1514));
    w.send("1515 to ext", "b0", eth(EXT_MAC, mac("b0")).len(1515));
    w.send("1515 to b1", "b0", eth(mac("b1"), mac("b0")).len(1515));
    w.end();
}

/// Truncated VLAN headers, 802.3 length fields that disagree with the frame, all-zero and
/// multicast source MACs, a sibling's MAC spoofed from the wire: whatever the kernel does
/// with each (deliver, drop, count), umacvlan must do too.
fn bad_headers(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    const ZERO: &str = "00:00:00:00:00:00";
    const MC_SRC: &str = "01:00:5e:00:00:01";
    w.step("truncated and odd headers from ext");
    for n in [14, 15, 16, 17] {
        w.send(
            &format!("{n}-byte 8100 broadcast"),
            "ext",
            eth(BCAST, EXT_MAC).ethertype(0x8100).cut(n),
        );
        w.send(
            &format!("{n}-byte 8100 to b0"),
            "ext",
            eth(mac("b0"), EXT_MAC).ethertype(0x8100).cut(n),
        );
    }
    w.send(
        "18-byte tagged to b0, nothing after the tag",
        "ext",
        eth(mac("b0"), EXT_MAC).vlan(5).cut(18),
    );
    w.send(
        "802.3 length 1500 in 60 bytes to b0",
        "ext",
        eth(mac("b0"), EXT_MAC).ethertype(1500),
    );
    w.send(
        "802.3 length 16 in 60 bytes broadcast",
        "ext",
        eth(BCAST, EXT_MAC).ethertype(16),
    );
    w.end();
    w.step("bad source MACs from ext");
    w.send("zero source to b0", "ext", eth(mac("b0"), ZERO));
    w.send("zero source broadcast", "ext", eth(BCAST, ZERO));
    w.send("multicast source to b0", "ext", eth(mac("b0"), MC_SRC));
    w.send("multicast source broadcast", "ext", eth(BCAST, MC_SRC));
    w.send("b1's MAC spoofed, to b0", "ext", eth(mac("b0"), mac("b1")));
    w.send("b1's MAC spoofed, broadcast", "ext", eth(BCAST, mac("b1")));
    w.send("v0's MAC spoofed, broadcast", "ext", eth(BCAST, mac("v0")));
    w.end();
    w.step("bad headers and sources from b0");
    w.send(
        "16-byte 8100 broadcast",
        "b0",
        eth(BCAST, mac("b0")).ethertype(0x8100).cut(16),
    );
    w.send(
        "16-byte 8100 to b1",
        "b0",
        eth(mac("b1"), mac("b0")).ethertype(0x8100).cut(16),
    );
    w.send("zero source to b1", "b0", eth(mac("b1"), ZERO));
    w.send("multicast source broadcast", "b0", eth(BCAST, MC_SRC));
    w.send("b1's MAC as source, broadcast", "b0", eth(BCAST, mac("b1")));
    w.end();
}

fn control_errors(w: &mut World) {
    let ns = "NS:e0";
    let base = ["link", "add", "link", "low0", "name", "e0", "netns", ns];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<Vec<String>> = vec![
        vec![
            "link", "add", "link", "nosuch", "name", "e0", "netns", ns, "type", "macvlan",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        with(&["type", "macvlan", "mode", "bogus"]),
        with(&["mtu", "1501", "address", mac("e0"), "type", "macvlan"]),
        with(&["mtu", "67", "address", mac("e0"), "type", "macvlan"]),
        with(&["address", "01:00:00:00:00:01", "type", "macvlan"]),
        with(&["address", "00:00:00:00:00:00", "type", "macvlan"]),
        with(&[
            "address",
            mac("e0"),
            "type",
            "macvlan",
            "mode",
            "bridge",
            "macaddr",
            "add",
            EXT2,
        ]),
        with(&[
            "address",
            mac("e0"),
            "type",
            "macvlan",
            "mode",
            "source",
            "macaddr",
            "add",
            "01:00:00:00:00:01",
        ]),
        with(&[
            "address",
            mac("e0"),
            "type",
            "macvlan",
            "mode",
            "vepa",
            "nopromisc",
        ]),
        with(&[
            "address",
            mac("e0"),
            "type",
            "macvlan",
            "mode",
            "source",
            "macaddr",
            "set",
            EXT_MAC,
            EXT2,
        ]),
    ];
    for c in &cases {
        let v: Vec<&str> = c.iter().map(String::as_str).collect();
        w.ctl(&v);
        // Whatever got created goes again (the kernel and the daemon must agree on that too).
        w.ctl(&["link", "del", "e0"]);
    }
    w.ctl(
        &with(&["address", mac("e0"), "type", "macvlan", "mode", "vepa"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    w.ctl(
        &with(&["address", mac("e0"), "type", "macvlan", "mode", "vepa"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    w.ctl(&[
        "link",
        "add",
        "link",
        "low0",
        "name",
        "e1",
        "netns",
        "NS:e1",
        "address",
        mac("e0"),
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    w.ctl(&["link", "set", "e0", "up"]);
    w.ctl(&["link", "set", "e1", "up"]);
    w.ctl(&[
        "link", "add", "link", "low0", "name", "pt0", "netns", "NS:pt0", "type", "macvlan", "mode",
        "passthru",
    ]);
    w.ctl(&["link", "set", "e0", "type", "macvlan", "mode", "passthru"]);
    w.ctl(&[
        "link", "set", "e0", "type", "macvlan", "macaddr", "add", EXT2,
    ]);
    w.ctl(&[
        "link", "set", "e0", "type", "macvlan", "mode", "source", "macaddr", "add", EXT2,
    ]);
    w.ctl(&[
        "link",
        "set",
        "e0",
        "type",
        "macvlan",
        "macaddr",
        "add",
        "01:00:00:00:00:01",
    ]);
    w.ctl(&["link", "set", "e0", "type", "macvlan", "bcqueuelen", "5"]);
    w.ctl(&[
        "link",
        "set",
        "e1",
        "type",
        "macvlan",
        "bcqueuelen",
        "4000000000",
    ]);
    w.ctl(&["link", "set", "e1", "type", "macvlan", "nodst"]);
    w.ctl(&[
        "link", "set", "e1", "type", "macvlan", "mode", "private", "nodst",
    ]);
    w.ctl(&["link", "set", "e0", "mtu", "9000"]);
    w.ctl(&["link", "set", "e0", "mtu", "1000"]);
    w.ctl(&["link", "set", "e0", "type", "macvlan", "mode", "vepa"]);
    // A changelink that fails half-way (the kernel sets the mode, then refuses macaddr).
    w.ctl(&[
        "link", "set", "e0", "type", "macvlan", "mode", "source", "macaddr", "add", EXT2,
    ]);
    w.ctl(&[
        "link", "set", "e0", "type", "macvlan", "mode", "vepa", "macaddr", "add", EXT_MAC,
    ]);
    // Converge again (umacvlan refused the whole request).
    w.ctl(&["link", "set", "e0", "type", "macvlan", "mode", "vepa"]);
    w.ctl(&["link", "del", "e1"]);
    w.ctl(&["link", "del", "e1"]);
    w.ctl(&["link", "set", "e1", "up"]);
    w.checkpoint("end");
    w.ctl(&["link", "del", "e0"]);
    w.ctl(
        &with(&["type", "macvlan", "mode", "passthru"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    w.ctl(&[
        "link",
        "add",
        "link",
        "low0",
        "name",
        "e1",
        "netns",
        "NS:e1",
        "address",
        mac("e1"),
        "type",
        "macvlan",
    ]);
    w.checkpoint("passthru");
}

fn promisc_allmulti(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    w.sh("b1", &["ip", "link", "set", "b1", "promisc", "on"]);
    w.settle();
    w.checkpoint("b1 promisc");
    probe(w, "ext", &["b0", "b1", "v0"]);
    probe(w, "b0", &["b1", "v0"]);
    w.sh("b1", &["ip", "link", "set", "b1", "promisc", "off"]);
    w.sh("v0", &["ip", "link", "set", "v0", "allmulticast", "on"]);
    w.settle();
    w.checkpoint("v0 allmulti");
    probe(w, "ext", &["b0", "b1", "v0"]);
    probe(w, "b0", &["b1", "v0"]);
    w.sh("v0", &["ip", "link", "set", "v0", "allmulticast", "off"]);
    w.settle();
    w.checkpoint("all off");
}

/// The macvlans' own IPv4 stacks: ARP and ICMP through each path.
fn ip_stack(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    add(w, "p0", "private", &[]);
    w.sh("x", &["ip", "addr", "add", "10.9.0.1/24", "dev", "ext0"]);
    for (d, a) in [
        ("b0", "10.9.0.2/24"),
        ("b1", "10.9.0.3/24"),
        ("v0", "10.9.0.4/24"),
        ("p0", "10.9.0.5/24"),
    ] {
        w.sh(d, &["ip", "addr", "add", a, "dev", d]);
    }
    // Three echoes 0.2 s apart: exit 0 when any is answered, so a first ARP exchange that
    // is still under way does not decide.
    let ping = |w: &mut World, from: &str, to: &str| {
        w.sh_status(from, &["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", to]);
    };
    ping(w, "x", "10.9.0.2");
    ping(w, "x", "10.9.0.5");
    ping(w, "b0", "10.9.0.3");
    ping(w, "b0", "10.9.0.1");
    ping(w, "p0", "10.9.0.1");
    // No hairpin on the far side: VEPA and private cannot reach their siblings.
    ping(w, "v0", "10.9.0.2");
    ping(w, "p0", "10.9.0.2");
    hairpin(w);
    // With it they can (the far side's bridge needs ext0 as a port without an address).
    ping(w, "v0", "10.9.0.2");
    ping(w, "p0", "10.9.0.4");
}

/// Bridge-local unicast re-enters the port's receive path, source mode included.
fn source_bridge_path(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    add(w, "s0", "source", &[]);
    w.ctl(&[
        "link",
        "set",
        "s0",
        "type",
        "macvlan",
        "macaddr",
        "add",
        mac("b0"),
    ]);
    probe(w, "b0", &["b1", "s0"]);
    add_opts(w, "s1", "source", false, &[], &["nodst"]);
    w.ctl(&[
        "link",
        "set",
        "s1",
        "type",
        "macvlan",
        "macaddr",
        "add",
        mac("b0"),
    ]);
    probe(w, "b0", &["b1", "s0"]);
    probe(w, "b1", &["b0"]);
}

/// A group joined while the daemon answers requests all the time (a monitoring agent
/// reading counters every 100 ms): the kernel syncs it at once.
fn mc_poll_under_load(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "b1", "bridge", &[]);
    probe(w, "ext", &["b0", "b1"]);
    w.sh("b1", &["ip", "maddr", "add", G1, "dev", "b1"]);
    w.keep_asking(2.0);
    probe(w, "ext", &["b0", "b1"]);
    probe(w, "b0", &["b1"]);
}

/// What the lower's own host sends on it — through its IP stack (an ARP-less unicast to a
/// macvlan's MAC via a static neighbour, and a broadcast) and from a packet socket bound to
/// the lower — never reaches a macvlan directly: the kernel macvlan sees only the lower's
/// receive path. With a hairpin switch on the far side, the reflected copy does arrive
/// (once).
fn lower_host_sends_common(w: &mut World, with_hairpin: bool) {
    for d in ["b0", "v0", "p0"] {
        add(w, d, super::compare::mode_of(d), &[]);
    }
    if with_hairpin {
        hairpin(w);
    }
    w.sh("h", &["ip", "addr", "add", "10.9.0.1/24", "dev", "low0"]);
    for (ip, d) in [("10.9.0.2", "b0"), ("10.9.0.3", "v0")] {
        w.sh(
            "h",
            &[
                "ip",
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac(d),
                "dev",
                "low0",
                "nud",
                "permanent",
            ],
        );
    }
    w.checkpoint("lower has an address");
    w.step("the lower's host sends");
    for d in ["b0", "v0", "p0"] {
        w.send(&format!("low->{d}"), "low", eth(mac(d), LOWER_MAC));
    }
    w.send("low->broadcast", "low", eth(BCAST, LOWER_MAC));
    w.send("low->G1", "low", eth(G1, LOWER_MAC));
    w.send("low->unknown", "low", eth(UNK, LOWER_MAC));
    w.send_udp("udp->b0", "low", [10, 9, 0, 1], [10, 9, 0, 2], mac("b0"));
    w.send_udp("udp->v0", "low", [10, 9, 0, 1], [10, 9, 0, 3], mac("v0"));
    w.send_udp(
        "udp->broadcast",
        "low",
        [10, 9, 0, 1],
        [10, 9, 0, 255],
        BCAST,
    );
    w.end();
}

fn lower_host_sends(w: &mut World) {
    lower_host_sends_common(w, false);
}

fn lower_host_sends_hairpin(w: &mut World) {
    lower_host_sends_common(w, true);
}

/// Each promiscuous or allmulti macvlan holds its own reference on the lower (`ip -d link
/// show` of the lower: `promiscuity 3`, `allmulti 2`), released as each goes down or off.
fn lower_references(w: &mut World) {
    for d in ["b0", "b1", "v0"] {
        add(w, d, super::compare::mode_of(d), &[]);
    }
    for d in ["b0", "b1", "v0"] {
        w.sh(d, &["ip", "link", "set", d, "promisc", "on"]);
    }
    for d in ["b0", "v0"] {
        w.sh(d, &["ip", "link", "set", d, "allmulticast", "on"]);
    }
    w.settle();
    w.checkpoint("three promisc, two allmulti");
    w.sh("b0", &["ip", "link", "set", "b0", "down"]);
    w.settle();
    w.checkpoint("b0 down");
    w.sh("v0", &["ip", "link", "set", "v0", "allmulticast", "off"]);
    w.sh("b1", &["ip", "link", "set", "b1", "promisc", "off"]);
    w.settle();
    w.checkpoint("v0 allmulti off, b1 promisc off");
    w.sh("b0", &["ip", "link", "set", "b0", "up"]);
    w.settle();
    w.checkpoint("b0 up again");
    for d in ["b0", "b1", "v0"] {
        w.sh(
            d,
            &[
                "ip",
                "link",
                "set",
                d,
                "promisc",
                "off",
                "allmulticast",
                "off",
            ],
        );
    }
    w.settle();
    w.checkpoint("all off");
}

/// What plain `ip` shows of each macvlan (operstate, qdisc) and what `link show` reports,
/// in the lower's namespace and in their own: created up or down, brought up with `ip`,
/// the lower down and up again.
fn operstate_and_qdisc(w: &mut World) {
    add(w, "hb0", "bridge", &[]);
    add(w, "b0", "bridge", &[]);
    add_opts(w, "hv0", "vepa", false, &[], &[]);
    add_opts(w, "v0", "vepa", false, &[], &[]);
    w.settle();
    w.checkpoint("created");
    w.sh("hv0", &["ip", "link", "set", "hv0", "up"]);
    w.sh("v0", &["ip", "link", "set", "v0", "up"]);
    w.settle();
    w.checkpoint("brought up with ip");
    w.sh("h", &["ip", "link", "set", "low0", "down"]);
    w.settle();
    w.checkpoint("lower down");
    w.sh("h", &["ip", "link", "set", "low0", "up"]);
    w.settle();
    w.checkpoint("lower up");
    w.sh("b0", &["ip", "link", "set", "b0", "down"]);
    w.settle();
    w.checkpoint("b0 down");
}

/// A macvlan created on a macvlan sits on the real lower (`link` is low0), in the lower's
/// namespace and elsewhere; frames reach it as any sibling's.
fn macvlan_on_macvlan(w: &mut World) {
    add(w, "hb0", "bridge", &[]);
    w.ctl(&[
        "link",
        "add",
        "link",
        "hb0",
        "name",
        "hb1",
        "address",
        "02:bb:00:00:00:a1",
        "up",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    w.ctl(&[
        "link",
        "add",
        "link",
        "hb0",
        "name",
        "b1",
        "netns",
        "NS:b1",
        "address",
        "02:bb:00:00:00:02",
        "up",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    w.settle();
    w.checkpoint("stacked");
    probe(w, "ext", &["hb0", "hb1", "b1"]);
    probe(w, "b1", &["hb0", "hb1"]);
}

/// A passthru macvlan receives multicast from the wire for the groups its own stack joined
/// (IPv4 all-hosts, and 33:33:00:00:00:01) from the moment it is up, and for `ip maddr`
/// groups, with the lower promiscuous and with `nopromisc`.
fn passthru_multicast(w: &mut World) {
    const GROUPS: [&str; 5] = [
        "01:00:5e:00:00:01",
        "33:33:00:00:00:01",
        "01:00:5e:00:00:fb",
        G1,
        G2,
    ];
    for extra in [&[][..], &["nopromisc"][..]] {
        add_opts(w, "pt0", "passthru", false, &[], extra);
        w.sh("pt0", &["ip", "addr", "add", "10.9.0.2/24", "dev", "pt0"]);
        w.checkpoint("created down");
        w.step("pt0 up, traffic to its stack's groups 20 ms later");
        w.sh("pt0", &["ip", "link", "set", "pt0", "up"]);
        w.pause(20);
        for g in GROUPS {
            w.send(&format!("ext->{g}"), "ext", eth(g, EXT_MAC));
        }
        w.end();
        join(w, "pt0", G1);
        w.step("G1 joined");
        for g in GROUPS {
            w.send(&format!("ext->{g}"), "ext", eth(g, EXT_MAC));
        }
        w.end();
        w.ctl(&["link", "del", "pt0"]);
        w.settle();
    }
}

/// Membership changes apply at once: a group frame sent 20 ms after an IP-level join, after
/// a macvlan came up (its stack's all-hosts group) or after a `bcqueuelen` change is
/// delivered as the kernel delivers it (`bclim` too, but the iproute2 6.1 here lacks it). (IGMP reports for link-local groups are off in the
/// macvlans' namespaces, so no report traffic of random timing enters the counters.)
fn joins_then_traffic(w: &mut World) {
    add(w, "b0", "bridge", &[]);
    add(w, "v0", "vepa", &[]);
    add_opts(w, "b1", "bridge", false, &[], &[]);
    for (d, a) in [
        ("b0", "10.9.0.2/24"),
        ("v0", "10.9.0.3/24"),
        ("b1", "10.9.0.4/24"),
    ] {
        w.sh(
            d,
            &["sysctl", "-q", "net.ipv4.igmp_link_local_mcast_reports=0"],
        );
        w.sh(d, &["ip", "addr", "add", a, "dev", d]);
    }
    w.checkpoint("created");
    const MDNS: &str = "01:00:5e:00:00:fb";
    w.step("IPv4 join on b0, traffic 20 ms later");
    w.join_ip("b0", [224, 0, 0, 251], [10, 9, 0, 2]);
    w.pause(20);
    w.send("ext->mdns", "ext", eth(MDNS, EXT_MAC));
    w.send("v0->mdns", "v0", eth(MDNS, mac("v0")));
    w.end();
    w.step("IPv4 join on v0, traffic 20 ms later");
    w.join_ip("v0", [224, 0, 0, 252], [10, 9, 0, 3]);
    w.pause(20);
    w.send("ext->252", "ext", eth("01:00:5e:00:00:fc", EXT_MAC));
    w.send("b0->252", "b0", eth("01:00:5e:00:00:fc", mac("b0")));
    w.end();
    w.step("b1 up, traffic 20 ms later");
    w.sh("b1", &["ip", "link", "set", "b1", "up"]);
    w.pause(20);
    for g in ["01:00:5e:00:00:01", "33:33:00:00:00:01", MDNS] {
        w.send(&format!("ext->{g}"), "ext", eth(g, EXT_MAC));
    }
    w.end();
    // Link-layer joins raise no event: the frame a filter refuses makes the daemon re-read.
    const G: &str = "01:00:5e:01:02:03";
    w.step("ip maddr add on b0 (a group new to the lower), traffic 20 ms later");
    w.sh("b0", &["ip", "maddr", "add", G, "dev", "b0"]);
    w.pause(20);
    w.send("ext->G", "ext", eth(G, EXT_MAC));
    w.end();
    w.step("ip maddr add on v0 (a group the lower has), traffic 20 ms later");
    w.sh("v0", &["ip", "maddr", "add", G, "dev", "v0"]);
    w.pause(20);
    for i in 0..3 {
        w.send(&format!("ext->G {i}"), "ext", eth(G, EXT_MAC));
    }
    w.end();
    w.step("ip maddr add on b1, a bridge sibling sends 20 ms later");
    w.sh(
        "b1",
        &["ip", "maddr", "add", "33:33:00:00:12:34", "dev", "b1"],
    );
    w.pause(20);
    w.send(
        "b0->33:33:00:00:12:34",
        "b0",
        eth("33:33:00:00:12:34", mac("b0")),
    );
    w.send(
        "ext->33:33:00:00:12:34",
        "ext",
        eth("33:33:00:00:12:34", EXT_MAC),
    );
    w.end();
    w.step("ip maddr del on b0, traffic 20 ms later");
    w.sh("b0", &["ip", "maddr", "del", G, "dev", "b0"]);
    w.pause(20);
    w.send("ext->G after del", "ext", eth(G, EXT_MAC));
    w.end();
    w.step("bcqueuelen 0 on b0, traffic 20 ms later");
    w.ctl(&["link", "set", "b0", "type", "macvlan", "bcqueuelen", "0"]);
    w.pause(20);
    for i in 0..5 {
        w.send(&format!("ext->mdns {i}"), "ext", eth(MDNS, EXT_MAC));
    }
    w.end();
}
