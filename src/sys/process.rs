//! Processes inside a namespace: `exec` (run to completion, with a timeout) and
//! `spawn` (background, in its own process group so it can be stopped with its
//! children).

use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::model::{NsId, NsProcess};
use crate::sys::netns::in_netns;

#[derive(Clone, Debug, PartialEq)]
pub struct ExecResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

fn command(argv: &[String]) -> Result<Command> {
    let (prog, args) = argv.split_first().ok_or_else(|| Error::invalid("empty command"))?;
    let mut c = Command::new(prog);
    c.args(args);
    // SAFETY: the hook only makes async-signal-safe system calls.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, || {
            crate::sys::restore_nofile_limit_in_child();
            Ok(())
        })
    };
    Ok(c)
}

fn spawn_err(argv: &[String], e: std::io::Error) -> Error {
    let errno = e.raw_os_error().map(Errno::from_raw);
    match e.kind() {
        std::io::ErrorKind::NotFound => match not_installed(&argv[0]) {
            Some(said) => Error::sys(said, errno),
            None => Error::sys(format!("command not found: {}", argv[0]), errno),
        },
        _ => Error::sys(format!("cannot start {}: {e}", argv[0]), errno),
    }
}

/// "nft is not installed (Debian: apt-get install nftables)" for a tool netscript
/// runs itself, named by the Debian package that has it; None for any other program.
pub fn not_installed(tool: &str) -> Option<String> {
    let package = match tool {
        "nft" => "nftables",
        "ping" => "iputils-ping",
        "tc" | "ip" => "iproute2",
        t if t.starts_with("iptables") || t.starts_with("ip6tables") || t == "xtables-monitor" => "iptables",
        _ => return None,
    };
    Some(format!("{tool} is not installed (Debian: apt-get install {package})"))
}

/// Runs `argv` inside the namespace on this process's terminal (its stdin, stdout
/// and stderr, in the foreground process group) and waits for it: for interactive
/// programs. Returns its exit code (128 + the signal when a signal ended it). The
/// terminal's foreground group is taken back afterwards (a shell may have moved it).
pub fn exec_on_terminal(fd: Option<BorrowedFd<'_>>, argv: &[String]) -> Result<i32> {
    let mut cmd = command(argv)?;
    let mut child: Child = in_netns(fd, move || cmd.spawn())?.map_err(|e| spawn_err(argv, e))?;
    let status = child.wait()?;
    reclaim_terminal();
    Ok(status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}

/// Makes this process's group the terminal's foreground group again (SIGTTOU
/// ignored meanwhile, as shells do), when stdin is a terminal.
fn reclaim_terminal() {
    // SAFETY: plain system calls on fd 0 and the SIGTTOU disposition, restored after.
    unsafe {
        if libc::isatty(0) == 1 {
            let old = libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpgrp());
            libc::signal(libc::SIGTTOU, old);
        }
    }
}

/// A thread that reads `r` to its end into a buffer that can be taken at any time.
#[allow(clippy::type_complexity)]
fn reader(mut r: Box<dyn Read + Send>) -> (std::thread::JoinHandle<()>, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = buf.clone();
    let t = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = b.lock() {
                b.extend_from_slice(&chunk[..n]);
            }
        }
    });
    (t, buf)
}

