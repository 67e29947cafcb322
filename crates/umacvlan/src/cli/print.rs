//! Printers: `link show` in iproute2 6.1's text and JSON layouts (`print_linkinfo`,
//! `print_linktype`, `macvlan_print_opt`, `print_stats64` in ip/ipaddress.c and
//! ip/iplink_macvlan.c) and the `/proc/net/dev` table (`dev_seq_show` in net/core/net-procfs.c).
//!
//! Generic fields a kernel macvlan also prints with `-d` (addrgenmode, numtxqueues,
//! numrxqueues, gso/tso/gro sizes) describe the real TAP netdev, not the macvlan, and are
//! not part of [`LinkInfo`]: they are left out.

use super::json::JsonWriter;
use super::parse::GlobalOpts;
use crate::proto::{LinkInfo, Stats64};
use std::fmt::Write as _;
use umacvlan_core::engine::Mode;

/// `rtnl_link_stats64`, with the fields a macvlan does not fill set to zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Full64 {
    rx_packets: u64,
    tx_packets: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_errors: u64,
    tx_errors: u64,
    rx_dropped: u64,
    tx_dropped: u64,
    multicast: u64,
    collisions: u64,
    rx_length_errors: u64,
    rx_over_errors: u64,
    rx_crc_errors: u64,
    rx_frame_errors: u64,
    rx_fifo_errors: u64,
    rx_missed_errors: u64,
    tx_aborted_errors: u64,
    tx_carrier_errors: u64,
    tx_fifo_errors: u64,
    tx_heartbeat_errors: u64,
    tx_window_errors: u64,
    rx_compressed: u64,
    tx_compressed: u64,
    rx_nohandler: u64,
    rx_otherhost_dropped: u64,
}

impl From<&Stats64> for Full64 {
    fn from(s: &Stats64) -> Self {
        Full64 {
            rx_packets: s.rx_packets,
            tx_packets: s.tx_packets,
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            rx_errors: s.rx_errors,
            tx_errors: s.tx_errors,
            rx_dropped: s.rx_dropped,
            tx_dropped: s.tx_dropped,
            multicast: s.multicast,
            ..Default::default()
        }
    }
}

/// The carrier-change count a macvlan reports (IFLA_CARRIER_CHANGES). The daemon does not
/// report one; a fresh kernel macvlan shows 0.
const CARRIER_CHANGES: u64 = 0;

/// The qdisc a kernel macvlan shows: `noop` until first opened, `noqueue` after, as the
/// daemon reports it; from a daemon that does not, `UP` decides.
fn qdisc(l: &LinkInfo) -> &str {
    if !l.qdisc.is_empty() {
        &l.qdisc
    } else if l.flags.iter().any(|f| f == "UP") {
        "noqueue"
    } else {
        "noop"
    }
}

/// `size_columns`: grow each column to the width of its number (not with `-h`).
fn size_columns(cols: &mut [usize; 8], vals: [u64; 8], human: bool) {
    if human {
        return;
    }
    for (c, v) in cols.iter_mut().zip(vals) {
        let len = v.to_string().len();
        if len > *c {
            *c = len;
        }
    }
}

/// `print_num`: `%*llu ` or, with `-h`, a scaled value with a k/M/G/T/P/E suffix.
fn print_num(out: &mut String, width: usize, count: u64, o: &GlobalOpts) {
    let base: u64 = if o.iec { 1024 } else { 1000 };
    if !o.human || count < base {
        let _ = write!(out, "{count:>width$} ");
        return;
    }
    let prefixes = b"kMGTPE";
    let mut p = 0;
    let mut powi: u64 = 1;
    loop {
        powi *= base;
        if count / base < powi {
            break;
        }
        if p + 1 >= prefixes.len() {
            break;
        }
        p += 1;
    }
    let mut precision = 2usize;
    let mut powj: u64 = 1;
    while precision > 0 {
        powj *= 10;
        if count / powi < powj {
            break;
        }
        precision -= 1;
    }
    let buf = format!(
        "{:.*}{}{}",
        precision,
        count as f64 / powi as f64,
        prefixes[p] as char,
        if o.iec { "i" } else { "" }
    );
    let _ = write!(out, "{buf:>width$} ");
}

