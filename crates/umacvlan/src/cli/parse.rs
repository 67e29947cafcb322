//! The command line: `ip`'s global options (ip/ip.c), objects, and the `link` grammar of
//! `iplink_parse` / `iplink_modify` / `do_iplink` (ip/iplink.c) and
//! `ipaddr_list_flush_or_save` (ip/ipaddress.c), with iproute2 6.1's texts and exit codes.

use super::cparse::{get_s32, ll_addr_a2n, matches};
use super::macvlan::{parse_macvlan_opts, MACVLAN_USAGE};
use super::{Fail, INCOMPLETE};
use crate::proto::{LinkAdd, LinkSet, NetnsRef, Request, DEFAULT_SOCKET};
use std::path::{Path, PathBuf};
use umacvlan_core::engine::MacvlanAttrs;
use umacvlan_core::wire::MacAddr;

/// Global options (`umacvlan [ OPTIONS ] OBJECT …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalOpts {
    /// `--socket PATH`: the daemon's control socket.
    pub socket: PathBuf,
    /// `-s` count (`-s -s` = 2).
    pub stats: u32,
    /// `-d`.
    pub details: bool,
    /// `-j`.
    pub json: bool,
    /// `-p`.
    pub pretty: bool,
    /// `-h[uman-readable]`: counters with k/M/G suffixes.
    pub human: bool,
    /// `-iec`: powers of 1024 for `-h`.
    pub iec: bool,
}

impl Default for GlobalOpts {
    fn default() -> Self {
        GlobalOpts {
            socket: PathBuf::from(DEFAULT_SOCKET),
            stats: 0,
            details: false,
            json: false,
            pretty: false,
            human: false,
            iec: false,
        }
    }
}

/// `link show` filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShowFilter {
    /// `[dev] NAME`.
    pub name: Option<String>,
    /// `up`: only links with IFF_UP.
    pub up: bool,
    /// `type KIND`: only links of that kind (ours are all `macvlan`).
    pub kind: Option<String>,
}

/// What to ask the daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `link add`.
    Add(LinkAdd),
    /// `link set`.
    Set(LinkSet),
    /// `link delete`.
    Del {
        /// The macvlan.
        name: String,
    },
    /// `link show`.
    Show(ShowFilter),
    /// `stats`: the `/proc/net/dev` table.
    Stats,
}

impl Action {
    /// The protocol request that carries this action.
    pub fn request(&self) -> Request {
        match self {
            Action::Add(a) => Request::LinkAdd(a.clone()),
            Action::Set(s) => Request::LinkSet(s.clone()),
            Action::Del { name } => Request::LinkDel { name: name.clone() },
            Action::Show(f) => Request::LinkShow {
                name: f.name.clone(),
            },
            Action::Stats => Request::LinkShow { name: None },
        }
    }
}

/// Text to print and an exit status, with nothing to ask the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub code: i32,
}

/// What a command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Invocation {
    /// `umacvlan daemon …`.
    Daemon(Vec<String>),
    /// `umacvlan demo …`.
    Demo(Vec<String>),
    /// Print and exit (help, version, argument errors, errors the kernel would give
    /// before anything changes).
    Exit(Exit),
    /// `monitor`, `trace`, `capture` (see [`super::observe`]).
    Observe {
        /// Global options.
        opts: GlobalOpts,
        /// `monitor`, `trace` or `capture`.
        object: &'static str,
        /// The words after the object.
        words: Vec<String>,
    },
    /// Ask the daemon.
    Run {
        /// Global options.
        opts: GlobalOpts,
        /// The request.
        action: Action,
        /// Notes iproute2 prints on stderr while parsing a command that still goes ahead.
        stderr: String,
    },
}

/// Top-level usage (`umacvlan help`), printed on stderr with status 255 as `ip` does.
pub const USAGE: &str = "Usage: umacvlan [ OPTIONS ] OBJECT { COMMAND | help }\n\
\x20      umacvlan daemon [ ARGS ]\n\
\x20      umacvlan demo [ ARGS ]\n\
where  OBJECT := { link | stats | monitor | trace | capture | help }\n\
\x20      OPTIONS := { -V[ersion] | -s[tatistics] | -d[etails] |\n\
\x20                   -h[uman-readable] | -iec | -j[son] | -p[retty] |\n\
\x20                   --socket PATH }\n";

