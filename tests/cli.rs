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
    // Options after the command word are that command's; the run options are refused for down.
    let o = netscript(&["down", "--sandbox", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
