//! Throw-away network labs for the demo, tests and benchmarks: namespaces under a unique
//! prefix, veth pairs, kernel or umacvlan macvlans, a daemon per lab — all removed when the
//! [`Lab`] is dropped (also when a test panics), and by [`Lab::sweep`] after a crash.
//!
//! Everything runs through iproute2 (`ip`), so what a lab does is what a person would type.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// A lab: its namespaces, its daemon, its files.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    daemon: Option<Child>,
    socket: PathBuf,
    bin: PathBuf,
    /// Keep everything on drop (for debugging a failed test).
    pub keep: bool,
}

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Exited 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Runs a command to completion.
pub fn run(args: &[&str]) -> Run {
    match Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => Run::from(o),
        Err(e) => Run {
            code: 127,
            stdout: String::new(),
            stderr: format!("{}: {e}", args[0]),
        },
    }
}

/// Runs a command and fails with its output unless it succeeds.
pub fn must(args: &[&str]) -> Result<String, String> {
    let r = run(args);
    if r.ok() {
        Ok(r.stdout)
    } else {
        Err(format!(
            "`{}` failed ({}): {}{}",
            args.join(" "),
            r.code,
            r.stderr,
            r.stdout
        ))
    }
}

impl Lab {
    /// The umacvlan binary the lab's daemon and commands run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A new lab; `tag` becomes part of every name (`umv-<tag>-<pid>-<n>-…`). `bin` is the
    /// umacvlan binary to run as daemon and CLI.
    pub fn new(tag: &str, bin: &Path) -> Lab {
        let n = SERIAL.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("umv-{tag}-{}-{n}", std::process::id());
        let socket = std::env::temp_dir().join(format!("{prefix}.sock"));
        Lab {
            prefix,
            namespaces: Vec::new(),
            daemon: None,
            socket,
            bin: bin.to_path_buf(),
            keep: false,
        }
    }

