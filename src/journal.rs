//! The journal: every change, written to disk before the kernel is touched
//! (write-ahead, fsync), with the ops that undo it. One journal per topology, in
//! `<state dir>/<name>/journal.jsonl`, one JSON object per line:
//!
//! ```text
//! {"t":"meta","name":"topo","script":"/path/topo.lua","pid":123,"started":1764166000}
//! {"t":"begin","seq":1,"op":{...},"undo":[{...}]}   written and fsynced before the change
//! {"t":"done","seq":1}                               the change happened
//! {"t":"failed","seq":2}                             the kernel refused; nothing to undo
//! {"t":"undoing","seq":3}                            a rollback is making its undo (of several ops)
//! {"t":"undone","seq":1}                             rolled back
//! ```
//!
//! An entry with `begin` but neither `done` nor `failed` was in flight when the
//! process died: rollback undoes it too, treating "not there" as success.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::op::Op;
use crate::trusted::open_file_at;

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
    /// Why the undo is what it is when another topology handed it over (a host-wide
    /// setting both changed: "holds net.ipv4.ip_forward=0 for topology a"), or why
    /// the entry is here (`from`).
    pub note: Option<String>,
    /// The topology that made this change and handed it over when it went down
    /// (`Journal::adopt`: its firewall chains, which this topology's rules use):
    /// undone after this topology's own changes.
    pub from: Option<String>,
    /// A rollback started its undo (an `undoing` line): its first op (the main
    /// inverse) may have been made, so finding that object gone no longer means the
    /// change never happened: the restorations after it still apply.
    pub undoing: bool,
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
    /// Nanoseconds since the epoch (orders topologies started in the same second;
    /// absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ns: Option<u64>,
    /// The firewall tool the run found and used ("iptables-nft", ...), recorded with
    /// its first firewall change so that `down` uses it without detecting it again
    /// (absent in older records and runs that made none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<String>,
}

impl Meta {
    /// When the run started, as finely as the record says.
    pub fn started_at(&self) -> u128 {
        self.started_ns.map_or(self.started as u128 * 1_000_000_000, u128::from)
    }
}

/// One line of the journal. The ops are borrowed when a line is written (a change's
/// op and undo go to its entry as well: no copy for the line) and owned when read.
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Line<'a> {
    Meta(Meta),
    Begin {
        seq: u64,
        op: Cow<'a, Op>,
        undo: Cow<'a, [Op]>,
        /// Set on an entry another topology handed over (`Entry::from`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
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
    /// A rollback is about to make the entry's undo (see `Entry::undoing`).
    Undoing {
        seq: u64,
    },
    /// The undo of an entry (and its op), once known exactly (after the change).
    Amend {
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        op: Option<Cow<'a, Op>>,
        undo: Cow<'a, [Op]>,
        /// Set when another topology handed this undo over (see `Entry::note`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// Read by hand, not derived: the derived form of an internally tagged enum buffers
/// each line whole (and copies each string in it) before it reads the tag. The
/// fields of every kind of line are gathered in any order (each once), then the tag
/// says which line it is and which of them it needs; other fields are ignored, as
/// in the derived form.
impl<'de> Deserialize<'de> for Line<'static> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(LineVisitor)
    }
}

/// The kinds of lines (`t`).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Meta,
    Begin,
    Done,
    Failed,
    Undone,
    Undoing,
    Amend,
}

/// The fields of all kinds of lines (`Line`, `Meta`).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    T,
    Seq,
    Op,
    Undo,
    Note,
    From,
    Name,
    Script,
    Pid,
    Started,
    StartedNs,
    Firewall,
    #[serde(other)]
    Other,
}

struct LineVisitor;

