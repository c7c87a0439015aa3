//! Everything printed as a command is quoted: every kind of `Op` (and `Probe`),
//! rendered with hostile strings in every field, is a command bash parses
//! (`bash -n`) and, run by bash with the tools replaced by recorders, runs nothing
//! but the tool with the string as one argument. And a plan made of hostile but
//! legal names, run by bash in a sandbox, builds exactly those objects and runs
//! nothing else; the names no real object can have are refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use netscript::firewall::Family;
use netscript::model::{NsRef, Route};
use netscript::op::{BridgeOpts, LinkKind, Op, PortFlags, Probe, render_stop_all_in};
use netscript::qdisc::Qdisc;

const V4: Family = Family::Ipv4;
const V6: Family = Family::Ipv6;

/// Hostile strings; `{D}` is replaced by the test's directory (markers land there).
const HOSTILE: &[&str] = &[
    "$(id>{D}/abs)",
    "$(id>pw1)",
    "`id>pw2`",
    ";id>pw3",
    "|id>pw4",
    "&id>pw5",
    "x;id>pw6 #",
    "a'b",
    "a\"b",
    "'$(id>pw7)'",
    "\"$(id>pw8)\"",
    "a\nid>pw9",
    "a\rb",
    "-rf /",
    "é\u{200b}ü",
    "%d",
    "a%d",
    "a\\b",
    "*",
    "~",
    "!!",
    "{a,b}",
    "$IFS",
    "a b",
    "#c",
    "FOO=1",
    "\t",
    "",
    "a\0b;id>pw10",
];

fn hostile(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = HOSTILE.iter().map(|h| h.replace("{D}", &d.display().to_string())).collect();
    v.push(format!("{}$(id>pw11)", "x".repeat(5000)));
    v
}

/// The kind of an op: a match without a wildcard, so a new kind of Op fails to
/// compile here until this test covers it.
fn kind(op: &Op) -> &'static str {
    match op {
        Op::AddNetns { .. } => "AddNetns",
        Op::DelNetns { .. } => "DelNetns",
        Op::AddVeth { .. } => "AddVeth",
        Op::AddBridge { .. } => "AddBridge",
        Op::DelLink { .. } => "DelLink",
        Op::MoveLink { .. } => "MoveLink",
        Op::SetUp { .. } => "SetUp",
        Op::AddAddr { .. } => "AddAddr",
        Op::DelAddr { .. } => "DelAddr",
        Op::SetMaster { .. } => "SetMaster",
        Op::SetMtu { .. } => "SetMtu",
        Op::AddRoute { .. } => "AddRoute",
        Op::DelRoute { .. } => "DelRoute",
        Op::SetSysctl { .. } => "SetSysctl",
        Op::FwPolicy { .. } => "FwPolicy",
        Op::FwAppend { .. } => "FwAppend",
        Op::FwInsert { .. } => "FwInsert",
        Op::FwDelete { .. } => "FwDelete",
        Op::FwNewChain { .. } => "FwNewChain",
        Op::FwDelChain { .. } => "FwDelChain",
        Op::Spawn { .. } => "Spawn",
        Op::Kill { .. } => "Kill",
        Op::StopMarked { .. } => "StopMarked",
        Op::AddLink { .. } => "AddLink",
        Op::SetBridge { .. } => "SetBridge",
        Op::SetBridgePort { .. } => "SetBridgePort",
        Op::SetQdisc { .. } => "SetQdisc",
        Op::DelQdisc { .. } => "DelQdisc",
        Op::TraceOn { .. } => "TraceOn",
        Op::TraceOff { .. } => "TraceOff",
    }
}
const KINDS: usize = 30;

