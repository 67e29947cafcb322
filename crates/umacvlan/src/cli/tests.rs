//! Grammar, error-text and rendering tests for the CLI.

use super::macvlan::MACVLAN_USAGE;
use super::parse::{parse_with, LINK_USAGE, USAGE};
use super::*;
use crate::proto::{LinkAdd, LinkSet, NetnsRef, Request, Stats64};
use umacvlan_core::engine::{MacAddrOp, MacvlanAttrs, Mode, FLAG_NODST, FLAG_NOPROMISC};
use umacvlan_core::wire::MacAddr;

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Only "ns1" exists as a named namespace.
fn p(s: &str) -> Invocation {
    parse_with(&argv(s), &|n: &str| n == "ns1" || n == "/var/run/netns/ns1")
}

fn req(s: &str) -> Request {
    match p(s) {
        Invocation::Run { action, .. } => action.request(),
        other => panic!("{s}: {other:?}"),
    }
}

fn opts(s: &str) -> GlobalOpts {
    match p(s) {
        Invocation::Run { opts, .. } => opts,
        other => panic!("{s}: {other:?}"),
    }
}

fn exit(s: &str) -> (String, i32) {
    match p(s) {
        Invocation::Exit(e) => {
            assert!(e.stdout.is_empty(), "{s}: stdout {:?}", e.stdout);
            (e.stderr, e.code)
        }
        other => panic!("{s}: {other:?}"),
    }
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn add(lower: &str, name: &str, macvlan: MacvlanAttrs) -> Request {
    Request::LinkAdd(LinkAdd {
        lower_netns: None,
        lower: lower.into(),
        name: name.into(),
        macvlan,
        ..Default::default()
    })
}

#[test]
fn link_add_forms() {
    assert_eq!(
        req("link add link eth0 name mv0 type macvlan"),
        add("eth0", "mv0", MacvlanAttrs::default())
    );
    // Prefixes as iproute2 matches them; "dev" and a bare name instead of "name".
    assert_eq!(
        req("l a l eth0 mv0 ty macvlan"),
        add("eth0", "mv0", MacvlanAttrs::default())
    );
    assert_eq!(
        req("li ad lin eth0 dev mv0 typ macvlan"),
        add("eth0", "mv0", MacvlanAttrs::default())
    );
    assert_eq!(
        req("link add name mv0 link eth0 type macvlan"),
        add("eth0", "mv0", MacvlanAttrs::default())
    );
    assert_eq!(
        req("link add dev mv0 name mv0 link eth0 type macvlan"),
        add("eth0", "mv0", MacvlanAttrs::default())
    );
    assert_eq!(
        req("link add link eth0 name mv0 address 02:00:00:00:00:01 mtu 1400 netns ns1 up type macvlan mode bridge"),
        Request::LinkAdd(LinkAdd {
            lower_netns: None,
            lower: "eth0".into(),
            name: "mv0".into(),
            address: Some(mac("02:00:00:00:00:01")),
            mtu: Some(1400),
            netns: Some(NetnsRef::Name("ns1".into())),
            up: true,
            macvlan: MacvlanAttrs { mode: Some(Mode::Bridge.bits()), ..Default::default() },
            cni: None,
        })
    );
    assert_eq!(
        req("link add link eth0 name mv0 netns 1234 type macvlan").clone(),
        Request::LinkAdd(LinkAdd {
            lower_netns: None,
            lower: "eth0".into(),
            name: "mv0".into(),
            netns: Some(NetnsRef::Pid(1234)),
            ..Default::default()
        })
    );
    match req("link add link eth0 name mv0 netns /var/run/netns/ns1 type macvlan") {
        Request::LinkAdd(a) => assert_eq!(a.netns, Some(NetnsRef::Name("ns1".into()))),
        r => panic!("{r:?}"),
    }
    match req("link add link eth0 name mv0 up down type macvlan") {
        Request::LinkAdd(a) => assert!(!a.up),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        req("link add link eth0 name mv0 type macvlan mode passthru flag nopromisc nodst bcqueuelen 10 bclim -1"),
        add(
            "eth0",
            "mv0",
            MacvlanAttrs {
                mode: Some(8),
                flags: Some(FLAG_NOPROMISC | FLAG_NODST),
                bcqueuelen: Some(10),
                bclim: Some(-1),
                ..Default::default()
            }
        )
    );
    assert_eq!(
        req("link add link eth0 name mv0 type macvlan mode source macaddr set 02:00:00:00:00:01 2:0:0:0:0:2"),
        add(
            "eth0",
            "mv0",
            MacvlanAttrs {
                mode: Some(16),
                macaddr: Some(MacAddrOp::Set(vec![mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02")])),
                ..Default::default()
            }
        )
    );
    // No mode: left to the daemon (vepa). flag null: flags 0.
    assert_eq!(
        req("link add link eth0 name mv0 type macvlan flag null"),
        add(
            "eth0",
            "mv0",
            MacvlanAttrs {
                flags: Some(0),
                ..Default::default()
            }
        )
    );
    // No name at all: the kernel picks macvlan%d; passed on as an empty name.
    assert_eq!(
        req("link add link eth0 type macvlan"),
        add("eth0", "", MacvlanAttrs::default())
    );
}

#[test]
fn link_set_del_show_forms() {
    assert_eq!(
        req("link set mv0 up"),
        Request::LinkSet(LinkSet {
            name: "mv0".into(),
            up: Some(true),
            ..Default::default()
        })
    );
    assert_eq!(
        req("link s dev mv0 down mtu 9000 address 02:00:00:00:00:09 netns 77"),
        Request::LinkSet(LinkSet {
            name: "mv0".into(),
            up: Some(false),
            mtu: Some(9000),
            address: Some(mac("02:00:00:00:00:09")),
            netns: Some(NetnsRef::Pid(77)),
            macvlan: None,
        })
    );
    assert_eq!(
        req("link change mv0 type macvlan macaddr add 02:00:00:00:00:01"),
        Request::LinkSet(LinkSet {
            name: "mv0".into(),
            macvlan: Some(MacvlanAttrs {
                macaddr: Some(MacAddrOp::Add(mac("02:00:00:00:00:01"))),
                ..Default::default()
            }),
            ..Default::default()
        })
    );
    assert_eq!(
        req("link set mv0 type macvlan"),
        Request::LinkSet(LinkSet {
            name: "mv0".into(),
            macvlan: Some(MacvlanAttrs::default()),
            ..Default::default()
        })
    );
    // The kernel ignores a kind without data on a change.
    assert_eq!(
        req("link set mv0 type dummy"),
        Request::LinkSet(LinkSet {
            name: "mv0".into(),
            ..Default::default()
        })
    );
    // "mtu -1" is the C code's "unset" value: no duplicate.
    match req("link set mv0 mtu -1 mtu 1500") {
        Request::LinkSet(s) => assert_eq!(s.mtu, Some(1500)),
        r => panic!("{r:?}"),
    }
    for s in [
        "link del mv0",
        "link delete dev mv0",
        "link d mv0",
        "link del mv0 type macvlan mode bridge",
    ] {
        assert_eq!(req(s), Request::LinkDel { name: "mv0".into() }, "{s}");
    }
    assert_eq!(req("link"), Request::LinkShow { name: None });
    for s in [
        "link show",
        "link list",
        "link lst",
        "link sh",
        "link l",
        "link show up",
        "link show type macvlan",
    ] {
        assert_eq!(req(s), Request::LinkShow { name: None }, "{s}");
    }
    for s in [
        "link show mv0",
        "link show dev mv0",
        "link list mv0 up type macvlan",
    ] {
        assert_eq!(
            req(s),
            Request::LinkShow {
                name: Some("mv0".into())
            },
            "{s}"
        );
    }
    assert_eq!(req("stats"), Request::LinkShow { name: None });
    assert_eq!(req("st"), Request::LinkShow { name: None });
}

#[test]
fn global_options() {
    let o = opts("-s -s -d -j -p link show");
    assert_eq!(
        (o.stats, o.details, o.json, o.pretty, o.human),
        (2, true, true, true, false)
    );
    let o = opts("-stats -statistics -details -json -pretty --socket /tmp/x.sock link");
    assert_eq!(
        (o.stats, o.details, o.json, o.pretty),
        (2, true, true, true)
    );
    assert_eq!(o.socket, std::path::PathBuf::from("/tmp/x.sock"));
    let o = opts("--stats -socket /s -h -iec link");
    assert_eq!((o.stats, o.human, o.iec), (1, true, true));
    assert_eq!(o.socket, std::path::PathBuf::from("/s"));
    assert_eq!(
        opts("link").socket,
        std::path::PathBuf::from(crate::proto::DEFAULT_SOCKET)
    );
    match p("-V") {
        Invocation::Exit(e) => {
            assert_eq!(
                (e.stdout.as_str(), e.code),
                (
                    concat!(
                        "umacvlan utility, umacvlan-",
                        env!("CARGO_PKG_VERSION"),
                        "\n"
                    ),
                    0
                )
            )
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(p("-Version link"), p("-V"));
    assert_eq!(exit("-help"), (USAGE.into(), 255));
    assert_eq!(exit("-he link show"), (USAGE.into(), 255));
    // -h is -human-readable, as in ip; with no object, the usage.
    assert_eq!(exit("-h"), (USAGE.into(), 255));
    assert_eq!(exit(""), (USAGE.into(), 255));
    assert_eq!(exit("help"), (USAGE.into(), 255));
    assert_eq!(exit("--socket"), (USAGE.into(), 255));
    assert_eq!(
        exit("-x link"),
        (
            "Option \"-x\" is unknown, try \"umacvlan -help\".\n".into(),
            255
        )
    );
    assert_eq!(
        exit("--x link"),
        (
            "Option \"-x\" is unknown, try \"umacvlan -help\".\n".into(),
            255
        )
    );
    assert_eq!(
        exit("-o link"),
        (
            "Option \"-o\" is not supported by umacvlan, try \"umacvlan -help\".\n".into(),
            255
        )
    );
    assert_eq!(
        exit("bogus"),
        (
            "Object \"bogus\" is unknown, try \"umacvlan help\".\n".into(),
            1
        )
    );
    assert_eq!(p("daemon --foo"), Invocation::Daemon(argv("--foo")));
    assert_eq!(p("demo"), Invocation::Demo(vec![]));
    // "--" ends the options.
    assert_eq!(req("-- link"), Request::LinkShow { name: None });
}

#[test]
fn link_errors_verbatim() {
    let inc = (INCOMPLETE.to_string(), 255);
    assert_eq!(exit("link add link eth0 name"), inc);
    assert_eq!(exit("link add link"), inc);
    assert_eq!(exit("link add link eth0 name x type"), inc);
    assert_eq!(exit("link set dev"), inc);
    assert_eq!(exit("link show dev"), inc);
    assert_eq!(exit("link add link eth0 name x type macvlan mode"), inc);
    assert_eq!(
        exit("link add link eth0 name x"),
        (
            "Not enough information: \"type\" argument is required\n".into(),
            1
        )
    );
    assert_eq!(
        exit("link add link eth0 name x dev y type macvlan"),
        (
            "both \"name\" and \"dev\" cannot be used when creating devices.\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name x name y type macvlan"),
        (
            "Error: duplicate \"name\": \"y\" is the second value.\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name x mtu 1 mtu 2 type macvlan"),
        (
            "Error: duplicate \"mtu\": \"2\" is the second value.\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name x y z type macvlan"),
        (
            "Error: either \"dev\" is duplicate, or \"z\" is a garbage.\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name x mtu abc type macvlan"),
        (
            "Error: argument \"abc\" is wrong: Invalid \"mtu\" value\n\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name x netns nope type macvlan"),
        (
            "Error: argument \"nope\" is wrong: Invalid \"netns\" value\n\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name x mode bridge type macvlan"),
        (
            "Error: argument \"bridge\" is wrong: Invalid link mode\n\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name abcdefghijklmnop type macvlan"),
        (
            "Error: argument \"abcdefghijklmnop\" is wrong: \"name\" not a valid ifname\n".into(),
            255
        )
    );
    assert_eq!(
        exit("link add link eth0 name x address zz type macvlan"),
        ("\"zz\" is invalid lladdr.\n".into(), 1)
    );
    // The kernel's answers, given before anything changes.
    assert_eq!(
        exit("link add link eth0 name x address 02:00 type macvlan"),
        ("RTNETLINK answers: Invalid argument\n".into(), 2)
    );
    assert_eq!(
        exit("link add name x type macvlan"),
        ("RTNETLINK answers: Invalid argument\n".into(), 2)
    );
    assert_eq!(
        exit("link add link eth0 name x type blah"),
        ("Error: Unknown device type.\n".into(), 2)
    );
    assert_eq!(
        exit("link add link eth0 name x type blah foo"),
        (
            "Garbage instead of arguments \"foo ...\". Try \"umacvlan link help\".\n".into(),
            1
        )
    );
    assert_eq!(
        exit("link add link eth0 name x type blah help"),
        (LINK_USAGE.into(), 255)
    );
    assert_eq!(
        exit("link set mv0 address 02:00"),
        ("Invalid address length 2 - must be 6 bytes\n".into(), 1)
    );
    assert_eq!(
        exit("link set up"),
        (
            "Not enough information: \"dev\" argument is required.\n".into(),
            255
        )
    );
    assert_eq!(exit("link set mv0 name mv1").1, 1);
    assert_eq!(
        exit("link set mv0 txqueuelen 5"),
        (
            "Error: \"txqueuelen\" is not supported by umacvlan.\n".into(),
            1
        )
    );
    assert_eq!(
        exit("link set mv0 t 5"),
        ("Error: \"t\" is not supported by umacvlan.\n".into(), 1)
    );
    assert_eq!(exit("link set mv0 help"), (LINK_USAGE.into(), 255));
    assert_eq!(
        exit("link set mv0 type macvlan help"),
        (MACVLAN_USAGE.into(), 1)
    );
    assert_eq!(
        exit("link set mv0 type macvlan mode foo"),
        (
            "Error: argument of \"mode\" must be \"private\", \"vepa\", \"bridge\", \"passthru\" or \"source\", not \"foo\"\n".into(),
            1
        )
    );
    assert_eq!(
        exit("link set mv0 type macvlan nopromisc"),
        (
            format!("macvlan: nopromisc flag only valid in passthru mode\n{MACVLAN_USAGE}"),
            1
        )
    );
    assert_eq!(
        exit("link show mv0 mv1"),
        (
            "Error: either \"dev\" is duplicate, or \"mv1\" is a garbage.\n".into(),
            255
        )
    );
    assert_eq!(exit("link show help"), (LINK_USAGE.into(), 255));
    assert_eq!(exit("link help"), (LINK_USAGE.into(), 255));
    assert_eq!(exit("link help foo"), (LINK_USAGE.into(), 255));
    assert_eq!(
        exit("link bogus"),
        (
            "Command \"bogus\" is unknown, try \"umacvlan link help\".\n".into(),
            255
        )
    );
    assert_eq!(
        exit("stats foo"),
        (
            "Command \"foo\" is unknown, try \"umacvlan stats help\".\n".into(),
            255
        )
    );
    match p("link help macvlan") {
        Invocation::Exit(e) => assert_eq!(
            (e.stdout.as_str(), e.stderr.as_str(), e.code),
            (MACVLAN_USAGE, "", 0)
        ),
        o => panic!("{o:?}"),
    }
}

#[test]
fn notes_that_do_not_stop_the_command_are_kept() {
    match p("link add link eth0 name x type macvlan mode source macaddr set 02:00:00:00:00:01 mode source") {
        Invocation::Run { stderr, .. } => assert_eq!(stderr, "\"mode\" is invalid lladdr.\n"),
        o => panic!("{o:?}"),
    }
}

fn info(name: &str, idx: u32, mode: Mode) -> LinkInfo {
    LinkInfo {
        ifindex: idx,
        ifname: name.into(),
        link: "eth0".into(),
        link_ifindex: 2,
        netns: None,
        lower_netns: None,
        flags: vec!["BROADCAST".into(), "MULTICAST".into()],
        mtu: 1500,
        operstate: "DOWN".into(),
        qdisc: String::new(),
        address: mac("02:00:00:00:00:01"),
        promiscuity: 0,
        allmulti: 0,
        min_mtu: 68,
        max_mtu: 65535,
        mode: Some(mode),
        nopromisc: false,
        nodst: false,
        bcqueuelen: 1000,
        usedbcqueuelen: 1000,
        bclim: None,
        macaddr_count: 0,
        macaddr_data: vec![],
        stats: Stats64::default(),
        cni: None,
        datapath: None,
        hostaccess: false,
    }
}

fn o(stats: u32, details: bool, json: bool, pretty: bool) -> GlobalOpts {
    GlobalOpts {
        stats,
        details,
        json,
        pretty,
        ..Default::default()
    }
}

#[test]
fn render_errors_like_ip() {
    let add = match p("link add link eth0 name mv0 type macvlan") {
        Invocation::Run { action, .. } => action,
        o => panic!("{o:?}"),
    };
    let set = Action::Set(LinkSet {
        name: "mv0".into(),
        ..Default::default()
    });
    let show = Action::Show(ShowFilter {
        name: Some("mv0".into()),
        ..Default::default()
    });
    let go = GlobalOpts::default();
    let enodev = || Response::Error {
        errno: 19,
        message: None,
    };
    assert_eq!(
        render(&go, &add, enodev()),
        Exit {
            stdout: "".into(),
            stderr: "Cannot find device \"eth0\"\n".into(),
            code: 1
        }
    );
    assert_eq!(
        render(&go, &set, enodev()).stderr,
        "Cannot find device \"mv0\"\n"
    );
    assert_eq!(
        render(&go, &Action::Del { name: "mv0".into() }, enodev()).stderr,
        "Cannot find device \"mv0\"\n"
    );
    assert_eq!(
        render(&go, &show, enodev()),
        Exit {
            stdout: "".into(),
            stderr: "Device \"mv0\" does not exist.\n".into(),
            code: 1
        }
    );
    assert_eq!(
        render(&go, &show, Response::Links { links: vec![] }).stderr,
        "Device \"mv0\" does not exist.\n"
    );
    assert_eq!(
        render(
            &go,
            &add,
            Response::Error {
                errno: 17,
                message: None
            }
        ),
        Exit {
            stdout: "".into(),
            stderr: "RTNETLINK answers: File exists\n".into(),
            code: 2
        }
    );
    assert_eq!(
        render(
            &go,
            &set,
            Response::Error {
                errno: 22,
                message: Some("Invalid MTU 70000 requested, hw max 65535".into())
            }
        ),
        Exit {
            stdout: "".into(),
            stderr: "Error: Invalid MTU 70000 requested, hw max 65535.\n".into(),
            code: 2
        }
    );
    assert_eq!(
        render(
            &go,
            &set,
            Response::Error {
                errno: 22,
                message: Some("Already has a period.".into())
            }
        )
        .stderr,
        "Error: Already has a period.\n"
    );
    // An errno the engine's table lacks still gets strerror's text.
    assert_eq!(
        render(
            &go,
            &set,
            Response::Error {
                errno: 13,
                message: None
            }
        )
        .stderr,
        "RTNETLINK answers: Permission denied\n"
    );
    assert_eq!(render(&go, &add, Response::Ok), Exit::default());
}

#[test]
fn render_show_filters() {
    let mut up = info("mv1", 5, Mode::Bridge);
    up.flags = vec![
        "BROADCAST".into(),
        "MULTICAST".into(),
        "UP".into(),
        "LOWER_UP".into(),
    ];
    let links = vec![info("mv0", 4, Mode::Vepa), up];
    let f = |s: ShowFilter| {
        render(
            &GlobalOpts::default(),
            &Action::Show(s),
            Response::Links {
                links: links.clone(),
            },
        )
    };
    assert_eq!(f(ShowFilter::default()).stdout.lines().count(), 4);
    let only_up = f(ShowFilter {
        up: true,
        ..Default::default()
    })
    .stdout;
    assert!(
        only_up
            .starts_with("5: mv1@eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue"),
        "{only_up}"
    );
    assert_eq!(
        f(ShowFilter {
            kind: Some("veth".into()),
            ..Default::default()
        })
        .stdout,
        ""
    );
    assert_eq!(
        f(ShowFilter {
            name: Some("mv0".into()),
            ..Default::default()
        })
        .stdout
        .lines()
        .count(),
        2
    );
    let j = render(
        &o(0, false, true, false),
        &Action::Show(ShowFilter {
            kind: Some("x".into()),
            ..Default::default()
        }),
        Response::Links { links },
    );
    assert_eq!(j.stdout, "[]\n");
}

#[test]
fn text_layouts() {
    let l = info("mv0", 4, Mode::Vepa);
    assert_eq!(
        print::links(std::slice::from_ref(&l), &o(0, false, false, false)),
        "4: mv0@eth0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n"
    );
    let mut s = info("mv2", 6, Mode::Source);
    s.nodst = true;
    s.bclim = Some(5);
    s.macaddr_count = 2;
    s.macaddr_data = vec![mac("02:aa:00:00:00:02"), mac("02:aa:00:00:00:01")];
    assert_eq!(
        print::links(&[s], &o(0, true, false, false)),
        "6: mv2@eth0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \n    macvlan mode source nodst bcqueuelen 1000 usedbcqueuelen 1000 bclim 5 remotes (2) 02:aa:00:00:00:02 02:aa:00:00:00:01 \n"
    );
    let mut n = info("mv3", 7, Mode::Bridge);
    n.netns = Some("blue".into());
    n.link_ifindex = 3;
    assert_eq!(
        print::links(&[n], &o(0, false, false, false)),
        "7: mv3@if3: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff link-netns blue\n"
    );
}

#[test]
fn hostaccess_is_shown_only_when_on() {
    let mut l = info("mv0", 4, Mode::Bridge);
    let off = print::links(std::slice::from_ref(&l), &o(0, true, false, false));
    assert!(!off.contains("hostaccess"), "{off}");
    let off_j = print::links(std::slice::from_ref(&l), &o(0, true, true, false));
    assert!(!off_j.contains("hostaccess"), "{off_j}");
    l.hostaccess = true;
    let on = print::links(std::slice::from_ref(&l), &o(0, true, false, false));
    assert!(
        on.contains("macvlan mode bridge bcqueuelen 1000 usedbcqueuelen 1000 hostaccess on \n"),
        "{on}"
    );
    let on_j = print::links(&[l], &o(0, true, true, false));
    assert!(
        on_j.contains("\"usedbcqueuelen\":1000,\"hostaccess\":true"),
        "{on_j}"
    );
}

#[test]
fn stats_columns_grow_with_numbers() {
    let mut l = info("mv0", 4, Mode::Vepa);
    l.stats = Stats64 {
        rx_packets: 123_456_789,
        rx_bytes: 98_765_432_109_876,
        rx_errors: 1,
        rx_dropped: 1,
        multicast: 42,
        tx_packets: 7,
        tx_bytes: 700,
        tx_errors: 0,
        tx_dropped: 3,
    };
    let t = print::links(&[l.clone()], &o(2, false, false, false));
    let expect = "\
4: mv0@eth0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000
    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff
    RX:      bytes   packets errors dropped  missed   mcast           
    98765432109876 123456789      1       1       0      42 
    RX errors:        length    crc   frame    fifo overrun
                           0      0       0       0       0 
    TX:      bytes   packets errors dropped carrier collsns           
               700         7      0       3       0       0 
    TX errors:       aborted   fifo  window heartbt transns
                           0      0       0       0       0 
";
    assert_eq!(t, expect);
    let h = print::links(
        &[l],
        &GlobalOpts {
            stats: 1,
            human: true,
            ..Default::default()
        },
    );
    let expect_h = "\
4: mv0@eth0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000
    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff
    RX:  bytes packets errors dropped  missed   mcast           
         98.8T    123M      1       1       0      42 
    TX:  bytes packets errors dropped carrier collsns           
           700       7      0       3       0       0 
";
    assert_eq!(h, expect_h);
}

#[test]
fn json_layouts() {
    let mut s = info("mv2", 6, Mode::Source);
    s.macaddr_count = 1;
    s.macaddr_data = vec![mac("02:aa:00:00:00:01")];
    s.stats.rx_bytes = 5;
    let j = print::links(&[s], &o(1, true, true, false));
    assert_eq!(
        j,
        "[{\"ifindex\":6,\"link\":\"eth0\",\"ifname\":\"mv2\",\"flags\":[\"BROADCAST\",\"MULTICAST\"],\"mtu\":1500,\"qdisc\":\"noop\",\"operstate\":\"DOWN\",\"linkmode\":\"DEFAULT\",\"group\":\"default\",\"txqlen\":1000,\"link_type\":\"ether\",\"address\":\"02:00:00:00:00:01\",\"broadcast\":\"ff:ff:ff:ff:ff:ff\",\"promiscuity\":0,\"allmulti\":0,\"min_mtu\":68,\"max_mtu\":65535,\"linkinfo\":{\"info_kind\":\"macvlan\",\"info_data\":{\"mode\":\"source\",\"bcqueuelen\":1000,\"usedbcqueuelen\":1000,\"macaddr_count\":1,\"macaddr_data\":[\"02:aa:00:00:00:01\"]}},\"stats64\":{\"rx\":{\"bytes\":5,\"packets\":0,\"errors\":0,\"dropped\":0,\"over_errors\":0,\"multicast\":0},\"tx\":{\"bytes\":0,\"packets\":0,\"errors\":0,\"dropped\":0,\"carrier_errors\":0,\"collisions\":0}}}]\n"
    );
    let mut n = info("mv3", 7, Mode::Passthru);
    n.nopromisc = true;
    n.netns = Some("blue".into());
    n.link_ifindex = 3;
    let j = print::links(&[n], &o(0, true, true, true));
    assert_eq!(
        j,
        r#"[ {
        "ifindex": 7,
        "link_index": 3,
        "ifname": "mv3",
        "flags": [ "BROADCAST","MULTICAST" ],
        "mtu": 1500,
        "qdisc": "noop",
        "operstate": "DOWN",
        "linkmode": "DEFAULT",
        "group": "default",
        "txqlen": 1000,
        "link_type": "ether",
        "address": "02:00:00:00:00:01",
        "broadcast": "ff:ff:ff:ff:ff:ff",
        "link_netns": "blue",
        "promiscuity": 0,
        "allmulti": 0,
        "min_mtu": 68,
        "max_mtu": 65535,
        "linkinfo": {
            "info_kind": "macvlan",
            "info_data": {
                "mode": "passthru",
                "nopromisc": true,
                "bcqueuelen": 1000,
                "usedbcqueuelen": 1000
            }
        }
    } ]
"#
    );
}

#[test]
fn proc_net_dev_table() {
    let mut l = info("mv0", 4, Mode::Vepa);
    l.stats = Stats64 {
        rx_bytes: 3193,
        rx_packets: 29,
        rx_errors: 1,
        rx_dropped: 1,
        tx_bytes: 12,
        ..Default::default()
    };
    let t = print::proc_net_dev(&[l]);
    assert_eq!(
        t,
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n   mv0:    3193      29    1    1    0     0          0         0       12       0    0    0    0     0       0          0\n"
    );
    let proc = std::fs::read_to_string("/proc/net/dev").unwrap();
    let head: String = proc.lines().take(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(head, print::PROC_NET_DEV_HEADER);
}
