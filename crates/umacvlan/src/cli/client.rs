//! The control-socket client: one JSON line out ([`Envelope`]), one JSON line back
//! ([`Response`]), with a timeout, and the [`Request::Hello`] version check.

use crate::proto::{Envelope, Request, Response, MAX_MESSAGE, PROTOCOL_VERSION};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for the daemon's answer to one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no usable answer.
#[derive(Debug)]
pub enum ClientError {
    /// `connect(2)` failed.
    Connect(PathBuf, io::Error),
    /// Reading or writing failed (a timeout included).
    Io(PathBuf, io::Error),
    /// The daemon closed the connection without answering.
    Closed(PathBuf),
    /// The answer was not a [`Response`] line, or not the one the request calls for.
    Protocol(PathBuf, String),
    /// The daemon speaks another protocol version.
    Version(PathBuf, u32),
}

/// `io::Error`'s text without Rust's " (os error N)" suffix, as `strerror` gives it.
fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(p, e) => write!(
                f,
                "umacvlan: cannot connect to {}: {}; is the daemon running? (umacvlan daemon)",
                p.display(),
                strerror(e)
            ),
            ClientError::Io(p, e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                write!(f, "umacvlan: {}: no answer from the daemon within {} s", p.display(), DEFAULT_TIMEOUT.as_secs())
            }
            ClientError::Io(p, e) => write!(f, "umacvlan: {}: {}", p.display(), strerror(e)),
            ClientError::Closed(p) => write!(f, "umacvlan: {}: the daemon closed the connection", p.display()),
            ClientError::Protocol(p, m) => write!(f, "umacvlan: {}: bad answer from the daemon: {m}", p.display()),
            ClientError::Version(p, v) => write!(
                f,
                "umacvlan: {}: the daemon speaks protocol version {v}, this client speaks {PROTOCOL_VERSION}",
                p.display()
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// A connection to the daemon.
pub struct Client {
    path: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the control socket at `path`; `timeout` bounds each read and write.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let p = path.to_path_buf();
        let s = UnixStream::connect(path).map_err(|e| ClientError::Connect(p.clone(), e))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| ClientError::Io(p.clone(), e))?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| ClientError::Io(p.clone(), e))?;
        let r = s.try_clone().map_err(|e| ClientError::Io(p.clone(), e))?;
        Ok(Client {
            path: p,
            writer: s,
            reader: BufReader::new(r),
        })
    }

    /// Sends one request and reads its response.
    pub fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let env = Envelope {
            version: PROTOCOL_VERSION,
            request,
        };
        let mut line = serde_json::to_string(&env)
            .map_err(|e| ClientError::Protocol(self.path.clone(), e.to_string()))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| ClientError::Io(self.path.clone(), e))?;
        self.read_answer()
    }

    /// The connection's reading side, for a streaming answer ([`Request::Monitor`]), without
    /// the per-read timeout.
    pub fn into_stream(self) -> BufReader<UnixStream> {
        let _ = self.reader.get_ref().set_read_timeout(None);
        self.reader
    }

    /// Sends `requests` without waiting for each answer (at most `window` outstanding) and
    /// returns the answers in order. The daemon applies what arrives together at once and
    /// makes it durable with one state-file write. With `stop_on_error`, the daemon applies
    /// none after the first that fails (those are answered `ECANCELED`; see
    /// [`crate::proto::BatchEnvelope`]).
    pub fn pipeline(
        &mut self,
        requests: &[Request],
        window: usize,
        stop_on_error: bool,
    ) -> Result<Vec<Response>, ClientError> {
        let window = window.max(1);
        let mut answers = Vec::with_capacity(requests.len());
        let mut sent = 0;
        while answers.len() < requests.len() {
            let mut out = Vec::new();
            while sent < requests.len() && sent - answers.len() < window {
                let envelope = Envelope {
                    version: PROTOCOL_VERSION,
                    request: requests[sent].clone(),
                };
                let r = if stop_on_error {
                    serde_json::to_writer(
                        &mut out,
                        &crate::proto::BatchEnvelope {
                            envelope,
                            stop_on_error,
                        },
                    )
                } else {
                    serde_json::to_writer(&mut out, &envelope)
                };
                r.map_err(|e| ClientError::Protocol(self.path.clone(), e.to_string()))?;
                out.push(b'\n');
                sent += 1;
            }
            if !out.is_empty() {
                self.writer
                    .write_all(&out)
                    .map_err(|e| ClientError::Io(self.path.clone(), e))?;
            }
            answers.push(self.read_answer()?);
        }
        Ok(answers)
    }

    fn read_answer(&mut self) -> Result<Response, ClientError> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_MESSAGE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| ClientError::Io(self.path.clone(), e))?;
        if n == 0 {
            return Err(ClientError::Closed(self.path.clone()));
        }
        if buf.last() != Some(&b'\n') {
            let why = if buf.len() > MAX_MESSAGE {
                "answer longer than the protocol allows"
            } else {
                "answer cut short"
            };
            return Err(ClientError::Protocol(self.path.clone(), why.into()));
        }
        serde_json::from_slice(&buf)
            .map_err(|e| ClientError::Protocol(self.path.clone(), e.to_string()))
    }

    /// [`Request::Hello`]: checks that the daemon speaks [`PROTOCOL_VERSION`]; returns its
    /// package version.
    pub fn hello(&mut self) -> Result<String, ClientError> {
        let answer = self.call(Request::Hello)?;
        self.check_hello(answer)
    }

    /// [`hello`](Self::hello) and `request` sent together, one round trip: a daemon that
    /// speaks another version refuses `request` by its envelope (`EINVAL`) without applying
    /// it, and the hello's answer is checked before the request's is used.
    pub fn hello_then(&mut self, request: Request) -> Result<Response, ClientError> {
        let mut answers = self
            .pipeline(&[Request::Hello, request], 2, false)?
            .into_iter();
        let (Some(hello), Some(answer)) = (answers.next(), answers.next()) else {
            return Err(ClientError::Protocol(
                self.path.clone(),
                "answers missing".into(),
            ));
        };
        self.check_hello(hello)?;
        Ok(answer)
    }

    fn check_hello(&self, answer: Response) -> Result<String, ClientError> {
        match answer {
            Response::Hello { version, daemon } if version == PROTOCOL_VERSION => Ok(daemon),
            Response::Hello { version, .. } => {
                Err(ClientError::Version(self.path.clone(), version))
            }
            Response::Error { errno, message } => Err(ClientError::Protocol(
                self.path.clone(),
                format!(
                    "hello refused: errno {errno}{}",
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                ),
            )),
            other => Err(ClientError::Protocol(
                self.path.clone(),
                format!("unexpected answer to hello: {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn tmp_sock(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("umv-cli-test-{}-{tag}.sock", std::process::id()))
    }

    /// A one-connection fake daemon answering each line with `answers[i]`.
    fn fake_daemon(path: &Path, answers: Vec<String>) -> std::thread::JoinHandle<Vec<String>> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut got = Vec::new();
            for a in answers {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                got.push(line);
                w.write_all(a.as_bytes()).unwrap();
            }
            got
        })
    }

    /// The two lines a client sent: a hello, then `link del mv0`.
    fn assert_sent_hello_then_del_mv0(sent: &[String]) {
        assert_eq!(sent[0], "{\"version\":1,\"request\":{\"op\":\"hello\"}}\n");
        let env: Envelope = serde_json::from_str(&sent[1]).unwrap();
        assert_eq!(env.request, Request::LinkDel { name: "mv0".into() });
    }

    #[test]
    fn hello_then_request_round_trip() {
        let p = tmp_sock("rt");
        let h = fake_daemon(
            &p,
            vec![
                "{\"status\":\"hello\",\"version\":1,\"daemon\":\"0.1.0\"}\n".into(),
                "{\"status\":\"ok\"}\n".into(),
            ],
        );
        let mut c = Client::connect(&p, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(c.hello().unwrap(), "0.1.0");
        assert_eq!(
            c.call(Request::LinkDel { name: "mv0".into() }).unwrap(),
            Response::Ok
        );
        assert_sent_hello_then_del_mv0(&h.join().unwrap());
        let _ = std::fs::remove_file(&p);
    }

    /// The hello and the request go out together: this daemon reads both before it answers
    /// either (a client waiting for the hello's answer first would time out).
    #[test]
    fn hello_then_sends_both_before_reading() {
        let p = tmp_sock("both");
        let _ = std::fs::remove_file(&p);
        let l = UnixListener::bind(&p).unwrap();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut got = vec![String::new(), String::new()];
            for line in got.iter_mut() {
                r.read_line(line).unwrap();
            }
            w.write_all(
                b"{\"status\":\"hello\",\"version\":1,\"daemon\":\"0.1.0\"}\n{\"status\":\"ok\"}\n",
            )
            .unwrap();
            got
        });
        let mut c = Client::connect(&p, Duration::from_secs(2)).unwrap();
        let r = c.hello_then(Request::LinkDel { name: "mv0".into() });
        assert_eq!(r.unwrap(), Response::Ok);
        assert_sent_hello_then_del_mv0(&h.join().unwrap());
        let _ = std::fs::remove_file(&p);
    }

    /// A daemon of another version: the hello's verdict wins over the request's answer.
    #[test]
    fn hello_then_reports_the_version_not_the_refusal() {
        let p = tmp_sock("ver2");
        let h = fake_daemon(
            &p,
            vec![
                "{\"status\":\"hello\",\"version\":9,\"daemon\":\"x\"}\n".into(),
                "{\"status\":\"error\",\"errno\":22}\n".into(),
            ],
        );
        let mut c = Client::connect(&p, DEFAULT_TIMEOUT).unwrap();
        let e = c
            .hello_then(Request::LinkDel { name: "mv0".into() })
            .unwrap_err();
        assert!(matches!(e, ClientError::Version(_, 9)), "{e}");
        h.join().unwrap();
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn version_mismatch_and_garbage_are_errors() {
        let p = tmp_sock("ver");
        let h = fake_daemon(
            &p,
            vec!["{\"status\":\"hello\",\"version\":9,\"daemon\":\"x\"}\n".into()],
        );
        let mut c = Client::connect(&p, DEFAULT_TIMEOUT).unwrap();
        let e = c.hello().unwrap_err();
        assert!(matches!(e, ClientError::Version(_, 9)), "{e}");
        h.join().unwrap();

        let h = fake_daemon(&p, vec!["not json\n".into()]);
        let mut c = Client::connect(&p, DEFAULT_TIMEOUT).unwrap();
        assert!(matches!(c.hello().unwrap_err(), ClientError::Protocol(..)));
        h.join().unwrap();
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn timeout_and_unreachable_messages() {
        let p = tmp_sock("slow");
        let _ = std::fs::remove_file(&p);
        let l = UnixListener::bind(&p).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            drop(s);
        });
        let mut c = Client::connect(&p, Duration::from_millis(100)).unwrap();
        let e = c.hello().unwrap_err();
        assert!(e.to_string().contains("no answer from the daemon"), "{e}");
        t.join().unwrap();
        let _ = std::fs::remove_file(&p);

        let e = Client::connect(Path::new("/nonexistent/umv.sock"), DEFAULT_TIMEOUT)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "umacvlan: cannot connect to /nonexistent/umv.sock: No such file or directory; is the daemon running? (umacvlan daemon)"
        );
    }
}
