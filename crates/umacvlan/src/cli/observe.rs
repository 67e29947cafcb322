//! `umacvlan monitor`, `umacvlan trace`, `umacvlan capture`: what the switch decides, live
//! (one line per frame, pwru-style), explained (an `ofproto/trace`-style tree) and captured
//! (pcapng, each packet commented with its decision).

use super::cparse::matches;
use super::parse::{Exit, GlobalOpts};
use super::{client, INCOMPLETE};
use crate::proto::{
    Direction, FrameSpec, MonitorEvent, MonitorLine, MonitorRequest, Request, Response,
    TraceReport, TraceRequest,
};
use std::io::{BufRead, Write};
use umacvlan_core::wire::MacAddr;

/// `umacvlan monitor help`.
pub const MONITOR_USAGE: &str = "Usage: umacvlan monitor [ dev NAME ] [ drops ] [ -j[son] ]\n";
/// `umacvlan trace help`.
pub const TRACE_USAGE: &str =
    "Usage: umacvlan trace { dev NAME | lower NAME | host NAME } frame FRAME\n\
FRAME := src LLADDR dst LLADDR [ vlan VID ] [ ethertype TYPE ] [ size BYTES ]\n";
/// `umacvlan capture help`.
pub const CAPTURE_USAGE: &str =
    "Usage: umacvlan capture dev NAME [ rx | tx | both ] [ -c COUNT ] [ -w FILE ]\n";

/// What an observe command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObserveCmd {
    /// `monitor`.
    Monitor {
        /// The request.
        req: MonitorRequest,
        /// JSON lines.
        json: bool,
    },
    /// `trace`.
    Trace {
        /// The request.
        req: TraceRequest,
        /// JSON.
        json: bool,
    },
    /// `capture`.
    Capture {
        /// The request.
        req: MonitorRequest,
        /// Stop after this many packets.
        count: Option<u64>,
        /// Write pcapng here (`-` is stdout); else print one line per packet.
        file: Option<String>,
    },
}

fn fail(text: String, code: i32) -> Exit {
    Exit {
        stdout: String::new(),
        stderr: text,
        code,
    }
}

fn invarg(msg: &str, arg: &str) -> Exit {
    fail(format!("Error: argument \"{arg}\" is wrong: {msg}\n"), 255)
}

fn duparg(key: &str, arg: &str) -> Exit {
    fail(
        format!("Error: duplicate \"{key}\": \"{arg}\" is the second value.\n"),
        255,
    )
}

fn garbage(arg: &str) -> Exit {
    fail(
        format!("Error: either \"dev\" is duplicate, or \"{arg}\" is a garbage.\n"),
        255,
    )
}

fn incomplete() -> Exit {
    fail(INCOMPLETE.into(), 255)
}

/// Takes the value after a keyword.
fn next<'a>(words: &'a [String], i: &mut usize) -> Result<&'a str, Exit> {
    *i += 1;
    words.get(*i).map(String::as_str).ok_or_else(incomplete)
}

fn mac(arg: &str, what: &str) -> Result<MacAddr, Exit> {
    arg.parse::<MacAddr>()
        .map_err(|_| invarg(&format!("invalid \"{what}\" address"), arg))
}

