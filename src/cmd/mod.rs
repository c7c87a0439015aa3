//! The commands: one file each (`run` runs a script or the REPL, `plan` runs it
//! against the model, `down` takes a topology down, `inspect` is ls / show / gc), and
//! what they share here: exit codes, signal handling, running a script on a session
//! (any back end), opening a recorded session on the kernel and ending it (keep it up,
//! or roll it back and say so). `main.rs` only parses the command line and dispatches.

pub mod down;
pub mod exec;
pub mod inspect;
pub mod plan;
pub mod run;
pub mod shell;
pub mod stubs;
pub mod trace;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::backend::Backend;
use crate::cli::RunOpts;
use crate::error::{Error, Result};
use crate::faults::{Faults, Faulty};
use crate::firewall::{self, Firewall};
use crate::journal::Meta;
use crate::kernel::Kernel;
use crate::lua::{self, SessionRef};
use crate::model::plural;
use crate::observer::Observer;
use crate::op::Op;
use crate::session::{RollbackReport, Session, mark_for};
use crate::state::{Record, default_state_dir};
use crate::term::{self, Paint};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ROLLBACK_INCOMPLETE: u8 = 3;

/// The process's exit code for a command's result: its own code, or 2 for a usage
/// error and 1 for any other error (printed first).
pub fn exit_code(r: Result<u8>) -> u8 {
    match r {
        Ok(c) => c,
        Err(e) => {
            term::clear_progress();
            eprintln!("{}", term::paint(Paint::Bad, &format!("netscript: {e}")));
            if matches!(e, Error::Invalid(_)) { EXIT_USAGE } else { EXIT_FAILED }
        }
    }
}

/// Whether this process holds CAP_NET_ADMIN and CAP_SYS_ADMIN (what making
/// namespaces, links and rules needs), from /proc/self/status.
pub fn can_admin_network() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return true };
    let eff =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    eff.is_none_or(|e| e & (1 << CAP_NET_ADMIN) != 0 && e & (1 << CAP_SYS_ADMIN) != 0)
}

/// Refuses `what` (a command that changes or reads the whole machine's network) to
/// a process without CAP_NET_ADMIN and CAP_SYS_ADMIN, before it starts: without
/// them it would fail halfway (`down`) or give a false answer (`gc`).
pub fn require_network_admin(what: &str) -> Result<()> {
    if can_admin_network() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{what} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo; nothing was changed"
    )))
}

/// The state directory: --state-dir, else the default. A sandbox's is always its
/// own /run/netscript (private to it: `--state-dir` is refused with `--sandbox`, and
/// NETSCRIPT_STATE_DIR does not apply), so that a record of changes made in a
/// sandbox never lands where the host's `down` would undo it on the host.
pub fn state_base(opts: &RunOpts) -> PathBuf {
    if opts.sandbox {
        return PathBuf::from(crate::state::DEFAULT_STATE_DIR);
    }
    opts.state_dir.clone().unwrap_or_else(default_state_dir)
}

/// The checks every script-running command makes before anything runs: the
/// topology's name, and that the script is a file. Returns the topology's name.
pub fn check_script(opts: &RunOpts, script: &Path) -> Result<String> {
    let shown = script.display();
    if script.is_dir() {
        return Err(Error::invalid(format!("{shown} is a directory, not a script; nothing was changed")));
    }
    if !script.exists() {
        let word = script.to_string_lossy();
        if let Some(cmd) = crate::cli::similar_command(&word) {
            return Err(Error::invalid(format!(
                "no such script or command: {word} (did you mean `netscript {cmd}`?); nothing was changed"
            )));
        }
        return Err(Error::invalid(format!("no such script: {shown}; nothing was changed")));
    }
    if let Err(e) = std::fs::File::open(script) {
        return Err(Error::invalid(format!("cannot read {shown}: {e}; nothing was changed")));
    }
    let topo = topo_name(opts, script);
    crate::model::check_name("topology", &topo)?;
    Ok(topo)
}

/// How a script run ended.
pub enum Ran {
    /// At its end, or at os.exit(0). `module`: the script returned a table, as a
    /// module does, and made no change (see `module_hint`).
    Done { module: bool },
    /// Why it failed.
    Failed(String),
}

