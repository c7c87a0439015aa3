//! The REPL, driven through a pseudo-terminal as a person would use it: the real
//! binary, line editing, completion, Ctrl-C / Ctrl-D. Everything runs in `repl
//! --sandbox` or inside the harness's `Sandbox`: the host's network is never touched.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{BIN, Marks, Sandbox, script_file};
use rexpect::reader::Options;
use rexpect::session::{PtySession, spawn_with_options};

const PROMPT: &str = "netscript> ";
const MORE: &str = "..> ";

/// A private HOME (and XDG_STATE_HOME) so the history file goes there.
fn home(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netscript-repl-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(mut cmd: Command, home: &PathBuf) -> PtySession {
    cmd.env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("TERM", "xterm")
        .env_remove("NETSCRIPT_STATE_DIR");
    let mut p = spawn_with_options(cmd, Options::new().timeout_ms(Some(20_000)).strip_ansi_escape_codes(false))
        .expect("the REPL starts in a pty");
    p.exp_string(PROMPT).expect("the first prompt");
    p
}

/// Sends one line and returns what was printed before the next prompt (`prompt`).
fn send(p: &mut PtySession, line: &str, prompt: &str) -> String {
    p.send_line(line).unwrap();
    let out = p.exp_string(prompt).unwrap_or_else(|e| panic!("after `{line}`: no prompt `{prompt}`: {e}"));
    // Drop the echo of the input itself.
    plain(&out).replacen(line, "", 1)
}

/// Terminal output without its escape sequences (rexpect's own stripping does not
/// know rustyline's `ESC [ ? 2026 h`).
fn plain(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => {
                if it.peek() == Some(&'[') {
                    it.next();
                    for x in it.by_ref() {
                        if x.is_ascii_alphabetic() || x == '~' {
                            break;
                        }
                    }
                } else {
                    it.next();
                }
            }
            '\x07' | '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Types without Enter.
fn typ(p: &mut PtySession, s: &str) {
    p.send(s).unwrap();
    p.flush().unwrap();
}

fn say(p: &mut PtySession, line: &str) -> String {
    send(p, line, PROMPT)
}

#[test]
fn expressions_multiline_completion_errors_undo() {
    let h = home("basics");
    let mut cmd = Command::new(BIN);
    cmd.args(["repl", "--sandbox"]);
    let mut p = start(cmd, &h);

    // Expressions print their value; tables print readably.
    assert!(say(&mut p, "1+1").contains("2"));
    let t = say(&mut p, "{1, 2, name = \"x\"}");
    assert!(t.contains("{1, 2, name = \"x\"}"), "{t}");

    // A multi-line function definition continues with a continuation prompt.
    send(&mut p, "function sq(x)", MORE);
    send(&mut p, "  return x * x", MORE);
    say(&mut p, "end");
    assert!(say(&mut p, "sq(12)").contains("144"));

    // Tab completion: a module field, then the whole module listed.
    typ(&mut p, "fw.ap");
    typ(&mut p, "\t");
    p.exp_string("fw.append(").expect("fw.ap<Tab> completes to fw.append(");
    let out = say(&mut p, "\"filter\", \"INPUT\", \"-s 10.9.9.9 -j DROP\")");
    assert!(!out.contains("error"), "{out}");
    typ(&mut p, "netn");
    typ(&mut p, "\t");
    p.exp_string("netns.").unwrap();
    typ(&mut p, "ad\t");
    p.exp_string("netns.add(").unwrap();
    let out = say(&mut p, "\"ns1\")");
    assert!(out.contains("Netns(\"ns1\") [links: lo (down)]"), "{out}");
    typ(&mut p, "fw.\t\t");
    p.exp_regex("append +batch +chain +delete +insert +policy +rules").expect("fw.<Tab><Tab> lists the module");
    p.exp_string(PROMPT).unwrap(); // the line, redrawn under the list
    p.send_control('u').unwrap();
    say(&mut p, "");

    // Build a little: a namespace and a veth pair with its peer inside.
    say(&mut p, "a, b = veth.add(\"v0\", \"v1\", {peer_ns = \"ns1\"})");
    say(&mut p, "b:addr(\"10.0.0.2/24\"):up()");
    let j = say(&mut p, ".journal");
    for want in [
        "ip netns add ns1",
        "ip link add v0 numtxqueues 1 numrxqueues 1 type veth peer name v1 numtxqueues 1 numrxqueues 1 netns ns1",
        "ip -n ns1 addr add 10.0.0.2/24 dev v1",
        "ip -n ns1 link set v1 up",
    ] {
        assert!(j.contains(want), "`.journal` lacks `{want}`:\n{j}");
    }
    // A Link prints a one-line summary.
    let l = say(&mut p, "b");
    assert!(l.contains("Link(\"v1\" in ns1) [up, veth, 10.0.0.2/24"), "{l}");
    // Methods complete after `:` on a handle.
    typ(&mut p, "b:mt\t");
    p.exp_string("b:mtu(").expect("b:mt<Tab> completes to b:mtu(");
    assert!(say(&mut p, "1400):info().mtu").contains("1400"));
    say(&mut p, ".undo");

    // An error undoes only that input's changes; earlier ones stay.
    let e = say(&mut p, "bridge.add(\"br9\"); link.get(\"nope\", {ns = \"ns1\"})");
    assert!(e.contains("link.get(\"nope\")") && e.contains("no link named \"nope\" in namespace \"ns1\""), "{e}");
    assert!(e.contains("ip link del br9"), "the failed input's bridge is undone: {e}");
    let j = say(&mut p, ".journal");
    assert!(!j.contains("br9") && j.contains("ip -n ns1 link set v1 up"), "{j}");
    let sh = say(&mut p, "!ns1 ip -br addr show dev v1");
    assert!(sh.contains("10.0.0.2/24"), "{sh}");

    // .undo 1 removes the newest change only.
    // Each `undone:` line is the command that ran to undo (issue 15), not the change.
    let u = say(&mut p, ".undo 1");
    assert!(u.contains("undone: ip -n ns1 link set v1 down"), "{u}");
    assert!(say(&mut p, "b:info().up").contains("false"));
    let u = say(&mut p, ".undo 2");
    assert!(u.contains("undone: ip link del v0"), "{u}");
    let e = say(&mut p, "link.get(\"v1\", {ns = \"ns1\"})");
    assert!(e.contains("no link named \"v1\""), "{e}");
    let sh = say(&mut p, "!ns1 ip link show v1");
    assert!(sh.contains("exit code 1"), "{sh}");
    let sh = say(&mut p, "!nosuch true");
    assert!(sh.contains("no namespace named \"nosuch\"") && sh.contains("ns1"), "{sh}");

    // Ctrl-C stops a running input (and undoes it); the REPL goes on.
    p.send_line("bridge.add(\"br8\"); print(\"spinning\"); while true do end").unwrap();
    p.exp_string("spinning\r\n").unwrap();
    p.send_control('c').unwrap();
    let out = plain(&p.exp_string(PROMPT).unwrap());
    assert!(out.contains("interrupted") && out.contains("ip link del br8"), "{out}");
    assert!(say(&mut p, "2*21").contains("42"));
    // Ctrl-C at the prompt cancels the input being typed.
    typ(&mut p, "this is not lua");
    p.send_control('c').unwrap();
    p.exp_string(PROMPT).unwrap();
    assert!(!say(&mut p, "3*3").contains("error"));

    // .rollback undoes everything.
    let r = say(&mut p, ".rollback");
    assert!(r.contains("undone: ip netns del ns1"), "{r}");
    assert!(say(&mut p, ".journal").contains("(no changes in place)"));

    // Ctrl-D leaves; the sandbox is rolled back.
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();

    // The history went to $XDG_STATE_HOME/netscript/history.
    let hist = std::fs::read_to_string(h.join("state/netscript/history")).unwrap();
    assert!(hist.contains("sq(12)") && hist.contains(".undo 1"), "{hist}");
}

#[test]
fn save_then_run_rebuilds_the_same_state() {
    let h = home("save");
    let a = Sandbox::new();
    let saved = h.join("rebuild.lua");
    // The REPL runs inside the test's sandbox (not --sandbox), so its changes stay
    // after it exits; --name matches the saved script's stem so the ownership
    // marks of the two builds are the same.
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &a.pid.to_string(), "-n", "-m", "--", BIN, "repl", "--name", "rebuild"]);
    let mut p = start(cmd, &h);
    let inputs = [
        "local net = netns.add(\"lab\")",
        "br = bridge.add(\"br0\"):addr(\"10.7.0.1/24\"):up()",
        "function plug(name, addr)",
        "  local ns = netns.add(name)",
        "  ns:link(\"lo\"):up()",
        "  local h, c = veth.add(\"h-\" .. name, \"eth0\", {peer_ns = ns})",
        "  h:master(br):up()",
        "  c:addr(addr):up()",
        "  route.add(\"default\", {via = \"10.7.0.1\", ns = ns})",
        "  return ns",
        "end",
        "n1 = plug(\"n1\", \"10.7.0.2/24\")",
        "n2 = plug(\"n2\", \"10.7.0.3/24\")",
        "sysctl.set(\"net.ipv4.ip_forward\", \"1\")",
        "fw.append(\"filter\", \"FORWARD\", \"-s 10.7.0.0/24 -j ACCEPT\")",
    ];
    for l in inputs {
        let prompt = if l.starts_with("function") || l.starts_with("  ") { MORE } else { PROMPT };
        let out = send(&mut p, l, prompt);
        assert!(!out.contains("error"), "`{l}`: {out}");
    }
    // Inputs undone with .undo, a failed one and a bare expression are not saved.
    say(&mut p, "junk = bridge.add(\"junk0\")");
    say(&mut p, ".undo");
    assert!(say(&mut p, "bridge.add(\"bad0\"); error(\"on purpose\")").contains("on purpose"));
    assert!(say(&mut p, "n1").contains("Netns(\"n1\") [links: "));
    assert!(say(&mut p, "n1:ping(\"10.7.0.3\")").contains("true"), "n1 reaches n2 over the bridge");
    let s = say(&mut p, &format!(".save {}", saved.display()));
    assert!(s.contains("saved"), "{s}");
    let before = a.settled(Marks::Keep);
    assert!(a.ok("ip -j -d link show up h-n1").contains("\"info_kind\":\"veth\""), "h-n1 is an up veth");
    assert!(!before.contains("junk0") && !before.contains("bad0"), "{before}");

    // Leaving keeps the changes, says so, and `netscript down` removes them.
    p.send_control('d').unwrap();
    let out = plain(&p.exp_eof().unwrap());
    assert!(out.contains("topology \"rebuild\" is up") && out.contains("netscript down rebuild"), "{out}");

    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(!text.contains("junk0") && !text.contains("bad0") && !text.contains("\nn1\n"), "{text}");

    // The saved script, run on its own in a fresh sandbox, rebuilds the same state.
    let b = Sandbox::new();
    let path = script_file("rebuild.lua", &text);
    b.run_ok(&[&path]);
    common::assert_same(&before, &b.settled(Marks::Keep), "the saved script's build");

    a.down("rebuild");
    assert!(!a.snapshot().contains("n1"), "down removed the REPL's topology");
}