/// A number in C's `strtoul(…, 0)` spellings: decimal, `0x` hex, leading-0 octal.
fn number(arg: &str) -> Option<u64> {
    if let Some(h) = arg.strip_prefix("0x").or_else(|| arg.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if arg.len() > 1 && arg.starts_with('0') {
        u64::from_str_radix(&arg[1..], 8).ok()
    } else {
        arg.parse().ok()
    }
}

/// `src MAC dst MAC [vlan N] [ethertype X] [size N]`.
pub fn parse_frame(words: &[String]) -> Result<FrameSpec, Exit> {
    let (mut src, mut dst, mut vlan, mut et, mut size) = (None, None, None, None, None);
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if w == "src" {
            let v = next(words, &mut i)?;
            if src.is_some() {
                return Err(duparg("src", v));
            }
            src = Some(mac(v, "src")?);
        } else if w == "dst" {
            let v = next(words, &mut i)?;
            if dst.is_some() {
                return Err(duparg("dst", v));
            }
            dst = Some(mac(v, "dst")?);
        } else if w == "vlan" {
            let v = next(words, &mut i)?;
            if vlan.is_some() {
                return Err(duparg("vlan", v));
            }
            match number(v) {
                Some(n) if n <= 4095 => vlan = Some(n as u16),
                _ => return Err(invarg("invalid VLAN id (0-4095)", v)),
            }
        } else if w == "ethertype" {
            let v = next(words, &mut i)?;
            if et.is_some() {
                return Err(duparg("ethertype", v));
            }
            et = Some(match v {
                "ipv4" | "ip" => 0x0800,
                "arp" => 0x0806,
                "ipv6" => 0x86dd,
                _ => match number(v) {
                    Some(n) if n <= 0xffff => n as u16,
                    _ => return Err(invarg("invalid ethertype", v)),
                },
            });
        } else if w == "size" {
            let v = next(words, &mut i)?;
            if size.is_some() {
                return Err(duparg("size", v));
            }
            match number(v) {
                Some(n) if n <= FrameSpec::MAX_SIZE as u64 => size = Some(n as u32),
                _ => return Err(invarg("invalid frame size (0-65535)", v)),
            }
        } else {
            return Err(invarg("unknown frame field", w));
        }
        i += 1;
    }
    let Some(src) = src else {
        return Err(fail("Error: argument \"src\" is required\n".into(), 255));
    };
    let Some(dst) = dst else {
        return Err(fail("Error: argument \"dst\" is required\n".into(), 255));
    };
    Ok(FrameSpec {
        src,
        dst,
        vlan,
        ethertype: et.unwrap_or(0x0800),
        size: size.unwrap_or(60),
    })
}

fn is_json_flag(w: &str) -> bool {
    matches!(w, "-j" | "-json" | "--json" | "json")
}

/// Parses the words after `monitor`, `trace` or `capture`.
pub fn parse(opts: &GlobalOpts, object: &str, words: &[String]) -> Result<ObserveCmd, Exit> {
    let help = |u: &str| {
        Err(Exit {
            stdout: String::new(),
            stderr: u.to_string(),
            code: 255,
        })
    };
    let mut json = opts.json;
    let mut i = 0;
    match object {
        "monitor" => {
            let mut req = MonitorRequest::default();
            while i < words.len() {
                let w = words[i].as_str();
                if w == "help" {
                    return help(MONITOR_USAGE);
                } else if w == "dev" {
                    let v = next(words, &mut i)?;
                    if req.dev.is_some() {
                        return Err(duparg("dev", v));
                    }
                    req.dev = Some(v.to_string());
                } else if matches(w, "drops") {
                    req.drops = true;
                } else if is_json_flag(w) {
                    json = true;
                } else {
                    return Err(garbage(w));
                }
                i += 1;
            }
            Ok(ObserveCmd::Monitor { req, json })
        }
        "trace" => {
            let (mut dev, mut lower, mut host) = (None, None, None);
            while i < words.len() {
                let w = words[i].as_str();
                if w == "help" {
                    return help(TRACE_USAGE);
                } else if w == "dev" || w == "lower" || w == "host" {
                    let v = next(words, &mut i)?;
                    if dev.is_some() || lower.is_some() || host.is_some() {
                        return Err(duparg("dev", v));
                    }
                    match w {
                        "dev" => dev = Some(v.to_string()),
                        "lower" => lower = Some(v.to_string()),
                        _ => host = Some(v.to_string()),
                    }
                } else if is_json_flag(w) {
                    json = true;
                } else if w == "frame" {
                    let frame = parse_frame(&words[i + 1..])?;
                    if dev.is_none() && lower.is_none() && host.is_none() {
                        return Err(fail(
                            "Not enough information: \"dev\" or \"lower\" argument is required.\n"
                                .into(),
                            255,
                        ));
                    }
                    return Ok(ObserveCmd::Trace {
                        req: TraceRequest {
                            dev,
                            lower,
                            host,
                            frame,
                        },
                        json,
                    });
                } else {
                    return Err(garbage(w));
                }
                i += 1;
            }
            Err(fail(
                "Not enough information: \"frame\" argument is required.\n".into(),
                255,
            ))
        }
        _ => {
            let mut req = MonitorRequest {
                snaplen: crate::daemon::monitor::SNAP_MAX as u32,
                ..MonitorRequest::default()
            };
            let (mut count, mut file, mut dir) = (None, None, None);
            while i < words.len() {
                let w = words[i].as_str();
                if w == "help" {
                    return help(CAPTURE_USAGE);
                } else if w == "dev" {
                    let v = next(words, &mut i)?;
                    if req.dev.is_some() {
                        return Err(duparg("dev", v));
                    }
                    req.dev = Some(v.to_string());
                } else if let Some(d) = [
                    ("rx", Direction::Rx),
                    ("tx", Direction::Tx),
                    ("both", Direction::Both),
                ]
                .into_iter()
                .find(|(n, _)| *n == w)
                {
                    if dir.is_some() {
                        return Err(duparg("direction", w));
                    }
                    dir = Some(d.1);
                } else if w == "-c" {
                    let v = next(words, &mut i)?;
                    match v.parse::<u64>() {
                        Ok(n) if n > 0 => count = Some(n),
                        _ => return Err(invarg("invalid packet count", v)),
                    }
                } else if w == "-w" {
                    let v = next(words, &mut i)?;
                    file = Some(v.to_string());
                } else {
                    return Err(garbage(w));
                }
                i += 1;
            }
            if req.dev.is_none() {
                return Err(fail(
                    "Not enough information: \"dev\" argument is required.\n".into(),
                    255,
                ));
            }
            req.direction = dir.unwrap_or_default();
            Ok(ObserveCmd::Capture { req, count, file })
        }
    }
}

