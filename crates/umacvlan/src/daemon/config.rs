//! The configuration file (`--config`, by default `/etc/umacvlan/umacvlan.toml`): macvlans
//! declared in TOML, applied at start and on reload (SIGHUP, `umacvlan reload`,
//! `systemctl reload umacvlan`).
//!
//! ```toml
//! [[macvlan]]
//! name = "mv0"               # required
//! lower = "eth0"             # required: the lower device, in the daemon's namespace
//! mode = "bridge"            # private | vepa | bridge | passthru | source; default vepa
//! address = "02:00:00:00:00:01"  # default: random (kept across reloads)
//! mtu = 1500                 # default: the lower's
//! netns = "blue"             # a name under /run/netns, a path, or a pid; default: the daemon's
//! up = true                  # default true
//! nopromisc = false          # passthru: leave the lower's promiscuity alone
//! nodst = false              # source: do not also deliver by destination
//! bcqueuelen = 1000          # broadcast queue length request
//! bclim = 1                  # the port's broadcast cutoff
//! hostaccess = false         # the lower's own host and the macvlan reach each other
//! source_macs = ["02:00:00:00:00:aa"]  # source mode's list
//! ```
//!
//! Reload applies only the difference: a macvlan the file names and that already matches is
//! not touched (it keeps forwarding); one that differs is changed in place (`link set`), or
//! recreated when its lower changes; one the file named last time and no longer does is
//! removed. Macvlans made by commands or by CNI are left alone unless the file names them. A
//! file that does not parse or validate is refused whole, as `FILE:LINE: reason`, before
//! anything changes; a change the daemon refuses rolls back the ones made before it.

use super::manager::Manager;
use crate::proto::{LinkAdd, LinkSet, NetnsRef, Request, Response};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use umacvlan_core::engine::{MacAddrOp, MacvlanAttrs, Mode, DEFAULT_BC_CUTOFF};
use umacvlan_core::wire::MacAddr;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/umacvlan/umacvlan.toml";

/// Why a configuration was refused: `FILE:LINE: reason` (`FILE: reason` without a line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when the fault has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    macvlan: Vec<toml::Spanned<Entry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    lower: String,
    #[serde(default, deserialize_with = "mode")]
    mode: Option<Mode>,
    #[serde(default, deserialize_with = "mac_opt")]
    address: Option<MacAddr>,
    mtu: Option<u32>,
    netns: Option<NetnsToml>,
    up: Option<bool>,
    #[serde(default)]
    nopromisc: bool,
    #[serde(default)]
    nodst: bool,
    bcqueuelen: Option<u32>,
    bclim: Option<i32>,
    #[serde(default)]
    hostaccess: bool,
    #[serde(default, deserialize_with = "macs")]
    source_macs: Vec<MacAddr>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NetnsToml {
    Pid(u32),
    Name(String),
}

fn mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<Mode>().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown mode {s:?} (private, vepa, bridge, passthru, source)"
        ))
    })
}

fn parse_mac<E: serde::de::Error>(s: &str) -> Result<MacAddr, E> {
    let m: MacAddr = s
        .parse()
        .map_err(|_| E::custom(format!("{s:?} is not a MAC address")))?;
    if !m.is_valid_unicast() {
        return Err(E::custom(format!("{s:?} is not a unicast MAC address")));
    }
    Ok(m)
}

fn mac_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
    parse_mac(&String::deserialize(d)?).map(Some)
}

