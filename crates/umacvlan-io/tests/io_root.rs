//! Root-only integration tests against the real kernel. Each test builds its own network
//! namespaces (`umv-io-<pid>-<n>`) with veth pairs and TAPs inside them, sends traffic only
//! between devices of those namespaces, and removes the namespaces on success and on panic
//! (RAII guard). Skipped, with a message, when not run as root.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use umacvlan_io::netlink::iff;
use umacvlan_io::*;

// --- fixtures ---

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// Whether a root test that cannot run must fail rather than skip: CI sets `CI`, and
/// `UMACVLAN_REQUIRE_ROOT=1` asks for it by hand (a skip there would be a silent pass).
fn root_tests_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("UMACVLAN_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

macro_rules! require_root {
    () => {
        if !is_root() {
            if root_tests_required() {
                panic!("this root test cannot run (needs root), and CI or UMACVLAN_REQUIRE_ROOT=1 says it must");
            }
            eprintln!("skipped: needs root");
            return;
        }
    };
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made for one test; deleted on drop (also when the test panics).
struct Ns {
    name: String,
    handle: NetnsHandle,
}

impl Ns {
    fn new() -> Ns {
        let name = format!(
            "umv-io-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        // A leftover of an earlier run that had the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let guard_name = name.clone();
        // Build the guard before anything else can panic.
        let handle = match NetnsHandle::from_name(&name) {
            Ok(h) => h,
            Err(e) => {
                let _ = Command::new("ip")
                    .args(["netns", "del", &guard_name])
                    .output();
                panic!("open netns {guard_name}: {e}");
            }
        };
        let ns = Ns { name, handle };
        // No IPv6: keeps router solicitations and MLD reports out of the captures.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns.name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS args...`
    fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// A veth pair `a`/`b`, both up. Returns their ifindexes.
    fn veth(&self, a: &str, b: &str) -> (u32, u32) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
        (self.ifindex(a), self.ifindex(b))
    }

    fn ifindex(&self, dev: &str) -> u32 {
        self.nl().get_link_by_name(dev).unwrap().ifindex
    }

    fn nl(&self) -> RtNetlink {
        RtNetlink::open_in(Some(&self.handle)).unwrap()
    }

    /// `ip -d -j link show dev DEV`, raw JSON text.
    fn link_json(&self, dev: &str) -> String {
        self.ip(&["-d", "-j", "link", "show", "dev", dev])
    }

    fn promiscuity(&self, dev: &str) -> u64 {
        json_u64(&self.link_json(dev), "promiscuity").expect("promiscuity in ip -j output")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The number after `"key":` in JSON text (enough for `ip -j` of a single device).
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &json[json.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The `"flags":[...]` array of `ip -j link show` output.
fn json_flags(json: &str) -> Vec<String> {
    let start = json.find("\"flags\":[").expect("flags") + 9;
    let end = start + json[start..].find(']').unwrap();
    json[start..end]
        .split(',')
        .map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

const TEST_ETHERTYPE: u16 = 0x88b5; // IEEE local experimental

fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0x55, 0x4d, 0x56, 0x00, last])
}

/// An Ethernet frame: dst, src, optional tags (tpid, tci), our ethertype, a marker payload.
fn frame(dst: MacAddr, src: MacAddr, tags: &[(u16, u16)], marker: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(64));
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(b"UMV!");
    f.extend_from_slice(&marker.to_be_bytes());
    let body = f.len();
    f.extend((0..len.saturating_sub(body)).map(|i| i as u8));
    f
}

/// The marker of one of our test frames, whatever tags it carries.
fn marker_of(data: &[u8]) -> Option<u32> {
    let mut off = 12;
    while off + 2 <= data.len() {
        let et = u16::from_be_bytes([data[off], data[off + 1]]);
        if et == 0x8100 || et == 0x88a8 {
            off += 4;
            continue;
        }
        if et != TEST_ETHERTYPE || data.len() < off + 10 || &data[off + 2..off + 6] != b"UMV!" {
            return None;
        }
        return Some(u32::from_be_bytes(
            data[off + 6..off + 10].try_into().unwrap(),
        ));
    }
    None
}

#[derive(Debug, Clone)]
struct Got {
    data: Vec<u8>,
    pkttype: PacketType,
    orig_len: usize,
    vlan: Option<VlanTag>,
}

/// Receives on `sock` until `timeout`, returning every test frame (by marker) seen.
fn collect(sock: &LowerSocket, timeout: Duration, want: usize) -> Vec<(u32, Got)> {
    let ep = Epoll::new().unwrap();
    ep.add(sock.as_raw_fd(), 0, Interest::READABLE).unwrap();
    let mut evs = Events::with_capacity(4);
    let mut batch = RxBatch::new(16);
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        while sock.recv_batch(&mut batch).unwrap() > 0 {
            for f in batch.iter() {
                if let Some(m) = marker_of(f.data) {
                    out.push((
                        m,
                        Got {
                            data: f.data.to_vec(),
                            pkttype: f.pkttype,
                            orig_len: f.orig_len,
                            vlan: f.vlan,
                        },
                    ));
                }
            }
        }
        let now = Instant::now();
        if out.len() >= want || now >= deadline {
            return out;
        }
        ep.wait(&mut evs, Some(deadline - now)).unwrap();
    }
}

fn recv_one(sock: &LowerSocket, marker: u32) -> Got {
    let got = collect(sock, Duration::from_secs(2), 1);
    got.into_iter()
        .find(|(m, _)| *m == marker)
        .unwrap_or_else(|| panic!("frame {marker:#x} not received"))
        .1
}

fn tap_read_marker(tap: &Tap, marker: u32) -> Vec<u8> {
    let ep = Epoll::new().unwrap();
    ep.add(tap.as_raw_fd(), 0, Interest::READABLE).unwrap();
    let mut evs = Events::with_capacity(1);
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match tap.read(&mut buf) {
            Ok(n) if marker_of(&buf[..n]) == Some(marker) => return buf[..n].to_vec(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("tap read: {e}"),
        }
        let now = Instant::now();
        assert!(now < deadline, "frame {marker:#x} not read from the tap");
        ep.wait(&mut evs, Some(deadline - now)).unwrap();
    }
}

use std::os::fd::AsRawFd;

// --- tests ---

#[test]
fn lower_socket_receives_sends_and_restores_vlan_tags() {
    require_root!();
    let ns = Ns::new();
    let (ia, ib) = ns.veth("va", "vb");
    let opts = LowerOptions {
        rcvbuf: Some(1 << 20),
        ..LowerOptions::default()
    };
    let lower = LowerSocket::open_in(Some(&ns.handle), ia, &opts).unwrap();
    let peer = LowerSocket::open_in(Some(&ns.handle), ib, &LowerOptions::default()).unwrap();
    assert_eq!(lower.ifindex(), ia);
    assert!(lower.buffer_sizes().unwrap().0 >= 1 << 20);

    // Untagged unicast to a foreign MAC: OTHERHOST.
    let f = frame(mac(9), mac(2), &[], 1, 60);
    peer.send(&f).unwrap();
    let g = recv_one(&lower, 1);
    assert_eq!(g.data, f);
    assert_eq!(g.orig_len, f.len());
    assert_eq!((g.pkttype, g.vlan), (PacketType::OtherHost, None));

    // 802.1Q: the kernel strips the tag on receive; it must come back in the bytes.
    let f = frame(MacAddr::BROADCAST, mac(2), &[(0x8100, 0x6064)], 2, 64);
    peer.send(&f).unwrap();
    let g = recv_one(&lower, 2);
    assert_eq!(g.data, f, "tag re-inserted in place");
    assert_eq!(
        g.vlan,
        Some(VlanTag {
            tpid: 0x8100,
            tci: 0x6064
        })
    );
    assert_eq!(g.pkttype, PacketType::Broadcast);
    assert_eq!(g.orig_len, f.len());

    // 802.1ad outer tag over 802.1Q inner tag (QinQ): only the outer one is stripped.
    let f = frame(mac(9), mac(2), &[(0x88a8, 0x0007), (0x8100, 0x0005)], 3, 64);
    peer.send(&f).unwrap();
    let g = recv_one(&lower, 3);
    assert_eq!(g.data, f);
    assert_eq!(
        g.vlan,
        Some(VlanTag {
            tpid: 0x88a8,
            tci: 7
        })
    );

    // Priority tag (VLAN id 0) is also restored.
    let f = frame(mac(9), mac(2), &[(0x8100, 0xa000)], 4, 64);
    peer.send(&f).unwrap();
    assert_eq!(recv_one(&lower, 4).data, f);

    // Send: one frame and a batch reach the peer; our own socket does not see them
    // (PACKET_IGNORE_OUTGOING).
    let f5 = frame(mac(7), mac(1), &[], 5, 60);
    lower.send(&f5).unwrap();
    assert_eq!(recv_one(&peer, 5).data, f5);
    let fs: Vec<Vec<u8>> = (6..9)
        .map(|m| frame(MacAddr::BROADCAST, mac(1), &[], m, 100))
        .collect();
    let refs: Vec<&[u8]> = fs.iter().map(|f| f.as_slice()).collect();
    assert_eq!(lower.send_batch(&refs).unwrap(), 3);
    let got = collect(&peer, Duration::from_secs(2), 3);
    assert_eq!(
        got.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    assert!(
        collect(&lower, Duration::from_millis(100), 1).is_empty(),
        "own transmissions are ignored"
    );

    // With ignore_outgoing off, our own frames come back as OUTGOING.
    let loud = LowerSocket::open_in(
        Some(&ns.handle),
        ia,
        &LowerOptions {
            ignore_outgoing: false,
            ..LowerOptions::default()
        },
    )
    .unwrap();
    lower.send(&frame(mac(7), mac(1), &[], 9, 60)).unwrap();
    assert_eq!(recv_one(&loud, 9).pkttype, PacketType::Outgoing);

    // A full 64 KiB frame fits a slot untruncated.
    ns.ip(&["link", "set", "va", "mtu", "65535"]);
    ns.ip(&["link", "set", "vb", "mtu", "65535"]);
    let big = frame(mac(9), mac(2), &[], 10, 65535 + 14);
    peer.send(&big).unwrap();
    let g = recv_one(&lower, 10);
    assert_eq!(g.data.len(), big.len());
    assert!(g.data == big);
    let st = lower.stats().unwrap();
    assert!(st.packets >= 5, "{st:?}");
}

#[test]
fn fanout_group_splits_without_duplicates() {
    require_root!();
    let ns = Ns::new();
    let (ia, ib) = ns.veth("va", "vb");
    // Another program's group on the same device, made first, whose id we must not take.
    let foreign = LowerOptions {
        fanout: Some(Fanout {
            group: Some(0x5a5a),
            mode: FanoutMode::LoadBalance,
            rollover: false,
        }),
        ..LowerOptions::default()
    };
    let other = LowerSocket::open_in(Some(&ns.handle), ia, &foreign).unwrap();
    assert_eq!(other.fanout_group().unwrap(), 0x5a5a);
    // Ours: the kernel picks an unused id for the first member; the second joins it.
    let mut opts = LowerOptions {
        fanout: Some(Fanout {
            group: None,
            mode: FanoutMode::LoadBalance,
            rollover: false,
        }),
        ..LowerOptions::default()
    };
    let s1 = LowerSocket::open_in(Some(&ns.handle), ia, &opts).unwrap();
    let id = s1.fanout_group().unwrap();
    assert_ne!(
        id, 0x5a5a,
        "a unique group id never collides with another's"
    );
    opts.fanout.as_mut().unwrap().group = Some(id);
    let s2 = LowerSocket::open_in(Some(&ns.handle), ia, &opts).unwrap();
    assert_eq!(s2.fanout_group().unwrap(), id);
    let peer = LowerSocket::open_in(Some(&ns.handle), ib, &LowerOptions::default()).unwrap();
    for m in 0..20 {
        peer.send(&frame(mac(9), mac(2), &[], m, 60)).unwrap();
    }
    let mut a: Vec<u32> = collect(&s1, Duration::from_millis(300), 20)
        .into_iter()
        .map(|x| x.0)
        .collect();
    let b: Vec<u32> = collect(&s2, Duration::from_millis(300), 20)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert!(
        !a.is_empty() && !b.is_empty(),
        "round robin uses both: {a:?} {b:?}"
    );
    a.extend(b);
    a.sort();
    assert_eq!(a, (0..20).collect::<Vec<_>>());
    // The foreign group is a group of its own: its one member got every frame.
    assert_eq!(collect(&other, Duration::from_millis(300), 20).len(), 20);
    // A hash-mode socket cannot join the same (load-balance) group.
    let hash = LowerOptions {
        fanout: Some(Fanout {
            group: Some(id),
            mode: FanoutMode::Hash,
            rollover: false,
        }),
        ..LowerOptions::default()
    };
    assert!(LowerSocket::open_in(Some(&ns.handle), ia, &hash).is_err());
}

#[test]
fn memberships_change_the_device_and_vanish_with_the_socket() {
    require_root!();
    let ns = Ns::new();
    let (ia, ib) = ns.veth("va", "vb");
    let mut nl = ns.nl();
    let p0 = ns.promiscuity("va");
    let a0 = nl.get_link_by_index(ia).unwrap().allmulti;
    let uc = mac(0x42);
    let mc = MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);

    let lower = LowerSocket::open_in(Some(&ns.handle), ia, &LowerOptions::default()).unwrap();
    lower.add_membership(Membership::Unicast(uc)).unwrap();
    // veth has no unicast filter (no IFF_UNICAST_FLT): a secondary unicast address turns
    // promiscuity on instead.
    assert_eq!(ns.promiscuity("va"), p0 + 1);
    let st = nl.get_link_by_index(ia).unwrap();
    assert_eq!(st.promiscuity as u64, p0 + 1);
    // Only the counter shows it: IFF_PROMISC in ifi_flags (and `ip link`'s PROMISC) reflects
    // the user's `ip link set promisc on` (dev->gflags), never socket memberships.
    assert!(st.flags & iff::PROMISC == 0);
    assert!(!json_flags(&ns.link_json("va"))
        .iter()
        .any(|f| f == "PROMISC"));
    // Adding the same membership again is counted by the kernel, not an error.
    lower.add_membership(Membership::Unicast(uc)).unwrap();
    lower.drop_membership(Membership::Unicast(uc)).unwrap();
    assert_eq!(ns.promiscuity("va"), p0 + 1);
    lower.drop_membership(Membership::Unicast(uc)).unwrap();
    assert_eq!(ns.promiscuity("va"), p0);
    // Dropping a membership the socket does not hold is silently accepted by the kernel.
    lower.drop_membership(Membership::Unicast(uc)).unwrap();
    assert_eq!(ns.promiscuity("va"), p0);

    // Frames to the added MAC arrive (as OTHERHOST: the kernel classifies by the device's
    // own address only).
    lower.add_membership(Membership::Unicast(uc)).unwrap();
    let peer = LowerSocket::open_in(Some(&ns.handle), ib, &LowerOptions::default()).unwrap();
    peer.send(&frame(uc, mac(2), &[], 1, 60)).unwrap();
    assert_eq!(recv_one(&lower, 1).pkttype, PacketType::OtherHost);

    // Reconcile to a full set, with the real socket.
    let mut current: MembershipSet = [Membership::Unicast(uc)].into_iter().collect();
    let wanted: MembershipSet = [
        Membership::Unicast(uc),
        Membership::Multicast(mc),
        Membership::AllMulti,
        Membership::Promisc,
    ]
    .into_iter()
    .collect();
    reconcile(&lower, &mut current, &wanted).unwrap();
    assert_eq!(current, wanted);
    assert_eq!(
        ns.promiscuity("va"),
        p0 + 2,
        "uc_promisc + PACKET_MR_PROMISC"
    );
    let st = nl.get_link_by_index(ia).unwrap();
    if let (Some(a0), Some(a1)) = (a0, st.allmulti) {
        assert_eq!(a1, a0 + 1);
    }
    assert!(
        st.flags & (iff::ALLMULTI | iff::PROMISC) == 0,
        "counters only, as above"
    );
    assert_eq!(
        json_u64(&ns.link_json("va"), "allmulti"),
        st.allmulti.map(u64::from)
    );
    let mcs = ns
        .handle
        .run_in(|| multicast_addresses(ia))
        .unwrap()
        .unwrap();
    assert!(mcs.contains(&mc), "{mcs:?}");
    // The same list is not visible from the root namespace's /proc.
    assert!(!multicast_addresses(ia).unwrap().contains(&mc) || ns.handle.is_current().unwrap());

    // Closing the socket (the daemon crashing) restores everything.
    drop(lower);
    assert_eq!(ns.promiscuity("va"), p0);
    let st = nl.get_link_by_index(ia).unwrap();
    assert_eq!(st.allmulti, a0);
    assert!(st.flags & (iff::PROMISC | iff::ALLMULTI) == 0);
    let mcs = ns
        .handle
        .run_in(|| multicast_addresses(ia))
        .unwrap()
        .unwrap();
    assert!(!mcs.contains(&mc));
}

#[test]
fn tap_in_another_netns_carrier_and_traffic() {
    require_root!();
    let ns = Ns::new();
    let tap = Tap::create_in(Some(&ns.handle), "umvtap0", TapOptions::default()).unwrap();
    assert_eq!(tap.name().unwrap(), "umvtap0");
    assert!(tap.netns().unwrap().same_as(&ns.handle).unwrap());
    // Created in the test namespace, not in ours.
    let root = NetnsHandle::current().unwrap();
    assert!(!tap.netns().unwrap().same_as(&root).unwrap());
    let mut nl = ns.nl();
    let st = nl.get_link_by_name("umvtap0").unwrap();
    assert_eq!(st.kind.as_deref(), Some("tun"));
    assert_eq!(tap.ifindex().unwrap(), st.ifindex);

    // While down, writes fail with EIO and nothing can be read.
    let r = tap.write(&frame(MacAddr::BROADCAST, mac(0x34), &[], 99, 60));
    assert_eq!(r.unwrap_err().raw_os_error(), Some(5));
    let mut b = [0u8; 100];
    assert_eq!(
        tap.read(&mut b).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    tap.set_mac(mac(0x33)).unwrap();
    assert_eq!(tap.mac().unwrap(), mac(0x33));
    tap.set_mtu(1400).unwrap();
    tap.set_up(true).unwrap();
    let st = nl.get_link_by_name("umvtap0").unwrap();
    assert_eq!((st.mac, st.mtu, st.is_up()), (Some(mac(0x33)), 1400, true));
    assert!(st.is_lower_up(), "an attached TAP has carrier");

    tap.set_carrier(false).unwrap();
    {
        // Without carrier the device still receives what is written to the TAP, but the kernel
        // no longer transmits to it.
        let pk =
            LowerSocket::open_in(Some(&ns.handle), st.ifindex, &LowerOptions::default()).unwrap();
        tap.write(&frame(MacAddr::BROADCAST, mac(0x34), &[], 98, 60))
            .unwrap();
        assert_eq!(recv_one(&pk, 98).pkttype, PacketType::Broadcast);
        // Transmission stops only once linkwatch has processed the carrier change (the
        // operstate leaves UP; asynchronous, up to about a second).
        let t0 = Instant::now();
        while nl.get_link_by_name("umvtap0").unwrap().operstate == OperState::Up {
            assert!(t0.elapsed() < Duration::from_secs(3), "operstate stays UP");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The qdisc is swapped right after the operstate, still inside linkwatch.
        std::thread::sleep(Duration::from_millis(20));
        while tap.read(&mut b).is_ok() {}
        pk.send(&frame(MacAddr::BROADCAST, mac(0x34), &[], 97, 60))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            tap.read(&mut b).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
    }
    let flags = json_flags(&ns.ip(&["-j", "link", "show", "dev", "umvtap0"]));
    assert!(flags.iter().any(|f| f == "NO-CARRIER"), "{flags:?}");
    assert!(!flags.iter().any(|f| f == "LOWER_UP"), "{flags:?}");
    let st = nl.get_link_by_name("umvtap0").unwrap();
    assert_eq!(st.carrier, Some(false));
    tap.set_carrier(true).unwrap();
    let flags = json_flags(&ns.ip(&["-j", "link", "show", "dev", "umvtap0"]));
    assert!(flags.iter().any(|f| f == "LOWER_UP"), "{flags:?}");

    // A frame written to the TAP is received by the device: AF_PACKET in its namespace sees it.
    let pk = LowerSocket::open_in(Some(&ns.handle), st.ifindex, &LowerOptions::default()).unwrap();
    let f = frame(MacAddr::BROADCAST, mac(0x34), &[], 1, 60);
    tap.write(&f).unwrap();
    let g = recv_one(&pk, 1);
    assert_eq!((g.data, g.pkttype), (f, PacketType::Broadcast));
    // A frame transmitted on the device comes out of the TAP fd.
    let f = frame(mac(0x34), mac(0x33), &[], 2, 60);
    pk.send(&f).unwrap();
    assert_eq!(tap_read_marker(&tap, 2), f);
    // And as UpperIo.
    let up: &dyn UpperIo = &tap;
    up.write(&frame(MacAddr::BROADCAST, mac(0x34), &[], 3, 60))
        .unwrap();
    assert_eq!(recv_one(&pk, 3).pkttype, PacketType::Broadcast);

    // Not persistent: closing the fd deletes the device.
    drop(tap);
    let e = nl.get_link_by_name("umvtap0").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(19), "ENODEV: {e}");
}

#[test]
fn tap_moved_by_the_user_is_found_in_its_new_netns() {
    require_root!();
    let a = Ns::new();
    let b = Ns::new();
    let tap = Tap::create_in(
        Some(&a.handle),
        "umvmv0",
        TapOptions {
            multi_queue: true,
            ..TapOptions::default()
        },
    )
    .unwrap();
    a.ip(&["link", "set", "umvmv0", "netns", &b.name]);
    let now = tap.netns().unwrap();
    assert!(now.same_as(&b.handle).unwrap());
    assert!(!now.same_as(&a.handle).unwrap());
    assert_eq!(now.name().unwrap().as_deref(), Some(b.name.as_str()));
    // Control still works, in the new namespace.
    tap.set_up(true).unwrap();
    let st = b.nl().get_link_by_name("umvmv0").unwrap();
    assert!(st.is_up());
    assert_eq!(tap.ifindex().unwrap(), st.ifindex);
    // A second queue attaches where the device is now.
    let q2 = tap.attach_queue().unwrap();
    assert_eq!(q2.name().unwrap(), "umvmv0");
    assert!(q2.netns().unwrap().same_as(&b.handle).unwrap());
    assert!(a.nl().get_link_by_name("umvmv0").is_err());
}

#[test]
fn netlink_get_set_extack_and_events() {
    require_root!();
    let ns = Ns::new();
    let other = Ns::new();
    let (ia, ib) = ns.veth("va", "vb");
    let mut nl = ns.nl();

    let st = nl.get_link_by_name("va").unwrap();
    assert_eq!(st.ifindex, ia);
    assert_eq!(st.kind.as_deref(), Some("veth"));
    assert_eq!(st.link, Some(ib));
    assert_eq!(st.link_type, 1);
    assert_eq!(st.mtu, 1500);
    assert_eq!((st.min_mtu, st.max_mtu), (Some(68), Some(65535)));
    assert_eq!(st.master, None);
    assert!(
        st.flags & (iff::UP | iff::BROADCAST | iff::MULTICAST)
            == iff::UP | iff::BROADCAST | iff::MULTICAST
    );
    assert_eq!(nl.get_link_by_index(ia).unwrap(), st);
    let names: Vec<String> = nl
        .dump_links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(["lo", "va", "vb"]
        .iter()
        .all(|n| names.iter().any(|x| x == n)));
    assert_eq!(
        nl.get_link_by_name("nope0").unwrap_err().raw_os_error(),
        Some(19)
    );

    // Set MTU, MAC, up/down.
    nl.set_link(
        ia,
        &LinkChange {
            mtu: Some(1400),
            mac: Some(mac(0x77)),
            up: Some(false),
            ..LinkChange::default()
        },
    )
    .unwrap();
    let st = nl.get_link_by_index(ia).unwrap();
    assert_eq!((st.mtu, st.mac, st.is_up()), (1400, Some(mac(0x77)), false));
    let j = ns.link_json("va");
    assert!(j.contains("\"address\":\"02:55:4d:56:00:77\""), "{j}");
    assert_eq!(json_u64(&j, "mtu"), Some(1400));

    // An invalid request: the kernel's errno and its explanation.
    let e = nl
        .set_link(
            ia,
            &LinkChange {
                mtu: Some(10),
                ..LinkChange::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(22), "EINVAL: {e}");
    let msg = e.extack().expect("extack message");
    assert!(msg.to_lowercase().contains("mtu"), "{msg}");
    eprintln!("extack for MTU 10: {msg:?}");
    let e = nl
        .set_link(
            ia,
            &LinkChange {
                mac: Some(MacAddr([1, 0, 0, 0, 0, 1])),
                ..LinkChange::default()
            },
        )
        .unwrap_err();
    eprintln!("multicast MAC: {e} (errno {:?})", e.raw_os_error());
    assert!(e.raw_os_error().is_some());

    // Events: an `ip link set ... up/down` shows up within a second.
    let mut mon = LinkMonitor::open_in(Some(&ns.handle)).unwrap();
    let ep = Epoll::new().unwrap();
    ep.add(mon.as_raw_fd(), 1, Interest::READABLE).unwrap();
    let mut evs = Events::with_capacity(4);
    let mut wait_for = |mon: &mut LinkMonitor, pred: &dyn Fn(&LinkEvent) -> bool| -> Duration {
        let start = Instant::now();
        let mut got = Vec::new();
        loop {
            got.clear();
            mon.recv_events(&mut got).unwrap();
            if got.iter().any(pred) {
                return start.elapsed();
            }
            let left = Duration::from_secs(1).saturating_sub(start.elapsed());
            assert!(!left.is_zero(), "event not seen within 1 s: {got:?}");
            ep.wait(&mut evs, Some(left)).unwrap();
        }
    };
    ns.ip(&["link", "set", "va", "up"]);
    wait_for(
        &mut mon,
        &|e| matches!(e, LinkEvent::New(l) if l.ifindex == ia && l.is_up()),
    );
    ns.ip(&["link", "set", "va", "down"]);
    let t = wait_for(
        &mut mon,
        &|e| matches!(e, LinkEvent::New(l) if l.ifindex == ia && !l.is_up()),
    );
    eprintln!("down event after {t:?}");

    // Rename (while down) and move the peer to another namespace with set_link.
    nl.set_link(
        ia,
        &LinkChange {
            name: Some("vrenamed"),
            ..LinkChange::default()
        },
    )
    .unwrap();
    assert_eq!(nl.get_link_by_index(ia).unwrap().name, "vrenamed");
    nl.set_link(
        ib,
        &LinkChange {
            netns: Some(&other.handle),
            ..LinkChange::default()
        },
    )
    .unwrap();
    wait_for(
        &mut mon,
        &|e| matches!(e, LinkEvent::Del { ifindex, name, .. } if *ifindex == ib && name == "vb"),
    );
    assert!(other.nl().get_link_by_name("vb").is_ok());
    let st = nl.get_link_by_index(ia).unwrap();
    assert!(
        st.netnsid.is_some(),
        "peer now in another namespace: {st:?}"
    );

    // Delete.
    nl.del_link(ia).unwrap();
    wait_for(
        &mut mon,
        &|e| matches!(e, LinkEvent::Del { ifindex, .. } if *ifindex == ia),
    );
    assert_eq!(
        nl.get_link_by_index(ia).unwrap_err().raw_os_error(),
        Some(19)
    );
    assert!(
        other.nl().get_link_by_name("vb").is_err(),
        "veth peer goes too"
    );
}

#[test]
fn netns_handles_identity_names_and_run_in() {
    require_root!();
    let ns = Ns::new();
    let cur = NetnsHandle::current().unwrap();
    let by_pid = NetnsHandle::from_pid(std::process::id()).unwrap();
    assert!(
        cur.same_as(&by_pid).unwrap(),
        "test threads live in the main thread's netns"
    );
    assert!(!cur.same_as(&ns.handle).unwrap());
    let again = NetnsHandle::from_name(&ns.name).unwrap();
    assert!(again.same_as(&ns.handle).unwrap());
    assert_eq!(again.name().unwrap().as_deref(), Some(ns.name.as_str()));
    // One scan names every namespace, this one among them, as name_of does.
    let all = umacvlan_io::names();
    assert_eq!(
        all.get(&ns.handle.id().unwrap()).map(String::as_str),
        Some(ns.name.as_str())
    );
    // Also found through /run/netns directly.
    let via_run = NetnsHandle::from_path(format!("/run/netns/{}", ns.name)).unwrap();
    assert_eq!(via_run.id().unwrap(), ns.handle.id().unwrap());

    // run_in sees the namespace's devices and its own identity; the caller is unchanged.
    let (inside, links) = ns
        .handle
        .run_in(|| {
            let me = NetnsHandle::current().unwrap().id().unwrap();
            let links = RtNetlink::open().unwrap().dump_links().unwrap();
            (me, links)
        })
        .unwrap();
    assert_eq!(inside, ns.handle.id().unwrap());
    assert_eq!(
        links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        vec!["lo"]
    );
    assert!(cur.is_current().unwrap());
    // A panic inside run_in reaches the caller.
    let r = std::panic::catch_unwind(|| ns.handle.run_in(|| panic!("inside")));
    assert!(r.is_err());
    assert!(cur.is_current().unwrap());
    assert!(NetnsHandle::from_name("umv-io-does-not-exist").is_err());
}

/// Host access: the hidden injector puts frames into the lower's receive path (taps see them
/// with the marker tag, a socket told to drop them does not); the host's socket keeps only
/// frames the lower's host sends, from its MAC, to a group or a listed destination.
#[test]
fn host_path_injects_marked_frames_and_its_filters_keep_what_they_should() {
    require_root!();
    let ns = Ns::new();
    let (ia, ib) = ns.veth("low0", "far0");
    let lower_mac = ns.nl().get_link_by_index(ia).unwrap().mac.unwrap();
    let o = LowerOptions::default();
    let plain = LowerSocket::open_in(Some(&ns.handle), ia, &o).unwrap();
    let filtered = LowerSocket::open_in(Some(&ns.handle), ia, &o).unwrap();
    filtered.drop_host_injected(true).unwrap();
    let inj = ns
        .handle
        .run_in(|| hostaccess::HostInjector::create("uvhtest", ia, lower_mac, false))
        .unwrap()
        .unwrap();
    // Silent: no address, no ARP.
    assert!(ns
        .ip(&["-o", "addr", "show", "dev", "uvhtest"])
        .trim()
        .is_empty());
    assert!(json_flags(&ns.link_json("uvhtest")).contains(&"NOARP".to_string()));
    inj.inject(&frame(lower_mac, mac(2), &[], 1, 60)).unwrap();
    let got = recv_one(&plain, 1);
    let tag = got.vlan.expect("the marker tag");
    assert_eq!(
        (tag.tpid, tag.tci),
        (hostaccess::MARK_TPID, hostaccess::MARK_TCI)
    );
    assert_eq!(
        got.pkttype,
        PacketType::Host,
        "the hidden device has the lower's MAC"
    );
    assert!(collect(&filtered, Duration::from_millis(300), 1).is_empty());
    // A frame from the wire with another tag still reaches the filtered socket.
    let far = LowerSocket::open_in(Some(&ns.handle), ib, &o).unwrap();
    far.send(&frame(lower_mac, mac(2), &[(0x88a8, 0xf005)], 2, 60))
        .unwrap();
    assert_eq!(recv_one(&filtered, 2).vlan.map(|t| t.tci), Some(0xf005));
    // Told to take everything again, it does.
    filtered.drop_host_injected(false).unwrap();
    inj.inject(&frame(lower_mac, mac(2), &[], 3, 60)).unwrap();
    let _ = recv_one(&filtered, 3);

    // The host's socket: outgoing, from the lower's MAC, to a group or mac(3) only.
    let tx = ns
        .handle
        .run_in(|| hostaccess::open_host_tx(ia, lower_mac, &[mac(3)], false))
        .unwrap()
        .unwrap();
    let sender = LowerSocket::open_in(Some(&ns.handle), ia, &o).unwrap();
    sender.send(&frame(mac(3), lower_mac, &[], 10, 60)).unwrap();
    sender.send(&frame(mac(4), lower_mac, &[], 11, 60)).unwrap();
    sender
        .send(&frame(MacAddr::BROADCAST, lower_mac, &[], 12, 60))
        .unwrap();
    sender.send(&frame(mac(3), mac(9), &[], 13, 60)).unwrap();
    // Incoming (from the far end), even from the lower's MAC: not the host's.
    far.send(&frame(mac(3), lower_mac, &[], 14, 60)).unwrap();
    let mut seen: Vec<u32> = collect(&tx, Duration::from_millis(500), 3)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    seen.sort();
    assert_eq!(seen, vec![10, 12]);
    // More destinations than the filter lists: every frame the host sends.
    let many: Vec<MacAddr> = (0..=afpacket::HOST_FILTER_MAX as u8)
        .map(|i| mac(100 + i))
        .collect();
    tx.keep_only_outgoing_from(lower_mac, &many).unwrap();
    sender.send(&frame(mac(4), lower_mac, &[], 15, 60)).unwrap();
    sender.send(&frame(mac(3), mac(9), &[], 16, 60)).unwrap();
    let seen: Vec<u32> = collect(&tx, Duration::from_millis(500), 2)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(seen, vec![15]);
    drop(inj);
    // Not persistent: the hidden device went with its descriptor.
    assert!(!ns.ip(&["-o", "link", "show"]).contains("uvhtest"));
}

/// A namespace's multicast file opened once shows the lists as they are at each read.
#[test]
fn a_multicast_file_opened_once_reads_the_lists_of_now() {
    require_root!();
    let ns = Ns::new();
    let (a, _) = ns.veth("mca", "mcb");
    let group = MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);
    let mut file = netlink::MulticastFile::open_in(Some(&ns.handle)).unwrap();
    let has = |t: &std::collections::HashMap<u32, Vec<MacAddr>>| {
        t.get(&a).is_some_and(|g| g.contains(&group))
    };
    assert!(!has(&file.table().unwrap()));
    ns.ip(&["maddr", "add", "01:00:5e:01:02:03", "dev", "mca"]);
    assert!(has(&file.table().unwrap()), "a group added after the open");
    ns.ip(&["maddr", "del", "01:00:5e:01:02:03", "dev", "mca"]);
    assert!(!has(&file.table().unwrap()), "and gone again");
}
