//! `netscript exec TOPOLOGY NS [CMD...]`: a command inside a namespace of a topology
//! that is up, including one in a `--sandbox --wait` sandbox (as root and as a normal
//! user); refusals for namespaces the topology does not own. `netscript trace` reaches
//! into a waiting sandbox the same way.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

const SCRIPT: &str = r#"local ns = netns.add("ns1")
local a, b = veth.add("v0", "v1", {peer_ns = ns})
a:addr("10.77.0.1/24"):up()
b:addr("10.77.0.2/24"):up()
"#;

/// Starts `--sandbox --wait` (as `user` when given) and waits until it says it is up.
/// A waiting sandbox, stopped (Ctrl-C: it rolls back) when dropped, also when an
/// assertion fails while it waits.
struct Waiting(Child);

impl Drop for Waiting {
    fn drop(&mut self) {
        // Not a process already waited for (its pid may be another's by now).
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = nix_kill(self.0.id());
        let _ = self.0.wait();
    }
}

fn waiting_sandbox(name: &str, user: Option<&str>) -> Waiting {
    let path = script_file(&format!("{name}.lua"), SCRIPT);
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={u}"), "--regid=nogroup", "--clear-groups", &public_bin()]);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = c
        .args(["--sandbox", "--wait", "--name", name, &path])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut all = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        all += &line;
        if line.contains(&format!("netscript exec {name} NS")) {
            // Keep reading: a closed pipe would fail the runner's next write.
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            return Waiting(child);
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the sandbox did not come up:\n{all}");
}

fn exec_as(user: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut a = vec!["exec"];
    a.extend_from_slice(args);
    run_as(user, &a)
}

fn run_as(user: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={u}"), "--regid=nogroup", "--clear-groups", &public_bin()]);
            c
        }
        None => Command::new(BIN),
    };
    c.args(args).output().unwrap()
}

fn nix_kill(pid: u32) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill").args(["-INT", &pid.to_string()]).status()
}

