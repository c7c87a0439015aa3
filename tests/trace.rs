//! `Netns:trace`: the article's failing moments, explained from the real kernel
//! (examples/why.lua), a trace that leaves nothing behind, and a trace in a rootless
//! sandbox. Every run is inside a throwaway sandbox.

mod common;
use common::*;

const WHY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/why.lua");

/// Two containers on a bridge, forwarding on, FORWARD policy DROP.
const TWO: &str = r#"
local br = bridge.add("ns_br")
br:addr("175.18.0.1/24"):up()
for i = 1, 2 do
  local ns = netns.add("ns" .. i)
  ns:link("lo"):up()
  local veth0, host_end = veth.add("veth0", "veth_ns_" .. i, { ns = ns })
  veth0:addr(("175.18.0.%d/24"):format(i + 1)):up()
  host_end:master(br):up()
  route.add("default", { via = "175.18.0.1", ns = ns })
end
sysctl.set("net.ipv4.ip_forward", 1)
sysctl.set("net.bridge.bridge-nf-call-iptables", 1)
fw.policy("filter", "FORWARD", "DROP")
local ns1, host = netns.get("ns1"), netns.host()
"#;

/// Everything a trace could leave behind, in every namespace, as the tools print it.
const STATE: &str = r#"
local function state()
  local sh = [==[for n in "" $(ip netns list | cut -d' ' -f1); do
    p=""; [ -n "$n" ] && p="ip netns exec $n"
    echo "== $n"; $p nft list ruleset | sed 's/counter packets [0-9]* bytes [0-9]*//'
    $p iptables-save | grep -v '^#' | sed 's/[[][0-9]*:[0-9]*[]]//'
    $p ip -4 -j route; $p ip -4 -j addr; $p ip -j link | sed "s/\"operstate\":\"[A-Z]*\"//g"
  done]==]
  return host:exec(sh, { check = true }).stdout
end
"#;

#[test]
fn why_example_names_each_reason_and_deciding_rule() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_ok(&[WHY]);
    let out = stdout(&o);
    for want in [
        "trace: dropped by the FORWARD policy DROP in the host namespace",
        ">> host     FORWARD     ns_br -> ns_br       filter/FORWARD policy DROP",
        "trace: no route back from laptop to 175.18.0.2",
        ">> laptop   ROUTING                          no route to 175.18.0.2: Network is unreachable",
        "trace: delivered to laptop (10.6.213.149)",
        "trace: connection refused by the host namespace: nothing listens on port 8088",
        "trace: dropped as a martian: 127.0.0.1 is not routable without route_localnet on ns_br in the host namespace",
        "[-t nat -A OUTPUT -d 127.0.0.0/8 -p tcp -m comment --comment \"netscript:why\" -m tcp --dport 8088 -j DNAT --to-destination 175.18.0.2:80] DNAT",
        "[-t nat -A POSTROUTING -s 127.0.0.0/8 -o ns_br -m comment --comment \"netscript:why\" -j MASQUERADE] MASQUERADE",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Delivered, through the DNAT in PREROUTING, and the answer's way back shown.
    let laptop = out.split("== the laptop -> the host's mapped port 8088").nth(1).unwrap();
    let laptop = laptop.split("\n\n").next().unwrap();
    assert!(laptop.contains("trace: delivered to ns1 (175.18.0.2:80)"), "{laptop}");
    assert!(laptop.contains("-- the answer's way back --\n   ns1      OUTPUT      out veth0"), "{laptop}");
    assert!(laptop.contains("laptop   PREROUTING  in eth0              seen  (10.211.55.32:8088 -> "), "{laptop}");
    // No trace table is left in any namespace while the topology is up.
    let left = sb.ok("for n in '' $(ip netns list | cut -d' ' -f1); do ip netns exec ${n:-$$} true 2>/dev/null; \
                      if [ -n \"$n\" ]; then ip netns exec $n nft list tables; else nft list tables; fi; done");
    assert!(!left.contains("netscript_trace"), "{left}");
    sb.down("why");
    sb.assert_unchanged(&before, "after down");

    // Under plan the same script (with its asserts) runs on the model, and its trace
    // gives the kernel's reasons; the one known difference is a port nothing listens
    // on (the model takes every port as listened on).
    let p = plan_why();
    let kernel = reasons(&out);
    let model = reasons(&p);
    assert_eq!(kernel.len(), 8, "{out}");
    assert_eq!(kernel.iter().map(|k| &k.0).collect::<Vec<_>>(), model.iter().map(|m| &m.0).collect::<Vec<_>>());
    for ((title, k), (_, m)) in kernel.iter().zip(&model) {
        if title == "the host -> its own mapped port, before the OUTPUT rule" {
            assert_eq!(m, "delivered to the host namespace (10.211.55.32:8088)");
            continue;
        }
        assert_eq!(k, m, "{title}: the kernel's reason vs the model's:\n{p}");
    }
}

