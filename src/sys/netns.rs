//! Named network namespaces, made the way `ip netns add` makes them: a bind mount of
//! a thread's new namespace onto /run/netns/NAME. And `in_netns`, which runs a
//! closure on a short-lived thread that entered a namespace (the thread that runs
//! Lua and tokio never changes namespace).

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{Error, Result};

pub const NETNS_RUN_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_RUN_DIR).join(name)
}

/// Runs `f` in the namespace `fd`, on a new thread that has entered it; without
/// `fd`, on the calling thread (already in its namespace: a new thread's first run
/// can wait milliseconds for a CPU on a busy machine). Child processes started by
/// `f`, sockets it opens and /proc/sys files it opens belong to that namespace.
pub fn in_netns<T: Send>(fd: Option<BorrowedFd<'_>>, f: impl FnOnce() -> T + Send) -> Result<T> {
    let Some(fd) = fd else { return Ok(f()) };
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(fd, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::from_errno("cannot enter the network namespace", e))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(Error::sys("a namespace helper thread panicked", None)))
    })
}

/// Runs `f` on the calling thread inside the namespace `fd`, then returns the thread
/// to `home` (the namespace it was in); with no `fd`, where the thread is (as
/// `in_netns`). For a few syscalls (opening a socket that
/// stays bound to the namespace) this costs two `setns` where `in_netns` starts a
/// thread (whose first run, on a busy machine, can wait milliseconds for a CPU).
/// `f` must not start processes or threads or leave anything behind that depends on
/// the thread's namespace. A thread that cannot go back would run everything after
/// in the wrong namespace: the process aborts instead (the journal is on disk;
/// `netscript down` takes the topology back).
pub fn briefly_in<T>(fd: Option<BorrowedFd<'_>>, home: BorrowedFd<'_>, f: impl FnOnce() -> T) -> Result<T> {
    let Some(fd) = fd else { return Ok(f()) };
    setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| Error::from_errno("cannot enter the network namespace", e))?;
    let r = f();
    go_home(home);
    Ok(r)
}

fn go_home(home: BorrowedFd<'_>) {
    if let Err(e) = setns(home, CloneFlags::CLONE_NEWNET) {
        eprintln!("netscript: cannot return to its own network namespace ({e}); aborting");
        std::process::abort();
    }
}

/// The mount namespace (the inode of its nsfs file) in which `prepare_run_dir` last
/// ran: it runs once per mount namespace, not for every namespace made, as
/// `ip netns add` does (a new process each time). Making /run/netns shared again
/// walks every mount below it: with 1000 namespaces there, building 1000 took 6.7 s
/// that way, 5.6 s with it done once.
static PREPARED_IN: AtomicU64 = AtomicU64::new(0);

fn prepare_run_dir_once() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mnt = fs::metadata("/proc/thread-self/ns/mnt").map(|m| m.ino()).unwrap_or(0);
    if mnt != 0 && PREPARED_IN.load(Ordering::Relaxed) == mnt {
        return Ok(());
    }
    prepare_run_dir()?;
    PREPARED_IN.store(mnt, Ordering::Relaxed);
    Ok(())
}

/// Makes /run/netns a shared mount point, as iproute2 does, so that namespaces
/// mounted there are seen by `ip netns` in other mount namespaces too.
fn prepare_run_dir() -> Result<()> {
    fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| {
        let errno = e.raw_os_error().map(Errno::from_raw);
        Error::sys(format!("cannot create {NETNS_RUN_DIR}: {e}"), errno)
    })?;
    let shared =
        || mount(None::<&str>, NETNS_RUN_DIR, Some("none"), MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            mount(Some(NETNS_RUN_DIR), NETNS_RUN_DIR, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| Error::from_errno(format!("cannot bind-mount {NETNS_RUN_DIR}"), e))?;
            shared().map_err(|e| Error::from_errno(format!("cannot make {NETNS_RUN_DIR} shared"), e))
        }
        Err(e) => Err(Error::from_errno(format!("cannot make {NETNS_RUN_DIR} a shared mount"), e)),
    }
}

