//! `netscript.docker` with `subnet6` (examples/dual-stack.lua): containers with an
//! IPv6 address and default route, outbound IPv6 masquerading, a published port
//! reached over IPv4 and IPv6 from an outside namespace and from the host, checked
//! with the system's tools; `down` restores the state exactly; it runs as a normal
//! user in --sandbox; DNAT from [::1] does not work (the kernel's limit, documented)
//! and is refused as a host_ip; bad options are refused. (The plan of the example is
//! checked against a real run by tests/plan.rs.)

mod common;
use common::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dual-stack.lua");

/// What a client in `ns` ("" for the host) reads from a server of the example.
fn fetch(sb: &Sandbox, ns: &str, addr: &str, port: u16) -> String {
    let ex = if ns.is_empty() { String::new() } else { format!("ip netns exec {ns} ") };
    sb.ok(&format!(
        "{ex}python3 -c \"import socket; c = socket.create_connection(('{addr}', {port}), 3); print(c.recv(200).decode().strip())\""
    ))
    .trim()
    .to_string()
}

#[test]
fn the_dual_stack_example_publishes_on_both_families_and_down_restores_everything() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_ok(&[EXAMPLE]);
    assert!(stdout(&o).contains("dual stack docker network up"), "{}", stdout(&o));
    // The containers: an IPv6 address with the IPv4 host number, an IPv6 default route.
    let addrs = sb.ok("ip -n ns1 -j addr show veth0");
    assert!(addrs.contains("\"local\":\"fd00:dead:beef::2\",\"prefixlen\":64"), "{addrs}");
    assert!(sb.ok("ip -n ns2 -j -6 route show default").contains("\"gateway\":\"fd00:dead:beef::1\""));
    // The published ports, from the laptop, over both families (the server says who
    // answered and whom it saw: DNAT keeps the client's address).
    assert_eq!(fetch(&sb, "laptop", "2001:db8:55::32", 8088), "ns1 2001:db8:55::2");
    assert_eq!(fetch(&sb, "laptop", "10.211.55.32", 8089), "ns2 ::ffff:10.211.55.2");
    // From the host, on its IPv6 address on the bridge (masqueraded to it).
    assert_eq!(fetch(&sb, "", "fd00:dead:beef::1", 8089), "ns2 fd00:dead:beef::1");
    // Not from [::1]: the DNAT rule matches, but IPv6 has no route_localnet and a
    // packet from ::1 never leaves the loopback (docs/api.md says so).
    let lo = sb.sh("python3 -c \"import socket; socket.create_connection(('::1', 8088), 1)\"");
    assert!(!lo.status.success(), "[::1]:8088 reached a container; update the docs");
    // Outbound IPv6 is masqueraded: the laptop (no route back) sees the host's address.
    sb.ok("timeout 10 ip netns exec laptop python3 -c \"import socket\ns = socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('::', 9000)); s.listen()\nc, p = s.accept(); c.sendall(('laptop ' + p[0]).encode()); c.close()\" > /dev/null 2>&1 & sleep 0.5");
    assert_eq!(fetch(&sb, "ns1", "2001:db8:55::2", 9000), "laptop 2001:db8:55::32");
    let nat6 = sb.ok("ip6tables -t nat -S POSTROUTING");
    assert!(nat6.contains("-s fd00:dead:beef::/64 ! -o ns_br") && nat6.contains("-j MASQUERADE"), "{nat6}");
    // Without that rule, the laptop cannot answer (the check above can fail).
    sb.ok("ip6tables -t nat -D POSTROUTING -s fd00:dead:beef::/64 ! -o ns_br -m comment --comment netscript:dual-stack -j MASQUERADE");
    assert!(!sb.sh("ip netns exec ns1 ping -6 -c1 -W1 2001:db8:55::2").status.success(), "no masquerade, no answer");
    sb.ok("ip6tables -t nat -A POSTROUTING -s fd00:dead:beef::/64 ! -o ns_br -m comment --comment netscript:dual-stack -j MASQUERADE");
    sb.down("dual-stack");
    sb.assert_unchanged(&before, "after down");
}

#[test]
fn the_dual_stack_example_runs_as_nobody_in_a_sandbox() {
    let src = std::fs::read_to_string(EXAMPLE).unwrap();
    let o = as_nobody(&["--sandbox", &script_file("dual-stack.lua", &src)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("dual stack docker network up"), "{}", stdout(&o));
}

#[test]
fn bad_ipv6_options_are_refused() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let net = |extra: &str| {
        format!(
            "local docker = require('netscript.docker')\nlocal net = docker.network{{ name = 'br6', subnet = '10.7.0.0/24'{extra} }}\n"
        )
    };
    for (src, want) in [
        (net(", subnet6 = 'fd00::1/64'"), "has host bits set"),
        (net(", subnet6 = '10.8.0.0/24'"), "must be an IPv6 network"),
        (net(", subnet6 = 'fd00::/124'"), "must be an IPv6 network"),
        (net(", subnet6 = 'fd00::/120'").replace("10.7.0.0/24", "10.7.0.0/16"), "smaller than subnet"),
        (net(", subnet6 = 'fd00::/64', gateway6 = 'fd01::1'"), "gateway6 fd01::1 is not an address of fd00::/64"),
        (net(", gateway6 = 'fd00::1'"), "gateway6 needs subnet6"),
        (
            net(", subnet6 = 'fd00::/64'") + "net:publish(80, net:container('c1'), 80, { host_ip = '::1' })",
            "no route_localnet",
        ),
        (net("") + "net:publish(80, net:container('c1'), 80, { host_ip = 'fd00::1' })", "has no subnet6"),
        (net("") + "net:ip6(net:container('c1'))", "network br6 has no subnet6"),
    ] {
        let o = sb.run_lua_expect("bad6.lua", &src, 1);
        assert!(stderr(&o).contains(want), "{src}: {}", stderr(&o));
        sb.assert_unchanged(&before, &src);
    }
}
