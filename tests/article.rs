//! The whole article, end to end: examples/docker-bridge.lua (step by step, with the
//! article's names) and examples/docker-short.lua (the netscript.docker module) run in
//! a sandbox; every check is made from outside with the system's tools (ping, curl,
//! iptables-save), then `netscript down` must restore the kernel state exactly.

mod common;
use common::*;

use std::process::Command;

const BRIDGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/docker-bridge.lua");
const SHORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/docker-short.lua");

fn pings(sb: &Sandbox, ns: Option<&str>, addr: &str) -> bool {
    let ex = ns.map(|n| format!("ip netns exec {n} ")).unwrap_or_default();
    sb.sh(&format!("{ex}ping -c1 -W1 {addr} >/dev/null 2>&1")).status.success()
}

/// The body of an HTTP GET, fetched with curl from `ns` (None: the host).
fn http(sb: &Sandbox, ns: Option<&str>, url: &str) -> String {
    let ex = ns.map(|n| format!("ip netns exec {n} ")).unwrap_or_default();
    String::from_utf8_lossy(&sb.sh(&format!("{ex}curl -s -m 3 {url}")).stdout).trim().to_string()
}

/// The article's checks 1 and 4-8 on a finished topology (either example).
fn check_end_state(sb: &Sandbox, what: &str, ipt: &str) {
    // 1. ns1 and ns2 reach the bridge; the host reaches .2 and .3.
    assert!(
        pings(sb, Some("ns1"), "175.18.0.1") && pings(sb, Some("ns2"), "175.18.0.1"),
        "{what}: check 1, containers -> bridge"
    );
    assert!(pings(sb, None, "175.18.0.2") && pings(sb, None, "175.18.0.3"), "{what}: check 1, host -> containers");
    // 4. the host reaches both http servers on port 80.
    assert_eq!(http(sb, None, "http://175.18.0.2/"), "hello from ns1", "{what}: check 4, host -> ns1:80");
    assert_eq!(http(sb, None, "http://175.18.0.3/"), "hello from ns2", "{what}: check 4, host -> ns2:80");
    // 5 and 6. the laptop reaches 10.211.55.32:8088 / :8089 (DNAT), with the strict
    // forwarding rules (in FORWARD, or in the chains it jumps to) and policy DROP in place.
    let fwd = sb.ok(&format!("{ipt} -S | sed 's/ -m comment --comment \"[^\"]*\"//'"));
    assert!(fwd.contains("-P FORWARD DROP"), "{what}: check 6, policy DROP:\n{fwd}");
    assert!(
        fwd.contains("-d 175.18.0.2/32 ! -i ns_br -o ns_br -p tcp -m tcp --dport 80"),
        "{what}: check 6, strict rule:\n{fwd}"
    );
    assert_eq!(
        http(sb, Some("laptop"), "http://10.211.55.32:8088/"),
        "hello from ns1",
        "{what}: check 5, laptop -> :8088"
    );
    assert_eq!(
        http(sb, Some("laptop"), "http://10.211.55.32:8089/"),
        "hello from ns2",
        "{what}: check 5, laptop -> :8089"
    );
    // 7. the host reaches its own address's mapped port (OUTPUT DNAT).
    assert_eq!(
        http(sb, None, "http://10.211.55.32:8088/"),
        "hello from ns1",
        "{what}: check 7, host -> 10.211.55.32:8088"
    );
    // 8. the host reaches 127.0.0.1:8088: the case the article left unsolved.
    assert_eq!(http(sb, None, "http://127.0.0.1:8088/"), "hello from ns1", "{what}: check 8, host -> 127.0.0.1:8088");
    assert_eq!(http(sb, None, "http://127.0.0.1:8089/"), "hello from ns2", "{what}: check 8, host -> 127.0.0.1:8089");
    // Our rules carry the ownership mark.
    let nat = sb.ok(&format!("{ipt}-save -t nat"));
    assert!(nat.contains("--comment \"netscript:"), "{what}: rules carry the mark:\n{nat}");
}

#[test]
fn docker_bridge_step_by_step() {
    let sb = Sandbox::new();
    let before = sb.snapshot();

    // Check 1 after steps 1-2 (no forwarding yet).
    sb.run_ok(&[BRIDGE, "2"]);
    assert!(pings(&sb, Some("ns1"), "175.18.0.1") && pings(&sb, Some("ns2"), "175.18.0.1"), "check 1: ns -> bridge");
    assert!(pings(&sb, None, "175.18.0.2") && pings(&sb, None, "175.18.0.3"), "check 1: host -> ns");
    sb.down("docker-bridge");

    // Check 2: FORWARD policy DROP blocks ns1 -> ns2 (br_netfilter), ACCEPT allows it.
    sb.run_ok(&[BRIDGE, "3"]);
    assert!(sb.ok("iptables -S FORWARD").contains("-P FORWARD DROP"));
    assert!(!pings(&sb, Some("ns1"), "175.18.0.3"), "check 2: policy DROP must block ns1 -> ns2");
    sb.down("docker-bridge");
    sb.run_ok(&[BRIDGE, "4"]);
    assert!(pings(&sb, Some("ns1"), "175.18.0.3"), "check 2: policy ACCEPT lets ns1 reach ns2");
    // Check 3: without MASQUERADE no reply from the laptop ...
    assert!(!pings(&sb, Some("ns1"), "10.6.213.149"), "check 3: no reply without MASQUERADE");
    sb.down("docker-bridge");
    // ... with it, a reply.
    sb.run_ok(&[BRIDGE, "5"]);
    assert!(pings(&sb, Some("ns1"), "10.6.213.149"), "check 3: reply with MASQUERADE");
    sb.down("docker-bridge");

    // Step 9 done, step 10 not: 127.0.0.1 does not work yet.
    sb.run_ok(&[BRIDGE, "9"]);
    assert_eq!(http(&sb, None, "http://10.211.55.32:8088/"), "hello from ns1", "check 7");
    assert_eq!(http(&sb, None, "http://127.0.0.1:8088/"), "", "127.0.0.1 is not mapped before step 10");
    sb.down("docker-bridge");

    // All steps: checks 1 and 4-8.
    sb.run_ok(&[BRIDGE]);
    check_end_state(&sb, "docker-bridge.lua", "iptables");
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/conf/ns_br/route_localnet").trim(), "1");

    // Check 9: taken down, everything is as before (servers stopped too).
    sb.down("docker-bridge");
    sb.assert_unchanged(&before, "check 9: after down");
    assert!(sb.processes("hello from").is_empty(), "the http servers are stopped");
}

