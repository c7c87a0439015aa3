//! The firewall over IPv6: every `fw.*` function with `{family = "ipv6"}` works on
//! ip6tables (nft and legacy), checked with real traffic (`ping -6` blocked by an
//! ip6tables DROP rule, not by an iptables one), with `ip6tables-save`, through
//! `ip6tables-restore` in a batch, rendered as `ip6tables ...` by -v, plan and show,
//! and rolled back exactly (down, and a failed run); a rule naming an address of the
//! other family is refused, naming the family to use.

mod common;

use common::*;

/// Two namespaces on a veth pair, dual stack. `a` pings `b` over both families.
const TOPOLOGY: &str = r#"
local a, b = netns.add("a"), netns.add("b")
a:link("lo"):up()
b:link("lo"):up()
local ea = veth.add("eth0", "eth0", { ns = a, peer_ns = b })
ea:addr("10.61.0.1/24"):addr("fd00:61::1/64"):up()
link.get("eth0", { ns = b }):addr("10.61.0.2/24"):addr("fd00:61::2/64"):up()
assert(a:ping("fd00:61::2", { timeout = 3 }), "no IPv6 traffic before any rule")
assert(a:ping("10.61.0.2", { timeout = 3 }), "no IPv4 traffic before any rule")
"#;

/// Pings from `a` to `b` run by the system's ping (outside netscript).
fn pings(sb: &Sandbox) -> (bool, bool) {
    let v4 = sb.sh("ip netns exec a ping -4 -c1 -W1 10.61.0.2").status.success();
    let v6 = sb.sh("ip netns exec a ping -6 -c1 -W1 fd00:61::2").status.success();
    (v4, v6)
}

macro_rules! variants {
    ($($name:ident: $flavor:expr,)*) => {$(
        mod $name {
            use super::*;

            #[test]
            fn ip6tables_rules_block_ipv6_only_and_down_restores() {
                ip6tables_rules_block_ipv6_only($flavor);
            }

            #[test]
            fn a_failed_run_rolls_back_ipv6_rules_exactly() {
                failed_run_rolls_back($flavor);
            }
        }
    )*};
}

variants! {
    nft: "nft",
    legacy: "legacy",
}

