//! The C parsing primitives iproute2's grammar is built on, reproduced to the letter:
//! `matches()`, `strtol`/`strtoul` with base 0 (`get_u32`, `get_s32`, `get_integer`) and
//! `ll_addr_a2n` (with its `sscanf("%x")` per group and its error text).

/// iproute2's `matches(prefix, word) == 0`: `prefix` is a non-empty prefix of `word`.
pub fn matches(prefix: &str, word: &str) -> bool {
    !prefix.is_empty() && word.as_bytes().starts_with(prefix.as_bytes())
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoul`/`strtol` with base 0 read from the front of a string.
struct StrTo {
    /// A `-` sign was read.
    neg: bool,
    /// The magnitude, saturated at `u64::MAX` (`overflow` says when it saturated).
    mag: u64,
    /// The magnitude does not fit in 64 bits.
    overflow: bool,
    /// Bytes consumed (0 when no digits were found: C then sets `endptr = nptr`).
    used: usize,
}

/// `strto[u]l(s, &end, base)`; `base` is 0 (auto-detect) or 16 (as `%x` reads).
fn strto(s: &str, base: u32) -> StrTo {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let mut radix = base;
    let hex_prefix = i + 1 < b.len() && b[i] == b'0' && (b[i + 1] | 0x20) == b'x';
    let hex_digit_after = i + 2 < b.len() && (b[i + 2] as char).is_ascii_hexdigit();
    if (base == 0 || base == 16) && hex_prefix && hex_digit_after {
        radix = 16;
        i += 2;
    } else if base == 0 {
        radix = if i < b.len() && b[i] == b'0' { 8 } else { 10 };
    }
    let start = i;
    let mut mag: u64 = 0;
    let mut overflow = false;
    while i < b.len() {
        let Some(d) = (b[i] as char).to_digit(radix) else {
            break;
        };
        match mag
            .checked_mul(radix as u64)
            .and_then(|m| m.checked_add(d as u64))
        {
            Some(m) => mag = m,
            None => {
                overflow = true;
                mag = u64::MAX;
            }
        }
        i += 1;
    }
    let used = if i == start { 0 } else { i };
    StrTo {
        neg,
        mag,
        overflow,
        used,
    }
}

/// `get_u32(&v, arg, 0) == 0`: the whole string is an unsigned number in `[0, 2^32)`
/// (decimal, `0x` hex or `0` octal; a leading `-` wraps, so only `-0` survives).
pub fn get_u32(arg: &str) -> Option<u32> {
    let r = strto(arg, 0);
    if arg.is_empty() || r.used == 0 || r.used != arg.len() || r.overflow {
        return None;
    }
    let v = if r.neg { r.mag.wrapping_neg() } else { r.mag };
    u32::try_from(v).ok()
}

/// `get_s32(&v, arg, 0) == 0` (and `get_integer`, which accepts the same set on Linux).
pub fn get_s32(arg: &str) -> Option<i32> {
    let r = strto(arg, 0);
    if arg.is_empty() || r.used == 0 || r.used != arg.len() || r.overflow {
        return None;
    }
    let v: i128 = if r.neg {
        -(r.mag as i128)
    } else {
        r.mag as i128
    };
    i32::try_from(v).ok()
}

/// `sscanf(seg, "%x", &temp) == 1`, then the value as the `int` it is stored into.
fn scan_hex_int(seg: &str) -> Option<i32> {
    let r = strto(seg, 16);
    if r.used == 0 {
        return None;
    }
    // strtoul saturates at ULONG_MAX on overflow, whatever the sign.
    let v = if r.overflow {
        u64::MAX
    } else if r.neg {
        r.mag.wrapping_neg()
    } else {
        r.mag
    };
    Some(v as u32 as i32)
}

/// iproute2's `get_addr_1(…, AF_INET)` for a dotted address: up to four `strtoul` base-0
/// parts (`1.2.3` is `1.2.3.0`), each at most 255; no `:` allowed.
fn get_addr_ipv4(arg: &str) -> Option<[u8; 4]> {
    if arg.contains(':') {
        return None;
    }
    let mut ap = [0u8; 4];
    let mut cp = arg;
    for (i, slot) in ap.iter_mut().enumerate() {
        let r = strto(cp, 0);
        let n = if r.overflow {
            u64::MAX
        } else if r.neg {
            r.mag.wrapping_neg()
        } else {
            r.mag
        };
        if n > 255 || r.used == 0 {
            return None;
        }
        *slot = n as u8;
        let rest = &cp[r.used..];
        if rest.is_empty() {
            break;
        }
        if i == 3 || !rest.starts_with('.') {
            return None;
        }
        cp = &rest[1..];
    }
    Some(ap)
}

/// The result of iproute2's `ll_addr_a2n(buf, len, arg)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlAddr {
    /// The return value: number of bytes, or `None` for -1.
    pub bytes: Option<Vec<u8>>,
    /// Text printed on stderr (`"X" is invalid lladdr.\n`), possibly empty.
    pub stderr: String,
    /// `arg` as the caller sees it afterwards: the C code cuts the string at its first `:`.
    pub arg_after: String,
}

/// iproute2's `ll_addr_a2n`: colon-separated `%x` groups (at most `len` of them; one more
/// makes the return value `len + 1`), or a dotted IPv4 address (4 bytes).
pub fn ll_addr_a2n(arg: &str, len: usize) -> LlAddr {
    let arg_after = match arg.find(':') {
        Some(p) => arg[..p].to_string(),
        None => arg.to_string(),
    };
    if arg.contains('.') {
        return match get_addr_ipv4(arg) {
            Some(a) if len >= 4 => LlAddr {
                bytes: Some(a.to_vec()),
                stderr: String::new(),
                arg_after,
            },
            Some(_) => LlAddr {
                bytes: None,
                stderr: String::new(),
                arg_after,
            },
            None => LlAddr {
                bytes: None,
                stderr: format!("\"{arg}\" is invalid lladdr.\n"),
                arg_after,
            },
        };
    }
    let mut out = Vec::new();
    let mut rest = arg;
    let mut i = 0;
    while i < len {
        let (seg, next) = match rest.find(':') {
            Some(p) => (&rest[..p], Some(&rest[p + 1..])),
            None => (rest, None),
        };
        match scan_hex_int(seg) {
            Some(t) if (0..=255).contains(&t) => out.push(t as u8),
            _ => {
                return LlAddr {
                    bytes: None,
                    stderr: format!("\"{seg}\" is invalid lladdr.\n"),
                    arg_after,
                };
            }
        }
        match next {
            None => break,
            Some(n) => rest = n,
        }
        i += 1;
    }
    if i == len {
        // The loop ran out with groups left: C returns len + 1 (and the caller sees a
        // wrong length); keep the bytes read but report the count.
        out.push(0);
    }
    LlAddr {
        bytes: Some(out),
        stderr: String::new(),
        arg_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_is_nonempty_prefix() {
        assert!(matches("l", "link"));
        assert!(matches("link", "link"));
        assert!(!matches("links", "link"));
        assert!(!matches("", "link"));
        assert!(!matches("bclim", "bcqueuelen"));
    }

    #[test]
    fn get_u32_like_strtoul_base0() {
        assert_eq!(get_u32("10"), Some(10));
        assert_eq!(get_u32("0x10"), Some(16));
        assert_eq!(get_u32("010"), Some(8));
        assert_eq!(get_u32("4294967295"), Some(u32::MAX));
        assert_eq!(get_u32("4294967296"), None);
        assert_eq!(get_u32("-0"), Some(0));
        assert_eq!(get_u32("-1"), None);
        assert_eq!(get_u32(" 7"), Some(7));
        assert_eq!(get_u32("+7"), Some(7));
        assert_eq!(get_u32("7 "), None);
        assert_eq!(get_u32("08"), None);
        assert_eq!(get_u32("0x"), None);
        assert_eq!(get_u32(""), None);
        assert_eq!(get_u32("abc"), None);
        assert_eq!(get_u32("99999999999999999999999"), None);
    }

    #[test]
    fn get_s32_like_strtol_base0() {
        assert_eq!(get_s32("-1"), Some(-1));
        assert_eq!(get_s32("-2147483648"), Some(i32::MIN));
        assert_eq!(get_s32("2147483648"), None);
        assert_eq!(get_s32("0x7fffffff"), Some(i32::MAX));
        assert_eq!(get_s32("1.5"), None);
    }

    #[test]
    fn ll_addr_like_iproute2() {
        let ok = ll_addr_a2n("02:0:a:B:0c:ff", 6);
        assert_eq!(ok.bytes, Some(vec![2, 0, 0xa, 0xb, 0xc, 0xff]));
        assert_eq!(ok.arg_after, "02");
        let bad = ll_addr_a2n("02:zz:00:00:00:00", 6);
        assert_eq!(bad.bytes, None);
        assert_eq!(bad.stderr, "\"zz\" is invalid lladdr.\n");
        assert_eq!(ll_addr_a2n("100", 6).stderr, "\"100\" is invalid lladdr.\n");
        assert_eq!(ll_addr_a2n("02:00", 6).bytes.map(|b| b.len()), Some(2));
        assert_eq!(
            ll_addr_a2n("1:2:3:4:5:6:7", 6).bytes.map(|b| b.len()),
            Some(7)
        );
        // sscanf("%x") stops at the first non-hex character.
        assert_eq!(ll_addr_a2n("bridge", 6).bytes, Some(vec![0xb]));
        assert_eq!(
            ll_addr_a2n("mode", 6).stderr,
            "\"mode\" is invalid lladdr.\n"
        );
        assert_eq!(ll_addr_a2n("1.2.3.4", 6).bytes, Some(vec![1, 2, 3, 4]));
        assert_eq!(ll_addr_a2n("1.2.3", 6).bytes, Some(vec![1, 2, 3, 0]));
        assert_eq!(ll_addr_a2n("0x1.010.3.4", 6).bytes, Some(vec![1, 8, 3, 4]));
        assert_eq!(
            ll_addr_a2n("1.2.3.256", 6).stderr,
            "\"1.2.3.256\" is invalid lladdr.\n"
        );
        assert_eq!(
            ll_addr_a2n("1.2.3.4.5", 6).stderr,
            "\"1.2.3.4.5\" is invalid lladdr.\n"
        );
        assert_eq!(
            ll_addr_a2n("1..3", 6).stderr,
            "\"1..3\" is invalid lladdr.\n"
        );
    }
}