/// `netscript repl --sandbox` fed `input` on a pipe (no terminal), with HOME at `home`.
fn piped_repl(home: &std::path::Path, input: &[u8]) -> std::process::Output {
    common::fed(common::spawn_piped(&["repl", "--sandbox"], &[("HOME", home)]), input)
}

/// `.save` checks its script in a copy under the temporary directory, in a fresh
/// directory of its own: a directory and symlink planted where a predictable name
/// would put that copy (`netscript-save-PID/NAME`, as before) are not followed, and the
/// file the symlink points to is untouched. With the old fixed name the check's copy
/// overwrote it (checked).
#[test]
fn save_does_not_write_through_a_planted_path() {
    let h = home("save-planted");
    let tmp = h.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let victim = h.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let saved = h.join("planted.lua");
    let c = common::spawn_piped(&["repl", "--sandbox"], &[("HOME", &h), ("TMPDIR", &tmp)]);
    let planted = tmp.join(format!("netscript-save-{}", c.id()));
    std::fs::create_dir_all(&planted).unwrap();
    std::os::unix::fs::symlink(&victim, planted.join("planted.lua")).unwrap();
    let input = format!("bridge.add('b0')\n.save {}\n", saved.display());
    let o = common::fed(c, input.as_bytes());
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("saved 1 input to"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "the planted symlink was followed");
    assert!(std::fs::read_to_string(&saved).unwrap().contains("bridge.add('b0')"));
    // Its own directory is gone after the check; the planted one is left as it was.
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![planted.file_name().unwrap().to_owned()], "{left:?}");
}

