//! `umacvlan -batch FILE` (`-` for standard input) and `-force`, as iproute2's `ip -batch`:
//! one command per line (`#` starts a comment, quotes group words), the global options of
//! the command line apply to each; a failing command prints `Command failed FILE:LINE` and
//! stops the batch unless `-force`; the exit status is 1 if any command failed.
//!
//! Unlike a loop of `umacvlan` processes, the whole batch goes over one control connection,
//! pipelined: the daemon applies what arrives together and makes it durable with one
//! state-file write. Without `-force` the requests are marked
//! [`crate::proto::BatchEnvelope`], so the daemon applies none after the first failure, as
//! `ip` would not have sent them.

use super::client::{Client, ClientError, DEFAULT_TIMEOUT};
use super::{parse, render, Action, Exit, GlobalOpts, Invocation};
use std::io::{Read, Write};

/// Requests in flight on the connection.
const WINDOW: usize = 256;

/// The command line's batch request: the other global options (to prefix every line), the
/// file, and `-force`. `None` when the command line has no `-batch` among its options.
pub fn split(args: &[String]) -> Option<(Vec<String>, String, bool)> {
    let mut rest = Vec::new();
    let (mut file, mut force) = (None, false);
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" || !a.starts_with('-') {
            break;
        }
        let opt = a
            .strip_prefix('-')
            .filter(|o| o.starts_with('-'))
            .unwrap_or(a);
        // ip's matches(): a prefix; "-b…" is -batch (nothing before it in ip's table starts
        // with b), "-fo…" is -force ("-f" is -family).
        if opt.len() >= 2 && "-batch".starts_with(opt) {
            file = Some(args.get(i + 1).cloned().unwrap_or_default());
            i += 2;
            continue;
        }
        if opt.len() >= 3 && "-force".starts_with(opt) {
            force = true;
            i += 1;
            continue;
        }
        rest.push(args[i].clone());
        // Options with a value.
        if opt == "-socket" {
            if let Some(v) = args.get(i + 1) {
                rest.push(v.clone());
            }
            i += 1;
        }
        i += 1;
    }
    file.map(|f| (rest, f, force))
}

/// iproute2's `makeargs`: words split on blanks, `"…"`/`'…'` quoting, `#` starting a comment
/// at the start of a word.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '#' {
            break;
        }
        let mut w = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            for x in chars.by_ref() {
                if x == c {
                    break;
                }
                w.push(x);
            }
        } else {
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() {
                    break;
                }
                w.push(x);
                chars.next();
            }
        }
        out.push(w);
    }
    out
}

/// One line of the batch.
enum Item {
    /// A request for the daemon.
    Run(GlobalOpts, Action, String),
    /// Settled without the daemon (help, argument errors).
    Local(Exit),
}

fn print(e: &Exit) {
    let _ = std::io::stdout().write_all(e.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(e.stderr.as_bytes());
}

/// Runs the batch in `file`; returns the exit status.
pub fn run(opts: &[String], file: &str, force: bool) -> i32 {
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text).map(drop))
    };
    if let Err(e) = read {
        eprintln!("Cannot open file \"{file}\" for reading: {e}");
        return 1;
    }
    let mut items: Vec<(usize, Item)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let w = words(line);
        if w.is_empty() {
            continue;
        }
        let args: Vec<String> = opts.iter().cloned().chain(w).collect();
        let item = match parse(&args) {
            Invocation::Run {
                opts,
                action,
                stderr,
            } => Item::Run(opts, action, stderr),
            Invocation::Exit(e) => Item::Local(e),
            Invocation::Daemon(_) | Invocation::Demo(_) | Invocation::Observe { .. } => {
                Item::Local(Exit {
                    stdout: String::new(),
                    stderr: "Objects \"daemon\", \"demo\", \"monitor\" and \"capture\" cannot \
                             be used in a batch\n"
                        .into(),
                    code: 1,
                })
            }
        };
        items.push((n + 1, item));
    }
    let name = if file == "-" { "-" } else { file };
    let mut client: Option<Client> = None;
    let mut status = 0;
    let mut i = 0;
    while i < items.len() {
        // A run of daemon requests goes out pipelined.
        let j = (i..items.len())
            .find(|&j| matches!(items[j].1, Item::Local(_)))
            .unwrap_or(items.len());
        let exits: Vec<(usize, Exit)> = if j > i {
            match send(&mut client, opts, &items[i..j], force) {
                Ok(v) => v,
                Err(e) => {
                    print(&e);
                    return 1;
                }
            }
        } else {
            let (n, Item::Local(e)) = &items[i] else {
                unreachable!("a run ends at a local item")
            };
            vec![(*n, e.clone())]
        };
        i = j.max(i + 1);
        for (n, e) in exits {
            print(&e);
            if e.code != 0 {
                eprintln!("Command failed {name}:{n}");
                status = 1;
                if !force {
                    return status;
                }
            }
        }
    }
    status
}

