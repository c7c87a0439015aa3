//! Topologies that outlive the script: records, `ls` (with drift), `show`
//! (text, JSON, Graphviz), `gc`, `--ephemeral`, the per-name lock and the state files.

mod common;
use common::*;

const PART1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/article-part1.lua");

#[test]
fn ls_show_and_drift() {
    let sb = Sandbox::new();
    let o = sb.netscript(&["ls"]);
    assert!(stdout(&o).contains("no topologies are up"), "{}", stdout(&o));
    assert!(sb.netscript(&[PART1]).status.success());
    let o = sb.netscript(&["ls"]);
    let out = stdout(&o);
    assert!(out.contains("article-part1") && out.contains(" 20 ") && out.contains(" up "), "{out}");

    // Something changed behind netscript's back: ls says what.
    sb.ok("ip link set veth_ns_2 down && ip netns exec ns1 sysctl -qw net.ipv4.ip_forward=1");
    let out = stdout(&sb.netscript(&["ls"]));
    assert!(out.contains("drift(1)") && out.contains("not in place: ip link set veth_ns_2 up"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&sb.netscript(&["ls", "--json"]))).unwrap();
    assert_eq!(json[0]["name"], "article-part1");
    assert_eq!(json[0]["changes"], 20);
    assert_eq!(json[0]["drift"].as_array().unwrap().len(), 1);

    // `show`: what it owns now, by namespace, with the kernel's link state and the drift.
    let out = stdout(&sb.netscript(&["show", "article-part1"]));
    assert!(out.contains("20 changes in effect, 1 thing changed since (below)"), "{out}");
    assert!(out.contains("\nnetns ns1:\n  link    lo     existing up\n  link    veth0  veth     up      175.18.0.2/24 peer host/veth_ns_1\n  route   default via 175.18.0.1\n"), "{out}");
    assert!(out.contains("  link    veth_ns_2  veth     down    master ns_br peer ns2/veth0\n"), "{out}");
    assert!(out.contains("  link    ns_br      bridge   up      175.18.0.1/24\n"), "{out}");
    assert!(out.contains("  sysctl  net.ipv4.ip_forward = 1\n"), "{out}");
    assert!(out.contains("drift:\n  not in place: ip link set veth_ns_2 up\n"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&sb.netscript(&["show", "article-part1", "--json"]))).unwrap();
    let short: serde_json::Value =
        serde_json::from_str(&stdout(&sb.netscript(&["show", "-j", "article-part1"]))).unwrap();
    assert_eq!(json, short, "-j is --json");
    assert_eq!(
        json["drift"],
        serde_json::json!([{"kind": "not_in_place", "ns": "host", "command": "ip link set veth_ns_2 up"}])
    );
    let nss: Vec<&str> = json["namespaces"].as_array().unwrap().iter().map(|n| n["ns"].as_str().unwrap()).collect();
    assert_eq!(nss, ["host", "ns1", "ns2"]);
    assert_eq!(json["namespaces"][1]["links"][1]["addrs"], serde_json::json!(["175.18.0.2/24"]));
    assert_eq!(json["namespaces"][1]["links"][1]["peer"], "host/veth_ns_1");
    assert!(!stdout(&sb.netscript(&["show", "article-part1", "--json"])).contains("null"), "one spelling: \"host\"");
    let ls: serde_json::Value = serde_json::from_str(&stdout(&sb.netscript(&["ls", "-j"]))).unwrap();
    assert_eq!(ls[0]["drift"], json["drift"], "ls gives drift as data too");
    // --log: the history, as commands.
    let out = stdout(&sb.netscript(&["show", "--log", "article-part1"]));
    assert!(out.contains("\n    ip link add ns_br type bridge\n    ip addr add 175.18.0.1/24 dev ns_br\n"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&sb.netscript(&["show", "article-part1", "--log", "--json"]))).unwrap();
    assert_eq!(json["changes"].as_array().unwrap().len(), 20);
    assert_eq!(json["changes"][0]["command"], "ip link add ns_br type bridge");
    assert_eq!(json["changes"][0]["ns"], "host");
    let dot = stdout(&sb.netscript(&["show", "article-part1", "--dot"]));
    assert!(dot.starts_with("graph \"article-part1\" {"), "{dot}");
    assert!(
        dot.contains("\"ns1/veth0\" -- \"host/veth_ns_1\"")
            && dot.contains("175.18.0.2/24")
            && dot.contains("label=\"netns ns2\""),
        "{dot}"
    );
    assert!(dot.contains("\"host/veth_ns_2\" [label=\"veth_ns_2\\nveth\", color=gray, style=dashed]"), "{dot}");
    assert!(dot.contains("\"ns1/#routes\" [shape=note, label=\"routes\\ldefault via 175.18.0.1\\l\"]"), "{dot}");
    assert!(dot.contains("subgraph cluster_legend"), "{dot}");
    let o = sb.netscript(&["show", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("topology \"nope\" is not up"), "{}", stderr(&o));

    sb.down("article-part1");
    assert!(stdout(&sb.netscript(&["ls"])).contains("no topologies are up"));
}

/// `show --log` is the history in the order it was made, one command a line, each
/// naming its namespace (`-n ns1`): the same order as its JSON, and bash replays it
/// after `down` (before, it was grouped by namespace: a veth was put on the bridge
/// before it was made).
#[test]
fn log_is_in_the_order_it_was_made_and_replays() {
    let sb = Sandbox::new();
    sb.run_ok(&[PART1]);
    let out = stdout(&sb.netscript(&["show", "--log", "article-part1"]));
    let (header, body) = out.split_once('\n').unwrap();
    assert!(header.starts_with(&format!("topology article-part1 (from {PART1}, ")), "{header}");
    assert!(header.ends_with("): the changes in effect, in the order they were made"), "{header}");
    let veth = |n: u8| {
        format!(
            "ip link add veth_ns_{n} numtxqueues 1 numrxqueues 1 type veth peer name veth0 numtxqueues 1 numrxqueues 1 netns ns{n}"
        )
    };
    let mut want = vec![
        "ip link add ns_br type bridge".to_string(),
        "ip addr add 175.18.0.1/24 dev ns_br".into(),
        "ip link set ns_br up".into(),
    ];
    for n in 1..=2u8 {
        want.extend([
            format!("ip netns add ns{n}"),
            format!("ip -n ns{n} link set lo up"),
            veth(n),
            format!("ip -n ns{n} addr add 175.18.0.{}/24 dev veth0", n + 1),
            format!("ip -n ns{n} link set veth0 up"),
            format!("ip link set veth_ns_{n} master ns_br"),
            format!("ip link set veth_ns_{n} up"),
            format!("ip -n ns{n} route add default via 175.18.0.1"),
        ]);
    }
    want.push("sysctl -w net.ipv4.ip_forward=1".into());
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines, want.iter().map(|c| format!("    {c}")).collect::<Vec<_>>(), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&sb.netscript(&["show", "--log", "-j", "article-part1"]))).unwrap();
    let commands: Vec<&str> =
        json["changes"].as_array().unwrap().iter().map(|c| c["command"].as_str().unwrap()).collect();
    assert_eq!(commands, want, "text and JSON in the same order");
    sb.down("article-part1");
    sb.ok(&format!("cat > /run/replay.sh <<'EOF'\n{body}EOF\nbash -e /run/replay.sh >/dev/null"));
    assert!(sb.ok("ip -j link show veth_ns_2").contains("\"master\":\"ns_br\""));
    sb.ok("ip netns exec ns1 ping -c1 -W2 175.18.0.3");
}

