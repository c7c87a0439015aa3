//! `netscript SCRIPT` / `netscript run SCRIPT`: run a script on the kernel, and the
//! REPL. The sandbox is entered first, while the process has one thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{EXIT_FAILED, check_script, install_signals, open, run_script};
use crate::cli::RunOpts;
use crate::error::Result;
use crate::firewall::iptables::Flavor;
use crate::sandbox;

pub fn run(opts: &RunOpts, script: &Path, args: &[String]) -> Result<u8> {
    let topo = check_script(opts, script)?;
    Flavor::parse(&opts.iptables)?;
    // First, while single-threaded.
    let user_ns = if opts.sandbox { Some(sandbox::enter()?) } else { None };
    let signals = install_signals();
    let script_abs = std::fs::canonicalize(script).unwrap_or_else(|_| PathBuf::from(script));
    let opened = open(opts, &topo, &script_abs.display().to_string(), user_ns.is_some(), &signals)?;
    let failed = run_script(&opened.session, &topo, script, args, &signals.cancel, false)?;

    if let Some(msg) = failed {
        eprintln!("netscript: {msg}; rolling back");
        // After a failure, say exactly what was undone.
        let c = opened.rollback("rolled back", true, &signals);
        return Ok(if c == 0 { EXIT_FAILED } else { c });
    }
    if let Some(user_ns) = user_ns.filter(|_| opts.wait) {
        eprintln!(
            "netscript: the sandbox is up. Enter it from another shell with:\n  {}\nPress Ctrl-C here to roll back and exit.",
            sandbox::enter_hint(std::process::id(), user_ns)
        );
        while !signals.cancel.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(opened.finish(opts, &signals))
}

/// The interactive REPL (src/repl); the sandbox first, while single-threaded.
pub fn repl(opts: &RunOpts) -> Result<u8> {
    let user_ns = if opts.sandbox { Some(sandbox::enter()?) } else { None };
    let signals = install_signals();
    crate::repl::run(opts, user_ns, &signals)
}