/// Sends the requests of `items` over one connection (opened on first use) and renders each
/// answer.
fn send(
    client: &mut Option<Client>,
    opts: &[String],
    items: &[(usize, Item)],
    force: bool,
) -> Result<Vec<(usize, Exit)>, Exit> {
    let fail = |e: ClientError| Exit {
        stdout: String::new(),
        stderr: format!("{e}\n"),
        code: 1,
    };
    if client.is_none() {
        let sock = match parse(
            &opts
                .iter()
                .cloned()
                .chain(["link".into(), "show".into()])
                .collect::<Vec<_>>(),
        ) {
            Invocation::Run { opts, .. } => opts.socket,
            _ => GlobalOpts::default().socket,
        };
        let mut c = Client::connect(&sock, DEFAULT_TIMEOUT).map_err(|e| match e {
            ClientError::Connect(_, ref io)
                if io.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Exit {
                    stdout: String::new(),
                    stderr: "RTNETLINK answers: Operation not permitted\n".into(),
                    code: 2,
                }
            }
            e => fail(e),
        })?;
        c.hello().map_err(fail)?;
        *client = Some(c);
    }
    let c = client.as_mut().expect("connected");
    let reqs: Vec<_> = items
        .iter()
        .filter_map(|(_, it)| match it {
            Item::Run(_, a, _) => Some(a.request()),
            Item::Local(_) => None,
        })
        .collect();
    let answers = c.pipeline(&reqs, WINDOW, !force).map_err(fail)?;
    Ok(items
        .iter()
        .zip(answers)
        .filter_map(|((n, it), r)| match it {
            Item::Run(o, a, note) => {
                let mut e = render(o, a, r);
                e.stderr = format!("{note}{}", e.stderr);
                Some((*n, e))
            }
            Item::Local(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn split_finds_batch_and_force_among_the_options() {
        assert_eq!(split(&s(&["link", "show"])), None);
        assert_eq!(
            split(&s(&["-batch", "f"])),
            Some((vec![], "f".to_string(), false))
        );
        assert_eq!(
            split(&s(&["--socket", "/x", "-b", "-", "-force", "-j"])),
            Some((s(&["--socket", "/x", "-j"]), "-".to_string(), true))
        );
        // "-f" is -family, not -force; a word after the options ends them.
        assert_eq!(
            split(&s(&["-f", "-batch", "f"])),
            Some((s(&["-f"]), "f".to_string(), false))
        );
        assert_eq!(split(&s(&["link", "-batch", "f"])), None);
    }

    #[test]
    fn words_split_quote_and_comment() {
        assert_eq!(words("  link  del mv0 # gone"), s(&["link", "del", "mv0"]));
        assert_eq!(
            words("link set \"a b\" up"),
            s(&["link", "set", "a b", "up"])
        );
        assert_eq!(words("# only a comment"), Vec::<String>::new());
        assert_eq!(words(""), Vec::<String>::new());
    }
}