/// A script path with a line break or tab is printed escaped (`\n`, `\t`, as `plan`
/// prints it) in `ls`, `show` and `show --log`, so that each stays one line; the
/// JSON has it as it is. Before, it was printed raw and broke the layout.
#[test]
fn a_script_path_with_control_characters_is_printed_escaped() {
    let sb = Sandbox::new();
    let tmp = script_file("unused.lua", "");
    let dir = std::path::Path::new(&tmp).parent().unwrap().join("a\nb\tc");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("nl.lua");
    std::fs::write(&script, "bridge.add(\"br0\")\n").unwrap();
    let raw = script.display().to_string();
    let shown = raw.replace('\n', "\\n").replace('\t', "\\t");
    sb.run_ok(&[&raw]);
    let ls = stdout(&sb.run_ok(&["ls"]));
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines.len(), 2, "{ls}");
    assert!(
        lines[1].starts_with("nl                         1 up         ") && lines[1].ends_with(&format!(" {shown}")),
        "{ls}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&sb.run_ok(&["ls", "-j"]))).unwrap();
    assert_eq!(json[0]["script"], raw.as_str());
    let show = stdout(&sb.run_ok(&["show", "nl"]));
    assert!(show.starts_with(&format!("topology nl (from {shown}, ")), "{show}");
    assert_eq!(show.lines().count(), 3, "{show}");
    let log = stdout(&sb.run_ok(&["show", "--log", "nl"]));
    assert!(log.starts_with(&format!("topology nl (from {shown}, ")), "{log}");
    assert_eq!(log.lines().collect::<Vec<_>>()[1..], ["    ip link add br0 type bridge"], "{log}");
    sb.down("nl");
}