/// `netscript plan examples/why.lua`: what the script printed (stderr under plan).
fn plan_why() -> String {
    let o = std::process::Command::new(BIN).args(["plan", WHY]).output().unwrap();
    assert!(o.status.success(), "plan of why.lua failed:\n{}", stderr(&o));
    assert!(stdout(&o).contains("# (reads) ip netns exec ns1 ping -n -q -c 1 175.18.0.3   -> dropped by the FORWARD"));
    stderr(&o)
}

/// (moment, reason) of each `== moment` / `   trace: reason` pair in why.lua's output.
fn reasons(out: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut title = None;
    for l in out.lines() {
        if let Some(t) = l.strip_prefix("== ") {
            title = Some(t.to_string());
        } else if let Some(r) = l.strip_prefix("   trace: ")
            && let Some(t) = title.take()
        {
            v.push((t, r.to_string()));
        }
    }
    v
}

/// Plan answers `trace` from its model, hop by hop, with the deciding hop the
/// kernel's trace marks (no root needed).
#[test]
fn plan_traces_the_why_moments_from_its_model() {
    let p = plan_why();
    for want in [
        "not delivered (from the model): dropped by the FORWARD policy DROP in the host namespace",
        ">> host     FORWARD     ns_br -> ns_br       filter/FORWARD policy DROP",
        "not delivered (from the model): no route back from laptop to 175.18.0.2",
        ">> laptop   ROUTING                          no route to 175.18.0.2: Network is unreachable",
        "delivered (from the model): delivered to laptop (10.6.213.149)",
        "dropped as a martian: 127.0.0.1 is not routable without route_localnet on ns_br in the host namespace",
        ">> host     ROUTING                          martian: 127.0.0.1 -> 175.18.0.2 out ns_br, route_localnet=0",
        "[-t nat -A POSTROUTING -m comment --comment netscript:why -s 127.0.0.0/8 -o ns_br -j MASQUERADE] MASQUERADE",
        "note: the model takes every port as listened on",
    ] {
        assert!(p.contains(want), "missing {want:?} in:\n{p}");
    }
    // The masqueraded ping's answer comes back, shown hop by hop.
    let m = p.split("== ns1 -> the laptop, with MASQUERADE").nth(1).unwrap().split("\n\n").next().unwrap();
    assert!(m.contains("-- the answer's way back --\n   laptop   OUTPUT      out eth0"), "{m}");
    assert!(m.contains("rewrite: 175.18.0.2 -> 10.6.213.149 => 10.211.55.32 -> 10.6.213.149"), "{m}");
}

