//! Root qdiscs through the `tc` command (iproute2), run inside the namespace: the
//! netlink crates netscript uses know no netem or tbf options. Functions here take
//! the namespace's fd and a link name; errors name the link and the reason.

use std::os::fd::BorrowedFd;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::qdisc::{Qdisc, RootQdisc, root_from_json};
use crate::sys::process;

const TIMEOUT: Duration = Duration::from_secs(10);

fn run(fd: Option<BorrowedFd<'_>>, argv: &[&str]) -> Result<process::ExecResult> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let never = AtomicBool::new(false);
    let r = process::exec(fd, &argv, Some(TIMEOUT), &never).map_err(|e| match e.errno() {
        Some(Errno::ENOENT) => Error::sys(process::not_installed("tc").unwrap_or_default(), None),
        _ => e,
    })?;
    if r.timed_out {
        return Err(Error::sys(format!("{} did not finish in {}s", argv.join(" "), TIMEOUT.as_secs()), None));
    }
    Ok(r)
}

/// An error of tc about link `dev`, with the errno rollback needs ("already gone").
fn tc_error(dev: &str, stderr: &str) -> Error {
    let msg = stderr.trim().trim_start_matches("Error: ").to_string();
    if msg.contains("Cannot find device") || msg.contains("No such device") {
        return Error::sys(format!("no link named \"{dev}\""), Some(Errno::ENODEV));
    }
    Error::sys(format!("link \"{dev}\": {msg}"), None)
}

/// The root qdisc of `dev`.
pub fn root(fd: Option<BorrowedFd<'_>>, dev: &str) -> Result<RootQdisc> {
    let r = run(fd, &["tc", "-j", "qdisc", "show", "dev", dev, "root"])?;
    if r.code != 0 {
        return Err(tc_error(dev, &r.stderr));
    }
    root_from_json(&r.stdout)
}

/// The links of the namespace whose root qdisc has one of netscript's handles, with
/// that handle (one `tc -j qdisc show` for all links).
pub fn marked_roots(fd: Option<BorrowedFd<'_>>) -> Result<Vec<(String, u16)>> {
    let r = run(fd, &["tc", "-j", "qdisc", "show"])?;
    if r.code != 0 {
        return Err(Error::sys(format!("tc qdisc show: {}", r.stderr.trim()), None));
    }
    crate::qdisc::marked_roots_from_json(&r.stdout)
}

/// What the kernel lacks when it does not know a qdisc kind, and what still works.
pub fn missing_kind(kind: &str) -> String {
    let what = match kind {
        "netem" => "delay, jitter, loss, duplication, corruption, reordering (Link:impair)",
        "tbf" => "rate limits (Link:shape)",
        _ => "this qdisc",
    };
    format!(
        "this kernel has no {kind} qdisc (module sch_{kind}, CONFIG_NET_SCH_{}), needed for {what}; \
         `modprobe sch_{kind}` on the host may add it. Links, addresses and routes work without it{}",
        kind.to_uppercase(),
        if kind == "netem" { "; Link:shape (tbf) needs only sch_tbf" } else { "" }
    )
}

/// Makes `q` the root qdisc of `dev` (`tc qdisc replace dev DEV root [handle H:] ...`).
pub fn replace(fd: Option<BorrowedFd<'_>>, dev: &str, q: &Qdisc) -> Result<()> {
    let mut argv = vec!["tc", "qdisc", "replace", "dev", dev, "root"];
    let words = q.command_words(true);
    argv.extend(words.iter().map(String::as_str));
    let r = run(fd, &argv)?;
    if r.code == 0 {
        return Ok(());
    }
    if r.stderr.contains("qdisc kind is unknown") || r.stderr.contains("Unknown qdisc") {
        return Err(Error::sys(format!("link \"{dev}\": {}", missing_kind(&q.kind)), Some(Errno::EOPNOTSUPP)));
    }
    Err(tc_error(dev, &r.stderr))
}

/// Gives `dev` back its default root qdisc (`tc qdisc del dev DEV root`); a link that
/// already has it is left as it is.
pub fn delete_root(fd: Option<BorrowedFd<'_>>, dev: &str) -> Result<()> {
    let r = run(fd, &["tc", "qdisc", "del", "dev", dev, "root"])?;
    if r.code == 0 || r.stderr.contains("handle of zero") || r.stderr.contains("Invalid handle") {
        return Ok(());
    }
    Err(tc_error(dev, &r.stderr))
}