/// Runs `argv` inside the namespace and waits for it (killing it after `timeout`,
/// or when `cancel` becomes true); with a timeout, the whole call takes no longer,
/// also when something the command left in the background holds its output open.
pub fn exec(
    fd: Option<BorrowedFd<'_>>,
    argv: &[String],
    timeout: Option<Duration>,
    cancel: &AtomicBool,
) -> Result<ExecResult> {
    let mut cmd = command(argv)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child: Child = in_netns(fd, move || cmd.spawn())?.map_err(|e| spawn_err(argv, e))?;
    // Read both pipes on helper threads so a chatty child never blocks; what they
    // read is kept where it can be taken even from a reader still blocked.
    let readers = [reader(Box::new(child.stdout.take().unwrap())), reader(Box::new(child.stderr.take().unwrap()))];
    let start = Instant::now();
    let expired = || timeout.is_some_and(|t| start.elapsed() >= t);
    let mut timed_out = false;
    let group = Pid::from_raw(child.id() as i32);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if expired() || cancel.load(Ordering::SeqCst) {
            timed_out = expired();
            let _ = killpg(group, Signal::SIGKILL);
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The command is over, but something it left in the background may hold its
    // output open (`sleep 4 & exit 0`): with a timeout, that waits no longer than the
    // timeout either. Its process group is killed then; what escaped the group
    // (`setsid ...`) keeps its reader, which is not waited for.
    while readers.iter().any(|(t, _)| !t.is_finished()) {
        if expired() || cancel.load(Ordering::SeqCst) {
            timed_out |= expired();
            let _ = killpg(group, Signal::SIGKILL);
            let grace = Instant::now();
            while readers.iter().any(|(t, _)| !t.is_finished()) && grace.elapsed() < Duration::from_millis(100) {
                std::thread::sleep(Duration::from_millis(2));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let text =
        |i: usize| String::from_utf8_lossy(&readers[i].1.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
    let (stdout, stderr) = (text(0), text(1));
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if cancel.load(Ordering::SeqCst) && !timed_out {
        return Err(Error::Interrupted("a signal"));
    }
    Ok(ExecResult { code, stdout, stderr, timed_out })
}

pub use crate::model::OWNER_ENV;

/// Starts `argv` in the background inside the namespace, in a process group of its
/// own, with NETSCRIPT_OWNER=`mark` in its environment. Its output goes to `log`
/// (or nowhere).
pub fn spawn(fd: Option<BorrowedFd<'_>>, argv: &[String], log: Option<std::fs::File>, mark: &str) -> Result<Child> {
    let mut cmd = command(argv)?;
    cmd.stdin(Stdio::null()).process_group(0).env(OWNER_ENV, mark);
    match log {
        Some(f) => {
            let f2 = f.try_clone()?;
            cmd.stdout(f).stderr(f2);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    in_netns(fd, move || cmd.spawn())?.map_err(|e| spawn_err(argv, e))
}

/// The start time of a process (field 22 of /proc/PID/stat), which tells a pid
/// that was reused from the one netscript started.
pub fn start_time(pid: u32) -> Option<u64> {
    super::proc::stat(pid).map(|s| s.start)
}

/// Stops `pid` if it is still the process we started: SIGTERM, then SIGKILL after a
/// grace period. A process group leader (what `spawn` starts) is stopped with its
/// group, so what it started dies too; any other process alone. Returns once
/// nothing of it runs (a zombie is not running; its parent reaps it). "Already
/// gone" is success.
pub fn stop(pid: u32, start: u64, grace: Duration) -> Result<()> {
    // Never a process netscript started: pid 1 is init (of the system, or of a pid
    // namespace), and as the leader of its group its stop would be killpg(1), which
    // is kill(-1): every process the caller may signal. A journal that names it
    // (edited by hand, say) is left alone.
    if pid <= 1 {
        return Err(Error::NotOurs(format!(
            "process {pid} is not a process netscript started (pid {pid} is {}); left alone",
            if pid == 1 { "init" } else { "no process" }
        )));
    }
    if start_time(pid) != Some(start) {
        return Ok(());
    }
    let p = Pid::from_raw(pid as i32);
    let group = nix::unistd::getpgid(Some(p)).is_ok_and(|g| g == p);
    // Nor the process this netscript runs in or under (run from a process that
    // carries the mark, or from a spawned shell): stopping it, or its group, would
    // stop this rollback halfway.
    if runs_us(pid, group) {
        return Err(Error::NotOurs(format!(
            "process {pid} runs this netscript (it is netscript, or one of the processes it runs under); left alone"
        )));
    }
    let send = |sig| if group { killpg(p, sig) } else { nix::sys::signal::kill(p, sig) };
    let gone = || if group { group_gone(p) } else { !running(pid, start) };
    match send(Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(Error::from_errno(format!("cannot stop process {pid}"), e)),
    }
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if gone() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = send(Signal::SIGKILL);
    let t1 = Instant::now();
    while !gone() && t1.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `pid` is this process, one of its ancestors, or (`group`: its group is what a
/// stop signals) the leader of this process's group.
fn runs_us(pid: u32, group: bool) -> bool {
    let me = std::process::id();
    if group && nix::unistd::getpgrp().as_raw() as u32 == pid {
        return true;
    }
    let mut p = me;
    // Up the parents to the namespace's init (pid 1, or 0 above it); a bound in case
    // /proc says something odd.
    for _ in 0..4096 {
        if p == pid {
            return true;
        }
        match super::proc::stat(p) {
            Some(s) if s.ppid > 1 => p = s.ppid,
            _ => return false,
        }
    }
    false
}

/// The process started at `start` runs (exists and is not a zombie).
fn running(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start) && !state_is_dead(pid)
}

fn state_is_dead(pid: u32) -> bool {
    super::proc::stat(pid).is_none_or(|s| s.exited())
}

/// Every process's pid and /proc directory (what cannot be listed: none).
fn processes() -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
}

/// Every process carrying a NETSCRIPT_OWNER mark: (pid, mark, command line). Only
/// processes in our mount namespace: those of a sandbox belong to records this
/// process cannot see (the sandbox's private /run).
pub fn marked() -> Vec<(u32, String, String)> {
    let prefix = format!("{OWNER_ENV}=");
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok();
    processes()
        .filter_map(|(pid, dir)| {
            if std::fs::read_link(dir.join("ns/mnt")).ok() != ours {
                return None;
            }
            let env = std::fs::read(dir.join("environ")).ok()?;
            let mark = env.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(prefix.as_bytes()))?;
            let cmd = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_string();
            Some((pid, String::from_utf8_lossy(mark).into_owned(), cmd))
        })
        .collect()
}

/// The processes in any of the network namespaces `ids` (the nsfs identity of
/// /proc/PID/ns/net), in pid order. Processes that cannot be looked at (another
/// user's, gone meanwhile) and zombies are left out.
pub fn in_namespaces(ids: &[NsId]) -> Vec<NsProcess> {
    use std::os::unix::fs::MetadataExt;
    if ids.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<NsProcess> = processes()
        .filter_map(|(pid, dir)| {
            let m = std::fs::metadata(dir.join("ns/net")).ok()?;
            let ns = NsId { dev: m.dev(), ino: m.ino(), ctime_ns: None };
            if !ids.iter().any(|id| id.same_inode(&ns)) {
                return None;
            }
            let stat = super::proc::stat(pid).filter(|s| !s.exited())?;
            Some(NsProcess { ns, pid, comm: stat.comm })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// Stops every process whose environment carries NETSCRIPT_OWNER=`mark`. None
/// found is ESRCH ("already gone"). One that may not be stopped (pid 1, see `stop`)
/// or cannot be does not keep the others running: all are tried, and the first
/// refusal is the result.
pub fn stop_marked(mark: &str, grace: Duration) -> Result<()> {
    let found: Vec<(u32, u64)> = marked()
        .into_iter()
        .filter(|(_, m, _)| m == mark)
        .filter_map(|(pid, _, _)| Some((pid, start_time(pid)?)))
        .collect();
    if found.is_empty() {
        return Err(Error::sys(format!("no process carries {OWNER_ENV}={mark}"), Some(Errno::ESRCH)));
    }
    let mut refused = None;
    for (pid, start) in found {
        if let Err(e) = stop(pid, start, grace) {
            refused.get_or_insert(e);
        }
    }
    refused.map_or(Ok(()), Err)
}

/// True when no live process is in the group (zombies waiting for another parent
/// to reap them do not count).
fn group_gone(pg: Pid) -> bool {
    match killpg(pg, None) {
        Err(Errno::ESRCH) => true,
        _ => {
            // Only zombies left? Look at /proc for members of the group.
            !processes().any(|(pid, _)| super::proc::stat(pid).is_some_and(|s| s.pgrp == pg.as_raw() && !s.exited()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A tool netscript runs itself, missing, is named with the package that has it
    /// (before, `Netns:trace` without nft said a bare "command not found: nft");
    /// any other program is said not to be found.
    #[test]
    fn a_missing_tool_names_its_package() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let said = |argv0: &str| spawn_err(&[argv0.to_string()], missing()).to_string();
        assert_eq!(said("nft"), "nft is not installed (Debian: apt-get install nftables)");
        assert_eq!(said("ip6tables-restore"), "ip6tables-restore is not installed (Debian: apt-get install iptables)");
        assert_eq!(said("ping"), "ping is not installed (Debian: apt-get install iputils-ping)");
        assert_eq!(said("my-tool"), "command not found: my-tool");
    }

    #[test]
    fn the_processes_in_a_namespace_are_found_by_its_identity() {
        let m = std::fs::metadata("/proc/self/ns/net").unwrap();
        let here = NsId { dev: m.dev(), ino: m.ino(), ctime_ns: Some(1) };
        let found = in_namespaces(&[here]);
        let me = found.iter().find(|p| p.pid == std::process::id()).expect("this test's process is in its namespace");
        assert!(me.ns.same_inode(&here));
        assert!(!me.comm.is_empty());
        assert!(found.windows(2).all(|w| w[0].pid < w[1].pid), "in pid order");
        // Another identity: none of them.
        let other = NsId { ino: here.ino ^ 1, ..here };
        assert!(in_namespaces(&[other]).iter().all(|p| p.pid != std::process::id()));
        assert!(in_namespaces(&[]).is_empty());
    }
}