impl<'de> serde::de::Visitor<'de> for LineVisitor {
    type Value = Line<'static>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a journal line (an object with a \"t\" field)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Line<'static>, A::Error> {
        use serde::de::{Error as _, IgnoredAny};
        /// The next value into `slot`, which a field may fill once.
        fn once<'de, A: serde::de::MapAccess<'de>, T: Deserialize<'de>>(
            map: &mut A,
            slot: &mut Option<T>,
            name: &'static str,
        ) -> std::result::Result<(), A::Error> {
            if slot.is_some() {
                return Err(A::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }
        let mut t: Option<Kind> = None;
        let (mut seq, mut op, mut undo, mut note) = (None, None::<Option<Op>>, None::<Vec<Op>>, None::<Option<String>>);
        let mut from = None::<Option<String>>;
        let (mut name, mut script, mut pid, mut started, mut started_ns, mut firewall) =
            (None::<String>, None, None, None, None::<Option<u64>>, None::<Option<String>>);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::T => once(&mut map, &mut t, "t")?,
                Field::Seq => once(&mut map, &mut seq, "seq")?,
                Field::Op => once(&mut map, &mut op, "op")?,
                Field::Undo => once(&mut map, &mut undo, "undo")?,
                Field::Note => once(&mut map, &mut note, "note")?,
                Field::From => once(&mut map, &mut from, "from")?,
                Field::Name => once(&mut map, &mut name, "name")?,
                Field::Script => once(&mut map, &mut script, "script")?,
                Field::Pid => once(&mut map, &mut pid, "pid")?,
                Field::Started => once(&mut map, &mut started, "started")?,
                Field::StartedNs => once(&mut map, &mut started_ns, "started_ns")?,
                Field::Firewall => once(&mut map, &mut firewall, "firewall")?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let t = t.ok_or_else(|| A::Error::missing_field("t"))?;
        let seq = || seq.ok_or_else(|| A::Error::missing_field("seq"));
        let undo = || undo.ok_or_else(|| A::Error::missing_field("undo"));
        Ok(match t {
            Kind::Meta => Line::Meta(Meta {
                name: name.ok_or_else(|| A::Error::missing_field("name"))?,
                script: script.unwrap_or_default(),
                pid: pid.unwrap_or_default(),
                started: started.unwrap_or_default(),
                started_ns: started_ns.flatten(),
                firewall: firewall.flatten(),
            }),
            Kind::Begin => Line::Begin {
                seq: seq()?,
                op: Cow::Owned(op.flatten().ok_or_else(|| A::Error::missing_field("op"))?),
                undo: Cow::Owned(undo()?),
                from: from.flatten(),
                note: note.flatten(),
            },
            Kind::Done => Line::Done { seq: seq()? },
            Kind::Failed => Line::Failed { seq: seq()? },
            Kind::Undone => Line::Undone { seq: seq()? },
            Kind::Undoing => Line::Undoing { seq: seq()? },
            Kind::Amend => Line::Amend {
                seq: seq()?,
                op: op.flatten().map(Cow::Owned),
                undo: Cow::Owned(undo()?),
                note: note.flatten(),
            },
        })
    }
}

pub struct Journal {
    file: Option<File>,
    path: Option<PathBuf>,
    pub meta: Meta,
    /// Whether the journal has its `meta` line (every run writes it first): false
    /// for a file that is empty, or whose first line was lost (`meta` is then the
    /// default: no name, script or start time).
    pub has_meta: bool,
    entries: Vec<Entry>,
    next: u64,
    /// What the file needs before the next line is appended (a torn last line).
    repair: Repair,
    /// Set when the last line was cut short by a crash: what to tell a person.
    pub torn: Option<String>,
    /// `done` and `undone` lines not written yet (see `mark`, `mark_undone`): written
    /// with the next line that is neither (one write), at `sync` / `flush`, when it
    /// grows past `BUFFERED`, or when the journal is dropped.
    buffered: Vec<u8>,
}

/// How many bytes of `done` / `undone` lines are kept before they are written.
const BUFFERED: usize = 64 * 1024;

/// A fix the file needs before anything is appended to it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Repair {
    None,
    /// Cut the file to this length (a torn last line).
    Truncate(u64),
    /// The last line is whole but lacks its newline.
    Newline,
}

/// The journal's file name in a record's directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// The `script` of a REPL session's record (`Meta::script`): a REPL holds its
/// record's lock for as long as it is open.
pub const REPL_SCRIPT: &str = "(repl)";

/// Opens the directory of `path` without following a link (and checks it).
fn parent_dir(path: &Path) -> Result<(OwnedFd, PathBuf)> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::from_errno(format!("cannot open {}", dir.display()), e))?;
    crate::trusted::check_trusted(fd.as_fd(), dir, true)?;
    Ok((fd, dir.to_path_buf()))
}

impl Journal {
    /// A journal kept only in memory (plan mode, tests).
    pub fn in_memory(meta: Meta) -> Self {
        Journal {
            file: None,
            path: None,
            meta,
            has_meta: true,
            entries: Vec::new(),
            next: 1,
            repair: Repair::None,
            torn: None,
            buffered: Vec::new(),
        }
    }