/// `print_stats64` in text form (without the leading newline `print_linkinfo` puts before).
/// One `RX:` or `TX:` header line and the numbers under it (`print_stats64`), with the
/// `compressed` column only when non-zero.
fn stats_block(
    out: &mut String,
    label: &str,
    heads: [&str; 6],
    vals: [u64; 6],
    compressed: u64,
    c: &[usize; 8],
    o: &GlobalOpts,
) {
    let _ = write!(
        out,
        "    {label}: {:>w0$} {:>w1$} {:>w2$} {:>w3$} {:>w4$} {:>w5$} {:>w6$}\n    ",
        heads[0],
        heads[1],
        heads[2],
        heads[3],
        heads[4],
        heads[5],
        if compressed != 0 { "compressed" } else { "" },
        w0 = c[0] - 4,
        w1 = c[1],
        w2 = c[2],
        w3 = c[3],
        w4 = c[4],
        w5 = c[5],
        w6 = c[6],
    );
    for (i, v) in vals.into_iter().enumerate() {
        print_num(out, c[i], v, o);
    }
    if compressed != 0 {
        print_num(out, c[6], compressed, o);
    }
}

fn stats_text(out: &mut String, s: &Full64, o: &GlobalOpts) {
    let mut cols: [usize; 8] = [10, 7, 6, 7, 7, 7, 10, 9];
    let h = o.human;
    size_columns(
        &mut cols,
        [
            s.rx_bytes,
            s.rx_packets,
            s.rx_errors,
            s.rx_dropped,
            s.rx_missed_errors,
            s.multicast,
            s.rx_compressed,
            0,
        ],
        h,
    );
    if o.stats > 1 {
        size_columns(
            &mut cols,
            [
                0,
                s.rx_length_errors,
                s.rx_crc_errors,
                s.rx_frame_errors,
                s.rx_fifo_errors,
                s.rx_over_errors,
                s.rx_nohandler,
                s.rx_otherhost_dropped,
            ],
            h,
        );
    }
    size_columns(
        &mut cols,
        [
            s.tx_bytes,
            s.tx_packets,
            s.tx_errors,
            s.tx_dropped,
            s.tx_carrier_errors,
            s.collisions,
            s.tx_compressed,
            0,
        ],
        h,
    );
    if o.stats > 1 {
        size_columns(
            &mut cols,
            [
                0,
                0,
                s.tx_aborted_errors,
                s.tx_fifo_errors,
                s.tx_window_errors,
                s.tx_heartbeat_errors,
                CARRIER_CHANGES,
                0,
            ],
            h,
        );
    }
    let c = cols;
    stats_block(
        out,
        "RX",
        ["bytes", "packets", "errors", "dropped", "missed", "mcast"],
        [
            s.rx_bytes,
            s.rx_packets,
            s.rx_errors,
            s.rx_dropped,
            s.rx_missed_errors,
            s.multicast,
        ],
        s.rx_compressed,
        &c,
        o,
    );
    if o.stats > 1 {
        out.push('\n');
        let _ = writeln!(
            out,
            "    RX errors:{:>w0$} {:>w1$} {:>w2$} {:>w3$} {:>w4$} {:>w5$}{:>w6$}{:>w7$}",
            "",
            "length",
            "crc",
            "frame",
            "fifo",
            "overrun",
            if s.rx_nohandler != 0 {
                " nohandler"
            } else {
                ""
            },
            if s.rx_otherhost_dropped != 0 {
                " otherhost"
            } else {
                ""
            },
            w0 = c[0] - 10,
            w1 = c[1],
            w2 = c[2],
            w3 = c[3],
            w4 = c[4],
            w5 = c[5],
            w6 = if s.rx_nohandler != 0 { c[6] + 1 } else { 0 },
            w7 = if s.rx_otherhost_dropped != 0 {
                c[7] + 1
            } else {
                0
            },
        );
        let _ = write!(out, "{:w$}", "", w = c[0] + 5);
        print_num(out, c[1], s.rx_length_errors, o);
        print_num(out, c[2], s.rx_crc_errors, o);
        print_num(out, c[3], s.rx_frame_errors, o);
        print_num(out, c[4], s.rx_fifo_errors, o);
        print_num(out, c[5], s.rx_over_errors, o);
        if s.rx_nohandler != 0 {
            print_num(out, c[6], s.rx_nohandler, o);
        }
        if s.rx_otherhost_dropped != 0 {
            print_num(out, c[7], s.rx_otherhost_dropped, o);
        }
    }
    out.push('\n');
    stats_block(
        out,
        "TX",
        [
            "bytes", "packets", "errors", "dropped", "carrier", "collsns",
        ],
        [
            s.tx_bytes,
            s.tx_packets,
            s.tx_errors,
            s.tx_dropped,
            s.tx_carrier_errors,
            s.collisions,
        ],
        s.tx_compressed,
        &c,
        o,
    );
    if o.stats > 1 {
        out.push('\n');
        let _ = writeln!(
            out,
            "    TX errors:{:>w0$} {:>w1$} {:>w2$} {:>w3$} {:>w4$} {:>w5$}",
            "",
            "aborted",
            "fifo",
            "window",
            "heartbt",
            "transns",
            w0 = c[0] - 10,
            w1 = c[1],
            w2 = c[2],
            w3 = c[3],
            w4 = c[4],
            w5 = c[5],
        );
        let _ = write!(out, "{:w$}", "", w = c[0] + 5);
        print_num(out, c[1], s.tx_aborted_errors, o);
        print_num(out, c[2], s.tx_fifo_errors, o);
        print_num(out, c[3], s.tx_window_errors, o);
        print_num(out, c[4], s.tx_heartbeat_errors, o);
        print_num(out, c[5], CARRIER_CHANGES, o);
    }
}