#[test]
fn reads_plain_lines_when_stdin_is_not_a_terminal() {
    let h = home("piped");
    let o = piped_repl(&h, b"1+1\nx = {\n  7,\n}\nx[1]\nnetns.add('p1')\n.journal\nerror('bad')\n'still here'\nos.exit(1)\n'not reached'\n");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["2", "7", "Netns(\"p1\") [links: lo (down)]", "  1  ip netns add p1", "still here"],
        "{err}"
    );
    assert!(err.contains("bad") && err.contains("undid 1 change"), "{err}");
}

/// A handle's description, `.net` and a namespace's summary print the names of
/// namespaces, links and masters bare only when they are plain words: a namespace
/// called `a b` or a bridge called `b)r` is quoted, so that no name can make the
/// line read as something else (before, `Link("q\"1" in a b) [down, veth, master b)r]`).
#[test]
fn handles_quote_names_that_are_not_plain_words() {
    let h = home("odd-names");
    let input = "ns = netns.add('a b')\nbr = bridge.add('b)r', {ns = ns})\n\
                 a, b = veth.add('q\"1', 'p1', {ns = ns})\na:master(br)\na\nns\n.net\n";
    let o = piped_repl(&h, input.as_bytes());
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("Link(\"q\\\"1\" in \"a b\") [down, veth, master \"b)r\"]\n"), "{out}");
    // The links' order is the kernel's.
    for part in ["Netns(\"a b\") [links: lo (down), ", "\"q\\\"1\" (down, master \"b)r\")", "\"b)r\" (down)"] {
        assert!(out.contains(part), "{part}: {out}");
    }
    for part in [
        "\n\"a b\"\n  lo              down\n",
        "\n  \"q\\\"1\"          down veth master \"b)r\"\n",
        "\n  \"b)r\"           down bridge",
    ] {
        assert!(out.contains(part), "{part}: {out}");
    }
    // Plain names stay bare.
    assert!(out.contains("\nhost\n  lo              up 127.0.0.1/8 ::1/128\n  p1              down veth\n"), "{out}");
}