    /// Starts a new journal file (created 0600; it must not exist) in the directory
    /// `dir_path`, already opened (and checked) as `dir`.
    pub fn create_at(dir: BorrowedFd<'_>, dir_path: &Path, meta: Meta) -> Result<Self> {
        let path = dir_path.join(JOURNAL_FILE);
        let file = open_file_at(
            dir,
            dir_path,
            JOURNAL_FILE,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_APPEND,
            0o600,
        )
        .map_err(|e| match e {
            Error::Sys { msg, errno } => Error::Sys { msg: format!("cannot create journal: {msg}"), errno },
            e => e,
        })?;
        let mut j = Journal {
            file: Some(file),
            path: Some(path),
            meta: meta.clone(),
            has_meta: true,
            entries: Vec::new(),
            next: 1,
            repair: Repair::None,
            torn: None,
            buffered: Vec::new(),
        };
        j.write(&Line::Meta(meta), true)?;
        Ok(j)
    }

    /// `create_at` for a path (its directory is opened without following links).
    pub fn create(path: &Path, meta: Meta) -> Result<Self> {
        let (dir, dir_path) = parent_dir(path)?;
        Self::create_at(dir.as_fd(), &dir_path, meta)
    }

    /// `open_at` for a path (its directory is opened without following links).
    pub fn open(path: &Path) -> Result<Self> {
        let (dir, dir_path) = parent_dir(path)?;
        Self::open_at(dir.as_fd(), &dir_path)
    }