/// The script-run sequence that a real run and a plan share: a Lua state on
/// `session` (whatever its back end), the script run with `args`, the state dropped.
/// An error when the script could not even start (unreadable, a syntax error).
pub fn run_script(
    session: &SessionRef,
    topo: &str,
    script: &Path,
    args: &[String],
    cancel: &Arc<AtomicBool>,
    output_to_stderr: bool,
    restricted: Option<&str>,
) -> Result<Ran> {
    let lua = lua::new_lua(session.clone(), topo, Some(script), args, cancel.clone())
        .and_then(|l| if output_to_stderr { lua::output_to_stderr(&l).map(|()| l) } else { Ok(l) })
        .and_then(|l| if term::stderr_is_terminal() { clear_before_output(&l).map(|()| l) } else { Ok(l) })
        .and_then(|l| restricted.map_or(Ok(()), |who| lua::restrict::restrict(&l, who)).map(|()| l))
        .map_err(|e| Error::sys(format!("cannot start Lua: {e}"), None))?;
    // An unreadable script or a syntax error: refused, nothing of it ran.
    let chunk = lua::load_file(&lua, script).map_err(|e| refused(Error::invalid(lua::error_text(&e))))?;
    let result = lua::call_chunk(&lua, &chunk, args);
    drop(chunk);
    drop(lua);
    Ok(match lua::failure(&result, cancel.load(Ordering::SeqCst)) {
        Some(why) => Ran::Failed(why),
        None => Ran::Done { module: result.unwrap_or(false) && session.borrow().journal().live_count() == 0 },
    })
}

/// What to say when a script made no changes and returned a table: it is a module
/// (examples/lan.lua), which does its work when a script loads it with `require`.
pub fn module_hint(script: &Path) -> String {
    let shown = script.display().to_string();
    let stem = script.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut msg = format!(
        "netscript: {} made no changes and returned a table, as a Lua module does; a module is loaded by a \
         script next to it",
        crate::model::shell_quote(&shown)
    );
    // require("a.b") looks for a/b.lua: a name with a dot is not this file's.
    if !stem.is_empty() && !stem.contains('.') {
        let var = if lua::util::is_ident(&stem) { stem.as_str() } else { "m" };
        msg += &format!(", with: local {var} = require({})", lua::util::lua_quote(stem.as_bytes()));
    }
    msg
}

/// What the script prints goes on a line of its own: the progress line (on a
/// terminal) is removed first.
fn clear_before_output(lua: &mlua::Lua) -> mlua::Result<()> {
    let clear = lua.create_function(|_, ()| {
        term::clear_progress();
        Ok(())
    })?;
    lua.load(
        "local clear, print0, write0 = ...
         print = function(...) clear() return print0(...) end
         io.write = function(...) clear() return write0(...) end",
    )
    .call::<()>((
        clear,
        lua.globals().get::<mlua::Function>("print")?,
        lua.load("return io.write").eval::<mlua::Function>()?,
    ))
}

/// A run's progress line (on a terminal, after a second): how many changes so far,
/// where in the script, and the change, as its command.
pub struct RunProgress {
    line: term::Progress,
    topo: String,
    changes: usize,
    origin: String,
}

impl RunProgress {
    pub fn new(topo: &str) -> RunProgress {
        RunProgress { line: term::Progress::new(true), topo: topo.to_string(), changes: 0, origin: String::new() }
    }
}

impl Observer for RunProgress {
    fn change(&mut self, op: &Op) {
        self.changes += 1;
        let (n, secs, topo, origin) = (self.changes, self.line.secs(), &self.topo, &self.origin);
        self.line.show(|| format!("netscript: {topo}: {}, {secs:.0}s{origin}: {}", plural(n, "change"), op.render()));
    }
    fn origin(&mut self, origin: &dyn Fn() -> String) {
        if self.line.due() {
            // The script's file name and line (its directory would fill the line).
            let o = origin();
            let short = o.rsplit('/').next().unwrap_or(&o);
            self.origin = if short.is_empty() { String::new() } else { format!(", {short}") };
        }
    }
}

/// The tick of a rollback: the progress line (on a terminal, after a second: how
/// many changes are left to undo) and the notice of `finishing_notice`.
pub fn rollback_tick<'a>(signals: &'a Signals, what: String) -> impl FnMut(usize) + 'a {
    let mut notice = finishing_notice(signals);
    let mut line = term::Progress::new(true);
    let mut total = None;
    move |left| {
        let total = *total.get_or_insert(left);
        line.show(|| format!("netscript: {what}: undoing, {left} of {} left", plural(total, "change")));
        notice(left);
    }
}

/// SIGINT / SIGTERM / SIGHUP: `cancel` stops the script; `count` tells a second
/// Ctrl-C during rollback (which does not stop the rollback).
pub struct Signals {
    pub cancel: Arc<AtomicBool>,
    pub count: Arc<AtomicUsize>,
}

/// The signals that stop a run (and roll it back): Ctrl-C, SIGTERM, and SIGHUP (the
/// terminal closed: without it a `--sandbox --wait` whose window is closed left its
/// spawned processes running in namespaces no one could reach) unless SIGHUP is
/// ignored as netscript starts (`nohup`: the user asked it to outlive the terminal).
pub fn stop_signals() -> Vec<i32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut v = vec![SIGINT, SIGTERM];
    if !crate::sys::signal_ignored(SIGHUP) {
        v.push(SIGHUP);
    }
    v
}

