//! `--sandbox`: fresh network, mount, UTS and IPC namespaces (and a user namespace
//! when not root) with a private /run, so a script touches nothing of the host and everything
//! it made vanishes when netscript exits. Must run before any thread is started
//! (`cmd::run` calls it first for a run and for the REPL): unshare(CLONE_NEWUSER)
//! fails in a threaded process.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{getgid, getuid};

use crate::error::{Error, Result};

/// What `--sandbox --wait` tells a person so they can look inside.
pub fn enter_hint(pid: u32, user_ns: bool) -> String {
    if user_ns {
        format!("nsenter -t {pid} -U -n -m --preserve-credentials")
    } else {
        format!("nsenter -t {pid} -n -m")
    }
}

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether this process runs in the sandbox: then only what is per network
/// namespace may change (see `sys::sysctl::per_netns`).
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Enters the sandbox. Returns whether a user namespace was made (not root).
pub fn enter() -> Result<bool> {
    let (uid, gid) = (getuid(), getgid());
    let user_ns = !uid.is_root();
    // UTS and IPC too: the host name and System V IPC are no business of a script's.
    let mut flags =
        CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if user_ns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    unshare(flags).map_err(|e| {
        let hint = match (user_ns, e) {
            // The limit on user namespaces (0 turns them off; RHEL's usual switch).
            (true, nix::errno::Errno::ENOSPC) => {
                " (the limit on user namespaces is reached or zero: sysctl user.max_user_namespaces)"
            }
            (true, _) => {
                " (as a normal user this needs unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1, \
                 user.max_user_namespaces above 0, and no AppArmor restriction on them)"
            }
            _ => "",
        };
        // Nothing has run yet: refused (exit 2), and said so.
        Error::invalid(format!(
            "cannot create the sandbox namespaces: {}{hint}; nothing was changed",
            crate::error::errno_reason(e)
        ))
    })?;
    if user_ns {
        let w = |p: &str, s: String| {
            fs::write(p, s).map_err(|e| Error::sys(format!("sandbox: cannot write {p}: {e}"), None))
        };
        w("/proc/self/setgroups", "deny".into())?;
        w("/proc/self/uid_map", format!("0 {uid} 1"))?;
        w("/proc/self/gid_map", format!("0 {gid} 1"))?;
    }
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| Error::from_errno("sandbox: cannot make / private", e))?;
    // A private /run: /run/netns, the state dir and the xtables lock live there.
    mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))
        .map_err(|e| Error::from_errno("sandbox: cannot mount a tmpfs on /run", e))?;
    fs::create_dir_all("/run/netns")
        .map_err(|e| Error::sys(format!("sandbox: cannot create /run/netns: {e}"), None))?;
    // sysfs as seen from the new network namespace (as `ip netns exec` does); best effort.
    let _ = mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    // SAFETY: single-threaded here (checked by the caller: this runs before any thread).
    unsafe { std::env::set_var("XTABLES_LOCKFILE", "/run/xtables.lock") };
    ACTIVE.store(true, Ordering::SeqCst);
    Ok(user_ns)
}