/// `umacvlan link help` (ip's `iplink_usage`, cut down to what umacvlan does).
pub const LINK_USAGE: &str = "Usage: umacvlan link add [link DEV] [ name ] NAME\n\
\t\t    [ address LLADDR ]\n\
\t\t    [ mtu MTU ]\n\
\t\t    [ netns { PID | NAME } ]\n\
\t\t    [ up ]\n\
\t\t    type TYPE [ ARGS ]\n\
\n\
\tumacvlan link delete { DEVICE | dev DEVICE } [ type TYPE [ ARGS ] ]\n\
\n\
\tumacvlan link set { DEVICE | dev DEVICE }\n\
\t\t\t[ { up | down } ]\n\
\t\t\t[ address LLADDR ]\n\
\t\t\t[ mtu MTU ]\n\
\t\t\t[ netns { PID | NAME } ]\n\
\t\t\t[ type TYPE ARGS ]\n\
\n\
\tumacvlan link show [ DEVICE ] [up] [type TYPE]\n\
\n\
\tumacvlan link help [ TYPE ]\n\
\n\
TYPE := { macvlan }\n";

/// `umacvlan stats help`.
pub const STATS_USAGE: &str = "Usage: umacvlan stats\n\
\tprints the counters of all macvlans in the format of /proc/net/dev\n";

fn usage_exit(text: &str) -> Exit {
    Exit {
        stdout: String::new(),
        stderr: text.to_string(),
        code: 255,
    }
}

fn err_exit(stderr: String, code: i32) -> Exit {
    Exit {
        stdout: String::new(),
        stderr,
        code,
    }
}

/// `ip`'s global options, in `ip`'s matching order; the ones umacvlan does not implement
/// are recognised (so that prefixes resolve as in `ip`) and refused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    Loops,
    Family,
    Human,
    Iec,
    Stats,
    Details,
    Resolve,
    Oneline,
    Timestamp,
    Tshort,
    Version,
    Force,
    Batch,
    Brief,
    Json,
    Pretty,
    Rcvbuf,
    Color,
    Help,
    Netns,
    Numeric,
    All,
}

fn lookup_opt(opt: &str) -> Option<Opt> {
    use Opt::*;
    if matches!(opt, "-4" | "-6" | "-0" | "-M" | "-B") {
        return Some(Family);
    }
    if opt == "-echo" {
        return Some(Force);
    }
    let table: &[(&str, Opt)] = &[
        ("-loops", Loops),
        ("-family", Family),
        ("-human", Human),
        ("-human-readable", Human),
        ("-iec", Iec),
        ("-stats", Stats),
        ("-statistics", Stats),
        ("-details", Details),
        ("-resolve", Resolve),
        ("-oneline", Oneline),
        ("-timestamp", Timestamp),
        ("-tshort", Tshort),
        ("-Version", Version),
        ("-force", Force),
        ("-batch", Batch),
        ("-brief", Brief),
        ("-json", Json),
        ("-pretty", Pretty),
        ("-rcvbuf", Rcvbuf),
    ];
    for (name, o) in table {
        // "-4" etc. were exact matches above; the rest use matches().
        if matches(opt, name) {
            return Some(*o);
        }
    }
    let color_word = opt.split('=').next().unwrap_or("");
    if matches(color_word, "-color") {
        return Some(Color);
    }
    let rest: &[(&str, Opt)] = &[
        ("-help", Help),
        ("-netns", Netns),
        ("-Numeric", Numeric),
        ("-all", All),
    ];
    rest.iter().find(|(n, _)| matches(opt, n)).map(|(_, o)| *o)
}

/// Parses a whole command line (argv without argv\[0\]).
pub fn parse(args: &[String]) -> Invocation {
    parse_with(args, &netns_file_exists)
}

/// `netns_get_fd(name) >= 0`: `/var/run/netns/NAME`, or a path when `name` has a `/`.
fn netns_file_exists(name: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let path = if name.contains('/') {
        PathBuf::from(name)
    } else {
        Path::new("/var/run/netns").join(name)
    };
    // Non-blocking: a FIFO must not hang the command (iproute2's plain open would).
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .is_ok()
}