pub fn install_signals() -> Signals {
    let cancel = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    for sig in stop_signals() {
        let _ = signal_hook::flag::register(sig, cancel.clone());
        let c = count.clone();
        // SAFETY: the handler only increments an atomic, which is async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                c.fetch_add(1, Ordering::SeqCst);
            })
        };
    }
    Signals { cancel, count }
}

/// A rollback progress callback: when a signal arrives during the rollback, say once
/// that the rollback is being finished (it is never cut short).
pub fn finishing_notice(signals: &Signals) -> impl FnMut(usize) + '_ {
    let at_start = signals.count.load(Ordering::SeqCst);
    let mut told = false;
    move |left| {
        if !told && signals.count.load(Ordering::SeqCst) > at_start {
            term::clear_progress();
            eprintln!("netscript: interrupted again; finishing the rollback first ({left} changes left to undo)");
            told = true;
        }
    }
}

/// Prints a rollback's outcome: the count, each failure, and (`list`, or when
/// something failed) every command that ran.
pub fn print_report(what: &str, r: &RollbackReport, list: bool) {
    term::clear_progress();
    if list || !r.complete() {
        print_undone(r);
    }
    if r.pending > 0 {
        eprintln!(
            "netscript: {what}: undid {} of {}; {} could not be undone (below)",
            r.changes - r.pending,
            plural(r.changes, "change"),
            r.pending
        );
    } else if r.changes > 0 || !r.complete() {
        eprintln!("netscript: {what}: undid {}", plural(r.changes, "change"));
    }
    print_notes(r);
}

/// Each undo command a rollback ran, as a list.
pub fn print_undone(r: &RollbackReport) {
    for u in &r.undone {
        eprintln!("  undone: {}", u.render());
    }
}

/// What a rollback handed over, left alone, found held, and could not undo.
pub fn print_notes(r: &RollbackReport) {
    for h in &r.handed_over {
        eprintln!("netscript: {h}");
    }
    for l in r.left_alone.iter().chain(&r.held) {
        eprintln!("netscript: {l}");
    }
    for f in &r.failures {
        // The error names the command already when it comes from running it.
        let (cmd, error) = (f.undo.render(), f.error.to_string());
        let why = error.strip_prefix(&format!("{cmd}: ")).unwrap_or(&error);
        eprintln!("{}", term::paint(Paint::Bad, &format!("netscript: could not undo `{cmd}`: {why}")));
    }
}

/// The firewall driver --iptables chose.
pub fn firewall(opts: &RunOpts) -> Result<Box<dyn Firewall>> {
    firewall::driver(opts.iptables.into())
}

/// For a run refused because its topology is busy: how to run beside it.
pub fn beside(e: Error, opts: &RunOpts) -> Error {
    match e {
        Error::Invalid(m) if m.ends_with(crate::state::BUSY) && opts.name.is_none() => {
            Error::Invalid(format!("{m}, or run this one under another --name"))
        }
        e => e,
    }
}

/// An error that stopped a run before anything was changed: a usage error (exit 2)
/// that says so.
pub fn refused(e: Error) -> Error {
    Error::invalid(format!("{e}; nothing was changed"))
}

/// The topology's name: --name, or the script's file stem.
pub fn topo_name(opts: &RunOpts, script: &Path) -> String {
    opts.name.clone().unwrap_or_else(|| {
        script.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "topology".into())
    })
}

/// The command that takes `topo` down (with --state-dir when one was given).
pub fn down_command(opts: &RunOpts, topo: &str) -> String {
    crate::state::down_command(&state_base(opts), topo)
}

/// `-v`: each change, as its shell command, on stderr as it is made.
pub struct Verbose;

impl Observer for Verbose {
    fn change(&mut self, op: &Op) {
        eprintln!("+ {}", op.render());
    }
}

/// The rollback of topology `topo` hands the host-wide settings that a later live
/// topology changed too over to it (`state::hand_over`), and the firewall chains it
/// made in the host namespace to a live topology whose rules use them
/// (`state::hand_over_chains`).
pub fn handover(opts: &RunOpts, topo: &str, started: u128) -> Box<dyn crate::session::Handover> {
    Box::new(Records { base: state_base(opts), topo: topo.to_string(), started, until: None, told: Vec::new() })
}

/// The other records, as a rollback's `Handover` asks them; a taker that is being
/// changed is waited for until `until` (`state::HANDOVER_WAIT` from the rollback's
/// first hand-over, for all of them), and the wait told once per taker.
struct Records {
    base: PathBuf,
    topo: String,
    started: u128,
    until: Option<std::time::Instant>,
    told: Vec<String>,
}