#[test]
fn load_runs_a_script_into_the_session_and_undoes_only_a_failing_one() {
    let h = home("load");
    let good = script_file("repl-good.lua", "local n = netns.add(\"g1\")\nn:link(\"lo\"):up()\n");
    let bad = script_file("repl-bad.lua", "bridge.add(\"bad0\")\nerror(\"bad script\")\n");
    let saved = h.join("all.lua");
    let input = format!(".load {good}\n.load {bad}\n.journal\n.save {}\n", saved.display());
    let o = piped_repl(&h, input.as_bytes());
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains("(2 changes)") && out.contains("ip netns add g1") && out.contains("ip -n g1 link set lo up"),
        "{out}"
    );
    assert!(
        !out.contains("bad0") && err.contains("repl-bad.lua:2: bad script") && err.contains("ip link del bad0"),
        "{out}\n{err}"
    );
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("do\nlocal n = netns.add(\"g1\")") && !text.contains("bad0"), "{text}");
}

#[test]
fn save_keeps_only_what_rebuilds_checks_it_under_plan_and_asks_before_replacing() {
    let h = home("save-check");
    let file = h.join("saved.lua");
    let f = file.display().to_string();
    // Looks at handles (a:info(), n:links(), fw.rules) are not saved; neither is an
    // input whose only change was undone. The saved file runs under plan.
    let input = format!(
        "a = bridge.add('b0')\nn = netns.add('n1')\nn:links()\na:info()\nfw.rules('nat')\n.undo\n\
         .save {f}\n.save {f}\nno\n.save {f}\ny\n"
    );
    let o = piped_repl(&h, input.as_bytes());
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("a = bridge.add('b0')"), "{saved}");
    for gone in ["n:links()", "a:info()", "fw.rules", "netns.add('n1')"] {
        assert!(!saved.contains(gone), "{gone} saved:\n{saved}");
    }
    assert!(out.contains(&format!("saved 1 input to {f}; rebuild with: netscript {f}")), "{out}{err}");
    // The second .save asked and was told no; the third was told yes.
    assert_eq!(out.matches("exists; replace it? [y/N]").count(), 2, "{out}");
    assert!(out.contains("not saved"), "{out}");
    // .undo says the command that ran to undo, not the change it undid.
    assert!(out.contains("undone: ip netns del n1"), "{out}");

    // A variable read from an object whose making was undone: the saved file would
    // fail; without the inputs that changed nothing it rebuilds.
    let file2 = h.join("saved2.lua");
    let f2 = file2.display().to_string();
    let input = format!("b = bridge.add('b1')\nm = netns.add('m1')\nx = netns.get('m1')\n.undo\n.save {f2}\n");
    let o = piped_repl(&h, input.as_bytes());
    let out = String::from_utf8_lossy(&o.stdout);
    let saved = std::fs::read_to_string(&file2).unwrap();
    assert!(!saved.contains("netns.get('m1')") && saved.contains("bridge.add('b1')"), "{saved}");
    assert!(out.contains("rebuild with"), "{out}");

    // A saved file that does not run under plan (the model's exec prints nothing) is
    // written, and said so.
    let file3 = h.join("saved3.lua");
    let f3 = file3.display().to_string();
    let input = format!(
        "n = netns.add('k1')\nif n:exec('ip -o link').stdout:find('lo') then bridge.add('zz') else error('no lo') end\n.save {f3}\n"
    );
    let o = piped_repl(&h, input.as_bytes());
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!out.contains("rebuild with"), "{out}");
    assert!(err.contains("does not rebuild the topology") && err.contains(&f3), "{err}");
}

