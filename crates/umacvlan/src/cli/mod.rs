//! The `umacvlan` command: `daemon` and `demo` subcommands, and an iproute2-shaped client
//! (`umacvlan [OPTIONS] link add|set|del|show …`, `umacvlan stats`) that talks to the
//! daemon over its control socket.
//!
//! The grammar, texts and exit statuses are those of `ip link … type macvlan` from
//! iproute2 6.1 (plus current iproute2's `bclim`), with "ip" read as "umacvlan":
//! argument errors exit 1 or 255 exactly where `ip` does, operation errors exit 2 with
//! `Error: <extack>.` or `RTNETLINK answers: <strerror>`.

pub mod batch;
pub mod client;
pub mod cparse;
pub mod json;
pub mod macvlan;
pub mod observe;
pub mod parse;
pub mod print;
pub mod reload;

pub use parse::{parse, Action, Exit, GlobalOpts, Invocation, ShowFilter};

use crate::proto::{LinkInfo, Response};
use std::io::Write;
use umacvlan_core::engine::Errno;

/// `incomplete_command()`'s text (exit status 255).
pub const INCOMPLETE: &str = "Command line is not complete. Try option \"help\"\n";

/// A parse failure with its exit status; the text is already in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail(pub i32);

/// Entry point: `args` is argv without argv\[0\]; returns the exit status.
pub fn main_entry(args: Vec<String>) -> i32 {
    // `umacvlan [--socket PATH] reload [--socket PATH]`.
    let (socket, rest) = match args.as_slice() {
        [o, p, rest @ ..] if o == "--socket" || o == "-socket" => (Some(p), rest),
        _ => (None, args.as_slice()),
    };
    if rest.first().map(String::as_str) == Some("reload") {
        let mut a = rest[1..].to_vec();
        if let Some(p) = socket {
            a.extend(["--socket".to_string(), p.clone()]);
        }
        return reload::main(&a);
    }
    if let Some((opts, file, force)) = batch::split(&args) {
        return batch::run(&opts, &file, force);
    }
    match parse(&args) {
        Invocation::Daemon(rest) => daemon_main(rest),
        Invocation::Demo(rest) => demo_main(rest),
        Invocation::Exit(e) => emit(&e),
        Invocation::Observe {
            opts,
            object,
            words,
        } => observe::main(&opts, object, &words),
        Invocation::Run {
            opts,
            action,
            stderr,
        } => {
            let _ = std::io::stderr().write_all(stderr.as_bytes());
            emit(&run(&opts, &action))
        }
    }
}

/// `umacvlan daemon …`.
fn daemon_main(args: Vec<String>) -> i32 {
    crate::daemon::main(args)
}

/// `umacvlan demo …`: becomes `umacvlan-demo` (the lab crate's program, kept out of the
/// product library) from beside this binary, telling it which umacvlan to drive. An `exec`, so
/// that the process (and whoever signals it) stays the same.
fn demo_main(args: Vec<String>) -> i32 {
    use std::os::unix::process::CommandExt;
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("umacvlan demo: cannot find my own binary: {e}");
            return 1;
        }
    };
    let demo = me.with_file_name("umacvlan-demo");
    let e = std::process::Command::new(&demo)
        .args(&args)
        .env("UMACVLAN_BIN", &me)
        .exec();
    eprintln!(
        "umacvlan demo: cannot run {} ({e}); it is built with the workspace (cargo build --release)",
        demo.display()
    );
    1
}

fn emit(e: &Exit) -> i32 {
    // Write errors (a closed pipe) must not turn into a panic.
    let _ = std::io::stdout().write_all(e.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(e.stderr.as_bytes());
    e.code
}

/// Connects, checks the protocol version, sends the action's request and renders the
/// answer.
pub fn run(opts: &GlobalOpts, action: &Action) -> Exit {
    let mut c = match client::Client::connect(&opts.socket, client::DEFAULT_TIMEOUT) {
        Ok(c) => c,
        // The daemon's socket is root's: refused like rtnetlink refuses an unprivileged `ip`.
        Err(client::ClientError::Connect(_, e))
            if e.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return Exit {
                stdout: String::new(),
                stderr: "RTNETLINK answers: Operation not permitted\n".into(),
                code: 2,
            }
        }
        Err(e) => {
            return Exit {
                stdout: String::new(),
                stderr: format!("{e}\n"),
                code: 1,
            }
        }
    };
    let resp = c.hello_then(action.request());
    match resp {
        Ok(r) => render(opts, action, r),
        Err(e) => Exit {
            stdout: String::new(),
            stderr: format!("{e}\n"),
            code: 1,
        },
    }
}