    /// Removes what earlier labs with this tag left behind (a killed test or demo).
    pub fn sweep(tag: &str) {
        let start = format!("umv-{tag}-");
        for line in run(&["ip", "netns", "list"]).stdout.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&start) {
                // Only labs whose process is gone.
                let pid = name[start.len()..]
                    .split('-')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = run(&["ip", "netns", "del", name]);
                }
            }
        }
    }

    /// The lab's unique prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of lab namespace `short`.
    pub fn ns_name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Creates namespace `short` with loopback up; returns its full name.
    pub fn ns(&mut self, short: &str) -> Result<String, String> {
        let name = self.ns_name(short);
        must(&["ip", "netns", "add", &name])?;
        self.namespaces.push(name.clone());
        must(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        // No IPv6 chatter (DAD, router solicitations): frame counts stay predictable.
        let _ = self.exec(
            &name,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        Ok(name)
    }

    /// Runs a command inside namespace `ns` (full name).
    pub fn exec(&self, ns: &str, args: &[&str]) -> Run {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Like [`Lab::exec`], failing unless the command succeeds.
    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        must(&v)
    }

    /// A veth pair `a_if` in `a_ns` ↔ `b_if` in `b_ns`, both up.
    pub fn veth(&self, a_ns: &str, a_if: &str, b_ns: &str, b_if: &str) -> Result<(), String> {
        must(&[
            "ip", "-n", a_ns, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
            b_ns,
        ])?;
        must(&["ip", "-n", a_ns, "link", "set", a_if, "up"])?;
        must(&["ip", "-n", b_ns, "link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Makes `port` (in `ns`) the only port of a new Linux bridge `br0` with hairpin on — a
    /// switch that sends frames back out of the port they came in on, as a VEPA-capable
    /// switch does — and gives the bridge address `cidr` (the "external host"). Multicast
    /// snooping is off: group frames are reflected whatever IGMP the bridge has heard.
    pub fn hairpin_switch(&self, ns: &str, port: &str, cidr: &str) -> Result<(), String> {
        must(&[
            "ip",
            "-n",
            ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        must(&["ip", "-n", ns, "link", "set", port, "master", "br0"])?;
        must(&[
            "ip",
            "-n",
            ns,
            "link",
            "set",
            "dev",
            port,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ])?;
        self.addr(ns, "br0", cidr)
    }

    /// Adds an address and brings the interface up.
    pub fn addr(&self, ns: &str, ifname: &str, cidr: &str) -> Result<(), String> {
        must(&["ip", "-n", ns, "addr", "add", cidr, "dev", ifname])?;
        must(&["ip", "-n", ns, "link", "set", ifname, "up"])?;
        Ok(())
    }

    /// The control socket of this lab's daemon.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Starts `umacvlan daemon` inside namespace `ns` and waits until it answers.
    pub fn start_daemon(&mut self, ns: &str, extra: &[&str]) -> Result<(), String> {
        let log = std::env::temp_dir().join(format!("{}.daemon.log", self.prefix));
        let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(&self.bin)
            .arg("daemon")
            .arg("--socket")
            .arg(&self.socket)
            .args(extra);
        // UMACVLAN_DATAPATH=bpf|tap|auto runs every lab's daemon on that data path (CI runs
        // the root suites on both), unless the caller chose one; unset, the TAP path (the
        // daemon's own default, auto, would put these suites on bpf wherever it loads).
        if !extra.iter().any(|a| a.starts_with("--datapath")) {
            let dp = std::env::var("UMACVLAN_DATAPATH").unwrap_or_default();
            cmd.arg("--datapath")
                .arg(if dp.is_empty() { "tap" } else { dp.as_str() });
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(logf);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "daemon exited ({st}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("daemon did not come up within 10 s".into())
    }

    /// The daemon's process id.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|c| c.id())
    }

    /// The daemon's log so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(std::env::temp_dir().join(format!("{}.daemon.log", self.prefix)))
            .unwrap_or_default()
    }

    /// Stops the daemon with `signal` (e.g. `"TERM"`, `"KILL"`) and waits for it.
    pub fn stop_daemon(&mut self, signal: &str) {
        if let Some(mut c) = self.daemon.take() {
            // `ip netns exec` execs the daemon, so the child is the daemon itself.
            let _ = run(&["kill", &format!("-{signal}"), &c.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs the umacvlan CLI against this lab's daemon.
    pub fn cli(&self, args: &[&str]) -> Run {
        let sock = self.socket.to_string_lossy().into_owned();
        let bin = self.bin.to_string_lossy().into_owned();
        let mut v = vec![bin.as_str(), "--socket", sock.as_str()];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Like [`Lab::cli`], failing unless it succeeds.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String, String> {
        let r = self.cli(args);
        if r.ok() {
            Ok(r.stdout)
        } else {
            Err(format!(
                "`umacvlan {}` failed ({}): {}",
                args.join(" "),
                r.code,
                r.stderr
            ))
        }
    }

    /// Pings `dst` from namespace `ns`: `count` echoes, waiting at most 1 s each; whether
    /// every one was answered.
    pub fn ping(&self, ns: &str, dst: &str, count: u32) -> bool {
        self.ping_run(ns, dst, count).ok()
    }

    /// [`Lab::ping`], with ping's output (a line per echo, `DUP!` marks, the summary).
    pub fn ping_run(&self, ns: &str, dst: &str, count: u32) -> Run {
        let count = count.to_string();
        self.exec(ns, &["ping", "-c", &count, "-W", "1", "-i", "0.2", dst])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.stop_daemon("TERM");
        for ns in self.namespaces.drain(..).rev() {
            let _ = run(&["ip", "netns", "del", &ns]);
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ =
            std::fs::remove_file(std::env::temp_dir().join(format!("{}.daemon.log", self.prefix)));
    }
}

/// Whether this process may build labs (root, with `ip` available).
pub fn can_build_labs() -> bool {
    run(&["id", "-u"]).stdout.trim() == "0" && run(&["ip", "-V"]).ok()
}

/// Whether root tests must run rather than skip: CI sets `CI`, and
/// `UMACVLAN_REQUIRE_ROOT=1` asks for it by hand. A skip there would be a silent pass.
pub fn root_tests_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("UMACVLAN_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

/// For a root test that cannot run: panics with `why` where root tests are required
/// ([`root_tests_required`]), otherwise prints that the test was skipped.
pub fn skip_root_test(why: &str) {
    if root_tests_required() {
        panic!("this root test cannot run ({why}), and CI or UMACVLAN_REQUIRE_ROOT=1 says it must");
    }
    eprintln!("skipped: {why}");
}

/// The network namespaces whose names start with `prefix` (what a lab left behind).
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    run(&["ip", "netns", "list"])
        .stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// How a lab program ([`run_program`]) ended.
pub enum ProgramEnd<T> {
    /// It could not start (not root, a tool missing, …); the message was printed. Exit 1.
    NotStarted,
    /// The body returned this.
    Done(Result<T, String>),
    /// The body failed after SIGINT/SIGTERM asked it to stop. Exit 130.
    Interrupted(String),
}

/// The frame of a lab program such as `umacvlan demo` (`who`): checks that labs can be built
/// and `ping` is there, turns SIGINT/SIGTERM into the flag `body` watches, sweeps what a killed
/// earlier run of `tag` left, builds the lab, runs `body`, and then removes everything it made
/// (unless `keep`), saying so.
pub fn run_program<T>(
    who: &str,
    tag: &str,
    keep: bool,
    body: impl FnOnce(&mut Lab, &Arc<AtomicBool>) -> Result<T, String>,
) -> ProgramEnd<T> {
    if !can_build_labs() {
        eprintln!("{who}: needs root and iproute2 (`ip`); run it as root");
        return ProgramEnd::NotStarted;
    }
    if !run(&["sh", "-c", "command -v ping"]).ok() {
        eprintln!("{who}: `ping` is missing (Debian: apt-get install iputils-ping)");
        return ProgramEnd::NotStarted;
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(s, interrupted.clone());
    }
    let bin = match umacvlan_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{who}: {e}");
            return ProgramEnd::NotStarted;
        }
    };
    Lab::sweep(tag);
    let mut lab = Lab::new(tag, &bin);
    lab.keep = keep;
    let r = body(&mut lab, &interrupted);
    println!();
    let prefix = lab.prefix().to_string();
    if keep {
        println!(
            "Kept the lab (--keep): namespaces {prefix}-*, socket {}",
            lab.socket().display()
        );
    } else {
        print!("Cleaning up: stopping the daemon, deleting namespaces {prefix}-* … ");
        let _ = std::io::stdout().flush();
        drop(lab);
        let left = namespaces_with_prefix(&prefix).len();
        if left == 0 {
            println!("done.");
        } else {
            println!("{left} namespace(s) could not be removed.");
        }
    }
    match r {
        Err(e) if interrupted.load(Ordering::SeqCst) => ProgramEnd::Interrupted(e),
        r => ProgramEnd::Done(r),
    }
}

/// The product binary a lab program (the demo, the soak) drives: the one that started it
/// (`umacvlan demo` passes its own path in `UMACVLAN_BIN`), else `umacvlan` beside this
/// program.
pub fn umacvlan_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("UMACVLAN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let beside = me.with_file_name("umacvlan");
    if beside.exists() {
        Ok(beside)
    } else {
        Err(format!("no umacvlan binary beside {}", me.display()))
    }
}