#[test]
fn docker_short_reaches_the_same_end_state() {
    for flavor in ["nft", "legacy"] {
        let sb = Sandbox::new();
        let before = sb.snapshot();
        sb.run_ok(&["--iptables", flavor, SHORT]);
        check_end_state(&sb, &format!("docker-short.lua ({flavor})"), &format!("iptables-{flavor}"));
        // Containers reach each other and, through MASQUERADE, the laptop.
        assert!(pings(&sb, Some("ns1"), "175.18.0.3") && pings(&sb, Some("ns1"), "10.6.213.149"));
        sb.down("docker-short");
        sb.assert_unchanged(&before, &format!("docker-short ({flavor}): after down"));
    }
}

#[test]
fn docker_short_is_short() {
    let src = std::fs::read_to_string(SHORT).unwrap();
    let code = src.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")).count();
    assert!(code < 15, "docker-short.lua has {code} lines of code");
}

#[test]
fn the_docker_module_reports_bad_input_at_the_callers_line() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let o = sb.run_lua(
        "docker_bad.lua",
        r#"local docker = require("netscript.docker")
local net = docker.network{ name = "br1", subnet = "10.5.0.0/24" }
net:container("c1", { ip = "10.5.0.2" })
net:container("c2", { ip = "10.5.0.2" })
"#,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("docker_bad.lua:4:") && stderr(&o).contains("already taken"), "{}", stderr(&o));
    sb.assert_unchanged(&before, "after a failed docker script");
    let o = sb.run_lua(
        "docker_bad2.lua",
        "require(\"netscript.docker\").network{ name = \"b\", subnet = \"10.5.0.1/24\" }\n",
    );
    assert!(stderr(&o).contains("docker_bad2.lua:1:") && stderr(&o).contains("10.5.0.0/24"), "{}", stderr(&o));
}

#[test]
fn require_finds_modules_next_to_the_script_and_on_netscript_path() {
    let sb = Sandbox::new();
    let dir = std::env::temp_dir().join(format!("netscript-mods-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("shared_mod.lua"), "return { hello = function() return 'from NETSCRIPT_PATH' end }\n")
        .unwrap();
    let script =
        script_file("uses_mods.lua", "print(require('shared_mod').hello()); print(require('netscript').name)\n");
    let o = std::process::Command::new("nsenter")
        .args(["-t", &sb.pid.to_string(), "-n", "-m", "--", BIN, &script])
        .env("NETSCRIPT_PATH", &dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "from NETSCRIPT_PATH\nuses_mods\n");
}

#[test]
fn publish_works_for_udp_too() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "udp.lua",
        r#"local docker, lan = require("netscript.docker"), require("lan")
lan.uplink()
local net = docker.network{ name = "br_u", subnet = "10.50.0.0/24" }
local c = net:container("u1")
c:spawn({"python3", "-c", [[
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
while True:
    d, a = s.recvfrom(100)
    s.sendto(b"echo:" + d, a)
]]})
net:publish(5300, c, 5353, { proto = "udp" })
"#,
    );
    let o = Command::new("nsenter")
        .args(["-t", &sb.pid.to_string(), "-n", "-m", "--", BIN, &script])
        .env("NETSCRIPT_PATH", concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ask = |ns: Option<&str>, addr: &str| {
        let ex = ns.map(|n| format!("ip netns exec {n} ")).unwrap_or_default();
        let py = format!(
            "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(1)\n\
             for _ in range(5):\n  s.sendto(b'hi', ('{addr}', 5300))\n  try:\n    print(s.recvfrom(100)[0].decode()); break\n  except OSError: pass"
        );
        String::from_utf8_lossy(&sb.sh(&format!("{ex}python3 -c \"{py}\"")).stdout).trim().to_string()
    };
    assert_eq!(ask(Some("laptop"), "10.211.55.32"), "echo:hi", "the laptop reaches the published UDP port");
    assert_eq!(ask(None, "127.0.0.1"), "echo:hi", "the host reaches it on 127.0.0.1");
    sb.down("udp");
    sb.assert_unchanged(&before, "after down");
}