fn check_exec_into_sandbox(name: &str, user: Option<&str>) {
    let child = waiting_sandbox(name, user);
    // A second sandbox of that name (a REPL) is refused: it would take the pointer.
    let o = run_as(user, &["repl", "--sandbox", "--name", name]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("a sandbox named \"{name}\" is up already")), "{}", stderr(&o));
    // Inside ns1: its own veth end, not the host's.
    let o = exec_as(user, &[name, "ns1", "ip", "-j", "link"]);
    let links = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(links.contains("\"v1\"") && !links.contains("\"v0\""), "{links}");
    // The sandbox's own host namespace.
    let o = exec_as(user, &[name, "host", "ip", "-j", "link"]);
    assert!(stdout(&o).contains("\"v0\""), "{}{}", stdout(&o), stderr(&o));
    // The exit code is the command's.
    let o = exec_as(user, &[name, "ns1", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    // A namespace the topology did not create is refused, naming it.
    let o = exec_as(user, &[name, "ns9", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no namespace \"ns9\""), "{}", stderr(&o));
    // `netscript trace` reaches the waiting run (which holds its record) inside its
    // sandbox, and leaves no trace table behind there.
    let tables = "nft list tables; ip netns exec ns1 nft list tables";
    let before = stdout(&exec_as(user, &[name, "host", "sh", "-c", tables]));
    let o = run_as(user, &["trace", name, "ns1", "10.77.0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("delivered: delivered to the host namespace"), "{}", stdout(&o));
    let o = run_as(user, &["trace", name, "ns1", "10.77.0.1", "tcp", "9"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("nothing listens on port 9"), "{}", stdout(&o));
    assert_eq!(stdout(&exec_as(user, &[name, "host", "sh", "-c", tables])), before, "trace tables left behind");
    let o = run_as(user, &["trace", name, "ns9", "10.77.0.1"]);
    assert!(stderr(&o).contains("has no namespace \"ns9\""), "{}", stderr(&o));
    drop(child);
    // Gone with the sandbox.
    let o = exec_as(user, &[name, "ns1", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not up"), "{}", stderr(&o));
}

#[test]
fn exec_into_a_waiting_sandbox_as_root() {
    check_exec_into_sandbox(&format!("ex-root-{}", std::process::id()), None);
}

#[test]
fn exec_into_a_waiting_sandbox_as_a_normal_user() {
    check_exec_into_sandbox(&format!("ex-user-{}", std::process::id()), Some("nobody"));
}

/// `netscript repl --sandbox` announces its sandbox while it runs: from another
/// shell, `exec` reaches the namespaces made at its prompt, as it reaches a
/// `--sandbox --wait` run's; once the REPL is left, the topology is not up. Without
/// the announcement (`announce_sandbox` left out of `run::repl`) exec says the
/// topology is not up while the REPL runs (checked).
#[test]
fn exec_into_a_repl_sandbox() {
    use std::io::Write;
    let name = format!("ex-repl-{}", std::process::id());
    let mut child = Command::new(BIN)
        .args(["repl", "--sandbox", "--name", &name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut repl = Waiting(child);
    writeln!(input, r#"netns.add("ns1"):link("lo"):up()"#).unwrap();
    let mut last = None;
    wait_for(10, "exec into the REPL's sandbox", || {
        let o = exec_as(None, &[&name, "ns1", "ip", "-j", "link"]);
        let up = o.status.success();
        last = Some(o);
        up
    });
    let o = last.unwrap();
    assert!(stdout(&o).contains("\"lo\"") && stdout(&o).contains("\"UP\""), "{}{}", stdout(&o), stderr(&o));
    // Leaving the REPL (end of input) rolls the sandbox back and withdraws it.
    drop(input);
    assert!(repl.0.wait().unwrap().success());
    let o = exec_as(None, &[&name, "ns1", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not up"), "{}", stderr(&o));
}

#[test]
fn exec_into_a_topology_that_is_up() {
    let sb = Sandbox::new();
    let path = script_file("exec-up.lua", SCRIPT);
    let o = sb.netscript(&["--name", "up", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = sb.ok(&format!("{BIN} exec up ns1 ip -j link"));
    assert!(out.contains("\"v1\"") && !out.contains("\"v0\""), "{out}");
    // A command that is not there, or cannot run, exits as a shell says (not 1, which
    // reads as the command's own).
    let o = sb.sh(&format!("{BIN} exec up ns1 no-such-command-here"));
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot run no-such-command-here: not found"), "{}", stderr(&o));
    let plain = script_file("not-executable.sh", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = sb.sh(&format!("{BIN} exec up ns1 {plain}"));
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("cannot run {plain}: permission denied")), "{}", stderr(&o));
    let o = sb.sh(&format!("{BIN} exec up host cat /proc/self/status >/dev/null; {BIN} exec nothere ns1 true"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("\"nothere\" is not up"), "{}", stderr(&o));
    sb.ok(&format!("{BIN} down up"));
}

#[test]
fn printed_hints_are_shell_quoted() {
    let sb = Sandbox::new();
    let path = script_file("hint.lua", "netns.add(\"nsq\")\n");
    let o = sb.netscript(&["--name", "my topo", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Take it down with: netscript down 'my topo'"), "{}", stderr(&o));
    sb.ok(&format!("{BIN} down 'my topo'"));
}

/// A namespace of the topology deleted by hand and another made under its name is no
/// part of the topology: `exec` does not enter it and `trace` puts no trace table in
/// it (nor anywhere: it refuses before the probe), both exit 2 naming it; one deleted
/// and not replaced is said to be gone. Without the identity check both entered the
/// impostor (checked).
#[test]
fn exec_and_trace_refuse_a_namespace_that_took_the_name() {
    let sb = Sandbox::new();
    let path = script_file("impostor.lua", SCRIPT);
    let o = sb.netscript(&["--name", "imp", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    sb.ok("ip netns del ns1");
    let o = sb.sh(&format!("{BIN} exec imp ns1 true"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("namespace \"ns1\" of topology \"imp\" is gone"), "{}", stderr(&o));
    sb.ok("ip netns add ns1");
    let o = sb.sh(&format!("{BIN} exec imp ns1 touch /tmp/entered-{}", std::process::id()));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!std::path::Path::new(&format!("/tmp/entered-{}", std::process::id())).exists());
    let want =
        "namespace \"ns1\" is not the namespace topology \"imp\" created (another one took its name); left alone";
    assert!(stderr(&o).contains(want), "{}", stderr(&o));
    for from in ["ns1", "host"] {
        let o = sb.sh(&format!("{BIN} trace imp {from} 10.77.0.2"));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    }
    assert_eq!(sb.ok("ip netns exec ns1 nft list ruleset"), "", "the impostor got a trace table");
    assert_eq!(sb.ok("nft list tables | grep netscript_trace || true"), "");
    sb.ok(&format!("{BIN} down imp"));
    assert!(sb.ok("ip netns list").contains("ns1"), "down deleted the impostor");
}