    /// Reads the journal in `dir` and keeps it open for appending (for `down`,
    /// recovery). The file is opened without following a link, and refused when
    /// another user owns it or others may write it. A line that does not parse makes
    /// the whole file untrusted: it is reported. The one exception is a last line cut
    /// short (no newline: a crash while it was written): that change never started
    /// (its `begin` is written before the change), so it is left out, said in
    /// `torn`, and cut off the file before anything is appended.
    pub fn open_at(dir: BorrowedFd<'_>, dir_path: &Path) -> Result<Self> {
        let path = dir_path.join(JOURNAL_FILE);
        let mut f = open_file_at(dir, dir_path, JOURNAL_FILE, OFlag::O_RDWR | OFlag::O_APPEND, 0)?;
        let mut bytes = Vec::with_capacity(f.metadata().map_or(0, |m| m.len() as usize + 1));
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::sys(format!("cannot read journal {}: {e}", path.display()), None))?;
        let mut meta = Meta::default();
        let mut has_meta = false;
        let mut entries: Vec<Entry> = Vec::new();
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut torn = None;
        let mut repair = Repair::None;
        if complete < bytes.len() {
            if serde_json::from_slice::<Line>(&bytes[complete..]).is_ok() {
                // Whole but for its newline: used, and ended before anything is appended.
                bytes.push(b'\n');
                repair = Repair::Newline;
            } else {
                torn = Some(format!(
                    "the last line of {} was cut short (a crash while writing it); the change it began never started",
                    path.display()
                ));
                repair = Repair::Truncate(complete as u64);
                bytes.truncate(complete);
            }
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&bytes),
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = match serde_json::from_str(line) {
                Ok(l) => l,
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
                position(entries, seq).ok_or_else(|| {
                    Error::invalid(format!("state file {} line {}: entry {seq} was never begun", path.display(), i + 1))
                })
            };
            match parsed {
                Line::Meta(m) => {
                    meta = m;
                    has_meta = true;
                }
                Line::Begin { seq, op, undo, from, note } => entries.push(Entry {
                    seq,
                    op: op.into_owned(),
                    undo: undo.into_owned(),
                    state: State::InFlight,
                    note,
                    from,
                    undoing: false,
                }),
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
                Line::Undoing { seq } => {
                    let k = find(&mut entries, seq)?;
                    entries[k].undoing = true
                }
                Line::Amend { seq, op, undo, note } => {
                    let k = find(&mut entries, seq)?;
                    entries[k].undo = undo.into_owned();
                    if note.is_some() {
                        entries[k].note = note;
                    }
                    if let Some(op) = op {
                        entries[k].op = op.into_owned();
                    }
                }
            }
        }
        let next = entries.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
        Ok(Journal {
            file: Some(f),
            path: Some(path),
            meta,
            has_meta,
            entries,
            next,
            repair,
            torn,
            buffered: Vec::new(),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn write(&mut self, line: &Line, sync: bool) -> Result<()> {
        self.write_buffered(line, sync, false)
    }

    /// Writes `line` after the buffered ones (one write), fsynced when `sync`; with
    /// `keep`, only adds it to the buffer (written later; see `mark_undone`).
    fn write_buffered(&mut self, line: &Line, sync: bool, keep: bool) -> Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        serde_json::to_writer(&mut self.buffered, line).expect("journal lines serialize");
        self.buffered.push(b'\n');
        if keep && !sync && self.buffered.len() < BUFFERED {
            return Ok(());
        }
        self.write_out(sync)
    }

    /// Writes the buffered lines (fsynced when `sync`).
    fn write_out(&mut self, sync: bool) -> Result<()> {
        let Some(f) = &mut self.file else { return Ok(()) };
        let fixed = match self.repair {
            Repair::None => Ok(()),
            Repair::Truncate(len) => f.set_len(len),
            Repair::Newline => f.write_all(b"\n"),
        };
        fixed.map_err(|e| Error::sys(format!("cannot repair the journal's last line: {e}"), None))?;
        self.repair = Repair::None;
        // Cleared, not taken: the buffer keeps its capacity for the next lines.
        let written = f.write_all(&self.buffered).and_then(|_| if sync { f.sync_data() } else { Ok(()) });
        self.buffered.clear();
        written.map_err(|e| Error::sys(format!("cannot write the journal: {e}"), None))
    }

    /// Writes the buffered `done` / `undone` lines (no fsync).
    pub fn flush(&mut self) -> Result<()> {
        if self.buffered.is_empty() { Ok(()) } else { self.write_out(false) }
    }

    /// Records a change about to be made (fsynced before returning).
    pub fn begin(&mut self, op: &Op, undo: &[Op]) -> Result<u64> {
        let seq = self.next;
        self.next += 1;
        self.write(
            &Line::Begin { seq, op: Cow::Borrowed(op), undo: Cow::Borrowed(undo), from: None, note: None },
            true,
        )?;
        self.entries.push(Entry {
            seq,
            op: op.clone(),
            undo: undo.to_vec(),
            state: State::InFlight,
            note: None,
            from: None,
            undoing: false,
        });
        Ok(seq)
    }

    /// Takes over changes topology `from` made and handed over as it went down
    /// (`changes`: op and undo, oldest first): each is a new entry, done, with
    /// `note` and `from` (undone after this topology's own; see `Entry::from`). All
    /// lines in one write, fsynced.
    pub fn adopt(&mut self, changes: &[(Op, Vec<Op>)], from: &str, note: &str) -> Result<()> {
        let first = self.entries.len();
        for (op, undo) in changes {
            let seq = self.next;
            self.next += 1;
            let (from, note) = (Some(from.to_string()), Some(note.to_string()));
            self.write_buffered(
                &Line::Begin {
                    seq,
                    op: Cow::Borrowed(op),
                    undo: Cow::Borrowed(undo),
                    from: from.clone(),
                    note: note.clone(),
                },
                false,
                true,
            )?;
            self.write_buffered(&Line::Done { seq }, false, true)?;
            self.entries.push(Entry {
                seq,
                op: op.clone(),
                undo: undo.clone(),
                state: State::Done,
                note,
                from,
                undoing: false,
            });
        }
        self.sync().inspect_err(|_| self.entries.truncate(first))
    }

    /// Marks an entry. A `done` line is buffered, written with the next line (the
    /// next change's `begin`: one write for both) or at `flush` (the session flushes
    /// wherever it settles: before anything could look, at the end of a script or a
    /// REPL line): if a crash loses it, the entry looks in flight and is undone all
    /// the same, as when a crash comes between a change and its mark. `undone` is
    /// fsynced (see `mark_undone`).
    pub fn mark(&mut self, seq: u64, state: State) -> Result<()> {
        self.mark_synced(seq, state, state == State::Undone)
    }

    /// Marks an entry undone; `durable`: written and fsynced before returning (with
    /// the lines buffered before it). An undo that can run twice without harm (a
    /// deletion finds nothing the second time, a value is set again) needs neither:
    /// its line is buffered (a rollback marks thousands; one write each was a
    /// measurable part of `down`), and a crash that loses it, and those after it,
    /// only makes the next rollback run those undos again (what is gone, or not
    /// ours, is skipped). The lines are always a prefix of the marks made, in order.
    pub fn mark_undone(&mut self, seq: u64, durable: bool) -> Result<()> {
        self.mark_synced(seq, State::Undone, durable)
    }

    /// Makes everything written so far durable (the buffered lines too).
    pub fn sync(&mut self) -> Result<()> {
        self.write_out(true)
    }

    fn mark_synced(&mut self, seq: u64, state: State, sync: bool) -> Result<()> {
        let line = match state {
            State::Done => Line::Done { seq },
            State::Failed => Line::Failed { seq },
            State::Undone => Line::Undone { seq },
            State::InFlight => unreachable!("entries start in flight"),
        };
        self.write_buffered(&line, sync, matches!(state, State::Done | State::Undone))?;
        if let Some(k) = position(&self.entries, seq) {
            self.entries[k].state = state;
        }
        Ok(())
    }

    /// Records that a rollback is about to make the undo of `seq` (fsynced, with the
    /// lines buffered before it): see `Entry::undoing`.
    pub fn undoing(&mut self, seq: u64) -> Result<()> {
        self.write(&Line::Undoing { seq }, true)?;
        if let Some(k) = position(&self.entries, seq) {
            self.entries[k].undoing = true;
        }
        Ok(())
    }

    /// Replaces an entry's undo, and its op when given (fsynced).
    pub fn amend(&mut self, seq: u64, op: Option<Op>, undo: Vec<Op>) -> Result<()> {
        self.write(
            &Line::Amend { seq, op: op.as_ref().map(Cow::Borrowed), undo: Cow::Borrowed(&undo), note: None },
            true,
        )?;
        if let Some(e) = position(&self.entries, seq).map(|k| &mut self.entries[k]) {
            e.undo = undo;
            if let Some(op) = op {
                e.op = op;
            }
        }
        Ok(())
    }

    /// Replaces an entry's undo with one another topology handed over, saying so
    /// in `note` (fsynced).
    pub fn hand_over(&mut self, seq: u64, undo: Vec<Op>, note: String) -> Result<()> {
        self.write(&Line::Amend { seq, op: None, undo: Cow::Borrowed(&undo), note: Some(note.clone()) }, true)?;
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.undo = undo;
            e.note = Some(note);
        }
        Ok(())
    }

    /// Records the firewall tool in use (`Meta::firewall`) as a second meta line,
    /// which replaces the first when the journal is read. Not fsynced: if it is lost,
    /// `down` detects the tool again.
    pub fn set_firewall(&mut self, tool: &str) -> Result<()> {
        self.meta.firewall = Some(tool.to_string());
        let meta = self.meta.clone();
        self.write(&Line::Meta(meta), false)
    }

    /// The sequence number the next entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries still in effect, newest first.
    pub fn live_newest_first(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().rev().filter(|e| e.live())
    }

    /// Where the entries still in effect are in `entries`, newest first.
    pub fn live_positions_newest_first(&self) -> impl Iterator<Item = usize> {
        self.entries.iter().enumerate().rev().filter(|(_, e)| e.live()).map(|(p, _)| p)
    }

    pub fn live_count(&self) -> usize {
        self.entries.iter().filter(|e| e.live()).count()
    }
}