/// Runs `monitor`, `trace` or `capture`; returns the exit status.
pub fn main(opts: &GlobalOpts, object: &str, words: &[String]) -> i32 {
    let cmd = match parse(opts, object, words) {
        Ok(c) => c,
        Err(e) => return emit(&e),
    };
    let connected = client::Client::connect(&opts.socket, client::DEFAULT_TIMEOUT)
        .and_then(|mut c| c.hello().map(|_| c));
    let mut c = match connected {
        Ok(c) => c,
        Err(client::ClientError::Connect(_, e))
            if e.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return emit(&fail(
                "RTNETLINK answers: Operation not permitted\n".into(),
                2,
            ))
        }
        Err(e) => return emit(&fail(format!("{e}\n"), 1)),
    };
    let (request, dev) = match &cmd {
        ObserveCmd::Trace { req, .. } => (
            Request::Trace(req.clone()),
            req.dev.clone().or(req.lower.clone()),
        ),
        ObserveCmd::Monitor { req, .. } | ObserveCmd::Capture { req, .. } => {
            (Request::Monitor(req.clone()), req.dev.clone())
        }
    };
    let resp = match c.call(request) {
        Ok(r) => r,
        Err(e) => return emit(&fail(format!("{e}\n"), 1)),
    };
    match resp {
        Response::Error { errno, message } => {
            if errno == libc::ENODEV {
                if let Some(d) = dev {
                    return emit(&fail(format!("Cannot find device \"{d}\"\n"), 1));
                }
            }
            let text = match message {
                Some(m) => format!("Error: {}.\n", m.trim_end_matches('.')),
                None => format!(
                    "RTNETLINK answers: {}\n",
                    std::io::Error::from_raw_os_error(errno)
                        .to_string()
                        .split(" (os error")
                        .next()
                        .unwrap_or_default()
                ),
            };
            emit(&fail(text, 2))
        }
        Response::Trace { trace } => match &cmd {
            ObserveCmd::Trace { json: true, .. } => emit(&Exit {
                stdout: serde_json::to_string(&trace).unwrap_or_default() + "\n",
                stderr: String::new(),
                code: 0,
            }),
            _ => emit(&Exit {
                stdout: trace_text(&trace),
                stderr: String::new(),
                code: 0,
            }),
        },
        Response::Ok if !matches!(cmd, ObserveCmd::Trace { .. }) => stream(c, &cmd),
        other => emit(&fail(
            format!("umacvlan: bad answer from the daemon: {other:?}\n"),
            1,
        )),
    }
}

