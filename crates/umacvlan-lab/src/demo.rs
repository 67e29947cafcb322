//! `umacvlan demo`: a self-contained macvlan lab in throw-away namespaces.
//!
//! It builds a lower device (a veth) whose far end sits in an "external host" behind a Linux
//! bridge with hairpin on (a VEPA-capable switch), starts a daemon, puts a bridge, a vepa and
//! a private macvlan each in its own namespace with an address, shows who can reach whom and
//! why, sends a short burst, prints the macvlans as `link show -d -s` does, and removes
//! everything it made — also when interrupted.

use crate::lab::{self, Lab};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

const SUBNET: &str = "10.77.0";

/// One macvlan of the demo.
struct Member {
    short: &'static str,
    mode: &'static str,
    ip: String,
}

fn step(n: u32, of: u32, what: &str) {
    println!("[{n}/{of}] {what}");
    let _ = std::io::stdout().flush();
}

/// Entry point: `umacvlan demo [--keep]`, or `umacvlan demo --soak MINUTES [--keep]` (see
/// [`crate::soak`]).
pub fn main(args: Vec<String>) -> i32 {
    if let Some(i) = args.iter().position(|a| a == "--soak") {
        let rest: Vec<String> = args[..i].iter().chain(&args[i + 1..]).cloned().collect();
        return crate::soak::main(&rest);
    }
    let keep = args.iter().any(|a| a == "--keep");
    if let Some(bad) = args.iter().find(|a| *a != "--keep") {
        eprintln!("usage: umacvlan demo [--keep] | umacvlan demo --soak MINUTES [--keep]\nunknown argument {bad:?}");
        return 1;
    }
    match lab::run_program("umacvlan demo", "demo", keep, |lab, stop| run(lab, stop)) {
        lab::ProgramEnd::NotStarted => 1,
        lab::ProgramEnd::Done(Ok(())) => 0,
        lab::ProgramEnd::Interrupted(e) => {
            eprintln!("umacvlan demo: interrupted ({e})");
            130
        }
        lab::ProgramEnd::Done(Err(e)) => {
            eprintln!("umacvlan demo: {e}");
            1
        }
    }
}