fn macs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<MacAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_mac(s))
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// Parses and checks a whole file: the macvlans it declares, each with its line, as the
/// requests that would create them.
pub fn parse(file: &Path, text: &str) -> Result<Vec<(usize, LinkAdd)>, ConfigError> {
    let err = |line, reason: String| ConfigError {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let f: FileToml = toml::from_str(text).map_err(|e| {
        err(
            e.span().map(|s| line_of(text, s.start)),
            e.message().trim().to_string(),
        )
    })?;
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for sp in f.macvlan {
        let line = line_of(text, sp.span().start);
        let e = sp.into_inner();
        if !valid_ifname(&e.name) {
            return Err(err(Some(line), format!("invalid name {:?}", e.name)));
        }
        if let Some(first) = names.insert(e.name.clone(), line) {
            return Err(err(
                Some(line),
                format!("macvlan {:?} is already declared at line {first}", e.name),
            ));
        }
        if !valid_ifname(&e.lower) {
            return Err(err(Some(line), format!("invalid lower {:?}", e.lower)));
        }
        let mode = e.mode.unwrap_or(Mode::DEFAULT);
        if !e.source_macs.is_empty() && mode != Mode::Source {
            return Err(err(
                Some(line),
                format!("source_macs needs mode \"source\", not {:?}", mode.as_str()),
            ));
        }
        let mut flags = 0u16;
        if e.nopromisc {
            flags |= umacvlan_core::engine::FLAG_NOPROMISC;
        }
        if e.nodst {
            flags |= umacvlan_core::engine::FLAG_NODST;
        }
        let netns = match e.netns {
            None => None,
            Some(NetnsToml::Pid(p)) => Some(NetnsRef::Pid(p)),
            Some(NetnsToml::Name(n)) if n.is_empty() => {
                return Err(err(Some(line), "empty netns".into()))
            }
            Some(NetnsToml::Name(n)) => Some(NetnsRef::Name(n)),
        };
        out.push((
            line,
            LinkAdd {
                lower_netns: None,
                lower: e.lower,
                name: e.name,
                address: e.address,
                mtu: e.mtu,
                netns,
                up: e.up.unwrap_or(true),
                macvlan: MacvlanAttrs {
                    mode: Some(mode.bits()),
                    flags: Some(flags),
                    macaddr: (mode == Mode::Source).then_some(MacAddrOp::Set(e.source_macs)),
                    bcqueuelen: e.bcqueuelen,
                    bclim: e.bclim,
                    macaddr_count: None,
                    hostaccess: e.hostaccess.then_some(true),
                },
                cni: None,
            },
        ));
    }
    Ok(out)
}

/// What one apply did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Created.
    pub added: Vec<String>,
    /// Changed in place or recreated.
    pub changed: Vec<String>,
    /// Removed (named last time, not any more).
    pub removed: Vec<String>,
    /// Already as declared.
    pub unchanged: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} removed, {} unchanged",
            self.added.len(),
            self.changed.len(),
            self.removed.len(),
            self.unchanged
        )
    }
}

/// The configuration file and the macvlans it made.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    /// Names the file declared at the last successful apply.
    managed: BTreeSet<String>,
    /// Where those names are kept across restarts (beside the state file), so that a macvlan
    /// restored from the state but dropped from the file meanwhile is still known as the
    /// file's, and removed.
    memory: Option<PathBuf>,
}

#[derive(serde::Serialize, Deserialize)]
struct Memory {
    file: PathBuf,
    names: BTreeSet<String>,
}

/// One step of an apply, and what undoes it.
enum Step {
    Added(String),
    Removed(LinkAdd),
    Changed(String, LinkAdd),
}

impl ConfigFile {
    /// The file at `path`; nothing is read yet. `memory`: where to keep the names it
    /// declared across restarts (read now if it is there and about the same file).
    pub fn new(path: PathBuf, memory: Option<PathBuf>) -> ConfigFile {
        let managed = memory
            .as_ref()
            .and_then(|m| std::fs::read(m).ok())
            .and_then(|b| serde_json::from_slice::<Memory>(&b).ok())
            .filter(|m| m.file == path)
            .map(|m| m.names)
            .unwrap_or_default();
        ConfigFile {
            path,
            managed,
            memory,
        }
    }

