//! The article's steps 1-3 (examples/article-part1.lua), checked from outside with
//! the system's tools, then taken down to the exact state before. And the rootless
//! sandbox: the same example, and the firewall, as user `nobody`.

mod common;
use common::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/article-part1.lua");

/// The example, where user nobody can read it.
fn public_example() -> String {
    script_file("article-part1.lua", &std::fs::read_to_string(EXAMPLE).unwrap())
}

#[test]
fn namespaces_veth_bridge_routes_forwarding() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.netscript(&[EXAMPLE]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("netscript down article-part1"), "says how to take it down: {}", stderr(&o));

    // The shape, as iproute2 sees it.
    assert_eq!(sb.ok("ip netns list | awk '{print $1}' | sort | tr '\\n' ' '"), "ns1 ns2 ");
    for i in 1..=2 {
        sb.ok(&format!("ip -n ns{i} -j addr show veth0 | grep -q '\"local\":\"175.18.0.{}\",\"prefixlen\":24'", i + 1));
        sb.ok(&format!("ip -n ns{i} -j route show default | grep -q '\"gateway\":\"175.18.0.1\"'"));
        sb.ok(&format!("ip -j link show veth_ns_{i} | grep -q '\"master\":\"ns_br\"'"));
        sb.ok(&format!("ip -n ns{i} -j link show lo | grep -q '\"UP\"'"));
    }
    sb.ok("ip -j addr show ns_br | grep -q '\"local\":\"175.18.0.1\",\"prefixlen\":24'");
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");

    // The article's checks, with a real ping.
    for (from, to) in [("ns1", "175.18.0.1"), ("ns2", "175.18.0.1"), ("ns1", "175.18.0.3"), ("ns2", "175.18.0.2")] {
        sb.ok(&format!("ip netns exec {from} ping -c1 -W2 {to} >/dev/null"));
    }
    sb.ok("ping -c1 -W2 175.18.0.2 >/dev/null && ping -c1 -W2 175.18.0.3 >/dev/null");

    // A second run of the same topology is refused while it is up.
    let o = sb.netscript(&[EXAMPLE]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("already up") && stderr(&o).contains("netscript down article-part1"), "{}", stderr(&o));

    sb.down("article-part1");
    sb.assert_unchanged(&before, "after down");
    // down twice is fine.
    sb.down("article-part1");
}

#[test]
fn rootless_sandbox_runs_the_article_as_nobody() {
    let o = as_nobody(&["--sandbox", &public_example()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("reach the bridge, the host and each other"), "{}", stdout(&o));
}

#[test]
fn rootless_sandbox_has_the_firewall_and_sysctls() {
    let script = script_file(
        "rootless_fw.lua",
        r#"assert(fw.policy("filter", "FORWARD", "DROP") == "ACCEPT")
fw.append("nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE")
assert(sysctl.set("net.ipv4.ip_forward", 1) == "0")
local found = false
for _, l in ipairs(fw.rules("nat")) do found = found or l:find("MASQUERADE", 1, true) ~= nil end
assert(found, "the rule is in the nat table")
local r = netns.host():exec({"id", "-u"})
print("uid in sandbox: " .. r.stdout)
"#,
    );
    for flavor in ["nft", "legacy"] {
        let o = as_nobody(&["--sandbox", "--iptables", flavor, &script]);
        assert!(o.status.success(), "{flavor}: {}", stderr(&o));
        assert!(stdout(&o).contains("uid in sandbox: 0"), "{flavor}: {}", stdout(&o));
    }
}

#[test]
fn sandbox_wait_keeps_it_up_for_a_look_then_rolls_back() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(BIN)
        .args(["--sandbox", "--wait", EXAMPLE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut hint = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if line.trim_start().starts_with("nsenter ") {
            hint = line.trim().to_string();
            break;
        }
        line.clear();
    }
    assert_eq!(hint, format!("nsenter -t {} -n -m", child.id()), "the hint names the process to enter");
    // Look inside from outside, as a person would from another shell.
    let o = std::process::Command::new("nsenter")
        .args(["-t", &child.id().to_string(), "-n", "-m", "ip", "netns", "list"])
        .output()
        .unwrap();
    let names = stdout(&o);
    assert!(names.contains("ns1") && names.contains("ns2"), "{names}");
    let o = std::process::Command::new("nsenter")
        .args([
            "-t",
            &child.id().to_string(),
            "-n",
            "-m",
            "ip",
            "netns",
            "exec",
            "ns1",
            "ping",
            "-c1",
            "-W2",
            "175.18.0.3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "ping inside the waiting sandbox: {}", stderr(&o));
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest.contains("sandbox closed: undid 20 changes"), "{rest}");
}