fn ip6tables_rules_block_ipv6_only(flavor: &str) {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    // The last run's rules, one kind of change each: a user chain with a rule, a
    // policy, an insert at a position, a delete, and a batch of both families.
    let script = format!(
        r#"{TOPOLOGY}
local b = netns.get("b")
local v6 = {{ ns = b, family = "ipv6" }}
-- An iptables (IPv4) DROP of everything leaves IPv6 alone.
fw.append("filter", "INPUT", "-j DROP", {{ ns = b }})
assert(not netns.get("a"):ping("10.61.0.2", {{ timeout = 0.3 }}), "iptables DROP blocks IPv4")
assert(netns.get("a"):ping("fd00:61::2"), "iptables DROP does not block IPv6")
fw.delete("filter", "INPUT", "-j DROP", {{ ns = b }})
-- ip6tables rules: a chain that drops a's echo requests.
fw.chain("filter", "NO_A", v6)
fw.append("filter", "NO_A", "-s fd00:61::1/128 -p ipv6-icmp --icmpv6-type echo-request -j DROP", v6)
fw.append("filter", "INPUT", "-j NO_A", v6)
fw.insert("filter", "INPUT", "-p tcp --dport 9 -j ACCEPT", {{ ns = b, family = "ipv6", pos = 1 }})
fw.policy("filter", "FORWARD", "DROP", v6)
fw.append("filter", "OUTPUT", "-d fd00:61::99/128 -j ACCEPT", v6)
fw.delete("filter", "OUTPUT", "-d fd00:61::99/128 -j ACCEPT", v6)
fw.batch(function()
  fw.append("filter", "INPUT", "-s fd00:61::7/128 -j DROP", v6)
  fw.append("filter", "INPUT", "-s 10.61.0.7/32 -j DROP", {{ ns = b }})
  fw.append("filter", "INPUT", "-s fd00:61::8/128 -j DROP", v6)
  fw.append("filter", "INPUT", "-s 10.61.0.8/32 -j DROP", {{ ns = b }})
end)
assert(not netns.get("a"):ping("fd00:61::2", {{ timeout = 0.3 }}), "ip6tables DROP blocks IPv6")
assert(netns.get("a"):ping("10.61.0.2"), "ip6tables DROP does not block IPv4")
local n6, n4 = 0, 0
for _, l in ipairs(fw.rules("filter", v6)) do if l:match("^%-A") then n6 = n6 + 1 end end
for _, l in ipairs(fw.rules("filter", {{ ns = b }})) do if l:match("^%-A") then n4 = n4 + 1 end end
assert(n6 == 5 and n4 == 2, ("fw.rules: %d ip6tables rules, %d iptables rules"):format(n6, n4))
"#
    );
    // The batch goes through ip6tables-restore: a wrapper on PATH logs each call.
    let dir = std::path::PathBuf::from(script_file(".keep", "")).parent().unwrap().join(format!("fw6-bin-{flavor}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (save6, restore6) = match flavor {
        "nft" => ("ip6tables-nft-save", "ip6tables-nft-restore"),
        _ => ("ip6tables-legacy-save", "ip6tables-legacy-restore"),
    };
    let log = dir.join("restore.log");
    let _ = std::fs::remove_file(&log);
    let wrapper = dir.join(restore6);
    let real = format!("/usr/sbin/{restore6}");
    std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$0 $*\" >> {}\nexec {real} \"$@\"\n", log.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = script_file(&format!("fw6-{flavor}.lua"), &script);
    let o = sb.sh(&format!("PATH={}:$PATH {BIN} -v --iptables {flavor} --name fw6 {path}", dir.display()));
    assert!(o.status.success(), "run: {}{}", stdout(&o), stderr(&o));
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(calls.contains("--noflush"), "the batch went through {restore6}: {calls:?}");
    // -v prints the IPv6 changes as ip6tables commands, the IPv4 ones as iptables.
    let v = stderr(&o) + &stdout(&o);
    for want in [
        "ip netns exec b ip6tables -t filter -N NO_A",
        "ip netns exec b ip6tables -t filter -P FORWARD DROP",
        "ip netns exec b ip6tables -t filter -I INPUT 1 -m comment --comment netscript:fw6 -p tcp --dport 9 -j ACCEPT",
        "ip netns exec b iptables -t filter -A INPUT -m comment --comment netscript:fw6 -s 10.61.0.7/32 -j DROP",
    ] {
        assert!(v.contains(want), "-v lacks {want:?}:\n{v}");
    }
    // The kernel holds them in the ip6tables rule set of the chosen variant.
    let rules6 = sb.ok(&format!("ip netns exec b {save6}"));
    assert!(rules6.contains(":FORWARD DROP"), "{rules6}");
    assert!(rules6.contains("-A NO_A -s fd00:61::1/128"), "{rules6}");
    assert!(rules6.contains("-A INPUT -s fd00:61::8/128 -m comment --comment \"netscript:fw6\" -j DROP"), "{rules6}");
    assert!(!rules6.contains("fd00:61::99"), "the deleted rule is gone: {rules6}");
    // Real traffic, from outside netscript: IPv6 blocked, IPv4 not.
    assert_eq!(pings(&sb), (true, false), "ip6tables blocks ping -6 only");
    // show names the ip6tables rule set, and its history the ip6tables commands.
    let show = stdout(&sb.run_ok(&["show", "fw6"]));
    assert!(show.contains("rule    ip6tables filter NO_A -s fd00:61::1/128"), "{show}");
    assert!(show.contains("policy  ip6tables filter FORWARD DROP"), "{show}");
    assert!(show.contains("rule    filter INPUT -s 10.61.0.7/32 -j DROP"), "{show}");
    let log = stdout(&sb.run_ok(&["show", "--log", "fw6"]));
    assert!(log.contains("ip netns exec b ip6tables -t filter -N NO_A"), "{log}");
    // down restores both rule sets exactly, in either variant.
    sb.down("fw6");
    sb.assert_unchanged(&before, "after down");
}

fn failed_run_rolls_back(flavor: &str) {
    let sb = Sandbox::new();
    // Someone else's ip6tables rule and policy stay as they are.
    let save6 = if flavor == "nft" { "ip6tables-nft" } else { "ip6tables-legacy" };
    sb.ok(&format!("{save6} -A INPUT -s fd00:99::1 -j ACCEPT && {save6} -P OUTPUT DROP && {save6} -P OUTPUT ACCEPT"));
    let before = sb.snapshot();
    let script = r#"
local v6 = { family = "ipv6" }
fw.chain("filter", "MINE", v6)
fw.append("filter", "MINE", "-s fd00:1::/64 -j RETURN", v6)
fw.insert("filter", "INPUT", "-j MINE", v6)
fw.delete("filter", "INPUT", "-s fd00:99::1 -j ACCEPT", v6)
fw.policy("filter", "FORWARD", "DROP", v6)
fw.append("nat", "POSTROUTING", "-s fd00:1::/64 -j MASQUERADE", v6)
fw.batch(function()
  fw.append("filter", "OUTPUT", "-d fd00:2::1 -j DROP", v6)
  fw.append("filter", "OUTPUT", "-d 10.2.0.1 -j DROP")
  fw.policy("filter", "OUTPUT", "DROP", v6)
end)
error("stop here")
"#;
    let path = script_file(&format!("fw6_fail-{flavor}.lua"), script);
    let o = sb.netscript_expect(&["--iptables", flavor, &path], 1, "a failed run");
    assert!(stderr(&o).contains("stop here"), "{}", stderr(&o));
    sb.assert_unchanged(&before, "after the rollback of a failed run");
}

/// A rule that names an address of the other family is refused before anything is
/// journaled, naming the family to use; so is an unknown family.
#[test]
fn rules_with_addresses_of_the_other_family_are_refused() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    for (call, want) in [
        (
            r#"fw.append("filter", "INPUT", "-s fd00::1 -j DROP")"#,
            r#"IPv6 address; IPv6 rules go to ip6tables: use family "ipv6""#,
        ),
        (r#"fw.insert("nat", "PREROUTING", "-p tcp -j DNAT --to-destination [fd00::2]:80")"#, r#"use family "ipv6""#),
        (r#"fw.delete("filter", "INPUT", "-d fd00::/64 -j DROP")"#, r#"use family "ipv6""#),
        (
            r#"fw.append("filter", "INPUT", "-s 10.0.0.1 -j DROP", {family = "ipv6"})"#,
            r#"IPv4 address, but this rule is for ip6tables (family "ipv6"); IPv4 rules go to iptables: use family "ipv4""#,
        ),
        (
            r#"fw.append("nat", "POSTROUTING", "-s 10.0.0.0/24 -j MASQUERADE", {family = "ipv6"})"#,
            r#"use family "ipv4""#,
        ),
        (r#"fw.batch(function() fw.append("filter", "INPUT", "-s fd00::1 -j DROP") end)"#, r#"use family "ipv6""#),
        (r#"fw.append("filter", "INPUT", "-j DROP", {family = "inet6"})"#, r#"unknown family "inet6""#),
        (r#"fw.rules("filter", {family = 6})"#, r#"unknown family "6""#),
        (r#"fw.policy("filter", "INPUT", "DROP", {famly = "ipv6"})"#, "famly"),
    ] {
        let o = sb.run_lua_expect(
            "other_family.lua",
            &format!("fw.chain('filter', 'X', {{family = 'ipv6'}})\n{call}\n"),
            1,
        );
        assert!(stderr(&o).contains(want) && stderr(&o).contains("other_family.lua:2:"), "{call}: {}", stderr(&o));
        sb.assert_unchanged(&before, call);
    }
}

/// plan renders ip6tables commands, and its model answers IPv6 checks from the
/// ip6tables tables it keeps per namespace (an iptables rule does not count): the
/// script's own asserts pass in the plan as in the real run.
#[test]
fn plan_models_ip6tables_per_namespace() {
    let sb = Sandbox::new();
    let script = format!(
        r#"{TOPOLOGY}
local a = netns.get("a")
fw.append("filter", "INPUT", "-p icmp -j DROP", {{ ns = "b" }})
assert(a:ping("fd00:61::2"), "an iptables rule does not block IPv6")
fw.append("filter", "INPUT", "-p ipv6-icmp -j DROP", {{ ns = "b", family = "ipv6" }})
assert(not a:ping("fd00:61::2", {{ timeout = 0.3 }}), "an ip6tables rule blocks IPv6")
fw.delete("filter", "INPUT", "-p ipv6-icmp -j DROP", {{ ns = "b", family = "ipv6" }})
assert(a:ping("fd00:61::2"), "deleted")
"#
    );
    let path = script_file("plan6.lua", &script);
    let plan = stdout(&sb.run_ok(&["plan", &path]));
    assert!(
        plan.contains(
            "ip netns exec b ip6tables -t filter -A INPUT -m comment --comment netscript:plan6 -p ipv6-icmp -j DROP"
        ),
        "{plan}"
    );
    assert!(plan.contains("ip netns exec b iptables -t filter -A INPUT"), "{plan}");
    // The real run agrees with the plan's answers.
    let before = sb.snapshot();
    sb.run_ok(&["--ephemeral", &path]);
    sb.assert_unchanged(&before, "after an ephemeral run");
}

/// gc finds a marked ip6tables rule no record accounts for.
#[test]
fn gc_finds_marked_ip6tables_leftovers() {
    let sb = Sandbox::new();
    sb.ok("ip6tables -A INPUT -m comment --comment netscript:ghost -s fd00::5 -j DROP");
    let o = stdout(&sb.run_ok(&["gc"]));
    assert!(o.contains("ip6tables rule") && o.contains("netscript:ghost"), "{o}");
    sb.run_ok(&["gc", "--yes"]);
    assert!(!sb.ok("ip6tables-save").contains("ghost"));
}