#[test]
fn trace_leaves_nothing_behind_and_names_the_policy() {
    let sb = Sandbox::new();
    let script = format!(
        "{TWO}{STATE}{}",
        r#"
local before = state()
local t = ns1:trace("175.18.0.3", { timeout = 0.5 })
local function same(a, b)
  if a == b then return end
  local seen, diff = {}, {}
  for l in a:gmatch("[^\n]+") do seen[l] = true end
  for l in b:gmatch("[^\n]+") do if not seen[l] then diff[#diff + 1] = "+ " .. l end end
  error("a trace changed the state:\n" .. table.concat(diff, "\n"))
end
same(before, state())
assert(t.delivered == false, "not delivered")
assert(t.reason == "dropped by the FORWARD policy DROP in the host namespace", t.reason)
assert(t.source == "kernel", t.source)
local d
for _, h in ipairs(t.hops) do if h.deciding then d = h end end
assert(d and d.ns == "host" and d.table == "filter" and d.chain == "FORWARD" and d.rule == nil
  and d.verdict == "policy DROP" and d.iif == "ns_br" and d.oif == "ns_br", tostring(t))
assert(t.hops[1].ns == "ns1" and t.hops[1].hook == "OUTPUT" and t.hops[1].oif == "veth0", tostring(t))
-- A rule that drops it is named as written.
fw.insert("filter", "FORWARD", "-d 175.18.0.3 -p icmp -j DROP")
t = ns1:trace("175.18.0.3", { timeout = 0.5 })
assert(t.reason == 'dropped by `iptables -t filter -A FORWARD -d 175.18.0.3/32 -p icmp -m comment --comment "netscript:nothing-behind" -j DROP` in the host namespace', t.reason)
fw.policy("filter", "FORWARD", "ACCEPT")
fw.delete("filter", "FORWARD", "-d 175.18.0.3 -p icmp -j DROP")
t = ns1:trace("175.18.0.3")
assert(t.delivered and t.reason == "delivered to ns2 (175.18.0.3)", tostring(t))
local back = false
for _, h in ipairs(t.hops) do if h.reply and h.ns == "ns1" and h.iif == "veth0" then back = true end end
assert(back, "the echo reply's way back:\n" .. tostring(t))
-- No route: ns1 without its default route cannot reach another subnet.
print(tostring(t))
"#
    );
    let before = sb.snapshot();
    let o = sb.run_lua_expect("nothing-behind.lua", &script, 0);
    assert!(stdout(&o).contains(">> ns2      PREROUTING  in veth0"), "{}", stdout(&o));
    sb.down("nothing-behind");
    sb.assert_unchanged(&before, "after down");
}

#[test]
fn no_route_from_the_namespace() {
    let sb = Sandbox::new();
    let script = format!(
        "{TWO}{}",
        r#"
local lone = netns.add("lone")
lone:link("lo"):up()
local t = lone:trace("175.18.0.3", { tcp = 80 })
assert(not t.delivered and t.reason:find("^no route from lone to 175.18.0.3"), t.reason)
assert(t.hops[#t.hops].deciding and t.hops[#t.hops].hook == "ROUTING", tostring(t))
"#
    );
    sb.run_lua_expect("noroute.lua", &script, 0);
    sb.down("noroute");
}

#[test]
fn rootless_sandbox_traces_as_nobody() {
    let script = script_file(
        "trace-rootless.lua",
        &format!("{TWO}{}", "local t = ns1:trace('175.18.0.3'); print(t.reason); print(t)\n"),
    );
    let o = as_nobody(&["--sandbox", &script]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("dropped by the FORWARD policy DROP in the host namespace"), "{}", stdout(&o));
}

/// The nftables tables of every namespace in the sandbox (the host's first).
fn nft_tables(sb: &Sandbox) -> String {
    sb.ok("nft list tables; for n in $(ip netns list | cut -d' ' -f1); do echo \"== $n\"; ip netns exec $n nft list tables; done")
}

/// `netscript trace TOPOLOGY NS DST [tcp|udp PORT]` on a topology that is up: the
/// kernel's answer, exit code 0 / 1, nothing left behind; refused for a namespace the
/// topology did not make and for a topology that is not up.
#[test]
fn trace_command_on_a_topology_that_is_up() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    sb.run_lua_expect("two.lua", TWO, 0);
    sb.ok("ip netns add stranger");
    // A bridge's operstate follows its ports a moment later (the kernel's linkwatch).
    wait_for(5, "ns_br's operstate to settle", || sb.ok("ip -j link show ns_br").contains("\"operstate\":\"UP\""));
    let up = sb.snapshot();
    let tables = nft_tables(&sb);
    let journal = sb.ok("wc -l < /run/netscript/two/journal.jsonl");

    let o = sb.netscript_expect(&["trace", "two", "ns1", "175.18.0.3"], 1, "dropped");
    let out = stdout(&o);
    assert!(out.starts_with("not delivered: dropped by the FORWARD policy DROP in the host namespace\n"), "{out}");
    assert!(out.contains(">> host     FORWARD     ns_br -> ns_br       filter/FORWARD policy DROP"), "{out}");

    let o = sb.netscript_expect(&["trace", "two", "host", "175.18.0.2", "tcp", "80", "--json"], 1, "refused");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["reason"], "connection refused by ns1: nothing listens on port 80", "{v}");
    assert_eq!(v["source"], "kernel");
    assert!(v["hops"].as_array().unwrap().iter().any(|h| h["ns"] == "ns1" && h["reply"] == true), "{v}");

    let o = sb.netscript_expect(&["trace", "two", "host", "175.18.0.2"], 0, "delivered");
    assert!(stdout(&o).starts_with("delivered: delivered to ns1 (175.18.0.2)\n"), "{}", stdout(&o));

    // Nothing changed: the kernel state, the nftables tables, and the journal holds
    // the trace tables only as undone entries.
    sb.assert_unchanged(&up, "after the traces");
    assert_eq!(nft_tables(&sb), tables);
    let j = sb.ok("cat /run/netscript/two/journal.jsonl");
    assert!(j.lines().count() > journal.trim().parse::<usize>().unwrap(), "the trace tables are journaled");
    let ls = stdout(&sb.run_ok(&["ls", "--json"]));
    assert!(!ls.contains("netscript_trace"), "{ls}");

    // Refused: a namespace the topology did not make, a topology that is not up, a
    // bad probe; nothing changed.
    let o = sb.netscript_expect(&["trace", "two", "stranger", "175.18.0.3"], 2, "not the topology's namespace");
    assert!(stderr(&o).contains("topology \"two\" has no namespace \"stranger\""), "{}", stderr(&o));
    let o = sb.netscript_expect(&["trace", "nope", "ns1", "175.18.0.3"], 2, "not up");
    assert!(stderr(&o).contains("topology \"nope\" is not up"), "{}", stderr(&o));
    assert!(!sb.ok("ls /run/netscript").contains("nope"), "a refused trace left a record");
    let o = sb.netscript_expect(&["trace", "two", "ns1", "175.18.0.3", "tcp"], 2, "no port");
    assert!(stderr(&o).contains("usage: NS DST"), "{}", stderr(&o));
    sb.assert_unchanged(&up, "after the refused traces");

    sb.ok("ip netns del stranger");
    sb.down("two");
    sb.assert_unchanged(&before, "after down");
}

/// `netscript.pingall`: the matrix, printed and returned, each failing pair with its
/// trace's reason; the same matrix under plan; bad input refused.
#[test]
fn pingall_prints_and_returns_the_matrix_with_reasons() {
    let sb = Sandbox::new();
    let script = format!(
        "{TWO}{}",
        r#"
local lone = netns.add("lone")
local r = netscript.pingall({ "ns1", netns.get("ns2"), "host", lone })
assert(r.total == 12 and r.answered == 4, r.answered .. "/" .. r.total)
assert(r.names[3] == "host" and r.addrs[1] == "175.18.0.2" and r.addrs[4] == nil)
assert(r.ok[1][2] == false and r.ok[1][3] == true and r.ok[3][1] == true and r.ok[1][1] == nil)
for _, p in ipairs(r.pairs) do
  if p.from == "ns1" and p.to == "ns2" then
    assert(p.reason == "dropped by the FORWARD policy DROP in the host namespace", p.reason)
    assert(p.trace.hops[#p.trace.hops].deciding)
  end
end
local q = netscript.pingall({ ns1, host }, { tcp = 80, quiet = true, timeout = 0.5 })
if q.pairs[1].trace.source == "kernel" then
  assert(q.answered == 0 and q.pairs[1].reason:find("^connection refused by the host namespace"), q.pairs[1].reason)
else -- the model takes every port as listened on
  assert(q.answered == 2 and q.pairs[1].reason == "delivered to the host namespace (175.18.0.1:80)", q.pairs[1].reason)
end
for _, bad in ipairs({ function() netscript.pingall({ ns1 }) end,
                       function() netscript.pingall({ ns1, "ns1" }) end,
                       function() netscript.pingall({ ns1, host }, { udp = 53 }) end }) do
  local ok, e = pcall(bad)
  assert(not ok and e:find("netscript.pingall: "), tostring(e))
end
"#
    );
    let before = sb.snapshot();
    let o = sb.run_lua_expect("pingall.lua", &script, 0);
    let out = stdout(&o);
    let table = "pingall: 4/12 answered\n     ns1  ns2  host lone\nns1  -    X    ok   X\nns2  X    -    ok   X\n\
                 host ok   ok   -    X\nlone X    X    X    -\n\
                 X ns1 -> ns2 (175.18.0.3): dropped by the FORWARD policy DROP in the host namespace\n\
                 X ns1 -> lone (no address): lone has no IPv4 address to probe\n";
    assert!(out.contains(table), "{out}");
    assert!(out.contains("X lone -> host (175.18.0.1): no route from lone to 175.18.0.1"), "{out}");
    sb.down("pingall");
    sb.assert_unchanged(&before, "after down");

    // Under plan the matrix comes from the model and is the same, except that the
    // model takes every port as listened on.
    let file = script_file("pingall.lua", &script);
    let o = std::process::Command::new(BIN).args(["plan", &file]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(table), "{err}");
}

/// With iptables-legacy the kernel cannot trace the rules: the trace is the model's
/// explanation of what the topology's journal made, marked as such, and why.lua's
/// checks hold (as under plan).
#[test]
fn iptables_legacy_falls_back_to_the_model() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_ok(&["--iptables", "legacy", WHY]);
    let out = stdout(&o);
    for want in [
        "not delivered (from the model): dropped by the FORWARD policy DROP in the host namespace\n\
         note: iptables-legacy rules cannot be traced (nftables tracing sees only iptables-nft rules); \
         this is the model's explanation (as `netscript plan` gives it), not the kernel's\n",
        ">> host     FORWARD     ns_br -> ns_br       filter/FORWARD policy DROP",
        "trace: no route back from laptop to 175.18.0.2",
        "trace: dropped as a martian: 127.0.0.1 is not routable without route_localnet on ns_br in the host namespace",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("not delivered: "), "a kernel trace under iptables-legacy:\n{out}");
    // The reasons are plan's.
    let model = reasons(&plan_why());
    assert_eq!(reasons(&out), model);
    // No trace table was made (the journal has none).
    let j = sb.ok("cat /run/netscript/why/journal.jsonl");
    assert!(!j.contains("TraceOn") && !j.contains("trace_on"), "{j}");
    sb.down("why");
    sb.assert_unchanged(&before, "after down");
}

/// docs/tutorial.md's bridge.lua (its Lua blocks, in order, up to "The whole script
/// now prints") prints what the tutorial says it prints, the reasons of its traces
/// included, in a sandbox; both tutorials show the same traces.
#[test]
fn the_tutorials_bridge_lua_prints_its_traces_as_shown() {
    let root = env!("CARGO_MANIFEST_DIR");
    let md = std::fs::read_to_string(format!("{root}/docs/tutorial.md")).unwrap();
    let start = md.find("Start `bridge.lua` with:").expect("the start of bridge.lua");
    let (body, rest) = md[start..].split_once("The whole script now prints:").expect("the printed output");
    let mut lua = String::new();
    let mut inside = false;
    for l in body.lines() {
        match (l.trim_start(), inside) {
            ("```lua", false) => inside = true,
            ("```", true) => inside = false,
            (_, true) => lua += &format!("{l}\n"),
            _ => {}
        }
    }
    let shown: Vec<&str> = rest
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("$ ") && !l.starts_with("netscript: "))
        .collect();
    assert!(lua.contains("ns1:trace(") && shown.iter().filter(|l| l.contains("why: ")).count() == 2, "{lua}");
    let dir = std::env::temp_dir().join(format!("netscript-tutorial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(format!("{root}/examples/lan.lua"), dir.join("lan.lua")).unwrap();
    std::fs::write(dir.join("bridge.lua"), &lua).unwrap();
    let bridge = dir.join("bridge.lua").display().to_string();
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_ok(&[&bridge]);
    assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), shown, "bridge.lua's output vs the tutorial's");
    // `netscript trace` on the topology that is up shows what the tutorial shows.
    let o = sb.netscript_expect(&["trace", "bridge", "ns1", "10.6.213.149"], 1, "the laptop's answer is dropped");
    let cmd = "$ sudo netscript trace bridge ns1 10.6.213.149\n";
    let block = md.split(cmd).nth(1).expect("the tutorial traces ns1 -> laptop").split("```").next().unwrap();
    let got = stdout(&o);
    for l in block.lines().filter(|l| *l != "...") {
        assert!(got.contains(&format!("{l}\n")), "the tutorial shows {l:?}; netscript trace printed:\n{got}");
    }
    sb.down("bridge");
    sb.assert_unchanged(&before, "after down");
    // The Chinese tutorial shows the same traces (its prose is its own).
    let zh = std::fs::read_to_string(format!("{root}/docs/tutorial.zh.md")).unwrap();
    for l in shown.iter().filter(|l| l.contains("why: ") || l.contains("before: ") || l.contains("DNAT only")) {
        assert!(zh.contains(l), "docs/tutorial.zh.md lacks {l:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
