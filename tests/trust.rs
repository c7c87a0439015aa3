//! Trust and ownership (issue 9, items 4-9): records are trusted only when they
//! deserve it, teardown deletes only what is ours, gc never races a live topology,
//! shared host settings are handed over, the sandbox keeps non-network state away,
//! and the limits and exit codes of refused runs.

mod common;
use common::*;

use std::process::Command;

const BRIDGE: &str = "bridge.add(\"br0\")\n";

// ---- 5. the state directory ------------------------------------------------------

#[test]
fn a_symlinked_record_dir_is_refused_and_its_target_untouched() {
    let sb = Sandbox::new();
    let script = script_file("victim.lua", BRIDGE);
    sb.ok("mkdir -p -m 700 /run/netscript /run/precious && echo data > /run/precious/keep.txt \
           && ln -s /run/precious /run/netscript/victim");
    let o = sb.netscript(&["--ephemeral", "--name", "victim", &script]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
    assert_eq!(sb.ok("cat /run/precious/keep.txt"), "data\n");
    assert_eq!(sb.ok("ls /run/precious"), "keep.txt\n", "nothing was written through the link");
    assert!(sb.sh("ip link show br0").status.code() != Some(0));
    // A symlinked state dir as a whole is refused as well.
    sb.ok("rm /run/netscript/victim && rmdir /run/netscript && ln -s /run/precious /run/netscript");
    let o = sb.netscript(&["ls"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
}

#[test]
fn a_journal_others_may_write_is_not_trusted() {
    let sb = Sandbox::new();
    let script = script_file("shared.lua", BRIDGE);
    assert!(sb.netscript(&[&script]).status.success());
    for (fix, undo) in [
        ("chmod 622 /run/netscript/shared/journal.jsonl", "chmod 600 /run/netscript/shared/journal.jsonl"),
        ("chown nobody /run/netscript/shared/journal.jsonl", "chown root /run/netscript/shared/journal.jsonl"),
        ("chmod 777 /run/netscript/shared", "chmod 700 /run/netscript/shared"),
        ("chown nobody /run/netscript", "chown root /run/netscript"),
    ] {
        sb.ok(fix);
        let o = sb.netscript(&["down", "shared"]);
        assert_eq!(o.status.code(), Some(2), "{fix}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("not trusting") && (e.contains("writable by group") || e.contains("owned by uid")),
            "{fix}: {e}"
        );
        sb.ok("ip link show br0"); // nothing was undone on the word of an untrusted file
        sb.ok(undo);
    }
    let o = sb.netscript(&["down", "shared"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(sb.sh("ip link show br0").status.code() != Some(0));
}

#[test]
fn a_torn_last_line_is_a_change_that_never_started() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file("torn.lua", "bridge.add(\"br0\"):up()\n");
    assert!(sb.netscript(&[&script]).status.success());
    // A crash while the next `begin` was written: half a line, no newline.
    sb.ok("printf '%s' '{\"t\":\"begin\",\"seq\":3,\"op\":{\"op\":\"add_bri' >> /run/netscript/torn/journal.jsonl");
    let o = sb.netscript(&["ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cut short") && stdout(&o).contains(" up "), "{}", stdout(&o));
    let o = sb.netscript(&["gc"]);
    assert!(o.status.success() && stdout(&o).contains("nothing to collect"), "{}{}", stdout(&o), stderr(&o));
    let o = sb.netscript(&["down", "torn"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("cut short"), "{}", stderr(&o));
    assert_same(&before, &sb.snapshot(), "after down with a torn last line");
}

#[test]
fn without_permission_to_read_the_records_commands_say_so() {
    let state = std::env::temp_dir().join(format!("netscript-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let st = state.display().to_string();
    for args in [vec!["down", "x"], vec!["ls"], vec!["show", "x"], vec!["gc"]] {
        let mut full = vec!["--state-dir", st.as_str()];
        full.extend(&args);
        let o = as_nobody(&full);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}{}", stdout(&o), stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("permission denied") && e.contains("--state-dir") && e.contains("root"), "{args:?}: {e}");
    }
    std::fs::remove_dir_all(&state).unwrap();
}

// ---- 9. limits and exit codes -----------------------------------------------------

#[test]
fn refused_before_anything_ran_exits_2_and_says_nothing_changed() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let syntax = script_file("syntax.lua", "bridge.add(\"br0\")\nlocal x = = 1\n");
    let o = sb.netscript(&[&syntax]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("nothing was changed") && !e.contains("rolling back"), "{e}");
    assert!(e.contains("syntax.lua:2"), "{e}");
    // A read-only state dir: refused before anything ran.
    let ok = script_file("ro.lua", BRIDGE);
    sb.ok("mkdir -p /run/ro && mount -t tmpfs -o ro tmpfs /run/ro");
    let o = sb.netscript(&["--state-dir", "/run/ro/state", &ok]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
    assert!(stdout(&sb.netscript(&["ls"])).contains("no topologies are up"));
    assert_same(&before, &sb.snapshot(), "after refused runs");
}