/// `print_stats64` in JSON form.
fn stats_json(w: &mut JsonWriter, s: &Full64, o: &GlobalOpts) {
    w.start_object(Some("stats64"));
    w.start_object(Some("rx"));
    w.raw("bytes", s.rx_bytes);
    w.raw("packets", s.rx_packets);
    w.raw("errors", s.rx_errors);
    w.raw("dropped", s.rx_dropped);
    w.raw("over_errors", s.rx_over_errors);
    w.raw("multicast", s.multicast);
    if s.rx_compressed != 0 {
        w.raw("compressed", s.rx_compressed);
    }
    if o.stats > 1 {
        w.raw("length_errors", s.rx_length_errors);
        w.raw("crc_errors", s.rx_crc_errors);
        w.raw("frame_errors", s.rx_frame_errors);
        w.raw("fifo_errors", s.rx_fifo_errors);
        w.raw("missed_errors", s.rx_missed_errors);
        if s.rx_nohandler != 0 {
            w.raw("nohandler", s.rx_nohandler);
        }
        if s.rx_otherhost_dropped != 0 {
            w.raw("otherhost", s.rx_otherhost_dropped);
        }
    }
    w.end_object();
    w.start_object(Some("tx"));
    w.raw("bytes", s.tx_bytes);
    w.raw("packets", s.tx_packets);
    w.raw("errors", s.tx_errors);
    w.raw("dropped", s.tx_dropped);
    w.raw("carrier_errors", s.tx_carrier_errors);
    w.raw("collisions", s.collisions);
    if s.tx_compressed != 0 {
        w.raw("compressed", s.tx_compressed);
    }
    if o.stats > 1 {
        w.raw("aborted_errors", s.tx_aborted_errors);
        w.raw("fifo_errors", s.tx_fifo_errors);
        w.raw("window_errors", s.tx_window_errors);
        w.raw("heartbeat_errors", s.tx_heartbeat_errors);
        w.raw("carrier_changes", CARRIER_CHANGES);
    }
    w.end_object();
    w.end_object();
}