/// The article's whole network: the FORWARD policy was set DROP, ACCEPT, DROP and two
/// servers run. `show` gives the policy once and each server on one short line; the
/// history stays under --log.
#[test]
fn show_is_what_is_owned_now_and_log_the_history() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.run_ok(&[concat!(env!("CARGO_MANIFEST_DIR"), "/examples/docker-bridge.lua")]);
    let out = stdout(&sb.netscript(&["show", "docker-bridge"]));
    assert_eq!(out.matches("policy  filter FORWARD").count(), 1, "{out}");
    assert!(out.contains("  policy  filter FORWARD DROP\n"), "{out}");
    assert_eq!(sb.ok("iptables -S FORWARD | head -1").trim(), "-P FORWARD DROP", "what show says is the kernel's");
    let procs: Vec<&str> = out.lines().filter(|l| l.starts_with("  process ")).collect();
    assert_eq!(procs.len(), 2, "{out}");
    for p in &procs {
        assert!(p.contains(" running: python3 -c ") && p.ends_with('…') && p.chars().count() < 100, "{p}");
    }
    assert!(out.lines().all(|l| l.chars().count() < 200), "no server's source text: {out}");
    assert!(out.contains("netns ns1:\n  link    veth0  veth     up      175.18.0.2/24 peer host/veth_ns_1\n"), "{out}");
    let log = stdout(&sb.netscript(&["show", "--log", "docker-bridge"]));
    let policies: Vec<&str> =
        log.lines().filter(|l| l.contains("iptables -t filter -P FORWARD")).map(str::trim).collect();
    assert_eq!(
        policies,
        [
            "iptables -t filter -P FORWARD DROP",
            "iptables -t filter -P FORWARD ACCEPT",
            "iptables -t filter -P FORWARD DROP"
        ]
    );
    // A server stopped behind its back: show says so, in text and JSON.
    let pid = sb.processes("http.server")[0];
    sb.ok(&format!("kill {pid}"));
    wait_for(5, "the server stops", || sb.processes("http.server").len() == 1);
    let out = stdout(&sb.netscript(&["show", "docker-bridge"]));
    assert!(out.contains(&format!("  process {pid} stopped: python3")), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&sb.netscript(&["show", "-j", "docker-bridge"]))).unwrap();
    let drift = json["drift"].as_array().unwrap();
    assert!(
        drift.iter().any(|d| d["kind"] == "not_in_place" && d["command"].as_str().unwrap().contains("python3")),
        "{drift:?}"
    );
    let dot = stdout(&sb.netscript(&["show", "docker-bridge", "--dot"]));
    assert!(dot.contains("\"host/#nat\" [shape=note, label=\"NAT and published ports\\lmasquerade -s 175.18.0.0/24\\lpublish tcp 8088 → 175.18.0.2:80\\l"), "{dot}");
    assert!(dot.contains("\"ns1/#pid") && dot.contains("shape=ellipse"), "{dot}");
    sb.down("docker-bridge");
    sb.assert_unchanged(&before, "after down");
}

