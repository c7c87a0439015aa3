//! `netscript SCRIPT` / `netscript run SCRIPT`: run a script on the kernel, and the
//! REPL. The sandbox is entered first, while the process has one thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{EXIT_FAILED, Ran, check_script, install_signals, module_hint, open, refused, run_script};
use crate::cli::RunOpts;
use crate::error::{Error, Result};
use crate::sandbox;
use crate::session::{Phase, Timings};

/// Refuses a run on the real host without the privileges it needs, saying what would
/// work, before anything is made (not a "Permission denied" from the first change).
fn check_privileges(opts: &RunOpts) -> Result<()> {
    if opts.sandbox || super::can_admin_network() {
        return Ok(());
    }
    Err(Error::invalid(
        "changing this machine's network needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo, \
         or add --sandbox to run it in a throwaway sandbox, which needs no root; nothing was changed",
    ))
}

pub fn run(opts: &RunOpts, script: &Path, args: &[String]) -> Result<u8> {
    let started = Instant::now();
    let topo = check_script(opts, script)?;
    check_privileges(opts)?;
    if opts.replace {
        if opts.sandbox {
            return Err(Error::invalid(
                "--replace takes down a topology that is up on this machine; a --sandbox run starts from nothing \
                 (leave out one of them); nothing was changed",
            ));
        }
        let c = replace(opts, &topo)?;
        if c != 0 {
            eprintln!(
                "netscript: --replace: topology \"{topo}\" could not be taken down completely; the script was not run again"
            );
            return Ok(c);
        }
    }
    // For `netscript exec` from another shell (written before the sandbox hides /run).
    let _pointer = if opts.sandbox && opts.wait { Some(super::exec::announce_sandbox(&topo)?) } else { None };
    // First, while single-threaded.
    let user_ns = if opts.sandbox { Some(sandbox::enter()?) } else { None };
    let signals = install_signals();
    let script_abs = std::fs::canonicalize(script).unwrap_or_else(|_| PathBuf::from(script));
    let opened = open(opts, &topo, &script_abs.display().to_string(), user_ns.is_some(), &signals)
        .map_err(|e| refused(super::beside(e, opts)))?;
    let opened_at = Instant::now();
    if !opts.verbose {
        // -v prints every change already.
        opened.session.borrow_mut().observe(Box::new(super::RunProgress::new(&topo)));
    }
    let ran =
        match run_script(&opened.session, &topo, script, args, &signals.cancel, false, opts.safe.then_some("--safe")) {
            Ok(r) => r,
            Err(e) => {
                // Nothing ran: the empty record goes.
                let _ = opened.rollback("", false, &signals);
                return Err(e);
            }
        };

    if let Ran::Done { module: true } = ran {
        crate::term::clear_progress();
        eprintln!("{}", module_hint(script));
    }
    if let Ran::Failed(msg) = ran {
        crate::term::clear_progress();
        eprintln!("{}", crate::term::paint(crate::term::Paint::Bad, &format!("netscript: {msg}; rolling back")));
        // After a failure, say exactly what was undone.
        let c = opened.rollback("rolled back", true, &signals);
        return Ok(if c == 0 { EXIT_FAILED } else { c });
    }
    if let Some(user_ns) = user_ns.filter(|_| opts.wait) {
        crate::term::clear_progress();
        eprintln!(
            "netscript: the sandbox is up. From another shell, run a shell in one of its namespaces with:\n  netscript exec {0} NS\nexplain a probe from one with:\n  netscript trace {0} NS DST [tcp|udp PORT]\nor enter the sandbox itself with:\n  {1}\nPress Ctrl-C here to roll back and exit.",
            crate::model::shell_quote(&topo),
            sandbox::enter_hint(std::process::id(), user_ns)
        );
        while !signals.cancel.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let ran_at = Instant::now();
    let timings = opened.session.borrow().timings().clone();
    let code = opened.finish(opts, &signals);
    if std::env::var_os(PHASES_VAR).is_some() {
        let (open, script, finish) = (opened_at - started, ran_at - opened_at, ran_at.elapsed());
        eprintln!("{}", phases_line(started.elapsed(), open, script, finish, &timings));
    }
    Ok(code)
}

/// Set (to anything), a run prints where its time went to stderr as it exits (for
/// benches/run.sh; not a documented option).
const PHASES_VAR: &str = "NETSCRIPT_PHASES";

/// `PHASES total=.. open=.. script=.. netns=.. ... rest=.. finish=.. changes=N
/// rss_kb=N`, in ms: open is the state dir, lock and journal; script the script's
/// run, of which each phase is the back end's (or the journal's) share and rest what
/// is left (Lua, validation reads); finish is keeping the record (or a rollback);
/// rss_kb the process's peak resident set (its own, not the iptables it ran), so
/// that the bench needs no `/usr/bin/time` around it (a wrapper the floor has not).
fn phases_line(total: Duration, open: Duration, script: Duration, finish: Duration, t: &Timings) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let mut out = format!("PHASES total={} open={} script={}", ms(total), ms(open), ms(script));
    let mut spent = Duration::ZERO;
    for p in Phase::ALL {
        spent += t.get(p);
        out += &format!(" {}={}", p.name(), ms(t.get(p)));
    }
    out += &format!(" rest={} finish={} changes={}", ms(script.saturating_sub(spent)), ms(finish), t.changes);
    if let Some(kib) = crate::sys::peak_rss_kib() {
        out += &format!(" rss_kb={kib}");
    }
    out
}

/// `--replace`: takes topology `topo` down when it is up, before the run; the exit
/// code of that (0: done, or it was not up).
fn replace(opts: &RunOpts, topo: &str) -> Result<u8> {
    let base = super::state_base(opts);
    let up = crate::state::StateDir::open(&base, false)?.map(|s| s.has_record(topo)).transpose()?.unwrap_or(false);
    if !up {
        return Ok(0);
    }
    eprintln!("netscript: --replace: taking topology \"{topo}\" down first");
    super::down::down(opts, topo)
}

/// The interactive REPL (src/repl); the sandbox first, while single-threaded. A
/// sandbox is announced for `netscript exec` and `trace` while the REPL runs.
pub fn repl(opts: &RunOpts) -> Result<u8> {
    if opts.replace {
        return Err(Error::invalid("--replace applies to running a script, not to the REPL"));
    }
    if opts.wait {
        return Err(Error::invalid(
            "--wait applies to running a script: the REPL's sandbox is up while the REPL runs, and `netscript exec NAME NS` reaches it from another shell",
        ));
    }
    check_privileges(opts)?;
    let topo = opts.name.clone().unwrap_or_else(|| format!("repl-{}", std::process::id()));
    crate::model::check_name("topology", &topo)?;
    // Written before the sandbox hides /run (as for a `--sandbox --wait` run). The
    // REPL runs without it when it cannot be written (exec will not reach it).
    let _pointer = match opts.sandbox.then(|| super::exec::announce_sandbox(&topo)) {
        Some(Err(e)) if super::exec::sandbox_up(&topo) => return Err(e),
        Some(Err(e)) => {
            eprintln!("netscript: `netscript exec` will not reach this sandbox: {e}");
            None
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let user_ns = if opts.sandbox { Some(sandbox::enter()?) } else { None };
    let signals = install_signals();
    crate::repl::run(opts, &topo, user_ns, &signals)
}