impl Records {
    fn wait<T>(&mut self, f: impl FnOnce(&Path, &str, &mut crate::state::Wait<'_>) -> T) -> T {
        let until = *self.until.get_or_insert_with(|| std::time::Instant::now() + crate::state::HANDOVER_WAIT);
        let (topo, told) = (&self.topo, &mut self.told);
        let mut waiting = |taker: &str| {
            if !told.iter().any(|t| t == taker) {
                term::clear_progress();
                // What is left of the rollback's wait (all of it for the first taker).
                let left = until.saturating_duration_since(std::time::Instant::now()).as_secs_f64().ceil();
                eprintln!(
                    "netscript: {topo}: waiting for topology \"{taker}\", which is being changed right now, to take over what it shares with this one (at most {left} s)"
                );
                told.push(taker.to_string());
            }
        };
        f(&self.base, topo, &mut crate::state::Wait { until, waiting: &mut waiting })
    }
}

impl crate::session::Handover for Records {
    /// Each rollback waits afresh (a run's or a REPL's may come long after it opened).
    fn begin(&mut self) {
        self.until = None;
        self.told.clear();
    }

    fn setting(&mut self, undo: &Op) -> Option<String> {
        let started = self.started;
        self.wait(|base, topo, w| crate::state::hand_over(base, topo, started, undo, w))
    }

    fn chains(
        &mut self,
        family: firewall::Family,
        chains: &[(String, String)],
        changes: &[(Op, Vec<Op>)],
    ) -> Option<String> {
        self.wait(|base, topo, w| crate::state::hand_over_chains(base, topo, family, chains, changes, w))
    }
}

/// A recorded session on the kernel, locked for this process.
pub struct Opened {
    pub topo: String,
    pub record: Record,
    pub session: SessionRef,
}

/// Locks the record of `topo`, starts its journal and a session on the kernel.
/// `sandboxed`: the sandbox's own "host" gets a working loopback, as a real host has.
pub fn open(opts: &RunOpts, topo: &str, script: &str, sandboxed: bool, signals: &Signals) -> Result<Opened> {
    let record = Record::lock(&state_base(opts), topo)?;
    let meta = Meta {
        name: topo.to_string(),
        script: script.to_string(),
        pid: std::process::id(),
        started: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        started_ns: SystemTime::now().duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos() as u64),
        firewall: None,
    };
    let started = meta.started_at();
    let journal = record.start(meta)?;
    let mut kernel = Kernel::new(mark_for(topo), firewall(opts)?, signals.cancel.clone())?;
    kernel.set_log_dir(Some(record.dir.clone()));
    if sandboxed {
        kernel.set_lo_up()?;
    }
    // The test switch (NETSCRIPT_FAIL_AFTER / NETSCRIPT_CRASH_AT) wraps the kernel.
    let (backend, counter): (Box<dyn Backend>, _) = match Faults::from_env() {
        Some(f) => {
            let faulty = Faulty::new(kernel, f);
            let counter = faulty.counter();
            (Box::new(faulty), Some(counter))
        }
        None => (Box::new(kernel), None),
    };
    let mut session = Session::new(backend, journal, topo, signals.cancel.clone());
    session.set_handover(handover(opts, topo, started));
    if opts.verbose {
        session.observe(Box::new(Verbose));
    }
    if let Some(c) = counter {
        session.observe(c);
    }
    Ok(Opened { topo: topo.to_string(), record, session: Rc::new(RefCell::new(session)) })
}

impl Opened {
    /// Rolls everything back (listing each undo command when `list`); forgets the
    /// record when that worked.
    pub fn rollback(self, why: &str, list: bool, signals: &Signals) -> u8 {
        // A signal has done its work by now; the rollback must not be cut short.
        signals.cancel.store(false, Ordering::SeqCst);
        let report = self.session.borrow_mut().rollback_with(rollback_tick(signals, self.topo.clone()));
        print_report(why, &report, list);
        if report.complete() {
            let _ = self.record.remove();
            0
        } else {
            EXIT_ROLLBACK_INCOMPLETE
        }
    }

    /// Ends a session that went well: rolled back for --sandbox / --ephemeral (`how`
    /// says which), otherwise kept up with a note on how to take it down.
    pub fn finish(self, opts: &RunOpts, signals: &Signals) -> u8 {
        if opts.sandbox || opts.ephemeral {
            let why = if opts.ephemeral { "ephemeral run, rolled back" } else { "sandbox closed" };
            return self.rollback(why, opts.verbose, signals);
        }
        let n = self.session.borrow().journal().live_count();
        if n == 0 {
            let _ = self.record.remove();
        } else {
            term::clear_progress();
            let msg = format!(
                "netscript: topology \"{}\" is up ({} still in place). Take it down with: {}",
                self.topo,
                plural(n, "change"),
                down_command(opts, &self.topo)
            );
            eprintln!("{}", term::paint(Paint::Good, &msg));
        }
        0
    }
}
