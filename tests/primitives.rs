//! Every mutating primitive: it has its effect (checked with `ip -j`, /proc/sys,
//! iptables-save), `netscript down` restores the kernel state exactly, and the same
//! script ending in `error()` is rolled back to the same state.

mod common;
use common::*;

struct Case {
    name: &'static str,
    /// Pre-existing state made with the system's tools before the run.
    setup: &'static str,
    /// The Lua that makes the change.
    lua: &'static str,
    /// Shell checks (inside the sandbox) that the change happened; must exit 0.
    effect: &'static str,
}

/// One `#[test]` per case, named after it (`cargo test --test primitives fw_batch`).
macro_rules! cases {
    ($($name:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        $(
            #[test]
            fn $name() {
                run_case(&Case { name: stringify!($name), $($field: $value),* });
            }
        )*
    };
}

cases! {
    netns_add {
        setup: "",
        lua: r#"local n = netns.add("ns1"); assert(n.name == "ns1")"#,
        effect: "ip netns list | grep -qx 'ns1' && ip -n ns1 -j link show lo | grep -q '\"operstate\":\"DOWN\"'",
    }
    netns_del_own {
        setup: "",
        lua: r#"netns.add("keep"); local n = netns.add("gone"); n:del()"#,
        effect: "ip netns list | grep -qx keep && ! ip netns list | grep -q gone",
    }
    veth_add_host {
        setup: "",
        lua: r#"local a, b = veth.add("va", "vb"); assert(a.name == "va" and b.name == "vb")"#,
        effect: "ip -j -d link show va | grep -q '\"info_kind\":\"veth\"' && ip -j link show vb | grep -q '\"ifalias\":\"netscript:veth_add_host\"'",
    }
    veth_add_peer_in_ns {
        setup: "",
        lua: r#"local n = netns.add("ns1"); veth.add("veth_ns_1", "veth0", {peer_ns = n})"#,
        effect: "ip -j link show veth_ns_1 >/dev/null && ip -n ns1 -j link show veth0 >/dev/null && ! ip link show veth0 2>/dev/null",
    }
    veth_add_both_in_ns {
        setup: "ip netns add pre",
        lua: r#"veth.add("x0", "x1", {ns = "pre", peer_ns = netns.get("pre")})"#,
        effect: "ip -n pre link show x0 && ip -n pre link show x1",
    }
    veth_add_one_queue_per_end {
        // The kernel's own default is one queue per CPU (two here, cut back to one
        // in use); netscript makes each end with the one.
        setup: "",
        lua: r#"local n = netns.add("ns1"); veth.add("va", "vb", {peer_ns = n})"#,
        effect: "ip -d -j link show va | grep -q '\"num_tx_queues\":1,\"num_rx_queues\":1' \
                 && ip -n ns1 -d -j link show vb | grep -q '\"num_tx_queues\":1,\"num_rx_queues\":1'",
    }
    veth_add_queues {
        // Every queue asked for is in use (the sandbox's sysfs lists its links' queues).
        setup: "",
        lua: r#"local n = netns.add("ns1"); veth.add("eth0", "vq", {ns = n, peer_ns = netns.host(), queues = 3})"#,
        effect: "ip -d -j link show vq | grep -q '\"num_tx_queues\":3,\"num_rx_queues\":3' \
                 && ip -n ns1 -d -j link show eth0 | grep -q '\"num_tx_queues\":3,\"num_rx_queues\":3' \
                 && [ \"$(ls /sys/class/net/vq/queues | tr '\\n' ' ')\" = 'rx-0 rx-1 rx-2 tx-0 tx-1 tx-2 ' ]",
    }
    bridge_add {
        setup: "",
        lua: r#"bridge.add("ns_br")"#,
        effect: "ip -j -d link show ns_br | grep -q '\"info_kind\":\"bridge\"' && ip -j link show ns_br | grep -q '\"operstate\":\"DOWN\"'",
    }
    link_up_preexisting {
        setup: "ip link add d0 type veth peer name d0p",
        lua: r#"link.get("d0"):up()"#,
        effect: "ip -j link show d0 | grep -q '\"flags\":\\[[^]]*\"UP\"'",
    }
    link_down_preexisting {
        setup: "ip link add d0 type veth peer name d0p && ip link set d0 up",
        lua: r#"link.get("d0"):down()"#,
        effect: "! ip -j link show d0 | grep -q '\"flags\":\\[[^]]*\"UP\"'",
    }
    link_addr_v4_v6 {
        // Both ends up: IPv6 is configured on d0 before the run (an IPv6 address on
        // a link without carrier makes the kernel add a multicast route of its own).
        setup: "ip link add d0 type veth peer name d0p && ip link set d0p up && ip link set d0 up",
        lua: r#"link.get("d0"):addr("175.18.0.1/24"):addr("fd00:1::1/64")"#,
        effect: "ip -j addr show d0 | grep -q '\"local\":\"175.18.0.1\",\"prefixlen\":24' && ip -j addr show d0 | grep -q 'fd00:1::1'",
    }
    link_addr_v6_nodad {
        // netscript's IPv6 addresses skip duplicate address detection (nodad): a
        // ping right after works; one added with nodad = false waits for it.
        setup: "",
        lua: r#"local n = netns.add("ns1"); n:link("lo"):up()
local a, b = veth.add("eth0", "v6host", {ns = n})
a:addr("fd00:5::2/64"):up(); b:addr("fd00:5::1/64"):addr("fd00:5::6/64", {nodad = false}):up()
assert(n:ping("fd00:5::1"), "nodad address reachable at once")
assert(n:ping("fd00:5::6"), "a ping waits for duplicate address detection")
assert(not n:ping("fd00:7::1", {timeout = 0.3}), "no route, no answer")"#,
        effect: "ip -n ns1 -j addr show eth0 | grep -q '\"local\":\"fd00:5::2\",\"prefixlen\":64,\"scope\":\"global\",\"nodad\":true' \
                 && ip -j addr show v6host | grep -q '\"local\":\"fd00:5::6\",\"prefixlen\":64,\"scope\":\"global\",\"valid' \
                 && ip netns exec ns1 ping -c1 -W1 fd00:5::6",
    }
    link_down_restores_v6_addrs_and_routes {
        // Down, the kernel drops the link's IPv6 addresses and every route through
        // it (both families); the undo brings them back.
        setup: "ip link add d0 type veth peer name d0p && ip link set d0p up && ip link set d0 up \
                && ip addr add 10.9.0.1/24 dev d0 && ip addr add fd00:9::1/64 dev d0 nodad \
                && ip route add 10.66.0.0/16 via 10.9.0.5 && ip -6 route add fd00:66::/48 via fd00:9::5 \
                && ip -6 route add fd00:67::/48 dev d0 metric 5",
        lua: r#"link.get("d0"):down()"#,
        effect: "! ip addr show d0 | grep -q fd00:9::1 && [ -z \"$(ip -6 route show fd00:66::/48)\" ] && [ -z \"$(ip route show 10.66.0.0/16)\" ]",
    }
    link_move_restores_routes {
        setup: "ip netns add pre && ip link add d0 type veth peer name d0p && ip link set d0p up && ip link set d0 up \
                && ip addr add 10.9.0.1/24 dev d0 && ip addr add fd00:9::1/64 dev d0 nodad \
                && ip route add 10.66.0.0/16 via 10.9.0.5 metric 7 && ip -6 route add fd00:66::/48 via fd00:9::5",
        lua: r#"link.get("d0"):move("pre")"#,
        effect: "ip -n pre link show d0 && [ -z \"$(ip route show 10.66.0.0/16)\" ]",
    }
    route_v6_in_ns {
        setup: "",
        lua: r#"local n = netns.add("ns1"); n:link("lo"):up()
local r = netns.add("r"); r:link("lo"):up():addr("2001:db8::1/128")
local a, b = veth.add("eth0", "eth0", {ns = n, peer_ns = r})
a:addr("fd00:8::2/64"):up(); b:addr("fd00:8::1/64"):up()
assert(not n:ping("2001:db8::1", {timeout = 0.3}), "no route yet")
route.add("2001:db8::/32", {via = "fd00:8::1", ns = n})
assert(n:ping("2001:db8::1"), "routed")
route.add("default", {dev = "eth0", ns = r, metric = 10, family = "ipv6"})"#,
        effect: "ip -n ns1 -6 -j route show 2001:db8::/32 | grep -q '\"gateway\":\"fd00:8::1\"' && ip -n r -6 -j route show default | grep -q '\"metric\":10' \
                 && ip netns exec ns1 ping -c1 -W1 2001:db8::1",
    }
    sysctl_ipv6_per_namespace {
        setup: "ip netns add pre && ip -n pre link add d0 type veth peer name d0p",
        lua: r#"sysctl.set("net.ipv6.conf.all.forwarding", 1, {ns = "pre"}); sysctl.set("net.ipv6.conf.d0.accept_ra", 2, {ns = "pre"})
sysctl.set("net.ipv6.conf.default.disable_ipv6", 1)"#,
        effect: "[ $(ip netns exec pre cat /proc/sys/net/ipv6/conf/d0p/forwarding) = 1 ] && [ $(ip netns exec pre cat /proc/sys/net/ipv6/conf/d0/accept_ra) = 2 ] \
                 && [ $(cat /proc/sys/net/ipv6/conf/all/forwarding) = 0 ] && [ $(cat /proc/sys/net/ipv6/conf/default/disable_ipv6) = 1 ]",
    }
    sysctl_forwarding_keeps_per_link_values {
        // Writing all.forwarding (or ip_forward) sets every link's value; the undo
        // gives back the links that had a value of their own.
        setup: "ip link add d0 type veth peer name d0p && sysctl -qw net.ipv6.conf.d0.forwarding=1 && sysctl -qw net.ipv4.conf.d0p.forwarding=1",
        lua: r#"sysctl.set("net.ipv6.conf.all.forwarding", 1); sysctl.set("net.ipv4.ip_forward", 1)"#,
        effect: "[ $(cat /proc/sys/net/ipv6/conf/d0p/forwarding) = 1 ] && [ $(cat /proc/sys/net/ipv4/conf/d0/forwarding) = 1 ]",
    }
    sysctl_disable_ipv6_restores_addrs {
        setup: "ip link add d0 type veth peer name d0p && ip link set d0p up && ip link set d0 up \
                && ip addr add fd00:9::1/64 dev d0 nodad && ip -6 route add fd00:66::/48 via fd00:9::5",
        lua: r#"sysctl.set("net.ipv6.conf.d0.disable_ipv6", 1)"#,
        effect: "! ip addr show d0 | grep -q inet6 && [ -z \"$(ip -6 route show fd00:66::/48)\" ]",
    }
    link_master_nomaster {
        setup: "ip link add br9 type bridge && ip link add d0 type veth peer name d0p && ip link add d1 type veth peer name d1p && ip link set d1 master br9",
        lua: r#"link.get("d0"):master(link.get("br9")); link.get("d1"):nomaster()"#,
        effect: "ip -j link show d0 | grep -q '\"master\":\"br9\"' && ! ip -j link show d1 | grep -q master",
    }
    link_mtu {
        setup: "ip link add d0 type veth peer name d0p",
        lua: r#"link.get("d0"):mtu(1400)"#,
        effect: "ip -j link show d0 | grep -q '\"mtu\":1400'",
    }
    link_move_preexisting {
        setup: "ip netns add pre && ip link add d0 type veth peer name d0p && ip addr add 10.9.0.1/24 dev d0 && ip link set d0 up",
        lua: r#"local l = link.get("d0"); l:move("pre"); assert(l.ns.name == "pre"); l:up()"#,
        effect: "ip -n pre -j link show d0 | grep -q UP && ! ip link show d0 2>/dev/null",
    }
    link_del_own {
        setup: "",
        lua: r#"bridge.add("b1"); local b = bridge.add("b2"); b:del()"#,
        effect: "ip link show b1 && ! ip link show b2 2>/dev/null",
    }
    route_add {
        setup: "ip link add d0 type veth peer name d0p && ip addr add 10.9.0.1/24 dev d0 && ip link set d0 up",
        lua: r#"route.add("10.77.0.0/16", {via = "10.9.0.254"}); route.add("10.78.0.0/16", {dev = "d0", metric = 50})"#,
        effect: "ip -j route show 10.77.0.0/16 | grep -q '\"gateway\":\"10.9.0.254\"' && ip -j route show 10.78.0.0/16 | grep -q '\"metric\":50'",
    }
    route_add_default_in_ns {
        setup: "ip netns add pre && ip -n pre link add d0 type veth peer name d0p && ip -n pre addr add 10.9.0.2/24 dev d0 && ip -n pre link set d0 up",
        lua: r#"route.add("default", {via = "10.9.0.1", ns = "pre"})"#,
        effect: "ip -n pre -j route show default | grep -q '\"gateway\":\"10.9.0.1\"'",
    }
    route_v6 {
        setup: "ip link add d0 type veth peer name d0p && ip link set d0p up && ip link set d0 up && ip addr add fd00:9::1/64 dev d0 nodad",
        lua: r#"route.add("fd00:77::/48", {via = "fd00:9::fe"}); route.add("default", {via = "fd00:9::fe", metric = 9})"#,
        effect: "ip -6 -j route show fd00:77::/48 | grep -q '\"gateway\":\"fd00:9::fe\"' && ip -6 -j route show default | grep -q '\"metric\":9'",
    }
    route_del_preexisting {
        setup: "ip link add d0 type veth peer name d0p && ip addr add 10.9.0.1/24 dev d0 && ip link set d0 up && ip route add 10.66.0.0/16 via 10.9.0.5 metric 7",
        lua: r#"route.del("10.66.0.0/16", {via = "10.9.0.5"})"#,
        effect: "[ -z \"$(ip route show 10.66.0.0/16)\" ]",
    }
    sysctl_set {
        setup: "ip netns add pre",
        lua: r#"assert(sysctl.set("net.ipv4.ip_forward", 1) == "0"); sysctl.set("net.ipv4.conf.all.route_localnet", "1", {ns = "pre"})"#,
        effect: "[ $(cat /proc/sys/net/ipv4/ip_forward) = 1 ] && [ $(ip netns exec pre cat /proc/sys/net/ipv4/conf/all/route_localnet) = 1 ]",
    }
    fw_policy {
        setup: "",
        lua: r#"assert(fw.policy("filter", "FORWARD", "DROP") == "ACCEPT")"#,
        effect: "iptables -S FORWARD | grep -qx -- '-P FORWARD DROP'",
    }
    fw_append_insert {
        setup: "iptables -A INPUT -s 10.1.1.1/32 -j ACCEPT",
        lua: r#"fw.append("nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE"); fw.insert("filter", "INPUT", "-p tcp --dport 22 -j ACCEPT")"#,
        effect: "iptables -t nat -S POSTROUTING | grep -q -- '-s 175.18.0.0/24 -m comment --comment .netscript:fw_append_insert. -j MASQUERADE' && iptables -S INPUT | sed -n 2p | grep -q 'dport 22'",
    }
    fw_delete_preexisting {
        setup: "iptables -A FORWARD -s 10.1.1.1/32 -j ACCEPT && iptables -A FORWARD -s 10.2.2.2/32 -j DROP && iptables -A FORWARD -s 10.3.3.3/32 -j ACCEPT",
        lua: r#"fw.delete("filter", "FORWARD", "-s 10.2.2.2 -j DROP")"#,
        effect: "! iptables -S FORWARD | grep -q 10.2.2.2 && [ $(iptables -S FORWARD | grep -c '^-A') = 2 ]",
    }
    fw_batch {
        setup: "ip netns add pre",
        lua: r#"fw.batch(function()
  fw.policy("filter", "FORWARD", "DROP")
  for i = 1, 20 do fw.append("filter", "FORWARD", ("-s 10.7.0.%d -j ACCEPT"):format(i)) end
  bridge.add("inside_batch")
  fw.append("nat", "POSTROUTING", "-s 10.7.0.0/24 -j MASQUERADE", {ns = "pre"})
  fw.insert("filter", "INPUT", "-p tcp --dport 22 -j ACCEPT")
end)
assert(#fw.rules("filter") == 3 + 21, "the batch is made when it ends")"#,
        effect: "iptables -S FORWARD | grep -qx -- '-P FORWARD DROP' && [ $(iptables -S FORWARD | grep -c 10.7.0.) = 20 ] \
                 && ip netns exec pre iptables -t nat -S POSTROUTING | grep -q MASQUERADE && ip link show inside_batch",
    }
    fw_chain {
        setup: "ip netns add pre",
        lua: r#"fw.chain("filter", "NS_CHAIN", {ns = "pre"}); fw.append("filter", "NS_CHAIN", "-j RETURN", {ns = "pre"}); fw.append("filter", "FORWARD", "-j NS_CHAIN", {ns = "pre"})"#,
        effect: "ip netns exec pre iptables -S NS_CHAIN | grep -q RETURN",
    }
}

fn run_case(c: &Case) {
    let sb = Sandbox::new();
    if !c.setup.is_empty() {
        sb.ok(c.setup);
    }
    let before = sb.snapshot();

    // It has its effect, and `down` restores the state exactly.
    let script = script_file(&format!("{}.lua", c.name), c.lua);
    sb.netscript_expect(&[&script], 0, c.name);
    sb.ok(c.effect);
    sb.down(c.name);
    sb.assert_unchanged(&before, &format!("{}: after down", c.name));

    // The same change followed by error() is rolled back to the same state.
    let o = sb.run_lua_expect(&format!("{}_err.lua", c.name), &format!("{}\nerror(\"stop here\")\n", c.lua), 1);
    assert!(stderr(&o).contains("stop here"), "{}: {}", c.name, stderr(&o));
    sb.assert_unchanged(&before, &format!("{}: after error()", c.name));
}

#[test]
fn spawned_processes_are_stopped_on_rollback() {
    let sb = Sandbox::new();
    let script = script_file(
        "spawn.lua",
        r#"local n = netns.add("ns1")
local p = n:spawn({"sleep", "1000"})
local f = io.open("/run/spawn.pid", "w"); f:write(p.pid); f:close()
for i = 1, 5 do
  local q = n:spawn({"sleep", "1000"})
  q:kill()
  assert(q:wait() == 143 and q:wait() == 143, "wait after kill gives 128 + SIGTERM, every time")
end
local done = n:spawn({"sh", "-c", "exit 7"})
assert(done:wait() == 7)
local r = n:exec({"sh", "-c", "echo hi; exit 3"})
assert(r.code == 3 and r.stdout == "hi\n", "exec returns code and output")
local ok, err = pcall(function() n:exec("exit 4", {check = true}) end)
assert(not ok and tostring(err):find("exited with code 4"), tostring(err))
error("stop")
"#,
    );
    sb.netscript_expect(&[&script], 1, "a script that ends in error()");
    let pid = sb.ok("cat /run/spawn.pid");
    assert!(sb.sh(&format!("kill -0 {pid}")).status.code() != Some(0), "process {pid} still runs after rollback");
    assert_eq!(sb.ok("ip netns list"), "");
}

#[test]
fn interrupt_rolls_back() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "sigint.lua",
        r#"local n = netns.add("ns1")
veth.add("a0", "a1", {peer_ns = n})
bridge.add("br0")
sysctl.set("net.ipv4.ip_forward", 1)
io.open("/run/ready", "w"):close()
while true do end
"#,
    );
    // SIGHUP too: the terminal closed (before, it killed netscript with no rollback,
    // and a sandbox's spawned processes outlived it).
    for sig in ["INT", "TERM", "HUP"] {
        let child = sb.spawn_until_ready(&script, "/run/ready");
        assert!(signal(child.id(), sig));
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "SIG{sig}: {}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "SIG{sig}: {}", stderr(&o));
        sb.assert_unchanged(&before, &format!("after SIG{sig}"));
    }
}