/// Every op kind with `h` in each of its string fields (and each namespace).
fn ops(h: &str) -> Vec<Op> {
    let s = || h.to_string();
    let n = || NsRef::named(h);
    let route = Route {
        dest: "10.0.0.0/8".parse().unwrap(),
        via: None,
        dev: Some(s()),
        metric: None,
        proto: None,
        scope: None,
        src: None,
    };
    vec![
        Op::AddNetns { name: s() },
        Op::DelNetns {
            name: s(),
            id: Some(netscript::model::NsId { dev: 4, ino: 4026532000, ctime_ns: Some(1) }),
            marked: true,
        },
        Op::AddVeth { ns: n(), name: s(), peer: s(), peer_ns: NsRef::Host, queues: Some(1) },
        Op::AddVeth { ns: NsRef::Host, name: s(), peer: s(), peer_ns: n(), queues: None },
        Op::AddBridge { ns: n(), name: s() },
        Op::DelLink { ns: n(), name: s(), ifindex: Some(7) },
        Op::MoveLink { ns: n(), name: s(), to: n() },
        Op::MoveLink { ns: n(), name: s(), to: NsRef::Host },
        Op::SetUp { ns: n(), name: s(), up: true },
        Op::AddAddr { ns: n(), dev: s(), addr: "10.0.0.1/24".parse().unwrap(), nodad: false, proto: Some(78) },
        Op::AddAddr { ns: n(), dev: s(), addr: "fd00::1/64".parse().unwrap(), nodad: true, proto: None },
        Op::AddAddr { ns: n(), dev: s(), addr: "10.0.0.2/24".parse().unwrap(), nodad: false, proto: Some(2) },
        Op::DelAddr { ns: n(), dev: s(), addr: "10.0.0.1/24".parse().unwrap(), proto: Some(78) },
        Op::SetMaster { ns: n(), dev: s(), master: Some(s()) },
        Op::SetMaster { ns: n(), dev: s(), master: None },
        Op::SetMtu { ns: n(), dev: s(), mtu: 1400 },
        Op::AddRoute { ns: n(), route: route.clone() },
        Op::AddRoute { ns: n(), route: Route { dest: "::/0".parse().unwrap(), ..route.clone() } },
        Op::DelRoute { ns: n(), route },
        Op::SetSysctl { ns: n(), key: s(), value: s() },
        Op::FwPolicy { ns: n(), family: V4, table: s(), chain: s(), target: s() },
        Op::FwAppend { ns: n(), family: V4, table: s(), chain: s(), rule: vec![s(), s()] },
        Op::FwInsert { ns: n(), family: V4, table: s(), chain: s(), pos: 1, rule: vec![s()] },
        Op::FwDelete { ns: n(), family: V4, table: s(), chain: s(), rule: vec![s()] },
        Op::FwNewChain { ns: n(), family: V4, table: s(), chain: s() },
        Op::FwDelChain { ns: n(), family: V4, table: s(), chain: s() },
        Op::FwPolicy { ns: n(), family: V6, table: s(), chain: s(), target: s() },
        Op::FwAppend { ns: n(), family: V6, table: s(), chain: s(), rule: vec![s(), s()] },
        Op::FwInsert { ns: n(), family: V6, table: s(), chain: s(), pos: 1, rule: vec![s()] },
        Op::FwDelete { ns: n(), family: V6, table: s(), chain: s(), rule: vec![s()] },
        Op::FwNewChain { ns: n(), family: V6, table: s(), chain: s() },
        Op::FwDelChain { ns: n(), family: V6, table: s(), chain: s() },
        Op::Spawn { ns: n(), cmd: vec![s(), s()], pid: 1, start: 1, mark: s() },
        Op::Spawn { ns: NsRef::Host, cmd: vec!["echo".into(), s()], pid: 1, start: 1, mark: s() },
        Op::Kill { pid: 4242, start: 1 },
        Op::Kill { pid: 1, start: 1 },
        Op::StopMarked { mark: s() },
        Op::AddLink {
            ns: n(),
            name: s(),
            link: LinkKind::Vxlan { id: 1, remote: None, local: None, dev: Some(s()), port: 4789 },
            from: n(),
        },
        Op::AddLink { ns: n(), name: s(), link: LinkKind::Macvlan { parent: s(), mode: s() }, from: NsRef::Host },
        Op::AddLink { ns: NsRef::Host, name: s(), link: LinkKind::Macvtap { parent: s(), mode: s() }, from: n() },
        Op::AddLink { ns: n(), name: s(), link: LinkKind::Vlan { parent: s(), id: 5 }, from: n() },
        Op::AddLink { ns: n(), name: s(), link: LinkKind::Dummy, from: n() },
        Op::AddLink { ns: n(), name: s(), link: LinkKind::Ifb, from: n() },
        Op::SetBridge { ns: n(), name: s(), opts: BridgeOpts { vlan_filtering: Some(true), stp: Some(false) } },
        Op::SetBridgePort { ns: n(), dev: s(), flags: PortFlags { hairpin: Some(true), ..Default::default() } },
        Op::SetQdisc {
            ns: n(),
            dev: s(),
            qdisc: Qdisc { kind: s(), args: vec![s(), s()], handle: Some(0x8001) },
            over: Some(0x4e53),
        },
        Op::DelQdisc { ns: n(), dev: s(), over: Some(0) },
        Op::TraceOn { ns: n(), proto: s(), id: 4242 },
        Op::TraceOff { ns: n(), id: 4242 },
    ]
}

