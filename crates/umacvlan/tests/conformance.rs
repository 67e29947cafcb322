//! Differential conformance: the kernel macvlan on this machine is the oracle.
//!
//! The same topology is built twice, in two separate sets of namespaces with identical MACs:
//! once with kernel macvlans (`ip link add … type macvlan`, each moved into its own
//! namespace at creation) and once with umacvlan (the daemon in the lower's namespace, the
//! `umacvlan` CLI with the same words, each TAP in its own namespace). Every scenario of
//! [`scenarios::SCENARIOS`] runs against both worlds with the same driver code and records:
//!
//! - frames: each injected frame carries a unique tag; AF_PACKET captures at every point
//!   (external host, lower, every macvlan) record which points saw it, how many copies,
//!   with which packet type, length, VLAN tag and bytes (a hash), compared as multisets per
//!   point: the broadcast queue and the daemon's workers do not keep a global order;
//! - counters: every macvlan's (and the lower's and external host's) rx/tx packets, bytes,
//!   multicast, errors and drops over each step (kernel: `ip -s -j link show` in the
//!   macvlan's namespace; umacvlan: `umacvlan -s -j link show`);
//! - control: exit status, stdout and stderr of every control operation, then every
//!   macvlan's `-d -j link show` (ifindexes and generic netdev fields removed), the netdev
//!   as the system shows it, and the lower's filters.
//!
//! Disagreements are checked against [`compare::DEVIATIONS`] (deliberate, with a reason) and
//! [`compare::KNOWN_DAEMON_BUGS`]; anything else fails the test.
//!
//! Needs root (CI runs as root); skipped otherwise. Both worlds share one lab each across all
//! scenarios (reset in between); everything is removed on drop, also when the test fails.
//! Knobs: `CONFORMANCE_ONLY=a,b` runs only the scenarios whose names contain one of the
//! words; `CONFORMANCE_VERBOSE=1` prints every explained disagreement too;
//! `CONFORMANCE_DUMP=1` prints both recordings side by side; `CONFORMANCE_DAEMON_ARGS` adds
//! daemon flags (e.g. `--log umacvlan=debug`).

#[path = "conformance/compare.rs"]
mod compare;
#[path = "conformance/frames.rs"]
mod frames;
#[path = "conformance/scenarios.rs"]
mod scenarios;
#[path = "conformance/world.rs"]
mod world;

use compare::{explain, Diff, Tally, DEVIATIONS, KNOWN_DAEMON_BUGS};
use std::collections::BTreeMap;
use std::time::Instant;
use world::{Kind, World};