/// `ip netns add NAME`. The new namespace's lo stays down, as with iproute2. Made on
/// the calling thread, which runs `inside` there (what is to be opened in it, and
/// done to it, before its name exists: one `setns` there and back fewer than
/// `briefly_in` later; an error from it makes nothing) and returns to `home`. The
/// name is published (the bind mount) only once `inside` succeeded, so a namespace
/// under the name is either not made by this call or has what `inside` did to it.
pub fn create<T>(name: &str, home: BorrowedFd<'_>, inside: impl FnOnce() -> Result<T>) -> Result<T> {
    prepare_run_dir_once()?;
    let p = path(name);
    OpenOptions::new().write(true).create_new(true).mode(0o000).open(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            Error::sys(format!("a namespace named \"{name}\" already exists"), Some(Errno::EEXIST))
        }
        _ => Error::sys(format!("cannot create {}: {e}", p.display()), e.raw_os_error().map(Errno::from_raw)),
    })?;
    let res = unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::from_errno("cannot create a network namespace", e))
        .and_then(|()| {
            let r = inside().and_then(|made| {
                mount(Some("/proc/thread-self/ns/net"), &p, Some("none"), MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| Error::from_errno(format!("cannot bind-mount the namespace on {}", p.display()), e))
                    .map(|()| made)
            });
            go_home(home);
            r
        });
    if res.is_err() {
        let _ = fs::remove_file(&p);
    }
    res
}

/// `ip netns del NAME`.
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(Errno::ENOENT) => {
            return Err(Error::sys(format!("no namespace named \"{name}\""), Some(Errno::ENOENT)));
        }
        Err(e) => return Err(Error::from_errno(format!("cannot unmount namespace \"{name}\""), e)),
    }
    fs::remove_file(&p).map_err(|e| Error::sys(format!("cannot remove {}: {e}", p.display()), None))
}

/// The identity of the namespace mounted on /run/netns/NAME (its nsfs inode), or
/// None when the name holds none.
pub fn id(name: &str) -> Option<crate::model::NsId> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path(name)).ok().map(|m| crate::model::NsId {
        dev: m.dev(),
        ino: m.ino(),
        ctime_ns: Some(m.ctime() * 1_000_000_000 + m.ctime_nsec()),
    })
}

/// The identity of the namespace an open file (`open`) refers to.
pub fn id_of(fd: BorrowedFd<'_>) -> Option<crate::model::NsId> {
    nix::sys::stat::fstat(fd).ok().map(|m| crate::model::NsId {
        dev: m.st_dev,
        ino: m.st_ino,
        ctime_ns: Some(m.st_ctime * 1_000_000_000 + m.st_ctime_nsec),
    })
}

/// Whether an open file is a namespace (nsfs), not the empty file a creation
/// interrupted before its bind mount leaves under the name.
pub fn is_namespace(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
    fstatfs(fd).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Opens a named namespace (its fd keeps it alive while held).
pub fn open(name: &str) -> Result<OwnedFd> {
    let f = File::open(path(name)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::sys(format!("no namespace named \"{name}\""), Some(Errno::ENOENT)),
        _ => Error::sys(format!("cannot open namespace \"{name}\": {e}"), e.raw_os_error().map(Errno::from_raw)),
    })?;
    Ok(OwnedFd::from(f))
}

/// A new, empty network namespace, unnamed, held by the returned file (it goes when
/// the file is closed): made on a thread of its own, which ends there.
pub fn scratch() -> Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::from_errno("cannot create a network namespace", e))?;
            open_current().map_err(|e| Error::sys(format!("cannot open the new network namespace: {e}"), None))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::sys("the thread making a network namespace panicked", None)))
    })
}

/// The network namespace the calling thread is in.
pub fn open_current() -> std::io::Result<OwnedFd> {
    File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
}

/// Named namespaces, sorted.
pub fn list() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(NETNS_RUN_DIR)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Borrow helper for optional namespace fds.
pub fn borrow(fd: &Option<OwnedFd>) -> Option<BorrowedFd<'_>> {
    fd.as_ref().map(|f| f.as_fd())
}