/// [`parse`] with the netns lookup supplied (for tests).
pub fn parse_with(args: &[String], netns_exists: &dyn Fn(&str) -> bool) -> Invocation {
    match args.first().map(String::as_str) {
        Some("daemon") => return Invocation::Daemon(args[1..].to_vec()),
        Some("demo") => return Invocation::Demo(args[1..].to_vec()),
        _ => {}
    }
    let mut opts = GlobalOpts::default();
    let mut i = 0;
    while i < args.len() {
        let raw = args[i].as_str();
        if raw == "--" {
            i += 1;
            break;
        }
        if !raw.starts_with('-') {
            break;
        }
        let opt = if raw.starts_with("--") {
            &raw[1..]
        } else {
            raw
        };
        if opt == "-socket" {
            i += 1;
            let Some(p) = args.get(i) else {
                return Invocation::Exit(usage_exit(USAGE));
            };
            opts.socket = PathBuf::from(p);
            i += 1;
            continue;
        }
        match lookup_opt(opt) {
            Some(Opt::Human) => opts.human = true,
            Some(Opt::Iec) => opts.iec = true,
            Some(Opt::Stats) => opts.stats += 1,
            Some(Opt::Details) => opts.details = true,
            Some(Opt::Json) => opts.json = true,
            Some(Opt::Pretty) => opts.pretty = true,
            Some(Opt::Help) => return Invocation::Exit(usage_exit(USAGE)),
            Some(Opt::Version) => {
                return Invocation::Exit(Exit {
                    stdout: format!("umacvlan utility, umacvlan-{}\n", env!("CARGO_PKG_VERSION")),
                    stderr: String::new(),
                    code: 0,
                })
            }
            Some(_) => {
                return Invocation::Exit(err_exit(
                    format!(
                        "Option \"{opt}\" is not supported by umacvlan, try \"umacvlan -help\".\n"
                    ),
                    255,
                ))
            }
            None => {
                return Invocation::Exit(err_exit(
                    format!("Option \"{opt}\" is unknown, try \"umacvlan -help\".\n"),
                    255,
                ))
            }
        }
        i += 1;
    }
    let rest = &args[i..];
    let Some(object) = rest.first() else {
        return Invocation::Exit(usage_exit(USAGE));
    };
    let words = &rest[1..];
    let res = if matches(object, "link") {
        parse_link(words, netns_exists)
    } else if matches(object, "help") {
        Err(usage_exit(USAGE))
    } else if matches(object, "stats") {
        parse_stats(words)
    } else if let Some(o) = ["monitor", "trace", "capture"]
        .into_iter()
        .find(|o| matches(object, o))
    {
        return Invocation::Observe {
            opts,
            object: o,
            words: words.to_vec(),
        };
    } else {
        Err(err_exit(
            format!("Object \"{object}\" is unknown, try \"umacvlan help\".\n"),
            1,
        ))
    };
    match res {
        Ok((action, stderr)) => Invocation::Run {
            opts,
            action,
            stderr,
        },
        Err(e) => Invocation::Exit(e),
    }
}

type Parsed = Result<(Action, String), Exit>;