fn emit(e: &Exit) -> i32 {
    let _ = std::io::stdout().write_all(e.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(e.stderr.as_bytes());
    e.code
}

/// `trace`'s text: the frame, the entry point, the indented steps, the verdict.
pub fn trace_text(r: &TraceReport) -> String {
    let mut s = format!("Frame: {}\nEntry: {}\n\n", r.frame, r.entry);
    for l in &r.trace.lines {
        s.push_str(&"    ".repeat(l.depth as usize + 1));
        s.push_str(&l.text);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&format!("Verdict: {}\n", r.trace.verdict));
    s.push_str(&format!(
        "Copies: {}{}\n",
        r.trace.copies,
        if r.trace.drop { " (a drop)" } else { "" }
    ));
    s
}

/// `HH:MM:SS.uuuuuu` (UTC) of a Unix time in nanoseconds.
fn clock(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ns % 1_000_000_000 / 1000
    )
}

fn ethertype_text(et: u16) -> String {
    match et {
        0x0800 => "ipv4".into(),
        0x0806 => "arp".into(),
        0x86dd => "ipv6".into(),
        0x8808 => "pause".into(),
        0 => "-".into(),
        x => format!("0x{x:04x}"),
    }
}

/// One `monitor` line (pwru-style): time, port, entry, addresses, type, the rule, copies and
/// counters.
pub fn event_text(e: &MonitorEvent) -> String {
    let entry = match (e.entry.as_str(), &e.dev) {
        ("macvlan", Some(d)) => format!("from {d}"),
        ("bcqueue", _) => "bcqueue".into(),
        ("host", _) => "from host".into(),
        _ => "from wire".into(),
    };
    let vlan = e.vlan.map_or(String::new(), |v| format!(" vlan {v}"));
    let to = if e.to.is_empty() {
        String::new()
    } else {
        format!(" ({})", e.to.join(","))
    };
    let counters = if e.counters.is_empty() {
        String::new()
    } else {
        format!(" [{}]", e.counters.join(" "))
    };
    let mut extra = String::new();
    if e.lower_stack {
        extra.push_str(" +lower");
    }
    if e.to_wire {
        extra.push_str(" +wire");
    }
    if e.to_host {
        extra.push_str(" +host");
    }
    format!(
        "{} {} {entry} {} > {} {}{vlan} len {}: {}; copies {}{to}{extra}{counters}{}",
        clock(e.time_ns),
        e.lower,
        e.src,
        e.dst,
        ethertype_text(e.ethertype),
        e.len,
        e.rule,
        e.copies,
        if e.drop { " DROP" } else { "" }
    )
}

/// Reads the stream until the daemon closes it (or `-c` is reached).
fn stream(c: client::Client, cmd: &ObserveCmd) -> i32 {
    let mut reader = c.into_stream();
    let stdout = std::io::stdout();
    let mut out: Box<dyn Write> = match cmd {
        ObserveCmd::Capture { file: Some(f), .. } if f != "-" => match std::fs::File::create(f) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                return emit(&fail(format!("umacvlan: cannot write {f}: {e}\n"), 1));
            }
        },
        _ => Box::new(stdout.lock()),
    };
    let mut pcap = match cmd {
        ObserveCmd::Capture {
            file: Some(_), req, ..
        } => {
            let w = PcapngWriter::new(req.dev.as_deref().unwrap_or(""), req.snaplen);
            if out
                .write_all(&w.header())
                .and_then(|_| out.flush())
                .is_err()
            {
                return 1;
            }
            Some(w)
        }
        _ => None,
    };
    let (count, json, capture_dev) = match cmd {
        ObserveCmd::Monitor { json, .. } => (None, *json, None),
        ObserveCmd::Capture { count, req, .. } => (*count, false, req.dev.clone()),
        ObserveCmd::Trace { .. } => (None, false, None),
    };
    let mut seen = 0u64;
    let mut lost_said = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(l) = serde_json::from_slice::<MonitorLine>(&line) else {
            let _ = writeln!(std::io::stderr(), "umacvlan: bad line from the daemon");
            return 1;
        };
        let wrote = match l {
            MonitorLine::Lost(n) => {
                lost_said = n;
                if json && pcap.is_none() {
                    writeln!(out, "{{\"lost\":{n}}}")
                } else {
                    writeln!(std::io::stderr(), "umacvlan: {n} events lost so far")
                }
            }
            MonitorLine::Event(e) => {
                seen += 1;
                let r = if let Some(w) = &mut pcap {
                    let outbound = e.dev.is_some() && e.dev == capture_dev;
                    out.write_all(&w.packet(&e, outbound))
                } else if json {
                    serde_json::to_writer(&mut out, &e)
                        .map_err(std::io::Error::other)
                        .and_then(|_| out.write_all(b"\n"))
                } else {
                    writeln!(out, "{}", event_text(&e))
                };
                r.and_then(|_| out.flush())
            }
        };
        if wrote.is_err() {
            break;
        }
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    let _ = out.flush();
    if pcap.is_some() && lost_said > 0 {
        let _ = writeln!(std::io::stderr(), "umacvlan: {lost_said} events lost");
    }
    0
}

