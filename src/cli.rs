//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples:
  netscript --sandbox examples/docker-bridge.lua   the article's Docker bridge network, in a throwaway sandbox
  netscript plan examples/docker-short.lua         read what a script would do, as ip/iptables commands
  sudo netscript topo.lua                          build it for real; it stays up
  sudo netscript ls                                what is up, and what changed behind netscript's back
  sudo netscript down topo                         take it down again, exactly
  netscript repl --sandbox                         try the API at a Lua prompt, with .undo
  netscript stubs                                  write netscript.lua, API annotations for editors (LuaLS)

A script that fails (error(), a failed assert, a refused change) or is interrupted
(Ctrl-C, SIGTERM) is rolled back: everything the run changed is undone, newest first.

Exit codes: 0 ok; 1 the script failed and was rolled back; 2 usage error, or refused
before anything ran; 3 rollback incomplete (what could not be undone is listed).

Docs: docs/tutorial.md, docs/api.md (the Lua API), docs/design.md.";

#[derive(Parser, Debug)]
#[command(
    name = "netscript",
    version,
    about = "Build Linux network topologies (namespaces, veth, bridges, routes, sysctl, iptables) from Lua scripts, with undo",
    after_help = AFTER_HELP,
    override_usage = "netscript [OPTIONS] SCRIPT [ARGS]...\n       netscript [OPTIONS] <COMMAND>",
    subcommand_precedence_over_arg = false,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(flatten)]
    pub run: RunOpts,

    /// The Lua script to run.
    pub script: Option<PathBuf>,

    /// Arguments for the script (its `arg` table and `...`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunOpts {
    /// Run inside fresh network and mount namespaces (plus a user namespace when
    /// not root) with a private /run: nothing touches the host, everything vanishes
    /// at exit. Works without root.
    #[arg(long, global = true)]
    pub sandbox: bool,

    /// With --sandbox: after the script, keep the sandbox alive until Ctrl-C (prints
    /// how to enter it from another shell), then roll back.
    #[arg(long, global = true, requires = "sandbox")]
    pub wait: bool,

    /// Roll back even when the script succeeds (for experiments).
    #[arg(long, global = true)]
    pub ephemeral: bool,

    /// The topology's name (default: the script's file stem). It names the record
    /// used by `netscript down` and the ownership mark on what the run creates.
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,

    /// Where topologies are recorded [default: /run/netscript, or $NETSCRIPT_STATE_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Firewall back end: auto (the system's `iptables`, unless only
    /// iptables-legacy holds rules, as Kubernetes' iptables-wrapper decides), nft
    /// (iptables-nft) or legacy (iptables-legacy).
    #[arg(long, global = true, value_name = "auto|nft|legacy", default_value = "auto")]
    pub iptables: String,

    /// Print each change as it is made, as the equivalent shell command.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a script (the same as `netscript SCRIPT`).
    Run {
        script: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print what a script would do, as a runnable bash script, without root and
    /// without changing anything (the script runs against a model of the system).
    Plan {
        /// Print the teardown instead: the commands that undo the run, newest first.
        #[arg(long)]
        undo: bool,
        /// The Lua script to plan (see docs/plan.md).
        script: PathBuf,
        /// Arguments for the script (its `arg` table and `...`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// An interactive Lua prompt with the whole API, over a session recorded as
    /// `repl-<pid>` (or --name), with .undo, .journal, .save (see docs/repl.md).
    /// `netscript` with no script does the same.
    Repl,
    /// Undo exactly what a recorded topology did, newest first, and forget it.
    /// Taking down a topology that is not up is not an error.
    Down {
        /// The topology's name (see `netscript ls`).
        #[arg(id = "topology", value_name = "NAME")]
        name: String,
    },
    /// List recorded topologies: name, script, when, how many changes, and whether
    /// anything is missing or changed since.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show what a topology owns, grouped by namespace, as the commands that made it.
    Show {
        /// The topology's name (see `netscript ls`).
        #[arg(id = "topology", value_name = "NAME")]
        name: String,
        /// Print JSON.
        #[arg(long, conflicts_with = "dot")]
        json: bool,
        /// Print a Graphviz graph (namespaces as clusters, links, veth pairs, bridges).
        #[arg(long)]
        dot: bool,
    },
    /// Write LuaLS annotations for the Lua API (netscript.lua: `---@meta`, classes,
    /// parameter and return types), so editors with lua-language-server complete and
    /// check scripts. Put the file in the workspace or in `workspace.library`.
    Stubs {
        /// Where to write them (`-`: standard output).
        #[arg(short, long, value_name = "FILE", default_value = "netscript.lua")]
        output: PathBuf,
    },
    /// Find objects carrying netscript's mark (link alias, rule comment, route
    /// protocol 78, NETSCRIPT_OWNER in a process's environment) that no recorded
    /// topology accounts for; remove them with --yes. Unmarked objects are never touched.
    Gc {
        /// Remove what was found (default: only list it).
        #[arg(long)]
        yes: bool,
    },
}
