//! Command-line parsing and dispatch; each command lives in src/cmd.

use std::process::ExitCode;

use clap::Parser;

use netscript::cli::{Cli, Command};
use netscript::cmd::{self, EXIT_USAGE, down, inspect, plan, run, stubs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Some(
            Command::Ls { .. }
                | Command::Show { .. }
                | Command::Gc { .. }
                | Command::Plan { .. }
                | Command::Stubs { .. }
        )
    ) {
        // Output meant for pipes (`netscript show x | head`): a closed pipe ends the
        // process quietly instead of a panic. Not for runs: a rollback must finish.
        // SAFETY: single-threaded here; resetting a signal disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let opts = cli.run.clone();
    let result = match cli.command {
        Some(Command::Down { .. } | Command::Ls { .. } | Command::Show { .. } | Command::Gc { .. })
            if opts.sandbox || opts.wait || opts.ephemeral || opts.name.is_some() =>
        {
            eprintln!(
                "netscript: --sandbox, --wait, --ephemeral and --name apply to running a script or the REPL, not to down / ls / show / gc"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        Some(Command::Down { name }) => down::down(&opts, &name),
        Some(Command::Plan { undo, script, args }) => plan::plan(&opts, undo, &script, &args),
        Some(Command::Ls { json }) => inspect::ls(&opts, json),
        Some(Command::Show { name, json, dot }) => inspect::show(&opts, &name, json, dot),
        Some(Command::Gc { yes }) => inspect::gc(&opts, yes),
        Some(Command::Stubs { output }) => stubs::stubs(&output),
        Some(Command::Run { script, args }) => run::run(&opts, &script, &args),
        Some(Command::Repl) => run::repl(&opts),
        None => match cli.script {
            Some(s) => run::run(&opts, &s, &cli.args),
            None => run::repl(&opts),
        },
    };
    ExitCode::from(cmd::exit_code(result))
}