/// A pcapng writer for one interface, by hand: the format needs three block types (Section
/// Header, Interface Description, Enhanced Packet with options), a page of code, and we want
/// exact control over the comment and flags options; no dependency needed.
pub struct PcapngWriter {
    name: String,
    snaplen: u32,
}

fn pad4(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

fn option(b: &mut Vec<u8>, code: u16, value: &[u8]) {
    b.extend_from_slice(&code.to_le_bytes());
    b.extend_from_slice(&(value.len() as u16).to_le_bytes());
    b.extend_from_slice(value);
    pad4(b);
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let total = (12 + body.len()) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

/// `opt_comment`.
const OPT_COMMENT: u16 = 1;
const OPT_END: u16 = 0;
/// `if_name`.
const IF_NAME: u16 = 2;
/// `if_tsresol`.
const IF_TSRESOL: u16 = 9;
/// `epb_flags`.
const EPB_FLAGS: u16 = 2;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u16 = 1;

impl PcapngWriter {
    /// A writer for macvlan `name`, frames cut at `snaplen`.
    pub fn new(name: &str, snaplen: u32) -> PcapngWriter {
        PcapngWriter {
            name: name.to_string(),
            snaplen,
        }
    }

    /// Section Header and Interface Description blocks (nanosecond timestamps).
    pub fn header(&self) -> Vec<u8> {
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut idb = Vec::new();
        idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&self.snaplen.to_le_bytes());
        option(&mut idb, IF_NAME, self.name.as_bytes());
        option(&mut idb, IF_TSRESOL, &[9]);
        option(&mut idb, OPT_END, &[]);
        let mut out = block(0x0A0D_0D0A, &shb);
        out.extend(block(0x0000_0001, &idb));
        out
    }

    /// One Enhanced Packet Block: the captured bytes, the decision as `opt_comment`, and the
    /// direction (`epb_flags`: inbound, or outbound for frames the macvlan sent).
    pub fn packet(&self, e: &MonitorEvent, outbound: bool) -> Vec<u8> {
        let data: Vec<u8> = e
            .data
            .as_deref()
            .unwrap_or("")
            .as_bytes()
            .chunks(2)
            .filter_map(|h| std::str::from_utf8(h).ok())
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((e.time_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(e.time_ns as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&e.len.to_le_bytes());
        b.extend_from_slice(&data);
        pad4(&mut b);
        option(
            &mut b,
            OPT_COMMENT,
            format!("umacvlan: {}", e.rule).as_bytes(),
        );
        let dir: u32 = if outbound { 2 } else { 1 };
        option(&mut b, EPB_FLAGS, &dir.to_le_bytes());
        option(&mut b, OPT_END, &[]);
        block(0x0000_0006, &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn trace_frame_spec_parses_with_defaults_and_iproute2_errors() {
        let o = GlobalOpts::default();
        let c = parse(
            &o,
            "trace",
            &w("dev mv0 frame src 02:00:00:00:00:01 dst ff:ff:ff:ff:ff:ff vlan 5 size 0x40"),
        )
        .unwrap();
        let ObserveCmd::Trace { req, json } = c else {
            panic!()
        };
        assert!(!json);
        assert_eq!(req.dev.as_deref(), Some("mv0"));
        assert_eq!(req.frame.vlan, Some(5));
        assert_eq!((req.frame.ethertype, req.frame.size), (0x0800, 64));
        let f = req.frame.build();
        assert_eq!(f.len(), 64);
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);

        let err = |s: &str| parse(&o, "trace", &w(s)).unwrap_err();
        assert_eq!(
            err("dev mv0 frame src zz dst 02:00:00:00:00:01").stderr,
            "Error: argument \"zz\" is wrong: invalid \"src\" address\n"
        );
        assert_eq!(
            err("dev mv0 frame src 02:00:00:00:00:01").stderr,
            "Error: argument \"dst\" is required\n"
        );
        assert_eq!(
            err("dev mv0 frame src 02:00:00:00:00:01 dst 02:00:00:00:00:02 vlan 4096").stderr,
            "Error: argument \"4096\" is wrong: invalid VLAN id (0-4095)\n"
        );
        assert_eq!(err("dev mv0 frame src").code, 255);
        assert_eq!(err("dev mv0 frame src").stderr, INCOMPLETE);
        assert_eq!(
            err("frame src 02:00:00:00:00:01 dst 02:00:00:00:00:02").stderr,
            "Not enough information: \"dev\" or \"lower\" argument is required.\n"
        );
        assert_eq!(
            err("dev mv0 lower eth0 frame").stderr,
            "Error: duplicate \"dev\": \"eth0\" is the second value.\n"
        );
        assert_eq!(
            err("lower eth0 host eth0 frame").stderr,
            "Error: duplicate \"dev\": \"eth0\" is the second value.\n"
        );
        let ObserveCmd::Trace { req, .. } = parse(
            &o,
            "trace",
            &w("host eth0 frame src 02:00:00:00:00:01 dst ff:ff:ff:ff:ff:ff"),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (req.host.as_deref(), req.lower, req.dev),
            (Some("eth0"), None, None)
        );
        assert_eq!(
            err("dev mv0 frame src 02:00:00:00:00:01 dst 02:00:00:00:00:02 size 70000").stderr,
            "Error: argument \"70000\" is wrong: invalid frame size (0-65535)\n"
        );
        assert_eq!(
            err("dev mv0 bogus").stderr,
            "Error: either \"dev\" is duplicate, or \"bogus\" is a garbage.\n"
        );
    }

    #[test]
    fn monitor_and_capture_words() {
        let o = GlobalOpts::default();
        assert_eq!(
            parse(&o, "monitor", &w("dev mv1 drops -j")).unwrap(),
            ObserveCmd::Monitor {
                req: MonitorRequest {
                    dev: Some("mv1".into()),
                    drops: true,
                    ..MonitorRequest::default()
                },
                json: true
            }
        );
        let ObserveCmd::Capture { req, count, file } =
            parse(&o, "capture", &w("dev mv1 rx -c 3 -w -")).unwrap()
        else {
            panic!()
        };
        assert_eq!(req.direction, Direction::Rx);
        assert_eq!((count, file.as_deref()), (Some(3), Some("-")));
        assert!(req.snaplen > 0);
        assert_eq!(
            parse(&o, "capture", &w("rx")).unwrap_err().stderr,
            "Not enough information: \"dev\" argument is required.\n"
        );
        assert_eq!(
            parse(&o, "capture", &w("dev mv1 -c 0")).unwrap_err().stderr,
            "Error: argument \"0\" is wrong: invalid packet count\n"
        );
    }

    #[test]
    fn pcapng_blocks_are_well_formed() {
        let p = PcapngWriter::new("mv1", 256);
        let h = p.header();
        assert_eq!(&h[..4], &0x0A0D_0D0Au32.to_le_bytes());
        let shb_len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        assert_eq!(&h[shb_len - 4..shb_len], &h[4..8]);
        let e = MonitorEvent {
            time_ns: 1_700_000_000_123_456_789,
            len: 60,
            rule: "bridge: to sibling mv1".into(),
            data: Some("ff".repeat(60)),
            ..MonitorEvent::default()
        };
        let b = p.packet(&e, false);
        assert_eq!(b.len() % 4, 0);
        let total = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, b.len());
        assert_eq!(&b[total - 4..], &b[4..8]);
        assert!(b.windows(22).any(|x| x == b"bridge: to sibling mv1"));
    }
}