#[test]
fn banner_on_the_real_host_says_so() {
    // In a test sandbox of our own (not --sandbox): the REPL believes it is on a host.
    let sb = Sandbox::new();
    let h = home("banner");
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &sb.pid.to_string(), "-n", "-m", "--", BIN, "repl", "--name", "on-host"]);
    let mut p = spawn_with_options(cmd_with_env(cmd, &h), Options::new().timeout_ms(Some(20_000)))
        .expect("the REPL starts in a pty");
    let banner = p.exp_string(PROMPT).expect("the first prompt");
    assert!(banner.contains("changes THIS MACHINE's network"), "{banner}");
    assert!(banner.contains(".rollback") && banner.contains("netscript down on-host"), "{banner}");
    p.send_line(".exit").unwrap();
    let _ = p.exp_eof();
    sb.down("on-host");
}

fn cmd_with_env(mut cmd: Command, home: &std::path::Path) -> Command {
    cmd.env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("TERM", "xterm")
        .env_remove("NETSCRIPT_STATE_DIR");
    cmd
}

/// `.net` prints the topology's namespaces with their links, addresses and routes;
/// `.trace NS DST [tcp|udp PORT]` the kernel's walk of one probe; a bad `.trace` is an
/// error that leaves the session as it was.
#[test]
fn net_and_trace_show_the_topology_and_a_probe() {
    let h = home("net-trace");
    let input = "local ns1 = netns.add('ns1')\nns1:link('lo'):up()\n\
                 local a, b = veth.add('veth0', 'v1', { ns = ns1 })\na:addr('10.9.0.2/24'):up()\n\
                 b:addr('10.9.0.1/24'):up()\nfw.policy('filter', 'INPUT', 'DROP')\n.net\n.trace ns1 10.9.0.1\n\
                 fw.policy('filter', 'INPUT', 'ACCEPT')\n.trace ns1 10.9.0.1 tcp 9\n.trace ns1 nowhere\n.journal\n";
    let o = piped_repl(&h, input.as_bytes());
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let net = "host\n  lo              up 127.0.0.1/8 ::1/128\n  v1              up veth 10.9.0.1/24\n  \
               route 10.9.0.0/24 dev v1 proto kernel scope link src 10.9.0.1\n\
               ns1\n  lo              up 127.0.0.1/8 ::1/128\n  veth0           up veth 10.9.0.2/24\n  \
               route 10.9.0.0/24 dev veth0 proto kernel scope link src 10.9.0.2\n";
    assert!(out.contains(net), "{out}");
    assert!(out.contains("not delivered: dropped by the INPUT policy DROP in the host namespace\n"), "{out}");
    assert!(out.contains(">> host     INPUT       in v1                filter/INPUT policy DROP"), "{out}");
    assert!(out.contains("not delivered: connection refused by the host namespace: nothing listens on port 9\n"));
    assert!(err.contains("error: .trace ns1 nowhere: \"nowhere\" is not an IP address"), "{err}");
    // The traces' temporary tables (one per namespace, each trace) were undone at once.
    assert!(out.contains("  9  iptables -t filter -P INPUT ACCEPT\n(4 undone changes not shown)"), "{out}");
}

