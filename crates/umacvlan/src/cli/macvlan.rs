//! `type macvlan …` options: iproute2's `macvlan_parse_opt` (ip/iplink_macvlan.c), keyword
//! for keyword and error text for error text, with current iproute2's `bclim`.

use super::cparse::{get_s32, get_u32, ll_addr_a2n, matches};
use super::{Fail, INCOMPLETE};
use umacvlan_core::engine::{MacAddrOp, MacvlanAttrs, Mode, FLAG_NODST, FLAG_NOPROMISC};
use umacvlan_core::wire::MacAddr;

/// The usage text of `type macvlan help` (current iproute2's, which knows `bclim`).
pub const MACVLAN_USAGE: &str = "Usage: ... macvlan mode MODE [flag MODE_FLAG] MODE_OPTS [bcqueuelen BC_QUEUE_LEN] [bclim BCLIM]\n\
\n\
MODE: private | vepa | bridge | passthru | source\n\
MODE_FLAG: null | nopromisc | nodst\n\
MODE_OPTS: for mode \"source\":\n\
\tmacaddr { { add | del } <macaddr> | set [ <macaddr> [ <macaddr>  ... ] ] | flush }\n\
BC_QUEUE_LEN: Length of the rx queue for broadcast/multicast: [0-4294967295]\n\
BCLIM: Threshold for broadcast queueing: 32-bit integer\n";

fn mac6(bytes: &[u8]) -> Option<MacAddr> {
    (bytes.len() == 6).then(|| MacAddr::from_slice(bytes))
}