/// Under `nohup` (SIGHUP ignored as netscript starts) a closed terminal does not stop
/// the run: the user asked it to outlive the terminal. SIGTERM still rolls it back.
#[test]
fn nohup_keeps_a_run_going_when_the_terminal_closes() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "nohup.lua",
        "bridge.add(\"br0\")\nio.open(\"/run/ready-nohup\", \"w\"):close()\nnetscript.sleep(60)\n",
    );
    let pid = sb.ok(&format!("nohup {BIN} {script} >/run/nohup.out 2>&1 & echo $!")).trim().to_string();
    wait_for(20, "the script to get going", || sb.sh("test -e /run/ready-nohup").status.success());
    assert!(signal(pid.parse().unwrap(), "HUP"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(sb.sh(&format!("kill -0 {pid}")).status.success(), "SIGHUP stopped a run under nohup");
    assert!(sb.sh("ip link show br0").status.success());
    assert!(signal(pid.parse().unwrap(), "TERM"));
    wait_for(20, "the rollback", || sb.ok("cat /run/nohup.out").contains("undid 1 change"));
    assert!(sb.ok("cat /run/nohup.out").contains("interrupted"), "{}", sb.ok("cat /run/nohup.out"));
    sb.assert_unchanged(&before, "after SIGTERM under nohup");
}

/// Ctrl-C during a call inside pcall (a sleep, here) is not caught: the script ends
/// there, as after os.exit, and nothing after the pcall runs.
#[test]
fn an_interrupt_is_not_caught_by_pcall() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "sigint-pcall.lua",
        r#"bridge.add("br0")
io.open("/run/ready3", "w"):close()
local ok, err = pcall(netscript.sleep, 30)
io.open("/run/after-pcall", "w"):close()
"#,
    );
    let child = sb.spawn_until_ready(&script, "/run/ready3");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(signal(child.id(), "INT"));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted; rolling back"), "{}", stderr(&o));
    assert!(!sb.sh("test -e /run/after-pcall").status.success(), "the script went on after the pcall");
    sb.assert_unchanged(&before, "after SIGINT inside pcall");
}