#[test]
fn gc_removes_only_marked_orphans() {
    let sb = Sandbox::new();
    assert!(sb.netscript(&["--name", "keep", PART1]).status.success());
    // Orphans: marked for a topology with no record. Unmarked look-alikes stay.
    sb.ok("ip link add ghost0 type veth peer name ghost1 && ip link set ghost0 alias netscript:ghost \
           && ip link add plain0 type veth peer name plain1 \
           && iptables -A FORWARD -s 10.1.1.1 -m comment --comment netscript:ghost -j ACCEPT \
           && iptables -A FORWARD -s 10.2.2.2 -m comment --comment someone-else -j ACCEPT \
           && ip link add gd type veth peer name gd2 && ip addr add 10.3.0.1/24 dev gd && ip link set gd up \
           && ip route add 10.4.0.0/16 via 10.3.0.2 proto 78");
    // A marked address whose topology's record is gone (iproute2 before 6.3 cannot
    // add one by hand): on gd, beside its unmarked address.
    let addr = script_file("ghostaddr.lua", "link.get(\"gd\"):addr(\"10.5.0.1/24\")\n");
    assert!(sb.netscript(&[&addr]).status.success());
    sb.ok("rm -r /run/netscript/ghostaddr");
    // A namespace whose topology's record is gone (its lo carries the mark), beside
    // an unmarked one: the orphan is the namespace, not its lo.
    let ns = script_file("ghostns.lua", "netns.add(\"gns\"):link(\"lo\"):up()\n");
    assert!(sb.netscript(&[&ns]).status.success());
    sb.ok("rm -r /run/netscript/ghostns && ip netns add plainns");
    // Root qdiscs: one with netscript's handle that no record holds (on an unmarked
    // link), one with another handle, and one a recorded topology set.
    sb.ok("ip link add q0 type veth peer name q1 \
           && tc qdisc add dev q0 root handle 4e53: tbf rate 1mbit burst 32kb latency 50ms \
           && tc qdisc add dev q1 root handle 1: tbf rate 1mbit burst 32kb latency 50ms");
    let shaped = script_file("qkeep.lua", "link.get(\"gd2\"):shape({ rate = \"1mbit\" })\n");
    assert!(sb.netscript(&["--name", "qkeep", &shaped]).status.success());
    // A marked process of a topology with no record (started in the sandbox).
    sb.ok("NETSCRIPT_OWNER=netscript:ghost:1:1 setsid sleep 1000 >/dev/null 2>&1 </dev/null &");
    // Not a process group leader (a child that inherited the mark).
    sb.ok("NETSCRIPT_OWNER=netscript:ghost:2:1 sleep 1001 >/dev/null 2>&1 </dev/null &");
    // A mark netscript never makes, planted: as a pattern for the printed stop
    // command (`grep -lzx`) it matched every process; gc neither lists nor stops it
    // (before, it listed it and printed that command: checked).
    sb.ok("NETSCRIPT_OWNER='netscript:zz\\|.*' sleep 1002 >/dev/null 2>&1 </dev/null &");
    // Both have exec'd (their command line is sleep's own, not the forked shell's).
    let running = |arg: &str| {
        sb.processes(arg).iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == format!("sleep\0{arg}\0").as_bytes())
        })
    };
    wait_for(10, "the marked sleeps to start", || running("1000") && running("1001") && running("1002"));
    let out = stdout(&sb.netscript(&["gc"]));
    assert!(!out.contains("sleep 1002") && !out.contains("zz"), "{out}");
    assert!(out.contains("remove with: grep -lzxF -e 'NETSCRIPT_OWNER=netscript:ghost:1:1' /proc/"), "{out}");
    assert!(out.contains("link \"ghost0\"") && out.contains("10.1.1.1") && out.contains("route 10.4.0.0/16"), "{out}");
    assert!(out.contains("`sleep 1000` (marked netscript:ghost:1:1)"), "{out}");
    assert!(out.contains("address 10.5.0.1/24 on \"gd\" in the host namespace"), "{out}");
    assert!(out.contains("namespace \"gns\" (marked for topology \"ghostns\")"), "{out}");
    assert!(!out.contains("plainns") && !out.contains("link \"lo\""), "{out}");
    assert!(out.contains("root qdisc 4e53: on \"q0\" in the host namespace"), "{out}");
    assert!(!out.contains("\"q1\"") && !out.contains("on \"gd2\""), "another handle, or recorded: {out}");
    assert!(!out.contains("10.3.0.1") && !out.contains("175.18.0."), "unmarked or recorded addresses: {out}");
    assert!(!out.contains("plain0") && !out.contains("someone-else") && !out.contains("veth_ns_1"), "{out}");
    sb.ok("ip link show ghost0"); // listing removes nothing
    let o = sb.netscript(&["gc", "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(sb.sh("ip link show ghost0").status.code() != Some(0));
    assert!(!sb.ok("iptables -S FORWARD").contains("10.1.1.1"));
    assert!(sb.ok("iptables -S FORWARD").contains("10.2.2.2"));
    assert_eq!(sb.ok("ip route show 10.4.0.0/16"), "");
    let gd = sb.ok("ip -j addr show gd");
    assert!(gd.contains("\"local\":\"10.3.0.1\"") && !gd.contains("10.5.0.1"), "{gd}");
    assert!(sb.processes("sleep 1000").is_empty(), "the marked process is stopped");
    assert!(sb.processes("sleep 1001").is_empty(), "the marked non-leader process is stopped");
    assert!(!sb.processes("sleep 1002").is_empty(), "the planted mark's process is left alone");
    let nss = sb.ok("ip netns list");
    assert!(!nss.contains("gns") && nss.contains("plainns"), "{nss}");
    let root = |dev: &str| sb.ok(&format!("tc -j qdisc show dev {dev} root"));
    assert!(!root("q0").contains("\"tbf\""), "{}", root("q0"));
    assert!(root("q1").contains("\"handle\":\"1:\""), "{}", root("q1"));
    assert!(root("gd2").contains("\"tbf\""), "{}", root("gd2"));
    sb.ok("ip link show plain0 && ip link show veth_ns_1 && ip netns exec ns1 ping -c1 -W1 175.18.0.3");
    assert!(stdout(&sb.netscript(&["gc"])).contains("nothing to collect"));
    sb.down("qkeep");
    assert!(!root("gd2").contains("\"tbf\""), "{}", root("gd2"));
    sb.down("keep");
}

#[test]
fn ephemeral_rolls_back_on_success() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.netscript(&["--ephemeral", PART1]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("reach the bridge"));
    sb.assert_unchanged(&before, "after an ephemeral run");
    assert!(stdout(&sb.netscript(&["ls"])).contains("no topologies are up"));
}

