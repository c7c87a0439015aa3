//! Where topologies are recorded: `<state dir>/<name>/` (0700) holding the journal
//! (0600) and a lock file. The default state dir is /run/netscript: a tmpfs, so a
//! record dies with the network state it describes at reboot.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::journal::{Journal, Meta, private_dir};
use crate::model::{check_name, plural};

pub const DEFAULT_STATE_DIR: &str = "/run/netscript";

pub fn default_state_dir() -> PathBuf {
    std::env::var_os("NETSCRIPT_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// The command that takes topology `name`, recorded under `base`, down.
pub fn down_command(base: &Path, name: &str) -> String {
    if base == default_state_dir() {
        format!("netscript down {}", crate::model::shell_quote(name))
    } else {
        format!(
            "netscript --state-dir {} down {}",
            crate::model::shell_quote(&base.display().to_string()),
            crate::model::shell_quote(name)
        )
    }
}

/// A topology's record, locked by this process while it lives.
pub struct Record {
    pub dir: PathBuf,
    pub name: String,
    _lock: Flock<File>,
}

impl Record {
    /// Locks the record of `name` (creating its directory). A second netscript on
    /// the same name is refused, never interleaved.
    pub fn lock(base: &Path, name: &str) -> Result<Record> {
        check_name("topology", name)?;
        private_dir(base)?;
        let dir = base.join(name);
        private_dir(&dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))
            .map_err(|e| Error::sys(format!("cannot open lock file in {}: {e}", dir.display()), None))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            Error::sys(
                format!("topology \"{name}\" is being changed by another netscript process right now ({e}); wait for it, or use another --name"),
                Some(e),
            )
        })?;
        Ok(Record { dir, name: name.to_string(), _lock: lock })
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// The journal of an earlier run, if there is one.
    pub fn existing(&self) -> Result<Option<Journal>> {
        let p = self.journal_path();
        if p.exists() { Journal::open(&p).map(Some) } else { Ok(None) }
    }

    /// Starts the journal of a new run. A record that is still up is refused.
    pub fn start(&self, meta: Meta) -> Result<Journal> {
        if let Some(old) = self.existing()? {
            if old.live_count() > 0 {
                return Err(Error::invalid(format!(
                    "topology \"{}\" is already up ({}, from {}); take it down first with: {}",
                    self.name,
                    plural(old.live_count(), "change"),
                    if old.meta.script.is_empty() { "an earlier run".to_string() } else { old.meta.script.clone() },
                    down_command(self.dir.parent().unwrap_or(&self.dir), &self.name)
                )));
            }
            fs::remove_file(self.journal_path())?;
        }
        Journal::create(&self.journal_path(), meta)
    }

    /// Removes the record (after a complete rollback).
    pub fn remove(self) -> Result<()> {
        let _ = fs::remove_file(self.journal_path());
        for e in fs::read_dir(&self.dir)?.flatten() {
            let _ = fs::remove_file(e.path());
        }
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}

/// Names of recorded topologies under `base`.
pub fn list(base: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(base)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("journal.jsonl").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
