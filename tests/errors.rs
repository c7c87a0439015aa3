//! Bad input is caught before the kernel is touched, with a message that names the
//! call, the object and the reason at the script's line; nothing is left behind.

mod common;
use common::*;

/// One `#[test]` per case (`cargo test --test errors veth_name_taken`): the Lua
/// line, run after two changes, and the fragments its error must contain.
macro_rules! bad_input {
    ($($name:ident: $line:expr => [$($want:expr),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                bad_input_gives_a_clear_error_and_leaves_nothing_behind(stringify!($name), $line, &[$($want),*]);
            }
        )*
    };
}

bad_input! {
    addr_prefix_too_long: r#"link.get("lo"):addr("175.18.0.2/33")"# =>
        [":3: ", "addr(\"175.18.0.2/33\")", "malformed CIDR", "prefix length"];
    addr_not_an_ip: r#"link.get("lo"):addr("175.18.0.300/24")"# => [":3: ", "malformed CIDR", "not an IP address"];
    veth_name_too_long: r#"veth.add("averyveryverylongname", "x")"# => [":3: ", "veth.add(", "21 bytes", "at most 15"];
    unknown_option: r#"bridge.add("b0", {nss = "x"})"# =>
        [":3: ", "bridge.add(\"b0\")", "unknown option \"nss\"", "known options: ns"];
    veth_queues_zero: r#"veth.add("q0", "q1", {queues = 0})"# =>
        [":3: ", "veth.add(\"q0\", \"q1\")", "queues = 0: a veth end has 1 to 4096 queues"];
    veth_queues_too_many: r#"veth.add("q0", "q1", {queues = 4097})"# =>
        [":3: ", "veth.add(\"q0\", \"q1\")", "queues = 4097: a veth end has 1 to 4096 queues"];
    veth_queues_not_a_count: r#"veth.add("q0", "q1", {queues = "many"})"# =>
        [":3: ", "veth.add(\"q0\", \"q1\")", "queues", "non-negative integer"];
    peer_ns_missing: r#"veth.add("a0", "b0", {peer_ns = "nope"})"# => [":3: ", "no namespace named \"nope\""];
    netns_get_missing: r#"netns.get("nope")"# => [":3: ", "netns.get(\"nope\")", "no namespace named \"nope\""];
    veth_name_taken: r#"veth.add("va", "other")"# =>
        [":3: ", "veth.add(\"va\", \"other\")", "a link named \"va\" already exists in the host namespace"];
    netns_name_taken: r#"netns.add("ns1")"# => [":3: ", "a namespace named \"ns1\" already exists"];
    netns_named_host: r#"netns.add("host")"# => [":3: ", "netns.add(\"host\")", "names the host namespace"];
    // Names and routes the kernel refuses (EEXIST) before netscript looked: the error
    // still says which name or route is taken.
    bridge_name_taken_outside: r#"bridge.add("lo")"# =>
        [":3: ", "bridge.add(\"lo\")", "a link named \"lo\" already exists in the host namespace"];
    veth_peer_name_taken_outside: r#"veth.add("x1", "lo")"# =>
        [":3: ", "a link named \"lo\" already exists in the host namespace"];
    route_taken: r#"link.get("va"):up(); route.add("10.9.0.0/24", {dev = "va"}); route.add("10.9.0.0/24", {dev = "va"})"# =>
        [":3: ", "route.add(", "already has a route to 10.9.0.0/24"];
    addr_taken: r#"link.get("va"):addr("10.1.0.1/24"):addr("10.1.0.1/24")"# =>
        [":3: ", "10.1.0.1/24 is already on link \"va\""];
    link_get_missing: r#"link.get("nope")"# => [":3: ", "no link named \"nope\" in the host namespace"];
    // The kernel took 0.0.0.0/0 and added nothing, and netscript journaled it.
    addr_unspecified: r#"link.get("va"):addr("0.0.0.0/0")"# =>
        [":3: ", "0.0.0.0/0 is not an address a link can have (0.0.0.0 is the unspecified address)"];
    addr_unspecified_v6: r#"link.get("va"):addr("::/0")"# => [":3: ", "::/0 is not an address a link can have"];
    route_host_bits_set: r#"route.add("10.1.2.3/16", {dev = "va"})"# => [":3: ", "host bits set", "10.1.0.0/16"];
    route_gateway_unreachable: r#"route.add("default", {via = "10.99.0.1"})"# => [":3: ", "network unreachable"];
    fw_policy_bad_target: r#"fw.policy("filter", "FORWARD", "REJECT")"# => [":3: ", "ACCEPT or DROP"];
    fw_append_no_chain: r#"fw.append("nat", "NOCHAIN", "-j ACCEPT")"# => [":3: ", "has no chain NOCHAIN"];
    fw_append_bad_target: r#"fw.append("nat", "POSTROUTING", "-j NOPE")"# => [":3: ", "fw.append(", "NOPE"];
    fw_rule_with_a_command: r#"fw.append("filter", "INPUT", "-A INPUT -j ACCEPT")"# => [":3: ", "rule word \"-A\" is iptables' -A/--append option"];
    sysctl_get_missing: r#"sysctl.get("net.ipv4.nope")"# => [":3: ", "no sysctl named net.ipv4.nope"];
    link_del_not_owned: r#"link.get("lo"):del()"# => [":3: ", "not created by this topology"];
    netns_del_not_owned: r#"netns.get("pre"):del()"# => [":3: ", "was not created by this run"];
    netns_add_takes_no_options: r#"netns.add("x", { ns = "pre" })"# => [":3: ", "netns.add(\"x\")", "takes no options"];
    link_up_takes_no_options: r#"link.get("va"):up({})"# => [":3: ", "Link(\"va\"):up()", "takes no options"];
    link_in_a_namespace_takes_no_more: r#"netns.get("ns1"):link("lo"):mtu(1400, 2)"# =>
        [":3: ", "Link(\"lo\" in ns1):mtu(1400)", "more arguments than it takes"];
    link_info_takes_no_options: r#"link.get("va"):info({})"# => [":3: ", "Link(\"va\"):info()", "takes no options"];
    netns_list_takes_no_arguments: r#"netns.list("x")"# => [":3: ", "netns.list()", "more arguments than it takes"];
    // Options split over two tables: the second would be dropped by Lua (the route
    // made in the host instead of ns1).
    options_in_two_tables: r#"route.add("10.9.0.0/24", {dev = "va"}, {ns = "ns1"})"# =>
        [":3: ", "route.add(\"10.9.0.0/24\")", "more arguments than it takes", "options go in one table"];
    docker_options_in_two_tables: r#"require("netscript.docker").network({ name = "nb", subnet = "10.5.0.0/24" }, { icc = false })"# =>
        [":3: ", "docker.network: unexpected extra argument: more arguments than it takes"];
    trace_from_an_ipv6_source: r#"netns.get("ns1"):trace("10.0.0.1", {src = "::1"})"# =>
        [":3: ", "trace(\"10.0.0.1\")", "trace is IPv4 only (src = ::1)"];
    // Option values of the wrong type name the option and both types.
    option_wrong_type: r#"netns.get("ns1"):ping("127.0.0.1", {count = "many"})"# =>
        [":3: ", "ping(\"127.0.0.1\")", "option count: expected a non-negative integer, got string"];
    option_ns_not_a_namespace: r#"bridge.add("b0", {ns = 5})"# =>
        [":3: ", "bridge.add(\"b0\")", "option ns: expected a Netns or a namespace name, got integer"];
    option_dev_not_a_link: r#"route.add("10.9.0.0/24", {dev = netns.get("ns1")})"# =>
        [":3: ", "route.add(", "option dev: expected a Link or a link name, got Netns"];
    option_port_out_of_range: r#"link.add("x0", "vxlan", {id = 1, port = 70000})"# =>
        [":3: ", "option port: expected an integer from 0 to 65535, got 70000"];
    // An out-of-range or fractional number is shown, not only its type.
    option_count_negative: r#"netns.get("ns1"):ping("127.0.0.1", {count = -1})"# =>
        ["option_count_negative.lua:3: Netns(\"ns1\"):ping(\"127.0.0.1\"): option count: expected a non-negative integer, got -1"];
    option_count_not_whole: r#"netns.get("ns1"):ping("127.0.0.1", {count = 1.5})"# =>
        ["option_count_not_whole.lua:3: Netns(\"ns1\"):ping(\"127.0.0.1\"): option count: expected a non-negative integer, got 1.5"];
    tcp_port_out_of_range: r#"netns.host():tcp("127.0.0.1", 70000)"# =>
        ["tcp_port_out_of_range.lua:3: bad argument #3 to Netns:tcp: expected an integer from 0 to 65535, got 70000"];
    mtu_negative: r#"link.get("va"):mtu(-1)"# =>
        ["mtu_negative.lua:3: bad argument #2 to Link:mtu: expected a non-negative integer, got -1"];
    option_not_for_this_kind: r#"link.add("d0", "dummy", {parent = "va"})"# =>
        [":3: ", "option parent does not apply to dummy links (dummy takes: ns)"];
}

