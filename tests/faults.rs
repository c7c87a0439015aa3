//! The fault-injection suite: examples/docker-bridge.lua and examples/two-bridges.lua
//! driven through a failure injected after every change, SIGINT and SIGKILL at
//! several points, and `down` (twice) after success. After each case the kernel state
//! (links, addresses, routes in every namespace, the namespace list, both iptables
//! back ends, sysctls) must equal the snapshot from before the run.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

const SCRIPTS: &[(&str, &str)] = &[
    ("docker-bridge", concat!(env!("CARGO_MANIFEST_DIR"), "/examples/docker-bridge.lua")),
    ("two-bridges", concat!(env!("CARGO_MANIFEST_DIR"), "/examples/two-bridges.lua")),
];

struct Tally {
    cases: usize,
    dirty: Vec<String>,
}

impl Tally {
    fn case(&mut self, name: String, f: impl FnOnce() -> Result<(), String>) {
        self.cases += 1;
        if let Err(e) = f() {
            eprintln!("DIRTY {name}: {e}");
            self.dirty.push(name);
        }
    }
}

fn same(before: &str, after: &str) -> Result<(), String> {
    std::panic::catch_unwind(|| assert_same(before, after, "state"))
        .map_err(|e| e.downcast_ref::<String>().cloned().unwrap_or_else(|| "differs".into()))
}

/// How many changes a script makes (it prints them with -v).
fn count_changes(sb: &Sandbox, script: &str, name: &str) -> usize {
    let o = sb.netscript(&["-v", script]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n = stderr(&o).lines().filter(|l| l.starts_with("+ ")).count();
    let d = sb.netscript(&["down", name]);
    assert!(d.status.success(), "{}", stderr(&d));
    n
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
}

#[test]
fn nothing_is_ever_left_behind() {
    let mut t = Tally { cases: 0, dirty: Vec::new() };
    for (name, script) in SCRIPTS {
        let sb = Sandbox::new();
        let before = sb.snapshot();
        let n = count_changes(&sb, script, name);
        assert!(n > 10, "{name} makes {n} changes");
        assert_same(&before, &sb.snapshot(), "after the counting run");

        // A failure injected at every change k (k = 0: the very first one fails).
        for k in 0..n {
            t.case(format!("{name}: failure after change {k} of {n}"), || {
                let c = sb.spawn_netscript(&[script], &[("NETSCRIPT_FAIL_AFTER", &k.to_string())]);
                let o = c.wait_with_output().unwrap();
                if o.status.code() != Some(1) || !stderr(&o).contains("injected failure") {
                    return Err(format!("expected an injected failure, got {:?}: {}", o.status.code(), stderr(&o)));
                }
                same(&before, &sb.snapshot())
            });
        }

        // SIGINT / SIGTERM at several points: the run rolls back by itself. A second
        // signal during the rollback does not cut it short.
        for (ms, sig, twice) in [
            (30, "INT", false),
            (150, "INT", false),
            (400, "TERM", false),
            (900, "INT", true),
            (1800, "INT", false),
            (3500, "TERM", true),
        ] {
            t.case(format!("{name}: SIG{sig}{} after {ms} ms", if twice { " twice" } else { "" }), || {
                let c = sb.spawn_netscript(&[script], &[]);
                std::thread::sleep(Duration::from_millis(ms));
                signal(c.id(), sig);
                if twice {
                    std::thread::sleep(Duration::from_millis(5));
                    signal(c.id(), sig);
                }
                let o = c.wait_with_output().unwrap();
                match o.status.code() {
                    Some(1) => {}
                    // It had finished before the signal: take it down.
                    Some(0) => {
                        let d = sb.netscript(&["down", name]);
                        if !d.status.success() {
                            return Err(format!("down: {}", stderr(&d)));
                        }
                    }
                    other => return Err(format!("exit {other:?}: {}", stderr(&o))),
                }
                same(&before, &sb.snapshot())
            });
        }

        // SIGKILL at several points, then `netscript down`: the journal was written
        // before each change, so even the change in flight is found and undone.
        for ms in [10, 60, 200, 500, 1200, 2500, 4000] {
            t.case(format!("{name}: SIGKILL after {ms} ms, then down"), || {
                let mut c = sb.spawn_netscript(&[script], &[]);
                std::thread::sleep(Duration::from_millis(ms));
                signal(c.id(), "KILL");
                let _ = c.wait();
                let d = sb.netscript(&["down", name]);
                if !d.status.success() {
                    return Err(format!("down failed: {}", stderr(&d)));
                }
                same(&before, &sb.snapshot())
            });
        }

        // down after a successful run, and down twice.
        t.case(format!("{name}: run, down, down"), || {
            let o = sb.netscript(&[script]);
            if !o.status.success() {
                return Err(stderr(&o));
            }
            for _ in 0..2 {
                let d = sb.netscript(&["down", name]);
                if !d.status.success() {
                    return Err(format!("down: {}", stderr(&d)));
                }
            }
            same(&before, &sb.snapshot())
        });
    }
    eprintln!("fault injection: {} cases, {} clean", t.cases, t.cases - t.dirty.len());
    println!("fault injection: {} cases, {} clean", t.cases, t.cases - t.dirty.len());
    assert!(t.dirty.is_empty(), "not clean: {:#?}", t.dirty);
}

/// Crashes at chosen instants (NETSCRIPT_CRASH_AT): a change journaled but not made,
/// a change made but not marked done, a process started but its pid not journaled.
/// `netscript down` afterwards must restore the state exactly, and stop the process.
#[test]
fn crashes_at_the_worst_instants_are_recovered_by_down() {
    let (name, script) = SCRIPTS[0];
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let n = count_changes(&sb, script, name);
    let mut t = Tally { cases: 0, dirty: Vec::new() };
    let mut points: Vec<String> = Vec::new();
    for k in (1..=n).step_by(3) {
        points.push(format!("before-apply:{k}"));
        points.push(format!("after-apply:{k}"));
    }
    points.push("spawned".into());
    for at in points {
        t.case(format!("{name}: crash {at}, then down"), || {
            let c = sb.spawn_netscript(&[script], &[("NETSCRIPT_CRASH_AT", &at)]);
            let o = c.wait_with_output().unwrap();
            use std::os::unix::process::ExitStatusExt;
            if o.status.signal() != Some(6) {
                return Err(format!("expected a crash (SIGABRT), got {:?}: {}", o.status, stderr(&o)));
            }
            let d = sb.netscript(&["down", name]);
            if !d.status.success() {
                return Err(format!("down failed: {}", stderr(&d)));
            }
            if !sb.processes("hello from").is_empty() {
                return Err("a spawned server still runs".into());
            }
            same(&before, &sb.snapshot())
        });
    }
    eprintln!("crash points: {} cases, {} clean", t.cases, t.cases - t.dirty.len());
    assert!(t.dirty.is_empty(), "not clean: {:#?}", t.dirty);
}