fn parse_stats(words: &[String]) -> Parsed {
    match words.first() {
        None => Ok((Action::Stats, String::new())),
        Some(w) if matches(w, "help") => Err(usage_exit(STATS_USAGE)),
        Some(w) => Err(err_exit(
            format!("Command \"{w}\" is unknown, try \"umacvlan stats help\".\n"),
            255,
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Set,
    Del,
}

fn parse_link(words: &[String], netns_exists: &dyn Fn(&str) -> bool) -> Parsed {
    let Some(cmd) = words.first() else {
        return Ok((Action::Show(ShowFilter::default()), String::new()));
    };
    let rest = &words[1..];
    if matches(cmd, "add") {
        return modify(Cmd::Add, rest, netns_exists);
    }
    if matches(cmd, "set") || matches(cmd, "change") {
        return modify(Cmd::Set, rest, netns_exists);
    }
    if matches(cmd, "replace") {
        return Err(err_exit(
            format!(
                "Command \"{cmd}\" is not supported by umacvlan, try \"umacvlan link help\".\n"
            ),
            255,
        ));
    }
    if matches(cmd, "delete") {
        return modify(Cmd::Del, rest, netns_exists);
    }
    if matches(cmd, "show") || matches(cmd, "lst") || matches(cmd, "list") {
        return parse_show(rest);
    }
    if matches(cmd, "xstats") || matches(cmd, "afstats") || matches(cmd, "property") {
        return Err(err_exit(
            format!(
                "Command \"{cmd}\" is not supported by umacvlan, try \"umacvlan link help\".\n"
            ),
            255,
        ));
    }
    if matches(cmd, "help") {
        return Err(match rest.first().map(String::as_str) {
            Some("macvlan") => Exit {
                stdout: MACVLAN_USAGE.to_string(),
                stderr: String::new(),
                code: 0,
            },
            _ => usage_exit(LINK_USAGE),
        });
    }
    Err(err_exit(
        format!("Command \"{cmd}\" is unknown, try \"umacvlan link help\".\n"),
        255,
    ))
}

fn not_supported(word: &str) -> Exit {
    err_exit(
        format!("Error: \"{word}\" is not supported by umacvlan.\n"),
        1,
    )
}

fn invarg(msg: &str, arg: &str) -> Exit {
    err_exit(format!("Error: argument \"{arg}\" is wrong: {msg}\n"), 255)
}

fn duparg(key: &str, arg: &str) -> Exit {
    err_exit(
        format!("Error: duplicate \"{key}\": \"{arg}\" is the second value.\n"),
        255,
    )
}

fn duparg2(key: &str, arg: &str) -> Exit {
    err_exit(
        format!("Error: either \"{key}\" is duplicate, or \"{arg}\" is a garbage.\n"),
        255,
    )
}

fn incomplete() -> Exit {
    err_exit(INCOMPLETE.to_string(), 255)
}

/// `check_ifname`: what the kernel's `dev_valid_name` accepts (without the length rule
/// for `check_altifname`).
fn valid_ifname(name: &str, check_len: bool) -> bool {
    !name.is_empty()
        && (!check_len || name.len() < 16)
        && !name
            .bytes()
            .any(|b| b == b'/' || matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
}

/// "the kernel said": what `rtnl_talk` prints for an errno without an extack message.
fn rtnetlink(errno: umacvlan_core::engine::Errno) -> Exit {
    err_exit(format!("RTNETLINK answers: {}\n", errno.message()), 2)
}

/// Which iplink_parse keyword a word is, in iplink_parse's order. `None`: a device name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kw {
    Up,
    Down,
    Name,
    Link,
    Address,
    Mtu,
    Netns,
    Type,
    /// A keyword of `ip link` that umacvlan does not implement; `bool`: takes an argument.
    Unsupported(bool),
    /// `mode default|dormant` (the link mode, not the macvlan mode).
    LinkMode,
    /// `vf` / `protodown_reason` / xdp: not supported, argument shape irrelevant.
    UnsupportedNoParse,
    Help,
}

fn keyword(w: &str) -> Option<Kw> {
    use Kw::*;
    Some(match w {
        "up" => Up,
        "down" => Down,
        "name" => Name,
        "index" => Unsupported(true),
        _ if matches(w, "link") => Link,
        _ if matches(w, "address") => Address,
        _ if matches(w, "broadcast") || w == "brd" => Unsupported(true),
        _ if matches(w, "txqueuelen") || w == "qlen" || matches(w, "txqlen") => Unsupported(true),
        "mtu" => Mtu,
        "xdpgeneric" | "xdpdrv" | "xdpoffload" | "xdp" => UnsupportedNoParse,
        "netns" => Netns,
        "multicast" | "allmulticast" | "promisc" | "trailers" | "arp" | "carrier" => {
            Unsupported(true)
        }
        "vf" => UnsupportedNoParse,
        _ if matches(w, "master") => Unsupported(true),
        "vrf" => Unsupported(true),
        _ if matches(w, "nomaster") => Unsupported(false),
        _ if matches(w, "dynamic") => Unsupported(true),
        _ if matches(w, "type") => Type,
        _ if matches(w, "alias") => Unsupported(true),
        "group" | "state" => Unsupported(true),
        "mode" => LinkMode,
        _ if matches(w, "numtxqueues") || matches(w, "numrxqueues") => Unsupported(true),
        _ if matches(w, "addrgenmode") => Unsupported(true),
        _ if matches(w, "link-netns") || matches(w, "link-netnsid") => Unsupported(true),
        "protodown" => Unsupported(true),
        "protodown_reason" => UnsupportedNoParse,
        "gso_max_size" | "gso_max_segs" | "gro_max_size" | "parentdev" => Unsupported(true),
        _ if matches(w, "help") => Help,
        _ => return None,
    })
}

/// `iplink_parse` + `iplink_modify` for add / set / delete.
fn modify(cmd: Cmd, words: &[String], netns_exists: &dyn Fn(&str) -> bool) -> Parsed {
    let mut up: Option<bool> = None;
    let mut name: Option<String> = None;
    // The device, and whether it is the very string `name` points to (C compares pointers).
    let mut dev: Option<String> = None;
    let mut dev_is_name = false;
    let mut link: Option<String> = None;
    let mut address: Option<Vec<u8>> = None;
    let mut mtu: Option<i32> = None;
    let mut netns: Option<NetnsRef> = None;
    let mut kind: Option<String> = None;
    let mut stderr = String::new();
    let mut i = 0;

    macro_rules! next_arg {
        () => {{
            i += 1;
            if i >= words.len() {
                return Err(incomplete());
            }
            words[i].as_str()
        }};
    }

    while i < words.len() {
        let w = words[i].as_str();
        match keyword(w) {
            Some(Kw::Up) => up = Some(true),
            Some(Kw::Down) => up = Some(false),
            Some(Kw::Name) => {
                let a = next_arg!();
                if name.is_some() {
                    return Err(duparg("name", a));
                }
                if !valid_ifname(a, true) {
                    return Err(invarg("\"name\" not a valid ifname", a));
                }
                name = Some(a.to_string());
                if dev.is_none() {
                    dev = Some(a.to_string());
                    dev_is_name = true;
                }
            }
            Some(Kw::Link) => link = Some(next_arg!().to_string()),
            Some(Kw::Address) => {
                let a = next_arg!();
                let r = ll_addr_a2n(a, 32);
                stderr.push_str(&r.stderr);
                match r.bytes {
                    Some(b) => address = Some(b),
                    None => return Err(err_exit(stderr, 1)),
                }
            }
            Some(Kw::Mtu) => {
                let a = next_arg!();
                // iproute2 keeps -1 as "not given", so "mtu -1 mtu 5" is no duplicate.
                if mtu.is_some_and(|m| m != -1) {
                    return Err(duparg("mtu", a));
                }
                match get_s32(a) {
                    Some(v) => mtu = Some(v),
                    None => return Err(invarg("Invalid \"mtu\" value\n", a)),
                }
            }
            Some(Kw::Netns) => {
                let a = next_arg!();
                if netns.is_some() {
                    return Err(duparg("netns", a));
                }
                netns = Some(if netns_exists(a) {
                    netns_ref_for(a)
                } else if let Some(pid) = get_s32(a) {
                    NetnsRef::Pid(pid as u32)
                } else {
                    return Err(invarg("Invalid \"netns\" value\n", a));
                });
            }
            Some(Kw::Type) => {
                kind = Some(next_arg!().to_string());
                i += 1;
                break;
            }
            Some(Kw::LinkMode) => {
                let a = next_arg!();
                if a.eq_ignore_ascii_case("dormant") {
                    return Err(not_supported("mode dormant"));
                } else if !a.eq_ignore_ascii_case("default") {
                    return Err(invarg("Invalid link mode\n", a));
                }
            }
            Some(Kw::Unsupported(takes_arg)) => {
                if takes_arg {
                    let _ = next_arg!();
                }
                return Err(not_supported(w));
            }
            Some(Kw::UnsupportedNoParse) => return Err(not_supported(w)),
            Some(Kw::Help) => return Err(usage_exit(LINK_USAGE)),
            None => {
                let a = if w == "dev" { next_arg!() } else { w };
                let same_as_name = (dev.is_none() && name.is_none()) || dev_is_name;
                if !same_as_name {
                    return Err(duparg2("dev", a));
                }
                if !valid_ifname(a, false) {
                    return Err(invarg("\"dev\" not a valid ifname", a));
                }
                dev = Some(a.to_string());
                dev_is_name = false;
            }
        }
        i += 1;
    }
    let type_args = &words[i.min(words.len())..];

    // "Allow ip link add dev and ip link add name".
    if name.is_none() {
        name = dev.clone();
    } else if dev.is_none() {
        dev = name.clone();
    }

    if cmd != Cmd::Add {
        if let (Some(_), Some(a)) = (&dev, &address) {
            if a.len() != 6 {
                stderr.push_str(&format!(
                    "Invalid address length {} - must be 6 bytes\n",
                    a.len()
                ));
                return Err(err_exit(stderr, 1));
            }
        }
        if dev.is_none() {
            stderr.push_str("Not enough information: \"dev\" argument is required.\n");
            return Err(err_exit(stderr, 255));
        }
        if name != dev {
            stderr.push_str("Error: renaming (\"name\") is not supported by umacvlan.\n");
            return Err(err_exit(stderr, 1));
        }
    } else if name != dev {
        stderr.push_str("both \"name\" and \"dev\" cannot be used when creating devices.\n");
        return Err(err_exit(stderr, 255));
    }

    // iplink_modify: the type and its options.
    let mut macvlan: Option<MacvlanAttrs> = None;
    match kind.as_deref() {
        Some("macvlan") => {
            let attrs = if type_args.is_empty() {
                MacvlanAttrs::default()
            } else {
                match parse_macvlan_opts(type_args, &mut stderr) {
                    Ok(a) => a,
                    Err(Fail(code)) => return Err(err_exit(stderr, code)),
                }
            };
            macvlan = Some(attrs);
        }
        Some(_) => {
            if let Some(first) = type_args.first() {
                if matches(first, "help") {
                    return Err(usage_exit(LINK_USAGE));
                }
                stderr.push_str(&format!(
                    "Garbage instead of arguments \"{first} ...\". Try \"umacvlan link help\".\n"
                ));
                return Err(err_exit(stderr, 1));
            }
            if cmd == Cmd::Add {
                // The kernel knows no such kind (ours knows only macvlan).
                stderr.push_str("Error: Unknown device type.\n");
                return Err(err_exit(stderr, 2));
            }
            // set/delete: the kernel ignores a kind without data.
        }
        None => {
            if cmd == Cmd::Add {
                stderr.push_str("Not enough information: \"type\" argument is required\n");
                return Err(err_exit(stderr, 1));
            }
        }
    }

    let dev = dev.unwrap_or_default();
    let action = match cmd {
        Cmd::Add => {
            // What the kernel's macvlan_validate / macvlan_common_newlink answer first.
            let address = match address {
                None => None,
                Some(b) if b.len() == 6 => Some(MacAddr::from_slice(&b)),
                Some(_) => {
                    let e = rtnetlink(umacvlan_core::engine::Errno::EINVAL);
                    return Err(Exit {
                        stderr: stderr + &e.stderr,
                        ..e
                    });
                }
            };
            let Some(lower) = link else {
                let e = rtnetlink(umacvlan_core::engine::Errno::EINVAL);
                return Err(Exit {
                    stderr: stderr + &e.stderr,
                    ..e
                });
            };
            Action::Add(LinkAdd {
                lower,
                lower_netns: None,
                name: dev,
                address,
                mtu: mtu.map(|m| m as u32),
                netns,
                up: up == Some(true),
                macvlan: macvlan.unwrap_or_default(),
                cni: None,
            })
        }
        Cmd::Set => Action::Set(LinkSet {
            name: dev,
            up,
            address: address.map(|b| MacAddr::from_slice(&b)),
            mtu: mtu.map(|m| m as u32),
            netns,
            macvlan,
        }),
        Cmd::Del => Action::Del { name: dev },
    };
    Ok((action, stderr))
}

/// The [`NetnsRef`] for a `netns` word that names an existing namespace file.
fn netns_ref_for(a: &str) -> NetnsRef {
    if !a.contains('/') {
        return NetnsRef::Name(a.to_string());
    }
    for dir in ["/var/run/netns/", "/run/netns/"] {
        if let Some(n) = a.strip_prefix(dir) {
            if !n.is_empty() && !n.contains('/') {
                return NetnsRef::Name(n.to_string());
            }
        }
    }
    if let Some(pid) = a
        .strip_prefix("/proc/")
        .and_then(|r| r.strip_suffix("/ns/net"))
        .and_then(|p| p.parse().ok())
    {
        return NetnsRef::Pid(pid);
    }
    // Any other path: passed on as iproute2 would open it.
    NetnsRef::Name(a.to_string())
}

/// `ipaddr_list_flush_or_save` for `link show`.
fn parse_show(words: &[String]) -> Parsed {
    let mut f = ShowFilter::default();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        match w {
            "up" => f.up = true,
            "type" => {
                i += 1;
                let Some(k) = words.get(i) else {
                    return Err(incomplete());
                };
                f.kind = Some(k.clone());
            }
            "to" | "scope" | "label" | "group" | "master" | "vrf" => {
                i += 1;
                if i >= words.len() {
                    return Err(incomplete());
                }
                return Err(not_supported(w));
            }
            "nomaster" => return Err(not_supported(w)),
            _ => {
                let a = if w == "dev" {
                    i += 1;
                    match words.get(i) {
                        Some(a) => a.as_str(),
                        None => return Err(incomplete()),
                    }
                } else if matches(w, "help") {
                    return Err(usage_exit(LINK_USAGE));
                } else {
                    w
                };
                if f.name.is_some() {
                    return Err(duparg2("dev", a));
                }
                f.name = Some(a.to_string());
            }
        }
        i += 1;
    }
    Ok((Action::Show(f), String::new()))
}
