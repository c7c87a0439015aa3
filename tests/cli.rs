//! The command line as a new user meets it: help per subcommand, mistyped commands,
//! refusals before anything runs (exit 2, "nothing was changed"). None of these
//! changes anything, so they need no sandbox.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_netscript");

fn netscript(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("NETSCRIPT_STATE_DIR", "/nonexistent/netscript-cli-test").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_mistyped_command_gets_a_suggestion() {
    let o = netscript(&["shwo", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("did you mean `netscript show`?"), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
    let o = netscript(&["dwon", "x"]);
    assert!(stderr(&o).contains("did you mean `netscript down`?"), "{}", stderr(&o));
    // A name far from every command is just a missing script.
    let o = netscript(&["topology-that-is-not-there.lua"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such script: topology-that-is-not-there.lua"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("did you mean"), "{}", stderr(&o));
}

#[test]
fn a_directory_is_not_a_script() {
    let o = netscript(&["examples"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("examples is a directory, not a script; nothing was changed"), "{}", stderr(&o));
}

#[test]
fn wait_needs_sandbox() {
    for args in [&["--wait", "examples/docker-short.lua"][..], &["run", "--wait", "examples/docker-short.lua"]] {
        let o = netscript(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--wait needs --sandbox"), "{args:?}: {}", stderr(&o));
    }
}

/// The REPL's sandbox is up while it runs (exec reaches it): `--wait` is for
/// scripts, and the REPL refuses it rather than ignore it.
#[test]
fn the_repl_refuses_wait() {
    let o = netscript(&["repl", "--sandbox", "--wait"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--wait applies to running a script"), "{}", stderr(&o));
    let help = String::from_utf8_lossy(&netscript(&["repl", "--help"]).stdout).into_owned();
    assert!(!help.contains("--wait"), "repl --help lists --wait:\n{help}");
}

#[test]
fn subcommand_help_lists_only_its_own_options() {
    for sub in ["down", "ls", "show", "gc"] {
        let o = netscript(&[sub, "--help"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{sub} --help");
        for opt in ["--sandbox", "--wait", "--ephemeral", "--name"] {
            assert!(!out.contains(opt), "`netscript {sub} --help` lists {opt}:\n{out}");
        }
        assert!(out.contains("--state-dir"), "{sub} --help lacks --state-dir:\n{out}");
    }
    let run = String::from_utf8_lossy(&netscript(&["run", "--help"]).stdout).into_owned();
    for opt in ["--sandbox", "--wait", "--ephemeral", "--name", "--state-dir"] {
        assert!(run.contains(opt), "`netscript run --help` lacks {opt}:\n{run}");
    }
    // The REPL does not list --replace (it means nothing there) and refuses it, saying why.
    let repl = String::from_utf8_lossy(&netscript(&["repl", "--help"]).stdout).into_owned();
    assert!(repl.contains("--sandbox") && !repl.contains("--replace"), "{repl}");
    assert!(run.contains("--replace"), "{run}");
    let o = netscript(&["repl", "--replace"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--replace applies to running a script, not to the REPL"), "{}", stderr(&o));
    // Options after the command word are that command's; the run options are refused for down.
    let o = netscript(&["down", "--sandbox", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn bash_completion_completes_commands_and_topology_names() {
    let o = netscript(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = std::env::temp_dir().join(format!("netscript-compl-{}", std::process::id()));
    let state = dir.join("state");
    for t in ["lab-a", "lab-b"] {
        std::fs::create_dir_all(state.join(t)).unwrap();
    }
    let script = dir.join("netscript.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let complete = |words: &str, cword: usize| {
        let o = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
                 _netscript_with_topologies netscript \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .env("NETSCRIPT_STATE_DIR", &state)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(complete("netscript down lab", 2), "lab-a lab-b");
    assert_eq!(complete("netscript show lab-b", 2), "lab-b");
    assert_eq!(complete("netscript exec l", 2), "lab-a lab-b");
    assert_eq!(complete("netscript trace lab-", 2), "lab-a lab-b");
    assert_eq!(complete("netscript sh", 1), "show");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zsh_and_fish_completions_and_the_man_page() {
    let zsh = String::from_utf8(netscript(&["completions", "zsh"]).stdout).unwrap();
    assert!(zsh.starts_with("#compdef netscript"), "{zsh}");
    assert_eq!(zsh.matches("(see `netscript ls`):_netscript_topologies").count(), 4, "down, show, exec, trace:\n{zsh}");
    let fish = String::from_utf8(netscript(&["completions", "fish"]).stdout).unwrap();
    assert!(
        fish.contains("__fish_seen_subcommand_from down show exec trace") && fish.contains("-a \"exec\""),
        "{fish}"
    );
    let o = netscript(&["completions", "powershell"]);
    assert_eq!(o.status.code(), Some(2));
    let man = String::from_utf8(netscript(&["man"]).stdout).unwrap();
    assert!(man.contains(".TH netscript 1"), "{man}");
    // One page: each command has its section with its options (not a pointer to a
    // page netscript-exec(1) that nothing installs).
    assert!(!man.contains("(1)\n"), "points at other pages:\n{man}");
    for sub in ["down", "exec", "plan", "completions", "ls", "show", "trace"] {
        assert!(man.contains(&format!(".SH \"NETSCRIPT {}\"", sub.to_uppercase())), "man lacks {sub}:\n{man}");
    }
    for opt in ["\\fB\\-\\-dot\\fR", "\\fB\\-\\-timeout\\fR", "\\fB\\-\\-host\\-link\\fR", "\\fB\\-\\-yes\\fR"] {
        assert!(man.contains(opt), "man lacks {opt}:\n{man}");
    }
}

/// examples/lan.lua is a module: run as a script it defines functions, changes
/// nothing and returns its table. Said so, with the `require` that loads it; not said
/// of a script that changed something, or returned anything but a table.
#[test]
fn a_module_run_as_a_script_says_how_it_is_loaded() {
    let hint = "examples/lan.lua made no changes and returned a table, as a Lua module does; a module is loaded by a \
                script next to it, with: local lan = require(\"lan\")";
    let o = netscript(&["plan", "examples/lan.lua"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(hint), "{}", stderr(&o));
    // A real run (in a sandbox: nothing on this machine changes).
    let o = Command::new(BIN).args(["--sandbox", "examples/lan.lua"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(hint), "{}", stderr(&o));

    let dir = std::env::temp_dir().join(format!("netscript-cli-module-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("changes.lua", "netns.add('x') return {}", false),
        ("number.lua", "return 1", false),
        ("nothing.lua", "local x = 1", false),
        ("my-mod.lua", "return { f = function() end }", true),
    ];
    for (name, src, said) in cases {
        let path = dir.join(name);
        std::fs::write(&path, src).unwrap();
        let o = netscript(&["plan", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        assert_eq!(stderr(&o).contains("returned a table"), said, "{name}: {}", stderr(&o));
        if said {
            // Not a Lua name: the variable is `m`; the module's name is quoted as Lua.
            assert!(stderr(&o).contains("with: local m = require(\"my-mod\")"), "{name}: {}", stderr(&o));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