/// Parses the words after `type macvlan`. Text iproute2 prints on stderr (errors, and the
/// `"X" is invalid lladdr.` notes `macaddr set` leaves even on success) goes to `stderr`.
/// Errors carry iproute2's exit status: 1, or 255 for an incomplete command line.
pub fn parse_macvlan_opts(words: &[String], stderr: &mut String) -> Result<MacvlanAttrs, Fail> {
    // ll_addr_a2n cuts its argument at the first ':' in place; `macaddr set` can then show
    // the cut word to the next round of the loop, so work on a copy.
    let mut argv: Vec<String> = words.to_vec();
    let mut attrs = MacvlanAttrs::default();
    let mut mode: u32 = 0;
    let mut flags: u16 = 0;
    let mut has_flags = false;
    let mut i = 0;

    let fail = |stderr: &mut String, text: String| -> Fail {
        stderr.push_str(&text);
        Fail(1)
    };
    macro_rules! next_arg {
        () => {{
            i += 1;
            if i >= argv.len() {
                stderr.push_str(INCOMPLETE);
                return Err(Fail(255));
            }
        }};
    }

    while i < argv.len() {
        let w = argv[i].clone();
        if matches(&w, "mode") {
            next_arg!();
            match argv[i].parse::<Mode>() {
                Ok(m) => mode = m.bits(),
                Err(()) => {
                    return Err(fail(
                        stderr,
                        format!(
                            "Error: argument of \"mode\" must be \"private\", \"vepa\", \"bridge\", \"passthru\" or \"source\", not \"{}\"\n",
                            argv[i]
                        ),
                    ))
                }
            }
        } else if matches(&w, "flag") {
            next_arg!();
            match argv[i].as_str() {
                "nopromisc" => flags |= FLAG_NOPROMISC,
                "nodst" => flags |= FLAG_NODST,
                "null" => {}
                other => {
                    return Err(fail(
                        stderr,
                        format!(
                            "Error: argument of \"flag\" must be \"nopromisc\", \"nodst\" or \"null\", not \"{other}\"\n"
                        ),
                    ))
                }
            }
            has_flags = true;
        } else if matches(&w, "macaddr") {
            next_arg!();
            match argv[i].as_str() {
                "add" | "del" => {
                    let add = argv[i] == "add";
                    next_arg!();
                    let r = ll_addr_a2n(&argv[i], 6);
                    stderr.push_str(&r.stderr);
                    let Some(mac) = r.bytes.as_deref().and_then(mac6) else {
                        return Err(Fail(1));
                    };
                    attrs.macaddr = Some(if add {
                        MacAddrOp::Add(mac)
                    } else {
                        MacAddrOp::Del(mac)
                    });
                }
                "set" => {
                    let mut macs = Vec::new();
                    while i + 1 < argv.len() {
                        i += 1;
                        let r = ll_addr_a2n(&argv[i], 6);
                        stderr.push_str(&r.stderr);
                        match r.bytes.as_deref().and_then(mac6) {
                            Some(mac) => macs.push(mac),
                            None => {
                                argv[i] = r.arg_after;
                                i -= 1;
                                break;
                            }
                        }
                    }
                    attrs.macaddr = Some(MacAddrOp::Set(macs));
                }
                "flush" => attrs.macaddr = Some(MacAddrOp::Flush),
                _ => return Err(fail(stderr, MACVLAN_USAGE.to_string())),
            }
        } else if matches(&w, "nopromisc") {
            flags |= FLAG_NOPROMISC;
            has_flags = true;
        } else if matches(&w, "nodst") {
            flags |= FLAG_NODST;
            has_flags = true;
        } else if matches(&w, "bcqueuelen") {
            next_arg!();
            match get_u32(&argv[i]) {
                Some(v) => attrs.bcqueuelen = Some(v),
                None => {
                    return Err(fail(
                        stderr,
                        format!(
                            "Error: argument of \"bcqueuelen\" must be a positive integer [0-4294967295], not \"{}\"\n",
                            argv[i]
                        ),
                    ))
                }
            }
        } else if w == "bclim" {
            next_arg!();
            match get_s32(&argv[i]) {
                Some(v) => attrs.bclim = Some(v),
                None => {
                    return Err(fail(
                        stderr,
                        format!("Error: illegal value for \"bclim\": \"{}\"\n", argv[i]),
                    ))
                }
            }
        } else if w == "hostaccess" {
            // umacvlan's own option (iproute2 has none): exact keyword, as for `bclim`.
            next_arg!();
            attrs.hostaccess = Some(match argv[i].as_str() {
                "on" => true,
                "off" => false,
                other => {
                    return Err(fail(
                        stderr,
                        format!(
                            "Error: argument of \"hostaccess\" must be \"on\" or \"off\", not \"{other}\"\n"
                        ),
                    ))
                }
            });
        } else if matches(&w, "help") {
            return Err(fail(stderr, MACVLAN_USAGE.to_string()));
        } else {
            return Err(fail(
                stderr,
                format!("macvlan: unknown option \"{w}\"?\n{MACVLAN_USAGE}"),
            ));
        }
        i += 1;
    }

    if mode != 0 {
        attrs.mode = Some(mode);
    }
    if has_flags {
        if flags & FLAG_NOPROMISC != 0 && mode != Mode::Passthru.bits() {
            return Err(fail(
                stderr,
                format!("macvlan: nopromisc flag only valid in passthru mode\n{MACVLAN_USAGE}"),
            ));
        }
        attrs.flags = Some(flags);
    }
    Ok(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn ok(s: &str) -> (MacvlanAttrs, String) {
        let mut e = String::new();
        let a = parse_macvlan_opts(&words(s), &mut e).unwrap_or_else(|f| panic!("{s}: {f:?} {e}"));
        (a, e)
    }

    fn err(s: &str) -> (String, i32) {
        let mut e = String::new();
        let f = parse_macvlan_opts(&words(s), &mut e).expect_err(s);
        (e, f.0)
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn modes_flags_and_numbers() {
        assert_eq!(ok("").0, MacvlanAttrs::default());
        assert_eq!(ok("mode bridge").0.mode, Some(4));
        assert_eq!(ok("m private").0.mode, Some(1));
        assert_eq!(ok("mod vepa mode source").0.mode, Some(16));
        let (a, _) = ok("mode passthru flag nopromisc");
        assert_eq!((a.mode, a.flags), (Some(8), Some(FLAG_NOPROMISC)));
        let (a, _) = ok("mode passthru nop nod");
        assert_eq!(a.flags, Some(FLAG_NOPROMISC | FLAG_NODST));
        assert_eq!(ok("flag null").0.flags, Some(0));
        assert_eq!(ok("fl nodst").0.flags, Some(FLAG_NODST));
        assert_eq!(ok("nodst").0.flags, Some(FLAG_NODST));
        assert_eq!(ok("bcqueuelen 0x10").0.bcqueuelen, Some(16));
        assert_eq!(ok("b 5").0.bcqueuelen, Some(5));
        assert_eq!(ok("bclim -1").0.bclim, Some(-1));
        assert_eq!(ok("bclim 0x20").0.bclim, Some(32));
    }

    #[test]
    fn macaddr_forms() {
        assert_eq!(
            ok("macaddr add 2:0:0:0:0:1").0.macaddr,
            Some(MacAddrOp::Add(mac("02:00:00:00:00:01")))
        );
        assert_eq!(
            ok("ma del 02:00:00:00:00:01").0.macaddr,
            Some(MacAddrOp::Del(mac("02:00:00:00:00:01")))
        );
        assert_eq!(ok("macaddr flush").0.macaddr, Some(MacAddrOp::Flush));
        assert_eq!(ok("macaddr set").0.macaddr, Some(MacAddrOp::Set(vec![])));
        let (a, e) = ok("macaddr set 02:00:00:00:00:01 02:00:00:00:00:02 mode source");
        assert_eq!(
            a.macaddr,
            Some(MacAddrOp::Set(vec![
                mac("02:00:00:00:00:01"),
                mac("02:00:00:00:00:02")
            ]))
        );
        assert_eq!(a.mode, Some(16));
        // iproute2 tries "mode" as an address first and says so.
        assert_eq!(e, "\"mode\" is invalid lladdr.\n");
        let (a, e) = ok("macaddr set bcqueuelen 7");
        assert_eq!((a.bcqueuelen, e.as_str()), (Some(7), ""));
    }

    #[test]
    fn errors_verbatim() {
        assert_eq!(
            err("mode foo"),
            (
                "Error: argument of \"mode\" must be \"private\", \"vepa\", \"bridge\", \"passthru\" or \"source\", not \"foo\"\n".into(),
                1
            )
        );
        assert_eq!(
            err("flag x"),
            ("Error: argument of \"flag\" must be \"nopromisc\", \"nodst\" or \"null\", not \"x\"\n".into(), 1)
        );
        assert_eq!(
            err("bcqueuelen -1"),
            ("Error: argument of \"bcqueuelen\" must be a positive integer [0-4294967295], not \"-1\"\n".into(), 1)
        );
        assert_eq!(
            err("bclim x"),
            ("Error: illegal value for \"bclim\": \"x\"\n".into(), 1)
        );
        assert_eq!(
            err("bclim 2147483648"),
            (
                "Error: illegal value for \"bclim\": \"2147483648\"\n".into(),
                1
            )
        );
        assert_eq!(
            err("foo"),
            (
                format!("macvlan: unknown option \"foo\"?\n{MACVLAN_USAGE}"),
                1
            )
        );
        assert_eq!(
            err("bcl 1").0.lines().next(),
            Some("macvlan: unknown option \"bcl\"?")
        );
        assert_eq!(err("help"), (MACVLAN_USAGE.into(), 1));
        assert_eq!(err("h"), (MACVLAN_USAGE.into(), 1));
        assert_eq!(err("macaddr foo"), (MACVLAN_USAGE.into(), 1));
        assert_eq!(
            err("nopromisc"),
            (
                format!("macvlan: nopromisc flag only valid in passthru mode\n{MACVLAN_USAGE}"),
                1
            )
        );
        assert_eq!(err("mode bridge flag nopromisc").1, 1);
        assert_eq!(err("macaddr add 02:00"), (String::new(), 1));
        assert_eq!(
            err("macaddr add zz:0:0:0:0:0"),
            ("\"zz\" is invalid lladdr.\n".into(), 1)
        );
        assert_eq!(
            err("macaddr set 02:00:00:00:00:01 02:00:00:00:00:zz"),
            (
                format!(
                    "\"zz\" is invalid lladdr.\nmacvlan: unknown option \"02\"?\n{MACVLAN_USAGE}"
                ),
                1
            )
        );
        assert_eq!(ok("hostaccess on").0.hostaccess, Some(true));
        assert_eq!(ok("mode vepa hostaccess off").0.hostaccess, Some(false));
        assert_eq!(ok("mode vepa").0.hostaccess, None);
        assert_eq!(
            err("hostaccess yes"),
            (
                "Error: argument of \"hostaccess\" must be \"on\" or \"off\", not \"yes\"\n".into(),
                1
            )
        );
        // umacvlan's own keyword: exact, no prefix (`host` is no abbreviation of it).
        assert_eq!(err("host on").1, 1);
        for s in [
            "hostaccess",
            "mode",
            "flag",
            "macaddr",
            "macaddr add",
            "bcqueuelen",
            "bclim",
        ] {
            assert_eq!(err(s), (INCOMPLETE.into(), 255), "{s}");
        }
    }
}
