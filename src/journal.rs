//! The journal: every change, written to disk before the kernel is touched
//! (write-ahead, fsync), with the ops that undo it. One journal per topology, in
//! `<state dir>/<name>/journal.jsonl`, one JSON object per line:
//!
//! ```text
//! {"t":"meta","name":"topo","script":"/path/topo.lua","pid":123,"started":1764166000}
//! {"t":"begin","seq":1,"op":{...},"undo":[{...}]}   written and fsynced before the change
//! {"t":"done","seq":1}                               the change happened
//! {"t":"failed","seq":2}                             the kernel refused; nothing to undo
//! {"t":"undone","seq":1}                             rolled back
//! ```
//!
//! An entry with `begin` but neither `done` nor `failed` was in flight when the
//! process died: rollback undoes it too, treating "not there" as success.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::op::Op;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    InFlight,
    Done,
    Failed,
    Undone,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u64,
    pub op: Op,
    pub undo: Vec<Op>,
    pub state: State,
}

impl Entry {
    /// Still in effect (or possibly in effect, for an in-flight entry).
    pub fn live(&self) -> bool {
        matches!(self.state, State::Done | State::InFlight)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub name: String,
    #[serde(default)]
    pub script: String,
    #[serde(default)]
    pub pid: u32,
    /// Seconds since the epoch.
    #[serde(default)]
    pub started: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Line {
    Meta(Meta),
    Begin {
        seq: u64,
        op: Op,
        undo: Vec<Op>,
    },
    Done {
        seq: u64,
    },
    Failed {
        seq: u64,
    },
    Undone {
        seq: u64,
    },
    /// The undo of an entry (and its op), once known exactly (after the change).
    Amend {
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        op: Option<Op>,
        undo: Vec<Op>,
    },
}

pub struct Journal {
    file: Option<File>,
    path: Option<PathBuf>,
    pub meta: Meta,
    entries: Vec<Entry>,
    next: u64,
}

impl Journal {
    /// A journal kept only in memory (plan mode, tests).
    pub fn in_memory(meta: Meta) -> Self {
        Journal { file: None, path: None, meta, entries: Vec::new(), next: 1 }
    }

    /// Starts a new journal file (created 0600; it must not exist).
    pub fn create(path: &Path, meta: Meta) -> Result<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::sys(format!("cannot create journal {}: {e}", path.display()), None))?;
        let mut j =
            Journal { file: Some(file), path: Some(path.to_owned()), meta: meta.clone(), entries: Vec::new(), next: 1 };
        j.write(&Line::Meta(meta), true)?;
        Ok(j)
    }

