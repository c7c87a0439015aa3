//! The kernel side: namespaces, netlink, sysctl, processes. No Lua, no journal.
pub mod kconfig;
pub mod netlink;
pub mod netns;
pub mod proc;
pub mod process;
pub mod sysctl;
pub mod tc;

use std::sync::atomic::{AtomicU64, Ordering};

/// The soft open-file limit netscript started with (u64::MAX: not changed), which
/// the processes it starts get back.
static ORIGINAL_NOFILE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Raises the soft limit on open files to the hard limit, at start: each namespace
/// netscript works in holds two fds (the namespace and its netlink socket), so the
/// common soft limit of 1024 ends a run at about 500 namespaces.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit / setrlimit write and read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let original = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            ORIGINAL_NOFILE.store(original, Ordering::SeqCst);
        }
    }
}

/// The soft limit on open files now (after `raise_nofile_limit`); 1024 when unknown.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes a plain struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// Gives a child process the soft open-file limit netscript started with (programs
/// that use select() expect at most 1024). Called between fork and exec.
pub fn restore_nofile_limit_in_child() {
    let original = ORIGINAL_NOFILE.load(Ordering::SeqCst);
    if original == u64::MAX {
        return;
    }
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: async-signal-safe system calls on a struct we own (after fork).
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = original.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// This process's peak resident set size so far, in KiB (`getrusage`, its own: not
/// the programs it ran); None when the kernel does not say.
pub fn peak_rss_kib() -> Option<u64> {
    // SAFETY: getrusage writes a plain struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0).then(|| u.ru_maxrss.max(0) as u64)
}

/// Whether signal `sig` is ignored (SIG_IGN) in this process, as `nohup` leaves
/// SIGHUP for the program it starts.
pub fn signal_ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}