    fn remember(&self) {
        let Some(m) = &self.memory else { return };
        let body = Memory {
            file: self.path.clone(),
            names: self.managed.clone(),
        };
        let mut tmp = m.clone().into_os_string();
        tmp.push(".tmp");
        let r = std::fs::write(&tmp, serde_json::to_vec(&body).expect("plain data"))
            .and_then(|()| std::fs::rename(&tmp, m));
        if let Err(e) = r {
            tracing::error!("cannot write {}: {e}", m.display());
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads, checks and applies the file. On any error nothing has changed.
    pub fn apply(&mut self, mgr: &mut Manager) -> Result<Summary, ConfigError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| ConfigError {
            file: self.path.clone(),
            line: None,
            reason: format!("cannot read: {e}"),
        })?;
        let wanted = parse(&self.path, &text)?;
        let current: BTreeMap<String, LinkAdd> = mgr
            .config()
            .into_iter()
            .map(|a| (a.name.clone(), std::sync::Arc::unwrap_or_clone(a)))
            .collect();
        let mut summary = Summary::default();
        let mut done: Vec<Step> = Vec::new();
        let result = (|| {
            for (line, want) in &wanted {
                let fail = |r: Response| ConfigError {
                    file: self.path.clone(),
                    line: Some(*line),
                    reason: format!("{}: {}", want.name, refusal(&r)),
                };
                match current.get(&want.name) {
                    None => {
                        call(mgr, Request::LinkAdd(want.clone())).map_err(fail)?;
                        done.push(Step::Added(want.name.clone()));
                        summary.added.push(want.name.clone());
                    }
                    Some(have) if have.lower != want.lower => {
                        call(
                            mgr,
                            Request::LinkDel {
                                name: want.name.clone(),
                            },
                        )
                        .map_err(fail)?;
                        done.push(Step::Removed(have.clone()));
                        call(mgr, Request::LinkAdd(want.clone())).map_err(fail)?;
                        done.push(Step::Added(want.name.clone()));
                        summary.changed.push(want.name.clone());
                    }
                    Some(have) => match difference(have, want) {
                        None => summary.unchanged += 1,
                        Some(set) => {
                            call(mgr, Request::LinkSet(set)).map_err(fail)?;
                            done.push(Step::Changed(want.name.clone(), have.clone()));
                            summary.changed.push(want.name.clone());
                        }
                    },
                }
            }
            let names: BTreeSet<&String> = wanted.iter().map(|(_, w)| &w.name).collect();
            for gone in self.managed.iter().filter(|n| !names.contains(n)) {
                if let Some(have) = current.get(gone) {
                    call(mgr, Request::LinkDel { name: gone.clone() }).map_err(|r| {
                        ConfigError {
                            file: self.path.clone(),
                            line: None,
                            reason: format!("removing {gone}: {}", refusal(&r)),
                        }
                    })?;
                    done.push(Step::Removed(have.clone()));
                    summary.removed.push(gone.clone());
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for step in done.into_iter().rev() {
                let undo = match step {
                    Step::Added(name) => Request::LinkDel { name },
                    Step::Removed(old) => Request::LinkAdd(old),
                    Step::Changed(name, old) => Request::LinkSet(restore(&name, &old)),
                };
                if let Err(r) = call(mgr, undo) {
                    tracing::error!("config: rolling back: {}", refusal(&r));
                }
            }
            return Err(e);
        }
        self.managed = wanted.into_iter().map(|(_, w)| w.name).collect();
        self.remember();
        Ok(summary)
    }
}

fn call(mgr: &mut Manager, r: Request) -> Result<(), Response> {
    match mgr.handle(r) {
        Response::Ok => Ok(()),
        other => Err(other),
    }
}

fn refusal(r: &Response) -> String {
    match r {
        Response::Error {
            message: Some(m), ..
        } => m.clone(),
        Response::Error { errno, .. } => {
            let s = std::io::Error::from_raw_os_error(*errno).to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
        other => format!("unexpected answer {other:?}"),
    }
}

/// The `link set` that turns `have` into `want`, `None` if nothing the file declares
/// differs. What the file leaves out (address, mtu, bcqueuelen, bclim) is not compared.
fn difference(have: &LinkAdd, want: &LinkAdd) -> Option<LinkSet> {
    let mut s = LinkSet {
        name: want.name.clone(),
        ..Default::default()
    };
    let mut any = false;
    if have.up != want.up {
        s.up = Some(want.up);
        any = true;
    }
    if want.address.is_some() && want.address != have.address {
        s.address = want.address;
        any = true;
    }
    if want.mtu.is_some() && want.mtu != have.mtu {
        s.mtu = want.mtu;
        any = true;
    }
    if want.netns != have.netns {
        // Back to the daemon's own namespace: named by the daemon's pid.
        s.netns = Some(
            want.netns
                .clone()
                .unwrap_or(NetnsRef::Pid(std::process::id())),
        );
        any = true;
    }
    let (h, w) = (&have.macvlan, &want.macvlan);
    let mut m = MacvlanAttrs::default();
    let mut mac_any = false;
    if w.mode != h.mode {
        m.mode = w.mode;
        mac_any = true;
    }
    if w.flags.unwrap_or(0) != h.flags.unwrap_or(0) {
        m.flags = w.flags;
        mac_any = true;
    }
    let sources = |a: &MacvlanAttrs| match &a.macaddr {
        Some(MacAddrOp::Set(v)) => v.clone(),
        _ => Vec::new(),
    };
    if w.macaddr.is_some() && sources(w) != sources(h) {
        m.macaddr = w.macaddr.clone();
        mac_any = true;
    }
    if w.bcqueuelen.is_some() && w.bcqueuelen != h.bcqueuelen {
        m.bcqueuelen = w.bcqueuelen;
        mac_any = true;
    }
    // Always declared (default off): a file that drops the line turns it off.
    if w.hostaccess.unwrap_or(false) != h.hostaccess.unwrap_or(false) {
        m.hostaccess = Some(w.hostaccess.unwrap_or(false));
        mac_any = true;
    }
    if let Some(b) = w.bclim {
        if b != h.bclim.unwrap_or(DEFAULT_BC_CUTOFF) {
            m.bclim = Some(b);
            mac_any = true;
        }
    }
    if mac_any {
        s.macvlan = Some(m);
        any = true;
    }
    any.then_some(s)
}

/// The `link set` that puts back `old` (undoing a change).
fn restore(name: &str, old: &LinkAdd) -> LinkSet {
    LinkSet {
        name: name.to_string(),
        up: Some(old.up),
        address: old.address,
        mtu: old.mtu,
        netns: Some(
            old.netns
                .clone()
                .unwrap_or(NetnsRef::Pid(std::process::id())),
        ),
        macvlan: Some(MacvlanAttrs {
            macaddr: old
                .macvlan
                .macaddr
                .clone()
                .or(Some(MacAddrOp::Flush))
                .filter(|_| old.macvlan.mode == Some(Mode::Source.bits())),
            bclim: Some(old.macvlan.bclim.unwrap_or(DEFAULT_BC_CUTOFF)),
            ..old.macvlan.clone()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<(usize, LinkAdd)>, String> {
        parse(Path::new("/etc/umacvlan/umacvlan.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn every_attribute_parses() {
        let v = p(r#"
# two macvlans
[[macvlan]]
name = "mv0"
lower = "eth0"
mode = "bridge"
address = "02:00:00:00:00:01"
mtu = 1400
netns = "blue"
up = false
bcqueuelen = 2000
bclim = 5

[[macvlan]]
name = "src0"
lower = "eth1"
mode = "source"
nodst = true
netns = 1234
source_macs = ["02:00:00:00:00:aa", "02:00:00:00:00:bb"]
"#)
        .unwrap();
        assert_eq!(v.len(), 2);
        let (line, a) = &v[0];
        assert_eq!(*line, 3);
        assert_eq!((a.name.as_str(), a.lower.as_str()), ("mv0", "eth0"));
        assert_eq!(a.address, Some("02:00:00:00:00:01".parse().unwrap()));
        assert_eq!((a.mtu, a.up), (Some(1400), false));
        assert_eq!(a.netns, Some(NetnsRef::Name("blue".into())));
        assert_eq!(a.macvlan.mode, Some(Mode::Bridge.bits()));
        assert_eq!(
            (a.macvlan.bcqueuelen, a.macvlan.bclim),
            (Some(2000), Some(5))
        );
        let (line, b) = &v[1];
        assert_eq!(*line, 14);
        assert_eq!(b.netns, Some(NetnsRef::Pid(1234)));
        assert_eq!(b.macvlan.flags, Some(umacvlan_core::engine::FLAG_NODST));
        assert_eq!(
            b.macvlan.macaddr,
            Some(MacAddrOp::Set(vec![
                "02:00:00:00:00:aa".parse().unwrap(),
                "02:00:00:00:00:bb".parse().unwrap()
            ]))
        );
        // Defaults: vepa (the kernel's), up.
        let v = p("[[macvlan]]\nname = \"a\"\nlower = \"eth0\"\n").unwrap();
        assert_eq!(v[0].1.macvlan.mode, Some(Mode::Vepa.bits()));
        assert!(v[0].1.up);
    }

    #[test]
    fn faults_name_file_and_line() {
        let f = "/etc/umacvlan/umacvlan.toml";
        let e = p("[[macvlan]]\nname = \"a\"\nlower = \"eth0\"\nmode = \"bogus\"\n").unwrap_err();
        assert!(
            e.starts_with(&format!("{f}:4: unknown mode \"bogus\"")),
            "{e}"
        );
        let e = p("[[macvlan]]\nname = \"a\"\nlower = \"eth0\"\nmod = \"bridge\"\n").unwrap_err();
        assert!(e.starts_with(&format!("{f}:4: unknown field `mod`")), "{e}");
        let e = p("[[macvlan]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("missing field `lower`"), "{e}");
        let e = p("[[macvlan]]\nname = \"a\"\nlower = \"eth0\"\naddress = \"01:00:5e:00:00:01\"\n")
            .unwrap_err();
        assert!(
            e.starts_with(&format!("{f}:4: ")) && e.contains("unicast"),
            "{e}"
        );
        let e = p("[[macvlan]]\nname = \"a\"\nlower = \"e\"\n\n[[macvlan]]\nname = \"a\"\nlower = \"e\"\n")
            .unwrap_err();
        assert_eq!(
            e,
            format!("{f}:5: macvlan \"a\" is already declared at line 1")
        );
        let e = p("[[macvlan]]\nname = \"a b\"\nlower = \"e\"\n").unwrap_err();
        assert_eq!(e, format!("{f}:1: invalid name \"a b\""));
        let e =
            p("[[macvlan]]\nname = \"a\"\nlower = \"e\"\nsource_macs = [\"02:00:00:00:00:01\"]\n")
                .unwrap_err();
        assert!(e.contains("source_macs needs mode \"source\""), "{e}");
        let e = p("[[macvlan]\n").unwrap_err();
        assert!(e.starts_with(&format!("{f}:1: ")), "{e}");
    }

    #[test]
    fn difference_compares_only_what_the_file_declares() {
        let have = LinkAdd {
            lower_netns: None,
            lower: "eth0".into(),
            name: "mv0".into(),
            address: Some("02:00:00:00:00:01".parse().unwrap()),
            mtu: Some(1500),
            up: true,
            macvlan: MacvlanAttrs {
                mode: Some(Mode::Bridge.bits()),
                flags: Some(0),
                bcqueuelen: Some(1000),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut want = have.clone();
        want.address = None;
        want.mtu = None;
        want.macvlan.bcqueuelen = None;
        assert_eq!(difference(&have, &want), None);
        want.mtu = Some(1400);
        want.macvlan.mode = Some(Mode::Private.bits());
        let s = difference(&have, &want).unwrap();
        assert_eq!(s.mtu, Some(1400));
        assert_eq!(s.macvlan.unwrap().mode, Some(Mode::Private.bits()));
        assert_eq!((s.up, s.address, s.netns), (None, None, None));
    }

    #[test]
    fn hostaccess_is_declared_on_or_off() {
        let v = p("[[macvlan]]\nname = \"mv0\"\nlower = \"eth0\"\nhostaccess = true\n").unwrap();
        let on = v[0].1.clone();
        assert_eq!(on.macvlan.hostaccess, Some(true));
        let v = p("[[macvlan]]\nname = \"mv0\"\nlower = \"eth0\"\n").unwrap();
        let off = v[0].1.clone();
        assert_eq!(off.macvlan.hostaccess, None);
        // A file that drops the line turns it off; one that adds it turns it on.
        let s = difference(&on, &off).unwrap();
        assert_eq!(s.macvlan.unwrap().hostaccess, Some(false));
        let s = difference(&off, &on).unwrap();
        assert_eq!(s.macvlan.unwrap().hostaccess, Some(true));
        assert_eq!(difference(&on, &on), None);
        let e =
            p("[[macvlan]]\nname = \"mv0\"\nlower = \"eth0\"\nhostaccess = \"on\"\n").unwrap_err();
        assert!(e.contains(":4:"), "{e}");
    }
}