impl Drop for Journal {
    /// The buffered lines are written (a crash loses them; see `mark`, `mark_undone`).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Where the entry `seq` is: entries are in the order of their (increasing) sequence
/// numbers, so a binary search finds it (a rollback marks thousands). A run marks the
/// change it just began, the last entry: looked at first (the search's steps each
/// touch an entry of its own, out of cache in a long journal).
fn position(entries: &[Entry], seq: u64) -> Option<usize> {
    match entries.last() {
        Some(e) if e.seq == seq => Some(entries.len() - 1),
        _ => entries.binary_search_by_key(&seq, |e| e.seq).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NsRef;
    use std::fs;
    use std::os::unix::fs::DirBuilderExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ns-journal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    /// The firewall tool is a second meta line that wins when read; a record of an
    /// older version (no such field) reads as None.
    #[test]
    fn the_firewall_tool_is_read_back_and_old_records_still_read() {
        let dir = temp_dir("fwtool");
        let p = dir.join("journal.jsonl");
        let mut j = Journal::create(&p, Meta { name: "t".into(), ..Default::default() }).unwrap();
        let s1 = j.begin(&Op::AddNetns { name: "a".into() }, &[Op::del_netns("a")]).unwrap();
        j.set_firewall("iptables-nft").unwrap();
        j.mark(s1, State::Done).unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.meta.firewall.as_deref(), Some("iptables-nft"));
        assert_eq!((j.meta.name.as_str(), j.entries().len()), ("t", 1));
        fs::write(&p, "{\"t\":\"meta\",\"name\":\"old\",\"script\":\"x.lua\",\"pid\":1,\"started\":2}\n").unwrap();
        let j = Journal::open(&p).unwrap();
        assert_eq!((j.meta.name.as_str(), j.meta.firewall.as_deref()), ("old", None));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Changes another topology handed over are entries of their own, done, read
    /// back with where they came from.
    #[test]
    fn adopted_changes_are_read_back_done_with_their_origin() {
        let dir = temp_dir("adopt");
        let p = dir.join("journal.jsonl");
        let mut j = Journal::create(&p, Meta { name: "b".into(), ..Default::default() }).unwrap();
        let s1 = j.begin(&Op::AddNetns { name: "x".into() }, &[Op::del_netns("x")]).unwrap();
        j.mark(s1, State::Done).unwrap();
        let chain = |c: &str| Op::FwNewChain {
            ns: NsRef::Host,
            family: crate::firewall::Family::Ipv4,
            table: "filter".into(),
            chain: c.into(),
        };
        j.adopt(&[(chain("A1"), vec![]), (chain("A2"), vec![])], "a", "holds A1, A2 for a").unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        let got: Vec<_> = j.entries().iter().map(|e| (e.seq, e.state, e.from.as_deref(), e.note.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                (1, State::Done, None, None),
                (2, State::Done, Some("a"), Some("holds A1, A2 for a")),
                (3, State::Done, Some("a"), Some("holds A1, A2 for a")),
            ]
        );
        assert_eq!(j.entries()[2].op, chain("A2"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Every field a line is written with is one the hand-written reader knows: a
    /// field added to `Meta` or `Line` and not to `Field` would be read as unknown,
    /// and dropped, without this.
    #[test]
    fn the_reader_knows_every_field_written() {
        let meta = Meta {
            name: "t".into(),
            script: "s.lua".into(),
            pid: 1,
            started: 2,
            started_ns: Some(3),
            firewall: Some("iptables-nft".into()),
        };
        let op = Op::AddNetns { name: "a".into() };
        let lines = [
            Line::Meta(meta.clone()),
            Line::Begin { seq: 1, op: Cow::Borrowed(&op), undo: Cow::Owned(vec![]), from: None, note: None },
            Line::Begin {
                seq: 2,
                op: Cow::Borrowed(&op),
                undo: Cow::Owned(vec![]),
                from: Some("a".into()),
                note: Some("n".into()),
            },
            Line::Done { seq: 1 },
            Line::Failed { seq: 1 },
            Line::Undone { seq: 1 },
            Line::Undoing { seq: 1 },
            Line::Amend { seq: 1, op: Some(Cow::Borrowed(&op)), undo: Cow::Owned(vec![]), note: Some("n".into()) },
        ];
        for line in &lines {
            let text = serde_json::to_string(line).unwrap();
            let serde_json::Value::Object(fields) = serde_json::from_str(&text).unwrap() else { panic!("{text}") };
            for key in fields.keys() {
                let field: Field = serde_json::from_value(serde_json::Value::String(key.clone())).unwrap();
                assert!(!matches!(field, Field::Other), "{key} of {text}");
            }
            let back: Line = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }

    /// A line is read whatever the order of its fields (a record edited by hand, or
    /// written by another JSON tool), an op's tag among them; a line of a kind no
    /// netscript writes, or without its tag, is not trusted.
    #[test]
    fn lines_read_in_any_field_order_and_unknown_kinds_are_refused() {
        let dir = temp_dir("order");
        let p = dir.join("journal.jsonl");
        fs::write(
            &p,
            concat!(
                "{\"started\":2,\"name\":\"t\",\"t\":\"meta\",\"firewall\":\"iptables-nft\"}\n",
                "{\"undo\":[{\"name\":\"a\",\"op\":\"del_netns\"}],\"op\":{\"name\":\"a\",\"op\":\"add_netns\"},\"seq\":1,\"t\":\"begin\"}\n",
                "{\"seq\":1,\"t\":\"done\",\"later\":true}\n",
                "{\"t\":\"begin\",\"seq\":2,\"op\":{\"op\":\"add_bridge\",\"ns\":null,\"name\":\"b\"},\"undo\":[]}\n",
                "{\"note\":\"n\",\"undo\":[{\"ns\":null,\"op\":\"del_link\",\"name\":\"b\"}],\"seq\":2,\"t\":\"amend\"}\n",
            ),
        )
        .unwrap();
        let j = Journal::open(&p).unwrap();
        assert_eq!((j.meta.name.as_str(), j.meta.started, j.meta.firewall.as_deref()), ("t", 2, Some("iptables-nft")));
        let e = j.entries();
        assert_eq!((e.len(), e[0].state, e[1].state), (2, State::Done, State::InFlight));
        // A record from before the namespace mark: its deletion is not `marked`.
        let unmarked = Op::DelNetns { name: "a".into(), id: None, marked: false };
        assert_eq!((&e[0].op, e[0].undo.as_slice()), (&Op::AddNetns { name: "a".into() }, &[unmarked][..]));
        assert_eq!(e[1].undo, vec![Op::del_link(&NsRef::Host, "b")]);
        assert_eq!(e[1].note.as_deref(), Some("n"));
        for bad in [
            "{\"t\":\"forget\",\"seq\":1}",
            "{\"seq\":1}",
            "{\"t\":\"meta\",\"pid\":1}",
            "{\"t\":\"begin\",\"seq\":1,\"undo\":[]}",
            "{\"t\":\"begin\",\"seq\":1,\"op\":{\"name\":\"a\"},\"undo\":[]}",
        ] {
            fs::write(&p, format!("{bad}\n")).unwrap();
            let err = Journal::open(&p).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("does not parse"), "{bad}: {err}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn survives_reopen_and_reports_garbage() {
        let dir = temp_dir("reopen");
        let p = dir.join("journal.jsonl");
        let mut j = Journal::create(&p, Meta { name: "t".into(), ..Default::default() }).unwrap();
        let op = Op::AddNetns { name: "a".into() };
        let undo = vec![Op::del_netns("a")];
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
        assert_eq!(j.live_newest_first().next().unwrap().seq, s2);
        assert!(j.torn.is_none());
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        fs::write(&p, "{not json\n").unwrap();
        let e = Journal::open(&p).err().unwrap().to_string();
        assert!(e.contains("does not parse"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_a_change_that_never_started() {
        let dir = temp_dir("torn");
        let p = dir.join("journal.jsonl");
        let mut j = Journal::create(&p, Meta { name: "t".into(), ..Default::default() }).unwrap();
        let s1 = j.begin(&Op::AddNetns { name: "a".into() }, &[Op::del_netns("a")]).unwrap();
        j.mark(s1, State::Done).unwrap();
        drop(j);
        // A crash while the next `begin` was written: half a line, no newline.
        let whole = fs::read_to_string(&p).unwrap();
        fs::write(&p, format!("{whole}{{\"t\":\"begin\",\"seq\":2,\"op\":{{\"op\":\"add_br")).unwrap();
        let mut j = Journal::open(&p).unwrap();
        assert_eq!(j.entries().len(), 1, "the torn begin is not an entry");
        assert!(j.torn.as_deref().unwrap().contains("cut short"), "{:?}", j.torn);
        // Appending cuts the torn tail first: the file parses again, whole.
        let s = j.begin(&Op::AddNetns { name: "b".into() }, &[]).unwrap();
        assert_eq!(s, 2);
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.entries().len(), 2);
        assert!(j.torn.is_none());
        // Bad in the middle: untrusted, whatever follows.
        let text = fs::read_to_string(&p).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(1, "{\"t\":\"beg");
        fs::write(&p, lines.join("\n") + "\n").unwrap();
        assert!(Journal::open(&p).err().unwrap().to_string().contains("line 2 does not parse"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_links_and_files_others_may_write() {
        let dir = temp_dir("trust");
        let p = dir.join("journal.jsonl");
        drop(Journal::create(&p, Meta { name: "t".into(), ..Default::default() }).unwrap());
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o622)).unwrap();
        let e = Journal::open(&p).err().unwrap().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let other = temp_dir("trust-link");
        std::os::unix::fs::symlink(&p, other.join("journal.jsonl")).unwrap();
        let e = Journal::open(&other.join("journal.jsonl")).err().unwrap().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }
}