fn probes(h: &str) -> Vec<String> {
    let n = NsRef::named(h);
    let mut v: Vec<String> = [
        Probe::SysctlGet { ns: n.clone(), key: h.into() },
        Probe::FwRules { ns: n.clone(), family: V4, table: h.into() },
        Probe::FwRules { ns: n.clone(), family: V6, table: h.into() },
        Probe::Exec { ns: n.clone(), cmd: vec![h.into(), h.into()] },
        Probe::Exec { ns: NsRef::Host, cmd: vec!["echo".into(), h.into()] },
        Probe::Trace { ns: n.clone(), addr: "10.0.0.1".parse().unwrap(), proto: netscript::trace::Proto::Icmp },
        Probe::Trace { ns: n.clone(), addr: "10.0.0.1".parse().unwrap(), proto: netscript::trace::Proto::Tcp(80) },
    ]
    .iter()
    .map(Probe::render)
    .collect();
    v.push(render_stop_all_in(h));
    v
}

/// The tools a rendered command calls, as shell functions that record their
/// arguments (NUL-separated) and run nothing. The stages of a pipeline record at the
/// same time, and a long argument takes more than one write: each record is made
/// under a lock, so records do not interleave.
const STUBS: &str = r#"
rec() { { flock 9; printf '%s\0' "$@" >&9; } 9>> "$ARGS"; }
ip() { rec ip "$@"; }
iptables() { rec iptables "$@"; }
ip6tables() { rec ip6tables "$@"; }
tc() { rec tc "$@"; }
sysctl() { rec sysctl "$@"; }
kill() { rec kill "$@"; }
grep() { rec grep "$@"; }
cut() { rec cut "$@"; }
xargs() { rec xargs "$@"; }
sleep() { rec sleep "$@"; }
echo() { rec echo "$@"; }
"#;

