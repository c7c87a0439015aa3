//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::firewall;

const AFTER_HELP: &str = "\
Examples:
  netscript --sandbox examples/docker-bridge.lua   the article's Docker bridge network, in a throwaway sandbox
  netscript plan examples/docker-short.lua         read what a script would do, as ip/iptables commands
  sudo netscript topo.lua                          build it for real; it stays up
  sudo netscript ls                                what is up, and what changed behind netscript's back
  sudo netscript exec topo ns1                     a shell inside namespace ns1 of topology topo
  sudo netscript down topo                         take it down again, exactly
  netscript repl --sandbox                         try the API at a Lua prompt, with .undo
  netscript stubs                                  write netscript.lua, API annotations for editors (LuaLS)

A script that fails (error(), a failed assert, a refused change) or is interrupted
(Ctrl-C, SIGTERM, SIGHUP) is rolled back: everything the run changed is undone, newest first.

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
    pub common: CommonOpts,

    #[command(flatten)]
    pub script_opts: ScriptOpts,

    /// The Lua script to run.
    pub script: Option<PathBuf>,

    /// Arguments for the script (its `arg` table and `...`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The shells `netscript completions` writes for.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Options every command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct CommonOpts {
    /// Where topologies are recorded [default: /run/netscript, or $NETSCRIPT_STATE_DIR]; a
    /// run in a sandbox records in its own /run, whatever these say.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Firewall back end: auto (the system's `iptables`, unless only
    /// iptables-legacy holds rules, as Kubernetes' iptables-wrapper decides), nft
    /// (iptables-nft) or legacy (iptables-legacy).
    #[arg(long, global = true, value_enum, value_name = "auto|nft|legacy", default_value_t = Iptables::Auto)]
    pub iptables: Iptables,

    /// Print each change as it is made, as the equivalent shell command.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// Options of the commands that run a script or the REPL.
#[derive(Args, Debug, Clone, Default)]
pub struct ScriptOpts {
    /// Run inside fresh network, mount, UTS and IPC namespaces (plus a user namespace
    /// when not root) with a private /run: nothing touches the host, everything
    /// vanishes at exit. Works without root.
    #[arg(long)]
    pub sandbox: bool,

    /// With --sandbox: after the script, keep the sandbox alive until Ctrl-C (enter it
    /// with `netscript exec NAME NS` from another shell), then roll back.
    #[arg(long)]
    pub wait: bool,

    /// Roll back even when the script succeeds (for experiments).
    #[arg(long)]
    pub ephemeral: bool,

    /// The topology's name (default: the script's file stem). It names the record
    /// used by `netscript down` and the ownership mark on what the run creates.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Run the script (or the REPL) restricted as `plan` runs it: only netscript's
    /// API and pure Lua. No os.execute, io.popen, os.remove, os.rename, os.tmpname,
    /// io.tmpfile, no file opened for writing, no C modules or binary chunks, no
    /// debug library; reading files and `require` of Lua modules stay. A refused
    /// call is an error naming it (and the run is rolled back).
    #[arg(long)]
    pub safe: bool,

    /// When the topology is already up, take it down first (as `netscript down NAME`),
    /// then run the script again, in one command.
    #[arg(long)]
    pub replace: bool,
}

impl ScriptOpts {
    /// Options given before the command word and after it, together.
    pub fn and(&self, other: &ScriptOpts) -> ScriptOpts {
        ScriptOpts {
            sandbox: self.sandbox || other.sandbox,
            wait: self.wait || other.wait,
            ephemeral: self.ephemeral || other.ephemeral,
            name: other.name.clone().or_else(|| self.name.clone()),
            safe: self.safe || other.safe,
            replace: self.replace || other.replace,
        }
    }

    /// Whether any of these options was given.
    pub fn any(&self) -> bool {
        self.sandbox || self.wait || self.ephemeral || self.safe || self.replace || self.name.is_some()
    }
}

/// Everything a command is run with: the common options and the script options.
#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    pub sandbox: bool,
    pub wait: bool,
    pub ephemeral: bool,
    pub name: Option<String>,
    pub safe: bool,
    pub replace: bool,
    pub state_dir: Option<PathBuf>,
    pub iptables: Iptables,
    pub verbose: bool,
}

impl RunOpts {
    pub fn new(common: &CommonOpts, script: &ScriptOpts) -> RunOpts {
        RunOpts {
            sandbox: script.sandbox,
            wait: script.wait,
            ephemeral: script.ephemeral,
            name: script.name.clone(),
            safe: script.safe,
            replace: script.replace,
            state_dir: common.state_dir.clone(),
            iptables: common.iptables,
            verbose: common.verbose,
        }
    }
}

