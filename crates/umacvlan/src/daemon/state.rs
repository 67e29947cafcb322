//! The state file (`--state PATH`): every macvlan's configuration, made durable on every
//! change and replayed at start.
//!
//! Two files. `PATH`, the snapshot: JSON `{"version": 1, "generation": G, "links": [LinkAdd, …]}`
//! in creation order (see [`crate::proto::LinkAdd`]), written to `PATH.tmp`, synced, then
//! renamed over `PATH`, so a reader sees the old file or the new one, never a torn one; the
//! version it replaces stays as `PATH.prev`. `PATH.journal`, the changes since: a first line
//! `{"generation": G}` naming the snapshot it extends, then one line per manager turn, a JSON
//! array of records (`{"set": LinkAdd}` puts a link in place of the one of its name, or at the
//! end; `{"del": NAME}` removes one), appended and `fdatasync`ed before the turn's answers. A
//! change therefore costs one small write and one sync whatever the number of links; the
//! snapshot is rewritten (and the journal started afresh) only when the journal has grown past
//! the snapshot's size, so its O(N) cost is spread over at least N changes.
//!
//! A turn's line is applied whole or not at all: a last line without its newline is a write
//! that never finished (and was never answered `ok`) and is left out. A journal naming another
//! generation is one the snapshot already holds (the daemon stopped between writing a new
//! snapshot and starting the journal afresh) and is left out too.
//!
//! A snapshot that is not a valid state (does not parse, unknown version, two links of one
//! name) is moved aside to `PATH.corrupt`, reported, and nothing from it is applied; the last
//! good snapshot, `PATH.prev`, is used instead when it is valid. A journal line that is not
//! valid (does not parse, removes a link that is not there, a link without a name) ends the
//! replay there: the state of the turn before it is restored, the journal moved aside to
//! `PATH.journal.corrupt` and reported.

use crate::proto::LinkAdd;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// State file format version.
pub const STATE_VERSION: u32 = 1;

/// Journal size, in bytes, below which the snapshot is never rewritten.
const JOURNAL_MIN_COMPACT: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// Which journal extends this snapshot (0: none; files written before the journal).
    #[serde(default)]
    generation: u64,
    links: Vec<LinkAdd>,
}

#[derive(Serialize, Deserialize)]
struct JournalHeader {
    generation: u64,
}

/// One change in a journal line.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Record {
    /// The link of this name is now this (replaced in place, or added at the end).
    Set(LinkAdd),
    /// The link of this name is gone.
    Del(String),
}

/// A [`Record`] as written: the same JSON, borrowed from the configuration being committed.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum RecordOut<'a> {
    Set(&'a LinkAdd),
    Del(&'a str),
}

/// [`StateFile`] as written.
#[derive(Serialize)]
struct StateFileOut<'a> {
    version: u32,
    generation: u64,
    links: Vec<&'a LinkAdd>,
}

/// The same record: most are shared with the last commit, and compare by address.
fn same(a: &Arc<LinkAdd>, b: &Arc<LinkAdd>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Why a state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading failed.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, io::Error),
    /// The file is not a valid state file; it was moved aside.
    #[error("{path} is corrupt ({reason}); moved to {moved_to}; {fallback}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
        /// Where it went.
        moved_to: PathBuf,
        /// What is used instead.
        fallback: String,
    },
}

/// What [`load`] found: the links to restore, and what went wrong on the way, if anything.
#[derive(Debug)]
pub struct Loaded {
    /// The links to restore, in creation order.
    pub links: Vec<LinkAdd>,
    /// The generation of the snapshot they came from (0 when there was none).
    pub generation: u64,
    /// Set when the files could not be used as they were (then `links` is the last good state,
    /// or empty).
    pub problem: Option<StateError>,
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The journal that extends the snapshot at `path`.
pub fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal")
}

fn check_link(l: &LinkAdd) -> Result<(), String> {
    if l.name.is_empty() || l.lower.is_empty() {
        return Err("a link without a name or lower".into());
    }
    Ok(())
}

