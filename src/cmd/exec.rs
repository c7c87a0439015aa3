//! `netscript exec TOPOLOGY NS [CMD...]`: a command (default: the user's shell, on the
//! terminal) inside a namespace of a topology that is up, including one that runs in
//! a sandbox (a `--sandbox --wait` run, or a REPL with `--sandbox`). The process
//! becomes the command (execvp), so the terminal, signals and exit code are the
//! command's own.
//!
//! A sandbox is invisible from the host (its records live in the sandbox's own
//! /run), so while a `--sandbox --wait` run waits (or a `--sandbox` REPL runs) it
//! leaves a pointer in
//! `/tmp/netscript.<uid>/sandboxes/<topology>`: its pid and that process's start time
//! (so a reused pid is never entered). The directory must be this user's and private.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::unistd::{execvp, getuid};

use super::state_base;
use crate::cli::RunOpts;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::op::Op;

/// Where a waiting sandbox of this user leaves its pointer files.
fn pointer_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/netscript.{}/sandboxes", getuid()))
}

/// Checks that `dir` (and its parent under /tmp) is a real directory of this user that
/// no one else can write: anything else in a shared /tmp could be planted.
fn private(dir: &std::path::Path) -> Result<()> {
    for d in [dir.parent().unwrap_or(dir), dir] {
        let m = fs::symlink_metadata(d).map_err(|e| Error::sys(format!("{}: {e}", d.display()), None))?;
        if !m.is_dir() || m.uid() != getuid().as_raw() || m.permissions().mode() & 0o077 != 0 {
            return Err(Error::invalid(format!(
                "{} is not a private directory of this user; not trusted (remove it)",
                d.display()
            )));
        }
    }
    Ok(())
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), if it runs.
fn start_time(pid: u32) -> Option<u64> {
    crate::sys::proc::stat(pid).map(|s| s.start)
}

/// Leaves the pointer for `netscript exec` while a `--sandbox --wait` run waits (or
/// a `--sandbox` REPL runs);
/// removed when the returned guard drops. Called before the sandbox is entered (the
/// pid and /tmp are the host's then too).
pub fn announce_sandbox(topo: &str) -> Result<SandboxPointer> {
    let dir = pointer_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::sys(format!("cannot create {}: {e}", dir.display()), None))?;
    private(&dir)?;
    // Another sandbox of that name that is up keeps its pointer.
    if let Ok(Some(other)) = waiting_sandbox(topo) {
        return Err(Error::invalid(format!(
            "a sandbox named \"{topo}\" is up already (process {other}); give this one another --name; nothing was changed"
        )));
    }
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    let path = dir.join(topo);
    let tmp = dir.join(format!(".{topo}.{pid}"));
    fs::write(&tmp, format!("{pid} {start}\n"))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| Error::sys(format!("cannot write {}: {e}", path.display()), None))?;
    Ok(SandboxPointer { path, mine: format!("{pid} {start}\n") })
}

pub struct SandboxPointer {
    path: PathBuf,
    /// What this process wrote there.
    mine: String,
}

impl Drop for SandboxPointer {
    fn drop(&mut self) {
        // Only this process's own pointer (not one another sandbox wrote since).
        if fs::read_to_string(&self.path).is_ok_and(|t| t == self.mine) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Why a topology outside any sandbox is not up, for `exec` and `trace`.
pub fn no_record(base: &std::path::Path) -> String {
    format!(
        "no record in {}, and no sandbox of that name: a --sandbox --wait run or a REPL with --sandbox",
        base.display()
    )
}

/// Whether a sandbox of this user that runs `topo` is up (its pointer is there and
/// its process lives).
pub fn sandbox_up(topo: &str) -> bool {
    matches!(waiting_sandbox(topo), Ok(Some(_)))
}

/// The pid of the waiting sandbox that runs `topo`, if there is one.
fn waiting_sandbox(topo: &str) -> Result<Option<u32>> {
    let dir = pointer_dir();
    let path = dir.join(topo);
    if fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    private(&dir)?;
    let text = fs::read_to_string(&path).map_err(|e| Error::sys(format!("{}: {e}", path.display()), None))?;
    let mut w = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (w.next(), w.next()) else {
        return Err(Error::invalid(format!("{} is not a sandbox pointer", path.display())));
    };
    let pid = u32::try_from(pid).map_err(|_| Error::invalid(format!("{}: bad pid", path.display())))?;
    if start_time(pid) != Some(start) {
        let _ = fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(pid))
}

/// When a `--sandbox --wait` run of `topo` waits, enters its user (when rootless),
/// mount and network namespaces, where its record and /run/netns are, and returns its
/// pid. Call it while single-threaded (a user namespace cannot be entered otherwise).
pub(super) fn enter_waiting_sandbox(topo: &str) -> Result<Option<u32>> {
    let sandbox = waiting_sandbox(topo)?;
    if let Some(pid) = sandbox {
        let own_user = fs::metadata(format!("/proc/{pid}/ns/user")).map(|m| m.ino()).ok()
            != fs::metadata("/proc/self/ns/user").map(|m| m.ino()).ok();
        if own_user {
            enter(&format!("/proc/{pid}/ns/user"), CloneFlags::CLONE_NEWUSER, "the sandbox's user namespace")?;
        }
        enter(&format!("/proc/{pid}/ns/mnt"), CloneFlags::CLONE_NEWNS, "the sandbox's mount namespace")?;
        enter(&format!("/proc/{pid}/ns/net"), CloneFlags::CLONE_NEWNET, "the sandbox's network namespace")?;
        let _ = std::env::set_current_dir("/");
    }
    Ok(sandbox)
}

/// Where the topology's record is: in a waiting sandbox that was entered, the
/// sandbox's own /run/netscript (a sandbox records nowhere else); otherwise as
/// `state_base` says.
pub(super) fn record_base(opts: &RunOpts, sandbox: Option<u32>) -> PathBuf {
    match sandbox {
        Some(_) => PathBuf::from(crate::state::DEFAULT_STATE_DIR),
        None => state_base(opts),
    }
}

fn enter(path: &str, flags: CloneFlags, what: &str) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::sys(format!("cannot open {path} ({what}): {e}"), None))?;
    setns(&f, flags).map_err(|e| Error::from_errno(format!("cannot enter {what} ({path})"), e))
}

