//! Where topologies are recorded: `<state dir>/<name>/` (0700) holding the journal
//! (0600) and a lock file. The default state dir is /run/netscript: a tmpfs, so a
//! record dies with the network state it describes at reboot.
//!
//! The records decide what root undoes, so they are trusted only when they deserve
//! it: the state dir, a record's directory, its journal, lock and spawn logs are
//! opened without following symbolic links (`O_NOFOLLOW`, each file `openat` under
//! its directory's fd), and refused when another user owns them or when group or
//! others may write them.

use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, Result};
use crate::firewall::Family;
use crate::journal::{JOURNAL_FILE, Journal, Meta, State};
use crate::model::{NsRef, check_name, plural};
use crate::op::Op;
use crate::trusted::{check_trusted, open_file_at};
use crate::trusted::{no_permission, open_err};

/// How the refusal of a topology another process holds ends (`Record::lock_as`): a
/// run adds how to run beside it (`cmd::beside`).
pub const BUSY: &str = "wait for it to end";

pub const DEFAULT_STATE_DIR: &str = "/run/netscript";

/// NETSCRIPT_STATE_DIR when set and not empty (empty is unset, as for XDG
/// variables), else /run/netscript.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("NETSCRIPT_STATE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
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

/// Opens (creating it, 0600, for appending) the file `name` in a record's directory
/// `dir`, neither through a link (checked).
pub fn open_file_in(dir: &Path, name: &str) -> Result<File> {
    let fd = open_dir(None, dir, dir, false)?.ok_or_else(|| Error::sys(format!("{} is gone", dir.display()), None))?;
    open_file_at(fd.as_fd(), dir, name, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_APPEND, 0o600)
}

/// Opens (or creates, 0700) the directory `name` under `parent` (the current
/// directory's view of an absolute path when `parent` is None), refusing links.
fn open_dir(parent: Option<BorrowedFd<'_>>, path: &Path, name: &Path, create: bool) -> Result<Option<OwnedFd>> {
    let at = |p: Option<BorrowedFd<'_>>| -> std::result::Result<(), Errno> {
        match p {
            Some(fd) => mkdirat(fd, name, Mode::from_bits_truncate(0o700)),
            None => nix::unistd::mkdir(name, Mode::from_bits_truncate(0o700)),
        }
    };
    if create {
        if parent.is_none()
            && let Some(up) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            // The state dir's own parents (/run) are the system's; made if missing.
            fs::create_dir_all(up).map_err(|e| {
                Error::sys(
                    format!("cannot create state directory {}: {e}", up.display()),
                    e.raw_os_error().map(Errno::from_raw),
                )
            })?;
        }
        match at(parent) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e @ (Errno::EACCES | Errno::EPERM | Errno::EROFS)) => {
                return Err(Error::sys(
                    format!("cannot create state directory {}: {}", path.display(), e.desc()),
                    Some(e),
                ));
            }
            Err(e) => return Err(open_err(path, e)),
        }
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match parent {
        Some(p) => openat(p, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if !create => return Ok(None),
        Err(e) => return Err(open_err(path, e)),
    };
    check_trusted(fd.as_fd(), path, true)?;
    Ok(Some(fd))
}

/// The state directory, opened once and checked.
pub struct StateDir {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl StateDir {
    /// Opens the state dir (creating it, 0700, when `create`). None: it does not
    /// exist (nothing is recorded). A state dir the caller may not read is an error
    /// that says so, with the fix, never an empty list.
    pub fn open(base: &Path, create: bool) -> Result<Option<StateDir>> {
        Ok(open_dir(None, base, base, create)?.map(|fd| StateDir { path: base.to_path_buf(), fd }))
    }

