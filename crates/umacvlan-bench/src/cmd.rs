//! Running things: commands with a timeout that stop early on Ctrl-C, background processes
//! that are always stopped (also after a crash, through a pid registry and [`sweep`]), and the
//! interrupt flag.
//!
//! Children run in their own process group, so a Ctrl-C on the terminal reaches only the
//! orchestrator, which then stops them in order and removes the labs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::procfs;

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static SEQ: AtomicU32 = AtomicU32::new(0);

fn stop_flag() -> &'static Arc<AtomicBool> {
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes SIGINT, SIGTERM and SIGHUP set the interrupt flag instead of killing the process,
/// so that every lab is removed on the way out.
pub fn install_signal_handlers() -> std::io::Result<()> {
    for s in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(s, stop_flag().clone())?;
    }
    Ok(())
}

/// A termination signal arrived.
pub fn interrupted() -> bool {
    stop_flag().load(Ordering::SeqCst)
}

/// `Err("interrupted")` once a termination signal arrived.
pub fn check() -> Result<(), String> {
    if interrupted() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleeps, waking early on interrupt.
pub fn sleep(d: Duration) {
    let end = Instant::now() + d;
    while !interrupted() {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// The run's scratch directory (`$TMPDIR/umv-bench-<pid>`): logs, OVS databases, sockets,
/// and the pid registry that [`sweep`] reads.
pub fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("umv-bench-{}", std::process::id()));
    let _ = fs::create_dir_all(&d);
    d
}

/// Where the umacvlan daemons of this run keep their statistics tree: on tmpfs
/// (`/dev/shm/umv-bench-<pid>/<lab>`), as the daemon's default `/run/umacvlan/net` is on a
/// normal host. (The daemon rewrites the tree on every change; next to a socket in `/tmp` on
/// a disk, as here, that costs milliseconds per change and dominates the control plane.)
pub fn daemon_args(lab_prefix: &str) -> Vec<String> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base
        .join(format!("umv-bench-{}", std::process::id()))
        .join(lab_prefix);
    let mut args = vec![
        "--log".into(),
        "warn".into(),
        "--stats-dir".into(),
        dir.to_string_lossy().into_owned(),
    ];
    // Extra daemon flags for experiments, e.g. UMACVLAN_DAEMON_ARGS="--workers 1".
    if let Ok(extra) = std::env::var("UMACVLAN_DAEMON_ARGS") {
        args.extend(extra.split_whitespace().map(String::from));
    }
    args
}

/// Removes this run's scratch directory and daemons' statistics trees.
pub fn remove_scratch() {
    let _ = fs::remove_dir_all(scratch());
    let _ =
        fs::remove_dir_all(Path::new("/dev/shm").join(format!("umv-bench-{}", std::process::id())));
}

