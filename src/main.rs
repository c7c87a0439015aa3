//! CLI dispatch and exit codes. Everything else lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;

use netscript::cli::{Cli, Command, RunOpts};
use netscript::error::{Error, Result};
use netscript::firewall::iptables::Flavor;
use netscript::kernel::Kernel;
use netscript::session::{Session, mark_for};
use netscript::state::{Record, default_state_dir};
use netscript::{lua, sandbox};

use netscript::app::{
    self, EXIT_FAILED, EXIT_ROLLBACK_INCOMPLETE, EXIT_USAGE, finishing_notice, install_signals, print_report,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Some(Command::Ls { .. } | Command::Show { .. } | Command::Gc { .. } | Command::Plan { .. })
    ) {
        // Output meant for pipes (`netscript show x | head`): a closed pipe ends the
        // process quietly instead of a panic. Not for runs: a rollback must finish.
        // SAFETY: single-threaded here; resetting a signal disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let opts = cli.run.clone();
    let (script, args) = match cli.command {
        Some(Command::Down { .. } | Command::Ls { .. } | Command::Show { .. } | Command::Gc { .. })
            if opts.sandbox || opts.wait || opts.ephemeral || opts.name.is_some() =>
        {
            eprintln!(
                "netscript: --sandbox, --wait, --ephemeral and --name apply to running a script or the REPL, not to down / ls / show / gc"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Some(Command::Down { name }) => return code(down(&opts, &name)),
        Some(Command::Plan { undo, script, args }) => {
            return code(netscript::plan::command(&opts, undo, &script, &args));
        }
        Some(Command::Ls { json }) => return code(ls(&opts, json)),
        Some(Command::Show { name, json, dot }) => return code(show(&opts, &name, json, dot)),
        Some(Command::Gc { yes }) => return code(gc(&opts, yes)),
        Some(Command::Run { script, args }) => (script, args),
        Some(Command::Repl) => return code(repl(&opts)),
        None => match cli.script {
            Some(s) => (s, cli.args),
            None => return code(repl(&opts)),
        },
    };
    code(run(&opts, &script, &args))
}

fn code(r: Result<u8>) -> ExitCode {
    match r {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("netscript: {e}");
            ExitCode::from(if matches!(e, Error::Invalid(_)) { EXIT_USAGE } else { EXIT_FAILED })
        }
    }
}

fn run(opts: &RunOpts, script: &Path, args: &[String]) -> Result<u8> {
    let topo = app::topo_name(opts, script);
    netscript::model::check_name("topology", &topo)?;
    Flavor::parse(&opts.iptables)?;
    if !script.is_file() {
        return Err(Error::invalid(format!("no such script: {}", script.display())));
    }
    // First, while single-threaded.
    let user_ns = if opts.sandbox { Some(sandbox::enter()?) } else { None };
    let signals = install_signals();
    let script_abs = std::fs::canonicalize(script).unwrap_or_else(|_| PathBuf::from(script));
    let opened = app::open(opts, &topo, &script_abs.display().to_string(), user_ns.is_some(), &signals)?;
    let lua = lua::new_lua(opened.session.clone(), &topo, Some(script), args, signals.cancel.clone())
        .map_err(|e| Error::sys(format!("cannot start Lua: {e}"), None))?;
    let result = lua::run_file(&lua, script, args);
    drop(lua);

    if let Some(msg) = lua::failure(&result, signals.cancel.load(Ordering::SeqCst)) {
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

/// The interactive REPL (src/repl.rs); the sandbox first, while single-threaded.
fn repl(opts: &RunOpts) -> Result<u8> {
    let user_ns = if opts.sandbox { Some(sandbox::enter()?) } else { None };
    let signals = install_signals();
    netscript::repl::run(opts, user_ns, &signals)
}

fn down(opts: &RunOpts, name: &str) -> Result<u8> {
    netscript::model::check_name("topology", name)?;
    let signals = install_signals();
    let base = opts.state_dir.clone().unwrap_or_else(default_state_dir);
    if !base.join(name).join("journal.jsonl").exists() {
        eprintln!("netscript: topology \"{name}\" is not up (no record in {}); nothing to do", base.display());
        return Ok(0);
    }
    let record = Record::lock(&base, name)?;
    let Some(journal) = record.existing()? else {
        let _ = record.remove();
        return Ok(0);
    };
    let kernel = Kernel::new(mark_for(name), Flavor::parse(&opts.iptables)?, Arc::new(AtomicBool::new(false)))?;
    let mut session = Session::new(Box::new(kernel), journal, name, Arc::new(AtomicBool::new(false)));
    let report = session.rollback_with(finishing_notice(&signals));
    print_report(&format!("down {name}"), &report, opts.verbose);
    if report.complete() {
        let _ = record.remove();
        Ok(0)
    } else {
        Ok(EXIT_ROLLBACK_INCOMPLETE)
    }
}

fn state_base(opts: &RunOpts) -> PathBuf {
    opts.state_dir.clone().unwrap_or_else(default_state_dir)
}

fn inspector(opts: &RunOpts) -> Result<Kernel> {
    Kernel::new(String::new(), Flavor::parse(&opts.iptables)?, Arc::new(AtomicBool::new(false)))
}

fn when(secs: u64) -> String {
    let ago = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).saturating_sub(secs);
    match ago {
        0..=119 => format!("{ago}s ago"),
        120..=7199 => format!("{}m ago", ago / 60),
        7200..=172799 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86400),
    }
}

fn ls(opts: &RunOpts, json: bool) -> Result<u8> {
    let mut k = inspector(opts)?;
    let list = netscript::inspect::list(&state_base(opts), &mut k);
    if json {
        println!("{}", serde_json::to_string_pretty(&list).expect("serializes"));
        return Ok(0);
    }
    if list.is_empty() {
        println!("no topologies are up (records in {})", state_base(opts).display());
        return Ok(0);
    }
    println!("{:<20} {:>7} {:<10} {:<12} SCRIPT", "NAME", "CHANGES", "STATUS", "STARTED");
    for t in &list {
        let status = if t.drift.is_empty() { t.status.clone() } else { format!("drift({})", t.drift.len()) };
        println!("{:<20} {:>7} {:<10} {:<12} {}", t.name, t.changes, status, when(t.started), t.script);
        for d in &t.drift {
            println!("    {d}");
        }
    }
    Ok(0)
}

fn show(opts: &RunOpts, name: &str, json: bool, dot: bool) -> Result<u8> {
    let shown = netscript::inspect::show(&state_base(opts), name)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&shown).expect("serializes"));
    } else if dot {
        print!("{}", netscript::inspect::dot(&shown));
    } else {
        println!("topology {} (from {}, {})", shown.name, shown.script, when(shown.started));
        for (ns, owned) in shown.by_namespace() {
            println!("{ns}:");
            for o in owned {
                println!("    {}", o.command);
            }
        }
    }
    Ok(0)
}

fn gc(opts: &RunOpts, yes: bool) -> Result<u8> {
    use netscript::backend::Backend;
    let mut k = inspector(opts)?;
    let found = netscript::inspect::orphans(&state_base(opts), &mut k)?;
    if found.is_empty() {
        println!("nothing to collect: every marked object belongs to a recorded topology");
        return Ok(0);
    }
    let mut failed = 0;
    for o in &found {
        if yes {
            match k.apply(&o.remove) {
                Ok(()) => println!("removed {}: {}", o.what, o.remove.render()),
                Err(e) if e.is_gone() => println!("already gone: {}", o.what),
                Err(e) => {
                    failed += 1;
                    eprintln!("netscript: could not remove {}: {e}", o.what);
                }
            }
        } else {
            println!(
                "{}
    remove with: {}",
                o.what,
                o.remove.render()
            );
        }
    }
    if !yes {
        println!("{} object(s) found; run `netscript gc --yes` to remove them", found.len());
    }
    Ok(if failed > 0 { EXIT_ROLLBACK_INCOMPLETE } else { 0 })
}