/// `!ns cmd` on a terminal gives the command the terminal: an interactive shell in
/// the namespace reads what is typed (it used to get no input and return at once),
/// and the REPL gets its prompt back afterwards.
#[test]
fn bang_gives_an_interactive_program_the_terminal() {
    let h = home("bang-tty");
    let mut cmd = Command::new(BIN);
    cmd.args(["repl", "--sandbox"]);
    let mut p = start(cmd, &h);
    say(&mut p, "local ns1 = netns.add(\"ns1\"); veth.add(\"inside0\", \"outside0\", {ns = ns1})");
    // A shell with no script: it runs until it reads `exit` from the terminal.
    p.send_line("!ns1 PS1='ns1-shell$ ' sh -i").unwrap();
    p.exp_string("ns1-shell$ ").expect("an interactive shell prompt in ns1");
    p.send_line("tty; read x; echo \"got-$x\"").unwrap();
    p.exp_string("/dev/pts/").expect("the shell's stdin is the terminal");
    p.send_line("hello").unwrap();
    p.exp_string("got-hello").expect("the shell read a typed line");
    p.exp_string("ns1-shell$ ").unwrap();
    p.send_line("ip -br link show inside0 && exit 7").unwrap();
    let out = plain(&p.exp_string(PROMPT).expect("the REPL's prompt after the shell exits"));
    assert!(out.contains("inside0") && out.contains("(exit code 7)"), "the shell ran in ns1: {out}");
    // The REPL reads the terminal again.
    assert!(say(&mut p, "1+41").contains("42"));
    p.send_line(".exit").unwrap();
    let _ = p.exp_eof();
}

/// `.save` on a terminal: the question before replacing a file is asked at the prompt
/// and answered there; a look (`b:info()`) is not saved.
#[test]
fn save_on_a_terminal_asks_before_replacing() {
    let h = home("save-tty");
    let file = h.join("lab.lua");
    let f = file.display().to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(["repl", "--sandbox"]);
    let mut p = start(cmd, &h);
    say(&mut p, "b = bridge.add(\"tty0\")");
    say(&mut p, "b:info()");
    let out = say(&mut p, &format!(".save {f}"));
    assert!(out.contains(&format!("saved 1 input to {f}; rebuild with: netscript {f}")), "{out}");
    p.send_line(&format!(".save {f}")).unwrap();
    p.exp_string("exists; replace it? [y/N] ").expect("the question");
    p.send_line("n").unwrap();
    let out = plain(&p.exp_string(PROMPT).unwrap());
    assert!(out.contains("not saved"), "{out}");
    p.send_line(&format!(".save {f}")).unwrap();
    p.exp_string("exists; replace it? [y/N] ").expect("the question");
    p.send_line("y").unwrap();
    let out = plain(&p.exp_string(PROMPT).unwrap());
    assert!(out.contains("saved 1 input"), "{out}");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("bridge.add(\"tty0\")") && !saved.contains("info()"), "{saved}");
    p.send_line(".exit").unwrap();
    let _ = p.exp_eof();
}