    /// Reads an existing journal and opens it for appending (for `down`, recovery).
    /// A line that does not parse makes the whole file untrusted: it is reported.
    pub fn open(path: &Path) -> Result<Self> {
        let f =
            File::open(path).map_err(|e| Error::sys(format!("cannot read journal {}: {e}", path.display()), None))?;
        let mut meta = Meta::default();
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = match serde_json::from_str(&line) {
                Ok(l) => l,
                // A torn last line (crash while writing) is expected; anything else is not.
                Err(e) => {
                    return Err(Error::invalid(format!(
                        "state file {} line {} does not parse ({e}); not trusting it. \
                         Inspect or remove it by hand",
                        path.display(),
                        i + 1
                    )));
                }
            };
            let find = |entries: &mut Vec<Entry>, seq: u64| -> Result<usize> {
                entries.iter().position(|e| e.seq == seq).ok_or_else(|| {
                    Error::invalid(format!("state file {} line {}: entry {seq} was never begun", path.display(), i + 1))
                })
            };
            match parsed {
                Line::Meta(m) => meta = m,
                Line::Begin { seq, op, undo } => entries.push(Entry { seq, op, undo, state: State::InFlight }),
                Line::Done { seq } => {
                    let k = find(&mut entries, seq)?;
                    entries[k].state = State::Done
                }
                Line::Failed { seq } => {
                    let k = find(&mut entries, seq)?;
                    entries[k].state = State::Failed
                }
                Line::Undone { seq } => {
                    let k = find(&mut entries, seq)?;
                    entries[k].state = State::Undone
                }
                Line::Amend { seq, op, undo } => {
                    let k = find(&mut entries, seq)?;
                    entries[k].undo = undo;
                    if let Some(op) = op {
                        entries[k].op = op;
                    }
                }
            }
        }
        let next = entries.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Journal { file: Some(file), path: Some(path.to_owned()), meta, entries, next })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn write(&mut self, line: &Line, sync: bool) -> Result<()> {
        if let Some(f) = &mut self.file {
            let mut s = serde_json::to_string(line).expect("journal lines serialize");
            s.push('\n');
            f.write_all(s.as_bytes())
                .and_then(|_| if sync { f.sync_data() } else { Ok(()) })
                .map_err(|e| Error::sys(format!("cannot write the journal: {e}"), None))?;
        }
        Ok(())
    }

    /// Records a change about to be made (fsynced before returning).
    pub fn begin(&mut self, op: &Op, undo: &[Op]) -> Result<u64> {
        let seq = self.next;
        self.next += 1;
        self.write(&Line::Begin { seq, op: op.clone(), undo: undo.to_vec() }, true)?;
        self.entries.push(Entry { seq, op: op.clone(), undo: undo.to_vec(), state: State::InFlight });
        Ok(seq)
    }

    /// Marks an entry. `done` needs no fsync: if it is lost, the entry looks in
    /// flight and is undone all the same.
    pub fn mark(&mut self, seq: u64, state: State) -> Result<()> {
        let line = match state {
            State::Done => Line::Done { seq },
            State::Failed => Line::Failed { seq },
            State::Undone => Line::Undone { seq },
            State::InFlight => unreachable!("entries start in flight"),
        };
        self.write(&line, state == State::Undone)?;
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.state = state;
        }
        Ok(())
    }

    /// Replaces an entry's undo, and its op when given (fsynced).
    pub fn amend(&mut self, seq: u64, op: Option<Op>, undo: Vec<Op>) -> Result<()> {
        self.write(&Line::Amend { seq, op: op.clone(), undo: undo.clone() }, true)?;
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.undo = undo;
            if let Some(op) = op {
                e.op = op;
            }
        }
        Ok(())
    }

    /// The sequence number the next entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries still in effect, newest first.
    pub fn live_newest_first(&self) -> Vec<Entry> {
        self.entries.iter().rev().filter(|e| e.live()).cloned().collect()
    }

    pub fn live_count(&self) -> usize {
        self.entries.iter().filter(|e| e.live()).count()
    }
}

/// Creates a directory with mode 0700 (and its parents), and checks that an existing
/// one is not open to others.
pub fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
        Error::sys(
            format!("cannot create state directory {}: {e}", dir.display()),
            e.raw_os_error().map(nix::errno::Errno::from_raw),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NsRef;

    #[test]
    fn survives_reopen_and_reports_garbage() {
        let dir = std::env::temp_dir().join(format!("ns-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        private_dir(&dir).unwrap();
        let p = dir.join("journal.jsonl");
        let mut j = Journal::create(&p, Meta { name: "t".into(), ..Default::default() }).unwrap();
        let op = Op::AddNetns { name: "a".into() };
        let undo = vec![Op::DelNetns { name: "a".into() }];
        let s1 = j.begin(&op, &undo).unwrap();
        j.mark(s1, State::Done).unwrap();
        let s2 = j.begin(&Op::AddBridge { ns: NsRef::Host, name: "b".into() }, &[]).unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.meta.name, "t");
        assert_eq!(j.entries().len(), 2);
        assert_eq!(j.entries()[0].state, State::Done);
        assert_eq!(j.entries()[1].state, State::InFlight);
        assert_eq!(j.entries()[1].seq, s2);
        assert_eq!(j.live_newest_first()[0].seq, s2);
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        fs::write(&p, "{not json\n").unwrap();
        let e = Journal::open(&p).err().unwrap().to_string();
        assert!(e.contains("does not parse"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