    /// Names of recorded topologies (directories holding a journal).
    pub fn list(&self) -> Result<Vec<String>> {
        let rd = fs::read_dir(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => no_permission(&self.path),
            _ => Error::sys(format!("cannot list {}: {e}", self.path.display()), None),
        })?;
        let mut v: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| check_name("topology", n).is_ok() && self.has_record(n).unwrap_or(true))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Whether topology `name` has a journal here.
    pub fn has_record(&self, name: &str) -> Result<bool> {
        let st = nix::sys::stat::fstatat(
            self.fd.as_fd(),
            &Path::new(name).join(JOURNAL_FILE),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        match st {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(false),
            Err(Errno::EACCES | Errno::EPERM) => Err(no_permission(&self.path)),
            Err(e) => Err(Error::from_errno(format!("cannot look at {}", self.path.join(name).display()), e)),
        }
    }

    /// The directory of topology `name` (made when `create`), checked.
    fn record_dir(&self, name: &str, create: bool) -> Result<Option<OwnedFd>> {
        open_dir(Some(self.fd.as_fd()), &self.path.join(name), Path::new(name), create)
    }

    /// Reads the journal of `name` without locking it (`ls`, `show`, `gc`).
    pub fn read_journal(&self, name: &str) -> Result<Option<Journal>> {
        check_name("topology", name)?;
        let Some(dir) = self.record_dir(name, false)? else { return Ok(None) };
        match Journal::open_at(dir.as_fd(), &self.path.join(name)) {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A topology's record, locked by this process while it lives.
pub struct Record {
    pub dir: PathBuf,
    pub name: String,
    dir_fd: OwnedFd,
    _lock: Flock<File>,
}

/// Whether another netscript process holds the lock of `name` (it is being
/// changed right now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Exclusive,
    Shared,
}

impl Record {
    /// Locks the record of `name` (creating its directory). A second netscript on
    /// the same name is refused, never interleaved.
    pub fn lock(base: &Path, name: &str) -> Result<Record> {
        Self::lock_as(base, name, LockMode::Exclusive)
    }

    /// Locks the record of `name` when there is one (never creating it), waiting
    /// while another process holds it, until `until`: None when there is no such
    /// record (or it went meanwhile: its run ended and rolled back), or it is still
    /// held then. `waiting` is called once, when the wait begins.
    pub fn lock_existing(base: &Path, name: &str, until: Instant, waiting: &mut dyn FnMut()) -> Result<Option<Record>> {
        check_name("topology", name)?;
        let Some(state) = StateDir::open(base, false)? else { return Ok(None) };
        let Some(dir_fd) = state.record_dir(name, false)? else { return Ok(None) };
        let dir = base.join(name);
        let mut f = match open_file_at(dir_fd.as_fd(), &dir, "lock", OFlag::O_RDWR, 0) {
            Ok(f) => f,
            Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut waited = false;
        loop {
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Some(Record { dir, name: name.to_string(), dir_fd, _lock: lock })),
                Err((back, Errno::EWOULDBLOCK)) if Instant::now() < until => {
                    if !waited {
                        waiting();
                        waited = true;
                    }
                    f = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => return Err(Error::from_errno(format!("cannot lock topology \"{name}\""), e)),
            }
        }
    }

    /// Locks the record of `name`: exclusively (to change it) or shared (to read it
    /// while nobody changes it: `gc`).
    pub fn lock_as(base: &Path, name: &str, how: LockMode) -> Result<Record> {
        check_name("topology", name)?;
        let state = StateDir::open(base, true)?.expect("created");
        let dir_fd = state.record_dir(name, true)?.expect("created");
        let dir = base.join(name);
        let f = open_file_at(dir_fd.as_fd(), &dir, "lock", OFlag::O_CREAT | OFlag::O_RDWR, 0o600)?;
        let arg = match how {
            LockMode::Exclusive => FlockArg::LockExclusiveNonblock,
            LockMode::Shared => FlockArg::LockSharedNonblock,
        };
        let lock = Flock::lock(f, arg).map_err(|(_, e)| match e {
            // Refused before anything ran (exit 2); a run adds that it changed nothing,
            // and how to run beside it.
            Errno::EWOULDBLOCK => Error::invalid(format!(
                "topology \"{name}\" is being changed by another netscript process right now (its run, REPL or down); {BUSY}"
            )),
            e => Error::from_errno(format!("cannot lock topology \"{name}\""), e),
        })?;
        Ok(Record { dir, name: name.to_string(), dir_fd, _lock: lock })
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// The record's directory, to open files under it (`open_file_at`).
    pub fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir_fd.as_fd()
    }

    /// The journal of an earlier run, if there is one.
    pub fn existing(&self) -> Result<Option<Journal>> {
        match Journal::open_at(self.dir_fd.as_fd(), &self.dir) {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts the journal of a new run. A record that is still up is refused.
    pub fn start(&self, meta: Meta) -> Result<Journal> {
        if let Some(old) = self.existing()? {
            if old.live_count() > 0 {
                return Err(Error::invalid(format!(
                    "topology \"{}\" is already up ({}, from {}); take it down first with: {} (or run again with --replace)",
                    self.name,
                    plural(old.live_count(), "change"),
                    if old.meta.script.is_empty() { "an earlier run".to_string() } else { old.meta.script.clone() },
                    down_command(self.dir.parent().unwrap_or(&self.dir), &self.name)
                )));
            }
            unlinkat(self.dir_fd.as_fd(), JOURNAL_FILE, UnlinkatFlags::NoRemoveDir)?;
        }
        Journal::create_at(self.dir_fd.as_fd(), &self.dir, meta)
    }

    /// Removes the record (after a complete rollback): the files in its directory
    /// (found through the directory's fd, never through a link), then the directory.
    pub fn remove(self) -> Result<()> {
        if let Ok(rd) = fs::read_dir(format!("/proc/self/fd/{}", self.dir_fd.as_raw_fd())) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| !t.is_dir()) {
                    let _ = unlinkat(self.dir_fd.as_fd(), Path::new(&e.file_name()), UnlinkatFlags::NoRemoveDir);
                }
            }
        }
        if let Some(base) = self.dir.parent()
            && let Ok(Some(state)) = StateDir::open(base, false)
        {
            let _ = unlinkat(state.fd.as_fd(), self.name.as_str(), UnlinkatFlags::RemoveDir);
        }
        Ok(())
    }
}

/// Names of recorded topologies under `base` (an error when they cannot be read).
pub fn list(base: &Path) -> Result<Vec<String>> {
    match StateDir::open(base, false)? {
        Some(s) => s.list(),
        None => Ok(Vec::new()),
    }
}

/// What a host-wide setting is (a sysctl of the namespace netscript runs in, a
/// chain policy there), to compare two changes of it: None for anything else.
fn host_setting(op: &Op) -> Option<String> {
    match op {
        Op::SetSysctl { ns: NsRef::Host, key, .. } => {
            Some(format!("sysctl {}", crate::sys::sysctl::key_path(key).ok()?.display()))
        }
        Op::FwPolicy { ns: NsRef::Host, family, table, chain, .. } => Some(format!("policy {family} {table} {chain}")),
        _ => None,
    }
}

/// A host-wide setting as a person reads it: `net.ipv4.ip_forward=0`, `the policy
/// of filter FORWARD (ACCEPT)`.
fn setting_words(op: &Op) -> String {
    match op {
        Op::SetSysctl { key, value, .. } => format!("{key}={value}"),
        Op::FwPolicy { family: crate::firewall::Family::Ipv4, table, chain, target, .. } => {
            format!("the policy {target} of {table} {chain}")
        }
        Op::FwPolicy { table, chain, target, .. } => format!("the ip6tables policy {target} of {table} {chain}"),
        other => other.render(),
    }
}

/// How long a rollback waits, at most and for all its hand-overs together, for the
/// topology that is to take something over while that one is being changed (its
/// lock held: a run building, say); then it goes on without it. A REPL holds its
/// lock for as long as it is open and is not waited for.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// A rollback's wait for a busy taker: until when, and what to call (with the
/// taker's name) when a wait begins, to tell.
pub struct Wait<'a> {
    pub until: Instant,
    pub waiting: &'a mut dyn FnMut(&str),
}

/// The topology to hand something over to: of the live ones but `own` started at
/// `after` or later, the earliest whose journal `wanted` accepts. Its record is
/// locked (it is changed under its lock; when it is being changed right now, that
/// is waited for as `wait` says, a REPL's not) and its journal read again under
/// the lock (and still accepted). None when there is none, or when that one is
/// still being changed.
fn taker(
    base: &Path,
    own: &str,
    after: u128,
    wanted: impl Fn(&Journal) -> bool,
    wait: &mut Wait<'_>,
) -> Option<(String, Record, Journal)> {
    let sd = StateDir::open(base, false).ok()??;
    let mut next: Option<(u128, String, bool)> = None;
    for name in sd.list().ok()? {
        if name == own {
            continue;
        }
        let Ok(Some(j)) = sd.read_journal(&name) else { continue };
        let t = j.meta.started_at();
        if t >= after && wanted(&j) && next.as_ref().is_none_or(|(n, _, _)| t < *n) {
            next = Some((t, name, j.meta.script == crate::journal::REPL_SCRIPT));
        }
    }
    let (_, name, repl) = next?;
    let until = if repl { Instant::now() } else { wait.until };
    let record = Record::lock_existing(base, &name, until, &mut || (wait.waiting)(&name)).ok()??;
    let j = record.existing().ok()??;
    wanted(&j).then_some((name, record, j))
}

/// Whether `op` is a rule of `family` in the host namespace that is in one of
/// `chains` (table, chain) or jumps to one.
fn uses_chains(op: &Op, family: Family, chains: &[(String, String)]) -> bool {
    match op {
        Op::FwAppend { ns: NsRef::Host, family: f, table, chain, rule }
        | Op::FwInsert { ns: NsRef::Host, family: f, table, chain, rule, .. } => {
            *f == family
                && (chains.iter().any(|(t, c)| t == table && c == chain)
                    || crate::firewall::rule::jumps_into(table, rule, chains))
        }
        _ => false,
    }
}

/// User chains that topology `own` made in the host namespace (`chains`: table and
/// chain, of `family`), about to be deleted by its rollback: when a live topology's
/// rules are in them or jump to them (a second `docker.network` shares the first
/// one's DOCKER chains, as Docker does), they stay, and that topology takes them
/// over (the earliest started, if several): `changes` (op and undo, oldest first:
/// the chains' creations and `own`'s rules that jump to them) become its entries
/// (`Journal::adopt`), undone after its own when it goes down. Returns what was done,
/// to tell; None: delete them here as usual (none uses them, or the one that does
/// is still being changed after `wait`: its lock is held).
pub fn hand_over_chains(
    base: &Path,
    own: &str,
    family: Family,
    chains: &[(String, String)],
    changes: &[(Op, Vec<Op>)],
    wait: &mut Wait<'_>,
) -> Option<String> {
    let uses = |j: &Journal| j.entries().iter().any(|e| e.state == State::Done && uses_chains(&e.op, family, chains));
    let (name, _lock, mut j) = taker(base, own, 0, uses, wait)?;
    let mut tables: Vec<(&str, Vec<&str>)> = Vec::new();
    for (t, c) in chains {
        match tables.iter_mut().find(|(n, _)| n == t) {
            Some((_, cs)) => cs.push(c),
            None => tables.push((t, vec![c])),
        }
    }
    let named = tables.iter().map(|(t, cs)| format!("{} ({t})", cs.join(", "))).collect::<Vec<_>>().join(", ");
    let tool = if family == Family::Ipv6 { "ip6tables chains" } else { "chains" };
    let jumps = changes.len() - chains.len();
    let note = format!(
        "holds the {tool} {named} for topology \"{own}\" (its rules use them; they are deleted when it goes down)"
    );
    j.adopt(changes, own, &note).ok()?;
    Some(format!(
        "the {tool} {named} and {} jumping to them handed over to topology \"{name}\", whose rules use them; it deletes them when it goes down",
        plural(jumps, "rule")
    ))
}

/// Host-wide settings shared by topologies (`ip_forward`, chain policies): when
/// topology `own` (started at `own_started`) is about to undo its change of such a
/// setting with `undo`, and a live topology started after it changed the same
/// setting too, the value to restore is handed over to that topology's record
/// instead (its undo becomes `undo`), and the setting is left as it is: the last
/// one down restores what was there before all of them. A taker being changed is
/// waited for as `wait` says. Returns what was done, to tell; None: undo it here
/// as usual.
pub fn hand_over(base: &Path, own: &str, own_started: u128, undo: &Op, wait: &mut Wait<'_>) -> Option<String> {
    let key = host_setting(undo)?;
    // The topology that changed it next after us: the earliest of the later ones.
    let sets =
        |j: &Journal| j.entries().iter().any(|e| e.state == State::Done && host_setting(&e.op).as_ref() == Some(&key));
    let (name, _lock, mut j) = taker(base, own, own_started + 1, sets, wait)?;
    let seq = j
        .entries()
        .iter()
        .find(|e| {
            e.state == State::Done
                && host_setting(&e.op).as_ref() == Some(&key)
                && matches!(e.undo.as_slice(), [u] if host_setting(u).as_ref() == Some(&key))
        })?
        .seq;
    let note = format!(
        "holds {} for topology \"{own}\" (both changed it; the last one down restores it)",
        setting_words(undo)
    );
    j.hand_over(seq, vec![undo.clone()], note).ok()?;
    Some(format!(
        "{} handed over to topology \"{name}\", which changed it too; it restores it when it goes down",
        setting_words(undo)
    ))
}