/// `strerror(errno)` for any errno.
fn errno_text(errno: i32) -> String {
    match Errno::from_code(errno) {
        Some(e) => e.message().to_string(),
        None => {
            let s = std::io::Error::from_raw_os_error(errno).to_string();
            match s.rfind(" (os error ") {
                Some(p) => s[..p].to_string(),
                None => s,
            }
        }
    }
}

/// Turns the daemon's answer to `action` into output and an exit status, as `ip` would
/// print the kernel's answer.
pub fn render(opts: &GlobalOpts, action: &Action, resp: Response) -> Exit {
    let out = |stdout: String| Exit {
        stdout,
        stderr: String::new(),
        code: 0,
    };
    let fail = |stderr: String, code: i32| Exit {
        stdout: String::new(),
        stderr,
        code,
    };
    match resp {
        Response::Error { errno, message } => {
            if errno == Errno::ENODEV.code() {
                // ip resolves names before it talks to the kernel.
                match action {
                    Action::Add(a) => {
                        return fail(format!("Cannot find device \"{}\"\n", a.lower), 1)
                    }
                    Action::Set(s) => {
                        return fail(format!("Cannot find device \"{}\"\n", s.name), 1)
                    }
                    Action::Del { name } => {
                        return fail(format!("Cannot find device \"{name}\"\n"), 1)
                    }
                    Action::Show(ShowFilter { name: Some(n), .. }) => {
                        return fail(format!("Device \"{n}\" does not exist.\n"), 1)
                    }
                    _ => {}
                }
            }
            let text = match message {
                Some(m) if !m.is_empty() => {
                    if m.ends_with('.') {
                        format!("Error: {m}\n")
                    } else {
                        format!("Error: {m}.\n")
                    }
                }
                _ => format!("RTNETLINK answers: {}\n", errno_text(errno)),
            };
            fail(text, 2)
        }
        Response::Ok => match action {
            Action::Add(_) | Action::Set(_) | Action::Del { .. } => out(String::new()),
            _ => fail(
                "umacvlan: bad answer from the daemon: \"ok\" to a show request\n".into(),
                1,
            ),
        },
        Response::Links { links } => match action {
            Action::Show(f) => {
                if let Some(n) = &f.name {
                    if !links.iter().any(|l| &l.ifname == n) {
                        return fail(format!("Device \"{n}\" does not exist.\n"), 1);
                    }
                }
                // Every link the daemon has is a macvlan.
                let kind_ok = f.kind.as_deref().is_none_or(|k| k == "macvlan");
                let shown: Vec<LinkInfo> = links
                    .into_iter()
                    .filter(|_| kind_ok)
                    .filter(|l| f.name.as_ref().is_none_or(|n| &l.ifname == n))
                    .filter(|l| !f.up || l.flags.iter().any(|x| x == "UP"))
                    .collect();
                out(print::links(&shown, opts))
            }
            Action::Stats => out(print::proc_net_dev(&links)),
            _ => fail(
                "umacvlan: bad answer from the daemon: a link list to a change request\n".into(),
                1,
            ),
        },
        Response::Hello { .. } => fail(
            "umacvlan: bad answer from the daemon: a second hello\n".into(),
            1,
        ),
        Response::Trace { .. } => fail(
            "umacvlan: bad answer from the daemon: a trace to a link request\n".into(),
            1,
        ),
        Response::Ports { .. } => fail(
            "umacvlan: bad answer from the daemon: a port list to a link request\n".into(),
            1,
        ),
        Response::Counters { .. } => fail(
            "umacvlan: bad answer from the daemon: a counter list to a link request\n".into(),
            1,
        ),
    }
}

#[cfg(test)]
mod tests;
