//! The state file (`--state PATH`): every macvlan's configuration, written atomically on every
//! change and replayed at start.
//!
//! Format: JSON `{"version": 1, "links": [LinkAdd, …]}` in creation order (see
//! [`crate::proto::LinkAdd`]). Written to `PATH.tmp`, synced, then renamed over `PATH`, so a
//! reader sees the old file or the new one, never a torn one. A file that does not parse is
//! moved aside to `PATH.corrupt` and reported; nothing from it is applied.

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
    #[error("{path} is corrupt ({reason}); moved to {moved_to}; starting without it")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
        /// Where it went.
        moved_to: PathBuf,
    },
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads the state file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<Vec<LinkAdd>, StateError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateError::Io(path.into(), e)),
    };
    let parsed: Result<StateFile, String> = serde_json::from_slice::<StateFile>(&text)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            if f.version == STATE_VERSION {
                Ok(f)
            } else {
                Err(format!("unsupported version {}", f.version))
            }
        });
    match parsed {
        Ok(f) => Ok(f.links),
        Err(reason) => {
            let moved_to = with_suffix(path, ".corrupt");
            let _ = std::fs::rename(path, &moved_to);
            Err(StateError::Corrupt {
                path: path.into(),
                reason,
                moved_to,
            })
        }
    }
}

/// Writes the state atomically.
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
        assert!(load(&p).unwrap().is_empty());
        let links = vec![LinkAdd {
            lower: "eth0".into(),
            name: "mv0".into(),
            up: true,
            ..Default::default()
        }];
        save(&p, &links).unwrap();
        assert_eq!(load(&p).unwrap(), links);
        assert!(!with_suffix(&p, ".tmp").exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn torn_file_is_reported_moved_aside_and_not_applied() {
        let d = dir();
        let p = d.join("state.json");
        save(
            &p,
            &[LinkAdd {
                lower: "eth0".into(),
                name: "mv0".into(),
                ..Default::default()
            }],
        )
        .unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        match load(&p) {
            Err(StateError::Corrupt { moved_to, .. }) => assert!(moved_to.exists()),
            other => panic!("expected corrupt, got {other:?}"),
        }
        assert!(load(&p).unwrap().is_empty());
        std::fs::remove_dir_all(d).unwrap();
    }
}