/// Parses and checks a whole snapshot; any fault rejects all of it.
fn parse(text: &[u8]) -> Result<(u64, Vec<LinkAdd>), String> {
    let f: StateFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    if f.version != STATE_VERSION {
        return Err(format!("unsupported version {}", f.version));
    }
    let mut names = std::collections::HashSet::new();
    for l in &f.links {
        check_link(l)?;
        if !names.insert(l.name.as_str()) {
            return Err(format!("two links named {:?}", l.name));
        }
    }
    Ok((f.generation, f.links))
}

/// Links being replayed: in creation order, a removed one leaving a hole, found by name, so
/// that each record costs the same however many links there are.
struct Replay {
    links: Vec<Option<LinkAdd>>,
    index: std::collections::HashMap<String, usize>,
}

impl Replay {
    fn new(links: Vec<LinkAdd>) -> Self {
        let index = links
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        Replay {
            links: links.into_iter().map(Some).collect(),
            index,
        }
    }

    /// Applies one turn's records, all or none: they are checked first.
    fn apply(&mut self, records: Vec<Record>) -> Result<(), String> {
        // Names this turn's earlier records add (true) or remove (false).
        let mut turn: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        for r in &records {
            match r {
                Record::Set(l) => {
                    check_link(l)?;
                    turn.insert(&l.name, true);
                }
                Record::Del(name) => {
                    let there = turn
                        .get(name.as_str())
                        .copied()
                        .unwrap_or_else(|| self.index.contains_key(name));
                    if !there {
                        return Err(format!("removes {name:?}, which is not there"));
                    }
                    turn.insert(name, false);
                }
            }
        }
        for r in records {
            match r {
                Record::Set(l) => match self.index.get(&l.name) {
                    Some(&i) => self.links[i] = Some(l),
                    None => {
                        self.index.insert(l.name.clone(), self.links.len());
                        self.links.push(Some(l));
                    }
                },
                Record::Del(name) => {
                    if let Some(i) = self.index.remove(&name) {
                        self.links[i] = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn into_links(self) -> Vec<LinkAdd> {
        self.links.into_iter().flatten().collect()
    }
}

/// Replays a journal's complete lines onto `links` (the snapshot of `generation`). Returns
/// the fault that ended the replay early, if any; `links` then holds the state of the turn
/// before it.
fn replay(links: &mut Vec<LinkAdd>, generation: u64, text: &[u8]) -> Result<(), String> {
    // A last line without its newline never finished: it was never answered.
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(i) => &text[..=i],
        None => return Ok(()),
    };
    let mut lines = complete.split(|&b| b == b'\n');
    let header: JournalHeader = serde_json::from_slice(lines.next().unwrap_or_default())
        .map_err(|e| format!("line 1: {e}"))?;
    if header.generation != generation {
        return Ok(());
    }
    let mut state = Replay::new(std::mem::take(links));
    let mut fault = Ok(());
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let applied = serde_json::from_slice::<Vec<Record>>(line)
            .map_err(|e| e.to_string())
            .and_then(|records| state.apply(records));
        if let Err(e) = applied {
            fault = Err(format!("line {}: {e}", i + 2));
            break;
        }
    }
    *links = state.into_links();
    fault
}

/// Reads the snapshot, then its journal; a missing snapshot is an empty state. A corrupt
/// snapshot is moved aside and the last good one (`PATH.prev`) taken instead, when there is
/// one; a corrupt journal line ends the replay at the turn before it.
pub fn load(path: &Path) -> Loaded {
    let mut loaded = load_snapshot(path);
    let journal = journal_path(path);
    let text = match std::fs::read(&journal) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return loaded,
        Err(e) => {
            loaded.problem.get_or_insert(StateError::Io(journal, e));
            return loaded;
        }
    };
    if let Err(reason) = replay(&mut loaded.links, loaded.generation, &text) {
        let moved_to = with_suffix(&journal, ".corrupt");
        let _ = std::fs::rename(&journal, &moved_to);
        loaded.problem.get_or_insert(StateError::Corrupt {
            path: journal,
            reason,
            moved_to,
            fallback: format!(
                "restoring the state before that line ({} links)",
                loaded.links.len()
            ),
        });
    }
    loaded
}

fn load_snapshot(path: &Path) -> Loaded {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Loaded {
                links: Vec::new(),
                generation: 0,
                problem: None,
            }
        }
        Err(e) => {
            return Loaded {
                links: Vec::new(),
                generation: 0,
                problem: Some(StateError::Io(path.into(), e)),
            }
        }
    };
    let reason = match parse(&text) {
        Ok((generation, links)) => {
            return Loaded {
                links,
                generation,
                problem: None,
            }
        }
        Err(reason) => reason,
    };
    let moved_to = with_suffix(path, ".corrupt");
    let _ = std::fs::rename(path, &moved_to);
    let prev = with_suffix(path, ".prev");
    let (generation, links, fallback) = match std::fs::read(&prev)
        .map_err(|e| e.to_string())
        .and_then(|t| parse(&t))
    {
        Ok((generation, links)) => {
            // Put the last good state back in place, so the next start finds it too.
            let _ = std::fs::copy(&prev, path);
            let fallback = format!(
                "restoring the last good state {} ({} links)",
                prev.display(),
                links.len()
            );
            (generation, links, fallback)
        }
        Err(_) => (
            0,
            Vec::new(),
            "no good state to fall back to: starting empty".into(),
        ),
    };
    Loaded {
        links,
        generation,
        problem: Some(StateError::Corrupt {
            path: path.into(),
            reason,
            moved_to,
            fallback,
        }),
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Writes a snapshot atomically; the version replaced becomes `PATH.prev`. Returns its size.
fn save_snapshot(path: &Path, generation: u64, links: &[Arc<LinkAdd>]) -> io::Result<u64> {
    let tmp = with_suffix(path, ".tmp");
    let mut body = serde_json::to_vec_pretty(&StateFileOut {
        version: STATE_VERSION,
        generation,
        links: links.iter().map(|l| &**l).collect(),
    })?;
    body.push(b'\n');
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    // Keep the current good version: a link, renamed into place, so PATH never goes missing.
    if path.exists() {
        let prev_tmp = with_suffix(path, ".prev.tmp");
        let _ = std::fs::remove_file(&prev_tmp);
        if std::fs::hard_link(path, &prev_tmp).is_ok() {
            std::fs::rename(&prev_tmp, with_suffix(path, ".prev"))?;
        }
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)?;
    Ok(body.len() as u64)
}

/// Keeps the state files up to date with the daemon's configuration: a journal line per
/// change, a new snapshot now and then.
#[derive(Debug)]
pub struct StateWriter {
    path: PathBuf,
    journal_path: PathBuf,
    /// The generation of the last snapshot written or loaded.
    generation: u64,
    /// What the files hold.
    saved: Vec<Arc<LinkAdd>>,
    /// The journal extending the last snapshot written, open for appending; `None` until a
    /// snapshot has been written by this writer, and after a failed write.
    journal: Option<File>,
    journal_len: u64,
    snapshot_len: u64,
    /// (device, inode) of the snapshot and of the journal this writer wrote.
    written: Option<[(u64, u64); 2]>,
}

impl StateWriter {
    /// A writer for the files at `path`, whose snapshot (as loaded) has `generation`. Its
    /// first change writes a new snapshot.
    pub fn new(path: &Path, generation: u64) -> Self {
        StateWriter {
            path: path.into(),
            journal_path: journal_path(path),
            generation,
            saved: Vec::new(),
            journal: None,
            journal_len: 0,
            snapshot_len: 0,
            written: None,
        }
    }

    /// Takes `links` as what the files already hold (the state just restored).
    pub fn assume_saved(&mut self, links: Vec<Arc<LinkAdd>>) {
        self.saved = links;
    }

    /// Makes `now` durable: returns once the files hold it. Nothing is written when they
    /// already do. On an error the files hold the last state committed, and the next commit
    /// writes a whole snapshot.
    pub fn commit(&mut self, now: Vec<Arc<LinkAdd>>) -> io::Result<()> {
        if now.len() == self.saved.len() && now.iter().zip(&self.saved).all(|(a, b)| same(a, b)) {
            return Ok(());
        }
        let r = match self.records(&now) {
            Some(records) if self.journal_usable() => {
                let line = serde_json::to_vec(&records);
                self.append(line?)
            }
            _ => self.snapshot(&now),
        };
        match r {
            Ok(()) => {
                self.saved = now;
                Ok(())
            }
            Err(e) => {
                self.journal = None;
                Err(e)
            }
        }
    }

    /// The records that take the saved state to `now`, when replaying them gives exactly
    /// `now`: the links kept stay in their order and new ones come last (not so when, e.g., a
    /// rename moved a link out of its place in the order).
    fn records<'a>(&'a self, now: &'a [Arc<LinkAdd>]) -> Option<Vec<RecordOut<'a>>> {
        use std::collections::{HashMap, HashSet};
        // The usual turn, told without hashing every name: the saved links all still there in
        // their places, and a few new ones after them (a name of a link in another namespace
        // may be one of the saved ones: then the general way below).
        if let Some(added) = now.get(self.saved.len()..).filter(|a| a.len() <= 16) {
            let kept = self.saved.iter().zip(now);
            if kept.clone().all(|(o, n)| o.name == n.name)
                && added
                    .iter()
                    .all(|n| self.saved.iter().all(|o| o.name != n.name))
            {
                return Some(
                    kept.filter(|(o, n)| !same(o, n))
                        .map(|(_, n)| RecordOut::Set(n))
                        .chain(added.iter().map(|n| RecordOut::Set(n)))
                        .collect(),
                );
            }
        }
        let names: HashSet<&str> = now.iter().map(|l| l.name.as_str()).collect();
        let old: HashMap<&str, &Arc<LinkAdd>> =
            self.saved.iter().map(|l| (l.name.as_str(), l)).collect();
        let mut now_in_order = now.iter();
        for kept in self
            .saved
            .iter()
            .filter(|l| names.contains(l.name.as_str()))
        {
            if now_in_order.next().map(|l| &l.name) != Some(&kept.name) {
                return None;
            }
        }
        if now_in_order.any(|l| old.contains_key(l.name.as_str())) {
            return None;
        }
        let mut records: Vec<RecordOut> = self
            .saved
            .iter()
            .filter(|l| !names.contains(l.name.as_str()))
            .map(|l| RecordOut::Del(&l.name))
            .collect();
        records.extend(
            now.iter()
                .filter(|l| old.get(l.name.as_str()).is_none_or(|o| !same(o, l)))
                .map(|l| RecordOut::Set(l)),
        );
        Some(records)
    }

    /// Whether appending to the open journal extends the files at the path: both are still
    /// the ones this writer wrote (nobody removed or replaced them), and the journal is not
    /// yet larger than the snapshot.
    fn journal_usable(&self) -> bool {
        if self.journal.is_none() || self.journal_len > JOURNAL_MIN_COMPACT.max(self.snapshot_len) {
            return false;
        }
        self.written.is_some() && self.written == file_ids(&self.path, &self.journal_path)
    }

    fn append(&mut self, mut line: Vec<u8>) -> io::Result<()> {
        line.push(b'\n');
        let j = self.journal.as_mut().expect("journal_usable");
        j.write_all(&line)?;
        j.sync_data()?;
        self.journal_len += line.len() as u64;
        Ok(())
    }

    /// A new snapshot of `links`, then a fresh journal extending it.
    fn snapshot(&mut self, links: &[Arc<LinkAdd>]) -> io::Result<()> {
        // Unique among this path's generations: a journal left from an earlier one never
        // matches it.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let generation = nanos.max(self.generation + 1);
        self.journal = None;
        self.snapshot_len = save_snapshot(&self.path, generation, links)?;
        self.generation = generation;
        // The old journal names the old generation: until the new one is in place, a start
        // reads the new snapshot and leaves the old journal out.
        let tmp = with_suffix(&self.journal_path, ".tmp");
        let mut header = serde_json::to_vec(&JournalHeader { generation })?;
        header.push(b'\n');
        let mut f = File::create(&tmp)?;
        f.write_all(&header)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.journal_path)?;
        // Appends are answered `ok` only once the journal's name is durable too.
        sync_dir(&self.journal_path)?;
        self.written = file_ids(&self.path, &self.journal_path);
        self.journal_len = header.len() as u64;
        // Positioned after the header: the next write appends.
        self.journal = Some(f);
        Ok(())
    }
}

/// (device, inode) of the snapshot and the journal, when both are regular files.
fn file_ids(snapshot: &Path, journal: &Path) -> Option<[(u64, u64); 2]> {
    let id = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (m.dev(), m.ino()))
    };
    Some([id(snapshot)?, id(journal)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "umv-state-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A whole snapshot of `links` (what a restarted daemon's first change writes).
    fn save(path: &Path, links: &[LinkAdd]) -> io::Result<()> {
        StateWriter::new(path, 0).snapshot(&arcs(links.to_vec()))
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    #[test]
    fn round_trip_and_missing_is_empty() {
        let d = dir();
        let p = d.join("state.json");
        assert!(load(&p).links.is_empty());
        let links = vec![LinkAdd {
            lower_netns: None,
            lower: "eth0".into(),
            name: "mv0".into(),
            up: true,
            ..Default::default()
        }];
        save(&p, &links).unwrap();
        let l = load(&p);
        assert_eq!(l.links, links);
        assert!(l.problem.is_none());
        assert!(!with_suffix(&p, ".tmp").exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    fn arcs(links: Vec<LinkAdd>) -> Vec<Arc<LinkAdd>> {
        links.into_iter().map(Arc::new).collect()
    }

    fn link(name: &str) -> LinkAdd {
        LinkAdd {
            lower_netns: None,
            lower: "eth0".into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn torn_file_falls_back_to_the_last_good_state() {
        let d = dir();
        let p = d.join("state.json");
        save(&p, &[link("mv0")]).unwrap();
        save(&p, &[link("mv0"), link("mv1")]).unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        let l = load(&p);
        match &l.problem {
            Some(StateError::Corrupt { moved_to, .. }) => assert!(moved_to.exists()),
            other => panic!("expected corrupt, got {other:?}"),
        }
        assert_eq!(
            l.links,
            vec![link("mv0")],
            "the version before the torn one"
        );
        // Put back in place: the next start finds the good state without a problem.
        let again = load(&p);
        assert!(again.problem.is_none());
        assert_eq!(again.links, vec![link("mv0")]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn invalid_state_is_never_half_applied() {
        let d = dir();
        let p = d.join("state.json");
        // Parses, but two links share a name: nothing of it is used, not even the first.
        std::fs::write(
            &p,
            br#"{"version":1,"links":[{"lower":"eth0","name":"a"},{"lower":"eth0","name":"a"}]}"#,
        )
        .unwrap();
        let l = load(&p);
        assert!(l.links.is_empty());
        assert!(matches!(l.problem, Some(StateError::Corrupt { .. })));
        for bad in [&b"{\"version\":2,\"links\":[]}"[..], b"\x00\xff", b""] {
            std::fs::write(&p, bad).unwrap();
            let l = load(&p);
            assert!(l.links.is_empty() && l.problem.is_some(), "{bad:?}");
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    fn ids(p: &Path) -> (u64, u64) {
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn changes_go_to_the_journal_and_come_back_in_order() {
        let d = dir();
        let p = d.join("state.json");
        let mut w = StateWriter::new(&p, 0);
        let mut now = vec![link("mv0")];
        w.commit(arcs(now.clone())).unwrap();
        let snapshot = ids(&p);
        let journal_len = std::fs::metadata(journal_path(&p)).unwrap().len();
        for i in 1..20 {
            now.push(link(&format!("mv{i}")));
            w.commit(arcs(now.clone())).unwrap();
        }
        now[3].up = true;
        now.remove(7);
        w.commit(arcs(now.clone())).unwrap();
        // Nothing changed: nothing written.
        let before = std::fs::metadata(journal_path(&p)).unwrap().len();
        w.commit(arcs(now.clone())).unwrap();
        assert_eq!(std::fs::metadata(journal_path(&p)).unwrap().len(), before);
        // The snapshot was written once; each change added one short line to the journal.
        assert_eq!(ids(&p), snapshot);
        let lines = std::fs::read_to_string(journal_path(&p)).unwrap();
        assert_eq!(lines.lines().count(), 1 + 20, "{lines}");
        assert!(before - journal_len < 20 * 200, "{lines}");
        let l = load(&p);
        assert!(l.problem.is_none(), "{:?}", l.problem);
        assert_eq!(l.links, now);
        // A new writer (a restart) starts with a snapshot; the old journal is left out.
        let mut again = StateWriter::new(&p, l.generation);
        again.assume_saved(arcs(l.links.clone()));
        now.push(link("mv99"));
        again.commit(arcs(now.clone())).unwrap();
        assert_ne!(ids(&p), snapshot);
        assert_eq!(load(&p).links, now);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_unfinished_journal_line_is_left_out_and_a_bad_one_ends_the_replay() {
        let d = dir();
        let p = d.join("state.json");
        let mut w = StateWriter::new(&p, 0);
        w.commit(arcs(vec![link("mv0")])).unwrap();
        w.commit(arcs(vec![link("mv0"), link("mv1")])).unwrap();
        let good = std::fs::read(journal_path(&p)).unwrap();
        // A turn's line cut short (the daemon died in the write): that turn is left out,
        // whole, and nothing is reported (it was never answered).
        let mut torn = good.clone();
        torn.extend_from_slice(br#"[{"set":{"lower":"eth0","name":"mv2"}},{"del":"mv"#);
        std::fs::write(journal_path(&p), &torn).unwrap();
        let l = load(&p);
        assert!(l.problem.is_none(), "{:?}", l.problem);
        assert_eq!(l.links, vec![link("mv0"), link("mv1")]);
        // A complete line that is not valid: the state of the turn before it, reported, and
        // the journal moved aside; lines after it are not applied.
        for bad in [
            &b"not json\n"[..],
            b"[{\"del\":\"mv5\"}]\n",
            b"[{\"set\":{\"lower\":\"eth0\",\"name\":\"\"}}]\n",
            // A turn is whole or nothing: its first record is not applied either.
            b"[{\"set\":{\"lower\":\"eth0\",\"name\":\"mv2\"}},{\"del\":\"mv9\"}]\n",
        ] {
            let mut j = good.clone();
            j.extend_from_slice(bad);
            j.extend_from_slice(b"[{\"set\":{\"lower\":\"eth0\",\"name\":\"mv3\"}}]\n");
            std::fs::write(journal_path(&p), &j).unwrap();
            let l = load(&p);
            assert!(
                matches!(l.problem, Some(StateError::Corrupt { .. })),
                "{bad:?}: {:?}",
                l.problem
            );
            assert_eq!(l.links, vec![link("mv0"), link("mv1")], "{bad:?}");
            assert!(with_suffix(&journal_path(&p), ".corrupt").exists());
            assert!(!journal_path(&p).exists());
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_journal_of_another_generation_is_left_out() {
        let d = dir();
        let p = d.join("state.json");
        let mut w = StateWriter::new(&p, 0);
        w.commit(arcs(vec![link("mv0")])).unwrap();
        w.commit(arcs(vec![link("mv0"), link("mv1")])).unwrap();
        let old_journal = std::fs::read(journal_path(&p)).unwrap();
        // Stopped after the next snapshot, before its journal was in place.
        let mut w2 = StateWriter::new(&p, load(&p).generation);
        w2.commit(arcs(vec![link("mv1")])).unwrap();
        std::fs::write(journal_path(&p), &old_journal).unwrap();
        let l = load(&p);
        assert!(l.problem.is_none(), "{:?}", l.problem);
        assert_eq!(l.links, vec![link("mv1")]);
        // A snapshot written before the journal existed (no generation) loads as it is.
        std::fs::remove_file(journal_path(&p)).unwrap();
        std::fs::write(
            &p,
            br#"{"version":1,"links":[{"lower":"eth0","name":"a"}]}"#,
        )
        .unwrap();
        let l = load(&p);
        assert!(l.problem.is_none(), "{:?}", l.problem);
        assert_eq!((l.generation, l.links), (0, vec![link("a")]));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_snapshot_is_rewritten_once_the_journal_outgrows_it() {
        let d = dir();
        let p = d.join("state.json");
        let mut w = StateWriter::new(&p, 0);
        let mut now = vec![link("mv0")];
        w.commit(arcs(now.clone())).unwrap();
        let first = ids(&p);
        let mut snapshots = 0;
        let mut last = first;
        for i in 0..2000 {
            now[0].mtu = Some(1000 + i);
            w.commit(arcs(now.clone())).unwrap();
            if ids(&p) != last {
                snapshots += 1;
                last = ids(&p);
            }
            assert!(
                std::fs::metadata(journal_path(&p)).unwrap().len() <= JOURNAL_MIN_COMPACT + 1024
            );
        }
        // ~100 bytes a change against 64 KiB: a few snapshots, not one per change.
        assert!((1..10).contains(&snapshots), "{snapshots}");
        assert_eq!(load(&p).links, now);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_change_that_moves_a_link_in_the_order_writes_a_snapshot() {
        let d = dir();
        let p = d.join("state.json");
        let mut w = StateWriter::new(&p, 0);
        w.commit(arcs(vec![link("a"), link("b"), link("c")]))
            .unwrap();
        let first = ids(&p);
        // `b` renamed `z` in place: a delete and an append would put it last.
        let now = vec![link("a"), link("z"), link("c")];
        w.commit(arcs(now.clone())).unwrap();
        assert_ne!(ids(&p), first);
        assert_eq!(load(&p).links, now);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn files_removed_or_replaced_behind_the_writer_are_written_again() {
        let d = dir();
        let p = d.join("state.json");
        let mut w = StateWriter::new(&p, 0);
        w.commit(arcs(vec![link("a")])).unwrap();
        // The snapshot removed: the next change writes a whole one (not a journal line that
        // nothing would read).
        std::fs::remove_file(&p).unwrap();
        w.commit(arcs(vec![link("a"), link("b")])).unwrap();
        assert_eq!(load(&p).links, vec![link("a"), link("b")]);
        // A directory in its place: the change is refused, and nothing is appended.
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert!(w.commit(arcs(vec![link("a")])).is_err());
        std::fs::remove_dir(&p).unwrap();
        w.commit(arcs(vec![link("a")])).unwrap();
        assert_eq!(load(&p).links, vec![link("a")]);
        // The journal replaced: written again too.
        std::fs::remove_file(journal_path(&p)).unwrap();
        std::fs::write(journal_path(&p), b"").unwrap();
        w.commit(arcs(vec![link("c")])).unwrap();
        assert_eq!(load(&p).links, vec![link("c")]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn any_sequence_of_changes_comes_back_as_committed() {
        let d = dir();
        let p = d.join("state.json");
        let mut w = StateWriter::new(&p, 0);
        // Records kept are shared from one commit to the next, as the manager's are.
        let mut now: Vec<Arc<LinkAdd>> = Vec::new();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        // Names are unique, as the daemon's are.
        let mut made = 0;
        for step in 0..600 {
            // One turn: up to three changes of any kind.
            for _ in 0..=next(3) {
                let k = next(6);
                made += 1;
                if now.is_empty() || k == 0 || k == 1 {
                    now.push(Arc::new(link(&format!("mv{made}"))));
                } else {
                    let i = next(now.len() as u64) as usize;
                    match k {
                        2 => Arc::make_mut(&mut now[i]).up ^= true,
                        3 => {
                            now.remove(i);
                        }
                        4 => Arc::make_mut(&mut now[i]).name = format!("rn{made}"),
                        _ => {
                            // Removed and made again in the same turn: now last.
                            let l = now.remove(i);
                            now.push(l);
                        }
                    }
                }
            }
            w.commit(now.clone()).unwrap();
            if next(50) == 0 {
                // A restart: load, then a new writer.
                let l = load(&p);
                w = StateWriter::new(&p, l.generation);
                w.assume_saved(arcs(l.links));
            }
            let l = load(&p);
            assert!(l.problem.is_none(), "step {step}: {:?}", l.problem);
            assert_eq!(arcs(l.links), now, "step {step}");
        }
        std::fs::remove_dir_all(d).unwrap();
    }
}
