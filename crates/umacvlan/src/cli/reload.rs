//! `umacvlan reload [--socket PATH]`: asks the daemon to re-read its configuration file and
//! apply the difference (what `systemctl reload umacvlan` runs). Exit 0 when applied; 1 with
//! the daemon's `FILE:LINE: reason` when the file was refused (nothing changed then).

use super::client::{Client, DEFAULT_TIMEOUT};
use crate::proto::{Request, Response, DEFAULT_SOCKET};
use std::path::PathBuf;

/// Runs `umacvlan reload`; `args` follow the word `reload`.
pub fn main(args: &[String]) -> i32 {
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" | "-socket" => match it.next() {
                Some(p) => socket = PathBuf::from(p),
                None => {
                    eprintln!("umacvlan reload: --socket needs a path");
                    return 1;
                }
            },
            "-h" | "--help" | "help" => {
                println!("Usage: umacvlan reload [--socket PATH]");
                return 0;
            }
            other => {
                eprintln!("umacvlan reload: unknown argument {other:?}");
                return 1;
            }
        }
    }
    let r = Client::connect(&socket, DEFAULT_TIMEOUT).and_then(|mut c| {
        c.hello()?;
        c.call(Request::Reload)
    });
    match r {
        Ok(Response::Ok) => 0,
        Ok(Response::Error { message, errno }) => {
            let m = message.unwrap_or_else(|| std::io::Error::from_raw_os_error(errno).to_string());
            eprintln!("umacvlan reload: {m}");
            1
        }
        Ok(other) => {
            eprintln!("umacvlan reload: unexpected answer {other:?}");
            1
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
