//! Writes the man pages (`man8/umacvlan.8`, `umacvlan-daemon.8`, `umacvlan-cni.8`) and the
//! shell completions (bash, zsh, fish) into `OUTDIR`, for the package
//! (`packaging/build-deb`): `cargo run -p umacvlan --example gen_docs -- OUTDIR`.
//!
//! The CLI parses iproute2's grammar by hand, so its clap description here exists only for
//! these documents; the usage texts are the parser's own.

use clap::{Arg, ArgAction, Command, CommandFactory};
use std::path::{Path, PathBuf};
use umacvlan::cli::macvlan::MACVLAN_USAGE;
use umacvlan::cli::parse::{LINK_USAGE, STATS_USAGE, USAGE};

fn cli() -> Command {
    let flag = |name: &'static str, short: char, help: &'static str| {
        Arg::new(name)
            .short(short)
            .help(help)
            .action(ArgAction::Count)
            .global(true)
    };
    Command::new("umacvlan")
        .version(env!("CARGO_PKG_VERSION"))
        .about("userspace macvlan: iproute2-style control of the umacvlan daemon")
        .long_about(format!(
            "umacvlan manages macvlans made by the umacvlan daemon, with the grammar and output \
             of `ip link` (iproute2 6.1).\n\n{USAGE}\n{LINK_USAGE}\n{MACVLAN_USAGE}\n\
             umacvlan's own macvlan option (after `type macvlan`, with add or set): \
             hostaccess on|off (default off): the lower's own host (its address on the lower) \
             and the macvlan reach each other directly, with no shim interface; off is the \
             kernel's isolation. Not in passthru or source mode, nor on the bpf datapath. \
             Shown by -d as `hostaccess on`, by -j as \"hostaccess\":true, only when on.\n\n\
             {STATS_USAGE}"
        ))
        .arg(
            Arg::new("socket")
                .long("socket")
                .value_name("PATH")
                .help("The daemon's control socket (default /run/umacvlan/umacvlan.sock)")
                .global(true),
        )
        .arg(flag("stats", 's', "Show counters (twice: more)"))
        .arg(flag("details", 'd', "Show macvlan details"))
        .arg(flag("json", 'j', "JSON output"))
        .arg(flag("pretty", 'p', "Pretty JSON"))
        .subcommand(
            Command::new("link")
                .about("Add, change, delete and show macvlans")
                .subcommand(
                    Command::new("add")
                        .about("Add a macvlan (link DEV name NAME type macvlan mode MODE …)"),
                )
                .subcommand(Command::new("set").about("Change a macvlan"))
                .subcommand(Command::new("delete").about("Delete a macvlan"))
                .subcommand(Command::new("show").about("Show macvlans")),
        )
        .subcommand(Command::new("stats").about("Counters in /proc/net/dev layout"))
        .subcommand(
            Command::new("reload")
                .about("Re-read the daemon's configuration file and apply the difference"),
        )
        .subcommand(umacvlan::daemon::DaemonArgs::command().name("daemon"))
        .subcommand(Command::new("demo").about("A guided tour in throw-away namespaces"))
}

fn cni() -> Command {
    Command::new("umacvlan-cni")
        .version(env!("CARGO_PKG_VERSION"))
        .about("CNI plugin (installed as `umacvlan` in the CNI plugin directories)")
        .long_about(
            "Speaks CNI 0.3.0 to 1.1.0 (ADD, DEL, CHECK, VERSION, GC, STATUS), driven by the \
             CNI_* environment and the network configuration on stdin. Keys are those of the \
             reference macvlan plugin: master (default: the device of the default route), mode \
             (bridge, private, vepa, passthru, source), mtu, mac, bcqueuelen, ipam (delegated to \
             the IPAM plugin on CNI_PATH; {} for layer 2 only), dns; plus socket (the daemon's \
             control socket) and sourceMacs (the list of mode source). Results and errors are \
             printed on stdout as JSON; logs go to stderr.",
        )
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn man(cmd: Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("8")
        .render(&mut out)
        .unwrap();
    out
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: gen_docs OUTDIR"));
    write(&out.join("man8/umacvlan.8"), &man(cli()));
    write(
        &out.join("man8/umacvlan-daemon.8"),
        &man(umacvlan::daemon::DaemonArgs::command().name("umacvlan-daemon")),
    );
    write(&out.join("man8/umacvlan-cni.8"), &man(cni()));
    for (shell, file) in [
        (clap_complete::Shell::Bash, "bash/umacvlan"),
        (clap_complete::Shell::Zsh, "zsh/_umacvlan"),
        (clap_complete::Shell::Fish, "fish/umacvlan.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cli(), "umacvlan", &mut buf);
        write(&out.join(file), &buf);
    }
}
