//! `cli_parse`: the iproute2-grammar command-line parser on arbitrary argv vectors (the input
//! split on NUL bytes, each piece read as UTF-8 lossily, as argv strings are). No panic; an exit
//! status that is one `ip` uses (0, 1, 2, 255); and a command that goes ahead produces a request
//! the daemon's decoder accepts unchanged after a JSON round trip.
//!
//! It calls [`umacvlan::cli::parse::parse_with`] — what [`umacvlan::cli::parse()`] calls — with a
//! deterministic stand-in for the `netns NAME` existence check, because the real check opens
//! whatever path the arguments name (`netns /dev/...` would make the fuzzer open device files).

use umacvlan::cli::parse::parse_with;
use umacvlan::cli::Invocation;

/// A stand-in for `/var/run/netns/NAME` existing: deterministic, true for about half the names.
fn netns_exists(name: &str) -> bool {
    name.bytes().fold(0u8, |a, b| a ^ b) & 1 == 0
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let args: Vec<String> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    match parse_with(&args, &netns_exists) {
        Invocation::Exit(e) => {
            assert!(
                matches!(e.code, 0 | 1 | 2 | 255),
                "exit status {} for {args:?}",
                e.code
            );
            // A failure may be silent: `ip` itself fails without a word when `macaddr add`
            // gets a short address (ll_addr_a2n returns fewer than 6 bytes, no message).
        }
        Invocation::Run { action, .. } => {
            // The request the CLI would send must be one the daemon's decoder accepts as is.
            let env = umacvlan::proto::Envelope {
                version: umacvlan::proto::PROTOCOL_VERSION,
                request: action.request(),
            };
            let line = serde_json::to_vec(&env).expect("request serializes");
            let back = umacvlan::daemon::control::decode(&line);
            assert_eq!(back, Ok(action.request()), "for {args:?}");
        }
        Invocation::Daemon(_) | Invocation::Demo(_) | Invocation::Observe { .. } => {}
    }
}