/// A fresh path in the scratch directory.
pub fn scratch_file(stem: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    scratch().join(format!("{n:04}-{stem}"))
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Exited 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Runs `args` to completion, at most `timeout`; stops early (killing it) on interrupt.
/// Output goes through files, so any amount of it is fine.
pub fn run_for(args: &[&str], timeout: Duration) -> Result<Output, String> {
    let out_path = scratch_file("out");
    let err_path = scratch_file("err");
    let out = File::create(&out_path).map_err(|e| e.to_string())?;
    let err = File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if interrupted() || start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    match status {
        Some(st) => Ok(Output {
            code: st.code().unwrap_or(-1),
            stdout,
            stderr,
        }),
        None if interrupted() => Err("interrupted".into()),
        None => Err(format!(
            "`{}` did not finish within {:.0} s: {}",
            args.join(" "),
            timeout.as_secs_f64(),
            tail(&stderr, 400)
        )),
    }
}

/// [`run_for`], failing unless the command exits 0.
pub fn must_for(args: &[&str], timeout: Duration) -> Result<String, String> {
    let o = run_for(args, timeout)?;
    if o.ok() {
        Ok(o.stdout)
    } else {
        Err(format!(
            "`{}` failed ({}): {}{}",
            args.join(" "),
            o.code,
            tail(&o.stderr, 600),
            tail(&o.stdout, 300)
        ))
    }
}

/// The last `n` bytes of `s` (on a char boundary), trimmed.
pub fn tail(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.len() <= n {
        return s.to_string();
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    format!("…{}", &s[i..])
}

/// Whether `prog` is on the PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(prog);
            f.is_file()
                && fs::metadata(&f)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// A background process (a switch, a server, a forwarder), stopped when dropped.
pub struct Proc {
    what: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Proc {
    /// Starts `args` with stdout and stderr going to a log file, in its own process group.
    /// `env`: extra environment. `hold_stdin`: give it a pipe for standard input and keep
    /// it open (vde_switch exits at EOF on its console).
    pub fn spawn(
        what: &str,
        args: &[&str],
        env: &[(&str, &str)],
        hold_stdin: bool,
    ) -> Result<Proc, String> {
        let log = scratch_file(&format!("{}.log", what.replace(['/', ' '], "_")));
        let f = File::create(&log).map_err(|e| e.to_string())?;
        let f2 = f.try_clone().map_err(|e| e.to_string())?;
        let mut c = Command::new(args[0]);
        c.args(&args[1..])
            .stdout(f)
            .stderr(f2)
            .stdin(if hold_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .process_group(0);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .spawn()
            .map_err(|e| format!("cannot start {what} ({}): {e}", args[0]))?;
        let stdin = child.stdin.take();
        register(child.id(), what);
        Ok(Proc {
            what: what.to_string(),
            child: Some(child),
            stdin,
            log,
        })
    }

    /// Its process id (`ip netns exec` execs, so this is the program itself).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log contains `needle`; fails early if it exits or on interrupt.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if !self.running() {
                return Err(format!("{} exited: {}", self.what, tail(&self.log(), 600)));
            }
            check()?;
            if Instant::now() > end {
                return Err(format!(
                    "{} not ready within {:.0} s: {}",
                    self.what,
                    timeout.as_secs_f64(),
                    tail(&self.log(), 600)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        self.stdin.take();
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            if let Ok(None) = c.try_wait() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
                let end = Instant::now() + Duration::from_secs(5);
                while Instant::now() < end {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = c.kill();
            }
            let _ = c.wait();
            unregister(pid);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn registry() -> PathBuf {
    scratch().join("pids")
}

/// Records a process we started (pid, start time, what) so that [`sweep`] can end it if this
/// run dies without cleaning up.
pub fn register(pid: u32, what: &str) {
    let start = procfs::starttime(pid).unwrap_or(0);
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(registry())
    {
        let _ = writeln!(f, "{pid}\t{start}\t{what}");
    }
}

fn unregister(pid: u32) {
    let p = registry();
    if let Ok(s) = fs::read_to_string(&p) {
        let kept: String = s
            .lines()
            .filter(|l| l.split('\t').next() != Some(&pid.to_string()))
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = fs::write(&p, kept);
    }
}

/// Removes what runs that are gone left behind: their processes (from their pid registry,
/// checked against the recorded start time so a reused pid is never hit), their namespaces
/// ([`umacvlan_lab::lab::Lab::sweep`]) and their scratch directories. Returns what it removed.
pub fn sweep() -> Vec<String> {
    let mut done = Vec::new();
    let tmp = std::env::temp_dir();
    let dirs = fs::read_dir(&tmp)
        .into_iter()
        .chain(fs::read_dir("/dev/shm"))
        .flat_map(|rd| rd.flatten());
    {
        for e in dirs {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(owner) = name
                .strip_prefix("umv-bench-")
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            if let Ok(s) = fs::read_to_string(e.path().join("pids")) {
                for l in s.lines() {
                    let mut it = l.split('\t');
                    let (Some(pid), Some(start)) = (
                        it.next().and_then(|p| p.parse::<u32>().ok()),
                        it.next().and_then(|p| p.parse::<u64>().ok()),
                    ) else {
                        continue;
                    };
                    if procfs::starttime(pid) == Some(start) {
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                        done.push(format!("process {pid} ({})", it.next().unwrap_or("?")));
                    }
                }
            }
            let _ = fs::remove_dir_all(e.path());
            done.push(format!("scratch {}", e.path().display()));
        }
    }
    let before: Vec<String> = namespaces();
    umacvlan_lab::lab::Lab::sweep(crate::TAG);
    let after = namespaces();
    for n in before {
        if !after.contains(&n) {
            done.push(format!("netns {n}"));
        }
    }
    done
}

fn namespaces() -> Vec<String> {
    umacvlan_lab::lab::run(&["ip", "netns", "list"])
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("umv-bench-"))
        .map(String::from)
        .collect()
}