/// What options accept besides their own type: a handle or a name for `ns` / `dev`,
/// and the conversions Lua itself makes (a numeric string for a number, a number
/// for a string).
#[test]
fn options_take_handles_names_and_lua_conversions() {
    let sb = Sandbox::new();
    let o = sb.run_lua(
        "opts.lua",
        r#"local n = netns.add("o1")
local a, b = veth.add("oa", "ob", {peer_ns = n})
veth.add("oc", "od", {ns = "o1", peer_ns = netns.host()})
a:addr("10.7.0.1/24"):up()
b:addr("10.7.0.2/24"):up()
route.add("10.8.0.0/24", {dev = a, metric = "7"})
route.add("10.9.0.0/24", {dev = "oa"})
assert(n:ping("10.7.0.1", {count = "2", timeout = "2"}), "ping with converted options")
"#,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    sb.ok("ip -n o1 link show ob && ip -n o1 link show oc && ip link show od");
    let routes = sb.ok("ip -j route show 10.8.0.0/24");
    assert!(routes.contains("\"metric\":7") && routes.contains("\"dev\":\"oa\""), "{routes}");
    sb.down("opts");
}

fn bad_input_gives_a_clear_error_and_leaves_nothing_behind(name: &str, line: &str, want: &[&str]) {
    let sb = Sandbox::new();
    sb.ok("ip netns add pre");
    let before = sb.snapshot();
    // Two changes first, so "nothing left behind" means something.
    let src = format!("netns.add(\"ns1\")\nveth.add(\"va\", \"vb\")\n{line}\n");
    let o = sb.run_lua_expect(&format!("{name}.lua"), &src, 1);
    let err = stderr(&o);
    let missing: Vec<&&str> = want.iter().filter(|w| !err.contains(**w)).collect();
    assert!(missing.is_empty(), "{line}\n  the error lacks {missing:?}:\n{err}");
    sb.assert_unchanged(&before, line);
}

#[test]
fn argument_errors_pcall_and_os_exit() {
    let sb = Sandbox::new();
    let o = sb.run_lua("args.lua", "netns.add(\"ns1\")\nveth.add(\"a\")\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("args.lua:2: bad argument #2 to veth.add: expected a string, got nil"),
        "{}",
        stderr(&o)
    );
    let o = sb.run_lua(
        "pcall.lua",
        r#"local ok, err = pcall(function() veth.add("averyveryverylongname", "x") end)
assert(not ok and type(err) == "string" and err:find("pcall.lua:1: veth.add", 1, true), tostring(err))
local ok2, err2 = pcall(bridge.add, "b0", { 1 })
assert(not ok2 and err2:find("without a name at position 1", 1, true), err2)
-- A function handed straight to pcall / xpcall that blames its caller
-- (error(msg, 2), as netscript.docker does) names the script's line, not
-- netscript's wrapper around pcall.
local docker = require("netscript.docker")
local ok3, err3 = pcall(docker.network, 5)
assert(not ok3 and err3:find("^[^ ]*pcall.lua:9: docker.network: give a table"), err3)
local function need(x) if not x then error("need: give x", 2) end end
local ok4, err4 = pcall(need)
assert(not ok4 and err4:find("^[^ ]*pcall.lua:12: need: give x"), err4)
local ok5, err5 = xpcall(docker.network, function(m) return "handled " .. m end, 5)
assert(not ok5 and err5:find("^handled [^ ]*pcall.lua:14: docker.network"), err5)
assert(not select(2, pcall(error, "plain")):find("[netscript]", 1, true))
bridge.add("kept")
pcall(function() os.exit(0) end)
error("os.exit inside pcall must end the script")
"#,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    sb.ok("ip link show kept");
    sb.down("pcall");
    let o = sb.run_lua("exit3.lua", "bridge.add(\"b3\")\nos.exit(3)\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("os.exit(3)"), "{}", stderr(&o));
    assert!(sb.sh("ip link show b3").status.code() != Some(0), "os.exit(3) rolled back");
}

/// Lua's own functions that netscript wraps (io.popen, os.execute, reading
/// stdin) and the C-module refusals speak as plain Lua would, naming the script's
/// line and the function by its own name, never netscript's wrapper.
#[test]
fn wrapped_lua_functions_name_the_script_line_and_themselves() {
    let sb = Sandbox::new();
    let o = sb.run_lua(
        "wrapped.lua",
        r#"local ok, err = pcall(io.popen)
assert(not ok and err:find("wrapped.lua:1: bad argument #1 to 'popen'", 1, true), err)
ok, err = pcall(function() os.execute({}) end)
assert(not ok and err:find("wrapped.lua:3: bad argument #1 to 'execute'", 1, true), err)
ok, err = pcall(function() io.stdin:read("x") end)
assert(not ok and err:find("wrapped.lua:5: bad argument #2 to 'read'", 1, true), err)
ok, err = pcall(require, "no_such_module_here")
assert(not ok and err:find("no C modules (netscript loads Lua modules only)", 1, true), err)
assert(not err:find("safe mode", 1, true), err)
ok, err = pcall(package.loadlib, "x", "y")
assert(not ok and err:find("wrapped.lua:10: package.loadlib: netscript loads no C code", 1, true), err)
io.popen()
"#,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("wrapped.lua:12: bad argument #1 to 'popen' (string expected, got no value)"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("[netscript]"), "{}", stderr(&o));
    // The same under --safe, whose own wrappers limit io.open and loadfile.
    let script = script_file(
        "wrapped-safe.lua",
        r#"local ok, err = pcall(io.open, {})
assert(not ok and err:find("wrapped-safe.lua:1: bad argument #1 to 'open'", 1, true), err)
ok, err = pcall(loadfile, {})
assert(not ok and err:find("wrapped-safe.lua:3: bad argument #1 to 'loadfile'", 1, true), err)
io.open({})
"#,
    );
    let o = sb.netscript(&["--safe", &script]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrapped-safe.lua:5: bad argument #1 to 'open'"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("[netscript"), "{}", stderr(&o));
}

#[test]
fn a_refused_rule_in_a_batch_names_the_rule_and_leaves_nothing() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "batch.lua",
        r#"bridge.add("b0")
fw.batch(function()
  fw.append("filter", "FORWARD", "-s 10.1.1.1 -j ACCEPT")
  fw.append("filter", "FORWARD", "-j NO_SUCH_CHAIN")
  fw.append("nat", "POSTROUTING", "-s 10.1.1.0/24 -j MASQUERADE")
end)
"#,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    // The error names the line of the refused rule, not of the batch.
    assert!(
        err.contains(
            "batch.lua:4: fw.append(\"filter\", \"FORWARD\", \"-j NO_SUCH_CHAIN\"): iptables -t filter -A FORWARD"
        ) && err.contains("NO_SUCH_CHAIN"),
        "{err}"
    );
    sb.assert_unchanged(&before, "after a refused rule in a batch");
    // A failing batch body: its queued changes are never made; nesting is refused.
    let o = sb.run_lua(
        "batch2.lua",
        "fw.batch(function() fw.append(\"filter\", \"FORWARD\", \"-j ACCEPT\"); error(\"body fails\") end)\n",
    );
    assert!(stderr(&o).contains("body fails"), "{}", stderr(&o));
    sb.assert_unchanged(&before, "after a failing batch body");
    let o = sb.run_lua("batch3.lua", "fw.batch(function() fw.batch(function() end) end)\n");
    assert!(stderr(&o).contains("cannot be nested"), "{}", stderr(&o));
}

/// Without fw.batch: the rules are queued and made together (one iptables-restore
/// per table) at the end of the script; a refused rule's error still names its line.
#[test]
fn a_refused_rule_in_a_plain_script_names_its_line_and_leaves_nothing() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "plain.lua",
        r#"bridge.add("b0")
fw.append("nat", "POSTROUTING", "-s 10.1.1.0/24 -j MASQUERADE")
fw.append("filter", "FORWARD", "-s 10.1.1.1 -j ACCEPT")
fw.append("filter", "FORWARD", "-j NO_SUCH_CHAIN")
fw.append("nat", "POSTROUTING", "-s 10.1.2.0/24 -j MASQUERADE")
bridge.add("b1")
"#,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "plain.lua:4: fw.append(\"filter\", \"FORWARD\", \"-j NO_SUCH_CHAIN\"): iptables -t filter -A FORWARD"
        ) && err.contains("NO_SUCH_CHAIN"),
        "{err}"
    );
    // b0, the two rules before the refused one, b1; the rule after it was not made.
    assert!(err.contains("undid 4 changes"), "{err}");
    assert_same(&before, &sb.snapshot(), "after a refused rule in a plain script");
}

/// A refused rule in an implicit batch: the changes before it are made, the refused
/// one and those after it are not (one made together with earlier ones of its table
/// is taken back) and are journaled as not made; `down` restores the state exactly.
#[test]
fn after_a_refused_queued_rule_nothing_later_is_made_and_down_is_exact() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "keep.lua",
        r#"fw.policy("filter", "FORWARD", "DROP")
assert(#fw.rules("filter") == 3) -- a read: the policy is made here
local ok, err = pcall(function()
  fw.append("nat", "POSTROUTING", "-s 10.1.1.0/24 -j MASQUERADE")
  fw.append("filter", "FORWARD", "-s 10.1.1.1 -j ACCEPT")
  fw.append("filter", "FORWARD", "-j NO_SUCH_CHAIN")
  fw.append("nat", "POSTROUTING", "-s 10.1.2.0/24 -j MASQUERADE")
  fw.policy("filter", "FORWARD", "ACCEPT")
end)
assert(not ok and err:find("keep.lua:6: fw.append", 1, true), tostring(err))
"#,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rules = sb.ok("iptables-save");
    assert!(rules.contains("-A POSTROUTING -s 10.1.1.0/24"), "{rules}");
    assert!(rules.contains("-A FORWARD -s 10.1.1.1/32"), "{rules}");
    assert!(rules.contains(":FORWARD DROP"), "{rules}");
    assert!(!rules.contains("10.1.2.0/24") && !rules.contains("NO_SUCH_CHAIN"), "made after the refusal:\n{rules}");
    let journal = sb.ok("cat /run/netscript/keep/journal.jsonl");
    let failed = journal.lines().filter(|l| l.contains(r#""t":"failed""#)).count();
    let done = journal.lines().filter(|l| l.contains(r#""t":"done""#)).count();
    assert_eq!((done, failed), (3, 3), "{journal}");
    let d = sb.netscript(&["down", "keep"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert!(stderr(&d).contains("undid 3 changes"), "{}", stderr(&d));
    assert_same(&before, &sb.snapshot(), "after down");
}

#[test]
fn a_failed_primitive_in_the_middle_undoes_the_earlier_ones() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "mid.lua",
        r#"local n = netns.add("ns1")
local a, b = veth.add("veth0", "veth_ns_1", {peer_ns = n})
a:addr("175.18.0.1/24"):up()
sysctl.set("net.ipv4.ip_forward", "1")
fw.policy("filter", "FORWARD", "DROP")
b:addr("not-an-address")
"#,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("mid.lua:6:") && err.contains("malformed CIDR"), "{err}");
    assert!(err.contains("undid 6 changes"), "{err}");
    sb.assert_unchanged(&before, "after a failed primitive");
}

#[test]
fn usage_errors_exit_2_and_help_teaches() {
    let o = std::process::Command::new(BIN).arg("/nonexistent/topo.lua").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such script"));
    let o = std::process::Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    // Options go before or after the command word.
    let state = std::env::temp_dir().join(format!("netscript-cli-{}", std::process::id()));
    let st = state.display().to_string();
    for args in [vec!["-v", "--state-dir", &st, "down", "nothing"], vec!["down", "-v", "--state-dir", &st, "nothing"]] {
        let o = std::process::Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("\"nothing\" is not up"), "{args:?}: {}", stderr(&o));
    }
    // Run-only options are refused where they mean nothing.
    let o = std::process::Command::new(BIN).args(["--sandbox", "ls"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("apply to running a script"), "{}", stderr(&o));
    let o = std::process::Command::new(BIN).arg("--help").output().unwrap();
    let help = stdout(&o);
    for w in ["--sandbox", "--wait", "--name", "--iptables", "down", "Exit codes", "rolled back"] {
        assert!(help.contains(w), "--help lacks {w}:\n{help}");
    }
    let o = std::process::Command::new(BIN).arg("--version").output().unwrap();
    assert!(stdout(&o).starts_with("netscript "));
}

#[test]
fn without_root_or_sandbox_the_error_says_so() {
    let path = script_file("eperm.lua", "bridge.add(\"br0\")\n");
    let state = std::env::temp_dir().join(format!("netscript-eperm-{}", std::process::id()));
    let o = as_nobody(&["--state-dir", &state.display().to_string(), &path]);
    // Refused before anything ran: exit 2, saying what would work.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("needs root") && err.contains("sudo") && err.contains("--sandbox"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
}

/// `link:master(br)` is held back one call and made with the `up` that follows in one
/// request. A master the kernel refuses (a bridge cannot be a bridge's port) is the
/// error, named at its own line even when `up` is on the next one; the `up` is not
/// made, and the rollback leaves the kernel as it was.
#[test]
fn a_refused_master_held_for_up_names_its_own_line() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "pair.lua",
        r#"local a = bridge.add("brA")
local b = bridge.add("brB")
b:master(a)
b:up()
"#,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"pair.lua:3: Link("brB"):master("brA"): ip link set brB master brA: "#), "{err}");
    assert!(!err.contains("pair.lua:4:"), "{err}");
    sb.assert_unchanged(&before, "after the refused master");
    // Paired and accepted: the port is on the bridge and up, from one `:master():up()`;
    // a master followed by something else is made before it.
    let o = sb.run_lua(
        "pair2.lua",
        r#"local br = bridge.add("brC")
local p = veth.add("pa", "pb")
p:master(br):up()
local q = link.get("pb")
q:master(br)
assert(tostring(q):find("master brC", 1, true), tostring(q))
q:up()
"#,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = sb.ok("ip -j link show master brC");
    assert!(j.contains("\"ifname\":\"pa\"") && j.contains("\"ifname\":\"pb\""), "{j}");
    assert!(sb.ok("ip -j link show pa").contains("\"UP\""), "pa is up");
    sb.down("pair2");
    sb.assert_unchanged(&before, "after down");
}

/// A refused `up` after a master made in the same request: the master stays made
/// (journaled done), the `up` is the error at its line, and rollback undoes the
/// master exactly (fault injection refuses the second change of the pair).
#[test]
fn a_refused_up_after_its_master_names_the_up_and_rolls_back() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "pairup.lua",
        r#"local br = bridge.add("brD")
local p = veth.add("qa", "qb")
p:master(br):up()
"#,
    );
    // Changes: bridge, veth, master, up: the 4th fails.
    let o = sb.spawn_netscript(&[&script], &[("NETSCRIPT_FAIL_AFTER", "3")]).wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"pairup.lua:3: Link("qa"):up(): ip link set qa up: injected failure at change 4"#), "{err}");
    // The master was made (and journaled so): three changes to undo.
    assert!(err.contains("undid 3 changes"), "{err}");
    sb.assert_unchanged(&before, "after the refused up");
}