/// `macvlan_print_opt` in text form (after `"    macvlan "`).
fn macvlan_text(out: &mut String, l: &LinkInfo) {
    let Some(mode) = l.mode else { return };
    let _ = write!(out, "mode {mode} ");
    if l.nopromisc {
        out.push_str("nopromisc ");
    }
    if l.nodst {
        out.push_str("nodst ");
    }
    let _ = write!(
        out,
        "bcqueuelen {} usedbcqueuelen {} ",
        l.bcqueuelen, l.usedbcqueuelen
    );
    if let Some(b) = l.bclim {
        let _ = write!(out, "bclim {b} ");
    }
    // umacvlan's own: the data path, when not the TAP path. (Text only: the JSON stays
    // iproute2's, key for key.)
    if let Some(d) = &l.datapath {
        let _ = write!(out, "datapath {d} ");
    }
    // umacvlan's own, shown only when on (off prints exactly what ip prints).
    if l.hostaccess {
        out.push_str("hostaccess on ");
    }
    if mode != Mode::Source {
        return;
    }
    let _ = write!(out, "remotes ({}) ", l.macaddr_count as i32);
    for m in &l.macaddr_data {
        let _ = write!(out, "{m} ");
    }
}

/// `macvlan_print_opt` in JSON form (inside `info_data`).
fn macvlan_json(w: &mut JsonWriter, l: &LinkInfo) {
    let Some(mode) = l.mode else { return };
    w.string(Some("mode"), mode.as_str());
    if l.nopromisc {
        w.raw("nopromisc", true);
    }
    if l.nodst {
        w.raw("nodst", true);
    }
    w.raw("bcqueuelen", l.bcqueuelen);
    w.raw("usedbcqueuelen", l.usedbcqueuelen);
    if let Some(b) = l.bclim {
        w.raw("bclim", b);
    }
    // umacvlan's own key, present only when on: off is iproute2's JSON, key for key.
    if l.hostaccess {
        w.raw("hostaccess", true);
    }
    if mode != Mode::Source {
        return;
    }
    w.raw("macaddr_count", l.macaddr_count as i32);
    // The kernel sends IFLA_MACVLAN_MACADDR_DATA only when the list is not empty.
    if !l.macaddr_data.is_empty() {
        w.start_array(Some("macaddr_data"));
        for m in &l.macaddr_data {
            w.string(None, &m.to_string());
        }
        w.end_array();
    }
}

/// Whether the macvlan and its lower live in different namespaces (the macvlan was placed in
/// another one, or the lower was moved to another one).
fn lower_elsewhere(l: &LinkInfo) -> bool {
    l.netns != l.lower_netns
}

/// What `link-netns` shows: the lower's namespace when the lower was moved out of the daemon's
/// (as `ip` shows it in the macvlan's namespace), else the macvlan's namespace; nothing when
/// both live in the same one.
fn link_netns(l: &LinkInfo) -> Option<&str> {
    if !lower_elsewhere(l) {
        return None;
    }
    l.lower_netns.as_deref().or(l.netns.as_deref())
}

/// `N: NAME@LOWER: ` — or `NAME@ifN` when the macvlan lives in another namespace than
/// its lower device (as `ip` shows a link whose peer is in another netns).
fn name_and_link(l: &LinkInfo) -> String {
    if lower_elsewhere(l) {
        format!("{}@if{}", l.ifname, l.link_ifindex)
    } else {
        format!("{}@{}", l.ifname, l.link)
    }
}

/// One link in text form, as `print_linkinfo` prints it for `ip link show`.
pub fn link_text(l: &LinkInfo, o: &GlobalOpts) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{}: {}: <{}> mtu {} qdisc {} state {} mode DEFAULT group default qlen 1000",
        l.ifindex,
        name_and_link(l),
        l.flags.join(","),
        l.mtu,
        qdisc(l),
        l.operstate,
    );
    let _ = write!(out, "\n    link/ether {} brd ff:ff:ff:ff:ff:ff", l.address);
    if let Some(ns) = link_netns(l) {
        let _ = write!(out, " link-netns {ns}");
    }
    if o.details {
        let _ = write!(
            out,
            " promiscuity {}  allmulti {} minmtu {} maxmtu {} ",
            l.promiscuity, l.allmulti, l.min_mtu, l.max_mtu
        );
        out.push_str("\n    macvlan ");
        macvlan_text(&mut out, l);
    }
    if o.stats > 0 {
        out.push('\n');
        stats_text(&mut out, &Full64::from(&l.stats), o);
    }
    out.push('\n');
    out
}

