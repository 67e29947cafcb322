//! The control socket: a Unix stream socket speaking [`crate::proto`] (one JSON line per
//! request and per response). One thread per connection parses and validates; the manager
//! thread applies requests one at a time.

use crate::proto::{Envelope, Request, Response, MAX_MESSAGE, PROTOCOL_VERSION};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use umacvlan_io::epoll::EventFd;

/// Requests waiting for the manager thread, and the eventfd that wakes it.
pub struct Inbox {
    queue: Mutex<VecDeque<(Request, Reply)>>,
    /// Readable while requests wait.
    pub wake: EventFd,
    /// Streams of frame decisions (`monitor`, `capture`), served by connection threads.
    pub monitor: Arc<super::monitor::MonitorHub>,
}

/// Where a request's response goes.
pub struct Reply {
    tx: mpsc::Sender<Response>,
    batch: Option<Arc<AtomicBool>>,
}

impl Reply {
    /// Applies the request with `apply` unless its batch already failed (then `ECANCELED`,
    /// nothing applied); a failure fails the batch.
    pub fn apply(&self, apply: impl FnOnce() -> Response) -> Response {
        let Some(failed) = &self.batch else {
            return apply();
        };
        if failed.load(Ordering::SeqCst) {
            return error(libc::ECANCELED, "an earlier command of the batch failed");
        }
        let r = apply();
        if matches!(r, Response::Error { .. }) {
            failed.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Sends the response (a client that left is ignored).
    pub fn send(self, r: Response) -> Result<(), mpsc::SendError<Response>> {
        self.tx.send(r)
    }
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> io::Result<Arc<Inbox>> {
        Ok(Arc::new(Inbox {
            queue: Mutex::new(VecDeque::new()),
            wake: EventFd::new()?,
            monitor: super::monitor::MonitorHub::new(),
        }))
    }

    /// Queues a request and waits for its response.
    pub fn call(&self, req: Request) -> Response {
        Self::wait(self.submit(req, None))
    }

    /// Queues a request without waiting; its response arrives on the returned receiver.
    /// With `batch`, the request is skipped (answered `ECANCELED`) once an earlier request
    /// of the same batch failed, and its own failure marks the batch failed: iproute2's
    /// `-batch` without `-force`, which stops at the first error.
    pub fn submit(&self, req: Request, batch: Option<Arc<AtomicBool>>) -> mpsc::Receiver<Response> {
        let (tx, rx) = mpsc::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((req, Reply { tx, batch }));
        let _ = self.wake.notify();
        rx
    }

    /// The response on `rx` (`ESHUTDOWN` if the daemon went away first).
    pub fn wait(rx: mpsc::Receiver<Response>) -> Response {
        rx.recv().unwrap_or(Response::Error {
            errno: libc::ESHUTDOWN,
            message: Some("daemon is shutting down".into()),
        })
    }

    /// Takes every waiting request.
    pub fn take(&self) -> Vec<(Request, Reply)> {
        let _ = self.wake.drain();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }
}

/// Binds the control socket: parent directory created, a stale socket replaced, mode 0600.
///
/// Only a stale socket is ever removed: a path that is anything else (a file, a directory, a
/// link, a FIFO) is refused untouched, and a socket someone still answers on is in use.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: refusing to replace it",
                    path.display()
                ),
            ));
        }
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use: is another daemon running?", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Most connections served at once (a thread each). Beyond it a client is answered `EBUSY`
/// and closed, so idle or stalled clients cannot exhaust the daemon's threads; each of them
/// is dropped after [`IDLE_TIMEOUT`] anyway.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay silent, including mid-request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until the listener fails.
pub fn serve(listener: UnixListener, inbox: Arc<Inbox>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        match conn {
            Ok(mut stream) => {
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = write_response(
                        &mut stream,
                        &error(libc::EBUSY, "too many connections to the daemon"),
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (inbox, mine) = (inbox.clone(), active.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("umv-conn".into())
                        .spawn(move || {
                            connection(stream, &inbox);
                            mine.fetch_sub(1, Ordering::SeqCst);
                        });
                if let Err(e) = spawned {
                    tracing::warn!("cannot serve a connection: {e}");
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
}

fn write_response(out: &mut impl Write, resp: &Response) -> io::Result<()> {
    let mut body = serde_json::to_vec(resp).unwrap_or_default();
    body.push(b'\n');
    out.write_all(&body)
}

fn error(errno: i32, msg: &str) -> Response {
    Response::Error {
        errno,
        message: Some(msg.to_string()),
    }
}

/// Decodes one request line; malformed input gets an error response and changes nothing.
pub fn decode(line: &[u8]) -> Result<Request, Response> {
    let env: Envelope = serde_json::from_slice(line)
        .map_err(|e| error(libc::EINVAL, &format!("malformed request: {e}")))?;
    if env.version != PROTOCOL_VERSION {
        return Err(error(libc::EINVAL, "unsupported protocol version"));
    }
    Ok(env.request)
}

/// Whether a request changes anything (and so needs a privileged client, as rtnetlink does),
/// or shows other hosts' traffic (monitor, capture: root only, as for tcpdump).
fn mutates(r: &Request) -> bool {
    matches!(
        r,
        Request::LinkAdd(_)
            | Request::LinkSet(_)
            | Request::LinkDel { .. }
            | Request::Reload
            | Request::Monitor(_)
    )
}

/// Requests of one connection queued and not yet answered; beyond it the reader waits for
/// the writer (a client that never reads cannot make the daemon queue without bound).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Serves one connection, pipelined: this thread reads request lines and queues each at once
/// (the manager applies what is queued together and makes it durable with one state-file
/// write); a writer thread answers them in order.
fn connection(stream: UnixStream, inbox: &Inbox) {
    // The socket is root's with mode 0600; should someone open it up, changes still need root
    // (like rtnetlink, which answers EPERM), while reading stays open to all.
    let privileged = umacvlan_io::peer_credentials(&stream)
        .map(|(_, uid, _)| uid == 0)
        .unwrap_or(false);
    // A client that stalls mid-request must not hold a thread forever.
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let (pending_tx, pending_rx) = mpsc::sync_channel::<mpsc::Receiver<Response>>(MAX_IN_FLIGHT);
    let writer = std::thread::Builder::new()
        .name("umv-conn-w".into())
        .spawn(move || {
            for rx in pending_rx {
                if write_response(&mut out, &Inbox::wait(rx)).is_err() {
                    // The client is gone: stop reading its requests too.
                    let _ = out.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        });
    let Ok(writer) = writer else {
        return;
    };
    let ready = |r: Response| {
        let (tx, rx) = mpsc::channel();
        let _ = tx.send(r);
        rx
    };
    let batch = Arc::new(AtomicBool::new(false));
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_MESSAGE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let rx = if n > MAX_MESSAGE {
            ready(error(libc::EMSGSIZE, "request too large"))
        } else if line.last() != Some(&b'\n') {
            // The client went away mid-request.
            break;
        } else {
            match decode_flags(&line) {
                Ok((req, _)) if mutates(&req) && !privileged => ready(Response::Error {
                    errno: libc::EPERM,
                    message: None,
                }),
                Ok((Request::Monitor(m), _)) => {
                    // A stream until the client leaves: the answers queued before it first,
                    // then its own, then the events, on this thread.
                    drop(pending_tx);
                    let _ = writer.join();
                    let Ok(mut out) = reader.get_ref().try_clone() else {
                        return;
                    };
                    match inbox.call(Request::Monitor(m.clone())) {
                        Response::Ok => {
                            let sub = inbox.monitor.subscribe(m);
                            if write_response(&mut out, &Response::Ok).is_ok() {
                                super::monitor::stream(sub, &mut out, reader.get_ref());
                            }
                        }
                        other => {
                            let _ = write_response(&mut out, &other);
                        }
                    }
                    return;
                }
                Ok((req, stop_on_error)) => inbox.submit(req, stop_on_error.then(|| batch.clone())),
                Err(resp) => ready(resp),
            }
        };
        if pending_tx.send(rx).is_err() || n > MAX_MESSAGE {
            break;
        }
    }
    // Requests already queued are still applied and answered.
    drop(pending_tx);
    let _ = writer.join();
}

/// [`decode`], and whether the line asks to stop at its batch's first error
/// ([`crate::proto::BatchEnvelope`]).
fn decode_flags(line: &[u8]) -> Result<(Request, bool), Response> {
    #[derive(serde::Deserialize)]
    struct Flags {
        #[serde(default)]
        stop_on_error: bool,
    }
    let req = decode(line)?;
    let flags: Flags = serde_json::from_slice(line)
        .map_err(|e| error(libc::EINVAL, &format!("malformed request: {e}")))?;
    Ok((req, flags.stop_on_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_replaces_only_a_stale_socket() {
        let dir = std::env::temp_dir().join(format!("umv-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A regular file, a directory and a symlink are never removed.
        let file = dir.join("file");
        std::fs::write(&file, b"keep me").unwrap();
        let e = bind(&file).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        let sub = dir.join("dir");
        std::fs::create_dir_all(&sub).unwrap();
        assert!(bind(&sub).is_err());
        assert!(sub.is_dir());
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(bind(&link).is_err());
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // A live socket is in use; once its listener is gone it is stale and replaced.
        let sock = dir.join("sock");
        let live = bind(&sock).unwrap();
        assert_eq!(bind(&sock).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(live);
        let again = bind(&sock).unwrap();
        assert!(UnixStream::connect(&sock).is_ok());
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Monitor and capture show other hosts' traffic: root only, like a change.
    #[test]
    fn monitor_needs_a_privileged_client() {
        assert!(mutates(&Request::Monitor(Default::default())));
        assert!(!mutates(&Request::Trace(crate::proto::TraceRequest {
            dev: Some("mv0".into()),
            lower: None,
            host: None,
            frame: crate::proto::FrameSpec {
                src: umacvlan_core::wire::MacAddr::ZERO,
                dst: umacvlan_core::wire::MacAddr::BROADCAST,
                vlan: None,
                ethertype: 0x0800,
                size: 60,
            },
        })));
    }

    #[test]
    fn decode_rejects_garbage_and_wrong_versions() {
        assert!(matches!(
            decode(b"{nope"),
            Err(Response::Error {
                errno: libc::EINVAL,
                ..
            })
        ));
        assert!(matches!(
            decode(br#"{"version":9,"request":{"op":"hello"}}"#),
            Err(Response::Error { .. })
        ));
        assert_eq!(
            decode(br#"{"version":1,"request":{"op":"hello"}}"#).unwrap(),
            Request::Hello
        );
    }
}
