//! systemd's notify protocol (`Type=notify`, sd_notify(3)): newline-separated `KEY=VALUE`
//! datagrams to the Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). `READY=1` once the control socket is bound and the state restored,
//! `STATUS=` lines, `RELOADING=1` … `READY=1` around a reload, `WATCHDOG=1` every half
//! `WATCHDOG_USEC`, `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` every call is a
//! no-op, so the daemon runs the same outside systemd.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// A connection to the service manager, if there is one.
pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    last_ping: Instant,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (the watchdog is ours only if
    /// `WATCHDOG_PID` is unset or our pid). Both are removed from the environment, so the
    /// processes the daemon starts do not talk to systemd in its name.
    pub fn from_env() -> Notifier {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(k);
        }
        let sock = path.and_then(|p| match open(&p.to_string_lossy()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={}: {e}", p.to_string_lossy());
                None
            }
        });
        let ours = pid.is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = usec
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(|u| Duration::from_micros(u) / 2);
        Notifier {
            sock,
            watchdog,
            last_ping: Instant::now(),
        }
    }

    /// Sends `msg` (newline-separated assignments). Errors are logged, not returned: the
    /// daemon's work does not depend on systemd hearing it.
    pub fn send(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock {
            if let Err(e) = s.send_to_addr(msg.as_bytes(), addr) {
                tracing::warn!("sd_notify: {e}");
            }
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A status line.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// `RELOADING=1` (the unit is `Type=notify`; `READY=1` follows when the reload is done).
    pub fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=reloading the configuration");
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=removing macvlans");
    }

    /// How long the main loop may sleep before the next watchdog ping is due (`None`: no
    /// watchdog).
    pub fn watchdog_due_in(&self) -> Option<Duration> {
        self.watchdog
            .map(|w| w.saturating_sub(self.last_ping.elapsed()))
    }

    /// Sends `WATCHDOG=1` if it is due.
    pub fn watchdog_tick(&mut self) {
        if self.watchdog_due_in() == Some(Duration::ZERO) {
            self.send("WATCHDOG=1");
            self.last_ping = Instant::now();
        }
    }
}

fn open(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if path.starts_with('/') {
        SocketAddr::from_pathname(path)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        ));
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_socket_standing_in_for_systemd() {
        let dir = std::env::temp_dir().join(format!("umv-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixDatagram::bind(&dir).unwrap();
        let n = Notifier {
            sock: Some(open(dir.to_str().unwrap()).unwrap()),
            watchdog: Some(Duration::ZERO),
            last_ping: Instant::now(),
        };
        n.ready("2 macvlans");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=2 macvlans");
        let mut n = n;
        n.watchdog_tick();
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn bad_socket_names_are_refused() {
        assert!(open("relative/path").is_err());
        assert!(open("@abstract-name").is_ok());
    }
}
