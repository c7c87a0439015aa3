//! Opening the files records are made of, trusting only what deserves it: without
//! following symbolic links (`O_NOFOLLOW`, `openat` under the directory's fd), and
//! refusing what another user owns or group or others may write (see state.rs). Below
//! both the state directory (state.rs) and the journal (journal.rs).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::geteuid;

use crate::error::{Error, Result};

/// Refuses a file or directory that netscript should not take orders from: not of
/// the expected kind, owned by another user, or writable by group or others.
pub fn check_trusted(fd: BorrowedFd<'_>, path: &Path, dir: bool) -> Result<()> {
    let st = fstat(fd).map_err(|e| Error::from_errno(format!("cannot stat {}", path.display()), e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let want = if dir { SFlag::S_IFDIR } else { SFlag::S_IFREG };
    let untrusted = |why: String| {
        Error::invalid(format!(
            "not trusting the state in {}: {why}. Records decide what netscript undoes as root; \
             check it, then fix its owner and mode (or remove it) by hand",
            path.display()
        ))
    };
    if kind != want {
        return Err(untrusted(format!("it is not a {}", if dir { "directory" } else { "regular file" })));
    }
    if st.st_uid != geteuid().as_raw() {
        return Err(untrusted(format!("it is owned by uid {}, not by uid {} running netscript", st.st_uid, geteuid())));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(untrusted(format!("it is writable by group or others (mode {:o})", st.st_mode & 0o7777)));
    }
    Ok(())
}

pub(crate) fn no_permission(path: &Path) -> Error {
    Error::invalid(format!(
        "cannot read the records in {}: permission denied. Run as root (sudo netscript ...), \
         or give a state directory of your own with --state-dir",
        path.display()
    ))
}

pub(crate) fn open_err(path: &Path, e: Errno) -> Error {
    match e {
        Errno::EACCES | Errno::EPERM => no_permission(path),
        Errno::ELOOP | Errno::ENOTDIR => match not_a_directory(path) {
            Some(what) => Error::invalid(format!("cannot use {}: {what}", path.display())),
            None => Error::invalid(format!(
                "not trusting the state in {}: it is a symbolic link (or below one); records are never followed through links",
                path.display()
            )),
        },
        e => Error::from_errno(format!("cannot open {}", path.display()), e),
    }
}

/// What stands where a directory was expected when opening `path` failed with ENOTDIR
/// or ELOOP: a file (or a pipe, socket, device) at `path` or at a directory above it
/// ("it is a file, not a directory", "/run/f is a file, not a directory"). None for a
/// symbolic link at `path` (the refusal says so), or when it cannot be told.
fn not_a_directory(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let kind = |t: std::fs::FileType| {
        Some(if t.is_file() {
            "a file"
        } else if t.is_fifo() {
            "a named pipe"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_block_device() || t.is_char_device() {
            "a device"
        } else {
            return None;
        })
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) => kind(m.file_type()).map(|k| format!("it is {k}, not a directory")),
        // A directory above it is not one (links followed, as opening it does).
        Err(e) if e.raw_os_error() == Some(Errno::ENOTDIR as i32) => {
            let mut above: Vec<&Path> = path.ancestors().skip(1).collect();
            above.reverse();
            above.into_iter().find_map(|p| {
                let k = kind(std::fs::metadata(p).ok()?.file_type())?;
                Some(format!("{} is {k}, not a directory", p.display()))
            })
        }
        Err(_) => None,
    }
}

/// Opens `name` under the directory `dir` without following a symbolic link and
/// checks it (`check_trusted`). `create`: made with mode `mode` when missing.
pub fn open_file_at(dir: BorrowedFd<'_>, dir_path: &Path, name: &str, flags: OFlag, mode: u32) -> Result<File> {
    let path = dir_path.join(name);
    let fd = openat(dir, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(mode)).map_err(
        |e| match e {
            Errno::ENOENT => Error::sys(format!("{} does not exist", path.display()), Some(e)),
            Errno::EEXIST => Error::sys(format!("{} already exists", path.display()), Some(e)),
            e => open_err(&path, e),
        },
    )?;
    check_trusted(fd.as_fd(), &path, false)?;
    Ok(File::from(fd))
}
