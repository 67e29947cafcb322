//! The state file (`--state PATH`): every macvlan's configuration, written atomically on every
//! change and replayed at start.
//!
//! Format: JSON `{"version": 1, "links": [LinkAdd, …]}` in creation order (see
//! [`crate::proto::LinkAdd`]). Written to `PATH.tmp`, synced, then renamed over `PATH`, so a
//! reader sees the old file or the new one, never a torn one; the version it replaces stays
//! as `PATH.prev`. A file that is not a valid state (does not parse, unknown version, two
//! links of one name) is moved aside to `PATH.corrupt`, reported, and nothing from it is
//! applied; the last good state, `PATH.prev`, is used instead when it is valid.

use crate::proto::LinkAdd;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// State file format version.
pub const STATE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    links: Vec<LinkAdd>,
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
    /// Set when the file could not be used as it was (then `links` is the last good state, or
    /// empty).
    pub problem: Option<StateError>,
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Parses and checks a whole state file; any fault rejects all of it.
fn parse(text: &[u8]) -> Result<Vec<LinkAdd>, String> {
    let f: StateFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    if f.version != STATE_VERSION {
        return Err(format!("unsupported version {}", f.version));
    }
    let mut names = std::collections::HashSet::new();
    for l in &f.links {
        if l.name.is_empty() || l.lower.is_empty() {
            return Err("a link without a name or lower".into());
        }
        if !names.insert(l.name.as_str()) {
            return Err(format!("two links named {:?}", l.name));
        }
    }
    Ok(f.links)
}

/// Reads the state file; a missing file is an empty state. A corrupt one is moved aside and
/// the last good state (`PATH.prev`) taken instead, when there is one.
pub fn load(path: &Path) -> Loaded {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Loaded {
                links: Vec::new(),
                problem: None,
            }
        }
        Err(e) => {
            return Loaded {
                links: Vec::new(),
                problem: Some(StateError::Io(path.into(), e)),
            }
        }
    };
    let reason = match parse(&text) {
        Ok(links) => {
            return Loaded {
                links,
                problem: None,
            }
        }
        Err(reason) => reason,
    };
    let moved_to = with_suffix(path, ".corrupt");
    let _ = std::fs::rename(path, &moved_to);
    let prev = with_suffix(path, ".prev");
    let (links, fallback) = match std::fs::read(&prev)
        .map_err(|e| e.to_string())
        .and_then(|t| parse(&t))
    {
        Ok(links) => {
            // Put the last good state back in place, so the next start finds it too.
            let _ = std::fs::copy(&prev, path);
            let fallback = format!(
                "restoring the last good state {} ({} links)",
                prev.display(),
                links.len()
            );
            (links, fallback)
        }
        Err(_) => (
            Vec::new(),
            "no good state to fall back to: starting empty".into(),
        ),
    };
    Loaded {
        links,
        problem: Some(StateError::Corrupt {
            path: path.into(),
            reason,
            moved_to,
            fallback,
        }),
    }
}

/// Writes the state atomically; the version replaced becomes `PATH.prev`.
pub fn save(path: &Path, links: &[LinkAdd]) -> io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let body = serde_json::to_vec_pretty(&StateFile {
        version: STATE_VERSION,
        links: links.to_vec(),
    })?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
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
}