fn check(interrupted: &AtomicBool) -> Result<(), String> {
    if interrupted.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

fn run(lab: &mut Lab, interrupted: &AtomicBool) -> Result<(), String> {
    const STEPS: u32 = 7;
    println!("umacvlan demo: macvlan in userspace, in a throw-away lab\n");

    step(1, STEPS, "Building the lab in fresh network namespaces");
    let host = lab.ns("host")?;
    let ext = lab.ns("ext")?;
    lab.veth(&host, "eth0", &ext, "eth0")?;
    // The far side is a switch that reflects frames back out of the port they came in on
    // (hairpin), as a VEPA-capable switch does; the external host sits on it.
    lab.hairpin_switch(&ext, "eth0", &format!("{SUBNET}.1/24"))?;
    println!("      {host}: the lower device eth0 (one end of a veth pair)");
    println!("      {ext}: the far end, in a Linux bridge with hairpin on; the external host is {SUBNET}.1");
    check(interrupted)?;

    step(2, STEPS, "Starting the umacvlan daemon on the host");
    // The daemon's default data path (the lab would otherwise pick tap).
    lab.start_daemon(&host, &["--log", "warn", "--datapath", "auto"])?;
    println!(
        "      umacvlan daemon --socket {}   (pid {})",
        lab.socket().display(),
        lab.daemon_pid().unwrap_or(0)
    );
    check(interrupted)?;

    step(
        3,
        STEPS,
        "Creating one macvlan per mode, each in its own namespace",
    );
    let members = [
        Member {
            short: "bridge",
            mode: "bridge",
            ip: format!("{SUBNET}.11"),
        },
        Member {
            short: "vepa",
            mode: "vepa",
            ip: format!("{SUBNET}.12"),
        },
        Member {
            short: "private",
            mode: "private",
            ip: format!("{SUBNET}.13"),
        },
    ];
    for m in &members {
        let ns = lab.ns(m.short)?;
        let name = format!("mv-{}", m.short);
        lab.cli_ok(&[
            "link", "add", "link", "eth0", "name", &name, "netns", &ns, "type", "macvlan", "mode",
            m.mode,
        ])?;
        lab.addr(&ns, &name, &format!("{}/24", m.ip))?;
        println!("      umacvlan link add link eth0 name {name} netns {ns} type macvlan mode {:<7}  → {}", m.mode, m.ip);
    }
    println!("      (the kernel's: ip link add link eth0 name … type macvlan mode …; here each macvlan is a TAP)");
    check(interrupted)?;

    step(
        4,
        STEPS,
        "Who can reach whom (one ping each way, every pair)",
    );
    let mut nodes: Vec<(String, String, String)> =
        vec![("ext".into(), ext.clone(), format!("{SUBNET}.1"))];
    for m in &members {
        nodes.push((m.short.to_string(), lab.ns_name(m.short), m.ip.clone()));
    }
    let results = reachability(lab, &nodes);
    print!("      {:>9}", "from \\ to");
    for (n, _, _) in &nodes {
        print!(" {n:>8}");
    }
    println!();
    for (i, (from, _, _)) in nodes.iter().enumerate() {
        print!("      {from:>9}");
        for (j, reached) in results[i].iter().enumerate() {
            let cell = if i == j {
                "-"
            } else if *reached {
                "yes"
            } else {
                "no"
            };
            print!(" {cell:>8}");
        }
        println!();
    }
    println!("      Why:");
    println!("      - everyone reaches the external host: frames to it go out on the wire, its frames come in by destination MAC;");
    println!("      - bridge ↔ vepa: out on the wire, reflected by the hairpin switch, delivered by destination MAC (vepa never switches locally);");
    println!("      - private reaches no sibling: its broadcasts (ARP) come back only to itself, and siblings' broadcasts never reach it,");
    println!(
        "        so no address can be resolved — private mode isolates even with a hairpin switch."
    );
    let expected = [
        [true, true, true, true],
        [true, true, true, false],
        [true, true, true, false],
        [true, false, false, true],
    ];
    let as_expected = (0..4).all(|i| (0..4).all(|j| i == j || results[i][j] == expected[i][j]));
    println!(
        "      {}",
        if as_expected {
            "This is exactly what kernel macvlans show in the same topology."
        } else {
            "UNEXPECTED: this differs from what kernel macvlans show in the same topology!"
        }
    );
    check(interrupted)?;
    monitor_excerpt(lab, &members)?;
    check(interrupted)?;

    host_access(lab, STEPS)?;
    check(interrupted)?;

    step(
        6,
        STEPS,
        "A short traffic burst: 300 pings, 2 ms apart, external host → bridge macvlan",
    );
    let burst = lab.exec(
        &ext,
        &[
            "ping",
            "-c",
            "300",
            "-i",
            "0.002",
            "-W",
            "1",
            "-q",
            &members[0].ip,
        ],
    );
    let summary = burst
        .stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("no summary")
        .to_string();
    println!("      {summary}");
    if let Some(rtt) = burst.stdout.lines().find(|l| l.starts_with("rtt")) {
        println!("      {rtt}");
    }
    check(interrupted)?;

    step(7, STEPS, "The macvlans, as `umacvlan -d -s link show` prints them (counters are the macvlans', kept by umacvlan)");
    let show = lab.cli_ok(&["-d", "-s", "link", "show"])?;
    for l in show.lines() {
        println!("      {l}");
    }
    if !as_expected {
        return Err("reachability differs from the kernel's".into());
    }
    Ok(())
}

/// The host and its macvlans: on a second lower whose far side does not reflect frames, the
/// host (its own address on the lower) cannot reach a kernel macvlan, nor a umacvlan one with
/// `hostaccess off`; with `hostaccess on` it can, both ways.
fn host_access(lab: &mut Lab, steps: u32) -> Result<(), String> {
    step(
        5,
        steps,
        "Host access: the host's own address on the lower, and its macvlans",
    );
    let host = lab.ns_name("host");
    let wire = lab.ns("wire2")?;
    lab.veth(&host, "eth1", &wire, "eth1")?;
    lab.addr(&host, "eth1", "10.77.1.1/24")?;
    println!("      {host}: eth1 (10.77.1.1/24), a second lower whose far side is a plain link (no hairpin)");
    let knet = lab.ns("kernel")?;
    lab.exec_ok(
        &host,
        &[
            "ip", "link", "add", "link", "eth1", "name", "kmv", "netns", &knet, "type", "macvlan",
            "mode", "bridge",
        ],
    )?;
    lab.addr(&knet, "kmv", "10.77.1.2/24")?;
    let mnet = lab.ns("hostaccess")?;
    lab.cli_ok(&[
        "link", "add", "link", "eth1", "name", "mv-host", "netns", &mnet, "type", "macvlan",
        "mode", "bridge",
    ])?;
    lab.addr(&mnet, "mv-host", "10.77.1.3/24")?;
    // Up to three echoes: a neighbour entry left unresolved by the first (isolated) attempt
    // is retried on the kernel's own schedule (one ARP request a second).
    let ping = |from: &str, to: &str, count: &str| -> (bool, String) {
        let r = lab.exec(from, &["ping", "-c", count, "-i", "0.4", "-W", "1", to]);
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains("bytes from"))
            .unwrap_or("no reply")
            .to_string();
        (r.ok(), line)
    };
    let yn = |b: bool| if b { "yes" } else { "no" };
    let (k, _) = ping(&host, "10.77.1.2", "1");
    println!("      host → kernel macvlan kmv (10.77.1.2):                   {}  (frames for it leave on the wire)", yn(k));
    let (off, _) = ping(&host, "10.77.1.3", "1");
    println!("      host → umacvlan mv-host (10.77.1.3), hostaccess off:     {}  (the kernel's isolation, the default)", yn(off));
    lab.cli_ok(&[
        "link",
        "set",
        "mv-host",
        "type",
        "macvlan",
        "hostaccess",
        "on",
    ])?;
    println!("      umacvlan link set mv-host type macvlan hostaccess on");
    // The isolated attempt left an unresolved neighbour entry, which the kernel retries only
    // once a second: start the resolution afresh so the reply time shown is the path's.
    let _ = lab.exec(&host, &["ip", "neigh", "flush", "to", "10.77.1.3"]);
    let (on, line) = ping(&host, "10.77.1.3", "3");
    println!(
        "      host → mv-host, hostaccess on:                           {}  {line}",
        yn(on)
    );
    let (back, line) = ping(&mnet, "10.77.1.1", "3");
    println!(
        "      mv-host → host:                                          {}  {line}",
        yn(back)
    );
    if k || off || !on || !back {
        return Err("host access did not behave as described".into());
    }
    Ok(())
}