/// Whether the namespace `ns` belongs to the topology whose journal this is.
pub(super) fn owned(journal: &Journal, ns: &str) -> bool {
    journal.entries().iter().any(|e| e.live() && matches!(&e.op, Op::AddNetns { name } if name == ns))
}

/// Checks that the namespace called `ns` now (the open file `fd` of /run/netns/NS)
/// is the one topology `topo` created, by the identity its record holds (records
/// that hold none, from a crash right after the creation or from before the
/// identity, are taken at their word): another namespace that took the name after a
/// hand-made `ip netns del` is no part of the topology, and nothing enters it.
pub(super) fn check_identity(journal: &Journal, topo: &str, ns: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    let want = journal.entries().iter().rev().find_map(|e| match (&e.op, e.undo.first()) {
        (Op::AddNetns { name }, Some(Op::DelNetns { id, .. })) if e.live() && name == ns => Some(*id),
        _ => None,
    });
    match (want.flatten(), crate::sys::netns::id_of(fd)) {
        (Some(want), Some(have)) if !want.is(&have) => Err(Error::invalid(format!(
            "namespace \"{ns}\" is not the namespace topology \"{topo}\" created (another one took its name); \
             left alone (`netscript ls` shows it)"
        ))),
        _ => Ok(()),
    }
}

/// Opens each namespace of the topology and checks it with `check_identity`.
pub(super) fn check_identities(journal: &Journal, topo: &str) -> Result<()> {
    for e in journal.entries().iter().filter(|e| e.live()) {
        if let Op::AddNetns { name } = &e.op
            && let Ok(fd) = crate::sys::netns::open(name)
        {
            check_identity(journal, topo, name, fd.as_fd())?;
        }
    }
    Ok(())
}

pub fn exec(opts: &RunOpts, topo: &str, ns: &str, cmd: &[String]) -> Result<u8> {
    crate::model::check_name("topology", topo)?;
    if ns != "host" {
        crate::model::check_name("namespace", ns)?;
    }
    let argv: Vec<String> = if cmd.is_empty() {
        vec![std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into())]
    } else {
        cmd.to_vec()
    };
    let argv: Vec<CString> = argv
        .into_iter()
        .map(|a| CString::new(a).map_err(|_| Error::invalid("a command argument holds a NUL byte")))
        .collect::<Result<_>>()?;

    let sandbox = enter_waiting_sandbox(topo)?;

    let base = record_base(opts, sandbox);
    let records = crate::state::StateDir::open(&base, false)?;
    let journal = match &records {
        Some(sd) => sd.read_journal(topo)?,
        None => None,
    };
    let Some(journal) = journal else {
        return Err(Error::invalid(match sandbox {
            Some(pid) => format!(
                "topology \"{topo}\" is not up in the sandbox of process {pid} (no record in its {})",
                base.display()
            ),
            None => format!("topology \"{topo}\" is not up ({})", no_record(&base)),
        }));
    };
    if ns != "host" {
        if !owned(&journal, ns) {
            return Err(Error::invalid(format!("topology \"{topo}\" has no namespace \"{ns}\"")));
        }
        // The file checked is the one entered.
        let fd = crate::sys::netns::open(ns).map_err(|e| match e.errno() {
            Some(nix::errno::Errno::ENOENT) => Error::invalid(format!(
                "namespace \"{ns}\" of topology \"{topo}\" is gone (deleted by hand?; `netscript ls` shows it)"
            )),
            _ => e,
        })?;
        check_identity(&journal, topo, ns, fd.as_fd())?;
        setns(&fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::from_errno(format!("cannot enter namespace {ns}"), e))?;
    }
    let e = execvp(&argv[0], &argv).unwrap_err();
    // As a shell says it: 127 for a command not found, 126 for one that cannot run
    // (not executable, say), so that neither reads as the command's own exit 1.
    let code = if e == nix::errno::Errno::ENOENT { 127 } else { 126 };
    super::exit_code(Err(Error::from_errno(format!("cannot run {}", argv[0].to_string_lossy()), e)));
    Ok(code)
}
