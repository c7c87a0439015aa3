//! The progress line of runs and teardowns longer than a second: on a terminal only
//! (a real pseudo-terminal here), in colour unless NO_COLOR is set, and never when
//! stderr is not a terminal. Runs in `--sandbox`: the host is not touched.

mod common;

use std::process::Command;

use common::{BIN, script_file, stderr};
use rexpect::reader::Options;
use rexpect::session::spawn_with_options;

/// 15 changes a tenth of a second apart (a run of 1.5 s), then a process that
/// ignores SIGTERM: the teardown waits for it (2 s) before it undoes the rest.
const SLOW: &str = r#"local h = netns.host()
for i = 1, 15 do
  bridge.add("slow" .. i)
  h:exec({"sleep", "0.1"})
end
h:spawn("trap '' TERM; while :; do sleep 0.05; done")
bridge.add("last")
print("script done")
"#;

/// Everything the terminal got from `netscript --sandbox SCRIPT`, escapes included.
fn on_a_terminal(script: &str, no_color: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["--sandbox", script]).env("TERM", "xterm").env_remove("NETSCRIPT_STATE_DIR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let mut p = spawn_with_options(cmd, Options::new().timeout_ms(Some(60_000)).strip_ansi_escape_codes(false))
        .expect("netscript starts in a pty");
    p.exp_eof().expect("netscript ends")
}

#[test]
fn a_long_run_and_teardown_show_progress_on_a_terminal_only() {
    let script = script_file("slow.lua", SLOW);
    let out = on_a_terminal(&script, false);
    // The run: how many changes so far, where in the script, the change; in colour.
    assert!(out.contains("\r\x1b[K\x1b[36mnetscript: slow: "), "{out:?}");
    assert!(out.contains(" changes, 1s, slow.lua:3: ip link add slow"), "{out:?}");
    // Cut to the terminal's width (80 columns here).
    for line in out.split("\r\x1b[K").filter(|l| l.contains("changes, ")) {
        let text = line.replace("\x1b[36m", "").replace("\x1b[0m", "");
        assert!(text.chars().count() < 80, "{text:?}");
    }
    // The script's own output starts on a clean line.
    assert!(out.contains("\r\x1b[Kscript done"), "{out:?}");
    // The teardown: how many changes are left to undo.
    assert!(out.contains("netscript: slow: undoing, ") && out.contains(" of 17 changes left"), "{out:?}");
    // The final line is not mixed with a progress line.
    assert!(out.contains("\r\x1b[Knetscript: sandbox closed: undid 17 changes"), "{out:?}");

    // NO_COLOR: the same line without colour.
    let out = on_a_terminal(&script, true);
    assert!(out.contains("\r\x1b[Knetscript: slow: ") && out.contains(" changes, 1s, slow.lua:3: "), "{out:?}");
    assert!(!out.contains("\x1b[36m") && !out.contains("\x1b[0m"), "{out:?}");

    // stderr not a terminal: no progress line, no escapes.
    let o = Command::new(BIN).args(["--sandbox", &script]).env_remove("NO_COLOR").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains('\x1b') && !err.contains('\r') && !err.contains("changes, "), "{err:?}");
    assert!(err.contains("netscript: sandbox closed: undid 17 changes"), "{err}");
}