/// Pings every pair (in parallel: unreachable pairs each wait a second).
fn reachability(lab: &Lab, nodes: &[(String, String, String)]) -> Vec<Vec<bool>> {
    let n = nodes.len();
    let mut out = vec![vec![false; n]; n];
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let (from_ns, to_ip) = (&nodes[i].1, &nodes[j].2);
                handles.push((
                    (i, j),
                    s.spawn(move || {
                        lab.exec(
                            from_ns,
                            &["ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", to_ip],
                        )
                        .ok()
                    }),
                ));
            }
        }
        for ((i, j), h) in handles {
            out[i][j] = h.join().unwrap_or(false);
        }
    });
    out
}

/// Shows what `umacvlan monitor` prints while the private macvlan tries to reach the bridge
/// one and the bridge one pings the vepa one: one line per decision, each naming its rule.
fn monitor_excerpt(lab: &Lab, members: &[Member]) -> Result<(), String> {
    use std::io::BufRead;
    println!("      What umacvlan decided, frame by frame (`umacvlan monitor`, private → bridge, bridge → vepa):");
    let mut child = std::process::Command::new(lab.bin())
        .arg("--socket")
        .arg(lab.socket())
        .arg("monitor")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start umacvlan monitor: {e}"))?;
    let out = child.stdout.take().ok_or("no monitor output")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let (private_ns, bridge_ns) = (lab.ns_name(members[2].short), lab.ns_name(members[0].short));
    let mut seen: Vec<String> = Vec::new();
    // The monitor may subscribe after the first frames: repeat until both stories are told.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let told = |seen: &[String]| {
        seen.iter()
            .any(|l| l.contains("private: own multicast reflected"))
            && seen
                .iter()
                .any(|l| l.contains("from mv-bridge") && l.contains("bridge: to the wire"))
    };
    while std::time::Instant::now() < deadline && !told(&seen) {
        seen.clear();
        lab.exec(&private_ns, &["ping", "-c", "1", "-W", "1", &members[0].ip]);
        lab.exec(&bridge_ns, &["ping", "-c", "1", "-W", "1", &members[1].ip]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen.extend(rx.try_iter());
    }
    let _ = child.kill();
    let _ = child.wait();
    // One line per distinct rule and sender, in order.
    let mut shown = std::collections::HashSet::new();
    for l in &seen {
        let key = l
            .splitn(3, ' ')
            .nth(2)
            .unwrap_or(l)
            .replace(char::is_numeric, "");
        if shown.insert(key) && shown.len() <= 10 {
            println!("        {l}");
        }
    }
    if !told(&seen) {
        return Err("umacvlan monitor did not show the decisions".into());
    }
    Ok(())
}