#[test]
fn one_process_per_name_and_private_state_files() {
    let sb = Sandbox::new();
    let script =
        script_file("slow.lua", "bridge.add(\"br0\")\nio.open('/run/slow-ready','w'):close()\nnetscript.sleep(3)\n");
    let first = sb.spawn_netscript(&[&script], &[]);
    wait_for(20, "the first run", || sb.sh("test -e /run/slow-ready").status.success());
    let second = sb.netscript(&[&script]);
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(stderr(&second).contains("being changed by another netscript process"), "{}", stderr(&second));
    assert!(stderr(&second).contains("nothing was changed"), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("wait for it to end, or run this one under another --name"),
        "{}",
        stderr(&second)
    );
    // down and trace of it are refused the same way (exit 2), without the errno and
    // without --name, which they do not take (before: exit 1, "EAGAIN: Try again").
    for args in [vec!["down", "slow"], vec!["trace", "slow", "host", "10.9.9.9"]] {
        let o = sb.netscript(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("is being changed by another netscript process right now"), "{args:?}: {e}");
        assert!(!e.contains("--name") && !e.contains("EAGAIN"), "{args:?}: {e}");
    }
    // A different name runs side by side.
    let other = sb.run_lua("other.lua", "bridge.add(\"br1\")\n");
    assert!(other.status.success(), "{}", stderr(&other));
    assert!(first.wait_with_output().unwrap().status.success());

    assert_eq!(sb.ok("stat -c %a /run/netscript/slow").trim(), "700");
    assert_eq!(sb.ok("stat -c %a /run/netscript/slow/journal.jsonl").trim(), "600");
    assert_eq!(sb.ok("stat -c %a /run/netscript").trim(), "700");

    // Names are validated; a state file that does not parse is reported, not trusted.
    for bad in ["../evil", "a/b", ".."] {
        let o = sb.netscript(&["down", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    sb.ok("echo 'not json' >> /run/netscript/slow/journal.jsonl");
    let o = sb.netscript(&["down", "slow"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("does not parse"), "{}", stderr(&o));
    sb.ok("ip link show br0"); // nothing was undone from an untrusted file
}

/// `--replace`: a topology that is up is taken down (exactly) and the script runs
/// again, in one command; one that is not up just runs. Not with --sandbox.
#[test]
fn replace_takes_the_topology_down_and_runs_the_script_again() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "replaced.lua",
        "local n = ... or \"a\"\nbridge.add(\"br_\" .. n):addr(\"10.7.0.1/24\"):up()\nsysctl.set(\"net.ipv4.ip_forward\", 1)\n",
    );
    sb.run_ok(&["--replace", &script, "a"]); // not up yet: just runs
    sb.ok("ip link show br_a");
    let o = sb.netscript_expect(&[&script, "b"], 2, "a second run without --replace");
    assert!(stderr(&o).contains("(or run again with --replace)"), "{}", stderr(&o));
    let o = sb.run_ok(&["--replace", &script, "b"]);
    let err = stderr(&o);
    assert!(
        err.contains("--replace: taking topology \"replaced\" down first")
            && err.contains("down replaced: undid 4 changes"),
        "{err}"
    );
    assert!(sb.sh("ip link show br_a").status.code() != Some(0), "the first run's bridge is gone");
    assert!(sb.ok("ip -j addr show br_b").contains("\"local\":\"10.7.0.1\""));
    let ls: serde_json::Value = serde_json::from_str(&stdout(&sb.netscript(&["ls", "--json"]))).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(ls[0]["changes"], 4);
    // The option may follow the script's name too.
    sb.run_ok(&[&script, "--replace", "c"]);
    sb.ok("ip link show br_c && ! ip link show br_b 2>/dev/null");
    let o = sb.netscript_expect(&["--replace", "--sandbox", &script], 2, "--replace with --sandbox");
    assert!(stderr(&o).contains("a --sandbox run starts from nothing"), "{}", stderr(&o));
    sb.ok("ip link show br_c");
    sb.down("replaced");
    sb.assert_unchanged(&before, "after down");
}

/// An empty NETSCRIPT_STATE_DIR is unset, as an empty XDG variable is: the records
/// are in /run/netscript (before: "cannot open : not found").
#[test]
fn an_empty_state_dir_variable_is_the_default() {
    let sb = Sandbox::new();
    let o = sb.sh(&format!("NETSCRIPT_STATE_DIR= {BIN} ls"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "no topologies are up (records in /run/netscript)\n");
}