fn link_json(w: &mut JsonWriter, l: &LinkInfo, o: &GlobalOpts) {
    w.start_object(None);
    w.raw("ifindex", l.ifindex as i32);
    if lower_elsewhere(l) {
        w.raw("link_index", l.link_ifindex as i32);
    } else {
        w.string(Some("link"), &l.link);
    }
    w.string(Some("ifname"), &l.ifname);
    w.start_array(Some("flags"));
    for f in &l.flags {
        w.string(None, f);
    }
    w.end_array();
    w.raw("mtu", l.mtu as i32);
    w.string(Some("qdisc"), qdisc(l));
    w.string(Some("operstate"), &l.operstate);
    w.string(Some("linkmode"), "DEFAULT");
    w.string(Some("group"), "default");
    w.raw("txqlen", 1000);
    w.string(Some("link_type"), "ether");
    w.string(Some("address"), &l.address.to_string());
    w.string(Some("broadcast"), "ff:ff:ff:ff:ff:ff");
    if let Some(ns) = link_netns(l) {
        // ip prints "link_netnsid": N; the daemon names namespaces, it has no nsid.
        w.string(Some("link_netns"), ns);
    }
    if o.details {
        w.raw("promiscuity", l.promiscuity);
        w.raw("allmulti", l.allmulti);
        w.raw("min_mtu", l.min_mtu);
        w.raw("max_mtu", l.max_mtu);
        w.start_object(Some("linkinfo"));
        w.string(Some("info_kind"), "macvlan");
        w.start_object(Some("info_data"));
        macvlan_json(w, l);
        w.end_object();
        w.end_object();
    }
    if o.stats > 0 {
        stats_json(w, &Full64::from(&l.stats), o);
    }
    if let Some(c) = &l.cni {
        // Not an iproute2 key: which CNI attachment made this macvlan.
        w.start_object(Some("cni"));
        w.string(Some("network"), &c.network);
        w.string(Some("container_id"), &c.container_id);
        w.string(Some("ifname"), &c.ifname);
        w.string(Some("netns"), &c.netns);
        w.end_object();
    }
    w.end_object();
}

/// `link show` output for these links: text, or JSON with `-j` (`-p`: pretty).
pub fn links(ls: &[LinkInfo], o: &GlobalOpts) -> String {
    if o.json {
        let mut w = JsonWriter::new(o.pretty);
        w.start_array(None);
        for l in ls {
            link_json(&mut w, l, o);
        }
        w.end_array();
        w.finish()
    } else {
        ls.iter().map(|l| link_text(l, o)).collect()
    }
}

/// The two header lines of `/proc/net/dev`.
pub const PROC_NET_DEV_HEADER: &str = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

/// The `stats` table: `/proc/net/dev`'s format, one row per macvlan.
pub fn proc_net_dev(ls: &[LinkInfo]) -> String {
    let mut out = String::from(PROC_NET_DEV_HEADER);
    for l in ls {
        let s = Full64::from(&l.stats);
        let _ = writeln!(
            out,
            "{:>6}: {:>7} {:>7} {:>4} {:>4} {:>4} {:>5} {:>10} {:>9} {:>8} {:>7} {:>4} {:>4} {:>4} {:>5} {:>7} {:>10}",
            l.ifname,
            s.rx_bytes,
            s.rx_packets,
            s.rx_errors,
            s.rx_dropped + s.rx_missed_errors,
            s.rx_fifo_errors,
            s.rx_length_errors + s.rx_over_errors + s.rx_crc_errors + s.rx_frame_errors,
            s.rx_compressed,
            s.multicast,
            s.tx_bytes,
            s.tx_packets,
            s.tx_errors,
            s.tx_dropped,
            s.tx_fifo_errors,
            s.collisions,
            s.tx_carrier_errors + s.tx_aborted_errors + s.tx_window_errors + s.tx_heartbeat_errors,
            s.tx_compressed,
        );
    }
    out
}
