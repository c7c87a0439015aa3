-- Why can't A reach B? The article's failing moments, each answered by `trace`: the
-- kernel's own walk of one probe, hop by hop, with the rule (or the routing decision)
-- that decided. Run it in a throwaway sandbox:
--
--   netscript --sandbox examples/why.lua
--
-- The topology is the article's (examples/docker-bridge.lua): ns1 and ns2 on the
-- bridge ns_br, the host's uplink enp0s5 and a laptop behind it (examples/lan.lua).

local lan = require("lan")
local host = netns.host()
local laptop = lan.uplink()

local br = bridge.add("ns_br")
br:addr("175.18.0.1/24"):up()
for i = 1, 2 do
  local ns = netns.add("ns" .. i)
  ns:link("lo"):up()
  local veth0, host_end = veth.add("veth0", "veth_ns_" .. i, { ns = ns })
  veth0:addr(("175.18.0.%d/24"):format(i + 1)):up()
  host_end:master(br):up()
  route.add("default", { via = "175.18.0.1", dev = "veth0", ns = ns })
end
local ns1 = netns.get("ns1")
sysctl.set("net.ipv4.ip_forward", 1)

-- Each moment prints the trace and checks whether the probe got its answer: the same
-- checks hold under `netscript plan`, whose trace comes from its model.
local function moment(title, article, t, delivered)
  print(("== %s\n   the article: %s\n   trace: %s"):format(title, article, t.reason))
  print(t)
  assert(t.delivered == delivered, ("%s: expected %s:\n%s"):format(title, delivered and "an answer" or "no answer", t))
end

-- 1. Step 3: forwarding is on, but the FORWARD policy is DROP, and bridged traffic
--    passes iptables (br_netfilter).
fw.policy("filter", "FORWARD", "DROP")
moment("ns1 -> ns2 with the FORWARD policy DROP",
  "bridged traffic between the containers passes the FORWARD chain, whose policy drops it",
  ns1:trace("175.18.0.3"), false)
fw.policy("filter", "FORWARD", "ACCEPT")

-- 2. Step 4: ns1 pings the laptop; the request arrives, the reply has no way back.
moment("ns1 -> the laptop, before MASQUERADE",
  "the laptop has no route back to 175.18.0.0/24",
  ns1:trace(lan.laptop_ip), false)
fw.append("nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE")
moment("ns1 -> the laptop, with MASQUERADE", "now the laptop answers the host's address",
  ns1:trace(lan.laptop_ip), true)

-- 3. Steps 7 and 9: the mapped port works from the laptop, not from the host itself:
--    the DNAT rule is in PREROUTING, which the host's own packets never pass.
lan.serve(ns1, 80)
fw.append("nat", "PREROUTING", "-p tcp --dport 8088 -j DNAT --to 175.18.0.2:80")
moment("the laptop -> the host's mapped port 8088", "the laptop reaches ns1's server",
  laptop:trace(lan.host_ip, { tcp = 8088 }), true)
-- (The model takes every port as listened on: under plan this one is answered.)
local t = host:trace(lan.host_ip, { tcp = 8088 })
moment("the host -> its own mapped port, before the OUTPUT rule",
  "locally generated packets do not pass PREROUTING: nothing listens on 8088 on the host",
  t, t.source == "model")
fw.append("nat", "OUTPUT",
  "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -p tcp --dport 8088 -j DNAT --to-destination 175.18.0.2:80")
moment("the host -> its own mapped port, with the OUTPUT rule", "the nat OUTPUT chain maps it",
  host:trace(lan.host_ip, { tcp = 8088 }), true)

-- 4. Step 10: 127.0.0.1:8088, DNAT-ed in OUTPUT, but the kernel will not route a
--    packet from 127.0.0.1 out of ns_br without route_localnet.
fw.append("nat", "OUTPUT", "-d 127.0.0.0/8 -p tcp --dport 8088 -j DNAT --to-destination 175.18.0.2:80")
moment("the host -> 127.0.0.1:8088, before route_localnet",
  "the case the article left unsolved: 127.0.0.1 is a martian outside lo",
  host:trace("127.0.0.1", { tcp = 8088 }), false)
sysctl.set("net.ipv4.conf.ns_br.route_localnet", 1)
fw.append("nat", "POSTROUTING", "-s 127.0.0.0/8 -o ns_br -j MASQUERADE")
moment("the host -> 127.0.0.1:8088, with route_localnet and MASQUERADE",
  "route_localnet lets it out, MASQUERADE gives it a source ns1 can answer",
  host:trace("127.0.0.1", { tcp = 8088 }), true)