/// `--iptables`: which firewall driver (see `firewall::driver`).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Iptables {
    #[default]
    Auto,
    Nft,
    Legacy,
}

impl From<Iptables> for firewall::Choice {
    fn from(i: Iptables) -> Self {
        match i {
            Iptables::Auto => firewall::Choice::Auto,
            Iptables::Nft => firewall::Choice::Nft,
            Iptables::Legacy => firewall::Choice::Legacy,
        }
    }
}

/// The subcommand closest to a mistyped word (`shwo` -> `show`), if one is close.
pub fn similar_command(word: &str) -> Option<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    cmd.get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != "help")
        .map(|n| (edit_distance(word, &n), n))
        .filter(|(d, n)| *d <= 2 && *d < n.len().max(word.len()))
        .min()
        .map(|(_, n)| n)
}

/// Levenshtein distance, with a transposition counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a script (the same as `netscript SCRIPT`).
    Run {
        #[command(flatten)]
        opts: ScriptOpts,
        /// The Lua script to run.
        script: PathBuf,
        /// Arguments for the script (its `arg` table and `...`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print what a script would do, as a runnable bash script, without root and
    /// without changing anything (the script runs against a model of the system).
    Plan {
        /// Print the teardown instead: the commands that undo the run, newest first.
        #[arg(long)]
        undo: bool,
        /// The topology's name (default: the script's file stem).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// A link the real host has, for scripts that use one (`link.get("eth0")`):
        /// the model's host namespace starts with only `lo`. It is up, with the
        /// addresses given (comma-separated) and their connected routes. Repeatable.
        #[arg(long = "host-link", value_name = "NAME[=ADDR/PREFIX,...]")]
        host_link: Vec<String>,
        /// The Lua script to plan (see docs/plan.md).
        script: PathBuf,
        /// Arguments for the script (its `arg` table and `...`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// An interactive Lua prompt with the whole API, over a session recorded as
    /// `repl-<pid>` (or --name), with .undo, .journal, .save (see docs/repl.md).
    /// `netscript` with no script does the same. With --sandbox, `netscript exec
    /// NAME NS` and `netscript trace` reach the sandbox from another shell while the
    /// REPL runs.
    #[command(mut_arg("replace", |a| a.hide(true)), mut_arg("wait", |a| a.hide(true)))]
    Repl {
        #[command(flatten)]
        opts: ScriptOpts,
    },
    /// Undo exactly what a recorded topology did, newest first, and forget it.
    /// Taking down a topology that is not up is not an error.
    #[command(
        after_help = "Examples:\n  netscript down docker-bridge\n  netscript down -v docker-bridge   and print each undo as its shell command\n\nExit status 3 when an undo failed: each is listed and stays recorded; run `down` again\nonce its cause is gone. A namespace that a process is still in (a shell left there by\n`netscript exec`) lives on after its deletion until that process ends: `down` names it.\nWhat someone else put in the place of an object of ours (a link, namespace, route or\naddress by our name without our mark, a process that runs this `down`) is left alone and\nsaid so; that is not a failure. What another topology that is up shares in the host\nnamespace (ip_forward, a chain's policy, user chains its rules are in, and the rules that\njump to those chains) is handed over to it, said so, and restored by the last one down;\none that is being built at that moment is waited for (at most 10 s; a REPL is not).\n\nWithout root (CAP_NET_ADMIN and CAP_SYS_ADMIN) it refuses before it starts (exit 2)."
    )]
    Down {
        /// The topology's name (see `netscript ls`).
        #[arg(id = "topology", value_name = "NAME")]
        name: String,
    },
    /// Run a command inside a namespace of a topology that is up (also one running in
    /// a `--sandbox --wait` sandbox or a `repl --sandbox`): by default your shell, on
    /// this terminal.
    #[command(
        after_help = "Examples:\n  netscript exec docker-bridge ns1                 a shell in ns1\n  netscript exec docker-bridge ns1 ip -br addr     one command\n  netscript exec docker-bridge host iptables-save  the topology's host (a sandbox's own)\n\nA namespace that another one replaced under its name (after a hand-made `ip netns del`)\nis not entered, nor one that is gone: both exit 2 and say so, as `netscript ls` shows them.\nThe exit code is the command's own; 127 when it is not found, 126 when it cannot run."
    )]
    Exec {
        /// The topology's name (see `netscript ls`).
        #[arg(id = "topology", value_name = "TOPOLOGY")]
        topology: String,
        /// A namespace the topology created, or `host`.
        #[arg(value_name = "NS")]
        ns: String,
        /// The command and its arguments [default: $SHELL, else /bin/sh].
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Send one probe from a namespace of a topology that is up (also one running in a
    /// `--sandbox --wait` sandbox or a `repl --sandbox`) and show why it got where it got: the kernel's walk
    /// hop by hop, the rule or routing decision that decided, and the answer's way
    /// back. Changes nothing but the probe's temporary trace tables, removed before it
    /// returns. Exit code 0 when the probe got its answer, 1 when not.
    #[command(
        after_help = "Examples:\n  netscript trace docker-bridge ns1 175.18.0.3             an ICMP echo\n  netscript trace docker-bridge laptop 10.211.55.32 tcp 8088  a TCP connect\n  netscript trace docker-bridge host 127.0.0.1 tcp 8088 --json\n\nExit code 2, and no probe, when a namespace of the topology was replaced by another under\nits name (after a hand-made `ip netns del`): the trace tables would go into it."
    )]
    Trace {
        /// The topology's name (see `netscript ls`).
        #[arg(id = "topology", value_name = "TOPOLOGY")]
        topology: String,
        /// A namespace the topology created, or `host`: where the probe leaves from.
        #[arg(value_name = "NS")]
        ns: String,
        /// The destination address (IPv4).
        #[arg(value_name = "DST")]
        dst: String,
        /// `tcp PORT` (a TCP connect) or `udp PORT` (a datagram) [default: an ICMP echo].
        #[arg(value_name = "tcp|udp PORT", num_args = 0..=2)]
        probe: Vec<String>,
        /// Print the trace as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
    },
    /// Print a shell completion script (it also completes topology names for down,
    /// show, exec and trace). Install with, e.g., `netscript completions bash >
    /// /etc/bash_completion.d/netscript` or `netscript completions fish >
    /// ~/.config/fish/completions/netscript.fish`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the manual page (roff), e.g. `netscript man | man -l -`.
    Man,
    /// List recorded topologies: name, script, when, how many changes, and their
    /// status: up, drift(N) (what is missing or changed since, listed below), running
    /// (being changed now), or a record that is damaged: incomplete (no meta line:
    /// script and start time unknown), empty, unreadable. Without root the records
    /// are listed as they are, not compared with the kernel (and it says so).
    Ls {
        /// Print JSON instead of a table (drift as objects).
        #[arg(short, long)]
        json: bool,
    },
    /// Show what a topology owns now, by namespace: links (with their state now),
    /// addresses, routes, sysctls, firewall policies and rules, processes; and what
    /// changed behind its back (drift). --log: the history of changes instead, from
    /// the record alone (the rest needs root: it reads every namespace).
    Show {
        /// The topology's name (see `netscript ls`).
        #[arg(id = "topology", value_name = "NAME")]
        name: String,
        /// Print JSON (namespaces are "host" or their name everywhere; drift as objects).
        #[arg(short, long, conflicts_with = "dot")]
        json: bool,
        /// Print a Graphviz graph: namespaces, links with state and addresses, veth
        /// pairs, bridge ports, routes, NAT and published ports, processes, a legend.
        #[arg(long)]
        dot: bool,
        /// Print the history instead: every change in effect, in the order it was
        /// made, as the command that made it.
        #[arg(long, conflicts_with = "dot")]
        log: bool,
    },
    /// Write LuaLS annotations for the Lua API (netscript.lua: `---@meta`, classes,
    /// parameter and return types), so editors with lua-language-server complete and
    /// check scripts. Put the file in the workspace or in `workspace.library`.
    Stubs {
        /// Where to write them (`-`: standard output).
        #[arg(short, long, value_name = "FILE", default_value = "netscript.lua")]
        output: PathBuf,
    },
    /// Find objects carrying netscript's mark (link alias, a namespace's lo alias, rule
    /// comment, route and address protocol 78, root qdisc handle 4e53: or 4e54:,
    /// NETSCRIPT_OWNER in a process's environment) that no recorded topology accounts
    /// for; remove them with --yes. Unmarked objects are never touched. Needs root (it
    /// reads every namespace and the firewall): without it, refused (exit 2).
    Gc {
        /// Remove what was found (default: only list it).
        #[arg(long)]
        yes: bool,
    },
}
