//! `netscript completions SHELL` and `netscript man`: generated from the clap
//! definitions (src/cli.rs), so they always match `--help`. The completions also
//! complete topology names (the records in the state dir) for down, show, exec and trace.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell};
use crate::error::{Error, Result};

/// Topology names: the record directories in the state dir (readable by root).
const BASH_TOPOLOGIES: &str = r#"
_netscript_topologies() {
    local d="${NETSCRIPT_STATE_DIR:-/run/netscript}"
    [ -d "$d" ] && command ls -1 "$d" 2>/dev/null
}
_netscript_with_topologies() {
    local i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            down|show|exec|trace)
                if ((COMP_CWORD == i + 1)) && [[ ${COMP_WORDS[COMP_CWORD]} != -* ]]; then
                    COMPREPLY=($(compgen -W "$(_netscript_topologies)" -- "${COMP_WORDS[COMP_CWORD]}"))
                    return 0
                fi
                break ;;
            -*) ;;
            *) break ;;
        esac
    done
    _netscript "$@"
}
complete -F _netscript_with_topologies -o bashdefault -o default netscript
"#;

const FISH_TOPOLOGIES: &str = r#"
function __netscript_topologies
    set -l d /run/netscript
    set -q NETSCRIPT_STATE_DIR; and set d $NETSCRIPT_STATE_DIR
    command ls -1 $d 2>/dev/null
end
complete -c netscript -n '__fish_seen_subcommand_from down show exec trace; and test (count (commandline -opc)) -eq 2' -f -a '(__netscript_topologies)'
"#;

const ZSH_TOPOLOGIES: &str = r#"
_netscript_topologies() {
    local d="${NETSCRIPT_STATE_DIR:-/run/netscript}"
    local -a names
    names=(${(f)"$(command ls -1 "$d" 2>/dev/null)"})
    _describe 'topology' names
}
"#;

pub fn completions(shell: CompletionShell) -> Result<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let shell_kind = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(shell_kind, &mut cmd, "netscript", &mut out);
    let mut text = String::from_utf8(out).map_err(|e| Error::sys(format!("completion script: {e}"), None))?;
    match shell {
        CompletionShell::Bash => text += BASH_TOPOLOGIES,
        CompletionShell::Fish => text += FISH_TOPOLOGIES,
        CompletionShell::Zsh => {
            // The topology argument of down / show / exec / trace completes record names.
            text = text.replace("(see `netscript ls`):_default", "(see `netscript ls`):_netscript_topologies");
            text = text.replacen("\n_netscript() {", &format!("{ZSH_TOPOLOGIES}\n_netscript() {{"), 1);
        }
    }
    print_out(&text)
}

/// One page for the whole tool: the main page, then a section per command with its
/// synopsis, description and options (clap_mangen would point at a page per command,
/// `netscript-exec(1)`, which nothing installs).
pub fn man() -> Result<u8> {
    let fail = |e: std::io::Error| Error::sys(format!("cannot render the manual page: {e}"), None);
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out).map_err(fail)?;
    let mut page = String::from_utf8_lossy(&out).into_owned();
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        page = page.replace(&format!("netscript\\-{name}(1)"), &format!("netscript {name}"));
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = sub.get_name();
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part).map_err(fail)?;
        man.render_description_section(&mut part).map_err(fail)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut part).map_err(fail)?;
        }
        let part = String::from_utf8_lossy(&part)
            .replace(".SH SYNOPSIS", &format!(".SH \"NETSCRIPT {}\"", name.to_uppercase()))
            .replace(".SH DESCRIPTION\n", ".PP\n")
            .replace(".SH OPTIONS", ".SS Options");
        page.push_str(&part);
    }
    print_out(&page)
}

fn print_out(text: &str) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).map_err(|e| Error::sys(format!("cannot write: {e}"), None))?;
    Ok(0)
}