#[test]
fn a_second_interrupt_during_rollback_does_not_cut_it_short() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    // A process that ignores SIGTERM makes the rollback wait (it is killed after a
    // grace period), which leaves time for a second Ctrl-C.
    let script = script_file(
        "stubborn.lua",
        r#"local n = netns.add("ns1")
bridge.add("br0", {ns = n})
n:spawn({"sh", "-c", "trap '' TERM; sleep 100"})
io.open("/run/ready2", "w"):close()
while true do end
"#,
    );
    let child = sb.spawn_until_ready(&script, "/run/ready2");
    assert!(signal(child.id(), "INT"));
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(signal(child.id(), "INT"));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("finishing the rollback first"), "{}", stderr(&o));
    sb.assert_unchanged(&before, "after two interrupts");
}

/// The session answers the reads that validate a change from what it knows of the
/// links it created, but not after a process ran: it could have changed them.
#[test]
fn a_link_changed_by_a_process_is_read_again() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "stale.lua",
        r#"local ns = netns.add("n1")
local a = veth.add("a0", "b0", { ns = ns })
ns:exec({ "ip", "link", "set", "a0", "up" }, { check = true })
a:down()
"#,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let flags = sb.ok("ip -n n1 -j link show a0");
    assert!(!flags.contains(r#""UP""#), "a0 should be down: {flags}");
    let d = sb.netscript(&["down", "stale"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert_same(&before, &sb.snapshot(), "after down");
}

/// The same after a shell command (`os.execute`): it can change links too.
#[test]
fn a_link_changed_by_a_shell_command_is_read_again() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "stale2.lua",
        r#"local ns = netns.add("n1")
local a = veth.add("a0", "b0", { ns = ns })
assert(os.execute("ip -n n1 link set a0 up"))
a:down()
"#,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let flags = sb.ok("ip -n n1 -j link show a0");
    assert!(!flags.contains(r#""UP""#), "a0 should be down: {flags}");
    let d = sb.netscript(&["down", "stale2"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert_same(&before, &sb.snapshot(), "after down");
}

/// After `spawn` the session knows nothing of links, not even of those created
/// later: the process keeps running and may change them at any time (here it brings
/// up a0 as soon as it exists).
#[test]
fn links_created_while_a_process_runs_are_read_from_the_kernel() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "stale3.lua",
        r#"local ns = netns.add("n1")
ns:spawn({ "sh", "-c", "until ip link set a0 up 2>/dev/null; do sleep 0.02; done; touch /run/a0-up; sleep 100" })
local a = veth.add("a0", "b0", { ns = ns })
while not io.open("/run/a0-up") do end
a:down()
"#,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let flags = sb.ok("ip -n n1 -j link show a0");
    assert!(!flags.contains(r#""UP""#), "a0 should be down: {flags}");
    let d = sb.netscript(&["down", "stale3"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert_same(&before, &sb.snapshot(), "after down");
}

/// A shell command sees the firewall changes made before it (the queue is made
/// first), with os.execute and io.popen alike.
#[test]
fn a_shell_command_sees_the_queued_firewall_changes() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "fwsh.lua",
        r#"fw.append("filter", "INPUT", "-s 10.9.9.9/32 -j DROP")
assert(os.execute("iptables -S INPUT | grep -q 10.9.9.9"), "os.execute: the rule is not there")
fw.append("filter", "INPUT", "-s 10.9.9.8/32 -j DROP")
local p = io.popen("iptables -S INPUT")
local out = p:read("a")
p:close()
assert(out:find("10.9.9.8", 1, true), "io.popen: the rule is not there: " .. out)
"#,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let d = sb.netscript(&["down", "fwsh"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert_same(&before, &sb.snapshot(), "after down");
}

/// While a script sleeps, what it made can be looked at from outside: the queued
/// firewall changes are made before the sleep, and the journal says every change
/// made is done (no `begin` without its `done`). A process started before the rule
/// was queued (its `spawn` saw nothing queued) looks during the sleep, once the last
/// change before it (sl1's lo up) is there.
#[test]
fn a_sleeping_script_has_made_its_changes() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "fwsleep.lua",
        r#"local p = netns.host():spawn("for i in $(seq 100); do ip -n sl1 link show lo 2>/dev/null | grep -q ',UP' && break; sleep 0.05; done; sleep 0.5; iptables -S INPUT > /run/seen-fw; cp /run/netscript/fwsleep/journal.jsonl /run/seen-journal")
fw.append("filter", "INPUT", "-s 10.9.9.7/32 -j DROP")
local ns = netns.add("sl1")
ns:link("lo"):up()
netscript.sleep(2)
assert(p:wait() == 0, "the looking process failed")
"#,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let fw = sb.ok("cat /run/seen-fw");
    assert!(fw.contains("10.9.9.7"), "the rule was not made before the sleep: {fw}");
    let journal = sb.ok("cat /run/seen-journal");
    let begun = journal.matches(r#""t":"begin""#).count();
    let done = journal.matches(r#""t":"done""#).count();
    assert!(
        begun >= 3 && done == begun,
        "every change made before the sleep is done ({begun} begun, {done} done):\n{journal}"
    );
    sb.down("fwsleep");
    sb.assert_unchanged(&before, "after down");
}

/// A script waiting for a line on its standard input ("press Enter to go on") has
/// made its queued firewall changes first: a person looks at the topology meanwhile.
/// The looker here writes each line once it has seen the rule queued before the read
/// (or after 5 s), for `io.read` and for `io.stdin:read` alike.
#[test]
fn a_script_reading_its_input_has_made_its_changes() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "fwread.lua",
        r#"fw.append("filter", "INPUT", "-s 10.9.9.6/32 -j DROP")
assert(io.read() == "go", "the first line")
fw.append("filter", "INPUT", "-s 10.9.9.5/32 -j DROP")
assert(io.stdin:read("l") == "again", "the second line")
"#,
    );
    let o = sb.sh(&format!(
        "look() {{ for i in $(seq 100); do iptables -S INPUT | grep -q \"$1\" && break; sleep 0.05; done; iptables -S INPUT > \"$2\"; }}
(look 10.9.9.6 /run/seen1; echo go; look 10.9.9.5 /run/seen2; echo again) | {BIN} {script}"
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let (seen1, seen2) = (sb.ok("cat /run/seen1"), sb.ok("cat /run/seen2"));
    assert!(seen1.contains("10.9.9.6"), "the rule was not made before io.read: {seen1}");
    assert!(seen2.contains("10.9.9.5"), "the rule was not made before io.stdin:read: {seen2}");
    sb.down("fwread");
    sb.assert_unchanged(&before, "after down");
}

/// NETSCRIPT_PHASES (for benches/run.sh) makes a run print where its time went, as
/// one `PHASES` line at exit with the number of changes the back end made and its
/// peak resident set (the bench reads it there, with no `/usr/bin/time` around the
/// run); without it nothing of the kind is printed.
#[test]
fn phases_line_counts_the_changes() {
    let sb = Sandbox::new();
    let script = script_file("phases.lua", "local br = bridge.add(\"ph0\")\nbr:addr(\"10.44.0.1/24\"):up()\n");
    let o = sb.spawn_netscript(&[&script], &[("NETSCRIPT_PHASES", "1")]).wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("PHASES ")).unwrap_or_else(|| panic!("no PHASES line: {err}"));
    for k in ["total=", "netns=", "links=", "addrs+routes=", "firewall=", "journal=", "rest="] {
        assert!(line.contains(k), "{k} missing: {line}");
    }
    assert!(line.contains(" changes=3 "), "bridge, address, up: {line}");
    let rss: u64 = line.rsplit_once(" rss_kb=").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    // A process with Lua and a tokio runtime holds a few MB; none holds a GB here.
    assert!((2_000..1_000_000).contains(&rss), "rss_kb is not this process's peak RSS: {line}");
    sb.down("phases");
    let o = sb.run_lua("nophases.lua", "bridge.add(\"ph1\")\n");
    assert!(o.status.success() && !stderr(&o).contains("PHASES"), "{}", stderr(&o));
    sb.down("nophases");
}

/// `down` of many containers on a bridge returns once the kernel has removed the
/// host's veth ends with their namespaces: none is left (the snapshot), and none was
/// deleted by hand (which `down` does only for an end still there after its wait:
/// the namespaces it holds while deleting them must have been let go).
#[test]
fn down_returns_when_the_kernel_has_removed_the_veth_ends() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "many.lua",
        r#"
local br = bridge.add("br0"):up()
for i = 1, 40 do
  local ns = netns.add("c" .. i)
  local _, vh = veth.add("eth0", "vh" .. i, { ns = ns })
  vh:master(br):up()
end
fw.append("filter", "FORWARD", "-i br0 -j ACCEPT")
"#,
    );
    sb.netscript_expect(&[&script], 0, "many");
    let o = sb.netscript_expect(&["-v", "down", "many"], 0, "down many");
    let err = stderr(&o);
    assert!(err.contains("ip netns del c40") && err.contains("ip link del br0"), "{err}");
    assert!(!err.contains("link del vh"), "a veth end was deleted by hand:\n{err}");
    sb.assert_unchanged(&before, "after down");
}

/// `exec`'s timeout bounds the whole call, also when the command leaves something in
/// the background that holds its output open: in its process group (killed then) or
/// out of it (`setsid`: not waited for). Before, `sleep 4 & exit 0` with a timeout of
/// 0.5 s returned after 4 s with timed_out = false, and the setsid case after 3 s.
#[test]
fn exec_timeout_bounds_the_call_whatever_holds_the_output() {
    let sb = Sandbox::new();
    let script = script_file(
        "exec-bg.lua",
        r#"local h = netns.host()
local r = h:exec("echo before; sleep 4 & exit 0", { timeout = 0.5 })
print(r.code, r.timed_out, r.stdout)
r = h:exec("setsid sleep 3 & sleep 10", { timeout = 0.5 })
print(r.code, r.timed_out)
r = h:exec("sleep 0.2 & echo quick", { timeout = 5 })
print(r.code, r.timed_out, r.stdout)
"#,
    );
    let t0 = std::time::Instant::now();
    let o = sb.netscript(&[&script]);
    let took = t0.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0\ttrue\tbefore\n\n137\ttrue\n0\tfalse\tquick\n\n", "{}", stderr(&o));
    assert!(took < std::time::Duration::from_millis(2500), "took {took:?}");
    let _ = sb.sh("pkill -f 'sleep 3' ; true");
}
