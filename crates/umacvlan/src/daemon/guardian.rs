//! The guardian: a small child process that puts back, after the daemon dies however it dies
//! (SIGKILL included), the one change to the lower that the kernel does not undo by itself.
//!
//! Everything else the daemon does to a lower is a packet-socket membership, dropped with the
//! socket. But a passthru macvlan's address change is applied to the lower itself (as the
//! kernel's macvlan does), and the kernel restores the lower's address only when the port is
//! destroyed. The daemon does that on every orderly path; for the disorderly ones it tells the
//! guardian, over a pipe, which lowers to restore to which address ("arm") and which are back
//! ("disarm"). The guardian waits for the pipe to close (the daemon is gone), restores what is
//! still armed, and exits.
//!
//! It is the daemon's own binary (`umacvlan daemon --guardian`), started before the daemon
//! drops its capabilities, in the same network namespace; it keeps only `CAP_NET_ADMIN`, and
//! ignores SIGINT, SIGTERM and SIGHUP so that a signal meant for the process group cannot stop
//! it before the daemon is gone.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use umacvlan_core::wire::MacAddr;
use umacvlan_io::netlink::{LinkChange, RtNetlink};

/// The daemon's end.
pub struct Guardian {
    child: Child,
    pipe: ChildStdin,
    armed: BTreeMap<u32, MacAddr>,
}

impl Guardian {
    /// Starts the guardian (the running binary, `daemon --guardian`).
    pub fn spawn() -> io::Result<Guardian> {
        let mut child = Command::new("/proc/self/exe")
            // Named `umacvlan`, so a binary that is umacvlan by its name (the benchmark's,
            // linked as `umacvlan`) runs as umacvlan here too.
            .arg0("umacvlan")
            .args(["daemon", "--guardian"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let pipe = child.stdin.take().expect("piped");
        Ok(Guardian {
            child,
            pipe,
            armed: BTreeMap::new(),
        })
    }

    /// Makes the armed set exactly `want` (lower ifindex → the address to restore).
    pub fn sync(&mut self, want: &BTreeMap<u32, MacAddr>) {
        if *want == self.armed {
            return;
        }
        let mut msg = String::new();
        for (i, m) in want {
            if self.armed.get(i) != Some(m) {
                msg += &format!("arm {i} {m}\n");
            }
        }
        for i in self.armed.keys() {
            if !want.contains_key(i) {
                msg += &format!("disarm {i}\n");
            }
        }
        tracing::debug!("guardian: {}", msg.trim().replace('\n', "; "));
        match self.pipe.write_all(msg.as_bytes()) {
            Ok(()) => self.armed = want.clone(),
            Err(e) => tracing::error!(
                "the guardian is gone ({e}): a lower's address would not be restored after a crash"
            ),
        }
    }

    /// The guardian's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The guardian process: reads arm/disarm lines until EOF, then restores what is armed.
pub fn main() -> i32 {
    // The daemon is our parent; its fast-path devices carry its pid in their names.
    let hidden_prefix = super::fastpath::hidden_prefix(std::os::unix::process::parent_id());
    // Setting a link's address is all it will ever do.
    let only_admin = [caps::Capability::CAP_NET_ADMIN].into_iter().collect();
    if let Err(e) = super::privileges::drop_to(&only_admin) {
        eprintln!("umacvlan guardian: cannot drop capabilities: {e}");
    }
    for s in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        // Registering a handler replaces the default action (terminate).
        let _ = signal_hook::flag::register(s, std::sync::Arc::new(Default::default()));
    }
    let mut armed: BTreeMap<u32, MacAddr> = BTreeMap::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["arm", i, m] => {
                if let (Ok(i), Ok(m)) = (i.parse(), m.parse()) {
                    armed.insert(i, m);
                }
            }
            ["disarm", i] => {
                if let Ok(i) = i.parse::<u32>() {
                    armed.remove(&i);
                }
            }
            _ => {}
        }
    }
    let mut failed = remove_hidden_ends(&hidden_prefix);
    if !armed.is_empty() {
        let mut rt = match RtNetlink::open() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("umacvlan guardian: cannot open rtnetlink: {e}");
                return 1;
            }
        };
        for (ifindex, mac) in armed {
            let now = rt.get_link_by_index(ifindex).ok().and_then(|l| l.mac);
            if now.is_none() || now == Some(mac) {
                continue; // gone, or already right
            }
            let change = LinkChange {
                mac: Some(mac),
                ..Default::default()
            };
            match rt.set_link(ifindex, &change) {
                Ok(()) => eprintln!(
                    "umacvlan guardian: the daemon is gone; restored ifindex {ifindex}'s address {mac}"
                ),
                Err(e) => {
                    eprintln!("umacvlan guardian: cannot restore ifindex {ifindex}'s address: {e}");
                    failed += 1;
                }
            }
        }
    }
    i32::from(failed > 0)
}

/// Deletes the daemon's fast-path veth pairs (their hidden ends are named `prefix…`; deleting
/// one end deletes the pair, the macvlan with it), which, unlike TAPs, outlive their creator.
/// Returns how many could not be deleted.
fn remove_hidden_ends(prefix: &str) -> i32 {
    let Ok(mut rt) = RtNetlink::open() else {
        return 1;
    };
    let links = rt.dump_links().unwrap_or_default();
    let mut failed = 0;
    for l in links.iter().filter(|l| l.name.starts_with(prefix)) {
        if let Err(e) = rt.del_link(l.ifindex) {
            eprintln!("umacvlan guardian: cannot delete {}: {e}", l.name);
            failed += 1;
        }
    }
    failed
}
