//! `netscript plan`: the commands it prints, its errors, that it needs no privileges
//! and touches nothing, and that its output, run by bash, builds the same kernel
//! state as a real run (for every script in examples/ and tests/data/).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A copy of the binary any user can run (the build directory may sit below one only
/// root can enter).
fn readable_bin() -> String {
    let dir = std::env::temp_dir().join(format!("netscript-plan-bin-{}", std::process::id()));
    let dst = dir.join("netscript");
    if !dst.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::copy(BIN, &dst).unwrap();
        std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    dst.display().to_string()
}

/// Runs `netscript ARGS` on the host, in `dir` (plan touches nothing).
fn plan_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).output().unwrap()
}

/// Writes `src` as `name` in the tests' script directory; returns (dir, file name).
fn script(name: &str, src: &str) -> (PathBuf, String) {
    let p = PathBuf::from(script_file(name, src));
    (p.parent().unwrap().to_path_buf(), name.to_string())
}

/// The lines of a plan that are neither blank nor the header.
fn body(out: &str) -> Vec<String> {
    let start = out.find("set -e\n").expect("the plan says set -e") + "set -e\n".len();
    out[start..].lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

const SMALL: &str = r#"local ns1 = netns.add("ns1")
local v0, v1 = veth.add("veth0", "veth_ns_1")
v0:move(ns1)
v0:addr("175.18.0.2/24"):up()
sysctl.set("net.ipv4.ip_forward", 1)
fw.append("nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE")
print("forwarding was on:", sysctl.get("net.ipv4.ip_forward"))
assert(ns1:ping("175.18.0.2"))
ns1:spawn({"sleep", "100"})
"#;

#[test]
fn prints_the_commands_in_order_with_their_script_lines() {
    let (dir, name) = script("small.lua", SMALL);
    let o = plan_in(&dir, &["plan", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("#!/bin/bash\n"), "{out}");
    assert_eq!(
        body(&out),
        vec![
            "# small.lua:1",
            "ip netns add ns1",
            "# small.lua:2",
            "ip link add veth0 numtxqueues 1 numrxqueues 1 type veth peer name veth_ns_1 numtxqueues 1 numrxqueues 1",
            "# small.lua:3",
            "ip link set veth0 netns ns1",
            "# small.lua:4",
            "ip -n ns1 addr add 175.18.0.2/24 dev veth0",
            "ip -n ns1 link set veth0 up",
            "# small.lua:5",
            "sysctl -w net.ipv4.ip_forward=1",
            "# small.lua:6",
            "iptables -t nat -A POSTROUTING -m comment --comment netscript:small -s 175.18.0.0/24 -j MASQUERADE",
            "# small.lua:7",
            "# (reads) sysctl -n net.ipv4.ip_forward   -> 1",
            "# small.lua:8",
            "# (reads) ip netns exec ns1 ping -n -q -c 1 -W 1 175.18.0.2   -> true",
            "# small.lua:9",
            "ip netns exec ns1 sleep 100 &",
        ]
    );
    // What the script prints goes to stderr, with the model's answers.
    assert!(stderr(&o).contains("forwarding was on:\t1"), "{}", stderr(&o));
    // The plan passes bash's own syntax check.
    let (d, f) = script("small-plan.sh", &out);
    let n = Command::new("bash").arg("-n").arg(d.join(f)).output().unwrap();
    assert!(n.status.success(), "{}", stderr(&n));
}

#[test]
fn os_exit_ends_the_plan_as_it_ends_a_run() {
    let (dir, name) = script("exit0.lua", "netns.add(\"n1\")\nos.exit(0)\nnetns.add(\"n2\")\n");
    let o = plan_in(&dir, &["plan", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(body(&stdout(&o)), vec!["# exit0.lua:1", "ip netns add n1"]);
    let (dir, name) = script("exit3.lua", "netns.add(\"n1\")\nos.exit(3)\n");
    let o = plan_in(&dir, &["plan", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("os.exit(3)"), "{}", stderr(&o));
}

#[test]
fn library_calls_are_shown_at_the_users_line() {
    // A chunk that is not a file stands for the embedded standard library
    // (require("netscript.docker")): its changes are shown under the user's line.
    let src = "local lib = load('local n = netns.add(\"c1\")\\nbridge.add(\"br\", {ns = n})', '=[netscript.fake]')\n\nlib()\n";
    let (dir, name) = script("lib.lua", src);
    let o = plan_in(&dir, &["plan", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(body(&stdout(&o)), vec!["# lib.lua:3", "ip netns add c1", "ip -n c1 link add name br type bridge"]);

    // A module of the user's (a file) is named, after the script line that called it.
    script("planhelper.lua", "local M = {}\nfunction M.make()\n  netns.add(\"c2\")\nend\nreturn M\n");
    let (dir, name) = script("usesmod.lua", "local h = require(\"planhelper\")\nh.make()\n");
    let o = plan_in(&dir, &["plan", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(body(&stdout(&o)), vec!["# usesmod.lua:2 > ./planhelper.lua:3", "ip netns add c2"]);
}

#[test]
fn undo_prints_the_teardown_as_a_rollback_runs_it() {
    let (dir, name) = script("undo.lua", SMALL);
    let o = plan_in(&dir, &["plan", "--undo", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cmds: Vec<String> = body(&stdout(&o)).into_iter().filter(|l| !l.starts_with('#')).collect();
    // As a rollback does it: the forwarding sysctl first (before the kernel is busy
    // dismantling namespaces), then newest first, the firewall changes together
    // right after the last namespace deletion (a real rollback makes them on a
    // thread while the kernel dismantles the namespaces); what a later deletion
    // covers is skipped.
    assert_eq!(
        cmds,
        vec![
            "sysctl -w net.ipv4.ip_forward=0",
            "ip netns pids ns1 | xargs -r kill 2>/dev/null || true; while [ -n \"$(ip netns pids ns1)\" ]; do sleep 0.1; done",
            "ip -n ns1 link set veth0 netns $$",
            "ip link del veth0",
            "ip netns del ns1",
            "iptables -t nat -D POSTROUTING -m comment --comment netscript:undo -s 175.18.0.0/24 -j MASQUERADE",
        ]
    );
    let out = stdout(&o);
    assert!(out.contains("# undo of: ip netns add ns1\nip netns del ns1\n"), "{out}");
    assert!(out.contains("# stop the process started by `ip netns exec ns1 sleep 100`"), "{out}");
}

#[test]
fn model_errors_read_as_in_a_real_run() {
    let cases = [
        (
            "dup.lua",
            "veth.add(\"veth0\", \"peer0\")\nbridge.add(\"veth0\")\n",
            "dup.lua:2",
            "a link named \"veth0\" already exists in the host namespace",
        ),
        (
            "nons.lua",
            "local v = veth.add(\"veth0\", \"peer0\")\nv:move(\"nowhere\")\n",
            "nons.lua:2",
            "no namespace named \"nowhere\"",
        ),
        (
            "nolink.lua",
            "local v = veth.add(\"veth0\", \"peer0\")\nlocal ns = netns.add(\"n1\")\nv:del()\nv:addr(\"10.0.0.1/24\")\n",
            "nolink.lua:4",
            "no link named \"veth0\" in the host namespace",
        ),
        (
            "nogw.lua",
            "local ns = netns.add(\"n1\")\nroute.add(\"default\", {via = \"10.0.0.1\", ns = ns})\n",
            "nogw.lua:2",
            "gateway 10.0.0.1 is not on any link that is up",
        ),
        (
            "dupns.lua",
            "netns.add(\"n1\")\nnetns.add(\"n1\")\n",
            "dupns.lua:2",
            "a namespace named \"n1\" already exists",
        ),
    ];
    for (name, src, at, why) in cases {
        let (dir, f) = script(name, src);
        let o = plan_in(&dir, &["plan", &f]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(at) && err.contains(why), "{name}: the error should name {at} and say {why:?}:\n{err}");
        assert!(err.contains("a real run failing here rolls them back"), "{name}: {err}");
        assert!(stdout(&o).is_empty(), "{name}: no plan is printed for a failing script");
    }
}

#[test]
fn runs_as_nobody_and_touches_nothing() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let run_before = sb.ok("ls -A /run /run/netns");
    let (dir, name) = script("nobody.lua", SMALL);
    let state = dir.join("state-must-not-exist");
    let o = sb.sh(&format!(
        "cd {} && setpriv --reuid=nobody --regid=nogroup --clear-groups env NETSCRIPT_STATE_DIR={} {} plan {name}",
        dir.display(),
        state.display(),
        readable_bin()
    ));
    assert!(o.status.success(), "plan as nobody: {}", stderr(&o));
    assert!(stdout(&o).contains("ip netns add ns1"));
    assert!(!state.exists(), "plan created a state directory");
    assert_eq!(sb.ok("ls -A /run /run/netns"), run_before, "plan wrote under /run");
    sb.assert_unchanged(&before, "after plan");
}

// ---- equivalence: a plan run by bash builds what a real run builds --------------

/// Every script of examples/ (if the directory exists) and of tests/data/.
fn equivalence_scripts() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for d in ["examples", "tests/data"] {
        let Ok(rd) = std::fs::read_dir(root.join(d)) else { continue };
        let mut files: Vec<PathBuf> =
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "lua")).collect();
        files.sort();
        v.extend(files);
    }
    v
}

fn check_equivalent(path: &Path) {
    let p = path.display().to_string();
    let stem = path.file_stem().unwrap().to_string_lossy();
    let real = Sandbox::new();
    let o = real.sh(&format!("{BIN} {p}"));
    assert!(o.status.success(), "{p}: the real run failed:\n{}{}", stdout(&o), stderr(&o));
    let want = real.settled(Marks::Drop);
    drop(real);

    let o = Command::new(BIN).args(["plan", &p]).output().unwrap();
    assert!(o.status.success(), "{p}: plan failed:\n{}", stderr(&o));
    let file = script_file(&format!("{stem}.plan.sh"), &stdout(&o));
    let replay = Sandbox::new();
    let fresh = replay.settled(Marks::Drop);
    let log = format!("{file}.log");
    let r = replay.sh(&format!("bash {file} >{log} 2>&1"));
    assert!(
        r.status.success(),
        "{p}: the plan failed when run by bash:\n{}\n--- the plan:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        stdout(&o)
    );
    let got = replay.settled(Marks::Drop);
    assert_same(&want, &got, &format!("{p}: the plan run by bash vs the real run"));

    // The teardown, run by bash, returns the sandbox to where it started.
    let o = Command::new(BIN).args(["plan", "--undo", &p]).output().unwrap();
    assert!(o.status.success(), "{p}: plan --undo failed:\n{}", stderr(&o));
    let file = script_file(&format!("{stem}.undo.sh"), &stdout(&o));
    let r = replay.sh(&format!("bash {file} >{log} 2>&1"));
    assert!(
        r.status.success(),
        "{p}: the teardown failed when run by bash:\n{}\n--- the teardown:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        stdout(&o)
    );
    assert_same(&fresh, &replay.settled(Marks::Drop), &format!("{p}: after the teardown run by bash"));
}

/// The dual stack example alone (its IPv6 rules, addresses and routes), so that it is
/// checked even when an earlier example of the whole list fails.
#[test]
fn the_plan_of_the_dual_stack_example_builds_what_a_real_run_builds() {
    check_equivalent(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dual-stack.lua"));
}

#[test]
fn a_plan_run_by_bash_builds_what_a_real_run_builds() {
    let scripts = equivalence_scripts();
    assert!(!scripts.is_empty(), "no example scripts found");
    for s in &scripts {
        check_equivalent(s);
    }
}

/// A script that uses a link of the real host: plan's model starts with only `lo`,
/// and says so (not that the host has no eth0) with the way to declare the link.
#[test]
fn a_host_link_the_model_lacks_is_explained_and_can_be_declared() {
    let src = "local e = link.get(\"eth0\")\ne:addr(\"10.9.1.1/24\")\nroute.add(\"10.50.0.0/16\", { via = \"10.9.0.254\" })\n";
    let (dir, name) = script("uses-eth0.lua", src);
    let o = plan_in(&dir, &["plan", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no link named \"eth0\" in plan's model of the host namespace: the model starts with only `lo`"),
        "{err}"
    );
    assert!(err.contains("`netscript plan --host-link eth0 ...`"), "{err}");
    assert!(!err.contains("no link named \"eth0\" in the host namespace"), "{err}");

    // Declared, with its address: its connected network makes the gateway reachable.
    let o = plan_in(&dir, &["plan", "--host-link", "eth0=10.9.0.5/24", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("# It assumes the host has: 'eth0=10.9.0.5/24' (--host-link).\n"), "{out}");
    assert_eq!(
        body(&out),
        [
            "# uses-eth0.lua:2",
            "ip addr add 10.9.1.1/24 dev eth0",
            "# uses-eth0.lua:3",
            "ip route add 10.50.0.0/16 via 10.9.0.254"
        ]
    );
    // Without the address the gateway is on no connected network, as on a real host.
    let o = plan_in(&dir, &["plan", "--host-link", "eth0", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // Its undo leaves the declared link (the script did not create it).
    let out = stdout(&plan_in(&dir, &["plan", "--undo", "--host-link", "eth0=10.9.0.5/24", &name]));
    assert!(out.contains("ip addr del 10.9.1.1/24 dev eth0") && !out.contains("link del"), "{out}");
    // Names and addresses are checked before anything runs.
    for bad in ["bad/x", "eth0=1.2.3.4", "lo", "eth0=10.0.0.1/24,nope"] {
        let o = plan_in(&dir, &["plan", "--host-link", bad, &name]);
        assert_eq!(o.status.code(), Some(2), "--host-link {bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("--host-link"), "{}", stderr(&o));
    }
}
