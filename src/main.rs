//! Command-line parsing and dispatch; each command lives in src/cmd.

use std::process::ExitCode;

use clap::Parser;

use netscript::cli::{Cli, Command, RunOpts};
use netscript::cmd::{self, EXIT_USAGE, down, exec, inspect, plan, run, shell, stubs, trace};

/// mimalloc, not glibc's malloc: a run allocates and frees small strings and ops for
/// every change (journal lines, rules, the Lua heap), and mimalloc does that in about
/// three quarters of the instructions (docs/performance.md). `no_thp`: without it,
/// transparent huge pages back its arenas and the peak RSS doubles.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Why `--state-dir` is refused with `--sandbox`.
const SANDBOX_STATE_DIR: &str = "--state-dir does not apply to --sandbox: a sandbox keeps its record in its own /run, \
     which nothing outside it sees (so that nothing on the host can take it down); nothing was changed";

fn main() -> ExitCode {
    let cli = Cli::parse();
    netscript::sys::raise_nofile_limit();
    if matches!(
        cli.command,
        Some(
            Command::Ls { .. }
                | Command::Show { .. }
                | Command::Gc { .. }
                | Command::Plan { .. }
                | Command::Completions { .. }
                | Command::Man
                | Command::Stubs { .. }
        )
    ) {
        // Output meant for pipes (`netscript show x | head`): a closed pipe ends the
        // process quietly instead of a panic. Not for runs: a rollback must finish.
        // SAFETY: single-threaded here; resetting a signal disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let top = cli.script_opts.clone();
    let usage = |msg: &str| {
        eprintln!("netscript: {msg}");
        ExitCode::from(EXIT_USAGE)
    };
    let opts = |script_opts| RunOpts::new(&cli.common, script_opts);
    let result = match &cli.command {
        Some(Command::Run { opts: o, .. } | Command::Repl { opts: o }) if top.and(o).wait && !top.and(o).sandbox => {
            return usage("--wait needs --sandbox (it keeps the sandbox open after the script)");
        }
        None if top.wait && !top.sandbox => {
            return usage("--wait needs --sandbox (it keeps the sandbox open after the script)");
        }
        Some(Command::Run { opts: o, .. } | Command::Repl { opts: o })
            if top.and(o).sandbox && cli.common.state_dir.is_some() =>
        {
            return usage(SANDBOX_STATE_DIR);
        }
        None if top.sandbox && cli.common.state_dir.is_some() => return usage(SANDBOX_STATE_DIR),
        Some(Command::Plan { .. }) if top.sandbox || top.wait || top.ephemeral || top.replace => {
            return usage(
                "--sandbox, --wait, --ephemeral and --replace apply to running a script or the REPL, not to plan",
            );
        }
        Some(
            Command::Down { .. }
            | Command::Ls { .. }
            | Command::Show { .. }
            | Command::Gc { .. }
            | Command::Exec { .. }
            | Command::Trace { .. }
            | Command::Completions { .. }
            | Command::Man
            | Command::Stubs { .. },
        ) if top.any() => {
            return usage(
                "--sandbox, --wait, --ephemeral, --safe, --replace and --name apply to running a script or the REPL, not to down / ls / show / gc / exec / trace / completions / man / stubs",
            );
        }
        Some(Command::Down { name }) => down::down(&opts(&top), name),
        Some(Command::Plan { undo, name, host_link, script, args }) => {
            let mut o = opts(&top);
            o.name = name.clone().or(o.name);
            plan::plan(&o, *undo, host_link, script, args)
        }
        Some(Command::Exec { topology, ns, cmd }) => exec::exec(&opts(&top), topology, ns, cmd),
        Some(Command::Trace { topology, ns, dst, probe, json, timeout }) => {
            let words: Vec<String> = [ns.clone(), dst.clone()].into_iter().chain(probe.iter().cloned()).collect();
            trace::trace(&opts(&top), topology, &words, *json, *timeout)
        }
        Some(Command::Completions { shell: sh }) => shell::completions(*sh),
        Some(Command::Man) => shell::man(),
        Some(Command::Stubs { output }) => stubs::stubs(output),
        Some(Command::Ls { json }) => inspect::ls(&opts(&top), *json),
        Some(Command::Show { name, json, dot, log }) => inspect::show(&opts(&top), name, *json, *dot, *log),
        Some(Command::Gc { yes }) => inspect::gc(&opts(&top), *yes),
        Some(Command::Run { opts: o, script, args }) => run::run(&opts(&top.and(o)), script, args),
        Some(Command::Repl { opts: o }) => run::repl(&opts(&top.and(o))),
        None => match &cli.script {
            Some(s) => run::run(&opts(&top), s, &cli.args),
            None => run::repl(&opts(&top)),
        },
    };
    ExitCode::from(cmd::exit_code(result))
}
