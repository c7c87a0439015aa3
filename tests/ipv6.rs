//! IPv6 next to IPv4: examples/ipv6-routed.lua with real traffic (ping, TCP) over
//! IPv6 across a bridge and a router, checked with the system's tools; `down`
//! restores the state exactly; it runs as a normal user in --sandbox; bad family
//! options are refused. (Rollback of each IPv6 primitive: tests/primitives.rs; crash
//! points: tests/faults.rs, module ipv6_routed.)

mod common;
use common::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ipv6-routed.lua");

#[test]
fn the_example_routes_ipv6_and_down_restores_everything() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_ok(&[EXAMPLE]);
    assert!(stdout(&o).contains("reach each other over IPv4 and IPv6"), "{}", stdout(&o));
    // What the kernel holds, read with its own tools.
    let routes = sb.ok("ip -6 -j route show 2001:db8::/32");
    assert!(routes.contains("\"gateway\":\"fd00:31::2\"") && routes.contains("\"protocol\":\"78\""), "{routes}");
    assert!(sb.ok("ip -n c1 -6 -j route show default").contains("\"gateway\":\"fd00:30::1\""));
    let addrs = sb.ok("ip -n c1 -j addr show eth0");
    assert!(addrs.contains("\"local\":\"fd00:30::2\",\"prefixlen\":64,\"scope\":\"global\",\"nodad\":true"), "{addrs}");
    assert_eq!(sb.ok("cat /proc/sys/net/ipv6/conf/all/forwarding").trim(), "1");
    // Real traffic from outside netscript: c2 -> remote over the host, and TCP.
    sb.ok("ip netns exec c2 ping -6 -c1 -W2 2001:db8::1");
    sb.ok("ip netns exec c2 python3 -c \"import socket; socket.create_connection(('2001:db8::1', 8080), 2).close()\"");
    // Without forwarding, the routed ping fails (the check above can fail).
    sb.ok("sysctl -qw net.ipv6.conf.all.forwarding=0");
    assert!(!sb.sh("ip netns exec c2 ping -6 -c1 -W1 2001:db8::1").status.success(), "forwarding is off");
    sb.ok("sysctl -qw net.ipv6.conf.all.forwarding=1");
    sb.down("ipv6-routed");
    sb.assert_unchanged(&before, "after down");
    assert!(sb.processes("8080").is_empty(), "the server is stopped");
}

#[test]
fn the_example_runs_as_nobody_in_a_sandbox() {
    let src = std::fs::read_to_string(EXAMPLE).unwrap();
    let o = as_nobody(&["--sandbox", &script_file("ipv6-routed.lua", &src)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("reach each other over IPv4 and IPv6"), "{}", stdout(&o));
}

#[test]
fn family_and_nodad_options_are_checked() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    for (lua, want) in [
        (
            r#"route.add("10.0.0.0/8", {dev = "lo", family = "ipv6"})"#,
            r#"10.0.0.0/8 is an IPv4 route; use {family = "ipv4"}"#,
        ),
        (
            r#"route.add("fd00::/8", {dev = "lo", family = "ipv4"})"#,
            r#"fd00::/8 is an IPv6 route; use {family = "ipv6"}"#,
        ),
        (r#"route.add("default", {dev = "lo", family = "inet6"})"#, r#"family "inet6" is not "ipv4" or "ipv6""#),
        (r#"route.add("default", {via = "fd00::1", family = "ipv4"})"#, "is an IPv6 route"),
        (r#"link.get("lo"):addr("fd00::1/64", {dad = true})"#, r#"unknown option "dad" (known options: nodad)"#),
        (r#"link.get("lo"):addr("fd00::1/64", {nodad = "no"})"#, "option nodad: expected a boolean"),
    ] {
        let o = sb.run_lua_expect("family.lua", lua, 1);
        assert!(stderr(&o).contains(want), "{lua}: {}", stderr(&o));
    }
    // An IPv6 default route through a link, with family.
    sb.run_lua_expect(
        "family_ok.lua",
        r#"route.add("default", {dev = "lo", family = "ipv6", metric = 7}); error("stop")"#,
        1,
    );
    sb.assert_unchanged(&before, "after refused and rolled back runs");
    let ok = r#"route.add("default", {dev = "lo", family = "ipv6", metric = 7})"#;
    sb.run_ok(&[&script_file("family_v6.lua", ok)]);
    assert!(sb.ok("ip -6 -j route show default").contains("\"metric\":7"));
    sb.down("family_v6");
    sb.assert_unchanged(&before, "after down");
}