#[test]
fn kernel_and_umacvlan_agree() {
    if !umacvlan_lab::lab::can_build_labs() {
        umacvlan_lab::lab::skip_root_test("conformance needs root and iproute2");
        return;
    }
    let only: Vec<String> = std::env::var("CONFORMANCE_ONLY")
        .ok()
        .map(|s| {
            s.split(',')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // An expected-failure list hides real differences: kept only while empty.
    assert!(
        KNOWN_DAEMON_BUGS.is_empty(),
        "KNOWN_DAEMON_BUGS must be empty: fix the daemon or make the difference a bounded \
         deliberate deviation ({} entries)",
        KNOWN_DAEMON_BUGS.len()
    );
    let verbose = std::env::var_os("CONFORMANCE_VERBOSE").is_some();
    let started = Instant::now();
    let mut kernel = World::new(Kind::Kernel).expect("kernel world");
    let mut user = World::new(Kind::User).expect("umacvlan world");

    let mut tally = Tally::default();
    let mut scenarios = 0;
    let mut all: Vec<Diff> = Vec::new();
    for (name, drive) in scenarios::SCENARIOS {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        scenarios += 1;
        let t0 = Instant::now();
        let mut recs = Vec::new();
        for w in [&mut kernel, &mut user] {
            w.reset()
                .unwrap_or_else(|e| panic!("{name}: reset failed: {e}"));
            drive(w);
            recs.push(std::mem::take(&mut w.rec));
        }
        if std::env::var_os("CONFORMANCE_DUMP").is_some() {
            for (a, b) in recs[0].iter().zip(&recs[1]) {
                eprintln!(
                    "  {} [{}]\n    K {:?}\n    U {:?}",
                    a.key, a.kind, a.obs, b.obs
                );
            }
        }
        let before = tally.disagree;
        let diffs = compare::compare(name, &recs[0], &recs[1], &mut tally);
        eprintln!(
            "conformance: {name:<22} {:>4} entries, {:>3} disagreeing, {:.1} s",
            recs[0].len(),
            tally.disagree - before,
            t0.elapsed().as_secs_f64()
        );
        all.extend(diffs);
    }

    // Classify: deliberate deviation, known daemon bug, or failure. A counter difference in
    // a step is explained by the rules that explained frame differences at the same device
    // in the same step only if those frames account for it exactly: the copies (and their
    // bytes) the kernel delivered and umacvlan did not, or the other way round.
    let mut by_rule: BTreeMap<&str, Vec<&Diff>> = BTreeMap::new();
    let mut bugs: BTreeMap<&str, Vec<&Diff>> = BTreeMap::new();
    let mut unexplained: Vec<&Diff> = Vec::new();
    let mut accounted: BTreeMap<(String, u32, String), Accounted> = BTreeMap::new();
    for d in all.iter().filter(|d| d.kind == "frame") {
        let Some(r) = explain(DEVIATIONS, d).or_else(|| explain(KNOWN_DAEMON_BUGS, d)) else {
            continue;
        };
        let a = accounted
            .entry((d.scenario.clone(), d.step, d.item.clone()))
            .or_default();
        a.rules.insert(r.id);
        a.add(d, r.id);
    }
    for d in &all {
        if let Some(r) = explain(DEVIATIONS, d) {
            by_rule.entry(r.id).or_default().push(d);
        } else if let Some(r) = explain(KNOWN_DAEMON_BUGS, d) {
            bugs.entry(r.id).or_default().push(d);
        } else if let Some(a) = (d.kind == "counters")
            .then(|| accounted.get(&(d.scenario.clone(), d.step, d.dev.clone())))
            .flatten()
            .filter(|a| a.explains(d))
        {
            // Charged to the first rule; a step rarely mixes two.
            let id = *a.rules.iter().next().expect("a rule");
            if DEVIATIONS.iter().any(|r| r.id == id) {
                by_rule.entry(id).or_default().push(d);
            } else {
                bugs.entry(id).or_default().push(d);
            }
        } else {
            unexplained.push(d);
        }
    }

    eprintln!("\n================ conformance summary ================");
    eprintln!(
        "scenarios: {scenarios}; frames compared: {}; control operations compared: {}; \
         counter sets compared: {}; state views compared: {}",
        tally.frames, tally.controls, tally.counters, tally.views
    );
    eprintln!(
        "entries agreeing: {}; disagreeing: {} ({} differences: {} deliberate deviations, \
         {} known daemon bugs, {} unexplained)",
        tally.agree,
        tally.disagree,
        all.len(),
        by_rule.values().map(Vec::len).sum::<usize>(),
        bugs.values().map(Vec::len).sum::<usize>(),
        unexplained.len()
    );
    for r in DEVIATIONS {
        let n = by_rule.get(r.id).map_or(0, Vec::len);
        eprintln!("  deviation {:<28} {n:>4} differences — {}", r.id, r.reason);
        if verbose {
            for d in by_rule.get(r.id).into_iter().flatten() {
                eprintln!("    {d}");
            }
        }
    }
    for r in KNOWN_DAEMON_BUGS {
        let n = bugs.get(r.id).map_or(0, Vec::len);
        if n == 0 && only.is_empty() {
            eprintln!(
                "  KNOWN DAEMON BUG {:<22} did not reproduce: remove it from KNOWN_DAEMON_BUGS?",
                r.id
            );
        } else if n > 0 {
            eprintln!(
                "  KNOWN DAEMON BUG {:<22} {n:>4} differences (expected to fail until fixed) — {}",
                r.id, r.reason
            );
            if verbose {
                for d in &bugs[r.id] {
                    eprintln!("    {d}");
                }
            }
        }
    }
    if kernel.restarts + user.restarts > 0 {
        eprintln!(
            "  the umacvlan daemon had to be restarted {} times",
            user.restarts
        );
    }
    for d in &unexplained {
        eprintln!("  UNEXPLAINED {d}");
    }
    eprintln!("elapsed: {:.1} s", started.elapsed().as_secs_f64());
    if !unexplained.is_empty() {
        let log = user.daemon_log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("daemon log (last lines):");
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
    }
    assert!(
        unexplained.is_empty() && user.restarts == 0,
        "{} disagreements between the kernel macvlan and umacvlan are not explained (see above)",
        unexplained.len()
    );
}

/// What explained frame differences at one device in one step add up to, kernel minus
/// umacvlan: received copies, their bytes, and those of them that were multicast or
/// broadcast (a macvlan's rx_multicast counts both).
#[derive(Default)]
struct Accounted {
    rules: std::collections::BTreeSet<&'static str>,
    packets: i64,
    bytes: i64,
    multicast: i64,
    /// Copies umacvlan counted as failed deliveries (rx_errors and rx_dropped).
    failed: i64,
}

impl Accounted {
    fn add(&mut self, d: &Diff, rule: &str) {
        let group = d
            .meta
            .as_ref()
            .is_some_and(|m| u8::from_str_radix(&m.dst[..2], 16).is_ok_and(|b| b & 1 == 1));
        // The kernel counts a group frame a bridge macvlan floods to its bridge siblings
        // (macvlan_broadcast on the transmit path, where skb->len already holds the Ethernet
        // header) as len + ETH_HLEN: 14 bytes more than the copy captured. Copies that come
        // back from the wire (a hairpin, other modes) are counted as captured.
        let local_flood = d.meta.as_ref().is_some_and(|m| {
            compare::mode_of(&m.from) == "bridge" && compare::mode_of(&d.item) == "bridge"
        });
        let extra = if group && local_flood { 14 } else { 0 };
        let n = d.kseen.len() as i64 - d.useen.len() as i64;
        self.packets += n;
        self.bytes += d.kseen.iter().map(|c| c.len as i64 + extra).sum::<i64>()
            - d.useen.iter().map(|c| c.len as i64 + extra).sum::<i64>();
        if group {
            self.multicast += n;
        }
        if rule == compare::FLOOD_OVER_VETH_MTU {
            self.failed += n;
        }
    }

    /// Whether this counter difference is exactly what the explained frames account for.
    fn explains(&self, d: &Diff) -> bool {
        let want = match d.item.as_str() {
            "rx_packets" => self.packets,
            "rx_bytes" => self.bytes,
            "rx_multicast" => self.multicast,
            "rx_errors" | "rx_dropped" if self.failed > 0 => -self.failed,
            _ => return false,
        };
        d.kval - d.uval == want
    }
}