fn fresh_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(script_file(".keep", "")).parent().unwrap().to_path_buf();
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The files in `d` other than `keep`.
fn others(d: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn every_rendered_op_is_one_quoted_command_that_runs_nothing_else() {
    let d = fresh_dir("quoting-ops");
    let kinds: std::collections::HashSet<&str> = ops("x").iter().map(kind).collect();
    assert_eq!(kinds.len(), KINDS, "every Op kind is rendered");
    for h in hostile(&d) {
        let mut commands: Vec<String> = ops(&h).iter().map(Op::render).collect();
        commands.extend(probes(&h));
        for c in &commands {
            let o = Command::new("bash").args(["-n", "-c", c]).output().unwrap();
            assert!(o.status.success(), "bash -n refuses {c:?}: {}", stderr(&o));
        }
        // Run them all, each after a separator, with the tools recorded.
        let args = d.join("args");
        let _ = std::fs::remove_file(&args);
        let mut script = String::from(STUBS);
        for c in &commands {
            script += &format!("rec '--next--'\n{c}\nwait\n");
        }
        script += "wait\n";
        let file = d.join("script.sh");
        std::fs::write(&file, &script).unwrap();
        let o = Command::new("bash").arg(&file).env("ARGS", &args).current_dir(&d).output().unwrap();
        let left = others(&d, &["args", "script.sh"]);
        assert!(left.is_empty(), "running the commands for {h:?} created {left:?}: {}", stderr(&o));
        // Each command got the string whole, as one argument (the tool's argument,
        // or part of `key=value` / `NETSCRIPT_OWNER=mark`). A NUL cannot be an
        // argument (it is refused before any op is made); "" is in every word.
        if h.contains('\0') || h.is_empty() {
            continue;
        }
        let raw = std::fs::read(&args).unwrap();
        let words: Vec<String> = raw.split(|b| *b == 0).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
        let groups: Vec<&[String]> = words.split(|w| w == "--next--").skip(1).collect();
        assert_eq!(groups.len(), commands.len(), "{h:?}");
        for (c, g) in commands.iter().zip(&groups) {
            // A process's stop passes numbers only (and pid 1's is a comment).
            if c.contains("/proc/4242/stat") || c.starts_with("# ") {
                continue;
            }
            // The namespace's own pid for a move to the host, the only expansion.
            let spawn_in_ns = c.starts_with("ip netns exec") && c.ends_with(" &");
            assert!(spawn_in_ns || g.iter().any(|w| w.contains(h.as_str())), "{c:?} did not pass {h:?} whole: {g:?}");
        }
    }
}

/// The Lua script of the plan test: hostile but legal names for real objects, and
/// the illegal ones refused (each refusal printed to stderr as `REFUSED what: error`).
const PLAN: &str = r##"
local legal_links = { "$(id>pw1)", "`id>pw2`", ";id>pw3", "|id>pw4", "&id>pw5", "a'b", 'a"b', "é", "{a,b}", "$IFS", "#c", "FOO=1", "!!", "*", "~", "a\\b", "-rf" }
local legal_ns = { "$(id>pw1)", "a b;id>pw2", "'$(id>pw3)'", "é ü", "FOO=1 x" }
local legal_chains = { "$(id>pw1)", "`id>pw2`", ";id>pw3", "|id>pw4", "&id>pw5", "é", "{a,b}", "$IFS", "#c", "FOO=1", "*", "~" }
local legal_words = { "$(id>pw1)", "`id>pw2`", ";id>pw3 #", "a b|id>pw4", "-rf /", "é", "%d" }
local function try(what, f, ...)
  local ok, err = pcall(f, ...)
  if not ok then io.stderr:write("REFUSED ", what, ": ", err:gsub("\n", "\\n"), "\n") end
  return ok
end
local function rule_quote(s) return '"' .. s:gsub('[\\"]', '\\%0') .. '"' end
local last
for i, n in ipairs(legal_ns) do last = netns.add(n) end
for i, n in ipairs(legal_links) do bridge.add(n) end
-- Names iproute2 would read as its own words (`ip link add up type bridge` makes bridge0).
for i, n in ipairs({ "up", "down", "help", "name", "d", "h" }) do bridge.add(n):mtu(1400):up() end
veth.add("mtu", "txqlen", { queues = 2 })
for i, c in ipairs(legal_chains) do fw.chain("filter", c) end
for i, w in ipairs(legal_words) do
  fw.append("filter", "FORWARD", "-m comment --comment " .. rule_quote(w) .. " -j ACCEPT")
  last:spawn({ "echo", w })
end
-- What no real object can have.
try("link a%d", bridge.add, "a%d")
try("link a/b", bridge.add, "a/b")
try("link a:b", bridge.add, "a:b")
try("link a b", bridge.add, "a b")
try("link newline", bridge.add, "a\nb")
try("link nul", bridge.add, "a\0b")
try("link 16 bytes", bridge.add, string.rep("x", 16))
try("netns newline", netns.add, "a\nid>pw6")
try("netns nul", netns.add, "a\0b")
try("netns slash", netns.add, "a/b")
try("chain 29 bytes", fw.chain, "filter", string.rep("c", 29))
try("chain space", fw.chain, "filter", "a b")
try("rule newline", fw.append, "filter", "FORWARD", "-m comment --comment " .. rule_quote("a\nid>pw7") .. " -j ACCEPT")
try("rule nul", fw.append, "filter", "FORWARD", "-m comment --comment " .. rule_quote("a\0b") .. " -j ACCEPT")
last:spawn({ "echo", "a\nid>pw8" })  -- a line break in an argument is quoted
try("spawn cr", last.spawn, last, { "echo", "a\rb" })
try("spawn nul", last.spawn, last, { "echo", "a\0b" })
try("exec escape", last.exec, last, { "echo", "a\27[2Kb" })
try("sysctl value newline", sysctl.set, "net.ipv4.ip_forward", "1\nid>pw10")
"##;

#[test]
fn a_plan_of_hostile_names_runs_in_bash_and_makes_exactly_those_objects() {
    let d = fresh_dir("quoting-plan");
    // A script file whose name holds a line break and a command substitution.
    let file = d.join("topo\n$(id>pw0)\n.lua");
    std::fs::write(&file, PLAN).unwrap();
    let o = Command::new(BIN).args(["plan", "--name", "hostile"]).arg(&file).current_dir(&d).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let plan = stdout(&o);
    for refused in [
        "link a%d",
        "link a/b",
        "link a:b",
        "link a b",
        "link newline",
        "link nul",
        "link 16 bytes",
        "netns newline",
        "netns nul",
        "netns slash",
        "chain 29 bytes",
        "chain space",
        "rule newline",
        "rule nul",
        "spawn cr",
        "spawn nul",
        "exec escape",
        "sysctl value newline",
    ] {
        assert!(err.contains(&format!("REFUSED {refused}: ")), "{refused} was not refused:\n{err}");
    }
    assert!(err.contains("REFUSED link a%d: ") && err.contains("'%'"), "{err}");
    // Comments are one line each: every line of the plan is a comment, a command,
    // `set -e` or blank, and no line holds the raw script name's parts.
    for l in plan.lines() {
        assert!(!l.starts_with("$(id>pw0)") && l != ".lua" && !l.starts_with(".lua:"), "a comment broke: {l:?}");
    }
    assert!(plan.contains("# netscript plan: the commands that do what `netscript '"), "{plan}");
    assert!(plan.contains("echo 'a\nid>pw8' &\n"), "a line break in an argument is quoted: {plan}");
    let path = d.join("plan.sh");
    std::fs::write(&path, &plan).unwrap();
    let o = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(o.status.success(), "bash -n: {}", stderr(&o));

    // Run it, for real, inside a sandbox; then look at what is there.
    let sb = Sandbox::new();
    let o = sb
        .sh(&format!("cd '{}' && bash plan.sh >/dev/null 2>/tmp/plan-err; echo rc=$?; cat /tmp/plan-err", d.display()));
    let out = stdout(&o);
    assert!(out.starts_with("rc=0\n"), "{out}");
    let left = others(&d, &["plan.sh", "topo\n$(id>pw0)\n.lua"]);
    assert!(left.is_empty(), "the plan ran something else: {left:?}");
    let links: serde_json::Value = serde_json::from_str(&sb.ok("ip -j link show type bridge")).unwrap();
    let mut names: Vec<&str> = links.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap()).collect();
    names.sort();
    let mut want = vec![
        "$(id>pw1)",
        "`id>pw2`",
        ";id>pw3",
        "|id>pw4",
        "&id>pw5",
        "a'b",
        "a\"b",
        "é",
        "{a,b}",
        "$IFS",
        "#c",
        "FOO=1",
        "!!",
        "*",
        "~",
        "a\\b",
        "-rf",
        "up",
        "down",
        "help",
        "name",
        "d",
        "h",
    ];
    want.sort();
    for n in ["up", "down", "help", "name", "d", "h"] {
        let l = sb.ok(&format!("ip -j link show dev {n}"));
        assert!(l.contains("\"mtu\":1400") && l.contains("\"UP\""), "{n}: {l}");
    }
    assert_eq!(names, want);
    for n in ["mtu", "txqlen"] {
        let l = sb.ok(&format!("ip -d -j link show dev {n}"));
        assert!(
            l.contains("\"num_tx_queues\":2,\"num_rx_queues\":2") && l.contains("\"info_kind\":\"veth\""),
            "{n}: {l}"
        );
    }
    let nss = sb.ok("ls /run/netns");
    for n in ["$(id>pw1)", "a b;id>pw2", "'$(id>pw3)'", "é ü", "FOO=1 x"] {
        assert!(nss.lines().any(|l| l == n), "namespace {n:?} missing: {nss}");
    }
    let rules = sb.ok("iptables -S");
    for c in ["$(id>pw1)", "`id>pw2`", ";id>pw3", "|id>pw4", "&id>pw5", "é", "{a,b}", "$IFS", "#c", "FOO=1", "*", "~"]
    {
        assert!(rules.contains(&format!("-N {c}\n")), "chain {c:?} missing:\n{rules}");
    }
    for w in ["$(id>pw1)", "`id>pw2`", ";id>pw3 #", "a b|id>pw4", "-rf /", "é", "%d"] {
        assert!(rules.contains(&format!("--comment \"{w}\" -j ACCEPT")), "rule comment {w} missing:\n{rules}");
    }
}
